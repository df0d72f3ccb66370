//! After the campaign: campaign results joined with a published run's target and control groups,
//! and each segment's lift with its uncertainty.
//!
//! The analysis is by intent to treat: every member of a segment's target group counts as
//! treated and every member of its control group as held out, whether or not the platform
//! reached them, so the comparison keeps the randomisation of the holdout. A user converted
//! when the results hold a conversion for the user; the user's value is the sum of the values.
//!
//! Per segment: users, conversions and conversion rate in target and control; absolute lift
//! (difference of rates) with a 95% interval from the unpooled normal approximation
//! (Wald), its p-value from the pooled two-proportion z-test; relative lift (absolute lift over
//! the control rate, its interval the absolute interval scaled the same way); incremental
//! conversions (absolute lift × target users); value per user in target and control, their
//! difference with a 95% percentile bootstrap interval (2,000 resamples of each group, fixed
//! seed), and incremental value.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

use crate::engine::diagnostics::execution_error;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// The 97.5% quantile of the standard normal.
const Z: f64 = 1.959_963_984_540_054;
/// Bootstrap resamples.
const RESAMPLES: usize = 2000;

/// The lift of one segment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Lift {
    /// Segment.
    pub segment: String,
    /// With a breakdown (`--by table.column`): the part of the segment, e.g. a lookalike tier.
    pub part: Option<String>,
    /// Users in the target group.
    pub target_users: u64,
    /// Users in the control group.
    pub control_users: u64,
    /// Converted target users.
    pub target_conversions: u64,
    /// Converted control users.
    pub control_conversions: u64,
    /// Conversion rate of the target group.
    pub target_rate: f64,
    /// Conversion rate of the control group.
    pub control_rate: f64,
    /// target_rate − control_rate.
    pub absolute_lift: f64,
    /// 95% interval of the absolute lift.
    pub absolute_ci: (f64, f64),
    /// Two-sided p-value (pooled two-proportion z-test).
    pub p_value: f64,
    /// absolute_lift / control_rate (none when the control group did not convert).
    pub relative_lift: Option<f64>,
    /// 95% interval of the relative lift.
    pub relative_ci: Option<(f64, f64)>,
    /// absolute_lift × target users.
    pub incremental_conversions: f64,
    /// Mean value per target user.
    pub target_value_per_user: f64,
    /// Mean value per control user.
    pub control_value_per_user: f64,
    /// Difference of the means.
    pub value_lift: f64,
    /// 95% bootstrap interval of the difference.
    pub value_ci: (f64, f64),
    /// value_lift × target users.
    pub incremental_value: f64,
}

/// Standard normal CDF (Abramowitz & Stegun 7.1.26 through erf; |error| < 1.5e-7).
fn normal_cdf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs() / std::f64::consts::SQRT_2);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-(x * x) / 2.0).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// Absolute lift, its 95% Wald interval and the pooled z-test p-value.
pub fn two_proportions(n_t: u64, x_t: u64, n_c: u64, x_c: u64) -> (f64, (f64, f64), f64) {
    let (nt, nc) = (n_t as f64, n_c as f64);
    let (pt, pc) = (x_t as f64 / nt, x_c as f64 / nc);
    let diff = pt - pc;
    let se = (pt * (1.0 - pt) / nt + pc * (1.0 - pc) / nc).sqrt();
    let pooled = (x_t + x_c) as f64 / (nt + nc);
    let se0 = (pooled * (1.0 - pooled) * (1.0 / nt + 1.0 / nc)).sqrt();
    let p = if se0 > 0.0 {
        2.0 * (1.0 - normal_cdf((diff / se0).abs()))
    } else {
        1.0
    };
    (diff, (diff - Z * se, diff + Z * se), p)
}

/// Percentile bootstrap interval of mean(a) − mean(b), deterministic for a seed.
pub fn bootstrap_mean_diff(a: &[f64], b: &[f64], seed: u64) -> (f64, f64) {
    if a.is_empty() || b.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean_of = |v: &[f64], rng: &mut rand_chacha::ChaCha8Rng| {
        (0..v.len())
            .map(|_| v[rng.random_range(0..v.len())])
            .sum::<f64>()
            / v.len() as f64
    };
    let mut diffs: Vec<f64> = (0..RESAMPLES)
        .into_par_iter()
        .map(|i| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_add(i as u64));
            mean_of(a, &mut rng) - mean_of(b, &mut rng)
        })
        .collect();
    diffs.sort_by(|x, y| x.total_cmp(y));
    let at = |q: f64| diffs[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    (at(0.025), at(0.975))
}

use crate::quote::ident as q;

/// Measures every segment of the members table `members` (segment, user_id, grp) against the
/// results table `results` (user id column `id`, a `converted` flag or count, an optional
/// `value`).
/// With `by` = (table, column), every segment is also measured per value of the column (the
/// table joined on the id), e.g. per lookalike tier.
pub async fn measure(
    engine: &Engine,
    members: &str,
    results: &str,
    id: &str,
    by: Option<(&str, &str)>,
) -> Result<Vec<Lift>> {
    let schema = engine
        .ctx
        .table(results)
        .await
        .map_err(Error::unexpected)?
        .schema()
        .as_arrow()
        .clone();
    let cols: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    for need in [id, "converted"] {
        if !cols.iter().any(|c| c == need) {
            return Err(Error::data(
                "campaign results",
                format!(
                    "the results have no column `{need}` (columns: {}); they need the user id, `converted` (true/false or a count) and optionally `value`",
                    cols.join(", ")
                ),
            ));
        }
    }
    let value = if cols.iter().any(|c| c == "value") {
        "SUM(COALESCE(CAST(value AS DOUBLE), 0))"
    } else {
        "0.0"
    };
    // One row per member: converted 0/1 and value; members without results did not convert.
    let sql = format!(
        "WITH r AS (
           SELECT CAST({id} AS VARCHAR) AS user_id,
                  MAX(CASE WHEN CAST(converted AS BIGINT) > 0 THEN 1 ELSE 0 END) AS converted,
                  {value} AS value
           FROM {results} GROUP BY CAST({id} AS VARCHAR))
         SELECT arrow_cast(m.segment, 'Utf8') AS segment, arrow_cast(m.grp, 'Utf8') AS grp,
                CAST(COALESCE(r.converted, 0) AS BIGINT) AS converted,
                CAST(COALESCE(r.value, 0) AS DOUBLE) AS value,
                arrow_cast({part}, 'Utf8') AS part
         FROM {members} m LEFT JOIN r ON CAST(m.user_id AS VARCHAR) = r.user_id
         {join}
         ORDER BY 1, 2, CAST(m.user_id AS VARCHAR)",
        id = q(id),
        results = q(results),
        members = q(members),
        part = if by.is_some() { "COALESCE(CAST(b.part AS VARCHAR), '')" } else { "''" },
        join = match by {
            Some((t, c)) => format!(
                "LEFT JOIN (SELECT DISTINCT CAST({} AS VARCHAR) AS user_id, {} AS part FROM {}) b ON CAST(m.user_id AS VARCHAR) = b.user_id",
                q(id),
                q(c),
                q(t)
            ),
            None => String::new(),
        },
    );
    let batches = engine
        .ctx
        .sql(&sql)
        .await
        .map_err(|e| Error::data("campaign results", e.to_string()))?
        .collect()
        .await
        .map_err(|e| execution_error("campaign results", e))?;
    // (segment, part) -> [(values, conversions) of target, of control]
    type Groups = std::collections::BTreeMap<(String, Option<String>), [(Vec<f64>, u64); 2]>;
    let mut groups: Groups = Default::default();
    for b in &batches {
        let seg = b.column(0).as_string::<i32>();
        let grp = b.column(1).as_string::<i32>();
        let conv = b.column(2).as_primitive::<Int64Type>();
        let val = b.column(3).as_primitive::<Float64Type>();
        let part = b.column(4).as_string::<i32>();
        for i in 0..b.num_rows() {
            let side = usize::from(grp.value(i) != "target");
            let mut keys = vec![(seg.value(i).to_string(), None)];
            if by.is_some() && !part.value(i).is_empty() {
                keys.push((seg.value(i).to_string(), Some(part.value(i).to_string())));
            }
            for k in keys {
                let g = &mut groups.entry(k).or_default()[side];
                g.0.push(val.value(i));
                g.1 += conv.value(i) as u64;
            }
        }
    }
    let mut out = Vec::new();
    for ((segment, part), [(tv, tx), (cv, cx)]) in groups {
        let (nt, nc) = (tv.len() as u64, cv.len() as u64);
        if nt == 0 || nc == 0 {
            // Without a control group there is nothing to compare with.
            continue;
        }
        let (diff, ci, p) = two_proportions(nt, tx, nc, cx);
        let (rt, rc) = (tx as f64 / nt as f64, cx as f64 / nc as f64);
        let (mt, mc) = (
            tv.iter().sum::<f64>() / nt as f64,
            cv.iter().sum::<f64>() / nc as f64,
        );
        let seed = segment
            .bytes()
            .fold(17u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        out.push(Lift {
            target_users: nt,
            control_users: nc,
            target_conversions: tx,
            control_conversions: cx,
            target_rate: rt,
            control_rate: rc,
            absolute_lift: diff,
            absolute_ci: ci,
            p_value: p,
            relative_lift: (rc > 0.0).then(|| diff / rc),
            relative_ci: (rc > 0.0).then(|| (ci.0 / rc, ci.1 / rc)),
            incremental_conversions: diff * nt as f64,
            target_value_per_user: mt,
            control_value_per_user: mc,
            value_lift: mt - mc,
            value_ci: bootstrap_mean_diff(&tv, &cv, seed),
            incremental_value: (mt - mc) * nt as f64,
            segment,
            part,
        });
    }
    Ok(out)
}

/// The lifts as one Arrow batch (the `lift` table written with the measurement).
pub fn to_batch(lifts: &[Lift]) -> Result<RecordBatch> {
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    let i = |n: &str| Field::new(n, DataType::Int64, false);
    let schema = Arc::new(Schema::new(vec![
        Field::new("segment", DataType::Utf8, false),
        Field::new("part", DataType::Utf8, true),
        i("target_users"),
        i("control_users"),
        i("target_conversions"),
        i("control_conversions"),
        f("target_rate"),
        f("control_rate"),
        f("absolute_lift"),
        f("absolute_ci_low"),
        f("absolute_ci_high"),
        f("p_value"),
        f("relative_lift"),
        f("relative_ci_low"),
        f("relative_ci_high"),
        f("incremental_conversions"),
        f("target_value_per_user"),
        f("control_value_per_user"),
        f("value_lift"),
        f("value_ci_low"),
        f("value_ci_high"),
        f("incremental_value"),
    ]));
    let fl = |g: &dyn Fn(&Lift) -> Option<f64>| {
        Arc::new(Float64Array::from(lifts.iter().map(g).collect::<Vec<_>>())) as Arc<dyn Array>
    };
    let il = |g: &dyn Fn(&Lift) -> u64| {
        Arc::new(Int64Array::from(
            lifts.iter().map(|l| g(l) as i64).collect::<Vec<_>>(),
        )) as Arc<dyn Array>
    };
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(
                lifts.iter().map(|l| l.segment.clone()).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                lifts.iter().map(|l| l.part.clone()).collect::<Vec<_>>(),
            )),
            il(&|l| l.target_users),
            il(&|l| l.control_users),
            il(&|l| l.target_conversions),
            il(&|l| l.control_conversions),
            fl(&|l| Some(l.target_rate)),
            fl(&|l| Some(l.control_rate)),
            fl(&|l| Some(l.absolute_lift)),
            fl(&|l| Some(l.absolute_ci.0)),
            fl(&|l| Some(l.absolute_ci.1)),
            fl(&|l| Some(l.p_value)),
            fl(&|l| l.relative_lift),
            fl(&|l| l.relative_ci.map(|c| c.0)),
            fl(&|l| l.relative_ci.map(|c| c.1)),
            fl(&|l| Some(l.incremental_conversions)),
            fl(&|l| Some(l.target_value_per_user)),
            fl(&|l| Some(l.control_value_per_user)),
            fl(&|l| Some(l.value_lift)),
            fl(&|l| Some(l.value_ci.0)),
            fl(&|l| Some(l.value_ci.1)),
            fl(&|l| Some(l.incremental_value)),
        ],
    )
    .map_err(Error::unexpected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lift_and_interval_checked_by_hand() {
        // 30 of 100 treated and 20 of 100 held-out users converted: the difference is 0.10,
        // its standard error sqrt(0.3·0.7/100 + 0.2·0.8/100) = sqrt(0.0037) = 0.0608276, so the
        // interval is 0.10 ± 1.96 · 0.0608276 = [-0.019223, 0.219223]. Pooled: p = 0.25,
        // se0 = sqrt(0.25·0.75·0.02) = 0.0612372, z = 1.63299, two-sided p = 0.10247.
        let (d, (lo, hi), p) = two_proportions(100, 30, 100, 20);
        assert!((d - 0.10).abs() < 1e-12);
        assert!((lo - -0.019223).abs() < 1e-5, "{lo}");
        assert!((hi - 0.219223).abs() < 1e-5, "{hi}");
        assert!((p - 0.10247).abs() < 1e-4, "{p}");
    }

    #[test]
    fn normal_cdf_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(Z) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-1.0) - 0.158_655_25).abs() < 1e-6);
    }

    #[test]
    fn bootstrap_interval_covers_the_difference_and_is_deterministic() {
        let a: Vec<f64> = (0..400).map(|i| (i % 10) as f64).collect();
        let b: Vec<f64> = (0..400).map(|i| (i % 10) as f64 - 1.0).collect();
        let (lo, hi) = bootstrap_mean_diff(&a, &b, 7);
        assert!(lo < 1.0 && 1.0 < hi, "{lo} {hi}");
        assert!(hi - lo < 1.0);
        assert_eq!((lo, hi), bootstrap_mean_diff(&a, &b, 7));
    }
}

/// Users of one segment group who moved between two lifecycle stages.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Migration {
    /// Segment.
    pub segment: String,
    /// `target` or `control`.
    pub grp: String,
    /// Stage at the measured run (`none` when the user had no stage row).
    pub from_stage: String,
    /// Stage at the later run.
    pub to_stage: String,
    /// Users.
    pub users: u64,
}

/// Stage migration of every segment's target and control groups between two lifecycle tables
/// (user id, `stage`): the measured run's and a later run's.
pub async fn migration(
    engine: &Engine,
    members: &str,
    before: &str,
    after: &str,
    id: &str,
) -> Result<Vec<Migration>> {
    let sql = format!(
        "SELECT arrow_cast(m.segment, 'Utf8'), arrow_cast(m.grp, 'Utf8'),
                arrow_cast(COALESCE(CAST(b.stage AS VARCHAR), 'none'), 'Utf8'),
                arrow_cast(COALESCE(CAST(a.stage AS VARCHAR), 'none'), 'Utf8'),
                COUNT(*)
         FROM {members} m
         LEFT JOIN {before} b ON CAST(b.{id} AS VARCHAR) = CAST(m.user_id AS VARCHAR)
         LEFT JOIN {after} a ON CAST(a.{id} AS VARCHAR) = CAST(m.user_id AS VARCHAR)
         GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        members = q(members),
        before = q(before),
        after = q(after),
        id = q(id),
    );
    let batches = engine
        .ctx
        .sql(&sql)
        .await
        .map_err(|e| Error::data("lifecycle tables", e.to_string()))?
        .collect()
        .await
        .map_err(|e| execution_error("lifecycle tables", e))?;
    let mut out = Vec::new();
    for b in &batches {
        let s = |i: usize| b.column(i).as_string::<i32>().clone();
        let (seg, grp, from, to) = (s(0), s(1), s(2), s(3));
        let n = b.column(4).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.push(Migration {
                segment: seg.value(i).to_string(),
                grp: grp.value(i).to_string(),
                from_stage: from.value(i).to_string(),
                to_stage: to.value(i).to_string(),
                users: n.value(i) as u64,
            });
        }
    }
    Ok(out)
}

/// Rank of a lifecycle stage (unknown stages rank with `none`).
pub fn stage_rank(stage: &str) -> u8 {
    match stage {
        "awareness" => 1,
        "intent" => 2,
        "conversion" => 3,
        "advocacy" => 4,
        _ => 0,
    }
}

/// Per segment and group, the share of users whose stage advanced.
pub fn advanced_shares(m: &[Migration]) -> std::collections::BTreeMap<(String, String), f64> {
    let mut tot: std::collections::BTreeMap<(String, String), (u64, u64)> = Default::default();
    for r in m {
        let e = tot.entry((r.segment.clone(), r.grp.clone())).or_default();
        e.0 += r.users;
        if stage_rank(&r.to_stage) > stage_rank(&r.from_stage) {
            e.1 += r.users;
        }
    }
    tot.into_iter()
        .map(|(k, (n, up))| (k, if n > 0 { up as f64 / n as f64 } else { 0.0 }))
        .collect()
}
