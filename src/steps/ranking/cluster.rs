//! On a cluster engine: every candidate scored by the generated SQL, the audience written there.

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;

use super::{exclusion_column, output_schema};
use crate::engine::diagnostics::execution_error;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::features;
use crate::job::models::Reach;
use crate::quote::ident as quote;

/// What a scored step ranks on a cluster.
pub struct Scored<'a> {
    /// Input table.
    pub input: &'a str,
    /// Its id column.
    pub id: &'a str,
    /// Tables whose ids are left out.
    pub exclude: &'a [String],
    /// Tiers.
    pub reach: &'a [Reach],
    /// The score as a SQL expression over the input's columns.
    pub score_sql: String,
    /// Ids left out besides the exclusions (a lookalike's seed): a query with a text column
    /// `__keep`.
    pub keep: Option<&'a str>,
}

/// On a cluster: scores every candidate with the generated SQL and writes the audience there.
/// Tier sizes come from the fitting sample when it held every row (then they equal the local
/// engine's), else from counts over all candidates computed by the cluster. Returns the rows
/// written, the tier sizes and, when the cluster counted them, the candidates.
pub async fn score_on_cluster(
    engine: &Engine,
    name: &str,
    cfg: &Scored<'_>,
    sample_sizes: &[usize],
    tiers_by_size: &[(usize, String)],
    sample_rows: usize,
) -> Result<(usize, Vec<usize>, Option<usize>)> {
    let context = format!("step `{name}`");
    let id = quote(cfg.id);
    let mut filters = vec!["true".to_string()];
    if let Some(keep) = cfg.keep {
        filters.push(format!(
            "NOT EXISTS (SELECT 1 FROM ({keep}) k WHERE k.__keep = CAST(i.{id} AS VARCHAR))"
        ));
    }
    for (n, t) in cfg.exclude.iter().enumerate() {
        let col = exclusion_column(engine, name, t, cfg.id).await?;
        filters.push(format!(
            "NOT EXISTS (SELECT 1 FROM {} x{n} WHERE CAST(x{n}.{} AS VARCHAR) = CAST(i.{id} AS VARCHAR))",
            quote(t),
            quote(&col)
        ));
    }
    let candidates = format!(
        "SELECT CAST(i.{id} AS VARCHAR) AS {id}, {} AS \"score\" FROM {} i WHERE {}",
        cfg.score_sql,
        quote(cfg.input),
        filters.join(" AND ")
    );
    let total = engine
        .ctx
        .sql(&format!("SELECT * FROM {} ", quote(cfg.input)))
        .await
        .map_err(|e| execution_error(&context, e))?
        .count()
        .await
        .map_err(|e| execution_error(&context, e))?;
    let mut counted = None;
    let sizes: Vec<usize> = if total <= sample_rows {
        sample_sizes.to_vec()
    } else {
        // Counts over every candidate, for percentages and thresholds.
        let mut sums = vec!["COUNT(*) AS n".to_string()];
        for (i, r) in cfg.reach.iter().enumerate() {
            if let Reach::Threshold(t) = r {
                sums.push(format!(
                    "SUM(CASE WHEN \"score\" >= {} THEN 1 ELSE 0 END) AS t{i}",
                    features::lit(*t)
                ));
            }
        }
        let b = crate::engine::sql::collect(
            engine,
            &format!("SELECT {} FROM ({candidates}) c", sums.join(", ")),
            &format!("{context}: tier counts"),
        )
        .await?;
        let value = |col: &str| -> usize {
            b.first()
                .and_then(|b| b.column_by_name(col))
                .and_then(|a| cast(a, &DataType::Int64).ok())
                .and_then(|a| {
                    a.as_any().downcast_ref::<Int64Array>().map(|x| {
                        if x.is_null(0) {
                            0
                        } else {
                            x.value(0)
                        }
                    })
                })
                .unwrap_or(0) as usize
        };
        let n = value("n");
        counted = Some(n);
        cfg.reach
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                Reach::Percent(p) => ((n as f64) * p / 100.0).ceil() as usize,
                Reach::Count(c) => *c,
                Reach::Threshold(_) => value(&format!("t{i}")),
            })
            .map(|s| s.min(n))
            .collect()
    };
    let mut by_size: Vec<(usize, String)> = sizes
        .iter()
        .zip(cfg.reach)
        .map(|(s, r)| (*s, r.label()))
        .collect();
    if total <= sample_rows {
        by_size = tiers_by_size.to_vec();
    }
    by_size.sort_by_key(|t| t.0);
    let max = by_size.last().map(|t| t.0).unwrap_or(0);
    let cases: Vec<String> = by_size
        .iter()
        .map(|(s, l)| format!("WHEN \"rank\" <= {s} THEN '{}'", l.replace('\'', "''")))
        .collect();
    let sql = format!(
        "SELECT {id}, \"score\", \"rank\", CASE {} END AS \"tier\" FROM (\n  SELECT {id}, \"score\", CAST(ROW_NUMBER() OVER (ORDER BY \"score\" DESC, {id} ASC) AS BIGINT) AS \"rank\" FROM ({candidates}) c\n) r WHERE \"rank\" <= {max}",
        if cases.is_empty() { "WHEN false THEN ''".to_string() } else { cases.join(" ") }
    );
    let df = engine.ctx.sql(&sql).await.map_err(|e| {
        Error::internal(format!(
            "{context}: generated scoring SQL failed to plan: {e}"
        ))
    })?;
    let rows = engine
        .write_on_cluster_as(name, df, &context, output_schema(cfg.id))
        .await?;
    Ok((rows, sizes, counted))
}
