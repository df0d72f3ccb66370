//! Ranked audiences of the scored step kinds (lookalike, propensity): the ids of seeds,
//! labels and exclusions, tiers by reach over users ordered by score, and the
//! `(id, score, rank, tier)` table they register (on a cluster, written there: `cluster`).

mod cluster;

pub use cluster::{score_on_cluster, Scored};

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};

use super::matrix::step_err;
use crate::engine::diagnostics::execution_error;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::job::models::Reach;
use crate::quote::ident as quote;

/// Sizes of the tiers over a ranked pool of `n` scores (descending).
pub fn tier_sizes(reach: &[Reach], sorted_scores: &[f64]) -> Vec<usize> {
    let n = sorted_scores.len();
    reach
        .iter()
        .map(|r| match r {
            Reach::Percent(p) => ((n as f64) * p / 100.0).ceil() as usize,
            Reach::Count(c) => *c,
            Reach::Threshold(t) => sorted_scores.partition_point(|s| *s >= *t),
        })
        .map(|s| s.min(n))
        .collect()
}

/// The output table's schema: `(id, score, rank, tier)`.
pub fn output_schema(id: &str) -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(id, DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("rank", DataType::Int64, false),
        Field::new("tier", DataType::Utf8, false),
    ]))
}

/// Candidates (row indices) by score, descending, ties by row index (rows are read in id
/// order, so that is the id order).
pub fn by_score(scores: &[f64], candidates: &[usize]) -> Vec<usize> {
    use rayon::slice::ParallelSliceMut;
    let mut order = candidates.to_vec();
    order.par_sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// The `(id, score, rank, tier)` rows of every candidate inside the largest tier, each
/// labelled with the smallest tier holding it; `order` is the candidates by score and `sizes`
/// the tier sizes.
pub fn audience_batch(
    id: &str,
    ids: &StringArray,
    scores: &[f64],
    order: &[usize],
    reach: &[Reach],
    sizes: &[usize],
) -> Result<RecordBatch> {
    let mut tiers_by_size: Vec<(usize, String)> = sizes
        .iter()
        .zip(reach)
        .map(|(s, r)| (*s, r.label()))
        .collect();
    tiers_by_size.sort_by_key(|t| t.0);
    let max = tiers_by_size.last().map(|t| t.0).unwrap_or(0);
    let out_ids: StringArray = order[..max].iter().map(|&i| Some(ids.value(i))).collect();
    let out_scores =
        Float64Array::from(order[..max].iter().map(|&i| scores[i]).collect::<Vec<_>>());
    let out_rank = Int64Array::from((1..=max as i64).collect::<Vec<_>>());
    let out_tier: StringArray = (0..max)
        .map(|r| {
            tiers_by_size
                .iter()
                .find(|(s, _)| r < *s)
                .map(|(_, l)| l.clone())
        })
        .collect();
    RecordBatch::try_new(
        output_schema(id),
        vec![
            Arc::new(out_ids) as ArrayRef,
            Arc::new(out_scores),
            Arc::new(out_rank),
            Arc::new(out_tier),
        ],
    )
    .map_err(Error::unexpected)
}

/// Every row's score computed by the generated SQL expression `score_sql` over `input`, in id
/// order (the order the in-memory matrices hold); `n` rows are expected.
pub async fn scores_by_sql(
    engine: &crate::engine::Engine,
    context: &str,
    input: &str,
    id: &str,
    score_sql: &str,
    n: usize,
) -> Result<Vec<f64>> {
    use crate::quote::ident as quote;
    let q = format!(
        "SELECT {id}, {score_sql} AS score FROM {} ORDER BY {id}",
        quote(input),
        id = quote(id)
    );
    let batches =
        crate::engine::sql::collect(engine, &q, &format!("{context}: generated scoring SQL"))
            .await?;
    let mut out = Vec::with_capacity(n);
    for b in &batches {
        let s = b
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(|| {
                Error::internal(format!("{context}: the generated score is not a double"))
            })?;
        out.extend(s.iter().map(|v| v.unwrap_or(f64::NAN)));
    }
    if out.len() != n {
        return Err(Error::internal(format!(
            "{context}: SQL scoring returned {} rows for {n}",
            out.len()
        )));
    }
    Ok(out)
}

/// The ids in the first column of `df`'s result, as text; `context` names the query in errors.
pub async fn ids(df: datafusion::prelude::DataFrame, context: &str) -> Result<HashSet<String>> {
    let batches = df
        .collect()
        .await
        .map_err(|e| execution_error(context, e))?;
    let mut out = HashSet::new();
    for b in batches {
        if b.num_columns() == 0 {
            continue;
        }
        let c = cast(b.column(0), &DataType::Utf8).map_err(Error::unexpected)?;
        let s = c.as_any().downcast_ref::<StringArray>().expect("utf8");
        out.extend(s.iter().flatten().map(str::to_string));
    }
    Ok(out)
}

/// The ids a query of step `step` returns (its first column); `what` says which query it is.
pub async fn id_set(engine: &Engine, step: &str, sql: &str, what: &str) -> Result<HashSet<String>> {
    let df = engine
        .ctx
        .sql(sql)
        .await
        .map_err(|e| step_err(step, format!("{what}: {}", e.strip_backtrace()), None))?;
    ids(df, &format!("step `{step}` ({what})")).await
}

/// The id column of an exclusion table: the step's id column when it has one, else its first.
pub async fn exclusion_column(
    engine: &Engine,
    step: &str,
    table: &str,
    id: &str,
) -> Result<String> {
    let df = engine.ctx.table(table).await.map_err(|_| {
        step_err(
            step,
            format!("exclusion table `{table}` does not exist"),
            None,
        )
    })?;
    Ok(if df.schema().field_with_unqualified_name(id).is_ok() {
        id.to_string()
    } else {
        df.schema().field(0).name().clone()
    })
}

/// Every id of the exclusion tables `exclude`.
pub async fn excluded_ids(
    engine: &Engine,
    step: &str,
    exclude: &[String],
    id: &str,
) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    for t in exclude {
        let col = exclusion_column(engine, step, t, id).await?;
        out.extend(
            id_set(
                engine,
                step,
                &format!("SELECT {} FROM {}", quote(&col), quote(t)),
                &format!("exclusion `{t}`"),
            )
            .await?,
        );
    }
    Ok(out)
}
