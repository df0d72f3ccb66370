//! From an Arrow table to a numeric feature matrix: per-column transforms (log1p, quantile
//! clipping, one-hot), a null/NaN policy, and scaling. The fitted transform is kept as data
//! (saved with the model) and can be written as a SQL expression, so the SQL engine can apply
//! exactly the same arithmetic to every user.

mod apply;
pub use apply::apply;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::{cast, concat};
use datafusion::arrow::datatypes::DataType;
use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// What to do with a missing value (null, NaN or infinite).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NullPolicy {
    /// Replace with the column mean (after the pre-transforms).
    Mean,
    /// Replace with zero (after the pre-transforms).
    Zero,
    /// Drop the row.
    Drop,
}

/// A transform applied before scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreOp {
    /// `ln(1 + x)`.
    Log1p,
    /// Clip at the given upper quantile of the column.
    Clip(f64),
}

/// Final scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scaling {
    /// `(x - mean) / population standard deviation`.
    Standardize,
    /// `(x - min) / (max - min)`.
    MinMax,
    /// Unscaled.
    None,
}

/// How one source column becomes features, as the user asked.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnSpec {
    /// A numeric column.
    Numeric {
        /// Source column.
        column: String,
        /// Pre-transforms, in order.
        pre: Vec<PreOp>,
        /// Scaling.
        scaling: Scaling,
    },
    /// A string column expanded to one 0/1 feature per frequent value.
    OneHot {
        /// Source column.
        column: String,
        /// How many of the most frequent values.
        top: usize,
    },
}

/// Parses a transform list such as `["log1p", "clip:0.99", "minmax"]`.
pub fn parse_transforms(column: &str, list: &[String]) -> Result<ColumnSpec, String> {
    let mut pre = Vec::new();
    let mut scaling = None;
    for t in list {
        let t = t.trim();
        let (name, arg) = t
            .split_once(':')
            .map(|(a, b)| (a, Some(b)))
            .unwrap_or((t, None));
        match (name, arg) {
            ("log1p", None) => pre.push(PreOp::Log1p),
            ("clip", Some(q)) => {
                let q: f64 = q.parse().map_err(|_| format!("`{t}`: the quantile must be a number such as 0.99"))?;
                if !(0.0 < q && q <= 1.0) {
                    return Err(format!("`{t}`: the quantile must be in (0, 1]"));
                }
                pre.push(PreOp::Clip(q));
            }
            ("standardize", None) => scaling = Some(Scaling::Standardize),
            ("minmax", None) => scaling = Some(Scaling::MinMax),
            ("none", None) => scaling = Some(Scaling::None),
            ("onehot", Some(n)) => {
                let top: usize = n.parse().map_err(|_| format!("`{t}`: write onehot:N, e.g. onehot:5"))?;
                if list.len() > 1 || top == 0 {
                    return Err(format!("`{t}` stands alone and needs N >= 1"));
                }
                return Ok(ColumnSpec::OneHot { column: column.to_string(), top });
            }
            _ => {
                return Err(format!(
                    "unknown transform `{t}` (use log1p, clip:Q, standardize, minmax, none or onehot:N)"
                ))
            }
        }
    }
    Ok(ColumnSpec::Numeric {
        column: column.to_string(),
        pre,
        scaling: scaling.unwrap_or(Scaling::Standardize),
    })
}

/// A pre-transform with its fitted constant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FittedOp {
    /// `ln(1 + x)`.
    Log1p,
    /// `min(x, value)`.
    ClipAt {
        /// Quantile asked for.
        quantile: f64,
        /// The value at that quantile.
        value: f64,
    },
}

/// One output feature with everything needed to compute it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedFeature {
    /// Feature name (the source column, or `column=value` for one-hot).
    pub name: String,
    /// Source column.
    pub column: String,
    /// One-hot value, when this feature is an indicator.
    pub equals: Option<String>,
    /// Pre-transforms.
    pub ops: Vec<FittedOp>,
    /// Value used for missing entries (after the pre-transforms).
    pub impute: f64,
    /// Subtracted before dividing by `scale`.
    pub center: f64,
    /// Divisor.
    pub scale: f64,
}

impl FittedFeature {
    /// Applies the pre-transforms; `None` means missing.
    #[inline]
    pub fn pre(&self, v: Option<f64>) -> Option<f64> {
        let mut x = v.filter(|x| x.is_finite())?;
        for op in &self.ops {
            x = match op {
                // Written as ln(1 + x), not ln_1p, so the SQL form gives the same bits.
                FittedOp::Log1p => (1.0 + x).ln(),
                FittedOp::ClipAt { value, .. } => x.min(*value),
            };
        }
        x.is_finite().then_some(x)
    }

    /// The SQL expression of this feature over the input table.
    pub fn sql(&self) -> String {
        let col = crate::quote::ident(&self.column);
        if let Some(v) = &self.equals {
            return format!(
                "(CASE WHEN {col} = {} THEN 1.0 ELSE 0.0 END)",
                crate::quote::literal(v)
            );
        }
        let x = format!("CAST({col} AS DOUBLE)");
        let mut e = x.clone();
        for op in &self.ops {
            e = match op {
                FittedOp::Log1p => format!("ln(1.0 + {e})"),
                FittedOp::ClipAt { value, .. } => format!("least({e}, {})", lit(*value)),
            };
        }
        format!(
            "((CASE WHEN {x} IS NULL OR isnan({x}) OR abs({x}) = CAST('Infinity' AS DOUBLE) THEN {} ELSE {e} END - {}) / {})",
            lit(self.impute),
            lit(self.center),
            lit(self.scale)
        )
    }
}

/// A float as an exact SQL literal.
pub fn lit(v: f64) -> String {
    format!("CAST('{v:?}' AS DOUBLE)")
}

/// Missing-value counts of one column.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MissingCount {
    /// Feature name.
    pub feature: String,
    /// Nulls.
    pub nulls: usize,
    /// NaN or infinite values.
    pub non_finite: usize,
}

/// The missing values of a fitted matrix as a line of the run summary (empty when none):
/// per column, nulls and NaN/±inf, and whether rows were imputed or dropped.
pub fn render_missing(missing: &[MissingCount], dropped_rows: usize) -> String {
    let parts: Vec<String> = missing
        .iter()
        .filter(|m| m.nulls + m.non_finite > 0)
        .map(|m| {
            format!(
                "{} {} ({} null, {} NaN/±inf)",
                m.feature,
                m.nulls + m.non_finite,
                m.nulls,
                m.non_finite
            )
        })
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    let how = if dropped_rows > 0 {
        format!("{dropped_rows} rows dropped (nulls = \"drop\")")
    } else {
        "imputed".to_string()
    };
    format!("    missing values: {}; {how}\n", parts.join(", "))
}

/// The matrix with its row ids.
pub struct FeatureMatrix {
    /// Row ids, in row order.
    pub ids: StringArray,
    /// Rows × features, row-major.
    pub x: Array2<f64>,
    /// The fitted transform.
    pub features: Vec<FittedFeature>,
    /// Missing values per source column.
    pub missing: Vec<MissingCount>,
    /// Rows dropped by the `drop` null policy.
    pub dropped_rows: usize,
}

/// Why a matrix could not be built.
#[derive(Debug)]
pub struct FeatureError {
    /// The column concerned, if any.
    pub column: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

fn ferr(column: &str, message: String) -> FeatureError {
    FeatureError {
        column: Some(column.to_string()),
        message,
    }
}

fn column_values(batches: &[RecordBatch], name: &str) -> Result<ArrayRef, FeatureError> {
    let arrays: Vec<&dyn Array> = batches
        .iter()
        .map(|b| b.column_by_name(name).map(|c| c.as_ref()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ferr(name, format!("no column `{name}` in the input")))?;
    if arrays.is_empty() {
        return Ok(Arc::new(Float64Array::from(Vec::<f64>::new())));
    }
    concat(&arrays).map_err(|e| ferr(name, e.to_string()))
}

/// True for types k-means can use directly.
pub fn is_numeric(dt: &DataType) -> bool {
    dt.is_numeric() || matches!(dt, DataType::Boolean)
}

/// Builds the feature matrix from the input batches (already in a deterministic row order).
/// Statistics (means, deviations, quantiles, frequent values) are fitted on all rows.
pub fn build(
    batches: &[RecordBatch],
    id: &str,
    specs: &[ColumnSpec],
    nulls: NullPolicy,
) -> Result<FeatureMatrix, FeatureError> {
    let ids = id_values(batches, id)?;
    let n = ids.len();

    // Rows kept: all, or those with no null/NaN/infinite value under the `drop` policy.
    let mut keep_mask = vec![true; n];
    if nulls == NullPolicy::Drop {
        for spec in specs {
            if let ColumnSpec::Numeric { column, .. } = spec {
                let raw = column_values(batches, column)?;
                if let Ok(f) = cast(&raw, &DataType::Float64) {
                    let f = f.as_any().downcast_ref::<Float64Array>().expect("f64");
                    for (k, v) in keep_mask.iter_mut().zip(f.iter()) {
                        *k &= v.is_some_and(|x| x.is_finite());
                    }
                }
            }
        }
    }
    let keep: Vec<usize> = (0..n).filter(|&i| keep_mask[i]).collect();
    drop(keep_mask);
    let rows = keep.len();
    let d: usize = specs
        .iter()
        .map(|s| match s {
            ColumnSpec::Numeric { .. } => Ok(1),
            ColumnSpec::OneHot { column, top } => {
                let raw = column_values(batches, column)?;
                let s = cast(&raw, &DataType::Utf8).map_err(|e| ferr(column, e.to_string()))?;
                let s = s.as_any().downcast_ref::<StringArray>().expect("utf8");
                let distinct: std::collections::BTreeSet<&str> = s.iter().flatten().collect();
                Ok(distinct.len().min(*top))
            }
        })
        .sum::<Result<usize, FeatureError>>()?;
    let mut x = Array2::<f64>::zeros((rows, d));
    let mut features: Vec<FittedFeature> = Vec::with_capacity(d);
    let mut missing = Vec::new();

    // Column by column: only one column's values are held besides the matrix, which keeps the
    // peak memory near the matrix size.
    for spec in specs {
        match spec {
            ColumnSpec::Numeric {
                column,
                pre,
                scaling,
            } => {
                let raw = column_values(batches, column)?;
                if !is_numeric(raw.data_type()) {
                    return Err(ferr(column, format!("column `{column}` is {}, not numeric; use `onehot:N` for a string column, or leave it out of `features`", raw.data_type())));
                }
                let f = cast(&raw, &DataType::Float64).map_err(|e| ferr(column, e.to_string()))?;
                drop(raw);
                let f = f.as_any().downcast_ref::<Float64Array>().expect("f64");
                let nulls_n = f.null_count();
                let non_finite = f.iter().flatten().filter(|v| !v.is_finite()).count();
                missing.push(MissingCount {
                    feature: column.clone(),
                    nulls: nulls_n,
                    non_finite,
                });
                if nulls_n + non_finite == n && n > 0 {
                    return Err(ferr(column, format!("column `{column}` has no usable value (all {n} are null, NaN or infinite)")));
                }
                // NaN marks a missing value from here on.
                let mut cur: Vec<f64> = f
                    .iter()
                    .map(|v| v.filter(|x| x.is_finite()).unwrap_or(f64::NAN))
                    .collect();
                let mut ops = Vec::new();
                for op in pre {
                    match op {
                        PreOp::Log1p => {
                            cur.par_iter_mut().for_each(|v| *v = (1.0 + *v).ln());
                            ops.push(FittedOp::Log1p);
                        }
                        PreOp::Clip(q) => {
                            let mut present: Vec<f64> =
                                cur.iter().copied().filter(|x| x.is_finite()).collect();
                            let idx = (((present.len() as f64) * q).ceil() as usize)
                                .clamp(1, present.len().max(1))
                                - 1;
                            let value = if present.is_empty() {
                                0.0
                            } else {
                                *present.select_nth_unstable_by(idx, |a, b| a.total_cmp(b)).1
                            };
                            cur.par_iter_mut().for_each(|v| {
                                if v.is_finite() {
                                    *v = v.min(value)
                                }
                            });
                            ops.push(FittedOp::ClipAt {
                                quantile: *q,
                                value,
                            });
                        }
                    }
                }
                let (sum, cnt, mn, mx) = cur.iter().filter(|x| x.is_finite()).fold(
                    (0.0, 0usize, f64::INFINITY, f64::NEG_INFINITY),
                    |(s, c, mn, mx), &x| (s + x, c + 1, mn.min(x), mx.max(x)),
                );
                let mean = if cnt > 0 { sum / cnt as f64 } else { 0.0 };
                let impute = match nulls {
                    NullPolicy::Zero => 0.0,
                    _ => mean,
                };
                // Statistics of the column as the model sees it (kept rows, imputed values included).
                let val = |i: usize| if cur[i].is_finite() { cur[i] } else { impute };
                let fmean = keep.iter().map(|&i| val(i)).sum::<f64>() / rows.max(1) as f64;
                let var = keep
                    .iter()
                    .map(|&i| (val(i) - fmean) * (val(i) - fmean))
                    .sum::<f64>()
                    / rows.max(1) as f64;
                let (center, scale) = match scaling {
                    Scaling::Standardize => (fmean, var.sqrt()),
                    Scaling::MinMax => (mn.min(impute), mx.max(impute) - mn.min(impute)),
                    Scaling::None => (0.0, 1.0),
                };
                if *scaling != Scaling::None && (scale.is_nan() || scale <= 0.0) {
                    return Err(ferr(column, format!("column `{column}` is constant ({mean}) after its transforms (zero variance): it cannot separate clusters; leave it out of `features`")));
                }
                let feat = FittedFeature {
                    name: column.clone(),
                    column: column.clone(),
                    equals: None,
                    ops,
                    impute,
                    center,
                    scale,
                };
                fill(&mut x, features.len(), &keep, |i| {
                    ((if cur[i].is_finite() { cur[i] } else { impute }) - center) / scale
                });
                features.push(feat);
            }
            ColumnSpec::OneHot { column, top } => {
                let raw = column_values(batches, column)?;
                let s = cast(&raw, &DataType::Utf8).map_err(|e| ferr(column, e.to_string()))?;
                let s = s.as_any().downcast_ref::<StringArray>().expect("utf8");
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for v in s.iter().flatten() {
                    *counts.entry(v).or_default() += 1;
                }
                if counts.is_empty() {
                    return Err(ferr(
                        column,
                        format!("column `{column}` has no non-null value to one-hot encode"),
                    ));
                }
                let mut by_freq: Vec<(&str, usize)> = counts.into_iter().collect();
                by_freq.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                missing.push(MissingCount {
                    feature: column.clone(),
                    nulls: s.null_count(),
                    non_finite: 0,
                });
                for (value, _) in by_freq.into_iter().take(*top) {
                    fill(&mut x, features.len(), &keep, |i| {
                        if s.is_valid(i) && s.value(i) == value {
                            1.0
                        } else {
                            0.0
                        }
                    });
                    features.push(FittedFeature {
                        name: format!("{column}={value}"),
                        column: column.clone(),
                        equals: Some(value.to_string()),
                        ops: vec![],
                        impute: 0.0,
                        center: 0.0,
                        scale: 1.0,
                    });
                }
            }
        }
    }
    let ids = kept_ids(ids, &keep, id)?;
    Ok(FeatureMatrix {
        ids,
        x,
        features,
        missing,
        dropped_rows: n - rows,
    })
}

/// The id column as text.
fn id_values(batches: &[RecordBatch], id: &str) -> Result<StringArray, FeatureError> {
    let ids_any = column_values(batches, id)?;
    let ids_any = cast(&ids_any, &DataType::Utf8).map_err(|e| ferr(id, e.to_string()))?;
    Ok(ids_any
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("utf8")
        .clone())
}

/// The ids of the kept rows (all of them when none was dropped).
fn kept_ids(ids: StringArray, keep: &[usize], id: &str) -> Result<StringArray, FeatureError> {
    if keep.len() == ids.len() {
        return Ok(ids);
    }
    let idx = datafusion::arrow::array::UInt32Array::from(
        keep.iter().map(|&i| i as u32).collect::<Vec<_>>(),
    );
    let taken =
        datafusion::arrow::compute::take(&ids, &idx, None).map_err(|e| ferr(id, e.to_string()))?;
    Ok(taken
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("utf8")
        .clone())
}

/// Writes column `j` of every kept row, in parallel chunks of rows.
fn fill(x: &mut Array2<f64>, j: usize, keep: &[usize], value: impl Fn(usize) -> f64 + Sync) {
    let d = x.ncols();
    let slice = x.as_slice_mut().expect("standard layout");
    slice
        .par_chunks_mut(d * 4096)
        .enumerate()
        .for_each(|(c, chunk)| {
            for (r, row) in chunk.chunks_mut(d).enumerate() {
                row[j] = value(keep[c * 4096 + r]);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    #[test]
    fn builds_scaled_matrix_with_imputation() {
        let batch = RecordBatch::try_from_iter(vec![
            (
                "id",
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])) as ArrayRef,
            ),
            (
                "n",
                Arc::new(Int64Array::from(vec![Some(0), Some(3), None, Some(3)])) as ArrayRef,
            ),
            (
                "g",
                Arc::new(StringArray::from(vec![
                    Some("x"),
                    Some("y"),
                    Some("x"),
                    None,
                ])) as ArrayRef,
            ),
        ])
        .unwrap();
        let specs = vec![
            parse_transforms("n", &["log1p".into()]).unwrap(),
            parse_transforms("g", &["onehot:1".into()]).unwrap(),
        ];
        let m = build(std::slice::from_ref(&batch), "id", &specs, NullPolicy::Mean).unwrap();
        assert_eq!(m.x.dim(), (4, 2));
        assert_eq!(m.missing[0].nulls, 1);
        // Standardized column: mean 0.
        assert!(m.x.column(0).sum().abs() < 1e-12);
        assert_eq!(m.features[1].name, "g=x");
        assert_eq!(m.x.column(1).to_vec(), vec![1.0, 0.0, 1.0, 0.0]);
        let m = build(&[batch], "id", &specs, NullPolicy::Drop).unwrap();
        assert_eq!(m.x.nrows(), 3);
        assert_eq!(m.dropped_rows, 1);
    }

    #[test]
    fn rejects_constant_and_text_columns() {
        let batch = RecordBatch::try_from_iter(vec![
            (
                "id",
                Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
            ),
            ("c", Arc::new(Int64Array::from(vec![5, 5])) as ArrayRef),
            ("s", Arc::new(StringArray::from(vec!["p", "q"])) as ArrayRef),
        ])
        .unwrap();
        let e = build(
            std::slice::from_ref(&batch),
            "id",
            &[parse_transforms("c", &[]).unwrap()],
            NullPolicy::Mean,
        )
        .err()
        .unwrap();
        assert!(e.message.contains("constant"), "{}", e.message);
        let e = build(
            &[batch],
            "id",
            &[parse_transforms("s", &[]).unwrap()],
            NullPolicy::Mean,
        )
        .err()
        .unwrap();
        assert!(e.message.contains("not numeric"), "{}", e.message);
        assert!(parse_transforms("x", &["sqrt".into()]).is_err());
    }
}
