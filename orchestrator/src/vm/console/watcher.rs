//! The watcher, the face of this module: it takes a guest's console one line at a time, keeps
//! the lines the kernel wrote, starts a report on a header line, hands the lines after it to the
//! report being read, and completes that report when it ends, when the next header comes, or when
//! it runs past its line limit.
//!
//! It is the only part that holds state across lines (the line count, whether the kernel stamps
//! its lines yet, the report in progress, the reports read so far); the VM runner in `vm::qemu`
//! drives it.

use super::classify::classify_text;
use super::collector::{Collector, Step};
use super::prefix::{clean_line, split_prefix};
use crate::results::crash::{CrashKind, CrashReport};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::console::fixtures::*;
    use proptest::prelude::*;

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
    fn unstamped_lines_count_only_until_the_kernel_stamps_its_own() {
        // With printk.time=0 nothing is stamped and headers must still be found.
        let (_, reports) = watch("WARNING: CPU: 0 PID: 1 at lib/lab.c:1 lab_fn+0x1/0x2\n---[ end trace 0000000000000000 ]---");
        assert_eq!(reports.len(), 1);
        // Once lines are stamped, an unstamped header is userspace writing to the console.
        let (_, reports) = watch("[    1.000000] Linux version 6.12.117\nWARNING: CPU: 0 PID: 1 at lib/lab.c:1 lab_fn+0x1/0x2");
        assert!(reports.is_empty());
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
    fn reports_serialise_with_kebab_case_kinds() {
        let report = only_report(X86_LOCKDEP_CIRCULAR);
        let json = serde_json::to_value(&report).expect("serialise");
        assert_eq!(json["kind"], "lockdep-circular");
        assert_eq!(json["fingerprint"]["kind"], "lockdep-circular");
        let back: CrashReport = serde_json::from_value(json).expect("deserialise");
        assert_eq!(back, report);
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

    /// Fragments of kernel reports as x86_64 and arm64 print them, cut and bent: what a
    /// guest console may carry, interleaved with anything at all.
    const FRAGMENTS: &[&str] = &[
        "WARNING: CPU: 0 PID: 1 at kernel/futex/core.c:12 futex_wake+0x1a/0x2c",
        "WARNING: CPU: 0 PID: 1 at ",
        "WARNING: CPU: 4294967296 PID: -1 at :0 +0x/",
        "WARNING: possible circular locking dependency detected",
        "WARNING: inconsistent lock state",
        "Call Trace:",
        "Call trace:",
        " <TASK>",
        " </TASK>",
        " <IRQ>",
        " futex_wake+0x1a/0x2c",
        " ? do_futex+0x0/0x100 [lab_mod]",
        " f.isra.0.cold+0x1/0x2",
        " +0x1/0x2",
        " ++++/////",
        " show_stack+0x18/0x24 (C)",
        "RIP: 0010:futex_wake+0x1a/0x2c",
        "pc : futex_wake+0x1a/0x2c",
        "lr : do_futex+0x10/0x20",
        "Modules linked in:",
        "---[ end trace 0000000000000000 ]---",
        "---[ end Kernel panic - not syncing: Fatal exception ]---",
        "Kernel panic - not syncing: Fatal exception",
        "Kernel panic - not syncing: ",
        "BUG: kernel NULL pointer dereference, address: 0000000000000000",
        "BUG: scheduling while atomic: x/1/0x00000002",
        "BUG: sleeping function called from invalid context at kernel/a.c:1",
        "kernel BUG at kernel/futex/core.c:12!",
        "Oops: general protection fault, probably for non-canonical address",
        "Internal error: Oops - Undefined instruction: 0000000002000000 [#1] SMP",
        "Unable to handle kernel NULL pointer dereference at virtual address 0",
        "INFO: task lab:123 blocked for more than 120 seconds.",
        "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [lab:1]",
        "watchdog: Watchdog detected hard LOCKUP on cpu 1",
        "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
        "======================================================",
        "-> #1 (&hb->lock){+.+.}-{2:2}:",
        "stack backtrace:",
        "LAB/1 READY uptime_ms=812",
        "",
    ];

    /// Printk prefixes, whole and broken.
    const PREFIXES: &[&str] = &[
        "",
        "[    1.234567] ",
        "[    1.234567][    T1] ",
        "[    1.234567][    C0] ",
        "[   12.345678] [  T123] ",
        "<4>[    0.100000] ",
        "<4>",
        "<9999>",
        "[    1.",
        "[ .] ",
        "[1.2][T] ",
        "[0000000000000008] ",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(128))]

        /// Report fragments in any order, with any prefix, cut at any character, mixed with
        /// any text: the watcher neither panics nor breaks its own promises, whatever its
        /// limits.
        #[test]
        fn fuzz_report_fragments_in_any_order(
            picks in proptest::collection::vec(
                (
                    0..PREFIXES.len(),
                    0..FRAGMENTS.len(),
                    "\\PC{0,12}",
                    0u8..6,
                    any::<proptest::sample::Index>(),
                ),
                0..120,
            ),
            max_frames in 0usize..6,
            // From 2: a cap of 1 still lets the line after the header in (the cap is checked
            // as a line is added), which no configuration uses.
            max_lines in 2usize..50,
        ) {
            let config = WatcherConfig {
                max_frames,
                max_report_lines: max_lines,
                max_lockdep_report_lines: max_lines * 2,
            };
            let mut watcher = ConsoleWatcher::with_config(config);
            let mut started = 0;
            let mut completed = 0;
            for (prefix, fragment, junk, how, cut) in &picks {
                let whole = format!("{}{}", PREFIXES[*prefix], FRAGMENTS[*fragment]);
                let line = match how {
                    0 => {
                        let mut at = cut.index(whole.len() + 1);
                        while !whole.is_char_boundary(at) {
                            at -= 1;
                        }
                        whole[..at].to_owned()
                    }
                    1 => format!("{whole}{junk}"),
                    2 => format!("{}{junk}", PREFIXES[*prefix]),
                    3 => format!("{junk}{whole}\r\u{1b}[0m\0"),
                    4 => whole.repeat(40),
                    _ => whole,
                };
                prop_assert_eq!(
                    crate::vm::console::classify_line(&line).is_some(),
                    crate::vm::console::classify_line(&line).is_some()
                );
                for event in watcher.feed_line(&line) {
                    match event {
                        WatchEvent::ReportStarted(_) => started += 1,
                        WatchEvent::ReportComplete(_) => completed += 1,
                    }
                }
            }
            completed += watcher.finish().len();
            prop_assert_eq!(started, completed);
            prop_assert_eq!(watcher.reports().len(), completed);
            for report in watcher.reports() {
                let first = report.excerpt.lines().next().unwrap_or("");
                // The title is the header trimmed; the excerpt keeps the line as it came.
                prop_assert!(first.trim_end().ends_with(&report.title), "{:?} {:?}", first, report.title);
                prop_assert!(report.excerpt.lines().count() <= config.line_cap(report.kind));
                prop_assert!(report.fingerprint.frames.len() <= max_frames);
                prop_assert_eq!(report.kind, report.fingerprint.kind);
                prop_assert!(report.first_line_no >= 1 && report.first_line_no <= picks.len() as u64);
                let _ = report.fingerprint.id();
            }
        }
    }
}
