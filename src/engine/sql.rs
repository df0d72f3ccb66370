//! The one SQL helper: typed `$name` parameters, planning a query (types checked, no data
//! read), the tables a plan reads, and running a query into batches, each with DataFusion's
//! errors turned into problems and exit codes in one place (`diagnostics`).

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::metadata::ScalarAndMetadata;
use datafusion::common::ParamValues;
use datafusion::prelude::DataFrame;

use super::diagnostics::{execution_error, sql_problem};
use super::Engine;
use crate::error::{Problem, Result};
use crate::job::{Bindings, StepSql};
pub use crate::quote::{ident, literal};
use crate::storage::write::Batches;
use futures::StreamExt;

/// The bound params as DataFusion's typed placeholder values.
pub fn param_values(bindings: &Bindings) -> ParamValues {
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

/// Executes `df` as a stream of batches whose errors are mapped like every other query's (for
/// the writers in `storage::write`).
pub async fn execute(df: DataFrame, context: &str) -> Result<Batches> {
    let stream = df
        .execute_stream()
        .await
        .map_err(|e| execution_error(context, e))?;
    let context = context.to_string();
    Ok(stream
        .map(move |b| b.map_err(|e| execution_error(&context, e)))
        .boxed())
}

/// The column names of a query's result, in order.
pub fn column_names(df: &DataFrame) -> Vec<String> {
    df.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// Runs a query of the engine's own (no params) into batches; `context` names it in errors.
pub async fn collect(engine: &Engine, sql: &str, context: &str) -> Result<Vec<RecordBatch>> {
    engine
        .ctx
        .sql(sql)
        .await
        .map_err(|e| execution_error(context, e))?
        .collect()
        .await
        .map_err(|e| execution_error(context, e))
}

/// Runs a query with the job's params bound into batches; `context` names it in errors.
pub async fn collect_bound(
    engine: &Engine,
    sql: &str,
    bindings: &crate::job::Bindings,
    context: &str,
) -> Result<Vec<RecordBatch>> {
    engine
        .ctx
        .sql(sql)
        .await
        .and_then(|df| df.with_param_values(param_values(bindings)))
        .map_err(|e| execution_error(context, e))?
        .collect()
        .await
        .map_err(|e| execution_error(context, e))
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
