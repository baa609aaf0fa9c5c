//! The futex wait/wake storm behind `futex_errno` and `futex_errno_sig`.
//!
//! 4 waiters sleep on 64 futex words, one per cache line (so on many hash buckets), with no
//! timeout or a random one of 1–50 µs or 0.2–2 ms; 2 wakers wake random words, half the time
//! one a waiter sits on right now, sometimes after bumping the word so waits see EAGAIN. Every
//! FUTEX_WAIT return is checked against what the kernel may say:
//! - errno EAGAIN, ETIMEDOUT (timed waits only) or EINTR; never one of 512 and above, which
//!   is what `-ERESTARTSYS` escaping `kernel/futex/waitwake.c:__futex_wait()` looks like;
//! - ETIMEDOUT no earlier than the timeout asked for (measured on CLOCK_MONOTONIC around the
//!   call, so the measured time can only be longer than the kernel's);
//! - 0 only when a FUTEX_WAKE on that word could have done it. Each word counts wakes
//!   started and wakes finished; a wake that dequeued us started before we returned and
//!   finished after we were queued, so `started(after) > finished(before)` must hold. A good
//!   kernel never returns 0 otherwise: a wake-up that finds the waiter still queued is
//!   spurious and `__futex_wait()` retries it.
//!
//! With signals (`futex_errno_sig`), SIGUSR1 with SA_RESTART hits a random waiter every
//! ~200 µs, and EINTR is allowed only if that thread's handler ran during the wait.
//!
//! With `futex_waitv` (`futex_waitv_errno`), each wait is one `futex_waitv(2)` on
//! [`WAITV_WORDS`] distinct words, and the same checks hold for the word whose index it
//! returns: `futex_wait_multiple()` has its own spurious-wake-up retry.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use lab_proto::TestResult;

use crate::blocked::Blocked;
use crate::harness::{self, Counts, Ctx, Problems};
use crate::rng::Rng;
use crate::signals::{self, Signaler};
use crate::sys::{self, errno_name, Errno};

pub const WAITERS: usize = 4;
pub const WORDS: usize = 64;
pub const WAKERS: usize = 2;
/// Words of one `futex_waitv` call.
pub const WAITV_WORDS: usize = 4;

/// How the storm's waiters wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// SIGUSR1 noise on the waiters.
    pub signals: bool,
    /// `futex_waitv` on [`WAITV_WORDS`] words instead of FUTEX_WAIT on one.
    pub waitv: bool,
}

/// No word: a waiter between waits.
const NONE: u32 = u32::MAX;

/// One futex word on its own cache line, with the wakes issued on it.
#[repr(align(64))]
#[derive(Default)]
struct Word {
    val: AtomicU32,
    /// FUTEX_WAKE calls begun on this word.
    started: AtomicU64,
    /// FUTEX_WAKE calls that returned.
    finished: AtomicU64,
}

struct State {
    words: Box<[Word]>,
    /// The word each waiter is about to sleep on, so wakers can aim at real sleepers.
    current: [AtomicU32; WAITERS],
    stop: AtomicBool,
    waiters_left: AtomicUsize,
}

impl State {
    fn wake(&self, w: usize, n: i32, bump: bool) -> Result<i32, Errno> {
        let word = &self.words[w];
        if bump {
            word.val.fetch_add(1, SeqCst);
        }
        word.started.fetch_add(1, SeqCst);
        let r = sys::futex_wake(&word.val, n);
        word.finished.fetch_add(1, SeqCst);
        r
    }
}

/// A random FUTEX_WAIT timeout as the lab's futex tests mix them: a third untimed, a third
/// 1–50 µs, a third 0.2–2 ms. Returns the counter to bump and the timeout.
pub fn random_timeout(rng: &mut Rng) -> (&'static str, Option<u64>) {
    match rng.below(3) {
        0 => ("untimed_waits", None),
        1 => ("short_waits", Some(rng.between(1_000, 50_000))),
        _ => ("long_waits", Some(rng.between(200_000, 2_000_000))),
    }
}

/// Judges an ETIMEDOUT after `slept` ns: only a timed wait may see it, and never before its
/// timeout. `what` describes the wait for the report.
pub fn check_timeout(
    timeout: Option<u64>,
    slept: u64,
    what: &str,
    c: &mut Counts,
    p: &mut Problems,
) {
    c.inc("timeouts");
    match timeout {
        None => {
            c.inc("bad_errnos");
            p.bad_errno(libc::ETIMEDOUT, format!("{what} with ETIMEDOUT"));
        }
        Some(t) if slept < t => {
            c.inc("early_timeouts");
            p.add(format!("{what} with ETIMEDOUT, {} ns early", t - slept));
        }
        Some(_) => {}
    }
}

fn waiter(st: &State, blocked: &Blocked, i: usize, mut rng: Rng, mode: Mode) -> (Counts, Problems) {
    blocked.register(i);
    let mut c = Counts::default();
    let mut p = Problems::default();
    let n = if mode.waitv { WAITV_WORDS } else { 1 };
    while !st.stop.load(SeqCst) {
        // Distinct words; the first is where the wakers aim.
        let mut ws: Vec<usize> = Vec::with_capacity(n);
        while ws.len() < n {
            let w = rng.index(WORDS);
            if !ws.contains(&w) {
                ws.push(w);
            }
        }
        st.current[i].store(ws[0] as u32, SeqCst);
        let (kind, timeout) = random_timeout(&mut rng);
        c.inc(kind);
        let vals: Vec<u32> = ws.iter().map(|&w| st.words[w].val.load(SeqCst)).collect();
        let finished_before: Vec<u64> = ws
            .iter()
            .map(|&w| st.words[w].finished.load(SeqCst))
            .collect();
        let handled_before = signals::handled_here();
        let t0 = blocked.enter(i, ws[0] as u64);
        let r = if mode.waitv {
            let words: Vec<&AtomicU32> = ws.iter().map(|&w| &st.words[w].val).collect();
            sys::futex_waitv(&words, &vals, timeout)
        } else {
            sys::futex_wait(&st.words[ws[0]].val, vals[0], timeout).map(|()| 0)
        };
        let slept = sys::now_ns() - t0;
        blocked.leave(i);
        c.inc("waits");
        let call = if mode.waitv {
            "futex_waitv"
        } else {
            "FUTEX_WAIT"
        };
        let what = || {
            format!(
                "waiter {i}: {call} on word(s) {ws:?} (timeout {} ns) returned after {} µs",
                timeout.unwrap_or(0),
                slept / 1000
            )
        };
        match r {
            Ok(k) if k < n => {
                c.inc("wakeups");
                if st.words[ws[k]].started.load(SeqCst) <= finished_before[k] {
                    c.inc("unexplained_wakeups");
                    p.add(format!(
                        "{} with {k} while no FUTEX_WAKE on word {} was in flight",
                        what(),
                        ws[k]
                    ));
                }
            }
            Ok(k) => {
                c.inc("bad_errnos");
                p.add(format!(
                    "{} with {k}, not an index of its {n} words",
                    what()
                ));
            }
            Err(libc::EAGAIN) => c.inc("eagain"),
            Err(libc::ETIMEDOUT) => check_timeout(timeout, slept, &what(), &mut c, &mut p),
            Err(libc::EINTR) => {
                c.inc("eintr");
                if mode.signals && signals::handled_here() == handled_before {
                    c.inc("bad_errnos");
                    p.bad_errno(
                        libc::EINTR,
                        format!("{} with EINTR but no signal handler ran", what()),
                    );
                }
            }
            Err(e) => {
                c.inc("bad_errnos");
                p.bad_errno(e, format!("{} with {}", what(), errno_name(e)));
            }
        }
    }
    st.current[i].store(NONE, SeqCst);
    st.waiters_left.fetch_sub(1, SeqCst);
    (c, p)
}

fn waker(st: &State, k: usize, mut rng: Rng) -> (Counts, Problems) {
    let mut c = Counts::default();
    let mut p = Problems::default();
    while !st.stop.load(SeqCst) {
        let aimed = st.current[rng.index(WAITERS)].load(SeqCst);
        let w = if rng.one_in(2) && aimed != NONE {
            aimed as usize
        } else {
            rng.index(WORDS)
        };
        let n = if rng.one_in(8) { i32::MAX } else { 1 };
        match st.wake(w, n, rng.one_in(4)) {
            Ok(woken) => {
                c.inc("wakes");
                c.add("woken", woken as u64);
            }
            Err(e) => {
                c.inc("bad_errnos");
                p.bad_errno(
                    e,
                    format!(
                        "waker {k}: FUTEX_WAKE on word {w} failed with {}",
                        errno_name(e)
                    ),
                );
            }
        }
        if rng.one_in(16) {
            sys::sleep_ns(rng.between(1_000, 20_000));
        }
    }
    (c, p)
}

/// Runs the storm for the test's duration; `with_signals` adds the SIGUSR1 noise.
pub fn run(ctx: &Ctx, with_signals: bool) -> Result<TestResult, String> {
    run_mode(
        ctx,
        Mode {
            signals: with_signals,
            waitv: false,
        },
    )
}

/// Runs the storm for the test's duration in `mode`.
pub fn run_mode(ctx: &Ctx, mode: Mode) -> Result<TestResult, String> {
    let with_signals = mode.signals;
    if with_signals {
        signals::install(true)?;
    }
    let st = Arc::new(State {
        words: (0..WORDS).map(|_| Word::default()).collect(),
        current: std::array::from_fn(|_| AtomicU32::new(NONE)),
        stop: AtomicBool::new(false),
        waiters_left: AtomicUsize::new(WAITERS),
    });
    let blocked = Blocked::new("waiter", "FUTEX_WAIT", WAITERS);
    ctx.on_hang_blocked(&blocked);

    let mut waiters = Vec::new();
    for i in 0..WAITERS {
        let (st, b, rng) = (Arc::clone(&st), Arc::clone(&blocked), ctx.rng(i as u64));
        waiters.push(harness::spawn(&format!("waiter{i}"), move || {
            waiter(&st, &b, i, rng, mode)
        })?);
    }
    let mut wakers = Vec::new();
    for k in 0..WAKERS {
        let (st, rng) = (Arc::clone(&st), ctx.rng(100 + k as u64));
        wakers.push(harness::spawn(&format!("waker{k}"), move || {
            waker(&st, k, rng)
        })?);
    }
    let signaler = if with_signals {
        let targets = (0..WAITERS).collect();
        Some(Signaler::start(
            Arc::clone(&blocked),
            targets,
            150_000,
            250_000,
            ctx.rng(200),
        )?)
    } else {
        None
    };

    sys::sleep_until(ctx.end_ns());
    st.stop.store(true, SeqCst);

    let mut counts = Counts::with_keys(&[
        "waits",
        "wakeups",
        "timeouts",
        "eagain",
        "eintr",
        "wakes",
        "bad_errnos",
        "early_timeouts",
        "unexplained_wakeups",
    ]);
    let mut problems = Problems::default();
    if let Some(s) = signaler {
        s.finish(&mut counts, &mut problems);
    }
    harness::join_all(wakers, &mut counts, &mut problems);
    // Untimed waiters sleep until woken: wake every word until all have seen `stop`.
    while st.waiters_left.load(SeqCst) > 0 {
        for w in 0..WORDS {
            if let Err(e) = st.wake(w, i32::MAX, true) {
                problems.bad_errno(e, format!("final FUTEX_WAKE failed with {}", errno_name(e)));
            }
        }
        sys::sleep_ns(100_000);
    }
    harness::join_all(waiters, &mut counts, &mut problems);

    let mut r = ctx.result();
    let g = |k| counts.get(k);
    let signal_part = if with_signals {
        format!(
            ", {} SIGUSR1 sent and {} handled",
            g("signals_sent"),
            g("signals_handled")
        )
    } else {
        String::new()
    };
    let calls = if mode.waitv {
        format!("futex_waitv calls (on {WAITV_WORDS} words each)")
    } else {
        "FUTEX_WAITs".to_owned()
    };
    let stats = format!(
        "{} {calls} by {WAITERS} waiters on {WORDS} words ({} woken, {} timed out, {} EAGAIN, \
         {} EINTR), {} FUTEX_WAKEs by {WAKERS} wakers{signal_part}: {} bad errnos, {} early \
         timeouts, {} unexplained wake-ups",
        g("waits"),
        g("wakeups"),
        g("timeouts"),
        g("eagain"),
        g("eintr"),
        g("wakes"),
        g("bad_errnos"),
        g("early_timeouts"),
        g("unexplained_wakeups"),
    );
    counts.record(&mut r);
    problems.conclude(&mut r, &stats);
    Ok(r)
}
