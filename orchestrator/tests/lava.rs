//! `lab lava job` and `lab lava ingest` with LAVA's own dispatcher: the job lab writes is run
//! by `lava-run` (Debian's lava-dispatcher 2023.01, unpacked by `make setup` without
//! systemd) on a QEMU device of this machine, and its log comes back into the store with the
//! device as the run's host. The kernel comes from the cache that `make test` fills first.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use lab::results::store::Store;

fn lava_run() -> PathBuf {
    let dir = std::env::var_os("LAB_LAVA_DIR")
        .map_or_else(|| PathBuf::from("/opt/lab-lava"), PathBuf::from);
    let p = dir.join("lava-run");
    assert!(
        p.is_file(),
        "{} is missing: `make setup` installs LAVA's dispatcher (scripts/lava-setup.sh)",
        p.display()
    );
    p
}

#[test]
fn a_lava_job_boots_a_lab_kernel_and_its_results_land_in_the_store() {
    let lava_run = lava_run();
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = tmp.path().join("job.yaml");
    let toml = common::repo_lab_toml();
    let made = common::run(
        common::lab(&toml)
            .args(["lava", "job", "--arch", "x86_64", "--tests", "futex_errno"])
            .args([
                "--iterations",
                "2",
                "--duration",
                "1s",
                "--seed",
                "11",
                "-o",
            ])
            .arg(&job),
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let text = std::fs::read_to_string(&job).expect("job.yaml");
    assert!(text.contains("lab.mode=run"), "{text}");
    assert!(text.contains("sha256sum"), "{text}");

    // LAVA's dispatcher runs it, as a LAVA worker would.
    let fixtures = common::repo().join("orchestrator/tests/fixtures/lava");
    let log = tmp.path().join("job.log");
    let job_id = std::process::id().to_string();
    let ran = Command::new(&lava_run)
        .args(["--job-id", &job_id, "--output-dir"])
        .arg(tmp.path().join("out"))
        .arg("--device")
        .arg(fixtures.join("qemu-x86_64.yaml"))
        .arg("--dispatcher")
        .arg(fixtures.join("dispatcher.yaml"))
        .arg(&job)
        .env("LAVA_DISPATCHER_DOWNLOAD_DIR", tmp.path().join("scratch"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .status()
        .expect("lava-run runs");
    let log_text = std::fs::read_to_string(&log).expect("the log");
    assert!(ran.success(), "lava-run: {log_text}");
    // LAVA itself saw lab's test cases.
    assert!(
        log_text.contains("\"case\": \"futex_errno_1\"")
            && log_text
                .contains("\"case\": \"job\", \"definition\": \"lava\", \"result\": \"pass\""),
        "{log_text}"
    );

    let device = format!("qemu-test-{job_id}");
    let got = common::run(
        common::lab(&toml)
            .args(["lava", "ingest"])
            .arg(&job)
            .arg(&log)
            .args(["--device", &device, "--job-id", &job_id, "--json"]),
    );
    assert_eq!(got.code, 0, "{}", got.stderr);
    let v: serde_json::Value = serde_json::from_str(&got.stdout).expect("json");
    let outcomes = v["outcomes"].as_array().expect("outcomes");
    assert_eq!(outcomes.len(), 2, "{v}");
    assert!(
        outcomes
            .iter()
            .all(|o| o["kind"] == "pass" && o["result"]["metrics"].is_object()),
        "every iteration passed, with its metrics: {v}"
    );
    let dir = PathBuf::from(v["dir"].as_str().expect("dir"));
    let console = std::fs::read_to_string(dir.join("boot-1/console.log")).expect("console.log");
    assert!(
        console.contains("Linux version"),
        "the console from the log"
    );

    // In the store, with the device as its host and LAVA's job id.
    let store = Store::open(&common::cache_dir().join("results.db")).expect("store");
    let run = store
        .runs(None, 20)
        .expect("runs")
        .into_iter()
        .find(|r| r.node.as_deref() == Some(device.as_str()))
        .expect("the run is stored");
    assert_eq!(run.engine, "lava");
    assert_eq!(run.job.as_deref(), Some(job_id.as_str()));
    assert_eq!((run.outcomes, run.failures), (2, 0));

    // The positive control: a kernel that panics under LAVA is a kernel crash with its
    // fingerprint, read from LAVA's log (here the init the job names does not exist).
    let crash_job = tmp.path().join("crash.yaml");
    std::fs::write(
        &crash_job,
        text.replace(
            "lab.mode=run",
            "lab.mode=run rdinit=/lab/none init=/lab/none",
        ),
    )
    .expect("write");
    let crash_log = tmp.path().join("crash.log");
    let ran = Command::new(&lava_run)
        .args(["--job-id", &format!("{job_id}1"), "--output-dir"])
        .arg(tmp.path().join("out-crash"))
        .arg("--device")
        .arg(fixtures.join("qemu-x86_64.yaml"))
        .arg("--dispatcher")
        .arg(fixtures.join("dispatcher.yaml"))
        .arg(&crash_job)
        .env("LAVA_DISPATCHER_DOWNLOAD_DIR", tmp.path().join("scratch"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&crash_log).expect("log"))
        .status()
        .expect("lava-run runs");
    assert!(!ran.success(), "LAVA calls the job incomplete");
    let got = common::run(
        common::lab(&toml)
            .args(["lava", "ingest"])
            .arg(&crash_job)
            .arg(&crash_log)
            .args(["--device", &device, "--json"]),
    );
    assert_eq!(got.code, 1, "a kernel failure: {}", got.stderr);
    let v: serde_json::Value = serde_json::from_str(&got.stdout).expect("json");
    let outcomes = v["outcomes"].as_array().expect("outcomes");
    assert_eq!(outcomes[0]["kind"], "kernel-crash", "{v}");
    assert!(
        outcomes[0]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("Kernel panic")),
        "{v}"
    );
    assert_eq!(outcomes[1]["kind"], "infra-error", "{v}");

    // A log that is not LAVA's is refused with its line, and nothing is stored.
    std::fs::write(&log, "{\"lvl\": target\n").expect("write");
    let bad = common::run(
        common::lab(&toml)
            .args(["lava", "ingest"])
            .arg(&job)
            .arg(&log)
            .args(["--device", "nope"]),
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("line 1 of the LAVA log"),
        "{}",
        bad.stderr
    );
}
