//! The HTML report: one self-contained file to attach, archive or open from a run directory.
//!
//! No scripts, no external styles, fonts or images, and no URL anywhere: the styles are
//! inline, the plots are inline SVG (see `plots`), and text falls back to the reader's own
//! sans-serif. The markup is also well-formed XML (void elements are self-closed), which
//! keeps it checkable by the same small parser the JUnit tests use. All text from the
//! model is escaped: test names, evidence and console excerpts come from guests and kernels.

use super::escape::{attr, printable, text};
use super::figures::{self, truncate};
use super::plots::{self, RateRow, A_RGB, B_RGB};
use super::{Exporter, ReportError};
use crate::arch::Arch;
use crate::compare::model::{CompareReport, Overall, QuestionKind, QuestionResult, Verdict};

/// Run directories listed in full before the rest are only counted.
const RUN_DIRS_SHOWN: usize = 200;

/// One self-contained HTML page with a summary table and SVG plots.
#[derive(Debug, Clone, Copy, Default)]
pub struct HtmlExporter;

impl Exporter for HtmlExporter {
    fn render(&self, report: &CompareReport) -> Result<String, ReportError> {
        let mut out = String::new();
        head(&mut out, report);
        header(&mut out, report);
        summary(&mut out, report);
        rates(&mut out, report)?;
        metrics(&mut out, report)?;
        details(&mut out, report);
        crashes(&mut out, report);
        reproduce(&mut out, report);
        out.push_str("</body>\n</html>\n");
        Ok(out)
    }
}

fn rgb(c: (u8, u8, u8)) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// The CSS class of a verdict.
fn verdict_class(v: &Verdict) -> &'static str {
    match v {
        Verdict::Regression => "v-regression",
        Verdict::Improvement => "v-improvement",
        Verdict::NoDifference { .. } => "v-same",
        Verdict::Inconclusive { .. } | Verdict::BaselineCrashes { .. } => "v-open",
    }
}

fn head(out: &mut String, r: &CompareReport) {
    let title = format!("lab compare: {} vs {}", r.a.spec, r.b.spec);
    // No `>` or `&` in the style sheet: it stays valid XML text without escaping.
    let css = format!(
        "
body {{ font-family: 'DejaVu Sans', 'Helvetica Neue', Arial, sans-serif; color: #222;
  margin: 24px 32px; max-width: 1320px; font-size: 14px; line-height: 1.45; }}
h1 {{ font-size: 22px; margin: 0 0 8px 0; }}
h2 {{ font-size: 18px; margin: 28px 0 10px 0; border-bottom: 1px solid #ccc; padding-bottom: 4px; }}
h3 {{ font-size: 15px; margin: 18px 0 6px 0; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: 4px 10px; text-align: left; vertical-align: top; border-bottom: 1px solid #e2e2e2; }}
th {{ background: #f3f3f3; font-weight: 600; }}
table.meta th {{ background: none; font-weight: 600; white-space: nowrap; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
td.fig {{ font-variant-numeric: tabular-nums; white-space: nowrap; }}
td.ev {{ color: #555; font-size: 12px; max-width: 360px; }}
.v-regression {{ background: #fbe0df; color: #9b1c1c; font-weight: 700; }}
.v-improvement, .v-same {{ background: #e1f3e3; color: #1d6b2e; font-weight: 600; }}
.v-open {{ background: #fff3c4; color: #735600; font-weight: 600; }}
.overall {{ display: inline-block; padding: 6px 12px; border-radius: 4px; font-size: 16px; }}
.side-a {{ color: {a}; font-weight: 700; }}
.side-b {{ color: {b}; font-weight: 700; }}
.note {{ color: #555; font-size: 12px; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 16px; }}
svg.plot {{ border: 1px solid #e2e2e2; max-width: 100%; height: auto; }}
pre {{ background: #f6f6f6; border: 1px solid #e2e2e2; padding: 8px 10px; font-size: 12px;
  overflow-x: auto; white-space: pre; font-family: 'DejaVu Sans Mono', monospace; }}
ul.details {{ margin: 4px 0; }}
.tag {{ font-size: 13px; padding: 1px 6px; margin-left: 8px; border-radius: 3px; }}
.legend {{ font-size: 13px; }}
.swatch {{ display: inline-block; width: 12px; height: 12px; vertical-align: -1px; margin-left: 12px; }}
.swatch-a {{ background: {a}; }}
.swatch-b {{ background: {b}; }}
",
        a = rgb(A_RGB),
        b = rgb(B_RGB)
    );
    out.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>{}</title>\n<style>{css}</style>\n</head>\n<body>\n",
        text(&title)
    ));
}

fn header(out: &mut String, r: &CompareReport) {
    out.push_str(&format!(
        "<h1>lab compare: <span class=\"side-a\">{}</span> vs <span class=\"side-b\">{}</span></h1>\n",
        text(&r.a.spec),
        text(&r.b.spec)
    ));
    let class = match r.overall {
        Overall::Regression | Overall::Infra => "v-regression",
        Overall::NoRegression => "v-same",
        Overall::NoRegressionInconclusive => "v-open",
    };
    out.push_str(&format!(
        "<p><span class=\"overall {class}\">{}</span></p>\n",
        text(&figures::overall(r))
    ));
    let arches: Vec<&str> = r.arches.iter().map(|a| a.name()).collect();
    let mut rows: Vec<(&str, String)> = vec![
        (
            "A (baseline)",
            format!(
                "<span class=\"side-a\">{}</span> {}",
                text(&r.a.spec),
                text(&r.a.label)
            ),
        ),
        (
            "B (candidate)",
            format!(
                "<span class=\"side-b\">{}</span> {}",
                text(&r.b.spec),
                text(&r.b.label)
            ),
        ),
        ("Arches", text(&arches.join(", "))),
        ("Tests", text(&r.tests.join(", "))),
    ];
    if !r.knobs.is_empty() {
        let knobs: Vec<String> = r.knobs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(("Knobs", text(&knobs.join(" "))));
    }
    rows.push(("Error rates", text(&figures::error_rates(&r.design))));
    rows.push(("Margins", text(&figures::margins(&r.design))));
    rows.push(("Budget", text(&figures::budget(&r.design))));
    rows.push((
        "Cost",
        text(&format!(
            "time to verdict {} (wall {}); {}; {} runs made, {} replayed, {} infra errors",
            figures::duration(r.time_to_verdict_s),
            figures::duration(r.wall_s),
            figures::runs_saved(r),
            r.runs_made,
            r.reused_runs,
            r.infra_errors
        )),
    ));
    out.push_str("<table class=\"meta\">\n");
    for (k, v) in rows {
        out.push_str(&format!("<tr><th>{}</th><td>{v}</td></tr>\n", text(k)));
    }
    out.push_str("</table>\n");
}

fn summary(out: &mut String, r: &CompareReport) {
    out.push_str("<h2 id=\"summary\">Summary</h2>\n");
    if r.questions.is_empty() {
        out.push_str("<p>No question was answered.</p>\n");
        return;
    }
    out.push_str(
        "<table class=\"summary\">\n<tr><th>Test</th><th>Arch</th><th>Question</th>\
         <th>Verdict</th><th>A</th><th>B</th><th>B vs A</th><th>Boots</th><th>Evidence</th></tr>\n",
    );
    for q in &r.questions {
        let (a, b) = figures::sides(q);
        let effect = figures::effect(q).map_or_else(|| "-".into(), |e| e.short());
        let mut evidence: Vec<String> = Vec::new();
        if let Some(n) = figures::verdict_note(q, &r.design) {
            evidence.push(n);
        }
        for (side, ev) in [("A", &q.evidence_a), ("B", &q.evidence_b)] {
            if let Some(ev) = ev {
                evidence.push(format!("{side}: {ev}"));
            }
        }
        let full = evidence.join("; ");
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\" title=\"{}\">{}</td>\
             <td class=\"fig\">{}</td><td class=\"fig\">{}</td><td class=\"fig\">{}</td>\
             <td class=\"num\">{}</td><td class=\"ev\" title=\"{}\">{}</td></tr>\n",
            text(&q.test),
            text(q.arch.name()),
            text(&q.question.label()),
            verdict_class(&q.verdict),
            attr(&figures::verdict_sentence(q, r)),
            text(q.verdict.name()),
            text(&a),
            text(&b),
            text(&effect),
            text(&figures::boots(q)),
            attr(&full),
            text(&truncate(&full, 160))
        ));
    }
    out.push_str("</table>\n");
    out.push_str(
        "<p class=\"note\">B vs A: failure rates as B − A in percentage points with the repeated \
         confidence interval the verdict rests on; metrics as the geometric-mean ratio B/A of \
         the pairs of boots with its 95% interval. A and B: failed runs/runs, or the median of \
         the per-boot values. Boots: per side, the unit of every verdict.</p>\n",
    );
}

/// A verdict sentence and its details, as a paragraph and a list.
fn verdict_block(out: &mut String, q: &QuestionResult, r: &CompareReport) {
    out.push_str(&format!(
        "<p><span class=\"{}\">{}</span></p>\n",
        verdict_class(&q.verdict),
        text(&figures::verdict_sentence(q, r))
    ));
    let mut items = figures::details(q);
    for (side, ev) in [("A", &q.evidence_a), ("B", &q.evidence_b)] {
        if let Some(ev) = ev {
            items.push(format!("evidence on {side}: {ev}"));
        }
    }
    if !items.is_empty() {
        out.push_str("<ul class=\"details\">\n");
        for i in items {
            out.push_str(&format!("<li>{}</li>\n", text(&i)));
        }
        out.push_str("</ul>\n");
    }
}

fn title_of(q: &QuestionResult) -> String {
    format!("{} · {} · {}", q.test, q.arch, q.question.label())
}

/// The two sides' colours, as a legend line above the plots (a legend inside a plot can
/// hide the data under it).
fn legend(out: &mut String, r: &CompareReport) {
    out.push_str(&format!(
        "<p class=\"legend\"><span class=\"swatch swatch-a\"></span> A (baseline): {} \
         <span class=\"swatch swatch-b\"></span> B (candidate): {}</p>\n",
        text(&r.a.spec),
        text(&r.b.spec)
    ));
}

fn rates(out: &mut String, r: &CompareReport) -> Result<(), ReportError> {
    let rows: Vec<RateRow> = r
        .questions
        .iter()
        .filter(|q| matches!(q.question, QuestionKind::FailureRate))
        .filter_map(|q| {
            q.rate.as_ref().map(|d| RateRow {
                label: format!("{} / {}", q.test, q.arch),
                a: d.a,
                b: d.b,
                interval_a: d.interval_a,
                interval_b: d.interval_b,
            })
        })
        .collect();
    let Some(svg) = plots::rates(&rows)? else {
        return Ok(());
    };
    out.push_str("<h2 id=\"failure-rates\">Failure rates</h2>\n");
    legend(out, r);
    out.push_str("<div class=\"plots\">\n");
    out.push_str(&svg);
    out.push_str("</div>\n");
    Ok(())
}

fn metrics(out: &mut String, r: &CompareReport) -> Result<(), ReportError> {
    let questions: Vec<&QuestionResult> = r
        .questions
        .iter()
        .filter(|q| matches!(q.question, QuestionKind::Metric { .. }))
        .collect();
    if questions.is_empty() {
        return Ok(());
    }
    out.push_str("<h2 id=\"metrics\">Metrics</h2>\n");
    legend(out, r);
    out.push_str(
        "<p class=\"note\">Left: one dot per run, jittered vertically; the dark bar is the \
         median. Right (when the test reports one): the pooled latency histograms as shares of \
         each side's samples, both axes logarithmic.</p>\n",
    );
    for q in questions {
        let title = title_of(q);
        out.push_str(&format!(
            "<h3>{} <span class=\"tag {}\">{}</span></h3>\n",
            text(&title),
            verdict_class(&q.verdict),
            text(&figures::verdict_sentence(q, r))
        ));
        let Some(m) = &q.metric else {
            out.push_str("<p class=\"note\">No per-boot values were recorded.</p>\n");
            continue;
        };
        let mut svgs = Vec::new();
        if let Some(s) = plots::strip(
            &format!("{title}: per-boot values"),
            &m.unit,
            &m.values_a,
            &m.values_b,
        )? {
            svgs.push(s);
        }
        let hist_name = m.histogram_name.as_deref().unwrap_or("latency");
        let hist_unit = m
            .histogram_name
            .as_deref()
            .map_or(m.unit.as_str(), |n| crate::compare::model::metric_meta(n).1);
        if let Some(s) = plots::histogram(
            &format!("{} · {}: {hist_name} histogram", q.test, q.arch),
            hist_unit,
            &m.histogram_a,
            &m.histogram_b,
        )? {
            svgs.push(s);
        }
        if svgs.is_empty() {
            out.push_str("<p class=\"note\">No per-boot values were recorded.</p>\n");
        } else {
            out.push_str("<div class=\"plots\">\n");
            for s in svgs {
                out.push_str(&s);
            }
            out.push_str("</div>\n");
        }
    }
    Ok(())
}

fn details(out: &mut String, r: &CompareReport) {
    if r.questions.is_empty() {
        return;
    }
    out.push_str("<h2 id=\"details\">Verdicts in detail</h2>\n");
    for q in &r.questions {
        out.push_str(&format!("<h3>{}</h3>\n", text(&title_of(q))));
        verdict_block(out, q, r);
    }
}

fn crashes(out: &mut String, r: &CompareReport) {
    if r.crashes.is_empty() {
        return;
    }
    out.push_str(&format!(
        "<h2 id=\"crashes\">Kernel crashes ({})</h2>\n",
        r.crashes.len()
    ));
    for c in &r.crashes {
        let side_class = match c.side {
            crate::compare::model::Side::A => "side-a",
            crate::compare::model::Side::B => "side-b",
        };
        out.push_str(&format!(
            "<h3><span class=\"{side_class}\">{}</span> · {} · {}: {}</h3>\n",
            text(c.side.name()),
            text(c.arch.name()),
            text(&c.test),
            text(&c.title)
        ));
        out.push_str(&format!(
            "<p>Fingerprint <code>{}</code> <code>{}</code>; seen in {} run{}; first in \
             <code>{}</code></p>\n",
            text(&c.fingerprint_id),
            text(&c.fingerprint),
            c.occurrences,
            if c.occurrences == 1 { "" } else { "s" },
            text(&c.run_dir)
        ));
        out.push_str(&format!("<pre>{}</pre>\n", text(&printable(&c.excerpt))));
    }
}

fn reproduce(out: &mut String, r: &CompareReport) {
    out.push_str("<h2 id=\"reproduce\">Reproduce</h2>\n");
    out.push_str(&format!(
        "<p>lab {}, session {}, started {}. <code>lab results show {}</code> re-renders this \
         report from the store.</p>\n",
        text(&r.lab_version),
        r.session,
        text(&r.started_at),
        r.session
    ));
    let mut arches: Vec<Arch> = r.arches.clone();
    arches.extend(r.a.kernels.iter().chain(&r.b.kernels).map(|k| k.arch));
    arches.sort();
    arches.dedup();
    out.push_str(
        "<table>\n<tr><th>Arch</th><th>Side</th><th>Kernel key</th><th>Release</th>\
         <th>Image digest</th><th>Accelerator</th></tr>\n",
    );
    for arch in arches {
        let accel = r
            .accel
            .iter()
            .find(|(a, _)| *a == arch)
            .map_or("-", |(_, why)| why.as_str());
        for (side, info) in [("A", &r.a), ("B", &r.b)] {
            if let Some(k) = info.kernels.iter().find(|k| k.arch == arch) {
                out.push_str(&format!(
                    "<tr><td>{}</td><td>{side}</td><td><code>{}</code></td><td>{}</td>\
                     <td><code>{}</code></td><td>{}</td></tr>\n",
                    text(arch.name()),
                    text(&k.kernel_key),
                    text(&k.kernel_release),
                    text(&k.image_digest),
                    text(accel)
                ));
            }
        }
    }
    out.push_str("</table>\n");
    out.push_str(&format!(
        "<p>Command:</p>\n<pre>{}</pre>\n",
        text(&printable(&r.reproduce))
    ));
    if !r.run_dirs.is_empty() {
        let mut dirs: Vec<String> = r
            .run_dirs
            .iter()
            .take(RUN_DIRS_SHOWN)
            .map(|d| printable(d))
            .collect();
        if r.run_dirs.len() > RUN_DIRS_SHOWN {
            dirs.push(format!(
                "[... {} more: lab results show {}]",
                r.run_dirs.len() - RUN_DIRS_SHOWN,
                r.session
            ));
        }
        out.push_str(&format!(
            "<p>Run directories ({}), each with its manifest and console logs:</p>\n<pre>{}</pre>\n",
            r.run_dirs.len(),
            text(&dirs.join("\n"))
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample::small_report;
    use super::*;

    #[test]
    fn page_is_self_contained() {
        let html = HtmlExporter.render(&small_report()).expect("renders");
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("url("));
        // The rate chart, the strip plot and the histogram of the one metric.
        assert_eq!(html.matches("<svg ").count(), 3);
        assert!(html.contains("EAGAIN &lt;after&gt; a wake &amp; a"));
        assert!(html.contains("<pre>BUG: sleeping function called from invalid context\n"));
    }
}
