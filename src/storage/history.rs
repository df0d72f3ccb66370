//! The run history: one small JSON record per run attempt under `<output>/_runs/<run id>.json`,
//! written when the run ends — published, failed, or refused by the lock — so `audiences status`
//! can show what happened on nights nobody watched. Run ids sort by start time, so the newest
//! records are the last keys; the history keeps the newest [`KEEP`] records.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use super::Location;
use crate::error::Result;

/// Folder of the records below the output folder.
pub const FOLDER: &str = "_runs";
/// Records kept.
pub const KEEP: usize = 500;

/// What one run did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    /// Run id.
    pub run_id: String,
    /// Job name.
    pub job: String,
    /// Date folder (`as_of`).
    pub date: String,
    /// Start (UTC, RFC 3339).
    pub started_at: String,
    /// Wall time in seconds.
    pub seconds: f64,
    /// `published` or `failed`.
    pub outcome: String,
    /// The process exit code this outcome maps to.
    pub exit_code: i32,
    /// The error, for a failed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Target size of each segment, for a published run.
    #[serde(default)]
    pub segments: BTreeMap<String, u64>,
    /// For a job with incremental steps: `full` (every window day computed) or `night`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// Writes a run's record, then drops the oldest records beyond [`KEEP`]. Failing to write is
/// reported to the caller, which logs it: the history must never fail a run.
pub async fn record(root: &Location, rec: &RunRecord) -> Result<()> {
    let loc = root.child(&format!("{FOLDER}/{}.json", rec.run_id))?;
    let text = serde_json::to_vec_pretty(rec).map_err(crate::error::Error::unexpected)?;
    super::write::put_bytes(&loc, text).await?;
    let keys = keys(root).await?;
    if keys.len() > KEEP {
        for k in &keys[..keys.len() - KEEP] {
            let _ = root.store.delete(k).await;
        }
    }
    Ok(())
}

async fn keys(root: &Location) -> Result<Vec<object_store::path::Path>> {
    let dir = root.child(FOLDER)?;
    let mut keys: Vec<object_store::path::Path> = root
        .store
        .list(Some(&dir.path))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .map_err(|e| super::classify("run history", &dir.display(), e))
        .or_else(|e| match e {
            crate::error::Error::SourceMissing { .. } => Ok(vec![]),
            e => Err(e),
        })?;
    keys.retain(|k| k.as_ref().ends_with(".json"));
    keys.sort();
    Ok(keys)
}

/// The newest `limit` records, newest first. Unreadable records are skipped.
pub async fn recent(root: &Location, limit: usize) -> Result<Vec<RunRecord>> {
    let keys = keys(root).await?;
    let mut out = Vec::new();
    for k in keys.iter().rev().take(limit) {
        let Ok(got) = root.store.get(k).await else {
            continue;
        };
        let Ok(bytes) = got.bytes().await else {
            continue;
        };
        if let Ok(r) = serde_json::from_slice::<RunRecord>(&bytes) {
            out.push(r);
        }
    }
    Ok(out)
}
