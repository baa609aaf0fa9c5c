//! The accelerator of a run's guests: forced by the lab definition, or probed with a short
//! boot of the real kernel under KVM, whose answer is remembered for a day.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::qemu_version;
use crate::arch::{Accel, Arch};
use crate::guest::image::BaseImage;
use crate::kernel::cache::Artifact;
use crate::vm::qemu::{self, VmSpec};

/// The boot that [`choose_accel`] probes KVM with: the run's kernel and base image, no network.
pub fn probe_spec(
    artifact: &Artifact,
    image: &BaseImage,
    cpus: u32,
    memory_mib: u32,
    dir: &Path,
) -> VmSpec {
    VmSpec {
        arch: artifact.manifest.arch,
        image: artifact.image(),
        vmlinux: artifact.vmlinux(),
        initramfs: image.path.clone(),
        cpus,
        memory_mib,
        accel: Accel::Tcg,
        cmdline_extra: vec![],
        dir: dir.to_owned(),
        ssh_port: None,
    }
}

/// Where the probe's answer is remembered, and the key it is valid for: the host kernel,
/// the QEMU version and the arch. The cache folder is found from the probe's run folder.
fn probe_memo_path(arch: Arch, run_dir: &Path) -> Option<(PathBuf, String)> {
    let cache = run_dir
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "runs"))?
        .parent()?
        .to_owned();
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let key = format!("{}|{}|{arch}", host.trim(), qemu_version(arch));
    Some((
        cache.join("memo").join(format!("kvm-probe-{arch}.json")),
        key,
    ))
}

/// Chooses the accelerator for `arch`: forced by the lab definition, or probed. The probe
/// boots the real kernel under KVM with a short deadline, because a `/dev/kvm` that opens is
/// not proof that a stock kernel boots on it (KERNEL-NOTES: paravirtual KVM hosts). The
/// answer is remembered for the rest of this lab process.
pub async fn choose_accel(
    choice: crate::config::AccelChoice,
    arch: Arch,
    probe_spec: &VmSpec,
) -> (Accel, String) {
    use crate::config::AccelChoice;
    static PROBED: Mutex<BTreeMap<Arch, (Accel, String)>> = Mutex::new(BTreeMap::new());
    match choice {
        AccelChoice::Tcg => {
            return (
                Accel::Tcg,
                "TCG: forced by vm.accel in the lab definition".into(),
            )
        }
        AccelChoice::Kvm => {
            return (
                Accel::Kvm,
                "KVM: forced by vm.accel in the lab definition".into(),
            )
        }
        AccelChoice::Auto => {}
    }
    if let Some(known) = PROBED.lock().ok().and_then(|p| p.get(&arch).cloned()) {
        return known;
    }
    // A probe costs a boot attempt; its answer holds for this host, kernel and QEMU for a
    // day, so it is remembered in the cache.
    let memo = probe_memo_path(arch, &probe_spec.dir);
    let fresh = memo.as_ref().and_then(|(path, key)| {
        let text = std::fs::read_to_string(path).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        let age = now.saturating_sub(v.get("time")?.as_u64()?);
        (v.get("key")?.as_str()? == key && age < 86_400).then(|| {
            let kvm = v.get("kvm")?.as_bool()?;
            let why = v.get("reason")?.as_str()?.to_owned();
            Some((
                if kvm { Accel::Kvm } else { Accel::Tcg },
                format!("{why} (probed {} min ago)", age / 60),
            ))
        })?
    });
    let answer = match fresh {
        Some(a) => a,
        None => {
            let a = match qemu::probe_kvm(probe_spec, Duration::from_secs(8)).await {
                Ok(()) => (Accel::Kvm, "KVM: a probe boot reached READY".to_owned()),
                Err(why) => (Accel::Tcg, format!("TCG: {why}")),
            };
            if let Some((path, key)) = &memo {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let v = serde_json::json!({"key": key, "time": now, "kvm": a.0 == Accel::Kvm, "reason": a.1});
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let _ = std::fs::write(path, v.to_string());
            }
            a
        }
    };
    if let Ok(mut p) = PROBED.lock() {
        p.insert(arch, answer.clone());
    }
    answer
}
