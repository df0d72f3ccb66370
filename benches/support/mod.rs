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
