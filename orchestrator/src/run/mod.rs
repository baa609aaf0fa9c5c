//! A run: boot one kernel in QEMU with the guest image, log in over SSH, run guest tests, and
//! turn what happened into outcomes.
//!
//! The runner owns the VM's lifetime. A test that hangs or a kernel that panics takes its VM
//! down with it; the runner then boots a fresh VM for the tests that remain, so one bad test
//! never turns the rest of the run into noise. Teardown runs on every path: power off over
//! SSH, then SIGTERM to QEMU's process group, a grace period, SIGKILL.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lab_proto::{TestParams, TestResult, Verdict};

use crate::arch::{Accel, Arch};
use crate::guest::image::{self, BaseImage};
use crate::io_error::with_causes;
use crate::kernel::cache::Artifact;
use crate::results::crash::CrashKind;
use crate::results::manifest::{BootRecord, Placement, RunManifest};
use crate::results::store::{condition_digest, test_digests, NewRun, RecordedRun, Recorder};
use crate::results::{OutcomeKind, TestOutcome};
use crate::transport::ssh::{SshSession, SshTarget, Stream};
use crate::vm::machine::machine;
use crate::vm::qemu::{self, Vm, VmError, VmSpec};

mod accel;
pub mod board;
mod finish;
mod folder;
pub use accel::{choose_accel, probe_spec};
use finish::{append_result, finish, save_manifest};
pub use finish::{lost, recorded};
pub use folder::stderr_file;
use folder::{keep_stderr, set_aside_earlier_results, STDERR_KEPT_LINES};

/// Everything one run on one arch needs. It serializes, so that a run can be handed to a
/// worker on another host (`lab worker run`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunPlan {
    pub arch: Arch,
    pub artifact: Artifact,
    pub image: BaseImage,
    pub tests: Vec<String>,
    pub iterations: u32,
    pub duration: Duration,
    pub knobs: Vec<(String, String)>,
    /// Knobs to put on the kernel command line too (boot-time parameters).
    pub boot_knobs: Vec<(String, String)>,
    pub seed: u64,
    pub accel: Accel,
    pub cpus: u32,
    pub memory_mib: u32,
    pub boot_timeout: Duration,
    /// Overrides the host-side deadline of each test (default: duration + scaled grace).
    pub host_deadline: Option<Duration>,
    /// Extra kernel command-line words.
    pub cmdline_extra: Vec<String>,
    pub dir: PathBuf,
}

/// The size and boot deadline of a guest: what every plan of one lab shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmSize {
    pub cpus: u32,
    pub memory_mib: u32,
    pub boot_timeout: Duration,
}

impl VmSize {
    /// The lab's guests, from lab.toml's `[vm]`.
    pub fn of(s: &crate::config::Settings) -> VmSize {
        VmSize {
            cpus: s.vm_cpus,
            memory_mib: s.vm_memory_mib,
            boot_timeout: s.boot_timeout,
        }
    }
}

impl RunPlan {
    /// One boot of `artifact` with `image` running `tests`, `iterations` times each, `duration`
    /// long, with the runtime `knobs`: no boot-time knobs, no extra command line, the default
    /// host deadline. Set those fields afterwards where a caller needs them.
    #[expect(
        clippy::too_many_arguments,
        reason = "each is a distinct fact of the run; a builder would only rename them"
    )]
    pub fn new(
        artifact: Artifact,
        image: BaseImage,
        accel: Accel,
        vm: VmSize,
        tests: Vec<String>,
        iterations: u32,
        duration: Duration,
        knobs: Vec<(String, String)>,
        seed: u64,
        dir: PathBuf,
    ) -> RunPlan {
        RunPlan {
            arch: artifact.manifest.arch,
            artifact,
            image,
            tests,
            iterations,
            duration,
            knobs,
            boot_knobs: Vec::new(),
            seed,
            accel,
            cpus: vm.cpus,
            memory_mib: vm.memory_mib,
            boot_timeout: vm.boot_timeout,
            host_deadline: None,
            cmdline_extra: Vec::new(),
            dir,
        }
    }

    /// Records this run in the results store before it starts: where it belongs (a session,
    /// its side and batch) and what makes its outcomes reusable (kernel, test programs and
    /// [`condition_digest`] of the plan's duration, knobs, accelerator and VM size). The run
    /// goes on whether or not the store took it; see [`Recorder`].
    pub fn begin_record(
        &self,
        recorder: &Recorder,
        session: Option<i64>,
        side: Option<&str>,
        batch: Option<u32>,
        placement: &Placement,
    ) -> RecordedRun {
        let condition = condition_digest(
            self.duration.as_millis() as u64,
            &self.knobs,
            self.accel.name(),
            self.cpus,
            self.memory_mib,
        );
        recorder.begin_run(&NewRun {
            session,
            side,
            batch,
            arch: self.arch,
            kernel_key: &self.artifact.manifest.key,
            kernel_label: &self.artifact.label(),
            image_digest: &self.image.manifest.digest,
            test_digests: &test_digests(&self.image.manifest.programs),
            condition: &condition,
            dir: &self.dir,
            placement,
        })
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub manifest: RunManifest,
    pub outcomes: Vec<TestOutcome>,
    pub dir: PathBuf,
}

/// The first line of `qemu --version`.
pub fn qemu_version(arch: Arch) -> String {
    std::process::Command::new(machine(arch).qemu)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into())
}

pub use lab_proto::test_seed;

/// The guest deadline for one test: its duration plus a grace that scales with the
/// accelerator, plus a margin for the host side. Past it the host declares a hang.
fn host_deadline(duration: Duration, scale: f64) -> Duration {
    duration + Duration::from_secs_f64(20.0 * scale) + Duration::from_secs(30)
}

/// One queued test.
#[derive(Debug, Clone)]
struct Job {
    test: String,
    iteration: u32,
}

fn spec_for(plan: &RunPlan, dir: &Path, initramfs: &Path, port: u16) -> VmSpec {
    let mut extra = vec!["lab.mode=ssh".to_owned()];
    extra.extend(plan.boot_knobs.iter().map(|(k, v)| format!("{k}={v}")));
    extra.extend(plan.cmdline_extra.iter().cloned());
    VmSpec {
        arch: plan.arch,
        image: plan.artifact.image(),
        vmlinux: plan.artifact.vmlinux(),
        initramfs: initramfs.to_owned(),
        cpus: plan.cpus,
        memory_mib: plan.memory_mib,
        accel: plan.accel,
        cmdline_extra: extra,
        dir: dir.to_owned(),
        ssh_port: Some(port),
    }
}

/// A booted, logged-in guest: a QEMU guest, or a board.
pub struct Guest {
    /// The console: QEMU itself, or a board's console process.
    pub vm: Vm,
    pub ssh: SshSession,
    pub boot: BootRecord,
    /// Words before `/lab/bin/<test>`: none in a guest, a chroot into the unpacked guest
    /// image on a board.
    pub command_prefix: Vec<String>,
    /// A board is not powered off at the end: only its console is let go.
    pub board: bool,
}

/// A boot's initramfs, in its folder while QEMU starts.
const INITRAMFS: &str = "initramfs.cpio";
/// The boot's part of it (its keys), kept: with the cached base image it makes the
/// initramfs again.
const KEYS_ARCHIVE: &str = "keys/keys.cpio";

/// Boots a guest for `plan` in `dir` and logs in. On failure, the VM is already torn down.
pub async fn boot(plan: &RunPlan, dir: &Path) -> Result<Guest, (BootRecord, BootFailure)> {
    let keys = match image::run_keys(&dir.join("keys")) {
        Ok(k) => k,
        Err(e) => {
            return Err((
                empty_boot(dir, &with_causes(&e)),
                BootFailure::Infra(with_causes(&e)),
            ))
        }
    };
    // The boot's initramfs is the cached base image with the boot's keys appended; QEMU
    // reads it at start, so it is removed once the guest is up (or the boot has failed) and
    // only the keys' archive stays in the run directory (the manifest says how to make the
    // initramfs again). A full copy per boot filled runs/ with gigabytes.
    let initramfs = dir.join(INITRAMFS);
    if let Err(e) = image::write_initramfs(&plan.image, &keys, &initramfs) {
        return Err((
            empty_boot(dir, &with_causes(&e)),
            BootFailure::Infra(with_causes(&e)),
        ));
    }
    // It holds the guest's host key: owner-only, like the client key.
    let _ = {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dir.join(KEYS_ARCHIVE))
            .and_then(|mut f| f.write_all(&keys.archive))
    };
    // QEMU binds the forwarded port itself; if another process took it in between, retry.
    let mut last = String::new();
    for _ in 0..3 {
        let port = match qemu::free_port() {
            Ok(p) => p,
            Err(e) => {
                return Err((
                    empty_boot(dir, &with_causes(&e)),
                    BootFailure::Infra(with_causes(&e)),
                ))
            }
        };
        let spec = spec_for(plan, dir, &initramfs, port);
        let mut vm = match Vm::start(spec).await {
            Ok(vm) => vm,
            Err(e) => {
                return Err((
                    empty_boot(dir, &with_causes(&e)),
                    BootFailure::Infra(with_causes(&e)),
                ))
            }
        };
        let console = vm.console_path.clone();
        let ready = vm.wait_ready(plan.boot_timeout).await;
        let retry = matches!(&ready, Err(VmError::EarlyExit { stderr, .. })
            if stderr.contains("hostfwd") || stderr.contains("Could not set up host forwarding"));
        if !retry {
            let _ = std::fs::remove_file(&initramfs);
        }
        let (uptime, ready_at) = match ready {
            Ok(r) => r,
            Err(VmError::EarlyExit { stderr, .. })
                if stderr.contains("hostfwd")
                    || stderr.contains("Could not set up host forwarding") =>
            {
                last = stderr;
                continue;
            }
            Err(e) => {
                let failure = match &e {
                    VmError::BootCrash { .. } => BootFailure::Crash(vm.reports()),
                    _ => BootFailure::Infra(with_causes(&e)),
                };
                vm.kill().await;
                let mut rec = empty_boot(dir, &with_causes(&e));
                rec.console = console;
                return Err((rec, failure));
            }
        };
        let target = SshTarget {
            host: "127.0.0.1".into(),
            port,
            user: "root".into(),
            key: keys.client_key.clone(),
            host_key: Some(keys.host_public.clone()),
        };
        let left = plan
            .boot_timeout
            .saturating_sub(vm.started.elapsed())
            .max(Duration::from_secs(10));
        let state = vm.state.clone();
        let alive = Arc::new(Mutex::new(true));
        let ssh = SshSession::connect(&target, left, {
            let state = state.clone();
            move || {
                state
                    .lock()
                    .map(|s| !s.eof && !s.panicked())
                    .unwrap_or(false)
            }
        })
        .await;
        drop(alive);
        let ssh_ms = vm.started.elapsed().as_millis() as u64;
        let mut rec = BootRecord {
            ready_ms: Some(ready_at.as_millis() as u64),
            guest_uptime_ms: Some(uptime),
            ssh_ms: None,
            console,
            error: None,
        };
        match ssh {
            Ok(ssh) => {
                rec.ssh_ms = Some(ssh_ms);
                return Ok(Guest {
                    vm,
                    ssh,
                    boot: rec,
                    command_prefix: Vec::new(),
                    board: false,
                });
            }
            Err(e) => {
                let reports = vm.reports();
                vm.kill().await;
                rec.error = Some(with_causes(&e));
                let failure = if reports.is_empty() {
                    BootFailure::Infra(with_causes(&e))
                } else {
                    BootFailure::Crash(reports)
                };
                return Err((rec, failure));
            }
        }
    }
    let why = format!("QEMU could not bind a forwarded SSH port after 3 tries: {last}");
    Err((empty_boot(dir, &why), BootFailure::Infra(why)))
}

/// Why a boot did not give a usable guest.
#[derive(Debug, Clone)]
pub enum BootFailure {
    Infra(String),
    Crash(Vec<crate::results::crash::CrashReport>),
}

fn empty_boot(dir: &Path, err: &str) -> BootRecord {
    BootRecord {
        ready_ms: None,
        guest_uptime_ms: None,
        ssh_ms: None,
        console: dir.join("console.log"),
        error: Some(err.to_owned()),
    }
}

/// Powers the guest off over SSH and waits for QEMU to exit; kills it if it does not. A
/// board stays up (its next install reboots it); lab stops reading its console.
pub async fn teardown(guest: &mut Guest) {
    if guest.board {
        guest.vm.kill().await;
        return;
    }
    let _ = guest
        .ssh
        .exec("poweroff", None, Duration::from_secs(5), |_, _| {})
        .await;
    let clean = guest.vm.shutdown(Duration::from_secs(15)).await;
    if !clean {
        tracing::warn!("guest did not power off within 15s; QEMU's process group was terminated");
    }
}

/// Runs one test in a booted guest. Returns the outcome and whether the guest is still usable.
pub async fn run_test(
    plan: &RunPlan,
    guest: &mut Guest,
    test: &str,
    iteration: u32,
) -> (TestOutcome, bool) {
    let scale = plan.accel.deadline_scale();
    let seed = test_seed(plan.seed, test, iteration);
    // A kselftest program that runs for a fixed time of its own (epoll_wakeup_test: 75 s) gets it on
    // top of the workload duration: the guest adapter's watchdog and the host's deadline
    // both follow from the duration.
    let duration = plan.duration + crate::guest::kselftest::runs_for(test);
    let params = TestParams {
        seed,
        duration_ms: duration.as_millis() as u64,
        deadline_scale: scale,
        knobs: plan.knobs.clone(),
    };
    // The guest's shell sees every word quoted; the names were checked where they came in.
    let command = guest
        .command_prefix
        .iter()
        .cloned()
        .chain(std::iter::once(format!("/lab/bin/{test}")))
        .chain(params.to_args())
        .map(|w| crate::config::names::shell_quote(&w))
        .collect::<Vec<_>>()
        .join(" ");
    tracing::info!(arch = %plan.arch, test, iteration, "run: starting the test");
    tracing::debug!(%command, "run: guest command");
    let reports_before = guest.vm.reports().len();
    let kinds_before = guest.vm.started_kinds().len();
    let started = Instant::now();
    let stderr_tail: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let tail = stderr_tail.clone();
    let stderr_all: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let all = stderr_all.clone();
    let result = guest
        .ssh
        .exec(
            &command,
            None,
            plan.host_deadline
                .unwrap_or_else(|| host_deadline(duration, scale)),
            move |stream, line| {
                if stream == Stream::Stderr {
                    if let Ok(mut a) = all.lock() {
                        if a.len() < STDERR_KEPT_LINES {
                            a.push(line.to_owned());
                        }
                    }
                    if let Ok(mut t) = tail.lock() {
                        t.push(line.to_owned());
                        if t.len() > 20 {
                            t.remove(0);
                        }
                    }
                }
            },
        )
        .await;
    let duration_ms = started.elapsed().as_millis() as u64;
    // A lost connection usually means the guest died: a panic reboots it (panic=-1) and QEMU
    // exits (-no-reboot). Wait for that, so the console has the whole report before the
    // outcome is decided.
    if result.is_err() {
        let _ = guest.vm.child.wait_timeout(Duration::from_secs(10)).await;
        guest.vm.settle().await;
    }
    // A report may still be printing: give the console a moment to finish it.
    if guest.vm.started_kinds().len() > kinds_before {
        for _ in 0..40 {
            if guest.vm.reports().len() >= guest.vm.started_kinds().len() || !guest.vm.alive() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let crashes: Vec<_> = guest
        .vm
        .reports()
        .into_iter()
        .skip(reports_before)
        .collect();
    let panicked = guest
        .vm
        .started_kinds()
        .iter()
        .skip(kinds_before)
        .any(|k| *k == CrashKind::Panic);
    let stderr_tail = stderr_tail.lock().map(|t| t.join("\n")).unwrap_or_default();
    if let Ok(lines) = stderr_all.lock() {
        keep_stderr(&plan.dir, test, iteration, &lines);
    }
    let mut outcome = TestOutcome {
        test: test.to_owned(),
        arch: plan.arch,
        iteration,
        seed,
        kind: OutcomeKind::InfraError,
        summary: String::new(),
        result: None,
        crashes: crashes.clone(),
        duration_ms,
        stderr_tail,
    };
    let mut usable = true;
    match result {
        Ok(out) => {
            let parsed: Vec<Result<Option<TestResult>, _>> =
                out.stdout.lines().map(TestResult::parse_line).collect();
            let result = parsed
                .iter()
                .filter_map(|r| r.as_ref().ok().cloned().flatten())
                .next_back();
            let proto_err = parsed
                .iter()
                .find_map(|r| r.as_ref().err().map(|e| e.to_string()));
            match (&result, proto_err) {
                (Some(r), _) => {
                    outcome.kind = match r.verdict {
                        Verdict::Pass => OutcomeKind::Pass,
                        Verdict::Fail => OutcomeKind::Fail,
                        Verdict::Hang => OutcomeKind::Hang,
                        Verdict::Skip => OutcomeKind::InfraError,
                    };
                    outcome.summary = match r.verdict {
                        Verdict::Skip => format!("test could not run: {}", r.summary),
                        Verdict::Hang => format!("guest watchdog fired: {}", r.summary),
                        _ => r.summary.clone(),
                    };
                }
                (None, Some(e)) => {
                    outcome.kind = OutcomeKind::InfraError;
                    outcome.summary = e;
                }
                (None, None) if out.status == 127 => {
                    outcome.summary = format!("/lab/bin/{test} is not in the guest image");
                }
                (None, None) => {
                    outcome.kind = OutcomeKind::Fail;
                    outcome.summary =
                        format!("exited with status {} without a result line", out.status);
                }
            }
            outcome.result = result;
        }
        Err(crate::transport::ssh::TransportError::Timeout { secs, .. }) => {
            usable = false;
            // PID 1's heartbeat tells a lost transport from a hung guest: a guest whose
            // kernel kept running and said its link was down did not hang.
            if let Some((after, state)) = guest.vm.link_down_after(started) {
                outcome.kind = OutcomeKind::InfraError;
                outcome.summary = format!(
                    "transport lost: no answer within {secs:.0}s, and the guest's console \
                     heartbeat said eth0 was {state} {:.0}s into the test",
                    after.as_secs_f64()
                );
            } else {
                outcome.kind = OutcomeKind::Hang;
                let beat = match guest.vm.since_alive() {
                    Some(d) => format!(
                        "; its last console heartbeat was {:.0}s ago",
                        d.as_secs_f64()
                    ),
                    None => String::new(),
                };
                outcome.summary = format!(
                    "host deadline fired: no answer from the guest within {secs:.0}s{beat}"
                );
            }
        }
        Err(e) => {
            usable = false;
            outcome.summary = if guest.vm.alive() {
                format!("transport failed mid-test: {e}")
            } else {
                format!("QEMU exited mid-test: {e}")
            };
        }
    }
    if panicked {
        usable = false;
    }
    if !crashes.is_empty() || panicked {
        // A kernel report outranks what the test said: it is the stronger evidence.
        outcome.kind = OutcomeKind::KernelCrash;
        let first = crashes.first();
        outcome.summary = match first {
            Some(c) => format!("{} [{}] {}", c.title, c.fingerprint.id(), c.fingerprint),
            None => "kernel panic (report incomplete on the console)".into(),
        };
    }
    if !guest.vm.alive() {
        usable = false;
    }
    (outcome, usable)
}

/// The guest image of `arch` for `tests`. The programs of tests named `kselftest:…` and
/// `perf:…` are built from the pristine tree of lab.toml's kernel (never a side's patched
/// one: both sides of a comparison run the same binaries), with the arch's cross compiler.
pub async fn guest_image(
    s: &crate::config::Settings,
    arch: crate::arch::Arch,
    tests: &[String],
) -> Result<image::BaseImage, image::ImageError> {
    let kselftest = if image::needs_tree(tests) {
        let def = crate::kernel::source::KernelDef::load(&s.kernel, &s.kernels_dir)
            .map_err(|e| image::ImageError::KselftestTree(e.to_string()))?;
        let source = crate::kernel::source::Source::resolve(&def, &s.cache_dir)
            .map_err(|e| image::ImageError::KselftestTree(e.to_string()))?;
        let tree = source
            .pristine_dir()
            .map_err(|e| image::ImageError::KselftestTree(e.to_string()))?;
        Some(image::TreeInputs {
            tree,
            source: source.id.id.clone(),
            cross_compile: s.cross_compile.get(&arch).cloned().unwrap_or_default(),
            jobs: s.make_jobs(),
        })
    } else {
        None
    };
    image::for_tests(s, arch, tests, kselftest).await
}

/// Runs the whole plan on this host: boots as many guests as needed, runs every test
/// iteration, tears everything down. Outcomes are appended to `results.jsonl` as they come.
/// `placement` says where this is (the manifest keeps it); callers go through an executor
/// (`crate::exec`), which knows.
pub async fn run(
    plan: &RunPlan,
    accel_reason: &str,
    reproduce: &str,
    placement: &Placement,
    on_outcome: &(dyn Fn(&TestOutcome) + Send + Sync),
) -> RunReport {
    run_with(plan, None, accel_reason, reproduce, placement, on_outcome).await
}

/// Runs the whole plan on the board `target`, as [`run`] does in QEMU guests: each boot is
/// an install through the target's hook (see [`board`]).
pub async fn run_on_board(
    plan: &RunPlan,
    target: &crate::config::Target,
    accel_reason: &str,
    reproduce: &str,
    placement: &Placement,
    on_outcome: &(dyn Fn(&TestOutcome) + Send + Sync),
) -> RunReport {
    run_with(
        plan,
        Some(target),
        accel_reason,
        reproduce,
        placement,
        on_outcome,
    )
    .await
}

async fn run_with(
    plan: &RunPlan,
    target: Option<&crate::config::Target>,
    accel_reason: &str,
    reproduce: &str,
    placement: &Placement,
    on_outcome: &(dyn Fn(&TestOutcome) + Send + Sync),
) -> RunReport {
    let _ = std::fs::create_dir_all(&plan.dir);
    let mut queue: std::collections::VecDeque<Job> = (0..plan.iterations)
        .flat_map(|i| {
            plan.tests.iter().map(move |t| Job {
                test: t.clone(),
                iteration: i,
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    let mut boots = Vec::new();
    let mut boot_no = 0;
    let results_path = plan.dir.join("results.jsonl");
    set_aside_earlier_results(&results_path);
    let record = |o: &TestOutcome, outcomes: &mut Vec<TestOutcome>| {
        append_result(&results_path, o);
        on_outcome(o);
        outcomes.push(o.clone());
    };
    let mut consecutive_boot_failures = 0;
    while !queue.is_empty() {
        boot_no += 1;
        let dir = plan.dir.join(format!("boot-{boot_no}"));
        let booted = match target {
            None => boot(plan, &dir).await,
            Some(t) => board::boot(plan, t, &dir).await,
        };
        match booted {
            Err((rec, failure)) => {
                boots.push(rec);
                consecutive_boot_failures += 1;
                // The job that needed this boot gets the outcome; after two failed boots in a
                // row, every remaining job does: the kernel or the lab is broken, not the test.
                let take = if consecutive_boot_failures >= 2 {
                    queue.len()
                } else {
                    1
                };
                for j in queue.drain(..take) {
                    let seed = test_seed(plan.seed, &j.test, j.iteration);
                    let o = match &failure {
                        BootFailure::Infra(why) => TestOutcome::infra(
                            &j.test,
                            plan.arch,
                            j.iteration,
                            seed,
                            format!("boot failed: {why}"),
                        ),
                        BootFailure::Crash(reports) => {
                            let mut o = TestOutcome::infra(
                                &j.test,
                                plan.arch,
                                j.iteration,
                                seed,
                                String::new(),
                            );
                            o.kind = OutcomeKind::KernelCrash;
                            o.summary = reports.first().map_or_else(
                                || "kernel crashed during boot".into(),
                                |c| {
                                    format!(
                                        "during boot: {} [{}] {}",
                                        c.title,
                                        c.fingerprint.id(),
                                        c.fingerprint
                                    )
                                },
                            );
                            o.crashes = reports.clone();
                            o
                        }
                    };
                    record(&o, &mut outcomes);
                }
                continue;
            }
            Ok(mut guest) => {
                consecutive_boot_failures = 0;
                let mut usable = true;
                while usable {
                    let Some(j) = queue.pop_front() else { break };
                    let (o, still) = run_test(plan, &mut guest, &j.test, j.iteration).await;
                    usable = still;
                    record(&o, &mut outcomes);
                }
                if usable {
                    teardown(&mut guest).await;
                } else {
                    guest.vm.kill().await;
                }
                boots.push(guest.boot.clone());
            }
        }
    }
    let mut report = finish(plan, accel_reason, reproduce, placement, boots, outcomes);
    if let Some(t) = target {
        // A board's boot is the install hook, not a QEMU command line.
        report.manifest.cmdline = board::cmdline(plan);
        report.manifest.qemu_command = board::reproduce(plan, t);
        report.manifest.qemu_version = format!("none: target {} ({})", t.name, t.host);
        save_manifest(&report.manifest, &plan.dir);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_reproducible_and_distinct() {
        assert_eq!(
            test_seed(1, "futex_errno", 0),
            test_seed(1, "futex_errno", 0)
        );
        assert_ne!(
            test_seed(1, "futex_errno", 0),
            test_seed(1, "futex_errno", 1)
        );
        assert_ne!(test_seed(1, "futex_errno", 0), test_seed(1, "pipe_excl", 0));
        assert_ne!(
            test_seed(1, "futex_errno", 0),
            test_seed(2, "futex_errno", 0)
        );
    }

    #[test]
    fn host_deadline_leaves_room_for_the_guest_watchdog() {
        let d = Duration::from_secs(3);
        assert!(host_deadline(d, 5.0) > d + Duration::from_secs(100));
        assert!(host_deadline(d, 1.0) < host_deadline(d, 5.0));
    }
}
