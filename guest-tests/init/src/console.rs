//! The console: fds 0-2 of PID 1 and the marker lines on them. Until SSH is up it is the guest's
//! only way to tell the host anything, so markers are written with one `write(2)` each, never
//! buffered, and FATAL text is kept to one line.

use std::io;

use lab_proto::Marker;

/// Points fds 0, 1 and 2 at `/dev/console`. The kernel opens the console for init itself only
/// when the initramfs holds the node (`console_on_rootfs()`, init/main.c); otherwise the fds
/// are closed and this fails until devtmpfs is mounted.
pub fn attach() -> io::Result<()> {
    // SAFETY: a NUL-terminated path and plain flags.
    let fd = unsafe {
        libc::open(
            c"/dev/console".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    for target in 0..=2 {
        // dup2 clears O_CLOEXEC on the copy, so children inherit the console; when fd is
        // already `target` (fds were closed), clear the flag by hand.
        // SAFETY: fd is open; dup2 and fcntl only touch the fd table.
        let rc = unsafe {
            if fd == target {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, target)
            }
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    if fd > 2 {
        // SAFETY: fd is ours and no longer needed.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Prints one marker line on the console, unbuffered. When the console is gone there is no one
/// to tell, so write errors are ignored; a FATAL line also goes to the kernel log.
pub fn emit(marker: &Marker) {
    let line = format!("{marker}\n");
    if write_all(1, line.as_bytes()).is_err() {
        if let Marker::Fatal { .. } = marker {
            to_kmsg(&line);
        }
    }
}

/// Prints a FATAL marker. The text is flattened to one line, because the host reads markers
/// line by line.
pub fn fatal(message: &str) {
    let message = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    emit(&Marker::Fatal { message });
}

/// Waits until the UART has sent what we wrote, so a marker printed just before reboot is not
/// lost in the tty buffer. Fails harmlessly (ENOTTY) when stdout is not a terminal.
pub fn drain() {
    // SAFETY: tcdrain only inspects fd 1.
    unsafe { libc::tcdrain(1) };
}

/// Milliseconds since boot, counting suspend like the kernel's own timestamps do.
pub fn uptime_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; CLOCK_BOOTTIME exists since Linux 2.6.39.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

fn write_all(fd: libc::c_int, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is a live slice of buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Last resort for a FATAL line when the console never opened: `/dev/kmsg` lines appear in
/// the kernel log, which the kernel itself prints on the serial console.
fn to_kmsg(line: &str) {
    // SAFETY: a NUL-terminated path and plain flags.
    let fd = unsafe { libc::open(c"/dev/kmsg".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd >= 0 {
        let _ = write_all(fd, format!("lab-init: {line}").as_bytes());
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    }
}
