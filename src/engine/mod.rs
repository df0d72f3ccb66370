//! The SQL engine: one DataFusion session per run, with a bounded memory pool that spills to
//! local disk, the job's sources registered as tables, and each step's result held as a table
//! that later steps read by name.
//!
//! The session runs in this process (`local`, the default) or on an Apache DataFusion Ballista
//! cluster (`ballista://HOST:PORT`, or `standalone` for a scheduler and an executor inside this
//! process). On a cluster, step results are written by the executors as Parquet under the
//! run's work folder on shared storage, since executors cannot read tables held in this
//! process's memory.

pub mod cleaning;
pub mod day_counts;
pub mod diagnostics;
pub mod drift;
pub mod materialise;
pub mod ordered;
pub mod sources;
pub mod sql;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};

use crate::error::{Error, Result};
use crate::storage::Location;

pub use crate::job::EngineKind;

/// Settings of the SQL session.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// Memory budget of the query engine in bytes; operators spill to disk past it.
    /// Default: 60% of the machine's memory.
    pub memory_limit: Option<usize>,
    /// Folder for spill files (default: the system temp folder).
    pub spill_dir: Option<PathBuf>,
    /// Parallelism of query plans (default: the number of cores).
    pub target_partitions: Option<usize>,
    /// DataFusion settings by key (from the job's `[settings]`).
    pub settings: Vec<(String, String)>,
    /// Where SQL runs; `None` takes the job's `engine` (default: local).
    pub kind: Option<EngineKind>,
}

/// The default memory budget: 60% of physical memory, leaving room for models and writers.
pub fn default_memory_limit() -> usize {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    let total = sys.total_memory() as usize;
    if total == 0 {
        4 << 30
    } else {
        total / 10 * 6
    }
}

/// Parses a size such as `4GiB`, `512MB`, `2g` or `1073741824`.
pub fn parse_size(text: &str) -> std::result::Result<usize, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 4GiB, 512MiB)"))?;
    let mult: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("`{text}` has an unknown unit (use KiB, MiB, GiB)")),
    };
    Ok((n * mult) as usize)
}

/// A SQL session with the object stores it needs registered.
pub struct Engine {
    /// The DataFusion session.
    pub ctx: SessionContext,
    /// The memory budget in bytes.
    pub memory_limit: usize,
    /// Where SQL runs.
    pub kind: EngineKind,
    /// On a cluster: the folder on shared storage where step results are written.
    work: Option<Location>,
    stores: HashSet<String>,
    /// Where results too large for memory are written (`--spill-dir` or the temp folder).
    spill_base: PathBuf,
    /// This run's own folder under `spill_base`, made on first use and removed with the
    /// engine, so spilled step results never outlive the run.
    scratch: std::sync::Mutex<Option<tempfile::TempDir>>,
    spilled: std::sync::atomic::AtomicUsize,
}

impl Engine {
    /// Builds a session with a bounded, spilling memory pool, on the engine `cfg.kind` names.
    pub async fn new(cfg: &EngineConfig) -> Result<Engine> {
        let memory_limit = cfg.memory_limit.unwrap_or_else(default_memory_limit);
        let mut runtime = RuntimeEnvBuilder::new().with_memory_limit(memory_limit, 1.0);
        if let Some(dir) = &cfg.spill_dir {
            runtime = runtime.with_temp_file_path(dir.clone());
        }
        let runtime = runtime
            .build_arc()
            .map_err(|e| Error::internal(format!("cannot build the SQL runtime: {e}")))?;
        let partitions = cfg.target_partitions.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        });
        let kind = cfg.kind.clone().unwrap_or_default();
        let base = if kind.is_distributed() {
            use ballista::prelude::SessionConfigExt;
            // Ballista 55's adaptive planner re-plans a join with an empty side without end
            // (seen on a LEFT JOIN against an empty `previous_` table); the static distributed
            // planner runs the same plans. A job's [settings] may turn it back on.
            SessionConfig::new_with_ballista().set_bool("ballista.planner.adaptive.enabled", false)
        } else {
            SessionConfig::new()
        };
        let mut config = base
            .with_target_partitions(partitions)
            .with_information_schema(true);
        let opts = config.options_mut();
        // Plain Utf8 strings keep memory bounded on every query shape we measured; Utf8View
        // blew past 10 GB on some join shapes of the feature query.
        opts.execution.parquet.schema_force_view_types = false;
        // Spans let plan errors point at the SQL line and column.
        opts.sql_parser.collect_spans = true;
        for (k, v) in &cfg.settings {
            opts.set(k, v).map_err(|e| {
                Error::job_msg(
                    None,
                    format!("setting `{k}` = \"{v}\": {}", e.strip_backtrace()),
                    Some("see the DataFusion configuration reference for valid keys".into()),
                )
            })?;
        }
        let ctx = match &kind {
            EngineKind::Local => SessionContext::new_with_config_rt(config, runtime),
            distributed => {
                use ballista::prelude::SessionContextExt;
                let state = SessionStateBuilder::new()
                    .with_config(config)
                    .with_runtime_env(runtime)
                    .with_default_features()
                    .build();
                let made = match distributed {
                    EngineKind::Standalone => SessionContext::standalone_with_state(state).await,
                    EngineKind::Ballista { host, port } => {
                        // The client connects lazily; find out now, before any work starts.
                        let reach = tokio::time::timeout(
                            std::time::Duration::from_secs(10),
                            tokio::net::TcpStream::connect((host.as_str(), *port)),
                        )
                        .await;
                        if let Err(msg) = match reach {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err("no answer within 10 s".to_string()),
                        } {
                            return Err(Error::Temporary {
                                context: Some(format!("Ballista scheduler {kind}")),
                                message: format!(
                                    "cannot connect: {msg}; is the scheduler running and is the address right?"
                                ),
                            });
                        }
                        SessionContext::remote_with_state(&format!("df://{host}:{port}"), state)
                            .await
                    }
                    EngineKind::Local => unreachable!("matched above"),
                };
                made.map_err(|e| Error::Temporary {
                    context: Some(format!("Ballista scheduler {distributed}")),
                    message: format!("cannot start a session: {}", e.strip_backtrace()),
                })?
            }
        };
        Ok(Engine {
            ctx,
            memory_limit,
            kind,
            work: None,
            stores: HashSet::new(),
            spill_base: cfg.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
            scratch: std::sync::Mutex::new(None),
            spilled: Default::default(),
        })
    }

    /// A fresh path for a spilled result named after `name`, in this run's scratch folder
    /// (removed when the engine is dropped).
    pub fn scratch_file(&self, name: &str) -> Result<PathBuf> {
        let mut guard = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("audiences-")
                .tempdir_in(&self.spill_base)
                .map_err(|e| {
                    Error::internal(format!(
                        "cannot create a scratch folder in {}: {e}; set --spill-dir to a writable folder",
                        self.spill_base.display()
                    ))
                })?;
            *guard = Some(dir);
        }
        let dir = guard.as_ref().expect("made above").path();
        let n = self
            .spilled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(dir.join(format!("{name}-{n}.parquet")))
    }

    /// Makes the store behind `loc` known to the SQL engine (once per store).
    pub fn register_store(&mut self, loc: &Location) {
        let key = loc.store_url.to_string();
        if self.stores.insert(key) {
            self.ctx
                .register_object_store(&loc.store_url, loc.store.clone());
        }
    }

    /// A local session over the same runtime (object stores, memory pool) and settings, holding
    /// every table registered so far: static checks plan against it and leave this session as
    /// it was.
    pub async fn planner(&self) -> Result<Engine> {
        let ctx =
            SessionContext::new_with_config_rt(self.ctx.copied_config(), self.ctx.runtime_env());
        let catalog = self.ctx.catalog("datafusion");
        if let Some(schema) = catalog.and_then(|c| c.schema("public")) {
            for name in schema.table_names() {
                let table = schema.table(&name).await.map_err(|e| {
                    Error::internal(format!("table `{name}`: {}", e.strip_backtrace()))
                })?;
                if let Some(table) = table {
                    ctx.register_table(name.as_str(), table).map_err(|e| {
                        Error::internal(format!("table `{name}`: {}", e.strip_backtrace()))
                    })?;
                }
            }
        }
        Ok(Engine {
            ctx,
            memory_limit: self.memory_limit,
            kind: EngineKind::Local,
            work: None,
            stores: self.stores.clone(),
            spill_base: self.spill_base.clone(),
            scratch: std::sync::Mutex::new(None),
            spilled: Default::default(),
        })
    }

    /// Registers the Parquet object at `loc` as table `name`; `what` names it in the error.
    pub async fn register_parquet_at(&self, name: &str, loc: &Location, what: &str) -> Result<()> {
        self.ctx
            .register_parquet(
                name,
                loc.url.as_str(),
                datafusion::prelude::ParquetReadOptions::default(),
            )
            .await
            .map_err(|e| Error::data(loc.display(), format!("{what} cannot be read: {e}")))
    }

    /// Registers Parquet files of one schema as one table `name` (an empty table when there
    /// are none).
    pub async fn register_parquet_files(
        &self,
        name: &str,
        files: &[Location],
        schema: datafusion::arrow::datatypes::SchemaRef,
        context: &str,
    ) -> Result<()> {
        use datafusion::datasource::file_format::parquet::ParquetFormat;
        use datafusion::datasource::listing::{
            ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
        };
        let _ = self.ctx.deregister_table(name);
        if files.is_empty() {
            let t = datafusion::datasource::MemTable::try_new(schema, vec![vec![]])
                .map_err(Error::unexpected)?;
            self.ctx
                .register_table(name, std::sync::Arc::new(t))
                .map_err(Error::unexpected)?;
            return Ok(());
        }
        let urls = files
            .iter()
            .map(|loc| {
                ListingTableUrl::parse(loc.url.as_str())
                    .map_err(|e| diagnostics::execution_error(context, e))
            })
            .collect::<Result<Vec<_>>>()?;
        let options = ListingOptions::new(std::sync::Arc::new(
            ParquetFormat::default().with_options(self.ctx.state().default_table_options().parquet),
        ))
        .with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(schema);
        let table =
            ListingTable::try_new(config).map_err(|e| diagnostics::execution_error(context, e))?;
        self.ctx
            .register_table(name, std::sync::Arc::new(table))
            .map_err(Error::unexpected)?;
        Ok(())
    }

    /// True when SQL runs on a Ballista cluster.
    pub fn is_distributed(&self) -> bool {
        self.kind.is_distributed()
    }

    /// Sets the folder on shared storage where a cluster writes step results.
    pub fn set_work(&mut self, work: Location) {
        self.register_store(&work);
        self.work = Some(work);
    }

    /// The work folder, if any.
    pub fn work(&self) -> Option<&Location> {
        self.work.as_ref()
    }

    fn work_dir(&self, name: &str) -> Result<Location> {
        let work = self.work.as_ref().ok_or_else(|| {
            Error::internal("no work folder is set for the Ballista engine".to_string())
        })?;
        work.child(&format!("{}/", name))
    }

    /// Registers rows computed in this process as table `name`: in memory on the local
    /// engine; on a cluster, written as one Parquet file under the work folder (executors
    /// cannot read this process's memory).
    pub async fn register_batches(
        &self,
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<()> {
        let _ = self.ctx.deregister_table(name);
        if !self.is_distributed() {
            // Spread the batches over partitions so later steps scan them in parallel.
            let n = self.ctx.copied_config().target_partitions().max(1);
            let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
            let mut p = 0;
            for b in batches {
                let step = b.num_rows().div_ceil(n).max(1);
                let mut off = 0;
                while off < b.num_rows() {
                    let len = step.min(b.num_rows() - off);
                    parts[p % n].push(b.slice(off, len));
                    off += len;
                    p += 1;
                }
            }
            let table = MemTable::try_new(schema, parts).map_err(Error::unexpected)?;
            self.ctx
                .register_table(name, Arc::new(table))
                .map_err(|e| Error::internal(format!("table `{name}`: {e}")))?;
            return Ok(());
        }
        let dir = self.work_dir(name)?;
        let file = dir.child("part-0.parquet")?;
        let stream = crate::storage::write::in_memory(batches);
        crate::storage::write::write_parquet(&file, schema.clone(), stream).await?;
        self.register_listing(name, &dir, schema).await
    }

    /// On a cluster: fails with a job error naming `step` when `plan` reads a table that lives
    /// only in this process's memory (executors cannot read it).
    pub fn check_remote(
        &self,
        step: &str,
        plan: &datafusion::logical_expr::LogicalPlan,
    ) -> Result<()> {
        use datafusion::common::tree_node::TreeNodeRecursion;
        if !self.is_distributed() {
            return Ok(());
        }
        let mut local: Vec<String> = Vec::new();
        let _ = plan.apply_with_subqueries(|node| {
            if let datafusion::logical_expr::LogicalPlan::TableScan(scan) = node {
                if let Ok(p) = datafusion::datasource::source_as_provider(&scan.source) {
                    if p.is::<MemTable>() {
                        local.push(scan.table_name.table().to_string());
                    }
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        if local.is_empty() {
            return Ok(());
        }
        local.sort();
        local.dedup();
        Err(Error::job_msg(
            Some(step),
            format!(
                "step `{step}` cannot run on the Ballista cluster ({}): it reads {}, held in this process's memory, which the executors cannot read",
                self.kind,
                local.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
            ),
            Some("a JSON source with bad_rows = \"skip\" is parsed line by line in this process: clean it upstream or use bad_rows = \"fail\" on a cluster, or run this job with --engine local".into()),
        ))
    }

    /// Runs `df` on the cluster, the executors writing its rows as Parquet under the work
    /// folder, and registers the result as table `name`. Returns the row count.
    pub async fn write_on_cluster(
        &self,
        name: &str,
        df: DataFrame,
        context: &str,
    ) -> Result<usize> {
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        self.write_on_cluster_as(name, df, context, schema).await
    }

    /// As [`Engine::write_on_cluster`], registering the result under `schema` (the same
    /// columns; a model step's fixed output schema, so later steps see what the local engine
    /// gives them, nullability included).
    pub async fn write_on_cluster_as(
        &self,
        name: &str,
        df: DataFrame,
        context: &str,
        schema: SchemaRef,
    ) -> Result<usize> {
        self.check_remote(name, df.logical_plan())?;
        let dir = self.work_dir(name)?;
        let _ = crate::storage::delete_prefix(&dir).await;
        let counts = df
            .write_parquet(
                dir.url.as_str(),
                datafusion::dataframe::DataFrameWriteOptions::new(),
                None,
            )
            .await
            .map_err(|e| diagnostics::execution_error(context, e))?;
        let rows = counts
            .iter()
            .filter(|b| b.num_columns() > 0)
            .map(|b| {
                datafusion::arrow::compute::cast(
                    b.column(0),
                    &datafusion::arrow::datatypes::DataType::UInt64,
                )
                .ok()
                .and_then(|a| {
                    a.as_any()
                        .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                        .map(|u| u.iter().flatten().sum::<u64>())
                })
                .unwrap_or(0)
            })
            .sum::<u64>() as usize;
        let _ = self.ctx.deregister_table(name);
        self.register_listing(name, &dir, schema).await?;
        Ok(rows)
    }

    async fn register_listing(&self, name: &str, dir: &Location, schema: SchemaRef) -> Result<()> {
        let url = ListingTableUrl::parse(dir.url.as_str())
            .map_err(|e| Error::internal(format!("table `{name}`: {e}")))?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(schema);
        let table = ListingTable::try_new(config)
            .map_err(|e| Error::internal(format!("table `{name}`: {e}")))?;
        self.ctx
            .register_table(name, Arc::new(table))
            .map_err(|e| Error::internal(format!("table `{name}`: {e}")))?;
        Ok(())
    }

    /// Removes the work folder (end of a run on a cluster).
    pub async fn clean_work(&self) {
        if let Some(w) = &self.work {
            if let Err(e) = crate::storage::delete_prefix(w).await {
                tracing::warn!(folder = %w.display(), "cannot remove the work folder: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size("512mb").unwrap(), 512 << 20);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("lots").is_err());
    }
}
