//! Job files: parsing (serde, `deny_unknown_fields`), validation into a checked [`Job`], and
//! binding typed parameters from the command line.
//!
//! Paths written in a job file (SQL files, local source URLs, the output folder, `path` param
//! defaults) are relative to the folder holding the job file, so a job behaves the same
//! whatever directory cron starts it from. Paths given on the command line are relative to the
//! current directory, as every command-line tool does.

pub mod params;
pub mod spec;
pub mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::{Error, Location, Problem, Result};
pub use params::ParamValue;
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

/// What a step does.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// Run one SQL query.
    Sql(StepSql),
    /// Cluster the rows of a table.
    KMeans(crate::models::kmeans_step::KMeansConfig),
    /// Expand a seed audience.
    Lookalike(crate::models::lookalike_step::LookalikeConfig),
    /// Predict lifetime value from customer summaries.
    Ltv(crate::models::ltv_step::LtvConfig),
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
    pub segments: Option<crate::export::SegmentExport>,
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

/// Parses a ratio written `"50%"` or as a number (`0.5`); at least 0.
pub fn parse_ratio(v: &toml::Value) -> std::result::Result<f64, String> {
    let r = match v {
        toml::Value::Float(f) => *f,
        toml::Value::Integer(i) => *i as f64,
        toml::Value::String(t) => match t.trim().strip_suffix('%') {
            Some(p) => p
                .trim()
                .parse::<f64>()
                .map(|x| x / 100.0)
                .map_err(|_| format!("`{t}` is not a percentage; write e.g. \"5%\""))?,
            None => t
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("`{t}` is not a ratio; write e.g. \"5%\" or 0.05"))?,
        },
        other => {
            return Err(format!(
                "`{other}` is not a ratio; write e.g. \"5%\" or 0.05"
            ))
        }
    };
    if !(r >= 0.0 && r.is_finite()) {
        return Err(format!("`{v}` must be a ratio of at least 0"));
    }
    Ok(r)
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

/// Parses a share such as `"10%"` (or `0.1`) into 0.0..1.0.
pub fn parse_share(text: &str) -> std::result::Result<f64, String> {
    let t = text.trim();
    let v = if let Some(p) = t.strip_suffix('%') {
        p.trim().parse::<f64>().map(|v| v / 100.0)
    } else {
        t.parse::<f64>()
    }
    .map_err(|_| format!("`{text}` is not a share; write e.g. \"10%\""))?;
    if !(0.0..1.0).contains(&v) {
        return Err(format!("`{text}` must be at least 0% and below 100%"));
    }
    Ok(v)
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
    pub engine: crate::engine::EngineKind,
}

/// Parameter values bound for one run.
pub type Bindings = BTreeMap<String, ParamValue>;

/// Converts a byte offset in `text` to a 1-based line and column (in characters).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn valid_table_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
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
        let at = |offset: usize| {
            let (line, column) = line_col(text, offset);
            Location {
                file: file.to_string(),
                line,
                column,
            }
        };
        let raw: spec::JobSpec = toml::from_str(text).map_err(|e| {
            let location = e.span().map(|s| at(s.start));
            Error::job(Problem {
                location,
                step: None,
                message: e.message().trim().to_string(),
                hint: Some(
                    "the job-file reference is in the README (section \"Job files\")".into(),
                ),
            })
        })?;
        let mut problems = Vec::new();
        let mut problem =
            |offset: usize, step: Option<&str>, message: String, hint: Option<String>| {
                problems.push(Problem {
                    location: Some(at(offset)),
                    step: step.map(str::to_string),
                    message,
                    hint,
                })
            };

        let name = raw.name.get_ref().clone();
        if !valid_name(&name) {
            problem(
                raw.name.span().start,
                None,
                format!("job name `{name}` may only hold letters, digits, `_` and `-`"),
                None,
            );
        }

        let mut params = Vec::new();
        for (pname, p) in &raw.params {
            let spec = p.get_ref();
            if !valid_table_name(pname) {
                problem(p.span().start, None, format!("param name `{pname}` must be letters, digits and `_`, not starting with a digit"), None);
            }
            let default = match &spec.default {
                None => None,
                Some(v) => match ParamValue::from_toml(spec.ty, v, dir) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        problem(p.span().start, None, format!("param `{pname}`: {e}"), None);
                        None
                    }
                },
            };
            params.push(ParamDecl {
                name: pname.clone(),
                ty: spec.ty,
                default,
                description: spec.description.clone(),
            });
        }

        let known_vars: Vec<String> = params
            .iter()
            .map(|p| p.name.clone())
            .chain(["job".to_string()])
            .collect();
        let dummy_vars: BTreeMap<String, String> = known_vars
            .iter()
            .map(|k| (k.clone(), "x".to_string()))
            .collect();

        let mut sources = Vec::new();
        for (sname, s) in &raw.sources {
            let spec = s.get_ref();
            if !valid_table_name(sname) {
                problem(s.span().start, None, format!("source name `{sname}` must be letters, digits and `_`, not starting with a digit (it is a SQL table name)"), None);
            }
            if let Err(e) = template::render(&spec.url, &dummy_vars) {
                problem(s.span().start, Some(sname), format!("url: {e}"), None);
            }
            let schema = match &spec.schema {
                Some(text) if spec.format == SourceFormat::Parquet => {
                    let _ = text;
                    problem(
                        s.span().start,
                        Some(sname),
                        "`schema` applies to csv and json sources; Parquet files carry their own"
                            .into(),
                        Some("remove the `schema` key".into()),
                    );
                    None
                }
                Some(text) => match parse_schema(text) {
                    Ok(sch) => Some(sch),
                    Err(e) => {
                        problem(s.span().start, Some(sname), format!("schema: {e}"), None);
                        None
                    }
                },
                None => None,
            };
            let delimiter = spec.delimiter.unwrap_or(',');
            if !delimiter.is_ascii() {
                problem(
                    s.span().start,
                    Some(sname),
                    format!("delimiter `{delimiter}` must be one ASCII character"),
                    None,
                );
            }
            let expect = match &spec.expect {
                Some(text) => match parse_schema(text) {
                    Ok(sch) => Some(sch),
                    Err(e) => {
                        problem(s.span().start, Some(sname), format!("expect: {e}"), None);
                        None
                    }
                },
                None => None,
            };
            let skip_bad_rows = match spec.bad_rows.as_deref() {
                None | Some("fail") => false,
                Some("skip") if spec.format == SourceFormat::Csv && schema.is_some() => true,
                Some("skip")
                    if spec.format == SourceFormat::Json
                        && schema.is_some()
                        && spec.partitions.is_empty() =>
                {
                    true
                }
                Some("skip") => {
                    problem(
                        s.span().start,
                        Some(sname),
                        "`bad_rows = \"skip\"` applies to csv and json sources with a `schema` (json: without `partitions`)".into(),
                        Some("declare the columns with `schema`, or remove `bad_rows`".into()),
                    );
                    false
                }
                Some(other) => {
                    problem(
                        s.span().start,
                        Some(sname),
                        format!("bad_rows `{other}` is not `fail` or `skip`"),
                        None,
                    );
                    false
                }
            };
            if spec.string_view && spec.format != SourceFormat::Parquet {
                problem(
                    s.span().start,
                    Some(sname),
                    "`string_view` applies to parquet sources".into(),
                    Some("remove `string_view`".into()),
                );
            }
            let mut checks = SourceChecks::default();
            if let Some(c) = &spec.checks {
                checks.min_rows = c.min_rows;
                for (col, v) in &c.max_null_rate {
                    match parse_ratio(v) {
                        Ok(r) if r <= 1.0 => checks.max_null_rate.push((col.clone(), r)),
                        Ok(_) => problem(
                            s.span().start,
                            Some(sname),
                            format!("checks.max_null_rate.{col}: a null rate is at most 100%"),
                            None,
                        ),
                        Err(e) => problem(
                            s.span().start,
                            Some(sname),
                            format!("checks.max_null_rate.{col}: {e}"),
                            None,
                        ),
                    }
                }
                checks.unique = c.unique.clone();
                for (col, [lo, hi]) in &c.range {
                    if lo > hi {
                        problem(
                            s.span().start,
                            Some(sname),
                            format!(
                                "checks.range.{col}: the minimum {lo} is above the maximum {hi}"
                            ),
                            None,
                        );
                    }
                    checks.range.push((col.clone(), *lo, *hi));
                }
                checks.fresh = c.fresh.as_ref().map(|f| (f.column.clone(), f.max_days));
                if let Some(v) = &c.max_dropped_rate {
                    match parse_ratio(v) {
                        Ok(r) => checks.max_dropped_rate = Some(r),
                        Err(e) => problem(
                            s.span().start,
                            Some(sname),
                            format!("checks.max_dropped_rate: {e}"),
                            None,
                        ),
                    }
                }
            }
            sources.push(Source {
                name: sname.clone(),
                url: spec.url.clone(),
                format: spec.format,
                partitions: spec.partitions.clone(),
                schema,
                has_header: spec.has_header.unwrap_or(true),
                delimiter: delimiter as u8,
                expect,
                drop: spec.drop.clone().into_iter().collect(),
                dedupe: spec.dedupe.clone(),
                skip_bad_rows,
                string_view: spec.string_view,
                checks,
            });
        }

        let mut steps: Vec<Step> = Vec::new();
        let mut table_names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
        for st in &raw.steps {
            let spec = st.get_ref();
            let offset = st.span().start;
            let sname = spec.name.as_str();
            if !valid_table_name(sname) {
                problem(offset, Some(sname), format!("step name `{sname}` must be letters, digits and `_`, not starting with a digit (it is a SQL table name)"), None);
            }
            if table_names.iter().any(|t| t == sname) {
                problem(
                    offset,
                    Some(sname),
                    format!("a source or step named `{sname}` already exists"),
                    Some("give each step a unique name".into()),
                );
            }
            table_names.push(sname.to_string());
            let kind = spec.kind.as_deref().unwrap_or("sql");
            if kind != "sql" && spec.incremental.is_some() {
                problem(
                    offset,
                    Some(sname),
                    format!("`incremental` applies to sql steps, not to kind `{kind}`"),
                    None,
                );
            }
            match kind {
                "sql" => {
                    let model_keys = [
                        ("input", spec.input.is_some()),
                        ("id", spec.id.is_some()),
                        ("features", spec.features.is_some()),
                        ("transforms", !spec.transforms.is_empty()),
                        ("nulls", spec.nulls.is_some()),
                        ("k", spec.k.is_some()),
                        ("k_range", spec.k_range.is_some()),
                        ("max_iter", spec.max_iter.is_some()),
                        ("tol", spec.tol.is_some()),
                        ("n_init", spec.n_init.is_some()),
                        ("seed", spec.seed.is_some()),
                        ("sample_rows", spec.sample_rows.is_some()),
                        ("assign", spec.assign.is_some()),
                        ("exclude", spec.exclude.is_some()),
                        ("method", spec.method.is_some()),
                        ("negatives", spec.negatives.is_some()),
                        ("c", spec.c.is_some()),
                        ("seed_value", spec.seed_value.is_some()),
                        ("reach", spec.reach.is_some()),
                        ("min_seed", spec.min_seed.is_some()),
                        ("horizon", spec.horizon.is_some()),
                    ];
                    for (key, set) in model_keys {
                        if set {
                            problem(
                                offset,
                                Some(sname),
                                format!("`{key}` applies to model steps, not to a sql step"),
                                Some("add `kind = \"kmeans\"`, or remove the key".into()),
                            );
                        }
                    }
                }
                "lookalike" => {
                    match lookalike_config(spec) {
                        Ok(cfg) => steps.push(Step {
                            name: sname.to_string(),
                            kind: StepKind::Lookalike(cfg),
                            declared_at: at(offset),
                            rows: (spec.min_rows, spec.max_rows),
                            transient: spec.transient,
                            incremental: None,
                        }),
                        Err(e) => problem(offset, Some(sname), e, None),
                    }
                    continue;
                }
                "ltv" => {
                    match ltv_config(spec) {
                        Ok(cfg) => steps.push(Step {
                            name: sname.to_string(),
                            kind: StepKind::Ltv(cfg),
                            declared_at: at(offset),
                            rows: (spec.min_rows, spec.max_rows),
                            transient: spec.transient,
                            incremental: None,
                        }),
                        Err(e) => problem(offset, Some(sname), e, None),
                    }
                    continue;
                }
                "kmeans" => {
                    match kmeans_config(spec) {
                        Ok(cfg) => steps.push(Step {
                            name: sname.to_string(),
                            kind: StepKind::KMeans(cfg),
                            declared_at: at(offset),
                            rows: (spec.min_rows, spec.max_rows),
                            transient: spec.transient,
                            incremental: None,
                        }),
                        Err(e) => problem(offset, Some(sname), e, None),
                    }
                    continue;
                }
                other => {
                    problem(
                        offset,
                        Some(sname),
                        format!("unknown step kind `{other}`"),
                        Some("known kinds: sql, kmeans, lookalike, ltv".into()),
                    );
                    continue;
                }
            }
            let sql = match (&spec.sql, &spec.query) {
                (Some(f), None) => {
                    let p = Path::new(&params::resolve_path(f, dir)).to_path_buf();
                    match std::fs::read_to_string(&p) {
                        Ok(text) => Some(StepSql {
                            text,
                            file: display_path(&p),
                            first_line: 1,
                            first_column: 1,
                        }),
                        Err(e) => {
                            problem(offset, Some(sname), format!("cannot read SQL file `{f}` ({}): {e}", p.display()), Some("SQL paths are relative to the job file's folder, e.g. `../sql/demo/features.sql`".into()));
                            None
                        }
                    }
                }
                (None, Some(q)) => {
                    // Point errors in inline SQL at the right place of the job file.
                    let start = text[offset..].find(q.as_str()).map(|i| i + offset);
                    let (first_line, first_column) =
                        start.map(|s| line_col(text, s)).unwrap_or((1, 1));
                    Some(StepSql {
                        text: q.clone(),
                        file: file.to_string(),
                        first_line,
                        first_column,
                    })
                }
                (Some(_), Some(_)) => {
                    problem(
                        offset,
                        Some(sname),
                        "a step has either `sql` (a file) or `query` (inline), not both".into(),
                        None,
                    );
                    None
                }
                (None, None) => {
                    problem(
                        offset,
                        Some(sname),
                        "a sql step needs `sql = \"path/to/file.sql\"` or `query = \"SELECT ...\"`"
                            .into(),
                        None,
                    );
                    None
                }
            };
            let incremental = match &spec.incremental {
                None => None,
                Some(inc) => {
                    let src = sources.iter().find(|s| s.name == inc.source);
                    let column = inc
                        .column
                        .clone()
                        .or_else(|| src.and_then(|s| s.partitions.first().cloned()));
                    let days = match &inc.days {
                        toml::Value::Integer(n) if *n > 0 => Some(WindowDays::Fixed(*n)),
                        toml::Value::String(p)
                            if params
                                .iter()
                                .any(|d| &d.name == p && d.ty == ParamType::Int) =>
                        {
                            Some(WindowDays::Param(p.clone()))
                        }
                        other => {
                            problem(offset, Some(sname), format!("incremental.days `{other}` is neither a positive number nor the name of an int param"), None);
                            None
                        }
                    };
                    match (src, column, days) {
                        (None, _, _) => {
                            problem(
                                offset,
                                Some(sname),
                                format!(
                                    "incremental.source `{}` is not a source of this job",
                                    inc.source
                                ),
                                None,
                            );
                            None
                        }
                        (Some(s), Some(column), Some(days)) if s.partitions.contains(&column) => {
                            Some(Incremental {
                                source: inc.source.clone(),
                                days,
                                column,
                            })
                        }
                        (Some(s), _, Some(_)) => {
                            problem(offset, Some(sname), format!("incremental: source `{}` has no day partition column to narrow (partitions: {:?})", s.name, s.partitions), Some("declare the source's day folders, e.g. partitions = [\"dt\"], and name it in incremental.column if it is not the first".into()));
                            None
                        }
                        _ => None,
                    }
                }
            };
            if let Some(sql) = sql {
                steps.push(Step {
                    name: sname.to_string(),
                    kind: StepKind::Sql(sql),
                    declared_at: at(offset),
                    rows: (spec.min_rows, spec.max_rows),
                    transient: spec.transient,
                    incremental,
                });
            }
        }

        let mut segments = Vec::new();
        let mut segment_names: Vec<String> = Vec::new();
        for sg in &raw.segments {
            let spec = sg.get_ref();
            let offset = sg.span().start;
            let gname = spec.name.as_str();
            if !valid_name(gname) {
                problem(offset, Some(gname), format!("segment name `{gname}` may only hold letters, digits, `_` and `-` (it names files and folders)"), None);
            }
            if segment_names.iter().any(|n| n == gname) {
                problem(
                    offset,
                    Some(gname),
                    format!("a segment named `{gname}` already exists"),
                    None,
                );
            }
            segment_names.push(gname.to_string());
            let holdout = match spec.holdout.as_ref().or(raw
                .publish
                .as_ref()
                .and_then(|p| p.get_ref().holdout.as_ref()))
            {
                Some(h) => match parse_share(h) {
                    Ok(v) => v,
                    Err(e) => {
                        problem(offset, Some(gname), format!("holdout: {e}"), None);
                        0.0
                    }
                },
                None => 0.0,
            };
            let def = match (&spec.query, &spec.sql, &spec.from, &spec.by) {
                (Some(q), None, None, None) => {
                    let start = text[offset..].find(q.as_str()).map(|i| i + offset);
                    let (first_line, first_column) =
                        start.map(|s| line_col(text, s)).unwrap_or((1, 1));
                    Some(SegmentDef::Query(StepSql {
                        text: q.clone(),
                        file: file.to_string(),
                        first_line,
                        first_column,
                    }))
                }
                (None, Some(f), None, None) => {
                    let p = Path::new(&params::resolve_path(f, dir)).to_path_buf();
                    match std::fs::read_to_string(&p) {
                        Ok(t) => Some(SegmentDef::Query(StepSql {
                            text: t,
                            file: display_path(&p),
                            first_line: 1,
                            first_column: 1,
                        })),
                        Err(e) => {
                            problem(
                                offset,
                                Some(gname),
                                format!("cannot read SQL file `{f}` ({}): {e}", p.display()),
                                None,
                            );
                            None
                        }
                    }
                }
                (None, None, Some(from), Some(by)) => {
                    if !table_names.iter().any(|t| t == from) {
                        let hint =
                            closest(from, &table_names).map(|c| format!("did you mean `{c}`?"));
                        problem(
                            offset,
                            Some(gname),
                            format!(
                                "segment `{gname}` reads unknown table `{from}` (known: {})",
                                table_names.join(", ")
                            ),
                            hint,
                        );
                    }
                    Some(SegmentDef::PerValue {
                        from: from.clone(),
                        by: by.clone(),
                    })
                }
                _ => {
                    problem(offset, Some(gname), "a segment has exactly one of `query` (inline SQL), `sql` (a file), or `from` + `by` (one segment per value of a column)".into(), None);
                    None
                }
            };
            if let Some(def) = def {
                segments.push(Segment {
                    name: gname.to_string(),
                    def,
                    holdout,
                    salt: spec
                        .salt
                        .clone()
                        .or(raw.publish.as_ref().and_then(|p| p.get_ref().salt.clone())),
                    description: spec.description.clone(),
                    gates: SegmentGates {
                        min_size: spec.min_size,
                        max_size: spec.max_size,
                        max_change: match &spec.max_change {
                            None => None,
                            Some(t) => match parse_ratio(&toml::Value::String(t.clone())) {
                                Ok(v) => Some(v),
                                Err(e) => {
                                    problem(offset, Some(gname), format!("max_change: {e}"), None);
                                    None
                                }
                            },
                        },
                    },
                });
            }
        }

        let mut publish = Publish::default();
        if let Some(p) = &raw.publish {
            let offset = p.span().start;
            let spec = p.get_ref();
            if let Some(id) = &spec.id {
                publish.id = id.clone();
            }
            for t in spec.identities.iter().chain(spec.suppress.iter()) {
                if !table_names.iter().any(|n| n == t) {
                    let hint = closest(t, &table_names).map(|c| format!("did you mean `{c}`?"));
                    problem(
                        offset,
                        None,
                        format!(
                            "[publish] names unknown table `{t}` (known: {})",
                            table_names.join(", ")
                        ),
                        hint,
                    );
                }
            }
            publish.identities = spec.identities.clone();
            publish.suppress = spec.suppress.clone();
            let mut seen: Vec<String> = Vec::new();
            for group in &spec.priority {
                for pat in group {
                    let stem = pat.trim_end_matches('*');
                    if !segment_names.iter().any(|n| {
                        if pat.ends_with('*') {
                            n.starts_with(stem) || stem.starts_with(n.as_str())
                        } else {
                            n == pat || pat.starts_with(&format!("{n}_"))
                        }
                    }) {
                        problem(
                            offset,
                            None,
                            format!(
                                "priority list names unknown segment `{pat}` (segments: {})",
                                segment_names.join(", ")
                            ),
                            closest(pat, &segment_names).map(|c| format!("did you mean `{c}`?")),
                        );
                    }
                    if seen.contains(pat) {
                        problem(
                            offset,
                            None,
                            format!("segment `{pat}` appears in more than one priority list"),
                            Some("a segment can take part in one priority list only".into()),
                        );
                    }
                    seen.push(pat.clone());
                }
            }
            publish.priority = spec.priority.clone();
            if let Some(k) = spec.keep_runs {
                if k == 0 {
                    problem(
                        offset,
                        None,
                        "keep_runs must be at least 1 (the run just published)".into(),
                        None,
                    );
                }
                publish.keep_runs = k.max(1);
            }
            if let Some(m) = spec.lock_timeout_minutes {
                publish.lock_timeout = std::time::Duration::from_secs(m * 60);
            }
        }

        let mut exports = Vec::new();
        for ex in &raw.exports {
            let spec = ex.get_ref();
            let offset = ex.span().start;
            if let Some(to) = &spec.to {
                if let Err(e) = template::render(to, &dummy_vars) {
                    problem(offset, None, format!("export `to`: {e}"), None);
                }
            }
            match (&spec.table, &spec.segments) {
                (Some(table), None) => {
                    if !table_names.iter().any(|t| t == table) {
                        let hint =
                            closest(table, &table_names).map(|c| format!("did you mean `{c}`?"));
                        problem(
                            offset,
                            None,
                            format!(
                                "export of unknown table `{}` (known: {})",
                                table,
                                table_names.join(", ")
                            ),
                            hint,
                        );
                    }
                    for (key, set) in [
                        ("identities", spec.identities.is_some()),
                        ("ids", spec.ids.is_some()),
                        ("fields", spec.fields.is_some()),
                        ("hash", spec.hash.is_some()),
                        ("country_code", spec.country_code.is_some()),
                        ("max_rows_per_file", spec.max_rows_per_file.is_some()),
                        ("compress", spec.compress.is_some()),
                        ("min_size", spec.min_size.is_some()),
                        ("required", spec.required.is_some()),
                        ("deltas", spec.deltas.is_some()),
                    ] {
                        if set {
                            problem(offset, None, format!("`{key}` applies to exports of segments, not to the export of table `{table}`"), Some("write `segments = [...]` instead of `table`, or remove the key".into()));
                        }
                    }
                    let Some(to) = &spec.to else {
                        problem(offset, None, format!("the export of table `{table}` needs `to` (a file path)"), None);
                        continue;
                    };
                    let format = match spec.format {
                        Some(f @ (ExportFormat::Parquet | ExportFormat::Csv)) => f,
                        Some(_) => {
                            problem(offset, None, format!("ad-platform formats export segments, not tables (export of `{table}`)"), Some("define a [[segment]] and write `segments = [\"name\"]`".into()));
                            ExportFormat::Parquet
                        }
                        None if to.ends_with(".parquet") => ExportFormat::Parquet,
                        None if to.ends_with(".csv") => ExportFormat::Csv,
                        None => {
                            problem(
                                offset,
                                None,
                                format!("cannot tell the format of `{}`", to),
                                Some("add `format = \"parquet\"` or `format = \"csv\"`".into()),
                            );
                            ExportFormat::Parquet
                        }
                    };
                    exports.push(Export {
                        table: table.clone(),
                        to: to.clone(),
                        format,
                        columns: spec.columns.clone(),
                        order_by: spec.order_by.clone(),
                        segments: None,
                    });
                }
                (None, Some(pats)) => {
                    for pat in pats {
                        let stem = pat.trim_end_matches('*');
                        let ok = pat == "*" || segment_names.iter().any(|n| if pat.ends_with('*') { n.starts_with(stem) || stem.starts_with(n.as_str()) } else { n == pat || pat.starts_with(&format!("{n}_")) });
                        if !ok {
                            problem(offset, None, format!("export names unknown segment `{pat}` (segments: {})", segment_names.join(", ")), closest(pat, &segment_names).map(|c| format!("did you mean `{c}`?")));
                        }
                    }
                    let identities = spec.identities.clone().or(publish.identities.clone());
                    if let Some(t) = &identities {
                        if !table_names.iter().any(|n| n == t) {
                            problem(offset, None, format!("export reads unknown identities table `{t}`"), closest(t, &table_names).map(|c| format!("did you mean `{c}`?")));
                        }
                    }
                    let Some(format) = spec.format else {
                        problem(offset, None, "an export of segments needs `format` (tencent_ads, meta_custom_audience, google_customer_match, tiktok_custom_audience, csv or parquet)".into(), None);
                        continue;
                    };
                    match crate::export::SegmentExport::from_spec(spec, format, pats.clone(), identities, publish.identities.as_deref(), exports.len()) {
                        Ok(se) => exports.push(Export {
                            table: String::new(),
                            to: spec.to.clone().unwrap_or_else(|| se.format_name().to_string()),
                            format,
                            columns: spec.columns.clone(),
                            order_by: None,
                            segments: Some(se),
                        }),
                        Err(e) => problem(offset, None, e, Some("the export formats are described in the README (section \"Segment files\")".into())),
                    }
                }
                _ => problem(offset, None, "an export has either `table` (one table to a file) or `segments` (segment files in a format)".into(), None),
            }
        }

        let mut previous = Vec::new();
        for step in &raw.previous {
            match exports.iter().find(|e| e.segments.is_none() && &e.table == step && e.format == ExportFormat::Parquet && !e.to.contains("://") && !e.to.starts_with('/')) {
                Some(e) => previous.push((step.clone(), e.to.clone())),
                None => problem(
                    0,
                    None,
                    format!("`previous` names `{step}`, which is not a step exported to Parquet in the run folder"),
                    Some(format!("add [[export]] table = \"{step}\", to = \"{step}.parquet\"")),
                ),
            }
        }

        let output = match &raw.output {
            Some(o) => {
                if let Err(e) = template::render(o.get_ref(), &dummy_vars) {
                    problem(o.span().start, None, format!("output: {e}"), None);
                }
                o.get_ref().clone()
            }
            None => "../out/{job}".into(),
        };

        let timezone = match &raw.timezone {
            None => chrono_tz::UTC,
            Some(t) => t.get_ref().parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
                problem(
                    t.span().start,
                    None,
                    format!("timezone `{}` is not an IANA time zone name", t.get_ref()),
                    Some("write it like \"UTC\", \"Asia/Shanghai\" or \"Europe/Paris\"".into()),
                );
                chrono_tz::UTC
            }),
        };

        let engine = match &raw.engine {
            None => crate::engine::EngineKind::Local,
            Some(e) => crate::engine::EngineKind::parse(e.get_ref()).unwrap_or_else(|m| {
                problem(
                    e.span().start,
                    None,
                    format!("engine: {m}"),
                    Some("e.g. engine = \"ballista://scheduler.internal:50050\"".into()),
                );
                crate::engine::EngineKind::Local
            }),
        };

        if !problems.is_empty() {
            return Err(Error::Job(problems));
        }
        Ok(Job {
            name,
            description: raw.description,
            path: PathBuf::from(file),
            dir: dir.to_path_buf(),
            params,
            sources,
            steps,
            exports,
            output,
            state_explicit: raw.state.is_some(),
            state: raw.state.unwrap_or_else(|| "../out/{job}/state".into()),
            settings: raw.settings,
            segments,
            publish,
            previous,
            timezone,
            report_min_cell_size: raw
                .report
                .as_ref()
                .and_then(|r| r.min_cell_size)
                .unwrap_or(50),
            engine,
        })
    }

    /// Binds values for one run: `date` sets `as_of`; `overrides` are `name=value` pairs parsed
    /// by each param's declared type; every other param takes its default. `cwd` is the base of
    /// relative `path` values given on the command line.
    pub fn bind(&self, date: Option<&str>, overrides: &[String], cwd: &Path) -> Result<Bindings> {
        let mut given: BTreeMap<String, String> = BTreeMap::new();
        for kv in overrides {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                Error::Usage(format!("--param `{kv}` must be written name=value"))
            })?;
            given.insert(k.trim().to_string(), v.to_string());
        }
        if let Some(d) = date {
            if !self.params.iter().any(|p| p.name == "as_of") {
                return Err(Error::Usage(format!(
                    "--date sets the param `as_of`, but job `{}` declares no such param\n  hint: add `as_of = {{ type = \"date\" }}` under [params]",
                    self.name
                )));
            }
            given.insert("as_of".into(), d.to_string());
        }
        let mut out = Bindings::new();
        let mut errors = Vec::new();
        for k in given.keys() {
            if !self.params.iter().any(|p| &p.name == k) {
                let names: Vec<String> = self.params.iter().map(|p| p.name.clone()).collect();
                let hint = closest(k, &names)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                errors.push(format!(
                    "unknown param `{k}`{hint}; this job declares: {}",
                    names.join(", ")
                ));
            }
        }
        for p in &self.params {
            match given.get(&p.name) {
                Some(text) => match ParamValue::parse(p.ty, text, cwd) {
                    Ok(v) => {
                        out.insert(p.name.clone(), v);
                    }
                    Err(e) => errors.push(format!("param `{}` ({}): {e}", p.name, p.ty.name())),
                },
                None => match &p.default {
                    Some(v) => {
                        out.insert(p.name.clone(), v.clone());
                    }
                    None if p.name == "as_of" && p.ty == ParamType::Date => {
                        // A nightly run processes the day that just ended.
                        out.insert(p.name.clone(), ParamValue::Date(self.yesterday()));
                    }
                    None => {
                        let how = if p.name == "as_of" {
                            "--date YYYY-MM-DD".to_string()
                        } else {
                            format!("--param {}=VALUE", p.name)
                        };
                        errors.push(format!(
                            "param `{}` ({}) is required and has no default: pass {how}",
                            p.name,
                            p.ty.name()
                        ));
                    }
                },
            }
        }
        if !errors.is_empty() {
            return Err(Error::Usage(errors.join("\n")));
        }
        Ok(out)
    }

    /// Yesterday in the job's time zone: the default `as_of`.
    pub fn yesterday(&self) -> chrono::NaiveDate {
        let today = chrono::Utc::now()
            .with_timezone(&self.timezone)
            .date_naive();
        today.pred_opt().unwrap_or(today)
    }

    /// Renders a URL template with the bound params and resolves a relative local path against
    /// the job file's folder.
    pub fn render_url(&self, template: &str, bindings: &Bindings) -> Result<String> {
        let vars = self.template_vars(bindings);
        let text = template::render(template, &vars).map_err(|e| Error::job_msg(None, e, None))?;
        Ok(params::resolve_path(&text, &self.dir))
    }

    /// Renders a template for a path inside the run folder: params and `{job}`, no path resolution.
    pub fn render_relative(&self, template: &str, bindings: &Bindings) -> Result<String> {
        let vars = self.template_vars(bindings);
        template::render(template, &vars).map_err(|e| Error::job_msg(None, e, None))
    }

    fn template_vars(&self, bindings: &Bindings) -> BTreeMap<String, String> {
        let mut vars: BTreeMap<String, String> = bindings
            .iter()
            .map(|(k, v)| (k.clone(), v.to_template_text()))
            .collect();
        vars.insert("job".into(), self.name.clone());
        vars
    }

    /// The run's output folder (absolute path or URL). `override_url` comes from `--output`,
    /// relative to the current directory.
    pub fn output_url(
        &self,
        bindings: &Bindings,
        override_url: Option<&str>,
        cwd: &Path,
    ) -> Result<String> {
        match override_url {
            Some(o) => {
                let vars = self.template_vars(bindings);
                let text = template::render(o, &vars).map_err(Error::Usage)?;
                Ok(params::resolve_path(&text, cwd))
            }
            None => self.render_url(&self.output, bindings),
        }
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

/// `nulls` of a model step.
fn model_nulls(spec: &spec::StepSpec) -> std::result::Result<crate::features::NullPolicy, String> {
    use crate::features::NullPolicy;
    match spec.nulls.as_deref().unwrap_or("mean") {
        "mean" => Ok(NullPolicy::Mean),
        "zero" => Ok(NullPolicy::Zero),
        "drop" => Ok(NullPolicy::Drop),
        other => Err(format!("nulls = \"{other}\" must be mean, zero or drop")),
    }
}

/// `assign` of a model step.
fn model_assign(
    spec: &spec::StepSpec,
) -> std::result::Result<crate::models::kmeans_step::AssignMode, String> {
    use crate::models::kmeans_step::AssignMode;
    match spec.assign.as_deref().unwrap_or("memory") {
        "memory" => Ok(AssignMode::Memory),
        "sql" => Ok(AssignMode::Sql),
        other => Err(format!("assign = \"{other}\" must be memory or sql")),
    }
}

/// `transforms` of a model step, each list checked.
fn model_transforms(
    spec: &spec::StepSpec,
) -> std::result::Result<BTreeMap<String, Vec<String>>, String> {
    let transforms: BTreeMap<String, Vec<String>> = spec
        .transforms
        .iter()
        .map(|(k, v)| (k.clone(), v.list()))
        .collect();
    for (col, list) in &transforms {
        crate::features::parse_transforms(col, list)
            .map_err(|e| format!("transforms of `{col}`: {e}"))?;
    }
    Ok(transforms)
}

fn kmeans_config(
    spec: &spec::StepSpec,
) -> std::result::Result<crate::models::kmeans_step::KMeansConfig, String> {
    use crate::models::kmeans_step::{KChoice, KMeansConfig};
    if spec.sql.is_some() || spec.query.is_some() {
        return Err("a kmeans step reads `input`; `sql`/`query` belong to sql steps".into());
    }
    let input = spec
        .input
        .clone()
        .ok_or("a kmeans step needs `input = \"table\"`")?;
    let range = spec.k_range.map(|[a, b]| (a, b)).unwrap_or((4, 16));
    if range.0 < 2 || range.1 < range.0 {
        return Err(format!(
            "k_range [{}, {}] must be increasing and start at 2 or more",
            range.0, range.1
        ));
    }
    let k = match &spec.k {
        None => KChoice::Auto(range.0, range.1),
        Some(toml::Value::String(s)) if s == "auto" => KChoice::Auto(range.0, range.1),
        Some(toml::Value::Integer(i)) if *i >= 1 => KChoice::Fixed(*i as usize),
        Some(other) => {
            return Err(format!(
                "k = {other} must be a positive integer or \"auto\""
            ))
        }
    };
    let nulls = model_nulls(spec)?;
    let assign = model_assign(spec)?;
    let transforms = model_transforms(spec)?;
    let tol = spec.tol.unwrap_or(1e-4);
    if tol.is_nan() || tol < 0.0 {
        return Err("tol must be >= 0".into());
    }
    Ok(KMeansConfig {
        input,
        id: spec.id.clone().unwrap_or_else(|| "user_id".into()),
        features: spec.features.clone(),
        transforms,
        nulls,
        k,
        max_iter: spec.max_iter.unwrap_or(100).max(1),
        tol,
        n_init: spec.n_init.unwrap_or(3).max(1),
        seed: match &spec.seed {
            None => 42,
            Some(toml::Value::Integer(i)) if *i >= 0 => *i as u64,
            Some(other) => {
                return Err(format!(
                    "seed = {other} must be a non-negative integer (the random seed)"
                ))
            }
        },
        sample_rows: spec.sample_rows.unwrap_or(1_000_000).max(1),
        assign,
    })
}

fn ltv_config(
    spec: &spec::StepSpec,
) -> std::result::Result<crate::models::ltv_step::LtvConfig, String> {
    if spec.sql.is_some() || spec.query.is_some() {
        return Err(
            "an ltv step reads `input` (a per-customer summary); `sql`/`query` belong to sql steps"
                .into(),
        );
    }
    let others = [
        ("features", spec.features.is_some()),
        ("transforms", !spec.transforms.is_empty()),
        ("k", spec.k.is_some()),
        ("seed", spec.seed.is_some()),
        ("reach", spec.reach.is_some()),
        ("method", spec.method.is_some()),
    ];
    if let Some((key, _)) = others.iter().find(|(_, set)| *set) {
        return Err(format!("`{key}` does not apply to an ltv step"));
    }
    let input = spec.input.clone().ok_or("an ltv step needs `input`: a table with id, frequency, recency, age and monetary (see sql/lifecycle/customer_summary.sql)")?;
    let horizon = spec.horizon.unwrap_or(52.0);
    if !(horizon > 0.0 && horizon.is_finite()) {
        return Err(format!("horizon must be a positive number, not {horizon}"));
    }
    Ok(crate::models::ltv_step::LtvConfig {
        input,
        id: spec.id.clone().unwrap_or_else(|| "user_id".into()),
        horizon,
    })
}

fn lookalike_config(
    spec: &spec::StepSpec,
) -> std::result::Result<crate::models::lookalike_step::LookalikeConfig, String> {
    use crate::models::lookalike_step::{LookalikeConfig, Method, Reach, SeedSource};
    if spec.sql.is_some() || spec.query.is_some() {
        return Err(
            "a lookalike step reads `input` and `seed`; `sql`/`query` belong to sql steps".into(),
        );
    }
    for (key, set) in [
        ("k", spec.k.is_some()),
        ("k_range", spec.k_range.is_some()),
        ("n_init", spec.n_init.is_some()),
        ("max_iter", spec.max_iter.is_some()),
        ("tol", spec.tol.is_some()),
    ] {
        if set {
            return Err(format!(
                "`{key}` applies to kmeans steps, not to a lookalike step"
            ));
        }
    }
    let input = spec
        .input
        .clone()
        .ok_or("a lookalike step needs `input = \"feature_table\"`")?;
    let seed = match &spec.seed {
        Some(toml::Value::String(s)) if s.trim().contains(char::is_whitespace) => SeedSource::Query(s.clone()),
        Some(toml::Value::String(s)) if !s.trim().is_empty() => SeedSource::Table(s.trim().to_string()),
        _ => return Err("a lookalike step needs `seed`: a table of seed ids, or a query such as \"SELECT user_id FROM t WHERE ...\"".into()),
    };
    let method = match spec.method.as_deref().unwrap_or("logistic") {
        "logistic" => Method::Logistic,
        "similarity" => Method::Similarity,
        "blend" => Method::Blend,
        other => {
            return Err(format!(
                "method = \"{other}\" must be logistic, similarity or blend"
            ))
        }
    };
    let reach = match &spec.reach {
        None => vec![
            Reach::Percent(1.0),
            Reach::Percent(2.0),
            Reach::Percent(5.0),
            Reach::Percent(10.0),
        ],
        Some(list) if !list.is_empty() => list
            .iter()
            .map(Reach::parse)
            .collect::<std::result::Result<Vec<_>, _>>()?,
        Some(_) => return Err("reach lists at least one tier".into()),
    };
    let nulls = model_nulls(spec)?;
    let assign = model_assign(spec)?;
    let transforms = model_transforms(spec)?;
    let c = spec.c.unwrap_or(1.0);
    if c.is_nan() || c <= 0.0 {
        return Err("c must be > 0".into());
    }
    Ok(LookalikeConfig {
        input,
        id: spec.id.clone().unwrap_or_else(|| "user_id".into()),
        features: spec.features.clone(),
        transforms,
        nulls,
        seed,
        exclude: spec.exclude.clone().unwrap_or_default(),
        method,
        negatives: spec.negatives.unwrap_or(10).max(1),
        c,
        seed_value: spec.seed_value.unwrap_or(42),
        reach,
        min_seed: spec.min_seed.unwrap_or(100),
        assign,
        sample_rows: spec.sample_rows.unwrap_or(1_000_000).max(1),
    })
}

fn display_path(p: &Path) -> String {
    // Show paths relative to the current directory when they are below it: shorter and clickable.
    match std::env::current_dir() {
        Ok(cwd) => p
            .strip_prefix(&cwd)
            .map(|r| r.display().to_string())
            .unwrap_or_else(|_| p.display().to_string()),
        Err(_) => p.display().to_string(),
    }
}

/// The candidate closest to `word` by edit distance, when it is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&word.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .filter(|(s, _)| *s > 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.as_str())
}

/// The candidates closest to `word`, best first (at most `n`).
pub fn nearest<'a>(word: &str, candidates: &'a [String], n: usize) -> Vec<&'a str> {
    let mut scored: Vec<(f64, &String)> = candidates
        .iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&word.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(n)
        .map(|(_, c)| c.as_str())
        .collect()
}

/// Parses `"user_id string, ts timestamp, amount double"` into an Arrow schema.
pub fn parse_schema(text: &str) -> std::result::Result<SchemaRef, String> {
    let mut fields = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let mut it = part.split_whitespace();
        let (Some(name), Some(ty), None) = (it.next(), it.next(), it.next()) else {
            return Err(format!(
                "`{part}` should be `column type`, e.g. `amount double`"
            ));
        };
        let dt = match ty.to_ascii_lowercase().as_str() {
            "string" | "text" | "utf8" | "varchar" => DataType::Utf8,
            "int" | "bigint" | "int64" | "long" => DataType::Int64,
            "int32" | "integer" => DataType::Int32,
            "float" | "double" | "float64" => DataType::Float64,
            "bool" | "boolean" => DataType::Boolean,
            "date" => DataType::Date32,
            "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
            other => {
                return Err(format!(
                    "unknown type `{other}` for column `{name}` (use string, int, int32, double, bool, date or timestamp)"
                ))
            }
        };
        fields.push(Field::new(name, dt, true));
    }
    if fields.is_empty() {
        return Err("the schema lists no columns".into());
    }
    Ok(Arc::new(Schema::new(fields)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = "name = \"x\"\n[[step]]\nname = \"a\"\nqeury = \"SELECT 1\"\n";
        let err = Job::parse(text, "jobs/x.toml", Path::new("/tmp")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("jobs/x.toml:4:1"), "{msg}");
        assert!(msg.contains("qeury"), "{msg}");
        assert_eq!(err.exit_code(), crate::error::ExitCode::Config);
    }

    #[test]
    fn required_param_and_bad_type() {
        let text = "name = \"x\"\n[params]\nas_of = { type = \"date\" }\nn = { type = \"int\", default = 3 }\nm = { type = \"float\" }\n";
        let job = Job::parse(text, "x.toml", Path::new("/tmp")).unwrap();
        let err = job.bind(None, &[], Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("--param m=VALUE"), "{err}");
        // as_of alone is never required: it defaults to yesterday.
        let b = job.bind(None, &["m=1.5".into()], Path::new("/")).unwrap();
        assert_eq!(b["as_of"], ParamValue::Date(job.yesterday()));
        let err = job
            .bind(
                Some("2026-11-24"),
                &["n=abc".into(), "m=1".into()],
                Path::new("/"),
            )
            .unwrap_err();
        assert!(err.to_string().contains("param `n` (int)"), "{err}");
        let b = job
            .bind(
                Some("2026-11-24"),
                &["n=7".into(), "m=1".into()],
                Path::new("/"),
            )
            .unwrap();
        assert_eq!(b["n"], ParamValue::Int(7));
    }

    #[test]
    fn schema_text() {
        let s = parse_schema("user_id string, ts timestamp, amount double").unwrap();
        assert_eq!(s.fields().len(), 3);
        assert!(parse_schema("a blob").unwrap_err().contains("unknown type"));
    }
}
