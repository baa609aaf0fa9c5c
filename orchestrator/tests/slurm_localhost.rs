//! `scripts/slurm-localhost.sh` starts a real Slurm cluster on this machine (munged,
//! slurmctld, two slurmd) that takes jobs, and stops it without leaving a process behind.
//! The Slurm executor's tests stand on it (issue 14).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn script(cmd: &str, dir: &Path) -> Output {
    Command::new(common::repo().join("scripts/slurm-localhost.sh"))
        .args([cmd, dir.to_str().expect("utf-8")])
        .env("SLURM_LOCALHOST_PORT", "26817")
        .output()
        .expect("the script runs")
}

fn slurm(dir: &Path, tool: &str, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .env("SLURM_CONF", dir.join("etc/slurm.conf"))
        .env(
            "PATH",
            format!("{}:/usr/sbin", std::env::var("PATH").unwrap_or_default()),
        )
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Processes whose command line names the cluster's folder.
fn processes_of(dir: &Path) -> Vec<String> {
    common::processes_with(dir.to_str().expect("utf-8"))
}

#[test]
fn a_local_cluster_takes_jobs_on_both_nodes_and_stops_clean() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("slurm");
    let started = script("start", &dir);
    // Stop whatever happens below, and check that nothing is left.
    struct Stop<'a>(&'a Path);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = script("stop", self.0);
        }
    }
    let _stop = Stop(&dir);
    assert!(started.status.success(), "start: {}", text(&started));
    assert!(
        String::from_utf8_lossy(&started.stdout).contains("export SLURM_CONF="),
        "{}",
        text(&started)
    );
    let status = script("status", &dir);
    assert!(status.status.success(), "status: {}", text(&status));

    // Two idle nodes with their features.
    let nodes = slurm(&dir, "sinfo", &["-h", "-N", "-o", "%N %f %t"]);
    let nodes = String::from_utf8_lossy(&nodes.stdout).to_string();
    assert!(nodes.contains("n1 x86_64 idle"), "{nodes}");
    assert!(nodes.contains("n2 arm64host idle"), "{nodes}");

    // A job on each node, picked by feature, with every core of the node.
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .to_string();
    for (feature, node) in [("x86_64", "n1"), ("arm64host", "n2")] {
        let r = slurm(
            &dir,
            "srun",
            &[
                "-p",
                "run",
                "-C",
                feature,
                "-c",
                &cores,
                "-N",
                "1",
                "printenv",
                "SLURMD_NODENAME",
            ],
        );
        assert!(r.status.success(), "srun -C {feature}: {}", text(&r));
        assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), node);
    }

    // A job array through sbatch, and a job that scancel ends.
    let out = tmp.path().join("array-%a.out");
    let r = slurm(
        &dir,
        "sbatch",
        &[
            "--wait",
            "-p",
            "build",
            "-a",
            "0-1",
            "-c",
            "1",
            "-o",
            out.to_str().expect("utf-8"),
            "--wrap",
            "echo task $SLURM_ARRAY_TASK_ID on $SLURMD_NODENAME",
        ],
    );
    assert!(r.status.success(), "sbatch --wait: {}", text(&r));
    for i in 0..2 {
        let got = std::fs::read_to_string(tmp.path().join(format!("array-{i}.out")))
            .expect("array task output");
        assert!(got.starts_with(&format!("task {i} on n")), "{got}");
    }
    let r = slurm(
        &dir,
        "sbatch",
        &["--parsable", "-J", "lab-sleeper", "--wrap", "sleep 600"],
    );
    assert!(r.status.success(), "sbatch: {}", text(&r));
    let id = String::from_utf8_lossy(&r.stdout).trim().to_owned();
    let q = slurm(&dir, "squeue", &["-h", "-j", &id, "-o", "%i %j"]);
    assert!(
        String::from_utf8_lossy(&q.stdout).contains("lab-sleeper"),
        "{}",
        text(&q)
    );
    let r = slurm(&dir, "scancel", &["--full", &id]);
    assert!(r.status.success(), "scancel: {}", text(&r));

    let stopped = script("stop", &dir);
    assert!(stopped.status.success(), "stop: {}", text(&stopped));
    let left = processes_of(&dir);
    assert!(left.is_empty(), "left behind: {left:?}");
    let again = script("status", &dir);
    assert!(
        !again.status.success(),
        "status after stop says down: {}",
        text(&again)
    );
}
