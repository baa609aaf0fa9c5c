//! `lab cache`: list, show and prune the kernel artifact cache.

use super::Context;
use crate::cli::CacheCommand;
use crate::config::parse_duration;
use crate::errors::{LabError, Outcome};
use crate::kernel::cache::Cache;
use crate::results::run_dirs;
use crate::results::store::Store;
use std::path::PathBuf;

fn parse_age(s: &str) -> Option<u64> {
    if let Some(days) = s.strip_suffix('d') {
        return days.trim().parse::<u64>().ok().map(|d| d * 86_400);
    }
    parse_duration(s).map(|d| d.as_secs())
}

/// `lab cache prune --runs`: run folders beyond `keep` or older than `age`, except those of
/// open sessions.
fn prune_runs(
    ctx: &Context,
    keep: Option<usize>,
    age: Option<u64>,
    now: u64,
) -> Result<Outcome, LabError> {
    let cache_dir = &ctx.settings.cache_dir;
    let store = Store::open(&ctx.settings.store)?;
    let open: Vec<PathBuf> = store
        .open_session_run_dirs()?
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let runs_dir = cache_dir.join("runs");
    let done = run_dirs::prune(&runs_dir, keep, age, now, &open)
        .map_err(crate::io_error::io("cannot prune", &runs_dir))?;
    crate::outln!(
        "pruned {} run folder(s) under {}, {:.1} MiB freed (reports kept)",
        done.removed.len(),
        runs_dir.display(),
        done.bytes_freed as f64 / (1024.0 * 1024.0)
    );
    for p in &done.kept_open {
        crate::outln!(
            "kept {}: its session is open (resume it, or start anew with --fresh)",
            p.display()
        );
    }
    Ok(Outcome::Pass)
}

pub fn run(ctx: &Context, cmd: &CacheCommand) -> Result<Outcome, LabError> {
    let cache = Cache::new(&ctx.settings.cache_dir);
    match cmd {
        CacheCommand::List { json } => {
            let list = cache.list();
            if *json {
                let manifests: Vec<_> = list.iter().map(|a| &a.manifest).collect();
                crate::outln!(
                    "{}",
                    serde_json::to_string_pretty(&manifests).unwrap_or_default()
                );
            } else if list.is_empty() {
                crate::outln!("cache {} is empty", cache.artifacts().display());
            } else {
                crate::outln!(
                    "{:<14} {:<7} {:<40} {:>8} {:>8}",
                    "key",
                    "arch",
                    "patches",
                    "MiB",
                    "build s"
                );
                for a in &list {
                    crate::outln!(
                        "{:<14} {:<7} {:<40} {:>8.1} {:>8.1}",
                        &a.manifest.key[..12],
                        a.manifest.arch.to_string(),
                        a.label(),
                        Cache::size(a) as f64 / (1024.0 * 1024.0),
                        a.manifest.build_seconds
                    );
                }
            }
        }
        CacheCommand::Show { key } => {
            let a = cache.find(key)?;
            crate::outln!(
                "{}",
                serde_json::to_string_pretty(&a.manifest).unwrap_or_default()
            );
            crate::outln!("# {}", a.dir.display());
        }
        CacheCommand::Prune {
            runs,
            keep,
            older_than,
            all,
        } => {
            let age = match older_than {
                Some(s) => Some(parse_age(s).ok_or_else(|| {
                    LabError::usage(
                        "--older-than",
                        format!("{s:?}: use an age like 14d, 12h or 90m"),
                    )
                })?),
                None => None,
            };
            if keep.is_none() && age.is_none() && !all {
                return Err(LabError::usage(
                    "lab cache prune",
                    "needs --keep N, --older-than AGE or --all",
                ));
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let keep = if *all { Some(0) } else { *keep };
            if *runs {
                return prune_runs(ctx, keep, age, now);
            }
            let removed = cache.prune(keep, age, now)?;
            let freed: u64 = removed.len() as u64;
            crate::outln!("removed {freed} cached kernel(s)");
        }
    }
    Ok(Outcome::Pass)
}
