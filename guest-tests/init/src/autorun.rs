//! `lab.mode=run`: PID 1 runs the tests itself and reports on the console, for labs where no
//! host logs in (LAVA boots the kernel and reads the serial line). Each test iteration runs
//! as the host's runner would run it over SSH (`/lab/bin/<test>` with the same arguments and
//! seed), under a deadline, and ends in a CASE marker carrying its result line; DONE follows
//! the last. A test that outlives its deadline is killed with its process group and reported
//! as `fail` without a result line, as the host reports a hang.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lab_proto::{test_seed, Marker, TestParams, TestResult, Verdict};

use crate::cmdline::RunSpec;
use crate::{console, process};

/// The host's deadline for one test (`run::host_deadline`): duration, a grace that scales
/// with the accelerator, and a margin.
fn deadline(spec: &RunSpec) -> Duration {
    Duration::from_millis(spec.duration_ms)
        + Duration::from_secs_f64(20.0 * spec.deadline_scale)
        + Duration::from_secs(30)
}

/// Runs every iteration of every test and prints their markers.
pub fn run_all(spec: &RunSpec) {
    for iteration in 0..spec.iterations {
        for test in &spec.tests {
            let (result, line) = run_one(spec, test, iteration);
            console::emit(&Marker::Case {
                test: test.clone(),
                iteration,
                result: result.to_owned(),
                line,
            });
        }
    }
    console::emit(&Marker::Done);
}

/// One iteration: LAVA's result word and the test's result line.
fn run_one(spec: &RunSpec, test: &str, iteration: u32) -> (&'static str, Option<String>) {
    let params = TestParams {
        seed: test_seed(spec.seed, test, iteration),
        duration_ms: spec.duration_ms,
        deadline_scale: spec.deadline_scale,
        knobs: Vec::new(),
    };
    let mut cmd = Command::new(format!("/lab/bin/{test}"));
    cmd.args(params.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    process::clean_signals_for_child(&mut cmd);
    let Ok(mut child) = cmd.spawn() else {
        return ("unknown", None);
    };
    // The result line is short and printed at the end; read it on a thread so that a test
    // that fills the pipe never blocks.
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        if let Some(mut s) = stdout {
            let _ = s.read_to_string(&mut out);
        }
        out
    });
    let limit = Instant::now() + deadline(spec);
    let exited = loop {
        match child.try_wait() {
            Ok(Some(_)) => break true,
            Ok(None) if Instant::now() < limit => std::thread::sleep(Duration::from_millis(100)),
            _ => break false,
        }
    };
    if !exited {
        // SAFETY: kill(2) on the child's own process group.
        unsafe {
            libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = child.wait();
        return ("fail", None);
    }
    let out = reader.join().unwrap_or_default();
    let result = out
        .lines()
        .filter_map(|l| TestResult::parse_line(l).ok().flatten())
        .next_back();
    match result {
        None => ("unknown", None),
        Some(r) => (
            match r.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail | Verdict::Hang => "fail",
                Verdict::Skip => "skip",
            },
            Some(r.to_line()),
        ),
    }
}
