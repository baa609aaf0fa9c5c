//! `lab run --target`: the board path end to end, on a board made of QEMU
//! (`scripts/qemu-board.sh`) that lab does not start itself. lab installs each kernel through
//! the target's hook, logs in over SSH, checks the board runs that kernel, unpacks its guest
//! image there and runs the tests in it, and reads the console from the kernel log over SSH
//! or from the console hook. The kernels come from the cache that `make test` fills first.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lab::arch::Arch;
use lab::config::Settings;

/// One board at a time: they share the port.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
const PORT: u16 = 36_911;

struct Board {
    dir: PathBuf,
    toml: PathBuf,
    key: PathBuf,
    _tmp: tempfile::TempDir,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Board {
    /// A board folder with its root file system (lab's guest image for futex_errno, with a
    /// key of the board's own) and a lab.toml with three targets on it: the kernel log over
    /// SSH, the serial console hook, and a hook that forgets lab's command line.
    fn new() -> Board {
        let one = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("board");
        std::fs::create_dir_all(&dir).expect("board dir");
        let p = common::repo().join("lab.toml");
        let s = Settings::from_text(&p, &std::fs::read_to_string(&p).expect("lab.toml"))
            .expect("valid lab.toml");
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let image = rt
            .block_on(lab::run::guest_image(
                &s,
                Arch::X86_64,
                &["futex_errno".to_owned()],
            ))
            .expect("guest image");
        let keys = lab::guest::image::run_keys(&dir.join("keys")).expect("keys");
        lab::guest::image::write_initramfs(&image, &keys, &dir.join("rootfs.cpio"))
            .expect("rootfs");
        let script = common::repo().join("scripts/qemu-board.sh");
        let hook = |extra: &str| {
            format!(
                "{extra}QEMU_BOARD_DIR={} QEMU_BOARD_PORT={PORT} {} install",
                dir.display(),
                script.display()
            )
        };
        let target = |name: &str, install: String, more: &str| {
            format!(
                "\n[target.{name}]\narch = \"x86_64\"\nhost = \"127.0.0.1\"\nport = {PORT}\n\
                 key = \"{}\"\ninstall = \"{install}\"\n{more}",
                keys.client_key.display()
            )
        };
        let mut text = String::new();
        text.push_str(&target("kmsg", hook(""), "boot-timeout = \"3m\"\n"));
        text.push_str(&target(
            "serial",
            hook(""),
            &format!(
                "boot-timeout = \"3m\"\nconsole = \"QEMU_BOARD_DIR={} {} console\"\n",
                dir.display(),
                script.display()
            ),
        ));
        text.push_str(&target(
            "forgetful",
            hook("QEMU_BOARD_CMDLINE= "),
            "boot-timeout = \"25s\"\n",
        ));
        let toml = common::lab_toml(tmp.path(), &text);
        Board {
            key: keys.client_key,
            dir,
            toml,
            _tmp: tmp,
            _one: one,
        }
    }

    fn lab(&self, target: &str) -> Command {
        let mut c = common::lab(&self.toml);
        c.args(["--target", target]);
        c
    }

    /// Runs `command` on the board as root, with the system ssh client.
    fn ssh(&self, command: &str) -> bool {
        Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(["-o", "ConnectTimeout=5", "-p", &PORT.to_string(), "-i"])
            .arg(&self.key)
            .arg("root@127.0.0.1")
            .arg(command)
            .status()
            .is_ok_and(|s| s.success())
    }

    fn stop(&self) {
        let _ = Command::new(common::repo().join("scripts/qemu-board.sh"))
            .arg("stop")
            .env("QEMU_BOARD_DIR", &self.dir)
            .status();
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_dir(stdout: &str) -> PathBuf {
    let v: serde_json::Value = serde_json::from_str(stdout).expect("lab run --json");
    let dir = v["runs"][0]["dir"]
        .as_str()
        .or_else(|| v[0]["dir"].as_str())
        .unwrap_or_else(|| panic!("a run directory in {v}"));
    PathBuf::from(dir)
}

fn outcomes(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .expect("results.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an outcome"))
        .collect()
}

#[test]
fn a_board_runs_the_installed_kernel_and_its_console_is_watched() {
    let board = Board::new();

    // The kernel log over SSH: a splat the board's kernel logs while a test runs is the
    // run's kernel crash, as on a QEMU guest's serial console.
    let child = board
        .lab("kmsg")
        .args(["run", "--arch", "x86_64", "--tests", "futex_errno"])
        .args(["--iterations", "6", "--duration", "3s", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lab runs");
    // Once the board is up and a test has started, its kernel logs a warning.
    let started = Instant::now();
    let mut injected = false;
    while started.elapsed() < Duration::from_secs(240) && !injected {
        std::thread::sleep(Duration::from_secs(2));
        if board.ssh("grep -q lab.kernel= /proc/cmdline && ls /var/tmp/lab/*/.lab-complete") {
            std::thread::sleep(Duration::from_secs(4));
            injected = board.ssh(
                "for l in '------------[ cut here ]------------' \
                 'WARNING: CPU: 0 PID: 1 at kernel/futex/waitwake.c:42 futex_wake+0x10/0x20' \
                 'Call Trace:' ' <TASK>' ' futex_wake+0x10/0x20' ' </TASK>' \
                 '---[ end trace 0000000000000000 ]---'; do echo \"<4>$l\" > /dev/kmsg; done",
            );
        }
    }
    let out = child.wait_with_output().expect("lab exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(injected, "the board came up and took the warning: {stderr}");
    let dir = run_dir(&stdout);
    let all = outcomes(&dir);
    assert_eq!(all.len(), 6, "{all:?}");
    let crashed: Vec<_> = all.iter().filter(|o| o["kind"] == "kernel-crash").collect();
    assert_eq!(
        crashed.len(),
        1,
        "one test saw the warning: {all:?}\n{stderr}"
    );
    assert!(
        crashed[0]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("futex_wake")),
        "{crashed:?}"
    );
    assert!(
        all.iter()
            .filter(|o| o["kind"] != "kernel-crash")
            .all(|o| o["kind"] == "pass"),
        "the rest pass on base: {all:?}"
    );
    assert_ne!(out.status.code(), Some(0), "a kernel crash fails the run");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest json");
    assert_eq!(manifest["accel"], "native", "{manifest}");
    assert_eq!(manifest["placement"]["engine"], "board", "{manifest}");
    assert_eq!(
        manifest["placement"]["node"], "kmsg@127.0.0.1",
        "{manifest}"
    );
    assert!(
        manifest["cmdline"]
            .as_str()
            .is_some_and(|c| c.starts_with("lab.kernel=")),
        "{manifest}"
    );
    let boot1 = dir.join("boot-1");
    let console = std::fs::read_to_string(boot1.join("console.log")).expect("console.log");
    assert!(
        console.contains("Linux version"),
        "the kernel log from boot on"
    );
    assert!(
        std::fs::read_to_string(boot1.join("install.log"))
            .expect("install.log")
            .contains("qemu-board: booting"),
        "the hook's output is kept"
    );

    // The serial console hook: the console is the board's serial line, with PID 1's markers.
    let out = board
        .lab("serial")
        .args(["run", "--arch", "x86_64", "--tests", "futex_errno"])
        .args(["--iterations", "1", "--json"])
        .output()
        .expect("lab runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let dir = run_dir(&String::from_utf8_lossy(&out.stdout));
    let all = outcomes(&dir);
    assert!(all.iter().all(|o| o["kind"] == "pass"), "{all:?}");
    let console = std::fs::read_to_string(dir.join("boot-1/console.log")).expect("console.log");
    assert!(
        console.contains("LAB/1 READY"),
        "the serial line: {console}"
    );

    // A hook that boots the kernel without lab's command line is caught: the board may
    // still run the previous kernel, so nothing it says can count.
    let out = board
        .lab("forgetful")
        .args(["run", "--arch", "x86_64", "--tests", "futex_errno"])
        .args(["--iterations", "1", "--json"])
        .output()
        .expect("lab runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let dir = run_dir(&String::from_utf8_lossy(&out.stdout));
    let all = outcomes(&dir);
    assert!(
        all.iter().all(|o| o["kind"] == "infra-error"
            && o["summary"]
                .as_str()
                .is_some_and(|s| s.contains("lacks lab.kernel="))),
        "{all:?}\n{stderr}"
    );
    assert_eq!(out.status.code(), Some(3), "infrastructure: {stderr}");

    // A comparison on the board: A and B take turns on it, each boot behind its own install.
    let out = board
        .lab("kmsg")
        .args([
            "compare",
            "base",
            "base",
            "--arch",
            "x86_64",
            "--tests",
            "futex_errno",
        ])
        .args(["--budget", "60s", "--json"])
        .output()
        .expect("lab runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "no regression of base on base: {stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("lab compare --json");
    let session = report["session"].as_i64().expect("a session");
    let store =
        lab::results::store::Store::open(&common::cache_dir().join("results.db")).expect("store");
    let runs = store.session_runs(session).expect("runs");
    assert!(runs.len() >= 2, "at least one pair: {runs:?}");
    assert!(
        runs.iter()
            .all(|r| r.engine == "board" && r.node.as_deref() == Some("kmsg@127.0.0.1")),
        "{runs:?}"
    );
    assert!(runs.iter().any(|r| r.side.as_deref() == Some("A")));
    assert!(runs.iter().any(|r| r.side.as_deref() == Some("B")));

    // lab let go of the board: no console reader or hook of lab's is left.
    let dir_s = board.dir.display().to_string();
    let left: Vec<String> = common::processes_with(&dir_s)
        .into_iter()
        .chain(common::processes_with("cat /dev/kmsg"))
        .filter(|c| !c.contains("qemu-system"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn an_unknown_target_is_a_usage_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let toml = common::lab_toml(tmp.path(), "");
    let out = common::lab(&toml)
        .args(["--target", "nope", "run", "--arch", "x86_64"])
        .output()
        .expect("lab runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("\"nope\" is not a [target.NAME]"),
        "{stderr}"
    );
}
