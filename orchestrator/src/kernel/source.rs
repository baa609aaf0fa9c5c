//! Kernel sources: definitions in `kernels/`, their pinned identity, and the work tree that
//! builds use.
//!
//! Two kinds of source:
//! - a **tarball** (Debian's linux-source-6.12), verified against a recorded sha256 and
//!   unpacked once into the cache as a pristine tree;
//! - a local **git** repository and a ref, resolved to a commit id; lab works in its own git
//!   worktree in the cache and never touches the user's checkout.
//!
//! Every build of one source family shares one work tree, so the `O=` build trees see the
//! same source paths and switching patch variants rebuilds only the files that changed. A
//! sync writes only files whose content differs from what is on disk, which keeps mtimes,
//! and so make's view of what changed, honest.

use crate::io_error::{io, write_atomic, IoError};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::patch::{Overlay, TreeReader};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("kernel definition {name:?} not found: looked for {path} (definitions live in the kernels dir of lab.toml)")]
    DefinitionMissing { name: String, path: PathBuf },
    #[error("invalid kernel definition {path}:\n{message}")]
    Definition { path: PathBuf, message: String },
    #[error(
        "kernel source tarball {path} is missing: install it with `make setup` (package {package})"
    )]
    TarballMissing { path: PathBuf, package: String },
    #[error("kernel source tarball {path} has sha256 {got}, but {definition} pins {want}: the file changed or is another version; reinstall the pinned package ({package}) or update the definition")]
    TarballHash {
        path: PathBuf,
        got: String,
        want: String,
        definition: PathBuf,
        package: String,
    },
    #[error("cannot unpack {path}: {why}")]
    Unpack { path: PathBuf, why: String },
    #[error(transparent)]
    Git(#[from] super::git::GitError),
    #[error(transparent)]
    Io(#[from] IoError),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct DefinitionFile {
    format_version: u32,
    #[serde(default)]
    description: String,
    tarball: Option<TarballDef>,
    git: Option<GitDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TarballDef {
    path: PathBuf,
    sha256: String,
    top_dir: String,
    #[serde(default)]
    package: String,
    #[serde(default)]
    version: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GitDef {
    repo: PathBuf,
    #[serde(rename = "ref")]
    reference: String,
}

/// A kernel definition, read and checked, not yet resolved.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KernelDef {
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    pub kind: DefKind,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum DefKind {
    Tarball {
        path: PathBuf,
        sha256: String,
        top_dir: String,
        package: String,
        version: String,
    },
    Git {
        repo: PathBuf,
        reference: String,
    },
}

impl KernelDef {
    /// Loads `name` from `kernels_dir` (`<name>.toml`), or from a path to a `.toml` file.
    pub fn load(name: &str, kernels_dir: &Path) -> Result<KernelDef, SourceError> {
        let path = if name.ends_with(".toml") || name.contains('/') {
            PathBuf::from(name)
        } else {
            kernels_dir.join(format!("{name}.toml"))
        };
        if !path.is_file() {
            return Err(SourceError::DefinitionMissing {
                name: name.to_owned(),
                path,
            });
        }
        let text = std::fs::read_to_string(&path).map_err(io("cannot read", &path))?;
        KernelDef::parse(name, &path, &text)
    }

    pub fn parse(name: &str, path: &Path, text: &str) -> Result<KernelDef, SourceError> {
        let bad = |message: String| SourceError::Definition {
            path: path.to_owned(),
            message,
        };
        let file: DefinitionFile =
            toml::from_str(text).map_err(|e| bad(e.to_string().trim_end().to_owned()))?;
        if file.format_version != 1 {
            return Err(bad(format!(
                "format-version {} is not supported (this lab reads 1)",
                file.format_version
            )));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let kind = match (file.tarball, file.git) {
            (Some(t), None) => {
                if t.sha256.len() != 64 || !t.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(bad(format!(
                        "tarball.sha256 {:?} is not a sha256 hex digest",
                        t.sha256
                    )));
                }
                // The folder the tarball unpacks to, joined onto lab's cache: a path of its
                // own (`/`, `..`, `a/b`, empty) would make some other folder the kernel tree.
                let mut parts = Path::new(&t.top_dir).components();
                if !matches!(
                    (parts.next(), parts.next()),
                    (Some(std::path::Component::Normal(_)), None)
                ) || t.top_dir.contains('/')
                {
                    return Err(bad(format!(
                        "tarball.top-dir {:?} is not a folder name: name the one folder the tarball unpacks to, such as \"linux-source-6.12\"",
                        t.top_dir
                    )));
                }
                DefKind::Tarball {
                    path: if t.path.is_absolute() {
                        t.path
                    } else {
                        dir.join(t.path)
                    },
                    sha256: t.sha256.to_ascii_lowercase(),
                    top_dir: t.top_dir,
                    package: t.package,
                    version: t.version,
                }
            }
            (None, Some(g)) => DefKind::Git {
                repo: if g.repo.is_absolute() {
                    g.repo
                } else {
                    dir.join(g.repo)
                },
                reference: g.reference,
            },
            _ => {
                return Err(bad(
                    "a definition has exactly one of [tarball] or [git]".into()
                ))
            }
        };
        Ok(KernelDef {
            name: name.trim_end_matches(".toml").to_owned(),
            path: path.to_owned(),
            description: file.description,
            kind,
        })
    }

    /// A definition of a local git repository at a ref, made on the command line (bisect).
    pub fn git(repo: &Path, reference: &str) -> KernelDef {
        KernelDef {
            name: format!("git:{}", repo.display()),
            path: repo.to_owned(),
            description: format!("{} at {reference}", repo.display()),
            kind: DefKind::Git {
                repo: repo.to_owned(),
                reference: reference.to_owned(),
            },
        }
    }

    /// A definition by name (`kernels/<name>.toml`) or by path, relative to the lab root or
    /// absolute.
    pub fn find(s: &crate::config::Settings, name: &str) -> Result<KernelDef, SourceError> {
        KernelDef::load(name, &s.kernels_dir).or_else(|e| {
            let p = s.resolve_path(name);
            if p.is_file() {
                KernelDef::load(&p.to_string_lossy(), &s.kernels_dir)
            } else {
                Err(e)
            }
        })
    }

    /// The same git definition at another ref.
    pub fn with_ref(&self, reference: &str) -> KernelDef {
        let mut d = self.clone();
        if let DefKind::Git { reference: r, .. } = &mut d.kind {
            *r = reference.to_owned();
        }
        d
    }
}

/// The pinned identity of a source: what goes into every manifest and cache key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceId {
    /// `tarball` or `git`.
    pub kind: String,
    /// The tarball's sha256 or the commit id.
    pub id: String,
    /// The definition it came from.
    pub definition: String,
    /// Human-readable: package version or the ref as given.
    pub detail: String,
    /// Sources that share a work tree: one tarball, or one git repository.
    pub family: String,
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, SourceError> {
    let mut f = std::fs::File::open(path).map_err(io("cannot open", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io("cannot read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn git(repo: &Path, args: &[&str]) -> Result<String, SourceError> {
    Ok(super::git::run(repo, args)?)
}

/// Remembers that a file with this size and mtime hashed to this digest, so a cache hit does
/// not re-hash a 150 MB tarball.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct HashMemo {
    size: u64,
    mtime_ns: i128,
    sha256: String,
}

fn file_stamp(path: &Path) -> Option<(u64, i128)> {
    let md = std::fs::metadata(path).ok()?;
    let mtime = md.modified().ok()?;
    let ns = mtime.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos() as i128;
    Some((md.len(), ns))
}

/// A resolved source: identity plus how to read its pristine files.
#[derive(Debug, Clone)]
pub struct Source {
    pub id: SourceId,
    pub def: KernelDef,
    cache: PathBuf,
}

impl Source {
    /// Pins a definition: verifies the tarball hash (memoised by size and mtime) or resolves
    /// the git ref to a commit. Cheap on the second call.
    pub fn resolve(def: &KernelDef, cache: &Path) -> Result<Source, SourceError> {
        let id = match &def.kind {
            DefKind::Tarball {
                path,
                sha256,
                package,
                version,
                ..
            } => {
                let Some((size, mtime_ns)) = file_stamp(path) else {
                    return Err(SourceError::TarballMissing {
                        path: path.clone(),
                        package: package.clone(),
                    });
                };
                let memo_path = cache.join("memo/tarball").join(format!(
                    "{}.json",
                    sha256_hex(path.to_string_lossy().as_bytes())
                ));
                let memo: Option<HashMemo> = std::fs::read(&memo_path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let got = match memo {
                    Some(m) if m.size == size && m.mtime_ns == mtime_ns => m.sha256,
                    _ => {
                        let got = sha256_file(path)?;
                        let m = HashMemo {
                            size,
                            mtime_ns,
                            sha256: got.clone(),
                        };
                        write_atomic(&memo_path, &serde_json::to_vec(&m).unwrap_or_default())?;
                        got
                    }
                };
                if &got != sha256 {
                    return Err(SourceError::TarballHash {
                        path: path.clone(),
                        got,
                        want: sha256.clone(),
                        definition: def.path.clone(),
                        package: package.clone(),
                    });
                }
                SourceId {
                    kind: "tarball".into(),
                    id: sha256.clone(),
                    definition: def.name.clone(),
                    detail: format!("{package} {version}").trim().to_owned(),
                    family: format!("tar-{}", &sha256[..12]),
                }
            }
            DefKind::Git { repo, reference } => {
                let commit = git(
                    repo,
                    &["rev-parse", "--verify", &format!("{reference}^{{commit}}")],
                )?;
                let canonical = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.clone());
                SourceId {
                    kind: "git".into(),
                    id: commit,
                    definition: def.name.clone(),
                    detail: reference.clone(),
                    family: format!(
                        "git-{}",
                        &sha256_hex(canonical.to_string_lossy().as_bytes())[..12]
                    ),
                }
            }
        };
        Ok(Source {
            id,
            def: def.clone(),
            cache: cache.to_owned(),
        })
    }

    /// The pristine tree of a tarball source, unpacked on first use.
    pub fn pristine_dir(&self) -> Result<PathBuf, SourceError> {
        let DefKind::Tarball { path, top_dir, .. } = &self.def.kind else {
            return Err(SourceError::Unpack {
                path: self.def.path.clone(),
                why: "not a tarball source".into(),
            });
        };
        let base = self.cache.join("src").join(&self.id.family);
        let tree = base.join(top_dir);
        if base.join(".complete").is_file() {
            return Ok(tree);
        }
        let parent = self.cache.join("src");
        std::fs::create_dir_all(&parent).map_err(io("cannot create", &parent))?;
        // Another lab process (or test) may be unpacking the same tree: wait for it, then use
        // its result rather than replacing a tree someone may be reading.
        let _lock = lock_file(&parent.join(format!(".{}.lock", self.id.family)))?;
        if base.join(".complete").is_file() {
            return Ok(tree);
        }
        let tmp = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(&parent)
            .map_err(io("cannot create a temporary folder in", &parent))?;
        tracing::info!(tarball = %path.display(), "unpacking kernel source once into the cache");
        let status = std::process::Command::new("tar")
            .arg("-xf")
            .arg(path)
            .arg("-C")
            .arg(tmp.path())
            .status()
            .map_err(|e| SourceError::Unpack {
                path: path.clone(),
                why: format!("cannot run tar: {e}"),
            })?;
        if !status.success() || !tmp.path().join(top_dir).is_dir() {
            return Err(SourceError::Unpack {
                path: path.clone(),
                why: format!(
                    "tar exited with {status}, or the tarball has no top folder {top_dir:?}"
                ),
            });
        }
        std::fs::write(tmp.path().join(".complete"), &self.id.id)
            .map_err(io("cannot write in", tmp.path()))?;
        let _ = std::fs::remove_dir_all(&base);
        let kept = tmp.keep();
        std::fs::rename(&kept, &base).map_err(io("cannot move the unpacked tree to", &base))?;
        Ok(tree)
    }

    /// Reads pristine files of this source, for applying patches in memory.
    pub fn reader(&self) -> Result<Box<dyn TreeReader + Send + Sync>, SourceError> {
        match &self.def.kind {
            DefKind::Tarball { .. } => Ok(Box::new(DirReader(self.pristine_dir()?))),
            DefKind::Git { repo, .. } => Ok(Box::new(GitReader {
                repo: repo.clone(),
                commit: self.id.id.clone(),
            })),
        }
    }

    /// The work tree of this source's family, with its lock. Creates it on first use.
    pub fn work_tree(&self) -> Result<WorkTree, SourceError> {
        let dir = self.cache.join("work").join(&self.id.family);
        std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        Ok(WorkTree {
            src: dir.join("src"),
            state_path: dir.join("state.json"),
            lock_path: dir.join("lock"),
            dir,
        })
    }
}

struct DirReader(PathBuf);

impl TreeReader for DirReader {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.0.as_path().read(path)
    }
}

struct GitReader {
    repo: PathBuf,
    commit: String,
}

impl TreeReader for GitReader {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        // A path the commit does not have is "no such file" to the patch applier.
        super::git::run_bytes(
            &self.repo,
            &["cat-file", "blob", &format!("{}:{path}", self.commit)],
        )
        .ok()
    }
}

/// Whether `src` is a worktree its repository still knows: `src/.git` names an administrative
/// folder whose `gitdir` names `src/.git` back. A repository deleted and made again at the same
/// path keeps neither, and every git command in `src` then fails with "not a git repository".
fn linked_worktree(src: &Path) -> bool {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let dot_git = src.join(".git");
    let Ok(text) = std::fs::read_to_string(&dot_git) else {
        return false;
    };
    let Some(admin) = text.trim().strip_prefix("gitdir: ") else {
        return false;
    };
    std::fs::read_to_string(Path::new(admin).join("gitdir"))
        .is_ok_and(|back| same(Path::new(back.trim()), &dot_git))
}

/// What the work tree holds now.
#[derive(Debug, Default, Serialize, Deserialize)]
struct WorkState {
    /// Source id the tree was last synced to.
    source: String,
    /// Files that differ from that source's pristine tree because of patches.
    patched: BTreeSet<String>,
}

/// The shared source tree of one family. Hold [`WorkTree::lock`] while syncing and building.
#[derive(Debug, Clone)]
pub struct WorkTree {
    pub dir: PathBuf,
    pub src: PathBuf,
    state_path: PathBuf,
    lock_path: PathBuf,
}

/// An exclusive lock on a work tree, released on drop.
pub struct WorkLock(std::fs::File);

impl Drop for WorkLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own; unlocking cannot break memory safety.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Blocks until this process holds `path` exclusively (other lab processes wait).
fn lock_file(path: &Path) -> Result<WorkLock, SourceError> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io("cannot open lock", path))?;
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(io("cannot lock", path)(std::io::Error::last_os_error()).into());
    }
    Ok(WorkLock(f))
}

impl WorkTree {
    /// Blocks until this process holds the tree exclusively (other lab processes wait).
    pub fn lock(&self) -> Result<WorkLock, SourceError> {
        lock_file(&self.lock_path)
    }

    fn state(&self) -> WorkState {
        std::fs::read(&self.state_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Makes the tree hold `source` with `overlay` applied, touching only files whose content
    /// changes. Returns the paths written. The caller holds the lock.
    pub fn sync(
        &self,
        source: &Source,
        overlay: &Overlay,
        _lock: &WorkLock,
    ) -> Result<Vec<String>, SourceError> {
        let state = self.state();
        match &source.def.kind {
            DefKind::Tarball { .. } => {
                let pristine = source.pristine_dir()?;
                if !self.src.join("Makefile").is_file() || state.source != source.id.id {
                    self.fresh_tarball_tree(&pristine)?;
                    return self.write_overlay(
                        source,
                        overlay,
                        &BTreeSet::new(),
                        &DirReader(pristine),
                    );
                }
                self.write_overlay(source, overlay, &state.patched, &DirReader(pristine))
            }
            DefKind::Git { repo, .. } => {
                if self.src.join(".git").exists() && !linked_worktree(&self.src) {
                    // The repository was made again from scratch (scripts/synthetic-history.sh
                    // does that when its inputs change): the tree is nobody's worktree now.
                    tracing::info!(
                        tree = %self.src.display(),
                        repo = %repo.display(),
                        "the work tree's repository no longer knows it; checking it out again"
                    );
                    std::fs::remove_dir_all(&self.src)
                        .map_err(io("cannot remove the stale work tree", &self.src))?;
                }
                if !self.src.join(".git").exists() {
                    let _ = git(repo, &["worktree", "prune"]);
                    let src = self.src.to_string_lossy().into_owned();
                    git(
                        repo,
                        &[
                            "worktree",
                            "add",
                            "--force",
                            "--detach",
                            &src,
                            &source.id.id,
                        ],
                    )?;
                } else if state.source != source.id.id {
                    // Files patched for the previous variant: remember content and mtime, so a
                    // file that ends up identical keeps its mtime and is not rebuilt.
                    let before: BTreeMap<String, (Vec<u8>, filetime::FileTime)> = state
                        .patched
                        .iter()
                        .filter_map(|p| {
                            let path = self.src.join(p);
                            let data = std::fs::read(&path).ok()?;
                            let md = std::fs::metadata(&path).ok()?;
                            Some((
                                p.clone(),
                                (data, filetime::FileTime::from_last_modification_time(&md)),
                            ))
                        })
                        .collect();
                    git(
                        &self.src,
                        &["checkout", "--force", "--quiet", "--detach", &source.id.id],
                    )?;
                    // Untracked files go, the object trees stay (kbuild's `O=` folders live in
                    // the work tree so that ccache hits across trees: build::object_tree).
                    let keep = format!("/{}*", super::build::OBJECT_TREE_PREFIX);
                    git(&self.src, &["clean", "-fdq", "-e", &keep])?;
                    let written = self.write_overlay(
                        source,
                        overlay,
                        &BTreeSet::new(),
                        &DirReader(self.src.clone()),
                    )?;
                    for (p, (data, mtime)) in before {
                        let path = self.src.join(&p);
                        if std::fs::read(&path).is_ok_and(|now| now == data) {
                            let _ = filetime::set_file_mtime(&path, mtime);
                        }
                    }
                    return Ok(written);
                }
                let reader = GitReader {
                    repo: self.src.clone(),
                    commit: source.id.id.clone(),
                };
                self.write_overlay(source, overlay, &state.patched, &reader)
            }
        }
    }

    fn fresh_tarball_tree(&self, pristine: &Path) -> Result<(), SourceError> {
        // A hard-link farm of the pristine tree: cheap, and safe because lab replaces files by
        // rename (a new inode) and kbuild never writes into the source tree with O=.
        let tmp = self.dir.join("src.new");
        let _ = std::fs::remove_dir_all(&tmp);
        let _ = std::fs::remove_dir_all(&self.src);
        // cp says one line per file it could not link (80,000 of them when the work tree is
        // on another file system, or the disk is full): the error keeps the first and a count.
        let out = std::process::Command::new("cp")
            .arg("-al")
            .arg(pristine)
            .arg(&tmp)
            .stderr(std::process::Stdio::piped())
            .output()
            .map_err(io("cannot run cp for", &tmp))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&tmp);
            let said = String::from_utf8_lossy(&out.stderr);
            let mut lines = said.lines();
            let first = lines.next().unwrap_or("").trim().to_owned();
            let more = lines.count();
            let more = if more > 0 {
                format!(" (and {more} more lines like it)")
            } else {
                String::new()
            };
            return Err(SourceError::Unpack {
                path: pristine.to_owned(),
                why: format!(
                    "cp -al into {} failed ({}): {first}{more}",
                    tmp.display(),
                    out.status
                ),
            });
        }
        std::fs::rename(&tmp, &self.src).map_err(io("cannot move work tree to", &self.src))?;
        let _ = std::fs::remove_file(&self.state_path);
        Ok(())
    }

    /// Writes `overlay`, and restores files that the previous variant patched but this one
    /// does not, comparing content first.
    fn write_overlay(
        &self,
        source: &Source,
        overlay: &Overlay,
        previously: &BTreeSet<String>,
        pristine: &dyn TreeReader,
    ) -> Result<Vec<String>, SourceError> {
        let mut written = Vec::new();
        let paths: BTreeSet<&String> = previously.iter().chain(overlay.keys()).collect();
        for p in paths {
            let want: Option<Vec<u8>> = match overlay.get(p) {
                Some(c) => c.clone(),
                None => pristine.read(p),
            };
            let path = self.src.join(p);
            let have = std::fs::read(&path).ok();
            if have == want {
                continue;
            }
            match want {
                Some(data) => {
                    let mode = std::fs::metadata(&path).ok().map(|m| m.permissions());
                    write_atomic(&path, &data)?;
                    if let Some(mode) = mode {
                        let _ = std::fs::set_permissions(&path, mode);
                    }
                }
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
            written.push(p.clone());
        }
        let state = WorkState {
            source: source.id.id.clone(),
            patched: overlay.keys().cloned().collect(),
        };
        write_atomic(
            &self.state_path,
            &serde_json::to_vec_pretty(&state).unwrap_or_default(),
        )?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn definitions_parse_and_reject_mistakes() {
        let shipped = include_str!("../../../kernels/debian-6.12.toml");
        let d = KernelDef::parse(
            "debian-6.12",
            Path::new("/lab/kernels/debian-6.12.toml"),
            shipped,
        )
        .expect("shipped parses");
        assert!(
            matches!(d.kind, DefKind::Tarball { ref top_dir, .. } if top_dir == "linux-source-6.12")
        );
        let git = KernelDef::parse(
            "g",
            Path::new("/lab/kernels/g.toml"),
            "format-version = 1\n[git]\nrepo = \"../linux\"\nref = \"v6.12\"\n",
        )
        .expect("git parses");
        assert!(
            matches!(git.kind, DefKind::Git { ref repo, .. } if repo == Path::new("/lab/kernels/../linux"))
        );
        let both = "format-version = 1\n[git]\nrepo = \"x\"\nref = \"y\"\n[tarball]\npath = \"a\"\nsha256 = \"00\"\ntop-dir = \"t\"\n";
        assert!(KernelDef::parse("b", Path::new("b.toml"), both).is_err());
        let typo = "format-version = 1\n[git]\nrepo = \"x\"\nreff = \"y\"\n";
        let err = KernelDef::parse("t", Path::new("t.toml"), typo).expect_err("typo");
        assert!(err.to_string().contains("reff"), "{err}");
    }

    #[test]
    fn tarball_identity_is_verified_and_memoised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tarball = dir.path().join("src.tar");
        std::fs::write(&tarball, b"not really a tarball").expect("write");
        let digest = sha256_hex(b"not really a tarball");
        let text = format!("format-version = 1\n[tarball]\npath = \"{}\"\nsha256 = \"{digest}\"\ntop-dir = \"t\"\n", tarball.display());
        let def = KernelDef::parse("t", &dir.path().join("t.toml"), &text).expect("parses");
        let cache = dir.path().join("cache");
        let s = Source::resolve(&def, &cache).expect("hash matches");
        assert_eq!(s.id.id, digest);
        assert!(s.id.family.starts_with("tar-"));
        // Same size, new content and mtime: the memo must not hide the change.
        std::fs::write(&tarball, b"not really a tarbalL").expect("write");
        let later = filetime::FileTime::from_unix_time(2_000_000_000, 0);
        filetime::set_file_mtime(&tarball, later).expect("mtime");
        let err = Source::resolve(&def, &cache).expect_err("hash differs");
        assert!(matches!(err, SourceError::TarballHash { .. }), "{err}");
        std::fs::remove_file(&tarball).expect("rm");
        assert!(matches!(
            Source::resolve(&def, &cache),
            Err(SourceError::TarballMissing { .. })
        ));
    }

    #[test]
    fn git_sources_resolve_refs_and_sync_in_a_worktree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("linux");
        let run = |args: &[&str]| git(&repo, args).expect("git");
        let commit = |flags: &str, message: &str| {
            run(&[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                flags,
                message,
            ])
        };
        // A new repository at `repo` whose one commit has this a.c.
        let init = |a_c: &str, message: &str| {
            std::fs::create_dir_all(&repo).expect("mkdir");
            run(&["init", "-q", "-b", "main"]);
            std::fs::write(repo.join("Makefile"), "v1\n").expect("write");
            std::fs::write(repo.join("a.c"), a_c).expect("write");
            run(&["add", "."]);
            commit("-qm", message);
        };
        init("a1\n", "one");
        run(&["tag", "v1"]);
        std::fs::write(repo.join("a.c"), "a2\n").expect("write");
        commit("-qam", "two");
        let cache = dir.path().join("cache");
        let v1 = Source::resolve(&KernelDef::git(&repo, "v1"), &cache).expect("resolves");
        let head = Source::resolve(&KernelDef::git(&repo, "main"), &cache).expect("resolves");
        assert_ne!(v1.id.id, head.id.id);
        assert_eq!(
            v1.id.family, head.id.family,
            "one repository, one work tree"
        );
        let wt = v1.work_tree().expect("work tree");
        let lock = wt.lock().expect("lock");
        let mut overlay = Overlay::new();
        overlay.insert("a.c".into(), Some(b"patched\n".to_vec()));
        wt.sync(&v1, &overlay, &lock).expect("sync v1");
        assert_eq!(
            std::fs::read(wt.src.join("a.c")).expect("read"),
            b"patched\n"
        );
        wt.sync(&head, &Overlay::new(), &lock).expect("sync head");
        assert_eq!(std::fs::read(wt.src.join("a.c")).expect("read"), b"a2\n");
        // The user's checkout is untouched.
        assert_eq!(std::fs::read(repo.join("a.c")).expect("read"), b"a2\n");
        assert_eq!(run(&["status", "--porcelain"]), "");
        assert!(Source::resolve(&KernelDef::git(&repo, "no-such-ref"), &cache).is_err());

        // The repository made again at the same path (new history, no record of the work
        // tree): the tree is checked out again instead of failing in every git command.
        std::fs::remove_dir_all(&repo).expect("rm repo");
        init("a3\n", "again");
        assert!(!linked_worktree(&wt.src));
        let again = Source::resolve(&KernelDef::git(&repo, "main"), &cache).expect("resolves");
        assert_eq!(again.id.family, head.id.family, "same repository path");
        wt.sync(&again, &Overlay::new(), &lock)
            .expect("sync the remade repository");
        assert_eq!(std::fs::read(wt.src.join("a.c")).expect("read"), b"a3\n");
        assert!(linked_worktree(&wt.src));
    }

    #[test]
    fn tarball_work_tree_touches_only_changed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pristine = dir.path().join("p/top");
        std::fs::create_dir_all(&pristine).expect("mkdir");
        std::fs::write(pristine.join("Makefile"), "m\n").expect("write");
        std::fs::write(pristine.join("a.c"), "a\n").expect("write");
        std::fs::write(pristine.join("b.c"), "b\n").expect("write");
        let tar = dir.path().join("t.tar");
        let ok = std::process::Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(dir.path().join("p"))
            .arg("top")
            .status()
            .expect("tar");
        assert!(ok.success());
        let digest = sha256_file(&tar).expect("hash");
        let text = format!("format-version = 1\n[tarball]\npath = \"{}\"\nsha256 = \"{digest}\"\ntop-dir = \"top\"\n", tar.display());
        let def = KernelDef::parse("t", &dir.path().join("t.toml"), &text).expect("parses");
        let src = Source::resolve(&def, &dir.path().join("cache")).expect("resolves");
        let wt = src.work_tree().expect("wt");
        let lock = wt.lock().expect("lock");
        assert!(wt
            .sync(&src, &Overlay::new(), &lock)
            .expect("base")
            .is_empty());
        let mut v1 = Overlay::new();
        v1.insert("a.c".into(), Some(b"A\n".to_vec()));
        assert_eq!(
            wt.sync(&src, &v1, &lock).expect("v1"),
            vec!["a.c".to_owned()]
        );
        let pristine_a = src.pristine_dir().expect("pristine").join("a.c");
        assert_eq!(
            std::fs::read(&pristine_a).expect("read"),
            b"a\n",
            "pristine is never written through the link farm"
        );
        assert!(wt.sync(&src, &v1, &lock).expect("same again").is_empty());
        assert_eq!(
            wt.sync(&src, &Overlay::new(), &lock).expect("base again"),
            vec!["a.c".to_owned()]
        );
        assert_eq!(std::fs::read(wt.src.join("a.c")).expect("read"), b"a\n");
    }

    #[test]
    fn a_top_dir_outside_the_unpacked_tarball_is_rejected() {
        // Found by fuzz_edited_definitions_parse_or_fail: `top-dir = "/"` or `".."` was
        // accepted, and `pristine_dir` joined it onto the cache, so the kernel tree became
        // `/` or the cache's parent (tar's output folder, checked with `is_dir`, has both).
        for top in ["/", "..", "/usr/src/linux", "a/../..", ".", ""] {
            let text = SHIPPED.replace("\"linux-source-6.12\"\n", &format!("{top:?}\n"));
            let err = KernelDef::parse("d", Path::new("/lab/kernels/d.toml"), &text)
                .expect_err(top)
                .to_string();
            assert!(err.contains("tarball.top-dir"), "{top}: {err}");
        }
    }

    const SHIPPED: &str = include_str!("../../../kernels/debian-6.12.toml");
    const GIT_DEF: &str = "format-version = 1\ndescription = \"a local tree\"\n[git]\nrepo = \"../linux\"\nref = \"v6.12\"\n";

    /// Values of every TOML type and of the shapes the checks care about.
    const ODD_VALUES: &[&str] = &[
        "0",
        "2",
        "-1",
        "4294967296",
        "1.5",
        "true",
        "[]",
        "{}",
        "\"\"",
        "\"..\"",
        "\"/\"",
        "\"a/b\"",
        "\"-x\"",
        "\"\\u0000\"",
        "\"585a4a074597aefa2b1a68ada83a3184ba351c127544dea80618bbcceaa3961\"",
        "\"585A4A074597AEFA2B1A68ADA83A3184BA351C127544DEA80618BBCCEAA3961F\"",
        "\"585a4a074597aefa2b1a68ada83a3184ba351c127544dea80618bbcceaa3961é\"",
        "\"zz5a4a074597aefa2b1a68ada83a3184ba351c127544dea80618bbcceaa3961f\"",
    ];

    /// Checks what `parse` made of `text`: it never panics, and what it accepts is what the
    /// rest of lab relies on.
    fn parse_and_check(text: &str) -> Result<(), TestCaseError> {
        let Ok(d) = KernelDef::parse("d.toml", Path::new("/lab/kernels/d.toml"), text) else {
            return Ok(());
        };
        prop_assert_eq!(d.name, "d");
        match d.kind {
            DefKind::Tarball {
                sha256, top_dir, ..
            } => {
                prop_assert!(
                    sha256.len() == 64
                        && sha256
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                    "{}",
                    sha256
                );
                let mut parts = Path::new(&top_dir).components();
                prop_assert!(
                    matches!(
                        (parts.next(), parts.next()),
                        (Some(std::path::Component::Normal(_)), None)
                    ),
                    "{}",
                    top_dir
                );
            }
            DefKind::Git { repo, .. } => prop_assert!(repo.is_absolute()),
        }
        Ok(())
    }

    proptest! {

        #[test]
        fn fuzz_definitions_take_any_text(
            text in "\\PC*",
            which in any::<bool>(),
            cut in any::<prop::sample::Index>(),
        ) {
            parse_and_check(&text)?;
            let def = if which { SHIPPED } else { GIT_DEF };
            let mut at = cut.index(def.len() + 1);
            while !def.is_char_boundary(at) {
                at -= 1;
            }
            parse_and_check(&def[..at])?;
        }

        #[test]
        fn fuzz_edited_definitions_parse_or_fail(
            which in any::<bool>(),
            line in any::<prop::sample::Index>(),
            value in 0..ODD_VALUES.len(),
            key in "[a-z][a-z0-9-]{0,10}",
        ) {
            let def = if which { SHIPPED } else { GIT_DEF };
            let lines: Vec<&str> = def.lines().collect();
            let i = line.index(lines.len());
            // The line's value replaced.
            if let Some((k, _)) = lines[i].split_once(" = ") {
                let mut edited = lines.clone();
                let replaced = format!("{k} = {}", ODD_VALUES[value]);
                edited[i] = &replaced;
                parse_and_check(&edited.join("\n"))?;
            }
            // An unknown key after the line: rejected, and named.
            let known = [
                "format-version", "description", "tarball", "git", "path", "sha256", "top-dir",
                "package", "version", "repo", "ref",
            ];
            if !known.contains(&key.as_str()) {
                let mut edited = lines.clone();
                let added = format!("{key} = {}", ODD_VALUES[value]);
                edited.insert(i + 1, &added);
                let err = KernelDef::parse("d", Path::new("d.toml"), &edited.join("\n"));
                let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
                prop_assert!(msg.contains(&format!("unknown field `{key}`")), "{}: {}", key, msg);
            }
        }
    }
}
