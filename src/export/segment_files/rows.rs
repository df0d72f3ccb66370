//! The SQL of a segment export: members joined to their identifiers, each identifier
//! normalised and validated (once per export, held as a table), rows de-duplicated and ordered.

use super::{export_problem, lit, quote, SegmentExport, PREVIOUS};
use crate::engine::Engine;
use crate::error::Result;
use crate::job::{ExportFormat, Job};
use crate::segments::MEMBERS;

/// The SQL that produces the export's rows: segment, part, id type, field values, first user, n.
pub(super) fn rows_sql(
    job: &Job,
    ex: &SegmentExport,
    eligible: &[String],
    deltas: bool,
    cc: Option<&str>,
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
                (0..ex.fields.len())
                    .map(|i| format!("i.f{i}"))
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
        (_, None) => normalised_exprs(ex, cc),
    };
    let fcols: Vec<String> = (0..exprs.len()).map(|i| format!("f{i}")).collect();
    let inner = format!(
        "SELECT m.segment, m.part, m.user_id, {} FROM ({members}) m {join}",
        exprs
            .iter()
            .zip(&fcols)
            .map(|(e, f)| format!("{e} AS {f}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if ex.format == ExportFormat::TencentAds {
        // One identifier per row: the first id type with a valid value.
        let case = ex
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| format!("WHEN f{i} IS NOT NULL THEN {}", lit(&f.header)))
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "SELECT segment, part, id_type, v, MIN(user_id) AS first_user, COUNT(*) AS n FROM (
               SELECT segment, part, user_id, CASE {case} END AS id_type, COALESCE({}) AS v FROM ({inner}))
             GROUP BY segment, part, id_type, v
             ORDER BY segment, part, id_type NULLS FIRST, first_user, v",
            fcols.join(", ")
        )
    } else {
        let fl = fcols.join(", ");
        format!(
            "SELECT segment, part, CAST(NULL AS VARCHAR) AS id_type, {fl}, MIN(user_id) AS first_user, COUNT(*) AS n FROM ({inner})
             GROUP BY segment, part, {fl}
             ORDER BY segment, part, first_user, {fl}"
        )
    }
}

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
    let cols = normalised_exprs(ex, ex.country_code.as_deref())
        .into_iter()
        .enumerate()
        .map(|(i, e)| format!("{e} AS f{i}"))
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
