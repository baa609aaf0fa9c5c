//! A lab killed with SIGKILL cannot stop its children itself; its warden
//! (`process/warden.rs`) does. Checked on the child that matters most: a QEMU guest, which
//! runs in a process group of its own and would otherwise keep running, and keep its CPU.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{lab, repo_lab_toml};

/// Live (not zombie) children of `parent` whose command name starts with `prefix`.
fn children(parent: u32, prefix: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((head, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let comm = head.split_once('(').map_or("", |(_, c)| c);
            let mut f = rest.split_whitespace();
            let state = f.next().unwrap_or("Z");
            let ppid = f.next().and_then(|p| p.parse::<u32>().ok());
            comm.starts_with(prefix) && ppid == Some(parent) && state != "Z"
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}

#[test]
fn a_lab_killed_with_sigkill_leaves_no_guest_running() {
    let mut child = lab(&repo_lab_toml())
        .args(["run", "--arch", "x86_64", "--tests", "futex_errno"])
        .args(["--iterations", "50", "--duration", "2s", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lab starts");
    let lab_pid = child.id();
    // The base kernel is built once by the test run (`scripts/test-kernels.sh`); give a cold
    // cache time to build it anyway.
    let deadline = Instant::now() + Duration::from_secs(900);
    let qemu = loop {
        if let Some(&q) = children(lab_pid, "qemu-system").first() {
            break q;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("lab ended ({st}) before it started a guest");
        }
        assert!(
            Instant::now() < deadline,
            "no guest started within 15 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Let the guest get going, then kill lab the way nothing can catch.
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) on the child we spawned.
    unsafe { libc::kill(lab_pid as i32, libc::SIGKILL) };
    let st = child.wait().expect("wait");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL)
    );
    let gone_by = Instant::now() + Duration::from_secs(10);
    while alive(qemu) && Instant::now() < gone_by {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = alive(qemu);
    if left {
        // Do not leave it to the next test either.
        // SAFETY: kill(2) on a pid this test found as lab's QEMU child.
        unsafe { libc::kill(-qemu, libc::SIGKILL) };
    }
    assert!(
        !left,
        "QEMU {qemu} still runs 10 s after lab was killed with SIGKILL"
    );
}
