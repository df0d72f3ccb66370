//! After the campaign: campaign results joined with a published run's target and control groups,
//! and each segment's lift with its uncertainty.
//!
//! The analysis is by intent to treat: every member of a segment's target group counts as
//! treated and every member of its control group as held out, whether or not the platform
//! reached them, so the comparison keeps the randomisation of the holdout. A user converted
//! when the results hold a conversion for the user; the user's value is the sum of the values.
//!
//! Per segment: users, conversions and conversion rate in target and control; absolute lift
//! (difference of rates) with Newcombe's hybrid score 95% interval and an always-valid one for
//! looks during the campaign, its p-value from the pooled two-proportion z-test and the
//! Benjamini–Hochberg q-value over every lift of the call; relative lift with the log
//! risk-ratio interval; incremental conversions (absolute lift × target users); value per user
//! in target and control, their difference with a 95% percentile bootstrap interval (2,000
//! resamples of each group, fixed seed), and incremental value; the sample-ratio test of the
//! split against the segment's holdout share; with a pre-period covariate, the CUPED-adjusted
//! lift (see `stats`).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

pub mod outcome;
pub mod plan;
pub mod stats;

use crate::engine::diagnostics::execution_error;
use crate::engine::Engine;
use crate::error::{Error, Result};

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
    /// Benjamini–Hochberg adjusted p-value over every lift measured in the call.
    pub q_value: f64,
    /// q_value < 0.05.
    pub significant: bool,
    /// Always-valid 95% interval of the absolute lift (a confidence sequence): it may be
    /// looked at every night of a campaign without raising the false-positive rate.
    pub always_valid_ci: (f64, f64),
    /// The holdout share the split was made with (from the job), when known.
    pub holdout: Option<f64>,
    /// The sample-ratio test's p-value of target vs control counts against the holdout share.
    pub sample_ratio_p: Option<f64>,
    /// sample_ratio_p < 0.001: the split is broken, the lift is not to be read.
    pub sample_ratio_mismatch: bool,
    /// With a pre-period covariate (`pre` in the results): the CUPED-adjusted absolute lift.
    pub cuped: Option<stats::Cuped>,
    /// With a pre-period covariate: its mean in target and control and the p-value of their
    /// difference (Welch's z-test); a small p-value says the groups differed before the
    /// campaign.
    pub pre_balance: Option<stats::Balance>,
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

/// What a measurement needs besides the tables.
pub struct Options<'a> {
    /// The holdout share of a segment by name (from the job), when known.
    pub holdout: &'a dyn Fn(&str) -> Option<f64>,
    /// Scale of the always-valid interval's mixture: the absolute lift worth detecting.
    pub tau: f64,
}

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
    opts: &Options<'_>,
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
    // The pre-period covariate of CUPED (the same outcome before the campaign), when given.
    let has_pre = cols.iter().any(|c| c == "pre");
    let pre = if has_pre {
        "MAX(COALESCE(CAST(pre AS DOUBLE), 0))"
    } else {
        "0.0"
    };
    // One row per member: converted 0/1 and value; members without results did not convert.
    let sql = format!(
        "WITH r AS (
           SELECT CAST({id} AS VARCHAR) AS user_id,
                  MAX(CASE WHEN CAST(converted AS BIGINT) > 0 THEN 1 ELSE 0 END) AS converted,
                  {value} AS value, {pre} AS pre
           FROM {results} GROUP BY CAST({id} AS VARCHAR))
         SELECT arrow_cast(m.segment, 'Utf8') AS segment, arrow_cast(m.grp, 'Utf8') AS grp,
                CAST(COALESCE(r.converted, 0) AS BIGINT) AS converted,
                CAST(COALESCE(r.value, 0) AS DOUBLE) AS value,
                arrow_cast({part}, 'Utf8') AS part,
                CAST(COALESCE(r.pre, 0) AS DOUBLE) AS pre
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
    // (segment, part) -> [(values, conversions, (outcome, covariate) per user) of target, of control]
    type Side = (Vec<f64>, u64, Vec<(f64, f64)>);
    type Groups = std::collections::BTreeMap<(String, Option<String>), [Side; 2]>;
    let mut groups: Groups = Default::default();
    for b in &batches {
        let seg = b.column(0).as_string::<i32>();
        let grp = b.column(1).as_string::<i32>();
        let conv = b.column(2).as_primitive::<Int64Type>();
        let val = b.column(3).as_primitive::<Float64Type>();
        let part = b.column(4).as_string::<i32>();
        let pre = b.column(5).as_primitive::<Float64Type>();
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
                if has_pre {
                    g.2.push((conv.value(i) as f64, pre.value(i)));
                }
            }
        }
    }
    let mut out = Vec::new();
    for ((segment, part), [(tv, tx, tp), (cv, cx, cp)]) in groups {
        let (nt, nc) = (tv.len() as u64, cv.len() as u64);
        if nt == 0 || nc == 0 {
            // Without a control group there is nothing to compare with.
            continue;
        }
        let (rt, rc) = (tx as f64 / nt as f64, cx as f64 / nc as f64);
        let diff = rt - rc;
        let (mt, mc) = (
            tv.iter().sum::<f64>() / nt as f64,
            cv.iter().sum::<f64>() / nc as f64,
        );
        let seed = segment
            .bytes()
            .fold(17u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        let holdout = (opts.holdout)(&segment);
        let srm = holdout.map(|h| stats::sample_ratio_p(nt, nc, h));
        let split = |v: &[(f64, f64)]| -> (Vec<f64>, Vec<f64>) { v.iter().copied().unzip() };
        // CUPED's interval is a large-sample one: like the Wald interval it fails on a group
        // with few conversions, so it is reported only where each group has some.
        let pre_balance = has_pre.then(|| {
            let pre = |v: &[(f64, f64)]| v.iter().map(|p| p.1).collect::<Vec<f64>>();
            stats::balance(&pre(&tp), &pre(&cp))
        });
        let cuped = if has_pre && tx.min(cx) >= CUPED_MIN_CONVERSIONS {
            let ((yt, xt), (yc, xc)) = (split(&tp), split(&cp));
            stats::cuped(&yt, &xt, &yc, &xc)
        } else {
            None
        };
        out.push(Lift {
            target_users: nt,
            control_users: nc,
            target_conversions: tx,
            control_conversions: cx,
            target_rate: rt,
            control_rate: rc,
            absolute_lift: diff,
            absolute_ci: stats::newcombe(tx, nt, cx, nc),
            p_value: stats::pooled_p(tx, nt, cx, nc),
            q_value: 1.0,
            significant: false,
            // A difference of two rates lies in [−1, 1].
            always_valid_ci: {
                let (lo, hi) =
                    stats::always_valid(diff, stats::diff_variance(tx, nt, cx, nc), opts.tau);
                (lo.max(-1.0), hi.min(1.0))
            },
            holdout,
            sample_ratio_p: srm,
            sample_ratio_mismatch: srm.is_some_and(|p| p < SRM_ALPHA),
            cuped,
            pre_balance,
            relative_lift: (rc > 0.0).then(|| diff / rc),
            relative_ci: (rc > 0.0)
                .then(|| stats::relative_interval(tx, nt, cx, nc))
                .flatten(),
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
    // Every segment and tier of one call is one family of tests.
    let q = stats::benjamini_hochberg(&out.iter().map(|l| l.p_value).collect::<Vec<_>>());
    for (l, q) in out.iter_mut().zip(q) {
        l.q_value = q;
        l.significant = q < 0.05;
    }
    Ok(out)
}

/// Conversions each group needs before a CUPED-adjusted lift is reported.
pub const CUPED_MIN_CONVERSIONS: u64 = 10;

/// A split whose sample-ratio test gives a p-value below this is broken.
pub const SRM_ALPHA: f64 = 0.001;

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
        f("q_value"),
        Field::new("significant", DataType::Boolean, false),
        f("always_valid_ci_low"),
        f("always_valid_ci_high"),
        f("holdout"),
        f("sample_ratio_p"),
        Field::new("sample_ratio_mismatch", DataType::Boolean, false),
        f("cuped_lift"),
        f("cuped_ci_low"),
        f("cuped_ci_high"),
        f("cuped_variance_reduction"),
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
    let bl = |g: &dyn Fn(&Lift) -> bool| {
        Arc::new(BooleanArray::from(lifts.iter().map(g).collect::<Vec<_>>())) as Arc<dyn Array>
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
            fl(&|l| Some(l.q_value)),
            bl(&|l| l.significant),
            fl(&|l| Some(l.always_valid_ci.0)),
            fl(&|l| Some(l.always_valid_ci.1)),
            fl(&|l| l.holdout),
            fl(&|l| l.sample_ratio_p),
            bl(&|l| l.sample_ratio_mismatch),
            fl(&|l| l.cuped.map(|c| c.diff)),
            fl(&|l| l.cuped.map(|c| c.ci.0)),
            fl(&|l| l.cuped.map(|c| c.ci.1)),
            fl(&|l| l.cuped.map(|c| c.variance_reduction)),
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
