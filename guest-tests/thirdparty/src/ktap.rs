//! Reading what a kselftest program prints: TAP version 13 as `kselftest.h` writes it, and
//! KTAP version 1 (Documentation/dev-tools/ktap.rst), with nested subtests.
//!
//! The reader never fails: every line is either understood or kept in
//! [`TapReport::unparsed`], because a crashing test prints half a line and its evidence is
//! what matters then. What the program meant is decided by [`TapReport::verdict`], from the
//! TAP lines *and* the exit status, the way `kselftest/runner.sh` does (0 passes, 4 skips,
//! anything else fails), plus what a runner that trusts only the exit status misses: a
//! `not ok` line, a `Bail out!`, and fewer results than the plan announced.
//!
//! The shapes `kselftest.h` prints (Linux 6.12):
//! - `ok 3 description`, `not ok 3 description`;
//! - `ok 3 # SKIP reason`, `ok 3 # XFAIL reason`, `not ok 3 # error reason` (the directive
//!   *before* any description, from `ksft_test_result_skip` and friends), and
//!   `ok 3 name # SKIP reason` (from `ksft_test_result_code`);
//! - `1..0 # SKIP reason` for a program that skipped before its plan;
//! - `# Totals: pass:9 fail:0 xfail:0 xpass:0 skip:0 error:0` (possibly more than once; the
//!   last counts) and `# Planned tests != run tests (9 != 5)`.
//!
//! Subtests are keyed by their number, never by their description: a description changes
//! when the test fails (`futex_wait returned -1` against `futex_wait succeeds`).

/// How one test line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    /// `# SKIP`: not run; never a pass.
    Skip,
    /// `# XFAIL`: failed as expected (kselftest counts it with the passes).
    XFail,
    /// `# XPASS`: passed where a failure was expected; runner.sh fails it (exit 3).
    XPass,
    /// `not ok N # error`: the test could not run its check.
    Error,
    /// `# TODO`: a known failure that does not count (plain TAP).
    Todo,
}

impl Status {
    /// Whether this result makes the program fail.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Fail | Status::Error | Status::XPass)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
            Status::XFail => "xfail",
            Status::XPass => "xpass",
            Status::Error => "error",
            Status::Todo => "todo",
        }
    }
}

/// One `ok`/`not ok` line, with what was printed before it.
#[derive(Debug, Clone, PartialEq)]
pub struct TapCase {
    pub number: u32,
    /// As printed, without the directive; may be empty (`ok 3 # SKIP reason`).
    pub description: String,
    pub status: Status,
    /// The directive's text (`# SKIP no PI support` gives `no PI support`).
    pub reason: Option<String>,
    /// `# ` lines printed since the previous result: what the test said on its way here.
    pub diagnostics: Vec<String>,
    /// The line itself, as evidence.
    pub line: String,
    /// KTAP subtests: the indented block just above this line.
    pub subtests: Vec<TapCase>,
}

/// `# Totals: ...` as the program counted itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub pass: u32,
    pub fail: u32,
    pub xfail: u32,
    pub xpass: u32,
    pub skip: u32,
    pub error: u32,
}

/// Everything read from one program's standard output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TapReport {
    /// `TAP version 13` or `KTAP version 1`, if printed.
    pub version: Option<String>,
    /// The plan `1..N`.
    pub planned: Option<u32>,
    /// `1..0 # SKIP reason`: the whole program skipped.
    pub skip_all: Option<String>,
    pub cases: Vec<TapCase>,
    pub totals: Option<Totals>,
    /// `Bail out! reason`.
    pub bail_out: Option<String>,
    /// `# ` lines after the last result (the Totals line excluded).
    pub trailing: Vec<String>,
    /// Lines that are none of the above, kept as evidence (a half-written line of a test
    /// that crashed, stray output).
    pub unparsed: Vec<String>,
}

/// What one program run amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramVerdict {
    Pass,
    /// Skipped as a whole (exit 4, `1..0 # SKIP`, or every case skipped).
    Skip(String),
    /// Failed, with the reasons (each names the case number or the rule).
    Fail(Vec<String>),
}

/// How a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// kselftest's skip status (`KSFT_SKIP`).
pub const KSFT_SKIP: i32 = 4;

/// Reads a program's standard output. Never fails; see the module documentation.
pub fn parse(text: &str) -> TapReport {
    let lines: Vec<&str> = text.lines().collect();
    let mut pos = 0;
    parse_block(&lines, &mut pos, 0)
}

/// Parses lines indented by at least `indent` spaces from `pos`, stopping at a line that is
/// indented less (it belongs to the enclosing block).
fn parse_block(lines: &[&str], pos: &mut usize, indent: usize) -> TapReport {
    let mut report = TapReport::default();
    let mut pending_diag: Vec<String> = Vec::new();
    let mut pending_subtests: Vec<TapCase> = Vec::new();
    while *pos < lines.len() {
        let raw = lines[*pos].trim_end_matches('\r');
        let depth = raw.len() - raw.trim_start_matches(' ').len();
        if !raw.trim().is_empty() && depth < indent {
            break;
        }
        if depth >= indent + 2 && !raw.trim().is_empty() {
            // A nested KTAP block: it belongs to the next result line at this level.
            let nested = parse_block(lines, pos, depth);
            pending_subtests.extend(nested.cases);
            continue;
        }
        *pos += 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with("TAP version") || line.starts_with("KTAP version") {
            report.version.get_or_insert_with(|| line.to_owned());
        } else if let Some(plan) = line.strip_prefix("1..") {
            let (count, directive) = split_directive(plan);
            match count.trim().parse::<u32>() {
                Ok(n) => {
                    report.planned = Some(n);
                    if n == 0 {
                        report.skip_all =
                            Some(directive.map(|(_, why)| why.to_owned()).unwrap_or_default());
                    }
                }
                Err(_) => report.unparsed.push(line.to_owned()),
            }
        } else if let Some(why) = line.strip_prefix("Bail out!") {
            report.bail_out = Some(why.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix("# Totals:") {
            match parse_totals(rest) {
                Some(t) => report.totals = Some(t),
                None => report.unparsed.push(line.to_owned()),
            }
        } else if let Some(case) = (!line.starts_with('#'))
            .then(|| parse_result(line))
            .flatten()
        {
            let mut case = case;
            case.diagnostics = std::mem::take(&mut pending_diag);
            case.subtests = std::mem::take(&mut pending_subtests);
            report.cases.push(case);
        } else if let Some((said, mut case)) = glued_failure(line) {
            // `ksft_print_msg("Large rel latency: %lld ns :")` with no newline, then the
            // result: the message is what the test said, the result is still a result.
            let said = said.strip_prefix('#').unwrap_or(said);
            pending_diag.push(said.strip_prefix(' ').unwrap_or(said).to_owned());
            case.diagnostics = std::mem::take(&mut pending_diag);
            case.subtests = std::mem::take(&mut pending_subtests);
            report.cases.push(case);
        } else if let Some(diag) = line.strip_prefix('#') {
            pending_diag.push(diag.strip_prefix(' ').unwrap_or(diag).to_owned());
        } else {
            report.unparsed.push(line.to_owned());
        }
    }
    report.trailing = pending_diag;
    report
}

/// A `not ok N` result printed straight after a message that had no newline
/// (`# Large rel latency: 41 ns :not ok 1 CLOCK_REALTIME` from nsleep-lat,
/// `Diff too high: 2600000..not ok 1 ITIMER_VIRTUAL` from posix_timers): the message and the
/// result. Only a `not ok` glued to a non-space character counts, so a description that
/// says "not ok" in words stays a description; a glued `ok` is left alone (the timers
/// programs print such messages only on their way to a failure).
fn glued_failure(line: &str) -> Option<(&str, TapCase)> {
    let mut from = 1;
    while let Some(i) = line.get(from..)?.find("not ok ") {
        let at = from + i;
        let glued = line[..at]
            .chars()
            .next_back()
            .is_some_and(|c| !c.is_whitespace());
        if glued {
            if let Some(case) = parse_result(&line[at..]) {
                return Some((&line[..at], case));
            }
        }
        from = at + 1;
    }
    None
}

/// Reads a program that prints no TAP, only a verdict at the end of each check's line, as
/// the older timers selftests do (`set-timer-lat`, `mqueue-lat` in Linux 6.12):
/// `CLOCK_REALTIME ABSTIME PERIODIC max latency:      81234 ns : [OK]`. Each such line is a
/// case, numbered in order: `[OK]` passes, `[FAILED]`/`[FAIL]` fails, `[UNSUPPORTED]`/`[SKIP]`
/// skips. Every other line is a diagnostic of the next case. There is no plan: what the
/// program meant is its exit status and these lines ([`TapReport::verdict`]).
pub fn parse_bracketed(text: &str) -> TapReport {
    let mut report = TapReport::default();
    let mut pending_diag: Vec<String> = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let verdict = line.rfind('[').and_then(|at| {
            let word = line[at..].strip_prefix('[')?.strip_suffix(']')?;
            let status = match word {
                "OK" | "PASS" => Status::Pass,
                "FAILED" | "FAIL" => Status::Fail,
                "UNSUPPORTED" | "SKIP" | "SKIPPED" => Status::Skip,
                _ => return None,
            };
            Some((at, status))
        });
        let Some((at, status)) = verdict else {
            pending_diag.push(line.to_owned());
            continue;
        };
        let description = line[..at]
            .trim()
            .trim_end_matches(':')
            .trim_end()
            .to_owned();
        report.cases.push(TapCase {
            number: u32::try_from(report.cases.len() + 1).unwrap_or(u32::MAX),
            reason: (status == Status::Skip).then(|| description.clone()),
            description,
            status,
            diagnostics: std::mem::take(&mut pending_diag),
            line: line.to_owned(),
            subtests: Vec::new(),
        });
    }
    report.trailing = pending_diag;
    report
}

/// `ok 3 desc # SKIP why` and its kin; `None` for anything else.
fn parse_result(line: &str) -> Option<TapCase> {
    let (ok, rest) = if let Some(r) = line.strip_prefix("not ok") {
        (false, r)
    } else {
        (true, line.strip_prefix("ok")?)
    };
    // `ok` must be a word of its own: `okay 3` is not a result.
    if !rest.is_empty() && !rest.starts_with(' ') {
        return None;
    }
    let rest = rest.trim_start();
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let number: u32 = rest[..digits].parse().ok()?;
    let (description, directive) = split_directive(&rest[digits..]);
    let description = description
        .trim()
        .trim_start_matches("- ")
        .trim()
        .to_owned();
    let (status, reason) = match directive {
        Some((word, why)) => {
            let why = Some(why.to_owned()).filter(|w| !w.is_empty());
            let status = match (word.to_ascii_uppercase().as_str(), ok) {
                ("SKIP", _) => Status::Skip,
                ("XFAIL", true) => Status::XFail,
                ("XPASS", _) => Status::XPass,
                ("TODO", _) => Status::Todo,
                ("ERROR", _) => Status::Error,
                (_, true) => Status::Pass,
                (_, false) => Status::Fail,
            };
            (status, why)
        }
        None if ok => (Status::Pass, None),
        None => (Status::Fail, None),
    };
    Some(TapCase {
        number,
        description,
        status,
        reason,
        diagnostics: Vec::new(),
        line: line.to_owned(),
        subtests: Vec::new(),
    })
}

/// Splits `desc # WORD reason` at the first `#` followed by a known directive word. A `#`
/// inside a description that is not a directive stays in the description.
fn split_directive(s: &str) -> (&str, Option<(&str, &str)>) {
    let mut from = 0;
    while let Some(i) = s[from..].find('#') {
        let at = from + i;
        let after = s[at + 1..].trim_start();
        let word_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let word = &after[..word_len];
        if ["SKIP", "TODO", "XFAIL", "XPASS", "ERROR"]
            .iter()
            .any(|d| d.eq_ignore_ascii_case(word))
        {
            return (&s[..at], Some((word, after[word_len..].trim())));
        }
        from = at + 1;
    }
    (s, None)
}

/// ` pass:9 fail:0 xfail:0 xpass:0 skip:0 error:0`.
fn parse_totals(s: &str) -> Option<Totals> {
    let mut t = Totals::default();
    let mut seen = 0;
    for field in s.split_whitespace() {
        let (name, value) = field.split_once(':')?;
        let value: u32 = value.parse().ok()?;
        let slot = match name {
            "pass" => &mut t.pass,
            "fail" => &mut t.fail,
            "xfail" => &mut t.xfail,
            "xpass" => &mut t.xpass,
            "skip" => &mut t.skip,
            "error" => &mut t.error,
            _ => continue,
        };
        *slot = value;
        seen += 1;
    }
    (seen > 0).then_some(t)
}

impl TapReport {
    /// Every case, subtests included, with its key: `<program key>:<number>` and, for a
    /// subtest, `<parent key>.<number>`.
    pub fn keyed_cases(&self, program: &str) -> Vec<(String, &TapCase)> {
        fn walk<'a>(prefix: &str, cases: &'a [TapCase], out: &mut Vec<(String, &'a TapCase)>) {
            for c in cases {
                let key = format!("{prefix}{}", c.number);
                walk(&format!("{key}."), &c.subtests, out);
                out.push((key, c));
            }
        }
        let mut out = Vec::new();
        walk(&format!("{program}:"), &self.cases, &mut out);
        out
    }

    /// What the run amounts to, from the TAP lines and how the program ended (see the
    /// module documentation for the rules).
    pub fn verdict(&self, exit: Exit) -> ProgramVerdict {
        let mut why = Vec::new();
        match exit {
            Exit::Signal(s) => why.push(format!("killed by signal {s}")),
            Exit::Code(0) | Exit::Code(KSFT_SKIP) => {}
            Exit::Code(254) => why.push("exit 254 (RET_FAIL)".into()),
            Exit::Code(255) => why.push("exit 255 (RET_ERROR)".into()),
            Exit::Code(c) => why.push(format!("exit {c}")),
        }
        if let Some(b) = &self.bail_out {
            why.push(format!("Bail out! {b}"));
        }
        for (key, c) in self.keyed_cases("") {
            if c.status.is_failure() {
                why.push(format!(
                    "{} {}: {}",
                    c.status.as_str(),
                    key.trim_start_matches(':'),
                    c.line
                ));
            }
        }
        let ran = u32::try_from(self.cases.len()).unwrap_or(u32::MAX);
        match self.planned {
            Some(n) if n != ran && self.skip_all.is_none() => {
                why.push(format!("planned {n} results, printed {ran}"));
            }
            None if ran == 0 && exit == Exit::Code(0) => {
                why.push("no plan and no result: not a TAP program, or it died silently".into());
            }
            _ => {}
        }
        if let Some(t) = self.totals {
            let failing = t.fail + t.error + t.xpass;
            let seen = self.cases.iter().filter(|c| c.status.is_failure()).count();
            if failing > 0 && seen == 0 {
                why.push(format!(
                    "its own totals count {failing} failure(s) (fail:{} error:{} xpass:{})",
                    t.fail, t.error, t.xpass
                ));
            }
        }
        if !why.is_empty() {
            return ProgramVerdict::Fail(why);
        }
        if let Some(reason) = &self.skip_all {
            return ProgramVerdict::Skip(reason.clone());
        }
        if exit == Exit::Code(KSFT_SKIP) {
            let reason = self
                .cases
                .iter()
                .rev()
                .find_map(|c| c.reason.clone())
                .unwrap_or_else(|| "exit 4 (KSFT_SKIP)".into());
            return ProgramVerdict::Skip(reason);
        }
        if !self.cases.is_empty() && self.cases.iter().all(|c| c.status == Status::Skip) {
            let reason = self.cases[0].reason.clone().unwrap_or_default();
            return ProgramVerdict::Skip(reason);
        }
        ProgramVerdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// futex_wait_timeout's output on a good kernel (the shape of Linux 6.12's
    /// `ksft_test_result_pass` lines; trimmed to three of its nine results).
    const TIMEOUT_OK: &str = "TAP version 13\n1..3\n# futex_wait_timeout: Block on a futex and wait for timeout\n#   Arguments: timeout=100000ns\nok 1 futex_wait relative succeeds\nok 2 futex_wait_bitset realtime succeeds\nok 3 futex_waitv monotonic succeeds\n# Totals: pass:3 fail:0 xfail:0 xpass:0 skip:0 error:0\n";

    #[test]
    fn a_passing_kselftest_reads_whole() {
        let r = parse(TIMEOUT_OK);
        assert_eq!(r.version.as_deref(), Some("TAP version 13"));
        assert_eq!(r.planned, Some(3));
        assert_eq!(r.cases.len(), 3);
        assert_eq!(r.cases[0].description, "futex_wait relative succeeds");
        assert_eq!(
            r.cases[0].diagnostics,
            vec![
                "futex_wait_timeout: Block on a futex and wait for timeout",
                "  Arguments: timeout=100000ns"
            ]
        );
        assert_eq!(r.totals.map(|t| t.pass), Some(3));
        assert_eq!(r.verdict(Exit::Code(0)), ProgramVerdict::Pass);
        let keys: Vec<String> = r
            .keyed_cases("futex_wait_timeout")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            vec![
                "futex_wait_timeout:1",
                "futex_wait_timeout:2",
                "futex_wait_timeout:3"
            ]
        );
    }

    #[test]
    fn a_failure_is_seen_in_the_lines_even_when_the_exit_status_is_zero() {
        let text = TIMEOUT_OK.replace(
            "ok 2 futex_wait_bitset realtime succeeds",
            "not ok 2 futex_wait_bitset realtime returned -1",
        );
        let r = parse(&text);
        assert_eq!(r.cases[1].status, Status::Fail);
        match r.verdict(Exit::Code(0)) {
            ProgramVerdict::Fail(why) => {
                assert!(
                    why.iter()
                        .any(|w| w.contains("fail 2: not ok 2 futex_wait_bitset")),
                    "{why:?}"
                );
            }
            v => panic!("{v:?}"),
        }
        // Keyed by number, not by the description that changed.
        assert_eq!(r.keyed_cases("t")[1].0, "t:2");
    }

    #[test]
    fn directives_before_or_after_the_description() {
        let r = parse("1..4\nok 1 # SKIP no PI support\nok 2 lock_pi # SKIP not root\nok 3 # XFAIL expected\nnot ok 4 # error futex_requeue_pi\n");
        let got: Vec<(Status, &str, Option<&str>)> = r
            .cases
            .iter()
            .map(|c| (c.status, c.description.as_str(), c.reason.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Status::Skip, "", Some("no PI support")),
                (Status::Skip, "lock_pi", Some("not root")),
                (Status::XFail, "", Some("expected")),
                (Status::Error, "", Some("futex_requeue_pi")),
            ]
        );
        assert!(matches!(r.verdict(Exit::Code(1)), ProgramVerdict::Fail(_)));
        // A '#' that is not a directive stays in the description.
        let r = parse("1..1\nok 1 case #2 of 3\n");
        assert_eq!(r.cases[0].description, "case #2 of 3");
        assert_eq!(r.cases[0].status, Status::Pass);
    }

    #[test]
    fn skips_are_skips_never_passes() {
        assert_eq!(
            parse("TAP version 13\n1..0 # SKIP futex_waitv not supported\n").verdict(Exit::Code(4)),
            ProgramVerdict::Skip("futex_waitv not supported".into())
        );
        assert_eq!(
            parse("1..2\nok 1 # SKIP a\nok 2 # SKIP b\n").verdict(Exit::Code(0)),
            ProgramVerdict::Skip("a".into())
        );
        assert_eq!(
            parse("1..1\nok 1 # SKIP not root\n").verdict(Exit::Code(4)),
            ProgramVerdict::Skip("not root".into())
        );
    }

    #[test]
    fn the_futex_exit_codes_a_bail_out_and_a_short_plan_fail() {
        let r = parse(TIMEOUT_OK);
        for (code, what) in [(254, "RET_FAIL"), (255, "RET_ERROR"), (1, "exit 1")] {
            match r.verdict(Exit::Code(code)) {
                ProgramVerdict::Fail(why) => assert!(why[0].contains(what), "{why:?}"),
                v => panic!("{code}: {v:?}"),
            }
        }
        assert!(matches!(
            r.verdict(Exit::Signal(9)),
            ProgramVerdict::Fail(_)
        ));
        let r = parse(
            "TAP version 13\n1..9\nok 1 a\nBail out! futex_wait: Operation not permitted (1)\n",
        );
        match r.verdict(Exit::Code(0)) {
            ProgramVerdict::Fail(why) => {
                assert!(
                    why.iter().any(|w| w.starts_with("Bail out! futex_wait")),
                    "{why:?}"
                );
                assert!(
                    why.iter().any(|w| w == "planned 9 results, printed 1"),
                    "{why:?}"
                );
            }
            v => panic!("{v:?}"),
        }
        // Its own totals disagree with the lines it printed (a line lost in a crash).
        let r = parse("1..1\nok 1 a\n# Totals: pass:0 fail:1 xfail:0 xpass:0 skip:0 error:0\n");
        assert!(matches!(r.verdict(Exit::Code(0)), ProgramVerdict::Fail(_)));
        // Output that is not TAP at all, with a clean exit, is no pass.
        assert!(matches!(
            parse("hello\n").verdict(Exit::Code(0)),
            ProgramVerdict::Fail(_)
        ));
    }

    #[test]
    fn ktap_subtests_nest_under_their_parent_and_keep_their_own_numbers() {
        let text = "KTAP version 1\n1..2\n    KTAP version 1\n    # Subtest: example\n    1..2\n    ok 1 first\n    not ok 2 second\nnot ok 1 example\nok 2 other\n";
        let r = parse(text);
        assert_eq!(r.version.as_deref(), Some("KTAP version 1"));
        assert_eq!(r.cases.len(), 2);
        assert_eq!(r.cases[0].subtests.len(), 2);
        assert_eq!(r.cases[0].subtests[1].status, Status::Fail);
        let keys: Vec<String> = r.keyed_cases("p").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec!["p:1.1", "p:1.2", "p:1", "p:2"]);
        match r.verdict(Exit::Code(0)) {
            ProgramVerdict::Fail(why) => {
                assert!(why.iter().any(|w| w.starts_with("fail 1.2:")), "{why:?}")
            }
            v => panic!("{v:?}"),
        }
    }

    /// nanosleep (Linux 6.12) passes per clock and skips the clocks it cannot sleep on.
    const NANOSLEEP_OK: &str = "TAP version 13\n1..12\nok 1 CLOCK_REALTIME                 \nok 2 CLOCK_MONOTONIC                \nok 3 # SKIP CLOCK_PROCESS_CPUTIME_ID      \nok 4 # SKIP CLOCK_THREAD_CPUTIME_ID       \nok 5 # SKIP CLOCK_MONOTONIC_RAW           \nok 6 # SKIP CLOCK_REALTIME_COARSE         \nok 7 # SKIP CLOCK_MONOTONIC_COARSE        \nok 8 CLOCK_BOOTTIME                 \nok 9 # SKIP CLOCK_REALTIME_ALARM          \nok 10 # SKIP CLOCK_BOOTTIME_ALARM          \nok 11 # SKIP UNKNOWN_CLOCKID               \nok 12 CLOCK_TAI                      \n# Totals: pass:4 fail:0 xfail:0 xpass:0 skip:8 error:0\n";

    #[test]
    fn a_timers_program_that_skips_some_clocks_passes_keyed_by_clock_number() {
        let r = parse(NANOSLEEP_OK);
        assert_eq!(r.cases.len(), 12);
        assert_eq!(r.cases[0].description, "CLOCK_REALTIME");
        assert_eq!(r.cases[2].status, Status::Skip);
        assert_eq!(
            r.cases[2].reason.as_deref(),
            Some("CLOCK_PROCESS_CPUTIME_ID")
        );
        assert_eq!(r.verdict(Exit::Code(0)), ProgramVerdict::Pass);
        assert_eq!(r.keyed_cases("nanosleep")[11].0, "nanosleep:12");
        // An early wake-up: nanosleep prints the failure and exits at once.
        let cut = NANOSLEEP_OK.split("ok 2 ").next().unwrap_or_default().to_owned()
            + "not ok 2 CLOCK_MONOTONIC                \n# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:0 error:0\n";
        match parse(&cut).verdict(Exit::Code(1)) {
            ProgramVerdict::Fail(why) => {
                assert!(why.iter().any(|w| w == "exit 1"), "{why:?}");
                assert!(why.iter().any(|w| w.starts_with("fail 2:")), "{why:?}");
                assert!(
                    why.iter().any(|w| w == "planned 12 results, printed 2"),
                    "{why:?}"
                );
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn a_failure_glued_to_a_message_without_a_newline_is_still_a_result() {
        // nsleep-lat: ksft_print_msg("Large rel latency: %lld ns :") then the result.
        let text = "TAP version 13\n1..3\n# Large rel latency: 51234567 ns :not ok 1 CLOCK_REALTIME\nok 2 CLOCK_MONOTONIC\nok 3 CLOCK_TAI\n# Totals: pass:2 fail:1 xfail:0 xpass:0 skip:0 error:0\n";
        let r = parse(text);
        assert_eq!(r.cases.len(), 3, "{r:?}");
        assert_eq!(r.cases[0].status, Status::Fail);
        assert_eq!(r.cases[0].description, "CLOCK_REALTIME");
        assert_eq!(
            r.cases[0].diagnostics,
            vec!["Large rel latency: 51234567 ns :"]
        );
        match r.verdict(Exit::Code(1)) {
            ProgramVerdict::Fail(why) => {
                assert!(why.iter().any(|w| w.starts_with("fail 1:")), "{why:?}");
                assert!(!why.iter().any(|w| w.starts_with("planned")), "{why:?}");
            }
            v => panic!("{v:?}"),
        }
        // posix_timers: printf("Diff too high: %lld..") then the result, no '#'.
        let r = parse("1..2\nDiff too high: 2700000..not ok 1 ITIMER_VIRTUAL\nok 2 ITIMER_PROF\n");
        assert_eq!(r.cases.len(), 2, "{r:?}");
        assert_eq!(r.cases[0].diagnostics, vec!["Diff too high: 2700000.."]);
        assert!(r.unparsed.is_empty(), "{:?}", r.unparsed);
        // Words are not glue: a description or a diagnostic that says "not ok" stays one.
        let r = parse("1..1\n# the first try was not ok 1 time\nok 1 retried\n");
        assert_eq!(r.cases.len(), 1);
        assert_eq!(r.cases[0].status, Status::Pass);
        let r = parse("1..1\nnot ok 1 case:not ok 2\n");
        assert_eq!(r.cases.len(), 1);
        assert_eq!(r.cases[0].description, "case:not ok 2");
    }

    /// epoll_wakeup_test (kselftest_harness.h): `#  RUN` and `#  OK` lines around each result.
    #[test]
    fn a_harness_program_reads_one_result_per_test() {
        let text = "TAP version 13\n1..3\n# Starting 3 tests from 1 test cases.\n#  RUN           global.epoll1 ...\n#            OK  global.epoll1\nok 1 global.epoll1\n#  RUN           global.epoll2 ...\n# epoll_wakeup_test.c:210:epoll2:Expected ret (0) == 1 (1)\n# epoll2: Test terminated by assertion\n#          FAIL  global.epoll2\nnot ok 2 global.epoll2\n#  RUN           global.epoll3 ...\n# epoll3: Test terminated by timeout\n#          FAIL  global.epoll3\nnot ok 3 global.epoll3\n# FAILED: 1 / 3 tests passed.\n# Totals: pass:1 fail:2 xfail:0 xpass:0 skip:0 error:0\n";
        let r = parse(text);
        assert_eq!(r.cases.len(), 3);
        assert_eq!(r.cases[1].description, "global.epoll2");
        assert!(r.cases[1]
            .diagnostics
            .iter()
            .any(|d| d.contains("Expected ret (0) == 1 (1)")));
        match r.verdict(Exit::Code(1)) {
            ProgramVerdict::Fail(why) => {
                assert!(why.iter().any(|w| w.starts_with("fail 2:")), "{why:?}");
                assert!(why.iter().any(|w| w.starts_with("fail 3:")), "{why:?}");
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(
            r.keyed_cases("epoll_wakeup_test")[2].0,
            "epoll_wakeup_test:3"
        );
    }

    /// set-timer-lat (Linux 6.12) prints no TAP: a verdict at the end of each line.
    const SET_TIMER_LAT_OK: &str = "Setting timers for every 1 seconds\nCLOCK_REALTIME         ABSTIME PERIODIC timer fired early:       0 : [OK]\nCLOCK_REALTIME         ABSTIME PERIODIC max latency:     125840 ns : [OK]\nCLOCK_REALTIME         ABSTIME ONE-SHOT count:                   1 : [OK]\nCLOCK_REALTIME_ALARM   ABSTIME missing CAP_WAKE_ALARM?    : [UNSUPPORTED]\n";

    #[test]
    fn bracketed_verdict_lines_are_cases_numbered_in_order() {
        let r = parse_bracketed(SET_TIMER_LAT_OK);
        assert_eq!(r.cases.len(), 4);
        assert_eq!(
            r.cases[1].description,
            "CLOCK_REALTIME         ABSTIME PERIODIC max latency:     125840 ns"
        );
        assert_eq!(
            r.cases[0].diagnostics,
            vec!["Setting timers for every 1 seconds"]
        );
        assert_eq!(r.cases[3].status, Status::Skip);
        assert_eq!(r.verdict(Exit::Code(0)), ProgramVerdict::Pass);
        assert_eq!(r.keyed_cases("set-timer-lat")[3].0, "set-timer-lat:4");
        let bad = SET_TIMER_LAT_OK.replace(
            "max latency:     125840 ns : [OK]",
            "max latency:   61234567 ns : [FAILED]",
        );
        match parse_bracketed(&bad).verdict(Exit::Code(1)) {
            ProgramVerdict::Fail(why) => {
                assert!(why.iter().any(|w| w == "exit 1"), "{why:?}");
                assert!(why.iter().any(|w| w.starts_with("fail 2:")), "{why:?}");
            }
            v => panic!("{v:?}"),
        }
        // mqueue-lat: one line; a failing exit status fails even when the line is lost.
        let r = parse_bracketed("Mqueue latency :                          [OK]\n");
        assert_eq!(r.cases[0].description, "Mqueue latency");
        assert_eq!(r.verdict(Exit::Code(0)), ProgramVerdict::Pass);
        assert!(matches!(
            parse_bracketed("Mqueue latency :   ").verdict(Exit::Code(1)),
            ProgramVerdict::Fail(_)
        ));
        // Nothing at all with a clean exit is no pass, and a signal always fails.
        assert!(matches!(
            parse_bracketed("").verdict(Exit::Code(0)),
            ProgramVerdict::Fail(_)
        ));
        assert!(matches!(
            parse_bracketed(SET_TIMER_LAT_OK).verdict(Exit::Signal(6)),
            ProgramVerdict::Fail(_)
        ));
        // A bracket that is no verdict stays text.
        let r = parse_bracketed("read [buffer]\nok : [OK]\n");
        assert_eq!(r.cases.len(), 1);
        assert_eq!(r.cases[0].diagnostics, vec!["read [buffer]"]);
    }

    #[test]
    fn half_lines_and_noise_are_kept_not_lost() {
        let r = parse("TAP version 13\n1..2\nok 1 a\nnot o\nokay 2\n\u{0}garbage\n");
        assert_eq!(r.cases.len(), 1);
        assert_eq!(r.unparsed, vec!["not o", "okay 2", "\u{0}garbage"]);
        assert!(matches!(r.verdict(Exit::Code(0)), ProgramVerdict::Fail(_)));
    }
}

/// Fuzzing (issue 16): the reader takes whatever a kselftest program printed, including a
/// half-written line of one that crashed, so no input may panic it, and well-formed TAP must
/// read back exactly. `PROPTEST_CASES` raises the case count (`scripts/fuzz.sh`).
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn exit() -> impl Strategy<Value = Exit> {
        prop_oneof![
            any::<i32>().prop_map(Exit::Code),
            any::<i32>().prop_map(Exit::Signal),
            Just(Exit::Code(0)),
            Just(Exit::Code(KSFT_SKIP)),
        ]
    }

    /// Lines that look like TAP more often than random text would.
    fn tapish_line() -> impl Strategy<Value = String> {
        prop_oneof![
            ".*",
            "(not )?ok [0-9]{1,12}( [a-z #]{0,20})?",
            "ok [0-9]{1,3} # (SKIP|XFAIL|XPASS|TODO|skip|error)[ a-z]{0,10}",
            "1\\.\\.[0-9]{1,12}( # SKIP[ a-z]{0,10})?",
            "# Totals: pass:[0-9]{1,12} fail:[0-9]{1,12} xfail:[0-9]{1,3} xpass:[0-9]{1,3} skip:[0-9]{1,3} error:[0-9]{1,3}",
            "Bail out!.{0,10}",
            "(TAP|KTAP) version [0-9]{1,3}",
            " {1,12}(not )?ok [0-9]{1,3}.{0,8}",
            " {1,12}1\\.\\.[0-9]{1,3}",
            "#.{0,20}",
        ]
    }

    fn status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::Pass),
            Just(Status::Fail),
            Just(Status::Skip),
            Just(Status::XFail),
            Just(Status::XPass),
            Just(Status::Error),
        ]
    }

    /// One result line as kselftest.h prints it.
    fn render(n: u32, desc: &str, s: Status) -> String {
        match s {
            Status::Pass => format!("ok {n} {desc}"),
            Status::Fail => format!("not ok {n} {desc}"),
            Status::Skip => format!("ok {n} # SKIP {desc}"),
            Status::XFail => format!("ok {n} # XFAIL {desc}"),
            Status::XPass => format!("ok {n} # XPASS {desc}"),
            Status::Error => format!("not ok {n} # error {desc}"),
            Status::Todo => format!("not ok {n} # TODO {desc}"),
        }
    }

    proptest! {
        #[test]
        fn fuzz_any_text_reads_without_a_panic(text in ".*", e in exit()) {
            let r = parse(&text);
            let _ = r.verdict(e);
            let _ = r.keyed_cases("p");
            let r = parse_bracketed(&text);
            let _ = r.verdict(e);
        }

        #[test]
        fn fuzz_tapish_lines_read_without_a_panic(
            lines in proptest::collection::vec(tapish_line(), 0..40),
            e in exit(),
        ) {
            let r = parse(&lines.join("\n"));
            let v = r.verdict(e);
            // A failing case or a bail-out never reads as a pass or a skip.
            if r.bail_out.is_some() || r.keyed_cases("").iter().any(|(_, c)| c.status.is_failure()) {
                prop_assert!(matches!(v, ProgramVerdict::Fail(_)), "{v:?} for {lines:?}");
            }
        }

        #[test]
        fn fuzz_well_formed_tap_reads_back_exactly(
            cases in proptest::collection::vec((status(), "[a-z][a-z _=0-9]{0,20}[a-z0-9]"), 1..30),
            diag in proptest::collection::vec("[a-z][ a-z:=0-9]{0,20}", 0..3),
        ) {
            let mut text = format!("TAP version 13\n1..{}\n", cases.len());
            for d in &diag {
                text.push_str(&format!("# {d}\n"));
            }
            for (i, (s, d)) in cases.iter().enumerate() {
                text.push_str(&render(i as u32 + 1, d, *s));
                text.push('\n');
            }
            let r = parse(&text);
            prop_assert_eq!(r.planned, Some(cases.len() as u32));
            prop_assert_eq!(r.cases.len(), cases.len());
            prop_assert!(r.unparsed.is_empty(), "{:?}", r.unparsed);
            for (i, (c, (s, _))) in r.cases.iter().zip(&cases).enumerate() {
                prop_assert_eq!(c.number, i as u32 + 1);
                prop_assert_eq!(c.status, *s, "line {:?}", c.line);
            }
            let failing = cases.iter().any(|(s, _)| s.is_failure());
            let all_skipped = cases.iter().all(|(s, _)| *s == Status::Skip);
            match r.verdict(Exit::Code(0)) {
                ProgramVerdict::Fail(_) => prop_assert!(failing),
                ProgramVerdict::Skip(_) => prop_assert!(!failing && all_skipped),
                ProgramVerdict::Pass => prop_assert!(!failing && !all_skipped),
            }
            // A program that printed all of that and then died is never a pass.
            let killed = r.verdict(Exit::Signal(9));
            prop_assert!(matches!(killed, ProgramVerdict::Fail(_)));
        }
    }
}
