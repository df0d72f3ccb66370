//! Sources read from, and exports written to, a real S3-protocol server on loopback.

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::common::*;
use crate::s3::TestS3;

/// Uploads a local folder under `prefix` through the S3 protocol.
async fn upload(s3: &TestS3, bucket: &str, local: &std::path::Path, prefix: &str) {
    let client = s3.client(bucket);
    let mut stack = vec![local.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(local)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                let bytes = std::fs::read(&p).unwrap();
                client
                    .put(
                        &ObjectPath::from(format!("{prefix}/{rel}")),
                        PutPayload::from(bytes),
                    )
                    .await
                    .unwrap();
            }
        }
    }
}

async fn run_blocking(mut cmd: assert_cmd::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_job_reads_and_writes_s3() {
    let s3 = TestS3::start(&["lake", "ads"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 800);
    upload(&s3, "lake", &data, "demo").await;

    let mut cmd = bin();
    cmd.env_remove("AWS_SESSION_TOKEN").envs(s3.env()).args([
        "run",
        "jobs/demo.toml",
        "--date",
        "2026-11-24",
        "--param",
        "data=s3://lake/demo",
        "--output",
        "s3://ads/runs/{as_of}",
    ]);
    let res = run_blocking(cmd).await;
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    assert!(text.contains("s3://ads/runs/2026-11-24"), "{text}");

    // The export is in the bucket, readable through the protocol, and equals a local run.
    let client = s3.client("ads");
    let listed: Vec<_> = client
        .list(Some(&ObjectPath::from("runs/2026-11-24")))
        .try_collect()
        .await
        .unwrap();
    let names: Vec<String> = listed.iter().map(|m| m.location.to_string()).collect();
    assert!(
        names.contains(&"runs/2026-11-24/user_features.parquet".to_string())
            && names.contains(&"runs/2026-11-24/models/clusters.json".to_string()),
        "{names:?}"
    );
    let remote = client
        .get(&ObjectPath::from("runs/2026-11-24/user_features.parquet"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();

    let local_out = tmp.path().join("local");
    let mut cmd = bin();
    cmd.args(["run", "jobs/demo.toml", "--date", "2026-11-24", "--param"])
        .arg(format!("data={}", data.display()))
        .arg("--output")
        .arg(&local_out);
    let res = run_blocking(cmd).await;
    assert!(res.status.success(), "{}", output_text(&res));
    let local = std::fs::read(local_out.join("user_features.parquet")).unwrap();
    assert!(
        remote.as_ref() == local.as_slice(),
        "same job, same bytes, whatever the storage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_s3_source_exits_66() {
    let s3 = TestS3::start(&["lake"]).await;
    let mut cmd = bin();
    cmd.env_remove("AWS_SESSION_TOKEN").envs(s3.env()).args([
        "run",
        "jobs/demo.toml",
        "--date",
        "2026-11-24",
        "--param",
        "data=s3://lake/nothing-here",
    ]);
    let res = run_blocking(cmd).await;
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(66), "{text}");
    assert!(text.contains("s3://lake/nothing-here/orders"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_storage_exits_75() {
    let mut s3 = TestS3::start(&["lake"]).await;
    let env = s3.env();
    s3.stop().await;
    let mut cmd = bin();
    cmd.env_remove("AWS_SESSION_TOKEN").envs(env).args([
        "run",
        "jobs/demo.toml",
        "--date",
        "2026-11-24",
        "--param",
        "data=s3://lake/demo",
    ]);
    let res = run_blocking(cmd).await;
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(75), "{text}");
    assert!(text.contains("orders"), "names the source: {text}");
}
