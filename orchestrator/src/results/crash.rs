//! The crash model: what kind of kernel report a crash is ([`CrashKind`]), one report as read
//! from a guest's console ([`CrashReport`]), and the [`Fingerprint`] that names a crash.
//!
//! The fingerprint is what lets `lab` say "the same crash" across runs, kernel builds and
//! architectures: the report kind plus the first few function names of the culprit's call path,
//! with everything that changes between builds and runs already dropped. Stored results and
//! reports refer to a crash by [`Fingerprint::id`], a hash of the `Display` form, so neither
//! form may change without breaking every result recorded before.
//!
//! The model is plain data and lives here, a leaf of `results/`, because every verb that records,
//! compares or bisects outcomes needs it. Reading reports off a console and taking their
//! fingerprint is `crate::vm::console`'s job: it imports this model, never the other way round.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What kind of kernel report a header line announces.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum CrashKind {
    /// A die() without a more specific header first: `Oops: general protection fault ...`,
    /// arm64 `Internal error: Oops - Undefined instruction ...`.
    Oops,
    /// `BUG: ...` (NULL dereference, page fault, KASAN, ...), `kernel BUG at ...`, and the arm64
    /// spelling of a kernel fault, `Unable to handle kernel ...`.
    Bug,
    /// `WARNING: CPU: 1 PID: 42 at file:line fn+off/size`.
    Warning,
    /// lockdep's "possible circular locking dependency detected".
    LockdepCircular,
    /// lockdep's "inconsistent lock state".
    LockdepInconsistent,
    /// Every other lockdep report: recursive locking, suspicious RCU usage, bad unlock
    /// balance, invalid wait context, ...
    Lockdep,
    /// `BUG: scheduling while atomic`.
    SchedulingWhileAtomic,
    /// `BUG: sleeping function called from invalid context`.
    SleepInAtomic,
    /// `INFO: task foo:123 blocked for more than 120 seconds.`
    HungTask,
    /// `watchdog: BUG: soft lockup - CPU#0 stuck for 22s!`
    SoftLockup,
    /// `watchdog: Watchdog detected hard LOCKUP on cpu 1`.
    HardLockup,
    /// `rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:` and `self-detected stall`.
    RcuStall,
    /// `Kernel panic - not syncing: ...`: the guest is dead after this.
    Panic,
}

impl CrashKind {
    /// Every kind, in declaration order.
    pub const ALL: [CrashKind; 13] = [
        CrashKind::Oops,
        CrashKind::Bug,
        CrashKind::Warning,
        CrashKind::LockdepCircular,
        CrashKind::LockdepInconsistent,
        CrashKind::Lockdep,
        CrashKind::SchedulingWhileAtomic,
        CrashKind::SleepInAtomic,
        CrashKind::HungTask,
        CrashKind::SoftLockup,
        CrashKind::HardLockup,
        CrashKind::RcuStall,
        CrashKind::Panic,
    ];

    /// The kebab-case name, the same as the serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            CrashKind::Oops => "oops",
            CrashKind::Bug => "bug",
            CrashKind::Warning => "warning",
            CrashKind::LockdepCircular => "lockdep-circular",
            CrashKind::LockdepInconsistent => "lockdep-inconsistent",
            CrashKind::Lockdep => "lockdep",
            CrashKind::SchedulingWhileAtomic => "scheduling-while-atomic",
            CrashKind::SleepInAtomic => "sleep-in-atomic",
            CrashKind::HungTask => "hung-task",
            CrashKind::SoftLockup => "soft-lockup",
            CrashKind::HardLockup => "hard-lockup",
            CrashKind::RcuStall => "rcu-stall",
            CrashKind::Panic => "panic",
        }
    }

    /// Whether this is one of lockdep's reports.
    pub fn is_lockdep(self) -> bool {
        matches!(
            self,
            CrashKind::LockdepCircular | CrashKind::LockdepInconsistent | CrashKind::Lockdep
        )
    }
}

impl fmt::Display for CrashKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies a crash across runs, kernel builds and architectures.
///
/// `Display` gives `kind:frame|frame|...` (e.g. `warning:futex_wake_mark|futex_wake|do_futex`),
/// and [`Fingerprint::id`] a short hash of that string.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    pub kind: CrashKind,
    /// Function names, innermost first, without offsets, modules or clone suffixes.
    pub frames: Vec<String>,
}

impl Fingerprint {
    /// Length of [`Fingerprint::id`] in hex digits.
    pub const ID_LEN: usize = 12;

    /// The first [`Self::ID_LEN`] hex digits of the SHA-256 of the `Display` string.
    pub fn id(&self) -> String {
        let mut id = hex::encode(Sha256::digest(self.to_string().as_bytes()));
        id.truncate(Self::ID_LEN);
        id
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.frames.join("|"))
    }
}

/// One kernel report read from the console.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CrashReport {
    pub kind: CrashKind,
    /// The header line, without printk's timestamp and caller id.
    pub title: String,
    /// The header and the lines of the report after it, as they appeared on the console
    /// (timestamps kept), one per line; capped at the watcher's line limit.
    pub excerpt: String,
    pub fingerprint: Fingerprint,
    /// 1-based number of the header line among all lines fed to the watcher.
    pub first_line_no: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_display_and_id_are_stable() {
        let fingerprint = Fingerprint {
            kind: CrashKind::Warning,
            frames: ["futex_wake_mark", "futex_wake", "do_futex", "sys_futex"]
                .map(str::to_owned)
                .to_vec(),
        };
        assert_eq!(
            fingerprint.to_string(),
            "warning:futex_wake_mark|futex_wake|do_futex|sys_futex"
        );
        // sha256("warning:futex_wake_mark|futex_wake|do_futex|sys_futex"), first 12 digits;
        // a change here breaks every stored result that refers to a crash by id.
        assert_eq!(fingerprint.id(), "3bf07f98c977");
        let empty = Fingerprint {
            kind: CrashKind::Panic,
            frames: vec![],
        };
        assert_eq!(empty.to_string(), "panic:");
        assert_eq!(empty.id().len(), Fingerprint::ID_LEN);
    }

    #[test]
    fn kinds_serialise_as_their_kebab_case_names() {
        for kind in CrashKind::ALL {
            assert_eq!(
                serde_json::to_value(kind).expect("serialise"),
                serde_json::Value::String(kind.as_str().to_owned())
            );
        }
    }
}
