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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::arch::Arch;
use crate::results::manifest::RunManifest;
use crate::results::{OutcomeKind, TestOutcome};

/// Schema scripts, oldest first: entry `i` takes the schema from version `i` to `i + 1`.
/// Never edit an entry that has shipped; add one.
pub const MIGRATIONS: &[&str] = &[
    // v1: the initial schema.
    r#"
CREATE TABLE schema_migrations (
    version     INTEGER PRIMARY KEY,
    applied_at  TEXT NOT NULL,
    lab_version TEXT NOT NULL
);
CREATE TABLE sessions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    key         TEXT NOT NULL,
    args_json   TEXT NOT NULL,
    state_json  TEXT,
    status      TEXT NOT NULL DEFAULT 'running',
    report_json TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX sessions_resume ON sessions (kind, key, finished_at);
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id    INTEGER REFERENCES sessions (id) ON DELETE SET NULL,
    side          TEXT,
    batch         INTEGER,
    arch          TEXT NOT NULL,
    kernel_key    TEXT NOT NULL,
    kernel_label  TEXT NOT NULL,
    image_digest  TEXT NOT NULL,
    condition     TEXT NOT NULL,
    dir           TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    manifest_json TEXT
);
CREATE INDEX runs_reuse ON runs (kernel_key, arch, condition);
CREATE INDEX runs_session ON runs (session_id);
CREATE TABLE run_tests (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    test   TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (run_id, test)
);
CREATE TABLE outcomes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    test        TEXT NOT NULL,
    arch        TEXT NOT NULL,
    iteration   INTEGER NOT NULL,
    seed        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    summary     TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    json        TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX outcomes_run_test ON outcomes (run_id, test, kind);
CREATE TABLE metrics (
    outcome_id INTEGER NOT NULL REFERENCES outcomes (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    value      REAL NOT NULL,
    PRIMARY KEY (outcome_id, name)
);
CREATE INDEX metrics_name ON metrics (name);
CREATE TABLE crashes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    outcome_id     INTEGER NOT NULL REFERENCES outcomes (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL,
    title          TEXT NOT NULL,
    fingerprint    TEXT NOT NULL,
    fingerprint_id TEXT NOT NULL,
    excerpt        TEXT NOT NULL
);
CREATE INDEX crashes_outcome ON crashes (outcome_id);
CREATE INDEX crashes_fingerprint ON crashes (fingerprint_id);
"#,
];

/// The schema version this lab writes and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a write waits for another lab process that holds the database.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Tables in the order [`Store::export_jsonl`] writes them: parents before children.
const EXPORT_TABLES: [&str; 7] = [
    "schema_migrations",
    "sessions",
    "runs",
    "run_tests",
    "outcomes",
    "metrics",
    "crashes",
];

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

/// One compare, bisect or gate invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionRow {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub args_json: String,
    pub state_json: Option<String>,
    /// `running` until [`Store::finish_session`] sets what it was given.
    pub status: String,
    pub report_json: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
}

/// One call of `run::run`, with how many outcomes it has so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub session: Option<i64>,
    pub side: Option<String>,
    pub batch: Option<u32>,
    pub arch: String,
    pub kernel_key: String,
    pub kernel_label: String,
    pub dir: String,
    pub started_at: String,
    /// `None` for a run that is going on or was interrupted.
    pub finished_at: Option<String>,
    pub outcomes: u64,
    /// Outcomes that count against the kernel: fail, kernel-crash, hang.
    pub failures: u64,
}

/// An outcome read back from the store, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOutcome {
    pub outcome_id: i64,
    pub run_id: i64,
    pub session: Option<i64>,
    pub side: Option<String>,
    pub outcome: TestOutcome,
}

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

/// `unix_secs` as an RFC 3339 UTC timestamp, `2024-05-01T12:34:56Z`.
pub fn rfc3339(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Now, as [`rfc3339`].
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// Days since 1970-01-01 to the proleptic Gregorian (year, month, day), after Howard
/// Hinnant's `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>):
/// shift to eras of 400 years that start on March 1st, so leap days fall at the end.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
        read_version(&self.conn, &self.path)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        apply_migrations(&mut self.conn, &self.path, MIGRATIONS)
    }

    // ----- sessions -----

    /// Starts a session of `kind` (`compare`, `bisect`, `gate`); `key` is a digest of what
    /// defines it, for [`Store::open_session`] to find it again.
    pub fn begin_session(
        &mut self,
        kind: &str,
        key: &str,
        args_json: &str,
    ) -> Result<i64, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::BeginSession {
            path: path.clone(),
            kind: kind.to_owned(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let now = now_rfc3339();
        tx.execute(
            "INSERT INTO sessions (kind, key, args_json, status, created_at, updated_at) VALUES (?1, ?2, ?3, 'running', ?4, ?4)",
            params![kind, key, args_json, now],
        )
        .map_err(err)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(err)?;
        Ok(id)
    }

    /// The latest unfinished session of `kind` with `key`: the one to resume.
    pub fn open_session(&self, kind: &str, key: &str) -> Result<Option<SessionRow>, StoreError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE kind = ?1 AND key = ?2 AND finished_at IS NULL ORDER BY id DESC LIMIT 1"
                ),
                params![kind, key],
                session_row,
            )
            .optional()
            .map_err(|source| StoreError::ReadSessions {
                path: self.path.clone(),
                source,
            })
    }

    /// Saves where a session stands, for a resume to pick up.
    pub fn set_session_state(&mut self, id: i64, state_json: &str) -> Result<(), StoreError> {
        self.update_session(
            id,
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
        let now = now_rfc3339();
        self.update_session(
            id,
            "UPDATE sessions SET status = ?2, report_json = ?3, updated_at = ?4, finished_at = ?4 WHERE id = ?1",
            params![id, status, report_json, now],
        )
    }

    fn update_session(
        &mut self,
        id: i64,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::UpdateSession {
            path: path.clone(),
            id,
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let changed = tx.execute(sql, params).map_err(err)?;
        if changed == 0 {
            return Err(StoreError::NoSuchSession { path, id });
        }
        tx.commit().map_err(err)
    }

    pub fn session(&self, id: i64) -> Result<Option<SessionRow>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"),
                [id],
                session_row,
            )
            .optional()
            .map_err(|source| StoreError::ReadSessions {
                path: self.path.clone(),
                source,
            })
    }

    /// The `limit` newest sessions, newest first.
    pub fn sessions(&self, limit: usize) -> Result<Vec<SessionRow>, StoreError> {
        let err = |source| StoreError::ReadSessions {
            path: self.path.clone(),
            source,
        };
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions ORDER BY id DESC LIMIT ?1"
            ))
            .map_err(err)?;
        let rows = stmt
            .query_map([sql_limit(limit)], session_row)
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok(rows)
    }

    // ----- runs -----

    /// Records a run before it starts, with the digest of each test program it carries.
    pub fn begin_run(&mut self, run: &NewRun<'_>) -> Result<i64, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::BeginRun {
            path: path.clone(),
            kernel_key: run.kernel_key.to_owned(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
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
        )
        .map_err(err)?;
        let id = tx.last_insert_rowid();
        {
            let mut insert = tx
                .prepare(
                    "INSERT OR REPLACE INTO run_tests (run_id, test, digest) VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            for (name, digest) in run.test_digests {
                let test = name.strip_prefix(GUEST_BIN_PREFIX).unwrap_or(name);
                insert.execute(params![id, test, digest]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(id)
    }

    /// Records one outcome with its metrics and crash reports, in one transaction: after
    /// this returns, the outcome survives anything that happens to the process.
    pub fn add_outcome(&mut self, run_id: i64, outcome: &TestOutcome) -> Result<i64, StoreError> {
        let path = self.path.clone();
        let json = serde_json::to_string(outcome).map_err(|source| StoreError::EncodeOutcome {
            path: path.clone(),
            test: outcome.test.clone(),
            source,
        })?;
        let err = |source| StoreError::AddOutcome {
            path: path.clone(),
            run_id,
            test: outcome.test.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
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
        )
        .map_err(err)?;
        let outcome_id = tx.last_insert_rowid();
        if let Some(result) = &outcome.result {
            let mut insert = tx
                .prepare("INSERT INTO metrics (outcome_id, name, value) VALUES (?1, ?2, ?3)")
                .map_err(err)?;
            // SQLite stores NaN as NULL; a metric that is not a number is no sample. The
            // outcome's JSON keeps what the test said.
            for (name, value) in result.metrics.iter().filter(|(_, v)| v.is_finite()) {
                insert
                    .execute(params![outcome_id, name, value])
                    .map_err(err)?;
            }
        }
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO crashes (outcome_id, kind, title, fingerprint, fingerprint_id, excerpt)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(err)?;
            for c in &outcome.crashes {
                insert
                    .execute(params![
                        outcome_id,
                        c.kind.as_str(),
                        c.title,
                        c.fingerprint.to_string(),
                        c.fingerprint.id(),
                        c.excerpt,
                    ])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(outcome_id)
    }

    /// Closes a run with its manifest.
    pub fn finish_run(&mut self, run_id: i64, manifest: &RunManifest) -> Result<(), StoreError> {
        let path = self.path.clone();
        let json =
            serde_json::to_string(manifest).map_err(|source| StoreError::EncodeManifest {
                path: path.clone(),
                run_id,
                source,
            })?;
        let err = |source| StoreError::FinishRun {
            path: path.clone(),
            run_id,
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let changed = tx
            .execute(
                "UPDATE runs SET manifest_json = ?2, finished_at = ?3 WHERE id = ?1",
                params![run_id, json, now_rfc3339()],
            )
            .map_err(err)?;
        if changed == 0 {
            return Err(StoreError::NoSuchRun { path, run_id });
        }
        tx.commit().map_err(err)
    }

    /// The `limit` newest runs, newest first; only those whose kernel key starts with
    /// `kernel_prefix` when given.
    pub fn runs(
        &self,
        kernel_prefix: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRow>, StoreError> {
        let prefix = kernel_prefix.unwrap_or("");
        self.query_runs(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs r WHERE substr(r.kernel_key, 1, length(?1)) = ?1 ORDER BY r.id DESC LIMIT ?2"
            ),
            params![prefix, sql_limit(limit)],
        )
    }

    /// The runs of a session, oldest first.
    pub fn session_runs(&self, session: i64) -> Result<Vec<RunRow>, StoreError> {
        self.query_runs(
            &format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.session_id = ?1 ORDER BY r.id"),
            params![session],
        )
    }

    fn query_runs(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<RunRow>, StoreError> {
        let err = |source| StoreError::ReadRuns {
            path: self.path.clone(),
            source,
        };
        let mut stmt = self.conn.prepare(sql).map_err(err)?;
        let rows = stmt
            .query_map(params, run_row)
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok(rows)
    }

    /// Outcomes usable for reuse: same kernel key, arch, test, test binary digest and
    /// condition, excluding infra-errors, in insertion order. Outcomes of runs that never
    /// finished count: each was whole when it was committed.
    pub fn reusable_outcomes(
        &self,
        kernel_key: &str,
        arch: Arch,
        test: &str,
        test_digest: &str,
        condition: &str,
    ) -> Result<Vec<StoredOutcome>, StoreError> {
        let err = |source| StoreError::ReadOutcomes {
            path: self.path.clone(),
            test: test.to_owned(),
            source,
        };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT o.id, o.run_id, r.session_id, r.side, o.json
                 FROM runs r
                 JOIN run_tests t ON t.run_id = r.id AND t.test = ?3 AND t.digest = ?4
                 JOIN outcomes o ON o.run_id = r.id AND o.test = ?3
                 WHERE r.kernel_key = ?1 AND r.arch = ?2 AND r.condition = ?5
                   AND o.kind <> ?6
                 ORDER BY o.id",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(
                params![
                    kernel_key,
                    arch.name(),
                    test,
                    test_digest,
                    condition,
                    OutcomeKind::InfraError.as_str()
                ],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        rows.into_iter()
            .map(|(outcome_id, run_id, session, side, json)| {
                let outcome =
                    serde_json::from_str(&json).map_err(|source| StoreError::DecodeOutcome {
                        path: self.path.clone(),
                        outcome_id,
                        source,
                    })?;
                Ok(StoredOutcome {
                    outcome_id,
                    run_id,
                    session,
                    side,
                    outcome,
                })
            })
            .collect()
    }

    /// Writes every table as JSON lines, parents first, each object with a `table` field.
    /// Columns that hold JSON are embedded as JSON, not as strings. Reads one snapshot, so a
    /// lab writing meanwhile cannot tear the export. Returns the number of lines.
    pub fn export_jsonl(&self, out: &mut dyn std::io::Write) -> Result<u64, StoreError> {
        // A read transaction: one consistent snapshot of all tables. Dropping it rolls back,
        // which for a reader only ends it.
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(|source| StoreError::ExportRead {
                path: self.path.clone(),
                table: "sessions",
                source,
            })?;
        let mut lines = 0;
        for table in EXPORT_TABLES {
            let err = |source| StoreError::ExportRead {
                path: self.path.clone(),
                table,
                source,
            };
            let mut stmt = tx
                .prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))
                .map_err(err)?;
            let names: Vec<String> = stmt
                .column_names()
                .iter()
                .map(|n| (*n).to_owned())
                .collect();
            let mut rows = stmt.query([]).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                let mut obj = serde_json::Map::new();
                obj.insert("table".into(), table.into());
                for (i, name) in names.iter().enumerate() {
                    let value = row.get_ref(i).map_err(err)?;
                    obj.insert(name.clone(), json_value(name, value));
                }
                let line = serde_json::Value::Object(obj).to_string();
                writeln!(out, "{line}").map_err(|source| StoreError::ExportWrite {
                    path: self.path.clone(),
                    source,
                })?;
                lines += 1;
            }
        }
        out.flush().map_err(|source| StoreError::ExportWrite {
            path: self.path.clone(),
            source,
        })?;
        Ok(lines)
    }
}

/// Brings the file up to `migrations.len()`, all in one transaction, and refuses a file from a
/// newer lab. The version is read again under the write lock, because another lab process
/// may have migrated the file meanwhile.
fn apply_migrations(
    conn: &mut Connection,
    path: &Path,
    migrations: &[&str],
) -> Result<(), StoreError> {
    let target = migrations.len() as u32;
    let found = read_version(conn, path)?;
    if found > target {
        return Err(too_new(path, found, target));
    }
    if found == target {
        return Ok(());
    }
    let migrate_err = |version| {
        move |source| StoreError::Migrate {
            path: path.to_owned(),
            version,
            source,
        }
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(migrate_err(target))?;
    let found = read_version(&tx, path)?;
    if found > target {
        return Err(too_new(path, found, target));
    }
    let now = now_rfc3339();
    for (i, sql) in migrations.iter().enumerate().skip(found as usize) {
        let version = i as u32 + 1;
        tx.execute_batch(sql).map_err(migrate_err(version))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at, lab_version) VALUES (?1, ?2, ?3)",
            params![version, now, env!("CARGO_PKG_VERSION")],
        )
        .map_err(migrate_err(version))?;
    }
    // user_version lives in the file header, which the transaction covers.
    tx.pragma_update(None, "user_version", target)
        .map_err(migrate_err(target))?;
    tx.commit().map_err(migrate_err(target))
}

fn too_new(path: &Path, found: u32, supported: u32) -> StoreError {
    StoreError::TooNew {
        path: path.to_owned(),
        found,
        supported,
    }
}

fn read_version(conn: &Connection, path: &Path) -> Result<u32, StoreError> {
    conn.pragma_query_value(None, "user_version", |r| r.get::<_, u32>(0))
        .map_err(|source| StoreError::ReadVersion {
            path: path.to_owned(),
            source,
        })
}

/// `LIMIT` takes an i64; -1 means none.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(-1)
}

const SESSION_COLUMNS: &str =
    "id, kind, key, args_json, state_json, status, report_json, created_at, finished_at";

fn session_row(r: &Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        key: r.get(2)?,
        args_json: r.get(3)?,
        state_json: r.get(4)?,
        status: r.get(5)?,
        report_json: r.get(6)?,
        created_at: r.get(7)?,
        finished_at: r.get(8)?,
    })
}

/// The failure count matches `OutcomeKind::is_kernel_failure` (checked by a test).
const RUN_COLUMNS: &str = "r.id, r.session_id, r.side, r.batch, r.arch, r.kernel_key, r.kernel_label, r.dir, r.started_at, r.finished_at,
     (SELECT count(*) FROM outcomes o WHERE o.run_id = r.id),
     (SELECT count(*) FROM outcomes o WHERE o.run_id = r.id AND o.kind IN ('fail', 'kernel-crash', 'hang'))";

fn run_row(r: &Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        session: r.get(1)?,
        side: r.get(2)?,
        batch: r.get(3)?,
        arch: r.get(4)?,
        kernel_key: r.get(5)?,
        kernel_label: r.get(6)?,
        dir: r.get(7)?,
        started_at: r.get(8)?,
        finished_at: r.get(9)?,
        outcomes: r.get(10)?,
        failures: r.get(11)?,
    })
}

/// One column of an exported row. Text columns that hold JSON documents (`json`, `*_json`)
/// are parsed, so the export is JSON all the way down.
fn json_value(column: &str, value: ValueRef<'_>) -> serde_json::Value {
    use serde_json::Value;
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            let is_json = column == "json" || column.ends_with("_json");
            match is_json
                .then(|| serde_json::from_str::<Value>(&s).ok())
                .flatten()
            {
                Some(v) => v,
                None => Value::String(s.into_owned()),
            }
        }
        ValueRef::Blob(b) => Value::String(hex::encode(b)),
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

    #[test]
    fn a_new_migration_is_one_entry_and_a_failing_one_changes_nothing() {
        let path = Path::new(":memory:");
        let mut conn = Connection::open_in_memory().expect("open");
        apply_migrations(&mut conn, path, MIGRATIONS).expect("v1");
        let v1_tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .expect("count");

        // A v2 whose second statement fails: nothing of it stays, and the version stays.
        let mut broken = MIGRATIONS.to_vec();
        broken.push("CREATE TABLE extra (x); CREATE TABLE extra (x);");
        let err = apply_migrations(&mut conn, path, &broken).expect_err("fails");
        assert!(
            matches!(err, StoreError::Migrate { version, .. } if version == SCHEMA_VERSION + 1)
        );
        assert_eq!(read_version(&conn, path).expect("version"), SCHEMA_VERSION);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(tables, v1_tables);

        // A good v2 applies on top of v1, is recorded, and makes v1-only labs refuse the file.
        let mut good = MIGRATIONS.to_vec();
        good.push("CREATE TABLE extra (x)");
        apply_migrations(&mut conn, path, &good).expect("v2");
        assert_eq!(
            read_version(&conn, path).expect("version"),
            SCHEMA_VERSION + 1
        );
        let last: u32 = conn
            .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })
            .expect("max");
        assert_eq!(last, SCHEMA_VERSION + 1);
        assert!(matches!(
            apply_migrations(&mut conn, path, MIGRATIONS),
            Err(StoreError::TooNew { found, supported, .. }) if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION
        ));
    }

    #[test]
    fn the_failure_count_matches_the_outcome_model() {
        for kind in [
            OutcomeKind::Pass,
            OutcomeKind::Fail,
            OutcomeKind::KernelCrash,
            OutcomeKind::Hang,
            OutcomeKind::InfraError,
        ] {
            let counted = RUN_COLUMNS.contains(&format!("'{}'", kind.as_str()));
            assert_eq!(counted, kind.is_kernel_failure(), "{kind}");
        }
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
