//! `audiences measure`: lift per segment of a published run, checked against an independent
//! computation on a known dataset.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::StringArray;

use crate::common::*;

/// A job with 2,000 users in two segments, half of each held out; returns (job, output).
fn published_job(dir: &Path) -> (PathBuf, PathBuf) {
    let users: String = (0..2000).map(|i| format!("u{i:04}\n")).collect();
    write(&dir.join("in/users.csv"), &format!("user_id\n{users}"));
    let job = dir.join("jobs/m.toml");
    write(
        &job,
        r#"name = "m"
output = "../out"
[params]
as_of = { type = "date" }
[sources]
users = { url = "../in/users.csv", format = "csv", schema = "user_id string" }
[[step]]
name = "tiers"
query = "SELECT user_id, CASE WHEN CAST(SUBSTR(user_id, 2) AS INT) % 3 = 0 THEN 'a' ELSE 'b' END AS tier FROM users"
[[export]]
table = "tiers"
to = "tiers.parquet"
# On 2026-11-25 users whose number ends in 5 move from awareness to intent.
[[step]]
name = "lifecycle"
query = "SELECT user_id, CASE WHEN $as_of > CAST('2026-11-24' AS DATE) AND SUBSTR(user_id, 5) = '5' THEN 'intent' ELSE 'awareness' END AS stage FROM users"
[[export]]
table = "lifecycle"
to = "lifecycle.parquet"
[publish]
holdout = "50%"
[[segment]]
name = "everyone"
query = "SELECT user_id FROM users"
[[segment]]
name = "evens"
query = "SELECT user_id FROM users WHERE CAST(SUBSTR(user_id, 2) AS INT) % 2 = 0"
[[segment]]
name = "few"
query = "SELECT user_id FROM users WHERE CAST(SUBSTR(user_id, 2) AS INT) < 30"
"#,
    );
    let res = bin()
        .arg("run")
        .arg(&job)
        .args(["--date", "2026-11-24"])
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", output_text(&res));
    (job, dir.join("out"))
}

/// (segment, group) -> sorted members, read from the published run.
fn members(out: &Path) -> Vec<(String, String, String)> {
    let mut v = Vec::new();
    for b in read_parquet(&published_at(out, "2026-11-24").join("segments.parquet")) {
        let (s, u, g) = (
            column::<StringArray>(&b, "segment"),
            column::<StringArray>(&b, "user_id"),
            column::<StringArray>(&b, "grp"),
        );
        for i in 0..b.num_rows() {
            v.push((
                s.value(i).to_string(),
                g.value(i).to_string(),
                u.value(i).to_string(),
            ));
        }
    }
    v
}

#[test]
fn lift_per_segment_matches_an_independent_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let (job, out) = published_job(tmp.path());
    // Converters: users whose number ends in 0, 1 or 2 (30%) if targeted in `everyone`, ends
    // in 0 or 1 (20%) if held out; value 10 for each conversion, two result rows for some.
    let all = members(&out);
    let everyone: Vec<&(String, String, String)> =
        all.iter().filter(|m| m.0 == "everyone").collect();
    let mut rows = String::from("user_id,converted,value\n");
    for (_, grp, u) in &everyone {
        let last: u32 = u[u.len() - 1..].parse().unwrap();
        let converts = if grp == "target" {
            last <= 2
        } else {
            last <= 1
        };
        if converts {
            rows.push_str(&format!("{u},true,6.0\n{u},false,4.0\n"));
        } else if last == 9 {
            rows.push_str(&format!("{u},false,0\n"));
        }
    }
    write(&tmp.path().join("campaign/results.csv"), &rows);
    let res = bin()
        .arg("measure")
        .arg(&job)
        .args(["--run", "2026-11-24", "--results"])
        .arg(tmp.path().join("campaign/results.csv"))
        .output()
        .unwrap();
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");

    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            std::fs::read_dir(out.join("2026-11-24/measurements"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path()
                .join("measurement.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for seg in ["everyone", "evens"] {
        let target: Vec<&String> = all
            .iter()
            .filter(|m| m.0 == seg && m.1 == "target")
            .map(|m| &m.2)
            .collect();
        let control: Vec<&String> = all
            .iter()
            .filter(|m| m.0 == seg && m.1 == "control")
            .map(|m| &m.2)
            .collect();
        // Whether a user converted follows the user's group in `everyone` (each segment has
        // its own holdout salt, so groups differ between segments).
        let conv = |u: &String| {
            let last: u32 = u[u.len() - 1..].parse().unwrap();
            let g = &everyone.iter().find(|m| &m.2 == u).unwrap().1;
            if g == "target" {
                last <= 2
            } else {
                last <= 1
            }
        };
        let (nt, nc) = (target.len() as f64, control.len() as f64);
        let xt = target.iter().filter(|u| conv(u)).count() as f64;
        let xc = control.iter().filter(|u| conv(u)).count() as f64;
        let (pt, pc) = (xt / nt, xc / nc);
        // Newcombe's hybrid score interval, from the two Wilson intervals, computed here.
        let z = 1.959963984540054f64;
        let wilson = |x: f64, n: f64| {
            let p = x / n;
            let c = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
            let h = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
            (c - h, c + h)
        };
        let ((lt, ut), (lc, uc)) = (wilson(xt, nt), wilson(xc, nc));
        let newcombe = (
            pt - pc - ((pt - lt).powi(2) + (uc - pc).powi(2)).sqrt(),
            pt - pc + ((ut - pt).powi(2) + (pc - lc).powi(2)).sqrt(),
        );
        let l = m["segments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["segment"] == seg)
            .unwrap();
        let close = |k: &str, want: f64| {
            let got = l[k].as_f64().unwrap_or_else(|| panic!("{k} in {l}"));
            assert!((got - want).abs() < 1e-9, "{seg} {k}: {got} vs {want}");
        };
        assert_eq!(l["target_users"].as_f64().unwrap(), nt);
        assert_eq!(l["control_conversions"].as_f64().unwrap(), xc);
        close("target_rate", pt);
        close("control_rate", pc);
        close("absolute_lift", pt - pc);
        assert!((l["absolute_ci"][0].as_f64().unwrap() - newcombe.0).abs() < 1e-9);
        assert!((l["absolute_ci"][1].as_f64().unwrap() - newcombe.1).abs() < 1e-9);
        // The split against the 50% holdout: Pearson's chi-square with one degree of freedom.
        let e = (nt + nc) / 2.0;
        let chi2 = (nt - e).powi(2) / e + (nc - e).powi(2) / e;
        let srm = l["sample_ratio_p"].as_f64().unwrap();
        assert_eq!(l["holdout"].as_f64(), Some(0.5));
        // p = P(χ²₁ > chi2): 1 for a perfect split, small for a lopsided one.
        assert!(
            srm > 0.001 && (chi2 > 1.0) == (srm < 0.317_310_5),
            "{seg}: χ² {chi2}, p {srm}"
        );
        assert_eq!(l["sample_ratio_mismatch"], false);
        // The always-valid interval holds the fixed one.
        assert!(l["always_valid_ci"][0].as_f64().unwrap() < newcombe.0);
        assert!(l["always_valid_ci"][1].as_f64().unwrap() > newcombe.1);
        close("incremental_conversions", (pt - pc) * nt);
        // Value: 6 + 4 = 10 per converter.
        close("value_lift", 10.0 * pt - 10.0 * pc);
        let (lo, hi) = (
            l["value_ci"][0].as_f64().unwrap(),
            l["value_ci"][1].as_f64().unwrap(),
        );
        assert!(lo < 10.0 * (pt - pc) && 10.0 * (pt - pc) < hi, "{lo} {hi}");
    }
    // `everyone` has about 30% against 20%: a clear lift.
    let e = m["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["segment"] == "everyone")
        .unwrap();
    assert!(e["p_value"].as_f64().unwrap() < 0.001, "{e}");
    // Benjamini–Hochberg over every lift of the call, computed here from the raw p-values.
    let lifts = m["segments"].as_array().unwrap();
    let p: Vec<f64> = lifts
        .iter()
        .map(|l| l["p_value"].as_f64().unwrap())
        .collect();
    for (i, l) in lifts.iter().enumerate() {
        let want = (0..p.len())
            .filter(|&j| p[j] >= p[i])
            .map(|j| {
                let rank = p.iter().filter(|&&x| x <= p[j]).count() as f64;
                p[j] * p.len() as f64 / rank
            })
            .fold(1.0f64, f64::min);
        let q = l["q_value"].as_f64().unwrap();
        assert!((q - want).abs() < 1e-12, "{l}: q {q} vs {want}");
        assert_eq!(l["significant"], q < 0.05);
    }
    assert!(
        text.contains("everyone") && text.contains("evens"),
        "{text}"
    );
    let csv = std::fs::read_to_string(
        std::fs::read_dir(out.join("2026-11-24/measurements"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("lift.csv"),
    )
    .unwrap();
    assert!(
        csv.starts_with("segment,part,target_users,control_users"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 4);
}

#[test]
fn measure_by_run_id_and_bad_results() {
    let tmp = tempfile::tempdir().unwrap();
    let (job, out) = published_job(tmp.path());
    let ptr: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("2026-11-24/current.json")).unwrap())
            .unwrap();
    let run_id = ptr["run_id"].as_str().unwrap();
    write(&tmp.path().join("r.csv"), "user_id,converted\nu0001,1\n");
    let res = bin()
        .arg("measure")
        .arg(&job)
        .args(["--run", run_id, "--results"])
        .arg(tmp.path().join("r.csv"))
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", output_text(&res));
    assert!(out
        .join(format!("2026-11-24/measurements/{run_id}/lift.csv"))
        .exists());

    let res = bin()
        .arg("measure")
        .arg(&job)
        .args(["--run", run_id, "--results"])
        .arg(tmp.path().join("missing.csv"))
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(66), "{}", output_text(&res));

    // A breakdown by a file the run does not have: missing, with the store's own words as cause.
    let res = bin()
        .arg("measure")
        .arg(&job)
        .args(["--run", run_id, "--by", "no_such_export.tier", "--results"])
        .arg(tmp.path().join("r.csv"))
        .output()
        .unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(66), "{text}");
    assert!(text.contains("no_such_export.parquet"), "{text}");
    assert!(
        text.contains("caused by:"),
        "the store's error is kept: {text}"
    );

    write(&tmp.path().join("bad.csv"), "user_id,bought\nu0001,1\n");
    let res = bin()
        .arg("measure")
        .arg(&job)
        .args(["--run", "2026-11-24", "--results"])
        .arg(tmp.path().join("bad.csv"))
        .output()
        .unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(65), "{text}");
    assert!(text.contains("no column `converted`"), "{text}");

    let res = bin()
        .arg("measure")
        .arg(&job)
        .args(["--run", "2026-11-01", "--results"])
        .arg(tmp.path().join("r.csv"))
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(66), "{}", output_text(&res));
}

#[test]
fn campaign_feedback_job_seeds_lookalikes_and_suppresses_converters() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 1500);
    // Every 7th demo user converted; some others appear without converting.
    let mut rows = String::from("user_id,converted,value\n");
    let mut converters = std::collections::BTreeSet::new();
    for i in 0..1500 {
        let u = format!("u{i:08}");
        if i % 7 == 0 {
            rows.push_str(&format!("{u},true,25.5\n"));
            converters.insert(u);
        } else if i % 5 == 0 {
            rows.push_str(&format!("{u},false,0\n"));
        }
    }
    let results = tmp.path().join("campaign/results.csv");
    write(&results, &rows);
    let out = tmp.path().join("out");
    let res = bin()
        .args(["run", "jobs/campaign_feedback.toml", "--date", "2026-11-24"])
        .arg("--param")
        .arg(format!("data={}", data.display()))
        .arg("--param")
        .arg(format!("results={}", results.display()))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    let run = published_at(&out, "2026-11-24");
    // Pattern 1: the converters are the lookalike's seed.
    let model: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run.join("models/converter_lookalike.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        model["seed_given"].as_u64(),
        Some(converters.len() as u64),
        "{model}"
    );
    // Pattern 2: no converter is in any segment, target or control, nor in any file.
    let mut members = 0;
    for b in read_parquet(&run.join("segments.parquet")) {
        let ids = column::<StringArray>(&b, "user_id");
        for i in 0..b.num_rows() {
            members += 1;
            assert!(
                !converters.contains(ids.value(i)),
                "{} is suppressed",
                ids.value(i)
            );
        }
    }
    assert!(members > 100, "the segments hold users ({members})");
    let files = snapshot(&run);
    let mut exported = 0;
    for (p, bytes) in &files {
        if p.extension().is_some_and(|e| e == "csv") && p.to_string_lossy().contains("target") {
            exported += 1;
            for line in String::from_utf8_lossy(bytes).lines() {
                assert!(
                    !converters.contains(line.trim()),
                    "{line} in {}",
                    p.display()
                );
            }
        }
    }
    assert!(
        exported >= 2,
        "segment files were written: {:?}",
        files.keys().collect::<Vec<_>>()
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    assert!(
        m["segments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["suppressed"].as_u64().unwrap_or(0) > 0),
        "{}",
        m["segments"]
    );
}

#[test]
fn measure_per_tier_and_stage_migration() {
    let tmp = tempfile::tempdir().unwrap();
    let (job, out) = published_job(tmp.path());
    let res = bin()
        .arg("run")
        .arg(&job)
        .args(["--date", "2026-11-25"])
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", output_text(&res));
    write(
        &tmp.path().join("r.csv"),
        "user_id,converted\nu0003,1\nu0004,1\n",
    );
    let res = bin()
        .arg("measure")
        .arg(&job)
        .args([
            "--run",
            "2026-11-24",
            "--after",
            "2026-11-25",
            "--by",
            "tiers.tier",
            "--results",
        ])
        .arg(tmp.path().join("r.csv"))
        .output()
        .unwrap();
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    let dir = std::fs::read_dir(out.join("2026-11-24/measurements"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("measurement.json")).unwrap()).unwrap();
    let lifts = m["segments"].as_array().unwrap();
    let all = members(&out);
    for seg in ["everyone", "evens"] {
        let whole = lifts
            .iter()
            .find(|l| l["segment"] == seg && l["part"].is_null())
            .unwrap();
        let parts: Vec<&serde_json::Value> = lifts
            .iter()
            .filter(|l| l["segment"] == seg && !l["part"].is_null())
            .collect();
        let sum: u64 = parts
            .iter()
            .map(|l| l["target_users"].as_u64().unwrap())
            .sum();
        assert_eq!(
            sum,
            whole["target_users"].as_u64().unwrap(),
            "{seg}: tiers add up"
        );
        // Tier `a` is every user whose number is a multiple of 3.
        let want = all
            .iter()
            .filter(|(s, g, u)| {
                s == seg && g == "target" && u[1..].parse::<u32>().unwrap() % 3 == 0
            })
            .count() as u64;
        let a = parts.iter().find(|l| l["part"] == "a").unwrap();
        assert_eq!(a["target_users"].as_u64().unwrap(), want, "{seg}");
    }
    assert!(text.contains("everyone [a]"), "{text}");
    // Migration: exactly the users ending in 5 advanced, in each group.
    let moves = m["stage_migration"]["moves"].as_array().unwrap();
    for (seg, grp) in [
        ("everyone", "target"),
        ("everyone", "control"),
        ("evens", "target"),
    ] {
        let want = all
            .iter()
            .filter(|(s, g, u)| s == seg && g == grp && u.ends_with('5'))
            .count() as u64;
        let got = moves
            .iter()
            .find(|r| {
                r["segment"] == seg
                    && r["grp"] == grp
                    && r["from_stage"] == "awareness"
                    && r["to_stage"] == "intent"
            })
            .map(|r| r["users"].as_u64().unwrap())
            .unwrap_or(0);
        assert_eq!(got, want, "{seg} {grp}");
        let n = all.iter().filter(|(s, g, _)| s == seg && g == grp).count() as f64;
        let share = m["stage_migration"]["advanced_share"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["segment"] == seg && r["grp"] == grp)
            .unwrap()["share"]
            .as_f64()
            .unwrap();
        assert!((share - want as f64 / n).abs() < 1e-12);
    }
    // `evens` holds no number ending in 5: nobody in it moved.
    assert!(!moves
        .iter()
        .any(|r| r["segment"] == "evens" && r["to_stage"] == "intent"));
}

/// The number in the table cell right after a row's first cell `name` (in table `id`).
fn cell_after(html: &str, table: &str, name: &str) -> String {
    let t = &html[html
        .find(&format!("<table id=\"{table}\""))
        .unwrap_or_else(|| panic!("table {table}"))..];
    let t = &t[..t.find("</table>").unwrap()];
    let row = t
        .split("<tr>")
        .find(|r| r.starts_with(&format!("<td class=\"l\">{name}</td>")))
        .unwrap_or_else(|| panic!("row {name} in {table}"));
    let rest = &row[format!("<td class=\"l\">{name}</td>").len()..];
    let v = &rest[4..rest.find("</td>").unwrap()];
    v.to_string()
}

#[test]
fn report_numbers_agree_with_the_run_and_small_groups_are_suppressed() {
    let tmp = tempfile::tempdir().unwrap();
    let (_job, out) = published_job(tmp.path());
    let run = published_at(&out, "2026-11-24");
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    let all = members(&out);
    let count = |seg: &str, grp: &str| all.iter().filter(|m| m.0 == seg && m.1 == grp).count();
    for seg in ["everyone", "evens"] {
        assert_eq!(
            cell_after(&html, "segments", seg),
            count(seg, "target").to_string(),
            "{seg}"
        );
    }
    // `few` has about 15 users per group: below 50, never shown.
    assert!(count("few", "target") < 50);
    assert_eq!(
        cell_after(&html, "segments", "few"),
        "<span class=\"suppressed\">&lt; 50</span>"
    );
    // Overlap of the two large target groups, counted independently.
    let both = all
        .iter()
        .filter(|m| m.0 == "everyone" && m.1 == "target")
        .filter(|m| {
            all.iter()
                .any(|o| o.0 == "evens" && o.1 == "target" && o.2 == m.2)
        })
        .count();
    assert!(
        html.contains(&format!(
            "<td class=\"l\">evens</td><td class=\"l\">everyone</td><td>{both}</td>"
        )),
        "overlap {both}"
    );
    // The funnel: on 2026-11-24 all 2,000 users are aware.
    assert_eq!(cell_after(&html, "funnel", "awareness"), "2000");
    assert_eq!(cell_after(&html, "funnel", "intent"), "0");
    assert!(html.contains("<svg"), "inline charts");
    // Self-contained: no script, nothing fetched (SVG's namespace URI is a name, not a fetch).
    assert!(
        !html.contains("<script")
            && !html.contains("src=")
            && !html.contains("href=")
            && !html.contains("url("),
        "self-contained, no script"
    );
}

#[test]
fn report_opens_in_a_headless_browser_without_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (job, out) = published_job(tmp.path());
    write(
        &tmp.path().join("r.csv"),
        "user_id,converted,value\nu0003,1,5\nu0004,1,7\n",
    );
    let res = bin()
        .arg("measure")
        .arg(&job)
        .args(["--run", "2026-11-24", "--results"])
        .arg(tmp.path().join("r.csv"))
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", output_text(&res));
    let measured = std::fs::read_dir(out.join("2026-11-24/measurements"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let lift = std::fs::read_to_string(measured.join("report.html")).unwrap();
    assert!(
        lift.contains("<table id=\"lift\">") && lift.contains("everyone"),
        "{lift}"
    );
    // The run's page, with the lift added.
    assert!(
        lift.contains("<table id=\"segments\">") && lift.contains("<table id=\"funnel\">"),
        "{lift}"
    );
    assert_eq!(lift.matches("</body>").count(), 1);
    let blank = tmp.path().join("blank.html");
    write(&blank, "<!DOCTYPE html><html><body></body></html>");
    let shot = |page: &std::path::Path, png: &std::path::Path| {
        let profile = tempfile::tempdir().unwrap();
        let res = std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1200,2400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("chromium is installed (.ci/run installs Debian's chromium)");
        let log = String::from_utf8_lossy(&res.stderr).to_string();
        assert!(res.status.success(), "{log}");
        log
    };
    let report = published_at(&out, "2026-11-24").join("report.html");
    for page in [report, measured.join("report.html")] {
        let png = tmp.path().join("shot.png");
        let log = shot(&page, &png);
        // Console messages are logged as "CONSOLE(...)"; an error in the page would be one.
        assert!(
            !log.contains("CONSOLE") && !log.contains("Uncaught"),
            "{log}"
        );
        let blank_png = tmp.path().join("blank.png");
        shot(&blank, &blank_png);
        let (a, b) = (
            std::fs::metadata(&png).unwrap().len(),
            std::fs::metadata(&blank_png).unwrap().len(),
        );
        assert!(
            a > 4 * b,
            "the screenshot is not blank: {a} bytes vs {b} for an empty page"
        );
    }
}

#[test]
fn a_broken_split_is_an_error_not_a_footnote() {
    use datafusion::arrow::array::{AsArray, BooleanArray};
    use datafusion::arrow::compute::{cast, filter_record_batch};
    use datafusion::arrow::datatypes::DataType;
    let tmp = tempfile::tempdir().unwrap();
    let (job, out) = published_job(tmp.path());
    let run = published_at(&out, "2026-11-24");
    // Two in five of `everyone`'s control group go missing after the split (say, a one-sided
    // suppression applied downstream): 50% was the holdout, the counts no longer say so.
    let path = run.join("segments.parquet");
    let batches = read_parquet(&path);
    let schema = batches[0].schema();
    let mut seen = 0usize;
    let kept: Vec<_> = batches
        .iter()
        .map(|b| {
            let col = |n: &str| cast(b.column_by_name(n).unwrap(), &DataType::Utf8).unwrap();
            let (seg, grp) = (col("segment"), col("grp"));
            let (seg, grp) = (seg.as_string::<i32>(), grp.as_string::<i32>());
            let keep: BooleanArray = (0..b.num_rows())
                .map(|i| {
                    let hit = seg.value(i) == "everyone" && grp.value(i) == "control";
                    seen += usize::from(hit);
                    Some(!(hit && seen % 5 < 2))
                })
                .collect();
            filter_record_batch(b, &keep).unwrap()
        })
        .collect();
    let f = std::fs::File::create(&path).unwrap();
    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
    for b in &kept {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    write(
        &tmp.path().join("r.csv"),
        "user_id,converted\nu0001,1\nu0002,1\n",
    );
    let res = bin()
        .arg("measure")
        .arg(&job)
        .args(["--run", "2026-11-24", "--results"])
        .arg(tmp.path().join("r.csv"))
        .output()
        .unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(65), "{text}");
    assert!(text.contains("sample ratio mismatch"), "{text}");
    assert!(
        text.contains("`everyone`") && !text.contains("`evens`"),
        "{text}"
    );
    // The measurement is still written, each lift marked.
    let dir = std::fs::read_dir(out.join("2026-11-24/measurements"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("measurement.json")).unwrap()).unwrap();
    for l in m["segments"].as_array().unwrap() {
        let broken = l["segment"] == "everyone";
        assert_eq!(l["sample_ratio_mismatch"], broken, "{l}");
        if broken {
            assert!(l["sample_ratio_p"].as_f64().unwrap() < 0.001, "{l}");
        }
    }
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        page.contains("sample ratio mismatch"),
        "the report says it too"
    );
}

#[test]
fn outcome_from_the_jobs_own_data_measures_and_plans_without_a_results_file() {
    let tmp = tempfile::tempdir().unwrap();
    let users: String = (0..2000).map(|i| format!("u{i:04}\n")).collect();
    write(
        &tmp.path().join("in/users.csv"),
        &format!("user_id\n{users}"),
    );
    // A quarter of the users bought before the campaign and buy again during it; one in ten
    // more buy during it.
    let mut orders = String::from("user_id,day,amount\n");
    for i in 0..2000 {
        if i % 4 == 0 {
            orders.push_str(&format!("u{i:04},2026-10-20,30\nu{i:04},2026-11-20,40\n"));
        } else if i % 10 == 1 {
            orders.push_str(&format!("u{i:04},2026-11-25,10\n"));
        }
    }
    write(&tmp.path().join("in/orders.csv"), &orders);
    let job = tmp.path().join("jobs/o.toml");
    write(
        &job,
        r#"name = "o"
output = "../out"
[params]
as_of = { type = "date" }
[sources]
users = { url = "../in/users.csv", format = "csv", schema = "user_id string" }
orders = { url = "../in/orders.csv", format = "csv", schema = "user_id string, day date, amount double" }
[measure]
outcome_query = "SELECT user_id, COUNT(*) > 0 AS converted, SUM(amount) AS value FROM orders WHERE day >= $start AND day < $end GROUP BY user_id"
campaign_days = 30
[publish]
holdout = "50%"
[[segment]]
name = "everyone"
query = "SELECT user_id FROM users"
"#,
    );
    let run = |args: &[&str]| {
        let res = bin().args(args).arg(&job).output().unwrap();
        (res.status.code(), output_text(&res))
    };
    let (code, text) = run(&["run", "--date", "2026-11-10"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = bin()
        .arg("measure")
        .arg(&job)
        .args(["--run", "2026-11-10"])
        .output()
        .map(|r| (r.status.code(), output_text(&r)))
        .unwrap();
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("[measure] outcome over 2026-11-11 .. 2026-12-11"),
        "{text}"
    );
    let out = tmp.path().join("out");
    let run_dir = published_at(&out, "2026-11-10");
    let members = read_parquet(&run_dir.join("segments.parquet"));
    let mut target = Vec::new();
    for b in &members {
        let u = b.column_by_name("user_id").unwrap();
        let g = b.column_by_name("grp").unwrap();
        let u = datafusion::arrow::compute::cast(u, &datafusion::arrow::datatypes::DataType::Utf8)
            .unwrap();
        let g = datafusion::arrow::compute::cast(g, &datafusion::arrow::datatypes::DataType::Utf8)
            .unwrap();
        let (u, g) = (
            u.as_any().downcast_ref::<StringArray>().unwrap(),
            g.as_any().downcast_ref::<StringArray>().unwrap(),
        );
        for i in 0..b.num_rows() {
            if g.value(i) == "target" {
                target.push(u.value(i)[1..].parse::<usize>().unwrap());
            }
        }
    }
    let converted = target
        .iter()
        .filter(|i| *i % 4 == 0 || *i % 10 == 1)
        .count();
    let dir = std::fs::read_dir(out.join("2026-11-10/measurements"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("measurement.json")).unwrap()).unwrap();
    let l = &m["segments"][0];
    assert_eq!(
        l["target_conversions"].as_u64(),
        Some(converted as u64),
        "{l}"
    );
    // Buyers before buy again: the pre-period removes most of the outcome's variance.
    let vr = l["cuped"]["variance_reduction"].as_f64().unwrap();
    assert!(vr > 0.2, "{l}");
    let cuped = (l["cuped"]["ci"][1].as_f64().unwrap() - l["cuped"]["ci"][0].as_f64().unwrap())
        / (l["absolute_ci"][1].as_f64().unwrap() - l["absolute_ci"][0].as_f64().unwrap());
    assert!(
        cuped < 0.8,
        "the adjusted interval is at least 20% narrower: {cuped}"
    );

    // Before a campaign: the baseline over the 30 days before the run, and the MDE.
    let (code, text) = run(&["plan", "--mde", "5"]);
    assert_eq!(code, Some(0), "{text}");
    let p: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("plan.json")).unwrap()).unwrap();
    let s = &p["segments"][0];
    let (nt, nc) = (
        s["target_users"].as_f64().unwrap(),
        s["control_users"].as_f64().unwrap(),
    );
    // Bought in [2026-10-11, 2026-11-10): every fourth user.
    assert_eq!(s["baseline_rate"].as_f64(), Some(0.25), "{s}");
    let want =
        (1.959963984540054 + 0.8416212335729143) * (0.25f64 * 0.75 * (1.0 / nt + 1.0 / nc)).sqrt();
    assert!((s["mde"].as_f64().unwrap() - want).abs() < 1e-12, "{s}");
    assert!(text.contains("everyone"), "{text}");
    // The run's page with the plan table, beside the plan.
    let page = std::fs::read_to_string(dir.join("plan.html")).unwrap();
    assert!(
        page.contains("<table id=\"plan\">") && page.contains("<table id=\"segments\">"),
        "{page}"
    );
    assert!(
        page.contains(&format!("{:.2}", 100.0 * want)),
        "the MDE in points"
    );
    // `check` plans the outcome SQL: a wrong column is named with its place in the job file.
    let text = std::fs::read_to_string(&job).unwrap();
    write(
        &job,
        &text.replace("COUNT(*) > 0 AS converted", "COUNT(*) > 0 AS bought"),
    );
    let (code, out_text) = run(&["check"]);
    assert_eq!(code, Some(78), "{out_text}");
    assert!(
        out_text.contains("o.toml:") && out_text.contains("no column `converted`"),
        "{out_text}"
    );
    write(
        &job,
        &text.replace("FROM orders WHERE day", "FROM orders WHERE dya"),
    );
    let (code, out_text) = run(&["check"]);
    assert_eq!(code, Some(78), "{out_text}");
    assert!(
        out_text.contains("o.toml:") && out_text.contains("dya"),
        "the unknown column, located: {out_text}"
    );
    write(&job, &text);
    // A job without an outcome cannot plan: a usage error naming the fix.
    let text = std::fs::read_to_string(&job).unwrap();
    let cut = text.find("[measure]").unwrap();
    let end = text.find("[publish]").unwrap();
    write(&job, &format!("{}{}", &text[..cut], &text[end..]));
    let (code, text) = run(&["plan"]);
    assert_eq!(code, Some(64), "{text}");
    assert!(text.contains("[measure] outcome"), "{text}");
}
