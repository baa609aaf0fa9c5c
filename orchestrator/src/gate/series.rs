//! A series to gate, and the checks each of its patches gets, in order: checkpatch, applies,
//! builds on every arch, and no new compiler warnings in the files it touches.
//!
//! Patch i is built as the first i patches on the base kernel, in the same build folder as
//! patch i-1, so each build costs only what the patch touched and the series is shown to be
//! bisectable. The base kernel's full build log is the "before" of every file; after each
//! build, the files it compiled take that build's warnings, so a patch is only blamed for
//! what changed in the files it touched (see [`super::warnings`]).
//!
//! A patch that does not apply ends the builds: every later patch is skipped, naming it. A
//! build that breaks on one arch fails that patch on that arch, and later patches still
//! build, since a later patch may mend it and the matrix should show that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::checkpatch::{run_checkpatch, CheckpatchError, CheckpatchReport, Finding};
use super::report::{Cell, PatchRow, Status};
use super::warnings::{new_warnings, warnings_by_file, CompilerWarning};
use crate::arch::Arch;
use crate::config::Settings;
use crate::errors::LabError;
use crate::exec::Executor;
use crate::io_error::io;
use crate::kernel::build::{BuildError, BuildRequest, Built};
use crate::kernel::patch::{self, Patch, PatchSet};
use crate::kernel::source::{DefKind, KernelDef, Source};

/// How long checkpatch.pl may take on one patch.
const CHECKPATCH_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the series comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesSpec {
    /// A directory of patches, a series file's folder, an mbox, or a set name under patches/.
    Named(String),
    /// The commits BASE..TIP of a git kernel definition; BASE is the kernel they apply to.
    Range { kernel: String, range: String },
}

/// The series to gate and the kernel it applies to.
#[derive(Debug, Clone)]
pub struct Series {
    /// How the user named it.
    pub name: String,
    /// A path lab's patch loader reads.
    pub path: PathBuf,
    pub set: PatchSet,
    pub kernel: KernelDef,
}

/// Loads the series; a range is exported with `git format-patch` into the cache first.
pub fn load(s: &Settings, spec: &SeriesSpec) -> Result<Series, LabError> {
    let (def_name, range) = match spec {
        SeriesSpec::Named(name) => {
            let set = patch::load_set(name, &s.patches_dir, &s.root)?;
            let path = if s.patches_dir.join(name).exists() {
                s.patches_dir.join(name)
            } else {
                s.resolve_path(name)
            };
            return Ok(Series {
                name: name.clone(),
                path,
                set,
                kernel: KernelDef::load(&s.kernel, &s.kernels_dir)?,
            });
        }
        SeriesSpec::Range { kernel, range } => (kernel, range),
    };
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
    Ok(Series {
        name: format!("{def_name} {range}"),
        path,
        set,
        kernel: def.with_ref(base),
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

/// What one arch's builds have shown so far.
#[derive(Default)]
struct ArchState {
    /// Per file, the warnings of the most recent build that compiled it.
    known: BTreeMap<String, Vec<CompilerWarning>>,
}

/// Runs the per-patch checks, calling `on_patch` with each patch's index (from 1) and subject
/// as its checks start. Returns one row per patch and whether every build passed.
pub async fn check_patches(
    s: &Settings,
    exec: &dyn Executor,
    series: &Series,
    arches: &[Arch],
    on_patch: &(dyn Fn(usize, &str) + Send + Sync),
) -> Result<(Vec<PatchRow>, bool), LabError> {
    let tree = checkpatch_tree(&series.kernel, &s.cache_dir)?;
    let mut states: BTreeMap<Arch, ArchState> = BTreeMap::new();
    // The base kernel: its full build log is the "before" of every file.
    for &arch in arches {
        let req = BuildRequest::with_settings(s, arch, series.kernel.clone(), Vec::new(), &[]);
        let built = exec.build(&req, &|_| {}).await?;
        let log = std::fs::read_to_string(built.artifact.log()).unwrap_or_default();
        states.insert(
            arch,
            ArchState {
                known: warnings_by_file(&log),
            },
        );
    }
    let mut rows = Vec::new();
    let mut all_built = true;
    let mut applies_broken: Option<usize> = None;
    for (i, p) in series.set.patches.iter().enumerate() {
        let index = i + 1;
        on_patch(index, &p.subject);
        let mut cells = vec![checkpatch_cell(run_checkpatch(
            &tree,
            &p.text,
            CHECKPATCH_TIMEOUT,
        ))];
        let row = |cells| PatchRow {
            index,
            label: p.label.clone(),
            subject: p.subject.clone(),
            cells,
        };
        if let Some(bad) = applies_broken {
            cells.push(cell(
                "applies",
                Status::Skip,
                format!("patch {bad} does not apply"),
            ));
            rows.push(row(cells));
            all_built = false;
            continue;
        }
        let prefix = PatchSet {
            name: format!("{}[1..={index}]", series.set.name),
            source: series.set.source.clone(),
            patches: series.set.patches[..index].to_vec(),
        };
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
            tracing::debug!(%arch, patch = index, "building the series up to this patch");
            let started = Instant::now();
            let result = exec.build(&req, &|_| {}).await;
            let st = states.entry(arch).or_default();
            match result {
                Err(BuildError::Patch(e)) => {
                    applies = Some(Cell {
                        details: Some(e.to_string()),
                        ..cell("applies", Status::Fail, first_line(&e.to_string()))
                    });
                    applies_broken = Some(index);
                    break;
                }
                Err(e) => {
                    all_built = false;
                    arch_cells.push(Cell {
                        details: Some(e.to_string()),
                        ..cell(
                            &format!("build {arch}"),
                            Status::Fail,
                            build_failure_summary(&e),
                        )
                    });
                    arch_cells.push(cell(
                        &format!("warnings {arch}"),
                        Status::Skip,
                        "did not build".into(),
                    ));
                }
                Ok(built) => {
                    arch_cells.extend(built_cells(arch, p, &built, started, st));
                }
            }
        }
        match applies {
            Some(c) => {
                all_built = false;
                cells.push(c);
            }
            None => {
                cells.push(cell(
                    "applies",
                    Status::Pass,
                    "applies with zero fuzz".into(),
                ));
                cells.extend(arch_cells);
            }
        }
        rows.push(row(cells));
    }
    Ok((rows, all_built))
}

/// The build and warnings cells of a patch that built on `arch`; the files it compiled take
/// this build's warnings in `st`.
fn built_cells(
    arch: Arch,
    p: &Patch,
    built: &Built,
    started: Instant,
    st: &mut ArchState,
) -> [Cell; 2] {
    let key = built.artifact.manifest.key.clone();
    let build = Cell {
        kernel_key: Some(key.clone()),
        ..cell(
            &format!("build {arch}"),
            Status::Pass,
            if built.cached {
                format!("cached {}", key.get(..12).unwrap_or(&key))
            } else {
                format!(
                    "{} compile steps in {:.0}s",
                    built.compiled,
                    started.elapsed().as_secs_f64()
                )
            },
        )
    };
    let log = std::fs::read_to_string(built.artifact.log()).unwrap_or_default();
    let now = warnings_by_file(&log);
    let files = touched(p);
    let before: Vec<CompilerWarning> = files
        .iter()
        .flat_map(|f| st.known.get(f).cloned().unwrap_or_default())
        .collect();
    // A touched file this build did not compile keeps what it had.
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
    st.known.extend(now);
    [build, warnings_cell(arch, &new, key)]
}

/// The warnings cell: fails on any warning the patch added to the files it touched.
fn warnings_cell(arch: Arch, new: &[CompilerWarning], key: String) -> Cell {
    let (status, summary) = match new.first() {
        None => (
            Status::Pass,
            "no new warnings in the touched files".to_owned(),
        ),
        Some(first) => (Status::Fail, format!("{} new: {first}", new.len())),
    };
    Cell {
        details: (!new.is_empty()).then(|| {
            new.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        }),
        kernel_key: Some(key),
        ..cell(&format!("warnings {arch}"), status, summary)
    }
}

/// The checkpatch cell: errors fail, warnings are reported, and a checkpatch that could not
/// run fails the patch (a gate that did not look must not pass it).
fn checkpatch_cell(result: Result<CheckpatchReport, CheckpatchError>) -> Cell {
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            return cell(
                "checkpatch",
                Status::Fail,
                format!("checkpatch.pl could not run: {e}"),
            )
        }
    };
    let first = |v: &[Finding]| {
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
    let details = r
        .errors
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
        .join("\n");
    Cell {
        details: Some(details),
        ..cell("checkpatch", status, summary)
    }
}

/// A cell without details or kernel.
fn cell(check: &str, status: Status, summary: String) -> Cell {
    Cell {
        check: check.to_owned(),
        status,
        summary,
        details: None,
        kernel_key: None,
    }
}

/// The files a patch touches, tree-relative.
fn touched(p: &Patch) -> Vec<String> {
    p.files
        .iter()
        .filter_map(|f| f.new.clone().or_else(|| f.old.clone()))
        .collect()
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(200).collect()
}

fn build_failure_summary(e: &BuildError) -> String {
    failure_summary(&e.to_string())
}

/// The compiler's own first error line is the most useful one-liner, with the path made
/// tree-relative (lab's work tree lives in its cache); else the error's first line.
fn failure_summary(text: &str) -> String {
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
        .unwrap_or_else(|| first_line(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::checkpatch::Level;

    fn finding(level: Level, kind: &str) -> Finding {
        Finding {
            level,
            kind: kind.into(),
            message: "message".into(),
            file: Some("kernel/futex/core.c".into()),
            line: Some(3),
            patch_line: None,
            excerpt: String::new(),
        }
    }

    fn report(errors: Vec<Finding>, warnings: Vec<Finding>) -> CheckpatchReport {
        CheckpatchReport {
            errors,
            warnings,
            checks: Vec::new(),
            total_line: "total: 0 errors, 0 warnings, 10 lines checked".into(),
            notes: Vec::new(),
            stderr: String::new(),
            command: String::new(),
        }
    }

    #[test]
    fn checkpatch_errors_fail_warnings_warn_and_a_clean_patch_passes() {
        let c = checkpatch_cell(Ok(report(
            vec![finding(Level::Error, "CODE_INDENT")],
            vec![finding(Level::Warning, "LONG_LINE")],
        )));
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.summary, "1 errors, 1 warnings; CODE_INDENT: message");
        assert_eq!(
            c.details.as_deref(),
            Some("kernel/futex/core.c:3: CODE_INDENT message\nkernel/futex/core.c:3: LONG_LINE message")
        );
        let w = checkpatch_cell(Ok(report(
            vec![],
            vec![finding(Level::Warning, "LONG_LINE")],
        )));
        assert_eq!(
            (w.status, w.summary.as_str()),
            (Status::Warn, "1 warnings; LONG_LINE: message")
        );
        let p = checkpatch_cell(Ok(report(vec![], vec![])));
        assert_eq!(p.status, Status::Pass);
        assert!(p.summary.starts_with("total: 0 errors"));
    }

    #[test]
    fn a_checkpatch_that_cannot_run_fails_the_patch() {
        let c = checkpatch_cell(Err(CheckpatchError::MissingScript {
            tree: "/t".into(),
            script: "/t/scripts/checkpatch.pl".into(),
        }));
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.summary.starts_with("checkpatch.pl could not run: "),
            "{}",
            c.summary
        );
    }

    #[test]
    fn a_build_failure_is_summed_up_by_the_compiler_error_tree_relative() {
        let text = "build x86_64 failed\n/root/.cache/lab/work/tar-1/src/kernel/sched/wait.c:7:10: fatal error: lab-gate-no-such-header.h: No such file or directory\nmore";
        assert_eq!(
            failure_summary(text),
            "kernel/sched/wait.c:7:10: fatal error: lab-gate-no-such-header.h: No such file or directory"
        );
        assert_eq!(failure_summary("make died\nsecond"), "make died");
    }

    #[test]
    fn new_warnings_fail_their_cell_and_list_every_one() {
        let w = |line| CompilerWarning {
            file: "kernel/futex/core.c".into(),
            line: Some(line),
            column: None,
            severity: super::super::warnings::Severity::Warning,
            message: "unused variable 'x'".into(),
            flag: Some("-Wunused-variable".into()),
        };
        let c = warnings_cell(Arch::X86_64, &[w(1), w(2)], "k".into());
        assert_eq!(c.check, "warnings x86_64");
        assert_eq!(c.status, Status::Fail);
        assert_eq!(
            c.summary,
            "2 new: kernel/futex/core.c:1: unused variable 'x' [-Wunused-variable]"
        );
        assert_eq!(c.details.map(|d| d.lines().count()), Some(2));
        let clean = warnings_cell(Arch::Arm64, &[], "k".into());
        assert_eq!((clean.status, clean.details), (Status::Pass, None));
    }
}
