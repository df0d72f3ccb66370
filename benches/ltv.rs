//! Benchmark: lifetime value for every customer of the reference data (about 1,000,000), from
//! orders: the shipped `customer_summary.sql` plus a `kind = "ltv"` step (BG/NBD + Gamma-Gamma
//! fit, then predictions and deciles for every customer), in the release binary; beside the
//! Python `lifetimes` package fitting and predicting on the same summary table.
//!
//! ```sh
//! cargo build --release
//! REFDATA=refdata PEER_PYTHON=/path/to/python-with-lifetimes cargo bench --bench ltv
//! ```
//! Our time is the whole process (start-up, reading 10 M orders, the summary SQL, fit, predict,
//! writing the table) and the ltv step alone (from the manifest); the peer's is `lifetimes`'
//! fit + predict on the summary our run wrote (reading it not timed). `RUNS` (default 3).

#[path = "support/mod.rs"]
mod support;

use std::process::Command;

use support::{env_or, measure, median};

fn main() {
    let Ok(data) = std::env::var("REFDATA") else {
        eprintln!("ltv: set REFDATA (see the file header); nothing measured");
        return;
    };
    let python = std::env::var("PEER_PYTHON").ok();
    let runs = env_or("RUNS", 3);
    let root = env!("CARGO_MANIFEST_DIR");
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("ltv.toml");
    std::fs::write(
        &job,
        format!(
            r#"name = "ltv_bench"
[params]
as_of = {{ type = "date", default = 2024-07-01 }}
unit_days = {{ type = "float", default = 7.0 }}
[sources]
orders = {{ url = "{data}/orders/", format = "parquet" }}
[[step]]
name = "customer_summary"
sql = "{root}/sql/lifecycle/customer_summary.sql"
[[export]]
table = "customer_summary"
to = "summary.parquet"
[[step]]
name = "ltv"
kind = "ltv"
input = "customer_summary"
horizon = 26
[[export]]
table = "ltv"
to = "ltv.parquet"
"#
        ),
    )
    .unwrap();
    let peer = r#"
import sys, time, pyarrow.parquet as pq
from lifetimes import BetaGeoFitter, GammaGammaFitter
df = pq.read_table(sys.argv[1]).to_pandas()
t = time.time()
bg = BetaGeoFitter(penalizer_coef=0.0).fit(df["frequency"], df["recency"], df["age"])
rep = df[(df["frequency"] > 0) & (df["monetary"] > 0)]
gg = GammaGammaFitter(penalizer_coef=0.0).fit(rep["frequency"], rep["monetary"])
e = bg.conditional_expected_number_of_purchases_up_to_time(26, df["frequency"], df["recency"], df["age"])
s = gg.conditional_expected_average_profit(df["frequency"], df["monetary"])
print("PEER_SECONDS=%.3f" % (time.time() - t), bg.params_.to_dict(), gg.params_.to_dict(), file=sys.stderr)
"#;
    let (mut ours, mut step, mut mem, mut theirs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let out = tmp.path().join(format!("out{i}"));
        let (t, m) = measure(
            Command::new("/usr/bin/time")
                .args(["-f", "MAXRSS_KIB=%M"])
                .arg(format!("{root}/target/release/audiences"))
                .arg("run")
                .arg(&job)
                .arg("--output")
                .arg(&out)
                .env("RUST_LOG", "warn"),
        );
        let ptr: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("2024-07-01/current.json")).unwrap())
                .unwrap();
        let run = out.join(ptr["run"].as_str().unwrap());
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
        let ltv_s = manifest["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "ltv")
            .unwrap()["seconds"]
            .as_f64()
            .unwrap();
        let model: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("models/ltv.json")).unwrap()).unwrap();
        eprintln!(
            "run {i}: audiences {t:.2} s (ltv step {ltv_s:.2} s), {m:.2} GiB; {}",
            model["bgnbd"]
        );
        ours.push(t);
        step.push(ltv_s);
        mem.push(m);
        if let Some(py) = &python {
            let res = Command::new(py)
                .args(["-c", peer])
                .arg(run.join("summary.parquet"))
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&res.stderr);
            assert!(res.status.success(), "{err}");
            let s: f64 = err
                .split_whitespace()
                .find_map(|w| w.strip_prefix("PEER_SECONDS="))
                .and_then(|v| v.parse().ok())
                .unwrap();
            eprintln!("        lifetimes fit + predict {s:.2} s; {}", err.trim());
            theirs.push(s);
        }
        let _ = std::fs::remove_dir_all(&out);
    }
    println!(
        "ltv over the reference orders, {runs} runs, medians: whole run {:.2} s, ltv step {:.2} s, peak {:.2} GiB",
        median(&mut ours),
        median(&mut step),
        median(&mut mem)
    );
    if !theirs.is_empty() {
        println!(
            "  lifetimes fit + predict on the same summary: {:.2} s",
            median(&mut theirs)
        );
    }
}
