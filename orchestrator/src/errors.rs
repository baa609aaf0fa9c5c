//! The errors a `lab` command can end with, and their exit codes, in one total `match`.
//!
//! Exit codes (documented in the README and every `--help`):
//! - 0: success, no regression;
//! - 1: a result: a regression was found or the gate failed (never an error);
//! - 2: usage or configuration error: bad arguments, malformed lab.toml, a patch that does not
//!   apply, a config option that Kconfig dropped, a missing toolchain;
//! - 3: infrastructure failure: a build, boot or transport that broke.

use crate::arch::UnknownArch;
use crate::config::ConfigError;
use crate::kernel::build::BuildError;
use crate::kernel::cache::CacheError;
use crate::kernel::source::SourceError;

pub const EXIT_OK: i32 = 0;
pub const EXIT_REGRESSION: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_INFRA: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Arch(#[from] UnknownArch),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Infra(String),
}

impl From<SourceError> for LabError {
    fn from(e: SourceError) -> Self {
        LabError::Build(BuildError::Source(e))
    }
}

impl From<crate::kernel::patch::PatchError> for LabError {
    fn from(e: crate::kernel::patch::PatchError) -> Self {
        LabError::Build(BuildError::Patch(e))
    }
}

impl LabError {
    pub fn exit_code(&self) -> i32 {
        match self {
            LabError::Config(_) | LabError::Arch(_) | LabError::Usage(_) => EXIT_USAGE,
            LabError::Infra(_) => EXIT_INFRA,
            LabError::Cache(e) => match e {
                CacheError::NoMatch(_) | CacheError::Ambiguous(_) => EXIT_USAGE,
                CacheError::Io(_) => EXIT_INFRA,
            },
            LabError::Build(e) => match e {
                BuildError::Toolchain(_) | BuildError::Patch(_) | BuildError::Kconfig(_) => {
                    EXIT_USAGE
                }
                BuildError::Source(s) => match s {
                    SourceError::DefinitionMissing { .. }
                    | SourceError::Definition { .. }
                    | SourceError::TarballMissing { .. }
                    | SourceError::TarballHash { .. }
                    | SourceError::Git { .. } => EXIT_USAGE,
                    SourceError::Unpack { .. } | SourceError::Io(_) => EXIT_INFRA,
                },
                BuildError::Cache(c) => match c {
                    CacheError::NoMatch(_) | CacheError::Ambiguous(_) => EXIT_USAGE,
                    CacheError::Io(_) => EXIT_INFRA,
                },
                BuildError::Spawn(_) | BuildError::Make { .. } | BuildError::Io(_) => EXIT_INFRA,
            },
        }
    }
}
