//! `lab-init`: PID 1 of lab's guest image.
//!
//! It owns everything between the kernel handing over to user space and the host's first SSH
//! command: the console fds, the pseudo file systems, the network, the dropbear SSH server,
//! reaping orphans, and power-off. It talks to the host only through [`lab_proto::Marker`]
//! lines on the console (INIT, READY, POWEROFF, FATAL), which the orchestrator parses live to
//! time the boot and to tell a broken kernel from a broken image.
//!
//! PID 1 must never exit: the kernel panics if it does. So every error becomes one FATAL line
//! naming the failing step, followed by a power-off; a panic hook does the same.
//!
//! The same binary is `/sbin/poweroff`: run as any other process, it asks PID 1 to power off.
//!
//! It is `no_main`: Rust's start-up code, which runs before `fn main`, aborts the process when
//! one of fds 0-2 is closed and `/dev/null` cannot be opened (`sanitize_standard_fds` in std).
//! That is PID 1's situation when the image has no `/dev/console` and devtmpfs is not mounted
//! yet, and an aborting PID 1 panics the kernel. So the C runtime calls our `main` directly.

#![cfg_attr(not(test), no_main)]

mod autorun;
mod cmdline;
mod console;
mod fs;
mod net;
mod process;
mod sshd;

use std::io;

use lab_proto::Marker;

use crate::cmdline::Mode;

/// PATH for everything PID 1 starts: the guest tests first.
const PATH: &str = "/lab/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const HOSTNAME: &str = "lab-guest";
/// How often PID 1 prints its heartbeat on the console when nothing else happens.
const ALIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// One variant per boot step; each message reads after "failed to".
#[derive(Debug, thiserror::Error)]
enum InitError {
    #[error("block signals in PID 1: {0}")]
    Signals(#[source] io::Error),
    #[error("open /dev/console as fds 0-2: {0} (is CONFIG_DEVTMPFS in the kernel?)")]
    Console(#[source] io::Error),
    #[error(transparent)]
    Fs(#[from] fs::FsError),
    #[error("read /proc/cmdline: {0}")]
    ReadCmdline(#[source] io::Error),
    #[error(transparent)]
    Cmdline(#[from] cmdline::CmdlineError),
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error(transparent)]
    Sshd(#[from] sshd::SshdError),
}

/// What this invocation is, from the pid and argv.
#[derive(Debug, PartialEq, Eq)]
enum Role {
    Init,
    Poweroff,
    Usage,
}

/// PID 1 is always init, whatever the kernel passed as arguments. Any other process is
/// `poweroff`, by the name it was started under or by its first argument, or a mistake: this
/// binary must never act as init on a host.
fn role(args: &[String], pid: u32) -> Role {
    if pid == 1 {
        return Role::Init;
    }
    let name = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .unwrap_or("");
    if name == "poweroff" || args.get(1).map(String::as_str) == Some("poweroff") {
        Role::Poweroff
    } else {
        Role::Usage
    }
}

/// Entry point, called by the C runtime with the raw arguments (std's `env::args` is empty
/// under `no_main` with musl).
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    let args = (0..usize::try_from(argc).unwrap_or(0))
        // SAFETY: the C runtime passes argc valid, NUL-terminated strings in argv.
        .map(|i| unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) })
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    run(&args)
}

#[cfg_attr(
    test,
    expect(dead_code, reason = "the test harness brings its own main")
)]
fn run(args: &[String]) -> libc::c_int {
    match role(args, std::process::id()) {
        Role::Init => init(),
        Role::Poweroff => process::request_poweroff(),
        Role::Usage => {
            eprintln!(
                "lab-init is PID 1 of the lab guest image; as any other process it only \
                 understands `lab-init poweroff` (or being called as `poweroff`)"
            );
            2
        }
    }
}

fn init() -> ! {
    std::panic::set_hook(Box::new(|info| {
        console::fatal(&format!("lab-init panicked: {info}"));
        process::power_off()
    }));
    if let Err(e) = boot() {
        console::fatal(&format!("failed to {e}"));
    }
    process::power_off()
}

/// The boot steps in order. `Ok` means power off as asked; `Err` means power off after FATAL.
fn boot() -> Result<(), InitError> {
    // Before anything can signal us or be spawned: see the `process` module.
    process::block_signals().map_err(InitError::Signals)?;

    if console::attach().is_err() {
        fs::mount(&fs::DEV)?;
        console::attach().map_err(InitError::Console)?;
    }
    console::emit(&Marker::Init {
        uptime_ms: console::uptime_ms(),
    });

    fs::mount_all()?;
    fs::set_hostname(HOSTNAME)?;
    // Single-threaded here, so changing the environment is sound.
    std::env::set_var("PATH", PATH);
    std::env::set_var("HOME", "/root");

    let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(InitError::ReadCmdline)?;
    let cfg = cmdline::parse(&cmdline)?;
    if cfg.mode == Mode::Marker {
        console::emit(&Marker::Ready {
            uptime_ms: console::uptime_ms(),
        });
        return Ok(());
    }
    if cfg.mode == Mode::Run {
        console::emit(&Marker::Ready {
            uptime_ms: console::uptime_ms(),
        });
        autorun::run_all(&cfg.run);
        return Ok(());
    }

    net::configure(&cfg)?;
    let dropbear = sshd::start(cfg.ssh_port)?;
    console::emit(&Marker::Ready {
        uptime_ms: console::uptime_ms(),
    });

    let mut last_alive = std::time::Instant::now();
    loop {
        // The heartbeat (see Marker::Alive), on time however many signals arrive.
        let since = last_alive.elapsed();
        if since >= ALIVE_EVERY {
            console::emit(&Marker::Alive {
                uptime_ms: console::uptime_ms(),
                link: net::operstate(),
            });
            last_alive = std::time::Instant::now();
            continue;
        }
        match process::wait_signal(Some(ALIVE_EVERY - since)) {
            Some(libc::SIGCHLD) => {
                let mut died = None;
                process::reap(|pid, status| {
                    if pid == dropbear {
                        died = Some(status);
                    }
                });
                if let Some(status) = died {
                    return Err(sshd::SshdError::Died {
                        status: process::describe_status(status),
                        log: sshd::log_tail(),
                    }
                    .into());
                }
            }
            Some(libc::SIGTERM | libc::SIGUSR2 | libc::SIGINT) => return Ok(()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pid_1_is_always_init() {
        assert_eq!(role(&args(&["/sbin/init"]), 1), Role::Init);
        assert_eq!(role(&args(&["/sbin/poweroff"]), 1), Role::Init);
        assert_eq!(role(&args(&["/sbin/init", "single"]), 1), Role::Init);
        assert_eq!(role(&[], 1), Role::Init);
    }

    #[test]
    fn poweroff_by_name_or_argument() {
        assert_eq!(role(&args(&["/sbin/poweroff"]), 42), Role::Poweroff);
        assert_eq!(role(&args(&["poweroff", "-f"]), 42), Role::Poweroff);
        assert_eq!(role(&args(&["lab-init", "poweroff"]), 42), Role::Poweroff);
        assert_eq!(role(&args(&["/sbin/init", "poweroff"]), 42), Role::Poweroff);
    }

    #[test]
    fn anything_else_is_refused_outside_pid_1() {
        assert_eq!(role(&args(&["/sbin/init"]), 42), Role::Usage);
        assert_eq!(role(&args(&["lab-init", "reboot"]), 42), Role::Usage);
        assert_eq!(role(&args(&["/usr/bin/not-poweroff"]), 42), Role::Usage);
        assert_eq!(role(&[], 42), Role::Usage);
    }

    #[test]
    fn errors_name_the_step() {
        let e = InitError::from(net::NetError::NoEth {
            present: "lo".into(),
        });
        let msg = format!("failed to {e}");
        assert!(
            msg.starts_with("failed to find eth0: no eth0 after 3 s"),
            "{msg}"
        );
        assert!(msg.contains("CONFIG_VIRTIO_NET"), "{msg}");
    }
}
