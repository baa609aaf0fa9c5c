//! `lab build`: build kernels through the cache and print their keys and paths.

use serde::Serialize;

use super::progress::BuildProgress;
use super::{kernel_requests, Context};
use crate::cli::BuildArgs;
use crate::errors::{LabError, Outcome};
use crate::kernel::build::Built;

#[derive(Debug, Serialize)]
struct BuildJson<'a> {
    arch: String,
    label: String,
    key: &'a str,
    cached: bool,
    seconds: f64,
    compiled: u64,
    touched: &'a [String],
    dir: String,
    image: String,
    vmlinux: String,
    config: String,
    system_map: String,
    log: String,
    manifest: String,
}

pub async fn run(ctx: &Context, args: &BuildArgs) -> Result<Outcome, LabError> {
    let requests = kernel_requests(ctx, &args.select)?;
    let exec = super::executor(ctx, None)?;
    let mut results: Vec<Built> = Vec::new();
    for req in &requests {
        // Progress goes to stderr even with --json (that is stdout's): a CI log that keeps
        // stderr still sees a line at least every 30 s.
        let progress = BuildProgress::new(req.arch.name(), ctx.quiet);
        let report = |e| progress.event(e);
        let built = exec.build(req, &report).await;
        progress.finish();
        let built = built?;
        if !args.json.json && !ctx.quiet {
            print_human(&built);
        }
        results.push(built);
    }
    if args.json.json {
        let out: Vec<BuildJson> = results
            .iter()
            .map(|b| {
                let a = &b.artifact;
                BuildJson {
                    arch: a.manifest.arch.to_string(),
                    label: a.label(),
                    key: &a.manifest.key,
                    cached: b.cached,
                    seconds: b.seconds,
                    compiled: b.compiled,
                    touched: &b.touched,
                    dir: a.dir.display().to_string(),
                    image: a.image().display().to_string(),
                    vmlinux: a.vmlinux().display().to_string(),
                    config: a.config().display().to_string(),
                    system_map: a.system_map().display().to_string(),
                    log: a.log().display().to_string(),
                    manifest: a.dir.join("manifest.json").display().to_string(),
                }
            })
            .collect();
        crate::outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    }
    Ok(Outcome::Pass)
}

fn print_human(b: &Built) {
    let a = &b.artifact;
    let how = if b.cached {
        "cache hit".to_owned()
    } else {
        format!(
            "built, {} compile steps, {} source files changed",
            b.compiled,
            b.touched.len()
        )
    };
    crate::outln!(
        "{} {} [{}] {:.1}s ({how})",
        a.manifest.arch,
        a.label(),
        a.manifest.kernel_release,
        b.seconds
    );
    crate::outln!("  key      {}", a.manifest.key);
    crate::outln!(
        "  source   {} {} ({})",
        a.manifest.source.kind,
        a.manifest.source.id,
        a.manifest.source.detail
    );
    crate::outln!("  image    {}", a.image().display());
    crate::outln!("  vmlinux  {}", a.vmlinux().display());
    crate::outln!("  config   {}", a.config().display());
    crate::outln!("  log      {}", a.log().display());
}
