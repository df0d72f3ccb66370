//! `audiences measure`: campaign results against a published run's target and control groups.

use clap::Args;

use super::out::outln;
use object_store::ObjectStoreExt;

use super::load_job;
use crate::engine::{Engine, EngineConfig};
use crate::error::{Error, Result};
use crate::storage;

/// Arguments of `measure`.
#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// The job file (TOML).
    #[arg(value_name = "JOB")]
    job: std::path::PathBuf,
    /// The published run: a date (its current publication) or a run id.
    #[arg(long, value_name = "DATE_OR_RUN_ID")]
    run: String,
    /// Campaign results (path or URL; Parquet or CSV): the user id, `converted` (true/false or
    /// a count) and optionally `value`, one or more rows per user.
    #[arg(long, value_name = "URL")]
    results: Option<String>,
    /// First day of the campaign, for an outcome read from the job's data (default: the day
    /// after the measured run's date).
    #[arg(long, value_name = "YYYY-MM-DD")]
    start: Option<String>,
    /// Day after the campaign's last (default: start + `[measure] campaign_days`).
    #[arg(long, value_name = "YYYY-MM-DD")]
    end: Option<String>,
    /// Sets a param the output location uses; repeat for several.
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Output folder of the job's runs, when they were written with --output.
    #[arg(long, value_name = "URL")]
    output: Option<String>,
    /// Also measure every segment per value of a column of one of the run's Parquet exports,
    /// joined on the id: `brand_lookalike.tier` reads `brand_lookalike.parquet`, column `tier`.
    #[arg(long, value_name = "EXPORT.COLUMN")]
    by: Option<String>,
    /// A later published run (date or run id): the stage migration of target and control
    /// between the two runs' lifecycle exports.
    #[arg(long, value_name = "DATE_OR_RUN_ID")]
    after: Option<String>,
    /// The lifecycle export (file stem) the stage migration reads, with columns id and `stage`.
    #[arg(long, default_value = "lifecycle")]
    lifecycle: String,
    /// The absolute lift worth detecting, in percentage points: the scale of the always-valid
    /// interval (any value keeps its error rate; it is tightest near this lift).
    #[arg(long, value_name = "PP", default_value_t = 1.0)]
    mde: f64,
}

/// The holdout share a segment of the job was split with: its own, or its per-value group's.
fn holdout_of(job: &crate::job::Job, segment: &str) -> Option<f64> {
    job.segments
        .iter()
        .find(|s| match s.def {
            crate::job::SegmentDef::PerValue { .. } => segment
                .strip_prefix(s.name.as_str())
                .is_some_and(|rest| rest.starts_with('_')),
            _ => s.name == segment,
        })
        .map(|s| s.holdout)
}

/// A published run: (date, folder relative to the output root, run id).
pub(super) async fn resolve_run(
    root: &storage::Location,
    text: &str,
) -> Result<(String, String, String)> {
    if crate::job::params::parse_date(text).is_ok() {
        let ptr = storage::publish::read_pointer(root, text)
            .await?
            .ok_or_else(|| Error::SourceMissing {
                source_name: format!("published run of {text}"),
                url: format!("{}/{text}", root.display()),
                detail: "the date has no publication".into(),
                cause: None,
            })?;
        return Ok((text.to_string(), ptr.run, ptr.run_id));
    }
    let rec = storage::history::recent(root, storage::history::KEEP)
        .await?
        .into_iter()
        .find(|r| r.run_id == text && r.outcome == "published")
        .ok_or_else(|| Error::SourceMissing {
            source_name: format!("run {text}"),
            url: root.display(),
            detail: "no published run with this id in the run history (see `audiences status`)"
                .into(),
            cause: None,
        })?;
    let rel = format!("{}/runs/{}", rec.date, rec.run_id);
    Ok((rec.date, rel, rec.run_id))
}

/// Where a measurement's results come from: a file, or the job's `[measure]` outcome over its
/// own sources (with the params bound for the run's date).
enum Outcome {
    File(storage::Location),
    Job(crate::job::Bindings),
}

/// The lift worth detecting, given in percentage points, as a share.
pub(super) fn lift_to_detect(pp: f64) -> Result<f64> {
    if pp > 0.0 && pp < 100.0 {
        Ok(pp / 100.0)
    } else {
        Err(Error::Usage(format!(
            "--mde {pp} must be a lift in percentage points above 0 and below 100"
        )))
    }
}

/// Each segment's holdout share as a run split it: from the run's manifest (the job may have
/// changed since), else from the job.
pub(super) struct Holdouts(std::collections::BTreeMap<String, f64>);

impl Holdouts {
    /// Reads the shares of the run folder `run_rel` below `root`.
    pub(super) async fn read(root: &storage::Location, run_rel: &str) -> Result<Holdouts> {
        let manifest = storage::read_bytes(&root.child(&format!("{run_rel}/manifest.json"))?)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let shares = manifest
            .map(|m| {
                m["segments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| Some((s["name"].as_str()?.to_string(), s["holdout"].as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Holdouts(shares))
    }

    /// The share of `segment` (none for a segment without a control group).
    pub(super) fn of(&self, job: &crate::job::Job, segment: &str) -> Option<f64> {
        match self.0.get(segment) {
            Some(h) => Some(*h),
            None => holdout_of(job, segment),
        }
        .filter(|h| *h > 0.0)
    }
}

/// Registers the campaign's results file as `results`; returns it as shown to the user.
async fn register_results_file(engine: &Engine, results: &storage::Location) -> Result<String> {
    let shown = results.display();
    if results.store.head(&results.path).await.is_err()
        && results
            .store
            .list_with_delimiter(Some(&results.path))
            .await
            .map(|l| l.objects.is_empty())
            .unwrap_or(true)
    {
        return Err(Error::SourceMissing {
            source_name: "campaign results".into(),
            url: shown,
            detail: "no file there".into(),
            cause: None,
        });
    }
    let registered = if shown.ends_with(".csv") {
        engine
            .ctx
            .register_csv("results", results.url.as_str(), Default::default())
            .await
    } else {
        engine
            .ctx
            .register_parquet("results", results.url.as_str(), Default::default())
            .await
    };
    registered.map_err(|e| Error::data(format!("campaign results ({shown})"), e.to_string()))?;
    Ok(shown)
}

/// Registers a Parquet file of a run folder as `name`, or fails with exit 66 naming it.
pub(super) async fn register_run_file(
    engine: &Engine,
    root: &storage::Location,
    rel: &str,
    name: &str,
) -> Result<()> {
    let loc = root.child(rel)?;
    // A HEAD, not a read: the file may be large.
    if let Err(e) = loc.store.head(&loc.path).await {
        return Err(Error::SourceMissing {
            source_name: name.to_string(),
            url: loc.display(),
            detail: "the run has no such file".into(),
            cause: Some(Box::new(e)),
        });
    }
    engine
        .ctx
        .register_parquet(name, loc.url.as_str(), Default::default())
        .await
        .map_err(|e| Error::data(loc.display(), e.to_string()))?;
    Ok(())
}

/// Finds the run, measures every segment and writes `lift.csv` and `measurement.json`.
pub async fn execute(args: MeasureArgs) -> Result<()> {
    let job = load_job(&args.job)?;
    let opts = crate::pipeline::RunOptions {
        params: args.params.clone(),
        output: args.output.clone(),
        ..Default::default()
    };
    let root = crate::pipeline::Plan::new(&job, &opts)?.root;
    let (date, run_rel, run_id) = resolve_run(&root, &args.run).await?;
    // Without a results file the outcome comes from the job's own sources.
    let (mut engine, outcome) = match &args.results {
        Some(url) => {
            let cwd = std::env::current_dir()?;
            let loc = storage::locate(&crate::job::params::resolve_path(url, &cwd))?;
            (
                Engine::new(&EngineConfig::default()).await?,
                Outcome::File(loc),
            )
        }
        None => {
            let day = crate::job::params::parse_date(&date).ok();
            let opts = crate::pipeline::RunOptions { date: day, ..opts };
            let p = crate::pipeline::prepare(&job, &opts).await?;
            (p.engine, Outcome::Job(p.plan.bindings))
        }
    };
    engine.register_store(&root);
    if let Outcome::File(loc) = &outcome {
        engine.register_store(loc);
    }
    let engine = &engine;
    register_run_file(
        engine,
        &root,
        &format!("{run_rel}/segments.parquet"),
        "members",
    )
    .await?;
    let by = match &args.by {
        Some(b) => {
            let (file, col) = b.split_once('.').ok_or_else(|| {
                Error::Usage(format!(
                    "--by `{b}` must be EXPORT.COLUMN, e.g. brand_lookalike.tier"
                ))
            })?;
            register_run_file(
                engine,
                &root,
                &format!("{run_rel}/{file}.parquet"),
                "breakdown",
            )
            .await?;
            Some(("breakdown", col))
        }
        None => None,
    };
    let shown = match &outcome {
        Outcome::File(loc) => register_results_file(engine, loc).await?,
        Outcome::Job(bindings) => {
            let day = |flag: &str, v: &Option<String>| -> Result<Option<chrono::NaiveDate>> {
                v.as_deref()
                    .map(|t| {
                        crate::job::params::parse_date(t)
                            .map_err(|e| Error::Usage(format!("--{flag} `{t}`: {e}")))
                    })
                    .transpose()
            };
            let run_day = crate::job::params::parse_date(&date).map_err(|_| {
                Error::Usage(format!(
                    "run {run_id} has no date ({date}): give the campaign's --results"
                ))
            })?;
            let start = day("start", &args.start)?.unwrap_or(run_day + chrono::Duration::days(1));
            let end = day("end", &args.end)?
                .unwrap_or(start + chrono::Duration::days(i64::from(job.campaign_days)));
            if end <= start {
                return Err(Error::Usage(format!(
                    "--end {end} must be after --start {start}"
                )));
            }
            crate::measure::outcome::register_results(engine, &job, bindings, start, end).await?;
            format!(
                "[measure] outcome over {start} .. {end} (pre-period {} .. {start})",
                start - (end - start)
            )
        }
    };
    let tau = lift_to_detect(args.mde)?;
    let holdouts = Holdouts::read(&root, &run_rel).await?;
    let holdout = |seg: &str| holdouts.of(&job, seg);
    let opts = crate::measure::Options {
        holdout: &holdout,
        tau,
    };
    let lifts =
        crate::measure::measure(engine, "members", "results", &job.publish.id, by, &opts).await?;
    let migration = match &args.after {
        Some(after) => {
            let (_, after_rel, after_id) = resolve_run(&root, after).await?;
            let file = format!("{}.parquet", args.lifecycle);
            register_run_file(engine, &root, &format!("{run_rel}/{file}"), "stage_before").await?;
            register_run_file(engine, &root, &format!("{after_rel}/{file}"), "stage_after").await?;
            let m = crate::measure::migration(
                engine,
                "members",
                "stage_before",
                "stage_after",
                &job.publish.id,
            )
            .await?;
            Some((after_id, m))
        }
        None => None,
    };

    let dir = root.child(&format!("{date}/measurements/{run_id}"))?;
    let batch = crate::measure::to_batch(&lifts)?;
    let schema = batch.schema();
    let stream = storage::write::in_memory(vec![batch]);
    storage::write::write_csv(&dir.child("lift.csv")?, schema, stream).await?;
    let doc = serde_json::json!({
        "job": job.name,
        "date": date,
        "run_id": run_id,
        "results": shown,
        "measured_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "method": "intent to treat; conversion: Newcombe hybrid score 95% interval, pooled z-test p-value, Benjamini-Hochberg q-value over every lift of this measurement (significant: q < 0.05), always-valid 95% interval (mixture SPRT confidence sequence, tau = --mde), log risk-ratio interval of the relative lift, chi-square sample-ratio test against the holdout share (mismatch: p < 0.001), CUPED with the results' `pre` column; value per user: 95% percentile bootstrap (2,000 resamples)",
        "mde_pp": args.mde,
        "segments": lifts,
        "stage_migration": migration.as_ref().map(|(after, m)| serde_json::json!({
            "after_run_id": after,
            "advanced_share": crate::measure::advanced_shares(m)
                .into_iter()
                .map(|((s, g), v)| serde_json::json!({"segment": s, "grp": g, "share": v}))
                .collect::<Vec<_>>(),
            "moves": m,
        })),
    });
    let page = crate::report::ReportData {
        job: job.name.clone(),
        date: date.clone(),
        run_id: run_id.clone(),
        lifts: lifts.clone(),
        min_cell_size: job.report_min_cell_size,
        ..Default::default()
    };
    // The run's page with the lift added, so one page shows the audiences and what they earned.
    let run_page = storage::read_bytes(&root.child(&format!("{run_rel}/report.html"))?)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    storage::write::put_bytes(
        &dir.child("report.html")?,
        crate::report::with_lift(run_page.as_deref(), &page).into_bytes(),
    )
    .await?;
    storage::write::put_bytes(
        &dir.child("measurement.json")?,
        serde_json::to_vec_pretty(&doc).map_err(Error::unexpected)?,
    )
    .await?;
    outln!("job {}  run {run_id} ({date})  results {shown}", job.name);
    outln!(
        "  {:<28} {:>8} {:>8} {:>7} {:>7} {:>8} {:>18} {:>18} {:>8} {:>8} {:>10}",
        "segment",
        "target",
        "control",
        "conv %",
        "ctrl %",
        "lift pp",
        "95% interval (pp)",
        "always-valid (pp)",
        "p",
        "q",
        "incr conv"
    );
    let pp = |c: (f64, f64)| format!("[{:.2}, {:.2}]", 100.0 * c.0, 100.0 * c.1);
    for l in &lifts {
        let name = match &l.part {
            Some(p) => format!("{} [{p}]", l.segment),
            None => l.segment.clone(),
        };
        outln!(
            "  {:<28} {:>8} {:>8} {:>7.2} {:>7.2} {:>8.2} {:>18} {:>18} {:>8.4} {:>8.4} {:>10.1}{}",
            name,
            l.target_users,
            l.control_users,
            100.0 * l.target_rate,
            100.0 * l.control_rate,
            100.0 * l.absolute_lift,
            pp(l.absolute_ci),
            pp(l.always_valid_ci),
            l.p_value,
            l.q_value,
            l.incremental_conversions,
            if l.significant { "  *" } else { "" }
        );
        if let Some(b) = &l.pre_balance {
            outln!(
                "  {:<28} before the campaign: target {:.4}, control {:.4} (p = {:.3}){}",
                "",
                b.target_mean,
                b.control_mean,
                b.p_value,
                if b.p_value < 0.01 {
                    "  groups differed before the campaign"
                } else {
                    ""
                }
            );
        }
        if let Some(c) = &l.cuped {
            outln!(
                "  {:<28} CUPED lift {:.2} pp {}, variance {:+.0}%",
                "",
                100.0 * c.diff,
                pp(c.ci),
                -100.0 * c.variance_reduction
            );
        }
    }
    outln!("  * significant after the Benjamini-Hochberg correction over the {} lifts above (q < 0.05)", lifts.len());
    if let Some((after, m)) = &migration {
        outln!("stage migration to run {after}: share of users whose stage advanced");
        let shares = crate::measure::advanced_shares(m);
        let segs: std::collections::BTreeSet<&String> = shares.keys().map(|k| &k.0).collect();
        for s in segs {
            let get = |g: &str| {
                shares
                    .get(&(s.clone(), g.to_string()))
                    .copied()
                    .unwrap_or(0.0)
            };
            outln!(
                "  {:<28} target {:>6.2}%  control {:>6.2}%",
                s,
                100.0 * get("target"),
                100.0 * get("control")
            );
        }
    }
    outln!("written: {}", dir.display());
    // A broken split makes every number above unreadable: an error, not a footnote.
    let broken: Vec<String> = lifts
        .iter()
        .filter(|l| l.sample_ratio_mismatch && l.part.is_none())
        .map(|l| {
            format!(
                "`{}` has {} target and {} control users, not the {:.1}% holdout it was split with (sample-ratio test p = {:.2e})",
                l.segment,
                l.target_users,
                l.control_users,
                100.0 * l.holdout.unwrap_or_default(),
                l.sample_ratio_p.unwrap_or_default()
            )
        })
        .collect();
    if !broken.is_empty() {
        return Err(Error::data(
            "sample ratio mismatch",
            format!(
                "{}; the split was broken (an upstream change, suppression applied to one side, results missing for one group): do not read these lifts",
                broken.join("; ")
            ),
        ));
    }
    Ok(())
}
