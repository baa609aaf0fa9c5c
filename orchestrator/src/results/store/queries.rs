//! Reading the results store: session and run listings, the session to resume, and the
//! stored outcomes a comparison may reuse instead of running again.
//!
//! Reuse is narrow on purpose: a stored outcome stands in for a new one only if it has the
//! same kernel key, arch, test, test program digest and run conditions
//! ([`super::condition_digest`]), and an infra-error is never reused, because it says nothing
//! about the kernel.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{Store, StoreError};
use crate::arch::Arch;
use crate::results::{OutcomeKind, TestOutcome};

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
    /// The engine that placed the run (`local` for runs before lab recorded it).
    pub engine: String,
    /// The engine's job id; `None` for a run on the controller's host.
    pub job: Option<String>,
    /// The host that booted it; `None` for runs before lab recorded it.
    pub node: Option<String>,
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

impl Store {
    /// The latest unfinished session of `kind` with `key`: the one to resume.
    pub fn open_session(&self, kind: &str, key: &str) -> Result<Option<SessionRow>, StoreError> {
        self.query_session(
            "WHERE kind = ?1 AND key = ?2 AND finished_at IS NULL ORDER BY id DESC LIMIT 1",
            params![kind, key],
        )
    }

    pub fn session(&self, id: i64) -> Result<Option<SessionRow>, StoreError> {
        self.query_session("WHERE id = ?1", params![id])
    }

    /// The session that `filter` (a `WHERE` clause and what follows it) selects, if any.
    fn query_session(
        &self,
        filter: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Option<SessionRow>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions {filter}"),
                params,
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

    /// The directories of the runs of every unfinished session: an interrupted comparison or
    /// bisection that the same command would resume, or one that is running now.
    pub fn open_session_run_dirs(&self) -> Result<Vec<String>, StoreError> {
        let err = |source| StoreError::ReadSessions {
            path: self.path.clone(),
            source,
        };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT DISTINCT r.dir FROM runs r JOIN sessions s ON r.session_id = s.id \
                 WHERE s.finished_at IS NULL",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok(rows)
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
}

impl Store {
    /// Every outcome a session recorded, with the arch, side and batch of its run, in batch
    /// order: what a resumed comparison replays, look by look.
    pub fn session_outcomes(
        &self,
        session: i64,
    ) -> Result<Vec<(Arch, String, u32, TestOutcome)>, StoreError> {
        let err = |source| StoreError::ReadOutcomes {
            path: self.path.clone(),
            test: format!("(session {session})"),
            source,
        };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT o.id, r.arch, r.side, r.batch, o.json
                 FROM runs r JOIN outcomes o ON o.run_id = r.id
                 WHERE r.session_id = ?1 AND r.side IS NOT NULL AND r.batch IS NOT NULL
                 ORDER BY r.batch, o.id",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![session], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        let mut out = Vec::new();
        for (outcome_id, arch, side, batch, json) in rows {
            let outcome: TestOutcome =
                serde_json::from_str(&json).map_err(|source| StoreError::DecodeOutcome {
                    path: self.path.clone(),
                    outcome_id,
                    source,
                })?;
            // A row of an arch this build does not know is not this session's to replay.
            let Ok(arch) = arch.parse::<Arch>() else {
                continue;
            };
            out.push((arch, side, u32::try_from(batch).unwrap_or(0), outcome));
        }
        Ok(out)
    }
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
     (SELECT count(*) FROM outcomes o WHERE o.run_id = r.id AND o.kind IN ('fail', 'kernel-crash', 'hang')),
     r.engine, r.job_id, r.node";

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
        engine: r.get(12)?,
        job: r.get(13)?,
        node: r.get(14)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
