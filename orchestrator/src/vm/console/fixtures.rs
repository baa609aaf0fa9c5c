//! Recorded console logs (`orchestrator/tests/fixtures/console/`), the reports each one must
//! produce, and the helpers that feed a log through a watcher: shared by the tests of every part of
//! the console module.

use super::{ConsoleWatcher, WatchEvent};
use crate::results::crash::{CrashKind, CrashReport};

/// Feeds a whole log, then finishes it.
pub(super) fn watch(log: &str) -> (Vec<WatchEvent>, Vec<CrashReport>) {
    let mut watcher = ConsoleWatcher::new();
    let mut events = Vec::new();
    for line in log.lines() {
        events.extend(watcher.feed_line(line));
    }
    events.extend(watcher.finish());
    (events, watcher.reports().to_vec())
}

pub(super) fn only_report(log: &str) -> CrashReport {
    let (_, reports) = watch(log);
    assert_eq!(reports.len(), 1, "expected one report, got {reports:#?}");
    reports[0].clone()
}

/// The log up to (not including) the first line containing `needle`.
pub(super) fn up_to_line_with<'a>(log: &'a str, needle: &str) -> &'a str {
    let at = log.find(needle).expect("needle in fixture");
    &log[..log[..at].rfind('\n').map_or(0, |nl| nl + 1)]
}

pub(super) fn frames(report: &CrashReport) -> Vec<&str> {
    report
        .fingerprint
        .frames
        .iter()
        .map(String::as_str)
        .collect()
}

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/console/", $name, ".log"))
    };
}

pub(super) const X86_WARNING: &str = fixture!("x86_64-warning");
pub(super) const ARM64_WARNING: &str = fixture!("arm64-warning");
pub(super) const X86_NULL_DEREF: &str = fixture!("x86_64-null-deref");
pub(super) const ARM64_NULL_DEREF: &str = fixture!("arm64-null-deref");
pub(super) const X86_GPF: &str = fixture!("x86_64-gpf");
pub(super) const ARM64_UNDEF: &str = fixture!("arm64-undef");
pub(super) const X86_KASAN: &str = fixture!("x86_64-kasan");
pub(super) const X86_KERNEL_BUG: &str = fixture!("x86_64-kernel-bug");
pub(super) const ARM64_KERNEL_BUG: &str = fixture!("arm64-kernel-bug");
pub(super) const X86_LOCKDEP_CIRCULAR: &str = fixture!("x86_64-lockdep-circular");
pub(super) const ARM64_LOCKDEP_CIRCULAR: &str = fixture!("arm64-lockdep-circular");
pub(super) const X86_LOCKDEP_INCONSISTENT: &str = fixture!("x86_64-lockdep-inconsistent");
pub(super) const ARM64_LOCKDEP_INCONSISTENT: &str = fixture!("arm64-lockdep-inconsistent");
pub(super) const X86_LOCKDEP_RECURSIVE: &str = fixture!("x86_64-lockdep-recursive");
pub(super) const ARM64_RCU_SUSPICIOUS: &str = fixture!("arm64-rcu-suspicious");
pub(super) const X86_SCHED_ATOMIC: &str = fixture!("x86_64-sched-atomic");
pub(super) const ARM64_SCHED_ATOMIC: &str = fixture!("arm64-sched-atomic");
pub(super) const X86_SLEEP_ATOMIC: &str = fixture!("x86_64-sleep-atomic");
pub(super) const ARM64_SLEEP_ATOMIC: &str = fixture!("arm64-sleep-atomic");
pub(super) const X86_HUNG_TASK: &str = fixture!("x86_64-hung-task");
pub(super) const ARM64_HUNG_TASK: &str = fixture!("arm64-hung-task");
pub(super) const X86_SOFT_LOCKUP: &str = fixture!("x86_64-soft-lockup");
pub(super) const ARM64_SOFT_LOCKUP: &str = fixture!("arm64-soft-lockup");
pub(super) const X86_HARD_LOCKUP: &str = fixture!("x86_64-hard-lockup");
pub(super) const ARM64_HARD_LOCKUP: &str = fixture!("arm64-hard-lockup");
pub(super) const X86_RCU_STALL: &str = fixture!("x86_64-rcu-stall");
pub(super) const ARM64_RCU_STALL: &str = fixture!("arm64-rcu-stall");
pub(super) const X86_PANIC: &str = fixture!("x86_64-panic-vfs");
pub(super) const ARM64_PANIC: &str = fixture!("arm64-panic-init");
pub(super) const CLEAN_BOOT: &str = fixture!("clean-boot");

/// A report as the tests check it: kind, title, fingerprint frames.
pub(super) type Expected = (CrashKind, &'static str, Vec<&'static str>);

/// Every fixture (name, text) with the reports it must produce.
pub(super) fn expectations() -> Vec<(&'static str, &'static str, Vec<Expected>)> {
    use CrashKind::*;
    vec![
        (
            "x86_64-warning",
            X86_WARNING,
            vec![(
                Warning,
                "WARNING: CPU: 1 PID: 42 at kernel/futex/waitwake.c:123 futex_wake_mark+0x12/0x40",
                vec!["futex_wake_mark", "futex_wake", "do_futex", "sys_futex"],
            )],
        ),
        (
            "arm64-warning",
            ARM64_WARNING,
            vec![(
                Warning,
                "WARNING: CPU: 0 PID: 57 at kernel/futex/waitwake.c:123 futex_wake_mark+0x1c/0x48",
                vec!["futex_wake_mark", "futex_wake", "do_futex", "sys_futex"],
            )],
        ),
        (
            "x86_64-null-deref",
            X86_NULL_DEREF,
            vec![
                (
                    Bug,
                    "BUG: kernel NULL pointer dereference, address: 0000000000000008",
                    vec!["lab_probe_read", "full_proxy_read", "vfs_read", "ksys_read"],
                ),
                (Panic, "Kernel panic - not syncing: Fatal exception", vec![]),
            ],
        ),
        (
            "arm64-null-deref",
            ARM64_NULL_DEREF,
            vec![
                (
                    Bug,
                    "Unable to handle kernel NULL pointer dereference at virtual address 0000000000000008",
                    vec!["lab_probe_read", "full_proxy_read", "vfs_read", "ksys_read"],
                ),
                (Panic, "Kernel panic - not syncing: Oops: Fatal exception", vec![]),
            ],
        ),
        (
            "x86_64-gpf",
            X86_GPF,
            vec![(
                Oops,
                "Oops: general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1] PREEMPT_RT SMP NOPTI",
                vec!["lab_list_walk", "lab_list_write", "full_proxy_write", "vfs_write"],
            )],
        ),
        (
            "arm64-undef",
            ARM64_UNDEF,
            vec![(
                Oops,
                "Internal error: Oops - Undefined instruction: 0000000002000000 [#1] PREEMPT SMP",
                vec!["lab_undef_trigger", "lab_undef_write", "full_proxy_write", "vfs_write"],
            )],
        ),
        (
            "x86_64-kasan",
            X86_KASAN,
            vec![(
                Bug,
                "BUG: KASAN: slab-use-after-free in lab_uaf_read+0x5d/0x80 [lab_uaf]",
                vec!["lab_uaf_read", "full_proxy_read", "vfs_read", "ksys_read"],
            )],
        ),
        (
            "x86_64-kernel-bug",
            X86_KERNEL_BUG,
            vec![(
                Bug,
                "kernel BUG at drivers/misc/lab_bug.c:31!",
                vec!["lab_bug_check", "lab_bug_write", "full_proxy_write", "vfs_write"],
            )],
        ),
        (
            "arm64-kernel-bug",
            ARM64_KERNEL_BUG,
            vec![(
                Bug,
                "kernel BUG at drivers/misc/lab_bug.c:31!",
                vec!["lab_bug_check", "lab_bug_write", "full_proxy_write", "vfs_write"],
            )],
        ),
        (
            "x86_64-lockdep-circular",
            X86_LOCKDEP_CIRCULAR,
            vec![(
                LockdepCircular,
                "WARNING: possible circular locking dependency detected",
                vec!["lab_path_ab", "lab_locks_write", "full_proxy_write", "vfs_write"],
            )],
        ),
        (
            "arm64-lockdep-circular",
            ARM64_LOCKDEP_CIRCULAR,
            vec![(
                LockdepCircular,
                "WARNING: possible circular locking dependency detected",
                vec!["lab_path_ab", "lab_locks_write", "full_proxy_write", "vfs_write"],
            )],
        ),
        (
            "x86_64-lockdep-inconsistent",
            X86_LOCKDEP_INCONSISTENT,
            vec![(
                LockdepInconsistent,
                "WARNING: inconsistent lock state",
                vec!["lab_timer_fn", "__hrtimer_run_queues", "hrtimer_interrupt", "default_idle_call"],
            )],
        ),
        (
            "arm64-lockdep-inconsistent",
            ARM64_LOCKDEP_INCONSISTENT,
            vec![(
                LockdepInconsistent,
                "WARNING: inconsistent lock state",
                vec!["lab_timer_fn", "__hrtimer_run_queues", "hrtimer_interrupt", "default_idle_call"],
            )],
        ),
        (
            "x86_64-lockdep-recursive",
            X86_LOCKDEP_RECURSIVE,
            vec![(
                Lockdep,
                "WARNING: possible recursive locking detected",
                vec!["lab_relock", "lab_locks_ioctl", "sys_ioctl"],
            )],
        ),
        (
            "arm64-rcu-suspicious",
            ARM64_RCU_SUSPICIOUS,
            vec![(
                Lockdep,
                "WARNING: suspicious RCU usage",
                vec!["lab_rcu_read_config", "lab_rcu_read", "full_proxy_read", "vfs_read"],
            )],
        ),
        (
            "x86_64-sched-atomic",
            X86_SCHED_ATOMIC,
            vec![(
                SchedulingWhileAtomic,
                "BUG: scheduling while atomic: lab-atomic/377/0x00000002",
                vec!["lab_atomic_write", "full_proxy_write", "vfs_write", "ksys_write"],
            )],
        ),
        (
            "arm64-sched-atomic",
            ARM64_SCHED_ATOMIC,
            vec![(
                SchedulingWhileAtomic,
                "BUG: scheduling while atomic: lab-atomic/351/0x00000002",
                vec!["lab_atomic_write", "full_proxy_write", "vfs_write", "ksys_write"],
            )],
        ),
        (
            "x86_64-sleep-atomic",
            X86_SLEEP_ATOMIC,
            vec![(
                SleepInAtomic,
                "BUG: sleeping function called from invalid context at kernel/locking/spinlock_rt.c:48",
                vec!["lab_irqoff_write", "full_proxy_write", "vfs_write", "ksys_write"],
            )],
        ),
        (
            "arm64-sleep-atomic",
            ARM64_SLEEP_ATOMIC,
            vec![(
                SleepInAtomic,
                "BUG: sleeping function called from invalid context at kernel/locking/spinlock_rt.c:48",
                vec!["lab_irqoff_write", "full_proxy_write", "vfs_write", "ksys_write"],
            )],
        ),
        (
            "x86_64-hung-task",
            X86_HUNG_TASK,
            vec![(
                HungTask,
                "INFO: task lab-hold:412 blocked for more than 122 seconds.",
                vec!["lab_hold_ioctl", "sys_ioctl"],
            )],
        ),
        (
            "arm64-hung-task",
            ARM64_HUNG_TASK,
            vec![(
                HungTask,
                "INFO: task lab-hold:301 blocked for more than 122 seconds.",
                vec!["lab_hold_ioctl", "sys_ioctl"],
            )],
        ),
        (
            "x86_64-soft-lockup",
            X86_SOFT_LOCKUP,
            vec![(
                SoftLockup,
                "watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [lab-spin:402]",
                vec!["lab_spin_busy", "lab_spin_write", "full_proxy_write", "vfs_write"],
            )],
        ),
        (
            "arm64-soft-lockup",
            ARM64_SOFT_LOCKUP,
            vec![(
                SoftLockup,
                "watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [lab-spin:377]",
                vec!["lab_spin_busy", "lab_spin_write", "full_proxy_write", "vfs_write"],
            )],
        ),
        (
            "x86_64-hard-lockup",
            X86_HARD_LOCKUP,
            vec![(
                HardLockup,
                "watchdog: Watchdog detected hard LOCKUP on cpu 1",
                vec!["lab_spin_irqoff", "lab_spin_write", "full_proxy_write", "vfs_write"],
            )],
        ),
        (
            "arm64-hard-lockup",
            ARM64_HARD_LOCKUP,
            vec![
                (
                    HardLockup,
                    "watchdog: Watchdog detected hard LOCKUP on cpu 1",
                    vec!["lab_spin_irqoff", "lab_spin_write", "full_proxy_write", "vfs_write"],
                ),
                (
                    Panic,
                    "Kernel panic - not syncing: Hard LOCKUP",
                    vec!["default_idle_call", "do_idle"],
                ),
            ],
        ),
        (
            "x86_64-rcu-stall",
            X86_RCU_STALL,
            vec![(
                RcuStall,
                "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
                vec!["lab_rcu_spin", "lab_rcu_write", "full_proxy_write", "vfs_write"],
            )],
        ),
        (
            "arm64-rcu-stall",
            ARM64_RCU_STALL,
            vec![(
                RcuStall,
                "rcu: INFO: rcu_preempt self-detected stall on CPU",
                vec!["lab_rcu_spin", "lab_rcu_write", "full_proxy_write", "vfs_write"],
            )],
        ),
        (
            "x86_64-panic-vfs",
            X86_PANIC,
            vec![(
                Panic,
                "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)",
                vec!["mount_root_generic", "prepare_namespace", "kernel_init_freeable", "kernel_init"],
            )],
        ),
        (
            "arm64-panic-init",
            ARM64_PANIC,
            vec![(
                Panic,
                "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100",
                vec!["do_exit", "do_group_exit", "sys_exit_group"],
            )],
        ),
        ("clean-boot", CLEAN_BOOT, vec![]),
    ]
}
