//! Segments: named sets of user ids defined in SQL over any table of the run, made mutually
//! exclusive within priority lists, cleaned of suppressed ids, and split into a target and a
//! held-out control group by a salted hash.
//!
//! Everything here compiles to SQL, so the same definitions run on a cluster. The result is the
//! table `segment_members (segment, user_id, grp)`, with `grp` = `target` or `control`.
//!
//! The holdout rule: a member is in control when the first 8 hex digits of
//! `md5(salt || ':' || user_id)` are below `holdout × 2^32`. The same salt gives the same split on
//! every run; one job-level salt gives one universal holdout across segments.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use serde::Serialize;

use crate::engine::materialise::{materialise, Held};
use crate::engine::sql::plan_sql;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::job::{Bindings, Job, SegmentDef};

/// Name of the members table every export reads.
pub const MEMBERS: &str = "segment_members";

/// Counts of one segment.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentCounts {
    /// Segment name.
    pub name: String,
    /// The `[[segment]]` entry it comes from.
    pub defined_by: String,
    /// Share held back as control.
    pub holdout: f64,
    /// Where the holdout salt comes from: `segment` (its own name), `job` or `custom`.
    pub salt: String,
    /// Distinct ids the definition selected.
    pub candidates: u64,
    /// Ids removed because an earlier segment of a priority list holds them.
    pub removed_by_priority: u64,
    /// Ids removed by the suppression tables.
    pub suppressed: u64,
    /// Members in the target group.
    pub target: u64,
    /// Members in the control group.
    pub control: u64,
}

/// What building the segments produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Segments {
    /// Per segment, in name order.
    pub segments: Vec<SegmentCounts>,
    /// Distinct ids in the suppression tables.
    pub suppression_ids: u64,
}

use crate::quote::{ident as quote, literal as lit};

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// True when `pattern` (a name, `prefix*`, `*`, or a per-value group name) selects `name`.
pub fn matches(pattern: &str, name: &str, group_of: Option<&str>) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(stem) = pattern.strip_suffix('*') {
        return name.starts_with(stem);
    }
    pattern == name || group_of == Some(pattern)
}

pub(crate) async fn collect_counts(
    engine: &Engine,
    sql: &str,
    what: &str,
) -> Result<Vec<(String, Vec<i64>)>> {
    let batches = crate::engine::sql::collect(engine, sql, what).await?;
    let mut out = Vec::new();
    for b in batches {
        let names = datafusion::arrow::compute::cast(
            b.column(0),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .map_err(Error::unexpected)?;
        let names = names.as_string::<i32>();
        let cols: Vec<_> = (1..b.num_columns())
            .map(|i| {
                datafusion::arrow::compute::cast(
                    b.column(i),
                    &datafusion::arrow::datatypes::DataType::Int64,
                )
                .map_err(Error::unexpected)
            })
            .collect::<Result<_>>()?;
        for r in 0..b.num_rows() {
            let vals = cols
                .iter()
                .map(|c| {
                    let c = c.as_primitive::<Int64Type>();
                    if c.is_null(r) {
                        0
                    } else {
                        c.value(r)
                    }
                })
                .collect();
            out.push((names.value(r).to_string(), vals));
        }
    }
    Ok(out)
}

/// Builds `segment_members` from the job's segments; `threshold` bounds the memory a table
/// may take before it is spilled to the engine's scratch folder.
pub async fn build(
    engine: &Engine,
    job: &Job,
    bindings: &Bindings,
    threshold: usize,
) -> Result<Segments> {
    let id = job.publish.id.as_str();
    // 1. Candidates: one (segment, user_id) per distinct id a definition selects.
    let mut parts: Vec<String> = Vec::new();
    for (i, s) in job.segments.iter().enumerate() {
        match &s.def {
            SegmentDef::Query(sql) => {
                let label = format!("segment {}", s.name);
                let df = plan_sql(engine, &label, sql, bindings)
                    .await
                    .map_err(|p| Error::Job(vec![p]))?;
                let first = df
                    .schema()
                    .fields()
                    .first()
                    .map(|f| f.name().clone())
                    .ok_or_else(|| {
                        Error::job_msg(
                            Some(&label),
                            "the query selects no column; its first column must hold the ids",
                            None,
                        )
                    })?;
                let view = format!("__segment_query_{i}");
                let _ = engine.ctx.deregister_table(view.as_str());
                engine
                    .ctx
                    .register_table(view.as_str(), df.into_view())
                    .map_err(Error::unexpected)?;
                parts.push(format!(
                    "SELECT {} AS segment, CAST({} AS VARCHAR) AS user_id FROM {view} WHERE {} IS NOT NULL",
                    lit(&s.name),
                    quote(&first),
                    quote(&first)
                ));
            }
            SegmentDef::PerValue { from, by } => {
                let label = format!("segment {}", s.name);
                let table = engine.ctx.table(from.as_str()).await.map_err(|e| {
                    Error::job_msg(
                        Some(&label),
                        format!("cannot read table `{from}`: {e}"),
                        None,
                    )
                })?;
                let names = crate::engine::sql::column_names(&table);
                for c in [by.as_str(), id] {
                    if !names.iter().any(|n| n == c) {
                        return Err(Error::job_msg(
                            Some(&label),
                            format!("table `{from}` has no column `{c}`"),
                            Some(crate::hint::nearest_columns(c, &names)),
                        ));
                    }
                }
                parts.push(format!(
                    "SELECT concat({}, CAST({} AS VARCHAR)) AS segment, CAST({} AS VARCHAR) AS user_id FROM {} WHERE {} IS NOT NULL AND {} IS NOT NULL",
                    lit(&format!("{}_", s.name)),
                    quote(by),
                    quote(id),
                    quote(from),
                    quote(by),
                    quote(id)
                ));
            }
        }
    }
    if parts.is_empty() {
        return Ok(Segments::default());
    }
    let sql = format!(
        "SELECT DISTINCT segment, user_id FROM ({})",
        parts.join(" UNION ALL ")
    );
    let df = engine
        .ctx
        .sql(&sql)
        .await
        .map_err(|e| Error::job_msg(Some("segments"), e.to_string(), None))?;
    materialise(engine, "__segment_candidates", df, "segments", threshold).await?;

    // 2. Names and candidate counts; per-value names must be safe file names.
    let counts = collect_counts(
        engine,
        "SELECT segment, COUNT(*) FROM __segment_candidates GROUP BY segment ORDER BY segment",
        "segments",
    )
    .await?;
    let mut by_name: BTreeMap<String, SegmentCounts> = BTreeMap::new();
    let mut group_of: BTreeMap<String, String> = BTreeMap::new();
    // Where a segment's holdout salt comes from, for the manifest.
    let salt_source = |s: &crate::job::Segment| {
        if s.salt.is_some() {
            "custom"
        } else {
            "segment"
        }
        .to_string()
    };
    for s in &job.segments {
        if let SegmentDef::Query(_) = s.def {
            let salt = salt_source(s);
            by_name.insert(
                s.name.clone(),
                SegmentCounts {
                    name: s.name.clone(),
                    defined_by: s.name.clone(),
                    holdout: s.holdout,
                    salt,
                    candidates: 0,
                    removed_by_priority: 0,
                    suppressed: 0,
                    target: 0,
                    control: 0,
                },
            );
        }
    }
    for (name, v) in &counts {
        if let Some(c) = by_name.get_mut(name) {
            if c.defined_by == *name
                && job
                    .segments
                    .iter()
                    .any(|s| s.name == *name && matches!(s.def, SegmentDef::Query(_)))
            {
                c.candidates = v[0] as u64;
                continue;
            }
        }
        let owner = job
            .segments
            .iter()
            .filter(|s| matches!(s.def, SegmentDef::PerValue { .. }))
            .find(|s| name.starts_with(&format!("{}_", s.name)))
            .ok_or_else(|| Error::internal(format!("segment `{name}` has no definition")))?;
        if !valid_name(name) {
            return Err(Error::data(
                format!("segment `{}`", owner.name),
                format!("a value of the split column gives the segment name `{name}`, which may only hold letters, digits, `_` and `-`; map the values to safe names in the SQL step that feeds it"),
            ));
        }
        if by_name.contains_key(name) {
            return Err(Error::job_msg(
                Some(&owner.name),
                format!("the per-value segment `{name}` has the same name as another segment"),
                Some("rename one of the segments".into()),
            ));
        }
        let salt = salt_source(owner);
        group_of.insert(name.clone(), owner.name.clone());
        by_name.insert(
            name.clone(),
            SegmentCounts {
                name: name.clone(),
                defined_by: owner.name.clone(),
                holdout: owner.holdout,
                salt,
                candidates: v[0] as u64,
                removed_by_priority: 0,
                suppressed: 0,
                target: 0,
                control: 0,
            },
        );
    }

    // 3. Priority lists: the rank of each segment in its list.
    let mut prio_rows: Vec<String> = Vec::new();
    for (g, list) in job.publish.priority.iter().enumerate() {
        let mut rank = 0usize;
        for pat in list {
            for name in by_name.keys() {
                if matches(pat, name, group_of.get(name).map(String::as_str))
                    && !prio_rows
                        .iter()
                        .any(|r| r.starts_with(&format!("({}, ", lit(name))))
                {
                    prio_rows.push(format!("({}, {g}, {rank})", lit(name)));
                    rank += 1;
                }
            }
        }
    }
    let kept = if prio_rows.is_empty() {
        "SELECT segment, user_id FROM __segment_candidates".to_string()
    } else {
        format!(
            "WITH prio(segment, pgroup, rnk) AS (VALUES {}),
             ranked AS (SELECT c.segment, c.user_id, p.pgroup, p.rnk FROM __segment_candidates c LEFT JOIN prio p ON c.segment = p.segment),
             best AS (SELECT user_id, pgroup, MIN(rnk) AS rnk FROM ranked WHERE pgroup IS NOT NULL GROUP BY user_id, pgroup)
             SELECT r.segment, r.user_id FROM ranked r LEFT JOIN best b ON r.user_id = b.user_id AND r.pgroup = b.pgroup
             WHERE r.pgroup IS NULL OR r.rnk = b.rnk",
            prio_rows.join(", ")
        )
    };

    // 4. Suppression.
    let sup: Vec<String> = job
        .publish
        .suppress
        .iter()
        .map(|t| {
            format!(
                "SELECT CAST({} AS VARCHAR) AS user_id FROM {} WHERE {} IS NOT NULL",
                quote(id),
                quote(t),
                quote(id)
            )
        })
        .collect();
    let flagged = if sup.is_empty() {
        format!("SELECT segment, user_id, false AS suppressed FROM ({kept})")
    } else {
        for t in &job.publish.suppress {
            let df = engine
                .ctx
                .table(t.as_str())
                .await
                .map_err(Error::unexpected)?;
            if df.schema().field_with_unqualified_name(id).is_err() {
                let names = crate::engine::sql::column_names(&df);
                return Err(Error::job_msg(
                    Some("publish"),
                    format!("suppression table `{t}` has no id column `{id}`"),
                    Some(crate::hint::nearest_columns(id, &names)),
                ));
            }
        }
        let df = engine
            .ctx
            .sql(&format!(
                "SELECT DISTINCT user_id FROM ({})",
                sup.join(" UNION ALL ")
            ))
            .await
            .map_err(|e| Error::internal(format!("suppression: {e}")))?;
        materialise(
            engine,
            "__suppressed_ids",
            df,
            "suppression tables",
            threshold,
        )
        .await?;
        format!(
            "SELECT k.segment, k.user_id, s.user_id IS NOT NULL AS suppressed FROM ({kept}) k LEFT JOIN __suppressed_ids s ON k.user_id = s.user_id"
        )
    };
    let df = engine
        .ctx
        .sql(&flagged)
        .await
        .map_err(|e| Error::internal(format!("segments: {e}")))?;
    materialise(engine, "__segment_kept", df, "segments", threshold).await?;
    for (name, v) in collect_counts(
        engine,
        "SELECT segment, COUNT(*), COUNT(*) FILTER (WHERE suppressed) FROM __segment_kept GROUP BY segment",
        "segments",
    )
    .await?
    {
        if let Some(c) = by_name.get_mut(&name) {
            c.removed_by_priority = c.candidates - v[0] as u64;
            c.suppressed = v[1] as u64;
        }
    }

    // 5. Holdout.
    let cfg: Vec<String> = by_name
        .values()
        .map(|c| {
            let owner = job.segments.iter().find(|s| s.name == c.defined_by);
            let salt = owner
                .and_then(|s| s.salt.clone())
                .unwrap_or_else(|| c.name.clone());
            let threshold = ((c.holdout * 4294967296.0).round() as u64).min(0xffff_ffff);
            format!("({}, {}, '{threshold:08x}')", lit(&c.name), lit(&salt))
        })
        .collect();
    let sql = format!(
        "WITH cfg(segment, salt, threshold) AS (VALUES {})
         SELECT k.segment, k.user_id,
                CASE WHEN substr(md5(concat(cfg.salt, ':', k.user_id)), 1, 8) < cfg.threshold THEN 'control' ELSE 'target' END AS grp
         FROM __segment_kept k JOIN cfg ON k.segment = cfg.segment
         WHERE NOT k.suppressed",
        cfg.join(", ")
    );
    let df = engine
        .ctx
        .sql(&sql)
        .await
        .map_err(|e| Error::internal(format!("segments: {e}")))?;
    let (_, held) = materialise(engine, MEMBERS, df, "segments", threshold).await?;
    if matches!(held, Held::Memory(_)) {
        // Held in the order `segments.parquet` is written in, which then needs no sort.
        let keys = ["segment", "grp", "user_id"].map(String::from);
        crate::engine::ordered::hold_in_order(engine, MEMBERS, &keys).await?;
    }
    for (name, v) in collect_counts(
        engine,
        &format!("SELECT segment, COUNT(*) FILTER (WHERE grp = 'target'), COUNT(*) FILTER (WHERE grp = 'control') FROM {MEMBERS} GROUP BY segment"),
        "segments",
    )
    .await?
    {
        if let Some(c) = by_name.get_mut(&name) {
            c.target = v[0] as u64;
            c.control = v[1] as u64;
        }
    }
    let suppression_ids = if sup.is_empty() {
        0
    } else {
        collect_counts(
            engine,
            "SELECT 'n', COUNT(*) FROM __suppressed_ids",
            "suppression",
        )
        .await?
        .first()
        .map(|(_, v)| v[0] as u64)
        .unwrap_or(0)
    };
    let _ = engine.ctx.deregister_table("__segment_candidates");
    let _ = engine.ctx.deregister_table("__segment_kept");
    Ok(Segments {
        segments: by_name.into_values().collect(),
        suppression_ids,
    })
}

/// The per-value group a segment belongs to, if any (for export patterns).
pub fn group_of(job: &Job, counts: &SegmentCounts) -> Option<String> {
    job.segments
        .iter()
        .find(|s| s.name == counts.defined_by && matches!(s.def, SegmentDef::PerValue { .. }))
        .map(|s| s.name.clone())
}
