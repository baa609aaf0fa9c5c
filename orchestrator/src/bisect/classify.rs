//! What one bisection step showed, from the outcomes of its runs: how many runs count, how
//! many of them failed, or why the whole step is a skip. Pure, so that the rules are tested
//! without a guest.
//!
//! The rules, in the order they apply to each outcome:
//! - an infrastructure error is no run at all: it says nothing about the kernel;
//! - a pass is a good run; a test failure or a hang is a bad one;
//! - a kernel crash is a bad run when its fingerprint is the one bisected (`--match-crash`,
//!   or the bad end's), and otherwise makes the whole step a skip: that kernel is broken in
//!   another way, which can hide the bug being bisected, so its passes prove nothing either.
//!
//! A step in which no run counted is a skip too. The search treats a skip as no information
//! about the culprit ([`super::search`]).

use crate::results::crash::CrashReport;
use crate::results::{OutcomeKind, TestOutcome};

/// What one step showed.
#[derive(Debug, Clone, PartialEq)]
pub enum StepResult {
    Runs {
        runs: u32,
        failures: u32,
        /// The fingerprint id of the first crash that counted as a failure.
        crash: Option<String>,
        kernel_key: String,
    },
    Skip {
        why: String,
        /// The kernel's cache key, when it was built.
        kernel_key: Option<String>,
    },
}

/// Counts a step's outcomes under the rules above; `want` is the crash fingerprint bisected,
/// if one is known yet.
pub fn classify(outcomes: &[TestOutcome], want: Option<&str>, kernel_key: String) -> StepResult {
    let mut runs = 0;
    let mut failures = 0;
    let mut crash = None;
    for o in outcomes {
        match o.kind {
            OutcomeKind::InfraError => continue,
            OutcomeKind::Pass => runs += 1,
            OutcomeKind::Fail | OutcomeKind::Hang => {
                runs += 1;
                failures += 1;
            }
            OutcomeKind::KernelCrash => {
                if !matches_crash(want, &o.crashes) {
                    let id = o.crashes.first().map(|c| c.fingerprint.id());
                    return StepResult::Skip {
                        why: format!(
                            "crashed with another fingerprint: {} [{}]",
                            first_line(&o.summary),
                            id.unwrap_or_else(|| "no report".into())
                        ),
                        kernel_key: Some(kernel_key),
                    };
                }
                runs += 1;
                failures += 1;
                crash = crash.or_else(|| o.crashes.first().map(|c| c.fingerprint.id()));
            }
        }
    }
    if runs == 0 {
        return StepResult::Skip {
            why: outcomes.first().map_or_else(
                || "no run finished".into(),
                |o| format!("no usable run: {}", first_line(&o.summary)),
            ),
            kernel_key: Some(kernel_key),
        };
    }
    StepResult::Runs {
        runs,
        failures,
        crash,
        kernel_key,
    }
}

/// Whether one of `crashes` is the crash bisected. `want` is what the user gave or the bad end
/// showed: a fingerprint id, a prefix of one (ids are shown shortened, like git's), or the full
/// `kind:frame|frame` text. With nothing wanted yet, no crash matches.
pub fn matches_crash(want: Option<&str>, crashes: &[CrashReport]) -> bool {
    let Some(want) = want else {
        return false;
    };
    crashes
        .iter()
        .any(|c| c.fingerprint.id().starts_with(want) || c.fingerprint.to_string() == want)
}

/// The first line of `s`, at most 160 characters: enough to say what failed in one line of
/// the step log.
pub fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::results::crash::{CrashKind, Fingerprint};

    fn outcome(kind: OutcomeKind) -> TestOutcome {
        let mut o = TestOutcome::infra("t", Arch::X86_64, 0, 0, "x".into());
        o.kind = kind;
        o
    }

    fn crashed() -> TestOutcome {
        let mut crash = outcome(OutcomeKind::KernelCrash);
        crash.crashes = vec![CrashReport {
            kind: CrashKind::Bug,
            title: "BUG: x".into(),
            excerpt: String::new(),
            fingerprint: Fingerprint {
                kind: CrashKind::Bug,
                frames: vec!["futex_wake".into()],
            },
            first_line_no: 1,
        }];
        crash
    }

    #[test]
    fn steps_count_failures_drop_infra_and_skip_on_a_different_crash() {
        let os = vec![
            outcome(OutcomeKind::Pass),
            outcome(OutcomeKind::Fail),
            outcome(OutcomeKind::InfraError),
            outcome(OutcomeKind::Hang),
        ];
        match classify(&os, None, "k".into()) {
            StepResult::Runs { runs, failures, .. } => assert_eq!((runs, failures), (3, 2)),
            StepResult::Skip { why, .. } => panic!("skipped: {why}"),
        }
        let crash = crashed();
        let id = crash.crashes[0].fingerprint.id();
        assert!(matches!(
            classify(std::slice::from_ref(&crash), Some(&id), "k".into()),
            StepResult::Runs { failures: 1, .. }
        ));
        assert!(matches!(
            classify(std::slice::from_ref(&crash), Some("0000ffff"), "k".into()),
            StepResult::Skip { .. }
        ));
        assert!(matches!(
            classify(&[outcome(OutcomeKind::InfraError)], None, "k".into()),
            StepResult::Skip { .. }
        ));
    }

    #[test]
    fn a_crash_matches_by_id_prefix_or_full_fingerprint_and_is_remembered() {
        let crash = crashed();
        let fp = &crash.crashes[0].fingerprint;
        let id = fp.id();
        assert!(matches_crash(Some(&id[..6]), &crash.crashes));
        assert!(matches_crash(Some("bug:futex_wake"), &crash.crashes));
        assert!(!matches_crash(None, &crash.crashes));
        assert!(!matches_crash(Some(&id), &[]));
        match classify(&[outcome(OutcomeKind::Pass), crash], Some(&id), "k".into()) {
            StepResult::Runs {
                runs,
                failures,
                crash,
                ..
            } => assert_eq!((runs, failures, crash), (2, 1, Some(id))),
            StepResult::Skip { why, .. } => panic!("skipped: {why}"),
        }
        match classify(&[crashed()], None, "k".into()) {
            StepResult::Skip { why, kernel_key } => {
                assert!(
                    why.starts_with("crashed with another fingerprint: x ["),
                    "{why}"
                );
                assert_eq!(kernel_key.as_deref(), Some("k"));
            }
            StepResult::Runs { .. } => panic!("no crash is wanted yet"),
        }
    }
}
