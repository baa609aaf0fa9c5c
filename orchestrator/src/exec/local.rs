//! The local executor: builds with this host's toolchains into its cache, boots guests on
//! its cores, as many at once as fit without overcommitting vCPUs or memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::{Batch, BoxFuture, Executor, OnOutcome, Placement};
use crate::arch::Accel;
use crate::config::{AccelChoice, Settings};
use crate::guest::image::BaseImage;
use crate::kernel::build::{self, BuildError, BuildEvent, BuildRequest, Built};
use crate::kernel::cache::Artifact;
use crate::results::TestOutcome;
use crate::run::{self, RunReport};

/// This host.
#[derive(Debug, Clone)]
pub struct Local {
    cache_dir: PathBuf,
    accel: AccelChoice,
    cpus: u32,
    memory_mib: u32,
    slots: usize,
    /// Shared by every batch, so that two batches at once (gate's candidates, a bisection
    /// beside a comparison in one process) still fit the host.
    free: Arc<Semaphore>,
    placement: Placement,
}

impl Local {
    /// The local executor of the lab `s`, booting `asked` guests at once, or, with `None`,
    /// as many as the host's cores hold without overcommitting vCPUs (under TCG, two 2-vCPU
    /// guests on 2 cores turned a 40 µs futex wake-up p50 into 450 µs). Never more than
    /// [`clamp_jobs`] allows; the note says why when an asked number was lowered.
    pub fn new(s: &Settings, asked: Option<usize>) -> (Local, Option<String>) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let want = asked
            .unwrap_or_else(|| (cores / s.vm_cpus.max(1) as usize).max(1))
            .clamp(1, 64);
        let (slots, note) = clamp_jobs(want, s.vm_cpus, s.vm_memory_mib);
        let local = Local {
            cache_dir: s.cache_dir.clone(),
            accel: s.accel,
            cpus: s.vm_cpus,
            memory_mib: s.vm_memory_mib,
            slots,
            free: Arc::new(Semaphore::new(slots)),
            placement: Placement::this_host(),
        };
        // Only a number that was asked for is worth a word when it is lowered.
        (local, note.filter(|_| asked.is_some()))
    }
}

impl Executor for Local {
    fn engine(&self) -> &'static str {
        "local"
    }

    fn slots(&self) -> usize {
        self.slots
    }

    fn build<'a>(
        &'a self,
        req: &'a BuildRequest,
        on: &'a (dyn Fn(BuildEvent) + Send + Sync),
    ) -> BoxFuture<'a, Result<Built, BuildError>> {
        Box::pin(build::build(req, &self.cache_dir, on))
    }

    fn choose_accel<'a>(
        &'a self,
        artifact: &'a Artifact,
        image: &'a BaseImage,
        dir: &'a Path,
    ) -> BoxFuture<'a, (Accel, String)> {
        Box::pin(async move {
            let probe = run::probe_spec(artifact, image, self.cpus, self.memory_mib, dir);
            run::choose_accel(self.accel, artifact.manifest.arch, &probe).await
        })
    }

    fn run<'a>(&'a self, batch: Batch, on: OnOutcome<'a>) -> BoxFuture<'a, Vec<RunReport>> {
        Box::pin(self.run_batch(batch, on))
    }
}

impl Local {
    /// Every job as its own task, started in job order as slots free up (the semaphore is
    /// fair, so the order holds). Host groups need nothing here: every job runs on this host.
    async fn run_batch(&self, batch: Batch, on: OnOutcome<'_>) -> Vec<RunReport> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, TestOutcome)>();
        let mut handles = Vec::new();
        for (i, job) in batch.jobs.iter().cloned().enumerate() {
            let free = self.free.clone();
            let recorder = batch.recorder.clone();
            let placement = self.placement.clone();
            let tx = tx.clone();
            handles.push(tokio::spawn(async move {
                // The semaphore is never closed, so this cannot fail.
                let _slot = free.acquire_owned().await;
                let recorded = recorder.as_ref().map(|r| job.begin_record(r, &placement));
                let on_outcome = |o: &TestOutcome| {
                    if let (Some(r), Some(run)) = (&recorder, &recorded) {
                        r.add_outcome(run, o);
                    }
                    // The receiver lives until every task is joined.
                    let _ = tx.send((i, o.clone()));
                };
                let report = run::run(
                    &job.plan,
                    &job.accel_reason,
                    &job.reproduce,
                    &placement,
                    &on_outcome,
                )
                .await;
                if let (Some(r), Some(run)) = (&recorder, &recorded) {
                    r.finish_run(run, &report.manifest);
                }
                report
            }));
        }
        drop(tx);
        let forward = async {
            while let Some((i, o)) = rx.recv().await {
                on(i, &o);
            }
        };
        let collect = async {
            let mut results = Vec::new();
            for h in handles {
                results.push(h.await);
            }
            results
        };
        let ((), results) = tokio::join!(forward, collect);
        results
            .into_iter()
            .zip(&batch.jobs)
            .map(|(r, job)| match r {
                Ok(report) => report,
                Err(e) => run::lost(
                    &job.plan,
                    &job.accel_reason,
                    &job.reproduce,
                    &self.placement,
                    &format!("its task failed: {e}"),
                ),
            })
            .collect()
    }
}

/// How many VMs may run at once: what was asked, within the cores and the memory. The note,
/// when the ask was lowered, says why.
fn clamp_jobs(asked: usize, cpus_per_vm: u32, mem_per_vm: u32) -> (usize, Option<String>) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let avail_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(4096, |kb| kb / 1024);
    let by_mem = ((avail_mib * 3 / 4) / u64::from(mem_per_vm.max(1))).max(1) as usize;
    let by_cpu = (cores * 2 / cpus_per_vm.max(1) as usize).max(1);
    let jobs = asked.min(by_mem).min(by_cpu).max(1);
    let note = (jobs < asked).then(|| format!("--jobs {asked} lowered to {jobs}: {cores} cores, {avail_mib} MiB available, {cpus_per_vm} vCPUs and {mem_per_vm} MiB per guest"));
    (jobs, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_never_exceed_memory_or_cores() {
        let (j, note) = clamp_jobs(1000, 2, 512);
        assert!((1..1000).contains(&j));
        assert!(note.is_some());
        assert_eq!(clamp_jobs(1, 2, 512).0, 1);
    }

    #[test]
    fn only_an_asked_number_is_said_to_be_lowered() {
        let s = Settings::from_text(Path::new("/lab/lab.toml"), "").expect("defaults");
        let (local, note) = Local::new(&s, None);
        assert!(local.slots() >= 1);
        assert_eq!(note, None);
        let (local, note) = Local::new(&s, Some(10_000));
        assert!(local.slots() < 10_000);
        assert!(note.is_some_and(|n| n.contains("lowered")));
        assert_eq!(local.engine(), "local");
    }
}
