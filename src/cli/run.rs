//! `audiences run`: one date, or each date of a range in order.

use chrono::NaiveDate;
use clap::Args;

use super::out::{out, outln};

use super::{load_job, JobArgs};
use crate::error::{Error, Result};
use crate::job::params::parse_date;

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Output folder (path or URL); overrides the job's `output`.
    #[arg(long, value_name = "URL")]
    output: Option<String>,
    /// First date of a backfill (YYYY-MM-DD); with --to, runs each date in order.
    #[arg(
        long,
        value_name = "YYYY-MM-DD",
        value_parser = parse_date,
        requires = "to",
        conflicts_with = "date"
    )]
    from: Option<NaiveDate>,
    /// Last date of a backfill, included.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date, requires = "from")]
    to: Option<NaiveDate>,
    /// With --from/--to: go on after a failed date instead of stopping at it.
    #[arg(long, requires = "from")]
    keep_going: bool,
    /// Recompute every day of the incremental steps instead of reusing the state.
    #[arg(long)]
    full_refresh: bool,
    /// Fit every model step again, whatever its `refit` policy says.
    #[arg(long)]
    refit: bool,
    /// Compute incremental steps over their whole window from what they read, neither
    /// reading nor writing their per-day state: a cross-check of the state.
    #[arg(long, conflicts_with = "full_refresh")]
    no_state: bool,
}

/// Runs the job (once, or per date) and prints the summary.
pub async fn execute(args: RunArgs) -> Result<()> {
    let job = load_job(&args.job.job)?;
    let mut opts = args.job.options()?;
    opts.output = args.output.clone();
    opts.no_state = args.no_state;
    opts.full_refresh = args.full_refresh;
    opts.refit = args.refit;
    let (Some(from), Some(to)) = (args.from, args.to) else {
        let report = crate::pipeline::run(&job, &opts).await?;
        out!("{}", crate::summary::render(&report));
        return Ok(());
    };
    if to < from {
        return Err(Error::Usage(format!(
            "--to {to} is before --from {from}; a range runs forward in time"
        )));
    }
    let dates: Vec<_> = from.iter_days().take_while(|d| *d <= to).collect();
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    let mut failed = Vec::new();
    for (i, d) in dates.iter().enumerate() {
        opts.date = Some(*d);
        let started = std::time::Instant::now();
        match crate::pipeline::run(&job, &opts).await {
            Ok(report) => {
                out!("{}", crate::summary::render(&report));
                rows.push((
                    d.to_string(),
                    "published".into(),
                    report.run_id.clone(),
                    format!("{:.1} s", report.elapsed.as_secs_f64()),
                ));
            }
            Err(e) => {
                eprintln!("error ({d}): {e}");
                rows.push((
                    d.to_string(),
                    format!("failed (exit {})", e.exit_code().code()),
                    String::new(),
                    format!("{:.1} s", started.elapsed().as_secs_f64()),
                ));
                failed.push((d.to_string(), e.exit_code()));
                if !args.keep_going {
                    for rest in &dates[i + 1..] {
                        rows.push((
                            rest.to_string(),
                            "not run".into(),
                            String::new(),
                            String::new(),
                        ));
                    }
                    break;
                }
            }
        }
    }
    outln!("\nbackfill {} .. {}:", from, to);
    outln!(
        "  {:<12} {:<18} {:<30} {:>9}",
        "date",
        "outcome",
        "run id",
        "time"
    );
    for (d, o, r, t) in &rows {
        outln!("  {d:<12} {o:<18} {r:<30} {t:>9}");
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Dates {
            failed,
            total: dates.len(),
        })
    }
}
