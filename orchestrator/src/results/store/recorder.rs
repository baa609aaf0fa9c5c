//! Writing to the results store: sessions, runs, and each outcome with its metrics and
//! crash fingerprints; and [`Recorder`], the one way verbs write their runs.
//!
//! Every write goes through [`Store::write`]: one `BEGIN IMMEDIATE` transaction, so the lock
//! is taken up front, a busy file is waited on instead of failing halfway, and an outcome is
//! on disk, whole, the moment its call returns.
//!
//! The store methods return every error. The [`Recorder`] above them decides, once for
//! every verb, what a store failure does to a run: nothing. It says so the first time,
//! counts the rest, and hands the verb a [`RecordSummary`] at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::params;
use sha2::{Digest, Sha256};

use super::{now_rfc3339, Store, StoreError};
use crate::arch::Arch;
use crate::results::manifest::{Placement, RunManifest, MANIFEST_FILE};
use crate::results::TestOutcome;

/// What [`Store::begin_run`] records about a run before it starts.
#[derive(Debug, Clone, Copy)]
pub struct NewRun<'a> {
    pub session: Option<i64>,
    /// `A` or `B` in a comparison.
    pub side: Option<&'a str>,
    pub batch: Option<u32>,
    pub arch: Arch,
    pub kernel_key: &'a str,
    pub kernel_label: &'a str,
    pub image_digest: &'a str,
    /// Test name to the sha256 of its guest program. Image paths (`lab/bin/NAME`, the keys of
    /// the image manifest) are accepted too and stored as the test name.
    pub test_digests: &'a BTreeMap<String, String>,
    /// [`condition_digest`] of the run: outcomes are reused only under the same conditions.
    pub condition: &'a str,
    pub dir: &'a Path,
    /// Where it runs: engine, job and node.
    pub placement: &'a Placement,
}

/// Where guest test programs sit in the image; the image manifest keys its digests by path.
const GUEST_BIN_PREFIX: &str = "lab/bin/";

/// The test-name-to-digest map of a run, from the image manifest's path-to-digest map: only
/// the guest test programs, keyed by test name.
pub fn test_digests(programs: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    programs
        .iter()
        .filter_map(|(path, digest)| {
            path.strip_prefix(GUEST_BIN_PREFIX)
                .map(|test| (test.to_owned(), digest.clone()))
        })
        .collect()
}

/// A short digest of the conditions a test ran under. Two runs are interchangeable only if it
/// matches: the same duration, knobs, accelerator and VM size. Knobs are sorted first, so
/// their order on the command line does not matter.
pub fn condition_digest(
    duration_ms: u64,
    knobs: &[(String, String)],
    accel: &str,
    cpus: u32,
    memory_mib: u32,
) -> String {
    let mut knobs: Vec<&(String, String)> = knobs.iter().collect();
    knobs.sort();
    // Versioned, so a change of this canonical form can never match an old digest.
    let mut canon = format!(
        "lab-condition/1\nduration_ms={duration_ms}\naccel={accel}\ncpus={cpus}\nmemory_mib={memory_mib}\n"
    );
    for (k, v) in knobs {
        canon.push_str(&format!("knob {k}={v}\n"));
    }
    let mut id = hex::encode(Sha256::digest(canon.as_bytes()));
    id.truncate(16);
    id
}

impl Store {
    // ----- sessions -----

    /// Starts a session of `kind` (`compare`, `bisect`, `gate`); `key` is a digest of what
    /// defines it, for [`Store::open_session`] to find it again.
    pub fn begin_session(
        &mut self,
        kind: &str,
        key: &str,
        args_json: &str,
    ) -> Result<i64, StoreError> {
        self.write(
            |path, source| StoreError::BeginSession {
                path,
                kind: kind.to_owned(),
                source,
            },
            |tx| {
                tx.execute(
                    "INSERT INTO sessions (kind, key, args_json, status, created_at, updated_at) VALUES (?1, ?2, ?3, 'running', ?4, ?4)",
                    params![kind, key, args_json, now_rfc3339()],
                )?;
                Ok(tx.last_insert_rowid())
            },
        )
    }

    /// Saves where a session stands, for a resume to pick up.
    pub fn set_session_state(&mut self, id: i64, state_json: &str) -> Result<(), StoreError> {
        self.update_row(
            |path, source| StoreError::UpdateSession { path, id, source },
            |path| StoreError::NoSuchSession { path, id },
            "UPDATE sessions SET state_json = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, state_json, now_rfc3339()],
        )
    }

    /// Closes a session with its status (`done`, `interrupted`, `infra`...) and its report.
    pub fn finish_session(
        &mut self,
        id: i64,
        status: &str,
        report_json: &str,
    ) -> Result<(), StoreError> {
        self.update_row(
            |path, source| StoreError::UpdateSession { path, id, source },
            |path| StoreError::NoSuchSession { path, id },
            "UPDATE sessions SET status = ?2, report_json = ?3, updated_at = ?4, finished_at = ?4 WHERE id = ?1",
            params![id, status, report_json, now_rfc3339()],
        )
    }

    /// One `UPDATE` of a row the caller names by id. An update that finds no row has changed
    /// nothing, but the caller named a session or run that is not there: a bug or a foreign
    /// file, so it is the error `missing` builds, never something to pass over.
    fn update_row(
        &mut self,
        fail: impl FnOnce(PathBuf, rusqlite::Error) -> StoreError,
        missing: impl FnOnce(PathBuf) -> StoreError,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<(), StoreError> {
        match self.write(fail, |tx| tx.execute(sql, params))? {
            0 => Err(missing(self.path.clone())),
            _ => Ok(()),
        }
    }

    // ----- runs -----

    /// Records a run before it starts, with the digest of each test program it carries.
    pub fn begin_run(&mut self, run: &NewRun<'_>) -> Result<i64, StoreError> {
        self.write(
            |path, source| StoreError::BeginRun {
                path,
                kernel_key: run.kernel_key.to_owned(),
                source,
            },
            |tx| {
                tx.execute(
                    "INSERT INTO runs (session_id, side, batch, arch, kernel_key, kernel_label, image_digest, condition, dir, started_at, engine, job_id, node)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    params![
                        run.session,
                        run.side,
                        run.batch,
                        run.arch.name(),
                        run.kernel_key,
                        run.kernel_label,
                        run.image_digest,
                        run.condition,
                        run.dir.to_string_lossy(),
                        now_rfc3339(),
                        run.placement.engine,
                        run.placement.job,
                        run.placement.node,
                    ],
                )?;
                let id = tx.last_insert_rowid();
                let mut insert = tx.prepare(
                    "INSERT OR REPLACE INTO run_tests (run_id, test, digest) VALUES (?1, ?2, ?3)",
                )?;
                for (name, digest) in run.test_digests {
                    let test = name.strip_prefix(GUEST_BIN_PREFIX).unwrap_or(name);
                    insert.execute(params![id, test, digest])?;
                }
                Ok(id)
            },
        )
    }

    /// Records one outcome with its metrics and crash reports, in one transaction: after
    /// this returns, the outcome survives anything that happens to the process.
    pub fn add_outcome(&mut self, run_id: i64, outcome: &TestOutcome) -> Result<i64, StoreError> {
        let json = serde_json::to_string(outcome).map_err(|source| StoreError::EncodeOutcome {
            path: self.path.clone(),
            test: outcome.test.clone(),
            source,
        })?;
        self.write(
            |path, source| StoreError::AddOutcome {
                path,
                run_id,
                test: outcome.test.clone(),
                source,
            },
            |tx| {
                tx.execute(
                    "INSERT INTO outcomes (run_id, test, arch, iteration, seed, kind, summary, duration_ms, json, recorded_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        run_id,
                        outcome.test,
                        outcome.arch.name(),
                        outcome.iteration,
                        // Seeds use all 64 bits; SQLite integers are signed.
                        outcome.seed.to_string(),
                        outcome.kind.as_str(),
                        outcome.summary,
                        i64::try_from(outcome.duration_ms).unwrap_or(i64::MAX),
                        json,
                        now_rfc3339(),
                    ],
                )?;
                let outcome_id = tx.last_insert_rowid();
                if let Some(result) = &outcome.result {
                    let mut insert = tx.prepare(
                        "INSERT INTO metrics (outcome_id, name, value) VALUES (?1, ?2, ?3)",
                    )?;
                    // SQLite stores NaN as NULL; a metric that is not a number is no sample.
                    // The outcome's JSON keeps what the test said.
                    for (name, value) in result.metrics.iter().filter(|(_, v)| v.is_finite()) {
                        insert.execute(params![outcome_id, name, value])?;
                    }
                }
                let mut insert = tx.prepare(
                    "INSERT INTO crashes (outcome_id, kind, title, fingerprint, fingerprint_id, excerpt)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for c in &outcome.crashes {
                    insert.execute(params![
                        outcome_id,
                        c.kind.as_str(),
                        c.title,
                        c.fingerprint.to_string(),
                        c.fingerprint.id(),
                        c.excerpt,
                    ])?;
                }
                Ok(outcome_id)
            },
        )
    }

    /// Closes a run with its manifest.
    pub fn finish_run(&mut self, run_id: i64, manifest: &RunManifest) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(manifest).map_err(|source| StoreError::EncodeManifest {
                path: self.path.clone(),
                run_id,
                source,
            })?;
        self.update_row(
            |path, source| StoreError::FinishRun {
                path,
                run_id,
                source,
            },
            |path| StoreError::NoSuchRun { path, run_id },
            "UPDATE runs SET manifest_json = ?2, finished_at = ?3 WHERE id = ?1",
            params![run_id, json, now_rfc3339()],
        )
    }
}

// ----- the recorder -----

/// How every verb writes its runs, outcomes and session updates to the results store, with
/// one policy for when the store fails: a store failure is never a failure of the run.
///
/// - **The run is never lost.** `run::run` keeps each run whole in its own directory
///   (`results.jsonl` as outcomes arrive, [`MANIFEST_FILE`] at the end) whatever the store
///   does, and warns when it cannot save that manifest.
/// - **The first failure is reported at once** through `tracing::warn!`, with its causes and
///   the store's path, and the verb goes on.
/// - **Later failures are counted**, each shown at debug level (`-vv`), and summarised once:
///   [`Recorder::finish`] returns a [`RecordSummary`] for the verb to print.
/// - **A run whose manifest cannot be written to the store says so** at once, however many
///   failures came before: its row would otherwise look like an interrupted run.
///
/// The tasks of one verb share it (behind an `Arc`); each call holds the store for one
/// write, which waits up to [`super::BUSY_TIMEOUT`] when another lab holds the file.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    state: Mutex<Recording>,
}

#[derive(Debug)]
struct Recording {
    /// `None` when the store could not be opened: runs go on unrecorded.
    store: Option<Store>,
    failures: u64,
    first: Option<String>,
    /// Directories of the runs whose record in the store is missing or incomplete.
    incomplete: BTreeSet<PathBuf>,
}

/// A run as the [`Recorder`] knows it: its row in the store, if it got one, and its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRun {
    id: Option<i64>,
    dir: PathBuf,
}

impl RecordedRun {
    /// The run's row in the store; `None` when it could not be recorded there.
    pub fn id(&self) -> Option<i64> {
        self.id
    }

    /// The run directory, which holds the run whatever the store did.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What a [`Recorder`] could not write, for the verb to print once at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    pub store: PathBuf,
    /// Store operations that failed, the first included.
    pub failures: u64,
    /// The first failure with its causes, as it was warned about.
    pub first: Option<String>,
    /// Runs whose record in the store is missing or incomplete.
    pub incomplete_runs: Vec<PathBuf>,
    /// Those of them whose run directory is not whole either (no manifest or no results
    /// file: the disk the store is on was full, or the run's folder is gone).
    pub not_whole: Vec<PathBuf>,
}

/// Whether a run directory holds what the store would have been rebuilt from.
fn run_dir_is_whole(dir: &Path) -> bool {
    let has =
        |name: &str| std::fs::metadata(dir.join(name)).is_ok_and(|m| m.is_file() && m.len() > 0);
    has(MANIFEST_FILE) && has("results.jsonl")
}

impl RecordSummary {
    /// Whether everything the verb recorded reached the store.
    pub fn is_clean(&self) -> bool {
        self.failures == 0
    }
}

impl fmt::Display for RecordSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = self.store.display();
        if self.is_clean() {
            return write!(f, "results store {store}: everything recorded");
        }
        let plural = |one: bool| if one { "" } else { "s" };
        let n = self.failures;
        write!(
            f,
            "results store {store}: {n} operation{} failed",
            plural(n == 1)
        )?;
        if let Some(first) = &self.first {
            write!(f, " (the first: {first})")?;
        }
        if let Some(dir) = self.incomplete_runs.first() {
            let k = self.incomplete_runs.len();
            write!(
                f,
                "; {k} run{} missing there or incomplete (the first in {})",
                plural(k == 1),
                dir.display()
            )?;
        }
        if let Some(dir) = self.not_whole.first() {
            let k = self.not_whole.len();
            return write!(
                f,
                "; {k} of them not whole in their run directory either ({MANIFEST_FILE} or \
                 results.jsonl missing or empty; the first: {}): those runs are lost",
                dir.display()
            );
        }
        write!(
            f,
            "; every run is whole in its run directory ({MANIFEST_FILE}, results.jsonl)"
        )
    }
}

impl Recorder {
    /// Opens the store at `path` for a verb that can go on without it (`lab run`, `lab
    /// selftest`): a store that cannot be opened is the first failure, and the runs go on
    /// unrecorded.
    pub fn open(path: &Path) -> Recorder {
        match Store::open(path) {
            Ok(store) => Recorder::new(store),
            Err(e) => {
                let mut recording = Recording::new(None);
                recording.failed(&e);
                Recorder {
                    path: path.to_owned(),
                    state: Mutex::new(recording),
                }
            }
        }
    }

    /// Records into a store the verb opened itself, because it could not start without it
    /// (a session to begin or resume: compare, bisect).
    pub fn new(store: Store) -> Recorder {
        Recorder {
            path: store.path().to_owned(),
            state: Mutex::new(Recording::new(Some(store))),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a run before it starts. The run goes on whether or not this worked.
    pub fn begin_run(&self, run: &NewRun<'_>) -> RecordedRun {
        let mut recording = self.lock();
        let id = recording.attempt(|s| s.begin_run(run));
        if id.is_none() {
            recording.incomplete.insert(run.dir.to_owned());
        }
        RecordedRun {
            id,
            dir: run.dir.to_owned(),
        }
    }

    /// Records one outcome of `run`; nothing for a run that has no row.
    pub fn add_outcome(&self, run: &RecordedRun, outcome: &TestOutcome) {
        let Some(id) = run.id else { return };
        let mut recording = self.lock();
        if recording.attempt(|s| s.add_outcome(id, outcome)).is_none() {
            recording.incomplete.insert(run.dir.clone());
        }
    }

    /// Closes `run` with its manifest; a run that has a row but cannot get its manifest into
    /// it says so.
    pub fn finish_run(&self, run: &RecordedRun, manifest: &RunManifest) {
        let Some(id) = run.id else { return };
        let mut recording = self.lock();
        if recording.attempt(|s| s.finish_run(id, manifest)).is_none() {
            recording.incomplete.insert(run.dir.clone());
            tracing::warn!(
                "run {id} has no manifest in the results store {} and will be listed as unfinished there; its record is {}",
                self.path.display(),
                run.dir.join(MANIFEST_FILE).display()
            );
        }
    }

    /// Saves where a session stands, for a resume to pick up.
    pub fn set_session_state(&self, id: i64, state_json: &str) {
        self.lock().attempt(|s| s.set_session_state(id, state_json));
    }

    /// Closes a session with its status and report.
    pub fn finish_session(&self, id: i64, status: &str, report_json: &str) {
        self.lock()
            .attempt(|s| s.finish_session(id, status, report_json));
    }

    /// Reads from the store under the same policy: a failure is reported or counted like a
    /// failed write, and the caller goes on without what it asked for (`None`).
    pub fn read<T>(&self, query: impl FnOnce(&Store) -> Result<T, StoreError>) -> Option<T> {
        self.lock().attempt(|s| query(s))
    }

    /// What could not be recorded so far. A verb calls it once, when its runs are done, and
    /// prints it unless [`RecordSummary::is_clean`].
    pub fn finish(&self) -> RecordSummary {
        let recording = self.lock();
        RecordSummary {
            store: self.path.clone(),
            failures: recording.failures,
            first: recording.first.clone(),
            incomplete_runs: recording.incomplete.iter().cloned().collect(),
            not_whole: recording
                .incomplete
                .iter()
                .filter(|d| !run_dir_is_whole(d))
                .cloned()
                .collect(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Recording> {
        // A task that panicked while holding the store left the file consistent (its write
        // was a transaction, rolled back when dropped); at worst a count is one short.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Recording {
    fn new(store: Option<Store>) -> Recording {
        Recording {
            store,
            failures: 0,
            first: None,
            incomplete: BTreeSet::new(),
        }
    }

    /// Runs `op` on the store, if there is one; a failure is reported or counted and
    /// becomes `None`.
    fn attempt<T>(&mut self, op: impl FnOnce(&mut Store) -> Result<T, StoreError>) -> Option<T> {
        let result = op(self.store.as_mut()?);
        result.map_err(|e| self.failed(&e)).ok()
    }

    fn failed(&mut self, e: &StoreError) {
        self.failures += 1;
        // Every StoreError names the store's file, so the text carries the path.
        let text = e.with_causes();
        if self.first.is_none() {
            tracing::warn!(
                "{text}; runs go on and each stays whole in its run directory; later results store failures are counted and summarised at the end"
            );
            self.first = Some(text);
        } else {
            tracing::debug!("{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_digest_ignores_knob_order_and_sees_everything_else() {
        let k = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter().map(|(a, b)| ((*a).into(), (*b).into())).collect()
        };
        let base = condition_digest(3000, &k(&[("a", "1"), ("b", "2")]), "tcg", 2, 512);
        assert_eq!(base.len(), 16);
        assert!(base.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            base,
            condition_digest(3000, &k(&[("b", "2"), ("a", "1")]), "tcg", 2, 512)
        );
        for other in [
            condition_digest(3001, &k(&[("a", "1"), ("b", "2")]), "tcg", 2, 512),
            condition_digest(3000, &k(&[("a", "1"), ("b", "3")]), "tcg", 2, 512),
            condition_digest(3000, &k(&[("a", "1")]), "tcg", 2, 512),
            condition_digest(3000, &k(&[("a", "1"), ("b", "2")]), "kvm", 2, 512),
            condition_digest(3000, &k(&[("a", "1"), ("b", "2")]), "tcg", 4, 512),
            condition_digest(3000, &k(&[("a", "1"), ("b", "2")]), "tcg", 2, 1024),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn test_digests_keep_only_guest_tests_by_name() {
        let programs: BTreeMap<String, String> = [
            ("sbin/init", "i"),
            ("lab/bin/futex_errno", "f"),
            ("lab/bin/pipe_excl", "p"),
        ]
        .iter()
        .map(|(a, b)| ((*a).into(), (*b).into()))
        .collect();
        let d = test_digests(&programs);
        assert_eq!(d.len(), 2);
        assert_eq!(d["futex_errno"], "f");
        assert_eq!(d["pipe_excl"], "p");
    }

    #[test]
    fn missing_rows_are_errors_not_silence() {
        let mut store = Store::open_in_memory().expect("open");
        assert!(matches!(
            store.finish_session(42, "done", "{}"),
            Err(StoreError::NoSuchSession { id: 42, .. })
        ));
        assert!(matches!(
            store.set_session_state(42, "{}"),
            Err(StoreError::NoSuchSession { id: 42, .. })
        ));
        assert!(store.session(42).expect("read").is_none());
        let digests = BTreeMap::new();
        let placement = Placement::this_host();
        let run = NewRun {
            session: Some(42),
            side: None,
            batch: None,
            arch: Arch::X86_64,
            kernel_key: "k",
            kernel_label: "base",
            image_digest: "i",
            test_digests: &digests,
            condition: "c",
            dir: Path::new("/tmp/x"),
            placement: &placement,
        };
        // Foreign keys are on: a run of a session that does not exist is refused.
        assert!(matches!(
            store.begin_run(&run),
            Err(StoreError::BeginRun { .. })
        ));
    }

    fn new_run<'a>(
        session: Option<i64>,
        digests: &'a BTreeMap<String, String>,
        dir: &'a Path,
    ) -> NewRun<'a> {
        NewRun {
            session,
            side: None,
            batch: None,
            arch: Arch::X86_64,
            kernel_key: "k",
            kernel_label: "base",
            image_digest: "i",
            test_digests: digests,
            condition: "c",
            dir,
            placement: Box::leak(Box::new(Placement {
                engine: "slurm".into(),
                job: Some("77_1".into()),
                node: "n2".into(),
            })),
        }
    }

    fn outcome() -> TestOutcome {
        TestOutcome::infra("futex_errno", Arch::X86_64, 0, 1, "boot failed".into())
    }

    #[test]
    fn a_recorder_writes_runs_and_sessions_and_finishes_clean() {
        let mut store = Store::open_in_memory().expect("open");
        let session = store.begin_session("compare", "k", "{}").expect("session");
        let recorder = Recorder::new(store);
        let digests = BTreeMap::from([("futex_errno".to_owned(), "aa".to_owned())]);
        let run = recorder.begin_run(&new_run(Some(session), &digests, Path::new("/runs/1")));
        assert!(run.id().is_some());
        assert_eq!(run.dir(), Path::new("/runs/1"));
        recorder.add_outcome(&run, &outcome());
        recorder.finish_run(&run, &crate::results::manifest::tests::manifest());
        recorder.set_session_state(session, r#"{"batch":1}"#);
        recorder.finish_session(session, "done", "{}");

        let runs = recorder
            .read(|s| s.session_runs(session))
            .expect("readable");
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].outcomes, 1);
        assert!(runs[0].finished_at.is_some());
        assert_eq!(
            (
                runs[0].engine.as_str(),
                runs[0].job.as_deref(),
                runs[0].node.as_deref()
            ),
            ("slurm", Some("77_1"), Some("n2")),
            "the placement is stored with the run"
        );
        let row = recorder
            .read(|s| s.session(session))
            .flatten()
            .expect("row");
        assert_eq!(row.status, "done");
        let summary = recorder.finish();
        assert!(summary.is_clean(), "{summary}");
        assert_eq!(
            summary.to_string(),
            "results store :memory:: everything recorded"
        );
    }

    #[test]
    fn store_failures_are_counted_and_never_stop_a_run() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("results.db");
        let recorder = Recorder::open(&path);
        let digests = BTreeMap::new();
        // Foreign keys are on: a run of a session that does not exist gets no row...
        let orphan = recorder.begin_run(&new_run(Some(42), &digests, Path::new("/runs/orphan")));
        assert_eq!(orphan.id(), None);
        // ...and what follows for it is not even tried.
        recorder.add_outcome(&orphan, &outcome());
        recorder.finish_run(&orphan, &crate::results::manifest::tests::manifest());
        recorder.set_session_state(42, "{}");
        let good = recorder.begin_run(&new_run(None, &digests, Path::new("/runs/good")));
        assert!(good.id().is_some());
        recorder.add_outcome(&good, &outcome());
        let gone = RecordedRun {
            id: Some(999),
            dir: PathBuf::from("/runs/gone"),
        };
        recorder.finish_run(&gone, &crate::results::manifest::tests::manifest());

        let summary = recorder.finish();
        assert!(!summary.is_clean());
        // The orphan run, the session state, the manifest of a run that is not there.
        assert_eq!(summary.failures, 3);
        assert_eq!(
            summary.incomplete_runs,
            vec![PathBuf::from("/runs/gone"), PathBuf::from("/runs/orphan")]
        );
        let first = summary.first.clone().expect("first failure kept");
        assert!(
            first.starts_with("failed to record a run of kernel k in the results store "),
            "{first}"
        );
        assert!(first.contains(&path.display().to_string()), "{first}");
        assert!(first.contains("FOREIGN KEY"), "the cause is kept: {first}");
        let text = summary.to_string();
        // Neither run directory exists here, so the summary must not call them whole.
        for part in [
            "3 operations failed",
            "2 runs missing there or incomplete (the first in /runs/gone)",
            "2 of them not whole in their run directory either",
            "the first: /runs/gone): those runs are lost",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        assert!(!text.contains("every run is whole"), "{text}");
        // What could be recorded was.
        let runs = recorder.read(|s| s.runs(None, 10)).expect("readable");
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].outcomes, 1);
    }

    #[test]
    fn a_store_that_cannot_be_opened_leaves_every_run_to_its_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let blocker = tmp.path().join("file");
        std::fs::write(&blocker, "not a folder").expect("write");
        let path = blocker.join("results.db");
        let recorder = Recorder::open(&path);
        assert_eq!(recorder.path(), path);
        let digests = BTreeMap::new();
        let run_dir = tmp.path().join("runs/1");
        std::fs::create_dir_all(&run_dir).expect("mkdir");
        std::fs::write(run_dir.join(MANIFEST_FILE), "{}").expect("write");
        std::fs::write(run_dir.join("results.jsonl"), "{}\n").expect("write");
        let run = recorder.begin_run(&new_run(None, &digests, &run_dir));
        assert_eq!(run.id(), None);
        recorder.add_outcome(&run, &outcome());
        recorder.finish_run(&run, &crate::results::manifest::tests::manifest());
        recorder.finish_session(1, "done", "{}");
        assert_eq!(recorder.read(|s| s.runs(None, 1)), None);

        let summary = recorder.finish();
        // Only the open failed; nothing else could be tried.
        assert_eq!(summary.failures, 1);
        assert_eq!(summary.incomplete_runs, vec![run_dir.clone()]);
        let store = path.display();
        assert_eq!(
            summary.to_string(),
            format!(
                "results store {store}: 1 operation failed (the first: failed to create the folder of the results store {store}: {}); 1 run missing there or incomplete (the first in {}); every run is whole in its run directory (manifest.json, results.jsonl)",
                std::fs::create_dir_all(&blocker).expect_err("a file is no folder"),
                run_dir.display()
            )
        );
    }

    #[test]
    fn a_recorder_is_shared_by_the_tasks_of_a_verb() {
        fn shared<T: Send + Sync>() {}
        shared::<Recorder>();
    }
}
