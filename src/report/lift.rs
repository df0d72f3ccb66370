//! The lift section of a report: each segment's target against its control group, after a
//! campaign (`audiences measure`).

use std::fmt::Write;

use super::{bars, cell, esc, render, ReportData};
use crate::measure::Lift;

/// The lift section: a chart and a table (groups under `min` users suppressed).
pub fn lift_section(lifts: &[Lift], min: u64) -> String {
    let mut h = String::new();
    if !lifts.is_empty() {
        h.push_str("<h2>Campaign lift (target vs control)</h2>\n");
        let shown: Vec<&Lift> = lifts
            .iter()
            .filter(|l| l.target_users >= min && l.control_users >= min)
            .collect();
        let items: Vec<(String, f64)> = shown
            .iter()
            .map(|l| {
                (
                    l.part
                        .as_ref()
                        .map(|p| format!("{} [{p}]", l.segment))
                        .unwrap_or(l.segment.clone()),
                    100.0 * l.absolute_lift.max(0.0),
                )
            })
            .collect();
        h.push_str(&bars(
            "Lift in conversion rate, percentage points (negative shown as 0)",
            &items,
            &|v| format!("{v:.1}"),
        ));
        // A broken split makes its lifts unreadable: said first, as an error.
        for l in lifts
            .iter()
            .filter(|l| l.sample_ratio_mismatch && l.part.is_none())
        {
            let _ = writeln!(
                h,
                "<p class=\"error\">Error: sample ratio mismatch in <b>{}</b>: the target and control counts do not match the {:.1}% holdout it was split with (p = {:.2e}); do not read its lift.</p>",
                esc(&l.segment),
                100.0 * l.holdout.unwrap_or_default(),
                l.sample_ratio_p.unwrap_or_default()
            );
        }
        h.push_str("<table id=\"lift\"><tr><th class=\"l\">segment</th><th>target</th><th>control</th><th>target rate</th><th>control rate</th><th>lift (pp)</th><th>95% interval (pp)</th><th>always-valid interval (pp)</th><th>p</th><th>q (Benjamini–Hochberg)</th><th>incremental conversions</th><th>incremental value</th></tr>\n");
        for l in lifts {
            let name = l
                .part
                .as_ref()
                .map(|p| format!("{} [{p}]", l.segment))
                .unwrap_or(l.segment.clone());
            if l.target_users < min || l.control_users < min {
                let _ = writeln!(h, "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td colspan=\"9\" class=\"suppressed\">suppressed</td></tr>", esc(&name), cell(l.target_users, min), cell(l.control_users, min));
                continue;
            }
            let _ = writeln!(
                h,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{:.2}%</td><td>{:.2}%</td><td>{:.2}</td><td>[{:.2}, {:.2}]</td><td>[{:.2}, {:.2}]</td><td>{:.4}</td><td>{:.4}{}</td><td>{:.1}</td><td>{:.2}</td></tr>",
                esc(&name),
                l.target_users,
                l.control_users,
                100.0 * l.target_rate,
                100.0 * l.control_rate,
                100.0 * l.absolute_lift,
                100.0 * l.absolute_ci.0,
                100.0 * l.absolute_ci.1,
                100.0 * l.always_valid_ci.0,
                100.0 * l.always_valid_ci.1,
                l.p_value,
                l.q_value,
                if l.significant { " *" } else { "" },
                l.incremental_conversions,
                l.incremental_value
            );
        }
        h.push_str("</table>\n");
    }
    h
}

/// A run's page with the lift section added: the run's own `report.html` when it exists
/// (`run_page`), else a page of the lift alone.
pub fn with_lift(run_page: Option<&str>, d: &ReportData) -> String {
    match run_page.and_then(|p| p.rfind("</body>").map(|i| (p, i))) {
        Some((p, i)) => format!(
            "{}{}{}",
            &p[..i],
            lift_section(&d.lifts, d.min_cell_size),
            &p[i..]
        ),
        None => render(d),
    }
}
