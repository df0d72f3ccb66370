//! The campaign's outcome from the brand's own data: the job's `[measure]` outcome SQL over a
//! window `[$start, $end)`, read once per window. `measure` takes the campaign's window as its
//! results and the window before it as the CUPED covariate; `plan` takes past windows as the
//! baseline.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::datasource::MemTable;
use datafusion::scalar::ScalarValue;

use crate::engine::diagnostics::{execution_error, sql_problem};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::job::{Bindings, Job, ParamValue};
use crate::quote::ident as q;

/// Evaluates the outcome SQL over `[start, end)` and registers the rows as `name`
/// (id, converted 0/1, value).
pub async fn register_window(
    engine: &Engine,
    job: &Job,
    bindings: &Bindings,
    start: NaiveDate,
    end: NaiveDate,
    name: &str,
) -> Result<()> {
    let sql = job.outcome.as_ref().ok_or_else(|| {
        Error::Usage(
            "the job declares no campaign outcome: add [measure] outcome = \"outcome.sql\" (or give --results)".into(),
        )
    })?;
    let label = format!("[measure] outcome ({start} .. {end})");
    let mut values: HashMap<String, ScalarValue> = bindings
        .iter()
        .map(|(k, v)| (k.clone(), v.to_scalar()))
        .collect();
    values.insert("start".into(), ParamValue::Date(start).to_scalar());
    values.insert("end".into(), ParamValue::Date(end).to_scalar());
    let df = engine
        .ctx
        .sql(sql.text.trim().trim_end_matches(';'))
        .await
        .and_then(|df| df.with_param_values(values))
        .map_err(|e| Error::Job(vec![sql_problem("measure", sql, &e)]))?;
    let cols: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let id = job.publish.id.as_str();
    for need in [id, "converted"] {
        if !cols.iter().any(|c| c == need) {
            return Err(Error::job(crate::error::Problem {
                location: Some(crate::error::Location {
                    file: sql.file.clone(),
                    line: sql.first_line,
                    column: sql.first_column,
                }),
                step: Some("measure".into()),
                message: format!(
                    "the outcome SQL returns no column `{need}` (it returns: {}); it returns the id, `converted` and optionally `value` per user",
                    cols.join(", ")
                ),
                hint: None,
            }));
        }
    }
    let value = if cols.iter().any(|c| c == "value") {
        "SUM(COALESCE(CAST(value AS DOUBLE), 0))"
    } else {
        "0.0"
    };
    let tmp = format!("{name}_raw");
    engine
        .ctx
        .register_table(tmp.as_str(), df.into_view())
        .map_err(Error::unexpected)?;
    let rows = engine
        .ctx
        .sql(&format!(
            "SELECT CAST({id} AS VARCHAR) AS {id}, MAX(CASE WHEN CAST(converted AS BIGINT) > 0 THEN 1 ELSE 0 END) AS converted, {value} AS value FROM {t} WHERE {id} IS NOT NULL GROUP BY CAST({id} AS VARCHAR)",
            id = q(id),
            t = q(&tmp)
        ))
        .await
        .map_err(|e| Error::data(&label, e.to_string()))?;
    let schema = Arc::new(rows.schema().as_arrow().clone());
    let batches = rows
        .collect()
        .await
        .map_err(|e| execution_error(&label, e))?;
    let _ = engine.ctx.deregister_table(tmp.as_str());
    let table = MemTable::try_new(schema, vec![batches]).map_err(Error::unexpected)?;
    engine
        .ctx
        .register_table(name, Arc::new(table))
        .map_err(Error::unexpected)?;
    Ok(())
}

/// Registers `results` for `measure` from the job's own data: the outcome over the campaign's
/// window, with the same outcome over the window of equal length before it as `pre` (the
/// CUPED covariate).
pub async fn register_results(
    engine: &Engine,
    job: &Job,
    bindings: &Bindings,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<()> {
    let before = start - (end - start);
    register_window(engine, job, bindings, start, end, "outcome_during").await?;
    register_window(engine, job, bindings, before, start, "outcome_before").await?;
    let id = q(&job.publish.id);
    let df = engine
        .ctx
        .sql(&format!(
            "SELECT COALESCE(d.{id}, b.{id}) AS {id}, COALESCE(d.converted, 0) AS converted,
                    COALESCE(d.value, 0.0) AS value, CAST(COALESCE(b.converted, 0) AS DOUBLE) AS pre
             FROM outcome_during d FULL OUTER JOIN outcome_before b ON d.{id} = b.{id}"
        ))
        .await
        .map_err(|e| Error::data("[measure] outcome", e.to_string()))?;
    engine
        .ctx
        .register_table("results", df.into_view())
        .map_err(Error::unexpected)?;
    Ok(())
}
