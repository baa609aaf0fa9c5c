//! `lab`: a QEMU-based kernel patch regression lab.
//!
//! The library holds every noun the `lab` binary works with; `main.rs` only parses arguments,
//! sets up logging, dispatches to `commands/` and maps the outcome to an exit code.

pub mod stats;
pub mod vm;
