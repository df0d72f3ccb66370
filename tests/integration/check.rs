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
    assert!(text.contains("19 steps planned"), "{text}");
}

/// A job whose export names the identities column `column`; every segment would fall under
/// `min_size`, so without the static checks first a bad column published.
fn job_with_export_column(column: &str) -> JobDir {
    JobDir::new(&format!(
        r#"name = "j"
[sources]
people = {{ url = "../in/people.csv", format = "csv" }}
[[segment]]
name = "all"
query = "SELECT user_id FROM people"
[publish]
identities = "people"
[[export]]
segments = ["all"]
format = "meta_custom_audience"
fields = {{ email = "{column}" }}
min_size = 1000
"#
    ))
    .file("in/people.csv", "user_id,email\nu1,a@x.com\nu2,b@x.com\n")
}

#[test]
fn run_makes_the_static_checks_first_with_checks_message_and_code() {
    let job = job_with_export_column("emial_address");
    let (check, run) = (job.run("check", &[]), job.run("run", &[]));
    assert_eq!(check.code(), Some(78), "{}", check.text());
    assert_eq!(run.code(), Some(78), "{}", run.text());
    let problem =
        "[export 1 (meta_custom_audience)] identities table `people` has no column `emial_address`";
    assert!(check.text().contains(problem), "{}", check.text());
    assert!(
        run.text().contains(problem),
        "the same message: {}",
        run.text()
    );
    assert!(
        !run.out.join("undated/current.json").exists(),
        "nothing published"
    );
    // The same job with the column spelt right publishes (its segment is too small to export).
    let fixed = job_with_export_column("email");
    let ran = fixed.run("run", &[]);
    let manifest = std::fs::read_to_string(ran.published("undated").join("manifest.json")).unwrap();
    assert!(manifest.contains("\"all\""), "{manifest}");
}

#[test]
fn a_key_of_another_step_kind_fails_check_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job_with_sql(tmp.path(), "SELECT user_id, age FROM people", "");
    let text = std::fs::read_to_string(&job).unwrap()
        + "[[step]]\nname = \"clusters\"\nkind = \"kmeans\"\ninput = \"adults\"\nk = 2\nreach = [\"5%\"]\n";
    std::fs::write(&job, text).unwrap();
    for cmd in ["check", "run"] {
        let res = bin().arg(cmd).arg(&job).output().unwrap();
        let out = output_text(&res);
        assert_eq!(res.status.code(), Some(78), "{cmd}: {out}");
        assert!(out.contains("j.toml:13:1"), "{cmd}: the key's line: {out}");
        assert!(
            out.contains(
                "[clusters] `reach` does not apply to a kmeans step; it applies to lookalike, propensity steps"
            ),
            "{cmd}: {out}"
        );
    }
}

#[test]
fn an_export_reading_a_missing_identities_column_is_located_in_the_job_file() {
    // Found by the job-file fuzz test: this problem once came without file:line:col.
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 200);
    let job = tmp.path().join("jobs/x.toml");
    let text = std::fs::read_to_string(repo().join("jobs/demo.toml"))
        .unwrap()
        .replace("\"../sql/", &format!("\"{}/sql/", repo().display()))
        .replace("email = \"email\"", "email = \"emial\"");
    write(&job, &text);
    let res = bin()
        .arg("check")
        .arg(&job)
        .arg("--param")
        .arg(format!("data={}", data.display()))
        .output()
        .unwrap();
    let out = output_text(&res);
    assert_eq!(res.status.code(), Some(78), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("has no column `emial`"))
        .unwrap_or_else(|| panic!("{out}"));
    let located = line
        .split("x.toml:")
        .nth(1)
        .and_then(|rest| rest.split(": ").next())
        .is_some_and(|lc| {
            let mut parts = lc.split(':');
            parts.next().is_some_and(|l| l.parse::<usize>().is_ok())
                && parts.next().is_some_and(|c| c.parse::<usize>().is_ok())
        });
    assert!(located, "no x.toml:line:col in: {line}");
}
