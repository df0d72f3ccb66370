//! The distributed path: the same job on Ballista's in-process standalone cluster (a real
//! scheduler and executor, talking gRPC and Arrow Flight on loopback) gives the same segment
//! files as the local engine; a step that cannot run on a cluster is refused by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;

/// The demo job with segment files written down to 10 users, so a small dataset exports them.
fn demo_job(dir: &Path) -> PathBuf {
    let sql = repo().join("sql");
    let text = std::fs::read_to_string(repo().join("jobs/demo.toml"))
        .unwrap()
        .replace("\"../sql/", &format!("\"{}/", sql.display()))
        .replace(
            "format = \"tencent_ads\"",
            "format = \"tencent_ads\"\nmin_size = 10",
        )
        .replace(
            "format = \"meta_custom_audience\"",
            "format = \"meta_custom_audience\"\nmin_size = 10",
        );
    let job = dir.join("demo.toml");
    write(&job, &text);
    job
}

/// Logged once when a run's SQL goes to a Ballista cluster.
const CLUSTER_LOG: &str = "SQL runs on a Ballista cluster";

fn run_demo(job: &Path, data: &Path, out: &Path, engine: &str) -> String {
    let res = bin()
        .arg("run")
        .arg(job)
        .args(["--date", "2026-11-24", "--param"])
        .arg(format!("data={}", data.display()))
        .arg("--output")
        .arg(out)
        .args(["--engine", engine])
        .env("RUST_LOG", "audiences=info")
        .output()
        .unwrap();
    let text = output_text(&res);
    assert!(res.status.success(), "engine {engine}: {text}");
    text
}

/// The published segment files, and the membership table they were cut from.
fn segment_files(run: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    snapshot(run)
        .into_iter()
        .filter(|(p, _)| {
            p.starts_with("tencent_ads")
                || p.starts_with("meta_custom_audience")
                || p == Path::new("segments.parquet")
        })
        .collect()
}

#[test]
fn standalone_cluster_gives_the_local_engines_segment_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 2000);
    let job = demo_job(tmp.path());
    let local = tmp.path().join("local");
    let cluster = tmp.path().join("cluster");
    let text = run_demo(&job, &data, &local, "local");
    assert!(!text.contains(CLUSTER_LOG), "{text}");
    let text = run_demo(&job, &data, &cluster, "standalone");
    assert!(
        text.contains(CLUSTER_LOG),
        "the run says it runs on a cluster: {text}"
    );
    let a = segment_files(&published(&local));
    let b = segment_files(&published(&cluster));
    for kind in ["tencent", "meta", "cluster_", "brand_lookalike_5pct"] {
        assert!(
            a.keys().any(|p| p.to_string_lossy().contains(kind)),
            "the demo publishes {kind} files: {:?}",
            a.keys().collect::<Vec<_>>()
        );
    }
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the same files"
    );
    for (p, bytes) in &a {
        assert!(
            bytes == &b[p],
            "{} differs between the local engine and the cluster",
            p.display()
        );
    }
    // Step results went to the work folder on shared storage, removed after the run.
    assert!(
        !cluster.join("_work").exists()
            || std::fs::read_dir(cluster.join("_work")).unwrap().count() == 0,
        "the work folder is cleaned up"
    );
    // The clusters agree too (the SQL assignment on the cluster equals the local one).
    let ca = read_parquet(&published(&local).join("user_features.parquet"));
    let cb = read_parquet(&published(&cluster).join("user_features.parquet"));
    assert_eq!(rows(&ca), rows(&cb));
    assert_eq!(ca, cb, "the feature table is the same on both engines");
}

#[test]
fn a_step_reading_a_table_held_in_memory_is_refused_on_a_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("in/events.json"),
        "{\"user_id\": \"u1\", \"n\": 1}\nnot json\n{\"user_id\": \"u2\", \"n\": 2}\n",
    );
    let job = tmp.path().join("jobs/j.toml");
    write(
        &job,
        r#"name = "j"
[sources.events]
url = "../in/events.json"
format = "json"
schema = "user_id string, n bigint"
bad_rows = "skip"

[[step]]
name = "totals"
query = "SELECT user_id, SUM(n) AS n FROM events GROUP BY user_id"

[[export]]
table = "totals"
to = "totals.csv"
format = "csv"
"#,
    );
    let res = bin()
        .arg("run")
        .arg(&job)
        .args(["--engine", "standalone"])
        .output()
        .unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(78), "{text}");
    assert!(text.contains("step `totals`"), "names the step: {text}");
    assert!(text.contains("`events`"), "names the table: {text}");
    assert!(text.contains("--engine local"), "says what to do: {text}");
    // The same job runs on the local engine.
    let res = bin().arg("run").arg(&job).output().unwrap();
    assert!(res.status.success(), "{}", output_text(&res));
}

#[test]
fn engine_values_are_checked() {
    let res = bin()
        .args(["check", "jobs/demo.toml", "--engine", "spark://x"])
        .output()
        .unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(64), "{text}");
    assert!(text.contains("ballista://HOST:PORT"), "{text}");

    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("j.toml");
    write(&job, "name = \"j\"\nengine = \"ballista://:80\"\n");
    let res = bin().arg("check").arg(&job).output().unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(78), "{text}");
    assert!(text.contains("j.toml:2"), "names the line: {text}");
}

#[test]
fn an_unreachable_scheduler_is_a_temporary_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 300);
    // Nothing listens on port 9 of loopback.
    let res = bin()
        .args(["run", "jobs/demo.toml", "--date", "2026-11-24", "--param"])
        .arg(format!("data={}", data.display()))
        .arg("--output")
        .arg(tmp.path().join("out"))
        .args(["--engine", "ballista://127.0.0.1:9"])
        .output()
        .unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(75), "{text}");
    assert!(text.contains("127.0.0.1:9"), "names the scheduler: {text}");
    // Nothing was published.
    assert!(!tmp.path().join("out/2026-11-24/current.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_cluster_reads_sources_from_s3_and_writes_step_results_there() {
    use futures::TryStreamExt;
    use object_store::path::Path as ObjectPath;
    use object_store::{ObjectStore, ObjectStoreExt};

    use crate::s3::TestS3;
    use crate::s3_storage::{run_demo_on_s3, upload};

    let s3 = TestS3::start(&["lake", "ads"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 800);
    upload(&s3, "lake", &data, "demo").await;
    let res = run_demo_on_s3(&s3, &["--engine", "standalone"]).await;
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    assert!(text.contains(CLUSTER_LOG), "{text}");
    assert!(
        text.contains("s3://ads/audiences/_work/"),
        "the executors write step results under the output on S3: {text}"
    );

    let client = s3.client("ads");
    let ptr = client
        .get(&ObjectPath::from("audiences/2026-11-24/current.json"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let ptr: serde_json::Value = serde_json::from_slice(&ptr).unwrap();
    let run = ptr["run"].as_str().unwrap();
    let features = client
        .head(&ObjectPath::from(format!(
            "audiences/{run}/user_features.parquet"
        )))
        .await
        .unwrap();
    assert!(features.size > 0);
    // The executors' step results lived under the output's work folder, removed at the end.
    let left: Vec<_> = client
        .list(Some(&ObjectPath::from("audiences/_work")))
        .try_collect()
        .await
        .unwrap();
    assert!(left.is_empty(), "work folder cleaned: {left:?}");
}
