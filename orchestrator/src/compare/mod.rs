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
//! The unit of every question is the boot, and the two boots of one arch in one batch are a
//! pair ([`analysis`] says how). While a batch runs, [`contention`] measures how much of the
//! host went to other work; a contended batch decides no metric.
//!
//! The design's horizon (the maximum boots per side) is fixed after the first batch, from
//! its wall time and the budget, before any look is taken: it depends on how long runs
//! take, never on what they showed. It is stated up front and kept.
//!
//! Every outcome is written to the results store as it arrives, so an interrupted
//! comparison loses nothing that had finished. The same command resumes the session: its
//! own batches are replayed, look by look, into the same design with the same horizon, and
//! it goes on from the next batch. Runs of other sessions are never folded in: they ran at
//! other times, under other host loads, outside this design's interleaving and error budget.

pub mod analysis;
mod boot_value;
pub mod calibration;
pub mod contention;
pub mod model;
pub mod select;
pub mod session;
#[cfg(test)]
mod simulation;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::arch::{Accel, Arch};
use crate::exec::{Batch, Executor, RunJob, RunTag};
use crate::guest::image::BaseImage;
use crate::kernel::cache::Artifact;
use crate::results::store::Recorder;
use crate::results::{OutcomeKind, TestOutcome};
use crate::run::RunPlan;

use analysis::{Analysis, BootPair, Params};
use model::{
    CompareReport, DesignInfo, Overall, Side, SideInfo, SideKernel, Verdict, REPORT_FORMAT_VERSION,
};
use serde::{Deserialize, Serialize};

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
    /// Knobs of one side only, on top of `knobs` (a side's value wins).
    pub knobs_a: Vec<(String, String)>,
    pub knobs_b: Vec<(String, String)>,
    pub seed: u64,
    pub cpus: u32,
    pub memory_mib: u32,
    pub boot_timeout: Duration,
    pub batch_runs: u32,
    pub budget: Duration,
    /// The design; `max_runs_per_side` is set from the budget unless `max_runs` is given.
    pub params: Params,
    pub max_runs: Option<u64>,
    /// End the comparison at the first regression.
    pub stop_on_regression: bool,
    pub dir: PathBuf,
    pub reproduce: String,
}

/// What the loop tells whoever shows progress.
#[derive(Debug, Clone)]
pub enum Event {
    /// A resumed session replayed its own earlier batches.
    Resumed {
        batches: usize,
        runs: u64,
        horizon: Option<u64>,
    },
    /// The host was busy with other work while a batch ran.
    Contended {
        batch: usize,
        foreign_share: f64,
    },
    /// `/proc` could not be read: contention is not measured.
    LoadUnknown,
    Outcome {
        side: Side,
        outcome: Box<TestOutcome>,
    },
    Horizon {
        max_boots_per_side: u64,
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
        boots_per_side: u64,
    },
    BudgetSpent {
        elapsed_s: f64,
    },
    /// Once the horizon is set: failure-rate questions that cannot end "no difference"
    /// within it even if every later boot passes, and each test's seconds per boot in the
    /// first batch (slowest first), so that the tests that take the budget can be named.
    OutOfReach {
        questions: Vec<analysis::OutOfReach>,
        per_boot_s: Vec<(Arch, String, f64)>,
        budget_s: f64,
    },
}

/// Each test's seconds per boot in one batch: its runs' durations on each side, averaged
/// over the two sides; slowest first.
fn time_per_boot(outcomes: &BatchOutcomes) -> Vec<(Arch, String, f64)> {
    let mut per_side: BTreeMap<(Arch, String), Vec<f64>> = BTreeMap::new();
    for ((arch, _), os) in outcomes {
        let mut here: BTreeMap<&str, f64> = BTreeMap::new();
        for o in os {
            *here.entry(o.test.as_str()).or_default() += o.duration_ms as f64 / 1000.0;
        }
        for (test, s) in here {
            per_side
                .entry((*arch, test.to_owned()))
                .or_default()
                .push(s);
        }
    }
    let mut out: Vec<(Arch, String, f64)> = per_side
        .into_iter()
        .map(|((arch, test), s)| (arch, test, s.iter().sum::<f64>() / s.len() as f64))
        .collect();
    out.sort_by(|x, y| y.2.total_cmp(&x.2));
    out
}

/// A test's outcomes of one run, per arch and side.
type BatchOutcomes = BTreeMap<(Arch, Side), Vec<TestOutcome>>;

/// Runs the comparison to its verdicts. Infrastructure trouble shows up as infra-error
/// outcomes, which never count; the report says how many there were.
pub async fn compare(
    plan: &ComparePlan,
    exec: &dyn Executor,
    recorder: Arc<Recorder>,
    session: i64,
    on: &(dyn Fn(Event) + Send + Sync),
) -> CompareReport {
    let started = Instant::now();
    let started_at = crate::results::store::now_rfc3339();
    let deadline = started + plan.budget;
    let mut analysis = Analysis::new(plan.params.clone(), plan.tests.clone());
    // A resumed session: replay its own batches into the same design, look by look.
    let mut state: LoopState = recorder
        .read(|s| s.session(session))
        .flatten()
        .and_then(|row| row.state_json)
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default();
    let stored = recorder
        .read(|s| s.session_outcomes(session))
        .unwrap_or_default();
    let mut replayed: BTreeMap<u32, BatchOutcomes> = BTreeMap::new();
    for (arch, side, batch, outcome) in stored {
        let side = if side == "B" { Side::B } else { Side::A };
        if plan.arches.iter().any(|a| a.arch == arch) {
            replayed
                .entry(batch)
                .or_default()
                .entry((arch, side))
                .or_default()
                .push(outcome);
        }
    }
    let mut reused_count = 0u64;
    let mut batch_no = 0usize;
    if !replayed.is_empty() {
        if let Some(h) = state.horizon {
            analysis.set_max_runs(h);
        }
        let batches = replayed.len();
        for (number, mut sides) in replayed {
            let number = number as usize;
            let pairs = boot_pairs(plan, &mut sides, state.contended.contains(&number));
            reused_count += pairs
                .iter()
                .map(|p| (p.a.len() + p.b.len()) as u64)
                .sum::<u64>();
            analysis.add_batch(&pairs);
            batch_no = batch_no.max(number);
        }
        on(Event::Resumed {
            batches,
            runs: reused_count,
            horizon: state.horizon,
        });
    }
    let mut open_tests: BTreeMap<Arch, Vec<String>> = plan
        .arches
        .iter()
        .map(|a| {
            let open = plan
                .tests
                .iter()
                .filter(|t| analysis.is_open(a.arch, t))
                .cloned()
                .collect();
            (a.arch, open)
        })
        .collect();

    let mut runs_made = 0u64;
    let mut infra_errors = 0u64;
    let mut run_dirs = Vec::new();
    let mut time_to_verdict = None;
    let mut first_regression = None;
    let mut last_batch_s = 0.0f64;
    let mut decided_seen: std::collections::BTreeSet<(Arch, String, String)> = Default::default();
    loop {
        if crate::process::interrupted().is_some() {
            break;
        }
        if analysis.all_decided() || analysis.horizon_reached() {
            break;
        }
        batch_no += 1;
        let batch_start = Instant::now();
        let sampler = exec
            .guests_here()
            .then(contention::Sampler::start)
            .flatten();
        if sampler.is_none() && batch_no == 1 && exec.guests_here() {
            on(Event::LoadUnknown);
        }
        let (outcomes, dirs) =
            run_batch(plan, exec, batch_no, &open_tests, &recorder, session, on).await;
        run_dirs.extend(dirs);
        let batch_s = batch_start.elapsed().as_secs_f64();
        last_batch_s = last_batch_s.max(batch_s);
        let load = match sampler {
            Some(s) => s.finish().await,
            None => None,
        };
        let contended = load.is_some_and(|l| l.contended());
        if let (true, Some(l)) = (contended, load) {
            state.contended.push(batch_no);
            on(Event::Contended {
                batch: batch_no,
                foreign_share: l.foreign_share,
            });
        }
        for os in outcomes.values() {
            runs_made += os.len() as u64;
            infra_errors += os
                .iter()
                .filter(|o| o.kind == OutcomeKind::InfraError)
                .count() as u64;
        }
        let mut merged = outcomes;
        let first_look = state.horizon.is_none();
        // Each test's time per boot in this first batch (runs of both sides, averaged),
        // for saying which tests a too-short budget goes to.
        let per_boot_s = if first_look {
            time_per_boot(&merged)
        } else {
            Vec::new()
        };
        if state.horizon.is_none() {
            // The horizon: how many boots per side fit in the budget at this pace, fixed
            // before the first look and kept by a resumed session.
            let max_boots = plan.max_runs.unwrap_or_else(|| {
                let left = plan.budget.as_secs_f64() - started.elapsed().as_secs_f64();
                let batches = (left / batch_s.max(1.0)).floor().max(0.0) as u64 + 1;
                (batches + analysis.batches() as u64).max(4)
            });
            analysis.set_max_runs(max_boots);
            state.horizon = Some(max_boots);
            on(Event::Horizon {
                max_boots_per_side: max_boots,
                batch_s,
            });
        }
        if let Ok(json) = serde_json::to_string(&state) {
            recorder.set_session_state(session, &json);
        }
        let batch = boot_pairs(plan, &mut merged, contended);
        let done = analysis.add_batch(&batch);
        if first_look {
            let questions = analysis.out_of_reach();
            if !questions.is_empty() {
                on(Event::OutOfReach {
                    questions,
                    per_boot_s,
                    budget_s: plan.budget.as_secs_f64(),
                });
            }
        }
        let results = analysis.results();
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
                        boots_per_side: {
                            let (a, b) = q.boots();
                            a.min(b)
                        },
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
    let questions = analysis.results();
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
    // Boots used against the fixed-n design, over every question: the inconclusive ones cost
    // their boots too.
    let runs_used: u64 = questions
        .iter()
        .map(|q| {
            let (a, b) = q.boots();
            a.min(b)
        })
        .sum();
    let fixed_n: u64 = questions
        .iter()
        .map(|q| q.fixed_n.as_ref().map_or(0, |f| f.per_side))
        .sum();
    let side_info = |side: Side, spec: &str| SideInfo {
        spec: spec.to_owned(),
        label: plan
            .arches
            .first()
            .map(|a| {
                let label = match side {
                    Side::A => a.a.label(),
                    Side::B => a.b.label(),
                };
                let own = match side {
                    Side::A => &plan.knobs_a,
                    Side::B => &plan.knobs_b,
                };
                if own.is_empty() {
                    label
                } else {
                    let knobs: Vec<String> = own.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("{label} with {}", knobs.join(" "))
                }
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
            spending: format!(
                "{} (failure rates), {} (metrics)",
                spending_name(plan.params.spending),
                spending_name(plan.params.metric_spending)
            ),
            multiplicity: "a graph over tests x arches x metrics: failure rates and primary \
                           metrics share α, secondaries wait for their primary (Bretz et al. \
                           2009; Maurer & Bretz 2013 for the sequential tests)"
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

impl ComparePlan {
    /// The knobs one side's guests get: the common ones, then the side's own, which win.
    pub fn side_knobs(&self, side: Side) -> Vec<(String, String)> {
        let own = match side {
            Side::A => &self.knobs_a,
            Side::B => &self.knobs_b,
        };
        let mut knobs: Vec<(String, String)> = self
            .knobs
            .iter()
            .filter(|(name, _)| !own.iter().any(|(n, _)| n == name))
            .cloned()
            .collect();
        knobs.extend(own.iter().cloned());
        knobs
    }
}

/// What a session keeps in the store so that resuming it continues its own design.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LoopState {
    /// Boots per side the design allows, fixed after the first batch.
    horizon: Option<u64>,
    /// Batches run while the host was contended.
    #[serde(default)]
    contended: Vec<usize>,
}

/// The pairs of one batch, per arch: A's boot and B's.
/// How the report names a spending function.
fn spending_name(s: crate::stats::Spending) -> &'static str {
    match s {
        crate::stats::Spending::OBrienFleming => "O'Brien-Fleming",
        crate::stats::Spending::Pocock => "Pocock",
    }
}

fn boot_pairs(plan: &ComparePlan, outcomes: &mut BatchOutcomes, contended: bool) -> Vec<BootPair> {
    plan.arches
        .iter()
        .map(|a| BootPair {
            arch: a.arch,
            a: outcomes.remove(&(a.arch, Side::A)).unwrap_or_default(),
            b: outcomes.remove(&(a.arch, Side::B)).unwrap_or_default(),
            contended,
        })
        .filter(|p| !p.a.is_empty() || !p.b.is_empty())
        .collect()
}

/// One batch: for each arch with open tests, one boot of each side, in ABBA order, on one
/// host per arch (the executor's host group), as many at once as the executor holds. Every
/// outcome goes to the store as it arrives. Returns the outcomes and the runs' folders.
async fn run_batch(
    plan: &ComparePlan,
    exec: &dyn Executor,
    batch_no: usize,
    open_tests: &BTreeMap<Arch, Vec<String>>,
    recorder: &Arc<Recorder>,
    session: i64,
    on: &(dyn Fn(Event) + Send + Sync),
) -> (BatchOutcomes, Vec<PathBuf>) {
    let order = if batch_no % 2 == 1 {
        [Side::A, Side::B]
    } else {
        [Side::B, Side::A]
    };
    let mut jobs = Vec::new();
    let mut sides = Vec::new();
    for (group, ap) in plan.arches.iter().enumerate() {
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
                plan.side_knobs(side),
                plan.seed
                    .wrapping_add((batch_no as u64) << 20)
                    .wrapping_add(u64::from(side == Side::B) << 19),
                dir,
            );
            jobs.push(RunJob {
                plan: run_plan,
                host_group: group,
                accel_reason: ap.accel_reason.clone(),
                reproduce: plan.reproduce.clone(),
                tag: RunTag {
                    session: Some(session),
                    side: Some(side.name()),
                    batch: Some(batch_no as u32),
                },
            });
            sides.push((ap.arch, side));
        }
    }
    let batch = Batch {
        jobs,
        recorder: Some(recorder.clone()),
    };
    let on_outcome = |i: usize, o: &TestOutcome| {
        on(Event::Outcome {
            side: sides[i].1,
            outcome: Box::new(o.clone()),
        });
    };
    let reports = exec.run(batch, &on_outcome).await;
    let mut out: BatchOutcomes = BTreeMap::new();
    let mut dirs = Vec::new();
    for ((arch, side), report) in sides.iter().zip(reports) {
        dirs.push(report.dir);
        out.entry((*arch, *side))
            .or_default()
            .extend(report.outcomes);
    }
    (out, dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(test: &str, arch: Arch, ms: u64) -> TestOutcome {
        let mut o = TestOutcome::infra(test, arch, 0, 0, String::new());
        o.kind = OutcomeKind::Pass;
        o.duration_ms = ms;
        o
    }

    #[test]
    fn time_per_boot_sums_a_boots_runs_and_averages_the_sides() {
        let x = Arch::X86_64;
        let mut b: BatchOutcomes = BTreeMap::new();
        b.insert(
            (x, Side::A),
            vec![
                ran("slow", x, 20_000),
                ran("slow", x, 22_000),
                ran("fast", x, 500),
            ],
        );
        b.insert(
            (x, Side::B),
            vec![ran("slow", x, 18_000), ran("fast", x, 700)],
        );
        let t = time_per_boot(&b);
        assert_eq!(t[0].1, "slow");
        assert!((t[0].2 - 30.0).abs() < 1e-9, "{t:?}");
        assert_eq!(t[1].1, "fast");
        assert!((t[1].2 - 0.6).abs() < 1e-9, "{t:?}");
    }
}
