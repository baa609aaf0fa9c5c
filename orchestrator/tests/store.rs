//! The results store on real SQLite files: runs and their outcomes go in and come back out
//! whole, reuse matches only what is interchangeable, sessions resume, an interrupted run
//! keeps what it finished, and the export holds every row.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lab::arch::{Accel, Arch};
use lab::results::crash::{CrashKind, CrashReport, Fingerprint};
use lab::results::manifest::{BootRecord, Placement, RunManifest};
use lab::results::store::{
    condition_digest, NewRun, Store, StoreError, StoredOutcome, SCHEMA_VERSION,
};
use lab::results::{OutcomeKind, TestOutcome};
use lab_proto::{Histogram, TestResult, Verdict};

const KERNEL: &str = "3f2a9c0011223344556677889900aabbccddeeff";
const FUTEX_DIGEST: &str = "aa11";
const PIPE_DIGEST: &str = "bb22";

fn digests() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("futex_errno".to_owned(), FUTEX_DIGEST.to_owned()),
        ("pipe_excl".to_owned(), PIPE_DIGEST.to_owned()),
    ])
}

fn condition() -> String {
    condition_digest(3000, &[("futex_amp".into(), "200".into())], "tcg", 2, 512)
}

static HERE: std::sync::LazyLock<Placement> = std::sync::LazyLock::new(Placement::this_host);

fn new_run<'a>(
    digests: &'a BTreeMap<String, String>,
    condition: &'a str,
    dir: &'a Path,
) -> NewRun<'a> {
    NewRun {
        session: None,
        side: None,
        batch: None,
        arch: Arch::X86_64,
        kernel_key: KERNEL,
        kernel_label: "base",
        image_digest: "img0",
        test_digests: digests,
        condition,
        dir,
        placement: &HERE,
    }
}

fn outcome(test: &str, iteration: u32, kind: OutcomeKind) -> TestOutcome {
    TestOutcome {
        test: test.to_owned(),
        arch: Arch::X86_64,
        iteration,
        seed: u64::MAX - u64::from(iteration),
        kind,
        summary: format!("{test} #{iteration}: {kind}"),
        result: None,
        crashes: Vec::new(),
        duration_ms: 1000 + u64::from(iteration),
        stderr_tail: String::new(),
    }
}

fn pass(test: &str, iteration: u32) -> TestOutcome {
    let mut o = outcome(test, iteration, OutcomeKind::Pass);
    let mut r = TestResult::new(test, o.seed);
    r.metrics.insert("round_trips_per_s".into(), 1234.5);
    o.result = Some(r);
    o
}

/// A failing test with its metrics, counters and a latency histogram.
fn fail_with_metrics(test: &str, iteration: u32) -> TestOutcome {
    let mut o = outcome(test, iteration, OutcomeKind::Fail);
    let mut r = TestResult::new(test, o.seed);
    r.verdict = Verdict::Fail;
    r.summary = "3 lost wake-ups in 40000 waits".into();
    r.counters.insert("lost_wakeups".into(), 3);
    r.first_bad_errno = Some(512);
    r.metrics.insert("round_trips_per_s".into(), 987.25);
    r.metrics.insert("wake_us_p99".into(), 41.5);
    let mut h = Histogram::default();
    for v in [1_000, 2_000, 40_000] {
        h.record(v);
    }
    r.histograms.insert("wake_ns".into(), h);
    r.duration_ms = 3000;
    o.result = Some(r);
    o
}

fn crash_report() -> CrashReport {
    CrashReport {
        kind: CrashKind::Warning,
        title: "WARNING: CPU: 1 PID: 42 at kernel/futex/waitwake.c:120 futex_wake_mark+0x1c/0x40"
            .into(),
        excerpt: "[   12.3] WARNING: CPU: 1 PID: 42 at kernel/futex/waitwake.c:120\n[   12.3] Call Trace:\n[   12.3]  futex_wake\n".into(),
        fingerprint: Fingerprint {
            kind: CrashKind::Warning,
            frames: vec!["futex_wake_mark".into(), "futex_wake".into(), "do_futex".into()],
        },
        first_line_no: 812,
    }
}

fn kernel_crash(test: &str, iteration: u32) -> TestOutcome {
    let mut o = outcome(test, iteration, OutcomeKind::KernelCrash);
    o.crashes = vec![crash_report()];
    o.stderr_tail = "futex_errno: connection lost".into();
    o
}

fn manifest(dir: &Path) -> RunManifest {
    RunManifest {
        format_version: 1,
        arch: Arch::X86_64,
        kernel_key: KERNEL.into(),
        kernel_label: "base".into(),
        kernel_release: "6.12.0-rt".into(),
        image_digest: "img0".into(),
        test_digests: BTreeMap::from([("lab/bin/futex_errno".into(), FUTEX_DIGEST.into())]),
        qemu_version: "QEMU emulator version 7.2.0".into(),
        accel: Accel::Tcg,
        accel_reason: "TCG: forced".into(),
        cmdline: "console=ttyS0".into(),
        qemu_command: "qemu-system-x86_64 ...".into(),
        seed: 7,
        knobs: vec![("futex_amp".into(), "200".into())],
        tests: vec!["futex_errno".into(), "pipe_excl".into()],
        iterations: 2,
        duration_ms: 3000,
        deadline_scale: 5.0,
        reproduce: "lab run --seed 7".into(),
        boots: vec![BootRecord {
            ready_ms: Some(812),
            guest_uptime_ms: Some(700),
            ssh_ms: Some(900),
            console: dir.join("boot-1/console.log"),
            error: None,
        }],
        placement: Some(HERE.clone()),
    }
}

fn store_path(dir: &tempfile::TempDir) -> PathBuf {
    Store::default_path(&dir.path().join("cache"))
}

fn count(store_path: &Path, sql: &str) -> i64 {
    let conn = rusqlite_conn(store_path);
    conn.query_row(sql, [], |r| r.get(0)).expect("count")
}

fn rusqlite_conn(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw open")
}

fn outcomes_of(stored: &[StoredOutcome]) -> Vec<&TestOutcome> {
    stored.iter().map(|s| &s.outcome).collect()
}

#[test]
fn a_recorded_run_comes_back_whole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = store_path(&tmp);
    let (d, c) = (digests(), condition());
    let run_dir = tmp.path().join("runs/1/x86_64");
    let written = vec![
        pass("futex_errno", 0),
        fail_with_metrics("futex_errno", 1),
        kernel_crash("futex_errno", 2),
        TestOutcome::infra(
            "futex_errno",
            Arch::X86_64,
            3,
            9,
            "boot failed: no READY".into(),
        ),
        pass("pipe_excl", 0),
    ];
    let run_id;
    {
        let mut store = Store::open(&path).expect("open");
        assert_eq!(store.path(), path);
        run_id = store.begin_run(&new_run(&d, &c, &run_dir)).expect("begin");
        for o in &written {
            store.add_outcome(run_id, o).expect("add");
        }
        store
            .finish_run(run_id, &manifest(&run_dir))
            .expect("finish");
    }

    let store = Store::open(&path).expect("reopen");
    let got = store
        .reusable_outcomes(KERNEL, Arch::X86_64, "futex_errno", FUTEX_DIGEST, &c)
        .expect("reuse");
    // In insertion order, infra-error left out, every field as written (JSON round trip).
    assert_eq!(
        outcomes_of(&got),
        vec![&written[0], &written[1], &written[2]]
    );
    assert!(got
        .iter()
        .all(|s| s.run_id == run_id && s.session.is_none() && s.side.is_none()));
    assert!(got.windows(2).all(|w| w[0].outcome_id < w[1].outcome_id));
    let failed = &got[1].outcome;
    let r = failed.result.as_ref().expect("result kept");
    assert_eq!(r.metrics["wake_us_p99"], 41.5);
    assert_eq!(r.histograms["wake_ns"].count, 3);
    assert_eq!(r.first_bad_errno, Some(512));
    assert_eq!(got[0].outcome.seed, u64::MAX);
    assert_eq!(got[2].outcome.crashes, vec![crash_report()]);

    let pipe = store
        .reusable_outcomes(KERNEL, Arch::X86_64, "pipe_excl", PIPE_DIGEST, &c)
        .expect("reuse");
    assert_eq!(outcomes_of(&pipe), vec![&written[4]]);

    // The metric and crash rows, for queries that do not parse JSON.
    let conn = rusqlite_conn(&path);
    let mut metrics: Vec<(String, f64)> = conn
        .prepare(
            "SELECT m.name, m.value FROM metrics m JOIN outcomes o ON o.id = m.outcome_id
             WHERE o.id = ?1 ORDER BY m.name",
        )
        .expect("prepare")
        .query_map([got[1].outcome_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    metrics.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        metrics,
        vec![
            ("round_trips_per_s".to_owned(), 987.25),
            ("wake_us_p99".to_owned(), 41.5)
        ]
    );
    let crash: (String, String, String, String, String) = conn
        .query_row(
            "SELECT kind, title, fingerprint, fingerprint_id, excerpt FROM crashes WHERE outcome_id = ?1",
            [got[2].outcome_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .expect("crash row");
    let report = crash_report();
    assert_eq!(crash.0, "warning");
    assert_eq!(crash.1, report.title);
    assert_eq!(crash.2, "warning:futex_wake_mark|futex_wake|do_futex");
    assert_eq!(crash.3, report.fingerprint.id());
    assert_eq!(crash.3.len(), 12);
    assert_eq!(crash.4, report.excerpt);
    let manifest_json: String = conn
        .query_row(
            "SELECT manifest_json FROM runs WHERE id = ?1",
            [run_id],
            |r| r.get(0),
        )
        .expect("manifest");
    let back: RunManifest = serde_json::from_str(&manifest_json).expect("manifest json");
    assert_eq!(back, manifest(&run_dir));

    // The run listing counts outcomes and kernel failures (fail + kernel-crash).
    let runs = store.runs(None, 10).expect("runs");
    assert_eq!(runs.len(), 1);
    let row = &runs[0];
    assert_eq!(row.id, run_id);
    assert_eq!((row.outcomes, row.failures), (5, 2));
    assert_eq!(row.arch, "x86_64");
    assert_eq!(row.kernel_key, KERNEL);
    assert_eq!(row.kernel_label, "base");
    assert_eq!(row.dir, run_dir.display().to_string());
    assert!(row.finished_at.is_some());
    assert!(row.started_at.ends_with('Z') && row.started_at.contains('T'));
    assert_eq!(store.runs(Some("3f2a"), 10).expect("prefix").len(), 1);
    assert_eq!(store.runs(Some(KERNEL), 10).expect("whole key").len(), 1);
    assert!(store.runs(Some("3f2b"), 10).expect("other").is_empty());
}

#[test]
fn reuse_needs_the_same_kernel_arch_test_binary_and_conditions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&store_path(&tmp)).expect("open");
    let (d, c) = (digests(), condition());
    let dir = tmp.path().join("r");
    let run = store.begin_run(&new_run(&d, &c, &dir)).expect("begin");
    store
        .add_outcome(run, &pass("futex_errno", 0))
        .expect("add");
    let other_condition =
        condition_digest(3000, &[("futex_amp".into(), "100".into())], "tcg", 2, 512);

    let find = |key: &str, arch, test: &str, digest: &str, cond: &str| {
        store
            .reusable_outcomes(key, arch, test, digest, cond)
            .expect("query")
            .len()
    };
    assert_eq!(
        find(KERNEL, Arch::X86_64, "futex_errno", FUTEX_DIGEST, &c),
        1
    );
    assert_eq!(
        find("ffff", Arch::X86_64, "futex_errno", FUTEX_DIGEST, &c),
        0
    );
    assert_eq!(
        find(KERNEL, Arch::Arm64, "futex_errno", FUTEX_DIGEST, &c),
        0
    );
    assert_eq!(find(KERNEL, Arch::X86_64, "pipe_excl", PIPE_DIGEST, &c), 0);
    assert_eq!(find(KERNEL, Arch::X86_64, "futex_errno", "rebuilt", &c), 0);
    assert_eq!(
        find(
            KERNEL,
            Arch::X86_64,
            "futex_errno",
            FUTEX_DIGEST,
            &other_condition
        ),
        0
    );
    // The digest of one test never vouches for another.
    assert_eq!(
        find(KERNEL, Arch::X86_64, "futex_errno", PIPE_DIGEST, &c),
        0
    );

    // Image manifest keys (`lab/bin/NAME`) are stored as test names.
    let image_keys = BTreeMap::from([("lab/bin/futex_errno".to_owned(), "cc33".to_owned())]);
    let run2 = store
        .begin_run(&new_run(&image_keys, &c, &dir))
        .expect("begin");
    store
        .add_outcome(run2, &pass("futex_errno", 1))
        .expect("add");
    let got = store
        .reusable_outcomes(KERNEL, Arch::X86_64, "futex_errno", "cc33", &c)
        .expect("query");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].run_id, run2);
    assert_eq!(got[0].outcome.iteration, 1);
}

#[test]
fn sessions_begin_resume_and_finish() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = store_path(&tmp);
    let (d, c) = (digests(), condition());
    let dir = tmp.path().join("r");
    let first;
    {
        let mut store = Store::open(&path).expect("open");
        assert!(store
            .open_session("compare", "key1")
            .expect("none")
            .is_none());
        first = store
            .begin_session("compare", "key1", r#"{"a":"base","b":"x"}"#)
            .expect("begin");
        store
            .set_session_state(first, r#"{"batch":3}"#)
            .expect("state");
        let mut run = new_run(&d, &c, &dir);
        run.session = Some(first);
        run.side = Some("B");
        run.batch = Some(3);
        let id = store.begin_run(&run).expect("run");
        store
            .add_outcome(id, &kernel_crash("futex_errno", 0))
            .expect("add");
        // Interrupted here: no finish_session.
    }

    let mut store = Store::open(&path).expect("reopen");
    let open = store
        .open_session("compare", "key1")
        .expect("query")
        .expect("resumable");
    assert_eq!(open.id, first);
    assert_eq!(open.status, "running");
    assert_eq!(open.state_json.as_deref(), Some(r#"{"batch":3}"#));
    assert_eq!(open.args_json, r#"{"a":"base","b":"x"}"#);
    assert!(open.finished_at.is_none() && open.report_json.is_none());
    assert!(store
        .open_session("compare", "key2")
        .expect("query")
        .is_none());
    assert!(store
        .open_session("bisect", "key1")
        .expect("query")
        .is_none());

    let runs = store.session_runs(first).expect("session runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].session, Some(first));
    assert_eq!(runs[0].side.as_deref(), Some("B"));
    assert_eq!(runs[0].batch, Some(3));
    assert_eq!((runs[0].outcomes, runs[0].failures), (1, 1));
    let reused = store
        .reusable_outcomes(KERNEL, Arch::X86_64, "futex_errno", FUTEX_DIGEST, &c)
        .expect("reuse");
    assert_eq!(reused[0].session, Some(first));
    assert_eq!(reused[0].side.as_deref(), Some("B"));

    store
        .finish_session(first, "done", r#"{"overall":"regression"}"#)
        .expect("finish");
    assert!(store
        .open_session("compare", "key1")
        .expect("query")
        .is_none());
    let done = store.session(first).expect("read").expect("exists");
    assert_eq!(done.status, "done");
    assert_eq!(
        done.report_json.as_deref(),
        Some(r#"{"overall":"regression"}"#)
    );
    assert!(done.finished_at.is_some());

    // A new session with the same key is a new id, and the newest comes first.
    let second = store.begin_session("compare", "key1", "{}").expect("begin");
    assert!(second > first);
    assert_eq!(
        store
            .open_session("compare", "key1")
            .expect("q")
            .map(|s| s.id),
        Some(second)
    );
    let listed: Vec<i64> = store
        .sessions(10)
        .expect("list")
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![second, first]);
    assert_eq!(store.sessions(1).expect("list").len(), 1);
    assert!(store.session_runs(second).expect("runs").is_empty());
}

#[test]
fn an_interrupted_run_keeps_every_outcome_it_finished() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = store_path(&tmp);
    let (d, c) = (digests(), condition());
    let dir = tmp.path().join("r");
    let run_id;
    {
        let mut store = Store::open(&path).expect("open");
        run_id = store.begin_run(&new_run(&d, &c, &dir)).expect("begin");
        store
            .add_outcome(run_id, &pass("futex_errno", 0))
            .expect("add");
        store
            .add_outcome(run_id, &fail_with_metrics("futex_errno", 1))
            .expect("add");
        // The process dies here: the store is dropped without finish_run.
        drop(store);
    }
    let store = Store::open(&path).expect("reopen");
    let runs = store.runs(None, 10).expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, run_id);
    assert!(runs[0].finished_at.is_none());
    assert_eq!((runs[0].outcomes, runs[0].failures), (2, 1));
    let got = store
        .reusable_outcomes(KERNEL, Arch::X86_64, "futex_errno", FUTEX_DIGEST, &c)
        .expect("reuse");
    assert_eq!(
        outcomes_of(&got),
        vec![
            &pass("futex_errno", 0),
            &fail_with_metrics("futex_errno", 1)
        ]
    );
    assert_eq!(count(&path, "SELECT count(*) FROM metrics"), 3);
}

/// Set in the child process of [`a_process_killed_mid_run_keeps_what_it_committed`].
const CHILD_ENV: &str = "LAB_STORE_TEST_CHILD_DB";

#[test]
fn a_process_killed_mid_run_keeps_what_it_committed() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        // The child: record two outcomes, then die without unwinding or closing anything.
        let (d, c) = (digests(), condition());
        let dir = PathBuf::from("/nonexistent/run");
        let mut store = Store::open(Path::new(&path)).expect("open");
        let run = store.begin_run(&new_run(&d, &c, &dir)).expect("begin");
        store
            .add_outcome(run, &pass("futex_errno", 0))
            .expect("add");
        store
            .add_outcome(run, &kernel_crash("futex_errno", 1))
            .expect("add");
        std::process::abort();
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = store_path(&tmp);
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_process_killed_mid_run_keeps_what_it_committed",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("spawn the child");
    assert!(!status.success(), "the child aborts");
    let store = Store::open(&path).expect("reopen after the crash");
    let got = store
        .reusable_outcomes(
            KERNEL,
            Arch::X86_64,
            "futex_errno",
            FUTEX_DIGEST,
            &condition(),
        )
        .expect("reuse");
    assert_eq!(
        outcomes_of(&got),
        vec![&pass("futex_errno", 0), &kernel_crash("futex_errno", 1)]
    );
    assert_eq!(count(&path, "SELECT count(*) FROM crashes"), 1);
    assert!(store.runs(None, 1).expect("runs")[0].finished_at.is_none());
}

#[test]
fn two_stores_on_one_file_both_write() {
    // `lab run` shards and a concurrent `lab compare` may each hold a connection.
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = store_path(&tmp);
    let (d, c) = (digests(), condition());
    let dir = tmp.path().join("r");
    let mut a = Store::open(&path).expect("a");
    let mut b = Store::open(&path).expect("b");
    let ra = a.begin_run(&new_run(&d, &c, &dir)).expect("run a");
    let rb = b.begin_run(&new_run(&d, &c, &dir)).expect("run b");
    let handles: Vec<_> = [(a, ra), (b, rb)]
        .into_iter()
        .map(|(mut s, run)| {
            std::thread::spawn(move || {
                for i in 0..20 {
                    s.add_outcome(run, &pass("futex_errno", i)).expect("add");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    assert_eq!(count(&path, "SELECT count(*) FROM outcomes"), 40);
    assert_eq!(count(&path, "SELECT count(*) FROM metrics"), 40);
}

#[test]
fn export_writes_one_line_per_row_of_every_table() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = store_path(&tmp);
    let (d, c) = (digests(), condition());
    let dir = tmp.path().join("r");
    let mut store = Store::open(&path).expect("open");
    let session = store
        .begin_session("compare", "k", r#"{"x":1}"#)
        .expect("s");
    let mut run = new_run(&d, &c, &dir);
    run.session = Some(session);
    let run_id = store.begin_run(&run).expect("run");
    store
        .add_outcome(run_id, &pass("futex_errno", 0))
        .expect("add"); // 1 metric
    store
        .add_outcome(run_id, &fail_with_metrics("futex_errno", 1))
        .expect("add"); // 2 metrics
    store
        .add_outcome(run_id, &kernel_crash("futex_errno", 2))
        .expect("add"); // 1 crash
    store.finish_run(run_id, &manifest(&dir)).expect("finish");

    let mut out = Vec::new();
    let n = store.export_jsonl(&mut out).expect("export");
    // schema_migrations 1, sessions 1, runs 1, run_tests 2, outcomes 3, metrics 3, crashes 1.
    assert_eq!(n, u64::from(SCHEMA_VERSION) + 1 + 1 + 2 + 3 + 3 + 1);
    let text = String::from_utf8(out).expect("utf-8");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len() as u64, n);
    let tables: Vec<&str> = lines
        .iter()
        .map(|l| l["table"].as_str().expect("table field"))
        .collect();
    let per = |t: &str| tables.iter().filter(|x| **x == t).count();
    assert_eq!(
        [
            per("sessions"),
            per("runs"),
            per("run_tests"),
            per("outcomes"),
            per("metrics"),
            per("crashes")
        ],
        [1, 1, 2, 3, 3, 1]
    );
    // JSON columns are embedded as JSON; the outcome parses back into the model.
    let session_line = lines
        .iter()
        .find(|l| l["table"] == "sessions")
        .expect("session");
    assert_eq!(session_line["args_json"]["x"], 1);
    let run_line = lines.iter().find(|l| l["table"] == "runs").expect("run");
    assert_eq!(run_line["manifest_json"]["kernel-release"], "6.12.0-rt");
    assert_eq!(run_line["session_id"], session);
    let crash_line = lines
        .iter()
        .filter(|l| l["table"] == "outcomes")
        .nth(2)
        .expect("third outcome");
    let back: TestOutcome =
        serde_json::from_value(crash_line["json"].clone()).expect("outcome json");
    assert_eq!(back, kernel_crash("futex_errno", 2));
    assert_eq!(crash_line["seed"], (u64::MAX - 2).to_string());
}

#[test]
fn a_store_written_by_a_newer_lab_is_refused_and_left_untouched() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = store_path(&tmp);
    {
        let mut store = Store::open(&path).expect("open");
        assert_eq!(store.schema_version().expect("v"), SCHEMA_VERSION);
        store.begin_session("compare", "k", "{}").expect("s");
    }
    // Reopening is idempotent: same version, nothing migrated twice, data kept.
    {
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.schema_version().expect("v"), SCHEMA_VERSION);
        assert_eq!(store.sessions(10).expect("list").len(), 1);
    }
    assert_eq!(
        count(&path, "SELECT count(*) FROM schema_migrations"),
        i64::from(SCHEMA_VERSION)
    );
    rusqlite_conn(&path)
        .pragma_update(None, "user_version", SCHEMA_VERSION + 5)
        .expect("bump");
    let err = Store::open(&path).expect_err("refused");
    assert!(matches!(
        err,
        StoreError::TooNew { found, supported, .. }
            if found == SCHEMA_VERSION + 5 && supported == SCHEMA_VERSION
    ));
    let msg = err.to_string();
    assert!(msg.starts_with("open the results store "), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert_eq!(count(&path, "SELECT count(*) FROM sessions"), 1);
}

#[test]
fn a_store_that_cannot_be_created_says_where() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let blocker = tmp.path().join("file");
    std::fs::write(&blocker, "not a folder").expect("write");
    let path = blocker.join("results.db");
    let err = Store::open(&path).expect_err("cannot create");
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()));

    let garbage = tmp.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 4096]).expect("write");
    let err = Store::open(&garbage).expect_err("not a database");
    assert!(err.to_string().contains("garbage.db"), "{err}");
}
