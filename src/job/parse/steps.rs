//! The `[[step]]` entries: names, kinds, each kind's configuration, and sql steps' SQL and
//! incremental setting.

use toml::Spanned;

use super::models::{kmeans_config, lookalike_config, ltv_config, propensity_config};
use super::{valid_table_name, Ctx};
use crate::job::models::Refit;
use crate::job::spec::{ParamType, StepSpec};
use crate::job::{Incremental, Merge, MergeOp, ParamDecl, Source, Step, StepKind, WindowDays};

/// Checks every step in run order.
pub(super) fn check(
    ctx: &mut Ctx,
    raw: &[Spanned<StepSpec>],
    sources: &[Source],
    params: &[ParamDecl],
) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut table_names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    for st in raw {
        let spec = st.get_ref();
        let offset = st.span().start;
        let sname = spec.name.as_str();
        if !valid_table_name(sname) {
            ctx.problem(offset, Some(sname), format!("step name `{sname}` must be letters, digits and `_`, not starting with a digit (it is a SQL table name)"), None);
        }
        if table_names.iter().any(|t| t == sname) {
            ctx.problem(
                offset,
                Some(sname),
                format!("a source or step named `{sname}` already exists"),
                Some("give each step a unique name".into()),
            );
        }
        table_names.push(sname.to_string());
        let kind_name = spec.kind.as_deref().unwrap_or("sql");
        let kind = match kind_name {
            "sql" => sql_step(ctx, offset, spec),
            "kmeans" => kmeans_config(spec).map(StepKind::KMeans).map_err(Some),
            "lookalike" => lookalike_config(spec)
                .map(StepKind::Lookalike)
                .map_err(Some),
            "ltv" => ltv_config(spec).map(StepKind::Ltv).map_err(Some),
            "propensity" => propensity_config(spec)
                .and_then(|mut c| {
                    c.upstream = upstream(&c.input, &steps, params)?;
                    Ok(StepKind::Propensity(c))
                })
                .map_err(Some),
            other => {
                ctx.problem(
                    offset,
                    Some(sname),
                    format!("unknown step kind `{other}`"),
                    Some(format!(
                        "known kinds: {}",
                        crate::job::keys::STEP_KINDS.join(", ")
                    )),
                );
                Err(None)
            }
        };
        let incremental = match kind_name {
            "sql" => incremental(ctx, offset, spec, sources, &steps, params),
            _ => None,
        };
        let refit = refit(ctx, offset, spec);
        match kind {
            Ok(kind) => steps.push(Step {
                name: sname.to_string(),
                kind,
                declared_at: ctx.at(offset),
                rows: (spec.min_rows, spec.max_rows),
                incremental,
                transient: spec.transient,
                refit,
            }),
            Err(Some(message)) => ctx.problem(offset, Some(sname), message, None),
            Err(None) => {}
        }
    }
    steps
}

/// The sql steps a propensity step computes again for an earlier date: its input and every
/// step the input reads, directly or through other steps, in job order. Each must be a sql
/// step, and one of them must use `$as_of` (else an earlier date gives the same features).
fn upstream(
    input: &str,
    steps: &[Step],
    params: &[ParamDecl],
) -> std::result::Result<Vec<Step>, String> {
    if !params
        .iter()
        .any(|p| p.name == "as_of" && p.ty == ParamType::Date)
    {
        return Err("a propensity step computes its input as of earlier dates: the job needs a date param `as_of` (add `as_of = { type = \"date\" }` under [params])".into());
    }
    let Some(at) = steps.iter().position(|s| s.name == input) else {
        return Err(format!(
            "input `{input}` is not a step declared before this one: a propensity step computes its input again as of earlier dates, so the input must be a sql step (a source has one date only)"
        ));
    };
    let mut wanted = vec![input.to_string()];
    let mut picked = Vec::new();
    for s in steps[..=at].iter().rev() {
        if !wanted.contains(&s.name) {
            continue;
        }
        let StepKind::Sql(sql) = &s.kind else {
            return Err(format!("input `{input}` reads step `{}`, a model step: its result cannot be computed again as of an earlier date; compute the features from sql steps only", s.name));
        };
        // A query that does not parse reads nothing here; the SQL checks report it.
        for t in sql.tables().unwrap_or_default() {
            if !wanted.contains(&t) {
                wanted.push(t);
            }
        }
        picked.push(s.clone());
    }
    picked.reverse();
    if !picked.iter().any(|s| match &s.kind {
        StepKind::Sql(q) => q.text.contains("$as_of"),
        _ => false,
    }) {
        return Err(format!("input `{input}` does not use $as_of (nor does any step it reads): its features cannot be computed as of an earlier date, so there is nothing to train on; window its SQL by $as_of"));
    }
    Ok(picked)
}

/// The checked `refit` and `refit_drift` of a model step (the key table keeps them off sql
/// steps).
fn refit(ctx: &mut Ctx, offset: usize, spec: &StepSpec) -> Refit {
    let mut out = Refit::default();
    if let Some(text) = &spec.refit {
        match Refit::parse_every(text) {
            Ok(every) => out.every_days = every,
            Err(m) => ctx.problem(offset, Some(&spec.name), m, None),
        }
    }
    if let Some(text) = &spec.refit_drift {
        match super::parse_share(text) {
            Ok(v) if v > 0.0 => out.drift = Some(v),
            Ok(_) => ctx.problem(
                offset,
                Some(&spec.name),
                format!("refit_drift = \"{text}\" must be above 0%"),
                None,
            ),
            Err(m) => ctx.problem(offset, Some(&spec.name), format!("refit_drift: {m}"), None),
        }
    }
    out
}

/// The SQL of a sql step; `Err(None)` when the problem is already reported.
fn sql_step(ctx: &mut Ctx, offset: usize, spec: &StepSpec) -> Result<StepKind, Option<String>> {
    let sql = match (&spec.sql, &spec.query) {
        (Some(f), None) => ctx.sql_file(offset, &spec.name, f).ok_or(None)?,
        (None, Some(q)) => ctx.inline_sql(offset, q),
        (Some(_), Some(_)) => {
            return Err(Some(
                "a step has either `sql` (a file) or `query` (inline), not both".into(),
            ))
        }
        (None, None) => {
            return Err(Some(
                "a sql step needs `sql = \"path/to/file.sql\"` or `query = \"SELECT ...\"`".into(),
            ))
        }
    };
    Ok(StepKind::Sql(sql))
}

/// The checked `merge_by` and `merge` of an incremental step: `Some(None)` without them,
/// `None` when a problem was reported.
fn merge(
    ctx: &mut Ctx,
    offset: usize,
    sname: &str,
    inc: &crate::job::spec::IncrementalSpec,
    day: &str,
) -> Option<Option<Merge>> {
    let Some(by) = &inc.merge_by else {
        if !inc.merge.is_empty() {
            ctx.problem(
                offset,
                Some(sname),
                "incremental.merge needs incremental.merge_by: the key columns of the merged rows"
                    .into(),
                Some("e.g. merge_by = [\"user_id\"]".into()),
            );
            return None;
        }
        return Some(None);
    };
    if by.is_empty() || inc.merge.is_empty() {
        ctx.problem(offset, Some(sname), "a merged incremental step needs key columns in merge_by and at least one merged column in merge".into(), None);
        return None;
    }
    let mut columns = Vec::new();
    let mut ok = true;
    for (col, text) in &inc.merge {
        if by.contains(col) || col == day {
            ctx.problem(offset, Some(sname), format!("incremental.merge names `{col}`, a key or the day column; only the other columns merge"), None);
            ok = false;
            continue;
        }
        match MergeOp::parse(text) {
            Ok(op) => columns.push((col.clone(), op)),
            Err(m) => {
                ctx.problem(
                    offset,
                    Some(sname),
                    format!("incremental.merge.{col}: {m}"),
                    None,
                );
                ok = false;
            }
        }
    }
    // "first by C" continues from merged rows only when C keeps the smallest value (min), and
    // "last by C" when it keeps the largest (max).
    for (col, op) in &columns {
        let (by_col, needs, word) = match op {
            MergeOp::FirstBy(c) => (c, MergeOp::Min, "min"),
            MergeOp::LastBy(c) => (c, MergeOp::Max, "max"),
            _ => continue,
        };
        if !columns.iter().any(|(c, o)| c == by_col && *o == needs) {
            ctx.problem(offset, Some(sname), format!("incremental.merge.{col} is ordered by `{by_col}`, which must itself merge by {word}"), Some(format!("add {by_col} = \"{word}\" to merge")));
            ok = false;
        }
    }
    ok.then(|| {
        Some(Merge {
            by: by.clone(),
            columns,
        })
    })
}

/// The window length of an `incremental.days` value, when it is valid.
fn window_days(
    ctx: &mut Ctx,
    offset: usize,
    sname: &str,
    days: &toml::Value,
    params: &[ParamDecl],
) -> Option<WindowDays> {
    match days {
        toml::Value::Integer(n) if *n > 0 => Some(WindowDays::Fixed(*n)),
        toml::Value::String(p)
            if params
                .iter()
                .any(|d| &d.name == p && d.ty == ParamType::Int) =>
        {
            Some(WindowDays::Param(p.clone()))
        }
        other => {
            ctx.problem(offset, Some(sname), format!("incremental.days `{other}` is neither a positive number nor the name of an int param"), None);
            None
        }
    }
}

/// An incremental step over the per-day rows of an earlier incremental step: each of its
/// days is computed from that step's day, so a window of windows costs a day a night too. Over
/// a plain step (no days kept) it runs as a plain step every time, merged when it merges.
fn over_step(
    ctx: &mut Ctx,
    offset: usize,
    spec: &StepSpec,
    inc: &crate::job::spec::IncrementalSpec,
    up: &Step,
    params: &[ParamDecl],
) -> Option<Incremental> {
    let sname = spec.name.as_str();
    let Some(up_inc) = up.incremental.as_ref() else {
        // A plain step keeps no days: the step merges its whole result every run.
        let days = window_days(ctx, offset, sname, &inc.days, params)?;
        let column = inc.column.clone().unwrap_or_else(|| "dt".to_string());
        let merge = merge(ctx, offset, sname, inc, &column)?;
        return Some(Incremental {
            source: up.name.clone(),
            days,
            column,
            merge,
        });
    };
    if up_inc.merge.is_some() {
        ctx.problem(
            offset,
            Some(sname),
            format!(
                "incremental.source `{}` is a merged step: its rows are one per key, not per day",
                up.name
            ),
            Some("name the step whose per-day rows it merges, or a source".into()),
        );
        return None;
    }
    let days = window_days(ctx, offset, sname, &inc.days, params)?;
    if let (WindowDays::Fixed(n), WindowDays::Fixed(m)) = (&days, &up_inc.days) {
        if n > m {
            ctx.problem(
                offset,
                Some(sname),
                format!(
                    "incremental.days {n} is longer than the {m} days step `{}` keeps",
                    up.name
                ),
                Some(format!(
                    "use at most {m} days, or keep more days in `{}`",
                    up.name
                )),
            );
            return None;
        }
    }
    if let Some(c) = &inc.column {
        if c != &up_inc.column {
            ctx.problem(
                offset,
                Some(sname),
                format!(
                    "incremental.column `{c}`: step `{}` keeps its days by `{}`",
                    up.name, up_inc.column
                ),
                None,
            );
            return None;
        }
    }
    let column = up_inc.column.clone();
    let merge = merge(ctx, offset, sname, inc, &column)?;
    Some(Incremental {
        source: up.name.clone(),
        days,
        column,
        merge,
    })
}

/// The checked `incremental` setting of a sql step.
fn incremental(
    ctx: &mut Ctx,
    offset: usize,
    spec: &StepSpec,
    sources: &[Source],
    earlier: &[Step],
    params: &[ParamDecl],
) -> Option<Incremental> {
    let inc = spec.incremental.as_ref()?;
    let sname = spec.name.as_str();
    if let Some(up) = earlier.iter().find(|s| s.name == inc.source) {
        return over_step(ctx, offset, spec, inc, up, params);
    }
    let src = sources.iter().find(|s| s.name == inc.source);
    let column = inc
        .column
        .clone()
        .or_else(|| src.and_then(|s| s.partitions.first().cloned()));
    let days = window_days(ctx, offset, sname, &inc.days, params);
    match (src, column, days) {
        (None, _, _) => {
            ctx.problem(
                offset,
                Some(sname),
                format!(
                    "incremental.source `{}` is neither a source nor an earlier incremental step of this job",
                    inc.source
                ),
                None,
            );
            None
        }
        (Some(s), Some(column), Some(days)) if s.partitions.contains(&column) => {
            let merge = merge(ctx, offset, sname, inc, &column)?;
            Some(Incremental {
                source: inc.source.clone(),
                days,
                column,
                merge,
            })
        }
        (Some(s), _, Some(_)) => {
            ctx.problem(offset, Some(sname), format!("incremental: source `{}` has no day partition column to narrow (partitions: {:?})", s.name, s.partitions), Some("declare the source's day folders, e.g. partitions = [\"dt\"], and name it in incremental.column if it is not the first".into()));
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::job::{Job, MergeOp, StepKind, WindowDays};

    fn parse(steps: &str) -> Result<Job, String> {
        let text = format!("name = \"x\"\n[params]\nwindow = {{ type = \"int\", default = 7 }}\n[sources]\nev = {{ url = \"ev/\", format = \"parquet\", partitions = [\"dt\"] }}\n{steps}");
        Job::parse(&text, "x.toml", Path::new("/tmp")).map_err(|e| e.to_string())
    }

    #[test]
    fn sql_steps_and_their_window() {
        let job = parse("[[step]]\nname = \"a\"\nquery = \"SELECT 1\"\nincremental = { source = \"ev\", days = \"window\" }\n").unwrap();
        let StepKind::Sql(sql) = &job.steps[0].kind else {
            panic!()
        };
        assert_eq!((sql.first_line, sql.first_column), (8, 10));
        let inc = job.steps[0].incremental.as_ref().unwrap();
        assert!(matches!(&inc.days, WindowDays::Param(p) if p == "window"));
        assert_eq!(inc.column, "dt");
    }

    #[test]
    fn incremental_steps_over_earlier_steps() {
        let daily = "[[step]]\nname = \"d\"\nquery = \"SELECT 1\"\nincremental = { source = \"ev\", days = 30 }\n";
        let over = |days: u32, merge: &str| {
            format!("{daily}[[step]]\nname = \"w\"\nquery = \"SELECT 1\"\nincremental = {{ source = \"d\", days = {days}{merge} }}\n")
        };
        let job = parse(&over(7, ", merge_by = [\"k\"], merge = { n = \"sum\" }")).unwrap();
        let inc = job.steps[1].incremental.as_ref().unwrap();
        assert_eq!((inc.source.as_str(), inc.column.as_str()), ("d", "dt"));
        assert!(inc.merge.is_some());
        let msg = parse(&over(31, "")).unwrap_err();
        assert!(
            msg.contains("longer than the 30 days step `d` keeps"),
            "{msg}"
        );
        // A merged step keeps one row per key: nothing per day to read.
        let merged = over(7, ", merge_by = [\"k\"], merge = { n = \"sum\" }");
        let msg = parse(&format!("{merged}[[step]]\nname = \"z\"\nquery = \"SELECT 1\"\nincremental = {{ source = \"w\", days = 7 }}\n")).unwrap_err();
        assert!(msg.contains("`w` is a merged step"), "{msg}");
        // Over a plain step it is a plain step every run (merged when it merges).
        let job = parse("[[step]]\nname = \"p\"\nquery = \"SELECT 1\"\n[[step]]\nname = \"w\"\nquery = \"SELECT 1\"\nincremental = { source = \"p\", days = 7 }\n").unwrap();
        assert_eq!(job.steps[1].incremental.as_ref().unwrap().source, "p");
    }

    #[test]
    fn merged_incremental_steps() {
        let step = |merge: &str| {
            format!("[[step]]\nname = \"a\"\nquery = \"SELECT 1\"\nincremental = {{ source = \"ev\", days = 7{merge} }}\n")
        };
        let job = parse(&step(", merge_by = [\"u\"], merge = { n = \"sum\", first = \"min\", v = \"first by first\" }")).unwrap();
        let m = job.steps[0]
            .incremental
            .as_ref()
            .unwrap()
            .merge
            .clone()
            .unwrap();
        assert_eq!(m.by, vec!["u".to_string()]);
        assert!(m
            .columns
            .contains(&("v".into(), MergeOp::FirstBy("first".into()))));
        let msg = parse(&step(", merge = { n = \"sum\" }")).unwrap_err();
        assert!(msg.contains("needs incremental.merge_by"), "{msg}");
        let msg = parse(&step(
            ", merge_by = [\"u\"], merge = { n = \"avg\", dt = \"max\", v = \"last by n\" }",
        ))
        .unwrap_err();
        assert!(msg.contains("merge `avg` must be sum, min, max"), "{msg}");
        assert!(msg.contains("names `dt`, a key or the day column"), "{msg}");
        let msg = parse(&step(
            ", merge_by = [\"u\"], merge = { n = \"sum\", v = \"last by n\" }",
        ))
        .unwrap_err();
        assert!(
            msg.contains("ordered by `n`, which must itself merge by max"),
            "{msg}"
        );
    }

    #[test]
    fn refit_policies_of_model_steps() {
        let model = "[[step]]\nname = \"t\"\nquery = \"SELECT 'a' AS user_id, 1.0 AS x\"\n[[step]]\nname = \"m\"\nkind = \"kmeans\"\ninput = \"t\"\nk = 2\n";
        let job = parse(&format!(
            "{model}refit = \"every 3 days\"\nrefit_drift = \"10%\"\n"
        ))
        .unwrap();
        assert_eq!(job.steps[1].refit.every_days, Some(3));
        assert_eq!(job.steps[1].refit.drift, Some(0.1));
        assert_eq!(job.steps[0].refit.every_days, None, "always by default");
        let msg = parse(&format!(
            "{model}refit = \"sometimes\"\nrefit_drift = \"0%\"\n"
        ))
        .unwrap_err();
        assert!(msg.contains("refit = \"sometimes\" must be"), "{msg}");
        assert!(
            msg.contains("refit_drift = \"0%\" must be above 0%"),
            "{msg}"
        );
        assert!(msg.contains("x.toml:9:1"), "located at the step: {msg}");
        let msg = parse("[[step]]\nname = \"a\"\nquery = \"SELECT 1\"\nrefit = \"weekly\"\n")
            .unwrap_err();
        assert!(
            msg.contains("`refit`") && msg.contains("kmeans, lookalike, ltv"),
            "{msg}"
        );
    }

    #[test]
    fn step_problems_reported_together() {
        let msg = parse("[[step]]\nname = \"ev\"\nquery = \"SELECT 1\"\n[[step]]\nname = \"b\"\n[[step]]\nname = \"c\"\nkind = \"forest\"\n[[step]]\nname = \"d\"\nquery = \"SELECT 1\"\nincremental = { source = \"nope\", days = 0 }\n").unwrap_err();
        assert!(
            msg.contains("a source or step named `ev` already exists"),
            "{msg}"
        );
        assert!(msg.contains("a sql step needs `sql"), "{msg}");
        assert!(msg.contains("unknown step kind `forest`"), "{msg}");
        assert!(msg.contains("incremental.days `0`"), "{msg}");
        assert!(msg.contains("incremental.source `nope`"), "{msg}");
    }

    #[test]
    fn model_steps_checked() {
        let msg =
            parse("[[step]]\nname = \"c\"\nkind = \"kmeans\"\ninput = \"ev\"\nk_range = [5, 3]\n")
                .unwrap_err();
        assert!(msg.contains("k_range [5, 3] must be increasing"), "{msg}");
        let msg =
            parse("[[step]]\nname = \"l\"\nkind = \"lookalike\"\ninput = \"ev\"\n").unwrap_err();
        assert!(msg.contains("needs `seed`"), "{msg}");
        let job = parse("[[step]]\nname = \"v\"\nkind = \"ltv\"\ninput = \"ev\"\nhorizon = 26.0\n")
            .unwrap();
        assert!(matches!(&job.steps[0].kind, StepKind::Ltv(c) if c.horizon == 26.0));
    }
}
