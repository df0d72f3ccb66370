//! Shared by the benchmarks that time whole processes.

use std::process::Command;
use std::time::Instant;

/// Runs `cmd` (wrapped in `/usr/bin/time -f MAXRSS_KIB=%M`) and returns its wall time in
/// seconds and its peak resident memory in GiB.
pub fn measure(cmd: &mut Command) -> (f64, f64) {
    let start = Instant::now();
    let out = cmd.output().expect("command starts");
    let secs = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "benchmark command failed: {stderr}");
    let kib: f64 = stderr
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("MAXRSS_KIB="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    (secs, kib / 1024.0 / 1024.0)
}

/// The median (the upper one of an even count).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A number from the environment, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The demo data of `users` users: the folder `DATA` names (generated before with `audiences
/// demo --no-run`), else generated into `dir/data` by the release binary.
#[allow(dead_code)] // not every benchmark reads demo data
pub fn demo_data(root: &str, users: usize, dir: &std::path::Path) -> std::path::PathBuf {
    if let Ok(d) = std::env::var("DATA") {
        return std::path::PathBuf::from(d);
    }
    let data = dir.join("data");
    let st = Command::new(format!("{root}/target/release/audiences"))
        .args(["demo", "--no-run", "--users", &users.to_string(), "--dir"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(st.success());
    data
}
