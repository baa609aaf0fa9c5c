//! `pipe_excl`: readers of one pipe must not sleep while data sits in it.
//!
//! - **Checks**: 6 threads read 8-byte records from one pipe, each followed by 20 µs × scale
//!   of "work". 3 noisy readers get SIGUSR1 every 100–200 µs without SA_RESTART and retry
//!   on EINTR; 3 victims never get a signal. The writer writes a burst only when FIONREAD is
//!   0, sized so that one reader alone needs about 10Δ to drain it. It fails if a reader stays
//!   in `read()` longer than Δ while data is queued the whole time: measured from the write
//!   that made data available (only the writer adds data, and only to an empty pipe, so each
//!   FIONREAD > 0 sample proves data was there since that write), and only when every reader
//!   inside `read()` is asleep there (see `lab_guest_tests::blocked`).
//! - **Kernel path**: `fs/pipe.c:pipe_read()`: `wait_event_interruptible_exclusive()` on
//!   `rd_wait` and the wake-next-reader chain after a read that had to wait; the wait itself
//!   is `include/linux/wait.h:___wait_event()` with `kernel/sched/wait.c:
//!   prepare_to_wait_event()` (the bad variant open-codes it in `fs/pipe.c`).
//! - **Should fail on**: `bad-waitqueue-signal-before-condition`. A reader picked by the
//!   exclusive wake-up that sees a signal first returns `-ERESTARTSYS` without reading: the
//!   wake-up is gone. It comes back (EINTR and retry, or a transparent restart for the
//!   amplifier's fake signal), finds data without waiting, and so never wakes the next reader:
//!   the victims sleep while it drains the burst, joined only by the noisy readers as their
//!   signals wake them: 2.5Δ or more. Without an
//!   amplifier the race is narrow (about 2 runs in 8 failed in TCG); `wq_amp_fake_signal_pct`
//!   makes every selected reader see a "signal" and the bad kernel fails every time.

use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use lab_guest_tests::blocked::{Blocked, Inside};
use lab_guest_tests::harness::{self, Counts, Ctx, Problems, Spec};
use lab_guest_tests::signals::{self, Signaler};
use lab_guest_tests::sys::{self, errno_name, Fd};
use lab_proto::TestResult;

const NOISY: usize = 3;
const READERS: usize = 6;
const RECORD: usize = 8;
/// The "work" after each record, before scaling: it makes a lone reader drain a burst slowly,
/// and keeps readers out of `read()` most of the time, so the sleepers stand out.
const WORK_NS: u64 = 20_000;
/// A burst takes a lone reader this many Δ to drain, so that the noisy readers and the one
/// that lost the wake-up, draining it together without the victims, still need 2.5Δ.
const BURST_DELTAS: u64 = 10;
const PIPE_BYTES: usize = 256 * 1024;

fn reader(
    fd: c_int,
    blocked: &Blocked,
    i: usize,
    work_ns: u64,
    bytes: &AtomicU64,
) -> (Counts, Problems) {
    blocked.register(i);
    let noisy = i < NOISY;
    let mut c = Counts::default();
    let mut p = Problems::default();
    let mut buf = [0u8; RECORD];
    loop {
        blocked.enter(i, 0);
        let r = sys::read(fd, &mut buf);
        blocked.leave(i);
        match r {
            Ok(0) => break,
            Ok(n) => {
                c.inc(if noisy { "noisy_reads" } else { "victim_reads" });
                bytes.fetch_add(n as u64, SeqCst);
                sys::sleep_ns(work_ns);
            }
            Err(libc::EINTR) if noisy => c.inc("eintr"),
            Err(e) => {
                c.inc("bad_errnos");
                let role = if noisy { "noisy" } else { "victim" };
                p.bad_errno(
                    e,
                    format!("{role} reader {i}: read() failed with {}", errno_name(e)),
                );
                if !noisy && e == libc::EINTR {
                    continue;
                }
                break;
            }
        }
    }
    (c, p)
}

/// How long one reader takes per record (one read and the work after it) on an idle CPU:
/// the fastest of a few short trials, so that a busy moment during calibration cannot shrink
/// the bursts below what a bad kernel needs to show.
fn ns_per_record(work_ns: u64) -> Result<u64, String> {
    const N: usize = 16;
    const TRIALS: usize = 8;
    let (r, w) = sys::pipe().map_err(|e| format!("pipe: {}", errno_name(e)))?;
    let data = [0u8; N * RECORD];
    let mut buf = [0u8; RECORD];
    let mut best = u64::MAX;
    for _ in 0..TRIALS {
        sys::write(w.raw(), &data).map_err(|e| format!("write: {}", errno_name(e)))?;
        let t0 = sys::now_ns();
        for _ in 0..N {
            sys::read(r.raw(), &mut buf).map_err(|e| format!("read: {}", errno_name(e)))?;
            sys::sleep_ns(work_ns);
        }
        best = best.min((sys::now_ns() - t0) / N as u64);
    }
    Ok(best.max(1))
}

fn write_all(fd: &Fd, mut buf: &[u8]) -> Result<(), String> {
    while !buf.is_empty() {
        match sys::write(fd.raw(), buf) {
            Ok(n) => buf = &buf[n..],
            Err(libc::EINTR) => {}
            Err(e) => return Err(format!("write to the pipe failed with {}", errno_name(e))),
        }
    }
    Ok(())
}

fn run(ctx: &Ctx) -> Result<TestResult, String> {
    let delta = ctx.delta_ns();
    signals::install(false)?;
    let (rfd, wfd) = sys::pipe().map_err(|e| format!("pipe: {}", errno_name(e)))?;
    let capacity = sys::set_pipe_size(&wfd, PIPE_BYTES)
        .or_else(|_| sys::pipe_size(&wfd))
        .map_err(|e| format!("F_GETPIPE_SZ: {}", errno_name(e)))?;
    let work_ns = (WORK_NS as f64 * ctx.params.deadline_scale) as u64;
    let per_record = ns_per_record(work_ns)?;
    let records =
        (BURST_DELTAS * delta / per_record).clamp(64, (capacity / 2 / RECORD) as u64) as usize;
    let burst = vec![0x5a_u8; records * RECORD];

    let blocked = Blocked::new("reader", "read()", READERS);
    let bytes_read = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for i in 0..READERS {
        let (b, bytes, fd) = (Arc::clone(&blocked), Arc::clone(&bytes_read), rfd.raw());
        readers.push(harness::spawn(&format!("reader{i}"), move || {
            reader(fd, &b, i, work_ns, &bytes)
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

    let step = (delta / 50).max(100_000);
    let mut problems = Problems::default();
    let mut counts = Counts::with_keys(&["bursts", "bad_errnos", "eintr", "lost_wakeups"]);
    let mut written = 0u64;
    let mut longest = 0u64;
    'bursts: while ctx.running() {
        write_all(&wfd, &burst)?;
        let avail = sys::now_ns();
        written += burst.len() as u64;
        counts.inc("bursts");
        loop {
            let t = sys::now_ns();
            match sys::fionread(&rfd) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(format!("FIONREAD failed with {}", errno_name(e))),
            }
            // Data was queued from `avail` to `t`; who has been in read() all along?
            let worst = (0..READERS)
                .filter_map(|i| blocked.since(i))
                .map(|s| t.saturating_sub(s.max(avail)))
                .max()
                .unwrap_or(0);
            longest = longest.max(worst);
            if worst > delta {
                if let Inside::Asleep { threads, .. } = blocked.inside() {
                    let stuck = threads
                        .iter()
                        .filter(|&&(_, s)| t.saturating_sub(s.max(avail)) > delta)
                        .map(|&(i, _)| {
                            if i < NOISY {
                                format!("noisy {i}")
                            } else {
                                format!("victim {i}")
                            }
                        })
                        .collect::<Vec<_>>();
                    if !stuck.is_empty() {
                        counts.inc("lost_wakeups");
                        problems.add(format!(
                            "reader(s) {} asleep in read() for more than {} ms (Δ {} ms) while \
                             the burst of {} bytes was queued",
                            stuck.join(", "),
                            worst / 1_000_000,
                            delta / 1_000_000,
                            burst.len()
                        ));
                        break 'bursts;
                    }
                }
            }
            sys::sleep_ns(step);
        }
    }

    signaler.finish(&mut counts, &mut problems);
    // End of file wakes every reader, whatever state the wait queue is in.
    drop(wfd);
    harness::join_all(readers, &mut counts, &mut problems);
    let read = bytes_read.load(SeqCst);
    if read != written {
        problems.add(format!("{read} bytes read of {written} written"));
    }

    let mut r = ctx.result();
    counts.add("records_per_burst", records as u64);
    counts.add("bytes_written", written);
    counts.add("bytes_read", read);
    r.metrics
        .insert("longest_blocked_with_data_ms".into(), longest as f64 / 1e6);
    r.metrics
        .insert("us_per_record_alone".into(), per_record as f64 / 1e3);
    let g = |k| counts.get(k);
    let stats = format!(
        "{} bursts of {records} records to {READERS} readers ({} reads by noisy readers, {} by \
         victims, {} EINTR, {} SIGUSR1 sent): longest blocked-with-data {:.1} ms (Δ {} ms), {} \
         bad errnos",
        g("bursts"),
        g("noisy_reads"),
        g("victim_reads"),
        g("eintr"),
        g("signals_sent"),
        longest as f64 / 1e6,
        delta / 1_000_000,
        g("bad_errnos"),
    );
    counts.record(&mut r);
    problems.conclude(&mut r, &stats);
    Ok(r)
}

fn main() {
    harness::main(Spec::new("pipe_excl", 3000), run)
}
