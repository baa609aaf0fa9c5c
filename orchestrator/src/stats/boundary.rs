//! Group-sequential boundaries by error spending: the critical values that let the
//! compare loop look at its data after every batch without inflating the error rate.
//!
//! Setting: at look k the standardized statistic Z_k has been computed from all data
//! so far, at information fraction t_k ∈ (0, 1] of the planned maximum. Under the
//! canonical joint distribution (Jennison & Turnbull, Group Sequential Methods with
//! Applications to Clinical Trials, 2000, §3.1) Z_k √t_k is Brownian motion at time
//! t_k with drift η. A two-sided error-spending design (Lan & DeMets 1983) picks the
//! critical value c_k so that the probability of first crossing ±c at look k is the
//! increment α*(t_k) − α*(t_{k−1}) of a spending function α*. The c_k therefore
//! depend only on the look times seen so far, never on the data, and the total
//! probability of ever crossing is α*(1) = α however many looks there are and
//! whenever they fall.
//!
//! The crossing probabilities come from the recursive numerical integration of
//! Armitage, McPherson & Rowe (1969), in the form of Jennison & Turnbull (2000,
//! ch. 19): the sub-density of Z_k on the continuation region is carried from look
//! to look on a grid and integrated with Simpson's rule.
//!
//! [`BoundaryCache`] shares these computations between monitors: every cell of one
//! compare run (test × arch × metric) sees the same look times and so the same
//! boundaries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::special::{normal_pdf, normal_quantile, normal_sf, normal_sf_fast};
use super::{check_open_unit, StatsError};

/// Largest grid spacing on the Z scale. Jennison & Turnbull (2000, ch. 19) get
/// about 1e-6 accuracy with grids of this order; the spacing shrinks further when
/// looks are close together (see [`grid_spacing`]). The tests check the result
/// against published boundaries to 1e-3 and the total level to 1e-6.
const H_MAX: f64 = 0.05;
/// Half-width of the grid around the mean of Z, in standard deviations: the mass
/// beyond 9 is 1e-19.
const GRID_HALF_WIDTH: f64 = 9.0;
/// Half-width of the transition kernel kept in each integral, in kernel standard
/// deviations (the rest weighs less than 1e-22).
const KERNEL_HALF_WIDTH: f64 = 10.0;
/// Largest grid, to bound the work of pathological look schedules.
const MAX_GRID_INTERVALS: usize = 4000;
/// A spending increment below this is treated as nothing to spend: the boundary is
/// infinite at that look and no decision can be taken there.
const MIN_INCREMENT: f64 = 1e-13;

/// The shape of the error-spending function α*(t).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum Spending {
    /// Lan & DeMets (1983) O'Brien–Fleming type. Each side spends the one-sided
    /// function at α/2, 2 − 2Φ(z_{1−α/4}/√t), so in total
    /// α*(t) = 4 − 4Φ(z_{1−α/4}/√t), the convention of the published tables and
    /// of the R packages ldbounds and gsDesign. Almost nothing is spent early, so
    /// early stops need overwhelming evidence and the final look keeps nearly the
    /// full α (the maximum sample grows by about 2.5 % for five looks, see
    /// [`inflation_factor`]). The right default when runs are expensive but a
    /// wrong call is worse.
    #[default]
    OBrienFleming,
    /// Lan & DeMets (1983) Pocock type, α*(t) = α ln(1 + (e − 1)t): spends evenly,
    /// stops earlier on large effects at the price of a larger maximum sample.
    Pocock,
}

impl Spending {
    /// Cumulative error α*(t) spent by information fraction t (clamped to [0, 1]).
    pub fn cumulative(self, alpha: f64, t: f64) -> f64 {
        let t = t.clamp(0.0, 1.0);
        if t == 0.0 {
            return 0.0;
        }
        match self {
            Spending::OBrienFleming => {
                let z = normal_quantile(1.0 - alpha / 4.0);
                (4.0 * normal_sf(z / t.sqrt())).min(alpha)
            }
            Spending::Pocock => alpha * (1.0 + (std::f64::consts::E - 1.0) * t).ln(),
        }
    }
}

/// A discrete measure approximating the sub-density of Z at one look on its
/// continuation region: nodes lo + i·h, each carrying Simpson weight × density.
#[derive(Debug)]
struct Measure {
    lo: f64,
    h: f64,
    mass: Vec<f64>,
}

impl Measure {
    fn node(&self, i: usize) -> f64 {
        self.lo + i as f64 * self.h
    }
}

/// The recursion state after a look: its time, its critical value, and the measure
/// of the look before it (from which this look's sub-density is rebuilt, on a grid
/// fine enough for whatever the next look's spacing turns out to be).
#[derive(Debug, Clone)]
struct Stage {
    t: f64,
    c: f64,
    previous: Option<Arc<(f64, Measure)>>,
}

/// Grid spacing for integrating over Z at time t when the next look is at t_next:
/// the transition kernel has standard deviation √((t_next − t)/t) on that scale and
/// Simpson's rule wants several nodes per standard deviation.
fn grid_spacing(t: f64, t_next: f64) -> f64 {
    (((t_next - t) / t).sqrt() / 4.0).min(H_MAX)
}

/// The interval of Z at time t that carries mass: (−c, c) cut to the mean η√t ± 9.
fn region(t: f64, c: f64, drift: f64) -> (f64, f64) {
    let mean = drift * t.sqrt();
    (
        (-c).max(mean - GRID_HALF_WIDTH),
        c.min(mean + GRID_HALF_WIDTH),
    )
}

/// Simpson's-rule grid over [lo, hi] with spacing at most `h`: (lo, h, weights).
fn simpson(lo: f64, hi: f64, h: f64) -> (f64, Vec<f64>) {
    let width = (hi - lo).max(0.0);
    let mut n = ((width / h).ceil() as usize).clamp(2, MAX_GRID_INTERVALS);
    if n % 2 == 1 {
        n += 1;
    }
    let step = width / n as f64;
    let weights = (0..=n)
        .map(|i| {
            let w = if i == 0 || i == n {
                1.0
            } else if i % 2 == 1 {
                4.0
            } else {
                2.0
            };
            w * step / 3.0
        })
        .collect();
    (step, weights)
}

/// Builds the measure of the sub-density of Z at `stage` on a grid suited to a next
/// look at `t_next`, under drift η.
fn stage_measure(stage: &Stage, t_next: f64, drift: f64) -> Measure {
    let (lo, hi) = region(stage.t, stage.c, drift);
    let (h, weights) = simpson(lo, hi, grid_spacing(stage.t, t_next));
    let mass = match &stage.previous {
        None => {
            let mean = drift * stage.t.sqrt();
            weights
                .iter()
                .enumerate()
                .map(|(i, w)| w * normal_pdf(lo + i as f64 * h - mean))
                .collect()
        }
        Some(prev) => {
            let (t_prev, ref pm) = **prev;
            let delta = stage.t - t_prev;
            let sd = delta.sqrt();
            let (st, sp) = (stage.t.sqrt(), t_prev.sqrt());
            let scale = st / sd;
            // In the previous look's Z, the kernel is centred at (z√t − ηΔ)/√t_prev
            // with standard deviation √(Δ/t_prev).
            let reach = KERNEL_HALF_WIDTH * sd / sp;
            let last = pm.mass.len().saturating_sub(1);
            weights
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let z = lo + i as f64 * h;
                    let centre = (z * st - drift * delta) / sp;
                    let first = ((centre - reach - pm.lo) / pm.h).floor().max(0.0) as usize;
                    let end =
                        (((centre + reach - pm.lo) / pm.h).ceil().max(0.0) as usize).min(last);
                    let mut density = 0.0;
                    for j in first..=end {
                        let x = (z * st - pm.node(j) * sp - drift * delta) / sd;
                        density += pm.mass[j] * normal_pdf(x);
                    }
                    w * density * scale
                })
                .collect()
        }
    };
    Measure { lo, h, mass }
}

/// Probability of continuing to look `t_next` and then crossing ±c there, given the
/// measure at time t; also its derivative in c (for Newton's method).
fn exit_probability(m: &Measure, t: f64, t_next: f64, c: f64, drift: f64) -> (f64, f64) {
    let delta = t_next - t;
    let sd = delta.sqrt();
    let (sn, st) = (t_next.sqrt(), t.sqrt());
    let mut p = 0.0;
    let mut dp = 0.0;
    for (j, &mass) in m.mass.iter().enumerate() {
        let shift = m.node(j) * st + drift * delta;
        let upper = (c * sn - shift) / sd;
        let lower = (c * sn + shift) / sd;
        p += mass * (normal_sf_fast(upper) + normal_sf_fast(lower));
        dp -= mass * (normal_pdf(upper) + normal_pdf(lower)) * sn / sd;
    }
    (p, dp)
}

/// First-look exit probability P(|Z₁| ≥ c) under drift η.
fn first_exit(t: f64, c: f64, drift: f64) -> f64 {
    let mean = drift * t.sqrt();
    normal_sf(c - mean) + normal_sf(c + mean)
}

/// Solves exit(c) = target for c by Newton's method safeguarded by bisection; exit
/// is decreasing in c.
fn solve_boundary(m: &Measure, t: f64, t_next: f64, target: f64) -> f64 {
    let (mut lo, mut hi) = (0.0_f64, 40.0_f64);
    let mut c = normal_quantile(1.0 - target / 2.0).clamp(lo, hi);
    for _ in 0..100 {
        let (p, dp) = exit_probability(m, t, t_next, c, 0.0);
        let err = p - target;
        if err.abs() <= 1e-9 * target {
            return c;
        }
        if err > 0.0 {
            lo = c;
        } else {
            hi = c;
        }
        let newton = if dp < 0.0 { c - err / dp } else { f64::NAN };
        c = if newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if hi - lo < 1e-10 {
            break;
        }
    }
    c
}

/// Checks a look schedule: information fractions strictly increasing within (0, 1].
fn check_fractions(what: &'static str, fractions: &[f64]) -> Result<(), StatsError> {
    let mut previous = 0.0;
    for &t in fractions {
        if !(t > previous && t <= 1.0) {
            return Err(StatsError::InvalidParameter {
                what,
                name: "information fraction",
                value: t,
                expected: "fractions strictly increasing within (0, 1]",
            });
        }
        previous = t;
    }
    Ok(())
}

/// Critical values of a two-sided error-spending design at the given information
/// fractions (strictly increasing in (0, 1]; the last may be below 1 for an interim
/// schedule).
///
/// An infinite value means the spending function had (numerically) nothing to spend
/// at that look.
pub fn spending_boundaries(
    alpha: f64,
    spending: Spending,
    fractions: &[f64],
) -> Result<Vec<f64>, StatsError> {
    const WHAT: &str = "error-spending boundaries";
    check_open_unit(WHAT, "alpha", alpha)?;
    check_fractions(WHAT, fractions)?;
    let mut tracker = BoundaryTracker::new(alpha, spending);
    Ok(fractions.iter().map(|&t| tracker.next(t)).collect())
}

/// Probability of first crossing ±c_k at each look k, given critical values at
/// the information fractions, for drift η (the mean of Z_k is η√t_k; η = 0 is the null).
///
/// Summed, this is the type-I error (η = 0) or the power (η ≠ 0) of the design.
pub fn crossing_probabilities(
    fractions: &[f64],
    boundaries: &[f64],
    drift: f64,
) -> Result<Vec<f64>, StatsError> {
    const WHAT: &str = "boundary crossing probabilities";
    check_fractions(WHAT, fractions)?;
    if boundaries.len() != fractions.len() {
        return Err(StatsError::InvalidParameter {
            what: WHAT,
            name: "number of boundaries",
            value: boundaries.len() as f64,
            expected: "one critical value per information fraction",
        });
    }
    if let Some(&c) = boundaries.iter().find(|c| c.is_nan() || **c <= 0.0) {
        return Err(StatsError::InvalidParameter {
            what: WHAT,
            name: "critical value",
            value: c,
            expected: "a positive number (or infinity)",
        });
    }
    let mut out = Vec::with_capacity(fractions.len());
    let mut stage: Option<Stage> = None;
    for (&t, &c) in fractions.iter().zip(boundaries) {
        let (p, previous) = match &stage {
            None => (first_exit(t, c, drift), None),
            Some(s) => {
                let m = stage_measure(s, t, drift);
                let p = exit_probability(&m, s.t, t, c, drift).0;
                (p, Some(Arc::new((s.t, m))))
            }
        };
        out.push(p);
        stage = Some(Stage { t, c, previous });
    }
    Ok(out)
}

/// Ratio of the maximum information of an error-spending design with `looks`
/// equally spaced looks to that of the fixed-sample test with the same two-sided
/// α and power (the "inflation factor" of Jennison & Turnbull 2000, §2.3). The
/// budget that gives a sequential comparison the fixed-n power is the fixed n
/// times this factor.
pub fn inflation_factor(
    alpha: f64,
    power: f64,
    spending: Spending,
    looks: usize,
) -> Result<f64, StatsError> {
    const WHAT: &str = "an inflation factor";
    check_open_unit(WHAT, "power", power)?;
    let looks = looks.max(1);
    let fractions: Vec<f64> = (1..=looks).map(|k| k as f64 / looks as f64).collect();
    let bounds = spending_boundaries(alpha, spending, &fractions)?;
    let fixed = normal_quantile(1.0 - alpha / 2.0) + normal_quantile(power);
    let power_at = |drift: f64| {
        crossing_probabilities(&fractions, &bounds, drift).map(|p| p.iter().sum::<f64>())
    };
    // The spending design is never more powerful than the fixed test at the same
    // information, and doubling the drift is far more than any schedule needs.
    let (mut lo, mut hi) = (fixed * 0.9, fixed * 2.0);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if power_at(mid)? < power {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok((0.5 * (lo + hi) / fixed).powi(2))
}

/// Incremental boundary computation for one monitor: feed information fractions in
/// increasing order, get the critical value of each look.
#[derive(Debug, Clone)]
pub(crate) struct BoundaryTracker {
    alpha: f64,
    spending: Spending,
    stage: Option<Stage>,
    history: Vec<u64>,
    cache: Option<BoundaryCache>,
}

/// Shared memo of boundary computations, keyed by (α, spending, look times so far).
///
/// Cloning shares the memo. The boundaries are a pure function of that key, so a
/// monitor gets the same numbers with or without a cache; the cache only saves the
/// numerical integration when many monitors see the same look schedule.
#[derive(Debug, Clone, Default)]
pub struct BoundaryCache {
    inner: Arc<Mutex<HashMap<CacheKey, Stage>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    alpha: u64,
    spending: Spending,
    history: Vec<u64>,
}

/// Memo entries kept before the cache is emptied; a compare run has at most a few
/// hundred distinct look schedules.
const CACHE_LIMIT: usize = 10_000;

impl BoundaryCache {
    fn get(&self, key: &CacheKey) -> Option<Stage> {
        let map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).cloned()
    }

    fn put(&self, key: CacheKey, stage: Stage) {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= CACHE_LIMIT {
            map.clear();
        }
        map.insert(key, stage);
    }
}

impl BoundaryTracker {
    pub(crate) fn new(alpha: f64, spending: Spending) -> Self {
        Self {
            alpha,
            spending,
            stage: None,
            history: Vec::new(),
            cache: None,
        }
    }

    pub(crate) fn with_cache(alpha: f64, spending: Spending, cache: BoundaryCache) -> Self {
        Self {
            cache: Some(cache),
            ..Self::new(alpha, spending)
        }
    }

    /// Cumulative error spent up to the last look.
    pub(crate) fn spent(&self) -> f64 {
        self.stage
            .as_ref()
            .map_or(0.0, |s| self.spending.cumulative(self.alpha, s.t))
    }

    /// Critical value for a look at information fraction `t`, which must exceed the
    /// previous look's (it is clamped to 1).
    pub(crate) fn next(&mut self, t: f64) -> f64 {
        let t = t.min(1.0);
        self.history.push(t.to_bits());
        let key = self.cache.as_ref().map(|_| CacheKey {
            alpha: self.alpha.to_bits(),
            spending: self.spending,
            history: self.history.clone(),
        });
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            if let Some(stage) = cache.get(key) {
                let c = stage.c;
                self.stage = Some(stage);
                return c;
            }
        }
        let stage = self.compute(t);
        let c = stage.c;
        if let (Some(cache), Some(key)) = (&self.cache, key) {
            cache.put(key, stage.clone());
        }
        self.stage = Some(stage);
        c
    }

    fn compute(&self, t: f64) -> Stage {
        let spent_before = self.spent();
        let target = self.spending.cumulative(self.alpha, t) - spent_before;
        match &self.stage {
            None => {
                let c = if target < MIN_INCREMENT {
                    f64::INFINITY
                } else {
                    normal_quantile(1.0 - target / 2.0)
                };
                Stage {
                    t,
                    c,
                    previous: None,
                }
            }
            Some(s) => {
                let m = stage_measure(s, t, 0.0);
                let c = if target < MIN_INCREMENT {
                    f64::INFINITY
                } else {
                    solve_boundary(&m, s.t, t, target)
                };
                Stage {
                    t,
                    c,
                    previous: Some(Arc::new((s.t, m))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn equally_spaced(k: usize) -> Vec<f64> {
        (1..=k).map(|i| i as f64 / k as f64).collect()
    }

    fn total(fractions: &[f64], boundaries: &[f64], drift: f64) -> f64 {
        crossing_probabilities(fractions, boundaries, drift)
            .expect("valid schedule")
            .iter()
            .sum()
    }

    fn spend(alpha: f64, spending: Spending, fractions: &[f64]) -> Vec<f64> {
        spending_boundaries(alpha, spending, fractions).expect("valid schedule")
    }

    #[test]
    fn pocock_and_obrien_fleming_constants() {
        // Jennison & Turnbull (2000), Tables 2.1 and 2.3: for two-sided α = 0.05 and
        // K = 5 equally spaced looks, Pocock's constant boundary is C_P = 2.413 and
        // O'Brien & Fleming's is c_k = C_B √(K/k) with C_B = 2.040; for K = 2,
        // C_P = 2.178. Each must cross with total probability 0.05 under the null;
        // the constants are rounded to 3 decimals, which moves the level by less
        // than 2e-4.
        let t = equally_spaced(5);
        let pocock = total(&t, &[2.413; 5], 0.0);
        assert!((pocock - 0.05).abs() < 2e-4, "{pocock}");
        let obf: Vec<f64> = (1..=5).map(|k| 2.040 * (5.0 / k as f64).sqrt()).collect();
        let level = total(&t, &obf, 0.0);
        assert!((level - 0.05).abs() < 2e-4, "{level}");
        let two = total(&equally_spaced(2), &[2.178; 2], 0.0);
        assert!((two - 0.05).abs() < 2e-4, "{two}");
    }

    #[test]
    fn power_matches_published_inflation_factors() {
        // Jennison & Turnbull (2000), Tables 2.2 and 2.4: with K = 5 and α = 0.05 the
        // maximum sample size is R times the fixed one, R = 1.207 (Pocock) and 1.026
        // (O'Brien-Fleming) for power 0.9, 1.229 and 1.028 for power 0.8. At drift
        // η = (z_{0.975} + z_{power}) √R the boundaries above must have that power.
        let t = equally_spaced(5);
        let pocock = [2.413; 5];
        let obf: Vec<f64> = (1..=5).map(|k| 2.040 * (5.0 / k as f64).sqrt()).collect();
        let cases: [(&[f64], f64, f64); 4] = [
            (&pocock, 0.9, 1.207),
            (&pocock, 0.8, 1.229),
            (&obf, 0.9, 1.026),
            (&obf, 0.8, 1.028),
        ];
        for (bounds, power, r) in cases {
            let drift = (normal_quantile(0.975) + normal_quantile(power)) * r.sqrt();
            let got = total(&t, bounds, drift);
            assert!((got - power).abs() < 1e-3, "R = {r}: power {got}");
        }
    }

    #[test]
    fn lan_demets_boundaries() {
        // Lan-DeMets spending, two-sided α = 0.05 (0.025 per side), five equally
        // spaced looks, as tabulated by the R packages ldbounds and gsDesign:
        // O'Brien-Fleming type 4.877, 3.357, 2.680, 2.290, 2.031;
        // Pocock type 2.438, 2.427, 2.410, 2.397, 2.386.
        let t = equally_spaced(5);
        let expected = [
            (Spending::OBrienFleming, [4.877, 3.357, 2.680, 2.290, 2.031]),
            (Spending::Pocock, [2.438, 2.427, 2.410, 2.397, 2.386]),
        ];
        for (spending, want) in expected {
            let c = spend(0.05, spending, &t);
            for (got, want) in c.iter().zip(want) {
                assert!((got - want).abs() < 1e-3, "{spending:?}: {c:?}");
            }
            let level = total(&t, &c, 0.0);
            assert!((level - 0.05).abs() < 1e-6, "{level}");
        }
    }

    #[test]
    fn spending_holds_for_uneven_and_many_looks() {
        // Whatever the schedule, the boundaries spend exactly α in total.
        for spending in [Spending::OBrienFleming, Spending::Pocock] {
            let uneven = [0.05, 0.07, 0.3, 0.31, 0.55, 0.9, 1.0];
            let c = spend(0.05, spending, &uneven);
            let level = total(&uneven, &c, 0.0);
            assert!((level - 0.05).abs() < 1e-5, "{spending:?} {level}");
            let many = equally_spaced(40);
            let c = spend(0.1, spending, &many);
            let level = total(&many, &c, 0.0);
            assert!((level - 0.1).abs() < 1e-5, "{spending:?} {level}");
        }
    }

    #[test]
    fn single_look_is_the_fixed_test() {
        let c = spend(0.05, Spending::OBrienFleming, &[1.0]);
        assert!((c[0] - 1.959_963_984_540_054).abs() < 1e-12);
        // Spending at a tiny fraction is nothing: the boundary is infinite.
        let c = spend(0.05, Spending::OBrienFleming, &[0.001, 1.0]);
        assert!(c[0].is_infinite() && (c[1] - 1.96).abs() < 1e-3);
    }

    #[test]
    fn schedules_are_validated() {
        assert!(spending_boundaries(0.05, Spending::Pocock, &[0.5, 0.5]).is_err());
        assert!(spending_boundaries(0.05, Spending::Pocock, &[0.5, 1.2]).is_err());
        assert!(spending_boundaries(1.5, Spending::Pocock, &[1.0]).is_err());
        assert!(crossing_probabilities(&[0.5, 1.0], &[2.0], 0.0).is_err());
        assert!(crossing_probabilities(&[1.0], &[-2.0], 0.0).is_err());
    }

    #[test]
    fn inflation_factors() {
        // The spending-function designs land near the classical ones above (the
        // O'Brien-Fleming type a little below 1.026 and the Pocock type a little
        // below 1.207 at K = 5 and power 0.9), and one look needs no inflation.
        let obf = inflation_factor(0.05, 0.9, Spending::OBrienFleming, 5).expect("valid");
        let pocock = inflation_factor(0.05, 0.9, Spending::Pocock, 5).expect("valid");
        assert!(obf > 1.0 && obf < 1.03, "{obf}");
        assert!(pocock > 1.15 && pocock < 1.21, "{pocock}");
        let one = inflation_factor(0.05, 0.9, Spending::Pocock, 1).expect("valid");
        assert!((one - 1.0).abs() < 1e-6);
    }

    #[test]
    fn cache_gives_identical_boundaries() {
        let cache = BoundaryCache::default();
        let mut a = BoundaryTracker::with_cache(0.05, Spending::OBrienFleming, cache.clone());
        let mut b = BoundaryTracker::with_cache(0.05, Spending::OBrienFleming, cache);
        let mut plain = BoundaryTracker::new(0.05, Spending::OBrienFleming);
        for t in [0.2, 0.4, 0.6, 0.8, 1.0] {
            let (x, y, z) = (a.next(t), b.next(t), plain.next(t));
            assert_eq!(x.to_bits(), z.to_bits());
            assert_eq!(y.to_bits(), z.to_bits());
        }
    }
}
