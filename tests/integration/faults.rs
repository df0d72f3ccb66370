//! Storage faults: runs publishing through a fault layer in front of the loopback S3-protocol
//! server either publish completely or exit 75 leaving the last publication as it was.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use sha2::Digest;

use crate::common::*;
use crate::s3::{Fault, Faults, TestS3};

/// Checks a publication is complete: the pointer's manifest checksum, and every segment file
/// and table export the manifest lists, with its size and SHA-256.
fn verify(p: &BTreeMap<String, Vec<u8>>) -> usize {
    let hex = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
    let ptr: serde_json::Value = serde_json::from_slice(&p["current.json"]).unwrap();
    let manifest = &p["manifest.json"];
    assert_eq!(ptr["manifest_sha256"].as_str().unwrap(), hex(manifest));
    assert!(p.contains_key("_SUCCESS"), "no _SUCCESS in {:?}", p.keys());
    let m: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    let mut checked = 0;
    let segments = m["exports"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|ex| ex["segments"].as_array().unwrap());
    for seg in segments {
        for set in seg["file_sets"].as_array().into_iter().flatten() {
            for f in set["files"].as_array().unwrap() {
                let path = f["path"].as_str().unwrap();
                let bytes = p
                    .get(path)
                    .unwrap_or_else(|| panic!("{path} listed but missing"));
                assert_eq!(bytes.len() as u64, f["bytes"].as_u64().unwrap(), "{path}");
                assert_eq!(hex(bytes), f["sha256"].as_str().unwrap(), "{path}");
                checked += 1;
            }
        }
    }
    for t in m["tables"].as_array().into_iter().flatten() {
        let path = t["path"].as_str().unwrap();
        assert_eq!(p[path].len() as u64, t["bytes"].as_u64().unwrap(), "{path}");
        assert_eq!(hex(&p[path]), t["sha256"].as_str().unwrap(), "{path}");
        checked += 1;
    }
    assert!(checked > 0, "nothing listed: {m}");
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_through_a_faulty_store_publish_completely_or_exit_75() {
    const RUNS: usize = 50;
    const RATE: f64 = 0.2;
    let faults = Faults::new(0.0, 20261202);
    let s3 = TestS3::start_with_faults(&["ads"], faults.clone()).await;
    let tmp = tempfile::tempdir().unwrap();
    let job = crate::publication::growing_job(tmp.path(), 3000, "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("min_size = 1", "min_size = 1\nmax_rows_per_file = 40");
    write(&job, &text);
    let out = s3.root().join("ads/g");
    let run = |base: usize| {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("audiences"));
        cmd.current_dir(repo())
            .env("RUST_LOG", "audiences=warn")
            .env_remove("AWS_SESSION_TOKEN")
            .envs(s3.env())
            .env("AUDIENCES_STORAGE_RETRIES", "3")
            .env("AUDIENCES_STORAGE_RETRY_TIMEOUT_SECS", "20")
            .arg("run")
            .arg(&job)
            .args(["--date", "2026-11-20", "-p"])
            .arg(format!("base={base}"))
            .args(["--output", "s3://ads/g"]);
        async move {
            tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap()
        }
    };
    let res = run(0).await;
    assert!(res.status.success(), "{}", output_text(&res));
    verify(&publication_of(&out, "2026-11-20").unwrap());

    faults.set_rate(RATE);
    let mut exits: BTreeMap<i32, usize> = BTreeMap::new();
    let mut verified = 0;
    for i in 1..=RUNS {
        let before = publication_of(&out, "2026-11-20").unwrap();
        let res = run(i * 7).await;
        let code = res.status.code().unwrap_or(-1);
        *exits.entry(code).or_default() += 1;
        let after = publication_of(&out, "2026-11-20").unwrap();
        match code {
            0 => {
                assert_ne!(
                    after["current.json"], before["current.json"],
                    "run {i} republished"
                );
                verify(&after);
                verified += 1;
            }
            75 => {
                assert!(
                    after == before,
                    "run {i} exited 75 but changed the publication"
                );
                let text = output_text(&res);
                assert!(
                    !text.contains("another run of this job and date is in progress"),
                    "run {i}: no other run was going on, so no lock may block it: {text}"
                );
            }
            _ => panic!("run {i} exited {code}: {}", output_text(&res)),
        }
    }
    // No lock or half-written state is left to block the next run.
    faults.set_rate(0.0);
    let res = run(1000).await;
    assert!(
        res.status.success(),
        "after the faults: {}",
        output_text(&res)
    );
    verify(&publication_of(&out, "2026-11-20").unwrap());

    let injected: Vec<String> = Fault::ALL
        .iter()
        .zip(&faults.injected)
        .map(|(k, n)| format!("{k:?} {}", n.load(Ordering::SeqCst)))
        .collect();
    println!(
        "storage faults: {RUNS} runs at {:.0}% faults, {} calls, {} faults injected ({}); {verified} publications verified; exits by code {exits:?}",
        RATE * 100.0,
        faults.calls.load(Ordering::SeqCst),
        faults.total(),
        injected.join(", ")
    );
    assert!(faults.total() > 0 && verified > 0, "{exits:?}");
}

/// A local store whose disk fills up: after `room` writes below the run folders, every write
/// fails as a full disk does (ENOSPC).
#[derive(Debug)]
struct FullDisk {
    inner: std::sync::Arc<dyn object_store::ObjectStore>,
    room: std::sync::Arc<std::sync::atomic::AtomicIsize>,
}

impl std::fmt::Display for FullDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FullDisk({})", self.inner)
    }
}

impl FullDisk {
    fn write(&self, location: &object_store::path::Path) -> object_store::Result<()> {
        if location.as_ref().contains("/runs/") && self.room.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(std::io::Error::from(std::io::ErrorKind::StorageFull)),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for FullDisk {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.write(location)?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.write(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.write(to)?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_disk_that_fills_up_exits_73_and_leaves_the_publication() {
    let tmp = tempfile::tempdir().unwrap();
    let job_file = crate::publication::growing_job(tmp.path(), 3000, "");
    let text = std::fs::read_to_string(&job_file)
        .unwrap()
        .replace("min_size = 1", "min_size = 1\nmax_rows_per_file = 40");
    write(&job_file, &text);
    let job = audiences::job::Job::load(&job_file).unwrap();
    let out = tmp.path().join("out");
    let opts = |base: usize| audiences::pipeline::RunOptions {
        date: audiences::job::params::parse_date("2026-11-20").ok(),
        params: vec![format!("base={base}")],
        output: Some(out.display().to_string()),
        ..Default::default()
    };
    audiences::pipeline::run(&job, &opts(0)).await.unwrap();
    let good = publication_of(&out, "2026-11-20").unwrap();
    verify(&good);

    for room in [0, 3, 7] {
        let left = std::sync::Arc::new(std::sync::atomic::AtomicIsize::new(room));
        let root = out.display().to_string();
        let l = left.clone();
        let layer = audiences::storage::retry::add_store_layer(std::sync::Arc::new(
            move |url: &url::Url, store| {
                if url.path().starts_with(&root) {
                    std::sync::Arc::new(FullDisk {
                        inner: store,
                        room: l.clone(),
                    }) as std::sync::Arc<dyn object_store::ObjectStore>
                } else {
                    store
                }
            },
        ));
        let err = audiences::pipeline::run(&job, &opts(100 + room as usize))
            .await
            .unwrap_err();
        drop(layer);
        let text = audiences::error::with_causes(&err);
        assert_eq!(err.exit_code().code(), 73, "room for {room} files: {text}");
        assert!(
            text.contains(out.to_str().unwrap()) && text.contains("not full"),
            "names the location and says what to check: {text}"
        );
        assert!(
            publication_of(&out, "2026-11-20").unwrap() == good,
            "room for {room} files: the publication is untouched"
        );
    }
    // Space again: the next run publishes; no lock was left behind.
    audiences::pipeline::run(&job, &opts(200)).await.unwrap();
    verify(&publication_of(&out, "2026-11-20").unwrap());
}

#[test]
fn reliability_table_names_real_tests() {
    // The README's reliability table says which test checks each row: each must exist.
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## Reliability\n")
        .nth(1)
        .expect("a reliability section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut sources = String::new();
    for dir in ["src", "tests"] {
        for (path, bytes) in snapshot(&repo().join(dir)) {
            if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    let rows: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| fault") && !l.starts_with("| ---"))
        .collect();
    assert!(rows.len() >= 10, "{rows:?}");
    for row in rows {
        let tests = row.trim_end_matches(['|', ' ']).rsplit('|').next().unwrap();
        for test in tests.split(',').map(|t| t.trim().trim_matches('`')) {
            assert!(
                sources.contains(&format!("fn {test}(")),
                "the README's reliability table names `{test}`, which is not a test"
            );
        }
    }
}
