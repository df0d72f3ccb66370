//! The SQL of a segment export: members joined to their identifiers, each identifier
//! normalised and validated (once per export, held as a table), rows de-duplicated and ordered.

use std::collections::BTreeMap;

use super::{export_problem, lit, platform, quote, SegmentExport, PREVIOUS};
use crate::engine::Engine;
use crate::error::Result;
use crate::job::exports::ConsentValue;
use crate::job::{ExportFormat, Job};
use crate::segments::MEMBERS;

/// The SQL that produces the export's rows: segment, part, id type, field values, first user, n.
pub(super) fn rows_sql(
    job: &Job,
    ex: &SegmentExport,
    eligible: &[String],
    deltas: bool,
    normalised: Option<&str>,
) -> String {
    let id = job.publish.id.as_str();
    let names = eligible
        .iter()
        .map(|s| lit(s))
        .collect::<Vec<_>>()
        .join(", ");
    let mut members =
        format!("SELECT segment, user_id, grp AS part FROM {MEMBERS} WHERE segment IN ({names})");
    if deltas {
        members.push_str(&format!(
            " UNION ALL SELECT c.segment, c.user_id, 'adds' AS part FROM {MEMBERS} c LEFT JOIN (SELECT segment, user_id FROM {PREVIOUS} WHERE grp = 'target') p ON c.segment = p.segment AND c.user_id = p.user_id WHERE c.grp = 'target' AND p.user_id IS NULL AND c.segment IN ({names})
              UNION ALL SELECT p.segment, p.user_id, 'removes' AS part FROM {PREVIOUS} p LEFT JOIN (SELECT segment, user_id FROM {MEMBERS} WHERE grp = 'target') c ON c.segment = p.segment AND c.user_id = p.user_id WHERE p.grp = 'target' AND c.user_id IS NULL AND p.segment IN ({names})"
        ));
    }
    let join = match &ex.identities {
        Some(t) => format!(
            "LEFT JOIN {} i ON m.user_id = CAST(i.{} AS VARCHAR)",
            quote(t),
            quote(id)
        ),
        None => String::new(),
    };
    let (join, exprs) = match normalised {
        // The identifiers were normalised once for the whole export (see `normalise_once`).
        Some(t) => (
            format!("LEFT JOIN {t} i ON m.user_id = i.user_id"),
            Some(
                value_columns(ex)
                    .into_iter()
                    .map(|(alias, _)| format!("i.{alias}"))
                    .collect::<Vec<_>>(),
            ),
        ),
        None => (join, None),
    };
    let exprs: Vec<String> = match (ex.format, exprs) {
        (_, Some(e)) => e,
        (ExportFormat::Csv, None) => std::iter::once("m.user_id".to_string())
            .chain(
                ex.columns
                    .iter()
                    .map(|c| format!("CAST(i.{} AS VARCHAR)", quote(c))),
            )
            .collect(),
        (_, None) => value_columns(ex).into_iter().map(|(_, e)| e).collect(),
    };
    // Keys (f…), then the apps of WECHAT_OPENID keys (a…) and consent signals (c…).
    let aliases: Vec<String> = match ex.format {
        ExportFormat::Csv => (0..exprs.len()).map(|i| format!("f{i}")).collect(),
        _ => value_columns(ex).into_iter().map(|(a, _)| a).collect(),
    };
    let inner = format!(
        "SELECT m.segment, m.part, m.user_id, {} FROM ({members}) m {join}",
        exprs
            .iter()
            .zip(&aliases)
            .map(|(e, f)| format!("{e} AS {f}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if ex.format == ExportFormat::TencentAds {
        // One identifier per row: the first id type with a valid value (and, for an openid,
        // a valid app: each app's openids are a file set of their own).
        let when = |i: usize, f: &platform::Field, then: String| match f.app_column {
            Some(_) => format!("WHEN f{i} IS NOT NULL AND a{i} IS NOT NULL THEN {then}"),
            None => format!("WHEN f{i} IS NOT NULL THEN {then}"),
        };
        let id_type = ex
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| match f.app_column {
                Some(_) => when(
                    i,
                    f,
                    format!("concat({}, a{i})", lit(&format!("{}{APP_SEP}", f.header))),
                ),
                None => when(i, f, lit(&f.header)),
            })
            .collect::<Vec<_>>()
            .join(" ");
        let value = ex
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| when(i, f, format!("f{i}")))
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "SELECT segment, part, id_type, v, MIN(user_id) AS first_user, COUNT(*) AS n FROM (
               SELECT segment, part, user_id, CASE {id_type} END AS id_type, CASE {value} END AS v FROM ({inner}))
             GROUP BY segment, part, id_type, v
             ORDER BY segment, part, id_type NULLS FIRST, first_user, v"
        )
    } else {
        let keys: Vec<&String> = aliases.iter().filter(|a| a.starts_with('f')).collect();
        let fl = keys
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        // Rows without consent (`w`) group apart: counted, never written.
        let w = if aliases.iter().any(|a| a == "w") {
            ", w"
        } else {
            ""
        };
        format!(
            "SELECT segment, part, CAST(NULL AS VARCHAR) AS id_type, {fl}{w}, MIN(user_id) AS first_user, COUNT(*) AS n FROM ({inner})
             GROUP BY segment, part, {fl}{w}
             ORDER BY segment, part, first_user, {fl}{w}"
        )
    }
}

/// Between an id type and its app in a file set's id type (`WECHAT_OPENID@wx…`).
pub(super) const APP_SEP: char = '@';

/// (segment, part, id type): the rows of one file set.
pub(super) type FileSetKey = (String, String, Option<String>);

/// The normalised, validated value of each field over the identities row `i`.
pub(super) fn normalised_exprs(ex: &SegmentExport, cc: Option<&str>) -> Vec<String> {
    ex.fields
        .iter()
        .map(|f| {
            f.norm
                .sql(&format!("CAST(i.{} AS VARCHAR)", quote(&f.column)), cc)
        })
        .collect()
}

/// Every value column of the export's rows over the identities row `i`, with its alias: the
/// keys `f0…`, the app of each WECHAT_OPENID key `a<i>` (NULL when not a valid app id) and,
/// when consent comes from columns, `w`: `withheld` for a row without it.
pub(super) fn value_columns(ex: &SegmentExport) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = normalised_exprs(ex, ex.country_code.as_deref())
        .into_iter()
        .enumerate()
        .map(|(i, e)| (format!("f{i}"), e))
        .collect();
    for (i, f) in ex.fields.iter().enumerate() {
        if let Some(app) = &f.app_column {
            let v = format!("trim(CAST(i.{} AS VARCHAR))", quote(app));
            out.push((
                format!("a{i}"),
                format!("CASE WHEN regexp_like({v}, '^[0-9A-Za-z_.-]{{1,64}}$') THEN {v} END"),
            ));
        }
    }
    // Google takes consent per upload, not per row: rows whose consent column does not say
    // granted are left out (and counted), so the file holds only consenting people.
    let granted: Vec<String> = ex
        .consent
        .iter()
        .filter_map(|c| match &c.value {
            ConsentValue::Column(col) => Some(format!(
                "lower(trim(CAST(i.{} AS VARCHAR))) IN ('granted', 'true', '1', 'yes', 'y')",
                quote(col)
            )),
            ConsentValue::Fixed(_) => None,
        })
        .collect();
    if !granted.is_empty() {
        out.push((
            "w".to_string(),
            format!(
                "CASE WHEN COALESCE({}, false) THEN CAST(NULL AS VARCHAR) ELSE 'withheld' END",
                granted.join(" AND ")
            ),
        ));
    }
    out
}

/// Normalises every identities row once for the export and holds the result as a table, so each
/// segment's query only joins (the identities are read and normalised once, not per segment).
pub(super) async fn normalise_once(
    engine: &Engine,
    job: &Job,
    ex: &SegmentExport,
    label: &str,
) -> Result<Option<String>> {
    let Some(t) = &ex.identities else {
        return Ok(None);
    };
    if ex.format == ExportFormat::Csv || ex.fields.is_empty() {
        return Ok(None);
    }
    let name = format!("__export_ids_{}", ex.index);
    let cols = value_columns(ex)
        .into_iter()
        .map(|(a, e)| format!("{e} AS {a}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT CAST(i.{} AS VARCHAR) AS user_id, {cols} FROM {} i WHERE i.{} IS NOT NULL",
        quote(&job.publish.id),
        quote(t),
        quote(&job.publish.id)
    );
    let df = engine
        .ctx
        .sql(&sql)
        .await
        .map_err(|e| export_problem(label, ex, e))?;
    crate::engine::materialise::materialise(engine, &name, df, label, engine.memory_limit / 4)
        .await?;
    Ok(Some(name))
}

/// Members one segment-files query holds at most (a single larger segment gets its own).
const ROWS_PER_QUERY: u64 = 2_000_000;

/// Consecutive groups of segments of at most [`ROWS_PER_QUERY`] members each, in order.
pub(super) fn query_groups(eligible: &[String], sizes: &BTreeMap<String, u64>) -> Vec<Vec<String>> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut held = 0;
    for seg in eligible {
        let n = sizes.get(seg).copied().unwrap_or(ROWS_PER_QUERY);
        match groups.last_mut() {
            Some(g) if held + n <= ROWS_PER_QUERY => {
                g.push(seg.clone());
                held += n;
            }
            _ => {
                groups.push(vec![seg.clone()]);
                held = n;
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn small_segments_share_a_query_and_large_ones_get_their_own() {
        let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let sizes: BTreeMap<String, u64> = [
            ("a", 900_000),
            ("b", 900_000),
            ("c", 900_000),
            ("d", 5_000_000),
            ("e", 10),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let groups = query_groups(&names, &sizes);
        assert_eq!(
            groups,
            vec![
                vec!["a".to_string(), "b".to_string()],
                vec!["c".to_string()],
                vec!["d".to_string()],
                vec!["e".to_string()],
            ]
        );
    }
}
