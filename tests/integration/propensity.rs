//! The propensity step: features computed as of the earlier dates (nothing from a label window
//! leaks into them), the backtest in the summary and the model file, the demo's audience
//! against the planted truth, and each bad input.

use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use datafusion::arrow::array::{
    Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use crate::common::*;

const USERS: usize = 4000;

fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
}

fn put_parquet(path: &std::path::Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w =
        datafusion::parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// Users `u0000..` and 120 days of orders (one folder per day) of two brands: `R`, bought in
/// each 30-day window by a random 30% of users independently of every other window, and `P`,
/// bought in every window by every fifth user and never by the others.
fn write_data(dir: &std::path::Path) {
    let ids: Vec<String> = (0..USERS).map(|i| format!("u{i:04}")).collect();
    let users = RecordBatch::try_from_iter(vec![(
        "user_id",
        Arc::new(StringArray::from(ids.clone())) as _,
    )])
    .unwrap();
    put_parquet(&dir.join("data/users.parquet"), &users);
    let mut by_day: std::collections::BTreeMap<NaiveDate, Vec<(String, &str)>> = Default::default();
    let start = as_of() - Duration::days(120);
    for (i, id) in ids.iter().enumerate() {
        for w in 0..4u64 {
            let h = (i as u64 * 2_654_435_761 + w * 40_503 + 17)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                >> 33;
            let day = start + Duration::days((w * 30 + h % 30) as i64);
            if h % 1000 < 300 {
                by_day.entry(day).or_default().push((id.clone(), "R"));
            }
            if i % 5 == 0 {
                let day = start + Duration::days((w * 30 + (h >> 7) % 30) as i64);
                by_day.entry(day).or_default().push((id.clone(), "P"));
            }
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("brand", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ]));
    for (day, rows) in by_day {
        let noon = day
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMicrosecondArray::from(vec![noon; rows.len()])),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(vec![10.0; rows.len()])),
            ],
        )
        .unwrap();
        put_parquet(
            &dir.join(format!("data/orders/dt={day}/part-0.parquet")),
            &batch,
        );
    }
}

const FEATURES: &str = r#"
name = "prop"

[params]
as_of = { type = "date", default = 2026-03-01 }

[sources]
users = { url = "../data/users.parquet", format = "parquet" }
orders = { url = "../data/orders/", format = "parquet", partitions = ["dt"] }

[[step]]
name = "feats"
query = """
SELECT u.user_id,
       COUNT(o.user_id) FILTER (WHERE o.brand = 'R') AS r_30d,
       COUNT(o.user_id) FILTER (WHERE o.brand = 'P') AS p_30d
FROM users u LEFT JOIN orders o ON o.user_id = u.user_id
  AND o.ts >= CAST($as_of AS TIMESTAMP) - INTERVAL '30 days' AND o.ts < CAST($as_of AS TIMESTAMP)
GROUP BY u.user_id
"""
"#;

fn propensity(name: &str, feature: &str, brand: &str, extra: &str) -> String {
    format!(
        r#"
[[step]]
name = "{name}"
kind = "propensity"
input = "feats"
features = ["{feature}"]
label = "SELECT user_id FROM orders WHERE brand = '{brand}' AND ts >= CAST($label_start AS TIMESTAMP) AND ts < CAST($label_end AS TIMESTAMP)"
horizon = 30
reach = ["10%", "20%"]
{extra}
"#
    )
}

fn job(steps: &str) -> JobDir {
    let j = JobDir::new(&format!("{FEATURES}{steps}"));
    write_data(j.path());
    j
}

fn model(run: &std::path::Path, step: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(run.join(format!("models/{step}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn features_are_computed_as_of_the_earlier_dates_so_the_label_window_never_leaks() {
    // `r_30d` counts the window right before as_of: computed as of the run's date it would be
    // the training label itself (AUC 1). Computed as of the training date it says nothing about
    // the next, independent window (AUC about 0.5). `p_30d` is the control: loyal buyers buy in
    // every window, so the past predicts the future and the backtest must find it.
    let steps = format!(
        "{}{}{}{}\n[[export]]\ntable = \"random_buyers\"\nto = \"random.parquet\"\n[[export]]\ntable = \"loyal_buyers\"\nto = \"loyal.parquet\"\n[[export]]\ntable = \"loyal_by_sql\"\nto = \"loyal_by_sql.parquet\"\n",
        propensity("random_buyers", "r_30d", "R", ""),
        propensity("loyal_buyers", "p_30d", "P", ""),
        "[[step]]\nname = \"first_hundred\"\nquery = \"SELECT user_id FROM users WHERE user_id < 'u0100'\"\n",
        propensity(
            "loyal_by_sql",
            "p_30d",
            "P",
            "assign = \"sql\"\nexclude = [\"first_hundred\"]"
        )
    );
    let j = job(&steps);
    let ran = j.run("run", &[]);
    let run = ran.published("2026-03-01");
    let text = ran.text();
    assert!(
        text.contains("backtest: trained as of 2025-12-31"),
        "{text}"
    );
    let random = model(&run, "random_buyers");
    assert_eq!(random["trained_as_of"], "2026-01-30");
    assert_eq!(random["backtest"]["trained_as_of"], "2025-12-31");
    let auc = random["backtest"]["auc"].as_f64().unwrap();
    assert!((0.4..0.6).contains(&auc), "independent windows: AUC {auc}");
    assert!(text.contains("WARNING: AUC below min_auc"), "{text}");
    let loyal = model(&run, "loyal_buyers");
    let auc = loyal["backtest"]["auc"].as_f64().unwrap();
    assert!(auc > 0.95, "loyal buyers are predictable: AUC {auc}");
    let b = &loyal["backtest"];
    assert_eq!(b["users"], USERS);
    assert_eq!(b["positives"], USERS / 5);
    let bins = b["reliability"].as_array().unwrap();
    assert_eq!(bins.len(), 10);
    assert_eq!(
        bins.iter()
            .map(|x| x["users"].as_u64().unwrap())
            .sum::<u64>(),
        USERS as u64
    );
    // The top 10% are all loyal buyers: precision 1, recall half of them, lift 5.
    let t = &b["tiers"][0];
    assert_eq!(t["tier"], "10%");
    assert!((t["precision"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{t}");
    assert!((t["lift"].as_f64().unwrap() - 5.0).abs() < 1e-9, "{t}");
    assert!(b["brier"].as_f64().unwrap() < 0.05, "{b}");
    // The audience: the 20% tier holds every user ranked, scores descending, probabilities.
    let mut rows = Vec::new();
    for batch in read_parquet(&run.join("random.parquet")) {
        let s = column::<Float64Array>(&batch, "score");
        let r = column::<Int64Array>(&batch, "rank");
        let t = column::<StringArray>(&batch, "tier");
        for i in 0..batch.num_rows() {
            rows.push((r.value(i), s.value(i), t.value(i).to_string()));
        }
    }
    assert_eq!(rows.len(), USERS / 5);
    rows.sort_by_key(|r| r.0);
    assert!(rows.windows(2).all(|w| w[0].1 >= w[1].1));
    assert!(rows.iter().all(|r| (0.0..=1.0).contains(&r.1)));
    assert_eq!(rows.iter().filter(|r| r.2 == "10%").count(), USERS / 10);

    // The generated SQL scores as the model does in memory; excluded users are ranked nowhere.
    let scores = |file: &str| {
        let mut out = std::collections::BTreeMap::new();
        for batch in read_parquet(&run.join(file)) {
            let id = column::<StringArray>(&batch, "user_id");
            let s = column::<Float64Array>(&batch, "score");
            for i in 0..batch.num_rows() {
                out.insert(id.value(i).to_string(), s.value(i));
            }
        }
        out
    };
    let (memory, by_sql) = (scores("loyal.parquet"), scores("loyal_by_sql.parquet"));
    assert!(
        by_sql.keys().all(|id| id.as_str() >= "u0100"),
        "exclusions left out"
    );
    assert_eq!(by_sql.len(), (USERS - 100) / 5);
    let kept: Vec<&String> = memory.keys().filter(|id| id.as_str() >= "u0100").collect();
    assert!(kept.len() > by_sql.len() / 2);
    for id in kept.iter().filter(|id| by_sql.contains_key(**id)) {
        let (a, b) = (memory[*id], by_sql[*id]);
        assert!((a - b).abs() < 1e-12, "{id}: {a} in memory, {b} by SQL");
    }
    let m = model(&run, "loyal_by_sql");
    assert_eq!(m["candidates"], USERS - 100);
    assert_eq!(m["excluded"], 100);
}

#[test]
fn a_kept_model_is_applied_until_its_refit_day() {
    let j = job(&propensity(
        "loyal_buyers",
        "p_30d",
        "P",
        "refit = \"weekly\"",
    ));
    let first = j.run("run", &[]);
    assert_eq!(first.code(), Some(0), "{}", first.text());
    let next = j.run("run", &["--date", "2026-03-02"]);
    let text = next.text();
    assert_eq!(next.code(), Some(0), "{text}");
    assert!(
        text.contains("applied (1 days old, refit every 7 days)"),
        "{text}"
    );
    assert!(
        !text.contains("features computed as of an earlier date"),
        "{text}"
    );
    let m = model(&next.published("2026-03-02"), "loyal_buyers");
    assert_eq!(m["trained_as_of"], "2026-01-30", "the kept model: {m}");
}

#[test]
fn bad_propensity_steps_are_named_with_their_exit_code() {
    // (job steps, command, exit code, what the message says)
    let cases: Vec<(String, &str, i32, &str)> = vec![
        (
            propensity("p", "p_30d", "P", "").replace("SELECT user_id FROM", "SELECT user_id AS who, brand FROM"),
            "check",
            78,
            "label query returns no id column `user_id`",
        ),
        (
            propensity("p", "p_30d", "P", "").replace("CAST($label_start AS TIMESTAMP)", "TIMESTAMP '2026-01-01 00:00:00'"),
            "check",
            78,
            "`label` does not use $label_start",
        ),
        (
            propensity("p", "p_30d", "P", "").replace("horizon = 30", "horizon = 0"),
            "check",
            78,
            "horizon = 0 must be a whole number of days",
        ),
        (
            format!(
                "[[step]]\nname = \"fixed\"\nquery = \"SELECT user_id, 1 AS one FROM users\"\n{}",
                propensity("p", "one", "P", "").replace("input = \"feats\"", "input = \"fixed\"")
            ),
            "check",
            78,
            "input `fixed` does not use $as_of",
        ),
        (
            propensity("p", "p_30d", "P", "").replace("input = \"feats\"", "input = \"users\""),
            "check",
            78,
            "input `users` is not a step declared before this one",
        ),
        (
            format!(
                "[[step]]\nname = \"groups\"\nkind = \"kmeans\"\ninput = \"feats\"\nfeatures = [\"p_30d\"]\nk = 2\n[[step]]\nname = \"grouped\"\nquery = \"SELECT f.*, g.cluster FROM feats f JOIN groups g USING (user_id)\"\n{}",
                propensity("p", "p_30d", "P", "").replace("input = \"feats\"", "input = \"grouped\"")
            ),
            "check",
            78,
            "input `grouped` reads step `groups`, a model step",
        ),
        (
            propensity("p", "p_30d", "P", "").replace("horizon = 30", "horizon = 70"),
            "run",
            65,
            "needs data from 2025-10-12 (the backtest trains as of as_of − 2 × horizon), but `orders` starts on 2025-11-01: 20 days are missing",
        ),
        (
            propensity("p", "p_30d", "Q", ""),
            "run",
            65,
            "has no positives",
        ),
        (
            propensity("p", "p_30d", "P", "").replace(
                "FROM orders WHERE brand = 'P' AND ts >= CAST($label_start AS TIMESTAMP) AND ts < CAST($label_end AS TIMESTAMP)",
                "FROM users WHERE $label_start < $label_end",
            ),
            "run",
            65,
            "every one of the 4000 users of the input is positive",
        ),
    ];
    for (steps, command, code, says) in cases {
        let j = job(&steps);
        let ran = j.run(command, &[]);
        let text = ran.text();
        assert_eq!(ran.code(), Some(code), "{steps}\n{text}");
        assert!(text.contains(says), "expected `{says}`:\n{text}");
        assert!(
            text.contains("`p`") || text.contains("step p") || text.contains("[p]"),
            "names the step:\n{text}"
        );
        if command == "check" {
            assert!(text.contains("j.toml:"), "file:line:col:\n{text}");
        }
        assert!(!j
            .path()
            .join("out")
            .join("2026-03-01")
            .join("current.json")
            .exists());
    }
}

#[test]
fn the_demo_propensity_audience_finds_the_planted_future_buyers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 20_000);
    let out = tmp.path().join("out");
    let res = bin()
        .args(["run", "jobs/demo.toml", "--date", "2026-11-24", "--param"])
        .arg(format!("data={}", data.display()))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    let run = published(&out);
    let m = model(&run, "brand_propensity");
    let auc = m["backtest"]["auc"].as_f64().unwrap();
    assert!(auc > 0.7, "backtest AUC {auc}");
    // The report shows the backtest the model file holds.
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        html.contains("<h2>Propensity: brand_propensity</h2>"),
        "{html}"
    );
    assert!(html.contains(&format!("AUC {auc:.3}")), "{html}");
    assert!(html.contains("observed vs predicted rate by decile"));
    // Against the truth: who buys B01 in the 30 days after as_of.
    let mut truth = std::collections::HashMap::new();
    for b in read_parquet(&data.join("truth.parquet")) {
        let id = column::<StringArray>(&b, "user_id");
        let y = column::<datafusion::arrow::array::BooleanArray>(&b, "will_buy_b01_30d");
        for i in 0..b.num_rows() {
            truth.insert(id.value(i).to_string(), y.value(i));
        }
    }
    let base = truth.values().filter(|v| **v).count() as f64 / truth.len() as f64;
    let mut top = Vec::new();
    for b in read_parquet(&run.join("brand_propensity.parquet")) {
        let id = column::<StringArray>(&b, "user_id");
        let t = column::<StringArray>(&b, "tier");
        for i in 0..b.num_rows() {
            if t.value(i) != "10%" {
                top.push(truth[id.value(i)]);
            }
        }
    }
    assert_eq!(top.len(), truth.len() / 20, "the 5% tier");
    let precision = top.iter().filter(|v| **v).count() as f64 / top.len() as f64;
    assert!(
        precision > 3.0 * base,
        "top 5% precision {precision} vs base rate {base}"
    );
}
