//! Job files: the job file as written (`spec`, serde with `deny_unknown_fields`), checked one
//! section at a time (`parse`) into a [`Job`] of plain data, and bound to typed parameter values
//! for one run (`bind`). The bottom layer of the crate above `features/`: it imports nothing
//! that runs a job, so every later layer reads the same checked configuration.
//!
//! Paths written in a job file (SQL files, local source URLs, the output folder, `path` param
//! defaults) are relative to the folder holding the job file, so a job behaves the same
//! whatever directory cron starts it from. Paths given on the command line are relative to the
//! current directory, as every command-line tool does.

pub mod bind;
pub mod engine_kind;
pub mod exports;
pub mod keys;
pub mod models;
pub mod params;
mod parse;
pub mod platforms;
pub mod schema;
pub mod spec;
pub mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::SchemaRef;

use crate::error::{Error, Location, Problem, Result};
pub use bind::{Bindings, Clock};
pub use engine_kind::EngineKind;
pub use params::ParamValue;
pub use schema::parse_schema;
pub use spec::{ExportFormat, ParamType, SourceFormat};

/// A declared parameter.
#[derive(Debug, Clone)]
pub struct ParamDecl {
    /// Name, used as `$name` in SQL and `{name}` in URLs.
    pub name: String,
    /// Declared type.
    pub ty: ParamType,
    /// Default value, already typed.
    pub default: Option<ParamValue>,
    /// Free text.
    pub description: Option<String>,
}

/// A declared source table.
#[derive(Debug, Clone)]
pub struct Source {
    /// Table name.
    pub name: String,
    /// URL template (before `{param}` rendering).
    pub url: String,
    /// File format.
    pub format: SourceFormat,
    /// Hive partition columns.
    pub partitions: Vec<String>,
    /// Declared schema (CSV/JSON).
    pub schema: Option<SchemaRef>,
    /// CSV header flag.
    pub has_header: bool,
    /// CSV delimiter.
    pub delimiter: u8,
    /// Expected columns (schema drift check).
    pub expect: Option<SchemaRef>,
    /// Named drop rules: (name, SQL condition).
    pub drop: Vec<(String, String)>,
    /// De-duplication key columns.
    pub dedupe: Vec<String>,
    /// CSV: skip (and count) rows that do not parse as the declared schema.
    pub skip_bad_rows: bool,
    /// `bad_files = "skip"`: files whose column types drifted are left out, not an error.
    pub skip_bad_files: bool,
    /// Parquet: strings are read as Utf8View.
    pub string_view: bool,
    /// Data-quality gates.
    pub checks: SourceChecks,
}

/// The SQL text of a step and where it came from.
#[derive(Debug, Clone)]
pub struct StepSql {
    /// The query.
    pub text: String,
    /// The file shown in error locations (as written in the job, or the job file for inline SQL).
    pub file: String,
    /// Line in `file` where `text` starts (1-based), so errors point at the right line.
    pub first_line: usize,
    /// Column in `file` where `text` starts on its first line (1-based).
    pub first_column: usize,
}

impl StepSql {
    /// The tables the query reads (CTE names left out), or `None` when it does not parse.
    pub fn tables(&self) -> Option<Vec<String>> {
        use datafusion::sql::parser::DFParser;
        let statements = DFParser::parse_sql(self.text.trim().trim_end_matches(';')).ok()?;
        let mut out = Vec::new();
        for st in statements {
            let (tables, _) = datafusion::sql::resolve::resolve_table_references(&st, true).ok()?;
            out.extend(tables.into_iter().map(|t| t.table().to_string()));
        }
        Some(out)
    }
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// Run one SQL query.
    Sql(StepSql),
    /// Cluster the rows of a table.
    KMeans(models::KMeansConfig),
    /// Expand a seed audience.
    Lookalike(models::LookalikeConfig),
    /// Predict lifetime value from customer summaries.
    Ltv(models::LtvConfig),
    /// Rank users by the probability of an outcome in the next days.
    Propensity(models::PropensityConfig),
}

/// A checked step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Table name of the result.
    pub name: String,
    /// What it does.
    pub kind: StepKind,
    /// Where the step is declared in the job file.
    pub declared_at: Location,
    /// Row-count gate: (min, max).
    pub rows: (Option<u64>, Option<u64>),
    /// Per-day computation kept as state (sql steps only).
    pub incremental: Option<Incremental>,
    /// An intermediate table, dropped from memory once no later part of the job names it.
    pub transient: bool,
    /// When a model step fits again (model kinds only).
    pub refit: models::Refit,
}

/// A checked `incremental` setting.
#[derive(Debug, Clone)]
pub struct Incremental {
    /// The day-partitioned source.
    pub source: String,
    /// Window length in days: a number, or an int param's name.
    pub days: WindowDays,
    /// The day column (a partition column of the source, and a column of the result).
    pub column: String,
    /// Days merged into one row per key, kept as state and updated with the new days only.
    pub merge: Option<Merge>,
}

/// A merged incremental step: one row per key of `by`, each other column merged across days.
#[derive(Debug, Clone, PartialEq)]
pub struct Merge {
    /// Key columns.
    pub by: Vec<String>,
    /// Each merged column and how it merges, in declaration order.
    pub columns: Vec<(String, MergeOp)>,
}

/// How a column merges across days. Each is exact on integers, decimals, dates and text, so
/// adding days to the merged state gives the same rows as merging every day at once.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeOp {
    /// The sum.
    Sum,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The value of the row with the smallest value of the named column.
    FirstBy(String),
    /// The value of the row with the largest value of the named column.
    LastBy(String),
}

impl MergeOp {
    /// `sum`, `min`, `max`, `first by COL`, `last by COL`.
    pub fn parse(text: &str) -> std::result::Result<MergeOp, String> {
        let t = text.trim();
        match t.to_ascii_lowercase().as_str() {
            "sum" => return Ok(MergeOp::Sum),
            "min" => return Ok(MergeOp::Min),
            "max" => return Ok(MergeOp::Max),
            _ => {}
        }
        let mut words = t.split_whitespace();
        match (
            words.next().map(|w| w.to_ascii_lowercase()),
            words.next(),
            words.next(),
            words.next(),
        ) {
            (Some(f), Some(by), Some(col), None)
                if by.eq_ignore_ascii_case("by") && f == "first" =>
            {
                Ok(MergeOp::FirstBy(col.to_string()))
            }
            (Some(f), Some(by), Some(col), None)
                if by.eq_ignore_ascii_case("by") && f == "last" =>
            {
                Ok(MergeOp::LastBy(col.to_string()))
            }
            _ => Err(format!(
                "merge `{t}` must be sum, min, max, \"first by COLUMN\" or \"last by COLUMN\""
            )),
        }
    }
}

/// The length of an incremental window.
#[derive(Debug, Clone)]
pub enum WindowDays {
    /// A fixed number of days.
    Fixed(i64),
    /// The value of an int param.
    Param(String),
}

/// A checked export.
#[derive(Debug, Clone)]
pub struct Export {
    /// Table written (for a table export; see `segments` otherwise).
    pub table: String,
    /// Destination template, relative to the run output folder unless absolute.
    pub to: String,
    /// Format.
    pub format: ExportFormat,
    /// Columns (all when `None`).
    pub columns: Option<Vec<String>>,
    /// Sort keys (first column when `None`).
    pub order_by: Option<Vec<String>>,
    /// Set for an export of segments rather than of a table.
    pub segments: Option<exports::SegmentExport>,
    /// Where the export is declared in the job file.
    pub declared_at: Location,
}

/// How a segment's members are defined.
#[derive(Debug, Clone)]
pub enum SegmentDef {
    /// A query whose first column holds the ids.
    Query(StepSql),
    /// One segment per distinct value of `by` in table `from`, named `<name>_<value>`.
    PerValue {
        /// Table split.
        from: String,
        /// Column whose values name the segments.
        by: String,
    },
}

/// A checked `[[segment]]`.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Name (or prefix, for one segment per value).
    pub name: String,
    /// Members.
    pub def: SegmentDef,
    /// Share held back as control, 0.0..1.0.
    pub holdout: f64,
    /// Salt of the holdout hash; `None` means the segment's own name.
    pub salt: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Size gates: minimum and maximum target size, largest change against the previous run.
    pub gates: SegmentGates,
    /// Where the segment is declared in the job file.
    pub declared_at: Location,
}

/// Size gates of a segment (for one per value: of each generated segment).
#[derive(Debug, Clone, Default)]
pub struct SegmentGates {
    /// Smallest allowed target size.
    pub min_size: Option<u64>,
    /// Largest allowed target size.
    pub max_size: Option<u64>,
    /// Largest allowed relative change of the target size against the previous run (0.5 = 50%).
    pub max_change: Option<f64>,
}

/// Data-quality gates of a source.
#[derive(Debug, Clone, Default)]
pub struct SourceChecks {
    /// At least this many rows.
    pub min_rows: Option<u64>,
    /// (column, highest null share).
    pub max_null_rate: Vec<(String, f64)>,
    /// Columns with unique non-null values.
    pub unique: Vec<String>,
    /// (column, min, max).
    pub range: Vec<(String, f64, f64)>,
    /// (column, max days before as_of).
    pub fresh: Option<(String, i64)>,
    /// Highest share of landed rows left out as dirty.
    pub max_dropped_rate: Option<f64>,
}

impl SourceChecks {
    /// True when no gate is set.
    pub fn is_empty(&self) -> bool {
        self.min_rows.is_none()
            && self.max_null_rate.is_empty()
            && self.unique.is_empty()
            && self.range.is_empty()
            && self.fresh.is_none()
            && self.max_dropped_rate.is_none()
    }
}

/// The checked `[publish]` table.
#[derive(Debug, Clone)]
pub struct Publish {
    /// Id column of segment queries, identities and suppression tables.
    pub id: String,
    /// Table of identifiers joined to segments.
    pub identities: Option<String>,
    /// Suppression tables.
    pub suppress: Vec<String>,
    /// Priority groups (patterns).
    pub priority: Vec<Vec<String>>,
    /// Published runs kept.
    pub keep_runs: usize,
    /// Age after which a lock is stale.
    pub lock_timeout: std::time::Duration,
}

impl Default for Publish {
    fn default() -> Self {
        Publish {
            id: "user_id".into(),
            identities: None,
            suppress: Vec::new(),
            priority: Vec::new(),
            keep_runs: 14,
            lock_timeout: std::time::Duration::from_secs(360 * 60),
        }
    }
}

/// A parsed and validated job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Job name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The job file as given.
    pub path: PathBuf,
    /// Absolute folder of the job file: the base of relative paths in it.
    pub dir: PathBuf,
    /// Parameters in name order.
    pub params: Vec<ParamDecl>,
    /// Sources in name order.
    pub sources: Vec<Source>,
    /// Steps in run order.
    pub steps: Vec<Step>,
    /// Exports in file order.
    pub exports: Vec<Export>,
    /// Output folder template.
    pub output: String,
    /// State folder template (models kept between runs).
    pub state: String,
    /// Whether the job names its state folder; otherwise the state follows `--output`.
    pub state_explicit: bool,
    /// DataFusion session settings.
    pub settings: BTreeMap<String, String>,
    /// Segments in file order.
    pub segments: Vec<Segment>,
    /// Publication settings.
    pub publish: Publish,
    /// Steps read from the previous published run: (step, its Parquet export path).
    pub previous: Vec<(String, String)>,
    /// Time zone of the job's dates.
    pub timezone: chrono_tz::Tz,
    /// Smallest group a number in the report may describe.
    pub report_min_cell_size: u64,
    /// Where the job's SQL runs unless `--engine` / `AUDIENCES_ENGINE` say otherwise.
    pub engine: EngineKind,
    /// `[measure]`: the campaign's outcome SQL over `[$start, $end)`, when declared.
    pub outcome: Option<StepSql>,
    /// `[measure] campaign_days`.
    pub campaign_days: u32,
}

impl Job {
    /// Reads, parses and validates a job file, reporting every problem found, not only the first.
    pub fn load(path: &Path) -> Result<Job> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::job(Problem {
                location: None,
                step: None,
                message: format!("cannot read job file {file}: {e}"),
                hint: Some("check the path; job files usually live in jobs/".into()),
            })
        })?;
        let dir = std::path::absolute(path)
            .map_err(|e| Error::internal(format!("cannot resolve {file}: {e}")))?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        Self::parse(&text, &file, &dir)
    }

    /// Parses job text; `file` names it in errors and `dir` is the base of relative paths.
    pub fn parse(text: &str, file: &str, dir: &Path) -> Result<Job> {
        parse::job(text, file, dir)
    }

    /// Names of every table a step can read: sources, then steps in order.
    pub fn table_names(&self) -> Vec<String> {
        self.sources
            .iter()
            .map(|s| s.name.clone())
            .chain(self.steps.iter().map(|s| s.name.clone()))
            .collect()
    }
}
