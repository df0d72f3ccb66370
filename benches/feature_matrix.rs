//! Benchmark: peak heap while building the feature matrix from Arrow batches, as a multiple of
//! the f64 matrix's own size, and the build time. 1,000,000 rows × 24 numeric columns (about
//! 2% nulls, imputed with the mean), standardised; every third column also log1p'd and every
//! fourth clipped at its 99th percentile, as a k-means step would configure them.
//!
//! ```sh
//! cargo bench --bench feature_matrix
//! ```
//! `ROWS` (default 1,000,000) and `RUNS` (default 3) change the size and count. A counting
//! allocator measures every heap byte the build allocates beyond the input batches (the
//! matrix, the ids, per-column buffers); the target is a peak under 1.5× the matrix.

#[path = "support/mod.rs"]
#[allow(dead_code)] // `measure` times whole processes; not used here
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use audiences::features::{build, ColumnSpec, NullPolicy, PreOp, Scaling};
use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn batches(rows: usize, d: usize) -> Vec<RecordBatch> {
    let mut fields = vec![Field::new("user_id", DataType::Utf8, false)];
    fields.extend((0..d).map(|j| Field::new(format!("f{j}"), DataType::Float64, true)));
    let schema = Arc::new(Schema::new(fields));
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut out = Vec::new();
    let mut start = 0;
    while start < rows {
        let len = 8192.min(rows - start);
        let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(
            (start..start + len).map(|i| format!("u{i:08}")),
        ))];
        for j in 0..d {
            let scale = (j + 1) as f64;
            cols.push(Arc::new(Float64Array::from_iter((0..len).map(|_| {
                if rng.random_range(0..50) == 0 {
                    None
                } else {
                    Some(rng.random_range(0.0..scale * 10.0))
                }
            }))));
        }
        out.push(RecordBatch::try_new(schema.clone(), cols).unwrap());
        start += len;
    }
    out
}

fn main() {
    let rows = support::env_or("ROWS", 1_000_000);
    let runs = support::env_or("RUNS", 3);
    let d = 24;
    let input = batches(rows, d);
    let specs: Vec<ColumnSpec> = (0..d)
        .map(|j| {
            let mut pre = Vec::new();
            if j % 3 == 0 {
                pre.push(PreOp::Log1p);
            }
            if j % 4 == 0 {
                pre.push(PreOp::Clip(0.99));
            }
            ColumnSpec::Numeric {
                column: format!("f{j}"),
                pre,
                scaling: Scaling::Standardize,
            }
        })
        .collect();
    let matrix_bytes = (rows * d * 8) as f64;
    let (mut ratios, mut times) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let before = CURRENT.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let t = Instant::now();
        let m = build(&input, "user_id", &specs, NullPolicy::Mean).expect("matrix built");
        let secs = t.elapsed().as_secs_f64();
        let peak = (PEAK.load(Ordering::Relaxed) - before) as f64;
        assert_eq!(m.x.dim(), (rows, d));
        drop(m);
        let ratio = peak / matrix_bytes;
        eprintln!(
            "run {run}: {secs:.3} s, peak {:.1} MiB above the input = {ratio:.2}x the {:.1} MiB matrix",
            peak / 1048576.0,
            matrix_bytes / 1048576.0
        );
        ratios.push(ratio);
        times.push(secs);
    }
    println!(
        "feature matrix {rows} x {d}: median {:.3} s, peak heap {:.2}x the f64 matrix (target < 1.5x)",
        support::median(&mut times),
        support::median(&mut ratios)
    );
}
