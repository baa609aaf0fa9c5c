//! The record of one run: what ran, on which kernel and image, under which conditions, and
//! how each boot went.
//!
//! It lives beside the outcome model rather than in `run/` because it has two writers and
//! several readers: the runner saves it in the run directory ([`MANIFEST_FILE`]), the results
//! store keeps a copy with the run's row, and reports read it back. None of them should need
//! the runner to do so, and the store must not import the module that imports it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::arch::{Accel, Arch};

/// The version of the manifest's JSON form; bump it when a field changes meaning.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// The manifest's file name in a run directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// How a boot went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BootRecord {
    /// Host time from QEMU start to the READY marker.
    pub ready_ms: Option<u64>,
    /// Guest uptime at READY.
    pub guest_uptime_ms: Option<u64>,
    /// Host time from QEMU start to the first successful SSH login.
    pub ssh_ms: Option<u64>,
    pub console: PathBuf,
    pub error: Option<String>,
}

/// Where a run happened: the engine that placed it, the engine's job id, and the host.
/// Every stored run has one, so a run can be traced to a node and its job, and a run lost
/// to the engine is told from one the kernel failed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Placement {
    /// `local`, `slurm`, ...
    pub engine: String,
    /// The engine's id of the job that ran it; `None` for a run on this host.
    pub job: Option<String>,
    /// The host that booted the guest.
    pub node: String,
}

impl Placement {
    /// A run on the machine this lab runs on.
    pub fn this_host() -> Placement {
        Placement {
            engine: "local".into(),
            job: None,
            node: host_name(),
        }
    }

    /// A run `engine` lost before any host took it.
    pub fn unplaced(engine: &str) -> Placement {
        Placement {
            engine: engine.to_owned(),
            job: None,
            node: "(none)".into(),
        }
    }
}

/// This machine's name (`/proc/sys/kernel/hostname`, else `localhost`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The record of a run, written as the run directory's manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct RunManifest {
    pub format_version: u32,
    pub arch: Arch,
    pub kernel_key: String,
    pub kernel_label: String,
    pub kernel_release: String,
    pub image_digest: String,
    pub test_digests: BTreeMap<String, String>,
    pub qemu_version: String,
    pub accel: Accel,
    pub accel_reason: String,
    pub cmdline: String,
    pub qemu_command: String,
    pub seed: u64,
    pub knobs: Vec<(String, String)>,
    pub tests: Vec<String>,
    pub iterations: u32,
    pub duration_ms: u64,
    pub deadline_scale: f64,
    pub reproduce: String,
    pub boots: Vec<BootRecord>,
    /// Where it ran; absent in manifests written before lab recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
}

/// Why a manifest could not be saved. Each message reads after "failed to" and names the file.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("encode the manifest of the run in {} as JSON", dir.display())]
    Encode {
        dir: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("write the run's manifest {}: the run's outcomes are still in results.jsonl beside it", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RunManifest {
    /// Saves the manifest as [`MANIFEST_FILE`] in the run directory `dir` and returns its path.
    /// The run directory is the record of a run that does not depend on the results store.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, ManifestError> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| ManifestError::Encode {
            dir: dir.to_owned(),
            source,
        })?;
        let path = dir.join(MANIFEST_FILE);
        std::fs::write(&path, json).map_err(|source| ManifestError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A manifest with every field set, for the tests of whatever keeps manifests.
    pub(crate) fn manifest() -> RunManifest {
        RunManifest {
            format_version: MANIFEST_FORMAT_VERSION,
            arch: Arch::Arm64,
            kernel_key: "k".into(),
            kernel_label: "base".into(),
            kernel_release: "6.12.0-rt".into(),
            image_digest: "i".into(),
            test_digests: BTreeMap::new(),
            qemu_version: "QEMU 9".into(),
            accel: Accel::Tcg,
            accel_reason: "forced".into(),
            cmdline: String::new(),
            qemu_command: String::new(),
            seed: 1,
            knobs: vec![],
            tests: vec!["futex_errno".into()],
            iterations: 1,
            duration_ms: 3000,
            deadline_scale: 5.0,
            reproduce: "lab run".into(),
            boots: vec![],
            placement: Some(Placement {
                engine: "slurm".into(),
                job: Some("12_3".into()),
                node: "n1".into(),
            }),
        }
    }

    #[test]
    fn a_saved_manifest_reads_back_and_keeps_its_json_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = manifest().save(dir.path()).expect("save");
        assert_eq!(path, dir.path().join(MANIFEST_FILE));
        let text = std::fs::read_to_string(&path).expect("read");
        // Existing run directories and stores hold these names: they must not drift.
        for key in [
            "\"format-version\": 1",
            "\"kernel-key\"",
            "\"accel\": \"tcg\"",
        ] {
            assert!(text.contains(key), "{key} in {text}");
        }
        let back: RunManifest = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, manifest());
    }

    #[test]
    fn a_manifest_from_before_placements_still_reads() {
        let mut v = serde_json::to_value(manifest()).expect("encode");
        assert_eq!(v["placement"]["job"], "12_3");
        v.as_object_mut().expect("object").remove("placement");
        let old: RunManifest = serde_json::from_value(v).expect("parse");
        assert_eq!(old.placement, None);
    }

    #[test]
    fn a_manifest_that_cannot_be_written_says_where() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no/such/run");
        let err = manifest().save(&missing).expect_err("no folder");
        assert!(matches!(err, ManifestError::Write { .. }), "{err}");
        assert!(err.to_string().contains(&missing.display().to_string()));
    }
}
