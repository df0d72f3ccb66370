//! The `[[segment]]` entries.

use toml::Spanned;

use super::{parse_ratio, parse_share, valid_name, Ctx};
use crate::hint::did_you_mean;
use crate::job::spec::{PublishSpec, SegmentSpec};
use crate::job::{Segment, SegmentDef, SegmentGates};

/// Checks every segment; `publish` gives the default holdout and salt.
pub(super) fn check(
    ctx: &mut Ctx,
    raw: &[Spanned<SegmentSpec>],
    publish: Option<&Spanned<PublishSpec>>,
    table_names: &[String],
) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut segment_names: Vec<String> = Vec::new();
    for sg in raw {
        let spec = sg.get_ref();
        let offset = sg.span().start;
        let gname = spec.name.as_str();
        if !valid_name(gname) {
            ctx.problem(offset, Some(gname), format!("segment name `{gname}` may only hold letters, digits, `_` and `-` (it names files and folders)"), None);
        }
        if segment_names.iter().any(|n| n == gname) {
            ctx.problem(
                offset,
                Some(gname),
                format!("a segment named `{gname}` already exists"),
                None,
            );
        }
        segment_names.push(gname.to_string());
        let holdout = match spec
            .holdout
            .as_ref()
            .or(publish.and_then(|p| p.get_ref().holdout.as_ref()))
        {
            Some(h) => match parse_share(h) {
                Ok(v) => v,
                Err(e) => {
                    ctx.problem(offset, Some(gname), format!("holdout: {e}"), None);
                    0.0
                }
            },
            None => 0.0,
        };
        let def = match (&spec.query, &spec.sql, &spec.from, &spec.by) {
            (Some(q), None, None, None) => Some(SegmentDef::Query(ctx.inline_sql(offset, q))),
            (None, Some(f), None, None) => ctx.sql_file(offset, gname, f).map(SegmentDef::Query),
            (None, None, Some(from), Some(by)) => {
                if !table_names.iter().any(|t| t == from) {
                    let hint = did_you_mean(from, table_names);
                    ctx.problem(
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
                ctx.problem(offset, Some(gname), "a segment has exactly one of `query` (inline SQL), `sql` (a file), or `from` + `by` (one segment per value of a column)".into(), None);
                None
            }
        };
        let max_change = match &spec.max_change {
            None => None,
            Some(t) => match parse_ratio(&toml::Value::String(t.clone())) {
                Ok(v) => Some(v),
                Err(e) => {
                    ctx.problem(offset, Some(gname), format!("max_change: {e}"), None);
                    None
                }
            },
        };
        if let Some(def) = def {
            segments.push(Segment {
                declared_at: ctx.at(offset),
                name: gname.to_string(),
                def,
                holdout,
                salt: spec
                    .salt
                    .clone()
                    .or(publish.and_then(|p| p.get_ref().salt.clone())),
                description: spec.description.clone(),
                gates: SegmentGates {
                    min_size: spec.min_size,
                    max_size: spec.max_size,
                    max_change,
                },
            });
        }
    }

    segments
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::job::{Job, SegmentDef};

    fn parse(body: &str) -> Result<Job, String> {
        let text = format!(
            "name = \"x\"\n[sources]\nt = {{ url = \"t/\", format = \"parquet\" }}\n{body}"
        );
        Job::parse(&text, "x.toml", Path::new("/tmp")).map_err(|e| e.to_string())
    }

    #[test]
    fn holdout_and_salt_default_to_publish() {
        let job = parse("[[segment]]\nname = \"a\"\nquery = \"SELECT user_id FROM t\"\n[[segment]]\nname = \"b\"\nfrom = \"t\"\nby = \"c\"\nholdout = \"20%\"\nsalt = \"own\"\n[publish]\nholdout = \"10%\"\nsalt = \"job\"\n").unwrap();
        assert_eq!(job.segments[0].holdout, 0.1);
        assert_eq!(job.segments[0].salt.as_deref(), Some("job"));
        assert_eq!(job.segments[1].holdout, 0.2);
        assert_eq!(job.segments[1].salt.as_deref(), Some("own"));
        assert!(
            matches!(&job.segments[1].def, SegmentDef::PerValue { from, by } if from == "t" && by == "c")
        );
    }

    #[test]
    fn segment_problems_reported_together() {
        let msg = parse("[[segment]]\nname = \"a b\"\nquery = \"SELECT 1\"\n[[segment]]\nname = \"c\"\nfrom = \"tt\"\nby = \"x\"\n[[segment]]\nname = \"c\"\nquery = \"SELECT 1\"\nsql = \"f.sql\"\nmax_change = \"lots\"\n[[segment]]\nname = \"d\"\nquery = \"SELECT 1\"\nholdout = \"100%\"\n").unwrap_err();
        assert!(msg.contains("segment name `a b`"), "{msg}");
        assert!(msg.contains("reads unknown table `tt`"), "{msg}");
        assert!(msg.contains("did you mean `t`?"), "{msg}");
        assert!(msg.contains("a segment named `c` already exists"), "{msg}");
        assert!(msg.contains("exactly one of `query`"), "{msg}");
        assert!(msg.contains("max_change:"), "{msg}");
        assert!(
            msg.contains("holdout: `100%` must be at least 0% and below 100%"),
            "{msg}"
        );
    }
}
