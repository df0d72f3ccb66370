//! SQL steps: planning with typed `$name` parameters, and materialising each result once so
//! that later steps reading it many times never recompute it (DataFusion inlines views and
//! CTEs). Small results stay in memory; a result larger than the spill threshold streams into
//! a local Parquet file instead.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::metadata::ScalarAndMetadata;
use datafusion::common::ParamValues;
use datafusion::datasource::MemTable;
use datafusion::prelude::{DataFrame, ParquetReadOptions};
use futures::StreamExt;

use super::diagnostics::{execution_error, sql_problem};
use super::Engine;
use crate::error::{Error, Problem, Result};
use crate::job::{Bindings, Step, StepKind, StepSql};

/// What running a step produced.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// Step name.
    pub name: String,
    /// Rows in the result.
    pub rows: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Where the result is held.
    pub held: Held,
    /// The fitted model, for k-means steps.
    pub model: Option<crate::models::kmeans_step::KMeansModel>,
    /// The fitted model and its quality report, for lookalike steps.
    pub lookalike: Option<crate::models::lookalike_step::LookalikeModel>,
    /// The fitted models, for ltv steps.
    pub ltv: Option<crate::models::ltv_step::LtvModel>,
    /// What an incremental step computed and reused.
    pub incremental: Option<super::incremental::IncrementalReport>,
}

/// Where a step's result lives during the run.
#[derive(Debug, Clone)]
pub enum Held {
    /// In memory, this many bytes.
    Memory(usize),
    /// Spilled to a local Parquet file of this many bytes.
    Spilled(PathBuf, u64),
    /// Written by the cluster's executors under the run's work folder.
    Cluster,
}

pub(crate) fn param_values(bindings: &Bindings) -> ParamValues {
    let map: HashMap<String, ScalarAndMetadata> = bindings
        .iter()
        .map(|(k, v)| (k.clone(), ScalarAndMetadata::new(v.to_scalar(), None)))
        .collect();
    ParamValues::Map(map)
}

/// Plans a SQL step against the tables registered so far, binding its parameters; checks
/// types too, but reads no data.
pub async fn plan_sql(
    engine: &Engine,
    step: &str,
    sql: &StepSql,
    bindings: &Bindings,
) -> std::result::Result<DataFrame, Problem> {
    let text = sql.text.trim().trim_end_matches(';');
    let df = engine
        .ctx
        .sql(text)
        .await
        .map_err(|e| sql_problem(step, sql, &e))?;
    let df = df.with_param_values(param_values(bindings)).map_err(|e| {
        let mut p = sql_problem(step, sql, &e);
        if p.message.contains("No value found for placeholder") {
            let names: Vec<String> = bindings.keys().map(|k| format!("${k}")).collect();
            p.hint = Some(format!(
                "declare it under [params]; this job's params: {}",
                names.join(", ")
            ));
        }
        p
    })?;
    // Running the analyzer and optimizer catches type errors without touching data.
    df.clone()
        .into_optimized_plan()
        .map_err(|e| sql_problem(step, sql, &e))?;
    Ok(df)
}

/// Plans a step and registers it as a view (for `check` and `sql`: no data is read).
pub async fn register_view(
    engine: &Engine,
    step: &Step,
    bindings: &Bindings,
) -> std::result::Result<(), Problem> {
    match &step.kind {
        StepKind::KMeans(cfg) => {
            let schema = crate::models::kmeans_step::output_schema(&cfg.id);
            register_model_view(
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
        StepKind::Ltv(cfg) => {
            let problem = |message: String| Problem {
                location: Some(step.declared_at.clone()),
                step: Some(step.name.clone()),
                message,
                hint: None,
            };
            crate::models::ltv_step::check_input(engine, cfg)
                .await
                .map_err(|(m, hint)| Problem { hint, ..problem(m) })?;
            let schema = crate::models::ltv_step::output_schema(&cfg.id);
            let table =
                MemTable::try_new(schema, vec![vec![]]).map_err(|e| problem(e.to_string()))?;
            let _ = engine.ctx.deregister_table(step.name.as_str());
            engine
                .ctx
                .register_table(step.name.as_str(), Arc::new(table))
                .map_err(|e| problem(e.to_string()))?;
            Ok(())
        }
        StepKind::Lookalike(cfg) => {
            let problem = |message: String| Problem {
                location: Some(step.declared_at.clone()),
                step: Some(step.name.clone()),
                message,
                hint: None,
            };
            let seed_sql = match &cfg.seed {
                crate::models::lookalike_step::SeedSource::Table(t) => {
                    format!("SELECT * FROM \"{t}\"")
                }
                crate::models::lookalike_step::SeedSource::Query(q) => q.clone(),
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
            let schema = crate::models::lookalike_step::output_schema(&cfg.id);
            register_model_view(
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
        StepKind::Sql(sql) => {
            let df = plan_sql(engine, &step.name, sql, bindings).await?;
            engine
                .ctx
                .register_table(step.name.as_str(), df.into_view())
                .map_err(|e| Problem {
                    location: None,
                    step: Some(step.name.clone()),
                    message: e.to_string(),
                    hint: None,
                })?;
            Ok(())
        }
    }
}

/// For `check`: validates a model step's input and features against the real schema and
/// registers an empty table of its output schema, so later steps can be planned against it.
async fn register_model_view(
    engine: &Engine,
    step: &Step,
    input: &str,
    id: &str,
    features: &Option<Vec<String>>,
    transforms: &std::collections::BTreeMap<String, Vec<String>>,
    schema: SchemaRef,
) -> std::result::Result<(), Problem> {
    let problem = |message: String, hint: Option<String>| Problem {
        location: Some(step.declared_at.clone()),
        step: Some(step.name.clone()),
        message,
        hint,
    };
    let df = engine.ctx.table(input).await.map_err(|_| {
        problem(
            format!("input table `{input}` does not exist"),
            Some("a step can read the job's sources and the steps declared before it".into()),
        )
    })?;
    crate::models::kmeans_step::feature_specs(
        &step.name,
        input,
        id,
        features,
        transforms,
        df.schema(),
    )
    .map_err(|e| match e {
        Error::Job(mut ps) if !ps.is_empty() => {
            let mut p = ps.remove(0);
            p.location = Some(step.declared_at.clone());
            p
        }
        other => problem(other.to_string(), None),
    })?;
    let table =
        MemTable::try_new(schema, vec![vec![]]).map_err(|e| problem(e.to_string(), None))?;
    engine
        .ctx
        .register_table(step.name.as_str(), Arc::new(table))
        .map_err(|e| problem(e.to_string(), None))?;
    Ok(())
}

/// Runs a step and registers its materialised result under the step's name.
pub async fn run_step(
    engine: &Engine,
    step: &Step,
    bindings: &Bindings,
    spill_threshold: usize,
    previous: Option<&crate::models::kmeans_step::KMeansModel>,
) -> Result<StepResult> {
    let start = Instant::now();
    let sql = match &step.kind {
        StepKind::Sql(sql) => sql,
        StepKind::KMeans(cfg) => {
            let out = crate::models::kmeans_step::run(engine, &step.name, cfg, previous).await?;
            return Ok(StepResult {
                name: step.name.clone(),
                rows: out.rows,
                elapsed: start.elapsed(),
                held: Held::Memory(out.rows * 24),
                model: Some(out.model),
                lookalike: None,
                ltv: None,
                incremental: None,
            });
        }
        StepKind::Ltv(cfg) => {
            let (model, rows) = crate::models::ltv_step::run(engine, &step.name, cfg).await?;
            return Ok(StepResult {
                name: step.name.clone(),
                rows,
                elapsed: start.elapsed(),
                held: Held::Memory(rows * 88),
                model: None,
                lookalike: None,
                ltv: Some(model),
                incremental: None,
            });
        }
        StepKind::Lookalike(cfg) => {
            let (model, rows) = crate::models::lookalike_step::run(engine, &step.name, cfg).await?;
            return Ok(StepResult {
                name: step.name.clone(),
                rows,
                elapsed: start.elapsed(),
                held: Held::Memory(rows * 40),
                model: None,
                lookalike: Some(model),
                ltv: None,
                incremental: None,
            });
        }
    };
    let df = plan_sql(engine, &step.name, sql, bindings)
        .await
        .map_err(|p| Error::Job(vec![p]))?;
    let context = format!(
        "step `{}` (reading {})",
        step.name,
        tables_read(df.logical_plan()).join(", ")
    );
    let (rows, held) = materialise(engine, &step.name, df, &context, spill_threshold).await?;
    Ok(StepResult {
        name: step.name.clone(),
        rows,
        elapsed: start.elapsed(),
        held,
        model: None,
        lookalike: None,
        ltv: None,
        incremental: None,
    })
}

/// Runs `df` once and registers its result as table `name`: in memory, or in a local Parquet
/// file once it grows past `spill_threshold` bytes, so later readers never recompute it.
pub async fn materialise(
    engine: &Engine,
    name: &str,
    df: DataFrame,
    context: &str,
    spill_threshold: usize,
) -> Result<(usize, Held)> {
    if engine.is_distributed() {
        let rows = engine.write_on_cluster(name, df, context).await?;
        return Ok((rows, Held::Cluster));
    }
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let mut stream = df
        .execute_stream()
        .await
        .map_err(|e| execution_error(context, e))?;

    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut bytes = 0usize;
    let mut rows = 0usize;
    let mut spill: Option<(
        PathBuf,
        datafusion::parquet::arrow::ArrowWriter<std::fs::File>,
    )> = None;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| execution_error(context, e))?;
        if batch.num_rows() == 0 {
            continue;
        }
        rows += batch.num_rows();
        match &mut spill {
            Some((_, w)) => w
                .write(&batch)
                .map_err(|e| Error::internal(format!("{context}: spilling failed: {e}")))?,
            None => {
                bytes += batch.get_array_memory_size();
                batches.push(batch);
                if bytes > spill_threshold {
                    let path = engine.scratch_file(name)?;
                    let file = std::fs::File::create(&path).map_err(|e| {
                        Error::internal(format!(
                            "{context}: cannot create spill file {}: {e}",
                            path.display()
                        ))
                    })?;
                    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(
                        file,
                        schema.clone(),
                        None,
                    )
                    .map_err(|e| Error::internal(format!("{context}: {e}")))?;
                    for b in batches.drain(..) {
                        w.write(&b).map_err(|e| {
                            Error::internal(format!("{context}: spilling failed: {e}"))
                        })?;
                    }
                    tracing::info!(table = %name, path = %path.display(), "result larger than the spill threshold; held in a local Parquet file");
                    spill = Some((path, w));
                }
            }
        }
    }
    let _ = engine.ctx.deregister_table(name);
    let held = match spill {
        Some((path, w)) => {
            w.close()
                .map_err(|e| Error::internal(format!("{context}: spilling failed: {e}")))?;
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            engine
                .ctx
                .register_parquet(
                    name,
                    path.to_string_lossy().as_ref(),
                    ParquetReadOptions::default(),
                )
                .await
                .map_err(|e| Error::internal(format!("{context}: {e}")))?;
            Held::Spilled(path, size)
        }
        None => {
            engine.register_batches(name, schema, batches).await?;
            Held::Memory(bytes)
        }
    };
    Ok((rows, held))
}

/// The tables a plan scans, sorted and de-duplicated (named in data errors).
pub fn tables_read(plan: &datafusion::logical_expr::LogicalPlan) -> Vec<String> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut names = Vec::new();
    let _ = plan.apply(|node| {
        if let datafusion::logical_expr::LogicalPlan::TableScan(scan) = node {
            names.push(scan.table_name.table().to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names.sort();
    names.dedup();
    names
}
