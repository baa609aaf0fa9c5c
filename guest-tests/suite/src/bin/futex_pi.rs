//! `futex_pi`: PI futexes (FUTEX_LOCK_PI, FUTEX_TRYLOCK_PI, FUTEX_UNLOCK_PI) keep their
//! contract and boost their owner.
//!
//! - **Checks**, all through raw `futex(2)` calls:
//!   - *the word's contract*: a free word taken by FUTEX_TRYLOCK_PI or FUTEX_LOCK_PI holds
//!     the owner's TID; while a waiter sleeps on it, `owner | FUTEX_WAITERS`; after an
//!     uncontended FUTEX_UNLOCK_PI, 0; FUTEX_LOCK_PI and FUTEX_TRYLOCK_PI on a word one owns
//!     give EDEADLK; FUTEX_UNLOCK_PI on a word another thread owns gives EPERM and leaves it
//!     alone; FUTEX_TRYLOCK_PI on a held word gives EAGAIN; a timed FUTEX_LOCK_PI (absolute
//!     CLOCK_REALTIME deadline) on a held word gives ETIMEDOUT, never before the deadline;
//!   - *priority inheritance*, decided by state, not by timing: an owner at SCHED_FIFO 10
//!     holds the word; waiters at SCHED_FIFO 50 (then 30 and 50; then 40 with a far
//!     deadline) block in FUTEX_LOCK_PI on it. Once the owner has seen each waiter asleep
//!     (`S` in /proc) inside the call with FUTEX_WAITERS set, the boost is due (it is done
//!     under the rt_mutex's `wait_lock` before the waiter sleeps), so the owner reads its own
//!     effective priority (/proc/thread-self/stat field 18, `p->prio - 100`) and must see the
//!     top waiter's (-51 for FIFO 50). After FUTEX_UNLOCK_PI, and after a timed waiter gave
//!     up, it must read its own again (-11). The waiters must get the lock highest priority
//!     first. Evidence on failure: the observed and the expected priority;
//!   - *mutual exclusion* under a storm: 4 threads (SCHED_FIFO 10, 20, 30 and SCHED_OTHER)
//!     take the word by the user-space fast path (cmpxchg 0 → TID, as glibc does), by
//!     FUTEX_LOCK_PI, FUTEX_TRYLOCK_PI or a timed FUTEX_LOCK_PI with 1–500 µs deadlines, and
//!     release it by cmpxchg or FUTEX_UNLOCK_PI. Inside, the word must hold the taker's TID,
//!     nobody else may be inside, and a plain counter must end equal to the acquisitions.
//!
//!   Any errno ≥ 512 fails (`first_bad_errno`), and so does any errno the call may not give.
//! - **Kernel path**: `kernel/futex/pi.c`: `futex_lock_pi()` → `futex_lock_pi_atomic()` (sets
//!   FUTEX_WAITERS) → `__rt_mutex_start_proxy_lock()` (`kernel/locking/rtmutex_api.c`) →
//!   `task_blocks_on_rt_mutex()` → `rt_mutex_adjust_prio()` (`kernel/locking/rtmutex.c`: the
//!   boost); `futex_unlock_pi()` → `wake_futex_pi()` → `mark_wakeup_next_waiter()` (the
//!   deboost); `remove_waiter()` on timeout (the deboost of a waiter that gave up).
//! - **Should fail on**: `bad-futex-pi-no-boost` (`task_blocks_on_rt_mutex()` does not call
//!   `rt_mutex_adjust_prio()` for the futex path): the first boost check reads -11 where -51
//!   is due, on every run.
//! - **Privilege**: SCHED_FIFO needs CAP_SYS_NICE. Without it the contract and the storm are
//!   still checked (as SCHED_OTHER), the boost is not, and the verdict is a Skip that says so.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use lab_guest_tests::blocked::Blocked;
use lab_guest_tests::harness::{self, Counts, Ctx, Problems};
use lab_guest_tests::rng::Rng;
use lab_guest_tests::sys::{self, Errno, FUTEX_TID_MASK, FUTEX_WAITERS};
use lab_proto::{TestResult, Verdict};

/// The owner's SCHED_FIFO priority in the boost rounds.
const OWNER_PRIO: i32 = 10;
/// The storm's threads: SCHED_FIFO priorities, `None` for SCHED_OTHER.
const STORM: [Option<i32>; 4] = [Some(10), Some(20), Some(30), None];
/// How often the owner looks at its waiters while it waits for them to fall asleep.
const POLL_NS: u64 = 100_000;

/// What /proc's `priority` field shows for SCHED_FIFO `prio`: `(99 - prio) - 100`.
fn fifo_stat(prio: i32) -> i64 {
    -1 - i64::from(prio)
}

/// errno names, with the PI-specific ones `sys::errno_name` does not know.
fn ename(e: Errno) -> String {
    match e {
        libc::EDEADLK => format!("EDEADLK ({e})"),
        _ => sys::errno_name(e),
    }
}

fn word_str(v: u32) -> String {
    if v & FUTEX_WAITERS != 0 {
        format!("{} | FUTEX_WAITERS", v & FUTEX_TID_MASK)
    } else {
        format!("{v}")
    }
}

/// A returned errno the call may not give: an impossible one (≥ 512) is recorded as such.
fn bad_errno(problems: &mut Problems, counts: &mut Counts, e: Errno, what: &str) {
    counts.inc("bad_errnos");
    if sys::is_kernel_internal(e) {
        problems.bad_errno(e, format!("{what} failed with {}", ename(e)));
    } else {
        problems.add(format!("{what} failed with {}", ename(e)));
    }
}

/// The word after a call, checked against what the contract says it must be.
fn expect_word(problems: &mut Problems, w: &AtomicU32, want: u32, when: &str) {
    let v = w.load(SeqCst);
    if v != want {
        problems.add(format!(
            "{when}: the futex word is {}, expected {}",
            word_str(v),
            word_str(want)
        ));
    }
}

/// The word's contract, one call at a time; a helper thread owns the word for the EPERM,
/// EAGAIN and ETIMEDOUT cases.
fn contract(ctx: &Ctx, counts: &mut Counts, problems: &mut Problems) -> Result<(), String> {
    let me = sys::gettid() as u32;
    let w = Arc::new(AtomicU32::new(0));
    match sys::futex_trylock_pi(&w) {
        Ok(()) => expect_word(problems, &w, me, "after FUTEX_TRYLOCK_PI on a free word"),
        Err(e) => bad_errno(problems, counts, e, "FUTEX_TRYLOCK_PI on a free word"),
    }
    for (what, r) in [
        ("FUTEX_LOCK_PI", sys::futex_lock_pi(&w, None)),
        ("FUTEX_TRYLOCK_PI", sys::futex_trylock_pi(&w)),
    ] {
        match r {
            Err(libc::EDEADLK) => counts.inc("edeadlk"),
            Ok(()) => problems.add(format!("{what} on a word we own succeeded, not EDEADLK")),
            Err(e) => bad_errno(problems, counts, e, &format!("{what} on a word we own")),
        }
    }
    match sys::futex_unlock_pi(&w) {
        Ok(()) => expect_word(problems, &w, 0, "after an uncontended FUTEX_UNLOCK_PI"),
        Err(e) => bad_errno(problems, counts, e, "uncontended FUTEX_UNLOCK_PI"),
    }
    match sys::futex_lock_pi(&w, None) {
        Ok(()) => expect_word(problems, &w, me, "after FUTEX_LOCK_PI on a free word"),
        Err(e) => bad_errno(problems, counts, e, "FUTEX_LOCK_PI on a free word"),
    }
    match sys::futex_unlock_pi(&w) {
        Ok(()) => expect_word(problems, &w, 0, "after an uncontended FUTEX_UNLOCK_PI"),
        Err(e) => bad_errno(problems, counts, e, "uncontended FUTEX_UNLOCK_PI"),
    }

    // A helper owns the word until told to let go.
    let go = Arc::new(AtomicU32::new(0));
    let helper_tid = Arc::new(AtomicI32::new(0));
    let helper = {
        let (w, go, tid) = (Arc::clone(&w), Arc::clone(&go), Arc::clone(&helper_tid));
        harness::spawn("owner", move || {
            let locked = sys::futex_lock_pi(&w, None);
            tid.store(sys::gettid(), SeqCst);
            while go.load(SeqCst) == 0 {
                let _ = sys::futex_wait(&go, 0, None);
            }
            (locked, sys::futex_unlock_pi(&w))
        })?
    };
    while helper_tid.load(SeqCst) == 0 {
        sys::sleep_ns(POLL_NS);
    }
    let owner = helper_tid.load(SeqCst) as u32;
    match sys::futex_unlock_pi(&w) {
        Err(libc::EPERM) => counts.inc("eperm"),
        Ok(()) => problems.add("FUTEX_UNLOCK_PI on a word another thread owns succeeded"),
        Err(e) => bad_errno(problems, counts, e, "FUTEX_UNLOCK_PI on another's word"),
    }
    expect_word(problems, &w, owner, "after a refused FUTEX_UNLOCK_PI");
    match sys::futex_trylock_pi(&w) {
        Err(libc::EAGAIN) => counts.inc("trylock_busy"),
        Ok(()) => problems.add("FUTEX_TRYLOCK_PI on a held word succeeded"),
        Err(e) => bad_errno(problems, counts, e, "FUTEX_TRYLOCK_PI on a held word"),
    }
    let timeout = ctx.delta_ns() / 5;
    let deadline = sys::realtime_ns() + timeout;
    counts.inc("timed_lock_pi");
    match sys::futex_lock_pi(&w, Some(deadline)) {
        Err(libc::ETIMEDOUT) => {
            counts.inc("timeouts");
            let now = sys::realtime_ns();
            if now < deadline {
                problems.add(format!(
                    "FUTEX_LOCK_PI returned ETIMEDOUT {} µs before its deadline",
                    (deadline - now) / 1000
                ));
            }
        }
        Ok(()) => problems.add("a timed FUTEX_LOCK_PI on a held word succeeded"),
        Err(e) => bad_errno(problems, counts, e, "timed FUTEX_LOCK_PI on a held word"),
    }
    go.store(1, SeqCst);
    let _ = sys::futex_wake(&go, 1);
    let (locked, unlocked) = harness::join(helper);
    if let Err(e) = locked {
        bad_errno(
            problems,
            counts,
            e,
            "the helper's FUTEX_LOCK_PI on a free word",
        );
    }
    match unlocked {
        // The timed waiter left FUTEX_WAITERS behind; the unlock with nobody queued clears it.
        Ok(()) => expect_word(problems, &w, 0, "after FUTEX_UNLOCK_PI with nobody queued"),
        Err(e) => bad_errno(problems, counts, e, "the helper's FUTEX_UNLOCK_PI"),
    }
    Ok(())
}

/// One waiter of a boost round.
#[derive(Clone, Copy)]
struct Waiter {
    prio: i32,
    /// Relative deadline of its FUTEX_LOCK_PI, if timed.
    timeout_ns: Option<u64>,
    /// Whether it must time out (the owner holds the word until it has).
    gives_up: bool,
}

/// A waiter thread's state as the owner sees it.
#[derive(Default)]
struct WaiterState {
    tid: AtomicI32,
    /// CLOCK_MONOTONIC when it entered FUTEX_LOCK_PI; 0 before and after.
    inside: AtomicU64,
    done: AtomicBool,
}

struct RoundOut {
    counts: Counts,
    problems: Problems,
}

/// One boost round: an owner at SCHED_FIFO [`OWNER_PRIO`] holds a fresh word while `waiters`
/// block on it, one after the other; the owner checks its priority after each, and after
/// the unlock.
fn boost_round(ctx: &Ctx, label: &str, waiters: &[Waiter]) -> Result<RoundOut, String> {
    let w = Arc::new(AtomicU32::new(0));
    let order = Arc::new(AtomicU32::new(0));
    let states: Arc<Vec<WaiterState>> =
        Arc::new((0..waiters.len()).map(|_| WaiterState::default()).collect());
    let start = Arc::new(AtomicU32::new(0));
    let label = label.to_owned();
    let waiters: Arc<Vec<Waiter>> = Arc::new(waiters.to_vec());
    let patience = ctx.delta_ns() * 20;

    let mut handles = Vec::new();
    for (i, wt) in waiters.iter().copied().enumerate() {
        let (w, order, states, start) = (
            Arc::clone(&w),
            Arc::clone(&order),
            Arc::clone(&states),
            Arc::clone(&start),
        );
        let label = label.clone();
        let all = Arc::clone(&waiters);
        handles.push(harness::spawn(&format!("waiter{i}"), move || {
            let mut counts = Counts::default();
            let mut problems = Problems::default();
            let me = sys::gettid();
            let st = &states[i];
            if let Err(e) = sys::set_scheduler(libc::SCHED_FIFO, wt.prio) {
                problems.add(format!(
                    "{label}: waiter SCHED_FIFO {} refused: {}",
                    wt.prio,
                    ename(e)
                ));
            }
            st.tid.store(me, SeqCst);
            // Released by the owner once it holds the word and the previous waiter sleeps.
            while start.load(SeqCst) <= i as u32 {
                let _ = sys::futex_wait(&start, i as u32, None);
            }
            let deadline = wt.timeout_ns.map(|t| sys::realtime_ns() + t);
            st.inside.store(sys::now_ns(), SeqCst);
            let r = sys::futex_lock_pi(&w, deadline);
            st.inside.store(0, SeqCst);
            match r {
                Ok(()) => {
                    let rank = order.fetch_add(1, SeqCst);
                    let v = w.load(SeqCst);
                    if v & FUTEX_TID_MASK != me as u32 {
                        problems.add(format!(
                            "{label}: FUTEX_LOCK_PI returned 0 to TID {me} but the word is {}",
                            word_str(v)
                        ));
                    }
                    // Highest priority first: the waiters' ranks follow descending prio.
                    let higher = all
                        .iter()
                        .filter(|o| !o.gives_up && o.prio > wt.prio)
                        .count() as u32;
                    if rank != higher {
                        problems.add(format!(
                            "{label}: the FIFO {} waiter got the lock {} in order, expected {}",
                            wt.prio,
                            rank + 1,
                            higher + 1
                        ));
                    }
                    if wt.gives_up {
                        problems.add(format!(
                            "{label}: a timed waiter got a word its owner still held"
                        ));
                    }
                    if let Err(e) = sys::futex_unlock_pi(&w) {
                        bad_errno(&mut problems, &mut counts, e, "waiter's FUTEX_UNLOCK_PI");
                    }
                }
                Err(libc::ETIMEDOUT) if wt.gives_up => {
                    counts.inc("timeouts");
                    let now = sys::realtime_ns();
                    if let Some(d) = deadline.filter(|&d| now < d) {
                        problems.add(format!(
                            "{label}: FUTEX_LOCK_PI returned ETIMEDOUT {} µs early",
                            (d - now) / 1000
                        ));
                    }
                }
                Err(e) => bad_errno(&mut problems, &mut counts, e, "waiter's FUTEX_LOCK_PI"),
            }
            st.done.store(true, SeqCst);
            RoundOut { counts, problems }
        })?);
    }

    let owner = {
        let (w, states, start) = (Arc::clone(&w), Arc::clone(&states), Arc::clone(&start));
        let label = label.clone();
        let waiters = Arc::clone(&waiters);
        harness::spawn("owner", move || {
            let mut counts = Counts::default();
            let mut problems = Problems::default();
            let me = sys::gettid();
            let base = fifo_stat(OWNER_PRIO);
            let out = |counts, problems| RoundOut { counts, problems };
            if let Err(e) = sys::set_scheduler(libc::SCHED_FIFO, OWNER_PRIO) {
                problems.add(format!(
                    "{label}: owner SCHED_FIFO {OWNER_PRIO} refused: {}",
                    ename(e)
                ));
            }
            match sys::thread_priority(me) {
                Some(p) if p == base => {}
                other => {
                    problems.add(format!(
                        "{label}: the owner at SCHED_FIFO {OWNER_PRIO} reads priority {other:?} \
                         in /proc, expected {base}: cannot check boosting"
                    ));
                    start.store(u32::MAX, SeqCst);
                    let _ = sys::futex_wake(&start, i32::MAX);
                    return out(counts, problems);
                }
            }
            if let Err(e) = sys::futex_lock_pi(&w, None) {
                bad_errno(
                    &mut problems,
                    &mut counts,
                    e,
                    "owner's FUTEX_LOCK_PI on a free word",
                );
            }
            let mut top = OWNER_PRIO;
            for (i, wt) in waiters.iter().enumerate() {
                let st = &states[i];
                start.store(i as u32 + 1, SeqCst);
                let _ = sys::futex_wake(&start, i32::MAX);
                let give_up_at = sys::now_ns() + patience;
                // Wait until the waiter sleeps inside FUTEX_LOCK_PI on our word: then its
                // rt_mutex waiter is queued and the boost is due.
                let mut checked = false;
                loop {
                    let since = st.inside.load(SeqCst);
                    let v = w.load(SeqCst);
                    let tid = st.tid.load(SeqCst);
                    if since != 0 && v & FUTEX_WAITERS != 0 && sys::thread_state(tid) == Some('S') {
                        let want = fifo_stat(top.max(wt.prio));
                        let seen = sys::thread_priority(me);
                        // Only a reading taken while the waiter was still inside counts.
                        if st.inside.load(SeqCst) == since {
                            counts.inc("boost_checks");
                            if seen != Some(want) {
                                problems.add(format!(
                                    "{label}: owner (SCHED_FIFO {OWNER_PRIO}) not boosted: reads \
                                     priority {} while a SCHED_FIFO {} waiter sleeps in \
                                     FUTEX_LOCK_PI on its word ({}), expected {want}",
                                    seen.map_or("?".into(), |p| p.to_string()),
                                    wt.prio,
                                    word_str(v)
                                ));
                            } else {
                                counts.inc("boost_ok");
                            }
                            if v & FUTEX_TID_MASK != me as u32 {
                                problems.add(format!(
                                    "{label}: while a waiter sleeps the word is {}, expected \
                                     {me} | FUTEX_WAITERS",
                                    word_str(v)
                                ));
                            }
                            checked = true;
                            break;
                        }
                    }
                    if st.done.load(SeqCst) {
                        break;
                    }
                    if sys::now_ns() > give_up_at {
                        problems.add(format!(
                            "{label}: the SCHED_FIFO {} waiter was not seen asleep in \
                             FUTEX_LOCK_PI within {} ms (state {:?}, word {})",
                            wt.prio,
                            patience / 1_000_000,
                            sys::thread_state(tid),
                            word_str(v)
                        ));
                        break;
                    }
                    sys::sleep_ns(POLL_NS);
                }
                if !checked && !wt.gives_up {
                    // Nothing more can be judged in this round.
                    break;
                }
                if wt.gives_up {
                    // Hold the word until it has timed out: the boost must go with it.
                    while !st.done.load(SeqCst) {
                        sys::sleep_ns(POLL_NS);
                    }
                    let want = fifo_stat(top);
                    let seen = sys::thread_priority(me);
                    counts.inc("deboost_checks");
                    if seen != Some(want) {
                        problems.add(format!(
                            "{label}: owner reads priority {} after its SCHED_FIFO {} waiter \
                             timed out, expected {want}",
                            seen.map_or("?".into(), |p| p.to_string()),
                            wt.prio
                        ));
                    }
                } else {
                    top = top.max(wt.prio);
                }
            }
            match sys::futex_unlock_pi(&w) {
                Ok(()) => {}
                Err(e) => bad_errno(&mut problems, &mut counts, e, "owner's FUTEX_UNLOCK_PI"),
            }
            let seen = sys::thread_priority(me);
            counts.inc("deboost_checks");
            if seen != Some(base) {
                problems.add(format!(
                    "{label}: owner reads priority {} after FUTEX_UNLOCK_PI, expected its own \
                     {base}",
                    seen.map_or("?".into(), |p| p.to_string())
                ));
            }
            start.store(u32::MAX, SeqCst);
            let _ = sys::futex_wake(&start, i32::MAX);
            out(counts, problems)
        })?
    };

    let mut all = harness::join(owner);
    for h in handles {
        let r = harness::join(h);
        all.counts.merge(&r.counts);
        all.problems.merge(r.problems);
    }
    expect_word(
        &mut all.problems,
        &w,
        0,
        &format!("{label}: after every waiter unlocked"),
    );
    all.counts.inc("boost_rounds");
    Ok(all)
}

fn boost_rounds(ctx: &Ctx, counts: &mut Counts, problems: &mut Problems) -> Result<(), String> {
    let untimed = |prio| Waiter {
        prio,
        timeout_ns: None,
        gives_up: false,
    };
    let far = 30 * 1_000_000_000;
    let rounds: [(&str, Vec<Waiter>); 4] = [
        ("one waiter", vec![untimed(50)]),
        ("two waiters", vec![untimed(30), untimed(50)]),
        (
            "timed waiter",
            vec![Waiter {
                prio: 40,
                timeout_ns: Some(far),
                gives_up: false,
            }],
        ),
        (
            "waiter that gives up",
            vec![Waiter {
                prio: 45,
                timeout_ns: Some(ctx.delta_ns()),
                gives_up: true,
            }],
        ),
    ];
    for (label, waiters) in rounds {
        let r = boost_round(ctx, label, &waiters)?;
        counts.merge(&r.counts);
        problems.merge(r.problems);
    }
    Ok(())
}

/// FUTEX_UNLOCK_PI, again while it says EAGAIN: `futex_unlock_pi()` reads the word before it
/// takes `hb->lock`, and when a locker set FUTEX_WAITERS in between it leaves the word alone
/// and returns EAGAIN for user space to look again ("If uval has changed, let user space
/// handle it", `kernel/futex/pi.c`).
fn unlock_retrying(w: &AtomicU32, c: &mut Counts) -> Result<(), Errno> {
    loop {
        match sys::futex_unlock_pi(w) {
            Err(libc::EAGAIN) => c.inc("unlock_eagain"),
            r => return r,
        }
    }
}

/// Shared state of the storm.
struct Storm {
    word: AtomicU32,
    /// TID of the thread inside the critical section, 0 when none.
    holder: AtomicU32,
    /// A counter bumped non-atomically (load, then store) under the lock.
    counter: AtomicU64,
    blocked: Arc<Blocked>,
}

fn storm_worker(
    ctx_end: u64,
    st: &Storm,
    i: usize,
    prio: Option<i32>,
    mut rng: Rng,
) -> (Counts, Problems) {
    let mut c = Counts::default();
    let mut p = Problems::default();
    st.blocked.register(i);
    if let Some(prio) = prio {
        if let Err(e) = sys::set_scheduler(libc::SCHED_FIFO, prio) {
            if e != libc::EPERM {
                p.add(format!("storm: SCHED_FIFO {prio} refused: {}", ename(e)));
            }
        }
    }
    let me = sys::gettid() as u32;
    while sys::now_ns() < ctx_end {
        // Take the word, one way or another.
        let how = rng.below(4);
        let mut taken = false;
        if how == 0 {
            if st.word.compare_exchange(0, me, SeqCst, SeqCst).is_ok() {
                c.inc("fast_path_locks");
                taken = true;
            }
        } else if how == 2 {
            c.inc("trylock_pi");
            match sys::futex_trylock_pi(&st.word) {
                Ok(()) => taken = true,
                Err(libc::EAGAIN) => c.inc("trylock_busy"),
                Err(e) => bad_errno(&mut p, &mut c, e, "FUTEX_TRYLOCK_PI"),
            }
        } else if how == 3 {
            c.inc("timed_lock_pi");
            let deadline = sys::realtime_ns() + rng.between(1_000, 500_000);
            st.blocked.enter(i, 1);
            let r = sys::futex_lock_pi(&st.word, Some(deadline));
            st.blocked.leave(i);
            match r {
                Ok(()) => taken = true,
                Err(libc::ETIMEDOUT) => {
                    c.inc("timeouts");
                    let now = sys::realtime_ns();
                    if now < deadline {
                        p.add(format!(
                            "storm: FUTEX_LOCK_PI returned ETIMEDOUT {} µs before its deadline",
                            (deadline - now) / 1000
                        ));
                    }
                }
                Err(e) => bad_errno(&mut p, &mut c, e, "timed FUTEX_LOCK_PI"),
            }
        }
        if !taken {
            c.inc("lock_pi");
            st.blocked.enter(i, 0);
            let r = sys::futex_lock_pi(&st.word, None);
            st.blocked.leave(i);
            match r {
                Ok(()) => {}
                Err(e) => {
                    bad_errno(&mut p, &mut c, e, "FUTEX_LOCK_PI");
                    break;
                }
            }
        }
        // Inside: the word names us, and nobody else is here.
        let v = st.word.load(SeqCst);
        if v & FUTEX_TID_MASK != me {
            p.add(format!(
                "storm: TID {me} took the lock but the word is {}",
                word_str(v)
            ));
        }
        let other = st.holder.swap(me, SeqCst);
        if other != 0 {
            p.add(format!(
                "storm: two owners at once: TID {me} got the lock while TID {other} held it"
            ));
        }
        let n = st.counter.load(SeqCst);
        for _ in 0..rng.below(64) {
            std::hint::spin_loop();
        }
        st.counter.store(n + 1, SeqCst);
        c.inc("acquisitions");
        if st.holder.compare_exchange(me, 0, SeqCst, SeqCst).is_err() {
            p.add(format!(
                "storm: TID {me}'s critical section was entered by TID {}",
                st.holder.load(SeqCst)
            ));
        }
        // Release it: by cmpxchg when nobody waits (as glibc does), else by the kernel.
        if rng.one_in(2) && st.word.compare_exchange(me, 0, SeqCst, SeqCst).is_ok() {
            c.inc("fast_path_unlocks");
        } else {
            c.inc("unlock_pi");
            if let Err(e) = unlock_retrying(&st.word, &mut c) {
                bad_errno(&mut p, &mut c, e, "FUTEX_UNLOCK_PI by the owner");
                break;
            }
        }
        let v = st.word.load(SeqCst);
        if v & FUTEX_TID_MASK == me {
            p.add(format!(
                "storm: after TID {me} unlocked, the word still names it ({})",
                word_str(v)
            ));
        }
        if rng.one_in(2) {
            sys::sleep_ns(rng.between(1_000, 30_000));
        }
    }
    (c, p)
}

fn storm(ctx: &Ctx, end: u64, counts: &mut Counts, problems: &mut Problems) -> Result<(), String> {
    let st = Arc::new(Storm {
        word: AtomicU32::new(0),
        holder: AtomicU32::new(0),
        counter: AtomicU64::new(0),
        blocked: Blocked::new("locker", "FUTEX_LOCK_PI", STORM.len()),
    });
    ctx.on_hang({
        let st = Arc::clone(&st);
        move || {
            format!(
                "{}; futex word {}",
                st.blocked.describe(),
                word_str(st.word.load(SeqCst))
            )
        }
    });
    let mut handles = Vec::new();
    for (i, prio) in STORM.iter().copied().enumerate() {
        let st = Arc::clone(&st);
        let rng = ctx.rng(i as u64 + 1);
        handles.push(harness::spawn(&format!("locker{i}"), move || {
            storm_worker(end, &st, i, prio, rng)
        })?);
    }
    let mut c = Counts::default();
    let mut p = Problems::default();
    harness::join_all(handles, &mut c, &mut p);
    let total = st.counter.load(SeqCst);
    if total != c.get("acquisitions") {
        p.add(format!(
            "storm: the counter under the lock reads {total} after {} acquisitions: updates \
             were lost, so two threads were inside at once",
            c.get("acquisitions")
        ));
    }
    expect_word(&mut p, &st.word, 0, "after the storm");
    counts.merge(&c);
    problems.merge(p);
    Ok(())
}

/// Whether this process may use SCHED_FIFO, asked in a scratch thread.
fn fifo_allowed() -> Result<Result<(), Errno>, String> {
    let h = harness::spawn("probe", || sys::set_scheduler(libc::SCHED_FIFO, 1))?;
    Ok(harness::join(h))
}

fn run(ctx: &Ctx) -> Result<TestResult, String> {
    let mut counts = Counts::with_keys(&[
        "boost_checks",
        "boost_ok",
        "deboost_checks",
        "acquisitions",
        "lock_pi",
        "trylock_pi",
        "timed_lock_pi",
        "timeouts",
        "bad_errnos",
        "sched_fifo",
    ]);
    let mut problems = Problems::default();
    let fifo = match fifo_allowed()? {
        Ok(()) => true,
        Err(libc::EPERM) => false,
        Err(e) => return Err(format!("sched_setscheduler(SCHED_FIFO): {}", ename(e))),
    };
    counts.add("sched_fifo", fifo.into());

    contract(ctx, &mut counts, &mut problems)?;
    if fifo {
        boost_rounds(ctx, &mut counts, &mut problems)?;
    }
    // The storm takes what is left of the duration but a slice for the last boost rounds.
    let now = sys::now_ns();
    let slice = ctx.end_ns().saturating_sub(now) * 4 / 5;
    storm(ctx, now + slice, &mut counts, &mut problems)?;
    if fifo {
        boost_rounds(ctx, &mut counts, &mut problems)?;
    }
    // The boost rounds may end early on a fast host: the workload runs its whole duration.
    if ctx.running() {
        storm(ctx, ctx.end_ns(), &mut counts, &mut problems)?;
    }

    let mut r = ctx.result();
    let stats = format!(
        "{} acquisitions in the storm ({} FUTEX_LOCK_PI, {} FUTEX_TRYLOCK_PI, {} timed, {} \
         timeouts); {} of {} boost checks saw the waiter's priority, {} deboost checks",
        counts.get("acquisitions"),
        counts.get("lock_pi"),
        counts.get("trylock_pi"),
        counts.get("timed_lock_pi"),
        counts.get("timeouts"),
        counts.get("boost_ok"),
        counts.get("boost_checks"),
        counts.get("deboost_checks"),
    );
    counts.record(&mut r);
    let skip_boost = !fifo && problems.is_empty();
    problems.conclude(&mut r, &stats);
    if skip_boost {
        r.verdict = Verdict::Skip;
        r.summary = format!(
            "SCHED_FIFO refused with EPERM (no privilege): priority inheritance not checked; \
             the word's contract and mutual exclusion held: {stats}"
        );
    }
    Ok(r)
}

fn main() {
    harness::main(harness::Spec::new("futex_pi", 2000), run)
}
