//! The schema of the results store, and how a file is brought up to it.
//!
//! The version lives in SQLite's `user_version`. [`MIGRATIONS`] is an ordered list of SQL
//! scripts: entry `i` takes a file from version `i` to `i + 1`. The pending scripts and the
//! version bump run in one `BEGIN IMMEDIATE` transaction, so a failed migration leaves the
//! file as it was, and two labs that open an old file at once migrate it once. A file from a
//! newer lab is refused rather than guessed at.

use std::path::Path;

use rusqlite::{params, Connection, TransactionBehavior};

use super::{now_rfc3339, StoreError};

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
    // v2: where each run happened (exec/): the engine, its job id and the node. Runs of
    // earlier labs were all local; their host was not recorded.
    r#"
ALTER TABLE runs ADD COLUMN engine TEXT NOT NULL DEFAULT 'local';
ALTER TABLE runs ADD COLUMN job_id TEXT;
ALTER TABLE runs ADD COLUMN node TEXT;
"#,
];

/// The schema version this lab writes and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the file up to `migrations.len()`, all in one transaction, and refuses a file from a
/// newer lab. The version is read again under the write lock, because another lab process
/// may have migrated the file meanwhile.
pub(super) fn apply_migrations(
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

pub(super) fn read_version(conn: &Connection, path: &Path) -> Result<u32, StoreError> {
    conn.pragma_query_value(None, "user_version", |r| r.get::<_, u32>(0))
        .map_err(|source| StoreError::ReadVersion {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
