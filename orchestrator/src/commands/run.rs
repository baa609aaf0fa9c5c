//! `lab run`: build through the cache, boot, run the guest tests over SSH, print a table.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::progress::BuildProgress;
use super::{kernel_requests, Context};
use crate::cli::RunArgs;
use crate::errors::{LabError, Outcome};
use crate::exec::{Batch, RunJob};
use crate::results::store::Recorder;
use crate::results::{OutcomeKind, TestOutcome};
use crate::run::{self, RunPlan, RunReport};

pub async fn run(ctx: &Context, args: &RunArgs) -> Result<Outcome, LabError> {
    let s = &ctx.settings;
    let requests = kernel_requests(ctx, &args.select)?;
    let tests: Vec<String> = if args.tests.tests.is_empty() {
        s.suite.clone()
    } else {
        args.tests.tests.clone()
    };
    let duration = args.duration.duration.unwrap_or(s.test_duration);
    if args.iterations == 0 {
        return Err(LabError::usage("--iterations", "must be at least 1"));
    }
    let knobs = args.knobs.pairs();
    let seed = args.seed.or_now();
    let exec = super::executor(ctx, Some(args.jobs.max(1)))?;
    let jobs = exec.slots();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let run_root = s
        .cache_dir
        .join("runs")
        .join(format!("{stamp}-{}", std::process::id()));
    let mut reproduce = std::env::args().collect::<Vec<_>>().join(" ");
    if args.seed.seed.is_none() {
        reproduce.push_str(&format!(" --seed {seed}"));
    }

    let mut plans = Vec::new();
    for req in &requests {
        let progress = BuildProgress::new(req.arch.name(), ctx.quiet);
        let report = |e| progress.event(e);
        let built = exec.build(req, &report).await;
        progress.finish();
        let built = built?;
        let base = crate::run::guest_image(&ctx.settings, req.arch, &tests).await?;
        let arch_dir = run_root.join(req.arch.name());
        let (accel, reason) = exec.choose_accel(&built.artifact, &base, &arch_dir).await;
        if !ctx.quiet {
            crate::errln!("lab: {}: {reason}", req.arch);
            crate::errln!(
                "lab: {}: kernel {} ({}), image {}",
                req.arch,
                &built.artifact.manifest.key[..12],
                built.artifact.label(),
                &base.manifest.digest[..12]
            );
        }
        plans.push((
            reason,
            RunPlan::new(
                built.artifact,
                base,
                accel,
                run::VmSize::of(s),
                tests.clone(),
                args.iterations,
                duration,
                knobs.clone(),
                seed,
                arch_dir,
            ),
        ));
    }

    // Shard iterations across VMs: one shard per job and arch, iterations split evenly.
    let mut shards = Vec::new();
    for (reason, plan) in &plans {
        let per_arch = jobs.min(plan.iterations as usize).max(1);
        let base_n = plan.iterations / per_arch as u32;
        let extra = plan.iterations % per_arch as u32;
        let mut first = 0;
        for k in 0..per_arch as u32 {
            let n = base_n + u32::from(k < extra);
            let mut p = plan.clone();
            p.iterations = n;
            p.seed = plan.seed.wrapping_add(u64::from(first) * 7919);
            p.dir = if per_arch > 1 {
                plan.dir.join(format!("shard-{k}"))
            } else {
                plan.dir.clone()
            };
            let mut job = RunJob::new(p, reason, &reproduce);
            // Shards need not share a host: an engine with many may spread them.
            job.host_group = shards.len();
            shards.push(job);
            first += n;
        }
    }
    let recorder = Arc::new(Recorder::open(&s.store.clone()));
    let batch = Batch {
        jobs: shards,
        recorder: Some(recorder.clone()),
    };
    let quiet = ctx.quiet;
    let on = |_: usize, o: &TestOutcome| {
        if !quiet {
            crate::errln!(
                "  {} {} #{}: {} {}",
                o.arch,
                o.test,
                o.iteration,
                o.kind,
                o.summary
            );
        }
    };
    let reports: Vec<RunReport> = exec.run(batch, &on).await;
    let recorded = recorder.finish();
    if !recorded.is_clean() {
        crate::errln!("lab: {recorded}");
    }
    let outcomes: Vec<&TestOutcome> = reports.iter().flat_map(|r| &r.outcomes).collect();
    if args.json.json {
        let all: Vec<_> = reports.iter().map(|r| serde_json::json!({"manifest": r.manifest, "outcomes": r.outcomes, "dir": r.dir})).collect();
        crate::outln!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
    } else {
        print_table(&outcomes);
        for r in &reports {
            let b: Vec<String> = r
                .manifest
                .boots
                .iter()
                .map(|b| match (b.ready_ms, b.ssh_ms) {
                    (Some(ready), Some(ssh)) => format!(
                        "ready {:.2}s, ssh {:.2}s",
                        ready as f64 / 1000.0,
                        ssh as f64 / 1000.0
                    ),
                    _ => format!("failed: {}", b.error.clone().unwrap_or_default()),
                })
                .collect();
            crate::outln!(
                "{} {} [{}] boots: {}",
                r.manifest.arch,
                r.manifest.kernel_label,
                r.manifest.accel.name(),
                b.join("; ")
            );
            crate::outln!("  run dir {}", r.dir.display());
        }
    }
    Ok(super::runs_outcome(outcomes.iter().copied()))
}

fn print_table(outcomes: &[&TestOutcome]) {
    let mut rows: BTreeMap<(String, String), Vec<&TestOutcome>> = BTreeMap::new();
    for o in outcomes {
        rows.entry((o.test.clone(), o.arch.to_string()))
            .or_default()
            .push(o);
    }
    // As wide as the longest name (kselftest names run to 46 characters), at least 22.
    let w = rows
        .keys()
        .map(|(t, _)| t.chars().count())
        .max()
        .unwrap_or(0)
        .max(22);
    crate::outln!(
        "{:<w$} {:<7} {:>4} {:>4} {:>5} {:>4} {:>5} {:>9}  evidence",
        "test",
        "arch",
        "pass",
        "fail",
        "crash",
        "hang",
        "infra",
        "samples"
    );
    for ((test, arch), os) in &rows {
        let count = |k: OutcomeKind| os.iter().filter(|o| o.kind == k).count();
        let evidence = os
            .iter()
            .find(|o| o.kind != OutcomeKind::Pass)
            .or(os.first())
            .map(|o| o.summary.clone())
            .unwrap_or_default();
        let evidence: String = evidence.chars().take(110).collect();
        // What the runs' metrics rest on: the measured operations, summed over the runs.
        let samples: u64 = os
            .iter()
            .filter_map(|o| o.result.as_ref())
            .map(|r| r.samples)
            .sum();
        crate::outln!(
            "{:<w$} {:<7} {:>4} {:>4} {:>5} {:>4} {:>5} {:>9}  {}",
            test,
            arch,
            count(OutcomeKind::Pass),
            count(OutcomeKind::Fail),
            count(OutcomeKind::KernelCrash),
            count(OutcomeKind::Hang),
            count(OutcomeKind::InfraError),
            samples,
            evidence
        );
    }
}
