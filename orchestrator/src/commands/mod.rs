//! One file per verb. Each resolves its arguments against the settings once, calls into the
//! library, and owns what the user sees.

pub mod bisect;
pub mod build;
pub mod cache;
pub mod calibrate;
pub mod compare;
pub mod gate;
pub mod lava;
pub mod progress;
pub mod results;
pub mod run;
pub mod selftest;
pub mod worker;

use crate::arch::Arch;
use crate::cli::KernelSelect;
use crate::config::EngineKind;
use crate::config::Settings;
use crate::errors::{LabError, Outcome};
use crate::exec::{Executor, Local, Slurm};
use crate::kernel::build::BuildRequest;

/// What every command gets: the resolved settings and the output mode.
#[derive(Debug, Clone)]
pub struct Context {
    pub settings: Settings,
    pub quiet: bool,
    /// The board of `--target`: runs boot there instead of in QEMU.
    pub target: Option<crate::config::Target>,
}

/// Where a verb's builds and boots happen: the engine of `[engine] kind` (or `--engine`).
/// Locally, `jobs` guests at once (`None`: as many as the cores hold without overcommitting
/// vCPUs), said when an asked number is lowered; on a cluster, as many as its run partition
/// holds.
pub fn executor(ctx: &Context, jobs: Option<usize>) -> Result<Box<dyn Executor>, LabError> {
    if let Some(t) = &ctx.target {
        if !ctx.quiet {
            crate::errln!(
                "lab: target {}: {} {}@{}:{}, kernels installed by: {}",
                t.name,
                t.arch,
                t.user,
                t.host,
                t.port,
                t.install
            );
        }
        return Ok(Box::new(crate::exec::Board::new(&ctx.settings, t.clone())));
    }
    match ctx.settings.engine.kind {
        EngineKind::Local => {
            let (local, note) = Local::new(&ctx.settings, jobs);
            if let Some(n) = note {
                crate::errln!("lab: {n}");
            }
            Ok(Box::new(local))
        }
        EngineKind::Slurm => {
            let slurm = Slurm::new(&ctx.settings)?;
            if !ctx.quiet {
                crate::errln!(
                    "lab: engine slurm: {} guests at once on partition {}, jobs named {}",
                    slurm.slots(),
                    ctx.settings.engine.slurm_run_partition,
                    slurm.job_name()
                );
            }
            for (pid, ids) in slurm.orphans() {
                crate::errln!(
                    "lab: engine slurm: cancelled job(s) {} left by an earlier lab on this host (pid {pid}, gone)",
                    ids.join(", ")
                );
            }
            Ok(Box::new(slurm))
        }
    }
}

/// How a verb that only runs tests ends: a kernel failure is a result (1), infra-errors
/// alone are infrastructure (3), else a pass.
pub fn runs_outcome<'a>(
    outcomes: impl IntoIterator<Item = &'a crate::results::TestOutcome>,
) -> Outcome {
    let (mut failed, mut infra) = (false, false);
    for o in outcomes {
        failed |= o.kind.is_kernel_failure();
        infra |= o.kind == crate::results::OutcomeKind::InfraError;
    }
    if failed {
        Outcome::Regression
    } else if infra {
        Outcome::InfraOnly
    } else {
        Outcome::Pass
    }
}

/// Turns `--arch/--patches/--config/--kernel` into one build request per arch.
pub fn kernel_requests(ctx: &Context, sel: &KernelSelect) -> Result<Vec<BuildRequest>, LabError> {
    let s = &ctx.settings;
    let arches: Vec<Arch> = sel.arch.resolve(&s.arches);
    if arches.is_empty() {
        return Err(LabError::usage("--arch", "names no architecture"));
    }
    Ok(BuildRequest::for_arches(
        s,
        &arches,
        sel.kernel.as_deref(),
        &sel.stack.patches,
        &sel.stack.config,
    )?)
}
