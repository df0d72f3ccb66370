//! Data-quality gates and schema drift: checked before anything is published, so a night with
//! broken input stops with exit 65 and leaves the last good publication in place.
//!
//! - sources (`[sources.x.checks]`), measured on the rows the steps see (after the source's
//!   `drop`/`dedupe` cleaning): minimum rows, null rate per column, unique columns, value
//!   ranges, freshness of the newest date, and the share of dirty rows left out;
//! - steps: `min_rows` / `max_rows` of the result;
//! - segments: `min_size` / `max_size` of the target group and `max_change` against the previous
//!   published run.
//!
//! Every gate's measured value and threshold go into the manifest, passed or not; the error of
//! a failed run lists every failed gate of its stage.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Date32Type, Float64Type};
use serde::Serialize;

use crate::engine::diagnostics::execution_error;
use crate::engine::sources::SourceInfo;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::job::{Bindings, Job};
use crate::segments::Segments;
use crate::steps::StepResult;

/// One gate's outcome.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct GateResult {
    /// The gate, e.g. `source orders: max_null_rate.user_id`.
    pub gate: String,
    /// What was measured.
    pub measured: f64,
    /// The rule, e.g. `<= 0.01`.
    pub threshold: String,
    /// Whether it held.
    pub passed: bool,
}

fn gate(gate: String, measured: f64, threshold: String, passed: bool) -> GateResult {
    GateResult {
        gate,
        measured,
        threshold,
        passed,
    }
}

/// Fails with exit 65 when any gate failed, listing each with its value and threshold.
pub fn enforce(stage: &str, results: &[GateResult]) -> Result<()> {
    let failed: Vec<String> = results
        .iter()
        .filter(|g| !g.passed)
        .map(|g| {
            format!(
                "quality gate `{}` failed: measured {}, required {}",
                g.gate,
                fmt_num(g.measured),
                g.threshold
            )
        })
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::Data {
        context: Some(format!("{stage} quality gates")),
        message: format!(
            "{}\n  hint: nothing was published; look at the input, or change the threshold in the job file if the data is right",
            failed.join("\n  ")
        ),
        source: None,
    })
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.4}")
    }
}

use crate::quote::ident as q;

/// Days since 1970 of `as_of`, or of `today` (the run's one reading of the clock) for a job
/// without one.
fn as_of_days(bindings: &Bindings, today: chrono::NaiveDate) -> i64 {
    let d = bindings
        .get("as_of")
        .and_then(|v| crate::job::params::parse_date(&v.to_template_text()).ok())
        .unwrap_or(today);
    (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days()
}

/// Measures the gates of every source that declares some; `today` stands in for `as_of` in a
/// job without one.
pub async fn check_sources(
    engine: &Engine,
    job: &Job,
    bindings: &Bindings,
    infos: &[SourceInfo],
    today: chrono::NaiveDate,
    per_day: Option<(&crate::storage::Location, bool)>,
) -> Result<Vec<GateResult>> {
    let mut out = Vec::new();
    for s in &job.sources {
        let c = &s.checks;
        if c.is_empty() {
            continue;
        }
        let context = format!("source `{}`", s.name);
        let table = engine
            .ctx
            .table(s.name.as_str())
            .await
            .map_err(|e| execution_error(&context, e))?;
        let schema = table.schema().as_arrow().clone();
        let need = |col: &str, what: &str| -> Result<()> {
            if schema.field_with_name(col).is_err() {
                let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
                return Err(Error::job_msg(
                    Some(&s.name),
                    format!(
                        "checks.{what} names column `{col}`, which source `{}` does not have",
                        s.name
                    ),
                    Some(format!("its columns: {}", names.join(", "))),
                ));
            }
            Ok(())
        };
        let mut exprs = vec!["CAST(COUNT(*) AS DOUBLE)".to_string()];
        for (col, _) in &c.max_null_rate {
            need(col, "max_null_rate")?;
            exprs.push(format!(
                "CAST(SUM(CASE WHEN {} IS NULL THEN 1 ELSE 0 END) AS DOUBLE)",
                q(col)
            ));
        }
        for col in &c.unique {
            need(col, "unique")?;
            exprs.push(format!(
                "CAST(COUNT({0}) - COUNT(DISTINCT {0}) AS DOUBLE)",
                q(col)
            ));
        }
        for (col, lo, hi) in &c.range {
            need(col, "range")?;
            exprs.push(format!(
                "CAST(SUM(CASE WHEN CAST({0} AS DOUBLE) < {lo:?} OR CAST({0} AS DOUBLE) > {hi:?} THEN 1 ELSE 0 END) AS DOUBLE)",
                q(col)
            ));
        }
        let fresh_expr = match &c.fresh {
            Some((col, _)) => {
                need(col, "fresh")?;
                format!("MAX(CAST({} AS DATE))", q(col))
            }
            None => "CAST(NULL AS DATE)".to_string(),
        };
        // Counts only (no distinct values, no newest value): kept per day, so a night
        // measures its new days.
        let kept = match (per_day, s.partitions.first()) {
            (Some((state, recount)), Some(column))
                if crate::engine::cleaning::counts_per_day(s)
                    && c.unique.is_empty()
                    && c.fresh.is_none() =>
            {
                infos
                    .iter()
                    .find(|i| i.name == s.name)
                    .and_then(|i| crate::engine::sources::day_prints(&i.objects, column))
                    .map(|prints| (state, recount, column, prints))
            }
            _ => None,
        };
        let (values, fresh): (Vec<f64>, Option<i32>) = match kept {
            Some((state, recount, column, prints)) => {
                let day = q(column);
                let v = crate::engine::day_counts::measure(
                    engine,
                    &crate::engine::day_counts::folder(state, &s.name)?,
                    "gates",
                    &prints,
                    recount,
                    exprs.len(),
                    bindings,
                    &context,
                    |days| {
                        format!(
                            "SELECT CAST({day} AS VARCHAR), {} FROM {} WHERE CAST({day} AS VARCHAR) IN ({days}) GROUP BY 1",
                            exprs.join(", "),
                            q(&s.name)
                        )
                    },
                )
                .await?;
                (v, None)
            }
            None => {
                exprs.push(fresh_expr);
                let sql = format!("SELECT {} FROM {}", exprs.join(", "), q(&s.name));
                let batches = crate::engine::sql::collect(engine, &sql, &context).await?;
                let b = batches.iter().find(|b| b.num_rows() > 0).ok_or_else(|| {
                    Error::internal(format!("{context}: the gate query returned no row"))
                })?;
                let n = b.num_columns();
                let values = (0..n - 1)
                    .map(|i| {
                        let a = b.column(i).as_primitive::<Float64Type>();
                        if a.is_valid(0) {
                            a.value(0)
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let a = b.column(n - 1).as_primitive::<Date32Type>();
                (values, a.is_valid(0).then(|| a.value(0)))
            }
        };
        let num = |i: usize| -> f64 { values[i] };
        let rows = num(0);
        let mut i = 1;
        let name = &s.name;
        if let Some(min) = c.min_rows {
            out.push(gate(
                format!("source {name}: min_rows"),
                rows,
                format!(">= {min}"),
                rows >= min as f64,
            ));
        }
        for (col, max) in &c.max_null_rate {
            let rate = if rows > 0.0 { num(i) / rows } else { 0.0 };
            out.push(gate(
                format!("source {name}: max_null_rate.{col}"),
                rate,
                format!("<= {max}"),
                rate <= *max,
            ));
            i += 1;
        }
        for col in &c.unique {
            let d = num(i);
            out.push(gate(
                format!("source {name}: unique.{col} (repeated values)"),
                d,
                "= 0".into(),
                d == 0.0,
            ));
            i += 1;
        }
        for (col, lo, hi) in &c.range {
            let d = num(i);
            out.push(gate(
                format!("source {name}: range.{col} (rows outside)"),
                d,
                format!("= 0 (values in [{lo}, {hi}])"),
                d == 0.0,
            ));
            i += 1;
        }
        if let Some((col, max_days)) = &c.fresh {
            let age = match fresh {
                Some(d) => (as_of_days(bindings, today) - d as i64) as f64,
                None => f64::INFINITY,
            };
            out.push(gate(
                format!("source {name}: fresh.{col} (days from the newest value to as_of)"),
                age,
                format!("<= {max_days}"),
                age <= *max_days as f64,
            ));
        }
        if let Some(max) = c.max_dropped_rate {
            let dropped: u64 = infos
                .iter()
                .find(|i| &i.name == name)
                .map(|i| i.dropped.values().sum())
                .unwrap_or(0);
            let total = rows + dropped as f64;
            let rate = if total > 0.0 {
                dropped as f64 / total
            } else {
                0.0
            };
            out.push(gate(
                format!("source {name}: max_dropped_rate"),
                rate,
                format!("<= {max}"),
                rate <= max,
            ));
        }
    }
    Ok(out)
}

/// Row-count gates of the steps.
pub fn check_steps(job: &Job, steps: &[StepResult]) -> Vec<GateResult> {
    let mut out = Vec::new();
    for st in &job.steps {
        let Some(r) = steps.iter().find(|r| r.name == st.name) else {
            continue;
        };
        let rows = r.rows as f64;
        if let Some(min) = st.rows.0 {
            out.push(gate(
                format!("step {}: min_rows", st.name),
                rows,
                format!(">= {min}"),
                rows >= min as f64,
            ));
        }
        if let Some(max) = st.rows.1 {
            out.push(gate(
                format!("step {}: max_rows", st.name),
                rows,
                format!("<= {max}"),
                rows <= max as f64,
            ));
        }
    }
    out
}

/// Size gates of the segments; `previous` holds the previous published run's target sizes.
pub fn check_segments(
    job: &Job,
    segs: &Segments,
    previous: Option<&BTreeMap<String, u64>>,
) -> Vec<GateResult> {
    let mut out = Vec::new();
    for c in &segs.segments {
        let Some(def) = job.segments.iter().find(|s| s.name == c.defined_by) else {
            continue;
        };
        let g = &def.gates;
        let size = c.target as f64;
        if let Some(min) = g.min_size {
            out.push(gate(
                format!("segment {}: min_size", c.name),
                size,
                format!(">= {min}"),
                size >= min as f64,
            ));
        }
        if let Some(max) = g.max_size {
            out.push(gate(
                format!("segment {}: max_size", c.name),
                size,
                format!("<= {max}"),
                size <= max as f64,
            ));
        }
        if let (Some(max), Some(prev)) = (g.max_change, previous.and_then(|p| p.get(&c.name))) {
            let change = if *prev == 0 {
                if c.target == 0 {
                    0.0
                } else {
                    f64::INFINITY
                }
            } else {
                (size - *prev as f64).abs() / *prev as f64
            };
            out.push(gate(
                format!(
                    "segment {}: max_change (against {} in the previous run)",
                    c.name, prev
                ),
                change,
                format!("<= {max}"),
                change <= max,
            ));
        }
    }
    out
}
