//! The build pipeline: unpack, patch, config, compile, link, store.
//!
//! A build first works out its cache key without running make: the final `.config` of a
//! (source, patches, fragments, toolchain) combination is remembered from the last time it
//! was made. So a cache hit costs a few file reads and two `--version` calls. On a miss, the
//! patches are applied in memory (nothing touches disk unless every patch applies), the
//! shared work tree is synced, and make runs out of tree in an `O=` folder per (source
//! family, arch, final config), so switching patch variants recompiles only what changed.

use crate::io_error::{io, IoError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::cache::{
    Artifact, Cache, CacheError, KeyInputs, Manifest, PatchRecord, MANIFEST_VERSION,
};
use super::kconfig::{self, KconfigError, KconfigIndex};
use super::patch::{self, Patch, PatchError, PatchSet};
use super::source::{KernelDef, Source, SourceError};
use super::toolchain::{Toolchain, ToolchainError};
use crate::arch::Arch;
use crate::process;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Toolchain(#[from] ToolchainError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Patch(#[from] PatchError),
    #[error(transparent)]
    Kconfig(#[from] KconfigError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Spawn(#[from] process::SpawnError),
    #[error(
        "make {target} for {arch} failed ({status}); last error lines:\n{tail}\nfull log: {log}"
    )]
    Make {
        arch: Arch,
        target: String,
        status: String,
        tail: String,
        log: PathBuf,
    },
    #[error(transparent)]
    Io(#[from] IoError),
    /// A build handed to a cluster did not leave its kernel in the artifact store.
    #[error("the build job {job} ({engine}) left no kernel in the cache: {why}")]
    Job {
        engine: String,
        job: String,
        why: String,
    },
}

/// What to build. It serializes, so that a build can be handed to a worker on another host
/// (`lab worker build`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BuildRequest {
    pub arch: Arch,
    pub kernel: KernelDef,
    /// Patch sets, stacked in order.
    pub patch_sets: Vec<PatchSet>,
    /// `make <base>`: tinyconfig, defconfig...
    pub config_base: String,
    pub config_dir: PathBuf,
    /// Fragment names, merged in order (the arch fragment included by the caller).
    pub fragments: Vec<String>,
    pub cross_compile: String,
    pub jobs: u32,
    pub ccache: bool,
}

impl BuildRequest {
    /// One build request with the lab's configs: the base, its fragments, the arch fragment,
    /// and `extra` fragments on top.
    pub fn with_settings(
        s: &crate::config::Settings,
        arch: Arch,
        kernel: KernelDef,
        patch_sets: Vec<PatchSet>,
        extra: &[String],
    ) -> BuildRequest {
        let mut fragments = s.fragments.clone();
        if s.arch_fragment {
            fragments.push(arch.name().to_owned());
        }
        fragments.extend(extra.iter().cloned());
        BuildRequest {
            arch,
            kernel,
            patch_sets,
            config_base: s.config_base.clone(),
            config_dir: s.config_dir.clone(),
            fragments,
            cross_compile: s.cross_compile.get(&arch).cloned().unwrap_or_default(),
            jobs: s.make_jobs(),
            ccache: s.ccache,
        }
    }

    /// One request per arch: the kernel definition `kernel` (lab.toml's when `None`) with the
    /// patch sets `patches` (names or paths; `base` and empty names are no set) and the extra
    /// fragments `config`.
    pub fn for_arches(
        s: &crate::config::Settings,
        arches: &[Arch],
        kernel: Option<&str>,
        patches: &[String],
        config: &[String],
    ) -> Result<Vec<BuildRequest>, BuildError> {
        let kernel = KernelDef::find(s, kernel.unwrap_or(&s.kernel))?;
        let mut sets = Vec::new();
        for name in patches
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty() && *n != "base")
        {
            sets.push(crate::kernel::patch::load_set(
                name,
                &s.patches_dir,
                &s.root,
            )?);
        }
        Ok(arches
            .iter()
            .map(|&arch| BuildRequest::with_settings(s, arch, kernel.clone(), sets.clone(), config))
            .collect())
    }
}

/// Progress of a build, for whoever shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum BuildEvent {
    Stage(&'static str),
    /// Compile steps done, and the expected total if known.
    Compile {
        done: u64,
        expected: Option<u64>,
    },
    Link,
    /// One line of make output that mentions an error or warning.
    Diagnostic(String),
}

/// The outcome of [`build`].
#[derive(Debug, Clone)]
pub struct Built {
    pub artifact: Artifact,
    pub cached: bool,
    /// Source files the sync rewrote (what make had to look at again).
    pub touched: Vec<String>,
    /// Compile steps make ran.
    pub compiled: u64,
    pub seconds: f64,
}

impl Built {
    /// A kernel found in the cache, looked up since `started`.
    pub fn cached(artifact: Artifact, started: Instant) -> Built {
        Built {
            artifact,
            cached: true,
            touched: Vec::new(),
            compiled: 0,
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// Fixed make variables: reproducible builds, whoever and whenever builds them.
pub fn make_vars(arch: Arch, cross_compile: &str) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("ARCH".into(), arch.info().kernel_arch.into());
    v.insert("CROSS_COMPILE".into(), cross_compile.into());
    v.insert(
        "KBUILD_BUILD_TIMESTAMP".into(),
        "Thu Jan  1 00:00:00 UTC 1970".into(),
    );
    v.insert("KBUILD_BUILD_USER".into(), "lab".into());
    v.insert("KBUILD_BUILD_HOST".into(), "lab".into());
    v.insert("KBUILD_BUILD_VERSION".into(), "1".into());
    v
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Everything a build needs, prepared without touching the work tree.
struct Plan {
    source: Source,
    toolchain: Toolchain,
    patches: Vec<(String, Patch)>,
    request: kconfig::Request,
    fragments: Vec<(String, String)>,
    vars: BTreeMap<String, String>,
    targets: Vec<String>,
    config_memo: PathBuf,
    cache: Cache,
}

impl Plan {
    fn key(&self, config_sha: &str) -> String {
        let shas: Vec<String> = self.patches.iter().map(|(_, p)| p.sha256()).collect();
        KeyInputs {
            source_kind: &self.source.id.kind,
            source_id: &self.source.id.id,
            arch: self.arch(),
            patches: shas.iter().map(String::as_str).collect(),
            config_sha256: config_sha,
            gcc_version: &self.toolchain.gcc_version,
            ld_version: &self.toolchain.ld_version,
            cross_compile: &self.toolchain.cross_compile,
            make_vars: &self.vars,
            targets: &self.targets,
        }
        .key()
    }

    fn arch(&self) -> Arch {
        self.vars
            .get("ARCH")
            .and_then(|a| a.parse().ok())
            .unwrap_or(Arch::X86_64)
    }
}

fn plan(req: &BuildRequest, cache_dir: &Path) -> Result<Plan, BuildError> {
    let toolchain = Toolchain::detect(req.arch, &req.cross_compile, req.ccache)?;
    let source = Source::resolve(&req.kernel, cache_dir)?;
    let mut frags = Vec::new();
    let mut fragment_hashes = Vec::new();
    for name in &req.fragments {
        let (f, text) = kconfig::load_fragment(&req.config_dir, name)?;
        fragment_hashes.push((f.name.clone(), sha256_hex(text.as_bytes())));
        frags.push(f);
    }
    let request = kconfig::merge(&frags);
    let patches: Vec<(String, Patch)> = req
        .patch_sets
        .iter()
        .flat_map(|s| s.patches.iter().map(move |p| (s.name.clone(), p.clone())))
        .collect();
    let vars = make_vars(req.arch, &req.cross_compile);
    let targets = vec![
        req.arch.info().image_target.to_owned(),
        "vmlinux".to_owned(),
    ];
    // The config memo key: everything that decides the final .config.
    let memo_input = serde_json::json!({
        "source": [&source.id.kind, &source.id.id],
        "patches": patches.iter().map(|(_, p)| p.sha256()).collect::<Vec<_>>(),
        "base": &req.config_base,
        "fragments": &fragment_hashes,
        "gcc": &toolchain.gcc_version,
        "ld": &toolchain.ld_version,
        "vars": &vars,
    });
    let memo_key = sha256_hex(memo_input.to_string().as_bytes());
    Ok(Plan {
        config_memo: cache_dir
            .join("memo/config")
            .join(format!("{memo_key}.config")),
        source,
        toolchain,
        patches,
        request,
        fragments: fragment_hashes,
        vars,
        targets,
        cache: Cache::new(cache_dir),
    })
}

/// Only the cache lookup: the artifact if this exact kernel was built before.
pub fn lookup(req: &BuildRequest, cache_dir: &Path) -> Result<Option<Artifact>, BuildError> {
    let plan = plan(req, cache_dir)?;
    Ok(std::fs::read(&plan.config_memo)
        .ok()
        .and_then(|cfg| plan.cache.get(&plan.key(&sha256_hex(&cfg)))))
}

/// Builds the kernel, or returns it from the cache.
pub async fn build(
    req: &BuildRequest,
    cache_dir: &Path,
    report: &(dyn Fn(BuildEvent) + Send + Sync),
) -> Result<Built, BuildError> {
    let started = Instant::now();
    let plan = plan(req, cache_dir)?;
    tracing::info!(
        arch = %req.arch,
        source = %plan.source.id.detail,
        patches = plan.patches.len(),
        fragments = %req.fragments.join(","),
        "build: planned"
    );
    if let Ok(cfg) = std::fs::read(&plan.config_memo) {
        if let Some(artifact) = plan.cache.get(&plan.key(&sha256_hex(&cfg))) {
            tracing::info!(arch = %req.arch, key = %artifact.manifest.key, "build: cache hit (config known)");
            return Ok(Built::cached(artifact, started));
        }
    }

    report(BuildEvent::Stage("unpack"));
    let reader = plan.source.reader()?;
    report(BuildEvent::Stage("patch"));
    let refs: Vec<&Patch> = plan.patches.iter().map(|(_, p)| p).collect();
    let overlay = patch::apply(reader.as_ref(), &refs)?;

    let work = plan.source.work_tree()?;
    let lock = {
        let w = work.clone();
        tokio::task::spawn_blocking(move || w.lock())
            .await
            .map_err(|e| {
                BuildError::Io(IoError {
                    what: "lock task failed for",
                    path: work.dir.clone(),
                    source: std::io::Error::other(e),
                })
            })??
    };
    let touched = work.sync(&plan.source, &overlay, &lock)?;
    tracing::debug!(arch = %req.arch, files = touched.len(), tree = %work.src.display(), "build: work tree synced");

    report(BuildEvent::Stage("config"));
    let final_config = match std::fs::read_to_string(&plan.config_memo) {
        Ok(c) => c,
        Err(_) => {
            let c = make_config(req, &plan, &work.src, report).await?;
            write_file(&plan.config_memo, c.as_bytes())?;
            c
        }
    };
    let config_sha = sha256_hex(final_config.as_bytes());
    let key = plan.key(&config_sha);
    if let Some(artifact) = plan.cache.get(&key) {
        tracing::info!(arch = %req.arch, key = %artifact.manifest.key, "build: cache hit");
        return Ok(Built {
            artifact,
            cached: true,
            touched,
            compiled: 0,
            seconds: started.elapsed().as_secs_f64(),
        });
    }

    let obj = object_tree(&work.src, &format!("{}-{}", req.arch, &config_sha[..12]));
    std::fs::create_dir_all(&obj).map_err(io("cannot create", &obj))?;
    remove_legacy_object_trees(cache_dir);
    tracing::info!(arch = %req.arch, obj = %obj.display(), jobs = req.jobs, "build: running make");
    let dot_config = obj.join(".config");
    if std::fs::read_to_string(&dot_config).ok().as_deref() != Some(final_config.as_str()) {
        write_file(&dot_config, final_config.as_bytes())?;
    }
    let log = obj.join("build.log");
    let expected_path = obj.join(".lab-compile-count");
    let expected = std::fs::read_to_string(&expected_path)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let fresh_tree = !obj.join("vmlinux").exists();
    report(BuildEvent::Compile {
        done: 0,
        expected: if fresh_tree {
            expected.or(Some(default_expected(req.arch)))
        } else {
            None
        },
    });
    let compiled = run_make(
        req,
        &plan,
        &work.src,
        &obj,
        &plan.targets,
        &log,
        true,
        fresh_tree.then_some(expected).flatten(),
        report,
    )
    .await?;
    if fresh_tree {
        let _ = std::fs::write(&expected_path, compiled.to_string());
    }
    drop(lock);

    let info = req.arch.info();
    let release = std::fs::read_to_string(obj.join("include/config/kernel.release"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let manifest = Manifest {
        format_version: MANIFEST_VERSION,
        key: key.clone(),
        arch: req.arch,
        source: plan.source.id.clone(),
        patches: plan
            .patches
            .iter()
            .map(|(set, p)| PatchRecord {
                set: set.clone(),
                label: p.label.clone(),
                subject: p.subject.clone(),
                sha256: p.sha256(),
            })
            .collect(),
        config_base: req.config_base.clone(),
        fragments: plan.fragments.clone(),
        config_sha256: config_sha,
        toolchain: plan.toolchain.clone(),
        make_vars: plan.vars.clone(),
        kernel_release: release,
        image: Path::new(info.image_path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        build_seconds: started.elapsed().as_secs_f64(),
        files: std::collections::BTreeMap::new(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        lab_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let image = obj.join(info.image_path);
    let files: Vec<(&str, PathBuf)> = vec![
        (manifest.image.as_str(), image),
        ("vmlinux", obj.join("vmlinux")),
        ("config", dot_config),
        ("System.map", obj.join("System.map")),
        ("build.log", log),
    ];
    let refs: Vec<(&str, &Path)> = files.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let artifact = plan.cache.put(&manifest, &refs)?;
    Ok(Built {
        artifact,
        cached: false,
        touched,
        compiled,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Rough number of compile steps of a cold tinyconfig + lab fragments build, used until the
/// first build of a tree records the real count.
fn default_expected(arch: Arch) -> u64 {
    // Counted on cold builds of Linux 6.12.117 (2026-12-04): 957 and 812 steps.
    match arch {
        Arch::X86_64 => 960,
        Arch::Arm64 => 810,
    }
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), BuildError> {
    Ok(crate::io_error::write_atomic(path, data)?)
}

/// The `O=` folder `name` of the work tree `src`: a direct child of the source tree, so that
/// kbuild names every source and include path relative to it (`srctree := ..`, `objtree :=
/// .`). The compiler's command lines and preprocessed output are then the same in every work
/// tree, whatever its place on disk, and ccache hits across source families: a git
/// bisection's kernels reuse the tarball's objects for every file they share. (With the
/// folder elsewhere, kbuild passes absolute `-I`/source paths and every family compiles cold.)
/// Dot-named: the kernel's `.gitignore` (`.*`) and `git clean` leave it alone.
pub fn object_tree(src: &Path, name: &str) -> PathBuf {
    src.join(format!("{OBJECT_TREE_PREFIX}{name}"))
}

/// Before object trees moved into the work trees, they were `<cache>/build/*`: nothing reads
/// them any more, so the first build that runs make removes them.
fn remove_legacy_object_trees(cache_dir: &Path) {
    let legacy = cache_dir.join("build");
    if legacy.is_dir() {
        match std::fs::remove_dir_all(&legacy) {
            Ok(()) => tracing::info!(
                dir = %legacy.display(),
                "removed the object trees of an older lab (they now live in the work trees)"
            ),
            Err(e) => tracing::debug!(dir = %legacy.display(), "remove old object trees: {e}"),
        }
    }
}

/// How [`object_tree`] folders begin.
pub const OBJECT_TREE_PREFIX: &str = ".lab-obj-";

/// Makes the final .config in a scratch `O=` tree: `make <base>`, merge the fragments,
/// `make olddefconfig`, then verify every requested option.
async fn make_config(
    req: &BuildRequest,
    plan: &Plan,
    src: &Path,
    report: &(dyn Fn(BuildEvent) + Send + Sync),
) -> Result<String, BuildError> {
    let scratch = object_tree(src, &format!("{}-kconfig", req.arch));
    std::fs::create_dir_all(&scratch).map_err(io("cannot create", &scratch))?;
    let log = scratch.join("config.log");
    let _ = std::fs::remove_file(&log);
    run_make(
        req,
        plan,
        src,
        &scratch,
        std::slice::from_ref(&req.config_base),
        &log,
        false,
        None,
        report,
    )
    .await?;
    let base_path = scratch.join(".config");
    let base = std::fs::read_to_string(&base_path).map_err(io("cannot read", &base_path))?;
    write_file(
        &base_path,
        kconfig::apply_to_base(&base, &plan.request).as_bytes(),
    )?;
    run_make(
        req,
        plan,
        src,
        &scratch,
        &["olddefconfig".to_owned()],
        &log,
        false,
        None,
        report,
    )
    .await?;
    let final_config =
        std::fs::read_to_string(&base_path).map_err(io("cannot read", &base_path))?;
    for o in &plan.request.overrides {
        tracing::warn!("{o}");
    }
    let srcarch = match req.arch {
        Arch::X86_64 => "x86",
        Arch::Arm64 => "arm64",
    };
    let index = std::cell::OnceCell::new();
    kconfig::verify(&plan.request, &final_config, |opt, cfg| {
        index
            .get_or_init(|| KconfigIndex::scan(src, srcarch))
            .explain(opt, cfg)
    })?;
    Ok(final_config)
}

/// Runs make in `obj`, output appended to `log`. Returns the number of compile steps seen.
#[expect(
    clippy::too_many_arguments,
    reason = "the plan, the log and the progress sink are all distinct inputs of one make run"
)]
async fn run_make(
    req: &BuildRequest,
    plan: &Plan,
    src: &Path,
    obj: &Path,
    targets: &[String],
    log: &Path,
    parallel: bool,
    expected: Option<u64>,
    report: &(dyn Fn(BuildEvent) + Send + Sync),
) -> Result<u64, BuildError> {
    let mut cmd = tokio::process::Command::new("make");
    cmd.arg("-C").arg(src).arg(format!("O={}", obj.display()));
    for (k, v) in &plan.vars {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.arg(format!("CC={}", plan.toolchain.cc()));
    if parallel {
        cmd.arg(format!("-j{}", req.jobs.max(1)));
    }
    cmd.args(targets)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut logf = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .await
        .map_err(io("cannot open build log", log))?;
    let header = format!("### lab: make {} in {}\n", targets.join(" "), obj.display());
    let _ = logf.write_all(header.as_bytes()).await;
    let mut child = process::spawn("make", &mut cmd)?;
    let (Some(out), Some(err)) = (child.stdout(), child.stderr()) else {
        return Err(io("no output pipes from make for", obj)(std::io::Error::other("pipe")).into());
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(256);
    for stream in [
        Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(err),
    ] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if tx.send(l).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut compiled = 0u64;
    let mut diagnostics: Vec<String> = Vec::new();
    while let Some(line) = rx.recv().await {
        let _ = logf.write_all(line.as_bytes()).await;
        let _ = logf.write_all(b"\n").await;
        let t = line.trim_start();
        if line.starts_with("  CC") || line.starts_with("  AS ") {
            compiled += 1;
            report(BuildEvent::Compile {
                done: compiled,
                expected,
            });
        } else if (t.starts_with("LD ") && line.contains("vmlinux")) || t.starts_with("OBJCOPY") {
            report(BuildEvent::Link);
        }
        if is_diagnostic(&line) {
            report(BuildEvent::Diagnostic(line.clone()));
            diagnostics.push(line);
            if diagnostics.len() > 400 {
                diagnostics.drain(..200);
            }
        }
    }
    let status = child
        .wait()
        .await
        .map_err(io("cannot wait for make in", obj))?;
    let _ = logf.flush().await;
    if !status.success() {
        // The compiler's own error lines first (they say what), then make's (they say where).
        let mut errors: Vec<&String> = diagnostics
            .iter()
            .filter(|l| l.contains("error:"))
            .take(10)
            .collect();
        errors.extend(
            diagnostics
                .iter()
                .filter(|l| !l.contains("error:") && l.contains("Error"))
                .take(5),
        );
        let tail: Vec<String> = if errors.is_empty() {
            tail_lines(log, 15)
        } else {
            errors
                .iter()
                .rev()
                .take(15)
                .rev()
                .map(|s| s.to_string())
                .collect()
        };
        return Err(BuildError::Make {
            arch: req.arch,
            target: targets.join(" "),
            status: status.to_string(),
            tail: tail
                .iter()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
            log: log.to_owned(),
        });
    }
    Ok(compiled)
}

fn is_diagnostic(line: &str) -> bool {
    line.contains(": error:")
        || line.contains(": fatal error:")
        || line.contains(": warning:")
        || line.contains("*** ")
        || line.starts_with("make") && line.contains("Error")
}

fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_trees_are_hidden_direct_children_of_the_work_tree() {
        // kbuild uses relative paths (srctree := ..) only when O= is a direct child of the
        // source tree; a dot name keeps it out of git's way (.gitignore's `.*`).
        let src = Path::new("/cache/work/git-1234/src");
        let obj = object_tree(src, "x86_64-9b2ef72ad685");
        assert_eq!(obj.parent(), Some(src));
        let name = obj.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(name.starts_with('.') && name.starts_with(OBJECT_TREE_PREFIX));
        let legacy = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(legacy.path().join("build/tar-1-x86_64-abc")).expect("mkdir");
        remove_legacy_object_trees(legacy.path());
        assert!(!legacy.path().join("build").exists());
    }

    #[test]
    fn make_vars_pin_everything_that_leaks_into_the_image() {
        let v = make_vars(Arch::Arm64, "aarch64-linux-gnu-");
        assert_eq!(v["ARCH"], "arm64");
        assert_eq!(v["CROSS_COMPILE"], "aarch64-linux-gnu-");
        for k in [
            "KBUILD_BUILD_TIMESTAMP",
            "KBUILD_BUILD_USER",
            "KBUILD_BUILD_HOST",
            "KBUILD_BUILD_VERSION",
        ] {
            assert!(
                v.contains_key(k),
                "{k} must be fixed for reproducible builds"
            );
        }
    }

    #[test]
    fn diagnostics_are_recognised() {
        assert!(is_diagnostic(
            "kernel/futex/waitwake.c:12:5: error: expected ';'"
        ));
        assert!(is_diagnostic("fs/pipe.c:1:1: warning: unused variable"));
        assert!(is_diagnostic(
            "make[2]: *** [scripts/Makefile.build:229: kernel/fork.o] Error 1"
        ));
        assert!(!is_diagnostic("  CC      kernel/fork.o"));
    }
}
