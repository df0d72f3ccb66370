//! Exports: tables of the run written to Parquet or CSV in a deterministic row order, and
//! segments written as ad-platform files (`segment_files`), with the manifest of the run.

pub mod files;
pub mod manifest;
pub mod platform;
pub mod segment_files;

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
        let names: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        Error::job_msg(
            None,
            format!("{context}: table `{}` has no column `{c}`", export.table),
            Some(format!(
                "nearest columns: {}",
                crate::job::nearest(c, &names, 3).join(", ")
            )),
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
            .map_err(|e| Error::internal(format!("{context}: {e}")))?;
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
        if !keys.contains(f.name()) && sortable(f.data_type()) {
            sort.push(col(format!("\"{}\"", f.name())).sort(true, false));
        }
    }
    let df = df
        .sort(sort)
        .map_err(|e| Error::internal(format!("{context}: {e}")))?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let stream = df
        .execute_stream()
        .await
        .map_err(|e| execution_error(&context, e))?;
    let written = match export.format {
        ExportFormat::Parquet => write::write_parquet(&loc, schema, stream).await?,
        ExportFormat::Csv => write::write_csv(&loc, stream).await?,
        other => {
            return Err(Error::internal(format!(
                "{context}: format {} exports segments, not tables",
                format_name(other)
            )))
        }
    };
    Ok(ExportResult {
        table: export.table.clone(),
        url: loc.display(),
        rows: written.rows,
        bytes: written.bytes,
        elapsed: start.elapsed(),
    })
}

fn sortable(dt: &datafusion::arrow::datatypes::DataType) -> bool {
    use datafusion::arrow::datatypes::DataType as D;
    dt.is_primitive() || matches!(dt, D::Utf8 | D::LargeUtf8 | D::Utf8View | D::Boolean)
}

/// A checked export of segments in one format.
#[derive(Debug, Clone)]
pub struct SegmentExport {
    /// Index of the export in the job (names it in messages).
    pub index: usize,
    /// Format.
    pub format: ExportFormat,
    /// Segment patterns.
    pub patterns: Vec<String>,
    /// Identities table joined on the id.
    pub identities: Option<String>,
    /// Output fields (CSV platforms) or id types in order of preference (Tencent).
    pub fields: Vec<platform::Field>,
    /// Extra columns (csv / parquet).
    pub columns: Vec<String>,
    /// Lines per file.
    pub max_rows_per_file: usize,
    /// Compression.
    pub compress: files::Compress,
    /// Smallest target group exported.
    pub min_size: u64,
    /// Fail the run when a segment is not exported.
    pub required: bool,
    /// Write adds / removes against the previous published run.
    pub deltas: bool,
    /// `hash = "none"` was said.
    pub raw_allowed: bool,
    /// Country calling code of national phone numbers.
    pub country_code: Option<String>,
}

impl SegmentExport {
    /// Checks an `[[export]]` of segments.
    pub fn from_spec(
        spec: &crate::job::spec::ExportSpec,
        format: ExportFormat,
        patterns: Vec<String>,
        identities: Option<String>,
        pii_table: Option<&str>,
        index: usize,
    ) -> std::result::Result<SegmentExport, String> {
        let raw_allowed = spec.hash.as_deref() == Some("none");
        let fields = match format {
            ExportFormat::TencentAds => {
                if spec.fields.is_some() {
                    return Err("tencent_ads takes `ids = [{ type = \"HASH_IMEI\", column = \"imei\" }, ...]`, not `fields`".into());
                }
                if let Some(h) = &spec.hash {
                    if h != "none" {
                        return Err(format!("tencent_ads: the id type sets the hashing; `hash` may only be \"none\" (for raw types), not `{h}`"));
                    }
                }
                let ids = spec.ids.as_ref().filter(|v| !v.is_empty()).ok_or_else(|| {
                    "tencent_ads needs `ids = [{ type = \"HASH_IMEI\", column = \"imei\" }, ...]`: the id types in order of preference and their columns".to_string()
                })?;
                let mut out = Vec::new();
                for id in ids {
                    let (norm, hash) = platform::tencent_type(&id.ty, raw_allowed)?;
                    if out.iter().any(|f: &platform::Field| f.header == id.ty) {
                        return Err(format!("id type `{}` is listed twice", id.ty));
                    }
                    out.push(platform::Field {
                        header: id.ty.clone(),
                        column: id.column.clone(),
                        norm,
                        hash,
                    });
                }
                out
            }
            ExportFormat::MetaCustomAudience
            | ExportFormat::GoogleCustomerMatch
            | ExportFormat::TiktokCustomAudience => {
                if spec.ids.is_some() {
                    return Err("`ids` applies to tencent_ads; this format takes `fields = { email = \"email\", ... }`".into());
                }
                let map = spec.fields.as_ref().ok_or("this format needs `fields`: platform field -> column, e.g. `fields = { email = \"email\", phone = \"phone\" }`")?;
                platform::csv_fields(format, map, spec.hash.as_deref())?
            }
            ExportFormat::Csv | ExportFormat::Parquet => {
                if spec.ids.is_some() || spec.fields.is_some() {
                    return Err("csv and parquet segment exports write the id and `columns`, not `ids` / `fields`".into());
                }
                Vec::new()
            }
        };
        let has_columns = !spec.columns.as_ref().is_none_or(|c| c.is_empty());
        if matches!(format, ExportFormat::Csv | ExportFormat::Parquet) && has_columns {
            if identities.is_none() {
                return Err("`columns` come from the `identities` table: name one".into());
            }
            if identities.as_deref() == pii_table && !raw_allowed {
                return Err(format!("`columns` of the identities table `{}` would leave unhashed: say `hash = \"none\"` to allow it, or take the columns from another table (`identities = \"...\"`)", pii_table.unwrap_or_default()));
            }
        }
        if let Some(cc) = &spec.country_code {
            if cc.is_empty()
                || cc.len() > 3
                || !cc.chars().all(|c| c.is_ascii_digit())
                || cc.starts_with('0')
            {
                return Err(format!(
                    "country_code `{cc}` must be 1 to 3 digits without `+`, e.g. \"86\""
                ));
            }
        }
        let compress = match &spec.compress {
            Some(c) => files::Compress::parse(c)?,
            None if format == ExportFormat::TencentAds => files::Compress::Zip,
            None => files::Compress::None,
        };
        if format == ExportFormat::Parquet && compress != files::Compress::None {
            return Err(
                "parquet files are compressed inside; `compress` applies to text formats".into(),
            );
        }
        if !fields.is_empty() && identities.is_none() {
            return Err("name the table holding the identifiers: `identities = \"users\"` here or under [publish]".into());
        }
        let max_rows_per_file = spec.max_rows_per_file.unwrap_or(1_000_000);
        if max_rows_per_file == 0 {
            return Err("max_rows_per_file must be at least 1".into());
        }
        Ok(SegmentExport {
            index,
            format,
            patterns,
            identities,
            fields,
            columns: spec.columns.clone().unwrap_or_default(),
            max_rows_per_file,
            compress,
            min_size: spec.min_size.unwrap_or(1000) as u64,
            required: spec.required.unwrap_or(false),
            deltas: spec.deltas.unwrap_or(false),
            raw_allowed,
            country_code: spec.country_code.clone(),
        })
    }

    /// The format's name in job files.
    pub fn format_name(&self) -> &'static str {
        format_name(self.format)
    }
}

/// A format's name in job files.
pub fn format_name(f: ExportFormat) -> &'static str {
    match f {
        ExportFormat::Parquet => "parquet",
        ExportFormat::Csv => "csv",
        ExportFormat::TencentAds => "tencent_ads",
        ExportFormat::MetaCustomAudience => "meta_custom_audience",
        ExportFormat::GoogleCustomerMatch => "google_customer_match",
        ExportFormat::TiktokCustomAudience => "tiktok_custom_audience",
    }
}
