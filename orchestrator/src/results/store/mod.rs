//! The results store: every run, outcome, metric sample, crash fingerprint and manifest lab
//! has produced, in one SQLite file in the cache folder.
//!
//! It exists so that nothing a long comparison measured is lost: each outcome is committed in
//! its own transaction the moment it arrives, so an interrupted `lab compare` keeps every test
//! that finished, and the next `lab compare` with the same arguments resumes its session and
//! reuses stored outcomes of the same kernel, test binary and run conditions instead of
//! running them again.
//!
//! The schema is versioned with SQLite's `user_version`; [`MIGRATIONS`] is an ordered list of
//! SQL scripts, applied in one transaction, so a schema change is one more entry. A file
//! written by a newer lab is refused rather than guessed at.
//!
//! Several `lab` processes may share the file (a `lab run` while a `lab compare` goes on):
//! WAL lets readers go on while one writes, every write takes the lock up front
//! (`BEGIN IMMEDIATE`), and a busy database is waited on for up to [`BUSY_TIMEOUT`].
//!
//! The code is split by what it does to the file: `schema.rs` brings a file up to the
//! current schema, `recorder.rs` writes (sessions, runs, outcomes with their metrics and
//! crashes), `queries.rs` reads (listings, sessions to resume, outcomes to reuse) and
//! `export.rs` dumps every table as JSON lines. This file owns the connection: opening,
//! configuring, the one write-transaction helper, the error type and the timestamps.

mod export;
mod queries;
mod recorder;
mod schema;

pub use queries::{RunRow, SessionRow, StoredOutcome};
pub use recorder::{condition_digest, test_digests, NewRun, RecordSummary, RecordedRun, Recorder};
pub use schema::{MIGRATIONS, SCHEMA_VERSION};

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, Transaction, TransactionBehavior};

/// How long a write waits for another lab process that holds the database.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong in the store. Each message reads after "failed to" and names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("create the folder of the results store {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("open the results store {}: is the file readable and writable, and not a database of another program?", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("configure the results store {} (journal mode, busy timeout, foreign keys)", path.display())]
    Configure {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("read the schema version of the results store {}", path.display())]
    ReadVersion {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("open the results store {}: its schema version {found} is newer than the {supported} this lab understands; use a newer lab, or move the file away to start a fresh store", path.display())]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("migrate the results store {} to schema version {version}", path.display())]
    Migrate {
        path: PathBuf,
        version: u32,
        #[source]
        source: rusqlite::Error,
    },
    #[error("record a new {kind} session in the results store {}", path.display())]
    BeginSession {
        path: PathBuf,
        kind: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("update session {id} in the results store {}", path.display())]
    UpdateSession {
        path: PathBuf,
        id: i64,
        #[source]
        source: rusqlite::Error,
    },
    #[error("update session {id} in the results store {}: there is no such session", path.display())]
    NoSuchSession { path: PathBuf, id: i64 },
    #[error("read sessions from the results store {}", path.display())]
    ReadSessions {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("record a run of kernel {kernel_key} in the results store {}", path.display())]
    BeginRun {
        path: PathBuf,
        kernel_key: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("encode the {test} outcome as JSON for the results store {}", path.display())]
    EncodeOutcome {
        path: PathBuf,
        test: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("record the {test} outcome of run {run_id} in the results store {}", path.display())]
    AddOutcome {
        path: PathBuf,
        run_id: i64,
        test: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("encode the manifest of run {run_id} as JSON for the results store {}", path.display())]
    EncodeManifest {
        path: PathBuf,
        run_id: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error("record the end of run {run_id} in the results store {}", path.display())]
    FinishRun {
        path: PathBuf,
        run_id: i64,
        #[source]
        source: rusqlite::Error,
    },
    #[error("record the end of run {run_id} in the results store {}: there is no such run", path.display())]
    NoSuchRun { path: PathBuf, run_id: i64 },
    #[error("read runs from the results store {}", path.display())]
    ReadRuns {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("read stored outcomes of {test} from the results store {}", path.display())]
    ReadOutcomes {
        path: PathBuf,
        test: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("decode stored outcome {outcome_id} from the results store {}: it was written by an incompatible lab", path.display())]
    DecodeOutcome {
        path: PathBuf,
        outcome_id: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error("read the {table} table of the results store {} for export", path.display())]
    ExportRead {
        path: PathBuf,
        table: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("write the export of the results store {}", path.display())]
    ExportWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// "failed to ...: cause: cause": the error and its causes on one line, for a warning or a
    /// summary rather than an exit.
    pub fn with_causes(&self) -> String {
        format!("failed to {}", crate::io_error::with_causes(self))
    }
}

/// `unix_secs` as an RFC 3339 UTC timestamp, `2024-05-01T12:34:56Z`: whole seconds and a
/// `Z`, the form every timestamp in the store has had since the first schema, so that old
/// files sort and compare with new rows as text. Seconds outside what `jiff` can represent
/// (years -9999 to 9999) are clamped to its range, which no real clock reaches.
pub fn rfc3339(unix_secs: i64) -> String {
    let clamped = unix_secs.clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    let at = Timestamp::from_second(clamped).unwrap_or(Timestamp::UNIX_EPOCH);
    stamp(at)
}

/// Now, as [`rfc3339`].
pub fn now_rfc3339() -> String {
    // `Timestamp::now` panics on a clock outside jiff's range; a broken clock should cost a
    // wrong timestamp, not the run.
    let now = Timestamp::try_from(std::time::SystemTime::now()).unwrap_or(Timestamp::UNIX_EPOCH);
    stamp(now)
}

/// Precision 0 truncates the fraction (as the seconds of a Unix time do) instead of printing
/// it when it is not zero.
fn stamp(at: Timestamp) -> String {
    format!("{at:.0}")
}

/// The results database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store at `path` and brings its schema up to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: path.to_owned(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        Store::setup(conn, path.to_owned())
    }

    /// A store that lives as long as the value: for tests and dry runs.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        Store::setup(conn, path)
    }

    /// Where the store lives in a cache folder.
    pub fn default_path(cache_dir: &Path) -> PathBuf {
        cache_dir.join("results.db")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn setup(conn: Connection, path: PathBuf) -> Result<Store, StoreError> {
        let configure = |source| StoreError::Configure {
            path: path.clone(),
            source,
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(configure)?;
        // Answers `memory` for an in-memory database, which is fine.
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(configure)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(configure)?;
        let mut store = Store { conn, path };
        store.migrate()?;
        Ok(store)
    }

    /// The schema version of the file: [`SCHEMA_VERSION`] once open.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema::read_version(&self.conn, &self.path)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        schema::apply_migrations(&mut self.conn, &self.path, MIGRATIONS)
    }

    /// Runs `body` as one write: a `BEGIN IMMEDIATE` transaction, which takes the lock up
    /// front so that a busy file is waited on (up to [`BUSY_TIMEOUT`]) rather than failed
    /// halfway, committed only if `body` succeeds and rolled back when it is dropped
    /// otherwise. Any SQLite error, from taking the lock to the commit, becomes the error that
    /// `fail` builds from the store's path and the cause.
    fn write<T>(
        &mut self,
        fail: impl FnOnce(PathBuf, rusqlite::Error) -> StoreError,
        body: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let written = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = body(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        written.map_err(|source| fail(self.path.clone(), source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // 2000-02-29 is a leap day of a year divisible by 400.
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_714_566_896), "2024-05-01T12:34:56Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(now_rfc3339().len(), "2024-05-01T12:34:56Z".len());
    }

    #[test]
    fn timestamps_keep_whole_seconds_and_never_panic() {
        // A fraction is cut, not rounded and not printed: rows written before jiff had none.
        let late = Timestamp::new(1_714_566_896, 999_999_999).expect("in range");
        assert_eq!(stamp(late), "2024-05-01T12:34:56Z");
        for extreme in [i64::MIN, i64::MAX] {
            assert!(rfc3339(extreme).ends_with('Z'));
        }
    }

    #[test]
    fn an_empty_store_migrates_to_the_current_version() {
        let store = Store::open_in_memory().expect("open");
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
        let applied: Vec<u32> = store
            .conn
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(applied, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
        let fk: i64 = store
            .conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .expect("pragma");
        assert_eq!(fk, 1);
    }

    #[test]
    fn a_file_store_uses_wal_and_reopens_without_migrating_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/cache/results.db");
        let mut store = Store::open(&path).expect("open");
        let mode: String = store
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("pragma");
        assert_eq!(mode, "wal");
        let id = store.begin_session("compare", "k", "{}").expect("session");
        drop(store);
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
        let migrations: i64 = store
            .conn
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .expect("count");
        assert_eq!(migrations, i64::from(SCHEMA_VERSION));
        assert_eq!(store.session(id).expect("read").expect("kept").key, "k");
    }

    #[test]
    fn runs_of_a_v1_store_read_as_local_after_the_placement_migration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("results.db");
        {
            let mut conn = Connection::open(&path).expect("raw open");
            schema::apply_migrations(&mut conn, &path, &MIGRATIONS[..1]).expect("v1");
            conn.execute(
                "INSERT INTO runs (arch, kernel_key, kernel_label, image_digest, condition, dir, started_at)
                 VALUES ('x86_64', 'k', 'base', 'i', 'c', '/runs/old', '2026-01-01T00:00:00Z')",
                [],
            )
            .expect("a v1 run");
        }
        let store = Store::open(&path).expect("migrates");
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
        let runs = store.runs(None, 10).expect("runs");
        assert_eq!(runs.len(), 1);
        assert_eq!(
            (
                runs[0].engine.as_str(),
                runs[0].job.clone(),
                runs[0].node.clone()
            ),
            ("local", None, None)
        );
    }

    #[test]
    fn a_store_from_a_newer_lab_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("results.db");
        drop(Store::open(&path).expect("open"));
        {
            let conn = Connection::open(&path).expect("raw open");
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .expect("bump");
        }
        let err = Store::open(&path).expect_err("refused");
        match &err {
            StoreError::TooNew {
                found, supported, ..
            } => {
                assert_eq!(*found, SCHEMA_VERSION + 1);
                assert_eq!(*supported, SCHEMA_VERSION);
            }
            other => panic!("wrong error: {other}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("newer"), "{msg}");
    }
}
