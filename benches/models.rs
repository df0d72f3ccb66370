//! Benchmarks of the models on one matrix, ours (in process) beside scikit-learn on the same
//! data, alternating runs, medians:
//! - k-means fit + assign on 1,000,000 rows × 24 features, k = 12, at most 50 iterations,
//!   tol 1e-4, k-means++ with one init, against `KMeans(algorithm="lloyd", n_init=1)`; run i
//!   uses seed 42 + i on both sides, so one lucky or unlucky start does not decide the median;
//! - lookalike: logistic regression (C = 1) fitted on a 20,000-user seed plus 200,000 sampled
//!   negatives, then every one of the 1,000,000 rows scored, against
//!   `LogisticRegression(C=1.0, solver="lbfgs", max_iter=200)` + `predict_proba`.
//!
//! ```sh
//! PEER_PYTHON=/path/to/python-with-sklearn cargo bench --bench models
//! ```
//! Without `PEER_PYTHON` only our side is timed. `ROWS` and `RUNS` change the size and count.
//! The matrix is a fixed-seed mixture of 12 Gaussian blobs, written to a temp file that both
//! sides read; loading is not timed on either side.

use std::io::Write;
use std::time::Instant;

#[path = "kmeans/blobs.rs"]
mod blobs;
#[path = "support/mod.rs"]
#[allow(dead_code)] // `measure` times whole processes; not used here
mod support;

use audiences::ml::kmeans::{assign, fit, KMeansParams};
use audiences::ml::logistic;
use blobs::matrix;
use support::{env_or, median};

fn main() {
    let rows = env_or("ROWS", 1_000_000);
    let runs = env_or("RUNS", 5);
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
        "import sys, time, numpy as np\nfrom sklearn.cluster import KMeans\n\
         x = np.fromfile({:?}, dtype='<f8').reshape({rows}, {d})\n\
         t = time.perf_counter()\n\
         km = KMeans(n_clusters={k}, init='k-means++', n_init=1, max_iter=50, tol=1e-4, random_state=int(sys.argv[1]), algorithm='lloyd').fit(x)\n\
         labels = km.predict(x)\n\
         print(time.perf_counter() - t, km.inertia_, km.n_iter_)\n",
        path.display().to_string()
    );
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let seed = 42 + i as u64;
        let params = KMeansParams {
            k,
            max_iter: 50,
            tol: 1e-4,
            n_init: 1,
            seed,
        };
        let t = Instant::now();
        let f = fit(x.view(), &params);
        let (labels, _) = assign(x.view(), &f.centroids);
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(labels.len(), rows);
        ours.push(secs);
        let mut line = format!(
            "run {i} (seed {seed}): audiences {secs:.3} s (inertia {:.4e}, {} iterations)",
            f.inertia, f.iterations
        );
        if let Some(py) = &peer {
            let out = std::process::Command::new(py)
                .args(["-c", &script, &seed.to_string()])
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

    // Lookalike: seed = the first 20,000 rows of blob 0's region (rows whose first feature is
    // highest), negatives = 200,000 other rows picked with a fixed stride.
    let seed_n = 20_000.min(rows / 10);
    let mut order: Vec<usize> = (0..rows).collect();
    order.sort_by(|&a, &b| x[[b, 0]].total_cmp(&x[[a, 0]]).then(a.cmp(&b)));
    let seed: Vec<usize> = order[..seed_n].to_vec();
    let rest = &order[seed_n..];
    let stride = (rest.len() / (10 * seed_n)).max(1);
    let negs: Vec<usize> = rest
        .iter()
        .step_by(stride)
        .take(10 * seed_n)
        .copied()
        .collect();
    let train: Vec<usize> = seed.iter().chain(negs.iter()).copied().collect();
    let labels_path = std::env::temp_dir().join(format!("lr-bench-{rows}.idx"));
    std::fs::write(
        &labels_path,
        train
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let lr_script = format!(
        "import time, numpy as np\nfrom sklearn.linear_model import LogisticRegression\n\
         x = np.fromfile({:?}, dtype='<f8').reshape({rows}, {d})\n\
         idx = np.loadtxt({:?}, dtype=np.int64)\n\
         y = np.zeros(len(idx)); y[:{seed_n}] = 1\n\
         t = time.perf_counter()\n\
         m = LogisticRegression(C=1.0, solver='lbfgs', max_iter=200).fit(x[idx], y)\n\
         p = m.predict_proba(x)[:, 1]\n\
         print(time.perf_counter() - t, m.n_iter_[0])\n",
        path.display().to_string(),
        labels_path.display().to_string()
    );
    let (mut ours_lr, mut theirs_lr) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let t = Instant::now();
        let xt = x.select(ndarray::Axis(0), &train);
        let y: ndarray::Array1<f64> = (0..train.len())
            .map(|j| if j < seed_n { 1.0 } else { 0.0 })
            .collect();
        let m = logistic::fit(xt.view(), y.view(), 1.0, 100);
        let scores = m.score(x.view());
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(scores.len(), rows);
        ours_lr.push(secs);
        let mut line = format!(
            "run {i}: audiences logistic {secs:.3} s ({} Newton steps)",
            m.iterations
        );
        if let Some(py) = &peer {
            let out = std::process::Command::new(py)
                .args(["-c", &lr_script])
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
            theirs_lr.push(s);
            line.push_str(&format!(
                " | scikit-learn {s:.3} s ({} lbfgs iterations)",
                parts.next().unwrap_or("?")
            ));
        }
        eprintln!("{line}");
    }
    let o = median(&mut ours_lr);
    println!(
        "lookalike logistic fit ({} rows) + score ({rows} rows), {runs} runs, medians:",
        train.len()
    );
    println!("  audiences     {o:.3} s");
    if !theirs_lr.is_empty() {
        let t = median(&mut theirs_lr);
        println!("  scikit-learn  {t:.3} s");
        println!("  ratio (scikit-learn / audiences) {:.2}x", t / o);
    }
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&labels_path);
}
