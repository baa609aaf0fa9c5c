//! `pipe_writer_herd`: the write-side mirror of the pipe reader tests, and a NEGATIVE control.
//!
//! - **Checks**: 6 writers write 64-byte records (atomic, below PIPE_BUF) into a one-page
//!   pipe, so they spend their time blocked in `pipe_write()`; 3 of them get SIGUSR1 every
//!   100–200 µs without SA_RESTART and retry on EINTR. A reader drains the pipe at random
//!   moments. After each drain the pipe has room, so a blocked writer must get going: it fails
//!   if the pipe stays empty for longer than 4Δ while every writer inside `write()` sleeps
//!   there. It also checks that every record arrives, once and in order per writer.
//! - **Kernel path**: `fs/pipe.c:pipe_write()`: `wait_event_interruptible_exclusive()` on
//!   `wr_wait`, the reader's wake-up of one writer when the pipe was full, and the
//!   wake-next-writer chain.
//! - **Should NOT fail on** `bad-waitqueue-signal-before-condition`, and that is the point:
//!   `pipe_write()` ignores the wait's return value. A chosen writer that sees a signal first
//!   takes the mutex again, finds room, writes its record anyway, and then wakes the next
//!   writer (`wake_next_writer`), so no wake-up is lost. A pass on the bad kernel, next to
//!   `pipe_excl` and `pipe_fanout` failing there, shows those failures come from the wait's
//!   error path and not from pipes or signals in general. A failure here on any kernel is a
//!   real lost wake-up in `pipe_write()` or in the core wake path.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use lab_guest_tests::blocked::{Blocked, Inside};
use lab_guest_tests::harness::{self, Counts, Ctx, Problems, Spec};
use lab_guest_tests::signals::{self, Signaler};
use lab_guest_tests::sys::{self, errno_name, Fd};
use lab_proto::TestResult;

const WRITERS: usize = 6;
const NOISY: usize = 3;
const RECORD: usize = 64;
const PIPE_BYTES: usize = 4096;

#[derive(Default)]
struct State {
    stop: AtomicBool,
    writers_left: AtomicUsize,
}

fn record(writer: usize, seq: u64) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[..8].copy_from_slice(&(writer as u64).to_le_bytes());
    r[8..16].copy_from_slice(&seq.to_le_bytes());
    r
}

/// Writes records until told to stop; returns how many it wrote.
fn writer(fd: c_int, st: &State, blocked: &Blocked, i: usize) -> (u64, Counts, Problems) {
    blocked.register(i);
    let noisy = i < NOISY;
    let mut c = Counts::default();
    let mut p = Problems::default();
    let mut seq = 0u64;
    'records: while !st.stop.load(SeqCst) {
        let rec = record(i, seq);
        loop {
            blocked.enter(i, seq);
            let r = sys::write(fd, &rec);
            blocked.leave(i);
            match r {
                Ok(RECORD) => break,
                Ok(n) => {
                    p.add(format!(
                        "writer {i}: a {RECORD}-byte write wrote only {n} bytes"
                    ));
                    break 'records;
                }
                Err(libc::EINTR) if noisy => c.inc("eintr"),
                Err(e) => {
                    c.inc("bad_errnos");
                    p.bad_errno(
                        e,
                        format!("writer {i}: write() failed with {}", errno_name(e)),
                    );
                    break 'records;
                }
            }
        }
        seq += 1;
    }
    st.writers_left.fetch_sub(1, SeqCst);
    (seq, c, p)
}

/// Reads what is queued and checks each record is the next one of its writer.
struct Drain {
    buf: Vec<u8>,
    carry: Vec<u8>,
    next: [u64; WRITERS],
    records: u64,
}

impl Drain {
    fn read(&mut self, fd: &Fd, p: &mut Problems) -> Result<usize, String> {
        let n = match sys::read(fd.raw(), &mut self.buf) {
            Ok(n) => n,
            Err(libc::EINTR) => 0,
            Err(e) => return Err(format!("read from the pipe failed with {}", errno_name(e))),
        };
        self.carry.extend_from_slice(&self.buf[..n]);
        let whole = self.carry.len() / RECORD * RECORD;
        for rec in self.carry[..whole].chunks_exact(RECORD) {
            let word = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&rec[at..at + 8]);
                u64::from_le_bytes(b)
            };
            let (w, seq) = (word(0) as usize, word(8));
            match self.next.get_mut(w) {
                Some(next) if *next == seq => *next += 1,
                Some(next) => {
                    p.add(format!(
                        "writer {w}: record {seq} arrived when {next} was due"
                    ));
                    *next = seq + 1;
                }
                None => p.add(format!("a record names writer {w}, which does not exist")),
            }
            self.records += 1;
        }
        self.carry.drain(..whole);
        Ok(n)
    }
}

fn run(ctx: &Ctx) -> Result<TestResult, String> {
    let delta = ctx.delta_ns();
    signals::install(false)?;
    let (rfd, wfd) = sys::pipe().map_err(|e| format!("pipe: {}", errno_name(e)))?;
    let capacity = sys::set_pipe_size(&wfd, PIPE_BYTES)
        .or_else(|_| sys::pipe_size(&wfd))
        .map_err(|e| format!("F_GETPIPE_SZ: {}", errno_name(e)))?;
    let st = Arc::new(State {
        writers_left: AtomicUsize::new(WRITERS),
        ..State::default()
    });
    let blocked = Blocked::new("writer", "write()", WRITERS);
    let mut writers = Vec::new();
    for i in 0..WRITERS {
        let (st, b, fd) = (Arc::clone(&st), Arc::clone(&blocked), wfd.raw());
        writers.push(harness::spawn(&format!("writer{i}"), move || {
            writer(fd, &st, &b, i)
        })?);
    }
    ctx.on_hang_blocked(&blocked);
    let signaler = Signaler::start(
        Arc::clone(&blocked),
        (0..NOISY).collect(),
        100_000,
        200_000,
        ctx.rng(1),
    )?;

    let mut rng = ctx.rng(2);
    let step = (delta / 50).max(50_000);
    let mut problems = Problems::default();
    let mut counts = Counts::with_keys(&["drains", "lost_wakeups", "eintr", "bad_errnos"]);
    let mut drain = Drain {
        buf: vec![0; capacity.max(PIPE_BYTES)],
        carry: Vec::new(),
        next: [0; WRITERS],
        records: 0,
    };
    let mut longest = 0u64;
    'drains: while ctx.running() {
        // Let the writers fill the pipe and block.
        sys::sleep_ns(rng.between(0, 500_000));
        if sys::fionread(&rfd).unwrap_or(0) > 0 {
            drain.read(&rfd, &mut problems)?;
            counts.inc("drains");
        }
        let emptied = sys::now_ns();
        // The pipe has room now: some writer must write soon.
        while sys::fionread(&rfd).unwrap_or(1) == 0 {
            let t = sys::now_ns();
            let worst = (0..WRITERS)
                .filter_map(|i| blocked.since(i))
                .map(|s| t.saturating_sub(s.max(emptied)))
                .max()
                .unwrap_or(0);
            longest = longest.max(worst);
            if worst > 4 * delta {
                if let Inside::Asleep { threads, .. } = blocked.inside() {
                    counts.inc("lost_wakeups");
                    problems.add(format!(
                        "{} writer(s) asleep in write() for {} ms (4Δ = {} ms) while the pipe \
                         was empty",
                        threads.len(),
                        worst / 1_000_000,
                        4 * delta / 1_000_000
                    ));
                    break 'drains;
                }
            }
            sys::sleep_ns(step);
        }
    }

    st.stop.store(true, SeqCst);
    signaler.finish(&mut counts, &mut problems);
    // Keep draining until every writer has finished its last record, then take the rest.
    while st.writers_left.load(SeqCst) > 0 || sys::fionread(&rfd).unwrap_or(0) > 0 {
        if sys::fionread(&rfd).unwrap_or(0) > 0 {
            drain.read(&rfd, &mut problems)?;
        } else {
            sys::sleep_ns(50_000);
        }
    }
    let mut written = 0;
    for (i, h) in writers.into_iter().enumerate() {
        let (n, c, p) = harness::join(h);
        written += n;
        counts.merge(&c);
        problems.merge(p);
        if drain.next[i] != n {
            problems.add(format!(
                "writer {i} wrote {n} records, {} arrived",
                drain.next[i]
            ));
        }
    }

    let mut r = ctx.result();
    counts.add("records_written", written);
    counts.add("records_read", drain.records);
    r.metrics
        .insert("longest_empty_with_writers_ms".into(), longest as f64 / 1e6);
    let g = |k| counts.get(k);
    let stats = format!(
        "{written} records by {WRITERS} writers through a {capacity}-byte pipe, {} read in {} \
         drains, {} EINTR, {} SIGUSR1 sent: longest empty-with-writers {:.1} ms (4Δ = {} ms)",
        drain.records,
        g("drains"),
        g("eintr"),
        g("signals_sent"),
        longest as f64 / 1e6,
        4 * delta / 1_000_000,
    );
    counts.record(&mut r);
    problems.conclude(&mut r, &stats);
    Ok(r)
}

fn main() {
    harness::main(Spec::new("pipe_writer_herd", 2000), run)
}
