//! `audiences check`.

use clap::Args;

use super::out::outln;

use super::{load_job, JobArgs};
use crate::error::{Error, Result};

/// Arguments of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    job: JobArgs,
}

/// Checks the job; every problem is reported; problems in the job exit 78, a
/// missing source 66 and bad data (schema drift, a corrupt file) 65.
pub async fn execute(args: CheckArgs) -> Result<()> {
    let job = load_job(&args.job.job)?;
    let opts = args.job.options()?;
    let report = crate::pipeline::check(&job, &opts).await?;
    if !report.problems.is_empty() {
        return Err(match report.data_exit {
            Some(code) => Error::Checked {
                problems: report.problems,
                code,
            },
            None => Error::Job(report.problems),
        });
    }
    outln!(
        "{}: ok ({} sources, {} steps planned, {} exports)",
        job.path.display(),
        report.sources.len(),
        report.steps_ok.len(),
        job.exports.len()
    );
    for s in &report.sources {
        outln!(
            "  source {:<20} {:>6} files {:>12} bytes  {}{}",
            s.name,
            s.files,
            s.bytes,
            s.url,
            if s.empty { "  (empty)" } else { "" }
        );
    }
    Ok(())
}
