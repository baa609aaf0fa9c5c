//! The errors a `lab` command can end with, and their exit codes, decided in one total `match`
//! ([`LabError::exit_code`]): no other place in the crate picks an exit class for an error.
//!
//! Exit codes (documented in the README and every `--help`):
//! - 0: success, no regression;
//! - 1: a result: a regression was found or the gate failed (never an error);
//! - 2: usage or configuration error: bad arguments, malformed lab.toml, a patch that does not
//!   apply, a config option that Kconfig dropped, a missing toolchain;
//! - 3: infrastructure failure: a build, boot or transport that broke.
//!
//! Each variant wraps the failing module's own error with its cause chain intact, so that the
//! binary can print "caused by" lines down to the `io::Error`, `rusqlite::Error` or
//! `ssh2::Error` at the bottom.

use std::path::PathBuf;

use crate::arch::UnknownArch;
use crate::bisect::search::SearchError;
use crate::config::ConfigError;
use crate::gate::b4::B4Error;
use crate::gate::checkpatch::CheckpatchError;
use crate::guest::image::ImageError;
use crate::io_error::IoError;
use crate::kernel::build::BuildError;
use crate::kernel::cache::CacheError;
use crate::kernel::git::GitError;
use crate::kernel::patch::PatchError;
use crate::kernel::source::SourceError;
use crate::report::ReportError;
use crate::results::store::StoreError;
use crate::selftest::SelftestError;
use crate::transport::ssh::TransportError;
use crate::vm::qemu::VmError;

pub const EXIT_OK: i32 = 0;
pub const EXIT_REGRESSION: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_INFRA: i32 = 3;

/// How a verb ended when it did not fail: the exit code of a result, not of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything passed, no regression, the gate passed, a confident culprit.
    Pass,
    /// A regression, a failed test, a failed gate, a bisection that did not reach its
    /// confidence: a result the user asked about, never an error.
    Regression,
    /// The run finished but every failure was the lab's own (a test that could not run):
    /// nothing was learnt about the kernel.
    InfraOnly,
    /// `lab bisect-step`, whose codes belong to `git bisect run` (0, 1, 125, 128).
    GitBisect(i32),
}

impl Outcome {
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Pass => EXIT_OK,
            Outcome::Regression => EXIT_REGRESSION,
            Outcome::InfraOnly => EXIT_INFRA,
            Outcome::GitBisect(code) => code,
        }
    }
}

/// Bad input to a verb: the flag (or argument) and why it is refused.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {why}")]
pub struct UsageError {
    /// The flag as typed (`--duration`), or the argument's name (`SERIES`).
    pub flag: &'static str,
    pub why: String,
}

/// What a bisection could not do.
#[derive(Debug, thiserror::Error)]
pub enum BisectError {
    #[error("cannot bisect: failed to {0}")]
    Setup(#[from] SearchError),
    #[error("failed to {0} (a lab bug: the search refused an observation lab made)")]
    Observe(#[source] SearchError),
    #[error("session {session}: cannot replay the search")]
    Replay {
        session: i64,
        #[source]
        source: SearchError,
    },
    #[error(
        "the {end} end ({label}) could not be tested: {why}; a bisection needs both ends to run"
    )]
    EndUntestable {
        end: &'static str,
        label: String,
        why: String,
    },
    #[error("session {session}: its bisection state has format version {found}, this lab reads version {expected}; start the bisection again (the same command starts it over)")]
    OldState {
        session: i64,
        found: u32,
        expected: u32,
    },
    #[error("session {session}: not a readable bisection state")]
    State {
        session: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error("the search named commit {index}, outside the {n} candidates (a lab bug)")]
    CulpritOutOfRange { index: usize, n: usize },
}

/// What `lab gate` could not do before it could judge the series.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("read the patch mail on stdin")]
    Stdin(#[source] std::io::Error),
}

/// A stored report that this lab cannot read back.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("failed to read the report of session {session} from {}; it was written by a lab whose report format differs from this one's ({supported})", path.display())]
    Unreadable {
        session: i64,
        path: PathBuf,
        supported: u32,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to read the report of session {session} from {}: its format version {found} is newer than this lab's {supported}; use a newer lab", path.display())]
    TooNew {
        session: i64,
        path: PathBuf,
        found: u32,
        supported: u32,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Arch(#[from] UnknownArch),
    #[error(transparent)]
    Selftest(#[from] SelftestError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("failed to {0}")]
    Store(#[from] StoreError),
    #[error("failed to {0}")]
    Report(#[from] ReportError),
    #[error("failed to {0}")]
    Checkpatch(#[from] CheckpatchError),
    #[error("failed to {0}")]
    B4(#[from] B4Error),
    #[error(transparent)]
    Bisect(#[from] BisectError),
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Engine(#[from] crate::exec::EngineError),
    #[error("write to {stream}")]
    Output {
        stream: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("a worker task of lab failed (a lab bug)")]
    Task(#[from] tokio::task::JoinError),
    #[error("interrupted")]
    Interrupted,
}

impl From<SourceError> for LabError {
    fn from(e: SourceError) -> Self {
        LabError::Build(BuildError::Source(e))
    }
}

impl From<PatchError> for LabError {
    fn from(e: PatchError) -> Self {
        LabError::Build(BuildError::Patch(e))
    }
}

impl LabError {
    /// Bad input: `flag` is what the user typed, `why` reads after it.
    pub fn usage(flag: &'static str, why: impl Into<String>) -> LabError {
        LabError::Usage(UsageError {
            flag,
            why: why.into(),
        })
    }

    /// The one place an error's exit class is decided.
    pub fn exit_code(&self) -> i32 {
        match self {
            LabError::Usage(_)
            | LabError::Config(_)
            | LabError::Arch(_)
            | LabError::Selftest(_)
            | LabError::B4(_) => EXIT_USAGE,
            LabError::Vm(_)
            | LabError::Transport(_)
            | LabError::Report(_)
            | LabError::Checkpatch(_)
            | LabError::Gate(_)
            | LabError::Store(_)
            | LabError::Results(_)
            | LabError::Io(_)
            | LabError::Engine(_)
            | LabError::Output { .. }
            | LabError::Task(_)
            | LabError::Interrupted => EXIT_INFRA,
            LabError::Image(e) => match e {
                ImageError::UnknownTest { .. } => EXIT_USAGE,
                _ => EXIT_INFRA,
            },
            LabError::Bisect(e) => match e {
                BisectError::Setup(_)
                | BisectError::Replay { .. }
                | BisectError::State { .. }
                | BisectError::OldState { .. } => EXIT_USAGE,
                BisectError::Observe(_)
                | BisectError::EndUntestable { .. }
                | BisectError::CulpritOutOfRange { .. } => EXIT_INFRA,
            },
            LabError::Git(e) => git_exit_code(e),
            LabError::Cache(e) => cache_exit_code(e),
            LabError::Build(e) => match e {
                BuildError::Toolchain(_) | BuildError::Patch(_) | BuildError::Kconfig(_) => {
                    EXIT_USAGE
                }
                BuildError::Source(s) => match s {
                    SourceError::DefinitionMissing { .. }
                    | SourceError::Definition { .. }
                    | SourceError::TarballMissing { .. }
                    | SourceError::TarballHash { .. }
                    | SourceError::Git(GitError::Failed { .. }) => EXIT_USAGE,
                    SourceError::Git(GitError::Spawn { .. })
                    | SourceError::Unpack { .. }
                    | SourceError::Io(_) => EXIT_INFRA,
                },
                BuildError::Cache(c) => cache_exit_code(c),
                BuildError::Spawn(_)
                | BuildError::Make { .. }
                | BuildError::Io(_)
                | BuildError::Job { .. } => EXIT_INFRA,
            },
        }
    }
}

/// A git command that ran and refused (a bad ref, not a repository) is the user's input; git
/// that cannot be started is the machine's.
fn git_exit_code(e: &GitError) -> i32 {
    match e {
        GitError::Failed { .. } => EXIT_USAGE,
        GitError::Spawn { .. } => EXIT_INFRA,
    }
}

fn cache_exit_code(e: &CacheError) -> i32 {
    match e {
        CacheError::NoMatch(_) | CacheError::Ambiguous(_) => EXIT_USAGE,
        CacheError::Io(_) | CacheError::Damaged(_) => EXIT_INFRA,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_err() -> std::io::Error {
        std::io::Error::other("boom")
    }

    fn path() -> PathBuf {
        PathBuf::from("/x")
    }

    /// One error of every variant (and of every inner class that decides differently), with
    /// the exit code the README documents for it.
    fn cases() -> Vec<(LabError, i32)> {
        let search = || SearchError::EmptyRange;
        vec![
            (LabError::usage("--duration", "\"x\": use 3s"), EXIT_USAGE),
            (
                ConfigError::Parse {
                    path: path(),
                    message: "m".into(),
                }
                .into(),
                EXIT_USAGE,
            ),
            (UnknownArch("mips".into()).into(), EXIT_USAGE),
            (
                crate::exec::EngineError::NoNodes {
                    partition: "run".into(),
                }
                .into(),
                EXIT_INFRA,
            ),
            (
                BuildError::Job {
                    engine: "slurm".into(),
                    job: "7".into(),
                    why: "node down".into(),
                }
                .into(),
                EXIT_INFRA,
            ),
            (
                SelftestError::Invalid {
                    path: path(),
                    why: "w".into(),
                }
                .into(),
                EXIT_USAGE,
            ),
            (
                BuildError::Toolchain(crate::kernel::toolchain::ToolchainError::Missing {
                    tool: "gcc".into(),
                    arch: crate::arch::Arch::X86_64,
                    hint: "h".into(),
                })
                .into(),
                EXIT_USAGE,
            ),
            (
                PatchError::NotFound {
                    name: "n".into(),
                    dir: path(),
                    patches_dir: path(),
                }
                .into(),
                EXIT_USAGE,
            ),
            (
                BuildError::Kconfig(crate::kernel::kconfig::KconfigError::FragmentMissing {
                    name: "n".into(),
                    path: path(),
                })
                .into(),
                EXIT_USAGE,
            ),
            (
                SourceError::DefinitionMissing {
                    name: "n".into(),
                    path: path(),
                }
                .into(),
                EXIT_USAGE,
            ),
            (
                SourceError::Git(GitError::Failed {
                    args: "rev-parse x".into(),
                    repo: path(),
                    stderr: "bad".into(),
                })
                .into(),
                EXIT_USAGE,
            ),
            (
                SourceError::Git(GitError::Spawn {
                    args: "rev-parse x".into(),
                    repo: path(),
                    source: io_err(),
                })
                .into(),
                EXIT_INFRA,
            ),
            (
                SourceError::Unpack {
                    path: path(),
                    why: "w".into(),
                }
                .into(),
                EXIT_INFRA,
            ),
            (
                BuildError::Make {
                    arch: crate::arch::Arch::Arm64,
                    target: "Image".into(),
                    status: "2".into(),
                    tail: "t".into(),
                    log: path(),
                }
                .into(),
                EXIT_INFRA,
            ),
            (
                BuildError::Cache(CacheError::NoMatch("k".into())).into(),
                EXIT_USAGE,
            ),
            (CacheError::Ambiguous("k".into()).into(), EXIT_USAGE),
            (
                CacheError::Io(IoError {
                    what: "cannot read",
                    path: path(),
                    source: io_err(),
                })
                .into(),
                EXIT_INFRA,
            ),
            (
                ImageError::UnknownTest {
                    name: "t".into(),
                    path: path(),
                }
                .into(),
                EXIT_USAGE,
            ),
            (
                ImageError::Unpack {
                    deb: path(),
                    why: "w".into(),
                }
                .into(),
                EXIT_INFRA,
            ),
            (
                VmError::BootTimeout {
                    secs: 1.0,
                    console: path(),
                }
                .into(),
                EXIT_INFRA,
            ),
            (
                TransportError::Resolve {
                    host: "h".into(),
                    port: 22,
                    source: io_err(),
                }
                .into(),
                EXIT_INFRA,
            ),
            (
                StoreError::CreateDir {
                    path: path(),
                    source: io_err(),
                }
                .into(),
                EXIT_INFRA,
            ),
            (
                ReportError::Render {
                    format: "html",
                    why: "w".into(),
                }
                .into(),
                EXIT_INFRA,
            ),
            (CheckpatchError::NoSummary.into(), EXIT_INFRA),
            (
                B4Error::MissingHeader { name: "Subject" }.into(),
                EXIT_USAGE,
            ),
            (BisectError::Setup(search()).into(), EXIT_USAGE),
            (
                BisectError::Replay {
                    session: 1,
                    source: search(),
                }
                .into(),
                EXIT_USAGE,
            ),
            (
                BisectError::State {
                    session: 1,
                    source: serde_json::from_str::<u8>("x").expect_err("not JSON"),
                }
                .into(),
                EXIT_USAGE,
            ),
            (BisectError::Observe(search()).into(), EXIT_INFRA),
            (
                BisectError::EndUntestable {
                    end: "bad",
                    label: "abc".into(),
                    why: "w".into(),
                }
                .into(),
                EXIT_INFRA,
            ),
            (
                BisectError::CulpritOutOfRange { index: 9, n: 3 }.into(),
                EXIT_INFRA,
            ),
            (GateError::Stdin(io_err()).into(), EXIT_INFRA),
            (
                GitError::Failed {
                    args: "format-patch a..b".into(),
                    repo: path(),
                    stderr: "s".into(),
                }
                .into(),
                EXIT_USAGE,
            ),
            (
                ResultsError::TooNew {
                    session: 1,
                    path: path(),
                    found: 9,
                    supported: 1,
                }
                .into(),
                EXIT_INFRA,
            ),
            (
                IoError {
                    what: "cannot write",
                    path: path(),
                    source: io_err(),
                }
                .into(),
                EXIT_INFRA,
            ),
            (
                LabError::Output {
                    stream: "stdout",
                    source: io_err(),
                },
                EXIT_INFRA,
            ),
            (LabError::Interrupted, EXIT_INFRA),
        ]
    }

    #[test]
    fn every_variant_has_its_documented_exit_code() {
        for (e, want) in cases() {
            assert_eq!(e.exit_code(), want, "{e:?}");
        }
    }

    #[test]
    fn a_failed_worker_task_is_infrastructure() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let join = rt.block_on(async {
            tokio::spawn(async { panic!("worker") })
                .await
                .expect_err("the task panicked")
        });
        assert_eq!(LabError::from(join).exit_code(), EXIT_INFRA);
    }

    #[test]
    fn every_variant_says_what_failed_and_keeps_its_cause() {
        for (e, _) in cases() {
            assert!(!e.to_string().is_empty(), "{e:?}");
        }
        let e: LabError = StoreError::CreateDir {
            path: path(),
            source: io_err(),
        }
        .into();
        assert!(e.to_string().starts_with("failed to create"), "{e}");
        let mut chain = Vec::new();
        let mut s = std::error::Error::source(&e);
        while let Some(c) = s {
            chain.push(c.to_string());
            s = c.source();
        }
        assert_eq!(chain.last().map(String::as_str), Some("boom"), "{chain:?}");
    }

    #[test]
    fn usage_names_the_flag() {
        let e = LabError::usage("--budget", "\"8x\": use a duration like 90s");
        assert_eq!(e.to_string(), "--budget: \"8x\": use a duration like 90s");
    }

    #[test]
    fn outcomes_map_to_their_codes() {
        assert_eq!(Outcome::Pass.exit_code(), EXIT_OK);
        assert_eq!(Outcome::Regression.exit_code(), EXIT_REGRESSION);
        assert_eq!(Outcome::InfraOnly.exit_code(), EXIT_INFRA);
        assert_eq!(Outcome::GitBisect(125).exit_code(), 125);
    }
}
