//! Signals, children and power-off: the parts of being PID 1 that the kernel makes special.
//!
//! The kernel drops signals whose handler is SIG_DFL before they reach init
//! (`sig_task_ignored()`, kernel/signal.c), but never drops a *blocked* signal. So PID 1 blocks
//! the signals it cares about and takes them synchronously with `sigtimedwait`: no handlers,
//! no async-signal-safety concerns. Children must not inherit that mask.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use lab_proto::Marker;

use crate::console;

/// SIGCHLD to reap, SIGUSR2 from `poweroff`, SIGTERM and SIGINT (Ctrl-Alt-Del) to stop.
const SIGNALS: [libc::c_int; 4] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGUSR2, libc::SIGINT];

/// How long children get between SIGTERM and SIGKILL at power-off.
const GRACE: Duration = Duration::from_millis(500);

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data that sigemptyset initialises; the signals are valid.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Blocks [`SIGNALS`]; call before anything can send one.
pub fn block_signals() -> io::Result<()> {
    let set = signal_set();
    // SAFETY: set is initialised; the old mask is not wanted.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for one of [`SIGNALS`], forever or up to `timeout`. `None` on timeout or EINTR.
pub fn wait_signal(timeout: Option<Duration>) -> Option<libc::c_int> {
    let set = signal_set();
    // SAFETY: set is initialised; a null siginfo is allowed; ts lives across the call.
    let sig = unsafe {
        match timeout {
            None => libc::sigwaitinfo(&set, std::ptr::null_mut()),
            Some(t) => {
                let ts = libc::timespec {
                    tv_sec: t.as_secs() as _,
                    tv_nsec: t.subsec_nanos() as _,
                };
                libc::sigtimedwait(&set, std::ptr::null_mut(), &ts)
            }
        }
    };
    (sig > 0).then_some(sig)
}

/// Configures `cmd` so the child starts with an empty signal mask and default dispositions,
/// not PID 1's blocked set. SIGPIPE is reset too, in case Rust's runtime ignored it (it does in
/// a normal `fn main`; this binary is `no_main`, but the helper should not depend on that).
pub fn clean_signals_for_child(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (sigemptyset, sigprocmask, signal); it does not allocate.
    unsafe {
        cmd.pre_exec(|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            for sig in SIGNALS.into_iter().chain([libc::SIGPIPE]) {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        });
    }
}

/// Reaps every child that has exited, orphans included, calling `on_exit(pid, status)` for
/// each. Returns false when no child is left at all.
pub fn reap(mut on_exit: impl FnMut(libc::pid_t, libc::c_int)) -> bool {
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match pid {
            0 => return true,
            p if p > 0 => on_exit(p, status),
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => return false, // ECHILD
        }
    }
}

/// Reaps `pid` if it has exited, returning its wait status.
pub fn try_reap(pid: libc::pid_t) -> Option<libc::c_int> {
    let mut status = 0;
    // SAFETY: status is a valid out-pointer.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    (rc == pid).then_some(status)
}

/// A wait status in words, for FATAL messages.
pub fn describe_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status:#x}")
    }
}

/// Ends the guest: SIGTERM to everyone, a short grace period spent reaping, SIGKILL, sync,
/// then reboot. QEMU runs with `-no-reboot`, so a reboot makes it exit; it works on x86_64
/// kernels without ACPI, where power-off would only halt.
pub fn power_off() -> ! {
    console::emit(&Marker::Poweroff);
    // SAFETY: kill(-1) signals every process but PID 1 itself.
    unsafe { libc::kill(-1, libc::SIGTERM) };
    let deadline = Instant::now() + GRACE;
    while reap(|_, _| {}) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        wait_signal(Some(left));
    }
    // SAFETY: as above.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    console::drain();
    // SAFETY: sync and reboot take no pointers.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    let reboot_err = io::Error::last_os_error();
    // SAFETY: as above.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    console::fatal(&format!(
        "failed to reboot ({reboot_err}) and to power off ({}): kill QEMU from the host",
        io::Error::last_os_error()
    ));
    // PID 1 must not exit: the kernel would panic ("Attempted to kill init!").
    loop {
        // SAFETY: pause has no arguments.
        unsafe { libc::pause() };
    }
}

/// What `/sbin/poweroff` does: ask PID 1 to power off and return at once, so the SSH command
/// that ran it can end before PID 1's SIGTERM does it.
pub fn request_poweroff() -> i32 {
    // Run by mistake on a host as root, SIGUSR2 would go to the host's init.
    if !pid_1_is_us() {
        eprintln!("poweroff: PID 1 is not lab-init, so this is not a lab guest; refusing");
        return 2;
    }
    // SAFETY: plain kill(2).
    if unsafe { libc::kill(1, libc::SIGUSR2) } != 0 {
        eprintln!(
            "poweroff: failed to send SIGUSR2 to PID 1: {} (are you root, inside the lab guest?)",
            io::Error::last_os_error()
        );
        return 1;
    }
    0
}

/// Whether PID 1 runs the same executable as this process.
fn pid_1_is_us() -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata("/proc/1/exe"),
        std::fs::metadata("/proc/self/exe"),
    ) {
        (Ok(init), Ok(me)) => (init.dev(), init.ino()) == (me.dev(), me.ino()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_wait_statuses() {
        assert_eq!(describe_status(0), "exit status 0");
        assert_eq!(describe_status(1 << 8), "exit status 1");
        assert_eq!(describe_status(libc::SIGKILL), "killed by signal 9");
    }
}
