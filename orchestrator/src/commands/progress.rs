//! What long engines report while they work, rendered for the terminal: the build progress
//! bar (shown on a terminal, hidden when stderr is not one or with -q) and the step lines of a
//! bisection. Shared here because more than one verb shows them: `lab gate` builds and bisects
//! too, and no verb imports another.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::bisect::driver::Event as BisectEvent;
use crate::bisect::state::short;
use crate::kernel::build::BuildEvent;

pub struct BuildProgress {
    bar: ProgressBar,
    last_expected: Mutex<Option<u64>>,
}

impl BuildProgress {
    pub fn new(label: &str, quiet: bool) -> BuildProgress {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        BuildProgress {
            bar,
            last_expected: Mutex::new(None),
        }
    }

    pub fn event(&self, e: BuildEvent) {
        match e {
            BuildEvent::Stage(s) => self.bar.set_message(s.to_owned()),
            BuildEvent::Compile { done, expected } => {
                if let Ok(mut last) = self.last_expected.lock() {
                    if expected.is_some() {
                        *last = expected;
                    }
                    match *last {
                        Some(m) => self.bar.set_message(format!("compile {done} of about {m}")),
                        None => self.bar.set_message(format!("compile {done}")),
                    }
                }
            }
            BuildEvent::Link => self.bar.set_message("link"),
            BuildEvent::Diagnostic(_) => {}
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The progress lines of a bisection on stderr (`lab bisect`, and `lab gate` when it bisects
/// a series): one line when it starts, two per step. With -q only what the user must know is
/// left: a test that does not reproduce, and results that did not reach the store.
pub struct BisectProgress {
    quiet: bool,
}

impl BisectProgress {
    pub fn new(quiet: bool) -> BisectProgress {
        BisectProgress { quiet }
    }

    pub fn event(&self, e: BisectEvent) {
        match e {
            BisectEvent::NotReproduced { test, bad, runs } => eprintln!(
                "lab: {test} passed all {runs} runs at the bad end ({}): it does not reproduce there, so there is nothing to bisect; try amplifier knobs or a longer --duration",
                short(&bad)
            ),
            BisectEvent::Unrecorded(summary) => eprintln!("lab: {summary}"),
            _ if self.quiet => {}
            BisectEvent::Started {
                session,
                test,
                arch,
                good,
                bad,
                candidates,
            } => eprintln!(
                "lab: bisecting {test} on {arch} between {} (good) and {} (bad): {candidates} candidates; session {session}",
                short(&good),
                short(&bad)
            ),
            BisectEvent::Testing {
                number,
                id,
                subject,
                runs,
                ..
            } => eprintln!(
                "lab: step {number}: {} {} ({runs} runs)",
                short(&id),
                subject.chars().take(60).collect::<String>()
            ),
            BisectEvent::Step {
                runs,
                failures,
                top_id,
                probability,
                ..
            } => eprintln!(
                "lab:   {failures} of {runs} failed; now {} holds {probability:.3}",
                short(&top_id)
            ),
            BisectEvent::Skip { why, .. } => eprintln!("lab:   skip: {why}"),
            BisectEvent::Confirm { result } => eprintln!("lab: confirmation: {result}"),
            BisectEvent::Concluded { .. } => {}
        }
    }
}
