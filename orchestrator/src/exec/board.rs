//! The board executor: builds on this host, boots on one board (`[target.NAME]`,
//! `--target NAME`), one run after another. A board is one machine, so every host group
//! shares it and a batch's runs take turns, in job order: the A and B boots of a pair run
//! back to back on the same board, each behind its own install.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use super::{Batch, BoxFuture, Executor, OnOutcome, Placement};
use crate::arch::Accel;
use crate::config::{Settings, Target};
use crate::guest::image::BaseImage;
use crate::kernel::build::{self, BuildError, BuildEvent, BuildRequest, Built};
use crate::kernel::cache::Artifact;
use crate::results::TestOutcome;
use crate::run::{self, RunReport};

/// One board.
#[derive(Debug, Clone)]
pub struct Board {
    target: Target,
    cache_dir: PathBuf,
    /// One run at a time on the board, across batches too.
    busy: Arc<Mutex<()>>,
    placement: Placement,
}

impl Board {
    pub fn new(s: &Settings, target: Target) -> Board {
        let placement = Placement {
            engine: "board".into(),
            job: None,
            node: format!("{}@{}", target.name, target.host),
        };
        Board {
            target,
            cache_dir: s.cache_dir.clone(),
            busy: Arc::new(Mutex::new(())),
            placement,
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }
}

impl Executor for Board {
    fn engine(&self) -> &'static str {
        "board"
    }

    fn slots(&self) -> usize {
        1
    }

    fn guests_here(&self) -> bool {
        false
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
        _artifact: &'a Artifact,
        _image: &'a BaseImage,
        _dir: &'a Path,
    ) -> BoxFuture<'a, (Accel, String)> {
        let why = format!(
            "native: target {} ({}) runs the kernel itself",
            self.target.name, self.target.host
        );
        Box::pin(async move { (Accel::Native, why) })
    }

    fn run<'a>(&'a self, batch: Batch, on: OnOutcome<'a>) -> BoxFuture<'a, Vec<RunReport>> {
        Box::pin(async move {
            let _board = self.busy.lock().await;
            let mut reports = Vec::new();
            for (i, job) in batch.jobs.iter().enumerate() {
                let recorded = batch
                    .recorder
                    .as_ref()
                    .map(|r| job.begin_record(r, &self.placement));
                let on_outcome = |o: &TestOutcome| {
                    if let (Some(r), Some(run)) = (&batch.recorder, &recorded) {
                        r.add_outcome(run, o);
                    }
                    on(i, o);
                };
                let report = if crate::process::interrupted().is_some() {
                    run::lost(
                        &job.plan,
                        &job.accel_reason,
                        &job.reproduce,
                        &self.placement,
                        "lab was interrupted",
                    )
                } else {
                    run::run_on_board(
                        &job.plan,
                        &self.target,
                        &job.accel_reason,
                        &job.reproduce,
                        &self.placement,
                        &on_outcome,
                    )
                    .await
                };
                if let (Some(r), Some(run)) = (&batch.recorder, &recorded) {
                    r.finish_run(run, &report.manifest);
                }
                reports.push(report);
            }
            reports
        })
    }
}
