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
        if let Some(def) = def {
            segments.push(Segment {
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
                    max_change: match &spec.max_change {
                        None => None,
                        Some(t) => match parse_ratio(&toml::Value::String(t.clone())) {
                            Ok(v) => Some(v),
                            Err(e) => {
                                ctx.problem(offset, Some(gname), format!("max_change: {e}"), None);
                                None
                            }
                        },
                    },
                },
            });
        }
    }

    segments
}
