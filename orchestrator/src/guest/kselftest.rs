//! kselftest programs, built from the pinned kernel tree for the guest: static with glibc
//! (`gcc -static`, `aarch64-linux-gnu-gcc -static`; musl lacks `__NR_futex_waitv`), with
//! `-D_GNU_SOURCE` as kselftest's `lib.mk` adds it, once per (arch, tree, compiler), through
//! a content-addressed cache. Both sides of a comparison then run the very same binaries:
//! the programs are built from lab.toml's tree, never from a side's patched one.
//!
//! The cache key is the sha256 of everything that goes into the binaries: this module's
//! format version, the arch, the compiler's `--version` line, the flags, and the path and
//! content of every source file the programs' folders and include folders hold. A build goes
//! to a temporary folder and is renamed into place whole; each binary's sha256 is recorded
//! in the folder's manifest and checked on every use, so a truncated or altered binary is
//! rebuilt, never run.
//!
//! Running the programs, and reading their TAP, is the guest adapter's work
//! (`lab_thirdparty::ktap`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::arch::Arch;
use crate::io_error::{io, publish_dir, write_atomic, IoError};

/// Bumped when what goes into a build changes in a way the key does not see.
const FORMAT_VERSION: u32 = 1;

/// One folder of kselftest programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collection {
    /// lab's name for it: tests are `kselftest:<name>/<program>`.
    pub name: &'static str,
    /// Under `tools/testing/selftests/`.
    pub dir: &'static str,
    pub programs: &'static [&'static str],
    /// `-I` folders, relative to `dir` (as the collection's Makefile gives them).
    pub includes: &'static [&'static str],
    pub libs: &'static [&'static str],
    /// Programs that run for a fixed time of their own, far beyond lab's workload duration,
    /// and how long (on a good kernel under TCG, rounded up): their deadlines, in the guest
    /// and on the host, are stretched by it ([`runs_for`]). They sleep on timers, so the time
    /// does not grow with emulation.
    pub runs_for: &'static [(&'static str, Duration)],
}

/// `futex/functional`: every program of its Makefile's `TEST_GEN_PROGS` (Linux 6.12).
pub const FUTEX: Collection = Collection {
    name: "futex",
    dir: "futex/functional",
    programs: &[
        "futex_wait_timeout",
        "futex_wait_wouldblock",
        "futex_requeue_pi",
        "futex_requeue_pi_signal_restart",
        "futex_requeue_pi_mismatched_ops",
        "futex_wait_uninitialized_heap",
        "futex_wait_private_mapped_file",
        "futex_wait",
        "futex_requeue",
        "futex_waitv",
    ],
    includes: &["../include", "../../"],
    libs: &["-lpthread", "-lrt"],
    runs_for: &[],
};

/// `filesystems/epoll`: `epoll_wakeup_test`, epoll wake-ups with threads, signals, nested
/// epoll instances and `epoll_pwait2()` timeouts (kselftest_harness.h: one TAP result per
/// `TEST()`). None of its cases adds an `EPOLLEXCLUSIVE` entry. The guest adapter leaves out
/// `epoll59`, `epoll60` and `epoll61` (`-T`): stress loops (100000 and 300 rounds of spinning
/// threads; 1000 rounds of three new threads and an 11 ms wait) that overran the harness's
/// own 30 s timeout under TCG on a good kernel; and six cases whose two threads race for two
/// events the test writes one after the other (the adapter says which, and why). The other 55
/// take 12-18 s under TCG on the
/// base kernel; 75 s of `runs_for` leaves room for a slow kernel (103 s was seen on arm64 with
/// the latency injector at its clamp: still inside the stretched deadline).
pub const EPOLL: Collection = Collection {
    name: "epoll",
    dir: "filesystems/epoll",
    programs: &["epoll_wakeup_test"],
    // kselftest_harness.h and kselftest.h, which the program includes as "../../…".
    includes: &["../.."],
    libs: &["-lpthread"],
    runs_for: &[("epoll_wakeup_test", Duration::from_secs(75))],
};

/// `timers`: the programs of its Makefile's `TEST_GEN_PROGS` that pass on the pinned kernel
/// under TCG (Linux 6.12.117-rt, measured on a loaded 2-core host):
/// - `nanosleep`: no sleep returns before its target, per clock (about 10 s);
/// - `mqueue-lat`: 100 `mq_timedreceive()` timeouts of 100 ms average under 140 ms (about
///   12 s). It prints no TAP, only `… [OK]` / `[FAILED]` (the guest adapter reads that).
///
/// Left out, with what was seen on the base kernel under TCG:
/// - `posix_timers`: fails cases 6, 7, 9 and 10 (signal distribution, `check_sig_ign
///   SIGEV_SIGNAL`, `check_rearm`, `check_delete`: they expect the posix-timer signal
///   handling of later kernels), and cases 1-2 (ITIMER_VIRTUAL/PROF against wall time: 4.2 s
///   and 11.5 s for 2 s of CPU time on a starved vCPU);
/// - `nsleep-lat`, `set-timer-lat`: 40 ms latency bounds that TCG on a loaded host misses
///   (mean sleep latency 41-62 ms, timer latency up to 99 ms), and 60-80 s each;
/// - `inconsistency-check`, `raw_skew`, `threadtest`: they compare clocks for minutes;
///   `rtcpie` needs `/dev/rtc`; every `DESTRUCTIVE_TESTS` program sets the time or suspends.
pub const TIMERS: Collection = Collection {
    name: "timers",
    dir: "timers",
    programs: &["nanosleep", "mqueue-lat"],
    includes: &[".."],
    libs: &["-lrt", "-lpthread", "-lm"],
    // nanosleep: sleeps of 10 ns to 1 s, twice, on four clocks; mqueue-lat: 100 × 100 ms.
    runs_for: &[
        ("nanosleep", Duration::from_secs(15)),
        ("mqueue-lat", Duration::from_secs(15)),
    ],
};

/// Every collection lab knows.
pub const COLLECTIONS: &[Collection] = &[FUTEX, EPOLL, TIMERS];

/// The collection and program of test `test` (`kselftest:<collection>/<program>`), if lab
/// knows that program.
pub fn find(test: &str) -> Option<(&'static Collection, &'static str)> {
    let (collection, program) = test
        .strip_prefix(super::image::KSELFTEST_PREFIX)?
        .split_once('/')?;
    COLLECTIONS.iter().find_map(|c| {
        let p = c.programs.iter().find(|p| **p == program)?;
        (c.name == collection).then_some((c, *p))
    })
}

/// How long test `test` runs on its own beyond lab's workload duration: zero for every test
/// but the kselftest programs of a collection's `runs_for`.
pub fn runs_for(test: &str) -> Duration {
    find(test)
        .and_then(|(c, p)| c.runs_for.iter().find(|(n, _)| *n == p))
        .map_or(Duration::ZERO, |(_, d)| *d)
}

/// The compiler flags, as `futex/functional/Makefile` and `lib.mk` give them, plus `-static`.
const CFLAGS: &[&str] = &["-static", "-D_GNU_SOURCE", "-O2", "-Wall", "-pthread"];

#[derive(Debug, thiserror::Error)]
pub enum KselftestError {
    #[error("{compiler} is not installed: {hint}")]
    NoCompiler { compiler: String, hint: String },
    #[error("kselftest sources missing in {}: {what} (is it a Linux tree?)", tree.display())]
    NoSources { tree: PathBuf, what: String },
    #[error(
        "compile kselftest {collection}/{program} for {arch} with {compiler} ({status}):\n{stderr}"
    )]
    Compile {
        collection: &'static str,
        program: &'static str,
        arch: Arch,
        compiler: String,
        status: String,
        stderr: String,
    },
    #[error(transparent)]
    Spawn(#[from] crate::process::SpawnError),
    #[error(transparent)]
    Io(#[from] IoError),
}

/// A built collection: where its binaries are, by program name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Built {
    pub format_version: u32,
    pub collection: String,
    pub arch: Arch,
    pub key: String,
    pub compiler: String,
    /// sha256 of each binary, by program name.
    pub programs: BTreeMap<String, String>,
    /// The folder holding the binaries and this manifest (not serialised: it is where the
    /// manifest was read from).
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Built {
    pub fn program(&self, name: &str) -> Option<PathBuf> {
        self.programs
            .contains_key(name)
            .then(|| self.dir.join(name))
    }
}

const MANIFEST: &str = "manifest.json";

/// Builds `c` for `arch` from the Linux tree `tree` with the compiler `{cross_compile}gcc`,
/// or finds it built in `cache_dir`.
pub async fn build(
    c: &Collection,
    tree: &Path,
    arch: Arch,
    cross_compile: &str,
    cache_dir: &Path,
) -> Result<Built, KselftestError> {
    let compiler = format!("{cross_compile}gcc");
    let version = compiler_version(&compiler, arch)?;
    let root = tree.join("tools/testing/selftests");
    let key = key(c, &root, arch, &version)?;
    let dir = cache_dir.join("kselftest").join(&key[..16]);
    if let Some(b) = load_verified(&dir, &key) {
        tracing::debug!(collection = c.name, %arch, dir = %dir.display(), "kselftest: cached");
        return Ok(b);
    }
    let parent = cache_dir.join("kselftest");
    std::fs::create_dir_all(&parent).map_err(io("cannot create", &parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(&parent)
        .map_err(io("cannot make a build folder in", &parent))?;
    let src = root.join(c.dir);
    let mut programs = BTreeMap::new();
    for &program in c.programs {
        let out = tmp.path().join(program);
        // In its own process group, like every child of lab: Ctrl-C or lab's end kills it.
        let mut cmd = tokio::process::Command::new(&compiler);
        cmd.current_dir(&src)
            .args(CFLAGS)
            .args(c.includes.iter().map(|inc| format!("-I{inc}")))
            .arg(format!("{program}.c"))
            .arg("-o")
            .arg(&out)
            .args(c.libs)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let (status, stderr) = crate::process::spawn(&compiler, &mut cmd)?
            .wait_with_stderr()
            .await
            .map_err(io("cannot wait for the compiler in", &src))?;
        if !status.success() {
            return Err(KselftestError::Compile {
                collection: c.name,
                program,
                arch,
                compiler,
                status: status.to_string(),
                stderr: stderr.trim().to_owned(),
            });
        }
        let data = std::fs::read(&out).map_err(io("cannot read", &out))?;
        programs.insert(program.to_owned(), hex::encode(Sha256::digest(&data)));
    }
    let built = Built {
        format_version: FORMAT_VERSION,
        collection: c.name.to_owned(),
        arch,
        key: key.clone(),
        compiler: version,
        programs,
        dir: dir.clone(),
    };
    let json = serde_json::to_vec_pretty(&built)
        .map_err(|e| io("cannot encode", &dir)(std::io::Error::other(e)))?;
    write_atomic(&tmp.path().join(MANIFEST), &json)?;
    if let Some(b) = publish_dir(tmp, &dir, "cannot move the kselftest build to", || {
        load_verified(&dir, &key)
    })? {
        return Ok(b);
    }
    tracing::info!(collection = c.name, %arch, dir = %dir.display(), "kselftest: built");
    Ok(built)
}

/// The compiler's first `--version` line; a clear error when it is missing.
fn compiler_version(compiler: &str, arch: Arch) -> Result<String, KselftestError> {
    let hint = if compiler.starts_with("aarch64") {
        "install Debian's gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (`make setup` does)"
    } else {
        "install build-essential (`make setup` does)"
    };
    let missing = || KselftestError::NoCompiler {
        compiler: compiler.to_owned(),
        hint: format!("{hint}; needed to build kselftests for {arch}"),
    };
    crate::process::version_line(Path::new(compiler)).map_err(|_| missing())
}

/// The content key of `c` built for `arch` with the compiler `version`.
fn key(c: &Collection, root: &Path, arch: Arch, version: &str) -> Result<String, KselftestError> {
    let mut h = Sha256::new();
    h.update(format!(
        "lab kselftest {FORMAT_VERSION}\n{arch}\n{version}\n"
    ));
    h.update(format!("{CFLAGS:?} {:?} {:?}\n", c.includes, c.libs));
    let src = root.join(c.dir);
    for program in c.programs {
        let p = src.join(format!("{program}.c"));
        if !p.is_file() {
            return Err(KselftestError::NoSources {
                tree: root.to_owned(),
                what: format!("{}/{program}.c", c.dir),
            });
        }
    }
    // The programs' folder and every include folder: all of their files, in path order.
    let mut files = Vec::new();
    for d in std::iter::once(&".").chain(c.includes.iter()) {
        let dir = src.join(d);
        let rd = std::fs::read_dir(&dir).map_err(|_| KselftestError::NoSources {
            tree: root.to_owned(),
            what: format!("folder {}", dir.display()),
        })?;
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_file() && (name.ends_with(".c") || name.ends_with(".h")) {
                files.push(p);
            }
        }
    }
    files.sort();
    files.dedup();
    for p in files {
        let data = std::fs::read(&p).map_err(io("cannot read", &p))?;
        let rel = p.strip_prefix(root).unwrap_or(&p);
        h.update(format!("{} {}\n", rel.display(), data.len()));
        h.update(&data);
    }
    Ok(hex::encode(h.finalize()))
}

/// The build in `dir` if its manifest has `key` and every binary matches its sha256.
fn load_verified(dir: &Path, key: &str) -> Option<Built> {
    let text = std::fs::read(dir.join(MANIFEST)).ok()?;
    let mut b: Built = serde_json::from_slice(&text).ok()?;
    if b.key != key || b.format_version != FORMAT_VERSION {
        return None;
    }
    for (program, sha) in &b.programs {
        let data = std::fs::read(dir.join(program)).ok()?;
        if hex::encode(Sha256::digest(&data)) != *sha {
            tracing::warn!(dir = %dir.display(), program, "kselftest binary altered: rebuilding");
            return None;
        }
    }
    b.dir = dir.to_owned();
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both arches from the pinned tree: every program of every collection builds static, a
    /// second build is the cached one, and a damaged binary is rebuilt rather than used.
    #[tokio::test]
    async fn kselftests_build_static_for_both_arches_and_are_verified_on_use() {
        let tree = crate::gate::checkpatch::tests::kernel_tree();
        let cache = tempfile::tempdir().expect("tempdir");
        for (arch, cross, machine) in [
            (Arch::X86_64, "", "x86-64"),
            (Arch::Arm64, "aarch64-linux-gnu-", "aarch64"),
        ] {
            for c in [&EPOLL, &TIMERS] {
                let b = build(c, &tree, arch, cross, cache.path())
                    .await
                    .expect("builds");
                assert_eq!(b.programs.len(), c.programs.len(), "{arch} {}", c.name);
                for p in c.programs {
                    let bin = b.program(p).expect("built");
                    let out = std::process::Command::new("file")
                        .arg(&bin)
                        .output()
                        .expect("file(1)");
                    let what = String::from_utf8_lossy(&out.stdout);
                    assert!(
                        what.contains("statically linked") && what.contains(machine),
                        "{arch} {p}: {what}"
                    );
                }
            }
            let b = build(&FUTEX, &tree, arch, cross, cache.path())
                .await
                .expect("builds");
            assert_eq!(b.programs.len(), FUTEX.programs.len());
            let waitv = b.program("futex_waitv").expect("futex_waitv");
            let out = std::process::Command::new("file")
                .arg(&waitv)
                .output()
                .expect("file(1)");
            let what = String::from_utf8_lossy(&out.stdout);
            assert!(
                what.contains("statically linked") && what.contains(machine),
                "{arch}: {what}"
            );
            let again = build(&FUTEX, &tree, arch, cross, cache.path())
                .await
                .expect("cached");
            assert_eq!(again, b, "{arch}: the same key, the same folder");
            // Truncate one binary: the next use notices and rebuilds it.
            std::fs::write(&waitv, b"truncated").expect("damage");
            let rebuilt = build(&FUTEX, &tree, arch, cross, cache.path())
                .await
                .expect("rebuilt");
            assert_eq!(rebuilt.programs, b.programs, "{arch}: the same bytes again");
            assert_ne!(
                std::fs::read(&waitv).expect("read").as_slice(),
                b"truncated"
            );
        }
    }

    #[test]
    fn tests_name_their_collection_and_the_programs_that_run_long_say_so() {
        assert_eq!(
            find("kselftest:epoll/epoll_wakeup_test").map(|(c, p)| (c.dir, p)),
            Some(("filesystems/epoll", "epoll_wakeup_test"))
        );
        assert_eq!(
            find("kselftest:timers/mqueue-lat").map(|(c, _)| c.name),
            Some("timers")
        );
        for unknown in [
            "kselftest:timers/raw_skew",
            "kselftest:timers/posix_timers",
            "kselftest:epoll/mqueue-lat",
            "kselftest:timers",
            "timers/nanosleep",
            "futex_errno",
        ] {
            assert_eq!(find(unknown), None, "{unknown}");
            assert_eq!(runs_for(unknown), Duration::ZERO, "{unknown}");
        }
        assert_eq!(runs_for("kselftest:futex/futex_wait"), Duration::ZERO);
        assert!(runs_for("kselftest:epoll/epoll_wakeup_test") >= Duration::from_secs(60));
        // Every runs_for entry names a program of its collection, and each name is a test
        // name lab accepts.
        for c in COLLECTIONS {
            for (p, _) in c.runs_for {
                assert!(c.programs.contains(p), "{}: {p}", c.name);
            }
            for p in c.programs {
                let t = format!("kselftest:{}/{p}", c.name);
                assert_eq!(crate::config::names::check_test(&t), Ok(()), "{t}");
            }
        }
    }

    #[test]
    fn the_key_follows_the_sources_and_the_compiler() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("tools/testing/selftests");
        let c = Collection {
            name: "t",
            dir: "t/functional",
            programs: &["a"],
            includes: &["../include"],
            libs: &[],
            runs_for: &[],
        };
        std::fs::create_dir_all(root.join("t/functional")).expect("mkdir");
        std::fs::create_dir_all(root.join("t/include")).expect("mkdir");
        std::fs::write(root.join("t/functional/a.c"), "int main(void){return 0;}").expect("w");
        std::fs::write(root.join("t/include/h.h"), "#define X 1").expect("w");
        let k1 = key(&c, &root, Arch::X86_64, "gcc 12").expect("key");
        assert_eq!(k1, key(&c, &root, Arch::X86_64, "gcc 12").expect("key"));
        assert_ne!(k1, key(&c, &root, Arch::X86_64, "gcc 13").expect("key"));
        assert_ne!(k1, key(&c, &root, Arch::Arm64, "gcc 12").expect("key"));
        std::fs::write(root.join("t/include/h.h"), "#define X 2").expect("w");
        assert_ne!(
            k1,
            key(&c, &root, Arch::X86_64, "gcc 12").expect("key"),
            "a header"
        );
        std::fs::remove_file(root.join("t/functional/a.c")).expect("rm");
        let e = key(&c, &root, Arch::X86_64, "gcc 12").expect_err("no source");
        assert!(e.to_string().contains("t/functional/a.c"), "{e}");
        let e = compiler_version("no-such-prefix-gcc", Arch::Arm64).expect_err("missing");
        assert!(
            e.to_string()
                .contains("no-such-prefix-gcc is not installed"),
            "{e}"
        );
    }
}
