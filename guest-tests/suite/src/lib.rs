//! lab's guest test programs: raw-syscall probes of futex and wait-queue wake-ups, run inside
//! the test kernel as static musl binaries, one program per test (see `src/bin/` and the
//! README's table).
//!
//! This library is their shared harness. [`harness`] owns a program's life (arguments, knobs,
//! watchdog, the one result line of `lab_proto`, exit codes); [`sys`] wraps the raw system
//! calls; [`blocked`] records who is inside a blocking call, which is the evidence for
//! lost-wake-up verdicts; [`signals`] sends SIGUSR1 noise; [`rng`] is the seeded PRNG;
//! [`storm`] is the futex wait/wake storm behind `futex_errno` and `futex_errno_sig`, with the
//! timeout helpers `futex_sem_tokens` shares; [`child`] runs the third-party programs of the
//! guest adapters in process groups of their own, under a deadline; [`lostwake`] runs rounds
//! of futex waiters and judges lost wake-ups for `futex_requeue`, `futex_wake_op` and
//! `futex_bitset`.
//!
//! The code under test is only ever reached through raw system calls: no `std::sync`
//! primitive, channel or `sem_*` stands between a test and the kernel's futex and wait-queue
//! paths, because libc and std hide exactly the misbehaviour the lab looks for.

pub mod blocked;
pub mod child;
pub mod harness;
pub mod knobs;
pub mod lostwake;
pub mod rng;
pub mod signals;
pub mod storm;
pub mod sys;
