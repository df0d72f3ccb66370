//! The `kind = "lookalike"` step: from a seed audience to a ranked, tiered, evaluated audience.
//!
//! 20% of the seed is held out before fitting. Candidates are the rows of the feature table
//! that are neither seed nor excluded. Methods:
//! - `logistic` (default): L2 logistic regression, seed against a random sample of candidates
//!   (`negatives` × the seed, positive-unlabelled style);
//! - `similarity`: the seed clustered into a few sub-centroids with k-means; a candidate's
//!   score is its best cosine similarity to them, mapped to [0, 1];
//! - `blend`: `w · logistic + (1 − w) · similarity` with `w = n / (n + 2000)` for a training
//!   seed of n users, so similarity carries small seeds and the classifier large ones.
//!
//! Every score is also generated as a SQL expression (`assign = "sql"`).
//! Quality, every run: per tier, the recall of the held-out seed, the lift over a random
//! audience of the same size, and the AUC of held-out seed against candidates.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use ndarray::{Array1, Array2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::kmeans::{self, KMeansParams};
use super::kmeans_step::{load_matrix, quote, step_err};
use super::logistic;
use crate::engine::diagnostics::execution_error;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::features::{self, FittedFeature, NullPolicy};

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
    pub assign: super::kmeans_step::AssignMode,
}

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

async fn id_set(engine: &Engine, step: &str, sql: &str, what: &str) -> Result<HashSet<String>> {
    let df = engine
        .ctx
        .sql(sql)
        .await
        .map_err(|e| step_err(step, format!("{what}: {}", e.strip_backtrace()), None))?;
    let batches = df
        .collect()
        .await
        .map_err(|e| execution_error(&format!("step `{step}` ({what})"), e))?;
    let mut out = HashSet::new();
    for b in batches {
        if b.num_columns() == 0 {
            continue;
        }
        let c = cast(b.column(0), &DataType::Utf8).map_err(|e| Error::internal(e.to_string()))?;
        let s = c.as_any().downcast_ref::<StringArray>().expect("utf8");
        out.extend(s.iter().flatten().map(str::to_string));
    }
    Ok(out)
}

fn cosine_scores(x: &Array2<f64>, centroids: &Array2<f64>) -> Vec<f64> {
    let norms: Vec<f64> = centroids
        .rows()
        .into_iter()
        .map(|c| c.dot(&c).sqrt())
        .collect();
    (0..x.nrows())
        .map(|i| {
            let r = x.row(i);
            let mut nn = 0.0;
            for v in r.iter() {
                nn += v * v;
            }
            let rn = nn.sqrt();
            let mut best = f64::NEG_INFINITY;
            for (c, cn) in centroids.rows().into_iter().zip(&norms) {
                let mut dot = 0.0;
                for (cj, zj) in c.iter().zip(r.iter()) {
                    dot += cj * zj;
                }
                let s = if rn > 0.0 { dot / (rn * cn) } else { 0.0 };
                best = best.max(s);
            }
            (best + 1.0) / 2.0
        })
        .collect()
}

/// Area under the ROC curve of positives vs negatives (ties count half).
pub fn auc(pos: &[f64], neg: &[f64]) -> f64 {
    if pos.is_empty() || neg.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f64, bool)> = pos
        .iter()
        .map(|&s| (s, true))
        .chain(neg.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let avg = (i + j + 1) as f64 / 2.0; // 1-based average rank
        rank_sum += all[i..j].iter().filter(|(_, p)| *p).count() as f64 * avg;
        i = j;
    }
    let np = pos.len() as f64;
    (rank_sum - np * (np + 1.0) / 2.0) / (np * neg.len() as f64)
}

/// Sizes of the tiers over a ranked pool of `n` scores (descending).
fn tier_sizes(reach: &[Reach], sorted_scores: &[f64]) -> Vec<usize> {
    let n = sorted_scores.len();
    reach
        .iter()
        .map(|r| match r {
            Reach::Percent(p) => ((n as f64) * p / 100.0).ceil() as usize,
            Reach::Count(c) => *c,
            Reach::Threshold(t) => sorted_scores.partition_point(|s| *s >= *t),
        })
        .map(|s| s.min(n))
        .collect()
}

/// The output table's schema: `(id, score, rank, tier)`.
pub fn output_schema(id: &str) -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(id, DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("rank", DataType::Int64, false),
        Field::new("tier", DataType::Utf8, false),
    ]))
}

/// Runs the step; registers `(id, score, rank, tier)` for the audience (every candidate in a
/// tier) under `name`.
pub async fn run(
    engine: &Engine,
    name: &str,
    cfg: &LookalikeConfig,
) -> Result<(LookalikeModel, usize)> {
    let context = format!("step `{name}`");
    let seed_sql = match &cfg.seed {
        SeedSource::Table(t) => format!("SELECT {} FROM {}", quote(&cfg.id), quote(t)),
        SeedSource::Query(q) => q.clone(),
    };
    // On a cluster only the seed and a bounded hash sample of the rest reach this process;
    // the generated scoring SQL ranks every candidate there.
    let distributed = engine.is_distributed();
    let keep_sql = if distributed {
        let seed_df = engine
            .ctx
            .sql(&seed_sql)
            .await
            .map_err(|e| step_err(name, format!("seed: {}", e.strip_backtrace()), None))?;
        let first = seed_df.schema().field(0).name().clone();
        Some(format!(
            "SELECT CAST({} AS VARCHAR) AS __keep FROM ({seed_sql}) s",
            quote(&first)
        ))
    } else {
        None
    };
    let bound = keep_sql.as_ref().map(|k| super::kmeans_step::Bound {
        rows: cfg.sample_rows,
        seed: cfg.seed_value,
        keep: Some(k.clone()),
    });
    let m = load_matrix(
        engine,
        name,
        &cfg.input,
        &cfg.id,
        &cfg.features,
        &cfg.transforms,
        cfg.nulls,
        bound.as_ref(),
    )
    .await?;
    let n = m.x.nrows();

    // Seed and exclusions.
    let seed_given = id_set(engine, name, &seed_sql, "seed").await?;
    let mut excluded_ids: HashSet<String> = HashSet::new();
    for t in &cfg.exclude {
        let col = exclusion_column(engine, name, t, &cfg.id).await?;
        excluded_ids.extend(
            id_set(
                engine,
                name,
                &format!("SELECT {} FROM {}", quote(&col), quote(t)),
                &format!("exclusion `{t}`"),
            )
            .await?,
        );
    }
    let ids: Vec<&str> = (0..n).map(|i| m.ids.value(i)).collect();
    let seed_rows: Vec<usize> = (0..n).filter(|&i| seed_given.contains(ids[i])).collect();
    let seed_missing = seed_given.len() - seed_rows.len();
    if seed_missing > 0 {
        tracing::warn!(
            step = name,
            missing = seed_missing,
            "seed ids not found in the feature table"
        );
    }
    if seed_rows.len() < cfg.min_seed {
        return Err(step_err(name, format!("the seed has {} users in `{}` ({} given, {seed_missing} not found); at least min_seed = {} are needed", seed_rows.len(), cfg.input, seed_given.len(), cfg.min_seed), Some("a smaller seed gives an unreliable model; widen the seed query, or lower min_seed knowingly".into())));
    }
    if seed_rows.len() * 2 > n {
        return Err(step_err(name, format!("the seed ({} users) is more than half of the {n} users of `{}`", seed_rows.len(), cfg.input), Some("a lookalike finds users *like* a minority; with most users in the seed there is nobody left to find — narrow the seed".into())));
    }
    let is_seed: Vec<bool> = (0..n).map(|i| seed_given.contains(ids[i])).collect();
    let candidates: Vec<usize> = (0..n)
        .filter(|&i| !is_seed[i] && !excluded_ids.contains(ids[i]))
        .collect();
    let excluded = (0..n)
        .filter(|&i| !is_seed[i] && excluded_ids.contains(ids[i]))
        .count();
    if candidates.is_empty() {
        return Err(step_err(
            name,
            format!(
                "no candidate is left after removing the seed and the exclusions ({})",
                if cfg.exclude.is_empty() {
                    "none".to_string()
                } else {
                    cfg.exclude.join(", ")
                }
            ),
            None,
        ));
    }

    // Hold out 20% of the seed, deterministically.
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed_value);
    let mut shuffled = seed_rows.clone();
    rand::seq::SliceRandom::shuffle(shuffled.as_mut_slice(), &mut rng);
    let n_hold = seed_rows.len() / 5;
    let mut holdout: Vec<usize> = shuffled[..n_hold].to_vec();
    let mut train: Vec<usize> = shuffled[n_hold..].to_vec();
    holdout.sort_unstable();
    train.sort_unstable();

    let k_neg = (cfg.negatives * train.len()).min(candidates.len());
    let neg_pick = kmeans::sample_indices(candidates.len(), k_neg, cfg.seed_value);
    let negatives: Vec<usize> = neg_pick.iter().map(|&j| candidates[j]).collect();

    let fitted = tokio::task::block_in_place(|| {
        let mut weights = None;
        let mut intercept = None;
        let mut centroids = None;
        if cfg.method != Method::Similarity {
            let rows: Vec<usize> = train.iter().chain(negatives.iter()).copied().collect();
            let xt = m.x.select(Axis(0), &rows);
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
            let xs = m.x.select(Axis(0), &train);
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
    });
    let blend_weight =
        (cfg.method == Method::Blend).then(|| train.len() as f64 / (train.len() as f64 + 2000.0));
    let mut model = LookalikeModel {
        kind: "lookalike".into(),
        step: name.to_string(),
        method: cfg.method,
        id: cfg.id.clone(),
        features: m.features.clone(),
        weights: fitted.0,
        intercept: fitted.1,
        centroids: fitted.2,
        blend_weight,
        seed_given: seed_given.len(),
        seed_missing,
        seed_train: train.len(),
        seed_holdout: holdout.len(),
        negatives: negatives.len(),
        excluded,
        candidates: candidates.len(),
        auc: f64::NAN,
        tiers: vec![],
    };

    // Scores of every row: in memory, or with the generated SQL (on a cluster the rows here are
    // the fitting sample, scored in memory; the cluster scores everyone below).
    let assign = if distributed {
        super::kmeans_step::AssignMode::Memory
    } else {
        cfg.assign
    };
    let scores: Vec<f64> = match assign {
        super::kmeans_step::AssignMode::Memory => tokio::task::block_in_place(|| {
            let lr = model.weights.as_ref().map(|w| logistic::Logistic {
                weights: Array1::from(w.clone()),
                intercept: model.intercept.unwrap_or(0.0),
                iterations: 0,
            });
            let p_lr = lr.as_ref().map(|l| l.score(m.x.view()));
            let p_sim = model.centroids.as_ref().map(|cs| {
                let c = Array2::from_shape_vec((cs.len(), cs[0].len()), cs.concat())
                    .expect("centroids");
                cosine_scores(&m.x, &c)
            });
            match (cfg.method, p_lr, p_sim) {
                (Method::Logistic, Some(p), _) => p,
                (Method::Similarity, _, Some(s)) => s,
                (Method::Blend, Some(p), Some(s)) => {
                    let w = blend_weight.unwrap_or(0.5);
                    p.iter()
                        .zip(&s)
                        .map(|(a, b)| w * a + (1.0 - w) * b)
                        .collect()
                }
                _ => vec![0.0; n],
            }
        }),
        super::kmeans_step::AssignMode::Sql => {
            let q = format!(
                "SELECT {id}, {} AS score FROM {} ORDER BY {id}",
                model.score_sql(),
                quote(&cfg.input),
                id = quote(&cfg.id)
            );
            let b = engine
                .ctx
                .sql(&q)
                .await
                .map_err(|e| {
                    Error::internal(format!("{context}: generated scoring SQL failed: {e}"))
                })?
                .collect()
                .await
                .map_err(|e| execution_error(&context, e))?;
            let mut out = Vec::with_capacity(n);
            for batch in b {
                let s = batch
                    .column(1)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .expect("f64 score")
                    .clone();
                out.extend(s.iter().map(|v| v.unwrap_or(f64::NAN)));
            }
            if out.len() != n {
                return Err(Error::internal(format!(
                    "{context}: SQL scoring returned {} rows for {n}",
                    out.len()
                )));
            }
            out
        }
    };

    // Quality: held-out seed ranked among the candidates.
    let pos: Vec<f64> = holdout.iter().map(|&i| scores[i]).collect();
    let neg: Vec<f64> = candidates.iter().map(|&i| scores[i]).collect();
    model.auc = auc(&pos, &neg);
    let mut pool: Vec<f64> = pos.iter().chain(neg.iter()).copied().collect();
    pool.sort_by(|a, b| b.total_cmp(a));
    let pool_sizes = tier_sizes(&cfg.reach, &pool);
    // The audience: candidates by score (descending), ties by id.
    let mut order: Vec<usize> = candidates.clone();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(ids[a].cmp(ids[b])));
    let cand_sorted: Vec<f64> = order.iter().map(|&i| scores[i]).collect();
    let sizes = tier_sizes(&cfg.reach, &cand_sorted);
    for ((r, &pool_size), &size) in cfg.reach.iter().zip(&pool_sizes).zip(&sizes) {
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
        model.tiers.push(TierQuality {
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
    if model.auc < 0.6 {
        tracing::warn!(
            step = name,
            auc = model.auc,
            "lookalike AUC is below 0.6: the features barely tell the seed apart from other users"
        );
    }

    // Output: every candidate inside the largest tier, labelled with the smallest tier holding it.
    let mut tiers_by_size: Vec<(usize, String)> = sizes
        .iter()
        .zip(&cfg.reach)
        .map(|(s, r)| (*s, r.label()))
        .collect();
    tiers_by_size.sort_by_key(|t| t.0);
    let max = tiers_by_size.last().map(|t| t.0).unwrap_or(0);
    let out_ids: StringArray = order[..max].iter().map(|&i| Some(ids[i])).collect();
    let out_scores =
        Float64Array::from(order[..max].iter().map(|&i| scores[i]).collect::<Vec<_>>());
    let out_rank = Int64Array::from((1..=max as i64).collect::<Vec<_>>());
    let out_tier: StringArray = (0..max)
        .map(|r| {
            tiers_by_size
                .iter()
                .find(|(s, _)| r < *s)
                .map(|(_, l)| l.clone())
        })
        .collect();
    if let Some(keep) = &keep_sql {
        let rows =
            score_on_cluster(engine, name, cfg, &model, keep, &sizes, &tiers_by_size, n).await?;
        return Ok((model, rows));
    }
    let schema = output_schema(&cfg.id);
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(out_ids) as ArrayRef,
            Arc::new(out_scores),
            Arc::new(out_rank),
            Arc::new(out_tier),
        ],
    )
    .map_err(|e| Error::internal(e.to_string()))?;
    engine.register_batches(name, schema, vec![batch]).await?;
    Ok((model, max))
}

/// The id column of an exclusion table: the step's id column when it has one, else its first.
async fn exclusion_column(engine: &Engine, step: &str, table: &str, id: &str) -> Result<String> {
    let df = engine.ctx.table(table).await.map_err(|_| {
        step_err(
            step,
            format!("exclusion table `{table}` does not exist"),
            None,
        )
    })?;
    Ok(if df.schema().field_with_unqualified_name(id).is_ok() {
        id.to_string()
    } else {
        df.schema().field(0).name().clone()
    })
}

/// On a cluster: scores every candidate with the generated SQL and writes the audience there.
/// Tier sizes come from the fitting sample when it held every row (then they equal the local
/// engine's), else from counts over all candidates computed by the cluster.
#[allow(clippy::too_many_arguments)]
async fn score_on_cluster(
    engine: &Engine,
    name: &str,
    cfg: &LookalikeConfig,
    model: &LookalikeModel,
    keep: &str,
    sample_sizes: &[usize],
    tiers_by_size: &[(usize, String)],
    sample_rows: usize,
) -> Result<usize> {
    let context = format!("step `{name}`");
    let id = quote(&cfg.id);
    let mut filters = vec![format!(
        "NOT EXISTS (SELECT 1 FROM ({keep}) k WHERE k.__keep = CAST(i.{id} AS VARCHAR))"
    )];
    for (n, t) in cfg.exclude.iter().enumerate() {
        let col = exclusion_column(engine, name, t, &cfg.id).await?;
        filters.push(format!(
            "NOT EXISTS (SELECT 1 FROM {} x{n} WHERE CAST(x{n}.{} AS VARCHAR) = CAST(i.{id} AS VARCHAR))",
            quote(t),
            quote(&col)
        ));
    }
    let candidates = format!(
        "SELECT CAST(i.{id} AS VARCHAR) AS {id}, {} AS \"score\" FROM {} i WHERE {}",
        model.score_sql(),
        quote(&cfg.input),
        filters.join(" AND ")
    );
    let total = engine
        .ctx
        .sql(&format!("SELECT * FROM {} ", quote(&cfg.input)))
        .await
        .map_err(|e| Error::internal(format!("{context}: {e}")))?
        .count()
        .await
        .map_err(|e| execution_error(&context, e))?;
    let sizes: Vec<usize> = if total <= sample_rows {
        sample_sizes.to_vec()
    } else {
        // Counts over every candidate, for percentages and thresholds.
        let mut sums = vec!["COUNT(*) AS n".to_string()];
        for (i, r) in cfg.reach.iter().enumerate() {
            if let Reach::Threshold(t) = r {
                sums.push(format!(
                    "SUM(CASE WHEN \"score\" >= {} THEN 1 ELSE 0 END) AS t{i}",
                    features::lit(*t)
                ));
            }
        }
        let b = engine
            .ctx
            .sql(&format!("SELECT {} FROM ({candidates}) c", sums.join(", ")))
            .await
            .map_err(|e| Error::internal(format!("{context}: tier counts: {e}")))?
            .collect()
            .await
            .map_err(|e| execution_error(&context, e))?;
        let value = |col: &str| -> usize {
            b.first()
                .and_then(|b| b.column_by_name(col))
                .and_then(|a| cast(a, &DataType::Int64).ok())
                .and_then(|a| {
                    a.as_any().downcast_ref::<Int64Array>().map(|x| {
                        if x.is_null(0) {
                            0
                        } else {
                            x.value(0)
                        }
                    })
                })
                .unwrap_or(0) as usize
        };
        let n = value("n");
        cfg.reach
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                Reach::Percent(p) => ((n as f64) * p / 100.0).ceil() as usize,
                Reach::Count(c) => *c,
                Reach::Threshold(_) => value(&format!("t{i}")),
            })
            .map(|s| s.min(n))
            .collect()
    };
    let mut by_size: Vec<(usize, String)> = sizes
        .iter()
        .zip(&cfg.reach)
        .map(|(s, r)| (*s, r.label()))
        .collect();
    if total <= sample_rows {
        by_size = tiers_by_size.to_vec();
    }
    by_size.sort_by_key(|t| t.0);
    let max = by_size.last().map(|t| t.0).unwrap_or(0);
    let cases: Vec<String> = by_size
        .iter()
        .map(|(s, l)| format!("WHEN \"rank\" <= {s} THEN '{}'", l.replace('\'', "''")))
        .collect();
    let sql = format!(
        "SELECT {id}, \"score\", \"rank\", CASE {} END AS \"tier\" FROM (\n  SELECT {id}, \"score\", CAST(ROW_NUMBER() OVER (ORDER BY \"score\" DESC, {id} ASC) AS BIGINT) AS \"rank\" FROM ({candidates}) c\n) r WHERE \"rank\" <= {max}",
        if cases.is_empty() { "WHEN false THEN ''".to_string() } else { cases.join(" ") }
    );
    let df = engine.ctx.sql(&sql).await.map_err(|e| {
        Error::internal(format!(
            "{context}: generated scoring SQL failed to plan: {e}"
        ))
    })?;
    engine
        .write_on_cluster_as(name, df, &context, output_schema(&cfg.id))
        .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_and_reach() {
        assert_eq!(auc(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
        assert_eq!(auc(&[1.0], &[1.0]), 0.5);
        assert_eq!(
            Reach::parse(&toml::Value::String("5%".into())).unwrap(),
            Reach::Percent(5.0)
        );
        assert_eq!(
            Reach::parse(&toml::Value::Integer(500)).unwrap(),
            Reach::Count(500)
        );
        assert!(Reach::parse(&toml::Value::String("lots".into())).is_err());
        let sorted = [0.9, 0.8, 0.7, 0.1];
        assert_eq!(
            tier_sizes(
                &[
                    Reach::Percent(50.0),
                    Reach::Threshold(0.75),
                    Reach::Count(9)
                ],
                &sorted
            ),
            vec![2, 2, 4]
        );
    }
}
