//! The protocol between lab's guest programs and the orchestrator, shared as types by both.
//!
//! Two channels carry it:
//! - **console markers**, printed by the guest's PID 1 on the serial console, one per line,
//!   such as `LAB/1 READY uptime_ms=812`. The host parses them live to time the boot.
//! - **result lines**, printed by each guest test on stdout: one JSON object per line with
//!   `"proto": 1`. Anything else a test prints is free text and is kept as evidence.
//!
//! Both carry [`VERSION`]; a reader rejects a version it does not know instead of guessing.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Version of both the console markers and the result lines.
pub const VERSION: u32 = 1;

/// Every console marker starts with this, followed by the version and a space.
pub const MARKER_PREFIX: &str = "LAB/";

/// A line the guest's PID 1 prints on the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// PID 1 started; the kernel booted as far as user space.
    Init { uptime_ms: u64 },
    /// Network and SSH server are up: the guest accepts work.
    Ready { uptime_ms: u64 },
    /// PID 1 was asked to power off and is about to.
    Poweroff,
    /// PID 1 hit an error it cannot recover from; the text says which step.
    Fatal { message: String },
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{MARKER_PREFIX}{VERSION} ")?;
        match self {
            Marker::Init { uptime_ms } => write!(f, "INIT uptime_ms={uptime_ms}"),
            Marker::Ready { uptime_ms } => write!(f, "READY uptime_ms={uptime_ms}"),
            Marker::Poweroff => write!(f, "POWEROFF"),
            Marker::Fatal { message } => write!(f, "FATAL {message}"),
        }
    }
}

/// Why a console line that starts like a marker is not one this reader understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerError {
    Version(String),
    Unknown(String),
}

impl fmt::Display for MarkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MarkerError::Version(v) => write!(
                f,
                "guest speaks console protocol version {v}, this lab speaks {VERSION}: rebuild the guest image"
            ),
            MarkerError::Unknown(l) => write!(f, "unknown console marker {l:?}"),
        }
    }
}

impl std::error::Error for MarkerError {}

impl Marker {
    /// Parses one console line. `None` when the line is not a marker at all; the marker may sit
    /// anywhere in the line, because kernel messages can interleave with user-space output.
    pub fn parse(line: &str) -> Option<Result<Marker, MarkerError>> {
        let at = line.find(MARKER_PREFIX)?;
        let rest = &line[at + MARKER_PREFIX.len()..];
        let (version, body) = rest.split_once(' ')?;
        if version != VERSION.to_string() {
            return Some(Err(MarkerError::Version(version.to_owned())));
        }
        let body = body.trim_end();
        let (word, args) = body.split_once(' ').unwrap_or((body, ""));
        let uptime = || {
            args.strip_prefix("uptime_ms=")
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let marker = match word {
            "INIT" => uptime().map(|uptime_ms| Marker::Init { uptime_ms }),
            "READY" => uptime().map(|uptime_ms| Marker::Ready { uptime_ms }),
            "POWEROFF" => Some(Marker::Poweroff),
            "FATAL" => Some(Marker::Fatal {
                message: args.to_owned(),
            }),
            _ => None,
        };
        Some(marker.ok_or_else(|| MarkerError::Unknown(body.to_owned())))
    }
}

/// What a guest test concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    /// The test saw the kernel misbehave; `summary` and the counters say how.
    Fail,
    /// The test's own watchdog fired: something that should have woken never did.
    Hang,
    /// The test could not run here (missing privilege, missing kernel feature). Never a pass.
    Skip,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Hang => "hang",
            Verdict::Skip => "skip",
        })
    }
}

/// One result line, printed by a guest test when it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestResult {
    /// Always [`VERSION`] when written; checked when read.
    pub proto: u32,
    pub test: String,
    pub verdict: Verdict,
    /// One line of evidence: what was seen, with numbers.
    pub summary: String,
    /// Event counts: waits, wakeups, timeouts, signals, lost wakeups...
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// The first errno the test considered impossible, if any (512 is ERESTARTSYS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_bad_errno: Option<i32>,
    /// Scalar metrics, such as throughput in operations per second.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Latency distributions by name, in nanoseconds.
    #[serde(default)]
    pub histograms: BTreeMap<String, Histogram>,
    pub duration_ms: u64,
    pub seed: u64,
    /// How many measured operations the metrics rest on (wake-ups timed, rounds, hops); 0
    /// when not reported, as in results written before this field existed.
    #[serde(default)]
    pub samples: u64,
    /// When the workload started and when the result was written, on the guest's
    /// CLOCK_MONOTONIC in ns: the clock the console's printk timestamps follow, so a splat
    /// can be placed inside or outside a run. 0 when not reported.
    #[serde(default)]
    pub start_mono_ns: u64,
    #[serde(default)]
    pub end_mono_ns: u64,
}

/// Why a result line could not be read.
#[derive(Debug)]
pub enum ResultError {
    Json(serde_json::Error),
    Version(u32),
}

impl fmt::Display for ResultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResultError::Json(e) => write!(f, "malformed result line: {e}"),
            ResultError::Version(v) => write!(
                f,
                "guest test speaks result protocol version {v}, this lab speaks {VERSION}: rebuild the guest image"
            ),
        }
    }
}

impl std::error::Error for ResultError {}

impl TestResult {
    pub fn new(test: &str, seed: u64) -> Self {
        TestResult {
            proto: VERSION,
            test: test.to_owned(),
            verdict: Verdict::Pass,
            summary: String::new(),
            counters: BTreeMap::new(),
            first_bad_errno: None,
            metrics: BTreeMap::new(),
            histograms: BTreeMap::new(),
            duration_ms: 0,
            seed,
            samples: 0,
            start_mono_ns: 0,
            end_mono_ns: 0,
        }
    }

    /// The single line a test prints, without the newline.
    pub fn to_line(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"proto-error\":\"{e}\"}}"))
    }

    /// Reads one stdout line. `Ok(None)` when the line is not a result line at all.
    pub fn parse_line(line: &str) -> Result<Option<TestResult>, ResultError> {
        let line = line.trim();
        if !line.starts_with('{') || !line.contains("\"proto\"") {
            return Ok(None);
        }
        let value: serde_json::Value = serde_json::from_str(line).map_err(ResultError::Json)?;
        match value.get("proto").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) => return Err(ResultError::Version(v as u32)),
            None => return Ok(None),
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(ResultError::Json)
    }
}

/// Parameters every guest test takes, rendered by the orchestrator and parsed by the test.
#[derive(Debug, Clone, PartialEq)]
pub struct TestParams {
    pub seed: u64,
    /// How long the test drives its workload.
    pub duration_ms: u64,
    /// Multiplies every deadline: 1.0 under KVM, larger under TCG, which is slower.
    pub deadline_scale: f64,
    /// Run-time knobs: `name=value` written to `/sys/module/kernel/parameters/<name>` before
    /// the test starts, and restored after.
    pub knobs: Vec<(String, String)>,
}

impl Default for TestParams {
    fn default() -> Self {
        TestParams {
            seed: 1,
            duration_ms: 2000,
            deadline_scale: 1.0,
            knobs: Vec::new(),
        }
    }
}

impl TestParams {
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--seed".to_owned(),
            self.seed.to_string(),
            "--duration-ms".to_owned(),
            self.duration_ms.to_string(),
            "--deadline-scale".to_owned(),
            self.deadline_scale.to_string(),
        ];
        for (k, v) in &self.knobs {
            args.push("--knob".to_owned());
            args.push(format!("{k}={v}"));
        }
        args
    }

    /// Parses the arguments after the program name.
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> Result<TestParams, String> {
        let mut p = TestParams::default();
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--seed" => p.seed = parse_num(&flag, &value()?)?,
                "--duration-ms" => p.duration_ms = parse_num(&flag, &value()?)?,
                "--deadline-scale" => {
                    let v = value()?;
                    p.deadline_scale = v
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s > 0.0)
                        .ok_or_else(|| {
                            format!("--deadline-scale: {v:?} is not a positive number")
                        })?;
                }
                "--knob" => {
                    let v = value()?;
                    let (k, val) = v
                        .split_once('=')
                        .filter(|(k, _)| !k.is_empty() && !k.contains('/'))
                        .ok_or_else(|| format!("--knob: {v:?} is not name=value"))?;
                    p.knobs.push((k.to_owned(), val.to_owned()));
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(p)
    }
}

fn parse_num(flag: &str, v: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .map_err(|_| format!("{flag}: {v:?} is not a whole number"))
}

/// A log-linear histogram: `2^sub_bits` linear sub-buckets per power of two, so a recorded
/// value is off by less than `2^-sub_bits` of itself: 1/128 (0.78 %) as the suite writes
/// them. Small and mergeable, in the spirit of HdrHistogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Histogram {
    /// `(bucket lower bound, count)`, sorted by bound, empty buckets left out.
    pub buckets: Vec<(u64, u64)>,
    pub count: u64,
    pub min: u64,
    pub max: u64,
    pub sum: u128,
    /// log2 of the sub-buckets per power of two. Results written before this field existed
    /// had 4 (1/16 of an octave, 6.25 %), and read as such.
    #[serde(default = "legacy_sub_bits")]
    pub sub_bits: u32,
}

/// Sub-bucket bits of the histograms guest tests write: 128 per octave, under 1 %.
pub const SUB_BITS: u32 = 7;

/// What a histogram without `sub_bits` was written with.
pub const LEGACY_SUB_BITS: u32 = 4;

fn legacy_sub_bits() -> u32 {
    LEGACY_SUB_BITS
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::with_sub_bits(SUB_BITS)
    }
}

/// The lower bound of the bucket holding `v`.
fn bucket_lower(v: u64, sub_bits: u32) -> u64 {
    if v < (1 << sub_bits) {
        return v;
    }
    let shift = 63 - v.leading_zeros() - sub_bits;
    (v >> shift) << shift
}

impl Histogram {
    /// An empty histogram of `2^sub_bits` sub-buckets per octave (at most 2^16).
    pub fn with_sub_bits(sub_bits: u32) -> Self {
        Histogram {
            buckets: Vec::new(),
            count: 0,
            min: 0,
            max: 0,
            sum: 0,
            sub_bits: sub_bits.min(16),
        }
    }

    pub fn record(&mut self, v: u64) {
        self.add(bucket_lower(v, self.sub_bits), 1);
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        self.max = self.max.max(v);
        self.count += 1;
        self.sum += u128::from(v);
    }

    fn add(&mut self, bound: u64, count: u64) {
        match self.buckets.binary_search_by_key(&bound, |&(lb, _)| lb) {
            Ok(i) => self.buckets[i].1 += count,
            Err(i) => self.buckets.insert(i, (bound, count)),
        }
    }

    /// The width of the bucket whose lower bound is `bound`: 1 below `2^sub_bits`.
    pub fn bucket_width(&self, bound: u64) -> u64 {
        if bound < (1 << self.sub_bits) {
            1
        } else {
            1 << (63 - bound.leading_zeros() - self.sub_bits)
        }
    }

    /// The largest relative error of a recorded value: a bucket's width over its bound.
    pub fn resolution(&self) -> f64 {
        (-f64::from(self.sub_bits)).exp2()
    }

    /// Re-buckets to the coarser `sub_bits` (a no-op when already that coarse).
    pub fn coarsen(&mut self, sub_bits: u32) {
        if sub_bits >= self.sub_bits {
            return;
        }
        let old = std::mem::take(&mut self.buckets);
        self.sub_bits = sub_bits;
        for (b, c) in old {
            self.add(bucket_lower(b, sub_bits), c);
        }
    }

    /// Adds `other`'s samples. Histograms of different resolutions merge at the coarser.
    pub fn merge(&mut self, other: &Histogram) {
        if self.count == 0 && self.buckets.is_empty() {
            self.sub_bits = other.sub_bits;
        }
        let bits = self.sub_bits.min(other.sub_bits);
        self.coarsen(bits);
        for &(b, c) in &other.buckets {
            self.add(bucket_lower(b, bits), c);
        }
        if other.count > 0 && (self.count == 0 || other.min < self.min) {
            self.min = other.min;
        }
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
    }

    /// The value at quantile `q` in [0, 1]: the lower bound of its bucket, clamped to the
    /// observed min and max. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(b, c) in &self.buckets {
            seen += c;
            if seen >= rank {
                return Some(b.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip() {
        for m in [
            Marker::Init { uptime_ms: 3 },
            Marker::Ready { uptime_ms: 812 },
            Marker::Poweroff,
            Marker::Fatal {
                message: "mount /proc: EPERM".into(),
            },
        ] {
            let line = m.to_string();
            assert_eq!(Marker::parse(&line), Some(Ok(m)), "{line}");
        }
    }

    #[test]
    fn marker_inside_kernel_noise_and_other_versions() {
        let noisy = "[    0.8] random: crng init done LAB/1 READY uptime_ms=900";
        assert_eq!(
            Marker::parse(noisy),
            Some(Ok(Marker::Ready { uptime_ms: 900 }))
        );
        assert_eq!(Marker::parse("[    0.1] Booting Linux"), None);
        assert!(matches!(
            Marker::parse("LAB/2 READY uptime_ms=1"),
            Some(Err(MarkerError::Version(_)))
        ));
        assert!(matches!(
            Marker::parse("LAB/1 READY uptime_ms=x"),
            Some(Err(MarkerError::Unknown(_)))
        ));
    }

    #[test]
    fn result_line_round_trip_and_version_check() {
        let mut r = TestResult::new("futex_errno", 7);
        r.verdict = Verdict::Fail;
        r.first_bad_errno = Some(512);
        r.counters.insert("waits".into(), 10);
        r.histograms
            .entry("wake_ns".into())
            .or_default()
            .record(1500);
        let line = r.to_line();
        assert_eq!(TestResult::parse_line(&line).ok().flatten(), Some(r));
        let future = line.replace("\"proto\":1", "\"proto\":9");
        assert!(matches!(
            TestResult::parse_line(&future),
            Err(ResultError::Version(9))
        ));
        assert!(matches!(TestResult::parse_line("waiting..."), Ok(None)));
        assert!(TestResult::parse_line("{\"proto\":1,").is_err());
    }

    #[test]
    fn params_round_trip_and_reject_bad_input() {
        let p = TestParams {
            seed: 42,
            duration_ms: 1500,
            deadline_scale: 5.0,
            knobs: vec![("futex_amp_delay_us".into(), "200".into())],
        };
        assert_eq!(TestParams::from_args(p.to_args()), Ok(p));
        assert!(TestParams::from_args(["--seed".to_owned()]).is_err());
        assert!(TestParams::from_args(["--knob".to_owned(), "../x=1".to_owned()]).is_err());
        assert!(TestParams::from_args(["--deadline-scale".to_owned(), "0".to_owned()]).is_err());
        assert!(TestParams::from_args(["--bogus".to_owned()]).is_err());
    }

    #[test]
    fn histogram_quantiles_are_within_one_bucket() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        assert!(h.resolution() < 0.01, "finer than 1 %");
        for (q, exact) in [(0.5, 5000.0), (0.99, 9900.0), (1.0, 10000.0)] {
            let got = h.quantile(q).map(|v| v as f64).unwrap_or(0.0);
            assert!(
                got <= exact && exact - got <= exact * h.resolution(),
                "q{q}: got {got}, want about {exact}"
            );
        }
        assert_eq!(h.count, 10_000);
        assert_eq!((h.min, h.max), (1, 10_000));
        let mut m = Histogram::default();
        m.merge(&h);
        m.merge(&h);
        assert_eq!(m.count, 20_000);
        assert_eq!(m.quantile(0.5), h.quantile(0.5));
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn every_bucket_is_narrower_than_the_resolution() {
        let h = Histogram::default();
        for v in [
            1u64,
            127,
            128,
            129,
            255,
            256,
            1000,
            123_456,
            1 << 40,
            u64::MAX / 3,
        ] {
            let b = bucket_lower(v, h.sub_bits);
            let w = h.bucket_width(b);
            assert!(b <= v && v < b.saturating_add(w), "{v} not in [{b}, +{w})");
            assert!(w == 1 || (w as f64) / (b as f64) <= h.resolution(), "{v}");
        }
    }

    #[test]
    fn older_results_read_as_sixteenth_octave_and_merge_at_the_coarser() {
        let old = r#"{"buckets":[[1000,2],[1024,1]],"count":3,"min":1001,"max":1030,"sum":3040}"#;
        let old: Histogram = serde_json::from_str(old).expect("a histogram without sub_bits");
        assert_eq!(old.sub_bits, LEGACY_SUB_BITS);
        let mut fine = Histogram::default();
        for v in [1001, 1010, 1020, 1100] {
            fine.record(v);
        }
        let mut m = fine.clone();
        m.merge(&old);
        assert_eq!(m.sub_bits, LEGACY_SUB_BITS);
        assert_eq!(m.count, 7);
        assert_eq!(m.buckets.iter().map(|b| b.1).sum::<u64>(), 7);
        assert!(m.buckets.iter().all(|&(b, _)| bucket_lower(b, 4) == b));
        // An empty histogram takes the resolution of what is merged into it.
        let mut e = Histogram::default();
        e.merge(&old);
        assert_eq!((e.sub_bits, e.count), (LEGACY_SUB_BITS, 3));
    }

    #[test]
    fn results_without_samples_or_times_still_parse() {
        let line =
            r#"{"proto":1,"test":"t","verdict":"pass","summary":"","duration_ms":5,"seed":1}"#;
        let r = TestResult::parse_line(line)
            .expect("parses")
            .expect("a result");
        assert_eq!((r.samples, r.start_mono_ns, r.end_mono_ns), (0, 0, 0));
    }
}
