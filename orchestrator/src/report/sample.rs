//! A small comparison for the snapshot tests of every exporter: one arch, a failure-rate
//! regression with a crash behind it, a metric with no difference, an inconclusive rate.

use crate::arch::Arch;
use crate::compare::model::{
    Better, CompareReport, CrashFinding, DesignInfo, MetricDetail, Overall, PairedRatio,
    QuestionKind, QuestionResult, RateDetail, Side, SideInfo, SideKernel, Verdict,
    REPORT_FORMAT_VERSION,
};
use crate::stats::{Counts, Decision, Direction, Interval};

fn question(
    test: &str,
    question: QuestionKind,
    verdict: Verdict,
    decision: Decision,
) -> QuestionResult {
    QuestionResult {
        test: test.into(),
        arch: Arch::X86_64,
        question,
        verdict,
        decision,
        runs_a: 24,
        runs_b: 24,
        rate: None,
        metric: None,
        p_value: None,
        p_adjusted: None,
        alpha: 0.05,
        evidence_a: None,
        evidence_b: None,
        looks: Vec::new(),
        fixed_n: None,
        secondary_to: None,
    }
}

fn rate(a: (u64, u64), b: (u64, u64)) -> Option<RateDetail> {
    Some(RateDetail {
        a: Counts::new(a.0, a.1),
        b: Counts::new(b.0, b.1),
        boots_a: Counts::new(a.0 / 3, a.1.min(a.0 / 3)),
        boots_b: Counts::new(b.0 / 3, b.1.min(b.0 / 3)),
        interval_a: Interval {
            lower: 0.0,
            upper: 0.14,
        },
        interval_b: Interval {
            lower: 0.04,
            upper: 0.31,
        },
        fisher_p: 0.23,
    })
}

pub(crate) fn small_report() -> CompareReport {
    let mut regression = question(
        "futex_wake_race",
        QuestionKind::FailureRate,
        Verdict::Regression,
        Decision::Different {
            direction: Direction::BHigher,
            estimate: 0.125,
            interval: Interval {
                lower: 0.018,
                upper: 0.284,
            },
            error_rate: 0.05,
        },
    );
    regression.rate = rate((24, 0), (24, 3));
    regression.evidence_b =
        Some("run 7: fail: futex_wait returned EAGAIN <after> a wake & a \x1b[31msignal".into());
    regression.p_value = Some(0.23);

    let mut metric = question(
        "futex_wake_race",
        QuestionKind::Metric {
            name: "wake_us_p99".into(),
            better: Better::Lower,
        },
        Verdict::NoDifference { margin: 0.05 },
        Decision::Equivalent {
            margin: 0.05,
            estimate: 1.01,
            interval: Interval {
                lower: 0.98,
                upper: 1.03,
            },
            error_rate: 0.05,
        },
    );
    metric.metric = Some(MetricDetail {
        values_a: vec![80.0, 82.0, 79.0, 81.0],
        values_b: vec![81.0, 83.0, 80.0, 82.0],
        unit: "us".into(),
        paired_ratio: Some(PairedRatio {
            estimate: 1.012,
            lower: 0.981,
            upper: 1.034,
            confidence: 0.95,
            pairs: 4,
            p_value: 0.41,
        }),
        contended_pairs: 1,
        quantisation: Some(0.0625),
        histogram_a: vec![(50, 10), (100, 80), (200, 2)],
        histogram_b: vec![(50, 9), (100, 81), (200, 3)],
        histogram_name: Some("wake_us".into()),
    });

    let mut open = question(
        "wq_exclusive_wake",
        QuestionKind::FailureRate,
        Verdict::Inconclusive {
            more_runs: Some(40),
        },
        Decision::Inconclusive {
            more_runs_estimate: 40,
            estimate: 0.042,
            interval: Some(Interval {
                lower: -0.05,
                upper: 0.19,
            }),
        },
    );
    open.rate = rate((24, 0), (24, 1));

    CompareReport {
        format_version: REPORT_FORMAT_VERSION,
        lab_version: "0.1.0".into(),
        session: 7,
        started_at: "2025-06-01T10:00:00Z".into(),
        a: SideInfo {
            spec: "base".into(),
            label: "debian-6.12".into(),
            kernels: vec![SideKernel {
                arch: Arch::X86_64,
                kernel_key: "3f2a9c01".into(),
                kernel_release: "6.12.57-rt15".into(),
                image_digest: "sha256:aa11".into(),
            }],
        },
        b: SideInfo {
            spec: "futex-lockless-wakeup-revert".into(),
            label: "debian-6.12+futex-lockless-wakeup-revert".into(),
            kernels: vec![SideKernel {
                arch: Arch::X86_64,
                kernel_key: "77be0d42".into(),
                kernel_release: "6.12.57-rt15+".into(),
                image_digest: "sha256:bb22".into(),
            }],
        },
        arches: vec![Arch::X86_64],
        tests: vec!["futex_wake_race".into(), "wq_exclusive_wake".into()],
        knobs: Vec::new(),
        design: DesignInfo {
            alpha: 0.05,
            alpha_equivalence: 0.05,
            power: 0.8,
            margin_rate: 0.15,
            margin_metric: 0.05,
            max_runs_per_side: 24,
            budget_s: 1800,
            batch_runs: 4,
            test_duration_ms: 2000,
            spending: "obrien-fleming".into(),
            multiplicity: "holm".into(),
        },
        questions: vec![regression, metric, open],
        crashes: vec![CrashFinding {
            side: Side::B,
            arch: Arch::X86_64,
            test: "futex_wake_race".into(),
            title: "BUG: sleeping function called from invalid context".into(),
            fingerprint: "bug:futex_wake|wake_up_q".into(),
            fingerprint_id: "c0ffee12".into(),
            excerpt: "BUG: sleeping function called from invalid context\n Call Trace:\n  futex_wake+0x1c/0x90".into(),
            occurrences: 2,
            run_dir: "/cache/lab/runs/0007-b-x86_64-3".into(),
        }],
        overall: Overall::Regression,
        reused_runs: 8,
        runs_made: 40,
        infra_errors: 1,
        time_to_verdict_s: 750.0,
        first_regression_s: None,
        wall_s: 781.0,
        runs_per_side_used: 24,
        runs_per_side_fixed_n: 60,
        accel: vec![(Arch::X86_64, "tcg (kvm cannot boot a stock kernel here)".into())],
        run_dirs: vec![
            "/cache/lab/runs/0007-a-x86_64-1".into(),
            "/cache/lab/runs/0007-b-x86_64-1".into(),
        ],
        reproduce: "lab compare base futex-lockless-wakeup-revert --arch x86_64".into(),
    }
}
