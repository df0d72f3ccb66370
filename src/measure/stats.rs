//! The statistics of a measurement, each from a published method:
//!
//! - difference of two proportions: Newcombe's hybrid score interval (Newcombe 1998, "Interval
//!   estimation for the difference between independent proportions", method 10), built from
//!   the two groups' Wilson score intervals; it keeps near-95% coverage for small groups and
//!   rates near 0 or 1, where the Wald interval is too narrow;
//! - relative lift (risk ratio − 1): the log risk-ratio interval (Katz et al. 1978), with 0.5
//!   added to every cell when a group has no conversion;
//! - sample ratio mismatch: Pearson's chi-square test of the target and control counts against
//!   the holdout share (one degree of freedom);
//! - many comparisons: Benjamini–Hochberg adjusted p-values (q-values, 1995);
//! - watching during a campaign: the mixture sequential probability ratio test's confidence
//!   sequence (Johari, Pekelis, Walsh 2017, "Always valid inference"), valid however often it
//!   is looked at;
//! - variance reduction: CUPED (Deng, Xu, Kohavi, Walker 2013), the outcome adjusted by a
//!   pre-period covariate with θ = cov(Y, X) / var(X) over both groups.

/// The 97.5% quantile of the standard normal.
pub const Z: f64 = 1.959_963_984_540_054;

/// Standard normal CDF through the complementary error function (W. J. Cody's rational
/// approximation as in Numerical Recipes' `erfcc`; relative error < 1.2e-7).
pub fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let erfc = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        1.0 - 0.5 * erfc
    } else {
        0.5 * erfc
    }
}

/// Two-sided p-value of a standard normal statistic.
pub fn two_sided_p(z: f64) -> f64 {
    (2.0 * (1.0 - normal_cdf(z.abs()))).clamp(0.0, 1.0)
}

/// Wilson's score interval of a proportion `x / n` at 95%.
pub fn wilson(x: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p) = (n as f64, x as f64 / n as f64);
    let z2 = Z * Z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Newcombe's hybrid score interval of `x_t / n_t − x_c / n_c` at 95%.
pub fn newcombe(x_t: u64, n_t: u64, x_c: u64, n_c: u64) -> (f64, f64) {
    let (pt, pc) = (x_t as f64 / n_t as f64, x_c as f64 / n_c as f64);
    let (lt, ut) = wilson(x_t, n_t);
    let (lc, uc) = wilson(x_c, n_c);
    let d = pt - pc;
    (
        d - ((pt - lt).powi(2) + (uc - pc).powi(2)).sqrt(),
        d + ((ut - pt).powi(2) + (pc - lc).powi(2)).sqrt(),
    )
}

/// The 95% interval of the relative lift `(x_t / n_t) / (x_c / n_c) − 1` from the log risk
/// ratio; `None` when neither group converted.
pub fn relative_interval(x_t: u64, n_t: u64, x_c: u64, n_c: u64) -> Option<(f64, f64)> {
    if x_t == 0 && x_c == 0 {
        return None;
    }
    // Haldane's correction keeps the log finite when one group has no conversion.
    let k = if x_t == 0 || x_c == 0 { 0.5 } else { 0.0 };
    let (a, b) = (x_t as f64 + k, x_c as f64 + k);
    let (na, nb) = (n_t as f64 + k, n_c as f64 + k);
    let log_rr = (a / na).ln() - (b / nb).ln();
    let se = (1.0 / a - 1.0 / na + 1.0 / b - 1.0 / nb).max(0.0).sqrt();
    Some(((log_rr - Z * se).exp() - 1.0, (log_rr + Z * se).exp() - 1.0))
}

/// The pooled two-proportion z-test's two-sided p-value.
pub fn pooled_p(x_t: u64, n_t: u64, x_c: u64, n_c: u64) -> f64 {
    let (nt, nc) = (n_t as f64, n_c as f64);
    let d = x_t as f64 / nt - x_c as f64 / nc;
    let pooled = (x_t + x_c) as f64 / (nt + nc);
    let se0 = (pooled * (1.0 - pooled) * (1.0 / nt + 1.0 / nc)).sqrt();
    if se0 > 0.0 {
        two_sided_p(d / se0)
    } else {
        1.0
    }
}

/// The p-value of Pearson's chi-square test that `n_control` of `n_target + n_control` members
/// fell in the control group when each falls there with probability `holdout`.
pub fn sample_ratio_p(n_target: u64, n_control: u64, holdout: f64) -> f64 {
    let n = (n_target + n_control) as f64;
    let (e_t, e_c) = (n * (1.0 - holdout), n * holdout);
    if e_t <= 0.0 || e_c <= 0.0 {
        return 1.0;
    }
    let chi2 = (n_target as f64 - e_t).powi(2) / e_t + (n_control as f64 - e_c).powi(2) / e_c;
    // With one degree of freedom the statistic is a squared standard normal.
    two_sided_p(chi2.sqrt())
}

/// Benjamini–Hochberg adjusted p-values, in the order given.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut q = vec![0.0; m];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * m as f64 / (rank + 1) as f64);
        q[i] = running.min(1.0);
    }
    q
}

/// The always-valid 95% interval (a confidence sequence) of an estimate `diff` whose variance
/// is `var`, for the normal mixture of scale `tau` (the size of effect worth detecting: any
/// fixed value keeps the error rate, it only moves where the sequence is tightest).
pub fn always_valid(diff: f64, var: f64, tau: f64) -> (f64, f64) {
    const ALPHA: f64 = 0.05;
    if var <= 0.0 {
        return (diff, diff);
    }
    let t2 = tau * tau;
    let half = (var * (var + t2) / t2 * (((var + t2) / var).ln() - 2.0 * ALPHA.ln())).sqrt();
    (diff - half, diff + half)
}

/// The variance of a difference of two rates (unpooled), each rate taken with one conversion
/// and one non-conversion added (Agresti and Caffo 2000), so a group without conversions
/// does not count as certain.
pub fn diff_variance(x_t: u64, n_t: u64, x_c: u64, n_c: u64) -> f64 {
    let adjusted = |x: u64, n: u64| (x as f64 + 1.0) / (n as f64 + 2.0);
    let (pt, pc) = (adjusted(x_t, n_t), adjusted(x_c, n_c));
    pt * (1.0 - pt) / n_t as f64 + pc * (1.0 - pc) / n_c as f64
}

/// A CUPED-adjusted difference of means.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Cuped {
    /// The adjusted difference of the means (target − control).
    pub diff: f64,
    /// Its 95% interval.
    pub ci: (f64, f64),
    /// θ: the regression coefficient of the outcome on the covariate.
    pub theta: f64,
    /// 1 − the adjusted variance over the unadjusted one.
    pub variance_reduction: f64,
}

/// Balance of a pre-period covariate between target and control.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Balance {
    /// Mean in the target group.
    pub target_mean: f64,
    /// Mean in the control group.
    pub control_mean: f64,
    /// Two-sided p-value of the difference (Welch's z-test).
    pub p_value: f64,
}

/// Balance of covariate values `t` (target) and `c` (control).
pub fn balance(t: &[f64], c: &[f64]) -> Balance {
    let ((mt, vt), (mc, vc)) = (mean_var(t), mean_var(c));
    let se = (vt / t.len().max(1) as f64 + vc / c.len().max(1) as f64).sqrt();
    Balance {
        target_mean: mt,
        control_mean: mc,
        p_value: if se > 0.0 {
            two_sided_p((mt - mc) / se)
        } else {
            1.0
        },
    }
}

fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var)
}

/// CUPED over outcomes `y` and pre-period covariates `x` of the target (`_t`) and control
/// (`_c`) groups; `None` when a group has fewer than two users or the covariate is constant.
pub fn cuped(y_t: &[f64], x_t: &[f64], y_c: &[f64], x_c: &[f64]) -> Option<Cuped> {
    if y_t.len() < 2 || y_c.len() < 2 {
        return None;
    }
    let all_x: Vec<f64> = x_t.iter().chain(x_c).copied().collect();
    let all_y: Vec<f64> = y_t.iter().chain(y_c).copied().collect();
    let (mx, vx) = mean_var(&all_x);
    let (my, _) = mean_var(&all_y);
    if vx <= 0.0 {
        return None;
    }
    let n = all_x.len() as f64;
    let cov = all_x
        .iter()
        .zip(&all_y)
        .map(|(x, y)| (x - mx) * (y - my))
        .sum::<f64>()
        / (n - 1.0);
    let theta = cov / vx;
    let adjust = |y: &[f64], x: &[f64]| -> Vec<f64> {
        y.iter().zip(x).map(|(y, x)| y - theta * (x - mx)).collect()
    };
    let (at, ac) = (adjust(y_t, x_t), adjust(y_c, x_c));
    let ((mt, vt), (mc, vc)) = (mean_var(&at), mean_var(&ac));
    let ((_, ut), (_, uc)) = (mean_var(y_t), mean_var(y_c));
    let var = vt / at.len() as f64 + vc / ac.len() as f64;
    let raw = ut / y_t.len() as f64 + uc / y_c.len() as f64;
    let diff = mt - mc;
    Some(Cuped {
        diff,
        ci: (diff - Z * var.sqrt(), diff + Z * var.sqrt()),
        theta,
        variance_reduction: if raw > 0.0 { 1.0 - var / raw } else { 0.0 },
    })
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rayon::prelude::*;

    use super::*;

    #[test]
    fn newcombe_matches_the_worked_examples_of_the_paper() {
        // Newcombe (1998), table II, method 10: 56/70 − 48/80 → [0.0524, 0.3339];
        // 9/10 − 3/10 → [0.1705, 0.8090]; 6/7 − 2/7 → [0.0582, 0.8062];
        // 5/56 − 0/29 → [−0.0381, 0.1926]; 0/10 − 0/20 → [−0.1611, 0.2775].
        for ((xt, nt, xc, nc), (lo, hi)) in [
            ((56, 70, 48, 80), (0.0524, 0.3339)),
            ((9, 10, 3, 10), (0.1705, 0.8090)),
            ((6, 7, 2, 7), (0.0582, 0.8062)),
            ((5, 56, 0, 29), (-0.0381, 0.1926)),
            ((0, 10, 0, 20), (-0.1611, 0.2775)),
        ] {
            let (l, h) = newcombe(xt, nt, xc, nc);
            assert!(
                (l - lo).abs() < 6e-4 && (h - hi).abs() < 6e-4,
                "{xt}/{nt} − {xc}/{nc}: [{l:.4}, {h:.4}]"
            );
        }
    }

    #[test]
    fn wilson_and_normal_by_hand() {
        // Wilson (1927) for 0 of 10: [0, z² / (n + z²)] = [0, 3.8415 / 13.8415] = [0, 0.2775].
        let (l, h) = wilson(0, 10);
        assert_eq!(l, 0.0);
        assert!((h - 0.277_532).abs() < 1e-5, "{h}");
        assert!((normal_cdf(0.0) - 0.5).abs() < 2e-7);
        assert!((normal_cdf(Z) - 0.975).abs() < 2e-7);
        assert!((normal_cdf(-3.090_232_306) - 0.001).abs() < 1e-9);
    }

    #[test]
    fn sample_ratio_and_benjamini_hochberg_by_hand() {
        // 10,000 members at a 10% holdout, 1,100 in control: expected 9,000 / 1,000, so
        // χ² = 100²/9000 + 100²/1000 = 11.111, z = 3.3333, p = 0.000858.
        let p = sample_ratio_p(8900, 1100, 0.10);
        assert!((p - 0.000_858).abs() < 5e-6, "{p}");
        assert!(sample_ratio_p(9000, 1000, 0.10) > 0.999);
        // Hand-worked BH: p = (0.01, 0.04, 0.03, 0.005), m = 4. Sorted 0.005, 0.01, 0.03,
        // 0.04 → ×4/rank = 0.02, 0.02, 0.04, 0.04 (running minimum from the top).
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.005]);
        let want = [0.02, 0.04, 0.04, 0.02];
        for (a, b) in q.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
    }

    #[test]
    fn balance_by_hand() {
        // Means 2 and 1, sample variances 2/3 and 2/3 over 4 and 4: se = √(2 · (2/3) / 4)
        // = 0.57735, z = 1.73205, p = 2 · (1 − Φ(1.73205)) = 0.08326.
        let b = balance(&[1.0, 2.0, 3.0, 2.0], &[0.0, 1.0, 2.0, 1.0]);
        let (mt, vt) = mean_var(&[1.0, 2.0, 3.0, 2.0]);
        assert_eq!((mt, b.control_mean), (2.0, 1.0));
        assert!((vt - 2.0 / 3.0).abs() < 1e-12);
        let z = 1.0 / (2.0 * (2.0 / 3.0) / 4.0f64).sqrt();
        assert!((b.p_value - two_sided_p(z)).abs() < 1e-12);
        assert!((b.p_value - 0.083_26).abs() < 1e-4, "{b:?}");
    }

    #[test]
    fn relative_interval_by_hand() {
        // 30/100 vs 20/100: RR 1.5, se(log RR) = sqrt(1/30 − 1/100 + 1/20 − 1/100) = 0.251661,
        // so RR ∈ exp(0.405465 ± 1.959964 · 0.251661) = exp([−0.087781, 0.898711])
        // = [0.915961, 2.456437].
        let (l, h) = relative_interval(30, 100, 20, 100).unwrap();
        assert!((l - (0.915_961 - 1.0)).abs() < 1e-5, "{l}");
        assert!((h - (2.456_437 - 1.0)).abs() < 1e-5, "{h}");
        assert!(relative_interval(0, 10, 0, 10).is_none());
        assert!(relative_interval(3, 10, 0, 10).unwrap().0.is_finite());
    }

    /// Share of `runs` simulated campaigns whose 95% interval covers the true difference.
    fn coverage(nt: u64, pt: f64, nc: u64, pc: f64, runs: u64) -> f64 {
        let hits: u64 = (0..runs)
            .into_par_iter()
            .map(|i| {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i * 7919 + nt);
                let xt = (0..nt).filter(|_| rng.random::<f64>() < pt).count() as u64;
                let xc = (0..nc).filter(|_| rng.random::<f64>() < pc).count() as u64;
                let (l, h) = newcombe(xt, nt, xc, nc);
                u64::from(l <= pt - pc && pt - pc <= h)
            })
            .sum();
        hits as f64 / runs as f64
    }

    #[test]
    fn the_interval_covers_the_true_difference_95_times_in_100() {
        for (nt, pt, nc, pc) in [
            (60, 0.20, 20, 0.10),          // small groups
            (20_000, 0.006, 2_000, 0.005), // rates of 0.5%, a 10% holdout
            (400, 0.55, 100, 0.50),        // rates of 50%
            (5_000, 0.003, 500, 0.001),    // control often without a conversion
        ] {
            let c = coverage(nt, pt, nc, pc, 2000);
            eprintln!("n {nt}/{nc}, p {pt}/{pc}: Newcombe coverage {c:.4}");
            assert!(
                (0.935..=0.965).contains(&c),
                "n {nt}/{nc}, p {pt}/{pc}: coverage {c}"
            );
        }
    }

    /// False-positive rate of daily looks over 30 days of an A/A campaign (no effect), where a
    /// look "wins" when its interval excludes 0: the always-valid interval, and the fixed one.
    fn aa_daily_looks(runs: u64) -> (f64, f64) {
        let (nt, nc) = (4_000usize, 4_000usize);
        // 8% convert within 30 days, at a constant daily hazard.
        let hazard = 1.0 - (1.0f64 - 0.08).powf(1.0 / 30.0);
        let tau = 0.01;
        let flags: Vec<(bool, bool)> = (0..runs)
            .into_par_iter()
            .map(|i| {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i);
                let mut day_counts = |n: usize| {
                    let mut per_day = [0u64; 30];
                    for _ in 0..n {
                        let u: f64 = rng.random();
                        let day = (u.ln() / (1.0 - hazard).ln()).floor() as usize;
                        if day < 30 {
                            per_day[day] += 1;
                        }
                    }
                    per_day
                };
                let (dt, dc) = (day_counts(nt), day_counts(nc));
                let (mut xt, mut xc) = (0u64, 0u64);
                let (mut seq, mut fixed) = (false, false);
                for d in 0..30 {
                    xt += dt[d];
                    xc += dc[d];
                    if xt + xc == 0 {
                        continue;
                    }
                    let diff = xt as f64 / nt as f64 - xc as f64 / nc as f64;
                    let var = diff_variance(xt, nt as u64, xc, nc as u64);
                    let (l, h) = always_valid(diff, var, tau);
                    seq |= l > 0.0 || h < 0.0;
                    let (l, h) = newcombe(xt, nt as u64, xc, nc as u64);
                    fixed |= l > 0.0 || h < 0.0;
                }
                (seq, fixed)
            })
            .collect();
        let rate = |k: fn(&(bool, bool)) -> bool| {
            flags.iter().filter(|f| k(f)).count() as f64 / runs as f64
        };
        (rate(|f| f.0), rate(|f| f.1))
    }

    #[test]
    fn daily_looks_at_an_aa_campaign_keep_the_false_positive_rate() {
        let (seq, fixed) = aa_daily_looks(2000);
        eprintln!("A/A, 30 daily looks: always-valid {seq:.4}, fixed interval {fixed:.4}");
        assert!(seq <= 0.06, "always-valid interval: {seq}");
        // The fixed interval, looked at daily, wins by chance far more often than 5%.
        assert!(fixed > 0.10, "fixed interval with daily looks: {fixed}");
    }

    #[test]
    fn cuped_narrows_the_interval_and_stays_unbiased() {
        // Outcome = pre-period value + noise: θ ≈ 1 and most variance explained.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut draw = |n: usize, lift: f64| {
            let x: Vec<f64> = (0..n).map(|_| rng.random::<f64>() * 10.0).collect();
            let y: Vec<f64> = x.iter().map(|x| x + lift + rng.random::<f64>()).collect();
            (y, x)
        };
        let (yt, xt) = draw(4000, 0.2);
        let (yc, xc) = draw(1000, 0.0);
        let c = cuped(&yt, &xt, &yc, &xc).unwrap();
        assert!((c.theta - 1.0).abs() < 0.05, "{c:?}");
        assert!(c.variance_reduction > 0.8, "{c:?}");
        assert!(c.ci.0 < 0.2 && 0.2 < c.ci.1, "{c:?}");
        // A/A: the adjusted estimate averages 0 over many splits of one population.
        let mean: f64 = (0..400)
            .map(|_| {
                let (yt, xt) = draw(400, 0.0);
                let (yc, xc) = draw(100, 0.0);
                cuped(&yt, &xt, &yc, &xc).unwrap().diff
            })
            .sum::<f64>()
            / 400.0;
        assert!(mean.abs() < 0.01, "{mean}");
    }
}
