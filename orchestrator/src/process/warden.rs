//! The warden: a small process forked when lab starts, which outlives lab by a moment to
//! stop the process groups lab leaves behind when it cannot stop them itself.
//!
//! Ctrl-C, SIGTERM and every normal exit path already stop lab's children (see the module
//! above). SIGKILL, the OOM killer and a crash cannot be caught: before the warden, a lab
//! killed that way left QEMU guests and make jobs running, each in its own process group.
//!
//! lab tells the warden, over a pipe, each group it starts (`+PGID`) and each it has
//! stopped (`-PGID`). The warden blocks on that pipe. When it reads end of file (lab is
//! gone, whatever the way) it sends SIGTERM to every group still on its list, gives them
//! [`GRACE`], SIGKILLs what is left, and exits. The pipe's write end is close-on-exec, so
//! no child holds it open.
//!
//! The warden is forked before any thread exists (see `main`), lives in a process group of
//! its own (a Ctrl-C at the terminal does not reach it), ignores SIGINT, SIGTERM, SIGHUP
//! and SIGPIPE, and has /dev/null as stdin, stdout and stderr, so that nobody reading lab's
//! output waits for it.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// How long the groups get between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

/// The write end of the pipe to the warden (-1: none).
static PIPE: AtomicI32 = AtomicI32::new(-1);

/// Forks the warden. Call it first thing in `main`, while lab has one thread: after that a
/// fork may only call async-signal-safe functions. Without a warden (a library user, or
/// fork failed), lab stops its children on every path but SIGKILL, as before.
pub fn start() {
    let mut fds = [-1i32; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        tracing::warn!("no warden: pipe: {}", std::io::Error::last_os_error());
        return;
    }
    let (read_end, write_end) = (fds[0], fds[1]);
    // SAFETY: lab has a single thread here (see above), so the child may run ordinary code.
    match unsafe { libc::fork() } {
        -1 => {
            tracing::warn!("no warden: fork: {}", std::io::Error::last_os_error());
            // SAFETY: closing descriptors this function opened.
            unsafe {
                libc::close(read_end);
                libc::close(write_end);
            }
        }
        0 => {
            // SAFETY: closing our copy of the write end; only lab may hold it.
            unsafe { libc::close(write_end) };
            watch(read_end)
        }
        _ => {
            // SAFETY: the parent keeps only the write end.
            unsafe { libc::close(read_end) };
            PIPE.store(write_end, Ordering::SeqCst);
        }
    }
}

/// Tells the warden about a group lab started (`true`) or has stopped (`false`).
pub(super) fn note(pgid: i32, live: bool) {
    let fd = PIPE.load(Ordering::SeqCst);
    if fd < 0 || pgid <= 1 {
        return;
    }
    let line = format!("{}{pgid}\n", if live { '+' } else { '-' });
    // One short write(2) to a pipe is atomic, so lines from two threads never interleave.
    // SAFETY: writing a buffer we own to a descriptor we own.
    let _ = unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
}

/// The warden's whole life: read the list until end of file, then stop what is on it.
fn watch(fd: i32) -> ! {
    detach(fd);
    let mut groups: Vec<i32> = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        // SAFETY: reading into a buffer we own.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n as usize]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            apply(&mut groups, &line[..line.len() - 1]);
        }
    }
    stop(&groups);
    // SAFETY: leaving without running lab's atexit handlers or flushing its buffers.
    unsafe { libc::_exit(0) }
}

/// `+PGID` adds a group, `-PGID` removes it; anything else is ignored.
fn apply(groups: &mut Vec<i32>, line: &[u8]) {
    let Ok(text) = std::str::from_utf8(line) else {
        return;
    };
    let (live, num) = match text.split_at_checked(1) {
        Some(("+", n)) => (true, n),
        Some(("-", n)) => (false, n),
        _ => return,
    };
    let Ok(pgid) = num.parse::<i32>() else { return };
    groups.retain(|&g| g != pgid);
    if live && pgid > 1 {
        groups.push(pgid);
    }
}

/// SIGTERM to every group, up to [`GRACE`] for them to go, then SIGKILL.
fn stop(groups: &[i32]) {
    if groups.is_empty() {
        return;
    }
    for &g in groups {
        // SAFETY: kill(2) with a negative pid signals a process group.
        unsafe { libc::kill(-g, libc::SIGTERM) };
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline && groups.iter().any(|&g| !super::group_members(g).is_empty()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &g in groups {
        // SAFETY: as above.
        unsafe { libc::kill(-g, libc::SIGKILL) };
    }
}

/// Own process group, signals that would end the warden early ignored, /dev/null for the
/// standard streams, and no descriptor but the pipe.
fn detach(fd: i32) {
    // SAFETY: plain system calls on the warden's own process and descriptors.
    unsafe {
        libc::setpgid(0, 0);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for std_fd in 0..3 {
                libc::dup2(null, std_fd);
            }
        }
        let max = libc::sysconf(libc::_SC_OPEN_MAX).clamp(64, 65_536) as i32;
        for other in 3..max {
            if other != fd {
                libc::close(other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_follows_the_lines_and_ignores_junk() {
        let mut g = Vec::new();
        for line in [
            "+100", "+200", "-100", "+300", "x", "+", "+-5", "+1", "+200", "-999",
        ] {
            apply(&mut g, line.as_bytes());
        }
        assert_eq!(g, vec![300, 200], "a group noted again moves to the end");
    }
}
