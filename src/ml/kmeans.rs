//! k-means: k-means++ initialisation from a fixed seed, Lloyd iterations in parallel (rayon,
//! with the distance computation as a matrix product per chunk of rows), `n_init` restarts,
//! automatic k by silhouette on a bounded sample. Deterministic: partial sums are combined in
//! chunk order, never in the order threads finish.

use ndarray::{s, Array1, Array2, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

const CHUNK: usize = 4096;

/// Hyperparameters of one fit.
#[derive(Debug, Clone)]
pub struct KMeansParams {
    /// Clusters.
    pub k: usize,
    /// Maximum Lloyd iterations.
    pub max_iter: usize,
    /// Relative tolerance: stop when the squared centre movement is below `tol` times the mean
    /// feature variance (scikit-learn's rule).
    pub tol: f64,
    /// Restarts; the lowest inertia wins.
    pub n_init: usize,
    /// Random seed.
    pub seed: u64,
}

/// A fitted model.
#[derive(Debug, Clone)]
pub struct KMeansFit {
    /// k × d centroids.
    pub centroids: Array2<f64>,
    /// Sum of squared distances to the nearest centroid.
    pub inertia: f64,
    /// Lloyd iterations of the winning run.
    pub iterations: usize,
}

/// One point of the automatic-k curve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KPoint {
    /// k tried.
    pub k: usize,
    /// Mean silhouette on the evaluation sample (higher is better).
    pub silhouette: f64,
    /// Inertia on the fitting sample.
    pub inertia: f64,
}

fn row_norms(x: ArrayView2<f64>) -> Array1<f64> {
    x.rows().into_iter().map(|r| r.dot(&r)).collect()
}

/// Squared distances of the rows of `xc` (with squared norms `xx`) to the rows of `centers`
/// (with squared norms `cc`), as ||x||² - 2x·c + ||c||²: one matrix product per chunk, so the
/// chunk is read once for all centres.
fn chunk_sqdist(
    xc: ArrayView2<f64>,
    xx: &[f64],
    centers: ArrayView2<f64>,
    cc: &[f64],
) -> Array2<f64> {
    let mut dots = xc.dot(&centers.t());
    for (mut row, &xn) in dots.rows_mut().into_iter().zip(xx) {
        for (v, &cn) in row.iter_mut().zip(cc) {
            *v = (xn - 2.0 * *v + cn).max(0.0);
        }
    }
    dots
}

/// k-means++ with 2 + ln(k) local trials per centre (as scikit-learn does): the trials of one
/// centre are drawn together and scored in one pass over the rows.
fn kmeanspp(x: ArrayView2<f64>, xx: &Array1<f64>, k: usize, rng: &mut ChaCha8Rng) -> Array2<f64> {
    let n = x.nrows();
    let d = x.ncols();
    let trials = 2 + (k as f64).ln() as usize;
    let xx = xx.as_slice().expect("row norms are contiguous");
    let mut centers = Array2::<f64>::zeros((k, d));
    let first = rng.random_range(0..n);
    centers.row_mut(0).assign(&x.row(first));
    // Distances to one or more candidate rows, for every row, in chunk order.
    let distances = |cand: &Array2<f64>| -> Vec<Array2<f64>> {
        let cc: Vec<f64> = cand.rows().into_iter().map(|r| r.dot(&r)).collect();
        (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let lo = c * CHUNK;
                let hi = (lo + CHUNK).min(n);
                chunk_sqdist(x.slice(s![lo..hi, ..]), &xx[lo..hi], cand.view(), &cc)
            })
            .collect()
    };
    let mut closest: Vec<f64> = distances(&centers.slice(s![0..1, ..]).to_owned())
        .iter()
        .flat_map(|m| m.column(0).to_vec())
        .collect();
    let mut cumsum = vec![0.0; n];
    for c in 1..k {
        let mut acc = 0.0;
        for (s, v) in cumsum.iter_mut().zip(&closest) {
            acc += v;
            *s = acc;
        }
        let total = acc;
        let cands: Vec<usize> = (0..trials)
            .map(|_| {
                let target = rng.random::<f64>() * total;
                cumsum.partition_point(|&s| s < target).min(n - 1)
            })
            .collect();
        let dist = distances(&x.select(Axis(0), &cands));
        // Potential of each trial: the sum of min(closest, distance to the candidate), added
        // in row order so the choice does not depend on the thread count.
        let mut pots = vec![0.0; trials];
        let mut row = 0;
        for m in &dist {
            for r in m.rows() {
                let cl = closest[row];
                for (p, &v) in pots.iter_mut().zip(r.iter()) {
                    *p += cl.min(v);
                }
                row += 1;
            }
        }
        let best = (0..trials)
            .min_by(|&a, &b| pots[a].total_cmp(&pots[b]).then(a.cmp(&b)))
            .expect("at least one trial");
        centers.row_mut(c).assign(&x.row(cands[best]));
        let mut row = 0;
        for m in &dist {
            for v in m.column(best) {
                closest[row] = closest[row].min(*v);
                row += 1;
            }
        }
    }
    centers
}

/// Per-chunk result of one assignment pass.
struct Partial {
    sums: Array2<f64>,
    counts: Vec<usize>,
    inertia: f64,
    far: (f64, usize),
}

/// One assignment pass: nearest centre of every row via ||x||² - 2x·c + ||c||², with sums per
/// cluster. Chunks run in parallel; their results are combined in chunk order.
fn e_step(x: ArrayView2<f64>, xx: &Array1<f64>, centers: &Array2<f64>) -> Partial {
    let k = centers.nrows();
    let d = centers.ncols();
    let cc = row_norms(centers.view()).to_vec();
    let xx = xx.as_slice().expect("row norms are contiguous");
    let n = x.nrows();
    let parts: Vec<Partial> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let lo = c * CHUNK;
            let hi = (lo + CHUNK).min(n);
            let xc = x.slice(s![lo..hi, ..]);
            let dist = chunk_sqdist(xc, &xx[lo..hi], centers.view(), &cc);
            let mut sums = vec![0.0; k * d];
            let mut p = Partial {
                sums: Array2::zeros((0, d)),
                counts: vec![0; k],
                inertia: 0.0,
                far: (-1.0, 0),
            };
            for (r, (drow, xrow)) in dist.rows().into_iter().zip(xc.rows()).enumerate() {
                let mut best = f64::INFINITY;
                let mut bj = 0;
                for (j, &v) in drow.iter().enumerate() {
                    if v < best {
                        best = v;
                        bj = j;
                    }
                }
                p.inertia += best;
                if best > p.far.0 {
                    p.far = (best, lo + r);
                }
                p.counts[bj] += 1;
                for (s, v) in sums[bj * d..(bj + 1) * d].iter_mut().zip(xrow.iter()) {
                    *s += v;
                }
            }
            p.sums = Array2::from_shape_vec((k, d), sums).expect("k x d");
            p
        })
        .collect();
    let mut total = Partial {
        sums: Array2::zeros((k, d)),
        counts: vec![0; k],
        inertia: 0.0,
        far: (-1.0, 0),
    };
    for p in parts {
        total.sums += &p.sums;
        for j in 0..k {
            total.counts[j] += p.counts[j];
        }
        total.inertia += p.inertia;
        if p.far.0 > total.far.0 {
            total.far = p.far;
        }
    }
    total
}

fn lloyd(
    x: ArrayView2<f64>,
    xx: &Array1<f64>,
    mut centers: Array2<f64>,
    max_iter: usize,
    tol_abs: f64,
) -> KMeansFit {
    let mut iterations = 0;
    for it in 0..max_iter {
        iterations = it + 1;
        let p = e_step(x, xx, &centers);
        let mut new = centers.clone();
        for j in 0..centers.nrows() {
            if p.counts[j] > 0 {
                let row = &p.sums.row(j) / p.counts[j] as f64;
                new.row_mut(j).assign(&row);
            } else {
                // An empty cluster restarts at the point farthest from its centre.
                new.row_mut(j).assign(&x.row(p.far.1));
            }
        }
        let shift: f64 = (&new - &centers).iter().map(|v| v * v).sum();
        centers = new;
        if shift <= tol_abs {
            break;
        }
    }
    let inertia = e_step(x, xx, &centers).inertia;
    KMeansFit {
        centroids: centers,
        inertia,
        iterations,
    }
}

/// Fits k-means on `x` (rows × features).
pub fn fit(x: ArrayView2<f64>, p: &KMeansParams) -> KMeansFit {
    let xx = row_norms(x);
    let var_mean = x.var_axis(Axis(0), 0.0).mean().unwrap_or(0.0);
    let tol_abs = p.tol * var_mean;
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let mut best: Option<KMeansFit> = None;
    for _ in 0..p.n_init.max(1) {
        let init = kmeanspp(x, &xx, p.k, &mut rng);
        let f = lloyd(x, &xx, init, p.max_iter, tol_abs);
        if best.as_ref().is_none_or(|b| f.inertia < b.inertia) {
            best = Some(f);
        }
    }
    best.expect("n_init >= 1")
}

/// Nearest centroid of every row, with the distance, computed the way the SQL expression
/// does (sum of squared differences in feature order), so both give identical answers.
pub fn assign(x: ArrayView2<f64>, centroids: &Array2<f64>) -> (Vec<u32>, Vec<f64>) {
    let n = x.nrows();
    let out: Vec<(u32, f64)> = (0..n)
        .into_par_iter()
        .with_min_len(1024)
        .map(|i| {
            let r = x.row(i);
            let mut best = f64::INFINITY;
            let mut bj = 0u32;
            for (j, c) in centroids.rows().into_iter().enumerate() {
                let mut acc = 0.0;
                for (a, b) in r.iter().zip(c.iter()) {
                    acc += (a - b) * (a - b);
                }
                if acc < best {
                    best = acc;
                    bj = j as u32;
                }
            }
            (bj, best.sqrt())
        })
        .collect();
    out.into_iter().unzip()
}

/// Deterministic sample of at most `m` row indices (sorted), drawn with `seed`.
pub fn sample_indices(n: usize, m: usize, seed: u64) -> Vec<usize> {
    if m >= n {
        return (0..n).collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5A17_u64);
    let mut idx = rand::seq::index::sample(&mut rng, n, m).into_vec();
    idx.sort_unstable();
    idx
}

/// Distinct rows of `x`, counted up to `limit` (the count stops there): k-means cannot find
/// more clusters than there are distinct points.
pub fn distinct_rows(x: ArrayView2<f64>, limit: usize) -> usize {
    let mut seen: std::collections::HashSet<Vec<u64>> = std::collections::HashSet::new();
    for row in x.rows() {
        // -0.0 and 0.0 are the same point.
        seen.insert(row.iter().map(|v| (v + 0.0).to_bits()).collect());
        if seen.len() >= limit {
            break;
        }
    }
    seen.len()
}

fn take_rows(x: ArrayView2<f64>, idx: &[usize]) -> Array2<f64> {
    x.select(Axis(0), idx)
}

/// Mean silhouette of `labels` over the points of `x`, from their pairwise distances.
fn silhouette(dist: &Array2<f64>, labels: &[u32], k: usize) -> f64 {
    let n = labels.len();
    let mut sizes = vec![0usize; k];
    for &l in labels {
        sizes[l as usize] += 1;
    }
    let scores: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut sum = vec![0.0; k];
            for j in 0..n {
                sum[labels[j] as usize] += dist[[i, j]];
            }
            let own = labels[i] as usize;
            if sizes[own] <= 1 {
                return 0.0;
            }
            let a = sum[own] / (sizes[own] - 1) as f64;
            let b = (0..k)
                .filter(|&c| c != own && sizes[c] > 0)
                .map(|c| sum[c] / sizes[c] as f64)
                .fold(f64::INFINITY, f64::min);
            if !b.is_finite() {
                return 0.0;
            }
            (b - a) / a.max(b)
        })
        .collect();
    scores.iter().sum::<f64>() / n.max(1) as f64
}

/// Chooses k in `range` by the mean silhouette: each k is fitted on a sample of at most
/// `fit_rows` rows and scored on a sample of at most `eval_rows`. Returns the best k and the
/// curve.
pub fn choose_k(
    x: ArrayView2<f64>,
    range: (usize, usize),
    base: &KMeansParams,
    fit_rows: usize,
    eval_rows: usize,
) -> (usize, Vec<KPoint>) {
    let fit_idx = sample_indices(x.nrows(), fit_rows, base.seed);
    let xf = take_rows(x, &fit_idx);
    let eval_idx = sample_indices(x.nrows(), eval_rows, base.seed.wrapping_add(1));
    let xe = take_rows(x, &eval_idx);
    let m = xe.nrows();
    let flat: Vec<f64> = (0..m)
        .into_par_iter()
        .flat_map_iter(|i| {
            let xe = &xe;
            (0..m).map(move |j| {
                xe.row(i)
                    .iter()
                    .zip(xe.row(j).iter())
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
                    .sqrt()
            })
        })
        .collect();
    let dist = Array2::from_shape_vec((m, m), flat).expect("m x m");
    let mut curve = Vec::new();
    for k in range.0..=range.1.min(xf.nrows().saturating_sub(1)).max(range.0) {
        let f = fit(xf.view(), &KMeansParams { k, ..base.clone() });
        let (labels, _) = assign(xe.view(), &f.centroids);
        curve.push(KPoint {
            k,
            silhouette: silhouette(&dist, &labels, k),
            inertia: f.inertia,
        });
    }
    let best = curve
        .iter()
        .max_by(|a, b| a.silhouette.total_cmp(&b.silhouette).then(b.k.cmp(&a.k)))
        .map(|p| p.k)
        .unwrap_or(range.0);
    (best, curve)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(n_per: usize, centers: &[[f64; 2]], seed: u64) -> Array2<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Array2::zeros((n_per * centers.len(), 2));
        for (c, ctr) in centers.iter().enumerate() {
            for i in 0..n_per {
                let r = c * n_per + i;
                x[[r, 0]] = ctr[0] + rng.random::<f64>() - 0.5;
                x[[r, 1]] = ctr[1] + rng.random::<f64>() - 0.5;
            }
        }
        x
    }

    #[test]
    fn distinct_rows_counts_up_to_the_limit() {
        let x = ndarray::array![[0.0, 1.0], [-0.0, 1.0], [2.0, 1.0], [0.0, 1.0], [3.0, 3.0]];
        assert_eq!(distinct_rows(x.view(), 10), 3);
        assert_eq!(distinct_rows(x.view(), 2), 2);
    }

    #[test]
    fn finds_separated_blobs_and_is_deterministic() {
        let x = blobs(200, &[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], 1);
        let p = KMeansParams {
            k: 3,
            max_iter: 100,
            tol: 1e-6,
            n_init: 2,
            seed: 42,
        };
        let f = fit(x.view(), &p);
        let (labels, _) = assign(x.view(), &f.centroids);
        for c in 0..3 {
            let l = labels[c * 200];
            assert!(labels[c * 200..(c + 1) * 200].iter().all(|&v| v == l));
        }
        let g = fit(x.view(), &p);
        assert_eq!(f.centroids, g.centroids);
        let (k, curve) = choose_k(x.view(), (2, 6), &p, 10_000, 300);
        assert_eq!(k, 3, "{curve:?}");
    }
}

#[cfg(test)]
mod init_tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn kmeanspp_finds_well_separated_blobs_in_high_dimension() {
        let (n, d, k) = (24_000, 24, 12);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let centers: Vec<Vec<f64>> = (0..k)
            .map(|_| (0..d).map(|_| rng.random_range(-4.0..4.0)).collect())
            .collect();
        let noise = Normal::new(0.0, 1.0).unwrap();
        let mut x = Array2::zeros((n, d));
        for i in 0..n {
            let c = &centers[rng.random_range(0..k)];
            for j in 0..d {
                x[[i, j]] = c[j] + noise.sample(&mut rng);
            }
        }
        let f = fit(
            x.view(),
            &KMeansParams {
                k,
                max_iter: 50,
                tol: 1e-4,
                n_init: 1,
                seed: 42,
            },
        );
        let per_point = f.inertia / (n * d) as f64;
        assert!(
            per_point < 1.1,
            "inertia per coordinate {per_point} after {} iterations",
            f.iterations
        );
    }
}
