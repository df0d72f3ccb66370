//! Fitting a propensity model on a labelled feature matrix, and measuring a model's ranking
//! against the outcome that followed.

use std::collections::HashSet;

use ndarray::{Array1, Axis};

use super::model::TierCheck;
use super::PropensityConfig;
use crate::features::FeatureMatrix;
use crate::ml::kmeans::sample_indices;
use crate::ml::logistic::{self, Logistic};
use crate::steps::ranking::tier_sizes;

/// Which rows of a matrix have the outcome.
pub fn outcome(m: &FeatureMatrix, positives: &HashSet<String>) -> Vec<bool> {
    (0..m.x.nrows())
        .map(|i| positives.contains(m.ids.value(i)))
        .collect()
}

/// A fit and what it was fitted on.
pub struct Fitted {
    /// The model, its intercept corrected for sampled negatives.
    pub model: Logistic,
    /// Training rows.
    pub rows: usize,
    /// Of them, positive.
    pub positives: usize,
}

/// Fits the logistic model on a uniform sample of `cfg.sample_rows` rows; with `negatives`,
/// on every positive (up to the sample size) and that many negatives per positive, with the
/// intercept moved back by the log of the negatives' sampling rate, so the scores stay
/// probabilities of the whole population.
pub fn fit(cfg: &PropensityConfig, m: &FeatureMatrix, y: &[bool]) -> Fitted {
    let n = y.len();
    let (rows, negative_rate) = match cfg.negatives {
        None => (
            sample_indices(n, cfg.sample_rows.min(n), cfg.seed_value),
            1.0,
        ),
        Some(per) => {
            let pos: Vec<usize> = (0..n).filter(|&i| y[i]).collect();
            let neg: Vec<usize> = (0..n).filter(|&i| !y[i]).collect();
            let pos: Vec<usize> =
                sample_indices(pos.len(), pos.len().min(cfg.sample_rows), cfg.seed_value)
                    .into_iter()
                    .map(|j| pos[j])
                    .collect();
            let k = (per * pos.len()).min(neg.len());
            let picked: Vec<usize> = sample_indices(neg.len(), k, cfg.seed_value ^ 0x5eed)
                .into_iter()
                .map(|j| neg[j])
                .collect();
            let rate = if neg.is_empty() {
                1.0
            } else {
                k as f64 / neg.len() as f64
            };
            let mut rows = pos;
            rows.extend(picked);
            rows.sort_unstable();
            (rows, rate)
        }
    };
    let xt = m.x.select(Axis(0), &rows);
    let yt: Array1<f64> = rows.iter().map(|&i| if y[i] { 1.0 } else { 0.0 }).collect();
    let positives = rows.iter().filter(|&&i| y[i]).count();
    let mut model = logistic::fit(xt.view(), yt.view(), cfg.c, 100);
    if negative_rate < 1.0 && negative_rate > 0.0 {
        model.intercept += negative_rate.ln();
    }
    Fitted {
        model,
        rows: rows.len(),
        positives,
    }
}

/// Precision, lift and recall of each tier over users ranked by `scores`.
pub fn tier_checks(cfg: &PropensityConfig, scores: &[f64], y: &[bool]) -> Vec<TierCheck> {
    let n = scores.len();
    let mut order: Vec<usize> = (0..n).collect();
    {
        use rayon::slice::ParallelSliceMut;
        order.par_sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    }
    let sorted: Vec<f64> = order.iter().map(|&i| scores[i]).collect();
    let total = y.iter().filter(|&&v| v).count();
    let base = total as f64 / n.max(1) as f64;
    let sizes = tier_sizes(&cfg.reach, &sorted);
    cfg.reach
        .iter()
        .zip(sizes)
        .map(|(r, size)| {
            let hits = order[..size].iter().filter(|&&i| y[i]).count();
            let precision = if size == 0 {
                f64::NAN
            } else {
                hits as f64 / size as f64
            };
            TierCheck {
                tier: r.label(),
                users: size,
                precision,
                lift: if base > 0.0 {
                    precision / base
                } else {
                    f64::NAN
                },
                recall: if total == 0 {
                    f64::NAN
                } else {
                    hits as f64 / total as f64
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::models::{AssignMode, Reach};

    fn cfg(reach: Vec<Reach>) -> PropensityConfig {
        PropensityConfig {
            input: "f".into(),
            id: "user_id".into(),
            features: None,
            transforms: Default::default(),
            nulls: crate::features::NullPolicy::Mean,
            label: String::new(),
            horizon_days: 30,
            exclude: vec![],
            negatives: None,
            c: 1.0,
            sample_rows: 1000,
            seed_value: 1,
            reach,
            min_auc: 0.6,
            assign: AssignMode::Memory,
            upstream: vec![],
        }
    }

    #[test]
    fn tiers_measure_precision_lift_and_recall() {
        // Ten users; the two highest scores have the outcome, and one more lower down.
        let scores: Vec<f64> = (0..10).map(|i| 1.0 - i as f64 / 10.0).collect();
        let mut y = vec![false; 10];
        y[0] = true;
        y[1] = true;
        y[7] = true;
        let t = tier_checks(
            &cfg(vec![Reach::Percent(20.0), Reach::Count(5)]),
            &scores,
            &y,
        );
        assert_eq!(t[0].users, 2);
        assert_eq!(t[0].precision, 1.0);
        assert!((t[0].lift - 1.0 / 0.3).abs() < 1e-9);
        assert!((t[0].recall - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(t[1].users, 5);
        assert!((t[1].precision - 0.4).abs() < 1e-9);
    }

    #[test]
    fn sampled_negatives_keep_probabilities_calibrated() {
        // One feature; the outcome's true probability is 5% or 20% by its sign.
        let n = 40_000;
        let x =
            ndarray::Array2::from_shape_fn((n, 1), |(i, _)| if i % 2 == 0 { -1.0 } else { 1.0 });
        let y: Vec<bool> = (0..n)
            .map(|i| {
                let rate = if i % 2 == 0 { 20 } else { 5 };
                (i / 2) % 100 < rate
            })
            .collect();
        let ids: datafusion::arrow::array::StringArray =
            (0..n).map(|i| Some(format!("u{i}"))).collect();
        let m = FeatureMatrix {
            ids,
            x,
            features: vec![],
            missing: vec![],
            dropped_rows: 0,
        };
        let mut c = cfg(vec![Reach::Percent(10.0)]);
        c.sample_rows = n;
        c.negatives = Some(2);
        let f = fit(&c, &m, &y);
        assert!(f.rows < n, "negatives were sampled");
        let p = f.model.score(m.x.view());
        let mean_low = p.iter().step_by(2).sum::<f64>() / (n / 2) as f64;
        let mean_high = p.iter().skip(1).step_by(2).sum::<f64>() / (n / 2) as f64;
        assert!((mean_low - 0.20).abs() < 0.01, "{mean_low}");
        assert!((mean_high - 0.05).abs() < 0.01, "{mean_high}");
    }
}
