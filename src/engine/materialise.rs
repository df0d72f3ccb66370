//! Holding a result once: a query runs one time and its rows are registered as a table, in
//! memory, or in a local Parquet file past the spill threshold (DataFusion would otherwise
//! inline a view into every reader and compute it again).

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::{DataFrame, ParquetReadOptions};
use futures::StreamExt;

use super::diagnostics::execution_error;
use super::Engine;
use crate::error::{Error, Result};

/// Where a step's result lives during the run.
#[derive(Debug, Clone)]
pub enum Held {
    /// In memory, this many bytes.
    Memory(usize),
    /// Spilled to a local Parquet file of this many bytes.
    Spilled(PathBuf, u64),
    /// Written by the cluster's executors under the run's work folder.
    Cluster,
}

/// Runs `df` once and registers its result as table `name`: in memory, or in a local Parquet
/// file once it grows past `spill_threshold` bytes, so later readers never recompute it.
pub async fn materialise(
    engine: &Engine,
    name: &str,
    df: DataFrame,
    context: &str,
    spill_threshold: usize,
) -> Result<(usize, Held)> {
    if engine.is_distributed() {
        let rows = engine.write_on_cluster(name, df, context).await?;
        return Ok((rows, Held::Cluster));
    }
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let mut stream = df
        .execute_stream()
        .await
        .map_err(|e| execution_error(context, e))?;

    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut bytes = 0usize;
    let mut rows = 0usize;
    let mut spill: Option<(
        PathBuf,
        datafusion::parquet::arrow::ArrowWriter<std::fs::File>,
    )> = None;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| execution_error(context, e))?;
        if batch.num_rows() == 0 {
            continue;
        }
        rows += batch.num_rows();
        match &mut spill {
            Some((_, w)) => w
                .write(&batch)
                .map_err(|e| Error::internal(format!("{context}: spilling failed: {e}")))?,
            None => {
                bytes += batch.get_array_memory_size();
                batches.push(batch);
                if bytes > spill_threshold {
                    let path = engine.scratch_file(name)?;
                    let file = std::fs::File::create(&path).map_err(|e| {
                        Error::internal(format!(
                            "{context}: cannot create spill file {}: {e}",
                            path.display()
                        ))
                    })?;
                    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(
                        file,
                        schema.clone(),
                        None,
                    )
                    .map_err(|e| Error::caused(context, e))?;
                    for b in batches.drain(..) {
                        w.write(&b).map_err(|e| {
                            Error::internal(format!("{context}: spilling failed: {e}"))
                        })?;
                    }
                    tracing::info!(table = %name, path = %path.display(), "result larger than the spill threshold; held in a local Parquet file");
                    spill = Some((path, w));
                }
            }
        }
    }
    let _ = engine.ctx.deregister_table(name);
    let held = match spill {
        Some((path, w)) => {
            w.close()
                .map_err(|e| Error::internal(format!("{context}: spilling failed: {e}")))?;
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            engine
                .ctx
                .register_parquet(
                    name,
                    path.to_string_lossy().as_ref(),
                    ParquetReadOptions::default(),
                )
                .await
                .map_err(|e| Error::caused(context, e))?;
            Held::Spilled(path, size)
        }
        None => {
            engine.register_batches(name, schema, batches).await?;
            Held::Memory(bytes)
        }
    };
    Ok((rows, held))
}
