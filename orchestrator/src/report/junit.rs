//! The JUnit XML report, for CI systems that show test results: one `<testsuite>` per arch,
//! one `<testcase>` per question, and one per kernel crash.
//!
//! The mapping: a regression is a `<failure>` with its evidence; an inconclusive question is
//! `<skipped>` (nothing was shown either way); improvements and no-difference pass, with
//! their verdict sentence in `<system-out>`; each kernel crash seen on either side is a
//! `<failure>` carrying the console excerpt. Times are test time, the runs of both sides
//! times the test duration, not wall time: a comparison runs many tests in one boot.
//! The layout follows the schema most consumers accept (Jenkins' and Surefire's):
//! `properties`, then `testcase`s; in a case, the outcome first, then `system-out`.

use super::escape::{attr, text};
use super::figures;
use super::{Exporter, ReportError};
use crate::arch::Arch;
use crate::compare::model::{CompareReport, QuestionResult, Verdict};

/// JUnit XML, one suite per arch.
#[derive(Debug, Clone, Copy, Default)]
pub struct JunitExporter;

enum Outcome {
    Pass,
    Failure {
        kind: &'static str,
        message: String,
        body: String,
    },
    Skipped {
        message: String,
    },
}

struct Case {
    classname: String,
    name: String,
    time_s: f64,
    outcome: Outcome,
    out: String,
}

impl Exporter for JunitExporter {
    fn render(&self, report: &CompareReport) -> Result<String, ReportError> {
        let suites: Vec<(Arch, Vec<Case>)> = arches(report)
            .into_iter()
            .map(|arch| (arch, cases(report, arch)))
            .collect();
        let all = suites.iter().flat_map(|(_, c)| c);
        let (tests, failures, skipped) = tally(all);
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        out.push_str(&format!(
            "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" \
             skipped=\"{skipped}\" time=\"{:.3}\">\n",
            attr(&format!(
                "lab compare {} vs {}",
                report.a.spec, report.b.spec
            )),
            report.wall_s.max(0.0)
        ));
        for (arch, cases) in &suites {
            suite(&mut out, report, *arch, cases);
        }
        out.push_str("</testsuites>\n");
        Ok(out)
    }
}

/// Every arch the report speaks of, in the order lab lists arches.
fn arches(r: &CompareReport) -> Vec<Arch> {
    let mut v: Vec<Arch> = r.arches.clone();
    v.extend(r.questions.iter().map(|q| q.arch));
    v.extend(r.crashes.iter().map(|c| c.arch));
    v.sort();
    v.dedup();
    v
}

fn tally<'a>(cases: impl Iterator<Item = &'a Case>) -> (usize, usize, usize) {
    let (mut tests, mut failures, mut skipped) = (0, 0, 0);
    for c in cases {
        tests += 1;
        match c.outcome {
            Outcome::Pass => {}
            Outcome::Failure { .. } => failures += 1,
            Outcome::Skipped { .. } => skipped += 1,
        }
    }
    (tests, failures, skipped)
}

/// Test time of one question: both sides' runs at the configured duration.
fn test_time(q: &QuestionResult, r: &CompareReport) -> f64 {
    (q.runs_a + q.runs_b) as f64 * r.design.test_duration_ms as f64 / 1000.0
}

fn classname(arch: Arch, test: &str) -> String {
    format!("lab.compare.{arch}.{test}")
}

fn cases(r: &CompareReport, arch: Arch) -> Vec<Case> {
    let mut out = Vec::new();
    for q in r.questions.iter().filter(|q| q.arch == arch) {
        let sentence = figures::verdict_sentence(q, r);
        let mut lines = vec![sentence.clone()];
        lines.extend(figures::details(q));
        for (side, ev) in [("A", &q.evidence_a), ("B", &q.evidence_b)] {
            if let Some(ev) = ev {
                lines.push(format!("evidence on {side}: {ev}"));
            }
        }
        let body = lines.join("\n");
        let outcome = match q.verdict {
            Verdict::Regression => Outcome::Failure {
                kind: "regression",
                message: sentence,
                body: body.clone(),
            },
            Verdict::Inconclusive { .. } | Verdict::BaselineCrashes { .. } => {
                Outcome::Skipped { message: sentence }
            }
            Verdict::Improvement | Verdict::NoDifference { .. } => Outcome::Pass,
        };
        out.push(Case {
            classname: classname(arch, &q.test),
            name: q.question.label(),
            time_s: test_time(q, r),
            outcome,
            out: body,
        });
    }
    for c in r.crashes.iter().filter(|c| c.arch == arch) {
        let body = format!(
            "fingerprint {} {}\nseen in {} run(s) on {}, first in {}\n\n{}",
            c.fingerprint_id,
            c.fingerprint,
            c.occurrences,
            c.side.name(),
            c.run_dir,
            c.excerpt
        );
        out.push(Case {
            classname: classname(arch, &c.test),
            name: format!("kernel-crash {} {}", c.side.name(), c.fingerprint_id),
            time_s: 0.0,
            outcome: Outcome::Failure {
                kind: "kernel-crash",
                message: format!("kernel crash on {}: {}", c.side.name(), c.title),
                body,
            },
            out: String::new(),
        });
    }
    out
}

/// Test time of a suite: each test's runs once, however many questions it answered.
fn suite_time(cases: &[Case]) -> f64 {
    let mut per_test: Vec<(&str, f64)> = Vec::new();
    for c in cases {
        match per_test.iter_mut().find(|(name, _)| *name == c.classname) {
            Some((_, t)) => *t = t.max(c.time_s),
            None => per_test.push((&c.classname, c.time_s)),
        }
    }
    per_test.iter().map(|(_, t)| t).sum()
}

fn property(out: &mut String, name: &str, value: &str) {
    out.push_str(&format!(
        "      <property name=\"{}\" value=\"{}\"/>\n",
        attr(name),
        attr(value)
    ));
}

fn suite(out: &mut String, r: &CompareReport, arch: Arch, cases: &[Case]) {
    let (tests, failures, skipped) = tally(cases.iter());
    out.push_str(&format!(
        "  <testsuite name=\"lab.compare.{arch}\" tests=\"{tests}\" failures=\"{failures}\" \
         errors=\"0\" skipped=\"{skipped}\" time=\"{:.3}\" timestamp=\"{}\">\n",
        suite_time(cases),
        attr(&r.started_at)
    ));
    out.push_str("    <properties>\n");
    property(out, "lab.version", &r.lab_version);
    property(out, "session", &r.session.to_string());
    for (side, info) in [("a", &r.a), ("b", &r.b)] {
        property(out, &format!("{side}.spec"), &info.spec);
        property(out, &format!("{side}.label"), &info.label);
        if let Some(k) = info.kernels.iter().find(|k| k.arch == arch) {
            property(out, &format!("{side}.kernel-key"), &k.kernel_key);
            property(out, &format!("{side}.kernel-release"), &k.kernel_release);
            property(out, &format!("{side}.image-digest"), &k.image_digest);
        }
    }
    if let Some((_, why)) = r.accel.iter().find(|(a, _)| *a == arch) {
        property(out, "accel", why);
    }
    for (k, v) in &r.knobs {
        property(out, &format!("knob.{k}"), v);
    }
    property(out, "alpha", &figures::param(r.design.alpha));
    property(
        out,
        "alpha-equivalence",
        &figures::param(r.design.alpha_equivalence),
    );
    property(out, "margin-rate", &figures::param(r.design.margin_rate));
    property(
        out,
        "margin-metric",
        &figures::param(r.design.margin_metric),
    );
    property(
        out,
        "max-runs-per-side",
        &r.design.max_runs_per_side.to_string(),
    );
    property(out, "overall", &figures::overall(r));
    property(out, "reproduce", &r.reproduce);
    out.push_str("    </properties>\n");
    for c in cases {
        out.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            attr(&c.classname),
            attr(&c.name),
            c.time_s
        ));
        if matches!(c.outcome, Outcome::Pass) && c.out.is_empty() {
            out.push_str("/>\n");
            continue;
        }
        out.push_str(">\n");
        match &c.outcome {
            Outcome::Pass => {}
            Outcome::Failure {
                kind,
                message,
                body,
            } => out.push_str(&format!(
                "      <failure type=\"{kind}\" message=\"{}\">{}</failure>\n",
                attr(message),
                text(body)
            )),
            Outcome::Skipped { message } => {
                out.push_str(&format!("      <skipped message=\"{}\"/>\n", attr(message)))
            }
        }
        if !c.out.is_empty() {
            out.push_str(&format!(
                "      <system-out>{}</system-out>\n",
                text(&c.out)
            ));
        }
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n");
}

#[cfg(test)]
mod tests {
    use super::super::sample::small_report;
    use super::*;

    #[test]
    fn cases_map_to_verdicts() {
        let xml = JunitExporter.render(&small_report()).expect("renders");
        // Three questions and one crash; the regression and the crash fail, the
        // inconclusive question is skipped.
        assert!(xml.contains(
            "<testsuite name=\"lab.compare.x86_64\" tests=\"4\" failures=\"2\" errors=\"0\" skipped=\"1\""
        ));
        assert_eq!(xml.matches("<testcase ").count(), 4);
        assert_eq!(xml.matches("<failure ").count(), 2);
        assert_eq!(xml.matches("<skipped ").count(), 1);
        assert!(xml.contains(
            "<testcase classname=\"lab.compare.x86_64.futex_wake_race\" name=\"failure-rate\" time=\"96.000\">"
        ));
        assert!(xml.contains("<property name=\"a.spec\" value=\"base\"/>"));
        // The evidence holds markup and an escape sequence; both are made harmless.
        assert!(xml.contains("EAGAIN &lt;after&gt; a wake &amp; a \u{FFFD}[31msignal"));
        assert!(!xml.contains('\x1b'));
    }

    #[test]
    fn suite_time_counts_each_test_once() {
        let xml = JunitExporter.render(&small_report()).expect("renders");
        // futex_wake_race: 48 runs of 2 s (two questions, same runs); wq_exclusive_wake: 48.
        assert!(
            xml.contains("time=\"192.000\" timestamp=\"2025-06-01T10:00:00Z\""),
            "{xml}"
        );
    }
}
