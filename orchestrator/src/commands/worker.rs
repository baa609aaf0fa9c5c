//! `lab worker run|build FILE`: a cluster job's work (`crate::exec::worker`).

use super::Context;
use crate::cli::WorkerCommand;
use crate::errors::{LabError, Outcome};
use crate::exec::worker;

pub async fn run(ctx: &Context, cmd: &WorkerCommand) -> Result<Outcome, LabError> {
    match cmd {
        WorkerCommand::Run { file } => {
            let quiet = ctx.quiet;
            let on = |o: &crate::results::TestOutcome| {
                if !quiet {
                    crate::errln!("  {} {} #{}: {}", o.arch, o.test, o.iteration, o.kind);
                }
            };
            let n = worker::run_group(file, &on).await?;
            if crate::process::interrupted().is_some() {
                return Err(LabError::Interrupted);
            }
            tracing::info!(runs = n, "worker: done");
            Ok(Outcome::Pass)
        }
        WorkerCommand::Build { file } => {
            let built = worker::build(&ctx.settings, file).await??;
            if !ctx.quiet {
                crate::errln!(
                    "lab worker: built {} ({})",
                    built.artifact.manifest.key,
                    built.artifact.label()
                );
            }
            Ok(Outcome::Pass)
        }
    }
}
