//! Statistics for `lab compare` and `lab bisect`: pure, synchronous, deterministic
//! given a seed, and free of I/O.
//!
//! The module owns every number `lab` states with an error rate attached:
//!
//! - [`proportion`]: failure rates per test and arch. Fisher's exact test on the
//!   2×2 table, Wilson and Clopper–Pearson intervals for one rate, Newcombe's hybrid
//!   score interval for the difference of two.
//! - [`rank`]: latency and throughput. Mann–Whitney U, the Hodges–Lehmann shift with
//!   its Moses order-statistic interval.
//! - [`bootstrap`]: percentile-bootstrap intervals on the ratio of quantiles (p50,
//!   p99) of B over A, seeded.
//! - [`multiple`]: Holm and Benjamini–Hochberg adjustments.
//! - [`sequential`]: the adaptive stopping rule the compare loop drives batch by
//!   batch ([`RateMonitor`], [`PairedMetricMonitor`]), and the fixed-n sample size it is
//!   measured against.
//! - [`boundary`]: the group-sequential error-spending boundaries behind it.
//! - [`special`]: the special functions all of the above rest on.
//!
//! Everywhere, "A" is the baseline kernel and "B" the candidate; differences and
//! ratios are B relative to A, so [`Direction::BHigher`] means B fails more often, is
//! slower (latency) or faster (throughput) than A. Whether higher is worse is the
//! caller's call. A kernel crash is not a sample: the caller handles it before any
//! number reaches this module.

pub mod bootstrap;
pub mod boundary;
pub mod multiple;
pub mod proportion;
pub mod rank;
pub mod sequential;
pub mod special;

#[cfg(test)]
mod simulation;

use serde::{Deserialize, Serialize};

pub use bootstrap::{bootstrap_quantile_ratio, quantile, BootstrapConfig, QuantileRatio};
pub use boundary::{
    crossing_probabilities, inflation_factor, spending_boundaries, BoundaryCache, Spending,
};
pub use multiple::{benjamini_hochberg, holm};
pub use proportion::{
    clopper_pearson, fisher_exact, newcombe_difference, wilson, DifferenceInterval, FisherTest,
    ProportionInterval,
};
pub use rank::{
    hodges_lehmann, hodges_lehmann_ratio, mann_whitney, HodgesLehmann, MannWhitney,
    MannWhitneyMethod,
};
pub use sequential::{
    fixed_n_metric, fixed_n_rate, Decision, Design, FixedN, LookReport, PairedMetricMonitor,
    RateMonitor,
};

/// Unbiased sample variance; 0 below two samples.
pub(crate) fn sample_variance(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
}

/// Which way B differs from A.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// B's failure rate or metric is higher than A's.
    BHigher,
    /// B's failure rate or metric is lower than A's.
    BLower,
}

impl Direction {
    /// The direction seen with A and B swapped.
    pub fn flipped(self) -> Self {
        match self {
            Direction::BHigher => Direction::BLower,
            Direction::BLower => Direction::BHigher,
        }
    }
}

/// The alternative hypothesis of a fixed-sample test.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Alternative {
    /// B differs from A in either direction.
    TwoSided,
    /// B is higher than A (fails more often, larger metric).
    BHigher,
    /// B is lower than A.
    BLower,
}

/// A closed interval `[lower, upper]`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

impl Interval {
    /// Whether `x` lies inside the closed interval.
    pub fn contains(&self, x: f64) -> bool {
        self.lower <= x && x <= self.upper
    }
}

/// Runs and failures of one side (one kernel) for one test on one arch.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub runs: u64,
    pub failures: u64,
}

impl Counts {
    pub fn new(runs: u64, failures: u64) -> Self {
        Self { runs, failures }
    }

    /// The observed failure proportion; 0 when there are no runs.
    pub fn rate(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.failures as f64 / self.runs as f64
        }
    }
}

/// Invalid input to a statistic. Messages read after "failed to".
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum StatsError {
    #[error("compute {what}: side {side} has too few samples; give it at least {needed}")]
    TooFewSamples {
        what: &'static str,
        side: char,
        needed: usize,
    },
    #[error("compute {what}: side {side} has a sample {value} that is not a finite number; drop non-finite samples before comparing")]
    NonFiniteSample {
        what: &'static str,
        side: char,
        value: f64,
    },
    #[error("compute {what}: side {side} has a sample {value} that is not positive; ratio metrics (latency, throughput) must be > 0")]
    NonPositiveSample {
        what: &'static str,
        side: char,
        value: f64,
    },
    #[error("compute {what}: side {side} reports {failures} failures out of {runs} runs; failures cannot exceed runs")]
    FailuresExceedRuns {
        what: &'static str,
        side: char,
        runs: u64,
        failures: u64,
    },
    #[error("compute {what}: parameter `{name}` is {value}, expected {expected}")]
    InvalidParameter {
        what: &'static str,
        name: &'static str,
        value: f64,
        expected: &'static str,
    },
    #[error("record a batch: this comparison already ended with `{decision}`; start a new monitor for new runs")]
    AlreadyDecided { decision: &'static str },
}

/// Checks that a confidence level or probability lies strictly inside (0, 1).
pub(crate) fn check_open_unit(
    what: &'static str,
    name: &'static str,
    value: f64,
) -> Result<(), StatsError> {
    if value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidParameter {
            what,
            name,
            value,
            expected: "a number strictly between 0 and 1",
        })
    }
}

/// Checks one side's counts.
pub(crate) fn check_counts(what: &'static str, side: char, c: Counts) -> Result<(), StatsError> {
    if c.failures > c.runs {
        return Err(StatsError::FailuresExceedRuns {
            what,
            side,
            runs: c.runs,
            failures: c.failures,
        });
    }
    if c.runs == 0 {
        return Err(StatsError::TooFewSamples {
            what,
            side,
            needed: 1,
        });
    }
    Ok(())
}

/// Checks one side's samples: at least `needed`, all finite.
pub(crate) fn check_samples(
    what: &'static str,
    side: char,
    xs: &[f64],
    needed: usize,
) -> Result<(), StatsError> {
    if xs.len() < needed {
        return Err(StatsError::TooFewSamples { what, side, needed });
    }
    if let Some(&value) = xs.iter().find(|x| !x.is_finite()) {
        return Err(StatsError::NonFiniteSample { what, side, value });
    }
    Ok(())
}
