//! The result of a comparison, as plain serde data: what every report format renders and
//! what the results store keeps. Nothing here computes; `compare::analyse` fills it in.

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::stats::{Counts, Decision, FixedN, Interval, LookReport};

/// Written into every report so readers can refuse what they do not understand.
pub const REPORT_FORMAT_VERSION: u32 = 2;

/// Which side of a comparison.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::A => "A",
            Side::B => "B",
        }
    }
}

/// One side as the user named it and as it was resolved, per arch.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SideInfo {
    /// What was typed: `base`, `a,b` (patch sets), a kernel definition, or a stored key.
    pub spec: String,
    /// A short human label, e.g. `debian-6.12+futex-lockless-wakeup-revert`.
    pub label: String,
    /// Per arch: the kernel cache key, release and the run directories used.
    pub kernels: Vec<SideKernel>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SideKernel {
    pub arch: Arch,
    pub kernel_key: String,
    pub kernel_release: String,
    pub image_digest: String,
}

/// What is being asked of one test on one arch.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum QuestionKind {
    /// Does the failure rate (fail, kernel-crash or hang) differ?
    FailureRate,
    /// Does a metric the test reports differ? One value per boot, compared in pairs.
    Metric { name: String, better: Better },
}

impl QuestionKind {
    /// `failure-rate` or the metric's name.
    pub fn label(&self) -> String {
        match self {
            QuestionKind::FailureRate => "failure-rate".into(),
            QuestionKind::Metric { name, .. } => name.clone(),
        }
    }
}

/// Which way a metric is good.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Better {
    Lower,
    Higher,
}

/// The verdict on one question.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// B is worse than A, significantly (or crashed).
    Regression,
    /// B is better than A, significantly.
    Improvement,
    /// A and B are equivalent: a difference of `margin` or more was ruled out.
    NoDifference { margin: f64 },
    /// The budget ran out first; `more_runs` is the estimate of runs per side still needed.
    Inconclusive { more_runs: Option<u64> },
    /// The baseline A crashed in this test (and B too when `both`): not a regression of B,
    /// and nothing is known about B's failure rate against A's. The crashes are in the
    /// report's crash findings, with their fingerprints.
    BaselineCrashes { both: bool },
}

impl Verdict {
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Regression => "regression",
            Verdict::Improvement => "improvement",
            Verdict::NoDifference { .. } => "no difference",
            Verdict::Inconclusive { .. } => "inconclusive",
            Verdict::BaselineCrashes { both: false } => "baseline crashes",
            Verdict::BaselineCrashes { both: true } => "both crash",
        }
    }
}

/// A kernel report seen during the comparison, on either side.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CrashFinding {
    pub side: Side,
    pub arch: Arch,
    pub test: String,
    pub title: String,
    /// `kind:frame|frame|...`
    pub fingerprint: String,
    /// Short id of the fingerprint (sha256 prefix).
    pub fingerprint_id: String,
    /// The console excerpt of the first occurrence.
    pub excerpt: String,
    /// How many runs showed it.
    pub occurrences: u64,
    /// The run directory of the first occurrence.
    pub run_dir: String,
}

/// One question answered: a test, an arch, and either its failure rate or one metric.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct QuestionResult {
    pub test: String,
    pub arch: Arch,
    pub question: QuestionKind,
    pub verdict: Verdict,
    /// The sequential monitor's last decision, with its repeated confidence interval.
    pub decision: Decision,
    /// Runs counted per side (infra errors excluded).
    pub runs_a: u64,
    pub runs_b: u64,
    /// Failure-rate questions: counts, Wilson intervals (95 %), Fisher's exact p-value.
    pub rate: Option<RateDetail>,
    /// Metric questions: per-boot values, the paired ratio, quantisation.
    pub metric: Option<MetricDetail>,
    /// Fixed-sample p-value (Fisher or Mann–Whitney) on all the data, and its Holm-adjusted
    /// value across every question of the comparison. Descriptive: the verdict comes from
    /// the sequential design, never from these.
    pub p_value: Option<f64>,
    pub p_adjusted: Option<f64>,
    /// The α this question's sequential test ended with (after Holm recycling).
    pub alpha: f64,
    /// One line of evidence per side, e.g. the first failing run's summary.
    pub evidence_a: Option<String>,
    pub evidence_b: Option<String>,
    /// Every look of the sequential monitor.
    pub looks: Vec<LookReport>,
    /// The fixed-n design with the same error rates, for the runs-saved figure.
    pub fixed_n: Option<FixedN>,
    /// A secondary metric that no α reached: the primary metric it waits behind. It is
    /// reported, not tested.
    #[serde(default)]
    pub secondary_to: Option<String>,
}

/// A failure-rate question's figures. The boot is the unit: a boot fails when any of its
/// runs of the test fails, and the verdict compares the sides' failing boots.
impl QuestionResult {
    /// Boots behind the question on (A, B): the unit of its verdict.
    pub fn boots(&self) -> (u64, u64) {
        match (&self.rate, &self.metric) {
            (Some(r), _) => (r.boots_a.runs, r.boots_b.runs),
            (None, Some(m)) => (m.values_a.len() as u64, m.values_b.len() as u64),
            (None, None) => (0, 0),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RateDetail {
    /// Runs and failed runs (descriptive: runs in one boot are not independent).
    pub a: Counts,
    pub b: Counts,
    /// Boots and failing boots: what the verdict counts.
    #[serde(default)]
    pub boots_a: Counts,
    #[serde(default)]
    pub boots_b: Counts,
    /// 95 % Wilson intervals of each side's failing-boot rate.
    pub interval_a: Interval,
    pub interval_b: Interval,
    /// Fisher's exact two-sided p-value on the boots.
    pub fisher_p: f64,
}

/// A metric question's figures, one value per boot.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MetricDetail {
    /// One value per boot in batch order: the quantile of the boot's merged histogram
    /// (`*_p50`, `*_p99`), or the geometric mean of its runs' values.
    pub values_a: Vec<f64>,
    pub values_b: Vec<f64>,
    /// Unit, when known from the name (`ms`, `us`, `/s`).
    pub unit: String,
    /// The pairs' geometric-mean ratio B/A with a fixed 95 % t interval (descriptive; the
    /// verdict rests on the monitor's repeated interval).
    #[serde(default)]
    pub paired_ratio: Option<PairedRatio>,
    /// Pairs left out of the test because the host was contended while they ran.
    #[serde(default)]
    pub contended_pairs: u64,
    /// Relative resolution of the histogram the values come from (its bucket width over
    /// the bucket's bound at the median value), when they come from one.
    #[serde(default)]
    pub quantisation: Option<f64>,
    /// Pooled latency histograms of the test, when it reported one: (bucket bound, count).
    pub histogram_a: Vec<(u64, u64)>,
    pub histogram_b: Vec<(u64, u64)>,
    /// Name of the histogram above, e.g. `wake_us`.
    pub histogram_name: Option<String>,
}

/// The ratio B/A of a metric from pairs of boots.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PairedRatio {
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    pub confidence: f64,
    pub pairs: u64,
    /// Two-sided paired t-test p-value on the log ratios.
    pub p_value: f64,
}

/// The error rates and budget a comparison ran with.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DesignInfo {
    pub alpha: f64,
    pub alpha_equivalence: f64,
    pub power: f64,
    /// Absolute difference of failure rates ruled out by "no difference".
    pub margin_rate: f64,
    /// Relative shift of a metric ruled out by "no difference".
    pub margin_metric: f64,
    /// The horizon: boots (batches) per side the design allows.
    pub max_runs_per_side: u64,
    pub budget_s: u64,
    /// Runs per test, per side and batch; each batch is one boot per side.
    pub batch_runs: u32,
    pub test_duration_ms: u64,
    pub spending: String,
    pub multiplicity: String,
}

/// The overall answer.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Overall {
    /// At least one regression (or a kernel crash). Exit 1.
    Regression,
    /// No regression; every question decided. Exit 0.
    NoRegression,
    /// No regression found, but some questions are inconclusive. Exit 0.
    NoRegressionInconclusive,
    /// The lab itself failed (builds, boots, transport) before any verdict. Exit 3.
    Infra,
}

impl Overall {
    /// The answer in words, as reports print it.
    pub fn describe(self) -> &'static str {
        match self {
            Overall::Regression => "REGRESSION",
            Overall::NoRegression => "no regression",
            Overall::NoRegressionInconclusive => "no regression found, some questions inconclusive",
            Overall::Infra => "infrastructure failure",
        }
    }
}

/// A finished (or interrupted) comparison.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CompareReport {
    pub format_version: u32,
    pub lab_version: String,
    /// Store id of the comparison session.
    pub session: i64,
    pub started_at: String,
    pub a: SideInfo,
    pub b: SideInfo,
    pub arches: Vec<Arch>,
    pub tests: Vec<String>,
    pub knobs: Vec<(String, String)>,
    pub design: DesignInfo,
    pub questions: Vec<QuestionResult>,
    pub crashes: Vec<CrashFinding>,
    pub overall: Overall,
    /// Runs of this session made before it was interrupted and resumed: replayed in their
    /// batches, never runs of another session.
    pub reused_runs: u64,
    pub runs_made: u64,
    pub infra_errors: u64,
    /// Wall time from start to the last verdict, and the whole command.
    pub time_to_verdict_s: f64,
    /// Wall time to the first regression verdict, if there was one.
    #[serde(default)]
    pub first_regression_s: Option<f64>,
    pub wall_s: f64,
    /// Boots per side the sequential design used, summed over every question (decided or
    /// not), against the fixed-n design with the same error rates for each.
    pub runs_per_side_used: u64,
    pub runs_per_side_fixed_n: u64,
    /// Accelerator per arch and why.
    pub accel: Vec<(Arch, String)>,
    /// Run directories with their manifests, for reproduction.
    pub run_dirs: Vec<String>,
    /// The command line that reproduces this comparison.
    pub reproduce: String,
}

impl CompareReport {
    /// The questions whose verdict satisfies `pick`, as `test/arch question` labels.
    pub fn labels_where(&self, pick: impl Fn(&Verdict) -> bool) -> Vec<String> {
        self.questions
            .iter()
            .filter(|q| pick(&q.verdict))
            .map(|q| format!("{}/{} {}", q.test, q.arch, q.question.label()))
            .collect()
    }

    /// Counts of each verdict, for summaries.
    pub fn tally(&self) -> (usize, usize, usize, usize) {
        let mut t = (0, 0, 0, 0);
        for q in &self.questions {
            match q.verdict {
                Verdict::Regression => t.0 += 1,
                Verdict::Improvement => t.1 += 1,
                Verdict::NoDifference { .. } => t.2 += 1,
                Verdict::Inconclusive { .. } | Verdict::BaselineCrashes { .. } => t.3 += 1,
            }
        }
        t
    }
}

/// Which way a metric name points, and its unit, from the guest suite's naming convention:
/// `*_per_s` is a throughput (higher is better); `*_ms*`, `*_us*`, `*_ns*` are latencies.
pub fn metric_meta(name: &str) -> (Better, &'static str) {
    if name.ends_with("_per_s") {
        (Better::Higher, "/s")
    } else if name.contains("_us") {
        (Better::Lower, "us")
    } else if name.contains("_ns") {
        (Better::Lower, "ns")
    } else if name.contains("_ms") {
        (Better::Lower, "ms")
    } else {
        (Better::Lower, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_map_to_direction_and_unit() {
        assert_eq!(metric_meta("round_trips_per_s"), (Better::Higher, "/s"));
        assert_eq!(metric_meta("wake_us_p99"), (Better::Lower, "us"));
        assert_eq!(metric_meta("round_ms_p50"), (Better::Lower, "ms"));
    }
}
