//! Tables held in key order. A step's result that later steps read sorted by an id (model
//! steps read their input by id; exports write by their `order_by`) is sorted once when it is
//! held and registered in partitions that declare its order, so the readers' sorts are
//! planned away instead of each sorting the same rows again (at 1,000,000 users the reference
//! job sorted `user_features` three times).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::compute::{concat, interleave, SortOptions};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::Column;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, SortExpr};
use rayon::prelude::*;

use super::Engine;
use crate::error::{Error, Result};

/// Rows per batch of a table held in order.
const BATCH_ROWS: usize = 32 * 1024;

/// Sorts the in-memory table `name` by `keys` (ascending, nulls last; ties by every other
/// column, so the order is the same on every run) and registers it again in that order.
/// Returns false, leaving the table as it was, when a key is not one of its columns.
pub async fn hold_in_order(engine: &Engine, name: &str, keys: &[String]) -> Result<bool> {
    if engine.is_distributed() {
        return Ok(false);
    }
    let df = engine
        .ctx
        .table(name)
        .await
        .map_err(|e| Error::internal(format!("table `{name}`: {e}")))?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    if keys.iter().any(|k| schema.index_of(k).is_err()) {
        return Ok(false);
    }
    let batches = df
        .collect()
        .await
        .map_err(|e| Error::internal(format!("table `{name}`: {e}")))?;
    let sorted = tokio::task::block_in_place(|| sort_by_keys(&schema, batches, keys))?;
    declare(engine, name, schema, sorted, keys)?;
    Ok(true)
}

/// Registers `batches` as table `name`, declaring them sorted by `keys` when they are (so a
/// reader's `ORDER BY keys` needs no sort); otherwise as any held table.
pub async fn register_in_order(
    engine: &Engine,
    name: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    keys: &[String],
) -> Result<()> {
    if engine.is_distributed()
        || keys.iter().any(|k| schema.index_of(k).is_err())
        || !tokio::task::block_in_place(|| is_sorted(&schema, &batches, keys))?
    {
        return engine.register_batches(name, schema, batches).await;
    }
    declare(engine, name, schema, batches, keys)
}

/// Registers `batches`, known to be sorted by `keys`, declaring that order.
fn declare(
    engine: &Engine,
    name: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    keys: &[String],
) -> Result<()> {
    let order: Vec<SortExpr> = keys
        .iter()
        .map(|k| Expr::Column(Column::new_unqualified(k.as_str())).sort(true, false))
        .collect();
    // As many partitions as the session plans for, each a contiguous run of the order: a
    // reader's sort becomes a merge of sorted runs, and scans stay parallel. (With fewer, the
    // planner splits the table itself and forgets the order.)
    let n = engine.ctx.copied_config().target_partitions().max(1);
    let per = batches.len().div_ceil(n).max(1);
    let mut parts: Vec<Vec<RecordBatch>> =
        batches.chunks(per).map(<[RecordBatch]>::to_vec).collect();
    parts.resize(n, Vec::new());
    let table = MemTable::try_new(schema, parts)
        .map_err(Error::unexpected)?
        .with_sort_order(vec![order]);
    let _ = engine.ctx.deregister_table(name);
    engine
        .ctx
        .register_table(name, Arc::new(table))
        .map_err(|e| Error::internal(format!("table `{name}`: {e}")))?;
    Ok(())
}

/// The rows of `columns` (whole-table arrays) in the row format, ascending, nulls last.
fn rows_of(columns: &[ArrayRef]) -> Result<Rows> {
    let fields = columns
        .iter()
        .map(|c| {
            SortField::new_with_options(
                c.data_type().clone(),
                SortOptions {
                    descending: false,
                    nulls_first: false,
                },
            )
        })
        .collect();
    let converter = RowConverter::new(fields).map_err(Error::unexpected)?;
    converter
        .convert_columns(columns)
        .map_err(Error::unexpected)
}

/// Column `i` of every batch, as one array.
fn whole_column(batches: &[RecordBatch], i: usize) -> Result<ArrayRef> {
    let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
    concat(&parts).map_err(Error::unexpected)
}

/// The key columns of `keys` over all batches, as whole arrays.
fn key_columns(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    keys: &[String],
) -> Result<Vec<ArrayRef>> {
    keys.iter()
        .map(|k| whole_column(batches, schema.index_of(k).map_err(Error::unexpected)?))
        .collect()
}

/// Whether rows can be ordered by a column of this type (nested types and binary are not).
pub fn sortable(dt: &DataType) -> bool {
    dt.is_primitive()
        || matches!(
            dt,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean
        )
}

/// Whether the rows are in ascending order of `keys` (nulls last).
fn is_sorted(schema: &SchemaRef, batches: &[RecordBatch], keys: &[String]) -> Result<bool> {
    if batches.iter().map(RecordBatch::num_rows).sum::<usize>() < 2 {
        return Ok(true);
    }
    let rows = rows_of(&key_columns(schema, batches, keys)?)?;
    Ok((1..rows.num_rows())
        .into_par_iter()
        .all(|i| rows.row(i - 1) <= rows.row(i)))
}

/// The batches' rows sorted by `keys` (ascending, nulls last), then by every other sortable
/// column; batches already in strictly ascending key order are returned as they are (no rows:
/// one empty batch).
pub fn sort_by_keys(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    keys: &[String],
) -> Result<Vec<RecordBatch>> {
    let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if n == 0 {
        return Ok(vec![RecordBatch::new_empty(schema.clone())]);
    }
    let rows = rows_of(&key_columns(schema, &batches, keys)?)?;
    if (1..n)
        .into_par_iter()
        .all(|i| rows.row(i - 1) < rows.row(i))
    {
        return Ok(batches);
    }
    let batches = &batches[..];
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.par_sort_unstable_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));
    let tied = order
        .par_windows(2)
        .any(|w| rows.row(w[0] as usize) == rows.row(w[1] as usize));
    drop(rows);
    if tied {
        // Equal keys: every other column decides, as the exports' own order does.
        let mut cols = key_columns(schema, batches, keys)?;
        for (i, f) in schema.fields().iter().enumerate() {
            if !keys.contains(f.name()) && sortable(f.data_type()) {
                cols.push(whole_column(batches, i)?);
            }
        }
        let rows = rows_of(&cols)?;
        order.par_sort_unstable_by(|&a, &b| {
            rows.row(a as usize)
                .cmp(&rows.row(b as usize))
                .then(a.cmp(&b))
        });
    }
    // (batch, row) of each global row index, for `interleave`.
    let mut at: Vec<(usize, usize)> = Vec::with_capacity(n);
    for (b, batch) in batches.iter().enumerate() {
        at.extend((0..batch.num_rows()).map(|r| (b, r)));
    }
    let chunks: Vec<&[u32]> = order.chunks(BATCH_ROWS).collect();
    chunks
        .par_iter()
        .map(|chunk| {
            let picks: Vec<(usize, usize)> = chunk.iter().map(|&i| at[i as usize]).collect();
            let columns = (0..schema.fields().len())
                .map(|c| {
                    let parts: Vec<&dyn Array> =
                        batches.iter().map(|b| b.column(c).as_ref()).collect();
                    interleave(&parts, &picks).map_err(Error::unexpected)
                })
                .collect::<Result<Vec<_>>>()?;
            RecordBatch::try_new(schema.clone(), columns).map_err(Error::unexpected)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    fn batch(schema: &SchemaRef, ids: &[Option<&str>], n: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(Int64Array::from(n.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn sorts_across_batches_with_nulls_last_and_ties_by_the_other_columns() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let batches = vec![
            batch(&schema, &[Some("b"), None, Some("a")], &[1, 2, 9]),
            batch(&schema, &[Some("a"), Some("c")], &[3, 4]),
        ];
        let keys = vec!["id".to_string()];
        assert!(!is_sorted(&schema, &batches, &keys).unwrap());
        let sorted = sort_by_keys(&schema, batches.clone(), &keys).unwrap();
        let ids = whole_column(&sorted, 0).unwrap();
        let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
        let got: Vec<Option<&str>> = ids.iter().collect();
        assert_eq!(got, vec![Some("a"), Some("a"), Some("b"), Some("c"), None]);
        let n = whole_column(&sorted, 1).unwrap();
        let n = n.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(n.values().to_vec(), vec![3, 9, 1, 4, 2]);
        assert!(is_sorted(&schema, &sorted, &keys).unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_held_in_order_is_read_in_order_without_a_sort() {
        let engine = Engine::new(&crate::engine::EngineConfig {
            target_partitions: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let ids: Vec<String> = (0..5000)
            .map(|i| format!("u{:05}", (i * 7919) % 5000))
            .collect();
        let batches: Vec<RecordBatch> = ids
            .chunks(700)
            .map(|c| {
                let refs: Vec<Option<&str>> = c.iter().map(|s| Some(s.as_str())).collect();
                batch(&schema, &refs, &vec![1; c.len()])
            })
            .collect();
        engine.register_batches("t", schema, batches).await.unwrap();
        assert!(hold_in_order(&engine, "t", &["id".to_string()])
            .await
            .unwrap());
        let df = engine
            .ctx
            .sql("SELECT id, n FROM t ORDER BY id")
            .await
            .unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        assert!(!shown.contains("SortExec"), "{shown}");
        let out = df.collect().await.unwrap();
        let got = whole_column(&out, 0).unwrap();
        let got: Vec<&str> = got
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
        want.sort_unstable();
        assert_eq!(got, want);
        // A key that is not a column leaves the table as it was.
        assert!(!hold_in_order(&engine, "t", &["nope".to_string()])
            .await
            .unwrap());
    }
}
