//! `check`: every problem reported with file:line:col, the step, and a hint; exit 78.

use crate::common::*;

fn job_with_sql(dir: &std::path::Path, sql: &str, extra: &str) -> std::path::PathBuf {
    write(
        &dir.join("in/people.csv"),
        "user_id,age,city\nu1,30,sh\nu2,41,bj\n",
    );
    write(&dir.join("sql/step.sql"), sql);
    let job = dir.join("jobs/j.toml");
    write(
        &job,
        &format!(
            r#"name = "j"
[sources]
people = {{ url = "../in/people.csv", format = "csv" }}
{extra}
[[step]]
name = "adults"
sql = "../sql/step.sql"
"#
        ),
    );
    job
}

#[test]
fn sql_typo_reports_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job_with_sql(
        tmp.path(),
        "SELECT user_id,\n       age\nFROM people\nWHER age > 18\n",
        "",
    );
    let res = bin().arg("check").arg(&job).output().unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(78), "{text}");
    assert!(
        text.contains("step.sql:4:6"),
        "line and column of the unexpected token: {text}"
    );
    assert!(text.contains("[adults]"), "names the step: {text}");
}

#[test]
fn unknown_column_names_nearest_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job_with_sql(
        tmp.path(),
        "SELECT user_id,\n       agee\nFROM people\n",
        "",
    );
    for cmd in ["check", "run"] {
        let res = bin().arg(cmd).arg(&job).output().unwrap();
        let text = output_text(&res);
        assert_eq!(res.status.code(), Some(78), "{cmd}: {text}");
        assert!(text.contains("step.sql:2:8"), "{cmd}: {text}");
        assert!(text.contains("unknown column `agee`"), "{cmd}: {text}");
        assert!(text.contains("nearest columns: age"), "{cmd}: {text}");
        assert!(text.contains("[adults]"), "{cmd}: {text}");
    }
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job_with_sql(
        tmp.path(),
        "SELECT user_id FROM people",
        "[[step]]\nname = \"bad1\"\nquery = \"SELECT nope FROM people\"\n[[step]]\nname = \"bad2\"\nquery = \"SELECT $missing_param AS x\"\n",
    );
    let res = bin().arg("check").arg(&job).output().unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(78), "{text}");
    assert!(text.contains("[bad1]") && text.contains("[bad2]"), "{text}");
    assert!(text.contains("2 problems"), "{text}");
    // Inline SQL errors point into the job file.
    assert!(text.contains("j.toml:6:"), "{text}");
}

#[test]
fn unknown_job_key_names_key_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("jobs/typo.toml");
    write(
        &job,
        "name = \"t\"\n\n[[step]]\nname = \"a\"\nqury = \"SELECT 1\"\n",
    );
    let res = bin().arg("check").arg(&job).output().unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(78), "{text}");
    assert!(text.contains("typo.toml:5:1"), "{text}");
    assert!(text.contains("unknown field `qury`"), "{text}");
}

#[test]
fn job_that_is_not_toml_gives_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("jobs/broken.toml");
    write(&job, "name = \"t\"\n[params\nx = 1\n");
    let res = bin().arg("check").arg(&job).output().unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(78), "{text}");
    assert!(text.contains("broken.toml:2:"), "{text}");
}

#[test]
fn missing_source_is_reported_by_check() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job_with_sql(
        tmp.path(),
        "SELECT user_id FROM people",
        "ghosts = { url = \"../in/ghosts/\", format = \"parquet\" }\n",
    );
    // `ghosts` sits under [sources] because `extra` follows that table.
    let res = bin().arg("check").arg(&job).output().unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(66), "{text}");
    assert!(text.contains("source `ghosts` not found"), "{text}");
    assert!(text.contains("in/ghosts"), "names the URL: {text}");
}

#[test]
fn param_default_of_wrong_type_is_a_job_error() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("jobs/p.toml");
    write(
        &job,
        "name = \"p\"\n[params]\nn = { type = \"int\", default = \"ten\" }\n",
    );
    let res = bin().arg("check").arg(&job).output().unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(78), "{text}");
    assert!(
        text.contains("param `n`") && text.contains("not an int"),
        "{text}"
    );
}

#[test]
fn demo_job_checks_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 200);
    let res = bin()
        .args(["check", "jobs/demo.toml", "--date", "2026-11-24", "--param"])
        .arg(format!("data={}", data.display()))
        .output()
        .unwrap();
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    assert!(text.contains("11 steps planned"), "{text}");
}
