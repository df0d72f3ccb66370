//! The SQL engine: one DataFusion session per run, with a bounded memory pool that spills to
//! local disk, the job's sources registered as tables, and each step's result held as a table
//! that later steps read by name.

pub mod cleaning;
pub mod diagnostics;
pub mod incremental;
pub mod sources;
pub mod steps;

use std::collections::HashSet;
use std::path::PathBuf;

use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::{Error, Result};
use crate::storage::Location;

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
    stores: HashSet<String>,
}

impl Engine {
    /// Builds a session with a bounded, spilling memory pool.
    pub fn new(cfg: &EngineConfig) -> Result<Engine> {
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
        let mut config = SessionConfig::new()
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
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        Ok(Engine {
            ctx,
            memory_limit,
            stores: HashSet::new(),
        })
    }

    /// Makes the store behind `loc` known to the SQL engine (once per store).
    pub fn register_store(&mut self, loc: &Location) {
        let key = loc.store_url.to_string();
        if self.stores.insert(key) {
            self.ctx
                .register_object_store(&loc.store_url, loc.store.clone());
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
