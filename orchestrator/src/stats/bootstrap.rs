//! Percentile-bootstrap intervals on the ratio of a quantile (p50, p99) of B over
//! the same quantile of A.
//!
//! Tail latency is what a PREEMPT_RT patch is judged by, and no rank test speaks
//! about p99 directly; the bootstrap does, with no distributional assumption. It is
//! seeded, so a report can be reproduced number for number.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{check_open_unit, check_samples, StatsError};

/// How to bootstrap.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct BootstrapConfig {
    /// Number of bootstrap resamples; Efron & Tibshirani (1993, §19.3) suggest at
    /// least 1000 for percentile intervals.
    pub resamples: usize,
    /// Two-sided confidence level.
    pub confidence: f64,
    /// Seed of the resampling RNG; the same seed and data give the same interval.
    pub seed: u64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            resamples: 2000,
            confidence: 0.95,
            seed: 0x1ab_5eed,
        }
    }
}

/// Percentile-bootstrap interval for quantile_q(B) / quantile_q(A).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct QuantileRatio {
    /// The quantile level, e.g. 0.5 or 0.99.
    pub quantile: f64,
    /// Ratio of the observed quantiles.
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    pub confidence: f64,
    pub resamples: usize,
    pub seed: u64,
}

/// Sample quantile by linear interpolation between order statistics: Hyndman & Fan
/// (1996) definition 7, R's default: h = (n − 1)q, x₍⌊h⌋₎ + (h − ⌊h⌋)(x₍⌊h⌋+1₎ − x₍⌊h⌋₎)
/// with 0-based order statistics. `None` for an empty sample or q outside [0, 1].
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let mut v = xs.to_vec();
    Some(quantile_in_place(&mut v, q))
}

/// Definition-7 quantile that reorders `v` (selection, O(n)) instead of sorting it.
fn quantile_in_place(v: &mut [f64], q: f64) -> f64 {
    let h = (v.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let (_, &mut x_lo, rest) = v.select_nth_unstable_by(lo, f64::total_cmp);
    let frac = h - lo as f64;
    if frac == 0.0 || rest.is_empty() {
        return x_lo;
    }
    let x_hi = rest.iter().copied().fold(f64::INFINITY, f64::min);
    x_lo + frac * (x_hi - x_lo)
}

/// Percentile bootstrap (Efron & Tibshirani 1993, §13.3) for the ratio of the q-th
/// quantile of B to that of A: A and B are resampled independently with
/// replacement, the ratio is recomputed on each resample, and the interval is the
/// (α/2, 1 − α/2) quantiles of those ratios.
///
/// Samples must be positive (latencies, throughputs), so the ratio is defined.
pub fn bootstrap_quantile_ratio(
    a: &[f64],
    b: &[f64],
    q: f64,
    config: &BootstrapConfig,
) -> Result<QuantileRatio, StatsError> {
    const WHAT: &str = "a bootstrap quantile ratio";
    check_samples(WHAT, 'A', a, 1)?;
    check_samples(WHAT, 'B', b, 1)?;
    check_open_unit(WHAT, "confidence", config.confidence)?;
    if !(0.0..=1.0).contains(&q) {
        return Err(StatsError::InvalidParameter {
            what: WHAT,
            name: "quantile",
            value: q,
            expected: "a level in [0, 1] such as 0.5 or 0.99",
        });
    }
    if config.resamples < 2 {
        return Err(StatsError::InvalidParameter {
            what: WHAT,
            name: "resamples",
            value: config.resamples as f64,
            expected: "at least 2 (1000 or more for a stable interval)",
        });
    }
    for (side, xs) in [('A', a), ('B', b)] {
        if let Some(&value) = xs.iter().find(|&&x| x <= 0.0) {
            return Err(StatsError::NonPositiveSample {
                what: WHAT,
                side,
                value,
            });
        }
    }
    let ratio =
        |va: &mut [f64], vb: &mut [f64]| quantile_in_place(vb, q) / quantile_in_place(va, q);
    let estimate = ratio(&mut a.to_vec(), &mut b.to_vec());
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut ra = vec![0.0; a.len()];
    let mut rb = vec![0.0; b.len()];
    let mut ratios = Vec::with_capacity(config.resamples);
    for _ in 0..config.resamples {
        for x in ra.iter_mut() {
            *x = a[rng.random_range(0..a.len())];
        }
        for x in rb.iter_mut() {
            *x = b[rng.random_range(0..b.len())];
        }
        ratios.push(ratio(&mut ra, &mut rb));
    }
    let alpha = 1.0 - config.confidence;
    let lower = quantile_in_place(&mut ratios, alpha / 2.0);
    let upper = quantile_in_place(&mut ratios, 1.0 - alpha / 2.0);
    Ok(QuantileRatio {
        quantile: q,
        estimate,
        lower,
        upper,
        confidence: config.confidence,
        resamples: config.resamples,
        seed: config.seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantile_definition_7() {
        // Hyndman & Fan definition 7 by hand on 1..=10: p50 has h = 4.5, so
        // x₍₄₎ + 0.5·(x₍₅₎ − x₍₄₎) = 5.5; p99 has h = 8.91, so 9 + 0.91 = 9.91;
        // p25 has h = 2.25, so 3.25 (R: quantile(1:10, c(.25, .5, .99)) agrees).
        let xs: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let q = |p| quantile(&xs, p).expect("non-empty");
        assert!((q(0.5) - 5.5).abs() < 1e-12);
        assert!((q(0.99) - 9.91).abs() < 1e-12);
        assert!((q(0.25) - 3.25).abs() < 1e-12);
        assert_eq!(q(0.0), 1.0);
        assert_eq!(q(1.0), 10.0);
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn seeded_and_reproducible() {
        let a: Vec<f64> = (1..=200).map(|i| 100.0 + f64::from(i % 37)).collect();
        let b: Vec<f64> = a.iter().map(|x| x * 1.2).collect();
        let cfg = BootstrapConfig {
            resamples: 500,
            ..BootstrapConfig::default()
        };
        let r1 = bootstrap_quantile_ratio(&a, &b, 0.5, &cfg).expect("valid");
        let r2 = bootstrap_quantile_ratio(&a, &b, 0.5, &cfg).expect("valid");
        assert_eq!(r1, r2);
        assert!((r1.estimate - 1.2).abs() < 1e-12);
        assert!(r1.lower <= 1.2 && 1.2 <= r1.upper && r1.upper - r1.lower < 0.2);
        let other = BootstrapConfig { seed: 7, ..cfg };
        let r3 = bootstrap_quantile_ratio(&a, &b, 0.99, &other).expect("valid");
        assert!(r3.lower <= r3.estimate && r3.estimate <= r3.upper);
        assert!(bootstrap_quantile_ratio(&a, &[0.0], 0.5, &other).is_err());
        assert!(bootstrap_quantile_ratio(&a, &b, 1.5, &other).is_err());
    }

    #[test]
    fn constant_samples_give_a_point_interval() {
        let cfg = BootstrapConfig {
            resamples: 50,
            ..BootstrapConfig::default()
        };
        let r = bootstrap_quantile_ratio(&[4.0; 9], &[6.0; 5], 0.99, &cfg).expect("valid");
        assert_eq!((r.estimate, r.lower, r.upper), (1.5, 1.5, 1.5));
    }

    proptest! {
        #[test]
        fn swapping_sides_inverts_the_ratio(
            a in prop::collection::vec(1.0_f64..100.0, 1..30),
            b in prop::collection::vec(1.0_f64..100.0, 1..30),
        ) {
            let cfg = BootstrapConfig { resamples: 50, ..BootstrapConfig::default() };
            let ab = bootstrap_quantile_ratio(&a, &b, 0.5, &cfg).expect("valid");
            prop_assert!(ab.lower <= ab.upper && ab.lower > 0.0);
            let ba = bootstrap_quantile_ratio(&b, &a, 0.5, &cfg).expect("valid");
            prop_assert!((ab.estimate * ba.estimate - 1.0).abs() < 1e-9);
        }
    }
}
