//! SSH transport over `ssh2`, for QEMU guests and for real boards alike.
//!
//! libssh2 is blocking, so every call runs in `spawn_blocking` with a session timeout set.
//! Commands stream stdout and stderr line by line while they run. File transfer goes through
//! `cat` on the far side, because a minimal guest has no sftp server or scp binary.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::names::shell_quote;
use base64::Engine as _;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot resolve {host}:{port}")]
    Resolve {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("ssh to {addr} never came up within {secs:.0}s{}", last_attempt(last))]
    NeverUp {
        addr: String,
        secs: f64,
        #[source]
        last: Option<ConnectFailure>,
    },
    #[error(
        "ssh to {addr}: the target stopped before a login succeeded{}",
        last_attempt(last)
    )]
    TargetGone {
        addr: String,
        #[source]
        last: Option<ConnectFailure>,
    },
    #[error("ssh to {addr}: host key does not match the one generated for this run (got {got}); refusing to talk to it")]
    HostKey { addr: String, got: String },
    #[error("ssh to {addr}: cannot connect")]
    Connect {
        addr: String,
        #[source]
        source: ConnectFailure,
    },
    #[error("ssh to {addr}: {step} failed")]
    Ssh {
        addr: String,
        step: &'static str,
        #[source]
        source: ssh2::Error,
    },
    #[error("ssh to {addr}: {step} failed")]
    Io {
        addr: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("ssh to {addr}: the {step} task of lab failed (a lab bug)")]
    Task {
        addr: String,
        step: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("ssh to {addr}: another task panicked while it held the session (a lab bug)")]
    Poisoned { addr: String },
    #[error("ssh to {addr}: {step}: `{command}` exited with {status}: {stderr}")]
    Remote {
        addr: String,
        step: &'static str,
        command: String,
        status: i32,
        stderr: String,
    },
    #[error("ssh to {addr}: `{command}` did not finish within {secs:.0}s")]
    Timeout {
        addr: String,
        command: String,
        secs: f64,
    },
}

/// Why one attempt to connect and log in failed. Most are worth another attempt while the
/// target boots (its port is forwarded before its SSH server listens); see `retryable`.
#[derive(Debug, thiserror::Error)]
pub enum ConnectFailure {
    #[error("tcp connect")]
    Tcp(#[source] std::io::Error),
    #[error("libssh2 init")]
    Init(#[source] ssh2::Error),
    #[error("handshake")]
    Handshake(#[source] ssh2::Error),
    #[error("the expected host key is not base64")]
    HostKeyNotBase64(#[source] base64::DecodeError),
    #[error("host key mismatch (got a {len}-byte key blob)")]
    HostKeyMismatch { len: usize },
    #[error("public-key login as {user}")]
    Login {
        user: String,
        #[source]
        source: ssh2::Error,
    },
    #[error("not authenticated")]
    NotAuthenticated,
}

impl ConnectFailure {
    /// Whether the target may still come up: a refused port, a failed handshake or login while
    /// the guest boots. A broken library or a wrong key will not get better.
    fn retryable(&self) -> bool {
        matches!(
            self,
            ConnectFailure::Tcp(_)
                | ConnectFailure::Handshake(_)
                | ConnectFailure::Login { .. }
                | ConnectFailure::NotAuthenticated
        )
    }
}

/// ": last attempt: <failure and its causes>", or nothing when there was no attempt.
fn last_attempt(last: &Option<ConnectFailure>) -> String {
    match last {
        Some(f) => format!(": last attempt: {}", crate::io_error::with_causes(f)),
        None => String::new(),
    }
}

/// Where to connect and as whom.
#[derive(Debug, Clone)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub key: PathBuf,
    /// Base64 public key blob the host must present (None: accept any, for real boards
    /// whose key the user trusts through their own known_hosts).
    pub host_key: Option<String>,
}

impl SshTarget {
    pub fn addr(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// The result of a remote command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A logged-in session.
#[derive(Clone)]
pub struct SshSession {
    inner: Arc<Mutex<ssh2::Session>>,
    target: SshTarget,
}

/// The key blob of an OpenSSH public key line's second field.
fn decode_host_key(base64_blob: &str) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::STANDARD.decode(base64_blob.trim())
}

fn connect_once(
    target: &SshTarget,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<ssh2::Session, ConnectFailure> {
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(ConnectFailure::Tcp)?;
    let _ = tcp.set_read_timeout(Some(timeout));
    let mut sess = ssh2::Session::new().map_err(ConnectFailure::Init)?;
    sess.set_timeout(timeout.as_millis() as u32);
    sess.set_tcp_stream(tcp);
    // QEMU's user networking accepts the TCP connection before the guest listens; the
    // handshake then fails, and that is worth retrying.
    sess.handshake().map_err(ConnectFailure::Handshake)?;
    if let Some(want) = &target.host_key {
        let want = decode_host_key(want).map_err(ConnectFailure::HostKeyNotBase64)?;
        let got = sess.host_key().map(|(k, _)| k.to_vec()).unwrap_or_default();
        if got != want {
            return Err(ConnectFailure::HostKeyMismatch { len: got.len() });
        }
    }
    sess.userauth_pubkey_file(&target.user, None, &target.key, None)
        .map_err(|source| ConnectFailure::Login {
            user: target.user.clone(),
            source,
        })?;
    if !sess.authenticated() {
        return Err(ConnectFailure::NotAuthenticated);
    }
    Ok(sess)
}

impl SshSession {
    /// Connects and logs in, retrying until `deadline` while `alive` says the target may still
    /// come up (for a VM: QEMU is running).
    pub async fn connect(
        target: &SshTarget,
        deadline: Duration,
        alive: impl Fn() -> bool,
    ) -> Result<SshSession, TransportError> {
        let addr = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|source| TransportError::Resolve {
                host: target.host.clone(),
                port: target.port,
                source,
            })?
            .next()
            .ok_or_else(|| TransportError::Resolve {
                host: target.host.clone(),
                port: target.port,
                source: std::io::Error::other("the name has no address"),
            })?;
        let started = Instant::now();
        let mut last: Option<ConnectFailure> = None;
        let mut pause = Duration::from_millis(50);
        loop {
            if !alive() {
                return Err(TransportError::TargetGone {
                    addr: target.addr(),
                    last,
                });
            }
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(TransportError::NeverUp {
                    addr: target.addr(),
                    secs: deadline.as_secs_f64(),
                    last,
                });
            }
            let t = target.clone();
            let attempt = left.min(Duration::from_secs(10));
            let r = tokio::task::spawn_blocking(move || connect_once(&t, addr, attempt))
                .await
                .map_err(|source| TransportError::Task {
                    addr: target.addr(),
                    step: "connect",
                    source,
                })?;
            match r {
                Ok(sess) => {
                    tracing::info!(addr = %target.addr(), after_s = started.elapsed().as_secs_f64(), "ssh: logged in");
                    return Ok(SshSession {
                        inner: Arc::new(Mutex::new(sess)),
                        target: target.clone(),
                    });
                }
                Err(ConnectFailure::HostKeyMismatch { len }) => {
                    return Err(TransportError::HostKey {
                        addr: target.addr(),
                        got: format!("a {len}-byte key blob"),
                    });
                }
                Err(f) if !f.retryable() => {
                    return Err(TransportError::Connect {
                        addr: target.addr(),
                        source: f,
                    })
                }
                Err(f) => {
                    tracing::debug!(addr = %target.addr(), failure = %f, "ssh: not up yet, retrying");
                    last = Some(f);
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(400));
        }
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// Runs `command`, calling `on_line` for each line of output as it arrives, and returns
    /// the exit status with the collected output. Fails after `timeout`.
    pub async fn exec(
        &self,
        command: &str,
        stdin: Option<Vec<u8>>,
        timeout: Duration,
        on_line: impl Fn(Stream, &str) + Send + 'static,
    ) -> Result<ExecOutput, TransportError> {
        let inner = self.inner.clone();
        let addr = self.target.addr();
        let command = command.to_owned();
        tokio::task::spawn_blocking(move || {
            exec_blocking(&inner, &addr, &command, stdin, timeout, on_line)
        })
        .await
        .map_err(|source| TransportError::Task {
            addr: self.target.addr(),
            step: "exec",
            source,
        })?
    }

    /// Writes `data` to `path` on the target with `mode`.
    pub async fn upload(
        &self,
        data: Vec<u8>,
        path: &str,
        mode: u32,
        timeout: Duration,
    ) -> Result<(), TransportError> {
        let p = shell_quote(path);
        let cmd = format!("cat > {p} && chmod {mode:o} {p}");
        let out = self.exec(&cmd, Some(data), timeout, |_, _| {}).await?;
        if out.status != 0 {
            return Err(TransportError::Remote {
                addr: self.target.addr(),
                step: "upload",
                command: cmd,
                status: out.status,
                stderr: out.stderr.trim().to_owned(),
            });
        }
        Ok(())
    }

    /// Reads `path` from the target.
    pub async fn download(&self, path: &str, timeout: Duration) -> Result<Vec<u8>, TransportError> {
        let cmd = format!("cat {}", shell_quote(path));
        let out = self.exec(&cmd, None, timeout, |_, _| {}).await?;
        if out.status != 0 {
            return Err(TransportError::Remote {
                addr: self.target.addr(),
                step: "download",
                command: cmd,
                status: out.status,
                stderr: out.stderr.trim().to_owned(),
            });
        }
        Ok(out.stdout.into_bytes())
    }
}

fn exec_blocking(
    inner: &Mutex<ssh2::Session>,
    addr: &str,
    command: &str,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    on_line: impl Fn(Stream, &str),
) -> Result<ExecOutput, TransportError> {
    let ssh_err = |step: &'static str| {
        move |source: ssh2::Error| TransportError::Ssh {
            addr: addr.to_owned(),
            step,
            source,
        }
    };
    let io_err = |step: &'static str, source: std::io::Error| TransportError::Io {
        addr: addr.to_owned(),
        step,
        source,
    };
    let sess = inner.lock().map_err(|_| TransportError::Poisoned {
        addr: addr.to_owned(),
    })?;
    sess.set_blocking(true);
    sess.set_timeout(timeout.as_millis().min(u32::MAX as u128) as u32);
    let mut ch = sess.channel_session().map_err(ssh_err("open channel"))?;
    ch.exec(command).map_err(ssh_err("exec"))?;
    if let Some(data) = stdin {
        ch.write_all(&data).map_err(|e| io_err("write stdin", e))?;
    }
    ch.send_eof().map_err(ssh_err("send eof"))?;
    // Poll both streams without blocking, so a full stderr cannot stall stdout.
    sess.set_blocking(false);
    let started = Instant::now();
    let (mut out, mut errb) = (Vec::new(), Vec::new());
    let (mut out_line, mut err_line) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 16384];
    let feed = |pending: &mut Vec<u8>, chunk: &[u8], stream: Stream| {
        pending.extend_from_slice(chunk);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            on_line(
                stream,
                String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']),
            );
        }
    };
    loop {
        let mut progressed = false;
        match ch.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                feed(&mut out_line, &buf[..n], Stream::Stdout);
                progressed = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                abandon(&sess, ch);
                return Err(io_err("read stdout", e));
            }
        }
        match ch.stderr().read(&mut buf) {
            Ok(0) => {}
            Ok(n) => {
                errb.extend_from_slice(&buf[..n]);
                feed(&mut err_line, &buf[..n], Stream::Stderr);
                progressed = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                abandon(&sess, ch);
                return Err(io_err("read stderr", e));
            }
        }
        if !progressed && ch.eof() {
            break;
        }
        if started.elapsed() > timeout {
            abandon(&sess, ch);
            return Err(TransportError::Timeout {
                addr: addr.to_owned(),
                command: command.to_owned(),
                secs: timeout.as_secs_f64(),
            });
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    sess.set_blocking(true);
    for (pending, stream) in [(&out_line, Stream::Stdout), (&err_line, Stream::Stderr)] {
        if !pending.is_empty() {
            on_line(
                stream,
                String::from_utf8_lossy(pending).trim_end_matches(['\n', '\r']),
            );
        }
    }
    let _ = ch.wait_close();
    let status = ch.exit_status().map_err(ssh_err("exit status"))?;
    Ok(ExecOutput {
        status,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&errb).into_owned(),
    })
}

/// Gives up on a channel without waiting for the far side. A blocking close waits for the
/// remote close, which dropbear sends only when the command exits: a wedged command would
/// hold the caller for minutes (seen: 391 s past an 8 s deadline). The session is left in
/// non-blocking mode for the rest of its short life; callers treat it as dead after this.
fn abandon(sess: &ssh2::Session, ch: ssh2::Channel) {
    sess.set_blocking(false);
    drop(ch);
}

/// A target from the lab definition's `[target]` section (a real board).
pub fn board_target(t: &crate::config::Target) -> SshTarget {
    SshTarget {
        host: t.host.clone(),
        port: t.port,
        user: t.user.clone(),
        key: t.key.clone(),
        host_key: None,
    }
}

/// Key path as shown to users.
pub fn show_key(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_key_blobs() {
        assert_eq!(decode_host_key("aGVsbG8=").expect("base64"), b"hello");
        assert_eq!(
            decode_host_key("AAAAE2VjZHNh").expect("base64"),
            b"\0\0\0\x13ecdsa"
        );
        assert!(decode_host_key("not base64!").is_err());
    }

    #[tokio::test]
    async fn refused_connection_is_an_error_within_the_deadline() {
        // A port with nothing listening: connection refused on every attempt.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let t = SshTarget {
            host: "127.0.0.1".into(),
            port,
            user: "root".into(),
            key: PathBuf::from("/nonexistent"),
            host_key: None,
        };
        let started = Instant::now();
        let err = SshSession::connect(&t, Duration::from_millis(600), || true)
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, TransportError::NeverUp { .. }), "{err}");
        assert!(err.to_string().contains("refused"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let err = SshSession::connect(&t, Duration::from_secs(30), || false)
            .await
            .err()
            .expect("gone");
        assert!(matches!(err, TransportError::TargetGone { .. }), "{err}");
    }
}
