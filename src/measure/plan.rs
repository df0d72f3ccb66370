//! Planning a campaign before it runs: per segment, the baseline conversion rate and value per
//! user from the job's own history (the outcome SQL over the last campaign-length window), the
//! minimum detectable effect at 80% power and 5% significance for the holdout the segment has,
//! and the holdout share that reaches a target effect, with and without CUPED.
//!
//! The minimum detectable effect of a difference of two rates (two-sided test at level α,
//! power 1 − β) is (z₁₋α/₂ + z₁₋β) · √(p(1 − p)(1/n_t + 1/n_c)) (e.g. Chow, Shao, Wang,
//! *Sample Size Calculations in Clinical Research*, 4.2). CUPED multiplies the variance by
//! 1 − ρ², where ρ is the correlation of the outcome with the same outcome one window earlier
//! (Deng et al. 2013).

use serde::Serialize;

use crate::engine::diagnostics::execution_error;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::quote::ident as q;

/// z of 97.5% plus z of 80%: a two-sided 5% test with 80% power.
pub const Z_POWER: f64 = 1.959_963_984_540_054 + 0.841_621_233_572_914_3;

/// The plan of one segment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SegmentPlan {
    /// Segment.
    pub segment: String,
    /// Members in the target group.
    pub target_users: u64,
    /// Members in the control group.
    pub control_users: u64,
    /// Holdout share the segment is split with.
    pub holdout: f64,
    /// Share of the members who converted in the last window (the baseline).
    pub baseline_rate: f64,
    /// Mean value per member in the last window.
    pub value_per_user: f64,
    /// Correlation of the outcome with the window before (what CUPED can remove).
    pub pre_correlation: f64,
    /// Minimum detectable absolute lift at the current split.
    pub mde: Option<f64>,
    /// The same with CUPED.
    pub mde_cuped: Option<f64>,
    /// Holdout share that reaches the target lift (`None`: not reachable with these members).
    pub holdout_for_target: Option<f64>,
    /// The same with CUPED.
    pub holdout_for_target_cuped: Option<f64>,
}

/// The minimum detectable absolute lift for a rate `p`, groups of `nt` and `nc`, and a
/// variance factor (1 − ρ² with CUPED, else 1).
pub fn mde(p: f64, nt: u64, nc: u64, factor: f64) -> Option<f64> {
    if nt == 0 || nc == 0 || !(0.0..1.0).contains(&p) || p == 0.0 {
        return None;
    }
    Some(Z_POWER * (p * (1.0 - p) * factor * (1.0 / nt as f64 + 1.0 / nc as f64)).sqrt())
}

/// The smallest holdout share h whose split of `n` members detects an absolute lift `target`:
/// h(1 − h) ≥ Z²·p(1 − p)·factor / (n · target²); `None` when even 50% does not.
pub fn holdout_for(p: f64, n: u64, target: f64, factor: f64) -> Option<f64> {
    if n == 0 || target <= 0.0 || !(0.0..1.0).contains(&p) || p == 0.0 {
        return None;
    }
    let need = Z_POWER * Z_POWER * p * (1.0 - p) * factor / (n as f64 * target * target);
    (need <= 0.25).then(|| (1.0 - (1.0 - 4.0 * need).sqrt()) / 2.0)
}

/// Plans every segment of the members table (segment, user_id, grp) against the outcome
/// windows `last` and `before` (id, converted, value); `holdout` gives each segment's share.
pub async fn plan(
    engine: &Engine,
    members: &str,
    last: &str,
    before: &str,
    id: &str,
    holdout: &dyn Fn(&str) -> Option<f64>,
    target: f64,
) -> Result<Vec<SegmentPlan>> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Float64Type, Int64Type};
    let sql = format!(
        "SELECT arrow_cast(m.segment, 'Utf8') AS segment,
                CAST(SUM(CASE WHEN m.grp = 'target' THEN 1 ELSE 0 END) AS BIGINT) AS nt,
                CAST(SUM(CASE WHEN m.grp = 'control' THEN 1 ELSE 0 END) AS BIGINT) AS nc,
                CAST(SUM(COALESCE(l.converted, 0)) AS BIGINT) AS y,
                CAST(SUM(COALESCE(b.converted, 0)) AS BIGINT) AS x,
                CAST(SUM(COALESCE(l.converted, 0) * COALESCE(b.converted, 0)) AS BIGINT) AS xy,
                CAST(SUM(COALESCE(l.value, 0)) AS DOUBLE) AS v
         FROM {m} m
         LEFT JOIN {l} l ON CAST(m.user_id AS VARCHAR) = l.{id}
         LEFT JOIN {b} b ON CAST(m.user_id AS VARCHAR) = b.{id}
         GROUP BY 1 ORDER BY 1",
        m = q(members),
        l = q(last),
        b = q(before),
        id = q(id)
    );
    let batches = engine
        .ctx
        .sql(&sql)
        .await
        .map_err(|e| Error::data("plan", e.to_string()))?
        .collect()
        .await
        .map_err(|e| execution_error("plan", e))?;
    let mut out = Vec::new();
    for b in &batches {
        let seg = b.column(0).as_string::<i32>();
        let int = |i: usize| b.column(i).as_primitive::<Int64Type>();
        let (nt, nc, y, x, xy) = (int(1), int(2), int(3), int(4), int(5));
        let v = b.column(6).as_primitive::<Float64Type>();
        for r in 0..b.num_rows() {
            let (nt, nc) = (nt.value(r) as u64, nc.value(r) as u64);
            let n = (nt + nc) as f64;
            let (py, px) = (y.value(r) as f64 / n, x.value(r) as f64 / n);
            let cov = xy.value(r) as f64 / n - py * px;
            let sd = (py * (1.0 - py) * px * (1.0 - px)).sqrt();
            let rho = if sd > 0.0 { cov / sd } else { 0.0 };
            let factor = 1.0 - rho * rho;
            let name = seg.value(r).to_string();
            out.push(SegmentPlan {
                holdout: holdout(&name).unwrap_or(nc as f64 / n),
                target_users: nt,
                control_users: nc,
                baseline_rate: py,
                value_per_user: v.value(r) / n,
                pre_correlation: rho,
                mde: mde(py, nt, nc, 1.0),
                mde_cuped: mde(py, nt, nc, factor),
                holdout_for_target: holdout_for(py, nt + nc, target, 1.0),
                holdout_for_target_cuped: holdout_for(py, nt + nc, target, factor),
                segment: name,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mde_and_holdout_by_hand() {
        // p = 5%, 9,000 vs 1,000: (1.959964 + 0.841621) · √(0.0475 · (1/9000 + 1/1000))
        // = 2.801585 · √(0.0475 · 0.00111111) = 2.801585 · 0.00726483 = 0.0203530.
        let m = mde(0.05, 9000, 1000, 1.0).unwrap();
        assert!((m - 0.020_353).abs() < 1e-6, "{m}");
        // Halving the variance (ρ² = 0.5) shrinks it by √2.
        let c = mde(0.05, 9000, 1000, 0.5).unwrap();
        assert!((m / c - 2f64.sqrt()).abs() < 1e-12);
        // The holdout that reaches exactly that MDE with 10,000 members is 10%.
        let h = holdout_for(0.05, 10_000, m, 1.0).unwrap();
        assert!((h - 0.10).abs() < 1e-9, "{h}");
        // An effect too small for these members is not reachable at any split.
        assert_eq!(holdout_for(0.05, 10_000, 0.001, 1.0), None);
        assert_eq!(mde(0.0, 10, 10, 1.0), None);
    }
}
