//! `audiences measure`: campaign results against a published run's target and control groups.

use clap::Args;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

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
    results: String,
    /// Sets a param the output location uses; repeat for several.
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Output folder of the job's runs, when they were written with --output.
    #[arg(long, value_name = "URL")]
    output: Option<String>,
}

/// Finds the run, measures every segment and writes `lift.csv` and `measurement.json`.
pub async fn execute(args: MeasureArgs) -> Result<()> {
    let job = load_job(&args.job)?;
    let cwd = std::env::current_dir()?;
    let bindings = job.bind(None, &args.params, &cwd)?;
    let root = storage::locate(&job.output_url(&bindings, args.output.as_deref(), &cwd)?)?;
    let (date, run_rel, run_id) = if crate::job::params::parse_date(&args.run).is_ok() {
        let ptr = storage::publish::read_pointer(&root, &args.run)
            .await?
            .ok_or_else(|| Error::SourceMissing {
                source_name: format!("published run of {}", args.run),
                url: format!("{}/{}", root.display(), args.run),
                detail: "the date has no publication".into(),
            })?;
        (args.run.clone(), ptr.run, ptr.run_id)
    } else {
        let rec = storage::history::recent(&root, storage::history::KEEP)
            .await?
            .into_iter()
            .find(|r| r.run_id == args.run && r.outcome == "published")
            .ok_or_else(|| Error::SourceMissing {
                source_name: format!("run {}", args.run),
                url: root.display(),
                detail: "no published run with this id in the run history (see `audiences status`)"
                    .into(),
            })?;
        let rel = format!("{}/runs/{}", rec.date, rec.run_id);
        (rec.date, rel, rec.run_id)
    };
    let mut engine = Engine::new(&EngineConfig::default())?;
    engine.register_store(&root);
    let members = root.child(&format!("{run_rel}/segments.parquet"))?;
    if storage::read_bytes(&members).await.is_err() {
        return Err(Error::SourceMissing {
            source_name: format!("segments of run {run_id}"),
            url: members.display(),
            detail:
                "the run has no segments.parquet (a job without segments has nothing to measure)"
                    .into(),
        });
    }
    engine
        .ctx
        .register_parquet("members", members.url.as_str(), Default::default())
        .await
        .map_err(|e| Error::data(members.display(), e.to_string()))?;
    let results = storage::locate(&crate::job::params::resolve_path(&args.results, &cwd))?;
    engine.register_store(&results);
    let shown = results.display();
    if storage::read_bytes(&results).await.is_err()
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
    let lifts = crate::measure::measure(&engine, "members", "results", &job.publish.id).await?;

    let dir = root.child(&format!("{date}/measurements/{run_id}"))?;
    let batch = crate::measure::to_batch(&lifts)?;
    let stream =
        RecordBatchStreamAdapter::new(batch.schema(), futures::stream::iter(vec![Ok(batch)]));
    storage::write::write_csv(&dir.child("lift.csv")?, Box::pin(stream)).await?;
    let doc = serde_json::json!({
        "job": job.name,
        "date": date,
        "run_id": run_id,
        "results": shown,
        "measured_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "method": "intent to treat; Wald 95% interval and pooled z-test for conversion; 95% percentile bootstrap (2,000 resamples) for value per user",
        "segments": lifts,
    });
    storage::write::put_bytes(
        &dir.child("measurement.json")?,
        serde_json::to_vec_pretty(&doc).map_err(|e| Error::internal(e.to_string()))?,
    )
    .await?;
    println!("job {}  run {run_id} ({date})  results {shown}", job.name);
    println!(
        "  {:<28} {:>8} {:>8} {:>8} {:>8} {:>9} {:>22} {:>8} {:>10}",
        "segment",
        "target",
        "control",
        "conv %",
        "ctrl %",
        "lift pp",
        "95% interval (pp)",
        "p",
        "incr conv"
    );
    for l in &lifts {
        println!(
            "  {:<28} {:>8} {:>8} {:>8.2} {:>8.2} {:>9.2} {:>22} {:>8.4} {:>10.1}",
            l.segment,
            l.target_users,
            l.control_users,
            100.0 * l.target_rate,
            100.0 * l.control_rate,
            100.0 * l.absolute_lift,
            format!(
                "[{:.2}, {:.2}]",
                100.0 * l.absolute_ci.0,
                100.0 * l.absolute_ci.1
            ),
            l.p_value,
            l.incremental_conversions
        );
    }
    println!("written: {}", dir.display());
    Ok(())
}
