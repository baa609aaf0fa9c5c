//! Calibration: how much a metric varies between boots and between runs of one boot, per
//! test, metric and arch, measured from a comparison's stored runs (an A/A comparison,
//! `lab calibrate`), and what that predicts for a comparison's design.
//!
//! For each side separately (so a comparison of two different kernels calibrates too), the
//! runs of one boot are one cluster. On the log scale, with r̄ runs per boot:
//! - within-boot variance σ²_w: the pooled variance of the runs around their boot's mean;
//! - between-boot variance σ²_b = var(boot means) − σ²_w / r̄ (one-way ANOVA, floored at 0);
//! - the unit compare decides from is the pair of boot values, so the variance of a pair's
//!   log ratio is taken directly: 2 · var(boot values), the boot value computed exactly as
//!   compare computes it.
//!
//! Predictions, as for a fixed design (the sequential one needs a few % more):
//! pairs to show a difference of the margin δ = ln(1 + m) at level α/q (q questions) with
//! the configured power, (z_{1−α/2q} + z_power)² · var_pair / δ², and to show no difference
//! when there is none, (z_{1−α_eq} + z_{(1+power)/2})² · var_pair / δ². The runs per boot
//! that minimise the variance of a boot value per second of wall time are
//! r* = √(c_boot · σ²_w / (c_run · σ²_b)) (the classic optimal cluster size; Cochran,
//! Sampling Techniques, 3rd ed., §10.6), with c_boot the boot's own cost and c_run a run's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::results::TestOutcome;
use crate::stats::sample_variance;
use crate::stats::special::normal_quantile;

use super::analysis::counted;
use super::boot_value::boot_value;

/// Calibration of one metric of one test on one arch.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MetricCalibration {
    pub test: String,
    pub metric: String,
    pub boots: u64,
    pub runs_per_boot: f64,
    /// Standard deviations on the log scale (≈ relative spread).
    pub sd_between_boots: f64,
    pub sd_within_boot: f64,
    /// Share of a run's variance that is between boots.
    pub icc: f64,
    /// Variance of one pair's log ratio, as compare sees it.
    pub var_pair: f64,
    /// Runs per boot that give the most information per second of wall time.
    pub best_runs_per_boot: u64,
}

/// Everything one calibration measured on one arch.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Calibration {
    pub arch: Arch,
    pub kernel_key: String,
    pub session: i64,
    pub created_at: String,
    /// Seconds a boot costs beyond its runs, and one run, on average.
    pub boot_s: f64,
    pub run_s: f64,
    pub metrics: Vec<MetricCalibration>,
}

impl Calibration {
    /// Where the calibration of `kernel_key` on `arch` is kept.
    pub fn path(cache_dir: &Path, arch: Arch, kernel_key: &str) -> PathBuf {
        cache_dir
            .join("calibration")
            .join(format!("{}-{}.json", arch.name(), kernel_key))
    }

    pub fn load(cache_dir: &Path, arch: Arch, kernel_key: &str) -> Option<Calibration> {
        let text = std::fs::read_to_string(Self::path(cache_dir, arch, kernel_key)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes it atomically (a temporary file renamed into place).
    pub fn save(&self, cache_dir: &Path) -> std::io::Result<PathBuf> {
        let path = Self::path(cache_dir, self.arch, &self.kernel_key);
        let dir = path.parent().unwrap_or(cache_dir);
        std::fs::create_dir_all(dir)?;
        let tmp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer_pretty(&tmp, self)?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(path)
    }
}

/// Pairs a fixed design needs for one metric: (to show a difference of the margin, to show
/// no difference when there is none).
pub fn predicted_pairs(
    m: &MetricCalibration,
    margin: f64,
    alpha_per_question: f64,
    alpha_equivalence: f64,
    power: f64,
) -> (u64, u64) {
    let delta = margin.ln_1p();
    let zd = normal_quantile(1.0 - alpha_per_question / 2.0) + normal_quantile(power);
    let ze = normal_quantile(1.0 - alpha_equivalence) + normal_quantile(0.5 + power / 2.0);
    let n = |z: f64| (z * z * m.var_pair / (delta * delta)).ceil().max(2.0) as u64;
    (n(zd), n(ze))
}

/// One boot: its outcomes and its wall time.
#[derive(Debug, Clone)]
pub struct Boot {
    pub outcomes: Vec<TestOutcome>,
    pub wall_s: f64,
}

/// Calibrates every metric named in `metrics` (by suffix) from `boots` of one side group
/// (the caller passes each side's boots as separate groups, so that a real difference
/// between two kernels is never taken for spread).
pub fn calibrate(
    groups: &[Vec<Boot>],
    tests: &[String],
    suffixes: &[String],
) -> (Vec<MetricCalibration>, f64, f64) {
    let mut out = Vec::new();
    // Costs: a run's time from the outcomes, the rest of a boot's wall time is the boot's.
    let (mut run_total, mut runs, mut boot_total, mut boots_n) = (0.0, 0u64, 0.0, 0u64);
    for b in groups.iter().flatten() {
        let run_s: f64 = b
            .outcomes
            .iter()
            .map(|o| o.duration_ms as f64 / 1000.0)
            .sum();
        run_total += run_s;
        runs += b.outcomes.len() as u64;
        boot_total += (b.wall_s - run_s).max(0.0);
        boots_n += 1;
    }
    let run_s = if runs > 0 {
        run_total / runs as f64
    } else {
        0.0
    };
    let boot_s = if boots_n > 0 {
        boot_total / boots_n as f64
    } else {
        0.0
    };
    for test in tests {
        let mut names: Vec<String> = groups
            .iter()
            .flatten()
            .flat_map(|b| b.outcomes.iter())
            .filter(|o| &o.test == test)
            .filter_map(|o| o.result.as_ref())
            .flat_map(|r| r.metrics.keys().cloned())
            .filter(|n| suffixes.iter().any(|s| n.ends_with(s)))
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            if let Some(c) = one_metric(groups, test, &name, run_s, boot_s) {
                out.push(c);
            }
        }
    }
    (out, boot_s, run_s)
}

fn one_metric(
    groups: &[Vec<Boot>],
    test: &str,
    name: &str,
    run_s: f64,
    boot_s: f64,
) -> Option<MetricCalibration> {
    // Per group: per boot, the runs' log values and the boot value.
    let mut within_ss = 0.0;
    let mut within_df = 0.0;
    let mut means_var_sum = 0.0;
    let mut means_df = 0.0;
    let mut boot_var_sum = 0.0;
    let mut run_counts = Vec::new();
    let mut boots = 0u64;
    for group in groups {
        let mut means = Vec::new();
        let mut values = Vec::new();
        for b in group {
            let logs: Vec<f64> = counted(&b.outcomes, test)
                .filter_map(|o| o.result.as_ref()?.metrics.get(name).copied())
                .filter(|v| v.is_finite() && *v > 0.0)
                .map(f64::ln)
                .collect();
            if logs.is_empty() {
                continue;
            }
            let mean = logs.iter().sum::<f64>() / logs.len() as f64;
            within_ss += logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
            within_df += (logs.len() - 1) as f64;
            run_counts.push(logs.len() as f64);
            means.push(mean);
            if let Some(v) = boot_value(test, name, &b.outcomes) {
                values.push(v.ln());
            }
        }
        boots += means.len() as u64;
        if means.len() >= 2 {
            means_var_sum += sample_variance(&means) * (means.len() - 1) as f64;
            means_df += (means.len() - 1) as f64;
        }
        if values.len() >= 2 {
            boot_var_sum += sample_variance(&values) * (values.len() - 1) as f64;
        }
    }
    if means_df < 1.0 {
        return None;
    }
    let r = run_counts.iter().sum::<f64>() / run_counts.len() as f64;
    let var_w = if within_df > 0.0 {
        within_ss / within_df
    } else {
        0.0
    };
    let var_means = means_var_sum / means_df;
    let var_b = (var_means - var_w / r).max(0.0);
    let var_boot_value = boot_var_sum / means_df;
    let icc = if var_b + var_w > 0.0 {
        var_b / (var_b + var_w)
    } else {
        0.0
    };
    let best = if var_b > 0.0 && run_s > 0.0 {
        ((boot_s * var_w) / (run_s * var_b))
            .sqrt()
            .round()
            .clamp(1.0, 20.0) as u64
    } else {
        20
    };
    Some(MetricCalibration {
        test: test.to_owned(),
        metric: name.to_owned(),
        boots,
        runs_per_boot: r,
        sd_between_boots: var_b.sqrt(),
        sd_within_boot: var_w.sqrt(),
        icc,
        var_pair: 2.0 * var_boot_value,
        best_runs_per_boot: best,
    })
}

/// Groups a session's stored outcomes into boots per (arch, side), in batch order.
pub fn boots_of(
    rows: Vec<(Arch, String, u32, TestOutcome)>,
    walls: &BTreeMap<(Arch, String, u32), f64>,
) -> BTreeMap<Arch, Vec<Vec<Boot>>> {
    let mut by: BTreeMap<(Arch, String), BTreeMap<u32, Vec<TestOutcome>>> = BTreeMap::new();
    for (arch, side, batch, o) in rows {
        by.entry((arch, side))
            .or_default()
            .entry(batch)
            .or_default()
            .push(o);
    }
    let mut out: BTreeMap<Arch, Vec<Vec<Boot>>> = BTreeMap::new();
    for ((arch, side), batches) in by {
        let boots = batches
            .into_iter()
            .map(|(batch, outcomes)| Boot {
                wall_s: walls
                    .get(&(arch, side.clone(), batch))
                    .copied()
                    .unwrap_or(0.0),
                outcomes,
            })
            .collect();
        out.entry(arch).or_default().push(boots);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::OutcomeKind;
    use lab_proto::TestResult;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn normal(rng: &mut StdRng) -> f64 {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Simulated boots with known variance components come back out of the estimator.
    #[test]
    fn variance_components_are_recovered() {
        let mut rng = StdRng::seed_from_u64(1);
        let (sb, sw) = (0.2, 0.1);
        let group = |rng: &mut StdRng| -> Vec<Boot> {
            (0..200)
                .map(|_| {
                    let b = sb * normal(rng);
                    let outcomes = (0..4)
                        .map(|i| {
                            let mut o = TestOutcome::infra("t", Arch::X86_64, i, 0, String::new());
                            o.kind = OutcomeKind::Pass;
                            o.duration_ms = 500;
                            let mut r = TestResult::new("t", 0);
                            r.metrics
                                .insert("x_per_s".into(), (5.0 + b + sw * normal(rng)).exp());
                            o.result = Some(r);
                            o
                        })
                        .collect();
                    Boot {
                        outcomes,
                        wall_s: 12.0,
                    }
                })
                .collect()
        };
        let groups = vec![group(&mut rng), group(&mut rng)];
        let (ms, boot_s, run_s) = calibrate(&groups, &["t".into()], &["_per_s".into()]);
        assert!((run_s - 0.5).abs() < 1e-9 && (boot_s - 10.0).abs() < 1e-9);
        let m = &ms[0];
        assert!((m.sd_between_boots - sb).abs() < 0.03, "{m:?}");
        assert!((m.sd_within_boot - sw).abs() < 0.01, "{m:?}");
        assert!((m.icc - 0.8).abs() < 0.06, "{m:?}");
        // A boot value is the geometric mean of 4 runs: var = σ²_b + σ²_w/4 = 0.0425.
        assert!((m.var_pair - 2.0 * 0.0425).abs() < 0.02, "{m:?}");
        // r* = √(10 · 0.01 / (0.5 · 0.04)) = √5 ≈ 2.
        assert_eq!(m.best_runs_per_boot, 2);
        // Pairs for a 10 % margin at α 0.05/4 with 80 % power: (2.50 + 0.84)² · 0.085 /
        // ln(1.1)² ≈ 104.
        let (diff, _) = predicted_pairs(m, 0.10, 0.05 / 4.0, 0.05, 0.8);
        assert!((80..130).contains(&diff), "{diff}");
    }
}
