//! `lab bisect` and `lab bisect-step`: the flags resolved into a bisection
//! ([`BisectRequest`]) or a checkout to test ([`CheckoutRequest`]), the engine run (the
//! [`crate::bisect::driver`] loop, or one [`crate::bisect::step`]), and what it found shown.
//! Progress goes to stderr through [`BisectProgress`] (shared with `lab gate`, which bisects a
//! failing series); the step log, or the state with `--json`, goes to stdout; the exit code
//! says whether the culprit is known with the confidence asked for.

use std::path::Path;

use super::progress::{basis_lines, BisectProgress};
use super::Context;
use crate::arch::Arch;
use crate::bisect::driver;
use crate::bisect::search::SearchConfig;
use crate::bisect::state::{short, BisectRequest, BisectState};
use crate::bisect::step::{test_checkout, CheckoutRequest, CheckoutVerdict};
use crate::cli::{BisectArgs, BisectStepArgs};
use crate::errors::{BisectError, LabError, Outcome};
use crate::io_error::io;
use crate::kernel::source::KernelDef;

pub async fn run(ctx: &Context, args: &BisectArgs) -> Result<Outcome, LabError> {
    let mut store = driver::open_store(&ctx.settings)?;
    if args.log {
        let (id, state) = driver::load(&store, args.session, false)?
            .ok_or_else(|| LabError::usage("--log", "no bisection in the results store"))?;
        print_log(id, &state, args.json.json);
        return Ok(Outcome::Pass);
    }
    let (session, state) = if args.resume {
        let (id, state) = driver::load(&store, args.session, true)?
            .ok_or_else(|| LabError::usage("--continue", "no unfinished bisection to continue"))?;
        if !ctx.quiet {
            let steps = state.steps.len();
            crate::errln!("lab: continuing bisection {id} ({steps} steps so far)");
        }
        (id, state)
    } else {
        let state = request(ctx, args)?
            .into_state()
            .map_err(BisectError::Setup)?;
        let begun = driver::begin(&mut store, state)?;
        if begun.resumed && !ctx.quiet {
            crate::errln!(
                "lab: the same bisection is unfinished in session {}; continuing it",
                begun.session
            );
        }
        (begun.session, begun.state)
    };
    let progress = BisectProgress::new(ctx.quiet);
    let on = |e| progress.event(e);
    let exec = super::executor(ctx, None)?;
    let state = driver::drive(&ctx.settings, &*exec, session, state, store, &on).await?;
    print_log(session, &state, args.json.json);
    Ok(match &state.conclusion {
        Some(c) if c.confident && state.identical_to_parent != Some(true) => Outcome::Pass,
        _ => Outcome::Regression,
    })
}

/// A new bisection's flags, resolved against the settings.
fn request(ctx: &Context, args: &BisectArgs) -> Result<BisectRequest, LabError> {
    let s = &ctx.settings;
    let test = args
        .test
        .clone()
        .ok_or_else(|| LabError::usage("--test", "name the test that tells good from bad"))?;
    let arch = one_arch(ctx, args.arch.arch)?;
    let space = match (&args.kernel, &args.series) {
        (Some(kernel), None) => {
            let def = KernelDef::find(s, kernel)?;
            let good = args
                .good
                .as_deref()
                .ok_or_else(|| LabError::usage("--good", "a REF is needed with --kernel"))?;
            let bad = args
                .bad
                .as_deref()
                .ok_or_else(|| LabError::usage("--bad", "a REF is needed with --kernel"))?;
            driver::git_space(s, kernel, &def, good, bad)?
        }
        (None, Some(series)) => {
            let space = driver::series_space(s, series)?;
            if space.n() == 0 {
                return Err(LabError::usage("--series", format!("{series}: no patches")));
            }
            space
        }
        _ => {
            return Err(LabError::usage(
                "--kernel/--series",
                "say what to bisect: --kernel DEF --good REF --bad REF, or --series SERIES",
            ))
        }
    };
    if !(0.5..1.0).contains(&args.confidence) {
        return Err(LabError::usage(
            "--confidence",
            format!(
                "{}: use a probability between 0.5 and 1, such as 0.95",
                args.confidence
            ),
        ));
    }
    Ok(BisectRequest {
        space,
        test,
        arch,
        knobs: args.knobs.pairs(),
        under: args
            .patches
            .iter()
            .filter(|p| !p.is_empty())
            .cloned()
            .collect(),
        config: args.config.clone(),
        duration: args.duration.duration.unwrap_or(s.compare.duration),
        match_crash: args.match_crash.clone(),
        seed: args.seed.seed.unwrap_or(1),
        search: SearchConfig {
            confidence: args.confidence,
            max_runs: args.max_runs,
            ..SearchConfig::default()
        },
        confirm: args.confirm,
    })
}

/// `--arch`, or the first arch of lab.toml.
fn one_arch(ctx: &Context, arch: Option<Arch>) -> Result<Arch, LabError> {
    match arch {
        Some(a) => Ok(a),
        None => ctx
            .settings
            .arches
            .first()
            .copied()
            .ok_or_else(|| LabError::usage("--arch", "lab.toml names no arch; give one")),
    }
}

/// The step log and the answer, or the whole state as JSON.
fn print_log(session: i64, state: &BisectState, json: bool) {
    if json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(state).unwrap_or_default()
        );
        return;
    }
    let knobs = if state.knobs.is_empty() {
        "none".to_owned()
    } else {
        let pairs: Vec<String> = state
            .knobs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        pairs.join(",")
    };
    crate::outln!(
        "lab bisect  session {session}  test {}  arch {}  knobs {knobs}",
        state.test,
        state.arch
    );
    crate::outln!(
        "{:>4}  {:>5}  {:<14} {:>5} {:>5}  {:<14} {:>6}  {:>6}  note",
        "step",
        "index",
        "candidate",
        "runs",
        "fail",
        "top after",
        "p(top)",
        "secs"
    );
    let cell = |id: &str| short(id).chars().take(14).collect::<String>();
    for (k, st) in state.steps.iter().enumerate() {
        crate::outln!(
            "{:>4}  {:>5}  {:<14} {:>5} {:>5}  {:<14} {:>6.3}  {:>6.0}  {}",
            k + 1,
            st.index,
            cell(&st.id),
            st.runs,
            st.failures,
            cell(&state.space.describe(st.top.0).0),
            st.top.1,
            st.seconds,
            st.skipped.clone().unwrap_or_default()
        );
    }
    let Some(c) = &state.conclusion else {
        crate::outln!("\nNo conclusion yet (lab bisect --continue picks it up).");
        return;
    };
    let (id, subject) = state.space.describe(c.culprit);
    crate::outln!();
    crate::outln!(
        "{} culprit: {id} \"{subject}\" with probability {:.3} after {} steps and {} runs",
        if state.identical_to_parent == Some(true) {
            "Most likely (NOT credible: its kernel is byte-identical to its parent's)"
        } else if c.confident {
            "First bad"
        } else {
            "Most likely (NOT confident)"
        },
        c.probability,
        c.steps,
        c.runs
    );
    for line in basis_lines(c) {
        crate::outln!("  {line}");
    }
    if let Some((lo, hi)) = c.skipped_range {
        crate::outln!(
            "  only skipped candidates left: the culprit is one of {} .. {}",
            short(&state.space.describe(lo).0),
            short(&state.space.describe(hi).0)
        );
    }
    if let Some((r, p)) = c.runner_up {
        let (id, subject) = state.space.describe(r);
        crate::outln!(
            "  runner-up: {} \"{subject}\" with probability {p:.3}",
            short(&id)
        );
    }
    if let Some(fp) = &state.match_crash {
        let whence = if state.match_crash_given {
            "--match-crash"
        } else {
            "adopted from the bad end"
        };
        crate::outln!("  crash fingerprint bisected: {fp} ({whence})");
    }
    if let Some(c) = &state.confirmation {
        crate::outln!("  {c}");
    }
}

/// `lab bisect-step`: one verdict on the checkout, in `git bisect run`'s exit codes: 0 good,
/// 1 bad, 125 cannot be tested (skip).
pub async fn step(ctx: &Context, args: &BisectStepArgs) -> Outcome {
    match step_inner(ctx, args).await {
        Ok(code) => Outcome::GitBisect(code),
        Err(e) => {
            crate::errln!("lab: bisect-step: {e}");
            // 128 and above stop git bisect: lab itself is broken, not the commit.
            Outcome::GitBisect(128)
        }
    }
}

async fn step_inner(ctx: &Context, args: &BisectStepArgs) -> Result<i32, LabError> {
    let repo = match &args.repo {
        Some(r) => r.clone(),
        None => {
            std::env::current_dir().map_err(io("cannot read the current folder", Path::new(".")))?
        }
    };
    let req = CheckoutRequest {
        repo,
        test: args.test.clone(),
        arch: one_arch(ctx, args.arch.arch)?,
        runs: args.runs,
        knobs: args.knobs.pairs(),
        under: args.stack.patches.clone(),
        config: args.stack.config.clone(),
        duration: args
            .duration
            .duration
            .unwrap_or(ctx.settings.compare.duration),
        match_crash: args.match_crash.clone(),
    };
    let head12 = |head: &str| head.get(..12).unwrap_or(head).to_owned();
    let exec = super::executor(ctx, None)?;
    Ok(match test_checkout(&ctx.settings, &*exec, &req).await? {
        CheckoutVerdict::BuildFailed { head, why } => {
            crate::errln!(
                "lab: bisect-step: {}: build failed, skip: {why}",
                head12(&head)
            );
            125
        }
        CheckoutVerdict::Skip { head, why } => {
            crate::errln!("lab: bisect-step: {}: skip: {why}", head12(&head));
            125
        }
        CheckoutVerdict::Runs {
            head,
            runs,
            failures,
        } => {
            crate::errln!(
                "lab: bisect-step: {}: {failures} of {runs} runs of {} failed: {}",
                head12(&head),
                args.test,
                if failures > 0 { "bad" } else { "good" }
            );
            i32::from(failures > 0)
        }
    })
}
