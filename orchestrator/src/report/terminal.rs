//! The terminal report `lab compare` prints: a header with the two sides and the design, one
//! table row per question, the kernel crashes, and a footer with the overall answer and what
//! it cost.
//!
//! Lines stay within 120 columns: evidence and notes go on an indented line under their row
//! and are cut to fit. Colour is ANSI escapes only, and only when asked for (the caller knows
//! whether stdout is a terminal); without it the output is plain text for logs and tests.

use super::escape::one_line;
use super::figures::{self, truncate};
use super::{Exporter, ReportError};
use crate::compare::model::{CompareReport, Overall, QuestionResult, Verdict};

/// Width the report is laid out for.
const WIDTH: usize = 120;

/// Widest a test or question name may make its column before it is cut.
const NAME_MAX: usize = 28;

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// The table for a terminal, coloured when `color` is set.
#[derive(Debug, Clone, Copy, Default)]
pub struct TerminalExporter {
    pub color: bool,
}

impl Exporter for TerminalExporter {
    fn render(&self, report: &CompareReport) -> Result<String, ReportError> {
        let mut out = String::new();
        self.header(&mut out, report);
        self.table(&mut out, report);
        self.crashes(&mut out, report);
        self.footer(&mut out, report);
        Ok(out)
    }
}

/// `s` left-aligned in `width` columns.
fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

/// The colour of a verdict: red for a regression, green for an improvement or no
/// difference, yellow for inconclusive.
fn verdict_color(v: &Verdict) -> &'static str {
    match v {
        Verdict::Regression => RED,
        Verdict::Improvement | Verdict::NoDifference { .. } => GREEN,
        Verdict::Inconclusive { .. } | Verdict::BaselineCrashes { .. } => YELLOW,
    }
}

impl TerminalExporter {
    /// `s` wrapped in `code` when colour is on.
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color && !s.is_empty() {
            format!("{code}{s}{RESET}")
        } else {
            s.to_owned()
        }
    }

    fn header(&self, out: &mut String, r: &CompareReport) {
        out.push_str(&self.paint(BOLD, "lab compare"));
        out.push_str(&format!(
            "  session {}  started {}  lab {}\n",
            r.session,
            one_line(&r.started_at),
            one_line(&r.lab_version)
        ));
        let spec_w =
            r.a.spec
                .chars()
                .count()
                .max(r.b.spec.chars().count())
                .min(48);
        for (side, info) in [("A", &r.a), ("B", &r.b)] {
            let line = format!(
                "  {side}  {}  {}",
                pad(&truncate(&one_line(&info.spec), spec_w), spec_w),
                one_line(&info.label)
            );
            out.push_str(truncate(&line, WIDTH).trim_end());
            out.push('\n');
        }
        let arches: Vec<&str> = r.arches.iter().map(|a| a.name()).collect();
        let mut fields = vec![
            ("arches", arches.join(", ")),
            ("tests", one_line(&r.tests.join(", "))),
        ];
        if !r.knobs.is_empty() {
            let knobs: Vec<String> = r.knobs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            fields.push(("knobs", one_line(&knobs.join(" "))));
        }
        fields.push(("error rates", figures::error_rates(&r.design)));
        fields.push(("margins", figures::margins(&r.design)));
        fields.push(("budget", figures::budget(&r.design)));
        for (name, value) in fields {
            let line = format!("  {} {value}", pad(name, 11));
            out.push_str(&truncate(&line, WIDTH));
            out.push('\n');
        }
        out.push('\n');
    }

    fn table(&self, out: &mut String, r: &CompareReport) {
        if r.questions.is_empty() {
            out.push_str("No question was answered.\n\n");
            return;
        }
        const HEAD: [&str; 8] = [
            "TEST", "ARCH", "QUESTION", "VERDICT", "A", "B", "B VS A", "BOOTS",
        ];
        let rows: Vec<[String; 8]> = r.questions.iter().map(row).collect();
        let mut widths = HEAD.map(|h| h.chars().count());
        for cells in &rows {
            for (w, c) in widths.iter_mut().zip(cells) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: [String; 8], verdict: Option<&Verdict>| {
            let mut s = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let last = i + 1 == cells.len();
                let text = if last { cell.clone() } else { pad(cell, w) };
                match verdict {
                    Some(v) if i == 3 => s.push_str(&self.paint(verdict_color(v), &text)),
                    _ => s.push_str(&text),
                }
                if !last {
                    s.push_str("  ");
                }
            }
            s.trim_end().to_owned()
        };
        out.push_str(&self.paint(BOLD, &line(HEAD.map(String::from), None)));
        out.push('\n');
        for (q, cells) in r.questions.iter().zip(rows) {
            out.push_str(&line(cells, Some(&q.verdict)));
            out.push('\n');
            if let Some(note) = note(q, r) {
                let note = truncate(&format!("    {note}"), WIDTH);
                out.push_str(&self.paint(DIM, &note));
                out.push('\n');
            }
        }
        out.push_str(&self.paint(
            DIM,
            "B VS A: failure rates as B - A in points [the verdict's repeated CI]; \
             metrics as the ratio B/A [95% CI].",
        ));
        out.push('\n');
        out.push_str(&self.paint(
            DIM,
            "A, B: failed runs/runs, or the median of the per-boot values; BOOTS: per side, the unit of every verdict.",
        ));
        out.push_str("\n\n");
    }

    fn crashes(&self, out: &mut String, r: &CompareReport) {
        if r.crashes.is_empty() {
            return;
        }
        let head = format!("Kernel crashes ({})", r.crashes.len());
        out.push_str(&self.paint(BOLD, &head));
        out.push('\n');
        for c in &r.crashes {
            let runs = format!(
                "({} run{})",
                c.occurrences,
                if c.occurrences == 1 { "" } else { "s" }
            );
            let lead = format!(
                "  {}  {}  {}  ",
                c.side.name(),
                pad(c.arch.name(), 6),
                one_line(&c.test)
            );
            let room = WIDTH.saturating_sub(lead.chars().count() + runs.chars().count() + 2);
            let title = truncate(&one_line(&c.title), room.max(20));
            let line = format!("{lead}{title}  {runs}");
            out.push_str(&self.paint(RED, &line));
            out.push('\n');
            let fp = format!(
                "     {} {}",
                one_line(&c.fingerprint_id),
                one_line(&c.fingerprint)
            );
            out.push_str(&truncate(&fp, WIDTH));
            out.push('\n');
            let first = format!("     first seen in {}", one_line(&c.run_dir));
            out.push_str(&self.paint(DIM, &truncate(&first, WIDTH)));
            out.push('\n');
        }
        out.push('\n');
    }

    fn footer(&self, out: &mut String, r: &CompareReport) {
        let color = match r.overall {
            Overall::Regression | Overall::Infra => RED,
            Overall::NoRegression => GREEN,
            Overall::NoRegressionInconclusive => YELLOW,
        };
        out.push_str("Overall: ");
        out.push_str(&self.paint(&format!("{BOLD}{color}"), &figures::overall(r)));
        out.push('\n');
        out.push_str(&format!(
            "Time to verdict {} (wall {}); {}\n",
            figures::duration(r.time_to_verdict_s),
            figures::duration(r.wall_s),
            figures::runs_saved(r)
        ));
        if let Some(t) = r.first_regression_s {
            out.push_str(&format!(
                "First regression verdict after {}\n",
                figures::duration(t)
            ));
        }
        out.push_str(&format!(
            "Runs: {} made, {} replayed from before an interruption, {} infra error{} (never counted against a kernel)\n",
            r.runs_made,
            r.reused_runs,
            r.infra_errors,
            if r.infra_errors == 1 { "" } else { "s" }
        ));
        let dirs = match figures::run_dirs_root(&r.run_dirs) {
            Some(root) => format!(
                "Run directories: {} under {}; `lab results show {}` re-renders this report",
                r.run_dirs.len(),
                one_line(&root),
                r.session
            ),
            None => format!(
                "Run directories: {}; `lab results show {}` re-renders this report",
                r.run_dirs.len(),
                r.session
            ),
        };
        out.push_str(&truncate(&dirs, WIDTH));
        out.push('\n');
    }
}

/// The cells of one question's row.
fn row(q: &QuestionResult) -> [String; 8] {
    let (a, b) = figures::sides(q);
    [
        truncate(&one_line(&q.test), NAME_MAX),
        q.arch.name().to_owned(),
        truncate(&one_line(&q.question.label()), NAME_MAX),
        q.verdict.name().to_owned(),
        a,
        b,
        figures::effect(q).map_or_else(|| "-".into(), |e| e.short()),
        figures::boots(q),
    ]
}

/// The line under a row: what the verdict ruled out or still needs, and the evidence.
fn note(q: &QuestionResult, r: &CompareReport) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(n) = figures::verdict_note(q, &r.design) {
        parts.push(n);
    }
    for (side, ev) in [("A", &q.evidence_a), ("B", &q.evidence_b)] {
        if let Some(ev) = ev {
            parts.push(format!("{side}: {}", one_line(ev)));
        }
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::super::sample::small_report;
    use super::*;

    #[test]
    fn plain_table_snapshot() {
        let text = TerminalExporter { color: false }
            .render(&small_report())
            .expect("renders");
        let expected = "\
lab compare  session 7  started 2025-06-01T10:00:00Z  lab 0.1.0
  A  base                          debian-6.12
  B  futex-lockless-wakeup-revert  debian-6.12+futex-lockless-wakeup-revert
  arches      x86_64
  tests       futex_wake_race, wq_exclusive_wake
  error rates α=0.05 (difference, two-sided), α=0.05 (equivalence), power 0.8; spending: obrien-fleming; holm
  margins     15 points (failure rates), 5% either way (metrics)
  budget      at most 24 boots per side or 30m 00s; each boot runs every test 4 times for 2.0s

TEST               ARCH    QUESTION      VERDICT        A        B             B VS A                  BOOTS
futex_wake_race    x86_64  failure-rate  regression     0/24     3/24 (12.5%)  +12.5 pp [+1.8, +28.4]  8
    B: run 7: fail: futex_wait returned EAGAIN <after> a wake & a \u{FFFD}[31msignal
futex_wake_race    x86_64  wake_us_p99   no difference  80.5 us  81.5 us       x1.01 [0.98, 1.03]      4
    ±5% ruled out at α=0.05
wq_exclusive_wake  x86_64  failure-rate  inconclusive   0/24     1/24 (4.2%)   +4.2 pp [-5.0, +19.0]   8
    needs ~40 more boots per side
B VS A: failure rates as B - A in points [the verdict's repeated CI]; metrics as the ratio B/A [95% CI].
A, B: failed runs/runs, or the median of the per-boot values; BOOTS: per side, the unit of every verdict.

Kernel crashes (1)
  B  x86_64  futex_wake_race  BUG: sleeping function called from invalid context  (2 runs)
     c0ffee12 bug:futex_wake|wake_up_q
     first seen in /cache/lab/runs/0007-b-x86_64-3

Overall: REGRESSION (1 regression, 0 improvements, 1 no difference, 1 inconclusive)
Time to verdict 12m 30s (wall 13m 01s); 24 boots/side used; a fixed-n design settles all with 60
Runs: 40 made, 8 replayed from before an interruption, 1 infra error (never counted against a kernel)
Run directories: 2 under /cache/lab/runs; `lab results show 7` re-renders this report
";
        assert_eq!(text, expected, "\n{text}");
        assert!(!text.contains('\x1b'), "no escape codes without colour");
        for l in text.lines() {
            assert!(l.chars().count() <= WIDTH, "too wide: {l}");
        }
    }

    #[test]
    fn verdicts_are_coloured_when_asked() {
        let text = TerminalExporter { color: true }
            .render(&small_report())
            .expect("renders");
        assert!(text.contains(&format!("{RED}regression   ")));
        assert!(text.contains(&format!("{GREEN}no difference{RESET}")));
        assert!(text.contains(&format!("{YELLOW}inconclusive ")));
        assert!(text.contains(&format!("{BOLD}{RED}REGRESSION")));
    }

    #[test]
    fn long_evidence_is_cut_to_the_width() {
        let mut report = small_report();
        report.questions[0].evidence_b = Some("x".repeat(500));
        let text = TerminalExporter { color: false }
            .render(&report)
            .expect("renders");
        let line = text
            .lines()
            .find(|l| l.starts_with("    B: xxx"))
            .expect("evidence line");
        assert_eq!(line.chars().count(), WIDTH);
        assert!(line.ends_with('…'));
    }
}
