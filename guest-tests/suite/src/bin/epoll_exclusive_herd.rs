//! `epoll_exclusive_herd`: EPOLLEXCLUSIVE waiters on one eventfd must not lose an event.
//!
//! - **Checks**: 4 threads, each with its own epoll instance watching one non-blocking
//!   eventfd with `EPOLLIN | EPOLLEXCLUSIVE`, wait in `epoll_wait()` and read the eventfd when
//!   woken. The main thread writes events (mostly one at a time, sometimes 2–3 in a row) and
//!   waits for them to be consumed: every event must be consumed within 4Δ. A slow event fails
//!   only when the eventfd is still readable and every consumer sleeps in `epoll_wait()`;
//!   slower ones count as `slow_events`. The total read must equal the total written.
//!   `wakeups_per_event` shows how well EPOLLEXCLUSIVE avoids the herd (1.0 is ideal; each
//!   write wakes at least one waiter). EINTR is retried, for a real signal's sake; the
//!   wait-queue amplifier's fake signal does not reach here, because epoll's entries use
//!   `ep_autoremove_wake_function()`, not `autoremove_wake_function()`.
//! - **Kernel path**: `fs/eventfd.c:eventfd_write()` wakes `ctx->wqh` once exclusively;
//!   `fs/eventpoll.c:ep_poll_callback()` is the wake function of each EPOLLEXCLUSIVE entry
//!   (registered at `fs/eventpoll.c:1560`) and stops the walk at the first instance with a
//!   sleeper; that sleeper is woken from `ep->wq` and sleeps in the open-coded wait of
//!   `ep_poll()` (`fs/eventpoll.c:2252`). The exclusive walk itself is
//!   `kernel/sched/wait.c:__wake_up_common()`.
//! - **Catches**: neither bad variant, by design: `ep_poll()` checks for events before it
//!   looks at signals and does not use `___wait_event()`, so
//!   `bad-waitqueue-signal-before-condition` leaves it alone. It is a canary for the
//!   candidate patches: a change to the core wake path (the `abort_exclusive_wait`
//!   reintroduction, or anything touching `__wake_up_common()`'s exclusive count or
//!   `autoremove_wake_function()`) that loses or duplicates an exclusive wake-up fails here.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use lab_guest_tests::blocked::{Blocked, Inside};
use lab_guest_tests::harness::{self, Counts, Ctx, Problems, Spec};
use lab_guest_tests::sys::{self, errno_name, Fd};
use lab_proto::{Histogram, TestResult};

const CONSUMERS: usize = 4;

#[derive(Default)]
struct State {
    produced: AtomicU64,
    consumed: AtomicU64,
    stop: AtomicBool,
    consumers_left: AtomicUsize,
}

/// Reads the eventfd's whole count, if any.
fn take(efd: &Fd) -> Result<u64, i32> {
    let mut v = [0u8; 8];
    sys::read(efd.raw(), &mut v).map(|_| u64::from_le_bytes(v))
}

fn consumer(st: &State, efd: &Fd, ep: &Fd, blocked: &Blocked, i: usize) -> (Counts, Problems) {
    blocked.register(i);
    let mut c = Counts::default();
    let mut p = Problems::default();
    while !st.stop.load(SeqCst) {
        blocked.enter(i, st.produced.load(SeqCst));
        let r = sys::epoll_wait_one(ep);
        blocked.leave(i);
        match r {
            Ok(0) => c.inc("empty_returns"),
            Ok(_) => {
                c.inc("wakeups");
                match take(efd) {
                    Ok(v) => {
                        st.consumed.fetch_add(v, SeqCst);
                    }
                    Err(libc::EAGAIN) => c.inc("wakeups_without_event"),
                    Err(e) => {
                        c.inc("bad_errnos");
                        p.bad_errno(
                            e,
                            format!("consumer {i}: read(eventfd) failed with {}", errno_name(e)),
                        );
                    }
                }
            }
            Err(libc::EINTR) => c.inc("eintr"),
            Err(e) => {
                c.inc("bad_errnos");
                p.bad_errno(
                    e,
                    format!("consumer {i}: epoll_wait failed with {}", errno_name(e)),
                );
                break;
            }
        }
    }
    st.consumers_left.fetch_sub(1, SeqCst);
    (c, p)
}

fn run(ctx: &Ctx) -> Result<TestResult, String> {
    let delta = ctx.delta_ns();
    let efd = Arc::new(sys::eventfd().map_err(|e| format!("eventfd: {}", errno_name(e)))?);
    let st = Arc::new(State {
        consumers_left: AtomicUsize::new(CONSUMERS),
        ..State::default()
    });
    let blocked = Blocked::new("consumer", "epoll_wait()", CONSUMERS);
    let mut consumers = Vec::new();
    for i in 0..CONSUMERS {
        let ep = sys::epoll_watching(&efd, libc::EPOLLEXCLUSIVE)
            .map_err(|e| format!("epoll with EPOLLEXCLUSIVE: {}", errno_name(e)))?;
        let (st, efd, b) = (Arc::clone(&st), Arc::clone(&efd), Arc::clone(&blocked));
        consumers.push(harness::spawn(&format!("consumer{i}"), move || {
            consumer(&st, &efd, &ep, &b, i)
        })?);
    }
    ctx.on_hang({
        let (st, b) = (Arc::clone(&st), Arc::clone(&blocked));
        move || {
            format!(
                "{} of {} events consumed: {}",
                st.consumed.load(SeqCst),
                st.produced.load(SeqCst),
                b.describe()
            )
        }
    });

    let mut rng = ctx.rng(1);
    let mut problems = Problems::default();
    let mut counts = Counts::with_keys(&[
        "events",
        "wakeups",
        "slow_events",
        "lost_wakeups",
        "eintr",
        "bad_errnos",
        "wakeups_without_event",
    ]);
    let mut latency = Histogram::default();
    let one = 1u64.to_le_bytes();
    'events: while ctx.running() {
        let burst = if rng.one_in(8) { rng.between(2, 3) } else { 1 };
        let t0 = sys::now_ns();
        for _ in 0..burst {
            sys::write(efd.raw(), &one)
                .map_err(|e| format!("write(eventfd): {}", errno_name(e)))?;
            st.produced.fetch_add(1, SeqCst);
            counts.inc("events");
        }
        let mut slow = false;
        while st.consumed.load(SeqCst) < st.produced.load(SeqCst) {
            let waited = sys::now_ns() - t0;
            if waited > 4 * delta {
                slow = true;
                let pending = sys::readable_now(&efd).unwrap_or(false);
                if let (true, Inside::Asleep { threads, .. }) = (pending, blocked.inside()) {
                    if threads.len() == CONSUMERS {
                        counts.inc("lost_wakeups");
                        problems.add(format!(
                            "event not consumed {} ms after the write (4Δ = {} ms): the eventfd \
                             is readable and all {CONSUMERS} consumers sleep in epoll_wait()",
                            waited / 1_000_000,
                            4 * delta / 1_000_000
                        ));
                        break 'events;
                    }
                }
            }
            sys::sleep_ns(10_000);
        }
        latency.record(sys::now_ns() - t0);
        if slow {
            counts.inc("slow_events");
        }
        // Let the consumers go back to sleep, mostly.
        sys::sleep_ns(rng.between(0, 200_000));
    }

    st.stop.store(true, SeqCst);
    // Each write wakes at least one consumer, which then sees the stop.
    let mut stop_writes = 0u64;
    while st.consumers_left.load(SeqCst) > 0 {
        if sys::write(efd.raw(), &one).is_ok() {
            stop_writes += 1;
        }
        sys::sleep_ns(100_000);
    }
    harness::join_all(consumers, &mut counts, &mut problems);
    let leftover = take(&efd).unwrap_or(0);
    let produced = st.produced.load(SeqCst);
    let consumed = st.consumed.load(SeqCst);
    if consumed + leftover != produced + stop_writes {
        problems.add(format!(
            "{} counted out of the eventfd, {} written",
            consumed + leftover,
            produced + stop_writes
        ));
    }

    let mut r = ctx.result();
    let events = counts.get("events");
    let wakeups_per_event = counts.get("wakeups") as f64 / events.max(1) as f64;
    r.metrics
        .insert("wakeups_per_event".into(), wakeups_per_event);
    let ms = |q: f64| latency.quantile(q).unwrap_or(0) as f64 / 1e6;
    r.metrics.insert("consume_ms_p99".into(), ms(0.99));
    r.metrics
        .insert("consume_ms_max".into(), latency.max as f64 / 1e6);
    let g = |k| counts.get(k);
    let stats = format!(
        "{events} events through one eventfd to {CONSUMERS} EPOLLEXCLUSIVE waiters: {:.2} \
         wake-ups per event, consumed within p99 {:.3} ms, max {:.3} ms (4Δ = {} ms), {} slow \
         events, {} EINTR",
        wakeups_per_event,
        ms(0.99),
        latency.max as f64 / 1e6,
        4 * delta / 1_000_000,
        g("slow_events"),
        g("eintr"),
    );
    r.histograms.insert("consume_ns".into(), latency);
    counts.record(&mut r);
    problems.conclude(&mut r, &stats);
    Ok(r)
}

fn main() {
    harness::main(Spec::new("epoll_exclusive_herd", 2000), run)
}
