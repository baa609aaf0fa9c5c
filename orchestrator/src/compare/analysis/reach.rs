//! Whether a question can still end "no difference" within the design's horizon: the check
//! that names a test too slow for its budget after the first batch, instead of leaving it
//! to an "inconclusive" at the end.

use crate::arch::Arch;
use crate::stats::{Counts, Decision};

use super::super::model::QuestionKind;
use super::{Analysis, BatchData, Monitor};

/// A failure-rate question that cannot end "no difference" within the design's horizon,
/// even if every boot still to come passes ([`Analysis::out_of_reach`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfReach {
    pub arch: Arch,
    pub test: String,
    /// The horizon: boots per side the budget allows at the first batch's pace.
    pub horizon: u64,
    /// Roughly how many boots per side "no difference" would take in all.
    pub boots_needed: Option<u64>,
}

impl Analysis {
    /// The open failure-rate questions, with no failing boot yet, that cannot end "no
    /// difference" within the horizon even if every boot still to come passes on both sides: a
    /// test too slow (or a budget too short) for that answer. A regression can still be found
    /// in them. Each comes with a rough figure of the boots per side it would need in all, from
    /// the monitor's own fixed-sample estimate at the horizon (`None`: no estimate). Asked once
    /// the horizon is set; the real monitors are not touched (each is cloned and fed imagined
    /// passes).
    pub fn out_of_reach(&self) -> Vec<OutOfReach> {
        let horizon = self.params.max_runs_per_side;
        let mut out = Vec::new();
        for q in &self.questions {
            let (QuestionKind::FailureRate, Some(Monitor::Rate(m))) = (&q.kind, &q.monitor) else {
                continue;
            };
            // Only a question with no failing boot yet: where one side already failed, "no
            // difference" is not what the budget stands between.
            let failed = q.batches.iter().any(|d| {
                matches!(d, BatchData::Rate { boots } if boots.0.failures + boots.1.failures > 0)
            });
            if !q.is_open() || self.gated(q) || failed {
                continue;
            }
            // A boot of the imagined future: as many runs as this test's last boot had.
            let runs = q
                .batches
                .iter()
                .rev()
                .find_map(|d| match d {
                    BatchData::Rate { boots } if boots.0.runs > 0 => Some(boots.0.runs),
                    _ => None,
                })
                .unwrap_or(1);
            let mut m = m.clone();
            let pass = [Counts::new(runs, 0)];
            let mut needed = None;
            let mut reached = false;
            for _ in q.batches.len()..horizon as usize {
                match m.observe_clusters(&pass, &pass) {
                    Ok(Decision::Continue) => continue,
                    Ok(Decision::Equivalent { .. }) => {
                        reached = true;
                        break;
                    }
                    Ok(Decision::Inconclusive {
                        more_runs_estimate, ..
                    }) => {
                        needed = (more_runs_estimate != u64::MAX)
                            .then(|| horizon.saturating_add(more_runs_estimate));
                        break;
                    }
                    // A pass-only future cannot make B worse; any other answer (or an
                    // error) says nothing about reach.
                    Ok(Decision::Different { .. }) | Err(_) => {
                        reached = true;
                        break;
                    }
                }
            }
            if !reached {
                out.push(OutOfReach {
                    arch: q.arch,
                    test: q.test.clone(),
                    horizon,
                    boots_needed: needed,
                });
            }
        }
        out
    }
}
