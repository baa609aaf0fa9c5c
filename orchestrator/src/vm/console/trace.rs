//! The syntax of a kernel report's lines: call-trace frames (`fn+0x1a4/0x2c0`, x86's `? fn`
//! guesses, `<IRQ>` ... `</TASK>` sections, the `[<ffffffff81234567>]` addresses of old kernels),
//! the register dump line that names the faulting function, the function in a WARNING header, and
//! the lines that end a trace or a report.
//!
//! It says what a line holds; the collector decides what that means for the report.

use super::frames::normalize_frame;

pub(super) fn is_end_marker(text: &str) -> bool {
    text.starts_with("---[ end trace") || text.starts_with("---[ end Kernel panic")
}

pub(super) fn is_call_trace_header(text: &str) -> bool {
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

pub(super) fn ends_trace(text: &str) -> bool {
    text.is_empty() || TRACE_TRAILERS.iter().any(|t| text.starts_with(t))
}

pub(super) enum TraceLine<'a> {
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

pub(super) fn trace_line(text: &str) -> TraceLine<'_> {
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
pub(super) fn regs_frame(text: &str) -> Option<String> {
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
pub(super) fn warning_site(text: &str) -> Option<String> {
    let (_, after) = text.split_once(" at ")?;
    after
        .split_whitespace()
        .map(|token| token.trim_end_matches([',', ';']))
        .find_map(parse_symbol)
        .map(normalize_frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::crash::CrashKind;
    use crate::vm::console::classify_line;
    use crate::vm::console::fixtures::*;

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
}
