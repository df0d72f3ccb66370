//! How well predicted probabilities match what happened: the Brier score and a reliability
//! curve (predicted against observed rates in equal-count bins of the ranked predictions).

use serde::{Deserialize, Serialize};

/// One bin of a reliability curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// Users in the bin.
    pub users: usize,
    /// Mean predicted probability.
    pub predicted: f64,
    /// Share of the bin's users with the outcome.
    pub observed: f64,
}

/// Mean squared difference between the predicted probability and the outcome (0 or 1).
pub fn brier(p: &[f64], y: &[bool]) -> f64 {
    if p.is_empty() {
        return f64::NAN;
    }
    let sum: f64 = p
        .iter()
        .zip(y)
        .map(|(p, &y)| {
            let d = p - if y { 1.0 } else { 0.0 };
            d * d
        })
        .sum();
    sum / p.len() as f64
}

/// `bins` equal-count bins of the users sorted by predicted probability, lowest first (the
/// first bins hold one more user when the count does not divide evenly).
pub fn reliability(p: &[f64], y: &[bool], bins: usize) -> Vec<Bin> {
    let n = p.len();
    if n == 0 || bins == 0 {
        return vec![];
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| p[a].total_cmp(&p[b]).then(a.cmp(&b)));
    let bins = bins.min(n);
    let (base, extra) = (n / bins, n % bins);
    let mut out = Vec::with_capacity(bins);
    let mut at = 0;
    for b in 0..bins {
        let len = base + usize::from(b < extra);
        let rows = &order[at..at + len];
        at += len;
        let predicted = rows.iter().map(|&i| p[i]).sum::<f64>() / len as f64;
        let observed = rows.iter().filter(|&&i| y[i]).count() as f64 / len as f64;
        out.push(Bin {
            users: len,
            predicted,
            observed,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brier_of_perfect_and_constant_predictions() {
        let y = [true, false, false, true];
        assert_eq!(brier(&[1.0, 0.0, 0.0, 1.0], &y), 0.0);
        assert!((brier(&[0.5; 4], &y) - 0.25).abs() < 1e-12);
        assert!(brier(&[], &[]).is_nan());
    }

    #[test]
    fn reliability_bins_follow_the_ranking() {
        // Ten users; predictions rise with the index, outcomes only in the top half.
        let p: Vec<f64> = (0..10).map(|i| i as f64 / 10.0).collect();
        let y: Vec<bool> = (0..10).map(|i| i >= 5).collect();
        let bins = reliability(&p, &y, 2);
        assert_eq!(bins.len(), 2);
        assert_eq!(bins[0].users, 5);
        assert!((bins[0].predicted - 0.2).abs() < 1e-12);
        assert_eq!(bins[0].observed, 0.0);
        assert_eq!(bins[1].observed, 1.0);
        let uneven = reliability(&p[..7], &y[..7], 3);
        assert_eq!(
            uneven.iter().map(|b| b.users).collect::<Vec<_>>(),
            vec![3, 2, 2]
        );
    }
}
