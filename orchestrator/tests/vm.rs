//! `lab run` end to end on real QEMU: boots, SSH, guest programs, and every way a run can go
//! wrong, each classified as the outcome it is.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use lab::arch::{Accel, Arch};
use lab::commands::{kernel_requests, Context};
use lab::config::Settings;
use lab::exec::{self, Local, RunJob};
use lab::guest::image::{self, BaseImage, ImageInputs};
use lab::kernel::build;
use lab::kernel::cache::Artifact;
use lab::results::OutcomeKind;
use lab::run::{self, RunPlan, RunReport};
use lab::vm::qemu::{Vm, VmSpec};
use tokio::sync::OnceCell;

fn settings() -> Settings {
    let p = common::repo().join("lab.toml");
    Settings::from_text(&p, &std::fs::read_to_string(&p).expect("lab.toml"))
        .expect("valid lab.toml")
}

/// The base kernel and guest image of `arch`, built once per test process.
async fn kernel_and_image(arch: Arch) -> (Artifact, BaseImage) {
    static X86: OnceCell<(Artifact, BaseImage)> = OnceCell::const_new();
    static ARM: OnceCell<(Artifact, BaseImage)> = OnceCell::const_new();
    let cell = match arch {
        Arch::X86_64 => &X86,
        Arch::Arm64 => &ARM,
    };
    cell.get_or_init(|| async move {
        let s = settings();
        let ctx = Context {
            settings: s.clone(),
            quiet: true,
            target: None,
        };
        let sel = lab::cli::KernelSelect {
            arch: lab::cli::ArchesArg::of(&[arch]),
            ..Default::default()
        };
        let req = kernel_requests(&ctx, &sel).expect("requests").remove(0);
        let built = build::build(&req, &s.cache_dir, &|_| {})
            .await
            .expect("base kernel builds");
        let inputs = ImageInputs {
            kselftests: Vec::new(),
            perf: None,
            workspace: s.guest_source.clone(),
            cache: s.cache_dir.clone(),
            tests: vec!["futex_errno".into()],
        };
        let programs = image::build_programs(&inputs, arch)
            .await
            .expect("guest programs build");
        let img = image::assemble(&inputs, arch, &programs).expect("image assembles");
        (built.artifact, img)
    })
    .await
    .clone()
}

/// Runs `plan` through the local executor, as every verb does, recording nowhere.
async fn run_local(plan: RunPlan) -> RunReport {
    let (local, _) = Local::new(&settings(), Some(1));
    exec::run_one(&local, RunJob::new(plan, "tcg", "test"), None, &|_| {}).await
}

async fn plan(arch: Arch, dir: &Path, tests: &[&str]) -> RunPlan {
    let s = settings();
    let (artifact, image) = kernel_and_image(arch).await;
    RunPlan {
        arch,
        artifact,
        image,
        tests: tests.iter().map(|t| (*t).to_owned()).collect(),
        iterations: 1,
        duration: Duration::from_millis(500),
        knobs: vec![],
        boot_knobs: vec![],
        seed: 42,
        accel: Accel::Tcg,
        cpus: 2,
        memory_mib: 512,
        boot_timeout: s.boot_timeout,
        host_deadline: None,
        cmdline_extra: vec![],
        dir: dir.to_owned(),
    }
}

/// QEMU processes whose command line mentions `needle`.
fn qemus_mentioning(needle: &str) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'));
            cmd.contains("qemu-system") && cmd.contains(needle) && !zombie
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_arch_boots_to_the_init_marker_and_powers_off() {
    for arch in Arch::ALL {
        let dir = tempfile::tempdir().expect("tempdir");
        let (artifact, image) = kernel_and_image(arch).await;
        let spec = VmSpec {
            arch,
            image: artifact.image(),
            vmlinux: artifact.vmlinux(),
            initramfs: image.path.clone(),
            cpus: 2,
            memory_mib: 256,
            accel: Accel::Tcg,
            cmdline_extra: vec!["lab.mode=marker".into()],
            dir: dir.path().to_owned(),
            ssh_port: None,
        };
        let mut vm = Vm::start(spec).await.expect("QEMU starts");
        let (uptime, host) = vm
            .wait_ready(Duration::from_secs(120))
            .await
            .expect("READY marker");
        eprintln!("{arch}: READY at guest uptime {uptime} ms, host {host:?}");
        assert!(
            vm.shutdown(Duration::from_secs(30)).await,
            "{arch}: the guest powers off by itself in marker mode"
        );
        let console = std::fs::read_to_string(&vm.console_path).expect("console log");
        assert!(
            console.contains("LAB/1 INIT"),
            "{arch}: init marker on the console"
        );
        assert!(
            vm.reports().is_empty(),
            "{arch}: no kernel report on a clean boot: {:?}",
            vm.reports()
        );
    }
}

/// The guest's SSH port is forwarded on 127.0.0.1 only: another loopback address
/// (127.0.0.2, which a listener on 0.0.0.0 would answer) and every other address of this
/// host are refused while the guest is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_ssh_port_answers_on_127_0_0_1_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(Arch::X86_64, dir.path(), &["futex_errno"]).await;
    let mut guest = match run::boot(&p, &dir.path().join("boot-1")).await {
        Ok(g) => g,
        Err((rec, failure)) => panic!("the guest did not boot: {failure:?} {rec:?}"),
    };
    let port = guest.ssh.target().port;
    let reach = |addr: std::net::IpAddr| {
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::new(addr, port),
            Duration::from_secs(3),
        )
        .is_ok()
    };
    let loopback = reach([127, 0, 0, 1].into());
    let mut others: Vec<std::net::IpAddr> = vec![[127, 0, 0, 2].into()];
    if let Ok(out) = std::process::Command::new("hostname").arg("-I").output() {
        others.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|a| a.parse::<std::net::IpAddr>().ok()),
        );
    }
    let answered: Vec<_> = others.iter().copied().filter(|&a| reach(a)).collect();
    run::teardown(&mut guest).await;
    assert!(loopback, "the guest answers on 127.0.0.1:{port}");
    assert!(
        answered.is_empty(),
        "port {port} also answers on {answered:?} (tried {others:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_test_runs_over_ssh_and_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(Arch::X86_64, dir.path(), &["futex_errno"]).await;
    let report = run_local(p).await;
    assert_eq!(report.outcomes.len(), 1);
    let o = &report.outcomes[0];
    assert_eq!(o.kind, OutcomeKind::Pass, "{o:?}");
    assert!(o.result.as_ref().is_some_and(|r| r.test == "futex_errno"));
    let boot = &report.manifest.boots[0];
    assert!(boot.ready_ms.is_some() && boot.ssh_ms.is_some(), "{boot:?}");
    assert!(dir.path().join("manifest.json").is_file());
    assert!(dir.path().join("results.jsonl").is_file());
    // The boot keeps its keys' archive, not a copy of the whole initramfs, and the manifest
    // says how to make it again.
    let boot = dir.path().join("boot-1");
    assert!(
        !boot.join("initramfs.cpio").exists(),
        "the initramfs copy is removed"
    );
    let keys = boot.join("keys/keys.cpio");
    assert!(keys.is_file());
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&keys).expect("keys").permissions().mode();
    assert_eq!(mode & 0o077, 0, "the keys' archive is owner-only: {mode:o}");
    let manifest = std::fs::read_to_string(dir.path().join("manifest.json")).expect("manifest");
    assert!(manifest.contains("keys/keys.cpio"), "{manifest}");
    assert!(
        qemus_mentioning(&dir.path().display().to_string()).is_empty(),
        "QEMU left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_panics_is_a_kernel_crash_with_a_fingerprint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(Arch::X86_64, dir.path(), &["fault_panic"]).await;
    let report = run_local(p).await;
    let o = &report.outcomes[0];
    assert_eq!(o.kind, OutcomeKind::KernelCrash, "{o:?}");
    let crash = o.crashes.first().expect("a crash report");
    assert!(
        crash.title.contains("sysrq triggered crash"),
        "{}",
        crash.title
    );
    assert!(!crash.fingerprint.id().is_empty());
    assert!(
        o.summary.contains(&crash.fingerprint.id()),
        "the summary carries the fingerprint"
    );
    assert!(
        qemus_mentioning(&dir.path().display().to_string()).is_empty(),
        "QEMU left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_that_hangs_is_a_hang_and_its_vm_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = plan(Arch::X86_64, dir.path(), &["fault_wedge", "futex_errno"]).await;
    p.host_deadline = Some(Duration::from_secs(8));
    let report = run_local(p).await;
    assert_eq!(
        report.outcomes[0].kind,
        OutcomeKind::Hang,
        "{:?}",
        report.outcomes[0]
    );
    assert!(report.outcomes[0].summary.contains("host deadline"));
    // The wedged VM was killed and a fresh one ran the next test.
    assert_eq!(
        report.manifest.boots.len(),
        2,
        "{:?}",
        report.manifest.boots
    );
    assert_eq!(
        report.outcomes[1].kind,
        OutcomeKind::Pass,
        "{:?}",
        report.outcomes[1]
    );
    assert!(
        qemus_mentioning(&dir.path().display().to_string()).is_empty(),
        "QEMU left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_goes_down_mid_test_is_a_lost_transport_not_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = plan(
        Arch::X86_64,
        dir.path(),
        &["fault_link_down", "futex_errno"],
    )
    .await;
    // Long enough for two of PID 1's heartbeats (every 5 s) after the link went down.
    p.host_deadline = Some(Duration::from_secs(15));
    let report = run_local(p).await;
    let o = &report.outcomes[0];
    assert_eq!(o.kind, OutcomeKind::InfraError, "{o:?}");
    assert!(
        o.summary.contains("transport lost") && o.summary.contains("eth0 was down"),
        "{}",
        o.summary
    );
    // The guest without a network was replaced, and the next test ran on a fresh one.
    assert_eq!(
        report.manifest.boots.len(),
        2,
        "{:?}",
        report.manifest.boots
    );
    assert_eq!(
        report.outcomes[1].kind,
        OutcomeKind::Pass,
        "{:?}",
        report.outcomes[1]
    );
    assert!(
        qemus_mentioning(&dir.path().display().to_string()).is_empty(),
        "QEMU left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_killed_mid_run_is_an_infra_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = plan(Arch::X86_64, dir.path(), &["fault_wedge"]).await;
    p.host_deadline = Some(Duration::from_secs(300));
    let needle = dir.path().display().to_string();
    let killer = tokio::spawn(async move {
        // Wait for the test to be running (the wedge prints on stderr), then kill QEMU.
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let up = std::fs::read_dir(PathBuf::from(&needle))
                .ok()
                .and_then(|_| {
                    std::fs::read_to_string(PathBuf::from(&needle).join("boot-1/console.log")).ok()
                });
            if up.is_some_and(|c| c.contains("LAB/1 READY")) {
                tokio::time::sleep(Duration::from_secs(3)).await;
                for pid in qemus_mentioning(&needle) {
                    // SAFETY: kill(2) on a pid we found; no memory is touched.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                return true;
            }
        }
        false
    });
    let report = run_local(p).await;
    assert!(killer.await.expect("killer"), "the guest never came up");
    let o = &report.outcomes[0];
    assert_eq!(o.kind, OutcomeKind::InfraError, "{o:?}");
    assert!(o.summary.contains("QEMU exited"), "{}", o.summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_ssh_connection_is_an_infra_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = plan(Arch::X86_64, dir.path(), &["futex_errno"]).await;
    // dropbear listens on another port than the one QEMU forwards to: every login is refused.
    p.cmdline_extra = vec!["lab.ssh_port=2200".into()];
    p.boot_timeout = Duration::from_secs(40);
    let report = run_local(p).await;
    let o = &report.outcomes[0];
    assert_eq!(o.kind, OutcomeKind::InfraError, "{o:?}");
    assert!(o.summary.contains("ssh"), "{}", o.summary);
    assert!(
        qemus_mentioning(&dir.path().display().to_string()).is_empty(),
        "QEMU left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kvm_probe_answers_within_its_deadline_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (artifact, image) = kernel_and_image(Arch::X86_64).await;
    let spec = VmSpec {
        arch: Arch::X86_64,
        image: artifact.image(),
        vmlinux: artifact.vmlinux(),
        initramfs: image.path.clone(),
        cpus: 1,
        memory_mib: 256,
        accel: Accel::Tcg,
        cmdline_extra: vec![],
        dir: dir.path().to_owned(),
        ssh_port: None,
    };
    let (accel, reason) = tokio::time::timeout(
        Duration::from_secs(90),
        run::choose_accel(lab::config::AccelChoice::Auto, Arch::X86_64, &spec),
    )
    .await
    .expect("the probe never blocks past its deadline");
    eprintln!("probe: {accel:?}: {reason}");
    assert!(
        reason.starts_with(if accel == Accel::Kvm { "KVM:" } else { "TCG:" }),
        "{reason}"
    );
    assert!(reason.len() > 5, "a reason is given");
    let (accel, reason) =
        run::choose_accel(lab::config::AccelChoice::Auto, Arch::Arm64, &spec).await;
    if cfg!(target_arch = "x86_64") {
        assert_eq!(accel, Accel::Tcg, "{reason}");
    }
    assert!(
        qemus_mentioning(&dir.path().display().to_string()).is_empty(),
        "probe QEMU left behind"
    );
}

/// Ctrl-C in the middle of a boot: lab exits 130 and leaves no QEMU behind.
#[test]
fn sigint_during_boot_leaves_no_process_behind() {
    // Make sure the kernel and image exist, so the interrupt lands during the boot.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(kernel_and_image(Arch::X86_64));
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = common::lab_toml(dir.path(), "arches = [\"x86_64\"]\n[vm]\naccel = \"tcg\"\n");
    let mut child = common::lab(&toml)
        .args([
            "run",
            "--arch",
            "x86_64",
            "--test",
            "futex_errno",
            "--duration",
            "30s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("lab starts");
    let lab_pid = child.id() as i32;
    let mut qemu = Vec::new();
    // Generous: on a busy 2-core machine the guest programs may wait for cargo's lock first.
    for _ in 0..3000 {
        std::thread::sleep(Duration::from_millis(100));
        qemu = children_named(lab_pid, "qemu-system");
        if !qemu.is_empty() {
            break;
        }
    }
    assert!(!qemu.is_empty(), "QEMU never started");
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(lab_pid, libc::SIGINT) };
    let status = child.wait().expect("lab exits");
    assert_eq!(status.code(), Some(130), "exit code after SIGINT");
    std::thread::sleep(Duration::from_millis(200));
    for pid in qemu {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = stat
            .rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'));
        assert!(!alive, "QEMU {pid} outlived lab: {stat}");
    }
}

/// Processes whose parent is `ppid` and whose command line contains `name`.
fn children_named(ppid: i32, name: &str) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let parent = stat
                .rsplit_once(") ")
                .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<i32>().ok());
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            parent == Some(ppid) && String::from_utf8_lossy(&cmd).contains(name)
        })
        .collect()
}

/// A kselftest program is a lab test like ours: built from the pinned tree, installed with the
/// adapter under its name, run over SSH, its TAP read into the verdict, counters and evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kselftest_runs_in_the_guest_and_its_tap_is_the_evidence() {
    let s = settings();
    let test = "kselftest:futex/futex_wait_wouldblock";
    let unknown = run::guest_image(&s, Arch::X86_64, &["kselftest:futex/no_such".into()])
        .await
        .expect_err("an unknown kselftest");
    assert!(
        unknown.to_string().contains("kselftest:futex/no_such"),
        "{unknown}"
    );
    let image = run::guest_image(&s, Arch::X86_64, &[test.into()])
        .await
        .expect("the image with the kselftest");
    assert!(
        image
            .manifest
            .programs
            .contains_key("lab/kselftest/futex/futex_wait_wouldblock")
            && image
                .manifest
                .programs
                .contains_key(&format!("lab/bin/{test}")),
        "{:?}",
        image.manifest.programs.keys()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = plan(Arch::X86_64, dir.path(), &[test]).await;
    p.image = image;
    let report = run_local(p).await;
    let o = &report.outcomes[0];
    assert_eq!(o.kind, OutcomeKind::Pass, "{o:?}");
    let r = o.result.as_ref().expect("a result line");
    assert_eq!(r.test, test);
    assert_eq!(r.samples, 2, "two TAP results: {r:?}");
    assert_eq!(
        r.counters.get("subtests_pass"),
        Some(&2),
        "{:?}",
        r.counters
    );
    assert_eq!(r.counters.get("programs_run"), Some(&1));
    assert!(
        o.stderr_tail
            .contains("tap[futex_wait_wouldblock]: ok 1 futex_wait"),
        "the raw TAP is the evidence: {}",
        o.stderr_tail
    );
    let kept = std::fs::read_to_string(run::stderr_file(dir.path(), test, 0))
        .expect("the whole output is kept in the run folder");
    assert!(
        kept.contains("tap[futex_wait_wouldblock]: TAP version 13")
            && kept.contains("tap[futex_wait_wouldblock]: # Totals: pass:2"),
        "{kept}"
    );
}

/// `perf bench futex` is a lab test like ours: perf built static from the pinned tree, the
/// adapter linked under the test's name, the report read into the verdict and metrics, and
/// kept as the evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_perf_bench_runs_in_the_guest_and_its_report_is_the_evidence() {
    let s = settings();
    let test = "perf:futex-wake";
    let unknown = run::guest_image(&s, Arch::X86_64, &["perf:futex-nope".into()])
        .await
        .expect_err("an unknown benchmark");
    assert!(unknown.to_string().contains("perf:futex-nope"), "{unknown}");
    let image = run::guest_image(&s, Arch::X86_64, &[test.into()])
        .await
        .expect("the image with perf");
    assert!(
        image.manifest.programs.contains_key("lab/perf/perf")
            && image.manifest.programs.contains_key("lab/perf/adapter"),
        "{:?}",
        image.manifest.programs.keys()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = plan(Arch::X86_64, dir.path(), &[test]).await;
    p.image = image;
    let report = run_local(p).await;
    let o = &report.outcomes[0];
    assert_eq!(o.kind, OutcomeKind::Pass, "{o:?}");
    let r = o.result.as_ref().expect("a result line");
    assert_eq!(r.test, test);
    assert_eq!(
        r.counters.get("rounds"),
        Some(&4),
        "500 ms: 4 rounds of 125 ms"
    );
    assert!(r.metrics["wake_all_ns_p50"] > 0.0, "{:?}", r.metrics);
    let kept = std::fs::read_to_string(run::stderr_file(dir.path(), test, 0))
        .expect("the whole output is kept in the run folder");
    assert!(
        kept.contains("perf[futex-wake]: [Run 4]: Wokeup 4 of 4 threads"),
        "{kept}"
    );
}
