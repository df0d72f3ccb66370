//! `audiences sql`: a query prompt over a job's sources and steps.

use clap::Args;

use super::out::outln;
use datafusion::arrow::util::pretty::pretty_format_batches;

use super::{load_job, JobArgs};
use crate::engine::diagnostics::execution_error;
use crate::error::{Error, Result};

/// Arguments of `sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Run this one query and exit, instead of opening a prompt.
    #[arg(short = 'e', long = "execute", value_name = "QUERY")]
    query: Option<String>,
}

async fn run_query(
    ctx: &datafusion::prelude::SessionContext,
    q: &str,
    bindings: &crate::job::Bindings,
) -> Result<String> {
    let sql = crate::job::StepSql {
        text: q.to_string(),
        file: "<query>".into(),
        first_line: 1,
        first_column: 1,
    };
    let df = ctx.sql(q.trim().trim_end_matches(';')).await.map_err(|e| {
        Error::Job(vec![crate::engine::diagnostics::sql_problem(
            "query", &sql, &e,
        )])
    })?;
    let values: std::collections::HashMap<String, datafusion::scalar::ScalarValue> = bindings
        .iter()
        .map(|(k, v)| (k.clone(), v.to_scalar()))
        .collect();
    let df = if q.contains('$') {
        df.with_param_values(values).map_err(|e| {
            Error::Job(vec![crate::engine::diagnostics::sql_problem(
                "query", &sql, &e,
            )])
        })?
    } else {
        df
    };
    let batches = df
        .collect()
        .await
        .map_err(|e| execution_error("query", e))?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let table = pretty_format_batches(&batches).map_err(Error::unexpected)?;
    Ok(format!("{table}\n{rows} row(s)"))
}

/// Registers sources and steps (as views: a step is computed only when a query reads it).
pub async fn execute(args: SqlArgs) -> Result<()> {
    let job = load_job(&args.job.job)?;
    let opts = args.job.options()?;
    let prepared = crate::pipeline::prepare(&job, &opts).await?;
    let done = session(&job, &args, &prepared).await;
    // On a cluster, what was written under the work folder is not kept.
    prepared.engine.clean_work().await;
    done
}

async fn session(
    job: &crate::job::Job,
    args: &SqlArgs,
    prepared: &crate::pipeline::Prepared,
) -> Result<()> {
    for step in &job.steps {
        crate::steps::plan(&prepared.engine, step, &prepared.plan.bindings)
            .await
            .map_err(|p| Error::Job(vec![p]))?;
        if job.previous.iter().any(|(s, _)| *s == step.name) {
            crate::pipeline::register_previous(&prepared.engine, &step.name, "", None).await?;
        }
    }
    let ctx = &prepared.engine.ctx;
    if let Some(q) = &args.query {
        outln!("{}", run_query(ctx, q, &prepared.plan.bindings).await?);
        return Ok(());
    }
    let mut rl = rustyline::DefaultEditor::new()
        .map_err(|e| Error::internal(format!("cannot open the prompt: {e}")))?;
    outln!(
        "tables: {}  (end a query with ;  quit with \\q or Ctrl-D)",
        job.table_names().join(", ")
    );
    let mut buf = String::new();
    loop {
        let prompt = if buf.is_empty() {
            "audiences> "
        } else {
            "      ...> "
        };
        match rl.readline(prompt) {
            Ok(line) => {
                if buf.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
                    break;
                }
                buf.push_str(&line);
                buf.push('\n');
                if line.trim_end().ends_with(';') {
                    let _ = rl.add_history_entry(buf.trim());
                    match run_query(ctx, &buf, &prepared.plan.bindings).await {
                        Ok(out) => outln!("{out}"),
                        Err(e) => eprintln!("error: {e}"),
                    }
                    buf.clear();
                }
            }
            Err(rustyline::error::ReadlineError::Interrupted) => buf.clear(),
            Err(_) => break,
        }
    }
    Ok(())
}
