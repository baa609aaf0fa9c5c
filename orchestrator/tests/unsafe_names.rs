//! Names with shell metacharacters never get near a shell: every way a test name, a knob or
//! a patch-set name comes in (flags, lab.toml, a patch set's expect.toml) refuses them with
//! exit 2 and a message that names the character, before anything is built or booted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{lab, repo};

/// Runs lab with a private, empty cache. The refusal must come before anything is built, so
/// a lab still running after a minute is killed (with its process group) and the test fails,
/// instead of building a kernel. Returns (exit code, stderr).
fn run(lab_toml: &Path, cache: &Path, args: &[&str]) -> (i32, String) {
    use std::io::{Read, Seek};
    use std::os::unix::process::CommandExt;
    let mut err_file = tempfile::tempfile().expect("stderr file");
    let mut child = lab(lab_toml)
        .env("LAB_CACHE_DIR", cache)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(err_file.try_clone().expect("dup"))
        .process_group(0)
        .spawn()
        .expect("lab runs");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > std::time::Duration::from_secs(60) {
            // SAFETY: kill(2) on the child's own process group.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!("lab {args:?} was still running after 60 s: it got past the check");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    err_file.rewind().expect("rewind");
    err_file.read_to_string(&mut err).expect("read stderr");
    (status.code().unwrap_or(-1), err)
}

#[test]
fn flags_refuse_shell_characters_before_anything_runs() {
    let cache = tempfile::tempdir().expect("tempdir");
    let toml = repo().join("lab.toml");
    for (args, says) in [
        (
            vec!["run", "--tests", "futex_errno;reboot"],
            "the shell character ';'",
        ),
        (vec!["run", "--tests", "$(id)"], "the shell character '$'"),
        (vec!["run", "--tests", "a b"], "white space"),
        (
            vec!["run", "--knob", "futex_amp_wake_delay_us=5;reboot"],
            "no spaces or shell characters",
        ),
        (
            vec!["compare", "base", "--knob-b", "x`id`=1", "base"],
            "a knob name is letters",
        ),
        // A name, not a path (a path is only ever a path): refused before A is built.
        (
            vec!["compare", "base", "bad;touch"],
            "the shell character ';'",
        ),
        (vec!["run", "--patches=-rf"], "may not start with -"),
    ] {
        let (code, err) = run(&toml, cache.path(), &args);
        assert_eq!(code, 2, "lab {args:?} exits 2:\n{err}");
        assert!(err.contains(says), "lab {args:?} says {says:?}:\n{err}");
    }
    // Nothing was built or run: the cache holds no artifact and no run.
    for sub in ["artifacts", "runs"] {
        let d = cache.path().join(sub);
        let n = std::fs::read_dir(&d).map(|r| r.count()).unwrap_or(0);
        assert_eq!(n, 0, "{} is empty", d.display());
    }
}

#[test]
fn lab_toml_and_expect_toml_refuse_them_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = dir.path().join("lab.toml");
    std::fs::write(
        &toml,
        "format-version = 1\n[tests]\nsuite = [\"futex_errno\", \"x|reboot\"]\n",
    )
    .expect("write lab.toml");
    let (code, err) = run(&toml, dir.path(), &["run"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("tests.suite") && err.contains("the shell character '|'"),
        "{err}"
    );

    // A patch set whose expect.toml names a test with a shell character.
    let patches = dir.path().join("patches");
    let set = patches.join("evil");
    std::fs::create_dir_all(&set).expect("mkdir");
    std::fs::copy(
        repo().join("patches/futex-race-amplifiers/expect.toml"),
        set.join("expect.toml"),
    )
    .expect("copy expect.toml");
    let text = std::fs::read_to_string(set.join("expect.toml")).expect("read");
    let evil = text.replacen("exercises = [", "exercises = [\"a&&b\", ", 1);
    assert_ne!(text, evil, "the template lists what it exercises");
    std::fs::write(set.join("expect.toml"), evil).expect("write");
    let toml2 = dir.path().join("lab2.toml");
    std::fs::write(
        &toml2,
        format!(
            "format-version = 1\n[patches]\ndir = {:?}\n",
            patches.display().to_string()
        ),
    )
    .expect("write lab2.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["selftest", "--row", "no-such-row", "--lab"])
        .arg(&toml2)
        .env("LAB_CACHE_DIR", dir.path())
        .output()
        .expect("lab runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("the shell character '&'"), "{err}");
}
