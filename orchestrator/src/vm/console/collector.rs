//! The report being read: the lines it collects after its header, where its first call trace
//! starts and ends (`</TASK>` on x86, the first line that cannot be a frame on arm64), whether an
//! end marker is still to come, and, once complete, the crash report with its fingerprint frames.
//!
//! The console is shared, so the collector tolerates what else is printed on it: lines from another
//! printk caller are left out, and a few stray kernel lines inside an arm64 trace do not end it.

use super::frames::{is_entry_frame, is_reporting_frame, normalize_frame};
use super::trace::{
    ends_trace, is_call_trace_header, is_end_marker, regs_frame, trace_line, warning_site,
    TraceLine,
};
use crate::results::crash::{CrashKind, CrashReport, Fingerprint};

/// How many kernel lines that are not frames an unbracketed (arm64-style) call trace may contain
/// before it is taken to have ended: other CPUs' messages get interleaved into a trace.
const INTERLEAVE_TOLERANCE: usize = 2;

/// How many lines after its call trace a report with an end marker may take to print it
/// (x86 WARN prints the five `irq event stamp` lines in between).
const TRAILER_LINES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Continue,
    Complete,
    /// Complete, dropping the lines read after the trace ended.
    CompleteTrimmed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trace {
    /// Before `Call Trace:`: registers, lockdep chains, task state.
    Before,
    /// In the first call trace. `depth` counts open `<IRQ>`/`<TASK>`-style sections (x86),
    /// `strays` the consecutive non-frame lines outside them.
    Inside {
        depth: u32,
        frames: usize,
        strays: usize,
    },
    /// After the first call trace, waiting for the end marker.
    After { lines: usize },
}

/// The report being read.
#[derive(Debug)]
pub(super) struct Collector {
    pub(super) kind: CrashKind,
    title: String,
    first_line_no: u64,
    lines: Vec<String>,
    /// How many of `lines` to keep if the lines after the trace are dropped.
    keep: usize,
    caller: Option<String>,
    expects_end_marker: bool,
    /// The function named in a WARNING header.
    site_frame: Option<String>,
    /// The function in the register dump (`RIP:` on x86, `pc :` on arm64).
    regs_frame: Option<String>,
    trace: Trace,
    /// Reliable frames of the first call trace, normalised, innermost first.
    frames: Vec<String>,
    /// The `? fn` guesses of the same trace: used only when it has no reliable frame at
    /// all, as with x86's guess unwinder (CONFIG_UNWINDER_GUESS), where every frame is one.
    guessed: Vec<String>,
}

impl Collector {
    pub(super) fn start(
        kind: CrashKind,
        title: &str,
        line: &str,
        caller: Option<&str>,
        first_line_no: u64,
    ) -> Self {
        Self {
            kind,
            title: title.to_owned(),
            first_line_no,
            lines: vec![line.to_owned()],
            keep: 1,
            caller: caller.map(str::to_owned),
            // `kernel BUG at` is always followed by a die() and its end marker.
            expects_end_marker: has_end_marker(kind) || title.starts_with("kernel BUG at "),
            site_frame: match kind {
                CrashKind::Warning => warning_site(title),
                _ => None,
            },
            regs_frame: None,
            trace: Trace::Before,
            frames: Vec::new(),
            guessed: Vec::new(),
        }
    }

    /// Whether a header belongs to this report rather than starting a new one: the die()
    /// header (`Oops: ...`, arm64 `Internal error: ...`) that follows the `BUG: ...` or
    /// `Unable to handle kernel ...` line describing the fault.
    pub(super) fn absorbs(&self, kind: CrashKind) -> bool {
        kind == CrashKind::Oops && self.kind == CrashKind::Bug && self.trace == Trace::Before
    }

    pub(super) fn absorb(&mut self, line: &str, cap: usize) -> Step {
        self.expects_end_marker = true;
        self.lines.push(line.to_owned());
        self.keep = self.lines.len();
        if self.lines.len() >= cap {
            Step::Complete
        } else {
            Step::Continue
        }
    }

    /// Lines from another printk caller interleave with the report on a busy console.
    pub(super) fn is_foreign(&self, caller: Option<&str>) -> bool {
        if !printed_by_one_context(self.kind) {
            return false;
        }
        match (self.caller.as_deref(), caller) {
            (Some(ours), Some(theirs)) => ours != theirs,
            _ => false,
        }
    }

    pub(super) fn push(&mut self, line: &str, text: &str, cap: usize) -> Step {
        self.lines.push(line.to_owned());
        if is_end_marker(text) {
            self.keep = self.lines.len();
            return Step::Complete;
        }
        let step = self.advance(text);
        if step == Step::Continue && self.lines.len() >= cap {
            return Step::Complete;
        }
        step
    }

    fn advance(&mut self, text: &str) -> Step {
        let len = self.lines.len();
        match self.trace {
            Trace::Before => {
                self.keep = len;
                if is_call_trace_header(text) {
                    self.trace = Trace::Inside {
                        depth: 0,
                        frames: 0,
                        strays: 0,
                    };
                } else if self.regs_frame.is_none() {
                    self.regs_frame = regs_frame(text);
                }
                Step::Continue
            }
            Trace::Inside {
                mut depth,
                mut frames,
                mut strays,
            } => {
                match trace_line(text) {
                    TraceLine::Frame(name) => {
                        self.frames.push(normalize_frame(name));
                        frames += 1;
                        strays = 0;
                        self.keep = len;
                    }
                    TraceLine::Guess(name) => {
                        self.guessed.push(normalize_frame(name));
                        frames += 1;
                        strays = 0;
                        self.keep = len;
                    }
                    TraceLine::Unnamed => {
                        frames += 1;
                        strays = 0;
                        self.keep = len;
                    }
                    TraceLine::Open => {
                        depth += 1;
                        strays = 0;
                        self.keep = len;
                    }
                    TraceLine::Close(tag) => {
                        self.keep = len;
                        // The task stack is always the last one x86 prints
                        // (show_trace_log_lvl() in arch/x86/kernel/dumpstack.c).
                        if tag == "TASK" {
                            return self.trace_ended();
                        }
                        depth = depth.saturating_sub(1);
                        strays = 0;
                    }
                    TraceLine::Other if depth > 0 => {
                        // Inside an x86 section: the user-mode register dump at the end of
                        // a syscall's stack, or an interrupt's registers.
                        self.keep = len;
                    }
                    TraceLine::Other => {
                        if is_call_trace_header(text) || (frames > 0 && ends_trace(text)) {
                            return self.trace_ended();
                        }
                        strays += 1;
                        if strays > INTERLEAVE_TOLERANCE {
                            return self.trace_ended();
                        }
                    }
                }
                self.trace = Trace::Inside {
                    depth,
                    frames,
                    strays,
                };
                Step::Continue
            }
            Trace::After { lines } => {
                if lines + 1 > TRAILER_LINES {
                    return Step::CompleteTrimmed;
                }
                self.trace = Trace::After { lines: lines + 1 };
                Step::Continue
            }
        }
    }

    fn trace_ended(&mut self) -> Step {
        self.trace = Trace::After { lines: 0 };
        if self.expects_end_marker {
            Step::Continue
        } else {
            Step::CompleteTrimmed
        }
    }

    pub(super) fn into_report(mut self, trim: bool, max_frames: usize) -> CrashReport {
        let stray_tail = matches!(self.trace, Trace::Inside { strays, .. } if strays > 0);
        if trim || stray_tail {
            self.lines.truncate(self.keep.max(1));
        }
        let fingerprint = Fingerprint {
            kind: self.kind,
            frames: self.fingerprint_frames(max_frames),
        };
        CrashReport {
            kind: self.kind,
            title: self.title,
            excerpt: self.lines.join("\n"),
            fingerprint,
            first_line_no: self.first_line_no,
        }
    }

    /// The faulting site first (WARNING header, then register dump), then the call trace
    /// without the frames that only say how the report was raised or how the CPU got into
    /// the kernel.
    fn fingerprint_frames(&self, max_frames: usize) -> Vec<String> {
        let kind = self.kind;
        let source = if self.frames.is_empty() {
            &self.guessed
        } else {
            &self.frames
        };
        let trace = source
            .iter()
            .filter(|name| !is_entry_frame(name))
            .skip_while(|name| is_reporting_frame(kind, name));
        let mut frames: Vec<String> = Vec::new();
        for name in self.site_frame.iter().chain(&self.regs_frame).chain(trace) {
            if frames.len() >= max_frames {
                break;
            }
            // The faulting function is both in the register dump and first in the arm64
            // trace; inlining can also repeat a name.
            if frames.last() != Some(name) {
                frames.push(name.clone());
            }
        }
        frames
    }
}

/// Whether the whole report is printed from one context. RCU stalls and hard lockups ask other
/// CPUs for their backtraces, which those CPUs print from NMI (or IPI) context, so their lines
/// carry a different printk caller id than the header.
fn printed_by_one_context(kind: CrashKind) -> bool {
    !matches!(kind, CrashKind::RcuStall | CrashKind::HardLockup)
}

/// Reports that the kernel closes with `---[ end trace ... ]---` or
/// `---[ end Kernel panic ... ]---` a few lines after their call trace
/// (`print_oops_end_marker()` in kernel/panic.c, and the end of `panic()`).
fn has_end_marker(kind: CrashKind) -> bool {
    matches!(
        kind,
        CrashKind::Warning | CrashKind::Oops | CrashKind::Panic
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::console::fixtures::*;
    use crate::vm::console::prefix::split_prefix;
    use crate::vm::console::{ConsoleWatcher, WatchEvent};

    #[test]
    fn reports_with_an_end_marker_run_to_it() {
        for log in [
            X86_WARNING,
            ARM64_WARNING,
            X86_GPF,
            ARM64_UNDEF,
            X86_PANIC,
            ARM64_PANIC,
        ] {
            let report = only_report(log);
            let last = report.excerpt.lines().last().unwrap_or("");
            assert!(
                split_prefix(last).body.starts_with("---[ end "),
                "{} ends with {last:?}",
                report.title
            );
        }
        // The x86 WARN trailer between </TASK> and the marker stays in the excerpt.
        assert!(only_report(X86_WARNING)
            .excerpt
            .contains("softirqs last disabled at (1391)"));
    }

    #[test]
    fn reports_without_end_marker_complete_when_their_trace_ends() {
        // x86: at </TASK>; the lines after it are not part of the report.
        let mut watcher = ConsoleWatcher::new();
        let mut completed_at = None;
        for line in X86_LOCKDEP_CIRCULAR.lines() {
            for event in watcher.feed_line(line) {
                if let WatchEvent::ReportComplete(_) = event {
                    completed_at = Some(line.to_owned());
                }
            }
        }
        let completed_at = completed_at.expect("the report completes");
        assert_eq!(split_prefix(&completed_at).body, " </TASK>");
        assert!(watcher.reports()[0].excerpt.ends_with("</TASK>"));

        // arm64: at the first line that cannot be part of a trace.
        let report = only_report(ARM64_HUNG_TASK);
        assert!(
            report.excerpt.ends_with("el0t_64_sync+0x198/0x19c"),
            "{}",
            report.excerpt
        );
    }

    #[test]
    fn interleaved_lines_inside_a_trace_do_not_end_it() {
        // x86: a kernel line from elsewhere and a userspace line inside <TASK>.
        let log = X86_WARNING.replace(
            "]  futex_wake+0x1a4/0x2c0\n",
            "]  futex_wake+0x1a4/0x2c0\n[   12.345990] random: crng init done\nlab-suite: futex_errno: warning: slow\n",
        );
        assert_ne!(log, X86_WARNING);
        let report = only_report(&log);
        assert_eq!(
            frames(&report),
            ["futex_wake_mark", "futex_wake", "do_futex", "sys_futex"]
        );
        assert!(!report.excerpt.contains("lab-suite"));

        // arm64: no section markers, so interleaved lines are told apart by count.
        let log = ARM64_LOCKDEP_CIRCULAR.replace(
            "]  lab_path_ab+0x30/0x70 [lab_locks]\n",
            "]  lab_path_ab+0x30/0x70 [lab_locks]\n[   41.221701] virtio_net virtio0 eth0: link up\n[   41.221702] random: crng init done\nlab-suite: pipe_read: warning: slow\n",
        );
        assert_ne!(log, ARM64_LOCKDEP_CIRCULAR);
        let report = only_report(&log);
        assert_eq!(
            frames(&report),
            [
                "lab_path_ab",
                "lab_locks_write",
                "full_proxy_write",
                "vfs_write"
            ]
        );
        assert!(report.excerpt.contains("el0t_64_sync+0x198/0x19c"));

        // With printk caller ids, other callers' lines are left out of the excerpt.
        let report = only_report(X86_HUNG_TASK);
        assert!(!report.excerpt.contains("lab-noise"), "{}", report.excerpt);
        assert!(report
            .excerpt
            .contains("lab_hold_ioctl+0x38/0x80 [lab_hold]"));
    }

    #[test]
    fn a_new_header_in_the_middle_of_a_trace_ends_the_report() {
        let log = format!(
            "{}[   12.346001] BUG: scheduling while atomic: futex-stress/42/0x00000002\n",
            up_to_line_with(X86_WARNING, "]  do_futex+")
        );
        let (events, reports) = watch(&log);
        let kinds: Vec<String> = events
            .iter()
            .map(|e| match e {
                WatchEvent::ReportStarted(kind) => format!("started {kind}"),
                WatchEvent::ReportComplete(r) => format!("complete {}", r.kind),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "started warning",
                "complete warning",
                "started scheduling-while-atomic",
                "complete scheduling-while-atomic"
            ]
        );
        assert_eq!(frames(&reports[0]), ["futex_wake_mark", "futex_wake"]);
        assert!(!reports[0].excerpt.contains("scheduling while atomic"));
    }

    /// x86 built with the guess unwinder prints every frame as `? fn`: the fingerprint falls
    /// back to those guesses rather than coming out empty (seen on the lab's own tinyconfig
    /// kernel before it switched to ORC).
    #[test]
    fn guess_unwinder_traces_still_fingerprint() {
        let log = "[    1.654000] sysrq: Trigger a crash
[    1.654100] Kernel panic - not syncing: sysrq triggered crash
[    1.654200] CPU: 1 UID: 0 PID: 120 Comm: fault_panic Not tainted 6.12.117 #1
[    1.654300] Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS rel-1.16.2
[    1.654639] Call Trace:
[    1.654920]  <TASK>
[    1.654962]  ? panic+0xff/0x297
[    1.655057]  ? sysrq_handle_crash+0x11/0x11
[    1.655072]  ? __handle_sysrq+0x96/0x115
[    1.655082]  ? write_sysrq_trigger+0x4c/0x64
[    1.655098]  ? proc_reg_write+0x61/0x73
[    1.655196]  </TASK>
[    1.656646] Kernel Offset: disabled";
        let mut w = ConsoleWatcher::new();
        for l in log.lines() {
            w.feed_line(l);
        }
        w.finish();
        let r = w.reports().first().expect("a panic report");
        assert_eq!(r.kind, CrashKind::Panic);
        assert!(
            r.fingerprint
                .frames
                .contains(&"sysrq_handle_crash".to_owned()),
            "{}",
            r.fingerprint
        );
    }
}
