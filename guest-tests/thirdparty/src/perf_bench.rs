//! Reading the output of `perf bench futex` (Linux 6.12's `tools/perf/bench/futex-*.c`), and
//! judging a run of it: which arguments each benchmark gets for a workload duration, what
//! its report says, and the verdict and metrics lab takes from it.
//!
//! What perf prints (real outputs of this project's build host are in
//! `tests/fixtures/perf-bench-6.12-*`), on stdout:
//! - `hash` and `lock-pi` run for `-r` whole seconds, one thread per CPU, and print one line
//!   per thread, `[thread  0] futexes: 0x.. ... 0x.. [ 883712 ops/sec ]` (`futex: 0x..` with
//!   one futex), then `Averaged 866304 operations/sec (+- 2.01%), total secs = 1`: the mean
//!   of the threads' rates;
//! - `wake`, `wake-parallel` and `requeue` repeat one round `perf bench --repeat` times; each
//!   round blocks `-t` threads on a futex, sleeps 100 ms (200 ms for `wake-parallel`) so that
//!   all of them are asleep, then times the waking (or requeueing) of all of them, with
//!   microsecond resolution, and prints `[Run 1]: Wokeup 4 of 4 threads in 0.2190 ms`,
//!   `[Run 1]: Requeued 4 of 4 threads in 0.0070 ms`, or
//!   `[Run 1]: Avg per-thread latency (waking 2/4 threads) in 0.0635 ms (+-49.61%)` (the
//!   mean over the `-w` waker threads of the time each one's single `FUTEX_WAKE` took, and
//!   how many each woke), then the same without `[Run N]: ` and with `(+-x%)`: the mean.
//!
//! On stderr perf says only what went wrong: a futex call that failed in a way the benchmark
//! did not expect (`Non-expected futex return call`, `couldn't wakeup all tasks (1/2)`,
//! `futex_wait: ...`, `Could not lock pi-lock ...`), as `perf: <message>`. A clean run says
//! nothing there, so any line on stderr fails the run, and is the evidence.
//!
//! A lost wake-up shows as a hang: the waiter never wakes, and `pthread_join` waits for it
//! forever (or the waker loops forever, waking nobody). That is the adapter's deadline to
//! catch; this module sees only the output of runs that ended.

use std::collections::BTreeMap;

/// One of the benchmarks of `perf bench futex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bench {
    Hash,
    Wake,
    WakeParallel,
    Requeue,
    LockPi,
}

/// Threads blocked in each round of `wake`, `wake-parallel` and `requeue`: twice the CPUs of
/// lab's 2-vCPU guests, so that wake-ups cross CPUs and some waiters share one.
pub const BLOCKED_THREADS: u32 = 4;
/// Waker threads of `wake-parallel` (each wakes `BLOCKED_THREADS / WAKERS`).
pub const WAKERS: u32 = 2;

impl Bench {
    /// The benchmark lab names `futex-<name>` (the test is `perf:futex-<name>`).
    pub fn from_test(name: &str) -> Option<Bench> {
        Some(match name.strip_prefix("futex-")? {
            "hash" => Bench::Hash,
            "wake" => Bench::Wake,
            "wake-parallel" => Bench::WakeParallel,
            "requeue" => Bench::Requeue,
            "lock-pi" => Bench::LockPi,
            _ => return None,
        })
    }

    /// perf's name for it.
    pub fn perf_name(self) -> &'static str {
        match self {
            Bench::Hash => "hash",
            Bench::Wake => "wake",
            Bench::WakeParallel => "wake-parallel",
            Bench::Requeue => "requeue",
            Bench::LockPi => "lock-pi",
        }
    }

    /// Whether it runs for a time (`hash`, `lock-pi`) rather than a number of rounds.
    fn timed(self) -> bool {
        matches!(self, Bench::Hash | Bench::LockPi)
    }

    /// perf's arguments (after `perf`) for a workload of about `duration_ms`, and the rounds
    /// it must report (0 for the timed benchmarks).
    pub fn plan(self, duration_ms: u64) -> Plan {
        if self.timed() {
            let secs = ((duration_ms + 500) / 1000).max(1);
            return Plan {
                args: vec![
                    "bench".into(),
                    "futex".into(),
                    self.perf_name().into(),
                    "-r".into(),
                    secs.to_string(),
                ],
                rounds: 0,
            };
        }
        // A round sleeps 100 ms (wake-parallel: 200 ms) before it wakes, and the threads are
        // made and joined around it.
        let round_ms = if self == Bench::WakeParallel {
            250
        } else {
            125
        };
        let rounds = (duration_ms / round_ms).clamp(3, 200) as u32;
        let mut args = vec![
            "bench".into(),
            "--repeat".into(),
            rounds.to_string(),
            "futex".into(),
            self.perf_name().into(),
            "-t".into(),
            BLOCKED_THREADS.to_string(),
        ];
        if self == Bench::WakeParallel {
            args.extend(["-w".into(), WAKERS.to_string()]);
        }
        Plan { args, rounds }
    }
}

/// How a benchmark is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub args: Vec<String>,
    /// Rounds it must report (`--repeat`); 0 for the timed benchmarks.
    pub rounds: u32,
}

/// One `[Run N]` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    pub index: u32,
    /// Threads woken or requeued (wake-parallel: the mean per waker).
    pub done: u32,
    /// Threads blocked.
    pub of: u32,
    /// The time, in ms.
    pub ms: f64,
}

/// What perf printed, read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Each thread's ops/sec (hash, lock-pi).
    pub threads: Vec<u64>,
    /// `Averaged N operations/sec`, and its `total secs`.
    pub averaged: Option<(u64, u64)>,
    pub rounds: Vec<Round>,
    /// The closing line of the round benchmarks: the mean over the rounds (done, of, ms).
    pub mean: Option<(u32, u32, f64)>,
    /// The closing line as perf printed it.
    pub closing: Option<String>,
}

/// Reads perf's stdout. Lines it does not know (the header, the run summary, blank lines)
/// are passed over.
pub fn parse(stdout: &str) -> Report {
    let mut r = Report::default();
    for line in stdout.lines().map(str::trim) {
        if line.starts_with("[thread") {
            if let Some(v) = between(line, "[ ", " ops/sec ]").and_then(|v| v.trim().parse().ok()) {
                r.threads.push(v);
            }
        } else if let Some(rest) = line.strip_prefix("Averaged ") {
            let ops = rest.split_whitespace().next().and_then(|v| v.parse().ok());
            let secs = rest
                .rsplit_once("total secs = ")
                .and_then(|(_, s)| s.trim().parse().ok());
            if let (Some(ops), Some(secs)) = (ops, secs) {
                r.averaged = Some((ops, secs));
                r.closing = Some(line.to_owned());
            }
        } else if let Some(rest) = line.strip_prefix("[Run ") {
            let Some((index, body)) = rest.split_once("]: ") else {
                continue;
            };
            if let (Ok(index), Some((done, of, ms))) = (index.parse(), round_figures(body)) {
                r.rounds.push(Round {
                    index,
                    done,
                    of,
                    ms,
                });
            }
        } else if let Some(f) = round_figures(line) {
            r.mean = Some(f);
            r.closing = Some(line.to_owned());
        }
    }
    r
}

/// `Wokeup 4 of 4 threads in 0.2190 ms`, `Requeued 4 of 4 threads in 0.0070 ms`, `Avg
/// per-thread latency (waking 2/4 threads) in 0.0635 ms (+-49.61%)`: (done, of, ms).
fn round_figures(body: &str) -> Option<(u32, u32, f64)> {
    let ms: f64 = between(body, " in ", " ms")?.trim().parse().ok()?;
    let (done, of) = if let Some(rest) = body
        .strip_prefix("Wokeup ")
        .or_else(|| body.strip_prefix("Requeued "))
    {
        let (done, rest) = rest.split_once(" of ")?;
        (
            done.trim().parse().ok()?,
            rest.split_whitespace().next()?.parse().ok()?,
        )
    } else if body.starts_with("Avg per-thread latency") {
        let (done, of) = between(body, "(waking ", " threads)")?.split_once('/')?;
        (done.trim().parse().ok()?, of.trim().parse().ok()?)
    } else {
        return None;
    };
    ms.is_finite().then_some((done, of, ms))
}

/// The text between the first `open` and the next `close` after it.
fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let (_, rest) = s.split_once(open)?;
    Some(rest.split_once(close)?.0)
}

/// The verdict on a run that ended with exit status 0, and what it measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// `Ok(figures)` for a pass, `Err(why)` for a failure.
    pub outcome: Result<String, String>,
    pub metrics: BTreeMap<String, f64>,
    pub counters: BTreeMap<String, u64>,
    /// Operations (hash, lock-pi) or rounds measured.
    pub samples: u64,
}

/// The metric name stem of a round benchmark: what one round's time is the time of.
fn stem(bench: Bench) -> &'static str {
    match bench {
        // The waker's loop of FUTEX_WAKE (1 at a time) until every thread is woken.
        Bench::Wake => "wake_all",
        // One waker thread's single FUTEX_WAKE of its share of the threads.
        Bench::WakeParallel => "wake_call",
        // The loop of FUTEX_CMP_REQUEUE (1 at a time) until every thread is requeued.
        Bench::Requeue => "requeue_all",
        Bench::Hash | Bench::LockPi => "ops",
    }
}

/// Judges what perf printed on a run that exited 0 (`stderr`: its stderr).
pub fn judge(bench: Bench, plan: &Plan, stdout: &str, stderr: &str) -> Judged {
    let mut j = Judged {
        outcome: Err(String::new()),
        metrics: BTreeMap::new(),
        counters: BTreeMap::new(),
        samples: 0,
    };
    let report = parse(stdout);
    let said: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if !said.is_empty() {
        j.counters.insert("stderr_lines".into(), said.len() as u64);
    }
    let complaint = said.first().map(|first| {
        format!(
            "perf reported {} error line(s) on stderr, the first: {}",
            said.len(),
            first.trim()
        )
    });
    let measured = if bench.timed() {
        judge_timed(&report, &mut j)
    } else {
        judge_rounds(bench, plan, &report, &mut j)
    };
    j.outcome = match (measured, complaint) {
        (Err(why), Some(c)) => Err(format!("{why}; {c}")),
        (Err(why), None) => Err(why),
        (Ok(figures), Some(c)) => Err(format!("{c} ({figures})")),
        (Ok(figures), None) => Ok(figures),
    };
    j
}

fn judge_timed(report: &Report, j: &mut Judged) -> Result<String, String> {
    let Some((averaged, secs)) = report.averaged else {
        return Err("perf printed no `Averaged ... operations/sec` line".into());
    };
    if report.threads.is_empty() {
        return Err("perf printed no per-thread line".into());
    }
    let total: u64 = report.threads.iter().sum();
    j.counters
        .insert("threads".into(), report.threads.len() as u64);
    j.counters.insert("total_secs".into(), secs);
    j.samples = total.saturating_mul(secs);
    // The system's rate, all threads together: perf's own figure is the threads' mean.
    j.metrics.insert("ops_per_s".into(), total as f64);
    j.metrics.insert(
        "ops_per_s_thread_min".into(),
        report.threads.iter().copied().min().unwrap_or(0) as f64,
    );
    let figures = format!(
        "{total} ops/s over {} thread(s) for {secs} s (perf: averaged {averaged} ops/s per thread)",
        report.threads.len()
    );
    if total == 0 {
        return Err(format!("no operation completed: {figures}"));
    }
    Ok(figures)
}

fn judge_rounds(
    bench: Bench,
    plan: &Plan,
    report: &Report,
    j: &mut Judged,
) -> Result<String, String> {
    let n = report.rounds.len();
    j.counters.insert("rounds".into(), n as u64);
    j.samples = n as u64;
    if n == 0 {
        return Err("perf reported no round".into());
    }
    let per_round = |r: &Round| -> u32 {
        if bench == Bench::WakeParallel {
            r.of / WAKERS
        } else {
            r.of
        }
    };
    if let Some(r) = report.rounds.iter().find(|r| r.done != per_round(r)) {
        let verb = if bench == Bench::Requeue {
            "requeued"
        } else {
            "woke"
        };
        return Err(format!(
            "round {}: {verb} {} of {} threads (expected {})",
            r.index,
            r.done,
            r.of,
            per_round(r)
        ));
    }
    let threads = report.rounds[0].of;
    j.counters.insert("threads".into(), u64::from(threads));
    let mut ns: Vec<f64> = report.rounds.iter().map(|r| r.ms * 1e6).collect();
    ns.sort_by(f64::total_cmp);
    let p50 = median(&ns);
    let max = ns.last().copied().unwrap_or(0.0);
    let stem = stem(bench);
    j.metrics.insert(format!("{stem}_ns_p50"), p50);
    j.metrics.insert(format!("{stem}_ns_max"), max);
    if let Some((_, _, ms)) = report.mean {
        j.metrics.insert(format!("{stem}_ns_avg"), ms * 1e6);
    }
    let figures = format!(
        "{n} round(s) of {threads} threads: median {:.1} µs, max {:.1} µs ({})",
        p50 / 1e3,
        max / 1e3,
        report.closing.as_deref().unwrap_or("no closing line")
    );
    if n as u32 != plan.rounds {
        return Err(format!(
            "perf reported {n} of the {} rounds asked for: {figures}",
            plan.rounds
        ));
    }
    if report.mean.is_none() {
        return Err(format!("perf printed no closing line: {figures}"));
    }
    Ok(figures)
}

/// The median of sorted, non-empty `v` (the mean of the middle two for an even count).
fn median(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn test_names_map_to_benchmarks() {
        assert_eq!(Bench::from_test("futex-wake"), Some(Bench::Wake));
        assert_eq!(
            Bench::from_test("futex-wake-parallel"),
            Some(Bench::WakeParallel)
        );
        assert_eq!(Bench::from_test("futex-lock-pi"), Some(Bench::LockPi));
        assert_eq!(Bench::from_test("futex-nope"), None);
        assert_eq!(Bench::from_test("hash"), None);
    }

    #[test]
    fn plans_follow_the_duration() {
        assert_eq!(
            Bench::Hash.plan(3000).args,
            ["bench", "futex", "hash", "-r", "3"]
        );
        assert_eq!(Bench::LockPi.plan(200).args[4], "1", "at least a second");
        let w = Bench::Wake.plan(3000);
        assert_eq!(w.rounds, 24);
        assert_eq!(
            w.args,
            ["bench", "--repeat", "24", "futex", "wake", "-t", "4"]
        );
        assert_eq!(Bench::Requeue.plan(100).rounds, 3, "at least 3 rounds");
        let p = Bench::WakeParallel.plan(3000);
        assert_eq!(p.rounds, 12);
        assert_eq!(&p.args[4..], ["wake-parallel", "-t", "4", "-w", "2"]);
    }

    #[test]
    fn hash_on_the_host() {
        let out = fixture("perf-bench-6.12-host/futex-hash.out");
        let r = parse(&out);
        assert_eq!(r.threads, vec![883712, 848896]);
        assert_eq!(r.averaged, Some((866304, 1)));
        let j = judge(Bench::Hash, &Bench::Hash.plan(1000), &out, "");
        assert!(j.outcome.is_ok(), "{j:?}");
        assert_eq!(j.metrics["ops_per_s"], 1_732_608.0);
        assert_eq!(j.counters["threads"], 2);
        let one = parse(&fixture("perf-bench-6.12-host/futex-hash-one-futex.out"));
        assert_eq!(one.threads, vec![1697934], "the `futex:` form of one futex");
    }

    #[test]
    fn lock_pi_on_the_host() {
        let out = fixture("perf-bench-6.12-host/futex-lock-pi.out");
        let j = judge(Bench::LockPi, &Bench::LockPi.plan(1000), &out, "");
        assert_eq!(j.metrics["ops_per_s"], 5699.0, "{j:?}");
        assert!(j.outcome.expect("pass").contains("averaged 2849"));
    }

    #[test]
    fn round_benchmarks_on_the_host() {
        for (bench, file, stem, p50_ns) in [
            (Bench::Wake, "futex-wake", "wake_all", 113_000.0),
            (Bench::Requeue, "futex-requeue", "requeue_all", 7_000.0),
            (
                Bench::WakeParallel,
                "futex-wake-parallel",
                "wake_call",
                63_500.0,
            ),
        ] {
            let out = fixture(&format!("perf-bench-6.12-host/{file}.out"));
            let plan = Plan {
                rounds: 5,
                ..bench.plan(1000)
            };
            let j = judge(bench, &plan, &out, "");
            assert!(j.outcome.is_ok(), "{file}: {j:?}");
            let got = j.metrics[&format!("{stem}_ns_p50")];
            assert!((got - p50_ns).abs() < 1.0, "{file}: {got}");
            assert_eq!(j.counters["rounds"], 5);
            assert_eq!(j.counters["threads"], 4);
            assert!(j.metrics.contains_key(&format!("{stem}_ns_avg")));
            // Asked for more rounds than perf ran: perf was stopped early.
            let more = Plan {
                rounds: 6,
                ..plan.clone()
            };
            let e = judge(bench, &more, &out, "").outcome.expect_err("short");
            assert!(e.contains("5 of the 6 rounds"), "{e}");
        }
    }

    /// Real reports of lab's guests (6.12 PREEMPT_RT under TCG, 2 vCPUs, 3 s runs), with the
    /// plan the adapter gave them.
    #[test]
    fn guest_reports_pass_with_their_metrics() {
        for dir in ["perf-bench-6.12-x86_64-tcg", "perf-bench-6.12-arm64-tcg"] {
            for (bench, file, metric) in [
                (Bench::Hash, "futex-hash", "ops_per_s"),
                (Bench::LockPi, "futex-lock-pi", "ops_per_s"),
                (Bench::Wake, "futex-wake", "wake_all_ns_p50"),
                (
                    Bench::WakeParallel,
                    "futex-wake-parallel",
                    "wake_call_ns_p50",
                ),
                (Bench::Requeue, "futex-requeue", "requeue_all_ns_p50"),
            ] {
                let out = fixture(&format!("{dir}/{file}.out"));
                let j = judge(bench, &bench.plan(3000), &out, "");
                assert!(j.outcome.is_ok(), "{dir}/{file}: {j:?}");
                assert!(j.metrics[metric] > 0.0, "{dir}/{file}: {j:?}");
                assert!(j.samples > 0, "{dir}/{file}");
            }
        }
    }

    #[test]
    fn a_word_on_stderr_fails_a_run_that_looked_fine() {
        let out = fixture("perf-bench-6.12-host/futex-wake-parallel.out");
        let plan = Plan {
            rounds: 5,
            ..Bench::WakeParallel.plan(1000)
        };
        let j = judge(
            Bench::WakeParallel,
            &plan,
            &out,
            "perf: couldn't wakeup all tasks (1/2)\n",
        );
        let e = j.outcome.expect_err("fails");
        assert!(e.contains("couldn't wakeup all tasks (1/2)"), "{e}");
        assert_eq!(j.counters["stderr_lines"], 1);
    }

    #[test]
    fn a_round_that_woke_too_few_fails() {
        let out =
            "[Run 1]: Wokeup 4 of 4 threads in 0.2 ms\n[Run 2]: Wokeup 3 of 4 threads in 0.1 ms\n\
                   Wokeup 3 of 4 threads in 0.15 ms (+-1.00%)\n";
        let plan = Plan {
            rounds: 2,
            ..Bench::Wake.plan(1000)
        };
        let e = judge(Bench::Wake, &plan, out, "")
            .outcome
            .expect_err("fails");
        assert!(e.contains("round 2: woke 3 of 4"), "{e}");
        let pi = "[Run 1]: Avg per-thread latency (waking 1/4 threads) in 0.0635 ms (+-49.61%)\n";
        let e = judge(
            Bench::WakeParallel,
            &Plan {
                rounds: 1,
                ..Bench::WakeParallel.plan(1000)
            },
            pi,
            "",
        )
        .outcome
        .expect_err("fails");
        assert!(e.contains("woke 1 of 4 threads (expected 2)"), "{e}");
    }

    #[test]
    fn a_cut_off_report_fails() {
        let e = judge(
            Bench::Hash,
            &Bench::Hash.plan(1000),
            "# Running 'futex/hash' benchmark:\n",
            "",
        )
        .outcome
        .expect_err("no summary");
        assert!(e.contains("no `Averaged"), "{e}");
        let e = judge(Bench::Requeue, &Bench::Requeue.plan(1000), "", "")
            .outcome
            .expect_err("nothing");
        assert!(e.contains("no round"), "{e}");
        let zero = "[thread  0] futex: 0x1 [ 0 ops/sec ]\nAveraged 0 operations/sec (+- 0.00%), total secs = 1\n";
        let e = judge(Bench::LockPi, &Bench::LockPi.plan(1000), zero, "")
            .outcome
            .expect_err("zero");
        assert!(e.contains("no operation completed"), "{e}");
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), 3.0);
    }

    proptest::proptest! {
        /// Whatever perf prints, reading and judging it never panics.
        #[test]
        fn fuzz_perf_bench_output(text in "(\\[Run [0-9]{1,3}\\]: |\\[thread +[0-9]\\] |Averaged |Wokeup |Requeued |Avg per-thread latency \\(waking |[0-9 ./()%+-]|of|in|ms|ops/sec|total secs = |\n){0,60}") {
            for bench in [Bench::Hash, Bench::Wake, Bench::WakeParallel, Bench::Requeue, Bench::LockPi] {
                let _ = judge(bench, &bench.plan(1000), &text, &text);
            }
        }
    }
}
