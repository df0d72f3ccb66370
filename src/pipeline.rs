//! One run of a job, end to end: bind params → register sources → run SQL steps → exports,
//! and `check`, which plans everything against the real source schemas without running it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::engine::sources::{register_source, SourceInfo};
use crate::engine::steps::{register_view, run_step, StepResult};
use crate::engine::{Engine, EngineConfig};
use crate::error::{Error, Problem, Result};
use crate::export::{run_export, ExportResult};
use crate::job::{Bindings, Job};
use crate::storage;
use crate::storage::lock::Lock;
use crate::storage::publish::RunFolder;

/// Options of one run, from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--date`: the `as_of` param.
    pub date: Option<String>,
    /// `--param name=value`, repeated.
    pub params: Vec<String>,
    /// `--output URL`: overrides the job's output folder.
    pub output: Option<String>,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
    /// `--full-refresh`: recompute every day of incremental steps.
    pub full_refresh: bool,
    /// Run incremental steps as plain steps over their whole window, without state (previews,
    /// queries).
    pub no_state: bool,
    /// `--state URL`: overrides the job's state folder.
    pub state: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Job name.
    pub job: String,
    /// Bound params.
    pub bindings: Bindings,
    /// Output folder.
    pub output: String,
    /// Sources read.
    pub sources: Vec<SourceInfo>,
    /// Steps run.
    pub steps: Vec<StepResult>,
    /// Files written.
    pub exports: Vec<ExportResult>,
    /// Run id.
    pub run_id: String,
    /// Segments built.
    pub segments: crate::segments::Segments,
    /// Segment files written.
    pub segment_exports: Vec<crate::export::segment_files::SegmentExportReport>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// Quality gates measured.
    pub gates: Vec<crate::quality::GateResult>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

/// A prepared session: params bound, sources registered.
pub struct Prepared {
    /// The engine with sources registered.
    pub engine: Engine,
    /// Bound params.
    pub bindings: Bindings,
    /// What the sources held.
    pub sources: Vec<SourceInfo>,
}

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
}

/// Binds params and registers every source.
pub async fn prepare(job: &Job, opts: &RunOptions) -> Result<Prepared> {
    let bindings = job.bind(opts.date.as_deref(), &opts.params, &cwd())?;
    let mut engine = Engine::new(&engine_config(job, opts)).await?;
    if engine.is_distributed() {
        // Executors write step results here: under the output, which must be shared storage.
        let root = storage::locate(&job.output_url(&bindings, opts.output.as_deref(), &cwd())?)?;
        let id = format!(
            "{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f"),
            std::process::id()
        );
        engine.set_work(root.child(&format!("_work/{id}/"))?);
        tracing::info!(engine = %engine.kind, work = %engine.work().map(|w| w.display()).unwrap_or_default(), "SQL runs on a Ballista cluster");
    }
    let mut sources = Vec::new();
    for s in &job.sources {
        sources.push(register_source(&mut engine, job, s, &bindings).await?);
    }
    Ok(Prepared {
        engine,
        bindings,
        sources,
    })
}

fn engine_config(job: &Job, opts: &RunOptions) -> EngineConfig {
    let mut cfg = opts.engine.clone();
    if cfg.kind.is_none() {
        cfg.kind = Some(job.engine.clone());
    }
    cfg.settings = job
        .settings
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    cfg
}

fn progress_bar(opts: &RunOptions, len: usize) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !opts.progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(len as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    Some(pb)
}

/// Runs steps in order up to and including `until` (all when `None`).
pub async fn run_steps(
    job: &Job,
    prepared: &Prepared,
    opts: &RunOptions,
    until: Option<&str>,
) -> Result<Vec<StepResult>> {
    if let Some(u) = until {
        if !job.steps.iter().any(|s| s.name == u) {
            let names: Vec<String> = job.steps.iter().map(|s| s.name.clone()).collect();
            return Err(Error::Usage(format!(
                "job `{}` has no step `{u}` (steps: {})",
                job.name,
                names.join(", ")
            )));
        }
    }
    let threshold = prepared.engine.memory_limit / 4;
    let state = state_location(job, opts, &prepared.bindings)?;
    let pb = progress_bar(opts, job.steps.len());
    // The previous published run, for steps listed in `previous`.
    let previous_run = if job.previous.is_empty() {
        None
    } else {
        let root = storage::locate(&job.output_url(
            &prepared.bindings,
            opts.output.as_deref(),
            &cwd(),
        )?)?;
        crate::storage::publish::previous(&root, &date_key(&prepared.bindings))
            .await?
            .map(|(_, p)| (root, p))
    };
    let mut results = Vec::new();
    let mut released: Vec<&str> = Vec::new();
    for (idx, step) in job.steps.iter().enumerate() {
        if let Some(pb) = &pb {
            pb.set_message(format!("step {}", step.name));
        }
        tracing::info!(step = %step.name, "step started");
        let previous = match &step.kind {
            crate::job::StepKind::KMeans(_) => load_model(&state, &step.name).await,
            _ => None,
        };
        let r = match (&step.kind, &step.incremental) {
            // On a cluster an incremental step computes its whole window there: per-day state
            // is kept by the local engine only.
            (crate::job::StepKind::Sql(sql), Some(inc))
                if !opts.no_state && !prepared.engine.is_distributed() =>
            {
                let start = Instant::now();
                let (rows, report) = crate::engine::incremental::run(
                    &prepared.engine,
                    step,
                    sql,
                    inc,
                    &prepared.bindings,
                    &prepared.sources,
                    &state,
                    opts.full_refresh,
                )
                .await?;
                StepResult {
                    name: step.name.clone(),
                    rows,
                    elapsed: start.elapsed(),
                    held: crate::engine::steps::Held::Memory(0),
                    model: None,
                    lookalike: None,
                    ltv: None,
                    incremental: Some(report),
                }
            }
            _ => {
                run_step(
                    &prepared.engine,
                    step,
                    &prepared.bindings,
                    threshold,
                    previous.as_ref(),
                )
                .await?
            }
        };
        tracing::info!(step = %step.name, rows = r.rows, ms = r.elapsed.as_millis() as u64, "step finished");
        results.push(r);
        if let Some((_, to)) = job.previous.iter().find(|(s, _)| *s == step.name) {
            register_previous(&prepared.engine, &step.name, to, previous_run.as_ref()).await?;
        }
        if let Some(pb) = &pb {
            pb.inc(1);
        }
        if until == Some(step.name.as_str()) {
            break;
        }
        release_transient(job, idx, &prepared.engine, &mut released);
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    Ok(results)
}

/// Drops from memory the transient steps up to `idx` that no later part of the job names:
/// the rest of the job (later steps, segments, exports, gates, ...) is searched for the table
/// name as a whole word, so a table is kept whenever anything might read it.
fn release_transient<'a>(job: &'a Job, idx: usize, engine: &Engine, released: &mut Vec<&'a str>) {
    let pending: Vec<&str> = job.steps[..=idx]
        .iter()
        .filter(|s| s.transient && !released.contains(&s.name.as_str()))
        .map(|s| s.name.as_str())
        .collect();
    if pending.is_empty() {
        return;
    }
    let mut rest = job.clone();
    rest.steps.drain(..=idx);
    let rest = format!("{rest:?}").to_lowercase();
    for name in pending {
        if !names_word(&rest, &name.to_lowercase()) {
            let _ = engine.ctx.deregister_table(name);
            tracing::info!(step = %name, "transient table released: nothing later reads it");
            released.push(name);
        }
    }
}

/// Whether `word` occurs in `text` with no identifier character on either side.
fn names_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(ident)
            && !text[i + word.len()..].chars().next().is_some_and(ident)
    })
}

/// Registers `previous_<step>`: the step's Parquet export in the previous published run, or an
/// empty table of the step's schema when there is none (the first run).
pub async fn register_previous(
    engine: &Engine,
    step: &str,
    to: &str,
    previous: Option<&(storage::Location, crate::storage::publish::Pointer)>,
) -> Result<()> {
    let name = format!("previous_{step}");
    let _ = engine.ctx.deregister_table(name.as_str());
    if let Some((root, ptr)) = previous {
        let loc = root.child(&format!("{}/{to}", ptr.run))?;
        if crate::storage::read_bytes(&loc).await.is_ok() {
            engine
                .ctx
                .register_parquet(
                    name.as_str(),
                    loc.url.as_str(),
                    datafusion::prelude::ParquetReadOptions::default(),
                )
                .await
                .map_err(|e| {
                    Error::data(
                        loc.display(),
                        format!("the previous run's `{step}` cannot be read: {e}"),
                    )
                })?;
            tracing::info!(step, run = %ptr.run_id, "previous run's table registered as {name}");
            return Ok(());
        }
    }
    let df = engine
        .ctx
        .table(step)
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    engine.register_batches(&name, schema, vec![]).await
}

/// The date folder of a run: the `as_of` date, or `undated` for a job without one.
pub fn date_key(bindings: &Bindings) -> String {
    bindings
        .get("as_of")
        .map(|v| v.to_template_text())
        .unwrap_or_else(|| "undated".to_string())
}

/// Runs the whole job under the overlap lock: every step, the segments, every export, the
/// manifest, and finally the publication of the run folder. Every attempt that gets as far as
/// its output folder leaves a record in the run history, whatever its outcome.
pub async fn run(job: &Job, opts: &RunOptions) -> Result<RunReport> {
    let start = Instant::now();
    let started_at = chrono::Utc::now();
    let bindings = job.bind(opts.date.as_deref(), &opts.params, &cwd())?;
    let output_url = job.output_url(&bindings, opts.output.as_deref(), &cwd())?;
    let root = storage::locate(&output_url)?;
    let key = date_key(&bindings);
    let run = RunFolder::new(&root, &key)?;
    let span = tracing::info_span!("run", run_id = %run.run_id, job = %job.name, date = %key);
    let result = async {
        let lock_loc = root.child(&format!("{key}/_lock.json"))?;
        let lock = Lock::acquire(&lock_loc, &run.run_id, job.publish.lock_timeout).await?;
        tracing::info!(folder = %run.dir.display(), "run started");
        let result = async {
            // Incremental state is shared by every date of the job: one run at a time holds it.
            let state = state_location(job, opts, &bindings)?;
            let state_lock = if job.steps.iter().any(|s| s.incremental.is_some()) && !opts.no_state
            {
                Some(
                    Lock::acquire(
                        &state.child("incremental/_lock.json")?,
                        &run.run_id,
                        job.publish.lock_timeout,
                    )
                    .await?,
                )
            } else {
                None
            };
            let result = async {
                let mut prepared = prepare(job, opts).await?;
                prepared.engine.register_store(&root);
                prepared.engine.register_store(&state);
                let r = run_locked(job, opts, &mut prepared, &run, start, started_at).await;
                prepared.engine.clean_work().await;
                r
            }
            .await;
            if let Some(l) = state_lock {
                l.release().await;
            }
            result
        }
        .await;
        lock.release().await;
        result
    }
    .instrument(span.clone())
    .await;
    let record = storage::history::RunRecord {
        run_id: run.run_id.clone(),
        job: job.name.clone(),
        date: key.clone(),
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        seconds: (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        outcome: if result.is_ok() {
            "published"
        } else {
            "failed"
        }
        .into(),
        exit_code: match &result {
            Ok(_) => 0,
            Err(e) => e.exit_code().code(),
        },
        error: result.as_ref().err().map(|e| e.to_string()),
        segments: result
            .as_ref()
            .map(|r| {
                r.segments
                    .segments
                    .iter()
                    .map(|s| (s.name.clone(), s.target))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let _enter = span.enter();
    match &result {
        Ok(_) => tracing::info!(
            outcome = "published",
            seconds = record.seconds,
            "run finished"
        ),
        Err(e) => tracing::error!(
            outcome = "failed",
            exit_code = record.exit_code,
            seconds = record.seconds,
            "run failed: {}",
            e.to_string().lines().next().unwrap_or_default()
        ),
    }
    if let Err(e) = storage::history::record(&root, &record).await {
        tracing::warn!("could not write the run history record: {e}");
    }
    result
}

async fn run_locked(
    job: &Job,
    opts: &RunOptions,
    prepared: &mut Prepared,
    run: &RunFolder,
    start: Instant,
    started_at: chrono::DateTime<chrono::Utc>,
) -> Result<RunReport> {
    let output = run.dir.clone();
    let mut stages: Vec<(String, f64)> = Vec::new();
    let mut stage_start = Instant::now();
    let mut lap = |name: &str, stages: &mut Vec<(String, f64)>| {
        stages.push((
            name.to_string(),
            (stage_start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        ));
        stage_start = Instant::now();
    };
    let mut gates =
        crate::quality::check_sources(&prepared.engine, job, &prepared.bindings, &prepared.sources)
            .await?;
    crate::quality::enforce("source", &gates)?;
    let steps = run_steps(job, prepared, opts, None).await?;
    let step_gates = crate::quality::check_steps(job, &steps);
    crate::quality::enforce("step", &step_gates)?;
    gates.extend(step_gates);
    lap("steps", &mut stages);
    let mut exports = Vec::new();
    let mut warnings = Vec::new();
    for e in job.exports.iter().filter(|e| e.segments.is_none()) {
        let r = run_export(&mut prepared.engine, job, e, &prepared.bindings, &output).await?;
        tracing::info!(table = %r.table, url = %r.url, rows = r.rows, "export written");
        exports.push(r);
    }

    lap("table exports", &mut stages);
    let mut segs = crate::segments::Segments::default();
    let mut segment_exports = Vec::new();
    if !job.segments.is_empty() {
        let threshold = prepared.engine.memory_limit / 4;
        segs = crate::segments::build(&prepared.engine, job, &prepared.bindings, threshold).await?;
        for c in &segs.segments {
            tracing::info!(segment = %c.name, target = c.target, control = c.control, suppressed = c.suppressed, "segment built");
        }
        let previous_sizes = if job.segments.iter().any(|s| s.gates.max_change.is_some()) {
            previous_segment_sizes(run).await?
        } else {
            None
        };
        let seg_gates = crate::quality::check_segments(job, &segs, previous_sizes.as_ref());
        crate::quality::enforce("segment", &seg_gates)?;
        gates.extend(seg_gates);
        // The per-user membership table: what measurement joins campaign results to.
        let df = prepared
            .engine
            .ctx
            .sql(&format!("SELECT arrow_cast(segment, 'Utf8') AS segment, arrow_cast(user_id, 'Utf8') AS user_id, arrow_cast(grp, 'Utf8') AS grp FROM {} ORDER BY segment, grp, user_id", crate::segments::MEMBERS))
            .await
            .map_err(|e| Error::internal(e.to_string()))?;
        let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
        let stream = df
            .execute_stream()
            .await
            .map_err(|e| crate::engine::diagnostics::execution_error("segments", e))?;
        crate::storage::write::write_parquet(&output.child("segments.parquet")?, schema, stream)
            .await?;

        lap("segments", &mut stages);
        let wants_deltas = job
            .exports
            .iter()
            .any(|e| e.segments.as_ref().is_some_and(|s| s.deltas));
        let mut previous = None;
        if wants_deltas {
            if let Some((_, ptr)) = crate::storage::publish::previous(&run.root, &run.key).await? {
                let loc = run.root.child(&format!("{}/segments.parquet", ptr.run))?;
                prepared.engine.register_store(&loc);
                let url = loc.url.to_string();
                prepared
                    .engine
                    .ctx
                    .register_parquet(
                        crate::export::segment_files::PREVIOUS,
                        &url,
                        datafusion::prelude::ParquetReadOptions::default(),
                    )
                    .await
                    .map_err(|e| {
                        Error::data(
                            loc.display(),
                            format!("the previous run's segments.parquet cannot be read: {e}"),
                        )
                    })?;
                previous = Some(ptr.run_id.clone());
            }
        }
        for e in &job.exports {
            let Some(se) = &e.segments else { continue };
            let to = job.render_relative(&e.to, &prepared.bindings)?;
            let r = crate::export::segment_files::write(
                &prepared.engine,
                job,
                se,
                to.trim_matches('/'),
                &segs,
                &output,
                previous.as_deref(),
                &mut warnings,
            )
            .await?;
            for s in &r.segments {
                tracing::info!(export = %r.format, segment = %s.segment, rows = ?s.rows, dropped = s.dropped_invalid, "segment files written");
            }
            segment_exports.push(r);
        }
        lap("segment files", &mut stages);
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }

    // Models go with the outputs, and into the state folder once the run has succeeded, so the
    // next run matches its clusters to these.
    let state = state_location(job, opts, &prepared.bindings)?;
    for r in &steps {
        if let Some(model) = &r.lookalike {
            let text =
                serde_json::to_vec_pretty(model).map_err(|e| Error::internal(e.to_string()))?;
            let loc = output.child(&format!("models/{}.json", r.name))?;
            crate::storage::write::put_bytes(&loc, text).await?;
        }
        if let Some(model) = &r.ltv {
            let text =
                serde_json::to_vec_pretty(model).map_err(|e| Error::internal(e.to_string()))?;
            let loc = output.child(&format!("models/{}.json", r.name))?;
            crate::storage::write::put_bytes(&loc, text).await?;
        }
        if let Some(model) = &r.model {
            let text =
                serde_json::to_vec_pretty(model).map_err(|e| Error::internal(e.to_string()))?;
            let loc = output.child(&format!("models/{}.json", r.name))?;
            crate::storage::write::put_bytes(&loc, text).await?;
        }
    }

    // The page for people, written before the manifest so the manifest can list it.
    let mut report = crate::report::gather(&prepared.engine, job, &steps, &segs).await?;
    report.job = job.name.clone();
    report.date = run.key.clone();
    report.run_id = run.run_id.clone();
    crate::storage::write::put_bytes(
        &output.child("report.html")?,
        crate::report::render(&report).into_bytes(),
    )
    .await?;
    lap("report", &mut stages);

    let out_prefix = output.display();
    let manifest = crate::export::manifest::Manifest {
        job: job.name.clone(),
        date: run.key.clone(),
        run_id: run.run_id.clone(),
        engine_version: format!("audiences {}", env!("CARGO_PKG_VERSION")),
        params: prepared
            .bindings
            .iter()
            .map(|(k, v)| (k.clone(), v.to_template_text()))
            .collect(),
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        inputs: prepared.sources.clone(),
        steps: steps
            .iter()
            .map(|s| crate::export::manifest::StepEntry {
                name: s.name.clone(),
                rows: s.rows,
                seconds: (s.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            })
            .collect(),
        tables: exports
            .iter()
            .map(|e| crate::export::manifest::TableEntry {
                table: e.table.clone(),
                path: e
                    .url
                    .strip_prefix(&out_prefix)
                    .map(|p| p.trim_start_matches('/').to_string())
                    .unwrap_or_else(|| e.url.clone()),
                rows: e.rows,
                bytes: e.bytes,
            })
            .collect(),
        suppression_ids: segs.suppression_ids,
        segments: segs.segments.clone(),
        exports: segment_exports.clone(),
        warnings: warnings.clone(),
        stage_seconds: stages.iter().cloned().collect(),
        gates: gates.clone(),
        incremental: steps.iter().filter_map(|s| s.incremental.clone()).collect(),
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::internal(e.to_string()))?;
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&text))
    };
    crate::storage::write::put_bytes(&output.child("manifest.json")?, text).await?;
    crate::storage::publish::publish(run, &sha).await?;
    tracing::info!(run_id = %run.run_id, folder = %output.display(), "published");

    for r in &steps {
        if let Some(model) = &r.model {
            let text =
                serde_json::to_vec_pretty(model).map_err(|e| Error::internal(e.to_string()))?;
            let loc = state.child(&format!("models/{}.json", r.name))?;
            prepared.engine.register_store(&loc);
            crate::storage::write::put_bytes(&loc, text).await?;
        }
    }
    match crate::storage::publish::cleanup(run, job.publish.keep_runs).await {
        Ok(removed) => {
            for r in removed {
                tracing::info!(removed = %r, "old run removed");
            }
        }
        Err(e) => tracing::warn!("could not remove old runs (the publication stands): {e}"),
    }
    Ok(RunReport {
        job: job.name.clone(),
        bindings: prepared.bindings.clone(),
        output: output.display(),
        sources: prepared.sources.clone(),
        steps,
        exports,
        run_id: run.run_id.clone(),
        segments: segs,
        segment_exports,
        warnings,
        gates,
        elapsed: start.elapsed(),
    })
}

/// Target size of each segment in the previous published run (an earlier date), if any.
async fn previous_segment_sizes(
    run: &RunFolder,
) -> Result<Option<std::collections::BTreeMap<String, u64>>> {
    let Some((_, ptr)) = crate::storage::publish::previous(&run.root, &run.key).await? else {
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

/// The job's state folder (models and incremental days kept between runs): `--state`, else
/// the job's `state`, else `state/` in the output folder (which `--output` moves).
pub fn state_location(
    job: &Job,
    opts: &RunOptions,
    bindings: &Bindings,
) -> Result<storage::Location> {
    match (&opts.state, job.state_explicit, &opts.output) {
        (Some(s), _, _) => storage::locate(&crate::job::params::resolve_path(s, &cwd())),
        (None, false, Some(o)) => {
            storage::locate(&job.output_url(bindings, Some(o), &cwd())?)?.child("state")
        }
        _ => storage::locate(&job.render_url(&job.state, bindings)?),
    }
}

/// The model a previous run saved for `step`, if any (an unreadable one is ignored with a warning).
pub async fn load_model(
    state: &storage::Location,
    step: &str,
) -> Option<crate::models::kmeans_step::KMeansModel> {
    use object_store::ObjectStoreExt;
    let loc = state.child(&format!("models/{step}.json")).ok()?;
    let bytes = loc.store.get(&loc.path).await.ok()?.bytes().await.ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(step, path = %loc.display(), "ignoring unreadable previous model: {e}");
            None
        }
    }
}

/// Everything `check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Problems, in job order.
    pub problems: Vec<Problem>,
    /// Sources whose schemas were read.
    pub sources: Vec<SourceInfo>,
    /// Steps planned successfully.
    pub steps_ok: Vec<String>,
    /// The exit code of the first source problem that is about the data rather than the job
    /// (a missing source, schema drift, a corrupt file): check exits with it.
    pub data_exit: Option<crate::error::ExitCode>,
}

/// Plans every step against the sources' real schemas without running anything; collects every
/// problem rather than stopping at the first.
pub async fn check(job: &Job, opts: &RunOptions) -> Result<CheckReport> {
    let bindings = job.bind(opts.date.as_deref(), &opts.params, &cwd())?;
    // Planning is the same on every engine: check never needs a cluster.
    let mut cfg = engine_config(job, opts);
    cfg.kind = Some(crate::engine::EngineKind::Local);
    let mut engine = Engine::new(&cfg).await?;
    let mut report = CheckReport::default();
    let mut failed_tables: Vec<String> = Vec::new();
    for s in &job.sources {
        match register_source(&mut engine, job, s, &bindings).await {
            Ok(info) => report.sources.push(info),
            Err(e) => {
                failed_tables.push(s.name.clone());
                if !matches!(e, Error::Job(_)) && report.data_exit.is_none() {
                    report.data_exit = Some(e.exit_code());
                }
                report.problems.push(Problem {
                    location: None,
                    step: Some(format!("source {}", s.name)),
                    message: e.to_string(),
                    hint: None,
                });
            }
        }
    }
    for step in &job.steps {
        match register_view(&engine, step, &bindings).await {
            Ok(()) => {
                report.steps_ok.push(step.name.clone());
                if job.previous.iter().any(|(s, _)| *s == step.name) {
                    register_previous(&engine, &step.name, "", None).await?;
                }
            }
            Err(p) => {
                failed_tables.push(step.name.clone());
                // A step reading a table that already failed would only repeat that problem.
                let knock_on = failed_tables[..failed_tables.len() - 1].iter().any(|t| {
                    p.message.contains(&format!("'{t}'"))
                        || p.message.contains(&format!("`{t}`"))
                        || p.message.contains(&format!(" {t} "))
                });
                if !knock_on {
                    report.problems.push(p);
                }
            }
        }
    }
    // Segments: plan each query; check split columns, identities and export columns.
    let id = job.publish.id.as_str();
    let columns_of = |df: &datafusion::prelude::DataFrame| -> Vec<String> {
        df.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    };
    for seg in &job.segments {
        let label = format!("segment {}", seg.name);
        match &seg.def {
            crate::job::SegmentDef::Query(sql) => {
                if let Err(p) =
                    crate::engine::steps::plan_sql(&engine, &label, sql, &bindings).await
                {
                    if !failed_tables.iter().any(|t| {
                        p.message.contains(&format!("'{t}'"))
                            || p.message.contains(&format!("`{t}`"))
                    }) {
                        report.problems.push(p);
                    }
                }
            }
            crate::job::SegmentDef::PerValue { from, by } => {
                if let Ok(df) = engine.ctx.table(from.as_str()).await {
                    let names = columns_of(&df);
                    for c in [by.as_str(), id] {
                        if !names.iter().any(|n| n == c) {
                            report.problems.push(Problem {
                                location: None,
                                step: Some(label.clone()),
                                message: format!("table `{from}` has no column `{c}`"),
                                hint: Some(format!(
                                    "nearest columns: {}",
                                    crate::job::nearest(c, &names, 3).join(", ")
                                )),
                            });
                        }
                    }
                }
            }
        }
    }
    for (i, e) in job.exports.iter().enumerate() {
        let Some(se) = &e.segments else { continue };
        let Some(t) = &se.identities else { continue };
        let Ok(df) = engine.ctx.table(t.as_str()).await else {
            continue;
        };
        let names = columns_of(&df);
        let wanted = se
            .fields
            .iter()
            .map(|f| f.column.clone())
            .chain(se.columns.iter().cloned())
            .chain(std::iter::once(id.to_string()));
        for c in wanted {
            if !names.contains(&c) {
                report.problems.push(Problem {
                    location: None,
                    step: Some(format!("export {} ({})", i + 1, se.format_name())),
                    message: format!("identities table `{t}` has no column `{c}`"),
                    hint: Some(format!(
                        "nearest columns: {}",
                        crate::job::nearest(&c, &names, 3).join(", ")
                    )),
                });
            }
        }
    }
    Ok(report)
}
