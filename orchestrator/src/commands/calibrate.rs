//! `lab calibrate [KERNEL]`: an A/A comparison of one kernel against itself (or a stored
//! comparison session, `--session`), and from its runs, per test, metric and arch, how much
//! a value varies between boots and within a boot ([`crate::compare::calibration`]). The
//! result is kept in the cache, where `lab compare` finds it for the same kernel and says
//! what it predicts.

use std::collections::BTreeMap;

use super::progress::SessionProgress;
use super::Context;
use crate::cli::CalibrateArgs;
use crate::compare::calibration::{boots_of, calibrate, predicted_pairs, Calibration};
use crate::compare::session::{self, CompareRequest, NamedSide};
use crate::errors::{LabError, Outcome};
use crate::results::store::{now_rfc3339, Store};

pub async fn run(ctx: &Context, args: &CalibrateArgs) -> Result<Outcome, LabError> {
    let s = &ctx.settings;
    let session = match args.session {
        Some(id) => id,
        None => {
            let side = NamedSide::parse(&args.kernel, s)?;
            let seed = args.seed.or_now();
            let reproduce = std::env::args().collect::<Vec<_>>().join(" ");
            let mut req = CompareRequest::new(s, side.clone(), side, seed, reproduce);
            req.arches = args.arch.resolve(&s.arches);
            if !args.tests.tests.is_empty() {
                req.tests = Some(args.tests.tests.clone());
            }
            req.budget = args.budget.unwrap_or(req.budget);
            req.fresh = true;
            let exec = super::executor(ctx, None)?;
            let progress = SessionProgress::new(ctx.quiet);
            let on = |e| progress.event(e);
            let ran = session::run(s, &*exec, &req, &on).await;
            drop(progress);
            let Some((report, _)) = ran? else {
                return Err(LabError::Interrupted);
            };
            report.session
        }
    };
    let path = s.store.clone();
    let store = Store::open(&path)?;
    let rows = store.session_outcomes(session)?;
    let runs = store.session_runs(session)?;
    if rows.is_empty() {
        return Err(LabError::usage(
            "--session",
            format!(
                "session {session} has no runs of a comparison in {}",
                path.display()
            ),
        ));
    }
    // Each boot's wall time, from its run record.
    let secs = |t: &str| t.parse::<jiff::Timestamp>().ok().map(|t| t.as_second());
    let mut walls = BTreeMap::new();
    let mut keys = BTreeMap::new();
    for r in &runs {
        let (Ok(arch), Some(side), Some(batch)) = (r.arch.parse(), r.side.clone(), r.batch) else {
            continue;
        };
        if let (Some(a), Some(b)) = (secs(&r.started_at), r.finished_at.as_deref().and_then(secs)) {
            walls.insert((arch, side.clone(), batch), (b - a) as f64);
        }
        if side == "A" {
            keys.insert(arch, r.kernel_key.clone());
        }
    }
    let tests: Vec<String> = {
        let mut t: Vec<String> = rows.iter().map(|(_, _, _, o)| o.test.clone()).collect();
        t.sort();
        t.dedup();
        t
    };
    let c = &s.compare;
    let questions = rows
        .iter()
        .map(|(a, _, _, o)| (*a, o.test.clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        .max(1);
    for (arch, groups) in boots_of(rows, &walls) {
        let (metrics, boot_s, run_s) = calibrate(&groups, &tests, &c.metrics);
        let cal = Calibration {
            arch,
            kernel_key: keys.get(&arch).cloned().unwrap_or_default(),
            session,
            created_at: now_rfc3339(),
            boot_s,
            run_s,
            metrics,
        };
        let target = Calibration::path(&s.cache_dir, arch, &cal.kernel_key);
        let saved = cal
            .save(&s.cache_dir)
            .map_err(crate::io_error::io("write the calibration", &target))?;
        crate::outln!(
            "{arch}: a boot costs {boot_s:.1}s beyond its runs, a run {run_s:.2}s; kept in {}",
            saved.display()
        );
        crate::outln!(
            "  {:<22} {:<20} {:>5} {:>8} {:>8} {:>5} {:>8} {:>9} {:>9}",
            "TEST",
            "METRIC",
            "BOOTS",
            "SD BOOT",
            "SD RUN",
            "ICC",
            "BEST R",
            "DIFF N",
            "EQUIV N"
        );
        // A fixed design's pairs at the compare margin, with α shared over the questions
        // (failure rates and metrics) as a first look would share it.
        let alpha_q = c.alpha / (questions * 2) as f64;
        for m in &cal.metrics {
            let (diff, equiv) = predicted_pairs(m, c.margin_metric, alpha_q, c.alpha, 0.8);
            crate::outln!(
                "  {:<22} {:<20} {:>5} {:>7.1}% {:>7.1}% {:>5.2} {:>8} {:>9} {:>9}",
                m.test,
                m.metric,
                m.boots,
                m.sd_between_boots * 100.0,
                m.sd_within_boot * 100.0,
                m.icc,
                m.best_runs_per_boot,
                diff,
                equiv
            );
        }
    }
    crate::outln!(
        "DIFF N, EQUIV N: pairs of boots a fixed design needs to show a {}% shift, or no shift \
         beyond it; BEST R: runs per boot that buy the most per second.",
        c.margin_metric * 100.0
    );
    Ok(Outcome::Pass)
}
