//! `futex_pingpong`: futex wake-up latency between two SCHED_FIFO threads on two CPUs.
//!
//! - **Measures**: "ping" (SCHED_FIFO 10) and "pong" (SCHED_FIFO 20), pinned to the first two
//!   allowed CPUs, take turns: whoever's turn it is bumps the futex word and FUTEX_WAKEs the
//!   other, then FUTEX_WAITs for its next turn. The time from just before FUTEX_WAKE to the
//!   sleeper's return from FUTEX_WAIT goes into the `wake_ns` histogram (and `wake_ns_hi` /
//!   `wake_ns_lo` by the priority of the thread woken); `round_trips_per_s` is the rate. Pass
//!   unless a futex call fails (any errno ≥ 512 is recorded as `first_bad_errno`).
//! - **Same hash bucket**: both directions use one futex word, so waker and wakee always
//!   meet on the same `futex_hash_bucket` (`kernel/futex/core.c:futex_hash()` of one key);
//!   two separate words would share a bucket only by chance. That is the pattern the
//!   lockless-wake revert makes slower: `futex_wake_mark()` would wake the higher-priority
//!   pong while ping still holds `hb->lock`, pong runs at once and blocks on that lock
//!   (`kernel/futex/waitwake.c:futex_wake()` / `__futex_wait()`), the "double wake-up"
//!   that lockless wake-ups removed. On PREEMPT_RT `hb->lock` is a sleeping lock, so it costs
//!   a context switch each way.
//! - **Catches**: no bad variant by verdict. The revert is meant to change latency only, so
//!   the lab compares these figures between kernels on one host (absolute numbers under TCG
//!   mean little). `bad-futex-no-spurious-retry` may show as an errno ≥ 512, which fails.
//! - **Privilege**: SCHED_FIFO needs CAP_SYS_NICE. If the kernel says EPERM the test falls
//!   back to SCHED_OTHER, says so in the summary and sets `sched_fifo=0` (still a pass). With
//!   one CPU, both threads share it (the summary says so), which makes the woken pong preempt
//!   ping in the middle of its wake. `sched_setscheduler` is the raw syscall: musl's wrapper
//!   is an ENOSYS stub.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use lab_guest_tests::harness::{self, Counts, Ctx, Problems, Spec};
use lab_guest_tests::sys::{self, errno_name, Errno};
use lab_proto::{Histogram, TestResult};

const PING_PRIO: i32 = 10;
const PONG_PRIO: i32 = 20;

#[derive(Default)]
struct State {
    /// Even: ping's turn; odd: pong's.
    word: AtomicU32,
    /// CLOCK_MONOTONIC just before the last FUTEX_WAKE.
    woken_at: AtomicU64,
    stop: AtomicBool,
}

struct Player {
    name: &'static str,
    parity: u32,
    cpu: usize,
    prio: i32,
}

struct Played {
    turns: u64,
    wake_ns: Histogram,
    fifo: Result<(), Errno>,
    pinned: Result<(), Errno>,
    counts: Counts,
    problems: Problems,
}

fn play(st: &State, me: &Player) -> Played {
    let pinned = sys::pin_to_cpu(me.cpu);
    let fifo = sys::set_scheduler(libc::SCHED_FIFO, me.prio);
    let mut out = Played {
        turns: 0,
        wake_ns: Histogram::default(),
        fifo,
        pinned,
        counts: Counts::default(),
        problems: Problems::default(),
    };
    loop {
        let v = st.word.load(SeqCst);
        if v % 2 != me.parity {
            match sys::futex_wait(&st.word, v, None) {
                Ok(()) => {
                    let at = st.woken_at.load(SeqCst);
                    out.wake_ns.record(sys::now_ns().saturating_sub(at));
                    out.counts.inc("wakeups");
                }
                Err(libc::EAGAIN) => out.counts.inc("eagain"),
                Err(libc::EINTR) => out.counts.inc("eintr"),
                Err(e) => {
                    out.counts.inc("bad_errnos");
                    out.problems.bad_errno(
                        e,
                        format!("{}: FUTEX_WAIT failed with {}", me.name, errno_name(e)),
                    );
                }
            }
            continue;
        }
        // My turn. After the stop, pass it on once more so the other side sees it too.
        let stopping = st.stop.load(SeqCst);
        out.turns += 1;
        st.woken_at.store(sys::now_ns(), SeqCst);
        st.word.store(v.wrapping_add(1), SeqCst);
        if let Err(e) = sys::futex_wake(&st.word, 1) {
            out.counts.inc("bad_errnos");
            out.problems.bad_errno(
                e,
                format!("{}: FUTEX_WAKE failed with {}", me.name, errno_name(e)),
            );
        }
        if stopping {
            break;
        }
    }
    out
}

fn run(ctx: &Ctx) -> Result<TestResult, String> {
    let cpus = sys::allowed_cpus().map_err(|e| format!("sched_getaffinity: {}", errno_name(e)))?;
    let (cpu_ping, cpu_pong) = match cpus.as_slice() {
        [] => return Err("sched_getaffinity returned no CPU".into()),
        [only] => (*only, *only),
        [a, b, ..] => (*a, *b),
    };
    let st = Arc::new(State::default());
    let players = [
        Player {
            name: "ping",
            parity: 0,
            cpu: cpu_ping,
            prio: PING_PRIO,
        },
        Player {
            name: "pong",
            parity: 1,
            cpu: cpu_pong,
            prio: PONG_PRIO,
        },
    ];
    ctx.on_hang({
        let st = Arc::clone(&st);
        move || {
            format!(
                "ping and pong in FUTEX_WAIT/FUTEX_WAKE on one word, at turn {}",
                st.word.load(SeqCst)
            )
        }
    });
    let started = sys::now_ns();
    let [p0, p1] = players;
    let spawn_player = |p: Player| {
        let st = Arc::clone(&st);
        harness::spawn(p.name, move || play(&st, &p))
    };
    let (ping, pong) = (spawn_player(p0)?, spawn_player(p1)?);
    sys::sleep_until(ctx.end_ns());
    st.stop.store(true, SeqCst);
    let (ping, pong) = (harness::join(ping), harness::join(pong));
    let elapsed = sys::now_ns() - started;

    let mut problems = Problems::default();
    let mut counts = Counts::with_keys(&["wakeups", "eagain", "eintr", "bad_errnos"]);
    let mut notes = Vec::new();
    let fifo_ok = ping.fifo.is_ok() && pong.fifo.is_ok();
    if let Some(e) = [ping.fifo, pong.fifo].into_iter().find_map(Result::err) {
        if e == libc::EPERM {
            notes.push("SCHED_FIFO refused with EPERM (no privilege): ran as SCHED_OTHER".into());
        } else {
            problems.add(format!(
                "sched_setscheduler(SCHED_FIFO) failed with {}",
                errno_name(e)
            ));
        }
    }
    if let Some(e) = [ping.pinned, pong.pinned].into_iter().find_map(Result::err) {
        notes.push(format!("could not pin to CPUs: {}", errno_name(e)));
    }
    if cpu_ping == cpu_pong {
        notes.push(format!(
            "only CPU {cpu_ping} is available: both threads share it"
        ));
    }
    counts.add("sched_fifo", fifo_ok.into());
    counts.add("cpus_used", if cpu_ping == cpu_pong { 1 } else { 2 });
    let mut wake_ns = Histogram::default();
    wake_ns.merge(&ping.wake_ns);
    wake_ns.merge(&pong.wake_ns);
    for side in [&ping, &pong] {
        counts.merge(&side.counts);
    }
    problems.merge(ping.problems);
    problems.merge(pong.problems);
    let round_trips = ping.turns;
    counts.add("round_trips", round_trips);

    let mut r = ctx.result();
    let per_s = round_trips as f64 / (elapsed.max(1) as f64 / 1e9);
    r.metrics.insert("round_trips_per_s".into(), per_s);
    let q = |q: f64| wake_ns.quantile(q).unwrap_or(0);
    for (name, v) in [
        ("wake_ns_p50", q(0.5)),
        ("wake_ns_p90", q(0.9)),
        ("wake_ns_p99", q(0.99)),
        ("wake_ns_max", wake_ns.max),
    ] {
        r.metrics.insert(name.into(), v as f64);
    }
    r.metrics
        .insert("wake_ns_mean".into(), wake_ns.mean().unwrap_or(0.0));
    let policy = if fifo_ok { "SCHED_FIFO" } else { "SCHED_OTHER" };
    let mut stats = format!(
        "{round_trips} round trips ({per_s:.0}/s) between {policy} threads on CPUs {cpu_ping} \
         and {cpu_pong}, one futex word: wake latency p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, \
         max {:.1} µs over {} wake-ups",
        q(0.5) as f64 / 1e3,
        q(0.9) as f64 / 1e3,
        q(0.99) as f64 / 1e3,
        wake_ns.max as f64 / 1e3,
        wake_ns.count,
    );
    for n in &notes {
        stats.push_str("; ");
        stats.push_str(n);
    }
    r.histograms.insert("wake_ns".into(), wake_ns);
    // Ping wakes pong (the higher priority) and pong wakes ping.
    r.histograms.insert("wake_ns_hi".into(), pong.wake_ns);
    r.histograms.insert("wake_ns_lo".into(), ping.wake_ns);
    counts.record(&mut r);
    problems.conclude(&mut r, &stats);
    Ok(r)
}

fn main() {
    harness::main(Spec::new("futex_pingpong", 2000), run)
}
