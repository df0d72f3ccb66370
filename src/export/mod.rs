//! Exports: tables of the run written to Parquet or CSV in a deterministic row order, and
//! segments written as ad-platform files (`segment_files`), with the manifest of the run.

pub mod files;
pub mod manifest;
pub mod order;
pub mod platform;
pub mod segment_files;
pub mod verify;

pub use crate::job::exports::{format_name, SegmentExport};

use std::time::{Duration, Instant};

use datafusion::logical_expr::{col, SortExpr};

use crate::engine::diagnostics::execution_error;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::job::{Bindings, Export, ExportFormat, Job};
use crate::storage::{self, write};

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportResult {
    /// The table exported.
    pub table: String,
    /// Where it went.
    pub url: String,
    /// Rows written.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
    /// SHA-256 of the bytes written (lower-case hex).
    pub sha256: String,
    /// Wall time.
    pub elapsed: Duration,
}

/// Resolves an export destination: an absolute URL or path as is, else below `output`.
pub fn destination(
    job: &Job,
    export: &Export,
    bindings: &Bindings,
    output: &storage::Location,
) -> Result<storage::Location> {
    let to = export.to.as_str();
    if to.contains("://") || to.starts_with('/') {
        storage::locate(&job.render_url(to, bindings)?)
    } else {
        output.child(&job.render_relative(to, bindings)?)
    }
}

/// Writes one export.
pub async fn run_export(
    engine: &mut Engine,
    job: &Job,
    export: &Export,
    bindings: &Bindings,
    output: &storage::Location,
) -> Result<ExportResult> {
    let start = Instant::now();
    let loc = destination(job, export, bindings, output)?;
    engine.register_store(&loc);
    let context = format!("export of `{}` to {}", export.table, loc.display());
    let mut df = engine
        .ctx
        .table(export.table.as_str())
        .await
        .map_err(|e| Error::job_msg(None, format!("{context}: {e}"), None))?;
    let bad_column = |c: &str, df: &datafusion::prelude::DataFrame| {
        let names = crate::engine::sql::column_names(df);
        Error::job_msg(
            None,
            format!("{context}: table `{}` has no column `{c}`", export.table),
            Some(crate::hint::nearest_columns(c, &names)),
        )
    };
    if let Some(cols) = &export.columns {
        for c in cols {
            if df.schema().field_with_unqualified_name(c).is_err() {
                return Err(bad_column(c, &df));
            }
        }
        df = df
            .select_columns(&cols.iter().map(String::as_str).collect::<Vec<_>>())
            .map_err(|e| execution_error(&context, e))?;
    }
    let keys: Vec<String> = match &export.order_by {
        Some(k) => k.clone(),
        None => df
            .schema()
            .fields()
            .iter()
            .take(1)
            .map(|f| f.name().clone())
            .collect(),
    };
    for k in &keys {
        if df.schema().field_with_unqualified_name(k).is_err() {
            return Err(bad_column(k, &df));
        }
    }
    // Sort on every column after the keys, so ties are broken the same way on every run.
    let mut sort: Vec<SortExpr> = keys
        .iter()
        .map(|k| col(format!("\"{k}\"")).sort(true, false))
        .collect();
    for f in df.schema().fields() {
        if !keys.contains(f.name()) && crate::engine::ordered::sortable(f.data_type()) {
            sort.push(col(format!("\"{}\"", f.name())).sort(true, false));
        }
    }
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let written = if sort.len() > keys.len() {
        // Keys alone first: unique keys already give the full order (see `order`).
        let tie = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let by_keys = df
            .clone()
            .sort(sort[..keys.len()].to_vec())
            .map_err(|e| execution_error(&context, e))?;
        let stream = crate::engine::sql::execute(by_keys, &context).await?;
        let stream = order::stop_at_tie(stream, &keys, tie.clone());
        match write_table(export.format, &loc, schema.clone(), stream, &context).await {
            Err(_) if tie.load(std::sync::atomic::Ordering::Relaxed) => {
                let df = df.sort(sort).map_err(|e| execution_error(&context, e))?;
                let stream = crate::engine::sql::execute(df, &context).await?;
                write_table(export.format, &loc, schema, stream, &context).await?
            }
            other => other?,
        }
    } else {
        let df = df.sort(sort).map_err(|e| execution_error(&context, e))?;
        let stream = crate::engine::sql::execute(df, &context).await?;
        write_table(export.format, &loc, schema, stream, &context).await?
    };
    Ok(ExportResult {
        table: export.table.clone(),
        url: loc.display(),
        rows: written.rows,
        bytes: written.bytes,
        sha256: written.sha256,
        elapsed: start.elapsed(),
    })
}

/// Writes a table's sorted stream in the export's format.
async fn write_table(
    format: ExportFormat,
    loc: &storage::Location,
    schema: datafusion::arrow::datatypes::SchemaRef,
    stream: write::Batches,
    context: &str,
) -> Result<write::Written> {
    match format {
        ExportFormat::Parquet => write::write_parquet(loc, schema, stream).await,
        ExportFormat::Csv => write::write_csv(loc, schema, stream).await,
        other => Err(Error::internal(format!(
            "{context}: format {} exports segments, not tables",
            format_name(other)
        ))),
    }
}
