//! The k-means benchmarks' matrix: a fixed-seed mixture of Gaussian blobs.

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// `rows` × `d` values around `k` random centres in [-4, 4]^d, unit noise.
pub fn matrix(rows: usize, d: usize, k: usize) -> Array2<f64> {
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
