//! The `[sources]` section.

use std::collections::BTreeMap;

use toml::Spanned;

use super::{parse_ratio, valid_table_name, Ctx};
use crate::job::spec::{SourceFormat, SourceSpec};
use crate::job::{parse_schema, template, Source, SourceChecks};

/// Checks every source: URL template, schema, CSV options, cleaning rules and gates.
pub(super) fn check(
    ctx: &mut Ctx,
    raw: &BTreeMap<String, Spanned<SourceSpec>>,
    template_names: &BTreeMap<String, String>,
) -> Vec<Source> {
    let mut sources = Vec::new();
    for (sname, s) in raw {
        let spec = s.get_ref();
        if !valid_table_name(sname) {
            ctx.problem(s.span().start, None, format!("source name `{sname}` must be letters, digits and `_`, not starting with a digit (it is a SQL table name)"), None);
        }
        if let Err(e) = template::render(&spec.url, template_names) {
            ctx.problem(s.span().start, Some(sname), format!("url: {e}"), None);
        }
        let schema = match &spec.schema {
            Some(text) if spec.format == SourceFormat::Parquet => {
                let _ = text;
                ctx.problem(
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
                    ctx.problem(s.span().start, Some(sname), format!("schema: {e}"), None);
                    None
                }
            },
            None => None,
        };
        let delimiter = spec.delimiter.unwrap_or(',');
        if !delimiter.is_ascii() {
            ctx.problem(
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
                    ctx.problem(s.span().start, Some(sname), format!("expect: {e}"), None);
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
                ctx.problem(
                    s.span().start,
                    Some(sname),
                    "`bad_rows = \"skip\"` applies to csv and json sources with a `schema` (json: without `partitions`)".into(),
                    Some("declare the columns with `schema`, or remove `bad_rows`".into()),
                );
                false
            }
            Some(other) => {
                ctx.problem(
                    s.span().start,
                    Some(sname),
                    format!("bad_rows `{other}` is not `fail` or `skip`"),
                    None,
                );
                false
            }
        };
        let skip_bad_files = match spec.bad_files.as_deref() {
            None | Some("fail") => false,
            Some("skip") => true,
            Some(other) => {
                ctx.problem(
                    s.span().start,
                    Some(sname),
                    format!("bad_files `{other}` is not `fail` or `skip`"),
                    None,
                );
                false
            }
        };
        if spec.string_view && spec.format != SourceFormat::Parquet {
            ctx.problem(
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
                    Ok(_) => ctx.problem(
                        s.span().start,
                        Some(sname),
                        format!("checks.max_null_rate.{col}: a null rate is at most 100%"),
                        None,
                    ),
                    Err(e) => ctx.problem(
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
                    ctx.problem(
                        s.span().start,
                        Some(sname),
                        format!("checks.range.{col}: the minimum {lo} is above the maximum {hi}"),
                        None,
                    );
                }
                checks.range.push((col.clone(), *lo, *hi));
            }
            checks.fresh = c.fresh.as_ref().map(|f| (f.column.clone(), f.max_days));
            if let Some(v) = &c.max_dropped_rate {
                match parse_ratio(v) {
                    Ok(r) => checks.max_dropped_rate = Some(r),
                    Err(e) => ctx.problem(
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
            skip_bad_files,
            string_view: spec.string_view,
            checks,
        });
    }

    sources
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::job::Job;

    fn problems(sources: &str) -> String {
        let text = format!("name = \"x\"\n[sources]\n{sources}");
        Job::parse(&text, "x.toml", Path::new("/tmp"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn source_options_checked_against_the_format() {
        let msg = problems("a = { url = \"a/\", format = \"parquet\", schema = \"x int\" }\n");
        assert!(
            msg.contains("`schema` applies to csv and json sources"),
            "{msg}"
        );
        let msg = problems("a = { url = \"a/\", format = \"csv\", string_view = true }\n");
        assert!(
            msg.contains("`string_view` applies to parquet sources"),
            "{msg}"
        );
        let msg = problems("a = { url = \"a/\", format = \"csv\", bad_rows = \"skip\" }\n");
        assert!(msg.contains("with a `schema`"), "{msg}");
        let msg = problems("a = { url = \"{nope}/\", format = \"csv\" }\n");
        assert!(msg.contains("[a] url:"), "{msg}");
    }

    #[test]
    fn gates_checked() {
        let msg = problems("[sources.a]\nurl = \"a/\"\nformat = \"parquet\"\nchecks = { range = { x = [2.0, 1.0] }, max_null_rate = { y = \"150%\" } }\n");
        assert!(
            msg.contains("checks.range.x: the minimum 2 is above the maximum 1"),
            "{msg}"
        );
        assert!(
            msg.contains("checks.max_null_rate.y: a null rate is at most 100%"),
            "{msg}"
        );
        let ok = "name = \"x\"\n[sources.a]\nurl = \"a/\"\nformat = \"csv\"\nschema = \"id string, n int\"\nbad_rows = \"skip\"\ndedupe = [\"id\"]\n";
        let job = Job::parse(ok, "x.toml", Path::new("/tmp")).unwrap();
        assert!(job.sources[0].skip_bad_rows);
        assert_eq!(job.sources[0].dedupe, vec!["id".to_string()]);
    }
}
