//! The markdown report, for a patch cover letter or a reply on LKML.
//!
//! LKML is read as plain text, so this is markdown that needs no renderer: setext headings,
//! one padded pipe table, prose wrapped at 76 columns, no fences, no links, no HTML. Console
//! excerpts and commands are indented code blocks (four spaces), which read the same way in
//! a mail client and in a renderer. Every verdict states its interval and error rate.

use super::escape::{one_line, printable};
use super::figures;
use super::{Exporter, ReportError};
use crate::arch::Arch;
use crate::compare::model::{CompareReport, QuestionKind};

/// Prose is wrapped to this many columns, as mail wants.
const WRAP: usize = 76;

/// Excerpts longer than this are cut; the run directory holds the whole console log.
const EXCERPT_LINES: usize = 40;

/// Run directories listed before the rest are only counted.
const RUN_DIRS_SHOWN: usize = 20;

/// Markdown that reads as plain text.
#[derive(Debug, Clone, Copy, Default)]
pub struct MarkdownExporter;

impl Exporter for MarkdownExporter {
    fn render(&self, report: &CompareReport) -> Result<String, ReportError> {
        let mut out = String::new();
        header(&mut out, report);
        summary(&mut out, report);
        verdicts(&mut out, report);
        crashes(&mut out, report);
        reproduce(&mut out, report);
        Ok(out)
    }
}

/// A setext heading: the title underlined, which reads as a heading in plain text too.
fn heading(out: &mut String, title: &str, underline: char) {
    out.push_str(title);
    out.push('\n');
    out.push_str(&underline.to_string().repeat(title.chars().count()));
    out.push_str("\n\n");
}

/// `text` wrapped at [`WRAP`] columns; the first line starts with `first`, the others with
/// `rest`. Words longer than a line are left whole.
fn wrap(text: &str, first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        let len = line.chars().count() + 1 + word.chars().count();
        if !empty && len > WRAP {
            out.push_str(line.trim_end());
            out.push('\n');
            line = rest.to_owned();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// Text for a table cell: one line, and no `|` that would split the cell.
fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

/// Text indented as a code block.
fn code_block(out: &mut String, text: &str) {
    for l in text.lines() {
        out.push_str(format!("    {l}").trim_end());
        out.push('\n');
    }
    out.push('\n');
}

fn header(out: &mut String, r: &CompareReport) {
    let title = format!(
        "lab compare: {} vs {}",
        one_line(&r.a.spec),
        one_line(&r.b.spec)
    );
    heading(out, &title, '=');
    out.push_str(&wrap(&format!("Result: {}.", figures::overall(r)), "", ""));
    out.push('\n');
    let arches: Vec<&str> = r.arches.iter().map(|a| a.name()).collect();
    let mut items = vec![
        format!(
            "A (baseline): {} ({})",
            one_line(&r.a.spec),
            one_line(&r.a.label)
        ),
        format!(
            "B (candidate): {} ({})",
            one_line(&r.b.spec),
            one_line(&r.b.label)
        ),
        format!("Arches: {}", arches.join(", ")),
    ];
    if !r.knobs.is_empty() {
        let knobs: Vec<String> = r.knobs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        items.push(format!(
            "Knobs (both sides): {}",
            one_line(&knobs.join(" "))
        ));
    }
    items.push(format!("Error rates: {}", figures::error_rates(&r.design)));
    items.push(format!(
        "No difference means a change beyond the margin is ruled out: {}",
        figures::margins(&r.design)
    ));
    items.push(format!("Budget: {}", figures::budget(&r.design)));
    for item in items {
        out.push_str(&wrap(&item, "- ", "  "));
    }
    out.push('\n');
}

fn summary(out: &mut String, r: &CompareReport) {
    if r.questions.is_empty() {
        return;
    }
    heading(out, "Summary", '-');
    let head = [
        "Test", "Arch", "Question", "Verdict", "A", "B", "B vs A", "Boots",
    ]
    .map(String::from);
    let rows: Vec<[String; 8]> = r
        .questions
        .iter()
        .map(|q| {
            let (a, b) = figures::sides(q);
            [
                cell(&q.test),
                q.arch.name().to_owned(),
                cell(&q.question.label()),
                q.verdict.name().to_owned(),
                cell(&a),
                cell(&b),
                figures::effect(q).map_or_else(|| "-".into(), |e| e.short()),
                figures::boots(q),
            ]
        })
        .collect();
    let mut widths = head.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String; 8]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    out.push_str(&line(&head));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
    for row in &rows {
        out.push_str(&line(row));
    }
    out.push('\n');
    out.push_str(&wrap(
        "B vs A: failure rates as B - A in percentage points with the repeated confidence \
         interval the verdict rests on; metrics as the geometric-mean ratio B/A of the pairs of \
         boots with its 95% interval. A and B: failed runs/runs, or the median of the per-boot \
         values. Boots: per side, the unit of every verdict.",
        "",
        "",
    ));
    out.push('\n');
}

fn verdicts(out: &mut String, r: &CompareReport) {
    if r.questions.is_empty() {
        return;
    }
    heading(out, "Verdicts", '-');
    for q in &r.questions {
        let what = match &q.question {
            QuestionKind::FailureRate => "failure rate".to_owned(),
            QuestionKind::Metric { name, .. } => one_line(name),
        };
        let text = format!(
            "{} on {}, {what}: {}.",
            one_line(&q.test),
            q.arch,
            figures::verdict_sentence(q, r)
        );
        out.push_str(&wrap(&text, "- ", "  "));
        let mut items = figures::details(q);
        for (side, ev) in [("A", &q.evidence_a), ("B", &q.evidence_b)] {
            if let Some(ev) = ev {
                items.push(format!("evidence on {side}: {}", one_line(ev)));
            }
        }
        for item in items {
            out.push_str(&wrap(&item, "  - ", "    "));
        }
    }
    out.push('\n');
}

fn crashes(out: &mut String, r: &CompareReport) {
    if r.crashes.is_empty() {
        return;
    }
    heading(out, "Kernel crashes", '-');
    for c in &r.crashes {
        out.push_str(&wrap(
            &format!(
                "{} on {}, {}: {}",
                c.side.name(),
                c.arch,
                one_line(&c.test),
                one_line(&c.title)
            ),
            "",
            "",
        ));
        out.push_str(&wrap(
            &format!(
                "Seen in {} run{}; fingerprint {} ({}); first in {}",
                c.occurrences,
                if c.occurrences == 1 { "" } else { "s" },
                one_line(&c.fingerprint_id),
                one_line(&c.fingerprint),
                one_line(&c.run_dir)
            ),
            "",
            "",
        ));
        out.push('\n');
        let excerpt = printable(&c.excerpt);
        let lines: Vec<&str> = excerpt.lines().collect();
        let mut shown = lines[..lines.len().min(EXCERPT_LINES)].join("\n");
        if lines.len() > EXCERPT_LINES {
            shown.push_str(&format!(
                "\n[... {} more lines in the run directory's console log]",
                lines.len() - EXCERPT_LINES
            ));
        }
        code_block(out, &shown);
    }
}

fn reproduce(out: &mut String, r: &CompareReport) {
    heading(out, "Reproduce", '-');
    let mut items = vec![format!(
        "lab {}, session {}, started {}",
        one_line(&r.lab_version),
        r.session,
        one_line(&r.started_at)
    )];
    let mut arches: Vec<Arch> = r.arches.clone();
    arches.extend(r.a.kernels.iter().chain(&r.b.kernels).map(|k| k.arch));
    arches.sort();
    arches.dedup();
    for arch in arches {
        let side = |kernels: &[crate::compare::model::SideKernel]| {
            kernels.iter().find(|k| k.arch == arch).map_or_else(
                || "-".to_owned(),
                |k| {
                    format!(
                        "{} ({})",
                        one_line(&k.kernel_key),
                        one_line(&k.kernel_release)
                    )
                },
            )
        };
        let accel = r
            .accel
            .iter()
            .find(|(a, _)| *a == arch)
            .map(|(_, why)| format!("; accelerator {}", one_line(why)))
            .unwrap_or_default();
        items.push(format!(
            "{arch}: A {}, B {}{accel}",
            side(&r.a.kernels),
            side(&r.b.kernels)
        ));
    }
    items.push(format!(
        "Time to verdict {} (wall {}); {}; {} runs made, {} replayed from before an interruption, {} infra \
         error{} (never counted against a kernel)",
        figures::duration(r.time_to_verdict_s),
        figures::duration(r.wall_s),
        figures::runs_saved(r),
        r.runs_made,
        r.reused_runs,
        r.infra_errors,
        if r.infra_errors == 1 { "" } else { "s" }
    ));
    for item in items {
        out.push_str(&wrap(&item, "- ", "  "));
    }
    out.push('\n');
    out.push_str("Command:\n\n");
    code_block(out, &printable(&r.reproduce));
    if !r.run_dirs.is_empty() {
        out.push_str("Run directories (each with its manifest and console logs):\n\n");
        let mut dirs: Vec<String> = r
            .run_dirs
            .iter()
            .take(RUN_DIRS_SHOWN)
            .map(|d| one_line(d))
            .collect();
        if r.run_dirs.len() > RUN_DIRS_SHOWN {
            dirs.push(format!(
                "[... {} more: lab results show {}]",
                r.run_dirs.len() - RUN_DIRS_SHOWN,
                r.session
            ));
        }
        code_block(out, &dirs.join("\n"));
    }
    // No trailing blank line: the report ends with its last block.
    while out.ends_with("\n\n") {
        out.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample::small_report;
    use super::*;

    #[test]
    fn markdown_snapshot() {
        let text = MarkdownExporter.render(&small_report()).expect("renders");
        let expected = "\
lab compare: base vs futex-lockless-wakeup-revert
=================================================

Result: REGRESSION (1 regression, 0 improvements, 1 no difference, 1
inconclusive).

- A (baseline): base (debian-6.12)
- B (candidate): futex-lockless-wakeup-revert
  (debian-6.12+futex-lockless-wakeup-revert)
- Arches: x86_64
- Error rates: α=0.05 (difference, two-sided), α=0.05 (equivalence), power
  0.8; spending: obrien-fleming; holm
- No difference means a change beyond the margin is ruled out: 15 points
  (failure rates), 5% either way (metrics)
- Budget: at most 24 boots per side or 30m 00s; each boot runs every test 4
  times for 2.0s

Summary
-------

| Test              | Arch   | Question     | Verdict       | A       | B            | B vs A                 | Boots |
|-------------------|--------|--------------|---------------|---------|--------------|------------------------|-------|
| futex_wake_race   | x86_64 | failure-rate | regression    | 0/24    | 3/24 (12.5%) | +12.5 pp [+1.8, +28.4] | 8     |
| futex_wake_race   | x86_64 | wake_us_p99  | no difference | 80.5 us | 81.5 us      | x1.01 [0.98, 1.03]     | 4     |
| wq_exclusive_wake | x86_64 | failure-rate | inconclusive  | 0/24    | 1/24 (4.2%)  | +4.2 pp [-5.0, +19.0]  | 8     |

B vs A: failure rates as B - A in percentage points with the repeated
confidence interval the verdict rests on; metrics as the geometric-mean
ratio B/A of the pairs of boots with its 95% interval. A and B: failed
runs/runs, or the median of the per-boot values. Boots: per side, the unit
of every verdict.

Verdicts
--------

- futex_wake_race on x86_64, failure rate: regression: B fails more often
  than A, at α=0.05.
  - A failed 0/24 in 0/8 failing boots, B 3/24 (12.5%) in 3/8 (37.5%)
  - B − A = +12.5 points, 95% repeated CI [+1.8, +28.4]
  - 95% Wilson intervals of the failing-boot rates: A [0.0%, 14.0%], B
    [4.0%, 31.0%]
  - Fisher's exact p=0.23 (fixed-sample, descriptive only)
  - evidence on B: run 7: fail: futex_wait returned EAGAIN <after> a wake &
    a \u{FFFD}[31msignal
- futex_wake_race on x86_64, wake_us_p99: no difference: a shift of more
  than 5% either way ruled out at α=0.05.
  - median of the per-boot values A 80.5 us, B 81.5 us (4 and 4 boots)
  - ratio B/A x1.01, 95% CI [0.98, 1.03]
  - 4 pairs of boots compared
  - 1 pair left out: the host was contended while it ran
  - values come from histogram buckets 6.2% wide, interpolated within the
    bucket
  - the verdict rests on the 90% repeated CI [0.98, 1.03]
  - paired t p=0.41 (fixed-sample, descriptive only)
- wq_exclusive_wake on x86_64, failure rate: inconclusive: the budget ran
  out first; about 40 more boots per side would likely settle it.
  - A failed 0/24 in 0/8 failing boots, B 1/24 (4.2%) in 1/8 (12.5%)
  - B − A = +4.2 points, 95% repeated CI [-5.0, +19.0]
  - 95% Wilson intervals of the failing-boot rates: A [0.0%, 14.0%], B
    [4.0%, 31.0%]
  - Fisher's exact p=0.23 (fixed-sample, descriptive only)

Kernel crashes
--------------

B on x86_64, futex_wake_race: BUG: sleeping function called from invalid
context
Seen in 2 runs; fingerprint c0ffee12 (bug:futex_wake|wake_up_q); first in
/cache/lab/runs/0007-b-x86_64-3

    BUG: sleeping function called from invalid context
     Call Trace:
      futex_wake+0x1c/0x90

Reproduce
---------

- lab 0.1.0, session 7, started 2025-06-01T10:00:00Z
- x86_64: A 3f2a9c01 (6.12.57-rt15), B 77be0d42 (6.12.57-rt15+); accelerator
  tcg (kvm cannot boot a stock kernel here)
- Time to verdict 12m 30s (wall 13m 01s); 24 boots/side used; a fixed-n
  design settles all with 60; 40 runs made, 8 replayed from before an
  interruption, 1 infra error (never counted against a kernel)

Command:

    lab compare base futex-lockless-wakeup-revert --arch x86_64

Run directories (each with its manifest and console logs):

    /cache/lab/runs/0007-a-x86_64-1
    /cache/lab/runs/0007-b-x86_64-1
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn markdown_is_plain_text_friendly() {
        let text = MarkdownExporter.render(&small_report()).expect("renders");
        assert!(!text.contains("```"), "no fences");
        assert!(!text.contains("<div") && !text.contains("<br"), "no HTML");
        assert!(!text.contains('\x1b'), "no escape sequences");
        for l in text.lines() {
            let table = l.starts_with('|');
            let code = l.starts_with("    ");
            assert!(
                table || code || l.chars().count() <= WRAP,
                "prose wider than {WRAP}: {l}"
            );
        }
    }

    #[test]
    fn wrapping_keeps_long_words_whole() {
        let long = "x".repeat(100);
        assert_eq!(
            wrap(&format!("a {long} b"), "- ", "  "),
            format!("- a\n  {long}\n  b\n")
        );
    }
}
