//! The guest adapter for `perf bench futex`: it makes each benchmark a lab test like any
//! other.
//!
//! The image installs this program as `/lab/bin/perf:futex-<bench>` and perf (built static
//! from the pinned tree) as `/lab/perf/perf`; the adapter learns which benchmark to run from
//! the name it was started as. It takes lab's usual arguments (`--seed`, `--duration-ms`,
//! `--deadline-scale`, `--knob`), applies the knobs (so that race amplifiers can run under
//! it), runs `perf bench futex <bench>` with arguments that make it last about the duration
//! (`lab_thirdparty::perf_bench::Bench::plan`), in its own process group under a deadline,
//! reads its report (`lab_thirdparty::perf_bench`), and prints one lab result line. perf's
//! whole output goes to stderr, line by line, as evidence.
//!
//! Verdicts: perf exiting non-zero or on a signal fails, and so does any line perf prints on
//! stderr (it only does when a futex call went wrong), a round that woke or requeued fewer
//! threads than it blocked, or a report cut short; perf still running at the deadline is a
//! hang (a lost wake-up leaves a waiter asleep, and perf waiting for it forever); a missing
//! perf is a skip, never a pass.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lab_guest_tests::child::run_in_group;
use lab_guest_tests::knobs::{Knobs, PARAMETERS_DIR};
use lab_guest_tests::sys::now_ns;
use lab_proto::{TestParams, TestResult, Verdict};
use lab_thirdparty::perf_bench::{self, Bench};

/// Where the image puts perf.
const PERF: &str = "/lab/perf/perf";
/// Time perf may take beyond the workload duration, before `--deadline-scale`.
const BASE_ALLOWANCE: Duration = Duration::from_secs(15);
/// Lines of perf's output passed on as evidence; a broken kernel can make perf print a
/// warning per futex call.
const EVIDENCE_LINES: usize = 300;

fn main() {
    let argv0 = std::env::args().next().unwrap_or_default();
    let Some(name) = argv0
        .rsplit_once("perf:")
        .map(|(_, n)| n.to_owned())
        .filter(|n| !n.is_empty() && !n.contains('/'))
    else {
        eprintln!("perf: start me as /lab/bin/perf:futex-<bench> (was {argv0:?})");
        std::process::exit(4);
    };
    let test = format!("perf:{name}");
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
        match Bench::from_test(&name) {
            Some(bench) => run(bench, &name, &params, &mut r),
            None => {
                r.verdict = Verdict::Skip;
                r.summary = format!("{test}: lab does not know this perf benchmark");
            }
        }
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

fn run(bench: Bench, name: &str, params: &TestParams, r: &mut TestResult) {
    if !Path::new(PERF).is_file() {
        r.verdict = Verdict::Skip;
        r.summary = format!("{PERF} is not in the guest image");
        return;
    }
    let plan = bench.plan(params.duration_ms);
    let allowance = Duration::from_millis(params.duration_ms)
        + BASE_ALLOWANCE.mul_f64(params.deadline_scale.max(1.0));
    let mut cmd = Command::new(PERF);
    // No pager, no config file, no home to look in: perf runs as a plain program.
    cmd.args(&plan.args)
        .env("PERF_PAGER", "cat")
        .env("PERF_CONFIG", "/dev/null")
        .env("HOME", "/tmp")
        .current_dir("/tmp");
    eprintln!("perf[{name}]: $ perf {}", plan.args.join(" "));
    let ran = match run_in_group(cmd, allowance) {
        Ok(ran) => ran,
        Err(why) => {
            r.verdict = Verdict::Fail;
            r.summary = why;
            return;
        }
    };
    let lines: Vec<String> = ran
        .stdout
        .lines()
        .map(|l| format!("perf[{name}]: {l}"))
        .chain(
            ran.stderr
                .lines()
                .map(|l| format!("perf[{name}] stderr: {l}")),
        )
        .collect();
    for l in lines.iter().take(EVIDENCE_LINES) {
        eprintln!("{l}");
    }
    if lines.len() > EVIDENCE_LINES {
        eprintln!(
            "perf[{name}]: ... {} more line(s) not shown",
            lines.len() - EVIDENCE_LINES
        );
    }
    if ran.timed_out {
        r.verdict = Verdict::Hang;
        r.summary = format!(
            "perf bench futex {} still running after {:.0} s (a waiter never woken?): its process group was killed; last line: {}",
            bench.perf_name(),
            allowance.as_secs_f64(),
            ran.stdout.lines().last().unwrap_or("(none)")
        );
        return;
    }
    let j = perf_bench::judge(bench, &plan, &ran.stdout, &ran.stderr);
    r.metrics = j.metrics;
    r.counters = j.counters;
    r.samples = j.samples;
    if ran.code != Some(0) {
        r.verdict = Verdict::Fail;
        r.summary = format!(
            "perf exited {}: {}",
            ran.code.map_or_else(
                || format!("on signal {}", ran.signal.unwrap_or(0)),
                |c| c.to_string()
            ),
            // What perf (or glibc, aborting on a futex error code it cannot handle) said
            // last; else where its report stopped.
            ran.stderr
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .or_else(|| ran.stdout.lines().rfind(|l| !l.trim().is_empty()))
                .unwrap_or("(no message)")
        );
        return;
    }
    match j.outcome {
        Ok(figures) => {
            r.verdict = Verdict::Pass;
            r.summary = figures;
        }
        Err(why) => {
            r.verdict = Verdict::Fail;
            r.summary = why;
        }
    }
}
