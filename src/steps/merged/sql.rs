//! The SQL of merged steps: the merge of per-day rows into one row per key, the hidden counts
//! kept beside the merged rows, and the subtraction of the days that left.

use std::collections::BTreeSet;

use datafusion::arrow::datatypes::{DataType, SchemaRef};

use crate::job::{Merge, MergeOp};
use crate::quote::ident as quote;

/// The count of rows of a key merged in (kept with the rows: a key whose days all left goes).
pub(super) const ROWS: &str = "__rows";

/// The hidden count of non-null values of a summed column that has nulls (a sum with no value
/// left is NULL, not 0).
pub(super) fn count_col(c: &str) -> String {
    format!("__n_{c}")
}

/// The summed columns.
pub(super) fn summed(merge: &Merge) -> impl Iterator<Item = &str> {
    merge
        .columns
        .iter()
        .filter(|(_, op)| matches!(op, MergeOp::Sum))
        .map(|(c, _)| c.as_str())
}

/// The summed columns whose values are counted: those with nulls in some day's rows.
pub(super) type Counted = BTreeSet<String>;

/// The hidden columns kept beside the merged rows, in order.
pub(super) fn hidden_columns(counted: &Counted) -> Vec<String> {
    std::iter::once(ROWS.to_string())
        .chain(counted.iter().map(|c| count_col(c)))
        .collect()
}

/// The aggregate of one merged column.
pub(super) fn aggregate(col: &str, op: &MergeOp) -> String {
    let c = quote(col);
    match op {
        MergeOp::Sum => format!("SUM({c}) AS {c}"),
        MergeOp::Min => format!("MIN({c}) AS {c}"),
        MergeOp::Max => format!("MAX({c}) AS {c}"),
        MergeOp::FirstBy(o) => format!("first_value({c} ORDER BY {} ASC) AS {c}", quote(o)),
        MergeOp::LastBy(o) => format!("first_value({c} ORDER BY {} DESC) AS {c}", quote(o)),
    }
}

/// The merge query over `from` (rows with the key, merged and, when `hidden`, hidden columns),
/// unordered.
pub(super) fn merge_sql(merge: &Merge, from: &str, hidden: Option<&Counted>) -> String {
    let keys: Vec<String> = merge.by.iter().map(|k| quote(k)).collect();
    let mut aggs: Vec<String> = merge
        .columns
        .iter()
        .map(|(c, op)| aggregate(c, op))
        .collect();
    if let Some(counted) = hidden {
        aggs.extend(
            hidden_columns(counted)
                .iter()
                .map(|h| format!("CAST(SUM({q}) AS BIGINT) AS {q}", q = quote(h))),
        );
    }
    format!(
        "SELECT {k}, {} FROM {from} GROUP BY {k}",
        aggs.join(", "),
        k = keys.join(", ")
    )
}

/// The key and merged columns, in order (the step's public columns).
pub(super) fn public_columns(merge: &Merge) -> impl Iterator<Item = &str> {
    merge
        .by
        .iter()
        .chain(merge.columns.iter().map(|(c, _)| c))
        .map(String::as_str)
}

/// The key and merged columns of per-day rows in `table`, and when `hidden` their counts.
pub(super) fn rows_of(merge: &Merge, table: &str, hidden: Option<&Counted>) -> String {
    let mut cols: Vec<String> = public_columns(merge).map(quote).collect();
    if let Some(counted) = hidden {
        cols.push(format!("CAST(1 AS BIGINT) AS {}", quote(ROWS)));
        cols.extend(counted.iter().map(|c| {
            format!(
                "CAST(CASE WHEN {q} IS NULL THEN 0 ELSE 1 END AS BIGINT) AS {n}",
                q = quote(c),
                n = quote(&count_col(c))
            )
        }));
    }
    format!("SELECT {} FROM {}", cols.join(", "), quote(table))
}

/// Whether a summed column of this type subtracts exactly (integers and decimals do; floats
/// round, so a key losing a day of a float sum is merged again from its remaining days).
pub(super) fn exact(t: &DataType) -> bool {
    t.is_integer() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..))
}

/// The kept rows minus the aggregated rows of the days that left (`r`): sums subtract, counts
/// of rows and values subtract, and `__redo` marks keys whose other merged values may have
/// come from a day that left (a tie on a min or max, or a float sum): those are merged again
/// from their remaining days.
pub(super) fn subtract_sql(
    merge: &Merge,
    kept: &str,
    left: &str,
    day_schema: &SchemaRef,
    counted: &Counted,
) -> String {
    let on: Vec<String> = merge
        .by
        .iter()
        .map(|k| format!("(k.{q} IS NOT DISTINCT FROM r.{q})", q = quote(k)))
        .collect();
    let mut cols: Vec<String> = merge.by.iter().map(|k| format!("k.{}", quote(k))).collect();
    let mut redo: Vec<String> = Vec::new();
    for (c, op) in &merge.columns {
        let q = quote(c);
        let ty = day_schema
            .field_with_name(c)
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        match op {
            MergeOp::Sum if exact(&ty) && counted.contains(c) => {
                let n = quote(&count_col(c));
                cols.push(format!(
                    "CASE WHEN k.{n} - COALESCE(r.{n}, 0) = 0 THEN NULL ELSE k.{q} - COALESCE(r.{q}, 0) END AS {q}"
                ));
            }
            // No day's rows have a null here: every kept row has a value.
            MergeOp::Sum if exact(&ty) => {
                cols.push(format!("k.{q} - COALESCE(r.{q}, 0) AS {q}"));
            }
            MergeOp::Sum => {
                cols.push(format!("k.{q} AS {q}"));
                redo.push(format!("r.{q} IS NOT NULL"));
            }
            MergeOp::Min | MergeOp::Max => {
                cols.push(format!("k.{q} AS {q}"));
                redo.push(format!("r.{q} = k.{q}"));
            }
            MergeOp::FirstBy(o) | MergeOp::LastBy(o) => {
                cols.push(format!("k.{q} AS {q}"));
                redo.push(format!("r.{o} = k.{o}", o = quote(o)));
            }
        }
    }
    for h in hidden_columns(counted) {
        let q = quote(&h);
        cols.push(format!("k.{q} - COALESCE(r.{q}, 0) AS {q}"));
    }
    let redo = if redo.is_empty() {
        "FALSE".to_string()
    } else {
        format!(
            "(r.{rows} IS NOT NULL AND COALESCE({}, FALSE))",
            redo.join(" OR "),
            rows = quote(ROWS)
        )
    };
    cols.push(format!("{redo} AS __redo"));
    format!(
        "SELECT {} FROM {} k LEFT JOIN {} r ON {}",
        cols.join(", "),
        quote(kept),
        quote(left),
        on.join(" AND ")
    )
}
