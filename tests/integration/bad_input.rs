//! Bad input: each gets a clear error and the documented exit code.

use crate::common::*;

fn run_demo(data: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    bin()
        .args(["run", "jobs/demo.toml", "--date", "2026-11-24", "--param"])
        .arg(format!("data={}", data.display()))
        .arg("--output")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn missing_source_exits_66_naming_source_and_url() {
    let tmp = tempfile::tempdir().unwrap();
    let res = run_demo(&tmp.path().join("nowhere"), &tmp.path().join("out"));
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(66), "{text}");
    assert!(
        text.contains("source `orders`") && text.contains("nowhere/orders"),
        "{text}"
    );
    // Nothing is published; the run history records the failure.
    let out = tmp.path().join("out");
    assert!(!out.join("2026-11-24/current.json").exists());
    let records: Vec<_> = std::fs::read_dir(out.join("_runs")).unwrap().collect();
    assert_eq!(records.len(), 1);
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(records[0].as_ref().unwrap().path()).unwrap())
            .unwrap();
    assert_eq!(rec["outcome"], "failed");
    assert_eq!(rec["exit_code"], 66);
}

#[test]
fn corrupt_parquet_exits_65_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 300);
    let victim = data.join("orders/dt=2026-11-20/part-0.parquet");
    std::fs::write(&victim, b"this is not parquet at all, just junk bytes").unwrap();
    let res = run_demo(&data, &tmp.path().join("out"));
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(65), "{text}");
    assert!(
        text.contains("dt=2026-11-20/part-0.parquet"),
        "names the file: {text}"
    );
}

#[test]
fn empty_source_warns_and_continues() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("in/people.csv"), "user_id,age\n");
    let job = tmp.path().join("jobs/e.toml");
    write(
        &job,
        "name = \"e\"\n[sources]\npeople = { url = \"../in/people.csv\", format = \"csv\", schema = \"user_id string, age int\" }\n[[step]]\nname = \"n\"\nquery = \"SELECT COUNT(*) AS n FROM people\"\n[[export]]\ntable = \"n\"\nto = \"n.csv\"\n",
    );
    let res = bin()
        .env("RUST_LOG", "audiences=warn")
        .arg("run")
        .arg(&job)
        .output()
        .unwrap();
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    assert!(text.contains("source is empty"), "{text}");
    assert_eq!(
        std::fs::read_to_string(published(&tmp.path().join("out/e")).join("n.csv")).unwrap(),
        "n\n0\n"
    );
}

#[test]
fn unparsable_csv_exits_65() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("in/people.csv"),
        "user_id,age\nu1,30\nu2,old\n",
    );
    let job = tmp.path().join("jobs/c.toml");
    write(
        &job,
        "name = \"c\"\n[sources]\npeople = { url = \"../in/people.csv\", format = \"csv\", schema = \"user_id string, age int\" }\n[[step]]\nname = \"n\"\nquery = \"SELECT SUM(age) AS s FROM people\"\n",
    );
    let res = bin().arg("run").arg(&job).output().unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(65), "{text}");
    assert!(text.contains("people"), "{text}");
}

#[test]
fn missing_job_file_and_bad_flags_exit_64() {
    let res = bin()
        .args(["run", "jobs/does_not_exist.toml"])
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(64));
    let res = bin()
        .args(["run", "jobs/demo.toml", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(64));
    let res = bin()
        .args([
            "preview",
            "jobs/demo.toml",
            "--date",
            "2026-11-24",
            "--step",
            "nope",
            "--param",
            "data=/nonexistent",
        ])
        .output()
        .unwrap();
    assert_ne!(res.status.code(), Some(0));
}

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in ["run", "check", "sql", "preview", "demo"] {
        let res = bin().args([cmd, "--help"]).output().unwrap();
        assert!(res.status.success());
        let text = String::from_utf8_lossy(&res.stdout);
        assert!(
            text.contains("Example:") && text.contains(&format!("audiences {cmd}")),
            "{cmd}: {text}"
        );
    }
}
