//! Command-line arguments, as clap types. Resolved into settings by `commands/`; nothing else
//! reads argv.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const EXIT_CODES_HELP: &str = "Exit codes: 0 success; 1 regression found or gate failed; 2 usage or configuration error (bad arguments, malformed lab.toml, a patch that does not apply, a dropped config option, a missing toolchain); 3 infrastructure failure (build, boot, transport).";

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
}

const BUILD_EXAMPLES: &str = "Examples:
  lab build                                   base kernels for the arches in lab.toml
  lab build --arch x86_64 --patches futex-lockless-wakeup-revert
  lab build --arch all --patches futex-race-amplifiers,bad-futex-no-spurious-retry
  lab build --arch arm64 --config lockdep     add configs/lockdep.config
  lab build --kernel kernels/my-tree.toml --json

Exit codes: 0 built (or cache hit); 2 bad input (unknown arch, patch does not apply, config option dropped, missing toolchain, malformed lab.toml); 3 the build itself failed.";

const RUN_EXAMPLES: &str = "Examples:
  lab run --arch all                          base kernels, the whole suite, once
  lab run --arch x86_64 --test futex_errno --iterations 20 --duration 2s
  lab run --arch x86_64 --patches futex-race-amplifiers,bad-futex-no-spurious-retry \\
          --test futex_errno --knob futex_amp_spurious_wake_us=200
  lab run --arch arm64 --jobs 2 --iterations 4

Outcomes: pass, fail (the test saw the kernel misbehave), kernel-crash (a report on the console, with its fingerprint), hang (guest watchdog or host deadline), infra-error (the lab could not run the test; never a test failure).
Exit codes: 0 all passed; 1 a test failed, crashed or hung; 2 bad input; 3 infrastructure failure only.";

const SELFTEST_EXAMPLES: &str = "Rows come from patches/*/expect.toml: base (every test passes), each candidate (every test passes), each debug set with its amplifier knobs on (no false alarm), each known-bad set on top of its amplifiers (its must-fail tests fail).

Examples:
  lab selftest --arch x86_64
  lab selftest --arch all --iterations 3
  lab selftest --arch x86_64 --row bad-futex

Exit codes: 0 the matrix came out as expected; 1 a cell mismatched; 2 bad input; 3 infrastructure failure.";

const COMPARE_EXAMPLES: &str = "A and B are each `base`, patch-set names stacked with commas (amplifier sets first), a kernel definition (kernels/NAME.toml or a path), or `key:PREFIX` for a stored build.

Examples:
  lab compare base futex-lockless-wakeup-revert            every arch in lab.toml, the suite
  lab compare base bad-futex-no-spurious-retry --arch x86_64 --tests futex_errno
  lab compare futex-race-amplifiers futex-race-amplifiers,bad-futex-no-spurious-retry \\
          --knob futex_amp_spurious_wake_us=200 --tests futex_errno
  lab compare base base --budget 5m                        an A/A check of the lab itself
  lab compare base sched-wait-abort-exclusive-wait --html report.html --markdown cover.md

Verdicts per test, arch and metric: regression, improvement, no difference (within the stated margin), inconclusive (with the runs it would likely need). A kernel crash on either side is a regression at once.
Exit codes: 0 no regression; 1 a regression; 2 bad input; 3 infrastructure failure before any verdict.";

const BISECT_EXAMPLES: &str = "Examples:
  lab bisect --kernel kernels/mytree.toml --good v6.12 --bad HEAD --test futex_errno --arch x86_64
  lab bisect --kernel /tmp/hist/synthetic-6.12.toml --good <sha> --bad main --test pipe_excl \\
             --knob wq_amp_fake_signal_pct=100
  lab bisect --series patches/my-series --test futex_errno     first bad patch of a series
  lab bisect --continue                                         resume the interrupted bisection
  lab bisect --log                                              the steps of the latest bisection

lab keeps a probability for every candidate commit, updates it from every run (the test's detection rate is estimated at the bad end), picks the next commit and how many runs it gets by expected information, and stops when one commit holds --confidence. A build or boot failure, or a crash with another fingerprint than the bad end's (or --match-crash), is a skip, never bad.
Exit codes: 0 culprit found with the requested confidence; 1 finished without reaching it; 2 bad input; 3 infrastructure failure.";

const BISECT_STEP_EXAMPLES: &str = "Examples:
  git bisect start BAD GOOD
  git bisect run lab bisect-step --test futex_errno --runs 8 --arch x86_64

Builds the checkout in the current directory (its HEAD) with the lab's configs, boots it and runs the test --runs times.
Exit codes (git bisect run's): 0 every run passed (good); 1 a run failed (bad); 125 build or boot failure, or a crash with another fingerprint (skip); 128 lab itself could not work (git bisect stops).";

const GATE_EXAMPLES: &str = "Examples:
  lab gate patches/futex-lockless-wakeup-revert          a directory of .patch files (or a series file)
  lab gate my-series.mbox --arch x86_64 --budget 3m
  lab gate --kernel kernels/mytree.toml --range v6.12..my-branch
  lab gate my-series --markdown cover-letter-checks.md
  b4 prep --check  (with b4.prep-perpatch-check-cmd = lab gate --b4; see README)

Per patch, in order: checkpatch.pl (errors fail, warnings are reported), the patch applies, it builds on every arch with the lab's PREEMPT_RT configs (incrementally: the series is bisectable), and no new compiler warnings in the files it touches. Then, if all of that passed, the tip is compared against base with lab compare; if it regresses, lab bisects inside the series to name the patch.
Exit codes: 0 the gate passed; 1 the gate failed; 2 bad input; 3 infrastructure failure.";

const RESULTS_EXAMPLES: &str = "Examples:
  lab results list                      recent comparisons and runs
  lab results show 12                   one comparison, re-rendered from the store
  lab results show 12 --format markdown
  lab results export --format json > all.json
  lab results runs --kernel 3f2a9c      stored runs of one kernel key";

const CACHE_EXAMPLES: &str = "Examples:
  lab cache list
  lab cache show 3f2a9c
  lab cache prune --keep 20
  lab cache prune --older-than 14d";

#[derive(Debug, Args, Clone, Default)]
pub struct KernelSelect {
    /// Architectures: x86_64, arm64 or all; comma-separated or repeated (default: lab.toml).
    #[arg(long, value_name = "ARCH")]
    pub arch: Vec<String>,
    /// Patch sets to stack in order: names under patches/, or paths to a folder, .patch or mbox.
    #[arg(long, value_delimiter = ',', value_name = "NAME[,NAME...]")]
    pub patches: Vec<String>,
    /// Extra config fragments from configs/, after the ones in lab.toml (e.g. lockdep, kasan).
    #[arg(long = "config", value_name = "FRAGMENT")]
    pub config: Vec<String>,
    /// Kernel definition: a name in kernels/ or a path to one (default: lab.toml's kernel).
    #[arg(long, value_name = "DEF")]
    pub kernel: Option<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub select: KernelSelect,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub select: KernelSelect,
    /// Guest tests to run (default: the suite in lab.toml); repeat or comma-separate.
    #[arg(long, value_name = "NAME")]
    pub test: Vec<String>,
    /// Times to run each test.
    #[arg(long, default_value_t = 1)]
    pub iterations: u32,
    /// How long each test drives its workload (default: tests.duration in lab.toml).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Run-time kernel knob for the tests, written under /sys/module/kernel/parameters/.
    #[arg(long, value_name = "NAME=VALUE")]
    pub knob: Vec<String>,
    /// Guests to run at once (kept within the cores and memory available).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Seed for every test (default: the time); printed in the run manifest.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// Architectures: x86_64, arm64 or all (default: lab.toml).
    #[arg(long, value_name = "ARCH")]
    pub arch: Vec<String>,
    /// Runs of each test on each row.
    #[arg(long, default_value_t = 1)]
    pub iterations: u32,
    /// How long each test runs (default: tests.duration in lab.toml).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Only rows whose label contains this text.
    #[arg(long, value_name = "TEXT")]
    pub row: Vec<String>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub json: bool,
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
    /// Remove cached kernels.
    Prune {
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

/// Arguments of `lab compare`.
#[derive(Debug, Args, Clone)]
pub struct CompareArgs {
    /// The baseline: `base`, patch sets (`a,b`), a kernel definition, or `key:PREFIX`.
    pub a: String,
    /// The candidate, in the same forms.
    pub b: String,
    /// Architectures (`x86_64`, `arm64`, `all`); default: the lab's.
    #[arg(long, value_name = "ARCH")]
    pub arch: Vec<String>,
    /// Tests to compare, comma-separated; default: `[compare] tests` of lab.toml.
    #[arg(long, value_delimiter = ',', value_name = "NAME[,NAME...]")]
    pub tests: Vec<String>,
    /// Wall-time budget, e.g. `8m`; default: `[compare] budget`.
    #[arg(long, value_name = "DURATION")]
    pub budget: Option<String>,
    /// Family-wise probability of a false "different" across all questions.
    #[arg(long, value_name = "P")]
    pub alpha: Option<f64>,
    /// Equivalence margin for failure rates (absolute, e.g. 0.15).
    #[arg(long, value_name = "DIFF")]
    pub margin: Option<f64>,
    /// Equivalence margin for metrics (relative, e.g. 0.10 for 10 %).
    #[arg(long, value_name = "RATIO")]
    pub metric_margin: Option<f64>,
    /// Cap on runs per test and side (the design's maximum); default: from the budget.
    #[arg(long, value_name = "N")]
    pub max_runs: Option<u64>,
    /// Per-iteration test duration; default: `[compare] duration`.
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Runtime knobs for both sides (`name=value`, /sys/module/kernel/parameters/NAME).
    #[arg(long, value_name = "NAME=VALUE")]
    pub knob: Vec<String>,
    /// Extra config fragments for both sides.
    #[arg(long = "config", value_name = "FRAGMENT")]
    pub config: Vec<String>,
    /// Guests at once; default: as many as fit without overcommitting vCPUs (host cores /
    /// vm.cpus), since contended guests measure the contention.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Do not reuse stored runs of the same kernels and test binaries.
    #[arg(long)]
    pub fresh: bool,
    /// Stop at the first regression (the other questions end inconclusive): enough for a
    /// pass/fail answer, as `lab gate` asks.
    #[arg(long)]
    pub stop_on_regression: bool,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as markdown, JSON, JUnit XML or HTML.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    #[arg(long = "json-out", value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
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
    #[arg(long, value_name = "NAME")]
    pub test: Option<String>,
    /// One arch (default: the first of lab.toml).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Runtime knobs (`name=value`).
    #[arg(long, value_name = "NAME=VALUE")]
    pub knob: Vec<String>,
    /// Extra config fragments.
    #[arg(long = "config", value_name = "FRAGMENT")]
    pub config: Vec<String>,
    /// Stop when the top candidate holds this probability.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Only this crash fingerprint (id or full) counts as bad; another crash is a skip.
    #[arg(long, value_name = "FINGERPRINT")]
    pub match_crash: Option<String>,
    /// Confirm the culprit: revert it on top of bad and check the failure goes away.
    #[arg(long)]
    pub confirm: bool,
    /// Per-run test duration (default: [compare] duration).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Give up after this many runs in all.
    #[arg(long, default_value_t = 400)]
    pub max_runs: u64,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Resume the latest unfinished bisection.
    #[arg(long = "continue")]
    pub resume: bool,
    /// Show the steps of the latest bisection (or --session N) and exit.
    #[arg(long)]
    pub log: bool,
    #[arg(long)]
    pub session: Option<i64>,
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `lab bisect-step`.
#[derive(Debug, Args, Clone)]
pub struct BisectStepArgs {
    #[arg(long, value_name = "NAME")]
    pub test: String,
    #[arg(long, default_value_t = 8)]
    pub runs: u32,
    /// The git checkout to build (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    #[arg(long, value_delimiter = ',', value_name = "NAME[,NAME...]")]
    pub patches: Vec<String>,
    #[arg(long, value_name = "NAME=VALUE")]
    pub knob: Vec<String>,
    #[arg(long = "config", value_name = "FRAGMENT")]
    pub config: Vec<String>,
    #[arg(long, value_name = "FINGERPRINT")]
    pub match_crash: Option<String>,
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
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
    /// Architectures (default: the lab's).
    #[arg(long, value_name = "ARCH")]
    pub arch: Vec<String>,
    /// Wall-time budget of the runtime comparison.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub budget: String,
    /// Skip the runtime comparison.
    #[arg(long)]
    pub no_runtime: bool,
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
    /// Runtime knobs for the comparison.
    #[arg(long, value_name = "NAME=VALUE")]
    pub knob: Vec<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as markdown (for the cover letter) or JSON.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    #[arg(long = "json-out", value_name = "FILE")]
    pub json_out: Option<PathBuf>,
}
