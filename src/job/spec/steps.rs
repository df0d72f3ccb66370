//! The `[[step]]` entries of a job file as written: every key of every step kind, checked
//! per kind by `job::parse`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `incremental = { source = "orders", days = 90 }` of a sql step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementalSpec {
    /// The day-partitioned source the step's SQL reads; each run narrows it to the days it
    /// computes.
    pub source: String,
    /// The window: the `days` days before `as_of`; a number, or the name of an int param.
    pub days: toml::Value,
    /// The day column: a partition column of the source, also in the step's result (default:
    /// the source's first partition column).
    #[serde(default)]
    pub column: Option<String>,
    /// Keys of a merged step: the step's table is one row per key, its days merged by `merge`.
    #[serde(default)]
    pub merge_by: Option<Vec<String>>,
    /// How each other column of the per-day rows merges across days: `sum`, `min`, `max`,
    /// `first by COL` or `last by COL`.
    #[serde(default)]
    pub merge: BTreeMap<String, String>,
}

/// One `[[step]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Table name of the step's result.
    pub name: String,
    /// Gate: the step's result must hold at least this many rows.
    #[serde(default)]
    pub min_rows: Option<u64>,
    /// Gate: the step's result may hold at most this many rows.
    #[serde(default)]
    pub max_rows: Option<u64>,
    /// An intermediate table: dropped from memory as soon as no later step, segment, export
    /// or other part of the job names it.
    #[serde(default)]
    pub transient: bool,
    /// A sql step computed per day and kept as state: only the days the state lacks, or whose
    /// input files changed, are computed (see the README, "Incremental steps").
    #[serde(default)]
    pub incremental: Option<IncrementalSpec>,
    /// Step kind; `sql` (the default) runs one SQL query.
    #[serde(default)]
    pub kind: Option<String>,
    /// A SQL file (relative to the job file) holding the step's query.
    #[serde(default)]
    pub sql: Option<String>,
    /// The step's query written inline (instead of `sql`).
    #[serde(default)]
    pub query: Option<String>,
    /// One line on what the step computes.
    #[serde(default)]
    pub description: Option<String>,
    /// kmeans: the table whose rows are clustered.
    #[serde(default)]
    pub input: Option<String>,
    /// kmeans: the id column of `input` (default `user_id`).
    #[serde(default)]
    pub id: Option<String>,
    /// kmeans: feature columns (default: every numeric column but the id).
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// kmeans: transforms per column (`"*"` for every feature not listed): `log1p`,
    /// `clip:0.99` (clip at that upper quantile), `standardize` (the default scaling), `minmax`,
    /// `none`, or `onehot:N` for a string column (its N most frequent values).
    #[serde(default)]
    pub transforms: BTreeMap<String, Transforms>,
    /// kmeans: what to do with nulls, NaN and infinities: `mean` (impute, the default),
    /// `zero`, or `drop` the row. Counted either way.
    #[serde(default)]
    pub nulls: Option<String>,
    /// kmeans: number of clusters, or `"auto"` to choose by silhouette within `k_range`.
    #[serde(default)]
    pub k: Option<toml::Value>,
    /// kmeans: range searched by `k = "auto"` (default [4, 16]).
    #[serde(default)]
    pub k_range: Option<[usize; 2]>,
    /// kmeans: maximum Lloyd iterations (default 100).
    #[serde(default)]
    pub max_iter: Option<usize>,
    /// kmeans: relative tolerance on centre movement (default 1e-4).
    #[serde(default)]
    pub tol: Option<f64>,
    /// kmeans: number of initialisations; the lowest inertia wins (default 3).
    #[serde(default)]
    pub n_init: Option<usize>,
    /// kmeans: random seed (default 42). lookalike: the seed audience, a table name or a SQL
    /// query whose first column holds the seed ids.
    #[serde(default)]
    pub seed: Option<toml::Value>,
    /// lookalike: tables whose ids never enter the audience (the seed never does).
    #[serde(default)]
    pub exclude: Option<Vec<String>>,
    /// lookalike: `logistic` (default), `similarity` or `blend`.
    #[serde(default)]
    pub method: Option<String>,
    /// lookalike: negatives sampled per seed user (default 10).
    #[serde(default)]
    pub negatives: Option<usize>,
    /// lookalike: inverse L2 regularisation strength (default 1.0, scikit-learn's C).
    #[serde(default)]
    pub c: Option<f64>,
    /// lookalike: random seed of the sampling (default 42).
    #[serde(default)]
    pub seed_value: Option<u64>,
    /// lookalike: tiers: percentages ("1%"), counts (500000) or thresholds ("score>=0.7").
    #[serde(default)]
    pub reach: Option<Vec<toml::Value>>,
    /// lookalike: smallest seed accepted (default 100).
    #[serde(default)]
    pub min_seed: Option<usize>,
    /// kmeans: rows of the deterministic fitting sample (default 400,000); lookalike: the
    /// most rows a cluster engine sends to this process to fit on (the seed, then a hash sample).
    #[serde(default)]
    pub sample_rows: Option<usize>,
    /// ltv: prediction horizon, in the time unit of the summary (default 52); propensity: days
    /// of the label window after each feature date.
    #[serde(default)]
    pub horizon: Option<f64>,
    /// propensity: SQL returning the ids who did the thing in `[$label_start, $label_end)`
    /// (its id column, else its first).
    #[serde(default)]
    pub label: Option<String>,
    /// propensity: a warning when the backtest's AUC is below this (default 0.6).
    #[serde(default)]
    pub min_auc: Option<f64>,
    /// ltv: L2 penalty on the log-parameters of BG/NBD and Gamma-Gamma, per customer.
    #[serde(default)]
    pub penalizer: Option<f64>,
    /// kmeans: where users are assigned: `memory` (default) or `sql` (the generated SQL
    /// expression, run by the SQL engine).
    #[serde(default)]
    pub assign: Option<String>,
    /// Model steps: when the model is fitted again: `"always"` (default), `"daily"`,
    /// `"weekly"` or `"every N days"`; other runs apply the model kept from the last fit.
    #[serde(default)]
    pub refit: Option<String>,
    /// Model steps: fit sooner when the input's row count or a feature's mean moved by more
    /// than this share since the last fit, e.g. `"10%"`.
    #[serde(default)]
    pub refit_drift: Option<String>,
}

/// One transform or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Transforms {
    /// `"log1p"`
    One(String),
    /// `["log1p", "clip:0.99"]`
    Many(Vec<String>),
}

impl Transforms {
    /// As a list.
    pub fn list(&self) -> Vec<String> {
        match self {
            Transforms::One(s) => vec![s.clone()],
            Transforms::Many(v) => v.clone(),
        }
    }
}
