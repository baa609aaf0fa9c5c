//! A comparison session: from two named sides to a recorded report. It resolves each side to
//! one kernel per arch (through the build cache), picks the tests, assembles the guest image
//! and chooses the accelerator per arch, sizes the guests to the host, opens (or resumes) the
//! session in the results store, runs the loop ([`super::compare`]) and closes the session
//! with its verdict.
//!
//! It is the engine behind `lab compare` and behind the runtime check of `lab gate`, so it
//! takes a typed [`CompareRequest`] and the resolved [`Settings`], never command-line types,
//! and it prints nothing: what a person would want to see goes out as [`SessionEvent`]s, and
//! the verb that called it decides what reaches the terminal. Checking the numbers a person
//! typed (alpha, margins) is the verb's job too, where the flag's name is known.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::analysis::Params;
use super::calibration::{predicted_pairs, Calibration, MetricCalibration};
use super::model::{CompareReport, Overall};
use super::{ArchPlan, ComparePlan, Event};
use crate::arch::Arch;
use crate::config::Settings;
use crate::errors::LabError;
use crate::exec::Executor;
use crate::kernel::build::{BuildEvent, BuildRequest};
use crate::kernel::cache::{Artifact, Cache};
use crate::results::store::{RecordSummary, Recorder, Store};
use crate::stats::Spending;

/// What one side of a comparison names.
#[derive(Debug, Clone, PartialEq)]
pub enum SideSpec {
    /// Patch sets on the lab's kernel; empty is `base`.
    Patches(Vec<String>),
    /// A kernel definition (name in kernels/ or a path).
    Kernel(String),
    /// Stored builds, by key prefix (one per arch).
    Stored(Vec<String>),
}

/// One side as it was named (the report and the store show that text) and what it names.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedSide {
    pub name: String,
    pub spec: SideSpec,
}

impl NamedSide {
    /// Reads a side as `lab compare` takes it: `base`, patch sets (`a,b`), a kernel
    /// definition, or `key:PREFIX[,PREFIX...]`.
    pub fn parse(text: &str, s: &Settings) -> Result<NamedSide, LabError> {
        let spec = text.trim();
        if spec.is_empty() {
            return Err(LabError::usage(
                "A/B",
                "an empty side: name `base`, patch sets, a kernel definition or key:PREFIX",
            ));
        }
        let named = |spec| {
            Ok(NamedSide {
                name: text.to_owned(),
                spec,
            })
        };
        if let Some(keys) = spec.strip_prefix("key:") {
            return named(SideSpec::Stored(
                keys.split(',')
                    .map(|k| k.trim().trim_start_matches("key:").to_owned())
                    .collect(),
            ));
        }
        if spec == "base" {
            return named(SideSpec::Patches(Vec::new()));
        }
        let is_def =
            spec.ends_with(".toml") || s.kernels_dir.join(format!("{spec}.toml")).is_file();
        if is_def {
            return named(SideSpec::Kernel(spec.to_owned()));
        }
        let sets: Vec<String> = spec
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty() && p != "base")
            .collect();
        for set in &sets {
            crate::kernel::patch::check_set_name(set)
                .map_err(|e| LabError::usage("A/B", e.to_string()))?;
        }
        named(SideSpec::Patches(sets))
    }

    /// The lab's kernel as it is.
    pub fn base() -> NamedSide {
        NamedSide {
            name: "base".into(),
            spec: SideSpec::Patches(Vec::new()),
        }
    }

    /// One patch series on the lab's kernel, by path (a folder, a .patch or an mbox).
    pub fn series(path: &str) -> NamedSide {
        NamedSide {
            name: path.to_owned(),
            spec: SideSpec::Patches(vec![path.to_owned()]),
        }
    }
}

/// Everything a comparison is asked to do, resolved: no defaults are left to pick except
/// the tests (`None`: what the sides exercise). Where its runs happen, and how many at
/// once, is the executor's business.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareRequest {
    pub a: NamedSide,
    pub b: NamedSide,
    pub arches: Vec<Arch>,
    pub tests: Option<Vec<String>>,
    pub budget: Duration,
    /// Family-wise probability of a false "different".
    pub alpha: f64,
    /// Equivalence margin for failure rates (absolute).
    pub margin_rate: f64,
    /// Equivalence margin for metrics (relative).
    pub margin_metric: f64,
    /// Cap on runs per test and side; `None`: from the budget.
    pub max_runs: Option<u64>,
    /// How long each test run drives its workload.
    pub duration: Duration,
    pub knobs: Vec<(String, String)>,
    /// Knobs of one side only, on top of `knobs`.
    pub knobs_a: Vec<(String, String)>,
    pub knobs_b: Vec<(String, String)>,
    /// Extra config fragments for both sides.
    pub config: Vec<String>,
    /// Do not reuse stored runs.
    pub fresh: bool,
    pub stop_on_regression: bool,
    pub seed: u64,
    /// The command line that repeats this comparison, seed included, for the report.
    pub reproduce: String,
    /// The error spending of the metric questions (failure rates keep Pocock).
    pub metric_spending: Spending,
    /// Runs of each test per boot; `None`: from A's calibration where every arch has one,
    /// else `[compare] batch-runs`.
    pub runs_per_boot: Option<u32>,
    /// Do not stack race amplifiers under both sides: neither the test map's (for a plain
    /// patch) nor those a known-bad set requires.
    pub no_amplify: bool,
}

impl CompareRequest {
    /// A comparison of `a` with `b` under the lab's `[compare]` settings, on its arches.
    pub fn new(
        s: &Settings,
        a: NamedSide,
        b: NamedSide,
        seed: u64,
        reproduce: String,
    ) -> CompareRequest {
        let c = &s.compare;
        CompareRequest {
            a,
            b,
            arches: s.arches.clone(),
            tests: None,
            budget: c.budget,
            alpha: c.alpha,
            margin_rate: c.margin_rate,
            margin_metric: c.margin_metric,
            max_runs: None,
            duration: c.duration,
            knobs: Vec::new(),
            knobs_a: Vec::new(),
            knobs_b: Vec::new(),
            config: Vec::new(),
            fresh: false,
            stop_on_regression: false,
            seed,
            reproduce,
            metric_spending: Spending::Pocock,
            runs_per_boot: None,
            no_amplify: false,
        }
    }
}

/// What a comparison runs, chosen before anything is built: its tests and why, and its
/// sides with race amplifiers stacked under both: the test map's when a side is a plain
/// patch, else those a side's set `requires` (a known-bad set and the amplifier whose
/// windows make it fail), unless a side already names them.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub tests: Vec<String>,
    pub tests_from: TestsFrom,
    pub a: SideSpec,
    pub b: SideSpec,
    /// The request's knobs, and the amplifiers' (on for both sides).
    pub knobs: Vec<(String, String)>,
    /// Amplifier sets stacked under both sides.
    pub amplifiers: Vec<String>,
    /// The sets whose `requires` named the amplifiers; empty when the test map chose them.
    pub amplified_for: Vec<String>,
    /// Why the amplifiers were not stacked, when the map or a set names some.
    pub not_amplified: Option<String>,
}

/// The tests `--tests all` names: the suite and every test the map knows.
pub const ALL_TESTS: &str = "all";

/// Chooses what `req` runs (see [`Choice`]).
pub fn choose(s: &Settings, req: &CompareRequest) -> Result<Choice, LabError> {
    let c = &s.compare;
    let map = || super::select::TestMap::load(&s.guest_source.join("guest-tests/test-map.toml"));
    let mut amplifiers = Vec::new();
    let (tests, tests_from) = match &req.tests {
        Some(t) if t.len() == 1 && t[0].trim() == ALL_TESTS => {
            let mut all = s.suite.clone();
            for area in map()
                .map_err(|e| LabError::usage("--tests", e.to_string()))?
                .areas
            {
                for t in area.tests {
                    if !all.contains(&t) {
                        all.push(t);
                    }
                }
            }
            (all, TestsFrom::All)
        }
        Some(tests) => (
            tests.iter().map(|t| t.trim().to_owned()).collect(),
            TestsFrom::Request,
        ),
        None if !c.tests.is_empty() => (c.tests.clone(), TestsFrom::Settings),
        None => {
            let (tests, from) = default_tests(s, &[&req.a.spec, &req.b.spec]);
            match from {
                TestsFrom::Suite => match plain_patches(s, &[&req.a.spec, &req.b.spec])? {
                    None => (tests, from),
                    Some(patches) => {
                        let refs: Vec<&crate::kernel::patch::Patch> = patches.iter().collect();
                        let map = map().map_err(|e| LabError::usage("FILE", e.to_string()))?;
                        match map.select(&refs) {
                            Some(sel) => {
                                amplifiers = sel.amplifiers;
                                (sel.tests, TestsFrom::Map(sel.reasons))
                            }
                            None => {
                                let files: Vec<String> = super::select::touched(&refs)
                                    .into_iter()
                                    .map(|(f, _)| f)
                                    .collect();
                                (tests, TestsFrom::Uncovered(files))
                            }
                        }
                    }
                },
                other => (tests, other),
            }
        }
    };
    let mut choice = Choice {
        tests,
        tests_from,
        a: req.a.spec.clone(),
        b: req.b.spec.clone(),
        knobs: req.knobs.clone(),
        amplifiers: Vec::new(),
        amplified_for: Vec::new(),
        not_amplified: None,
    };
    if amplifiers.is_empty() {
        (amplifiers, choice.amplified_for) = required_amplifiers(s, &[&req.a.spec, &req.b.spec]);
    }
    if amplifiers.is_empty() {
        return Ok(choice);
    }
    if req.no_amplify {
        choice.not_amplified = Some("--no-amplify".into());
        return Ok(choice);
    }
    let (SideSpec::Patches(a), SideSpec::Patches(b)) = (&req.a.spec, &req.b.spec) else {
        choice.not_amplified = Some(
            "a side is a kernel definition or a stored build, not patches on the lab's kernel"
                .into(),
        );
        return Ok(choice);
    };
    let stack = |sets: &[String]| -> Vec<String> {
        amplifiers
            .iter()
            .filter(|amp| !sets.contains(amp))
            .cloned()
            .chain(sets.iter().cloned())
            .collect()
    };
    for amp in &amplifiers {
        let path = s.patches_dir.join(amp).join("expect.toml");
        let expect = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| toml::from_str::<crate::selftest::Expect>(&t).ok())
            .ok_or_else(|| {
                LabError::usage(
                    "FILE",
                    format!(
                        "{}: the amplifier's expect.toml cannot be read",
                        path.display()
                    ),
                )
            })?;
        for k in expect.knobs {
            let Some((name, value)) = k.split_once('=') else {
                continue;
            };
            if !choice.knobs.iter().any(|(n, _)| n == name) {
                choice.knobs.push((name.to_owned(), value.to_owned()));
            }
        }
    }
    choice.a = SideSpec::Patches(stack(a));
    choice.b = SideSpec::Patches(stack(b));
    choice.amplifiers = amplifiers;
    Ok(choice)
}

/// The debug sets (race amplifiers) that the sides' sets `require` and no side names, and
/// the sets that require them: a known-bad set is meant to be run on top of them, with
/// their knobs on (its selftest row, which also shows that they raise no false alarm on a
/// good kernel).
fn required_amplifiers(s: &Settings, sides: &[&SideSpec]) -> (Vec<String>, Vec<String>) {
    let expect = |set: &str| set_expect(s, set);
    let named: Vec<&String> = sides
        .iter()
        .filter_map(|side| match side {
            SideSpec::Patches(sets) => Some(sets),
            _ => None,
        })
        .flatten()
        .collect();
    let (mut amplifiers, mut requiring) = (Vec::new(), Vec::new());
    for set in &named {
        let Some(e) = expect(set) else { continue };
        for r in e.requires {
            let debug = expect(&r).is_some_and(|re| re.role == crate::selftest::Role::Debug);
            if debug && !named.contains(&&r) {
                if !amplifiers.contains(&r) {
                    amplifiers.push(r);
                }
                if !requiring.contains(*set) {
                    requiring.push((*set).clone());
                }
            }
        }
    }
    (amplifiers, requiring)
}

/// The patches of the sides' sets that say nothing of what they exercise (plain patches,
/// no expect.toml), when some side has such a set and every side is patches on the lab's
/// kernel; `None` otherwise.
fn plain_patches(
    s: &Settings,
    sides: &[&SideSpec],
) -> Result<Option<Vec<crate::kernel::patch::Patch>>, LabError> {
    let mut out = Vec::new();
    for side in sides {
        let SideSpec::Patches(sets) = side else {
            return Ok(None);
        };
        for set in sets {
            if s.patches_dir.join(set).join("expect.toml").is_file() {
                continue;
            }
            let loaded = crate::kernel::patch::load_set(set, &s.patches_dir, &s.root)?;
            out.extend(loaded.patches);
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Where the tests of a comparison came from, for the line that announces it.
#[derive(Debug, Clone, PartialEq)]
pub enum TestsFrom {
    /// The request named them.
    Request,
    /// `[compare] tests` in the lab definition.
    Settings,
    /// What these patch sets' expect.toml say they exercise.
    Exercised(Vec<String>),
    /// The whole suite.
    Suite,
    /// `--tests all`: the suite and every test of the test map.
    All,
    /// The test map, from what a plain patch changes: one reason per area.
    Map(Vec<String>),
    /// The whole suite: no area of the test map covers these files of a plain patch.
    Uncovered(Vec<String>),
}

/// A kernel one side got for one arch.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltKernel {
    pub label: String,
    pub key: String,
    /// Found in the cache rather than built.
    pub cached: bool,
    pub seconds: f64,
}

/// How a comparison was set up, once its session is open.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionStart {
    pub a: String,
    pub b: String,
    pub arches: Vec<Arch>,
    pub tests: usize,
    pub tests_from: TestsFrom,
    pub budget: Duration,
    pub alpha: f64,
    pub margin_rate: f64,
    pub margin_metric: f64,
    pub session: i64,
    /// The comparison's folder: its runs, and the reports written there.
    pub dir: PathBuf,
}

/// What a session tells whoever shows progress, in the order it happens.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    /// A side's kernel for `arch` is being looked up in the cache or built.
    Building { arch: Arch },
    /// How that build is going.
    Build(BuildEvent),
    /// That build ended: what it gave, or `None` when it failed (the error is returned).
    Built {
        arch: Arch,
        kernel: Option<BuiltKernel>,
    },
    /// The accelerator chosen for `arch`, and why.
    Accel { arch: Arch, reason: String },
    /// A stored calibration of A's kernel on this arch, and what it predicts: per metric,
    /// (test, metric, pairs to show a difference of the margin, pairs to show none).
    Calibration {
        arch: Arch,
        session: i64,
        created_at: String,
        predictions: Vec<(String, String, u64, u64)>,
    },
    /// Runs per boot were taken from the calibration: how many, and whose advice.
    RunsPerBoot { runs: u32, why: String },
    /// An unfinished session with the same key is picked up; its batches are replayed.
    Resuming { session: i64, created_at: String },
    /// The session is open and the loop starts.
    Started(Box<SessionStart>),
    /// From the loop.
    Loop(Event),
    /// The loop is over (decided, budget spent or interrupted).
    LoopEnded,
    /// What the results store did not take, once, when the runs are over.
    Unrecorded(RecordSummary),
    /// Ctrl-C: the runs made so far are in the store, and the same request resumes.
    Interrupted { runs: u64, session: i64 },
    /// What the comparison runs and why, before anything is built.
    Chosen(Box<Choice>),
}

/// Runs a comparison and records it; `None` when it was interrupted (its finished runs are
/// in the store). Returns the report and the comparison's folder.
pub async fn run(
    s: &Settings,
    exec: &dyn Executor,
    req: &CompareRequest,
    on: &(dyn Fn(SessionEvent) + Send + Sync),
) -> Result<Option<(CompareReport, PathBuf)>, LabError> {
    let c = &s.compare;
    let choice = choose(s, req)?;
    on(SessionEvent::Chosen(Box::new(choice.clone())));
    let mut chosen = req.clone();
    chosen.a.spec = choice.a;
    chosen.b.spec = choice.b;
    chosen.knobs = choice.knobs;
    let req = &chosen;
    let amplified = !choice.amplifiers.is_empty();
    let (tests, tests_from) = (choice.tests, choice.tests_from);

    // Both sides through the cache, then one image per arch (both sides share it, so the
    // test binaries are the same).
    let a_arts = resolve_side(s, exec, &req.a.spec, &req.arches, &req.config, on).await?;
    let b_arts = resolve_side(s, exec, &req.b.spec, &req.arches, &req.config, on).await?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let dir = s
        .cache_dir
        .join("runs")
        .join(format!("{stamp}-{}-compare", std::process::id()));
    let mut arch_plans = Vec::new();
    // Per arch, A's calibration, if it has one.
    let mut calibrations: Vec<Option<Calibration>> = Vec::new();
    for ((arch, a), b) in req.arches.iter().zip(a_arts).zip(b_arts) {
        let image = crate::run::guest_image(s, *arch, &tests).await?;
        let (accel, reason) = exec.choose_accel(&a, &image, &dir.join(arch.name())).await;
        on(SessionEvent::Accel {
            arch: *arch,
            reason: reason.clone(),
        });
        if let Some(cal) = Calibration::load(&s.cache_dir, *arch, &a.manifest.key) {
            let alpha_q = req.alpha / (tests.len() * 2).max(1) as f64;
            let predictions = cal
                .metrics
                .iter()
                .filter(|m| tests.contains(&m.test))
                .map(|m| {
                    let (d, e) = predicted_pairs(m, req.margin_metric, alpha_q, req.alpha, 0.8);
                    (m.test.clone(), m.metric.clone(), d, e)
                })
                .collect();
            on(SessionEvent::Calibration {
                arch: *arch,
                session: cal.session,
                created_at: cal.created_at.clone(),
                predictions,
            });
            calibrations.push(Some(cal));
        } else {
            calibrations.push(None);
        }
        arch_plans.push(ArchPlan {
            arch: *arch,
            a,
            b,
            image,
            accel,
            accel_reason: reason,
        });
    }
    let batch_runs = match req.runs_per_boot {
        Some(n) => n,
        None => {
            let cals: Option<Vec<Calibration>> = calibrations.into_iter().collect();
            match cals.and_then(|cals| runs_per_boot_advice(&cals, &tests, &c.primary)) {
                Some((runs, why)) => {
                    on(SessionEvent::RunsPerBoot {
                        runs,
                        why: format!("{why}; [compare] batch-runs says {}", c.batch_runs),
                    });
                    runs
                }
                None => c.batch_runs,
            }
        }
    };
    let plan = ComparePlan {
        a_spec: req.a.name.clone(),
        b_spec: req.b.name.clone(),
        arches: arch_plans,
        tests,
        duration: req.duration,
        knobs: req.knobs.clone(),
        knobs_a: req.knobs_a.clone(),
        knobs_b: req.knobs_b.clone(),
        seed: req.seed,
        cpus: s.vm_cpus,
        memory_mib: s.vm_memory_mib,
        boot_timeout: s.boot_timeout,
        batch_runs,
        budget: req.budget,
        params: Params {
            alpha: req.alpha,
            alpha_equivalence: req.alpha,
            power: 0.8,
            margin_rate: req.margin_rate,
            margin_metric: req.margin_metric,
            max_runs_per_side: req.max_runs.unwrap_or(2),
            spending: Spending::Pocock,
            metric_spending: req.metric_spending,
            // With amplifiers on, their delays change the timing the metrics measure, and
            // differently on A and B when B changes the amplified code: only failure rates.
            metric_suffixes: if amplified {
                Vec::new()
            } else {
                c.metrics.clone()
            },
            primary: c.primary.clone(),
        },
        max_runs: req.max_runs,
        stop_on_regression: req.stop_on_regression,
        dir: dir.clone(),
        reproduce: req.reproduce.clone(),
    };

    let mut store = Store::open(&s.store.clone())?;
    let key = session_key(&plan);
    tracing::debug!(%key, engine = exec.engine(), slots = exec.slots(), tests = ?plan.tests, dir = %dir.display(), "comparison planned");
    let args_json = serde_json::json!({
        "a": req.a.name, "b": req.b.name, "arches": req.arches, "tests": plan.tests,
        "budget_s": req.budget.as_secs(), "alpha": req.alpha, "margin": req.margin_rate,
        "metric_margin": req.margin_metric, "knobs": plan.knobs, "knobs_a": plan.knobs_a,
        "knobs_b": plan.knobs_b, "seed": req.seed,
    })
    .to_string();
    let resumable = if req.fresh {
        None
    } else {
        store.open_session("compare", &key)?
    };
    let session = match resumable {
        Some(open) => {
            on(SessionEvent::Resuming {
                session: open.id,
                created_at: open.created_at,
            });
            open.id
        }
        None => store.begin_session("compare", &key, &args_json)?,
    };
    let recorder = Arc::new(Recorder::new(store));
    on(SessionEvent::Started(Box::new(SessionStart {
        a: req.a.name.clone(),
        b: req.b.name.clone(),
        arches: req.arches.clone(),
        tests: plan.tests.len(),
        tests_from,
        budget: req.budget,
        alpha: req.alpha,
        margin_rate: req.margin_rate,
        margin_metric: req.margin_metric,
        session,
        dir: dir.clone(),
    })));
    let on_loop = |e: Event| on(SessionEvent::Loop(e));
    let report = super::compare(&plan, exec, recorder.clone(), session, &on_loop).await;
    on(SessionEvent::LoopEnded);
    if crate::process::interrupted().is_some() {
        // The finished runs are in the store; the same request resumes.
        report_unrecorded(&recorder, on);
        on(SessionEvent::Interrupted {
            runs: report.runs_made,
            session,
        });
        return Ok(None);
    }
    let json = serde_json::to_string(&report).unwrap_or_default();
    let status = match report.overall {
        Overall::Regression => "regression",
        Overall::NoRegression => "no-regression",
        Overall::NoRegressionInconclusive => "inconclusive",
        Overall::Infra => "infra-error",
    };
    recorder.finish_session(session, status, &json);
    report_unrecorded(&recorder, on);
    Ok(Some((report, dir)))
}

/// What the results store did not take, once, when the comparison is over.
fn report_unrecorded(recorder: &Recorder, on: &(dyn Fn(SessionEvent) + Send + Sync)) {
    let recorded = recorder.finish();
    if !recorded.is_clean() {
        on(SessionEvent::Unrecorded(recorded));
    }
}

/// A patch set's expect.toml, when it has one that reads.
fn set_expect(s: &Settings, set: &str) -> Option<crate::selftest::Expect> {
    let text = std::fs::read_to_string(s.patches_dir.join(set).join("expect.toml")).ok()?;
    toml::from_str(&text).ok()
}

/// The tests a comparison runs by default: the union of what the patch sets on either side
/// exercise (their expect.toml), in suite order; the whole suite when some side has no
/// patch set, or a set says nothing.
fn default_tests(s: &Settings, sides: &[&SideSpec]) -> (Vec<String>, TestsFrom) {
    let suite = (s.suite.clone(), TestsFrom::Suite);
    let mut wanted = BTreeSet::new();
    let mut names = Vec::new();
    for side in sides {
        let SideSpec::Patches(sets) = side else {
            return suite;
        };
        for set in sets {
            match set_expect(s, set) {
                Some(e) if !e.exercises.is_empty() => {
                    wanted.extend(e.exercises);
                    names.push(set.clone());
                }
                _ => return suite,
            }
        }
    }
    if wanted.is_empty() {
        return suite;
    }
    let mut tests: Vec<String> = s
        .suite
        .iter()
        .filter(|t| wanted.contains(*t))
        .cloned()
        .collect();
    tests.extend(wanted.into_iter().filter(|t| !s.suite.contains(t)));
    names.dedup();
    (tests, TestsFrom::Exercised(names))
}

/// Builds (or finds) one side's kernel for every arch, in the order of `arches`.
async fn resolve_side(
    s: &Settings,
    exec: &dyn Executor,
    spec: &SideSpec,
    arches: &[Arch],
    config: &[String],
    on: &(dyn Fn(SessionEvent) + Send + Sync),
) -> Result<Vec<Artifact>, LabError> {
    let requests = match spec {
        SideSpec::Stored(keys) => return stored_side(s, keys, arches),
        _ if arches.is_empty() => {
            return Err(LabError::usage("--arch", "names no architecture"));
        }
        SideSpec::Patches(p) => BuildRequest::for_arches(s, arches, None, p, config)?,
        SideSpec::Kernel(k) => BuildRequest::for_arches(s, arches, Some(k), &[], config)?,
    };
    let mut out = Vec::new();
    for req in &requests {
        on(SessionEvent::Building { arch: req.arch });
        let report = |e| on(SessionEvent::Build(e));
        let built = exec.build(req, &report).await;
        on(SessionEvent::Built {
            arch: req.arch,
            kernel: built.as_ref().ok().map(|b| BuiltKernel {
                label: b.artifact.label(),
                key: b.artifact.manifest.key.clone(),
                cached: b.cached,
                seconds: b.seconds,
            }),
        });
        out.push(built?.artifact);
    }
    Ok(out)
}

/// A side of stored builds: one key per arch, each found by its prefix.
fn stored_side(s: &Settings, keys: &[String], arches: &[Arch]) -> Result<Vec<Artifact>, LabError> {
    let cache = Cache::new(&s.cache_dir);
    let mut found = Vec::new();
    for k in keys {
        found.push(cache.find(k)?);
    }
    let mut out = Vec::new();
    for a in arches {
        let art = found
            .iter()
            .find(|f| f.manifest.arch == *a)
            .cloned()
            .ok_or_else(|| {
                LabError::usage(
                    "key:",
                    format!(
                        "key:{}: no stored build for {a} among these keys; give one key per arch, comma-separated (see `lab cache list`)",
                        keys.join(",")
                    ),
                )
            })?;
        out.push(art);
    }
    Ok(out)
}

/// The session's identity in the store: the same kernels, image, tests and design resume
/// the same session.
fn session_key(plan: &ComparePlan) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for a in &plan.arches {
        h.update(a.arch.name());
        h.update(&a.a.manifest.key);
        h.update(&a.b.manifest.key);
        h.update(&a.image.manifest.digest);
    }
    h.update(plan.tests.join(","));
    h.update(format!(
        "{:?}|{:?}|{:?}|{}|{}|{}|{}|{}",
        plan.knobs,
        plan.knobs_a,
        plan.knobs_b,
        plan.duration.as_millis(),
        plan.params.alpha,
        plan.params.margin_rate,
        plan.params.margin_metric,
        plan.batch_runs
    ));
    // Keys of Pocock-only designs stay as they were, so their sessions still resume.
    if plan.params.metric_spending != Spending::Pocock {
        h.update(format!(
            "|metric-spending={:?}",
            plan.params.metric_spending
        ));
    }
    hex::encode(h.finalize())[..24].to_owned()
}

/// The runs per boot that calibrations (one per arch) advise for `tests`: the number, 1 to 8,
/// whose worst relative efficiency over the compared primary metrics (every metric of a test
/// without one) is highest, with a sentence saying so. A metric's information per second
/// with r runs in a boot is 1 / ((σ²_between + σ²_within / r) · (boot + r · runs of all
/// tests)); its relative efficiency is that over its best. `None` without a calibrated
/// metric of these tests on every arch.
fn runs_per_boot_advice(
    cals: &[Calibration],
    tests: &[String],
    primary: &BTreeMap<String, String>,
) -> Option<(u32, String)> {
    const MAX_RUNS: u32 = 8;
    let per_arch: Vec<Vec<(Arch, &MetricCalibration, f64, f64)>> = cals
        .iter()
        .map(|cal| {
            let all_runs_s = cal.run_s * tests.len() as f64;
            cal.metrics
                .iter()
                .filter(|m| tests.contains(&m.test))
                .filter(|m| primary.get(&m.test).is_none_or(|p| *p == m.metric))
                .filter(|m| m.sd_between_boots > 0.0 || m.sd_within_boot > 0.0)
                .map(|m| (cal.arch, m, cal.boot_s.max(0.0), all_runs_s.max(1e-6)))
                .collect()
        })
        .collect();
    if per_arch.is_empty() || per_arch.iter().any(Vec::is_empty) {
        return None;
    }
    let metrics: Vec<_> = per_arch.into_iter().flatten().collect();
    let info = |m: &MetricCalibration, boot: f64, runs: f64, r: u32| {
        let r = f64::from(r);
        let var = m.sd_between_boots.powi(2) + m.sd_within_boot.powi(2) / r;
        1.0 / (var * (boot + r * runs))
    };
    let efficiency = |r: u32| {
        metrics
            .iter()
            .map(|&(arch, m, boot, runs)| {
                let best = (1..=MAX_RUNS)
                    .map(|k| info(m, boot, runs, k))
                    .fold(0.0, f64::max);
                (info(m, boot, runs, r) / best, arch, m)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
    };
    let (runs, (worst, arch, m)) = (1..=MAX_RUNS)
        .filter_map(|r| efficiency(r).map(|e| (r, e)))
        // The highest worst case; of equals, the fewest runs.
        .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0).then(b.0.cmp(&a.0)))?;
    let sessions: Vec<String> = cals
        .iter()
        .map(|c| format!("{} by session {}", c.arch, c.session))
        .collect();
    Some((
        runs,
        format!(
            "calibrated {}: with {runs} per boot every compared metric keeps at least \
             {:.0} % of its best information per second (the least: {arch} {} {})",
            sessions.join(", "),
            worst * 100.0,
            m.test,
            m.metric
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::from_text(std::path::Path::new("/lab/lab.toml"), "").expect("defaults")
    }

    #[test]
    fn sides_parse_into_patch_sets_definitions_and_keys() {
        let s = settings();
        let spec = |text: &str| NamedSide::parse(text, &s).ok().map(|n| n.spec);
        assert_eq!(spec("base"), Some(SideSpec::Patches(vec![])));
        assert_eq!(
            spec("futex-race-amplifiers,bad-futex-no-spurious-retry"),
            Some(SideSpec::Patches(vec![
                "futex-race-amplifiers".into(),
                "bad-futex-no-spurious-retry".into()
            ]))
        );
        assert_eq!(
            spec("kernels/mine.toml"),
            Some(SideSpec::Kernel("kernels/mine.toml".into()))
        );
        assert_eq!(
            spec("key:3f2a9c1d,key:77aa00bb"),
            Some(SideSpec::Stored(vec!["3f2a9c1d".into(), "77aa00bb".into()]))
        );
        assert!(NamedSide::parse("  ", &s).is_err());
    }

    #[test]
    fn a_side_keeps_the_name_it_was_given() {
        let s = settings();
        let side = NamedSide::parse(" base", &s).expect("parses");
        assert_eq!(side.name, " base");
        assert_eq!(NamedSide::parse("base", &s).ok(), Some(NamedSide::base()));
        assert_eq!(
            NamedSide::series("/tmp/a,b").spec,
            SideSpec::Patches(vec!["/tmp/a,b".into()])
        );
    }

    #[test]
    fn a_request_starts_from_the_compare_settings() {
        let s = settings();
        let r = CompareRequest::new(&s, NamedSide::base(), NamedSide::base(), 7, "lab".into());
        assert_eq!(r.budget, s.compare.budget);
        assert_eq!(r.alpha, s.compare.alpha);
        assert_eq!(r.duration, s.compare.duration);
        assert_eq!(r.arches, s.arches);
        assert_eq!((r.tests, r.max_runs), (None, None));
    }

    #[test]
    fn runs_per_boot_balance_the_calibrated_primaries() {
        let m = |test: &str, metric: &str, between: f64, within: f64| MetricCalibration {
            test: test.into(),
            metric: metric.into(),
            boots: 12,
            runs_per_boot: 3.0,
            sd_between_boots: between,
            sd_within_boot: within,
            icc: 0.5,
            var_pair: 0.08,
            best_runs_per_boot: 1,
        };
        let cal = |arch, metrics| Calibration {
            arch,
            kernel_key: "k".into(),
            session: 26,
            created_at: "now".into(),
            boot_s: 4.0,
            run_s: 0.5,
            metrics,
        };
        let primary: BTreeMap<String, String> =
            [("futex_pingpong".to_owned(), "wake_ns_p50".to_owned())].into();
        let tests = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // All between boots: one run a boot is best. All within: as many as allowed.
        let between = cal(
            Arch::X86_64,
            vec![m("futex_pingpong", "wake_ns_p50", 0.2, 0.0)],
        );
        let within = cal(
            Arch::X86_64,
            vec![m("futex_pingpong", "wake_ns_p50", 0.0, 0.2)],
        );
        let one = tests(&["futex_pingpong"]);
        assert_eq!(
            runs_per_boot_advice(std::slice::from_ref(&between), &one, &primary).map(|a| a.0),
            Some(1)
        );
        assert_eq!(
            runs_per_boot_advice(std::slice::from_ref(&within), &one, &primary).map(|a| a.0),
            Some(8)
        );
        // A secondary metric does not count: only the primary's spread does.
        let mut with_secondary = between.clone();
        with_secondary
            .metrics
            .push(m("futex_pingpong", "round_trips_per_s", 0.0, 0.5));
        assert_eq!(
            runs_per_boot_advice(&[with_secondary], &one, &primary).map(|a| a.0),
            Some(1)
        );
        // Both arches at once: a compromise whose worst efficiency beats either extreme,
        // and the sentence names the metric that loses most.
        let other_arch = cal(
            Arch::Arm64,
            vec![m("futex_pingpong", "wake_ns_p50", 0.0, 0.2)],
        );
        let (n, why) =
            runs_per_boot_advice(&[between, other_arch], &one, &primary).expect("advice");
        assert!((2..=7).contains(&n), "{n}: {why}");
        assert!(
            why.contains("x86_64 by session 26") && why.contains("wake_ns_p50"),
            "{why}"
        );
        // An arch without a calibrated metric of these tests: no advice.
        assert_eq!(
            runs_per_boot_advice(&[within], &tests(&["futex_errno"]), &primary),
            None
        );
    }

    #[test]
    fn sides_without_patch_sets_run_the_suite() {
        let s = settings();
        let (tests, from) = default_tests(&s, &[&SideSpec::Kernel("k".into())]);
        assert_eq!((tests, from), (s.suite.clone(), TestsFrom::Suite));
    }
}
