//! `run`, `demo`, `preview` and `sql` through the real binary.

use datafusion::arrow::array::{Array, Int64Array, StringArray};

use crate::common::*;

#[test]
fn demo_generates_and_runs_the_demo_job() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // Outside a checkout: the embedded job and SQL are written beside the data and run.
    let res = bin()
        .current_dir(tmp.path())
        .args(["demo", "--users", "3000", "--dir"])
        .arg(tmp.path().join("data"))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    assert!(
        text.contains("user_features"),
        "summary names the steps: {text}"
    );
    let batches = read_parquet(&published(&out).join("user_features.parquet"));
    assert_eq!(rows(&batches), 3000, "one row per user");
    // Rows are written in user_id order.
    let mut prev = String::new();
    let mut total_orders = 0i64;
    let mut reach = 0i64;
    for b in &batches {
        let ids = column::<StringArray>(b, "user_id");
        for i in 0..ids.len() {
            assert!(ids.value(i) > prev.as_str());
            prev = ids.value(i).to_string();
        }
        total_orders += column::<Int64Array>(b, "orders_90d")
            .iter()
            .flatten()
            .sum::<i64>();
        reach += column::<Int64Array>(b, "social_reach_90d")
            .iter()
            .flatten()
            .sum::<i64>();
    }
    assert!(total_orders > 3000, "orders were counted: {total_orders}");
    assert!(reach > 0, "shares brought other users in");
    assert!(tmp.path().join("data/job/jobs/demo.toml").exists());
    assert!(tmp
        .path()
        .join("data/job/sql/lifecycle/stages.sql")
        .exists());
    // The ground truth is written beside the data, never read by the job.
    assert!(tmp.path().join("data/truth.parquet").exists());
    assert!(tmp
        .path()
        .join("data/orders/dt=2026-11-23/part-0.parquet")
        .exists());
}

#[test]
fn rerun_gives_byte_identical_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 1500);
    let mut files = Vec::new();
    for run in ["a", "b"] {
        let out = tmp.path().join(run);
        let res = bin()
            .args(["run", "jobs/demo.toml", "--date", "2026-11-24", "--param"])
            .arg(format!("data={}", data.display()))
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap();
        assert!(res.status.success(), "{}", output_text(&res));
        files.push(std::fs::read(published(&out).join("user_features.parquet")).unwrap());
    }
    assert!(!files[0].is_empty());
    assert!(
        files[0] == files[1],
        "same inputs and params must give the same bytes"
    );
}

#[test]
fn demo_data_is_deterministic() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    demo_data(a.path(), 500);
    demo_data(b.path(), 500);
    for f in [
        "data/users.parquet",
        "data/truth.parquet",
        "data/orders/dt=2026-10-01/part-0.parquet",
    ] {
        assert_eq!(
            std::fs::read(a.path().join(f)).unwrap(),
            std::fs::read(b.path().join(f)).unwrap(),
            "{f}"
        );
    }
}

/// A job whose inline query returns its typed params.
fn params_job(dir: &std::path::Path) -> std::path::PathBuf {
    let job = dir.join("jobs/params.toml");
    write(
        &job,
        r#"name = "params"
[params]
as_of = { type = "date" }
n = { type = "int", default = 2 }
ratio = { type = "float", default = 0.5 }
flag = { type = "bool", default = false }
label = { type = "string", default = "x" }

[[step]]
name = "p"
query = "SELECT CAST($as_of AS DATE) + INTERVAL '1 day' AS next_day, $n * 10 AS n10, $ratio * 2 AS r2, NOT $flag AS nflag, $label || '!' AS l"

[[export]]
table = "p"
to = "p_{as_of}.csv"
"#,
    );
    job
}

#[test]
fn typed_params_reach_sql() {
    let tmp = tempfile::tempdir().unwrap();
    let job = params_job(tmp.path());
    let out = tmp.path().join("out");
    let res = bin()
        .arg("run")
        .arg(&job)
        .args([
            "--date",
            "2026-11-24",
            "-p",
            "n=7",
            "-p",
            "label=hi",
            "-p",
            "flag=true",
            "--output",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", output_text(&res));
    let csv = std::fs::read_to_string(published(&out).join("p_2026-11-24.csv")).unwrap();
    assert_eq!(
        csv,
        "next_day,n10,r2,nflag,l\n2026-11-25,70,1.0,false,hi!\n"
    );
}

#[test]
fn param_of_wrong_type_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let job = params_job(tmp.path());
    let res = bin()
        .arg("run")
        .arg(&job)
        .args(["--date", "2026-11-24", "-p", "n=seven"])
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(64), "{}", output_text(&res));
    let text = output_text(&res);
    assert!(
        text.contains("param `n` (int)") && text.contains("seven"),
        "{text}"
    );
    let res = bin()
        .arg("run")
        .arg(&job)
        .args(["--date", "24/11/2026"])
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(64));
    assert!(output_text(&res).contains("YYYY-MM-DD"));
    // A param without a default is required (`as_of` alone defaults to yesterday).
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("[params]\n", "[params]\nregion = { type = \"string\" }\n");
    std::fs::write(&job, text).unwrap();
    let res = bin().arg("run").arg(&job).output().unwrap();
    assert_eq!(res.status.code(), Some(64));
    assert!(
        output_text(&res).contains("param `region` (string) is required")
            && output_text(&res).contains("--param region=VALUE"),
        "{}",
        output_text(&res)
    );
}

#[test]
fn csv_and_json_sources_with_declared_schema() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("in/people.csv"),
        "user_id,age\nu1,30\nu2,41\nu3,\n",
    );
    write(
        &tmp.path().join("in/events/part-1.json"),
        "{\"user_id\":\"u1\",\"amount\":2.5}\n{\"user_id\":\"u1\",\"amount\":1.5}\n{\"user_id\":\"u3\",\"amount\":4.0}\n",
    );
    let job = tmp.path().join("jobs/mixed.toml");
    write(
        &job,
        r#"name = "mixed"
[sources]
people = { url = "../in/people.csv", format = "csv", schema = "user_id string, age int" }
events = { url = "../in/events/", format = "json" }

[[step]]
name = "joined"
query = """
SELECT p.user_id, p.age, COALESCE(SUM(e.amount), 0) AS spend
FROM people p LEFT JOIN events e ON p.user_id = e.user_id
GROUP BY p.user_id, p.age
"""

[[export]]
table = "joined"
to = "joined.csv"
"#,
    );
    let res = bin().arg("run").arg(&job).output().unwrap();
    assert!(res.status.success(), "{}", output_text(&res));
    // Default output: ../out/{job} relative to the job file.
    let csv = std::fs::read_to_string(published(&tmp.path().join("out/mixed")).join("joined.csv"))
        .unwrap();
    assert_eq!(csv, "user_id,age,spend\nu1,30,4.0\nu2,41,0.0\nu3,,4.0\n");
}

#[test]
fn preview_shows_schema_and_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 300);
    let res = bin()
        .args([
            "preview",
            "jobs/demo.toml",
            "--date",
            "2026-11-24",
            "--step",
            "user_features",
            "--limit",
            "3",
            "--param",
        ])
        .arg(format!("data={}", data.display()))
        .output()
        .unwrap();
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    assert!(
        text.contains("social_reach_90d") && text.contains("Int64"),
        "{text}"
    );
    assert!(text.contains("| u00000"), "first rows shown: {text}");
}

#[test]
fn sql_command_runs_one_query() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 300);
    let res = bin()
        .args([
            "sql",
            "jobs/demo.toml",
            "--date",
            "2026-11-24",
            "-e",
            "SELECT COUNT(*) AS n FROM user_features WHERE brand_orders_90d >= 0",
            "--param",
        ])
        .arg(format!("data={}", data.display()))
        .output()
        .unwrap();
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    assert!(text.contains("| 300 |"), "{text}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let job = params_job(tmp.path());
    let res = bin()
        .env("RUST_LOG", "audiences=info")
        .args(["--log-format", "json", "run"])
        .arg(&job)
        .args(["--date", "2026-11-24", "--output"])
        .arg(tmp.path().join("o"))
        .output()
        .unwrap();
    assert!(res.status.success());
    let stderr = String::from_utf8_lossy(&res.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"));
        assert!(v.get("level").is_some(), "{l}");
    }
}

#[test]
fn step_results_larger_than_the_budget_spill_and_give_the_same_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 8000);
    let job = tmp.path().join("jobs/spill.toml");
    write(
        &job,
        &format!(
            r#"name = "spill"
output = "../out"
[sources]
social_events = {{ url = "{}/social_events/", format = "parquet", partitions = ["dt"] }}
[[step]]
name = "events_all"
query = "SELECT user_id, ts, action, brand, dt FROM social_events"
[[step]]
name = "per_user"
query = "SELECT user_id, action, COUNT(*) AS n, MAX(ts) AS last_ts FROM events_all GROUP BY user_id, action"
[[export]]
table = "per_user"
to = "per_user.parquet"
order_by = ["user_id", "action"]
"#,
            data.display()
        ),
    );
    let mut files = Vec::new();
    let spill = tmp.path().join("spill");
    std::fs::create_dir(&spill).unwrap();
    for (run, limit) in [("small", "32MiB"), ("large", "2GiB")] {
        let out = tmp.path().join(run);
        let res = bin()
            .arg("run")
            .arg(&job)
            .args(["--memory-limit", limit, "--spill-dir"])
            .arg(&spill)
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap();
        let text = output_text(&res);
        assert!(res.status.success(), "{text}");
        // A quarter of 32 MiB is below the size of the 180 days of events: that step spills.
        assert_eq!(
            text.lines()
                .any(|l| l.contains("events_all") && l.contains("spilled")),
            run == "small",
            "{text}"
        );
        files.push(std::fs::read(published_at(&out, "undated").join("per_user.parquet")).unwrap());
        // Spilled step results belong to the run: nothing is left in the spill folder.
        let left: Vec<_> = std::fs::read_dir(&spill).unwrap().collect();
        assert!(left.is_empty(), "{run}: left behind {left:?}");
    }
    assert!(
        files[0] == files[1],
        "spilled and in-memory step results give the same bytes"
    );
}

#[test]
fn a_budget_too_small_fails_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 2000);
    let res = bin()
        .args([
            "run",
            "jobs/demo.toml",
            "--date",
            "2026-11-24",
            "--memory-limit",
            "2MiB",
            "--param",
        ])
        .arg(format!("data={}", data.display()))
        .arg("--output")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(1), "{text}");
    assert!(
        text.contains("out of memory budget") && text.contains("raise --memory-limit"),
        "{text}"
    );
    assert!(
        !tmp.path().join("out/2026-11-24/current.json").exists(),
        "nothing published"
    );
}

#[test]
fn a_transient_step_is_released_after_its_last_reader_and_an_exported_one_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 1000);
    let job = tmp.path().join("jobs/transient.toml");
    write(
        &job,
        &format!(
            r#"name = "transient"
output = "../out"
[sources]
orders = {{ url = "{}/orders/", format = "parquet", partitions = ["dt"] }}
[[step]]
name = "order_rows"
query = "SELECT user_id, amount FROM orders WHERE amount > 0"
transient = true
[[step]]
name = "per_user"
query = "SELECT user_id, COUNT(*) AS n, SUM(amount) AS spend FROM order_rows GROUP BY user_id"
transient = true
[[step]]
name = "big_spenders"
query = "SELECT user_id FROM per_user WHERE spend > 100"
[[export]]
table = "per_user"
to = "per_user.parquet"
"#,
            data.display()
        ),
    );
    let res = bin()
        .arg("run")
        .arg(&job)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    let released: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("transient table released"))
        .collect();
    // order_rows goes once per_user has read it; per_user stays for its export.
    assert_eq!(released.len(), 1, "{text}");
    assert!(released[0].contains("order_rows"), "{text}");
    let exported = published_at(&tmp.path().join("out"), "undated").join("per_user.parquet");
    assert!(std::fs::metadata(&exported).unwrap().len() > 0);
}

#[test]
fn string_view_reads_a_parquet_source_as_views_and_is_refused_on_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 300);
    let job = tmp.path().join("jobs/views.toml");
    let text = |format: &str, url: &str| {
        format!(
            r#"name = "views"
output = "../out"
[sources]
users = {{ url = "{url}", format = "{format}", string_view = true }}
[[step]]
name = "ids"
query = "SELECT user_id FROM users"
"#
        )
    };
    write(
        &job,
        &text("parquet", &data.join("users.parquet").display().to_string()),
    );
    let res = bin()
        .args(["preview"])
        .arg(&job)
        .args(["--step", "ids", "--limit", "1"])
        .output()
        .unwrap();
    let out = output_text(&res);
    assert!(res.status.success(), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("user_id") && l.contains("Utf8View")),
        "{out}"
    );
    write(
        &job,
        &text("csv", &data.join("optouts.csv").display().to_string()),
    );
    let res = bin().arg("check").arg(&job).output().unwrap();
    let out = output_text(&res);
    assert_eq!(res.status.code(), Some(78), "{out}");
    assert!(
        out.contains("users") && out.contains("`string_view` applies to parquet sources"),
        "{out}"
    );
}

#[test]
fn exports_break_ties_of_their_order_by_keys_on_every_column() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("in/rows.csv"),
        "k,v,w\nb,2,x\na,3,y\nb,1,z\na,3,a\nc,0,q\n",
    );
    let job = tmp.path().join("jobs/order.toml");
    write(
        &job,
        r#"name = "order"
output = "../out"
[sources]
rows = { url = "../in/rows.csv", format = "csv" }
[[step]]
name = "t"
query = "SELECT k, v, w FROM rows"
[[export]]
table = "t"
to = "by_k.csv"
order_by = ["k"]
[[export]]
table = "t"
to = "by_w.csv"
order_by = ["w"]
"#,
    );
    let res = bin().arg("run").arg(&job).output().unwrap();
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    let folder = published_at(&tmp.path().join("out"), "undated");
    // `k` repeats: ties are broken by `v`, then `w`.
    assert_eq!(
        std::fs::read_to_string(folder.join("by_k.csv")).unwrap(),
        "k,v,w\na,3,a\na,3,y\nb,1,z\nb,2,x\nc,0,q\n"
    );
    // `w` is unique: its order is the whole order.
    assert_eq!(
        std::fs::read_to_string(folder.join("by_w.csv")).unwrap(),
        "k,v,w\na,3,a\nc,0,q\nb,2,x\na,3,y\nb,1,z\n"
    );
}
