//! SIGUSR1 noise: a counting handler and a thread that sends the signal to chosen workers.
//!
//! Signals are what turn an exclusive wait's wake-up into `-ERESTARTSYS`
//! (`kernel/sched/wait.c:prepare_to_wait_event()`), and what makes a futex waiter return
//! early (`kernel/futex/waitwake.c:__futex_wait()`), so the tests aim them at sleeping
//! workers. The handler only counts, which is async-signal-safe: a const-initialised
//! thread-local without destructor, and a global atomic.

use std::cell::Cell;
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::blocked::Blocked;
use crate::harness::{self, Counts, Problems};
use crate::rng::Rng;
use crate::sys::{self, Errno};

thread_local! {
    static HANDLED_HERE: Cell<u64> = const { Cell::new(0) };
}

static HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_signal(_sig: c_int) {
    HANDLED_HERE.with(|c| c.set(c.get() + 1));
    HANDLED.fetch_add(1, SeqCst);
}

/// Installs the counting SIGUSR1 handler, with or without SA_RESTART.
pub fn install(restart: bool) -> Result<(), String> {
    sys::install_handler(libc::SIGUSR1, restart, count_signal)
        .map_err(|e| format!("sigaction(SIGUSR1): {}", sys::errno_name(e)))
}

/// How many times the handler ran on the calling thread.
pub fn handled_here() -> u64 {
    HANDLED_HERE.with(Cell::get)
}

/// How many times the handler ran in the whole process.
pub fn handled_total() -> u64 {
    HANDLED.load(SeqCst)
}

/// A thread sending SIGUSR1 to random targets at random intervals.
pub struct Signaler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<u64, Errno>>,
}

impl Signaler {
    /// Sends SIGUSR1 to a random one of `targets` (slots of `table`) every `min_ns..=max_ns`.
    pub fn start(
        table: Arc<Blocked>,
        targets: Vec<usize>,
        min_ns: u64,
        max_ns: u64,
        mut rng: Rng,
    ) -> Result<Signaler, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = harness::spawn("signaler", move || {
            let mut sent = 0u64;
            while !stop2.load(SeqCst) && !targets.is_empty() {
                sys::sleep_ns(rng.between(min_ns, max_ns));
                let tid = table.tid(targets[rng.index(targets.len())]);
                if tid == 0 {
                    continue;
                }
                match sys::tgkill(tid, libc::SIGUSR1) {
                    Ok(()) => sent += 1,
                    // The target may have finished already.
                    Err(libc::ESRCH) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(sent)
        })?;
        Ok(Signaler { stop, thread })
    }

    /// Stops sending; records `signals_sent` and `signals_handled`, or why sending failed.
    pub fn finish(self, counts: &mut Counts, problems: &mut Problems) {
        self.stop.store(true, SeqCst);
        match harness::join(self.thread) {
            Ok(sent) => counts.add("signals_sent", sent),
            Err(e) => problems.add(format!("tgkill failed with {}", sys::errno_name(e))),
        }
        counts.add("signals_handled", handled_total());
    }
}
