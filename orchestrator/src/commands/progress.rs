//! What the verbs show on stderr while an engine works: the build progress bar (shown on a
//! terminal, hidden when stderr is not one, or with -q), the lines of a comparison session and
//! the step lines of a bisection. Shared here because more than one verb shows them (`lab
//! gate` builds, compares and bisects too), and no verb imports another.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::bisect::driver::Event as BisectEvent;
use crate::bisect::search::Conclusion;
use crate::bisect::state::short;
use crate::compare::session::{SessionEvent, SessionStart, TestsFrom};
use crate::compare::Event;
use crate::kernel::build::BuildEvent;
use crate::results::OutcomeKind;

pub struct BuildProgress {
    bar: ProgressBar,
    last_expected: Mutex<Option<u64>>,
    /// Lines for a log when stderr is not a terminal (the bar draws nothing there).
    heartbeat: Option<Heartbeat>,
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
        let heartbeat = (!quiet && !std::io::stderr().is_terminal())
            .then(|| Heartbeat::start(format!("build {label}"), HEARTBEAT));
        BuildProgress {
            bar,
            last_expected: Mutex::new(None),
            heartbeat,
        }
    }

    pub fn event(&self, e: BuildEvent) {
        let msg = match e {
            BuildEvent::Stage(s) => s.to_owned(),
            BuildEvent::Compile { done, expected } => {
                let Ok(mut last) = self.last_expected.lock() else {
                    return;
                };
                if expected.is_some() {
                    *last = expected;
                }
                match *last {
                    Some(m) => format!("compile {done} of about {m}"),
                    None => format!("compile {done}"),
                }
            }
            BuildEvent::Link => "link".to_owned(),
            BuildEvent::Diagnostic(_) => return,
        };
        if let Some(h) = &self.heartbeat {
            h.set(&msg);
        }
        self.bar.set_message(msg);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
        if let Some(h) = &self.heartbeat {
            h.stop();
        }
    }
}

/// How often a long step says where it is when stderr is not a terminal.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// What a [`Heartbeat`] prints, and when: pure, so that the rule is tested without a clock.
#[derive(Debug)]
struct Beat {
    label: String,
    msg: String,
    /// Stages (a status's first word) already announced.
    seen: Vec<String>,
    started: Instant,
    last_line: Instant,
    every: Duration,
}

impl Beat {
    /// A new status: a line at once when it enters a stage (its first word) for the first
    /// time, else nothing (make alternates compile and link lines; those wait for `due`).
    fn set(&mut self, msg: &str, now: Instant) -> Option<String> {
        let stage = msg.split_whitespace().next().unwrap_or("").to_owned();
        self.msg = msg.to_owned();
        if self.seen.contains(&stage) {
            return None;
        }
        self.seen.push(stage);
        Some(self.line(now))
    }

    /// A line when `every` has passed since the last one.
    fn due(&mut self, now: Instant) -> Option<String> {
        (now.duration_since(self.last_line) >= self.every).then(|| self.line(now))
    }

    fn line(&mut self, now: Instant) -> String {
        self.last_line = now;
        format!(
            "lab: {}: {} [{}s]",
            self.label,
            if self.msg.is_empty() {
                "starting"
            } else {
                &self.msg
            },
            now.duration_since(self.started).as_secs()
        )
    }
}

/// Lines on stderr for a log or a CI page: a long step (a kernel build) says what it is doing
/// when its stage changes and at least every 30 seconds, where a terminal would show a bar.
struct Heartbeat {
    beat: Arc<Mutex<Beat>>,
    done: Arc<AtomicBool>,
    ticker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Heartbeat {
    fn start(label: String, every: Duration) -> Heartbeat {
        let now = Instant::now();
        let beat = Arc::new(Mutex::new(Beat {
            label,
            msg: String::new(),
            seen: Vec::new(),
            started: now,
            last_line: now,
            every,
        }));
        let done = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (beat, done) = (Arc::clone(&beat), Arc::clone(&done));
            std::thread::Builder::new()
                .name("lab-heartbeat".into())
                .spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        std::thread::park_timeout(Duration::from_secs(1));
                        if done.load(Ordering::Relaxed) {
                            break;
                        }
                        let line = beat
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .due(Instant::now());
                        if let Some(line) = line {
                            crate::errln!("{line}");
                        }
                    }
                })
                .ok()
        };
        Heartbeat {
            beat,
            done,
            ticker: Mutex::new(ticker),
        }
    }

    fn set(&self, msg: &str) {
        let line = self
            .beat
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set(msg, Instant::now());
        if let Some(line) = line {
            crate::errln!("{line}");
        }
    }

    fn stop(&self) {
        self.done.store(true, Ordering::Relaxed);
        let ticker = self
            .ticker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = ticker {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The stderr side of a comparison session: a bar per build, then one line per step. With
/// -q only what needs saying anyway is said: a `--jobs` that was lowered, what the store did
/// not take, and an interruption.
pub struct SessionProgress {
    quiet: bool,
    /// Every outcome, not only the ones that did not pass (`LAB_COMPARE_VERBOSE`).
    verbose_outcomes: bool,
    build: Mutex<Option<BuildProgress>>,
    /// Lines for a log while batches run, when stderr is not a terminal: from the
    /// session's start (builds have their own).
    heartbeat: Mutex<Option<Heartbeat>>,
    /// Where the loop is: (batch running, questions decided, questions, runs in).
    at: Mutex<(usize, usize, usize, u64)>,
}

impl SessionProgress {
    pub fn new(quiet: bool) -> SessionProgress {
        SessionProgress {
            quiet,
            verbose_outcomes: std::env::var_os("LAB_COMPARE_VERBOSE").is_some(),
            build: Mutex::new(None),
            heartbeat: Mutex::new(None),
            at: Mutex::new((1, 0, 0, 0)),
        }
    }

    /// Tells the heartbeat where the loop is, after `change`.
    fn beat(&self, change: impl FnOnce(&mut (usize, usize, usize, u64))) {
        let heartbeat = self
            .heartbeat
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(h) = heartbeat.as_ref() else { return };
        let mut at = self.at.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut at);
        let (batch, decided, questions, runs) = *at;
        h.set(&format!(
            "batch {batch} running; {decided} of {questions} questions decided, {runs} runs in"
        ));
    }

    pub fn event(&self, e: SessionEvent) {
        // A renderer that panicked mid-line leaves nothing worth protecting in the bar.
        let mut build = self.build.lock().unwrap_or_else(PoisonError::into_inner);
        match e {
            SessionEvent::Building { arch } => {
                *build = Some(BuildProgress::new(arch.name(), self.quiet));
            }
            SessionEvent::Build(e) => {
                if let Some(bar) = build.as_ref() {
                    bar.event(e);
                }
            }
            SessionEvent::Built { arch, kernel } => {
                if let Some(bar) = build.take() {
                    bar.finish();
                }
                if let (Some(k), false) = (kernel, self.quiet) {
                    crate::errln!(
                        "lab: {arch}: {} {} ({}{})",
                        k.label,
                        k.key.get(..12).unwrap_or(&k.key),
                        if k.cached { "cached" } else { "built" },
                        if k.cached {
                            String::new()
                        } else {
                            format!(" in {:.0}s", k.seconds)
                        }
                    );
                }
            }
            SessionEvent::Unrecorded(summary) => crate::errln!("lab: {summary}"),
            SessionEvent::LoopEnded => {
                // The budget spent or every question decided: no more "batch running".
                if let Some(h) = self
                    .heartbeat
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                {
                    h.stop();
                }
            }
            SessionEvent::Interrupted { runs, session } => crate::errln!(
                "lab: interrupted; {runs} runs are in the store, and the same command resumes session {session}"
            ),
            _ if self.quiet => {}
            SessionEvent::Chosen(c) => chosen(&c),
            SessionEvent::Accel { arch, reason } => crate::errln!("lab: {arch}: {reason}"),
            SessionEvent::Calibration {
                arch,
                session,
                created_at,
                predictions,
            } => {
                crate::errln!(
                    "lab: {arch}: calibrated by session {session} ({created_at}); a fixed design would need, in pairs of boots:"
                );
                for (test, metric, diff, equiv) in predictions {
                    crate::errln!(
                        "lab:   {test} {metric}: ~{diff} to show a shift of the margin, ~{equiv} to rule one out"
                    );
                }
            }
            SessionEvent::RunsPerBoot { runs, why } => crate::errln!(
                "lab: {runs} run{} of each test per boot, from the calibration ({why}; --runs-per-boot overrides)",
                if runs == 1 { "" } else { "s" }
            ),
            SessionEvent::Resuming {
                session,
                created_at,
            } => crate::errln!(
                "lab: resuming comparison {session} (started {created_at}); its batches are replayed into its own design"
            ),
            SessionEvent::Started(start) => {
                started(&start);
                if !std::io::stderr().is_terminal() {
                    *self.heartbeat.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(Heartbeat::start("compare".into(), HEARTBEAT));
                }
            }
            SessionEvent::Loop(e) => self.loop_event(e),
        }
    }

    fn loop_event(&self, e: Event) {
        match e {
            Event::Resumed {
                batches,
                runs,
                horizon,
            } => crate::errln!(
                "lab: replayed this session's {batches} earlier batches ({runs} runs){}",
                horizon.map_or_else(String::new, |h| format!(
                    "; its design keeps its horizon of {h} boots per side"
                ))
            ),
            Event::Contended {
                batch,
                foreign_share,
            } => crate::errln!(
                "lab: batch {batch} ran while other work took {:.0}% of the host's CPU: it counts for failure rates, but no metric is decided from it",
                foreign_share * 100.0
            ),
            Event::LoadUnknown => crate::errln!(
                "lab: warning: /proc is not readable, so host contention is not measured; metric verdicts assume a quiet host"
            ),
            Event::Outcome { side, outcome: o } => {
                self.beat(|at| at.3 += 1);
                if self.verbose_outcomes || o.kind != OutcomeKind::Pass {
                    crate::errln!(
                        "  {} {} {} #{}: {} {}",
                        o.arch,
                        side.name(),
                        o.test,
                        o.iteration,
                        o.kind,
                        o.summary.chars().take(100).collect::<String>()
                    );
                }
            }
            Event::Horizon {
                max_boots_per_side,
                batch_s,
            } => crate::errln!(
                "lab: first batch took {batch_s:.0}s; the design allows up to {max_boots_per_side} boots per side (one per batch), and it keeps to that"
            ),
            Event::Batch {
                number,
                elapsed_s,
                decided,
                questions,
            } => {
                self.beat(|at| {
                    at.0 = number.saturating_add(1);
                    at.1 = decided;
                    at.2 = questions;
                });
                crate::errln!(
                    "lab: batch {number} done at {elapsed_s:.0}s: {decided} of {questions} questions decided"
                )
            }
            Event::Decided {
                arch,
                test,
                question,
                verdict,
                boots_per_side,
            } => crate::errln!(
                "lab: {arch} {test} {question}: {verdict} after {boots_per_side} boots per side"
            ),
            Event::BudgetSpent { elapsed_s } => crate::errln!(
                "lab: budget spent at {elapsed_s:.0}s; the open questions are inconclusive"
            ),
            Event::OutOfReach {
                questions,
                per_boot_s,
                budget_s,
            } => out_of_reach(&questions, &per_boot_s, budget_s),
        }
    }
}

/// Says which failure rates the budget is too short to clear, and which tests take it.
fn out_of_reach(
    questions: &[crate::compare::analysis::OutOfReach],
    per_boot_s: &[(crate::arch::Arch, String, f64)],
    budget_s: f64,
) {
    let Some(first) = questions.first() else {
        return;
    };
    crate::errln!(
        "lab: too slow to show \"no difference\" within the budget ({}: {} boots per side at this pace), even if every run passes; a regression can still be found:",
        crate::report::human_duration(budget_s),
        first.horizon
    );
    for q in questions {
        crate::errln!(
            "lab:   {} {}: failure rate{}",
            q.arch,
            q.test,
            q.boots_needed.map_or_else(String::new, |n| format!(
                " (needs about {n} boots per side, about {} of budget at this pace)",
                crate::report::human_duration(budget_s * n as f64 / q.horizon.max(1) as f64)
            ))
        );
    }
    let total: f64 = per_boot_s.iter().map(|t| t.2).sum();
    let slow: Vec<String> = per_boot_s
        .iter()
        .take(3)
        .filter(|t| total > 0.0 && t.2 / total >= 0.2)
        .map(|(arch, test, s)| format!("{arch} {test} {s:.0}s ({:.0}%)", 100.0 * s / total))
        .collect();
    if !slow.is_empty() {
        crate::errln!(
            "lab:   a boot's time goes mostly to: {}; a larger --budget, or --tests without the slow ones, gets the answer",
            slow.join(", ")
        );
    }
}

/// Why a comparison runs what it runs: the test map's reasons and its amplifiers.
pub fn chosen(c: &crate::compare::session::Choice) {
    match &c.tests_from {
        TestsFrom::Map(reasons) => {
            crate::errln!("lab: tests chosen by the test map (guest-tests/test-map.toml):");
            for r in reasons {
                crate::errln!("lab:   {r}");
            }
            crate::errln!("lab:   -> {}", c.tests.join(", "));
        }
        TestsFrom::Uncovered(files) => crate::errln!(
            "lab: no area of the test map covers {}: the whole suite runs",
            files.join(", ")
        ),
        _ => {}
    }
    if !c.amplifiers.is_empty() {
        let why = if c.amplified_for.is_empty() {
            String::new()
        } else {
            format!(" ({} requires them)", c.amplified_for.join(", "))
        };
        crate::errln!(
            "lab: race amplifiers stacked under both sides{why}: {} with {} on; only failure rates are compared, as their delays distort timing (--no-amplify turns this off)",
            c.amplifiers.join(", "),
            c.knobs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if let Some(why) = &c.not_amplified {
        crate::errln!("lab: race amplifiers are not stacked: {why}");
    }
}

/// The two lines that open a comparison.
fn started(s: &SessionStart) {
    let tests_from = match &s.tests_from {
        TestsFrom::Request => "--tests".to_owned(),
        TestsFrom::Settings => "[compare] tests".to_owned(),
        TestsFrom::Exercised(sets) => format!("exercised by {}", sets.join(", ")),
        TestsFrom::Suite => "the suite".to_owned(),
        TestsFrom::All => "--tests all".to_owned(),
        TestsFrom::Map(_) => "chosen by the test map".to_owned(),
        TestsFrom::Uncovered(_) => "the suite: the test map covers none of the patch".to_owned(),
    };
    crate::errln!(
        "lab: comparing A={} with B={} on {}; {} tests ({tests_from}), budget {}s, alpha {}, margins {} (rates) and {:.0}% (metrics); session {}",
        s.a,
        s.b,
        s.arches.iter().map(|a| a.name()).collect::<Vec<_>>().join(","),
        s.tests,
        s.budget.as_secs(),
        s.alpha,
        s.margin_rate,
        s.margin_metric * 100.0,
        s.session,
    );
    crate::errln!("lab: runs in {}", s.dir.display());
}

/// The progress lines of a bisection on stderr (`lab bisect`, and `lab gate` when it bisects
/// a series): one line when it starts, two per step. With -q only what the user must know is
/// left: a test that does not reproduce, and results that did not reach the store.
pub struct BisectProgress {
    quiet: bool,
    /// Lines for a log during a step (a build, a boot, the runs: minutes without a line),
    /// when stderr is not a terminal; from the bisection's start to its conclusion.
    heartbeat: Mutex<Option<Heartbeat>>,
}

impl BisectProgress {
    pub fn new(quiet: bool) -> BisectProgress {
        BisectProgress {
            quiet,
            heartbeat: Mutex::new(None),
        }
    }

    pub fn event(&self, e: BisectEvent) {
        let mut heartbeat = self
            .heartbeat
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if matches!(e, BisectEvent::Started { .. })
            && !self.quiet
            && !std::io::stderr().is_terminal()
        {
            *heartbeat = Some(Heartbeat::start("bisect".into(), HEARTBEAT));
        }
        if matches!(
            e,
            BisectEvent::Concluded { .. } | BisectEvent::NotReproduced { .. }
        ) {
            if let Some(h) = heartbeat.take() {
                h.stop();
            }
        }
        if let Some(h) = heartbeat.as_ref() {
            match &e {
                BisectEvent::Testing {
                    number, id, runs, ..
                } => h.set(&format!(
                    "step {number}: building {} if needed, booting it, {runs} runs",
                    short(id)
                )),
                BisectEvent::Step { number, .. } | BisectEvent::Skip { number, .. } => {
                    h.set(&format!("step {number} done; choosing the next"));
                }
                _ => {}
            }
        }
        drop(heartbeat);
        match e {
            BisectEvent::NotReproduced { test, bad, runs } => crate::errln!(
                "lab: {test} passed all {runs} runs at the bad end ({}): it does not reproduce there, so there is nothing to bisect; try amplifier knobs or a longer --duration",
                short(&bad)
            ),
            BisectEvent::Unrecorded(summary) => crate::errln!("lab: {summary}"),
            BisectEvent::IdenticalToParent { culprit } => crate::errln!(
                "lab: {} builds a kernel byte-identical to its parent's, so it cannot have changed what the test sees: the search was misled (a flaky test, or a failure that depends on something other than the kernel); not naming it with confidence",
                short(&culprit)
            ),
            _ if self.quiet => {}
            BisectEvent::Started {
                session,
                test,
                arch,
                good,
                bad,
                candidates,
            } => crate::errln!(
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
            } => crate::errln!(
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
            } => crate::errln!(
                "lab:   {failures} of {runs} failed; now {} holds {probability:.3}",
                short(&top_id)
            ),
            BisectEvent::Adopted { id, fingerprint } => crate::errln!(
                "lab:   the bad end crashed: bisecting its crash fingerprint {id} ({fingerprint}); a crash with another one is a skip"
            ),
            BisectEvent::Skip { why, .. } => crate::errln!("lab:   skip: {why}"),
            BisectEvent::Confirm { result } => crate::errln!("lab: confirmation: {result}"),
            BisectEvent::Concluded { conclusion } => {
                if let Some(c) = conclusion {
                    for line in basis_lines(&c) {
                        crate::errln!("lab: {line}");
                    }
                }
            }
        }
    }
}

/// What a bisection's answer rests on, in plain words: the chance it is wrong, and the
/// posteriors of the detection rate, of the false-positive rate and of how much the runs of
/// one boot hang together.
pub fn basis_lines(c: &Conclusion) -> Vec<String> {
    let b = &c.basis;
    let (q, q_sd) = b.detection;
    let (e, e_sd) = b.false_positive;
    let mut out = vec![format!(
        "the answer holds {:.1} % of the posterior ({:.1} % under the least favourable spread between boots the runs allow): given what was seen, the chance that it is wrong is {:.1} %",
        100.0 * c.probability,
        100.0 * c.worst_spread_probability,
        100.0 * (1.0 - c.probability.min(c.worst_spread_probability))
    )];
    out.push(format!(
        "the test fails a bad kernel {:.0} % of the time (± {:.0}), a good one {:.2} % of the time (± {:.2}); the good end failed {} of {} runs",
        100.0 * q,
        100.0 * q_sd,
        100.0 * e,
        100.0 * e_sd,
        b.good_end.1,
        b.good_end.0
    ));
    out.push(format!(
        "{} runs in {} boots (at most {} a boot); share of the failure rate's variance that is between boots {:.2} (0: runs independent, 1: a boot fails all or nothing){}",
        c.runs,
        b.boots,
        b.max_runs_per_boot,
        b.within_boot_correlation,
        if b.within_boot_correlation > 0.5 {
            ": the runs of one boot hang together, so boots count more than runs"
        } else {
            ""
        }
    ));
    if 3.0 * e > q {
        out.push(
            "the test fails good kernels almost as often as bad ones: it barely tells them apart, so the answer is weak".into(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_speaks_on_a_new_stage_and_after_its_interval_only() {
        let t0 = Instant::now();
        let mut b = Beat {
            label: "build x86_64".into(),
            msg: String::new(),
            seen: Vec::new(),
            started: t0,
            last_line: t0,
            every: Duration::from_secs(30),
        };
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            b.set("configure", at(1)).as_deref(),
            Some("lab: build x86_64: configure [1s]")
        );
        assert_eq!(b.due(at(20)), None, "nothing new before 30 s");
        assert!(
            b.set("compile 10 of about 900", at(25)).is_some(),
            "a new stage"
        );
        assert_eq!(
            b.set("compile 11 of about 900", at(26)),
            None,
            "the same stage"
        );
        assert!(b.set("link", at(26)).is_some(), "a new stage");
        assert_eq!(
            b.set("compile 12 of about 900", at(26)),
            None,
            "a stage seen before waits for the interval"
        );
        assert_eq!(b.due(at(55)), None);
        assert_eq!(
            b.due(at(56)).as_deref(),
            Some("lab: build x86_64: compile 12 of about 900 [56s]")
        );
        assert_eq!(b.due(at(60)), None);
        assert!(b.due(at(86)).is_some(), "every 30 s while nothing changes");
    }
}
