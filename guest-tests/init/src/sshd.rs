//! The SSH server: Debian's dropbear, started once and watched for as long as the guest runs.
//! SSH is how the host runs guest tests, so "ready" means dropbear accepts TCP connections, and
//! dropbear dying is fatal. Its own log, in /run/dropbear.log, is quoted in FATAL messages
//! because it is the only place that says why (bad host key, missing library, port in use).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process;

pub const DROPBEAR: &str = "/usr/sbin/dropbear";
pub const HOST_KEY: &str = "/etc/dropbear/host_key";
pub const LOG: &str = "/run/dropbear.log";

/// How long dropbear gets to start listening. It needs well under a second even under TCG.
const READY_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SshdError {
    #[error("create {LOG}: {0}")]
    Log(#[source] io::Error),
    #[error("start {DROPBEAR}: {0} (is it in the image, with its shared libraries and loader?)")]
    Spawn(#[source] io::Error),
    #[error("start dropbear: it exited before listening, {status}; {LOG} ends: {log}")]
    ExitedEarly { status: String, log: String },
    #[error(
        "start dropbear: nothing accepts on 127.0.0.1:{port} after {} s; {LOG} ends: {log}",
        READY_WAIT.as_secs()
    )]
    NotListening { port: u16, log: String },
    #[error("keep dropbear running: it exited, {status}; {LOG} ends: {log}")]
    Died { status: String, log: String },
}

/// Foreground (`-F`) so PID 1 is its parent and sees it die; log to stderr (`-E`); no password
/// logins (`-s`, `-g`); no port forwarding (`-j`, `-k`).
pub fn args(port: u16) -> Vec<String> {
    ["-F", "-E", "-s", "-g", "-j", "-k", "-r", HOST_KEY, "-p"]
        .into_iter()
        .map(str::to_owned)
        .chain([format!("0.0.0.0:{port}")])
        .collect()
}

/// Starts dropbear and returns its pid once it accepts connections on `port`.
pub fn start(port: u16) -> Result<libc::pid_t, SshdError> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(LOG)
        .map_err(SshdError::Log)?;
    let mut cmd = Command::new(DROPBEAR);
    cmd.args(args(port))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(SshdError::Log)?)
        .stderr(log);
    process::clean_signals_for_child(&mut cmd);
    // The Child handle is dropped without waiting: PID 1 reaps by pid in its own loop.
    let pid = cmd.spawn().map_err(SshdError::Spawn)?.id() as libc::pid_t;

    let deadline = Instant::now() + READY_WAIT;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = process::try_reap(pid) {
            return Err(SshdError::ExitedEarly {
                status: process::describe_status(status),
                log: log_tail(),
            });
        }
        // The probe connection costs dropbear one forked child that exits at once.
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(pid);
        }
        if Instant::now() >= deadline {
            return Err(SshdError::NotListening {
                port,
                log: log_tail(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The end of dropbear's log, for a FATAL message.
pub fn log_tail() -> String {
    let read = || -> io::Result<String> {
        let mut file = File::open(LOG)?;
        let len = file.seek(SeekFrom::End(0))?;
        file.seek(SeekFrom::Start(len.saturating_sub(4096)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => tail(&text, 5, 600),
        Err(e) => format!("(unreadable: {e})"),
    }
}

/// The last `lines` non-empty lines of `text`, joined with " | ", at most `max` characters.
fn tail(text: &str, lines: usize, max: usize) -> String {
    let kept: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let joined = kept[kept.len().saturating_sub(lines)..].join(" | ");
    let chars = joined.chars().count();
    if chars == 0 {
        "(empty)".to_owned()
    } else if chars > max {
        format!(
            "...{}",
            joined.chars().skip(chars - max).collect::<String>()
        )
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_the_contract() {
        assert_eq!(
            args(2222).join(" "),
            "-F -E -s -g -j -k -r /etc/dropbear/host_key -p 0.0.0.0:2222"
        );
    }

    #[test]
    fn tail_keeps_the_last_lines_on_one_line() {
        assert_eq!(tail("", 5, 100), "(empty)");
        assert_eq!(tail("a\n\nb\nc\n", 2, 100), "b | c");
        assert_eq!(tail("a\nb\n", 5, 100), "a | b");
        assert_eq!(tail("abcdef", 5, 3), "...def");
    }
}
