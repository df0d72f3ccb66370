//! The publish stage: the fitted models beside the outputs, the manifest, the publication of
//! the run folder (one small pointer written last), the models kept as state for the next run,
//! and the retention of old runs.

use super::{Prepared, RunReport, Stages};
use crate::error::{Error, Result};
use crate::export::manifest::{Manifest, StepEntry, TableEntry};
use crate::export::segment_files::SegmentExportReport;
use crate::export::ExportResult;
use crate::job::Job;
use crate::quality::GateResult;
use crate::segments::Segments;
use crate::steps::StepResult;
use crate::storage::publish::RunFolder;
use crate::storage::{self, write};

/// What the earlier stages produced, published together.
pub struct Outputs {
    /// Steps run.
    pub steps: Vec<StepResult>,
    /// Tables exported.
    pub exports: Vec<ExportResult>,
    /// Segments built.
    pub segments: Segments,
    /// Segment files written.
    pub segment_exports: Vec<SegmentExportReport>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// Quality gates measured.
    pub gates: Vec<GateResult>,
}

/// The fitted model of a step, as JSON, when the step fits one.
fn model_json(r: &StepResult) -> Result<Option<Vec<u8>>> {
    let text = match (&r.model, &r.lookalike, &r.ltv, &r.propensity) {
        (Some(m), _, _, _) => serde_json::to_vec_pretty(m),
        (_, Some(m), _, _) => serde_json::to_vec_pretty(m),
        (_, _, Some(m), _) => serde_json::to_vec_pretty(m),
        (_, _, _, Some(m)) => serde_json::to_vec_pretty(m),
        _ => return Ok(None),
    };
    text.map(Some)
        .map_err(|e| Error::internal(format!("model of step `{}`: {e}", r.name)))
}

/// Writes the model each step used as `models/<step>.json` below the run folder.
async fn save_models(dir: &storage::Location, steps: &[StepResult]) -> Result<()> {
    for r in steps {
        if let Some(text) = model_json(r)? {
            write::put_bytes(&dir.child(&format!("models/{}.json", r.name))?, text).await?;
        }
    }
    Ok(())
}

/// Keeps each model fitted in this run in the state folder, with what its refit policy reads
/// next time (and k-means' ids, which the next fit continues).
async fn keep_models(state: &storage::Location, steps: &[StepResult]) -> Result<()> {
    for r in steps {
        if let Some(bytes) = &r.keep {
            write::put_bytes(
                &state.child(&format!("models/{}.json", r.name))?,
                bytes.clone(),
            )
            .await?;
        }
    }
    Ok(())
}

/// Writes the models and the manifest, publishes the run, keeps the models as state and
/// removes runs past `keep_runs`.
pub async fn publish(
    job: &Job,
    prepared: &mut Prepared,
    run: &RunFolder,
    out: Outputs,
    stages: Stages,
) -> Result<RunReport> {
    let output = &run.dir;
    save_models(output, &out.steps).await?;
    let plan = &prepared.plan;
    let out_prefix = output.display();
    let manifest = Manifest {
        job: job.name.clone(),
        date: run.key.clone(),
        run_id: run.run_id.clone(),
        engine_version: format!("audiences {}", env!("CARGO_PKG_VERSION")),
        params: plan
            .bindings
            .iter()
            .map(|(k, v)| (k.clone(), v.to_template_text()))
            .collect(),
        started_at: plan.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        inputs: prepared.sources.clone(),
        steps: out
            .steps
            .iter()
            .map(|s| StepEntry {
                name: s.name.clone(),
                rows: s.rows,
                seconds: (s.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
                model: s.model_use.clone(),
            })
            .collect(),
        tables: out
            .exports
            .iter()
            .map(|e| TableEntry {
                table: e.table.clone(),
                path: e
                    .url
                    .strip_prefix(&out_prefix)
                    .map(|p| p.trim_start_matches('/').to_string())
                    .unwrap_or_else(|| e.url.clone()),
                rows: e.rows,
                bytes: e.bytes,
                sha256: e.sha256.clone(),
            })
            .collect(),
        suppression_ids: out.segments.suppression_ids,
        segments: out.segments.segments.clone(),
        exports: out.segment_exports.clone(),
        warnings: out.warnings.clone(),
        stage_seconds: stages.0.iter().cloned().collect(),
        gates: out.gates.clone(),
        incremental: out
            .steps
            .iter()
            .filter_map(|s| s.incremental.clone())
            .collect(),
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(Error::unexpected)?;
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&text))
    };
    write::put_bytes(&output.child("manifest.json")?, text).await?;
    storage::publish::publish(run, &sha).await?;
    tracing::info!(run_id = %run.run_id, folder = %output.display(), "published");

    // Models go into the state folder only once the run is published: a failed run never
    // leaves a model the next run would apply.
    keep_models(&plan.state, &out.steps).await?;
    match storage::publish::cleanup(run, job.publish.keep_runs).await {
        Ok(removed) => {
            for r in removed {
                tracing::info!(removed = %r, "old run removed");
            }
        }
        Err(e) => tracing::warn!("could not remove old runs (the publication stands): {e}"),
    }
    Ok(RunReport {
        job: job.name.clone(),
        bindings: prepared.plan.bindings.clone(),
        output: output.display(),
        sources: prepared.sources.clone(),
        steps: out.steps,
        exports: out.exports,
        run_id: run.run_id.clone(),
        segments: out.segments,
        segment_exports: out.segment_exports,
        warnings: out.warnings,
        gates: out.gates,
        elapsed: std::time::Duration::ZERO,
        last_full: None,
    })
}
