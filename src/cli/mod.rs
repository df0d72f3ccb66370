//! Command-line interface: one file per command. Raw arguments are parsed by clap, then turned
//! into the library's option types; errors become one paragraph on stderr and a sysexits code.

mod check;
mod demo;
mod measure;
mod out;
mod plan;
mod preview;
mod run;
mod sql;
mod status;
mod verify;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::{parse_size, EngineConfig};
use crate::error::{Error, ExitCode, Result};
use crate::pipeline::RunOptions;

/// Batch audience segmentation: SQL steps over object storage, segments and exports.
#[derive(Debug, Parser)]
#[command(name = "audiences", version, about, long_about = None, after_help = "Examples:\n  audiences demo\n  audiences run jobs/demo.toml --date 2026-11-24\n  audiences check jobs/demo.toml\n\nExit codes: 0 ok, 64 bad command line, 78 job or SQL error, 65 bad data,\n66 source missing, 75 temporary failure (retry), 1 other.")]
pub struct Cli {
    /// Log format on stderr: `text` for people, `json` for one JSON event per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every step and export of a job.
    #[command(
        after_help = "Example:\n  audiences run jobs/demo.toml --date 2026-11-24 --param brand=B07 --output out/try"
    )]
    Run(run::RunArgs),
    /// Validate a job: parse it and plan every SQL step against the real source schemas, without running.
    #[command(after_help = "Example:\n  audiences check jobs/demo.toml --date 2026-11-24")]
    Check(check::CheckArgs),
    /// Query a job's sources and steps interactively (or run one query with -e).
    #[command(
        after_help = "Example:\n  audiences sql jobs/demo.toml -e \"SELECT COUNT(*) FROM user_features\""
    )]
    Sql(sql::SqlArgs),
    /// Run a job up to one step and print that step's schema and first rows.
    #[command(
        after_help = "Example:\n  audiences preview jobs/demo.toml --step user_features --limit 5"
    )]
    Preview(preview::PreviewArgs),
    /// Measure a published run's segments against campaign results: lift of target over control.
    #[command(
        after_help = "Example:\n  audiences measure jobs/demo.toml --run 2026-11-24 --results data/campaign/results.parquet"
    )]
    Measure(measure::MeasureArgs),
    /// Before a campaign: per segment, the baseline from the job's own history, the smallest
    /// lift its holdout can detect, and the holdout share that detects a target lift.
    #[command(
        after_help = "Example:\n  audiences plan jobs/demo.toml --date 2026-11-24 --mde 0.5"
    )]
    Plan(plan::PlanArgs),
    /// List the recent runs of a job: date, run id, outcome, duration, segment sizes.
    #[command(after_help = "Example:\n  audiences status jobs/demo.toml --limit 10")]
    Status(status::StatusArgs),
    /// Check a published run before uploading it: every file against the manifest (size,
    /// SHA-256, rows) and its platform's format.
    #[command(after_help = "Example:\n  audiences verify out/demo/2026-11-24")]
    Verify(verify::VerifyArgs),
    /// Generate a deterministic demo dataset and run jobs/demo.toml on it.
    #[command(after_help = "Example:\n  audiences demo --users 100000 --dir data/demo")]
    Demo(demo::DemoArgs),
}

/// Arguments shared by every command that loads a job.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// The job file (TOML).
    #[arg(value_name = "JOB")]
    pub job: PathBuf,
    /// Sets the `as_of` date param (YYYY-MM-DD).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = crate::job::params::parse_date)]
    pub date: Option<chrono::NaiveDate>,
    /// Sets a param, parsed by its declared type; repeat for several.
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Memory budget of the SQL engine (e.g. 8GiB); past it, operators spill to disk. Default: 60% of RAM.
    #[arg(long, value_name = "SIZE", env = "AUDIENCES_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,
    /// Folder for spill files (default: the system temp folder).
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// State folder (path or URL): models and incremental days kept between runs; overrides
    /// the job's `state`.
    #[arg(long, value_name = "URL")]
    pub state: Option<String>,
    /// Where the SQL runs: `local` (in this process), `standalone` (a Ballista scheduler and
    /// executor inside this process) or `ballista://HOST:PORT`; overrides the job's `engine`.
    #[arg(long, value_name = "ENGINE", env = "AUDIENCES_ENGINE")]
    pub engine: Option<String>,
}

impl JobArgs {
    /// Converts to run options.
    pub fn options(&self) -> Result<RunOptions> {
        let memory_limit = match &self.memory_limit {
            Some(s) => {
                Some(parse_size(s).map_err(|e| Error::Usage(format!("--memory-limit: {e}")))?)
            }
            None => None,
        };
        let kind = match &self.engine {
            Some(e) => Some(
                crate::engine::EngineKind::parse(e)
                    .map_err(|m| Error::Usage(format!("--engine: {m}")))?,
            ),
            None => None,
        };
        Ok(RunOptions {
            date: self.date,
            params: self.params.clone(),
            output: None,
            engine: EngineConfig {
                memory_limit,
                spill_dir: self.spill_dir.clone(),
                target_partitions: None,
                settings: vec![],
                kind,
            },
            progress: true,
            full_refresh: false,
            refit: false,
            // Incremental steps keep state only in `run`; elsewhere they are plain steps.
            no_state: true,
            state: self.state.clone(),
            clock: Default::default(),
        })
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("audiences=info,warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                ExitCode::Usage.code()
            } else {
                0
            };
            let _ = e.print();
            return code;
        }
    };
    init_logging(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::Internal.code();
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Run(a) => run::execute(a).await,
            Command::Check(a) => check::execute(a).await,
            Command::Sql(a) => sql::execute(a).await,
            Command::Preview(a) => preview::execute(a).await,
            Command::Demo(a) => demo::execute(a).await,
            Command::Status(a) => status::execute(a).await,
            Command::Measure(a) => measure::execute(a).await,
            Command::Plan(a) => plan::execute(a).await,
            Command::Verify(a) => verify::execute(a).await,
        }
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            let code = e.exit_code();
            tracing::debug!(exit_code = code.code(), "run failed");
            eprintln!("error: {}", crate::error::with_causes(&e));
            code.code()
        }
    }
}

/// Loads a job file, turning a missing file into a usage error.
pub fn load_job(path: &std::path::Path) -> Result<crate::job::Job> {
    if !path.exists() {
        return Err(Error::Usage(format!(
            "job file {} does not exist\n  hint: job files live in jobs/, e.g. jobs/demo.toml",
            path.display()
        )));
    }
    crate::job::Job::load(path)
}
