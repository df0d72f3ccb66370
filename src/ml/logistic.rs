//! L2-regularised logistic regression fitted by Newton's method (iteratively reweighted least
//! squares). With tens of features the Hessian is tiny, so a handful of Newton steps over the
//! rows (parallel, combined in chunk order; each chunk's Hessian one matrix product) converge
//! to machine precision; the objective is
//! scikit-learn's: `sum(logloss) + ||w||² / (2C)`, intercept not penalised.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use rayon::prelude::*;

/// A fitted model: `p = 1 / (1 + exp(-(intercept + w·x)))`.
#[derive(Debug, Clone)]
pub struct Logistic {
    /// Weights, one per feature.
    pub weights: Array1<f64>,
    /// Intercept.
    pub intercept: f64,
    /// Newton iterations used.
    pub iterations: usize,
}

const CHUNK: usize = 8192;

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Solves `a x = b` for a symmetric positive definite `a` (Cholesky).
fn solve_spd(a: &Array2<f64>, b: &Array1<f64>) -> Option<Array1<f64>> {
    let n = a.nrows();
    let mut l = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[[i, j]];
            for k in 0..j {
                s -= l[[i, k]] * l[[j, k]];
            }
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[[i, i]] = s.sqrt();
            } else {
                l[[i, j]] = s / l[[j, j]];
            }
        }
    }
    let mut y = Array1::<f64>::zeros(n);
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[[i, k]] * y[k];
        }
        y[i] = s / l[[i, i]];
    }
    let mut x = Array1::<f64>::zeros(n);
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= l[[k, i]] * x[k];
        }
        x[i] = s / l[[i, i]];
    }
    Some(x)
}

/// Fits on rows `x` with labels `y` (0/1) and inverse regularisation strength `c`.
pub fn fit(x: ArrayView2<f64>, y: ArrayView1<f64>, c: f64, max_iter: usize) -> Logistic {
    let (n, d) = x.dim();
    let p = d + 1; // intercept last
    let mut beta = Array1::<f64>::zeros(p);
    let mut iterations = 0;
    for it in 0..max_iter {
        iterations = it + 1;
        let weights = beta.slice(ndarray::s![..d]);
        let parts: Vec<(Array1<f64>, Array2<f64>)> = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|ch| {
                let lo = ch * CHUNK;
                let hi = (lo + CHUNK).min(n);
                let xs = x.slice(ndarray::s![lo..hi, ..]);
                let z = xs.dot(&weights);
                // Rows scaled by the square root of their Newton weight, with the intercept's
                // column last: the chunk's Hessian is one matrix product of that with itself.
                let mut scaled = Array2::<f64>::zeros((hi - lo, p));
                let mut r = Array1::<f64>::zeros(hi - lo);
                for (i, mut out) in scaled.outer_iter_mut().enumerate() {
                    let mu = sigmoid(z[i] + beta[d]);
                    r[i] = mu - y[lo + i];
                    let sw = (mu * (1.0 - mu)).max(1e-12).sqrt();
                    for (o, v) in out.iter_mut().zip(xs.row(i).iter()) {
                        *o = v * sw;
                    }
                    out[d] = sw;
                }
                let mut g = Array1::<f64>::zeros(p);
                g.slice_mut(ndarray::s![..d]).assign(&xs.t().dot(&r));
                g[d] = r.sum();
                (g, scaled.t().dot(&scaled))
            })
            .collect();
        let mut g = Array1::<f64>::zeros(p);
        let mut h = Array2::<f64>::zeros((p, p));
        for (pg, ph) in parts {
            g += &pg;
            h += &ph;
        }
        // L2 penalty on the weights, not on the intercept.
        for j in 0..d {
            g[j] += beta[j] / c;
            h[[j, j]] += 1.0 / c;
        }
        h[[d, d]] += 1e-10;
        let Some(step) = solve_spd(&h, &g) else { break };
        beta -= &step;
        if step.iter().map(|v| v.abs()).fold(0.0, f64::max) < 1e-10 {
            break;
        }
    }
    Logistic {
        weights: beta.slice(ndarray::s![..d]).to_owned(),
        intercept: beta[d],
        iterations,
    }
}

impl Logistic {
    /// Scores rows (probabilities), computed as the SQL form does: intercept, then each
    /// weighted feature added in order.
    pub fn score(&self, x: ArrayView2<f64>) -> Vec<f64> {
        (0..x.nrows())
            .into_par_iter()
            .with_min_len(1024)
            .map(|i| {
                let mut z = self.intercept;
                for (a, w) in x.row(i).iter().zip(self.weights.iter()) {
                    z += w * a;
                }
                1.0 / (1.0 + (-z).exp())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_and_matches_the_optimum() {
        // y depends on x0 only; the gradient at the optimum is zero.
        let n = 2000;
        let mut x = Array2::<f64>::zeros((n, 2));
        let mut y = Array1::<f64>::zeros(n);
        for i in 0..n {
            let a = (i as f64 / n as f64) * 4.0 - 2.0;
            x[[i, 0]] = a;
            x[[i, 1]] = ((i * 7919) % 13) as f64 / 13.0 - 0.5;
            y[i] = if (i * 31) % 100 < ((a + 2.0) * 25.0) as usize {
                1.0
            } else {
                0.0
            };
        }
        let m = fit(x.view(), y.view(), 1.0, 50);
        assert!(
            m.weights[0] > 1.0 && m.weights[1].abs() < 0.5,
            "{:?}",
            m.weights
        );
        let p = m.score(x.view());
        let grad0: f64 = (0..n).map(|i| (p[i] - y[i]) * x[[i, 0]]).sum::<f64>() + m.weights[0];
        assert!(grad0.abs() < 1e-6, "{grad0}");
    }
}
