//! The statistics side of a comparison: which questions are asked, the sequential monitor
//! of each, multiplicity across them, and the verdicts. Pure and synchronous: it is fed
//! outcomes batch by batch and never runs anything.
//!
//! # The unit is the boot
//!
//! A batch is one boot of A and one of B per arch, side by side, each running every open
//! test a few times. Runs in one boot share its state (memory layout, timer phase, host
//! load) and are not independent, so no question counts runs:
//!
//! - a failure-rate question (fail, kernel-crash or hang; infra-errors do not count) gives
//!   the monitor each boot as a cluster of runs: "different" on the runs with the Rao–Scott
//!   design effect, "no difference" on failing boots, one-sided: B's boots fail at most
//!   `margin` more often than A's (see [`RateMonitor`]);
//! - a metric question takes one value per boot (the quantile of the boot's merged
//!   histogram for `*_p50`/`*_p99`, interpolated within its bucket, else the geometric
//!   mean of its runs' values) and compares the two boots of each batch as a pair, so
//!   what the pair shares cancels and boot-to-boot variation is in the spread.
//!
//! A batch whose boots ran while the host was contended (see `compare::contention`) counts
//! for failure rates but gives no metric pair: a busy host measures the host.
//!
//! # Questions
//!
//! For every test and arch: its failure rate, and each metric it reports whose name ends
//! with one of the configured suffixes (`_p50`, `_p99`, `_per_s`).
//!
//! # Multiplicity: a graph of primary and secondary questions
//!
//! A test may declare a primary metric (`[compare.primary]`); its other metrics are then
//! secondary. The primary questions (every failure rate, every declared primary metric,
//! and every metric of a test that declares none) share α equally from the start; the
//! secondary ones start at 0 and are reported, not decided, until α reaches them. When a
//! question is decided "different", its α is passed on along a fixed graph: a primary
//! metric's to its test's secondary metrics (gatekeeping), every other question's equally
//! to the other primaries (and a secondary's also to its siblings), and the graph is
//! updated by Algorithm 1 of Bretz, Maurer, Brannath & Posch, "A graphical approach to
//! sequentially rejective multiple test procedures", Statistics in Medicine 28 (2009)
//! 586–604. The monitors that gain α are rebuilt at the larger α and replayed over the same
//! batches (same look times), as Maurer & Bretz, "Multiple testing in group sequential
//! trials using graphical approaches", Statistics in Biopharmaceutical Research 5 (2013)
//! 311–320, §3, show keeps the family-wise error rate at α for any number of looks. With no
//! primary declared this is Holm's procedure.
//!
//! "No difference" (equivalence) is claimed per question at α_eq. The overall claim "no
//! regression anywhere" holds only if every question is equivalent; as an intersection–union
//! test it needs no multiplicity correction (Berger, "Multiparameter hypothesis testing and
//! acceptance sampling", Technometrics 24 (1982) 295–300).
//!
//! # Crashes
//!
//! A kernel report on B only decides the test's failure-rate question on that arch as a
//! regression at once, with the fingerprint; no statistics are needed to call a crash. A
//! report on A is "the baseline crashes" (and "both crash" when B crashes too, then or
//! later): not a regression of B. Neither takes part in α recycling: a crash is not a test
//! at level α, so its α is not passed on.

use std::collections::BTreeMap;

use crate::arch::Arch;
use crate::results::{OutcomeKind, TestOutcome};
use crate::stats::sample_variance;
use crate::stats::special::{student_t_sf, student_t_upper_quantile};
use crate::stats::{
    self, fisher_exact, fixed_n_metric, fixed_n_rate, holm, wilson, Alternative, BoundaryCache,
    Counts, Decision, Design, Direction, PairedMetricMonitor, RateMonitor, Spending,
};

use super::boot_value::{boot_resolution, boot_value, histogram_for};
use super::model::{
    metric_meta, Better, CrashFinding, MetricDetail, PairedRatio, QuestionKind, QuestionResult,
    RateDetail, Side, Verdict,
};

mod reach;
pub use reach::OutOfReach;

/// The error rates and the horizon of every question's design.
#[derive(Debug, Clone)]
pub struct Params {
    pub alpha: f64,
    pub alpha_equivalence: f64,
    pub power: f64,
    pub margin_rate: f64,
    pub margin_metric: f64,
    /// The horizon: boots (batches) per side.
    pub max_runs_per_side: u64,
    /// The error spending of failure-rate questions.
    pub spending: Spending,
    /// The error spending of metric questions: Pocock stops early on large shifts;
    /// O'Brien–Fleming keeps nearly all of α for the last look, for metric questions that
    /// the budget, not an early stop, will end.
    pub metric_spending: Spending,
    /// Metric name suffixes to compare.
    pub metric_suffixes: Vec<String>,
    /// Per test, its primary metric; the test's other metrics are secondary (see the
    /// module docs). Tests not named have every metric primary.
    pub primary: BTreeMap<String, String>,
}

/// One arch's share of a batch: one boot of each side, run side by side.
#[derive(Debug, Clone)]
pub struct BootPair {
    pub arch: Arch,
    /// Every outcome of A's boot, then of B's.
    pub a: Vec<TestOutcome>,
    pub b: Vec<TestOutcome>,
    /// The host was contended while the pair ran: no metric is decided from it.
    pub contended: bool,
}

/// The data of one question in one batch.
#[derive(Debug, Clone)]
enum BatchData {
    /// Each side's boot: its counted runs and failed runs.
    Rate { boots: (Counts, Counts) },
    /// Each side's boot value, and whether the host was contended.
    Metric {
        a: Option<f64>,
        b: Option<f64>,
        contended: bool,
        /// The values' relative resolution (0: not rounded); see `boot_resolution`.
        resolution: f64,
    },
}

impl BatchData {
    /// The pair a metric monitor may use: both sides measured, host not contended.
    fn pair(&self) -> Option<(f64, f64)> {
        match self {
            BatchData::Metric {
                a: Some(a),
                b: Some(b),
                contended: false,
                ..
            } => Some((*a, *b)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Monitor {
    Rate(RateMonitor),
    Metric(PairedMetricMonitor),
}

impl Monitor {
    fn observe(&mut self, d: &BatchData) -> Result<Decision, stats::StatsError> {
        match (self, d) {
            (Monitor::Rate(m), BatchData::Rate { boots }) => {
                m.observe_clusters(&[boots.0], &[boots.1])
            }
            (Monitor::Metric(m), d @ BatchData::Metric { resolution, .. }) => match d.pair() {
                Some(p) => {
                    m.note_resolution(*resolution);
                    m.observe(&[p])
                }
                None => Ok(Decision::Continue),
            },
            _ => Ok(Decision::Continue),
        }
    }

    fn conclude(&mut self) -> Decision {
        match self {
            Monitor::Rate(m) => m.conclude(),
            Monitor::Metric(m) => m.conclude(),
        }
    }

    /// The α the monitor was built at.
    fn alpha(&self) -> f64 {
        match self {
            Monitor::Rate(m) => m.design().alpha,
            Monitor::Metric(m) => m.design().alpha,
        }
    }

    fn looks(&self) -> Vec<stats::LookReport> {
        match self {
            Monitor::Rate(m) => m.looks().to_vec(),
            Monitor::Metric(m) => m.looks().to_vec(),
        }
    }
}

#[derive(Debug, Clone)]
struct Question {
    test: String,
    arch: Arch,
    kind: QuestionKind,
    batches: Vec<BatchData>,
    alpha: f64,
    monitor: Option<Monitor>,
    decision: Decision,
    /// Whether a kernel crash in this test was seen on A and on B (failure-rate questions).
    crashed: (bool, bool),
    /// Monitor error, e.g. a metric with a zero value; the question is dropped from the
    /// family then, and says why.
    error: Option<String>,
    /// For a secondary metric: the index of its test's primary metric question.
    primary: Option<usize>,
}

impl Question {
    fn is_open(&self) -> bool {
        self.crashed == (false, false) && self.error.is_none() && !self.decision.is_final()
    }

    /// Rejected by its test: only then is its α passed on (a crash is not a test).
    fn rejected(&self) -> bool {
        self.crashed == (false, false) && matches!(self.decision, Decision::Different { .. })
    }
}

/// Everything seen so far, per arch and side: the raw outcomes.
#[derive(Debug, Default, Clone)]
struct Pool {
    outcomes: BTreeMap<(Arch, Side), Vec<TestOutcome>>,
}

/// The comparison's statistical state.
#[derive(Debug, Clone)]
pub struct Analysis {
    params: Params,
    tests: Vec<String>,
    questions: Vec<Question>,
    pool: Pool,
    crashes: Vec<CrashFinding>,
    cache: BoundaryCache,
    batches: usize,
    /// Whether the question set is fixed (after the first batch).
    frozen: bool,
    /// The multiplicity graph: `graph[j][k]` is the share of j's α that k gets when j is
    /// rejected. Rows of rejected questions are cleared.
    graph: Vec<Vec<f64>>,
}

impl Analysis {
    pub fn new(params: Params, tests: Vec<String>) -> Analysis {
        Analysis {
            params,
            tests,
            questions: Vec::new(),
            pool: Pool::default(),
            crashes: Vec::new(),
            cache: BoundaryCache::default(),
            batches: 0,
            frozen: false,
            graph: Vec::new(),
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Sets the design's horizon. Only before the first batch: the horizon must not depend
    /// on what the runs showed.
    pub fn set_max_runs(&mut self, max_runs_per_side: u64) {
        if self.batches == 0 {
            self.params.max_runs_per_side = max_runs_per_side.max(2);
        }
    }

    /// Whether some question about `test` on `arch` is still open (or the questions are not
    /// defined yet).
    pub fn is_open(&self, arch: Arch, test: &str) -> bool {
        !self.frozen
            || (0..self.questions.len()).any(|i| {
                let q = &self.questions[i];
                q.arch == arch && q.test == test && self.open(i)
            })
    }

    /// Whether question `i` may still change: open itself, or a secondary without α whose
    /// primary is still open (α may yet reach it).
    fn open(&self, i: usize) -> bool {
        let q = &self.questions[i];
        match q.primary {
            Some(p) if q.alpha == 0.0 && q.monitor.is_none() => self.open(p),
            _ => q.is_open(),
        }
    }

    /// A secondary question that α has not reached: reported, not tested.
    fn gated(&self, q: &Question) -> bool {
        q.primary.is_some() && q.monitor.is_none() && q.alpha == 0.0
    }

    /// Whether every open question has had its last look (all its runs per side).
    pub fn horizon_reached(&self) -> bool {
        self.frozen
            && self
                .questions
                .iter()
                .filter(|q| q.is_open() && !self.gated(q))
                .all(|q| {
                    q.monitor
                        .as_ref()
                        .and_then(|m| {
                            m.looks()
                                .last()
                                .map(|l| l.information_fraction >= 1.0 - 1e-9)
                        })
                        .unwrap_or(false)
                })
    }

    /// Number of batches (looks) fed so far.
    pub fn batches(&self) -> usize {
        self.batches
    }

    /// Feeds one batch: for each arch, one boot of each side. The first batch also fixes
    /// the question set (the metrics the tests reported). Returns whether every question
    /// is decided.
    pub fn add_batch(&mut self, batch: &[BootPair]) -> bool {
        self.batches += 1;
        for BootPair { arch, a, b, .. } in batch {
            self.pool
                .outcomes
                .entry((*arch, Side::A))
                .or_default()
                .extend(a.iter().cloned());
            self.pool
                .outcomes
                .entry((*arch, Side::B))
                .or_default()
                .extend(b.iter().cloned());
            for (side, os) in [(Side::A, a), (Side::B, b)] {
                for o in os.iter().filter(|o| o.kind == OutcomeKind::KernelCrash) {
                    self.note_crash(side, o);
                }
            }
        }
        if !self.frozen {
            self.define_questions(batch);
            self.frozen = true;
        }
        for q in &mut self.questions {
            if q.monitor.is_none() && q.error.is_none() && q.alpha > 0.0 {
                match new_monitor(&self.params, &q.kind, q.alpha, &self.cache) {
                    Ok(mon) => q.monitor = Some(mon),
                    Err(e) => q.error = Some(e.to_string()),
                }
            }
            let Some(pair) = batch.iter().find(|p| p.arch == q.arch) else {
                continue;
            };
            let (a, b) = (&pair.a, &pair.b);
            let data = batch_data(&q.test, &q.kind, pair);
            q.batches.push(data.clone());
            // A crash in this test decides its failure rate at once; crashes are noted even
            // after that, so that "both crash" is said when it is so.
            if q.kind == QuestionKind::FailureRate {
                let crashed = |os: &[TestOutcome]| {
                    os.iter()
                        .any(|o| o.test == q.test && o.kind == OutcomeKind::KernelCrash)
                };
                q.crashed.0 |= crashed(a);
                q.crashed.1 |= crashed(b);
            }
            if !q.is_open() {
                continue;
            }
            if let Some(mon) = q.monitor.as_mut() {
                match mon.observe(&data) {
                    Ok(d) => q.decision = d,
                    Err(e) => q.error = Some(e.to_string()),
                }
            }
        }
        self.recycle();
        self.all_decided()
    }

    /// Whether every question is decided.
    pub fn all_decided(&self) -> bool {
        self.frozen && (0..self.questions.len()).all(|i| !self.open(i))
    }

    /// The budget ran out: every open question becomes inconclusive.
    pub fn conclude(&mut self) {
        for q in &mut self.questions {
            if q.is_open() {
                if let Some(m) = q.monitor.as_mut() {
                    q.decision = m.conclude();
                }
            }
        }
    }

    /// Passes the α of rejected questions on along the graph (Bretz et al. 2009, Algorithm
    /// 1), and replays the questions that gained α at their new level.
    fn recycle(&mut self) {
        loop {
            let donors: Vec<usize> = (0..self.questions.len())
                .filter(|&i| self.questions[i].rejected() && self.questions[i].alpha > 0.0)
                .collect();
            if donors.is_empty() {
                return;
            }
            let mut gained = std::collections::BTreeSet::new();
            for j in donors {
                let aj = std::mem::take(&mut self.questions[j].alpha);
                let n = self.questions.len();
                let alive: Vec<usize> = (0..n)
                    .filter(|&l| l != j && !self.questions[l].rejected())
                    .collect();
                for &l in &alive {
                    let share = aj * self.graph[j][l];
                    if share > 0.0 && self.questions[l].error.is_none() {
                        self.questions[l].alpha += share;
                        gained.insert(l);
                    }
                }
                let old = self.graph.clone();
                for &l in &alive {
                    for &k in &alive {
                        if l == k {
                            continue;
                        }
                        let denom = 1.0 - old[l][j] * old[j][l];
                        self.graph[l][k] = if denom > 1e-12 {
                            (old[l][k] + old[l][j] * old[j][k]) / denom
                        } else {
                            0.0
                        };
                    }
                }
                for k in 0..n {
                    self.graph[j][k] = 0.0;
                    self.graph[k][j] = 0.0;
                }
            }
            for i in gained {
                self.replay(i);
            }
        }
    }

    /// Rebuilds question `i`'s monitor at its α and feeds it every batch so far.
    fn replay(&mut self, i: usize) {
        let q = &mut self.questions[i];
        let mut mon = match new_monitor(&self.params, &q.kind, q.alpha, &self.cache) {
            Ok(m) => m,
            Err(e) => {
                q.error = Some(e.to_string());
                return;
            }
        };
        let mut decision = Decision::Continue;
        for d in &q.batches {
            match mon.observe(d) {
                Ok(dec) => {
                    decision = dec;
                    if decision.is_final() {
                        break;
                    }
                }
                Err(e) => {
                    q.error = Some(e.to_string());
                    break;
                }
            }
        }
        // A question the budget had already closed stays closed.
        if matches!(q.decision, Decision::Inconclusive { .. }) && !decision.is_final() {
            decision = mon.conclude();
        }
        q.decision = decision;
        q.monitor = Some(mon);
    }

    /// Fixes the initial α of every question and the graph, once the questions are known.
    fn build_graph(&mut self) {
        let n = self.questions.len();
        let secondaries_of = |p: usize, qs: &[Question]| -> Vec<usize> {
            (0..qs.len())
                .filter(|&k| qs[k].primary == Some(p))
                .collect()
        };
        let primaries: Vec<usize> = (0..n)
            .filter(|&i| self.questions[i].primary.is_none())
            .collect();
        let mut graph = vec![vec![0.0; n]; n];
        for (j, (q, row)) in self.questions.iter().zip(graph.iter_mut()).enumerate() {
            let to: Vec<usize> = match q.primary {
                None => {
                    let own = secondaries_of(j, &self.questions);
                    if own.is_empty() {
                        primaries.iter().copied().filter(|&k| k != j).collect()
                    } else {
                        own
                    }
                }
                Some(p) => secondaries_of(p, &self.questions)
                    .into_iter()
                    .filter(|&k| k != j)
                    .chain(primaries.iter().copied().filter(|&k| k != p))
                    .collect(),
            };
            for &k in &to {
                row[k] = 1.0 / to.len() as f64;
            }
        }
        let share = self.params.alpha / primaries.len().max(1) as f64;
        for &i in &primaries {
            self.questions[i].alpha = share;
        }
        self.graph = graph;
    }

    fn define_questions(&mut self, batch: &[BootPair]) {
        for BootPair { arch, a, b, .. } in batch {
            for test in &self.tests {
                self.questions.push(Question {
                    test: test.clone(),
                    arch: *arch,
                    kind: QuestionKind::FailureRate,
                    batches: Vec::new(),
                    alpha: 0.0,
                    monitor: None,
                    decision: Decision::Continue,
                    crashed: (false, false),
                    error: None,
                    primary: None,
                });
                let mut names: Vec<String> = a
                    .iter()
                    .chain(b.iter())
                    .filter(|o| &o.test == test)
                    .filter_map(|o| o.result.as_ref())
                    .flat_map(|r| r.metrics.keys().cloned())
                    .filter(|n| self.params.metric_suffixes.iter().any(|s| n.ends_with(s)))
                    .collect();
                names.sort();
                names.dedup();
                // The declared primary goes first, so that its secondaries can point at it.
                let declared = self
                    .params
                    .primary
                    .get(test)
                    .filter(|p| names.contains(p))
                    .cloned();
                if let Some(p) = &declared {
                    names.retain(|n| n != p);
                    names.insert(0, p.clone());
                }
                let first = self.questions.len();
                for name in names {
                    let (better, _) = metric_meta(&name);
                    let primary = declared.as_ref().filter(|p| **p != name).map(|_| first);
                    self.questions.push(Question {
                        test: test.clone(),
                        arch: *arch,
                        kind: QuestionKind::Metric { name, better },
                        batches: Vec::new(),
                        alpha: 0.0,
                        monitor: None,
                        decision: Decision::Continue,
                        crashed: (false, false),
                        error: None,
                        primary,
                    });
                }
            }
        }
        self.build_graph();
    }

    fn note_crash(&mut self, side: Side, o: &TestOutcome) {
        for c in &o.crashes {
            let fp = c.fingerprint.to_string();
            if let Some(f) = self
                .crashes
                .iter_mut()
                .find(|f| f.side == side && f.arch == o.arch && f.fingerprint == fp)
            {
                f.occurrences += 1;
                continue;
            }
            self.crashes.push(CrashFinding {
                side,
                arch: o.arch,
                test: o.test.clone(),
                title: c.title.clone(),
                fingerprint: fp,
                fingerprint_id: c.fingerprint.id(),
                excerpt: c.excerpt.clone(),
                occurrences: 1,
                run_dir: String::new(),
            });
        }
        if o.crashes.is_empty() {
            // A panic whose report did not make it to the console is still a crash.
            self.crashes.push(CrashFinding {
                side,
                arch: o.arch,
                test: o.test.clone(),
                title: o.summary.clone(),
                fingerprint: "unknown".into(),
                fingerprint_id: "-".into(),
                excerpt: o.stderr_tail.clone(),
                occurrences: 1,
                run_dir: String::new(),
            });
        }
    }

    pub fn crashes(&self) -> &[CrashFinding] {
        &self.crashes
    }

    /// Runs per side counted so far on `arch` (max over tests), for the runs-used figure.
    pub fn runs_per_side(&self, arch: Arch) -> u64 {
        self.tests
            .iter()
            .map(|t| {
                let count = |side| {
                    self.pool
                        .outcomes
                        .get(&(arch, side))
                        .map_or(0, |os| counted(os, t).count() as u64)
                };
                count(Side::A).max(count(Side::B))
            })
            .max()
            .unwrap_or(0)
    }

    /// The verdicts, with every figure the reports show.
    pub fn results(&self) -> Vec<QuestionResult> {
        let mut out: Vec<QuestionResult> =
            self.questions.iter().map(|q| self.result_of(q)).collect();
        // Descriptive fixed-sample p-values, Holm-adjusted across the family.
        let idx: Vec<usize> = (0..out.len())
            .filter(|&i| out[i].p_value.is_some())
            .collect();
        let ps: Vec<f64> = idx.iter().filter_map(|&i| out[i].p_value).collect();
        if let Ok(adj) = holm(&ps) {
            for (k, &i) in idx.iter().enumerate() {
                out[i].p_adjusted = adj.get(k).copied();
            }
        }
        out
    }

    fn result_of(&self, q: &Question) -> QuestionResult {
        let empty = Vec::new();
        let a = self.pool.outcomes.get(&(q.arch, Side::A)).unwrap_or(&empty);
        let b = self.pool.outcomes.get(&(q.arch, Side::B)).unwrap_or(&empty);
        let ca: Vec<&TestOutcome> = counted(a, &q.test).collect();
        let cb: Vec<&TestOutcome> = counted(b, &q.test).collect();
        let evidence = |os: &[&TestOutcome]| {
            os.iter()
                .find(|o| o.kind.is_kernel_failure())
                .map(|o| format!("{}: {}", o.kind, o.summary))
        };
        // The fixed-n design the runs-saved figure is measured against has the same family
        // error rate, split Bonferroni-fashion as a fixed-n plan would.
        let design = design(
            &self.params,
            &q.kind,
            self.params.alpha / self.questions.len().max(1) as f64,
        );
        let verdict = match &q.kind {
            QuestionKind::FailureRate => self.verdict_of(q, Better::Lower),
            QuestionKind::Metric { better, .. } => self.verdict_of(q, *better),
        };
        let mut r = QuestionResult {
            test: q.test.clone(),
            arch: q.arch,
            question: q.kind.clone(),
            verdict,
            decision: q.decision.clone(),
            runs_a: ca.len() as u64,
            runs_b: cb.len() as u64,
            rate: None,
            metric: None,
            p_value: None,
            p_adjusted: None,
            alpha: if q.rejected() && q.alpha == 0.0 {
                // Report the level it was rejected at, before its α was passed on.
                q.monitor.as_ref().map_or(0.0, Monitor::alpha)
            } else {
                q.alpha
            },
            secondary_to: q
                .primary
                .map(|p| self.questions[p].kind.label())
                .filter(|_| self.gated(q)),
            evidence_a: evidence(&ca),
            evidence_b: evidence(&cb),
            looks: q.monitor.as_ref().map(Monitor::looks).unwrap_or_default(),
            fixed_n: None,
        };
        if let Some(e) = &q.error {
            r.evidence_b = Some(format!("not analysed: {e}"));
        }
        match &q.kind {
            QuestionKind::FailureRate => {
                let fails = |os: &[&TestOutcome]| {
                    Counts::new(
                        os.len() as u64,
                        os.iter().filter(|o| o.kind.is_kernel_failure()).count() as u64,
                    )
                };
                let (na, nb) = (fails(&ca), fails(&cb));
                let (mut ba, mut bb) = (Counts::default(), Counts::default());
                // Boots with a counted run, and those with a failed one.
                let add = |t: Counts, boot: Counts| {
                    Counts::new(
                        t.runs + u64::from(boot.runs > 0),
                        t.failures + u64::from(boot.failures > 0),
                    )
                };
                for d in &q.batches {
                    if let BatchData::Rate { boots } = d {
                        ba = add(ba, boots.0);
                        bb = add(bb, boots.1);
                    }
                }
                let w = |c: Counts| {
                    wilson(c, 0.95).ok().map(|p| stats::Interval {
                        lower: p.lower,
                        upper: p.upper,
                    })
                };
                let fisher = fisher_exact(ba, bb, Alternative::TwoSided).ok();
                if let (Some(ia), Some(ib), Some(f)) = (w(ba), w(bb), fisher.as_ref()) {
                    r.rate = Some(RateDetail {
                        a: na,
                        b: nb,
                        boots_a: ba,
                        boots_b: bb,
                        interval_a: ia,
                        interval_b: ib,
                        fisher_p: f.p_value,
                    });
                }
                r.p_value = fisher.map(|f| f.p_value);
                // A planner sizes a fixed-n test around the baseline's failing-boot rate.
                r.fixed_n = fixed_n_rate(&design, ba.rate().clamp(0.01, 0.5)).ok();
            }
            QuestionKind::Metric { name, .. } => {
                let mut values_a = Vec::new();
                let mut values_b = Vec::new();
                let mut log_ratios = Vec::new();
                let mut contended_pairs = 0;
                let mut resolution: f64 = 0.0;
                for d in &q.batches {
                    if let BatchData::Metric {
                        a,
                        b,
                        contended,
                        resolution: r,
                    } = d
                    {
                        resolution = resolution.max(*r);
                        values_a.extend(*a);
                        values_b.extend(*b);
                        match d.pair() {
                            Some((x, y)) => log_ratios.push((y / x).ln()),
                            None if *contended && a.is_some() && b.is_some() => {
                                contended_pairs += 1;
                            }
                            None => {}
                        }
                    }
                }
                let (_, unit) = metric_meta(name);
                let hist_name = histogram_for(name);
                // For the report's plot, 16 buckets an octave are plenty: the suite's
                // 128 would draw a thousand bars.
                let hist = |os: &[&TestOutcome]| -> Vec<(u64, u64)> {
                    let mut acc = lab_proto::Histogram::default();
                    for o in os {
                        if let Some(h) = hist_name
                            .as_ref()
                            .and_then(|h| o.result.as_ref()?.histograms.get(h))
                        {
                            acc.merge(h);
                        }
                    }
                    acc.coarsen(lab_proto::LEGACY_SUB_BITS);
                    acc.buckets
                };
                let paired = paired_ratio(&log_ratios, 0.95);
                let sd = sample_sd(&log_ratios).unwrap_or(0.1);
                r.fixed_n = fixed_n_metric(&design, sd.max(1e-3)).ok();
                r.p_value = paired.as_ref().map(|p| p.p_value);
                let quantisation = (resolution > 0.0).then_some(resolution);
                r.metric = Some(MetricDetail {
                    paired_ratio: paired,
                    contended_pairs,
                    quantisation,
                    histogram_a: hist(&ca),
                    histogram_b: hist(&cb),
                    histogram_name: hist_name,
                    values_a,
                    values_b,
                    unit: unit.to_owned(),
                });
            }
        }
        r
    }

    fn verdict_of(&self, q: &Question, better: Better) -> Verdict {
        match q.crashed {
            (false, true) => return Verdict::Regression,
            (true, b) => return Verdict::BaselineCrashes { both: b },
            (false, false) => {}
        }
        match &q.decision {
            Decision::Different { direction, .. } => {
                let worse =
                    match (direction, better) {
                        (Direction::BHigher, Better::Lower)
                        | (Direction::BLower, Better::Higher) => true,
                        (Direction::BHigher, Better::Higher)
                        | (Direction::BLower, Better::Lower) => false,
                    };
                if worse {
                    Verdict::Regression
                } else {
                    Verdict::Improvement
                }
            }
            Decision::Equivalent { margin, .. } => Verdict::NoDifference { margin: *margin },
            Decision::Inconclusive {
                more_runs_estimate, ..
            } => Verdict::Inconclusive {
                more_runs: (*more_runs_estimate != u64::MAX).then_some(*more_runs_estimate),
            },
            Decision::Continue => Verdict::Inconclusive { more_runs: None },
        }
    }

    /// Which sides crashed in a test's failure-rate question: (A, B).
    pub fn crash_sides(&self, test: &str, arch: Arch) -> (bool, bool) {
        self.questions
            .iter()
            .find(|q| q.test == test && q.arch == arch && q.kind == QuestionKind::FailureRate)
            .map_or((false, false), |q| q.crashed)
    }
}

/// Runs of `test` that count: every outcome but infra-errors.
pub(super) fn counted<'a>(
    os: &'a [TestOutcome],
    test: &'a str,
) -> impl Iterator<Item = &'a TestOutcome> {
    os.iter()
        .filter(move |o| o.test == test && o.kind != OutcomeKind::InfraError)
}

fn design(params: &Params, kind: &QuestionKind, alpha: f64) -> Design {
    Design {
        alpha: alpha.clamp(1e-9, 0.499),
        alpha_equivalence: params.alpha_equivalence,
        power: params.power,
        margin: match kind {
            QuestionKind::FailureRate => params.margin_rate,
            QuestionKind::Metric { .. } => params.margin_metric,
        },
        max_runs_per_side: params.max_runs_per_side.max(2),
        spending: match kind {
            QuestionKind::FailureRate => params.spending,
            QuestionKind::Metric { .. } => params.metric_spending,
        },
    }
}

fn new_monitor(
    params: &Params,
    kind: &QuestionKind,
    alpha: f64,
    cache: &BoundaryCache,
) -> Result<Monitor, stats::StatsError> {
    let d = design(params, kind, alpha);
    Ok(match kind {
        QuestionKind::FailureRate => Monitor::Rate(RateMonitor::with_cache(d, cache)?),
        // Values read from the suite's histograms are rounded to a bucket (1/128 of an
        // octave, 1/16 for older guests) where interpolation has few samples to go on, as
        // in a tail quantile: the monitor learns the resolution from the batches.
        QuestionKind::Metric { .. } => Monitor::Metric(PairedMetricMonitor::with_cache(d, cache)?),
    })
}

fn batch_data(test: &str, kind: &QuestionKind, pair: &BootPair) -> BatchData {
    match kind {
        QuestionKind::FailureRate => {
            let runs = |os: &[TestOutcome]| {
                let runs: Vec<&TestOutcome> = counted(os, test).collect();
                Counts::new(
                    runs.len() as u64,
                    runs.iter().filter(|o| o.kind.is_kernel_failure()).count() as u64,
                )
            };
            BatchData::Rate {
                boots: (runs(&pair.a), runs(&pair.b)),
            }
        }
        QuestionKind::Metric { name, .. } => BatchData::Metric {
            a: boot_value(test, name, &pair.a),
            b: boot_value(test, name, &pair.b),
            contended: pair.contended,
            resolution: boot_resolution(test, name, &pair.a)
                .max(boot_resolution(test, name, &pair.b)),
        },
    }
}

/// Sample standard deviation; `None` below two values.
fn sample_sd(xs: &[f64]) -> Option<f64> {
    (xs.len() >= 2).then(|| sample_variance(xs).sqrt())
}

/// The geometric-mean ratio of pairs from their log ratios, with a two-sided t interval at
/// `confidence` and the paired t-test's p-value. `None` below two pairs.
fn paired_ratio(log_ratios: &[f64], confidence: f64) -> Option<PairedRatio> {
    let sd = sample_sd(log_ratios)?;
    let n = log_ratios.len() as f64;
    let mean = log_ratios.iter().sum::<f64>() / n;
    let se = sd / n.sqrt();
    let df = n - 1.0;
    let t = student_t_upper_quantile((1.0 - confidence) / 2.0, df);
    let p_value = if se > 0.0 {
        (2.0 * student_t_sf((mean / se).abs(), df)).min(1.0)
    } else if mean == 0.0 {
        1.0
    } else {
        0.0
    };
    Some(PairedRatio {
        estimate: mean.exp(),
        lower: (mean - t * se).exp(),
        upper: (mean + t * se).exp(),
        confidence,
        pairs: log_ratios.len() as u64,
        p_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_proto::{TestResult, Verdict as ProtoVerdict};
    use rand::{Rng, SeedableRng};

    fn params(max: u64) -> Params {
        Params {
            alpha: 0.05,
            alpha_equivalence: 0.05,
            power: 0.8,
            margin_rate: 0.15,
            margin_metric: 0.10,
            max_runs_per_side: max,
            spending: Spending::Pocock,
            metric_spending: Spending::Pocock,
            metric_suffixes: vec!["_p50".into(), "_per_s".into()],
            primary: BTreeMap::new(),
        }
    }

    fn outcome(test: &str, arch: Arch, fail: bool, metric: Option<(&str, f64)>) -> TestOutcome {
        let mut o = TestOutcome::infra(test, arch, 0, 0, String::new());
        o.kind = if fail {
            OutcomeKind::Fail
        } else {
            OutcomeKind::Pass
        };
        o.summary = if fail {
            "errno 512 leaked".into()
        } else {
            "ok".into()
        };
        if let Some((name, v)) = metric {
            let mut r = TestResult::new(test, 0);
            r.verdict = if fail {
                ProtoVerdict::Fail
            } else {
                ProtoVerdict::Pass
            };
            r.metrics.insert(name.into(), v);
            o.result = Some(r);
        }
        o
    }

    fn batch(
        rng: &mut rand::rngs::StdRng,
        arch: Arch,
        n: usize,
        pa: f64,
        pb: f64,
        shift: f64,
    ) -> BootPair {
        let mut side = |p: f64, s: f64| -> Vec<TestOutcome> {
            let mut v = Vec::new();
            // A boot effect shared by the boot's runs.
            let boot: f64 = rng.random::<f64>() * 0.1 - 0.05;
            for _ in 0..n {
                v.push(outcome("t_rate", arch, rng.random::<f64>() < p, None));
                let noise: f64 = rng.random::<f64>() * 0.2 - 0.1;
                v.push(outcome(
                    "t_metric",
                    arch,
                    false,
                    Some(("lat_us_p50", 100.0 * s * (1.0 + boot + noise))),
                ));
            }
            v
        };
        let a = side(pa, 1.0);
        let b = side(pb, shift);
        pair(arch, a, b)
    }

    fn pair(arch: Arch, a: Vec<TestOutcome>, b: Vec<TestOutcome>) -> BootPair {
        BootPair {
            arch,
            a,
            b,
            contended: false,
        }
    }

    /// Pass-only boots of one test, `runs` runs each.
    fn passing(arch: Arch, runs: usize) -> BootPair {
        let side = || {
            (0..runs)
                .map(|_| outcome("t_rate", arch, false, None))
                .collect()
        };
        BootPair {
            arch,
            a: side(),
            b: side(),
            contended: false,
        }
    }

    #[test]
    fn a_horizon_too_short_for_no_difference_is_said_after_the_first_batch() {
        // "No difference" rests on failing boots: with none on either side the one-sided
        // bound on B - A falls below a margin of 0.15 only after about 17 boots per side.
        let mut short = Analysis::new(params(6), vec!["t_rate".into()]);
        short.add_batch(&[passing(Arch::X86_64, 3)]);
        let out = short.out_of_reach();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].test, "t_rate");
        assert_eq!(out[0].horizon, 6);
        let needed = out[0].boots_needed.expect("an estimate");
        assert!((10..=60).contains(&needed), "needed {needed}");
        // The real monitor is untouched: the question is still open and gets its looks.
        assert!(short.is_open(Arch::X86_64, "t_rate"));
        assert!(!short.add_batch(&[passing(Arch::X86_64, 3)]));

        // With room for it, the same question is within reach, and the pass-only future
        // the check imagined is what the real monitor then decides.
        let mut long = Analysis::new(params(needed.max(40)), vec!["t_rate".into()]);
        long.add_batch(&[passing(Arch::X86_64, 3)]);
        assert!(long.out_of_reach().is_empty());
        let mut boots = 1;
        while !long.add_batch(&[passing(Arch::X86_64, 3)]) {
            boots += 1;
            assert!(boots < needed.max(40), "not decided by the horizon");
        }
        assert!(matches!(
            long.results()[0].decision,
            Decision::Equivalent { .. }
        ));
    }

    #[test]
    fn a_decided_question_is_never_listed_out_of_reach() {
        // B fails every run: the regression is found within the short horizon, and a
        // decided question is not what a longer budget would help.
        let mut a = Analysis::new(params(6), vec!["t_rate".into()]);
        let mut pair = passing(Arch::X86_64, 3);
        for o in &mut pair.b {
            o.kind = OutcomeKind::Fail;
        }
        let mut decided = false;
        for _ in 0..6 {
            decided = a.add_batch(std::slice::from_ref(&pair));
            if decided {
                break;
            }
        }
        assert!(decided);
        assert!(a.out_of_reach().is_empty());
    }

    #[test]
    fn a_clear_regression_is_found_and_its_direction_is_right() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut an = Analysis::new(params(40), vec!["t_rate".into(), "t_metric".into()]);
        let mut done = false;
        for _ in 0..20 {
            done = an.add_batch(&[batch(&mut rng, Arch::X86_64, 2, 0.0, 0.9, 1.5)]);
            if done {
                break;
            }
        }
        if !done {
            an.conclude();
        }
        let r = an.results();
        let rate = r
            .iter()
            .find(|q| q.test == "t_rate")
            .expect("rate question");
        assert_eq!(rate.verdict, Verdict::Regression, "{rate:?}");
        let lat = r
            .iter()
            .find(|q| matches!(q.question, QuestionKind::Metric { .. }))
            .expect("metric question");
        assert_eq!(
            lat.verdict,
            Verdict::Regression,
            "latency 1.5x higher: {lat:?}"
        );
        assert!(rate
            .evidence_b
            .as_deref()
            .is_some_and(|e| e.contains("errno 512")));
    }

    #[test]
    fn a_crash_is_a_regression_at_once_with_its_fingerprint() {
        let mut an = Analysis::new(params(40), vec!["t_rate".into()]);
        let a = vec![outcome("t_rate", Arch::Arm64, false, None)];
        let mut crash = outcome("t_rate", Arch::Arm64, true, None);
        crash.kind = OutcomeKind::KernelCrash;
        crash.summary = "kernel BUG at kernel/futex/core.c".into();
        an.add_batch(&[pair(Arch::Arm64, a, vec![crash])]);
        assert!(an.all_decided());
        let r = an.results();
        assert_eq!(r[0].verdict, Verdict::Regression);
        assert_eq!(an.crash_sides("t_rate", Arch::Arm64), (false, true));
        assert_eq!(an.crashes().len(), 1);
    }

    #[test]
    fn a_crash_of_the_baseline_is_not_a_regression_and_recycles_no_alpha() {
        let tests = vec!["t_rate".into(), "t_other".into()];
        let crash = |test: &str| {
            let mut o = outcome(test, Arch::X86_64, true, None);
            o.kind = OutcomeKind::KernelCrash;
            o.summary = "kernel BUG at kernel/futex/core.c".into();
            o
        };
        let pass = |test: &str| outcome(test, Arch::X86_64, false, None);
        let mut an = Analysis::new(params(40), tests);
        an.add_batch(&[pair(
            Arch::X86_64,
            vec![crash("t_rate"), pass("t_other")],
            vec![pass("t_rate"), pass("t_other")],
        )]);
        let r = an.results();
        let rate = |r: &[QuestionResult], t: &str| {
            r.iter()
                .find(|q| q.test == t && q.question == QuestionKind::FailureRate)
                .expect("question")
                .clone()
        };
        assert_eq!(
            rate(&r, "t_rate").verdict,
            Verdict::BaselineCrashes { both: false }
        );
        assert_eq!(an.crash_sides("t_rate", Arch::X86_64), (true, false));
        // The crashed question keeps its α: nothing is passed on to the other one.
        let other = an
            .questions
            .iter()
            .find(|q| q.test == "t_other" && q.kind == QuestionKind::FailureRate)
            .expect("question");
        let crashed = an
            .questions
            .iter()
            .find(|q| q.test == "t_rate" && q.kind == QuestionKind::FailureRate)
            .expect("question");
        assert!((other.alpha - crashed.alpha).abs() < 1e-15, "no α recycled");
        // B crashes too, later: both crash, still not a regression of B.
        an.add_batch(&[pair(
            Arch::X86_64,
            vec![pass("t_rate"), pass("t_other")],
            vec![crash("t_rate"), pass("t_other")],
        )]);
        let r = an.results();
        assert_eq!(
            rate(&r, "t_rate").verdict,
            Verdict::BaselineCrashes { both: true }
        );
        assert_eq!(an.crashes().len(), 2, "both fingerprints are reported");
    }

    #[test]
    fn recycling_passes_alpha_on_and_never_exceeds_the_family_alpha() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut an = Analysis::new(params(30), vec!["t_rate".into(), "t_metric".into()]);
        an.add_batch(&[
            batch(&mut rng, Arch::X86_64, 2, 0.0, 1.0, 1.0),
            batch(&mut rng, Arch::Arm64, 2, 0.0, 0.0, 1.0),
        ]);
        let total: f64 = an.questions.iter().map(|q| q.alpha).sum();
        assert!(total <= 0.05 + 1e-12, "{total}");
        for _ in 0..14 {
            if an.add_batch(&[
                batch(&mut rng, Arch::X86_64, 2, 0.0, 1.0, 1.0),
                batch(&mut rng, Arch::Arm64, 2, 0.0, 0.0, 1.0),
            ]) {
                break;
            }
        }
        let total: f64 = an.questions.iter().map(|q| q.alpha).sum();
        assert!(total <= 0.05 + 1e-12, "{total}");
        assert!(an.questions.iter().any(|q| q.rejected()));
        // The survivors now hold more than their first share.
        assert!(an
            .questions
            .iter()
            .filter(|q| !q.rejected())
            .all(|q| q.alpha > 0.05 / 6.0 + 1e-9));
    }

    /// Many A/A comparisons through the whole path (questions, Holm recycling, sequential
    /// monitors, early conclusion): the family-wise false alarm rate stays at or below α.
    #[test]
    fn a_a_comparisons_keep_the_family_false_alarm_rate_at_or_below_alpha() {
        let trials = 300;
        let mut false_alarms = 0;
        let mut equivalent = 0;
        for t in 0..trials {
            let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + t);
            let mut an = Analysis::new(params(24), vec!["t_rate".into(), "t_metric".into()]);
            let mut done = false;
            for _ in 0..12 {
                done = an.add_batch(&[
                    batch(&mut rng, Arch::X86_64, 2, 0.2, 0.2, 1.0),
                    batch(&mut rng, Arch::Arm64, 2, 0.05, 0.05, 1.0),
                ]);
                if done {
                    break;
                }
            }
            if !done {
                an.conclude();
            }
            let r = an.results();
            if r.iter()
                .any(|q| matches!(q.verdict, Verdict::Regression | Verdict::Improvement))
            {
                false_alarms += 1;
            }
            equivalent += r
                .iter()
                .filter(|q| matches!(q.verdict, Verdict::NoDifference { .. }))
                .count();
        }
        let rate = f64::from(false_alarms) / trials as f64;
        eprintln!(
            "A/A: {false_alarms}/{trials} comparisons with a false alarm ({rate:.3}); {equivalent} no-difference verdicts of {}",
            trials * 4
        );
        // The Monte Carlo error of 300 trials at 0.05 is 0.013: allow two of them.
        assert!(rate <= 0.05 + 0.026, "family-wise false alarm rate {rate}");
        assert!(
            equivalent > 0,
            "the A/A runs never reached a no-difference verdict"
        );
    }

    /// A declared primary metric holds the test's α; the secondary waits, reported but not
    /// tested, and gets the primary's α once the primary is found different.
    #[test]
    fn a_secondary_metric_is_tested_only_once_its_primary_differs() {
        let m = |test: &str, p50: f64, rate: f64| {
            let mut o = outcome(test, Arch::X86_64, false, Some(("lat_us_p50", p50)));
            if let Some(r) = o.result.as_mut() {
                r.metrics.insert("ops_per_s".into(), rate);
            }
            o
        };
        let mut p = params(12);
        p.primary.insert("t_metric".into(), "lat_us_p50".into());
        let mut an = Analysis::new(p, vec!["t_metric".into()]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let mut side = |shift: f64| -> Vec<TestOutcome> {
            (0..3)
                .map(|_| {
                    let noise: f64 = rng.random::<f64>() * 0.02;
                    m("t_metric", 100.0 * shift * (1.0 + noise), 1000.0 / shift)
                })
                .collect()
        };
        let first = pair(Arch::X86_64, side(1.0), side(1.0));
        an.add_batch(&[first]);
        let r = an.results();
        let q = |r: &[QuestionResult], name: &str| {
            r.iter()
                .find(|q| q.question.label() == name)
                .cloned()
                .expect("question")
        };
        // Failure rate and the primary share α; the secondary has none yet.
        assert!((q(&r, "failure-rate").alpha - 0.025).abs() < 1e-12);
        assert!((q(&r, "lat_us_p50").alpha - 0.025).abs() < 1e-12);
        let ops = q(&r, "ops_per_s");
        assert_eq!(ops.alpha, 0.0);
        assert_eq!(ops.secondary_to.as_deref(), Some("lat_us_p50"));
        assert!(
            !an.all_decided(),
            "the primary is open, so the secondary may still be tested"
        );
        // B twice as slow: the primary is rejected, and its α reaches the secondary.
        for _ in 0..11 {
            let b = side(2.0);
            let a = side(1.0);
            if an.add_batch(&[pair(Arch::X86_64, a, b)]) {
                break;
            }
        }
        let r = an.results();
        assert_eq!(q(&r, "lat_us_p50").verdict, Verdict::Regression);
        let ops = q(&r, "ops_per_s");
        assert!(ops.secondary_to.is_none(), "{ops:?}");
        assert_eq!(
            ops.verdict,
            Verdict::Regression,
            "throughput halved: {ops:?}"
        );
        assert!(ops.alpha > 0.0);
    }

    /// When the primary ends without a difference, the secondary is never tested, and the
    /// comparison does not wait for it.
    #[test]
    fn a_secondary_behind_a_primary_without_difference_closes_untested() {
        let mut p = params(6);
        p.primary.insert("t_metric".into(), "lat_us_p50".into());
        let mut an = Analysis::new(p, vec!["t_metric".into()]);
        for i in 0..6 {
            let o = |v: f64| {
                let mut o = outcome("t_metric", Arch::X86_64, false, Some(("lat_us_p50", v)));
                if let Some(r) = o.result.as_mut() {
                    r.metrics.insert("ops_per_s".into(), 1000.0 * v);
                }
                o
            };
            let x = 100.0 + f64::from(i % 3);
            an.add_batch(&[pair(Arch::X86_64, vec![o(x)], vec![o(x * 1.001)])]);
        }
        an.conclude();
        assert!(an.all_decided());
        let r = an.results();
        let ops = r
            .iter()
            .find(|q| q.question.label() == "ops_per_s")
            .expect("secondary");
        assert!(matches!(ops.verdict, Verdict::Inconclusive { .. }));
        assert_eq!(ops.secondary_to.as_deref(), Some("lat_us_p50"));
    }

    #[test]
    fn histogram_names_follow_the_suite_convention() {
        assert_eq!(histogram_for("wake_ns_p99").as_deref(), Some("wake_ns"));
        assert_eq!(histogram_for("round_ms_p50").as_deref(), Some("round_ns"));
        assert_eq!(histogram_for("round_trips_per_s"), None);
    }
}
