//! The `kind = "ltv"` step: predicted lifetime value from a per-customer summary computed by SQL
//! (`frequency` repeat purchases, `recency` and `age` in one time unit, `monetary` mean spend of
//! the repeat purchases), with BG/NBD for purchases and Gamma-Gamma for spend.
//!
//! Handling of awkward customers, counted in the model report:
//! - no repeat purchase (`frequency = 0`): fitted by BG/NBD as they are; their expected spend is
//!   the population mean of the Gamma-Gamma model, p·γ / (q − 1);
//! - `age = 0` (first purchase at the end of the window): no information for the fit, so left
//!   out of it; still predicted;
//! - repeat buyers with a missing, zero or negative `monetary`: left out of the spend fit, and
//!   given the population mean;
//! - a row that cannot be a summary (negative values, recency past age, nulls): the run stops
//!   with exit 65 naming the step and the count.
//!
//! Output: id, the summary, `p_alive`, `expected_purchases` over `horizon`, `expected_spend`,
//! `ltv` = expected purchases × expected spend (not discounted), `ltv_decile` (1 = the top 10%).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int32Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::refit;
use super::{StepInputs, StepResult};
use crate::engine::materialise::Held;
use crate::engine::Engine;
use crate::error::Problem;
use crate::error::{Error, Result};
use crate::job::Step;
use crate::ml::ltv::{fit_bgnbd, BgNbd, Summary};
use crate::ml::spend::SpendModel;
use datafusion::datasource::MemTable;

pub use crate::job::models::LtvConfig;

/// The fitted models and what the fit saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LtvModel {
    /// BG/NBD.
    pub bgnbd: BgNbd,
    /// Spend per transaction: Gamma-Gamma, or the shared mean where Gamma-Gamma is not usable.
    pub spend: SpendModel,
    /// Horizon of the predictions.
    pub horizon: f64,
    /// Customers predicted.
    pub customers: u64,
    /// Distinct (frequency, recency, age) rows the BG/NBD fit ran on.
    pub distinct_summaries: u64,
    /// Customers without a repeat purchase.
    pub no_repeat: u64,
    /// Customers with age 0, left out of the fit.
    pub age_zero: u64,
    /// Repeat buyers left out of the spend fit (missing, zero or negative monetary).
    pub spend_excluded: u64,
    /// Mean predicted value.
    pub mean_ltv: f64,
}

/// The output schema.
pub fn output_schema(id: &str) -> Arc<Schema> {
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    Arc::new(Schema::new(vec![
        Field::new(id, DataType::Utf8, false),
        f("frequency"),
        f("recency"),
        f("age"),
        f("monetary"),
        f("p_alive"),
        f("expected_purchases"),
        f("expected_spend"),
        f("ltv"),
        Field::new("ltv_decile", DataType::Int32, false),
    ]))
}

use crate::quote::ident as q;

fn f64s(b: &RecordBatch, i: usize) -> Result<Float64Array> {
    let c = datafusion::arrow::compute::cast(b.column(i), &DataType::Float64)
        .map_err(Error::unexpected)?;
    Ok(c.as_primitive::<Float64Type>().clone())
}

/// Checks that the input table exists and holds the columns the step reads; the error is a
/// message and a hint (nearest column names).
pub async fn check_input(
    engine: &Engine,
    cfg: &LtvConfig,
) -> std::result::Result<(), (String, Option<String>)> {
    let table = engine
        .ctx
        .table(cfg.input.as_str())
        .await
        .map_err(|_| (format!("input table `{}` does not exist", cfg.input), None))?;
    let names = crate::engine::sql::column_names(&table);
    for c in [cfg.id.as_str(), "frequency", "recency", "age", "monetary"] {
        if !names.iter().any(|n| n == c) {
            return Err((
                format!("table `{}` has no column `{c}`; an ltv step reads id, frequency, recency, age and monetary", cfg.input),
                Some(crate::hint::nearest_columns(c, &names)),
            ));
        }
    }
    Ok(())
}

/// Runs the step and registers its output table as `name`.
pub async fn run(
    engine: &Engine,
    name: &str,
    cfg: &LtvConfig,
    kept: Option<&LtvModel>,
) -> Result<(LtvModel, usize)> {
    let context = format!("step `{name}`");
    check_input(engine, cfg)
        .await
        .map_err(|(m, hint)| Error::job_msg(Some(name), m, hint))?;
    let t = q(&cfg.input);
    let bad = crate::engine::sql::collect(
        engine,
        &format!(
            "SELECT COUNT(*) FROM {t} WHERE frequency IS NULL OR recency IS NULL OR age IS NULL \
             OR frequency < 0 OR recency < 0 OR age < 0 OR recency > age OR (frequency = 0 AND recency <> 0) \
             OR isnan(CAST(frequency AS DOUBLE)) OR isnan(CAST(recency AS DOUBLE)) OR isnan(CAST(age AS DOUBLE))"
        ),
        &context,
    )
    .await?;
    let n_bad = bad[0].column(0).as_primitive::<Int64Type>().value(0);
    if n_bad > 0 {
        return Err(Error::data(
            context,
            format!("{n_bad} rows of `{}` are not customer summaries (null or negative values, recency after age, or recency without a repeat purchase); fix the summary SQL", cfg.input),
        ));
    }
    let ((bg, distinct), gg) = match kept {
        Some(k) => ((k.bgnbd, k.distinct_summaries as usize), k.spend.clone()),
        None => fit(engine, &context, &t, cfg.penalizer).await?,
    };

    // Predict every customer, in parallel.
    let all = crate::engine::sql::collect(
        engine,
        &format!(
            "SELECT CAST({} AS VARCHAR), frequency, recency, age, monetary FROM {t} ORDER BY 1",
            q(&cfg.id)
        ),
        &context,
    )
    .await?;
    let mut ids: Vec<String> = Vec::new();
    let mut cols: [Vec<f64>; 4] = Default::default();
    for b in &all {
        let idc = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8)
            .map_err(Error::unexpected)?;
        let idc = idc.as_string::<i32>();
        let m = f64s(b, 4)?;
        let (x, tx, a) = (f64s(b, 1)?, f64s(b, 2)?, f64s(b, 3)?);
        for i in 0..b.num_rows() {
            ids.push(idc.value(i).to_string());
            cols[0].push(x.value(i));
            cols[1].push(tx.value(i));
            cols[2].push(a.value(i));
            cols[3].push(if m.is_valid(i) { m.value(i) } else { f64::NAN });
        }
    }
    let n = ids.len();
    let population_spend = gg.population_spend();
    let h = cfg.horizon;
    let preds: Vec<(f64, f64, f64, f64)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let (x, tx, a, m) = (cols[0][i], cols[1][i], cols[2][i], cols[3][i]);
            let p_alive = bg.p_alive(x, tx, a);
            let e = bg.expected_purchases(x, tx, a, h);
            let spend = if x > 0.0 && m > 0.0 && m.is_finite() {
                gg.expected_spend(x, m)
            } else {
                population_spend
            };
            (p_alive, e, spend, e * spend)
        })
        .collect();
    if let Some(i) = preds
        .iter()
        .position(|p| !(p.0.is_finite() && p.1.is_finite() && p.2.is_finite() && p.3.is_finite()))
    {
        return Err(Error::data(
            context,
            format!("the prediction for `{}` is not finite (frequency {}, recency {}, age {}); the fitted parameters are {bg:?}", ids[i], cols[0][i], cols[1][i], cols[2][i]),
        ));
    }
    // Deciles by value, ties by id (rows are in id order).
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| preds[b].3.total_cmp(&preds[a].3).then(a.cmp(&b)));
    let mut decile = vec![0i32; n];
    for (rank, &i) in order.iter().enumerate() {
        decile[i] = (rank * 10 / n.max(1)) as i32 + 1;
    }
    let model = LtvModel {
        bgnbd: bg,
        spend: gg,
        horizon: h,
        customers: n as u64,
        distinct_summaries: distinct as u64,
        no_repeat: cols[0].iter().filter(|x| **x == 0.0).count() as u64,
        age_zero: cols[2].iter().filter(|a| **a == 0.0).count() as u64,
        spend_excluded: (0..n)
            .filter(|&i| cols[0][i] > 0.0 && (cols[3][i].is_nan() || cols[3][i] <= 0.0))
            .count() as u64,
        mean_ltv: preds.iter().map(|p| p.3).sum::<f64>() / n.max(1) as f64,
    };
    let schema = output_schema(&cfg.id);
    let arr = |v: Vec<f64>| Arc::new(Float64Array::from(v)) as ArrayRef;
    let monetary: Vec<f64> = cols[3]
        .iter()
        .map(|m| if m.is_finite() { *m } else { 0.0 })
        .collect();
    let [fx, ftx, fa, _] = cols;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(ids)) as ArrayRef,
            arr(fx),
            arr(ftx),
            arr(fa),
            arr(monetary),
            arr(preds.iter().map(|p| p.0).collect()),
            arr(preds.iter().map(|p| p.1).collect()),
            arr(preds.iter().map(|p| p.2).collect()),
            arr(preds.iter().map(|p| p.3).collect()),
            Arc::new(Int32Array::from(decile)) as ArrayRef,
        ],
    )
    .map_err(Error::unexpected)?;
    engine.register_batches(name, schema, vec![batch]).await?;
    Ok((model, n))
}

/// Fits BG/NBD on the distinct summaries and Gamma-Gamma on the repeat buyers' spend:
/// ((BG/NBD, distinct summaries), Gamma-Gamma).
async fn fit(
    engine: &Engine,
    context: &str,
    t: &str,
    penalizer: f64,
) -> Result<((BgNbd, usize), SpendModel)> {
    let context = context.to_string();
    // Identical summaries grouped with weights: the fit costs the distinct rows.
    let grouped = crate::engine::sql::collect(
        engine,
        &format!("SELECT CAST(frequency AS DOUBLE), CAST(recency AS DOUBLE), CAST(age AS DOUBLE), COUNT(*) FROM {t} WHERE age > 0 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"),
        &context,
    )
    .await?;
    let mut data = Vec::new();
    for b in &grouped {
        let (x, tx, a) = (f64s(b, 0)?, f64s(b, 1)?, f64s(b, 2)?);
        let w = b.column(3).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            data.push(Summary {
                x: x.value(i),
                t_x: tx.value(i),
                t: a.value(i),
                weight: w.value(i) as f64,
            });
        }
    }
    let spend = crate::engine::sql::collect(
        engine,
        &format!("SELECT CAST(frequency AS DOUBLE), CAST(monetary AS DOUBLE), COUNT(*) FROM {t} WHERE frequency > 0 AND age > 0 AND monetary > 0 AND NOT isnan(CAST(monetary AS DOUBLE)) GROUP BY 1, 2 ORDER BY 1, 2"),
        &context,
    )
    .await?;
    let mut gg_data = Vec::new();
    for b in &spend {
        let (x, m) = (f64s(b, 0)?, f64s(b, 1)?);
        let w = b.column(2).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            gg_data.push((x.value(i), m.value(i), w.value(i) as f64));
        }
    }
    let (bg, gg) = tokio::task::spawn_blocking(move || -> std::result::Result<_, String> {
        Ok((
            fit_bgnbd(&data, penalizer).map(|m| (m, data.len()))?,
            SpendModel::fit(&gg_data, penalizer)?,
        ))
    })
    .await
    .map_err(Error::unexpected)?
    .map_err(|e| {
        Error::data(
            context.clone(),
            format!("{e}; check that the summary holds enough customers with repeat purchases"),
        )
    })?;

    Ok((bg, gg))
}

/// The model as summary lines.
pub fn render(m: &LtvModel) -> String {
    let spend = match &m.spend {
        SpendModel::GammaGamma(gg) if gg.p > RIDGE_P => format!(
            "Gamma-Gamma p {:.4e} q {:.4} gamma {:.4e} (spend hardly varies within a customer: each repeat buyer's expected spend is close to their own mean)",
            gg.p, gg.q, gg.gamma
        ),
        SpendModel::GammaGamma(gg) => format!(
            "Gamma-Gamma p {:.4} q {:.4} gamma {:.4}",
            gg.p, gg.q, gg.gamma
        ),
        SpendModel::SharedMean { mean, reason } => format!(
            "spend: every customer gets the shared mean spend {mean:.2} ({reason})"
        ),
    };
    format!(
        "    BG/NBD r {:.4} alpha {:.4} a {:.4} b {:.4} (log-likelihood {:.1}, {} distinct summaries); {spend}\n    {} customers: {} without a repeat purchase, {} of age 0 (not fitted), {} repeat buyers without a usable spend; mean value over {} units {:.2}\n",
        m.bgnbd.r, m.bgnbd.alpha, m.bgnbd.a, m.bgnbd.b, m.bgnbd.log_likelihood, m.distinct_summaries,
        m.customers, m.no_repeat, m.age_zero, m.spend_excluded, m.horizon, m.mean_ltv
    )
}

/// Past this p, Gamma-Gamma sits on its ridge (spend that hardly varies within a customer) and
/// the summary says so.
const RIDGE_P: f64 = 1e3;

/// Checks the step's input has a per-customer summary and registers an empty table of its
/// output schema.
pub async fn plan(
    engine: &Engine,
    step: &Step,
    cfg: &LtvConfig,
) -> std::result::Result<(), Problem> {
    let problem = |message: String, hint: Option<String>| super::problem(step, message, hint);
    check_input(engine, cfg)
        .await
        .map_err(|(m, hint)| problem(m, hint))?;
    let table = MemTable::try_new(output_schema(&cfg.id), vec![vec![]])
        .map_err(|e| problem(e.to_string(), None))?;
    let _ = engine.ctx.deregister_table(step.name.as_str());
    engine
        .ctx
        .register_table(step.name.as_str(), Arc::new(table))
        .map_err(|e| problem(e.to_string(), None))?;
    Ok(())
}

/// Fits the models (or applies the kept ones, as the refit policy decides) and registers the
/// predictions under the step's name.
pub async fn run_step(
    engine: &Engine,
    step: &Step,
    cfg: &LtvConfig,
    inputs: &StepInputs<'_>,
) -> Result<StepResult> {
    let name = step.name.as_str();
    let out = refit::fit_or_apply(
        engine,
        step,
        inputs,
        &cfg.input,
        |_: &LtvModel| {
            ["frequency", "recency", "age", "monetary"]
                .map(String::from)
                .to_vec()
        },
        |kept| async move { run(engine, name, cfg, Some(&kept)).await },
        |_| async move { run(engine, name, cfg, None).await },
    )
    .await?;
    Ok(StepResult {
        ltv: Some(out.model),
        model_use: Some(out.model_use),
        keep: out.keep,
        ..StepResult::new(step, out.rows, Held::Memory(out.rows * 88))
    })
}
