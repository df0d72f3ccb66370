//! Writing one `[[export]]` of segments: one SQL query per segment joins the members to their
//! identifiers, normalises and validates each identifier, de-duplicates and orders the rows
//! (with the SQL engine's bounded, spilling memory); Rust then hashes the values in parallel
//! (rayon) and streams them into split, optionally compressed files.
//!
//! Layout below the run folder: `<to>/<segment>/<part>/<segment>[_<id type>]_part000.<ext>`, where
//! `part` is `target` (to upload), `control` (held back), and with `deltas`, `adds` and
//! `removes` against the previous published run.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use futures::StreamExt;
use serde::Serialize;

use super::files::{FileEntry, PartWriter};
use super::platform::{self, Hash};
use super::SegmentExport;
use crate::engine::diagnostics::execution_error;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::job::{ExportFormat, Job};
use crate::segments::{self, Segments};
use crate::storage::Location;

/// Name of the previous published run's members table, when one exists.
pub const PREVIOUS: &str = "__previous_members";

/// Files of one part (target, control, adds, removes) and id type of a segment.
#[derive(Debug, Clone, Serialize)]
pub struct FileSet {
    /// `target`, `control`, `adds` or `removes`.
    pub part: String,
    /// Tencent id type; google: `CONTACT` or `MOBILE_DEVICE_ID` when an export writes both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_type: Option<String>,
    /// Tencent WECHAT_OPENID: the app (`open_app_id`) the openids belong to; set it on upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_app_id: Option<String>,
    /// With deltas: how to upload the set: `replace` (the whole list, replacing the
    /// platform's), `append` or `reduce` (Tencent's `operation_type` APPEND / REDUCE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<&'static str>,
    /// Lines written.
    pub rows: u64,
    /// The files.
    pub files: Vec<FileEntry>,
}

/// What one segment of an export became.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentEntry {
    /// Segment name.
    pub segment: String,
    /// False when the segment was not exported (see `skipped`).
    pub exported: bool,
    /// Why it was not exported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Members in the target group.
    pub users_target: u64,
    /// Members in the control group.
    pub users_control: u64,
    /// Rows dropped: no identity row, or no valid identifier of the export's types.
    pub dropped_invalid: u64,
    /// Rows that repeated a line already written (same identifier).
    pub duplicates: u64,
    /// Members removed by the suppression tables.
    pub suppressed: u64,
    /// google: rows left out because their consent column did not say granted.
    #[serde(skip_serializing_if = "is_zero")]
    pub consent_withheld: u64,
    /// Lines per part.
    pub rows: BTreeMap<String, u64>,
    /// The files.
    pub file_sets: Vec<FileSet>,
}

/// How one field is written.
#[derive(Debug, Clone, Serialize)]
pub struct FieldReport {
    /// Header or id type.
    pub name: String,
    /// Source column.
    pub column: String,
    /// Hashing.
    pub hash: &'static str,
}

/// What one export of segments wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentExportReport {
    /// Folder below the run folder.
    pub to: String,
    /// Format.
    pub format: &'static str,
    /// Identities table.
    pub identities: Option<String>,
    /// Ids on more than one row of the identities table (each row's identifiers are written).
    pub identities_duplicate_ids: u64,
    /// google: the app of a `Mobile Device ID` list (set it on the list when uploading).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// Fields and their hashing.
    pub fields: Vec<FieldReport>,
    /// Compression.
    pub compress: &'static str,
    /// Lines per file.
    pub max_rows_per_file: usize,
    /// Bytes per file (the export's `max_bytes_per_file`, else the platform's cap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes_per_file: Option<u64>,
    /// Smallest target group exported.
    pub min_size: u64,
    /// The run the deltas are against (`None` without deltas or without a previous run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deltas_against: Option<String>,
    /// With deltas: whether this run sends the whole list or adds and removes, and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Refresh>,
    /// google: the consent signals to set on the upload (the files hold only people with them).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub consent: BTreeMap<String, String>,
    /// The platform's minimum of valid rows per file set, when `platform_floor` asks for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_floor: Option<u64>,
    /// Per segment.
    pub segments: Vec<SegmentEntry>,
}

/// How an export with deltas sends its lists this run.
#[derive(Debug, Clone, Serialize)]
pub struct Refresh {
    /// `replace`: the whole target list, to replace the platform's; `delta`: adds and removes.
    pub mode: &'static str,
    /// The date of the last run that sent the whole list (this run's when it does).
    pub last_full: String,
    /// The whole list is sent again by the first run on or after this date.
    pub next_full: String,
    /// Days between full sends (`full_every`).
    pub every_days: u32,
}

/// When this run sends: its date, and the last date an export of the same destination sent
/// its whole list (from the previous published run's manifest).
#[derive(Debug, Clone, Copy)]
pub struct SendDates {
    /// The run's date.
    pub today: chrono::NaiveDate,
    /// The last full send of this export before this run, when known.
    pub last_full: Option<chrono::NaiveDate>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

mod lines;
mod parquet_sets;
mod rows;
mod sets;

use crate::quote::{ident as quote, literal as lit};
use lines::render;
use parquet_sets::write_parquet_sets;
use rows::{normalise_once, query_groups, rows_sql, FileSetKey};

/// Writes one export of segments below `run_dir`.
#[allow(clippy::too_many_arguments)]
pub async fn write(
    engine: &Engine,
    job: &Job,
    ex: &SegmentExport,
    to: &str,
    segs: &Segments,
    run_dir: &Location,
    previous: Option<&str>,
    dates: SendDates,
    warnings: &mut Vec<String>,
) -> Result<SegmentExportReport> {
    let label = format!("export {} ({})", ex.index + 1, ex.format_name());
    let mut entries: BTreeMap<String, SegmentEntry> = BTreeMap::new();
    let mut eligible = Vec::new();
    for c in &segs.segments {
        let group = segments::group_of(job, c);
        if !ex
            .patterns
            .iter()
            .any(|p| segments::matches(p, &c.name, group.as_deref()))
        {
            continue;
        }
        let mut e = SegmentEntry {
            segment: c.name.clone(),
            exported: true,
            skipped: None,
            users_target: c.target,
            users_control: c.control,
            dropped_invalid: 0,
            duplicates: 0,
            suppressed: c.suppressed,
            consent_withheld: 0,
            rows: BTreeMap::new(),
            file_sets: Vec::new(),
        };
        if c.target < ex.min_size {
            let why = format!(
                "{} users in the target group, below min_size {}",
                c.target, ex.min_size
            );
            if ex.required {
                return Err(Error::data(
                    format!("{label}, segment `{}`", c.name),
                    format!("{why}; the export says required = true"),
                ));
            }
            warnings.push(format!("{label}: segment `{}` not exported: {why}", c.name));
            e.exported = false;
            e.skipped = Some(why);
        } else {
            eligible.push(c.name.clone());
        }
        entries.insert(c.name.clone(), e);
    }
    let refresh = sets::refresh(ex, previous.is_some(), dates);
    // Adds and removes only between full sends; a full send replaces the platform's list.
    let deltas = refresh.as_ref().is_some_and(|r| r.mode == "delta");
    let mut report = SegmentExportReport {
        to: to.to_string(),
        format: ex.format_name(),
        identities: ex.identities.clone(),
        identities_duplicate_ids: 0,
        app_id: ex.app_id.clone(),
        fields: ex
            .fields
            .iter()
            .map(|f| FieldReport {
                name: f.header.clone(),
                column: f.column.clone(),
                hash: f.hash.name(),
            })
            .collect(),
        compress: ex.compress.name(),
        max_rows_per_file: ex.max_rows_per_file,
        max_bytes_per_file: ex.max_bytes_per_file,
        min_size: ex.min_size,
        deltas_against: if deltas {
            previous.map(str::to_string)
        } else {
            None
        },
        refresh,
        consent: sets::consent_signals(ex),
        platform_floor: None,
        segments: Vec::new(),
    };
    if !eligible.is_empty() {
        if ex.format == ExportFormat::Parquet {
            write_parquet_sets(
                engine,
                job,
                ex,
                to,
                &eligible,
                deltas,
                run_dir,
                &mut entries,
            )
            .await?;
        } else {
            // Members per segment (target and control; deltas at most double the target).
            let sizes: BTreeMap<String, u64> = segs
                .segments
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        c.target * if deltas { 3 } else { 1 } + c.control,
                    )
                })
                .collect();
            // Google lists take one key type each: contact information and device ids are
            // written as two file sets of each segment.
            for set in sets::key_sets(ex) {
                write_line_sets(
                    engine,
                    job,
                    &set,
                    to,
                    &eligible,
                    deltas,
                    run_dir,
                    &label,
                    &mut entries,
                    &sizes,
                )
                .await?;
            }
        }
    }
    for e in entries.values_mut() {
        sets::mark_operations(ex, report.refresh.as_ref(), &mut e.file_sets);
    }
    report.platform_floor = sets::apply_floor(ex, &label, run_dir, &mut entries, warnings).await?;
    report.segments = entries.into_values().collect();
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn write_line_sets(
    engine: &Engine,
    job: &Job,
    key_set: &sets::KeySet,
    to: &str,
    eligible: &[String],
    deltas: bool,
    run_dir: &Location,
    label: &str,
    entries: &mut BTreeMap<String, SegmentEntry>,
    sizes: &BTreeMap<String, u64>,
) -> Result<()> {
    let (ex, set) = (&key_set.export, key_set.name);
    let header = match ex.format {
        ExportFormat::TencentAds => None,
        ExportFormat::Csv => Some(
            std::iter::once(job.publish.id.clone())
                .chain(ex.columns.iter().cloned())
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => Some(
            ex.fields
                .iter()
                .map(|f| f.header.clone())
                .collect::<Vec<_>>()
                .join(","),
        ),
    };
    let ext = if ex.format == ExportFormat::TencentAds {
        "txt"
    } else {
        "csv"
    };
    let max_bytes = ex.max_bytes_per_file;
    let mut current: Option<(FileSetKey, PartWriter)> = None;
    let finish = |entries: &mut BTreeMap<String, SegmentEntry>,
                  key: FileSetKey,
                  files: Vec<FileEntry>,
                  rows: u64| {
        // A set with no valid key of its type writes no file and is not listed.
        if files.is_empty() {
            return;
        }
        if let Some(e) = entries.get_mut(&key.0) {
            *e.rows.entry(key.1.clone()).or_insert(0) += rows;
            let (id_type, open_app_id) = match key.2 {
                Some(t) => match t.split_once(rows::APP_SEP) {
                    Some((t, app)) => (Some(t.to_string()), Some(app.to_string())),
                    None => (Some(t), None),
                },
                None => (set.map(str::to_ascii_uppercase), None),
            };
            e.file_sets.push(FileSet {
                part: key.1,
                id_type,
                open_app_id,
                operation: None,
                rows,
                files,
            });
        }
    };
    // Segments are written a group at a time: each query's join, de-duplication and sort hold
    // at most `ROWS_PER_QUERY` members (one query over 10 M members ran out of the sort's
    // memory budget), while small segments share a query (a query per segment cost about a
    // second each at 1,000,000 users, mostly the join's build over the identities).
    let mut finishing = Finishing::default();
    let normalised = normalise_once(engine, job, ex, label).await?;
    for group in query_groups(eligible, sizes) {
        let sql = rows_sql(job, ex, &group, deltas, normalised.as_deref());
        let df = engine
            .ctx
            .sql(&sql)
            .await
            .map_err(|e| export_problem(label, ex, e))?;
        let mut stream = df
            .execute_stream()
            .await
            .map_err(|e| execution_error(label, e))?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| execution_error(label, e))?;
            let batch = to_utf8(batch)?;
            let seg = batch.column(0).as_string::<i32>();
            let part = batch.column(1).as_string::<i32>();
            let idt = batch.column(2).as_string::<i32>();
            let rows = batch.num_rows();
            let mut a = 0;
            while a < rows {
                let key = (
                    seg.value(a).to_string(),
                    part.value(a).to_string(),
                    idt.is_valid(a).then(|| idt.value(a).to_string()),
                );
                let mut b = a + 1;
                while b < rows
                    && seg.value(b) == key.0
                    && part.value(b) == key.1
                    && idt.is_valid(b) == key.2.is_some()
                    && (!idt.is_valid(b) || idt.value(b) == key.2.as_deref().unwrap_or_default())
                {
                    b += 1;
                }
                let hash = key.2.as_ref().and_then(|t| {
                    let t = t.split_once(rows::APP_SEP).map_or(t.as_str(), |(t, _)| t);
                    ex.fields.iter().find(|f| f.header == t).map(|f| f.hash)
                });
                let chunks = render(&batch, a, b, ex, hash);
                let tencent_dropped = ex.format == ExportFormat::TencentAds && key.2.is_none();
                if !tencent_dropped && current.as_ref().map(|(k, _)| k != &key).unwrap_or(true) {
                    if let Some((k, w)) = current.take() {
                        // The file set's last part is compressed and uploaded while the next
                        // set renders; sets are recorded in the order they were written.
                        finishing.push_back((k, tokio::spawn(w.finish())));
                        if finishing.len() > SETS_IN_FLIGHT {
                            let (k, task) = finishing.pop_front().expect("one in flight");
                            let (files, n) = joined(task).await?;
                            finish(entries, k, files, n);
                        }
                    }
                    let stem = match (&key.2, set) {
                        (Some(t), _) => match t.split_once(rows::APP_SEP) {
                            Some((t, app)) => {
                                format!("{}_{}_{app}", key.0, t.to_ascii_lowercase())
                            }
                            None => format!("{}_{}", key.0, t.to_ascii_lowercase()),
                        },
                        (None, Some(set)) => format!("{}_{set}", key.0),
                        (None, None) => key.0.clone(),
                    };
                    let rel = format!("{to}/{}/{}", key.0, key.1);
                    let folder = run_dir.child(&rel)?;
                    current = Some((
                        key.clone(),
                        PartWriter::new(
                            folder,
                            rel,
                            stem,
                            ext,
                            header.clone(),
                            ex.compress,
                            ex.max_rows_per_file,
                            max_bytes,
                        ),
                    ));
                }
                for c in chunks {
                    if let Some(e) = entries.get_mut(&key.0) {
                        e.dropped_invalid += c.dropped;
                        e.duplicates += c.duplicates;
                        if key_set.counts_withheld {
                            e.consent_withheld += c.withheld;
                        }
                    }
                    if !c.ends.is_empty() {
                        if let Some((_, w)) = current.as_mut() {
                            w.push(&c.bytes, &c.ends).await?;
                        }
                    }
                }
                a = b;
            }
        }
    }
    if let Some((k, w)) = current.take() {
        finishing.push_back((k, tokio::spawn(w.finish())));
    }
    while let Some((k, task)) = finishing.pop_front() {
        let (files, n) = joined(task).await?;
        finish(entries, k, files, n);
    }
    if let Some(t) = normalised {
        let _ = engine.ctx.deregister_table(t.as_str());
    }
    Ok(())
}

/// File sets whose last part is still being compressed and uploaded while the next renders.
const SETS_IN_FLIGHT: usize = 2;

/// File sets being finished, oldest first; a failed export aborts them, so no file of it lands
/// after the failure.
#[derive(Default)]
struct Finishing(std::collections::VecDeque<(FileSetKey, SetTask)>);

type SetTask = tokio::task::JoinHandle<Result<(Vec<FileEntry>, u64)>>;

impl std::ops::Deref for Finishing {
    type Target = std::collections::VecDeque<(FileSetKey, SetTask)>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Finishing {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Finishing {
    fn drop(&mut self) {
        for (_, task) in &self.0 {
            task.abort();
        }
    }
}

/// The files of a file set finished on its own task.
async fn joined(task: SetTask) -> Result<(Vec<FileEntry>, u64)> {
    task.await
        .map_err(|e| Error::internal(format!("segment file writer: {e}")))?
}

fn export_problem(label: &str, ex: &SegmentExport, e: datafusion::error::DataFusionError) -> Error {
    let msg = e.to_string();
    let hint = match &ex.identities {
        Some(t) => {
            format!("check the columns named in `ids` / `fields` / `columns` against table `{t}`")
        }
        None => "check the export's columns".to_string(),
    };
    Error::job_msg(Some(label), msg, Some(hint))
}

/// Casts every string-like column to Utf8 (the renderer reads Utf8 only).
fn to_utf8(batch: RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut cols = Vec::with_capacity(batch.num_columns());
    let mut fields = Vec::with_capacity(batch.num_columns());
    for (i, f) in schema.fields().iter().enumerate() {
        let c = batch.column(i);
        if matches!(
            f.data_type(),
            DataType::Utf8View | DataType::LargeUtf8 | DataType::Null
        ) {
            cols.push(
                datafusion::arrow::compute::cast(c, &DataType::Utf8).map_err(Error::unexpected)?,
            );
            fields.push(datafusion::arrow::datatypes::Field::new(
                f.name(),
                DataType::Utf8,
                true,
            ));
        } else {
            cols.push(c.clone());
            fields.push(f.as_ref().clone());
        }
    }
    RecordBatch::try_new(
        std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
        cols,
    )
    .map_err(Error::unexpected)
}
