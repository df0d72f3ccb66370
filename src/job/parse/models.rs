//! The checked configuration of each model step kind (kmeans, lookalike, ltv, propensity) from its keys.
//! Which keys a kind takes at all is the key table's business (`job::keys`).

use std::collections::BTreeMap;

use crate::features::NullPolicy;
use crate::job::models::{
    AssignMode, KChoice, KMeansConfig, LookalikeConfig, LtvConfig, Method, PropensityConfig, Reach,
    SeedSource,
};
use crate::job::spec::StepSpec;

/// `nulls` of a model step.
fn model_nulls(spec: &StepSpec) -> std::result::Result<NullPolicy, String> {
    match spec.nulls.as_deref().unwrap_or("mean") {
        "mean" => Ok(NullPolicy::Mean),
        "zero" => Ok(NullPolicy::Zero),
        "drop" => Ok(NullPolicy::Drop),
        other => Err(format!("nulls = \"{other}\" must be mean, zero or drop")),
    }
}

/// `assign` of a model step.
fn model_assign(spec: &StepSpec) -> std::result::Result<AssignMode, String> {
    match spec.assign.as_deref().unwrap_or("memory") {
        "memory" => Ok(AssignMode::Memory),
        "sql" => Ok(AssignMode::Sql),
        other => Err(format!("assign = \"{other}\" must be memory or sql")),
    }
}

/// `reach` of a scored step: its tiers (default 1%, 2%, 5%, 10%).
fn model_reach(spec: &StepSpec) -> std::result::Result<Vec<Reach>, String> {
    match &spec.reach {
        None => Ok(vec![
            Reach::Percent(1.0),
            Reach::Percent(2.0),
            Reach::Percent(5.0),
            Reach::Percent(10.0),
        ]),
        Some(list) if !list.is_empty() => list.iter().map(Reach::parse).collect(),
        Some(_) => Err("reach lists at least one tier".into()),
    }
}

/// `transforms` of a model step, each list checked.
fn model_transforms(spec: &StepSpec) -> std::result::Result<BTreeMap<String, Vec<String>>, String> {
    let transforms: BTreeMap<String, Vec<String>> = spec
        .transforms
        .iter()
        .map(|(k, v)| (k.clone(), v.list()))
        .collect();
    for (col, list) in &transforms {
        crate::features::parse_transforms(col, list)
            .map_err(|e| format!("transforms of `{col}`: {e}"))?;
    }
    Ok(transforms)
}

pub(super) fn kmeans_config(spec: &StepSpec) -> std::result::Result<KMeansConfig, String> {
    let input = spec
        .input
        .clone()
        .ok_or("a kmeans step needs `input = \"table\"`")?;
    let range = spec.k_range.map(|[a, b]| (a, b)).unwrap_or((4, 16));
    if range.0 < 2 || range.1 < range.0 {
        return Err(format!(
            "k_range [{}, {}] must be increasing and start at 2 or more",
            range.0, range.1
        ));
    }
    let k = match &spec.k {
        None => KChoice::Auto(range.0, range.1),
        Some(toml::Value::String(s)) if s == "auto" => KChoice::Auto(range.0, range.1),
        Some(toml::Value::Integer(i)) if *i >= 1 => KChoice::Fixed(*i as usize),
        Some(other) => {
            return Err(format!(
                "k = {other} must be a positive integer or \"auto\""
            ))
        }
    };
    let nulls = model_nulls(spec)?;
    let assign = model_assign(spec)?;
    let transforms = model_transforms(spec)?;
    let tol = spec.tol.unwrap_or(1e-4);
    if tol.is_nan() || tol < 0.0 {
        return Err("tol must be >= 0".into());
    }
    Ok(KMeansConfig {
        input,
        id: spec.id.clone().unwrap_or_else(|| "user_id".into()),
        features: spec.features.clone(),
        transforms,
        nulls,
        k,
        max_iter: spec.max_iter.unwrap_or(100).max(1),
        tol,
        n_init: spec.n_init.unwrap_or(3).max(1),
        seed: match &spec.seed {
            None => 42,
            Some(toml::Value::Integer(i)) if *i >= 0 => *i as u64,
            Some(other) => {
                return Err(format!(
                    "seed = {other} must be a non-negative integer (the random seed)"
                ))
            }
        },
        sample_rows: spec.sample_rows.unwrap_or(KMEANS_SAMPLE_ROWS).max(1),
        assign,
    })
}

/// Rows a k-means fit uses by default. Measured on the benchmark generator's 1,000,000 users
/// (reference job, k = 10): a 400,000-row sample gives the centroids of the full fit (ARI vs the
/// planted personas 0.333 both ways); 200,000 rows lost 0.03 of ARI.
const KMEANS_SAMPLE_ROWS: usize = 400_000;

pub(super) fn ltv_config(spec: &StepSpec) -> std::result::Result<LtvConfig, String> {
    let input = spec.input.clone().ok_or("an ltv step needs `input`: a table with id, frequency, recency, age and monetary (see sql/lifecycle/customer_summary.sql)")?;
    let horizon = spec.horizon.unwrap_or(52.0);
    if !(horizon > 0.0 && horizon.is_finite()) {
        return Err(format!("horizon must be a positive number, not {horizon}"));
    }
    let penalizer = spec.penalizer.unwrap_or(crate::ml::ltv::DEFAULT_PENALIZER);
    if !(penalizer >= 0.0 && penalizer.is_finite()) {
        return Err(format!(
            "penalizer must be a number of 0 or more, not {penalizer}"
        ));
    }
    Ok(LtvConfig {
        input,
        id: spec.id.clone().unwrap_or_else(|| "user_id".into()),
        horizon,
        penalizer,
    })
}

pub(super) fn lookalike_config(spec: &StepSpec) -> std::result::Result<LookalikeConfig, String> {
    let input = spec
        .input
        .clone()
        .ok_or("a lookalike step needs `input = \"feature_table\"`")?;
    let seed = match &spec.seed {
        Some(toml::Value::String(s)) if s.trim().contains(char::is_whitespace) => SeedSource::Query(s.clone()),
        Some(toml::Value::String(s)) if !s.trim().is_empty() => SeedSource::Table(s.trim().to_string()),
        _ => return Err("a lookalike step needs `seed`: a table of seed ids, or a query such as \"SELECT user_id FROM t WHERE ...\"".into()),
    };
    let method = match spec.method.as_deref().unwrap_or("logistic") {
        "logistic" => Method::Logistic,
        "similarity" => Method::Similarity,
        "blend" => Method::Blend,
        other => {
            return Err(format!(
                "method = \"{other}\" must be logistic, similarity or blend"
            ))
        }
    };
    let reach = model_reach(spec)?;
    let nulls = model_nulls(spec)?;
    let assign = model_assign(spec)?;
    let transforms = model_transforms(spec)?;
    let c = spec.c.unwrap_or(1.0);
    if c.is_nan() || c <= 0.0 {
        return Err("c must be > 0".into());
    }
    Ok(LookalikeConfig {
        input,
        id: spec.id.clone().unwrap_or_else(|| "user_id".into()),
        features: spec.features.clone(),
        transforms,
        nulls,
        seed,
        exclude: spec.exclude.clone().unwrap_or_default(),
        method,
        negatives: spec.negatives.unwrap_or(10).max(1),
        c,
        seed_value: spec.seed_value.unwrap_or(42),
        reach,
        min_seed: spec.min_seed.unwrap_or(100),
        assign,
        sample_rows: spec.sample_rows.unwrap_or(1_000_000).max(1),
    })
}

/// Rows a propensity fit uses by default: the backtest and the model are each fitted on a
/// uniform sample of this many rows (see the README, "Propensity").
const PROPENSITY_SAMPLE_ROWS: usize = 200_000;

/// A propensity step's keys; its `upstream` steps are filled in by the caller, which knows the
/// steps declared before it.
pub(super) fn propensity_config(spec: &StepSpec) -> std::result::Result<PropensityConfig, String> {
    let input = spec.input.clone().ok_or(
        "a propensity step needs `input = \"feature_step\"`: a step whose SQL uses $as_of",
    )?;
    let label = match &spec.label {
        Some(l) if !l.trim().is_empty() => l.clone(),
        _ => return Err("a propensity step needs `label`: SQL returning the ids who did the thing in [$label_start, $label_end), e.g. \"SELECT user_id FROM orders WHERE brand = 'B01' AND ts >= $label_start AND ts < $label_end\"".into()),
    };
    for p in ["$label_start", "$label_end"] {
        if !label.contains(p) {
            return Err(format!("`label` does not use {p}: without it every window gets the same labels, so the model and its backtest would learn from the future"));
        }
    }
    let horizon = spec.horizon.ok_or("a propensity step needs `horizon`: the days after each feature date in which the label is observed, e.g. horizon = 30")?;
    if !(horizon >= 1.0 && horizon.fract() == 0.0 && horizon <= 3650.0) {
        return Err(format!(
            "horizon = {horizon} must be a whole number of days from 1 to 3650"
        ));
    }
    let c = spec.c.unwrap_or(1.0);
    if c.is_nan() || c <= 0.0 {
        return Err("c must be > 0".into());
    }
    let min_auc = spec.min_auc.unwrap_or(0.6);
    if !(0.0..=1.0).contains(&min_auc) {
        return Err(format!("min_auc = {min_auc} must be between 0 and 1"));
    }
    if spec.negatives == Some(0) {
        return Err("negatives = 0 would train on positives only; leave it out to train on the sample as drawn".into());
    }
    if spec.sample_rows == Some(0) {
        return Err("sample_rows must be at least 1".into());
    }
    Ok(PropensityConfig {
        input,
        id: spec.id.clone().unwrap_or_else(|| "user_id".into()),
        features: spec.features.clone(),
        transforms: model_transforms(spec)?,
        nulls: model_nulls(spec)?,
        label,
        horizon_days: horizon as u32,
        exclude: spec.exclude.clone().unwrap_or_default(),
        negatives: spec.negatives,
        c,
        sample_rows: spec.sample_rows.unwrap_or(PROPENSITY_SAMPLE_ROWS),
        seed_value: spec.seed_value.unwrap_or(42),
        reach: model_reach(spec)?,
        min_auc,
        assign: model_assign(spec)?,
        upstream: vec![],
    })
}
