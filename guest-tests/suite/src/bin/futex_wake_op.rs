//! `futex_wake_op`: FUTEX_WAKE_OP with every operation and comparison, round by round, with
//! the lost-wake-up detector of `lab_guest_tests::lostwake`.
//!
//! - **Checks**: 3 waiters FUTEX_WAIT on word W1 and 3 on word W2 (W2 starts at a random
//!   0–15). W1 is bumped, then FUTEX_WAKE_OP(W1, nr_wake, nr_wake2, W2, FUTEX_OP(op, oparg,
//!   cmp, cmparg)) with a random op (SET, ADD, OR, ANDN, XOR, sometimes with
//!   FUTEX_OP_OPARG_SHIFT; the argument always changes W2) and comparison (EQ, NE, LT, LE,
//!   GT, GE): W2 must afterwards hold op(old); the count must be ≤ min(nr_wake, 3) +
//!   (cmp(old, cmparg) ? min(nr_wake2, 3) : 0); at least min(nr_wake, 3) W1 waiters and, when
//!   the comparison held, min(nr_wake2, 3) W2 waiters must return within Δ (lost wake-up
//!   otherwise, with the evidence); when it did not hold no W2 waiter may return 0; after a
//!   final FUTEX_WAKE of both words, the 0 returns must equal the counts the kernel returned,
//!   exactly. EAGAIN is allowed (a waiter caught between two sleeps sees the changed word),
//!   no other errno.
//! - **Kernel path**: `kernel/futex/waitwake.c:futex_wake_op()`, `futex_atomic_op_inuser()`
//!   (`arch/*/include/asm/futex.h:arch_futex_atomic_op_inuser()`), `futex_wake_mark()`.
//! - **Should fail on**: `bad-futex-lost-wakeups`, whose second wake-up loop matches W1's key
//!   in W2's bucket: the W2 waiters stay asleep whenever the comparison holds.
//!
//! Metric: `rounds_per_s`.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;

use lab_guest_tests::blocked::Blocked;
use lab_guest_tests::harness::{self, Counts, Ctx, Problems, Spec};
use lab_guest_tests::lostwake::{Crew, WaitFn};
use lab_guest_tests::rng::Rng;
use lab_guest_tests::signals;
use lab_guest_tests::sys::{self, errno_name};
use lab_proto::TestResult;

const N1: usize = 3;
const N2: usize = 3;

#[repr(align(64))]
#[derive(Default)]
struct Word(AtomicU32);

#[derive(Default)]
struct State {
    w1: Word,
    w2: Word,
    e1: AtomicU32,
    e2: AtomicU32,
}

const OP_NAMES: [&str; 5] = ["SET", "ADD", "OR", "ANDN", "XOR"];
const CMP_NAMES: [&str; 6] = ["EQ", "NE", "LT", "LE", "GT", "GE"];

/// An operation that changes `old`: (op with the shift flag, oparg, new value).
fn pick_op(rng: &mut Rng, old: u32) -> (u32, u32, u32) {
    loop {
        let op = rng.below(5) as u32;
        let shift = rng.one_in(4);
        let oparg = if shift {
            rng.below(12) as u32
        } else {
            rng.below(16) as u32
        };
        let arg = if shift { 1u32 << oparg } else { oparg };
        let new = match op {
            0 => arg,
            1 => old.wrapping_add(arg),
            2 => old | arg,
            3 => old & !arg,
            _ => old ^ arg,
        };
        if new != old {
            return (op | if shift { 8 } else { 0 }, oparg, new);
        }
    }
}

fn compare(cmp: u32, old: u32, cmparg: u32) -> bool {
    let (o, a) = (old as i32, cmparg as i32);
    match cmp {
        0 => o == a,
        1 => o != a,
        2 => o < a,
        3 => o <= a,
        4 => o > a,
        _ => o >= a,
    }
}

fn returned(crew: &Crew, round: u64, slots: &[usize]) -> usize {
    slots
        .iter()
        .filter(|&&i| crew.outcome(i, round).is_some())
        .count()
}

fn zeros(crew: &Crew, round: u64, slots: &[usize]) -> usize {
    slots
        .iter()
        .filter(|&&i| crew.outcome(i, round).is_some_and(|o| o.result.is_ok()))
        .count()
}

fn run(ctx: &Ctx) -> Result<TestResult, String> {
    signals::install(true)?;
    let st = Arc::new(State::default());
    let blocked = Blocked::new("waiter", "FUTEX_WAIT", N1 + N2);
    ctx.on_hang({
        let (b, st) = (Arc::clone(&blocked), Arc::clone(&st));
        move || {
            format!(
                "{}; W1 = {}, W2 = {} (waiters 0-{} on W1, the rest on W2)",
                b.describe(),
                st.w1.0.load(SeqCst),
                st.w2.0.load(SeqCst),
                N1 - 1
            )
        }
    });
    let wait: Arc<WaitFn> = {
        let st = Arc::clone(&st);
        Arc::new(move |i, _| {
            if i < N1 {
                sys::futex_wait(&st.w1.0, st.e1.load(SeqCst), None)
            } else {
                sys::futex_wait(&st.w2.0, st.e2.load(SeqCst), None)
            }
        })
    };
    let crew = Crew::start("waiter", Arc::clone(&blocked), wait)?;
    let g1: Vec<usize> = (0..N1).collect();
    let g2: Vec<usize> = (N1..N1 + N2).collect();
    let all: Vec<usize> = (0..N1 + N2).collect();
    let delta = ctx.delta_ns();
    let mut c = Counts::with_keys(&[
        "rounds",
        "cmp_true",
        "woken",
        "woken_w2",
        "eagain",
        "zero_returns",
    ]);
    let mut p = Problems::default();
    let mut lost = false;
    let t0 = sys::now_ns();
    let mut round = 0u64;
    while ctx.running() {
        round += 1;
        let mut rng = ctx.rng(round);
        let old = rng.below(16) as u32;
        st.w2.0.store(old, SeqCst);
        st.e2.store(old, SeqCst);
        st.e1.store(st.w1.0.load(SeqCst), SeqCst);
        crew.go(round);
        if !crew.settle(round, 20 * delta) {
            p.add(format!(
                "round {round}: the waiters never all got to sleep: {}",
                blocked.describe()
            ));
            break;
        }
        if let Some(i) = all.iter().find(|&&i| crew.outcome(i, round).is_some()) {
            p.add(format!(
                "round {round}: waiter {i} returned {:?} before any wake or change of its word",
                crew.outcome(*i, round).map(|o| o.result)
            ));
        }
        let (op, oparg, new) = pick_op(&mut rng, old);
        let cmp = rng.below(6) as u32;
        let cmparg = rng.below(16) as u32;
        let holds = compare(cmp, old, cmparg);
        // Not 0: futex_wake_op()'s loops wake one waiter before they test the limit, so
        // nr_wake 0 wakes one (the FUTEX_WAKE quirk; futex2 has FLAGS_STRICT for it).
        let nw = rng.between(1, N1 as u64) as i32;
        let nw2 = rng.between(1, N2 as u64 + 1) as i32;
        let encoded = sys::futex_op(op, oparg, cmp, cmparg);
        let call = format!(
            "FUTEX_WAKE_OP(W1, {nw}, {nw2}, W2, FUTEX_OP({}{}, {oparg}, {}, {cmparg})) on W2 = \
             {old}",
            OP_NAMES[(op & 7) as usize],
            if op & 8 != 0 { "|OPARG_SHIFT" } else { "" },
            CMP_NAMES[cmp as usize]
        );
        st.w1.0.fetch_add(1, SeqCst);
        let k = match sys::futex_wake_op(&st.w1.0, nw, nw2, &st.w2.0, encoded) {
            Ok(k) => k,
            Err(e) => {
                let what = format!("round {round}: {call} failed with {}", errno_name(e));
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
        if holds {
            c.inc("cmp_true");
        }
        let after = st.w2.0.load(SeqCst);
        if after != new {
            p.add(format!(
                "round {round}: {call} left W2 = {after}, expected {new}"
            ));
        }
        let max = (nw as usize).min(N1) + if holds { (nw2 as usize).min(N2) } else { 0 };
        if k < 0 || k as usize > max {
            p.add(format!(
                "round {round}: {call} returned {k}; at most {max} (comparison {}) could be woken",
                if holds { "held" } else { "did not hold" }
            ));
        }
        let need1 = (nw as usize).min(N1);
        let need2 = if holds { (nw2 as usize).min(N2) } else { 0 };
        for (slots, need, word) in [(&g1, need1, "W1"), (&g2, need2, "W2")] {
            if lost || need == 0 {
                continue;
            }
            if let Err(l) = crew.await_returns(round, slots, release, delta, || {
                returned(&crew, round, slots) >= need
            }) {
                p.add(format!(
                    "round {round}: lost wake-up on {word}: {call} returned {k} (comparison {}), \
                     but only {} of the {} waiters on {word} came back, {need} must; W1 = {}, W2 \
                     = {}; {}",
                    if holds { "held" } else { "did not hold" },
                    returned(&crew, round, slots),
                    slots.len(),
                    st.w1.0.load(SeqCst),
                    st.w2.0.load(SeqCst),
                    l.describe("waiter"),
                ));
                lost = true;
            }
        }
        if lost {
            break;
        }
        if !holds && zeros(&crew, round, &g2) > 0 {
            p.add(format!(
                "round {round}: {call} returned {k} and the comparison did not hold, yet {} W2 \
                 waiter(s) returned 0",
                zeros(&crew, round, &g2)
            ));
        }
        let k1 = sys::futex_wake(&st.w1.0, i32::MAX).unwrap_or(-1);
        let k2 = sys::futex_wake(&st.w2.0, i32::MAX).unwrap_or(-1);
        let release = sys::now_ns();
        if let Err(l) = crew.await_returns(round, &all, release, delta, || {
            returned(&crew, round, &all) == N1 + N2
        }) {
            p.add(format!(
                "round {round}: lost wake-up after FUTEX_WAKE(W1, all) = {k1} and FUTEX_WAKE(W2, \
                 all) = {k2} (after {call} = {k}); {}",
                l.describe("waiter")
            ));
            break;
        }
        let z = zeros(&crew, round, &all);
        c.add("zero_returns", z as u64);
        c.add("woken_w2", zeros(&crew, round, &g2) as u64);
        if z as i32 != k.max(0) + k1.max(0) + k2.max(0) {
            p.add(format!(
                "round {round}: {z} waiters returned 0 but the kernel woke {k} ({call}) + {k1} \
                 (FUTEX_WAKE(W1)) + {k2} (FUTEX_WAKE(W2))"
            ));
        }
        for &i in &all {
            match crew.outcome(i, round).map(|o| o.result) {
                Some(Err(libc::EAGAIN)) => c.inc("eagain"),
                Some(Err(e)) => {
                    let what = format!(
                        "round {round}: waiter {i}: FUTEX_WAIT returned {}",
                        errno_name(e)
                    );
                    if sys::is_kernel_internal(e) {
                        p.bad_errno(e, what);
                    } else {
                        p.add(what);
                    }
                }
                _ => {}
            }
        }
    }
    let secs = (sys::now_ns() - t0) as f64 / 1e9;
    let st2 = Arc::clone(&st);
    if let Err(e) = crew.stop_signalling(40 * delta, || {
        // A lost waiter: a bumped word and SIGUSR1 (SA_RESTART) make its wait return EAGAIN.
        st2.w1.0.fetch_add(1, SeqCst);
        st2.w2.0.fetch_add(1, SeqCst);
        let _ = sys::futex_wake(&st2.w1.0, i32::MAX);
        let _ = sys::futex_wake(&st2.w2.0, i32::MAX);
    }) {
        p.add(e);
    }

    let mut r = ctx.result();
    r.samples = c.get("rounds");
    r.metrics.insert(
        "rounds_per_s".into(),
        c.get("rounds") as f64 / secs.max(1e-9),
    );
    let stats = format!(
        "{} FUTEX_WAKE_OP rounds ({:.0}/s), comparison held in {}, {} woken by it, {} W2 \
         waiters returned 0, {} EAGAIN; Δ {} ms",
        c.get("rounds"),
        c.get("rounds") as f64 / secs.max(1e-9),
        c.get("cmp_true"),
        c.get("woken"),
        c.get("woken_w2"),
        c.get("eagain"),
        delta / 1_000_000
    );
    c.record(&mut r);
    p.conclude(&mut r, &stats);
    Ok(r)
}

fn main() {
    harness::main(Spec::new("futex_wake_op", 2000), run)
}
