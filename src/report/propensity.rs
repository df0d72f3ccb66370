//! The report's propensity sections: each step's backtest (AUC, Brier score, per-tier
//! precision, lift and recall) and its reliability curve, predicted against observed rates.

use std::fmt::Write;

use plotters::prelude::*;

use super::{cell, esc};
use crate::steps::propensity::PropensityModel;

/// Predicted against observed rate per decile of the score, with the diagonal of a perfectly
/// calibrated model.
fn reliability_chart(m: &PropensityModel) -> String {
    let mut s = String::new();
    let pts: Vec<(f64, f64)> = m
        .backtest
        .reliability
        .iter()
        .map(|b| (b.predicted, b.observed))
        .collect();
    if pts.is_empty() {
        return s;
    }
    let top = pts
        .iter()
        .map(|p| p.0.max(p.1))
        .fold(0.0, f64::max)
        .max(0.01)
        * 1.05;
    {
        let root = SVGBackend::with_string(&mut s, (480, 320)).into_drawing_area();
        let _ = root.fill(&WHITE);
        if let Ok(mut chart) = ChartBuilder::on(&root)
            .caption(
                format!("{}: observed vs predicted rate by decile", m.step),
                ("sans-serif", 15),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(0f64..top, 0f64..top)
        {
            let _ = chart
                .configure_mesh()
                .x_desc("predicted")
                .y_desc("observed")
                .draw();
            let _ = chart.draw_series(LineSeries::new(
                vec![(0.0, 0.0), (top, top)],
                RGBColor(160, 160, 160),
            ));
            let _ = chart.draw_series(LineSeries::new(
                pts.clone(),
                RGBColor(49, 104, 176).stroke_width(2),
            ));
            let _ = chart.draw_series(
                pts.iter()
                    .map(|p| Circle::new(*p, 3, RGBColor(49, 104, 176).filled())),
            );
        }
        let _ = root.present();
    }
    s
}

/// One section per propensity step; tiers of fewer than `min` users show no rates.
pub fn section(models: &[PropensityModel], min: u64) -> String {
    let mut h = String::new();
    for m in models {
        let b = &m.backtest;
        let _ = writeln!(
            h,
            "<h2>Propensity: {step}</h2>\n<p>Who does it in the {days} days after the run's date. Model trained on the features as of {t1}, labelled by {t1} .. {end}. Backtest: trained as of {bt}, {users} users as of {bs} ranked against {bs} .. {be}: AUC {auc:.3}{warn}, Brier score {brier:.4}, base rate {base:.2}%.</p>",
            step = esc(&m.step),
            days = m.horizon_days,
            t1 = m.trained_as_of,
            end = m.label_end,
            bt = b.trained_as_of,
            bs = b.scored_as_of,
            be = b.label_end,
            users = cell(b.users as u64, min),
            auc = b.auc,
            warn = if b.auc < m.min_auc {
                format!(" <span class=\"error\">(below min_auc {})</span>", m.min_auc)
            } else {
                String::new()
            },
            brier = b.brier,
            base = b.base_rate * 100.0,
        );
        h.push_str(&reliability_chart(m));
        h.push_str("<table class=\"tiers\"><tr><th class=\"l\">tier</th><th>users today</th><th>backtest users</th><th>precision</th><th>lift</th><th>recall</th></tr>\n");
        for t in &b.tiers {
            let today = m
                .tiers
                .iter()
                .find(|(l, _)| *l == t.tier)
                .map(|(_, n)| *n as u64)
                .unwrap_or(0);
            let small = (t.users as u64) < min;
            let rate = |v: f64, pct: bool| match (small, pct) {
                (true, _) => String::new(),
                (false, true) => format!("{:.1}%", v * 100.0),
                (false, false) => format!("{v:.2}"),
            };
            let _ = writeln!(
                h,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&t.tier),
                cell(today, min),
                cell(t.users as u64, min),
                rate(t.precision, true),
                rate(t.lift, false),
                rate(t.recall, true)
            );
        }
        h.push_str("</table>\n");
    }
    h
}
