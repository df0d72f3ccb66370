//! One run of a job, end to end: bind params → register sources → run SQL steps → exports,
//! and `check`, which plans everything against the real source schemas without running it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::engine::sources::{register_source, SourceInfo};
use crate::engine::steps::{register_view, run_step, StepResult};
use crate::engine::{Engine, EngineConfig};
use crate::error::{Error, Problem, Result};
use crate::export::{run_export, ExportResult};
use crate::job::{Bindings, Job};
use crate::storage;

/// Options of one run, from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--date`: the `as_of` param.
    pub date: Option<String>,
    /// `--param name=value`, repeated.
    pub params: Vec<String>,
    /// `--output URL`: overrides the job's output folder.
    pub output: Option<String>,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
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
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

/// A prepared session: params bound, sources registered.
pub struct Prepared {
    /// The engine with sources registered.
    pub engine: Engine,
    /// Bound params.
    pub bindings: Bindings,
    /// What the sources held.
    pub sources: Vec<SourceInfo>,
}

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
}

/// Binds params and registers every source.
pub async fn prepare(job: &Job, opts: &RunOptions) -> Result<Prepared> {
    let bindings = job.bind(opts.date.as_deref(), &opts.params, &cwd())?;
    let mut engine = Engine::new(&engine_config(job, opts))?;
    let mut sources = Vec::new();
    for s in &job.sources {
        sources.push(register_source(&mut engine, job, s, &bindings).await?);
    }
    Ok(Prepared {
        engine,
        bindings,
        sources,
    })
}

fn engine_config(job: &Job, opts: &RunOptions) -> EngineConfig {
    let mut cfg = opts.engine.clone();
    cfg.settings = job
        .settings
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    cfg
}

fn spill_dir(opts: &RunOptions) -> PathBuf {
    opts.engine
        .spill_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
}

fn progress_bar(opts: &RunOptions, len: usize) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !opts.progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(len as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    Some(pb)
}

/// Runs steps in order up to and including `until` (all when `None`).
pub async fn run_steps(
    job: &Job,
    prepared: &Prepared,
    opts: &RunOptions,
    until: Option<&str>,
) -> Result<Vec<StepResult>> {
    if let Some(u) = until {
        if !job.steps.iter().any(|s| s.name == u) {
            let names: Vec<String> = job.steps.iter().map(|s| s.name.clone()).collect();
            return Err(Error::Usage(format!(
                "job `{}` has no step `{u}` (steps: {})",
                job.name,
                names.join(", ")
            )));
        }
    }
    let threshold = prepared.engine.memory_limit / 4;
    let dir = spill_dir(opts);
    let state = state_location(job, &prepared.bindings)?;
    let pb = progress_bar(opts, job.steps.len());
    let mut results = Vec::new();
    for step in &job.steps {
        if let Some(pb) = &pb {
            pb.set_message(format!("step {}", step.name));
        }
        tracing::info!(step = %step.name, "step started");
        let previous = match &step.kind {
            crate::job::StepKind::KMeans(_) => load_model(&state, &step.name).await,
            _ => None,
        };
        let r = run_step(
            &prepared.engine,
            step,
            &prepared.bindings,
            threshold,
            &dir,
            previous.as_ref(),
        )
        .await?;
        tracing::info!(step = %step.name, rows = r.rows, ms = r.elapsed.as_millis() as u64, "step finished");
        results.push(r);
        if let Some(pb) = &pb {
            pb.inc(1);
        }
        if until == Some(step.name.as_str()) {
            break;
        }
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    Ok(results)
}

/// Runs the whole job: every step, then every export.
pub async fn run(job: &Job, opts: &RunOptions) -> Result<RunReport> {
    let start = Instant::now();
    let mut prepared = prepare(job, opts).await?;
    let output_url = job.output_url(&prepared.bindings, opts.output.as_deref(), &cwd())?;
    let output = storage::locate(&output_url)?;
    let steps = run_steps(job, &prepared, opts, None).await?;
    let mut exports = Vec::new();
    for e in &job.exports {
        let r = run_export(&mut prepared.engine, job, e, &prepared.bindings, &output).await?;
        tracing::info!(table = %r.table, url = %r.url, rows = r.rows, "export written");
        exports.push(r);
    }
    // Models go with the outputs, and into the state folder once the run has succeeded, so the
    // next run matches its clusters to these.
    let state = state_location(job, &prepared.bindings)?;
    for r in &steps {
        if let Some(model) = &r.lookalike {
            let text =
                serde_json::to_vec_pretty(model).map_err(|e| Error::internal(e.to_string()))?;
            let loc = output.child(&format!("models/{}.json", r.name))?;
            crate::storage::write::put_bytes(&loc, text).await?;
        }
        if let Some(model) = &r.model {
            let text =
                serde_json::to_vec_pretty(model).map_err(|e| Error::internal(e.to_string()))?;
            for base in [&output, &state] {
                let loc = base.child(&format!("models/{}.json", r.name))?;
                prepared.engine.register_store(&loc);
                crate::storage::write::put_bytes(&loc, text.clone()).await?;
            }
        }
    }
    Ok(RunReport {
        job: job.name.clone(),
        bindings: prepared.bindings,
        output: output.display(),
        sources: prepared.sources,
        steps,
        exports,
        elapsed: start.elapsed(),
    })
}

/// The job's state folder (models kept between runs).
pub fn state_location(job: &Job, bindings: &Bindings) -> Result<storage::Location> {
    storage::locate(&job.render_url(&job.state, bindings)?)
}

/// The model a previous run saved for `step`, if any (an unreadable one is ignored with a warning).
pub async fn load_model(
    state: &storage::Location,
    step: &str,
) -> Option<crate::models::kmeans_step::KMeansModel> {
    use object_store::ObjectStoreExt;
    let loc = state.child(&format!("models/{step}.json")).ok()?;
    let bytes = loc.store.get(&loc.path).await.ok()?.bytes().await.ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(step, path = %loc.display(), "ignoring unreadable previous model: {e}");
            None
        }
    }
}

/// Everything `check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Problems, in job order.
    pub problems: Vec<Problem>,
    /// Sources whose schemas were read.
    pub sources: Vec<SourceInfo>,
    /// Steps planned successfully.
    pub steps_ok: Vec<String>,
}

/// Plans every step against the sources' real schemas without running anything; collects every
/// problem rather than stopping at the first.
pub async fn check(job: &Job, opts: &RunOptions) -> Result<CheckReport> {
    let bindings = job.bind(opts.date.as_deref(), &opts.params, &cwd())?;
    let mut engine = Engine::new(&engine_config(job, opts))?;
    let mut report = CheckReport::default();
    let mut failed_tables: Vec<String> = Vec::new();
    for s in &job.sources {
        match register_source(&mut engine, job, s, &bindings).await {
            Ok(info) => report.sources.push(info),
            Err(e) => {
                failed_tables.push(s.name.clone());
                report.problems.push(Problem {
                    location: None,
                    step: Some(format!("source {}", s.name)),
                    message: e.to_string(),
                    hint: None,
                });
            }
        }
    }
    for step in &job.steps {
        match register_view(&engine, step, &bindings).await {
            Ok(()) => report.steps_ok.push(step.name.clone()),
            Err(p) => {
                failed_tables.push(step.name.clone());
                // A step reading a table that already failed would only repeat that problem.
                let knock_on = failed_tables[..failed_tables.len() - 1].iter().any(|t| {
                    p.message.contains(&format!("'{t}'"))
                        || p.message.contains(&format!("`{t}`"))
                        || p.message.contains(&format!(" {t} "))
                });
                if !knock_on {
                    report.problems.push(p);
                }
            }
        }
    }
    Ok(report)
}
