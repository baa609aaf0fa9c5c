//! Test support for the search: a simulated flaky test (the oracle), the syzbot-style
//! fixed-repeat policy the search is measured against, and a loop that drives a [`Search`]
//! with a closure. Used by the search's unit tests and by the simulations in
//! `bisect/simulation.rs`; test-only, so none of it is part of the search's API.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution};

use super::{Next, Observation, Search, SearchConfig, SearchError};

/// Outcome of one bisection by the fixed-repeat policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedOutcome {
    /// The commit named, or `None` when the bad end did not reproduce.
    pub culprit: Option<usize>,
    pub steps: u32,
    pub runs: u64,
}

/// The syzbot-style policy the Bayesian search is measured against: check the bad
/// end, then plain binary search, `runs_per_step` runs per step, a commit bad when
/// at least `min_failures` of them fail. `run(index, runs)` returns the failures.
pub fn fixed_repeat_bisect(
    n: usize,
    runs_per_step: u32,
    min_failures: u32,
    mut run: impl FnMut(usize, u32) -> u32,
) -> FixedOutcome {
    let mut steps = 1;
    let mut runs = u64::from(runs_per_step);
    if run(n, runs_per_step) < min_failures {
        return FixedOutcome {
            culprit: None,
            steps,
            runs,
        };
    }
    let (mut good, mut bad) = (0, n);
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        steps += 1;
        runs += u64::from(runs_per_step);
        if run(mid, runs_per_step) >= min_failures {
            bad = mid;
        } else {
            good = mid;
        }
    }
    FixedOutcome {
        culprit: Some(bad),
        steps,
        runs,
    }
}

/// Drives a search to its end with `step`, which carries out a test request (index,
/// runs) and reports what happened. Returns the search and its final [`Next`]:
/// [`Next::Done`] or [`Next::NotReproduced`].
pub fn drive(
    mut search: Search,
    mut step: impl FnMut(usize, u32) -> Observation,
) -> Result<(Search, Next), SearchError> {
    loop {
        let next = search.next();
        let (index, runs) = match next {
            Next::NeedBadEnd { runs } => (search.n(), runs),
            Next::NeedGoodEnd { runs } => (0, runs),
            Next::Test { index, runs } => (index, runs),
            Next::Done(_) | Next::NotReproduced { .. } => return Ok((search, next)),
        };
        search.observe(step(index, runs))?;
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): a fixed hash from (seed, commit, run)
/// to a uniform draw, so two policies running the same commit see the same runs.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A simulated flaky test: commits ≥ `culprit` fail with probability `p`, earlier
/// ones with `false_positive`. Each call is one boot; with a finite `kappa` the boot's
/// detection rate is drawn from Beta(pκ, (1−p)κ) first, so the runs of one boot hang
/// together as on a real guest. The k-th boot at a commit is a fixed function of
/// (seed, commit, k), so every policy sees the same history (common random numbers).
#[derive(Debug, Clone)]
pub struct FlakyOracle {
    pub culprit: usize,
    pub p: f64,
    pub false_positive: f64,
    pub kappa: f64,
    seed: u64,
    boots: HashMap<usize, u64>,
}

impl FlakyOracle {
    pub fn new(culprit: usize, p: f64, false_positive: f64, seed: u64) -> Self {
        Self {
            culprit,
            p,
            false_positive,
            kappa: f64::INFINITY,
            seed,
            boots: HashMap::new(),
        }
    }

    /// The same oracle with boot-to-boot spread κ of the detection rate.
    pub fn with_kappa(mut self, kappa: f64) -> Self {
        self.kappa = kappa;
        self
    }

    /// Boots commit `index` and runs the test `runs` times; returns the failures.
    pub fn run(&mut self, index: usize, runs: u32) -> u32 {
        let boot = self.boots.entry(index).or_insert(0);
        let mut rng = StdRng::seed_from_u64(splitmix64(
            self.seed ^ splitmix64((index as u64) << 32 | *boot),
        ));
        *boot += 1;
        let rate = if index >= self.culprit {
            if self.kappa.is_finite() {
                match Beta::new(self.p * self.kappa, (1.0 - self.p) * self.kappa) {
                    Ok(b) => b.sample(&mut rng),
                    Err(_) => self.p,
                }
            } else {
                self.p
            }
        } else {
            self.false_positive
        };
        (0..runs).filter(|_| rng.random::<f64>() < rate).count() as u32
    }
}

/// One simulated setting: a test that fails a bad commit with probability `p` (spread
/// between boots by `kappa`) and a good one with `false_positive`, over `n` commits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    pub p: f64,
    pub false_positive: f64,
    pub kappa: f64,
    pub n: usize,
}

/// Tally of one policy over many simulated bisections.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PolicyStats {
    pub trials: u32,
    /// Bisections that named the true culprit (as a single commit).
    pub correct: u32,
    /// Bisections that ended claiming confidence.
    pub confident: u32,
    /// Bisections that ended claiming confidence in a wrong answer.
    pub confident_wrong: u32,
    pub mean_steps: f64,
    pub mean_runs: f64,
}

impl PolicyStats {
    pub fn accuracy(&self) -> f64 {
        f64::from(self.correct) / f64::from(self.trials.max(1))
    }

    /// Share of all bisections that ended confident and wrong.
    pub fn confident_wrong_rate(&self) -> f64 {
        f64::from(self.confident_wrong) / f64::from(self.trials.max(1))
    }
}

/// The Bayesian search and the fixed-repeat policy on the same simulated histories.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyComparison {
    pub scenario: Scenario,
    pub bayes: PolicyStats,
    /// 10 runs per step in one boot, bad at ≥ 2 failures, bad end checked first.
    pub fixed: PolicyStats,
}

/// Simulates `trials` bisections of `scenario` with a culprit drawn uniformly, by the
/// Bayesian search under `cfg` and by [`fixed_repeat_bisect`] (10 runs in one boot, bad
/// at ≥ 2), each trial's boots shared by both. Deterministic given `seed`.
pub fn compare_policies(
    scenario: Scenario,
    trials: u32,
    seed: u64,
    cfg: &SearchConfig,
) -> Result<PolicyComparison, SearchError> {
    let Scenario {
        p,
        false_positive,
        kappa,
        n,
    } = scenario;
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut bayes, mut fixed) = (PolicyStats::default(), PolicyStats::default());
    let (mut b_steps, mut b_runs, mut f_steps, mut f_runs) = (0u64, 0u64, 0u64, 0u64);
    for _ in 0..trials {
        let culprit = rng.random_range(1..=n);
        let trial_seed: u64 = rng.random();
        let oracle = || FlakyOracle::new(culprit, p, false_positive, trial_seed).with_kappa(kappa);

        let mut o = oracle();
        let search = Search::new(n, cfg.clone())?;
        let (search, end) = drive(search, |index, runs| Observation::Runs {
            index,
            runs,
            failures: o.run(index, runs),
        })?;
        bayes.trials += 1;
        b_steps += u64::from(search.steps());
        b_runs += search.total_runs();
        if let Next::Done(c) = end {
            let right = c.culprit == culprit && c.skipped_range.is_none();
            bayes.confident += u32::from(c.confident);
            bayes.correct += u32::from(right);
            bayes.confident_wrong += u32::from(c.confident && !right);
        }

        let mut o = oracle();
        let out = fixed_repeat_bisect(n, 10, 2, |index, runs| o.run(index, runs));
        fixed.trials += 1;
        fixed.confident += u32::from(out.culprit.is_some());
        fixed.correct += u32::from(out.culprit == Some(culprit));
        fixed.confident_wrong += u32::from(out.culprit.is_some_and(|c| c != culprit));
        f_steps += u64::from(out.steps);
        f_runs += out.runs;
    }
    let t = f64::from(trials.max(1));
    bayes.mean_steps = b_steps as f64 / t;
    bayes.mean_runs = b_runs as f64 / t;
    fixed.mean_steps = f_steps as f64 / t;
    fixed.mean_runs = f_runs as f64 / t;
    Ok(PolicyComparison {
        scenario,
        bayes,
        fixed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_repeats_bisect_a_deterministic_test_in_log2_steps() {
        let out = fixed_repeat_bisect(1000, 10, 2, |i, r| if i >= 377 { r } else { 0 });
        assert_eq!(out.culprit, Some(377));
        assert_eq!(out.steps, 1 + 10);
        assert_eq!(out.runs, 110);
        let out = fixed_repeat_bisect(1000, 10, 2, |_, _| 1);
        assert_eq!(out.culprit, None);
    }

    #[test]
    fn the_oracle_replays_the_same_runs() {
        let mut a = FlakyOracle::new(10, 0.5, 0.0, 42);
        let mut b = FlakyOracle::new(10, 0.5, 0.0, 42);
        let xs: Vec<u32> = (0..20).map(|_| a.run(12, 3)).collect();
        let ys: Vec<u32> = (0..20).map(|_| b.run(12, 3)).collect();
        assert_eq!(xs, ys);
        assert_eq!(a.run(9, 50), 0);
        // Spread between boots: boots of 20 runs at p = 0.3 with κ = 1 are often all
        // passes or nearly all failures, which independent runs almost never are.
        let mut spread = FlakyOracle::new(1, 0.3, 0.0, 7).with_kappa(1.0);
        let extreme = (0..200)
            .map(|_| spread.run(5, 20))
            .filter(|&f| f == 0 || f >= 16)
            .count();
        assert!(extreme > 40, "{extreme} of 200 boots all-or-nothing");
        let total: u32 = xs.iter().sum();
        assert!((20..=40).contains(&total), "{total} of 60 at p = 0.5");
    }
}
