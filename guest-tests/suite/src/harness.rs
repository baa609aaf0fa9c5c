//! The life of one guest test program: arguments, knobs, watchdog, the one result line, and
//! the exit code.
//!
//! ```text
//! parse TestParams ──bad──▶ stderr, exit 4
//! apply knobs ──missing / denied──▶ Skip line, exit 3
//! start watchdog ─┬─ body returns ─▶ restore knobs, result line, exit 0/1/3
//!                 └─ duration + grace passes ─▶ restore knobs, Hang line naming what is
//!                                               still blocked, _exit(2)
//! ```
//!
//! Exactly one party ends the process: the first to claim `finished`. SIGTERM, SIGINT and
//! SIGHUP are blocked in every thread and taken by the watchdog with `sigtimedwait`, so
//! stopping a test from outside still restores the knobs (it then exits 128 + signal, with
//! no result line: nothing was concluded). A panic is a bug in the test, not a verdict: the
//! knobs are restored and the process exits 101 without a result line.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering::SeqCst};
use std::thread::JoinHandle;

use lab_proto::{TestParams, TestResult, Verdict};

use crate::knobs::{KnobError, Knobs, PARAMETERS_DIR};
use crate::rng::Rng;
use crate::sys::{self, Errno};

pub const EXIT_PASS: i32 = 0;
pub const EXIT_FAIL: i32 = 1;
pub const EXIT_HANG: i32 = 2;
pub const EXIT_SKIP: i32 = 3;
pub const EXIT_USAGE: i32 = 4;
/// The test itself panicked: no verdict.
pub const EXIT_PANIC: i32 = 101;

/// The base deadline Δ under KVM; multiplied by `--deadline-scale` (about 5 under TCG).
pub const BASE_DELTA_NS: u64 = 50_000_000;

/// Time the watchdog allows beyond the workload's duration for teardown, before scaling.
pub const BASE_GRACE_NS: u64 = 2_000_000_000;

/// What a test program is.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    /// Used when `--duration-ms` is not given.
    pub default_duration_ms: u64,
    /// Where knobs live; only the harness self-test points it elsewhere.
    pub knob_dir: &'static str,
}

impl Spec {
    pub const fn new(name: &'static str, default_duration_ms: u64) -> Spec {
        Spec {
            name,
            default_duration_ms,
            knob_dir: PARAMETERS_DIR,
        }
    }
}

/// A test body: the result with verdict, summary and counters, or why it could not even set
/// up (a missing kernel feature, say), which becomes a Skip.
pub type Body = fn(&Ctx) -> Result<TestResult, String>;

type Describer = Box<dyn Fn() -> String + Send + Sync>;

/// State the main thread and the watchdog share; leaked, as it lives until `_exit`.
struct Shared {
    name: &'static str,
    seed: u64,
    start_ns: u64,
    knobs: AtomicPtr<Knobs>,
    finished: AtomicBool,
    describe: AtomicPtr<Describer>,
}

impl Shared {
    /// True for the one caller that gets to end the process.
    fn claim(&self) -> bool {
        !self.finished.swap(true, SeqCst)
    }

    /// Puts the knobs back; safe to call from any thread, does the work once.
    fn restore_knobs(&self) -> Vec<String> {
        let p = self.knobs.swap(ptr::null_mut(), SeqCst);
        if p.is_null() {
            return Vec::new();
        }
        // SAFETY: `p` came from Box::into_raw in `main` and the swap made us its only owner.
        let mut knobs = unsafe { Box::from_raw(p) };
        knobs.restore()
    }

    fn elapsed_ms(&self) -> u64 {
        sys::now_ns().saturating_sub(self.start_ns) / 1_000_000
    }
}

/// What a test body gets: its parameters, deadlines and random streams.
pub struct Ctx {
    pub params: TestParams,
    shared: &'static Shared,
}

impl Ctx {
    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    /// Δ: how long a thread may stay blocked while what it waits for is available.
    pub fn delta_ns(&self) -> u64 {
        (BASE_DELTA_NS as f64 * self.params.deadline_scale) as u64
    }

    /// When the workload should stop.
    pub fn end_ns(&self) -> u64 {
        self.shared.start_ns + self.params.duration_ms * 1_000_000
    }

    /// True until the workload's duration has passed.
    pub fn running(&self) -> bool {
        sys::now_ns() < self.end_ns()
    }

    /// The random stream of worker `stream`, derived from the seed only.
    pub fn rng(&self, stream: u64) -> Rng {
        Rng::new(self.params.seed).fork(stream)
    }

    /// A fresh result for this test, passing until told otherwise.
    pub fn result(&self) -> TestResult {
        TestResult::new(self.shared.name, self.params.seed)
    }

    /// Tells the watchdog how to describe what is still blocked, should it fire.
    /// The common case of [`Ctx::on_hang`]: the hang report says who is still blocked where.
    pub fn on_hang_blocked(&self, blocked: &std::sync::Arc<crate::blocked::Blocked>) {
        let b = std::sync::Arc::clone(blocked);
        self.on_hang(move || b.describe());
    }

    pub fn on_hang(&self, describe: impl Fn() -> String + Send + Sync + 'static) {
        let boxed: Box<Describer> = Box::new(Box::new(describe));
        // The previous describer is leaked on purpose: the watchdog may be calling it.
        self.shared.describe.store(Box::into_raw(boxed), SeqCst);
    }
}

/// Writes a line of free text on stderr without taking any lock.
pub fn note(msg: &str) {
    sys::write_all_raw(2, format!("{msg}\n").as_bytes());
}

/// Starts a named worker thread.
pub fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, String> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(|e| format!("cannot start thread {name}: {e}"))
}

/// Joins a worker; its panic becomes ours, so the harness reports it as a test bug.
pub fn join<T>(h: JoinHandle<T>) -> T {
    match h.join() {
        Ok(v) => v,
        Err(p) => panic::resume_unwind(p),
    }
}

/// Joins workers that return their counters and problems, and merges them in.
pub fn join_all(
    handles: Vec<JoinHandle<(Counts, Problems)>>,
    counts: &mut Counts,
    problems: &mut Problems,
) {
    for h in handles {
        let (c, p) = join(h);
        counts.merge(&c);
        problems.merge(p);
    }
}

/// Event counters of one thread, merged into the result's `counters` at the end.
#[derive(Debug, Default, Clone)]
pub struct Counts(BTreeMap<&'static str, u64>);

impl Counts {
    /// Counters that must appear in the result even when they stay 0.
    pub fn with_keys(keys: &[&'static str]) -> Counts {
        Counts(keys.iter().map(|&k| (k, 0)).collect())
    }

    pub fn inc(&mut self, key: &'static str) {
        self.add(key, 1);
    }

    pub fn add(&mut self, key: &'static str, n: u64) {
        *self.0.entry(key).or_insert(0) += n;
    }

    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }

    pub fn merge(&mut self, other: &Counts) {
        for (&k, &v) in &other.0 {
            self.add(k, v);
        }
    }

    /// Copies every counter into the result.
    pub fn record(&self, r: &mut TestResult) {
        for (&k, &v) in &self.0 {
            r.counters.insert(k.to_owned(), v);
        }
    }
}

/// What went wrong during a run: the first problem in time, how many, and the first errno
/// that must never be seen.
#[derive(Debug, Default)]
pub struct Problems {
    first: Option<(u64, String)>,
    count: u64,
    bad_errno: Option<(u64, Errno)>,
}

impl Problems {
    pub fn add(&mut self, what: impl Into<String>) {
        let now = sys::now_ns();
        self.count += 1;
        if self.first.as_ref().is_none_or(|(t, _)| now < *t) {
            self.first = Some((now, what.into()));
        }
    }

    /// A problem that is an impossible errno; the first one goes to `first_bad_errno`.
    pub fn bad_errno(&mut self, e: Errno, what: impl Into<String>) {
        let now = sys::now_ns();
        if self.bad_errno.is_none_or(|(t, _)| now < t) {
            self.bad_errno = Some((now, e));
        }
        self.add(what);
    }

    pub fn merge(&mut self, other: Problems) {
        self.count += other.count;
        if let Some((t, what)) = other.first {
            if self.first.as_ref().is_none_or(|(mine, _)| t < *mine) {
                self.first = Some((t, what));
            }
        }
        if let Some((t, e)) = other.bad_errno {
            if self.bad_errno.is_none_or(|(mine, _)| t < mine) {
                self.bad_errno = Some((t, e));
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sets the verdict (Fail with the first problem, else Pass), the summary and the
    /// `problems` counter. `stats` is the one-line account of what the run did.
    pub fn conclude(self, r: &mut TestResult, stats: &str) {
        r.counters.insert("problems".into(), self.count);
        r.first_bad_errno = self.bad_errno.map(|(_, e)| e);
        match self.first {
            Some((_, first)) => {
                r.verdict = Verdict::Fail;
                r.summary = format!("{first}; {} problem(s) in all; {stats}", self.count);
            }
            None => {
                r.verdict = Verdict::Pass;
                r.summary = stats.to_owned();
            }
        }
    }
}

fn exit_code(v: Verdict) -> i32 {
    match v {
        Verdict::Pass => EXIT_PASS,
        Verdict::Fail => EXIT_FAIL,
        Verdict::Hang => EXIT_HANG,
        Verdict::Skip => EXIT_SKIP,
    }
}

fn usage_error(name: &str, msg: &str) -> ! {
    note(&format!(
        "{name}: {msg}\nusage: {name} [--seed N] [--duration-ms MS] [--deadline-scale X] \
         [--knob NAME=VALUE]..."
    ));
    sys::exit_now(EXIT_USAGE)
}

/// Prints the result line and ends the process with the verdict's exit code.
fn emit(shared: &Shared, mut r: TestResult) -> ! {
    let errors = shared.restore_knobs();
    for e in &errors {
        note(&format!("{}: could not restore knob {e}", shared.name));
    }
    if !errors.is_empty() {
        r.counters
            .insert("knob_restore_errors".into(), errors.len() as u64);
    }
    r.duration_ms = shared.elapsed_ms();
    r.seed = shared.seed;
    r.start_mono_ns = shared.start_ns;
    r.end_mono_ns = sys::now_ns();
    if r.samples == 0 {
        // Unless the test said otherwise, its metrics rest on its largest histogram.
        r.samples = r.histograms.values().map(|h| h.count).max().unwrap_or(0);
    }
    // Every timing in the result is only as fine as this.
    r.counters
        .insert("clock_res_ns".into(), sys::clock_res_ns());
    sys::write_all_raw(1, format!("{}\n", r.to_line()).as_bytes());
    sys::exit_now(exit_code(r.verdict))
}

/// Ends the process with `r`, unless the watchdog already is.
fn finish(shared: &Shared, r: TestResult) -> ! {
    if !shared.claim() {
        sys::park_forever();
    }
    emit(shared, r)
}

fn watchdog(shared: &'static Shared, deadline_ns: u64, grace_ms: u64, set: libc::sigset_t) {
    loop {
        let now = sys::now_ns();
        if now >= deadline_ns {
            break;
        }
        if let Some(sig) = sys::wait_signal(&set, deadline_ns - now) {
            if shared.claim() {
                for e in shared.restore_knobs() {
                    note(&format!("{}: could not restore knob {e}", shared.name));
                }
                note(&format!(
                    "{}: stopped by signal {sig} after {} ms; knobs restored, no verdict",
                    shared.name,
                    shared.elapsed_ms()
                ));
                sys::exit_now(128 + sig);
            }
            return;
        }
    }
    if !shared.claim() {
        return;
    }
    let describe = shared.describe.load(SeqCst);
    let blocked = if describe.is_null() {
        "the test registered nothing to report".to_owned()
    } else {
        // SAFETY: describers are leaked, never freed, so the pointer stays valid.
        let f = unsafe { &*describe };
        panic::catch_unwind(AssertUnwindSafe(f))
            .unwrap_or_else(|_| "(describing the blocked threads panicked)".to_owned())
    };
    let mut r = TestResult::new(shared.name, shared.seed);
    r.verdict = Verdict::Hang;
    r.summary = format!(
        "watchdog fired {} ms after start (duration + {grace_ms} ms grace): still blocked: {blocked}",
        shared.elapsed_ms()
    );
    emit(shared, r)
}

/// Runs one test program to its end; never returns.
pub fn main(spec: Spec, body: Body) -> ! {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let duration_given = args.iter().any(|a| a == "--duration-ms");
    let mut params = match TestParams::from_args(args) {
        Ok(p) => p,
        Err(e) => usage_error(spec.name, &e),
    };
    if !duration_given {
        params.duration_ms = spec.default_duration_ms;
    }
    let term = sys::block_signals(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP]);
    sys::tight_timer_slack();
    let shared: &'static Shared = Box::leak(Box::new(Shared {
        name: spec.name,
        seed: params.seed,
        start_ns: sys::now_ns(),
        knobs: AtomicPtr::new(ptr::null_mut()),
        finished: AtomicBool::new(false),
        describe: AtomicPtr::new(ptr::null_mut()),
    }));
    match Knobs::apply(Path::new(spec.knob_dir), &params.knobs) {
        Ok(knobs) => shared.knobs.store(Box::into_raw(Box::new(knobs)), SeqCst),
        Err(e @ KnobError::Rejected { .. }) => usage_error(spec.name, &e.to_string()),
        Err(e) => {
            let mut r = TestResult::new(spec.name, params.seed);
            r.verdict = Verdict::Skip;
            r.summary = e.to_string();
            finish(shared, r)
        }
    }
    let ctx = Ctx { params, shared };

    let grace_ns = (BASE_GRACE_NS as f64 * ctx.params.deadline_scale) as u64;
    let deadline_ns = ctx.end_ns() + grace_ns;
    let started = spawn("watchdog", move || {
        watchdog(shared, deadline_ns, grace_ns / 1_000_000, term)
    });

    let outcome = match started {
        Ok(_) => panic::catch_unwind(AssertUnwindSafe(|| body(&ctx))),
        Err(e) => Ok(Err(e)),
    };
    match outcome {
        Ok(Ok(r)) => finish(shared, r),
        Ok(Err(setup)) => {
            let mut r = ctx.result();
            r.verdict = Verdict::Skip;
            r.summary = format!("could not set up: {setup}");
            finish(shared, r)
        }
        Err(_) => {
            if shared.claim() {
                for e in shared.restore_knobs() {
                    note(&format!("{}: could not restore knob {e}", shared.name));
                }
                note(&format!(
                    "{}: the test program panicked (a bug in the test, not a kernel verdict); \
                     knobs restored",
                    shared.name
                ));
                sys::exit_now(EXIT_PANIC);
            }
            sys::park_forever()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_keep_the_earliest_and_count_all() {
        let mut a = Problems::default();
        a.add("first");
        let mut b = Problems::default();
        b.bad_errno(512, "second");
        b.add("third");
        a.merge(b);
        assert_eq!(a.count(), 3);
        let mut r = TestResult::new("t", 1);
        a.conclude(&mut r, "stats");
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(r.first_bad_errno, Some(512));
        assert!(r.summary.starts_with("first; 3 problem(s) in all; stats"));
        assert_eq!(r.counters.get("problems"), Some(&3));
    }

    #[test]
    fn no_problems_is_a_pass_with_the_stats_as_summary() {
        let mut r = TestResult::new("t", 1);
        Problems::default().conclude(&mut r, "10 waits");
        assert_eq!((r.verdict, r.summary.as_str()), (Verdict::Pass, "10 waits"));
        assert_eq!(r.first_bad_errno, None);
    }
}
