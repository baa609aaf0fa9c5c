//! `futex_requeue`: FUTEX_CMP_REQUEUE and the requeue-PI contract, round by round, with the
//! lost-wake-up detector of `lab_guest_tests::lostwake`.
//!
//! - **Checks, plain requeue** (odd rounds): 4 waiters FUTEX_WAIT on word A. Sometimes a
//!   FUTEX_CMP_REQUEUE with a wrong `cmpval` first: it must fail with EAGAIN and wake nobody.
//!   Then A is bumped and FUTEX_CMP_REQUEUE(A, nr_wake, nr_requeue, B, cmpval = A) moves
//!   them: it must succeed (EAGAIN exactly when `*A != cmpval`) with a count k ≤
//!   min(4, nr_wake + nr_requeue); min(k, nr_wake) must return at once, and after a
//!   FUTEX_WAKE of B all k must have returned (the requeued ones are woken there), then all
//!   4 after a FUTEX_WAKE of A. Each 0 return must be paid for by a count the kernel
//!   returned (zeros = woken + wake(B) + wake(A), exactly); EAGAIN is allowed (a waiter
//!   caught between two sleeps by a spurious wake-up sees the bumped word); nothing else.
//!   A waiter still asleep in FUTEX_WAIT Δ after its release is a lost wake-up: the summary
//!   names it, the words' values and the counts the kernel returned.
//! - **Checks, requeue-PI** (even rounds): 3 waiters in FUTEX_WAIT_REQUEUE_PI on word C,
//!   half of them with an absolute 0.2–3 ms timeout, SIGUSR1 (SA_RESTART) at a random one
//!   every 100–300 µs; then C is bumped and FUTEX_CMP_REQUEUE_PI(C, 1, all, P) hands them the
//!   PI futex P. The contract (`kernel/futex/requeue.c:futex_wait_requeue_pi()` and
//!   `handle_early_requeue_pi_wakeup()`): an early wake-up (timeout, signal, spurious)
//!   returns EAGAIN or ETIMEDOUT, never EINTR, never ≥ 512, and never 0 without owning P;
//!   a 0 return means P's owner field is the waiter's tid, and it then FUTEX_UNLOCK_PIs P;
//!   ETIMEDOUT is never before the deadline; every waiter returns within Δ of the requeue;
//!   P ends the round free (0).
//! - **Kernel path**: `kernel/futex/requeue.c:futex_requeue()` (`requeue_futex()`, the
//!   wake_q, `futex_proxy_trylock_atomic()`, `rt_mutex_start_proxy_lock()`),
//!   `futex_wait_requeue_pi()`, `kernel/futex/waitwake.c:__futex_wait()`.
//! - **Should fail on**: `bad-futex-lost-wakeups`, whose `futex_requeue()` moves a waiter to
//!   B's hash bucket but leaves A's key on it: FUTEX_WAKE(B) never finds it, and the
//!   detector reports it asleep Δ after that wake.
//!
//! Metric: `rounds_per_s`.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use lab_guest_tests::blocked::Blocked;
use lab_guest_tests::harness::{self, Counts, Ctx, Problems, Spec};
use lab_guest_tests::lostwake::{Crew, WaitFn};
use lab_guest_tests::signals::{self, Signaler};
use lab_guest_tests::sys::{self, errno_name, Errno};
use lab_proto::TestResult;

const PLAIN: usize = 4;
const PI: usize = 3;

/// Outcome codes of a requeue-PI waiter beyond the kernel's errnos (see `pi_wait`).
const NOT_OWNER: Errno = 1_000_000;
const UNLOCK_FAILED: Errno = 2_000_000;
const OWNS_AFTER_ERROR: Errno = 3_000_000;
const EARLY_TIMEOUT: Errno = 4_000_000;

#[repr(align(64))]
#[derive(Default)]
struct Word(AtomicU32);

#[derive(Default)]
struct State {
    a: Word,
    b: Word,
    c: Word,
    p: Word,
    /// The value plain waiters sleep on (A's value at the round's start).
    a_expect: AtomicU32,
    c_expect: AtomicU32,
    /// Per PI slot: absolute CLOCK_MONOTONIC deadline in ns for this round, 0 = untimed.
    pi_deadline: [AtomicU64; PI],
    /// Per PI slot: ns early of the last early ETIMEDOUT.
    pi_early_ns: [AtomicI64; PI],
}

fn plain_wait(st: &State, _i: usize) -> Result<(), Errno> {
    sys::futex_wait(&st.a.0, st.a_expect.load(SeqCst), None)
}

fn pi_wait(st: &State, i: usize) -> Result<(), Errno> {
    let deadline = st.pi_deadline[i].load(SeqCst);
    let ts = (deadline != 0).then(|| {
        // SAFETY: timespec is plain data.
        let mut t: libc::timespec = unsafe { std::mem::zeroed() };
        t.tv_sec = (deadline / 1_000_000_000) as _;
        t.tv_nsec = (deadline % 1_000_000_000) as _;
        t
    });
    let r = sys::futex_wait_requeue_pi(&st.c.0, st.c_expect.load(SeqCst), ts.as_ref(), &st.p.0);
    let me = sys::gettid() as u32;
    let owner = st.p.0.load(SeqCst) & sys::FUTEX_TID_MASK;
    match r {
        Ok(()) => {
            if owner != me {
                return Err(NOT_OWNER);
            }
            sys::futex_unlock_pi(&st.p.0).map_err(|e| UNLOCK_FAILED + e)
        }
        Err(e) => {
            if owner == me {
                // Give it back so the round can go on, but report it.
                let _ = sys::futex_unlock_pi(&st.p.0);
                return Err(OWNS_AFTER_ERROR + e);
            }
            if e == libc::ETIMEDOUT {
                let now = sys::now_ns();
                if deadline != 0 && now < deadline {
                    st.pi_early_ns[i].store((deadline - now) as i64, SeqCst);
                    return Err(EARLY_TIMEOUT);
                }
            }
            Err(e)
        }
    }
}

fn code_name(e: Errno) -> String {
    match e {
        NOT_OWNER => "0 without owning the PI word".into(),
        OWNS_AFTER_ERROR.. if e < EARLY_TIMEOUT => format!(
            "{} while owning the PI word",
            errno_name(e - OWNS_AFTER_ERROR)
        ),
        UNLOCK_FAILED.. if e < OWNS_AFTER_ERROR => format!(
            "0, then FUTEX_UNLOCK_PI failed with {}",
            errno_name(e - UNLOCK_FAILED)
        ),
        EARLY_TIMEOUT => "ETIMEDOUT before its deadline".into(),
        e => errno_name(e),
    }
}

struct Run<'a> {
    ctx: &'a Ctx,
    st: &'a State,
    delta: u64,
    c: Counts,
    p: Problems,
    lost: bool,
}

impl Run<'_> {
    /// How many waiters of `crew` are back from their wait of `round`.
    fn returned(crew: &Crew, round: u64) -> usize {
        (0..crew.len())
            .filter(|&i| crew.outcome(i, round).is_some())
            .count()
    }

    fn plain_round(&mut self, crew: &Crew, round: u64) {
        let st = self.st;
        let mut rng = self.ctx.rng(round);
        let a = st.a.0.load(SeqCst);
        st.a_expect.store(a, SeqCst);
        crew.go(round);
        if !crew.settle(round, 20 * self.delta) {
            self.p.add(format!(
                "round {round}: the plain waiters never all got to sleep on A: {}",
                crew.blocked().describe()
            ));
            self.lost = true;
            return;
        }
        if let Some(i) = (0..PLAIN).find(|&i| crew.outcome(i, round).is_some()) {
            self.p.add(format!(
                "round {round}: plain waiter {i} returned {:?} before any wake or change of A",
                crew.outcome(i, round).map(|o| o.result)
            ));
        }
        if rng.one_in(4) {
            self.c.inc("wrong_cmpval_calls");
            match sys::futex_cmp_requeue(&st.a.0, 1, 1, &st.b.0, a.wrapping_add(7)) {
                Err(libc::EAGAIN) => {}
                r => self.p.add(format!(
                    "round {round}: FUTEX_CMP_REQUEUE with cmpval {} while A = {a} returned {} \
                     instead of EAGAIN",
                    a.wrapping_add(7),
                    show(r)
                )),
            }
        }
        let nw = rng.below(3) as i32;
        let nr = rng.between(0, PLAIN as u64) as i32;
        let a1 = a.wrapping_add(1);
        st.a.0.store(a1, SeqCst);
        let k = match sys::futex_cmp_requeue(&st.a.0, nw, nr, &st.b.0, a1) {
            Ok(k) => k,
            Err(e) => {
                let what = format!(
                    "round {round}: FUTEX_CMP_REQUEUE(A, {nw}, {nr}, B, cmpval {a1}) with A = \
                     {a1} failed with {}",
                    errno_name(e)
                );
                if sys::is_kernel_internal(e) {
                    self.p.bad_errno(e, what);
                } else {
                    self.p.add(what);
                }
                0
            }
        };
        self.c.inc("requeues");
        self.c.add("requeue_count", k as u64);
        if k < 0 || k > (nw + nr).min(PLAIN as i32) {
            self.p.add(format!(
                "round {round}: FUTEX_CMP_REQUEUE(A, nr_wake {nw}, nr_requeue {nr}) returned \
                 {k} with {PLAIN} waiters"
            ));
        }
        let woken = k.min(nw);
        let requeued = k - woken;
        self.c.add("requeued", requeued as u64);
        let all: Vec<usize> = (0..PLAIN).collect();
        let evidence = |stage: &str, kb: Option<i32>, ka: Option<i32>, returned: usize| {
            format!(
                "round {round}: {stage}: lost wake-up: only {returned} of {PLAIN} plain waiters \
                 back; FUTEX_CMP_REQUEUE(A, nr_wake {nw}, nr_requeue {nr}, B, cmpval {a1}) \
                 returned {k} ({woken} woken, {requeued} requeued to B), FUTEX_WAKE(B, all) \
                 returned {}, FUTEX_WAKE(A, all) returned {}; A = {} (slept on {a}), B = {}",
                kb.map_or("(not yet called)".into(), |v| v.to_string()),
                ka.map_or("(not yet called)".into(), |v| v.to_string()),
                st.a.0.load(SeqCst),
                st.b.0.load(SeqCst),
            )
        };
        // The woken ones return at once.
        let need = (nw as usize).min(PLAIN);
        let t = sys::now_ns();
        if let Err(l) = crew.await_returns(round, &all, t, self.delta, || {
            Self::returned(crew, round) >= need
        }) {
            let n = Self::returned(crew, round);
            self.p.add(format!(
                "{}; {}",
                evidence("after the requeue's own wake-ups", None, None, n),
                l.describe("plain waiter")
            ));
            self.lost = true;
        }
        // The requeued ones return on B's wake.
        let kb = sys::futex_wake(&st.b.0, i32::MAX).unwrap_or(-1);
        self.c.add("woken_on_b", kb.max(0) as u64);
        if kb < 0 || kb > requeued {
            self.p.add(format!(
                "round {round}: FUTEX_WAKE(B) returned {kb} with only {requeued} requeued to B"
            ));
        }
        let t = sys::now_ns();
        if !self.lost {
            if let Err(l) = crew.await_returns(round, &all, t, self.delta, || {
                Self::returned(crew, round) >= k.max(0) as usize
            }) {
                let n = Self::returned(crew, round);
                self.p.add(format!(
                    "{}; {}",
                    evidence(
                        "a waiter requeued to B was not woken by FUTEX_WAKE(B)",
                        Some(kb),
                        None,
                        n
                    ),
                    l.describe("plain waiter")
                ));
                self.lost = true;
            }
        }
        let ka = sys::futex_wake(&st.a.0, i32::MAX).unwrap_or(-1);
        let t = sys::now_ns();
        if !self.lost {
            if let Err(l) = crew.await_returns(round, &all, t, self.delta, || {
                Self::returned(crew, round) >= PLAIN
            }) {
                let n = Self::returned(crew, round);
                self.p.add(format!(
                    "{}; {}",
                    evidence("after FUTEX_WAKE(A, all)", Some(kb), Some(ka), n),
                    l.describe("plain waiter")
                ));
                self.lost = true;
            }
        }
        if self.lost {
            return;
        }
        let mut zeros = 0;
        for i in 0..PLAIN {
            match crew.outcome(i, round).map(|o| o.result) {
                Some(Ok(())) => zeros += 1,
                Some(Err(libc::EAGAIN)) => self.c.inc("eagain"),
                Some(Err(e)) => {
                    let what = format!(
                        "round {round}: plain waiter {i}: FUTEX_WAIT on A returned {}",
                        errno_name(e)
                    );
                    if sys::is_kernel_internal(e) {
                        self.p.bad_errno(e, what);
                    } else {
                        self.p.add(what);
                    }
                }
                None => {}
            }
        }
        self.c.add("zero_returns", zeros as u64);
        if zeros != woken.max(0) + kb.max(0) + ka.max(0) {
            self.p.add(format!(
                "round {round}: {zeros} plain waiters returned 0 but the kernel reported {woken} \
                 woken by FUTEX_CMP_REQUEUE(A, {nw}, {nr}) (count {k}), {kb} by FUTEX_WAKE(B) \
                 and {ka} by FUTEX_WAKE(A)"
            ));
        }
    }

    fn pi_round(&mut self, crew: &Crew, round: u64) {
        let st = self.st;
        let mut rng = self.ctx.rng(round);
        let c = st.c.0.load(SeqCst);
        st.c_expect.store(c, SeqCst);
        for d in &st.pi_deadline {
            let t = if rng.one_in(2) {
                sys::now_ns() + rng.between(200_000, 3_000_000)
            } else {
                0
            };
            d.store(t, SeqCst);
        }
        crew.go(round);
        if !crew.settle(round, 20 * self.delta) {
            self.p.add(format!(
                "round {round}: the requeue-PI waiters never all got to sleep on C: {}",
                crew.blocked().describe()
            ));
            self.lost = true;
            return;
        }
        // Some rounds let the short timeouts fire first.
        sys::sleep_ns(rng.between(0, 2_000_000));
        let c1 = c.wrapping_add(1);
        st.c.0.store(c1, SeqCst);
        let k = match sys::futex_cmp_requeue_pi(&st.c.0, i32::MAX, &st.p.0, c1) {
            Ok(k) => k,
            Err(e) => {
                let what = format!(
                    "round {round}: FUTEX_CMP_REQUEUE_PI(C, 1, all, P, cmpval {c1}) with C = {c1} \
                     failed with {}",
                    errno_name(e)
                );
                if sys::is_kernel_internal(e) {
                    self.p.bad_errno(e, what);
                } else {
                    self.p.add(what);
                }
                0
            }
        };
        self.c.inc("pi_requeues");
        self.c.add("pi_requeue_count", k.max(0) as u64);
        let all: Vec<usize> = (0..PI).collect();
        let t = sys::now_ns();
        if let Err(l) = crew.await_returns(round, &all, t, self.delta, || {
            Self::returned(crew, round) >= PI
        }) {
            self.p.add(format!(
                "round {round}: lost wake-up on the PI futex: FUTEX_CMP_REQUEUE_PI returned {k}, \
                 C = {}, P = {:#x}; {}; {}",
                st.c.0.load(SeqCst),
                st.p.0.load(SeqCst),
                l.describe("requeue-PI waiter"),
                crew.blocked().describe()
            ));
            self.lost = true;
            return;
        }
        let mut zeros = 0;
        for i in 0..PI {
            let Some(o) = crew.outcome(i, round) else {
                continue;
            };
            match o.result {
                Ok(()) => zeros += 1,
                Err(libc::EAGAIN) => self.c.inc("pi_eagain"),
                Err(libc::ETIMEDOUT) => self.c.inc("pi_timeouts"),
                Err(e) => {
                    let early = if e == EARLY_TIMEOUT {
                        format!(" ({} ns early)", st.pi_early_ns[i].load(SeqCst))
                    } else {
                        String::new()
                    };
                    let what = format!(
                        "round {round}: requeue-PI waiter {i} (deadline {}): \
                         FUTEX_WAIT_REQUEUE_PI returned {}{early}",
                        if st.pi_deadline[i].load(SeqCst) == 0 {
                            "none"
                        } else {
                            "set"
                        },
                        code_name(e)
                    );
                    if sys::is_kernel_internal(e) {
                        self.p.bad_errno(e, what);
                    } else {
                        self.p.add(what);
                    }
                }
            }
        }
        self.c.add("pi_owned", zeros as u64);
        if zeros > k.max(0) as usize {
            self.p.add(format!(
                "round {round}: {zeros} requeue-PI waiters returned owning P, but \
                 FUTEX_CMP_REQUEUE_PI only handed P to {k}"
            ));
        }
        let pv = st.p.0.load(SeqCst);
        if pv != 0 {
            self.p.add(format!(
                "round {round}: the PI word P is {pv:#x} after every waiter unlocked it"
            ));
            st.p.0.store(0, SeqCst);
        }
    }
}

fn show(r: Result<i32, Errno>) -> String {
    match r {
        Ok(n) => format!("{n}"),
        Err(e) => errno_name(e),
    }
}

fn run(ctx: &Ctx) -> Result<TestResult, String> {
    signals::install(true)?;
    let st = Arc::new(State::default());
    let plain_blocked = Blocked::new("plain waiter", "FUTEX_WAIT", PLAIN);
    let pi_blocked = Blocked::new("requeue-PI waiter", "FUTEX_WAIT_REQUEUE_PI", PI);
    ctx.on_hang({
        let (a, b, st) = (
            Arc::clone(&plain_blocked),
            Arc::clone(&pi_blocked),
            Arc::clone(&st),
        );
        move || {
            format!(
                "{}; {}; A = {}, B = {}, C = {}, P = {:#x}",
                a.describe(),
                b.describe(),
                st.a.0.load(SeqCst),
                st.b.0.load(SeqCst),
                st.c.0.load(SeqCst),
                st.p.0.load(SeqCst)
            )
        }
    });
    let plain_fn: Arc<WaitFn> = {
        let st = Arc::clone(&st);
        Arc::new(move |i, _| plain_wait(&st, i))
    };
    let pi_fn: Arc<WaitFn> = {
        let st = Arc::clone(&st);
        Arc::new(move |i, _| pi_wait(&st, i))
    };
    let plain = Crew::start("plain", Arc::clone(&plain_blocked), plain_fn)?;
    let pi = Crew::start("pi", Arc::clone(&pi_blocked), pi_fn)?;
    let signaler = Signaler::start(
        Arc::clone(&pi_blocked),
        (0..PI).collect(),
        100_000,
        300_000,
        ctx.rng(1000),
    )?;

    let mut run = Run {
        ctx,
        st: &st,
        delta: ctx.delta_ns(),
        c: Counts::with_keys(&[
            "rounds",
            "requeues",
            "requeued",
            "woken_on_b",
            "zero_returns",
            "eagain",
            "wrong_cmpval_calls",
            "pi_requeues",
            "pi_owned",
            "pi_eagain",
            "pi_timeouts",
        ]),
        p: Problems::default(),
        lost: false,
    };
    let t0 = sys::now_ns();
    let mut round = 0u64;
    let (mut plain_round, mut pi_round) = (0u64, 0u64);
    while ctx.running() && !run.lost {
        round += 1;
        if round % 2 == 1 {
            plain_round += 1;
            run.plain_round(&plain, plain_round);
        } else {
            pi_round += 1;
            run.pi_round(&pi, pi_round);
        }
        run.c.inc("rounds");
    }
    let secs = (sys::now_ns() - t0) as f64 / 1e9;
    let mut counts = run.c;
    let mut problems = run.p;
    signaler.finish(&mut counts, &mut problems);
    // A lost plain waiter sleeps on a word nobody wakes: SIGUSR1 restarts its FUTEX_WAIT,
    // which then sees the bumped A and returns EAGAIN.
    let st2 = Arc::clone(&st);
    let limit = 40 * ctx.delta_ns();
    if let Err(e) = plain.stop_signalling(limit, || {
        st2.a.0.fetch_add(1, SeqCst);
        let _ = sys::futex_wake(&st2.a.0, i32::MAX);
        let _ = sys::futex_wake(&st2.b.0, i32::MAX);
    }) {
        problems.add(e);
    }
    let st3 = Arc::clone(&st);
    if let Err(e) = pi.stop(limit, || {
        st3.c.0.fetch_add(1, SeqCst);
        let _ = sys::futex_cmp_requeue_pi(&st3.c.0, i32::MAX, &st3.p.0, st3.c.0.load(SeqCst));
    }) {
        problems.add(e);
    }

    let mut r = ctx.result();
    r.samples = counts.get("rounds");
    r.metrics.insert(
        "rounds_per_s".into(),
        counts.get("rounds") as f64 / secs.max(1e-9),
    );
    let g = |k| counts.get(k);
    let stats = format!(
        "{} rounds ({:.0}/s): {} FUTEX_CMP_REQUEUE moved {} ({} requeued, {} woken on B, {} \
         wrong-cmpval calls), {} FUTEX_CMP_REQUEUE_PI handed P over {} times ({} EAGAIN, {} \
         timeouts, {} signals handled); Δ {} ms",
        g("rounds"),
        g("rounds") as f64 / secs.max(1e-9),
        g("requeues"),
        g("requeue_count"),
        g("requeued"),
        g("woken_on_b"),
        g("wrong_cmpval_calls"),
        g("pi_requeues"),
        g("pi_owned"),
        g("pi_eagain"),
        g("pi_timeouts"),
        g("signals_handled"),
        ctx.delta_ns() / 1_000_000,
    );
    counts.record(&mut r);
    problems.conclude(&mut r, &stats);
    Ok(r)
}

fn main() {
    harness::main(Spec::new("futex_requeue", 2000), run)
}
