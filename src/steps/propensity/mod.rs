//! The `kind = "propensity"` step: who will do something (buy the brand, say) in the next
//! `horizon` days, learned from what users did after an earlier date.
//!
//! With `A = as_of` and `h = horizon`, the step computes its feature step again as of
//! `A − h` and `A − 2h` (the same SQL with `$as_of` bound to those dates, so nothing from a
//! label window leaks into its features) and runs the label query for `[A − 2h, A − h)` and
//! `[A − h, A)`. The model is a logistic regression fitted on the features as of `A − h`
//! labelled by `[A − h, A)`; it ranks today's features. The backtest fits the same way one
//! horizon further back (features as of `A − 2h`, labels `[A − 2h, A − h)`) and ranks the
//! users as of `A − h` against `[A − h, A)`: AUC, per-tier precision, lift and recall, the Brier
//! score and a reliability curve, every run that fits.

mod as_of;
mod model;
mod train;

use chrono::{Days, NaiveDate};

use super::matrix::{
    apply_matrix, load_and_apply, load_matrix, numeric_columns, plan_model, step_err,
};
use super::ranking::{
    audience_batch, by_score, excluded_ids, output_schema, score_on_cluster, scores_by_sql,
    tier_sizes, Scored,
};
use super::refit;
use super::{StepInputs, StepResult};
use crate::engine::materialise::Held;
use crate::engine::Engine;
use crate::error::{Error, Problem, Result};
use crate::job::{Bindings, ParamValue, Step};
use crate::ml::calibration;
use crate::ml::logistic::Logistic;

pub use crate::job::models::PropensityConfig;
pub use model::{render, Backtest, PropensityModel, TierCheck};

/// The run's `as_of`.
fn as_of(name: &str, bindings: &Bindings) -> Result<NaiveDate> {
    match bindings.get("as_of") {
        Some(ParamValue::Date(d)) => Ok(*d),
        _ => Err(step_err(
            name,
            "a propensity step needs the date param `as_of`".into(),
            None,
        )),
    }
}

fn days_before(d: NaiveDate, days: u32) -> Result<NaiveDate> {
    d.checked_sub_days(Days::new(u64::from(days)))
        .ok_or_else(|| Error::internal(format!("{days} days before {d}")))
}

/// Checks the label query and the input's features, and registers an empty table of the
/// step's output schema.
pub async fn plan(
    engine: &Engine,
    step: &Step,
    cfg: &PropensityConfig,
    bindings: &Bindings,
) -> std::result::Result<(), Problem> {
    let problem = |e: Error| match e {
        Error::Job(mut ps) if !ps.is_empty() => {
            let mut p = ps.remove(0);
            p.location = Some(step.declared_at.clone());
            p
        }
        other => super::problem(step, other.to_string(), None),
    };
    let df = as_of::label_query(engine, &step.name, cfg)
        .await
        .map_err(problem)?;
    as_of::label_column(&step.name, cfg, &df).map_err(problem)?;
    let mut b = bindings.clone();
    let day = match bindings.get("as_of") {
        Some(ParamValue::Date(d)) => *d,
        _ => NaiveDate::default(),
    };
    b.insert("label_start".into(), ParamValue::Date(day));
    b.insert("label_end".into(), ParamValue::Date(day));
    df.with_param_values(crate::engine::sql::param_values(&b))
        .and_then(|d| d.into_optimized_plan())
        .map_err(|e| {
            super::problem(
                step,
                format!("label: {}", e.strip_backtrace()),
                Some(
                    "the label query may use the job's params and $label_start, $label_end".into(),
                ),
            )
        })?;
    for t in &cfg.exclude {
        engine.ctx.table(t.as_str()).await.map_err(|_| {
            super::problem(step, format!("exclusion table `{t}` does not exist"), None)
        })?;
    }
    plan_model(
        engine,
        step,
        &cfg.input,
        &cfg.id,
        &cfg.features,
        &cfg.transforms,
        output_schema(&cfg.id),
    )
    .await
}

/// Fits (or applies the kept model, as the refit policy says), ranks today's users and
/// registers `(id, score, rank, tier)` under the step's name.
pub async fn run_step(
    engine: &Engine,
    step: &Step,
    cfg: &PropensityConfig,
    inputs: &StepInputs<'_>,
) -> Result<StepResult> {
    let out = refit::fit_or_apply(
        engine,
        step,
        inputs,
        &cfg.input,
        |m: &PropensityModel| numeric_columns(&m.features),
        |kept| async move { score(engine, step, cfg, kept).await },
        |_| async move {
            let fitted = fit(engine, step, cfg, inputs).await?;
            score(engine, step, cfg, fitted).await
        },
    )
    .await?;
    Ok(StepResult {
        propensity: Some(out.model),
        model_use: Some(out.model_use),
        keep: out.keep,
        ..StepResult::new(step, out.rows, Held::Memory(out.rows * 40))
    })
}

/// Fits the model on the features as of `A − h` and its backtest one horizon further back.
async fn fit(
    engine: &Engine,
    step: &Step,
    cfg: &PropensityConfig,
    inputs: &StepInputs<'_>,
) -> Result<PropensityModel> {
    let name = step.name.as_str();
    let started = std::time::Instant::now();
    let today = as_of(name, inputs.bindings)?;
    let t1 = days_before(today, cfg.horizon_days)?;
    let t2 = days_before(t1, cfg.horizon_days)?;
    if let Some((source, first)) = as_of::first_label_day(engine, name, cfg, inputs).await? {
        if t2 < first {
            return Err(Error::data(
                format!("step `{name}`"),
                format!(
                    "horizon = {h} needs data from {t2} (the backtest trains as of as_of − 2 × horizon), but `{source}` starts on {first}: {} days are missing",
                    (first - t2).num_days(),
                    h = cfg.horizon_days
                ),
            ));
        }
    }
    let recent = as_of::labels(engine, name, cfg, inputs.bindings, t1, today).await?;
    let earlier = as_of::labels(engine, name, cfg, inputs.bindings, t2, t1).await?;
    tracing::debug!(
        step = name,
        ms = started.elapsed().as_millis() as u64,
        "labels read"
    );

    // The backtest: fitted as of t2, scored as of t1.
    let fork = as_of::features_at(engine, name, cfg, inputs, t2).await?;
    let m2 = load(&fork, name, cfg).await?;
    drop(fork);
    let y2 = train::outcome(&m2, &earlier);
    check_labels(name, &y2, t2, t1)?;
    let back = tokio::task::block_in_place(|| train::fit(cfg, &m2, &y2));
    // Only its transform is needed from here on; the matrix leaves memory before the next
    // date's features are computed.
    let transform = m2.features.clone();
    drop(m2);
    tracing::debug!(
        step = name,
        ms = started.elapsed().as_millis() as u64,
        "backtest model fitted"
    );
    let fork = as_of::features_at(engine, name, cfg, inputs, t1).await?;
    let (m1, scored) = load_and_apply(
        &fork,
        name,
        &cfg.input,
        &cfg.id,
        &cfg.features,
        &cfg.transforms,
        cfg.nulls,
        &transform,
    )
    .await?;
    drop(fork);
    tracing::debug!(
        step = name,
        ms = started.elapsed().as_millis() as u64,
        "matrices as of the training date read"
    );
    let y1 = train::outcome(&scored, &recent);
    let backtest = tokio::task::block_in_place(|| {
        let p = back.model.score(scored.x.view());
        evaluate(cfg, &p, &y1, (t2, t1, today))
    });
    drop(scored);

    tracing::debug!(
        step = name,
        ms = started.elapsed().as_millis() as u64,
        "backtest evaluated"
    );
    // The model: fitted as of t1.
    let y1 = train::outcome(&m1, &recent);
    check_labels(name, &y1, t1, today)?;
    let fitted = tokio::task::block_in_place(|| train::fit(cfg, &m1, &y1));
    if backtest.auc < cfg.min_auc {
        tracing::warn!(
            step = name,
            auc = backtest.auc,
            min_auc = cfg.min_auc,
            "propensity backtest AUC is below min_auc: the features barely tell who will do it"
        );
    }
    tracing::debug!(
        step = name,
        ms = started.elapsed().as_millis() as u64,
        "propensity fitted with its backtest"
    );
    Ok(PropensityModel {
        kind: "propensity".into(),
        step: name.to_string(),
        id: cfg.id.clone(),
        features: m1.features.clone(),
        weights: fitted.model.weights.to_vec(),
        intercept: fitted.model.intercept,
        horizon_days: cfg.horizon_days,
        trained_as_of: t1,
        label_end: today,
        train_rows: fitted.rows,
        train_positives: fitted.positives,
        base_rate: y1.iter().filter(|&&v| v).count() as f64 / y1.len().max(1) as f64,
        missing: m1.missing.clone(),
        dropped_rows: m1.dropped_rows,
        candidates: 0,
        excluded: 0,
        tiers: vec![],
        backtest,
        min_auc: cfg.min_auc,
    })
}

/// The feature matrix of the step's input in `engine`, its transform fitted there.
async fn load(
    engine: &Engine,
    name: &str,
    cfg: &PropensityConfig,
) -> Result<crate::features::FeatureMatrix> {
    load_matrix(
        engine,
        name,
        &cfg.input,
        &cfg.id,
        &cfg.features,
        &cfg.transforms,
        cfg.nulls,
        None,
    )
    .await
}

/// A label window must hold some positives and some negatives among the input's users.
fn check_labels(name: &str, y: &[bool], start: NaiveDate, end: NaiveDate) -> Result<()> {
    let positives = y.iter().filter(|&&v| v).count();
    if positives == 0 {
        return Err(Error::data(
            format!("step `{name}`"),
            format!("the label window {start} .. {end} has no positives among the {} users of the input: there is nothing to learn (is there data in that window, and does the label query match the input's ids?)", y.len()),
        ));
    }
    if positives == y.len() {
        return Err(Error::data(
            format!("step `{name}`"),
            format!("every one of the {} users of the input is positive in the label window {start} .. {end}: there is nothing to rank; narrow the label query", y.len()),
        ));
    }
    Ok(())
}

/// The backtest's measures of scores `p` against outcomes `y`.
fn evaluate(
    cfg: &PropensityConfig,
    p: &[f64],
    y: &[bool],
    (trained, scored, end): (NaiveDate, NaiveDate, NaiveDate),
) -> Backtest {
    let pos: Vec<f64> = p
        .iter()
        .zip(y)
        .filter(|(_, &v)| v)
        .map(|(s, _)| *s)
        .collect();
    let neg: Vec<f64> = p
        .iter()
        .zip(y)
        .filter(|(_, &v)| !v)
        .map(|(s, _)| *s)
        .collect();
    Backtest {
        trained_as_of: trained,
        scored_as_of: scored,
        label_end: end,
        users: p.len(),
        positives: pos.len(),
        base_rate: pos.len() as f64 / p.len().max(1) as f64,
        auc: crate::ml::similarity::auc(&pos, &neg),
        brier: calibration::brier(p, y),
        reliability: calibration::reliability(p, y, 10),
        tiers: train::tier_checks(cfg, p, y),
    }
}

/// Ranks today's users with `model` and registers the audience.
async fn score(
    engine: &Engine,
    step: &Step,
    cfg: &PropensityConfig,
    mut model: PropensityModel,
) -> Result<(PropensityModel, usize)> {
    let name = step.name.as_str();
    if engine.is_distributed() {
        // The cluster scores and ranks everyone with the generated SQL.
        let scored = Scored {
            input: &cfg.input,
            id: &cfg.id,
            exclude: &cfg.exclude,
            reach: &cfg.reach,
            score_sql: model.score_sql(),
            keep: None,
        };
        let (rows, sizes, candidates) =
            score_on_cluster(engine, name, &scored, &[], &[], 0).await?;
        model.tiers = cfg
            .reach
            .iter()
            .zip(&sizes)
            .map(|(r, s)| (r.label(), *s))
            .collect();
        model.candidates = candidates.unwrap_or(0);
        return Ok((model, rows));
    }
    let m = apply_matrix(
        engine,
        name,
        &cfg.input,
        &cfg.id,
        &model.features,
        cfg.nulls,
    )
    .await?;
    let n = m.x.nrows();
    let scores: Vec<f64> = match cfg.assign {
        crate::job::models::AssignMode::Memory => tokio::task::block_in_place(|| {
            Logistic {
                weights: ndarray::Array1::from(model.weights.clone()),
                intercept: model.intercept,
                iterations: 0,
            }
            .score(m.x.view())
        }),
        crate::job::models::AssignMode::Sql => {
            scores_by_sql(
                engine,
                &format!("step `{name}`"),
                &cfg.input,
                &cfg.id,
                &model.score_sql(),
                n,
            )
            .await?
        }
    };
    let excluded = excluded_ids(engine, name, &cfg.exclude, &cfg.id).await?;
    let candidates: Vec<usize> = (0..n)
        .filter(|&i| !excluded.contains(m.ids.value(i)))
        .collect();
    let order = by_score(&scores, &candidates);
    let sorted: Vec<f64> = order.iter().map(|&i| scores[i]).collect();
    let sizes = tier_sizes(&cfg.reach, &sorted);
    let batch = audience_batch(&cfg.id, &m.ids, &scores, &order, &cfg.reach, &sizes)?;
    let rows = batch.num_rows();
    model.candidates = candidates.len();
    model.excluded = n - candidates.len();
    model.tiers = cfg
        .reach
        .iter()
        .zip(&sizes)
        .map(|(r, s)| (r.label(), *s))
        .collect();
    engine
        .register_batches(name, output_schema(&cfg.id), vec![batch])
        .await?;
    Ok((model, rows))
}
