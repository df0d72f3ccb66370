//! Sources read from, and exports written to, a real S3-protocol server on loopback.

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::common::*;
use crate::s3::TestS3;

/// Uploads a local folder under `prefix` through the S3 protocol.
pub async fn upload(s3: &TestS3, bucket: &str, local: &std::path::Path, prefix: &str) {
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

/// Runs the demo job for 2026-11-24 with its data at `s3://lake/demo` and its output under
/// `s3://ads/audiences`, plus `extra` arguments, with info logs.
pub async fn run_demo_on_s3(s3: &TestS3, extra: &[&str]) -> std::process::Output {
    let mut cmd = bin();
    cmd.env("RUST_LOG", "audiences=info");
    cmd.env_remove("AWS_SESSION_TOKEN")
        .envs(s3.env())
        .args([
            "run",
            "jobs/demo.toml",
            "--date",
            "2026-11-24",
            "--param",
            "data=s3://lake/demo",
            "--output",
            "s3://ads/audiences",
        ])
        .args(extra);
    run_blocking(cmd).await
}

pub async fn run_blocking(mut cmd: assert_cmd::Command) -> std::process::Output {
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

    let res = run_demo_on_s3(&s3, &[]).await;
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    assert!(
        text.contains("s3://ads/audiences/2026-11-24/runs/"),
        "{text}"
    );

    // The run is published through its pointer; its files are readable through the protocol
    // and equal a local run's.
    let client = s3.client("ads");
    let ptr = client
        .get(&ObjectPath::from("audiences/2026-11-24/current.json"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let ptr: serde_json::Value = serde_json::from_slice(&ptr).unwrap();
    let run = format!("audiences/{}", ptr["run"].as_str().unwrap());
    let listed: Vec<_> = client
        .list(Some(&ObjectPath::from(run.as_str())))
        .try_collect()
        .await
        .unwrap();
    let names: Vec<String> = listed.iter().map(|m| m.location.to_string()).collect();
    for f in [
        "user_features.parquet",
        "models/clusters.json",
        "segments.parquet",
        "manifest.json",
        "_SUCCESS",
    ] {
        assert!(names.contains(&format!("{run}/{f}")), "{f} in {names:?}");
    }
    let remote = client
        .get(&ObjectPath::from(format!("{run}/user_features.parquet")))
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
    let local = std::fs::read(published(&local_out).join("user_features.parquet")).unwrap();
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

async fn bucket_snapshot(
    client: &dyn object_store::ObjectStore,
    prefix: &str,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let listed: Vec<_> = client
        .list(Some(&ObjectPath::from(prefix)))
        .try_collect()
        .await
        .unwrap();
    let mut out = std::collections::BTreeMap::new();
    for m in listed {
        let bytes = client
            .get(&m.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        out.insert(m.location.to_string(), bytes.to_vec());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publication_and_lock_on_s3() {
    let s3 = TestS3::start(&["ads"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let job = crate::publication::growing_job(tmp.path(), 12000, "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("min_size = 1", "min_size = 1\nmax_rows_per_file = 20");
    write(&job, &text);
    let run = |base: &str| {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("audiences"));
        cmd.current_dir(repo())
            .env("RUST_LOG", "audiences=warn")
            .env_remove("AWS_SESSION_TOKEN")
            .envs(s3.env())
            .arg("run")
            .arg(&job)
            .args(["--date", "2026-11-20", "-p", base, "--output", "s3://ads/g"]);
        cmd
    };
    let res = tokio::task::spawn_blocking({
        let mut c = run("base=20000");
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    assert!(res.status.success(), "{}", output_text(&res));
    let client = s3.client("ads");
    let good = bucket_snapshot(&client, "g/2026-11-20").await;
    assert!(good.contains_key("g/2026-11-20/current.json"));

    // Kill a second run while it writes segment files: the publication stays as it was.
    let mut child = run("base=20100")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut killed = false;
    for _ in 0..6000 {
        let now: Vec<_> = client
            .list(Some(&ObjectPath::from("g/2026-11-20/runs")))
            .try_collect()
            .await
            .unwrap();
        if now.iter().any(|m| {
            !good.contains_key(m.location.as_ref()) && m.location.as_ref().contains("/tencent_ads/")
        }) {
            child.kill().unwrap();
            killed = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    child.wait().unwrap();
    assert!(killed, "the run was killed while writing segment files");
    let after = bucket_snapshot(&client, "g/2026-11-20").await;
    for (k, v) in &good {
        assert_eq!(after.get(k), Some(v), "{k} changed");
    }
    assert!(
        after.contains_key("g/2026-11-20/_lock.json"),
        "the killed run's lock is left"
    );

    // A live holder of the lock (this process): exit 75, naming it.
    let host = sysinfo::System::host_name().unwrap_or_else(|| "unknown-host".into());
    let theirs = format!(
        r#"{{"host": "{host}", "pid": {}, "started_at": "2026-11-26T00:00:00Z", "run_id": "x"}}"#,
        std::process::id()
    );
    client
        .put(
            &ObjectPath::from("g/2026-11-20/_lock.json"),
            PutPayload::from(theirs.into_bytes()),
        )
        .await
        .unwrap();
    let res = tokio::task::spawn_blocking({
        let mut c = run("base=20100");
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(75), "{text}");
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );

    // The holder goes away: the next run takes the stale lock over and publishes.
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    let gone = format!(
        r#"{{"host": "{host}", "pid": {pid}, "started_at": "2026-11-26T00:00:00Z", "run_id": "x"}}"#
    );
    client
        .put(
            &ObjectPath::from("g/2026-11-20/_lock.json"),
            PutPayload::from(gone.into_bytes()),
        )
        .await
        .unwrap();
    let res = tokio::task::spawn_blocking({
        let mut c = run("base=20100");
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    assert!(res.status.success(), "{}", output_text(&res));
    let ptr = client
        .get(&ObjectPath::from("g/2026-11-20/current.json"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_ne!(
        ptr.to_vec(),
        good["g/2026-11-20/current.json"],
        "republished"
    );
    let left: Vec<_> = client
        .list(Some(&ObjectPath::from("g/2026-11-20/_lock.json")))
        .try_collect()
        .await
        .unwrap();
    assert!(left.is_empty(), "lock released");
}

/// Storage failures that a retry cannot fix are not "retry later": credentials the store
/// refuses exit 77, an output that cannot be created exits 73.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_exit_77_and_an_output_that_cannot_be_created_73() {
    let s3 = TestS3::start(&["lake"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 200);
    upload(&s3, "lake", &data, "demo").await;
    let mut cmd = bin();
    cmd.env_remove("AWS_SESSION_TOKEN")
        .envs(s3.env())
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .args(["run", "jobs/demo.toml", "--date", "2026-11-24"])
        .args(["--param", "data=s3://lake/demo", "--output"])
        .arg(tmp.path().join("out"));
    let res = run_blocking(cmd).await;
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(77), "{text}");
    assert!(text.contains("permission denied"), "{text}");
    assert!(!text.contains("retry later"), "{text}");

    // The output folder would be below a file.
    std::fs::write(tmp.path().join("blocker"), "a file, not a folder").unwrap();
    let mut cmd = bin();
    cmd.args(["run", "jobs/demo.toml", "--date", "2026-11-24", "--param"])
        .arg(format!("data={}", data.display()))
        .arg("--output")
        .arg(tmp.path().join("blocker/out"));
    let res = run_blocking(cmd).await;
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(73), "{text}");
    assert!(text.contains("cannot create output"), "{text}");
    assert!(text.contains("caused by:"), "the cause is printed: {text}");
}
