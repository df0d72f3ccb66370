//! Benchmark: the reference job's feature steps at scale, beside DuckDB running the peers' SQL
//! on the same files, alternating runs (A B A B ...), reporting medians of wall time and peak
//! memory (maximum resident set size, from `/usr/bin/time`).
//!
//! Needs a release build of `audiences`, the reference data, and a Python with `duckdb`:
//!
//! ```sh
//! cargo build --release
//! python3 gen_reference_data.py --users 1000000 --out refdata     # the benchmark's generator
//! REFDATA=refdata PEER_SQL_DIR=/path/to/bench PEER_PYTHON=/path/to/python \
//!   cargo bench --bench reference_features
//! ```
//!
//! `PEER_SQL_DIR` is the folder holding the peers' `bench_common.py` and `sql/`; the DuckDB side
//! renders their SQL with it and materialises `user_features` as a temp table (what their
//! `sql_features` stage does, minus the model matrix). Our side runs
//! `audiences preview jobs/reference.toml --step user_features --limit 1`: the cleaned orders,
//! top categories and features steps, materialised. Both figures include process start-up.
//! `RUNS` sets the number of runs per side (default 5).

#[path = "support/mod.rs"]
mod support;

use std::process::Command;

use support::{env_or, measure, median};

fn main() {
    let (Ok(data), Ok(peer_dir)) = (std::env::var("REFDATA"), std::env::var("PEER_SQL_DIR")) else {
        eprintln!("reference_features: set REFDATA and PEER_SQL_DIR (see the file header); nothing measured");
        return;
    };
    let python = std::env::var("PEER_PYTHON").unwrap_or_else(|_| "python3".into());
    let runs = env_or("RUNS", 5);
    let root = env!("CARGO_MANIFEST_DIR");
    let ours_bin = format!("{root}/target/release/audiences");
    let duck_script = format!(
        "import sys, duckdb; sys.path.insert(0, {peer_dir:?}); import bench_common as bc\n\
         con = duckdb.connect(); con.execute('SET threads=2'); con.execute('SET preserve_insertion_order=false')\n\
         d = {data:?}\n\
         con.execute(f\"CREATE VIEW users AS SELECT * FROM read_parquet('{{d}}/users.parquet')\")\n\
         con.execute(f\"CREATE VIEW orders AS SELECT * FROM read_parquet('{{d}}/orders/*.parquet')\")\n\
         con.execute(f\"CREATE VIEW social_events AS SELECT * FROM read_parquet('{{d}}/social_events/*.parquet')\")\n\
         con.execute('CREATE TEMP TABLE user_features AS ' + bc.render_sql('10_user_features', 'duckdb'))\n\
         print(con.sql('SELECT COUNT(*) FROM user_features').fetchall())\n"
    );
    let mut ours = (Vec::new(), Vec::new());
    let mut duck = (Vec::new(), Vec::new());
    for i in 0..runs {
        let (t, m) = measure(
            Command::new("/usr/bin/time")
                .args([
                    "-f",
                    "MAXRSS_KIB=%M",
                    &ours_bin,
                    "preview",
                    "jobs/reference.toml",
                    "--step",
                    "user_features",
                    "--limit",
                    "1",
                    "--param",
                ])
                .arg(format!("data={data}"))
                .current_dir(root)
                .env("RUST_LOG", "warn"),
        );
        ours.0.push(t);
        ours.1.push(m);
        let (t2, m2) = measure(Command::new("/usr/bin/time").args([
            "-f",
            "MAXRSS_KIB=%M",
            &python,
            "-c",
            &duck_script,
        ]));
        duck.0.push(t2);
        duck.1.push(m2);
        eprintln!("run {i}: audiences {t:.2} s {m:.2} GiB | duckdb {t2:.2} s {m2:.2} GiB");
    }
    let (ot, om, dt, dm) = (
        median(&mut ours.0),
        median(&mut ours.1),
        median(&mut duck.0),
        median(&mut duck.1),
    );
    println!("reference features, {runs} alternating runs, medians:");
    println!("  audiences  {ot:.2} s  peak {om:.2} GiB");
    println!("  duckdb     {dt:.2} s  peak {dm:.2} GiB");
    println!("  ratio (duckdb / audiences) {:.2}x", dt / ot);
}
