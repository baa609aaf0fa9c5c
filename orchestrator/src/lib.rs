//! `lab`: a QEMU-based kernel patch regression lab.
//!
//! The library holds every noun the `lab` binary works with; `main.rs` only parses arguments,
//! sets up logging, dispatches to `commands/` and maps the outcome to an exit code.

pub mod arch;
pub mod bisect;
pub mod cli;
pub mod commands;
pub mod compare;
pub mod config;
pub mod errors;
pub mod exec;
pub mod gate;
pub mod guest;
pub mod io_error;
pub mod kernel;
pub mod process;
pub mod report;
pub mod results;
pub mod run;
pub mod selftest;
pub mod stats;
pub mod term;
pub mod transport;
pub mod vm;
