//! The checked configuration of each model step kind: plain data read from the job file.
//! Fitting and applying the models is the business of the step modules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::features::NullPolicy;

/// When a model step fits its model again; on other runs the model kept from the last fit is
/// applied to the new input.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Refit {
    /// Fit again once the kept model is this many days old (`None`: fit on every run).
    pub every_days: Option<u32>,
    /// Fit sooner when the input's row count or a feature's mean moved by more than this share
    /// of its value at the last fit (`None`: no drift check).
    pub drift: Option<f64>,
}

impl Refit {
    /// `"always"`, `"daily"`, `"weekly"`, `"every N days"`.
    pub fn parse_every(text: &str) -> std::result::Result<Option<u32>, String> {
        let t = text.trim().to_ascii_lowercase();
        let days = match t.as_str() {
            "always" => return Ok(None),
            "daily" => 1,
            "weekly" => 7,
            _ => {
                let n = t
                    .strip_prefix("every ")
                    .and_then(|r| r.strip_suffix(" days").or_else(|| r.strip_suffix(" day")))
                    .and_then(|n| n.trim().parse::<u32>().ok());
                match n {
                    Some(n) if n >= 1 => n,
                    _ => {
                        return Err(format!(
                            "refit = \"{text}\" must be \"always\", \"daily\", \"weekly\" or \"every N days\""
                        ))
                    }
                }
            }
        };
        Ok(Some(days))
    }
}

/// How many clusters.
#[derive(Debug, Clone, PartialEq)]
pub enum KChoice {
    /// Exactly this many.
    Fixed(usize),
    /// The best by silhouette in this inclusive range.
    Auto(usize, usize),
}

/// Where rows are assigned to clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignMode {
    /// In this process, from the feature matrix.
    Memory,
    /// By the SQL engine, with the generated expression.
    Sql,
}

/// A checked k-means step.
#[derive(Debug, Clone)]
pub struct KMeansConfig {
    /// Input table.
    pub input: String,
    /// Id column.
    pub id: String,
    /// Feature columns (`None`: every numeric column but the id).
    pub features: Option<Vec<String>>,
    /// Transforms per column (`*` for the rest).
    pub transforms: BTreeMap<String, Vec<String>>,
    /// Null policy.
    pub nulls: NullPolicy,
    /// k.
    pub k: KChoice,
    /// Maximum Lloyd iterations.
    pub max_iter: usize,
    /// Relative tolerance.
    pub tol: f64,
    /// Restarts.
    pub n_init: usize,
    /// Seed.
    pub seed: u64,
    /// Fitting sample size.
    pub sample_rows: usize,
    /// Assignment mode.
    pub assign: AssignMode,
}

/// Scoring method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// L2 logistic regression.
    Logistic,
    /// Cosine similarity to the seed's sub-centroids.
    Similarity,
    /// A mix of the two.
    Blend,
}

/// An audience size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// A percentage of the candidate pool.
    Percent(f64),
    /// An absolute number of users.
    Count(usize),
    /// Every candidate scoring at least this.
    Threshold(f64),
}

impl Reach {
    /// Parses `"5%"`, `500000` or `"score>=0.7"`.
    pub fn parse(v: &toml::Value) -> std::result::Result<Reach, String> {
        match v {
            toml::Value::Integer(i) if *i > 0 => Ok(Reach::Count(*i as usize)),
            toml::Value::String(s) if s.ends_with('%') => {
                let p: f64 = s.trim_end_matches('%').trim().parse().map_err(|_| format!("reach `{s}` is not a percentage"))?;
                if p > 0.0 && p <= 100.0 {
                    Ok(Reach::Percent(p))
                } else {
                    Err(format!("reach `{s}` must be in (0%, 100%]"))
                }
            }
            toml::Value::String(s) if s.starts_with("score>=") => {
                let t: f64 = s["score>=".len()..].trim().parse().map_err(|_| format!("reach `{s}`: write score>=0.7"))?;
                Ok(Reach::Threshold(t))
            }
            other => Err(format!("reach {other} must be a percentage (\"5%\"), a count (500000) or a threshold (\"score>=0.7\")")),
        }
    }

    /// The tier's label.
    pub fn label(&self) -> String {
        match self {
            Reach::Percent(p) => format!("{p}%"),
            Reach::Count(n) => format!("top{n}"),
            Reach::Threshold(t) => format!("score>={t}"),
        }
    }
}

/// Where the seed comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum SeedSource {
    /// A table (source or step) whose id column lists the seed.
    Table(String),
    /// A SQL query whose first column lists the seed.
    Query(String),
}

/// A checked lookalike step.
#[derive(Debug, Clone)]
pub struct LookalikeConfig {
    /// Feature table.
    pub input: String,
    /// Id column.
    pub id: String,
    /// Features (`None`: every numeric column but the id).
    pub features: Option<Vec<String>>,
    /// Transforms per column.
    pub transforms: BTreeMap<String, Vec<String>>,
    /// Null policy.
    pub nulls: NullPolicy,
    /// The seed.
    pub seed: SeedSource,
    /// Tables whose ids are never in the audience (the seed always is excluded).
    pub exclude: Vec<String>,
    /// Method.
    pub method: Method,
    /// Negatives sampled per seed user (logistic).
    pub negatives: usize,
    /// Inverse L2 strength (scikit-learn's C).
    pub c: f64,
    /// Seed of the random sampling.
    pub seed_value: u64,
    /// Tiers, nested.
    pub reach: Vec<Reach>,
    /// Smallest seed accepted.
    pub min_seed: usize,
    /// On a cluster engine: the most rows fitted on (the seed first, then a hash sample).
    pub sample_rows: usize,
    /// Score in memory or with the generated SQL.
    pub assign: AssignMode,
}

/// Configuration of an ltv step.
#[derive(Debug, Clone)]
pub struct LtvConfig {
    /// The per-customer summary table.
    pub input: String,
    /// Its id column.
    pub id: String,
    /// Prediction horizon, in the summary's time unit.
    pub horizon: f64,
    /// L2 penalty on the models' log-parameters (see [`crate::ml::ltv::DEFAULT_PENALIZER`]).
    pub penalizer: f64,
}

/// A checked propensity step: a classifier trained on the feature step computed as of an
/// earlier date and labelled by what happened in the `horizon_days` after it.
#[derive(Debug, Clone)]
pub struct PropensityConfig {
    /// The feature step (its SQL, or a step it reads, uses `$as_of`).
    pub input: String,
    /// Id column.
    pub id: String,
    /// Features (`None`: every numeric column but the id).
    pub features: Option<Vec<String>>,
    /// Transforms per column.
    pub transforms: BTreeMap<String, Vec<String>>,
    /// Null policy.
    pub nulls: NullPolicy,
    /// SQL returning the ids labelled positive for `[$label_start, $label_end)`.
    pub label: String,
    /// Days of each label window.
    pub horizon_days: u32,
    /// Tables whose ids are never in the audience (they are still trained on).
    pub exclude: Vec<String>,
    /// Negatives kept per positive in the training sample (`None`: the sample as drawn);
    /// the intercept is corrected so scores stay calibrated probabilities.
    pub negatives: Option<usize>,
    /// Inverse L2 strength (scikit-learn's C).
    pub c: f64,
    /// Most rows a fit uses (a uniform sample).
    pub sample_rows: usize,
    /// Seed of the random sampling.
    pub seed_value: u64,
    /// Tiers, nested.
    pub reach: Vec<Reach>,
    /// The backtest's AUC below which the run warns.
    pub min_auc: f64,
    /// Score in memory or with the generated SQL.
    pub assign: AssignMode,
    /// The sql steps computed again for an earlier date, in job order, the input last.
    pub upstream: Vec<super::Step>,
}
