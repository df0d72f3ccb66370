//! Benchmark: the whole reference job (features, lifecycle, k-means, lookalike, export of one
//! MD5 file set per cluster and one for the lookalike audience) beside the DuckDB +
//! scikit-learn peer on the same files, alternating runs (A B A B ...), medians of wall time and
//! peak memory (maximum resident set size, from `/usr/bin/time`). Both include process start-up.
//!
//! ```sh
//! cargo build --release
//! python3 gen_reference_data.py --users 1000000 --out refdata     # the benchmark's generator
//! REFDATA=refdata PEER_DIR=/path/to/bench PEER_PYTHON=/path/to/python \
//!   cargo bench --bench reference_job
//! ```
//! `PEER_DIR` holds the peer's `anchor_duckdb_sklearn.py`. `RUNS` sets the runs per side
//! (default 3).

#[path = "support/mod.rs"]
mod support;

use std::process::Command;

use support::{env_or, measure, median};

fn main() {
    let (Ok(data), Ok(peer_dir)) = (std::env::var("REFDATA"), std::env::var("PEER_DIR")) else {
        eprintln!(
            "reference_job: set REFDATA and PEER_DIR (see the file header); nothing measured"
        );
        return;
    };
    let python = std::env::var("PEER_PYTHON").unwrap_or_else(|_| "python3".into());
    let runs = env_or("RUNS", 3);
    let root = env!("CARGO_MANIFEST_DIR");
    let ours_bin = format!("{root}/target/release/audiences");
    let tmp = tempfile::tempdir().unwrap();
    let mut ours = (Vec::new(), Vec::new());
    let mut peer = (Vec::new(), Vec::new());
    for i in 0..runs {
        let out = tmp.path().join(format!("ours{i}"));
        let (t, m) = measure(
            Command::new("/usr/bin/time")
                .args([
                    "-f",
                    "MAXRSS_KIB=%M",
                    &ours_bin,
                    "run",
                    "jobs/reference.toml",
                    "--param",
                ])
                .arg(format!("data={data}"))
                .arg("--output")
                .arg(&out)
                .current_dir(root)
                .env("RUST_LOG", "warn"),
        );
        ours.0.push(t);
        ours.1.push(m);
        let pout = tmp.path().join(format!("peer{i}"));
        let (t2, m2) = measure(
            Command::new("/usr/bin/time")
                .args(["-f", "MAXRSS_KIB=%M", &python])
                .arg(format!("{peer_dir}/anchor_duckdb_sklearn.py"))
                .args(["--data", &data, "--out"])
                .arg(&pout)
                .current_dir(&peer_dir),
        );
        peer.0.push(t2);
        peer.1.push(m2);
        eprintln!(
            "run {i}: audiences {t:.2} s {m:.2} GiB | duckdb + scikit-learn {t2:.2} s {m2:.2} GiB"
        );
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_dir_all(&pout);
    }
    let (ot, om, pt, pm) = (
        median(&mut ours.0),
        median(&mut ours.1),
        median(&mut peer.0),
        median(&mut peer.1),
    );
    println!("reference job end to end, {runs} alternating runs, medians:");
    println!("  audiences              {ot:.2} s  peak {om:.2} GiB");
    println!("  duckdb + scikit-learn  {pt:.2} s  peak {pm:.2} GiB");
    println!("  ratio (peer / audiences) {:.2}x", pt / ot);
}
