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
