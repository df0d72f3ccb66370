//! Segments exported as Parquet: one file per segment and part (target, control, adds,
//! removes), the members joined to the export's identity columns, in id order.

use std::collections::BTreeMap;

use super::{
    export_problem, lit, quote, FileEntry, FileSet, SegmentEntry, SegmentExport, PREVIOUS,
};
use crate::engine::Engine;
use crate::error::Result;
use crate::job::Job;
use crate::segments::MEMBERS;
use crate::storage::Location;
use object_store::ObjectStoreExt;

/// Writes the Parquet files of the eligible segments below `run_dir`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn write_parquet_sets(
    engine: &Engine,
    job: &Job,
    ex: &SegmentExport,
    to: &str,
    eligible: &[String],
    deltas: bool,
    run_dir: &Location,
    entries: &mut BTreeMap<String, SegmentEntry>,
) -> Result<()> {
    let id = job.publish.id.as_str();
    let mut parts = vec!["target", "control"];
    if deltas {
        parts.extend(["adds", "removes"]);
    }
    for seg in eligible {
        for part in &parts {
            let members = match *part {
                "adds" => format!("SELECT c.user_id FROM {MEMBERS} c LEFT JOIN (SELECT user_id FROM {PREVIOUS} WHERE grp = 'target' AND segment = {s}) p ON c.user_id = p.user_id WHERE c.segment = {s} AND c.grp = 'target' AND p.user_id IS NULL", s = lit(seg)),
                "removes" => format!("SELECT p.user_id FROM {PREVIOUS} p LEFT JOIN (SELECT user_id FROM {MEMBERS} WHERE grp = 'target' AND segment = {s}) c ON c.user_id = p.user_id WHERE p.segment = {s} AND p.grp = 'target' AND c.user_id IS NULL", s = lit(seg)),
                g => format!("SELECT user_id FROM {MEMBERS} WHERE segment = {} AND grp = {}", lit(seg), lit(g)),
            };
            let (cols, join) = match &ex.identities {
                Some(t) if !ex.columns.is_empty() => (
                    ex.columns
                        .iter()
                        .map(|c| format!(", i.{}", quote(c)))
                        .collect::<String>(),
                    format!(
                        "LEFT JOIN {} i ON m.user_id = CAST(i.{} AS VARCHAR)",
                        quote(t),
                        quote(id)
                    ),
                ),
                _ => (String::new(), String::new()),
            };
            let sql = format!(
                "SELECT m.user_id AS {}{cols} FROM ({members}) m {join} ORDER BY 1{}",
                quote(id),
                (0..ex.columns.len())
                    .map(|i| format!(", {}", i + 2))
                    .collect::<String>()
            );
            let label = format!("export {} (parquet), segment `{seg}`", ex.index + 1);
            let df = engine
                .ctx
                .sql(&sql)
                .await
                .map_err(|e| export_problem(&label, ex, e))?;
            let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
            let stream = crate::engine::sql::execute(df, &label).await?;
            let rel = format!("{to}/{seg}/{part}/{seg}.parquet");
            let loc = run_dir.child(&rel)?;
            let w = crate::storage::write::write_parquet(&loc, schema, stream).await?;
            if w.rows == 0 {
                let _ = loc.store.delete(&loc.path).await;
                continue;
            }
            if let Some(e) = entries.get_mut(seg) {
                e.rows.insert(part.to_string(), w.rows);
                e.file_sets.push(FileSet {
                    part: part.to_string(),
                    id_type: None,
                    open_app_id: None,
                    operation: None,
                    rows: w.rows,
                    files: vec![FileEntry {
                        path: rel,
                        rows: w.rows,
                        bytes: w.bytes,
                        sha256: w.sha256.clone(),
                    }],
                });
            }
        }
    }
    Ok(())
}
