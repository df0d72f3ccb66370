//! The reference job against golden features computed by DuckDB on the same files.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::common::*;

fn run_reference(variant: &str, out: &std::path::Path) {
    let data = repo().join("tests/data/reference_small").join(variant);
    let res = bin()
        .args(["run", "jobs/reference.toml", "--param"])
        .arg(format!("data={}", data.display()))
        .arg("--output")
        .arg(out)
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", output_text(&res));
}

/// Every cell as text ("" for null), rows in file order.
fn cells(batches: &[RecordBatch]) -> (Vec<String>, Vec<Vec<String>>) {
    let header: Vec<String> = batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut rows = Vec::new();
    let opts = FormatOptions::default().with_null("");
    for b in batches {
        let fmts: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for i in 0..b.num_rows() {
            rows.push(fmts.iter().map(|f| f.value(i).to_string()).collect());
        }
    }
    (header, rows)
}

fn golden(name: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let text =
        std::fs::read_to_string(repo().join("tests/data/reference_small").join(name)).unwrap();
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    (
        header,
        lines
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect(),
    )
}

fn assert_same(ours: (Vec<String>, Vec<Vec<String>>), theirs: (Vec<String>, Vec<Vec<String>>)) {
    assert_eq!(ours.0, theirs.0, "same columns in the same order");
    assert_eq!(ours.1.len(), theirs.1.len(), "same row count");
    for (r, (a, b)) in ours.1.iter().zip(&theirs.1).enumerate() {
        for (c, (x, y)) in a.iter().zip(b).enumerate() {
            let same = x == y
                || match (x.parse::<f64>(), y.parse::<f64>()) {
                    (Ok(p), Ok(q)) => (p - q).abs() <= 1e-9 * (1.0 + q.abs()),
                    _ => false,
                };
            assert!(
                same,
                "row {r} ({}) column {}: ours {x:?}, DuckDB {y:?}",
                a[0], ours.0[c]
            );
        }
    }
}

#[test]
fn reference_features_equal_duckdb_golden() {
    let tmp = tempfile::tempdir().unwrap();
    run_reference("clean", tmp.path());
    assert_same(
        cells(&read_parquet(
            &published(tmp.path()).join("user_features.parquet"),
        )),
        golden("golden_user_features.csv"),
    );
    assert_same(
        cells(&read_parquet(
            &published(tmp.path()).join("lifecycle_b01.parquet"),
        )),
        golden("golden_lifecycle_b01.csv"),
    );
}

#[test]
fn reference_features_on_dirty_data_equal_clean() {
    let tmp = tempfile::tempdir().unwrap();
    run_reference("clean", &tmp.path().join("clean"));
    run_reference("dirty", &tmp.path().join("dirty"));
    let a =
        std::fs::read(published(&tmp.path().join("clean")).join("user_features.parquet")).unwrap();
    let b =
        std::fs::read(published(&tmp.path().join("dirty")).join("user_features.parquet")).unwrap();
    assert!(
        a == b,
        "the cleaning rules make dirty data give exactly the clean features"
    );
}

#[test]
fn reference_export_holds_the_md5_of_each_members_device_id_else_oaid() {
    use datafusion::arrow::array::{Array, Int32Array, StringArray};
    use md5::{Digest, Md5};
    use std::collections::{BTreeMap, BTreeSet};
    let tmp = tempfile::tempdir().unwrap();
    run_reference("clean", tmp.path());
    let run = published(tmp.path());
    let data = repo().join("tests/data/reference_small/clean");
    let mut id_of: BTreeMap<String, Option<String>> = BTreeMap::new();
    for b in read_parquet(&data.join("users.parquet")) {
        let cast = |name: &str| {
            datafusion::arrow::compute::cast(
                b.column_by_name(name).unwrap(),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
            .unwrap()
        };
        let (u, d, o) = (cast("user_id"), cast("device_id"), cast("oaid"));
        let (u, d, o) = (
            u.as_any().downcast_ref::<StringArray>().unwrap(),
            d.as_any().downcast_ref::<StringArray>().unwrap(),
            o.as_any().downcast_ref::<StringArray>().unwrap(),
        );
        for i in 0..b.num_rows() {
            let v = if d.is_valid(i) {
                Some(d.value(i))
            } else if o.is_valid(i) {
                Some(o.value(i))
            } else {
                None
            };
            id_of.insert(
                u.value(i).to_string(),
                v.map(|v| hex::encode(Md5::digest(v.as_bytes()))),
            );
        }
    }
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for b in read_parquet(&run.join("clusters.parquet")) {
        let u = column::<StringArray>(&b, "user_id");
        let c = column::<Int32Array>(&b, "cluster");
        for i in 0..b.num_rows() {
            if let Some(h) = &id_of[u.value(i)] {
                expected
                    .entry(format!("cluster_{}", c.value(i)))
                    .or_default()
                    .insert(h.clone());
            }
        }
    }
    assert!(expected.len() >= 2, "{expected:?}");
    for (seg, hashes) in &expected {
        let mut got = BTreeSet::new();
        for f in std::fs::read_dir(run.join("tencent_ads").join(seg).join("target")).unwrap() {
            for l in std::fs::read_to_string(f.unwrap().path()).unwrap().lines() {
                assert!(got.insert(l.to_string()), "no line twice");
            }
        }
        assert_eq!(&got, hashes, "{seg}");
    }
}

/// Copies a folder tree.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn order_de_duplication_equals_row_number_also_for_missing_and_differing_order_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_tree(&repo().join("tests/data/reference_small/dirty"), &data);
    // Extra orders: two rows without an order_id (one group for ROW_NUMBER), and one order_id
    // delivered twice with different times (not an exact copy: the earlier row is kept).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = datafusion::prelude::SessionContext::new();
        let df = ctx
            .sql(
                "SELECT CAST(order_id AS BIGINT) AS order_id, user_id, arrow_cast(ts, 'Timestamp(Microsecond, None)') AS ts, \
                 brand, category, amount, CAST(qty AS INT) AS qty FROM (VALUES \
                 (NULL, 'u_extra', '2024-06-15 10:00:00', 'B01', 'beauty', 12.5, 1), \
                 (NULL, 'u_extra', '2024-06-16 10:00:00', 'B02', 'beauty', 7.25, 1), \
                 (987654321, 'u_extra', '2024-06-20 09:00:00', 'B01', 'toys', 30.0, 2), \
                 (987654321, 'u_extra', '2024-06-19 09:00:00', 'B01', 'toys', 30.0, 2)) \
                 t(order_id, user_id, ts, brand, category, amount, qty)",
            )
            .await
            .unwrap();
        df.write_parquet(
            data.join("orders/part-extra.parquet").to_str().unwrap(),
            datafusion::dataframe::DataFrameWriteOptions::new().with_single_file_output(true),
            None,
        )
        .await
        .unwrap();
    });
    let spec = "SELECT user_id, ts, brand, category, amount FROM (SELECT *, ROW_NUMBER() OVER \
                (PARTITION BY order_id ORDER BY ts, user_id, amount) AS rk FROM orders_window) r \
                WHERE rk = 1";
    let ours = "SELECT user_id, ts, brand, category, amount FROM orders_90d";
    let query = format!(
        "SELECT (SELECT COUNT(*) FROM orders_window WHERE user_id = 'u_extra') AS extra_in, \
         (SELECT COUNT(*) FROM orders_90d WHERE user_id = 'u_extra') AS extra_kept, \
         (SELECT COUNT(*) FROM (({ours}) EXCEPT ALL ({spec})) a) AS only_ours, \
         (SELECT COUNT(*) FROM (({spec}) EXCEPT ALL ({ours})) b) AS only_spec"
    );
    let res = bin()
        .args(["sql", "jobs/reference.toml", "--param"])
        .arg(format!("data={}", data.display()))
        .args(["-e", &query])
        .output()
        .unwrap();
    let text = output_text(&res);
    assert!(res.status.success(), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("| ") && l.chars().nth(2).is_some_and(|c| c.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no result row: {text}"));
    let v: Vec<&str> = row
        .split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    // 4 extra rows read; 2 kept (one without an id, the earlier copy of 987654321).
    assert_eq!(v, ["4", "2", "0", "0"], "{text}");
}
