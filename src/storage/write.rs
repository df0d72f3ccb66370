//! Writing output objects (Parquet, CSV) to any store, streaming batch by batch. Each object
//! becomes visible only when complete: local files are written to a staging file and renamed,
//! cloud objects are multipart uploads completed at the end.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::BatchCoalescer;
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::async_writer::AsyncArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::ObjectStoreExt;
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

/// Streams record batches into one Parquet object.
pub async fn write_parquet(
    loc: &Location,
    schema: SchemaRef,
    mut stream: Batches,
) -> Result<Written> {
    let writer = BufWriter::new(loc.store.clone(), loc.path.clone());
    let mut w =
        AsyncArrowWriter::try_new(writer, schema, Some(parquet_properties())).map_err(|e| {
            Error::internal(format!(
                "cannot start Parquet writer for {}: {e}",
                loc.display()
            ))
        })?;
    let mut rows = 0u64;
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
                w.write(&b).await.map_err(|e| write_err(loc, e))?;
            }
        }
        if done {
            break;
        }
    }
    w.close().await.map_err(|e| write_err(loc, e))?;
    let bytes = loc
        .store
        .head(&loc.path)
        .await
        .map(|m| m.size)
        .map_err(|e| write_err(loc, e))?;
    Ok(Written { rows, bytes })
}

/// Streams record batches into one CSV object with a header row.
pub async fn write_csv(loc: &Location, schema: SchemaRef, mut stream: Batches) -> Result<Written> {
    let mut out = BufWriter::new(loc.store.clone(), loc.path.clone());
    let mut rows = 0u64;
    let mut bytes = 0u64;
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
        out.write_all(header.as_bytes())
            .await
            .map_err(|e| write_err(loc, e))?;
    }
    out.shutdown().await.map_err(|e| write_err(loc, e))?;
    Ok(Written { rows, bytes })
}

/// Writes a small object in one request.
pub async fn put_bytes(loc: &Location, bytes: Vec<u8>) -> Result<()> {
    loc.store
        .put(&loc.path, object_store::PutPayload::from(bytes))
        .await
        .map_err(|e| write_err(loc, e))?;
    Ok(())
}
