//! A run on a board: a machine lab does not start itself (`[target.NAME]` in lab.toml).
//!
//! lab hands the kernel to the target's install hook, which installs it and boots the board
//! into it, then logs in over the same SSH transport as a guest's and checks that the board
//! really runs that kernel. The board's root file system is its own: lab unpacks its guest
//! image (the same bytes a QEMU guest of the run boots) into a folder on the board and runs
//! every test program in a chroot there, so both sides of a comparison run identical
//! programs. The console is the target's console hook (a serial line), or else the kernel
//! log read over SSH (`cat /dev/kmsg`), which cannot show the last words of a panic.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{empty_boot, BootFailure, Guest, RunPlan};
use crate::config::names::shell_quote;
use crate::config::Target;
use crate::io_error::with_causes;
use crate::results::manifest::BootRecord;
use crate::transport::ssh::{board_target, SshSession};
use crate::vm::qemu::{ConsoleFormat, Vm};

/// The kernel command-line word that names the kernel lab asked the hook to boot; the board
/// must show it in `/proc/cmdline`.
const KERNEL_WORD: &str = "lab.kernel";

/// The words the install hook must put on the kernel command line (`LAB_CMDLINE`): the
/// kernel's key, which lab checks after login, and the plan's boot-time knobs.
pub fn cmdline(plan: &RunPlan) -> String {
    let mut words = vec![format!("{KERNEL_WORD}={}", key_word(plan))];
    words.extend(plan.boot_knobs.iter().map(|(k, v)| format!("{k}={v}")));
    words.extend(plan.cmdline_extra.iter().cloned());
    words.join(" ")
}

fn key_word(plan: &RunPlan) -> String {
    plan.artifact.manifest.key.chars().take(16).collect()
}

/// The install hook as the manifest shows it: what to run again by hand.
pub fn reproduce(plan: &RunPlan, target: &Target) -> String {
    format!(
        "cd {} && LAB_KERNEL_IMAGE={} LAB_CMDLINE={} {}",
        shell_quote(&target.root.display().to_string()),
        shell_quote(&plan.artifact.image().display().to_string()),
        shell_quote(&cmdline(plan)),
        target.install
    )
}

/// Installs `plan`'s kernel on `target`, waits for a login on it, starts the console and
/// unpacks the guest image. On failure nothing lab started is left running.
pub async fn boot(
    plan: &RunPlan,
    target: &Target,
    dir: &Path,
) -> Result<Guest, (BootRecord, BootFailure)> {
    let fail = |why: String| (empty_boot(dir, &why), BootFailure::Infra(why));
    if plan.arch != target.arch {
        return Err(fail(format!(
            "the target {} is {}; this run is {}",
            target.name, target.arch, plan.arch
        )));
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Err(fail(format!("cannot create {}: {e}", dir.display())));
    }
    let started = Instant::now();
    if let Err(why) = install(plan, target, dir).await {
        return Err(fail(why));
    }
    let installed = started.elapsed();
    let ssh = match login(plan, target).await {
        Ok(s) => s,
        Err(why) => return Err(fail(why)),
    };
    let ssh_ms = started.elapsed().as_millis() as u64;
    let mut vm = match console(target, dir).await {
        Ok(vm) => vm,
        Err(why) => return Err(fail(why)),
    };
    let root = match unpack_image(plan, target, &ssh).await {
        Ok(r) => r,
        Err(why) => {
            vm.kill().await;
            return Err(fail(why));
        }
    };
    tracing::info!(
        target = %target.name,
        install_s = installed.as_secs_f64(),
        login_s = ssh_ms as f64 / 1000.0,
        "board: up on the installed kernel"
    );
    let boot = BootRecord {
        ready_ms: Some(installed.as_millis() as u64),
        guest_uptime_ms: None,
        ssh_ms: Some(ssh_ms),
        console: vm.console_path.clone(),
        error: None,
    };
    Ok(Guest {
        vm,
        ssh,
        boot,
        command_prefix: vec!["chroot".into(), root],
        board: true,
    })
}

/// Runs the install hook in its own process group, its output in `dir/install.log`.
async fn install(plan: &RunPlan, target: &Target, dir: &Path) -> Result<(), String> {
    let log_path = dir.join("install.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("cannot open {} twice: {e}", log_path.display()))?;
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&target.install)
        .current_dir(&target.root)
        .env("LAB_TARGET", &target.name)
        .env("LAB_TARGET_HOST", &target.host)
        .env("LAB_TARGET_PORT", target.port.to_string())
        .env("LAB_ARCH", plan.arch.name())
        .env("LAB_KERNEL_IMAGE", plan.artifact.image())
        .env("LAB_KERNEL_VMLINUX", plan.artifact.vmlinux())
        .env("LAB_KERNEL_KEY", &plan.artifact.manifest.key)
        .env("LAB_KERNEL_LABEL", plan.artifact.label())
        .env("LAB_CMDLINE", cmdline(plan))
        .env("LAB_RUN_DIR", dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    tracing::info!(target = %target.name, hook = %target.install, "board: installing the kernel");
    let mut child =
        crate::process::spawn("the install hook", &mut cmd).map_err(|e| with_causes(&e))?;
    let status = match child.wait_timeout(target.install_timeout).await {
        Ok(Some(st)) => st,
        Ok(None) => {
            child.terminate(Duration::from_secs(5)).await;
            return Err(format!(
                "the install hook of target {} did not finish within {:.0}s (target.{}.install-timeout); its log: {}",
                target.name,
                target.install_timeout.as_secs_f64(),
                target.name,
                log_path.display()
            ));
        }
        Err(e) => return Err(format!("cannot wait for the install hook: {e}")),
    };
    if !status.success() {
        let tail = crate::vm::qemu::console_tail(&log_path, 5);
        return Err(format!(
            "the install hook of target {} failed ({status}): {}",
            target.name,
            tail.trim()
        ));
    }
    Ok(())
}

/// Logs in, and again until the board runs the installed kernel: the hook may return while
/// the old kernel still answers.
async fn login(plan: &RunPlan, target: &Target) -> Result<SshSession, String> {
    let deadline = Instant::now() + target.boot_timeout;
    let want = format!("{KERNEL_WORD}={}", key_word(plan));
    let banner = banner(&plan.artifact.vmlinux());
    let mut seen = String::from("no login");
    let mut answered = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "target {} did not come up on the installed kernel within {:.0}s \
                 (target.{}.boot-timeout): {seen}",
                target.name,
                target.boot_timeout.as_secs_f64(),
                target.name
            ));
        }
        let ssh = match SshSession::connect(&board_target(target), left, || true).await {
            Ok(s) => s,
            Err(e) => {
                // What the board said when it answered outranks a later failed login.
                if !answered {
                    seen = format!("last login attempt: {}", with_causes(&e));
                }
                // A refusal that is not worth retrying inside connect (a key the old
                // kernel's system does not take) comes back at once: no busy loop.
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let out = ssh
            .exec(
                "cat /proc/cmdline; echo; cat /proc/version",
                None,
                Duration::from_secs(30),
                |_, _| {},
            )
            .await;
        match out {
            Ok(o) if o.status == 0 => {
                let mut lines = o.stdout.lines().filter(|l| !l.trim().is_empty());
                let cmdline = lines.next().unwrap_or_default().to_owned();
                let version = lines.next().unwrap_or_default().trim().to_owned();
                let has_key = cmdline.split_whitespace().any(|w| w == want);
                let same_build = banner.as_deref().is_none_or(|b| b == version);
                if has_key && same_build {
                    return Ok(ssh);
                }
                answered = true;
                seen = if has_key {
                    format!(
                        "it booted with {want} but runs another build: /proc/version says \
                         {version:?}, the kernel built says {:?}",
                        banner.as_deref().unwrap_or_default()
                    )
                } else {
                    format!(
                        "it still runs another kernel: /proc/cmdline lacks {want} (the install \
                         hook must put LAB_CMDLINE on the kernel command line): {cmdline:?}"
                    )
                };
            }
            Ok(o) => seen = format!("cannot read /proc/cmdline (status {})", o.status),
            Err(e) => seen = format!("cannot read /proc/cmdline: {}", with_causes(&e)),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The `Linux version ...` banner built into `vmlinux`: what `/proc/version` of a board that
/// runs it says. `None` if it cannot be read (the key on the command line still counts).
fn banner(vmlinux: &Path) -> Option<String> {
    let data = std::fs::read(vmlinux).ok()?;
    let needle = b"Linux version ";
    let mut from = 0;
    while let Some(at) = data[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
    {
        let rest = &data[at..];
        let end = rest.iter().position(|&b| b == b'\n' || b == 0)?;
        // linux_banner is the one followed by a release number, not a format string.
        if rest.get(needle.len()).is_some_and(|b| b.is_ascii_digit()) {
            return Some(String::from_utf8_lossy(&rest[..end]).trim().to_owned());
        }
        from = at + needle.len();
    }
    None
}

/// The board's console: its console hook, or its kernel log over SSH.
async fn console(target: &Target, dir: &Path) -> Result<Vm, String> {
    let (program, cmd, format) = match &target.console {
        Some(hook) => {
            let mut cmd = tokio::process::Command::new("sh");
            cmd.arg("-c").arg(hook).current_dir(&target.root);
            ("the console hook", cmd, ConsoleFormat::Serial)
        }
        None => {
            let mut cmd = tokio::process::Command::new("ssh");
            cmd.args([
                "-T",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
            ])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"])
            .arg("-i")
            .arg(&target.key)
            .arg("-p")
            .arg(target.port.to_string())
            .arg(format!("{}@{}", target.user, target.host))
            .arg("cat /dev/kmsg");
            ("ssh (the board's kernel log)", cmd, ConsoleFormat::Kmsg)
        }
    };
    Vm::watch(program, cmd, dir, "console-hook.log", format)
        .await
        .map_err(|e| format!("cannot start {program}: {}", with_causes(&e)))
}

/// Unpacks the guest image into `workdir/<digest>` on the board (once per image: a folder
/// marked complete is reused) and mounts what a test needs inside it. Returns the folder.
async fn unpack_image(plan: &RunPlan, target: &Target, ssh: &SshSession) -> Result<String, String> {
    let digest: String = plan.image.manifest.digest.chars().take(16).collect();
    let root = format!("{}/{}-{digest}", target.workdir, plan.arch);
    let q = shell_quote(&root);
    let check = format!("test -e {q}/.lab-complete");
    let present = ssh
        .exec(&check, None, Duration::from_secs(30), |_, _| {})
        .await
        .map_err(|e| {
            format!(
                "cannot look for the guest image on the board: {}",
                with_causes(&e)
            )
        })?;
    if present.status != 0 {
        let image = std::fs::read(&plan.image.path)
            .map_err(|e| format!("cannot read {}: {e}", plan.image.path.display()))?;
        let unpack = format!(
            "rm -rf {q} && mkdir -p {q} && cd {q} && cpio -idmu 2>/dev/null && touch .lab-complete"
        );
        let out = ssh
            .exec(&unpack, Some(image), Duration::from_secs(600), |_, _| {})
            .await
            .map_err(|e| {
                format!(
                    "cannot copy the guest image to the board: {}",
                    with_causes(&e)
                )
            })?;
        if out.status != 0 {
            return Err(format!(
                "unpacking the guest image on the board failed (status {}; the board needs \
                 cpio, chroot and mount, as busybox has them): {}",
                out.status,
                out.stderr.trim()
            ));
        }
    }
    let mounts = [
        ("proc", "-t proc proc"),
        ("sys", "-t sysfs sysfs"),
        ("dev", "-o bind /dev"),
        ("dev/pts", "-t devpts -o newinstance,ptmxmode=0666 devpts"),
        ("dev/shm", "-t tmpfs -o mode=1777 tmpfs"),
        ("tmp", "-t tmpfs -o mode=1777 tmpfs"),
        ("run", "-t tmpfs -o mode=0755 tmpfs"),
    ];
    let script = mounts
        .iter()
        .map(|(at, how)| {
            let p = shell_quote(&format!("{root}/{at}"));
            format!(
                "mkdir -p {p} && {{ grep -q \" {root}/{at} \" /proc/mounts || mount {how} {p}; }}"
            )
        })
        .collect::<Vec<_>>()
        .join(" && ");
    let out = ssh
        .exec(&script, None, Duration::from_secs(30), |_, _| {})
        .await
        .map_err(|e| {
            format!(
                "cannot mount the test folders on the board: {}",
                with_causes(&e)
            )
        })?;
    if out.status != 0 {
        return Err(format!(
            "mounting proc, sys and dev under {root} on the board failed (status {}): {}",
            out.status,
            out.stderr.trim()
        ));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_is_the_one_with_a_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("vmlinux");
        std::fs::write(
            &p,
            b"\0%s version %s\0junk Linux version \0Linux version 6.12.1 (lab@lab) #1 SMP\n\0",
        )
        .expect("write");
        assert_eq!(
            banner(&p).as_deref(),
            Some("Linux version 6.12.1 (lab@lab) #1 SMP")
        );
        std::fs::write(&p, b"nothing here").expect("write");
        assert_eq!(banner(&p), None);
    }
}
