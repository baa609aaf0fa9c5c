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
//!
//! `rt:ptsematest` (a POSIX mutex: futexes), `rt:pmqtest` (POSIX message queues),
//! `rt:sigwaittest` (signals) and `rt:svsematest` (SysV semaphores) run pairs of SCHED_FIFO
//! threads, a sender waking a receiver every millisecond: one pair per CPU (`--smp`; one
//! pair for `sigwaittest`, which has no `--smp`). Their files have no histogram, only each
//! pair's extremes and mean, so the metrics are `latency_ns_avg` (the mean over every
//! wake-up) and `latency_ns_max`. The verdicts are cyclictest's, with timeouts
//! (`pmqtest`) failing too.
//!
//! `rt:pi_stress` runs rt-tests' priority-inheritance stress (`lab_thirdparty::pi_stress`):
//! its default inversion groups (one per CPU but the first, which its admin thread keeps;
//! one on a single CPU), memory locked, for the workload's duration rounded up to whole
//! seconds (its `--duration` unit). Its own watchdog calls a group deadlocked after 5 report
//! intervals (0.75 s each) without an inversion, prints `WATCHDOG triggered` and kills its
//! process group, which is why it runs in a group of its own. Verdicts: that line fails
//! (it is the summary); any other non-zero exit, a non-zero `return_code` or no inversion
//! at all fails; still running at the deadline is a hang. Counter: `inversions`. It does
//! *not* catch an owner that is never boosted: its medium-priority thread sleeps in a
//! barrier instead of competing for the CPU, so the unboosted owner still runs (see
//! `patches/bad-futex-pi-no-boost/README.md`); `futex_pi` checks the boost itself.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lab_guest_tests::child::run_in_group;
use lab_guest_tests::knobs::{Knobs, PARAMETERS_DIR};
use lab_guest_tests::sys::now_ns;
use lab_proto::{TestParams, TestResult, Verdict};
use lab_thirdparty::cyclictest::{CyclictestJson, Quantile};
use lab_thirdparty::pairs::PairJson;
use lab_thirdparty::pi_stress::{PiStressJson, PiStressText};

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
            "ptsematest" | "pmqtest" | "sigwaittest" | "svsematest" => {
                pair_test(&program, &params, &mut r);
            }
            "pi_stress" => pi_stress(&params, &mut r),
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

/// Runs one rt-tests program with `args` and `--json`, under the deadline of `params`, and
/// returns its JSON text; `None` when `r` already holds the verdict (it could not run, hung
/// or exited non-zero).
fn run_json(
    program: &str,
    args: &[String],
    params: &TestParams,
    r: &mut TestResult,
) -> Option<String> {
    let path = Path::new("/usr/bin").join(program);
    if !path.is_file() {
        r.verdict = Verdict::Skip;
        r.summary = format!("{} is not in the guest image", path.display());
        return None;
    }
    let json = format!("/tmp/{program}-{}.json", std::process::id());
    let allowance = Duration::from_millis(params.duration_ms)
        + BASE_ALLOWANCE.mul_f64(params.deadline_scale.max(1.0));
    let mut cmd = Command::new(&path);
    cmd.args(args).arg(format!("--json={json}"));
    let ran = match run_in_group(cmd, allowance) {
        Ok(ran) => ran,
        Err(why) => {
            r.verdict = Verdict::Fail;
            r.summary = why;
            return None;
        }
    };
    for line in ran.stderr.lines().chain(ran.stdout.lines()) {
        eprintln!("{program}: {line}");
    }
    if ran.timed_out {
        r.verdict = Verdict::Hang;
        r.summary = format!(
            "{program} still running after {:.0} s: its process group was killed",
            allowance.as_secs_f64()
        );
        return None;
    }
    let text = std::fs::read_to_string(&json).unwrap_or_default();
    let _ = std::fs::remove_file(&json);
    eprintln!("{program} json: {}", text.replace('\n', " "));
    if ran.code != Some(0) {
        r.verdict = Verdict::Fail;
        r.summary = format!(
            "{program} exited {}: {}",
            ran.code.map_or_else(
                || format!("on signal {}", ran.signal.unwrap_or(0)),
                |c| c.to_string()
            ),
            ran.stderr.lines().last().unwrap_or("(no message)")
        );
        return None;
    }
    Some(text)
}

/// A wake-up later than this many µs fails a run.
fn bound_us(params: &TestParams) -> u64 {
    (BOUND_US as f64 * params.deadline_scale.max(1.0)) as u64
}

fn pair_test(program: &str, params: &TestParams, r: &mut TestResult) {
    let loops = (params.duration_ms * 1000 / INTERVAL_US).max(100);
    // Short options: rt-tests 2.4's svsematest has no long `--quiet`.
    let mut args = vec![
        "-q".to_owned(),
        "-p95".to_owned(),
        format!("-i{INTERVAL_US}"),
        format!("-l{loops}"),
    ];
    if program != "sigwaittest" {
        args.push("-S".to_owned());
    }
    let Some(text) = run_json(program, &args, params, r) else {
        return;
    };
    let j = match PairJson::parse(&text) {
        Ok(j) => j,
        Err(e) => {
            r.verdict = Verdict::Fail;
            r.summary = format!("{program}'s --json file cannot be read: {e}");
            return;
        }
    };
    let s = j.summary();
    r.samples = s.samples;
    r.counters.insert("wakeups".into(), s.samples);
    r.counters.insert("pairs".into(), j.pairs.len() as u64);
    r.counters.insert("timeouts".into(), s.timeouts);
    if let Some(mean) = s.mean {
        r.metrics.insert("latency_ns_avg".into(), mean * 1000.0);
    }
    let max = s.max.unwrap_or(0);
    r.metrics
        .insert("latency_ns_max".into(), max as f64 * 1000.0);
    let bound = bound_us(params);
    let figures = format!(
        "{} wake-ups in {} pair(s): min {} µs, mean {:.1} µs, max {max} µs (pair {})",
        s.samples,
        j.pairs.len(),
        s.min.unwrap_or(0),
        s.mean.unwrap_or(0.0),
        s.worst_pair.map_or_else(|| "-".into(), |p| p.to_string())
    );
    if j.return_code != 0 {
        r.verdict = Verdict::Fail;
        r.summary = format!("{program}'s return_code is {}: {figures}", j.return_code);
    } else if s.samples == 0 {
        r.verdict = Verdict::Fail;
        r.summary = format!("{program} measured no wake-up");
    } else if s.timeouts > 0 {
        r.verdict = Verdict::Fail;
        r.summary = format!("{} receive(s) timed out: {figures}", s.timeouts);
    } else if max > bound {
        r.verdict = Verdict::Fail;
        r.summary = format!("a wake-up {max} µs late, over the bound of {bound} µs: {figures}");
    } else {
        r.verdict = Verdict::Pass;
        r.summary = figures;
    }
}

fn cyclictest(params: &TestParams, r: &mut TestResult) {
    let loops = (params.duration_ms * 1000 / INTERVAL_US).max(100);
    let args = [
        "--quiet".to_owned(),
        "--mlockall".to_owned(),
        "--smp".to_owned(),
        "--priority=95".to_owned(),
        format!("--interval={INTERVAL_US}"),
        format!("--loops={loops}"),
        format!("--histogram={HISTOGRAM_US}"),
    ];
    let Some(text) = run_json("cyclictest", &args, params, r) else {
        return;
    };
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
    let bound = bound_us(params);
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

fn pi_stress(params: &TestParams, r: &mut TestResult) {
    let path = Path::new("/usr/bin/pi_stress");
    if !path.is_file() {
        r.verdict = Verdict::Skip;
        r.summary = format!("{} is not in the guest image", path.display());
        return;
    }
    let secs = params.duration_ms.div_ceil(1000).max(1);
    let json = format!("/tmp/pi_stress-{}.json", std::process::id());
    // It runs up to one report interval (0.75 s) past its duration, and takes a moment to
    // start its groups.
    let allowance =
        Duration::from_secs(secs + 1) + BASE_ALLOWANCE.mul_f64(params.deadline_scale.max(1.0));
    let mut cmd = Command::new(path);
    cmd.args([
        "--quiet".to_owned(),
        "--mlockall".to_owned(),
        format!("--duration={secs}"),
        format!("--json={json}"),
    ]);
    let ran = match run_in_group(cmd, allowance) {
        Ok(ran) => ran,
        Err(why) => {
            r.verdict = Verdict::Fail;
            r.summary = why;
            return;
        }
    };
    for line in ran.stderr.lines().chain(ran.stdout.lines()) {
        eprintln!("pi_stress: {line}");
    }
    let text = PiStressText::read(&format!("{}\n{}", ran.stderr, ran.stdout));
    let file = std::fs::read_to_string(&json).unwrap_or_default();
    let _ = std::fs::remove_file(&json);
    eprintln!("pi_stress json: {}", file.replace('\n', " "));
    let parsed = PiStressJson::parse(&file);
    let inversions = parsed
        .as_ref()
        .map(|j| j.inversion)
        .ok()
        .or(text.inversions);
    if let Some(n) = inversions {
        r.counters.insert("inversions".into(), n);
        r.samples = n;
    }
    let done = inversions.map_or_else(|| "no count".into(), |n| format!("{n} inversion(s)"));
    if let Some(first) = text.watchdog.first() {
        r.verdict = Verdict::Fail;
        r.summary = format!(
            "pi_stress: {first} (no inversion finished in 5 report intervals of 0.75 s), after \
             {done}; {} watchdog line(s)",
            text.watchdog.len()
        );
    } else if ran.timed_out {
        r.verdict = Verdict::Hang;
        r.summary = format!(
            "pi_stress still running after {:.0} s, {done}: its process group was killed",
            allowance.as_secs_f64()
        );
    } else if ran.code != Some(0) {
        r.verdict = Verdict::Fail;
        r.summary = format!(
            "pi_stress exited {} after {done}: {}",
            ran.code.map_or_else(
                || format!("on signal {}", ran.signal.unwrap_or(0)),
                |c| c.to_string()
            ),
            ran.stderr.lines().last().unwrap_or("(no message)")
        );
    } else {
        match parsed {
            Err(e) => {
                r.verdict = Verdict::Fail;
                r.summary = format!("pi_stress's --json file cannot be read: {e}");
            }
            Ok(j) if j.return_code != 0 => {
                r.verdict = Verdict::Fail;
                r.summary = format!("pi_stress's return_code is {}: {done}", j.return_code);
            }
            Ok(j) if j.inversion == 0 => {
                r.verdict = Verdict::Fail;
                r.summary = format!("pi_stress performed no inversion in {secs} s");
            }
            Ok(j) => {
                r.verdict = Verdict::Pass;
                r.summary = format!(
                    "{} priority inversions resolved in {secs} s, no group deadlocked",
                    j.inversion
                );
            }
        }
    }
}
