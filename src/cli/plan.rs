//! `audiences plan`: before a campaign, what each segment's holdout can detect.

use clap::Args;

use super::load_job;
use super::measure::{lift_to_detect, register_run_file, resolve_run, Holdouts};
use super::out::outln;
use crate::error::{Error, Result};
use crate::storage;

/// Arguments of `audiences plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The job file (TOML); its `[measure]` outcome gives the baseline.
    #[arg(value_name = "JOB")]
    job: std::path::PathBuf,
    /// The published run whose segments are planned: a date or a run id (default: the latest
    /// published run).
    #[arg(long, value_name = "DATE_OR_RUN_ID")]
    date: Option<String>,
    /// Sets a param, parsed by its declared type; repeat for several.
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// The job's output folder, when not the job's own.
    #[arg(long, value_name = "URL")]
    output: Option<String>,
    /// The absolute lift to detect, in percentage points: the holdout that reaches it is
    /// recommended.
    #[arg(long, value_name = "PP", default_value_t = 1.0)]
    mde: f64,
}

/// Runs `audiences plan`.
pub async fn execute(args: PlanArgs) -> Result<()> {
    let job = load_job(&args.job)?;
    let target = lift_to_detect(args.mde)?;
    if job.outcome.is_none() {
        return Err(Error::Usage(format!(
            "{} declares no campaign outcome: add [measure] outcome = \"outcome.sql\" (the id, `converted` and `value` per user over [$start, $end))",
            job.path.display()
        )));
    }
    let opts = crate::pipeline::RunOptions {
        params: args.params.clone(),
        output: args.output.clone(),
        ..Default::default()
    };
    let root = crate::pipeline::Plan::new(&job, &opts)?.root;
    let which = match &args.date {
        Some(d) => d.clone(),
        None => storage::history::recent(&root, storage::history::KEEP)
            .await?
            .into_iter()
            .find(|r| r.outcome == "published")
            .map(|r| r.run_id)
            .ok_or_else(|| Error::SourceMissing {
                source_name: "a published run".into(),
                url: root.display(),
                detail: "the job has no published run to plan for: run it first".into(),
                cause: None,
            })?,
    };
    let (date, run_rel, run_id) = resolve_run(&root, &which).await?;
    let day = crate::job::params::parse_date(&date)
        .map_err(|_| Error::Usage(format!("run {run_id} has no date ({date})")))?;
    let opts = crate::pipeline::RunOptions {
        date: Some(day),
        ..opts
    };
    let mut prepared = crate::pipeline::prepare(&job, &opts).await?;
    prepared.engine.register_store(&root);
    let engine = &prepared.engine;
    register_run_file(
        engine,
        &root,
        &format!("{run_rel}/segments.parquet"),
        "members",
    )
    .await?;
    let len = chrono::Duration::days(i64::from(job.campaign_days));
    let bindings = &prepared.plan.bindings;
    crate::measure::outcome::register_window(engine, &job, bindings, day - len, day, "last")
        .await?;
    crate::measure::outcome::register_window(
        engine,
        &job,
        bindings,
        day - len - len,
        day - len,
        "before",
    )
    .await?;
    let holdouts = Holdouts::read(&root, &run_rel).await?;
    let holdout = |seg: &str| holdouts.of(&job, seg);
    let plans = crate::measure::plan::plan(
        engine,
        "members",
        "last",
        "before",
        &job.publish.id,
        &holdout,
        target,
    )
    .await?;
    let dir = root.child(&format!("{date}/measurements/{run_id}"))?;
    let doc = serde_json::json!({
        "job": job.name,
        "date": date,
        "run_id": run_id,
        "campaign_days": job.campaign_days,
        "baseline_window": [(day - len).to_string(), day.to_string()],
        "target_mde_pp": args.mde,
        "method": "minimum detectable absolute lift at 80% power, two-sided 5%: (z.975 + z.80) * sqrt(p(1-p)(1/n_t + 1/n_c)); CUPED multiplies the variance by 1 - rho^2, rho the correlation with the window before",
        "segments": plans,
    });
    storage::write::put_bytes(
        &dir.child("plan.json")?,
        serde_json::to_vec_pretty(&doc).map_err(Error::unexpected)?,
    )
    .await?;
    // The same table on the run's page, written beside the plan (the run is never changed).
    let run_page = storage::read_bytes(&root.child(&format!("{run_rel}/report.html"))?)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let section = crate::report::plan_section(
        &plans,
        job.report_min_cell_size,
        &format!("{} .. {day}", day - len),
        target,
    );
    storage::write::put_bytes(
        &dir.child("plan.html")?,
        crate::report::with_plan(run_page.as_deref(), &section).into_bytes(),
    )
    .await?;
    outln!(
        "job {}  run {run_id} ({date})  baseline: the outcome over {} .. {day} ({} days)",
        job.name,
        day - len,
        job.campaign_days
    );
    outln!(
        "  {:<28} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9} {:>9} {:>12} {:>12}",
        "segment",
        "target",
        "control",
        "holdout",
        "base %",
        "value/user",
        "MDE pp",
        "CUPED pp",
        "holdout for",
        "with CUPED"
    );
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}", 100.0 * v));
    let share =
        |v: Option<f64>| v.map_or("unreachable".to_string(), |v| format!("{:.1}%", 100.0 * v));
    for p in &plans {
        outln!(
            "  {:<28} {:>8} {:>8} {:>7.1}% {:>8.2} {:>10.2} {:>9} {:>9} {:>12} {:>12}",
            p.segment,
            p.target_users,
            p.control_users,
            100.0 * p.holdout,
            100.0 * p.baseline_rate,
            p.value_per_user,
            pct(p.mde),
            pct(p.mde_cuped),
            share(p.holdout_for_target),
            share(p.holdout_for_target_cuped)
        );
    }
    outln!(
        "  MDE: the smallest lift in conversion rate the split detects 80% of the time at 5% significance; holdout for: the share that detects {:.2} pp",
        args.mde
    );
    outln!(
        "written: {} and plan.html (the run's report with this table)",
        dir.child("plan.json")?.display()
    );
    Ok(())
}
