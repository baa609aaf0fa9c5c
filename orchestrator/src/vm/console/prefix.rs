//! printk's line prefix: the syslog level `<4>` (when the log went through /dev/kmsg), the
//! timestamp `[   12.345678]` (CONFIG_PRINTK_TIME) and the caller id `[  T123]` / `[    C1]`
//! (CONFIG_PRINTK_CALLER), split off each console line before anything reads its message.
//!
//! The prefix is also how the watcher tells the kernel's lines from the guest's own output on the
//! shared serial console, and the caller id how it tells a report's lines from another CPU's.

use std::borrow::Cow;

/// A console line split into printk's prefix and the message.
pub(super) struct Prefixed<'a> {
    pub(super) body: &'a str,
    pub(super) timestamped: bool,
    pub(super) caller: Option<&'a str>,
}

/// Drops carriage returns (serial consoles send `\r\n`, and a stray `\r` can appear anywhere)
/// and a trailing newline.
pub(super) fn clean_line(line: &str) -> Cow<'_, str> {
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
pub(super) fn split_prefix(line: &str) -> Prefixed<'_> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::crash::CrashKind;
    use crate::vm::console::classify_line;
    use crate::vm::console::fixtures::*;

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
}
