//! The guest adapter for rt-tests programs: it makes each one a lab test like any other.
//!
//! The image installs this program as `/lab/bin/rt:<program>` and Debian's program as
//! `/usr/bin/<program>`; the adapter learns which one to run from the name it was started
//! as. It takes lab's usual arguments (`--seed`, `--duration-ms`, `--deadline-scale`,
//! `--knob`), applies the knobs (so that race amplifiers and latency injectors can run under
//! it), runs the program in its own process group under a deadline, reads its `--json` file
//! (`lab_thirdparty::cyclictest`), and prints one lab result line. The raw JSON goes to
//! stderr as evidence.
//!
//! `rt:cyclictest` runs one SCHED_FIFO thread per CPU (`--smp`, priority 95, memory locked)
//! waking every millisecond for the workload's duration, with a histogram of 1 µs buckets.
//! Its metrics, in ns so that they read like lab's own latency metrics:
//! `latency_ns_p50`, `latency_ns_p99` (left out when they fall among the histogram's
//! overflows: a censored figure is never passed on as a value) and `latency_ns_max`.
//! Verdicts: cyclictest failing to run, or a non-zero `return_code`, fails; a wake-up later
//! than the bound fails, with the thread and the figure; a missing program is a skip.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lab_guest_tests::child::run_in_group;
use lab_guest_tests::knobs::{Knobs, PARAMETERS_DIR};
use lab_guest_tests::sys::now_ns;
use lab_proto::{TestParams, TestResult, Verdict};
use lab_thirdparty::cyclictest::{CyclictestJson, Quantile};

/// The wake-up interval, µs.
const INTERVAL_US: u64 = 1000;
/// Histogram buckets (1 µs each): latencies up to 20 ms are exact, beyond that counted.
const HISTOGRAM_US: u64 = 20_000;
/// A wake-up later than this (times `--deadline-scale`: 50 ms under TCG) fails the run.
/// It is far above what a healthy PREEMPT_RT guest shows, even under TCG, and far below
/// what an interrupts-off section of a broken kernel makes.
const BOUND_US: u64 = 10_000;
/// Time the program may take beyond the workload duration, before `--deadline-scale`.
const BASE_ALLOWANCE: Duration = Duration::from_secs(15);

fn main() {
    let argv0 = std::env::args().next().unwrap_or_default();
    let Some(program) = argv0
        .rsplit_once("rt:")
        .map(|(_, n)| n.to_owned())
        .filter(|n| !n.is_empty() && !n.contains('/'))
    else {
        eprintln!("rt: start me as /lab/bin/rt:<program> (was {argv0:?})");
        std::process::exit(4);
    };
    let test = format!("rt:{program}");
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
        match program.as_str() {
            "cyclictest" => cyclictest(&params, &mut r),
            other => {
                r.verdict = Verdict::Skip;
                r.summary = format!("rt:{other}: lab does not know this rt-tests program");
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

fn cyclictest(params: &TestParams, r: &mut TestResult) {
    let program = Path::new("/usr/bin/cyclictest");
    if !program.is_file() {
        r.verdict = Verdict::Skip;
        r.summary = format!("{} is not in the guest image", program.display());
        return;
    }
    let json = format!("/tmp/cyclictest-{}.json", std::process::id());
    let loops = (params.duration_ms * 1000 / INTERVAL_US).max(100);
    let args = [
        "--quiet".to_owned(),
        "--mlockall".to_owned(),
        "--smp".to_owned(),
        "--priority=95".to_owned(),
        format!("--interval={INTERVAL_US}"),
        format!("--loops={loops}"),
        format!("--histogram={HISTOGRAM_US}"),
        format!("--json={json}"),
    ];
    let allowance = Duration::from_millis(params.duration_ms)
        + BASE_ALLOWANCE.mul_f64(params.deadline_scale.max(1.0));
    let mut cmd = Command::new(program);
    cmd.args(&args);
    let ran = match run_in_group(cmd, allowance) {
        Ok(ran) => ran,
        Err(why) => {
            r.verdict = Verdict::Fail;
            r.summary = why;
            return;
        }
    };
    for line in ran.stderr.lines().chain(ran.stdout.lines()) {
        eprintln!("cyclictest: {line}");
    }
    if ran.timed_out {
        r.verdict = Verdict::Hang;
        r.summary = format!(
            "cyclictest still running after {:.0} s: its process group was killed",
            allowance.as_secs_f64()
        );
        return;
    }
    let text = std::fs::read_to_string(&json).unwrap_or_default();
    let _ = std::fs::remove_file(&json);
    eprintln!("cyclictest json: {}", text.replace('\n', " "));
    if ran.code != Some(0) {
        r.verdict = Verdict::Fail;
        r.summary = format!(
            "cyclictest exited {}: {}",
            ran.code.map_or_else(
                || format!("on signal {}", ran.signal.unwrap_or(0)),
                |c| c.to_string()
            ),
            ran.stderr.lines().last().unwrap_or("(no message)")
        );
        return;
    }
    let j = match CyclictestJson::parse(&text) {
        Ok(j) => j,
        Err(e) => {
            r.verdict = Verdict::Fail;
            r.summary = format!("cyclictest's --json file cannot be read: {e}");
            return;
        }
    };
    let l = j.merged();
    r.samples = l.cycles;
    r.counters.insert("cycles".into(), l.cycles);
    r.counters.insert("overflows".into(), l.overflows);
    r.counters.insert("threads".into(), j.thread.len() as u64);
    let ns = |us: u64| us as f64 * 1000.0;
    for (q, name) in [(0.5, "latency_ns_p50"), (0.99, "latency_ns_p99")] {
        match l.quantile(q) {
            Some(Quantile::Exact(us)) => {
                r.metrics.insert(name.into(), ns(us));
            }
            Some(Quantile::AtLeast(_)) => {
                r.counters.insert(format!("{name}_censored"), 1);
            }
            None => {}
        }
    }
    let max = l.max.unwrap_or(0);
    r.metrics.insert("latency_ns_max".into(), ns(max));
    let bound = (BOUND_US as f64 * params.deadline_scale.max(1.0)) as u64;
    let worst = j
        .thread
        .iter()
        .max_by_key(|(_, t)| t.max)
        .map_or(0, |(i, _)| *i);
    let show = |q: Option<Quantile>| match q {
        Some(Quantile::Exact(v)) => format!("{v}"),
        Some(Quantile::AtLeast(v)) => format!(">={v}"),
        None => "-".into(),
    };
    let figures = format!(
        "{} wake-ups on {} CPU(s): p50 {} µs, p99 {} µs, max {} µs (thread {worst}), {} beyond {} µs",
        l.cycles,
        j.thread.len(),
        show(l.quantile(0.5)),
        show(l.quantile(0.99)),
        max,
        l.overflows,
        HISTOGRAM_US
    );
    if j.return_code != 0 {
        r.verdict = Verdict::Fail;
        r.summary = format!("cyclictest's return_code is {}: {figures}", j.return_code);
    } else if l.cycles == 0 {
        r.verdict = Verdict::Fail;
        r.summary = "cyclictest measured no wake-up".into();
    } else if max > bound {
        r.verdict = Verdict::Fail;
        r.summary = format!("a wake-up {max} µs late, over the bound of {bound} µs: {figures}");
    } else {
        r.verdict = Verdict::Pass;
        r.summary = figures;
    }
}
