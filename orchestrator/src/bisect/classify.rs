//! What one bisection step showed, from the outcomes of its runs: how many runs count, how
//! many of them failed, or why the whole step is a skip. Pure, so that the rules are tested
//! without a guest.
//!
//! The rules, in the order they apply to each outcome:
//! - an infrastructure error is no run at all: it says nothing about the kernel;
//! - a pass is a good run; a test failure or a hang is a bad one;
//! - a kernel crash is a bad run when its fingerprint is the one bisected ([`Want`]:
//!   `--match-crash`, or the bad end's), and otherwise makes the whole step a skip: that kernel
//!   is broken in another way, which can hide the bug being bisected, so its passes prove
//!   nothing either. At the bad end, before any fingerprint is known, the first crash is the
//!   one bisected: its fingerprint is adopted, and the rest of the step is held to it.
//!
//! A step in which no run counted is a skip too. The search treats a skip as no information
//! about the culprit ([`super::search`]).

use crate::results::crash::{CrashReport, Fingerprint};
use crate::results::{OutcomeKind, TestOutcome};

/// What one step showed.
#[derive(Debug, Clone, PartialEq)]
pub enum StepResult {
    Runs {
        runs: u32,
        failures: u32,
        /// The fingerprint of the first crash that counted as a failure (with
        /// [`Want::AdoptFirst`], the one adopted).
        crash: Option<Fingerprint>,
        kernel_key: String,
    },
    Skip {
        why: String,
        /// The kernel's cache key, when it was built.
        kernel_key: Option<String>,
    },
}

/// Which kernel crashes are the failure bisected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want<'a> {
    /// Crashes with this fingerprint: an id, a prefix of one, or the full text
    /// ([`matches_crash`]).
    Fingerprint(&'a str),
    /// None known yet, at the bad end: the first crash with a report is adopted, and then
    /// only crashes with its fingerprint count.
    AdoptFirst,
    /// None known, and none to adopt: every crash makes the step a skip.
    Nothing,
}

impl<'a> Want<'a> {
    /// What a step wants: the fingerprint bisected, once there is one; before that, the first
    /// crash at the bad end, and no crash anywhere else.
    pub fn of(fingerprint: Option<&'a str>, at_bad_end: bool) -> Want<'a> {
        match (fingerprint, at_bad_end) {
            (Some(f), _) => Want::Fingerprint(f),
            (None, true) => Want::AdoptFirst,
            (None, false) => Want::Nothing,
        }
    }
}

/// Counts a step's outcomes under the rules above.
pub fn classify(outcomes: &[TestOutcome], want: Want<'_>, kernel_key: String) -> StepResult {
    let mut runs = 0;
    let mut failures = 0;
    let mut crash: Option<Fingerprint> = None;
    for o in outcomes {
        match o.kind {
            OutcomeKind::InfraError => continue,
            OutcomeKind::Pass => runs += 1,
            OutcomeKind::Fail | OutcomeKind::Hang => {
                runs += 1;
                failures += 1;
            }
            OutcomeKind::KernelCrash => {
                let wanted = |c: &&CrashReport| match (want, &crash) {
                    (Want::Fingerprint(f), _) => matches_crash(f, c),
                    (Want::AdoptFirst, Some(adopted)) => c.fingerprint == *adopted,
                    (Want::AdoptFirst, None) => true,
                    (Want::Nothing, _) => false,
                };
                let Some(hit) = o.crashes.iter().find(wanted) else {
                    let id = o.crashes.first().map(|c| c.fingerprint.id());
                    return StepResult::Skip {
                        why: format!(
                            "crashed with another fingerprint: {} [{}]",
                            first_line(&o.summary),
                            id.unwrap_or_else(|| "no report".into())
                        ),
                        kernel_key: Some(kernel_key),
                    };
                };
                runs += 1;
                failures += 1;
                crash = crash.or_else(|| Some(hit.fingerprint.clone()));
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

/// Whether `crash` is the crash bisected. `want` is what the user gave or the bad end showed:
/// a fingerprint id, a prefix of one (ids are shown shortened, like git's), or the full
/// `kind:frame|frame` text.
pub fn matches_crash(want: &str, crash: &CrashReport) -> bool {
    crash.fingerprint.id().starts_with(want) || crash.fingerprint.to_string() == want
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
    use crate::results::crash::CrashKind;

    fn outcome(kind: OutcomeKind) -> TestOutcome {
        let mut o = TestOutcome::infra("t", Arch::X86_64, 0, 0, "x".into());
        o.kind = kind;
        o
    }

    fn crashed_in(kind: CrashKind, frame: &str) -> TestOutcome {
        let mut crash = outcome(OutcomeKind::KernelCrash);
        crash.crashes = vec![CrashReport {
            kind,
            title: format!("{kind}: x"),
            excerpt: String::new(),
            fingerprint: Fingerprint {
                kind,
                frames: vec![frame.into()],
            },
            first_line_no: 1,
        }];
        crash
    }

    fn crashed() -> TestOutcome {
        crashed_in(CrashKind::Bug, "futex_wake")
    }

    fn runs(r: StepResult) -> (u32, u32, Option<String>) {
        match r {
            StepResult::Runs {
                runs,
                failures,
                crash,
                ..
            } => (runs, failures, crash.map(|f| f.to_string())),
            StepResult::Skip { why, .. } => panic!("skipped: {why}"),
        }
    }

    #[test]
    fn steps_count_failures_drop_infra_and_skip_on_a_different_crash() {
        let os = vec![
            outcome(OutcomeKind::Pass),
            outcome(OutcomeKind::Fail),
            outcome(OutcomeKind::InfraError),
            outcome(OutcomeKind::Hang),
        ];
        assert_eq!(runs(classify(&os, Want::Nothing, "k".into())), (3, 2, None));
        let crash = crashed();
        let id = crash.crashes[0].fingerprint.id();
        assert!(matches!(
            classify(
                std::slice::from_ref(&crash),
                Want::Fingerprint(&id),
                "k".into()
            ),
            StepResult::Runs { failures: 1, .. }
        ));
        assert!(matches!(
            classify(
                std::slice::from_ref(&crash),
                Want::Fingerprint("0000ffff"),
                "k".into()
            ),
            StepResult::Skip { .. }
        ));
        assert!(matches!(
            classify(
                &[outcome(OutcomeKind::InfraError)],
                Want::Nothing,
                "k".into()
            ),
            StepResult::Skip { .. }
        ));
    }

    #[test]
    fn a_crash_matches_by_id_prefix_or_full_fingerprint_and_is_remembered() {
        let crash = crashed();
        let report = &crash.crashes[0];
        let id = report.fingerprint.id();
        assert!(matches_crash(&id[..6], report));
        assert!(matches_crash("bug:futex_wake", report));
        assert!(!matches_crash("bug:futex_wait", report));
        assert_eq!(
            runs(classify(
                &[outcome(OutcomeKind::Pass), crash],
                Want::Fingerprint(&id),
                "k".into()
            )),
            (2, 1, Some("bug:futex_wake".into()))
        );
        match classify(&[crashed()], Want::Nothing, "k".into()) {
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

    #[test]
    fn only_the_bad_end_adopts_a_crash_before_a_fingerprint_is_known() {
        assert_eq!(Want::of(None, true), Want::AdoptFirst);
        assert_eq!(Want::of(None, false), Want::Nothing);
        assert_eq!(Want::of(Some("ab"), true), Want::Fingerprint("ab"));
        assert_eq!(Want::of(Some("ab"), false), Want::Fingerprint("ab"));
    }

    #[test]
    fn the_first_crash_is_adopted_and_the_rest_of_the_step_is_held_to_it() {
        let warn = || crashed_in(CrashKind::Warning, "do_epoll_ctl");
        // Plain failures and passes around the crash count as before.
        let os = [
            outcome(OutcomeKind::Pass),
            warn(),
            outcome(OutcomeKind::Fail),
            warn(),
        ];
        assert_eq!(
            runs(classify(&os, Want::AdoptFirst, "k".into())),
            (4, 3, Some("warning:do_epoll_ctl".into()))
        );
        // A second crash with another fingerprint: the kernel is broken in two ways.
        match classify(&[warn(), crashed()], Want::AdoptFirst, "k".into()) {
            StepResult::Skip { why, .. } => {
                assert!(why.starts_with("crashed with another fingerprint"), "{why}");
            }
            StepResult::Runs { .. } => panic!("two fingerprints in one step"),
        }
        // Among several reports of one run, the first is adopted, and a later run that shows
        // the adopted one among others counts.
        let mut both = warn();
        both.crashes.extend(crashed().crashes);
        let mut later = crashed();
        later.crashes.extend(warn().crashes);
        assert_eq!(
            runs(classify(&[both, later], Want::AdoptFirst, "k".into())),
            (2, 2, Some("warning:do_epoll_ctl".into()))
        );
        // A crash with no report (an incomplete panic) has nothing to adopt.
        let mut bare = outcome(OutcomeKind::KernelCrash);
        bare.summary = "kernel panic (report incomplete on the console)".into();
        assert!(matches!(
            classify(&[bare], Want::AdoptFirst, "k".into()),
            StepResult::Skip { .. }
        ));
        // Without a crash the bad end adopts nothing.
        assert_eq!(
            runs(classify(
                &[outcome(OutcomeKind::Fail)],
                Want::AdoptFirst,
                "k".into()
            )),
            (1, 1, None)
        );
    }
}
