//! Runs every guest test program briefly against the host kernel, and checks the harness's
//! contract: one result line, exit codes, knobs, watchdog.
//!
//! The host kernel is a good kernel, so every test must pass here. `LAB_TEST_DEADLINE_SCALE`
//! (default 1) scales the tests' deadlines on a slow host; the tests already refuse to call
//! a busy CPU a lost wake-up (see `lab_guest_tests::blocked`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lab_proto::{TestResult, Verdict};

/// How long any one program may run here before the test gives up on it.
const HARD_LIMIT: Duration = Duration::from_secs(120);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The single result line; panics (failing the test) if there is not exactly one.
    fn result(&self) -> TestResult {
        let results: Vec<TestResult> = self
            .stdout
            .lines()
            .filter_map(|l| TestResult::parse_line(l).expect("a malformed result line"))
            .collect();
        assert_eq!(
            results.len(),
            1,
            "want exactly one result line\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        results.into_iter().next().expect("one result")
    }
}

fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start the test program");
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the test program") {
            break status;
        }
        if start.elapsed() > HARD_LIMIT {
            let _ = child.kill();
            panic!("{bin} still running after {HARD_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

fn deadline_scale() -> String {
    std::env::var("LAB_TEST_DEADLINE_SCALE").unwrap_or_else(|_| "1".into())
}

/// Runs one guest test for 400 ms and requires a pass (or a skip for missing privilege).
fn must_pass(name: &str, bin: &str) {
    let scale = deadline_scale();
    let r = run(
        bin,
        &[
            "--duration-ms",
            "400",
            "--seed",
            "7",
            "--deadline-scale",
            &scale,
        ],
        &[],
    );
    let res = r.result();
    eprintln!("{name}: {}", res.summary);
    assert_eq!(res.test, name);
    assert_eq!(res.seed, 7);
    assert!(res.duration_ms >= 400, "ran only {} ms", res.duration_ms);
    assert!(!res.summary.is_empty());
    assert!(res.counters.contains_key("problems"), "{:?}", res.counters);
    match res.verdict {
        Verdict::Pass => assert_eq!(r.code, Some(0)),
        Verdict::Skip if res.summary.contains("privilege") => assert_eq!(r.code, Some(3)),
        v => panic!(
            "{name} says {v} on the host kernel: {}\nstderr: {}",
            res.summary, r.stderr
        ),
    }
}

macro_rules! guest_tests_pass {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            must_pass(stringify!($name), env!(concat!("CARGO_BIN_EXE_", stringify!($name))));
        }
    )*};
}

guest_tests_pass!(
    futex_errno,
    futex_errno_sig,
    futex_sem_tokens,
    futex_requeue,
    futex_wake_op,
    futex_bitset,
    pipe_excl,
    pipe_fanout,
    pipe_writer_herd,
    pipe_ring,
    futex_pi,
    futex_pingpong,
    epoll_exclusive_herd,
    unix_accept_herd,
);

#[test]
fn futex_pingpong_reports_its_latency() {
    let r = run(
        env!("CARGO_BIN_EXE_futex_pingpong"),
        &["--duration-ms", "200"],
        &[],
    );
    let res = r.result();
    let wake = res.histograms.get("wake_ns").expect("a wake_ns histogram");
    assert!(wake.count > 0, "no wake-up recorded: {}", res.summary);
    for m in [
        "round_trips_per_s",
        "wake_ns_p50",
        "wake_ns_p90",
        "wake_ns_p99",
        "wake_ns_max",
    ] {
        assert!(res.metrics.contains_key(m), "no metric {m}");
    }
    assert!(res.counters.contains_key("sched_fifo"));
}

const SELFTEST: &str = env!("CARGO_BIN_EXE_harness_selftest");

/// A scratch knob directory holding `lab_selftest_knob` = 0.
fn knob_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lab-harness-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the scratch knob directory");
    std::fs::write(dir.join("lab_selftest_knob"), "0\n").expect("write the scratch knob");
    dir
}

fn knob_value(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("lab_selftest_knob")).expect("read the scratch knob")
}

#[test]
fn bad_arguments_are_a_usage_error() {
    for args in [
        &["--bogus"][..],
        &["--duration-ms", "soon"],
        &["--deadline-scale", "0"],
        &["--knob", "no-equals-sign"],
        &["--seed"],
    ] {
        let r = run(env!("CARGO_BIN_EXE_futex_errno"), args, &[]);
        assert_eq!(r.code, Some(4), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?} printed {}", r.stdout);
        assert!(r.stderr.contains("usage:"), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn a_missing_knob_is_a_skip_naming_it() {
    let r = run(
        env!("CARGO_BIN_EXE_futex_errno"),
        &["--knob", "lab_no_such_knob=1"],
        &[],
    );
    let res = r.result();
    assert_eq!((res.verdict, r.code), (Verdict::Skip, Some(3)));
    assert!(res.summary.contains("lab_no_such_knob"), "{}", res.summary);
    assert!(res.summary.contains("amplifier patch"), "{}", res.summary);
}

#[test]
fn verdicts_map_to_exit_codes() {
    for (mode, verdict, code) in [
        ("pass", Verdict::Pass, 0),
        ("fail", Verdict::Fail, 1),
        ("setup", Verdict::Skip, 3),
    ] {
        let r = run(SELFTEST, &[], &[("LAB_HARNESS_SELFTEST", mode)]);
        let res = r.result();
        assert_eq!((res.verdict, r.code), (verdict, Some(code)), "mode {mode}");
    }
}

#[test]
fn knobs_are_set_during_the_run_and_restored_after() {
    let dir = knob_dir("knobs");
    let dir_s = dir.to_str().expect("a UTF-8 temp path");
    let r = run(
        SELFTEST,
        &["--knob", "lab_selftest_knob=5"],
        &[
            ("LAB_HARNESS_SELFTEST", "knobs"),
            ("LAB_HARNESS_KNOB_DIR", dir_s),
        ],
    );
    let res = r.result();
    assert_eq!(res.summary, "lab_selftest_knob=5");
    assert_eq!(knob_value(&dir), "0");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_watchdog_turns_a_stuck_test_into_a_hang_and_restores_knobs() {
    let dir = knob_dir("hang");
    let dir_s = dir.to_str().expect("a UTF-8 temp path");
    let start = Instant::now();
    let r = run(
        SELFTEST,
        &[
            "--duration-ms",
            "100",
            "--deadline-scale",
            "0.1",
            "--knob",
            "lab_selftest_knob=5",
        ],
        &[
            ("LAB_HARNESS_SELFTEST", "hang"),
            ("LAB_HARNESS_KNOB_DIR", dir_s),
        ],
    );
    let res = r.result();
    assert_eq!((res.verdict, r.code), (Verdict::Hang, Some(2)));
    assert!(
        res.summary.contains("stuck 0 in FUTEX_WAIT"),
        "the hang must name what is blocked: {}",
        res.summary
    );
    // 100 ms of duration and 200 ms of grace.
    assert!(res.duration_ms >= 300, "fired after {} ms", res.duration_ms);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(knob_value(&dir), "0");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_panicking_test_restores_knobs_and_gives_no_verdict() {
    let dir = knob_dir("panic");
    let dir_s = dir.to_str().expect("a UTF-8 temp path");
    let r = run(
        SELFTEST,
        &["--knob", "lab_selftest_knob=5"],
        &[
            ("LAB_HARNESS_SELFTEST", "panic"),
            ("LAB_HARNESS_KNOB_DIR", dir_s),
        ],
    );
    assert_eq!(r.code, Some(101), "{}", r.stderr);
    assert!(r.stdout.is_empty());
    assert_eq!(knob_value(&dir), "0");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigterm_restores_knobs() {
    let dir = knob_dir("term");
    let mut child = Command::new(SELFTEST)
        .args(["--duration-ms", "60000", "--knob", "lab_selftest_knob=5"])
        .env("LAB_HARNESS_SELFTEST", "hang")
        .env("LAB_HARNESS_KNOB_DIR", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the self-test");
    let start = Instant::now();
    while knob_value(&dir) != "5" {
        assert!(start.elapsed() < Duration::from_secs(10), "knob never set");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait for the self-test");
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    assert_eq!(knob_value(&dir), "0");
    let _ = std::fs::remove_dir_all(dir);
}
