//! The build progress bar: shown on a terminal, hidden when stderr is not one (or with -q).

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

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
