//! One boot's value of a metric, as every compare question and the calibration read it:
//! the quantile of the boot's merged histogram, interpolated within its bucket, or the
//! geometric mean of its runs' values; and the suite histogram's resolution.

use lab_proto::Histogram;

use super::analysis::counted;
use super::model::metric_meta;
use crate::results::TestOutcome;

/// One boot's value of a metric: for a quantile (`*_p50`, `*_p99`, `*_p90`) of a test that
/// keeps the histogram behind it, that quantile of the boot's runs' merged histogram, in the
/// metric's unit; otherwise the geometric mean of the runs' values. `None` when no counted
/// run reported it.
pub(crate) fn boot_value(test: &str, name: &str, outcomes: &[TestOutcome]) -> Option<f64> {
    let runs: Vec<&TestOutcome> = counted(outcomes, test).collect();
    if let (Some(hist), Some(q)) = (histogram_for(name), quantile_of(name)) {
        let mut merged = Histogram::default();
        for r in runs
            .iter()
            .filter_map(|o| o.result.as_ref()?.histograms.get(&hist))
        {
            merged.merge(r);
        }
        if let Some(ns) = interpolated_quantile(&merged, q) {
            let (_, unit) = metric_meta(name);
            return Some(ns / ns_per(unit)).filter(|v| *v > 0.0);
        }
    }
    let logs: Vec<f64> = runs
        .iter()
        .filter_map(|o| o.result.as_ref()?.metrics.get(name).copied())
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(f64::ln)
        .collect();
    (!logs.is_empty()).then(|| (logs.iter().sum::<f64>() / logs.len() as f64).exp())
}

/// Relative width of the guest suite's histogram buckets: 16 per power of two.
pub(crate) const HISTOGRAM_RESOLUTION: f64 = 1.0 / 16.0;

/// The quantile a metric name asks for: `_p50` → 0.5.
fn quantile_of(name: &str) -> Option<f64> {
    let digits = name.rsplit_once("_p")?.1;
    let p: u32 = digits.parse().ok()?;
    (1..100).contains(&p).then(|| f64::from(p) / 100.0)
}

/// Nanoseconds per unit of a latency metric.
fn ns_per(unit: &str) -> f64 {
    match unit {
        "ms" => 1e6,
        "us" => 1e3,
        _ => 1.0,
    }
}

/// The width of the suite histogram's bucket holding `bound`: 16 linear sub-buckets per
/// power of two (`lab_proto::Histogram`), so 1 below 16.
fn bucket_width(bound: u64) -> u64 {
    if bound < 16 {
        1
    } else {
        1 << (63 - bound.leading_zeros() - 4)
    }
}

/// The relative resolution of a histogram value `v` in `unit`: its bucket's width over its
/// bound.
pub(crate) fn bucket_resolution(v: f64, unit: &str) -> Option<f64> {
    let ns = (v * ns_per(unit)).round();
    (ns >= 1.0).then(|| {
        let b = ns as u64;
        bucket_width(b) as f64 / b as f64
    })
}

/// The value at quantile `q` of a histogram, interpolated linearly within its bucket (the
/// bucket bound alone would tie every value of a bucket, up to 6 % apart), clamped to the
/// observed min and max.
fn interpolated_quantile(h: &Histogram, q: f64) -> Option<f64> {
    if h.count == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * h.count as f64;
    let mut seen = 0.0;
    for &(bound, c) in &h.buckets {
        let c = c as f64;
        if seen + c >= rank {
            let within = if c > 0.0 { (rank - seen) / c } else { 0.0 };
            let v = bound as f64 + within * bucket_width(bound) as f64;
            return Some(v.clamp(h.min as f64, h.max as f64));
        }
        seen += c;
    }
    Some(h.max as f64)
}

/// The histogram that goes with a metric: `wake_ns_p99` → `wake_ns`, `round_ms_p50` →
/// `round_ns` (the suite keeps histograms in ns).
pub(crate) fn histogram_for(metric: &str) -> Option<String> {
    let stem = metric
        .trim_end_matches("_p50")
        .trim_end_matches("_p99")
        .trim_end_matches("_p90");
    if stem.ends_with("_ns") {
        Some(stem.to_owned())
    } else {
        stem.strip_suffix("_ms").map(|s| format!("{s}_ns"))
    }
}
