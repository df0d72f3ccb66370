//! The segments stage: build every segment (priority, suppression, holdout), check its size
//! gates against the previous published run, and write the per-user membership table that
//! measurement joins campaign results to.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Prepared;
use crate::engine::diagnostics::execution_error;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::quality::GateResult;
use crate::segments::{Segments, MEMBERS};
use crate::storage::publish::RunFolder;
use crate::storage::{self, write};

/// Builds the segments and writes `segments.parquet`; returns them and their gates.
pub async fn build(
    job: &Job,
    prepared: &Prepared,
    run: &RunFolder,
) -> Result<(Segments, Vec<GateResult>)> {
    let threshold = prepared.engine.memory_limit / 4;
    let segs =
        crate::segments::build(&prepared.engine, job, &prepared.plan.bindings, threshold).await?;
    for c in &segs.segments {
        tracing::info!(segment = %c.name, target = c.target, control = c.control, suppressed = c.suppressed, "segment built");
    }
    let previous_sizes = if job.segments.iter().any(|s| s.gates.max_change.is_some()) {
        previous_segment_sizes(prepared, run).await?
    } else {
        None
    };
    let gates = crate::quality::check_segments(job, &segs, previous_sizes.as_ref());
    crate::quality::enforce("segment", &gates)?;
    let df = prepared
        .engine
        .ctx
        .sql(&format!("SELECT arrow_cast(segment, 'Utf8') AS segment, arrow_cast(user_id, 'Utf8') AS user_id, arrow_cast(grp, 'Utf8') AS grp FROM {MEMBERS} ORDER BY segment, grp, user_id"))
        .await
        .map_err(|e| execution_error("segments", e))?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let started = std::time::Instant::now();
    let stream = crate::engine::sql::execute(df, "segments").await?;
    write::write_parquet(&run.dir.child("segments.parquet")?, schema, stream).await?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "segments.parquet written"
    );
    Ok((segs, gates))
}

/// Target size of each segment in the previous published run (an earlier date), if any.
async fn previous_segment_sizes(
    prepared: &Prepared,
    run: &RunFolder,
) -> Result<Option<BTreeMap<String, u64>>> {
    let Some(ptr) = prepared.plan.previous_run().await? else {
        return Ok(None);
    };
    let loc = run.root.child(&format!("{}/manifest.json", ptr.run))?;
    let bytes = storage::read_bytes(&loc).await?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::data(
            loc.display(),
            format!("the previous run's manifest is not JSON: {e}"),
        )
    })?;
    Ok(Some(
        v["segments"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| Some((s["name"].as_str()?.to_string(), s["target"].as_u64()?)))
                    .collect()
            })
            .unwrap_or_default(),
    ))
}
