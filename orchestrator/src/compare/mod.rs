//! `lab compare`: do two kernels behave differently? Interleaved runs of both sides on every
//! arch, sequential statistics per question ([`analysis`]), verdicts with stated error
//! rates ([`model`]). [`session`] sets a comparison up from a typed request and records it;
//! this module holds the loop it runs.
//!
//! The loop runs in batches. A batch is, for each arch still undecided, one boot of A and
//! one of B, each running every undecided test `batch_runs` times. The order of the two
//! alternates from batch to batch (A B, then B A: ABBA), and when two guests fit on the
//! host the two sides of one arch run at the same time, so drift in the host (load, thermal
//! state, page cache) hits both. After each batch every open question gets one look.
//!
//! The design's horizon (the maximum runs per side) is fixed after the first batch, from
//! its wall time and the budget, before any look is taken: it depends on how long runs
//! take, never on what they showed.
//!
//! Every outcome is written to the results store as it arrives, so an interrupted
//! comparison loses nothing that had finished, and runs of the same kernel key, test
//! binary and conditions that are already in the store are reused (the first look sees
//! them).

pub mod analysis;
pub mod model;
pub mod session;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::arch::{Accel, Arch};
use crate::guest::image::BaseImage;
use crate::kernel::cache::Artifact;
use crate::results::store::{condition_digest, test_digests, Recorder};
use crate::results::{OutcomeKind, TestOutcome};
use crate::run::{self, RunPlan};

use analysis::{Analysis, Params};
use model::{
    CompareReport, DesignInfo, Overall, Side, SideInfo, SideKernel, Verdict, REPORT_FORMAT_VERSION,
};

/// One arch of a comparison: both kernels, the image, the accelerator.
#[derive(Debug, Clone)]
pub struct ArchPlan {
    pub arch: Arch,
    pub a: Artifact,
    pub b: Artifact,
    pub image: BaseImage,
    pub accel: Accel,
    pub accel_reason: String,
}

/// Everything a comparison needs, resolved.
#[derive(Debug, Clone)]
pub struct ComparePlan {
    pub a_spec: String,
    pub b_spec: String,
    pub arches: Vec<ArchPlan>,
    pub tests: Vec<String>,
    pub duration: Duration,
    pub knobs: Vec<(String, String)>,
    pub seed: u64,
    pub cpus: u32,
    pub memory_mib: u32,
    pub boot_timeout: Duration,
    /// Guests at once.
    pub jobs: usize,
    pub batch_runs: u32,
    pub budget: Duration,
    /// The design; `max_runs_per_side` is set from the budget unless `max_runs` is given.
    pub params: Params,
    pub max_runs: Option<u64>,
    pub reuse: bool,
    /// End the comparison at the first regression.
    pub stop_on_regression: bool,
    pub dir: PathBuf,
    pub reproduce: String,
}

/// What the loop tells whoever shows progress.
#[derive(Debug, Clone)]
pub enum Event {
    Reused {
        arch: Arch,
        side: Side,
        outcomes: usize,
    },
    Outcome {
        side: Side,
        outcome: TestOutcome,
    },
    Horizon {
        max_runs_per_side: u64,
        batch_s: f64,
    },
    Batch {
        number: usize,
        elapsed_s: f64,
        decided: usize,
        questions: usize,
    },
    Decided {
        arch: Arch,
        test: String,
        question: String,
        verdict: String,
        runs_per_side: u64,
    },
    BudgetSpent {
        elapsed_s: f64,
    },
    StoreError(String),
}

/// A test's outcomes of one run, per arch and side.
type BatchOutcomes = BTreeMap<(Arch, Side), Vec<TestOutcome>>;

/// Runs the comparison to its verdicts. Infrastructure trouble shows up as infra-error
/// outcomes, which never count; the report says how many there were.
pub async fn compare(
    plan: &ComparePlan,
    recorder: Arc<Recorder>,
    session: i64,
    on: &(dyn Fn(Event) + Send + Sync),
) -> CompareReport {
    let started = Instant::now();
    let started_at = crate::results::store::now_rfc3339();
    let deadline = started + plan.budget;
    let mut analysis = Analysis::new(plan.params.clone(), plan.tests.clone());
    // Runs are comparable only under the same conditions, which include each arch's
    // accelerator.
    let conditions: BTreeMap<Arch, String> = plan
        .arches
        .iter()
        .map(|a| {
            (
                a.arch,
                condition_digest(
                    plan.duration.as_millis() as u64,
                    &plan.knobs,
                    a.accel.name(),
                    plan.cpus,
                    plan.memory_mib,
                ),
            )
        })
        .collect();

    // Stored runs of the same kernels, binaries and conditions: the first look sees them.
    let mut reused: BatchOutcomes = BTreeMap::new();
    let mut reused_count = 0u64;
    if plan.reuse {
        for ap in &plan.arches {
            let same = ap.a.manifest.key == ap.b.manifest.key;
            let digests = test_digests(&ap.image.manifest.programs);
            let condition = conditions.get(&ap.arch).cloned().unwrap_or_default();
            for test in &plan.tests {
                let Some(digest) = digests.get(test).cloned() else {
                    continue;
                };
                // A store that cannot be read means nothing is reused; the recorder says so.
                let fetch = |key: &str| -> Vec<TestOutcome> {
                    recorder
                        .read(|s| s.reusable_outcomes(key, ap.arch, test, &digest, &condition))
                        .map(|v| v.into_iter().map(|s| s.outcome).collect())
                        .unwrap_or_default()
                };
                if same {
                    // The same kernel on both sides (an A/A check): split the pool, so no run
                    // is counted twice.
                    for (i, o) in fetch(&ap.a.manifest.key).into_iter().enumerate() {
                        let side = if i % 2 == 0 { Side::A } else { Side::B };
                        reused.entry((ap.arch, side)).or_default().push(o);
                    }
                } else {
                    reused
                        .entry((ap.arch, Side::A))
                        .or_default()
                        .extend(fetch(&ap.a.manifest.key));
                    reused
                        .entry((ap.arch, Side::B))
                        .or_default()
                        .extend(fetch(&ap.b.manifest.key));
                }
            }
        }
        for ((arch, side), os) in &reused {
            if !os.is_empty() {
                reused_count += os.len() as u64;
                on(Event::Reused {
                    arch: *arch,
                    side: *side,
                    outcomes: os.len(),
                });
            }
        }
    }

    let mut batch_no = 0usize;
    let mut runs_made = 0u64;
    let mut infra_errors = 0u64;
    let mut run_dirs = Vec::new();
    let mut time_to_verdict = None;
    let mut first_regression = None;
    let mut last_batch_s = 0.0f64;
    let mut open_tests: BTreeMap<Arch, Vec<String>> = plan
        .arches
        .iter()
        .map(|a| (a.arch, plan.tests.clone()))
        .collect();
    let mut decided_seen: std::collections::BTreeSet<(Arch, String, String)> = Default::default();
    loop {
        if crate::process::interrupted().is_some() {
            break;
        }
        batch_no += 1;
        let batch_start = Instant::now();
        let outcomes = run_batch(
            plan,
            batch_no,
            &open_tests,
            &recorder,
            session,
            on,
            &mut run_dirs,
        )
        .await;
        let batch_s = batch_start.elapsed().as_secs_f64();
        last_batch_s = last_batch_s.max(batch_s);
        for os in outcomes.values() {
            runs_made += os.len() as u64;
            infra_errors += os
                .iter()
                .filter(|o| o.kind == OutcomeKind::InfraError)
                .count() as u64;
        }
        let mut merged = outcomes;
        if batch_no == 1 {
            for (k, os) in std::mem::take(&mut reused) {
                let e = merged.entry(k).or_default();
                let mut all = os;
                all.append(e);
                *e = all;
            }
            // The horizon: how many runs per side fit in the budget at this pace, fixed
            // before the first look.
            let max_runs = plan.max_runs.unwrap_or_else(|| {
                let left = plan.budget.as_secs_f64() - started.elapsed().as_secs_f64();
                let batches = (left / batch_s.max(1.0)).floor().max(0.0) as u64 + 1;
                let reused_per_side = plan
                    .arches
                    .iter()
                    .flat_map(|a| {
                        let merged = &merged;
                        plan.tests.iter().map(move |t| {
                            let n = |side| {
                                merged.get(&(a.arch, side)).map_or(0, |os| {
                                    os.iter().filter(|o| &o.test == t).count() as u64
                                })
                            };
                            n(Side::A).min(n(Side::B))
                        })
                    })
                    .max()
                    .unwrap_or(0)
                    .saturating_sub(u64::from(plan.batch_runs));
                (reused_per_side + batches * u64::from(plan.batch_runs)).max(4)
            });
            analysis.set_max_runs(max_runs);
            on(Event::Horizon {
                max_runs_per_side: max_runs,
                batch_s,
            });
        }
        let batch: Vec<(Arch, Vec<TestOutcome>, Vec<TestOutcome>)> = plan
            .arches
            .iter()
            .filter(|a| open_tests.get(&a.arch).is_some_and(|t| !t.is_empty()))
            .map(|a| {
                (
                    a.arch,
                    merged.remove(&(a.arch, Side::A)).unwrap_or_default(),
                    merged.remove(&(a.arch, Side::B)).unwrap_or_default(),
                )
            })
            .collect();
        let done = analysis.add_batch(&batch);
        let results = analysis.results(plan.seed);
        for q in &results {
            if !matches!(q.decision, crate::stats::Decision::Continue)
                || q.verdict == Verdict::Regression
            {
                let key = (q.arch, q.test.clone(), q.question.label());
                if decided_seen.insert(key) {
                    on(Event::Decided {
                        arch: q.arch,
                        test: q.test.clone(),
                        question: q.question.label(),
                        verdict: q.verdict.name().to_owned(),
                        runs_per_side: q.runs_a.min(q.runs_b),
                    });
                }
            }
        }
        if first_regression.is_none() && results.iter().any(|q| q.verdict == Verdict::Regression) {
            first_regression = Some(started.elapsed().as_secs_f64());
        }
        for (arch, tests) in open_tests.iter_mut() {
            tests.retain(|t| analysis.is_open(*arch, t));
        }
        on(Event::Batch {
            number: batch_no,
            elapsed_s: started.elapsed().as_secs_f64(),
            decided: results
                .iter()
                .filter(|q| !matches!(q.decision, crate::stats::Decision::Continue))
                .count(),
            questions: results.len(),
        });
        if done {
            time_to_verdict = Some(started.elapsed().as_secs_f64());
            break;
        }
        if plan.stop_on_regression && results.iter().any(|q| q.verdict == Verdict::Regression) {
            time_to_verdict = Some(started.elapsed().as_secs_f64());
            break;
        }
        if analysis.horizon_reached() {
            break;
        }
        // Stop when another batch would overrun the budget.
        if Instant::now() + Duration::from_secs_f64(last_batch_s) > deadline {
            on(Event::BudgetSpent {
                elapsed_s: started.elapsed().as_secs_f64(),
            });
            break;
        }
    }
    if !analysis.all_decided() {
        analysis.conclude();
    }
    let time_to_verdict = time_to_verdict.unwrap_or_else(|| started.elapsed().as_secs_f64());
    let questions = analysis.results(plan.seed);
    let mut crashes = analysis.crashes().to_vec();
    for c in &mut crashes {
        c.run_dir = plan.dir.join(c.arch.name()).display().to_string();
    }
    let any_regression = questions.iter().any(|q| q.verdict == Verdict::Regression);
    // A crashing baseline leaves B's failure rate unknown there: open, like an inconclusive
    // question, and said as such in the report.
    let any_inconclusive = questions.iter().any(|q| {
        matches!(
            q.verdict,
            Verdict::Inconclusive { .. } | Verdict::BaselineCrashes { .. }
        )
    });
    let counted_runs = runs_made - infra_errors + reused_count;
    let overall = if any_regression {
        Overall::Regression
    } else if counted_runs == 0 {
        Overall::Infra
    } else if any_inconclusive {
        Overall::NoRegressionInconclusive
    } else {
        Overall::NoRegression
    };
    // Runs saved: over the questions the sequential design decided, the runs per side it
    // took against the fixed-n design with the same error rates for each.
    let decided: Vec<&model::QuestionResult> = questions
        .iter()
        .filter(|q| {
            matches!(
                q.decision,
                crate::stats::Decision::Different { .. }
                    | crate::stats::Decision::Equivalent { .. }
            )
        })
        .collect();
    let runs_used: u64 = decided.iter().map(|q| q.runs_a.min(q.runs_b)).sum();
    let fixed_n: u64 = decided
        .iter()
        .map(|q| q.fixed_n.as_ref().map_or(0, |f| f.per_side))
        .sum();
    let side_info = |side: Side, spec: &str| SideInfo {
        spec: spec.to_owned(),
        label: plan
            .arches
            .first()
            .map(|a| match side {
                Side::A => a.a.label(),
                Side::B => a.b.label(),
            })
            .unwrap_or_default(),
        kernels: plan
            .arches
            .iter()
            .map(|a| {
                let art = match side {
                    Side::A => &a.a,
                    Side::B => &a.b,
                };
                SideKernel {
                    arch: a.arch,
                    kernel_key: art.manifest.key.clone(),
                    kernel_release: art.manifest.kernel_release.clone(),
                    image_digest: a.image.manifest.digest.clone(),
                }
            })
            .collect(),
    };
    CompareReport {
        format_version: REPORT_FORMAT_VERSION,
        lab_version: env!("CARGO_PKG_VERSION").to_owned(),
        session,
        started_at,
        a: side_info(Side::A, &plan.a_spec),
        b: side_info(Side::B, &plan.b_spec),
        arches: plan.arches.iter().map(|a| a.arch).collect(),
        tests: plan.tests.clone(),
        knobs: plan.knobs.clone(),
        design: DesignInfo {
            alpha: plan.params.alpha,
            alpha_equivalence: plan.params.alpha_equivalence,
            power: plan.params.power,
            margin_rate: plan.params.margin_rate,
            margin_metric: plan.params.margin_metric,
            max_runs_per_side: analysis.params().max_runs_per_side,
            budget_s: plan.budget.as_secs(),
            batch_runs: plan.batch_runs,
            test_duration_ms: plan.duration.as_millis() as u64,
            spending: format!("{:?}", plan.params.spending),
            multiplicity:
                "Holm by alpha recycling (Maurer & Bretz 2013) across tests x arches x metrics"
                    .into(),
        },
        questions,
        crashes,
        overall,
        reused_runs: reused_count,
        runs_made,
        infra_errors,
        time_to_verdict_s: time_to_verdict,
        first_regression_s: first_regression,
        wall_s: started.elapsed().as_secs_f64(),
        runs_per_side_used: runs_used,
        runs_per_side_fixed_n: fixed_n,
        accel: plan
            .arches
            .iter()
            .map(|a| (a.arch, a.accel_reason.clone()))
            .collect(),
        run_dirs: run_dirs
            .iter()
            .map(|d: &PathBuf| d.display().to_string())
            .collect(),
        reproduce: plan.reproduce.clone(),
    }
}

/// One batch: for each arch with open tests, one boot of each side, in ABBA order, as many
/// at once as `jobs` allows. Every outcome goes to the store as it arrives.
async fn run_batch(
    plan: &ComparePlan,
    batch_no: usize,
    open_tests: &BTreeMap<Arch, Vec<String>>,
    recorder: &Arc<Recorder>,
    session: i64,
    on: &(dyn Fn(Event) + Send + Sync),
    run_dirs: &mut Vec<PathBuf>,
) -> BatchOutcomes {
    let order = if batch_no % 2 == 1 {
        [Side::A, Side::B]
    } else {
        [Side::B, Side::A]
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(plan.jobs.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Side, TestOutcome)>();
    let mut handles = Vec::new();
    for ap in &plan.arches {
        let Some(tests) = open_tests.get(&ap.arch).filter(|t| !t.is_empty()) else {
            continue;
        };
        for side in order {
            let artifact = match side {
                Side::A => ap.a.clone(),
                Side::B => ap.b.clone(),
            };
            let dir = plan
                .dir
                .join(ap.arch.name())
                .join(format!("batch-{batch_no:03}-{}", side.name()));
            run_dirs.push(dir.clone());
            let run_plan = RunPlan::new(
                artifact,
                ap.image.clone(),
                ap.accel,
                crate::run::VmSize {
                    cpus: plan.cpus,
                    memory_mib: plan.memory_mib,
                    boot_timeout: plan.boot_timeout,
                },
                tests.clone(),
                plan.batch_runs,
                plan.duration,
                plan.knobs.clone(),
                plan.seed
                    .wrapping_add((batch_no as u64) << 20)
                    .wrapping_add(u64::from(side == Side::B) << 19),
                dir,
            );
            let recorder = recorder.clone();
            let sem = sem.clone();
            let tx = tx.clone();
            let reason = ap.accel_reason.clone();
            let reproduce = plan.reproduce.clone();
            handles.push(tokio::spawn(async move {
                let _permit = sem.acquire_owned().await;
                let recorded = run_plan.begin_record(
                    &recorder,
                    Some(session),
                    Some(side.name()),
                    Some(batch_no as u32),
                );
                let on_outcome = |o: &TestOutcome| {
                    recorder.add_outcome(&recorded, o);
                    // The receiver lives until every task is joined.
                    let _ = tx.send((side, o.clone()));
                };
                let report = run::run(&run_plan, &reason, &reproduce, &on_outcome).await;
                recorder.finish_run(&recorded, &report.manifest);
                (run_plan.arch, side, report.outcomes)
            }));
        }
    }
    drop(tx);
    let mut out: BatchOutcomes = BTreeMap::new();
    let forward = async {
        while let Some((side, o)) = rx.recv().await {
            on(Event::Outcome { side, outcome: o });
        }
    };
    let collect = async {
        let mut results = Vec::new();
        for h in handles {
            results.push(h.await);
        }
        results
    };
    let ((), results) = tokio::join!(forward, collect);
    for r in results {
        match r {
            Ok((arch, side, outcomes)) => {
                out.entry((arch, side)).or_default().extend(outcomes);
            }
            Err(e) => on(Event::StoreError(format!("a run task failed: {e}"))),
        }
    }
    out
}
