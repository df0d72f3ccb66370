//! Dirty data, quality gates and schema drift: each dirty kind is left out and counted, each
//! gate stops the run with exit 65 naming the gate, its value and threshold, and nothing is
//! published.

use std::path::{Path, PathBuf};

use crate::common::*;

const HEADER: &str = "order_id,user_id,ts,amount,kind\n";
/// Clean rows: amounts 10 + 20 + 30 + 40 over four users.
const CLEAN: &str = "o1,u1,2026-11-20 10:00:00,10.0,purchase\n\
o2,u2,2026-11-21 11:00:00,20.0,purchase\n\
o3,u3,2026-11-22 12:00:00,30.0,refund_request\n\
o4,u4,2026-11-23 13:00:00,40.0,purchase\n";

const SOURCE: &str = r#"[sources.orders]
url = "../in/orders.csv"
format = "csv"
schema = "order_id string, user_id string, ts timestamp, amount double, kind string"
bad_rows = "skip"
dedupe = ["order_id"]
[sources.orders.drop]
null_user = "user_id IS NULL"
negative_amount = "amount < 0"
future = "ts >= CAST($as_of AS TIMESTAMP)"
unknown_kind = "kind NOT IN ('purchase', 'refund_request')"
"#;

struct Case {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Case {
    /// A job over `orders.csv` (header + `rows`) with the cleaning rules above, `extra` TOML
    /// appended (checks, segments), a total step, and a segment of every buyer.
    fn new(rows: &str, checks: &str, extra: &str) -> Case {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        write(&dir.join("in/orders.csv"), &format!("{HEADER}{rows}"));
        write(
            &dir.join("jobs/q.toml"),
            &format!(
                r#"name = "q"
output = "../out"
[params]
as_of = {{ type = "date" }}
{SOURCE}{checks}
[[step]]
name = "totals"
query = "SELECT COUNT(*) AS orders, SUM(amount) AS amount FROM orders"
[[export]]
table = "totals"
to = "totals.csv"
{extra}
"#
            ),
        );
        Case { _tmp: tmp, dir }
    }

    fn run(&self, date: &str) -> std::process::Output {
        bin()
            .arg("run")
            .arg(self.dir.join("jobs/q.toml"))
            .args(["--date", date])
            .output()
            .unwrap()
    }

    fn published(&self, date: &str) -> Option<PathBuf> {
        let p = self.dir.join(format!("out/{date}/current.json"));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
        Some(self.dir.join("out").join(v["run"].as_str()?))
    }

    fn manifest(&self, date: &str) -> serde_json::Value {
        let run = self.published(date).expect("published");
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap()
    }

    /// (orders, amount) of the published totals.
    fn totals(&self, date: &str) -> (String, String) {
        let run = self.published(date).expect("published");
        let text = std::fs::read_to_string(run.join("totals.csv")).unwrap();
        let line = text.lines().nth(1).unwrap().to_string();
        let (a, b) = line.split_once(',').unwrap();
        (a.to_string(), b.to_string())
    }
}

/// Runs one dirty row beside the clean ones; the totals stay those of the clean rows and the
/// rule's count is 1 (every other rule 0).
fn dirty_row_is_left_out(row: &str, rule: &str) {
    let c = Case::new(&format!("{CLEAN}{row}\n"), "", "");
    let res = c.run("2026-11-24");
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    assert_eq!(
        c.totals("2026-11-24"),
        ("4".into(), "100.0".into()),
        "{text}"
    );
    let m = c.manifest("2026-11-24");
    let dropped = &m["inputs"][0]["dropped"];
    for r in [
        "unparsable",
        "null_user",
        "negative_amount",
        "future",
        "unknown_kind",
        "duplicate",
    ] {
        let want = u64::from(r == rule);
        assert_eq!(dropped[r].as_u64(), Some(want), "{r} in {dropped}");
    }
    assert!(
        text.contains(&format!("{rule} 1")),
        "the summary reports it: {text}"
    );
}

#[test]
fn null_ids_are_left_out_and_counted() {
    dirty_row_is_left_out("o9,,2026-11-20 10:00:00,5.0,purchase", "null_user");
}

#[test]
fn duplicate_orders_are_left_out_and_counted() {
    dirty_row_is_left_out("o2,u2,2026-11-21 11:00:00,20.0,purchase", "duplicate");
}

#[test]
fn negative_amounts_are_left_out_and_counted() {
    dirty_row_is_left_out("o9,u9,2026-11-20 10:00:00,-5.0,purchase", "negative_amount");
}

#[test]
fn future_timestamps_are_left_out_and_counted() {
    dirty_row_is_left_out("o9,u9,2026-11-30 10:00:00,5.0,purchase", "future");
}

#[test]
fn unknown_action_kinds_are_left_out_and_counted() {
    dirty_row_is_left_out("o9,u9,2026-11-20 10:00:00,5.0,teleport", "unknown_kind");
}

#[test]
fn unparsable_csv_rows_are_left_out_and_counted() {
    dirty_row_is_left_out("o9,u9,yesterday-ish,5.0,purchase", "unparsable");
}

#[test]
fn unparsable_json_rows_exit_65_naming_the_source() {
    let (tmp, res) = run_json_job(
        "{\"user_id\": \"u1\", \"kind\": \"like\"}\n{\"user_id\": \"u2\", \"kind\": \n",
        "user_id string, kind string",
        "",
    );
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(65), "{text}");
    assert!(text.contains("source `events`"), "{text}");
    assert!(!tmp.path().join("out").join("undated/current.json").exists());
}

/// Runs a job over `events.json` holding `lines`: a count and sum step exported to `n.csv`.
fn run_json_job(
    lines: &str,
    schema: &str,
    extra: &str,
) -> (tempfile::TempDir, std::process::Output) {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("in/events.json"), lines);
    let sum = if schema.contains(" n int") {
        ", SUM(n) AS total"
    } else {
        ""
    };
    write(
        &tmp.path().join("jobs/j.toml"),
        &format!("name = \"j\"\noutput = \"../out\"\n[sources]\nevents = {{ url = \"../in/events.json\", format = \"json\", schema = \"{schema}\"{extra} }}\n[[step]]\nname = \"n\"\nquery = \"SELECT COUNT(*) AS n{sum} FROM events\"\n[[export]]\ntable = \"n\"\nto = \"n.csv\"\n"),
    );
    let res = bin()
        .arg("run")
        .arg(tmp.path().join("jobs/j.toml"))
        .output()
        .unwrap();
    (tmp, res)
}

/// Runs a case expected to fail one gate: exit 65, the gate, value and threshold named, and
/// nothing published for the date.
fn gate_fails(c: &Case, date: &str, needles: &[&str]) {
    let res = c.run(date);
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(65), "{text}");
    for n in needles {
        assert!(text.contains(n), "`{n}` in: {text}");
    }
    assert!(c.published(date).is_none(), "nothing published: {text}");
}

#[test]
fn source_min_rows_gate() {
    let c = Case::new(CLEAN, "[sources.orders.checks]\nmin_rows = 5\n", "");
    gate_fails(
        &c,
        "2026-11-24",
        &["source orders: min_rows", "measured 4", ">= 5"],
    );
}

#[test]
fn source_null_rate_gate() {
    let rows = format!("{CLEAN}o5,u5,2026-11-20 10:00:00,,purchase\n");
    let c = Case::new(
        &rows,
        "[sources.orders.checks]\nmax_null_rate = { amount = \"10%\" }\n",
        "",
    );
    gate_fails(
        &c,
        "2026-11-24",
        &["max_null_rate.amount", "measured 0.2000", "<= 0.1"],
    );
}

#[test]
fn source_unique_gate() {
    let rows = format!("{CLEAN}o5,u1,2026-11-20 10:00:00,1.0,purchase\n");
    let c = Case::new(
        &rows,
        "[sources.orders.checks]\nunique = [\"user_id\"]\n",
        "",
    );
    gate_fails(&c, "2026-11-24", &["unique.user_id", "measured 1", "= 0"]);
}

#[test]
fn source_range_gate() {
    let c = Case::new(
        CLEAN,
        "[sources.orders.checks]\nrange = { amount = [0, 35] }\n",
        "",
    );
    gate_fails(&c, "2026-11-24", &["range.amount", "measured 1", "[0, 35]"]);
}

#[test]
fn source_freshness_gate() {
    // The newest order is from 2026-11-23: 3 days before as_of 2026-11-26.
    let c = Case::new(
        CLEAN,
        "[sources.orders.checks]\nfresh = { column = \"ts\", max_days = 2 }\n",
        "",
    );
    gate_fails(&c, "2026-11-26", &["fresh.ts", "measured 3", "<= 2"]);
    let ok = c.run("2026-11-25");
    assert!(ok.status.success(), "{}", output_text(&ok));
}

#[test]
fn dropped_rate_gate() {
    let rows = format!("{CLEAN}o9,,2026-11-20 10:00:00,5.0,purchase\n");
    let c = Case::new(
        &rows,
        "[sources.orders.checks]\nmax_dropped_rate = \"10%\"\n",
        "",
    );
    gate_fails(
        &c,
        "2026-11-24",
        &["max_dropped_rate", "measured 0.2000", "<= 0.1"],
    );
}

#[test]
fn step_row_count_gate() {
    let c = Case::new(CLEAN, "", "");
    let job = c.dir.join("jobs/q.toml");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("name = \"totals\"\n", "name = \"totals\"\nmin_rows = 2\n");
    std::fs::write(&job, text).unwrap();
    gate_fails(
        &c,
        "2026-11-24",
        &["step totals: min_rows", "measured 1", ">= 2"],
    );
}

const SEGMENT: &str = r#"
[publish]
holdout = "0%"
[[segment]]
name = "buyers"
query = "SELECT DISTINCT user_id FROM orders WHERE kind = 'purchase'"
"#;

#[test]
fn segment_size_gates() {
    let c = Case::new(CLEAN, "", &format!("{SEGMENT}min_size = 4\n"));
    gate_fails(
        &c,
        "2026-11-24",
        &["segment buyers: min_size", "measured 3", ">= 4"],
    );
    let c = Case::new(CLEAN, "", &format!("{SEGMENT}max_size = 2\n"));
    gate_fails(
        &c,
        "2026-11-24",
        &["segment buyers: max_size", "measured 3", "<= 2"],
    );
}

#[test]
fn segment_change_gate_against_the_previous_run() {
    let c = Case::new(CLEAN, "", &format!("{SEGMENT}max_change = \"50%\"\n"));
    let first = c.run("2026-11-24");
    assert!(first.status.success(), "{}", output_text(&first));
    let m = c.manifest("2026-11-24");
    assert_eq!(m["segments"][0]["target"].as_u64(), Some(3));
    // The next day only one buyer is left: 3 → 1 is a 67% drop.
    write(
        &c.dir.join("in/orders.csv"),
        &format!("{HEADER}o1,u1,2026-11-20 10:00:00,10.0,purchase\n"),
    );
    gate_fails(
        &c,
        "2026-11-25",
        &["segment buyers: max_change", "measured 0.6667", "<= 0.5"],
    );
    // The last good publication is untouched.
    assert!(c.published("2026-11-24").is_some());
}

#[test]
fn passing_gates_are_recorded_with_their_values() {
    let c = Case::new(
        CLEAN,
        "[sources.orders.checks]\nmin_rows = 4\nunique = [\"order_id\"]\nrange = { amount = [0, 100] }\n",
        "",
    );
    let res = c.run("2026-11-24");
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    let gates = c.manifest("2026-11-24")["gates"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(gates.len(), 3, "{gates:?}");
    assert!(gates.iter().all(|g| g["passed"] == true), "{gates:?}");
    assert_eq!(gates[0]["measured"].as_f64(), Some(4.0));
    assert!(text.contains("quality gates: 3 passed"), "{text}");
}

fn drift_job(dir: &Path, expect: &str) -> PathBuf {
    // A Parquet source written by the engine itself from CSV.
    write(&dir.join("in/orders.csv"), &format!("{HEADER}{CLEAN}"));
    write(
        &dir.join("jobs/make.toml"),
        "name = \"make\"\noutput = \"../made\"\n[sources]\norders = { url = \"../in/orders.csv\", format = \"csv\", schema = \"order_id string, user_id string, ts timestamp, amount string, kind string\" }\n[[step]]\nname = \"o\"\nquery = \"SELECT order_id, user_id, ts, amount FROM orders\"\n[[export]]\ntable = \"o\"\nto = \"orders.parquet\"\n",
    );
    let res = bin()
        .arg("run")
        .arg(dir.join("jobs/make.toml"))
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", output_text(&res));
    let ptr: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("made/undated/current.json")).unwrap())
            .unwrap();
    let file = dir
        .join("made")
        .join(ptr["run"].as_str().unwrap())
        .join("orders.parquet");
    let job = dir.join("jobs/d.toml");
    write(
        &job,
        &format!("name = \"d\"\noutput = \"../out\"\n[sources.orders]\nurl = \"{}\"\nformat = \"parquet\"\nexpect = \"{expect}\"\n[[step]]\nname = \"n\"\nquery = \"SELECT COUNT(*) AS n FROM orders\"\n", file.display()),
    );
    job
}

#[test]
fn schema_drift_is_reported_by_check_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let job = drift_job(tmp.path(), "user_id string, amount double, kind string");
    for cmd in ["check", "run"] {
        let res = bin().arg(cmd).arg(&job).output().unwrap();
        let text = output_text(&res);
        assert_eq!(res.status.code(), Some(65), "{cmd}: {text}");
        assert!(text.contains("source `orders`"), "{cmd}: {text}");
        assert!(
            text.contains("column `amount`: expected double, found string"),
            "{cmd}: {text}"
        );
        assert!(
            text.contains("column `kind`: expected string, found no such column"),
            "{cmd}: {text}"
        );
    }
}

#[test]
fn unparsable_json_rows_are_left_out_and_counted_when_skipped() {
    let (tmp, res) = run_json_job(
        "{\"user_id\": \"u1\", \"kind\": \"like\", \"n\": 2}\n\
         {\"user_id\": \"u2\", \"kind\": \n\
         {\"user_id\": \"u3\", \"kind\": \"share\", \"n\": \"many\"}\n\
         [1, 2]\n\
         {\"user_id\": \"u4\", \"kind\": \"like\"}\n",
        "user_id string, kind string, n int",
        ", bad_rows = \"skip\"",
    );
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    assert!(text.contains("unparsable 3"), "{text}");
    let run = published_at(&tmp.path().join("out"), "undated");
    assert_eq!(
        std::fs::read_to_string(run.join("n.csv")).unwrap(),
        "n,total\n2,2\n"
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["inputs"][0]["dropped"]["unparsable"], 3);
}
