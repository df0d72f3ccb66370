//! A fitted transform applied to new rows: how a kept model sees the next night's input.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, Float64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use ndarray::Array2;

use super::{
    column_values, ferr, fill, id_values, is_numeric, kept_ids, FeatureError, FeatureMatrix,
    FittedFeature, FittedOp, MissingCount, NullPolicy,
};

/// The matrix of new rows under a fitted transform: every value computed as the fit computed
/// its own rows (pre-transforms, then the fit's imputation, centre and scale), so a kept model
/// scores new rows exactly as it would have scored them on the night it was fitted. Under the
/// `drop` policy rows with a missing numeric value are left out, as at the fit.
pub fn apply(
    batches: &[RecordBatch],
    id: &str,
    fitted: &[FittedFeature],
    nulls: NullPolicy,
) -> Result<FeatureMatrix, FeatureError> {
    let ids = id_values(batches, id)?;
    let n = ids.len();
    let mut numeric: BTreeMap<&str, Float64Array> = BTreeMap::new();
    let mut text: BTreeMap<&str, StringArray> = BTreeMap::new();
    for f in fitted {
        let raw = column_values(batches, &f.column)?;
        if f.equals.is_some() {
            if !text.contains_key(f.column.as_str()) {
                let s = cast(&raw, &DataType::Utf8).map_err(|e| ferr(&f.column, e.to_string()))?;
                text.insert(
                    &f.column,
                    s.as_any()
                        .downcast_ref::<StringArray>()
                        .expect("utf8")
                        .clone(),
                );
            }
        } else if !numeric.contains_key(f.column.as_str()) {
            if !is_numeric(raw.data_type()) {
                return Err(ferr(
                    &f.column,
                    format!(
                        "column `{}` is {}, not numeric as when the model was fitted",
                        f.column,
                        raw.data_type()
                    ),
                ));
            }
            let v = cast(&raw, &DataType::Float64).map_err(|e| ferr(&f.column, e.to_string()))?;
            numeric.insert(
                &f.column,
                v.as_any()
                    .downcast_ref::<Float64Array>()
                    .expect("f64")
                    .clone(),
            );
        }
    }
    let mut keep_mask = vec![true; n];
    if nulls == NullPolicy::Drop {
        for v in numeric.values() {
            for (k, x) in keep_mask.iter_mut().zip(v.iter()) {
                *k &= x.is_some_and(|x| x.is_finite());
            }
        }
    }
    let keep: Vec<usize> = (0..n).filter(|&i| keep_mask[i]).collect();
    let rows = keep.len();
    let mut x = Array2::<f64>::zeros((rows, fitted.len()));
    let mut missing = Vec::new();
    for (j, f) in fitted.iter().enumerate() {
        match &f.equals {
            Some(value) => {
                let s = &text[f.column.as_str()];
                fill(&mut x, j, &keep, |i| {
                    if s.is_valid(i) && s.value(i) == value {
                        1.0
                    } else {
                        0.0
                    }
                });
            }
            None => {
                let v = &numeric[f.column.as_str()];
                missing.push(MissingCount {
                    feature: f.column.clone(),
                    nulls: v.null_count(),
                    non_finite: v.iter().flatten().filter(|x| !x.is_finite()).count(),
                });
                // The same operations in the same order as `build`, so the bits agree.
                fill(&mut x, j, &keep, |i| {
                    let mut cur = if v.is_valid(i) && v.value(i).is_finite() {
                        v.value(i)
                    } else {
                        f64::NAN
                    };
                    for op in &f.ops {
                        match op {
                            FittedOp::Log1p => cur = (1.0 + cur).ln(),
                            FittedOp::ClipAt { value, .. } => {
                                if cur.is_finite() {
                                    cur = cur.min(*value)
                                }
                            }
                        }
                    }
                    ((if cur.is_finite() { cur } else { f.impute }) - f.center) / f.scale
                });
            }
        }
    }
    let ids = kept_ids(ids, &keep, id)?;
    Ok(FeatureMatrix {
        ids,
        x,
        features: fitted.to_vec(),
        missing,
        dropped_rows: n - rows,
    })
}
