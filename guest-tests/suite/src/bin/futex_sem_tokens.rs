//! `futex_sem_tokens`: a counting semaphore on a raw futex, the seed's `sem_wait()` pattern.
//!
//! - **Checks**: 2 producers post tokens in random bursts for the test's duration (K in
//!   all); 4 consumers take them with untimed and random 1–50 µs / 0.2–2 ms timed waits.
//!   Every token must be consumed, exactly once; every FUTEX_WAIT errno must be EAGAIN,
//!   ETIMEDOUT (timed waits only, never early) or EINTR, and never ≥ 512; and the consumers
//!   must never all sleep in FUTEX_WAIT for longer than Δ while the count stays above 0 with
//!   no post in flight (with a good kernel, a post's FUTEX_WAKE leaves one of them runnable).
//! - **Kernel path**: `kernel/futex/waitwake.c:__futex_wait()` and `futex_wake()`: the same
//!   lockless wake-up as the errno storms, reached the way glibc's `sem_wait()` reached it in
//!   the seed report ("ERESTARTSYS escaping from sem_wait with RTLinux patch").
//! - **Should fail on**: `bad-futex-no-spurious-retry`: the seed's symptom, errno 512 from
//!   the semaphore's wait, when a stale wake-up from a post lands on a later sleep. The
//!   all-asleep-with-tokens check is a second line that would catch a futex wake-up lost
//!   outright (for instance by a broken revert of the lockless wake-up).
//!
//! The semaphore: `count` is the futex word; `post` increments it and wakes one waiter if
//! `waiters` says anyone may sleep; `wait` takes a token by compare-and-swap, else registers
//! in `waiters` and sleeps while the count is 0. Every operation is SeqCst, so a post either
//! sees the waiter or the waiter's FUTEX_WAIT sees the new count.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use lab_guest_tests::blocked::{Blocked, Inside};
use lab_guest_tests::harness::{self, Counts, Ctx, Problems, Spec};
use lab_guest_tests::rng::Rng;
use lab_guest_tests::storm;
use lab_guest_tests::sys::{self, errno_name};
use lab_proto::TestResult;

const PRODUCERS: usize = 2;
const CONSUMERS: usize = 4;

#[derive(Default)]
struct Sem {
    /// The futex word: tokens available.
    count: AtomicU32,
    /// Consumers that may be asleep on `count`.
    waiters: AtomicU32,
    /// Times a consumer took the last token: the count touched 0.
    zero_hits: AtomicU64,
    posts_started: AtomicU64,
    posts_finished: AtomicU64,
}

#[derive(Default)]
struct State {
    sem: Sem,
    consumed: AtomicU64,
    stop: AtomicBool,
    consumers_left: AtomicUsize,
}

impl Sem {
    fn post(&self, c: &mut Counts, p: &mut Problems) {
        self.posts_started.fetch_add(1, SeqCst);
        self.count.fetch_add(1, SeqCst);
        if self.waiters.load(SeqCst) > 0 {
            match sys::futex_wake(&self.count, 1) {
                Ok(n) => {
                    c.inc("post_wakes");
                    c.add("woken", n as u64);
                }
                Err(e) => {
                    c.inc("bad_errnos");
                    p.bad_errno(e, format!("post: FUTEX_WAKE failed with {}", errno_name(e)));
                }
            }
        }
        self.posts_finished.fetch_add(1, SeqCst);
    }

    /// Takes one token if there is one.
    fn try_take(&self) -> bool {
        let mut v = self.count.load(SeqCst);
        while v > 0 {
            match self.count.compare_exchange(v, v - 1, SeqCst, SeqCst) {
                Ok(_) => {
                    if v == 1 {
                        self.zero_hits.fetch_add(1, SeqCst);
                    }
                    return true;
                }
                Err(now) => v = now,
            }
        }
        false
    }
}

/// One `sem_wait`/`sem_timedwait`: true with a token, false on timeout or stop.
fn sem_wait(
    st: &State,
    blocked: &Blocked,
    i: usize,
    timeout: Option<u64>,
    c: &mut Counts,
    p: &mut Problems,
) -> bool {
    let sem = &st.sem;
    loop {
        if sem.try_take() {
            return true;
        }
        if st.stop.load(SeqCst) {
            return false;
        }
        sem.waiters.fetch_add(1, SeqCst);
        let t0 = blocked.enter(i, sem.count.load(SeqCst).into());
        let r = sys::futex_wait(&sem.count, 0, timeout);
        let slept = sys::now_ns() - t0;
        blocked.leave(i);
        sem.waiters.fetch_sub(1, SeqCst);
        c.inc("waits");
        let what = || {
            format!(
                "consumer {i}: FUTEX_WAIT (timeout {} ns) returned after {} µs",
                timeout.unwrap_or(0),
                slept / 1000
            )
        };
        match r {
            Ok(()) => c.inc("wakeups"),
            Err(libc::EAGAIN) => c.inc("eagain"),
            Err(libc::EINTR) => c.inc("eintr"),
            Err(libc::ETIMEDOUT) => {
                storm::check_timeout(timeout, slept, &what(), c, p);
                return false;
            }
            Err(e) => {
                c.inc("bad_errnos");
                p.bad_errno(e, format!("{} with {}", what(), errno_name(e)));
            }
        }
    }
}

fn consumer(st: &State, blocked: &Blocked, i: usize, mut rng: Rng) -> (Counts, Problems) {
    blocked.register(i);
    let mut c = Counts::default();
    let mut p = Problems::default();
    while !st.stop.load(SeqCst) {
        let (kind, timeout) = storm::random_timeout(&mut rng);
        c.inc(kind);
        if sem_wait(st, blocked, i, timeout, &mut c, &mut p) {
            c.inc("consumed");
            st.consumed.fetch_add(1, SeqCst);
        }
    }
    st.consumers_left.fetch_sub(1, SeqCst);
    (c, p)
}

fn producer(st: &State, end_ns: u64, mut rng: Rng) -> (Counts, Problems) {
    let mut c = Counts::default();
    let mut p = Problems::default();
    while sys::now_ns() < end_ns {
        for _ in 0..rng.between(1, 8) {
            st.sem.post(&mut c, &mut p);
            c.inc("posted");
        }
        // Mostly short gaps; sometimes long enough for consumers to time out or sleep.
        let gap = if rng.one_in(8) {
            rng.between(200_000, 2_000_000)
        } else {
            rng.between(0, 200_000)
        };
        sys::sleep_ns(gap);
    }
    (c, p)
}

/// Watches for all consumers asleep while tokens stay available.
struct Monitor {
    positive_since: Option<u64>,
    zero_hits: u64,
    longest_ns: u64,
}

impl Monitor {
    /// One look; `Some(problem)` when every consumer has slept longer than Δ with tokens.
    fn look(&mut self, st: &State, blocked: &Blocked, delta: u64) -> Option<String> {
        let sem = &st.sem;
        let now = sys::now_ns();
        let count = sem.count.load(SeqCst);
        let zero_hits = sem.zero_hits.load(SeqCst);
        if count == 0 || zero_hits != self.zero_hits {
            self.zero_hits = zero_hits;
            self.positive_since = None;
            return None;
        }
        let since = *self.positive_since.get_or_insert(now);
        if sem.posts_started.load(SeqCst) != sem.posts_finished.load(SeqCst) {
            return None;
        }
        let Inside::Asleep { threads, .. } = blocked.inside() else {
            return None;
        };
        if threads.len() < CONSUMERS {
            return None;
        }
        let from = threads
            .iter()
            .map(|&(_, s)| s)
            .max()
            .unwrap_or(now)
            .max(since);
        let asleep = now.saturating_sub(from);
        self.longest_ns = self.longest_ns.max(asleep);
        // The count must still be positive, never having touched 0, after the look.
        if asleep > delta && sem.count.load(SeqCst) > 0 && sem.zero_hits.load(SeqCst) == zero_hits {
            return Some(format!(
                "all {CONSUMERS} consumers asleep in FUTEX_WAIT for {} ms while the semaphore \
                 count stayed above 0 (now {count}) with no post in flight",
                asleep / 1_000_000
            ));
        }
        None
    }
}

fn run(ctx: &Ctx) -> Result<TestResult, String> {
    let st = Arc::new(State {
        consumers_left: AtomicUsize::new(CONSUMERS),
        ..State::default()
    });
    let blocked = Blocked::new("consumer", "FUTEX_WAIT", CONSUMERS);
    ctx.on_hang({
        let (st, b) = (Arc::clone(&st), Arc::clone(&blocked));
        move || {
            format!(
                "{} of {} tokens consumed, count {}: {}",
                st.consumed.load(SeqCst),
                st.sem.posts_finished.load(SeqCst),
                st.sem.count.load(SeqCst),
                b.describe()
            )
        }
    });
    let mut consumers = Vec::new();
    for i in 0..CONSUMERS {
        let (st, b, rng) = (Arc::clone(&st), Arc::clone(&blocked), ctx.rng(i as u64));
        consumers.push(harness::spawn(&format!("consumer{i}"), move || {
            consumer(&st, &b, i, rng)
        })?);
    }
    let mut producers = Vec::new();
    for k in 0..PRODUCERS {
        let (st, end, rng) = (Arc::clone(&st), ctx.end_ns(), ctx.rng(100 + k as u64));
        producers.push(harness::spawn(&format!("producer{k}"), move || {
            producer(&st, end, rng)
        })?);
    }

    let delta = ctx.delta_ns();
    let step = (delta / 16).max(200_000);
    let mut monitor = Monitor {
        positive_since: None,
        zero_hits: 0,
        longest_ns: 0,
    };
    let mut problems = Problems::default();
    let mut lost = false;
    let mut look = |problems: &mut Problems| {
        if let Some(found) = monitor.look(&st, &blocked, delta) {
            problems.add(found);
            true
        } else {
            false
        }
    };
    while ctx.running() && !lost {
        lost = look(&mut problems);
        sys::sleep_ns(step);
    }
    let mut counts = Counts::with_keys(&[
        "posted",
        "consumed",
        "waits",
        "wakeups",
        "timeouts",
        "eagain",
        "eintr",
        "bad_errnos",
        "early_timeouts",
        "post_wakes",
    ]);
    harness::join_all(producers, &mut counts, &mut problems);
    // All K tokens are posted: wait for the consumers to take the rest.
    let posted = st.sem.posts_finished.load(SeqCst);
    while !lost && st.consumed.load(SeqCst) < posted {
        lost = look(&mut problems);
        sys::sleep_ns(step);
    }
    st.stop.store(true, SeqCst);
    while st.consumers_left.load(SeqCst) > 0 {
        if let Err(e) = sys::futex_wake(&st.sem.count, i32::MAX) {
            problems.bad_errno(e, format!("final FUTEX_WAKE failed with {}", errno_name(e)));
        }
        sys::sleep_ns(100_000);
    }
    harness::join_all(consumers, &mut counts, &mut problems);
    let consumed = st.consumed.load(SeqCst);
    let left = st.sem.count.load(SeqCst);
    if !lost && (consumed != posted || left != 0) {
        problems.add(format!(
            "{consumed} tokens consumed of {posted} posted, {left} left in the semaphore"
        ));
    }

    let mut r = ctx.result();
    r.samples = posted;
    r.metrics.insert(
        "longest_all_asleep_with_tokens_ms".into(),
        monitor.longest_ns as f64 / 1e6,
    );
    let g = |k| counts.get(k);
    let stats = format!(
        "{posted} tokens posted by {PRODUCERS} producers, {consumed} consumed by {CONSUMERS} \
         consumers in {} FUTEX_WAITs ({} woken, {} timed out, {} EAGAIN, {} EINTR): {} bad \
         errnos, {} early timeouts, longest all-asleep-with-tokens {:.1} ms (Δ {} ms)",
        g("waits"),
        g("wakeups"),
        g("timeouts"),
        g("eagain"),
        g("eintr"),
        g("bad_errnos"),
        g("early_timeouts"),
        monitor.longest_ns as f64 / 1e6,
        delta / 1_000_000,
    );
    counts.record(&mut r);
    problems.conclude(&mut r, &stats);
    Ok(r)
}

fn main() {
    harness::main(Spec::new("futex_sem_tokens", 2000), run)
}
