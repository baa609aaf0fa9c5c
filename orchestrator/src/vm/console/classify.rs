//! Report headers: which console message starts which kind of report.
//!
//! It knows the header formats of Linux 6.x (`__warn()`, `die()`, lockdep, the soft and hard
//! lockup watchdogs, the hung task detector, RCU's stall detector, `panic()`), and keeps the
//! lookalikes out (boot-time `WARNING:` mitigation notices, `BUG:` in the middle of a message).

use super::prefix::{clean_line, split_prefix};
use super::trace::warning_site;
use crate::results::crash::CrashKind;

/// Classifies one console line: the kind of report it is the header of, if any.
///
/// Lines that continue a report (an `Oops:` line after `BUG: kernel NULL pointer dereference`)
/// classify on their own too; [`ConsoleWatcher`](super::ConsoleWatcher) is what knows they belong
/// together.
pub fn classify_line(line: &str) -> Option<CrashKind> {
    let line = clean_line(line);
    classify_text(split_prefix(&line).body.trim())
}

/// Lockdep's report headers (kernel/locking/lockdep.c), after `WARNING: `.
const LOCKDEP_WARNINGS: &[(&str, CrashKind)] = &[
    (
        "possible circular locking dependency detected",
        CrashKind::LockdepCircular,
    ),
    ("inconsistent lock state", CrashKind::LockdepInconsistent),
    ("possible recursive locking detected", CrashKind::Lockdep),
    ("suspicious RCU usage", CrashKind::Lockdep),
    ("bad unlock balance detected!", CrashKind::Lockdep),
    (
        "possible irq lock inversion dependency detected",
        CrashKind::Lockdep,
    ),
    ("held lock freed!", CrashKind::Lockdep),
    (
        "lock held when returning to user space!",
        CrashKind::Lockdep,
    ),
    ("Nested lock was not taken", CrashKind::Lockdep),
    ("bad contention detected!", CrashKind::Lockdep),
    ("chain_key collision", CrashKind::Lockdep),
];

/// Classifies a message (prefix already removed, trimmed).
pub(super) fn classify_text(text: &str) -> Option<CrashKind> {
    if text.starts_with("Kernel panic - not syncing") {
        return Some(CrashKind::Panic);
    }
    // pr_fmt prefixes of kernel/watchdog.c and kernel/rcu/.
    let text = ["NMI watchdog: ", "watchdog: ", "rcu: "]
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix))
        .unwrap_or(text);
    if text.starts_with("BUG: soft lockup") {
        return Some(CrashKind::SoftLockup);
    }
    if text.contains("Watchdog detected hard LOCKUP") {
        return Some(CrashKind::HardLockup);
    }
    if text.starts_with("INFO: task ") && text.contains(" blocked for more than ") {
        return Some(CrashKind::HungTask);
    }
    if is_rcu_stall(text) {
        return Some(CrashKind::RcuStall);
    }
    if let Some(what) = text.strip_prefix("BUG: ") {
        return Some(if what.starts_with("scheduling while atomic") {
            CrashKind::SchedulingWhileAtomic
        } else if what.starts_with("sleeping function called from invalid context") {
            CrashKind::SleepInAtomic
        } else if what.starts_with("Invalid wait context") {
            CrashKind::Lockdep
        } else {
            CrashKind::Bug
        });
    }
    if let Some(what) = text.strip_prefix("WARNING: ") {
        return classify_warning(what);
    }
    // print_lock_invalid_wait_context() prints its header in brackets.
    if text.starts_with("[ BUG: ") {
        return Some(CrashKind::Lockdep);
    }
    if text.starts_with("kernel BUG at ")
        || text.starts_with("Unable to handle kernel ")
        || text.starts_with("UBSAN: ")
    {
        return Some(CrashKind::Bug);
    }
    if is_die_header(text) {
        return Some(CrashKind::Oops);
    }
    None
}

fn is_rcu_stall(text: &str) -> bool {
    (text.starts_with("INFO: rcu") && text.contains("stall"))
        || text.contains("self-detected stall on CPU")
        || text.contains("detected stalls on CPUs/tasks")
        || text.contains("detected expedited stalls on CPUs/tasks")
}

/// `what` follows `WARNING: `. Besides `__warn()` and lockdep, a few boot messages start with
/// `WARNING:` too (mitigation notices); those are not reports.
fn classify_warning(what: &str) -> Option<CrashKind> {
    if let Some((_, kind)) = LOCKDEP_WARNINGS
        .iter()
        .find(|(header, _)| what.starts_with(header))
    {
        return Some(*kind);
    }
    if (what.contains("-safe -> ") && what.contains("-unsafe lock order detected"))
        || what.ends_with(" still has locks held!")
    {
        return Some(CrashKind::Lockdep);
    }
    if what.starts_with("CPU: ") || what.starts_with("at ") || warning_site(what).is_some() {
        return Some(CrashKind::Warning);
    }
    None
}

/// A die() header: x86 `Oops: <what>: 0000 [#1] ...` (since 6.11; `general protection fault:
/// 0000 [#1]` before), arm64 `Internal error: <what>: 0000000096000004 [#1] ...`.
fn is_die_header(text: &str) -> bool {
    if text.starts_with("Oops: ") || text.starts_with("Internal error: ") {
        return true;
    }
    let Some(at) = text.find(" [#") else {
        return false;
    };
    let counter = &text[at + 3..];
    let digits = counter.bytes().take_while(u8::is_ascii_digit).count();
    let code = text[..at].rsplit(": ").next().unwrap_or("");
    digits > 0
        && counter[digits..].starts_with(']')
        && text[..at].contains(": ")
        && !code.is_empty()
        && code.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::console::fixtures::*;
    use crate::vm::console::ConsoleWatcher;

    #[test]
    fn headers_classify_to_their_specific_kinds() {
        use CrashKind::*;
        let cases = [
            ("[   1.0] BUG: kernel NULL pointer dereference, address: 0000000000000000", Some(Bug)),
            ("[   1.0] BUG: unable to handle page fault for address: ffffc90000a3b000", Some(Bug)),
            ("[   1.0] BUG: KASAN: slab-out-of-bounds in foo+0x1/0x2", Some(Bug)),
            ("[   1.0] BUG: using smp_processor_id() in preemptible [00000000] code: a/1", Some(Bug)),
            ("[   1.0] BUG: scheduling while atomic: swapper/0/0/0x00000002", Some(SchedulingWhileAtomic)),
            ("[   1.0] BUG: sleeping function called from invalid context at mm/slub.c:4119", Some(SleepInAtomic)),
            ("[   1.0] [ BUG: Invalid wait context ]", Some(Lockdep)),
            ("[   1.0] WARNING: possible circular locking dependency detected", Some(LockdepCircular)),
            ("[   1.0] WARNING: inconsistent lock state", Some(LockdepInconsistent)),
            ("[   1.0] WARNING: possible recursive locking detected", Some(Lockdep)),
            ("[   1.0] WARNING: suspicious RCU usage", Some(Lockdep)),
            ("[   1.0] WARNING: bad unlock balance detected!", Some(Lockdep)),
            ("[   1.0] WARNING: HARDIRQ-safe -> HARDIRQ-unsafe lock order detected", Some(Lockdep)),
            ("[   1.0] WARNING: lab/12 still has locks held!", Some(Lockdep)),
            ("[   1.0] WARNING: CPU: 1 PID: 42 at kernel/futex/core.c:123 fn+0x12/0x40", Some(Warning)),
            ("[   1.0] INFO: task foo:123 blocked for more than 120 seconds.", Some(HungTask)),
            ("[   1.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [foo:1]", Some(SoftLockup)),
            ("[   1.0] watchdog: Watchdog detected hard LOCKUP on cpu 1", Some(HardLockup)),
            ("[   1.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", Some(RcuStall)),
            ("[   1.0] rcu: INFO: rcu_sched self-detected stall on CPU", Some(RcuStall)),
            ("[   1.0] rcu_sched self-detected stall on CPU", Some(RcuStall)),
            ("[   1.0] rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: { 1-... } 21 jiffies s: 97 root: 0x2/.", Some(RcuStall)),
            ("[   1.0] INFO: rcu_tasks detected stalls on tasks:", Some(RcuStall)),
            ("[   1.0] Kernel panic - not syncing: Fatal exception", Some(Panic)),
            ("[   1.0] Kernel panic - not syncing: Hard LOCKUP", Some(Panic)),
            ("[   1.0] Oops: general protection fault, probably for non-canonical address 0x1: 0000 [#1] SMP", Some(Oops)),
            ("[   1.0] general protection fault: 0000 [#1] SMP", Some(Oops)),
            ("[   1.0] Internal error: Oops: 0000000096000004 [#1] PREEMPT SMP", Some(Oops)),
            ("[   1.0] kernel BUG at mm/slub.c:123!", Some(Bug)),
            ("[   1.0] Unable to handle kernel paging request at virtual address dead000000000108", Some(Bug)),
            ("[   1.0] UBSAN: shift-out-of-bounds in kernel/time/timer.c:12:5", Some(Bug)),
            ("<4>[   1.0] WARNING: CPU: 0 PID: 1 at a.c:1 f+0x1/0x2", Some(Warning)),
            ("[    1.000000][    T1] BUG: scheduling while atomic: a/1/0x2", Some(SchedulingWhileAtomic)),
            ("[    C1] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [a:1]", Some(SoftLockup)),
            ("[   1.0] ---[ end Kernel panic - not syncing: Fatal exception ]---", None),
            ("[   1.0] lab: BUG: counters out of sync", None),
            ("[   1.0] Linux version 6.12.117 (lab@build) #1 SMP PREEMPT_RT", None),
        ];
        for (line, kind) in cases {
            assert_eq!(classify_line(line), kind, "{line}");
        }
    }

    #[test]
    fn lines_that_are_not_reports_produce_nothing() {
        let lines = [
            "[    2.912345] Run /sbin/init as init process",
            "[    3.104512] random: crng init done",
            "[    3.200000] lab-init: warning: WARNING is only a word in this message",
            "lab-suite: futex_errno: warning: slow guest, WARNING: ignore",
            "WARNING: CPU: 0 PID: 1 at this is userspace pretending",
            "[    0.120000] WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks, data leaks possible!",
            "[    0.130000] ------------[ cut here ]------------",
            "[   20.518900] ---[ end trace 0000000000000000 ]---",
            "[   20.520600] ---[ end Kernel panic - not syncing: Fatal exception ]---",
            "[   30.000000] Call Trace:",
            "[   30.000001]  futex_wake+0x1a4/0x2c0",
            "[   30.000002] RIP: 0010:futex_wake_mark+0x12/0x40",
            "[   40.000000] rcu: rcu_preempt kthread starved for 10502 jiffies!",
            "[   41.000000] INFO: task lab-hold:412 is blocked on a mutex likely owned by task lab-other:413.",
            "[   42.000000] systemd[1]: BUG: not at the start of the message",
            "[   42.000001] [ 12.5] not a printk prefix",
        ];
        let mut watcher = ConsoleWatcher::new();
        for line in lines {
            assert!(watcher.feed_line(line).is_empty(), "{line}");
        }
        assert!(watcher.finish().is_empty());
        assert!(watcher.reports().is_empty());
        for line in lines {
            if !line.starts_with("WARNING: CPU") {
                assert_eq!(classify_line(line), None, "{line}");
            }
        }
        let (events, reports) = watch(CLEAN_BOOT);
        assert!(events.is_empty() && reports.is_empty());
    }
}
