//! Similarity and ranking quality: a row's best cosine similarity to a set of centroids, and
//! the area under the ROC curve of positives against negatives.

use ndarray::Array2;

/// Each row's best cosine similarity to any of `centroids`, mapped from [-1, 1] to [0, 1].
pub fn best_cosine(x: &Array2<f64>, centroids: &Array2<f64>) -> Vec<f64> {
    let norms: Vec<f64> = centroids
        .rows()
        .into_iter()
        .map(|c| c.dot(&c).sqrt())
        .collect();
    (0..x.nrows())
        .map(|i| {
            let r = x.row(i);
            let mut nn = 0.0;
            for v in r.iter() {
                nn += v * v;
            }
            let rn = nn.sqrt();
            let mut best = f64::NEG_INFINITY;
            for (c, cn) in centroids.rows().into_iter().zip(&norms) {
                let mut dot = 0.0;
                for (cj, zj) in c.iter().zip(r.iter()) {
                    dot += cj * zj;
                }
                let s = if rn > 0.0 { dot / (rn * cn) } else { 0.0 };
                best = best.max(s);
            }
            (best + 1.0) / 2.0
        })
        .collect()
}

/// Area under the ROC curve of positives vs negatives (ties count half).
pub fn auc(pos: &[f64], neg: &[f64]) -> f64 {
    if pos.is_empty() || neg.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f64, bool)> = pos
        .iter()
        .map(|&s| (s, true))
        .chain(neg.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let avg = (i + j + 1) as f64 / 2.0; // 1-based average rank
        rank_sum += all[i..j].iter().filter(|(_, p)| *p).count() as f64 * avg;
        i = j;
    }
    let np = pos.len() as f64;
    (rank_sum - np * (np + 1.0) / 2.0) / (np * neg.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_separated_and_tied_scores() {
        assert_eq!(auc(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
        assert_eq!(auc(&[1.0], &[1.0]), 0.5);
        assert!(auc(&[], &[1.0]).is_nan());
    }

    #[test]
    fn cosine_to_the_nearest_centroid() {
        let x = ndarray::array![[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]];
        let c = ndarray::array![[1.0, 0.0], [0.0, 1.0]];
        assert_eq!(best_cosine(&x, &c), vec![1.0, 1.0, 0.5]);
    }
}
