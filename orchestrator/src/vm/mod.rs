//! Virtual machines: the per-arch QEMU table, the QEMU process, and the serial console.

pub mod console;
