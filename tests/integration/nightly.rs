//! Nightly-run grade: default dates, backfills, the run history and `status`, JSON logs,
//! retries under injected storage faults, a storage outage in the middle of a run, and no
//! secret or raw identifier in any output.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::*;
use crate::s3::TestS3;
use crate::s3_storage::{run_blocking, upload};

/// A small job whose freshness gate passes for as_of up to 2026-11-25 and fails after.
fn fresh_job(dir: &Path) -> PathBuf {
    write(
        &dir.join("in/orders.csv"),
        "user_id,ts,amount\nu1,2026-11-22 10:00:00,10\nu2,2026-11-23 10:00:00,20\n",
    );
    let job = dir.join("jobs/n.toml");
    write(
        &job,
        r#"name = "n"
output = "../out"
timezone = "Asia/Shanghai"
[params]
as_of = { type = "date" }
[sources.orders]
url = "../in/orders.csv"
format = "csv"
schema = "user_id string, ts timestamp, amount double"
checks = { fresh = { column = "ts", max_days = 2 } }
[[step]]
name = "totals"
query = "SELECT COUNT(*) AS n FROM orders WHERE ts < CAST($as_of AS TIMESTAMP)"
[[export]]
table = "totals"
to = "totals.csv"
[publish]
holdout = "0%"
[[segment]]
name = "buyers"
query = "SELECT DISTINCT user_id FROM orders WHERE ts < CAST($as_of AS TIMESTAMP)"
"#,
    );
    job
}

#[test]
fn date_defaults_to_yesterday_in_the_jobs_timezone() {
    let tmp = tempfile::tempdir().unwrap();
    let job = fresh_job(tmp.path());
    // No freshness trouble today: drop the gate for this run.
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "checks = { fresh = { column = \"ts\", max_days = 2 } }\n",
        "",
    );
    std::fs::write(&job, text).unwrap();
    let res = bin().arg("run").arg(&job).output().unwrap();
    assert!(res.status.success(), "{}", output_text(&res));
    let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
    let yesterday = chrono::Utc::now()
        .with_timezone(&tz)
        .date_naive()
        .pred_opt()
        .unwrap();
    assert!(
        tmp.path()
            .join(format!("out/{yesterday}/current.json"))
            .exists(),
        "published under {yesterday}: {}",
        output_text(&res)
    );
}

/// A run started just before midnight reads the clock once: the lock, the run folder, the run
/// id and the SQL all use the date of that one reading, though the clock has moved past
/// midnight by the time the later stages look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_before_midnight_uses_one_date() {
    use chrono::TimeZone;
    let tmp = tempfile::tempdir().unwrap();
    let job_path = fresh_job(tmp.path());
    let text = std::fs::read_to_string(&job_path).unwrap().replace(
        "checks = { fresh = { column = \"ts\", max_days = 2 } }\n",
        "",
    );
    let text = text.replace(
        "query = \"SELECT COUNT(*) AS n FROM orders WHERE ts < CAST($as_of AS TIMESTAMP)\"",
        "query = \"SELECT CAST($as_of AS VARCHAR) AS as_of, COUNT(*) AS n FROM orders\"",
    );
    std::fs::write(&job_path, text).unwrap();
    let job = audiences::job::Job::load(&job_path).unwrap();
    // 23:59:59.900 on 2026-11-25 in Shanghai; every later reading is 200 ms on, past midnight.
    let first = chrono::Utc
        .with_ymd_and_hms(2026, 11, 25, 15, 59, 59)
        .unwrap()
        + chrono::Duration::milliseconds(900);
    let reads = Arc::new(AtomicUsize::new(0));
    let counter = reads.clone();
    let clock = audiences::job::Clock::from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) as i64;
        first + chrono::Duration::milliseconds(200 * n)
    });
    let opts = audiences::pipeline::RunOptions {
        clock,
        ..Default::default()
    };
    let report = audiences::pipeline::run(&job, &opts).await.unwrap();
    assert_eq!(
        reads.load(Ordering::SeqCst),
        1,
        "the clock is read once per run"
    );
    // Yesterday at the first reading is the 24th (at any later one it would be the 25th).
    let out = tmp.path().join("out");
    assert!(
        out.join("2026-11-24/current.json").exists(),
        "published under the 24th"
    );
    assert!(!out.join("2026-11-25").exists(), "nothing under the 25th");
    assert!(
        report.run_id.starts_with("20261125T155959900Z"),
        "{}",
        report.run_id
    );
    let run_dir = published_at(&out, "2026-11-24");
    assert!(
        run_dir.starts_with(out.join("2026-11-24/runs")),
        "{}",
        run_dir.display()
    );
    let totals = std::fs::read_to_string(run_dir.join("totals.csv")).unwrap();
    assert_eq!(
        totals.lines().nth(1).unwrap().split(',').next(),
        Some("2026-11-24"),
        "{totals}"
    );
    let history = std::fs::read_to_string(
        std::fs::read_dir(out.join("_runs"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    assert!(history.contains("\"date\": \"2026-11-24\""), "{history}");
}

#[test]
fn backfill_stops_at_the_first_failure_unless_keep_going() {
    let tmp = tempfile::tempdir().unwrap();
    let job = fresh_job(tmp.path());
    let res = bin()
        .arg("run")
        .arg(&job)
        .args(["--from", "2026-11-24", "--to", "2026-11-27"])
        .output()
        .unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(65), "{text}");
    let table = |t: &str, date: &str| -> String {
        t.lines()
            .find(|l| l.trim_start().starts_with(date))
            .unwrap_or_else(|| panic!("{date} in {t}"))
            .to_string()
    };
    assert!(table(&text, "2026-11-24").contains("published"), "{text}");
    assert!(table(&text, "2026-11-25").contains("published"), "{text}");
    assert!(
        table(&text, "2026-11-26").contains("failed (exit 65)"),
        "{text}"
    );
    assert!(table(&text, "2026-11-27").contains("not run"), "{text}");
    assert!(
        text.contains("1 of 4 dates failed: 2026-11-26 (exit 65)"),
        "{text}"
    );
    let out = tmp.path().join("out");
    assert!(out.join("2026-11-25/current.json").exists());
    assert!(!out.join("2026-11-27").exists(), "nothing ran for 11-27");

    let res = bin()
        .arg("run")
        .arg(&job)
        .args(["--from", "2026-11-26", "--to", "2026-11-27", "--keep-going"])
        .output()
        .unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(65), "{text}");
    assert!(
        table(&text, "2026-11-27").contains("failed (exit 65)"),
        "{text}"
    );
    assert!(text.contains("2 of 2 dates failed"), "{text}");

    // A rerun of a published date replaces its publication.
    let before = std::fs::read_to_string(out.join("2026-11-24/current.json")).unwrap();
    let res = bin()
        .arg("run")
        .arg(&job)
        .args(["--date", "2026-11-24"])
        .output()
        .unwrap();
    assert!(res.status.success());
    let after = std::fs::read_to_string(out.join("2026-11-24/current.json")).unwrap();
    assert_ne!(before, after);

    // status lists every attempt, newest first, with outcome and segment sizes.
    let res = bin().arg("status").arg(&job).output().unwrap();
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("2026-"))
        .collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert!(
        lines[0].contains("2026-11-24") && lines[0].contains("published *"),
        "{text}"
    );
    assert!(lines[0].contains("buyers 2"), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("2026-11-24") && l.contains("published (replaced)")),
        "{text}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("failed (exit 65)"))
            .count(),
        3,
        "{text}"
    );
}

#[test]
fn json_logs_carry_run_job_date_step_rows_and_outcome() {
    let tmp = tempfile::tempdir().unwrap();
    let job = fresh_job(tmp.path());
    let res = bin()
        .env("RUST_LOG", "audiences=info")
        .args(["--log-format", "json", "run"])
        .arg(&job)
        .args(["--date", "2026-11-24"])
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", output_text(&res));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&res.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let step = events
        .iter()
        .find(|e| e["message"] == "step finished")
        .expect("a step event");
    assert_eq!(step["step"], "totals");
    assert_eq!(step["rows"], 1);
    assert!(step["ms"].is_u64());
    assert_eq!(step["span"]["job"], "n");
    assert_eq!(step["span"]["date"], "2026-11-24");
    let run_id = step["span"]["run_id"].as_str().unwrap().to_string();
    let end = events
        .iter()
        .find(|e| e["message"] == "run finished")
        .expect("a run event");
    assert_eq!(end["outcome"], "published");
    assert_eq!(end["span"]["run_id"], run_id.as_str());
    assert!(end["seconds"].is_f64());
}

/// Fails every third call of the wrapped store with a transient error; a call that failed
/// succeeds when it is retried, as after a dropped connection (so the outcome does not depend
/// on how concurrent calls interleave).
#[derive(Debug)]
struct Flaky {
    inner: Arc<dyn object_store::ObjectStore>,
    calls: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    pending: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Flaky({})", self.inner)
    }
}

impl Flaky {
    fn fault(
        &self,
        op: &str,
        location: Option<&object_store::path::Path>,
    ) -> object_store::Result<()> {
        let key = format!("{op} {}", location.map(|l| l.as_ref()).unwrap_or(""));
        let mut pending = self.pending.lock().unwrap();
        if pending.remove(&key) {
            return Ok(());
        }
        if self.calls.fetch_add(1, Ordering::SeqCst) % 3 == 2 {
            pending.insert(key);
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(object_store::Error::Generic {
                store: "flaky",
                source: "injected fault: connection reset".into(),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for Flaky {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.fault("put_opts", Some(location))?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.fault("put_multipart_opts", Some(location))?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.fault("get_opts", Some(location))?;
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(
        &self,
        location: &object_store::path::Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.fault("get_ranges", Some(location))?;
        self.inner.get_ranges(location, ranges).await
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
        use futures::StreamExt;
        match self.fault("list", prefix) {
            Ok(()) => self.inner.list(prefix),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }
    fn list_with_offset(
        &self,
        prefix: Option<&object_store::path::Path>,
        offset: &object_store::path::Path,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.fault("list_with_delimiter", prefix)?;
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.fault("copy_opts", Some(from))?;
        self.inner.copy_opts(from, to, options).await
    }
    async fn rename_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::RenameOptions,
    ) -> object_store::Result<()> {
        self.fault("rename_opts", Some(from))?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// The bytes of a published run's data files and its segment sizes: what must not depend on
/// storage faults.
fn run_outputs(out: &Path) -> (Vec<Vec<u8>>, serde_json::Value) {
    let run = published(out);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    let files = [
        "segments.parquet",
        "user_features.parquet",
        "lifecycle.parquet",
    ]
    .iter()
    .map(|f| std::fs::read(run.join(f)).unwrap())
    .collect();
    (files, m["segments"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_survives_a_store_failing_a_third_of_its_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 900);
    let mut job = audiences::job::Job::load(&repo().join("jobs/demo.toml")).unwrap();
    // Each run its own model state: other tests run the demo job at the same time.
    job.state = tmp.path().join("state_clean").display().to_string();
    let opts = |out: &Path| audiences::pipeline::RunOptions {
        date: audiences::job::params::parse_date("2026-11-24").ok(),
        params: vec![format!("data={}", data.display())],
        output: Some(out.display().to_string()),
        ..Default::default()
    };
    let clean_out = tmp.path().join("clean");
    audiences::pipeline::run(&job, &opts(&clean_out))
        .await
        .unwrap();

    let calls = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (c, f) = (calls.clone(), failed.clone());
    let root = tmp.path().to_path_buf();
    // Only this test's files: other tests share the process.
    let layer =
        audiences::storage::retry::add_store_layer(Arc::new(move |url: &url::Url, store| {
            if url.path().starts_with(root.to_str().unwrap()) {
                Arc::new(Flaky {
                    inner: store,
                    calls: c.clone(),
                    failed: f.clone(),
                    pending: Default::default(),
                }) as Arc<dyn object_store::ObjectStore>
            } else {
                store
            }
        }));
    job.state = tmp.path().join("state_flaky").display().to_string();
    let flaky_out = tmp.path().join("flaky");
    let res = audiences::pipeline::run(&job, &opts(&flaky_out)).await;
    drop(layer);
    res.unwrap();
    assert!(
        failed.load(Ordering::SeqCst) > 10,
        "faults were injected: {failed:?} of {calls:?}"
    );
    let (a, b) = (run_outputs(&clean_out), run_outputs(&flaky_out));
    assert!(a.1.as_array().is_some_and(|s| !s.is_empty()));
    assert!(a == b, "the same outputs, byte for byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_outage_mid_run_exits_75_publishes_nothing_and_the_next_run_succeeds() {
    let s3 = TestS3::start(&["lake", "ads"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 3000);
    upload(&s3, "lake", &data, "demo").await;
    let args = |s3: &TestS3| {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("audiences"));
        cmd.current_dir(repo())
            .env("RUST_LOG", "audiences=warn")
            .env_remove("AWS_SESSION_TOKEN")
            .envs(s3.env())
            .args(["run", "jobs/demo.toml", "--date", "2026-11-24"])
            .args(["--param", "data=s3://lake/demo", "--output", "s3://ads/aud"]);
        cmd
    };
    let child = args(&s3)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stop the server as soon as the run holds its lock: the run is under way.
    let lock = s3.root().join("ads/aud/2026-11-24/_lock.json");
    let t0 = std::time::Instant::now();
    while !lock.exists() {
        assert!(t0.elapsed().as_secs() < 60, "the run never took its lock");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut s3 = s3;
    s3.stop().await;
    let res = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(75), "{text}");
    let bucket = s3.root().join("ads/aud/2026-11-24");
    assert!(
        !bucket.join("current.json").exists(),
        "nothing published: {text}"
    );

    // Storage is back: the next run takes over the dead run's lock and publishes.
    let s3 = s3.restart().await;
    let res = run_blocking_std(args(&s3)).await;
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    assert!(bucket.join("current.json").exists(), "{text}");
}

async fn run_blocking_std(mut cmd: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// A file's text as a reader of it sees it: gzip and zip members unpacked, Parquet as rows.
fn readable(path: &Path, bytes: &[u8]) -> String {
    use std::io::Read;
    let name = path.to_string_lossy();
    if name.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    } else if name.ends_with(".zip") {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut out = String::new();
        for i in 0..zip.len() {
            zip.by_index(i).unwrap().read_to_string(&mut out).unwrap();
        }
        out
    } else if name.ends_with(".parquet") {
        use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let batches =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes))
                .unwrap()
                .build()
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
        datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// What a raw phone, IMEI or e-mail address would leave in `text`, found in one pass: every 11-
/// and 15-digit window of its digit runs, and its e-mail-like tokens, lower-cased.
fn identifier_shapes(text: &str) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    for run in text.split(|c: char| !c.is_ascii_digit()) {
        for w in [11, 15] {
            if run.len() >= w {
                out.extend((0..=run.len() - w).map(|i| run[i..i + w].to_string()));
            }
        }
    }
    let email_char = |c: char| c.is_ascii_alphanumeric() || "._%+-@".contains(c);
    for token in text.split(|c: char| !email_char(c)) {
        if token.contains('@') {
            out.insert(token.to_lowercase());
        }
    }
    out
}

/// The demo users' raw phones, emails and IMEIs.
fn raw_identifiers(data: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for b in read_parquet(&data.join("users.parquet")) {
        for c in ["phone", "email", "imei"] {
            let a = column::<datafusion::arrow::array::StringArray>(&b, c);
            out.extend(a.iter().flatten().map(str::to_string));
        }
    }
    out
}

/// Runs the demo job over the S3 server with `job`, logging as `format`; returns what it printed.
async fn demo_on_s3(s3: &TestS3, job: &Path, format: &str) -> String {
    let mut cmd = bin();
    cmd.env("RUST_LOG", "audiences=debug")
        .env_remove("AWS_SESSION_TOKEN")
        .envs(s3.env())
        .args(["--log-format", format, "run"])
        .arg(job)
        .args(["--date", "2026-11-24"])
        .args(["--param", "data=s3://lake/demo", "--output", "s3://ads/aud"]);
    let res = run_blocking(cmd).await;
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_raw_identifier_appears_in_any_output() {
    let s3 = TestS3::start(&["lake", "ads"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 900);
    upload(&s3, "lake", &data, "demo").await;
    let demo = repo().join("jobs/demo.toml");
    let mut everything = demo_on_s3(&s3, &demo, "json").await;
    let mut cmd = bin();
    cmd.envs(s3.env())
        .args(["status", "jobs/demo.toml", "--output", "s3://ads/aud"]);
    everything += &output_text(&run_blocking(cmd).await);
    // Every file written: segment files, manifests, report, models, state, history.
    let outputs = snapshot(&s3.root().join("ads"));
    let files = outputs.len();
    for (path, bytes) in &outputs {
        everything.push_str(&readable(path, bytes));
    }
    assert!(files > 10, "outputs were written ({files} files)");
    // A rerun with one more export that says `hash = "none"`, logging as text: its log carries
    // no identifier either, and its outputs do (so the search finds what is there).
    let text = std::fs::read_to_string(&demo)
        .unwrap()
        .replace("\"../sql/", &format!("\"{}/sql/", repo().display()))
        + "\n[[export]]\nsegments = [\"brand_buyers_30d\"]\nformat = \"csv\"\ncolumns = [\"phone\", \"email\", \"imei\"]\nhash = \"none\"\nmin_size = 1\n";
    let raw_job = tmp.path().join("jobs/raw.toml");
    write(&raw_job, &text);
    everything += &demo_on_s3(&s3, &raw_job, "text").await;
    for seen in [
        "manifest",
        "HASH_IMEI",
        "brand_lookalike_5pct",
        "orders_daily",
        "published",
    ] {
        assert!(everything.contains(seen), "the search saw `{seen}`");
    }
    for secret in [crate::s3::SECRET_KEY, crate::s3::ACCESS_KEY] {
        assert!(!everything.contains(secret), "`{secret}` leaked");
    }
    let raw = raw_identifiers(&data);
    assert!(raw.len() > 1000, "{} identifiers to look for", raw.len());
    let shapes = identifier_shapes(&everything);
    let leaked: Vec<&String> = raw.iter().filter(|v| shapes.contains(*v)).collect();
    assert!(
        leaked.is_empty(),
        "raw identifiers in the outputs: {leaked:?}"
    );

    let mut written = String::new();
    for (path, bytes) in &snapshot(&s3.root().join("ads")) {
        written.push_str(&readable(path, bytes));
    }
    let shapes = identifier_shapes(&written);
    let found = raw.iter().filter(|v| shapes.contains(*v)).count();
    assert!(
        found > 20,
        "raw identifiers found with hash = \"none\": {found}"
    );
}
