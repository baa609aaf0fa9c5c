//! The state of one bisection, as the results store keeps it: what is bisected (a git history
//! or the patches of a series), under which conditions, the search's log and the steps as they
//! ran. A bisection is resumed from this alone.
//!
//! The state is the `state_json` of a `bisect` session in the results store, rewritten after
//! every step, and it is what `lab bisect --json` prints. The search's posterior is not stored:
//! its [`SearchLog`] (configuration and observations) is, and [`SearchLog::replay`] rebuilds
//! the search from it, so a stored state never carries a posterior computed by older code.
//! [`STATE_FORMAT_VERSION`] is written into every state; a change to a field's meaning bumps it.
//!
//! The serialised shape (field names, the `kind` tag of [`Space`]) is what stored sessions and
//! scripts reading `--json` hold: renaming a field here breaks both.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::bisect::search::{Conclusion, Search, SearchConfig, SearchError, SearchLog};

/// Version of the [`BisectState`] format.
pub const STATE_FORMAT_VERSION: u32 = 2;

/// What is bisected: commits of a git history, or the patches of a series.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Space {
    /// `commits[0]` is the good end; the candidates are 1..=n, `commits[n]` the bad end.
    Git {
        definition: String,
        repo: PathBuf,
        commits: Vec<(String, String)>,
    },
    /// Candidate i is the lab's kernel with the first i patches; 0 is none (good).
    Series {
        series: String,
        patches: Vec<(String, String)>,
    },
}

impl Space {
    /// The number of candidates after the good end; the bad end is candidate `n`.
    pub fn n(&self) -> usize {
        match self {
            Space::Git { commits, .. } => commits.len().saturating_sub(1),
            Space::Series { patches, .. } => patches.len(),
        }
    }

    /// (id, subject) of candidate `i`; empty for an index outside the space.
    pub fn describe(&self, i: usize) -> (String, String) {
        match self {
            Space::Git { commits, .. } => commits.get(i).cloned().unwrap_or_default(),
            Space::Series { patches, .. } => {
                if i == 0 {
                    ("(no patch)".into(), "the kernel without the series".into())
                } else {
                    let (label, subject) = patches.get(i - 1).cloned().unwrap_or_default();
                    (format!("patch {i}: {label}"), subject)
                }
            }
        }
    }
}

/// How a candidate's id is shown: `patch 3` for a patch of a series, 12 hex digits for a
/// commit, anything else as it is.
pub fn short(id: &str) -> String {
    if let Some((patch, _)) = id.split_once(": ").filter(|(p, _)| p.starts_with("patch ")) {
        return patch.to_owned();
    }
    match id.get(..12) {
        Some(prefix) if id.len() == 40 && id.chars().all(|c| c.is_ascii_hexdigit()) => {
            prefix.to_owned()
        }
        _ => id.to_owned(),
    }
}

/// One step, for the log.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub index: usize,
    pub id: String,
    pub runs: u32,
    pub failures: u32,
    pub skipped: Option<String>,
    pub kernel_key: Option<String>,
    /// sha256 of the kernel image booted, to tell byte-identical kernels apart.
    #[serde(default)]
    pub image_sha256: Option<String>,
    pub run_dir: String,
    /// The top candidate and its probability after this step.
    pub top: (usize, f64),
    pub seconds: f64,
}

/// Everything a bisection is resumed from.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct BisectState {
    pub format_version: u32,
    pub space: Space,
    pub test: String,
    pub arch: Arch,
    pub knobs: Vec<(String, String)>,
    pub under: Vec<String>,
    pub config: Vec<String>,
    pub duration_ms: u64,
    /// The crash fingerprint id that counts as bad; `None` until the bad end showed one
    /// (then plain failures count, and any crash is a different one).
    pub match_crash: Option<String>,
    pub match_crash_given: bool,
    pub seed: u64,
    pub log: SearchLog,
    pub steps: Vec<StepRecord>,
    pub conclusion: Option<Conclusion>,
    /// Confirm the culprit: the bad end without it must stop failing.
    #[serde(default)]
    pub confirm: bool,
    /// What the confirmation showed.
    #[serde(default)]
    pub confirmation: Option<String>,
    /// Whether the culprit's kernel is byte-identical to its parent's (`None`: not known,
    /// for example when the parent could not be built). A culprit that is cannot have
    /// changed the kernel's behaviour, so it is not named with confidence.
    #[serde(default)]
    pub identical_to_parent: Option<bool>,
}

impl BisectState {
    /// The session key in the results store: what makes two bisections the same one, so that
    /// starting one again continues it. The seed, the search's settings and `--confirm` are
    /// not part of it: the stored bisection goes on with its own. A crash fingerprint is part
    /// of it only when the user gave one; the one learnt from the bad end is a result.
    pub fn key(&self) -> String {
        use sha2::{Digest, Sha256};
        let text = serde_json::json!({
            "space": self.space, "test": self.test, "arch": self.arch, "knobs": self.knobs,
            "under": self.under, "config": self.config, "duration": self.duration_ms,
            "match": if self.match_crash_given { self.match_crash.clone() } else { None },
        })
        .to_string();
        hex::encode(Sha256::digest(text.as_bytes()))[..24].to_owned()
    }
}

/// A bisection to start, resolved: what to bisect, how to run each step, and how the search
/// decides.
#[derive(Debug, Clone)]
pub struct BisectRequest {
    pub space: Space,
    pub test: String,
    pub arch: Arch,
    pub knobs: Vec<(String, String)>,
    /// Patch sets applied under every step (amplifiers).
    pub under: Vec<String>,
    /// Extra config fragments.
    pub config: Vec<String>,
    pub duration: Duration,
    /// Only this crash fingerprint counts as bad (`--match-crash`).
    pub match_crash: Option<String>,
    pub seed: u64,
    pub search: SearchConfig,
    pub confirm: bool,
}

impl BisectRequest {
    /// The state of the bisection before its first step: a fresh search over the space.
    pub fn into_state(self) -> Result<BisectState, SearchError> {
        let search = Search::new(self.space.n(), self.search)?;
        Ok(BisectState {
            format_version: STATE_FORMAT_VERSION,
            space: self.space,
            test: self.test,
            arch: self.arch,
            knobs: self.knobs,
            under: self.under,
            config: self.config,
            duration_ms: u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            match_crash_given: self.match_crash.is_some(),
            match_crash: self.match_crash,
            seed: self.seed,
            log: search.to_log(),
            steps: Vec::new(),
            conclusion: None,
            confirm: self.confirm,
            confirmation: None,
            identical_to_parent: None,
        })
    }
}

#[cfg(test)]
impl BisectRequest {
    /// A small series bisection for the engine's unit tests.
    pub(crate) fn example_series(n: usize) -> BisectRequest {
        BisectRequest {
            space: Space::Series {
                series: "s".into(),
                patches: (1..=n)
                    .map(|i| (format!("p{i}"), format!("subject {i}")))
                    .collect(),
            },
            test: "futex_errno".into(),
            arch: crate::arch::Arch::X86_64,
            knobs: vec![("k".into(), "1".into())],
            under: Vec::new(),
            config: Vec::new(),
            duration: Duration::from_millis(200),
            match_crash: None,
            seed: 5,
            search: crate::bisect::search::SearchConfig::default(),
            confirm: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize) -> Space {
        Space::Series {
            series: "s".into(),
            patches: (1..=n)
                .map(|i| (format!("000{i}-p.patch"), format!("subject {i}")))
                .collect(),
        }
    }

    fn request(space: Space) -> BisectRequest {
        BisectRequest {
            space,
            test: "futex_errno".into(),
            arch: Arch::X86_64,
            knobs: Vec::new(),
            under: Vec::new(),
            config: Vec::new(),
            duration: Duration::from_millis(1500),
            match_crash: None,
            seed: 1,
            search: SearchConfig::default(),
            confirm: false,
        }
    }

    #[test]
    fn candidates_are_described_and_shortened_for_display() {
        let s = series(3);
        assert_eq!(s.n(), 3);
        assert_eq!(s.describe(0).0, "(no patch)");
        assert_eq!(
            s.describe(2),
            ("patch 2: 0002-p.patch".into(), "subject 2".into())
        );
        assert_eq!(short(&s.describe(2).0), "patch 2");
        assert_eq!(s.describe(9), ("patch 9: ".into(), String::new()));
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(short(sha), "0123456789ab");
        assert_eq!(short("main"), "main");
        let git = Space::Git {
            definition: "d".into(),
            repo: PathBuf::from("/r"),
            commits: vec![(sha.into(), "good".into()), ("b".into(), "bad".into())],
        };
        assert_eq!(git.n(), 1);
        assert_eq!(git.describe(1).1, "bad");
    }

    #[test]
    fn a_fresh_state_keeps_its_shape_and_its_key_ignores_the_seed() {
        let state = request(series(2)).into_state().expect("valid");
        assert_eq!(state.format_version, STATE_FORMAT_VERSION);
        assert_eq!(state.duration_ms, 1500);
        assert!(!state.match_crash_given);
        let json = serde_json::to_value(&state).expect("serialises");
        assert_eq!(json["space"]["kind"], "series");
        for field in [
            "format_version",
            "duration_ms",
            "match_crash_given",
            "log",
            "steps",
        ] {
            assert!(json.get(field).is_some(), "{field} in {json}");
        }
        let back: BisectState = serde_json::from_value(json).expect("reads back");
        assert_eq!(back.key(), state.key());

        let mut other = request(series(2));
        other.seed = 99;
        assert_eq!(other.into_state().expect("valid").key(), state.key());
        let mut other = request(series(2));
        other.match_crash = Some("abcd".into());
        assert_ne!(other.into_state().expect("valid").key(), state.key());
        assert!(
            request(series(0)).into_state().is_err(),
            "nothing to bisect"
        );
    }
}
