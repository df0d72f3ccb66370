//! What a propensity step reads for an earlier date: its feature step computed again with
//! `$as_of` bound to that date (in a session of its own, so the run's tables stay as they are),
//! and the label query over a window.

use std::collections::HashSet;

use chrono::NaiveDate;

use super::super::matrix::step_err;
use super::super::ranking::ids;
use super::super::StepInputs;
use super::PropensityConfig;
use crate::engine::diagnostics::execution_error;
use crate::engine::sql::{param_values, tables_read};
use crate::engine::Engine;
use crate::error::Result;
use crate::job::{Bindings, ParamValue, StepKind};

/// The run's params with `as_of` moved to `day`.
fn bound_at(bindings: &Bindings, day: NaiveDate) -> Bindings {
    let mut b = bindings.clone();
    b.insert("as_of".into(), ParamValue::Date(day));
    b
}

/// A session holding every table of `engine`, where the step's input and the sql steps it
/// reads are computed again as of `day` (without incremental state: the state holds the run's
/// own window).
pub async fn features_at(
    engine: &Engine,
    name: &str,
    cfg: &PropensityConfig,
    inputs: &StepInputs<'_>,
    day: NaiveDate,
) -> Result<Engine> {
    let started = std::time::Instant::now();
    let fork = engine.planner().await?;
    let bindings = bound_at(inputs.bindings, day);
    let at = StepInputs {
        bindings: &bindings,
        incremental_state: false,
        full_refresh: false,
        ..inputs.clone()
    };
    for (i, step) in cfg.upstream.iter().enumerate() {
        // Boxed: `run` is what called this step.
        Box::pin(super::super::run(&fork, step, &at)).await?;
        // An intermediate result leaves memory once no later step of the chain reads it.
        let later: Vec<String> = cfg.upstream[i + 1..]
            .iter()
            .flat_map(|s| match &s.kind {
                StepKind::Sql(q) => q.tables().unwrap_or_else(|| vec![s.name.clone()]),
                _ => vec![],
            })
            .collect();
        for done in &cfg.upstream[..=i] {
            if done.name != cfg.input && !later.iter().any(|t| t.eq_ignore_ascii_case(&done.name)) {
                let _ = fork.ctx.deregister_table(done.name.as_str());
            }
        }
    }
    tracing::info!(
        step = name,
        as_of = %day,
        steps = cfg.upstream.len(),
        ms = started.elapsed().as_millis() as u64,
        "features computed as of an earlier date"
    );
    Ok(fork)
}

/// The ids the label query returns for `[start, end)`.
pub async fn labels(
    engine: &Engine,
    name: &str,
    cfg: &PropensityConfig,
    bindings: &Bindings,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<HashSet<String>> {
    let mut b = bindings.clone();
    b.insert("label_start".into(), ParamValue::Date(start));
    b.insert("label_end".into(), ParamValue::Date(end));
    let df = label_query(engine, name, cfg).await?;
    let column = label_column(name, cfg, &df)?;
    let context = format!("step `{name}` (label for {start} .. {end})");
    let df = df
        .with_param_values(param_values(&b))
        .and_then(|d| d.select_columns(&[column.as_str()]))
        .map_err(|e| execution_error(&context, e))?;
    ids(df, &context).await
}

/// The label query planned (parameters not yet bound).
pub async fn label_query(
    engine: &Engine,
    name: &str,
    cfg: &PropensityConfig,
) -> Result<datafusion::prelude::DataFrame> {
    engine
        .ctx
        .sql(cfg.label.trim().trim_end_matches(';'))
        .await
        .map_err(|e| step_err(name, format!("label: {}", e.strip_backtrace()), None))
}

/// The label's id column: the step's id column when the query returns it, else its first.
pub fn label_column(
    name: &str,
    cfg: &PropensityConfig,
    df: &datafusion::prelude::DataFrame,
) -> Result<String> {
    let fields = df.schema().fields();
    if fields.iter().any(|f| f.name() == &cfg.id) {
        return Ok(cfg.id.clone());
    }
    match fields.first() {
        Some(f) if fields.len() == 1 => Ok(f.name().clone()),
        _ => Err(step_err(
            name,
            format!(
                "the label query returns no id column `{}` (it returns {})",
                cfg.id,
                fields
                    .iter()
                    .map(|f| format!("`{}`", f.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(format!(
                "return the ids as `{}`, or a single column of ids",
                cfg.id
            )),
        )),
    }
}

/// The first day of data of the day-partitioned sources the label reads (from their
/// `col=YYYY-MM-DD` folders), with the source's name; `None` when none is partitioned by day.
pub async fn first_label_day(
    engine: &Engine,
    name: &str,
    cfg: &PropensityConfig,
    inputs: &StepInputs<'_>,
) -> Result<Option<(String, NaiveDate)>> {
    let df = label_query(engine, name, cfg).await?;
    let read = tables_read(df.logical_plan());
    let mut first: Option<(String, NaiveDate)> = None;
    for source in inputs.sources.iter().filter(|s| read.contains(&s.name)) {
        let days = source.objects.iter().filter_map(|o| partition_day(&o.path));
        if let Some(day) = days.min() {
            if first.as_ref().is_none_or(|(_, d)| day < *d) {
                first = Some((source.name.clone(), day));
            }
        }
    }
    Ok(first)
}

/// The date of a `col=YYYY-MM-DD` folder in a path.
fn partition_day(path: &str) -> Option<NaiveDate> {
    path.split('/').find_map(|part| {
        let (_, v) = part.split_once('=')?;
        NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_days_are_read_from_folders() {
        assert_eq!(
            partition_day("data/orders/dt=2026-11-02/part-0.parquet"),
            NaiveDate::from_ymd_opt(2026, 11, 2)
        );
        assert_eq!(partition_day("data/orders/part-0.parquet"), None);
        assert_eq!(partition_day("data/region=eu/x.parquet"), None);
    }
}
