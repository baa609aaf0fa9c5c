//! Which function names make a fingerprint. Names are normalised (compiler clone suffixes
//! dropped, per-arch syscall wrappers mapped to `sys_<name>`), and the tables here list the
//! frames that say nothing about the culprit: syscall, interrupt and boot entry code, which
//! differs between arches, and the frames at the top of a trace that only say how a report was
//! raised or printed, or (for reports raised while a task waits) the scheduler, locking and
//! allocation code the culprit called into.
//!
//! A change to a table changes fingerprints, and with them the ids that results recorded before
//! the change refer to; the fixture tests here show which crashes it moves.

use crate::results::crash::CrashKind;

/// Per-arch syscall wrapper prefixes (`SYSCALL_DEFINE` in arch/*/include/asm/syscall_wrapper.h
/// and include/linux/syscalls.h).
const SYSCALL_WRAPPER_PREFIXES: &[&str] = &[
    "__x64_",
    "__ia32_",
    "__arm64_",
    "__riscv_",
    "__s390x_",
    "__s390_",
    "__powerpc_",
    "__se_",
    "__do_",
];

/// Drops compiler clone suffixes (`.isra.0`, `.constprop.0`, `.part.0`, `.cold`, `.llvm.123`;
/// C names have no dots) and maps syscall wrappers to `sys_<name>`.
pub(super) fn normalize_frame(name: &str) -> String {
    let base = name.find('.').map_or(name, |dot| &name[..dot]);
    for prefix in SYSCALL_WRAPPER_PREFIXES {
        if let Some(rest) = base.strip_prefix(prefix) {
            if rest.starts_with("sys_") || rest.starts_with("compat_sys_") {
                return rest.to_owned();
            }
        }
    }
    base.to_owned()
}

/// Syscall, interrupt, kthread and boot entry code: the same for every crash on an arch and
/// different between arches, so it is dropped wherever it appears.
const ENTRY_FRAMES: &[&str] = &[
    "do_syscall_64",
    "do_syscall_x64",
    "do_syscall_32_irqs_on",
    "do_fast_syscall_32",
    "__do_fast_syscall_32",
    "do_int80_syscall_32",
    "do_SYSENTER_32",
    "x64_sys_call",
    "ia32_sys_call",
    "invoke_syscall",
    "do_el0_svc",
    "do_el0_svc_compat",
    "common_interrupt",
    "__common_interrupt",
    "irq_exit_rcu",
    "__irq_exit_rcu",
    "irqentry_exit",
    "call_on_irq_stack",
    "do_interrupt_handler",
    "el1_interrupt",
    "el0_interrupt",
    "gic_handle_irq",
    "generic_handle_domain_irq",
    "handle_percpu_devid_irq",
    "arch_timer_handler_virt",
    "arch_timer_handler_phys",
    "kthread",
    "worker_thread",
    "process_one_work",
    "start_kernel",
    "x86_64_start_kernel",
    "x86_64_start_reservations",
    "common_startup_64",
    "start_secondary",
    "secondary_start_kernel",
    "rest_init",
    "arch_call_rest_init",
    "cpu_startup_entry",
    "__primary_switched",
    "__secondary_switched",
];

const ENTRY_PREFIXES: &[&str] = &[
    "entry_SYSCALL",
    "entry_SYSENTER",
    "entry_INT80",
    "el0_svc",
    "el0t_",
    "el1h_64_irq",
    "__el0_irq",
    "asm_sysvec_",
    "sysvec_",
    "__sysvec_",
    "asm_common_interrupt",
    "ret_from_fork",
    "secondary_startup_64",
    "__pfx_",
];

pub(super) fn is_entry_frame(name: &str) -> bool {
    ENTRY_FRAMES.contains(&name) || ENTRY_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Frames at the top of a trace that only say how the report was raised or printed: stack
/// dumping, WARN/BUG trap handling, fault handling that ends in die(), panic(), the
/// might_sleep() and scheduler checks, sanitizer reporting, and the timer/NMI machinery a
/// watchdog or stall detector reports from.
const REPORTING_FRAMES: &[&str] = &[
    "dump_stack",
    "dump_stack_lvl",
    "show_stack",
    "dump_backtrace",
    "show_regs",
    "__show_regs",
    "show_trace_log_lvl",
    "sched_show_task",
    "arch_stack_walk",
    "__warn",
    "warn_slowpath_fmt",
    "warn_slowpath_null",
    "__warn_printk",
    "report_bug",
    "handle_bug",
    "exc_invalid_op",
    "asm_exc_invalid_op",
    "do_trap",
    "do_error_trap",
    "die",
    "__die",
    "__die_body",
    "die_addr",
    "oops_end",
    "exc_general_protection",
    "asm_exc_general_protection",
    "page_fault_oops",
    "kernelmode_fixup_or_oops",
    "__bad_area_nosemaphore",
    "bad_area_nosemaphore",
    "do_user_addr_fault",
    "exc_page_fault",
    "asm_exc_page_fault",
    "bug_handler",
    "bug_brk_handler",
    "brk_handler",
    "call_break_hook",
    "call_el1_break_hook",
    "do_debug_exception",
    "el1_dbg",
    "el1_brk64",
    "el1_undef",
    "do_el1_undef",
    "el1_abort",
    "el1_da",
    "do_mem_abort",
    "do_translation_fault",
    "do_page_fault",
    "__do_kernel_fault",
    "die_kernel_fault",
    "el1h_64_sync_handler",
    "el1h_64_sync",
    "panic",
    "vpanic",
    "nmi_panic",
    "check_panic_on_warn",
    "__might_resched",
    "__might_sleep",
    "__might_fault",
    "might_fault",
    "__schedule_bug",
    "schedule_debug",
    "check_preemption_disabled",
    "debug_smp_processor_id",
    "__this_cpu_preempt_check",
    "nmi_cpu_backtrace",
    "nmi_cpu_backtrace_handler",
    "nmi_trigger_cpumask_backtrace",
    "arch_trigger_cpumask_backtrace",
    "trigger_single_cpu_backtrace",
    "dump_cpu_task",
    "ipi_cpu_backtrace",
    "do_handle_IPI",
    "ipi_handler",
    "nmi_handle",
    "default_do_nmi",
    "exc_nmi",
    "asm_exc_nmi",
    "end_repeat_nmi",
    "rcu_dump_cpu_stacks",
    "check_cpu_stall",
    "rcu_pending",
    "rcu_sched_clock_irq",
    "update_process_times",
    "tick_nohz_handler",
    "tick_sched_handle",
    "tick_sched_timer",
    "tick_handle_periodic",
    "tick_periodic",
    "watchdog_timer_fn",
    "watchdog_hardlockup_check",
    "watchdog_overflow_callback",
    "watchdog_buddy_check_hardlockup",
    "__hrtimer_run_queues",
    "hrtimer_interrupt",
    "hrtimer_run_queues",
    "__perf_event_overflow",
    "perf_event_overflow",
    "handle_pmi_common",
    "intel_pmu_handle_irq",
    "perf_event_nmi_handler",
    "debug_check_no_locks_freed",
    "debug_check_no_locks_held",
];

const REPORTING_PREFIXES: &[&str] = &[
    "print_",
    "dump_stack",
    "lockdep_",
    "kasan_",
    "__kasan_",
    "__asan_",
    "__hwasan_",
    "__ubsan_",
    "ubsan_",
    "kfence_",
    "kmsan_",
    "__msan_",
];

/// Scheduler, sleeping, locking and allocation primitives: the top of the stack of a task that
/// blocks, sleeps or takes a lock, above the code that asked for it.
const WAIT_FRAMES: &[&str] = &[
    "__switch_to",
    "__switch_to_asm",
    "cpu_switch_to",
    "context_switch",
    "down",
    "up",
    "__up_read",
    "__up_write",
    "msleep",
    "msleep_interruptible",
    "might_alloc",
    "slab_pre_alloc_hook",
    "fs_reclaim_acquire",
    "__fs_reclaim_acquire",
    "flush_work",
    "__flush_work",
    "__local_bh_disable_ip",
    "raw_irqentry_exit_cond_resched",
];

const WAIT_PREFIXES: &[&str] = &[
    "__schedule",
    "schedule",
    "preempt_schedule",
    "io_schedule",
    "__cond_resched",
    "_cond_resched",
    "rt_spin_",
    "rt_read_",
    "rt_write_",
    "rt_mutex",
    "__rt_mutex",
    "rtlock_",
    "rwbase_",
    "rwsem_",
    "__rwsem",
    "mutex_lock",
    "__mutex_lock",
    "mutex_unlock",
    "__mutex_unlock",
    "_raw_spin_",
    "_raw_read_",
    "_raw_write_",
    "__raw_spin_",
    "do_raw_spin_",
    "do_raw_read_",
    "do_raw_write_",
    "queued_spin_",
    "queued_read_",
    "queued_write_",
    "down_",
    "__down",
    "up_",
    "percpu_down_",
    "__percpu_down_",
    "wait_for_completion",
    "__wait_for_common",
    "wait_for_common",
    "do_wait_for_common",
    "__wait_on_bit",
    "out_of_line_wait_on_bit",
    "bit_wait",
    "folio_wait",
    "__folio_lock",
    "__lock_page",
    "usleep_range",
    "synchronize_rcu",
    "synchronize_srcu",
    "__synchronize_srcu",
    "kmalloc",
    "__kmalloc",
    "kmem_cache_alloc",
    "__kmem_cache_alloc",
    "kvmalloc",
    "__kvmalloc",
    "__vmalloc",
    "__alloc_pages",
    "alloc_pages",
    "__alloc_frozen_pages",
];

/// lockdep's own machinery between the report and the lock operation.
const LOCKDEP_PREFIXES: &[&str] = &["check_", "mark_", "validate_", "lock_", "__lock_", "debug_"];

/// Reports raised while a task takes a lock, sleeps or waits: their stacks start in the
/// scheduler, locking or allocation code, and the culprit is whoever called into it.
fn starts_in_wait_code(kind: CrashKind) -> bool {
    kind.is_lockdep()
        || matches!(
            kind,
            CrashKind::SchedulingWhileAtomic
                | CrashKind::SleepInAtomic
                | CrashKind::HungTask
                | CrashKind::RcuStall
        )
}

pub(super) fn is_reporting_frame(kind: CrashKind, name: &str) -> bool {
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
    REPORTING_FRAMES.contains(&name)
        || starts(REPORTING_PREFIXES)
        || (starts_in_wait_code(kind) && (WAIT_FRAMES.contains(&name) || starts(WAIT_PREFIXES)))
        || (kind.is_lockdep() && starts(LOCKDEP_PREFIXES))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::crash::{CrashReport, Fingerprint};
    use crate::vm::console::fixtures::*;

    #[test]
    fn the_same_crash_on_x86_64_and_arm64_has_the_same_fingerprint() {
        let pairs = [
            (X86_WARNING, ARM64_WARNING),
            (X86_NULL_DEREF, ARM64_NULL_DEREF),
            (X86_KERNEL_BUG, ARM64_KERNEL_BUG),
            (X86_LOCKDEP_CIRCULAR, ARM64_LOCKDEP_CIRCULAR),
            (X86_LOCKDEP_INCONSISTENT, ARM64_LOCKDEP_INCONSISTENT),
            (X86_SCHED_ATOMIC, ARM64_SCHED_ATOMIC),
            (X86_SLEEP_ATOMIC, ARM64_SLEEP_ATOMIC),
            (X86_HUNG_TASK, ARM64_HUNG_TASK),
            (X86_SOFT_LOCKUP, ARM64_SOFT_LOCKUP),
            (X86_RCU_STALL, ARM64_RCU_STALL),
        ];
        for (x86, arm64) in pairs {
            let x86 = watch(x86).1;
            let arm64 = watch(arm64).1;
            let ids = |reports: &[CrashReport]| {
                reports
                    .iter()
                    .map(|r| r.fingerprint.id())
                    .collect::<Vec<_>>()
            };
            assert_eq!(ids(&x86), ids(&arm64), "{x86:#?}\n{arm64:#?}");
            // Different runs, so the excerpts themselves differ.
            assert_ne!(x86[0].excerpt, arm64[0].excerpt);
        }
        // The arm64 guest also panicked (hardlockup_panic); the lockup itself is the same.
        assert_eq!(
            watch(X86_HARD_LOCKUP).1[0].fingerprint,
            watch(ARM64_HARD_LOCKUP).1[0].fingerprint
        );
    }

    /// Rewrites what changes between runs and builds: timestamps, `0x` numbers (offsets,
    /// sizes, addresses), bare hex words of 8+ digits (registers, stack addresses) and PIDs.
    fn perturb(log: &str) -> String {
        fn hex(c: char) -> char {
            c.to_digit(16)
                .and_then(|v| char::from_digit((v + 5) % 16, 16))
                .unwrap_or(c)
        }
        fn dec(c: char) -> char {
            c.to_digit(10)
                .and_then(|v| char::from_digit((v + 3) % 10, 10))
                .unwrap_or(c)
        }
        let word_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let chars: Vec<char> = log.chars().collect();
        let mut out = String::with_capacity(log.len());
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let prev_is_word = i > 0 && word_char(chars[i - 1]);
            let at_line_start = i == 0 || chars[i - 1] == '\n';
            let rest: String = chars[i..chars.len().min(i + 6)].iter().collect();
            if at_line_start && c == '[' {
                // The timestamp.
                while i < chars.len() && chars[i] != ']' {
                    out.push(dec(chars[i]));
                    i += 1;
                }
                continue;
            }
            if !prev_is_word && rest.starts_with("0x") {
                out.push_str("0x");
                i += 2;
                while i < chars.len() && chars[i].is_ascii_hexdigit() {
                    out.push(hex(chars[i]));
                    i += 1;
                }
                continue;
            }
            if !prev_is_word && c.is_ascii_hexdigit() {
                let end = (i..chars.len())
                    .find(|&j| !chars[j].is_ascii_hexdigit())
                    .unwrap_or(chars.len());
                let followed_by_word = end < chars.len() && word_char(chars[end]);
                if end - i >= 8 && !followed_by_word {
                    out.extend(chars[i..end].iter().map(|&c| hex(c)));
                    i = end;
                    continue;
                }
            }
            if rest.starts_with("PID: ") || rest.starts_with("pid: ") || rest.starts_with("pid:") {
                let skip = if rest.starts_with("pid:") && !rest.starts_with("pid: ") {
                    4
                } else {
                    5
                };
                out.extend(&chars[i..i + skip]);
                i += skip;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    out.push(dec(chars[i]));
                    i += 1;
                }
                continue;
            }
            out.push(c);
            i += 1;
        }
        out
    }

    #[test]
    fn addresses_offsets_timestamps_and_pids_do_not_change_the_fingerprint() {
        for (name, log, expected) in expectations() {
            let moved = perturb(log);
            if !expected.is_empty() {
                assert_ne!(moved, log, "fixture {name}: perturb changed nothing");
            }
            let before = watch(log).1;
            let after = watch(&moved).1;
            assert_eq!(before.len(), after.len(), "fixture {name}");
            for (b, a) in before.iter().zip(&after) {
                assert_eq!(b.fingerprint, a.fingerprint, "fixture {name}");
                assert_eq!(b.fingerprint.id(), a.fingerprint.id(), "fixture {name}");
            }
        }
        // The perturbation does reach the frames, the timestamps and the PIDs.
        let moved = perturb(X86_WARNING);
        for (after, before) in moved.lines().zip(X86_WARNING.lines()) {
            if before.starts_with('[') {
                assert_ne!(after, before);
            }
        }
        assert!(!moved.contains("futex_wake+0x1a4/0x2c0"));
        assert!(!moved.contains("PID: 42 "));
    }

    #[test]
    fn a_different_call_path_gives_a_different_fingerprint() {
        let original = only_report(X86_WARNING).fingerprint;
        let other_path =
            only_report(&X86_WARNING.replace(" do_futex+", " futex_requeue+")).fingerprint;
        assert_eq!(
            other_path.to_string(),
            "warning:futex_wake_mark|futex_wake|futex_requeue|sys_futex"
        );
        assert_ne!(original.id(), other_path.id());

        let other_site =
            only_report(&X86_WARNING.replace("futex_wake_mark+", "futex_wake_op+")).fingerprint;
        assert_ne!(original.id(), other_site.id());

        // The same frames under another kind are another crash.
        let as_bug = Fingerprint {
            kind: CrashKind::Bug,
            frames: original.frames.clone(),
        };
        assert_ne!(original.id(), as_bug.id());
    }
}
