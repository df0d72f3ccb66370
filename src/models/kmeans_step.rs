//! The `kind = "kmeans"` step: reads its input table, builds the feature matrix, fits k-means
//! on a deterministic sample, assigns every row (in memory, or with the generated SQL
//! expression on the SQL engine), keeps cluster ids stable against the previous run's model,
//! and describes each cluster in words.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, Int32Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::kmeans::{self, KMeansParams, KPoint};
use crate::engine::diagnostics::execution_error;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::features::{self, ColumnSpec, FittedFeature, MissingCount, NullPolicy};

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

/// A SQL identifier in double quotes.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A job error for a model step.
pub fn step_err(step: &str, message: String, hint: Option<String>) -> Error {
    Error::job_msg(Some(step), message, hint)
}

/// Feature columns and transforms of any model step, checked against the input schema.
pub fn feature_specs(
    step: &str,
    input: &str,
    id: &str,
    features: &Option<Vec<String>>,
    transforms: &BTreeMap<String, Vec<String>>,
    schema: &datafusion::common::DFSchema,
) -> Result<Vec<ColumnSpec>> {
    let cfg = FeatureSel {
        input,
        id,
        features,
        transforms,
    };
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    if !names.iter().any(|n| n == cfg.id) {
        return Err(step_err(
            step,
            format!("input `{}` has no id column `{}`", cfg.input, cfg.id),
            Some(format!(
                "nearest columns: {}",
                crate::job::nearest(cfg.id, &names, 3).join(", ")
            )),
        ));
    }
    let columns: Vec<String> = match &cfg.features {
        Some(list) => list.clone(),
        None => schema
            .fields()
            .iter()
            .filter(|f| f.name() != cfg.id && features::is_numeric(f.data_type()))
            .map(|f| f.name().clone())
            .collect(),
    };
    if columns.is_empty() {
        return Err(step_err(
            step,
            format!("input `{}` has no numeric feature column", cfg.input),
            Some("list them with `features = [...]`".into()),
        ));
    }
    let mut specs = Vec::new();
    for c in &columns {
        let Some(field) = schema.fields().iter().find(|f| f.name() == c) else {
            return Err(step_err(
                step,
                format!("feature column `{c}` is not in input `{}`", cfg.input),
                Some(format!(
                    "nearest columns: {}",
                    crate::job::nearest(c, &names, 3).join(", ")
                )),
            ));
        };
        let list = cfg
            .transforms
            .get(c)
            .or_else(|| cfg.transforms.get("*"))
            .cloned()
            .unwrap_or_default();
        let spec = features::parse_transforms(c, &list)
            .map_err(|e| step_err(step, format!("transforms of `{c}`: {e}"), None))?;
        if let ColumnSpec::Numeric { .. } = spec {
            if !features::is_numeric(field.data_type()) {
                return Err(step_err(step, format!("feature column `{c}` is {}, not numeric", field.data_type()), Some(format!("use `transforms = {{ {c} = \"onehot:5\" }}` for a string column, or leave it out"))));
            }
        }
        specs.push(spec);
    }
    for key in cfg.transforms.keys() {
        if key != "*" && !columns.contains(key) {
            return Err(step_err(
                step,
                format!("`transforms` names `{key}`, which is not a feature of this step"),
                None,
            ));
        }
    }
    Ok(specs)
}

/// At most how many rows a model step pulls from a cluster to fit on, and which rows when the
/// input is larger.
#[derive(Debug, Clone)]
pub struct Bound {
    /// The most rows read.
    pub rows: usize,
    /// Hash seed of the sample: the rows whose `md5(id || ':' || seed)` is lowest are taken.
    pub seed: u64,
    /// Ids always included (a lookalike's seed): a SQL query with a text column `__keep`.
    pub keep: Option<String>,
}

/// Reads a model step's input (sorted by id, so the sample, the fit and the output do not
/// depend on scan order) and builds its feature matrix. Shared by every model step.
///
/// With a `bound` (a cluster engine), at most `bound.rows` rows reach this process: all of
/// them when the input is that small, else a deterministic hash sample the cluster picks.
#[allow(clippy::too_many_arguments)]
pub async fn load_matrix(
    engine: &Engine,
    name: &str,
    input: &str,
    id: &str,
    features: &Option<Vec<String>>,
    transforms: &BTreeMap<String, Vec<String>>,
    nulls: NullPolicy,
    bound: Option<&Bound>,
) -> Result<features::FeatureMatrix> {
    let context = format!("step `{name}`");
    let df = engine.ctx.table(input).await.map_err(|_| {
        step_err(
            name,
            format!("input table `{input}` does not exist"),
            Some("a step can read the job's sources and the steps declared before it".into()),
        )
    })?;
    let specs = feature_specs(name, input, id, features, transforms, df.schema())?;
    let mut cols: Vec<String> = vec![id.to_string()];
    for s in &specs {
        let (ColumnSpec::Numeric { column, .. } | ColumnSpec::OneHot { column, .. }) = s;
        if !cols.contains(column) {
            cols.push(column.clone());
        }
    }
    let mut df = df;
    if let Some(b) = bound {
        let total = df
            .clone()
            .count()
            .await
            .map_err(|e| execution_error(&context, e))?;
        if total > b.rows {
            let key = format!("md5(concat(CAST({} AS VARCHAR), ':{}'))", quote(id), b.seed);
            let picked = match &b.keep {
                // Kept ids first (hash order among them), then the rest by hash.
                Some(keep) => format!(
                    "SELECT i.* FROM {} i LEFT JOIN (SELECT DISTINCT __keep FROM ({keep}) kq) kk ON CAST(i.{q} AS VARCHAR) = kk.__keep ORDER BY kk.__keep IS NULL, {key} LIMIT {}",
                    quote(input),
                    b.rows,
                    q = quote(id),
                    key = key.replace(&quote(id), &format!("i.{}", quote(id)))
                ),
                None => format!(
                    "SELECT * FROM {} ORDER BY {key} LIMIT {}",
                    quote(input),
                    b.rows
                ),
            };
            tracing::info!(
                step = name,
                rows = total,
                sample = b.rows,
                "input larger than the fitting bound: the cluster picks a hash sample"
            );
            df = engine
                .ctx
                .sql(&picked)
                .await
                .map_err(|e| Error::internal(format!("{context}: sample query: {e}")))?;
        }
    }
    let batches = df
        .select_columns(&cols.iter().map(String::as_str).collect::<Vec<_>>())
        .and_then(|d| {
            d.sort(vec![
                datafusion::logical_expr::col(quote(id)).sort(true, false)
            ])
        })
        .map_err(|e| Error::internal(format!("{context}: {e}")))?
        .collect()
        .await
        .map_err(|e| execution_error(&context, e))?;
    tokio::task::block_in_place(|| features::build(&batches, id, &specs, nulls)).map_err(|e| {
        let message = match &e.column {
            Some(c) => format!("column `{c}`: {}", e.message),
            None => e.message.clone(),
        };
        step_err(name, message, None)
    })
}

struct FeatureSel<'a> {
    input: &'a str,
    id: &'a str,
    features: &'a Option<Vec<String>>,
    transforms: &'a BTreeMap<String, Vec<String>>,
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
    let context = format!("step `{name}`");
    // On a cluster only the fitting sample reaches this process; the SQL form assigns rows.
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
    let (fit, curve, sample_rows) = tokio::task::block_in_place(|| {
        let xs = if sample.len() == rows {
            m.x.clone()
        } else {
            m.x.select(ndarray::Axis(0), &sample)
        };
        let (k, curve) = match cfg.k {
            KChoice::Fixed(k) => (k, vec![]),
            KChoice::Auto(a, b) => {
                kmeans::choose_k(xs.view(), (a, b.min(rows)), &base, 50_000, 2_000)
            }
        };
        let fit = kmeans::fit(xs.view(), &KMeansParams { k, ..base.clone() });
        (fit, curve, xs.nrows())
    });
    let k = fit.centroids.nrows();

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

    if engine.is_distributed() {
        let sql = format!(
            "SELECT CAST({id} AS VARCHAR) AS {id}, \"cluster\", \"distance\" FROM ({}) a",
            model_base.assignment_sql(&cfg.input),
            id = quote(&cfg.id)
        );
        drop(m);
        let df = engine.ctx.sql(&sql).await.map_err(|e| {
            Error::internal(format!(
                "{context}: generated assignment SQL failed to plan: {e}"
            ))
        })?;
        let n_out = engine
            .write_on_cluster_as(name, df, &context, output_schema(&cfg.id))
            .await?;
        let mut model_base = model_base;
        model_base.rows = n_out;
        let model = profile(engine, name, cfg, model_base).await?;
        return Ok(KMeansOutcome { model, rows: n_out });
    }
    let schema = output_schema(&cfg.id);
    let batches: Vec<RecordBatch> = match cfg.assign {
        AssignMode::Memory => {
            let (labels, dist) =
                tokio::task::block_in_place(|| kmeans::assign(m.x.view(), &fit.centroids));
            let cluster =
                Int32Array::from(labels.iter().map(|&l| ids[l as usize]).collect::<Vec<_>>());
            vec![RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(m.ids.clone()) as ArrayRef,
                    Arc::new(cluster),
                    Arc::new(Float64Array::from(dist)),
                ],
            )
            .map_err(|e| Error::internal(e.to_string()))?]
        }
        AssignMode::Sql => {
            if cfg.nulls == NullPolicy::Drop && m.dropped_rows > 0 {
                tracing::warn!(step = name, "assign = \"sql\" assigns rows with missing values too (imputed); the in-memory path drops them");
            }
            let sql = model_base.assignment_sql(&cfg.input);
            let out = engine.ctx.sql(&sql).await.map_err(|e| {
                Error::internal(format!(
                    "{context}: generated assignment SQL failed to plan: {e}"
                ))
            })?;
            let out = out
                .collect()
                .await
                .map_err(|e| execution_error(&context, e))?;
            out.into_iter()
                .map(|b| {
                    let idc = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8)
                        .map_err(|e| Error::internal(e.to_string()))?;
                    RecordBatch::try_new(
                        schema.clone(),
                        vec![idc, b.column(1).clone(), b.column(2).clone()],
                    )
                    .map_err(|e| Error::internal(e.to_string()))
                })
                .collect::<Result<Vec<_>>>()?
        }
    };
    drop(m);
    let n_out: usize = batches.iter().map(|b| b.num_rows()).sum();
    engine.register_batches(name, schema, batches).await?;

    let model = profile(engine, name, cfg, model_base).await?;
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
    let assignment = super::hungarian::assign(&cost);
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

/// Fills sizes, means in original units, distinguishing features and labels, with one SQL
/// aggregate over the input joined to the assignments.
async fn profile(
    engine: &Engine,
    name: &str,
    cfg: &KMeansConfig,
    mut model: KMeansModel,
) -> Result<KMeansModel> {
    let context = format!("step `{name}` (profiles)");
    let mut cols: Vec<String> = Vec::new();
    for f in &model.features {
        if f.equals.is_none() && !cols.contains(&f.column) {
            cols.push(f.column.clone());
        }
    }
    let avg: Vec<String> = cols
        .iter()
        .map(|c| {
            format!(
                "AVG(CAST(i.{} AS DOUBLE)) AS {}",
                quote(c),
                quote(&format!("m_{c}"))
            )
        })
        .collect();
    let sd: Vec<String> = cols
        .iter()
        .map(|c| {
            format!(
                "STDDEV_POP(CAST({} AS DOUBLE)) AS {}",
                quote(c),
                quote(&format!("s_{c}"))
            )
        })
        .collect();
    let avg_all: Vec<String> = cols
        .iter()
        .map(|c| {
            format!(
                "AVG(CAST({} AS DOUBLE)) AS {}",
                quote(c),
                quote(&format!("m_{c}"))
            )
        })
        .collect();
    let per = format!(
        "SELECT c.cluster, COUNT(*) AS n{} FROM {} c JOIN {} i ON c.{id} = i.{id} GROUP BY c.cluster ORDER BY c.cluster",
        avg.iter().map(|a| format!(", {a}")).collect::<String>(),
        quote(name),
        quote(&cfg.input),
        id = quote(&cfg.id)
    );
    let all = format!(
        "SELECT COUNT(*) AS n{}{} FROM {}",
        avg_all.iter().map(|a| format!(", {a}")).collect::<String>(),
        sd.iter().map(|a| format!(", {a}")).collect::<String>(),
        quote(&cfg.input)
    );
    let run = |q: String| {
        let context = context.clone();
        async move {
            let b = engine
                .ctx
                .sql(&q)
                .await
                .map_err(|e| Error::internal(format!("{context}: {e}")))?
                .collect()
                .await
                .map_err(|e| execution_error(&context, e))?;
            Ok::<_, Error>(b)
        }
    };
    let per = run(per).await?;
    let all = run(all).await?;
    let f64_at = |b: &RecordBatch, col: &str, i: usize| -> f64 {
        b.column_by_name(col)
            .and_then(|c| datafusion::arrow::compute::cast(c, &DataType::Float64).ok())
            .map(|c| {
                let a = c
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .expect("f64")
                    .clone();
                if a.is_null(i) {
                    f64::NAN
                } else {
                    a.value(i)
                }
            })
            .unwrap_or(f64::NAN)
    };
    let total = all.first().map(|b| f64_at(b, "n", 0)).unwrap_or(0.0);
    let pop: BTreeMap<String, (f64, f64)> = cols
        .iter()
        .map(|c| {
            (
                c.clone(),
                all.first()
                    .map(|b| {
                        (
                            f64_at(b, &format!("m_{c}"), 0),
                            f64_at(b, &format!("s_{c}"), 0),
                        )
                    })
                    .unwrap_or((f64::NAN, f64::NAN)),
            )
        })
        .collect();
    for b in &per {
        let cl = b
            .column_by_name("cluster")
            .and_then(|c| c.as_any().downcast_ref::<Int32Array>().cloned());
        let Some(cl) = cl else { continue };
        for i in 0..b.num_rows() {
            let id = cl.value(i);
            let Some(p) = model.clusters.iter_mut().find(|c| c.id == id) else {
                continue;
            };
            p.size = f64_at(b, "n", i) as usize;
            p.share = if total > 0.0 {
                p.size as f64 / total
            } else {
                0.0
            };
            let mut z: Vec<(String, f64)> = Vec::new();
            for c in &cols {
                let mean = f64_at(b, &format!("m_{c}"), i);
                p.means.insert(c.clone(), mean);
                let (pm, ps) = pop[c];
                if ps > 0.0 && mean.is_finite() {
                    z.push((c.clone(), (mean - pm) / ps));
                }
            }
            z.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
            z.truncate(3);
            p.label = z
                .iter()
                .take(2)
                .map(|(f, v)| format!("{} {}", if *v >= 0.0 { "high" } else { "low" }, f))
                .collect::<Vec<_>>()
                .join(" · ");
            if p.label.is_empty() {
                p.label = "typical".into();
            }
            p.top_features = z;
        }
    }
    model.clusters.sort_by_key(|c| c.id);
    Ok(model)
}

/// The profiles as text for the run summary.
pub fn render_profiles(model: &KMeansModel) -> String {
    let mut s = String::new();
    if !model.k_curve.is_empty() {
        let pts: Vec<String> = model
            .k_curve
            .iter()
            .map(|p| format!("k={} {:.3}", p.k, p.silhouette))
            .collect();
        s.push_str(&format!(
            "    k = {} chosen by silhouette ({})\n",
            model.k,
            pts.join(", ")
        ));
    }
    for c in &model.clusters {
        let top: Vec<String> = c
            .top_features
            .iter()
            .map(|(f, z)| format!("{f} {z:+.1}σ"))
            .collect();
        let matched = match c.matched_previous {
            Some((p, d)) => format!("  (was {p}, moved {d:.2})"),
            None => String::new(),
        };
        s.push_str(&format!(
            "    cluster {:>2} {:>9} rows {:>5.1}%  {:<44} [{}]{matched}\n",
            c.id,
            c.size,
            c.share * 100.0,
            c.label,
            top.join(", ")
        ));
    }
    s
}
