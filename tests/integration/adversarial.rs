//! Adversarial data: values and shapes a real feed sends sooner or later. Each gets a named
//! error or a documented behaviour, and a failed run leaves the last good publication as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;

use crate::common::*;

/// `n` users `u0000..` with two well-spread features `a`, `b` and a third, `c(i)`, as CSV.
fn features_csv(n: usize, c: impl Fn(usize) -> String) -> String {
    let mut s = String::from("user_id,a,b,c\n");
    for i in 0..n {
        s.push_str(&format!(
            "u{i:04},{},{},{}\n",
            (i * 37 % 101) as f64 / 10.0,
            (i * 13 % 17) as f64,
            c(i)
        ));
    }
    s
}

/// A job over `in/t.csv` (`user_id, a, b, c`) with `steps` and `rest` (segments, publish, ...).
fn job(steps: &str, rest: &str) -> String {
    format!(
        "name = \"adv\"\n[sources]\nt = {{ url = \"../in/t.csv\", format = \"csv\", schema = \"user_id string, a double, b double, c double\" }}\n{steps}\n{rest}"
    )
}

const KMEANS: &str = "[[step]]\nname = \"clusters\"\nkind = \"kmeans\"\ninput = \"t\"\nk = 3\n";
const LOOKALIKE: &str = "[[step]]\nname = \"la\"\nkind = \"lookalike\"\ninput = \"t\"\nfeatures = [\"a\", \"b\", \"c\"]\nseed = \"SELECT user_id FROM t WHERE a > 8\"\nmin_seed = 10\n";
const BY_CLUSTER: &str = "[[segment]]\nname = \"cl\"\nfrom = \"clusters\"\nby = \"cluster\"\n";

/// Members of each segment's target and control groups in a run's `segments.parquet`.
fn members(run: &std::path::Path) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for b in read_parquet(&run.join("segments.parquet")) {
        let seg = column::<StringArray>(&b, "segment");
        let id = column::<StringArray>(&b, "user_id");
        let grp = column::<StringArray>(&b, "grp");
        for i in 0..b.num_rows() {
            out.entry((seg.value(i).to_string(), grp.value(i).to_string()))
                .or_default()
                .insert(id.value(i).to_string());
        }
    }
    out
}

fn manifest(run: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn nan_and_infinite_features_are_imputed_and_counted() {
    // Every 10th row: NaN, inf, -inf or nothing (null), in turn.
    let odd = ["NaN", "inf", "-inf", ""];
    let csv = features_csv(400, |i| {
        if i % 10 == 0 {
            odd[(i / 10) % 4].to_string()
        } else {
            ((i % 23) as f64).to_string()
        }
    });
    let dir = JobDir::new(&job(&format!("{KMEANS}{LOOKALIKE}"), BY_CLUSTER)).file("in/t.csv", &csv);
    let ran = dir.run("run", &[]);
    let text = ran.text();
    let run = ran.published("undated");
    // 40 odd rows, of which 10 null and 30 NaN or ±inf: counted for both model steps.
    assert_eq!(
        text.matches("missing values: c 40 (10 null, 30 NaN/±inf); imputed")
            .count(),
        2,
        "{text}"
    );
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("models/clusters.json")).unwrap()).unwrap();
    let missing = &model["missing"].as_array().unwrap()[2];
    assert_eq!(
        (missing["nulls"].as_u64(), missing["non_finite"].as_u64()),
        (Some(10), Some(30))
    );
    // Profiles describe the finite values: every mean is a number (NaN would be JSON null).
    let mut sizes = 0;
    for c in model["clusters"].as_array().unwrap() {
        sizes += c["size"].as_u64().unwrap();
        for (f, v) in c["means"].as_object().unwrap() {
            assert!(v.as_f64().is_some_and(f64::is_finite), "mean of {f}: {v}");
        }
    }
    assert_eq!(sizes, 400, "every user is in a cluster");
    let in_segments: usize = members(&run).values().map(BTreeSet::len).sum();
    assert_eq!(in_segments, 400);
}

#[test]
fn k_above_the_distinct_points_is_lowered_with_a_warning() {
    // 300 users on two distinct points.
    let csv = features_csv(300, |_| String::new())
        .lines()
        .enumerate()
        .map(|(i, l)| match i {
            0 => l.to_string(),
            _ => {
                let p = i % 2;
                format!("{},{p},{},{p}", l.split(',').next().unwrap(), p * 3)
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    for k in ["k = 5", "k = \"auto\"\nk_range = [4, 8]"] {
        let steps = KMEANS.replace("k = 3", k);
        let dir = JobDir::new(&job(&steps, BY_CLUSTER)).file("in/t.csv", &csv);
        let ran = dir.run("run", &[]);
        let text = ran.text();
        let run = ran.published("undated");
        assert!(
            text.contains("only 2 distinct points in the fitting sample: k = 2"),
            "{k}: {text}"
        );
        let warnings = manifest(&run)["warnings"].to_string();
        assert!(warnings.contains("k lowered to 2"), "{k}: {warnings}");
        let segments: BTreeSet<String> = members(&run).into_keys().map(|(s, _)| s).collect();
        assert_eq!(segments.len(), 2, "{k}: {segments:?}");
    }
}

#[test]
fn user_ids_of_ten_thousand_characters_pass_through_intact() {
    let long = |i: usize| format!("{}{i:04}", "x".repeat(10_000));
    let id = |i: usize| {
        if i.is_multiple_of(3) {
            long(i)
        } else {
            format!("u{i:04}")
        }
    };
    let csv = features_csv(300, |i| (i % 7).to_string())
        .lines()
        .enumerate()
        .map(|(i, l)| match i {
            0 => l.to_string(),
            _ => format!("{}{}", id(i - 1), &l[5..]),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut ids = String::from("user_id,phone\n");
    for i in 0..300 {
        ids.push_str(&format!("{},1380013{i:04}\n", id(i)));
    }
    let dir = clusters_with_phones(&csv, &ids, "0%");
    let ran = dir.run("run", &[]);
    let run = ran.published("undated");
    let all: BTreeSet<String> = members(&run).into_values().flatten().collect();
    let expected: BTreeSet<String> = (0..300).map(id).collect();
    assert_eq!(all, expected, "every id, long ones whole");
    // The segment files carry the long ids, whole, each with its phone.
    let mut lines = BTreeSet::new();
    for (p, bytes) in snapshot(&run.join("csv")) {
        if p.to_string_lossy().contains("target") {
            lines.extend(
                String::from_utf8(bytes)
                    .unwrap()
                    .lines()
                    .skip(1)
                    .map(str::to_string),
            );
        }
    }
    let expected: BTreeSet<String> = (0..300)
        .map(|i| format!("{},1380013{i:04}", id(i)))
        .collect();
    assert_eq!(lines, expected);
}

/// Clusters of `in/t.csv` published with the identities `ids` (`user_id,phone` CSV) and
/// `holdout`, to a `csv` export of raw phones per cluster.
fn clusters_with_phones(csv: &str, ids: &str, holdout: &str) -> JobDir {
    let rest = format!("{BY_CLUSTER}[publish]\nidentities = \"ids\"\nholdout = \"{holdout}\"\n[[export]]\nsegments = [\"cl\"]\nformat = \"csv\"\ncolumns = [\"phone\"]\nhash = \"none\"\nmin_size = 1\n");
    let text = job(KMEANS, &rest).replace(
        "[[step]]",
        "ids = { url = \"../in/ids.csv\", format = \"csv\", schema = \"user_id string, phone string\" }\n[[step]]",
    );
    JobDir::new(&text)
        .file("in/t.csv", csv)
        .file("in/ids.csv", ids)
}

fn write_parquet(path: &std::path::Path, batches: &[RecordBatch], schema: Arc<Schema>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

fn orders_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("amount", DataType::Float64, true),
    ]))
}

/// Orders of `users` on `day` (one each, amount i + 1).
fn orders(users: &[&str], day: &str) -> RecordBatch {
    let d = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
    let ts = d
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros();
    RecordBatch::try_new(
        orders_schema(),
        vec![
            Arc::new(StringArray::from(users.to_vec())),
            Arc::new(TimestampMicrosecondArray::from(vec![ts; users.len()])),
            Arc::new(Float64Array::from(
                (0..users.len()).map(|i| i as f64 + 1.0).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

#[test]
fn a_parquet_file_with_zero_row_groups_is_read_as_no_rows() {
    let dir = JobDir::new(
        "name = \"z\"\n[sources]\nfolder = { url = \"../in/folder/\", format = \"parquet\" }\nnothing = { url = \"../in/nothing.parquet\", format = \"parquet\" }\n[[step]]\nname = \"counts\"\nsql = \"../sql/counts.sql\"\n[[export]]\ntable = \"counts\"\nto = \"counts.csv\"\n",
    )
    .file(
        "sql/counts.sql",
        "SELECT (SELECT COUNT(*) FROM folder) AS folder_rows, (SELECT COUNT(*) FROM nothing) AS nothing_rows",
    );
    let empty = dir.path().join("in/nothing.parquet");
    write_parquet(&empty, &[], orders_schema());
    write_parquet(
        &dir.path().join("in/folder/a.parquet"),
        &[],
        orders_schema(),
    );
    write_parquet(
        &dir.path().join("in/folder/b.parquet"),
        &[orders(&["u1", "u2", "u3"], "2026-11-20")],
        orders_schema(),
    );
    let meta = datafusion::parquet::file::reader::SerializedFileReader::new(
        std::fs::File::open(&empty).unwrap(),
    )
    .unwrap();
    use datafusion::parquet::file::reader::FileReader;
    assert_eq!(
        meta.metadata().num_row_groups(),
        0,
        "the file under test has no row group"
    );
    let ran = dir.run("run", &[]);
    let text = ran.text();
    let run = ran.published("undated");
    let counts = std::fs::read_to_string(run.join("counts.csv")).unwrap();
    assert_eq!(counts.lines().nth(1), Some("3,0"), "{counts}");
    assert!(text.contains("EMPTY"), "the empty source is said: {text}");
}

#[test]
fn a_source_with_no_rows_on_the_first_night_then_nights_equal_a_full_refresh() {
    let dir = JobDir::new(
        "name = \"first\"\nstate = \"../state\"\n[params]\nas_of = { type = \"date\" }\n[sources]\norders = { url = \"../in/orders/\", format = \"parquet\", partitions = [\"dt\"] }\n[[step]]\nname = \"orders_daily\"\nsql = \"../sql/daily.sql\"\nincremental = { source = \"orders\", days = 7 }\n[[step]]\nname = \"orders_7d\"\nsql = \"../sql/roll.sql\"\nincremental = { source = \"orders_daily\", days = 7, merge_by = [\"user_id\"], merge = { orders_7d = \"sum\", amount_7d = \"sum\" } }\n[[segment]]\nname = \"buyers\"\nquery = \"SELECT user_id FROM orders_7d WHERE orders_7d > 0\"\n[[export]]\ntable = \"orders_7d\"\nto = \"orders_7d.parquet\"\norder_by = [\"user_id\"]\n",
    )
    .file(
        "sql/daily.sql",
        "SELECT dt, user_id, COUNT(*) AS orders, SUM(amount) AS amount FROM orders GROUP BY dt, user_id",
    )
    .file(
        "sql/roll.sql",
        "SELECT dt, user_id, SUM(orders) AS orders_7d, SUM(amount) AS amount_7d FROM orders_daily GROUP BY dt, user_id",
    );
    let day = |d: &str, users: &[&str]| {
        write_parquet(
            &dir.path().join(format!("in/orders/dt={d}/part.parquet")),
            &[orders(users, d)],
            orders_schema(),
        )
    };
    for d in ["2026-11-20", "2026-11-21", "2026-11-22"] {
        day(d, &[]);
    }
    let first = dir.run("run", &["--date", "2026-11-23"]);
    let text = first.text();
    assert!(text.contains("EMPTY"), "{text}");
    let run = first.published("2026-11-23");
    assert_eq!(rows(&read_parquet(&run.join("orders_7d.parquet"))), 0);
    assert!(members(&run).is_empty(), "no buyers yet");

    day("2026-11-23", &["a", "b"]);
    day("2026-11-24", &["b", "c", "c"]);
    let night = dir.run("run", &["--date", "2026-11-25"]);
    let night_rows = read_parquet(&night.published("2026-11-25").join("orders_7d.parquet"));
    // The night says what it cost beside the last full run; `status` tells them apart.
    let said = night.text();
    assert!(
        said.contains("less than the last full run (2026-11-23, run "),
        "{said}"
    );
    let status = dir.run("status", &[]).text();
    let kinds: Vec<&str> = status
        .lines()
        .filter(|l| l.contains(" published"))
        .filter_map(|l| l.split_whitespace().find(|w| *w == "full" || *w == "night"))
        .collect();
    assert_eq!(kinds, ["night", "full"], "{status}");
    let full_out = dir.path().join("full");
    let full = dir.run(
        "run",
        &[
            "--date",
            "2026-11-25",
            "--full-refresh",
            "--output",
            full_out.to_str().unwrap(),
        ],
    );
    assert_eq!(full.code(), Some(0), "{}", full.text());
    let full_rows = read_parquet(
        &published_at(&dir.path().join("full"), "2026-11-25").join("orders_7d.parquet"),
    );
    let table = |b: &[RecordBatch]| {
        datafusion::arrow::util::pretty::pretty_format_batches(b)
            .unwrap()
            .to_string()
    };
    assert_eq!(table(&night_rows), table(&full_rows));
    assert_eq!(rows(&night_rows), 3);
    let orders_c: i64 = night_rows
        .iter()
        .map(|b| {
            let id = column::<StringArray>(b, "user_id");
            let n = column::<Int64Array>(b, "orders_7d");
            (0..b.num_rows())
                .filter(|&i| id.value(i) == "c")
                .map(|i| n.value(i))
                .sum::<i64>()
        })
        .sum();
    assert_eq!(orders_c, 2);
}

#[test]
fn duplicate_ids_in_the_identities_table_are_counted_and_never_split() {
    let csv = features_csv(300, |i| (i % 7).to_string());
    // The first 30 users have a second row with another phone.
    let mut ids = String::from("user_id,phone\n");
    for i in 0..300 {
        ids.push_str(&format!("u{i:04},1380013{i:04}\n"));
    }
    for i in 0..30 {
        ids.push_str(&format!("u{i:04},1390013{i:04}\n"));
    }
    let dir = clusters_with_phones(&csv, &ids, "30%");
    let ran = dir.run("run", &[]);
    let out = ran.text();
    let run = ran.published("undated");
    assert!(
        out.contains("identities table `ids`: 30 ids are on more than one row"),
        "{out}"
    );
    let m = manifest(&run);
    assert_eq!(m["exports"][0]["identities_duplicate_ids"], 30);
    assert!(m["warnings"]
        .to_string()
        .contains("30 ids are on more than one row"));
    // Target and control never share a user, nor a phone.
    let groups = members(&run);
    let segments: BTreeSet<&String> = groups.keys().map(|(s, _)| s).collect();
    let mut controls = 0;
    for s in segments {
        let empty = BTreeSet::new();
        let t = groups.get(&(s.clone(), "target".into())).unwrap_or(&empty);
        let c = groups.get(&(s.clone(), "control".into())).unwrap_or(&empty);
        controls += c.len();
        assert!(t.is_disjoint(c), "{s}: a user in both groups");
        let phones = |grp: &str| -> BTreeSet<String> {
            snapshot(&run.join("csv").join(s).join(grp))
                .into_values()
                .flat_map(|b| {
                    String::from_utf8(b)
                        .unwrap()
                        .lines()
                        .skip(1)
                        .map(|l| l.split(',').nth(1).unwrap().to_string())
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let (tp, cp) = (phones("target"), phones("control"));
        assert!(tp.is_disjoint(&cp), "{s}: a phone in both groups");
        // A duplicated user in the target goes out with both its phones.
        for u in t.iter().filter(|u| u[1..].parse::<usize>().unwrap() < 30) {
            let i = &u[1..];
            assert!(
                tp.contains(&format!("1380013{i}")) && tp.contains(&format!("1390013{i}")),
                "{u}"
            );
        }
    }
    assert!(controls > 30, "the holdout holds users back ({controls})");
}

#[test]
fn failed_runs_on_bad_data_leave_the_last_publication() {
    let good = features_csv(400, |i| (i % 7).to_string());
    let dir =
        JobDir::new(&job(&format!("{KMEANS}{LOOKALIKE}"), BY_CLUSTER)).file("in/t.csv", &good);
    dir.run("run", &[]).published("undated");
    let out = dir.path().join("out");
    let before = publication_of(&out, "undated").unwrap();
    let job_file = std::fs::read_to_string(dir.job()).unwrap();
    let cases: [(&str, String, String, &[&str]); 3] = [
        (
            "a feature column that is all null",
            features_csv(400, |_| String::new()),
            job_file.clone(),
            &["[clusters]", "`c`", "no usable value"],
        ),
        (
            "a constant feature column",
            features_csv(400, |_| "5".into()),
            job_file.clone(),
            &["[clusters]", "`c`"],
        ),
        (
            "a seed that is the whole pool",
            good.clone(),
            job_file.replace("WHERE a > 8", ""),
            &["[la]", "more than half"],
        ),
    ];
    for (what, data, job_text, expect) in cases {
        write(&dir.path().join("in/t.csv"), &data);
        write(&dir.job(), &job_text);
        let ran = dir.run("run", &[]);
        let text = ran.text();
        assert_eq!(ran.code(), Some(78), "{what}: {text}");
        for e in expect {
            assert!(text.contains(e), "{what}: expected {e:?} in {text}");
        }
        assert!(
            publication_of(&out, "undated").unwrap() == before,
            "{what}: the last publication changed"
        );
    }
}
