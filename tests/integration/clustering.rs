//! The k-means step: planted personas recovered, determinism, SQL assignment equal to the
//! in-memory one, stable ids across runs, and each bad input.

use std::collections::HashMap;

use datafusion::arrow::array::{Int32Array, StringArray};

use crate::common::*;

/// A job over the demo data: the demo's feature steps plus a kmeans step with `extra` keys.
fn kmeans_job(dir: &std::path::Path, extra: &str, filter: &str) -> std::path::PathBuf {
    let sql = repo().join("sql/demo");
    let job = dir.join("jobs/km.toml");
    write(
        &job,
        &format!(
            r#"name = "km"
output = "../out"
state = "../state"
[params]
as_of = {{ type = "date", default = 2026-11-24 }}
brand = {{ type = "string", default = "B01" }}
data = {{ type = "path" }}
skip = {{ type = "int", default = -1 }}
[sources]
users = {{ url = "{{data}}/users.parquet", format = "parquet" }}
orders = {{ url = "{{data}}/orders/", format = "parquet", partitions = ["dt"] }}
social_events = {{ url = "{{data}}/social_events/", format = "parquet", partitions = ["dt"] }}
[[step]]
name = "orders_daily"
sql = "{o}"
[[step]]
name = "events_daily"
sql = "{e}"
[[step]]
name = "referrals_daily"
sql = "{r}"
{rollups}
[[step]]
name = "all_features"
sql = "{f}"
[[step]]
name = "user_features"
query = "SELECT *, CAST(0 AS BIGINT) AS zero FROM all_features {filter}"
[[step]]
name = "clusters"
kind = "kmeans"
input = "user_features"
features = ["orders_90d", "amount_90d", "avg_order_value_90d", "recency_days", "distinct_brands_90d",
  "ad_impression_90d", "ad_click_90d", "article_read_90d", "like_90d", "share_90d",
  "comment_90d", "follow_brand_90d", "mini_program_visit_90d", "social_reach_90d", "age", "tenure_days"]
transforms = {{ "*" = "log1p", recency_days = "standardize", age = "standardize" }}
{extra}
[[export]]
table = "clusters"
to = "clusters.parquet"
"#,
            o = sql.join("orders_daily.sql").display(),
            e = sql.join("events_daily.sql").display(),
            r = sql.join("referrals_daily.sql").display(),
            f = sql.join("user_features.sql").display(),
            rollups = demo_rollup_steps(),
        ),
    );
    job
}

fn run_job(
    job: &std::path::Path,
    data: &std::path::Path,
    extra_args: &[&str],
) -> std::process::Output {
    bin()
        .arg("run")
        .arg(job)
        .arg("--param")
        .arg(format!("data={}", data.display()))
        .args(extra_args)
        .output()
        .unwrap()
}

fn clusters(path: &std::path::Path) -> HashMap<String, i32> {
    let mut out = HashMap::new();
    for b in read_parquet(path) {
        let ids = column::<StringArray>(&b, "user_id");
        let cl = column::<Int32Array>(&b, "cluster");
        for i in 0..b.num_rows() {
            out.insert(ids.value(i).to_string(), cl.value(i));
        }
    }
    out
}

fn personas(data: &std::path::Path) -> HashMap<String, i32> {
    let mut out = HashMap::new();
    for b in read_parquet(&data.join("truth.parquet")) {
        let ids = column::<StringArray>(&b, "user_id");
        let p = column::<Int32Array>(&b, "persona_id");
        for i in 0..b.num_rows() {
            out.insert(ids.value(i).to_string(), p.value(i));
        }
    }
    out
}

/// Adjusted Rand index of two labelings of the same items.
fn ari(a: &[i32], b: &[i32]) -> f64 {
    let mut table: HashMap<(i32, i32), f64> = HashMap::new();
    let mut ra: HashMap<i32, f64> = HashMap::new();
    let mut rb: HashMap<i32, f64> = HashMap::new();
    for (x, y) in a.iter().zip(b) {
        *table.entry((*x, *y)).or_default() += 1.0;
        *ra.entry(*x).or_default() += 1.0;
        *rb.entry(*y).or_default() += 1.0;
    }
    let c2 = |n: f64| n * (n - 1.0) / 2.0;
    let index: f64 = table.values().map(|&n| c2(n)).sum();
    let sa: f64 = ra.values().map(|&n| c2(n)).sum();
    let sb: f64 = rb.values().map(|&n| c2(n)).sum();
    let expected = sa * sb / c2(a.len() as f64);
    (index - expected) / ((sa + sb) / 2.0 - expected)
}

#[test]
fn ari_of_identical_and_independent_labelings() {
    assert!((ari(&[0, 0, 1, 1], &[5, 5, 7, 7]) - 1.0).abs() < 1e-12);
    assert!(ari(&[0, 1, 0, 1, 0, 1, 0, 1], &[0, 0, 1, 1, 0, 0, 1, 1]) < 0.1);
}

#[test]
fn demo_clusters_recover_the_planted_personas() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 6000);
    let res = bin()
        .args(["run", "jobs/demo.toml", "--date", "2026-11-24", "--param"])
        .arg(format!("data={}", data.display()))
        .arg("--output")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    assert!(
        text.contains("chosen by silhouette"),
        "the k curve is shown: {text}"
    );
    let got = clusters(&published(&tmp.path().join("out")).join("clusters.parquet"));
    let truth = personas(&data);
    let (a, b): (Vec<i32>, Vec<i32>) = got.iter().map(|(id, c)| (*c, truth[id])).unzip();
    let score = ari(&a, &b);
    assert!(
        score >= 0.8,
        "adjusted Rand index against the personas: {score:.3}\n{text}"
    );
    let model: serde_json::Value = serde_json::from_slice(
        &std::fs::read(published(&tmp.path().join("out")).join("models/clusters.json")).unwrap(),
    )
    .unwrap();
    let cl = model["clusters"].as_array().unwrap();
    assert!(cl.iter().all(|c| !c["label"].as_str().unwrap().is_empty()
        && c["top_features"].as_array().unwrap().len() == 3));
    assert!(!model["k_curve"].as_array().unwrap().is_empty());
}

#[test]
fn same_data_and_seed_give_identical_assignments_and_sql_assignment_matches() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 3000);
    let mut files = Vec::new();
    for (i, extra) in ["k = 6", "k = 6", "k = 6\nassign = \"sql\""]
        .iter()
        .enumerate()
    {
        let dir = tmp.path().join(format!("r{i}"));
        let job = kmeans_job(&dir, extra, "");
        let res = run_job(&job, &data, &[]);
        assert!(res.status.success(), "{}", output_text(&res));
        files.push(std::fs::read(published(&dir.join("out")).join("clusters.parquet")).unwrap());
    }
    assert!(files[0] == files[1], "same data and seed, same bytes");
    assert!(
        files[0] == files[2],
        "the SQL assignment equals the in-memory one, distances included"
    );
}

#[test]
fn cluster_ids_stay_stable_when_few_users_change() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_data(tmp.path(), 4000);
    let job = kmeans_job(
        tmp.path(),
        "k = 6",
        "WHERE CAST(substr(user_id, 2) AS BIGINT) % 20 <> $skip",
    );
    let res = run_job(&job, &data, &[]);
    assert!(res.status.success(), "{}", output_text(&res));
    let first = clusters(&published(&tmp.path().join("out")).join("clusters.parquet"));
    assert!(
        tmp.path().join("state/models/clusters.json").exists(),
        "the model is kept as state"
    );
    // 5% of the users leave; the model is refitted and matched to the previous one.
    let res = run_job(
        &job,
        &data,
        &["--param", "skip=3", "--param", "as_of=2026-11-23"],
    );
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    assert!(
        text.contains("(was "),
        "match distances are reported: {text}"
    );
    let second =
        clusters(&published_at(&tmp.path().join("out"), "2026-11-23").join("clusters.parquet"));
    assert!(second.len() < first.len());
    let same = second
        .iter()
        .filter(|(id, c)| first.get(*id) == Some(c))
        .count();
    let share = same as f64 / second.len() as f64;
    assert!(share >= 0.9, "users keeping their cluster id: {share:.3}");
}

/// A job clustering a small CSV of `n` users: two count columns, a string column and a
/// constant one; the kmeans step takes `keys`.
fn small_kmeans_job(n: usize, keys: &str) -> JobDir {
    let mut csv = String::from("user_id,orders,amount,gender,zero\n");
    for i in 0..n {
        let g = if i % 2 == 0 { "f" } else { "m" };
        csv.push_str(&format!("u{i},{},{}.5,{g},0\n", i % 7, (i * 13) % 101));
    }
    JobDir::new(&format!(
        "name = \"km\"\n[sources]\nt = {{ url = \"../in/t.csv\", format = \"csv\", schema = \"user_id string, orders double, amount double, gender string, zero double\" }}\n[[step]]\nname = \"clusters\"\nkind = \"kmeans\"\ninput = \"t\"\n{keys}\n"
    ))
    .file("in/t.csv", &csv)
}

fn assert_job_error(keys: &str, expect: &[&str]) {
    let ran = small_kmeans_job(300, keys).run("run", &[]);
    let text = ran.text();
    assert_eq!(ran.code(), Some(78), "{text}");
    assert!(text.contains("[clusters]"), "names the step: {text}");
    for e in expect {
        assert!(text.contains(e), "expected {e:?} in: {text}");
    }
}

#[test]
fn non_numeric_feature_is_an_error_naming_the_column() {
    assert_job_error(
        "k = 3\nfeatures = [\"orders\", \"gender\"]",
        &["`gender`", "not numeric", "onehot"],
    );
}

#[test]
fn constant_feature_is_an_error_naming_the_column() {
    // `zero` is 0 for every user: zero variance.
    assert_job_error(
        "k = 3\nfeatures = [\"orders\", \"amount\", \"zero\"]",
        &["`zero`"],
    );
}

#[test]
fn k_larger_than_rows_is_an_error() {
    assert_job_error(
        "k = 5000\nfeatures = [\"orders\", \"amount\"]",
        &["k = 5000 is larger than the 300 rows"],
    );
}

#[test]
fn bad_kmeans_keys_are_job_errors() {
    let ran = small_kmeans_job(10, "k = 3\nnulls = \"guess\"").run("check", &[]);
    let text = ran.text();
    assert_eq!(ran.code(), Some(78), "{text}");
    assert!(text.contains("nulls = \"guess\""), "{text}");
}

#[test]
fn all_null_feature_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("in/t.csv"),
        "user_id,a,b\nu1,1,\nu2,2,\nu3,3,\nu4,4,\n",
    );
    let job = tmp.path().join("jobs/n.toml");
    write(
        &job,
        "name = \"n\"\n[sources]\nt = { url = \"../in/t.csv\", format = \"csv\", schema = \"user_id string, a double, b double\" }\n[[step]]\nname = \"clusters\"\nkind = \"kmeans\"\ninput = \"t\"\nk = 2\n",
    );
    let res = bin().arg("run").arg(&job).output().unwrap();
    let text = output_text(&res);
    assert_eq!(res.status.code(), Some(78), "{text}");
    assert!(
        text.contains("`b`") && text.contains("no usable value"),
        "{text}"
    );
}
