//! Writing output objects (Parquet, CSV) to any store, streaming batch by batch. Each object
//! becomes visible only when complete: local files are written to a staging file and renamed,
//! cloud objects are multipart uploads completed at the end.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::BatchCoalescer;
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::datatypes::SchemaRef;

use datafusion::parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory, ArrowWriter,
};
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::errors::Result as PqResult;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::file::writer::SerializedFileWriter;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::ObjectStoreExt;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::Location;
use crate::error::{Error, Result};

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// Rows written.
    pub rows: u64,
    /// Object size in bytes.
    pub bytes: u64,
    /// SHA-256 of the object's bytes (lower-case hex), computed as they were written.
    pub sha256: String,
}

fn write_err(loc: &Location, e: impl Into<crate::error::BoxError>) -> Error {
    super::classify_write("write", &loc.display(), e)
}

/// Rows per batch handed to the Parquet writer.
const WRITE_BATCH_ROWS: usize = 8192;

/// Parquet writer settings: zstd, and no creation-time metadata so reruns are byte-identical.
pub fn parquet_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid zstd level"),
        ))
        .set_created_by(format!("audiences {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Batches to write, each a result of the crate's own: the SQL engine's errors are mapped by
/// the caller (`engine::sql::execute`), so storage needs nothing of the engine.
pub type Batches = BoxStream<'static, Result<RecordBatch>>;

/// Batches already in memory, as a stream to write.
pub fn in_memory(batches: Vec<RecordBatch>) -> Batches {
    futures::stream::iter(batches.into_iter().map(Ok)).boxed()
}

/// Rows of a row group encoded together: the columns of this many rows are encoded in parallel,
/// one task per column, so each task is long enough to outweigh its scheduling.
const ENCODE_ROWS: usize = 65_536;

/// In-memory sink of the file writer, drained into the object after every row group.
#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuffer {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("buffer lock"))
    }
}

/// The row group being encoded: one writer per leaf column, and the rows it holds so far.
struct OpenGroup {
    writers: Vec<ArrowColumnWriter>,
    rows: usize,
}

/// Encodes Arrow batches into Parquet row groups with every column encoded in parallel (rayon).
/// Each column writer receives exactly the batches `ArrowWriter` would give it, so the file's
/// bytes are the same as a single-threaded writer's.
struct ParallelParquet {
    schema: SchemaRef,
    file: SerializedFileWriter<SharedBuffer>,
    factory: ArrowRowGroupWriterFactory,
    buffer: SharedBuffer,
    max_group_rows: usize,
    group: Option<OpenGroup>,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
}

impl ParallelParquet {
    fn try_new(schema: SchemaRef, props: WriterProperties) -> PqResult<Self> {
        let buffer = SharedBuffer::default();
        let max_group_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        let (file, factory) = ArrowWriter::try_new(buffer.clone(), schema.clone(), Some(props))?
            .into_serialized_writer()?;
        Ok(ParallelParquet {
            schema,
            file,
            factory,
            buffer,
            max_group_rows,
            group: None,
            pending: Vec::new(),
            pending_rows: 0,
        })
    }

    /// Takes one batch; returns bytes ready to go to the object (after a row group closes).
    fn write(&mut self, batch: RecordBatch) -> PqResult<Vec<u8>> {
        let mut out = Vec::new();
        let mut batch = batch;
        while batch.num_rows() > 0 {
            let held = self.group.as_ref().map_or(0, |g| g.rows) + self.pending_rows;
            let room = self.max_group_rows - held;
            let take = room.min(batch.num_rows());
            self.pending.push(batch.slice(0, take));
            self.pending_rows += take;
            batch = batch.slice(take, batch.num_rows() - take);
            if held + take == self.max_group_rows {
                self.encode_pending()?;
                out.extend(self.close_group()?);
            } else if self.pending_rows >= ENCODE_ROWS {
                self.encode_pending()?;
            }
        }
        Ok(out)
    }

    /// Encodes the held batches, each column on its own task.
    fn encode_pending(&mut self) -> PqResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let group = match &mut self.group {
            Some(g) => g,
            g => g.insert(OpenGroup {
                writers: self
                    .factory
                    .create_column_writers(self.file.flushed_row_groups().len())?,
                rows: 0,
            }),
        };
        let mut leaves: Vec<Vec<ArrowLeafColumn>> =
            (0..group.writers.len()).map(|_| Vec::new()).collect();
        for batch in self.pending.drain(..) {
            let mut i = 0;
            for (field, column) in self.schema.fields().iter().zip(batch.columns()) {
                for leaf in compute_leaves(field.as_ref(), column)? {
                    leaves[i].push(leaf);
                    i += 1;
                }
            }
        }
        group
            .writers
            .par_iter_mut()
            .zip(leaves.into_par_iter())
            .try_for_each(|(w, leaves)| leaves.iter().try_for_each(|l| w.write(l)))?;
        group.rows += self.pending_rows;
        self.pending_rows = 0;
        Ok(())
    }

    /// Closes the open row group (columns finished in parallel) and returns its bytes.
    fn close_group(&mut self) -> PqResult<Vec<u8>> {
        if let Some(group) = self.group.take() {
            let chunks = group
                .writers
                .into_par_iter()
                .map(ArrowColumnWriter::close)
                .collect::<PqResult<Vec<_>>>()?;
            let mut rg = self.file.next_row_group()?;
            for chunk in chunks {
                chunk.append_to_row_group(&mut rg)?;
            }
            rg.close()?;
        }
        Ok(self.buffer.take())
    }

    /// Writes what is held and the footer; returns the last bytes.
    fn finish(mut self) -> PqResult<Vec<u8>> {
        self.encode_pending()?;
        let mut out = self.close_group()?;
        self.file.close()?;
        out.extend(self.buffer.take());
        Ok(out)
    }
}

/// Streams record batches into one Parquet object, encoding columns in parallel.
pub async fn write_parquet(
    loc: &Location,
    schema: SchemaRef,
    mut stream: Batches,
) -> Result<Written> {
    let mut out = BufWriter::new(loc.store.clone(), loc.path.clone());
    let mut w = ParallelParquet::try_new(schema, parquet_properties()).map_err(|e| {
        Error::internal(format!(
            "cannot start Parquet writer for {}: {e}",
            loc.display()
        ))
    })?;
    let mut rows = 0u64;
    let mut bytes = 0u64;
    let mut digest = Sha256::new();
    // Page boundaries follow the batches written: re-chunk to a fixed size so the file's bytes
    // depend only on its rows, not on how the engine happened to batch them.
    // The chunks take the batches' own schema (which may differ from the declared one in
    // nullability), as the writer has always been given them.
    let mut chunks: Option<BatchCoalescer> = None;
    loop {
        let next = stream.next().await;
        let done = next.is_none();
        match next {
            Some(batch) => {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                chunks
                    .get_or_insert_with(|| BatchCoalescer::new(batch.schema(), WRITE_BATCH_ROWS))
                    .push_batch(batch)
                    .map_err(|e| write_err(loc, e))?;
            }
            None => {
                if let Some(c) = chunks.as_mut() {
                    c.finish_buffered_batch().map_err(|e| write_err(loc, e))?;
                }
            }
        }
        if let Some(c) = chunks.as_mut() {
            while let Some(b) = c.next_completed_batch() {
                let ready = w.write(b).map_err(|e| write_err(loc, e))?;
                if !ready.is_empty() {
                    bytes += ready.len() as u64;
                    digest.update(&ready);
                    out.write_all(&ready).await.map_err(|e| write_err(loc, e))?;
                }
            }
        }
        if done {
            break;
        }
    }
    let last = w.finish().map_err(|e| write_err(loc, e))?;
    bytes += last.len() as u64;
    digest.update(&last);
    out.write_all(&last).await.map_err(|e| write_err(loc, e))?;
    out.shutdown().await.map_err(|e| write_err(loc, e))?;
    Ok(Written {
        rows,
        bytes,
        sha256: hex::encode(digest.finalize()),
    })
}

/// Streams record batches into one CSV object with a header row.
pub async fn write_csv(loc: &Location, schema: SchemaRef, mut stream: Batches) -> Result<Written> {
    let mut out = BufWriter::new(loc.store.clone(), loc.path.clone());
    let mut rows = 0u64;
    let mut bytes = 0u64;
    let mut digest = Sha256::new();
    let mut first = true;
    while let Some(batch) = stream.next().await {
        let batch: RecordBatch = batch?;
        rows += batch.num_rows() as u64;
        let mut buf = Vec::new();
        {
            let mut w = CsvWriterBuilder::new().with_header(first).build(&mut buf);
            w.write(&batch).map_err(|e| write_err(loc, e))?;
        }
        first = false;
        bytes += buf.len() as u64;
        digest.update(&buf);
        out.write_all(&buf).await.map_err(|e| write_err(loc, e))?;
    }
    if first {
        // No batch at all: still write the header so the file is a valid, empty CSV.
        let header = schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(",")
            + "\n";
        bytes += header.len() as u64;
        digest.update(header.as_bytes());
        out.write_all(header.as_bytes())
            .await
            .map_err(|e| write_err(loc, e))?;
    }
    out.shutdown().await.map_err(|e| write_err(loc, e))?;
    Ok(Written {
        rows,
        bytes,
        sha256: hex::encode(digest.finalize()),
    })
}

/// Writes a small object in one request.
pub async fn put_bytes(loc: &Location, bytes: Vec<u8>) -> Result<()> {
    loc.store
        .put(&loc.path, object_store::PutPayload::from(bytes))
        .await
        .map_err(|e| write_err(loc, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int64Array, ListArray, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    fn batches(rows: usize, per_batch: usize) -> (SchemaRef, Vec<RecordBatch>) {
        let item = Arc::new(Field::new("item", DataType::Int64, true));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new("ids", DataType::List(item), true),
        ]));
        let out = (0..rows)
            .step_by(per_batch)
            .map(|s| {
                let e = (s + per_batch).min(rows);
                let id: ArrayRef = Arc::new(StringArray::from_iter_values(
                    (s..e).map(|i| format!("u{:07}", i * 7919 % 1_000_003)),
                ));
                let n: ArrayRef = Arc::new(Int64Array::from_iter(
                    (s..e).map(|i| (i % 5 != 0).then_some((i * i % 977) as i64)),
                ));
                let ids: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(
                    (s..e).map(|i| {
                        (i % 3 != 0)
                            .then(|| (0..i % 4).map(|j| Some((i + j) as i64)).collect::<Vec<_>>())
                    }),
                ));
                RecordBatch::try_new(schema.clone(), vec![id, n, ids]).unwrap()
            })
            .collect();
        (schema, out)
    }

    /// The parallel writer's bytes equal the single-threaded `ArrowWriter`'s for the same
    /// batches, across row-group boundaries that fall inside a batch, nulls and list columns.
    #[test]
    fn parallel_encoding_writes_the_bytes_of_the_plain_writer() {
        for (rows, per_batch, group) in [
            (0, 10, 100),
            (1, 1, 100),
            (250_000, 8192, 100_000),
            (30_000, 777, 4_096),
        ] {
            let (schema, input) = batches(rows, per_batch);
            let props = || {
                WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
                    .set_max_row_group_row_count(Some(group))
                    .build()
            };
            let mut plain = Vec::new();
            {
                let mut w =
                    ArrowWriter::try_new(&mut plain, schema.clone(), Some(props())).unwrap();
                for b in &input {
                    w.write(b).unwrap();
                }
                w.close().unwrap();
            }
            let mut w = ParallelParquet::try_new(schema.clone(), props()).unwrap();
            let mut parallel = Vec::new();
            for b in &input {
                parallel.extend(w.write(b.clone()).unwrap());
            }
            parallel.extend(w.finish().unwrap());
            assert_eq!(
                parallel.len(),
                plain.len(),
                "{rows} rows in groups of {group}"
            );
            assert!(
                parallel == plain,
                "{rows} rows in groups of {group}: bytes differ"
            );
        }
    }
}
