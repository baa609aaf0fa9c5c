//! The Slurm executor: builds and boots as jobs on a Slurm cluster, driven from this lab.
//!
//! The model:
//! - **Shared paths.** The lab's cache folder (kernels, guest images, run folders) is at the
//!   same path on every node, so a job names its inputs and outputs by path. Kernels are
//!   content-addressed there, written atomically and checked by sha256 on use (`kernel::cache`).
//! - **Builds** run as one job each on the build partition, `lab worker build FILE`, with the
//!   request serialized to FILE; a kernel whose key is already in the cache is not built.
//! - **Runs.** A batch's runs are grouped by host group (the A and B boots of an ABBA pair);
//!   the groups of one arch are one job array on the run partition, a task per group, so the
//!   boots of a pair run on the same node, one after the other, with `vm.cpus` cores. The
//!   task runs `lab worker run FILE`, which writes each run's folder (`results.jsonl`,
//!   `manifest.json` with the job and node) and nothing else.
//! - **Only the controller writes the results store**, in this process: it ingests the run
//!   folders of a batch in job order once their tasks have left the queue, whatever order
//!   they finished in. A run whose folder has no manifest when its task is gone (the node
//!   went down, the job failed to start, was cancelled) is lost to the engine: an
//!   infra-error for every test iteration, never a regression ([`crate::run::lost`]).
//! - **Nothing left in the queue.** Every job carries this controller's name; Ctrl-C and
//!   the end of a batch's wait leave none of them queued (`scancel --name`).
//!
//! The controller decides only at batch boundaries, so no job of a session is still running
//! when it decides: there is nothing to overrun.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Batch, BoxFuture, EngineError, Executor, OnOutcome, Placement, RunJob};
use crate::arch::{Accel, Arch};
use crate::config::{AccelChoice, EngineSettings, Settings};
use crate::guest::image::BaseImage;
use crate::kernel::build::{self, BuildError, BuildEvent, BuildRequest, Built};
use crate::kernel::cache::Artifact;
use crate::results::manifest::{RunManifest, MANIFEST_FILE};
use crate::results::TestOutcome;
use crate::run::{self, RunReport};

/// The engine's name, as runs record it.
const ENGINE: &str = "slurm";

/// How long `squeue` may keep failing (the controller unreachable) before a batch's jobs are
/// given up: their unfinished runs become infra-errors.
const QUEUE_GIVE_UP: Duration = Duration::from_secs(120);

/// What `lab worker run` reads: the runs of one host group, in order.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct GroupFile {
    pub format: u32,
    pub runs: Vec<WorkerRun>,
}

/// One run a worker makes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct WorkerRun {
    pub plan: run::RunPlan,
    pub accel_reason: String,
    pub reproduce: String,
}

/// The version of [`GroupFile`]; a worker refuses another.
pub const GROUP_FORMAT: u32 = 1;

/// A Slurm cluster reached with the `sbatch`, `squeue`, `scancel`, `scontrol` and `sinfo`
/// of this host.
#[derive(Debug)]
pub struct Slurm {
    cfg: EngineSettings,
    cache_dir: PathBuf,
    lab_toml: Option<PathBuf>,
    lab: PathBuf,
    accel: AccelChoice,
    cpus: u32,
    memory_mib: u32,
    make_jobs: u32,
    slots: usize,
    /// Every job of this controller has this name.
    name: String,
    /// Folders of the jobs' files, one per batch or build.
    seq: AtomicUsize,
    /// Jobs an earlier lab on this host left in the queue when it died, found by their
    /// name and cancelled as this one started: (that lab's pid, the job ids).
    orphans: Vec<(u32, Vec<String>)>,
}

impl Slurm {
    /// The cluster `s` names, checked with `sinfo`: its run partition must exist and have
    /// nodes. The run slots are its cores over `vm.cpus`.
    pub fn new(s: &Settings) -> Result<Slurm, EngineError> {
        let cfg = s.engine.clone();
        let lab = match &cfg.slurm_lab {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(|source| EngineError::NoBinary { source })?,
        };
        for p in [&lab, &s.cache_dir] {
            check_path(p)?;
        }
        let out = blocking(
            "sinfo",
            &[
                "--noheader",
                "--partition",
                &cfg.slurm_run_partition,
                "--Node",
                "--format=%N|%c",
            ],
        )?;
        let mut cores = BTreeMap::new();
        for line in out.lines() {
            if let Some((node, c)) = line.trim().split_once('|') {
                cores.insert(node.to_owned(), c.trim().parse::<usize>().unwrap_or(0));
            }
        }
        if cores.is_empty() {
            return Err(EngineError::NoNodes {
                partition: cfg.slurm_run_partition.clone(),
            });
        }
        let per_guest = s.vm_cpus.max(1) as usize;
        let slots = cores.values().map(|c| c / per_guest).sum::<usize>().max(1);
        Ok(Slurm {
            cache_dir: s.cache_dir.clone(),
            lab_toml: s.file.clone(),
            lab,
            accel: s.accel,
            cpus: s.vm_cpus,
            memory_mib: s.vm_memory_mib,
            make_jobs: s.make_jobs(),
            slots,
            // Host and pid: two controllers on two hosts never share a name, so one never
            // cancels the other's jobs.
            name: format!(
                "lab-{}-{}",
                crate::results::manifest::host_name(),
                std::process::id()
            ),
            seq: AtomicUsize::new(0),
            orphans: cancel_orphans(),
            cfg,
        })
    }

    /// Jobs of an earlier lab on this host that died without cancelling them, cancelled as
    /// this one started: (that lab's pid, job ids).
    pub fn orphans(&self) -> &[(u32, Vec<String>)] {
        &self.orphans
    }

    /// The job name every job of this controller carries.
    pub fn job_name(&self) -> &str {
        &self.name
    }

    /// A fresh folder for one batch's or build's job files.
    fn job_dir(&self, what: &str) -> Result<PathBuf, EngineError> {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let dir = self
            .cache_dir
            .join("slurm")
            .join(&self.name)
            .join(format!("{what}-{n:03}"));
        std::fs::create_dir_all(&dir).map_err(|source| EngineError::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    /// `lab [--lab FILE] worker VERB FILE` as the jobs' shell runs it; `file` is already
    /// quoted for that shell.
    fn worker_command(&self, verb: &str, file: &str) -> String {
        let mut cmd = format!("exec '{}'", self.lab.display());
        if let Some(toml) = &self.lab_toml {
            cmd.push_str(&format!(" --lab '{}'", toml.display()));
        }
        cmd.push_str(&format!(" worker {verb} {file}"));
        cmd
    }

    /// Submits a job and returns its id. `wrap` is a shell command of paths this lab made
    /// (checked to hold no quote).
    async fn submit(&self, args: &[String], wrap: &str) -> Result<String, EngineError> {
        let mut all: Vec<String> = vec![
            "--parsable".into(),
            format!("--job-name={}", self.name),
            "--no-requeue".into(),
        ];
        all.extend(args.iter().cloned());
        all.push(format!("--wrap={wrap}"));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = client("sbatch", &refs).await?;
        // `--parsable` prints `id` or `id;cluster`.
        let id = out.trim().split(';').next().unwrap_or("").to_owned();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(EngineError::Client {
                tool: "sbatch",
                why: format!("printed no job id: {out:?}"),
            });
        }
        tracing::info!(job = %id, "slurm job submitted");
        Ok(id)
    }

    /// The tasks of this controller's jobs still in the queue: `job[_task]` to its state.
    async fn queued(&self) -> Result<BTreeMap<String, String>, EngineError> {
        let out = client(
            "squeue",
            &[
                "--noheader",
                "--array",
                "--me",
                "--name",
                &self.name,
                "--format=%i|%T",
            ],
        )
        .await?;
        Ok(out
            .lines()
            .filter_map(|l| l.trim().split_once('|'))
            .map(|(id, st)| (id.to_owned(), st.to_owned()))
            .collect())
    }

    /// Cancels every job of this controller; waits until the queue has none of them.
    async fn cancel_all(&self) {
        if let Err(e) = client("scancel", &["--me", "--name", &self.name]).await {
            tracing::warn!("failed to cancel the jobs named {}: {e}", self.name);
        }
        for _ in 0..50 {
            match self.queued().await {
                Ok(q) if q.is_empty() => return,
                Err(_) => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    async fn build_remote(
        &self,
        req: &BuildRequest,
        on: &(dyn Fn(BuildEvent) + Send + Sync),
    ) -> Result<Built, BuildError> {
        let started = Instant::now();
        if let Some(artifact) = build::lookup(req, &self.cache_dir)? {
            return Ok(Built::cached(artifact, started));
        }
        let job_err = |job: &str, why: String| BuildError::Job {
            engine: ENGINE.into(),
            job: job.to_owned(),
            why,
        };
        let dir = self
            .job_dir("build")
            .map_err(|e| job_err("-", e.to_string()))?;
        let file = dir.join("request.json");
        let text = serde_json::to_vec(req).map_err(|e| job_err("-", e.to_string()))?;
        std::fs::write(&file, text)
            .map_err(|e| job_err("-", format!("{}: {e}", file.display())))?;
        let log = dir.join("slurm.out");
        let args = vec![
            format!("--partition={}", self.cfg.slurm_build_partition),
            format!("--cpus-per-task={}", self.make_jobs.max(1)),
            format!("--output={}", log.display()),
        ];
        let id = self
            .submit(
                &args,
                &self.worker_command("build", &format!("'{}'", file.display())),
            )
            .await
            .map_err(|e| job_err("-", e.to_string()))?;
        let _cancel = self.cancel_on_interrupt();
        on(BuildEvent::Stage("waiting for the slurm build job"));
        tracing::info!(job = %id, log = %log.display(), "slurm build job submitted");
        self.wait_gone(std::slice::from_ref(&id)).await;
        match build::lookup(req, &self.cache_dir)? {
            Some(artifact) => Ok(Built {
                artifact,
                cached: false,
                touched: Vec::new(),
                compiled: 0,
                seconds: started.elapsed().as_secs_f64(),
            }),
            None => {
                let (state, node) = job_state(&id).await;
                let tail = tail(&log, 15);
                Err(job_err(
                    &id,
                    format!(
                        "it ended {state} on {node}; its log {}:\n{tail}",
                        log.display()
                    ),
                ))
            }
        }
    }

    /// Scancels this controller's jobs if lab is interrupted while the guard lives.
    fn cancel_on_interrupt(&self) -> crate::process::CleanupGuard {
        let name = self.name.clone();
        crate::process::on_interrupt(move || {
            let _ = std::process::Command::new("scancel")
                .args(["--me", "--name", &name])
                .status();
        })
    }

    /// Waits until none of `ids` (jobs or job arrays) is in the queue; on Ctrl-C, cancels
    /// every job of this controller and returns.
    async fn wait_gone(&self, ids: &[String]) {
        let mut failing_since: Option<Instant> = None;
        loop {
            if crate::process::interrupted().is_some() {
                self.cancel_all().await;
                return;
            }
            let queued = match self.queued().await {
                Ok(q) => {
                    failing_since = None;
                    q
                }
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > QUEUE_GIVE_UP {
                        // The runs are lost to the engine: their folders say what finished.
                        tracing::warn!(
                            "squeue has failed for {} s ({e}); cancelling this batch's jobs",
                            QUEUE_GIVE_UP.as_secs()
                        );
                        self.cancel_all().await;
                        return;
                    }
                    tracing::warn!("squeue: {e}; asking again");
                    tokio::time::sleep(self.cfg.slurm_poll).await;
                    continue;
                }
            };
            // A pending array shows as `id_[0-3]`, a running task as `id_2`.
            let ours = queued.keys().any(|q| {
                ids.iter()
                    .any(|id| q == id || q.starts_with(&format!("{id}_")))
            });
            if !ours {
                return;
            }
            tokio::time::sleep(self.cfg.slurm_poll).await;
        }
    }

    async fn run_batch(&self, batch: Batch, on: OnOutcome<'_>) -> Vec<RunReport> {
        let started = Instant::now();
        let lost_all = |why: &str| -> Vec<RunReport> {
            batch
                .jobs
                .iter()
                .map(|j| lost(j, &Placement::unplaced(ENGINE), why))
                .collect()
        };
        let dir = match self.job_dir("batch") {
            Ok(d) => d,
            Err(e) => return lost_all(&e.to_string()),
        };
        // Host groups in order of first appearance, and the arch of each.
        let mut groups: Vec<(usize, Arch, Vec<usize>)> = Vec::new();
        for (i, job) in batch.jobs.iter().enumerate() {
            match groups.iter_mut().find(|g| g.0 == job.host_group) {
                Some(g) => g.2.push(i),
                None => groups.push((job.host_group, job.plan.arch, vec![i])),
            }
        }
        // One array per arch: its tasks are that arch's groups, in order.
        let mut arrays: BTreeMap<Arch, Vec<usize>> = BTreeMap::new();
        for (gi, g) in groups.iter().enumerate() {
            arrays.entry(g.1).or_default().push(gi);
        }
        // Where each group's task is: (array job id, task index).
        let mut task_of: Vec<Option<(String, usize)>> = vec![None; groups.len()];
        let _cancel = self.cancel_on_interrupt();
        let mut submitted = Vec::new();
        for (arch, members) in &arrays {
            let adir = dir.join(arch.name());
            if let Err(e) = std::fs::create_dir_all(&adir) {
                tracing::warn!("{}: {e}", adir.display());
                continue;
            }
            let mut ok = true;
            for (task, gi) in members.iter().enumerate() {
                let runs = groups[*gi]
                    .2
                    .iter()
                    .map(|&i| {
                        let j = &batch.jobs[i];
                        // A manifest there is from an earlier attempt: it must not pass for this one.
                        let _ = std::fs::remove_file(j.plan.dir.join(MANIFEST_FILE));
                        WorkerRun {
                            plan: j.plan.clone(),
                            accel_reason: j.accel_reason.clone(),
                            reproduce: j.reproduce.clone(),
                        }
                    })
                    .collect();
                let file = adir.join(format!("task-{task}.json"));
                let text = serde_json::to_vec(&GroupFile {
                    format: GROUP_FORMAT,
                    runs,
                })
                .unwrap_or_default();
                if let Err(e) = std::fs::write(&file, text) {
                    tracing::warn!("{}: {e}", file.display());
                    ok = false;
                }
            }
            if !ok {
                continue;
            }
            let mut args = vec![
                format!("--partition={}", self.cfg.slurm_run_partition),
                format!("--array=0-{}", members.len() - 1),
                format!("--cpus-per-task={}", self.cpus),
                // The guest's memory and QEMU's own.
                format!("--mem={}M", self.memory_mib + 256),
                format!("--output={}", adir.join("slurm-%a.out").display()),
            ];
            if let Some(f) = self.cfg.slurm_features.get(arch) {
                args.push(format!("--constraint={f}"));
            }
            // The task's own file: the folder quoted, the task id expanded by the shell.
            let wrap = self.worker_command(
                "run",
                &format!("'{}/task-'\"$SLURM_ARRAY_TASK_ID\"'.json'", adir.display()),
            );
            match self.submit(&args, &wrap).await {
                Ok(id) => {
                    for (task, gi) in members.iter().enumerate() {
                        task_of[*gi] = Some((id.clone(), task));
                    }
                    submitted.push(id);
                }
                Err(e) => tracing::warn!("the {arch} runs of this batch were not submitted: {e}"),
            }
        }
        // Once every task has left the queue, the batch is ingested in job order.
        let submitted_at = Instant::now();
        self.wait_gone(&submitted).await;
        let ran_s = submitted_at.elapsed().as_secs_f64();
        let ingest_started = Instant::now();
        let mut reports: Vec<Option<RunReport>> = vec![None; batch.jobs.len()];
        for next in 0..groups.len() {
            let job_id = task_of[next].as_ref().map(|(id, t)| format!("{id}_{t}"));
            let (state, node) = match &job_id {
                Some(id) => job_state(id).await,
                None => ("NOT SUBMITTED".to_owned(), "(none)".to_owned()),
            };
            for &i in &groups[next].2 {
                let job = &batch.jobs[i];
                let placement = Placement {
                    engine: ENGINE.into(),
                    job: job_id.clone(),
                    node: node.clone(),
                };
                let report = match ingest(job) {
                    Some(r) => r,
                    None => {
                        let log = task_of[next].as_ref().map_or_else(String::new, |(_, t)| {
                            dir.join(job.plan.arch.name())
                                .join(format!("slurm-{t}.out"))
                                .display()
                                .to_string()
                        });
                        let why = format!(
                            "slurm job {} ended {state} on {node} without finishing the run (its log: {log})",
                            job_id.as_deref().unwrap_or("-")
                        );
                        lost(job, &placement, &why)
                    }
                };
                record(&batch, i, &report, on);
                reports[i] = Some(report);
            }
        }
        // The figures docs/scale.md models time to verdict with.
        tracing::info!(
            jobs = batch.jobs.len(),
            arrays = submitted.len(),
            submit_s = format!("{:.2}", (submitted_at - started).as_secs_f64()),
            queue_and_run_s = format!("{ran_s:.2}"),
            ingest_s = format!("{:.3}", ingest_started.elapsed().as_secs_f64()),
            "slurm batch"
        );
        reports
            .into_iter()
            .zip(&batch.jobs)
            .map(|(r, j)| r.unwrap_or_else(|| lost(j, &Placement::unplaced(ENGINE), "not run")))
            .collect()
    }
}

impl Executor for Slurm {
    fn engine(&self) -> &'static str {
        ENGINE
    }

    fn slots(&self) -> usize {
        self.slots
    }

    fn guests_here(&self) -> bool {
        false
    }

    fn build<'a>(
        &'a self,
        req: &'a BuildRequest,
        on: &'a (dyn Fn(BuildEvent) + Send + Sync),
    ) -> BoxFuture<'a, Result<Built, BuildError>> {
        Box::pin(self.build_remote(req, on))
    }

    fn choose_accel<'a>(
        &'a self,
        _artifact: &'a Artifact,
        _image: &'a BaseImage,
        _dir: &'a Path,
    ) -> BoxFuture<'a, (Accel, String)> {
        // The controller cannot probe the nodes' KVM from here; the lab definition says.
        let chosen = match self.accel {
            AccelChoice::Kvm => (Accel::Kvm, "KVM: forced by vm.accel in the lab definition".into()),
            AccelChoice::Tcg => (Accel::Tcg, "TCG: forced by vm.accel in the lab definition".into()),
            AccelChoice::Auto => (
                Accel::Tcg,
                "TCG: the slurm engine does not probe its nodes; set vm.accel = \"kvm\" when every run node has KVM".into(),
            ),
        };
        Box::pin(async move { chosen })
    }

    fn run<'a>(&'a self, batch: Batch, on: OnOutcome<'a>) -> BoxFuture<'a, Vec<RunReport>> {
        Box::pin(self.run_batch(batch, on))
    }
}

/// The report a worker left in the run's folder: its manifest and outcomes; `None` without a
/// manifest (the run did not finish).
fn ingest(job: &RunJob) -> Option<RunReport> {
    let dir = &job.plan.dir;
    let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).ok()?;
    let manifest: RunManifest = serde_json::from_str(&text).ok()?;
    let outcomes = std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<TestOutcome>(l).ok())
        .collect();
    Some(RunReport {
        manifest,
        outcomes,
        dir: dir.clone(),
    })
}

fn lost(job: &RunJob, placement: &Placement, why: &str) -> RunReport {
    run::lost(&job.plan, &job.accel_reason, &job.reproduce, placement, why)
}

/// Records job `i`'s report in the batch's store and hands its outcomes on.
fn record(batch: &Batch, i: usize, report: &RunReport, on: OnOutcome<'_>) {
    let job = &batch.jobs[i];
    let placement = report
        .manifest
        .placement
        .clone()
        .unwrap_or_else(|| Placement::unplaced(ENGINE));
    let recorded = batch
        .recorder
        .as_ref()
        .map(|r| (r, job.begin_record(r, &placement)));
    for o in &report.outcomes {
        if let Some((r, run)) = &recorded {
            r.add_outcome(run, o);
        }
        on(i, o);
    }
    if let Some((r, run)) = &recorded {
        r.finish_run(run, &report.manifest);
    }
}

/// A job's state and node, from `scontrol show job`; `unknown` for both when Slurm has
/// forgotten it.
async fn job_state(id: &str) -> (String, String) {
    let out = client("scontrol", &["--oneliner", "show", "job", id])
        .await
        .unwrap_or_default();
    let field = |key: &str| {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .filter(|v| !v.is_empty() && *v != "(null)")
            .map(str::to_owned)
    };
    (
        field("JobState=").unwrap_or_else(|| "unknown".into()),
        field("NodeList=").unwrap_or_else(|| "(none)".into()),
    )
}

/// The last `n` lines of a file, for an error.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A path that goes into a job's shell command: no quote in it.
fn check_path(p: &Path) -> Result<(), EngineError> {
    if p.to_string_lossy().contains(['\'', '\n']) {
        return Err(EngineError::OddPath { path: p.to_owned() });
    }
    Ok(())
}

/// Runs a Slurm client in its own process group and returns its stdout.
async fn client(tool: &'static str, args: &[&str]) -> Result<String, EngineError> {
    let mut cmd = tokio::process::Command::new(tool);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = crate::process::spawn(tool, &mut cmd).map_err(|e| EngineError::Client {
        tool,
        why: e.to_string(),
    })?;
    let mut out = Vec::new();
    if let Some(mut o) = child.stdout() {
        use tokio::io::AsyncReadExt as _;
        let _ = o.read_to_end(&mut out).await;
    }
    let (status, err) = child
        .wait_with_stderr()
        .await
        .map_err(|e| EngineError::Client {
            tool,
            why: e.to_string(),
        })?;
    if !status.success() {
        return Err(EngineError::Client {
            tool,
            why: format!("{status}: {}", err.trim()),
        });
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// [`client`] before the runtime's work starts (the executor is made synchronously).
fn blocking(tool: &'static str, args: &[&str]) -> Result<String, EngineError> {
    let out = std::process::Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| EngineError::Client {
            tool,
            why: format!("cannot run it ({e}); is slurm-client installed and SLURM_CONF set?"),
        })?;
    if !out.status.success() {
        return Err(EngineError::Client {
            tool,
            why: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Finds this user's jobs named `lab-<this host>-<pid>` whose lab is gone (no process
/// `pid`, or one that is not lab: killed with SIGKILL, or its host rebooted) and cancels
/// them: nothing would ingest their runs, and they hold nodes. A session that is resumed
/// (`lab compare` again, `lab bisect --continue`) runs its unfinished batch again. A lab that
/// is alive keeps its jobs, so two labs on one host never cancel each other's.
fn cancel_orphans() -> Vec<(u32, Vec<String>)> {
    let prefix = format!("lab-{}-", crate::results::manifest::host_name());
    let Ok(out) = blocking("squeue", &["--noheader", "--me", "--format=%F|%j"]) else {
        return Vec::new();
    };
    let mut by_pid: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for line in out.lines() {
        let Some((id, name)) = line.trim().split_once('|') else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive =
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "lab");
        if pid != std::process::id() && !alive {
            let ids = by_pid.entry(pid).or_default();
            if !ids.iter().any(|i| i == id) {
                ids.push(id.to_owned());
            }
        }
    }
    by_pid
        .into_iter()
        .filter_map(|(pid, ids)| {
            let mut args = vec!["--me"];
            args.extend(ids.iter().map(String::as_str));
            match blocking("scancel", &args) {
                Ok(_) => Some((pid, ids)),
                Err(e) => {
                    tracing::warn!("cannot cancel the jobs {ids:?} of the gone lab {pid}: {e}");
                    None
                }
            }
        })
        .collect()
}

/// The `job` a run's manifest names, from the environment Slurm gives a job.
pub fn placement_from_env() -> Placement {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let job = match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
        (Some(j), Some(t)) => Some(format!("{j}_{t}")),
        _ => var("SLURM_JOB_ID"),
    };
    Placement {
        engine: ENGINE.into(),
        job,
        node: var("SLURMD_NODENAME").unwrap_or_else(crate::results::manifest::host_name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_with_a_quote_never_reaches_a_job_s_shell() {
        assert!(check_path(Path::new("/cache/lab")).is_ok());
        assert!(matches!(
            check_path(Path::new("/cache/it's")),
            Err(EngineError::OddPath { .. })
        ));
    }
}
