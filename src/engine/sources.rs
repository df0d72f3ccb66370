//! Registering the job's sources as SQL tables: Parquet, CSV or newline-delimited JSON, one
//! file, a folder or a glob, with Hive-style partition columns, on any object store.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use sha2::Digest;

use super::diagnostics::execution_error;
use super::Engine;
use crate::error::{Error, Result};
use crate::job::{Bindings, Job, Source, SourceFormat};
use crate::storage::{self, Location};

/// What registering a source found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceInfo {
    /// Source name.
    pub name: String,
    /// Resolved URL.
    pub url: String,
    /// Files matched.
    pub files: usize,
    /// Total bytes of the files.
    pub bytes: u64,
    /// True when the source holds no rows (a warning, not an error).
    pub empty: bool,
    /// Every file read: the input fingerprint recorded in the manifest.
    pub objects: Vec<InputFile>,
    /// Rows left out as dirty, by rule (`unparsable`, each `drop` rule, `duplicate`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub dropped: std::collections::BTreeMap<String, u64>,
    /// Files left out by `bad_files = "skip"`: each with the column whose type drifted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_files: Vec<super::drift::FileDrift>,
    /// What decides which rows the source holds besides its files (read schema, cleaning
    /// rules): part of the fingerprint of every day computed from it.
    #[serde(skip)]
    pub declaration: String,
    /// For the per-day rows of an incremental step read as a source: each day's file.
    #[serde(skip)]
    pub day_files: Option<std::collections::BTreeMap<String, crate::storage::Location>>,
}

/// One input file's fingerprint.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InputFile {
    /// Path inside its store.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Last modification time (UTC, RFC 3339).
    pub modified: String,
    /// The store's etag, where it gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Lists the objects a source URL matches; a URL that matches nothing is a missing source.
async fn list_objects(
    source: &str,
    loc: &Location,
    url_text: &str,
) -> Result<Vec<object_store::ObjectMeta>> {
    let path_text = loc.path.as_ref();
    let prefix = if has_glob(url_text) {
        let cut = path_text.find(['*', '?', '[']).unwrap_or(path_text.len());
        let p = &path_text[..cut];
        ObjectPath::from(p.rsplit_once('/').map(|(a, _)| a).unwrap_or(""))
    } else {
        loc.path.clone()
    };
    // A single object?
    if !has_glob(url_text) && !url_text.ends_with('/') {
        match loc.store.head(&prefix).await {
            Ok(meta) => return Ok(vec![meta]),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(storage::classify(source, url_text, e)),
        }
    }
    let objects: Vec<object_store::ObjectMeta> =
        match loc.store.list(Some(&prefix)).try_collect().await {
            Ok(v) => v,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(storage::classify(source, url_text, e)),
        };
    let objects: Vec<_> = objects
        .into_iter()
        .filter(|m| {
            let name = m.location.filename().unwrap_or_default();
            !name.starts_with('.') && !name.starts_with('_')
        })
        .collect();
    if objects.is_empty() {
        return Err(Error::SourceMissing {
            source_name: source.to_string(),
            url: url_text.to_string(),
            detail: "no files there".into(),
            cause: None,
        });
    }
    Ok(objects)
}

/// A JSON source with `bad_rows = "skip"` is parsed line by line in this process, so a cluster
/// cannot read it: the error names the steps that read it.
fn held_here_error(engine: &Engine, job: &Job, source: &str) -> Error {
    let word = |text: &str| {
        text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w == source)
    };
    let readers: Vec<String> = job
        .steps
        .iter()
        .filter(|s| match &s.kind {
            crate::job::StepKind::Sql(sql) => word(&sql.text),
            _ => false,
        })
        .map(|s| s.name.clone())
        .collect();
    let first = readers.first().cloned();
    let who = if readers.is_empty() {
        "a step".to_string()
    } else {
        readers
            .iter()
            .map(|r| format!("step `{r}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Error::job_msg(
        first.as_deref(),
        format!(
            "{who} cannot run on the Ballista cluster ({}): it reads source `{source}`, a JSON source with bad_rows = \"skip\", which is parsed line by line in this process and held in its memory, where the executors cannot read it",
            engine.kind
        ),
        Some("clean the file upstream, or use bad_rows = \"fail\" on a cluster, or run this job with --engine local".into()),
    )
}

/// Registers one source as a table named after it.
pub async fn register_source(
    engine: &mut Engine,
    job: &Job,
    source: &Source,
    bindings: &Bindings,
    state: Option<(&crate::storage::Location, bool)>,
) -> Result<SourceInfo> {
    let url_text = job.render_url(&source.url, bindings)?;
    let loc = storage::locate(&url_text)?;
    engine.register_store(&loc);
    let shown = loc.display();
    let objects = list_objects(&source.name, &loc, &shown).await?;
    let (files, bytes) = (objects.len(), objects.iter().map(|m| m.size).sum());
    let mut fingerprints: Vec<InputFile> = objects
        .iter()
        .map(|m| InputFile {
            path: m.location.to_string(),
            bytes: m.size,
            modified: m
                .last_modified
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            etag: m.e_tag.clone(),
        })
        .collect();
    fingerprints.sort_by(|a, b| a.path.cmp(&b.path));

    let last = loc
        .url
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let single_named_file = !has_glob(&last) && last.contains('.');
    let (format, ext): (Arc<dyn FileFormat>, &str) = match source.format {
        SourceFormat::Parquet => (
            // The session's Parquet settings; strings as views only where the source asks.
            Arc::new(ParquetFormat::default().with_options({
                let mut o = engine.ctx.state().default_table_options().parquet;
                o.global.schema_force_view_types |= source.string_view;
                o
            })),
            ".parquet",
        ),
        SourceFormat::Csv => (
            Arc::new(
                CsvFormat::default()
                    .with_has_header(source.has_header)
                    .with_delimiter(source.delimiter),
            ),
            ".csv",
        ),
        SourceFormat::Json => (Arc::new(JsonFormat::default()), ".json"),
    };
    // A folder of files is filtered by extension; a single named file or a glob is taken as is.
    let ext = if single_named_file || has_glob(&last) {
        ""
    } else {
        ext
    };
    let mut table_url = listing_url(&loc.url).map_err(|e| {
        Error::job_msg(
            Some(&source.name),
            format!("source URL {shown} is not usable: {e}"),
            None,
        )
    })?;
    let options = ListingOptions::new(format)
        .with_file_extension(ext)
        .with_table_partition_cols(
            source
                .partitions
                .iter()
                .map(|p| (p.clone(), DataType::Utf8))
                .collect(),
        );
    let context = format!("source `{}` ({shown})", source.name);
    // Each file's own schema, so a file whose column changed type is named (the engine's own
    // inference merges files, or stops after the first thousand CSV rows, and names none).
    // Parquet footers are cheap, so Parquet files are checked against a declared schema too.
    let per_file = if source.schema.is_none() || source.format == SourceFormat::Parquet {
        let read: Vec<object_store::ObjectMeta> = objects
            .iter()
            .filter(|m| {
                m.location.as_ref().ends_with(ext) && table_url.contains(&m.location, false)
            })
            .cloned()
            .collect();
        let parquet = source.format == SourceFormat::Parquet;
        file_schemas(
            engine,
            options.format.as_ref(),
            &loc,
            &read,
            &context,
            parquet,
        )
        .await?
    } else {
        Vec::new()
    };
    let mut skipped_files = Vec::new();
    let schema = match &source.schema {
        Some(s) if source.skip_bad_rows => super::cleaning::text_schema(s),
        Some(s) => {
            if !per_file.is_empty() {
                skipped_files = files_that_drifted(&per_file, Some(s)).1;
            }
            s.clone()
        }
        None if !per_file.is_empty() => {
            let (schema, drift) = files_that_drifted(&per_file, source.expect.as_deref());
            skipped_files = drift;
            schema
        }
        None => match options.infer_schema(&engine.ctx.state(), &table_url).await {
            Ok(s) => s,
            Err(e) => return Err(execution_error(&context, e)),
        },
    };
    if !skipped_files.is_empty() {
        if !source.skip_bad_files {
            return Err(super::drift::files_error(
                &source.name,
                &shown,
                per_file.len(),
                &skipped_files,
            ));
        }
        if engine.is_distributed() {
            return Err(held_here_error(engine, job, &source.name));
        }
        let hidden: std::collections::BTreeSet<ObjectPath> = skipped_files
            .iter()
            .filter_map(|d| {
                objects
                    .iter()
                    .find(|m| file_shown(&loc, &m.location) == d.path)
                    .map(|m| m.location.clone())
            })
            .collect();
        tracing::warn!(source = %source.name, files = hidden.len(), "files whose column types drifted are left out (bad_files = \"skip\"); the manifest lists them");
        let hiding = hiding_location(&loc, &source.name, hidden)?;
        engine.register_store(&hiding);
        table_url = listing_url(&hiding.url).map_err(|e| {
            Error::internal(format!(
                "cannot read {context} without its skipped files: {e}"
            ))
        })?;
    }
    let mut json_unparsable: Option<u64> = None;
    let config = ListingTableConfig::new(table_url)
        .with_listing_options(options)
        .with_schema(schema);
    let table: Arc<dyn datafusion::datasource::TableProvider> =
        match (source.format, source.skip_bad_rows, &source.schema) {
            // JSON lines that do not parse cannot be read around: they are sorted out first.
            (SourceFormat::Json, true, Some(declared)) => {
                if engine.is_distributed() {
                    return Err(held_here_error(engine, job, &source.name));
                }
                let (t, bad) =
                    super::cleaning::json_good_rows(&loc, &objects, declared, &context).await?;
                json_unparsable = Some(bad);
                t
            }
            _ => Arc::new(ListingTable::try_new(config).map_err(|e| execution_error(&context, e))?),
        };
    // A night counts the dirty rows of its new days only.
    let kept = match (state, source.partitions.first()) {
        (Some((state, recount)), Some(column)) if super::cleaning::counts_per_day(source) => {
            day_prints(&fingerprints, column).map(|prints| {
                super::day_counts::folder(state, &source.name).map(|dir| {
                    super::cleaning::KeptCounts {
                        dir,
                        column: column.clone(),
                        prints,
                        recount,
                    }
                })
            })
        }
        _ => None,
    }
    .transpose()?;
    let mut dropped = if super::cleaning::wanted(source) {
        super::cleaning::register_clean_view(engine, source, table, bindings, kept.as_ref()).await?
    } else {
        engine
            .ctx
            .register_table(source.name.as_str(), table)
            .map_err(|e| Error::internal(format!("cannot register {context}: {e}")))?;
        Default::default()
    };
    if let Some(bad) = json_unparsable {
        dropped.insert("unparsable".to_string(), bad);
    }
    if let Some(expected) = &source.expect {
        let found = engine
            .ctx
            .table(source.name.as_str())
            .await
            .map_err(|e| execution_error(&context, e))?;
        super::drift::check_expected(&source.name, &shown, expected, found.schema().as_arrow())?;
    }
    for (rule, n) in &dropped {
        if *n > 0 {
            tracing::info!(source = %source.name, rule = %rule, rows = n, "dirty rows left out");
        }
    }

    // An empty source is worth a warning: a job over an empty day is usually a late upload.
    let probe = crate::engine::sql::collect(
        engine,
        &format!("SELECT 1 FROM \"{}\" LIMIT 1", source.name),
        &context,
    )
    .await?;
    let empty = probe.iter().map(|b| b.num_rows()).sum::<usize>() == 0;
    if empty {
        tracing::warn!(source = %source.name, url = %shown, "source is empty; the run continues");
    }
    Ok(SourceInfo {
        name: source.name.clone(),
        url: shown,
        files,
        bytes,
        empty,
        objects: fingerprints,
        dropped,
        skipped_files,
        declaration: format!(
            "{:?}|{:?}|{}|{}|{:?}|{:?}|{}",
            source.schema,
            source.drop,
            source.has_header,
            source.delimiter,
            source.dedupe,
            source.partitions,
            source.skip_bad_rows
        ),
        day_files: None,
    })
}

/// A listing URL; a glob in the path is split off into a pattern (DataFusion only parses globs
/// itself in scheme-less paths).
fn listing_url(url: &url::Url) -> std::result::Result<ListingTableUrl, String> {
    let text = url.as_str();
    let path_start = text.find("://").map(|i| i + 3).unwrap_or(0);
    let glob_at = text[path_start..]
        .find(['*', '?', '['])
        .map(|i| i + path_start);
    match glob_at {
        None => ListingTableUrl::parse(text).map_err(|e| e.to_string()),
        Some(g) => {
            let cut = text[..g].rfind('/').map(|i| i + 1).unwrap_or(g);
            let base = url::Url::parse(&text[..cut]).map_err(|e| e.to_string())?;
            let pattern = glob::Pattern::new(&text[cut..]).map_err(|e| format!("bad glob: {e}"))?;
            ListingTableUrl::try_new(base, Some(pattern)).map_err(|e| e.to_string())
        }
    }
}

/// The schema of the files and those that disagree with it. When every file disagrees with the
/// declared types, the source as a whole changed: that is the source-level drift check's to
/// report (column by column), and only files that disagree among themselves are named here.
fn files_that_drifted(
    files: &[(String, datafusion::arrow::datatypes::SchemaRef)],
    declared: Option<&datafusion::arrow::datatypes::Schema>,
) -> (
    datafusion::arrow::datatypes::SchemaRef,
    Vec<super::drift::FileDrift>,
) {
    let (schema, drift) = super::drift::reconcile(files, declared);
    let drifted: std::collections::BTreeSet<&str> = drift.iter().map(|d| d.path.as_str()).collect();
    if declared.is_some() && drifted.len() == files.len() {
        return super::drift::reconcile(files, None);
    }
    (schema, drift)
}

/// How a file is named in messages and the manifest: its URL, a local path without `file://`.
fn file_shown(loc: &Location, path: &ObjectPath) -> String {
    let shown = format!("{}/{}", loc.store_url.as_str().trim_end_matches('/'), path);
    shown.strip_prefix("file://").unwrap_or(&shown).to_string()
}

/// Each file's own schema, read concurrently (as the engine's own inference does); a file that
/// cannot be read is named.
async fn file_schemas(
    engine: &Engine,
    format: &dyn FileFormat,
    loc: &Location,
    objects: &[object_store::ObjectMeta],
    context: &str,
    parquet: bool,
) -> Result<Vec<(String, datafusion::arrow::datatypes::SchemaRef)>> {
    use futures::StreamExt;
    let state = engine.ctx.state();
    let found: Vec<_> = futures::stream::iter(objects.iter().map(|m| {
        let state = &state;
        async move {
            let one = std::slice::from_ref(m);
            (m, format.infer_schema(state, &loc.store, one).await)
        }
    }))
    .buffered(32)
    .collect()
    .await;
    let mut out = Vec::with_capacity(found.len());
    for (m, res) in found {
        let path = file_shown(loc, &m.location);
        match res {
            Ok(s) => out.push((path, s)),
            Err(e) => {
                let err = execution_error(context, e);
                if let (Error::Data { .. }, true) = (&err, parquet) {
                    if let Some((path, why)) =
                        find_corrupt_parquet(loc, std::slice::from_ref(m)).await
                    {
                        return Err(Error::data(
                            context.to_string(),
                            format!("corrupt Parquet file {path}: {why}\n  hint: replace or remove the file, then rerun"),
                        ));
                    }
                }
                return Err(Error::data(
                    context.to_string(),
                    format!("cannot read the schema of file {path}: {}\n  hint: replace or remove the file, then rerun", crate::error::with_causes(&err)),
                ));
            }
        }
    }
    Ok(out)
}

/// The source's location seen through a store without the `hidden` files, under a store URL
/// of its own so other sources on the same store still see every file.
fn hiding_location(
    loc: &Location,
    source: &str,
    hidden: std::collections::BTreeSet<ObjectPath>,
) -> Result<Location> {
    let key = hex::encode(&sha2::Sha256::digest(format!("{}|{source}", loc.url).as_bytes())[..6]);
    let store_url = url::Url::parse(&format!("skipped://{key}/"))
        .map_err(|e| Error::internal(format!("skipped-files store URL: {e}")))?;
    let mut url = store_url.clone();
    url.set_path(loc.url.path());
    Ok(Location {
        url,
        store_url,
        path: loc.path.clone(),
        store: Arc::new(storage::hidden::HidingStore::new(loc.store.clone(), hidden)),
    })
}

/// Checks each Parquet file's footer; returns the first damaged file and what is wrong with it.
async fn find_corrupt_parquet(
    loc: &Location,
    objects: &[object_store::ObjectMeta],
) -> Option<(String, String)> {
    use datafusion::parquet::file::metadata::ParquetMetaDataReader;
    for m in objects {
        let shown = format!(
            "{}/{}",
            loc.store_url.as_str().trim_end_matches('/'),
            m.location
        );
        let shown = shown.strip_prefix("file://").unwrap_or(&shown).to_string();
        if m.size < 12 {
            return Some((shown, format!("only {} bytes long", m.size)));
        }
        let tail = match loc.store.get_range(&m.location, m.size - 8..m.size).await {
            Ok(b) => b,
            Err(e) => return Some((shown, e.to_string())),
        };
        if &tail[4..8] != b"PAR1" {
            return Some((
                shown,
                "no Parquet magic bytes at the end (not a Parquet file, or truncated)".into(),
            ));
        }
        let len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
        if len + 12 > m.size {
            return Some((
                shown,
                "footer length points outside the file (truncated?)".into(),
            ));
        }
        match loc
            .store
            .get_range(&m.location, m.size - 8 - len..m.size - 8)
            .await
        {
            Ok(footer) => {
                if let Err(e) = ParquetMetaDataReader::decode_metadata(&footer) {
                    return Some((shown, format!("unreadable footer: {e}")));
                }
            }
            Err(e) => return Some((shown, e.to_string())),
        }
    }
    None
}

/// The fingerprint of each day's files, or `None` when a file is outside any day folder.
pub fn day_prints(files: &[InputFile], column: &str) -> Option<BTreeMap<String, String>> {
    let mut by_day: BTreeMap<String, sha2::Sha256> = BTreeMap::new();
    let marker = format!("{column}=");
    for f in files {
        let day = f
            .path
            .split('/')
            .find_map(|part| part.strip_prefix(marker.as_str()))?;
        by_day.entry(day.to_string()).or_default().update(
            format!(
                "{} {} {} {}\n",
                f.path,
                f.bytes,
                f.modified,
                f.etag.as_deref().unwrap_or("")
            )
            .as_bytes(),
        );
    }
    Some(
        by_day
            .into_iter()
            .map(|(d, h)| (d, hex::encode(h.finalize())))
            .collect(),
    )
}
