//! Benchmark: segment files at scale. 10,000,000 users split into 20 segments (one per value of
//! a column), a 10% holdout, written as Tencent Ads MD5 files (HASH_IMEI, else HASH_OAID; zipped
//! parts of 1,000,000 lines). Reports the median wall time of the whole run, of the
//! segment-files stage (from the manifest), rows per second, and the peak memory.
//!
//! ```sh
//! cargo build --release
//! cargo bench --bench segment_export          # ROWS=10000000 RUNS=3 by default
//! ```
//! The identities are generated once into a temp folder (not timed). Each run is the release
//! binary under `/usr/bin/time`, so start-up and reading the Parquet input are included in the
//! wall time.

#[path = "support/mod.rs"]
mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::parquet::arrow::ArrowWriter;
use support::{env_or, measure, median};

fn generate(dir: &std::path::Path, rows: usize) {
    let file = std::fs::File::create(dir.join("ids.parquet")).unwrap();
    let mut w: Option<ArrowWriter<std::fs::File>> = None;
    let chunk = 1_000_000;
    for start in (0..rows).step_by(chunk) {
        let end = (start + chunk).min(rows);
        let ids: StringArray = (start..end).map(|i| Some(format!("u{i:09}"))).collect();
        // Four users in five have an IMEI (15 digits); the others an OAID.
        let imei: StringArray = (start..end)
            .map(|i| (i % 5 != 0).then(|| format!("86{:013}", i * 7919 % 10_000_000_000_000)))
            .collect();
        let oaid: StringArray = (start..end)
            .map(|i| {
                (i % 5 == 0).then(|| {
                    let h = format!(
                        "{:032x}",
                        (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
                    );
                    format!(
                        "{}-{}-{}-{}-{}",
                        &h[0..8],
                        &h[8..12],
                        &h[12..16],
                        &h[16..20],
                        &h[20..32]
                    )
                })
            })
            .collect();
        let seg: Int32Array = (start..end).map(|i| Some((i % 20) as i32)).collect();
        let batch = RecordBatch::try_from_iter(vec![
            ("user_id", Arc::new(ids) as ArrayRef),
            ("imei", Arc::new(imei) as ArrayRef),
            ("oaid", Arc::new(oaid) as ArrayRef),
            ("seg", Arc::new(seg) as ArrayRef),
        ])
        .unwrap();
        let w = w.get_or_insert_with(|| {
            ArrowWriter::try_new(file.try_clone().unwrap(), batch.schema(), None).unwrap()
        });
        w.write(&batch).unwrap();
    }
    w.unwrap().close().unwrap();
    std::fs::write(
        dir.join("export.toml"),
        r#"name = "export_bench"
[params]
as_of = { type = "date", default = 2026-11-24 }
[sources]
ids = { url = "ids.parquet", format = "parquet" }
[[segment]]
name = "seg"
from = "ids"
by = "seg"
[publish]
identities = "ids"
holdout = "10%"
salt = "bench"
[[export]]
segments = ["seg"]
format = "tencent_ads"
ids = [{ type = "HASH_IMEI", column = "imei" }, { type = "HASH_OAID", column = "oaid" }]
"#,
    )
    .unwrap();
}

fn main() {
    let rows = env_or("ROWS", 10_000_000);
    let runs = env_or("RUNS", 3);
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/audiences");
    assert!(
        bin.exists(),
        "build the release binary first: cargo build --release"
    );
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    generate(dir.path(), rows);
    eprintln!(
        "generated {rows} identities in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (mut wall, mut stage, mut mem) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..runs {
        let out = dir.path().join(format!("out{r}"));
        let (secs, gib) = measure(
            Command::new("/usr/bin/time")
                .args(["-f", "MAXRSS_KIB=%M"])
                .arg(&bin)
                .arg("run")
                .arg(dir.path().join("export.toml"))
                .arg("--output")
                .arg(&out)
                .env("RUST_LOG", "warn"),
        );
        let ptr: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("2026-11-24/current.json")).unwrap())
                .unwrap();
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join(ptr["run"].as_str().unwrap()).join("manifest.json")).unwrap(),
        )
        .unwrap();
        let files = m["stage_seconds"]["segment files"].as_f64().unwrap();
        let segs = m["stage_seconds"]["segments"].as_f64().unwrap();
        eprintln!(
            "run {r}: {secs:.2} s wall, segments {segs:.2} s, segment files {files:.2} s, peak {gib:.2} GiB"
        );
        wall.push(secs);
        stage.push(files);
        mem.push(gib);
        std::fs::remove_dir_all(&out).unwrap();
    }
    let files = median(&mut stage);
    println!(
        "segment export, {rows} users in 20 segments, 10% holdout, tencent_ads MD5 zipped: median wall {:.2} s, segment-files stage {files:.2} s = {:.2} M rows/s, peak memory {:.2} GiB",
        median(&mut wall),
        rows as f64 / files / 1e6,
        median(&mut mem)
    );
}
