//! Writing to the results store: sessions, runs, and each outcome with its metrics and
//! crash fingerprints.
//!
//! Every write goes through [`Store::write`]: one `BEGIN IMMEDIATE` transaction, so the lock
//! is taken up front, a busy file is waited on instead of failing halfway, and an outcome is
//! on disk, whole, the moment its call returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::params;
use sha2::{Digest, Sha256};

use super::{now_rfc3339, Store, StoreError};
use crate::arch::Arch;
use crate::results::manifest::RunManifest;
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
                    "INSERT INTO runs (session_id, side, batch, arch, kernel_key, kernel_label, image_digest, condition, dir, started_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
        };
        // Foreign keys are on: a run of a session that does not exist is refused.
        assert!(matches!(
            store.begin_run(&run),
            Err(StoreError::BeginRun { .. })
        ));
    }
}
