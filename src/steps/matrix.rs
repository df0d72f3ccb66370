//! The feature matrix of a model step (kmeans, lookalike): its columns and transforms checked
//! against the input's schema, then the input read (sorted by id; on a cluster, a bounded
//! sample) and turned into a matrix.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;

use crate::engine::diagnostics::execution_error;
use crate::engine::Engine;
use crate::error::{Error, Problem, Result};
use crate::features::{self, ColumnSpec, NullPolicy};
use crate::job::Step;
use crate::quote::ident as quote;

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
            Some(crate::hint::nearest_columns(cfg.id, &names)),
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
                Some(crate::hint::nearest_columns(c, &names)),
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

/// The input columns a matrix reads: the id, then each column of `specs` and of `fitted`
/// once, in order.
fn read_columns<'a>(
    id: &'a str,
    specs: &'a [ColumnSpec],
    fitted: &'a [features::FittedFeature],
) -> Vec<&'a str> {
    let mut cols: Vec<&str> = vec![id];
    let spec_columns = specs.iter().map(|s| {
        let (ColumnSpec::Numeric { column, .. } | ColumnSpec::OneHot { column, .. }) = s;
        column.as_str()
    });
    for c in spec_columns.chain(fitted.iter().map(|f| f.column.as_str())) {
        if !cols.contains(&c) {
            cols.push(c);
        }
    }
    cols
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
    let cols: Vec<String> = read_columns(id, &specs, &[])
        .into_iter()
        .map(str::to_string)
        .collect();
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
    let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
    let batches = read_sorted(df, &cols, id, &context).await?;
    tokio::task::block_in_place(|| features::build(&batches, id, &specs, nulls))
        .map_err(|e| feature_error(name, e, ""))
}

/// `columns` of a model step's input, sorted by id so the sample, the fit and the output do
/// not depend on scan order.
async fn read_sorted(
    df: datafusion::dataframe::DataFrame,
    columns: &[&str],
    id: &str,
    context: &str,
) -> Result<Vec<datafusion::arrow::array::RecordBatch>> {
    df.select_columns(columns)
        .and_then(|d| {
            d.sort(vec![
                datafusion::logical_expr::col(quote(id)).sort(true, false)
            ])
        })
        .map_err(|e| execution_error(context, e))?
        .collect()
        .await
        .map_err(|e| execution_error(context, e))
}

/// A feature-building error as the step's job error; `then` says what the step was doing.
fn feature_error(name: &str, e: features::FeatureError, then: &str) -> Error {
    let message = match &e.column {
        Some(c) => format!("column `{c}`: {}", e.message),
        None => e.message.clone(),
    };
    step_err(name, format!("{message}{then}"), None)
}

struct FeatureSel<'a> {
    input: &'a str,
    id: &'a str,
    features: &'a Option<Vec<String>>,
    transforms: &'a BTreeMap<String, Vec<String>>,
}

/// For `check`: validates a model step's input and features against the real schema and
/// registers an empty table of its output schema, so later steps can be planned against it.
pub async fn plan_model(
    engine: &Engine,
    step: &Step,
    input: &str,
    id: &str,
    features: &Option<Vec<String>>,
    transforms: &std::collections::BTreeMap<String, Vec<String>>,
    schema: SchemaRef,
) -> std::result::Result<(), Problem> {
    let problem = |message: String, hint: Option<String>| super::problem(step, message, hint);
    let df = engine.ctx.table(input).await.map_err(|_| {
        problem(
            format!("input table `{input}` does not exist"),
            Some("a step can read the job's sources and the steps declared before it".into()),
        )
    })?;
    feature_specs(&step.name, input, id, features, transforms, df.schema()).map_err(
        |e| match e {
            Error::Job(mut ps) if !ps.is_empty() => {
                let mut p = ps.remove(0);
                p.location = Some(step.declared_at.clone());
                p
            }
            other => problem(other.to_string(), None),
        },
    )?;
    let table =
        MemTable::try_new(schema, vec![vec![]]).map_err(|e| problem(e.to_string(), None))?;
    engine
        .ctx
        .register_table(step.name.as_str(), Arc::new(table))
        .map_err(|e| problem(e.to_string(), None))?;
    Ok(())
}

/// The feature matrix of `input` under a kept model's fitted transform, rows sorted by id as
/// at the fit (see [`features::apply`]).
pub async fn apply_matrix(
    engine: &Engine,
    name: &str,
    input: &str,
    id: &str,
    fitted: &[features::FittedFeature],
    nulls: NullPolicy,
) -> Result<features::FeatureMatrix> {
    let context = format!("step `{name}`");
    let df = engine
        .ctx
        .table(input)
        .await
        .map_err(|_| step_err(name, format!("input table `{input}` does not exist"), None))?;
    let cols = read_columns(id, &[], fitted);
    let batches = read_sorted(df, &cols, id, &context).await?;
    tokio::task::block_in_place(|| features::apply(&batches, id, fitted, nulls)).map_err(|e| {
        feature_error(
            name,
            e,
            " (applying the kept model; `--refit` fits a new one)",
        )
    })
}

/// Two matrices of one read of `input`: its own, with the transform fitted there, and the one
/// of a fitted transform applied to it (a propensity backtest scores the rows its model
/// learns from next). Rows sorted by id in both.
#[allow(clippy::too_many_arguments)]
pub async fn load_and_apply(
    engine: &Engine,
    name: &str,
    input: &str,
    id: &str,
    features: &Option<Vec<String>>,
    transforms: &BTreeMap<String, Vec<String>>,
    nulls: NullPolicy,
    fitted: &[features::FittedFeature],
) -> Result<(features::FeatureMatrix, features::FeatureMatrix)> {
    let context = format!("step `{name}`");
    let df = engine
        .ctx
        .table(input)
        .await
        .map_err(|_| step_err(name, format!("input table `{input}` does not exist"), None))?;
    let specs = feature_specs(name, input, id, features, transforms, df.schema())?;
    let cols = read_columns(id, &specs, fitted);
    let batches = read_sorted(df, &cols, id, &context).await?;
    tokio::task::block_in_place(|| {
        let own =
            features::build(&batches, id, &specs, nulls).map_err(|e| feature_error(name, e, ""))?;
        let applied =
            features::apply(&batches, id, fitted, nulls).map_err(|e| feature_error(name, e, ""))?;
        Ok((own, applied))
    })
}

/// The source columns of the numeric features, in feature order, each once.
pub fn numeric_columns(features: &[features::FittedFeature]) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    for f in features {
        if f.equals.is_none() && !cols.contains(&f.column) {
            cols.push(f.column.clone());
        }
    }
    cols
}
