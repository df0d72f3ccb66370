//! Merged incremental steps: the per-day rows of an incremental step merged into one row per
//! key (`merge_by`), each column by its declared merge (`sum`, `min`, `max`, `first by`,
//! `last by`), kept as state and updated by merging only the days added since.
//!
//! ```text
//! <state>/incremental/<step>/_merged/part-<fingerprint>.parquet
//! <state>/incremental/<step>/_merged/merged.json     the days it covers, with fingerprints
//! ```
//!
//! A run merges the new days into the kept rows when every day with rows they cover is still
//! held with the same fingerprint; otherwise (a late file changed an old day, a day with rows
//! left the window,
//! the declaration changed, `--full-refresh`, no or unreadable state) it merges every held day
//! again, and says why. Each merge is exact on integers, decimals, dates and text, and the
//! result is cast to the types and sorted by the keys the full merge gives, so both paths give
//! the same rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::engine::diagnostics::execution_error;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::job::{Merge, MergeOp, Step};
use crate::quote::ident as quote;
use crate::storage::Location;

/// What the kept merged rows cover.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Covered {
    /// Fingerprint of the merge declaration.
    merge: String,
    /// Each day with rows merged in, with its fingerprint.
    days: BTreeMap<String, String>,
    /// The rows' file, relative to the step's state folder.
    file: String,
    /// Rows in it.
    rows: u64,
}

/// What a merged step did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MergeReport {
    /// Days merged into the kept rows in this run.
    pub days_merged: usize,
    /// Days the kept rows covered already.
    pub days_kept: usize,
    /// Why every day was merged again, when it was.
    pub remerged_because: Option<String>,
    /// Rows of the merged table.
    pub rows: u64,
}

fn declaration_print(merge: &Merge, day: &str) -> String {
    let text = format!("{}|{day}|{:?}", env!("CARGO_PKG_VERSION"), merge);
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..12])
}

/// The aggregate of one merged column.
fn aggregate(col: &str, op: &MergeOp) -> String {
    let c = quote(col);
    match op {
        MergeOp::Sum => format!("SUM({c}) AS {c}"),
        MergeOp::Min => format!("MIN({c}) AS {c}"),
        MergeOp::Max => format!("MAX({c}) AS {c}"),
        MergeOp::FirstBy(o) => format!("first_value({c} ORDER BY {} ASC) AS {c}", quote(o)),
        MergeOp::LastBy(o) => format!("first_value({c} ORDER BY {} DESC) AS {c}", quote(o)),
    }
}

/// The merge query over `from` (rows with the key and merged columns).
fn merge_sql(merge: &Merge, from: &str) -> String {
    let keys: Vec<String> = merge.by.iter().map(|k| quote(k)).collect();
    let aggs: Vec<String> = merge
        .columns
        .iter()
        .map(|(c, op)| aggregate(c, op))
        .collect();
    format!(
        "SELECT {k}, {} FROM {from} GROUP BY {k} ORDER BY {k}",
        aggs.join(", "),
        k = keys.join(", ")
    )
}

/// The key and merged columns of `table`.
fn rows_of(merge: &Merge, table: &str) -> String {
    let cols: Vec<String> = merge
        .by
        .iter()
        .chain(merge.columns.iter().map(|(c, _)| c))
        .map(|c| quote(c))
        .collect();
    format!("SELECT {} FROM {}", cols.join(", "), quote(table))
}

/// Checks that the per-day rows have every key and merged column, and nothing unmerged.
fn check_columns(step: &Step, merge: &Merge, schema: &SchemaRef, day: &str) -> Result<()> {
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    for c in merge.by.iter().chain(merge.columns.iter().map(|(c, _)| c)) {
        if !names.contains(c) {
            return Err(Error::job_msg(
                Some(&step.name),
                format!("incremental.merge names `{c}`, which the step's SQL does not return"),
                Some(crate::hint::nearest_columns(c, &names)),
            ));
        }
    }
    for n in &names {
        if n != day && !merge.by.contains(n) && !merge.columns.iter().any(|(c, _)| c == n) {
            return Err(Error::job_msg(
                Some(&step.name),
                format!("column `{n}` of the step's rows has no merge"),
                Some(format!(
                    "declare how it merges across days, e.g. merge = {{ {n} = \"sum\" }}, or leave it out of the SQL"
                )),
            ));
        }
    }
    Ok(())
}

/// A merged step without state (`check`, `preview`, `sql`, a cluster): its result, registered
/// under the step's name, replaced by the merge of all its rows; a view when `execute` is false
/// (planning only), else computed. Returns the merged rows when computed.
pub async fn without_state(
    engine: &Engine,
    step: &Step,
    merge: &Merge,
    day: &str,
    execute: bool,
) -> Result<Option<usize>> {
    let context = format!("step `{}` (merge)", step.name);
    let days = format!("__days_{}", step.name);
    let table = engine
        .ctx
        .deregister_table(step.name.as_str())
        .map_err(Error::unexpected)?
        .ok_or_else(|| Error::internal(format!("{context}: the step's rows are not registered")))?;
    let _ = engine.ctx.deregister_table(days.as_str());
    engine
        .ctx
        .register_table(days.as_str(), table)
        .map_err(Error::unexpected)?;
    let schema: SchemaRef = Arc::new(
        engine
            .ctx
            .table(days.as_str())
            .await
            .map_err(Error::unexpected)?
            .schema()
            .as_arrow()
            .clone(),
    );
    check_columns(step, merge, &schema, day)?;
    let df = engine
        .ctx
        .sql(&merge_sql(merge, &format!("({}) d", rows_of(merge, &days))))
        .await
        .map_err(|e| {
            Error::job_msg(
                Some(&step.name),
                format!("incremental.merge: {}", e.strip_backtrace()),
                None,
            )
        })?;
    if !execute {
        engine
            .ctx
            .register_table(step.name.as_str(), df.into_view())
            .map_err(Error::unexpected)?;
        return Ok(None);
    }
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    if engine.is_distributed() {
        // The cluster reads step results from its own storage, not from this process.
        // Written beside the per-day rows (which it reads), then named after the step.
        let merged = format!("{}__merged", step.name);
        let rows = engine
            .write_on_cluster_as(&merged, df, &context, schema)
            .await;
        let _ = engine.ctx.deregister_table(days.as_str());
        let rows = rows?;
        let table = engine
            .ctx
            .deregister_table(merged.as_str())
            .map_err(Error::unexpected)?
            .ok_or_else(|| Error::internal(format!("{context}: merged rows not registered")))?;
        engine
            .ctx
            .register_table(step.name.as_str(), table)
            .map_err(Error::unexpected)?;
        return Ok(Some(rows));
    }
    let batches = df.collect().await.map_err(|e| execution_error(&context, e));
    let _ = engine.ctx.deregister_table(days.as_str());
    let batches = batches?;
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    engine.register_batches(&step.name, schema, batches).await?;
    Ok(Some(rows))
}

/// The kept merged rows of a step, for `status`: (rows, bytes, days covered).
pub async fn kept_size(dir: &Location) -> Option<(u64, u64, usize)> {
    let c = read_covered(dir).await?;
    let loc = dir.child(&c.file).ok()?;
    let bytes = loc.store.head(&loc.path).await.ok()?.size;
    Some((c.rows, bytes, c.days.len()))
}

async fn read_covered(dir: &Location) -> Option<Covered> {
    let loc = dir.child("_merged/merged.json").ok()?;
    let bytes = loc.store.get(&loc.path).await.ok()?.bytes().await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Merges the step's held days (the window table registered under the step's name) into one
/// row per key, from the kept merged rows when they can be reused, and registers the result
/// under the step's name in place of the window.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    engine: &Engine,
    step: &Step,
    merge: &Merge,
    dir: &Location,
    day: &str,
    held: &BTreeMap<String, (String, Option<Location>)>,
    day_schema: SchemaRef,
    full_refresh: bool,
) -> Result<MergeReport> {
    let context = format!("incremental step `{}` (merge)", step.name);
    let window = format!("__days_{}", step.name);
    let table = engine
        .ctx
        .deregister_table(step.name.as_str())
        .map_err(Error::unexpected)?
        .ok_or_else(|| Error::internal(format!("{context}: the window is not registered")))?;
    engine
        .ctx
        .register_table(window.as_str(), table)
        .map_err(Error::unexpected)?;
    let result = merge_days(
        engine,
        step,
        merge,
        dir,
        day,
        held,
        day_schema,
        full_refresh,
        &window,
    )
    .await;
    let _ = engine.ctx.deregister_table(window.as_str());
    let _ = engine
        .ctx
        .deregister_table(format!("{window}_new").as_str());
    result
}

#[allow(clippy::too_many_arguments)]
async fn merge_days(
    engine: &Engine,
    step: &Step,
    merge: &Merge,
    dir: &Location,
    day: &str,
    held: &BTreeMap<String, (String, Option<Location>)>,
    day_schema: SchemaRef,
    full_refresh: bool,
    window: &str,
) -> Result<MergeReport> {
    let context = format!("incremental step `{}` (merge)", step.name);
    let files: BTreeMap<String, Option<Location>> = held
        .iter()
        .map(|(d, (_, f))| (d.clone(), f.clone()))
        .collect();
    // Days without rows change nothing merged: only days with rows are recorded, so an empty
    // day leaving the window keeps the merged rows, and a late file for it is a new day.
    let prints: BTreeMap<String, String> = held
        .iter()
        .filter(|(_, (_, f))| f.is_some())
        .map(|(d, (fp, _))| (d.clone(), fp.clone()))
        .collect();
    let held = &prints;
    check_columns(step, merge, &day_schema, day)?;
    let print = declaration_print(merge, day);

    // The full merge's plan fixes the result's types, whichever path computes it.
    let full_sql = merge_sql(merge, &format!("({}) d", rows_of(merge, window)));
    let full_df = engine.ctx.sql(&full_sql).await.map_err(|e| {
        Error::job_msg(
            Some(&step.name),
            format!("incremental.merge: {}", e.strip_backtrace()),
            None,
        )
    })?;
    let schema: SchemaRef = Arc::new(full_df.schema().as_arrow().clone());

    let kept = if full_refresh {
        None
    } else {
        read_covered(dir).await
    };
    let why_not = match &kept {
        _ if full_refresh => Some("--full-refresh".to_string()),
        None => Some("no merged rows kept yet".to_string()),
        Some(k) if k.merge != print => Some("the merge declaration changed".to_string()),
        Some(k) => k
            .days
            .iter()
            .find(|(d, fp)| held.get(*d) != Some(fp))
            .map(|(d, _)| match held.get(d) {
                Some(_) => format!("day {d} changed since it was merged"),
                None => format!("day {d} is no longer held"),
            }),
    };
    let (batches, report) = match (why_not, kept) {
        (None, Some(k)) => {
            let new_days: Vec<String> = held
                .keys()
                .filter(|d| !k.days.contains_key(*d))
                .cloned()
                .collect();
            let old = format!("__merged_{}", step.name);
            engine
                .register_parquet_at(&old, &dir.child(&k.file)?, "the kept merged rows")
                .await?;
            // Only the new days' files are read.
            let new_table = format!("{window}_new");
            let files: Vec<Location> = new_days
                .iter()
                .filter_map(|d| files.get(d).cloned().flatten())
                .collect();
            engine
                .register_parquet_files(&new_table, &files, day_schema.clone(), &context)
                .await?;
            let sql = merge_sql(
                merge,
                &format!(
                    "(SELECT * FROM {} UNION ALL {}) d",
                    quote(&old),
                    rows_of(merge, &new_table)
                ),
            );
            let out = crate::engine::sql::collect(engine, &sql, &context).await;
            let _ = engine.ctx.deregister_table(old.as_str());
            let report = MergeReport {
                days_merged: new_days.len(),
                days_kept: k.days.len(),
                remerged_because: None,
                rows: 0,
            };
            (out?, report)
        }
        (why, _) => {
            let out = full_df
                .collect()
                .await
                .map_err(|e| execution_error(&context, e))?;
            let report = MergeReport {
                days_merged: held.len(),
                days_kept: 0,
                remerged_because: why,
                rows: 0,
            };
            (out, report)
        }
    };
    // The same types as the full merge (a sum's decimal widens with each merge otherwise).
    let batches = batches
        .into_iter()
        .map(|b| {
            let cols = b
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| cast(c, f.data_type()))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(Error::unexpected)?;
            RecordBatch::try_new(schema.clone(), cols).map_err(Error::unexpected)
        })
        .collect::<Result<Vec<_>>>()?;
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();

    // The rows first, then the record naming them, then the old file goes.
    let mut h = sha2::Sha256::new();
    h.update(print.as_bytes());
    for (d, fp) in held {
        h.update(format!("\n{d} {fp}").as_bytes());
    }
    let fp = hex::encode(h.finalize());
    let rel = format!("_merged/part-{}.parquet", &fp[..16]);
    let loc = dir.child(&rel)?;
    crate::storage::write::write_parquet(
        &loc,
        schema.clone(),
        crate::storage::write::in_memory(batches),
    )
    .await?;
    let covered = Covered {
        merge: print,
        days: held.clone(),
        file: rel.clone(),
        rows,
    };
    let text = serde_json::to_vec_pretty(&covered).map_err(Error::unexpected)?;
    crate::storage::write::put_bytes(&dir.child("_merged/merged.json")?, text).await?;
    let folder = dir.child("_merged")?;
    let listed: Vec<object_store::ObjectMeta> = {
        use futures::TryStreamExt;
        folder
            .store
            .list(Some(&folder.path))
            .try_collect()
            .await
            .unwrap_or_default()
    };
    for m in listed {
        let name = m.location.filename().unwrap_or_default().to_string();
        if name.ends_with(".parquet") && format!("_merged/{name}") != rel {
            let _ = folder.store.delete(&m.location).await;
        }
    }
    engine
        .register_parquet_at(&step.name, &loc, "the merged rows")
        .await?;
    tracing::info!(step = %step.name, merged = report.days_merged, kept = report.days_kept, rows, "merged incremental step");
    Ok(MergeReport { rows, ..report })
}
