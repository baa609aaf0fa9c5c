//! Every report format rendered from one realistic comparison (two arches, every verdict, a
//! metric with per-run values and latency histograms, kernel crashes on both sides), with
//! the HTML report screenshotted in headless Chromium to prove it draws a real page.
//!
//! Chromium comes from `make setup` (scripts/setup.sh installs the Debian package). When it
//! is missing, this test fails and says so: a skipped screenshot would hide a broken report.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use lab::arch::Arch;
use lab::compare::model::{
    Better, CompareReport, CrashFinding, DesignInfo, MetricDetail, Overall, PairedRatio,
    QuestionKind, QuestionResult, RateDetail, Side, SideInfo, SideKernel, Verdict,
    REPORT_FORMAT_VERSION,
};
use lab::report::{render, ReportFormat};
use lab::stats::{Counts, Decision, Direction, FixedN, Interval};

// ---------------------------------------------------------------------------------------
// The comparison.

fn iv(lower: f64, upper: f64) -> Interval {
    Interval { lower, upper }
}

/// A question with the fields every question shares filled in.
fn question(
    test: &str,
    arch: Arch,
    question: QuestionKind,
    verdict: Verdict,
    decision: Decision,
    runs: u64,
) -> QuestionResult {
    QuestionResult {
        test: test.into(),
        arch,
        question,
        verdict,
        decision,
        runs_a: runs,
        runs_b: runs,
        rate: None,
        metric: None,
        p_value: None,
        p_adjusted: None,
        alpha: 0.05,
        evidence_a: None,
        evidence_b: None,
        looks: Vec::new(),
        fixed_n: Some(FixedN {
            difference: 120,
            equivalence: 96,
            per_side: 120,
        }),
        secondary_to: None,
    }
}

fn rate(a: (u64, u64), b: (u64, u64), ia: Interval, ib: Interval, p: f64) -> RateDetail {
    RateDetail {
        a: Counts::new(a.0, a.1),
        b: Counts::new(b.0, b.1),
        boots_a: Counts::new(a.0 / 3, a.1.min(a.0 / 3)),
        boots_b: Counts::new(b.0 / 3, b.1.min(b.0 / 3)),
        interval_a: ia,
        interval_b: ib,
        fisher_p: p,
    }
}

/// Deterministic per-run values around `centre`: a fixed linear congruential sequence, so
/// the plots (and the screenshot) are the same on every run.
fn runs_around(centre: f64, spread: f64, n: usize, seed: u64) -> Vec<f64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            centre * (1.0 + spread * (u - 0.5) * 2.0)
        })
        .collect()
}

/// A pooled latency histogram with power-of-two buckets, its mode at `mode_us`, a tail, and
/// the overflow bucket the guest suite reports as `u64::MAX`.
fn latency_histogram(mode_us: u64, tail: u64) -> Histogram {
    let mut h = Vec::new();
    let mut bound = 1u64;
    while bound <= 4096 {
        let d = (bound as f64 / mode_us as f64).log2().abs();
        let count = (20000.0 * (-d * d / 1.5).exp()) as u64 + if bound >= 512 { tail } else { 0 };
        h.push((bound, count));
        bound *= 2;
    }
    h.push((u64::MAX, tail / 4));
    h
}

/// Pooled latency histogram buckets: (upper bound, count).
type Histogram = Vec<(u64, u64)>;

fn metric(
    values_a: Vec<f64>,
    values_b: Vec<f64>,
    unit: &str,
    shift: (f64, f64, f64),
    hist: Option<(Histogram, Histogram)>,
) -> MetricDetail {
    let (histogram_a, histogram_b, histogram_name) = match hist {
        Some((a, b)) => (a, b, Some("wake_us".to_owned())),
        None => (Vec::new(), Vec::new(), None),
    };
    MetricDetail {
        values_a,
        values_b,
        unit: unit.into(),
        paired_ratio: Some(PairedRatio {
            estimate: shift.0,
            lower: shift.1,
            upper: shift.2,
            confidence: 0.95,
            pairs: 12,
            p_value: 0.003,
        }),
        contended_pairs: 0,
        quantisation: None,
        histogram_a,
        histogram_b,
        histogram_name,
    }
}

const TRACE: &str = "[   41.203117] BUG: sleeping function called from invalid context at kernel/locking/spinlock_rt.c:48
[   41.203121] in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 233, name: futex_wake_race
[   41.203125] preempt_count: 1, expected: 0
[   41.203127] RCU nest depth: 0, expected: 0
[   41.203131] CPU: 1 UID: 0 PID: 233 Comm: futex_wake_race Not tainted 6.12.57-rt15+ #1
[   41.203134] Call Trace:
[   41.203135]  <TASK>
[   41.203137]  dump_stack_lvl+0x4b/0x70
[   41.203141]  __might_resched.cold+0xcc/0xdf
[   41.203145]  rt_spin_lock+0x2d/0xb0
[   41.203149]  futex_wake+0x9e/0x1a0
[   41.203152]  do_futex+0x11d/0x1d0
[   41.203155]  __x64_sys_futex+0x77/0x1d0
[   41.203158]  do_syscall_64+0x57/0x110
[   41.203161]  entry_SYSCALL_64_after_hwframe+0x76/0x7e
[   41.203164]  </TASK>";

/// A comparison as `lab compare` would end it: B regresses futex_wake_race on x86_64 (more
/// failures, slower wake-ups, a kernel BUG), and every other verdict kind shows up once.
fn realistic_report() -> CompareReport {
    let x86 = Arch::X86_64;
    let arm = Arch::Arm64;
    let wake = || QuestionKind::Metric {
        name: "wake_us_p99".into(),
        better: Better::Lower,
    };

    let mut q1 = question(
        "futex_wake_race",
        x86,
        QuestionKind::FailureRate,
        Verdict::Regression,
        Decision::Different {
            direction: Direction::BHigher,
            estimate: 0.125,
            interval: iv(0.031, 0.262),
            error_rate: 0.05,
        },
        48,
    );
    q1.rate = Some(rate(
        (48, 0),
        (48, 6),
        iv(0.0, 0.074),
        iv(0.059, 0.247),
        0.026,
    ));
    q1.p_value = Some(0.026);
    q1.p_adjusted = Some(0.13);
    q1.evidence_b = Some(
        "run 17 fail: futex_wait returned 0 but the waker saw no waiter (lost wake-up) after 2143 rounds"
            .into(),
    );

    let mut q2 = question(
        "futex_wake_race",
        x86,
        wake(),
        Verdict::Regression,
        Decision::Different {
            direction: Direction::BHigher,
            estimate: 1.18,
            interval: iv(1.06, 1.31),
            error_rate: 0.05,
        },
        48,
    );
    q2.metric = Some(metric(
        runs_around(84.0, 0.12, 48, 1),
        runs_around(99.0, 0.14, 48, 2),
        "us",
        (1.18, 1.09, 1.27),
        Some((latency_histogram(64, 30), latency_histogram(64, 400))),
    ));
    q2.p_value = Some(0.0004);
    q2.p_adjusted = Some(0.003);

    let mut q3 = question(
        "wq_exclusive_wake",
        x86,
        QuestionKind::FailureRate,
        Verdict::NoDifference { margin: 0.15 },
        Decision::Equivalent {
            margin: 0.15,
            estimate: 0.021,
            interval: iv(-0.049, 0.098),
            error_rate: 0.05,
        },
        48,
    );
    q3.rate = Some(rate(
        (48, 0),
        (48, 1),
        iv(0.0, 0.074),
        iv(0.004, 0.109),
        1.0,
    ));

    let mut q4 = question(
        "futex_requeue_pi",
        x86,
        QuestionKind::FailureRate,
        Verdict::Inconclusive {
            more_runs: Some(64),
        },
        Decision::Inconclusive {
            more_runs_estimate: 64,
            estimate: 0.0625,
            interval: Some(iv(-0.041, 0.183)),
        },
        48,
    );
    q4.rate = Some(rate(
        (48, 2),
        (48, 5),
        iv(0.012, 0.140),
        iv(0.045, 0.222),
        0.43,
    ));
    q4.evidence_a = Some("run 30 hang: guest watchdog after 60s in futex_lock_pi".into());
    q4.evidence_b = Some("run 4 fail: requeued waiter woke twice".into());

    let mut q5 = question(
        "futex_wake_race",
        arm,
        QuestionKind::FailureRate,
        Verdict::Improvement,
        Decision::Different {
            direction: Direction::BLower,
            estimate: -0.125,
            interval: iv(-0.268, -0.012),
            error_rate: 0.05,
        },
        40,
    );
    q5.rate = Some(rate(
        (40, 5),
        (40, 0),
        iv(0.055, 0.261),
        iv(0.0, 0.088),
        0.055,
    ));
    q5.evidence_a = Some("run 3 kernel-crash: WARNING at kernel/futex/waitwake.c:171".into());

    let mut q6 = question(
        "futex_wake_race",
        arm,
        wake(),
        Verdict::NoDifference { margin: 0.05 },
        Decision::Equivalent {
            margin: 0.05,
            estimate: 1.01,
            interval: iv(0.972, 1.043),
            error_rate: 0.05,
        },
        40,
    );
    q6.metric = Some(metric(
        runs_around(132.0, 0.08, 40, 3),
        runs_around(133.0, 0.08, 40, 4),
        "us",
        (1.01, 0.981, 1.036),
        Some((latency_histogram(128, 40), latency_histogram(128, 45))),
    ));

    let mut q7 = question(
        "pipe_pingpong",
        arm,
        QuestionKind::Metric {
            name: "round_trips_per_s".into(),
            better: Better::Higher,
        },
        Verdict::Improvement,
        Decision::Different {
            direction: Direction::BHigher,
            estimate: 1.07,
            interval: iv(1.01, 1.13),
            error_rate: 0.05,
        },
        40,
    );
    q7.metric = Some(metric(
        runs_around(41200.0, 0.05, 40, 5),
        runs_around(44100.0, 0.05, 40, 6),
        "/s",
        (1.07, 1.02, 1.12),
        None,
    ));

    let mut q8 = question(
        "wq_exclusive_wake",
        arm,
        QuestionKind::FailureRate,
        Verdict::Inconclusive { more_runs: None },
        Decision::Inconclusive {
            more_runs_estimate: u64::MAX,
            estimate: 0.0,
            interval: Some(iv(-0.09, 0.09)),
        },
        40,
    );
    q8.rate = Some(rate(
        (40, 1),
        (40, 1),
        iv(0.004, 0.129),
        iv(0.004, 0.129),
        1.0,
    ));

    let kernels = |keys: [&str; 2], release: &str| {
        vec![
            SideKernel {
                arch: x86,
                kernel_key: keys[0].into(),
                kernel_release: release.into(),
                image_digest: format!("sha256:{}", keys[0].repeat(4)),
            },
            SideKernel {
                arch: arm,
                kernel_key: keys[1].into(),
                kernel_release: release.into(),
                image_digest: format!("sha256:{}", keys[1].repeat(4)),
            },
        ]
    };
    let run_dirs: Vec<String> = (1..=12)
        .map(|i| {
            let arch = if i % 2 == 0 { "arm64" } else { "x86_64" };
            let side = if i % 4 < 2 { "a" } else { "b" };
            format!("/root/.cache/lab/runs/0042-{side}-{arch}-{i:02}")
        })
        .collect();

    CompareReport {
        format_version: REPORT_FORMAT_VERSION,
        lab_version: "0.1.0".into(),
        session: 42,
        started_at: "2025-06-01T10:00:00Z".into(),
        a: SideInfo {
            spec: "base".into(),
            label: "debian-6.12".into(),
            kernels: kernels(["3f2a9c01", "a81c44d0"], "6.12.57-rt15"),
        },
        b: SideInfo {
            spec: "futex-lockless-wakeup-revert".into(),
            label: "debian-6.12+futex-lockless-wakeup-revert".into(),
            kernels: kernels(["77be0d42", "c90e13aa"], "6.12.57-rt15+"),
        },
        arches: vec![x86, arm],
        tests: vec![
            "futex_wake_race".into(),
            "wq_exclusive_wake".into(),
            "futex_requeue_pi".into(),
            "pipe_pingpong".into(),
        ],
        knobs: vec![("futex_amp_spurious_wake_us".into(), "200".into())],
        design: DesignInfo {
            alpha: 0.05,
            alpha_equivalence: 0.05,
            power: 0.8,
            margin_rate: 0.15,
            margin_metric: 0.05,
            max_runs_per_side: 48,
            budget_s: 3600,
            batch_runs: 8,
            test_duration_ms: 2000,
            spending: "obrien-fleming".into(),
            multiplicity: "holm".into(),
        },
        questions: vec![q1, q2, q3, q4, q5, q6, q7, q8],
        crashes: vec![
            CrashFinding {
                side: Side::B,
                arch: x86,
                test: "futex_wake_race".into(),
                title: "BUG: sleeping function called from invalid context at kernel/locking/spinlock_rt.c:48".into(),
                fingerprint: "bug-sleeping:rt_spin_lock|futex_wake|do_futex".into(),
                fingerprint_id: "c0ffee12".into(),
                excerpt: TRACE.into(),
                occurrences: 3,
                run_dir: "/root/.cache/lab/runs/0042-b-x86_64-03".into(),
            },
            CrashFinding {
                side: Side::A,
                arch: arm,
                test: "futex_wake_race".into(),
                title: "WARNING: CPU: 1 PID: 198 at kernel/futex/waitwake.c:171 futex_wake_mark+0x5c/0x80".into(),
                fingerprint: "warning:futex_wake_mark|futex_wake|do_futex".into(),
                fingerprint_id: "5eed0a11".into(),
                excerpt: "[   12.5] WARNING: CPU: 1 PID: 198 at kernel/futex/waitwake.c:171 futex_wake_mark+0x5c/0x80\n[   12.5] Call trace:\n[   12.5]  futex_wake_mark+0x5c/0x80\n[   12.5]  futex_wake+0x13c/0x1d0".into(),
                occurrences: 5,
                run_dir: "/root/.cache/lab/runs/0042-a-arm64-02".into(),
            },
        ],
        overall: Overall::Regression,
        reused_runs: 16,
        runs_made: 160,
        infra_errors: 2,
        time_to_verdict_s: 2710.0,
        first_regression_s: Some(95.0),
        wall_s: 2795.5,
        runs_per_side_used: 88,
        runs_per_side_fixed_n: 240,
        accel: vec![
            (x86, "tcg (kvm cannot boot a stock kernel on this host)".into()),
            (arm, "tcg (no kvm for a foreign arch)".into()),
        ],
        run_dirs,
        reproduce: "lab compare base futex-lockless-wakeup-revert --arch all --knob futex_amp_spurious_wake_us=200".into(),
    }
}

// ---------------------------------------------------------------------------------------
// A tiny XML well-formedness check: enough to prove the exporters balance their tags,
// quote their attributes, escape their text and never write a character XML forbids.

fn check_entity(s: &str, at: usize) -> Result<usize, String> {
    let end = s[at..]
        .find(';')
        .ok_or_else(|| format!("unterminated entity at byte {at}"))?;
    let name = &s[at + 1..at + end];
    let ok = matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
        || name
            .strip_prefix("#x")
            .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
        || name
            .strip_prefix('#')
            .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(at + end + 1)
    } else {
        Err(format!("unknown entity &{name}; at byte {at}"))
    }
}

fn check_text(s: &str, from: usize, to: usize) -> Result<(), String> {
    let mut i = from;
    while i < to {
        let c = s[i..].chars().next().ok_or("cut char")?;
        if c == '&' {
            i = check_entity(s, i)?;
            continue;
        }
        if c == '<' {
            return Err(format!("raw < in text at byte {i}"));
        }
        if (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}' {
            return Err(format!(
                "character U+{:04X} not allowed in XML at byte {i}",
                c as u32
            ));
        }
        i += c.len_utf8();
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | ':' | '.')
}

/// Checks `s` is one well-formed XML element (after an optional prolog and doctype).
fn well_formed(s: &str) -> Result<(), String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut roots = 0;
    let mut i = 0;
    while i < s.len() {
        let Some(rel) = s[i..].find('<') else {
            check_text(s, i, s.len())?;
            if !s[i..].trim().is_empty() && stack.is_empty() {
                return Err("text after the root element".into());
            }
            break;
        };
        let lt = i + rel;
        check_text(s, i, lt)?;
        if stack.is_empty() && !s[i..lt].trim().is_empty() {
            return Err(format!("text outside the root element at byte {i}"));
        }
        let rest = &s[lt..];
        if rest.starts_with("<?") {
            i = lt + rest.find("?>").ok_or("unterminated <?")? + 2;
            continue;
        }
        if rest.starts_with("<!--") {
            i = lt + rest.find("-->").ok_or("unterminated comment")? + 3;
            continue;
        }
        if rest.starts_with("<!DOCTYPE") {
            i = lt + rest.find('>').ok_or("unterminated doctype")? + 1;
            continue;
        }
        if let Some(close) = rest.strip_prefix("</") {
            let name_len = close
                .find(|c: char| !is_name_char(c))
                .unwrap_or(close.len());
            let name = &close[..name_len];
            let after = close[name_len..].trim_start();
            if !after.starts_with('>') {
                return Err(format!("bad end tag </{name} at byte {lt}"));
            }
            match stack.pop() {
                Some(open) if open == name => {}
                other => return Err(format!("</{name}> closes {other:?} at byte {lt}")),
            }
            i = lt + 2 + name_len + (close[name_len..].len() - after.len()) + 1;
            continue;
        }
        // Start tag: name, attributes, then > or />.
        let body = &rest[1..];
        let name_len = body.find(|c: char| !is_name_char(c)).unwrap_or(body.len());
        if name_len == 0 {
            return Err(format!("raw < at byte {lt}"));
        }
        let name = &body[..name_len];
        let mut j = lt + 1 + name_len;
        let mut seen: Vec<&str> = Vec::new();
        loop {
            let ws = s[j..].len() - s[j..].trim_start().len();
            j += ws;
            let r = &s[j..];
            if r.starts_with("/>") {
                j += 2;
                if stack.is_empty() {
                    roots += 1;
                }
                break;
            }
            if r.starts_with('>') {
                j += 1;
                if stack.is_empty() {
                    roots += 1;
                }
                stack.push(name);
                break;
            }
            if ws == 0 {
                return Err(format!("no space before attribute in <{name}> at byte {j}"));
            }
            let an = r.find(|c: char| !is_name_char(c)).unwrap_or(r.len());
            if an == 0 {
                return Err(format!("bad attribute in <{name}> at byte {j}"));
            }
            let attr_name = &r[..an];
            if seen.contains(&attr_name) {
                return Err(format!("attribute {attr_name} twice in <{name}>"));
            }
            seen.push(attr_name);
            let after = &r[an..];
            let q = after
                .strip_prefix('=')
                .and_then(|a| a.chars().next())
                .filter(|c| *c == '"' || *c == '\'')
                .ok_or_else(|| format!("attribute {attr_name} in <{name}> is not quoted"))?;
            let vstart = j + an + 2;
            let vend = vstart + s[vstart..].find(q).ok_or("unterminated attribute")?;
            check_text(s, vstart, vend)?;
            j = vend + 1;
        }
        if roots > 1 {
            return Err("more than one root element".into());
        }
        // Raw-text elements would break an XML reader; the reports have none but <style>,
        // whose content must then hold no markup characters, which check_text ensures.
        i = j;
    }
    if let Some(open) = stack.pop() {
        return Err(format!("<{open}> is never closed"));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements"));
    }
    Ok(())
}

#[test]
fn the_well_formedness_check_catches_broken_xml() {
    assert!(well_formed("<?xml version=\"1.0\"?>\n<a x=\"1\"><b/>t &amp; u</a>\n").is_ok());
    for bad in [
        "<a><b></a></b>",
        "<a>",
        "<a x=1/>",
        "<a>x & y</a>",
        "<a>x < y</a>",
        "<a>\u{1}</a>",
        "<a/><b/>",
        "<a x=\"<\"/>",
        "<a>&bogus;</a>",
    ] {
        assert!(well_formed(bad).is_err(), "accepted {bad:?}");
    }
}

/// The value of `name="..."` in the first tag that starts with `tag`.
fn attr_of(xml: &str, tag: &str, name: &str) -> String {
    let at = xml.find(tag).unwrap_or_else(|| panic!("no {tag}"));
    let end = at + xml[at..].find('>').expect("tag ends");
    let t = &xml[at..end];
    let key = format!(" {name}=\"");
    let v = t
        .find(&key)
        .unwrap_or_else(|| panic!("{tag} has no {name}"))
        + key.len();
    t[v..v + t[v..].find('"').expect("quoted")].to_owned()
}

// ---------------------------------------------------------------------------------------
// The formats.

#[test]
fn json_round_trips_the_model() {
    let report = realistic_report();
    let json = render(&report, ReportFormat::Json).expect("json renders");
    let back: CompareReport = serde_json::from_str(&json).expect("json parses back");
    // serde_json (without its `float_roundtrip` feature) may parse a float back one ulp
    // off, so numbers are compared to a relative 1e-12; everything else exactly.
    let (want, got) = (
        serde_json::to_value(&report).expect("to value"),
        serde_json::to_value(&back).expect("to value"),
    );
    same_json(&want, &got, "$");
    assert!(json.contains("\"format_version\": 2"));
}

fn same_json(want: &serde_json::Value, got: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (want, got) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().expect("number"), b.as_f64().expect("number"));
            assert!(
                a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs()),
                "{at}: {a} became {b}"
            );
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{at}: length");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                same_json(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            assert_eq!(
                a.keys().collect::<Vec<_>>(),
                b.keys().collect::<Vec<_>>(),
                "{at}: keys"
            );
            for (k, x) in a {
                same_json(x, &b[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(want, got, "{at}"),
    }
}

#[test]
fn junit_has_one_case_per_question_and_crash() {
    let report = realistic_report();
    let xml = render(&report, ReportFormat::Junit).expect("junit renders");
    well_formed(&xml).unwrap_or_else(|e| panic!("junit is not well-formed XML: {e}\n{xml}"));
    // 8 questions + 2 crashes; failures: 2 regressions + 2 crashes; skipped: 2 inconclusive.
    assert_eq!(xml.matches("<testcase ").count(), 10);
    assert_eq!(xml.matches("<failure ").count(), 4);
    assert_eq!(xml.matches("<skipped ").count(), 2);
    assert_eq!(xml.matches("<testsuite ").count(), 2, "one suite per arch");
    assert_eq!(attr_of(&xml, "<testsuites", "tests"), "10");
    assert_eq!(attr_of(&xml, "<testsuites", "failures"), "4");
    assert_eq!(attr_of(&xml, "<testsuites", "skipped"), "2");
    assert_eq!(
        attr_of(&xml, "<testsuite name=\"lab.compare.x86_64\"", "tests"),
        "5"
    );
    assert_eq!(
        attr_of(&xml, "<testsuite name=\"lab.compare.arm64\"", "failures"),
        "1"
    );
    assert!(xml.contains(
        "<testcase classname=\"lab.compare.x86_64.futex_wake_race\" name=\"wake_us_p99\" time=\"192.000\">"
    ));
    assert!(xml.contains("<property name=\"a.spec\" value=\"base\"/>"));
    assert!(xml.contains("<property name=\"b.spec\" value=\"futex-lockless-wakeup-revert\"/>"));
    // The console excerpt is in the crash's failure, escaped.
    assert!(xml.contains("&lt;TASK&gt;\n"));
    assert!(
        xml.contains("lost wake-up"),
        "regression evidence is in the failure"
    );
}

#[test]
fn markdown_states_margins_and_intervals() {
    let report = realistic_report();
    let md = render(&report, ReportFormat::Markdown).expect("markdown renders");
    for needle in [
        "no difference: B's boots fail at most 15.0 points more often than A's, at 95%",
        "no difference: a shift of more than 5% either way ruled out at α=0.05",
        "B − A = +12.5 points, 95% repeated CI [+3.1, +26.2]",
        "ratio B/A x1.18, 95% CI [1.09, 1.27]",
        "about 64 more boots per side",
        "improvement: B fails less often than A, at α=0.05",
        "round_trips_per_s is higher on B than on A (higher is better)",
        // The excerpt as an indented code block, the trace markers intact.
        "\n    [   41.203135]  <TASK>\n",
        "Reproduce\n---------",
        "x86_64: A 3f2a9c01 (6.12.57-rt15), B 77be0d42 (6.12.57-rt15+)",
        "arm64: A a81c44d0 (6.12.57-rt15), B c90e13aa (6.12.57-rt15+)",
        "    lab compare base futex-lockless-wakeup-revert --arch all",
        "    /root/.cache/lab/runs/0042-b-x86_64-03",
    ] {
        // Prose is wrapped for mail: compare with runs of spaces and line breaks as one.
        let flat = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
        let code_block = needle.starts_with('\n') || needle.starts_with("    ");
        let found = if code_block {
            md.contains(needle)
        } else {
            flat(&md).contains(&flat(needle))
        };
        assert!(found, "markdown lacks {needle:?}:\n{md}");
    }
    assert!(!md.contains("```"), "LKML-friendly: no fences");
}

#[test]
fn terminal_fits_120_columns() {
    let report = realistic_report();
    let text = render(&report, ReportFormat::Terminal { color: false }).expect("renders");
    for l in text.lines() {
        assert!(l.chars().count() <= 120, "too wide: {l}");
    }
    assert!(text.contains("0/48          6/48 (12.5%)"), "{text}");
    assert!(text.contains("x1.18 [1.09, 1.27]"));
    assert!(text.contains("c0ffee12 bug-sleeping:rt_spin_lock|futex_wake|do_futex"));
    assert!(text.contains("88 boots/side used; a fixed-n design settles all with 240"));
    let colored = render(&report, ReportFormat::Terminal { color: true }).expect("renders");
    assert!(colored.contains("\x1b[31mregression"));
}

// ---------------------------------------------------------------------------------------
// The HTML report, and what a browser makes of it.

#[test]
fn html_is_self_contained_with_a_plot_per_question() {
    let report = realistic_report();
    let html = render(&report, ReportFormat::Html).expect("html renders");
    well_formed(&html).unwrap_or_else(|e| panic!("html is not well-formed: {e}"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network URL"
    );
    for external in ["<script", "<link", "<img", "url(", "@import", "@font-face"] {
        assert!(
            !html.contains(external),
            "html refers to something outside: {external}"
        );
    }
    // One rate chart; per metric question a strip plot; two of them have histograms.
    assert_eq!(html.matches("<svg ").count(), 1 + 3 + 2);
    assert!(html.contains("aria-label=\"Failure rate per test and arch"));
    assert!(html.contains("aria-label=\"futex_wake_race · x86_64 · wake_us_p99: per-boot values\""));
    assert!(html.contains("aria-label=\"futex_wake_race · x86_64: wake_us histogram\""));
    assert!(html.contains("<text"), "plot text is SVG text");
    assert!(html.contains("<pre>[   41.203117] BUG: sleeping function"));
    assert!(html.contains("&lt;TASK&gt;"));
    assert!(html.contains("class=\"v-regression\""));
    assert!(html.contains("class=\"v-open\""));
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Runs scripts/screenshot-report.sh; fails the test, saying what to do, without Chromium.
fn screenshot(html: &Path, png: &Path) -> Vec<u8> {
    let script = repo_root().join("scripts/screenshot-report.sh");
    let out = Command::new(&script)
        .arg(html)
        .arg(png)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(2) && stderr.contains("chromium") {
        panic!("headless Chromium is not installed: run `make setup` (it installs the Debian package chromium); the script said: {stderr}");
    }
    assert!(
        out.status.success(),
        "screenshot-report.sh failed: {}\n{stderr}",
        out.status
    );
    std::fs::read(png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()))
}

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.len() > 24, "PNG too short");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&png[12..16], b"IHDR", "IHDR first");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

#[test]
fn html_screenshot_is_a_real_page() {
    // Kept under the target dir (not a temp dir that vanishes) so a person can look at it.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report_html");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("screenshot dir");

    let report = realistic_report();
    let html_path = dir.join("report.html");
    lab::report::write(&report, ReportFormat::Html, &html_path).expect("html written");
    let png = screenshot(&html_path, &dir.join("report.png"));

    let empty_path = dir.join("empty.html");
    std::fs::write(
        &empty_path,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"/></head><body></body></html>\n",
    )
    .expect("empty page");
    let empty = screenshot(&empty_path, &dir.join("empty.png"));

    assert_eq!(png_size(&png), (1400, 2400), "window size");
    assert_eq!(png_size(&empty), (1400, 2400));
    // A blank page compresses to almost nothing; text, tables and plots do not. Measured:
    // the empty page is a few KB, the report a few hundred.
    assert!(png.len() > 40_000, "screenshot is only {} bytes", png.len());
    assert!(
        png.len() > 8 * empty.len(),
        "the report ({} bytes) looks no busier than a blank page ({} bytes)",
        png.len(),
        empty.len()
    );
    eprintln!(
        "screenshot: {} ({} bytes; blank page {} bytes)",
        dir.join("report.png").display(),
        png.len(),
        empty.len()
    );
}
