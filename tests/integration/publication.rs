//! Atomic publication, the overlap lock, retention and deltas, on local disk (S3 in
//! `s3_storage.rs`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;

/// A job over `n` users with IMEIs whose segment `day` grows with the date: users whose number
/// is below `base + 10 × day of month` are in it.
pub fn growing_job(dir: &Path, n: usize, extra: &str) -> PathBuf {
    let mut ids = String::from("user_id,k,imei\n");
    for i in 0..n {
        ids.push_str(&format!("u{i:06},{i},86{i:013}\n"));
    }
    write(&dir.join("in/ids.csv"), &ids);
    let job = dir.join("jobs/g.toml");
    write(
        &job,
        &format!(
            r#"name = "g"
[params]
as_of = {{ type = "date" }}
base = {{ type = "int", default = 0 }}
[sources]
ids = {{ url = "../in/ids.csv", format = "csv", schema = "user_id string, k int, imei string" }}
[[segment]]
name = "day"
query = "SELECT user_id FROM ids WHERE k < $base + 10 * date_part('day', $as_of)"
[publish]
identities = "ids"
{extra}
[[export]]
segments = ["day"]
format = "tencent_ads"
ids = [{{ type = "HASH_IMEI", column = "imei" }}]
compress = "none"
min_size = 1
deltas = true
"#
        ),
    );
    job
}

fn run_date(job: &Path, out: &Path, date: &str, params: &[&str]) -> std::process::Output {
    let mut c = bin();
    c.arg("run")
        .arg(job)
        .args(["--date", date, "--output"])
        .arg(out);
    for p in params {
        c.args(["-p", p]);
    }
    c.output().unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn md5_imei(i: usize) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(format!("86{i:013}").as_bytes()))
}

#[test]
fn deltas_retention_and_idempotent_reruns() {
    let tmp = tempfile::tempdir().unwrap();
    let job = growing_job(tmp.path(), 500, "keep_runs = 2");
    let out = tmp.path().join("out");
    for d in ["2026-11-01", "2026-11-02"] {
        let res = run_date(&job, &out, d, &[]);
        assert!(res.status.success(), "{}", output_text(&res));
    }
    // Day 2 holds users 0..20, day 1 held 0..10: adds are 10..20, no removes.
    let run2 = published_at(&out, "2026-11-02");
    let adds = lines(&run2.join("tencent_ads/day/adds/day_hash_imei_part000.txt"));
    assert_eq!(
        adds,
        (10..20).map(md5_imei).collect::<Vec<_>>(),
        "adds, in user order"
    );
    assert!(!run2.join("tencent_ads/day/removes").exists());
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run2.join("manifest.json")).unwrap()).unwrap();
    let first_run = std::fs::read_to_string(out.join("2026-11-01/current.json")).unwrap();
    assert!(first_run.contains(m["exports"][0]["deltas_against"].as_str().unwrap()));

    // A rerun of day 2 with a smaller segment: removes against day 1, and the same date is
    // replaced; the earlier run folder of that date is removed.
    let before = published_at(&out, "2026-11-02");
    let res = run_date(&job, &out, "2026-11-02", &["base=-15"]);
    assert!(res.status.success(), "{}", output_text(&res));
    let after = published_at(&out, "2026-11-02");
    assert_ne!(before, after);
    assert!(!before.exists(), "the superseded run folder is removed");
    assert_eq!(
        lines(&after.join("tencent_ads/day/removes/day_hash_imei_part000.txt")),
        (5..10).map(md5_imei).collect::<Vec<_>>()
    );

    // Same inputs, same bytes: a rerun publishes identical segment files.
    let a = snapshot(&after.join("tencent_ads"));
    let res = run_date(&job, &out, "2026-11-02", &["base=-15"]);
    assert!(res.status.success());
    assert_eq!(
        a,
        snapshot(&published_at(&out, "2026-11-02").join("tencent_ads"))
    );

    // keep_runs = 2: a third date removes the oldest.
    let res = run_date(&job, &out, "2026-11-03", &[]);
    assert!(res.status.success(), "{}", output_text(&res));
    assert!(!out.join("2026-11-01").exists(), "beyond keep_runs");
    assert!(
        out.join("2026-11-02/current.json").exists()
            && out.join("2026-11-03/current.json").exists()
    );
}

#[test]
fn deltas_send_the_whole_list_again_every_full_every_days() {
    let tmp = tempfile::tempdir().unwrap();
    let job = growing_job(tmp.path(), 100, "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("deltas = true", "deltas = true\nfull_every = \"3 days\"");
    write(&job, &text);
    let out = tmp.path().join("out");
    // (date, whole list sent?, the last full send afterwards)
    for (date, full, last) in [
        ("2026-11-01", true, "2026-11-01"),
        ("2026-11-02", false, "2026-11-01"),
        ("2026-11-03", false, "2026-11-01"),
        ("2026-11-04", true, "2026-11-04"),
        ("2026-11-06", false, "2026-11-04"),
    ] {
        let res = run_date(&job, &out, date, &[]);
        assert!(res.status.success(), "{date}: {}", output_text(&res));
        let run = published_at(&out, date);
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
        let ex = &m["exports"][0];
        assert_eq!(
            ex["refresh"]["mode"],
            if full { "replace" } else { "delta" },
            "{date}"
        );
        assert_eq!(ex["refresh"]["last_full"], last, "{date}");
        let sets = ex["segments"][0]["file_sets"].as_array().unwrap();
        let ops: Vec<(&str, &str)> = sets
            .iter()
            .map(|s| {
                (
                    s["part"].as_str().unwrap(),
                    s["operation"].as_str().unwrap_or("-"),
                )
            })
            .collect();
        let day = date[8..].parse::<usize>().unwrap();
        if full {
            // The whole target list, to replace the platform's; no adds or removes beside it.
            assert_eq!(ops, [("target", "replace")], "{date}");
            assert!(!run.join("tencent_ads/day/adds").exists());
        } else {
            // Adds as Tencent's APPEND; the target list is kept for reference only.
            assert_eq!(ops, [("adds", "APPEND"), ("target", "-")], "{date}");
            let prev = if day == 6 { 4 } else { day - 1 };
            assert_eq!(
                lines(&run.join("tencent_ads/day/adds/day_hash_imei_part000.txt")),
                (10 * prev..10 * day).map(md5_imei).collect::<Vec<_>>(),
                "{date}"
            );
        }
    }
    // A bad cadence is a job error naming it.
    write(&job, &text.replace("\"3 days\"", "\"sometimes\""));
    let res = bin().arg("check").arg(&job).output().unwrap();
    assert_eq!(res.status.code(), Some(78));
    assert!(output_text(&res).contains("full_every = \"sometimes\""));
}

#[test]
fn a_killed_run_leaves_the_last_publication_intact_and_the_next_run_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    // Five rows per file: thousands of files, so the export takes long enough to be killed in.
    let job = growing_job(tmp.path(), 30000, "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("min_size = 1", "min_size = 1\nmax_rows_per_file = 5");
    write(&job, &text);
    let out = tmp.path().join("out");
    let res = run_date(&job, &out, "2026-11-20", &["base=20000"]);
    assert!(res.status.success(), "{}", output_text(&res));
    let good = snapshot(&out.join("2026-11-20"));

    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("audiences"))
        .current_dir(repo())
        .env("RUST_LOG", "audiences=warn")
        .arg("run")
        .arg(&job)
        .args(["--date", "2026-11-20", "-p", "base=20100", "--output"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the new run is writing segment files, then kill it.
    let runs = out.join("2026-11-20/runs");
    let earlier: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let start = Instant::now();
    let killed_in_export = loop {
        let writing = std::fs::read_dir(&runs).map(|d| {
            d.filter_map(|e| e.ok()).any(|e| {
                !earlier.contains(&e.file_name())
                    && e.path().join("tencent_ads/day/target").exists()
            })
        });
        if writing.unwrap_or(false) {
            child.kill().unwrap();
            break true;
        }
        if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(60) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    child.wait().unwrap();
    assert!(
        killed_in_export,
        "the run was killed while writing segment files"
    );
    // What was published is unchanged, byte for byte; the killed run's folder is not published.
    let now = snapshot(&out.join("2026-11-20"));
    for (k, v) in &good {
        assert_eq!(now.get(k), Some(v), "{} changed", k.display());
    }
    // The lock of the killed run is stale (its process is gone): the next run takes it over.
    let res = run_date(&job, &out, "2026-11-20", &["base=20100"]);
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    let run = published_at(&out, "2026-11-20");
    assert_eq!(
        lines(&run.join("tencent_ads/day/target/day_hash_imei_part000.txt")).len(),
        5
    );
    let runs_left = std::fs::read_dir(&runs).unwrap().count();
    assert_eq!(
        runs_left, 1,
        "the killed run's folder is cleaned up after success"
    );
}

#[test]
fn a_held_lock_makes_a_second_run_exit_75() {
    let tmp = tempfile::tempdir().unwrap();
    let job = growing_job(tmp.path(), 100, "");
    let out = tmp.path().join("out");
    // A live holder: this test process, on this host.
    let host = sysinfo::System::host_name().unwrap_or_else(|| "unknown-host".into());
    let lock = out.join("2026-11-05/_lock.json");
    write(
        &lock,
        &format!(
            r#"{{"host": "{host}", "pid": {}, "started_at": "2026-11-26T00:00:00Z", "run_id": "other"}}"#,
            std::process::id()
        ),
    );
    let res = run_date(&job, &out, "2026-11-05", &[]);
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(75), "{text}");
    assert!(
        text.contains(&format!("pid {}", std::process::id())) && text.contains(&host),
        "{text}"
    );
    assert!(!out.join("2026-11-05/current.json").exists());
    assert!(lock.exists(), "someone else's lock is left alone");

    // A holder that is gone: taken over with a warning.
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    write(
        &lock,
        &format!(
            r#"{{"host": "{host}", "pid": {pid}, "started_at": "2026-11-26T00:00:00Z", "run_id": "old"}}"#
        ),
    );
    let res = run_date(&job, &out, "2026-11-05", &[]);
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    assert!(text.contains("stale lock"), "{text}");
    assert!(!lock.exists(), "released after the run");

    // A holder on another host, older than the timeout: stale too.
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "identities = \"ids\"",
        "identities = \"ids\"\nlock_timeout_minutes = 0",
    );
    write(&job, &text);
    write(
        &lock,
        r#"{"host": "elsewhere", "pid": 1, "started_at": "2026-11-26T00:00:00Z", "run_id": "old"}"#,
    );
    std::thread::sleep(Duration::from_millis(1100));
    let res = run_date(&job, &out, "2026-11-05", &[]);
    assert!(res.status.success(), "{}", output_text(&res));
}

#[test]
fn two_runs_at_once_one_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let job = growing_job(tmp.path(), 30000, "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("min_size = 1", "min_size = 1\nmax_rows_per_file = 20");
    write(&job, &text);
    let out = tmp.path().join("out");
    let command = || {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("audiences"));
        c.current_dir(repo())
            .env("RUST_LOG", "audiences=warn")
            .arg("run")
            .arg(&job)
            .args(["--date", "2026-11-20", "-p", "base=20000", "--output"])
            .arg(&out)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };
    // The first run takes its lock; the second starts while it is held.
    let mut first = command().spawn().unwrap();
    let lock = out.join("2026-11-20/_lock.json");
    let t0 = std::time::Instant::now();
    while !lock.exists() {
        assert!(
            t0.elapsed().as_secs() < 120,
            "the first run never took its lock"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended before its lock was seen"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let second = command().output().unwrap();
    // The runs overlapped: the first was still running when the second had finished.
    let overlapped = first.try_wait().unwrap().is_none();
    let first = first.wait_with_output().unwrap();
    assert!(
        overlapped,
        "the second run ended after the first: {}",
        output_text(&second)
    );
    assert_eq!(second.status.code(), Some(75), "{}", output_text(&second));
    assert!(
        output_text(&second).contains("another run of this job and date is in progress"),
        "{}",
        output_text(&second)
    );
    assert_eq!(first.status.code(), Some(0), "{}", output_text(&first));
    // Exactly one publication: the date's one run folder is the one published.
    let runs: Vec<_> = std::fs::read_dir(out.join("2026-11-20/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").exists())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(published_at(&out, "2026-11-20"), runs[0]);
}
