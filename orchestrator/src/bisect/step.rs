//! One step of a bisection, carried out: the candidate's kernel built through the cache, its
//! guest booted, the test run as many times as asked, and the outcomes classified
//! ([`super::classify`]). The driver calls it for every step of a search; `lab bisect-step`
//! calls it once on a git checkout ([`test_checkout`]), for `git bisect run`.
//!
//! A step itself never fails: a kernel that does not build, or a guest that does not boot, is
//! a skip with its reason, and the search or `git bisect` decides what a skip means. Only what
//! comes before the build is an error: a patch set or kernel definition that cannot be read,
//! the guest image, the checkout's HEAD.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::arch::{Accel, Arch};
use crate::bisect::classify::{classify, first_line, StepResult, Want};
use crate::bisect::state::{BisectState, Space};
use crate::config::Settings;
use crate::errors::LabError;
use crate::exec::{self, Executor, RunJob, RunTag};
use crate::guest::image::BaseImage;
use crate::kernel::build::{BuildError, BuildRequest};
use crate::kernel::git;
use crate::kernel::patch::{self, PatchSet};
use crate::kernel::source::KernelDef;
use crate::results::store::Recorder;
use crate::run::RunPlan;

/// `lab bisect-step`'s question, resolved: which checkout, and how to test it.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    pub repo: PathBuf,
    pub test: String,
    pub arch: Arch,
    pub runs: u32,
    pub knobs: Vec<(String, String)>,
    /// Patch sets applied on top of the checkout.
    pub under: Vec<String>,
    pub config: Vec<String>,
    pub duration: Duration,
    pub match_crash: Option<String>,
}

/// What one checkout showed; `head` is its commit.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckoutVerdict {
    BuildFailed {
        head: String,
        why: String,
    },
    Skip {
        head: String,
        why: String,
    },
    Runs {
        head: String,
        runs: u32,
        failures: u32,
    },
}

/// What every run of one step shares.
pub(super) struct Trial<'a> {
    test: &'a str,
    duration: Duration,
    knobs: &'a [(String, String)],
    seed: u64,
    /// The crashes that count as bad.
    want: Want<'a>,
}

impl<'a> Trial<'a> {
    /// The same trial with a seed of its own for its `k`-th boot.
    pub(super) fn reseeded(mut self, k: u64) -> Trial<'a> {
        self.seed = self.seed.wrapping_add(k.wrapping_mul(104_729));
        self
    }

    /// The next step of `state`, on candidate `index`. Each step gets its own seed, so that a
    /// candidate tested twice does not see the same runs again. At the bad end, before a
    /// fingerprint is known, the first crash is adopted ([`Want::AdoptFirst`]).
    pub(super) fn next_of(state: &'a BisectState, index: usize) -> Trial<'a> {
        Trial::new(state, index == state.space.n())
    }

    /// The runs that confirm a culprit, on the bad end without it: not a candidate, so it
    /// adopts no crash (without a fingerprint, any crash there makes it a skip).
    pub(super) fn confirming(state: &'a BisectState) -> Trial<'a> {
        Trial::new(state, false)
    }

    fn new(state: &'a BisectState, at_bad_end: bool) -> Trial<'a> {
        Trial {
            test: &state.test,
            duration: Duration::from_millis(state.duration_ms),
            knobs: &state.knobs,
            seed: state.seed.wrapping_add(state.steps.len() as u64 * 7919),
            want: Want::of(state.match_crash.as_deref(), at_bad_end),
        }
    }
}

/// The guest a step boots, on which accelerator, and the executor that builds and boots it.
#[derive(Clone, Copy)]
pub(super) struct Guest<'a> {
    pub(super) exec: &'a dyn Executor,
    pub(super) image: &'a BaseImage,
    pub(super) accel: Accel,
    pub(super) reason: &'a str,
}

/// The build request of candidate `i`.
pub(super) fn request_at(
    s: &Settings,
    state: &BisectState,
    i: usize,
) -> Result<BuildRequest, LabError> {
    let mut sets = Vec::new();
    for name in &state.under {
        sets.push(patch::load_set(name, &s.patches_dir, &s.root)?);
    }
    let kernel = match &state.space {
        Space::Git {
            commits,
            repo,
            definition,
        } => {
            // The stored commits and repository are what is built; the definition only names
            // them (in manifests), so one gone since the bisection started is not an error.
            let def = KernelDef::find(s, definition).unwrap_or_else(|e| {
                tracing::debug!(
                    definition,
                    "{e}; building the bisected commits of {} as they are",
                    repo.display()
                );
                KernelDef::git(repo, "HEAD")
            });
            let sha = commits.get(i).map(|c| c.0.clone()).unwrap_or_default();
            def.with_ref(&sha)
        }
        Space::Series { series, .. } => {
            let all = patch::load_set(series, &s.patches_dir, &s.root)?;
            if i > 0 {
                sets.push(PatchSet {
                    name: format!("{}[1..={i}]", all.name),
                    source: all.source.clone(),
                    patches: all.patches.into_iter().take(i).collect(),
                });
            }
            KernelDef::load(&s.kernel, &s.kernels_dir)?
        }
    };
    Ok(BuildRequest::with_settings(
        s,
        state.arch,
        kernel,
        sets,
        &state.config,
    ))
}

/// Builds `req` and chooses the accelerator with it.
pub(super) async fn probe_accel(
    exec: &dyn Executor,
    req: &BuildRequest,
    image: &BaseImage,
    dir: &Path,
) -> Result<(Accel, String), BuildError> {
    let built = exec.build(req, &|_| {}).await?;
    let chosen = exec.choose_accel(&built.artifact, image, dir).await;
    tracing::info!(accel = %chosen.1, "accelerator of the bisection's guests");
    Ok(chosen)
}

/// Builds `req`, boots it and runs the test `runs` times, recording the runs in the store
/// when `record` names the session and batch.
pub(super) async fn run_step(
    s: &Settings,
    trial: &Trial<'_>,
    guest: Guest<'_>,
    req: &BuildRequest,
    runs: u32,
    dir: &Path,
    record: Option<(&Arc<Recorder>, i64, u32)>,
) -> StepResult {
    let built = match guest.exec.build(req, &|_| {}).await {
        Ok(b) => b,
        Err(e) => {
            tracing::info!(dir = %dir.display(), "bisection step: build failed: {e}");
            return StepResult::Skip {
                why: format!("build failed: {}", first_line(&e.to_string())),
                kernel_key: None,
            };
        }
    };
    let key = built.artifact.manifest.key.clone();
    tracing::debug!(kernel = %key, runs, dir = %dir.display(), "bisection step");
    let plan = RunPlan::new(
        built.artifact,
        guest.image.clone(),
        guest.accel,
        crate::run::VmSize::of(s),
        vec![trial.test.to_owned()],
        runs,
        trial.duration,
        trial.knobs.to_vec(),
        trial.seed,
        dir.to_owned(),
    );
    let mut job = RunJob::new(plan, guest.reason, "lab bisect");
    job.tag = RunTag {
        session: record.map(|r| r.1),
        side: None,
        batch: record.map(|r| r.2),
    };
    let recorder = record.map(|r| r.0.clone());
    let report = exec::run_one(guest.exec, job, recorder, &|_| {}).await;
    classify(&report.outcomes, trial.want, key)
}

/// `lab bisect-step`'s verdict on the checkout at `req.repo`: its HEAD built with the lab's
/// configs and the patch sets on top, booted, and the test run `req.runs` times.
pub async fn test_checkout(
    s: &Settings,
    exec: &dyn Executor,
    req: &CheckoutRequest,
) -> Result<CheckoutVerdict, LabError> {
    let head = git::run(&req.repo, &["rev-parse", "HEAD"])?;
    let mut sets = Vec::new();
    for name in &req.under {
        sets.push(patch::load_set(name, &s.patches_dir, &s.root)?);
    }
    let build = BuildRequest::with_settings(
        s,
        req.arch,
        KernelDef::git(&req.repo, &head),
        sets,
        &req.config,
    );
    let image = crate::run::guest_image(s, req.arch, std::slice::from_ref(&req.test)).await?;
    // The pid keeps two checks of one commit apart (two bisections at once, or a rerun).
    let dir = s.cache_dir.join("runs").join(format!(
        "bisect-step-{}-{}",
        head.get(..12).unwrap_or(&head),
        std::process::id()
    ));
    let (accel, reason) = match probe_accel(exec, &build, &image, &dir).await {
        Ok(chosen) => chosen,
        Err(e) => {
            return Ok(CheckoutVerdict::BuildFailed {
                head,
                why: first_line(&e.to_string()),
            })
        }
    };
    let trial = Trial {
        test: &req.test,
        duration: req.duration,
        knobs: &req.knobs,
        seed: 1,
        // `git bisect run` has no ends to adopt a crash at: without --match-crash every crash
        // is a skip.
        want: Want::of(req.match_crash.as_deref(), false),
    };
    let guest = Guest {
        exec,
        image: &image,
        accel,
        reason: &reason,
    };
    let result = run_step(s, &trial, guest, &build, req.runs.max(1), &dir, None).await;
    Ok(match result {
        StepResult::Skip { why, .. } => CheckoutVerdict::Skip { head, why },
        StepResult::Runs { runs, failures, .. } => CheckoutVerdict::Runs {
            head,
            runs,
            failures,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bisect::state::{BisectRequest, StepRecord};

    #[test]
    fn each_step_runs_with_its_own_seed_and_the_state_s_conditions() {
        let mut state = BisectRequest::example_series(3)
            .into_state()
            .expect("valid");
        let first = Trial::next_of(&state, 1);
        assert_eq!(first.seed, 5);
        assert_eq!(first.want, Want::Nothing);
        assert_eq!(
            Trial::next_of(&state, 3).want,
            Want::AdoptFirst,
            "3 is the bad end"
        );
        assert_eq!(Trial::confirming(&state).want, Want::Nothing);
        assert_eq!(first.duration, Duration::from_millis(200));
        assert_eq!(first.knobs, [("k".to_owned(), "1".to_owned())]);
        state.steps.push(StepRecord {
            index: 3,
            id: "patch 3: p3".into(),
            runs: 3,
            failures: 3,
            skipped: None,
            kernel_key: None,
            image_sha256: None,
            run_dir: String::new(),
            top: (3, 0.5),
            seconds: 1.0,
        });
        assert_eq!(Trial::next_of(&state, 1).seed, 5 + 7919);
        state.match_crash = Some("d6a39672cb48".into());
        assert_eq!(
            Trial::next_of(&state, 3).want,
            Want::Fingerprint("d6a39672cb48"),
            "the adopted fingerprint holds from then on, at the bad end too"
        );
    }
}
