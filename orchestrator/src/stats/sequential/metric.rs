//! The metric monitor: paired per-boot values on the log scale, Student's t.

use super::super::boundary::BoundaryCache;
use super::super::special::{normal_sf, student_t_upper_quantile};
use super::super::{sample_variance, StatsError};
use super::{Decision, Design, Equivalence, Evidence, LookReport, Looks};

/// Sequential comparison of a latency or throughput metric for one test on one arch,
/// on the relative (log) scale, from pairs: one value of A and one of B that were
/// measured side by side (one boot each, in one batch).
#[derive(Debug, Clone)]
pub struct PairedMetricMonitor {
    looks: Looks,
    /// ln(B / A) of every pair so far.
    log_ratios: Vec<f64>,
    /// Relative resolution of the values (a histogram's bucket width over its bound): their
    /// rounding puts a floor under the pairs' variance, 2·res²/12, so that values that tie
    /// at a few levels cannot pass for a measured agreement, and widens every interval by
    /// one bucket each way, for rounding that is the same in every boot.
    resolution: f64,
}

impl PairedMetricMonitor {
    /// A monitor for `design`, whose margin is a relative shift (0.05 = ±5 %), and whose
    /// `max_runs_per_side` counts pairs.
    pub fn new(design: Design) -> Result<Self, StatsError> {
        Self::build(design, None)
    }

    /// Like [`PairedMetricMonitor::new`], sharing boundary computations through `cache`.
    pub fn with_cache(design: Design, cache: &BoundaryCache) -> Result<Self, StatsError> {
        Self::build(design, Some(cache.clone()))
    }

    fn build(design: Design, cache: Option<BoundaryCache>) -> Result<Self, StatsError> {
        design.validate("a metric monitor", f64::INFINITY)?;
        Ok(Self {
            looks: Looks::new(design, Equivalence::TwoSided, cache),
            log_ratios: Vec::new(),
            resolution: 0.0,
        })
    }

    /// Raises the values' relative resolution to `resolution` if it is coarser: the data
    /// say how finely they were measured, and the coarsest so far rules.
    pub fn note_resolution(&mut self, resolution: f64) {
        if resolution.is_finite() {
            self.resolution = self.resolution.max(resolution);
        }
    }

    /// Records one batch's pairs `(a, b)` (all values positive; none when a side of the
    /// batch gave no value) and decides. A look needs two pairs: one says nothing about
    /// the spread.
    pub fn observe(&mut self, pairs: &[(f64, f64)]) -> Result<Decision, StatsError> {
        const WHAT: &str = "a metric batch";
        self.looks.check_open()?;
        for &(a, b) in pairs {
            for (side, x) in [('A', a), ('B', b)] {
                if !x.is_finite() {
                    return Err(StatsError::NonFiniteSample {
                        what: WHAT,
                        side,
                        value: x,
                    });
                }
                if x <= 0.0 {
                    return Err(StatsError::NonPositiveSample {
                        what: WHAT,
                        side,
                        value: x,
                    });
                }
            }
        }
        self.log_ratios
            .extend(pairs.iter().map(|&(a, b)| (b / a).ln()));
        let n = self.log_ratios.len();
        if n < 2 {
            return Ok(Decision::Continue);
        }
        let d = &self.log_ratios;
        let mean = d.iter().sum::<f64>() / n as f64;
        // Each value is rounded by up to one bucket: a uniform error of variance res²/12, on
        // both values of a pair.
        let var = sample_variance(d).max(2.0 * self.resolution * self.resolution / 12.0);
        let se = (var / n as f64).sqrt();
        let df = (n - 1) as f64;
        let margin = self.looks.design.margin.ln_1p();
        Ok(self.looks.look(
            n as u64,
            n as u64,
            margin,
            |c, e| {
                // The normal critical value of the spending boundary, as the t quantile
                // with the same tail probability.
                // Rounding can also be systematic (every boot of a side in the same bucket):
                // the interval is widened by one bucket each way, so that no answer rests
                // on a difference, or an agreement, finer than the values can show.
                let slack = self.resolution.ln_1p();
                let bounds = |z: f64| {
                    z.is_finite().then(|| {
                        let t = student_t_upper_quantile(normal_sf(z), df);
                        (mean - t * se - slack, mean + t * se + slack)
                    })
                };
                Evidence {
                    estimate: mean,
                    interval: bounds(c),
                    equivalence_interval: bounds(e),
                    unit_variance: var,
                    needed: None,
                }
            },
            f64::exp,
        ))
    }

    /// Pairs recorded so far.
    pub fn pairs(&self) -> usize {
        self.log_ratios.len()
    }

    /// Every look so far, in order.
    pub fn looks(&self) -> &[LookReport] {
        &self.looks.reports
    }

    pub fn design(&self) -> &Design {
        &self.looks.design
    }

    /// Stops before the planned maximum: the decision already made, or Inconclusive with
    /// the estimate of the last look and the pairs it would likely still need.
    pub fn conclude(&mut self) -> Decision {
        self.looks.conclude()
    }
}
