//! The `sql` step kind (the default): one query, planned with typed `$name` parameters and held
//! once as a table (see `engine::materialise`).

use super::{StepInputs, StepResult};
use crate::engine::materialise::materialise;
use crate::engine::sql::{plan_sql, tables_read};
use crate::engine::Engine;
use crate::error::{Error, Problem, Result};
use crate::job::{Bindings, Step, StepSql};

/// Plans the query and registers it as a view (for `check` and `sql`: no data is read).
pub async fn plan(
    engine: &Engine,
    step: &Step,
    sql: &StepSql,
    bindings: &Bindings,
) -> std::result::Result<(), Problem> {
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

/// Runs the query once and registers its result under the step's name.
pub async fn run(
    engine: &Engine,
    step: &Step,
    sql: &StepSql,
    inputs: &StepInputs<'_>,
) -> Result<StepResult> {
    let df = plan_sql(engine, &step.name, sql, inputs.bindings)
        .await
        .map_err(|p| Error::Job(vec![p]))?;
    let context = format!(
        "step `{}` (reading {})",
        step.name,
        tables_read(df.logical_plan()).join(", ")
    );
    let (rows, held) =
        materialise(engine, &step.name, df, &context, inputs.spill_threshold).await?;
    Ok(StepResult::new(step, rows, held))
}
