//! `futex_bitset`: FUTEX_WAIT_BITSET and FUTEX_WAKE_BITSET, round by round, with the
//! lost-wake-up detector of `lab_guest_tests::lostwake`.
//!
//! - **Checks**: 6 untimed waiters FUTEX_WAIT_BITSET on one word W, each with a random
//!   non-zero 4-bit bitset, one of them with FUTEX_BITSET_MATCH_ANY; 2 timed waiters with a
//!   bitset no wake uses (bit 20) and an absolute deadline 1–5 ms ahead, one on
//!   CLOCK_MONOTONIC, one with FUTEX_CLOCK_REALTIME. W is bumped, then FUTEX_WAKE_BITSET(W,
//!   all, m) with a random non-zero 4-bit mask m: every waiter with `bitset & m != 0` must
//!   return within Δ (a lost wake-up otherwise, with its bitset, the mask and the count);
//!   none other may return 0 (a wrong wake-up); the count must equal the 0 returns. The timed
//!   waiters must return ETIMEDOUT (or EAGAIN), never 0, and never before their deadline on
//!   their own clock. Bitset 0 must give EINVAL for both calls. EAGAIN is allowed (a waiter
//!   caught between two sleeps sees the bumped word); no other errno, none ≥ 512.
//! - **Kernel path**: `kernel/futex/waitwake.c:futex_wake()` (the bitset match), `futex_wait()`
//!   and `__futex_wait()` with an absolute hrtimer (`kernel/futex/syscalls.c:futex_init_timeout()`,
//!   FUTEX_CLOCK_REALTIME).
//! - **Should fail on**: `bad-futex-lost-wakeups`, whose `futex_wake()` with a mask other than
//!   FUTEX_BITSET_MATCH_ANY only wakes waiters whose bitset equals the mask: a waiter with
//!   bitset 0b0011 sleeps through a wake with mask 0b0001.
//!
//! Metric: `wakes_per_s`.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use lab_guest_tests::blocked::Blocked;
use lab_guest_tests::harness::{self, Counts, Ctx, Problems, Spec};
use lab_guest_tests::lostwake::{Crew, WaitFn};
use lab_guest_tests::signals;
use lab_guest_tests::sys::{self, errno_name, FUTEX_BITSET_MATCH_ANY};
use lab_proto::TestResult;

/// Untimed waiters, slots 0..UNTIMED; slot 0 waits with FUTEX_BITSET_MATCH_ANY.
const UNTIMED: usize = 6;
/// Timed waiters: slot UNTIMED on CLOCK_MONOTONIC, UNTIMED + 1 with FUTEX_CLOCK_REALTIME.
const TIMED: usize = 2;
const N: usize = UNTIMED + TIMED;
/// A bit no wake mask has: the timed waiters must only ever time out.
const NEVER: u32 = 1 << 20;
const EARLY: i32 = 1_000_000;

#[derive(Default)]
struct State {
    w: AtomicU32,
    expect: AtomicU32,
    bitset: [AtomicU32; N],
    /// Absolute deadline of each timed waiter, ns on its clock.
    deadline: [AtomicU64; N],
    early_ns: [AtomicI64; N],
}

fn clock_of(i: usize) -> (libc::clockid_t, bool) {
    if i == UNTIMED + 1 {
        (libc::CLOCK_REALTIME, true)
    } else {
        (libc::CLOCK_MONOTONIC, false)
    }
}

fn wait(st: &State, i: usize) -> Result<(), i32> {
    let bitset = st.bitset[i].load(SeqCst);
    let expect = st.expect.load(SeqCst);
    if i < UNTIMED {
        return sys::futex_wait_bitset(&st.w, expect, None, bitset, false);
    }
    let (clock, realtime) = clock_of(i);
    let deadline = st.deadline[i].load(SeqCst);
    // SAFETY: timespec is plain data.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    ts.tv_sec = (deadline / 1_000_000_000) as _;
    ts.tv_nsec = (deadline % 1_000_000_000) as _;
    let r = sys::futex_wait_bitset(&st.w, expect, Some(&ts), bitset, realtime);
    if r == Err(libc::ETIMEDOUT) {
        let now = sys::clock_ns(clock);
        if now < deadline {
            st.early_ns[i].store((deadline - now) as i64, SeqCst);
            return Err(EARLY);
        }
    }
    r
}

fn returned(crew: &Crew, round: u64, slots: &[usize]) -> usize {
    slots
        .iter()
        .filter(|&&i| crew.outcome(i, round).is_some())
        .count()
}

fn run(ctx: &Ctx) -> Result<TestResult, String> {
    signals::install(true)?;
    let st = Arc::new(State::default());
    let blocked = Blocked::new("waiter", "FUTEX_WAIT_BITSET", N);
    ctx.on_hang({
        let (b, st) = (Arc::clone(&blocked), Arc::clone(&st));
        move || {
            let sets: Vec<String> = st
                .bitset
                .iter()
                .map(|b| format!("{:#x}", b.load(SeqCst)))
                .collect();
            format!(
                "{}; W = {}, bitsets {}",
                b.describe(),
                st.w.load(SeqCst),
                sets.join(" ")
            )
        }
    });
    let f: Arc<WaitFn> = {
        let st = Arc::clone(&st);
        Arc::new(move |i, _| wait(&st, i))
    };
    let crew = Crew::start("waiter", Arc::clone(&blocked), f)?;
    let delta = ctx.delta_ns();
    let mut c = Counts::with_keys(&[
        "rounds",
        "woken",
        "expected_woken",
        "eagain",
        "timeouts",
        "realtime_timeouts",
    ]);
    let mut p = Problems::default();
    let untimed: Vec<usize> = (0..UNTIMED).collect();
    let timed: Vec<usize> = (UNTIMED..N).collect();
    let all: Vec<usize> = (0..N).collect();

    // Bitset 0 is EINVAL for both calls (kernel/futex/waitwake.c:futex_wait() and
    // futex_wake(): `if (!bitset) return -EINVAL`).
    let v = st.w.load(SeqCst);
    match sys::futex_wait_bitset(&st.w, v, None, 0, false) {
        Err(libc::EINVAL) => {}
        r => p.add(format!(
            "FUTEX_WAIT_BITSET with bitset 0 returned {r:?}, not EINVAL"
        )),
    }
    match sys::futex_wake_bitset(&st.w, 1, 0) {
        Err(libc::EINVAL) => {}
        r => p.add(format!(
            "FUTEX_WAKE_BITSET with bitset 0 returned {r:?}, not EINVAL"
        )),
    }

    let t0 = sys::now_ns();
    let mut round = 0u64;
    while ctx.running() {
        round += 1;
        let mut rng = ctx.rng(round);
        st.expect.store(st.w.load(SeqCst), SeqCst);
        st.bitset[0].store(FUTEX_BITSET_MATCH_ANY, SeqCst);
        for b in &st.bitset[1..UNTIMED] {
            b.store(rng.between(1, 15) as u32, SeqCst);
        }
        for &i in &timed {
            st.bitset[i].store(NEVER, SeqCst);
            let (clock, _) = clock_of(i);
            st.deadline[i].store(
                sys::clock_ns(clock) + rng.between(1_000_000, 5_000_000),
                SeqCst,
            );
        }
        crew.go(round);
        if !crew.settle(round, 20 * delta) {
            p.add(format!(
                "round {round}: the waiters never all got to sleep: {}",
                blocked.describe()
            ));
            break;
        }
        if let Some(i) = untimed.iter().find(|&&i| crew.outcome(i, round).is_some()) {
            p.add(format!(
                "round {round}: untimed waiter {i} returned {:?} before any wake or change of W",
                crew.outcome(*i, round).map(|o| o.result)
            ));
        }
        let mask = rng.between(1, 15) as u32;
        let expected: Vec<usize> = untimed
            .iter()
            .copied()
            .filter(|&i| st.bitset[i].load(SeqCst) & mask != 0)
            .collect();
        st.w.fetch_add(1, SeqCst);
        let k = match sys::futex_wake_bitset(&st.w, i32::MAX, mask) {
            Ok(k) => k,
            Err(e) => {
                let what = format!(
                    "round {round}: FUTEX_WAKE_BITSET(mask {mask:#x}) failed with {}",
                    errno_name(e)
                );
                if sys::is_kernel_internal(e) {
                    p.bad_errno(e, what);
                } else {
                    p.add(what);
                }
                0
            }
        };
        let release = sys::now_ns();
        c.inc("rounds");
        c.add("woken", k.max(0) as u64);
        c.add("expected_woken", expected.len() as u64);
        let sets = |slots: &[usize]| -> String {
            slots
                .iter()
                .map(|&i| format!("{i}:{:#x}", st.bitset[i].load(SeqCst)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        if let Err(l) = crew.await_returns(round, &expected, release, delta, || {
            returned(&crew, round, &expected) == expected.len()
        }) {
            p.add(format!(
                "round {round}: lost wake-up: waiter {} with bitset {:#x} sleeps on through \
                 FUTEX_WAKE_BITSET(W, all, mask {mask:#x}), which returned {k}; waiters that \
                 must wake (slot:bitset) {}; W = {} (slept on {}); {}",
                l.slot,
                st.bitset[l.slot].load(SeqCst),
                sets(&expected),
                st.w.load(SeqCst),
                st.expect.load(SeqCst),
                l.describe("waiter")
            ));
            break;
        }
        // The timed ones time out by themselves.
        let last_deadline = sys::now_ns();
        if let Err(l) = crew.await_returns(round, &timed, last_deadline + 5_000_000, delta, || {
            returned(&crew, round, &timed) == TIMED
        }) {
            p.add(format!(
                "round {round}: a timed FUTEX_WAIT_BITSET never timed out: {}",
                l.describe("waiter")
            ));
            break;
        }
        // Anyone not in the mask that returned 0 was woken wrongly.
        let wrong: Vec<usize> = all
            .iter()
            .copied()
            .filter(|i| !expected.contains(i))
            .filter(|&i| crew.outcome(i, round).is_some_and(|o| o.result.is_ok()))
            .collect();
        if !wrong.is_empty() {
            p.add(format!(
                "round {round}: FUTEX_WAKE_BITSET(mask {mask:#x}) woke waiter(s) whose bitset \
                 shares no bit with it (slot:bitset) {}",
                sets(&wrong)
            ));
        }
        let zeros_now = all
            .iter()
            .filter(|&&i| crew.outcome(i, round).is_some_and(|o| o.result.is_ok()))
            .count();
        let kc = sys::futex_wake_bitset(&st.w, i32::MAX, FUTEX_BITSET_MATCH_ANY).unwrap_or(-1);
        let release = sys::now_ns();
        if let Err(l) = crew.await_returns(round, &all, release, delta, || {
            returned(&crew, round, &all) == N
        }) {
            p.add(format!(
                "round {round}: lost wake-up after FUTEX_WAKE_BITSET(W, all, MATCH_ANY) = {kc}: {}",
                l.describe("waiter")
            ));
            break;
        }
        let zeros = all
            .iter()
            .filter(|&&i| crew.outcome(i, round).is_some_and(|o| o.result.is_ok()))
            .count();
        if zeros_now as i32 != k || zeros as i32 != k + kc.max(0) {
            p.add(format!(
                "round {round}: FUTEX_WAKE_BITSET(mask {mask:#x}) returned {k} but {zeros_now} \
                 waiters returned 0 (then {kc} woken by MATCH_ANY, {zeros} zeros in all)"
            ));
        }
        for &i in &all {
            match crew.outcome(i, round).map(|o| o.result) {
                Some(Err(libc::EAGAIN)) => c.inc("eagain"),
                Some(Err(libc::ETIMEDOUT)) if i >= UNTIMED => {
                    c.inc("timeouts");
                    if clock_of(i).1 {
                        c.inc("realtime_timeouts");
                    }
                }
                Some(Err(e)) => {
                    let what = if e == EARLY {
                        format!(
                            "round {round}: timed waiter {i} ({}): ETIMEDOUT {} ns before its \
                             absolute deadline",
                            if clock_of(i).1 {
                                "FUTEX_CLOCK_REALTIME"
                            } else {
                                "CLOCK_MONOTONIC"
                            },
                            st.early_ns[i].load(SeqCst)
                        )
                    } else {
                        format!(
                            "round {round}: waiter {i}: FUTEX_WAIT_BITSET returned {}",
                            errno_name(e)
                        )
                    };
                    if sys::is_kernel_internal(e) {
                        p.bad_errno(e, what);
                    } else {
                        p.add(what);
                    }
                }
                Some(Ok(())) if i >= UNTIMED && !wrong.contains(&i) => {
                    // Woken by the MATCH_ANY clean-up: its deadline had not passed yet.
                }
                _ => {}
            }
        }
    }
    let secs = (sys::now_ns() - t0) as f64 / 1e9;
    let st2 = Arc::clone(&st);
    if let Err(e) = crew.stop_signalling(40 * delta, || {
        st2.w.fetch_add(1, SeqCst);
        let _ = sys::futex_wake(&st2.w, i32::MAX);
    }) {
        p.add(e);
    }

    let mut r = ctx.result();
    r.samples = c.get("rounds");
    r.metrics.insert(
        "wakes_per_s".into(),
        c.get("rounds") as f64 / secs.max(1e-9),
    );
    let stats = format!(
        "{} FUTEX_WAKE_BITSET rounds ({:.0}/s) woke {} of {} matching waiters, {} EAGAIN, {} \
         timed waits timed out ({} on FUTEX_CLOCK_REALTIME); Δ {} ms",
        c.get("rounds"),
        c.get("rounds") as f64 / secs.max(1e-9),
        c.get("woken"),
        c.get("expected_woken"),
        c.get("eagain"),
        c.get("timeouts"),
        c.get("realtime_timeouts"),
        delta / 1_000_000
    );
    c.record(&mut r);
    p.conclude(&mut r, &stats);
    Ok(r)
}

fn main() {
    harness::main(Spec::new("futex_bitset", 2000), run)
}
