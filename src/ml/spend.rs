//! Spend per transaction for lifetime value: the Gamma-Gamma model (Fader, Hardie & Lee 2005,
//! "RFM and CLV"), fitted by penalised maximum likelihood, with a shared mean spend where the data
//! do not identify it.

use super::ltv::{ln_gamma, maximise, par_sum, penalty};

/// Fitted Gamma-Gamma parameters.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct GammaGamma {
    /// Shape p of spend per transaction.
    pub p: f64,
    /// Shape q of the spend-scale gamma.
    pub q: f64,
    /// Scale γ of the spend-scale gamma.
    pub gamma: f64,
    /// Log-likelihood at the optimum.
    pub log_likelihood: f64,
}

impl GammaGamma {
    /// Expected spend per transaction of a customer with `x` repeat purchases of mean `m`.
    pub fn expected_spend(&self, x: f64, m: f64) -> f64 {
        (self.p * (self.gamma + x * m)) / (self.p * x + self.q - 1.0)
    }
}

/// Gamma-Gamma log-likelihood over (x > 0, mean spend m, weight).
pub fn gg_log_likelihood(p: f64, q: f64, v: f64, data: &[(f64, f64, f64)]) -> f64 {
    GgData::new(data).log_likelihood(p, q, v)
}

/// lnΓ(a + q) − lnΓ(a) for a, q > 0, accurate where a is huge (Gamma-Gamma's p·x on its
/// ridge), where the difference of two lnΓ values near 10¹² would be rounding noise.
pub fn ln_gamma_ratio(a: f64, q: f64) -> f64 {
    if a < 1e3 {
        return ln_gamma(a + q) - ln_gamma(a);
    }
    // Stirling's series for both terms, the large parts cancelled analytically:
    // (a + q − ½) ln(a + q) − (a − ½) ln a − q = q ln a + (a + q − ½) ln(1 + q/a) − q.
    let b = a + q;
    q * a.ln() + (b - 0.5) * (q / a).ln_1p() - q + (1.0 / b - 1.0 / a) / 12.0
        - (1.0 / (b * b * b) - 1.0 / (a * a * a)) / 360.0
}

/// Spend rows prepared for repeated evaluations.
///
/// Each row's log-likelihood is written so that no two large terms cancel:
/// lnΓ(px + q) − lnΓ(px) − lnΓ(q) − ln m − px·ln(1 + γ/(xm)) − q·ln(1 + xm/γ). Written the
/// textbook way (q ln γ + (px − 1) ln m + px ln x − (px + q) ln(xm + γ)), terms near 10¹² cancel
/// on the ridge p → ∞ and the optimiser walks on rounding noise.
struct GgData {
    /// (x, Σw, Σw·ln m) per distinct count.
    counts: Vec<(f64, f64, f64)>,
    /// Rows: (count index, x·m, weight).
    rows: Vec<(u32, f64, f64)>,
    /// Total weight.
    total: f64,
}

impl GgData {
    fn new(data: &[(f64, f64, f64)]) -> Self {
        use std::collections::BTreeMap;
        let mut counts: BTreeMap<u64, (f64, f64, f64)> = BTreeMap::new();
        for &(x, m, w) in data {
            let e = counts.entry(x.to_bits()).or_insert((x, 0.0, 0.0));
            e.1 += w;
            e.2 += w * m.ln();
        }
        let ix: BTreeMap<u64, u32> = counts
            .keys()
            .enumerate()
            .map(|(i, k)| (*k, i as u32))
            .collect();
        GgData {
            counts: counts.into_values().collect(),
            rows: data
                .iter()
                .map(|&(x, m, w)| (ix[&x.to_bits()], x * m, w))
                .collect(),
            total: data.iter().map(|r| r.2).sum(),
        }
    }

    fn log_likelihood(&self, p: f64, q: f64, v: f64) -> f64 {
        let lgq = ln_gamma(q);
        let constant: f64 = self
            .counts
            .iter()
            .map(|&(x, w, wlnm)| w * (ln_gamma_ratio(p * x, q) - lgq) - wlnm)
            .sum();
        let rows = par_sum(self.rows.len(), |i| {
            let (xi, xm, w) = self.rows[i];
            let x = self.counts[xi as usize].0;
            -w * (p * x * (v / xm).ln_1p() + q * (xm / v).ln_1p())
        });
        constant + rows
    }
}

/// Fits Gamma-Gamma to (x > 0, mean spend m > 0, weight) triples, maximising the penalised mean
/// log-likelihood.
///
/// The optimiser works on (ln p, ln q, ln p·γ): the likelihood's flat direction (p → ∞ with p·γ
/// fixed, where each customer's expected spend tends to their own mean) is then one axis, which
/// the penalty closes. The fit is judged by what it predicts: the population's mean spend
/// p·γ / (q − 1) must be finite and positive; [`SpendModel::fit`] falls back to a shared mean
/// spend where it is not.
pub fn fit_gamma_gamma(data: &[(f64, f64, f64)], penalizer: f64) -> Result<GammaGamma, String> {
    if data.is_empty() {
        return Err("no customer with a repeat purchase to fit spend on".into());
    }
    let d = GgData::new(data);
    // Started where the population mean spend is the data's mean (q = 2: p·γ = mean).
    let mean = data.iter().map(|r| r.1 * r.2).sum::<f64>() / d.total;
    let natural = |u: &[f64]| [u[0], u[1], u[2] - u[0]];
    let (u, _) = maximise(
        |u| {
            let lp = natural(u);
            d.log_likelihood(lp[0].exp(), lp[1].exp(), lp[2].exp()) / d.total
                - penalty(penalizer, &lp)
        },
        &[0.0, 2f64.ln(), mean.ln()],
        "Gamma-Gamma fit",
    )?;
    let lp = natural(&u);
    let (p, q, gamma) = (lp[0].exp(), lp[1].exp(), lp[2].exp());
    let ll = d.log_likelihood(p, q, gamma);
    let population = p * gamma / (q - 1.0);
    if !(ll.is_finite() && population.is_finite() && population > 0.0) {
        return Err(format!(
            "Gamma-Gamma fit gives no finite population mean spend (p {p:.4e}, q {q:.4}, γ {gamma:.4e}: q must exceed 1)"
        ));
    }
    Ok(GammaGamma {
        p,
        q,
        gamma,
        log_likelihood: ll,
    })
}

/// Expected spend per transaction: Gamma-Gamma where the data identify it, otherwise one mean
/// spend shared by every customer (the model's own limit q → ∞, a valid answer, reported).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SpendModel {
    /// The fitted Gamma-Gamma model.
    GammaGamma(GammaGamma),
    /// Every customer's expected spend is the repeat buyers' mean spend.
    SharedMean {
        /// The weighted mean of the repeat buyers' mean spend.
        mean: f64,
        /// Why Gamma-Gamma was not used.
        reason: String,
    },
}

impl SpendModel {
    /// Fits Gamma-Gamma, falling back to the shared mean spend when the fit is not usable; an
    /// error only when there is no spend at all to learn from.
    pub fn fit(data: &[(f64, f64, f64)], penalizer: f64) -> Result<SpendModel, String> {
        let total: f64 = data.iter().map(|r| r.2).sum();
        let mean = data.iter().map(|r| r.1 * r.2).sum::<f64>() / total;
        if data.is_empty() || !(mean.is_finite() && mean > 0.0) {
            return Err("no customer with a repeat purchase to fit spend on".into());
        }
        match fit_gamma_gamma(data, penalizer) {
            Ok(gg) => Ok(SpendModel::GammaGamma(gg)),
            Err(reason) => Ok(SpendModel::SharedMean { mean, reason }),
        }
    }

    /// Expected spend per transaction of a customer with `x` repeat purchases of mean `m`.
    pub fn expected_spend(&self, x: f64, m: f64) -> f64 {
        match self {
            SpendModel::GammaGamma(gg) => gg.expected_spend(x, m),
            SpendModel::SharedMean { mean, .. } => *mean,
        }
    }

    /// Expected spend per transaction of a customer without a usable spend history.
    pub fn population_spend(&self) -> f64 {
        match self {
            SpendModel::GammaGamma(gg) => gg.p * gg.gamma / (gg.q - 1.0),
            SpendModel::SharedMean { mean, .. } => *mean,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ltv::{DEFAULT_PENALIZER, LOG_PARAM_BOUND};
    use super::*;

    #[test]
    fn gamma_gamma_on_spend_that_never_varies_stops_on_the_ridge() {
        // Every customer spends exactly their own amount each time: the likelihood rises along
        // p → ∞ with p·γ fixed; the penalised fit must stop at a finite p with sensible
        // predictions, wherever the optimiser starts (an unpenalised fit wandered to p = 7.5e34
        // on one night and failed the run, and stopped at p = 3.7e6 on the next).
        // Per-customer means drawn from the model's own limit: m = c / g, g ~ Gamma(3, 1).
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let data: Vec<(f64, f64, f64)> = (0..5000)
            .map(|i| {
                let g: f64 = (0..3).map(|_| -(1.0 - rng.random::<f64>()).ln()).sum();
                ((1 + i % 6) as f64, 200.0 / g, 1.0)
            })
            .collect();
        let gg = fit_gamma_gamma(&data, DEFAULT_PENALIZER).expect("the fit succeeds on the ridge");
        assert!(gg.p.ln() < LOG_PARAM_BOUND - 1.0 && gg.q > 1.0, "{gg:?}");
        let d = GgData::new(&data);
        let objective = |u: &[f64]| {
            let lp = [u[0], u[1], u[2] - u[0]];
            d.log_likelihood(lp[0].exp(), lp[1].exp(), lp[2].exp()) / d.total
                - penalty(DEFAULT_PENALIZER, &lp)
        };
        let pg = (gg.p * gg.gamma).ln();
        let (far, _) = maximise(objective, &[25.0, gg.q.ln(), pg], "Gamma-Gamma fit").unwrap();
        let far = GammaGamma {
            p: far[0].exp(),
            q: far[1].exp(),
            gamma: (far[2] - far[0]).exp(),
            log_likelihood: 0.0,
        };
        for &(x, m, _) in data.iter().take(50) {
            let e = gg.expected_spend(x, m);
            assert!(
                e.is_finite() && (e - m).abs() / m < 0.25,
                "x {x}, m {m}: {e} ({gg:?})"
            );
            let f = far.expected_spend(x, m);
            assert!(
                (f - e).abs() / e < 1e-3,
                "from far out: {f} vs {e} ({far:?})"
            );
        }
    }

    #[test]
    fn spend_falls_back_to_a_shared_mean_when_gamma_gamma_has_no_finite_mean() {
        // Heavy-tailed spend (Pareto with index 0.4: no finite mean) drives q below 1.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let data: Vec<(f64, f64, f64)> = (0..4000)
            .map(|i| {
                let u: f64 = 1.0 - rng.random::<f64>();
                (1.0 + (i % 2) as f64, 10.0 * u.powf(-1.0 / 0.4), 1.0)
            })
            .collect();
        let mean = data.iter().map(|r| r.1).sum::<f64>() / data.len() as f64;
        match SpendModel::fit(&data, DEFAULT_PENALIZER).unwrap() {
            SpendModel::SharedMean { mean: m, reason } => {
                assert!((m - mean).abs() < 1e-9 * mean, "{m} vs {mean}");
                assert!(reason.contains("q must exceed 1"), "{reason}");
            }
            other => panic!("expected the shared mean, got {other:?}"),
        }
        assert!(SpendModel::fit(&[], DEFAULT_PENALIZER).is_err());
    }

    #[test]
    fn the_ratio_of_gammas_is_exact_where_they_are_huge() {
        for (a, q) in [(1e3, 2.5), (5e3, 0.3), (2e4, 17.0), (1e3, 1e3)] {
            let direct = ln_gamma(a + q) - ln_gamma(a);
            let r = ln_gamma_ratio(a, q);
            assert!(
                (r - direct).abs() < 1e-9 * direct.abs().max(1.0),
                "{a} {q}: {r} vs {direct}"
            );
        }
        // Far out, q ln a is the leading term.
        let r = ln_gamma_ratio(1e12, 3.0);
        assert!((r - 3.0 * 1e12f64.ln()).abs() < 1e-9, "{r}");
    }

    #[test]
    fn gamma_gamma_likelihood_is_the_textbook_one() {
        // The rearranged row terms equal the textbook sum where both are accurate.
        let data = [(1.0, 20.0, 2.0), (3.0, 35.5, 1.0), (6.0, 12.25, 4.0)];
        let (p, q, v): (f64, f64, f64) = (4.2, 3.1, 17.0);
        let textbook: f64 = data
            .iter()
            .map(|&(x, m, w): &(f64, f64, f64)| {
                w * (ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q)
                    + q * v.ln()
                    + (p * x - 1.0) * m.ln()
                    + p * x * x.ln()
                    - (p * x + q) * (x * m + v).ln())
            })
            .sum();
        let ours = gg_log_likelihood(p, q, v, &data);
        assert!(
            (ours - textbook).abs() < 1e-9 * textbook.abs(),
            "{ours} vs {textbook}"
        );
    }
}
