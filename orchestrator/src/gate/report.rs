//! The gate's verdict as plain data, and its three renderings: a terminal matrix, markdown
//! for the cover letter, and JSON.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::compare::model::{CompareReport, Verdict};

pub const GATE_FORMAT_VERSION: u32 = 1;

/// One cell of the patches × checks matrix.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// Not checked: an earlier step made it meaningless (say, the patch did not apply).
    Skip,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Cell {
    /// `checkpatch`, `applies`, `build x86_64`, `warnings arm64`...
    pub check: String,
    pub status: Status,
    pub summary: String,
    pub details: Option<String>,
    /// The kernel built for this patch, when the check built one.
    pub kernel_key: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PatchRow {
    /// 1-based position in the series.
    pub index: usize,
    pub label: String,
    pub subject: String,
    pub cells: Vec<Cell>,
}

/// The patch bisection named, when the tip regressed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Culprit {
    pub test: String,
    pub arch: Arch,
    pub index: usize,
    pub label: String,
    pub subject: String,
    pub probability: f64,
    pub confident: bool,
    pub runner_up: Option<(usize, f64)>,
    pub steps: u32,
    pub runs: u64,
    pub session: i64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum GateVerdict {
    Pass,
    Fail,
    Infra,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GateReport {
    pub format_version: u32,
    pub lab_version: String,
    pub series: String,
    pub base: String,
    pub arches: Vec<Arch>,
    pub patches: Vec<PatchRow>,
    /// Why the runtime check did not run, when it did not.
    pub runtime_skipped: Option<String>,
    pub compare: Option<CompareReport>,
    pub compare_dir: Option<String>,
    pub culprit: Option<Culprit>,
    pub verdict: GateVerdict,
    /// One line per failed check: `patch 2 (label): build arm64: ...`.
    pub failures: Vec<String>,
    pub warnings: Vec<String>,
    pub wall_s: f64,
    pub reproduce: String,
}

impl GateReport {
    /// The checks, in column order, as they appear in the rows.
    pub fn columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = Vec::new();
        for r in &self.patches {
            for c in &r.cells {
                if !cols.contains(&c.check) {
                    cols.push(c.check.clone());
                }
            }
        }
        cols
    }
}

fn cell<'a>(row: &'a PatchRow, check: &str) -> Option<&'a Cell> {
    row.cells.iter().find(|c| c.check == check)
}

/// The terminal matrix.
pub fn terminal(r: &GateReport, color: bool) -> String {
    let paint = |s: Status, text: &str| -> String {
        if !color {
            return text.to_owned();
        }
        let code = match s {
            Status::Pass => "32",
            Status::Warn => "33",
            Status::Fail => "31;1",
            Status::Skip => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "lab gate  {}  on {}  ({})",
        r.series,
        r.base,
        r.arches
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let cols = r.columns();
    let _ = write!(out, "{:<3} {:<44}", "#", "patch");
    for c in &cols {
        let _ = write!(out, " {:<14}", c);
    }
    out.push('\n');
    for row in &r.patches {
        let subject: String = row.subject.chars().take(44).collect();
        let _ = write!(out, "{:<3} {:<44}", row.index, subject);
        for c in &cols {
            let (status, text) = cell(row, c).map_or((Status::Skip, "-".to_owned()), |x| {
                (x.status, x.status.name().to_owned())
            });
            let padded = format!("{text:<14}");
            let _ = write!(out, " {}", paint(status, &padded));
        }
        out.push('\n');
    }
    for row in &r.patches {
        for c in &row.cells {
            if matches!(c.status, Status::Fail | Status::Warn) {
                let _ = writeln!(
                    out,
                    "  {} patch {} {}: {}",
                    paint(c.status, c.status.name()),
                    row.index,
                    c.check,
                    c.summary
                );
            }
        }
    }
    out.push('\n');
    match (&r.compare, &r.runtime_skipped) {
        (Some(cmp), _) => {
            let (reg, imp, same, open) = cmp.tally();
            let _ = writeln!(
                out,
                "runtime: tip against base: {} ({reg} regressions, {imp} improvements, {same} no difference, {open} inconclusive) in {:.0}s; report in {}",
                cmp.overall.describe(),
                cmp.time_to_verdict_s,
                r.compare_dir.clone().unwrap_or_default()
            );
            if open > 0 {
                // A pass that rests on open questions says which were ruled out and which not.
                let ruled_out = cmp.labels_where(|v| matches!(v, Verdict::NoDifference { .. }));
                let not_ruled_out = cmp.labels_where(|v| {
                    matches!(
                        v,
                        Verdict::Inconclusive { .. } | Verdict::BaselineCrashes { .. }
                    )
                });
                let _ = writeln!(
                    out,
                    "  ruled out (no difference beyond the margin): {}",
                    if ruled_out.is_empty() {
                        "nothing".to_owned()
                    } else {
                        ruled_out.join(", ")
                    }
                );
                let _ = writeln!(
                    out,
                    "  NOT ruled out (inconclusive within the budget; a regression there would not have been seen): {}",
                    not_ruled_out.join(", ")
                );
            }
        }
        (None, Some(why)) => {
            let _ = writeln!(out, "runtime: not run: {why}");
        }
        (None, None) => {}
    }
    if let Some(c) = &r.culprit {
        let _ = writeln!(
            out,
            "bisect: {} on {} first fails at patch {} ({}) \"{}\" with probability {:.3}{} after {} steps, {} runs (lab bisect --log --session {})",
            c.test,
            c.arch,
            c.index,
            c.label,
            c.subject,
            c.probability,
            if c.confident { "" } else { " (not confident)" },
            c.steps,
            c.runs,
            c.session
        );
    }
    let verdict = match r.verdict {
        GateVerdict::Pass => paint(Status::Pass, "PASS"),
        GateVerdict::Fail => paint(Status::Fail, "FAIL"),
        GateVerdict::Infra => paint(Status::Warn, "INFRA ERROR"),
    };
    let _ = writeln!(out, "gate: {verdict} in {:.0}s", r.wall_s);
    for f in &r.failures {
        let _ = writeln!(out, "  - {f}");
    }
    out
}

/// Markdown for the cover letter: plain-text friendly, with the compare verdicts and their
/// intervals, the lab version and manifests, and the command to reproduce.
pub fn markdown(r: &GateReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## lab gate: {}",
        match r.verdict {
            GateVerdict::Pass => "passed",
            GateVerdict::Fail => "FAILED",
            GateVerdict::Infra => "infrastructure error",
        }
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Series `{}` on {}, checked on {} with PREEMPT_RT configs.",
        r.series,
        r.base,
        r.arches
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(" and ")
    );
    let _ = writeln!(out);
    let cols = r.columns();
    let _ = write!(out, "| # | patch |");
    for c in &cols {
        let _ = write!(out, " {c} |");
    }
    out.push('\n');
    let _ = write!(out, "|---|---|");
    for _ in &cols {
        out.push_str("---|");
    }
    out.push('\n');
    for row in &r.patches {
        let _ = write!(
            out,
            "| {} | {} |",
            row.index,
            row.subject.replace('|', "\\|")
        );
        for c in &cols {
            let _ = write!(out, " {} |", cell(row, c).map_or("-", |x| x.status.name()));
        }
        out.push('\n');
    }
    out.push('\n');
    let notes: Vec<String> = r
        .patches
        .iter()
        .flat_map(|row| {
            row.cells
                .iter()
                .filter(|c| matches!(c.status, Status::Fail | Status::Warn))
                .map(move |c| format!("- patch {} {}: {}", row.index, c.check, c.summary))
        })
        .collect();
    if !notes.is_empty() {
        for n in notes {
            let _ = writeln!(out, "{n}");
        }
        out.push('\n');
    }
    match (&r.compare, &r.runtime_skipped) {
        (Some(cmp), _) => {
            let _ = writeln!(out, "### Runtime: the tip against base");
            let _ = writeln!(out);
            match crate::report::render(cmp, crate::report::ReportFormat::Markdown) {
                Ok(md) => out.push_str(&md),
                Err(e) => {
                    let _ = writeln!(out, "(the comparison report could not be rendered: {e})");
                }
            }
            out.push('\n');
        }
        (None, Some(why)) => {
            let _ = writeln!(out, "Runtime comparison not run: {why}.\n");
        }
        (None, None) => {}
    }
    if let Some(c) = &r.culprit {
        let _ = writeln!(
            out,
            "Bisection inside the series: `{}` on {} first fails at patch {} (\"{}\"), probability {:.3} after {} steps and {} runs.\n",
            c.test, c.arch, c.index, c.subject, c.probability, c.steps, c.runs
        );
    }
    let _ = writeln!(out, "### Reproduce");
    let _ = writeln!(out);
    let _ = writeln!(out, "    lab {} ({})", r.lab_version, r.reproduce);
    for row in &r.patches {
        for c in &row.cells {
            if let Some(k) = &c.kernel_key {
                if c.check.starts_with("build ") {
                    let _ = writeln!(out, "    patch {} {}: kernel {}", row.index, c.check, k);
                }
            }
        }
    }
    out
}

pub fn json(r: &GateReport) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GateReport {
        let c = |check: &str, status| Cell {
            check: check.into(),
            status,
            summary: format!("{check} said so"),
            details: None,
            kernel_key: Some("abc123".into()),
        };
        GateReport {
            format_version: GATE_FORMAT_VERSION,
            lab_version: "0.1.0".into(),
            series: "s".into(),
            base: "debian-6.12".into(),
            arches: vec![Arch::X86_64, Arch::Arm64],
            patches: vec![
                PatchRow {
                    index: 1,
                    label: "s/0001".into(),
                    subject: "futex: one".into(),
                    cells: vec![
                        c("checkpatch", Status::Pass),
                        c("build arm64", Status::Pass),
                    ],
                },
                PatchRow {
                    index: 2,
                    label: "s/0002".into(),
                    subject: "arm64: two".into(),
                    cells: vec![
                        c("checkpatch", Status::Warn),
                        c("build arm64", Status::Fail),
                    ],
                },
            ],
            runtime_skipped: Some("patch 2 does not build".into()),
            compare: None,
            compare_dir: None,
            culprit: None,
            verdict: GateVerdict::Fail,
            failures: vec!["patch 2 (s/0002): build arm64: error".into()],
            warnings: vec![],
            wall_s: 12.0,
            reproduce: "lab gate s".into(),
        }
    }

    #[test]
    fn the_matrix_names_the_failing_patch_and_check() {
        let r = sample();
        let t = terminal(&r, false);
        assert!(
            t.contains("FAIL patch 2 build arm64: build arm64 said so"),
            "{t}"
        );
        assert!(t.contains("gate: FAIL"), "{t}");
        let md = markdown(&r);
        assert!(md.contains("| 2 | arm64: two | warn | FAIL |"), "{md}");
        assert!(md.contains("Runtime comparison not run: patch 2 does not build."));
        let back: GateReport = serde_json::from_str(&json(&r)).expect("round trip");
        assert_eq!(back.patches.len(), 2);
    }

    #[test]
    fn a_pass_on_open_questions_says_what_was_and_was_not_ruled_out() {
        let mut r = sample();
        let mut cmp = crate::report::sample::small_report();
        cmp.overall = crate::compare::model::Overall::NoRegressionInconclusive;
        cmp.questions[0].verdict = Verdict::Inconclusive {
            more_runs: Some(300),
        };
        let open = cmp.questions[0].clone();
        let decided = cmp
            .questions
            .iter()
            .find(|q| matches!(q.verdict, Verdict::NoDifference { .. }))
            .expect("the sample decides one question")
            .clone();
        r.compare = Some(cmp);
        r.runtime_skipped = None;
        r.verdict = GateVerdict::Pass;
        let t = terminal(&r, false);
        assert!(
            t.contains("no regression found, some questions inconclusive"),
            "{t}"
        );
        assert!(!t.contains("NoRegressionInconclusive"), "{t}");
        let label = |q: &crate::compare::model::QuestionResult| {
            format!("{}/{} {}", q.test, q.arch, q.question.label())
        };
        let not_ruled = t
            .lines()
            .find(|l| l.contains("NOT ruled out"))
            .expect("the open questions are named");
        assert!(not_ruled.contains(&label(&open)), "{t}");
        let ruled = t
            .lines()
            .find(|l| l.contains("ruled out (no difference"))
            .expect("the decided questions are named");
        assert!(ruled.contains(&label(&decided)), "{t}");
    }
}
