//! A lookalike's fit on the training seed and sampled negatives, and the quality report of a
//! fresh fit (the held-out seed ranked among the candidates).

use ndarray::{Array1, Array2, Axis};

use super::{tier_sizes, LookalikeConfig, Method, TierQuality};
use crate::ml::kmeans::{self, KMeansParams};
use crate::ml::logistic;

/// Quality of a fresh fit: the held-out seed ranked among the candidates; fills each tier's
/// recall and lift and returns the AUC.
pub(super) fn quality(
    tiers: &mut Vec<TierQuality>,
    cfg: &LookalikeConfig,
    scores: &[f64],
    holdout: &[usize],
    candidates: &[usize],
    sizes: &[usize],
) -> f64 {
    let pos: Vec<f64> = holdout.iter().map(|&i| scores[i]).collect();
    let neg: Vec<f64> = candidates.iter().map(|&i| scores[i]).collect();
    let auc = crate::ml::similarity::auc(&pos, &neg);
    let mut pool: Vec<f64> = pos.iter().chain(neg.iter()).copied().collect();
    pool.sort_by(|a, b| b.total_cmp(a));
    let pool_sizes = tier_sizes(&cfg.reach, &pool);
    for ((r, &pool_size), &size) in cfg.reach.iter().zip(&pool_sizes).zip(sizes) {
        let cutoff = if pool_size == 0 {
            f64::INFINITY
        } else {
            pool[pool_size - 1]
        };
        let hit = pos.iter().filter(|&&s| s >= cutoff).count();
        let recall = if pos.is_empty() {
            f64::NAN
        } else {
            hit as f64 / pos.len() as f64
        };
        let share = pool_size as f64 / pool.len().max(1) as f64;
        tiers.push(TierQuality {
            tier: r.label(),
            users: size,
            recall,
            lift: if share > 0.0 {
                recall / share
            } else {
                f64::NAN
            },
        });
    }
    auc
}

/// A fit's logistic weights and intercept, and the seed's sub-centroids.
pub(super) type FittedParts = (Option<Vec<f64>>, Option<f64>, Option<Vec<Vec<f64>>>);

/// Fits the logistic weights and/or the seed's sub-centroids on the training seed and the
/// sampled negatives: (weights, intercept, centroids).
pub(super) fn fit(
    cfg: &LookalikeConfig,
    x: &Array2<f64>,
    train: &[usize],
    negatives: &[usize],
) -> FittedParts {
    tokio::task::block_in_place(|| {
        let mut weights = None;
        let mut intercept = None;
        let mut centroids = None;
        if cfg.method != Method::Similarity {
            let rows: Vec<usize> = train.iter().chain(negatives.iter()).copied().collect();
            let xt = x.select(Axis(0), &rows);
            let y: Array1<f64> = rows
                .iter()
                .enumerate()
                .map(|(i, _)| if i < train.len() { 1.0 } else { 0.0 })
                .collect();
            let lr = logistic::fit(xt.view(), y.view(), cfg.c, 100);
            weights = Some(lr.weights.to_vec());
            intercept = Some(lr.intercept);
        }
        if cfg.method != Method::Logistic {
            let xs = x.select(Axis(0), train);
            let k = (train.len() / 200).clamp(1, 5);
            let f = kmeans::fit(
                xs.view(),
                &KMeansParams {
                    k,
                    max_iter: 100,
                    tol: 1e-6,
                    n_init: 2,
                    seed: cfg.seed_value,
                },
            );
            centroids = Some(
                f.centroids
                    .rows()
                    .into_iter()
                    .map(|r| r.to_vec())
                    .collect::<Vec<_>>(),
            );
        }
        (weights, intercept, centroids)
    })
}
