//! `lab compare A B`: turn the flags into a [`CompareRequest`] (checking the numbers a person
//! typed, where the flag's name is known), run the session engine
//! ([`crate::compare::session`]) with its progress on stderr, then render the report on
//! stdout and into the files asked for, and map the verdict to an exit code.

use std::io::IsTerminal;
use std::path::Path;

use super::progress::SessionProgress;
use super::Context;
use crate::cli::CompareArgs;
use crate::compare::model::{CompareReport, Overall};
use crate::compare::session::{self, CompareRequest, NamedSide};
use crate::config::Settings;
use crate::errors::{LabError, Outcome};
use crate::report::{self, ReportFormat};

pub async fn run(ctx: &Context, args: &CompareArgs) -> Result<Outcome, LabError> {
    let req = request(&ctx.settings, args)?;
    if args.plan {
        let choice = session::choose(&ctx.settings, &req)?;
        super::progress::chosen(&choice);
        let side = |spec: &session::SideSpec| match spec {
            session::SideSpec::Patches(sets) if sets.is_empty() => "base".to_owned(),
            session::SideSpec::Patches(sets) => sets.join(" + "),
            session::SideSpec::Kernel(k) => format!("kernel {k}"),
            session::SideSpec::Stored(keys) => format!("stored {}", keys.join(",")),
        };
        crate::outln!("A: {}", side(&choice.a));
        crate::outln!("B: {}", side(&choice.b));
        crate::outln!("tests: {}", choice.tests.join(", "));
        let knobs: Vec<String> = choice
            .knobs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !knobs.is_empty() {
            crate::outln!("knobs: {}", knobs.join(" "));
        }
        return Ok(Outcome::Pass);
    }
    let exec = super::executor(ctx, args.jobs)?;
    let progress = SessionProgress::new(ctx.quiet);
    let on = |e| progress.event(e);
    let ran = session::run(&ctx.settings, &*exec, &req, &on).await;
    // The loop is over: no more progress lines among the report's.
    drop(progress);
    let Some((report, dir)) = ran? else {
        return Err(LabError::Interrupted);
    };
    emit(ctx, args, &report, &dir)?;
    Ok(outcome(&report))
}

/// The request the flags make, over the `[compare]` settings.
fn request(s: &Settings, args: &CompareArgs) -> Result<CompareRequest, LabError> {
    let a = NamedSide::parse(&args.a, s)?;
    let b = NamedSide::parse(&args.b, s)?;
    let seed = args.seed.or_now();
    let mut reproduce = std::env::args().collect::<Vec<_>>().join(" ");
    if args.seed.seed.is_none() {
        reproduce.push_str(&format!(" --seed {seed}"));
    }
    let mut req = CompareRequest::new(s, a, b, seed, reproduce);
    req.arches = args.arch.resolve(&s.arches);
    if !args.tests.tests.is_empty() {
        req.tests = Some(args.tests.tests.clone());
    }
    req.budget = args.budget.unwrap_or(req.budget);
    req.duration = args.duration.duration.unwrap_or(req.duration);
    req.alpha = args.alpha.unwrap_or(req.alpha);
    if !(req.alpha > 0.0 && req.alpha < 0.5) {
        return Err(LabError::usage(
            "--alpha",
            format!(
                "{}: use a probability between 0 and 0.5, such as 0.05",
                req.alpha
            ),
        ));
    }
    req.margin_rate = args.margin.unwrap_or(req.margin_rate);
    if !(req.margin_rate > 0.0 && req.margin_rate < 1.0) {
        return Err(LabError::usage(
            "--margin",
            format!(
                "{}: use an absolute failure-rate difference between 0 and 1, such as 0.15",
                req.margin_rate
            ),
        ));
    }
    req.margin_metric = args.metric_margin.unwrap_or(req.margin_metric);
    if !(req.margin_metric > 0.0 && req.margin_metric < 10.0) {
        return Err(LabError::usage(
            "--metric-margin",
            format!(
                "{}: use a relative shift such as 0.10 for 10 %",
                req.margin_metric
            ),
        ));
    }
    if args.max_runs.is_some_and(|m| m < 2) {
        return Err(LabError::usage("--max-runs", "must be at least 2"));
    }
    req.max_runs = args.max_runs;
    req.runs_per_boot = args.runs_per_boot;
    req.metric_spending = args.metric_spending.into();
    req.knobs = args.knobs.pairs();
    req.knobs_a = args.knobs_a.iter().map(|k| k.pair()).collect();
    req.knobs_b = args.knobs_b.iter().map(|k| k.pair()).collect();
    req.config = args.config.clone();
    req.fresh = args.fresh;
    req.stop_on_regression = args.stop_on_regression;
    req.no_amplify = args.no_amplify;
    Ok(req)
}

/// How a finished comparison ends.
fn outcome(report: &CompareReport) -> Outcome {
    match report.overall {
        Overall::Regression => Outcome::Regression,
        Overall::Infra => Outcome::InfraOnly,
        Overall::NoRegression | Overall::NoRegressionInconclusive => Outcome::Pass,
    }
}

/// Prints the report and writes the files asked for, plus a JSON, markdown and HTML copy
/// in the comparison's folder.
fn emit(
    ctx: &Context,
    args: &CompareArgs,
    report: &CompareReport,
    dir: &Path,
) -> Result<(), LabError> {
    // The folder's copies are a convenience: a failure is said, and the comparison stands.
    for e in report::write_folder(report, dir) {
        crate::errln!("lab: {e}");
    }
    for (path, format) in [
        (&args.reports.common.markdown, ReportFormat::Markdown),
        (&args.reports.common.json_out, ReportFormat::Json),
        (&args.reports.junit, ReportFormat::Junit),
        (&args.reports.html, ReportFormat::Html),
    ] {
        if let Some(p) = path {
            report::write(report, format, p)?;
        }
    }
    let stdout = if args.json.json {
        report::render(report, ReportFormat::Json)
    } else {
        report::render(
            report,
            ReportFormat::Terminal {
                color: std::io::stdout().is_terminal(),
            },
        )
    }?;
    crate::out!("{stdout}");
    if !ctx.quiet {
        crate::errln!(
            "lab: reports in {} (report.html, report.md, report.json); `lab results show {}` renders them again",
            dir.display(),
            report.session
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn settings() -> Settings {
        Settings::from_text(Path::new("/lab/lab.toml"), "").expect("defaults")
    }

    fn args(argv: &[&str]) -> CompareArgs {
        let cli =
            crate::cli::Cli::try_parse_from([&["lab", "compare"], argv].concat()).expect("parses");
        match cli.command {
            crate::cli::Command::Compare(a) => a,
            other => panic!("not compare: {other:?}"),
        }
    }

    #[test]
    fn flags_override_the_compare_settings() {
        let s = settings();
        let req = request(
            &s,
            &args(&[
                "base", "x", "--alpha", "0.01", "--tests", "a, b", "--seed", "9",
            ]),
        )
        .expect("valid");
        assert_eq!(req.alpha, 0.01);
        assert_eq!(req.margin_rate, s.compare.margin_rate);
        assert_eq!(req.tests, Some(vec!["a".into(), "b".into()]));
        assert_eq!(req.seed, 9);
        assert!(!req.reproduce.contains("--seed 9"), "{}", req.reproduce);
        assert_eq!(req.a, NamedSide::base());
    }

    #[test]
    fn numbers_out_of_range_name_their_flag() {
        let s = settings();
        for (argv, flag) in [
            (&["base", "base", "--alpha", "2"][..], "--alpha"),
            (&["base", "base", "--margin", "1.5"][..], "--margin"),
            (
                &["base", "base", "--metric-margin", "0"][..],
                "--metric-margin",
            ),
            (&["base", "base", "--max-runs", "1"][..], "--max-runs"),
        ] {
            let err = request(&s, &args(argv)).expect_err("refused");
            assert!(err.to_string().starts_with(flag), "{err}");
            assert_eq!(err.exit_code(), crate::errors::EXIT_USAGE);
        }
    }
}
