//! The host tools a kernel build needs, found up front with their versions.
//!
//! A missing cross compiler is a set-up problem with a one-line fix, so it is reported before
//! anything runs, naming the Debian package. Compiler and binutils versions go into the
//! artifact cache key: a toolchain upgrade must not return stale kernels.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::arch::Arch;

#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error("{tool} not found on PATH: the {arch} build needs it; {hint}")]
    Missing {
        tool: String,
        arch: Arch,
        hint: String,
    },
    #[error("{tool} --version failed: {why}")]
    Version { tool: String, why: String },
}

/// The compiler and tools of one arch's build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toolchain {
    pub cross_compile: String,
    pub gcc: String,
    pub gcc_version: String,
    pub ld_version: String,
    pub make_version: String,
    /// ccache, when present and enabled; not part of the cache key (it never changes output).
    #[serde(skip)]
    pub ccache: Option<PathBuf>,
}

pub use crate::process::which;

fn first_line(tool: &Path) -> Result<String, ToolchainError> {
    crate::process::version_line(tool).map_err(|why| ToolchainError::Version {
        tool: tool.display().to_string(),
        why,
    })
}

fn package_hint(cross: &str, tool: &str) -> String {
    match cross {
        "aarch64-linux-gnu-" => format!("install Debian's gcc-aarch64-linux-gnu and binutils-aarch64-linux-gnu (`make setup` does), or set [build.cross-compile] in lab.toml; looked for {tool}"),
        "" => "install build-essential (`make setup` does)".to_owned(),
        other => format!("set [build.cross-compile] in lab.toml to a prefix whose gcc exists (now {other:?}), or install that toolchain"),
    }
}

impl Toolchain {
    /// Finds gcc, ld, make (and ccache if wanted) for `arch` with `cross_compile`.
    pub fn detect(
        arch: Arch,
        cross_compile: &str,
        want_ccache: bool,
    ) -> Result<Toolchain, ToolchainError> {
        let find = |tool: String, hint: String| {
            which(&tool).ok_or(ToolchainError::Missing {
                tool: tool.clone(),
                arch,
                hint,
            })
        };
        let gcc_name = format!("{cross_compile}gcc");
        let gcc = find(gcc_name.clone(), package_hint(cross_compile, &gcc_name))?;
        let ld_name = format!("{cross_compile}ld");
        let ld = find(ld_name.clone(), package_hint(cross_compile, &ld_name))?;
        let make = find("make".into(), "install make (`make setup` does)".into())?;
        for tool in ["flex", "bison", "bc", "perl"] {
            find(tool.into(), format!("install {tool} (`make setup` does)"))?;
        }
        Ok(Toolchain {
            cross_compile: cross_compile.to_owned(),
            gcc_version: first_line(&gcc)?,
            ld_version: first_line(&ld)?,
            make_version: first_line(&make)?,
            gcc: gcc_name,
            ccache: if want_ccache { which("ccache") } else { None },
        })
    }

    /// The `CC=` make variable: the compiler, through ccache when present.
    pub fn cc(&self) -> String {
        match &self.ccache {
            Some(c) => format!("{} {}", c.display(), self.gcc),
            None => self.gcc.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_cross_compiler_names_the_tool_and_the_package() {
        let err = Toolchain::detect(Arch::Arm64, "no-such-prefix-", false).expect_err("missing");
        let msg = err.to_string();
        assert!(msg.contains("no-such-prefix-gcc not found"), "{msg}");
        assert!(msg.contains("arm64"), "{msg}");
        assert!(msg.contains("[build.cross-compile]"), "{msg}");
    }

    #[test]
    fn host_compiler_is_found_with_versions() {
        let tc = Toolchain::detect(Arch::X86_64, "", true).expect("host gcc exists in CI");
        assert!(tc.gcc_version.contains("gcc"), "{}", tc.gcc_version);
        assert!(!tc.ld_version.is_empty());
    }
}
