//! `audiences verify`: a published run read back and checked before ad ops upload it: every
//! file its manifest lists (size, SHA-256, rows), and every segment file against its platform's
//! format (headers, the shape of each hashed value, no empty file, parts within the platform's
//! cap, no line in both a segment's target and its control).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use serde_json::Value;
use sha2::Digest;

use crate::error::{Error, Result};
use crate::storage::{self, Location};

/// What verifying a run found.
#[derive(Debug, Default)]
pub struct Verified {
    /// The run folder checked.
    pub run: String,
    /// Files checked.
    pub files: usize,
    /// Problems, each naming its file.
    pub problems: Vec<String>,
}

/// The run folder at `loc` and its manifest's bytes: `loc` itself when it holds
/// `manifest.json`, else the run the date folder's `current.json` publishes (whose manifest
/// checksum is checked too).
async fn run_folder(loc: &Location, problems: &mut Vec<String>) -> Result<(Location, Vec<u8>)> {
    let ptr_loc = loc.child("current.json")?;
    let Ok(ptr) = storage::read_bytes(&ptr_loc).await else {
        let manifest = storage::read_bytes(&loc.child("manifest.json")?).await?;
        return Ok((loc.clone(), manifest));
    };
    let v: Value = serde_json::from_slice(&ptr)
        .map_err(|e| Error::data(ptr_loc.display(), format!("not JSON: {e}")))?;
    let run = v["run"].as_str().unwrap_or_default();
    // `run` is relative to the output folder: `<date>/runs/<id>`, and `loc` is `<date>`.
    let rel = run.split_once('/').map(|(_, r)| r).unwrap_or(run);
    let dir = loc.child(rel)?;
    let manifest_loc = dir.child("manifest.json")?;
    let manifest = storage::read_bytes(&manifest_loc).await?;
    if v["manifest_sha256"].as_str() != Some(hex::encode(sha2::Sha256::digest(&manifest)).as_str())
    {
        problems.push(format!(
            "{}: manifest_sha256 does not match {}",
            ptr_loc.display(),
            manifest_loc.display()
        ));
    }
    Ok((dir, manifest))
}

/// Verifies the run folder (or date folder) at `loc`.
pub async fn verify(loc: &Location) -> Result<Verified> {
    let mut out = Verified::default();
    let (dir, manifest) = run_folder(loc, &mut out.problems).await?;
    out.run = dir.display();
    let m: Value = serde_json::from_slice(&manifest).map_err(|e| {
        Error::data(
            format!("{}/manifest.json", dir.display()),
            format!("not JSON: {e}"),
        )
    })?;
    if storage::read_bytes(&dir.child("_SUCCESS")?).await.is_err() {
        out.problems.push(format!(
            "{}: no _SUCCESS: the run did not finish",
            dir.display()
        ));
    }
    for t in m["tables"].as_array().into_iter().flatten() {
        let path = t["path"].as_str().unwrap_or_default();
        if path.contains("://") || path.starts_with('/') {
            continue; // written outside the run folder
        }
        out.files += 1;
        read_listed(&dir, path, t, &mut out.problems).await?;
    }
    for ex in m["exports"].as_array().into_iter().flatten() {
        check_export(&dir, ex, &mut out).await?;
    }
    Ok(out)
}

/// Reads a listed file and checks its size and SHA-256; `None` when it is missing.
async fn read_listed(
    dir: &Location,
    path: &str,
    entry: &Value,
    problems: &mut Vec<String>,
) -> Result<Option<Vec<u8>>> {
    let loc = dir.child(path)?;
    let Ok(bytes) = storage::read_bytes(&loc).await else {
        problems.push(format!("{path}: listed in the manifest but missing"));
        return Ok(None);
    };
    if entry["bytes"].as_u64() != Some(bytes.len() as u64) {
        problems.push(format!(
            "{path}: {} bytes, the manifest says {}",
            bytes.len(),
            entry["bytes"]
        ));
    }
    if entry["sha256"].as_str() != Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str()) {
        problems.push(format!("{path}: SHA-256 differs from the manifest's"));
    }
    Ok(Some(bytes))
}

/// The text of a segment file: unzipped or gunzipped as its name says.
fn text_of(path: &str, bytes: &[u8]) -> std::result::Result<String, String> {
    let mut text = String::new();
    let read = if path.ends_with(".zip") {
        zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| e.to_string())
            .and_then(|mut z| {
                (0..z.len()).try_for_each(|i| {
                    z.by_index(i)
                        .map_err(|e| e.to_string())?
                        .read_to_string(&mut text)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
            })
    } else if path.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map(|_| ())
            .map_err(|e| e.to_string())
    } else {
        String::from_utf8(bytes.to_vec())
            .map(|t| text = t)
            .map_err(|e| e.to_string())
    };
    read.map(|_| text)
}

/// Lower-case hex of `len` characters, or empty (a field the row has no value for).
fn hashed_shape(v: &str, hash: &str) -> bool {
    let len = match hash {
        "md5" => 32,
        "sha256" | "md5+sha256" => 64,
        _ => return true,
    };
    v.is_empty()
        || (v.len() == len
            && v.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

async fn check_export(dir: &Location, ex: &Value, out: &mut Verified) -> Result<()> {
    let format = ex["format"].as_str().unwrap_or_default();
    let fields: Vec<(String, String)> = ex["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["name"].as_str().unwrap_or_default().to_string(),
                f["hash"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    // The export's own cap (in the manifest), else its platform's.
    let cap = ex["max_bytes_per_file"].as_u64().or_else(|| {
        serde_json::from_value::<crate::job::ExportFormat>(ex["format"].clone())
            .ok()
            .and_then(super::platform::platform_max_bytes)
    });
    for seg in ex["segments"].as_array().into_iter().flatten() {
        // Lines of each group (target, control), to find any in both.
        let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for set in seg["file_sets"].as_array().into_iter().flatten() {
            let part = set["part"].as_str().unwrap_or_default().to_string();
            let id_type = set["id_type"].as_str();
            for f in set["files"].as_array().into_iter().flatten() {
                let path = f["path"].as_str().unwrap_or_default();
                out.files += 1;
                let Some(bytes) = read_listed(dir, path, f, &mut out.problems).await? else {
                    continue;
                };
                if let Some(c) = cap.filter(|c| bytes.len() as u64 > *c) {
                    out.problems.push(format!(
                        "{path}: {} bytes, over the cap of {c}",
                        bytes.len()
                    ));
                }
                if format == "parquet" {
                    continue; // Parquet parts: the manifest's checks only
                }
                let text = match text_of(path, &bytes) {
                    Ok(t) => t,
                    Err(e) => {
                        out.problems.push(format!("{path}: unreadable: {e}"));
                        continue;
                    }
                };
                check_lines(path, &text, format, id_type, &fields, f, &mut out.problems);
                if part == "target" || part == "control" {
                    let header = usize::from(format != "tencent_ads");
                    groups
                        .entry(part.clone())
                        .or_default()
                        .extend(text.lines().skip(header).map(str::to_string));
                }
            }
        }
        if let (Some(t), Some(c)) = (groups.get("target"), groups.get("control")) {
            let both = t.intersection(c).count();
            if both > 0 {
                out.problems.push(format!(
                    "{}/{}: {both} lines in both the target and the control files",
                    ex["to"].as_str().unwrap_or_default(),
                    seg["segment"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    Ok(())
}

/// Checks the lines of one segment file: header, row count, each hashed value's shape.
#[allow(clippy::too_many_arguments)]
fn check_lines(
    path: &str,
    text: &str,
    format: &str,
    id_type: Option<&str>,
    fields: &[(String, String)],
    entry: &Value,
    problems: &mut Vec<String>,
) {
    let mut lines = text.lines();
    // Columns of this file and their hashing, in order.
    let columns: Vec<(String, String)> = match format {
        "tencent_ads" => fields
            .iter()
            .filter(|(name, _)| Some(name.as_str()) == id_type)
            .cloned()
            .collect(),
        _ => {
            let Some(header) = lines.next() else {
                problems.push(format!("{path}: empty file"));
                return;
            };
            let got: Vec<&str> = header.split(',').collect();
            if format == "google_customer_match"
                && got.contains(&"Mobile Device ID")
                && got.len() > 1
            {
                problems.push(format!(
                    "{path}: mixes `Mobile Device ID` with contact columns; Google takes one key type per list"
                ));
            }

            let known: BTreeMap<&str, &str> = fields
                .iter()
                .map(|(n, h)| (n.as_str(), h.as_str()))
                .collect();
            if matches!(format, "csv" | "parquet") {
                Vec::new()
            } else if let Some(bad) = got.iter().find(|h| !known.contains_key(**h)) {
                problems.push(format!(
                    "{path}: header `{bad}` is not one of the export's fields ({})",
                    known.keys().copied().collect::<Vec<_>>().join(", ")
                ));
                return;
            } else {
                got.iter()
                    .map(|h| (h.to_string(), known[h].to_string()))
                    .collect()
            }
        }
    };
    let mut rows = 0u64;
    for (i, line) in lines.enumerate() {
        rows += 1;
        let values: Vec<&str> = if format == "tencent_ads" {
            vec![line]
        } else {
            line.split(',').collect()
        };
        if !columns.is_empty() && values.len() != columns.len() {
            problems.push(format!(
                "{path}: line {}: {} values, the header has {}",
                i + 2,
                values.len(),
                columns.len()
            ));
            continue;
        }
        for (v, (name, hash)) in values.iter().zip(&columns) {
            if !hashed_shape(v, hash) {
                problems.push(format!(
                    "{path}: line {}: `{name}` is not a {hash} hash",
                    i + 1 + usize::from(format != "tencent_ads")
                ));
            }
        }
        if format == "tencent_ads" && line.is_empty() {
            problems.push(format!("{path}: line {}: empty", i + 1));
        }
    }
    if rows == 0 {
        problems.push(format!("{path}: no rows"));
    }
    if entry["rows"].as_u64().is_some_and(|r| r != rows) {
        problems.push(format!(
            "{path}: {rows} rows, the manifest says {}",
            entry["rows"]
        ));
    }
}
