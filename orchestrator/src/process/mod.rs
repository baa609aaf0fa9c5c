//! Supervised child processes: `make`, QEMU and friends.
//!
//! Each child runs in its own process group, so that teardown reaches everything it spawned
//! (make's compilers, QEMU's helpers). Every group is registered while it lives; the signal
//! handler installed by [`install_interrupt_handler`] tears all of them down on Ctrl-C or
//! SIGTERM before lab exits, and dropping a [`Child`] kills its group. Nothing outlives lab:
//! when lab itself is killed with SIGKILL, the [`warden`] stops the groups it left.

use std::collections::BTreeSet;
use std::process::ExitStatus;
use std::sync::Mutex;
use std::time::Duration;

use tokio::process::Command;

pub mod warden;

/// Process groups of live children.
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// What to undo on Ctrl-C besides the child groups, such as jobs queued on a cluster, by id.
type Cleanup = Box<dyn Fn() + Send + Sync>;
static CLEANUPS: Mutex<Vec<(u64, Cleanup)>> = Mutex::new(Vec::new());
static NEXT_CLEANUP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Runs `f` if lab is interrupted (Ctrl-C, SIGTERM) while the guard lives, before the child
/// groups are stopped. For what a process group cannot hold: a cluster's jobs. `f` blocks
/// the exit, so it must be quick (it gets no more than the grace of the children).
#[must_use = "the cleanup is dropped with its guard"]
pub fn on_interrupt(f: impl Fn() + Send + Sync + 'static) -> CleanupGuard {
    let id = NEXT_CLEANUP.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if let Ok(mut c) = CLEANUPS.lock() {
        c.push((id, Box::new(f)));
    }
    CleanupGuard(id)
}

/// Removes its cleanup when dropped.
#[derive(Debug)]
pub struct CleanupGuard(u64);

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = CLEANUPS.lock() {
            c.retain(|(id, _)| *id != self.0);
        }
    }
}

fn run_cleanups() {
    // Taken out first: a cleanup that panics or blocks must not hold the lock.
    let cleanups: Vec<(u64, Cleanup)> = CLEANUPS
        .lock()
        .map(|mut c| std::mem::take(&mut *c))
        .unwrap_or_default();
    for (_, f) in cleanups {
        f();
    }
}

/// The exit code an interrupt asked for (0: none yet).
static INTERRUPTED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Set once Ctrl-C or SIGTERM arrived: the exit code lab must end with (130 or 143). Work
/// that fails because its children were stopped is then not reported as an error.
pub fn interrupted() -> Option<i32> {
    match INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        0 => None,
        code => Some(code),
    }
}

fn register(pgid: i32) {
    if let Ok(mut g) = GROUPS.lock() {
        g.insert(pgid);
    }
    warden::note(pgid, true);
}

fn unregister(pgid: i32) {
    if let Ok(mut g) = GROUPS.lock() {
        g.remove(&pgid);
    }
    warden::note(pgid, false);
}

fn signal_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
        unsafe { libc::kill(-pgid, sig) };
    }
}

/// Live (not zombie) processes of a process group, read from /proc. kill(2) with signal 0
/// would count zombies that wait for a reaper, which are already dead.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // Fields after the parenthesised command: state ppid pgrp ...
            let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
                return false;
            };
            let mut f = rest.split_whitespace();
            let state = f.next().unwrap_or("Z");
            let pgrp = f.nth(1).and_then(|g| g.parse::<i32>().ok());
            pgrp == Some(pgid) && state != "Z" && state != "X"
        })
        .collect()
}

fn group_alive(pgid: i32) -> bool {
    pgid > 1 && !group_members(pgid).is_empty()
}

/// Sends SIGTERM to every live group, waits up to `grace` for them to go, then SIGKILLs
/// whatever is left. Used on interrupt.
pub fn terminate_all(grace: Duration) {
    let groups: Vec<i32> = GROUPS
        .lock()
        .map(|g| g.iter().copied().collect())
        .unwrap_or_default();
    for &g in &groups {
        signal_group(g, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline && groups.iter().any(|&g| group_alive(g)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &g in &groups {
        signal_group(g, libc::SIGKILL);
        unregister(g);
    }
}

/// Installs the Ctrl-C / SIGTERM handler: tear down every child group, then exit with
/// 130 (SIGINT) or 143 (SIGTERM). Work already finished is on disk, written atomically.
pub fn install_interrupt_handler() {
    tokio::spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::warn!(
                "cannot install signal handlers; Ctrl-C may leave child processes behind"
            );
            return;
        };
        let code = tokio::select! {
            _ = int.recv() => 130,
            _ = term.recv() => 143,
        };
        INTERRUPTED.store(code, std::sync::atomic::Ordering::SeqCst);
        crate::errln!("lab: interrupted; stopping child processes");
        tokio::task::spawn_blocking(|| {
            run_cleanups();
            terminate_all(Duration::from_secs(3));
        })
        .await
        .ok();
        std::process::exit(code);
    });
}

/// A child in its own process group. Dropping it kills the group.
#[derive(Debug)]
pub struct Child {
    pub name: String,
    inner: tokio::process::Child,
    pgid: i32,
    reaped: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot start {name}: {source}")]
pub struct SpawnError {
    pub name: String,
    #[source]
    pub source: std::io::Error,
}

/// The first line of `tool --version`, trimmed: how lab records the tools a result was
/// made with. The error says why it could not be had (not found, failed to run, exit status).
pub fn version_line(tool: &std::path::Path) -> Result<String, String> {
    let out = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("exit status {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned())
}

/// Starts `cmd` in a new process group and registers the group.
pub fn spawn(name: &str, cmd: &mut Command) -> Result<Child, SpawnError> {
    cmd.process_group(0).kill_on_drop(true);
    let inner = cmd.spawn().map_err(|source| SpawnError {
        name: name.to_owned(),
        source,
    })?;
    let pgid = inner.id().map_or(0, |p| p as i32);
    register(pgid);
    Ok(Child {
        name: name.to_owned(),
        inner,
        pgid,
        reaped: false,
    })
}

impl Child {
    pub fn pid(&self) -> i32 {
        self.pgid
    }

    pub fn stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.inner.stdout.take()
    }

    pub fn stderr(&mut self) -> Option<tokio::process::ChildStderr> {
        self.inner.stderr.take()
    }

    /// Waits for the child to exit. Its group is then killed, so that no grandchild lingers.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let st = self.inner.wait().await;
        self.finish();
        st
    }

    /// Reads the child's piped stderr to its end, then waits: the status and what it said
    /// (empty when stderr was not piped).
    pub async fn wait_with_stderr(&mut self) -> std::io::Result<(ExitStatus, String)> {
        let mut text = Vec::new();
        if let Some(mut err) = self.stderr() {
            use tokio::io::AsyncReadExt as _;
            let _ = err.read_to_end(&mut text).await;
        }
        let status = self.wait().await?;
        Ok((status, String::from_utf8_lossy(&text).into_owned()))
    }

    /// Waits at most `limit`; None when it is still running.
    pub async fn wait_timeout(&mut self, limit: Duration) -> std::io::Result<Option<ExitStatus>> {
        match tokio::time::timeout(limit, self.inner.wait()).await {
            Ok(st) => {
                self.finish();
                st.map(Some)
            }
            Err(_) => Ok(None),
        }
    }

    /// Non-blocking check.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        let st = self.inner.try_wait()?;
        if st.is_some() {
            self.finish();
        }
        Ok(st)
    }

    /// SIGTERM to the group, `grace` to go, then SIGKILL. Returns the exit status.
    pub async fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.reaped {
            return None;
        }
        signal_group(self.pgid, libc::SIGTERM);
        let st = match tokio::time::timeout(grace, self.inner.wait()).await {
            Ok(Ok(st)) => Some(st),
            _ => {
                signal_group(self.pgid, libc::SIGKILL);
                self.inner.wait().await.ok()
            }
        };
        self.finish();
        st
    }

    fn finish(&mut self) {
        if !self.reaped {
            signal_group(self.pgid, libc::SIGKILL);
            unregister(self.pgid);
            self.reaped = true;
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            signal_group(self.pgid, libc::SIGKILL);
            unregister(self.pgid);
        }
    }
}

/// Finds `name` on PATH.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    if name.contains('/') {
        let p = std::path::PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| is_executable(p))
    })
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanups_run_while_their_guard_lives_and_only_once() {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::Arc;
        let kept = Arc::new(AtomicU32::new(0));
        let dropped = Arc::new(AtomicU32::new(0));
        let k = kept.clone();
        let _guard = on_interrupt(move || {
            k.fetch_add(1, Ordering::SeqCst);
        });
        let d = dropped.clone();
        drop(on_interrupt(move || {
            d.fetch_add(1, Ordering::SeqCst);
        }));
        run_cleanups();
        run_cleanups();
        assert_eq!(kept.load(Ordering::SeqCst), 1);
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn terminate_kills_the_whole_group() {
        let mut cmd = Command::new("sh");
        // The grandchild would outlive a plain kill of the shell.
        cmd.args(["-c", "sleep 30 & sleep 30; wait"]);
        let mut child = spawn("sh", &mut cmd).expect("spawn");
        let pgid = child.pid();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(group_alive(pgid));
        child.terminate(Duration::from_millis(200)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!group_alive(pgid), "no member of the group may survive");
    }

    #[tokio::test]
    async fn dropping_a_child_kills_its_group() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & sleep 30; wait"]);
        let child = spawn("sh", &mut cmd).expect("spawn");
        let pgid = child.pid();
        drop(child);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!group_alive(pgid));
    }

    #[tokio::test]
    async fn wait_timeout_reports_running_then_done() {
        let mut cmd = Command::new("sleep");
        cmd.arg("0.3");
        let mut child = spawn("sleep", &mut cmd).expect("spawn");
        assert!(child
            .wait_timeout(Duration::from_millis(20))
            .await
            .expect("wait")
            .is_none());
        let st = child
            .wait_timeout(Duration::from_secs(5))
            .await
            .expect("wait");
        assert!(st.is_some_and(|s| s.success()));
    }
}
