//! `audiences preview`.

use clap::Args;

use super::out::outln;
use datafusion::arrow::util::pretty::pretty_format_batches;

use super::{load_job, JobArgs};
use crate::engine::diagnostics::execution_error;
use crate::error::{Error, Result};

/// Arguments of `preview`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    job: JobArgs,
    /// The step to show.
    #[arg(long, value_name = "NAME")]
    step: String,
    /// Rows to show.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

/// Runs up to the step and prints its schema and first rows.
pub async fn execute(args: PreviewArgs) -> Result<()> {
    let job = load_job(&args.job.job)?;
    let opts = args.job.options()?;
    let prepared = crate::pipeline::prepare(&job, &opts).await?;
    let shown = show(&job, &prepared, &opts, &args).await;
    // On a cluster, the step results written under the work folder are not kept.
    prepared.engine.clean_work().await;
    shown
}

async fn show(
    job: &crate::job::Job,
    prepared: &crate::pipeline::Prepared,
    opts: &crate::pipeline::RunOptions,
    args: &PreviewArgs,
) -> Result<()> {
    let results =
        crate::pipeline::run_steps(job, prepared, opts, Some(&args.step), "preview").await?;
    let rows = results.last().map(|r| r.rows).unwrap_or(0);
    let df = prepared
        .engine
        .ctx
        .table(args.step.as_str())
        .await
        .map_err(Error::unexpected)?;
    outln!("step `{}`: {rows} rows", args.step);
    outln!("schema:");
    for f in df.schema().fields() {
        outln!(
            "  {:<32} {}{}",
            f.name(),
            f.data_type(),
            if f.is_nullable() { "" } else { " not null" }
        );
    }
    let batches = df
        .limit(0, Some(args.limit))
        .map_err(Error::unexpected)?
        .collect()
        .await
        .map_err(|e| execution_error(&format!("step `{}`", args.step), e))?;
    outln!(
        "{}",
        pretty_format_batches(&batches).map_err(Error::unexpected)?
    );
    Ok(())
}
