//! `harness_selftest`: NOT a guest test. It exercises the harness itself, for this crate's
//! `cargo test` (`tests/programs.rs`), and must never be scheduled as a kernel test.
//!
//! The mode comes from `LAB_HARNESS_SELFTEST`:
//! - `pass` (default), `fail`: the verdicts and their exit codes;
//! - `hang`: one thread sleeps in FUTEX_WAIT on a word nobody wakes, so the watchdog must
//!   turn the run into a Hang that names it, and restore the knobs;
//! - `knobs`: reads every `--knob` back from the knob directory into the summary, to show
//!   they are set while the body runs;
//! - `setup`: the body cannot set up, which must become a Skip;
//! - `panic`: the body panics, which must restore the knobs and exit 101 with no verdict.
//!
//! `LAB_HARNESS_KNOB_DIR` points the knobs at a scratch directory instead of
//! `/sys/module/kernel/parameters`; only this program honours it.

use std::sync::atomic::AtomicU32;

use lab_guest_tests::blocked::Blocked;
use lab_guest_tests::harness::{self, Ctx, Problems, Spec};
use lab_guest_tests::knobs::PARAMETERS_DIR;
use lab_guest_tests::sys;
use lab_proto::TestResult;

fn run(ctx: &Ctx) -> Result<TestResult, String> {
    let mode = std::env::var("LAB_HARNESS_SELFTEST").unwrap_or_else(|_| "pass".into());
    let mut r = ctx.result();
    let mut problems = Problems::default();
    match mode.as_str() {
        "pass" => {}
        "fail" => problems.add("deliberate failure"),
        "hang" => {
            let blocked = Blocked::new("stuck", "FUTEX_WAIT", 1);
            ctx.on_hang_blocked(&blocked);
            blocked.register(0);
            let word = AtomicU32::new(0);
            loop {
                blocked.enter(0, 0);
                let _ = sys::futex_wait(&word, 0, None);
                blocked.leave(0);
            }
        }
        "knobs" => {
            let dir =
                std::env::var("LAB_HARNESS_KNOB_DIR").unwrap_or_else(|_| PARAMETERS_DIR.into());
            let seen: Vec<String> = ctx
                .params
                .knobs
                .iter()
                .map(|(k, _)| {
                    let v = std::fs::read_to_string(format!("{dir}/{k}")).unwrap_or_default();
                    format!("{k}={}", v.trim_end())
                })
                .collect();
            r.summary = seen.join(" ");
        }
        "setup" => return Err("deliberate setup failure".into()),
        "panic" => panic!("deliberate panic"),
        other => return Err(format!("unknown LAB_HARNESS_SELFTEST mode {other:?}")),
    }
    let stats = if r.summary.is_empty() {
        format!("harness self-test, mode {mode}")
    } else {
        r.summary.clone()
    };
    problems.conclude(&mut r, &stats);
    Ok(r)
}

fn main() {
    let knob_dir: &'static str = match std::env::var("LAB_HARNESS_KNOB_DIR") {
        Ok(dir) => Box::leak(dir.into_boxed_str()),
        Err(_) => PARAMETERS_DIR,
    };
    harness::main(
        Spec {
            name: "harness_selftest",
            default_duration_ms: 100,
            knob_dir,
        },
        run,
    )
}
