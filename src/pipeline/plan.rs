//! The first stage of a run: read the clock once, bind the params once and resolve every
//! location once (one store client each), so every later stage reads the same date and the
//! same folders. Then the session: the SQL engine with the job's sources registered.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::RunOptions;
use crate::engine::sources::{register_source, SourceInfo};
use crate::engine::{Engine, EngineConfig};
use crate::error::Result;
use crate::job::{Bindings, Job};
use crate::storage::publish::Pointer;
use crate::storage::{self, Location};

/// What a run decided before reading anything.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The one reading of the clock: the default `as_of`, the run id and the start time.
    pub now: DateTime<Utc>,
    /// The params, bound once.
    pub bindings: Bindings,
    /// The date folder: the `as_of` date, or `undated` for a job without one.
    pub key: String,
    /// The job's output folder (the parent of every date folder).
    pub root: Location,
    /// The state folder: models and incremental days kept between runs.
    pub state: Location,
    /// The SQL engine's settings: the command line's, with the job's engine and settings.
    pub engine: EngineConfig,
    /// The previous published run (an earlier date), looked up once when first asked for.
    previous: tokio::sync::OnceCell<Option<Pointer>>,
}

/// The current directory, the base of relative paths given on the command line.
pub fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
}

impl Plan {
    /// Reads the clock, binds the params and resolves the output and state locations.
    pub fn new(job: &Job, opts: &RunOptions) -> Result<Plan> {
        let now = opts.clock.now();
        let cwd = cwd();
        let bindings = job.bind(opts.date, &opts.params, &cwd, now)?;
        let root = storage::locate(&job.output_url(&bindings, opts.output.as_deref(), &cwd)?)?;
        // `--state`, else the job's `state`, else `state/` in the output folder `--output` moved.
        let state = match (&opts.state, job.state_explicit, &opts.output) {
            (Some(s), _, _) => storage::locate(&crate::job::params::resolve_path(s, &cwd))?,
            (None, false, Some(_)) => root.child("state")?,
            _ => storage::locate(&job.render_url(&job.state, &bindings)?)?,
        };
        let mut engine = opts.engine.clone();
        if engine.kind.is_none() {
            engine.kind = Some(job.engine.clone());
        }
        engine.settings = job
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Plan {
            key: date_key(&bindings),
            now,
            bindings,
            root,
            state,
            engine,
            previous: tokio::sync::OnceCell::new(),
        })
    }

    /// The run published for the latest date before this one, if any: what `previous` steps,
    /// size gates and deltas compare with. Looked up once per run.
    pub async fn previous_run(&self) -> Result<Option<&Pointer>> {
        let found = self
            .previous
            .get_or_try_init(|| async {
                Ok::<_, crate::error::Error>(
                    storage::publish::previous(&self.root, &self.key)
                        .await?
                        .map(|(_, p)| p),
                )
            })
            .await?;
        Ok(found.as_ref())
    }
}

impl Plan {
    /// The run's date: its `as_of`, or the day the run started for a job without one.
    pub fn day(&self) -> chrono::NaiveDate {
        chrono::NaiveDate::parse_from_str(&self.key, "%Y-%m-%d")
            .unwrap_or_else(|_| self.now.date_naive())
    }
}

/// The date folder of a run: the `as_of` date, or `undated` for a job without one.
pub fn date_key(bindings: &Bindings) -> String {
    bindings
        .get("as_of")
        .map(|v| v.to_template_text())
        .unwrap_or_else(|| "undated".to_string())
}

/// A run's session: the plan, the engine with every source registered, what the sources held.
pub struct Prepared {
    /// The run's plan.
    pub plan: Plan,
    /// The engine with sources registered.
    pub engine: Engine,
    /// What the sources held.
    pub sources: Vec<SourceInfo>,
    /// Whether sources' counts are kept per day in the state (`Some(true)`: counted again).
    pub counts: Option<bool>,
}

impl Prepared {
    /// Opens the engine the plan names and registers every source. With `counts` the sources'
    /// dirty-row counts are kept per day in the state (`Some(true)`: counted again first).
    pub async fn open(job: &Job, plan: Plan, counts: Option<bool>) -> Result<Prepared> {
        let mut engine = Engine::new(&plan.engine).await?;
        if engine.is_distributed() {
            // Executors write step results here: under the output, which must be shared storage.
            let id = format!(
                "{}-{}",
                plan.now.format("%Y%m%dT%H%M%S%.3f"),
                std::process::id()
            );
            engine.set_work(plan.root.child(&format!("_work/{id}/"))?);
            tracing::info!(engine = %engine.kind, work = %engine.work().map(|w| w.display()).unwrap_or_default(), "SQL runs on a Ballista cluster");
        }
        let mut sources = Vec::new();
        for s in &job.sources {
            let kept = counts.map(|recount| (&plan.state, recount));
            sources.push(register_source(&mut engine, job, s, &plan.bindings, kept).await?);
        }
        engine.register_store(&plan.root);
        engine.register_store(&plan.state);
        Ok(Prepared {
            plan,
            engine,
            sources,
            counts,
        })
    }
}

/// Plans the run and opens its session (for commands that run steps without publishing).
pub async fn prepare(job: &Job, opts: &RunOptions) -> Result<Prepared> {
    Prepared::open(job, Plan::new(job, opts)?, None).await
}
