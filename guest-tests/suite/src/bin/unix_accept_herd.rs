//! `unix_accept_herd`: threads blocked in `accept()` on one AF_UNIX socket must not lose a
//! connection.
//!
//! - **Checks**: 4 threads block in `accept()` on one listening AF_UNIX stream socket (an
//!   abstract name, so nothing touches the file system). The main thread connects (mostly
//!   once, sometimes 2–3 times in a row), sends each connection its number, and waits: every
//!   connection must be accepted within 4Δ. A slow one fails only when every acceptor sleeps
//!   in `accept()` (a pending connection with all acceptors asleep is a lost wake-up); slower
//!   ones count as `slow_connections`. Every number must arrive exactly once. EINTR is
//!   retried; no SO_RCVTIMEO is set, because the wait-queue amplifier's fake signals would
//!   turn a timed socket wait into EINTR (`sock_intr_errno()`), while an untimed one restarts
//!   transparently.
//! - **Kernel path**: `net/unix/af_unix.c:unix_accept()` → `skb_recv_datagram()` →
//!   `net/core/datagram.c:__skb_wait_for_more_packets()`, an open-coded
//!   `prepare_to_wait_exclusive()` wait (`datagram.c:94`) woken through
//!   `receiver_wake_function()` → `autoremove_wake_function()` when `unix_stream_connect()`
//!   queues the new connection and calls `sk_data_ready`.
//! - **Catches**: neither bad variant, by design: that wait checks for a queued skb before it
//!   looks at signals, and does not use `___wait_event()`, so
//!   `bad-waitqueue-signal-before-condition` leaves it alone. It is a canary for the
//!   candidate patches and for anything else that touches the core exclusive wake path
//!   (`kernel/sched/wait.c:__wake_up_common()`, `autoremove_wake_function()`); the same shape
//!   as the TCP accept herd of `net/ipv4/inet_connection_sock.c:622`.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use lab_guest_tests::blocked::{Blocked, Inside};
use lab_guest_tests::harness::{self, Counts, Ctx, Problems, Spec};
use lab_guest_tests::sys::{self, errno_name, Errno, Fd};
use lab_proto::{Histogram, TestResult};

const ACCEPTORS: usize = 4;
/// The number that tells an acceptor to finish.
const POISON: u64 = u64::MAX;

#[derive(Default)]
struct State {
    accepted: AtomicU64,
    id_sum: AtomicU64,
}

/// Reads the 8-byte connection number.
fn read_id(conn: &Fd) -> Result<u64, Errno> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        match sys::read(conn.raw(), &mut buf[got..]) {
            Ok(0) => return Err(libc::ECONNRESET),
            Ok(n) => got += n,
            Err(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(u64::from_le_bytes(buf))
}

fn acceptor(listener: i32, st: &State, blocked: &Blocked, i: usize) -> (Counts, Problems) {
    blocked.register(i);
    let mut c = Counts::default();
    let mut p = Problems::default();
    loop {
        blocked.enter(i, st.accepted.load(SeqCst));
        let r = sys::accept(listener);
        blocked.leave(i);
        match r {
            Ok(conn) => match read_id(&conn) {
                Ok(POISON) => break,
                Ok(id) => {
                    c.inc("accepted");
                    st.id_sum.fetch_add(id, SeqCst);
                    st.accepted.fetch_add(1, SeqCst);
                }
                Err(e) => {
                    c.inc("bad_errnos");
                    p.bad_errno(
                        e,
                        format!(
                            "acceptor {i}: reading the number failed with {}",
                            errno_name(e)
                        ),
                    );
                }
            },
            Err(libc::EINTR) => c.inc("eintr"),
            Err(libc::ECONNABORTED) => c.inc("aborted"),
            Err(e) => {
                c.inc("bad_errnos");
                p.bad_errno(
                    e,
                    format!("acceptor {i}: accept() failed with {}", errno_name(e)),
                );
                break;
            }
        }
    }
    (c, p)
}

/// Connects, sends `id`, and hangs up.
fn connect_and_send(name: &[u8], id: u64) -> Result<(), String> {
    let conn = sys::unix_connect(name).map_err(|e| format!("connect: {}", errno_name(e)))?;
    match sys::write(conn.raw(), &id.to_le_bytes()) {
        Ok(8) => Ok(()),
        Ok(n) => Err(format!("wrote {n} of 8 bytes to a new connection")),
        Err(e) => Err(format!("write to a new connection: {}", errno_name(e))),
    }
}

fn run(ctx: &Ctx) -> Result<TestResult, String> {
    let delta = ctx.delta_ns();
    let name = format!("lab-accept-herd-{}-{}", std::process::id(), ctx.params.seed).into_bytes();
    let listener = sys::unix_listen(&name, 128)
        .map_err(|e| format!("listen on AF_UNIX: {}", errno_name(e)))?;
    let st = Arc::new(State::default());
    let blocked = Blocked::new("acceptor", "accept()", ACCEPTORS);
    let mut acceptors = Vec::new();
    for i in 0..ACCEPTORS {
        let (st, b, fd) = (Arc::clone(&st), Arc::clone(&blocked), listener.raw());
        acceptors.push(harness::spawn(&format!("acceptor{i}"), move || {
            acceptor(fd, &st, &b, i)
        })?);
    }
    ctx.on_hang({
        let (st, b) = (Arc::clone(&st), Arc::clone(&blocked));
        move || {
            format!(
                "{} connections accepted: {}",
                st.accepted.load(SeqCst),
                b.describe()
            )
        }
    });

    let mut rng = ctx.rng(1);
    let mut problems = Problems::default();
    let mut counts = Counts::with_keys(&[
        "connections",
        "accepted",
        "slow_connections",
        "lost_wakeups",
        "eintr",
        "bad_errnos",
    ]);
    let mut latency = Histogram::default();
    let mut next_id = 0u64;
    'connections: while ctx.running() {
        let burst = if rng.one_in(8) { rng.between(2, 3) } else { 1 };
        let t0 = sys::now_ns();
        for _ in 0..burst {
            connect_and_send(&name, next_id)?;
            next_id += 1;
        }
        let mut slow = false;
        while st.accepted.load(SeqCst) < next_id {
            let waited = sys::now_ns() - t0;
            if waited > 4 * delta {
                slow = true;
                if let Inside::Asleep { threads, .. } = blocked.inside() {
                    if threads.len() == ACCEPTORS {
                        counts.inc("lost_wakeups");
                        problems.add(format!(
                            "{} connection(s) not accepted {} ms after connect (4Δ = {} ms) \
                             while all {ACCEPTORS} acceptors sleep in accept()",
                            next_id - st.accepted.load(SeqCst),
                            waited / 1_000_000,
                            4 * delta / 1_000_000
                        ));
                        break 'connections;
                    }
                }
            }
            sys::sleep_ns(10_000);
        }
        latency.record(sys::now_ns() - t0);
        if slow {
            counts.inc("slow_connections");
        }
        sys::sleep_ns(rng.between(0, 200_000));
    }

    for _ in 0..ACCEPTORS {
        connect_and_send(&name, POISON)?;
    }
    harness::join_all(acceptors, &mut counts, &mut problems);
    counts.add("connections", next_id);
    let accepted = st.accepted.load(SeqCst);
    let want_sum = next_id * next_id.saturating_sub(1) / 2;
    let got_sum = st.id_sum.load(SeqCst);
    if counts.get("lost_wakeups") == 0 && (accepted != next_id || got_sum != want_sum) {
        problems.add(format!(
            "{accepted} of {next_id} connections accepted (numbers add up to {got_sum}, want \
             {want_sum})"
        ));
    }

    let mut r = ctx.result();
    let ms = |q: f64| latency.quantile(q).unwrap_or(0) as f64 / 1e6;
    r.metrics.insert("accept_ms_p99".into(), ms(0.99));
    r.metrics
        .insert("accept_ms_max".into(), latency.max as f64 / 1e6);
    let g = |k| counts.get(k);
    let stats = format!(
        "{next_id} connections to {ACCEPTORS} threads in accept(): {accepted} accepted, p99 \
         {:.3} ms, max {:.3} ms (4Δ = {} ms), {} slow, {} EINTR",
        ms(0.99),
        latency.max as f64 / 1e6,
        4 * delta / 1_000_000,
        g("slow_connections"),
        g("eintr"),
    );
    r.histograms.insert("accept_ns".into(), latency);
    counts.record(&mut r);
    problems.conclude(&mut r, &stats);
    Ok(r)
}

fn main() {
    harness::main(Spec::new("unix_accept_herd", 2000), run)
}
