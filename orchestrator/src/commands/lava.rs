//! `lab lava job|ingest`: a LAVA job that boots a lab kernel and runs lab's tests, and its
//! log read back into the results store (`crate::exec::lava`).

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::progress::BuildProgress;
use super::{kernel_requests, Context};
use crate::arch::Accel;
use crate::cli::{LavaCommand, LavaIngestArgs, LavaJobArgs};
use crate::errors::{LabError, Outcome};
use crate::exec::lava::{self, JobSpec};
use crate::exec::Placement;
use crate::kernel::cache::Cache;
use crate::results::manifest::BootRecord;
use crate::results::store::Recorder;
use crate::run::{self, RunPlan};

pub async fn run(ctx: &Context, cmd: &LavaCommand) -> Result<Outcome, LabError> {
    match cmd {
        LavaCommand::Job(args) => job(ctx, args).await,
        LavaCommand::Ingest(args) => ingest(ctx, args),
    }
}

fn bad_file(path: &Path, why: impl std::fmt::Display) -> LabError {
    LabError::usage("FILE", format!("{}: {why}", path.display()))
}

async fn job(ctx: &Context, args: &LavaJobArgs) -> Result<Outcome, LabError> {
    let s = &ctx.settings;
    let mut requests = kernel_requests(ctx, &args.select)?;
    if requests.len() != 1 {
        return Err(LabError::usage(
            "--arch",
            "a LAVA job boots one arch: name one, such as --arch x86_64",
        ));
    }
    let req = requests.remove(0);
    if args.iterations == 0 {
        return Err(LabError::usage("--iterations", "must be at least 1"));
    }
    let tests = if args.tests.tests.is_empty() {
        s.suite.clone()
    } else {
        args.tests.tests.clone()
    };
    let exec = super::executor(ctx, Some(1))?;
    let progress = BuildProgress::new(req.arch.name(), ctx.quiet);
    let report = |e| progress.event(e);
    let built = exec.build(&req, &report).await;
    progress.finish();
    let built = built?;
    let image = run::guest_image(s, req.arch, &tests).await?;
    let kernel = built.artifact.image();
    let kernel_bytes = std::fs::read(&kernel).map_err(|e| bad_file(&kernel, e))?;
    let base = args
        .url_base
        .clone()
        .unwrap_or_else(|| format!("file://{}", s.cache_dir.display()));
    let url = |p: &Path| -> Result<String, LabError> {
        let rel = p
            .strip_prefix(&s.cache_dir)
            .map_err(|_| bad_file(p, "is not under the cache folder that --url-base serves"))?;
        Ok(format!("{}/{}", base.trim_end_matches('/'), rel.display()))
    };
    let spec = JobSpec {
        arch: req.arch,
        kernel_key: built.artifact.manifest.key.clone(),
        kernel_label: built.artifact.label(),
        kernel_url: url(&kernel)?,
        kernel_sha256: hex::encode(Sha256::digest(&kernel_bytes)),
        image_digest: image.manifest.digest.clone(),
        ramdisk_url: url(&image.path)?,
        tests,
        iterations: args.iterations,
        duration: args.duration.duration.unwrap_or(s.test_duration),
        seed: args.seed.or_now(),
        // A LAVA QEMU device may or may not have KVM: the guest's deadlines assume TCG.
        accel: if args.device_type == "qemu" {
            Accel::Tcg
        } else {
            Accel::Native
        },
        device_type: args.device_type.clone(),
    };
    let text = lava::job_definition(&spec);
    match &args.output {
        Some(p) => {
            std::fs::write(p, &text).map_err(|e| bad_file(p, e))?;
            if !ctx.quiet {
                crate::errln!(
                    "lab: wrote {} ({} {}, {} test(s) x {}); after it ran: lab lava ingest {} LOG --device NAME",
                    p.display(),
                    spec.kernel_label,
                    spec.arch,
                    spec.tests.len(),
                    spec.iterations,
                    p.display()
                );
            }
        }
        None => crate::outln!("{text}"),
    }
    Ok(Outcome::Pass)
}

fn ingest(ctx: &Context, args: &LavaIngestArgs) -> Result<Outcome, LabError> {
    let s = &ctx.settings;
    let job_text = std::fs::read_to_string(&args.job).map_err(|e| bad_file(&args.job, e))?;
    let meta = lava::read_job(&job_text).map_err(|e| bad_file(&args.job, e))?;
    let log_text = std::fs::read_to_string(&args.log).map_err(|e| bad_file(&args.log, e))?;
    let log = lava::read_log(&log_text).map_err(|e| bad_file(&args.log, e))?;
    let artifact = Cache::new(&s.cache_dir)
        .get(&meta.kernel_key)
        .ok_or_else(|| {
            bad_file(
                &args.job,
                format!(
                    "its kernel {} is not in this lab's cache ({})",
                    &meta.kernel_key,
                    s.cache_dir.display()
                ),
            )
        })?;
    let image = crate::guest::image::cached(&s.cache_dir, meta.arch, &meta.image_digest)
        .ok_or_else(|| {
            bad_file(
                &args.job,
                format!(
                    "its guest image {} is not in this lab's cache",
                    meta.image_digest
                ),
            )
        })?;
    let id = args.job_id.clone().unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string()
    });
    let dir = s
        .cache_dir
        .join("runs")
        .join(format!("lava-{}-{id}", sanitize(&args.device)));
    let plan = RunPlan::new(
        artifact,
        image,
        meta.accel,
        run::VmSize::of(s),
        meta.tests.clone(),
        meta.iterations,
        meta.duration,
        Vec::new(),
        meta.seed,
        dir.clone(),
    );
    // The evidence first: the job, its log and the console as LAVA logged it.
    let boot_dir = dir.join("boot-1");
    std::fs::create_dir_all(&boot_dir).map_err(|e| bad_file(&boot_dir, e))?;
    let console = boot_dir.join("console.log");
    let keep = |name: &Path, text: &str| std::fs::write(name, text).map_err(|e| bad_file(name, e));
    keep(&dir.join("job.yaml"), &job_text)?;
    keep(&dir.join("lava.log"), &log_text)?;
    keep(&console, &(log.console.join("\n") + "\n"))?;
    let outcomes = lava::outcomes(&meta, &log);
    let placement = Placement {
        engine: "lava".into(),
        job: args.job_id.clone(),
        node: args.device.clone(),
    };
    let boots = vec![BootRecord {
        ready_ms: None,
        guest_uptime_ms: None,
        ssh_ms: None,
        console,
        error: log
            .result
            .as_ref()
            .and_then(|(r, msg)| (r != "pass").then(|| msg.clone().unwrap_or_else(|| r.clone()))),
    }];
    let reason = format!("LAVA device {} ({})", args.device, meta.accel.name());
    let reproduce = format!("lavacli jobs submit {}", args.job.display());
    let recorder = Arc::new(Recorder::open(&s.store));
    let recorded = plan.begin_record(&recorder, None, None, None, &placement);
    for o in &outcomes {
        recorder.add_outcome(&recorded, o);
    }
    let mut report = run::recorded(&plan, &reason, &reproduce, &placement, boots, outcomes);
    // The boot was LAVA's, not a QEMU command line of lab's: say what it was.
    let spec = JobSpec {
        arch: meta.arch,
        kernel_key: meta.kernel_key.clone(),
        kernel_label: report.manifest.kernel_label.clone(),
        kernel_url: String::new(),
        kernel_sha256: String::new(),
        image_digest: meta.image_digest.clone(),
        ramdisk_url: String::new(),
        tests: meta.tests.clone(),
        iterations: meta.iterations,
        duration: meta.duration,
        seed: meta.seed,
        accel: meta.accel,
        device_type: String::new(),
    };
    report.manifest.cmdline = spec.cmdline();
    report.manifest.qemu_command = match &args.job_id {
        Some(j) => format!("LAVA job {j} on device {}", args.device),
        None => format!("a LAVA job on device {}", args.device),
    };
    report.manifest.qemu_version = format!("LAVA device {}", args.device);
    if let Err(e) = report.manifest.save(&dir) {
        crate::errln!("lab: {e}");
    }
    recorder.finish_run(&recorded, &report.manifest);
    let summary = recorder.finish();
    if !summary.is_clean() {
        crate::errln!("lab: {summary}");
    }
    if args.json.json {
        let v = serde_json::json!({"manifest": report.manifest, "outcomes": report.outcomes, "dir": report.dir});
        crate::outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        for o in &report.outcomes {
            crate::outln!(
                "  {} {} #{}: {} {}",
                o.arch,
                o.test,
                o.iteration,
                o.kind,
                o.summary
            );
        }
        crate::outln!(
            "{} {} on LAVA device {}: {} outcome(s), run dir {}",
            meta.arch,
            report.manifest.kernel_label,
            args.device,
            report.outcomes.len(),
            dir.display()
        );
    }
    Ok(super::runs_outcome(&report.outcomes))
}

/// A device name as a folder name.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
