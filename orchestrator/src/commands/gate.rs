//! `lab gate`: turn the flags into a [`GateRequest`], run the gate's pipeline
//! ([`crate::gate::pipeline`]) with its progress on stderr, then render the verdict: the
//! matrix (or JSON) on stdout, the markdown and JSON files asked for, a copy of both in the
//! cache for the cover letter, and the exit code. With `--b4`, one patch mail on stdin and
//! b4's check list on stdout.

use std::io::{IsTerminal, Read};
use std::path::Path;

use super::progress::{BisectProgress, SessionProgress};
use super::Context;
use crate::cli::{GateArgs, SeedArg};
use crate::errors::{GateError, LabError, Outcome};
use crate::gate::b4;
use crate::gate::pipeline::{self, GateEvent, GateRequest, MailRequest};
use crate::gate::report::{self as gate_report, GateReport, GateVerdict};
use crate::gate::series::SeriesSpec;
use crate::io_error::io;

pub async fn run(ctx: &Context, args: &GateArgs) -> Result<Outcome, LabError> {
    if args.b4 {
        return b4_check(ctx, args).await;
    }
    let s = &ctx.settings;
    let series = match range(args) {
        Some(range) => range,
        None => SeriesSpec::Named(args.series.clone().ok_or_else(|| {
            LabError::usage(
                "SERIES",
                "name a series: a directory of patches, an mbox, a set name, or --kernel DEF --range BASE..TIP",
            )
        })?),
    };
    let req = GateRequest {
        series,
        arches: args.arch.resolve(&s.arches),
        budget: args.budget,
        runtime: !args.no_runtime,
        knobs: args.knobs.pairs(),
        tests: (!args.tests.tests.is_empty()).then(|| args.tests.tests.clone()),
        seed: SeedArg::default().or_now(),
        reproduce: std::env::args().collect::<Vec<_>>().join(" "),
        no_amplify: args.no_amplify,
    };
    let progress = GateProgress {
        quiet: ctx.quiet,
        session: SessionProgress::new(ctx.quiet),
        bisect: BisectProgress::new(ctx.quiet),
    };
    let on = |e| progress.event(e);
    let exec = super::executor(ctx, None)?;
    let report = pipeline::run(s, &*exec, &req, &on).await?;
    finish(ctx, args, &report)
}

/// `--kernel DEF --range BASE..TIP`, which clap only takes together.
fn range(args: &GateArgs) -> Option<SeriesSpec> {
    match (&args.kernel, &args.range) {
        (Some(kernel), Some(range)) => Some(SeriesSpec::Range {
            kernel: kernel.clone(),
            range: range.clone(),
        }),
        _ => None,
    }
}

/// The gate's lines on stderr; the comparison's own lines as `lab compare` shows them.
struct GateProgress {
    quiet: bool,
    session: SessionProgress,
    bisect: BisectProgress,
}

impl GateProgress {
    fn event(&self, e: GateEvent) {
        match e {
            GateEvent::Compare(e) => self.session.event(e),
            GateEvent::Bisect(e) => self.bisect.event(e),
            GateEvent::ReportNotWritten(e) => crate::errln!("lab: {e}"),
            _ if self.quiet => {}
            GateEvent::Started {
                series,
                patches,
                kernel,
                arches,
            } => crate::errln!(
                "lab: gating {series} ({patches} patches) on {kernel} for {}",
                arches
                    .iter()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            GateEvent::Patch { index, subject } => {
                crate::errln!("lab: gate: patch {index}: {subject}");
            }
        }
    }
}

/// Prints the verdict, writes the files, and maps the verdict to an exit code.
fn finish(ctx: &Context, args: &GateArgs, report: &GateReport) -> Result<Outcome, LabError> {
    let write = |path: &Path, text: String| -> Result<(), LabError> {
        Ok(std::fs::write(path, text).map_err(io("cannot write", path))?)
    };
    if let Some(p) = &args.reports.markdown {
        write(p, gate_report::markdown(report))?;
    }
    if let Some(p) = &args.reports.json_out {
        write(p, gate_report::json(report))?;
    }
    // The cache's copies are a convenience for the cover letter; the verdict stands without.
    let dir = ctx.settings.cache_dir.join("gate");
    let _ = std::fs::create_dir_all(&dir);
    let stamp = format!("{}", std::process::id());
    let md_path = dir.join(format!("gate-{stamp}.md"));
    let _ = std::fs::write(&md_path, gate_report::markdown(report));
    let _ = std::fs::write(
        dir.join(format!("gate-{stamp}.json")),
        gate_report::json(report),
    );
    if args.json.json {
        crate::outln!("{}", gate_report::json(report));
    } else {
        crate::out!(
            "{}",
            gate_report::terminal(report, std::io::stdout().is_terminal())
        );
    }
    if !ctx.quiet {
        crate::errln!("lab: cover-letter markdown in {}", md_path.display());
    }
    Ok(match report.verdict {
        GateVerdict::Pass => Outcome::Pass,
        GateVerdict::Fail => Outcome::Regression,
        GateVerdict::Infra => Outcome::InfraOnly,
    })
}

/// b4 mode: one patch email on stdin; every check as a b4 CI-check result on stdout.
async fn b4_check(ctx: &Context, args: &GateArgs) -> Result<Outcome, LabError> {
    let mut mail = Vec::new();
    std::io::stdin()
        .read_to_end(&mut mail)
        .map_err(GateError::Stdin)?;
    let req = MailRequest {
        mail,
        arches: args.arch.resolve(&ctx.settings.arches),
        series: range(args),
    };
    // b4 reads stdout; the per-patch lines would only be noise on its stderr.
    let exec = super::executor(ctx, None)?;
    let results = pipeline::check_mail(&ctx.settings, &*exec, &req, &|_| {}).await?;
    if args.b4_lines {
        crate::out!("{}", b4::to_prep_lines(&results));
    } else {
        crate::outln!("{}", b4::to_json(&results));
    }
    Ok(Outcome::Pass)
}
