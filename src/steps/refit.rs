//! Refit schedules of model steps. A fitted model is kept in the job's state with what its
//! input looked like (rows, feature means), the run and date that fitted it and a fingerprint
//! of the step's configuration; a later run applies it instead of fitting again unless the
//! step's `refit` policy, drift of the input or a changed configuration says otherwise.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::job::models::Refit;
use crate::job::Step;
use crate::quote::ident as quote;
use crate::storage::Location;

/// What a model's input looked like when it was fitted (or today).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputStats {
    /// Rows of the input table.
    pub rows: u64,
    /// Mean of each numeric feature column (nulls left out).
    pub means: BTreeMap<String, f64>,
}

/// A model kept in the state folder, with what decides whether it can be applied again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kept<M> {
    /// The run that fitted it.
    pub run_id: String,
    /// The date (`as_of`) it was fitted for.
    pub fitted_on: NaiveDate,
    /// Fingerprint of the step's configuration at the fit.
    pub config: String,
    /// The input at the fit.
    pub input: InputStats,
    /// The model.
    pub model: M,
}

/// Which model a run used: fitted in the run, or kept from an earlier one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelUse {
    /// Fitted in this run.
    pub fitted: bool,
    /// The run that fitted it.
    pub run_id: String,
    /// The date it was fitted for.
    pub fitted_on: NaiveDate,
    /// Why the run fitted, or why it could apply the kept model.
    pub reason: String,
}

impl ModelUse {
    /// One line for the summary and `status`.
    pub fn describe(&self) -> String {
        if self.fitted {
            format!("fitted in this run ({})", self.reason)
        } else {
            format!(
                "model of run {} ({}) applied ({})",
                self.run_id, self.fitted_on, self.reason
            )
        }
    }
}

/// What the run does with a model step.
#[derive(Debug)]
pub enum Decision<M> {
    /// Fit a new model, for this reason.
    Fit(String),
    /// Apply the kept model, for this reason.
    Apply(Box<Kept<M>>, String),
}

/// The run facts a decision depends on.
#[derive(Debug, Clone)]
pub struct RunFacts<'a> {
    /// This run's id.
    pub run_id: &'a str,
    /// This run's date.
    pub day: NaiveDate,
    /// `--refit`: fit every model step whatever its policy.
    pub force: bool,
}

/// The fingerprint of a step's configuration: a kept model fitted under another one is not
/// applied.
pub fn fingerprint(step: &Step) -> String {
    use sha2::Digest;
    let text = format!("{}|{:?}", env!("CARGO_PKG_VERSION"), step.kind);
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..12])
}

fn state_path(state: &Location, step: &str) -> Result<Location> {
    state.child(&format!("models/{step}.json"))
}

/// The model kept for `step`: `None` when there is none, or it cannot be read (a debug line
/// says why; the step then fits).
pub async fn load<M: DeserializeOwned>(state: &Location, step: &str) -> Option<Kept<M>> {
    use object_store::ObjectStoreExt;
    let loc = state_path(state, step).ok()?;
    let bytes = loc.store.get(&loc.path).await.ok()?.bytes().await.ok()?;
    let read = serde_json::from_slice::<serde_json::Value>(&bytes)
        .and_then(|v| serde_json::from_value::<Kept<M>>(exact_floats_back(v)));
    match read {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::info!(step, path = %loc.display(), "the kept model is unreadable or from an older version; the step fits a new one: {e}");
            None
        }
    }
}

/// Serialises a freshly fitted model for the state folder.
pub fn keep<M: Serialize>(
    facts: &RunFacts<'_>,
    step: &Step,
    input: InputStats,
    model: &M,
) -> Result<Vec<u8>> {
    let value = serde_json::to_value(Kept {
        run_id: facts.run_id.to_string(),
        fitted_on: facts.day,
        config: fingerprint(step),
        input,
        model,
    })
    .map_err(Error::unexpected)?;
    serde_json::to_vec_pretty(&exact_floats(value)).map_err(Error::unexpected)
}

/// The tag of a float kept as text.
const FLOAT_TAG: &str = "$f64";

/// JSON readers may round a float's last digit; a kept model must score the next night
/// exactly as it scored its own, so every fractional number is kept as the text Rust prints
/// for it (the shortest that reads back to the same bits): `{"$f64": "1.3863262976213073"}`.
fn exact_floats(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            serde_json::json!({ FLOAT_TAG: format!("{f:?}") })
        }
        Value::Array(a) => Value::Array(a.into_iter().map(exact_floats).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, exact_floats(v))).collect())
        }
        other => other,
    }
}

/// The inverse of [`exact_floats`], with Rust's exact float parsing.
fn exact_floats_back(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(o) if o.len() == 1 && o.contains_key(FLOAT_TAG) => {
            let parsed = o[FLOAT_TAG].as_str().and_then(|t| t.parse::<f64>().ok());
            parsed
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or(Value::Null)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(exact_floats_back).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k, exact_floats_back(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Rows and the means of `columns` of `table`, in one aggregate.
pub async fn stats(engine: &Engine, table: &str, columns: &[String]) -> Result<InputStats> {
    let mut select = vec!["COUNT(*)".to_string()];
    select.extend(
        columns
            .iter()
            .map(|c| format!("AVG(CAST({} AS DOUBLE))", quote(c))),
    );
    let sql = format!("SELECT {} FROM {}", select.join(", "), quote(table));
    let batches =
        crate::engine::sql::collect(engine, &sql, &format!("input statistics of `{table}`"))
            .await?;
    let b = batches
        .first()
        .ok_or_else(|| Error::internal(format!("no statistics row for `{table}`")))?;
    let rows = b.column(0).as_primitive::<Int64Type>().value(0) as u64;
    let mut means = BTreeMap::new();
    for (i, c) in columns.iter().enumerate() {
        let a = b.column(i + 1).as_primitive::<Float64Type>();
        if a.is_valid(0) {
            means.insert(c.clone(), a.value(0));
        }
    }
    Ok(InputStats { rows, means })
}

/// How far `now` moved from `then`, relative to `then`.
fn moved(then: f64, now: f64) -> f64 {
    if then == now {
        return 0.0;
    }
    (now - then).abs() / then.abs().max(f64::MIN_POSITIVE)
}

/// The first drift beyond `limit` between the fit's input and today's, in words.
pub fn drift(fit: &InputStats, now: &InputStats, limit: f64) -> Option<String> {
    let r = moved(fit.rows as f64, now.rows as f64);
    if r > limit {
        return Some(format!(
            "input rows moved {:.1}% ({} at the fit, {} now; refit_drift {:.1}%)",
            r * 100.0,
            fit.rows,
            now.rows,
            limit * 100.0
        ));
    }
    for (col, then) in &fit.means {
        let Some(now_mean) = now.means.get(col) else {
            return Some(format!("feature `{col}` has no value now"));
        };
        let r = moved(*then, *now_mean);
        if r > limit {
            return Some(format!(
                "the mean of `{col}` moved {:.1}% ({then:.4} at the fit, {now_mean:.4} now; refit_drift {:.1}%)",
                r * 100.0,
                limit * 100.0
            ));
        }
    }
    None
}

/// Decides whether the step fits or applies its kept model. `today` is computed only when the
/// policy has a drift limit and a kept model could otherwise be applied.
pub async fn decide<M, F, Fut>(
    policy: &Refit,
    kept: Option<Kept<M>>,
    step: &Step,
    facts: &RunFacts<'_>,
    today: F,
) -> Result<Decision<M>>
where
    F: FnOnce(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<InputStats>>,
{
    let Some(every) = policy.every_days else {
        return Ok(Decision::Fit("refit = \"always\"".into()));
    };
    if facts.force {
        return Ok(Decision::Fit("--refit".into()));
    }
    let Some(kept) = kept else {
        return Ok(Decision::Fit("no model kept yet".into()));
    };
    if kept.config != fingerprint(step) {
        return Ok(Decision::Fit(
            "the step's configuration (or the engine version) changed since the last fit".into(),
        ));
    }
    let age = (facts.day - kept.fitted_on).num_days();
    if age < 0 {
        return Ok(Decision::Fit(format!(
            "the kept model was fitted for a later date ({}); an earlier date is not scored with it",
            kept.fitted_on
        )));
    }
    if age >= i64::from(every) {
        return Ok(Decision::Fit(format!(
            "the kept model is {age} days old (refit every {every} days)"
        )));
    }
    if let Some(limit) = policy.drift {
        let now = today(kept.input.means.keys().cloned().collect()).await?;
        if let Some(why) = drift(&kept.input, &now, limit) {
            return Ok(Decision::Fit(why));
        }
    }
    let reason = format!("{age} days old, refit every {every} days");
    Ok(Decision::Apply(Box::new(kept), reason))
}

/// The record of a fresh fit and the bytes kept for the next run; the kept model is replaced
/// only by a fit for the same or a later date, so a backfill never replaces the current model.
pub fn fitted<M: Serialize>(
    facts: &RunFacts<'_>,
    step: &Step,
    reason: String,
    previous: Option<NaiveDate>,
    input: InputStats,
    model: &M,
) -> Result<(ModelUse, Option<Vec<u8>>)> {
    let keep_it = previous.is_none_or(|d| facts.day >= d);
    let bytes = if keep_it {
        Some(keep(facts, step, input, model)?)
    } else {
        None
    };
    Ok((
        ModelUse {
            fitted: true,
            run_id: facts.run_id.to_string(),
            fitted_on: facts.day,
            reason,
        },
        bytes,
    ))
}

/// The record of an applied kept model.
pub fn applied<M>(kept: &Kept<M>, reason: String) -> ModelUse {
    ModelUse {
        fitted: false,
        run_id: kept.run_id.clone(),
        fitted_on: kept.fitted_on,
        reason,
    }
}

/// A model step's result under its refit policy.
pub struct Outcome<M> {
    /// The model the run used (with today's counts).
    pub model: M,
    /// Rows of the step's output.
    pub rows: usize,
    /// Fitted or applied, and why.
    pub model_use: ModelUse,
    /// The fresh model to keep, once the run is published.
    pub keep: Option<Vec<u8>>,
}

/// Fits the step's model or applies the kept one, as its policy decides. `fit` receives the
/// kept model (a fit may carry things over from it, such as cluster ids); `columns` names the
/// input columns whose means the drift check compares.
pub async fn fit_or_apply<M, A, AF, F, FF>(
    engine: &Engine,
    step: &Step,
    inputs: &super::StepInputs<'_>,
    input: &str,
    columns: fn(&M) -> Vec<String>,
    apply: A,
    fit: F,
) -> Result<Outcome<M>>
where
    M: Serialize + DeserializeOwned + Clone,
    A: FnOnce(M) -> AF,
    AF: std::future::Future<Output = Result<(M, usize)>>,
    F: FnOnce(Option<M>) -> FF,
    FF: std::future::Future<Output = Result<(M, usize)>>,
{
    let facts = &inputs.facts;
    let kept: Option<Kept<M>> = load(inputs.state, &step.name).await;
    let previous_day = kept.as_ref().map(|k| k.fitted_on);
    let previous = kept.as_ref().map(|k| k.model.clone());
    let decision = decide(&step.refit, kept, step, facts, |cols| async move {
        stats(engine, input, &cols).await
    })
    .await?;
    match decision {
        Decision::Apply(kept, reason) => {
            let model_use = applied(&kept, reason);
            tracing::info!(step = %step.name, "{}", model_use.describe());
            let (model, rows) = apply(kept.model).await?;
            Ok(Outcome {
                model,
                rows,
                model_use,
                keep: None,
            })
        }
        Decision::Fit(reason) => {
            let (model, rows) = fit(previous).await?;
            // The input's statistics only matter to a later run that may apply this model.
            let today = if step.refit.every_days.is_some() {
                stats(engine, input, &columns(&model)).await?
            } else {
                InputStats::default()
            };
            let (model_use, keep) = fitted(facts, step, reason, previous_day, today, &model)?;
            tracing::info!(step = %step.name, "{}", model_use.describe());
            Ok(Outcome {
                model,
                rows,
                model_use,
                keep,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(rows: u64, mean: f64) -> InputStats {
        InputStats {
            rows,
            means: [("x".to_string(), mean)].into_iter().collect(),
        }
    }

    #[test]
    fn drift_is_relative_to_the_fit() {
        assert_eq!(drift(&stats(1000, 2.0), &stats(1050, 2.1), 0.1), None);
        let why = drift(&stats(1000, 2.0), &stats(1200, 2.0), 0.1).unwrap();
        assert!(why.contains("input rows moved 20.0%"), "{why}");
        let why = drift(&stats(1000, 2.0), &stats(1000, 2.5), 0.1).unwrap();
        assert!(why.contains("mean of `x` moved 25.0%"), "{why}");
        let gone = InputStats {
            rows: 1000,
            means: BTreeMap::new(),
        };
        assert!(drift(&stats(1000, 2.0), &gone, 0.1)
            .unwrap()
            .contains("no value"));
    }

    #[test]
    fn kept_floats_read_back_to_the_same_bits() {
        // Values whose shortest text serde_json's own reader may round by one unit.
        let values: Vec<f64> = (1..2000)
            .map(|i| (i as f64 * 0.7315).ln_1p() / 3.0 + 1.0 / i as f64)
            .chain([1.3863262976213073, 1.0068537156464485, 1e-300, -2.5e17])
            .collect();
        let v = serde_json::to_value(&values).unwrap();
        let text = serde_json::to_vec(&exact_floats(v)).unwrap();
        let back: Vec<f64> =
            serde_json::from_value(exact_floats_back(serde_json::from_slice(&text).unwrap()))
                .unwrap();
        for (a, b) in values.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a} read back as {b}");
        }
    }

    #[test]
    fn policies_parse() {
        assert_eq!(Refit::parse_every("always").unwrap(), None);
        assert_eq!(Refit::parse_every("weekly").unwrap(), Some(7));
        assert_eq!(Refit::parse_every("every 3 days").unwrap(), Some(3));
        assert_eq!(Refit::parse_every("every 1 day").unwrap(), Some(1));
        assert!(Refit::parse_every("every 0 days").is_err());
        assert!(Refit::parse_every("sometimes").is_err());
    }
}
