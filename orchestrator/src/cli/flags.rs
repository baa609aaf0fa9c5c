//! Flag groups shared by the verbs, flattened into each one, and the `value_parser`s that
//! turn their text into typed values (`Arch`, `Duration`, `Knob`) while clap parses, so that a
//! bad value is refused with the flag's name before any work starts, the same way on every
//! verb. One spelling per flag: where a verb used another, the old one stays as an alias.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::arch::Arch;
use crate::config::{parse_duration, Knob};

/// An `--arch` value: one architecture, or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchChoice {
    All,
    One(Arch),
}

/// `--arch` value parser: `x86_64`, `arm64` (or their aliases), or `all`.
pub fn parse_arch_choice(s: &str) -> Result<ArchChoice, String> {
    match s.trim() {
        "all" => Ok(ArchChoice::All),
        other => parse_arch(other).map(ArchChoice::One),
    }
}

/// Value parser for a flag that takes exactly one arch.
pub fn parse_arch(s: &str) -> Result<Arch, String> {
    s.trim().parse::<Arch>().map_err(|e| e.to_string())
}

/// Value parser for durations: `500ms`, `3s`, `8m`, `1h`; zero is refused.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Some(d) if !d.is_zero() => Ok(d),
        Some(_) => Err(format!("{s:?} is zero; give a duration like 3s, 90s or 8m")),
        None => Err(format!("{s:?}: use a duration like 500ms, 3s, 8m or 1h")),
    }
}

/// Value parser for `--knob NAME=VALUE`.
/// A test name from `--tests`: shell characters and option-looking words are refused here,
/// before anything runs (exit 2).
pub fn parse_test_name(s: &str) -> Result<String, String> {
    let name = s.trim();
    crate::config::names::check_test(name)
        .map(|()| name.to_owned())
        .map_err(|e| e.why)
}

pub fn parse_knob(s: &str) -> Result<Knob, String> {
    s.parse::<Knob>().map_err(|e| e.to_string())
}

/// `--arch`, for verbs that run on several architectures.
#[derive(Debug, Args, Clone, Default)]
pub struct ArchesArg {
    /// Architectures: x86_64, arm64 or all; comma-separated or repeated (default: lab.toml).
    #[arg(
        long = "arch",
        value_name = "ARCH",
        value_delimiter = ',',
        value_parser = parse_arch_choice
    )]
    pub arches: Vec<ArchChoice>,
}

impl ArchesArg {
    /// The arches asked for, sorted and without repeats; `default` when none were.
    pub fn resolve(&self, default: &[Arch]) -> Vec<Arch> {
        if self.arches.is_empty() {
            return default.to_vec();
        }
        let mut out: Vec<Arch> = self
            .arches
            .iter()
            .flat_map(|c| match c {
                ArchChoice::All => Arch::ALL.to_vec(),
                ArchChoice::One(a) => vec![*a],
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The same flag naming exactly these arches (for engines that call one another).
    pub fn of(arches: &[Arch]) -> ArchesArg {
        ArchesArg {
            arches: arches.iter().copied().map(ArchChoice::One).collect(),
        }
    }
}

/// `--arch`, for verbs that work on one architecture.
#[derive(Debug, Args, Clone, Default)]
pub struct OneArchArg {
    /// One arch: x86_64 or arm64 (default: the first of lab.toml).
    #[arg(long = "arch", value_name = "ARCH", value_parser = parse_arch)]
    pub arch: Option<Arch>,
}

/// `--patches` and `--config`: what goes on top of the kernel tree.
#[derive(Debug, Args, Clone, Default)]
pub struct StackArgs {
    /// Patch sets to stack in order: names under patches/, or paths to a folder, .patch or mbox.
    #[arg(long, value_delimiter = ',', value_name = "NAME[,NAME...]")]
    pub patches: Vec<String>,
    /// Extra config fragments after the ones in lab.toml: names in configs/ (e.g. lockdep,
    /// kasan) or paths to a fragment file, with or without its .config.
    #[arg(long = "config", value_name = "FRAGMENT")]
    pub config: Vec<String>,
}

/// Which kernels: arches, the tree, and what goes on top of it.
#[derive(Debug, Args, Clone, Default)]
pub struct KernelSelect {
    #[command(flatten)]
    pub arch: ArchesArg,
    #[command(flatten)]
    pub stack: StackArgs,
    /// Kernel definition: a name in kernels/ or a path to one (default: lab.toml's kernel).
    #[arg(long, value_name = "DEF")]
    pub kernel: Option<String>,
}

/// `--knob`: runtime kernel knobs for the tests.
#[derive(Debug, Args, Clone, Default)]
pub struct KnobArgs {
    /// Runtime kernel knob, written under /sys/module/kernel/parameters/NAME; repeatable.
    #[arg(long = "knob", value_name = "NAME=VALUE", value_parser = parse_knob)]
    pub knobs: Vec<Knob>,
}

impl KnobArgs {
    /// As the engines and the store carry them.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.knobs.iter().map(Knob::pair).collect()
    }
}

/// `--tests` (alias `--test`): which guest tests.
#[derive(Debug, Args, Clone, Default)]
pub struct TestsArg {
    /// Guest tests, comma-separated or repeated; `--test` is the same flag (default: lab.toml's
    /// suite; for compare, the tests the patch sets exercise).
    #[arg(
        long = "tests",
        alias = "test",
        value_delimiter = ',',
        value_name = "NAME[,NAME...]",
        value_parser = parse_test_name
    )]
    pub tests: Vec<String>,
}

/// `--duration`: how long each test drives its workload.
#[derive(Debug, Args, Clone, Default)]
pub struct DurationArg {
    /// How long each test run drives its workload, e.g. 500ms or 3s (default: lab.toml).
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,
}

/// `--seed`.
#[derive(Debug, Args, Clone, Default)]
pub struct SeedArg {
    /// Seed for every test (default: the time); recorded with the runs.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SeedArg {
    /// The seed given, or one from the clock.
    pub fn or_now(&self) -> u64 {
        self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        })
    }
}

/// `--json`: machine-readable output on stdout.
#[derive(Debug, Args, Clone, Default)]
pub struct JsonArg {
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Report files a verb writes besides what it prints.
#[derive(Debug, Args, Clone, Default)]
pub struct ReportFiles {
    /// Also write the report as markdown (for a cover letter).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Also write the report as JSON.
    #[arg(long = "json-out", value_name = "FILE")]
    pub json_out: Option<PathBuf>,
}

/// Report files that only a comparison has.
#[derive(Debug, Args, Clone, Default)]
pub struct CompareReportFiles {
    #[command(flatten)]
    pub common: ReportFiles,
    /// Also write the report as JUnit XML (one case per question).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also write the report as a self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arches_resolve_all_aliases_and_the_default() {
        let a = ArchesArg {
            arches: vec![
                parse_arch_choice("aarch64").expect("alias"),
                parse_arch_choice("arm64").expect("name"),
            ],
        };
        assert_eq!(a.resolve(&[Arch::X86_64]), vec![Arch::Arm64]);
        let all = ArchesArg {
            arches: vec![ArchChoice::All],
        };
        assert_eq!(all.resolve(&[]), vec![Arch::X86_64, Arch::Arm64]);
        assert_eq!(
            ArchesArg::default().resolve(&[Arch::Arm64]),
            vec![Arch::Arm64]
        );
        let err = parse_arch_choice("riscv64").expect_err("unknown");
        assert!(err.contains("riscv64"), "{err}");
    }

    #[test]
    fn durations_must_be_positive_and_have_a_unit() {
        assert_eq!(parse_positive_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(
            parse_positive_duration("500ms"),
            Ok(Duration::from_millis(500))
        );
        assert!(parse_positive_duration("0s").is_err());
        assert!(parse_positive_duration("5").is_err());
        assert!(parse_positive_duration("soon").is_err());
    }

    #[test]
    fn knobs_parse_or_say_why_not() {
        let k = parse_knob("wq_amp_fake_signal_pct=50").expect("ok");
        assert_eq!(k.pair(), ("wq_amp_fake_signal_pct".into(), "50".into()));
        assert!(parse_knob("../../etc=1").is_err());
        assert!(parse_knob("noequals").is_err());
        assert!(parse_knob("futex_amp_x=1;reboot").is_err());
        assert!(parse_knob("futex_amp_x=$(id)").is_err());
    }
}
