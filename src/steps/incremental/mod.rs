//! Incremental steps: a sql step computed per day and kept as state, so a nightly run costs
//! the new day, not the whole window (what feature stores call tiling).
//!
//! The step's SQL reads a day-partitioned source and returns rows carrying the day column. For
//! the window `[as_of - days, as_of - 1]` the engine keeps, per day, a Parquet file of those
//! rows and a `fingerprint.json` naming it:
//!
//! ```text
//! <state>/incremental/<step>/dt=2026-11-23/part-<fingerprint>.parquet
//! <state>/incremental/<step>/dt=2026-11-23/fingerprint.json
//! ```
//!
//! A day's fingerprint hashes the step's SQL, the params other than `as_of`, and that day's
//! input files (path, size, modification time, etag), so a day whose files changed after it was
//! computed (late data) is computed again. The days a run needs and the state lacks are computed
//! in one query over the source narrowed to those days, then split by day. The fingerprint is
//! written after the day's file, and a file is named after its fingerprint, so a run killed at
//! any point leaves every day either complete or absent. Days before the window are pruned. The
//! step's table is the window's files read as one table; later steps roll them up.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use serde::Serialize;
use sha2::Digest;

use super::{StepInputs, StepResult};
use crate::engine::diagnostics::execution_error;
use crate::engine::materialise::Held;
use crate::engine::sources::SourceInfo;
use crate::engine::sql::plan_sql;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::job::{Bindings, Incremental, ParamValue, Step, StepSql, WindowDays};
use crate::storage::Location;

mod held;

use crate::storage::objects_in;
pub use held::{held_days, HeldDay};
use held::{held_days_names, put_json, read_held, write_day};

/// What an incremental step did in a run.
#[derive(Debug, Clone, Serialize)]
pub struct IncrementalReport {
    /// Step name.
    pub step: String,
    /// First and last day of the window.
    pub window: (String, String),
    /// Days computed in this run.
    pub computed: Vec<String>,
    /// Days read from the state.
    pub reused: usize,
    /// Days removed from the state (before the window).
    pub pruned: usize,
    /// For a merged step: how its rows were merged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged: Option<super::merged::MergeReport>,
    /// The window's days with rows: fingerprint and file (what a later incremental step over
    /// this one reads and fingerprints).
    #[serde(skip)]
    pub days_held: BTreeMap<String, (String, String, Location)>,
}

impl IncrementalReport {
    /// The step's per-day rows as a day-partitioned source for a later incremental step.
    pub fn as_source(&self, dir: &Location) -> SourceInfo {
        let objects = self
            .days_held
            .values()
            // Named relative to the state, so a moved state folder keeps its days.
            .map(|(fp, file, _)| crate::engine::sources::InputFile {
                path: format!("{}/{file}", self.step),
                bytes: 0,
                modified: String::new(),
                etag: Some(fp.clone()),
            })
            .collect::<Vec<_>>();
        SourceInfo {
            name: self.step.clone(),
            url: dir.display(),
            files: objects.len(),
            bytes: 0,
            empty: objects.is_empty(),
            objects,
            dropped: BTreeMap::new(),
            skipped_files: Vec::new(),
            declaration: String::new(),
            day_files: Some(
                self.days_held
                    .iter()
                    .map(|(d, (_, _, l))| (d.clone(), l.clone()))
                    .collect(),
            ),
        }
    }
}

/// The step's state folder.
pub fn step_state(state: &Location, step: &str) -> Result<Location> {
    state.child(&format!("incremental/{step}"))
}

fn window(inc: &Incremental, bindings: &Bindings) -> Result<Vec<String>> {
    let as_of =
        match bindings.get("as_of") {
            Some(ParamValue::Date(d)) => *d,
            _ => return Err(Error::job_msg(
                None,
                "an incremental step needs a date param `as_of`: its window ends the day before",
                Some("add `as_of = { type = \"date\" }` under [params]".into()),
            )),
        };
    let days = match &inc.days {
        WindowDays::Fixed(n) => *n,
        WindowDays::Param(p) => match bindings.get(p) {
            Some(ParamValue::Int(n)) if *n > 0 => *n,
            other => {
                return Err(Error::Usage(format!(
                "param `{p}` sets an incremental window and must be a positive int, not {other:?}"
            )))
            }
        },
    };
    Ok((1..=days)
        .rev()
        .map(|i| (as_of - chrono::Duration::days(i)).to_string())
        .collect())
}

/// Fingerprint of each window day: the SQL, the params but `as_of`, and the day's files.
fn fingerprints(
    sql: &StepSql,
    inc: &Incremental,
    bindings: &Bindings,
    source: &SourceInfo,
    days: &[String],
) -> BTreeMap<String, String> {
    let mut base = sha2::Sha256::new();
    base.update(sql.text.as_bytes());
    // A changed cleaning rule or read schema changes the rows of every day.
    base.update(format!("\nsource {}", source.declaration).as_bytes());
    for (k, v) in bindings {
        if k != "as_of" {
            base.update(format!("\nparam {k}={}", v.to_template_text()).as_bytes());
        }
    }
    days.iter()
        .map(|d| {
            let mut h = base.clone();
            let marker = format!("/{}={d}/", inc.column);
            for f in &source.objects {
                if format!("/{}", f.path).contains(&marker) {
                    h.update(
                        format!(
                            "\nfile {} {} {} {}",
                            f.path,
                            f.bytes,
                            f.modified,
                            f.etag.as_deref().unwrap_or("")
                        )
                        .as_bytes(),
                    );
                }
            }
            (d.clone(), hex::encode(h.finalize()))
        })
        .collect()
}

/// Whether the source holds a file in `day`'s partition.
fn has_files(source: &SourceInfo, column: &str, day: &str) -> bool {
    let marker = format!("/{column}={day}/");
    source
        .objects
        .iter()
        .any(|f| format!("/{}", f.path).contains(&marker))
}

/// Days computed per query when many are missing (a cold start, a full refresh).
const DAYS_PER_PASS: usize = 15;

/// Runs an incremental step: computes the window's missing or changed days, prunes days
/// before the window, and registers the window's rows under the step's name.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    engine: &Engine,
    step: &Step,
    sql: &StepSql,
    inc: &Incremental,
    bindings: &Bindings,
    sources: &[SourceInfo],
    state: &Location,
    full_refresh: bool,
) -> Result<(usize, IncrementalReport)> {
    let context = format!("incremental step `{}`", step.name);
    let started = std::time::Instant::now();
    let days = window(inc, bindings)?;
    let source = sources
        .iter()
        .find(|s| s.name == inc.source)
        .ok_or_else(|| {
            Error::internal(format!("{context}: source {} not registered", inc.source))
        })?;
    let prints = fingerprints(sql, inc, bindings, source, &days);
    let dir = step_state(state, &step.name)?;
    let col = inc.column.as_str();

    // What the state holds for the window, read concurrently: one listing, then the records
    // of the days it has folders for.
    let folders: std::collections::BTreeSet<String> =
        held_days_names(&dir, col).await?.into_iter().collect();
    let held: Vec<Option<HeldDay>> = futures::stream::iter(days.iter())
        .map(|d| async {
            if folders.contains(d) {
                read_held(&dir, col, d).await
            } else {
                Ok(None)
            }
        })
        .buffered(16)
        .try_collect()
        .await?;
    let mut held: BTreeMap<String, HeldDay> = held
        .into_iter()
        .flatten()
        .filter(|h| !full_refresh && prints.get(&h.day) == Some(&h.fingerprint))
        .map(|h| (h.day.clone(), h))
        .collect();
    let reused = held.len();
    // A day with no input files and nothing held has no rows: it needs no record (a long
    // window over a short history would otherwise write and read one per empty day).
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for d in &days {
        if !held.contains_key(d) && !folders.contains(d) && !has_files(source, col, d) {
            held.insert(d.clone(), HeldDay::empty(d, &prints[d], &now));
        }
    }
    let missing: Vec<String> = days
        .iter()
        .filter(|d| !held.contains_key(*d))
        .cloned()
        .collect();

    // The source narrowed to the missing days, under its own name, while the step's SQL plans.
    let original = engine
        .ctx
        .deregister_table(inc.source.as_str())
        .map_err(Error::unexpected)?
        .ok_or_else(|| {
            Error::internal(format!("{context}: source {} not registered", inc.source))
        })?;
    let hidden = format!("__incremental_all_{}", inc.source);
    let narrowed = async {
        engine
            .ctx
            .register_table(hidden.as_str(), original.clone())
            .map_err(Error::unexpected)?;
        // Missing days are computed a few at a time: one query over all 90 days of a large
        // source sorts more than the memory budget holds (seen at 1,000,000 demo users).
        // Days without input files have no rows: they are held as empty days unqueried (a
        // long window's cold run would otherwise plan a query per empty chunk).
        let with_files: Vec<String> = missing
            .iter()
            .filter(|d| has_files(source, &inc.column, d))
            .cloned()
            .collect();
        let chunks: Vec<Vec<String>> = if with_files.is_empty() {
            vec![Vec::new()]
        } else {
            with_files.chunks(DAYS_PER_PASS).map(|c| c.to_vec()).collect()
        };
        let mut schema: Option<SchemaRef> = None;
        let mut written = Vec::new();
        for days_now in &chunks {
            let list = if days_now.is_empty() {
                "NULL".to_string()
            } else {
                days_now
                    .iter()
                    .map(|d| format!("'{d}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = engine.ctx.deregister_table(inc.source.as_str());
            if let Some(day_files) = &source.day_files {
                // An earlier step's days: just those days' files.
                let files: Vec<Location> = days_now
                    .iter()
                    .filter_map(|d| day_files.get(d).cloned())
                    .collect();
                let schema = Arc::new(original.schema().as_ref().clone());
                engine
                    .register_parquet_files(&inc.source, &files, schema, &context)
                    .await?;
            } else {
                let view = engine
                    .ctx
                    .sql(&format!(
                        "SELECT * FROM \"{hidden}\" WHERE CAST(\"{col}\" AS VARCHAR) IN ({list})"
                    ))
                    .await
                    .map_err(|e| execution_error(&context, e))?
                    .into_view();
                engine
                    .ctx
                    .register_table(inc.source.as_str(), view)
                    .map_err(Error::unexpected)?;
            }
            let df = plan_sql(engine, &step.name, sql, bindings)
                .await
                .map_err(|p| Error::Job(vec![p]))?;
            let this_schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let schema = schema.get_or_insert(this_schema).clone();
            if schema.field_with_name(col).is_err() {
                return Err(Error::job_msg(
                    Some(&step.name),
                    format!("an incremental step's result must hold the day column `{col}`"),
                    Some(format!("select the source's `{col}` and group by it")),
                ));
            }
            if !days_now.is_empty() {
                // Rows are bucketed by day here, not sorted by the engine: the sort of one
                // pass's output was charged 13.7 GB against the memory budget while the whole
                // process stayed under 1 GB (1,000,000 demo users), and failed the run.
                let idx = schema.index_of(col).expect("checked above");
                let pass_started = std::time::Instant::now();
                let mut by_day: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
                let mut stream = df
                    .execute_stream()
                    .await
                    .map_err(|e| execution_error(&context, e))?;
                while let Some(batch) = stream.next().await {
                    let batch = batch.map_err(|e| execution_error(&context, e))?;
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    let days_col = cast(batch.column(idx), &DataType::Utf8)
                        .map_err(Error::unexpected)?;
                    let mut placed = 0;
                    for day in days_now {
                        let mask = eq(&days_col, &StringArray::new_scalar(day.as_str()))
                            .map_err(Error::unexpected)?;
                        let n = mask.true_count();
                        if n == 0 {
                            continue;
                        }
                        placed += n;
                        let part = filter_record_batch(&batch, &mask)
                            .map_err(Error::unexpected)?;
                        by_day.entry(day.clone()).or_default().push(part);
                    }
                    if placed < batch.num_rows() {
                        // A row of a day this pass did not ask for (or without a day).
                        let days_col = days_col.as_string::<i32>();
                        let stray = (0..days_col.len())
                            .find(|&i| {
                                !days_col.is_valid(i)
                                    || !days_now.iter().any(|d| d == days_col.value(i))
                            })
                            .map(|i| {
                                if days_col.is_valid(i) {
                                    days_col.value(i).to_string()
                                } else {
                                    String::new()
                                }
                            })
                            .unwrap_or_default();
                        return Err(Error::data(
                            context.to_string(),
                            format!("the step returned rows for day `{stray}`, which it was not asked to compute; its `{col}` column must be the source's day partition, unchanged"),
                        ));
                    }
                }
                let computed_ms = pass_started.elapsed().as_millis() as u64;
                let writing = std::time::Instant::now();
                let n_days = by_day.len();
                for (d, parts) in by_day {
                    written.push(
                        write_day(&dir, col, &d, &prints, &missing, &schema, parts, &context)
                            .await?,
                    );
                }
                tracing::debug!(step = %step.name, days = n_days, computed_ms, written_ms = writing.elapsed().as_millis() as u64, "incremental pass");
            }
        }
        let schema = schema.expect("at least one pass");
        Ok((schema, written))
    }
    .await;
    // Put the source back whatever happened.
    let _ = engine.ctx.deregister_table(inc.source.as_str());
    let _ = engine.ctx.deregister_table(hidden.as_str());
    engine
        .ctx
        .register_table(inc.source.as_str(), original)
        .map_err(Error::unexpected)?;
    let (schema, written) = narrowed?;
    tracing::info!(step = %step.name, days = missing.len(), ms = started.elapsed().as_millis() as u64, "incremental step: missing days computed");

    // Missing days without rows are held as empty days.
    let mut fresh: BTreeMap<String, HeldDay> =
        written.into_iter().map(|h| (h.day.clone(), h)).collect();
    for d in &missing {
        if !fresh.contains_key(d) {
            let h = HeldDay::empty(d, &prints[d], &now);
            put_json(&dir.child(&format!("{col}={d}/fingerprint.json"))?, &h).await?;
            fresh.insert(d.clone(), h);
        }
    }
    held.extend(fresh);

    let first = days.first().cloned().unwrap_or_default();

    // The window's rows as one table.
    let files: Vec<String> = days
        .iter()
        .filter_map(|d| held.get(d).and_then(|h| h.file.clone()))
        .collect();
    let rows: u64 = days
        .iter()
        .filter_map(|d| held.get(d))
        .map(|h| h.rows)
        .sum();
    let _ = engine.ctx.deregister_table(step.name.as_str());
    let locations = files
        .iter()
        .map(|f| dir.child(f))
        .collect::<Result<Vec<_>>>()?;
    engine
        .register_parquet_files(&step.name, &locations, schema.clone(), &context)
        .await?;
    let mut rows = rows as usize;
    let mut merged = None;
    if let Some(m) = &inc.merge {
        let days_held: BTreeMap<String, (String, Option<Location>)> = days
            .iter()
            .filter_map(|d| held.get(d))
            .map(|h| {
                let loc = h.file.as_ref().map(|f| dir.child(f)).transpose()?;
                Ok((h.day.clone(), (h.fingerprint.clone(), loc)))
            })
            .collect::<Result<_>>()?;
        // Columns with a null in some day's rows (every column where a record does not say).
        let all: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let nullable: std::collections::BTreeSet<String> = days
            .iter()
            .filter_map(|d| held.get(d))
            .filter(|h| h.file.is_some())
            .flat_map(|h| h.nulls.clone().unwrap_or_else(|| all.clone()))
            .collect();
        let report = super::merged::run(
            engine,
            step,
            m,
            &dir,
            col,
            &days_held,
            schema,
            &nullable,
            full_refresh,
        )
        .await?;
        rows = report.rows as usize;
        merged = Some(report);
    }
    // Old files go only now: a merged step takes the rows of days that left or changed out
    // of its kept rows by reading them.
    // A recomputed day's old file goes once its new fingerprint is in place and is merged.
    for d in &missing {
        let folder = dir.child(&format!("{col}={d}"))?;
        let keep = held.get(d).and_then(|h| h.file.clone());
        for m in objects_in(&folder).await {
            let name = m.location.filename().unwrap_or_default().to_string();
            let rel = format!("{col}={d}/{name}");
            if name.ends_with(".parquet") && Some(&rel) != keep.as_ref() {
                let _ = folder.store.delete(&m.location).await;
            }
        }
    }
    // Days before the window leave the state.
    let mut pruned = 0;
    for h in held_days_names(&dir, col).await? {
        if h < first {
            let folder = dir.child(&format!("{col}={h}"))?;
            let listed = objects_in(&folder).await;
            if listed.is_empty() {
                continue;
            }
            // The fingerprint first: a day is never held without its file.
            let mut listed = listed;
            listed.sort_by_key(|m| !m.location.as_ref().ends_with("fingerprint.json"));
            for m in listed {
                let _ = folder.store.delete(&m.location).await;
            }
            pruned += 1;
        }
    }

    tracing::info!(step = %step.name, computed = missing.len(), reused, pruned, "incremental step");
    Ok((
        rows,
        IncrementalReport {
            step: step.name.clone(),
            window: (first, days.last().cloned().unwrap_or_default()),
            computed: missing,
            reused,
            pruned,
            merged,
            days_held: days
                .iter()
                .filter_map(|d| held.get(d))
                .filter_map(|h| {
                    let f = h.file.as_ref()?;
                    Some(
                        dir.child(f)
                            .map(|l| (h.day.clone(), (h.fingerprint.clone(), f.clone(), l))),
                    )
                })
                .collect::<Result<_>>()?,
        },
    ))
}

/// Runs an incremental step from its state (see [`run`]) as a step result.
pub async fn run_step(
    engine: &Engine,
    step: &Step,
    sql: &StepSql,
    inc: &Incremental,
    inputs: &StepInputs<'_>,
) -> Result<StepResult> {
    let (rows, report) = run(
        engine,
        step,
        sql,
        inc,
        inputs.bindings,
        inputs.sources,
        inputs.state,
        inputs.full_refresh,
    )
    .await?;
    Ok(StepResult {
        incremental: Some(report),
        ..StepResult::new(step, rows, Held::Memory(0))
    })
}
