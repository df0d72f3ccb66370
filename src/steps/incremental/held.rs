//! The per-day state of an incremental step: each day's record (`fingerprint.json`) and file,
//! read, listed and written so that a day is always complete or absent.

use std::collections::BTreeMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::Location;

/// A held day: what `fingerprint.json` says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeldDay {
    /// The day (`YYYY-MM-DD`).
    pub day: String,
    /// SHA-256 of the step's SQL, params and the day's input files.
    pub fingerprint: String,
    /// The day's file, relative to the step's state folder; none when the day has no rows.
    pub file: Option<String>,
    /// Rows in the file.
    pub rows: u64,
    /// Bytes of the file.
    pub bytes: u64,
    /// When it was computed (UTC, RFC 3339).
    pub computed_at: String,
    /// The columns with a null in the day's rows (unknown in records of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nulls: Option<Vec<String>>,
}

impl HeldDay {
    /// A day without rows, computed (or known empty) at `now`.
    pub(super) fn empty(day: &str, fingerprint: &str, now: &str) -> HeldDay {
        HeldDay {
            day: day.to_string(),
            fingerprint: fingerprint.to_string(),
            file: None,
            rows: 0,
            bytes: 0,
            computed_at: now.to_string(),
            nulls: Some(Vec::new()),
        }
    }
}

pub(super) async fn read_held(dir: &Location, col: &str, day: &str) -> Result<Option<HeldDay>> {
    let loc = dir.child(&format!("{col}={day}/fingerprint.json"))?;
    match loc.store.get(&loc.path).await {
        Ok(got) => {
            let bytes = got
                .bytes()
                .await
                .map_err(|e| crate::storage::classify("incremental state", &loc.display(), e))?;
            // An unreadable record is a day to compute again, not a failure.
            Ok(serde_json::from_slice(&bytes).ok())
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(crate::storage::classify(
            "incremental state",
            &loc.display(),
            e,
        )),
    }
}

/// Every day held in a step's state, oldest first (for `status`).
pub async fn held_days(dir: &Location, col: &str) -> Result<Vec<HeldDay>> {
    let mut days = held_days_names(dir, col).await?;
    days.sort();
    let mut out = Vec::new();
    for d in days {
        if let Some(h) = read_held(dir, col, &d).await? {
            out.push(h);
        }
    }
    Ok(out)
}

pub(super) async fn held_days_names(dir: &Location, col: &str) -> Result<Vec<String>> {
    let listed = match dir.store.list_with_delimiter(Some(&dir.path)).await {
        Ok(l) => l.common_prefixes,
        Err(object_store::Error::NotFound { .. }) => vec![],
        Err(e) => {
            return Err(crate::storage::classify(
                "incremental state",
                &dir.display(),
                e,
            ))
        }
    };
    Ok(listed
        .iter()
        .filter_map(|p| {
            p.filename()
                .and_then(|f| f.strip_prefix(&format!("{col}=")))
                .map(str::to_string)
        })
        .collect())
}

pub(super) async fn put_json(loc: &Location, v: &impl Serialize) -> Result<()> {
    let text = serde_json::to_vec_pretty(v).map_err(Error::unexpected)?;
    crate::storage::write::put_bytes(loc, text).await
}

/// Writes one day's rows, then its fingerprint.
#[allow(clippy::too_many_arguments)]
pub(super) async fn write_day(
    dir: &Location,
    col: &str,
    day: &str,
    prints: &BTreeMap<String, String>,
    asked: &[String],
    schema: &SchemaRef,
    parts: Vec<RecordBatch>,
    context: &str,
) -> Result<HeldDay> {
    if !asked.iter().any(|d| d == day) {
        return Err(Error::data(
            context.to_string(),
            format!("the step returned rows for day `{day}`, which it was not asked to compute; its `{col}` column must be the source's day partition, unchanged"),
        ));
    }
    let fp = &prints[day];
    let rel = format!("{col}={day}/part-{}.parquet", &fp[..16]);
    let loc = dir.child(&rel)?;
    let batch = concat_batches(schema, &parts).map_err(Error::unexpected)?;
    let rows = batch.num_rows() as u64;
    let nulls = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(_, c)| c.null_count() > 0)
        .map(|(f, _)| f.name().clone())
        .collect();
    let stream = crate::storage::write::in_memory(vec![batch]);
    let w = crate::storage::write::write_parquet(&loc, schema.clone(), stream).await?;
    let h = HeldDay {
        day: day.to_string(),
        fingerprint: fp.clone(),
        file: Some(rel),
        rows,
        bytes: w.bytes,
        computed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        nulls: Some(nulls),
    };
    put_json(&dir.child(&format!("{col}={day}/fingerprint.json"))?, &h).await?;
    Ok(h)
}
