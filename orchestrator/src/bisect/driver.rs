//! The bisection engine: drives a [`Search`](super::search::Search) over a [`Space`] with
//! real builds and real guests at every step, keeps the [`BisectState`] in the results store
//! so that a bisection can be resumed, and tells its caller what happens through [`Event`]s.
//! It never prints: the verb that called it owns the terminal.
//!
//! Each step is carried out by [`super::step`]: one candidate built, booted and run as many
//! times as the search asked, its outcomes classified by [`super::classify`] (a build or boot
//! failure is a skip, never bad, and so is a crash with another fingerprint than the one
//! bisected). The two ends are different: the search knows them to be good and bad, so an
//! end that cannot be tested stops the bisection with an error instead of being skipped.
//!
//! Persistence: a bisection is a session of kind `bisect` in the results store, keyed by
//! [`BisectState::key`], whose state is rewritten after every step through the store's
//! [`Recorder`] (a store that fails mid-way is reported once and the bisection goes on; every
//! run stays whole in its run directory). An interrupt loses at most the step under way, and
//! `lab bisect --continue` replays the search from the stored log.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::arch::{Accel, Arch};
use crate::bisect::classify::StepResult;
use crate::bisect::search::{Conclusion, ConfirmPlan, Next, Observation, SearchConfig};
use crate::bisect::state::{
    short, BisectRequest, BisectState, Space, StepRecord, STATE_FORMAT_VERSION,
};
use crate::bisect::step::{probe_accel, request_at, run_step, Guest, Trial};
use crate::config::Settings;
use crate::errors::{BisectError, LabError};
use crate::exec::Executor;
use crate::io_error::io;
use crate::kernel::cache::Cache;
use crate::kernel::git;
use crate::kernel::patch::{self, PatchSet};
use crate::kernel::source::{DefKind, KernelDef};
use crate::results::store::{RecordSummary, Recorder, SessionRow, Store};

/// What the driver tells whoever shows progress. Candidate ids are given whole (a commit's
/// full hash, or `patch i: label`); [`short`] is how they are shown.
#[derive(Debug, Clone)]
pub enum Event {
    /// The driver takes the bisection's steps from here on (a new one, or a resumed one).
    Started {
        session: i64,
        test: String,
        arch: Arch,
        good: String,
        bad: String,
        candidates: usize,
    },
    /// Step `number` (counted over the whole bisection) runs the test `runs` times on
    /// candidate `index`.
    Testing {
        number: usize,
        index: usize,
        id: String,
        subject: String,
        runs: u32,
    },
    /// The step's runs are in: `failures` of `runs` failed, and candidate `top` (`top_id`)
    /// now holds `probability`.
    Step {
        number: usize,
        index: usize,
        runs: u32,
        failures: u32,
        top: usize,
        top_id: String,
        probability: f64,
    },
    /// The bad end crashed and no fingerprint was given: its crash (`fingerprint`, with its
    /// `id`) is the one bisected from here on.
    Adopted { id: String, fingerprint: String },
    /// The step told nothing about the culprit.
    Skip {
        number: usize,
        index: usize,
        why: String,
    },
    /// The bad end (`bad`) passed all its `runs` runs: there is nothing to bisect.
    NotReproduced {
        test: String,
        bad: String,
        runs: u64,
    },
    /// The search ended; `None` when the test did not reproduce.
    Concluded { conclusion: Option<Conclusion> },
    /// What the bad end without the culprit showed (`--confirm`).
    Confirm { result: String },
    /// The culprit's kernel is byte-identical to its parent's: it cannot be the cause.
    IdenticalToParent { culprit: String },
    /// Some of what the bisection wrote did not reach the results store.
    Unrecorded(RecordSummary),
}

/// Where a bisection's session stands after [`begin`].
#[derive(Debug, Clone)]
pub struct Begun {
    pub session: i64,
    pub state: BisectState,
    /// The same bisection was unfinished in the store: `state` is the stored one.
    pub resumed: bool,
}

/// Opens the results store that bisections are kept in.
pub fn open_store(s: &Settings) -> Result<Store, LabError> {
    Ok(Store::open(&s.store.clone())?)
}

/// A stored bisection: session `id` (finished or not), or else the latest bisect session, the
/// latest unfinished one if `open_only`; `None` when there is none.
pub fn load(
    store: &Store,
    id: Option<i64>,
    open_only: bool,
) -> Result<Option<(i64, BisectState)>, LabError> {
    let row = match id {
        Some(id) => store.session(id)?,
        None => latest_session(store, open_only)?,
    };
    let Some(row) = row else {
        return Ok(None);
    };
    let state: BisectState = serde_json::from_str(row.state_json.as_deref().unwrap_or(""))
        .map_err(|source| BisectError::State {
            session: row.id,
            source,
        })?;
    if state.format_version != STATE_FORMAT_VERSION {
        return Err(BisectError::OldState {
            session: row.id,
            found: state.format_version,
            expected: STATE_FORMAT_VERSION,
        }
        .into());
    }
    Ok(Some((row.id, state)))
}

fn latest_session(store: &Store, open_only: bool) -> Result<Option<SessionRow>, LabError> {
    Ok(store
        .sessions(200)?
        .into_iter()
        .find(|s| s.kind == "bisect" && (!open_only || s.finished_at.is_none())))
}

/// Begins `state`'s session in the store, or finds the same bisection unfinished there and
/// goes on with its stored state.
pub fn begin(store: &mut Store, state: BisectState) -> Result<Begun, LabError> {
    match store.open_session("bisect", &state.key())? {
        Some(row) => {
            let stored: Option<BisectState> = row
                .state_json
                .as_deref()
                .and_then(|j| serde_json::from_str::<BisectState>(j).ok())
                .filter(|s| s.format_version == STATE_FORMAT_VERSION);
            if stored.is_none() {
                tracing::info!(
                    session = row.id,
                    "the unfinished bisection's stored state is unreadable or from an older lab; starting it over in that session"
                );
            }
            Ok(Begun {
                session: row.id,
                resumed: true,
                state: stored.unwrap_or(state),
            })
        }
        None => Ok(Begun {
            session: start_session(store, &state)?,
            state,
            resumed: false,
        }),
    }
}

/// A new `bisect` session holding `state`.
fn start_session(store: &mut Store, state: &BisectState) -> Result<i64, LabError> {
    let json = state_json(state);
    let session = store.begin_session("bisect", &state.key(), &json)?;
    store.set_session_state(session, &json)?;
    Ok(session)
}

fn state_json(state: &BisectState) -> String {
    // A state is plain data with string keys: it always serialises.
    serde_json::to_string(state).unwrap_or_default()
}

/// The commits from good (exclusive, but kept as index 0) to bad, first-parent, oldest first,
/// of `def`, the git kernel definition found as `kernel` (a name in kernels/ or a path).
pub fn git_space(
    s: &Settings,
    kernel: &str,
    def: &KernelDef,
    good: &str,
    bad: &str,
) -> Result<Space, LabError> {
    // A definition given as a path is kept as an absolute one: the stored state then names
    // the same file whatever lab root resumes it.
    let name = if s.resolve_path(kernel).is_file() {
        s.resolve_path(kernel).to_string_lossy().into_owned()
    } else {
        kernel.to_owned()
    };
    let DefKind::Git { repo, .. } = &def.kind else {
        return Err(LabError::usage(
            "--kernel",
            format!("{name}: bisecting needs a git kernel definition ([git] repo and ref), not a tarball"),
        ));
    };
    let good_sha = git::run(
        repo,
        &["rev-parse", "--verify", &format!("{good}^{{commit}}")],
    )?;
    let bad_sha = git::run(
        repo,
        &["rev-parse", "--verify", &format!("{bad}^{{commit}}")],
    )?;
    if git::run(repo, &["merge-base", "--is-ancestor", &good_sha, &bad_sha]).is_err() {
        return Err(LabError::usage(
            "--good",
            format!(
                "{good} is not an ancestor of --bad {bad} in {}",
                repo.display()
            ),
        ));
    }
    let list = git::run(
        repo,
        &[
            "log",
            "--reverse",
            "--first-parent",
            "--format=%H %s",
            &format!("{good_sha}..{bad_sha}"),
        ],
    )?;
    let mut commits = vec![(
        good_sha.clone(),
        git::run(repo, &["log", "-1", "--format=%s", &good_sha])?,
    )];
    for line in list.lines() {
        let (sha, subject) = line.split_once(' ').unwrap_or((line, ""));
        commits.push((sha.to_owned(), subject.to_owned()));
    }
    if commits.len() < 2 {
        return Err(LabError::usage(
            "--good",
            format!("{good} and --bad {bad} are the same commit: nothing to bisect"),
        ));
    }
    Ok(Space::Git {
        definition: name,
        repo: repo.clone(),
        commits,
    })
}

/// The patches of `series` (a set name, directory, mbox or series file) as a space.
pub fn series_space(s: &Settings, series: &str) -> Result<Space, LabError> {
    let set = patch::load_set(series, &s.patches_dir, &s.root)?;
    Ok(Space::Series {
        series: series.to_owned(),
        patches: set
            .patches
            .iter()
            .map(|p| (p.label.clone(), p.subject.clone()))
            .collect(),
    })
}

/// A fresh bisection over the first i patches of `series`, with the lab's defaults, for
/// callers other than the CLI (the gate).
pub fn series_state(
    s: &Settings,
    series: &str,
    test: &str,
    arch: Arch,
    knobs: Vec<(String, String)>,
    under: Vec<String>,
) -> Result<BisectState, LabError> {
    let request = BisectRequest {
        space: series_space(s, series)?,
        test: test.to_owned(),
        arch,
        knobs,
        under,
        config: Vec::new(),
        duration: s.compare.duration,
        match_crash: None,
        seed: 1,
        search: SearchConfig::default(),
        confirm: false,
    };
    Ok(request.into_state().map_err(BisectError::Setup)?)
}

/// Starts a new bisection session in the store (never continuing a stored one) and drives it
/// to its conclusion.
pub async fn bisect_new(
    s: &Settings,
    exec: &dyn Executor,
    state: BisectState,
    on: &(dyn Fn(Event) + Send + Sync),
) -> Result<(i64, BisectState), LabError> {
    let mut store = open_store(s)?;
    let session = start_session(&mut store, &state)?;
    let state = drive(s, exec, session, state, store, on).await?;
    Ok((session, state))
}

/// Runs the search of session `session` to its end, one real step at a time, saving the
/// state after each, and closes the session with its status.
pub async fn drive(
    s: &Settings,
    exec: &dyn Executor,
    session: i64,
    mut state: BisectState,
    store: Store,
    on: &(dyn Fn(Event) + Send + Sync),
) -> Result<BisectState, LabError> {
    let mut search = state
        .log
        .replay()
        .map_err(|source| BisectError::Replay { session, source })?;
    let n = state.space.n();
    let image = crate::run::guest_image(s, state.arch, std::slice::from_ref(&state.test)).await?;
    let recorder = Arc::new(Recorder::new(store));
    let run_root = s.cache_dir.join("runs").join(format!("bisect-{session}"));
    tracing::info!(session, runs = %run_root.display(), "bisection runs");
    let mut accel: Option<(Accel, String)> = None;
    on(Event::Started {
        session,
        test: state.test.clone(),
        arch: state.arch,
        good: state.space.describe(0).0,
        bad: state.space.describe(n).0,
        candidates: n,
    });
    let conclusion = loop {
        if crate::process::interrupted().is_some() {
            return Err(LabError::Interrupted);
        }
        let (index, runs) = match search.next() {
            Next::NeedBadEnd { runs } => (n, runs),
            Next::NeedGoodEnd { runs } => (0, runs),
            Next::Test { index, runs } => (index, runs),
            Next::Done(c) => break Some(c),
            Next::NotReproduced { runs } => {
                on(Event::NotReproduced {
                    test: state.test.clone(),
                    bad: state.space.describe(n).0,
                    runs,
                });
                break None;
            }
        };
        let req = request_at(s, &state, index)?;
        let number = state.steps.len() + 1;
        let dir = run_root.join(format!("step-{number:03}-{index}"));
        let started = Instant::now();
        if accel.is_none() {
            // Probe with the first kernel this bisection builds; until one builds, TCG.
            accel = probe_accel(exec, &req, &image, &dir).await.ok();
        }
        let (kind, reason) = accel.clone().unwrap_or((Accel::Tcg, "TCG".into()));
        let (id, subject) = state.space.describe(index);
        on(Event::Testing {
            number,
            index,
            id: id.clone(),
            subject,
            runs,
        });
        let guest = Guest {
            exec,
            image: &image,
            accel: kind,
            reason: &reason,
        };
        let batch = u32::try_from(number).unwrap_or(u32::MAX);
        let record = Some((&recorder, session, batch));
        let trial = Trial::next_of(&state, index);
        let result = run_step(s, &trial, guest, &req, runs, &dir, record).await;
        if crate::process::interrupted().is_some() {
            return Err(LabError::Interrupted);
        }
        let (obs, runs, failures, skipped, kernel_key) = match result {
            StepResult::Runs {
                runs,
                failures,
                crash,
                kernel_key,
            } => {
                if let (true, None, Some(fp)) = (index == n, &state.match_crash, crash) {
                    // The bad end's crash is the one bisected (the step adopted it).
                    state.match_crash = Some(fp.id());
                    on(Event::Adopted {
                        id: fp.id(),
                        fingerprint: fp.to_string(),
                    });
                }
                let obs = Observation::Runs {
                    index,
                    runs,
                    failures,
                };
                (obs, runs, failures, None, Some(kernel_key))
            }
            StepResult::Skip { why, kernel_key } => {
                if index == n || index == 0 {
                    let (label, _) = state.space.describe(index);
                    return Err(BisectError::EndUntestable {
                        end: if index == n { "bad" } else { "good" },
                        label: short(&label),
                        why,
                    }
                    .into());
                }
                (Observation::Skip { index }, 0, 0, Some(why), kernel_key)
            }
        };
        search.observe(obs).map_err(BisectError::Observe)?;
        let top = search.top();
        on(match &skipped {
            Some(why) => Event::Skip {
                number,
                index,
                why: why.clone(),
            },
            None => Event::Step {
                number,
                index,
                runs,
                failures,
                top: top.0,
                top_id: state.space.describe(top.0).0,
                probability: top.1,
            },
        });
        let image_sha256 = kernel_key.as_deref().and_then(|k| image_digest(s, k));
        state.steps.push(StepRecord {
            index,
            id,
            runs,
            failures,
            skipped,
            kernel_key,
            image_sha256,
            run_dir: dir.display().to_string(),
            top,
            seconds: started.elapsed().as_secs_f64(),
        });
        state.log = search.to_log();
        recorder.set_session_state(session, &state_json(&state));
        tracing::debug!(session, step = number, "bisection state saved");
    };
    if let Some(c) = conclusion.as_ref().filter(|c| c.skipped_range.is_none()) {
        state.identical_to_parent = identical_to_parent(s, exec, &state, c.culprit).await;
        if state.identical_to_parent == Some(true) {
            on(Event::IdenticalToParent {
                culprit: state.space.describe(c.culprit).0,
            });
        }
    }
    state.conclusion = conclusion.clone();
    on(Event::Concluded {
        conclusion: conclusion.clone(),
    });
    if let (true, Some(c)) = (state.confirm, conclusion.as_ref().filter(|c| c.confident)) {
        let (kind, reason) = accel.clone().unwrap_or((Accel::Tcg, "TCG".into()));
        let guest = Guest {
            exec,
            image: &image,
            accel: kind,
            reason: &reason,
        };
        let plan = search.confirm_plan(c.culprit, CONFIRM_MISS, CONFIRM_MAX_RUNS);
        let result = confirm(s, &state, c.culprit, plan, guest, &run_root)
            .await
            .unwrap_or_else(|e| format!("could not confirm: {e}"));
        on(Event::Confirm {
            result: result.clone(),
        });
        state.confirmation = Some(result);
    }
    let json = state_json(&state);
    let status = match &conclusion {
        Some(c) if c.confident => "found",
        Some(_) => "not-confident",
        None => "not-reproduced",
    };
    recorder.set_session_state(session, &json);
    recorder.finish_session(session, status, &json);
    let recorded = recorder.finish();
    if !recorded.is_clean() {
        on(Event::Unrecorded(recorded));
    }
    Ok(state)
}

/// Builds the bad end without the culprit (a revert for git, the series minus that patch)
/// and runs the test: the failure should go away.
async fn confirm(
    s: &Settings,
    state: &BisectState,
    culprit: usize,
    plan: ConfirmPlan,
    guest: Guest<'_>,
    run_root: &Path,
) -> Result<String, LabError> {
    let n = state.space.n();
    let mut req = request_at(s, state, n)?;
    match &state.space {
        Space::Git { repo, commits, .. } => {
            let sha = &commits
                .get(culprit)
                .ok_or(BisectError::CulpritOutOfRange {
                    index: culprit,
                    n: commits.len(),
                })?
                .0;
            let diff = git::run(repo, &["diff", sha, &format!("{sha}^")])?;
            let dir = run_root.join("confirm");
            std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
            let path = dir.join("0001-revert-culprit.patch");
            let text = format!(
                "From: lab bisect <lab@localhost>\nSubject: [PATCH] Revert {}\n\n---\n{diff}\n",
                sha.get(..12).unwrap_or(sha)
            );
            std::fs::write(&path, text).map_err(io("cannot write", &path))?;
            req.patch_sets.push(patch::load_set(
                &path.to_string_lossy(),
                &s.patches_dir,
                &s.root,
            )?);
        }
        Space::Series { series, .. } => {
            let all = patch::load_set(series, &s.patches_dir, &s.root)?;
            let without: Vec<patch::Patch> = all
                .patches
                .iter()
                .enumerate()
                .filter(|(i, _)| i + 1 != culprit)
                .map(|(_, p)| p.clone())
                .collect();
            req.patch_sets.retain(|p| p.source != all.source);
            req.patch_sets.push(PatchSet {
                name: format!("{} without patch {culprit}", all.name),
                source: all.source.clone(),
                patches: without,
            });
        }
    }
    // Boots of a few runs each, as many as the posterior of the detection rate says it
    // takes for a wrong culprit to show; the first failure ends it.
    let (mut runs, mut boots) = (0, 0);
    for boot in 0..plan.boots {
        let dir = run_root.join(format!("confirm-run-{}", boot + 1));
        let trial = Trial::confirming(state).reseeded(u64::from(boot));
        match run_step(s, &trial, guest, &req, plan.runs_per_boot, &dir, None).await {
            StepResult::Runs {
                runs: r, failures, ..
            } => {
                runs += r;
                boots += 1;
                if failures > 0 {
                    return Ok(format!(
                        "NOT confirmed: without the culprit the bad end still failed {failures} of {r} runs in boot {boots} ({runs} runs so far)"
                    ));
                }
            }
            StepResult::Skip { why, .. } => return Ok(format!("could not confirm: {why}")),
        }
        if crate::process::interrupted().is_some() {
            return Err(LabError::Interrupted);
        }
    }
    Ok(format!(
        "confirmed: without the culprit the bad end passed {runs} of {runs} runs in {boots} boot{}; were the culprit wrong, a pass this clean had probability {:.3}",
        if boots == 1 { "" } else { "s" },
        plan.p_clean_if_wrong
    ))
}

/// Misses a confirmation may allow: the probability that a wrong culprit's bad end passes
/// every confirmation run. And the most runs a confirmation takes to get there.
const CONFIRM_MISS: f64 = 0.05;
const CONFIRM_MAX_RUNS: u32 = 64;

/// sha256 of the boot image of the kernel `key` in the cache, if it is there.
fn image_digest(s: &Settings, key: &str) -> Option<String> {
    let artifact = Cache::new(&s.cache_dir).get(key)?;
    crate::kernel::source::sha256_file(&artifact.dir.join(&artifact.manifest.image)).ok()
}

/// The image digest a step recorded for candidate `i`, if one did.
fn recorded_digest(state: &BisectState, i: usize) -> Option<String> {
    state
        .steps
        .iter()
        .filter(|st| st.index == i)
        .find_map(|st| st.image_sha256.clone())
}

/// Whether the kernel of candidate `culprit` is byte-identical to its parent's, building the
/// parent if no step did; `None` when either cannot be told (not built, no image).
async fn identical_to_parent(
    s: &Settings,
    exec: &dyn Executor,
    state: &BisectState,
    culprit: usize,
) -> Option<bool> {
    let parent = culprit.checked_sub(1)?;
    let mine = recorded_digest(state, culprit)?;
    let theirs = match recorded_digest(state, parent) {
        Some(d) => d,
        None => {
            let req = request_at(s, state, parent).ok()?;
            let built = exec.build(&req, &|_| {}).await.ok()?;
            image_digest(s, &built.artifact.manifest.key)?
        }
    };
    tracing::info!(
        culprit,
        parent,
        identical = mine == theirs,
        "culprit's kernel against its parent's"
    );
    Some(mine == theirs)
}

#[cfg(test)]
mod tests {

    use super::*;

    fn fresh(request: BisectRequest) -> BisectState {
        request.into_state().expect("a valid request")
    }

    #[test]
    fn a_session_is_begun_once_and_the_same_bisection_continues_it() {
        let mut store = Store::open_in_memory().expect("store");
        let state = fresh(BisectRequest::example_series(3));
        let first = begin(&mut store, state.clone()).expect("begun");
        assert!(!first.resumed);
        let mut other = BisectRequest::example_series(3);
        other.seed = 9;
        let again = begin(&mut store, fresh(other)).expect("found");
        assert!(again.resumed, "the seed does not make another bisection");
        assert_eq!(again.session, first.session);
        assert_eq!(again.state.seed, 5, "the stored state goes on");
        let (id, loaded) = load(&store, None, true)
            .expect("reads")
            .expect("an open bisection");
        assert_eq!((id, loaded.key()), (first.session, state.key()));
        assert!(load(&store, Some(first.session + 1), false)
            .expect("reads")
            .is_none());
        let different = begin(&mut store, fresh(BisectRequest::example_series(2))).expect("begun");
        assert!(!different.resumed);
        assert_ne!(different.session, first.session);
    }

    #[test]
    fn a_state_from_an_older_lab_is_refused_on_continue_and_started_over_on_a_new_run() {
        let mut store = Store::open_in_memory().expect("store");
        let mut old = fresh(BisectRequest::example_series(3));
        old.format_version = 1;
        old.seed = 77;
        let session = start_session(&mut store, &old).expect("stored");
        match load(&store, Some(session), false) {
            Err(LabError::Bisect(BisectError::OldState {
                found: 1, expected, ..
            })) => assert_eq!(expected, STATE_FORMAT_VERSION),
            other => panic!("expected OldState, got {other:?}"),
        }
        let again = begin(&mut store, fresh(BisectRequest::example_series(3))).expect("begun");
        assert_eq!(again.session, session, "the same bisection, in its session");
        assert_eq!(again.state.format_version, STATE_FORMAT_VERSION);
        assert_eq!(again.state.seed, 5, "started over with the new request");
    }

    #[test]
    fn recorded_image_digests_tell_a_culprit_from_its_parent() {
        let mut state = fresh(BisectRequest::example_series(3));
        let step = |index: usize, digest: &str| StepRecord {
            index,
            id: format!("patch {index}"),
            runs: 4,
            failures: 0,
            skipped: None,
            kernel_key: Some(format!("k{index}")),
            image_sha256: Some(digest.into()),
            run_dir: String::new(),
            top: (index, 0.5),
            seconds: 1.0,
        };
        state.steps = vec![step(1, "aa"), step(2, "aa"), step(3, "bb")];
        assert_eq!(recorded_digest(&state, 2).as_deref(), Some("aa"));
        assert_eq!(
            recorded_digest(&state, 0),
            None,
            "the good end was not run here"
        );
        assert_eq!(recorded_digest(&state, 1), recorded_digest(&state, 2));
        assert_ne!(recorded_digest(&state, 2), recorded_digest(&state, 3));
    }
}
