//! Incremental steps: after any sequence of runs the rolled-up features and the segment files
//! equal a full recomputation byte for byte, a night computes only the days it lacks, and the
//! state survives a killed run and refuses overlapping ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;

const USERS: usize = 3000;

/// The demo job, written beside the test's data with its SQL paths made absolute, small
/// segments exported (so a few thousand users make segment files), and, unless `incremental`,
/// without its `incremental` settings.
pub(crate) fn demo_job(dir: &Path, incremental: bool) -> PathBuf {
    let job = dir.join(if incremental {
        "jobs/demo.toml"
    } else {
        "jobs/plain.toml"
    });
    if job.exists() {
        return job;
    }
    let text: String = std::fs::read_to_string(repo().join("jobs/demo.toml"))
        .unwrap()
        .lines()
        // A merged step keeps its declaration: without it the step is another table.
        .filter(|l| incremental || !l.starts_with("incremental = ") || l.contains("merge_by"))
        .map(|l| {
            if l.starts_with("format = \"tencent_ads\"")
                || l.starts_with("format = \"meta_custom_audience\"")
            {
                format!("{l}\nmin_size = 100")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\"../sql/", &format!("\"{}/sql/", repo().display()));
    write(&job, &text);
    job
}

pub(crate) fn run(data: &Path, out: &Path, date: &str, extra: &[&str]) -> std::process::Output {
    let job = demo_job(data.parent().unwrap(), true);
    bin()
        .arg("run")
        .arg(&job)
        .args(["--date", date, "--param"])
        .arg(format!("data={}", data.display()))
        .arg("--output")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

pub(crate) fn ok(res: std::process::Output) -> String {
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    text
}

/// Data files of a published run (features, segment membership, segment files but the deltas,
/// which depend on the previous run by design).
pub(crate) fn outputs(out: &Path, date: &str) -> BTreeMap<PathBuf, Vec<u8>> {
    snapshot(&published_at(out, date))
        .into_iter()
        .filter(|(p, _)| {
            let s = p.to_string_lossy();
            !(s.ends_with(".json") || s.ends_with("_SUCCESS") || s.ends_with("report.html"))
        })
        .collect()
}

/// Days computed per incremental step in the published run of `date`.
fn computed(out: &Path, date: &str) -> Vec<usize> {
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(published_at(out, date).join("manifest.json")).unwrap(),
    )
    .unwrap();
    m["incremental"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["computed"].as_array().unwrap().len())
        .collect()
}

/// Days of the demo's orders before `date` (the two-year customer window holds them all).
fn order_days_before(data: &Path, date: &str) -> usize {
    std::fs::read_dir(data.join("orders"))
        .unwrap()
        .filter(|e| {
            let name = e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .to_string();
            name.strip_prefix("dt=").is_some_and(|d| d < date)
        })
        .count()
}

/// Reruns `date` with `--full-refresh` in the same output folder (so the previous publication,
/// which the decision path and deltas read, is the same) and checks the outputs are equal.
fn equals_full_refresh(data: &Path, out: &Path, date: &str) {
    let incremental = outputs(out, date);
    assert!(
        incremental
            .keys()
            .any(|p| p.to_string_lossy().contains("target")),
        "segment files were written: {:?}",
        incremental.keys().collect::<Vec<_>>()
    );
    ok(run(data, out, date, &["--full-refresh"]));
    assert_eq!(
        computed(out, date),
        vec![90, 90, 90, order_days_before(data, date)]
    );
    let full = outputs(out, date);
    assert_eq!(
        incremental.keys().collect::<Vec<_>>(),
        full.keys().collect::<Vec<_>>()
    );
    for (p, bytes) in &incremental {
        assert!(
            bytes == &full[p],
            "{} differs from a full recomputation",
            p.display()
        );
    }
}

#[test]
fn consecutive_days_compute_one_day_each_and_equal_a_full_recomputation() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), USERS);
    let out = tmp.path().join("out");
    ok(run(&data, &out, "2026-11-22", &[]));
    assert_eq!(
        computed(&out, "2026-11-22"),
        vec![90, 90, 90, order_days_before(&data, "2026-11-22")]
    );
    ok(run(&data, &out, "2026-11-23", &[]));
    assert_eq!(computed(&out, "2026-11-23"), vec![1, 1, 1, 1]);
    let text = ok(run(&data, &out, "2026-11-24", &[]));
    assert_eq!(computed(&out, "2026-11-24"), vec![1, 1, 1, 1]);
    assert!(
        text.contains("1 days computed, 89 reused from the state, 1 pruned"),
        "{text}"
    );
    // The all-history customer rows take the new day only (an empty day left the window).
    assert!(
        text.contains("1 new days merged into the kept rows (179 days)"),
        "{text}"
    );
    equals_full_refresh(&data, &out, "2026-11-24");
}

#[test]
fn a_skipped_day_and_an_out_of_order_backfill_equal_a_full_recomputation() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), USERS);
    let out = tmp.path().join("out");
    ok(run(&data, &out, "2026-11-20", &[]));
    // Three nights skipped: the next run computes the four days it lacks.
    ok(run(&data, &out, "2026-11-24", &[]));
    assert_eq!(computed(&out, "2026-11-24"), vec![4, 4, 4, 4]);
    equals_full_refresh(&data, &out, "2026-11-24");
    // A backfill of an earlier date computes the 14 days before the state's window.
    let text = ok(run(&data, &out, "2026-11-10", &[]));
    // The two-year window's 14 older days have no orders: nothing to compute.
    assert_eq!(computed(&out, "2026-11-10"), vec![14, 14, 14, 0]);
    // Merged rows that hold later days are merged again from the days of this window.
    assert!(text.contains("is no longer held)"), "{text}");
    equals_full_refresh(&data, &out, "2026-11-10");
}

#[test]
fn a_day_whose_files_changed_is_computed_again() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), USERS);
    let out = tmp.path().join("out");
    // The 2026-11-23 orders land late: the first run sees an empty day.
    let day = data.join("orders/dt=2026-11-23");
    let aside = tmp.path().join("late");
    std::fs::rename(&day, &aside).unwrap();
    ok(run(&data, &out, "2026-11-24", &[]));
    let before = outputs(&out, "2026-11-24");
    std::fs::rename(&aside, &day).unwrap();
    let text = ok(run(&data, &out, "2026-11-24", &[]));
    // Only the orders steps' late day is computed again, and merged into the customer rows.
    assert_eq!(computed(&out, "2026-11-24"), vec![1, 0, 0, 1]);
    assert!(
        text.contains("1 new days merged into the kept rows"),
        "{text}"
    );
    let after = outputs(&out, "2026-11-24");
    assert!(
        before.get(Path::new("user_features.parquet"))
            != after.get(Path::new("user_features.parquet")),
        "the late orders changed the features"
    );
    equals_full_refresh(&data, &out, "2026-11-24");
}

#[test]
fn incremental_features_equal_the_job_written_without_incremental_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 1500);
    let out = tmp.path().join("out");
    ok(run(&data, &out, "2026-11-23", &[]));
    ok(run(&data, &out, "2026-11-24", &[]));
    // The same job and SQL without `incremental`: every step reads its 90 days from the source.
    let job = demo_job(tmp.path(), false);
    let plain_out = tmp.path().join("plain");
    let res = bin()
        .arg("run")
        .arg(&job)
        .args(["--date", "2026-11-24", "--param"])
        .arg(format!("data={}", data.display()))
        .arg("--output")
        .arg(&plain_out)
        .output()
        .unwrap();
    ok(res);
    let a = std::fs::read(published_at(&out, "2026-11-24").join("user_features.parquet")).unwrap();
    let b = std::fs::read(published_at(&plain_out, "2026-11-24").join("user_features.parquet"))
        .unwrap();
    assert!(a == b, "incremental and plain features are byte-identical");

    // Without state (preview), a merged step merges its whole window: the same customers.
    let res = bin()
        .arg("preview")
        .arg(demo_job(tmp.path(), true))
        .args([
            "--step",
            "customer_summary",
            "--date",
            "2026-11-24",
            "--param",
        ])
        .arg(format!("data={}", data.display()))
        .output()
        .unwrap();
    let text = ok(res);
    let ltv = read_parquet(&published_at(&out, "2026-11-24").join("ltv.parquet"));
    assert!(
        text.contains("frequency")
            && text.contains(&format!("`customer_summary`: {} rows", rows(&ltv))),
        "{text}"
    );
}

/// Every day folder either holds a fingerprint naming a file that exists, or no fingerprint.
fn state_is_consistent(state: &Path) -> usize {
    let mut complete = 0;
    for step in std::fs::read_dir(state.join("incremental")).unwrap() {
        let step = step.unwrap().path();
        if !step.is_dir() {
            continue;
        }
        for day in std::fs::read_dir(&step).unwrap() {
            let day = day.unwrap().path();
            let fp = day.join("fingerprint.json");
            if fp.exists() {
                let h: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&fp).unwrap()).unwrap();
                if let Some(f) = h["file"].as_str() {
                    assert!(
                        step.join(f).exists(),
                        "{} names a missing file",
                        fp.display()
                    );
                }
                complete += 1;
            }
        }
    }
    complete
}

#[test]
fn a_killed_run_leaves_every_day_complete_or_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), USERS);
    let out = tmp.path().join("out");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("audiences"))
        .current_dir(repo())
        .env("RUST_LOG", "audiences=warn")
        .arg("run")
        .arg(demo_job(tmp.path(), true))
        .args(["--date", "2026-11-24", "--param"])
        .arg(format!("data={}", data.display()))
        .arg("--output")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it has started writing days.
    let step = out.join("state/incremental/orders_daily");
    let t0 = std::time::Instant::now();
    while !std::fs::read_dir(&step).is_ok_and(|mut d| d.next().is_some()) {
        assert!(t0.elapsed().as_secs() < 120, "the run never wrote state");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    state_is_consistent(&out.join("state"));
    assert!(!out.join("2026-11-24/current.json").exists());
    // The next run takes over the dead run's locks, completes the state and publishes.
    ok(run(&data, &out, "2026-11-24", &[]));
    assert_eq!(
        state_is_consistent(&out.join("state")),
        3 * 90 + order_days_before(&data, "2026-11-24")
    );
    equals_full_refresh(&data, &out, "2026-11-24");
}

#[test]
fn a_run_holding_the_state_makes_another_date_exit_75_and_status_lists_the_days() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 1500);
    let out = tmp.path().join("out");
    ok(run(&data, &out, "2026-11-24", &[]));
    // Another run (this test process: alive, on this host) holds the state.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    write(
        &out.join("state/incremental/_lock.json"),
        &serde_json::json!({
            "run_id": "other-run",
            "host": host,
            "pid": std::process::id(),
            "started_at": chrono::Utc::now().to_rfc3339(),
        })
        .to_string(),
    );
    let res = run(&data, &out, "2026-11-23", &[]);
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(75), "{text}");
    assert!(text.contains("other-run"), "names the holder: {text}");
    std::fs::remove_file(out.join("state/incremental/_lock.json")).unwrap();

    let res = bin()
        .arg("status")
        .arg(demo_job(tmp.path(), true))
        .args(["--days", "--param"])
        .arg(format!("data={}", data.display()))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let text = ok(res);
    assert!(
        text.contains("incremental step orders_daily: 90 days held, 2026-08-26 .. 2026-11-23"),
        "{text}"
    );
    // The merged customer rows: one per customer, covering every day of orders.
    let customers = rows(&read_parquet(
        &published_at(&out, "2026-11-24").join("ltv.parquet"),
    ));
    assert!(
        text.contains(&format!("  merged rows: {customers} rows, "))
            && text.contains(&format!(
                "covering {} days with rows",
                order_days_before(&data, "2026-11-24")
            )),
        "{text}"
    );
    let held: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("state/incremental/orders_daily/dt=2026-11-23/fingerprint.json"))
            .unwrap(),
    )
    .unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("2026-11-23"))
        .unwrap_or_else(|| panic!("a line for 2026-11-23: {text}"));
    assert!(
        line.contains(&held["fingerprint"].as_str().unwrap()[..16]),
        "{line}"
    );
    assert!(line.contains(&format!("{} bytes", held["bytes"])), "{line}");
}

#[test]
fn a_step_that_changes_its_day_column_fails_naming_the_day_and_keeps_no_state() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 500);
    let job = tmp.path().join("jobs/shifted.toml");
    write(
        &job,
        &format!(
            r#"name = "shifted"
output = "../out"
state = "../state"
[params]
as_of = {{ type = "date", default = 2026-11-24 }}
[sources]
orders = {{ url = "{}/orders/", format = "parquet", partitions = ["dt"] }}
[[step]]
name = "per_day"
query = "SELECT CAST(CAST(dt AS DATE) + INTERVAL '1 day' AS VARCHAR) AS dt, COUNT(*) AS n FROM orders GROUP BY dt"
incremental = {{ source = "orders", days = 5 }}
"#,
            data.display()
        ),
    );
    let res = bin().arg("run").arg(&job).output().unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(65), "{text}");
    assert!(
        text.contains("per_day") && text.contains("which it was not asked to compute"),
        "{text}"
    );
    // 2026-11-24 is the day after the newest asked day (2026-11-23): it is named.
    assert!(text.contains("`2026-11-24`"), "{text}");
    for key in ["2026-11-24", "undated"] {
        assert!(!tmp
            .path()
            .join("out")
            .join(key)
            .join("current.json")
            .exists());
    }
}
