//! Checking a job file, one pass per section (params, sources, steps, segments, publish,
//! exports), each adding the problems it finds, so that every problem of a job is reported at
//! once with `file:line:col`.

mod exports;
mod keys;
mod models;
mod params;
mod publish;
mod segments;
mod sources;
mod steps;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::spec::JobSpec;
use super::{template, EngineKind, Job, StepSql};
use crate::error::{Error, Location, Problem, Result};
use crate::hint::line_col;

/// The text being checked and the problems found so far.
pub(super) struct Ctx<'a> {
    /// The job file's text.
    pub text: &'a str,
    /// The job file as named in errors.
    pub file: &'a str,
    /// The base of relative paths.
    pub dir: &'a Path,
    /// Problems found, in file order per section.
    pub problems: Vec<Problem>,
}

impl Ctx<'_> {
    /// The location of a byte offset of the job file.
    pub fn at(&self, offset: usize) -> Location {
        let (line, column) = line_col(self.text, offset);
        Location {
            file: self.file.to_string(),
            line,
            column,
        }
    }

    /// Records a problem at `offset`.
    pub fn problem(
        &mut self,
        offset: usize,
        step: Option<&str>,
        message: String,
        hint: Option<String>,
    ) {
        let location = Some(self.at(offset));
        self.problems.push(Problem {
            location,
            step: step.map(str::to_string),
            message,
            hint,
        });
    }

    /// SQL written inline at or after `offset`, located so errors point into the job file.
    pub fn inline_sql(&self, offset: usize, query: &str) -> StepSql {
        let start = self.text[offset..].find(query).map(|i| i + offset);
        let (first_line, first_column) = start.map(|s| line_col(self.text, s)).unwrap_or((1, 1));
        StepSql {
            text: query.to_string(),
            file: self.file.to_string(),
            first_line,
            first_column,
        }
    }

    /// A SQL file named by the job (relative to its folder).
    pub fn sql_file(&mut self, offset: usize, owner: &str, path: &str) -> Option<StepSql> {
        let p = PathBuf::from(super::params::resolve_path(path, self.dir));
        match std::fs::read_to_string(&p) {
            Ok(text) => Some(StepSql {
                text,
                file: display_path(&p),
                first_line: 1,
                first_column: 1,
            }),
            Err(e) => {
                self.problem(
                    offset,
                    Some(owner),
                    format!("cannot read SQL file `{path}` ({}): {e}", p.display()),
                    Some("SQL paths are relative to the job file's folder, e.g. `../sql/demo/features.sql`".into()),
                );
                None
            }
        }
    }
}

/// Parses and checks job text.
pub(super) fn job(text: &str, file: &str, dir: &Path) -> Result<Job> {
    let raw: JobSpec = toml::from_str(text).map_err(|e| {
        let location = e.span().map(|s| {
            let (line, column) = line_col(text, s.start);
            Location {
                file: file.to_string(),
                line,
                column,
            }
        });
        Error::job(Problem {
            location,
            step: None,
            message: e.message().trim().to_string(),
            hint: Some("the job-file reference is in the README (section \"Job files\")".into()),
        })
    })?;
    let mut ctx = Ctx {
        text,
        file,
        dir,
        problems: Vec::new(),
    };

    let name = raw.name.get_ref().clone();
    if !valid_name(&name) {
        ctx.problem(
            raw.name.span().start,
            None,
            format!("job name `{name}` may only hold letters, digits, `_` and `-`"),
            None,
        );
    }
    let params = params::check(&mut ctx, &raw.params);
    // Templates are checked for unknown names with every known name set to a placeholder.
    let template_names: BTreeMap<String, String> = params
        .iter()
        .map(|p| p.name.clone())
        .chain(["job".to_string()])
        .map(|k| (k, "x".to_string()))
        .collect();
    let sources = sources::check(&mut ctx, &raw.sources, &template_names);
    let steps = steps::check(&mut ctx, &raw.steps, &sources, &params);
    keys::check(&mut ctx, &raw);
    let table_names: Vec<String> = sources
        .iter()
        .map(|s| s.name.clone())
        .chain(raw.steps.iter().map(|s| s.get_ref().name.clone()))
        .collect();
    let segments = segments::check(&mut ctx, &raw.segments, raw.publish.as_ref(), &table_names);
    let segment_names: Vec<String> = raw
        .segments
        .iter()
        .map(|s| s.get_ref().name.clone())
        .collect();
    let publish = publish::check(&mut ctx, raw.publish.as_ref(), &table_names, &segment_names);
    let exports = exports::check(
        &mut ctx,
        &raw.exports,
        &template_names,
        &table_names,
        &segment_names,
        &publish,
    );
    let previous = exports::previous(&mut ctx, &raw.previous, &exports);

    let output = match &raw.output {
        Some(o) => {
            if let Err(e) = template::render(o.get_ref(), &template_names) {
                ctx.problem(o.span().start, None, format!("output: {e}"), None);
            }
            o.get_ref().clone()
        }
        None => "../out/{job}".into(),
    };
    let timezone = match &raw.timezone {
        None => chrono_tz::UTC,
        Some(t) => t.get_ref().parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
            ctx.problem(
                t.span().start,
                None,
                format!("timezone `{}` is not an IANA time zone name", t.get_ref()),
                Some("write it like \"UTC\", \"Asia/Shanghai\" or \"Europe/Paris\"".into()),
            );
            chrono_tz::UTC
        }),
    };
    let engine = match &raw.engine {
        None => EngineKind::Local,
        Some(e) => EngineKind::parse(e.get_ref()).unwrap_or_else(|m| {
            ctx.problem(
                e.span().start,
                None,
                format!("engine: {m}"),
                Some("e.g. engine = \"ballista://scheduler.internal:50050\"".into()),
            );
            EngineKind::Local
        }),
    };

    let (outcome, campaign_days) = match &raw.measure {
        Some(m) => {
            let off = m.span().start;
            let m = m.get_ref();
            let sql = match (&m.outcome, &m.outcome_query) {
                (Some(f), None) => ctx.sql_file(off, "measure", f),
                (None, Some(q)) => Some(ctx.inline_sql(off, q)),
                (None, None) => None,
                (Some(_), Some(_)) => {
                    ctx.problem(
                        off,
                        Some("measure"),
                        "give `outcome` (a SQL file) or `outcome_query`, not both".into(),
                        None,
                    );
                    None
                }
            };
            if m.campaign_days == Some(0) {
                ctx.problem(
                    off,
                    Some("measure"),
                    "campaign_days must be at least 1".into(),
                    None,
                );
            }
            (sql, m.campaign_days.unwrap_or(30))
        }
        None => (None, 30),
    };
    if !ctx.problems.is_empty() {
        return Err(Error::Job(ctx.problems));
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
        outcome,
        campaign_days,
    })
}

/// A job, segment or file name: letters, digits, `_` and `-`.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A SQL table name: letters, digits and `_`, not starting with a digit.
fn valid_table_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a segment pattern (`name`, `prefix*`) names one of `segments` (or a segment one per
/// value generates, `name_value`).
fn pattern_matches(pattern: &str, segments: &[String]) -> bool {
    let stem = pattern.trim_end_matches('*');
    segments.iter().any(|n| {
        if pattern.ends_with('*') {
            n.starts_with(stem) || stem.starts_with(n.as_str())
        } else {
            n == pattern || pattern.starts_with(&format!("{n}_"))
        }
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

/// Parses a ratio written `"50%"` or as a number (`0.5`); at least 0.
fn parse_ratio(v: &toml::Value) -> std::result::Result<f64, String> {
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

/// Parses a share such as `"10%"` (or `0.1`) into 0.0..1.0.
fn parse_share(text: &str) -> std::result::Result<f64, String> {
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
    fn bad_job_name_timezone_and_engine_are_all_reported() {
        let text = "name = \"a b\"\ntimezone = \"Mars/Base\"\nengine = \"spark://x\"\n";
        let err = Job::parse(text, "x.toml", Path::new("/tmp")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("3 problems"), "{msg}");
        assert!(msg.contains("x.toml:1:8: job name `a b`"), "{msg}");
        assert!(msg.contains("x.toml:2:12: timezone `Mars/Base`"), "{msg}");
        assert!(
            msg.contains("engine: `spark://x` is not an engine"),
            "{msg}"
        );
    }

    #[test]
    fn ratios_and_shares() {
        assert_eq!(parse_ratio(&toml::Value::String("5%".into())), Ok(0.05));
        assert_eq!(parse_ratio(&toml::Value::Float(0.5)), Ok(0.5));
        assert!(parse_ratio(&toml::Value::Integer(-1)).is_err());
        assert_eq!(parse_share("10%"), Ok(0.1));
        assert!(parse_share("100%").is_err());
        assert!(parse_share("ten").unwrap_err().contains("not a share"));
    }

    #[test]
    fn segment_patterns() {
        let names: Vec<String> = vec!["cluster".into(), "b01_lookalike".into()];
        assert!(pattern_matches("cluster_3", &names));
        assert!(pattern_matches("b01_*", &names));
        assert!(pattern_matches("cluster", &names));
        assert!(!pattern_matches("clusters", &names));
    }
}
