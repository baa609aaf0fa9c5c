//! The terminal: the one place lab writes to its stdout and stderr. Renderers (the verbs in
//! `commands/` and `main.rs`) print through [`outln!`](crate::outln), [`out!`](crate::out)
//! and [`errln!`](crate::errln); engines never print (clippy's `print_stdout`/`print_stderr`
//! are denied crate-wide), they emit events and log through `tracing`.
//!
//! Unlike `println!`/`eprintln!`, these never panic: a closed or broken pipe (`lab … | head`,
//! `lab … 2>&-`, a CI log collector that went away) must not turn into exit code 101 halfway
//! through a comparison, with guests still running. What cannot be written is dropped; the
//! results store and the run directories keep the record.

use std::fmt::Arguments;
use std::io::Write as _;

/// Writes to stdout, ignoring a reader that went away.
pub fn write_out(args: Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args);
    let _ = out.flush();
}

/// Writes to stderr, ignoring a reader that went away.
pub fn write_err(args: Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// `println!` that never panics.
#[macro_export]
macro_rules! outln {
    () => { $crate::term::write_out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::term::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that never panics.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::term::write_out(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    () => { $crate::term::write_err(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::term::write_err(format_args!("{}\n", format_args!($($arg)*))) };
}
