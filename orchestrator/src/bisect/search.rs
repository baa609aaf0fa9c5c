//! The decision core of `lab bisect`: which commit to test next, how many times, and
//! when to stop, for a test that fails only some of the time on a bad kernel.
//!
//! # Model
//!
//! The history is a line of commits c_0 (known good) … c_n (known bad). The culprit C
//! is the first commit at which the test starts failing; a priori it is uniform on
//! 1..=n (c_n itself may be the culprit). A run at commit j fails
//!
//! - with probability q if j ≥ C: q is the test's detection rate on a bad kernel,
//!   unknown, with a Beta(a, b) prior;
//! - with probability ε if j < C: a small false-positive rate (default 0.001), so
//!   that one spurious failure on a good commit lowers a candidate's probability
//!   instead of ruling it out for good.
//!
//! Runs are independent given (C, q), and q is the same on every bad commit. The
//! runs at c_n inform q; runs on the commits in between inform both q and C at once,
//! because which runs count as draws of q depends on C. Conditional on C the runs
//! at commits ≥ C are Bernoulli(q) draws, so by Beta–Bernoulli conjugacy q can be
//! integrated out exactly:
//!
//! P(C = c | data) ∝ B(a + F_c, b + S_c) / B(a, b) · ε^{F'_c} (1 − ε)^{S'_c}
//!
//! where F_c, S_c count failures and passes at commits ≥ c and F'_c, S'_c those at
//! commits < c. This is the limit of a q grid of infinite resolution (the tests
//! check it against a 4000-point grid), and it costs one log-beta per *segment*:
//! between two consecutive tested commits the likelihood is constant, so the
//! posterior is a step function with as many steps as commits tested, whatever n.
//! The predictive count of failures in r runs at j is, for each culprit ≤ j,
//! beta-binomial with the conditional posterior of q, and binomial(r, ε) otherwise.
//!
//! A *skip* (cannot build or boot, or a different crash) carries no information
//! about C and is never chosen again. Commits between two testable ones cannot be
//! told apart by any future test, so the finest answer is a block: a testable
//! commit together with the skipped commits just below it, like `git bisect`'s
//! "only skipped commits left to test".
//!
//! # Choosing the next step
//!
//! Among a candidate set of commits j and repeat counts r, pick the pair with the
//! largest mutual information I(K; C) between the number K of failures in r runs
//! at j and the culprit, under the joint posterior over (C, q), per unit of cost
//! r + step cost, where the step cost (build and boot, in equivalent runs) makes
//! repeats worth it when steps are expensive. Candidates are the posterior's
//! quantiles (2 % to 98 %) and every tested commit with its neighbours; the
//! optimum of a noisy bisection lies at an inner quantile, and re-testing the
//! commits on both sides of a sharp step is what confirms it. Stop when one block
//! holds at least the requested confidence, or when the run budget is spent.
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
//!   git-bayesect (2026), which integrates the unknown failure rate out by the same
//!   Beta–Bernoulli conjugacy.
//! - Against: syzbot's cause bisection (syzkaller `pkg/bisect`, issue #1051 on its
//!   success rate) runs a fixed number of repeats per step and ktest marks a commit
//!   bad on its first failure. The test support (`search/sim.rs`) carries the
//!   former, and the simulations (`bisect/simulation.rs`) measure this search against
//!   it on the same simulated histories.
//!
//! # Assumptions, and what breaks them
//!
//! One culprit on a linear history (merges are the caller's business: bisect over
//! `git rev-list --first-parent` or accept the linear order given); a single
//! detection rate q on every bad commit (a later commit that makes the race more or
//! less likely violates it); runs independent given the commit (a boot that wedges
//! the race open for all runs in it does not). A skipped commit's runs, if any were
//! reported as runs before it was skipped, still count.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::stats::special::ln_gamma;

/// How a search decides.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Posterior probability the answer must reach to stop confident.
    pub confidence: f64,
    /// ε: probability that a run on a good commit fails anyway.
    pub false_positive: f64,
    /// (a, b) of the Beta prior on the detection rate q. (1, 1) is uniform.
    pub q_prior: (f64, f64),
    /// Cost of one step (build, boot) in equivalent runs.
    pub step_cost_runs: f64,
    /// Total run budget, bad-end runs included.
    pub max_runs: u64,
    /// Repeat counts a step may ask for.
    pub repeat_choices: Vec<u32>,
    /// Failures wanted at the bad end before bisecting, to confirm the test
    /// reproduces and to anchor q.
    pub bad_end_failures: u32,
    /// Runs at the bad end after which zero failures means "does not reproduce",
    /// and after which bisection starts with however few failures were seen.
    pub bad_end_max_runs: u32,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            confidence: 0.95,
            false_positive: 0.001,
            q_prior: (1.0, 1.0),
            step_cost_runs: 3.0,
            max_runs: 500,
            repeat_choices: vec![1, 2, 3, 5, 8],
            bad_end_failures: 3,
            bad_end_max_runs: 30,
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
    /// `runs` runs of the test at commit `index`, `failures` of them showing the
    /// crash being bisected.
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
    /// Run the test at the bad end (index n), up to `runs` times. Stopping early once
    /// [`SearchConfig::bad_end_failures`] failures are in is fine: the posterior
    /// depends on the counts only, not on why the batch stopped.
    NeedBadEnd { runs: u32 },
    /// Run the test `runs` times at commit `index`.
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
    /// Whether `probability` reached the configured confidence.
    pub confident: bool,
    /// Inclusive range of commits that no test can tell apart because all but its
    /// last one were skipped; set when the answer is such a block.
    pub skipped_range: Option<(usize, usize)>,
    /// Steps taken (batches of runs and skips, bad end included).
    pub steps: u32,
    /// Runs made, bad end included.
    pub runs: u64,
}

/// Version of the [`SearchLog`] format; bump it when a field changes meaning.
pub const LOG_FORMAT_VERSION: u32 = 1;

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
    #[error("resume a bisection: its log has format version {found}, this lab reads version {expected}; restart the bisection")]
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
    /// Beta posterior of q given that the culprit lies in this segment.
    alpha: f64,
    beta: f64,
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
    log: Vec<Observation>,
    runs: Vec<u64>,
    failures: Vec<u64>,
    skipped: Vec<bool>,
    total_runs: u64,
    steps: u32,
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
    if !(cfg.false_positive >= 0.0 && cfg.false_positive < 0.5) {
        return bad(
            "false-positive",
            cfg.false_positive.to_string(),
            "in [0, 0.5)",
        );
    }
    let (a, b) = cfg.q_prior;
    if !(a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite()) {
        return bad(
            "q-prior",
            format!("({a}, {b})"),
            "two finite positive Beta parameters",
        );
    }
    if !(cfg.step_cost_runs >= 0.0 && cfg.step_cost_runs.is_finite()) {
        return bad(
            "step-cost-runs",
            cfg.step_cost_runs.to_string(),
            "a finite number ≥ 0",
        );
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

/// ln B(x, y), the log of the beta function.
fn ln_beta(x: f64, y: f64) -> f64 {
    ln_gamma(x) + ln_gamma(y) - ln_gamma(x + y)
}

/// Beta-binomial probabilities of k = 0..=r failures in r runs when q ~ Beta(α, β),
/// by the ratio P(k+1)/P(k) = (r−k)/(k+1) · (α+k)/(β+r−k−1), in logs so that no
/// intermediate underflows.
fn beta_binomial(r: u32, alpha: f64, beta: f64, out: &mut Vec<f64>) {
    out.clear();
    let mut ln_p: f64 = (0..r)
        .map(|i| {
            let i = f64::from(i);
            ((beta + i) / (alpha + beta + i)).ln()
        })
        .sum();
    out.push(ln_p.exp());
    for k in 0..r {
        let (kf, rf) = (f64::from(k), f64::from(r));
        ln_p += ((rf - kf) / (kf + 1.0) * (alpha + kf) / (beta + rf - kf - 1.0)).ln();
        out.push(ln_p.exp());
    }
}

/// Binomial(r, p) probabilities of k = 0..=r.
fn binomial(r: u32, p: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(r as usize + 1);
    let mut choose = 1.0_f64;
    for k in 0..=r {
        if k > 0 {
            choose = choose * f64::from(r - k + 1) / f64::from(k);
        }
        out.push(choose * p.powi(k as i32) * (1.0 - p).powi((r - k) as i32));
    }
    out
}

/// Shannon entropy in nats.
fn entropy(p: &[f64]) -> f64 {
    p.iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| -x * x.ln())
        .sum::<f64>()
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
        let mut s = Search {
            n,
            cfg,
            log: Vec::new(),
            runs: vec![0; n + 1],
            failures: vec![0; n + 1],
            skipped: vec![false; n + 1],
            total_runs: 0,
            steps: 0,
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

    /// Recomputes the segments and their weights from the per-commit counts.
    fn refresh(&mut self) {
        let n = self.n;
        let (a, b) = self.cfg.q_prior;
        let eps = self.cfg.false_positive;
        // Runs at index 0 are good whatever the culprit: a constant factor, left out.
        let mut bounds: Vec<usize> = (1..=n).filter(|&i| self.runs[i] > 0).collect();
        if bounds.last() != Some(&n) {
            bounds.push(n);
        }
        let total_f: u64 = self.failures[1..].iter().sum();
        let total_s: u64 = self.runs[1..].iter().sum::<u64>() - total_f;
        let ln_b0 = ln_beta(a, b);
        let mut segments = Vec::with_capacity(bounds.len());
        let mut log_w = Vec::with_capacity(bounds.len());
        let (mut fb, mut sb) = (0u64, 0u64);
        for (i, &hi) in bounds.iter().enumerate().rev() {
            fb += self.failures[hi];
            sb += self.runs[hi] - self.failures[hi];
            let lo = if i == 0 { 0 } else { bounds[i - 1] };
            let (fg, sg) = (total_f - fb, total_s - sb);
            let alpha = a + fb as f64;
            let beta = b + sb as f64;
            let mut lw = ln_beta(alpha, beta) - ln_b0;
            if fg > 0 {
                lw += fg as f64 * eps.ln();
            }
            if sg > 0 {
                lw += sg as f64 * (-eps).ln_1p();
            }
            segments.push(Segment {
                lo,
                hi,
                alpha,
                beta,
                weight: 0.0,
            });
            log_w.push(lw);
        }
        segments.reverse();
        log_w.reverse();
        let max = log_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // Some segment always has a finite weight (the one ending at the first
        // failing commit has no failure below it), so `max` is finite; the guard
        // only keeps a NaN from spreading if that ever stopped being true.
        let unnorm: Vec<f64> = if max.is_finite() {
            log_w.iter().map(|&l| (l - max).exp()).collect()
        } else {
            vec![1.0; log_w.len()]
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
    /// culprits of Beta(a + F_c, b + S_c).
    pub fn q_estimate(&self) -> (f64, f64) {
        let (mut m1, mut m2) = (0.0, 0.0);
        for s in &self.segments {
            let t = s.alpha + s.beta;
            let mean = s.alpha / t;
            m1 += s.mass() * mean;
            m2 += s.mass() * mean * (s.alpha + 1.0) / (t + 1.0);
        }
        (m1, (m2 - m1 * m1).max(0.0).sqrt())
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
        Conclusion {
            culprit: a.culprit,
            probability: a.probability,
            runner_up: self.best_outside(a.range),
            confident: a.probability >= self.cfg.confidence,
            skipped_range: (a.range.0 != a.range.1).then_some(a.range),
            steps: self.steps,
            runs: self.total_runs,
        }
    }

    /// What to do next.
    pub fn next(&self) -> Next {
        let cfg = &self.cfg;
        let (bad_runs, bad_fails) = (self.runs[self.n], self.failures[self.n]);
        let budget_left = cfg.max_runs.saturating_sub(self.total_runs);
        let bad_end_left = u64::from(cfg.bad_end_max_runs).saturating_sub(bad_runs);
        let wanted = u64::from(cfg.bad_end_failures);
        if bad_fails < wanted {
            if bad_fails == 0 && bad_runs > 0 && (bad_end_left == 0 || budget_left == 0) {
                return Next::NotReproduced { runs: bad_runs };
            }
            if bad_end_left > 0 && budget_left > 0 {
                // Enough runs to expect the missing failures at the estimate of q
                // from the bad end alone.
                let (a, b) = cfg.q_prior;
                let q = (a + bad_fails as f64) / (a + b + bad_runs as f64);
                let want = ((wanted - bad_fails) as f64 / q).ceil().max(1.0) as u64;
                let runs = want.min(bad_end_left).min(budget_left);
                return Next::NeedBadEnd {
                    runs: u32::try_from(runs).unwrap_or(u32::MAX),
                };
            }
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

    /// Commits worth scoring: posterior quantiles and the tested commits with their
    /// neighbours, moved off skipped commits, inside 1..n.
    fn candidates(&self) -> Vec<usize> {
        let n = self.n;
        let mut raw = BTreeSet::new();
        let mut cum = 0.0;
        let mut level = 0.02;
        for s in &self.segments {
            let mass = s.mass();
            while level < 0.99 && cum + mass >= level && s.weight > 0.0 {
                let k = ((level - cum) / s.weight).ceil() as usize;
                let j = (s.lo + k).clamp(s.lo + 1, s.hi);
                raw.extend([j - 1, j]);
                level += 0.02;
            }
            cum += mass;
            if s.mass() > 1e-9 {
                raw.extend([s.lo, s.lo + 1, s.hi, s.hi + 1]);
                raw.insert(s.hi.saturating_sub(1));
            }
        }
        let mut out = BTreeSet::new();
        for j in raw {
            if j == 0 || j >= n {
                continue;
            }
            if !self.skipped[j] {
                out.insert(j);
                continue;
            }
            if let Some(d) = (1..j).rev().find(|&d| !self.skipped[d]) {
                out.insert(d);
            }
            if let Some(u) = (j + 1..n).find(|&u| !self.skipped[u]) {
                out.insert(u);
            }
        }
        out.into_iter().collect()
    }

    /// The (commit, repeats) with the most information about the culprit per unit
    /// of cost.
    fn best_step(&self, budget_left: u64) -> Option<(usize, u32)> {
        let candidates = self.candidates();
        if candidates.is_empty() {
            return None;
        }
        let mut choices: Vec<u32> = self
            .cfg
            .repeat_choices
            .iter()
            .copied()
            .filter(|&r| u64::from(r) <= budget_left)
            .collect();
        if choices.is_empty() {
            choices.push(u32::try_from(budget_left).unwrap_or(1).max(1));
        }
        let segs = &self.segments;
        let mut best: Option<(f64, usize, u32)> = None;
        let mut bb = Vec::new();
        for &r in &choices {
            let width = r as usize + 1;
            let bin_eps = binomial(r, self.cfg.false_positive);
            let h_eps = entropy(&bin_eps);
            // Per segment: predictive pmf and its entropy; then prefix sums weighted
            // by mass, so a candidate costs O(r) instead of O(segments · r).
            let mut seg_pmf = Vec::with_capacity(segs.len() * width);
            let mut seg_h = Vec::with_capacity(segs.len());
            let mut pre_pmf = vec![0.0; (segs.len() + 1) * width];
            let mut pre_h = vec![0.0; segs.len() + 1];
            let mut pre_m = vec![0.0; segs.len() + 1];
            for (t, s) in segs.iter().enumerate() {
                beta_binomial(r, s.alpha, s.beta, &mut bb);
                seg_h.push(entropy(&bb));
                let m = s.mass();
                for k in 0..width {
                    pre_pmf[(t + 1) * width + k] = pre_pmf[t * width + k] + m * bb[k];
                }
                pre_h[t + 1] = pre_h[t] + m * seg_h[t];
                pre_m[t + 1] = pre_m[t] + m;
                seg_pmf.extend_from_slice(&bb);
            }
            let mut pk = vec![0.0; width];
            for &j in &candidates {
                let t = segs.partition_point(|s| s.hi < j);
                let Some(s) = segs.get(t) else { continue };
                let x = (j - s.lo) as f64 * s.weight;
                let good = (1.0 - pre_m[t] - x).max(0.0);
                for k in 0..width {
                    pk[k] = pre_pmf[t * width + k] + x * seg_pmf[t * width + k] + good * bin_eps[k];
                }
                let h_cond = pre_h[t] + x * seg_h[t] + good * h_eps;
                let mi = (entropy(&pk) - h_cond).max(0.0);
                let rate = mi / (f64::from(r) + self.cfg.step_cost_runs);
                if best.is_none_or(|(b, _, _)| rate > b) {
                    best = Some((rate, j, r));
                }
            }
        }
        best.map(|(_, j, r)| (j, r))
    }
}

#[cfg(test)]
pub(super) mod sim;
#[cfg(test)]
mod tests;
