//! One run of a job, as a short sequence of stages:
//!
//! ```text
//! plan      clock read once, params bound once, output / state / run folder resolved once
//! check     every static check `check` makes, before any data is read
//! steps     sources' quality gates, then each step in order (sql, incremental, models)
//! exports   tables to Parquet / CSV
//! segments  priority, suppression, holdout, size gates, the membership table
//! exports   segment files in each platform's format
//! report    report.html
//! publish   models, manifest, the pointer written last, state, retention
//! ```
//!
//! `run` holds the overlap lock around them and records every attempt in the run history;
//! `check` runs the static checks alone.

mod check;
mod cost;
mod exports;
mod plan;
mod publish;
mod report;
mod segments;
mod steps;

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use tracing::Instrument;

pub use check::{check, CheckReport};
pub use plan::{prepare, Plan, Prepared};
pub use steps::{register_previous, run_steps};

use crate::engine::sources::SourceInfo;
use crate::engine::EngineConfig;
use crate::error::Result;
use crate::export::ExportResult;
use crate::job::{Bindings, Clock, Job};
use crate::steps::StepResult;
use crate::storage;
use crate::storage::lock::Lock;
use crate::storage::publish::RunFolder;

/// Options of one run, from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--date`: the `as_of` param.
    pub date: Option<NaiveDate>,
    /// `--param name=value`, repeated.
    pub params: Vec<String>,
    /// `--output URL`: overrides the job's output folder.
    pub output: Option<String>,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
    /// `--full-refresh`: recompute every day of incremental steps.
    pub full_refresh: bool,
    /// `--refit`: fit every model step, whatever its refit policy.
    pub refit: bool,
    /// Run incremental steps as plain steps over their whole window, without state (previews,
    /// queries).
    pub no_state: bool,
    /// `--state URL`: overrides the job's state folder.
    pub state: Option<String>,
    /// Where the run reads the time (the system clock unless a test says otherwise).
    pub clock: Clock,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Job name.
    pub job: String,
    /// Bound params.
    pub bindings: Bindings,
    /// Output folder.
    pub output: String,
    /// Sources read.
    pub sources: Vec<SourceInfo>,
    /// Steps run.
    pub steps: Vec<StepResult>,
    /// Files written.
    pub exports: Vec<ExportResult>,
    /// Run id.
    pub run_id: String,
    /// Segments built.
    pub segments: crate::segments::Segments,
    /// Segment files written.
    pub segment_exports: Vec<crate::export::segment_files::SegmentExportReport>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// Quality gates measured.
    pub gates: Vec<crate::quality::GateResult>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// For a night (state reused): the last full run's record, to compare its cost with.
    pub last_full: Option<storage::history::RunRecord>,
}

/// Wall time of each stage, in seconds, in run order (the manifest's `stage_seconds`).
#[derive(Debug, Default)]
pub struct Stages(Vec<(String, f64)>, Option<Instant>);

impl Stages {
    fn start() -> Stages {
        Stages(Vec::new(), Some(Instant::now()))
    }

    /// Ends the stage `name`, started when the previous one ended.
    fn lap(&mut self, name: &str) {
        let started = self.1.replace(Instant::now()).unwrap_or_else(Instant::now);
        let secs = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        self.0.push((name.to_string(), secs));
    }
}

/// Runs the whole job under the overlap lock: every step, the segments, every export, the
/// manifest, and finally the publication of the run folder. Every attempt that gets as far as
/// its output folder leaves a record in the run history, whatever its outcome.
pub async fn run(job: &Job, opts: &RunOptions) -> Result<RunReport> {
    let start = Instant::now();
    let plan = Plan::new(job, opts)?;
    let run = RunFolder::new(&plan.root, &plan.key, plan.now)?;
    let (root, key, started_at) = (plan.root.clone(), plan.key.clone(), plan.now);
    let span = tracing::info_span!("run", run_id = %run.run_id, job = %job.name, date = %key);
    let result = async {
        let lock_loc = root.child(&format!("{key}/_lock.json"))?;
        let lock = Lock::acquire(&lock_loc, &run.run_id, job.publish.lock_timeout).await?;
        tracing::info!(folder = %run.dir.display(), "run started");
        let result = async {
            // Incremental state is shared by every date of the job: one run at a time holds it.
            let state_lock = if job.steps.iter().any(|s| s.incremental.is_some()) && !opts.no_state
            {
                Some(
                    Lock::acquire(
                        &plan.state.child("incremental/_lock.json")?,
                        &run.run_id,
                        job.publish.lock_timeout,
                    )
                    .await?,
                )
            } else {
                None
            };
            // Sources' per-day counts are state too: kept under the same lock.
            let counts = state_lock.is_some().then_some(opts.full_refresh);
            let result = async {
                let mut prepared = Prepared::open(job, plan, counts).await?;
                let r = run_locked(job, opts, &mut prepared, &run).await;
                prepared.engine.clean_work().await;
                r
            }
            .await;
            if let Some(l) = state_lock {
                l.release().await;
            }
            result
        }
        .await;
        lock.release().await;
        result
    }
    .instrument(span.clone())
    .await;
    let result = result.map(|mut r| {
        r.elapsed = start.elapsed();
        r
    });
    let record = storage::history::RunRecord {
        run_id: run.run_id.clone(),
        job: job.name.clone(),
        date: key.clone(),
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        seconds: (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        outcome: if result.is_ok() {
            "published"
        } else {
            "failed"
        }
        .into(),
        exit_code: match &result {
            Ok(_) => 0,
            Err(e) => e.exit_code().code(),
        },
        error: result.as_ref().err().map(|e| crate::error::with_causes(e)),
        segments: result
            .as_ref()
            .map(|r| {
                r.segments
                    .segments
                    .iter()
                    .map(|s| (s.name.clone(), s.target))
                    .collect()
            })
            .unwrap_or_default(),
        kind: result
            .as_ref()
            .ok()
            .and_then(cost::kind)
            .map(str::to_string),
    };
    let _enter = span.enter();
    match &result {
        Ok(_) => tracing::info!(
            outcome = "published",
            seconds = record.seconds,
            "run finished"
        ),
        Err(e) => tracing::error!(
            outcome = "failed",
            exit_code = record.exit_code,
            seconds = record.seconds,
            "run failed: {}",
            e.to_string().lines().next().unwrap_or_default()
        ),
    }
    if let Err(e) = storage::history::record(&root, &record).await {
        tracing::warn!("could not write the run history record: {e}");
    }
    let last_full = cost::remember_or_compare(&root, &record).await;
    result.map(|mut r| {
        r.last_full = last_full;
        r
    })
}

/// The stages of a run, in order, under the run's locks.
async fn run_locked(
    job: &Job,
    opts: &RunOptions,
    prepared: &mut Prepared,
    run: &RunFolder,
) -> Result<RunReport> {
    check::before_run(job, prepared).await?;
    let mut stages = Stages::start();
    let mut gates = crate::quality::check_sources(
        &prepared.engine,
        job,
        &prepared.plan.bindings,
        &prepared.sources,
        prepared.plan.now.date_naive(),
        prepared
            .counts
            .map(|recount| (&prepared.plan.state, recount)),
    )
    .await?;
    crate::quality::enforce("source", &gates)?;
    let steps = run_steps(job, prepared, opts, None, &run.run_id).await?;
    let step_gates = crate::quality::check_steps(job, &steps);
    crate::quality::enforce("step", &step_gates)?;
    gates.extend(step_gates);
    stages.lap("steps");
    let exports = exports::tables(job, prepared, run).await?;
    stages.lap("table exports");
    let mut segs = crate::segments::Segments::default();
    let mut segment_exports = Vec::new();
    let mut warnings: Vec<String> = steps
        .iter()
        .filter_map(|st| {
            let m = st.model.as_ref()?;
            let d = m.distinct_points?;
            Some(format!(
                "step `{}`: only {d} distinct points in the fitting sample; k lowered to {}",
                st.name, m.k
            ))
        })
        .collect();
    if !job.segments.is_empty() {
        let (built, seg_gates) = segments::build(job, prepared, run).await?;
        segs = built;
        gates.extend(seg_gates);
        stages.lap("segments");
        segment_exports = exports::segment_files(job, prepared, run, &segs, &mut warnings).await?;
        stages.lap("segment files");
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    report::write(job, prepared, run, &steps, &segs).await?;
    stages.lap("report");
    let outputs = publish::Outputs {
        steps,
        exports,
        segments: segs,
        segment_exports,
        warnings,
        gates,
    };
    publish::publish(job, prepared, run, outputs, stages).await
}
