//! The `lab` binary: parse arguments, set up logging, dispatch, map the outcome to an exit code.

use clap::Parser;

use lab::cli::{Cli, Command};
use lab::commands::{self, Context};
use lab::config::Settings;
use lab::errors::{LabError, Outcome};

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("lab={default},{default}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal; a CI log or a file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        // tracing-subscriber reports a failed write with `eprintln!`, which panics when stderr
        // is a broken pipe: a log line that cannot be written is dropped instead.
        .log_internal_errors(false)
        .without_time()
        .init();
}

async fn dispatch(cli: Cli) -> Result<Outcome, LabError> {
    let mut settings = Settings::discover(cli.lab.as_deref())?;
    if let Some(engine) = &cli.engine {
        settings.engine.kind = engine
            .parse()
            .map_err(|why: String| LabError::usage("--engine", why))?;
    }
    tracing::info!(
        root = %settings.root.display(),
        cache = %settings.cache_dir.display(),
        "settings resolved"
    );
    let target = match &cli.target {
        None => None,
        Some(name) => {
            if cli.engine.as_deref().is_some_and(|e| e != "local") {
                return Err(LabError::usage(
                    "--target",
                    "a board is driven from this host: drop --engine, or --target",
                ));
            }
            match settings.targets.get(name) {
                Some(t) => Some(t.clone()),
                None => {
                    let known: Vec<&str> = settings.targets.keys().map(String::as_str).collect();
                    return Err(LabError::usage(
                        "--target",
                        format!(
                            "{name:?} is not a [target.NAME] of the lab definition{}",
                            if known.is_empty() {
                                " (it has none)".to_owned()
                            } else {
                                format!("; it has {}", known.join(", "))
                            }
                        ),
                    ));
                }
            }
        }
    };
    let ctx = Context {
        settings,
        quiet: cli.quiet,
        target,
    };
    match &cli.command {
        Command::Build(args) => commands::build::run(&ctx, args).await,
        Command::Run(args) => commands::run::run(&ctx, args).await,
        Command::Selftest(args) => commands::selftest::run(&ctx, args).await,
        Command::Cache(cmd) => commands::cache::run(&ctx, cmd),
        Command::Compare(args) => commands::compare::run(&ctx, args).await,
        Command::Calibrate(args) => commands::calibrate::run(&ctx, args).await,
        Command::Results(cmd) => commands::results::run(&ctx, cmd),
        Command::Bisect(args) => commands::bisect::run(&ctx, args).await,
        Command::BisectStep(args) => Ok(commands::bisect::step(&ctx, args).await),
        Command::Gate(args) => commands::gate::run(&ctx, args).await,
        Command::Worker(cmd) => commands::worker::run(&ctx, cmd).await,
        Command::Lava(cmd) => commands::lava::run(&ctx, cmd).await,
    }
}

fn main() {
    // First, while lab has one thread: the warden is forked, and a fork must not race threads.
    lab::process::warden::start();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "lab: error: cannot start the runtime: {e}"
            );
            std::process::exit(3);
        }
    };
    runtime.block_on(lab_main());
}

async fn lab_main() {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    lab::process::install_interrupt_handler();
    let result = dispatch(cli).await;
    if let Some(code) = lab::process::interrupted() {
        // Whatever failed, failed because its children were stopped. The handler is tearing
        // them down and exits with this code; give it the time it needs.
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        std::process::exit(code);
    }
    let code = match result {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            report_error(&e);
            e.exit_code()
        }
    };
    std::process::exit(code);
}

/// Prints the error and its causes, one "caused by" line each. A cause whose text the lines
/// above already hold (a wrapper that shows its source inline) is not repeated. Written with
/// `writeln!`, not `eprintln!`: a closed or full stderr must not turn an error into a panic.
fn report_error(e: &LabError) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let mut shown = e.to_string();
    let _ = writeln!(err, "lab: error: {shown}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !shown.contains(&text) {
            let _ = writeln!(err, "  caused by: {text}");
            shown.push('\n');
            shown.push_str(&text);
        }
        source = s.source();
    }
}
