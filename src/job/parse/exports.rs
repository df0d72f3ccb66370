//! The `[[export]]` entries and `previous`.

use std::collections::BTreeMap;

use toml::Spanned;

use super::{pattern_matches, Ctx};
use crate::hint::did_you_mean;
use crate::job::exports::SegmentExport;
use crate::job::spec::{ExportFormat, ExportSpec};
use crate::job::{template, Export, Publish};

/// Checks every export against the job's tables and segments.
pub(super) fn check(
    ctx: &mut Ctx,
    raw: &[Spanned<ExportSpec>],
    template_names: &BTreeMap<String, String>,
    table_names: &[String],
    segment_names: &[String],
    publish: &Publish,
) -> Vec<Export> {
    let mut exports = Vec::new();
    for ex in raw {
        let spec = ex.get_ref();
        let offset = ex.span().start;
        if let Some(to) = &spec.to {
            if let Err(e) = template::render(to, template_names) {
                ctx.problem(offset, None, format!("export `to`: {e}"), None);
            }
        }
        match (&spec.table, &spec.segments) {
            (Some(table), None) => {
                if !table_names.iter().any(|t| t == table) {
                    let hint =
                        did_you_mean(table, table_names);
                    ctx.problem(
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
                let Some(to) = &spec.to else {
                    ctx.problem(offset, None, format!("the export of table `{table}` needs `to` (a file path)"), None);
                    continue;
                };
                let format = match spec.format {
                    Some(f @ (ExportFormat::Parquet | ExportFormat::Csv)) => f,
                    Some(_) => {
                        ctx.problem(offset, None, format!("ad-platform formats export segments, not tables (export of `{table}`)"), Some("define a [[segment]] and write `segments = [\"name\"]`".into()));
                        ExportFormat::Parquet
                    }
                    None if to.ends_with(".parquet") => ExportFormat::Parquet,
                    None if to.ends_with(".csv") => ExportFormat::Csv,
                    None => {
                        ctx.problem(
                            offset,
                            None,
                            format!("cannot tell the format of `{}`", to),
                            Some("add `format = \"parquet\"` or `format = \"csv\"`".into()),
                        );
                        ExportFormat::Parquet
                    }
                };
                exports.push(Export {
                declared_at: ctx.at(offset),
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
                    if pat != "*" && !pattern_matches(pat, segment_names) {
                        ctx.problem(offset, None, format!("export names unknown segment `{pat}` (segments: {})", segment_names.join(", ")), did_you_mean(pat, segment_names));
                    }
                }
                let identities = spec.identities.clone().or(publish.identities.clone());
                if let Some(t) = &identities {
                    if !table_names.iter().any(|n| n == t) {
                        ctx.problem(offset, None, format!("export reads unknown identities table `{t}`"), did_you_mean(t, table_names));
                    }
                }
                let Some(format) = spec.format else {
                    ctx.problem(offset, None, "an export of segments needs `format` (tencent_ads, meta_custom_audience, google_customer_match, tiktok_custom_audience, csv or parquet)".into(), None);
                    continue;
                };
                match SegmentExport::from_spec(spec, format, pats.clone(), identities, publish.identities.as_deref(), exports.len()) {
                    Ok(se) => exports.push(Export {
                declared_at: ctx.at(offset),
                        table: String::new(),
                        to: spec.to.clone().unwrap_or_else(|| se.format_name().to_string()),
                        format,
                        columns: spec.columns.clone(),
                        order_by: None,
                        segments: Some(se),
                    }),
                    Err(e) => ctx.problem(offset, None, e, Some("the export formats are described in the README (section \"Segment files\")".into())),
                }
            }
            _ => ctx.problem(offset, None, "an export has either `table` (one table to a file) or `segments` (segment files in a format)".into(), None),
        }
    }

    exports
}

/// Checks `previous`: each step must be exported to Parquet inside the run folder.
pub(super) fn previous(ctx: &mut Ctx, raw: &[String], exports: &[Export]) -> Vec<(String, String)> {
    let mut previous = Vec::new();
    for step in raw {
        match exports.iter().find(|e| e.segments.is_none() && &e.table == step && e.format == ExportFormat::Parquet && !e.to.contains("://") && !e.to.starts_with('/')) {
            Some(e) => previous.push((step.clone(), e.to.clone())),
            None => ctx.problem(
                0,
                None,
                format!("`previous` names `{step}`, which is not a step exported to Parquet in the run folder"),
                Some(format!("add [[export]] table = \"{step}\", to = \"{step}.parquet\"")),
            ),
        }
    }

    previous
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::job::{ExportFormat, Job};

    fn parse(body: &str) -> Result<Job, String> {
        let text = format!("name = \"x\"\n[sources]\nusers = {{ url = \"u/\", format = \"parquet\" }}\n[[segment]]\nname = \"all\"\nquery = \"SELECT user_id FROM users\"\n[publish]\nidentities = \"users\"\n{body}");
        Job::parse(&text, "x.toml", Path::new("/tmp")).map_err(|e| e.to_string())
    }

    #[test]
    fn table_and_segment_exports() {
        let job = parse("[[export]]\ntable = \"users\"\nto = \"users.csv\"\n[[export]]\nsegments = [\"*\"]\nformat = \"tencent_ads\"\nids = [{ type = \"HASH_IMEI\", column = \"imei\" }]\n").unwrap();
        assert_eq!(job.exports[0].format, ExportFormat::Csv);
        let se = job.exports[1].segments.as_ref().unwrap();
        assert_eq!(job.exports[1].to, "tencent_ads");
        assert_eq!(se.identities.as_deref(), Some("users"));
        assert_eq!(se.fields[0].header, "HASH_IMEI");
    }

    #[test]
    fn export_problems_reported_together() {
        let msg = parse("[[export]]\ntable = \"usres\"\nto = \"u.txt\"\n[[export]]\nsegments = [\"al\"]\nformat = \"meta_custom_audience\"\nfields = { emial = \"email\" }\n[[export]]\nsegments = [\"all\"]\n[[export]]\ntable = \"users\"\nsegments = [\"all\"]\nformat = \"csv\"\n").unwrap_err();
        assert!(msg.contains("export of unknown table `usres`"), "{msg}");
        assert!(msg.contains("cannot tell the format of `u.txt`"), "{msg}");
        assert!(msg.contains("export names unknown segment `al`"), "{msg}");
        assert!(
            msg.contains("field `emial` is not one of this platform's fields"),
            "{msg}"
        );
        assert!(
            msg.contains("an export of segments needs `format`"),
            "{msg}"
        );
        assert!(msg.contains("either `table`"), "{msg}");
    }

    #[test]
    fn previous_needs_a_parquet_export_in_the_run_folder() {
        let text = "name = \"x\"\nprevious = [\"users\"]\n[sources]\nusers = { url = \"u/\", format = \"parquet\" }\n[[export]]\ntable = \"users\"\nto = \"users.csv\"\n";
        let msg = Job::parse(text, "x.toml", Path::new("/tmp"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`previous` names `users`"), "{msg}");
        let ok = text.replace("users.csv", "users.parquet");
        let job = Job::parse(&ok, "x.toml", Path::new("/tmp")).unwrap();
        assert_eq!(
            job.previous,
            vec![("users".to_string(), "users.parquet".to_string())]
        );
    }
}
