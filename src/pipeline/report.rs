//! The report stage: the run's `report.html`, written before the manifest so it can list it.

use super::Prepared;
use crate::error::Result;
use crate::job::Job;
use crate::segments::Segments;
use crate::steps::StepResult;
use crate::storage::publish::RunFolder;
use crate::storage::write;

/// Gathers the report's numbers and writes the page into the run folder.
pub async fn write(
    job: &Job,
    prepared: &Prepared,
    run: &RunFolder,
    steps: &[StepResult],
    segs: &Segments,
) -> Result<()> {
    let mut report = crate::report::gather(&prepared.engine, job, steps, segs).await?;
    report.job = job.name.clone();
    report.date = run.key.clone();
    report.run_id = run.run_id.clone();
    write::put_bytes(
        &run.dir.child("report.html")?,
        crate::report::render(&report).into_bytes(),
    )
    .await
}
