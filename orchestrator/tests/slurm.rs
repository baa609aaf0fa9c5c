//! `lab compare --engine slurm` on a real Slurm cluster started on this machine
//! (`scripts/slurm-localhost.sh`): every run a job with its node, the A and B boots of a pair
//! on one node, a node that goes down mid-comparison turning its runs into infra-errors
//! rather than regressions, a known-bad kernel found, and Ctrl-C leaving no job and no process.
//! The kernels come from the cache that `make test` fills first.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lab::results::store::Store;

/// One cluster at a time: each test watches where its jobs land.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn script(cmd: &str, dir: &Path, port: u16) -> Output {
    Command::new(common::repo().join("scripts/slurm-localhost.sh"))
        .args([cmd, dir.to_str().expect("utf-8")])
        .env("SLURM_LOCALHOST_PORT", port.to_string())
        .output()
        .expect("the script runs")
}

struct Cluster {
    dir: PathBuf,
    port: u16,
    _tmp: tempfile::TempDir,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Cluster {
    /// A cluster of its own on `port` (and the two after it): apart from the script's own
    /// test (26817) and a user's (16817).
    fn start(port: u16) -> Cluster {
        let one = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("slurm");
        let out = script("start", &dir, port);
        assert!(
            out.status.success(),
            "the cluster starts: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Cluster {
            dir,
            port,
            _tmp: tmp,
            _one: one,
        }
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("etc/slurm.conf")
    }

    fn tool(&self, tool: &str, args: &[&str]) -> String {
        let out = Command::new(tool)
            .args(args)
            .env("SLURM_CONF", self.conf())
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Jobs in the queue, whoever submitted them: `id state node` lines.
    fn queue(&self) -> Vec<String> {
        self.tool("squeue", &["--noheader", "--array", "--format=%i %T %N"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn lab(&self) -> Command {
        let mut c = common::lab(&common::repo_lab_toml());
        c.env("SLURM_CONF", self.conf())
            .arg("--engine")
            .arg("slurm");
        c
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = script("stop", &self.dir, self.port);
    }
}

fn report(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).expect("lab compare --json prints the report")
}

/// The runs of a session: (batch, side) to (job, node), with the count of infra outcomes.
fn runs_of(session: i64) -> Vec<lab::results::store::RunRow> {
    let store = Store::open(&common::cache_dir().join("results.db")).expect("store");
    store.session_runs(session).expect("runs")
}

#[test]
fn a_comparison_runs_as_jobs_pairs_share_a_node_and_a_lost_node_is_infrastructure() {
    let cluster = Cluster::start(36817);
    // n1 is taken by another job for 20 s when the comparison starts, so its first batch
    // goes to n2; n2 goes down while it runs and stays out; the rest runs on n1.
    let blocker = cluster.tool(
        "sbatch",
        &[
            "--parsable",
            "--nodelist=n1",
            "--cpus-per-task=2",
            "--job-name=blocker",
            "--wrap=sleep 20",
        ],
    );
    let child = cluster
        .lab()
        .args([
            "compare",
            "base",
            "base",
            "--arch",
            "x86_64",
            "--tests",
            "futex_errno",
            "--budget",
            "90s",
            "--fresh",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lab starts");
    let started = Instant::now();
    let mut downed = false;
    while started.elapsed() < Duration::from_secs(60) {
        let running_on_n2 = cluster
            .queue()
            .iter()
            .any(|l| l.contains("RUNNING") && l.ends_with(" n2") && !l.contains(blocker.trim()));
        if running_on_n2 {
            // Let the worker boot its guest first: the node dies mid-run.
            std::thread::sleep(Duration::from_secs(2));
            // Down kills its job (NODE_FAIL); drain keeps it out when its slurmd registers
            // again (the cluster returns a down node to service by itself).
            cluster.tool(
                "scontrol",
                &["update", "nodename=n2", "state=down", "reason=lab-test"],
            );
            cluster.tool(
                "scontrol",
                &["update", "nodename=n2", "state=drain", "reason=lab-test"],
            );
            downed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = child.wait_with_output().expect("lab ends");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let queue_after = cluster.queue();
    // Back to service for whatever runs next on this cluster.
    let _ = Command::new("scontrol")
        .args(["update", "nodename=n2", "state=resume"])
        .env("SLURM_CONF", cluster.conf())
        .status();
    assert!(downed, "a run of the comparison reached n2");
    assert_eq!(out.status.code(), Some(0), "no regression, exit 0");
    let rep = report(&stdout);
    assert_ne!(rep["overall"], "regression");
    assert!(
        queue_after.iter().all(|l| l.contains(blocker.trim())),
        "nothing of lab's is left in the queue: {queue_after:?}"
    );

    let runs = runs_of(rep["session"].as_i64().expect("session id"));
    assert!(runs.len() >= 4, "at least two batches: {runs:?}");
    let mut pairs: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
    for r in &runs {
        assert_eq!(r.engine, "slurm", "{r:?}");
        let job = r.job.clone().expect("every run has its job id");
        let node = r.node.clone().expect("every run has its node");
        assert!(node == "n1" || node == "n2", "{r:?}");
        pairs
            .entry(r.batch.expect("batch"))
            .or_default()
            .push((job, node));
    }
    for (batch, runs) in &pairs {
        assert_eq!(runs.len(), 2, "batch {batch}: one boot a side");
        assert_eq!(
            runs[0], runs[1],
            "batch {batch}: A and B in one job on one node"
        );
    }
    let first = pairs.values().next().expect("a batch");
    assert_eq!(
        first[0].1, "n2",
        "the first batch ran on n2, which went down"
    );
    let q = rep["questions"]
        .as_array()
        .expect("questions")
        .iter()
        .find(|q| q["question"]["kind"] == "failure-rate")
        .expect("a failure-rate question");
    assert_ne!(q["verdict"]["verdict"], "regression", "{q}");
    assert!(
        rep["infra_errors"].as_u64().unwrap_or(0) > 0,
        "the runs lost with n2 are infra-errors: {}",
        rep["infra_errors"]
    );
    assert!(
        pairs.values().skip(1).all(|r| r[0].1 == "n1"),
        "the comparison finished on n1: {pairs:?}"
    );
}

#[test]
fn a_known_bad_kernel_is_found_and_ctrl_c_leaves_no_job_and_no_process() {
    let cluster = Cluster::start(36827);
    // A job an earlier lab on this host left when it was killed (its pid is gone), held so
    // that it takes no node: found by its name and cancelled when the next lab starts.
    let gone = (1..4_000_000u32)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .expect("a free pid");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let orphan = cluster.tool(
        "sbatch",
        &[
            "--parsable",
            "--hold",
            &format!("--job-name=lab-{}-{gone}", host.trim()),
            "--wrap=sleep 600",
        ],
    );
    let r = common::run(cluster.lab().args([
        "compare",
        "base",
        "bad-futex-no-spurious-retry",
        "--arch",
        "x86_64",
        "--tests",
        "futex_errno",
        "--budget",
        "4m",
        "--stop-on-regression",
        "--fresh",
        "--json",
    ]));
    assert_eq!(r.code, 1, "a regression exits 1");
    assert_eq!(report(&r.stdout)["overall"], "regression");
    assert!(cluster.queue().is_empty(), "{:?}", cluster.queue());
    assert!(
        r.stderr.contains(&format!(
            "cancelled job(s) {} left by an earlier lab on this host (pid {gone}, gone)",
            orphan.trim()
        )),
        "{}",
        r.stderr
    );

    // Another comparison, interrupted while its first job runs.
    let child = cluster
        .lab()
        .args([
            "compare",
            "base",
            "base",
            "--arch",
            "x86_64",
            "--tests",
            "futex_errno",
            "--budget",
            "3m",
            "--fresh",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lab starts");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60)
        && !cluster.queue().iter().any(|l| l.contains("RUNNING"))
    {
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !common::processes_with(" worker run ").is_empty(),
        "a worker is running"
    );
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    let out = child.wait_with_output().expect("lab ends");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "Ctrl-C exits 130");
    // slurmd takes a moment to reap what scancel stopped.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && (!cluster.queue().is_empty() || !common::processes_with(" worker run ").is_empty())
    {
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        cluster.queue().is_empty(),
        "no job left: {:?}",
        cluster.queue()
    );
    assert!(
        common::processes_with(" worker run ").is_empty(),
        "no worker left: {:?}",
        common::processes_with(" worker run ")
    );
    let cache = common::cache_dir().join("slurm");
    assert!(
        common::processes_with("qemu-system")
            .iter()
            .all(|p| !p.contains(cache.to_str().unwrap_or("-"))),
        "no guest of the cancelled job left"
    );
}
