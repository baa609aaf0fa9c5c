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
    /// PID 1's heartbeat, every few seconds while the guest runs: the kernel still schedules
    /// user space, and eth0's `operstate` (`up`, `down`, ...). A deadline that fires while
    /// heartbeats say the link is down is a lost transport, not a hung kernel.
    Alive { uptime_ms: u64, link: String },
    /// PID 1 was asked to power off and is about to.
    Poweroff,
    /// PID 1 hit an error it cannot recover from; the text says which step.
    Fatal { message: String },
    /// In `lab.mode=run` (no host to talk to, as under LAVA): one test iteration ended.
    /// `result` is `pass`, `fail`, `skip` or `unknown` (LAVA's words: a hang is a `fail`,
    /// no result line is `unknown`); `line` is the test's result line, when it printed one.
    Case {
        test: String,
        iteration: u32,
        result: String,
        line: Option<String>,
    },
    /// In `lab.mode=run`: every test iteration has ended.
    Done,
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{MARKER_PREFIX}{VERSION} ")?;
        match self {
            Marker::Init { uptime_ms } => write!(f, "INIT uptime_ms={uptime_ms}"),
            Marker::Ready { uptime_ms } => write!(f, "READY uptime_ms={uptime_ms}"),
            Marker::Alive { uptime_ms, link } => {
                write!(f, "ALIVE uptime_ms={uptime_ms} link={link}")
            }
            Marker::Poweroff => write!(f, "POWEROFF"),
            Marker::Fatal { message } => write!(f, "FATAL {message}"),
            Marker::Case {
                test,
                iteration,
                result,
                line,
            } => {
                write!(f, "CASE name={test}.{iteration} result={result}")?;
                match line {
                    Some(l) => write!(f, " {l}"),
                    None => Ok(()),
                }
            }
            Marker::Done => write!(f, "DONE"),
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
            "ALIVE" => {
                let (up, link) = args.split_once(' ').unwrap_or((args, ""));
                let uptime_ms = up.strip_prefix("uptime_ms=").and_then(|v| v.parse().ok());
                let link = link.trim().strip_prefix("link=").filter(|l| {
                    !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
                uptime_ms.zip(link).map(|(uptime_ms, link)| Marker::Alive {
                    uptime_ms,
                    link: link.to_owned(),
                })
            }
            "FATAL" => Some(Marker::Fatal {
                message: args.to_owned(),
            }),
            "DONE" => Some(Marker::Done),
            "CASE" => parse_case(args),
            _ => None,
        };
        Some(marker.ok_or_else(|| MarkerError::Unknown(body.to_owned())))
    }
}

/// `name=<test>.<iteration> result=<word>[ <result line>]`.
fn parse_case(args: &str) -> Option<Marker> {
    let mut parts = args.splitn(3, ' ');
    let name = parts.next()?.strip_prefix("name=")?;
    let result = parts.next()?.strip_prefix("result=")?;
    let (test, iteration) = name.rsplit_once('.')?;
    if test.is_empty() || !["pass", "fail", "skip", "unknown"].contains(&result) {
        return None;
    }
    Some(Marker::Case {
        test: test.to_owned(),
        iteration: iteration.parse().ok()?,
        result: result.to_owned(),
        line: parts.next().map(str::to_owned).filter(|l| !l.is_empty()),
    })
}

/// Seed of one test iteration, derived from the run seed, so that every run is reproducible
/// and the host and the guest (`lab.mode=run`) derive the same one.
pub fn test_seed(seed: u64, test: &str, iteration: u32) -> u64 {
    let mut h: u64 = seed ^ 0x9e37_79b9_7f4a_7c15;
    for b in test.bytes().chain(iteration.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
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
    /// The version as written: a u64, so that a huge one is not shown truncated.
    Version(u64),
    /// A histogram the line carries cannot be a histogram [`Histogram::record`] made, and
    /// its accessors would panic or lie on it.
    Histogram {
        name: String,
        why: String,
    },
}

impl fmt::Display for ResultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResultError::Json(e) => write!(f, "malformed result line: {e}"),
            ResultError::Version(v) => write!(
                f,
                "guest test speaks result protocol version {v}, this lab speaks {VERSION}: rebuild the guest image"
            ),
            ResultError::Histogram { name, why } => write!(
                f,
                "malformed result line: histogram {name:?} {why}: the guest test wrote a broken histogram"
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
        /// Only the version, the rest skipped: the line is read twice rather than through a
        /// `serde_json::Value`, which holds no u128 and so lost every histogram `sum` above
        /// u64::MAX (the line failed to parse).
        #[derive(Deserialize)]
        struct Header {
            #[serde(default)]
            proto: Option<serde_json::Value>,
        }
        let line = line.trim();
        if !line.starts_with('{') || !line.contains("\"proto\"") {
            return Ok(None);
        }
        let header: Header = serde_json::from_str(line).map_err(ResultError::Json)?;
        match header.proto.as_ref().and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) => return Err(ResultError::Version(v)),
            None => return Ok(None),
        }
        let result: TestResult = serde_json::from_str(line).map_err(ResultError::Json)?;
        for (name, h) in &result.histograms {
            h.check().map_err(|why| ResultError::Histogram {
                name: name.clone(),
                why,
            })?;
        }
        Ok(Some(result))
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

/// The finest resolution a histogram may have: 2^16 sub-buckets per octave.
pub const MAX_SUB_BITS: u32 = 16;

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
            sub_bits: sub_bits.min(MAX_SUB_BITS),
        }
    }

    /// Whether this could have been made by [`Histogram::record`] and [`Histogram::merge`],
    /// as far as the accessors care: `sub_bits` at most [`MAX_SUB_BITS`] (64 or more made
    /// `bucket_width` and `merge` shift past the width of a u64, and panic), bounds strictly
    /// increasing (`merge` binary-searches them), bucket counts that add up to `count`
    /// (`quantile` adds them up), and `min <= max` once there is a sample (`quantile`
    /// clamps to them, which panics the other way round). The error says which.
    pub fn check(&self) -> Result<(), String> {
        if self.sub_bits > MAX_SUB_BITS {
            return Err(format!(
                "has sub_bits {}, more than {MAX_SUB_BITS}",
                self.sub_bits
            ));
        }
        if let Some(w) = self.buckets.windows(2).find(|w| w[0].0 >= w[1].0) {
            return Err(format!(
                "has bucket bounds out of order ({} before {})",
                w[0].0, w[1].0
            ));
        }
        let total = self
            .buckets
            .iter()
            .try_fold(0u64, |t, &(_, c)| t.checked_add(c));
        if total != Some(self.count) {
            return Err(format!(
                "has bucket counts that do not add up to its count {}",
                self.count
            ));
        }
        if self.count > 0 && self.min > self.max {
            return Err(format!("has min {} above max {}", self.min, self.max));
        }
        Ok(())
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

    /// Counts saturate, here and in `merge` and `quantile`: merging the results of several
    /// runs must not overflow however many samples each guest claims.
    fn add(&mut self, bound: u64, count: u64) {
        match self.buckets.binary_search_by_key(&bound, |&(lb, _)| lb) {
            Ok(i) => self.buckets[i].1 = self.buckets[i].1.saturating_add(count),
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
        self.count = self.count.saturating_add(other.count);
        self.sum = self.sum.saturating_add(other.sum);
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
            seen = c.saturating_add(seen);
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
    fn case_markers_round_trip_with_and_without_a_result_line() {
        for m in [
            Marker::Case {
                test: "rt:cyclictest".into(),
                iteration: 3,
                result: "pass".into(),
                line: Some("{\"proto\":1,\"test\":\"x y\"}".into()),
            },
            Marker::Case {
                test: "kselftest:futex/futex_wait".into(),
                iteration: 0,
                result: "unknown".into(),
                line: None,
            },
            Marker::Done,
        ] {
            assert_eq!(Marker::parse(&m.to_string()), Some(Ok(m.clone())));
        }
        assert!(matches!(
            Marker::parse("LAB/1 CASE name=x.1 result=maybe"),
            Some(Err(MarkerError::Unknown(_)))
        ));
        assert!(matches!(
            Marker::parse("LAB/1 CASE name=x result=pass"),
            Some(Err(MarkerError::Unknown(_)))
        ));
    }

    #[test]
    fn seeds_differ_by_test_and_iteration() {
        assert_eq!(test_seed(1, "a", 0), test_seed(1, "a", 0));
        assert_ne!(test_seed(1, "a", 0), test_seed(1, "a", 1));
        assert_ne!(test_seed(1, "a", 0), test_seed(1, "b", 0));
    }

    #[test]
    fn markers_round_trip() {
        for m in [
            Marker::Init { uptime_ms: 3 },
            Marker::Ready { uptime_ms: 812 },
            Marker::Poweroff,
            Marker::Alive {
                uptime_ms: 5000,
                link: "up".into(),
            },
            Marker::Alive {
                uptime_ms: 10_000,
                link: "lowerlayerdown".into(),
            },
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

    // Regressions found with the fuzz tests below (by them, or writing them), each with its
    // minimal input.

    fn line_with_histogram(h: &str) -> String {
        format!(
            r#"{{"proto":1,"test":"t","verdict":"pass","summary":"","histograms":{{"lat_ns":{h}}},"duration_ms":1,"seed":1}}"#
        )
    }

    #[test]
    fn histograms_the_accessors_would_panic_on_are_rejected() {
        for (h, why) in [
            // `bucket_width` and `merge` shifted a u64 by 64: "attempt to shift left with
            // overflow".
            (
                r#"{"buckets":[[0,0]],"count":0,"min":0,"max":0,"sum":0,"sub_bits":64}"#,
                "sub_bits 64",
            ),
            // `quantile` clamped to [min, max] the wrong way round.
            (
                r#"{"buckets":[[8,1]],"count":1,"min":9,"max":8,"sum":8}"#,
                "min 9 above max 8",
            ),
            // `quantile` added the bucket counts up past u64::MAX.
            (
                r#"{"buckets":[[0,18446744073709551615],[1,1]],"count":0,"min":0,"max":1,"sum":1}"#,
                "do not add up",
            ),
            (
                r#"{"buckets":[[5,1],[5,1]],"count":2,"min":5,"max":5,"sum":10}"#,
                "out of order",
            ),
        ] {
            let err = TestResult::parse_line(&line_with_histogram(h)).expect_err(h);
            let msg = err.to_string();
            assert!(msg.contains("\"lat_ns\"") && msg.contains(why), "{msg}");
        }
    }

    #[test]
    fn a_histogram_sum_above_u64_reads_back() {
        // Read through a serde_json::Value, the u128 sum became a float and the line failed
        // with "invalid type: floating point `1.8446744073709552e+19`, expected u128".
        let mut r = TestResult::new("t", 1);
        let h = r.histograms.entry("lat_ns".into()).or_default();
        h.record(1 << 63);
        h.record(1 << 63);
        assert_eq!(h.sum, 1 << 64);
        assert_eq!(TestResult::parse_line(&r.to_line()).ok().flatten(), Some(r));
    }

    #[test]
    fn a_huge_version_is_reported_as_written() {
        // It was truncated to u32: version 4294967297 read as "version 1, this lab speaks 1".
        let line = r#"{"proto":4294967297,"test":"t"}"#;
        assert!(matches!(
            TestResult::parse_line(line),
            Err(ResultError::Version(4_294_967_297))
        ));
    }

    #[test]
    fn merging_huge_counts_saturates() {
        // Two accepted histograms of u64::MAX samples overflowed `count` when merged.
        let h = Histogram {
            buckets: vec![(1, u64::MAX)],
            count: u64::MAX,
            min: 1,
            max: 1,
            sum: u128::MAX,
            sub_bits: SUB_BITS,
        };
        assert_eq!(h.check(), Ok(()));
        let mut m = h.clone();
        m.merge(&h);
        assert_eq!(
            (m.count, m.sum, m.buckets.clone()),
            (u64::MAX, u128::MAX, vec![(1, u64::MAX)])
        );
        assert_eq!(m.quantile(0.5), Some(1));
    }

    use proptest::prelude::*;

    /// Exercises every accessor the orchestrator calls on a parsed histogram
    /// (compare::boot_value, compare::analysis): none may panic, and a quantile lies within
    /// the observed range.
    fn use_histogram(h: &Histogram) -> Result<(), TestCaseError> {
        for q in [0.0, 0.01, 0.5, 0.99, 1.0, -1.0, 2.0, f64::NAN] {
            if let Some(v) = h.quantile(q) {
                prop_assert!(
                    h.min <= v && v <= h.max,
                    "q{q} = {v} outside [{}, {}]",
                    h.min,
                    h.max
                );
            }
        }
        let _ = (h.mean(), h.resolution());
        for &(b, _) in &h.buckets {
            let _ = h.bucket_width(b);
        }
        let mut merged = Histogram::default();
        merged.merge(h);
        merged.merge(h);
        let _ = merged.quantile(0.5);
        let mut coarse = h.clone();
        coarse.coarsen(LEGACY_SUB_BITS);
        coarse.merge(h);
        let _ = coarse.quantile(0.99);
        Ok(())
    }

    /// Checks what `parse_line` made of `line`: it never panics, and what it accepts is
    /// usable.
    fn parse_and_use(line: &str) -> Result<(), TestCaseError> {
        if let Ok(Some(r)) = TestResult::parse_line(line) {
            prop_assert_eq!(r.proto, VERSION);
            for h in r.histograms.values() {
                use_histogram(h)?;
            }
        }
        Ok(())
    }

    /// A result as a guest test writes it: histograms made by `record`.
    fn valid_result() -> impl Strategy<Value = TestResult> {
        let verdict = prop_oneof![
            Just(Verdict::Pass),
            Just(Verdict::Fail),
            Just(Verdict::Hang),
            Just(Verdict::Skip)
        ];
        let histogram = (0u32..=16, proptest::collection::vec(any::<u64>(), 0..20)).prop_map(
            |(bits, values)| {
                let mut h = Histogram::with_sub_bits(bits);
                for v in values {
                    h.record(v);
                }
                h
            },
        );
        let finite = any::<f64>().prop_filter("JSON has no NaN or infinity", |v| v.is_finite());
        (
            (".*", verdict, ".*", any::<u64>(), any::<u64>()),
            proptest::collection::btree_map(".{0,12}", any::<u64>(), 0..4),
            any::<Option<i32>>(),
            proptest::collection::btree_map(".{0,12}", finite, 0..4),
            proptest::collection::btree_map(".{0,12}", histogram, 0..3),
            (any::<u64>(), any::<u64>(), any::<u64>()),
        )
            .prop_map(
                |(
                    (test, verdict, summary, duration_ms, seed),
                    counters,
                    errno,
                    metrics,
                    histograms,
                    (samples, start, end),
                )| {
                    TestResult {
                        proto: VERSION,
                        test,
                        verdict,
                        summary,
                        counters,
                        first_bad_errno: errno,
                        metrics,
                        histograms,
                        duration_ms,
                        seed,
                        samples,
                        start_mono_ns: start,
                        end_mono_ns: end,
                    }
                },
            )
    }

    /// Numbers a hostile or broken guest could put where the protocol wants a u64, u32 or
    /// i32: out of range, negative, fractional, or not a number at all.
    const ODD_NUMBERS: &[&str] = &[
        "-1",
        "-0",
        "0",
        "1.5",
        "1e400",
        "-1e400",
        "NaN",
        "Infinity",
        "null",
        "\"7\"",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "340282366920938463463374607431768211455",
        "340282366920938463463374607431768211456",
        "99999999999999999999999999999999999999999999",
        "[]",
        "{}",
    ];

    const NUMERIC_FIELDS: &[&str] = &[
        "proto",
        "duration_ms",
        "seed",
        "samples",
        "start_mono_ns",
        "end_mono_ns",
        "first_bad_errno",
        "count",
        "min",
        "max",
        "sum",
        "sub_bits",
    ];

    /// Replaces the value after the `nth` occurrence of `"field":` (a number, or anything up
    /// to the next `,` `}` `]`) with `value`. None when the field does not occur that often.
    fn replace_value(line: &str, field: &str, nth: usize, value: &str) -> Option<String> {
        let key = format!("\"{field}\":");
        let at = line.match_indices(&key).nth(nth)?.0 + key.len();
        let len = line[at..].find([',', '}', ']']).unwrap_or(line.len() - at);
        Some(format!("{}{value}{}", &line[..at], &line[at + len..]))
    }

    fn buckets_json() -> impl Strategy<Value = String> {
        let number = prop_oneof![
            any::<u64>().prop_map(|v| v.to_string()),
            (0usize..ODD_NUMBERS.len()).prop_map(|i| ODD_NUMBERS[i].to_owned()),
        ];
        let bucket =
            proptest::collection::vec(number, 0..4).prop_map(|b| format!("[{}]", b.join(",")));
        proptest::collection::vec(bucket, 0..5).prop_map(|bs| format!("[{}]", bs.join(",")))
    }

    /// A line with one histogram whose every field is arbitrary: what `parse_line` accepts
    /// of it must be usable.
    fn odd_histogram() -> impl Strategy<Value = Histogram> {
        let small = prop_oneof![0u64..1000, any::<u64>(), Just(u64::MAX)];
        (
            proptest::collection::vec((small.clone(), small.clone()), 0..6),
            small.clone(),
            small.clone(),
            small,
            prop_oneof![0u128..100_000, any::<u128>()],
            prop_oneof![0u32..=20, any::<u32>()],
        )
            .prop_map(|(buckets, count, min, max, sum, sub_bits)| Histogram {
                buckets,
                count,
                min,
                max,
                sum,
                sub_bits,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn fuzz_result_lines_round_trip_exactly(r in valid_result()) {
            let line = r.to_line();
            prop_assert!(!line.contains('\n'), "one line: {}", line);
            let back = TestResult::parse_line(&line);
            let Ok(Some(back)) = back else {
                return Err(TestCaseError::fail(format!("{back:?} from {line}")));
            };
            // Bit for bit, metrics included (serde_json's `float_roundtrip`, Cargo.toml).
            prop_assert_eq!(back, r, "from {}", line);
        }

        #[test]
        fn fuzz_any_text_is_not_a_panic(
            line in "\\PC*",
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            parse_and_use(&line)?;
            let _ = Marker::parse(&line);
            let lossy = String::from_utf8_lossy(&bytes);
            parse_and_use(&lossy)?;
            let _ = Marker::parse(&lossy);
            // Text that gets past parse_line's cheap "is this a result line" test.
            parse_and_use(&format!("{{\"proto\":1,{line}"))?;
        }

        #[test]
        fn fuzz_truncated_result_lines(r in valid_result(), cut in any::<prop::sample::Index>()) {
            let line = r.to_line();
            let mut at = cut.index(line.len() + 1);
            while !line.is_char_boundary(at) {
                at -= 1;
            }
            let short = &line[..at];
            parse_and_use(short)?;
            if at < line.len() {
                // A cut JSON object is never a whole one.
                prop_assert!(!matches!(TestResult::parse_line(short), Ok(Some(_))), "{}", short);
            }
        }

        #[test]
        fn fuzz_odd_numbers_in_result_lines(
            r in valid_result(),
            field in 0..NUMERIC_FIELDS.len(),
            nth in 0usize..3,
            value in 0..ODD_NUMBERS.len(),
            buckets in buckets_json(),
            sub_bits in prop_oneof![0u64..=70, any::<u64>()],
        ) {
            let line = r.to_line();
            if let Some(odd) = replace_value(&line, NUMERIC_FIELDS[field], nth, ODD_NUMBERS[value]) {
                parse_and_use(&odd)?;
            }
            let mut h = Histogram::default();
            for v in [1u64, 500, 10_000] {
                h.record(v);
            }
            let mut one = TestResult::new("t", 1);
            one.histograms.insert("lat_ns".into(), h);
            let line = one.to_line();
            let at = line.find("\"buckets\":").map(|i| i + "\"buckets\":".len());
            if let Some(at) = at {
                let end = at + line[at..].find("]],").map_or(0, |e| e + 2);
                parse_and_use(&format!("{}{buckets}{}", &line[..at], &line[end..]))?;
            }
            if let Some(odd) = replace_value(&line, "sub_bits", 0, &sub_bits.to_string()) {
                parse_and_use(&odd)?;
            }
        }

        #[test]
        fn fuzz_odd_histograms_are_rejected_or_usable(h in odd_histogram()) {
            let mut r = TestResult::new("t", 1);
            r.histograms.insert("lat_ns".into(), h);
            parse_and_use(&r.to_line())?;
        }

        #[test]
        fn fuzz_markers_round_trip_and_survive_mutation(
            uptime in any::<u64>(),
            message in "[^\\r\\n\\u{85}\\u{2028}\\u{2029}]*",
            kind in 0usize..4,
            cut in any::<prop::sample::Index>(),
            noise in "\\PC{0,20}",
        ) {
            // Marker text is one console line; trailing white space is the console's, not
            // the message's (parse trims it).
            let message = message.trim_end().to_owned();
            let m = match kind {
                0 => Marker::Init { uptime_ms: uptime },
                1 => Marker::Ready { uptime_ms: uptime },
                2 => Marker::Poweroff,
                _ => Marker::Fatal { message },
            };
            let line = m.to_string();
            prop_assert_eq!(Marker::parse(&line), Some(Ok(m.clone())), "{}", line);
            prop_assert_eq!(Marker::parse(&format!("{noise}{line}")).is_some(), true);
            let mut at = cut.index(line.len() + 1);
            while !line.is_char_boundary(at) {
                at -= 1;
            }
            let _ = Marker::parse(&line[..at]);
            let _ = Marker::parse(&line.replace(&uptime.to_string(), "18446744073709551616"));
            let _ = Marker::parse(&line.replace(&uptime.to_string(), "-1"));
        }
    }
}
