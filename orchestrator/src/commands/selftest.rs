//! `lab selftest`: the positive-control matrix, run end to end through `lab run`'s path.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::progress::BuildProgress;
use super::{kernel_requests, Context};
use crate::cli::{ArchesArg, KernelSelect, SelftestArgs, StackArgs};
use crate::errors::{LabError, Outcome};
use crate::exec::{self, RunJob};
use crate::results::store::Recorder;
use crate::results::TestOutcome;
use crate::run::{self, RunPlan};
use crate::selftest::{self, matches, observe, Expected, Observed};

#[derive(Debug, serde::Serialize)]
struct Cell {
    arch: String,
    row: String,
    test: String,
    expected: Expected,
    observed: Observed,
    bad_runs: usize,
    runs: usize,
    ok: bool,
    evidence: String,
}

pub async fn run(ctx: &Context, args: &SelftestArgs) -> Result<Outcome, LabError> {
    let s = &ctx.settings;
    let sets = selftest::load_all(&s.patches_dir)?;
    let mut rows = selftest::rows(&sets, &s.suite);
    if !args.row.is_empty() {
        rows.retain(|r| args.row.iter().any(|w| r.label.contains(w.as_str())));
    }
    if rows.is_empty() {
        return Err(LabError::usage("--row", "matches no row of the matrix"));
    }
    rows.retain(|r| !args.skip_row.iter().any(|w| r.label.contains(w.as_str())));
    if rows.is_empty() {
        return Err(LabError::usage("--skip-row", "leaves no row of the matrix"));
    }
    let duration = args.duration.duration.unwrap_or(s.test_duration);
    let all_tests: Vec<String> = {
        let mut t: Vec<String> = rows.iter().flat_map(|r| r.expect.keys().cloned()).collect();
        t.sort();
        t.dedup();
        t
    };
    let seed = args.seed.seed.unwrap_or(1);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let root = s.cache_dir.join("runs").join(format!("{stamp}-selftest"));
    let arches = KernelSelect {
        arch: args.arch.clone(),
        ..Default::default()
    };
    let recorder = Arc::new(Recorder::open(&s.store.clone()));
    let exec = super::executor(ctx, Some(1))?;
    let mut cells = Vec::new();
    for base_req in kernel_requests(ctx, &arches)? {
        let arch = base_req.arch;
        // The image `lab run` builds for these tests: kselftest: and perf: programs
        // included, built from lab.toml's pristine tree.
        let img = run::guest_image(s, arch, &all_tests).await?;
        for (ri, row) in rows.iter().enumerate() {
            let sel = KernelSelect {
                arch: ArchesArg::of(&[arch]),
                stack: StackArgs {
                    patches: row.stack.clone(),
                    config: Vec::new(),
                },
                ..Default::default()
            };
            let req = kernel_requests(ctx, &sel)?.remove(0);
            let progress = BuildProgress::new(&format!("{arch} {}", row.label), ctx.quiet);
            let report = |e| progress.event(e);
            let built = exec.build(&req, &report).await;
            progress.finish();
            let built = built?;
            let dir = root.join(arch.name()).join(format!("row-{ri}"));
            let (accel, reason) = exec.choose_accel(&built.artifact, &img, &dir).await;
            let plan = RunPlan::new(
                built.artifact,
                img.clone(),
                accel,
                run::VmSize::of(s),
                row.expect.keys().cloned().collect(),
                args.iterations.max(1),
                duration,
                row.knobs.clone(),
                seed,
                dir,
            );
            if !ctx.quiet {
                crate::errln!(
                    "lab selftest: {arch}: {} ({} tests x {})",
                    row.label,
                    plan.tests.len(),
                    plan.iterations
                );
            }
            let job = RunJob::new(plan, &reason, "lab selftest");
            let report = exec::run_one(&*exec, job, Some(recorder.clone()), &|_| {}).await;
            let mut by_test: BTreeMap<&str, Vec<&TestOutcome>> = BTreeMap::new();
            for o in &report.outcomes {
                by_test.entry(o.test.as_str()).or_default().push(o);
            }
            for (test, expected) in &row.expect {
                let outs = by_test.get(test.as_str()).cloned().unwrap_or_default();
                let (observed, bad, runs) = observe(&outs);
                let evidence = outs
                    .iter()
                    .find(|o| o.kind.is_kernel_failure())
                    .or(outs.first())
                    .map(|o| format!("{}: {}", o.kind, o.summary))
                    .unwrap_or_default();
                let ok = matches(*expected, observed);
                if !ctx.quiet {
                    crate::errln!(
                        "  {:<22} expected {:<4} observed {:<7} ({bad}/{runs} bad) {}",
                        test,
                        format!("{expected:?}").to_lowercase(),
                        format!("{observed:?}").to_lowercase(),
                        if ok { "" } else { "MISMATCH" }
                    );
                }
                cells.push(Cell {
                    arch: arch.to_string(),
                    row: row.label.clone(),
                    test: test.clone(),
                    expected: *expected,
                    observed,
                    bad_runs: bad,
                    runs,
                    ok,
                    evidence,
                });
            }
        }
    }
    let recorded = recorder.finish();
    if !recorded.is_clean() {
        crate::errln!("lab: {recorded}");
    }
    if args.json.json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&cells).unwrap_or_default()
        );
    } else {
        print_matrix(&cells, &all_tests);
    }
    let mismatches = cells.iter().filter(|c| !c.ok).count();
    crate::outln!(
        "selftest: {} cells, {} as expected, {} mismatched; run dirs under {}",
        cells.len(),
        cells.len() - mismatches,
        mismatches,
        root.display()
    );
    Ok(if mismatches == 0 {
        Outcome::Pass
    } else {
        Outcome::Regression
    })
}

fn print_matrix(cells: &[Cell], tests: &[String]) {
    let short = |t: &str| -> String { t.chars().take(12).collect() };
    crate::out!("{:<7} {:<62}", "arch", "kernel");
    for t in tests {
        crate::out!(" {:>12}", short(t));
    }
    crate::outln!();
    let mut rows: Vec<(String, String)> = Vec::new();
    for c in cells {
        let k = (c.arch.clone(), c.row.clone());
        if !rows.contains(&k) {
            rows.push(k);
        }
    }
    for (arch, row) in rows {
        crate::out!(
            "{:<7} {:<62}",
            arch,
            row.chars().take(62).collect::<String>()
        );
        for t in tests {
            let cell = cells
                .iter()
                .find(|c| c.arch == arch && c.row == row && &c.test == t);
            let text = match cell {
                None => "-".to_owned(),
                Some(c) => {
                    let e = if c.expected == Expected::Pass {
                        "pass"
                    } else {
                        "FAIL"
                    };
                    let o = match c.observed {
                        Observed::Pass => "pass",
                        Observed::Fail => "FAIL",
                        Observed::Unknown => "?",
                    };
                    format!("{e}/{o}{}", if c.ok { " " } else { "!" })
                }
            };
            crate::out!(" {text:>12}");
        }
        crate::outln!();
    }
    crate::outln!(
        "cells read expected/observed; ! marks a mismatch; FAIL means the test caught the kernel"
    );
    for c in cells.iter().filter(|c| !c.ok) {
        crate::outln!("  mismatch {} {} {}: {}", c.arch, c.row, c.test, c.evidence);
    }
}
