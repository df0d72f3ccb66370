//! Binding a checked job to one run: typed parameter values from the command line and the
//! defaults, and the URL templates rendered with them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

use super::params::{self, ParamValue};
use super::spec::ParamType;
use super::template;
use super::Job;
use crate::error::{Error, Result};
use crate::hint;

/// Parameter values bound for one run.
pub type Bindings = BTreeMap<String, ParamValue>;

/// Where a run reads the time. A run reads it once, so a run started just before midnight
/// locks, names its folder and computes its SQL for one date.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(Utc::now))
    }

    /// A clock that answers with `f` (tests: a fixed instant, or one that moves at each read).
    pub fn from_fn(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    /// The current instant.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

impl Job {
    /// Binds values for one run: `date` sets `as_of`; `overrides` are `name=value` pairs parsed
    /// by each param's declared type; every other param takes its default, and `as_of` without
    /// one is the day before `now` in the job's time zone. `cwd` is the base of relative `path`
    /// values given on the command line.
    pub fn bind(
        &self,
        date: Option<NaiveDate>,
        overrides: &[String],
        cwd: &Path,
        now: DateTime<Utc>,
    ) -> Result<Bindings> {
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
            given.insert("as_of".into(), d.format("%Y-%m-%d").to_string());
        }
        let mut out = Bindings::new();
        let mut errors = Vec::new();
        let names: Vec<String> = self.params.iter().map(|p| p.name.clone()).collect();
        for k in given.keys() {
            if !names.contains(k) {
                let hint = hint::closest(k, &names)
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
                        out.insert(p.name.clone(), ParamValue::Date(self.yesterday(now)));
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

    /// The day before `now` in the job's time zone: the default `as_of`.
    pub fn yesterday(&self, now: DateTime<Utc>) -> NaiveDate {
        let today = now.with_timezone(&self.timezone).date_naive();
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn date(s: &str) -> NaiveDate {
        params::parse_date(s).unwrap()
    }

    #[test]
    fn required_param_and_bad_type() {
        let text = "name = \"x\"\n[params]\nas_of = { type = \"date\" }\nn = { type = \"int\", default = 3 }\nm = { type = \"float\" }\n";
        let job = Job::parse(text, "x.toml", Path::new("/tmp")).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap();
        let err = job.bind(None, &[], Path::new("/"), now).unwrap_err();
        assert!(err.to_string().contains("--param m=VALUE"), "{err}");
        // as_of alone is never required: it defaults to yesterday.
        let b = job
            .bind(None, &["m=1.5".into()], Path::new("/"), now)
            .unwrap();
        assert_eq!(b["as_of"], ParamValue::Date(date("2026-11-24")));
        let err = job
            .bind(
                Some(date("2026-11-24")),
                &["n=abc".into(), "m=1".into()],
                Path::new("/"),
                now,
            )
            .unwrap_err();
        assert!(err.to_string().contains("param `n` (int)"), "{err}");
        let b = job
            .bind(
                Some(date("2026-11-24")),
                &["n=7".into(), "m=1".into()],
                Path::new("/"),
                now,
            )
            .unwrap();
        assert_eq!(b["n"], ParamValue::Int(7));
    }

    #[test]
    fn yesterday_is_in_the_job_time_zone() {
        let text =
            "name = \"x\"\ntimezone = \"Asia/Shanghai\"\n[params]\nas_of = { type = \"date\" }\n";
        let job = Job::parse(text, "x.toml", Path::new("/tmp")).unwrap();
        // 17:30 UTC on the 24th is 01:30 on the 25th in Shanghai: yesterday there is the 24th.
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 17, 30, 0).unwrap();
        assert_eq!(job.yesterday(now), date("2026-11-24"));
        let before = Utc.with_ymd_and_hms(2026, 11, 24, 15, 59, 0).unwrap();
        assert_eq!(job.yesterday(before), date("2026-11-23"));
    }
}
