//! A propensity step's model as kept and published (`models/<step>.json`): the fitted
//! transform and logistic weights, the dates it learned from, and its backtest.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::features::{self, FittedFeature};
use crate::ml::calibration::Bin;

/// Quality of one tier in the backtest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TierCheck {
    /// The tier's label.
    pub tier: String,
    /// Users in the tier (in the backtest, or today's audience on the summary's tier lines).
    pub users: usize,
    /// Share of the tier with the outcome.
    pub precision: f64,
    /// Precision over the base rate.
    pub lift: f64,
    /// Share of all users with the outcome that the tier holds.
    pub recall: f64,
}

/// The backtest: a model trained one horizon further back, ranking the users of the
/// training date by what they did next.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backtest {
    /// Features of this date trained the backtest's model...
    pub trained_as_of: NaiveDate,
    /// ...which scored the features of this date...
    pub scored_as_of: NaiveDate,
    /// ...against the outcome in `[scored_as_of, label_end)`.
    pub label_end: NaiveDate,
    /// Users scored.
    pub users: usize,
    /// Of them, with the outcome.
    pub positives: usize,
    /// `positives / users`.
    pub base_rate: f64,
    /// Area under the ROC curve.
    pub auc: f64,
    /// Mean squared error of the probabilities.
    pub brier: f64,
    /// Predicted against observed rates in deciles of the score.
    pub reliability: Vec<Bin>,
    /// Precision, lift and recall per tier.
    pub tiers: Vec<TierCheck>,
}

/// A fitted propensity model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PropensityModel {
    /// `"propensity"`.
    pub kind: String,
    /// The step.
    pub step: String,
    /// Id column.
    pub id: String,
    /// Fitted feature transform.
    pub features: Vec<FittedFeature>,
    /// Logistic weights, one per feature.
    pub weights: Vec<f64>,
    /// Logistic intercept (corrected for sampled negatives).
    pub intercept: f64,
    /// Days of the label window.
    pub horizon_days: u32,
    /// The features of this date trained the model...
    pub trained_as_of: NaiveDate,
    /// ...labelled by the outcome in `[trained_as_of, label_end)`.
    pub label_end: NaiveDate,
    /// Rows of the training sample.
    pub train_rows: usize,
    /// Of them, positive.
    pub train_positives: usize,
    /// Share of the training date's users with the outcome.
    pub base_rate: f64,
    /// Nulls and non-finite values per feature at the fit.
    #[serde(default)]
    pub missing: Vec<features::MissingCount>,
    /// Rows dropped for nulls at the fit.
    #[serde(default)]
    pub dropped_rows: usize,
    /// Users ranked in this run.
    pub candidates: usize,
    /// Users left out of the audience by `exclude`.
    pub excluded: usize,
    /// Today's tiers: users per tier.
    pub tiers: Vec<(String, usize)>,
    /// The backtest of the fit.
    pub backtest: Backtest,
    /// The step's `min_auc`: below it the backtest warns.
    pub min_auc: f64,
}

impl PropensityModel {
    /// The probability as a SQL expression over the input table's columns (computed in the
    /// order [`crate::ml::logistic::Logistic::score`] computes it).
    pub fn score_sql(&self) -> String {
        let mut e = features::lit(self.intercept);
        for (f, w) in self.features.iter().zip(&self.weights) {
            e = format!("({e} + {} * {})", features::lit(*w), f.sql());
        }
        format!("(1.0 / (1.0 + exp(-{e})))")
    }
}

/// The model and its backtest as text for the run summary.
pub fn render(m: &PropensityModel) -> String {
    let b = &m.backtest;
    let mut s = format!(
        "    logistic on {} rows ({} positive) of the features as of {}, labelled by {} .. {}; base rate {:.2}%\n",
        m.train_rows,
        m.train_positives,
        m.trained_as_of,
        m.trained_as_of,
        m.label_end,
        m.base_rate * 100.0
    );
    s.push_str(&features::render_missing(&m.missing, m.dropped_rows));
    s.push_str(&format!(
        "    backtest: trained as of {}, {} users as of {} against {} .. {}: AUC {:.3}, Brier {:.4}, base rate {:.2}%{}\n",
        b.trained_as_of,
        b.users,
        b.scored_as_of,
        b.scored_as_of,
        b.label_end,
        b.auc,
        b.brier,
        b.base_rate * 100.0,
        if b.auc < m.min_auc {
            format!("  WARNING: AUC below min_auc {}", m.min_auc)
        } else {
            String::new()
        }
    ));
    for t in &b.tiers {
        s.push_str(&format!(
            "    backtest tier {:<10} {:>9} users  precision {:>5.1}%  lift {:.2}x  recall {:>5.1}%\n",
            t.tier,
            t.users,
            t.precision * 100.0,
            t.lift,
            t.recall * 100.0
        ));
    }
    let curve: Vec<String> = b
        .reliability
        .iter()
        .map(|r| format!("{:.1}/{:.1}", r.predicted * 100.0, r.observed * 100.0))
        .collect();
    s.push_str(&format!(
        "    calibration (predicted/observed % by decile): {}\n",
        curve.join(" ")
    ));
    s.push_str(&format!(
        "    today: {} users ranked, {} excluded; {}\n",
        m.candidates,
        m.excluded,
        m.tiers
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s
}
