//! `perf`, built from the pinned kernel tree's `tools/perf` for the guest, for the
//! `perf:futex-*` tests (`perf bench futex ...`, run by the guest adapter
//! `guest-tests/thirdparty/src/bin/perf.rs`).
//!
//! Why built here and not taken from Debian's `linux-perf`: Debian 12 ships perf 6.1 (not the
//! 6.12 of the kernel under test), dynamically linked against 27 libraries (python, perl,
//! slang, libdw, glib, libstdc++, ...: 24 MB, plus 9 MB of perf). The image copies every
//! library of its packages into every guest, so that would slow every boot of every test,
//! and the arm64 side would need all of those packages downloaded too. Built static with
//! every optional feature off (`perf bench` needs none), perf is one 3 MB file, added only to
//! images that run a `perf:` test, built in about a minute of CPU per arch, once per (arch,
//! source, compiler) through the cache.
//!
//! The build copies `tools/` and `arch/arm64/tools/` (perf generates arm64's sysreg header
//! on every arch) out of the pristine tree, which is never written, into a scratch folder,
//! and runs `make` there with `O=`, in its own process group. The cache key is the sha256 of
//! this module's format version, the arch, the compiler's `--version` line, the make flags
//! and the source's pinned identity (the tarball's sha256): the pristine tree of one identity
//! never changes, so its 60 MB of tools sources need not be hashed on every use. The result
//! goes to a temporary folder renamed into place whole, with the binary's sha256 in its
//! manifest, checked on every use; a damaged binary is rebuilt, never run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::arch::Arch;
use crate::io_error::{io, publish_dir, write_atomic, IoError};

/// Bumped when what goes into a build changes in a way the key does not see.
const FORMAT_VERSION: u32 = 1;

/// The `perf bench futex` benchmarks lab runs, as `perf:futex-<bench>`.
pub const BENCHES: &[&str] = &[
    "futex-hash",
    "futex-wake",
    "futex-wake-parallel",
    "futex-requeue",
    "futex-lock-pi",
];

/// `make` variables: every optional library off (none is needed by `perf bench`, and each
/// would be one more static library to find for each arch), linked static and stripped.
const MAKE_FLAGS: &[&str] = &[
    "NO_LIBPYTHON=1",
    "NO_LIBPERL=1",
    "NO_SLANG=1",
    "NO_GTK2=1",
    "NO_LIBELF=1",
    "NO_LIBTRACEEVENT=1",
    "NO_LIBBPF=1",
    "NO_LIBUNWIND=1",
    "NO_LIBDW_DWARF_UNWIND=1",
    "NO_DWARF=1",
    "NO_LIBNUMA=1",
    "NO_LIBAUDIT=1",
    "NO_LIBCRYPTO=1",
    "NO_ZLIB=1",
    "NO_LZMA=1",
    "NO_LIBZSTD=1",
    "NO_LIBCAP=1",
    "NO_LIBBABELTRACE=1",
    "NO_CAPSTONE=1",
    "NO_JVMTI=1",
    "NO_LIBPFM4=1",
    "NO_LIBDEBUGINFOD=1",
    "NO_DEMANGLE=1",
    "NO_BACKTRACE=1",
    "NO_AUXTRACE=1",
    "NO_SDT=1",
    "NO_LIBLLVM=1",
    "NO_CLANG=1",
    "NO_SHELLCHECK=1",
    "NO_JEVENTS=1",
    "LDFLAGS=-static -s",
];

/// What the build copies out of the pristine tree.
const TREE_PARTS: &[&str] = &["tools", "arch/arm64/tools"];

/// Host tools perf's build runs besides the compiler (its event parsers are flex and bison
/// grammars).
const HOST_TOOLS: &[&str] = &["make", "flex", "bison"];

#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    #[error("{tool} is not installed: {hint}")]
    NoTool { tool: String, hint: String },
    #[error("perf sources missing in {}: {what} (is it a Linux tree?)", tree.display())]
    NoSources { tree: PathBuf, what: String },
    #[error("copy {what} out of {} for the perf build: {why}", tree.display())]
    Copy {
        tree: PathBuf,
        what: String,
        why: String,
    },
    #[error("build perf for {arch} with {compiler} ({status}); the whole log is {}:\n{tail}", log.display())]
    Make {
        arch: Arch,
        compiler: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error(transparent)]
    Spawn(#[from] crate::process::SpawnError),
    #[error(transparent)]
    Io(#[from] IoError),
}

/// A built perf: where its binary is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Built {
    pub format_version: u32,
    pub arch: Arch,
    pub key: String,
    pub compiler: String,
    /// The pinned identity of the source it was built from.
    pub source: String,
    /// sha256 of the binary.
    pub sha256: String,
    /// The folder holding the binary and this manifest (not serialised: it is where the
    /// manifest was read from).
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Built {
    pub fn binary(&self) -> PathBuf {
        self.dir.join(BINARY)
    }
}

const MANIFEST: &str = "manifest.json";
const BINARY: &str = "perf";

/// Builds perf for `arch` from the Linux tree `tree` (pinned as `source`) with
/// `{cross_compile}gcc` and `jobs` make jobs, or finds it built in `cache_dir`.
pub async fn build(
    tree: &Path,
    source: &str,
    arch: Arch,
    cross_compile: &str,
    jobs: u32,
    cache_dir: &Path,
) -> Result<Built, PerfError> {
    let compiler = format!("{cross_compile}gcc");
    let version = compiler_version(&compiler, arch)?;
    let key = key(source, arch, &version);
    let parent = cache_dir.join("perf");
    let dir = parent.join(&key[..16]);
    if let Some(b) = load_verified(&dir, &key) {
        tracing::debug!(%arch, dir = %dir.display(), "perf: cached");
        return Ok(b);
    }
    for tool in HOST_TOOLS {
        if crate::process::which(tool).is_none() {
            return Err(PerfError::NoTool {
                tool: (*tool).to_owned(),
                hint: format!("perf's build needs it for {arch}; `make setup` installs it"),
            });
        }
    }
    if !tree.join("tools/perf/bench/futex-hash.c").is_file() {
        return Err(PerfError::NoSources {
            tree: tree.to_owned(),
            what: "tools/perf/bench/futex-hash.c".into(),
        });
    }
    std::fs::create_dir_all(&parent).map_err(io("cannot create", &parent))?;
    // The scratch tree and objects (about 150 MB), gone when this returns.
    let work = tempfile::Builder::new()
        .prefix(".work-")
        .tempdir_in(&parent)
        .map_err(io("cannot make a build folder in", &parent))?;
    let src = work.path().join("src");
    for part in TREE_PARTS {
        copy_part(tree, part, &src)?;
    }
    let out = work.path().join("out");
    std::fs::create_dir_all(&out).map_err(io("cannot create", &out))?;
    let staged = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(&parent)
        .map_err(io("cannot make a build folder in", &parent))?;
    let log = staged.path().join("build.log");
    let log_file = std::fs::File::create(&log).map_err(io("cannot create", &log))?;
    let log_err = log_file.try_clone().map_err(io("cannot open", &log))?;
    let started = std::time::Instant::now();
    tracing::info!(%arch, "perf: building tools/perf (once per arch and source)");
    // In its own process group, like every child of lab: Ctrl-C or lab's end kills it.
    let mut cmd = tokio::process::Command::new("make");
    cmd.current_dir(src.join("tools/perf"))
        .arg(format!("-j{}", jobs.max(1)))
        .arg(format!("ARCH={}", arch.info().kernel_arch))
        .arg(format!("CROSS_COMPILE={cross_compile}"))
        .arg(format!("O={}", out.display()))
        .args(MAKE_FLAGS)
        .arg(out.join(BINARY))
        // perf's version script asks git and the top Makefile, neither of which is copied.
        .env("PERF_VERSION", source_version(source))
        .stdin(std::process::Stdio::null())
        .stdout(log_file)
        .stderr(log_err);
    let status = crate::process::spawn("make (perf)", &mut cmd)?
        .wait()
        .await
        .map_err(io("cannot wait for make in", &src))?;
    if !status.success() {
        // Keep the log where the user can read it: the staged folder goes away.
        let kept = parent.join(format!("failed-{arch}.log"));
        let _ = std::fs::copy(&log, &kept);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(25).collect();
        return Err(PerfError::Make {
            arch,
            compiler,
            status: status.to_string(),
            log: kept,
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    let binary = staged.path().join(BINARY);
    std::fs::copy(out.join(BINARY), &binary).map_err(io("cannot copy", &binary))?;
    drop(work);
    let data = std::fs::read(&binary).map_err(io("cannot read", &binary))?;
    let built = Built {
        format_version: FORMAT_VERSION,
        arch,
        key: key.clone(),
        compiler: version,
        source: source.to_owned(),
        sha256: hex::encode(Sha256::digest(&data)),
        dir: dir.clone(),
    };
    let json = serde_json::to_vec_pretty(&built)
        .map_err(|e| io("cannot encode", &dir)(std::io::Error::other(e)))?;
    write_atomic(&staged.path().join(MANIFEST), &json)?;
    if let Some(b) = publish_dir(staged, &dir, "cannot move the perf build to", || {
        load_verified(&dir, &key)
    })? {
        return Ok(b);
    }
    tracing::info!(
        %arch,
        dir = %dir.display(),
        secs = started.elapsed().as_secs(),
        "perf: built"
    );
    Ok(built)
}

/// `cp -a tree/part dst/part`: the pristine tree is only read.
fn copy_part(tree: &Path, part: &str, dst: &Path) -> Result<(), PerfError> {
    let from = tree.join(part);
    if !from.is_dir() {
        return Err(PerfError::NoSources {
            tree: tree.to_owned(),
            what: format!("folder {part}"),
        });
    }
    let to = dst.join(part);
    let to_parent = to.parent().unwrap_or(dst);
    std::fs::create_dir_all(to_parent).map_err(io("cannot create", to_parent))?;
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(&from)
        .arg(to_parent)
        .output()
        .map_err(|e| PerfError::Copy {
            tree: tree.to_owned(),
            what: part.to_owned(),
            why: format!("cannot run cp: {e}"),
        })?;
    if !out.status.success() {
        return Err(PerfError::Copy {
            tree: tree.to_owned(),
            what: part.to_owned(),
            why: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// What `perf version` says: the source's identity, short.
fn source_version(source: &str) -> String {
    format!("lab-{}", source.get(..12).unwrap_or(source))
}

/// The compiler's first `--version` line; a clear error when it is missing.
fn compiler_version(compiler: &str, arch: Arch) -> Result<String, PerfError> {
    let hint = if compiler.starts_with("aarch64") {
        "install Debian's gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (`make setup` does)"
    } else {
        "install build-essential (`make setup` does)"
    };
    crate::process::version_line(Path::new(compiler)).map_err(|_| PerfError::NoTool {
        tool: compiler.to_owned(),
        hint: format!("{hint}; needed to build perf for {arch}"),
    })
}

/// The content key of perf built for `arch` from `source` with the compiler `version`.
fn key(source: &str, arch: Arch, version: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "lab perf {FORMAT_VERSION}\n{arch}\n{version}\n{source}\n{MAKE_FLAGS:?}\n{TREE_PARTS:?}\n"
    ));
    hex::encode(h.finalize())
}

/// The build in `dir` if its manifest has `key` and the binary matches its sha256.
fn load_verified(dir: &Path, key: &str) -> Option<Built> {
    let text = std::fs::read(dir.join(MANIFEST)).ok()?;
    let mut b: Built = serde_json::from_slice(&text).ok()?;
    if b.key != key || b.format_version != FORMAT_VERSION {
        return None;
    }
    let data = std::fs::read(dir.join(BINARY)).ok()?;
    if hex::encode(Sha256::digest(&data)) != b.sha256 {
        tracing::warn!(dir = %dir.display(), "perf binary altered: rebuilding");
        return None;
    }
    b.dir = dir.to_owned();
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_source_the_arch_and_the_compiler() {
        let k = key("585a4a07", Arch::X86_64, "gcc 12");
        assert_eq!(k, key("585a4a07", Arch::X86_64, "gcc 12"));
        assert_ne!(k, key("585a4a08", Arch::X86_64, "gcc 12"));
        assert_ne!(k, key("585a4a07", Arch::Arm64, "gcc 12"));
        assert_ne!(k, key("585a4a07", Arch::X86_64, "gcc 13"));
        assert_eq!(source_version("585a4a074597abcdef"), "lab-585a4a074597");
    }

    #[test]
    fn a_damaged_build_is_not_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = Built {
            format_version: FORMAT_VERSION,
            arch: Arch::X86_64,
            key: "k".into(),
            compiler: "gcc".into(),
            source: "s".into(),
            sha256: hex::encode(Sha256::digest(b"perf")),
            dir: PathBuf::new(),
        };
        std::fs::write(dir.path().join(BINARY), b"perf").expect("w");
        std::fs::write(
            dir.path().join(MANIFEST),
            serde_json::to_vec(&b).expect("json"),
        )
        .expect("w");
        let got = load_verified(dir.path(), "k").expect("verified");
        assert_eq!(got.binary(), dir.path().join("perf"));
        assert!(load_verified(dir.path(), "other key").is_none());
        std::fs::write(dir.path().join(BINARY), b"truncated").expect("w");
        assert!(load_verified(dir.path(), "k").is_none(), "altered binary");
    }

    #[test]
    fn a_missing_compiler_or_tree_is_said_plainly() {
        let e = compiler_version("no-such-prefix-gcc", Arch::Arm64).expect_err("missing");
        assert!(
            e.to_string()
                .contains("no-such-prefix-gcc is not installed"),
            "{e}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let e = copy_part(dir.path(), "tools", &dir.path().join("dst")).expect_err("no tools");
        assert!(e.to_string().contains("folder tools"), "{e}");
    }
}
