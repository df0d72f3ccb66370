//! Incremental steps: after any sequence of runs the rolled-up features and the segment files
//! equal a full recomputation byte for byte, a night computes only the days it lacks, and the
//! state survives a killed run and refuses overlapping ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;

const USERS: usize = 3000;

/// The demo job, written beside the test's data with its SQL paths made absolute and small
/// segments exported (so a few thousand users make segment files).
pub(crate) fn demo_job(dir: &Path) -> PathBuf {
    let job = dir.join("jobs/demo.toml");
    if job.exists() {
        return job;
    }
    let text: String = std::fs::read_to_string(repo().join("jobs/demo.toml"))
        .unwrap()
        .lines()
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
    let job = demo_job(data.parent().unwrap());
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

/// Days each incremental step of the demo computes on a run without state for `date`: the
/// three per-day steps, the 90- and 30-day rollups over them, and the customers' two years.
fn all_days(data: &Path, date: &str) -> Vec<usize> {
    vec![
        90,
        90,
        90,
        90,
        30,
        90,
        90,
        30,
        90,
        order_days_before(data, date),
    ]
}

/// `n` days for each incremental step of the demo but the customers' (`last`).
fn each(n: usize, last: usize) -> Vec<usize> {
    let mut v = vec![n; 9];
    v.push(last);
    v
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
    assert_eq!(computed(out, date), all_days(data, date));
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
    assert_eq!(computed(&out, "2026-11-22"), all_days(&data, "2026-11-22"));
    ok(run(&data, &out, "2026-11-23", &[]));
    assert_eq!(computed(&out, "2026-11-23"), each(1, 1));
    let text = ok(run(&data, &out, "2026-11-24", &[]));
    assert_eq!(computed(&out, "2026-11-24"), each(1, 1));
    assert!(
        text.contains("1 days computed, 89 reused from the state, 1 pruned"),
        "{text}"
    );
    // The all-history customer rows take the new day only (an empty day left the window).
    assert!(
        text.contains("1 days merged into the kept rows, 0 taken out (179 days kept as they were)"),
        "{text}"
    );
    // The window rollups take the new day in and the day that left out.
    for (step, kept) in [("orders_90d", 89), ("orders_30d", 29), ("events_30d", 29)] {
        let at = text
            .find(&format!("  {step} "))
            .unwrap_or_else(|| panic!("{step}: {text}"));
        assert!(
            text[at..].contains(&format!(
                "1 days merged into the kept rows, 1 taken out ({kept} days kept as they were)"
            )),
            "{step}: {text}"
        );
    }
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
    assert_eq!(computed(&out, "2026-11-24"), each(4, 4));
    equals_full_refresh(&data, &out, "2026-11-24");
    // A backfill of an earlier date computes the 14 days before the state's window.
    let text = ok(run(&data, &out, "2026-11-10", &[]));
    // The two-year window's 14 older days have no orders: nothing to compute.
    assert_eq!(computed(&out, "2026-11-10"), each(14, 0));
    // Merged rows that hold later days take those days out and the earlier ones in.
    assert!(
        text.contains("14 days merged into the kept rows, 14 taken out"),
        "{text}"
    );
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
    // (orders_daily and its three rollups, and the customer rows).
    assert_eq!(
        computed(&out, "2026-11-24"),
        vec![1, 0, 0, 1, 1, 1, 0, 0, 0, 1]
    );
    assert!(
        text.contains("1 days merged into the kept rows, 0 taken out"),
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
    // The same job without state: every step reads its whole window, the rollups merge it.
    let plain_out = tmp.path().join("plain");
    let text = ok(run(&data, &plain_out, "2026-11-24", &["--no-state"]));
    assert!(!text.contains("days computed"), "{text}");
    assert!(!plain_out.join("state/incremental").exists());
    let a = std::fs::read(published_at(&out, "2026-11-24").join("user_features.parquet")).unwrap();
    let b = std::fs::read(published_at(&plain_out, "2026-11-24").join("user_features.parquet"))
        .unwrap();
    assert!(a == b, "incremental and plain features are byte-identical");

    // Without state (preview), a merged step merges its whole window: the same customers.
    let res = bin()
        .arg("preview")
        .arg(demo_job(tmp.path()))
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
        .arg(demo_job(tmp.path()))
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
        all_days(&data, "2026-11-24").iter().sum::<usize>()
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
        .arg(demo_job(tmp.path()))
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

/// A three-day window rollup over a small day-partitioned CSV source: sums, mins, maxes, a float
/// sum and a column that goes all-null, with keys that leave and ties on the day that leaves.
fn window_job(dir: &Path) -> PathBuf {
    // (day, user, v, x, w): `a` every day with v = the day's number (its min leaves with each
    // day), `b` on the first day only, `c` with a value on the first day and nulls after; the
    // first null of `w` comes on the 5th. `x` holds binary fractions, whose float sums are exact
    // in any order (other floats' last bits depend on the order of addition: sum money as
    // DECIMAL, see the README).
    let rows = [
        (1, "a", "1", "0.125", "1"),
        (1, "b", "5", "0.25", "1"),
        (1, "c", "7", "0.375", "1"),
        (2, "a", "2", "0.125", "1"),
        (2, "c", "", "0.375", "1"),
        (3, "a", "3", "0.125", "1"),
        (3, "c", "", "0.375", "1"),
        (4, "a", "4", "0.75", "1"),
        (4, "c", "", "", "1"),
        (5, "a", "1", "0.125", ""),
        (6, "a", "9", "0.25", "1"),
        (6, "d", "3", "0.5", "1"),
        (3, "e", "-2", "0.125", "1"),
    ];
    for day in 1..=6 {
        let text: String = std::iter::once("user_id,v,x,w\n".to_string())
            .chain(
                rows.iter()
                    .filter(|r| r.0 == day)
                    .map(|r| format!("{},{},{},{}\n", r.1, r.2, r.3, r.4)),
            )
            .collect();
        write(&dir.join(format!("ev/dt=2026-11-0{day}/part.csv")), &text);
    }
    let job = dir.join("window.toml");
    write(
        &job,
        r#"name = "window"
[params]
as_of = { type = "date" }
[sources.ev]
url = "ev/"
format = "csv"
partitions = ["dt"]
schema = "user_id string, v bigint, x double, w bigint"
drop.negative = "v < 0"
checks = { min_rows = 1, max_dropped_rate = "50%" }
[[step]]
name = "per_day"
query = "SELECT dt, user_id, v, x, w FROM ev"
incremental = { source = "ev", days = 4 }
[[step]]
name = "w3"
query = """SELECT dt, user_id, SUM(v) AS total, MIN(v) AS low, MAX(v) AS high, SUM(x) AS fsum,
  MIN(CAST(dt AS DATE)) AS first_day, MAX(CAST(dt AS DATE)) AS last_day, COUNT(*) AS n,
  SUM(w) AS wsum
  FROM per_day GROUP BY dt, user_id"""
incremental = { source = "per_day", days = 3, merge_by = ["user_id"], merge = { total = "sum", low = "min", high = "max", fsum = "sum", first_day = "min", last_day = "max", n = "sum", wsum = "sum" } }
[[export]]
table = "w3"
to = "w3.csv"
order_by = ["user_id"]
"#,
    );
    job
}

#[test]
fn a_window_rollup_takes_days_out_and_equals_a_full_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let job = window_job(tmp.path());
    let out = tmp.path().join("out");
    let run = |date: &str, extra: &[&str]| {
        ok(bin()
            .arg("run")
            .arg(&job)
            .args(["--date", date, "--output"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap())
    };
    let file =
        |date: &str| std::fs::read_to_string(published_at(&out, date).join("w3.csv")).unwrap();
    run("2026-11-04", &[]);
    for date in ["2026-11-05", "2026-11-06", "2026-11-07"] {
        let text = run(date, &[]);
        let expected = match date {
            // The first null of an exact sum: its values are counted from now on.
            "2026-11-06" => "all 3 days merged (column `wsum` has nulls now)",
            _ => "1 days merged into the kept rows, 1 taken out (2 days kept as they were)",
        };
        assert!(text.contains(expected), "{date}: {text}");
        let nightly = file(date);
        let text = run(date, &["--full-refresh"]);
        assert!(
            text.contains("all 3 days merged (--full-refresh)"),
            "{text}"
        );
        assert_eq!(nightly, file(date), "{date}: the night equals a full merge");
    }
    // The dirty-row counts are kept per day: a changed day is counted again, the others not.
    let summary = run("2026-11-07", &[]);
    assert!(
        summary.contains("dirty rows left out: negative 1"),
        "{summary}"
    );
    let day5 = tmp.path().join("ev/dt=2026-11-05/part.csv");
    let text = std::fs::read_to_string(&day5).unwrap() + "f,-5,0.1,1\n";
    write(&day5, &text);
    let summary = run("2026-11-07", &[]);
    assert!(
        summary.contains("dirty rows left out: negative 2"),
        "{summary}"
    );
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("state/sources/ev/dropped.json")).unwrap())
            .unwrap();
    assert_eq!(kept["days"].as_object().unwrap().len(), 6, "{kept}");
    assert_eq!(kept["days"]["2026-11-05"]["values"][0], 1.0, "{kept}");
    let summary = run("2026-11-07", &["--full-refresh"]);
    assert!(
        summary.contains("dirty rows left out: negative 2"),
        "{summary}"
    );
    // A changed cleaning rule changes every day's rows: each is computed and counted again.
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("\"v < 0\"", "\"v < -3\"");
    write(&job, &text);
    let summary = run("2026-11-07", &[]);
    assert!(
        summary.contains("dirty rows left out: negative 1"),
        "{summary}"
    );
    assert!(summary.contains("4 days computed, 0 reused"), "{summary}");
    // Window 2026-11-04 .. 06: `b` and `c`'s first day left; `c` keeps a row of nulls and one
    // counted row; `a`'s min is the 5th's 1, merged again after the 1st and 2nd left.
    let last = file("2026-11-07");
    let lines: Vec<&str> = last.lines().collect();
    assert_eq!(
        lines[0], "user_id,first_day,fsum,high,last_day,low,n,total,wsum",
        "{last}"
    );
    assert_eq!(
        lines[1], "a,2026-11-04,1.125,9,2026-11-06,1,3,14,2",
        "{last}"
    );
    assert_eq!(lines[2], "c,2026-11-04,,,2026-11-04,,1,,1", "{last}");
    assert_eq!(lines[3], "d,2026-11-06,0.5,3,2026-11-06,3,1,3,1", "{last}");
    assert_eq!(lines.len(), 4, "{last}");
}
