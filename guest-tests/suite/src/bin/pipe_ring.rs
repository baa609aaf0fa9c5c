//! `pipe_ring`: Linus's token ring, documented as a test that does NOT detect the bug.
//!
//! - **Checks**: 4 pipes in a ring, 2 reader threads on each; 3 one-byte tokens go round. A
//!   thread reads a token from its pipe and writes it into the next one, retrying at once on
//!   EINTR; one thread of each pipe gets SIGUSR1 every 100–200 µs without SA_RESTART. At the
//!   end every token is parked at its next hop and counted: all 3 must come back, each once.
//!   A token that sits in a pipe for longer than 4Δ while both of that pipe's threads sleep
//!   in `read()` fails the test (a lost wake-up), though the bug below cannot cause it.
//! - **Kernel path**: `fs/pipe.c:pipe_read()`'s exclusive wait and `pipe_write()`'s wake-up
//!   of one reader, as in `pipe_excl`.
//! - **Does NOT detect** `bad-waitqueue-signal-before-condition`, on purpose: it passes on
//!   that kernel. The reader that loses the wake-up to a signal is the reader that retries at
//!   once and finds the token itself, so the loss heals before anyone can see it; the token
//!   count stays right. That is how the bug went unseen, and why the lab's detectors keep
//!   victims that get no signals (`pipe_excl`) or need a chain of wake-ups (`pipe_fanout`).
//!   It must still pass on every good kernel, and the hop rate (`hops_per_s`) is a cheap
//!   throughput figure for pipe wake-ups.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use lab_guest_tests::blocked::{Blocked, Inside};
use lab_guest_tests::harness::{self, Counts, Ctx, Problems, Spec};
use lab_guest_tests::signals::{self, Signaler};
use lab_guest_tests::sys::{self, errno_name, Fd};
use lab_proto::TestResult;

const PIPES: usize = 4;
const PER_PIPE: usize = 2;
const TOKENS: u8 = 3;

#[derive(Default)]
struct State {
    stop: AtomicBool,
    /// Bit t set: token t was parked after the stop.
    parked: AtomicU64,
    parked_count: AtomicUsize,
    hops: AtomicU64,
}

/// Thread `i` reads pipe `i / PER_PIPE` and writes the next one.
fn hop(st: &State, blocked: &Blocked, i: usize, from: i32, to: i32) -> (Counts, Problems) {
    blocked.register(i);
    let noisy = i % PER_PIPE == 0;
    let mut c = Counts::default();
    let mut p = Problems::default();
    let mut token = [0u8; 1];
    loop {
        blocked.enter(i, 0);
        let r = sys::read(from, &mut token);
        blocked.leave(i);
        match r {
            Ok(0) => break,
            Ok(_) => {}
            Err(libc::EINTR) if noisy => {
                c.inc("eintr");
                continue;
            }
            Err(e) => {
                c.inc("bad_errnos");
                p.bad_errno(
                    e,
                    format!("thread {i}: read() failed with {}", errno_name(e)),
                );
                break;
            }
        }
        let t = token[0];
        if t >= TOKENS {
            p.add(format!("thread {i}: read token {t}, which was never sent"));
            continue;
        }
        st.hops.fetch_add(1, SeqCst);
        if st.stop.load(SeqCst) {
            if st.parked.fetch_or(1 << t, SeqCst) & (1 << t) != 0 {
                p.add(format!("token {t} came back twice"));
            }
            st.parked_count.fetch_add(1, SeqCst);
            continue;
        }
        loop {
            match sys::write(to, &token) {
                Ok(1) => break,
                Ok(_) | Err(libc::EINTR) => {}
                Err(e) => {
                    c.inc("bad_errnos");
                    p.bad_errno(
                        e,
                        format!("thread {i}: write() failed with {}", errno_name(e)),
                    );
                    return (c, p);
                }
            }
        }
    }
    (c, p)
}

fn run(ctx: &Ctx) -> Result<TestResult, String> {
    let delta = ctx.delta_ns();
    signals::install(false)?;
    let mut read_ends: Vec<Fd> = Vec::new();
    let mut write_ends: Vec<Fd> = Vec::new();
    for _ in 0..PIPES {
        let (r, w) = sys::pipe().map_err(|e| format!("pipe: {}", errno_name(e)))?;
        read_ends.push(r);
        write_ends.push(w);
    }
    let st = Arc::new(State::default());
    let threads = PIPES * PER_PIPE;
    let blocked = Blocked::new("ring thread", "read()", threads);
    let mut handles = Vec::new();
    for i in 0..threads {
        let from = read_ends[i / PER_PIPE].raw();
        let to = write_ends[(i / PER_PIPE + 1) % PIPES].raw();
        let (st, b) = (Arc::clone(&st), Arc::clone(&blocked));
        handles.push(harness::spawn(&format!("ring{i}"), move || {
            hop(&st, &b, i, from, to)
        })?);
    }
    ctx.on_hang({
        let (st, b) = (Arc::clone(&st), Arc::clone(&blocked));
        move || {
            format!(
                "{} of {TOKENS} tokens parked: {}",
                st.parked_count.load(SeqCst),
                b.describe()
            )
        }
    });
    let signaler = Signaler::start(
        Arc::clone(&blocked),
        (0..threads).step_by(PER_PIPE).collect(),
        100_000,
        200_000,
        ctx.rng(1),
    )?;
    for t in 0..TOKENS {
        let to = &write_ends[t as usize % PIPES];
        sys::write(to.raw(), &[t]).map_err(|e| format!("write token: {}", errno_name(e)))?;
    }
    let started = sys::now_ns();

    sys::sleep_until(ctx.end_ns());
    let hops_by_end = st.hops.load(SeqCst);
    let elapsed = sys::now_ns() - started;
    st.stop.store(true, SeqCst);

    let mut problems = Problems::default();
    let mut counts = Counts::with_keys(&["eintr", "bad_errnos", "lost_wakeups"]);
    // Every token parks at its next hop; one that sits in a pipe with its readers asleep
    // beyond 4Δ was lost.
    let stopped = sys::now_ns();
    while st.parked_count.load(SeqCst) < TOKENS as usize {
        if sys::now_ns() - stopped > 4 * delta {
            let queued: usize = read_ends
                .iter()
                .map(|r| sys::fionread(r).unwrap_or(0))
                .sum();
            if let (true, Inside::Asleep { .. }) = (queued > 0, blocked.inside()) {
                counts.inc("lost_wakeups");
                problems.add(format!(
                    "{queued} token(s) still queued {} ms after the stop (4Δ = {} ms) with \
                     every ring thread asleep in read()",
                    (sys::now_ns() - stopped) / 1_000_000,
                    4 * delta / 1_000_000
                ));
                break;
            }
        }
        sys::sleep_ns(100_000);
    }
    signaler.finish(&mut counts, &mut problems);
    // End of file on every pipe lets every thread go; the read ends stay open until then,
    // or a thread about to read would get EBADF.
    drop(write_ends);
    harness::join_all(handles, &mut counts, &mut problems);
    drop(read_ends);
    let parked = st.parked_count.load(SeqCst);
    if parked != TOKENS as usize && counts.get("lost_wakeups") == 0 {
        problems.add(format!("{parked} of {TOKENS} tokens came back"));
    }

    let mut r = ctx.result();
    let hops_per_s = hops_by_end as f64 / (elapsed.max(1) as f64 / 1e9);
    r.metrics.insert("hops_per_s".into(), hops_per_s);
    r.samples = hops_by_end;
    counts.add("hops", st.hops.load(SeqCst));
    counts.add("tokens", TOKENS.into());
    counts.add("tokens_back", parked as u64);
    let g = |k| counts.get(k);
    let stats = format!(
        "{TOKENS} tokens round a ring of {PIPES} pipes × {PER_PIPE} threads: {} hops ({:.0}/s), \
         {parked} of {TOKENS} tokens back, {} EINTR, {} SIGUSR1 sent (does not detect \
         bad-waitqueue-signal-before-condition by design)",
        g("hops"),
        hops_per_s,
        g("eintr"),
        g("signals_sent"),
    );
    counts.record(&mut r);
    problems.conclude(&mut r, &stats);
    Ok(r)
}

fn main() {
    harness::main(Spec::new("pipe_ring", 1000), run)
}
