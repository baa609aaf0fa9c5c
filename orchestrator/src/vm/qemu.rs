//! One QEMU guest: its command line, its process group, and its serial console, which is
//! written to a file and parsed live for lab's markers and for kernel crash reports.

use crate::io_error::IoError;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lab_proto::Marker;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Notify;

use super::console::{ConsoleWatcher, WatchEvent};
use super::machine::machine;
use crate::arch::{Accel, Arch};
use crate::process;
use crate::results::crash::{CrashKind, CrashReport};

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{qemu} not found on PATH: install {package} (`make setup` does)")]
    QemuMissing { qemu: String, package: String },
    #[error(transparent)]
    Spawn(#[from] process::SpawnError),
    #[error("QEMU exited before the guest was ready ({status}); QEMU said: {stderr}; console: {console}")]
    EarlyExit {
        status: String,
        stderr: String,
        console: PathBuf,
    },
    #[error("guest did not print READY within {secs:.0}s (boot deadline); console: {console}")]
    BootTimeout { secs: f64, console: PathBuf },
    #[error("guest init failed: {message}; console: {console}")]
    InitFatal { message: String, console: PathBuf },
    #[error("kernel crashed during boot: {title} [{fingerprint}]; console: {console}")]
    BootCrash {
        title: String,
        fingerprint: String,
        console: PathBuf,
    },
    #[error("no free TCP port on 127.0.0.1: {0}")]
    Port(std::io::Error),
    #[error(transparent)]
    Io(#[from] IoError),
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub arch: Arch,
    /// The compressed image (bzImage/Image) and vmlinux of the kernel artifact.
    pub image: PathBuf,
    pub vmlinux: PathBuf,
    pub initramfs: PathBuf,
    pub cpus: u32,
    pub memory_mib: u32,
    pub accel: Accel,
    /// Extra kernel command-line words (knobs, lab.mode=...).
    pub cmdline_extra: Vec<String>,
    /// Folder for console.log and qemu.log.
    pub dir: PathBuf,
    /// Forward this host port (127.0.0.1 only) to the guest's SSH port; None: no network.
    pub ssh_port: Option<u16>,
}

impl VmSpec {
    /// The kernel command line.
    pub fn cmdline(&self) -> String {
        let m = machine(self.arch);
        let mut words: Vec<String> = vec![
            format!("console={}", m.console),
            "panic=-1".into(),
            "loglevel=5".into(),
            "printk.time=1".into(),
            "sysctl.kernel.hung_task_timeout_secs=20".into(),
        ];
        words.extend(m.cmdline.iter().map(|s| (*s).to_owned()));
        if self.accel == Accel::Tcg {
            words.extend((m.tcg_cmdline)());
        }
        words.extend(self.cmdline_extra.iter().cloned());
        words.join(" ")
    }

    /// The full QEMU argument list (without the binary).
    pub fn qemu_args(&self) -> Vec<String> {
        let m = machine(self.arch);
        let kernel = if m.boot_vmlinux {
            &self.vmlinux
        } else {
            &self.image
        };
        let mut a: Vec<String> = vec![
            "-machine".into(),
            m.machine.into(),
            "-accel".into(),
            self.accel.name().into(),
            "-cpu".into(),
            match self.accel {
                // A native run never starts QEMU; were it asked to, the host's CPU is it.
                Accel::Kvm | Accel::Native => m.cpu_kvm,
                Accel::Tcg => m.cpu_tcg,
            }
            .into(),
            "-smp".into(),
            self.cpus.to_string(),
            "-m".into(),
            format!("{}M", self.memory_mib),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
            "-serial".into(),
            "stdio".into(),
            "-kernel".into(),
            kernel.display().to_string(),
            "-initrd".into(),
            self.initramfs.display().to_string(),
            "-append".into(),
            self.cmdline(),
        ];
        match self.ssh_port {
            Some(port) => {
                a.push("-netdev".into());
                a.push(format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"));
                a.push("-device".into());
                a.push(format!("{},netdev=n0", m.nic));
            }
            None => {
                a.push("-nic".into());
                a.push("none".into());
            }
        }
        a.extend(m.extra_args.iter().map(|s| (*s).to_owned()));
        a
    }

    /// A shell command that reproduces this boot.
    pub fn reproduce(&self) -> String {
        let m = machine(self.arch);
        let quote = |s: &str| {
            if s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=,./:".contains(c))
            {
                s.to_owned()
            } else {
                format!("'{}'", s.replace('\'', "'\\''"))
            }
        };
        std::iter::once(m.qemu.to_owned())
            .chain(self.qemu_args().iter().map(|a| quote(a)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A free TCP port on 127.0.0.1 (the OS picks; QEMU binds it right after).
pub fn free_port() -> Result<u16, VmError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(VmError::Port)?;
    Ok(l.local_addr().map_err(VmError::Port)?.port())
}

/// What the console has shown so far.
#[derive(Debug, Default)]
pub struct ConsoleState {
    pub init: Option<u64>,
    pub ready: Option<u64>,
    pub ready_at: Option<Instant>,
    pub fatal: Option<String>,
    pub poweroff: bool,
    pub started: Vec<CrashKind>,
    pub reports: Vec<CrashReport>,
    pub eof: bool,
    pub lines: u64,
    pub protocol_errors: Vec<String>,
    /// When PID 1's last heartbeat arrived.
    pub last_alive: Option<Instant>,
    /// Heartbeats that said eth0 was not up: when, and its operstate (the first 64 kept).
    pub link_down: Vec<(Instant, String)>,
}

impl ConsoleState {
    /// A panic means the guest is gone, whatever else is running.
    pub fn panicked(&self) -> bool {
        self.started.contains(&CrashKind::Panic)
    }
}

/// A running guest, or any machine whose console lab reads from a process's output (a
/// board's console hook, its kernel log over SSH). Dropping it kills that process's group.
pub struct Vm {
    pub child: process::Child,
    pub console_path: PathBuf,
    pub started: Instant,
    pub state: Arc<Mutex<ConsoleState>>,
    pub changed: Arc<Notify>,
    stderr_path: PathBuf,
}

/// How a console process prints the kernel's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleFormat {
    /// A serial line: QEMU's `-serial stdio`, a board's console hook.
    Serial,
    /// Records of `/dev/kmsg` (`prio,seq,usec,flags;text`), as `cat /dev/kmsg` prints them;
    /// they are written out as `[seconds] text`, the way a serial console shows them.
    Kmsg,
}

/// A `/dev/kmsg` record as a console line: `[    1.234567] text`. Continuation lines
/// (the record's dictionary, which start with a space) are not console text: `None`.
pub fn kmsg_line(record: &str) -> Option<String> {
    if record.starts_with(' ') {
        return None;
    }
    let Some((head, text)) = record.split_once(';') else {
        return Some(record.to_owned());
    };
    let usec = head.split(',').nth(2).and_then(|u| u.parse::<u64>().ok());
    Some(match usec {
        Some(us) => format!("[{:5}.{:06}] {text}", us / 1_000_000, us % 1_000_000),
        None => text.to_owned(),
    })
}

impl Vm {
    /// Starts QEMU and the console reader.
    pub async fn start(spec: VmSpec) -> Result<Vm, VmError> {
        let m = machine(spec.arch);
        tracing::info!(arch = %spec.arch, dir = %spec.dir.display(), "vm: starting QEMU");
        if crate::process::which(m.qemu).is_none() {
            return Err(VmError::QemuMissing {
                qemu: m.qemu.into(),
                package: match spec.arch {
                    Arch::X86_64 => "qemu-system-x86",
                    Arch::Arm64 => "qemu-system-arm",
                }
                .into(),
            });
        }
        let mut cmd = tokio::process::Command::new(m.qemu);
        cmd.args(spec.qemu_args());
        Vm::watch(m.qemu, cmd, &spec.dir, "qemu.log", ConsoleFormat::Serial).await
    }

    /// Starts `cmd` (named `program` in errors) in its own process group and reads its
    /// standard output as a console into `dir/console.log`, through the console watcher;
    /// its standard error goes to `dir/<stderr_name>`.
    pub async fn watch(
        program: &str,
        mut cmd: tokio::process::Command,
        dir: &Path,
        stderr_name: &str,
        format: ConsoleFormat,
    ) -> Result<Vm, VmError> {
        std::fs::create_dir_all(dir).map_err(|source| {
            VmError::Io(IoError {
                what: "cannot create",
                path: dir.to_owned(),
                source,
            })
        })?;
        let console_path = dir.join("console.log");
        let stderr_path = dir.join(stderr_name);
        let stderr_file = std::fs::File::create(&stderr_path).map_err(|source| {
            VmError::Io(IoError {
                what: "cannot create",
                path: stderr_path.clone(),
                source,
            })
        })?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr_file));
        let mut child = process::spawn(program, &mut cmd)?;
        let started = Instant::now();
        let state = Arc::new(Mutex::new(ConsoleState::default()));
        let changed = Arc::new(Notify::new());
        let out = child.stdout();
        let mut file = tokio::fs::File::create(&console_path)
            .await
            .map_err(|source| {
                VmError::Io(IoError {
                    what: "cannot create",
                    path: console_path.clone(),
                    source,
                })
            })?;
        {
            let state = state.clone();
            let changed = changed.clone();
            tokio::spawn(async move {
                let mut watcher = ConsoleWatcher::new();
                if let Some(out) = out {
                    let mut reader = BufReader::new(out);
                    let mut buf = Vec::new();
                    loop {
                        buf.clear();
                        match reader.read_until(b'\n', &mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                        let raw = String::from_utf8_lossy(&buf);
                        let raw = raw.trim_end_matches(['\n', '\r']);
                        let line = match format {
                            ConsoleFormat::Serial => {
                                let _ = file.write_all(&buf).await;
                                raw.to_owned()
                            }
                            ConsoleFormat::Kmsg => match kmsg_line(raw) {
                                Some(l) => {
                                    let _ = file.write_all(format!("{l}\n").as_bytes()).await;
                                    l
                                }
                                None => continue,
                            },
                        };
                        let events = watcher.feed_line(&line);
                        if let Ok(mut s) = state.lock() {
                            s.lines += 1;
                            apply_line(&mut s, &line, events);
                        }
                        changed.notify_waiters();
                    }
                }
                let _ = file.flush().await;
                let events = watcher.finish();
                if let Ok(mut s) = state.lock() {
                    apply_line(&mut s, "", events);
                    s.eof = true;
                }
                changed.notify_waiters();
            });
        }
        Ok(Vm {
            child,
            console_path,
            started,
            state,
            changed,
            stderr_path,
        })
    }

    /// Waits for the READY marker. Fails early if QEMU exits, init reports a fatal error, or
    /// the kernel panics. Returns the guest uptime at READY and the host time since start.
    pub async fn wait_ready(&mut self, deadline: Duration) -> Result<(u64, Duration), VmError> {
        let limit = self.started + deadline;
        loop {
            let notified = self.changed.notified();
            {
                let s = self.state.lock().map_err(|_| {
                    VmError::Io(IoError {
                        what: "console state poisoned for",
                        path: self.console_path.clone(),
                        source: std::io::Error::other("poisoned"),
                    })
                })?;
                if let (Some(up), Some(at)) = (s.ready, s.ready_at) {
                    let took = at.duration_since(self.started);
                    tracing::info!(
                        guest_uptime_ms = up,
                        host_s = took.as_secs_f64(),
                        "vm: guest ready"
                    );
                    return Ok((up, took));
                }
                if let Some(msg) = &s.fatal {
                    return Err(VmError::InitFatal {
                        message: msg.clone(),
                        console: self.console_path.clone(),
                    });
                }
                if s.panicked() || (s.eof && !s.reports.is_empty()) {
                    let r = s
                        .reports
                        .iter()
                        .find(|r| r.kind == CrashKind::Panic)
                        .or(s.reports.first());
                    return Err(VmError::BootCrash {
                        title: r
                            .map(|r| r.title.clone())
                            .unwrap_or_else(|| "Kernel panic".into()),
                        fingerprint: r.map(|r| r.fingerprint.to_string()).unwrap_or_default(),
                        console: self.console_path.clone(),
                    });
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                // Let the console reader drain what QEMU printed last.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Ok(s) = self.state.lock() {
                    if let Some(r) = s.reports.first() {
                        return Err(VmError::BootCrash {
                            title: r.title.clone(),
                            fingerprint: r.fingerprint.to_string(),
                            console: self.console_path.clone(),
                        });
                    }
                }
                return Err(VmError::EarlyExit {
                    status: st.to_string(),
                    stderr: std::fs::read_to_string(&self.stderr_path)
                        .unwrap_or_default()
                        .trim()
                        .lines()
                        .take(5)
                        .collect::<Vec<_>>()
                        .join(" | "),
                    console: self.console_path.clone(),
                });
            }
            let now = Instant::now();
            if now >= limit {
                return Err(VmError::BootTimeout {
                    secs: deadline.as_secs_f64(),
                    console: self.console_path.clone(),
                });
            }
            let _ =
                tokio::time::timeout((limit - now).min(Duration::from_millis(200)), notified).await;
        }
    }

    /// Whether QEMU is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Crash reports seen so far.
    pub fn reports(&self) -> Vec<CrashReport> {
        self.state
            .lock()
            .map(|s| s.reports.clone())
            .unwrap_or_default()
    }

    /// The first heartbeat since `since` that said the guest's network link was not up:
    /// how long after `since` it came, and the link's state.
    pub fn link_down_after(&self, since: Instant) -> Option<(Duration, String)> {
        let s = self.state.lock().ok()?;
        s.link_down
            .iter()
            .find(|(at, _)| *at >= since)
            .map(|(at, state)| (at.duration_since(since), state.clone()))
    }

    /// How long ago PID 1's last heartbeat arrived, if one did.
    pub fn since_alive(&self) -> Option<Duration> {
        self.state.lock().ok()?.last_alive.map(|t| t.elapsed())
    }

    /// Reports started but maybe not complete yet (a panic, say).
    pub fn started_kinds(&self) -> Vec<CrashKind> {
        self.state
            .lock()
            .map(|s| s.started.clone())
            .unwrap_or_default()
    }

    /// Waits for QEMU to exit on its own (after a guest power-off), up to `grace`; then
    /// terminates its process group. Returns whether it exited by itself.
    pub async fn shutdown(&mut self, grace: Duration) -> bool {
        if let Ok(Some(_)) = self.child.wait_timeout(grace).await {
            self.drain().await;
            return true;
        }
        self.child.terminate(Duration::from_secs(2)).await;
        self.drain().await;
        false
    }

    /// Kills QEMU at once.
    pub async fn kill(&mut self) {
        self.child.terminate(Duration::from_millis(500)).await;
        self.drain().await;
    }

    /// After QEMU exited: waits for the console reader to read everything, then closes any
    /// report still being collected. Returns at once while QEMU runs.
    pub async fn settle(&mut self) {
        if !self.alive() {
            self.drain().await;
        }
    }

    /// Waits briefly for the console reader to reach end of file.
    async fn drain(&self) {
        for _ in 0..50 {
            if self.state.lock().map(|s| s.eof).unwrap_or(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn qemu_stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

fn apply_line(s: &mut ConsoleState, line: &str, events: Vec<WatchEvent>) {
    for e in events {
        match e {
            WatchEvent::ReportStarted(k) => s.started.push(k),
            WatchEvent::ReportComplete(r) => s.reports.push(r),
        }
    }
    match Marker::parse(line) {
        None => {}
        Some(Err(e)) => s.protocol_errors.push(e.to_string()),
        Some(Ok(Marker::Init { uptime_ms })) => s.init = Some(uptime_ms),
        Some(Ok(Marker::Ready { uptime_ms })) => {
            s.ready = Some(uptime_ms);
            s.ready_at = Some(Instant::now());
        }
        Some(Ok(Marker::Alive { link, .. })) => {
            let now = Instant::now();
            s.last_alive = Some(now);
            // "unknown" is what a driver without carrier reporting says; only a clear state
            // other than "up" is a link down.
            if link != "up" && link != "unknown" && s.link_down.len() < 64 {
                s.link_down.push((now, link));
            }
        }
        Some(Ok(Marker::Poweroff)) => s.poweroff = true,
        Some(Ok(Marker::Fatal { message })) => s.fatal = Some(message),
        // Only `lab.mode=run` prints these, which lab's QEMU guests never use.
        Some(Ok(Marker::Case { .. } | Marker::Done)) => {}
    }
}

/// Probes KVM by booting the kernel for real with `lab.mode=marker`, within `deadline`.
/// Returns Ok(()) if the guest reached READY, or the reason it cannot be used.
pub async fn probe_kvm(spec: &VmSpec, deadline: Duration) -> Result<(), String> {
    let m = machine(spec.arch);
    if !(m.kvm_possible)() {
        return Err(format!(
            "the host is not {}; {} guests are emulated",
            spec.arch, spec.arch
        ));
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Err(format!("/dev/kvm cannot be opened: {e}"));
    }
    let mut probe = spec.clone();
    probe.accel = Accel::Kvm;
    probe.ssh_port = None;
    probe.cmdline_extra = vec!["lab.mode=marker".into()];
    probe.dir = spec.dir.join("kvm-probe");
    let mut vm = match Vm::start(probe).await {
        Ok(vm) => vm,
        Err(e) => return Err(format!("probe boot did not start: {e}")),
    };
    let r = vm.wait_ready(deadline).await;
    vm.kill().await;
    match r {
        Ok(_) => Ok(()),
        Err(VmError::EarlyExit { stderr, .. }) => Err(format!(
            "QEMU refused KVM: {}",
            if stderr.is_empty() {
                "no message".into()
            } else {
                stderr
            }
        )),
        Err(VmError::BootTimeout { secs, .. }) => Err(format!(
            "probe boot under KVM did not reach READY within {secs:.0}s"
        )),
        Err(e) => Err(format!("probe boot under KVM failed: {e}")),
    }
}

/// Console log lines around a crash, for reports.
pub fn console_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmsg_records_read_as_console_lines() {
        assert_eq!(
            kmsg_line("4,339,5176,-;WARNING: CPU: 0 PID: 1 at kernel/futex/waitwake.c:42 x")
                .as_deref(),
            Some("[    0.005176] WARNING: CPU: 0 PID: 1 at kernel/futex/waitwake.c:42 x")
        );
        assert_eq!(
            kmsg_line("6,2,12345678901,-; <TASK>").as_deref(),
            Some("[12345.678901]  <TASK>")
        );
        // The record's dictionary is not console text.
        assert_eq!(kmsg_line(" SUBSYSTEM=virtio"), None);
        // Text that is not a record is kept as it is.
        assert_eq!(kmsg_line("plain").as_deref(), Some("plain"));
    }

    fn spec(arch: Arch) -> VmSpec {
        VmSpec {
            arch,
            image: PathBuf::from("/k/Image"),
            vmlinux: PathBuf::from("/k/vmlinux"),
            initramfs: PathBuf::from("/r/initrd"),
            cpus: 2,
            memory_mib: 512,
            accel: Accel::Tcg,
            cmdline_extra: vec!["lab.mode=ssh".into()],
            dir: PathBuf::from("/r"),
            ssh_port: Some(2222),
        }
    }

    #[test]
    fn x86_64_command_line_snapshot() {
        let mut s = spec(Arch::X86_64);
        s.accel = Accel::Kvm;
        assert_eq!(
            s.reproduce(),
            "qemu-system-x86_64 -machine microvm,x-option-roms=off,isa-serial=on,rtc=on,pit=on,pic=on,acpi=off -accel kvm -cpu host -smp 2 -m 512M -nodefaults -no-user-config -display none -no-reboot -serial stdio -kernel /k/vmlinux -initrd /r/initrd -append 'console=ttyS0 panic=-1 loglevel=5 printk.time=1 sysctl.kernel.hung_task_timeout_secs=20 reboot=t pci=off no_timer_check lab.mode=ssh' -netdev user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22 -device virtio-net-device,netdev=n0"
        );
        // Under TCG the kernel is told the host TSC rate, measured once per process.
        let tcg = spec(Arch::X86_64).cmdline();
        assert!(
            tcg.contains("tsc_early_khz=") && tcg.contains("tsc=reliable"),
            "{tcg}"
        );
        assert_eq!(tcg, spec(Arch::X86_64).cmdline(), "stable within a process");
    }

    #[test]
    fn arm64_command_line_snapshot() {
        let mut s = spec(Arch::Arm64);
        s.ssh_port = None;
        assert_eq!(
            s.reproduce(),
            "qemu-system-aarch64 -machine virt -accel tcg -cpu max,pauth=off -smp 2 -m 512M -nodefaults -no-user-config -display none -no-reboot -serial stdio -kernel /k/Image -initrd /r/initrd -append 'console=ttyAMA0 panic=-1 loglevel=5 printk.time=1 sysctl.kernel.hung_task_timeout_secs=20 lab.mode=ssh' -nic none"
        );
    }

    #[test]
    fn ssh_forward_binds_loopback_only() {
        let args = spec(Arch::X86_64).qemu_args().join(" ");
        assert!(args.contains("hostfwd=tcp:127.0.0.1:2222-:22"));
        assert!(!args.contains("hostfwd=tcp::"));
    }
}
