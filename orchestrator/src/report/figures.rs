//! The figures and sentences every report states the same way: counts and rates, effects with
//! their intervals, verdicts with their error rates, durations.
//!
//! One place, so that the terminal, markdown, HTML and JUnit reports never disagree on a
//! number or on how a verdict is worded. Everything here is plain text; each exporter
//! escapes it for its own format.

use crate::compare::model::{
    Better, CompareReport, DesignInfo, Overall, QuestionKind, QuestionResult, Verdict,
};
use crate::stats::{quantile, Counts, Decision, Direction, Interval};

/// Failures out of runs, with the rate once there is a failure: `0/24`, `3/24 (12.5%)`.
pub(super) fn counts(c: Counts) -> String {
    if c.failures == 0 {
        format!("{}/{}", c.failures, c.runs)
    } else {
        format!("{}/{} ({})", c.failures, c.runs, percent(c.rate()))
    }
}

/// A proportion as a percentage with one decimal: `12.5%`.
pub(super) fn percent(p: f64) -> String {
    format!("{:.1}%", p * 100.0)
}

/// A difference of proportions in percentage points, signed, one decimal: `+12.5`.
pub(super) fn points(d: f64) -> String {
    let v = d * 100.0;
    // Keep "-0.0" out of reports: it reads as a tiny improvement that is not there.
    let v = if v.abs() < 0.05 { 0.0 } else { v };
    format!("{v:+.1}")
}

/// A measured value with about three significant digits.
pub(super) fn number(x: f64) -> String {
    let a = x.abs();
    if !x.is_finite() {
        format!("{x}")
    } else if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e6).contains(&a) {
        format!("{x:.2e}")
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// A value with its unit: `85.2 us`, `1234 /s`.
pub(super) fn value(x: f64, unit: &str) -> String {
    if unit.is_empty() {
        number(x)
    } else {
        format!("{} {unit}", number(x))
    }
}

/// A ratio B/A: two decimals where that is meaningful.
pub(super) fn ratio(x: f64) -> String {
    if x.is_finite() && (0.1..100.0).contains(&x.abs()) {
        format!("{x:.2}")
    } else {
        number(x)
    }
}

/// A parameter such as α or a margin, without trailing zeros: `0.05`, `15`, `2.5`.
pub(super) fn param(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_owned()
    }
}

/// A p-value: `p=0.23`, `p=0.004`, `p<0.001`.
pub(super) fn p_value(p: f64) -> String {
    if p < 0.001 {
        "p<0.001".into()
    } else if p < 0.01 {
        format!("p={p:.3}")
    } else {
        format!("p={p:.2}")
    }
}

/// A confidence level as a percentage: `95%`, `97.5%`.
pub(super) fn level(confidence: f64) -> String {
    format!("{}%", param(confidence * 100.0))
}

/// A duration in seconds as `45s`, `12m 30s` or `2h 05m`.
pub(crate) fn duration(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "?".into();
    }
    let total = s.round() as u64;
    let (h, m, sec) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else if s < 10.0 {
        format!("{s:.1}s")
    } else {
        format!("{sec}s")
    }
}

/// The median of per-boot values, ignoring values that are not numbers.
pub(super) fn median(xs: &[f64]) -> Option<f64> {
    let finite: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    quantile(&finite, 0.5)
}

/// `s` cut to at most `width` characters, with `…` marking the cut.
pub(super) fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The estimate of extra runs per side, when the monitor gave a usable one.
pub(super) fn more_runs(more: Option<u64>) -> Option<u64> {
    // The monitor says u64::MAX when no finite number of runs would settle it at the
    // current estimate; a figure that large is no advice.
    more.filter(|&n| n < 1_000_000)
}

/// How a question's effect is stated: a difference of failure rates or a ratio B/A.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scale {
    /// B − A in percentage points.
    Points,
    /// B / A.
    Ratio,
}

/// The effect of B against A on one question, with the interval the report shows for it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Effect {
    pub scale: Scale,
    pub estimate: f64,
    pub interval: Option<Interval>,
    /// Two-sided confidence of `interval`.
    pub confidence: f64,
    /// Whether `interval` is the sequential monitor's repeated confidence interval (valid
    /// whenever the comparison stopped), rather than a fixed-sample one.
    pub repeated: bool,
}

impl Effect {
    /// `+12.5 pp [+1.8, +28.4]` or `x1.07 [1.02, 1.12]`.
    pub fn short(&self) -> String {
        let est = self.estimate_text();
        match self.interval {
            Some(iv) => format!("{est} {}", self.interval_text(iv)),
            None => est,
        }
    }

    /// `+12.5 pp` or `x1.07`.
    pub fn estimate_text(&self) -> String {
        match self.scale {
            Scale::Points => format!("{} pp", points(self.estimate)),
            Scale::Ratio => format!("x{}", ratio(self.estimate)),
        }
    }

    /// `[+1.8, +28.4]` or `[1.02, 1.12]`.
    pub fn interval_text(&self, iv: Interval) -> String {
        match self.scale {
            Scale::Points => format!("[{}, {}]", points(iv.lower), points(iv.upper)),
            Scale::Ratio => format!("[{}, {}]", ratio(iv.lower), ratio(iv.upper)),
        }
    }

    /// `95% repeated CI` or `95% CI`.
    pub fn interval_name(&self) -> String {
        let kind = if self.repeated { "repeated CI" } else { "CI" };
        format!("{} {kind}", level(self.confidence))
    }

    /// `B − A = +12.5 points, 95% repeated CI [+1.8, +28.4]` or
    /// `ratio B/A x1.07, 95% CI [1.02, 1.12]`.
    pub fn sentence(&self) -> String {
        let head = match self.scale {
            Scale::Points => format!("B − A = {} points", points(self.estimate)),
            Scale::Ratio => format!("ratio B/A x{}", ratio(self.estimate)),
        };
        match self.interval {
            Some(iv) => format!(
                "{head}, {} {}",
                self.interval_name(),
                self.interval_text(iv)
            ),
            None => head,
        }
    }
}

/// The effect the monitor decided on, on the reporting scale, with its RCI.
pub(super) fn decision_effect(q: &QuestionResult, scale: Scale) -> Option<Effect> {
    let (estimate, interval, confidence) = match &q.decision {
        Decision::Different {
            estimate,
            interval,
            error_rate,
            ..
        } => (*estimate, Some(*interval), 1.0 - error_rate),
        // The equivalence RCI is at level 2α_eq: the two one-sided tests at α_eq each.
        Decision::Equivalent {
            estimate,
            interval,
            error_rate,
            ..
        } => (*estimate, Some(*interval), 1.0 - 2.0 * error_rate),
        Decision::Inconclusive {
            estimate, interval, ..
        } => (*estimate, *interval, 1.0 - q.alpha),
        // A crash decides before the monitor does; its last look is still the evidence.
        Decision::Continue => {
            let look = q.looks.last()?;
            (look.estimate, look.interval, 1.0 - q.alpha)
        }
    };
    Some(Effect {
        scale,
        estimate,
        interval,
        confidence,
        repeated: true,
    })
}

/// The effect a report shows for `q`: for failure rates the difference B − A with the
/// monitor's repeated confidence interval, the interval the verdict rests on; for metrics the
/// pairs' geometric-mean ratio B/A with its 95 % t interval, else the monitor's.
pub(super) fn effect(q: &QuestionResult) -> Option<Effect> {
    // A metric question with no uncontended pair yet has no estimate (NaN): it shows none
    // rather than "xNaN".
    raw_effect(q)
        .filter(|e| e.estimate.is_finite())
        .map(|mut e| {
            e.interval = e
                .interval
                .filter(|iv| iv.lower.is_finite() && iv.upper.is_finite());
            e
        })
}

fn raw_effect(q: &QuestionResult) -> Option<Effect> {
    match (&q.question, &q.rate, &q.metric) {
        (QuestionKind::Metric { .. }, _, Some(m)) => match &m.paired_ratio {
            Some(p) => Some(Effect {
                scale: Scale::Ratio,
                estimate: p.estimate,
                interval: Some(Interval {
                    lower: p.lower,
                    upper: p.upper,
                }),
                confidence: p.confidence,
                repeated: false,
            }),
            None => decision_effect(q, Scale::Ratio),
        },
        (QuestionKind::Metric { .. }, _, None) => decision_effect(q, Scale::Ratio),
        (QuestionKind::FailureRate, rate, _) => decision_effect(q, Scale::Points).or_else(|| {
            rate.as_ref().map(|r| Effect {
                scale: Scale::Points,
                estimate: r.b.rate() - r.a.rate(),
                interval: None,
                confidence: 1.0 - q.alpha,
                repeated: false,
            })
        }),
    }
}

/// The A and B figures of a question: counts for rates, medians for metrics.
pub(super) fn sides(q: &QuestionResult) -> (String, String) {
    if let Some(r) = &q.rate {
        return (counts(r.a), counts(r.b));
    }
    if let Some(m) = &q.metric {
        let med = |xs: &[f64]| median(xs).map_or_else(|| "-".into(), |v| value(v, &m.unit));
        return (med(&m.values_a), med(&m.values_b));
    }
    ("-".into(), "-".into())
}

/// The numbers behind a verdict, one clause each, for the reports that have room for prose.
pub(super) fn details(q: &QuestionResult) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(r) = &q.rate {
        out.push(format!(
            "A failed {} in {} failing boots, B {} in {}",
            counts(r.a),
            counts(r.boots_a),
            counts(r.b),
            counts(r.boots_b)
        ));
        if let Some(e) = effect(q) {
            out.push(e.sentence());
        }
        out.push(format!(
            "95% Wilson intervals of the failing-boot rates: A [{}, {}], B [{}, {}]",
            percent(r.interval_a.lower),
            percent(r.interval_a.upper),
            percent(r.interval_b.lower),
            percent(r.interval_b.upper)
        ));
    }
    if let Some(m) = &q.metric {
        let med = |xs: &[f64]| median(xs).map_or_else(|| "-".into(), |v| value(v, &m.unit));
        out.push(format!(
            "median of the per-boot values A {}, B {} ({} and {} boots)",
            med(&m.values_a),
            med(&m.values_b),
            m.values_a.len(),
            m.values_b.len()
        ));
        if let Some(e) = effect(q) {
            out.push(e.sentence());
        }
        if let Some(p) = &m.paired_ratio {
            out.push(format!("{} pairs of boots compared", p.pairs));
        }
        if m.contended_pairs > 0 {
            let n = m.contended_pairs;
            out.push(format!(
                "{n} pair{} left out: the host was contended while {} ran",
                plural(n as usize),
                if n == 1 { "it" } else { "they" }
            ));
        }
        if let Some(res) = m.quantisation {
            out.push(format!(
                "values come from histogram buckets {} wide, interpolated within the bucket",
                percent(res)
            ));
        }
        // The verdict rests on the sequential interval; say so when it is not the one above.
        if let Some(d) = decision_effect(q, Scale::Ratio) {
            if let (Some(iv), Some(shown)) = (d.interval, effect(q)) {
                if !shown.repeated {
                    out.push(format!(
                        "the verdict rests on the {} {}",
                        d.interval_name(),
                        d.interval_text(iv)
                    ));
                }
            }
        }
    }
    let p = match (&q.rate, &q.metric) {
        (Some(r), _) => Some(("Fisher's exact", q.p_value.unwrap_or(r.fisher_p))),
        (None, Some(m)) => q
            .p_value
            .or(m.paired_ratio.as_ref().map(|p| p.p_value))
            .map(|p| ("paired t", p)),
        (None, None) => None,
    };
    if let Some((test, p)) = p {
        let adjusted = q
            .p_adjusted
            .map(|a| format!(", Holm-adjusted {}", p_value(a)))
            .unwrap_or_default();
        out.push(format!(
            "{test} {}{adjusted} (fixed-sample, descriptive only)",
            p_value(p)
        ));
    }
    out
}

/// `24` when both sides ran as often, else `24/23`.
/// Boots per side behind a question's verdict (A/B when they differ).
pub(super) fn boots(q: &QuestionResult) -> String {
    let (a, b) = q.boots();
    if a == b {
        a.to_string()
    } else {
        format!("{a}/{b}")
    }
}

/// The α a no-difference verdict was reached at.
fn alpha_equivalence(q: &QuestionResult, design: &DesignInfo) -> f64 {
    match q.decision {
        Decision::Equivalent { error_rate, .. } => error_rate,
        _ => design.alpha_equivalence,
    }
}

/// The α a difference was declared at.
fn alpha_difference(q: &QuestionResult) -> f64 {
    match q.decision {
        Decision::Different { error_rate, .. } => error_rate,
        _ => q.alpha,
    }
}

/// Which way B went, from the decision or else from the estimate.
fn direction(q: &QuestionResult) -> Option<Direction> {
    if let Decision::Different { direction, .. } = q.decision {
        return Some(direction);
    }
    let e = effect(q)?;
    let zero = match e.scale {
        Scale::Points => 0.0,
        Scale::Ratio => 1.0,
    };
    if e.estimate > zero {
        Some(Direction::BHigher)
    } else if e.estimate < zero {
        Some(Direction::BLower)
    } else {
        None
    }
}

/// The margin a no-difference verdict rules out, in words: `15 points` or `5% either way`.
pub(super) fn margin_phrase(question: &QuestionKind, margin: f64) -> String {
    match question {
        QuestionKind::FailureRate => format!("{} points", param(margin * 100.0)),
        QuestionKind::Metric { .. } => format!("{}% either way", param(margin * 100.0)),
    }
}

/// A short note for a table row: what no difference ruled out, or the runs still needed.
pub(super) fn verdict_note(q: &QuestionResult, design: &DesignInfo) -> Option<String> {
    match &q.verdict {
        Verdict::NoDifference { margin } => {
            let m = match q.question {
                QuestionKind::FailureRate => format!("+{} pp of boots", param(margin * 100.0)),
                QuestionKind::Metric { .. } => format!("±{}%", param(margin * 100.0)),
            };
            Some(format!(
                "{m} ruled out at α={}",
                param(alpha_equivalence(q, design))
            ))
        }
        Verdict::Inconclusive { .. } if q.secondary_to.is_some() => Some(format!(
            "not tested: secondary to {}, tested only once that differs",
            q.secondary_to.as_deref().unwrap_or("?")
        )),
        Verdict::Inconclusive { more_runs: more } => {
            let need = match more_runs(*more) {
                Some(n) => format!("needs ~{n} more boots per side"),
                None => "no estimate of the boots it needs".into(),
            };
            Some(match rate_bound(q) {
                Some(b) => format!("so far at most +{:.1} pp of boots; {need}", b * 100.0),
                None => need,
            })
        }
        Verdict::Regression | Verdict::Improvement => None,
        Verdict::BaselineCrashes { .. } => Some("B's failure rate not compared".into()),
    }
}

/// For a failure-rate question, the one-sided upper bound of its last look on how much more
/// often B's boots fail than A's (what "no difference" rests on), when it is below 1.
pub(super) fn rate_bound(q: &QuestionResult) -> Option<f64> {
    if q.question != QuestionKind::FailureRate {
        return None;
    }
    let upper = q.looks.last()?.equivalence_interval?.upper;
    (upper < 1.0).then_some(upper.max(0.0))
}

/// Whether the kernel crashed on side B for this question's test and arch.
fn b_crashed(q: &QuestionResult, report: &CompareReport) -> bool {
    report
        .crashes
        .iter()
        .any(|c| c.side == crate::compare::model::Side::B && c.arch == q.arch && c.test == q.test)
}

/// One sentence with the verdict, its interval and its error rate, e.g.
/// `no difference: a change of more than 15 points ruled out at α=0.05`.
pub(super) fn verdict_sentence(q: &QuestionResult, report: &CompareReport) -> String {
    let design = &report.design;
    match &q.verdict {
        Verdict::NoDifference { margin } => match q.question {
            QuestionKind::FailureRate => format!(
                "no difference: B's boots fail at most {:.1} points more often than A's, at {}",
                rate_bound(q).unwrap_or(*margin) * 100.0,
                level(1.0 - alpha_equivalence(q, design))
            ),
            QuestionKind::Metric { .. } => format!(
                "no difference: a shift of more than {} ruled out at α={}",
                margin_phrase(&q.question, *margin),
                param(alpha_equivalence(q, design))
            ),
        },
        Verdict::Regression | Verdict::Improvement => {
            let name = q.verdict.name();
            if !matches!(q.decision, Decision::Different { .. })
                && matches!(q.verdict, Verdict::Regression)
                && b_crashed(q, report)
            {
                return format!("{name}: the kernel crashed on B");
            }
            let how = match (&q.question, direction(q)) {
                (QuestionKind::FailureRate, Some(Direction::BHigher)) => {
                    "B fails more often than A".to_owned()
                }
                (QuestionKind::FailureRate, Some(Direction::BLower)) => {
                    "B fails less often than A".to_owned()
                }
                (QuestionKind::Metric { name: m, better }, Some(d)) => {
                    let word = match d {
                        Direction::BHigher => "higher",
                        Direction::BLower => "lower",
                    };
                    let good = match better {
                        Better::Lower => "lower is better",
                        Better::Higher => "higher is better",
                    };
                    format!("{m} is {word} on B than on A ({good})")
                }
                (_, None) => "B differs from A".to_owned(),
            };
            format!("{name}: {how}, at α={}", param(alpha_difference(q)))
        }
        Verdict::Inconclusive { .. } if q.secondary_to.is_some() => format!(
            "not tested: a secondary metric of {}, tested only once its primary {} differs (gatekeeping); reported, not decided",
            q.test,
            q.secondary_to.as_deref().unwrap_or("?")
        ),
        Verdict::Inconclusive { more_runs: more } => match more_runs(*more) {
            Some(n) => format!(
                "inconclusive: the budget ran out first; about {n} more boots per side would likely settle it"
            ),
            None => "inconclusive: the budget ran out first, with no estimate of the runs it would need".into(),
        },
        Verdict::BaselineCrashes { both: false } => {
            "baseline crashes: the kernel crashed on A (the baseline), not a regression of B; B's failure rate is not compared".into()
        }
        Verdict::BaselineCrashes { both: true } => {
            "both crash: the kernel crashed on A and on B; not a regression of B, and nothing is known about B against A".into()
        }
    }
}

/// The overall answer in a few words.
pub(super) fn overall(report: &CompareReport) -> String {
    let (reg, imp, same, open) = report.tally();
    let counts = format!(
        "{reg} regression{}, {imp} improvement{}, {same} no difference, {open} inconclusive",
        plural(reg),
        plural(imp)
    );
    match report.overall {
        Overall::Regression => format!("REGRESSION ({counts})"),
        Overall::NoRegression => format!("no regression ({counts})"),
        Overall::NoRegressionInconclusive => {
            format!("no regression found, some questions open ({counts})")
        }
        Overall::Infra => "infrastructure failure before any verdict".into(),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The design's error rates: `α=0.05 (difference, two-sided), α=0.05 (equivalence), power 0.8`.
pub(super) fn error_rates(d: &DesignInfo) -> String {
    format!(
        "α={} (difference, two-sided), α={} (equivalence), power {}; spending: {}; {}",
        param(d.alpha),
        param(d.alpha_equivalence),
        param(d.power),
        d.spending,
        d.multiplicity
    )
}

/// The margins a no-difference verdict rules out.
pub(super) fn margins(d: &DesignInfo) -> String {
    format!(
        "{} points (failure rates), {}% either way (metrics)",
        param(d.margin_rate * 100.0),
        param(d.margin_metric * 100.0)
    )
}

/// The budget and batching.
pub(super) fn budget(d: &DesignInfo) -> String {
    format!(
        "at most {} boots per side or {}; each boot runs every test {} times for {}",
        d.max_runs_per_side,
        duration(d.budget_s as f64),
        d.batch_runs,
        duration(d.test_duration_ms as f64 / 1000.0)
    )
}

/// Boots per side used by the sequential design, over every question, against the fixed-n
/// design.
pub(super) fn runs_saved(report: &CompareReport) -> String {
    let used = report.runs_per_side_used;
    let fixed = report.runs_per_side_fixed_n;
    if fixed == 0 {
        return format!("{used} boots/side for all questions");
    }
    // With questions left open the design did not settle them, so it saved nothing there:
    // no percentage, which would flatter it.
    let open = report
        .questions
        .iter()
        .any(|q| matches!(q.verdict, Verdict::Inconclusive { .. }));
    if open {
        return format!("{used} boots/side used; a fixed-n design settles all with {fixed}");
    }
    let saved = 1.0 - used as f64 / fixed as f64;
    if saved > 0.0 {
        format!(
            "{used} boots/side for all questions vs {fixed} fixed-n ({:.0}% fewer)",
            saved * 100.0
        )
    } else {
        format!("{used} boots/side for all questions vs {fixed} fixed-n")
    }
}

/// The common parent folder of the run directories, for a one-line hint.
pub(super) fn run_dirs_root(dirs: &[String]) -> Option<String> {
    let first = dirs.first()?;
    let mut common: Vec<&str> = first.split('/').collect();
    common.pop();
    for d in &dirs[1..] {
        let parts: Vec<&str> = d.split('/').collect();
        let same = common
            .iter()
            .zip(&parts)
            .take_while(|(a, b)| a == b)
            .count();
        common.truncate(same);
    }
    let root = common.join("/");
    if root.is_empty() {
        None
    } else {
        Some(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_the_rate_once_something_failed() {
        assert_eq!(counts(Counts::new(24, 0)), "0/24");
        assert_eq!(counts(Counts::new(24, 3)), "3/24 (12.5%)");
    }

    #[test]
    fn numbers_keep_about_three_digits() {
        assert_eq!(number(85.24), "85.2");
        assert_eq!(number(1234.4), "1234");
        assert_eq!(number(4.5678), "4.57");
        assert_eq!(number(0.01234), "0.012");
        assert_eq!(number(2.5e7), "2.50e7");
        assert_eq!(ratio(1.0712), "1.07");
        assert_eq!(points(-0.0001), "+0.0");
        assert_eq!(points(0.125), "+12.5");
        assert_eq!(param(0.05), "0.05");
        assert_eq!(param(15.0), "15");
        assert_eq!(level(0.95), "95%");
        assert_eq!(level(0.9), "90%");
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(duration(4.25), "4.2s");
        assert_eq!(duration(45.0), "45s");
        assert_eq!(duration(750.0), "12m 30s");
        assert_eq!(duration(7500.0), "2h 05m");
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    #[test]
    fn run_dirs_share_their_parent() {
        let dirs = vec![
            "/cache/lab/runs/1-x86_64".to_owned(),
            "/cache/lab/runs/2-arm64".to_owned(),
        ];
        assert_eq!(run_dirs_root(&dirs).as_deref(), Some("/cache/lab/runs"));
        assert_eq!(run_dirs_root(&[]), None);
    }
}
