//! Benchmark: the demo job's cold incremental run (empty state, as_of 2026-11-23: all 90 days of the three daily
//! steps computed in one pass each, written as per-day state) against the same job written
//! without incremental steps, and a warm nightly run (one new day), in the release binary.
//!
//! ```sh
//! cargo build --release
//! USERS=100000 cargo bench --bench incremental
//! ```
//! `USERS` (default 100,000) demo users are generated once into a temporary folder; `RUNS`
//! (default 3) alternating runs of each; medians of whole-process wall time. The target: a cold
//! run at most 1.3× the job without incremental steps.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use support::{env_or, measure, median};

fn audiences(root: &str) -> Command {
    let mut c = Command::new("/usr/bin/time");
    c.args(["-f", "MAXRSS_KIB=%M"])
        .arg(format!("{root}/target/release/audiences"))
        .env("RUST_LOG", "warn");
    c
}

fn run(root: &str, job: &Path, data: &Path, out: &Path, date: &str) -> (f64, f64) {
    measure(
        audiences(root)
            .arg("run")
            .arg(job)
            .args(["--date", date, "--param"])
            .arg(format!("data={}", data.display()))
            .arg("--output")
            .arg(out),
    )
}

fn main() {
    let users = env_or("USERS", 100_000);
    let runs = env_or("RUNS", 3);
    let root = env!("CARGO_MANIFEST_DIR");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let st = Command::new(format!("{root}/target/release/audiences"))
        .args(["demo", "--no-run", "--users", &users.to_string(), "--dir"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(st.success());
    let sql = format!("{root}/sql/");
    let text = std::fs::read_to_string(format!("{root}/jobs/demo.toml"))
        .unwrap()
        .replace("\"../sql/", &format!("\"{sql}"));
    let incremental = tmp.path().join("incremental.toml");
    std::fs::write(&incremental, &text).unwrap();
    let plain = tmp.path().join("plain.toml");
    let plain_text: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("incremental = "))
        .collect();
    std::fs::write(&plain, plain_text.join("\n")).unwrap();

    let (mut cold, mut without, mut warm) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let out = tmp.path().join(format!("plain{i}"));
        let (t, m) = run(root, &plain, &data, &out, "2026-11-23");
        eprintln!("run {i}: without incremental steps {t:.2} s, {m:.2} GiB");
        without.push(t);
        let out = tmp.path().join(format!("inc{i}"));
        let (t, m) = run(root, &incremental, &data, &out, "2026-11-23");
        eprintln!("run {i}: cold incremental {t:.2} s, {m:.2} GiB");
        cold.push(t);
        let (t, m) = run(root, &incremental, &data, &out, "2026-11-24");
        eprintln!("run {i}: warm incremental (one new day) {t:.2} s, {m:.2} GiB");
        warm.push(t);
    }
    let (c, w, n) = (median(&mut cold), median(&mut warm), median(&mut without));
    println!(
        "demo job, {users} users, {runs} alternating runs, medians: without incremental steps {n:.2} s; cold incremental {c:.2} s ({:.2}x); nightly with one new day {w:.2} s ({:.2}x)",
        c / n,
        w / n
    );
}
