//! The end of every run, made, lost or read back from elsewhere: its outcomes in
//! `results.jsonl`, its manifest, and its report.

use std::path::Path;

use super::folder::set_aside_earlier_results;
use super::{qemu_version, spec_for, test_seed, RunPlan, RunReport, INITRAMFS, KEYS_ARCHIVE};
use crate::results::manifest::{BootRecord, Placement, RunManifest, MANIFEST_FORMAT_VERSION};
use crate::results::TestOutcome;

/// The report of a run that never started, or whose host was lost: every test iteration an
/// infra-error that says `why`, and a manifest with no boots, saved in the run directory
/// like any other. An engine that loses a run reports it this way, so that a lost run is
/// never a kernel's failure and never silently missing.
pub fn lost(
    plan: &RunPlan,
    accel_reason: &str,
    reproduce: &str,
    placement: &Placement,
    why: &str,
) -> RunReport {
    let outcomes: Vec<TestOutcome> = (0..plan.iterations)
        .flat_map(|i| {
            plan.tests.iter().map(move |t| {
                TestOutcome::infra(
                    t,
                    plan.arch,
                    i,
                    test_seed(plan.seed, t, i),
                    format!("run lost: {why}"),
                )
            })
        })
        .collect();
    recorded(
        plan,
        accel_reason,
        reproduce,
        placement,
        Vec::new(),
        outcomes,
    )
}

/// The report of a run that happened elsewhere and was read back (a LAVA job's log): its
/// outcomes and boots, saved in the run directory like any other run's.
pub fn recorded(
    plan: &RunPlan,
    accel_reason: &str,
    reproduce: &str,
    placement: &Placement,
    boots: Vec<BootRecord>,
    outcomes: Vec<TestOutcome>,
) -> RunReport {
    let _ = std::fs::create_dir_all(&plan.dir);
    let results_path = plan.dir.join("results.jsonl");
    set_aside_earlier_results(&results_path);
    for o in &outcomes {
        append_result(&results_path, o);
    }
    finish(plan, accel_reason, reproduce, placement, boots, outcomes)
}

/// The end of every run, made or lost: its manifest, saved in the run directory, and its
/// report.
pub(super) fn finish(
    plan: &RunPlan,
    accel_reason: &str,
    reproduce: &str,
    placement: &Placement,
    boots: Vec<BootRecord>,
    outcomes: Vec<TestOutcome>,
) -> RunReport {
    let manifest = manifest_of(plan, accel_reason, reproduce, placement, boots);
    save_manifest(&manifest, &plan.dir);
    RunReport {
        manifest,
        outcomes,
        dir: plan.dir.clone(),
    }
}

/// Appends one outcome to the run directory's `results.jsonl`.
pub(super) fn append_result(path: &Path, o: &TestOutcome) {
    if let Ok(line) = serde_json::to_string(o) {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn manifest_of(
    plan: &RunPlan,
    accel_reason: &str,
    reproduce: &str,
    placement: &Placement,
    boots: Vec<BootRecord>,
) -> RunManifest {
    let boot1 = plan.dir.join("boot-1");
    let spec = spec_for(plan, &plan.dir, &boot1.join(INITRAMFS), 0);
    RunManifest {
        format_version: MANIFEST_FORMAT_VERSION,
        arch: plan.arch,
        kernel_key: plan.artifact.manifest.key.clone(),
        kernel_label: plan.artifact.label(),
        kernel_release: plan.artifact.manifest.kernel_release.clone(),
        image_digest: plan.image.manifest.digest.clone(),
        test_digests: plan.image.manifest.programs.clone(),
        qemu_version: qemu_version(plan.arch),
        accel: plan.accel,
        accel_reason: accel_reason.to_owned(),
        cmdline: spec.cmdline(),
        qemu_command: format!(
            "cat {} {} > {} && {}",
            plan.image.path.display(),
            boot1.join(KEYS_ARCHIVE).display(),
            boot1.join(INITRAMFS).display(),
            spec.reproduce()
        ),
        seed: plan.seed,
        knobs: plan.knobs.clone(),
        tests: plan.tests.clone(),
        iterations: plan.iterations,
        duration_ms: plan.duration.as_millis() as u64,
        deadline_scale: plan.accel.deadline_scale(),
        reproduce: reproduce.to_owned(),
        boots,
        placement: Some(placement.clone()),
    }
}

/// Saves the manifest in the run directory. That is the record that does not depend on the
/// results store, so a manifest that cannot be saved there is said, not dropped.
pub(super) fn save_manifest(manifest: &RunManifest, dir: &Path) {
    if let Err(e) = manifest.save(dir) {
        let cause = std::error::Error::source(&e).map_or_else(String::new, |c| format!(": {c}"));
        tracing::warn!("failed to {e}{cause}");
    }
}
