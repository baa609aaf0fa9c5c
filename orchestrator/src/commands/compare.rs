//! `lab compare A B`: resolve both sides to kernels (building them through the cache), set
//! up each arch, run the comparison, render the reports and map the verdict to an exit code.

use std::io::IsTerminal;
use std::sync::Arc;

use super::progress::BuildProgress;
use super::{kernel_requests, Context};
use crate::arch::Arch;
use crate::cli::{ArchesArg, CompareArgs, KernelSelect, StackArgs};
use crate::compare::analysis::Params;
use crate::compare::model::{CompareReport, Overall};
use crate::compare::{self, ArchPlan, ComparePlan, Event};
use crate::errors::{LabError, Outcome};
use crate::kernel::build;
use crate::kernel::cache::{Artifact, Cache};
use crate::report::{self, ReportFormat};
use crate::results::store::{Recorder, Store};
use crate::run;
use crate::run::clamp_jobs;
use crate::stats::Spending;

/// What one side names.
#[derive(Debug, Clone, PartialEq)]
enum SideSpec {
    /// Patch sets on the lab's kernel; empty is `base`.
    Patches(Vec<String>),
    /// A kernel definition (name in kernels/ or a path).
    Kernel(String),
    /// Stored builds, by key prefix (one per arch).
    Stored(Vec<String>),
}

fn parse_side(spec: &str, ctx: &Context) -> Result<SideSpec, LabError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(LabError::usage(
            "A/B",
            "an empty side: name `base`, patch sets, a kernel definition or key:PREFIX",
        ));
    }
    if let Some(keys) = spec.strip_prefix("key:") {
        return Ok(SideSpec::Stored(
            keys.split(',')
                .map(|k| k.trim().trim_start_matches("key:").to_owned())
                .collect(),
        ));
    }
    if spec == "base" {
        return Ok(SideSpec::Patches(Vec::new()));
    }
    let s = &ctx.settings;
    let is_def = spec.ends_with(".toml") || s.kernels_dir.join(format!("{spec}.toml")).is_file();
    if is_def {
        return Ok(SideSpec::Kernel(spec.to_owned()));
    }
    Ok(SideSpec::Patches(
        spec.split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty() && p != "base")
            .collect(),
    ))
}

/// The tests a comparison runs by default: the union of what the patch sets on either side
/// exercise (their expect.toml), in suite order; the whole suite when some side has no
/// patch set, or a set says nothing.
fn default_tests(ctx: &Context, sides: &[&SideSpec]) -> (Vec<String>, String) {
    let s = &ctx.settings;
    let suite = (s.suite.clone(), "the suite".to_owned());
    let mut wanted = std::collections::BTreeSet::new();
    let mut names = Vec::new();
    for side in sides {
        let SideSpec::Patches(sets) = side else {
            return suite;
        };
        for set in sets {
            let path = s.patches_dir.join(set).join("expect.toml");
            let expect = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| toml::from_str::<crate::selftest::Expect>(&t).ok());
            match expect {
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
    (tests, format!("exercised by {}", names.join(", ")))
}

/// Builds (or finds) one side's kernel for every arch.
async fn resolve_side(
    ctx: &Context,
    spec: &SideSpec,
    arches: &[Arch],
    config: &[String],
) -> Result<Vec<Artifact>, LabError> {
    let s = &ctx.settings;
    let select = |patches: Vec<String>, kernel: Option<String>| KernelSelect {
        arch: ArchesArg::of(arches),
        stack: StackArgs {
            patches,
            config: config.to_vec(),
        },
        kernel,
    };
    let requests = match spec {
        SideSpec::Stored(keys) => {
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
            return Ok(out);
        }
        SideSpec::Patches(p) => kernel_requests(ctx, &select(p.clone(), None))?,
        SideSpec::Kernel(k) => kernel_requests(ctx, &select(Vec::new(), Some(k.clone())))?,
    };
    let mut out = Vec::new();
    for req in &requests {
        let progress = BuildProgress::new(req.arch.name(), ctx.quiet);
        let report = |e| progress.event(e);
        let built = build::build(req, &s.cache_dir, &report).await;
        progress.finish();
        let built = built?;
        if !ctx.quiet {
            eprintln!(
                "lab: {}: {} {} ({}{})",
                req.arch,
                built.artifact.label(),
                &built.artifact.manifest.key[..12],
                if built.cached { "cached" } else { "built" },
                if built.cached {
                    String::new()
                } else {
                    format!(" in {:.0}s", built.seconds)
                }
            );
        }
        out.push(built.artifact);
    }
    Ok(out)
}

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
        "{:?}|{}|{}|{}|{}|{}",
        plan.knobs,
        plan.duration.as_millis(),
        plan.params.alpha,
        plan.params.margin_rate,
        plan.params.margin_metric,
        plan.batch_runs
    ));
    hex::encode(h.finalize())[..24].to_owned()
}

pub async fn run(ctx: &Context, args: &CompareArgs) -> Result<Outcome, LabError> {
    let Some((report, dir)) = compare_report(ctx, args).await? else {
        return Err(LabError::Interrupted);
    };
    emit(ctx, args, &report, &dir)?;
    Ok(outcome(&report))
}

/// Runs a comparison and records it; `None` when it was interrupted (its finished runs are
/// in the store). Returns the report and the comparison's folder.
pub async fn compare_report(
    ctx: &Context,
    args: &CompareArgs,
) -> Result<Option<(CompareReport, std::path::PathBuf)>, LabError> {
    let s = &ctx.settings;
    let c = &s.compare;
    let arches: Vec<Arch> = args.arch.resolve(&s.arches);
    let a_spec = parse_side(&args.a, ctx)?;
    let b_spec = parse_side(&args.b, ctx)?;
    let (tests, tests_from): (Vec<String>, String) = if !args.tests.tests.is_empty() {
        (
            args.tests
                .tests
                .iter()
                .map(|t| t.trim().to_owned())
                .collect(),
            "--tests".to_owned(),
        )
    } else if !c.tests.is_empty() {
        (c.tests.clone(), "[compare] tests".to_owned())
    } else {
        default_tests(ctx, &[&a_spec, &b_spec])
    };
    let budget = args.budget.unwrap_or(c.budget);
    let duration = args.duration.duration.unwrap_or(c.duration);
    let alpha = args.alpha.unwrap_or(c.alpha);
    if !(alpha > 0.0 && alpha < 0.5) {
        return Err(LabError::usage(
            "--alpha",
            format!("{alpha}: use a probability between 0 and 0.5, such as 0.05"),
        ));
    }
    let margin_rate = args.margin.unwrap_or(c.margin_rate);
    if !(margin_rate > 0.0 && margin_rate < 1.0) {
        return Err(LabError::usage(
            "--margin",
            format!("{margin_rate}: use an absolute failure-rate difference between 0 and 1, such as 0.15"),
        ));
    }
    let margin_metric = args.metric_margin.unwrap_or(c.margin_metric);
    if !(margin_metric > 0.0 && margin_metric < 10.0) {
        return Err(LabError::usage(
            "--metric-margin",
            format!("{margin_metric}: use a relative shift such as 0.10 for 10 %"),
        ));
    }
    if args.max_runs.is_some_and(|m| m < 2) {
        return Err(LabError::usage("--max-runs", "must be at least 2"));
    }
    let knobs = args.knobs.pairs();
    let seed = args.seed.or_now();

    // Both sides through the cache, then one image per arch (both sides share it, so the
    // test binaries are the same).
    let a_arts = resolve_side(ctx, &a_spec, &arches, &args.config).await?;
    let b_arts = resolve_side(ctx, &b_spec, &arches, &args.config).await?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let dir = s
        .cache_dir
        .join("runs")
        .join(format!("{stamp}-{}-compare", std::process::id()));
    let mut arch_plans = Vec::new();
    for (i, arch) in arches.iter().enumerate() {
        let image = crate::guest::image::for_tests(&ctx.settings, *arch, &tests).await?;
        let probe = run::probe_spec(
            &a_arts[i],
            &image,
            s.vm_cpus,
            s.vm_memory_mib,
            &dir.join(arch.name()),
        );
        let (accel, reason) = run::choose_accel(s.accel, *arch, &probe).await;
        if !ctx.quiet {
            eprintln!("lab: {arch}: {reason}");
        }
        arch_plans.push(ArchPlan {
            arch: *arch,
            a: a_arts[i].clone(),
            b: b_arts[i].clone(),
            image,
            accel,
            accel_reason: reason,
        });
    }
    // By default no vCPU overcommit: guests that fight for the host's cores measure the
    // fight, not the kernel (under TCG, two 2-vCPU guests on 2 cores turned a 40 µs futex
    // wake-up p50 into 450 µs, with a spread that hid everything).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let asked_jobs = args
        .jobs
        .unwrap_or_else(|| (cores / s.vm_cpus.max(1) as usize).max(1))
        .max(1);
    let (jobs, note) = clamp_jobs(asked_jobs.min(64), s.vm_cpus, s.vm_memory_mib);
    if let (Some(n), Some(_)) = (note, args.jobs) {
        eprintln!("lab: {n}");
    }
    let mut reproduce = std::env::args().collect::<Vec<_>>().join(" ");
    if args.seed.seed.is_none() {
        reproduce.push_str(&format!(" --seed {seed}"));
    }
    let plan = ComparePlan {
        a_spec: args.a.clone(),
        b_spec: args.b.clone(),
        arches: arch_plans,
        tests,
        duration,
        knobs,
        seed,
        cpus: s.vm_cpus,
        memory_mib: s.vm_memory_mib,
        boot_timeout: s.boot_timeout,
        jobs,
        batch_runs: c.batch_runs,
        budget,
        params: Params {
            alpha,
            alpha_equivalence: alpha,
            power: 0.8,
            margin_rate,
            margin_metric,
            max_runs_per_side: args.max_runs.unwrap_or(2),
            spending: Spending::Pocock,
            metric_suffixes: c.metrics.clone(),
        },
        max_runs: args.max_runs,
        reuse: !args.fresh,
        stop_on_regression: args.stop_on_regression,
        dir: dir.clone(),
        reproduce,
    };

    let store_path = Store::default_path(&s.cache_dir);
    let mut store = Store::open(&store_path).map_err(super::results::store_error)?;
    let key = session_key(&plan);
    let args_json = serde_json::json!({
        "a": args.a, "b": args.b, "arches": arches, "tests": plan.tests,
        "budget_s": budget.as_secs(), "alpha": alpha, "margin": margin_rate,
        "metric_margin": margin_metric, "knobs": plan.knobs, "seed": seed,
    })
    .to_string();
    let session = match store
        .open_session("compare", &key)
        .map_err(super::results::store_error)?
    {
        Some(open) => {
            if !ctx.quiet {
                eprintln!(
                    "lab: resuming comparison {} (started {}); its finished runs are reused",
                    open.id, open.created_at
                );
            }
            open.id
        }
        None => store
            .begin_session("compare", &key, &args_json)
            .map_err(super::results::store_error)?,
    };
    let recorder = Arc::new(Recorder::new(store));
    if !ctx.quiet {
        eprintln!(
            "lab: comparing A={} with B={} on {}; {} tests ({tests_from}), budget {}s, alpha {alpha}, margins {margin_rate} (rates) and {:.0}% (metrics); session {session}",
            args.a,
            args.b,
            arches.iter().map(|a| a.name()).collect::<Vec<_>>().join(","),
            plan.tests.len(),
            budget.as_secs(),
            margin_metric * 100.0,
        );
        eprintln!("lab: runs in {}", dir.display());
    }
    let quiet = ctx.quiet;
    let verbose_outcomes = std::env::var_os("LAB_COMPARE_VERBOSE").is_some();
    let on = move |e: Event| {
        if quiet {
            return;
        }
        match e {
            Event::Reused {
                arch,
                side,
                outcomes,
            } => eprintln!(
                "lab: {arch} {}: reusing {outcomes} stored runs",
                side.name()
            ),
            Event::Outcome { side, outcome: o } => {
                if verbose_outcomes || o.kind != crate::results::OutcomeKind::Pass {
                    eprintln!(
                        "  {} {} {} #{}: {} {}",
                        o.arch,
                        side.name(),
                        o.test,
                        o.iteration,
                        o.kind,
                        o.summary.chars().take(100).collect::<String>()
                    );
                }
            }
            Event::Horizon {
                max_runs_per_side,
                batch_s,
            } => eprintln!(
                "lab: first batch took {batch_s:.0}s; the design allows up to {max_runs_per_side} runs per test and side"
            ),
            Event::Batch {
                number,
                elapsed_s,
                decided,
                questions,
            } => eprintln!(
                "lab: batch {number} done at {elapsed_s:.0}s: {decided} of {questions} questions decided"
            ),
            Event::Decided {
                arch,
                test,
                question,
                verdict,
                runs_per_side,
            } => eprintln!(
                "lab: {arch} {test} {question}: {verdict} after {runs_per_side} runs per side"
            ),
            Event::BudgetSpent { elapsed_s } => eprintln!(
                "lab: budget spent at {elapsed_s:.0}s; the open questions are inconclusive"
            ),
            Event::StoreError(e) => eprintln!("lab: results store: {e}"),
        }
    };
    let report = compare::compare(&plan, recorder.clone(), session, &on).await;
    if crate::process::interrupted().is_some() {
        print_record_summary(&recorder);
        // The finished runs are in the store; `lab compare` with the same arguments resumes.
        eprintln!(
            "lab: interrupted; {} runs are in the store, and the same command resumes session {session}",
            report.runs_made
        );
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
    print_record_summary(&recorder);
    Ok(Some((report, dir)))
}

/// What the results store did not take, once, when the comparison is over.
fn print_record_summary(recorder: &Recorder) {
    let recorded = recorder.finish();
    if !recorded.is_clean() {
        eprintln!("lab: {recorded}");
    }
}

/// Writes `report.json`, `report.md` and `report.html` into the comparison's folder.
pub fn write_report_files(report: &CompareReport, dir: &std::path::Path) {
    let _ = std::fs::create_dir_all(dir);
    for (format, name) in [
        (ReportFormat::Json, "report.json"),
        (ReportFormat::Markdown, "report.md"),
        (ReportFormat::Html, "report.html"),
    ] {
        if let Err(e) = report::write(report, format, &dir.join(name)) {
            eprintln!("lab: {e}");
        }
    }
}

/// How a finished comparison ends.
pub fn outcome(report: &CompareReport) -> Outcome {
    match report.overall {
        Overall::Regression => Outcome::Regression,
        Overall::Infra => Outcome::InfraOnly,
        Overall::NoRegression | Overall::NoRegressionInconclusive => Outcome::Pass,
    }
}

/// Prints the report and writes the files asked for, plus a JSON, markdown and HTML copy
/// in the comparison's folder.
pub fn emit(
    ctx: &Context,
    args: &CompareArgs,
    report: &CompareReport,
    dir: &std::path::Path,
) -> Result<(), LabError> {
    let write = |format: ReportFormat, path: &std::path::Path| -> Result<(), LabError> {
        Ok(report::write(report, format, path)?)
    };
    write_report_files(report, dir);
    for (path, format) in [
        (&args.reports.common.markdown, ReportFormat::Markdown),
        (&args.reports.common.json_out, ReportFormat::Json),
        (&args.reports.junit, ReportFormat::Junit),
        (&args.reports.html, ReportFormat::Html),
    ] {
        if let Some(p) = path {
            write(format, p)?;
        }
    }
    let stdout = if args.json.json {
        report::render(report, ReportFormat::Json)
    } else {
        report::render(
            report,
            ReportFormat::Terminal {
                color: std::io::stdout().is_terminal(),
            },
        )
    }?;
    print!("{stdout}");
    if !ctx.quiet {
        eprintln!(
            "lab: reports in {} (report.html, report.md, report.json); `lab results show {}` renders them again",
            dir.display(),
            report.session
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn ctx() -> Context {
        Context {
            settings: Settings::from_text(std::path::Path::new("/lab/lab.toml"), "")
                .expect("defaults"),
            quiet: true,
        }
    }

    #[test]
    fn sides_parse_into_patch_sets_definitions_and_keys() {
        let c = ctx();
        assert_eq!(parse_side("base", &c).ok(), Some(SideSpec::Patches(vec![])));
        assert_eq!(
            parse_side("futex-race-amplifiers,bad-futex-no-spurious-retry", &c).ok(),
            Some(SideSpec::Patches(vec![
                "futex-race-amplifiers".into(),
                "bad-futex-no-spurious-retry".into()
            ]))
        );
        assert_eq!(
            parse_side("kernels/mine.toml", &c).ok(),
            Some(SideSpec::Kernel("kernels/mine.toml".into()))
        );
        assert_eq!(
            parse_side("key:3f2a9c1d,key:77aa00bb", &c).ok(),
            Some(SideSpec::Stored(vec!["3f2a9c1d".into(), "77aa00bb".into()]))
        );
        assert!(parse_side("  ", &c).is_err());
    }
}
