//! Who is inside a blocking call, since when: the evidence for "lost wake-up" verdicts and
//! for the watchdog's report of what was still blocked.
//!
//! A thread stamps its slot just before the call and clears it just after, so "inside" also
//! covers the instants around the syscall. A lost wake-up is only claimed when every thread
//! inside is *asleep* there (state `S` in `/proc/self/task/<tid>/stat`) and none of them moved
//! while we looked: a runnable (`R`) or lock-waiting (`D`) thread means a wake-up is still in
//! flight, or the CPU is just busy, which is not the kernel's fault. That keeps a loaded host
//! from producing false failures.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use crate::sys;

#[repr(align(64))]
#[derive(Default)]
struct Slot {
    /// CLOCK_MONOTONIC ns when the thread entered the call; 0 when outside.
    since: AtomicU64,
    /// What the call is on (a futex word number, a round...), for reports.
    arg: AtomicU64,
    tid: AtomicI32,
}

/// One slot per worker thread of one role ("reader 3 in read()").
pub struct Blocked {
    role: &'static str,
    call: &'static str,
    slots: Box<[Slot]>,
}

/// What the threads inside the call were doing when looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inside {
    /// No thread is inside the call.
    Nobody,
    /// Some thread inside is runnable or waiting on a lock, or one moved while we looked.
    Busy,
    /// Every thread inside sleeps there: `(slot, since_ns)` for each. `proc_checked` is false
    /// when /proc could not tell the states, so only the clock speaks.
    Asleep {
        threads: Vec<(usize, u64)>,
        proc_checked: bool,
    },
}

impl Blocked {
    pub fn new(role: &'static str, call: &'static str, n: usize) -> Arc<Blocked> {
        Arc::new(Blocked {
            role,
            call,
            slots: (0..n).map(|_| Slot::default()).collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Records the calling thread's id in slot `i`; each worker calls it once at start.
    pub fn register(&self, i: usize) {
        self.slots[i].tid.store(sys::gettid(), SeqCst);
    }

    /// The kernel thread id of slot `i`, 0 until registered.
    pub fn tid(&self, i: usize) -> i32 {
        self.slots[i].tid.load(SeqCst)
    }

    /// Marks slot `i` as entering the call on `arg`; returns the stamp.
    pub fn enter(&self, i: usize, arg: u64) -> u64 {
        let now = sys::now_ns();
        self.slots[i].arg.store(arg, SeqCst);
        self.slots[i].since.store(now, SeqCst);
        now
    }

    /// Marks slot `i` as out of the call.
    pub fn leave(&self, i: usize) {
        self.slots[i].since.store(0, SeqCst);
    }

    /// Since when slot `i` has been inside, if it is.
    pub fn since(&self, i: usize) -> Option<u64> {
        Some(self.slots[i].since.load(SeqCst)).filter(|&s| s != 0)
    }

    /// Looks at every thread inside the call; see [`Inside`]. Threads that enter while we
    /// look are left out: they come from outside, so they carry no pending wake-up.
    pub fn inside(&self) -> Inside {
        let mut threads = Vec::new();
        let mut proc_checked = true;
        for i in 0..self.slots.len() {
            let Some(since) = self.since(i) else {
                continue;
            };
            match sys::thread_state(self.tid(i)) {
                Some('S') => {}
                Some(_) => return Inside::Busy,
                None => proc_checked = false,
            }
            threads.push((i, since));
        }
        if threads.is_empty() {
            return Inside::Nobody;
        }
        // One that left or came back while we looked was woken: not asleep after all.
        if threads
            .iter()
            .any(|&(i, since)| self.since(i) != Some(since))
        {
            return Inside::Busy;
        }
        Inside::Asleep {
            threads,
            proc_checked,
        }
    }

    /// One line naming every thread inside the call, for the watchdog and failure reports.
    pub fn describe(&self) -> String {
        let now = sys::now_ns();
        let parts: Vec<String> = (0..self.slots.len())
            .filter_map(|i| {
                let since = self.since(i)?;
                let state = sys::thread_state(self.tid(i)).unwrap_or('?');
                Some(format!(
                    "{} {i} in {} (on {}) for {} ms, state {state}",
                    self.role,
                    self.call,
                    self.slots[i].arg.load(SeqCst),
                    now.saturating_sub(since) / 1_000_000
                ))
            })
            .collect();
        if parts.is_empty() {
            format!("no {} in {}", self.role, self.call)
        } else {
            parts.join("; ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_thread_inside_is_busy_not_asleep() {
        let b = Blocked::new("worker", "nothing", 2);
        assert_eq!(b.inside(), Inside::Nobody);
        b.register(0);
        b.enter(0, 7);
        // This thread is running while it looks at itself.
        assert_eq!(b.inside(), Inside::Busy);
        assert!(b.describe().contains("worker 0 in nothing (on 7)"));
        b.leave(0);
        assert_eq!(b.since(0), None);
        assert_eq!(b.describe(), "no worker in nothing");
    }

    #[test]
    fn a_sleeping_thread_inside_is_asleep() {
        let b = Blocked::new("sleeper", "nanosleep", 1);
        let b2 = Arc::clone(&b);
        let t = std::thread::spawn(move || {
            b2.register(0);
            b2.enter(0, 0);
            sys::sleep_ns(300_000_000);
            b2.leave(0);
        });
        let mut seen = false;
        for _ in 0..100 {
            sys::sleep_ns(2_000_000);
            if let Inside::Asleep { threads, .. } = b.inside() {
                assert_eq!(threads.len(), 1);
                seen = true;
                break;
            }
        }
        t.join().expect("sleeper thread panicked");
        assert!(seen, "never saw the sleeper asleep");
    }
}
