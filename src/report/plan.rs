//! The plan section of a report: before a campaign, what each segment's holdout can detect
//! (`audiences plan`).

use std::fmt::Write;

use super::{cell, esc};
use crate::measure::plan::SegmentPlan;

/// The plan table (segments under `min` users in a group suppressed); `target` is the lift to
/// detect, as a share.
pub fn plan_section(plans: &[SegmentPlan], min: u64, baseline: &str, target: f64) -> String {
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<h2>Campaign plan</h2>\n<p>Baseline: the campaign outcome over {}. MDE: the smallest lift in conversion rate the split detects 80% of the time at 5% significance; the holdout columns give the share that detects {:.2} percentage points.</p>",
        esc(baseline),
        100.0 * target
    );
    h.push_str("<table id=\"plan\"><tr><th class=\"l\">segment</th><th>target</th><th>control</th><th>holdout</th><th>baseline rate</th><th>value per user</th><th>MDE (pp)</th><th>MDE with CUPED (pp)</th><th>holdout for the target lift</th><th>with CUPED</th></tr>\n");
    let pp = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.2}", 100.0 * v));
    let share =
        |v: Option<f64>| v.map_or("unreachable".to_string(), |v| format!("{:.1}%", 100.0 * v));
    for p in plans {
        if p.target_users < min || p.control_users < min {
            let _ = writeln!(h, "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td colspan=\"7\" class=\"suppressed\">suppressed</td></tr>", esc(&p.segment), cell(p.target_users, min), cell(p.control_users, min));
            continue;
        }
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{:.2}%</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.segment),
            p.target_users,
            p.control_users,
            100.0 * p.holdout,
            100.0 * p.baseline_rate,
            p.value_per_user,
            pp(p.mde),
            pp(p.mde_cuped),
            share(p.holdout_for_target),
            share(p.holdout_for_target_cuped)
        );
    }
    h.push_str("</table>\n");
    h
}

/// A run's page with the plan section added before its end (or the section alone).
pub fn with_plan(run_page: Option<&str>, section: &str) -> String {
    match run_page.and_then(|p| p.rfind("</body>").map(|i| (p, i))) {
        Some((p, i)) => format!("{}{section}{}", &p[..i], &p[i..]),
        None => format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Campaign plan</title></head><body>\n{section}</body></html>\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(nt: u64, nc: u64) -> SegmentPlan {
        SegmentPlan {
            segment: "s".into(),
            target_users: nt,
            control_users: nc,
            holdout: 0.1,
            baseline_rate: 0.05,
            value_per_user: 1.0,
            pre_correlation: 0.0,
            mde: Some(0.02),
            mde_cuped: Some(0.019),
            holdout_for_target: None,
            holdout_for_target_cuped: Some(0.25),
        }
    }

    #[test]
    fn small_groups_are_suppressed_and_others_shown() {
        let h = plan_section(&[segment(900, 100)], 50, "a .. b", 0.01);
        assert!(
            h.contains("<td>2.00</td><td>1.90</td><td>unreachable</td><td>25.0%</td>"),
            "{h}"
        );
        let h = plan_section(&[segment(900, 30)], 50, "a .. b", 0.01);
        assert!(h.contains("suppressed") && !h.contains("2.00"), "{h}");
    }
}
