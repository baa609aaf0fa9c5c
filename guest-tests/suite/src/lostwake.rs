//! Rounds of futex waiters and the lost-wake-up detector shared by `futex_requeue`,
//! `futex_wake_op` and `futex_bitset`.
//!
//! A [`Crew`] is a fixed set of waiter threads, one per slot. Each round, the test's main
//! thread sets up the words, calls [`Crew::go`], and the waiters run the test's wait function
//! once each (a FUTEX_WAIT, FUTEX_WAIT_BITSET or FUTEX_WAIT_REQUEUE_PI), inside a
//! [`Blocked`] slot, and post what the kernel returned. The main thread then waits until they
//! all sleep there ([`Crew::settle`]), issues the wake it tests, and asks
//! [`Crew::await_returns`] for the waiters that must now return.
//!
//! The detector's rule: a waiter whose release condition holds (the wake that must release
//! it has returned, and its futex word no longer holds the value it slept on, so a waiter
//! caught between two sleeps by a spurious wake-up returns EAGAIN instead of sleeping again)
//! and that is still inside the call Δ later, asleep there (state `S`), lost its wake-up.
//! A runnable thread is never judged: a busy host only makes us wait longer, up to a hard
//! cap of 20 Δ, after which a thread still inside counts as lost too, said as such. The
//! evidence names the waiter, the word, how long it slept after the release, and whatever
//! the test adds (word values, the counts the kernel returned).
//!
//! Control between the main thread and the waiters is atomics and short sleeps only: no
//! `std::sync` primitive (which would itself call futex) stands next to the paths under test.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::blocked::Blocked;
use crate::harness;
use crate::sys::{self, Errno};

/// What one wait returned: `Ok(())` or the errno, and when it entered and left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub result: Result<(), Errno>,
    pub entered_ns: u64,
    pub left_ns: u64,
}

/// A waiter's wait function: slot, round; returns the kernel's answer. It runs inside the
/// slot's [`Blocked`] entry, so anything it does after the call (a FUTEX_UNLOCK_PI) still
/// counts as inside.
pub type WaitFn = dyn Fn(usize, u64) -> Result<(), Errno> + Send + Sync;

#[repr(align(64))]
#[derive(Default)]
struct Post {
    /// Round whose outcome this is; 0 while none is posted for the current round.
    round: AtomicU64,
    /// 0 = Ok, else the errno.
    errno: AtomicU64,
    entered: AtomicU64,
    left: AtomicU64,
}

struct Inner {
    blocked: Arc<Blocked>,
    round: AtomicU64,
    stop: AtomicBool,
    posts: Box<[Post]>,
    alive: AtomicUsize,
}

/// The waiter threads of one test.
pub struct Crew {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

/// A waiter found still asleep after its release: the evidence of a lost wake-up.
#[derive(Debug, Clone)]
pub struct Lost {
    pub slot: usize,
    pub tid: i32,
    /// How long after the release it was still inside the call.
    pub after_release_ns: u64,
    /// Its scheduler state then (`S` unless the hard cap was reached).
    pub state: char,
}

impl Lost {
    pub fn describe(&self, role: &str) -> String {
        format!(
            "{role} {} (tid {}) still in the wait {} ms after its release (state {})",
            self.slot,
            self.tid,
            self.after_release_ns / 1_000_000,
            self.state
        )
    }
}

impl Crew {
    /// Starts `n` waiters; `blocked` must have `n` slots.
    pub fn start(name: &str, blocked: Arc<Blocked>, wait: Arc<WaitFn>) -> Result<Crew, String> {
        let n = blocked.len();
        let inner = Arc::new(Inner {
            blocked,
            round: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            posts: (0..n).map(|_| Post::default()).collect(),
            alive: AtomicUsize::new(n),
        });
        let mut threads = Vec::new();
        for i in 0..n {
            let (inner, wait) = (Arc::clone(&inner), Arc::clone(&wait));
            threads.push(harness::spawn(&format!("{name}{i}"), move || {
                waiter(&inner, &*wait, i)
            })?);
        }
        Ok(Crew { inner, threads })
    }

    pub fn blocked(&self) -> &Arc<Blocked> {
        &self.inner.blocked
    }

    pub fn len(&self) -> usize {
        self.inner.posts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.posts.is_empty()
    }

    /// Starts round `round` (1, 2, ...): every waiter runs its wait once.
    pub fn go(&self, round: u64) {
        self.inner.round.store(round, SeqCst);
    }

    /// Slot `i`'s outcome in `round`, once it has returned.
    pub fn outcome(&self, i: usize, round: u64) -> Option<Outcome> {
        let p = &self.inner.posts[i];
        if p.round.load(SeqCst) != round {
            return None;
        }
        let e = p.errno.load(SeqCst) as Errno;
        Some(Outcome {
            result: if e == 0 { Ok(()) } else { Err(e) },
            entered_ns: p.entered.load(SeqCst),
            left_ns: p.left.load(SeqCst),
        })
    }

    /// Waits until every slot of `round` is either back with an outcome or asleep inside its
    /// wait, at most `limit_ns`; true if they all are.
    pub fn settle(&self, round: u64, limit_ns: u64) -> bool {
        let end = sys::now_ns() + limit_ns;
        loop {
            let all = (0..self.len()).all(|i| {
                self.outcome(i, round).is_some()
                    || (self.inner.blocked.since(i).is_some()
                        && sys::thread_state(self.inner.blocked.tid(i)) == Some('S'))
            });
            if all {
                return true;
            }
            if sys::now_ns() >= end {
                return false;
            }
            sys::sleep_ns(50_000);
        }
    }

    /// Waits until `done()` holds, polling. From `release_ns` on, the slots in `must` must
    /// return: one still inside its wait, asleep, `delta_ns` after the release is a lost
    /// wake-up; so is one still inside after 20 Δ whatever its state. `Ok` when `done()`
    /// came true first.
    pub fn await_returns(
        &self,
        round: u64,
        must: &[usize],
        release_ns: u64,
        delta_ns: u64,
        mut done: impl FnMut() -> bool,
    ) -> Result<(), Lost> {
        loop {
            if done() {
                return Ok(());
            }
            let now = sys::now_ns();
            let after = now.saturating_sub(release_ns);
            if after > delta_ns {
                for &i in must {
                    if self.outcome(i, round).is_some() {
                        continue;
                    }
                    let tid = self.inner.blocked.tid(i);
                    let state = sys::thread_state(tid).unwrap_or('?');
                    // Still inside, and neither woken since we looked nor running.
                    if (state == 'S' || after > 20 * delta_ns)
                        && self.outcome(i, round).is_none()
                        && self.inner.blocked.since(i).is_some()
                    {
                        return Err(Lost {
                            slot: i,
                            tid,
                            after_release_ns: after,
                            state,
                        });
                    }
                }
            }
            sys::sleep_ns(100_000);
        }
    }

    /// Sends SIGUSR1 to slot `i` (the tests install a handler without SA_RESTART, so a
    /// FUTEX_WAIT nobody will wake returns EINTR).
    pub fn poke(&self, i: usize) {
        let _ = sys::tgkill(self.inner.blocked.tid(i), libc::SIGUSR1);
    }

    /// [`Crew::stop`], sending SIGUSR1 to every waiter after each `kick`: a waiter lost on a
    /// word nobody wakes has its wait restarted (or interrupted) by the signal, sees the word
    /// `kick` bumped, and returns.
    pub fn stop_signalling(self, limit_ns: u64, mut kick: impl FnMut()) -> Result<(), String> {
        let blocked = Arc::clone(&self.inner.blocked);
        self.stop(limit_ns, move || {
            kick();
            for i in 0..blocked.len() {
                let _ = sys::tgkill(blocked.tid(i), libc::SIGUSR1);
            }
        })
    }

    /// Stops the waiters after the current round; `kick` must make any still inside return
    /// (a FUTEX_WAKE of everything, a signal). Gives up after `limit_ns`.
    pub fn stop(self, limit_ns: u64, mut kick: impl FnMut()) -> Result<(), String> {
        self.inner.stop.store(true, SeqCst);
        let end = sys::now_ns() + limit_ns;
        while self.inner.alive.load(SeqCst) > 0 {
            if sys::now_ns() > end {
                return Err(format!(
                    "waiters did not stop: {}",
                    self.inner.blocked.describe()
                ));
            }
            kick();
            sys::sleep_ns(200_000);
        }
        for t in self.threads {
            harness::join(t);
        }
        Ok(())
    }
}

fn waiter(inner: &Inner, wait: &WaitFn, i: usize) {
    inner.blocked.register(i);
    let mut done_round = 0;
    loop {
        if inner.stop.load(SeqCst) {
            break;
        }
        let round = inner.round.load(SeqCst);
        if round == done_round {
            sys::sleep_ns(20_000);
            continue;
        }
        let entered = inner.blocked.enter(i, round);
        let r = wait(i, round);
        let left = sys::now_ns();
        inner.blocked.leave(i);
        let p = &inner.posts[i];
        p.errno.store(r.err().unwrap_or(0) as u64, SeqCst);
        p.entered.store(entered, SeqCst);
        p.left.store(left, SeqCst);
        p.round.store(round, SeqCst);
        done_round = round;
    }
    inner.alive.fetch_sub(1, SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn a_woken_waiter_returns_and_an_unwoken_one_is_lost() {
        let word = Arc::new(AtomicU32::new(0));
        let w = Arc::clone(&word);
        let wait: Arc<WaitFn> = Arc::new(move |_, _| sys::futex_wait(&w, 0, None));
        let crew = Crew::start("t", Blocked::new("waiter", "FUTEX_WAIT", 2), wait)
            .expect("start the crew");
        crew.go(1);
        assert!(crew.settle(1, 2_000_000_000), "waiters never slept");
        // Wake one: it must come back; the other must be judged lost.
        assert_eq!(sys::futex_wake(&word, 1), Ok(1));
        let t = sys::now_ns();
        let back = || (0..2).filter(|&i| crew.outcome(i, 1).is_some()).count();
        assert!(crew
            .await_returns(1, &[0, 1], t, 20_000_000, || back() >= 1)
            .is_ok());
        let lost = crew
            .await_returns(1, &[0, 1], t, 20_000_000, || back() >= 2)
            .expect_err("the unwoken waiter must be lost");
        assert_eq!(lost.state, 'S');
        assert!(lost.after_release_ns > 20_000_000);
        assert!(crew.outcome(lost.slot, 1).is_none());
        let w = Arc::clone(&word);
        crew.stop(2_000_000_000, move || {
            w.fetch_add(1, SeqCst);
            let _ = sys::futex_wake(&w, i32::MAX);
        })
        .expect("the crew stops");
    }
}
