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

/// Three days of orders in `format`, the second day's `amount` written as text.
async fn drifted_orders(root: &std::path::Path, format: &str) {
    let days = [
        ("2026-11-01", "'u1' AS user_id, 10.5 AS amount"),
        ("2026-11-02", "'u2' AS user_id, 'twelve' AS amount"),
        ("2026-11-03", "'u3' AS user_id, 7.25 AS amount"),
    ];
    for (day, cols) in days {
        let dir = root.join(format!("in/orders/dt={day}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("part-0.{format}"));
        match format {
            "parquet" => {
                let ctx = datafusion::prelude::SessionContext::new();
                ctx.sql(&format!(
                    "COPY (SELECT {cols}) TO '{}' STORED AS PARQUET",
                    file.display()
                ))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            }
            "csv" => {
                let (user, amount) = cols.split_once(", ").unwrap();
                let v = |s: &str| {
                    s.split(" AS ")
                        .next()
                        .unwrap()
                        .trim_matches('\'')
                        .to_string()
                };
                write(
                    &file,
                    &format!("user_id,amount\n{},{}\n", v(user), v(amount)),
                );
            }
            _ => {
                let (user, amount) = cols.split_once(", ").unwrap();
                let v = |s: &str| s.split(" AS ").next().unwrap().replace('\'', "\"");
                write(
                    &file,
                    &format!("{{\"user_id\": {}, \"amount\": {}}}\n", v(user), v(amount)),
                );
            }
        }
    }
}

#[tokio::test]
async fn a_file_whose_column_changed_type_is_named_or_skipped() {
    for format in ["parquet", "csv", "json"] {
        let tmp = tempfile::tempdir().unwrap();
        drifted_orders(tmp.path(), format).await;
        let job = |bad_files: &str| {
            let job = tmp.path().join(format!("jobs/d{}.toml", bad_files.len()));
            write(
                &job,
                &format!(
                    "name = \"d\"\n[sources]\norders = {{ url = \"../in/orders/\", format = \"{format}\", partitions = [\"dt\"]{bad_files} }}\n[[step]]\nname = \"totals\"\nquery = \"SELECT COUNT(*) AS n, SUM(amount) AS s FROM orders\"\n[[export]]\ntable = \"totals\"\nto = \"totals.csv\"\n"
                ),
            );
            job
        };
        let failing = job("");
        for cmd in ["check", "run"] {
            let res = bin().arg(cmd).arg(&failing).output().unwrap();
            let text = output_text(&res);
            assert_eq!(res.status.code(), Some(65), "{format} {cmd}: {text}");
            for want in [
                "source `orders`",
                &format!("dt=2026-11-02/part-0.{format}"),
                "column `amount` is string",
                "expected double",
                "bad_files = \"skip\"",
            ] {
                assert!(text.contains(want), "{format} {cmd}: no {want:?} in {text}");
            }
            assert!(
                !text.contains("dt=2026-11-01") && !text.contains("dt=2026-11-03"),
                "{format} {cmd}: only the drifted file is named: {text}"
            );
        }
        let out = tmp.path().join("out/d");
        assert!(
            !out.exists()
                || std::fs::read_dir(&out).unwrap().all(|e| !e
                    .unwrap()
                    .path()
                    .join("current.json")
                    .exists()),
            "{format}: nothing published"
        );

        let skipping = job(", bad_files = \"skip\"");
        let res = bin().arg("run").arg(&skipping).output().unwrap();
        let text = output_text(&res);
        assert!(res.status.success(), "{format}: {text}");
        let run = published(&tmp.path().join("out/d"));
        assert_eq!(
            std::fs::read_to_string(run.join("totals.csv")).unwrap(),
            "n,s\n2,17.75\n",
            "{format}: the two good days are read"
        );
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
        let skipped = manifest["inputs"][0]["skipped_files"].as_array().unwrap();
        assert_eq!(skipped.len(), 1, "{format}: {manifest}");
        assert!(
            skipped[0]["path"]
                .as_str()
                .unwrap()
                .ends_with(&format!("dt=2026-11-02/part-0.{format}")),
            "{format}: {manifest}"
        );
        assert_eq!(skipped[0]["column"], "amount");
    }
}

#[test]
fn every_command_ends_quietly_when_its_reader_has_gone() {
    // As `audiences status JOB | head` once `head` has its lines: the pipe's reading end is
    // closed before the command writes, so every write fails with a broken pipe.
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("in/people.csv"),
        "user_id,age\nu1,30\nu2,41\n",
    );
    let job = tmp.path().join("jobs/p.toml");
    write(
        &job,
        "name = \"p\"\n[sources]\npeople = { url = \"../in/people.csv\", format = \"csv\" }\n[[step]]\nname = \"n\"\nquery = \"SELECT COUNT(*) AS n FROM people\"\n[[export]]\ntable = \"n\"\nto = \"n.csv\"\n",
    );
    let job = job.to_str().unwrap();
    // `run` publishes first: `verify` then reads that publication.
    let dated = tmp.path().join("out/p/undated");
    let dated = dated.to_str().unwrap();
    let commands: [&[&str]; 7] = [
        &["run", job],
        &["verify", dated],
        &["status", job],
        &["check", job],
        &["preview", job, "--step", "n"],
        &["sql", job, "-e", "SELECT * FROM generate_series(1, 50000)"],
        &["run", "--help"],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let res = std::process::Command::new(assert_cmd::cargo::cargo_bin("audiences"))
            .current_dir(repo())
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert_eq!(res.status.code(), Some(0), "{args:?}: {err}");
    }
    // The run behind the closed pipe still published.
    assert!(published(&tmp.path().join("out/p")).join("n.csv").exists());
}

#[test]
fn a_csv_with_bytes_that_are_not_utf8_is_bad_data_not_a_corrupt_parquet_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("in")).unwrap();
    std::fs::write(
        tmp.path().join("in/bad.csv"),
        b"user_id,name\nu1,ok\nu2,caf\xe9\xff\nu3,fine\n",
    )
    .unwrap();
    let job = tmp.path().join("jobs/u.toml");
    write(
        &job,
        "name = \"u\"\n[sources]\nt = { url = \"../in/bad.csv\", format = \"csv\" }\n[[step]]\nname = \"n\"\nquery = \"SELECT COUNT(*) AS n FROM t\"\n",
    );
    let res = bin().arg("run").arg(&job).output().unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(65), "{text}");
    assert!(
        text.contains("bad.csv") && !text.contains("Parquet"),
        "{text}"
    );
}
