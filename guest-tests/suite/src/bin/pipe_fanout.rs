//! `pipe_fanout`: one 8-byte write must reach 8 blocked readers, one byte each.
//!
//! - **Checks**: in each round 8 readers block in a 1-byte `read()` on one pipe, then one
//!   8-byte write wakes them: the first reader woken reads its byte and, finding more, wakes
//!   the next, and so on. Every round must finish within 4Δ. A slow round fails only when the
//!   readers still in `read()` all sleep there while bytes are queued (so a busy CPU is not
//!   mistaken for a lost wake-up); slower rounds are counted as `slow_rounds`. 4 of the
//!   readers get SIGUSR1 every 100–200 µs without SA_RESTART and retry on EINTR.
//! - **Kernel path**: `fs/pipe.c:pipe_read()`: one exclusive wake-up per write into an empty
//!   pipe, then the wake-next-reader chain (`wake_next_reader`) carried only by readers that
//!   waited; the wait is `include/linux/wait.h:___wait_event()` (the bad variant open-codes
//!   it in `fs/pipe.c`).
//! - **Should fail on**: `bad-waitqueue-signal-before-condition`. A chosen reader that sees a
//!   signal first returns without reading; when it retries (EINTR) or restarts (the
//!   amplifier's fake signal), the bytes are already there, so it reads without waiting and
//!   does not pass the wake-up on. The rest of the round sleeps on queued bytes for good.
//!   `wq_amp_fake_signal_pct` makes that happen on the first wake-up of a round; with real
//!   signals only it needs a signal inside the window, which `wq_amp_dequeued_delay_us`
//!   widens.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use lab_guest_tests::blocked::{Blocked, Inside};
use lab_guest_tests::harness::{self, Counts, Ctx, Problems, Spec};
use lab_guest_tests::signals::{self, Signaler};
use lab_guest_tests::sys::{self, errno_name};
use lab_proto::{Histogram, TestResult};

const READERS: usize = 8;
const NOISY: usize = 4;
/// How often readers between rounds and the writer look at the round state.
const POLL_NS: u64 = 20_000;

#[derive(Default)]
struct State {
    /// The round readers may read in; 0 before the first.
    round: AtomicU64,
    /// Readers about to read in this round.
    armed: AtomicUsize,
    /// Readers that got their byte in this round.
    done: AtomicUsize,
    /// Readers that ended early (end of file or an error).
    gone: AtomicUsize,
    stop: AtomicBool,
}

fn reader(fd: c_int, st: &State, blocked: &Blocked, i: usize) -> (Counts, Problems) {
    blocked.register(i);
    let noisy = i < NOISY;
    let mut c = Counts::default();
    let mut p = Problems::default();
    let mut seen = 0;
    'rounds: loop {
        loop {
            if st.stop.load(SeqCst) {
                break 'rounds;
            }
            let round = st.round.load(SeqCst);
            if round > seen {
                seen = round;
                break;
            }
            sys::sleep_ns(POLL_NS);
        }
        st.armed.fetch_add(1, SeqCst);
        let mut byte = [0u8; 1];
        loop {
            blocked.enter(i, seen);
            let r = sys::read(fd, &mut byte);
            blocked.leave(i);
            match r {
                Ok(1) => break,
                Ok(_) => break 'rounds,
                Err(libc::EINTR) if noisy => c.inc("eintr"),
                Err(e) => {
                    c.inc("bad_errnos");
                    p.bad_errno(
                        e,
                        format!("reader {i}: read() failed with {}", errno_name(e)),
                    );
                    break 'rounds;
                }
            }
        }
        c.inc("bytes");
        st.done.fetch_add(1, SeqCst);
    }
    st.gone.fetch_add(1, SeqCst);
    (c, p)
}

fn run(ctx: &Ctx) -> Result<TestResult, String> {
    let delta = ctx.delta_ns();
    signals::install(false)?;
    let (rfd, wfd) = sys::pipe().map_err(|e| format!("pipe: {}", errno_name(e)))?;
    let st = Arc::new(State::default());
    let blocked = Blocked::new("reader", "read()", READERS);
    let mut readers = Vec::new();
    for i in 0..READERS {
        let (st, b, fd) = (Arc::clone(&st), Arc::clone(&blocked), rfd.raw());
        readers.push(harness::spawn(&format!("reader{i}"), move || {
            reader(fd, &st, &b, i)
        })?);
    }
    ctx.on_hang({
        let (st, b) = (Arc::clone(&st), Arc::clone(&blocked));
        move || {
            format!(
                "round {}: {} readers armed, {} done: {}",
                st.round.load(SeqCst),
                st.armed.load(SeqCst),
                st.done.load(SeqCst),
                b.describe()
            )
        }
    });
    let signaler = Signaler::start(
        Arc::clone(&blocked),
        (0..NOISY).collect(),
        100_000,
        200_000,
        ctx.rng(1),
    )?;

    let mut rng = ctx.rng(2);
    let mut problems = Problems::default();
    let mut counts = Counts::with_keys(&["rounds", "slow_rounds", "lost_wakeups", "eintr"]);
    let mut round_ns = Histogram::default();
    st.round.store(1, SeqCst);
    'rounds: while ctx.running() {
        while st.armed.load(SeqCst) < READERS {
            if st.gone.load(SeqCst) > 0 {
                break 'rounds;
            }
            sys::sleep_ns(POLL_NS);
        }
        // Let some or all of them get to sleep in read().
        sys::sleep_ns(rng.between(0, 200_000));
        let t0 = sys::now_ns();
        match sys::write(wfd.raw(), &[0xa5; READERS]) {
            Ok(READERS) => {}
            Ok(n) => return Err(format!("short write of {n} bytes into an empty pipe")),
            Err(e) => return Err(format!("write into the pipe failed with {}", errno_name(e))),
        }
        let mut slow = false;
        while st.done.load(SeqCst) < READERS {
            if st.gone.load(SeqCst) > 0 {
                break 'rounds;
            }
            let waited = sys::now_ns() - t0;
            if waited > 4 * delta {
                slow = true;
                let queued = sys::fionread(&rfd).unwrap_or(0);
                if let (true, Inside::Asleep { threads, .. }) = (queued > 0, blocked.inside()) {
                    counts.inc("lost_wakeups");
                    let who: Vec<String> = threads.iter().map(|(i, _)| i.to_string()).collect();
                    problems.add(format!(
                        "round {}: reader(s) {} still asleep in read() {} ms after the write \
                         (4Δ = {} ms) with {queued} byte(s) queued",
                        st.round.load(SeqCst),
                        who.join(", "),
                        waited / 1_000_000,
                        4 * delta / 1_000_000
                    ));
                    break 'rounds;
                }
            }
            sys::sleep_ns(POLL_NS);
        }
        round_ns.record(sys::now_ns() - t0);
        counts.inc("rounds");
        if slow {
            counts.inc("slow_rounds");
        }
        st.armed.store(0, SeqCst);
        st.done.store(0, SeqCst);
        st.round.fetch_add(1, SeqCst);
    }

    st.stop.store(true, SeqCst);
    signaler.finish(&mut counts, &mut problems);
    // End of file wakes every reader still in read().
    drop(wfd);
    harness::join_all(readers, &mut counts, &mut problems);

    let mut r = ctx.result();
    let ms = |q: f64| round_ns.quantile(q).unwrap_or(0) as f64 / 1e6;
    r.metrics.insert("round_ms_p50".into(), ms(0.5));
    r.metrics.insert("round_ms_p99".into(), ms(0.99));
    r.metrics
        .insert("round_ms_max".into(), round_ns.max as f64 / 1e6);
    let g = |k| counts.get(k);
    let stats = format!(
        "{} rounds of one 8-byte write to {READERS} blocked readers: round p50 {:.3} ms, p99 \
         {:.3} ms, max {:.3} ms (4Δ = {} ms), {} slow rounds, {} EINTR, {} SIGUSR1 sent",
        g("rounds"),
        ms(0.5),
        ms(0.99),
        round_ns.max as f64 / 1e6,
        4 * delta / 1_000_000,
        g("slow_rounds"),
        g("eintr"),
        g("signals_sent"),
    );
    r.histograms.insert("round_ns".into(), round_ns);
    counts.record(&mut r);
    problems.conclude(&mut r, &stats);
    Ok(r)
}

fn main() {
    harness::main(Spec::new("pipe_fanout", 2000), run)
}
