//! `audiences run`.

use clap::Args;

use super::{load_job, JobArgs};
use crate::error::Result;

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Output folder (path or URL); overrides the job's `output`.
    #[arg(long, value_name = "URL")]
    output: Option<String>,
}

/// Runs the job and prints the summary.
pub async fn execute(args: RunArgs) -> Result<()> {
    let job = load_job(&args.job.job)?;
    let mut opts = args.job.options()?;
    opts.output = args.output;
    let report = crate::pipeline::run(&job, &opts).await?;
    print!("{}", crate::summary::render(&report));
    Ok(())
}
