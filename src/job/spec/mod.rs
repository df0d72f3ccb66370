//! The job file as written: serde structs with `deny_unknown_fields`, so a misspelt key is an
//! error that names the key, the file, the line and the column.
//!
//! These doc comments are the job-file reference; the README repeats them with examples.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

mod steps;

pub use steps::{IncrementalSpec, StepSpec, Transforms};

/// A whole job file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Job name: letters, digits, `_` and `-`; used in output paths and logs.
    pub name: Spanned<String>,
    /// What the job is for, shown by `--help`-style listings and the summary.
    #[serde(default)]
    pub description: Option<String>,
    /// Where state kept between runs lives (models for stable cluster ids): a path relative to
    /// the job file, or a URL. Default: `../out/{job}/state`.
    #[serde(default)]
    pub state: Option<String>,
    /// Where the run's outputs go (a path relative to the job file, or a URL); may use `{param}`
    /// templates and `{job}`. Default: `../out/{job}` beside the job's folder, plus `/{as_of}`
    /// when the job has an `as_of` param.
    #[serde(default)]
    pub output: Option<Spanned<String>>,
    /// DataFusion session settings for this job, e.g.
    /// `"datafusion.execution.parquet.pushdown_filters" = "true"`.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Typed parameters, bound into SQL as `$name` and into URLs as `{name}`.
    #[serde(default)]
    pub params: BTreeMap<String, Spanned<ParamSpec>>,
    /// Input tables, by name.
    #[serde(default)]
    pub sources: BTreeMap<String, Spanned<SourceSpec>>,
    /// Ordered steps; each step's result is a table later steps can read by name.
    #[serde(default, rename = "step")]
    pub steps: Vec<Spanned<StepSpec>>,
    /// Tables and segment files written out at the end of the run.
    #[serde(default, rename = "export")]
    pub exports: Vec<Spanned<ExportSpec>>,
    /// Named sets of user ids, defined in SQL over any table of the run.
    #[serde(default, rename = "segment")]
    pub segments: Vec<Spanned<SegmentSpec>>,
    /// Steps whose result in the previous published run (an earlier date) this run reads, as the
    /// table `previous_<step>`; each must be exported to Parquet. Empty on a first run.
    #[serde(default)]
    pub previous: Vec<String>,
    /// How segments are published: id column, identities, suppression, holdout, retention.
    #[serde(default)]
    pub publish: Option<Spanned<PublishSpec>>,
    /// Time zone of the job's dates (an IANA name such as `Asia/Shanghai`): `--date` defaults
    /// to yesterday there. Default: UTC.
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    /// The run's `report.html`.
    #[serde(default)]
    pub report: Option<ReportSpec>,
    /// Where the SQL runs: `local` (default, in this process), `standalone` (a Ballista
    /// scheduler and executor inside this process) or `ballista://HOST:PORT`. The command
    /// line's `--engine` and the `AUDIENCES_ENGINE` variable override it.
    #[serde(default)]
    pub engine: Option<Spanned<String>>,
    /// How a campaign on this job's segments is measured and planned.
    #[serde(default)]
    pub measure: Option<Spanned<MeasureSpec>>,
}

/// The `[measure]` table: the campaign's outcome from the job's own data (an absent `Option`
/// key is `None`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureSpec {
    /// A SQL file over the job's sources and params returning, for the window
    /// `[$start, $end)`, the id column, `converted` and optionally `value` per user.
    pub outcome: Option<String>,
    /// The same SQL written inline.
    pub outcome_query: Option<String>,
    /// Campaign length in days (default 30): the window `plan` evaluates the outcome over.
    pub campaign_days: Option<u32>,
}

/// The `[report]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// Numbers computed over fewer users are suppressed (default 50).
    #[serde(default)]
    pub min_cell_size: Option<u64>,
}

/// One `[[segment]]` entry: a query selecting ids, or one segment per value of a column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    /// Segment name: letters, digits, `_` and `-` (it names files and folders). With `by`, the
    /// prefix of one segment per value: `cluster` + value 3 gives `cluster_3`.
    pub name: String,
    /// The query written inline; its first column holds the ids.
    #[serde(default)]
    pub query: Option<String>,
    /// A SQL file (relative to the job file) holding the query.
    #[serde(default)]
    pub sql: Option<String>,
    /// With `by`: the table whose rows are split into one segment per value.
    #[serde(default)]
    pub from: Option<String>,
    /// With `from`: the column whose values name the segments.
    #[serde(default)]
    pub by: Option<String>,
    /// Share of the segment held back as a control group, e.g. `"10%"` (default: the
    /// `[publish]` holdout, else none).
    #[serde(default)]
    pub holdout: Option<String>,
    /// Salt of the holdout hash (default: the `[publish]` salt, else the segment name).
    #[serde(default)]
    pub salt: Option<String>,
    /// One line on who is in the segment.
    #[serde(default)]
    pub description: Option<String>,
    /// Gate: the target group must hold at least this many users.
    #[serde(default)]
    pub min_size: Option<u64>,
    /// Gate: the target group may hold at most this many users.
    #[serde(default)]
    pub max_size: Option<u64>,
    /// Gate: the largest change of the target size against the previous published run, e.g.
    /// `"50%"` (a segment that shrank or grew by more stops the run).
    #[serde(default)]
    pub max_change: Option<String>,
}

/// The `[publish]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishSpec {
    /// The id column of segment queries, identities and suppression tables (default `user_id`).
    #[serde(default)]
    pub id: Option<String>,
    /// The table holding identifiers (device ids, phones, emails), joined to segments on `id`.
    #[serde(default)]
    pub identities: Option<String>,
    /// Tables whose ids are removed from every segment (opt-outs, staff).
    #[serde(default)]
    pub suppress: Vec<String>,
    /// Ordered groups of segments made mutually exclusive: a user stays only in the first
    /// segment of the group that holds the user. Entries may end in `*`.
    #[serde(default)]
    pub priority: Vec<Vec<String>>,
    /// Default holdout share of every segment, e.g. `"10%"`.
    #[serde(default)]
    pub holdout: Option<String>,
    /// Job-level holdout salt: one universal holdout across all segments.
    #[serde(default)]
    pub salt: Option<String>,
    /// Published runs kept; older ones are removed after a successful run (default 14).
    #[serde(default)]
    pub keep_runs: Option<usize>,
    /// Minutes after which a run lock is stale even if its holder looks alive (default 360).
    #[serde(default)]
    pub lock_timeout_minutes: Option<u64>,
}

/// The declared type of a parameter.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Int,
    /// 64-bit float.
    Float,
    /// `true` / `false`.
    Bool,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A local path or URL. A default in the job file is relative to the job file; a value given
    /// on the command line is relative to the current directory.
    Path,
}

impl ParamType {
    /// The name used in job files.
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Float => "float",
            ParamType::Bool => "bool",
            ParamType::Date => "date",
            ParamType::Path => "path",
        }
    }
}

/// One `[params]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// The type values are parsed as.
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// The value used when none is given on the command line. A param without a default is
    /// required.
    #[serde(default)]
    pub default: Option<toml::Value>,
    /// Shown in `check` output and error messages.
    #[serde(default)]
    pub description: Option<String>,
}

/// File format of a source.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// Apache Parquet.
    Parquet,
    /// Comma-separated values (header row by default).
    Csv,
    /// Newline-delimited JSON, one object per line.
    Json,
}

/// One `[sources.NAME]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// A local path (relative to the job file), `file://`, `s3://`, `gs://`, `az://` or
    /// `memory://` URL: one file, a folder, or a glob. May use `{param}` templates.
    pub url: String,
    /// File format.
    pub format: SourceFormat,
    /// Hive-style partition columns in the path (`dt=2026-11-24/`), exposed as string columns.
    #[serde(default)]
    pub partitions: Vec<String>,
    /// Column list for CSV/JSON, e.g. `"user_id string, ts timestamp, amount double"`.
    /// Without it the schema is inferred from the data.
    #[serde(default)]
    pub schema: Option<String>,
    /// CSV only: whether the first line is a header (default true).
    #[serde(default)]
    pub has_header: Option<bool>,
    /// CSV only: field delimiter (default `,`).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// Parquet only: read strings as Utf8View (faster to scan and group, more memory when
    /// held; default false: plain Utf8).
    #[serde(default)]
    pub string_view: bool,
    /// Columns the job's SQL relies on, with their types, e.g. `"user_id string, amount double"`:
    /// a missing column or one of another type is reported as schema drift before any step runs.
    #[serde(default)]
    pub expect: Option<String>,
    /// Named SQL conditions: rows matching any of them are left out of the source and counted
    /// per rule, e.g. `{ null_user = "user_id IS NULL", negative_amount = "amount < 0" }`.
    #[serde(default)]
    pub drop: BTreeMap<String, String>,
    /// Key columns: a row repeating a key already seen is left out (one row per key is kept)
    /// and counted, e.g. `["order_id"]`.
    #[serde(default)]
    pub dedupe: Vec<String>,
    /// CSV with a `schema`: rows whose values do not parse as the declared types. `fail` (the
    /// default) stops the run with exit 65; `skip` leaves them out and counts them.
    #[serde(default)]
    pub bad_rows: Option<String>,
    /// Files whose columns have other types than the rest of the source's (schema drift in one
    /// day's file): `fail` (the default) stops the run with exit 65 naming each file; `skip`
    /// leaves them out, counted and listed in the manifest.
    #[serde(default)]
    pub bad_files: Option<String>,
    /// Data-quality gates over the data as it landed, checked before any step runs.
    #[serde(default)]
    pub checks: Option<SourceChecksSpec>,
}

/// Data-quality gates of one source; each failure stops the run with exit 65 before anything
/// is published, naming the gate, the measured value and the threshold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceChecksSpec {
    /// At least this many rows.
    #[serde(default)]
    pub min_rows: Option<u64>,
    /// Per column, the highest share of nulls allowed (0.0..=1.0, or `"1%"`).
    #[serde(default)]
    pub max_null_rate: BTreeMap<String, toml::Value>,
    /// Columns whose non-null values must be unique.
    #[serde(default)]
    pub unique: Vec<String>,
    /// Per column, `[min, max]` allowed values (inclusive; nulls are not checked).
    #[serde(default)]
    pub range: BTreeMap<String, [f64; 2]>,
    /// Freshness: the newest value of `column` (a date, timestamp or `YYYY-MM-DD` partition)
    /// is at most `max_days` days before `as_of`.
    #[serde(default)]
    pub fresh: Option<FreshSpec>,
    /// The highest share of the landed rows the source's cleaning (`bad_rows`, `drop`,
    /// `dedupe`) may leave out, e.g. `"5%"`.
    #[serde(default)]
    pub max_dropped_rate: Option<toml::Value>,
}

/// A freshness gate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshSpec {
    /// The date, timestamp or date-partition column.
    pub column: String,
    /// Largest allowed age of the newest value, in days before `as_of`.
    pub max_days: i64,
}

/// Output file format of an export.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// Apache Parquet (zstd).
    Parquet,
    /// CSV with a header row.
    Csv,
    /// Tencent Ads customer-file audience: one id per line, zipped.
    TencentAds,
    /// Meta custom audience customer list (CSV, SHA-256).
    MetaCustomAudience,
    /// Google Ads Customer Match (CSV, SHA-256).
    GoogleCustomerMatch,
    /// TikTok custom audience customer file (CSV).
    TiktokCustomAudience,
}

/// One id type of a `tencent_ads` export and the column it comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdSpec {
    /// Tencent id type, e.g. `HASH_IMEI`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Column of the identities table.
    pub column: String,
    /// WECHAT_OPENID: the identities column naming the official account or mini-program
    /// (`open_app_id`) each openid belongs to; each app gets its own file set.
    pub app_column: Option<String>,
}

/// A consent signal: one value for the upload, or a column of the identities table.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConsentSpec {
    /// `GRANTED` or `UNSPECIFIED` for the whole upload.
    Fixed(String),
    /// Read per row from a column of the identities table.
    Column(ConsentColumn),
}

/// `{ column = "c" }`: a consent signal read per row (granted / denied, true / false, 1 / 0,
/// yes / no; anything else is written as `UNSPECIFIED`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentColumn {
    /// The identities column.
    pub column: String,
}

/// One `[[export]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSpec {
    /// The step (or source) whose table is written (or `segments`).
    #[serde(default)]
    pub table: Option<String>,
    /// Segments written (names; an entry ending in `*` matches by prefix; `"*"` is all).
    #[serde(default)]
    pub segments: Option<Vec<String>>,
    /// Destination: for a table, a file; for segments, a folder. Relative to the run folder
    /// (default for segments: the format name), or an absolute URL for a table. May use
    /// `{param}` templates.
    #[serde(default)]
    pub to: Option<String>,
    /// Segments: the identities table (default: `[publish] identities`).
    #[serde(default)]
    pub identities: Option<String>,
    /// tencent_ads: id types in order of preference, each from a column; a user goes into the
    /// file of the first type it has a valid value for.
    #[serde(default)]
    pub ids: Option<Vec<IdSpec>>,
    /// meta / google / tiktok: platform field -> identities column, e.g.
    /// `{ email = "email", phone = "phone" }`.
    #[serde(default)]
    pub fields: Option<BTreeMap<String, String>>,
    /// Hashing: `sha256` (the default of the CSV platforms), `md5` (tiktok MAIDs), or `none`,
    /// which must be said explicitly for raw identifiers to leave.
    #[serde(default)]
    pub hash: Option<String>,
    /// Country calling code given to phone numbers written without `+` or `00` (e.g. `"86"`).
    #[serde(default)]
    pub country_code: Option<String>,
    /// google: the app a `Mobile Device ID` list belongs to (Android package name or the
    /// numeric App Store id); such a list holds device ids only.
    #[serde(default)]
    pub app_id: Option<String>,
    /// Lines per file (default 1,000,000).
    #[serde(default)]
    pub max_rows_per_file: Option<usize>,
    /// Bytes per file (default and upper bound: the platform's cap, where it has one); a file
    /// set is split into parts within it.
    #[serde(default)]
    pub max_bytes_per_file: Option<u64>,
    /// `none`, `gzip` or `zip` (tencent_ads default `zip`, others `none`).
    #[serde(default)]
    pub compress: Option<String>,
    /// Segments whose target group is smaller are not exported (default 1,000).
    #[serde(default)]
    pub min_size: Option<usize>,
    /// A segment not exported (too small) fails the run with exit 65 instead of a warning.
    #[serde(default)]
    pub required: Option<bool>,
    /// Also write `adds` and `removes` against the previous published run (default false).
    #[serde(default)]
    pub deltas: Option<bool>,
    /// With `deltas`: how often the whole target list is sent again as a replacing set
    /// (default "30 days"), so a list fed with adds and removes never silently expires.
    pub full_every: Option<String>,
    /// Hold back (or, with `required`, fail on) file sets below the platform's documented
    /// minimum of valid rows (default false).
    pub platform_floor: Option<bool>,
    /// google: consent signals of the upload (`ad_user_data`, `ad_personalization`), each a
    /// fixed `GRANTED` / `UNSPECIFIED` or `{ column = "c" }` of the identities table (rows not
    /// granted are left out).
    pub consent: Option<BTreeMap<String, ConsentSpec>>,
    /// File format; inferred from the extension of `to` when absent.
    #[serde(default)]
    pub format: Option<ExportFormat>,
    /// Columns to write (default: all).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Sort keys; rows are always written in a deterministic order (default: the first column).
    #[serde(default)]
    pub order_by: Option<Vec<String>>,
}
