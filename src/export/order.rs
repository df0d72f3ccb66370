//! The deterministic row order of table exports. Rows are sorted by the `order_by` keys and,
//! to break ties, by every other column. Encoding all those columns for the sort costs more
//! than the sort itself on a wide table, and keys are usually unique (an id), so the export
//! first sorts by the keys alone and watches the sorted stream for two equal keys: without one,
//! that order is already the full order; with one, the export starts again with every column.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::storage::write::Batches;

/// Passes `stream` (sorted by `keys`) through unchanged until two consecutive rows have equal
/// keys; then sets `tie` and ends the stream with an error, so the writer stops.
pub fn stop_at_tie(stream: Batches, keys: &[String], tie: Arc<AtomicBool>) -> Batches {
    let keys = keys.to_vec();
    let mut converter: Option<RowConverter> = None;
    let mut last: Option<OwnedRow> = None;
    stream
        .map(move |item| {
            let batch = item?;
            if batch.num_rows() == 0 {
                return Ok(batch);
            }
            let cols = keys
                .iter()
                .map(|k| {
                    batch.column_by_name(k).cloned().ok_or_else(|| {
                        Error::internal(format!("sorted export has no key column `{k}`"))
                    })
                })
                .collect::<Result<Vec<ArrayRef>>>()?;
            if converter.is_none() {
                let fields = cols
                    .iter()
                    .map(|c| SortField::new(c.data_type().clone()))
                    .collect();
                converter = Some(
                    RowConverter::new(fields)
                        .map_err(|e| Error::internal(format!("export key rows: {e}")))?,
                );
            }
            let rows = converter
                .as_ref()
                .expect("set above")
                .convert_columns(&cols)
                .map_err(|e| Error::internal(format!("export key rows: {e}")))?;
            let repeated = last.as_ref().is_some_and(|l| l.row() == rows.row(0))
                || (1..rows.num_rows()).any(|i| rows.row(i) == rows.row(i - 1));
            if repeated {
                tie.store(true, Ordering::Relaxed);
                return Err(Error::internal("the export's order_by keys repeat"));
            }
            last = Some(rows.row(rows.num_rows() - 1).owned());
            Ok(batch)
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn batch(ids: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(Int64Array::from(vec![0; ids.len()])),
            ],
        )
        .unwrap()
    }

    async fn pass(batches: Vec<RecordBatch>) -> (usize, bool) {
        let tie = Arc::new(AtomicBool::new(false));
        let stream = stop_at_tie(
            crate::storage::write::in_memory(batches),
            &["id".to_string()],
            tie.clone(),
        );
        let ok = stream
            .filter(|r| std::future::ready(r.is_ok()))
            .count()
            .await;
        (ok, tie.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn a_repeated_key_is_found_within_and_across_batches() {
        assert_eq!(
            pass(vec![batch(&["a", "b"]), batch(&["c"])]).await,
            (2, false)
        );
        assert!(pass(vec![batch(&["a", "a"]), batch(&["c"])]).await.1);
        // The tie straddles two batches: the first passes, the second stops the stream.
        assert_eq!(
            pass(vec![batch(&["a", "b"]), batch(&["b", "c"])]).await,
            (1, true)
        );
    }
}
