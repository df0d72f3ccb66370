//! Cluster profiles: size, means in original units, the features that set each cluster apart,
//! and a label in words, from one SQL aggregate over the input joined to the assignments.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, Float64Array, Int32Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;

use super::{KMeansConfig, KMeansModel};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::quote::ident as quote;

/// Fills sizes, means in original units, distinguishing features and labels, with one SQL
/// aggregate over the input joined to the assignments.
pub(super) async fn profile(
    engine: &Engine,
    name: &str,
    cfg: &KMeansConfig,
    mut model: KMeansModel,
) -> Result<KMeansModel> {
    let context = format!("step `{name}` (profiles)");
    let mut cols: Vec<String> = Vec::new();
    for f in &model.features {
        if f.equals.is_none() && !cols.contains(&f.column) {
            cols.push(f.column.clone());
        }
    }
    let avg: Vec<String> = cols
        .iter()
        .map(|c| {
            format!(
                "AVG({}) AS {}",
                finite(&format!("i.{}", quote(c))),
                quote(&format!("m_{c}"))
            )
        })
        .collect();
    let sd: Vec<String> = cols
        .iter()
        .map(|c| {
            format!(
                "STDDEV_POP({}) AS {}",
                finite(&quote(c)),
                quote(&format!("s_{c}"))
            )
        })
        .collect();
    let avg_all: Vec<String> = cols
        .iter()
        .map(|c| format!("AVG({}) AS {}", finite(&quote(c)), quote(&format!("m_{c}"))))
        .collect();
    let per = format!(
        "SELECT c.cluster, COUNT(*) AS n{} FROM {} c JOIN {} i ON c.{id} = i.{id} GROUP BY c.cluster ORDER BY c.cluster",
        avg.iter().map(|a| format!(", {a}")).collect::<String>(),
        quote(name),
        quote(&cfg.input),
        id = quote(&cfg.id)
    );
    let all = format!(
        "SELECT COUNT(*) AS n{}{} FROM {}",
        avg_all.iter().map(|a| format!(", {a}")).collect::<String>(),
        sd.iter().map(|a| format!(", {a}")).collect::<String>(),
        quote(&cfg.input)
    );
    let run = |q: String| {
        let context = context.clone();
        async move {
            let b = crate::engine::sql::collect(engine, &q, &context).await?;
            Ok::<_, Error>(b)
        }
    };
    let per = run(per).await?;
    let all = run(all).await?;
    let f64_at = |b: &RecordBatch, col: &str, i: usize| -> f64 {
        b.column_by_name(col)
            .and_then(|c| datafusion::arrow::compute::cast(c, &DataType::Float64).ok())
            .map(|c| {
                let a = c
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .expect("f64")
                    .clone();
                if a.is_null(i) {
                    f64::NAN
                } else {
                    a.value(i)
                }
            })
            .unwrap_or(f64::NAN)
    };
    let total = all.first().map(|b| f64_at(b, "n", 0)).unwrap_or(0.0);
    let pop: BTreeMap<String, (f64, f64)> = cols
        .iter()
        .map(|c| {
            (
                c.clone(),
                all.first()
                    .map(|b| {
                        (
                            f64_at(b, &format!("m_{c}"), 0),
                            f64_at(b, &format!("s_{c}"), 0),
                        )
                    })
                    .unwrap_or((f64::NAN, f64::NAN)),
            )
        })
        .collect();
    for b in &per {
        let cl = b
            .column_by_name("cluster")
            .and_then(|c| c.as_any().downcast_ref::<Int32Array>().cloned());
        let Some(cl) = cl else { continue };
        for i in 0..b.num_rows() {
            let id = cl.value(i);
            let Some(p) = model.clusters.iter_mut().find(|c| c.id == id) else {
                continue;
            };
            p.size = f64_at(b, "n", i) as usize;
            p.share = if total > 0.0 {
                p.size as f64 / total
            } else {
                0.0
            };
            let mut z: Vec<(String, f64)> = Vec::new();
            for c in &cols {
                let mean = f64_at(b, &format!("m_{c}"), i);
                p.means.insert(c.clone(), mean);
                let (pm, ps) = pop[c];
                if ps > 0.0 && mean.is_finite() {
                    z.push((c.clone(), (mean - pm) / ps));
                }
            }
            z.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
            z.truncate(3);
            p.label = z
                .iter()
                .take(2)
                .map(|(f, v)| format!("{} {}", if *v >= 0.0 { "high" } else { "low" }, f))
                .collect::<Vec<_>>()
                .join(" · ");
            if p.label.is_empty() {
                p.label = "typical".into();
            }
            p.top_features = z;
        }
    }
    model.clusters.sort_by_key(|c| c.id);
    Ok(model)
}

/// `x` as a double, NaN and ±inf as null: profiles describe the values a column has.
fn finite(x: &str) -> String {
    format!("CASE WHEN isnan(CAST({x} AS DOUBLE)) OR abs(CAST({x} AS DOUBLE)) = CAST('Infinity' AS DOUBLE) THEN NULL ELSE CAST({x} AS DOUBLE) END")
}

/// The profiles as text for the run summary.
pub fn render_profiles(model: &KMeansModel) -> String {
    let mut s = crate::features::render_missing(&model.missing, model.dropped_rows);
    if let Some(d) = model.distinct_points {
        s.push_str(&format!(
            "    only {d} distinct points in the fitting sample: k = {}\n",
            model.k
        ));
    }
    if !model.k_curve.is_empty() {
        let pts: Vec<String> = model
            .k_curve
            .iter()
            .map(|p| format!("k={} {:.3}", p.k, p.silhouette))
            .collect();
        s.push_str(&format!(
            "    k = {} chosen by silhouette ({})\n",
            model.k,
            pts.join(", ")
        ));
    }
    for c in &model.clusters {
        let top: Vec<String> = c
            .top_features
            .iter()
            .map(|(f, z)| format!("{f} {z:+.1}σ"))
            .collect();
        let matched = match c.matched_previous {
            Some((p, d)) => format!("  (was {p}, moved {d:.2})"),
            None => String::new(),
        };
        s.push_str(&format!(
            "    cluster {:>2} {:>9} rows {:>5.1}%  {:<44} [{}]{matched}\n",
            c.id,
            c.size,
            c.share * 100.0,
            c.label,
            top.join(", ")
        ));
    }
    s
}
