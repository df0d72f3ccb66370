//! `report.html`: one self-contained page per run for people to glance at — segment sizes and
//! overlaps, cluster profiles as a heatmap, the lifecycle funnel and transition matrix, LTV
//! deciles, the lookalike gain curve and tier quality, propensity backtests and calibration,
//! and campaign lift once measured.
//!
//! Charts are inline SVG drawn with plotters; there is no script and no network access, so the
//! page reads the same offline and in any mail client. Every number computed over fewer than
//! `min_cell_size` users (default 50) is shown as suppressed, so the report never exposes a
//! small group.

mod overlaps;

use std::collections::BTreeMap;
use std::fmt::Write;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use plotters::prelude::*;

use crate::engine::Engine;
use crate::error::Result;
use crate::measure::Lift;

mod lift;
mod plan;
mod propensity;

use crate::segments::Segments;
use crate::steps::kmeans::KMeansModel;
use crate::steps::lookalike::LookalikeModel;
pub use lift::{lift_section, with_lift};
pub use plan::{plan_section, with_plan};

/// Everything the page shows.
#[derive(Debug, Default, Clone)]
pub struct ReportData {
    /// Job name.
    pub job: String,
    /// Date folder.
    pub date: String,
    /// Run id.
    pub run_id: String,
    /// Segment sizes.
    pub segments: Segments,
    /// Users in the target groups of two segments: (a, b, users).
    pub overlaps: Vec<(String, String, u64)>,
    /// k-means models.
    pub clusters: Vec<KMeansModel>,
    /// Lookalike models.
    pub lookalikes: Vec<LookalikeModel>,
    /// Propensity models and their backtests.
    pub propensities: Vec<crate::steps::propensity::PropensityModel>,
    /// Users per lifecycle stage, in funnel order.
    pub funnel: Vec<(String, u64)>,
    /// Users per (from stage, to stage).
    pub transitions: Vec<(String, String, u64)>,
    /// Per LTV decile: users, mean predicted value.
    pub ltv_deciles: Vec<(i64, u64, f64)>,
    /// Lift per segment, once a campaign is measured.
    pub lifts: Vec<Lift>,
    /// Smallest group a number may describe.
    pub min_cell_size: u64,
}

const STAGES: [&str; 5] = ["none", "awareness", "intent", "conversion", "advocacy"];

async fn rows(engine: &Engine, sql: &str) -> Result<Vec<datafusion::arrow::array::RecordBatch>> {
    crate::engine::sql::collect(engine, sql, "report").await
}

fn text_col(b: &datafusion::arrow::array::RecordBatch, i: usize) -> Vec<String> {
    let c =
        datafusion::arrow::compute::cast(b.column(i), &DataType::Utf8).expect("castable to text");
    let c = c.as_string::<i32>();
    (0..c.len()).map(|j| c.value(j).to_string()).collect()
}

fn int_col(b: &datafusion::arrow::array::RecordBatch, i: usize) -> Vec<i64> {
    let c =
        datafusion::arrow::compute::cast(b.column(i), &DataType::Int64).expect("castable to int");
    let c = c.as_primitive::<Int64Type>();
    (0..c.len())
        .map(|j| if c.is_valid(j) { c.value(j) } else { 0 })
        .collect()
}

/// Reads what the page shows from the run's tables: overlaps from the members table, the
/// funnel from a step with a `stage` column, the transition matrix from one with
/// `from_stage`/`to_stage`/`users`, deciles from an ltv step's table.
pub async fn gather(
    engine: &Engine,
    job: &crate::job::Job,
    steps: &[crate::steps::StepResult],
    segments: &Segments,
) -> Result<ReportData> {
    let mut data = ReportData {
        segments: segments.clone(),
        min_cell_size: job.report_min_cell_size,
        ..Default::default()
    };
    if !segments.segments.is_empty() && segments.segments.len() <= 60 {
        let members = rows(
            engine,
            &format!(
                "SELECT arrow_cast(segment, 'Utf8'), arrow_cast(user_id, 'Utf8') FROM {} WHERE grp = 'target'",
                crate::segments::MEMBERS
            ),
        )
        .await?;
        data.overlaps = tokio::task::block_in_place(|| overlaps::overlaps(&members));
    }
    for r in steps {
        if let Some(m) = &r.model {
            data.clusters.push(m.clone());
        }
        if let Some(m) = &r.lookalike {
            data.lookalikes.push(m.clone());
        }
        if let Some(m) = &r.propensity {
            data.propensities.push(m.clone());
        }
        let Ok(t) = engine.ctx.table(r.name.as_str()).await else {
            continue;
        };
        let cols: Vec<String> = crate::engine::sql::column_names(&t).into_iter().collect();
        let has = |c: &str| cols.iter().any(|x| x == c);
        if r.ltv.is_some() {
            for b in rows(
                engine,
                &format!(
                    "SELECT ltv_decile, COUNT(*), AVG(ltv) FROM \"{}\" GROUP BY 1 ORDER BY 1",
                    r.name
                ),
            )
            .await?
            {
                let (d, n) = (int_col(&b, 0), int_col(&b, 1));
                let v = b.column(2).as_primitive::<Float64Type>();
                for i in 0..b.num_rows() {
                    data.ltv_deciles.push((d[i], n[i] as u64, v.value(i)));
                }
            }
        } else if has("from_stage")
            && has("to_stage")
            && has("users")
            && data.transitions.is_empty()
        {
            for b in rows(
                engine,
                &format!("SELECT from_stage, to_stage, users FROM \"{}\"", r.name),
            )
            .await?
            {
                let (f, t2, n) = (text_col(&b, 0), text_col(&b, 1), int_col(&b, 2));
                for i in 0..b.num_rows() {
                    data.transitions
                        .push((f[i].clone(), t2[i].clone(), n[i] as u64));
                }
            }
        } else if has("stage") && !has("from_stage") && data.funnel.is_empty() {
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for b in rows(
                engine,
                &format!("SELECT stage, COUNT(*) FROM \"{}\" GROUP BY 1", r.name),
            )
            .await?
            {
                let (s, n) = (text_col(&b, 0), int_col(&b, 1));
                for i in 0..b.num_rows() {
                    counts.insert(s[i].clone(), n[i] as u64);
                }
            }
            data.funnel = STAGES
                .iter()
                .skip(1)
                .map(|s| (s.to_string(), counts.get(*s).copied().unwrap_or(0)))
                .collect();
        }
    }
    Ok(data)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A count, or `< min` when the group is too small to show (an empty group exposes nobody).
fn cell(n: u64, min: u64) -> String {
    if n > 0 && n < min {
        format!("<span class=\"suppressed\">&lt; {min}</span>")
    } else {
        n.to_string()
    }
}

fn bars(title: &str, items: &[(String, f64)], fmt_x: &dyn Fn(f64) -> String) -> String {
    let mut s = String::new();
    if items.is_empty() {
        return s;
    }
    let h = 60 + 22 * items.len() as u32;
    {
        let root = SVGBackend::with_string(&mut s, (720, h)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let max = items.iter().map(|i| i.1).fold(0.0f64, f64::max).max(1e-9) * 1.1;
        let labels: Vec<String> = items.iter().map(|i| i.0.clone()).collect();
        if let Ok(mut chart) = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(200)
            .build_cartesian_2d(0f64..max, (0..items.len()).into_segmented())
        {
            let _ = chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(items.len())
                .x_label_formatter(&|v| fmt_x(*v))
                .y_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                    _ => String::new(),
                })
                .draw();
            let _ = chart.draw_series(items.iter().enumerate().map(|(i, (_, v))| {
                Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(i)),
                        (*v, SegmentValue::Exact(i + 1)),
                    ],
                    RGBColor(49, 104, 176).filled(),
                )
            }));
        }
        let _ = root.present();
    }
    s
}

fn heatmap(model: &KMeansModel, min: u64) -> String {
    let clusters: Vec<_> = model
        .clusters
        .iter()
        .filter(|c| c.size as u64 >= min)
        .collect();
    let features: Vec<String> = model
        .clusters
        .first()
        .map(|c| c.means.keys().cloned().collect())
        .unwrap_or_default();
    let mut s = String::new();
    if clusters.is_empty() || features.is_empty() {
        return s;
    }
    // Each feature's colour runs from its lowest to its highest cluster mean.
    let range: Vec<(f64, f64)> = features
        .iter()
        .map(|f| {
            let v = clusters.iter().map(|c| c.means[f]);
            (
                v.clone().fold(f64::INFINITY, f64::min),
                v.fold(f64::NEG_INFINITY, f64::max),
            )
        })
        .collect();
    let (cw, ch) = (46u32, 20u32);
    let (left, top) = (200u32, 40u32);
    {
        let root = SVGBackend::with_string(
            &mut s,
            (
                left + cw * clusters.len() as u32 + 20,
                top + ch * features.len() as u32 + 20,
            ),
        )
        .into_drawing_area();
        let _ = root.fill(&WHITE);
        let style = ("sans-serif", 12).into_font();
        let _ = root.draw(&Text::new(
            format!(
                "{}: mean per cluster (colour: low → high among clusters)",
                model.step
            ),
            (4, 4),
            style.clone(),
        ));
        for (j, c) in clusters.iter().enumerate() {
            let _ = root.draw(&Text::new(
                format!("c{}", c.id),
                ((left + cw * j as u32 + 8) as i32, 22),
                style.clone(),
            ));
        }
        for (i, f) in features.iter().enumerate() {
            let y = (top + ch * i as u32) as i32;
            let _ = root.draw(&Text::new(f.clone(), (4, y + 4), style.clone()));
            for (j, c) in clusters.iter().enumerate() {
                let (lo, hi) = range[i];
                let t = if hi > lo {
                    (c.means[f] - lo) / (hi - lo)
                } else {
                    0.5
                };
                let col = RGBColor((255.0 - 200.0 * t) as u8, (255.0 - 150.0 * t) as u8, 255);
                let x = (left + cw * j as u32) as i32;
                let _ = root.draw(&Rectangle::new(
                    [(x, y), (x + cw as i32 - 2, y + ch as i32 - 2)],
                    col.filled(),
                ));
            }
        }
        let _ = root.present();
    }
    s
}

fn gain_curve(m: &LookalikeModel) -> String {
    let mut s = String::new();
    let mut pts = vec![(0.0, 0.0)];
    for t in &m.tiers {
        let reach = t.tier.trim_end_matches('%').parse::<f64>().unwrap_or(0.0) / 100.0;
        pts.push((reach, t.recall));
    }
    if pts.len() < 2 {
        return s;
    }
    let xmax = pts.iter().map(|p| p.0).fold(0.0, f64::max).max(0.01);
    {
        let root = SVGBackend::with_string(&mut s, (480, 320)).into_drawing_area();
        let _ = root.fill(&WHITE);
        if let Ok(mut chart) = ChartBuilder::on(&root)
            .caption(
                format!("{}: held-out seed found vs reach", m.step),
                ("sans-serif", 15),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(0f64..xmax, 0f64..1f64)
        {
            let _ = chart
                .configure_mesh()
                .x_desc("reach (share of candidates)")
                .y_desc("recall")
                .draw();
            let _ = chart.draw_series(LineSeries::new(
                pts.clone(),
                RGBColor(49, 104, 176).stroke_width(2),
            ));
            let _ = chart.draw_series(LineSeries::new(
                vec![(0.0, 0.0), (xmax, xmax)],
                RGBColor(160, 160, 160),
            ));
        }
        let _ = root.present();
    }
    s
}

/// The page.
pub fn render(d: &ReportData) -> String {
    let min = d.min_cell_size;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{job} {date}</title>\n<style>body{{font-family:sans-serif;margin:24px;max-width:1100px}}table{{border-collapse:collapse;margin:8px 0 20px}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f2f2f2}}td.l,th.l{{text-align:left}}.suppressed{{color:#888}}.error{{color:#b00020;font-weight:bold}}h2{{margin-top:32px}}</style></head><body>\n<h1>{job} — {date}</h1>\n<p>Run {run}. Numbers over fewer than {min} users are suppressed.</p>\n",
        job = esc(&d.job),
        date = esc(&d.date),
        run = esc(&d.run_id),
    );
    if !d.segments.segments.is_empty() {
        h.push_str("<h2>Segments</h2>\n");
        let items: Vec<(String, f64)> = d
            .segments
            .segments
            .iter()
            .filter(|s| s.target >= min)
            .map(|s| (s.name.clone(), s.target as f64))
            .collect();
        h.push_str(&bars("Target users per segment", &items, &|v| {
            format!("{v:.0}")
        }));
        h.push_str("<table id=\"segments\"><tr><th class=\"l\">segment</th><th>target</th><th>control</th><th>suppressed</th></tr>\n");
        for s in &d.segments.segments {
            let _ = writeln!(
                h,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.name),
                cell(s.target, min),
                cell(s.control, min),
                cell(s.suppressed, min)
            );
        }
        h.push_str("</table>\n");
        if !d.overlaps.is_empty() {
            h.push_str("<h3>Overlaps (users in both target groups)</h3>\n<table id=\"overlaps\"><tr><th class=\"l\">segment</th><th class=\"l\">segment</th><th>users</th></tr>\n");
            for (a, b, n) in &d.overlaps {
                let _ = writeln!(
                    h,
                    "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td></tr>",
                    esc(a),
                    esc(b),
                    cell(*n, min)
                );
            }
            h.push_str("</table>\n");
        }
    }
    for m in &d.clusters {
        let _ = writeln!(h, "<h2>Clusters: {}</h2>", esc(&m.step));
        h.push_str(&heatmap(m, min));
        h.push_str("<table class=\"clusters\"><tr><th>cluster</th><th>users</th><th>share</th><th class=\"l\">label</th></tr>\n");
        for c in &m.clusters {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
                c.id,
                cell(c.size as u64, min),
                if (c.size as u64) < min {
                    String::new()
                } else {
                    format!("{:.1}%", 100.0 * c.share)
                },
                if (c.size as u64) < min {
                    String::new()
                } else {
                    esc(&c.label)
                }
            );
        }
        h.push_str("</table>\n");
    }
    if !d.funnel.is_empty() {
        h.push_str("<h2>Lifecycle</h2>\n");
        let items: Vec<(String, f64)> = d
            .funnel
            .iter()
            .map(|(s, n)| (s.clone(), if *n < min { 0.0 } else { *n as f64 }))
            .collect();
        h.push_str(&bars("Users per stage", &items, &|v| format!("{v:.0}")));
        h.push_str("<table id=\"funnel\"><tr><th class=\"l\">stage</th><th>users</th></tr>\n");
        for (s, n) in &d.funnel {
            let _ = writeln!(
                h,
                "<tr><td class=\"l\">{}</td><td>{}</td></tr>",
                esc(s),
                cell(*n, min)
            );
        }
        h.push_str("</table>\n");
    }
    if !d.transitions.is_empty() {
        let stages: Vec<String> = {
            let mut v: Vec<String> = STAGES.iter().map(|s| s.to_string()).collect();
            for (f, t, _) in &d.transitions {
                for s in [f, t] {
                    if !v.contains(s) {
                        v.insert(0, s.clone());
                    }
                }
            }
            v
        };
        h.push_str("<h3>Transitions since the previous run (rows: from, columns: to)</h3>\n<table id=\"transitions\"><tr><th class=\"l\">from \\ to</th>");
        for s in &stages {
            let _ = write!(h, "<th>{}</th>", esc(s));
        }
        h.push_str("</tr>\n");
        for f in &stages {
            if !d.transitions.iter().any(|(a, _, _)| a == f) {
                continue;
            }
            let _ = write!(h, "<tr><td class=\"l\">{}</td>", esc(f));
            for t in &stages {
                let n = d
                    .transitions
                    .iter()
                    .find(|(a, b, _)| a == f && b == t)
                    .map(|x| x.2)
                    .unwrap_or(0);
                let _ = write!(h, "<td>{}</td>", cell(n, min));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }
    if !d.ltv_deciles.is_empty() {
        h.push_str("<h2>Lifetime value</h2>\n");
        let items: Vec<(String, f64)> = d
            .ltv_deciles
            .iter()
            .filter(|x| x.1 >= min)
            .map(|(k, _, v)| (format!("decile {k}"), *v))
            .collect();
        h.push_str(&bars(
            "Mean predicted value per decile (1 = top 10%)",
            &items,
            &|v| format!("{v:.0}"),
        ));
        h.push_str("<table id=\"ltv\"><tr><th>decile</th><th>users</th><th>mean value</th></tr>\n");
        for (k, n, v) in &d.ltv_deciles {
            let _ = writeln!(
                h,
                "<tr><td>{k}</td><td>{}</td><td>{}</td></tr>",
                cell(*n, min),
                if *n < min {
                    String::new()
                } else {
                    format!("{v:.2}")
                }
            );
        }
        h.push_str("</table>\n");
    }
    for m in &d.lookalikes {
        let _ = writeln!(
            h,
            "<h2>Lookalike: {}</h2>\n<p>AUC on the held-out seed: {:.3}</p>",
            esc(&m.step),
            m.auc
        );
        h.push_str(&gain_curve(m));
        h.push_str("<table class=\"tiers\"><tr><th class=\"l\">tier</th><th>users</th><th>recall</th><th>lift</th></tr>\n");
        for t in &m.tiers {
            let small = (t.users as u64) < min;
            let _ = writeln!(
                h,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&t.tier),
                cell(t.users as u64, min),
                if small {
                    String::new()
                } else {
                    format!("{:.3}", t.recall)
                },
                if small {
                    String::new()
                } else {
                    format!("{:.2}", t.lift)
                }
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str(&propensity::section(&d.propensities, min));
    h.push_str(&lift_section(&d.lifts, min));
    h.push_str("</body></html>\n");
    h
}
