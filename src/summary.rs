//! The run summary printed at the end of `run`: rows and time per step, where outputs went.

use std::fmt::Write;

use crate::engine::materialise::Held;
use crate::pipeline::RunReport;

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Renders the summary as plain text.
pub fn render(r: &RunReport) -> String {
    let mut s = String::new();
    let params: Vec<String> = r
        .bindings
        .iter()
        .map(|(k, v)| format!("{k}={}", v.to_template_text()))
        .collect();
    let _ = writeln!(s, "job {}  ({})", r.job, params.join(", "));
    let _ = writeln!(s, "sources:");
    for src in &r.sources {
        let _ = writeln!(
            s,
            "  {:<24} {:>5} files {:>10}  {}{}",
            src.name,
            src.files,
            human_bytes(src.bytes),
            src.url,
            if src.empty { "  EMPTY" } else { "" }
        );
        if !src.dropped.is_empty() {
            let parts: Vec<String> = src
                .dropped
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(s, "    dirty rows left out: {}", parts.join(", "));
        }
    }
    let _ = writeln!(s, "steps:");
    for st in &r.steps {
        let held = match &st.held {
            Held::Memory(_) if st.incremental.is_some() => "state".to_string(),
            Held::Memory(b) => format!("memory {}", human_bytes(*b as u64)),
            Held::Spilled(_, b) => format!("spilled {}", human_bytes(*b)),
            Held::Cluster => "cluster".to_string(),
        };
        let _ = writeln!(
            s,
            "  {:<24} {:>12} rows {:>9.2} s   {held}",
            st.name,
            st.rows,
            st.elapsed.as_secs_f64()
        );
        if let Some(u) = &st.model_use {
            let _ = writeln!(s, "    model: {}", u.describe());
        }
        if let Some(m) = &st.model {
            s.push_str(&crate::steps::kmeans::render_profiles(m));
        }
        if let Some(m) = &st.lookalike {
            s.push_str(&crate::steps::lookalike::render(m));
        }
        if let Some(m) = &st.ltv {
            s.push_str(&crate::steps::ltv::render(m));
        }
        if let Some(m) = &st.propensity {
            s.push_str(&crate::steps::propensity::render(m));
        }
        if let Some(i) = &st.incremental {
            let _ = writeln!(
                s,
                "    incremental: window {} .. {}: {} days computed, {} reused from the state, {} pruned",
                i.window.0,
                i.window.1,
                i.computed.len(),
                i.reused,
                i.pruned
            );
            if let Some(m) = &i.merged {
                let how = match &m.remerged_because {
                    None => format!(
                        "{} days merged into the kept rows, {} taken out ({} days kept as they were)",
                        m.days_merged, m.days_removed, m.days_kept
                    ),
                    Some(why) => format!("all {} days merged ({why})", m.days_merged),
                };
                let _ = writeln!(s, "    merged: {} rows by key; {how}", m.rows);
            }
        }
    }
    if !r.exports.is_empty() {
        let _ = writeln!(s, "exports:");
        for e in &r.exports {
            let _ = writeln!(
                s,
                "  {:<24} {:>12} rows {:>10}  {}",
                e.table,
                e.rows,
                human_bytes(e.bytes),
                e.url
            );
        }
    }
    if !r.segments.segments.is_empty() {
        let _ = writeln!(
            s,
            "segments:                          target    control  suppressed  removed by priority"
        );
        for c in &r.segments.segments {
            let _ = writeln!(
                s,
                "  {:<28} {:>10} {:>10} {:>11} {:>20}",
                c.name, c.target, c.control, c.suppressed, c.removed_by_priority
            );
        }
    }
    for e in &r.segment_exports {
        let files: usize = e
            .segments
            .iter()
            .flat_map(|s| s.file_sets.iter())
            .map(|f| f.files.len())
            .sum();
        let exported = e.segments.iter().filter(|s| s.exported).count();
        let rows: u64 = e
            .segments
            .iter()
            .map(|s| s.rows.get("target").copied().unwrap_or(0))
            .sum();
        let dropped: u64 = e.segments.iter().map(|s| s.dropped_invalid).sum();
        let _ = writeln!(
            s,
            "export {:<22} {exported} segments, {rows} target rows in {files} files, {dropped} rows without a valid id  -> {}/",
            e.format, e.to
        );
        if let Some(r) = &e.refresh {
            let what = match r.mode {
                "replace" => "the whole list, to replace the platform's".to_string(),
                _ => format!(
                    "adds and removes against run {}",
                    e.deltas_against.as_deref().unwrap_or("-")
                ),
            };
            let _ = writeln!(s, "  sends {what}; the whole list again on {}", r.next_full);
        }
        let withheld: u64 = e.segments.iter().map(|s| s.consent_withheld).sum();
        if withheld > 0 {
            let _ = writeln!(s, "  {withheld} rows left out without consent");
        }
    }
    if !r.gates.is_empty() {
        let _ = writeln!(
            s,
            "quality gates: {} passed",
            r.gates.iter().filter(|g| g.passed).count()
        );
    }
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    let _ = writeln!(s, "published: {} (run {})", r.output, r.run_id);
    let _ = writeln!(s, "done in {:.2} s", r.elapsed.as_secs_f64());
    if let Some(full) = &r.last_full {
        let secs = r.elapsed.as_secs_f64();
        let _ = writeln!(
            s,
            "night: {secs:.2} s, {:.1}x less than the last full run ({}, run {}: {:.2} s)",
            full.seconds / secs.max(1e-9),
            full.date,
            full.run_id,
            full.seconds
        );
    }
    s
}
