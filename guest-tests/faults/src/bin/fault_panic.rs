//! Panics the guest kernel through magic SysRq `c` (CONFIG_MAGIC_SYSRQ, in configs/common):
//! the console shows "Kernel panic - not syncing: sysrq triggered crash".
fn main() {
    eprintln!("fault_panic: writing 'c' to /proc/sysrq-trigger");
    if let Err(e) = std::fs::write("/proc/sysrq-trigger", b"c") {
        eprintln!("fault_panic: cannot trigger sysrq: {e}");
        std::process::exit(3);
    }
    // Not reached on a kernel that panics.
    std::process::exit(3);
}
