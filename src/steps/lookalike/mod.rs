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

use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::matrix::{apply_matrix, load_matrix, numeric_columns, plan_model, step_err, Bound};
use super::refit;
use super::{StepInputs, StepResult};
use crate::engine::materialise::Held;
use crate::engine::Engine;
use crate::error::Problem;
use crate::error::Result;
use crate::job::Step;
use crate::ml::kmeans;
use crate::ml::logistic;
use crate::quote::ident as quote;

mod fit;
mod model;

use fit::{fit, quality};

pub use super::ranking::output_schema;
use super::ranking::{
    audience_batch, by_score, excluded_ids, id_set, score_on_cluster, scores_by_sql, tier_sizes,
    Scored,
};
pub use crate::job::models::{AssignMode, LookalikeConfig, Method, Reach, SeedSource};
pub use model::{render, LookalikeModel, TierQuality};

/// Runs the step; registers `(id, score, rank, tier)` for the audience (every candidate in a
/// tier) under `name`.
pub async fn run(
    engine: &Engine,
    name: &str,
    cfg: &LookalikeConfig,
    kept: Option<&LookalikeModel>,
) -> Result<(LookalikeModel, usize)> {
    let context = format!("step `{name}`");
    let started = std::time::Instant::now();
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
    let bound = keep_sql.as_ref().map(|k| Bound {
        rows: cfg.sample_rows,
        seed: cfg.seed_value,
        keep: Some(k.clone()),
    });
    // A kept model is applied with its own transform; only on the local engine (a cluster
    // fits on every run: `run_step` never passes a kept model there).
    let m = match kept {
        Some(model) => {
            apply_matrix(
                engine,
                name,
                &cfg.input,
                &cfg.id,
                &model.features,
                cfg.nulls,
            )
            .await?
        }
        None => {
            load_matrix(
                engine,
                name,
                &cfg.input,
                &cfg.id,
                &cfg.features,
                &cfg.transforms,
                cfg.nulls,
                bound.as_ref(),
            )
            .await?
        }
    };
    let n = m.x.nrows();
    tracing::debug!(
        step = name,
        ms = started.elapsed().as_millis() as u64,
        "feature matrix loaded"
    );

    // Seed and exclusions.
    let seed_given = id_set(engine, name, &seed_sql, "seed").await?;
    let excluded_ids = excluded_ids(engine, name, &cfg.exclude, &cfg.id).await?;
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

    tracing::debug!(
        step = name,
        ms = started.elapsed().as_millis() as u64,
        "seed and candidates"
    );
    let fitted = match kept {
        Some(k) => (k.weights.clone(), k.intercept, k.centroids.clone()),
        None => fit(cfg, &m.x, &train, &negatives),
    };
    let blend_weight = match kept {
        Some(k) => k.blend_weight,
        None => (cfg.method == Method::Blend)
            .then(|| train.len() as f64 / (train.len() as f64 + 2000.0)),
    };
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
        missing: m.missing.clone(),
        dropped_rows: m.dropped_rows,
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
    if let Some(k) = kept {
        // The fit's own counts and quality report: measured on the night it was fitted.
        model.seed_train = k.seed_train;
        model.seed_holdout = k.seed_holdout;
        model.negatives = k.negatives;
        model.auc = k.auc;
    }

    // Scores of every row: in memory, or with the generated SQL (on a cluster the rows here are
    // the fitting sample, scored in memory; the cluster scores everyone below).
    let assign = if distributed {
        AssignMode::Memory
    } else {
        cfg.assign
    };
    let scores: Vec<f64> = match assign {
        AssignMode::Memory => tokio::task::block_in_place(|| {
            let lr = model.weights.as_ref().map(|w| logistic::Logistic {
                weights: Array1::from(w.clone()),
                intercept: model.intercept.unwrap_or(0.0),
                iterations: 0,
            });
            let p_lr = lr.as_ref().map(|l| l.score(m.x.view()));
            let p_sim = model.centroids.as_ref().map(|cs| {
                let c = Array2::from_shape_vec((cs.len(), cs[0].len()), cs.concat())
                    .expect("centroids");
                crate::ml::similarity::best_cosine(&m.x, &c)
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
        AssignMode::Sql => {
            scores_by_sql(engine, &context, &cfg.input, &cfg.id, &model.score_sql(), n).await?
        }
    };

    tracing::debug!(
        step = name,
        ms = started.elapsed().as_millis() as u64,
        "fitted and scored"
    );
    // The audience: candidates by score (descending), ties by id.
    // The rows are read in id order, so a tie is broken by row index without comparing the
    // ids' text (many users share a score: identical features give identical scores).
    let rows_in_id_order = ids.windows(2).all(|w| w[0] <= w[1]);
    let order = if rows_in_id_order {
        by_score(&scores, &candidates)
    } else {
        use rayon::slice::ParallelSliceMut;
        let mut order = candidates.clone();
        order.par_sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(ids[a].cmp(ids[b])));
        order
    };
    let cand_sorted: Vec<f64> = order.iter().map(|&i| scores[i]).collect();
    let sizes = tier_sizes(&cfg.reach, &cand_sorted);
    match kept {
        // The fit's quality report stands; the tiers hold today's users.
        Some(k) => {
            model.tiers = k.tiers.clone();
            for (t, &size) in model.tiers.iter_mut().zip(&sizes) {
                t.users = size;
            }
        }
        None => {
            model.auc = quality(
                &mut model.tiers,
                cfg,
                &scores,
                &holdout,
                &candidates,
                &sizes,
            );
        }
    }
    if model.auc < 0.6 {
        tracing::warn!(
            step = name,
            auc = model.auc,
            "lookalike AUC is below 0.6: the features barely tell the seed apart from other users"
        );
    }

    tracing::debug!(
        step = name,
        ms = started.elapsed().as_millis() as u64,
        "ranked and evaluated"
    );
    // Output: every candidate inside the largest tier, labelled with the smallest tier holding it.
    let mut tiers_by_size: Vec<(usize, String)> = sizes
        .iter()
        .zip(&cfg.reach)
        .map(|(s, r)| (*s, r.label()))
        .collect();
    tiers_by_size.sort_by_key(|t| t.0);
    if let Some(keep) = &keep_sql {
        let scored = Scored {
            input: &cfg.input,
            id: &cfg.id,
            exclude: &cfg.exclude,
            reach: &cfg.reach,
            score_sql: model.score_sql(),
            keep: Some(keep),
        };
        let (rows, _, _) =
            score_on_cluster(engine, name, &scored, &sizes, &tiers_by_size, n).await?;
        return Ok((model, rows));
    }
    let batch = audience_batch(&cfg.id, &m.ids, &scores, &order, &cfg.reach, &sizes)?;
    let max = batch.num_rows();
    engine
        .register_batches(name, output_schema(&cfg.id), vec![batch])
        .await?;
    Ok((model, max))
}

/// Checks the seed query, the exclusion tables, the input and its features, and registers an
/// empty table of the step's output schema.
pub async fn plan(
    engine: &Engine,
    step: &Step,
    cfg: &LookalikeConfig,
) -> std::result::Result<(), Problem> {
    let problem = |message: String| super::problem(step, message, None);
    let seed_sql = match &cfg.seed {
        SeedSource::Table(t) => format!("SELECT * FROM {}", quote(t)),
        SeedSource::Query(q) => q.clone(),
    };
    engine
        .ctx
        .sql(&seed_sql)
        .await
        .map_err(|e| problem(format!("seed: {}", e.strip_backtrace())))?;
    for t in &cfg.exclude {
        engine
            .ctx
            .table(t.as_str())
            .await
            .map_err(|_| problem(format!("exclusion table `{t}` does not exist")))?;
    }
    let schema = output_schema(&cfg.id);
    plan_model(
        engine,
        step,
        &cfg.input,
        &cfg.id,
        &cfg.features,
        &cfg.transforms,
        schema,
    )
    .await
}

/// Fits and scores the audience and registers it under the step's name.
pub async fn run_step(
    engine: &Engine,
    step: &Step,
    cfg: &LookalikeConfig,
    inputs: &StepInputs<'_>,
) -> Result<StepResult> {
    let name = step.name.as_str();
    if engine.is_distributed() && step.refit.every_days.is_some() {
        tracing::info!(
            step = name,
            "on a cluster engine a lookalike step fits on every run"
        );
    }
    let mut local = inputs.facts.clone();
    local.force |= engine.is_distributed();
    let inputs = StepInputs {
        facts: local,
        ..inputs.clone()
    };
    let out = refit::fit_or_apply(
        engine,
        step,
        &inputs,
        &cfg.input,
        |m: &LookalikeModel| numeric_columns(&m.features),
        |kept| async move { run(engine, name, cfg, Some(&kept)).await },
        |_| async move { run(engine, name, cfg, None).await },
    )
    .await?;
    Ok(StepResult {
        lookalike: Some(out.model),
        model_use: Some(out.model_use),
        keep: out.keep,
        ..StepResult::new(step, out.rows, Held::Memory(out.rows * 40))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_tiers() {
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
