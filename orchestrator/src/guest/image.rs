//! The guest image: an initramfs that lab assembles itself, per arch.
//!
//! It is two newc archives, concatenated (the kernel unpacks them in order):
//! - the **base image**, cached by content: the Rust PID 1, Debian's dropbear with its shared
//!   libraries and loader, busybox for `/bin/sh` (dropbear runs commands through the user's
//!   shell), and the static guest test programs;
//! - a small **per-run archive** with that run's fresh SSH host key and `authorized_keys`.
//!
//! Debian's packages are unpacked from the `.deb` files that `make setup` downloads for each
//! arch, never copied from the host, so an arm64 guest gets arm64 libraries.

use crate::io_error::{io, write_atomic, IoError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::newc::{self, Entry};
use crate::arch::Arch;
use crate::process;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "no {package} package for {arch} in {dir}: run `make setup` to download the guest packages"
    )]
    MissingDeb {
        package: String,
        arch: Arch,
        dir: PathBuf,
    },
    #[error("cannot unpack {deb}: {why}")]
    Unpack { deb: PathBuf, why: String },
    #[error("building the guest programs for {arch} ({target}) failed: {why}\n{tail}")]
    Cargo {
        arch: Arch,
        target: String,
        why: String,
        tail: String,
    },
    #[error("guest test {name:?} has no program (looked for {path}); the tests are the [[bin]] targets of guest-tests/suite")]
    UnknownTest { name: String, path: PathBuf },
    #[error("{tool} failed: {why}")]
    Keygen { tool: &'static str, why: String },
    #[error("build the kselftests for the guest: {0}")]
    Kselftest(#[from] super::kselftest::KselftestError),
    #[error("build perf for the guest: {0}")]
    Perf(#[from] super::perf::PerfError),
    #[error("find the kernel tree the kselftests and perf are built from: {0}")]
    KselftestTree(String),
    #[error(transparent)]
    Spawn(#[from] process::SpawnError),
    #[error(transparent)]
    Io(#[from] IoError),
}

/// The Debian packages the guest needs, per arch (see KERNEL-NOTES, "SSH into a guest").
pub const GUEST_DEBS: &[&str] = &[
    "dropbear-bin",
    "libc6",
    "libcrypt1",
    "libtomcrypt1",
    "libtommath1",
    "zlib1g",
    "libgmp10",
    "busybox-static",
    // rt-tests' programs (`rt:` tests), dynamically linked; libnuma1 is their one library
    // beyond libc.
    "rt-tests",
    "libnuma1",
];

/// lab's own fault programs (guest-tests/faults), always in the image for lab's own tests.
pub const FAULT_PROGRAMS: &[&str] = &["fault_panic", "fault_wedge", "fault_link_down"];

/// The digest and contents of a base image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageManifest {
    pub format_version: u32,
    pub arch: Arch,
    /// sha256 of the base archive.
    pub digest: String,
    /// sha256 of each guest program, by its path in the image.
    pub programs: BTreeMap<String, String>,
    /// The .deb files it was made from.
    pub debs: Vec<String>,
    pub size: u64,
}

/// A base image on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseImage {
    pub path: PathBuf,
    pub manifest: ImageManifest,
}

/// Where things come from: the workspace with the guest crates, and the lab cache.
#[derive(Debug, Clone)]
pub struct ImageInputs {
    pub workspace: PathBuf,
    pub cache: PathBuf,
    pub tests: Vec<String>,
    /// The kselftest collections built for the `kselftest:` tests of `tests`
    /// ([`for_tests`] builds them).
    pub kselftests: Vec<super::kselftest::Built>,
    /// perf, built for the `perf:` tests of `tests` ([`for_tests`] builds it).
    pub perf: Option<super::perf::Built>,
}

/// The tree and compiler prefix the programs built from the kernel tree (kselftests, perf)
/// are built with.
#[derive(Debug, Clone)]
pub struct TreeInputs {
    /// The pristine tree of lab.toml's kernel: both sides of a comparison run the same
    /// binaries.
    pub tree: PathBuf,
    /// Its pinned identity (the tarball's sha256): perf's cache key.
    pub source: String,
    pub cross_compile: String,
    /// Parallel make jobs for perf.
    pub jobs: u32,
}

/// Whether `tests` need programs built from the kernel tree ([`TreeInputs`]).
pub fn needs_tree(tests: &[String]) -> bool {
    tests
        .iter()
        .any(|t| t.starts_with(KSELFTEST_PREFIX) || t.starts_with(PERF_PREFIX))
}

/// Tests named `kselftest:<collection>/<program>` are kselftest programs run by the guest
/// adapter (`guest-tests/thirdparty/src/bin/kselftest.rs`).
pub const KSELFTEST_PREFIX: &str = "kselftest:";

/// Tests named `rt:<program>` are rt-tests programs from Debian's `rt-tests`, run by the
/// guest adapter (`guest-tests/thirdparty/src/bin/rt.rs`).
pub const RT_PREFIX: &str = "rt:";

/// Tests named `perf:<bench>` are `perf bench futex` benchmarks, perf built from the pinned
/// tree (`super::perf`), run by the guest adapter (`guest-tests/thirdparty/src/bin/perf.rs`).
pub const PERF_PREFIX: &str = "perf:";

/// The rt-tests programs lab runs as `rt:<program>`.
pub const RT_PROGRAMS: &[&str] = &[
    "cyclictest",
    "ptsematest",
    "pmqtest",
    "sigwaittest",
    "svsematest",
    // Priority-inheritance stress (PI futexes through glibc's PTHREAD_PRIO_INHERIT mutexes);
    // it needs only libc6, already in GUEST_DEBS.
    "pi_stress",
];

/// The guest image of one arch with the programs of `tests`: built (cargo, a no-op when
/// nothing changed) and assembled (cached by content). `kselftest` says where `kselftest:`
/// tests are built from (`run::guest_image` finds it).
pub async fn for_tests(
    s: &crate::config::Settings,
    arch: Arch,
    tests: &[String],
    kselftest: Option<TreeInputs>,
) -> Result<BaseImage, ImageError> {
    let mut kselftests: Vec<super::kselftest::Built> = Vec::new();
    for t in tests {
        let Some(name) = t.strip_prefix(KSELFTEST_PREFIX) else {
            continue;
        };
        let c = kselftest_collection(t, name)?;
        if kselftests.iter().any(|b| b.collection == c.name) {
            continue;
        }
        let k = kselftest
            .as_ref()
            .ok_or_else(|| ImageError::KselftestTree(format!("no kernel tree given for {t}")))?;
        kselftests
            .push(super::kselftest::build(c, &k.tree, arch, &k.cross_compile, &s.cache_dir).await?);
    }
    let mut perf = None;
    if let Some(t) = tests.iter().find(|t| t.starts_with(PERF_PREFIX)) {
        let k = kselftest
            .as_ref()
            .ok_or_else(|| ImageError::KselftestTree(format!("no kernel tree given for {t}")))?;
        perf = Some(
            super::perf::build(
                &k.tree,
                &k.source,
                arch,
                &k.cross_compile,
                k.jobs,
                &s.cache_dir,
            )
            .await?,
        );
    }
    let inputs = ImageInputs {
        workspace: s.guest_source.clone(),
        cache: s.cache_dir.clone(),
        tests: tests.to_vec(),
        kselftests,
        perf,
    };
    let programs = build_programs(&inputs, arch).await?;
    assemble(&inputs, arch, &programs)
}

/// Builds the static guest programs for `arch` with cargo (a no-op when nothing changed).
/// Returns the folder that holds them.
pub async fn build_programs(inputs: &ImageInputs, arch: Arch) -> Result<PathBuf, ImageError> {
    let target = arch.info().rust_target;
    let target_dir = inputs.workspace.join("target/guest");
    let mut cmd = tokio::process::Command::new("cargo");
    cmd.current_dir(&inputs.workspace)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            target,
            "-p",
            "lab-init",
            "-p",
            "lab-guest-tests",
            "-p",
            "lab-faults",
            "-p",
            "lab-thirdparty",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (status, err_text) = process::spawn("cargo", &mut cmd)?
        .wait_with_stderr()
        .await
        .map_err(io("cannot wait for cargo in", &inputs.workspace))?;
    if !status.success() {
        let tail: Vec<&str> = err_text.lines().rev().take(20).collect();
        return Err(ImageError::Cargo {
            arch,
            target: target.to_owned(),
            why: status.to_string(),
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(target_dir.join(target).join("release"))
}

/// Unpacks the guest .debs of `arch` once into the cache; returns the root folder.
fn unpack_debs(cache: &Path, arch: Arch) -> Result<(PathBuf, Vec<String>), ImageError> {
    let deb_dir = cache.join("debs").join(arch.info().debian_arch);
    let mut debs = Vec::new();
    for pkg in GUEST_DEBS {
        let found = std::fs::read_dir(&deb_dir)
            .ok()
            .and_then(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        let n = p
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb")
                    })
                    .max()
            })
            .ok_or_else(|| ImageError::MissingDeb {
                package: (*pkg).to_owned(),
                arch,
                dir: deb_dir.clone(),
            })?;
        debs.push(found);
    }
    let names: Vec<String> = debs
        .iter()
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let tag = hex::encode(Sha256::digest(names.join("\n").as_bytes()));
    let root = cache
        .join("guest")
        .join(format!("rootfs-{}-{}", arch, &tag[..12]));
    if root.join(".complete").is_file() {
        return Ok((root, names));
    }
    // Unpack into a folder of this process's own, then rename it into place: another lab
    // process (or a test running beside this one) may be unpacking the same packages, and
    // neither may see, or remove, the other's half-written tree.
    let parent = cache.join("guest");
    std::fs::create_dir_all(&parent).map_err(io("cannot create", &parent))?;
    let tmp_dir = tempfile::Builder::new()
        .prefix(&format!(".rootfs-{arch}-"))
        .tempdir_in(&parent)
        .map_err(io("cannot create a temporary folder in", &parent))?;
    let tmp = tmp_dir.path();
    for deb in &debs {
        let out = std::process::Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(tmp)
            .output()
            .map_err(|e| ImageError::Unpack {
                deb: deb.clone(),
                why: format!("cannot run dpkg-deb: {e}"),
            })?;
        if !out.status.success() {
            return Err(ImageError::Unpack {
                deb: deb.clone(),
                why: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
    }
    std::fs::write(tmp.join(".complete"), names.join("\n")).map_err(io("cannot write in", tmp))?;
    match std::fs::rename(tmp, &root) {
        Ok(()) => {
            // The folder now lives at `root`; nothing is left for the guard to remove.
            let _ = tmp_dir.keep();
        }
        // Another process finished first: its tree is as good as ours, which the guard
        // removes.
        Err(_) if root.join(".complete").is_file() => {}
        Err(e) => return Err(io("cannot move the unpacked packages to", &root)(e).into()),
    }
    Ok((root, names))
}

/// Shared libraries and the loader from the unpacked packages (gconv modules left out).
fn library_entries(rootfs: &Path, arch: Arch) -> Result<Vec<Entry>, ImageError> {
    let mut out = Vec::new();
    for dir in ["lib", "usr/lib", "lib64"] {
        let base = rootfs.join(dir);
        let mut stack = vec![base.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            let mut items: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
            items.sort();
            for p in items {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let rel = p
                    .strip_prefix(rootfs)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                let md = std::fs::symlink_metadata(&p).map_err(io("cannot stat", &p))?;
                if md.is_dir() {
                    if name != "gconv" && name != "audit" {
                        stack.push(p);
                    }
                    continue;
                }
                if !name.contains(".so") {
                    continue;
                }
                if md.file_type().is_symlink() {
                    let target = std::fs::read_link(&p).map_err(io("cannot read link", &p))?;
                    out.push(Entry::symlink(&rel, &target.to_string_lossy()));
                } else {
                    let data = std::fs::read(&p).map_err(io("cannot read", &p))?;
                    out.push(Entry::file(&rel, 0o755, data));
                }
            }
        }
    }
    let loader = arch.info().loader.trim_start_matches('/');
    if !out.iter().any(|e| e.path == loader) {
        return Err(ImageError::Unpack {
            deb: rootfs.to_owned(),
            why: format!("the loader {loader} is not in the unpacked libc6"),
        });
    }
    Ok(out)
}

/// Parent folders of every path, in order, as directory entries.
fn with_parents(entries: Vec<Entry>, fixed: &[(&str, u32)]) -> Vec<Entry> {
    let mut dirs: BTreeMap<String, u32> =
        fixed.iter().map(|(d, m)| ((*d).to_owned(), *m)).collect();
    for e in &entries {
        let mut p = Path::new(&e.path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.entry(d.to_string_lossy().into_owned())
                .or_insert(0o755);
            p = d.parent();
        }
    }
    let mut out: Vec<Entry> = dirs.into_iter().map(|(d, m)| Entry::dir(&d, m)).collect();
    out.extend(entries);
    out
}

/// The collection of test `test` (`kselftest:<collection>/<program>`; `name` is it without
/// the prefix), if lab knows that program.
fn kselftest_collection(
    test: &str,
    name: &str,
) -> Result<&'static super::kselftest::Collection, ImageError> {
    let unknown = || ImageError::UnknownTest {
        name: test.to_owned(),
        path: PathBuf::from(format!("tools/testing/selftests/…/{name}")),
    };
    let (collection, program) = name.split_once('/').ok_or_else(unknown)?;
    super::kselftest::COLLECTIONS
        .iter()
        .find(|c| c.name == collection && c.programs.contains(&program))
        .ok_or_else(unknown)
}

/// The built binary of test `test` among `inputs.kselftests`.
fn kselftest_program(inputs: &ImageInputs, test: &str, name: &str) -> Result<PathBuf, ImageError> {
    let c = kselftest_collection(test, name)?;
    let program = name.rsplit('/').next().unwrap_or(name);
    inputs
        .kselftests
        .iter()
        .find(|b| b.collection == c.name)
        .and_then(|b| b.program(program))
        .ok_or_else(|| {
            ImageError::KselftestTree(format!(
                "{test}: its collection was not built for this image"
            ))
        })
}

/// Assembles the base image for `arch` (cached by digest) from built programs.
pub fn assemble(
    inputs: &ImageInputs,
    arch: Arch,
    programs: &Path,
) -> Result<BaseImage, ImageError> {
    let (rootfs, debs) = unpack_debs(&inputs.cache, arch)?;
    let mut files = Vec::new();
    let mut digests = BTreeMap::new();
    let mut add_program =
        |from: &Path, to: &str, files: &mut Vec<Entry>| -> Result<(), ImageError> {
            let data = std::fs::read(from).map_err(io("cannot read guest program", from))?;
            digests.insert(to.to_owned(), hex::encode(Sha256::digest(&data)));
            files.push(Entry::file(to, 0o755, data));
            Ok(())
        };
    add_program(&programs.join("lab-init"), "sbin/init", &mut files)?;
    files.push(Entry::symlink("sbin/poweroff", "init"));
    let mut programs_wanted: Vec<&str> = inputs.tests.iter().map(String::as_str).collect();
    programs_wanted.extend(
        FAULT_PROGRAMS
            .iter()
            .copied()
            .filter(|f| !inputs.tests.iter().any(|t| t == f)),
    );
    for t in programs_wanted {
        if let Some(name) = t.strip_prefix(KSELFTEST_PREFIX) {
            let binary = kselftest_program(inputs, t, name)?;
            add_program(&binary, &format!("lab/kselftest/{name}"), &mut files)?;
            // The adapter, under the test's name: it runs the program it is named after.
            add_program(
                &programs.join("kselftest"),
                &format!("lab/bin/{t}"),
                &mut files,
            )?;
            tracing::debug!(test = t, binary = %binary.display(), "image: kselftest program");
            continue;
        }
        if let Some(bench) = t.strip_prefix(PERF_PREFIX) {
            if !super::perf::BENCHES.contains(&bench) {
                return Err(ImageError::UnknownTest {
                    name: t.to_owned(),
                    path: PathBuf::from(format!("perf bench futex {bench}")),
                });
            }
            let perf = inputs.perf.as_ref().ok_or_else(|| {
                ImageError::KselftestTree(format!("{t}: perf was not built for this image"))
            })?;
            if !files.iter().any(|e| e.path == "lab/perf/perf") {
                add_program(&perf.binary(), "lab/perf/perf", &mut files)?;
                add_program(&programs.join("perf"), "lab/perf/adapter", &mut files)?;
            }
            // The adapter, under the test's name (a link: one copy for every benchmark): it
            // runs the benchmark it is named after.
            files.push(Entry::symlink(&format!("lab/bin/{t}"), "/lab/perf/adapter"));
            continue;
        }
        if let Some(program) = t.strip_prefix(RT_PREFIX) {
            if !RT_PROGRAMS.contains(&program) {
                return Err(ImageError::UnknownTest {
                    name: t.to_owned(),
                    path: PathBuf::from(format!("usr/bin/{program}")),
                });
            }
            let binary = rootfs.join("usr/bin").join(program);
            add_program(&binary, &format!("usr/bin/{program}"), &mut files)?;
            // The adapter, under the test's name: it runs the program it is named after.
            add_program(&programs.join("rt"), &format!("lab/bin/{t}"), &mut files)?;
            continue;
        }
        let p = programs.join(t);
        if !p.is_file() {
            return Err(ImageError::UnknownTest {
                name: t.to_owned(),
                path: p,
            });
        }
        add_program(&p, &format!("lab/bin/{t}"), &mut files)?;
    }
    let dropbear = rootfs.join("usr/sbin/dropbear");
    files.push(Entry::file(
        "usr/sbin/dropbear",
        0o755,
        std::fs::read(&dropbear).map_err(io("cannot read", &dropbear))?,
    ));
    let busybox = rootfs.join("bin/busybox");
    files.push(Entry::file(
        "bin/busybox",
        0o755,
        std::fs::read(&busybox).map_err(io("cannot read", &busybox))?,
    ));
    for applet in [
        "sh", "cat", "ls", "echo", "mkdir", "rm", "sleep", "dmesg", "uname", "ps", "kill", "grep",
        "sync", // and what a board's shell needs to unpack an image and run in it (run/board.rs)
        "cpio", "chroot", "mount", "touch",
    ] {
        files.push(Entry::symlink(&format!("bin/{applet}"), "busybox"));
    }
    files.extend(library_entries(&rootfs, arch)?);
    files.push(Entry::file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
    ));
    files.push(Entry::file("etc/group", 0o644, b"root:x:0:\n".to_vec()));
    files.push(Entry::file("etc/shells", 0o644, b"/bin/sh\n".to_vec()));
    files.push(Entry::file("etc/hostname", 0o644, b"lab-guest\n".to_vec()));
    let mut entries = with_parents(
        files,
        &[
            ("dev", 0o755),
            ("proc", 0o555),
            ("sys", 0o555),
            ("tmp", 0o1777),
            ("run", 0o755),
            ("root", 0o700),
            ("root/.ssh", 0o700),
            ("etc/dropbear", 0o755),
        ],
    );
    entries.insert(0, Entry::char_dev("dev/console", 0o600, 5, 1));
    entries.insert(0, Entry::dir("dev", 0o755));
    entries.dedup_by(|a, b| a.path == b.path);
    let mut data = Vec::new();
    newc::write(&mut data, &entries).map_err(io("cannot write image for", &rootfs))?;
    let digest = hex::encode(Sha256::digest(&data));
    let dir = inputs.cache.join("images");
    std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
    let path = dir.join(format!("{arch}-{}.cpio", &digest[..16]));
    let manifest = ImageManifest {
        format_version: 1,
        arch,
        digest: digest.clone(),
        programs: digests,
        debs,
        size: data.len() as u64,
    };
    if !path.is_file() {
        // Named by content and written atomically through a temporary file of this
        // process's own, so two processes writing the same image cannot interleave.
        let json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        write_atomic(&path.with_extension("json"), &json)?;
        write_atomic(&path, &data)?;
    }
    Ok(BaseImage { path, manifest })
}

/// The SSH keys of one run.
#[derive(Debug, Clone)]
pub struct RunKeys {
    /// Client private key (PEM), for the host side.
    pub client_key: PathBuf,
    /// The host key's public blob, to check the guest is the one we made.
    pub host_public: String,
    /// The per-run archive to append to the base image.
    pub archive: Vec<u8>,
}

/// The base image of `arch` with `digest` in the cache `cache`, if it is there.
pub fn cached(cache: &Path, arch: Arch, digest: &str) -> Option<BaseImage> {
    let short = digest.get(..16)?;
    let path = cache.join("images").join(format!("{arch}-{short}.cpio"));
    let json = std::fs::read(path.with_extension("json")).ok()?;
    let manifest: ImageManifest = serde_json::from_slice(&json).ok()?;
    (manifest.digest == digest && path.is_file()).then_some(BaseImage { path, manifest })
}

/// Makes a fresh host key and client key in `dir` and the per-run archive holding them.
///
/// Everything secret stays owner-only: the folder is 0700 and the two private keys are 0600
/// whatever the umask or the tools chose, and [`write_initramfs`] writes the image that holds
/// the host key 0600 as well.
pub fn run_keys(dir: &Path) -> Result<RunKeys, ImageError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io("cannot make owner-only", dir))?;
    let client = dir.join("client_key");
    let host = dir.join("host_key");
    let _ = std::fs::remove_file(&client);
    let _ = std::fs::remove_file(&host);
    let out = std::process::Command::new("ssh-keygen")
        .args([
            "-q", "-t", "ecdsa", "-b", "256", "-m", "PEM", "-N", "", "-C", "lab", "-f",
        ])
        .arg(&client)
        .output()
        .map_err(|e| ImageError::Keygen {
            tool: "ssh-keygen",
            why: format!("{e}: install openssh-client (`make setup` does)"),
        })?;
    if !out.status.success() {
        return Err(ImageError::Keygen {
            tool: "ssh-keygen",
            why: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let out = std::process::Command::new("dropbearkey")
        .args(["-t", "ecdsa", "-s", "256", "-f"])
        .arg(&host)
        .output()
        .map_err(|e| ImageError::Keygen {
            tool: "dropbearkey",
            why: format!("{e}: install dropbear-bin (`make setup` does)"),
        })?;
    if !out.status.success() {
        return Err(ImageError::Keygen {
            tool: "dropbearkey",
            why: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let host_public = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("ecdsa-"))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_owned())
        .unwrap_or_default();
    for key in [&client, &host] {
        std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600))
            .map_err(io("cannot make owner-only", key))?;
    }
    let pubkey = std::fs::read(client.with_extension("pub")).map_err(io("cannot read", &client))?;
    let host_data = std::fs::read(&host).map_err(io("cannot read", &host))?;
    let mut archive = Vec::new();
    newc::write(
        &mut archive,
        &[
            Entry::file("etc/dropbear/host_key", 0o600, host_data),
            Entry::file("root/.ssh/authorized_keys", 0o600, pubkey),
        ],
    )
    .map_err(io("cannot write key archive in", dir))?;
    Ok(RunKeys {
        client_key: client,
        host_public,
        archive,
    })
}

/// Writes the initramfs of one run: the base image followed by the run's key archive.
pub fn write_initramfs(base: &BaseImage, keys: &RunKeys, out: &Path) -> Result<(), ImageError> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut data = std::fs::read(&base.path).map_err(io("cannot read", &base.path))?;
    data.extend_from_slice(&keys.archive);
    // It holds the guest's host key: owner-only from its first byte (a file left from an
    // earlier attempt keeps its mode on open, so the mode is set again).
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)
        .map_err(io("cannot write", out))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io("cannot make owner-only", out))?;
    Ok(f.write_all(&data).map_err(io("cannot write", out))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first_and_fixed_modes_win() {
        let e = with_parents(
            vec![
                Entry::file("lab/bin/t", 0o755, vec![1]),
                Entry::file("root/.ssh/x", 0o600, vec![]),
            ],
            &[("root", 0o700)],
        );
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "lab",
                "lab/bin",
                "root",
                "root/.ssh",
                "lab/bin/t",
                "root/.ssh/x"
            ]
        );
        assert_eq!(e[2].mode, 0o700);
    }

    #[test]
    fn run_keys_are_fresh_each_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (Some(_), Some(_)) = (
            crate::process::which("ssh-keygen"),
            crate::process::which("dropbearkey"),
        ) else {
            panic!("ssh-keygen and dropbearkey are installed by `make setup`");
        };
        let a = run_keys(&dir.path().join("a")).expect("keys");
        let b = run_keys(&dir.path().join("b")).expect("keys");
        assert_ne!(a.host_public, b.host_public);
        assert!(!a.host_public.is_empty());
        assert!(std::fs::read_to_string(&a.client_key)
            .expect("read")
            .contains("BEGIN EC PRIVATE KEY"));
        assert_eq!(a.archive.len() % 4, 0);
    }

    #[test]
    fn keys_and_the_initramfs_that_carries_them_are_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        let keys_dir = dir.path().join("keys");
        // A folder and an image left by an earlier attempt, world-readable.
        std::fs::create_dir_all(&keys_dir).expect("mkdir");
        std::fs::set_permissions(&keys_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let keys = run_keys(&keys_dir).expect("keys");
        assert_eq!(mode(&keys_dir), 0o700, "the keys folder");
        assert_eq!(mode(&keys.client_key), 0o600, "the client key");
        assert_eq!(mode(&keys_dir.join("host_key")), 0o600, "the host key");
        let base_path = dir.path().join("base.cpio");
        std::fs::write(&base_path, b"base").expect("write");
        let base = BaseImage {
            path: base_path,
            manifest: ImageManifest {
                format_version: 1,
                arch: Arch::X86_64,
                digest: String::new(),
                programs: BTreeMap::new(),
                debs: Vec::new(),
                size: 4,
            },
        };
        let out = dir.path().join("initramfs.cpio");
        std::fs::write(&out, b"old").expect("write");
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_initramfs(&base, &keys, &out).expect("initramfs");
        assert_eq!(mode(&out), 0o600, "the initramfs holds the host key");
        let data = std::fs::read(&out).expect("read");
        assert!(data.starts_with(b"base") && data.ends_with(&keys.archive));
    }
}
