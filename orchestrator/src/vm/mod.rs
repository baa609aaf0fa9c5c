//! Virtual machines: the per-arch QEMU table (`machine`), the QEMU process and its live
//! console (`qemu`), and the kernel-report watcher that reads the console (`console`).

pub mod console;
pub mod machine;
pub mod qemu;
