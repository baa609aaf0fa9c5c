//! Serial-console watcher: finds kernel reports (oopses, BUGs, WARNINGs, lockdep splats,
//! lockups, stalls, panics) in a guest's console log, classifies them and fingerprints them.
//!
//! The VM runner writes the console to a file and feeds each line to a [`ConsoleWatcher`] as it
//! arrives. The watcher says when a report starts, so the runner can stop waiting on a guest that
//! is about to die, and hands back a [`CrashReport`] when the report's trace has been read.
//!
//! The [`Fingerprint`] is what lets `lab` say "the same crash" across runs, kernel builds and
//! architectures: the report kind plus the first few function names of the culprit's call path.
//! Everything that changes between builds and runs is dropped (addresses, `+0x1a4/0x2c0`
//! offsets, module names, compiler clone suffixes like `.isra.0`, timestamps, PIDs), and so is
//! everything that only says how the kernel noticed or printed the problem (`dump_stack_lvl`,
//! `__warn`, lockdep's `check_noncircular`, ...), the syscall and interrupt entry code that
//! differs between x86_64 and arm64, and the per-arch syscall wrapper names
//! (`__x64_sys_futex` and `__arm64_sys_futex` both become `sys_futex`).
//!
//! A report runs from its header to the end of its first call trace (`</TASK>` on x86, the
//! first line that cannot be a frame on arm64), or to `---[ end trace ]---` for the kinds that
//! print one; the next report header, a line cap, or the end of the log also end it. The
//! console is shared, so lines that cannot be part of the report are skipped rather than
//! ending it: lines without a printk prefix once the kernel prints them (the guest's own
//! output), lines from another printk caller id (CONFIG_PRINTK_CALLER), and a few stray kernel
//! lines inside an arm64 trace.
//!
//! This module is pure and synchronous: it knows the printk formats of Linux 6.x on x86_64 and
//! arm64, and nothing about files, processes or time, so it is tested on recorded logs
//! (`orchestrator/tests/fixtures/console/`).
//!
//! What a crash is ([`CrashKind`], [`CrashReport`], [`Fingerprint`]) is the crash model in
//! [`crate::results::crash`], a leaf this module imports; nothing here is re-exported from it.
//!
//! The parts, in the order a line goes through them:
//! - `watcher`: the public face, which takes each line and keeps the reports read;
//! - `prefix`: printk's prefix (syslog level, timestamp, caller id) split off each line;
//! - `classify`: which header line starts which kind of report;
//! - `collector`: the report being read, where its call trace ends, and its fingerprint frames;
//! - `trace`: the syntax of call-trace lines, register dumps and WARNING headers;
//! - `frames`: normalised function names, and the tables of frames a fingerprint leaves out.
//!
//! [`CrashKind`]: crate::results::crash::CrashKind
//! [`CrashReport`]: crate::results::crash::CrashReport
//! [`Fingerprint`]: crate::results::crash::Fingerprint

mod classify;
mod collector;
#[cfg(test)]
mod fixtures;
mod frames;
mod prefix;
mod trace;
mod watcher;

pub use classify::classify_line;
pub use watcher::{ConsoleWatcher, WatchEvent, WatcherConfig};
