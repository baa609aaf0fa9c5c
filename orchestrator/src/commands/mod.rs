//! One file per verb. Each resolves its arguments against the settings once, calls into the
//! library, and owns what the user sees.

pub mod bisect;
pub mod build;
pub mod cache;
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
use crate::guest::image;
use crate::kernel::build::BuildRequest;
use crate::kernel::patch;
use crate::kernel::source::KernelDef;

/// What every command gets: the resolved settings and the output mode.
#[derive(Debug, Clone)]
pub struct Context {
    pub settings: Settings,
    pub quiet: bool,
}

/// Turns `--arch/--patches/--config/--kernel` into one build request per arch.
pub fn kernel_requests(ctx: &Context, sel: &KernelSelect) -> Result<Vec<BuildRequest>, LabError> {
    let s = &ctx.settings;
    let arches: Vec<Arch> = sel.arch.resolve(&s.arches);
    if arches.is_empty() {
        return Err(LabError::usage("--arch", "names no architecture"));
    }
    let kernel_name = sel.kernel.clone().unwrap_or_else(|| s.kernel.clone());
    let kernel = load_kernel_def(s, &kernel_name)?;
    let mut sets = Vec::new();
    for name in sel
        .stack
        .patches
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty() && *n != "base")
    {
        sets.push(patch::load_set(name, &s.patches_dir, &s.root)?);
    }
    Ok(arches
        .into_iter()
        .map(|arch| build_request(s, arch, kernel.clone(), sets.clone(), &sel.stack.config))
        .collect())
}

/// One build request with the lab's configs: the base, its fragments, the arch fragment,
/// and `extra` fragments on top.
pub fn build_request(
    s: &Settings,
    arch: Arch,
    kernel: KernelDef,
    patch_sets: Vec<crate::kernel::patch::PatchSet>,
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

/// The guest image of one arch, with the programs of `tests`.
pub async fn guest_image(
    ctx: &Context,
    arch: Arch,
    tests: &[String],
) -> Result<crate::guest::image::BaseImage, LabError> {
    let s = &ctx.settings;
    let inputs = image::ImageInputs {
        workspace: s.guest_source.clone(),
        cache: s.cache_dir.clone(),
        tests: tests.to_vec(),
    };
    let programs = image::build_programs(&inputs, arch).await?;
    Ok(image::assemble(&inputs, arch, &programs)?)
}

/// Loads a kernel definition by name (`kernels/<name>.toml`) or by path, relative to the lab
/// root or absolute.
pub fn load_kernel_def(s: &Settings, name: &str) -> Result<KernelDef, LabError> {
    KernelDef::load(name, &s.kernels_dir).or_else(|e| {
        let p = s.resolve_path(name);
        if p.is_file() {
            KernelDef::load(&p.to_string_lossy(), &s.kernels_dir).map_err(LabError::from)
        } else {
            Err(LabError::from(e))
        }
    })
}
