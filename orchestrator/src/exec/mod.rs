//! Where builds and boots happen.
//!
//! `compare`, `bisect`, `gate`, `run` and `selftest` decide *what* to build and run; an
//! [`Executor`] decides *where*. The verbs hand it build requests and batches of runs and
//! only talk to it, so the same controller drives this host ([`Local`]) or, behind the same
//! trait, a cluster. The statistics stay with the controller: an executor runs a batch and
//! gives back its reports; only the controller looks at them and decides, at batch
//! boundaries.
//!
//! The contract every executor keeps:
//! - **Reports come back in job order**, one per job, whatever order the runs finished in,
//!   so the controller sees a batch the same way on every engine.
//! - **A run lost to the engine is an infra-error** ([`crate::run::lost`]): every test
//!   iteration of it says why, and none counts against a kernel.
//! - **Runs of one host group run on one host** ([`RunJob::host_group`]): the A and B
//!   boots of an ABBA pair share a host, so host differences cancel within the pair.
//! - **Only the controller writes the results store.** The executor records through the
//!   [`Recorder`] it is handed, in this process, with each run's [`Placement`]; an engine
//!   whose runs happen elsewhere ingests their run directories and records them here.
//! - **Nothing it starts outlives it**: guests and builds run in their own process groups
//!   and are killed on every exit path (see `crate::process`).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use crate::arch::Accel;
use crate::guest::image::BaseImage;
use crate::kernel::build::{BuildError, BuildEvent, BuildRequest, Built};
use crate::kernel::cache::Artifact;
pub use crate::results::manifest::Placement;
use crate::results::store::{RecordedRun, Recorder};
use crate::results::TestOutcome;
use crate::run::{RunPlan, RunReport};

mod board;
pub mod lava;
mod local;
pub mod slurm;
pub mod worker;
pub use board::Board;
pub use local::Local;
pub use slurm::Slurm;

/// Why an engine could not be used or reached.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the engine cannot find this lab binary to run on its nodes; set engine.slurm-lab")]
    NoBinary {
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} failed: {why}")]
    Client { tool: &'static str, why: String },
    #[error("the slurm partition {partition:?} has no nodes (engine.slurm-run-partition)")]
    NoNodes { partition: String },
    #[error("{}: a path with a quote or a newline cannot be handed to a job's shell", path.display())]
    OddPath { path: std::path::PathBuf },
    #[error("cannot write {}", path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the job file {}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the job file {} is not one this lab reads ({why}); the controller and the nodes must run the same lab", path.display())]
    JobFile {
        path: std::path::PathBuf,
        why: String,
    },
}

/// A boxed future that can cross threads: what the trait's methods return, so that an
/// executor can be chosen at run time (`&dyn Executor`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Called with a job's index in its batch and each outcome as it is known.
pub type OnOutcome<'a> = &'a (dyn Fn(usize, &TestOutcome) + Send + Sync);

/// What the store says a run belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunTag {
    pub session: Option<i64>,
    /// `A` or `B` in a comparison.
    pub side: Option<&'static str>,
    pub batch: Option<u32>,
}

/// One boot to make: the plan, and what the report and the store should say about it.
#[derive(Debug, Clone)]
pub struct RunJob {
    pub plan: RunPlan,
    /// Jobs with the same group run on one host.
    pub host_group: usize,
    /// Why the plan's accelerator was chosen, for the manifest.
    pub accel_reason: String,
    /// The command line that repeats the verb, for the manifest.
    pub reproduce: String,
    pub tag: RunTag,
}

impl RunJob {
    /// A job in host group 0, recorded with no session. Jobs of one batch that need not
    /// share a host get host groups of their own.
    pub fn new(plan: RunPlan, accel_reason: &str, reproduce: &str) -> RunJob {
        RunJob {
            plan,
            host_group: 0,
            accel_reason: accel_reason.to_owned(),
            reproduce: reproduce.to_owned(),
            tag: RunTag::default(),
        }
    }

    /// Records the run in `recorder` as it starts at `placement`.
    pub fn begin_record(&self, recorder: &Recorder, placement: &Placement) -> RecordedRun {
        self.plan.begin_record(
            recorder,
            self.tag.session,
            self.tag.side,
            self.tag.batch,
            placement,
        )
    }
}

/// A batch of runs, and the store they go to.
#[derive(Debug, Default)]
pub struct Batch {
    pub jobs: Vec<RunJob>,
    /// Where each run and outcome is recorded as it is known; `None`: only in the run
    /// directories.
    pub recorder: Option<Arc<Recorder>>,
}

/// Where builds and boots happen. See the module's contract.
pub trait Executor: Send + Sync {
    /// The engine's name, as runs record it: `local`, `slurm`, ...
    fn engine(&self) -> &'static str;

    /// How many guests it boots at once: the controller sizes its batches by this.
    fn slots(&self) -> usize;

    /// Whether its guests run on this host, where lab can see what else loads the CPUs
    /// (compare's contention check). A cluster's nodes are not watched from here.
    fn guests_here(&self) -> bool;

    /// The kernel of `req`, from the artifact store or built.
    fn build<'a>(
        &'a self,
        req: &'a BuildRequest,
        on: &'a (dyn Fn(BuildEvent) + Send + Sync),
    ) -> BoxFuture<'a, Result<Built, BuildError>>;

    /// The accelerator its guests of `artifact`'s arch get, and why; `dir` is where a probe
    /// boot may leave its files.
    fn choose_accel<'a>(
        &'a self,
        artifact: &'a Artifact,
        image: &'a BaseImage,
        dir: &'a Path,
    ) -> BoxFuture<'a, (Accel, String)>;

    /// Runs every job of `batch`, records them, calls `on` with each outcome as it is known,
    /// and returns one report per job, in job order.
    fn run<'a>(&'a self, batch: Batch, on: OnOutcome<'a>) -> BoxFuture<'a, Vec<RunReport>>;
}

/// Runs one job and returns its report: a batch of one.
pub async fn run_one(
    exec: &dyn Executor,
    job: RunJob,
    recorder: Option<Arc<Recorder>>,
    on: &(dyn Fn(&TestOutcome) + Send + Sync),
) -> RunReport {
    let plan = job.plan.clone();
    let (reason, reproduce) = (job.accel_reason.clone(), job.reproduce.clone());
    let batch = Batch {
        jobs: vec![job],
        recorder,
    };
    let on = |_: usize, o: &TestOutcome| on(o);
    let mut reports = exec.run(batch, &on).await;
    match reports.pop() {
        Some(r) => r,
        // An executor that returns nothing for a job broke the contract; the run is lost.
        None => crate::run::lost(
            &plan,
            &reason,
            &reproduce,
            &Placement::unplaced(exec.engine()),
            "the executor returned no report",
        ),
    }
}
