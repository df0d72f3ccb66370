//! Refit schedules: the demo job fits its models weekly and applies the kept models on the
//! nights between; which model a run used is in the summary, the manifest and `status`.

use std::path::Path;

use crate::common::*;
use crate::incremental::{demo_job, ok, outputs, run};

const USERS: usize = 3000;

/// `(fitted, run id that fitted it, reason)` of each model step in the run published for `date`.
fn model_use(out: &Path, date: &str) -> Vec<(String, bool, String, String)> {
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(published_at(out, date).join("manifest.json")).unwrap(),
    )
    .unwrap();
    m["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s.get("model").is_some())
        .map(|s| {
            let u = &s["model"];
            (
                s["name"].as_str().unwrap().to_string(),
                u["fitted"].as_bool().unwrap(),
                u["run_id"].as_str().unwrap().to_string(),
                u["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn run_id(out: &Path, date: &str) -> String {
    let p: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{date}/current.json"))).unwrap())
            .unwrap();
    p["run_id"].as_str().unwrap().to_string()
}

fn kept_on(out: &Path, step: &str) -> String {
    let k: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join(format!("state/models/{step}.json"))).unwrap(),
    )
    .unwrap();
    k["fitted_on"].as_str().unwrap().to_string()
}

#[test]
fn models_fit_weekly_and_the_nights_between_apply_the_kept_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), USERS);
    let out = tmp.path().join("out");
    let steps = ["clusters", "brand_lookalike", "brand_propensity", "ltv"];

    ok(run(&data, &out, "2026-11-17", &[]));
    let first = run_id(&out, "2026-11-17");
    for (name, fitted, by, reason) in model_use(&out, "2026-11-17") {
        assert!(fitted && by == first, "{name}: {reason}");
        assert_eq!(reason, "no model kept yet");
    }
    let fit_night = outputs(&out, "2026-11-17");

    // The same date again applies the kept models: the same files, byte for byte.
    let text = ok(run(&data, &out, "2026-11-17", &[]));
    assert!(
        text.contains(&format!("model of run {first} (2026-11-17) applied")),
        "{text}"
    );
    let uses = model_use(&out, "2026-11-17");
    assert_eq!(uses.len(), 4);
    for (name, fitted, by, _) in &uses {
        assert!(!fitted && *by == first, "{name}");
    }
    let applied = outputs(&out, "2026-11-17");
    for step in steps {
        let p = std::path::PathBuf::from(format!("{step}.parquet"));
        assert!(
            fit_night[&p] == applied[&p],
            "{step}: applying the kept model changed it"
        );
    }

    // The next night applies them; status says which model is kept and when the next fit is.
    ok(run(&data, &out, "2026-11-18", &[]));
    for (name, fitted, by, reason) in model_use(&out, "2026-11-18") {
        assert!(!fitted && by == first, "{name}");
        assert_eq!(reason, "1 days old, refit every 7 days");
    }
    let status = bin()
        .arg("status")
        .arg(demo_job(tmp.path()))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let text = output_text(&status);
    assert!(
        text.contains(&format!(
            "model step clusters: kept model fitted by run {first} for 2026-11-17"
        )) && text.contains("next fit for 2026-11-24"),
        "{text}"
    );

    // A week after the fit, the models are fitted again.
    ok(run(&data, &out, "2026-11-24", &[]));
    for (name, fitted, _, reason) in model_use(&out, "2026-11-24") {
        assert!(fitted, "{name}");
        assert_eq!(reason, "the kept model is 7 days old (refit every 7 days)");
    }
    assert_eq!(kept_on(&out, "clusters"), "2026-11-24");

    // A backfill before the kept model's date fits its own and leaves the kept one in place.
    ok(run(&data, &out, "2026-11-20", &[]));
    for (name, fitted, _, reason) in model_use(&out, "2026-11-20") {
        assert!(
            fitted && reason.contains("fitted for a later date (2026-11-24)"),
            "{name}: {reason}"
        );
    }
    for step in steps {
        assert_eq!(kept_on(&out, step), "2026-11-24", "{step}");
    }

    // --refit fits whatever the policy says.
    ok(run(&data, &out, "2026-11-25", &["--refit"]));
    for (name, fitted, _, reason) in model_use(&out, "2026-11-25") {
        assert!(fitted && reason == "--refit", "{name}: {reason}");
    }
}

#[test]
fn drift_or_a_changed_step_fits_again() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), USERS);
    let out = tmp.path().join("out");
    let job = demo_job(tmp.path());
    ok(run(&data, &out, "2026-11-23", &[]));

    // A drift limit the next day's means exceed.
    let text = std::fs::read_to_string(&job).unwrap();
    write(
        &job,
        &text.replace("refit_drift = \"25%\"", "refit_drift = \"0.0001%\""),
    );
    ok(run(&data, &out, "2026-11-24", &[]));
    for (name, fitted, _, reason) in model_use(&out, "2026-11-24") {
        assert!(fitted && reason.contains("moved"), "{name}: {reason}");
    }

    // A changed configuration is never scored with a model fitted under the old one.
    write(
        &job,
        &text.replace("k_range = [4, 12]", "k_range = [4, 10]"),
    );
    ok(run(&data, &out, "2026-11-25", &[]));
    let uses = model_use(&out, "2026-11-25");
    let clusters = uses.iter().find(|u| u.0 == "clusters").unwrap();
    assert!(
        clusters.1 && clusters.3.contains("configuration"),
        "{clusters:?}"
    );
    let ltv = uses.iter().find(|u| u.0 == "ltv").unwrap();
    assert!(
        !ltv.1,
        "an unchanged step still applies its kept model: {ltv:?}"
    );
}
