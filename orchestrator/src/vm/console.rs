//! Serial-console watcher: finds kernel reports (oopses, BUGs, WARNINGs, lockdep splats,
//! lockups, stalls, panics) in a guest's console log, classifies them and fingerprints them.
//!
//! The VM runner writes the console to a file and feeds each line to a [`ConsoleWatcher`] as it
//! arrives. The watcher says when a report starts, so the runner can stop waiting on a guest that
//! is about to die, and hands back a [`CrashReport`] when the report's trace has been read.
//!
//! The [`Fingerprint`] is what lets `lab` say "the same crash" across runs, kernel builds and
//! architectures: the report kind plus the first few function names of the culprit's call path.
//! Everything that changes between builds and runs is dropped (addresses, `+0x1a4/0x2c0`
//! offsets, module names, compiler clone suffixes like `.isra.0`, timestamps, PIDs), and so is
//! everything that only says how the kernel noticed or printed the problem (`dump_stack_lvl`,
//! `__warn`, lockdep's `check_noncircular`, ...), the syscall and interrupt entry code that
//! differs between x86_64 and arm64, and the per-arch syscall wrapper names
//! (`__x64_sys_futex` and `__arm64_sys_futex` both become `sys_futex`).
//!
//! A report runs from its header to the end of its first call trace (`</TASK>` on x86, the
//! first line that cannot be a frame on arm64), or to `---[ end trace ]---` for the kinds that
//! print one; the next report header, a line cap, or the end of the log also end it. The
//! console is shared, so lines that cannot be part of the report are skipped rather than
//! ending it: lines without a printk prefix once the kernel prints them (the guest's own
//! output), lines from another printk caller id (CONFIG_PRINTK_CALLER), and a few stray kernel
//! lines inside an arm64 trace.
//!
//! This module is pure and synchronous: it knows the printk formats of Linux 6.x on x86_64 and
//! arm64, and nothing about files, processes or time, so it is tested on recorded logs
//! (`orchestrator/tests/fixtures/console/`).

use std::borrow::Cow;

use crate::results::crash::{CrashKind, CrashReport, Fingerprint};

/// What [`ConsoleWatcher::feed_line`] and [`ConsoleWatcher::finish`] report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A report header was just seen; its trace is still being read.
    ReportStarted(CrashKind),
    /// A report has been read to its end.
    ReportComplete(CrashReport),
}

/// Limits of the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatcherConfig {
    /// How many function names a fingerprint keeps.
    pub max_frames: usize,
    /// A report ends after this many lines even if its trace has not ended.
    pub max_report_lines: usize,
    /// The same for lockdep reports, which print the whole dependency chain (a dozen frames per
    /// link) before the backtrace the fingerprint is taken from.
    pub max_lockdep_report_lines: usize,
}

impl WatcherConfig {
    fn line_cap(&self, kind: CrashKind) -> usize {
        let cap = if kind.is_lockdep() {
            self.max_lockdep_report_lines
        } else {
            self.max_report_lines
        };
        cap.max(1)
    }
}

impl Default for WatcherConfig {
    fn default() -> Self {
        Self {
            max_frames: 4,
            max_report_lines: 120,
            max_lockdep_report_lines: 400,
        }
    }
}

/// How many kernel lines that are not frames an unbracketed (arm64-style) call trace may contain
/// before it is taken to have ended: other CPUs' messages get interleaved into a trace.
const INTERLEAVE_TOLERANCE: usize = 2;

/// How many lines after its call trace a report with an end marker may take to print it
/// (x86 WARN prints the five `irq event stamp` lines in between).
const TRAILER_LINES: usize = 16;

/// Watches a console log line by line for kernel reports.
#[derive(Debug, Default)]
pub struct ConsoleWatcher {
    config: WatcherConfig,
    line_no: u64,
    /// Set once a line with a printk timestamp or caller id has been seen.
    kernel_prefixes_seen: bool,
    current: Option<Collector>,
    reports: Vec<CrashReport>,
}

impl ConsoleWatcher {
    /// A watcher with the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// A watcher with the given limits.
    pub fn with_config(config: WatcherConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Feeds one console line, without its newline. Returns `ReportStarted` on a report's
    /// header line, and `ReportComplete` on the line that ends it (which may be the header of
    /// the next one, so both can come back together).
    pub fn feed_line(&mut self, line: &str) -> Vec<WatchEvent> {
        self.line_no += 1;
        let line = clean_line(line);
        let prefixed = split_prefix(&line);
        let from_kernel = prefixed.timestamped || prefixed.caller.is_some();
        if from_kernel {
            self.kernel_prefixes_seen = true;
        } else if self.kernel_prefixes_seen {
            // Once the kernel stamps its lines, an unstamped one was written to the serial
            // port by someone else: the guest's init and tests print there too.
            return Vec::new();
        }
        let text = prefixed.body.trim();
        let mut events = Vec::new();

        if let Some(kind) = classify_text(text) {
            let cap = self.config.line_cap(kind);
            if let Some(current) = self.current.as_mut() {
                if current.absorbs(kind) {
                    if current.absorb(&line, cap) == Step::Complete {
                        events.extend(self.complete(false));
                    }
                    return events;
                }
                events.extend(self.complete(false));
            }
            self.current = Some(Collector::start(
                kind,
                text,
                &line,
                prefixed.caller,
                self.line_no,
            ));
            events.push(WatchEvent::ReportStarted(kind));
            return events;
        }

        let Some(current) = self.current.as_mut() else {
            return events;
        };
        if current.is_foreign(prefixed.caller) {
            return events;
        }
        let cap = self.config.line_cap(current.kind);
        match current.push(&line, text, cap) {
            Step::Continue => {}
            Step::Complete => events.extend(self.complete(false)),
            Step::CompleteTrimmed => events.extend(self.complete(true)),
        }
        events
    }

    /// Ends the log: completes the report still being read, if any.
    pub fn finish(&mut self) -> Vec<WatchEvent> {
        self.complete(false).into_iter().collect()
    }

    /// Every report completed so far, in log order.
    pub fn reports(&self) -> &[CrashReport] {
        &self.reports
    }

    fn complete(&mut self, trim: bool) -> Option<WatchEvent> {
        let collector = self.current.take()?;
        let report = collector.into_report(trim, self.config.max_frames);
        self.reports.push(report.clone());
        Some(WatchEvent::ReportComplete(report))
    }
}

/// Classifies one console line: the kind of report it is the header of, if any.
///
/// Lines that continue a report (an `Oops:` line after `BUG: kernel NULL pointer dereference`)
/// classify on their own too; [`ConsoleWatcher`] is what knows they belong together.
pub fn classify_line(line: &str) -> Option<CrashKind> {
    let line = clean_line(line);
    classify_text(split_prefix(&line).body.trim())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
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
struct Collector {
    kind: CrashKind,
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
    fn start(
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
    fn absorbs(&self, kind: CrashKind) -> bool {
        kind == CrashKind::Oops && self.kind == CrashKind::Bug && self.trace == Trace::Before
    }

    fn absorb(&mut self, line: &str, cap: usize) -> Step {
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
    fn is_foreign(&self, caller: Option<&str>) -> bool {
        if !printed_by_one_context(self.kind) {
            return false;
        }
        match (self.caller.as_deref(), caller) {
            (Some(ours), Some(theirs)) => ours != theirs,
            _ => false,
        }
    }

    fn push(&mut self, line: &str, text: &str, cap: usize) -> Step {
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

    fn into_report(mut self, trim: bool, max_frames: usize) -> CrashReport {
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

/// A console line split into printk's prefix and the message.
struct Prefixed<'a> {
    body: &'a str,
    timestamped: bool,
    caller: Option<&'a str>,
}

/// Drops carriage returns (serial consoles send `\r\n`, and a stray `\r` can appear anywhere)
/// and a trailing newline.
fn clean_line(line: &str) -> Cow<'_, str> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    if line.contains('\r') {
        Cow::Owned(line.replace('\r', ""))
    } else {
        Cow::Borrowed(line)
    }
}

/// Splits off `<4>` (a syslog level, when the log went through /dev/kmsg), `[   12.345678]`
/// (CONFIG_PRINTK_TIME) and `[  T123]` / `[    C1]` (CONFIG_PRINTK_CALLER: task id, or CPU
/// when not in task context; `print_caller()` in kernel/printk/printk.c).
fn split_prefix(line: &str) -> Prefixed<'_> {
    let mut rest = line;
    if let Some(after) = rest.strip_prefix('<') {
        if let Some(end) = after.find('>') {
            if (1..=3).contains(&end) && after[..end].bytes().all(|b| b.is_ascii_digit()) {
                rest = &after[end + 1..];
            }
        }
    }
    let mut timestamped = false;
    if let Some((inner, after)) = bracketed(rest) {
        if is_timestamp(inner) {
            timestamped = true;
            rest = after;
        }
    }
    let mut caller = None;
    if let Some((inner, after)) = bracketed(rest.trim_start_matches(' ')) {
        let inner = inner.trim();
        if is_caller_id(inner) {
            caller = Some(inner);
            rest = after;
        }
    }
    if timestamped || caller.is_some() {
        // printk puts one space between its prefix and the message; any more belong to the
        // message (trace lines are indented).
        rest = rest.strip_prefix(' ').unwrap_or(rest);
    }
    Prefixed {
        body: rest,
        timestamped,
        caller,
    }
}

fn bracketed(text: &str) -> Option<(&str, &str)> {
    let after = text.strip_prefix('[')?;
    let end = after.find(']')?;
    Some((&after[..end], &after[end + 1..]))
}

fn is_timestamp(inner: &str) -> bool {
    let Some((secs, micros)) = inner.trim_start().split_once('.') else {
        return false;
    };
    !secs.is_empty()
        && !micros.is_empty()
        && secs.bytes().all(|b| b.is_ascii_digit())
        && micros.bytes().all(|b| b.is_ascii_digit())
}

fn is_caller_id(inner: &str) -> bool {
    let Some(number) = inner.strip_prefix('T').or_else(|| inner.strip_prefix('C')) else {
        return false;
    };
    !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
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
fn classify_text(text: &str) -> Option<CrashKind> {
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

fn is_end_marker(text: &str) -> bool {
    text.starts_with("---[ end trace") || text.starts_with("---[ end Kernel panic")
}

fn is_call_trace_header(text: &str) -> bool {
    text.eq_ignore_ascii_case("call trace:")
}

/// Lines that follow a call trace and so end an unbracketed (arm64-style) one.
const TRACE_TRAILERS: &[&str] = &[
    "Code:",
    "---[",
    "=====",
    "-----",
    "irq event stamp:",
    "hardirqs last",
    "softirqs last",
    "Modules linked in:",
    "Kernel Offset:",
    "CPU features:",
    "Memory Limit:",
    "SMP: stopping",
    "CPU: ",
    "Hardware name:",
    "Tainted: ",
    "Showing all locks held",
    "Showing busy workqueues",
    "Sending NMI",
    "NMI backtrace",
    "task:",
    "rcu: ",
    "Allocated by task",
    "Freed by task",
    "The buggy address",
];

fn ends_trace(text: &str) -> bool {
    text.is_empty() || TRACE_TRAILERS.iter().any(|t| text.starts_with(t))
}

enum TraceLine<'a> {
    /// A reliable frame with a symbol name.
    Frame(&'a str),
    /// x86's unreliable `? fn+off/size` guess.
    Guess(&'a str),
    /// An address the kernel could not symbolise.
    Unnamed,
    /// `<IRQ>`, `<TASK>`, `<NMI>`, ...
    Open,
    /// `</IRQ>`, `</TASK>`, ...: the tag.
    Close(&'a str),
    Other,
}

fn trace_line(text: &str) -> TraceLine<'_> {
    if let Some(tag) = text.strip_prefix("</").and_then(|t| t.strip_suffix('>')) {
        if is_section_tag(tag) {
            return TraceLine::Close(tag);
        }
    }
    if let Some(tag) = text.strip_prefix('<').and_then(|t| t.strip_suffix('>')) {
        if is_section_tag(tag) {
            return TraceLine::Open;
        }
    }
    let mut rest = skip_raw_addresses(text);
    let unreliable = match rest.strip_prefix("? ") {
        Some(after) => {
            rest = after.trim_start();
            true
        }
        None => false,
    };
    let Some(first) = rest.split_whitespace().next() else {
        return TraceLine::Other;
    };
    match parse_symbol(first) {
        Some(name) if unreliable => TraceLine::Guess(name),
        Some(name) => TraceLine::Frame(name),
        None if is_hex_literal(first) => TraceLine::Unnamed,
        None => TraceLine::Other,
    }
}

fn is_section_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'#' || b == b'_')
}

/// Old kernels print `[<ffffffff81234567>] fn+off/size`.
fn skip_raw_addresses(mut text: &str) -> &str {
    while let Some(after) = text.strip_prefix("[<") {
        match after.find(">]") {
            Some(end) => text = after[end + 2..].trim_start(),
            None => break,
        }
    }
    text
}

/// `fn+0x1a4/0x2c0` to `fn` (`%pS`, lib/vsprintf.c). Module names, build ids and arm64's
/// `(P)`/`(L)` unwind annotations are separate tokens and never reach here.
fn parse_symbol(token: &str) -> Option<&str> {
    let (name, offsets) = token.split_once('+')?;
    let (offset, size) = offsets.split_once('/')?;
    let name_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'$'));
    (name_ok && is_hex_literal(offset) && is_hex_literal(size)).then_some(name)
}

fn is_hex_literal(text: &str) -> bool {
    text.strip_prefix("0x")
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The function in a register dump line: x86 `RIP: 0010:fn+0x12/0x40`, arm64 `pc : fn+...`.
/// A user-mode `RIP: 0033:0x7f...` names no function.
fn regs_frame(text: &str) -> Option<String> {
    let location = if let Some(rest) = text.strip_prefix("RIP: ") {
        let (segment, location) = rest.split_once(':')?;
        if segment.len() != 4 || !segment.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        location
    } else {
        text.strip_prefix("pc : ")
            .or_else(|| text.strip_prefix("epc : "))?
    };
    let first = skip_raw_addresses(location.trim_start())
        .split_whitespace()
        .next()?;
    parse_symbol(first).map(normalize_frame)
}

/// The function named after ` at ` in a WARNING header, in both the 6.x form
/// `CPU: 1 PID: 42 at kernel/futex/core.c:123 fn+0x12/0x40` and the newer
/// `kernel/futex/core.c:123 at fn+0x12/0x40, CPU#1: comm/42`.
fn warning_site(text: &str) -> Option<String> {
    let (_, after) = text.split_once(" at ")?;
    after
        .split_whitespace()
        .map(|token| token.trim_end_matches([',', ';']))
        .find_map(parse_symbol)
        .map(normalize_frame)
}

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
fn normalize_frame(name: &str) -> String {
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

fn is_entry_frame(name: &str) -> bool {
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

fn is_reporting_frame(kind: CrashKind, name: &str) -> bool {
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
    REPORTING_FRAMES.contains(&name)
        || starts(REPORTING_PREFIXES)
        || (starts_in_wait_code(kind) && (WAIT_FRAMES.contains(&name) || starts(WAIT_PREFIXES)))
        || (kind.is_lockdep() && starts(LOCKDEP_PREFIXES))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds a whole log, then finishes it.
    fn watch(log: &str) -> (Vec<WatchEvent>, Vec<CrashReport>) {
        let mut watcher = ConsoleWatcher::new();
        let mut events = Vec::new();
        for line in log.lines() {
            events.extend(watcher.feed_line(line));
        }
        events.extend(watcher.finish());
        (events, watcher.reports().to_vec())
    }

    fn only_report(log: &str) -> CrashReport {
        let (_, reports) = watch(log);
        assert_eq!(reports.len(), 1, "expected one report, got {reports:#?}");
        reports[0].clone()
    }

    /// The log up to (not including) the first line containing `needle`.
    fn up_to_line_with<'a>(log: &'a str, needle: &str) -> &'a str {
        let at = log.find(needle).expect("needle in fixture");
        &log[..log[..at].rfind('\n').map_or(0, |nl| nl + 1)]
    }

    fn frames(report: &CrashReport) -> Vec<&str> {
        report
            .fingerprint
            .frames
            .iter()
            .map(String::as_str)
            .collect()
    }

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/console/", $name, ".log"))
        };
    }

    const X86_WARNING: &str = fixture!("x86_64-warning");
    const ARM64_WARNING: &str = fixture!("arm64-warning");
    const X86_NULL_DEREF: &str = fixture!("x86_64-null-deref");
    const ARM64_NULL_DEREF: &str = fixture!("arm64-null-deref");
    const X86_GPF: &str = fixture!("x86_64-gpf");
    const ARM64_UNDEF: &str = fixture!("arm64-undef");
    const X86_KASAN: &str = fixture!("x86_64-kasan");
    const X86_KERNEL_BUG: &str = fixture!("x86_64-kernel-bug");
    const ARM64_KERNEL_BUG: &str = fixture!("arm64-kernel-bug");
    const X86_LOCKDEP_CIRCULAR: &str = fixture!("x86_64-lockdep-circular");
    const ARM64_LOCKDEP_CIRCULAR: &str = fixture!("arm64-lockdep-circular");
    const X86_LOCKDEP_INCONSISTENT: &str = fixture!("x86_64-lockdep-inconsistent");
    const ARM64_LOCKDEP_INCONSISTENT: &str = fixture!("arm64-lockdep-inconsistent");
    const X86_LOCKDEP_RECURSIVE: &str = fixture!("x86_64-lockdep-recursive");
    const ARM64_RCU_SUSPICIOUS: &str = fixture!("arm64-rcu-suspicious");
    const X86_SCHED_ATOMIC: &str = fixture!("x86_64-sched-atomic");
    const ARM64_SCHED_ATOMIC: &str = fixture!("arm64-sched-atomic");
    const X86_SLEEP_ATOMIC: &str = fixture!("x86_64-sleep-atomic");
    const ARM64_SLEEP_ATOMIC: &str = fixture!("arm64-sleep-atomic");
    const X86_HUNG_TASK: &str = fixture!("x86_64-hung-task");
    const ARM64_HUNG_TASK: &str = fixture!("arm64-hung-task");
    const X86_SOFT_LOCKUP: &str = fixture!("x86_64-soft-lockup");
    const ARM64_SOFT_LOCKUP: &str = fixture!("arm64-soft-lockup");
    const X86_HARD_LOCKUP: &str = fixture!("x86_64-hard-lockup");
    const ARM64_HARD_LOCKUP: &str = fixture!("arm64-hard-lockup");
    const X86_RCU_STALL: &str = fixture!("x86_64-rcu-stall");
    const ARM64_RCU_STALL: &str = fixture!("arm64-rcu-stall");
    const X86_PANIC: &str = fixture!("x86_64-panic-vfs");
    const ARM64_PANIC: &str = fixture!("arm64-panic-init");
    const CLEAN_BOOT: &str = fixture!("clean-boot");

    /// A report as the tests check it: kind, title, fingerprint frames.
    type Expected = (CrashKind, &'static str, Vec<&'static str>);

    /// Every fixture (name, text) with the reports it must produce.
    fn expectations() -> Vec<(&'static str, &'static str, Vec<Expected>)> {
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

    #[test]
    fn fixtures_give_the_expected_kinds_titles_and_frames() {
        for (name, log, expected) in expectations() {
            let (_, reports) = watch(log);
            let got: Vec<(CrashKind, &str, Vec<&str>)> = reports
                .iter()
                .map(|r| (r.kind, r.title.as_str(), frames(r)))
                .collect();
            assert_eq!(got, expected, "fixture {name}");
            for report in &reports {
                assert_eq!(report.fingerprint.kind, report.kind, "fixture {name}");
                let first = report.excerpt.lines().next().unwrap_or("");
                assert!(
                    first.ends_with(&report.title),
                    "fixture {name}: excerpt starts with {first:?}"
                );
                assert_eq!(
                    log.lines().nth((report.first_line_no - 1) as usize),
                    Some(first),
                    "fixture {name}: first_line_no"
                );
            }
        }
    }

    #[test]
    fn each_kind_is_covered_on_both_arches() {
        let mut seen = std::collections::BTreeSet::new();
        for (name, log, _) in expectations() {
            let arch = name.split('-').next().unwrap_or("");
            for report in watch(log).1 {
                seen.insert((report.kind, arch.to_owned()));
            }
        }
        for kind in CrashKind::ALL {
            for arch in ["x86_64", "arm64"] {
                assert!(seen.contains(&(kind, arch.to_owned())), "{kind} on {arch}");
            }
        }
    }

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

    #[test]
    fn unreliable_frames_offsets_modules_and_suffixes_are_dropped() {
        let log = "\
[    5.000000] WARNING: CPU: 0 PID: 1 at drivers/misc/lab.c:10 lab_check.isra.0+0x10/0x20 [lab]
[    5.000001] Call Trace:
[    5.000002]  <TASK>
[    5.000003]  ? __warn+0x8d/0x150
[    5.000004]  ? lab_check.isra.0+0x10/0x20 [lab]
[    5.000005]  ? report_bug+0x182/0x1b0
[    5.000006]  lab_walk.constprop.0+0x44/0x90 [lab 0123456789abcdef0123456789abcdef01234567]
[    5.000007]  lab_run.part.0+0x1c/0x30 [lab]
[    5.000008]  lab_ioctl.cold+0x8/0x10 [lab]
[    5.000009]  </TASK>
[    5.000010] ---[ end trace 0000000000000000 ]---";
        let report = only_report(log);
        assert_eq!(
            frames(&report),
            ["lab_check", "lab_walk", "lab_run", "lab_ioctl"]
        );
    }

    #[test]
    fn frame_count_is_configurable() {
        let mut watcher = ConsoleWatcher::with_config(WatcherConfig {
            max_frames: 2,
            ..WatcherConfig::default()
        });
        for line in X86_WARNING.lines() {
            watcher.feed_line(line);
        }
        watcher.finish();
        assert_eq!(
            watcher.reports()[0].fingerprint.to_string(),
            "warning:futex_wake_mark|futex_wake"
        );
    }

    #[test]
    fn a_warning_without_trace_uses_the_function_in_its_header() {
        let log = "\
[    7.100000] WARNING: CPU: 3 PID: 99 at kernel/sched/core.c:1234 try_to_wake_up+0x3a/0x5e0
[    7.100100] Modules linked in:";
        let report = only_report(log);
        assert_eq!(report.fingerprint.to_string(), "warning:try_to_wake_up");
        // The newer header format, `file:line at fn+off/size, CPU#n: comm/pid`.
        assert_eq!(
            classify_line("[    7.1] WARNING: kernel/sched/core.c:1234 at try_to_wake_up+0x3a/0x5e0, CPU#3: foo/99"),
            Some(CrashKind::Warning)
        );
        assert_eq!(
            warning_site("kernel/sched/core.c:1234 at try_to_wake_up+0x3a/0x5e0, CPU#3: foo/99")
                .as_deref(),
            Some("try_to_wake_up")
        );
    }

    #[test]
    fn report_started_comes_with_the_header_and_complete_at_the_end() {
        let mut watcher = ConsoleWatcher::new();
        let mut seen = Vec::new();
        for line in X86_NULL_DEREF.lines() {
            let events = watcher.feed_line(line);
            let text = split_prefix(line).body.trim().to_owned();
            for event in events {
                seen.push((text.clone(), event));
            }
        }
        assert!(watcher.finish().is_empty());
        let summary: Vec<(&str, String)> = seen
            .iter()
            .map(|(line, event)| {
                let what = match event {
                    WatchEvent::ReportStarted(kind) => format!("started {kind}"),
                    WatchEvent::ReportComplete(report) => format!("complete {}", report.kind),
                };
                (line.as_str(), what)
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "BUG: kernel NULL pointer dereference, address: 0000000000000008",
                    "started bug".to_owned()
                ),
                (
                    "---[ end trace 0000000000000000 ]---",
                    "complete bug".to_owned()
                ),
                (
                    "Kernel panic - not syncing: Fatal exception",
                    "started panic".to_owned()
                ),
                (
                    "---[ end Kernel panic - not syncing: Fatal exception ]---",
                    "complete panic".to_owned()
                ),
            ]
        );
        // The Oops line belongs to the BUG report, as does the end marker.
        let bug = &watcher.reports()[0];
        assert!(bug
            .excerpt
            .contains("Oops: Oops: 0000 [#1] PREEMPT_RT SMP NOPTI"));
        assert!(bug
            .excerpt
            .ends_with("---[ end trace 0000000000000000 ]---"));
        assert!(!bug.excerpt.contains("Kernel panic"));
        assert!(bug.excerpt.contains("]  ? __die+0x23/0x70\n"));
    }

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

    #[test]
    fn unstamped_lines_count_only_until_the_kernel_stamps_its_own() {
        // With printk.time=0 nothing is stamped and headers must still be found.
        let (_, reports) = watch("WARNING: CPU: 0 PID: 1 at lib/lab.c:1 lab_fn+0x1/0x2\n---[ end trace 0000000000000000 ]---");
        assert_eq!(reports.len(), 1);
        // Once lines are stamped, an unstamped header is userspace writing to the console.
        let (_, reports) = watch("[    1.000000] Linux version 6.12.117\nWARNING: CPU: 0 PID: 1 at lib/lab.c:1 lab_fn+0x1/0x2");
        assert!(reports.is_empty());
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

    #[test]
    fn carriage_returns_do_not_matter() {
        for (name, log, _) in expectations() {
            let crlf: String = log.lines().map(|l| format!("\r{l}\r\r\n")).collect();
            let plain = watch(log).1;
            let with_cr = watch(&crlf).1;
            assert_eq!(plain, with_cr, "fixture {name}");
        }
        assert_eq!(
            classify_line("[   12.345690] WARNING: CPU: 1 PID: 42 at a.c:1 f+0x1/0x2\r"),
            Some(CrashKind::Warning)
        );
    }

    #[test]
    fn a_report_that_never_ends_is_cut_at_the_line_cap() {
        let mut log =
            String::from("[    9.000000] BUG: scheduling while atomic: lab/1/0x00000002\n");
        for i in 0..300 {
            log.push_str(&format!("[    9.{i:06}] lab: unrelated chatter {i}\n"));
        }
        let (events, reports) = watch(&log);
        assert_eq!(events.len(), 2);
        assert_eq!(reports[0].excerpt.lines().count(), 120);

        // Lockdep reports get more room: their chains come before the backtrace.
        let head = up_to_line_with(X86_LOCKDEP_CIRCULAR, "]        lab_path_ba+");
        let chain_link = "[   30.100175]        lab_extra_hop+0x2a/0x60 [lab_locks]\n".repeat(200);
        let long = format!("{head}{chain_link}{}", &X86_LOCKDEP_CIRCULAR[head.len()..]);
        let report = only_report(&long);
        assert_eq!(
            frames(&report),
            [
                "lab_path_ab",
                "lab_locks_write",
                "full_proxy_write",
                "vfs_write"
            ]
        );
    }

    #[test]
    fn finish_flushes_a_report_cut_short() {
        let mut watcher = ConsoleWatcher::new();
        for line in up_to_line_with(X86_SOFT_LOCKUP, "]  vfs_write+").lines() {
            assert!(!matches!(
                watcher.feed_line(line).as_slice(),
                [WatchEvent::ReportComplete(_)]
            ));
        }
        let events = watcher.finish();
        let [WatchEvent::ReportComplete(report)] = events.as_slice() else {
            panic!("expected one completed report, got {events:?}");
        };
        assert_eq!(
            frames(report),
            ["lab_spin_busy", "lab_spin_write", "full_proxy_write"]
        );
        assert!(watcher.finish().is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]

        /// Whatever the console carries (garbage, cut reports, reports spliced into each
        /// other), the watcher neither panics nor loses track of where reports start.
        #[test]
        fn any_mix_of_lines_is_handled(
            picks in proptest::collection::vec((0usize..10_000, 0usize..3, "\\PC{0,40}"), 0..200)
        ) {
            let pool: Vec<&str> = expectations().iter().flat_map(|(_, log, _)| log.lines()).collect();
            let mut watcher = ConsoleWatcher::new();
            let mut started = 0;
            let mut completed = 0;
            for (pick, how, junk) in &picks {
                let line = match how {
                    0 => pool[pick % pool.len()].to_owned(),
                    1 => format!("[   {pick}.000000] {junk}"),
                    _ => junk.clone(),
                };
                for event in watcher.feed_line(&line) {
                    match event {
                        WatchEvent::ReportStarted(_) => started += 1,
                        WatchEvent::ReportComplete(_) => completed += 1,
                    }
                }
            }
            completed += watcher.finish().len();
            proptest::prop_assert_eq!(started, completed);
            proptest::prop_assert_eq!(watcher.reports().len(), completed);
            for report in watcher.reports() {
                let first = report.excerpt.lines().next().unwrap_or("");
                proptest::prop_assert!(first.ends_with(&report.title));
                proptest::prop_assert!(report.excerpt.lines().count() <= 400);
                proptest::prop_assert!(report.fingerprint.frames.len() <= 4);
            }
        }
    }

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
    fn prefixes_are_split_from_the_message() {
        let p = split_prefix("[   12.345678][  T123]  futex_wake+0x1a4/0x2c0");
        assert!(p.timestamped);
        assert_eq!(p.caller, Some("T123"));
        assert_eq!(p.body, " futex_wake+0x1a4/0x2c0");
        let p = split_prefix("[   12.345678] [    C1] rcu: INFO: x");
        assert_eq!(
            (p.timestamped, p.caller, p.body),
            (true, Some("C1"), "rcu: INFO: x")
        );
        let p = split_prefix("[0000000000000008] pgd=0000000000000000");
        assert_eq!((p.timestamped, p.caller), (false, None));
        assert_eq!(p.body, "[0000000000000008] pgd=0000000000000000");
    }

    #[test]
    fn reports_serialise_with_kebab_case_kinds() {
        let report = only_report(X86_LOCKDEP_CIRCULAR);
        let json = serde_json::to_value(&report).expect("serialise");
        assert_eq!(json["kind"], "lockdep-circular");
        assert_eq!(json["fingerprint"]["kind"], "lockdep-circular");
        let back: CrashReport = serde_json::from_value(json).expect("deserialise");
        assert_eq!(back, report);
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
