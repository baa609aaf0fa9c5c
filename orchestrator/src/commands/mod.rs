//! One file per verb. Each resolves its arguments against the settings once, calls into the
//! library, and owns what the user sees.

pub mod bisect;
pub mod build;
pub mod cache;
pub mod calibrate;
pub mod compare;
pub mod gate;
pub mod progress;
pub mod results;
pub mod run;
pub mod selftest;

use crate::arch::Arch;
use crate::cli::KernelSelect;
use crate::config::Settings;
use crate::errors::LabError;
use crate::exec::Local;
use crate::kernel::build::BuildRequest;

/// What every command gets: the resolved settings and the output mode.
#[derive(Debug, Clone)]
pub struct Context {
    pub settings: Settings,
    pub quiet: bool,
}

/// Where a verb's builds and boots happen: this host, `jobs` guests at once (`None`: as many
/// as its cores hold without overcommitting vCPUs). Says so when an asked number is lowered.
pub fn executor(ctx: &Context, jobs: Option<usize>) -> Local {
    let (local, note) = Local::new(&ctx.settings, jobs);
    if let Some(n) = note {
        crate::errln!("lab: {n}");
    }
    local
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
