//! The per-arch QEMU table: binary, machine, CPU, console device, how the kernel is loaded and
//! how the NIC attaches. The rest of lab reads this table instead of testing the arch.

use crate::arch::Arch;

/// How QEMU runs one arch.
#[derive(Debug)]
pub struct Machine {
    pub qemu: &'static str,
    /// `-machine` value.
    pub machine: &'static str,
    pub cpu_tcg: &'static str,
    pub cpu_kvm: &'static str,
    /// Kernel console device name (`console=`).
    pub console: &'static str,
    /// Boot `vmlinux` (PVH, no firmware) rather than the compressed image.
    pub boot_vmlinux: bool,
    /// The virtio-net device model for `-device`.
    pub nic: &'static str,
    /// Whether KVM can possibly work for this arch on this host.
    pub kvm_possible: fn() -> bool,
    /// Kernel command-line words specific to the arch.
    pub cmdline: &'static [&'static str],
    /// More words under TCG, computed on the host (see [`x86_tcg_cmdline`]).
    pub tcg_cmdline: fn() -> Vec<String>,
    pub extra_args: &'static [&'static str],
}

fn host_is_x86_64() -> bool {
    cfg!(target_arch = "x86_64")
}

fn host_is_aarch64() -> bool {
    cfg!(target_arch = "aarch64")
}

fn no_words() -> Vec<String> {
    Vec::new()
}

/// The host TSC rate in kHz, measured with rdtsc against the monotonic clock.
#[cfg(target_arch = "x86_64")]
pub fn host_tsc_khz() -> Option<u64> {
    use std::time::{Duration, Instant};
    // SAFETY: rdtsc has no memory effects; every x86_64 CPU has it.
    let tsc = || unsafe { core::arch::x86_64::_rdtsc() };
    let mut best: Option<u64> = None;
    for _ in 0..3 {
        let (t0, c0) = (Instant::now(), tsc());
        std::thread::sleep(Duration::from_millis(20));
        let (t1, c1) = (Instant::now(), tsc());
        let ns = t1.duration_since(t0).as_nanos() as u64;
        if let Some(khz) = c1
            .wrapping_sub(c0)
            .saturating_mul(1_000_000)
            .checked_div(ns)
        {
            best = Some(best.map_or(khz, |b: u64| b.min(khz)));
        }
    }
    // Round to 10 kHz: the measurement is good to well under 0.1 %.
    best.filter(|k| *k > 100_000).map(|k| (k + 5) / 10 * 10)
}

#[cfg(not(target_arch = "x86_64"))]
pub fn host_tsc_khz() -> Option<u64> {
    None
}

/// Under TCG the guest TSC ticks at the host's rate, but the microvm machine has no HPET or
/// PM timer to calibrate it against, and PIT calibration under emulation is wrong by a
/// factor of three (seen: 739 MHz for a 2300 MHz host). Telling the kernel the rate gives it
/// a correct TSC clocksource, so guest clocks and test latencies are real time.
/// Measured once per lab process, so every guest of a run gets the same command line.
fn x86_tcg_cmdline() -> Vec<String> {
    static KHZ: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    match KHZ.get_or_init(host_tsc_khz) {
        Some(khz) => vec![format!("tsc_early_khz={khz}"), "tsc=reliable".into()],
        None => Vec::new(),
    }
}

/// x86_64 uses QEMU's microvm machine booting vmlinux through PVH: no SeaBIOS, no PCI scan,
/// virtio over MMIO. With ACPI off, QEMU describes the virtio-mmio devices by adding
/// `virtio_mmio.device=` words to the kernel command line (the kernel has no ACPI).
const X86_64: Machine = Machine {
    qemu: "qemu-system-x86_64",
    machine: "microvm,x-option-roms=off,isa-serial=on,rtc=on,pit=on,pic=on,acpi=off",
    cpu_tcg: "max",
    cpu_kvm: "host",
    console: "ttyS0",
    boot_vmlinux: true,
    nic: "virtio-net-device",
    kvm_possible: host_is_x86_64,
    cmdline: &["reboot=t", "pci=off", "no_timer_check"],
    tcg_cmdline: x86_tcg_cmdline,
    extra_args: &[],
};

/// arm64 uses the virt machine. Under TCG, pointer authentication is switched off: QEMU
/// emulates it very slowly (8x on a futex ping-pong, KERNEL-NOTES).
const ARM64: Machine = Machine {
    qemu: "qemu-system-aarch64",
    machine: "virt",
    cpu_tcg: "max,pauth=off",
    cpu_kvm: "host",
    console: "ttyAMA0",
    boot_vmlinux: false,
    nic: "virtio-net-pci",
    kvm_possible: host_is_aarch64,
    cmdline: &[],
    tcg_cmdline: no_words,
    extra_args: &[],
};

pub fn machine(arch: Arch) -> &'static Machine {
    match arch {
        Arch::X86_64 => &X86_64,
        Arch::Arm64 => &ARM64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_tsc_rate_is_plausible() {
        if cfg!(target_arch = "x86_64") {
            let khz = host_tsc_khz().expect("an x86_64 host has a TSC");
            assert!((100_000..10_000_000).contains(&khz), "{khz} kHz");
        }
    }
}
