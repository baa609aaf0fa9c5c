//! The per-arch QEMU table: binary, machine, CPU, console device, how the kernel is loaded and
//! how the NIC attaches. The rest of lab reads this table instead of testing the arch.

use crate::arch::Arch;

/// Which accelerator a VM runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// Deadlines inside the guest scale with the accelerator: TCG emulates every instruction.
    pub fn deadline_scale(self) -> f64 {
        match self {
            Accel::Kvm => 1.0,
            Accel::Tcg => 5.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

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
    pub extra_args: &'static [&'static str],
}

fn host_is_x86_64() -> bool {
    cfg!(target_arch = "x86_64")
}

fn host_is_aarch64() -> bool {
    cfg!(target_arch = "aarch64")
}

/// x86_64 uses QEMU's microvm machine booting vmlinux through PVH: no SeaBIOS, no PCI scan,
/// virtio over MMIO (QEMU adds the `virtio_mmio.device=` words to the command line itself).
const X86_64: Machine = Machine {
    qemu: "qemu-system-x86_64",
    machine: "microvm,x-option-roms=off,isa-serial=on,rtc=on,pit=on,pic=on",
    cpu_tcg: "max",
    cpu_kvm: "host",
    console: "ttyS0",
    boot_vmlinux: true,
    nic: "virtio-net-device",
    kvm_possible: host_is_x86_64,
    cmdline: &["earlyprintk=ttyS0", "reboot=t"],
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
    extra_args: &[],
};

pub fn machine(arch: Arch) -> &'static Machine {
    match arch {
        Arch::X86_64 => &X86_64,
        Arch::Arm64 => &ARM64,
    }
}
