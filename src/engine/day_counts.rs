//! Counts over a day-partitioned source kept per day as state: the dirty rows each rule left
//! out and the sources' quality-gate measures are sums (or maxima) of per-day values, so a
//! night counts the days whose files are new or changed and reuses the others', instead of
//! reading every day of the source again.
//!
//! ```text
//! <state>/sources/<source>/<what>.json   {declaration, days: {day: {files, values}}}
//! ```
//!
//! A day's record names a fingerprint of its files (path, size, modification time, etag) and
//! the declaration the values were counted under (the query, the engine version); a changed
//! day, rule or check is counted again.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::Engine;
use crate::error::{Error, Result};
use crate::job::Bindings;
use crate::storage::Location;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Kept {
    declaration: String,
    days: BTreeMap<String, KeptDay>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeptDay {
    files: String,
    values: Vec<f64>,
}

/// Where a source's kept counts live.
pub fn folder(state: &Location, source: &str) -> Result<Location> {
    state.child(&format!("sources/{source}"))
}

/// The sums over every day of `measures` counts: `query(days)` must return one row per day of
/// `days` (a list of quoted days) that has rows, the day first, then the day's counts. Days
/// kept with the same files are not read again; days without a row count 0.
#[allow(clippy::too_many_arguments)]
pub async fn measure(
    engine: &Engine,
    dir: &Location,
    what: &str,
    prints: &BTreeMap<String, String>,
    recount: bool,
    measures: usize,
    bindings: &Bindings,
    context: &str,
    query: impl Fn(&str) -> String,
) -> Result<Vec<f64>> {
    let declaration = {
        let text = format!(
            "{}|{measures}|{}",
            env!("CARGO_PKG_VERSION"),
            query("<days>")
        );
        hex::encode(&sha2::Sha256::digest(text.as_bytes())[..12])
    };
    let loc = dir.child(&format!("{what}.json"))?;
    let kept: Kept = match crate::storage::read_bytes(&loc).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => Kept::default(),
    };
    let reuse = !recount && kept.declaration == declaration;
    let mut days: BTreeMap<String, KeptDay> = BTreeMap::new();
    let mut missing = Vec::new();
    for (d, fp) in prints {
        match kept.days.get(d) {
            Some(k) if reuse && &k.files == fp && k.values.len() == measures => {
                days.insert(d.clone(), k.clone());
            }
            _ => missing.push(d.clone()),
        }
    }
    if !missing.is_empty() {
        let list = missing
            .iter()
            .map(|d| format!("'{}'", d.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        let batches = super::sql::collect_bound(engine, &query(&list), bindings, context).await?;
        for d in &missing {
            days.insert(
                d.clone(),
                KeptDay {
                    files: prints[d].clone(),
                    values: vec![0.0; measures],
                },
            );
        }
        for b in &batches {
            let day = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8)
                .map_err(Error::unexpected)?;
            let day = day.as_string::<i32>();
            let cols = (1..b.num_columns())
                .map(|i| {
                    datafusion::arrow::compute::cast(b.column(i), &DataType::Float64)
                        .map_err(Error::unexpected)
                })
                .collect::<Result<Vec<_>>>()?;
            for r in 0..b.num_rows() {
                let Some(k) = days.get_mut(day.value(r)) else {
                    continue;
                };
                for (i, c) in cols.iter().enumerate().take(measures) {
                    let c = c.as_primitive::<Float64Type>();
                    if c.is_valid(r) {
                        k.values[i] = c.value(r);
                    }
                }
            }
        }
        let text = serde_json::to_vec(&Kept {
            declaration,
            days: days.clone(),
        })
        .map_err(Error::unexpected)?;
        // Best effort: counts not kept are counted again next time.
        if let Err(e) = crate::storage::write::put_bytes(&loc, text).await {
            tracing::warn!(error = %e, "per-day counts not kept");
        }
    }
    tracing::info!(
        what,
        counted = missing.len(),
        reused = days.len() - missing.len(),
        "per-day counts"
    );
    let mut out = vec![0.0; measures];
    for k in days.values() {
        for (o, v) in out.iter_mut().zip(&k.values) {
            *o += v;
        }
    }
    Ok(out)
}
