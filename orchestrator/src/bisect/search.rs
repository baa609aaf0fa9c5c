//! The decision core of `lab bisect`: which commit to test next, how many runs its
//! next boot gets, and when to stop, for a test that fails only some of the time.
//!
//! # Model
//!
//! The history is a line of commits c_0 (known good) … c_n (known bad). The culprit C
//! is the first commit at which the test starts failing; a priori it is uniform on
//! 1..=n (c_n itself may be the culprit). The unit of observation is one **boot**: a
//! number of runs of the test in one booted guest, and how many of them failed. A boot
//! at commit j has its own failure rate, drawn around
//!
//! - q if j ≥ C: the test's detection rate on a bad kernel, Beta(a, b) prior;
//! - ε if j < C: the rate at which a good kernel fails anyway (a flaky test, a host
//!   hiccup), Beta(0.5, 20) prior by default: half its mass below 1 %, a quarter
//!   above 3 %;
//!
//! with a spread between boots (κ, see [`model`]) that is learnt too, so a boot in
//! which the race never opened, or one that failed every run, counts for what it is
//! worth and not as many independent runs. q > ε a priori. q, ε and κ are
//! integrated out on a grid for every culprit hypothesis ([`model`]); the runs at the
//! good end count (they inform ε) as much as those at the bad end (they inform q).
//!
//! Between two consecutive tested commits the likelihood is constant, so the
//! posterior is a step function with as many steps as commits tested, whatever n.
//!
//! A *skip* (cannot build or boot, or a different crash) carries no information
//! about C and is never chosen again. Commits between two testable ones cannot be
//! told apart by any future test, so the finest answer is a block: a testable
//! commit together with the skipped commits just below it, like `git bisect`'s
//! "only skipped commits left to test".
//!
//! # Choosing the next step
//!
//! First the bad end, in boots, until it has failed [`SearchConfig::bad_end_failures`]
//! times (or [`SearchConfig::bad_end_max_runs`] runs passed: not reproduced); then the
//! good end, [`SearchConfig::good_end_runs`] runs in boots, to anchor ε. Then, among
//! candidate commits j and run counts r for one boot (at most the largest of
//! [`SearchConfig::repeat_choices`]: more runs at one commit come as more boots),
//! pick the pair with the largest mutual information I(K; C) between the failures K
//! of that boot and the culprit, per unit of cost r + boot cost (+ build cost for a
//! commit not built yet). The predictive law of K given a segment of culprits is the
//! beta-binomial whose Beta matches the mean and variance of a fresh boot's rate
//! under the posterior. Candidates are the posterior's quantiles (2 % to 98 %) and
//! every tested commit with its neighbours; the optimum of a noisy bisection lies at
//! an inner quantile, and re-testing the commits on both sides of a sharp step is
//! what confirms it. Stop when one block holds at least the requested confidence, or
//! when the run budget is spent.
//!
//! # Literature
//!
//! - Horstein (1963), "Sequential transmission using noiseless feedback", IEEE
//!   Trans. Inf. Theory 9(3): the probabilistic bisection algorithm, querying the
//!   posterior median of a noisy binary search.
//! - Ben-Or & Hassidim (2008), "The Bayesian learner is optimal for noisy binary
//!   search (and pretty good for quantum as well)", FOCS: the posterior-driven
//!   search uses the information-theoretic number of queries to within lower-order
//!   terms.
//! - Jedynak, Frazier & Sznitman (2012), "Twenty questions with noise: Bayes optimal
//!   policies for entropy loss", J. Appl. Probab. 49(1): greedy expected-entropy
//!   reduction, the criterion used here.
//! - Waeber, Frazier & Henderson (2013), "Bisection search with noisy responses",
//!   SIAM J. Control Optim. 51(3): convergence of probabilistic bisection, and its
//!   behaviour when the noise level is only estimated.
//! - The "Bayesian git bisect" idea: Ealdwulf's BBChop, and hauntsaninja's
//!   git-bayesect (2026), which integrates the unknown failure rate out by
//!   Beta–Bernoulli conjugacy; the grid here does it numerically, for ε and κ too.
//! - syzbot flags a cause whose kernel is byte-identical to its parent's; the driver
//!   does the same ([`super::driver`]).
//! - Against: syzbot's cause bisection (syzkaller `pkg/bisect`, issue #1051 on its
//!   success rate) runs a fixed number of repeats per step and ktest marks a commit
//!   bad on its first failure. The test support (`search/sim.rs`) carries the
//!   former, and the simulations (`bisect/simulation.rs`) measure this search against
//!   it on the same simulated histories.
//!
//! # Assumptions, and what breaks them
//!
//! One culprit on a linear history (merges are the caller's business: bisect over
//! `git rev-list --first-parent` or accept the linear order given); one detection
//! rate q on every bad commit and one ε on every good one (a later commit that
//! makes the race more or less likely violates it); boots independent given the
//! commit, and κ the same everywhere. The probability a conclusion states is the
//! posterior under this model: the chance, given what was seen, that the named
//! commit is not the culprit is one minus it. A skipped commit's runs, if any were
//! reported as runs before it was skipped, still count.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use model::{Grid, SegmentFit, KAPPAS};

mod choose;
mod model;

/// How a search decides.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Posterior probability the answer must reach to stop confident.
    pub confidence: f64,
    /// (a, b) of the Beta prior on the detection rate q. (1, 1) is uniform.
    pub q_prior: (f64, f64),
    /// (a, b) of the Beta prior on ε, the rate at which a good commit fails anyway.
    pub false_positive_prior: (f64, f64),
    /// Cost of building a commit not built yet, in equivalent runs.
    pub build_cost_runs: f64,
    /// Cost of one boot, in equivalent runs.
    pub boot_cost_runs: f64,
    /// Total run budget, both ends included.
    pub max_runs: u64,
    /// Runs one boot may be asked for; the largest is the most one boot gets, and more
    /// runs at a commit come as more boots.
    pub repeat_choices: Vec<u32>,
    /// Failures wanted at the bad end before bisecting, to confirm the test
    /// reproduces and to anchor q.
    pub bad_end_failures: u32,
    /// Boots with a failure wanted at the bad end: one boot that fails every run says
    /// nothing about whether the next boot will, so the spread between boots is
    /// anchored by at least two.
    pub bad_end_failing_boots: u32,
    /// Runs at the bad end after which zero failures means "does not reproduce",
    /// and after which bisection starts with however few failures were seen.
    pub bad_end_max_runs: u32,
    /// Runs at the good end, in boots, before bisecting: they anchor ε.
    pub good_end_runs: u32,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            confidence: 0.95,
            q_prior: (1.0, 1.0),
            false_positive_prior: (0.5, 20.0),
            build_cost_runs: 10.0,
            boot_cost_runs: 5.0,
            max_runs: 600,
            repeat_choices: vec![1, 2, 3, 4],
            bad_end_failures: 3,
            bad_end_failing_boots: 2,
            bad_end_max_runs: 32,
            good_end_runs: 8,
        }
    }
}

/// Largest repeat count a step may ask for: enough for any real bisection, and
/// small enough that the predictive probabilities below stay cheap.
pub const MAX_REPEAT: u32 = 100;

/// What one step at one commit showed.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Observation {
    /// One boot at commit `index`: `runs` runs of the test, `failures` of them showing
    /// the failure being bisected.
    Runs {
        index: usize,
        runs: u32,
        failures: u32,
    },
    /// Commit `index` could not be built or booted, or crashed differently.
    Skip { index: usize },
}

/// What the caller should do next.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "next", rename_all = "kebab-case")]
pub enum Next {
    /// Boot the bad end (index n) and run the test up to `runs` times. Stopping early
    /// once [`SearchConfig::bad_end_failures`] failures are in is fine: the posterior
    /// depends on the counts only, not on why the boot stopped.
    NeedBadEnd { runs: u32 },
    /// Boot the good end (index 0) and run the test `runs` times.
    NeedGoodEnd { runs: u32 },
    /// Boot commit `index` and run the test `runs` times.
    Test { index: usize, runs: u32 },
    /// The search is over.
    Done(Conclusion),
    /// The bad end passed every one of its `runs` runs: the test does not
    /// reproduce there, so there is nothing to bisect.
    NotReproduced { runs: u64 },
}

/// The answer of a finished search.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct Conclusion {
    /// The most probable culprit.
    pub culprit: usize,
    /// Probability of the answer: of `culprit` alone, or, when `skipped_range` is
    /// set, of the culprit lying anywhere in that range.
    pub probability: f64,
    /// The most probable commit outside the answer, if there is one.
    pub runner_up: Option<(usize, f64)>,
    /// The answer's probability under the least favourable spread between boots that
    /// the data still allow ([`Search::worst_spread_probability`]).
    pub worst_spread_probability: f64,
    /// Whether `probability`, and `worst_spread_probability`, reached the configured
    /// confidence.
    pub confident: bool,
    /// Inclusive range of commits that no test can tell apart because all but its
    /// last one were skipped; set when the answer is such a block.
    pub skipped_range: Option<(usize, usize)>,
    /// Steps taken (boots and skips, both ends included).
    pub steps: u32,
    /// Runs made, both ends included.
    pub runs: u64,
    /// What the answer rests on.
    pub basis: Basis,
}

/// The posterior of the model's nuisance parameters when the search ended: what a
/// conclusion rests on, stated next to it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Default)]
#[serde(rename_all = "kebab-case")]
pub struct Basis {
    /// Detection rate q on a bad commit: posterior mean and standard deviation.
    pub detection: (f64, f64),
    /// ε, the rate at which a good commit fails: posterior mean and standard deviation.
    pub false_positive: (f64, f64),
    /// Share of a boot's failure-rate variance that is between boots, 1/(κ+1): 0 when
    /// the runs of a boot are as good as independent, near 1 when a boot fails all or
    /// nothing. Posterior mean.
    pub within_boot_correlation: f64,
    /// Boots taken (both ends included) and the most runs one boot got.
    pub boots: u32,
    pub max_runs_per_boot: u32,
    /// Runs and failures at the good end.
    pub good_end: (u64, u64),
}

/// Version of the [`SearchLog`] format; bump it when a field changes meaning.
pub const LOG_FORMAT_VERSION: u32 = 2;

/// Everything a search is rebuilt from: what the caller writes to disk.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SearchLog {
    pub format_version: u32,
    pub n: usize,
    pub config: SearchConfig,
    pub observations: Vec<Observation>,
}

impl SearchLog {
    /// Rebuilds the search this log was taken from.
    pub fn replay(&self) -> Result<Search, SearchError> {
        if self.format_version != LOG_FORMAT_VERSION {
            return Err(SearchError::UnsupportedLog {
                found: self.format_version,
                expected: LOG_FORMAT_VERSION,
            });
        }
        Search::replay(self.n, self.config.clone(), &self.observations)
    }
}

/// Why a search could not be set up or could not take an observation.
#[derive(Debug, Error, PartialEq)]
pub enum SearchError {
    #[error("start a bisection: the range has no commit after the good end; give at least one")]
    EmptyRange,
    #[error("start a bisection: `{name}` is {value}, expected {expected}")]
    InvalidConfig {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("record a bisection step at commit {index}: outside the range 0..={n}")]
    IndexOutOfRange { index: usize, n: usize },
    #[error("record a bisection step at commit {index}: {failures} failures out of {runs} runs; failures cannot exceed runs")]
    FailuresExceedRuns {
        index: usize,
        runs: u32,
        failures: u32,
    },
    #[error("record a bisection step at commit {index}: a batch of 0 runs says nothing; report the commit as skipped instead")]
    NoRuns { index: usize },
    #[error("resume a bisection: its log has format version {found}, this lab reads version {expected} (version 2 learns the false-positive rate and counts boots); restart the bisection")]
    UnsupportedLog { found: u32, expected: u32 },
    #[error("record a skip at commit {index}: the ends 0 and {n} are known good and bad; an end that cannot be built or booted is an infrastructure failure")]
    SkipEnd { index: usize, n: usize },
}

/// A run of commits (lo, hi] over which the posterior is constant: no commit
/// strictly inside was tested.
#[derive(Debug, Clone, PartialEq)]
struct Segment {
    lo: usize,
    hi: usize,
    /// The model's posterior given that the culprit lies in this segment.
    fit: SegmentFit,
    /// Posterior probability of each single commit in the segment.
    weight: f64,
}

impl Segment {
    fn len(&self) -> usize {
        self.hi - self.lo
    }

    fn mass(&self) -> f64 {
        self.weight * self.len() as f64
    }
}

/// The state of one bisection: the observations so far and the posterior they give.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    n: usize,
    cfg: SearchConfig,
    grid: Grid,
    log: Vec<Observation>,
    runs: Vec<u64>,
    failures: Vec<u64>,
    /// Per commit, the boots with at least one failure.
    failing_boots: Vec<u32>,
    /// Per commit, the log-likelihood of its boots over the grid, as if it were bad
    /// (`lq`) and as if it were good (`le`); empty while untested.
    lq: Vec<Vec<f64>>,
    le: Vec<Vec<f64>>,
    skipped: Vec<bool>,
    total_runs: u64,
    steps: u32,
    boots: u32,
    segments: Vec<Segment>,
}

fn check_config(cfg: &SearchConfig) -> Result<(), SearchError> {
    let bad = |name, value: String, expected| {
        Err(SearchError::InvalidConfig {
            name,
            value,
            expected,
        })
    };
    if !(cfg.confidence > 0.0 && cfg.confidence < 1.0) {
        return bad("confidence", cfg.confidence.to_string(), "in (0, 1)");
    }
    for (name, (a, b)) in [
        ("q-prior", cfg.q_prior),
        ("false-positive-prior", cfg.false_positive_prior),
    ] {
        if !(a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite()) {
            return bad(
                name,
                format!("({a}, {b})"),
                "two finite positive Beta parameters",
            );
        }
    }
    for (name, v) in [
        ("build-cost-runs", cfg.build_cost_runs),
        ("boot-cost-runs", cfg.boot_cost_runs),
    ] {
        if !(v >= 0.0 && v.is_finite()) {
            return bad(name, v.to_string(), "a finite number ≥ 0");
        }
    }
    if cfg.max_runs == 0 {
        return bad("max-runs", "0".into(), "at least 1");
    }
    if cfg.repeat_choices.is_empty() || cfg.repeat_choices.iter().any(|&r| r == 0 || r > MAX_REPEAT)
    {
        return bad(
            "repeat-choices",
            format!("{:?}", cfg.repeat_choices),
            "a non-empty list of counts in 1..=100",
        );
    }
    if cfg.bad_end_max_runs == 0 {
        return bad("bad-end-max-runs", "0".into(), "at least 1");
    }
    Ok(())
}

/// The answer block: the range of commits (inclusive) the search would name now.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Answer {
    culprit: usize,
    probability: f64,
    range: (usize, usize),
}

impl Search {
    /// A search over commits 1..=n after the good end 0; n is the bad end.
    pub fn new(n: usize, cfg: SearchConfig) -> Result<Search, SearchError> {
        if n == 0 {
            return Err(SearchError::EmptyRange);
        }
        check_config(&cfg)?;
        let grid = Grid::new(cfg.q_prior, cfg.false_positive_prior);
        let mut s = Search {
            n,
            cfg,
            grid,
            log: Vec::new(),
            runs: vec![0; n + 1],
            failures: vec![0; n + 1],
            failing_boots: vec![0; n + 1],
            lq: vec![Vec::new(); n + 1],
            le: vec![Vec::new(); n + 1],
            skipped: vec![false; n + 1],
            total_runs: 0,
            steps: 0,
            boots: 0,
            segments: Vec::new(),
        };
        s.refresh();
        Ok(s)
    }

    /// Rebuilds a search from its observations, as persisted.
    pub fn replay(
        n: usize,
        cfg: SearchConfig,
        observations: &[Observation],
    ) -> Result<Search, SearchError> {
        let mut s = Search::new(n, cfg)?;
        for &o in observations {
            s.apply(o)?;
        }
        s.refresh();
        Ok(s)
    }

    /// Takes the result of one step.
    pub fn observe(&mut self, obs: Observation) -> Result<(), SearchError> {
        self.apply(obs)?;
        self.refresh();
        Ok(())
    }

    fn apply(&mut self, obs: Observation) -> Result<(), SearchError> {
        let n = self.n;
        match obs {
            Observation::Runs {
                index,
                runs,
                failures,
            } => {
                if index > n {
                    return Err(SearchError::IndexOutOfRange { index, n });
                }
                if runs == 0 {
                    return Err(SearchError::NoRuns { index });
                }
                if failures > runs {
                    return Err(SearchError::FailuresExceedRuns {
                        index,
                        runs,
                        failures,
                    });
                }
                self.runs[index] += u64::from(runs);
                self.failures[index] += u64::from(failures);
                self.total_runs += u64::from(runs);
                self.boots += 1;
                self.failing_boots[index] += u32::from(failures > 0);
                self.grid
                    .add_boot(runs, failures, &mut self.lq[index], &mut self.le[index]);
            }
            Observation::Skip { index } => {
                if index > n {
                    return Err(SearchError::IndexOutOfRange { index, n });
                }
                if index == 0 || index == n {
                    return Err(SearchError::SkipEnd { index, n });
                }
                self.skipped[index] = true;
            }
        }
        self.steps += 1;
        self.log.push(obs);
        Ok(())
    }

    /// Recomputes the segments and their weights from the per-commit tables.
    fn refresh(&mut self) {
        let n = self.n;
        let mut bounds: Vec<usize> = (1..=n).filter(|&i| self.runs[i] > 0).collect();
        if bounds.last() != Some(&n) {
            bounds.push(n);
        }
        let add = |sum: &mut Vec<f64>, t: &[f64]| {
            for (s, v) in sum.iter_mut().zip(t) {
                *s += v;
            }
        };
        // Good side of segment t: the good end and every bound below it (prefix sums);
        // bad side: every bound from it up (suffix sums).
        let mut good = Vec::with_capacity(bounds.len());
        let mut acc = vec![0.0; self.grid.eps_len()];
        add(&mut acc, &self.le[0]);
        for &hi in &bounds {
            good.push(acc.clone());
            add(&mut acc, &self.le[hi]);
        }
        let mut bad = vec![Vec::new(); bounds.len()];
        let mut acc = vec![0.0; self.grid.q_len()];
        for (t, &hi) in bounds.iter().enumerate().rev() {
            add(&mut acc, &self.lq[hi]);
            bad[t] = acc.clone();
        }
        let mut segments: Vec<Segment> = bounds
            .iter()
            .enumerate()
            .map(|(t, &hi)| Segment {
                lo: if t == 0 { 0 } else { bounds[t - 1] },
                hi,
                fit: self.grid.segment(&bad[t], &good[t]),
                weight: 0.0,
            })
            .collect();
        let max = segments
            .iter()
            .map(|s| s.fit.ln_weight)
            .fold(f64::NEG_INFINITY, f64::max);
        // The segment ending at the first failing commit has no failure below it, and
        // q > ε leaves it a positive weight, so `max` is finite; the guard only keeps a
        // NaN from spreading if that ever stopped being true.
        let unnorm: Vec<f64> = if max.is_finite() {
            segments
                .iter()
                .map(|s| (s.fit.ln_weight - max).exp())
                .collect()
        } else {
            vec![1.0; segments.len()]
        };
        let z: f64 = unnorm
            .iter()
            .zip(&segments)
            .map(|(u, s)| u * s.len() as f64)
            .sum();
        for (s, u) in segments.iter_mut().zip(unnorm) {
            s.weight = u / z;
        }
        self.segments = segments;
    }

    /// Number of commits after the good end; the bad end's index.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The configuration the search runs with.
    pub fn config(&self) -> &SearchConfig {
        &self.cfg
    }

    /// Every observation taken, in order: what to persist for [`Search::replay`].
    pub fn observations(&self) -> &[Observation] {
        &self.log
    }

    /// The log to persist; [`SearchLog::replay`] gives this search back.
    pub fn to_log(&self) -> SearchLog {
        SearchLog {
            format_version: LOG_FORMAT_VERSION,
            n: self.n,
            config: self.cfg.clone(),
            observations: self.log.clone(),
        }
    }

    /// Runs made so far, bad end included.
    pub fn total_runs(&self) -> u64 {
        self.total_runs
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// Whether commit `index` was skipped.
    pub fn is_skipped(&self, index: usize) -> bool {
        self.skipped.get(index).copied().unwrap_or(false)
    }

    /// P(culprit = i) for i in 0..=n; entry 0 is always 0.
    pub fn posterior(&self) -> Vec<f64> {
        let mut p = vec![0.0; self.n + 1];
        for s in &self.segments {
            p[s.lo + 1..=s.hi].fill(s.weight);
        }
        p
    }

    /// The probability of the culprit lying in the inclusive `range` under the least
    /// favourable spread between boots that the data still allow (κ values of posterior
    /// probability 2 % or more): a search stops confident only when its answer holds
    /// whatever the spread, because a boot in which the race did not open looks like a
    /// good commit, and the spread is the hardest parameter to learn.
    pub fn worst_spread_probability(&self, range: (usize, usize)) -> f64 {
        let k = KAPPAS.len();
        let max = self
            .segments
            .iter()
            .flat_map(|s| s.fit.ln_kappa.iter().copied())
            .fold(f64::NEG_INFINITY, f64::max);
        if !max.is_finite() {
            return 0.0;
        }
        let (mut total, mut inside) = (vec![0.0; k], vec![0.0; k]);
        for s in &self.segments {
            let lo = (s.lo + 1).max(range.0);
            let hi = s.hi.min(range.1);
            let overlap = if hi >= lo { (hi - lo + 1) as f64 } else { 0.0 };
            for (j, &l) in s.fit.ln_kappa.iter().enumerate() {
                let w = (l - max).exp();
                total[j] += w * s.len() as f64;
                inside[j] += w * overlap;
            }
        }
        let z: f64 = total.iter().sum();
        (0..k)
            .filter(|&j| total[j] / z >= 0.02)
            .map(|j| inside[j] / total[j])
            .fold(1.0, f64::min)
    }

    fn weight_of(&self, c: usize) -> f64 {
        let i = self.segments.partition_point(|s| s.hi < c);
        self.segments.get(i).map_or(0.0, |s| s.weight)
    }

    /// The most probable culprit and its probability; ties go to the later commit.
    pub fn top(&self) -> (usize, f64) {
        let mut best = (self.n, 0.0);
        for s in &self.segments {
            if s.weight >= best.1 {
                best = (s.hi, s.weight);
            }
        }
        best
    }

    /// The second most probable culprit, if n > 1.
    pub fn runner_up(&self) -> Option<(usize, f64)> {
        let (top, _) = self.top();
        self.best_outside((top, top))
    }

    /// The most probable commit outside the inclusive range `ex`.
    fn best_outside(&self, ex: (usize, usize)) -> Option<(usize, f64)> {
        let mut best: Option<(usize, f64)> = None;
        for s in &self.segments {
            let c = if s.hi > ex.1 || s.hi < ex.0 {
                s.hi
            } else if ex.0 > s.lo + 1 {
                ex.0 - 1
            } else {
                continue;
            };
            if best.is_none_or(|(_, w)| s.weight >= w) {
                best = Some((c, s.weight));
            }
        }
        best
    }

    /// Posterior mean and standard deviation of the detection rate q: a mixture over
    /// culprits.
    pub fn q_estimate(&self) -> (f64, f64) {
        self.mixture(|f| &f.bad)
    }

    /// Posterior mean and standard deviation of ε, the rate at which a good commit fails.
    pub fn false_positive_estimate(&self) -> (f64, f64) {
        self.mixture(|f| &f.good)
    }

    fn mixture(&self, side: impl Fn(&SegmentFit) -> &model::Moments) -> (f64, f64) {
        let (mut m1, mut m2) = (0.0, 0.0);
        for s in &self.segments {
            let m = side(&s.fit);
            let w = m.w.max(f64::MIN_POSITIVE);
            m1 += s.mass() * m.m1 / w;
            m2 += s.mass() * m.m2 / w;
        }
        (m1, (m2 - m1 * m1).max(0.0).sqrt())
    }

    /// Posterior mean of the within-boot correlation 1/(κ+1).
    pub fn within_boot_correlation(&self) -> f64 {
        self.segments
            .iter()
            .map(|s| {
                let rho: f64 = s
                    .fit
                    .kappa
                    .iter()
                    .zip(KAPPAS)
                    .map(|(w, k)| w / (k + 1.0))
                    .sum();
                s.mass() * rho
            })
            .sum()
    }

    /// What the posterior rests on now.
    pub fn basis(&self) -> Basis {
        Basis {
            detection: self.q_estimate(),
            false_positive: self.false_positive_estimate(),
            within_boot_correlation: self.within_boot_correlation(),
            boots: self.boots,
            max_runs_per_boot: self.max_per_boot(),
            good_end: (self.runs[0], self.failures[0]),
        }
    }

    fn max_per_boot(&self) -> u32 {
        self.cfg.repeat_choices.iter().copied().max().unwrap_or(1)
    }

    /// How many boots of how many runs a confirmation at the bad end, without
    /// `culprit`, needs so that, were the culprit wrong (the bad end still failing at
    /// rate q), all of them would pass with probability at most `miss`; and that
    /// probability. At most `max_runs` runs.
    pub fn confirm_plan(&self, culprit: usize, miss: f64, max_runs: u32) -> ConfirmPlan {
        let per_boot = self.max_per_boot();
        let mut plan = ConfirmPlan {
            boots: 1,
            runs_per_boot: per_boot,
            p_clean_if_wrong: 1.0,
        };
        let i = self.segments.partition_point(|s| s.hi < culprit);
        let Some(seg) = self.segments.get(i) else {
            return plan;
        };
        let max_boots = (max_runs / per_boot).max(1);
        for boots in 1..=max_boots {
            plan.boots = boots;
            plan.p_clean_if_wrong = self.grid.p_all_pass(&seg.fit, per_boot, boots);
            if plan.p_clean_if_wrong <= miss {
                break;
            }
        }
        plan
    }

    /// The block the search would name now: the testable commit, or the testable
    /// commit with the skipped run just below it, of highest posterior mass.
    fn answer(&self) -> Answer {
        let sk = &self.skipped;
        let mut best: Option<Answer> = None;
        let mut consider = |a: Answer| {
            if best.is_none_or(|b| a.probability >= b.probability) {
                best = Some(a);
            }
        };
        // Single commits: neither skipped nor closing a skipped run.
        for s in &self.segments {
            if let Some(c) = (s.lo + 1..=s.hi).rev().find(|&c| !sk[c] && !sk[c - 1]) {
                consider(Answer {
                    culprit: c,
                    probability: s.weight,
                    range: (c, c),
                });
            }
        }
        // Blocks: a maximal run of skipped commits and the testable one above it.
        let mut i = 1;
        while i < self.n {
            if sk[i] {
                let start = i;
                while sk[i] {
                    i += 1;
                }
                let mut mass = 0.0;
                let mut culprit = (i, 0.0);
                for c in start..=i {
                    let w = self.weight_of(c);
                    mass += w;
                    if w >= culprit.1 {
                        culprit = (c, w);
                    }
                }
                consider(Answer {
                    culprit: culprit.0,
                    probability: mass,
                    range: (start, i),
                });
            }
            i += 1;
        }
        best.unwrap_or(Answer {
            culprit: self.n,
            probability: 0.0,
            range: (self.n, self.n),
        })
    }

    fn conclude(&self) -> Conclusion {
        let a = self.answer();
        let worst = self.worst_spread_probability(a.range);
        Conclusion {
            culprit: a.culprit,
            probability: a.probability,
            runner_up: self.best_outside(a.range),
            worst_spread_probability: worst,
            confident: a.probability >= self.cfg.confidence && worst >= self.cfg.confidence,
            skipped_range: (a.range.0 != a.range.1).then_some(a.range),
            steps: self.steps,
            runs: self.total_runs,
            basis: self.basis(),
        }
    }

    /// What to do next.
    pub fn next(&self) -> Next {
        let cfg = &self.cfg;
        let per_boot = u64::from(self.max_per_boot());
        let (bad_runs, bad_fails) = (self.runs[self.n], self.failures[self.n]);
        let budget_left = cfg.max_runs.saturating_sub(self.total_runs);
        let bad_end_left = u64::from(cfg.bad_end_max_runs).saturating_sub(bad_runs);
        let boot = |left: u64| u32::try_from(left.min(per_boot).min(budget_left)).unwrap_or(1);
        if bad_fails < u64::from(cfg.bad_end_failures)
            || self.failing_boots[self.n] < cfg.bad_end_failing_boots
        {
            if bad_fails == 0 && bad_runs > 0 && (bad_end_left == 0 || budget_left == 0) {
                return Next::NotReproduced { runs: bad_runs };
            }
            if bad_end_left > 0 && budget_left > 0 {
                return Next::NeedBadEnd {
                    runs: boot(bad_end_left),
                };
            }
        }
        let good_left = u64::from(cfg.good_end_runs).saturating_sub(self.runs[0]);
        if good_left > 0 && budget_left > 0 {
            return Next::NeedGoodEnd {
                runs: boot(good_left),
            };
        }
        let conclusion = self.conclude();
        if conclusion.confident || budget_left == 0 {
            return Next::Done(conclusion);
        }
        match self.best_step(budget_left) {
            Some((index, runs)) => Next::Test { index, runs },
            None => Next::Done(conclusion),
        }
    }
}

/// The size of a confirmation run, chosen from the posterior of the detection rate.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct ConfirmPlan {
    pub boots: u32,
    pub runs_per_boot: u32,
    /// Probability that every run passes although the culprit is wrong.
    pub p_clean_if_wrong: f64,
}

#[cfg(test)]
pub(super) mod sim;
#[cfg(test)]
mod tests;
