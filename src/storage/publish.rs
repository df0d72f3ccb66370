//! Atomic publication. A run writes everything under a fresh run folder,
//! `<output>/<date>/runs/<run id>/`, ending with `manifest.json` and a `_SUCCESS` marker; it then
//! publishes with one small write, the pointer `<output>/<date>/current.json`, which names the run
//! folder. Readers follow the pointer, so a run that fails or is killed at any point leaves the
//! last good publication unchanged and readable, on local disk and on object storage alike.

use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use super::Location;
use crate::error::{Error, Result};

/// Name of the publication pointer in a date folder.
pub const POINTER: &str = "current.json";
/// Name of the success marker in a run folder, written after the manifest.
pub const SUCCESS: &str = "_SUCCESS";

/// The pointer that publishes a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pointer {
    /// Run id.
    pub run_id: String,
    /// The run folder, relative to the output folder.
    pub run: String,
    /// When it was published (UTC, RFC 3339).
    pub published_at: String,
    /// SHA-256 of the run's manifest.json.
    pub manifest_sha256: String,
}

/// A run's folder.
#[derive(Debug, Clone)]
pub struct RunFolder {
    /// The job's output folder.
    pub root: Location,
    /// The date folder name (`as_of`, or `undated`).
    pub key: String,
    /// Run id: UTC time plus a random suffix, so it sorts by start time.
    pub run_id: String,
    /// The run folder.
    pub dir: Location,
    /// The run folder relative to `root`.
    pub rel: String,
}

impl RunFolder {
    /// A fresh run folder below `root` for date folder `key`, named after `now`, the run's
    /// start.
    pub fn new(
        root: &Location,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<RunFolder> {
        let suffix: u32 = rand::random();
        let run_id =
            format!("{}-{:08x}", now.format("%Y%m%dT%H%M%S%.3fZ"), suffix).replace('.', "");
        let rel = format!("{key}/runs/{run_id}");
        Ok(RunFolder {
            root: root.clone(),
            key: key.to_string(),
            dir: root.child(&rel)?,
            rel,
            run_id,
        })
    }
}

fn err(loc: &Location, what: &str, e: object_store::Error) -> Error {
    super::classify(what, &loc.display(), e)
}

/// The pointer of a date folder, if the date has been published.
pub async fn read_pointer(root: &Location, key: &str) -> Result<Option<Pointer>> {
    let loc = root.child(&format!("{key}/{POINTER}"))?;
    match loc.store.get(&loc.path).await {
        Ok(got) => {
            let bytes = got
                .bytes()
                .await
                .map_err(|e| err(&loc, "publication pointer", e))?;
            serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::data(
                    loc.display(),
                    format!("the publication pointer is unreadable: {e}"),
                )
            })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(err(&loc, "publication pointer", e)),
    }
}

/// Publishes `run`: writes the success marker, then the pointer (the one write that publishes).
pub async fn publish(run: &RunFolder, manifest_sha256: &str) -> Result<Pointer> {
    let marker = run.dir.child(SUCCESS)?;
    super::write::put_bytes(&marker, Vec::new()).await?;
    let pointer = Pointer {
        run_id: run.run_id.clone(),
        run: run.rel.clone(),
        published_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        manifest_sha256: manifest_sha256.to_string(),
    };
    let text = serde_json::to_vec_pretty(&pointer).map_err(Error::unexpected)?;
    let loc = run.root.child(&format!("{}/{POINTER}", run.key))?;
    super::write::put_bytes(&loc, text).await?;
    Ok(pointer)
}

/// Date folders of the output folder that hold a publication, sorted.
pub async fn published_keys(root: &Location) -> Result<Vec<String>> {
    let listing = match root.store.list_with_delimiter(Some(&root.path)).await {
        Ok(l) => l,
        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(err(root, "output folder", e)),
    };
    let mut keys = Vec::new();
    for p in listing.common_prefixes {
        let Some(name) = p.filename().map(str::to_string) else {
            continue;
        };
        let ptr = ObjectPath::from(format!("{p}/{POINTER}"));
        if root.store.head(&ptr).await.is_ok() {
            keys.push(name);
        }
    }
    keys.sort();
    Ok(keys)
}

/// The latest publication of a date before `key`, for deltas.
pub async fn previous(root: &Location, key: &str) -> Result<Option<(String, Pointer)>> {
    let keys = published_keys(root).await?;
    for k in keys.iter().rev() {
        if k.as_str() < key {
            if let Some(p) = read_pointer(root, k).await? {
                return Ok(Some((k.clone(), p)));
            }
        }
    }
    Ok(None)
}

async fn delete_prefix(root: &Location, rel: &str) -> Result<usize> {
    super::delete_prefix(&root.child(rel)?).await
}

/// After a successful publication: removes the other run folders of this date (superseded or
/// left by failed runs; the date's lock is held), and whole dates beyond the newest `keep_runs`.
/// Returns what was removed.
pub async fn cleanup(run: &RunFolder, keep_runs: usize) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let runs = run.root.child(&format!("{}/runs", run.key))?;
    if let Ok(listing) = runs.store.list_with_delimiter(Some(&runs.path)).await {
        for p in listing.common_prefixes {
            let Some(name) = p.filename() else { continue };
            if name != run.run_id {
                let rel = format!("{}/runs/{name}", run.key);
                delete_prefix(&run.root, &rel).await?;
                removed.push(rel);
            }
        }
    }
    let keys = published_keys(&run.root).await?;
    if keys.len() > keep_runs {
        for k in &keys[..keys.len() - keep_runs] {
            if *k == run.key {
                continue;
            }
            // Unpublish first, so no reader follows a pointer into a half-deleted run.
            let ptr = run.root.child(&format!("{k}/{POINTER}"))?;
            let _ = ptr.store.delete(&ptr.path).await;
            delete_prefix(&run.root, k).await?;
            removed.push(k.clone());
        }
    }
    Ok(removed)
}
