//! `audiences demo`: generate the demo dataset and run `jobs/demo.toml` on it.

use std::path::PathBuf;

use clap::Args;

use super::out::{out, outln};

use crate::demo::{generate, DemoConfig};
use crate::error::{Error, Result};
use crate::pipeline::RunOptions;

/// The demo job and its SQL, embedded so `demo` works from any folder. When `jobs/demo.toml`
/// exists in the current folder (a checkout), that copy is used instead, so edits show up.
const EMBEDDED: &[(&str, &str)] = &[
    ("jobs/demo.toml", include_str!("../../jobs/demo.toml")),
    (
        "sql/demo/orders_daily.sql",
        include_str!("../../sql/demo/orders_daily.sql"),
    ),
    (
        "sql/demo/events_daily.sql",
        include_str!("../../sql/demo/events_daily.sql"),
    ),
    (
        "sql/demo/referrals_daily.sql",
        include_str!("../../sql/demo/referrals_daily.sql"),
    ),
    (
        "sql/demo/orders_90d.sql",
        include_str!("../../sql/demo/orders_90d.sql"),
    ),
    (
        "sql/demo/orders_30d.sql",
        include_str!("../../sql/demo/orders_30d.sql"),
    ),
    (
        "sql/demo/order_mix_90d.sql",
        include_str!("../../sql/demo/order_mix_90d.sql"),
    ),
    (
        "sql/demo/events_90d.sql",
        include_str!("../../sql/demo/events_90d.sql"),
    ),
    (
        "sql/demo/events_30d.sql",
        include_str!("../../sql/demo/events_30d.sql"),
    ),
    (
        "sql/demo/reach_90d.sql",
        include_str!("../../sql/demo/reach_90d.sql"),
    ),
    (
        "sql/demo/lifecycle.sql",
        include_str!("../../sql/demo/lifecycle.sql"),
    ),
    (
        "sql/demo/user_features.sql",
        include_str!("../../sql/demo/user_features.sql"),
    ),
    (
        "sql/demo/customer_purchases.sql",
        include_str!("../../sql/demo/customer_purchases.sql"),
    ),
    (
        "sql/demo/customer_summary.sql",
        include_str!("../../sql/demo/customer_summary.sql"),
    ),
    (
        "sql/demo/outcome.sql",
        include_str!("../../sql/demo/outcome.sql"),
    ),
    (
        "sql/lifecycle/stages.sql",
        include_str!("../../sql/lifecycle/stages.sql"),
    ),
    (
        "sql/lifecycle/moves.sql",
        include_str!("../../sql/lifecycle/moves.sql"),
    ),
    (
        "sql/lifecycle/transitions.sql",
        include_str!("../../sql/lifecycle/transitions.sql"),
    ),
    (
        "sql/lifecycle/customer_summary.sql",
        include_str!("../../sql/lifecycle/customer_summary.sql"),
    ),
];

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of users to generate.
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    /// Folder for the generated data.
    #[arg(long, default_value = "data/demo")]
    dir: PathBuf,
    /// Output folder (default: the job's, `out/demo`; the run is published under `<date>/`).
    #[arg(long, value_name = "URL")]
    output: Option<String>,
    /// Random seed of the generator.
    #[arg(long, default_value_t = 20261124)]
    seed: u64,
    /// Only generate the data; do not run the job.
    #[arg(long)]
    no_run: bool,
    /// Where the SQL runs: `local`, `standalone` or `ballista://HOST:PORT`.
    #[arg(long, value_name = "ENGINE", env = "AUDIENCES_ENGINE")]
    engine: Option<String>,
}

/// The as-of date of the demo data: the data covers the 180 days before it.
pub const DEMO_AS_OF: &str = "2026-11-24";

/// Generates and runs.
pub async fn execute(args: DemoArgs) -> Result<()> {
    let as_of = crate::job::params::parse_date(DEMO_AS_OF).map_err(Error::internal)?;
    let cfg = DemoConfig {
        users: args.users,
        dir: args.dir.clone(),
        as_of,
        seed: args.seed,
    };
    let kind = match &args.engine {
        Some(e) => Some(
            crate::engine::EngineKind::parse(e)
                .map_err(|m| Error::Usage(format!("--engine: {m}")))?,
        ),
        None => None,
    };
    let t = std::time::Instant::now();
    let stats = tokio::task::spawn_blocking(move || generate(&cfg))
        .await
        .map_err(|e| Error::internal(format!("generator failed: {e}")))??;
    outln!(
        "generated {} users, {} orders, {} social events in {:.1} s under {}",
        stats.users,
        stats.orders,
        stats.events,
        t.elapsed().as_secs_f64(),
        args.dir.display()
    );
    if args.no_run {
        return Ok(());
    }
    let job_path = if PathBuf::from("jobs/demo.toml").exists() {
        PathBuf::from("jobs/demo.toml")
    } else {
        // Outside a checkout: write the embedded job next to the data.
        let root = args.dir.join("job");
        for (rel, text) in EMBEDDED {
            let p = root.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&p, text)?;
        }
        root.join("jobs/demo.toml")
    };
    let job = crate::job::Job::load(&job_path)?;
    let data = std::path::absolute(&args.dir)?;
    let opts = RunOptions {
        date: Some(as_of),
        params: vec![format!("data={}", data.display())],
        output: args.output,
        progress: true,
        engine: crate::engine::EngineConfig {
            kind,
            ..Default::default()
        },
        ..Default::default()
    };
    let report = crate::pipeline::run(&job, &opts).await?;
    out!("{}", crate::summary::render(&report));
    Ok(())
}
