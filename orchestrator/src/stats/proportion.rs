//! Failure rates: one proportion (Wilson, Clopper–Pearson), the difference of two
//! (Newcombe's hybrid score interval) and Fisher's exact test on the 2×2 table.
//!
//! Kernel test failures are rare and runs are expensive, so every method here keeps
//! its stated coverage or size at small counts and at 0 or n failures, where the
//! textbook Wald interval collapses to a point.

use serde::{Deserialize, Serialize};

use super::special::{inverse_incomplete_beta, ln_choose, normal_quantile};
use super::{check_counts, check_open_unit, Alternative, Counts, StatsError};

/// An interval for one failure rate.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ProportionInterval {
    /// Observed proportion failures / runs.
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    /// Nominal two-sided confidence level, e.g. 0.95.
    pub confidence: f64,
}

/// An interval for the difference of failure rates, B − A.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DifferenceInterval {
    /// Observed rate(B) − rate(A).
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    pub confidence: f64,
}

/// Result of Fisher's exact test on A's and B's failure counts.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FisherTest {
    pub p_value: f64,
    pub alternative: Alternative,
    /// Observed rate(B) − rate(A).
    pub difference: f64,
}

/// Wilson score interval bounds at critical value `z`, for x failures in n runs.
///
/// Wilson (1927); written as in Newcombe (1998a), "Two-sided confidence intervals for
/// the single proportion", method 3:
/// (2np̂ + z² ± z√(z² + 4np̂q̂)) / (2(n + z²)).
pub(crate) fn wilson_bounds(x: u64, n: u64, z: f64) -> (f64, f64) {
    wilson_bounds_real(x as f64, n as f64, z)
}

/// [`wilson_bounds`] for effective (design-effect-scaled, so fractional) counts.
pub(crate) fn wilson_bounds_real(x: f64, n: f64, z: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 1.0);
    }
    let z2 = z * z;
    let denom = n + z2;
    let centre = (x + z2 / 2.0) / denom;
    let half = z * (x * (n - x) / n + z2 / 4.0).sqrt() / denom;
    // The closed form is exact at the ends but rounds a hair past them.
    let lower = if x == 0.0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let upper = if x == n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    (lower, upper)
}

/// Newcombe's hybrid score interval for rate(B) − rate(A) at critical value `z`.
///
/// Newcombe (1998b), "Interval estimation for the difference between independent
/// proportions: comparison of eleven methods", method 10: with Wilson bounds
/// (l₁, u₁) for p₁ = rate(B) and (l₂, u₂) for p₂ = rate(A), and δ̂ = p₁ − p₂,
/// L = δ̂ − √((p₁ − l₁)² + (u₂ − p₂)²), U = δ̂ + √((u₁ − p₁)² + (p₂ − l₂)²).
pub(crate) fn newcombe_bounds(a: Counts, b: Counts, z: f64) -> (f64, f64) {
    newcombe_bounds_real(
        (a.runs as f64, a.failures as f64),
        (b.runs as f64, b.failures as f64),
        z,
    )
}

/// [`newcombe_bounds`] for effective (runs, failures), which may be fractional.
pub(crate) fn newcombe_bounds_real(a: (f64, f64), b: (f64, f64), z: f64) -> (f64, f64) {
    let rate = |(n, x): (f64, f64)| if n > 0.0 { x / n } else { 0.0 };
    let p1 = rate(b);
    let p2 = rate(a);
    let (l1, u1) = wilson_bounds_real(b.1, b.0, z);
    let (l2, u2) = wilson_bounds_real(a.1, a.0, z);
    let d = p1 - p2;
    let lower = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let upper = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    (lower.max(-1.0), upper.min(1.0))
}

/// Wilson score interval for one failure rate at a two-sided `confidence`.
///
/// Its coverage is close to nominal even for a handful of runs (Newcombe 1998a), and
/// unlike the Wald interval it is not degenerate at 0 or n failures.
pub fn wilson(counts: Counts, confidence: f64) -> Result<ProportionInterval, StatsError> {
    const WHAT: &str = "a Wilson interval";
    check_counts(WHAT, 'A', counts)?;
    check_open_unit(WHAT, "confidence", confidence)?;
    let z = normal_quantile(0.5 + confidence / 2.0);
    let (lower, upper) = wilson_bounds(counts.failures, counts.runs, z);
    Ok(ProportionInterval {
        estimate: counts.rate(),
        lower,
        upper,
        confidence,
    })
}

/// Clopper–Pearson ("exact") interval for one failure rate.
///
/// Clopper & Pearson (1934): the bounds are beta quantiles,
/// lower = B⁻¹(α/2; x, n − x + 1) and upper = B⁻¹(1 − α/2; x + 1, n − x), with 0 and
/// 1 at x = 0 and x = n. Coverage is at least nominal for every true rate; the price
/// is width, which is why [`wilson`] is the default elsewhere.
pub fn clopper_pearson(counts: Counts, confidence: f64) -> Result<ProportionInterval, StatsError> {
    const WHAT: &str = "a Clopper-Pearson interval";
    check_counts(WHAT, 'A', counts)?;
    check_open_unit(WHAT, "confidence", confidence)?;
    let alpha = 1.0 - confidence;
    let x = counts.failures as f64;
    let n = counts.runs as f64;
    let lower = if counts.failures == 0 {
        0.0
    } else {
        inverse_incomplete_beta(x, n - x + 1.0, alpha / 2.0)
    };
    let upper = if counts.failures == counts.runs {
        1.0
    } else {
        inverse_incomplete_beta(x + 1.0, n - x, 1.0 - alpha / 2.0)
    };
    Ok(ProportionInterval {
        estimate: counts.rate(),
        lower,
        upper,
        confidence,
    })
}

/// Newcombe's hybrid score interval for rate(B) − rate(A): with Wilson bounds
/// (l₁, u₁) for p₁ = rate(B), (l₂, u₂) for p₂ = rate(A) and δ̂ = p₁ − p₂,
/// L = δ̂ − √((p₁ − l₁)² + (u₂ − p₂)²) and U = δ̂ + √((u₁ − p₁)² + (p₂ − l₂)²).
///
/// Of the eleven intervals Newcombe (1998b) compared, this one keeps coverage near
/// nominal with small counts and zero cells, and it never exceeds [−1, 1].
pub fn newcombe_difference(
    a: Counts,
    b: Counts,
    confidence: f64,
) -> Result<DifferenceInterval, StatsError> {
    const WHAT: &str = "a Newcombe difference interval";
    check_counts(WHAT, 'A', a)?;
    check_counts(WHAT, 'B', b)?;
    check_open_unit(WHAT, "confidence", confidence)?;
    let z = normal_quantile(0.5 + confidence / 2.0);
    let (lower, upper) = newcombe_bounds(a, b, z);
    Ok(DifferenceInterval {
        estimate: b.rate() - a.rate(),
        lower,
        upper,
        confidence,
    })
}

/// Fisher's exact test of equal failure rates.
///
/// Conditioning on both margins, the number X of A's failures is hypergeometric:
/// P(X = x) = C(K, x) C(N − K, n_A − x) / C(N, n_A), with N all runs and K all
/// failures (Fisher 1935; Agresti, Categorical Data Analysis, §3.5). One-sided: B
/// higher is P(X ≤ x_obs), B lower is P(X ≥ x_obs). Two-sided: the sum of P(X = x)
/// over every x no more likely than the observed table, with the 1e-7 relative
/// tolerance R's `fisher.test` uses so that ties in floating point still count.
pub fn fisher_exact(
    a: Counts,
    b: Counts,
    alternative: Alternative,
) -> Result<FisherTest, StatsError> {
    const WHAT: &str = "Fisher's exact test";
    check_counts(WHAT, 'A', a)?;
    check_counts(WHAT, 'B', b)?;
    let n_total = a.runs + b.runs;
    let k_total = a.failures + b.failures;
    let x_min = a.runs.saturating_sub(n_total - k_total);
    let x_max = k_total.min(a.runs);
    let ln_denom = ln_choose(n_total, a.runs);
    let ln_pmf =
        |x: u64| ln_choose(k_total, x) + ln_choose(n_total - k_total, a.runs - x) - ln_denom;
    let observed = a.failures;
    let p_value = match alternative {
        Alternative::BHigher => (x_min..=observed).map(|x| ln_pmf(x).exp()).sum::<f64>(),
        Alternative::BLower => (observed..=x_max).map(|x| ln_pmf(x).exp()).sum::<f64>(),
        Alternative::TwoSided => {
            let cutoff = ln_pmf(observed) + (1.0_f64 + 1e-7).ln();
            (x_min..=x_max)
                .map(ln_pmf)
                .filter(|&lp| lp <= cutoff)
                .map(f64::exp)
                .sum::<f64>()
        }
    };
    Ok(FisherTest {
        p_value: p_value.clamp(0.0, 1.0),
        alternative,
        difference: b.rate() - a.rate(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round4(x: f64) -> f64 {
        (x * 1e4).round() / 1e4
    }

    #[test]
    fn fisher_tea_tasting() {
        // Fisher's tea-tasting experiment as in Agresti, Categorical Data Analysis
        // (2nd ed.), §3.5: 4 cups of each kind, 3 guessed right. P-values quoted
        // there: one-sided 0.243, two-sided 0.486. By hand: the hypergeometric
        // probabilities of 0..4 right are 1, 16, 36, 16, 1 over 70, so the one-sided
        // p is 17/70 = 0.2429 and the two-sided 34/70 = 0.4857.
        // Here "A" is the milk-first row (3 of 4 called milk-first), "B" the other
        // (1 of 4), so Agresti's one-sided alternative is "B lower".
        let a = Counts::new(4, 3);
        let b = Counts::new(4, 1);
        let two = fisher_exact(a, b, Alternative::TwoSided).expect("valid table");
        assert!((two.p_value - 34.0 / 70.0).abs() < 1e-12);
        assert_eq!(round4(two.p_value), 0.4857);
        let one = fisher_exact(a, b, Alternative::BLower).expect("valid table");
        assert!((one.p_value - 17.0 / 70.0).abs() < 1e-12);
        let other = fisher_exact(a, b, Alternative::BHigher).expect("valid table");
        assert!((other.p_value - 69.0 / 70.0).abs() < 1e-12);
    }

    #[test]
    fn fisher_convictions_r_documentation() {
        // R `?fisher.test`, Fisher (1962) twin convictions:
        // Convictions <- matrix(c(2, 10, 15, 3), nrow = 2); fisher.test(Convictions,
        // alternative = "less") gives p-value = 0.0004652. Row 1 (dizygotic: 2
        // convicted, 15 not) is A, row 2 (monozygotic: 10 convicted, 3 not) is B;
        // "less" (odds ratio < 1) is "B higher" here.
        let a = Counts::new(17, 2);
        let b = Counts::new(13, 10);
        let t = fisher_exact(a, b, Alternative::BHigher).expect("valid table");
        assert!((t.p_value - 0.000_465_2).abs() < 5e-8, "{}", t.p_value);
    }

    #[test]
    fn wilson_and_clopper_pearson_newcombe_1998a() {
        // Newcombe (1998a), "Two-sided confidence intervals for the single
        // proportion", Stat Med 17:857-872, worked examples, 95% intervals by method 3
        // (score, no continuity correction) and method 5 (exact, Clopper-Pearson).
        let cases = [
            // (x, n, Wilson lower, Wilson upper, CP lower, CP upper)
            (81, 263, 0.2553, 0.3662, 0.2527, 0.3676),
            (15, 148, 0.0624, 0.1605, 0.0578, 0.1617),
            (0, 20, 0.0, 0.1611, 0.0, 0.1684),
            (1, 29, 0.0061, 0.1718, 0.0009, 0.1776),
        ];
        for (x, n, wl, wu, cl, cu) in cases {
            let w = wilson(Counts::new(n, x), 0.95).expect("valid counts");
            assert_eq!(
                (round4(w.lower), round4(w.upper)),
                (wl, wu),
                "Wilson {x}/{n}"
            );
            let c = clopper_pearson(Counts::new(n, x), 0.95).expect("valid counts");
            assert_eq!((round4(c.lower), round4(c.upper)), (cl, cu), "CP {x}/{n}");
        }
        // Clopper-Pearson at x = 0 by hand: upper = 1 − 0.025^(1/20) = 0.16843.
        let c = clopper_pearson(Counts::new(20, 0), 0.95).expect("valid counts");
        assert!((c.upper - (1.0 - 0.025_f64.powf(1.0 / 20.0))).abs() < 1e-12);
    }

    #[test]
    fn newcombe_difference_1998b() {
        // Newcombe (1998b), "Interval estimation for the difference between
        // independent proportions", Stat Med 17:873-890, worked examples (a), (b) and
        // (d)-(h), method 10 (hybrid score), 95% intervals for p1 − p2; p1 is B here.
        let cases = [
            // (x1, n1, x2, n2, lower, upper)
            (56, 70, 48, 80, 0.0524, 0.3339),
            (9, 10, 3, 10, 0.1705, 0.8090),
            (5, 56, 0, 29, -0.0381, 0.1926),
            (0, 10, 0, 20, -0.1611, 0.2775),
            (0, 10, 0, 10, -0.2775, 0.2775),
            (10, 10, 0, 20, 0.6791, 1.0),
            (10, 10, 0, 10, 0.6075, 1.0),
        ];
        for (x1, n1, x2, n2, lo, hi) in cases {
            let d = newcombe_difference(Counts::new(n2, x2), Counts::new(n1, x1), 0.95)
                .expect("valid counts");
            assert_eq!(
                (round4(d.lower), round4(d.upper)),
                (lo, hi),
                "{x1}/{n1} - {x2}/{n2}"
            );
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert!(wilson(Counts::new(3, 4), 0.95).is_err());
        assert!(wilson(Counts::new(0, 0), 0.95).is_err());
        assert!(wilson(Counts::new(10, 1), 1.0).is_err());
        assert!(fisher_exact(Counts::new(0, 0), Counts::new(1, 0), Alternative::TwoSided).is_err());
    }

    fn counts() -> impl Strategy<Value = Counts> {
        (1_u64..200)
            .prop_flat_map(|n| (Just(n), 0..=n))
            .prop_map(|(n, x)| Counts::new(n, x))
    }

    proptest! {
        #[test]
        fn fisher_p_values_are_probabilities(a in counts(), b in counts()) {
            for alt in [Alternative::TwoSided, Alternative::BHigher, Alternative::BLower] {
                let p = fisher_exact(a, b, alt).expect("valid").p_value;
                prop_assert!((0.0..=1.0).contains(&p));
            }
            // The two one-sided tails overlap in the observed table, so they sum to at
            // least 1, and the two-sided p is at least the smaller tail.
            let hi = fisher_exact(a, b, Alternative::BHigher).expect("valid").p_value;
            let lo = fisher_exact(a, b, Alternative::BLower).expect("valid").p_value;
            let two = fisher_exact(a, b, Alternative::TwoSided).expect("valid").p_value;
            prop_assert!(hi + lo >= 1.0 - 1e-9);
            prop_assert!(two >= hi.min(lo) - 1e-12);
        }

        #[test]
        fn fisher_is_symmetric_in_a_and_b(a in counts(), b in counts()) {
            let two_ab = fisher_exact(a, b, Alternative::TwoSided).expect("valid").p_value;
            let two_ba = fisher_exact(b, a, Alternative::TwoSided).expect("valid").p_value;
            prop_assert!((two_ab - two_ba).abs() < 1e-9);
            let hi_ab = fisher_exact(a, b, Alternative::BHigher).expect("valid").p_value;
            let lo_ba = fisher_exact(b, a, Alternative::BLower).expect("valid").p_value;
            prop_assert!((hi_ab - lo_ba).abs() < 1e-9);
        }

        #[test]
        fn intervals_contain_the_estimate(c in counts(), conf in 0.5_f64..0.999) {
            for iv in [wilson(c, conf).expect("valid"), clopper_pearson(c, conf).expect("valid")] {
                prop_assert!(0.0 <= iv.lower && iv.lower <= iv.estimate + 1e-12);
                prop_assert!(iv.estimate <= iv.upper + 1e-12 && iv.upper <= 1.0);
            }
        }

        #[test]
        fn difference_interval_contains_estimate_and_flips(a in counts(), b in counts()) {
            let d = newcombe_difference(a, b, 0.95).expect("valid");
            prop_assert!(d.lower <= d.estimate + 1e-12 && d.estimate <= d.upper + 1e-12);
            prop_assert!(-1.0 <= d.lower && d.upper <= 1.0);
            let r = newcombe_difference(b, a, 0.95).expect("valid");
            prop_assert!((d.lower + r.upper).abs() < 1e-12 && (d.upper + r.lower).abs() < 1e-12);
        }
    }
}
