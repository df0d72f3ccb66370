//! Kept merged rows in key order. A night touches few keys: the kept rows are read in file
//! order (already sorted by key), split into the keys the night's days touch and the rest, and
//! the night's re-merged rows are interleaved back in key order. Untouched rows are never
//! grouped or sorted again.

use std::collections::HashSet;

use bytes::Bytes;
use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::compute::{cast, filter_record_batch, interleave_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::job::Merge;

/// Rows per output batch of the interleaved result.
const OUT_ROWS: usize = 65_536;

/// The merge keys of a schema as byte-comparable rows, in the order the kept rows are sorted
/// (ascending, nulls last, as [`super::update::sort_by_keys`]).
pub(super) struct Keys {
    schema: SchemaRef,
    index: Vec<usize>,
    conv: RowConverter,
}

impl Keys {
    /// The keys of `merge` in `schema` (the full merge's schema).
    pub(super) fn new(merge: &Merge, schema: SchemaRef) -> Result<Keys> {
        let index = merge
            .by
            .iter()
            .map(|k| schema.index_of(k).map_err(Error::unexpected))
            .collect::<Result<Vec<_>>>()?;
        let fields = index
            .iter()
            .map(|&i| {
                SortField::new_with_options(
                    schema.field(i).data_type().clone(),
                    SortOptions {
                        descending: false,
                        nulls_first: false,
                    },
                )
            })
            .collect();
        let conv = RowConverter::new(fields).map_err(Error::unexpected)?;
        Ok(Keys {
            schema,
            index,
            conv,
        })
    }

    /// The key rows of a batch whose key columns carry the merge keys' names (cast to the
    /// kept types when they differ).
    fn rows(&self, batch: &RecordBatch) -> Result<Rows> {
        let cols = self
            .index
            .iter()
            .map(|&i| {
                let f = self.schema.field(i);
                let c = batch
                    .column_by_name(f.name())
                    .ok_or_else(|| Error::internal(format!("merge key `{}` missing", f.name())))?;
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    cast(c, f.data_type()).map_err(Error::unexpected)
                }
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        self.conv.convert_columns(&cols).map_err(Error::unexpected)
    }

    /// Every key of the batches, as a set.
    pub(super) fn set(&self, batches: &[RecordBatch]) -> Result<HashSet<Box<[u8]>>> {
        let mut out = HashSet::new();
        for b in batches {
            let rows = self.rows(b)?;
            out.extend(rows.iter().map(|r| Box::<[u8]>::from(r.as_ref())));
        }
        Ok(out)
    }

    /// Splits kept rows into those whose key is in `touched` and the others (order kept).
    pub(super) fn split(
        &self,
        kept: Vec<RecordBatch>,
        touched: &HashSet<Box<[u8]>>,
    ) -> Result<(Vec<RecordBatch>, Vec<RecordBatch>)> {
        let mut rest = Vec::with_capacity(kept.len());
        let mut hit = Vec::new();
        for b in kept {
            let rows = self.rows(&b)?;
            let mask: BooleanArray = rows
                .iter()
                .map(|r| Some(touched.contains(r.as_ref())))
                .collect();
            if mask.true_count() > 0 {
                hit.push(filter_record_batch(&b, &mask).map_err(Error::unexpected)?);
                let keep = datafusion::arrow::compute::not(&mask).map_err(Error::unexpected)?;
                rest.push(filter_record_batch(&b, &keep).map_err(Error::unexpected)?);
            } else {
                rest.push(b);
            }
        }
        Ok((rest, hit))
    }

    /// Interleaves two runs sorted by key whose keys are disjoint into one sorted run.
    pub(super) fn interleave(
        &self,
        a: Vec<RecordBatch>,
        b: Vec<RecordBatch>,
    ) -> Result<Vec<RecordBatch>> {
        let a: Vec<RecordBatch> = a.into_iter().filter(|x| x.num_rows() > 0).collect();
        let b: Vec<RecordBatch> = b.into_iter().filter(|x| x.num_rows() > 0).collect();
        let all: Vec<RecordBatch> = a
            .iter()
            .chain(b.iter())
            .map(|x| self.conform(x))
            .collect::<Result<_>>()?;
        let rows_a = a.iter().map(|x| self.rows(x)).collect::<Result<Vec<_>>>()?;
        let rows_b = b.iter().map(|x| self.rows(x)).collect::<Result<Vec<_>>>()?;
        // (batch, row) positions of each run in its own order.
        let pos = |rows: &[Rows], base: usize| -> Vec<(usize, usize)> {
            rows.iter()
                .enumerate()
                .flat_map(|(i, r)| (0..r.num_rows()).map(move |j| (base + i, j)))
                .collect()
        };
        let (pa, pb) = (pos(&rows_a, 0), pos(&rows_b, a.len()));
        let key = |p: (usize, usize)| {
            if p.0 < a.len() {
                rows_a[p.0].row(p.1)
            } else {
                rows_b[p.0 - a.len()].row(p.1)
            }
        };
        let mut order = Vec::with_capacity(pa.len() + pb.len());
        let (mut i, mut j) = (0, 0);
        while i < pa.len() && j < pb.len() {
            if key(pb[j]) < key(pa[i]) {
                order.push(pb[j]);
                j += 1;
            } else {
                order.push(pa[i]);
                i += 1;
            }
        }
        order.extend_from_slice(&pa[i..]);
        order.extend_from_slice(&pb[j..]);
        let refs: Vec<&RecordBatch> = all.iter().collect();
        if order.is_empty() {
            return Ok(vec![RecordBatch::new_empty(self.schema.clone())]);
        }
        order
            .chunks(OUT_ROWS)
            .map(|c| interleave_record_batch(&refs, c).map_err(Error::unexpected))
            .collect()
    }

    /// A batch with the kept schema's types (a sum's type can widen in a merge).
    pub(super) fn conform(&self, b: &RecordBatch) -> Result<RecordBatch> {
        let cols = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                let c = b.column_by_name(f.name()).ok_or_else(|| {
                    Error::internal(format!("merged column `{}` missing", f.name()))
                })?;
                cast(c, f.data_type()).map_err(Error::unexpected)
            })
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new(self.schema.clone(), cols).map_err(Error::unexpected)
    }
}

/// The rows of a Parquet file in file order.
pub(super) fn read_in_order(bytes: Vec<u8>, what: &str) -> Result<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
        .and_then(|b| b.with_batch_size(OUT_ROWS).build())
        .map_err(|e| Error::data(what, format!("cannot read the kept merged rows: {e}")))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::data(what, format!("cannot read the kept merged rows: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(schema: &SchemaRef, rows: &[(Option<&str>, i64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    /// Splitting kept rows by the touched keys and interleaving the re-merged rows back gives
    /// the order a full sort gives (nulls last), with the untouched rows as they were.
    #[test]
    fn split_and_interleave_keep_the_full_sort_order() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Utf8, true),
            Field::new("brand", DataType::Int64, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let merge = Merge {
            by: vec!["user".into(), "brand".into()],
            columns: vec![("n".into(), crate::job::MergeOp::Sum)],
        };
        let keys = Keys::new(&merge, schema.clone()).unwrap();
        // Kept rows in key order, over two batches.
        let kept = vec![
            batch(
                &schema,
                &[(Some("a"), 1, 1), (Some("a"), 2, 1), (Some("b"), 1, 1)],
            ),
            batch(
                &schema,
                &[(Some("c"), 5, 1), (Some("d"), 1, 1), (None, 1, 1)],
            ),
        ];
        // The night touches a/2 and d/1 (changed), removes c/5, and adds b/7, e/1 and null/0.
        let touching = vec![batch(
            &schema,
            &[
                (Some("a"), 2, 0),
                (Some("d"), 1, 0),
                (Some("c"), 5, 0),
                (Some("b"), 7, 0),
                (Some("e"), 1, 0),
                (None, 0, 0),
            ],
        )];
        let touched = keys.set(&touching).unwrap();
        let (rest, hit) = keys.split(kept, &touched).unwrap();
        let hit_rows: usize = hit.iter().map(|b| b.num_rows()).sum();
        assert_eq!(hit_rows, 3, "a/2, c/5 and d/1 are touched");
        // The night's merged rows for the touched keys (c/5 gone), sorted.
        let night = vec![batch(
            &schema,
            &[
                (Some("a"), 2, 9),
                (Some("b"), 7, 9),
                (Some("d"), 1, 9),
                (Some("e"), 1, 9),
                (None, 0, 9),
            ],
        )];
        let out = keys.interleave(rest, night).unwrap();
        let all = datafusion::arrow::compute::concat_batches(&schema, &out).unwrap();
        let expect = batch(
            &schema,
            &[
                (Some("a"), 1, 1),
                (Some("a"), 2, 9),
                (Some("b"), 1, 1),
                (Some("b"), 7, 9),
                (Some("d"), 1, 9),
                (Some("e"), 1, 9),
                (None, 0, 9),
                (None, 1, 1),
            ],
        );
        assert_eq!(all, expect);
    }
}
