//! lab never panics because its reader went away: with stderr or stdout closed (`2>&-`) or a
//! pipe whose reader has exited (`lab … 2>&1 | head -0`), a verb ends with its documented exit
//! code, never Rust's 101. Checked on verbs that write an error, a table and a report without
//! needing a kernel, so the check runs everywhere.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]

mod common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::{lab, repo};

/// A pipe whose read end is already closed: every write to the other end fails with EPIPE.
fn broken_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills two descriptors we then own.
    let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "pipe(2)");
    // SAFETY: both descriptors are open and ours; the read end is dropped at once.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

/// `lab` with a private cache, so that the results store is empty and nothing is built.
fn lab_in(cache: &std::path::Path) -> Command {
    let mut c = lab(&repo().join("lab.toml"));
    c.env("LAB_CACHE_DIR", cache);
    c
}

fn close_fd_in_child(c: &mut Command, fd: i32) {
    // SAFETY: close(2) between fork and exec touches only the child's descriptor table.
    unsafe {
        c.pre_exec(move || {
            libc::close(fd);
            Ok(())
        });
    }
}

/// (what it runs, the exit code it documents)
fn verbs() -> Vec<(Vec<&'static str>, i32)> {
    vec![
        // A usage error: one error line on stderr.
        (vec!["compare", "base", "base", "--alpha", "0.9"], 2),
        // Not in the store: an error naming the session.
        (vec!["results", "show", "424242"], 2),
        // A table on stdout.
        (vec!["results", "list"], 0),
        (vec!["cache", "list"], 0),
        // Log lines from tracing as well as the table (tracing reports a failed write of its
        // own with `eprintln!` unless told not to).
        (vec!["-vv", "results", "list"], 0),
        (vec!["-vv", "results", "show", "424242"], 2),
        // clap's own error output.
        (vec!["compare", "base", "base", "--duration", "soon"], 2),
    ]
}

#[test]
fn a_broken_pipe_on_stderr_or_stdout_is_not_a_panic() {
    let cache = tempfile::tempdir().expect("tempdir");
    for (args, code) in verbs() {
        for which in ["stderr", "stdout", "both"] {
            let mut c = lab_in(cache.path());
            c.args(&args).stdin(Stdio::null());
            match which {
                "stderr" => {
                    c.stdout(Stdio::null()).stderr(broken_pipe());
                }
                "stdout" => {
                    c.stdout(broken_pipe()).stderr(Stdio::null());
                }
                _ => {
                    c.stdout(broken_pipe()).stderr(broken_pipe());
                }
            }
            let status = c.status().expect("lab runs");
            assert_eq!(
                status.code(),
                Some(code),
                "lab {args:?} with a broken {which}: {status}"
            );
        }
    }
}

#[test]
fn a_closed_stderr_or_stdout_is_not_a_panic() {
    let cache = tempfile::tempdir().expect("tempdir");
    for (args, code) in verbs() {
        for fd in [1, 2] {
            let mut c = lab_in(cache.path());
            c.args(&args).stdin(Stdio::null());
            close_fd_in_child(&mut c, fd);
            let status = c.status().expect("lab runs");
            assert_eq!(
                status.code(),
                Some(code),
                "lab {args:?} with fd {fd} closed: {status}"
            );
        }
    }
}

#[test]
fn the_check_sees_an_error_when_there_is_one() {
    // The same command with stderr captured says what it refused, so the exit codes above
    // come from lab's own error path, not from a crash that happens to exit 2.
    let cache = tempfile::tempdir().expect("tempdir");
    let out = lab_in(cache.path())
        .args(["compare", "base", "base", "--alpha", "0.9"])
        .output()
        .expect("lab runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--alpha"), "{err}");
}
