//! The `kind = "kmeans"` step: reads its input table, builds the feature matrix, fits k-means
//! on a deterministic sample, assigns every row (in memory, or with the generated SQL
//! expression on the SQL engine), keeps cluster ids stable against the previous run's model,
//! and describes each cluster in words.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::matrix::{apply_matrix, load_matrix, numeric_columns, plan_model, step_err, Bound};
use super::refit;
use super::{StepInputs, StepResult};
use crate::engine::materialise::Held;
use crate::engine::Engine;
use crate::error::Problem;
use crate::error::{Error, Result};
use crate::features::{self, FittedFeature, MissingCount, NullPolicy};
use crate::job::Step;
use crate::ml::kmeans::{self, KMeansParams, KPoint};
use crate::quote::ident as quote;
use crate::storage::Location;

mod profile;

pub use crate::job::models::{AssignMode, KChoice, KMeansConfig};
pub use profile::render_profiles;

/// One cluster as people read it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterProfile {
    /// Stable cluster id.
    pub id: i32,
    /// Rows in the cluster.
    pub size: usize,
    /// Share of all rows.
    pub share: f64,
    /// Mean of every feature column in original units.
    pub means: BTreeMap<String, f64>,
    /// The three features that most distinguish it: (feature, z-score of the cluster mean
    /// against the whole population).
    pub top_features: Vec<(String, f64)>,
    /// A short label, e.g. "high amount_90d · low recency_days".
    pub label: String,
    /// Centroid in model (scaled) units.
    pub centroid: Vec<f64>,
    /// The previous run's cluster it continues, and the centroid distance.
    pub matched_previous: Option<(i32, f64)>,
}

/// The saved model: enough to assign new rows, to match ids next run, and to explain clusters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KMeansModel {
    /// Model kind (`kmeans`).
    pub kind: String,
    /// Step name.
    pub step: String,
    /// Id column.
    pub id: String,
    /// The fitted feature transform.
    pub features: Vec<FittedFeature>,
    /// Number of clusters.
    pub k: usize,
    /// The automatic-k curve (empty when k was fixed).
    pub k_curve: Vec<KPoint>,
    /// Inertia on the fitting sample.
    pub inertia: f64,
    /// Lloyd iterations.
    pub iterations: usize,
    /// Rows in the input.
    pub rows: usize,
    /// Rows of the fitting sample.
    pub sample_rows: usize,
    /// Missing values per column.
    pub missing: Vec<MissingCount>,
    /// Rows dropped by the null policy.
    pub dropped_rows: usize,
    /// The distinct points of the fitting sample, when there were no more than k (k lowered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct_points: Option<usize>,
    /// The clusters.
    pub clusters: Vec<ClusterProfile>,
}

impl KMeansModel {
    /// Centroids in cluster order, with their stable ids.
    pub fn centroids(&self) -> (Vec<i32>, Array2<f64>) {
        let k = self.clusters.len();
        let d = self.features.len();
        let mut c = Array2::zeros((k, d));
        for (i, cl) in self.clusters.iter().enumerate() {
            for (j, v) in cl.centroid.iter().enumerate() {
                c[[i, j]] = *v;
            }
        }
        (self.clusters.iter().map(|c| c.id).collect(), c)
    }

    /// The SQL query that assigns every row of the input table, equal to the in-memory
    /// assignment: transform and scale each feature, squared distance to each centroid in
    /// feature order, the first nearest wins.
    pub fn assignment_sql(&self, input: &str) -> String {
        let id = quote(&self.id);
        let z: Vec<String> = self
            .features
            .iter()
            .enumerate()
            .map(|(j, f)| format!("{} AS z{j}", f.sql()))
            .collect();
        let (ids, c) = self.centroids();
        let d: Vec<String> = (0..c.nrows())
            .map(|i| {
                let terms: Vec<String> = (0..c.ncols())
                    .map(|j| {
                        let cv = features::lit(c[[i, j]]);
                        format!("(z{j} - {cv}) * (z{j} - {cv})")
                    })
                    .collect();
                format!("{} AS d{i}", terms.join(" + "))
            })
            .collect();
        let ds: Vec<String> = (0..c.nrows()).map(|i| format!("d{i}")).collect();
        let cases: Vec<String> = ids
            .iter()
            .enumerate()
            .map(|(i, cid)| format!("WHEN d{i} = m THEN {cid}"))
            .collect();
        let least = if ds.len() == 1 {
            ds[0].clone()
        } else {
            format!("least({})", ds.join(", "))
        };
        format!(
            "SELECT {id}, CAST(CASE {} END AS INT) AS cluster, sqrt(m) AS distance FROM (\n  SELECT {id}, {}, {least} AS m FROM (\n    SELECT {id}, {} FROM (\n      SELECT {id}, {} FROM {}\n    ) z\n  ) dd\n) mm",
            cases.join(" "),
            ds.join(", "),
            d.join(",\n      "),
            z.join(",\n        "),
            quote(input)
        )
    }
}

/// The output table's schema: `(id, cluster, distance)`.
pub fn output_schema(id: &str) -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(id, DataType::Utf8, true),
        Field::new("cluster", DataType::Int32, false),
        Field::new("distance", DataType::Float64, false),
    ]))
}

/// What the step produced, besides its table.
#[derive(Debug, Clone)]
pub struct KMeansOutcome {
    /// The model, with profiles.
    pub model: KMeansModel,
    /// Rows assigned.
    pub rows: usize,
}

/// Runs the step and registers its output table `(id, cluster, distance)` under `name`.
pub async fn run(
    engine: &Engine,
    name: &str,
    cfg: &KMeansConfig,
    previous: Option<&KMeansModel>,
) -> Result<KMeansOutcome> {
    // On a cluster only the fitting sample reaches this process; the SQL form assigns rows.
    let started = std::time::Instant::now();
    let bound = engine.is_distributed().then_some(Bound {
        rows: cfg.sample_rows,
        seed: cfg.seed,
        keep: None,
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
    let rows = m.x.nrows();
    tracing::debug!(
        step = name,
        ms = started.elapsed().as_millis() as u64,
        "feature matrix loaded"
    );
    let (k_min, _) = match cfg.k {
        KChoice::Fixed(k) => (k, k),
        KChoice::Auto(a, b) => (a, b),
    };
    if k_min > rows {
        return Err(step_err(
            name,
            format!(
                "k = {k_min} is larger than the {rows} rows of `{}`",
                cfg.input
            ),
            Some("lower k, or check the input step".into()),
        ));
    }
    let base = KMeansParams {
        k: k_min,
        max_iter: cfg.max_iter,
        tol: cfg.tol,
        n_init: cfg.n_init,
        seed: cfg.seed,
    };
    let sample = kmeans::sample_indices(rows, cfg.sample_rows, cfg.seed);
    let (fit, curve, sample_rows, few_points) = tokio::task::block_in_place(|| {
        let xs = if sample.len() == rows {
            m.x.clone()
        } else {
            m.x.select(ndarray::Axis(0), &sample)
        };
        // More clusters than distinct points would leave some empty: k is lowered to the
        // distinct points of the fitting sample, and the summary says so.
        let k_max = match cfg.k {
            KChoice::Fixed(k) => k,
            KChoice::Auto(_, b) => b,
        };
        let distinct = kmeans::distinct_rows(xs.view(), k_max + 1);
        let (k, curve) = match cfg.k {
            KChoice::Fixed(k) => (k.min(distinct), vec![]),
            KChoice::Auto(a, _) if distinct <= a => (distinct, vec![]),
            KChoice::Auto(a, b) => kmeans::choose_k(
                xs.view(),
                (a, b.min(rows).min(distinct)),
                &base,
                50_000,
                2_000,
            ),
        };
        let fit = kmeans::fit(xs.view(), &KMeansParams { k, ..base.clone() });
        (
            fit,
            curve,
            xs.nrows(),
            (distinct < k_max).then_some(distinct),
        )
    });
    let k = fit.centroids.nrows();
    tracing::debug!(
        step = name,
        ms = started.elapsed().as_millis() as u64,
        iterations = fit.iterations,
        "fitted"
    );

    // Stable ids: match to the previous run's centroids (Hungarian on centroid distance).
    let (ids, matches) = stable_ids(&m.features, &fit.centroids, previous);

    let model_base = KMeansModel {
        kind: "kmeans".into(),
        step: name.to_string(),
        id: cfg.id.clone(),
        features: m.features.clone(),
        k,
        k_curve: curve,
        inertia: fit.inertia,
        iterations: fit.iterations,
        rows,
        sample_rows,
        missing: m.missing.clone(),
        dropped_rows: m.dropped_rows,
        distinct_points: few_points,
        clusters: (0..k)
            .map(|i| ClusterProfile {
                id: ids[i],
                size: 0,
                share: 0.0,
                means: BTreeMap::new(),
                top_features: vec![],
                label: String::new(),
                centroid: fit.centroids.row(i).to_vec(),
                matched_previous: matches[i],
            })
            .collect(),
    };

    if cfg.nulls == NullPolicy::Drop && m.dropped_rows > 0 && cfg.assign == AssignMode::Sql {
        tracing::warn!(step = name, "assign = \"sql\" assigns rows with missing values too (imputed); the in-memory path drops them");
    }
    let matrix = if !engine.is_distributed() && cfg.assign == AssignMode::Memory {
        Some((m.ids, m.x))
    } else {
        drop(m);
        None
    };
    assign_and_profile(engine, name, cfg, model_base, matrix).await
}

/// Applies a kept model to today's input: the same assignment as on the night it was fitted,
/// with its transform, centroids and ids; sizes and profiles are of today's rows.
pub async fn apply(
    engine: &Engine,
    name: &str,
    cfg: &KMeansConfig,
    model: KMeansModel,
) -> Result<KMeansOutcome> {
    let matrix = if !engine.is_distributed() && cfg.assign == AssignMode::Memory {
        let m = apply_matrix(
            engine,
            name,
            &cfg.input,
            &cfg.id,
            &model.features,
            cfg.nulls,
        )
        .await?;
        Some((m.ids, m.x))
    } else {
        None
    };
    assign_and_profile(engine, name, cfg, model, matrix).await
}

/// Assigns every row to the model's clusters (in memory from `matrix` when given, else with
/// the generated SQL, on the cluster when the engine is one), registers the output table and
/// fills the profiles.
async fn assign_and_profile(
    engine: &Engine,
    name: &str,
    cfg: &KMeansConfig,
    mut model: KMeansModel,
    matrix: Option<(StringArray, Array2<f64>)>,
) -> Result<KMeansOutcome> {
    let context = format!("step `{name}`");
    let schema = output_schema(&cfg.id);
    if engine.is_distributed() {
        let sql = format!(
            "SELECT CAST({id} AS VARCHAR) AS {id}, \"cluster\", \"distance\" FROM ({}) a",
            model.assignment_sql(&cfg.input),
            id = quote(&cfg.id)
        );
        let df = engine.ctx.sql(&sql).await.map_err(|e| {
            Error::internal(format!(
                "{context}: generated assignment SQL failed to plan: {e}"
            ))
        })?;
        let n_out = engine
            .write_on_cluster_as(name, df, &context, schema)
            .await?;
        model.rows = n_out;
        let model = profile::profile(engine, name, cfg, model).await?;
        return Ok(KMeansOutcome { model, rows: n_out });
    }
    let batches: Vec<RecordBatch> = match matrix {
        Some((row_ids, x)) => {
            let (ids, centroids) = model.centroids();
            let (labels, dist) =
                tokio::task::block_in_place(|| kmeans::assign(x.view(), &centroids));
            drop(x);
            let cluster =
                Int32Array::from(labels.iter().map(|&l| ids[l as usize]).collect::<Vec<_>>());
            vec![RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(row_ids) as ArrayRef,
                    Arc::new(cluster),
                    Arc::new(Float64Array::from(dist)),
                ],
            )
            .map_err(Error::unexpected)?]
        }
        None => {
            let sql = model.assignment_sql(&cfg.input);
            let out = crate::engine::sql::collect(
                engine,
                &sql,
                &format!("{context}: generated assignment SQL"),
            )
            .await?;
            out.into_iter()
                .map(|b| {
                    let idc = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8)
                        .map_err(Error::unexpected)?;
                    RecordBatch::try_new(
                        schema.clone(),
                        vec![idc, b.column(1).clone(), b.column(2).clone()],
                    )
                    .map_err(Error::unexpected)
                })
                .collect::<Result<Vec<_>>>()?
        }
    };
    let n_out: usize = batches.iter().map(|b| b.num_rows()).sum();
    // Rows come in id order: declared, so readers sorting by id (exports) need no sort.
    crate::engine::ordered::register_in_order(
        engine,
        name,
        schema,
        batches,
        std::slice::from_ref(&cfg.id),
    )
    .await?;
    let model = profile::profile(engine, name, cfg, model).await?;
    Ok(KMeansOutcome { model, rows: n_out })
}

/// Matches new centroids to the previous model's in the new model's units; unmatched clusters
/// (no predecessor within half the median distance between new centroids) get fresh ids.
fn stable_ids(
    features: &[FittedFeature],
    centroids: &Array2<f64>,
    previous: Option<&KMeansModel>,
) -> (Vec<i32>, Vec<Option<(i32, f64)>>) {
    let k = centroids.nrows();
    let fresh: Vec<i32> = (0..k as i32).collect();
    let Some(prev) = previous else {
        return (fresh, vec![None; k]);
    };
    let same_features = prev.features.len() == features.len()
        && prev
            .features
            .iter()
            .zip(features)
            .all(|(a, b)| a.name == b.name);
    if !same_features {
        tracing::warn!("the previous model has other features; cluster ids start afresh");
        return (fresh, vec![None; k]);
    }
    // Previous centroids back to pre-scaling units, then into this model's scaling.
    let (prev_ids, pc) = prev.centroids();
    let mut pc_now = pc.clone();
    for (j, (fp, fnew)) in prev.features.iter().zip(features).enumerate() {
        for i in 0..pc.nrows() {
            pc_now[[i, j]] = (pc[[i, j]] * fp.scale + fp.center - fnew.center) / fnew.scale;
        }
    }
    let dist = |a: ndarray::ArrayView1<f64>, b: ndarray::ArrayView1<f64>| {
        a.iter()
            .zip(b.iter())
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt()
    };
    let cost: Vec<Vec<f64>> = (0..k)
        .map(|i| {
            (0..pc_now.nrows())
                .map(|j| dist(centroids.row(i), pc_now.row(j)))
                .collect()
        })
        .collect();
    let mut between: Vec<f64> = Vec::new();
    for i in 0..k {
        for j in i + 1..k {
            between.push(dist(centroids.row(i), centroids.row(j)));
        }
    }
    between.sort_by(|a, b| a.total_cmp(b));
    let threshold = between
        .get(between.len() / 2)
        .copied()
        .unwrap_or(f64::INFINITY)
        / 2.0;
    let assignment = crate::ml::hungarian::assign(&cost);
    let mut next = prev_ids.iter().copied().max().unwrap_or(-1) + 1;
    let mut ids = Vec::with_capacity(k);
    let mut matches = Vec::with_capacity(k);
    for (i, a) in assignment.iter().enumerate() {
        match a {
            Some(j) if cost[i][*j] <= threshold => {
                ids.push(prev_ids[*j]);
                matches.push(Some((prev_ids[*j], cost[i][*j])));
            }
            _ => {
                ids.push(next);
                matches.push(None);
                next += 1;
            }
        }
    }
    (ids, matches)
}

/// Checks the step's input and features against the real schema and registers an empty table
/// of its output schema.
pub async fn plan(
    engine: &Engine,
    step: &Step,
    cfg: &KMeansConfig,
) -> std::result::Result<(), Problem> {
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

/// Runs the step: fits (matching its clusters to the kept model's ids) or applies the kept
/// model, as the step's refit policy decides.
pub async fn run_step(
    engine: &Engine,
    step: &Step,
    cfg: &KMeansConfig,
    inputs: &StepInputs<'_>,
) -> Result<StepResult> {
    let name = step.name.as_str();
    let out = refit::fit_or_apply(
        engine,
        step,
        inputs,
        &cfg.input,
        |m: &KMeansModel| numeric_columns(&m.features),
        |kept| async move {
            let o = apply(engine, name, cfg, kept).await?;
            Ok((o.model, o.rows))
        },
        |kept| async move {
            let previous = match kept {
                Some(k) => Some(k),
                None => previous_model(inputs.state, name).await,
            };
            let o = run(engine, name, cfg, previous.as_ref()).await?;
            Ok((o.model, o.rows))
        },
    )
    .await?;
    Ok(StepResult {
        model: Some(out.model),
        model_use: Some(out.model_use),
        keep: out.keep,
        ..StepResult::new(step, out.rows, Held::Memory(out.rows * 24))
    })
}

/// A bare model, as versions before refit schedules kept it, still gives its cluster ids to
/// the next fit (an unreadable one is ignored: the clusters are then numbered afresh).
async fn previous_model(state: &Location, step: &str) -> Option<KMeansModel> {
    use object_store::ObjectStoreExt;
    let loc = state.child(&format!("models/{step}.json")).ok()?;
    let bytes = loc.store.get(&loc.path).await.ok()?.bytes().await.ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(step, path = %loc.display(), "ignoring unreadable previous model: {e}");
            None
        }
    }
}
