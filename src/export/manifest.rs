//! The manifest of a run (`manifest.json` in the run folder): what was read, what was computed
//! and every file written with its rows, bytes and SHA-256, so ad ops can check an upload and a
//! scheduler can tell runs apart. Written last, before the success marker and the pointer.

use std::collections::BTreeMap;

use serde::Serialize;

use super::segment_files::SegmentExportReport;
use crate::engine::sources::SourceInfo;
use crate::segments::SegmentCounts;

/// One table written by a table export.
#[derive(Debug, Clone, Serialize)]
pub struct TableEntry {
    /// Table exported.
    pub table: String,
    /// Where (relative to the run folder when inside it).
    pub path: String,
    /// Rows.
    pub rows: u64,
    /// Bytes.
    pub bytes: u64,
    /// SHA-256 of the file's bytes (lower-case hex), computed while it was written.
    pub sha256: String,
}

/// One step's result.
#[derive(Debug, Clone, Serialize)]
pub struct StepEntry {
    /// Step name.
    pub name: String,
    /// Rows.
    pub rows: usize,
    /// Seconds.
    pub seconds: f64,
    /// For a model step: fitted in this run, or the run and date whose model it applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<crate::steps::refit::ModelUse>,
}

/// The whole manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// Job name.
    pub job: String,
    /// The date folder (`as_of`, or `undated`).
    pub date: String,
    /// Run id.
    pub run_id: String,
    /// `audiences` version that wrote the run.
    pub engine_version: String,
    /// Bound params.
    pub params: BTreeMap<String, String>,
    /// Start time, UTC.
    pub started_at: String,
    /// End time, UTC.
    pub finished_at: String,
    /// Input fingerprints: every file read with its size, modification time and etag.
    pub inputs: Vec<SourceInfo>,
    /// Steps.
    pub steps: Vec<StepEntry>,
    /// Table exports.
    pub tables: Vec<TableEntry>,
    /// Distinct ids in the suppression tables.
    pub suppression_ids: u64,
    /// Segments and their counts.
    pub segments: Vec<SegmentCounts>,
    /// Segment files.
    pub exports: Vec<SegmentExportReport>,
    /// Warnings of the run (segments too small to export, ...).
    pub warnings: Vec<String>,
    /// Wall time of each stage of the run, in seconds.
    pub stage_seconds: BTreeMap<String, f64>,
    /// Every quality gate measured, passed or not.
    pub gates: Vec<crate::quality::GateResult>,
    /// Incremental steps: window, days computed, reused, pruned.
    pub incremental: Vec<crate::steps::incremental::IncrementalReport>,
}
