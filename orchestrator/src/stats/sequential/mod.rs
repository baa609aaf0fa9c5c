//! Adaptive stopping for `lab compare`: monitors the compare loop feeds one batch
//! of runs at a time, which answer after each batch whether A and B are different,
//! equivalent within a margin, not yet known, or out of budget.
//!
//! # Design: repeated confidence intervals with error spending
//!
//! The monitors use a group-sequential design with Lan–DeMets error spending over a
//! planned maximum number of runs per side (the budget), and decide from repeated
//! confidence intervals (RCIs; Jennison & Turnbull, "Repeated confidence intervals
//! for group sequential clinical trials", Controlled Clinical Trials 1984, and
//! "Sequential equivalence testing and repeated confidence intervals", Biometrics
//! 1993; also their 2000 book, ch. 9 and 6).
//!
//! At each look k, at information fraction t_k = n_k / n_max (n_k is the harmonic
//! mean of the two sides' run counts, so unequal sides count for what they are
//! worth), [`super::boundary`] gives two critical values from the spending
//! function: c_k for level α and e_k for level 2α_eq. Each is used in place of the
//! fixed-sample z in an interval for the difference Δ of B from A:
//!
//! - failure rates: Δ = rate(B) − rate(A), interval = Newcombe's hybrid score
//!   interval with critical value c_k ([`super::proportion`]); well behaved at zero
//!   failures, where a Wald interval would collapse. The unit is whatever the caller
//!   counts: `lab compare` counts boots (a boot fails when any of its runs fails), so
//!   that runs sharing a boot are never taken as independent;
//! - latency/throughput: paired. Each unit is a pair (one boot of A, one of B, run
//!   side by side in one batch) and Δ = the mean of the pairs' log ratios B/A; the
//!   interval is Student's t on the pairs' differences, with c_k turned into the t
//!   quantile of the same tail probability (Jennison & Turnbull 2000, §3.8); reported
//!   exponentiated, as a ratio. Boot-to-boot variation is in the pairs' spread, and
//!   what the two boots of a pair share (host state, time) cancels.
//!
//! The decision after each look:
//!
//! 1. **Different** if the level-α RCI excludes 0; the side it falls on is the
//!    direction.
//! 2. **Equivalent** if the level-2α_eq RCI lies strictly inside the equivalence
//!    region (−margin, +margin); this is the sequential form of two one-sided tests
//!    (TOST) at α_eq each. For failure rates only the upper side counts (B fails at
//!    most `margin` more often than A, one-sided at α_eq): B failing less often is no
//!    regression. An interval of zero width (tied or quantised values) never shows
//!    equivalence: it has no spread behind it.
//! 3. **Inconclusive** at the last look (the budget is reached) if neither holds,
//!    with a rough estimate of the runs per side still needed.
//! 4. **Continue** otherwise.
//!
//! Different wins when both hold: a real but small difference is still reported,
//! with its size, and the caller can judge it against the margin.
//!
//! # Guarantees
//!
//! Because the critical values spend α over the looks, the RCIs cover the true Δ
//! at every look simultaneously with probability 1 − α (resp. 1 − 2α_eq), whatever
//! the number and timing of looks and whatever stopping rule is applied to them.
//! Hence, without looking at a fixed-n p-value at any time:
//!
//! - P(Different | A and B behave the same) ≤ α, for any number of looks;
//! - P(Different in the wrong direction) ≤ α/2;
//! - P(Equivalent | |Δ| ≥ margin) ≤ α_eq;
//! - the comparison ends by the budget, at most `max_runs_per_side` runs per side.
//!
//! These hold to the accuracy of the normal approximation behind the canonical
//! joint distribution of the interim statistics (Jennison & Turnbull 2000, ch. 3
//! and 11; ch. 12 for binary data; for rank statistics on accumulating data see
//! Sen, Sequential Nonparametrics, 1981), which the simulation tests in
//! `stats/simulation.rs` check at small samples. They need the look times not to be chosen from the results: feed
//! batches whose sizes are decided before the batch runs. Stopping for equivalence
//! is "non-binding" for the difference test (it can only lower its error), and vice
//! versa. The power to detect a difference of the size of the margin before the
//! budget runs out is that of the fixed-sample test with the same budget, reduced
//! by a few percent for O'Brien–Fleming spending ([`super::boundary::inflation_factor`]).
//!
//! # Margins
//!
//! - Failure rates: `margin` is an absolute difference of proportions; 0.02 means
//!   A and B are equivalent when their failure rates differ by less than 2
//!   percentage points.
//! - Latency and throughput: `margin` is relative; 0.05 means equivalent when the
//!   shift ratio B/A lies strictly within (1/1.05, 1.05), a band symmetric on the
//!   log scale (so swapping A and B gives the same answer), a hair narrower below 1
//!   than 0.95.
//!
//! # What to feed
//!
//! Rates: per batch, each side's units (boots) and failing units of that test on
//! that arch. Metrics: per batch, the pairs: one summary per boot and side (say the
//! p99 of that boot's merged latency histogram, or its throughput). Runs within one
//! boot are not independent, and neither are samples within one run, so feeding
//! either individually would overstate the evidence.

use serde::{Deserialize, Serialize};

use super::boundary::{BoundaryCache, BoundaryTracker, Spending};
use super::special::normal_quantile;
use super::{check_open_unit, Direction, Interval, StatsError};

mod metric;
mod rate;

pub use metric::PairedMetricMonitor;
pub use rate::RateMonitor;

/// Parameters of one sequential comparison, stated up front and never changed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Design {
    /// Two-sided probability of declaring Different when A and B behave the same.
    pub alpha: f64,
    /// Probability of declaring Equivalent when the true difference is at or beyond
    /// the margin.
    pub alpha_equivalence: f64,
    /// Probability of detecting a difference the size of the margin; used for the
    /// fixed-n comparison and the more-runs estimate, not by the stopping rule.
    pub power: f64,
    /// Equivalence margin: absolute for failure rates, relative for metrics.
    pub margin: f64,
    /// Budget, and the information at which the spending function reaches α.
    pub max_runs_per_side: u64,
    /// Shape of the error-spending function.
    pub spending: Spending,
}

impl Design {
    /// A design with the conventional α = α_eq = 0.05, power 0.8 and
    /// O'Brien–Fleming-type spending.
    pub fn new(margin: f64, max_runs_per_side: u64) -> Self {
        Self {
            alpha: 0.05,
            alpha_equivalence: 0.05,
            power: 0.8,
            margin,
            max_runs_per_side,
            spending: Spending::OBrienFleming,
        }
    }

    fn validate(&self, what: &'static str, margin_max: f64) -> Result<(), StatsError> {
        check_open_unit(what, "alpha", self.alpha)?;
        check_open_unit(what, "power", self.power)?;
        if !(self.alpha_equivalence > 0.0 && self.alpha_equivalence < 0.5) {
            return Err(StatsError::InvalidParameter {
                what,
                name: "alpha_equivalence",
                value: self.alpha_equivalence,
                expected: "a probability strictly between 0 and 0.5",
            });
        }
        if !(self.margin > 0.0 && self.margin < margin_max) {
            return Err(StatsError::InvalidParameter {
                what,
                name: "margin",
                value: self.margin,
                expected: if margin_max <= 1.0 {
                    "an absolute rate difference strictly between 0 and 1"
                } else {
                    "a positive relative shift such as 0.05"
                },
            });
        }
        if self.max_runs_per_side < 2 {
            return Err(StatsError::InvalidParameter {
                what,
                name: "max_runs_per_side",
                value: self.max_runs_per_side as f64,
                expected: "at least 2",
            });
        }
        Ok(())
    }
}

/// What the monitor concluded after a batch.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// B differs from A. `estimate` and `interval` are on the reporting scale
    /// (rate difference, or ratio B/A); `error_rate` is the design's α.
    Different {
        direction: Direction,
        estimate: f64,
        interval: Interval,
        error_rate: f64,
    },
    /// A and B are equivalent within `margin`; `error_rate` is α_eq.
    Equivalent {
        margin: f64,
        estimate: f64,
        interval: Interval,
        error_rate: f64,
    },
    /// Not enough evidence yet; feed another batch.
    Continue,
    /// The budget is spent without a decision. `more_runs_estimate` is a rough
    /// figure of the runs per side needed beyond those already made, from the
    /// current estimate and spread as for a fixed-sample design. This monitor's
    /// error rates were spent on its budget, so the way to get them is a new
    /// comparison with a budget of about the runs so far plus this estimate.
    Inconclusive {
        more_runs_estimate: u64,
        /// NaN when no look had data (JSON writes it as `null`, and it reads back as NaN).
        #[serde(deserialize_with = "nan_if_null")]
        estimate: f64,
        interval: Option<Interval>,
    },
}

/// An `f64` that JSON may hold as `null`: serde_json writes NaN so.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl Decision {
    fn name(&self) -> &'static str {
        match self {
            Decision::Different { .. } => "different",
            Decision::Equivalent { .. } => "equivalent",
            Decision::Continue => "continue",
            Decision::Inconclusive { .. } => "inconclusive",
        }
    }

    /// Whether the comparison is over.
    pub fn is_final(&self) -> bool {
        !matches!(self, Decision::Continue)
    }
}

/// Everything one look computed, for reports.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LookReport {
    /// 1-based look number.
    pub look: usize,
    pub runs_a: u64,
    pub runs_b: u64,
    pub information_fraction: f64,
    /// Cumulative α spent for the difference test, up to and including this look.
    pub alpha_spent: f64,
    /// Critical value of the difference RCI; `None` when nothing was spent yet.
    pub critical_value: Option<f64>,
    /// Critical value of the equivalence RCI.
    pub equivalence_critical_value: Option<f64>,
    pub estimate: f64,
    /// Level-α RCI on the reporting scale; `None` when it is unbounded.
    pub interval: Option<Interval>,
    /// Level-2α_eq RCI on the reporting scale.
    pub equivalence_interval: Option<Interval>,
    pub decision: Decision,
}

/// Sample sizes per side of the fixed-n design with the same α, α_eq, power and
/// margin: the n for detecting a difference of the margin, the n for showing
/// equivalence when there is no difference, and the larger of the two (a fixed-n
/// design must be ready for either answer).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FixedN {
    pub difference: u64,
    pub equivalence: u64,
    pub per_side: u64,
}

/// Which sides of the equivalence region an interval must stay inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Equivalence {
    /// (−margin, +margin): neither higher nor lower by the margin.
    TwoSided,
    /// (−∞, +margin): B is at most `margin` higher (non-inferiority of B).
    UpperOnly,
}

/// Bookkeeping common to both monitors.
#[derive(Debug, Clone)]
struct Looks {
    design: Design,
    sided: Equivalence,
    difference: BoundaryTracker,
    equivalence: BoundaryTracker,
    last_fraction: f64,
    reports: Vec<LookReport>,
    decided: Option<Decision>,
    /// What the last look saw, for [`Looks::conclude`].
    last: Option<LastLook>,
}

#[derive(Debug, Clone)]
struct LastLook {
    runs_a: u64,
    runs_b: u64,
    estimate: f64,
    reported_estimate: f64,
    interval: Option<Interval>,
    unit_variance: f64,
    needed: Option<f64>,
    margin_working: f64,
}

/// What a monitor computes at one look, on its working scale (the log scale for
/// metrics).
struct Evidence {
    estimate: f64,
    interval: Option<(f64, f64)>,
    equivalence_interval: Option<(f64, f64)>,
    /// Variance of Δ̂ for one run per side, for the more-runs estimate.
    unit_variance: f64,
    /// Units per side that would settle the question, when the monitor can say better
    /// than the normal approximation from `unit_variance` (rates near zero).
    needed: Option<f64>,
}

/// Smallest increase of the information fraction that counts as a new look.
const MIN_FRACTION_STEP: f64 = 1e-9;

impl Looks {
    fn new(design: Design, sided: Equivalence, cache: Option<BoundaryCache>) -> Self {
        let make = |alpha| match &cache {
            Some(c) => BoundaryTracker::with_cache(alpha, design.spending, c.clone()),
            None => BoundaryTracker::new(alpha, design.spending),
        };
        Self {
            difference: make(design.alpha),
            equivalence: make(2.0 * design.alpha_equivalence),
            design,
            sided,
            last_fraction: 0.0,
            reports: Vec::new(),
            decided: None,
            last: None,
        }
    }

    /// Ends the comparison before the planned maximum (the wall-time budget ran out):
    /// Inconclusive from the last look, or the decision already made. Stopping early
    /// without a decision can only lower the error rates.
    fn conclude(&mut self) -> Decision {
        if let Some(d) = &self.decided {
            return d.clone();
        }
        let decision = match &self.last {
            Some(l) => {
                let ev = Evidence {
                    estimate: l.estimate,
                    interval: None,
                    equivalence_interval: None,
                    unit_variance: l.unit_variance,
                    needed: l.needed,
                };
                Decision::Inconclusive {
                    more_runs_estimate: self.more_runs(l.runs_a, l.runs_b, &ev, l.margin_working),
                    estimate: l.reported_estimate,
                    interval: l.interval,
                }
            }
            None => Decision::Inconclusive {
                more_runs_estimate: u64::MAX,
                estimate: f64::NAN,
                interval: None,
            },
        };
        self.decided = Some(decision.clone());
        decision
    }

    fn check_open(&self) -> Result<(), StatsError> {
        match &self.decided {
            Some(d) => Err(StatsError::AlreadyDecided { decision: d.name() }),
            None => Ok(()),
        }
    }

    /// The information fraction of (runs_a, runs_b): harmonic mean over budget.
    fn fraction(&self, runs_a: u64, runs_b: u64) -> f64 {
        if runs_a == 0 || runs_b == 0 {
            return 0.0;
        }
        let (a, b) = (runs_a as f64, runs_b as f64);
        (2.0 * a * b / (a + b) / self.design.max_runs_per_side as f64).min(1.0)
    }

    /// Runs one look if the information grew; `evidence(z_diff, z_equiv)` computes
    /// the estimate and both intervals at the given critical values; `report` maps
    /// working-scale numbers to the reporting scale.
    fn look(
        &mut self,
        runs_a: u64,
        runs_b: u64,
        margin_working: f64,
        evidence: impl Fn(f64, f64) -> Evidence,
        report: impl Fn(f64) -> f64,
    ) -> Decision {
        let t = self.fraction(runs_a, runs_b);
        if t <= self.last_fraction + MIN_FRACTION_STEP {
            return Decision::Continue;
        }
        self.last_fraction = t;
        let is_last = t >= 1.0 - MIN_FRACTION_STEP;
        let c = self.difference.next(t);
        let e = self.equivalence.next(t);
        let ev = evidence(c, e);
        let to_report = |iv: Option<(f64, f64)>| {
            iv.map(|(lower, upper)| Interval {
                lower: report(lower),
                upper: report(upper),
            })
        };
        let interval = if c.is_finite() {
            to_report(ev.interval)
        } else {
            None
        };
        let equivalence_interval = if e.is_finite() {
            to_report(ev.equivalence_interval)
        } else {
            None
        };
        let estimate = report(ev.estimate);
        self.last = Some(LastLook {
            runs_a,
            runs_b,
            estimate: ev.estimate,
            reported_estimate: estimate,
            interval,
            unit_variance: ev.unit_variance,
            needed: ev.needed,
            margin_working,
        });
        // Neither answer comes from an interval of zero width: every pair tied at the same
        // ratio (quantised values) has no spread behind it.
        let different = match ev.interval {
            Some((lo, hi)) if hi - lo <= DEGENERATE_WIDTH => None,
            Some((lo, _)) if c.is_finite() && lo > 0.0 => Some(Direction::BHigher),
            Some((_, hi)) if c.is_finite() && hi < 0.0 => Some(Direction::BLower),
            _ => None,
        };
        // "No difference" needs an interval that says something: one of zero width (every
        // value tied, as quantised latencies often are) has no variance behind it and would
        // claim equivalence from nothing.
        let lower_ok = |lo: f64| self.sided == Equivalence::UpperOnly || lo > -margin_working;
        let equivalent = e.is_finite()
            && matches!(ev.equivalence_interval,
                Some((lo, hi)) if lower_ok(lo) && hi < margin_working
                    && hi - lo > DEGENERATE_WIDTH);
        let decision = match (different, interval, equivalence_interval) {
            (Some(direction), Some(interval), _) => Decision::Different {
                direction,
                estimate,
                interval,
                error_rate: self.design.alpha,
            },
            (_, _, Some(interval)) if equivalent => Decision::Equivalent {
                margin: self.design.margin,
                estimate,
                interval,
                error_rate: self.design.alpha_equivalence,
            },
            _ if is_last => Decision::Inconclusive {
                more_runs_estimate: self.more_runs(runs_a, runs_b, &ev, margin_working),
                estimate,
                interval,
            },
            _ => Decision::Continue,
        };
        self.reports.push(LookReport {
            look: self.reports.len() + 1,
            runs_a,
            runs_b,
            information_fraction: t,
            alpha_spent: self.difference.spent(),
            critical_value: c.is_finite().then_some(c),
            equivalence_critical_value: e.is_finite().then_some(e),
            estimate,
            interval,
            equivalence_interval,
            decision: decision.clone(),
        });
        if decision.is_final() {
            self.decided = Some(decision.clone());
        }
        decision
    }

    /// Extra runs per side to settle the question, as for a fixed-sample design
    /// with the current estimate Δ̂ and per-run variance σ² taken as true: to show
    /// the difference, n = σ²(z_{1−α/2} + z_{power})²/Δ̂²; to show equivalence,
    /// n = σ²(z_{1−α_eq} + z_{(1+power)/2})²/(margin − |Δ̂|)². The smaller counts.
    fn more_runs(&self, runs_a: u64, runs_b: u64, ev: &Evidence, margin: f64) -> u64 {
        let d = &self.design;
        let var = ev.unit_variance;
        let diff = ev.estimate.abs();
        let z_diff = normal_quantile(1.0 - d.alpha / 2.0) + normal_quantile(d.power);
        let z_equiv =
            normal_quantile(1.0 - d.alpha_equivalence) + normal_quantile(0.5 + d.power / 2.0);
        let n_diff = if diff > 0.0 {
            var * z_diff * z_diff / (diff * diff)
        } else {
            f64::INFINITY
        };
        let n_equiv = if diff < margin {
            var * z_equiv * z_equiv / ((margin - diff) * (margin - diff))
        } else {
            f64::INFINITY
        };
        let needed = ev.needed.unwrap_or(n_diff.min(n_equiv));
        let now = runs_a.min(runs_b) as f64;
        let more = (needed - now).ceil();
        if more.is_finite() {
            more.clamp(1.0, u64::MAX as f64) as u64
        } else {
            u64::MAX
        }
    }
}

/// Width (on the log or rate scale) below which an interval is taken as degenerate: no
/// equivalence is claimed from it.
const DEGENERATE_WIDTH: f64 = 1e-9;

/// Fixed-n runs per side for failure rates around `baseline_rate` (A's expected
/// failure rate), with the design's α, α_eq, power and absolute margin δ.
///
/// Difference (Fleiss, Levin & Paik, Statistical Methods for Rates and
/// Proportions, 3rd ed., §4.2, without continuity correction), for p₁ = baseline
/// and p₂ = p₁ + δ (or p₁ − δ, floored at 0, if that would pass 1):
/// n = [z_{1−α/2} √(2p̄q̄) + z_{power} √(p₁q₁ + p₂q₂)]² / δ².
/// Equivalence when the rates are equal (two one-sided tests; Chow, Shao & Wang,
/// Sample Size Calculations in Clinical Research, §4.2):
/// n = (z_{1−α_eq} + z_{(1+power)/2})² · 2p₁q₁ / δ².
pub fn fixed_n_rate(design: &Design, baseline_rate: f64) -> Result<FixedN, StatsError> {
    const WHAT: &str = "a fixed-n failure-rate design";
    design.validate(WHAT, 1.0)?;
    check_open_unit(WHAT, "baseline_rate", baseline_rate)?;
    let delta = design.margin;
    let p1 = baseline_rate;
    let p2 = if p1 + delta < 1.0 {
        p1 + delta
    } else {
        (p1 - delta).max(0.0)
    };
    let pbar = (p1 + p2) / 2.0;
    let za = normal_quantile(1.0 - design.alpha / 2.0);
    let zb = normal_quantile(design.power);
    let diff = (za * (2.0 * pbar * (1.0 - pbar)).sqrt()
        + zb * (p1 * (1.0 - p1) + p2 * (1.0 - p2)).sqrt())
    .powi(2)
        / (delta * delta);
    let ze =
        normal_quantile(1.0 - design.alpha_equivalence) + normal_quantile(0.5 + design.power / 2.0);
    let equiv = ze * ze * 2.0 * p1 * (1.0 - p1) / (delta * delta);
    Ok(fixed_n(diff, equiv))
}

/// Fixed-n pairs for a metric whose pairs' log ratios ln(B/A) have standard deviation
/// `log_sd`, with the design's relative margin m, on the log scale δ = ln(1 + m).
///
/// The normal-theory sizes of the paired test, σ²(z₁ + z₂)²/δ²: difference with
/// z₁ = z_{1−α/2}, z₂ = z_{power}; equivalence with z₁ = z_{1−α_eq},
/// z₂ = z_{(1+power)/2} (Chow, Shao & Wang, Sample Size Calculations in Clinical
/// Research, §3.2).
pub fn fixed_n_metric(design: &Design, log_sd: f64) -> Result<FixedN, StatsError> {
    const WHAT: &str = "a fixed-n metric design";
    design.validate(WHAT, f64::INFINITY)?;
    if !(log_sd > 0.0 && log_sd.is_finite()) {
        return Err(StatsError::InvalidParameter {
            what: WHAT,
            name: "log_sd",
            value: log_sd,
            expected: "a positive standard deviation of the pairs' log ratios",
        });
    }
    let delta = design.margin.ln_1p();
    let unit = log_sd * log_sd / (delta * delta);
    let zd = normal_quantile(1.0 - design.alpha / 2.0) + normal_quantile(design.power);
    let ze =
        normal_quantile(1.0 - design.alpha_equivalence) + normal_quantile(0.5 + design.power / 2.0);
    Ok(fixed_n(unit * zd * zd, unit * ze * ze))
}

fn fixed_n(difference: f64, equivalence: f64) -> FixedN {
    let difference = difference.ceil().max(1.0) as u64;
    let equivalence = equivalence.ceil().max(1.0) as u64;
    FixedN {
        difference,
        equivalence,
        per_side: difference.max(equivalence),
    }
}

#[cfg(test)]
mod tests {
    use super::rate::units_to_settle;
    use super::*;

    #[test]
    fn an_inconclusive_decision_without_an_estimate_reads_back() {
        let d = Decision::Inconclusive {
            more_runs_estimate: u64::MAX,
            estimate: f64::NAN,
            interval: None,
        };
        let json = serde_json::to_string(&d).expect("serialise");
        assert!(json.contains("\"estimate\":null"), "{json}");
        match serde_json::from_str::<Decision>(&json).expect("reads back") {
            Decision::Inconclusive { estimate, .. } => assert!(estimate.is_nan()),
            other => panic!("{other:?}"),
        }
    }
    use crate::stats::special::{normal_sf, student_t_upper_quantile};
    use crate::stats::Counts;
    use proptest::prelude::*;

    #[test]
    fn fixed_n_reference_values() {
        // The formula of Fleiss, Levin & Paik (2003, §4.2), evaluated by hand for
        // p₁ = 0.05, p₂ = 0.15, α = 0.05 two-sided, power 0.8: p̄ = 0.1,
        // [1.95996·√0.18 + 0.84162·√(0.0475 + 0.1275)]² / 0.01
        // = [0.83154 + 0.35207]² / 0.01 = 140.09 → 141 per side.
        let mut d = Design::new(0.10, 1000);
        d.alpha_equivalence = 0.05;
        let n = fixed_n_rate(&d, 0.05).expect("valid");
        assert_eq!(n.difference, 141);
        // Equivalence by hand: (1.64485 + 1.28155)² · 2 · 0.05 · 0.95 / 0.01
        // = 8.56381 · 9.5 = 81.356 → 82.
        assert_eq!(n.equivalence, 82);
        assert_eq!(n.per_side, 141);
        // Metric pairs: σ = 0.2, margin 5 %: δ = ln 1.05 = 0.048790, unit = 0.04/δ²
        // = 0.04/0.0023805 = 16.803; difference 16.803 · 2.80158² = 131.9 → 132;
        // equivalence 16.803 · 2.92640² = 143.9 → 144.
        let m = fixed_n_metric(&Design::new(0.05, 1000), 0.2).expect("valid");
        assert_eq!((m.difference, m.equivalence, m.per_side), (132, 144, 144));
    }

    #[test]
    fn designs_are_validated() {
        assert!(RateMonitor::new(Design::new(0.0, 100)).is_err());
        assert!(RateMonitor::new(Design::new(1.5, 100)).is_err());
        assert!(PairedMetricMonitor::new(Design::new(0.05, 1)).is_err());
        let mut d = Design::new(0.05, 100);
        d.alpha = 1.0;
        assert!(PairedMetricMonitor::new(d).is_err());
        assert!(fixed_n_metric(&Design::new(0.05, 10), 0.0).is_err());
    }

    #[test]
    fn rate_monitor_lifecycle() {
        let mut m = RateMonitor::new(Design::new(0.2, 40)).expect("valid");
        // No runs on one side: no look.
        assert_eq!(
            m.observe(Counts::new(5, 0), Counts::new(0, 0)),
            Ok(Decision::Continue)
        );
        assert!(m.looks().is_empty());
        assert!(m.observe(Counts::new(1, 2), Counts::new(1, 0)).is_err());
        // 0/20 against 20/20 on a 40-run budget is overwhelming.
        let d = m
            .observe(Counts::new(15, 0), Counts::new(20, 20))
            .expect("valid");
        match d {
            Decision::Different {
                direction,
                interval,
                ..
            } => {
                assert_eq!(direction, Direction::BHigher);
                assert!(interval.lower > 0.0);
            }
            other => panic!("expected Different, got {other:?}"),
        }
        assert_eq!(m.looks().len(), 1);
        assert!(matches!(
            m.observe(Counts::new(1, 0), Counts::new(1, 0)),
            Err(StatsError::AlreadyDecided { .. })
        ));
    }

    #[test]
    fn budget_end_is_inconclusive_with_an_estimate() {
        // 10 % against 13 % with a 2-point margin and 60 runs: far too few runs.
        let mut m = RateMonitor::new(Design::new(0.02, 60)).expect("valid");
        let mut last = Decision::Continue;
        for _ in 0..3 {
            last = m
                .observe(Counts::new(20, 2), Counts::new(20, 3))
                .expect("valid");
        }
        match last {
            Decision::Inconclusive {
                more_runs_estimate, ..
            } => {
                // Difference route: Newcombe's interval at 10 % against 15 % at the last
                // look's critical value excludes 0 from about 350 runs per side; equivalence
                // is impossible (|Δ̂| > margin). So a few hundred more runs per side.
                assert!(
                    (200..2000).contains(&more_runs_estimate),
                    "{more_runs_estimate}"
                );
            }
            other => panic!("expected Inconclusive, got {other:?}"),
        }
        let report = serde_json::to_string(m.looks()).expect("serializable");
        let back: Vec<LookReport> = serde_json::from_str(&report).expect("round trip");
        // serde_json's default float parser may be off by an ulp, so compare loosely.
        assert_eq!(back.len(), m.looks().len());
        for (x, y) in back.iter().zip(m.looks()) {
            assert_eq!((x.look, x.runs_a, x.runs_b), (y.look, y.runs_a, y.runs_b));
            assert_eq!(x.decision.name(), y.decision.name());
            assert!((x.estimate - y.estimate).abs() < 1e-12);
        }
    }

    #[test]
    fn clean_boots_say_how_many_more_a_bound_needs() {
        // 0 of 39 failing boots on each side, out of budget: a 10-point one-sided bound needs
        // roughly 3/0.1 = 30 boots per side at the normal level, more at a spent level; the
        // normal approximation from a smoothed variance said "1 more".
        let mut m = RateMonitor::new(Design::new(0.1, 39)).expect("valid");
        let mut last = Decision::Continue;
        for _ in 0..13 {
            last = m
                .observe(Counts::new(3, 0), Counts::new(3, 0))
                .expect("valid");
            if last.is_final() {
                break;
            }
        }
        match last {
            Decision::Equivalent { .. } => {}
            Decision::Inconclusive {
                more_runs_estimate, ..
            } => assert!(more_runs_estimate >= 5, "{more_runs_estimate}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            units_to_settle(Counts::new(10, 0), Counts::new(10, 0), 2.5, 2.0, 0.1),
            units_to_settle(Counts::new(20, 0), Counts::new(20, 0), 2.5, 2.0, 0.1),
            "the answer depends on the rates, not on the units so far"
        );
        let n =
            units_to_settle(Counts::new(10, 0), Counts::new(10, 0), 2.5, 2.0, 0.1).expect("finite");
        assert!((35.0..80.0).contains(&n), "{n}");
    }

    #[test]
    fn near_ties_of_rounded_values_are_no_evidence_of_agreement() {
        // Seen for real: a few pairs of p99 values read from 1/16-octave histograms, ratios
        // all about 0.92, made "no difference" [0.915, 0.925]. Rounded values cannot agree
        // more closely than their rounding.
        let pairs = [
            (100.0, 91.9),
            (200.0, 184.0),
            (150.0, 138.15),
            (120.0, 110.4),
            (180.0, 165.42),
            (90.0, 82.8),
        ];
        let design = Design::new(0.10, 6);
        let width = |m: &PairedMetricMonitor| {
            let iv = m.looks()[0].equivalence_interval.expect("bounded");
            iv.upper / iv.lower
        };
        let mut plain = PairedMetricMonitor::new(design.clone()).expect("valid");
        plain.observe(&pairs).expect("valid");
        assert!(
            width(&plain) < 1.01,
            "without the floor the interval is a sliver"
        );
        let mut rounded = PairedMetricMonitor::new(design).expect("valid");
        rounded.note_resolution(1.0 / 16.0);
        let d = rounded.observe(&pairs).expect("valid");
        assert!(
            width(&rounded) > 1.03,
            "the rounding's own spread is in the interval"
        );
        assert!(
            !matches!(d, Decision::Equivalent { .. }),
            "equivalence from rounded near-ties: {d:?}"
        );
    }

    #[test]
    fn tied_values_never_make_no_difference() {
        // Every run reads the same quantised bucket on both sides: the rank interval
        // collapses to a point, which must not be taken for "no difference".
        let design = Design::new(0.05, 40);
        let mut m = PairedMetricMonitor::new(design).expect("valid");
        let tied = vec![(983_040.0, 983_040.0); 10];
        let mut last = Decision::Continue;
        for _ in 0..4 {
            last = m.observe(&tied).expect("valid");
            assert!(
                !matches!(last, Decision::Equivalent { .. }),
                "equivalence from a zero-width interval: {last:?}"
            );
        }
        assert!(
            matches!(last, Decision::Inconclusive { .. }),
            "at the last look it is inconclusive: {last:?}"
        );
    }

    #[test]
    fn metric_monitor_detects_a_clear_shift() {
        // Boots differ a lot from each other (100 to 109), but within each pair B is
        // 30 % (± 1 %) slower: the pairing sees through the boot-to-boot spread.
        let pairs: Vec<(f64, f64)> = (0..10)
            .map(|i| {
                let a = 100.0 + f64::from(i * 7 % 10);
                (a, a * (1.3 + 0.01 * f64::from(i % 3) - 0.01))
            })
            .collect();
        let mut m = PairedMetricMonitor::new(Design::new(0.05, 20)).expect("valid");
        let d = m.observe(&pairs).expect("valid");
        match d {
            Decision::Different {
                direction,
                estimate,
                interval,
                ..
            } => {
                assert_eq!(direction, Direction::BHigher);
                assert!((estimate - 1.3).abs() < 0.01, "{estimate}");
                assert!(interval.lower > 1.25 && interval.contains(estimate));
            }
            other => panic!("expected Different, got {other:?}"),
        }
        assert!(m.observe(&[(1.0, -1.0)]).is_err());
    }

    #[test]
    fn one_pair_is_no_look_and_the_t_interval_matches_a_hand_computation() {
        let mut design = Design::new(0.5, 4);
        design.spending = Spending::Pocock;
        let mut m = PairedMetricMonitor::new(design).expect("valid");
        assert_eq!(m.observe(&[(1.0, 2.0)]), Ok(Decision::Continue));
        assert!(
            m.looks().is_empty(),
            "one pair says nothing about the spread"
        );
        // Pairs 2: ln ratios ln 2 and ln 1.5 (mean 0.549, sd 0.2034, se 0.1438).
        m.observe(&[(2.0, 3.0)]).expect("valid");
        let look = &m.looks()[0];
        let c = look.critical_value.expect("spent");
        let t = student_t_upper_quantile(normal_sf(c), 1.0);
        let (mean, se) = (
            (2f64.ln() + 1.5f64.ln()) / 2.0,
            (2f64.ln() - 1.5f64.ln()) / 2.0,
        );
        let iv = look.interval.expect("bounded");
        assert!((iv.lower - (mean - t * se).exp()).abs() < 1e-9);
        assert!((iv.upper - (mean + t * se).exp()).abs() < 1e-9);
    }

    #[test]
    fn a_failure_rate_is_equivalent_on_its_upper_side_only() {
        // B fails far less often than A: not a regression, and within the margin on
        // the side that matters, even though the rates are far apart.
        let mut m = RateMonitor::new(Design::new(0.1, 200)).expect("valid");
        let mut last = Decision::Continue;
        for _ in 0..10 {
            last = m
                .observe(Counts::new(20, 10), Counts::new(20, 0))
                .expect("valid");
            if last.is_final() {
                break;
            }
        }
        assert!(
            matches!(
                last,
                Decision::Different {
                    direction: Direction::BLower,
                    ..
                }
            ),
            "{last:?}"
        );
        // Nothing on either side, many units: B fails at most 10 points more often.
        let mut m = RateMonitor::new(Design::new(0.1, 60)).expect("valid");
        let mut last = Decision::Continue;
        for _ in 0..6 {
            last = m
                .observe(Counts::new(10, 0), Counts::new(10, 0))
                .expect("valid");
            if last.is_final() {
                break;
            }
        }
        match last {
            Decision::Equivalent { interval, .. } => assert!(interval.upper < 0.1),
            other => panic!("expected Equivalent, got {other:?}"),
        }
    }

    fn batches() -> impl Strategy<Value = Vec<(Counts, Counts)>> {
        let side = (1_u64..30)
            .prop_flat_map(|n| (Just(n), 0..=n))
            .prop_map(|(n, x)| Counts::new(n, x));
        prop::collection::vec((side.clone(), side), 1..6)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn swapping_a_and_b_mirrors_rate_decisions(batches in batches()) {
            let design = Design::new(0.1, 80);
            let mut ab = RateMonitor::new(design.clone()).expect("valid");
            let mut ba = RateMonitor::new(design).expect("valid");
            for (a, b) in batches {
                let (Ok(x), Ok(y)) = (ab.observe(a, b), ba.observe(b, a)) else { break };
                match (&x, &y) {
                    (Decision::Different { direction: d1, .. }, Decision::Different { direction: d2, .. }) => {
                        prop_assert_eq!(*d1, d2.flipped());
                    }
                    // "No difference" is one-sided for rates (B not worse than A), so it
                    // need not hold both ways round; "different" must.
                    (Decision::Different { .. }, _) | (_, Decision::Different { .. }) => {
                        prop_assert!(false, "different one way only: {:?} / {:?}", x, y);
                    }
                    _ => {}
                }
                for (l1, l2) in ab.looks().iter().zip(ba.looks()) {
                    prop_assert!((l1.estimate + l2.estimate).abs() < 1e-12);
                    if let (Some(i1), Some(i2)) = (l1.interval, l2.interval) {
                        prop_assert!(i1.contains(l1.estimate));
                        prop_assert!((i1.lower + i2.upper).abs() < 1e-12);
                    }
                }
            }
        }

        #[test]
        fn swapping_a_and_b_mirrors_metric_decisions(
            pairs in prop::collection::vec((1.0_f64..2.0, 1.0_f64..2.5), 2..40),
        ) {
            let design = Design::new(0.05, 40);
            let mut ab = PairedMetricMonitor::new(design.clone()).expect("valid");
            let mut ba = PairedMetricMonitor::new(design).expect("valid");
            let swapped: Vec<(f64, f64)> = pairs.iter().map(|&(a, b)| (b, a)).collect();
            let x = ab.observe(&pairs).expect("valid");
            let y = ba.observe(&swapped).expect("valid");
            match (&x, &y) {
                (Decision::Different { direction: d1, .. }, Decision::Different { direction: d2, .. }) => {
                    prop_assert_eq!(*d1, d2.flipped());
                }
                _ => prop_assert_eq!(x.name(), y.name()),
            }
            if let (Some(l1), Some(l2)) = (ab.looks().first(), ba.looks().first()) {
                prop_assert!((l1.estimate * l2.estimate - 1.0).abs() < 1e-9);
                if let Some(i1) = l1.interval {
                    prop_assert!(i1.lower <= l1.estimate && l1.estimate <= i1.upper);
                }
            }
        }
    }
}
