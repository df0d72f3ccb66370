//! The exports stages: tables written to Parquet or CSV, and segment files in each platform's
//! format (with adds and removes against the previous published run when asked).

use std::collections::BTreeMap;

use super::Prepared;
use crate::error::Result;
use crate::export::segment_files::{self, SegmentExportReport, PREVIOUS};
use crate::export::{run_export, ExportResult};
use crate::job::Job;
use crate::segments::Segments;
use crate::storage::publish::RunFolder;

/// Writes every table export into the run folder (or its absolute destination).
pub async fn tables(
    job: &Job,
    prepared: &mut Prepared,
    run: &RunFolder,
) -> Result<Vec<ExportResult>> {
    let mut out = Vec::new();
    for e in job.exports.iter().filter(|e| e.segments.is_none()) {
        let bindings = prepared.plan.bindings.clone();
        let r = run_export(&mut prepared.engine, job, e, &bindings, &run.dir).await?;
        tracing::info!(table = %r.table, url = %r.url, rows = r.rows, "export written");
        out.push(r);
    }
    Ok(out)
}

/// Writes every export of segments; warnings (segments too small to export) go to `warnings`.
pub async fn segment_files(
    job: &Job,
    prepared: &mut Prepared,
    run: &RunFolder,
    segs: &Segments,
    warnings: &mut Vec<String>,
) -> Result<Vec<SegmentExportReport>> {
    let previous = register_previous_segments(job, prepared, run).await?;
    let last_full = match &previous {
        Some(_) => last_full_sends(prepared, run).await,
        None => BTreeMap::new(),
    };
    let today = prepared.plan.day();
    let mut out = Vec::new();
    // Ids on more than one identities row, counted once per identities table.
    let mut duplicated: BTreeMap<String, u64> = BTreeMap::new();
    for e in &job.exports {
        let Some(se) = &e.segments else { continue };
        let dups = match &se.identities {
            Some(t) => match duplicated.get(t) {
                Some(n) => *n,
                None => {
                    let n = duplicate_ids(&prepared.engine, t, &job.publish.id).await?;
                    if n > 0 {
                        warnings.push(format!("identities table `{t}`: {n} ids are on more than one row; every row's identifiers are written for them (one person, several devices or phones)"));
                    }
                    duplicated.insert(t.clone(), n);
                    n
                }
            },
            None => 0,
        };
        let to = job.render_relative(&e.to, &prepared.plan.bindings)?;
        let r = segment_files::write(
            &prepared.engine,
            job,
            se,
            to.trim_matches('/'),
            segs,
            &run.dir,
            previous.as_deref(),
            segment_files::SendDates {
                today,
                last_full: last_full.get(to.trim_matches('/')).copied(),
            },
            warnings,
        )
        .await?;
        let mut r = r;
        r.identities_duplicate_ids = dups;
        for s in &r.segments {
            tracing::info!(export = %r.format, segment = %s.segment, rows = ?s.rows, dropped = s.dropped_invalid, "segment files written");
        }
        out.push(r);
    }
    Ok(out)
}

/// The date each export (by destination) last sent its whole list, from the previous published
/// run's manifest. A manifest that cannot be read gives none: every export then sends in full,
/// which is always safe.
async fn last_full_sends(
    prepared: &mut Prepared,
    run: &RunFolder,
) -> BTreeMap<String, chrono::NaiveDate> {
    let mut out = BTreeMap::new();
    let Ok(Some(ptr)) = prepared.plan.previous_run().await else {
        return out;
    };
    let Ok(loc) = run.root.child(&format!("{}/manifest.json", ptr.run)) else {
        return out;
    };
    let Ok(bytes) = crate::storage::read_bytes(&loc).await else {
        return out;
    };
    let Ok(m) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return out;
    };
    for ex in m["exports"].as_array().into_iter().flatten() {
        let date = ex["refresh"]["last_full"]
            .as_str()
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        if let (Some(to), Some(d)) = (ex["to"].as_str(), date) {
            out.insert(to.to_string(), d);
        }
    }
    out
}

/// Ids of `table` that are on more than one row.
async fn duplicate_ids(engine: &crate::engine::Engine, table: &str, id: &str) -> Result<u64> {
    let sql = format!(
        "SELECT 'n', COUNT(*) FROM (SELECT {id} FROM {t} WHERE {id} IS NOT NULL GROUP BY {id} HAVING COUNT(*) > 1)",
        id = crate::quote::ident(id),
        t = crate::quote::ident(table)
    );
    let counts =
        crate::segments::collect_counts(engine, &sql, &format!("identities table `{table}`"))
            .await?;
    Ok(counts.first().map(|(_, v)| v[0] as u64).unwrap_or(0))
}

/// When an export writes deltas: the previous published run's membership table, registered for
/// the writers; returns that run's id.
async fn register_previous_segments(
    job: &Job,
    prepared: &mut Prepared,
    run: &RunFolder,
) -> Result<Option<String>> {
    let wants_deltas = job
        .exports
        .iter()
        .any(|e| e.segments.as_ref().is_some_and(|s| s.deltas));
    if !wants_deltas {
        return Ok(None);
    }
    let Some(ptr) = prepared.plan.previous_run().await?.cloned() else {
        return Ok(None);
    };
    let loc = run.root.child(&format!("{}/segments.parquet", ptr.run))?;
    prepared.engine.register_store(&loc);
    prepared
        .engine
        .register_parquet_at(PREVIOUS, &loc, "the previous run's segments.parquet")
        .await?;
    Ok(Some(ptr.run_id.clone()))
}
