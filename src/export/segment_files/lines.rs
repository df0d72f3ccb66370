//! Rendering rows into the lines of a segment file, hashing each value, in parallel (rayon).

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use rayon::prelude::*;

use super::{Hash, SegmentExport};
use crate::job::ExportFormat;

/// One rendered chunk of rows.
pub(super) struct Rendered {
    pub(super) bytes: Vec<u8>,
    pub(super) ends: Vec<usize>,
    pub(super) dropped: u64,
    pub(super) duplicates: u64,
    pub(super) withheld: u64,
}

fn csv_escape(v: &[u8], out: &mut Vec<u8>) {
    if v.iter().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.push(b'"');
        for b in v {
            if *b == b'"' {
                out.push(b'"');
            }
            out.push(*b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(v);
    }
}

/// Renders rows `a..b` of a batch into lines, in parallel.
pub(super) fn render(
    batch: &RecordBatch,
    a: usize,
    b: usize,
    ex: &SegmentExport,
    hash_of_type: Option<Hash>,
) -> Vec<Rendered> {
    let nf = batch.num_columns() - 5;
    // Keys first; after them, when consent comes from columns, the row's `withheld` mark.
    let nkeys = match ex.format {
        ExportFormat::Csv | ExportFormat::TencentAds => nf,
        _ => ex.fields.len().min(nf),
    };
    let cols: Vec<_> = (0..nkeys)
        .map(|i| batch.column(3 + i).as_string::<i32>())
        .collect();
    let withheld = (nkeys < nf).then(|| batch.column(3 + nkeys).as_string::<i32>());
    let n = batch
        .column(batch.num_columns() - 1)
        .as_primitive::<Int64Type>();
    let tencent = ex.format == ExportFormat::TencentAds;
    let hashes: Vec<Hash> = if ex.format == ExportFormat::Csv {
        vec![Hash::None; nf]
    } else {
        ex.fields.iter().map(|f| f.hash).collect()
    };
    let ranges: Vec<(usize, usize)> = (a..b)
        .step_by(2048)
        .map(|s| (s, (s + 2048).min(b)))
        .collect();
    ranges
        .into_par_iter()
        .map(|(s, e)| {
            let mut out = Rendered {
                bytes: Vec::with_capacity((e - s) * 66),
                ends: Vec::with_capacity(e - s),
                dropped: 0,
                duplicates: 0,
                withheld: 0,
            };
            for r in s..e {
                let count = n.value(r) as u64;
                if tencent {
                    let v = cols[0];
                    if v.is_null(r) {
                        out.dropped += count;
                        continue;
                    }
                    hash_of_type
                        .unwrap_or(Hash::None)
                        .apply(v.value(r).as_bytes(), &mut out.bytes);
                } else {
                    if withheld.is_some_and(|w| w.is_valid(r)) {
                        out.withheld += count;
                        continue;
                    }
                    if cols.iter().all(|c| c.is_null(r)) {
                        out.dropped += count;
                        continue;
                    }
                    for (i, c) in cols.iter().enumerate() {
                        if i > 0 {
                            out.bytes.push(b',');
                        }
                        if c.is_valid(r) {
                            if hashes[i] == Hash::None {
                                csv_escape(c.value(r).as_bytes(), &mut out.bytes);
                            } else {
                                hashes[i].apply(c.value(r).as_bytes(), &mut out.bytes);
                            }
                        }
                    }
                }
                out.bytes.push(b'\n');
                out.ends.push(out.bytes.len());
                out.duplicates += count - 1;
            }
            out
        })
        .collect()
}
