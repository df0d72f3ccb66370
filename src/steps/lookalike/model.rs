//! The saved lookalike model (scaler and weights or sub-centroids, as SQL too) and its
//! quality report.

use serde::{Deserialize, Serialize};

use super::Method;
use crate::features::{self, FittedFeature};

/// Quality of one tier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TierQuality {
    /// Tier label.
    pub tier: String,
    /// Users in the tier.
    pub users: usize,
    /// Share of the held-out seed ranked inside the tier (of the pool plus held-out seed).
    pub recall: f64,
    /// Recall divided by the tier's share of that pool (1.0 = random).
    pub lift: f64,
}

/// The saved model and its quality report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookalikeModel {
    /// Model kind (`lookalike`).
    pub kind: String,
    /// Step name.
    pub step: String,
    /// Method.
    pub method: Method,
    /// Id column.
    pub id: String,
    /// Feature transform.
    pub features: Vec<FittedFeature>,
    /// Logistic weights and intercept (logistic and blend).
    pub weights: Option<Vec<f64>>,
    /// Logistic intercept.
    pub intercept: Option<f64>,
    /// Seed sub-centroids (similarity and blend).
    pub centroids: Option<Vec<Vec<f64>>>,
    /// Logistic weight in a blend.
    pub blend_weight: Option<f64>,
    /// Missing values (null, NaN, ±inf) per feature column of this run's matrix.
    #[serde(default)]
    pub missing: Vec<crate::features::MissingCount>,
    /// Rows dropped by the null policy.
    #[serde(default)]
    pub dropped_rows: usize,
    /// Seed ids given.
    pub seed_given: usize,
    /// Seed ids not in the feature table.
    pub seed_missing: usize,
    /// Seed users used for fitting.
    pub seed_train: usize,
    /// Seed users held out for evaluation.
    pub seed_holdout: usize,
    /// Negatives sampled.
    pub negatives: usize,
    /// Candidates excluded by `exclude` (seed not counted).
    pub excluded: usize,
    /// Candidates scored.
    pub candidates: usize,
    /// AUC of held-out seed against candidates.
    pub auc: f64,
    /// Per-tier quality.
    pub tiers: Vec<TierQuality>,
}

impl LookalikeModel {
    /// The SQL expression of the score over the input table's columns.
    pub fn score_sql(&self) -> String {
        let z: Vec<String> = self.features.iter().map(|f| f.sql()).collect();
        let logit = |w: &[f64], b: f64| {
            let mut e = features::lit(b);
            for (zj, wj) in z.iter().zip(w) {
                e = format!("({e} + {} * {zj})", features::lit(*wj));
            }
            format!("(1.0 / (1.0 + exp(-{e})))")
        };
        let sim = |cs: &[Vec<f64>]| {
            let norm = format!(
                "sqrt({})",
                z.iter()
                    .map(|zj| format!("{zj} * {zj}"))
                    .collect::<Vec<_>>()
                    .join(" + ")
            );
            let per: Vec<String> = cs
                .iter()
                .map(|c| {
                    let cn: f64 = c.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let dot = z
                        .iter()
                        .zip(c)
                        .map(|(zj, cj)| format!("{} * {zj}", features::lit(*cj)))
                        .collect::<Vec<_>>()
                        .join(" + ");
                    format!(
                        "(CASE WHEN {norm} > 0 THEN (({dot}) / ({norm} * {})) ELSE 0.0 END)",
                        features::lit(cn)
                    )
                })
                .collect();
            let best = if per.len() == 1 {
                per[0].clone()
            } else {
                format!("greatest({})", per.join(", "))
            };
            format!("(({best} + 1.0) / 2.0)")
        };
        match self.method {
            Method::Logistic => logit(
                self.weights.as_deref().unwrap_or(&[]),
                self.intercept.unwrap_or(0.0),
            ),
            Method::Similarity => sim(self.centroids.as_deref().unwrap_or(&[])),
            Method::Blend => {
                let w = self.blend_weight.unwrap_or(0.5);
                format!(
                    "({} * {} + {} * {})",
                    features::lit(w),
                    logit(
                        self.weights.as_deref().unwrap_or(&[]),
                        self.intercept.unwrap_or(0.0)
                    ),
                    features::lit(1.0 - w),
                    sim(self.centroids.as_deref().unwrap_or(&[]))
                )
            }
        }
    }
}

/// The quality report as text for the run summary.
pub fn render(model: &LookalikeModel) -> String {
    let mut s = format!(
        "    {} on {} seed users ({} held out, {} not found, {} negatives), {} candidates, {} excluded; AUC {:.3}{}\n",
        format!("{:?}", model.method).to_lowercase(),
        model.seed_train,
        model.seed_holdout,
        model.seed_missing,
        model.negatives,
        model.candidates,
        model.excluded,
        model.auc,
        if model.auc < 0.6 { "  WARNING: below 0.6" } else { "" }
    );
    s.push_str(&crate::features::render_missing(
        &model.missing,
        model.dropped_rows,
    ));
    for t in &model.tiers {
        s.push_str(&format!(
            "    tier {:<10} {:>9} users  recall of held-out seed {:>5.1}%  lift {:.2}x\n",
            t.tier,
            t.users,
            t.recall * 100.0,
            t.lift
        ));
    }
    s
}
