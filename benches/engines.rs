//! Benchmark: the demo job on the local engine against the same job on Ballista's standalone
//! cluster (a scheduler and an executor inside the process; step results written by the
//! executor as Parquet and read back, query results fetched over Arrow Flight), in the release
//! binary. With `SCHEDULER=host:port` a third engine is timed: a running Ballista cluster.
//!
//! ```sh
//! cargo build --release
//! USERS=1000000 cargo bench --bench engines
//! ```
//! `USERS` (default 1,000,000) demo users are generated once into a temporary folder (or
//! `DATA` names a generated folder); `RUNS` (default 3) alternating runs of each engine;
//! medians of whole-process wall time and peak resident memory. Each run is a first run with
//! its own output and state, so no incremental state is reused.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use support::{demo_data, env_or, measure, median};

fn run(root: &str, data: &Path, out: &Path, engine: &str) -> (f64, f64) {
    let mut c = Command::new("/usr/bin/time");
    c.args(["-f", "MAXRSS_KIB=%M"])
        .arg(format!("{root}/target/release/audiences"))
        .env("RUST_LOG", "warn")
        .current_dir(root)
        .args(["run", "jobs/demo.toml", "--date", "2026-11-24", "--param"])
        .arg(format!("data={}", data.display()))
        .arg("--output")
        .arg(out)
        .args(["--engine", engine]);
    measure(&mut c)
}

fn main() {
    let users = env_or("USERS", 1_000_000);
    let runs = env_or("RUNS", 3);
    let root = env!("CARGO_MANIFEST_DIR");
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(root, users, tmp.path());
    let mut engines = vec!["local".to_string(), "standalone".to_string()];
    if let Ok(s) = std::env::var("SCHEDULER") {
        engines.push(format!("ballista://{s}"));
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); engines.len()];
    let mut mems: Vec<Vec<f64>> = vec![Vec::new(); engines.len()];
    for i in 0..runs {
        for (e, engine) in engines.iter().enumerate() {
            let out = tmp.path().join(format!("out-{e}-{i}"));
            let (t, m) = run(root, &data, &out, engine);
            eprintln!("run {i}: {engine:<28} {t:7.2} s  {m:.2} GiB");
            times[e].push(t);
            mems[e].push(m);
            let _ = std::fs::remove_dir_all(&out);
        }
    }
    let base = median(&mut times[0].clone());
    for (e, engine) in engines.iter().enumerate() {
        let t = median(&mut times[e]);
        let m = median(&mut mems[e]);
        println!(
            "{engine:<28} median {t:7.2} s  peak {m:.2} GiB  ({:.2}x the local engine's time)",
            t / base
        );
    }
}
