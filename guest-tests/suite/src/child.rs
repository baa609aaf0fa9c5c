//! A program run under a deadline in its own process group, with its output read whole: how
//! the guest adapters run third-party test programs (kselftests, rt-tests), so that a program
//! that hangs, or leaves children behind, takes its whole group down with it.

use std::io::Read as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a program ended, and what it printed.
#[derive(Debug)]
pub struct Ran {
    pub stdout: String,
    pub stderr: String,
    /// The exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// It was still running at the deadline, and its group was killed.
    pub timed_out: bool,
}

/// Runs `cmd` in a process group of its own, stdin closed, stdout and stderr read whole; at
/// `allowance`, kills the group. Whatever the program left running in its group is killed
/// when it ends too.
pub fn run_in_group(mut cmd: Command, allowance: Duration) -> Result<Ran, String> {
    let what = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let pgid = child.id() as i32;
    let read = |mut s: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = child.stdout.take().map(|s| read(Box::new(s)));
    let err = child.stderr.take().map(|s| read(Box::new(s)));
    let deadline = Instant::now() + allowance;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                // SAFETY: kill(2) on the process group created for this program.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                match child.wait() {
                    Ok(s) => break s,
                    Err(e) => return Err(format!("wait for {what}: {e}")),
                }
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("wait for {what}: {e}")),
        }
    };
    // SAFETY: as above; ESRCH when the group is already empty is fine.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let join = |h: Option<std::thread::JoinHandle<String>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    Ok(Ran {
        stdout: join(out),
        stderr: join(err),
        code: status.code(),
        signal: status.signal(),
        timed_out,
    })
}
