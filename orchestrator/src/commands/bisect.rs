//! `lab bisect` and `lab bisect-step`: drive a noise-aware search ([`crate::bisect::search`])
//! over a kernel's git history or over the patches of a series, with real builds and real
//! guests at every step, and keep its state in the results store so it can be resumed.
//!
//! A step builds one candidate through the cache (a lab-owned worktree and an incremental
//! `O=` tree for git; the lab's kernel plus the first i patches for a series), boots it and
//! runs the test as many times as the search asked. A build or boot failure is a skip, never
//! bad. So is a run that crashed with another fingerprint than the one being bisected (the
//! bad end's, or `--match-crash`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Context;
use crate::arch::{Accel, Arch};
use crate::bisect::search::{Conclusion, Next, Observation, Search, SearchConfig, SearchLog};
use crate::cli::{BisectArgs, BisectStepArgs};
use crate::errors::{BisectError, LabError, Outcome};
use crate::guest::image::BaseImage;
use crate::io_error::io;
use crate::kernel::build::{self, BuildRequest};
use crate::kernel::patch::{self, PatchSet};
use crate::kernel::source::KernelDef;
use crate::results::store::{Recorder, Store};
use crate::results::{OutcomeKind, TestOutcome};
use crate::run::{self, RunPlan};

const STATE_FORMAT_VERSION: u32 = 1;

/// What is bisected: commits of a git history, or the patches of a series.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Space {
    /// `commits[0]` is the good end; the candidates are 1..=n, `commits[n]` the bad end.
    Git {
        definition: String,
        repo: PathBuf,
        commits: Vec<(String, String)>,
    },
    /// Candidate i is the lab's kernel with the first i patches; 0 is none (good).
    Series {
        series: String,
        patches: Vec<(String, String)>,
    },
}

impl Space {
    fn n(&self) -> usize {
        match self {
            Space::Git { commits, .. } => commits.len().saturating_sub(1),
            Space::Series { patches, .. } => patches.len(),
        }
    }

    /// (id, subject) of candidate `i`.
    fn describe(&self, i: usize) -> (String, String) {
        match self {
            Space::Git { commits, .. } => commits.get(i).cloned().unwrap_or_default(),
            Space::Series { patches, .. } => {
                if i == 0 {
                    ("(no patch)".into(), "the kernel without the series".into())
                } else {
                    let (label, subject) = patches.get(i - 1).cloned().unwrap_or_default();
                    (format!("patch {i}: {label}"), subject)
                }
            }
        }
    }
}

/// One step, for the log.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub index: usize,
    pub id: String,
    pub runs: u32,
    pub failures: u32,
    pub skipped: Option<String>,
    pub kernel_key: Option<String>,
    pub run_dir: String,
    /// The top candidate and its probability after this step.
    pub top: (usize, f64),
    pub seconds: f64,
}

/// Everything a bisection is resumed from.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct BisectState {
    pub format_version: u32,
    pub space: Space,
    pub test: String,
    pub arch: Arch,
    pub knobs: Vec<(String, String)>,
    pub under: Vec<String>,
    pub config: Vec<String>,
    pub duration_ms: u64,
    /// The crash fingerprint id that counts as bad; `None` until the bad end showed one
    /// (then plain failures count, and any crash is a different one).
    pub match_crash: Option<String>,
    pub match_crash_given: bool,
    pub seed: u64,
    pub log: SearchLog,
    pub steps: Vec<StepRecord>,
    pub conclusion: Option<Conclusion>,
    /// Confirm the culprit: the bad end without it must stop failing.
    #[serde(default)]
    pub confirm: bool,
    /// What the confirmation showed.
    #[serde(default)]
    pub confirmation: Option<String>,
}

/// What one step showed.
enum StepResult {
    Runs {
        runs: u32,
        failures: u32,
        crash: Option<String>,
        kernel_key: String,
    },
    Skip {
        why: String,
        kernel_key: Option<String>,
    },
}

fn git_out(repo: &Path, args: &[&str]) -> Result<String, LabError> {
    Ok(crate::kernel::git::run(repo, args)?)
}

/// The commits from good (exclusive, but kept as index 0) to bad, first-parent, oldest first.
fn git_space(def_name: &str, def: &KernelDef, good: &str, bad: &str) -> Result<Space, LabError> {
    let crate::kernel::source::DefKind::Git { repo, .. } = &def.kind else {
        return Err(LabError::usage(
            "--kernel",
            format!("{def_name}: bisecting needs a git kernel definition ([git] repo and ref), not a tarball"),
        ));
    };
    let good_sha = git_out(
        repo,
        &["rev-parse", "--verify", &format!("{good}^{{commit}}")],
    )?;
    let bad_sha = git_out(
        repo,
        &["rev-parse", "--verify", &format!("{bad}^{{commit}}")],
    )?;
    if git_out(repo, &["merge-base", "--is-ancestor", &good_sha, &bad_sha]).is_err() {
        return Err(LabError::usage(
            "--good",
            format!(
                "{good} is not an ancestor of --bad {bad} in {}",
                repo.display()
            ),
        ));
    }
    let list = git_out(
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
        git_out(repo, &["log", "-1", "--format=%s", &good_sha])?,
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
        definition: def_name.to_owned(),
        repo: repo.clone(),
        commits,
    })
}

/// The build request of candidate `i`.
fn request_at(ctx: &Context, state: &BisectState, i: usize) -> Result<BuildRequest, LabError> {
    let s = &ctx.settings;
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
            let def = KernelDef::load(definition, &s.kernels_dir)
                .or_else(|_| {
                    KernelDef::load(
                        &s.resolve_path(definition).to_string_lossy(),
                        &s.kernels_dir,
                    )
                })
                .unwrap_or_else(|_| KernelDef::git(repo, "HEAD"));
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

/// Builds candidate `i`, boots it, runs the test `runs` times.
#[expect(clippy::too_many_arguments, reason = "one step's inputs")]
async fn run_step(
    ctx: &Context,
    state: &BisectState,
    image: &BaseImage,
    accel: (Accel, &str),
    req: &BuildRequest,
    runs: u32,
    dir: &Path,
    record: Option<(&Recorder, i64)>,
) -> StepResult {
    let s = &ctx.settings;
    let built = match build::build(req, &s.cache_dir, &|_| {}).await {
        Ok(b) => b,
        Err(e) => {
            return StepResult::Skip {
                why: format!("build failed: {}", first_line(&e.to_string())),
                kernel_key: None,
            }
        }
    };
    let key = built.artifact.manifest.key.clone();
    let plan = RunPlan {
        arch: state.arch,
        artifact: built.artifact,
        image: image.clone(),
        tests: vec![state.test.clone()],
        iterations: runs,
        duration: std::time::Duration::from_millis(state.duration_ms),
        knobs: state.knobs.clone(),
        boot_knobs: Vec::new(),
        seed: state.seed.wrapping_add(state.steps.len() as u64 * 7919),
        accel: accel.0,
        cpus: s.vm_cpus,
        memory_mib: s.vm_memory_mib,
        boot_timeout: s.boot_timeout,
        host_deadline: None,
        cmdline_extra: Vec::new(),
        dir: dir.to_owned(),
    };
    let recorded = record.map(|(recorder, session)| {
        let batch = state.steps.len() as u32 + 1;
        (
            recorder,
            plan.begin_record(recorder, Some(session), None, Some(batch)),
        )
    });
    let on = |o: &TestOutcome| {
        if let Some((recorder, run)) = &recorded {
            recorder.add_outcome(run, o);
        }
    };
    let report = run::run(&plan, accel.1, "lab bisect", &on).await;
    if let Some((recorder, run)) = &recorded {
        recorder.finish_run(run, &report.manifest);
    }
    classify(&report.outcomes, state.match_crash.as_deref(), key)
}

/// Counts a step's outcomes: infra errors are dropped; a crash with another fingerprint
/// than the one bisected makes the whole step a skip.
fn classify(outcomes: &[TestOutcome], want: Option<&str>, kernel_key: String) -> StepResult {
    let mut runs = 0;
    let mut failures = 0;
    let mut crash = None;
    for o in outcomes {
        match o.kind {
            OutcomeKind::InfraError => continue,
            OutcomeKind::Pass => runs += 1,
            OutcomeKind::Fail | OutcomeKind::Hang => {
                runs += 1;
                failures += 1;
            }
            OutcomeKind::KernelCrash => {
                let ids: Vec<String> = o.crashes.iter().map(|c| c.fingerprint.id()).collect();
                let fulls: Vec<String> = o
                    .crashes
                    .iter()
                    .map(|c| c.fingerprint.to_string())
                    .collect();
                let matches = want.is_some_and(|w| {
                    ids.iter().any(|i| i == w || i.starts_with(w)) || fulls.iter().any(|f| f == w)
                });
                if matches {
                    runs += 1;
                    failures += 1;
                } else {
                    return StepResult::Skip {
                        why: format!(
                            "crashed with another fingerprint: {} [{}]",
                            first_line(&o.summary),
                            ids.first().cloned().unwrap_or_else(|| "no report".into())
                        ),
                        kernel_key: Some(kernel_key),
                    };
                }
                crash = crash.or(ids.into_iter().next());
            }
        }
    }
    if runs == 0 {
        return StepResult::Skip {
            why: outcomes.first().map_or_else(
                || "no run finished".into(),
                |o| format!("no usable run: {}", first_line(&o.summary)),
            ),
            kernel_key: Some(kernel_key),
        };
    }
    StepResult::Runs {
        runs,
        failures,
        crash,
        kernel_key,
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(160).collect()
}

fn state_key(state: &BisectState) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::json!({
        "space": state.space, "test": state.test, "arch": state.arch, "knobs": state.knobs,
        "under": state.under, "config": state.config, "duration": state.duration_ms,
        "match": if state.match_crash_given { state.match_crash.clone() } else { None },
    })
    .to_string();
    hex::encode(Sha256::digest(text.as_bytes()))[..24].to_owned()
}

fn store_err(e: crate::results::store::StoreError) -> LabError {
    super::results::store_error(e)
}

/// A stored bisection: session `id`, or the latest one (unfinished only if `open_only`).
fn load_state(
    store: &Store,
    id: Option<i64>,
    open_only: bool,
    flag: &'static str,
    none: &str,
) -> Result<(i64, BisectState), LabError> {
    let row = match id {
        Some(id) => store.session(id).map_err(store_err)?,
        None => latest_session(store, open_only)?,
    }
    .ok_or_else(|| LabError::usage(flag, none))?;
    let state =
        serde_json::from_str(row.state_json.as_deref().unwrap_or("")).map_err(|source| {
            BisectError::State {
                session: row.id,
                source,
            }
        })?;
    Ok((row.id, state))
}

/// The latest bisect session, unfinished only if `open_only`.
fn latest_session(
    store: &Store,
    open_only: bool,
) -> Result<Option<crate::results::store::SessionRow>, LabError> {
    Ok(store
        .sessions(200)
        .map_err(store_err)?
        .into_iter()
        .find(|s| s.kind == "bisect" && (!open_only || s.finished_at.is_none())))
}

pub async fn run(ctx: &Context, args: &BisectArgs) -> Result<Outcome, LabError> {
    let s = &ctx.settings;
    let store_path = Store::default_path(&s.cache_dir);
    let mut store = Store::open(&store_path).map_err(store_err)?;

    if args.log {
        let (id, state) = load_state(
            &store,
            args.session,
            false,
            "--log",
            "no bisection in the results store",
        )?;
        print_log(id, &state, args.json.json);
        return Ok(Outcome::Pass);
    }

    let (session, state) =
        if args.resume {
            let (id, state) = load_state(
                &store,
                args.session,
                true,
                "--continue",
                "no unfinished bisection to continue",
            )?;
            if !ctx.quiet {
                eprintln!(
                    "lab: continuing bisection {id} ({} steps so far)",
                    state.steps.len()
                );
            }
            (id, state)
        } else {
            let test = args.test.clone().ok_or_else(|| {
                LabError::usage("--test", "name the test that tells good from bad")
            })?;
            let arch: Arch = match args.arch.arch {
                Some(a) => a,
                None => *s
                    .arches
                    .first()
                    .ok_or_else(|| LabError::usage("--arch", "lab.toml names no arch; give one"))?,
            };
            let space = match (&args.kernel, &args.series) {
                (Some(k), None) => {
                    let def = KernelDef::find(s, k)?;
                    let good = args.good.clone().ok_or_else(|| {
                        LabError::usage("--good", "a REF is needed with --kernel")
                    })?;
                    let bad = args
                        .bad
                        .clone()
                        .ok_or_else(|| LabError::usage("--bad", "a REF is needed with --kernel"))?;
                    let name = if s.resolve_path(k).is_file() {
                        s.resolve_path(k).to_string_lossy().into_owned()
                    } else {
                        k.clone()
                    };
                    git_space(&name, &def, &good, &bad)?
                }
                (None, Some(series)) => {
                    let set = patch::load_set(series, &s.patches_dir, &s.root)?;
                    if set.patches.is_empty() {
                        return Err(LabError::usage("--series", format!("{series}: no patches")));
                    }
                    Space::Series {
                        series: series.clone(),
                        patches: set
                            .patches
                            .iter()
                            .map(|p| (p.label.clone(), p.subject.clone()))
                            .collect(),
                    }
                }
                _ => {
                    return Err(LabError::usage(
                        "--kernel/--series",
                        "say what to bisect: --kernel DEF --good REF --bad REF, or --series SERIES",
                    ))
                }
            };
            if !(0.5..1.0).contains(&args.confidence) {
                return Err(LabError::usage(
                    "--confidence",
                    format!(
                        "{}: use a probability between 0.5 and 1, such as 0.95",
                        args.confidence
                    ),
                ));
            }
            let duration = args.duration.duration.unwrap_or(s.compare.duration);
            let config = SearchConfig {
                confidence: args.confidence,
                max_runs: args.max_runs,
                ..SearchConfig::default()
            };
            let n = space.n();
            let search = Search::new(n, config).map_err(BisectError::Setup)?;
            let state = BisectState {
                format_version: STATE_FORMAT_VERSION,
                space,
                test,
                arch,
                knobs: args.knobs.pairs(),
                under: args
                    .patches
                    .iter()
                    .filter(|p| !p.is_empty())
                    .cloned()
                    .collect(),
                config: args.config.clone(),
                duration_ms: duration.as_millis() as u64,
                match_crash: args.match_crash.clone(),
                match_crash_given: args.match_crash.is_some(),
                seed: args.seed.seed.unwrap_or(1),
                log: search.to_log(),
                steps: Vec::new(),
                conclusion: None,
                confirm: args.confirm,
                confirmation: None,
            };
            let key = state_key(&state);
            let state_json = serde_json::to_string(&state).unwrap_or_default();
            match store.open_session("bisect", &key).map_err(store_err)? {
                Some(row) => {
                    let old: Option<BisectState> = row
                        .state_json
                        .as_deref()
                        .and_then(|j| serde_json::from_str(j).ok());
                    if !ctx.quiet {
                        eprintln!(
                            "lab: the same bisection is unfinished in session {}; continuing it",
                            row.id
                        );
                    }
                    (row.id, old.unwrap_or(state))
                }
                None => {
                    let id = store
                        .begin_session("bisect", &key, &state_json)
                        .map_err(store_err)?;
                    store
                        .set_session_state(id, &state_json)
                        .map_err(store_err)?;
                    (id, state)
                }
            }
        };
    let state = drive(ctx, session, state, store).await?;
    print_log(session, &state, args.json.json);
    Ok(match &state.conclusion {
        Some(c) if c.confident => Outcome::Pass,
        _ => Outcome::Regression,
    })
}

/// A fresh bisection state over the first i patches of `series`, for callers other than
/// the CLI (the gate).
pub fn series_state(
    ctx: &Context,
    series: &str,
    test: &str,
    arch: Arch,
    knobs: Vec<(String, String)>,
    under: Vec<String>,
) -> Result<BisectState, LabError> {
    let s = &ctx.settings;
    let set = patch::load_set(series, &s.patches_dir, &s.root)?;
    let space = Space::Series {
        series: series.to_owned(),
        patches: set
            .patches
            .iter()
            .map(|p| (p.label.clone(), p.subject.clone()))
            .collect(),
    };
    let search = Search::new(space.n(), SearchConfig::default()).map_err(BisectError::Setup)?;
    Ok(BisectState {
        format_version: STATE_FORMAT_VERSION,
        space,
        test: test.to_owned(),
        arch,
        knobs,
        under,
        config: Vec::new(),
        duration_ms: s.compare.duration.as_millis() as u64,
        match_crash: None,
        match_crash_given: false,
        seed: 1,
        log: search.to_log(),
        steps: Vec::new(),
        conclusion: None,
        confirm: false,
        confirmation: None,
    })
}

/// Starts a bisection session in the store and drives it to its conclusion.
pub async fn bisect_new(ctx: &Context, state: BisectState) -> Result<(i64, BisectState), LabError> {
    let mut store =
        Store::open(&Store::default_path(&ctx.settings.cache_dir)).map_err(store_err)?;
    let json = serde_json::to_string(&state).unwrap_or_default();
    let session = store
        .begin_session("bisect", &state_key(&state), &json)
        .map_err(store_err)?;
    store.set_session_state(session, &json).map_err(store_err)?;
    let state = drive(ctx, session, state, store).await?;
    Ok((session, state))
}

/// Runs the search to its end, one real step at a time, saving the state after each.
pub async fn drive(
    ctx: &Context,
    session: i64,
    mut state: BisectState,
    store: Store,
) -> Result<BisectState, LabError> {
    let s = &ctx.settings;
    let mut search = state
        .log
        .replay()
        .map_err(|source| BisectError::Replay { session, source })?;
    let n = state.space.n();
    let image = crate::guest::image::for_tests(
        &ctx.settings,
        state.arch,
        std::slice::from_ref(&state.test),
    )
    .await?;
    let recorder = Recorder::new(store);
    let run_root = s.cache_dir.join("runs").join(format!("bisect-{session}"));
    let mut accel_choice: Option<(Accel, String)> = None;
    if !ctx.quiet {
        let (good, _) = state.space.describe(0);
        let (bad, _) = state.space.describe(n);
        eprintln!(
            "lab: bisecting {} on {} between {} (good) and {} (bad): {n} candidates; session {session}",
            state.test,
            state.arch,
            short(&good),
            short(&bad)
        );
    }
    let conclusion = loop {
        if crate::process::interrupted().is_some() {
            return Err(LabError::Interrupted);
        }
        let (index, runs) = match search.next() {
            Next::NeedBadEnd { runs } => (n, runs),
            Next::Test { index, runs } => (index, runs),
            Next::Done(c) => break Some(c),
            Next::NotReproduced { runs } => {
                eprintln!(
                    "lab: {} passed all {runs} runs at the bad end ({}): it does not reproduce there, so there is nothing to bisect; try amplifier knobs or a longer --duration",
                    state.test,
                    short(&state.space.describe(n).0)
                );
                break None;
            }
        };
        let req = request_at(ctx, &state, index)?;
        let step_no = state.steps.len() + 1;
        let dir = run_root.join(format!("step-{step_no:03}-{index}"));
        let started = std::time::Instant::now();
        if accel_choice.is_none() {
            // Probe with the first kernel this bisection builds.
            if let Ok(b) = build::build(&req, &s.cache_dir, &|_| {}).await {
                let probe = run::probe_spec(&b.artifact, &image, s.vm_cpus, s.vm_memory_mib, &dir);
                accel_choice = Some(run::choose_accel(s.accel, state.arch, &probe).await);
            }
        }
        let (accel, reason) = accel_choice.clone().unwrap_or((Accel::Tcg, "TCG".into()));
        let (id, subject) = state.space.describe(index);
        if !ctx.quiet {
            eprintln!(
                "lab: step {step_no}: {} {} ({runs} runs)",
                short(&id),
                subject.chars().take(60).collect::<String>()
            );
        }
        let result = run_step(
            ctx,
            &state,
            &image,
            (accel, &reason),
            &req,
            runs,
            &dir,
            Some((&recorder, session)),
        )
        .await;
        if crate::process::interrupted().is_some() {
            return Err(LabError::Interrupted);
        }
        let (obs, rec_runs, rec_fail, skipped, key) = match result {
            StepResult::Runs {
                runs,
                failures,
                crash,
                kernel_key,
            } => {
                if index == n && state.match_crash.is_none() && failures > 0 {
                    // The bad end's crash, if it crashed, is the one bisected.
                    state.match_crash = crash;
                }
                (
                    Observation::Runs {
                        index,
                        runs,
                        failures,
                    },
                    runs,
                    failures,
                    None,
                    Some(kernel_key),
                )
            }
            StepResult::Skip { why, kernel_key } => {
                if index == n || index == 0 {
                    let (label, _) = state.space.describe(index);
                    return Err(BisectError::EndUntestable {
                        end: if index == n { "bad" } else { "good" },
                        label: short(&label).to_owned(),
                        why,
                    }
                    .into());
                }
                (Observation::Skip { index }, 0, 0, Some(why), kernel_key)
            }
        };
        search.observe(obs).map_err(BisectError::Observe)?;
        let top = search.top();
        if !ctx.quiet {
            match &skipped {
                Some(why) => eprintln!("lab:   skip: {why}"),
                None => eprintln!(
                    "lab:   {rec_fail} of {rec_runs} failed; now {} holds {:.3}",
                    short(&state.space.describe(top.0).0),
                    top.1
                ),
            }
        }
        state.steps.push(StepRecord {
            index,
            id,
            runs: rec_runs,
            failures: rec_fail,
            skipped,
            kernel_key: key,
            run_dir: dir.display().to_string(),
            top,
            seconds: started.elapsed().as_secs_f64(),
        });
        state.log = search.to_log();
        let json = serde_json::to_string(&state).unwrap_or_default();
        recorder.set_session_state(session, &json);
    };
    state.conclusion = conclusion.clone();
    if let (true, Some(c)) = (state.confirm, conclusion.as_ref().filter(|c| c.confident)) {
        let (accel, reason) = accel_choice.clone().unwrap_or((Accel::Tcg, "TCG".into()));
        state.confirmation = Some(
            confirm(ctx, &state, c.culprit, &image, (accel, &reason), &run_root)
                .await
                .unwrap_or_else(|e| format!("could not confirm: {e}")),
        );
        if !ctx.quiet {
            eprintln!(
                "lab: confirmation: {}",
                state.confirmation.clone().unwrap_or_default()
            );
        }
    }
    let json = serde_json::to_string(&state).unwrap_or_default();
    let status = match &conclusion {
        Some(c) if c.confident => "found",
        Some(_) => "not-confident",
        None => "not-reproduced",
    };
    recorder.set_session_state(session, &json);
    recorder.finish_session(session, status, &json);
    let recorded = recorder.finish();
    if !recorded.is_clean() {
        eprintln!("lab: {recorded}");
    }
    Ok(state)
}

/// Builds the bad end without the culprit (a revert for git, the series minus that patch)
/// and runs the test: the failure should go away.
async fn confirm(
    ctx: &Context,
    state: &BisectState,
    culprit: usize,
    image: &BaseImage,
    accel: (Accel, &str),
    run_root: &Path,
) -> Result<String, LabError> {
    let s = &ctx.settings;
    let n = state.space.n();
    let mut req = request_at(ctx, state, n)?;
    match &state.space {
        Space::Git { repo, commits, .. } => {
            let sha = &commits
                .get(culprit)
                .ok_or(BisectError::CulpritOutOfRange {
                    index: culprit,
                    n: commits.len(),
                })?
                .0;
            let diff = git_out(repo, &["diff", sha, &format!("{sha}^")])?;
            let dir = run_root.join("confirm");
            std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
            let path = dir.join("0001-revert-culprit.patch");
            let text = format!(
                "From: lab bisect <lab@localhost>\nSubject: [PATCH] Revert {}\n\n---\n{diff}\n",
                &sha[..12.min(sha.len())]
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
    let runs = 12;
    let dir = run_root.join("confirm-run");
    Ok(
        match run_step(ctx, state, image, accel, &req, runs, &dir, None).await {
            StepResult::Runs {
                runs, failures: 0, ..
            } => {
                format!("confirmed: without the culprit the bad end passed {runs} of {runs} runs")
            }
            StepResult::Runs { runs, failures, .. } => {
                format!("NOT confirmed: without the culprit {failures} of {runs} runs still failed")
            }
            StepResult::Skip { why, .. } => format!("could not confirm: {why}"),
        },
    )
}

fn short(id: &str) -> String {
    if let Some((patch, _)) = id.split_once(": ").filter(|(p, _)| p.starts_with("patch ")) {
        return patch.to_owned();
    }
    if id.len() == 40 && id.chars().all(|c| c.is_ascii_hexdigit()) {
        id[..12].to_owned()
    } else {
        id.to_owned()
    }
}

fn print_log(session: i64, state: &BisectState, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(state).unwrap_or_default()
        );
        return;
    }
    println!(
        "lab bisect  session {session}  test {}  arch {}  knobs {}",
        state.test,
        state.arch,
        if state.knobs.is_empty() {
            "none".to_owned()
        } else {
            state
                .knobs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        }
    );
    println!(
        "{:>4}  {:>5}  {:<14} {:>5} {:>5}  {:<14} {:>6}  {:>6}  note",
        "step", "index", "candidate", "runs", "fail", "top after", "p(top)", "secs"
    );
    for (k, st) in state.steps.iter().enumerate() {
        println!(
            "{:>4}  {:>5}  {:<14} {:>5} {:>5}  {:<14} {:>6.3}  {:>6.0}  {}",
            k + 1,
            st.index,
            short(&st.id).chars().take(14).collect::<String>(),
            st.runs,
            st.failures,
            short(&state.space.describe(st.top.0).0)
                .chars()
                .take(14)
                .collect::<String>(),
            st.top.1,
            st.seconds,
            st.skipped.clone().unwrap_or_default()
        );
    }
    match &state.conclusion {
        Some(c) => {
            let (id, subject) = state.space.describe(c.culprit);
            println!();
            println!(
                "{} culprit: {} \"{}\" with probability {:.3} after {} steps and {} runs",
                if c.confident {
                    "First bad"
                } else {
                    "Most likely (NOT confident)"
                },
                id,
                subject,
                c.probability,
                c.steps,
                c.runs
            );
            if let Some((lo, hi)) = c.skipped_range {
                println!(
                    "  only skipped candidates left: the culprit is one of {} .. {}",
                    short(&state.space.describe(lo).0),
                    short(&state.space.describe(hi).0)
                );
            }
            if let Some((r, p)) = c.runner_up {
                println!(
                    "  runner-up: {} \"{}\" with probability {:.3}",
                    short(&state.space.describe(r).0),
                    state.space.describe(r).1,
                    p
                );
            }
            if let Some(fp) = &state.match_crash {
                println!("  crash fingerprint bisected: {fp}");
            }
            if let Some(c) = &state.confirmation {
                println!("  {c}");
            }
        }
        None => println!("\nNo conclusion yet (lab bisect --continue picks it up)."),
    }
}

/// `lab bisect-step`: one verdict on the checkout, in `git bisect run`'s exit codes.
pub async fn step(ctx: &Context, args: &BisectStepArgs) -> Outcome {
    match step_inner(ctx, args).await {
        Ok(code) => Outcome::GitBisect(code),
        Err(e) => {
            eprintln!("lab: bisect-step: {e}");
            // 128 and above stop git bisect: lab itself is broken, not the commit.
            Outcome::GitBisect(128)
        }
    }
}

async fn step_inner(ctx: &Context, args: &BisectStepArgs) -> Result<i32, LabError> {
    let s = &ctx.settings;
    let repo = match &args.repo {
        Some(r) => r.clone(),
        None => {
            std::env::current_dir().map_err(io("cannot read the current folder", Path::new(".")))?
        }
    };
    let head = git_out(&repo, &["rev-parse", "HEAD"])?;
    let arch: Arch = match args.arch.arch {
        Some(a) => a,
        None => *s
            .arches
            .first()
            .ok_or_else(|| LabError::usage("--arch", "lab.toml names no arch; give one"))?,
    };
    let duration = args.duration.duration.unwrap_or(s.compare.duration);
    let state = BisectState {
        format_version: STATE_FORMAT_VERSION,
        space: Space::Git {
            definition: String::new(),
            repo: repo.clone(),
            commits: vec![(head.clone(), String::new())],
        },
        test: args.test.clone(),
        arch,
        knobs: args.knobs.pairs(),
        under: args.stack.patches.clone(),
        config: args.stack.config.clone(),
        duration_ms: duration.as_millis() as u64,
        match_crash: args.match_crash.clone(),
        match_crash_given: args.match_crash.is_some(),
        seed: 1,
        log: Search::new(1, SearchConfig::default())
            .map_err(BisectError::Setup)?
            .to_log(),
        steps: Vec::new(),
        conclusion: None,
        confirm: false,
        confirmation: None,
    };
    let mut sets = Vec::new();
    for name in &state.under {
        sets.push(patch::load_set(name, &s.patches_dir, &s.root)?);
    }
    let req =
        BuildRequest::with_settings(s, arch, KernelDef::git(&repo, &head), sets, &state.config);
    let image =
        crate::guest::image::for_tests(&ctx.settings, arch, std::slice::from_ref(&args.test))
            .await?;
    let dir = s.cache_dir.join("runs").join(format!(
        "bisect-step-{}-{}",
        &head[..12.min(head.len())],
        std::process::id()
    ));
    let accel = match build::build(&req, &s.cache_dir, &|_| {}).await {
        Ok(b) => {
            let probe = run::probe_spec(&b.artifact, &image, s.vm_cpus, s.vm_memory_mib, &dir);
            run::choose_accel(s.accel, arch, &probe).await
        }
        Err(e) => {
            eprintln!(
                "lab: bisect-step: {}: build failed, skip: {}",
                &head[..12],
                first_line(&e.to_string())
            );
            return Ok(125);
        }
    };
    let result = run_step(
        ctx,
        &state,
        &image,
        (accel.0, &accel.1),
        &req,
        args.runs.max(1),
        &dir,
        None,
    )
    .await;
    Ok(match result {
        StepResult::Skip { why, .. } => {
            eprintln!("lab: bisect-step: {}: skip: {why}", &head[..12]);
            125
        }
        StepResult::Runs { runs, failures, .. } => {
            eprintln!(
                "lab: bisect-step: {}: {failures} of {runs} runs of {} failed: {}",
                &head[..12],
                args.test,
                if failures > 0 { "bad" } else { "good" }
            );
            i32::from(failures > 0)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::crash::{CrashKind, CrashReport, Fingerprint};

    fn outcome(kind: OutcomeKind) -> TestOutcome {
        let mut o = TestOutcome::infra("t", Arch::X86_64, 0, 0, "x".into());
        o.kind = kind;
        o
    }

    #[test]
    fn steps_count_failures_drop_infra_and_skip_on_a_different_crash() {
        let os = vec![
            outcome(OutcomeKind::Pass),
            outcome(OutcomeKind::Fail),
            outcome(OutcomeKind::InfraError),
            outcome(OutcomeKind::Hang),
        ];
        match classify(&os, None, "k".into()) {
            StepResult::Runs { runs, failures, .. } => assert_eq!((runs, failures), (3, 2)),
            StepResult::Skip { why, .. } => panic!("skipped: {why}"),
        }
        let mut crash = outcome(OutcomeKind::KernelCrash);
        crash.crashes = vec![CrashReport {
            kind: CrashKind::Bug,
            title: "BUG: x".into(),
            excerpt: String::new(),
            fingerprint: Fingerprint {
                kind: CrashKind::Bug,
                frames: vec!["futex_wake".into()],
            },
            first_line_no: 1,
        }];
        let id = crash.crashes[0].fingerprint.id();
        assert!(matches!(
            classify(&[crash.clone()], Some(&id), "k".into()),
            StepResult::Runs { failures: 1, .. }
        ));
        assert!(matches!(
            classify(&[crash.clone()], Some("0000ffff"), "k".into()),
            StepResult::Skip { .. }
        ));
        assert!(matches!(
            classify(&[outcome(OutcomeKind::InfraError)], None, "k".into()),
            StepResult::Skip { .. }
        ));
    }
}
