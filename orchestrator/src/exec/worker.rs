//! The node's half of a cluster engine: `lab worker run FILE` and `lab worker build FILE`.
//!
//! A worker does what the controller wrote in FILE and leaves its results where the
//! controller reads them: run folders (`results.jsonl`, `manifest.json` with the job and the
//! node) and kernels in the shared cache. It never writes the results store; the controller
//! ingests. Its guests and builds run in their own process groups, so a job cancelled with
//! `scancel` (SIGTERM) takes them down with it.

use std::path::Path;

use super::slurm::{placement_from_env, GroupFile, GROUP_FORMAT};
use super::EngineError;
use crate::config::Settings;
use crate::kernel::build::{self, BuildError, BuildRequest, Built};
use crate::results::TestOutcome;

fn read(path: &Path) -> Result<String, EngineError> {
    std::fs::read_to_string(path).map_err(|source| EngineError::Read {
        path: path.to_owned(),
        source,
    })
}

fn job_file(path: &Path, why: impl std::fmt::Display) -> EngineError {
    EngineError::JobFile {
        path: path.to_owned(),
        why: why.to_string(),
    }
}

/// Makes the runs of one host group, in order, on this node. Returns how many were made.
pub async fn run_group(
    path: &Path,
    on: &(dyn Fn(&TestOutcome) + Send + Sync),
) -> Result<usize, EngineError> {
    let group: GroupFile = serde_json::from_str(&read(path)?).map_err(|e| job_file(path, e))?;
    if group.format != GROUP_FORMAT {
        return Err(job_file(
            path,
            format!("format {}, this lab reads {GROUP_FORMAT}", group.format),
        ));
    }
    let placement = placement_from_env();
    tracing::info!(job = ?placement.job, node = %placement.node, runs = group.runs.len(), "worker: runs");
    for r in &group.runs {
        if crate::process::interrupted().is_some() {
            break;
        }
        crate::run::run(&r.plan, &r.accel_reason, &r.reproduce, &placement, on).await;
    }
    Ok(group.runs.len())
}

/// Builds the request in `path` into the lab's cache on this node: the job file's error,
/// or the build's outcome.
pub async fn build(s: &Settings, path: &Path) -> Result<Result<Built, BuildError>, EngineError> {
    let req: BuildRequest = serde_json::from_str(&read(path)?).map_err(|e| job_file(path, e))?;
    tracing::info!(arch = %req.arch, "worker: build");
    Ok(build::build(&req, &s.cache_dir, &|_| {}).await)
}
