//! Benchmark: what a night costs. The demo job on `USERS` demo users (default 1,000,000), in the
//! release binary: a published run for 2026-11-23 (models fitted, state written), then for
//! 2026-11-24, alternating, in copies of that output folder:
//!
//! - **full**: `--full-refresh --refit` (every day of the window recomputed, every model fitted);
//! - **night**: the next night as cron runs it (one new day, the kept models applied);
//! - **refit night**: the weekly night that fits the models again (`--refit`, state reused).
//!
//! ```sh
//! cargo build --release
//! USERS=1000000 RUNS=3 cargo bench --bench nightly
//! ```
//! `DATA=folder` reuses demo data generated before (`audiences demo --no-run --users N --dir folder`).
//! Medians of whole-process wall time and peak resident memory.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use support::{demo_data, env_or, measure, median};

fn run(root: &str, job: &Path, data: &Path, out: &Path, date: &str, extra: &[&str]) -> (f64, f64) {
    measure(
        Command::new("/usr/bin/time")
            .args(["-f", "MAXRSS_KIB=%M"])
            .arg(format!("{root}/target/release/audiences"))
            .env("RUST_LOG", "warn")
            .arg("run")
            .arg(job)
            .args(["--date", date, "--param"])
            .arg(format!("data={}", data.display()))
            .arg("--output")
            .arg(out)
            .args(extra),
    )
}

fn copy(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

fn main() {
    let users = env_or("USERS", 1_000_000);
    let runs = env_or("RUNS", 3);
    let root = env!("CARGO_MANIFEST_DIR");
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(root, users, tmp.path());
    let text = std::fs::read_to_string(format!("{root}/jobs/demo.toml"))
        .unwrap()
        .replace("\"../sql/", &format!("\"{root}/sql/"));
    let job = tmp.path().join("demo.toml");
    std::fs::write(&job, text).unwrap();

    let base = tmp.path().join("base");
    let (t, m) = run(root, &job, &data, &base, "2026-11-23", &[]);
    eprintln!("published run for 2026-11-23 (models fitted): {t:.2} s, {m:.2} GiB");
    let mut rows: [(Vec<f64>, Vec<f64>); 3] = Default::default();
    let kinds: [(&str, &[&str]); 3] = [
        (
            "full (--full-refresh --refit)",
            &["--full-refresh", "--refit"],
        ),
        ("night (one new day, kept models)", &[]),
        ("refit night (--refit)", &["--refit"]),
    ];
    for i in 0..runs {
        for (k, (label, extra)) in kinds.iter().enumerate() {
            let out = tmp.path().join(format!("out{i}-{k}"));
            copy(&base, &out);
            let (t, m) = run(root, &job, &data, &out, "2026-11-24", extra);
            eprintln!("run {i}: {label} {t:.2} s, {m:.2} GiB");
            rows[k].0.push(t);
            rows[k].1.push(m);
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
    let full = median(&mut rows[0].0.clone());
    println!("demo job, {users} users, {runs} alternating runs each, medians for 2026-11-24:");
    for ((label, _), (t, m)) in kinds.iter().zip(rows.iter_mut()) {
        let (t, m) = (median(t), median(m));
        println!(
            "  {label:<36} {t:>7.2} s {m:>6.2} GiB  ({:.1}x faster than full)",
            full / t
        );
    }
}
