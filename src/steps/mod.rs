//! The step kinds, behind one small interface: [`plan`] checks a step against the tables
//! registered so far and registers a stand-in of its result (for `check`, `sql` and `run`'s
//! static checks: no data is read); [`run`] computes it and registers the result under the
//! step's name. One module per kind, each with its model input, fitting, evaluation and output:
//!
//! - `sql`: one query (the default kind); `incremental`: a sql step computed per day, kept as state;
//! - `kmeans`: clusters with stable ids and profiles; `lookalike`: a seed audience expanded and
//!   tiered; `ltv`: BG/NBD and Gamma-Gamma lifetime value;
//! - `propensity`: the probability of an outcome in the next days, learned from an earlier
//!   date's features and what followed;
//! - `matrix`: the feature matrix the model kinds share; `ranking`: tiers of scored audiences.
//!
//! The numeric kernels they call live in `ml/`.

pub mod incremental;
pub mod kmeans;
pub mod lookalike;
pub mod ltv;
pub mod matrix;
pub mod merged;
pub mod propensity;
pub mod ranking;
pub mod refit;
pub mod sql;

use std::time::{Duration, Instant};

use crate::engine::materialise::Held;
use crate::engine::sources::SourceInfo;
use crate::engine::Engine;
use crate::error::{Problem, Result};
use crate::job::{Bindings, Step, StepKind};
use crate::storage::Location;

/// What running a step produced.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// Step name.
    pub name: String,
    /// Rows in the result.
    pub rows: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Where the result is held.
    pub held: Held,
    /// The fitted model, for k-means steps.
    pub model: Option<kmeans::KMeansModel>,
    /// The fitted model and its quality report, for lookalike steps.
    pub lookalike: Option<lookalike::LookalikeModel>,
    /// The fitted models, for ltv steps.
    pub ltv: Option<ltv::LtvModel>,
    /// The fitted model and its backtest, for propensity steps.
    pub propensity: Option<propensity::PropensityModel>,
    /// What an incremental step computed and reused.
    pub incremental: Option<incremental::IncrementalReport>,
    /// Which model a model step used: fitted in this run or kept from an earlier one.
    pub model_use: Option<refit::ModelUse>,
    /// A freshly fitted model to keep in the state folder once the run is published.
    pub keep: Option<Vec<u8>>,
}

impl StepResult {
    /// A result of `rows` rows held as `held`, with no model.
    pub fn new(step: &Step, rows: usize, held: Held) -> StepResult {
        StepResult {
            name: step.name.clone(),
            rows,
            elapsed: Duration::ZERO,
            held,
            model: None,
            lookalike: None,
            ltv: None,
            propensity: None,
            incremental: None,
            model_use: None,
            keep: None,
        }
    }
}

/// A problem of `step`, located where the job file declares it.
pub fn problem(step: &Step, message: String, hint: Option<String>) -> Problem {
    Problem {
        location: Some(step.declared_at.clone()),
        step: Some(step.name.clone()),
        message,
        hint,
    }
}

/// What a step's run reads besides its own configuration.
#[derive(Clone)]
pub struct StepInputs<'a> {
    /// The run's params.
    pub bindings: &'a Bindings,
    /// Results larger than this many bytes are held in a local Parquet file.
    pub spill_threshold: usize,
    /// The job's state folder: previous models, incremental days.
    pub state: &'a Location,
    /// Whether incremental steps keep per-day state (`run`), or compute their whole window
    /// as plain steps (previews, queries).
    pub incremental_state: bool,
    /// `--full-refresh`: recompute every day of incremental steps.
    pub full_refresh: bool,
    /// What the sources held (incremental steps fingerprint their days with it).
    pub sources: &'a [SourceInfo],
    /// The run's id and date, and `--refit`: what model steps' refit decisions read.
    pub facts: refit::RunFacts<'a>,
}

/// Checks a step against the tables registered so far and registers a stand-in of its result.
pub async fn plan(
    engine: &Engine,
    step: &Step,
    bindings: &Bindings,
) -> std::result::Result<(), Problem> {
    match &step.kind {
        StepKind::Sql(q) => {
            sql::plan(engine, step, q, bindings).await?;
            match step
                .incremental
                .as_ref()
                .and_then(|i| i.merge.as_ref().map(|m| (i, m)))
            {
                Some((inc, m)) => merged::without_state(engine, step, m, &inc.column, false)
                    .await
                    .map(|_| ())
                    .map_err(|e| problem(step, e.to_string(), None)),
                None => Ok(()),
            }
        }
        StepKind::KMeans(cfg) => kmeans::plan(engine, step, cfg).await,
        StepKind::Lookalike(cfg) => lookalike::plan(engine, step, cfg).await,
        StepKind::Ltv(cfg) => ltv::plan(engine, step, cfg).await,
        StepKind::Propensity(cfg) => propensity::plan(engine, step, cfg, bindings).await,
    }
}

/// Runs a step and registers its result under the step's name.
pub async fn run(engine: &Engine, step: &Step, inputs: &StepInputs<'_>) -> Result<StepResult> {
    let start = Instant::now();
    let mut result = match &step.kind {
        // On a cluster an incremental step computes its whole window there: per-day state is
        // kept by the local engine only.
        StepKind::Sql(q) => match &step.incremental {
            // Over a plain step (not among the day-partitioned inputs) there are no days to keep.
            Some(inc)
                if inputs.incremental_state
                    && !engine.is_distributed()
                    && inputs.sources.iter().any(|s| s.name == inc.source) =>
            {
                incremental::run_step(engine, step, q, inc, inputs).await?
            }
            Some(inc) => {
                let mut r = sql::run(engine, step, q, inputs).await?;
                if let Some(m) = &inc.merge {
                    if let Some(rows) =
                        merged::without_state(engine, step, m, &inc.column, true).await?
                    {
                        r.rows = rows;
                    }
                }
                r
            }
            None => sql::run(engine, step, q, inputs).await?,
        },
        StepKind::KMeans(cfg) => kmeans::run_step(engine, step, cfg, inputs).await?,
        StepKind::Lookalike(cfg) => lookalike::run_step(engine, step, cfg, inputs).await?,
        StepKind::Ltv(cfg) => ltv::run_step(engine, step, cfg, inputs).await?,
        StepKind::Propensity(cfg) => propensity::run_step(engine, step, cfg, inputs).await?,
    };
    result.elapsed = start.elapsed();
    Ok(result)
}
