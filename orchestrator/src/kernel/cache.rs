//! The artifact cache, keyed by content.
//!
//! A kernel's key hashes everything that decides its bytes: the source identity, the patch
//! contents in order, the final `.config`, the compiler and binutils versions, and the make
//! variables. An entry is a folder `artifacts/<key>/` holding the boot image, vmlinux,
//! `.config`, System.map, the build log and `manifest.json`. Entries are written to a
//! temporary folder and renamed into place, so a cache entry is whole or absent.
//!
//! The manifest records the sha256 of every file of the entry, and [`Cache::get`] checks
//! them before an entry is used: a truncated or corrupted file (a full disk, a bad block, a
//! hand edit) makes the entry a miss, so the kernel is rebuilt and never booted damaged. The
//! damaged folder is set aside as `artifacts/.damaged-<key>-<n>` for inspection. An entry
//! written before the digests existed gets them on its first use (trust on first use: a file
//! damaged before that is not caught, every later damage is).

use crate::io_error::{io, IoError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::source::SourceId;
use super::toolchain::Toolchain;
use crate::arch::Arch;

/// Format of manifest.json.
pub const MANIFEST_VERSION: u32 = 1;

/// Name prefix of an entry being written (a temporary folder renamed into place when whole).
const NEW_PREFIX: &str = ".new-";
/// Name prefix of a damaged entry set aside for inspection until the next prune.
const DAMAGED_PREFIX: &str = ".damaged";
/// How long a temporary entry may go unmodified before `prune` takes it for abandoned: `put`
/// only copies a finished build's few files into it, which takes seconds.
const NEW_ENTRY_GRACE_S: u64 = 600;

/// A path's modification time in seconds since the epoch.
fn modified_s(path: &Path) -> Option<u64> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    m.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("no cached kernel matches {0:?}: list them with `lab cache list`")]
    NoMatch(String),
    #[error("{0:?} matches several cached kernels; give more of the key")]
    Ambiguous(String),
    #[error("cached kernel {0} was damaged and is set aside: build it again with `lab build`")]
    Damaged(String),
}

/// One patch as recorded in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchRecord {
    pub set: String,
    pub label: String,
    pub subject: String,
    pub sha256: String,
}

/// Everything the key is computed from. Field order is the hash order.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInputs<'a> {
    pub source_kind: &'a str,
    pub source_id: &'a str,
    pub arch: Arch,
    pub patches: Vec<&'a str>,
    pub config_sha256: &'a str,
    pub gcc_version: &'a str,
    pub ld_version: &'a str,
    pub cross_compile: &'a str,
    pub make_vars: &'a BTreeMap<String, String>,
    pub targets: &'a [String],
}

impl KeyInputs<'_> {
    pub fn key(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&json))
    }
}

/// What `lab build` records about a kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Manifest {
    pub format_version: u32,
    pub key: String,
    pub arch: Arch,
    pub source: SourceId,
    pub patches: Vec<PatchRecord>,
    pub config_base: String,
    /// Fragment name -> sha256 of its text.
    pub fragments: Vec<(String, String)>,
    pub config_sha256: String,
    pub toolchain: Toolchain,
    pub make_vars: BTreeMap<String, String>,
    pub kernel_release: String,
    /// File name of the boot image inside the entry.
    pub image: String,
    pub build_seconds: f64,
    /// File name in the entry -> sha256 of its bytes, checked by [`Cache::get`]. Filled in by
    /// [`Cache::put`]; empty in entries older than the field.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// Unix time the entry was made.
    pub created: u64,
    pub lab_version: String,
}

/// A kernel in the cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Artifact {
    pub fn image(&self) -> PathBuf {
        self.dir.join(&self.manifest.image)
    }
    pub fn vmlinux(&self) -> PathBuf {
        self.dir.join("vmlinux")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config")
    }
    pub fn system_map(&self) -> PathBuf {
        self.dir.join("System.map")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("build.log")
    }
    /// A short label: the patch sets, or "base".
    pub fn label(&self) -> String {
        let mut sets: Vec<&str> = Vec::new();
        for p in &self.manifest.patches {
            if !sets.contains(&p.set.as_str()) {
                sets.push(&p.set);
            }
        }
        if sets.is_empty() {
            "base".to_owned()
        } else {
            sets.join(",")
        }
    }
}

/// Why an entry cannot be used: a file its manifest names is missing, or its bytes are not
/// the ones recorded. None when every recorded file matches (or none is recorded).
fn damage(a: &Artifact) -> Option<String> {
    a.manifest
        .files
        .iter()
        .find_map(|(name, want)| match file_sha256(&a.dir.join(name)) {
            Ok(got) if &got == want => None,
            Ok(got) => Some(format!(
                "{name}: sha256 {} where the manifest says {}",
                &got[..12],
                &want[..want.len().min(12)]
            )),
            Err(e) => Some(format!("{name}: {e}")),
        })
}

/// Gives an entry made before manifests recorded digests the digests of its files as they
/// are now, and saves them in its manifest (atomically, a new file: a hard-linked copy of the
/// cache is not changed with it). Failing to save only means doing this again next time.
fn record_digests(a: &mut Artifact) {
    let Ok(rd) = std::fs::read_dir(&a.dir) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "manifest.json" || name.starts_with('.') || !e.path().is_file() {
            continue;
        }
        match file_sha256(&e.path()) {
            Ok(d) => {
                a.manifest.files.insert(name, d);
            }
            Err(err) => {
                tracing::warn!(file = %e.path().display(), "digest of a cached file: {err}");
                a.manifest.files.clear();
                return;
            }
        }
    }
    let json = serde_json::to_vec_pretty(&a.manifest).unwrap_or_default();
    if let Err(e) = crate::io_error::write_atomic(&a.dir.join("manifest.json"), &json) {
        tracing::warn!(dir = %a.dir.display(), "record the digests of a cached kernel: {e}");
    }
}

/// sha256 of a file's bytes, in hex.
fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// The cache folder.
#[derive(Debug, Clone)]
pub struct Cache {
    pub root: PathBuf,
}

impl Cache {
    pub fn new(root: &Path) -> Cache {
        Cache {
            root: root.to_owned(),
        }
    }

    pub fn artifacts(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    /// A cache hit: the entry for `key`, if whole and every file matches its recorded
    /// sha256. A damaged entry is set aside (see the module doc) and is a miss.
    pub fn get(&self, key: &str) -> Option<Artifact> {
        let mut a = self.read_entry(key)?;
        if a.manifest.files.is_empty() {
            record_digests(&mut a);
            return Some(a);
        }
        match damage(&a) {
            None => Some(a),
            Some(why) => {
                self.set_aside(&a, &why);
                None
            }
        }
    }

    /// Moves a damaged entry out of the way, saying so.
    fn set_aside(&self, a: &Artifact, why: &str) {
        let aside = (1..)
            .map(|n| {
                self.artifacts()
                    .join(format!("{DAMAGED_PREFIX}-{}-{n}", a.manifest.key))
            })
            .find(|p| !p.exists())
            .unwrap_or_else(|| self.artifacts().join(DAMAGED_PREFIX));
        crate::errln!(
            "lab: cached kernel {} is damaged ({why}); it is set aside as {} and will be rebuilt",
            &a.manifest.key[..a.manifest.key.len().min(12)],
            aside.display()
        );
        if let Err(e) = std::fs::rename(&a.dir, &aside) {
            tracing::warn!(dir = %a.dir.display(), "set aside a damaged entry: {e}");
            let _ = std::fs::remove_dir_all(&a.dir);
        }
    }

    /// The entry for `key` as its manifest describes it, files unchecked.
    fn read_entry(&self, key: &str) -> Option<Artifact> {
        let dir = self.artifacts().join(key);
        let manifest: Manifest =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).ok()?).ok()?;
        (manifest.format_version == MANIFEST_VERSION
            && manifest.key == key
            && dir.join(&manifest.image).is_file())
        .then_some(Artifact { dir, manifest })
    }

    /// Stores a finished build: copies `files` (name in entry, source path) into a temporary
    /// folder, writes the manifest last, and renames the folder into place.
    pub fn put(
        &self,
        manifest: &Manifest,
        files: &[(&str, &Path)],
    ) -> Result<Artifact, CacheError> {
        let parent = self.artifacts();
        std::fs::create_dir_all(&parent).map_err(io("cannot create", &parent))?;
        let tmp = tempfile::Builder::new()
            .prefix(NEW_PREFIX)
            .tempdir_in(&parent)
            .map_err(io("cannot create a temporary folder in", &parent))?;
        let mut manifest = manifest.clone();
        for (name, src) in files {
            let dst = tmp.path().join(name);
            std::fs::copy(src, &dst).map_err(io("cannot copy build output", src))?;
            let digest = file_sha256(&dst).map_err(io("cannot read back", &dst))?;
            manifest.files.insert((*name).to_owned(), digest);
        }
        let json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        std::fs::write(tmp.path().join("manifest.json"), json)
            .map_err(io("cannot write manifest in", tmp.path()))?;
        let dir = parent.join(&manifest.key);
        if dir.exists() {
            // Another process finished the same key first: same inputs, same kernel.
            let _ = std::fs::remove_dir_all(&dir);
        }
        let kept = tmp.keep();
        std::fs::rename(&kept, &dir).map_err(io("cannot move cache entry to", &dir))?;
        Ok(Artifact { dir, manifest })
    }

    /// Every whole entry, newest first.
    pub fn list(&self) -> Vec<Artifact> {
        let Ok(rd) = std::fs::read_dir(self.artifacts()) else {
            return Vec::new();
        };
        let mut out: Vec<Artifact> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (!name.starts_with('.'))
                    .then(|| self.read_entry(&name))
                    .flatten()
            })
            .collect();
        out.sort_by(|a, b| {
            b.manifest
                .created
                .cmp(&a.manifest.created)
                .then(a.manifest.key.cmp(&b.manifest.key))
        });
        out
    }

    /// Finds an entry by key prefix (at least 6 characters).
    pub fn find(&self, prefix: &str) -> Result<Artifact, CacheError> {
        let matches: Vec<Artifact> = self
            .list()
            .into_iter()
            .filter(|a| prefix.len() >= 6 && a.manifest.key.starts_with(prefix))
            .collect();
        match matches.as_slice() {
            [] => Err(CacheError::NoMatch(prefix.to_owned())),
            // Checked like any hit: a damaged entry is set aside and not handed out.
            [one] => self
                .get(&one.manifest.key)
                .ok_or_else(|| CacheError::Damaged(one.manifest.key.clone())),
            _ => Err(CacheError::Ambiguous(prefix.to_owned())),
        }
    }

    /// Removes entries: those not in the newest `keep`, and those older than `older_than_s`
    /// seconds. Also removes damaged entries set aside, and temporary folders left unmodified
    /// for `NEW_ENTRY_GRACE_S` (a crashed `put`'s; not one a concurrent `put` is filling).
    /// Returns what was removed.
    pub fn prune(
        &self,
        keep: Option<usize>,
        older_than_s: Option<u64>,
        now: u64,
    ) -> Result<Vec<Artifact>, CacheError> {
        let mut removed = Vec::new();
        for (i, a) in self.list().into_iter().enumerate() {
            let too_many = keep.is_some_and(|k| i >= k);
            let too_old =
                older_than_s.is_some_and(|age| now.saturating_sub(a.manifest.created) > age);
            if too_many || too_old {
                std::fs::remove_dir_all(&a.dir).map_err(io("cannot remove", &a.dir))?;
                removed.push(a);
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.artifacts()) {
            for e in rd.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                // Damaged entries kept for inspection, and half-written entries: only those
                // left behind, not one that a concurrent `put` is filling right now (whose
                // rename would then fail).
                let abandoned = name.starts_with(NEW_PREFIX)
                    && modified_s(&e.path())
                        .is_some_and(|m| now.saturating_sub(m) > NEW_ENTRY_GRACE_S);
                if abandoned || name.starts_with(DAMAGED_PREFIX) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(removed)
    }

    /// Size in bytes of an entry.
    pub fn size(a: &Artifact) -> u64 {
        std::fs::read_dir(&a.dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(vars: &'a BTreeMap<String, String>, targets: &'a [String]) -> KeyInputs<'a> {
        KeyInputs {
            source_kind: "tarball",
            source_id: "abc",
            arch: Arch::X86_64,
            patches: vec!["p1", "p2"],
            config_sha256: "cfg",
            gcc_version: "gcc 12.2.0",
            ld_version: "GNU ld 2.40",
            cross_compile: "",
            make_vars: vars,
            targets,
        }
    }

    #[test]
    fn same_inputs_same_key_and_every_input_matters() {
        let vars = BTreeMap::from([("KBUILD_BUILD_USER".to_owned(), "lab".to_owned())]);
        let targets = vec!["bzImage".to_owned()];
        let base = inputs(&vars, &targets).key();
        assert_eq!(base, inputs(&vars, &targets).key());
        assert_eq!(base.len(), 64);
        let mut keys = std::collections::BTreeSet::from([base.clone()]);
        let other_vars = BTreeMap::from([("KBUILD_BUILD_USER".to_owned(), "me".to_owned())]);
        let other_targets = vec!["Image".to_owned()];
        type Change = Box<dyn Fn(&mut KeyInputs)>;
        let variants: Vec<Change> = vec![
            Box::new(|k| k.source_kind = "git"),
            Box::new(|k| k.source_id = "abd"),
            Box::new(|k| k.arch = Arch::Arm64),
            Box::new(|k| k.patches = vec!["p2", "p1"]),
            Box::new(|k| k.patches = vec!["p1"]),
            Box::new(|k| k.config_sha256 = "cfg2"),
            Box::new(|k| k.gcc_version = "gcc 13"),
            Box::new(|k| k.ld_version = "GNU ld 2.41"),
            Box::new(|k| k.cross_compile = "x-"),
        ];
        for change in variants {
            let mut k = inputs(&vars, &targets);
            change(&mut k);
            assert!(keys.insert(k.key()), "a changed input must change the key");
        }
        let mut k = inputs(&other_vars, &targets);
        assert!(keys.insert(k.key()));
        k = inputs(&vars, &other_targets);
        assert!(keys.insert(k.key()));
    }

    fn manifest(key: &str, created: u64) -> Manifest {
        Manifest {
            format_version: MANIFEST_VERSION,
            key: key.to_owned(),
            arch: Arch::X86_64,
            source: SourceId {
                kind: "tarball".into(),
                id: "abc".into(),
                definition: "d".into(),
                detail: String::new(),
                family: "tar-abc".into(),
            },
            patches: vec![],
            config_base: "tinyconfig".into(),
            fragments: vec![],
            config_sha256: "c".into(),
            toolchain: Toolchain {
                cross_compile: String::new(),
                gcc: "gcc".into(),
                gcc_version: "g".into(),
                ld_version: "l".into(),
                make_version: "m".into(),
                ccache: None,
            },
            make_vars: BTreeMap::new(),
            kernel_release: "6.12.117".into(),
            image: "bzImage".into(),
            build_seconds: 1.0,
            files: BTreeMap::new(),
            created,
            lab_version: "0".into(),
        }
    }

    #[test]
    fn put_get_list_find_prune() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(dir.path());
        let img = dir.path().join("img");
        std::fs::write(&img, b"kernel").expect("write");
        assert!(cache.get("aaaaaa1").is_none());
        cache
            .put(&manifest("aaaaaa1", 10), &[("bzImage", &img)])
            .expect("put");
        cache
            .put(&manifest("bbbbbb2", 20), &[("bzImage", &img)])
            .expect("put");
        cache
            .put(&manifest("bbbbbb3", 30), &[("bzImage", &img)])
            .expect("put");
        assert_eq!(cache.get("aaaaaa1").map(|a| a.manifest.created), Some(10));
        let keys: Vec<String> = cache.list().into_iter().map(|a| a.manifest.key).collect();
        assert_eq!(keys, vec!["bbbbbb3", "bbbbbb2", "aaaaaa1"]);
        assert!(cache.find("aaaaaa").is_ok());
        assert!(matches!(
            cache.find("bbbbbb"),
            Err(CacheError::Ambiguous(_))
        ));
        assert!(matches!(cache.find("cccccc"), Err(CacheError::NoMatch(_))));
        // An entry without its image is not whole.
        std::fs::remove_file(dir.path().join("artifacts/aaaaaa1/bzImage")).expect("rm");
        assert!(cache.get("aaaaaa1").is_none());
        let removed = cache.prune(Some(1), None, 100).expect("prune");
        assert_eq!(removed.len(), 1);
        assert_eq!(cache.list().len(), 1);
        let removed = cache.prune(None, Some(50), 100).expect("prune by age");
        assert_eq!(removed.len(), 1);
        assert!(cache.list().is_empty());
    }
    #[test]
    fn prune_leaves_a_temporary_entry_being_filled_and_removes_an_abandoned_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(dir.path());
        let tmp = dir.path().join(format!("artifacts/{NEW_PREFIX}x1"));
        std::fs::create_dir_all(&tmp).expect("mkdir");
        std::fs::write(tmp.join("vmlinux"), b"half").expect("write");
        let now = modified_s(&tmp).expect("mtime");
        cache.prune(None, None, now + 5).expect("prune");
        assert!(tmp.is_dir(), "a concurrent put's folder is left alone");
        cache
            .prune(None, None, now + NEW_ENTRY_GRACE_S + 1)
            .expect("prune");
        assert!(!tmp.exists(), "an abandoned one is removed");
    }

    #[test]
    fn a_damaged_entry_is_a_miss_set_aside_and_an_old_one_without_digests_is_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(dir.path());
        let img = dir.path().join("img");
        std::fs::write(&img, b"kernel image bytes").expect("write");
        let a = cache
            .put(
                &manifest("dddddd1", 10),
                &[("bzImage", &img), ("vmlinux", &img)],
            )
            .expect("put");
        assert_eq!(a.manifest.files.len(), 2, "every file's digest is recorded");
        assert!(cache.get("dddddd1").is_some(), "a whole entry is a hit");

        // Truncated: same name, fewer bytes. A miss, set aside, and a later put is whole again.
        std::fs::write(a.dir.join("vmlinux"), b"kernel").expect("truncate");
        assert!(cache.get("dddddd1").is_none());
        assert!(!a.dir.exists(), "the damaged folder is moved away");
        assert!(dir
            .path()
            .join("artifacts/.damaged-dddddd1-1/vmlinux")
            .is_file());
        assert!(cache.list().is_empty(), "a set-aside entry is not listed");
        cache
            .put(&manifest("dddddd1", 11), &[("bzImage", &img)])
            .expect("put again");
        assert!(cache.get("dddddd1").is_some());

        // Corrupted in place, same length: find() refuses it too.
        let mut bytes = std::fs::read(&img).expect("read");
        bytes[3] ^= 0x20;
        std::fs::write(a.dir.join("bzImage"), &bytes).expect("corrupt");
        assert!(matches!(cache.find("dddddd"), Err(CacheError::Damaged(_))));
        assert!(dir.path().join("artifacts/.damaged-dddddd1-2").is_dir());

        // An entry written before the digests existed gets them on first use, and from then
        // on a damage is caught like any other.
        cache
            .put(&manifest("eeeeee1", 12), &[("bzImage", &img)])
            .expect("put");
        let mpath = dir.path().join("artifacts/eeeeee1/manifest.json");
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&mpath).expect("read")).expect("json");
        m.as_object_mut().expect("object").remove("files");
        std::fs::write(&mpath, serde_json::to_vec(&m).expect("json")).expect("write");
        let first = cache.get("eeeeee1").expect("an old entry is used");
        assert_eq!(first.manifest.files.len(), 1, "{:?}", first.manifest.files);
        std::fs::write(dir.path().join("artifacts/eeeeee1/bzImage"), b"x").expect("write");
        assert!(
            cache.get("eeeeee1").is_none(),
            "damaged after its first use"
        );
        // Set-aside entries stay for inspection until a prune.
        let arts = dir.path().join("artifacts");
        assert!(arts.join(".damaged-eeeeee1-1").is_dir());
        cache.prune(None, None, 100).expect("prune");
        for set_aside in [
            ".damaged-dddddd1-1",
            ".damaged-dddddd1-2",
            ".damaged-eeeeee1-1",
        ] {
            assert!(!arts.join(set_aside).exists(), "{set_aside} is pruned");
        }
    }
}
