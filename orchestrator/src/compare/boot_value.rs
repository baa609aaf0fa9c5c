//! One boot's value of a metric, as every compare question and the calibration read it:
//! the quantile of the boot's merged histogram, interpolated within its bucket, or the
//! geometric mean of its runs' values; and how finely the histograms resolve it.

use lab_proto::{Histogram, LEGACY_SUB_BITS};

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

/// The relative resolution of a boot's value of `name`: for a metric read from the suite's
/// histograms, the coarsest bucket width over bound among its runs' histograms (1/128 as the
/// suite writes them today, 1/16 for results of older guests, and for runs that kept no
/// histogram); 0 for other metrics, which are not rounded.
pub(crate) fn boot_resolution(test: &str, name: &str, outcomes: &[TestOutcome]) -> f64 {
    let Some(hist) = histogram_for(name) else {
        return 0.0;
    };
    counted(outcomes, test)
        .filter_map(|o| o.result.as_ref())
        .filter(|r| r.metrics.contains_key(name) || r.histograms.contains_key(&hist))
        .map(|r| {
            r.histograms
                .get(&hist)
                .map_or((-f64::from(LEGACY_SUB_BITS)).exp2(), Histogram::resolution)
        })
        .fold(0.0, f64::max)
}

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

/// The value at quantile `q` of a histogram, interpolated linearly within its bucket (the
/// bucket bound alone would tie every value of a bucket), clamped to the
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
            let v = bound as f64 + within * h.bucket_width(bound) as f64;
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
