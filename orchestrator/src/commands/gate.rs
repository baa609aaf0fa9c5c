//! `lab gate`: is this series fit to post? Per patch, in order: checkpatch, applies, builds
//! on every arch (incrementally, so the series is bisectable), no new compiler warnings in
//! the files it touches. Then the tip against base with `lab compare`, and a bisection
//! inside the series when the tip regresses. Also b4's CI-check protocol (`--b4`).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::compare::{compare_report, write_report_files};
use super::progress::BisectProgress;
use super::Context;
use crate::arch::Arch;
use crate::bisect::driver::{bisect_new, series_state};
use crate::cli::{
    ArchesArg, CompareArgs, CompareReportFiles, DurationArg, GateArgs, JsonArg, ReportFiles,
    SeedArg, TestsArg,
};
use crate::compare::model::{Overall, QuestionKind, Verdict};
use crate::errors::{GateError, LabError, Outcome};
use crate::gate::b4;
use crate::gate::checkpatch::run_checkpatch;
use crate::gate::report::{
    self as gate_report, Cell, Culprit, GateReport, GateVerdict, PatchRow, Status,
    GATE_FORMAT_VERSION,
};
use crate::gate::warnings::{new_warnings, parse_warnings, CompilerWarning};
use crate::io_error::io;
use crate::kernel::build::{self, BuildError, BuildRequest};
use crate::kernel::patch::{self, PatchSet};
use crate::kernel::source::{DefKind, KernelDef, Source};

/// The series to gate and the kernel it applies to.
struct Series {
    /// How the user named it, and a path lab's patch loader reads.
    name: String,
    path: PathBuf,
    set: PatchSet,
    kernel: KernelDef,
}

fn load_series(ctx: &Context, args: &GateArgs) -> Result<Series, LabError> {
    let s = &ctx.settings;
    if let (Some(def_name), Some(range)) = (&args.kernel, &args.range) {
        let def = KernelDef::find(s, def_name)?;
        let DefKind::Git { repo, .. } = &def.kind else {
            return Err(LabError::usage(
                "--kernel",
                format!("{def_name}: --range needs a git kernel definition"),
            ));
        };
        let (base, tip) = range
            .split_once("..")
            .ok_or_else(|| LabError::usage("--range", format!("{range:?}: use BASE..TIP")))?;
        let mbox = crate::kernel::git::run_bytes(
            repo,
            &[
                "format-patch",
                "--stdout",
                "--no-signature",
                &format!("{base}..{tip}"),
            ],
        )?;
        let dir = s.cache_dir.join("gate");
        std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        let path = dir.join(format!(
            "{}-{}.mbox",
            range.replace(['/', '.'], "_"),
            std::process::id()
        ));
        std::fs::write(&path, &mbox).map_err(io("cannot write", &path))?;
        let set = patch::load_set(&path.to_string_lossy(), &s.patches_dir, &s.root)?;
        return Ok(Series {
            name: format!("{def_name} {range}"),
            path,
            set,
            kernel: def.with_ref(base),
        });
    }
    let name = args.series.clone().ok_or_else(|| {
        LabError::usage(
            "SERIES",
            "name a series: a directory of patches, an mbox, a set name, or --kernel DEF --range BASE..TIP",
        )
    })?;
    let set = patch::load_set(&name, &s.patches_dir, &s.root)?;
    let path = if s.patches_dir.join(&name).exists() {
        s.patches_dir.join(&name)
    } else {
        s.resolve_path(&name)
    };
    Ok(Series {
        name,
        path,
        set,
        kernel: KernelDef::load(&s.kernel, &s.kernels_dir)?,
    })
}

/// Where checkpatch.pl lives for this kernel: the pristine tree, or the git work tree.
fn checkpatch_tree(kernel: &KernelDef, cache: &Path) -> Result<PathBuf, LabError> {
    let source = Source::resolve(kernel, cache)?;
    Ok(match &kernel.kind {
        DefKind::Tarball { .. } => source.pristine_dir()?,
        DefKind::Git { .. } => source.work_tree()?.src,
    })
}

/// The files a patch touches, tree-relative.
fn touched(p: &patch::Patch) -> Vec<String> {
    p.files
        .iter()
        .filter_map(|f| f.new.clone().or_else(|| f.old.clone()))
        .collect()
}

/// Warnings per file from a build log: only files the log compiled (a `CC` line) or warned
/// about are known to it.
fn warnings_by_file(log: &str) -> BTreeMap<String, Vec<CompilerWarning>> {
    // The O= tree's log grows with every build in it: only the last kernel build counts.
    let log = log
        .rmatch_indices("### lab: make ")
        .map(|(i, _)| &log[i..])
        .find(|section| {
            section
                .lines()
                .next()
                .is_some_and(|header| !header.contains("config"))
        })
        .unwrap_or(log);
    let mut map: BTreeMap<String, Vec<CompilerWarning>> = BTreeMap::new();
    for line in log.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("CC ") {
            let obj = rest.trim();
            if let Some(stem) = obj.strip_suffix(".o") {
                map.entry(format!("{stem}.c")).or_default();
            }
        }
    }
    for w in parse_warnings(log) {
        map.entry(w.file.clone()).or_default().push(w);
    }
    map
}

#[derive(Default)]
struct ArchState {
    /// Per file, the warnings of the most recent build that compiled it.
    known: BTreeMap<String, Vec<CompilerWarning>>,
    broken_since: Option<usize>,
}

/// Runs the per-patch checks. Returns the rows and whether every build passed.
async fn per_patch(
    ctx: &Context,
    series: &Series,
    arches: &[Arch],
    quiet: bool,
) -> Result<(Vec<PatchRow>, bool), LabError> {
    let s = &ctx.settings;
    let tree = checkpatch_tree(&series.kernel, &s.cache_dir)?;
    let mut states: BTreeMap<Arch, ArchState> = BTreeMap::new();
    // The base kernel: its full build log is the "before" of every file.
    for &arch in arches {
        let req = BuildRequest::with_settings(s, arch, series.kernel.clone(), Vec::new(), &[]);
        let built = build::build(&req, &s.cache_dir, &|_| {}).await?;
        let log = std::fs::read_to_string(built.artifact.log()).unwrap_or_default();
        states.insert(
            arch,
            ArchState {
                known: warnings_by_file(&log),
                broken_since: None,
            },
        );
    }
    let mut rows = Vec::new();
    let mut all_built = true;
    let mut applies_broken: Option<usize> = None;
    for (i, p) in series.set.patches.iter().enumerate() {
        let index = i + 1;
        if !quiet {
            eprintln!("lab: gate: patch {index}: {}", p.subject);
        }
        let mut cells = Vec::new();
        // checkpatch: errors fail, warnings are reported.
        cells.push(
            match run_checkpatch(&tree, &p.text, Duration::from_secs(300)) {
                Ok(r) => {
                    let first = |v: &[crate::gate::checkpatch::Finding]| {
                        v.first()
                            .map(|f| format!("{}: {}", f.kind, f.message))
                            .unwrap_or_default()
                    };
                    let (status, summary) = if !r.errors.is_empty() {
                        (
                            Status::Fail,
                            format!(
                                "{} errors, {} warnings; {}",
                                r.errors.len(),
                                r.warnings.len(),
                                first(&r.errors)
                            ),
                        )
                    } else if !r.warnings.is_empty() {
                        (
                            Status::Warn,
                            format!("{} warnings; {}", r.warnings.len(), first(&r.warnings)),
                        )
                    } else {
                        (Status::Pass, r.total_line.clone())
                    };
                    Cell {
                        check: "checkpatch".into(),
                        status,
                        summary,
                        details: Some(
                            r.errors
                                .iter()
                                .chain(r.warnings.iter())
                                .chain(r.checks.iter())
                                .map(|f| {
                                    format!(
                                        "{}:{}: {} {}",
                                        f.file.clone().unwrap_or_default(),
                                        f.line.unwrap_or(0),
                                        f.kind,
                                        f.message
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join("\n"),
                        ),
                        kernel_key: None,
                    }
                }
                Err(e) => Cell {
                    check: "checkpatch".into(),
                    status: Status::Fail,
                    summary: format!("checkpatch.pl could not run: {e}"),
                    details: None,
                    kernel_key: None,
                },
            },
        );
        let prefix = PatchSet {
            name: format!("{}[1..={index}]", series.set.name),
            source: series.set.source.clone(),
            patches: series.set.patches[..index].to_vec(),
        };
        if let Some(bad) = applies_broken {
            cells.push(Cell {
                check: "applies".into(),
                status: Status::Skip,
                summary: format!("patch {bad} does not apply"),
                details: None,
                kernel_key: None,
            });
            rows.push(PatchRow {
                index,
                label: p.label.clone(),
                subject: p.subject.clone(),
                cells,
            });
            all_built = false;
            continue;
        }
        let mut applies: Option<Cell> = None;
        let mut arch_cells = Vec::new();
        for &arch in arches {
            let req = BuildRequest::with_settings(
                s,
                arch,
                series.kernel.clone(),
                vec![prefix.clone()],
                &[],
            );
            let started = Instant::now();
            let result = build::build(&req, &s.cache_dir, &|_| {}).await;
            let st = states.entry(arch).or_default();
            match result {
                Err(BuildError::Patch(e)) => {
                    applies = Some(Cell {
                        check: "applies".into(),
                        status: Status::Fail,
                        summary: first_line(&e.to_string()),
                        details: Some(e.to_string()),
                        kernel_key: None,
                    });
                    applies_broken = Some(index);
                    break;
                }
                Err(e) => {
                    all_built = false;
                    st.broken_since.get_or_insert(index);
                    arch_cells.push(Cell {
                        check: format!("build {arch}"),
                        status: Status::Fail,
                        summary: build_failure_summary(&e),
                        details: Some(e.to_string()),
                        kernel_key: None,
                    });
                    arch_cells.push(Cell {
                        check: format!("warnings {arch}"),
                        status: Status::Skip,
                        summary: "did not build".into(),
                        details: None,
                        kernel_key: None,
                    });
                }
                Ok(built) => {
                    let key = built.artifact.manifest.key.clone();
                    arch_cells.push(Cell {
                        check: format!("build {arch}"),
                        status: Status::Pass,
                        summary: if built.cached {
                            format!("cached {}", &key[..12])
                        } else {
                            format!(
                                "{} compile steps in {:.0}s",
                                built.compiled,
                                started.elapsed().as_secs_f64()
                            )
                        },
                        details: None,
                        kernel_key: Some(key.clone()),
                    });
                    let log = std::fs::read_to_string(built.artifact.log()).unwrap_or_default();
                    let now = warnings_by_file(&log);
                    let files = touched(p);
                    let before: Vec<CompilerWarning> = files
                        .iter()
                        .flat_map(|f| st.known.get(f).cloned().unwrap_or_default())
                        .collect();
                    let after: Vec<CompilerWarning> = files
                        .iter()
                        .flat_map(|f| {
                            now.get(f)
                                .or_else(|| st.known.get(f))
                                .cloned()
                                .unwrap_or_default()
                        })
                        .collect();
                    let new = new_warnings(&before, &after, &files);
                    arch_cells.push(Cell {
                        check: format!("warnings {arch}"),
                        status: if new.is_empty() {
                            Status::Pass
                        } else {
                            Status::Fail
                        },
                        summary: if new.is_empty() {
                            "no new warnings in the touched files".into()
                        } else {
                            format!(
                                "{} new: {}",
                                new.len(),
                                new.first().map(describe_warning).unwrap_or_default()
                            )
                        },
                        details: (!new.is_empty()).then(|| {
                            new.iter()
                                .map(describe_warning)
                                .collect::<Vec<_>>()
                                .join("\n")
                        }),
                        kernel_key: Some(key),
                    });
                    for (f, ws) in now {
                        st.known.insert(f, ws);
                    }
                }
            }
        }
        match applies {
            Some(c) => {
                all_built = false;
                cells.push(c);
            }
            None => {
                cells.push(Cell {
                    check: "applies".into(),
                    status: Status::Pass,
                    summary: "applies with zero fuzz".into(),
                    details: None,
                    kernel_key: None,
                });
                cells.extend(arch_cells);
            }
        }
        rows.push(PatchRow {
            index,
            label: p.label.clone(),
            subject: p.subject.clone(),
            cells,
        });
    }
    Ok((rows, all_built))
}

fn describe_warning(w: &CompilerWarning) -> String {
    format!(
        "{}:{}: {}{}",
        w.file,
        w.line.unwrap_or(0),
        w.message,
        w.flag
            .as_ref()
            .map(|f| format!(" [{f}]"))
            .unwrap_or_default()
    )
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(200).collect()
}

fn build_failure_summary(e: &BuildError) -> String {
    let text = e.to_string();
    // The compiler's own first error line is the most useful one-liner, with the path made
    // tree-relative (lab's work tree lives in its cache).
    text.lines()
        .find(|l| l.contains("error:"))
        .map(|l| {
            let l = l.trim();
            let l = match l.find("/src/") {
                Some(i) if l.starts_with('/') => &l[i + 5..],
                _ => l,
            };
            l.chars().take(200).collect()
        })
        .unwrap_or_else(|| first_line(&text))
}

pub async fn run(ctx: &Context, args: &GateArgs) -> Result<Outcome, LabError> {
    if args.b4 {
        return b4_check(ctx, args).await;
    }
    let started = Instant::now();
    let s = &ctx.settings;
    let arches: Vec<Arch> = args.arch.resolve(&s.arches);
    let knobs = args.knobs.pairs();
    let series = load_series(ctx, args)?;
    if !ctx.quiet {
        eprintln!(
            "lab: gating {} ({} patches) on {} for {}",
            series.name,
            series.set.patches.len(),
            series.kernel.name,
            arches
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (rows, all_built) = per_patch(ctx, &series, &arches, ctx.quiet).await?;
    let mut failures = Vec::new();
    let mut warnings = Vec::new();
    for r in &rows {
        for c in &r.cells {
            let line = format!(
                "patch {} ({}): {}: {}",
                r.index, r.label, c.check, c.summary
            );
            match c.status {
                Status::Fail => failures.push(line),
                Status::Warn => warnings.push(line),
                _ => {}
            }
        }
    }
    let mut compare = None;
    let mut compare_dir = None;
    let mut culprit = None;
    let mut runtime_skipped = None;
    let mut infra = false;
    if args.no_runtime {
        runtime_skipped = Some("--no-runtime".into());
    } else if !failures.is_empty() || !all_built {
        runtime_skipped = Some("a per-patch check failed; fix the series first".into());
    } else {
        let base_spec = match &series.kernel.kind {
            DefKind::Tarball { .. } => "base".to_owned(),
            DefKind::Git { .. } => {
                return finish(
                    ctx,
                    args,
                    GateReport {
                        format_version: GATE_FORMAT_VERSION,
                        lab_version: env!("CARGO_PKG_VERSION").into(),
                        series: series.name.clone(),
                        base: series.kernel.name.clone(),
                        arches: arches.clone(),
                        patches: rows,
                        runtime_skipped: Some(
                            "runtime comparison of git ranges is not supported yet; compare the tip with `lab compare`".into(),
                        ),
                        compare: None,
                        compare_dir: None,
                        culprit: None,
                        verdict: if failures.is_empty() { GateVerdict::Pass } else { GateVerdict::Fail },
                        failures,
                        warnings,
                        wall_s: started.elapsed().as_secs_f64(),
                        reproduce: std::env::args().collect::<Vec<_>>().join(" "),
                    },
                );
            }
        };
        let cargs = CompareArgs {
            a: base_spec,
            b: series.path.to_string_lossy().into_owned(),
            arch: ArchesArg::of(&arches),
            tests: TestsArg::default(),
            budget: Some(args.budget),
            alpha: None,
            margin: None,
            metric_margin: None,
            max_runs: None,
            duration: DurationArg::default(),
            knobs: args.knobs.clone(),
            config: Vec::new(),
            jobs: None,
            fresh: false,
            stop_on_regression: true,
            seed: SeedArg::default(),
            json: JsonArg::default(),
            reports: CompareReportFiles::default(),
        };
        match compare_report(ctx, &cargs).await? {
            None => return Err(LabError::Interrupted),
            Some((report, dir)) => {
                write_report_files(&report, &dir);
                compare_dir = Some(dir.display().to_string());
                match report.overall {
                    Overall::Regression => {
                        failures.push("the tip regresses against base (lab compare)".into());
                        // Bisect the first regression, failure rates first.
                        let q = report
                            .questions
                            .iter()
                            .filter(|q| q.verdict == Verdict::Regression)
                            .min_by_key(|q| !matches!(q.question, QuestionKind::FailureRate));
                        if let Some(q) = q {
                            if series.set.patches.len() > 1 {
                                let state = series_state(
                                    &ctx.settings,
                                    &series.path.to_string_lossy(),
                                    &q.test,
                                    q.arch,
                                    knobs.clone(),
                                    Vec::new(),
                                )?;
                                let on = |e| BisectProgress::new(ctx.quiet).event(e);
                                let (session, st) = bisect_new(&ctx.settings, state, &on).await?;
                                if let Some(c) = &st.conclusion {
                                    let p = series.set.patches.get(c.culprit.saturating_sub(1));
                                    culprit = Some(Culprit {
                                        test: q.test.clone(),
                                        arch: q.arch,
                                        index: c.culprit,
                                        label: p.map(|p| p.label.clone()).unwrap_or_default(),
                                        subject: p.map(|p| p.subject.clone()).unwrap_or_default(),
                                        probability: c.probability,
                                        confident: c.confident,
                                        runner_up: c.runner_up,
                                        steps: c.steps,
                                        runs: c.runs,
                                        session,
                                    });
                                }
                            } else if let Some(p) = series.set.patches.first() {
                                culprit = Some(Culprit {
                                    test: q.test.clone(),
                                    arch: q.arch,
                                    index: 1,
                                    label: p.label.clone(),
                                    subject: p.subject.clone(),
                                    probability: 1.0,
                                    confident: true,
                                    runner_up: None,
                                    steps: 0,
                                    runs: 0,
                                    session: report.session,
                                });
                            }
                        }
                    }
                    Overall::Infra => infra = true,
                    Overall::NoRegressionInconclusive => warnings.push(
                        "some runtime questions are inconclusive within the budget (see the comparison report)".into(),
                    ),
                    Overall::NoRegression => {}
                }
                compare = Some(report);
            }
        }
    }
    let verdict = if !failures.is_empty() {
        GateVerdict::Fail
    } else if infra {
        GateVerdict::Infra
    } else {
        GateVerdict::Pass
    };
    let report = GateReport {
        format_version: GATE_FORMAT_VERSION,
        lab_version: env!("CARGO_PKG_VERSION").into(),
        series: series.name.clone(),
        base: series.kernel.name.clone(),
        arches,
        patches: rows,
        runtime_skipped,
        compare,
        compare_dir,
        culprit,
        verdict,
        failures,
        warnings,
        wall_s: started.elapsed().as_secs_f64(),
        reproduce: std::env::args().collect::<Vec<_>>().join(" "),
    };
    finish(ctx, args, report)
}

fn finish(ctx: &Context, args: &GateArgs, report: GateReport) -> Result<Outcome, LabError> {
    let write = |path: &Path, text: String| -> Result<(), LabError> {
        Ok(std::fs::write(path, text).map_err(io("cannot write", path))?)
    };
    if let Some(p) = &args.reports.markdown {
        write(p, gate_report::markdown(&report))?;
    }
    if let Some(p) = &args.reports.json_out {
        write(p, gate_report::json(&report))?;
    }
    let dir = ctx.settings.cache_dir.join("gate");
    let _ = std::fs::create_dir_all(&dir);
    let stamp = format!("{}", std::process::id());
    let md_path = dir.join(format!("gate-{stamp}.md"));
    let _ = std::fs::write(&md_path, gate_report::markdown(&report));
    let _ = std::fs::write(
        dir.join(format!("gate-{stamp}.json")),
        gate_report::json(&report),
    );
    if args.json.json {
        println!("{}", gate_report::json(&report));
    } else {
        print!(
            "{}",
            gate_report::terminal(&report, std::io::stdout().is_terminal())
        );
    }
    if !ctx.quiet {
        eprintln!("lab: cover-letter markdown in {}", md_path.display());
    }
    Ok(match report.verdict {
        GateVerdict::Pass => Outcome::Pass,
        GateVerdict::Fail => Outcome::Regression,
        GateVerdict::Infra => Outcome::InfraOnly,
    })
}

/// b4 mode: one patch email on stdin; every check as a b4 CI-check result on stdout.
async fn b4_check(ctx: &Context, args: &GateArgs) -> Result<Outcome, LabError> {
    let s = &ctx.settings;
    let mut raw = Vec::new();
    std::io::stdin()
        .read_to_end(&mut raw)
        .map_err(GateError::Stdin)?;
    let mail = b4::parse_message(&raw)?;
    let dir = s.cache_dir.join("gate");
    std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
    let path = dir.join(format!("b4-{}.patch", std::process::id()));
    std::fs::write(&path, mail.raw_text.as_bytes()).map_err(io("cannot write", &path))?;
    let gargs = GateArgs {
        series: Some(path.to_string_lossy().into_owned()),
        b4: false,
        no_runtime: !args.runtime,
        json: JsonArg::default(),
        reports: ReportFiles::default(),
        ..args.clone()
    };
    let arches: Vec<Arch> = args.arch.resolve(&s.arches);
    let series = load_series(ctx, &gargs)?;
    let (rows, _) = per_patch(ctx, &series, &arches, true).await?;
    let mut results = Vec::new();
    for r in &rows {
        for c in &r.cells {
            results.push(b4::CheckResult {
                tool: format!("lab/{}", c.check.replace(' ', "-")),
                status: match c.status {
                    Status::Pass | Status::Skip => b4::Status::Pass,
                    Status::Warn => b4::Status::Warn,
                    Status::Fail => b4::Status::Fail,
                },
                summary: c.summary.clone(),
                url: None,
                details: c.details.clone(),
            });
        }
    }
    let _ = std::fs::remove_file(&path);
    if args.b4_lines {
        print!("{}", b4::to_prep_lines(&results));
    } else {
        println!("{}", b4::to_json(&results));
    }
    Ok(Outcome::Pass)
}
