//! The gate's pipeline: is this series fit to post? First the per-patch checks
//! ([`super::series`]); then, when every patch passed them, the tip against base with the
//! comparison engine ([`crate::compare::session`]), and when the tip regresses, a bisection
//! inside the series to name the patch. The verdict is a [`GateReport`].
//!
//! Also b4's CI-check mode ([`check_mail`]): one patch mail, the per-patch checks only, each
//! as a b4 check result.
//!
//! Like the other engines it takes a typed request and the resolved [`Settings`] and prints
//! nothing: progress goes out as [`GateEvent`]s (the comparison's own events inside them),
//! and `lab gate` decides what reaches the terminal and where the report goes.

use std::time::{Duration, Instant};

use super::b4;
use super::report::{Culprit, GateReport, GateVerdict, PatchRow, Status, GATE_FORMAT_VERSION};
use super::series::{self, Series, SeriesSpec};
use crate::arch::Arch;
use crate::compare::model::{CompareReport, Overall, QuestionKind, QuestionResult, Verdict};
use crate::compare::session::{self, CompareRequest, NamedSide, SessionEvent};
use crate::config::Settings;
use crate::errors::LabError;
use crate::exec::Executor;
use crate::io_error::io;
use crate::kernel::source::DefKind;

/// A series to gate, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct GateRequest {
    pub series: SeriesSpec,
    pub arches: Vec<Arch>,
    /// Wall-time budget of the runtime comparison.
    pub budget: Duration,
    /// Compare the tip with base once the per-patch checks pass (and bisect a regression).
    pub runtime: bool,
    pub knobs: Vec<(String, String)>,
    /// The tests of the runtime comparison; `None`: what the series exercises, else the
    /// suite (as `lab compare`).
    pub tests: Option<Vec<String>>,
    /// The runtime comparison's seed.
    pub seed: u64,
    /// The command line that repeats this gate, for the report.
    pub reproduce: String,
    /// Do not stack the test map's race amplifiers under the comparison (and so under the
    /// bisection of a regression).
    pub no_amplify: bool,
}

/// b4 mode: one patch mail as b4 pipes it.
#[derive(Debug, Clone, PartialEq)]
pub struct MailRequest {
    /// The mail, as read.
    pub mail: Vec<u8>,
    pub arches: Vec<Arch>,
    /// A `--kernel/--range` series named besides the mail; as before the pipeline moved here,
    /// it is the one checked, and the mail is only parsed.
    pub series: Option<SeriesSpec>,
}

/// What the gate tells whoever shows progress.
#[derive(Debug, Clone)]
pub enum GateEvent {
    /// The series is loaded and its checks start.
    Started {
        series: String,
        patches: usize,
        kernel: String,
        arches: Vec<Arch>,
    },
    /// The checks of patch `index` (from 1) start.
    Patch { index: usize, subject: String },
    /// From the runtime comparison.
    Compare(SessionEvent),
    /// A copy of the comparison's report could not be written into its folder.
    ReportNotWritten(String),
    /// From the bisection inside the series, when the tip regressed.
    Bisect(crate::bisect::driver::Event),
}

/// Gates a series: every check, the runtime comparison when they pass, the culprit when it
/// regresses. A failed gate is a report, not an error; an error is a gate that could not
/// judge (or was interrupted).
pub async fn run(
    s: &Settings,
    exec: &dyn Executor,
    req: &GateRequest,
    on: &(dyn Fn(GateEvent) + Send + Sync),
) -> Result<GateReport, LabError> {
    let started = Instant::now();
    let series = series::load(s, &req.series)?;
    on(GateEvent::Started {
        series: series.name.clone(),
        patches: series.set.patches.len(),
        kernel: series.kernel.name.clone(),
        arches: req.arches.clone(),
    });
    let on_patch = |index, subject: &str| {
        on(GateEvent::Patch {
            index,
            subject: subject.to_owned(),
        })
    };
    let (rows, all_built) = series::check_patches(s, exec, &series, &req.arches, &on_patch).await?;
    let (mut failures, mut warnings) = findings(&rows);
    let mut report = GateReport {
        format_version: GATE_FORMAT_VERSION,
        lab_version: env!("CARGO_PKG_VERSION").into(),
        series: series.name.clone(),
        base: series.kernel.name.clone(),
        arches: req.arches.clone(),
        patches: rows,
        runtime_skipped: None,
        compare: None,
        compare_dir: None,
        culprit: None,
        verdict: GateVerdict::Pass,
        failures: Vec::new(),
        warnings: Vec::new(),
        wall_s: 0.0,
        reproduce: req.reproduce.clone(),
    };
    let mut infra = false;
    if !req.runtime {
        report.runtime_skipped = Some("--no-runtime".into());
    } else if !failures.is_empty() || !all_built {
        report.runtime_skipped = Some("a per-patch check failed; fix the series first".into());
    } else if let DefKind::Git { .. } = &series.kernel.kind {
        report.runtime_skipped = Some(
            "runtime comparison of git ranges is not supported yet; compare the tip with `lab compare`".into(),
        );
    } else {
        let (compare, dir) = runtime_check(s, exec, req, &series, on).await?;
        report.compare_dir = Some(dir);
        match compare.overall {
            Overall::Regression => {
                failures.push("the tip regresses against base (lab compare)".into());
                report.culprit = culprit(s, exec, req, &series, &compare, on).await?;
            }
            Overall::Infra => infra = true,
            Overall::NoRegressionInconclusive => warnings.push(
                "some runtime questions are inconclusive within the budget (see the comparison report)".into(),
            ),
            Overall::NoRegression => {}
        }
        report.compare = Some(compare);
    }
    report.verdict = verdict(&failures, infra);
    report.failures = failures;
    report.warnings = warnings;
    report.wall_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The tip against base: a comparison that stops at its first regression, since the gate
/// only asks whether there is one. Returns its report and folder.
async fn runtime_check(
    s: &Settings,
    exec: &dyn Executor,
    req: &GateRequest,
    series: &Series,
    on: &(dyn Fn(GateEvent) + Send + Sync),
) -> Result<(CompareReport, String), LabError> {
    let compare = compare_request(s, req, series);
    tracing::debug!(series = %series.path.display(), "comparing the tip with base");
    let on_session = |e| on(GateEvent::Compare(e));
    let Some((report, dir)) = session::run(s, exec, &compare, &on_session).await? else {
        return Err(LabError::Interrupted);
    };
    for e in crate::report::write_folder(&report, &dir) {
        on(GateEvent::ReportNotWritten(e.to_string()));
    }
    Ok((report, dir.display().to_string()))
}

/// The runtime comparison of the series' tip with base.
fn compare_request(s: &Settings, req: &GateRequest, series: &Series) -> CompareRequest {
    let mut compare = CompareRequest::new(
        s,
        NamedSide::base(),
        NamedSide::series(&series.path.to_string_lossy()),
        req.seed,
        format!("{} --seed {}", req.reproduce, req.seed),
    );
    compare.arches = req.arches.clone();
    compare.budget = req.budget;
    compare.knobs = req.knobs.clone();
    compare.tests = req.tests.clone();
    compare.stop_on_regression = true;
    compare.no_amplify = req.no_amplify;
    compare
}

/// The patch that brought the regression in: bisected inside the series when it has more
/// than one patch. `None` when the comparison names no regression to bisect or the
/// bisection reached no conclusion.
async fn culprit(
    s: &Settings,
    exec: &dyn Executor,
    req: &GateRequest,
    series: &Series,
    compare: &CompareReport,
    on: &(dyn Fn(GateEvent) + Send + Sync),
) -> Result<Option<Culprit>, LabError> {
    let Some(q) = first_regression(compare) else {
        return Ok(None);
    };
    tracing::debug!(test = %q.test, arch = %q.arch, "looking for the patch that regressed");
    if series.set.patches.len() > 1 {
        return bisect_series(s, exec, req, series, q, on).await;
    }
    Ok(series.set.patches.first().map(|p| Culprit {
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
        session: compare.session,
    }))
}

/// Bisects the series for the regression `q`.
async fn bisect_series(
    s: &Settings,
    exec: &dyn Executor,
    req: &GateRequest,
    series: &Series,
    q: &QuestionResult,
    on: &(dyn Fn(GateEvent) + Send + Sync),
) -> Result<Option<Culprit>, LabError> {
    // The bisection reproduces what the comparison saw: the same amplifiers under every
    // step, with the same knobs on.
    let choice = crate::compare::session::choose(s, &compare_request(s, req, series))?;
    let state = crate::bisect::driver::series_state(
        s,
        &series.path.to_string_lossy(),
        &q.test,
        q.arch,
        choice.knobs,
        choice.amplifiers,
    )?;
    let (session, st) =
        crate::bisect::driver::bisect_new(s, exec, state, &|e| on(GateEvent::Bisect(e))).await?;
    Ok(st.conclusion.map(|c| {
        let p = series.set.patches.get(c.culprit.saturating_sub(1));
        Culprit {
            test: q.test.clone(),
            arch: q.arch,
            index: c.culprit,
            label: p.map(|p| p.label.clone()).unwrap_or_default(),
            subject: p.map(|p| p.subject.clone()).unwrap_or_default(),
            probability: c.probability,
            confident: c.confident && st.identical_to_parent != Some(true),
            runner_up: c.runner_up,
            steps: c.steps,
            runs: c.runs,
            session,
        }
    }))
}

/// The regression to bisect: failure rates first, since a failure is what a bisection
/// reproduces most cheaply.
fn first_regression(report: &CompareReport) -> Option<&QuestionResult> {
    report
        .questions
        .iter()
        .filter(|q| q.verdict == Verdict::Regression)
        .min_by_key(|q| !matches!(q.question, QuestionKind::FailureRate))
}

/// Every failed and warned cell as a line of the report: (failures, warnings).
fn findings(rows: &[PatchRow]) -> (Vec<String>, Vec<String>) {
    let mut failures = Vec::new();
    let mut warnings = Vec::new();
    for r in rows {
        for c in &r.cells {
            let line = format!(
                "patch {} ({}): {}: {}",
                r.index, r.label, c.check, c.summary
            );
            match c.status {
                Status::Fail => failures.push(line),
                Status::Warn => warnings.push(line),
                Status::Pass | Status::Skip => {}
            }
        }
    }
    (failures, warnings)
}

/// Any failure fails the gate; otherwise infrastructure trouble in the comparison means it
/// could not say.
fn verdict(failures: &[String], infra: bool) -> GateVerdict {
    if !failures.is_empty() {
        GateVerdict::Fail
    } else if infra {
        GateVerdict::Infra
    } else {
        GateVerdict::Pass
    }
}

/// b4 mode: the per-patch checks of one patch mail, each as a b4 CI-check result.
pub async fn check_mail(
    s: &Settings,
    exec: &dyn Executor,
    req: &MailRequest,
    on: &(dyn Fn(GateEvent) + Send + Sync),
) -> Result<Vec<b4::CheckResult>, LabError> {
    let mail = b4::parse_message(&req.mail)?;
    let dir = s.cache_dir.join("gate");
    std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
    let path = dir.join(format!("b4-{}.patch", std::process::id()));
    std::fs::write(&path, mail.raw_text.as_bytes()).map_err(io("cannot write", &path))?;
    let spec = req
        .series
        .clone()
        .unwrap_or_else(|| SeriesSpec::Named(path.to_string_lossy().into_owned()));
    let on_patch = |index, subject: &str| {
        on(GateEvent::Patch {
            index,
            subject: subject.to_owned(),
        })
    };
    let rows = match series::load(s, &spec) {
        Ok(series) => series::check_patches(s, exec, &series, &req.arches, &on_patch).await,
        Err(e) => Err(e),
    };
    // The copy was only for the patch loader; a leftover in the cache is harmless.
    let _ = std::fs::remove_file(&path);
    Ok(b4_results(&rows?.0))
}

/// Every cell as a b4 result; a skipped check is not b4's failure to report.
fn b4_results(rows: &[PatchRow]) -> Vec<b4::CheckResult> {
    rows.iter()
        .flat_map(|r| &r.cells)
        .map(|c| b4::CheckResult {
            tool: format!("lab/{}", c.check.replace(' ', "-")),
            status: match c.status {
                Status::Pass | Status::Skip => b4::Status::Pass,
                Status::Warn => b4::Status::Warn,
                Status::Fail => b4::Status::Fail,
            },
            summary: c.summary.clone(),
            url: None,
            details: c.details.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::report::Cell;

    fn row(index: usize, cells: &[(&str, Status)]) -> PatchRow {
        PatchRow {
            index,
            label: format!("000{index}.patch"),
            subject: "subject".into(),
            cells: cells
                .iter()
                .map(|(check, status)| Cell {
                    check: (*check).into(),
                    status: *status,
                    summary: "why".into(),
                    details: None,
                    kernel_key: None,
                })
                .collect(),
        }
    }

    #[test]
    fn failed_and_warned_cells_become_report_lines() {
        let rows = [
            row(
                1,
                &[("checkpatch", Status::Warn), ("applies", Status::Pass)],
            ),
            row(
                2,
                &[
                    ("build arm64", Status::Fail),
                    ("warnings arm64", Status::Skip),
                ],
            ),
        ];
        let (failures, warnings) = findings(&rows);
        assert_eq!(failures, ["patch 2 (0002.patch): build arm64: why"]);
        assert_eq!(warnings, ["patch 1 (0001.patch): checkpatch: why"]);
    }

    #[test]
    fn failures_win_over_infrastructure_trouble() {
        assert_eq!(verdict(&["x".into()], true), GateVerdict::Fail);
        assert_eq!(verdict(&[], true), GateVerdict::Infra);
        assert_eq!(verdict(&[], false), GateVerdict::Pass);
    }

    #[test]
    fn every_cell_is_a_b4_result_and_a_skip_is_not_a_failure() {
        let rows = [row(
            1,
            &[
                ("checkpatch", Status::Warn),
                ("build x86_64", Status::Fail),
                ("warnings x86_64", Status::Skip),
            ],
        )];
        let results = b4_results(&rows);
        let tools: Vec<&str> = results.iter().map(|r| r.tool.as_str()).collect();
        assert_eq!(
            tools,
            ["lab/checkpatch", "lab/build-x86_64", "lab/warnings-x86_64"]
        );
        let statuses: Vec<b4::Status> = results.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [b4::Status::Warn, b4::Status::Fail, b4::Status::Pass]
        );
    }
}
