//! Rank statistics for latency and throughput: the Mann–Whitney U test and the
//! Hodges–Lehmann shift estimate with its Moses order-statistic interval.
//!
//! Latency distributions of a real-time kernel are skewed and heavy-tailed, so the
//! comparison uses ranks, which need no normality and shrug off a few huge outliers.
//! The shift interval is also what the sequential monitor inverts at each look.

use serde::{Deserialize, Serialize};

use super::special::{normal_cdf, normal_quantile, normal_sf};
use super::{check_open_unit, check_samples, Alternative, StatsError};

/// R's `wilcox.test` uses the exact null distribution below 50 samples per side
/// when there are no ties; so does this module.
const EXACT_LIMIT: usize = 50;

/// How a p-value or interval was obtained.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MannWhitneyMethod {
    /// The exact permutation distribution of U (no ties, both sides < 50).
    Exact,
    /// The normal approximation with tie correction and continuity correction.
    Normal,
}

/// Result of the Mann–Whitney U test of B against A.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MannWhitney {
    /// U for B: #{(a, b): b > a} + ½ #{(a, b): b = a}. Large means B tends higher.
    pub u: f64,
    /// Standardized statistic of the normal approximation; `None` for exact tests.
    pub z: Option<f64>,
    pub p_value: f64,
    pub alternative: Alternative,
    pub method: MannWhitneyMethod,
}

/// Hodges–Lehmann estimate of the shift B − A with its Moses interval.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct HodgesLehmann {
    /// Median of the pairwise differences b − a (or, for ratios, of b / a).
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    /// The requested two-sided confidence.
    pub confidence: f64,
    /// The confidence the order statistics actually give, at least the requested
    /// one unless the samples are too small to reach it (then the widest interval).
    pub achieved_confidence: f64,
    pub method: MannWhitneyMethod,
}

/// Sorted copy of a sample.
fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// U for B and the tie term Σ(t³ − t) over groups of tied values, from sorted samples.
///
/// U_B = R_B − n_B(n_B + 1)/2 with R_B the sum of B's mid-ranks in the pooled sample
/// (Mann & Whitney 1947; Hollander & Wolfe, Nonparametric Statistical Methods, §4.1).
pub(crate) fn u_statistic(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (mut i, mut j) = (0, 0);
    let mut rank_sum_b = 0.0;
    let mut tie_term = 0.0;
    let mut next_rank = 1.0;
    while i < a.len() || j < b.len() {
        let v = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        let mut in_a = 0usize;
        while a.get(i) == Some(&v) {
            i += 1;
            in_a += 1;
        }
        let mut in_b = 0usize;
        while b.get(j) == Some(&v) {
            j += 1;
            in_b += 1;
        }
        let t = (in_a + in_b) as f64;
        let mid_rank = next_rank + (t - 1.0) / 2.0;
        rank_sum_b += mid_rank * in_b as f64;
        tie_term += t * t * t - t;
        next_rank += t;
    }
    let nb = b.len() as f64;
    (rank_sum_b - nb * (nb + 1.0) / 2.0, tie_term)
}

/// Standard deviation of U under the null, with the tie correction
/// σ² = mn/12 · ((N + 1) − Σ(t³ − t)/(N(N − 1))) (Hollander & Wolfe §4.1).
pub(crate) fn u_sigma(m: usize, n: usize, tie_term: f64) -> f64 {
    let (m, n) = (m as f64, n as f64);
    let total = m + n;
    let var = m * n / 12.0 * ((total + 1.0) - tie_term / (total * (total - 1.0)));
    var.max(0.0).sqrt()
}

/// Exact null distribution of U for sample sizes m and n: P(U = u) for u = 0..=mn.
///
/// The counts are the coefficients of the Gaussian binomial [m + n choose m]_q
/// = Π_{k=1..m} (1 − q^{n+k}) / (1 − q^k) (Andrews, The Theory of Partitions, §3.3;
/// Mann & Whitney 1947), built one factor at a time with exact i128 arithmetic: every
/// partial product is itself a polynomial, and C(98, 49) < 2^127.
pub(crate) fn u_distribution(m: usize, n: usize) -> Vec<f64> {
    let size = m * n + 1;
    let mut c = vec![0_i128; size];
    c[0] = 1;
    // Truncated power-series arithmetic modulo q^size: the product has degree mn,
    // so nothing of it is lost, and every coefficient at or above `size` is dropped
    // consistently by both steps.
    for k in 1..=m {
        let s = n + k;
        for u in (s..size).rev() {
            c[u] -= c[u - s];
        }
        for u in k..size {
            c[u] += c[u - k];
        }
    }
    let total: i128 = c.iter().sum();
    let total = total as f64;
    c.iter().map(|&x| x as f64 / total).collect()
}

/// Exact P(U ≤ u) from a distribution built by [`u_distribution`].
fn exact_cdf(pmf: &[f64], u: f64) -> f64 {
    if u < 0.0 {
        return 0.0;
    }
    let upto = (u.floor() as usize).min(pmf.len() - 1);
    pmf[..=upto].iter().sum::<f64>().min(1.0)
}

/// Normal-approximation p-value for U, as R's `wilcox.test`: z = (U − mn/2 − c)/σ
/// with continuity correction c = ±½ toward the null when `correct`.
pub(crate) fn normal_p_value(
    u: f64,
    m: usize,
    n: usize,
    tie_term: f64,
    alternative: Alternative,
    correct: bool,
) -> (f64, f64) {
    let sigma = u_sigma(m, n, tie_term);
    let centred = u - (m * n) as f64 / 2.0;
    if sigma == 0.0 {
        // Every value tied: the data carry no ordering information.
        return (0.0, 1.0);
    }
    let correction = if !correct {
        0.0
    } else {
        match alternative {
            Alternative::TwoSided => 0.5 * centred.signum(),
            Alternative::BHigher => 0.5,
            Alternative::BLower => -0.5,
        }
    };
    let z = (centred - correction) / sigma;
    let p = match alternative {
        Alternative::TwoSided => 2.0 * normal_cdf(z).min(normal_sf(z)),
        Alternative::BHigher => normal_sf(z),
        Alternative::BLower => normal_cdf(z),
    };
    (z, p.clamp(0.0, 1.0))
}

/// Mann–Whitney U test (Wilcoxon rank-sum test) of B against A.
///
/// Exact p-values come from the permutation distribution when both samples are below
/// 50 and untied; otherwise the normal approximation with tie correction and
/// continuity correction is used, as in R's `wilcox.test` defaults.
pub fn mann_whitney(
    a: &[f64],
    b: &[f64],
    alternative: Alternative,
) -> Result<MannWhitney, StatsError> {
    const WHAT: &str = "a Mann-Whitney test";
    check_samples(WHAT, 'A', a, 1)?;
    check_samples(WHAT, 'B', b, 1)?;
    let (sa, sb) = (sorted(a), sorted(b));
    let (u, tie_term) = u_statistic(&sa, &sb);
    let (m, n) = (sb.len(), sa.len());
    if tie_term == 0.0 && m < EXACT_LIMIT && n < EXACT_LIMIT {
        let pmf = u_distribution(m, n);
        let mn = (m * n) as f64;
        // By symmetry P(U ≥ u) = P(U ≤ mn − u).
        let upper = exact_cdf(&pmf, mn - u);
        let lower = exact_cdf(&pmf, u);
        let p_value = match alternative {
            Alternative::BHigher => upper,
            Alternative::BLower => lower,
            Alternative::TwoSided => {
                let tail = if u > mn / 2.0 { upper } else { lower };
                (2.0 * tail).min(1.0)
            }
        };
        return Ok(MannWhitney {
            u,
            z: None,
            p_value,
            alternative,
            method: MannWhitneyMethod::Exact,
        });
    }
    let (z, p_value) = normal_p_value(u, m, n, tie_term, alternative, true);
    Ok(MannWhitney {
        u,
        z: Some(z),
        p_value,
        alternative,
        method: MannWhitneyMethod::Normal,
    })
}

/// Key that orders finite f64 values like the reals, as an unsigned integer, so that
/// bisection over it visits every representable value in at most 64 steps.
fn order_key(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn from_order_key(k: u64) -> f64 {
    if k >> 63 == 1 {
        f64::from_bits(k & !(1 << 63))
    } else {
        f64::from_bits(!k)
    }
}

/// Number of pairwise differences b − a (as computed in floating point) that are
/// ≤ v, from sorted samples, in O(m + n).
///
/// fl(b − a) is non-decreasing in b and non-increasing in a (rounding is monotone),
/// so for each b the qualifying a form a suffix whose start only moves right.
fn count_differences_at_most(a: &[f64], b: &[f64], v: f64) -> u64 {
    let mut start = 0;
    let mut count = 0_u64;
    for &y in b {
        while start < a.len() && y - a[start] > v {
            start += 1;
        }
        count += (a.len() - start) as u64;
    }
    count
}

/// The k-th smallest (1-based) of the m·n pairwise differences b − a, without
/// materializing them.
///
/// Bisection on the ordering key of the candidate value, counting with
/// [`count_differences_at_most`]: the answer is the smallest representable v with at
/// least k differences ≤ v, which is exactly the k-th difference. O((m + n) · 64)
/// instead of the O(mn) of sorting every difference, which matters at each look of a
/// long latency comparison.
pub(crate) fn kth_difference(a: &[f64], b: &[f64], k: u64) -> f64 {
    let (Some(&a_min), Some(&a_max), Some(&b_min), Some(&b_max)) =
        (a.first(), a.last(), b.first(), b.last())
    else {
        return f64::NAN;
    };
    let smallest = b_min - a_max;
    if count_differences_at_most(a, b, smallest) >= k {
        return smallest;
    }
    // Invariant: count(from_key(lo)) < k ≤ count(from_key(hi)).
    let mut lo = order_key(smallest);
    let mut hi = order_key(b_max - a_min);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if count_differences_at_most(a, b, from_order_key(mid)) >= k {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    from_order_key(hi)
}

/// Median of the pairwise differences b − a (the Hodges–Lehmann estimate).
pub(crate) fn median_difference(a: &[f64], b: &[f64]) -> f64 {
    let total = (a.len() * b.len()) as u64;
    if total % 2 == 1 {
        kth_difference(a, b, total.div_ceil(2))
    } else {
        0.5 * (kth_difference(a, b, total / 2) + kth_difference(a, b, total / 2 + 1))
    }
}

/// Hodges–Lehmann estimate of the location shift B − A with the Moses confidence
/// interval.
///
/// Estimate: median of all b − a (Hodges & Lehmann 1963). Interval: the order
/// statistics [D_(k), D_(mn+1−k)] with k the largest integer such that
/// P(U ≤ k − 1) ≤ α/2 under the null (Moses 1953; Lehmann, Nonparametrics, §2.6;
/// Hollander & Wolfe §4.3), from the exact distribution of U when there are no ties
/// and both sides are below 50, otherwise from its normal approximation. When even
/// k = 1 cannot reach the confidence, the widest interval [D_(1), D_(mn)] is
/// returned with the confidence it achieves.
pub fn hodges_lehmann(a: &[f64], b: &[f64], confidence: f64) -> Result<HodgesLehmann, StatsError> {
    const WHAT: &str = "a Hodges-Lehmann interval";
    check_samples(WHAT, 'A', a, 1)?;
    check_samples(WHAT, 'B', b, 1)?;
    check_open_unit(WHAT, "confidence", confidence)?;
    let (sa, sb) = (sorted(a), sorted(b));
    Ok(hodges_lehmann_sorted(&sa, &sb, confidence))
}

/// Hodges–Lehmann on the log scale, reported as the ratio B / A: the estimate is
/// the median of b/a and the interval the Moses interval of log b − log a,
/// exponentiated. This is the relative shift latency and throughput margins use.
pub fn hodges_lehmann_ratio(
    a: &[f64],
    b: &[f64],
    confidence: f64,
) -> Result<HodgesLehmann, StatsError> {
    const WHAT: &str = "a Hodges-Lehmann ratio interval";
    check_samples(WHAT, 'A', a, 1)?;
    check_samples(WHAT, 'B', b, 1)?;
    check_open_unit(WHAT, "confidence", confidence)?;
    for (side, xs) in [('A', a), ('B', b)] {
        if let Some(&value) = xs.iter().find(|&&x| x <= 0.0) {
            return Err(StatsError::NonPositiveSample {
                what: WHAT,
                side,
                value,
            });
        }
    }
    let la: Vec<f64> = a.iter().map(|x| x.ln()).collect();
    let lb: Vec<f64> = b.iter().map(|x| x.ln()).collect();
    let mut hl = hodges_lehmann_sorted(&sorted(&la), &sorted(&lb), confidence);
    hl.estimate = hl.estimate.exp();
    hl.lower = hl.lower.exp();
    hl.upper = hl.upper.exp();
    Ok(hl)
}

fn hodges_lehmann_sorted(a: &[f64], b: &[f64], confidence: f64) -> HodgesLehmann {
    let alpha = 1.0 - confidence;
    let (m, n) = (b.len(), a.len());
    let total = (m * n) as u64;
    let (_, tie_term) = u_statistic(a, b);
    let (k, achieved, method) = if tie_term == 0.0 && m < EXACT_LIMIT && n < EXACT_LIMIT {
        let pmf = u_distribution(m, n);
        // Largest k with P(U ≤ k − 1) ≤ α/2, i.e. count the leading cumulative
        // probabilities that stay within α/2.
        let mut cdf = 0.0;
        let mut k = 0_u64;
        for p in &pmf {
            if cdf + p > alpha / 2.0 * (1.0 + 1e-12) {
                break;
            }
            cdf += p;
            k += 1;
        }
        if k == 0 {
            (1, 1.0 - 2.0 * pmf[0], MannWhitneyMethod::Exact)
        } else {
            (k, 1.0 - 2.0 * cdf, MannWhitneyMethod::Exact)
        }
    } else {
        let sigma = u_sigma(m, n, tie_term);
        let z = normal_quantile(1.0 - alpha / 2.0);
        let k = ((total as f64) / 2.0 + 0.5 - z * sigma).floor().max(1.0);
        let achieved = if sigma > 0.0 {
            1.0 - 2.0 * normal_cdf((k - 0.5 - total as f64 / 2.0) / sigma)
        } else {
            0.0
        };
        (k as u64, achieved, MannWhitneyMethod::Normal)
    };
    HodgesLehmann {
        estimate: median_difference(a, b),
        lower: kth_difference(a, b, k),
        upper: kth_difference(a, b, total + 1 - k),
        confidence,
        achieved_confidence: achieved.max(0.0),
        method,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // R `?wilcox.test`, two-sample example from Hollander & Wolfe (1973), p. 69f:
    // permeability constants of the human chorioamnion at term (x) and at 12-26
    // weeks (y); the alternative of interest is "x greater".
    const X_TERM: [f64; 10] = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46];
    const Y_EARLY: [f64; 5] = [1.15, 0.88, 0.90, 0.74, 1.21];

    #[test]
    fn mann_whitney_r_documentation_example() {
        // wilcox.test(x, y, alternative = "g") prints W = 35, p-value = 0.1272.
        // x plays B (its W is our U for B), y plays A.
        let t = mann_whitney(&Y_EARLY, &X_TERM, Alternative::BHigher).expect("valid");
        assert_eq!(t.u, 35.0);
        assert_eq!(t.method, MannWhitneyMethod::Exact);
        assert!((t.p_value - 0.1272).abs() < 5e-5, "{}", t.p_value);
        // By enumeration, 382 of the C(15, 5) = 3003 rank sets give W ≥ 35.
        assert!((t.p_value - 382.0 / 3003.0).abs() < 1e-12);
        // The same test without correction is R's second call,
        // wilcox.test(x, y, alternative = "greater", exact = FALSE, correct = FALSE):
        // W = 35, p-value = 0.1103 (by hand: σ² = 10·5·16/12 = 66.667,
        // z = (35 − 25)/8.165 = 1.2247, 1 − Φ(1.2247) = 0.1103).
        let (z, p) = normal_p_value(35.0, 10, 5, 0.0, Alternative::BHigher, false);
        assert!((z - 1.224_744_871).abs() < 1e-8);
        assert!((p - 0.1103).abs() < 5e-5, "{p}");
        // With R's default continuity correction, by hand: z = 9.5/8.165 = 1.1635,
        // p = 0.1223.
        let (_, p) = normal_p_value(35.0, 10, 5, 0.0, Alternative::BHigher, true);
        assert!((p - 0.1223).abs() < 5e-5, "{p}");
    }

    #[test]
    fn hodges_lehmann_hollander_wolfe_data() {
        // Same data. The 50 differences x − y sorted (by hand, two decimals):
        // ... 0.24, 0.25, 0.30 (24th), 0.30 (25th: 1.04 − 0.74), 0.31 (26th:
        // 1.46 − 1.15), 0.43, ... so the estimate is (0.30 + 0.31)/2 = 0.305, as R's
        // wilcox.test(x, y, conf.int = TRUE) reports ("difference in location").
        let hl = hodges_lehmann(&Y_EARLY, &X_TERM, 0.95).expect("valid");
        assert!((hl.estimate - 0.305).abs() < 1e-12, "{}", hl.estimate);
        assert_eq!(hl.method, MannWhitneyMethod::Exact);
        // Exact interval, by enumerating the C(15, 5) = 3003 rank sets: the null
        // U distribution for (10, 5) has P(U ≤ 8) = 60/3003 = 0.0200 ≤ 0.025 <
        // P(U ≤ 9) = 83/3003 = 0.0276, so k = 9 and the interval is
        // [D_(9), D_(42)] = [0.73 − 0.88, 1.64 − 0.88] = [−0.15, 0.76], achieving
        // 1 − 2·60/3003 = 0.9600.
        assert!((hl.lower + 0.15).abs() < 1e-12, "{}", hl.lower);
        assert!((hl.upper - 0.76).abs() < 1e-12, "{}", hl.upper);
        assert!((hl.achieved_confidence - (1.0 - 120.0 / 3003.0)).abs() < 1e-12);
    }

    #[test]
    fn exact_distribution_matches_enumeration() {
        // Enumerate all C(8, 3) = 56 placements of 3 B ranks among 8 and count U.
        let (m, n) = (3, 5);
        let mut counts = vec![0_u32; m * n + 1];
        for i in 1..=8_usize {
            for j in (i + 1)..=8 {
                for k in (j + 1)..=8 {
                    counts[i + j + k - 6] += 1;
                }
            }
        }
        let pmf = u_distribution(m, n);
        for (u, &c) in counts.iter().enumerate() {
            assert!((pmf[u] - f64::from(c) / 56.0).abs() < 1e-15, "u = {u}");
        }
        // Symmetry and normalization for the largest exact size.
        let pmf = u_distribution(49, 49);
        assert!((pmf.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((pmf[0] - pmf[49 * 49]).abs() < 1e-40 && pmf[0] > 0.0);
        assert!((pmf[100] - pmf[49 * 49 - 100]).abs() < 1e-20);
    }

    #[test]
    fn large_samples_use_the_normal_approximation() {
        let a: Vec<f64> = (0..60).map(f64::from).collect();
        let b: Vec<f64> = (0..60).map(|i| f64::from(i) + 10.5).collect();
        let t = mann_whitney(&a, &b, Alternative::TwoSided).expect("valid");
        assert_eq!(t.method, MannWhitneyMethod::Normal);
        assert!(t.p_value < 0.05);
        let hl = hodges_lehmann(&a, &b, 0.95).expect("valid");
        assert_eq!(hl.estimate, 10.5);
        assert!(hl.lower < 10.5 && hl.upper > 10.5);
    }

    #[test]
    fn ratio_is_exponentiated_log_shift() {
        let a = [10.0, 12.0, 9.0, 11.0, 10.5];
        let b: Vec<f64> = a.iter().map(|x| x * 1.25).collect();
        let hl = hodges_lehmann_ratio(&a, &b, 0.9).expect("valid");
        assert!((hl.estimate - 1.25).abs() < 1e-12);
        assert!(hodges_lehmann_ratio(&a, &[0.0, 1.0], 0.9).is_err());
    }

    fn sample() -> impl Strategy<Value = Vec<f64>> {
        // Coarse values so that ties occur.
        prop::collection::vec((0_i32..40).prop_map(|x| f64::from(x) * 0.5), 1..70)
    }

    proptest! {
        #[test]
        fn kth_difference_matches_brute_force(a in sample(), b in sample()) {
            let (sa, sb) = (sorted(&a), sorted(&b));
            let mut all: Vec<f64> = sb.iter().flat_map(|y| sa.iter().map(move |x| y - x)).collect();
            all.sort_by(f64::total_cmp);
            for k in [1, all.len() / 3 + 1, all.len() / 2 + 1, all.len()] {
                prop_assert_eq!(kth_difference(&sa, &sb, k as u64), all[k - 1]);
            }
        }

        #[test]
        fn p_values_are_probabilities_and_symmetric(a in sample(), b in sample()) {
            let ab = mann_whitney(&a, &b, Alternative::TwoSided).expect("valid");
            let ba = mann_whitney(&b, &a, Alternative::TwoSided).expect("valid");
            prop_assert!((0.0..=1.0).contains(&ab.p_value));
            prop_assert!((ab.p_value - ba.p_value).abs() < 1e-9);
            prop_assert!((ab.u + ba.u - (a.len() * b.len()) as f64).abs() < 1e-9);
            let hi = mann_whitney(&a, &b, Alternative::BHigher).expect("valid");
            let lo = mann_whitney(&b, &a, Alternative::BLower).expect("valid");
            prop_assert!((hi.p_value - lo.p_value).abs() < 1e-9);
        }

        #[test]
        fn interval_contains_estimate_and_flips(a in sample(), b in sample(), conf in 0.5_f64..0.99) {
            let hl = hodges_lehmann(&a, &b, conf).expect("valid");
            prop_assert!(hl.lower <= hl.estimate && hl.estimate <= hl.upper);
            let rev = hodges_lehmann(&b, &a, conf).expect("valid");
            prop_assert!((hl.estimate + rev.estimate).abs() < 1e-12);
            prop_assert!((hl.lower + rev.upper).abs() < 1e-12);
            prop_assert!((hl.upper + rev.lower).abs() < 1e-12);
        }
    }
}
