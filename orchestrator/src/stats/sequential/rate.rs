//! The failure-rate monitor: failing runs clustered in boots (Rao–Scott for "different",
//! failing boots for "no difference").

use super::super::boundary::BoundaryCache;
use super::super::proportion::{newcombe_bounds, newcombe_bounds_real};
use super::super::{Counts, StatsError};
use super::{Decision, Design, Equivalence, Evidence, LookReport, Looks};

/// Sequential comparison of failure rates for one test on one arch, from clusters of runs
/// (one cluster per boot).
///
/// - **Different** rests on the runs' failure rates, with each side's counts divided by its
///   design effect before Newcombe's interval: the method of Rao & Scott, "A simple method
///   for the analysis of clustered binary data", Biometrics 48 (1992) 577–585. The design
///   effect is the ratio of the cluster-robust (ratio-estimator) variance of the side's rate
///   to the binomial one, at least 1: failures bunched in a few boots count for a few
///   boots, failures spread over every boot count run by run.
/// - **No difference** rests on the failing boots: B's boots fail at most `margin` more
///   often than A's, one-sided. With no failure on a side its design effect cannot be
///   estimated, and a per-run bound would assume runs independent exactly where a race
///   that needs a lucky boot would hide; the boot-level bound assumes nothing about runs.
#[derive(Debug, Clone)]
pub struct RateMonitor {
    looks: Looks,
    /// Per side, every cluster so far: (runs, failures).
    a: Vec<Counts>,
    b: Vec<Counts>,
}

impl RateMonitor {
    /// A monitor for `design`, whose margin is an absolute rate difference.
    pub fn new(design: Design) -> Result<Self, StatsError> {
        Self::build(design, None)
    }

    /// Like [`RateMonitor::new`], sharing boundary computations with every monitor
    /// given the same cache (all cells of one compare run see the same looks).
    pub fn with_cache(design: Design, cache: &BoundaryCache) -> Result<Self, StatsError> {
        Self::build(design, Some(cache.clone()))
    }

    fn build(design: Design, cache: Option<BoundaryCache>) -> Result<Self, StatsError> {
        design.validate("a failure-rate monitor", 1.0)?;
        Ok(Self {
            looks: Looks::new(design, Equivalence::UpperOnly, cache),
            a: Vec::new(),
            b: Vec::new(),
        })
    }

    /// Records one batch of independent runs (each run its own cluster) and decides.
    pub fn observe(&mut self, a: Counts, b: Counts) -> Result<Decision, StatsError> {
        let singles = |c: Counts| -> Vec<Counts> {
            (0..c.runs)
                .map(|i| Counts::new(1, u64::from(i < c.failures)))
                .collect()
        };
        for (side, c) in [('A', a), ('B', b)] {
            if c.failures > c.runs {
                return Err(StatsError::FailuresExceedRuns {
                    what: "a failure-rate batch",
                    side,
                    runs: c.runs,
                    failures: c.failures,
                });
            }
        }
        self.observe_clusters(&singles(a), &singles(b))
    }

    /// Records one batch of clusters per side (each one boot's runs and failures; a
    /// cluster without runs is ignored) and decides.
    pub fn observe_clusters(&mut self, a: &[Counts], b: &[Counts]) -> Result<Decision, StatsError> {
        const WHAT: &str = "a failure-rate batch";
        self.looks.check_open()?;
        for (side, cs) in [('A', a), ('B', b)] {
            if let Some(c) = cs.iter().find(|c| c.failures > c.runs) {
                return Err(StatsError::FailuresExceedRuns {
                    what: WHAT,
                    side,
                    runs: c.runs,
                    failures: c.failures,
                });
            }
        }
        self.a.extend(a.iter().filter(|c| c.runs > 0));
        self.b.extend(b.iter().filter(|c| c.runs > 0));
        let (ua, ub) = (units(&self.a), units(&self.b));
        let (ea, eb) = (effective(&self.a), effective(&self.b));
        let margin = self.looks.design.margin;
        Ok(self.looks.look(
            ua.runs,
            ub.runs,
            margin,
            |c, e| {
                // Per-run variance of p̂_B − p̂_A with a half-failure added to each
                // side so that 0 failures do not claim zero spread.
                let smooth = |x: (f64, f64)| (x.1 + 0.5) / (x.0 + 1.0);
                let (pa, pb) = (smooth(ea), smooth(eb));
                Evidence {
                    estimate: eb.1 / eb.0 - ea.1 / ea.0,
                    interval: c.is_finite().then(|| newcombe_bounds_real(ea, eb, c)),
                    equivalence_interval: e.is_finite().then(|| newcombe_bounds(ua, ub, e)),
                    unit_variance: pa * (1.0 - pa) + pb * (1.0 - pb),
                    needed: units_to_settle(ua, ub, c, e, margin),
                }
            },
            |x| x,
        ))
    }

    /// Units (clusters) and failing units so far: (A, B).
    pub fn totals(&self) -> (Counts, Counts) {
        (units(&self.a), units(&self.b))
    }

    /// Every look so far, in order.
    pub fn looks(&self) -> &[LookReport] {
        &self.looks.reports
    }

    pub fn design(&self) -> &Design {
        &self.looks.design
    }

    /// Stops before the planned maximum: the decision already made, or Inconclusive with
    /// the estimate of the last look and the runs it would likely still need.
    pub fn conclude(&mut self) -> Decision {
        self.looks.conclude()
    }
}

/// Clusters and failing clusters.
fn units(cs: &[Counts]) -> Counts {
    Counts::new(
        cs.len() as u64,
        cs.iter().filter(|c| c.failures > 0).count() as u64,
    )
}

/// Rao–Scott effective (runs, failures) of one side: its totals over the design effect
/// d = max(1, v_cluster / v_binomial), with the ratio estimator's variance
/// v_cluster = m/(m−1) · Σ(xᵢ − p̂ nᵢ)² / n² over its m clusters. With fewer than two
/// clusters, or a rate of 0 or 1, d is 1: there is no spread between boots to see.
fn effective(cs: &[Counts]) -> (f64, f64) {
    let n: f64 = cs.iter().map(|c| c.runs as f64).sum();
    let x: f64 = cs.iter().map(|c| c.failures as f64).sum();
    if n == 0.0 {
        return (0.0, 0.0);
    }
    let p = x / n;
    let m = cs.len() as f64;
    let deff = if m >= 2.0 && p > 0.0 && p < 1.0 {
        let ss: f64 = cs
            .iter()
            .map(|c| (c.failures as f64 - p * c.runs as f64).powi(2))
            .sum();
        let v_cluster = m / (m - 1.0) * ss / (n * n);
        let v_binomial = p * (1.0 - p) / n;
        (v_cluster / v_binomial).max(1.0)
    } else {
        1.0
    };
    (n / deff, x / deff)
}

/// Units per side at which the same observed rates would settle a failure-rate question:
/// the Newcombe interval at today's critical values excludes 0 (difference), or its upper
/// bound falls under the margin (B no worse). Found by doubling then bisection over n with
/// the counts scaled to n, since near zero failures the normal approximation is far off (0
/// of 39 boots on both sides looked "1 unit short" of a 10-point bound that needs ~60).
pub(super) fn units_to_settle(a: Counts, b: Counts, c: f64, e: f64, margin: f64) -> Option<f64> {
    if a.runs == 0 || b.runs == 0 {
        return None;
    }
    let (ra, rb) = (a.rate(), b.rate());
    let settled = |n: u64| {
        let scale = |r: f64| Counts::new(n, ((r * n as f64).round() as u64).min(n));
        let (sa, sb) = (scale(ra), scale(rb));
        let diff = c.is_finite() && {
            let (lo, hi) = newcombe_bounds(sa, sb, c);
            lo > 0.0 || hi < 0.0
        };
        let equiv = e.is_finite() && newcombe_bounds(sa, sb, e).1 < margin;
        diff || equiv
    };
    let mut hi = a.runs.min(b.runs).max(1);
    while !settled(hi) {
        hi = hi.checked_mul(2)?;
        if hi > 1 << 24 {
            return None;
        }
    }
    let mut lo = hi / 2;
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if settled(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi as f64)
}
