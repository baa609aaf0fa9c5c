//! `lab compare` end to end: real kernels from the cache, real QEMU, real SSH, the real
//! results store. Each test asserts on the verdicts the statistics reached.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{lab, run};

/// The repository's own lab definition.
fn lab_toml() -> PathBuf {
    common::repo_lab_toml()
}

fn report(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).expect("lab compare --json prints the report")
}

fn question<'a>(r: &'a serde_json::Value, test: &str, kind: &str) -> &'a serde_json::Value {
    r["questions"]
        .as_array()
        .expect("questions")
        .iter()
        .find(|q| q["test"] == test && q["question"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} question for {test}"))
}

#[test]
fn a_known_bad_futex_variant_is_a_regression_with_its_errno_evidence() {
    let r = run(lab(&lab_toml()).args([
        "compare",
        "base",
        "bad-futex-no-spurious-retry",
        "--arch",
        "x86_64",
        "--tests",
        "futex_errno",
        "--budget",
        "5m",
        "--fresh",
        "--json",
    ]));
    assert_eq!(r.code, 1, "a regression exits 1");
    let rep = report(&r.stdout);
    assert_eq!(rep["overall"], "regression");
    let q = question(&rep, "futex_errno", "failure-rate");
    assert_eq!(q["verdict"]["verdict"], "regression");
    let evidence = q["evidence_b"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("ERESTART") || evidence.contains("errno"),
        "the evidence names the leaked errno: {evidence}"
    );
    assert!(q["evidence_a"].is_null(), "base never failed: {q}");
    // The rate interval behind the verdict excludes zero on the side of B.
    assert!(q["decision"]["interval"]["lower"].as_f64().unwrap_or(-1.0) > 0.0);
    assert!(
        rep["time_to_verdict_s"].as_f64().unwrap_or(1e9)
            <= rep["wall_s"].as_f64().unwrap_or(0.0) + 1e-6
    );
}

#[test]
fn the_same_kernel_on_both_sides_is_no_difference_and_no_false_alarm() {
    let r = run(lab(&lab_toml()).args([
        "compare",
        "base",
        "base",
        "--arch",
        "x86_64",
        "--tests",
        "futex_errno,pipe_excl",
        "--budget",
        "4m",
        "--fresh",
        "--json",
    ]));
    assert_eq!(r.code, 0, "no regression");
    let rep = report(&r.stdout);
    for q in rep["questions"].as_array().expect("questions") {
        let v = q["verdict"]["verdict"].as_str().unwrap_or_default();
        assert!(
            v == "no-difference" || v == "inconclusive",
            "an A/A comparison said {v}: {q}"
        );
    }
    // The boot is the unit: the failure rate counts boots, one per batch and side.
    let rate = question(&rep, "futex_errno", "failure-rate");
    let boots = rate["rate"]["boots_a"]["runs"].as_u64().unwrap_or(0);
    let runs = rate["rate"]["a"]["runs"].as_u64().unwrap_or(0);
    assert!(
        boots >= 2 && runs >= boots * 2,
        "boots {boots}, runs {runs}: {rate}"
    );
    // "No difference" on a failure rate is one-sided, and the bound reached is stated.
    let looks = rate["looks"].as_array().expect("looks");
    let upper = looks
        .last()
        .and_then(|l| l["equivalence_interval"]["upper"].as_f64())
        .expect("the last look has a bound");
    assert!(upper > 0.0 && upper < 1.0, "{rate}");
    // A failure rate the budget cannot clear even with every run passing is said to be so
    // after the first batch, by name, not left to an "inconclusive" at the end (when no run
    // failed: a question that already failed is not announced).
    let failed = |side: &str| rate["rate"][side]["failures"].as_u64().unwrap_or(0);
    if rate["verdict"]["verdict"] == "inconclusive" && failed("a") + failed("b") == 0 {
        assert!(
            r.stderr
                .contains("too slow to show \"no difference\" within the budget")
                && r.stderr.contains("x86_64 futex_errno: failure rate"),
            "an unreachable failure rate was not announced:\n{}",
            r.stderr
        );
    }
    // No metric question is decided "no difference" from an interval of zero width.
    for q in rep["questions"].as_array().expect("questions") {
        if q["verdict"]["verdict"] == "no-difference" {
            let iv = &q["decision"]["interval"];
            let width = iv["upper"].as_f64().unwrap_or(0.0) - iv["lower"].as_f64().unwrap_or(0.0);
            assert!(width > 0.0, "no difference from a degenerate interval: {q}");
        }
    }
}

#[test]
fn an_interrupted_comparison_keeps_its_runs_and_the_same_command_resumes_it() {
    let args = [
        "compare",
        "base",
        "futex-lockless-wakeup-revert",
        "--arch",
        "x86_64",
        "--tests",
        "futex_errno",
        "--duration",
        "450ms",
        "--budget",
        "4m",
        "--json",
    ];
    let mut child = lab(&lab_toml())
        .args(args)
        .arg("--fresh")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lab starts");
    // Let a few batches finish, then Ctrl-C.
    let started = Instant::now();
    let stderr = child.stderr.take().expect("stderr");
    // Read stderr to the end (a closed pipe would make lab's own messages fail), and say
    // when two batches are done.
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = String::new();
        let mut batches = 0;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("batch ") && line.contains(" done at ") {
                batches += 1;
                if batches == 2 {
                    let _ = tx.send(());
                }
            }
        }
        seen
    });
    let got_two = rx.recv_timeout(Duration::from_secs(480)).is_ok();
    assert!(got_two, "two batches before the interrupt");
    // SAFETY: kill(2) with a valid pid and signal.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().expect("lab exits");
    let seen = reader.join().expect("reader");
    assert_eq!(status.code(), Some(130), "Ctrl-C exits 130:\n{seen}");
    assert!(started.elapsed() < Duration::from_secs(600));

    let r = run(lab(&lab_toml()).args(args));
    assert!(
        r.stderr.contains("resuming comparison"),
        "the same command resumes the session:\n{}",
        r.stderr
    );
    let rep = report(&r.stdout);
    assert!(
        rep["reused_runs"].as_u64().unwrap_or(0) >= 6,
        "two batches of 3 runs per side were kept: {}",
        rep["reused_runs"]
    );
    assert!(
        r.stderr.contains("replayed this session's") && r.stderr.contains("keeps its horizon"),
        "the resumed session replays its own batches into the same design:\n{}",
        r.stderr
    );
    assert!(
        r.code == 0 || r.code == 1,
        "a verdict, not an infra failure"
    );
}

#[test]
fn bad_compare_input_is_a_usage_error() {
    for args in [
        vec!["compare", "base", "no-such-set", "--arch", "x86_64"],
        vec!["compare", "base", "base", "--alpha", "2"],
        vec!["compare", "base", "base", "--budget", "soon"],
        vec!["compare", "base", "key:zz", "--arch", "x86_64"],
    ] {
        let r = run(lab(&lab_toml()).args(&args));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("error"), "{}", r.stderr);
    }
}
