//! Typed parameter values: parsed from the command line or a job-file default, bound into SQL
//! as typed `$name` placeholders (never spliced into text) and into URLs as `{name}`.

use std::path::Path;

use chrono::NaiveDate;
use datafusion::scalar::ScalarValue;

use super::spec::ParamType;

/// A parameter value of one of the declared types.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// `string`
    String(String),
    /// `int`
    Int(i64),
    /// `float`
    Float(f64),
    /// `bool`
    Bool(bool),
    /// `date`
    Date(NaiveDate),
    /// `path`: already resolved to an absolute path or a URL.
    Path(String),
}

impl ParamValue {
    /// Parses command-line text as `ty`. Relative paths are resolved against `base`.
    pub fn parse(ty: ParamType, text: &str, base: &Path) -> Result<Self, String> {
        let t = text.trim();
        match ty {
            ParamType::String => Ok(ParamValue::String(text.to_string())),
            ParamType::Int => t
                .parse::<i64>()
                .map(ParamValue::Int)
                .map_err(|_| format!("`{text}` is not an int (expected digits, e.g. 30)")),
            ParamType::Float => t
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(ParamValue::Float)
                .ok_or_else(|| format!("`{text}` is not a float (expected e.g. 0.5)")),
            ParamType::Bool => match t.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Ok(ParamValue::Bool(true)),
                "false" | "no" | "0" => Ok(ParamValue::Bool(false)),
                _ => Err(format!("`{text}` is not a bool (expected true or false)")),
            },
            ParamType::Date => parse_date(t).map(ParamValue::Date),
            ParamType::Path => Ok(ParamValue::Path(resolve_path(t, base))),
        }
    }

    /// Converts a TOML default to `ty`; relative paths are resolved against `base`
    /// (the job file's folder).
    pub fn from_toml(ty: ParamType, v: &toml::Value, base: &Path) -> Result<Self, String> {
        match (ty, v) {
            (ParamType::Int, toml::Value::Integer(i)) => Ok(ParamValue::Int(*i)),
            (ParamType::Float, toml::Value::Float(f)) => Ok(ParamValue::Float(*f)),
            (ParamType::Float, toml::Value::Integer(i)) => Ok(ParamValue::Float(*i as f64)),
            (ParamType::Bool, toml::Value::Boolean(b)) => Ok(ParamValue::Bool(*b)),
            (ParamType::Date, toml::Value::Datetime(d)) => {
                parse_date(&d.to_string()).map(ParamValue::Date)
            }
            (_, toml::Value::String(s)) => ParamValue::parse(ty, s, base),
            (ty, other) => Err(format!("default {other} is not a {} value", ty.name())),
        }
    }

    /// The SQL value bound to `$name`.
    pub fn to_scalar(&self) -> ScalarValue {
        match self {
            ParamValue::String(s) | ParamValue::Path(s) => ScalarValue::Utf8(Some(s.clone())),
            ParamValue::Int(i) => ScalarValue::Int64(Some(*i)),
            ParamValue::Float(f) => ScalarValue::Float64(Some(*f)),
            ParamValue::Bool(b) => ScalarValue::Boolean(Some(*b)),
            ParamValue::Date(d) => {
                let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid epoch");
                ScalarValue::Date32(Some((*d - epoch).num_days() as i32))
            }
        }
    }

    /// The text substituted for `{name}` in URLs.
    pub fn to_template_text(&self) -> String {
        match self {
            ParamValue::String(s) | ParamValue::Path(s) => s.clone(),
            ParamValue::Int(i) => i.to_string(),
            ParamValue::Float(f) => f.to_string(),
            ParamValue::Bool(b) => b.to_string(),
            ParamValue::Date(d) => d.format("%Y-%m-%d").to_string(),
        }
    }
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(t: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .map_err(|_| format!("`{t}` is not a date (expected YYYY-MM-DD, e.g. 2026-11-24)"))
}

/// Makes a local path absolute against `base`; URLs (`scheme://`) are returned unchanged.
pub fn resolve_path(p: &str, base: &Path) -> String {
    if p.contains("://") {
        return p.to_string();
    }
    let path = Path::new(p);
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    normalize(&joined).to_string_lossy().into_owned()
}

/// Removes `.` and `..` components without touching the file system (the path may not exist yet).
fn normalize(p: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_type_and_rejects_bad_text() {
        let b = Path::new("/base");
        assert_eq!(
            ParamValue::parse(ParamType::Int, "42", b),
            Ok(ParamValue::Int(42))
        );
        assert!(ParamValue::parse(ParamType::Int, "4x", b)
            .unwrap_err()
            .contains("not an int"));
        assert_eq!(
            ParamValue::parse(ParamType::Bool, "TRUE", b),
            Ok(ParamValue::Bool(true))
        );
        assert!(ParamValue::parse(ParamType::Date, "2026-13-01", b).is_err());
        assert_eq!(
            ParamValue::parse(ParamType::Date, "2026-11-24", b)
                .unwrap()
                .to_scalar(),
            ScalarValue::Date32(Some(20781))
        );
        assert_eq!(
            ParamValue::parse(ParamType::Path, "../data/x", Path::new("/a/jobs")).unwrap(),
            ParamValue::Path("/a/data/x".into())
        );
        assert_eq!(
            ParamValue::parse(ParamType::Path, "s3://b/k", b).unwrap(),
            ParamValue::Path("s3://b/k".into())
        );
    }
}
