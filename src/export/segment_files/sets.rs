//! What an export's file sets are and how they are sent: Google's one key type per list, the
//! full sends that keep lists fed with deltas alive, and the platforms' minimum list sizes.

use std::collections::BTreeMap;

use object_store::ObjectStoreExt;

use super::{platform, FileSet, Refresh, SegmentEntry, SegmentExport, SendDates};
use crate::error::{Error, Result};
use crate::job::exports::ConsentValue;
use crate::job::ExportFormat;
use crate::storage::Location;

/// Header of Google's mobile-device-id template.
const DEVICE: &str = "Mobile Device ID";

/// One key set of an export: what its file sets are named, and the export restricted to it.
pub(super) struct KeySet {
    /// `contact` / `mobile_device_id` for Google's two key types; `None` for a single set.
    pub(super) name: Option<&'static str>,
    /// Rows left out for consent are counted here (each person once: in the first set).
    pub(super) counts_withheld: bool,
    /// The export with this set's fields only.
    pub(super) export: SegmentExport,
}

/// The export's key sets, each written as its own file sets: a Google export naming both
/// contact information and device ids becomes `contact` and `mobile_device_id`; any other
/// export is one set.
pub(super) fn key_sets(ex: &SegmentExport) -> Vec<KeySet> {
    let device = ex.fields.iter().any(|f| f.header == DEVICE);
    if ex.format != ExportFormat::GoogleCustomerMatch || !device || ex.fields.len() == 1 {
        return vec![KeySet {
            name: None,
            counts_withheld: true,
            export: ex.clone(),
        }];
    }
    let only = |name, keep_device: bool| {
        let mut export = ex.clone();
        export
            .fields
            .retain(|f| (f.header == DEVICE) == keep_device);
        KeySet {
            name: Some(name),
            counts_withheld: !keep_device,
            export,
        }
    };
    vec![only("contact", false), only("mobile_device_id", true)]
}

/// Whether this run sends the whole list (`replace`) or adds and removes (`delta`): the whole
/// list on the first run, then every `full_every` days (lists fed only with deltas expire).
pub(super) fn refresh(ex: &SegmentExport, has_previous: bool, d: SendDates) -> Option<Refresh> {
    if !ex.deltas {
        return None;
    }
    let every = i64::from(ex.full_every_days);
    let full = match (has_previous, d.last_full) {
        (true, Some(last)) => (d.today - last).num_days() >= every,
        _ => true,
    };
    let last = if full {
        d.today
    } else {
        d.last_full.unwrap_or(d.today)
    };
    Some(Refresh {
        mode: if full { "replace" } else { "delta" },
        last_full: last.to_string(),
        next_full: (last + chrono::Duration::days(every)).to_string(),
        every_days: ex.full_every_days,
    })
}

/// Marks each file set with how it is uploaded: the target list as `replace` on a full send;
/// adds and removes as `append` and `reduce` (Tencent's `APPEND` / `REDUCE`).
pub(super) fn mark_operations(ex: &SegmentExport, refresh: Option<&Refresh>, sets: &mut [FileSet]) {
    let Some(r) = refresh else { return };
    let tencent = ex.format == ExportFormat::TencentAds;
    for set in sets {
        set.operation = match (set.part.as_str(), r.mode, tencent) {
            ("target", "replace", _) => Some("replace"),
            ("adds", _, false) => Some("append"),
            ("adds", _, true) => Some("APPEND"),
            ("removes", _, false) => Some("reduce"),
            ("removes", _, true) => Some("REDUCE"),
            _ => None,
        };
    }
}

/// The consent signals to set on a Google upload: fixed ones as given; those read per row are
/// `GRANTED` (only people with consent are written).
pub(super) fn consent_signals(ex: &SegmentExport) -> BTreeMap<String, String> {
    ex.consent
        .iter()
        .map(|c| {
            let v = match &c.value {
                ConsentValue::Fixed(v) => v.clone(),
                ConsentValue::Column(_) => "GRANTED".to_string(),
            };
            (c.header.clone(), v)
        })
        .collect()
}

/// With `platform_floor`: each target (or replacing) file set with fewer valid rows than the
/// platform's minimum is held back (its files removed) with a warning, or fails the run with
/// `required`. A segment left without a target set is not exported. Returns the floor applied.
pub(super) async fn apply_floor(
    ex: &SegmentExport,
    label: &str,
    run_dir: &Location,
    entries: &mut BTreeMap<String, SegmentEntry>,
    warnings: &mut Vec<String>,
) -> Result<Option<u64>> {
    if !ex.platform_floor {
        return Ok(None);
    }
    let Some((floor, rule)) = platform::platform_floor(ex.format) else {
        return Ok(None);
    };
    for e in entries.values_mut().filter(|e| e.exported) {
        let mut held = Vec::new();
        for set in e.file_sets.iter().filter(|s| s.part == "target") {
            if set.rows < floor {
                let name = set_name(set);
                let why = format!(
                    "{name}{} valid rows, below the platform's minimum of {floor} ({rule})",
                    set.rows
                );
                if ex.required {
                    return Err(Error::data(
                        format!("{label}, segment `{}`", e.segment),
                        format!("{why}; the export says required = true"),
                    ));
                }
                warnings.push(format!("{label}: segment `{}` held back: {why}", e.segment));
                held.push((set.id_type.clone(), set.open_app_id.clone(), why));
            }
        }
        if held.is_empty() {
            continue;
        }
        // The held-back sets go with every part of theirs (control, adds, removes).
        let mut kept = Vec::new();
        for set in std::mem::take(&mut e.file_sets) {
            if held
                .iter()
                .any(|(t, a, _)| *t == set.id_type && *a == set.open_app_id)
            {
                for f in &set.files {
                    let loc = run_dir.child(&f.path)?;
                    let _ = loc.store.delete(&loc.path).await;
                }
                if let Some(r) = e.rows.get_mut(&set.part) {
                    *r -= set.rows;
                }
            } else {
                kept.push(set);
            }
        }
        e.file_sets = kept;
        e.rows.retain(|_, r| *r > 0);
        if !e.file_sets.iter().any(|s| s.part == "target") {
            e.exported = false;
            e.skipped = Some(held.pop().map(|h| h.2).unwrap_or_default());
        }
    }
    Ok(Some(floor))
}

/// `WECHAT_OPENID wx123: ` / `CONTACT: ` / nothing: the set a message is about.
fn set_name(set: &FileSet) -> String {
    match (&set.id_type, &set.open_app_id) {
        (Some(t), Some(a)) => format!("{t} {a}: "),
        (Some(t), None) => format!("{t}: "),
        _ => String::new(),
    }
}
