//! What a night cost beside the last full run: each run is a `full` computation (every window
//! day computed) or a `night` (state reused); the last full run's record is kept beside the run
//! history so a night's summary can say how much cheaper it was.

use super::RunReport;
use crate::storage::history::RunRecord;
use crate::storage::Location;

/// Object below the output folder holding the newest published full run's record.
const LAST_FULL: &str = "_runs_last_full.json";

/// `full` or `night` for a job with incremental steps (`None` without them).
pub fn kind(report: &RunReport) -> Option<&'static str> {
    let mut steps = report
        .steps
        .iter()
        .filter_map(|s| s.incremental.as_ref())
        .peekable();
    steps.peek()?;
    let reused = steps.any(|i| {
        i.reused > 0
            || i.merged
                .as_ref()
                .is_some_and(|m| m.remerged_because.is_none() && m.days_kept + m.days_removed > 0)
    });
    Some(if reused { "night" } else { "full" })
}

/// Keeps `rec` as the last full run when it is one; for a night, reads the last full run's
/// record. Failing to read or write it never fails the run (a warning says so).
pub async fn remember_or_compare(root: &Location, rec: &RunRecord) -> Option<RunRecord> {
    let loc = root.child(LAST_FULL).ok()?;
    match rec.kind.as_deref() {
        Some("full") => {
            let text = serde_json::to_vec_pretty(rec).ok()?;
            if let Err(e) = crate::storage::write::put_bytes(&loc, text).await {
                tracing::warn!("could not keep the full run's record: {e}");
            }
            None
        }
        Some("night") => {
            let bytes = crate::storage::read_bytes(&loc).await.ok()?;
            serde_json::from_slice(&bytes).ok()
        }
        _ => None,
    }
}
