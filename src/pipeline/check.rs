//! Static checks: every SQL step, segment and export planned against the sources' real
//! schemas, without running anything. `check` reports them; `run` makes them first.

use super::{register_previous, Plan, Prepared, RunOptions};
use crate::engine::sources::{register_source, SourceInfo};
use crate::engine::{Engine, EngineKind};
use crate::error::{Error, Problem, Result};
use crate::hint::nearest_columns;
use crate::job::{Bindings, Job};
use crate::steps::plan as register_view;

/// Everything `check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Problems, in job order.
    pub problems: Vec<Problem>,
    /// Sources whose schemas were read.
    pub sources: Vec<SourceInfo>,
    /// Steps planned successfully.
    pub steps_ok: Vec<String>,
    /// The exit code of the first source problem that is about the data rather than the job
    /// (a missing source, schema drift, a corrupt file): check exits with it.
    pub data_exit: Option<crate::error::ExitCode>,
}

/// Plans every step against the sources' real schemas without running anything; collects every
/// problem rather than stopping at the first.
pub async fn check(job: &Job, opts: &RunOptions) -> Result<CheckReport> {
    let mut plan = Plan::new(job, opts)?;
    // Planning is the same on every engine: check never needs a cluster.
    plan.engine.kind = Some(EngineKind::Local);
    let mut engine = Engine::new(&plan.engine).await?;
    let mut report = CheckReport::default();
    let mut failed_tables: Vec<String> = Vec::new();
    for s in &job.sources {
        match register_source(&mut engine, job, s, &plan.bindings, None).await {
            Ok(info) => report.sources.push(info),
            Err(e) => {
                failed_tables.push(s.name.clone());
                if !matches!(e, Error::Job(_)) && report.data_exit.is_none() {
                    report.data_exit = Some(e.exit_code());
                }
                report.problems.push(Problem {
                    location: None,
                    step: Some(format!("source {}", s.name)),
                    message: e.to_string(),
                    hint: None,
                });
            }
        }
    }
    plan_after_sources(job, &engine, &plan.bindings, &mut report, failed_tables).await?;
    Ok(report)
}

/// The static checks of a run, before it reads any data: the same as `check` makes after the
/// sources, on a planning copy of the run's session, failing with `check`'s message and code.
pub async fn before_run(job: &Job, prepared: &Prepared) -> Result<()> {
    let planner = prepared.engine.planner().await?;
    let mut report = CheckReport::default();
    plan_after_sources(
        job,
        &planner,
        &prepared.plan.bindings,
        &mut report,
        Vec::new(),
    )
    .await?;
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Job(report.problems))
    }
}

/// Plans the steps, the segments and the exports' columns against the registered sources.
async fn plan_after_sources(
    job: &Job,
    engine: &Engine,
    bindings: &Bindings,
    report: &mut CheckReport,
    mut failed_tables: Vec<String>,
) -> Result<()> {
    for step in &job.steps {
        match register_view(engine, step, bindings).await {
            Ok(()) => {
                report.steps_ok.push(step.name.clone());
                if job.previous.iter().any(|(s, _)| *s == step.name) {
                    register_previous(engine, &step.name, "", None).await?;
                }
            }
            Err(p) => {
                failed_tables.push(step.name.clone());
                // A step reading a table that already failed would only repeat that problem.
                let knock_on = failed_tables[..failed_tables.len() - 1].iter().any(|t| {
                    p.message.contains(&format!("'{t}'"))
                        || p.message.contains(&format!("`{t}`"))
                        || p.message.contains(&format!(" {t} "))
                });
                if !knock_on {
                    report.problems.push(p);
                }
            }
        }
    }
    // Segments: plan each query; check split columns, identities and export columns.
    let id = job.publish.id.as_str();
    let columns_of = crate::engine::sql::column_names;
    for seg in &job.segments {
        let label = format!("segment {}", seg.name);
        match &seg.def {
            crate::job::SegmentDef::Query(sql) => {
                if let Err(p) = crate::engine::sql::plan_sql(engine, &label, sql, bindings).await {
                    if !failed_tables.iter().any(|t| {
                        p.message.contains(&format!("'{t}'"))
                            || p.message.contains(&format!("`{t}`"))
                    }) {
                        report.problems.push(p);
                    }
                }
            }
            crate::job::SegmentDef::PerValue { from, by } => {
                if let Ok(df) = engine.ctx.table(from.as_str()).await {
                    let names = columns_of(&df);
                    for c in [by.as_str(), id] {
                        if !names.iter().any(|n| n == c) {
                            report.problems.push(Problem {
                                location: Some(seg.declared_at.clone()),
                                step: Some(label.clone()),
                                message: format!("table `{from}` has no column `{c}`"),
                                hint: Some(nearest_columns(c, &names)),
                            });
                        }
                    }
                }
            }
        }
    }
    for (i, e) in job.exports.iter().enumerate() {
        let Some(se) = &e.segments else { continue };
        let Some(t) = &se.identities else { continue };
        let Ok(df) = engine.ctx.table(t.as_str()).await else {
            continue;
        };
        let names = columns_of(&df);
        let wanted = se
            .fields
            .iter()
            .map(|f| f.column.clone())
            .chain(se.fields.iter().filter_map(|f| f.app_column.clone()))
            .chain(se.consent.iter().filter_map(|c| match &c.value {
                crate::job::exports::ConsentValue::Column(c) => Some(c.clone()),
                crate::job::exports::ConsentValue::Fixed(_) => None,
            }))
            .chain(se.columns.iter().cloned())
            .chain(std::iter::once(id.to_string()));
        for c in wanted {
            if !names.contains(&c) {
                report.problems.push(Problem {
                    location: Some(e.declared_at.clone()),
                    step: Some(format!("export {} ({})", i + 1, se.format_name())),
                    message: format!("identities table `{t}` has no column `{c}`"),
                    hint: Some(nearest_columns(&c, &names)),
                });
            }
        }
    }
    // The campaign outcome: planned with `$start` and `$end` bound, returning the id and
    // `converted`.
    if let Some(sql) = &job.outcome {
        let mut b = bindings.clone();
        let today = chrono::Utc::now().date_naive();
        b.insert("start".into(), crate::job::ParamValue::Date(today));
        b.insert("end".into(), crate::job::ParamValue::Date(today));
        match crate::engine::sql::plan_sql(engine, "measure", sql, &b).await {
            Ok(df) => {
                let names = columns_of(&df);
                for need in [id, "converted"] {
                    if !names.iter().any(|n| n == need) {
                        report.problems.push(Problem {
                            location: Some(crate::error::Location {
                                file: sql.file.clone(),
                                line: sql.first_line,
                                column: sql.first_column,
                            }),
                            step: Some("measure".into()),
                            message: format!("the outcome SQL returns no column `{need}` (it returns: {})", names.join(", ")),
                            hint: Some("return the id, `converted` (true/false or a count) and optionally `value` per user".into()),
                        });
                    }
                }
            }
            Err(p) => report.problems.push(p),
        }
    }
    Ok(())
}
