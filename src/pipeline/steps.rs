//! The steps stage: every step in order (sql, incremental, models), `previous_<step>` tables
//! from the previous published run, and transient tables released once nothing reads them.

use std::time::Duration;

use super::{Prepared, RunOptions};
use crate::engine::materialise::Held;
use crate::engine::{ordered, Engine};
use crate::error::{Error, Result};
use crate::job::{Job, StepKind};
use crate::steps::{StepInputs, StepResult};
use crate::storage;

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
    run_id: &str,
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
    let plan = &prepared.plan;
    let inputs = StepInputs {
        bindings: &plan.bindings,
        spill_threshold: prepared.engine.memory_limit / 4,
        state: &plan.state,
        incremental_state: !opts.no_state,
        full_refresh: opts.full_refresh,
        sources: &prepared.sources,
        facts: crate::steps::refit::RunFacts {
            run_id,
            day: plan.day(),
            force: opts.refit,
        },
    };
    let pb = progress_bar(opts, job.steps.len());
    // The previous published run, for steps listed in `previous`.
    let previous_run = if job.previous.is_empty() {
        None
    } else {
        plan.previous_run()
            .await?
            .map(|p| (plan.root.clone(), p.clone()))
    };
    let mut results = Vec::new();
    let mut released: Vec<&str> = Vec::new();
    // The sources, and the per-day rows of each incremental step once it ran (a later
    // incremental step may read them as its day-partitioned source).
    let mut sources = prepared.sources.clone();
    for (idx, step) in job.steps.iter().enumerate() {
        if let Some(pb) = &pb {
            pb.set_message(format!("step {}", step.name));
        }
        tracing::info!(step = %step.name, "step started");
        let step_inputs = StepInputs {
            sources: &sources,
            ..inputs.clone()
        };
        let mut r = crate::steps::run(&prepared.engine, step, &step_inputs).await?;
        // A plain SQL step's result held in memory (incremental steps are read from state).
        let in_memory = matches!(r.held, Held::Memory(_)) && r.incremental.is_none();
        if matches!(step.kind, StepKind::Sql(_)) && in_memory {
            if let Some(keys) = wanted_order(job, idx) {
                let started = std::time::Instant::now();
                if ordered::hold_in_order(&prepared.engine, &step.name, &keys).await? {
                    tracing::debug!(step = %step.name, keys = ?keys, ms = started.elapsed().as_millis() as u64, "held in key order");
                }
                r.elapsed += started.elapsed();
            }
        }
        if let Some(inc) = r.incremental.as_ref().filter(|i| i.merged.is_none()) {
            let dir = crate::steps::incremental::step_state(&plan.state, &step.name)?;
            sources.push(inc.as_source(&dir));
        }
        tracing::info!(step = %step.name, rows = r.rows, ms = r.elapsed.as_millis() as u64, "step finished");
        results.push(r);
        if let Some((_, to)) = job.previous.iter().find(|(s, _)| *s == step.name) {
            register_previous(&prepared.engine, &step.name, to, previous_run.as_ref()).await?;
        }
        if let Some(pb) = &pb {
            pb.inc(1);
        }
        if until == Some(step.name.as_str()) {
            break;
        }
        release_transient(job, idx, &prepared.engine, &mut released);
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    Ok(results)
}

/// The order later readers want step `idx`'s rows in, when one is known: the id of the first
/// later model step reading it, else the `order_by` of the first export of it.
fn wanted_order(job: &Job, idx: usize) -> Option<Vec<String>> {
    let name = job.steps[idx].name.as_str();
    let model = job.steps[idx + 1..].iter().find_map(|s| match &s.kind {
        StepKind::KMeans(c) if c.input == name => Some(vec![c.id.clone()]),
        StepKind::Lookalike(c) if c.input == name => Some(vec![c.id.clone()]),
        StepKind::Propensity(c) if c.input == name => Some(vec![c.id.clone()]),
        _ => None,
    });
    model.or_else(|| {
        job.exports
            .iter()
            .filter(|e| e.segments.is_none() && e.table == name)
            .find_map(|e| e.order_by.clone())
    })
}

/// Drops from memory the transient steps up to `idx` that no later part of the job names:
/// the rest of the job (later steps, segments, exports, gates, ...) is searched for the table
/// name as a whole word, so a table is kept whenever anything might read it (column names of
/// later steps left out: see [`only_table_names`]).
fn release_transient<'a>(job: &'a Job, idx: usize, engine: &Engine, released: &mut Vec<&'a str>) {
    let pending: Vec<&str> = job.steps[..=idx]
        .iter()
        .filter(|s| s.transient && !released.contains(&s.name.as_str()))
        .map(|s| s.name.as_str())
        .collect();
    if pending.is_empty() {
        return;
    }
    let mut rest = job.clone();
    rest.steps.drain(..=idx);
    for s in &mut rest.steps {
        only_table_names(&mut s.kind);
    }
    let rest = format!("{rest:?}").to_lowercase();
    for name in pending {
        if !names_word(&rest, &name.to_lowercase()) {
            let _ = engine.ctx.deregister_table(name);
            tracing::info!(step = %name, "transient table released: nothing later reads it");
            released.push(name);
        }
    }
}

/// Leaves out of a step what names columns, not tables (a column may be called like a step):
/// a query keeps the tables it references, a model step loses its feature lists, and a
/// propensity step the steps it computes again in a session of its own.
fn only_table_names(kind: &mut StepKind) {
    match kind {
        StepKind::Sql(q) => {
            if let Some(tables) = q.tables() {
                q.text = tables.join(" ");
            }
        }
        StepKind::KMeans(c) => {
            c.features = None;
            c.transforms.clear();
        }
        StepKind::Lookalike(c) => {
            c.features = None;
            c.transforms.clear();
        }
        StepKind::Propensity(c) => {
            c.features = None;
            c.transforms.clear();
            c.upstream.clear();
        }
        StepKind::Ltv(_) => {}
    }
}

/// Whether `word` occurs in `text` with no identifier character on either side.
fn names_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(ident)
            && !text[i + word.len()..].chars().next().is_some_and(ident)
    })
}

/// Registers `previous_<step>`: the step's Parquet export in the previous published run, or an
/// empty table of the step's schema when there is none (the first run).
pub async fn register_previous(
    engine: &Engine,
    step: &str,
    to: &str,
    previous: Option<&(storage::Location, crate::storage::publish::Pointer)>,
) -> Result<()> {
    let name = format!("previous_{step}");
    let _ = engine.ctx.deregister_table(name.as_str());
    if let Some((root, ptr)) = previous {
        let loc = root.child(&format!("{}/{to}", ptr.run))?;
        if crate::storage::read_bytes(&loc).await.is_ok() {
            engine
                .register_parquet_at(&name, &loc, &format!("the previous run's `{step}`"))
                .await?;
            tracing::info!(step, run = %ptr.run_id, "previous run's table registered as {name}");
            return Ok(());
        }
    }
    let df = engine.ctx.table(step).await.map_err(Error::unexpected)?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    engine.register_batches(&name, schema, vec![]).await
}
