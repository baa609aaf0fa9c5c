//! The guest adapter for kselftest programs: it makes each one a lab test like any other.
//!
//! The image installs this program once per kselftest, as `/lab/bin/kselftest:<collection>/<program>`,
//! and the program itself as `/lab/kselftest/<collection>/<program>`; the adapter learns which
//! one to run from the name it was started as. It takes lab's usual arguments (`--seed`,
//! `--duration-ms`, `--deadline-scale`, `--knob`), applies the knobs (so that race
//! amplifiers can run under a kselftest), runs the program with each argument list its
//! `run.sh` uses, directly (not through `run.sh`, whose exit status is only the last
//! program's), in its own process group under a deadline, reads its TAP
//! (`lab_thirdparty::ktap`), and prints one lab result line. The raw output goes to stderr,
//! line by line, as evidence.
//!
//! Verdicts: a failing TAP line (a `[FAILED]` line for the timers programs that print no
//! TAP), a bail-out, a short plan, a failing exit status or a signal fails; a program still running at the deadline is a hang (its whole process group is
//! killed); a program that skipped every case is a skip, never a pass.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lab_guest_tests::child::run_in_group;
use lab_guest_tests::knobs::{Knobs, PARAMETERS_DIR};
use lab_guest_tests::sys::now_ns;
use lab_proto::{TestParams, TestResult, Verdict};
use lab_thirdparty::ktap::{self, Exit, ProgramVerdict, Status};

/// Where the image puts the kselftest programs.
const PROGRAMS: &str = "/lab/kselftest";

/// Each program's argument lists, as `tools/testing/selftests/futex/functional/run.sh` gives
/// them (Linux 6.12; its `-c` colour flag left out). A program not listed runs once, bare.
/// epoll_wakeup_test runs without `epoll59`, `epoll60` and `epoll61` (kselftest_harness.h's
/// `-T` excludes a test): stress loops (100000 and 300 rounds of spinning threads; 1000 rounds
/// of three new threads and an 11 ms wait) that overran the harness's own 30 s timeout under
/// TCG on a good kernel (epoll61: once in two runs on arm64). And without `epoll15`, `epoll16`
/// and `epoll55`-`epoll58`: a thread in `epoll_wait()` and a thread in `poll()` then a
/// non-blocking `epoll_wait()` share one epoll whose two sources the emitter writes one after
/// the other, and the test wants each thread to get one event. When both threads wake on the
/// first write and run before the second, the first takes the event, the second finds none
/// and leaves: a race of the test itself, which TCG's slow vCPUs lose now and then (epoll56
/// failed so on the base kernel: "Expected ctx.count (1) == 2").
const ARGUMENTS: &[(&str, &[&str])] = &[
    (
        "epoll/epoll_wakeup_test",
        &[
            "-T epoll15 -T epoll16 -T epoll55 -T epoll56 -T epoll57 -T epoll58 \
           -T epoll59 -T epoll60 -T epoll61",
        ],
    ),
    (
        "futex/futex_requeue_pi",
        &[
            "",
            "-b",
            "-b -l",
            "-b -o",
            "-l",
            "-o",
            "-b -l -t 5000",
            "-l -t 5000",
            "-b -l -t 500000",
            "-l -t 500000",
            "-b -t 5000",
            "-t 5000",
            "-b -t 500000",
            "-t 500000",
            "-b -o -t 5000",
            "-b -o -t 500000",
            "-b -l -t 2000000000",
            "-l -t 2000000000",
        ],
    ),
];

/// Programs that print no TAP, only `… [OK]` / `[FAILED]` at the end of each check's line
/// (`ktap::parse_bracketed`): the older timers selftests of Linux 6.12.
const BRACKETED: &[&str] = &["timers/mqueue-lat"];

/// Time each program may take beyond the workload duration, before `--deadline-scale`. The
/// host adds a program's own fixed running time (epoll_wakeup_test: 75 s) to the duration it
/// passes.
const BASE_ALLOWANCE: Duration = Duration::from_secs(15);

fn main() {
    let argv0 = std::env::args().next().unwrap_or_default();
    let Some(name) = argv0
        .rsplit_once("kselftest:")
        .map(|(_, n)| n.to_owned())
        .filter(|n| !n.is_empty())
    else {
        eprintln!(
            "kselftest: start me as /lab/bin/kselftest:<collection>/<program> (was {argv0:?})"
        );
        std::process::exit(4);
    };
    let test = format!("kselftest:{name}");
    let params = match TestParams::from_args(std::env::args().skip(1)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{test}: {e}");
            std::process::exit(4);
        }
    };
    let started_ns = now_ns();
    let started = Instant::now();
    let mut r = TestResult::new(&test, params.seed);
    let knobs = match Knobs::apply(Path::new(PARAMETERS_DIR), &params.knobs) {
        Ok(k) => Some(k),
        Err(e) => {
            r.verdict = Verdict::Skip;
            r.summary = e.to_string();
            None
        }
    };
    if knobs.is_some() {
        run(&name, &params, &mut r);
    }
    if let Some(mut k) = knobs {
        let errors = k.restore();
        if !errors.is_empty() {
            r.counters
                .insert("knob_restore_errors".into(), errors.len() as u64);
        }
    }
    r.duration_ms = started.elapsed().as_millis() as u64;
    r.start_mono_ns = started_ns;
    r.end_mono_ns = now_ns();
    println!("{}", r.to_line());
    std::process::exit(match r.verdict {
        Verdict::Pass => 0,
        Verdict::Fail => 1,
        Verdict::Hang => 2,
        Verdict::Skip => 3,
    });
}

/// Runs every argument list of `name` and fills `r`.
fn run(name: &str, params: &TestParams, r: &mut TestResult) {
    let program = Path::new(PROGRAMS).join(name);
    if !program.is_file() {
        r.verdict = Verdict::Skip;
        r.summary = format!("{} is not in the guest image", program.display());
        return;
    }
    let lists: Vec<&str> = ARGUMENTS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or_else(|| vec![""], |(_, l)| l.to_vec());
    let allowance = Duration::from_millis(params.duration_ms)
        + BASE_ALLOWANCE.mul_f64(params.deadline_scale.max(1.0));
    let short = name.rsplit('/').next().unwrap_or(name);
    let (mut failures, mut skips, mut cases) = (Vec::new(), 0, 0u64);
    for args in &lists {
        let key = if args.is_empty() {
            short.to_owned()
        } else {
            format!("{short} {args}")
        };
        let ran = match run_one(&program, args, allowance) {
            Ok(ran) => ran,
            Err(why) => {
                r.verdict = Verdict::Skip;
                r.summary = format!("{key}: {why}");
                return;
            }
        };
        for line in ran.stdout.lines().chain(ran.stderr.lines()) {
            eprintln!("tap[{key}]: {line}");
        }
        if ran.timed_out {
            r.verdict = Verdict::Hang;
            r.summary = hang_summary(&key, allowance, &ran.stdout, &ran.stderr);
            return;
        }
        let report = if BRACKETED.contains(&name) {
            ktap::parse_bracketed(&ran.stdout)
        } else {
            ktap::parse(&ran.stdout)
        };
        for (_, c) in report.keyed_cases(&key) {
            cases += 1;
            let counter = match c.status {
                Status::Pass => "subtests_pass",
                Status::Fail => "subtests_fail",
                Status::Skip => "subtests_skip",
                Status::XFail => "subtests_xfail",
                Status::XPass => "subtests_xpass",
                Status::Error => "subtests_error",
                Status::Todo => "subtests_todo",
            };
            *r.counters.entry(counter.into()).or_insert(0) += 1;
        }
        match report.verdict(ran.exit) {
            ProgramVerdict::Pass => {}
            ProgramVerdict::Skip(why) => {
                skips += 1;
                *r.counters.entry("programs_skipped".into()).or_insert(0) += 1;
                if failures.is_empty() && r.summary.is_empty() {
                    r.summary = format!("{key}: skipped: {why}");
                }
            }
            ProgramVerdict::Fail(why) => failures.push(format!("{key}: {}", why.join("; "))),
        }
    }
    r.samples = cases;
    r.counters.insert("programs_run".into(), lists.len() as u64);
    if !failures.is_empty() {
        r.verdict = Verdict::Fail;
        r.summary = format!(
            "{} of {} run(s) failed: {}",
            failures.len(),
            lists.len(),
            failures.join(" | ")
        );
    } else if skips == lists.len() {
        r.verdict = Verdict::Skip;
    } else {
        r.verdict = Verdict::Pass;
        r.summary = format!(
            "{} run(s), {} TAP result(s): {} ok, {} skipped",
            lists.len(),
            cases,
            r.counters.get("subtests_pass").copied().unwrap_or(0)
                + r.counters.get("subtests_xfail").copied().unwrap_or(0),
            r.counters.get("subtests_skip").copied().unwrap_or(0)
        );
    }
}

/// Runs `program args` (in the program's folder) in its own process group, under `allowance`.
/// A program killed at its deadline: its last words on each stream. The futex selftests
/// print their `FAIL:` lines on stderr, and a failing one often hangs after it (its main
/// thread waits for a waiter that already left).
fn hang_summary(key: &str, allowance: Duration, stdout: &str, stderr: &str) -> String {
    fn last(text: &str) -> Option<&str> {
        text.lines().map(str::trim).rfind(|l| !l.is_empty())
    }
    let mut s = format!(
        "{key} still running after {:.0} s: its process group was killed; last line: {}",
        allowance.as_secs_f64(),
        last(stdout).unwrap_or("(none)")
    );
    if let Some(e) = last(stderr) {
        s.push_str("; last on stderr: ");
        s.push_str(e);
    }
    s
}

fn run_one(program: &Path, args: &str, allowance: Duration) -> Result<Ran, String> {
    let mut cmd = Command::new(program);
    cmd.args(args.split_whitespace())
        .current_dir(program.parent().unwrap_or(Path::new("/")));
    let ran = run_in_group(cmd, allowance)?;
    let exit = match (ran.code, ran.signal) {
        (Some(c), _) => Exit::Code(c),
        (None, Some(s)) => Exit::Signal(s),
        (None, None) => Exit::Code(-1),
    };
    Ok(Ran {
        stdout: ran.stdout,
        stderr: ran.stderr,
        exit,
        timed_out: ran.timed_out,
    })
}

struct Ran {
    stdout: String,
    stderr: String,
    exit: Exit,
    timed_out: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hang_names_the_last_line_of_each_stream() {
        let s = hang_summary(
            "futex_requeue_pi_signal_restart",
            Duration::from_secs(78),
            "TAP version 13\n1..1\n# \tArguments: <none>\n",
            "\t FAIL: unexpected return from futex_wait_requeue_pi: -1 (Interrupted system call)\n\n",
        );
        assert_eq!(
            s,
            "futex_requeue_pi_signal_restart still running after 78 s: its process group was \
             killed; last line: # \tArguments: <none>; last on stderr: FAIL: unexpected return \
             from futex_wait_requeue_pi: -1 (Interrupted system call)"
        );
        assert!(hang_summary("k", Duration::from_secs(1), "", "").ends_with("last line: (none)"));
    }
}
