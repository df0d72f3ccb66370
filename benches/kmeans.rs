//! Benchmark: k-means fit + assign on 1,000,000 rows × 24 features, k = 12, at most 50
//! iterations, tol 1e-4, k-means++ with one init — ours (in process) beside scikit-learn's
//! `KMeans(algorithm="lloyd", n_init=1)` on the same matrix, alternating runs, medians.
//!
//! ```sh
//! PEER_PYTHON=/path/to/python-with-sklearn cargo bench --bench kmeans
//! ```
//! Without `PEER_PYTHON` only our side is timed. `ROWS` and `RUNS` change the size and count.
//! The matrix is a fixed-seed mixture of 12 Gaussian blobs, written to a temp file that both
//! sides read; loading is not timed on either side.

use std::io::Write;
use std::time::Instant;

use audiences::models::kmeans::{assign, fit, KMeansParams};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

fn matrix(rows: usize, d: usize, k: usize) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let centers: Vec<Vec<f64>> = (0..k)
        .map(|_| (0..d).map(|_| rng.random_range(-4.0..4.0)).collect())
        .collect();
    let noise = Normal::new(0.0, 1.0).unwrap();
    let mut x = Array2::zeros((rows, d));
    for i in 0..rows {
        let c = &centers[rng.random_range(0..k)];
        for j in 0..d {
            x[[i, j]] = c[j] + noise.sample(&mut rng);
        }
    }
    x
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let rows: usize = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let (d, k) = (24, 12);
    let x = matrix(rows, d, k);
    let path = std::env::temp_dir().join(format!("kmeans-bench-{rows}x{d}.f64"));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for v in x.iter() {
            f.write_all(&v.to_le_bytes()).unwrap();
        }
    }
    let peer = std::env::var("PEER_PYTHON").ok();
    let script = format!(
        "import time, numpy as np\nfrom sklearn.cluster import KMeans\n\
         x = np.fromfile({:?}, dtype='<f8').reshape({rows}, {d})\n\
         t = time.perf_counter()\n\
         km = KMeans(n_clusters={k}, init='k-means++', n_init=1, max_iter=50, tol=1e-4, random_state=42, algorithm='lloyd').fit(x)\n\
         labels = km.predict(x)\n\
         print(time.perf_counter() - t, km.inertia_, km.n_iter_)\n",
        path.display().to_string()
    );
    let params = KMeansParams {
        k,
        max_iter: 50,
        tol: 1e-4,
        n_init: 1,
        seed: 42,
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let t = Instant::now();
        let f = fit(x.view(), &params);
        let (labels, _) = assign(x.view(), &f.centroids);
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(labels.len(), rows);
        ours.push(secs);
        let mut line = format!(
            "run {i}: audiences {secs:.3} s (inertia {:.4e}, {} iterations)",
            f.inertia, f.iterations
        );
        if let Some(py) = &peer {
            let out = std::process::Command::new(py)
                .args(["-c", &script])
                .output()
                .expect("python starts");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let mut parts = text.split_whitespace();
            let s: f64 = parts.next().unwrap().parse().unwrap();
            theirs.push(s);
            line.push_str(&format!(
                " | scikit-learn {s:.3} s (inertia {}, {} iterations)",
                parts.next().unwrap_or("?"),
                parts.next().unwrap_or("?")
            ));
        }
        eprintln!("{line}");
    }
    let o = median(&mut ours);
    println!("k-means fit + assign, {rows} x {d}, k = {k}, {runs} runs, medians:");
    println!("  audiences     {o:.3} s");
    if !theirs.is_empty() {
        let t = median(&mut theirs);
        println!("  scikit-learn  {t:.3} s");
        println!("  ratio (scikit-learn / audiences) {:.2}x", t / o);
    }
    let _ = std::fs::remove_file(&path);
}
