//! The architectures lab builds and boots, the facts that differ between them, and the
//! accelerator a guest runs under.
//!
//! Everything arch-specific outside the QEMU table (`vm::machine`) is a field here, so no
//! other module needs an `if arch == ...`. The accelerator sits here too, beside the arch,
//! because every record of a run carries both (`results::manifest`, the store's run
//! conditions), and records must not depend on `vm`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    X86_64,
    Arm64,
}

/// Build facts of one architecture.
#[derive(Debug)]
pub struct ArchInfo {
    /// The name users type and lab prints.
    pub name: &'static str,
    /// `ARCH=` for kbuild.
    pub kernel_arch: &'static str,
    /// The make target that produces the boot image.
    pub image_target: &'static str,
    /// Where that image lands, relative to the `O=` tree.
    pub image_path: &'static str,
    /// Rust target of the static guest programs.
    pub rust_target: &'static str,
    /// Debian architecture of the guest packages (dropbear and its libraries).
    pub debian_arch: &'static str,
    /// The dynamic loader that Debian's binaries for this arch ask for.
    pub loader: &'static str,
}

const X86_64: ArchInfo = ArchInfo {
    name: "x86_64",
    kernel_arch: "x86_64",
    image_target: "bzImage",
    image_path: "arch/x86/boot/bzImage",
    rust_target: "x86_64-unknown-linux-musl",
    debian_arch: "amd64",
    loader: "/lib64/ld-linux-x86-64.so.2",
};

const ARM64: ArchInfo = ArchInfo {
    name: "arm64",
    kernel_arch: "arm64",
    image_target: "Image",
    image_path: "arch/arm64/boot/Image",
    rust_target: "aarch64-unknown-linux-musl",
    debian_arch: "arm64",
    loader: "/lib/ld-linux-aarch64.so.1",
};

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Arm64];

    pub fn info(self) -> &'static ArchInfo {
        match self {
            Arch::X86_64 => &X86_64,
            Arch::Arm64 => &ARM64,
        }
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which accelerator a VM runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
    /// No emulator: a board (`[target]`) runs the kernel on its own CPUs.
    Native,
}

impl Accel {
    /// Deadlines inside the guest scale with the accelerator: TCG emulates every instruction.
    pub fn deadline_scale(self) -> f64 {
        match self {
            Accel::Kvm | Accel::Native => 1.0,
            Accel::Tcg => 5.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
            Accel::Native => "native",
        }
    }
}

/// An arch name lab does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown arch {0:?}: lab knows x86_64 and arm64 (or `all` on the command line)")]
pub struct UnknownArch(pub String);

impl FromStr for Arch {
    type Err = UnknownArch;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86_64" | "x86-64" | "amd64" => Ok(Arch::X86_64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            other => Err(UnknownArch(other.to_owned())),
        }
    }
}

/// Parses a command-line arch list: names separated by commas, or `all`.
pub fn parse_list(values: &[String]) -> Result<Vec<Arch>, UnknownArch> {
    let mut out = Vec::new();
    for v in values.iter().flat_map(|v| v.split(',')) {
        let v = v.trim();
        if v == "all" {
            out.extend(Arch::ALL);
        } else if !v.is_empty() {
            out.push(v.parse()?);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_reject_unknown() {
        let all = parse_list(&["all".into()]).expect("all parses");
        assert_eq!(all, vec![Arch::X86_64, Arch::Arm64]);
        let one = parse_list(&["aarch64,arm64".into()]).expect("aliases parse");
        assert_eq!(one, vec![Arch::Arm64]);
        let err = parse_list(&["riscv64".into()]).expect_err("riscv64 is unknown");
        assert!(err.to_string().contains("riscv64"), "{err}");
    }
}
