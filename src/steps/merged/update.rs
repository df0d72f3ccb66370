//! A night's update of kept merged rows: the days that left (or changed) taken out, the new
//! (or changed) days merged in, the keys that may have lost their min or max merged again.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;

use super::ordered::{read_in_order, Keys};
use super::sql::{hidden_columns, merge_sql, public_columns, rows_of, subtract_sql, ROWS};
use super::Covered;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::job::Merge;
use crate::quote::ident as quote;
use crate::storage::Location;

/// Names of the tables one update registers for a while.
pub(super) struct Names {
    kept: String,
    left: String,
    left_rows: String,
    live: String,
    added: String,
    old: String,
    redo: String,
}

impl Names {
    pub(super) fn new(step: &str) -> Names {
        let n = |what: &str| format!("__merge_{what}_{step}");
        Names {
            kept: n("kept"),
            left: n("left"),
            left_rows: n("left_rows"),
            live: n("live"),
            added: n("added"),
            old: n("old"),
            redo: n("redo"),
        }
    }

    pub(super) fn release(&self, engine: &Engine) {
        for t in [
            &self.kept,
            &self.left,
            &self.left_rows,
            &self.live,
            &self.added,
            &self.old,
            &self.redo,
        ] {
            let _ = engine.ctx.deregister_table(t.as_str());
        }
    }
}

/// The kept rows updated, in key order: the days that left (or changed) taken out, the new (or
/// changed) days merged in. Reads the kept rows, the days that left and the days added; the
/// other held days only for keys that must be merged again (see [`subtract_sql`]). Only the
/// keys of the added and leaving days are merged again; the other kept rows pass through.
#[allow(clippy::too_many_arguments)]
pub(super) async fn update(
    engine: &Engine,
    merge: &Merge,
    dir: &Location,
    k: &Covered,
    added: &[String],
    left: &[(String, Location)],
    files: &BTreeMap<String, Option<Location>>,
    held: &BTreeMap<String, String>,
    day_schema: &SchemaRef,
    names: &Names,
    kept_schema: &SchemaRef,
    context: &str,
) -> Result<Vec<RecordBatch>> {
    let keys = Keys::new(merge, kept_schema.clone())?;
    let kept_loc = dir.child(&k.file)?;
    let bytes = crate::storage::read_bytes(&kept_loc).await?;
    let kept_rows = tokio::task::block_in_place(|| read_in_order(bytes, &kept_loc.display()))?;
    let added_files: Vec<Location> = added
        .iter()
        .filter_map(|d| files.get(d).cloned().flatten())
        .collect();
    engine
        .register_parquet_files(&names.added, &added_files, day_schema.clone(), context)
        .await?;
    let counted = &k.counted;
    // The keys the night touches: those of the added days and of the days that left. Only
    // their kept rows are merged again; the others are carried as they are.
    let key_list: Vec<String> = merge.by.iter().map(|c| quote(c)).collect();
    let mut touching = crate::engine::sql::collect(
        engine,
        &format!(
            "SELECT DISTINCT {} FROM {}",
            key_list.join(", "),
            quote(&names.added)
        ),
        context,
    )
    .await?;
    let left_rows = if left.is_empty() {
        None
    } else {
        let left_files: Vec<Location> = left.iter().map(|(_, l)| l.clone()).collect();
        engine
            .register_parquet_files(&names.left, &left_files, day_schema.clone(), context)
            .await?;
        let left_sql = merge_sql(
            merge,
            &format!("({}) d", rows_of(merge, &names.left, Some(counted))),
            Some(counted),
        );
        let batches = crate::engine::sql::collect(engine, &left_sql, context).await?;
        let schema = batch_schema(engine, &left_sql, &batches).await?;
        touching.extend(batches.iter().cloned());
        Some((schema, batches))
    };
    let touched = keys.set(&touching)?;
    drop(touching);
    let (untouched, touched_kept) = tokio::task::block_in_place(|| {
        let (rest, hit) = keys.split(kept_rows, &touched)?;
        let hit = hit
            .iter()
            .map(|b| keys.conform(b))
            .collect::<Result<Vec<_>>>()?;
        Ok::<_, crate::error::Error>((rest, hit))
    })?;
    engine
        .register_batches(&names.kept, kept_schema.clone(), touched_kept)
        .await?;
    let mut parts = vec![rows_of(merge, &names.added, Some(counted))];
    if let Some((schema, batches)) = left_rows {
        engine
            .register_batches(&names.left_rows, schema, batches)
            .await?;
        let sub = subtract_sql(merge, &names.kept, &names.left_rows, day_schema, counted);
        let batches = crate::engine::sql::collect(
            engine,
            &format!("SELECT * FROM ({sub}) s WHERE {} > 0", quote(ROWS)),
            context,
        )
        .await?;
        let schema = batch_schema(engine, &sub, &batches).await?;
        let redo: usize = batches
            .iter()
            .map(|b| {
                b.column_by_name("__redo")
                    .and_then(|c| c.as_boolean_opt().map(|c| c.true_count()))
                    .unwrap_or(0)
            })
            .sum();
        engine
            .register_batches(&names.live, schema, batches)
            .await?;
        let mut cols: Vec<String> = public_columns(merge).map(quote).collect();
        cols.extend(hidden_columns(counted).iter().map(|h| quote(h)));
        parts.insert(
            0,
            format!(
                "SELECT {} FROM {} WHERE NOT __redo",
                cols.join(", "),
                quote(&names.live)
            ),
        );
        if redo > 0 {
            // Keys whose min, max or float sum may have come from a day that left: every
            // remaining day of theirs merged again.
            let old: Vec<Location> = k
                .days
                .keys()
                .filter(|d| held.get(*d) == k.days.get(*d))
                .filter_map(|d| files.get(d).cloned().flatten())
                .collect();
            engine
                .register_parquet_files(&names.old, &old, day_schema.clone(), context)
                .await?;
            let on: Vec<String> = merge
                .by
                .iter()
                .map(|c| format!("(o.{q} IS NOT DISTINCT FROM x.{q})", q = quote(c)))
                .collect();
            let keys: Vec<String> = merge.by.iter().map(|c| quote(c)).collect();
            let redo_keys = format!(
                "SELECT {} FROM {} WHERE __redo",
                keys.join(", "),
                quote(&names.live)
            );
            parts.push(format!(
                "SELECT o.* FROM ({}) o LEFT SEMI JOIN ({redo_keys}) x ON {}",
                rows_of(merge, &names.old, Some(counted)),
                on.join(" AND ")
            ));
            tracing::info!(
                keys = redo,
                "merged step: keys merged again from their remaining days"
            );
        }
    }
    if left.is_empty() {
        parts.insert(0, format!("SELECT * FROM {}", quote(&names.kept)));
    }
    let sql = merge_sql(
        merge,
        &format!("({}) d", parts.join(" UNION ALL ")),
        Some(counted),
    );
    let night = crate::engine::sql::collect(engine, &sql, context).await?;
    tokio::task::block_in_place(|| {
        let night = night
            .iter()
            .map(|b| keys.conform(b))
            .collect::<Result<Vec<_>>>()?;
        let night = sort_by_keys(merge, kept_schema, night)?;
        keys.interleave(untouched, night)
    })
}

/// The schema of a query's result (of its batches when it returned any).
pub(super) async fn batch_schema(
    engine: &Engine,
    sql: &str,
    batches: &[RecordBatch],
) -> Result<SchemaRef> {
    if let Some(b) = batches.first() {
        return Ok(b.schema());
    }
    let df = engine.ctx.sql(sql).await.map_err(Error::unexpected)?;
    Ok(Arc::new(df.schema().as_arrow().clone()))
}

/// The merged rows in key order (nulls last, as SQL's ascending order), sorted here: the SQL
/// engine's sort charges sliced batches at their buffers' full size against the memory budget
/// and spilled merges of under a million rows to disk.
pub(super) fn sort_by_keys(
    merge: &Merge,
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    crate::engine::ordered::sort_by_keys(schema, batches, &merge.by)
}
