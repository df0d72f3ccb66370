//! `audiences status`: the recent runs of a job, read from its output location.

use std::collections::BTreeMap;

use clap::Args;

use super::out::outln;

use super::load_job;
use crate::error::Result;
use crate::storage;

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The job file (TOML).
    #[arg(value_name = "JOB")]
    job: std::path::PathBuf,
    /// Sets a param the output location uses, parsed by its declared type; repeat for several.
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Output folder (path or URL) when the runs were written with --output.
    #[arg(long, value_name = "URL")]
    output: Option<String>,
    /// How many runs to list, newest first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// State folder, when the runs were written with --state.
    #[arg(long, value_name = "URL")]
    state: Option<String>,
    /// List every day the incremental steps hold, with its fingerprint, rows and size.
    #[arg(long)]
    days: bool,
}

/// Prints the recent runs: date, run id, outcome, duration, segment sizes; `*` marks the run
/// each date publishes.
pub async fn execute(args: StatusArgs) -> Result<()> {
    let job = load_job(&args.job)?;
    let opts = crate::pipeline::RunOptions {
        params: args.params.clone(),
        output: args.output.clone(),
        state: args.state.clone(),
        ..Default::default()
    };
    let plan = crate::pipeline::Plan::new(&job, &opts)?;
    let (root, state) = (&plan.root, &plan.state);
    let runs = storage::history::recent(root, args.limit).await?;
    outln!("job {}  output {}", job.name, root.display());
    for step in &job.steps {
        let Some(inc) = &step.incremental else {
            continue;
        };
        let dir = crate::steps::incremental::step_state(state, &step.name)?;
        let held = crate::steps::incremental::held_days(&dir, &inc.column).await?;
        let bytes: u64 = held.iter().map(|h| h.bytes).sum();
        match (held.first(), held.last()) {
            (Some(a), Some(b)) => outln!(
                "incremental step {}: {} days held, {} .. {}, {} rows, {} bytes",
                step.name,
                held.len(),
                a.day,
                b.day,
                held.iter().map(|h| h.rows).sum::<u64>(),
                bytes
            ),
            _ => outln!("incremental step {}: no days held", step.name),
        }
        if inc.merge.is_some() {
            match crate::steps::merged::kept_size(&dir).await {
                Some((rows, bytes, days)) => outln!(
                    "  merged rows: {rows} rows, {bytes} bytes, covering {days} days with rows"
                ),
                None => outln!("  merged rows: none kept yet"),
            }
        }
        if args.days {
            for h in &held {
                outln!(
                    "  {}  {}  {:>9} rows {:>10} bytes  computed {}",
                    h.day,
                    &h.fingerprint[..16.min(h.fingerprint.len())],
                    h.rows,
                    h.bytes,
                    h.computed_at
                );
            }
        }
    }
    for step in &job.steps {
        if matches!(step.kind, crate::job::StepKind::Sql(_)) {
            continue;
        }
        let kept: Option<crate::steps::refit::Kept<serde_json::Value>> =
            crate::steps::refit::load(state, &step.name).await;
        let policy = match step.refit.every_days {
            None => "refit on every run".to_string(),
            Some(d) => format!("refit every {d} days"),
        };
        match kept {
            Some(k) => {
                let next = step
                    .refit
                    .every_days
                    .map(|d| {
                        format!(
                            ", next fit for {}",
                            k.fitted_on + chrono::Days::new(u64::from(d))
                        )
                    })
                    .unwrap_or_default();
                outln!(
                    "model step {}: kept model fitted by run {} for {} on {} input rows ({policy}{next})",
                    step.name, k.run_id, k.fitted_on, k.input.rows
                );
            }
            None => outln!("model step {}: no model kept yet ({policy})", step.name),
        }
    }
    if runs.is_empty() {
        outln!("no runs recorded yet");
        return Ok(());
    }
    let mut current: BTreeMap<String, Option<String>> = BTreeMap::new();
    for r in &runs {
        if !current.contains_key(&r.date) {
            let p = storage::publish::read_pointer(root, &r.date).await?;
            current.insert(r.date.clone(), p.map(|p| p.run_id));
        }
    }
    outln!(
        "  {:<12} {:<31} {:<18} {:>9}  {:<5}  segments",
        "date",
        "run id",
        "outcome",
        "time",
        "kind"
    );
    for r in &runs {
        let live = current.get(&r.date).and_then(|c| c.as_deref()) == Some(r.run_id.as_str());
        let outcome = match (r.outcome.as_str(), live) {
            ("published", true) => "published *".to_string(),
            ("published", false) => "published (replaced)".to_string(),
            (o, _) => format!("{o} (exit {})", r.exit_code),
        };
        let segs = if r.segments.is_empty() {
            r.error
                .as_deref()
                .and_then(|e| e.lines().next())
                .map(|e| e.chars().take(100).collect())
                .unwrap_or_default()
        } else {
            r.segments
                .iter()
                .map(|(n, c)| format!("{n} {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        outln!(
            "  {:<12} {:<31} {:<18} {:>8.1}s  {:<5}  {}",
            r.date,
            r.run_id,
            outcome,
            r.seconds,
            r.kind.as_deref().unwrap_or("-"),
            segs
        );
    }
    outln!("* = the run the date's current.json publishes");
    Ok(())
}
