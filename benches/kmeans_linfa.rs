//! Benchmark: our k-means kernel (rayon Lloyd iterations, k-means++ init) beside
//! linfa-clustering 0.8.1's `KMeans` on the same matrix: fit + assign of 1,000,000 rows × 24
//! features, k = 12, at most 50 iterations, tol 1e-4, one k-means++ init, alternating runs,
//! medians. linfa is not a dependency of the engine; this benchmark builds it on request:
//!
//! ```sh
//! cargo bench --features linfa-bench --bench kmeans_linfa
//! ```
//! `ROWS` and `RUNS` (default 3) change the size and count. Both sides read the same matrix
//! (a fixed-seed mixture of 12 Gaussian blobs); building it is not timed.

#[path = "kmeans/blobs.rs"]
mod blobs;

#[path = "support/mod.rs"]
#[allow(dead_code)] // `measure` times whole processes; not used here
mod support;

use std::time::Instant;

use audiences::ml::kmeans::{assign, fit, KMeansParams};
use linfa::prelude::*;
use linfa::DatasetBase;
use linfa_clustering::{KMeans, KMeansInit};

fn main() {
    let rows = support::env_or("ROWS", 1_000_000);
    let runs = support::env_or("RUNS", 3);
    let (d, k) = (24, 12);
    let x = blobs::matrix(rows, d, k);
    let params = KMeansParams {
        k,
        max_iter: 50,
        tol: 1e-4,
        n_init: 1,
        seed: 42,
    };
    let dataset = DatasetBase::from(x.clone());
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let t = Instant::now();
        let f = fit(x.view(), &params);
        let (labels, _) = assign(x.view(), &f.centroids);
        let a = t.elapsed().as_secs_f64();
        assert_eq!(labels.len(), rows);

        let t = Instant::now();
        let model = KMeans::params(k)
            .n_runs(1)
            .max_n_iterations(50)
            .tolerance(1e-4)
            .init_method(KMeansInit::KMeansPlusPlus)
            .fit(&dataset)
            .expect("linfa k-means fits");
        let predicted = model.predict(&x);
        let b = t.elapsed().as_secs_f64();
        assert_eq!(predicted.len(), rows);
        eprintln!(
            "run {i}: audiences {a:.3} s (inertia {:.4e}, {} iterations), linfa-clustering {b:.3} s (inertia {:.4e})",
            f.inertia,
            f.iterations,
            model.inertia()
        );
        ours.push(a);
        theirs.push(b);
    }
    let (a, b) = (support::median(&mut ours), support::median(&mut theirs));
    println!(
        "k-means {rows} x {d}, k = {k}: audiences median {a:.3} s, linfa-clustering median {b:.3} s ({:.2}x faster)",
        b / a
    );
}
