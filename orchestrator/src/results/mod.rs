//! What a test run produced: the outcome model every verb shares.
//!
//! An outcome is one of pass, fail, kernel-crash, hang or infra-error. The distinction that
//! matters most is the last one: an infra-error (QEMU did not start, SSH never came up, the
//! build failed, the test could not run) is never counted as a test failure.
//!
//! Beside the outcomes live the records that keep them: [`manifest`] (what a run was) and
//! [`store`] (every run in one SQLite file). This module is a floor of the import graph: it
//! imports neither the runner nor any verb, so each of them can import it.

pub mod crash;
pub mod manifest;
pub mod run_dirs;
pub mod store;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::results::crash::CrashReport;
use lab_proto::TestResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeKind {
    Pass,
    /// The test said the kernel misbehaved, with its evidence.
    Fail,
    /// The console showed a kernel report (oops, BUG, WARNING, lockdep, panic...).
    KernelCrash,
    /// The guest watchdog or the host deadline fired.
    Hang,
    /// The lab could not run the test: never a verdict on the kernel.
    InfraError,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Pass => "pass",
            OutcomeKind::Fail => "fail",
            OutcomeKind::KernelCrash => "kernel-crash",
            OutcomeKind::Hang => "hang",
            OutcomeKind::InfraError => "infra-error",
        }
    }

    /// Whether this outcome says something bad about the kernel.
    pub fn is_kernel_failure(self) -> bool {
        matches!(
            self,
            OutcomeKind::Fail | OutcomeKind::KernelCrash | OutcomeKind::Hang
        )
    }
}

impl std::fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One test, one iteration, on one kernel and arch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestOutcome {
    pub test: String,
    pub arch: Arch,
    pub iteration: u32,
    pub seed: u64,
    pub kind: OutcomeKind,
    /// One line: what happened, with numbers.
    pub summary: String,
    /// The guest test's own result line, when it printed one.
    pub result: Option<TestResult>,
    /// Kernel reports seen on the console while the test ran.
    pub crashes: Vec<CrashReport>,
    pub duration_ms: u64,
    /// The last lines the test wrote on stderr.
    pub stderr_tail: String,
}

impl TestOutcome {
    pub fn infra(test: &str, arch: Arch, iteration: u32, seed: u64, why: String) -> TestOutcome {
        TestOutcome {
            test: test.to_owned(),
            arch,
            iteration,
            seed,
            kind: OutcomeKind::InfraError,
            summary: why,
            result: None,
            crashes: Vec::new(),
            duration_ms: 0,
            stderr_tail: String::new(),
        }
    }
}
