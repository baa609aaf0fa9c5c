//! Command-line arguments, as clap types only: the verbs' argument structs here, the flag
//! groups they share in `flags`, their long help in `help`. Resolved into requests by
//! `commands/`; nothing else reads argv.

pub mod flags;
pub mod help;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use flags::{parse_knob, parse_positive_duration};
pub use flags::{
    ArchChoice, ArchesArg, CompareReportFiles, DurationArg, JsonArg, KernelSelect, KnobArgs,
    OneArchArg, ReportFiles, SeedArg, StackArgs, TestsArg,
};
use help::*;

#[derive(Debug, Parser)]
#[command(name = "lab", version, about = "A QEMU-based kernel patch regression lab for PREEMPT_RT developers", after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// The lab definition (default: lab.toml in this folder or the nearest parent).
    #[arg(long, global = true, env = "LAB_TOML", value_name = "FILE")]
    pub lab: Option<PathBuf>,
    /// More log output (-v info, -vv debug); LAB_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors and results.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Where builds and boots happen: local (this host) or slurm (jobs on the cluster that
    /// SLURM_CONF names); default: [engine] kind in the lab definition.
    #[arg(long, global = true, env = "LAB_ENGINE", value_name = "ENGINE", value_parser = ["local", "slurm"])]
    pub engine: Option<String>,
    /// Boot on this board instead: a `[target.NAME]` of the lab definition, driven over
    /// SSH, its kernels installed by the target's install hook, one run at a time.
    #[arg(long, global = true, env = "LAB_TARGET", value_name = "NAME")]
    pub target: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build kernels: pinned source, patches, verified config, cached by content.
    #[command(after_help = BUILD_EXAMPLES)]
    Build(BuildArgs),
    /// Boot kernels in QEMU, run the guest tests over SSH, catch kernel crashes.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// The positive-control matrix: every guest test is shown to fail on a known-bad kernel.
    #[command(after_help = SELFTEST_EXAMPLES)]
    Selftest(SelftestArgs),
    /// List, show and prune the kernel artifact cache.
    #[command(subcommand, after_help = CACHE_EXAMPLES)]
    Cache(CacheCommand),
    /// Do two kernels or patch sets behave differently? Interleaved runs, sequential
    /// statistics with stated error rates, and reports.
    #[command(after_help = COMPARE_EXAMPLES)]
    Compare(CompareArgs),
    /// How much does each metric vary between boots and within a boot? An A/A comparison (or
    /// a stored one), kept in the cache for `lab compare` to plan with.
    #[command(after_help = CALIBRATE_EXAMPLES)]
    Calibrate(CalibrateArgs),
    /// List, show and export what the results store holds.
    #[command(subcommand, after_help = RESULTS_EXAMPLES)]
    Results(ResultsCommand),
    /// Which commit, or which patch of a series, broke a test? Noise-aware bisection.
    #[command(after_help = BISECT_EXAMPLES)]
    Bisect(BisectArgs),
    /// One step for `git bisect run`: build the checkout, run the test, exit 0/1/125.
    #[command(name = "bisect-step", after_help = BISECT_STEP_EXAMPLES)]
    BisectStep(BisectStepArgs),
    /// Is this series fit to post? checkpatch, apply, build both arches per patch, new
    /// warnings, then compare the tip against base and bisect a regression.
    #[command(after_help = GATE_EXAMPLES)]
    Gate(GateArgs),
    /// A cluster node's half of `--engine slurm`: make the runs or the build a job file
    /// describes, leaving results where the controller reads them. Jobs run it; people don't.
    #[command(subcommand, after_help = WORKER_EXAMPLES)]
    Worker(WorkerCommand),
    /// Boards in a LAVA lab: write a job that boots a lab kernel and runs lab's tests, and
    /// read its log back into the results store.
    #[command(subcommand, after_help = LAVA_EXAMPLES)]
    Lava(LavaCommand),
}

#[derive(Debug, Subcommand)]
pub enum LavaCommand {
    /// Build the kernel and guest image, and write a LAVA job definition that deploys them
    /// by URL and sha256, boots them, and runs the tests with lab's console markers.
    Job(LavaJobArgs),
    /// Read a LAVA job's log (lava-run's standard error, or `lavacli jobs logs --raw`) into
    /// the results store, with the device as the run's host.
    Ingest(LavaIngestArgs),
}

#[derive(Debug, Args)]
pub struct LavaJobArgs {
    #[command(flatten)]
    pub select: KernelSelect,
    /// Guest tests to run (default: the suite in lab.toml); repeat or comma-separate.
    #[command(flatten)]
    pub tests: TestsArg,
    /// Times to run each test.
    #[arg(long, default_value_t = 1)]
    pub iterations: u32,
    #[command(flatten)]
    pub duration: DurationArg,
    #[command(flatten)]
    pub seed: SeedArg,
    /// The LAVA device type the job asks for; `qemu` boots the kernel in LAVA's QEMU.
    #[arg(long, default_value = "qemu", value_name = "TYPE")]
    pub device_type: String,
    /// Where the LAVA dispatcher fetches artifacts: a URL that serves lab's cache folder
    /// (artifacts/ and images/ under it). Default: file:// of the cache, for a dispatcher
    /// on this host.
    #[arg(long, value_name = "URL")]
    pub url_base: Option<String>,
    /// Write the job definition here (default: standard output).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LavaIngestArgs {
    /// The job definition `lab lava job` wrote.
    pub job: PathBuf,
    /// The job's log.
    pub log: PathBuf,
    /// The device that ran it: the run's host in the store.
    #[arg(long, value_name = "NAME")]
    pub device: String,
    /// LAVA's id of the job.
    #[arg(long, value_name = "ID")]
    pub job_id: Option<String>,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Make the runs of one host group (a job array task's file), in order, on this node.
    Run {
        /// The group's job file, written by the controller.
        file: PathBuf,
    },
    /// Build one kernel request into the shared cache.
    Build {
        /// The build's job file, written by the controller.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub select: KernelSelect,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub select: KernelSelect,
    /// Guest tests to run (default: the suite in lab.toml); repeat or comma-separate.
    #[command(flatten)]
    pub tests: TestsArg,
    /// Times to run each test.
    #[arg(long, default_value_t = 1)]
    pub iterations: u32,
    #[command(flatten)]
    pub duration: DurationArg,
    #[command(flatten)]
    pub knobs: KnobArgs,
    /// Guests to run at once (kept within the cores and memory available).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    #[command(flatten)]
    pub seed: SeedArg,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Args)]
pub struct SelftestArgs {
    #[command(flatten)]
    pub arch: ArchesArg,
    /// Runs of each test on each row.
    #[arg(long, default_value_t = 1)]
    pub iterations: u32,
    #[command(flatten)]
    pub duration: DurationArg,
    /// Only rows whose label contains this text.
    #[arg(long, value_name = "TEXT")]
    pub row: Vec<String>,
    /// Leave out rows whose label contains this text (applied after --row).
    #[arg(long, value_name = "TEXT")]
    pub skip_row: Vec<String>,
    #[command(flatten)]
    pub seed: SeedArg,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List cached kernels, newest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one cached kernel's manifest.
    Show {
        /// A key or a unique prefix of at least 6 characters.
        key: String,
    },
    /// Remove cached kernels, or with --runs the run folders (boot logs and keys; the
    /// reports and the results store stay).
    Prune {
        /// Prune the run folders under runs/ instead of kernels. Folders of sessions still
        /// open (a comparison the same command would resume, or one running) are kept.
        #[arg(long)]
        runs: bool,
        /// Keep the newest N entries.
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Remove entries older than this (e.g. 14d, 12h, 90m).
        #[arg(long, value_name = "AGE")]
        older_than: Option<String>,
        /// Remove every entry.
        #[arg(long)]
        all: bool,
    },
}

/// A spending function, as `--metric-spending` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SpendingArg {
    Pocock,
    ObrienFleming,
}

impl From<SpendingArg> for crate::stats::Spending {
    fn from(s: SpendingArg) -> Self {
        match s {
            SpendingArg::Pocock => crate::stats::Spending::Pocock,
            SpendingArg::ObrienFleming => crate::stats::Spending::OBrienFleming,
        }
    }
}

/// Arguments of `lab compare`.
#[derive(Debug, Args, Clone)]
pub struct CompareArgs {
    /// The baseline: `base`, patch sets (`a,b`), a kernel definition, or `key:PREFIX`.
    pub a: String,
    /// The candidate, in the same forms.
    pub b: String,
    #[command(flatten)]
    pub arch: ArchesArg,
    /// Tests to compare (default: `exercises` of the sets' expect.toml, else `[compare] tests`).
    #[command(flatten)]
    pub tests: TestsArg,
    /// Wall-time budget, e.g. `8m`; default: `[compare] budget`.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub budget: Option<Duration>,
    /// Family-wise probability of a false "different" across all questions.
    #[arg(long, value_name = "P")]
    pub alpha: Option<f64>,
    /// "No difference" margin for failure rates: B's boots fail at most this much more
    /// often than A's (absolute, one-sided, e.g. 0.1).
    #[arg(long, value_name = "DIFF")]
    pub margin: Option<f64>,
    /// Equivalence margin for metrics (relative, e.g. 0.10 for 10 %).
    #[arg(long, value_name = "RATIO")]
    pub metric_margin: Option<f64>,
    /// Cap on boots per side (one per batch; the design's horizon); default: from the budget.
    #[arg(long, value_name = "N")]
    pub max_runs: Option<u64>,
    /// Runs of each test in one boot; default: what A's calibration (`lab calibrate`)
    /// found best for the primary metrics, else `[compare] batch-runs`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub runs_per_boot: Option<u32>,
    /// Error spending of the metric questions: `pocock` stops early on large shifts;
    /// `obrien-fleming` keeps nearly all of α for the last look, for latency questions the
    /// budget will end. Failure rates always use Pocock.
    #[arg(long, value_name = "FUNCTION", default_value = "pocock")]
    pub metric_spending: SpendingArg,
    #[command(flatten)]
    pub duration: DurationArg,
    #[command(flatten)]
    pub knobs: KnobArgs,
    /// Runtime knob for side A only, on top of --knob (NAME=VALUE, repeatable).
    #[arg(long = "knob-a", value_name = "NAME=VALUE", value_parser = parse_knob)]
    pub knobs_a: Vec<crate::config::Knob>,
    /// Runtime knob for side B only, on top of --knob: e.g. the same kernel with a delay
    /// knob against itself without it, a knob-driven positive control.
    #[arg(long = "knob-b", value_name = "NAME=VALUE", value_parser = parse_knob)]
    pub knobs_b: Vec<crate::config::Knob>,
    /// Extra config fragments for both sides.
    #[arg(long = "config", value_name = "FRAGMENT")]
    pub config: Vec<String>,
    /// Guests at once; default: as many as fit without overcommitting vCPUs (host cores /
    /// vm.cpus), since contended guests measure the contention.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Start a new comparison even if an interrupted one of the same kernels, tests and
    /// design could be resumed. (Runs of other comparisons are never reused.)
    #[arg(long)]
    pub fresh: bool,
    /// Do not stack race amplifiers under both sides: neither the test map's, for a plain
    /// patch (see guest-tests/test-map.toml), nor those a known-bad set requires (its
    /// expect.toml) when no side names them.
    #[arg(long)]
    pub no_amplify: bool,
    /// Print the tests this comparison would run and why, and the amplifiers it would
    /// stack, then exit without building anything.
    #[arg(long)]
    pub plan: bool,
    /// Stop at the first regression (the other questions end inconclusive): enough for a
    /// pass/fail answer, as `lab gate` asks.
    #[arg(long)]
    pub stop_on_regression: bool,
    #[command(flatten)]
    pub seed: SeedArg,
    /// Print the report as JSON on stdout instead of the table.
    #[command(flatten)]
    pub json: JsonArg,
    #[command(flatten)]
    pub reports: CompareReportFiles,
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// The kernel to compare with itself: `base`, patch sets, a kernel definition, or
    /// `key:PREFIX`.
    #[arg(default_value = "base")]
    pub kernel: String,
    #[command(flatten)]
    pub arch: ArchesArg,
    #[command(flatten)]
    pub tests: TestsArg,
    /// Wall-time budget of the A/A comparison; default: `[compare] budget`.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub budget: Option<Duration>,
    /// Calibrate from this stored comparison session's runs instead of running one.
    #[arg(long, value_name = "ID")]
    pub session: Option<i64>,
    #[command(flatten)]
    pub seed: SeedArg,
}

/// `lab results ...`
#[derive(Debug, Subcommand)]
pub enum ResultsCommand {
    /// Recent comparisons (sessions) and runs.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One comparison, re-rendered from the store.
    Show {
        session: i64,
        /// terminal, markdown, json, junit or html
        #[arg(long, default_value = "terminal")]
        format: String,
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Stored runs, optionally of one kernel key (prefix).
    Runs {
        #[arg(long, value_name = "KEY")]
        kernel: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Everything in the store as JSON lines (sessions, runs, outcomes, metrics, crashes).
    Export {
        #[arg(long, default_value = "json")]
        format: String,
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Arguments of `lab bisect`.
#[derive(Debug, Args, Clone)]
pub struct BisectArgs {
    /// A git kernel definition (kernels/NAME.toml or a path).
    #[arg(long, value_name = "DEF", conflicts_with = "series")]
    pub kernel: Option<String>,
    /// The known-good ref.
    #[arg(long, value_name = "REF", requires = "kernel")]
    pub good: Option<String>,
    /// The known-bad ref.
    #[arg(long, value_name = "REF", requires = "kernel")]
    pub bad: Option<String>,
    /// Bisect inside a patch series (a set name, directory, mbox or series file) on the lab's kernel.
    #[arg(long, value_name = "SERIES")]
    pub series: Option<String>,
    /// Patch sets applied under every step (amplifiers), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "NAME[,NAME...]")]
    pub patches: Vec<String>,
    /// The test that tells good from bad.
    #[arg(long, alias = "tests", value_name = "NAME")]
    pub test: Option<String>,
    #[command(flatten)]
    pub arch: OneArchArg,
    #[command(flatten)]
    pub knobs: KnobArgs,
    /// Extra config fragments.
    #[arg(long = "config", value_name = "FRAGMENT")]
    pub config: Vec<String>,
    /// Stop when the top candidate holds this probability.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Only this crash fingerprint (id or full) counts as bad; another crash is a skip
    /// (default: the fingerprint of the bad end's first crash, if it crashes).
    #[arg(long, value_name = "FINGERPRINT")]
    pub match_crash: Option<String>,
    /// Confirm the culprit: revert it on top of bad and check the failure goes away.
    #[arg(long)]
    pub confirm: bool,
    #[command(flatten)]
    pub duration: DurationArg,
    /// Give up after this many runs in all.
    #[arg(long, default_value_t = 600)]
    pub max_runs: u64,
    #[command(flatten)]
    pub seed: SeedArg,
    /// Resume the latest unfinished bisection.
    #[arg(long = "continue")]
    pub resume: bool,
    /// Show the steps of the latest bisection (or --session N) and exit.
    #[arg(long)]
    pub log: bool,
    #[arg(long)]
    pub session: Option<i64>,
    #[command(flatten)]
    pub json: JsonArg,
}

/// Arguments of `lab bisect-step`.
#[derive(Debug, Args, Clone)]
pub struct BisectStepArgs {
    /// The test that tells good from bad.
    #[arg(long, alias = "tests", value_name = "NAME")]
    pub test: String,
    #[arg(long, default_value_t = 8)]
    pub runs: u32,
    /// The git checkout to build (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    #[command(flatten)]
    pub arch: OneArchArg,
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub knobs: KnobArgs,
    #[arg(long, value_name = "FINGERPRINT")]
    pub match_crash: Option<String>,
    #[command(flatten)]
    pub duration: DurationArg,
}

/// Arguments of `lab gate`.
#[derive(Debug, Args, Clone)]
pub struct GateArgs {
    /// The series: a directory of .patch files, a series file's folder, an mbox, or a set name.
    pub series: Option<String>,
    /// With --range: a git kernel definition whose commits are the series.
    #[arg(long, value_name = "DEF", requires = "range")]
    pub kernel: Option<String>,
    /// With --kernel: the commits BASE..TIP (BASE is the kernel the series applies to).
    #[arg(long, value_name = "BASE..TIP", requires = "kernel")]
    pub range: Option<String>,
    #[command(flatten)]
    pub arch: ArchesArg,
    /// Wall-time budget of the runtime comparison.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_positive_duration)]
    pub budget: Duration,
    /// Skip the runtime comparison.
    #[arg(long)]
    pub no_runtime: bool,
    /// Do not stack the test map's race amplifiers under the runtime comparison and the
    /// bisection of its regression (as `lab compare --no-amplify`).
    #[arg(long)]
    pub no_amplify: bool,
    /// b4 CI-check mode: one patch email on stdin, b4's JSON check list on stdout.
    #[arg(long)]
    pub b4: bool,
    /// In b4 mode, also run the runtime comparison (slow).
    #[arg(long)]
    pub runtime: bool,
    /// In b4 mode, print plain `ERROR:`/`WARNING:` lines (what `b4 prep --check` reads)
    /// instead of the JSON list (what `b4 review`'s check commands read).
    #[arg(long)]
    pub b4_lines: bool,
    #[command(flatten)]
    pub knobs: KnobArgs,
    /// Tests of the runtime comparison (default: what the series exercises, else the suite).
    #[command(flatten)]
    pub tests: TestsArg,
    /// Print the report as JSON on stdout.
    #[command(flatten)]
    pub json: JsonArg,
    #[command(flatten)]
    pub reports: ReportFiles,
}
