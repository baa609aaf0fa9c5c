//! Reading rt-tests' `--json=FILE` output (rt-tests 2.4, `rt_write_json` and cyclictest's
//! `write_stats`), and turning cyclictest's per-thread histograms into latency figures.
//!
//! What the file holds, as rt-tests 2.4 writes it (a real one is in
//! `tests/fixtures/cyclictest-host-2.4.json`):
//! - `return_code`, `num_threads`, `resolution_in_ns`, and two keys spelled with a trailing
//!   colon, `"cmdline:"` and `"rt_test_version:"`;
//! - `thread`: an object keyed by thread index, each with `cycles`, `min`, `max`, `avg` (in
//!   µs, or ns with `--nsecs`), `cpu`, `node`, and with `-h N` a `histogram` object from
//!   bucket (one unit wide, as a decimal string) to count, **non-zero buckets only**.
//! - Latencies at or above the histogram's size are not in it: the overflow count is
//!   `cycles` minus the histogram's sum, and is reported, never dropped.
//!
//! Quantiles are exact bucket values while they fall inside the histogram; one that falls
//! among the overflows is only known to be at least the histogram's size, and says so
//! ([`Quantile::AtLeast`]), so that a comparison never reads a censored figure as a value.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One thread of a cyclictest run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ThreadStats {
    pub cycles: u64,
    pub min: u64,
    pub max: u64,
    pub avg: f64,
    #[serde(default)]
    pub cpu: i64,
    /// Bucket (latency in the run's unit) to count; empty without `-h`.
    #[serde(default, deserialize_with = "buckets")]
    pub histogram: BTreeMap<u64, u64>,
}

/// A whole `--json` file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CyclictestJson {
    pub file_version: u32,
    pub return_code: i32,
    #[serde(default)]
    pub num_threads: u32,
    #[serde(default, alias = "cmdline:")]
    pub cmdline: String,
    #[serde(default, alias = "rt_test_version:")]
    pub rt_test_version: String,
    /// By thread index.
    #[serde(deserialize_with = "threads")]
    pub thread: BTreeMap<u32, ThreadStats>,
}

/// Why a file could not be read.
#[derive(Debug)]
pub enum ReadError {
    Json(serde_json::Error),
    /// It parsed, but cannot be what cyclictest wrote.
    Inconsistent(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Json(e) => write!(f, "not rt-tests JSON: {e}"),
            ReadError::Inconsistent(why) => write!(f, "inconsistent rt-tests JSON: {why}"),
        }
    }
}

impl std::error::Error for ReadError {}

fn buckets<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<u64, u64>, D::Error> {
    let raw: BTreeMap<String, u64> = BTreeMap::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            k.trim().parse::<u64>().map(|k| (k, v)).map_err(|_| {
                serde::de::Error::custom(format!("histogram bucket {k:?} is not a number"))
            })
        })
        .collect()
}

fn threads<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<u32, ThreadStats>, D::Error> {
    let raw: BTreeMap<String, ThreadStats> = BTreeMap::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            k.trim()
                .parse::<u32>()
                .map(|k| (k, v))
                .map_err(|_| serde::de::Error::custom(format!("thread key {k:?} is not a number")))
        })
        .collect()
}

impl CyclictestJson {
    /// Reads and checks a file's text.
    pub fn parse(text: &str) -> Result<CyclictestJson, ReadError> {
        let j: CyclictestJson = serde_json::from_str(text).map_err(ReadError::Json)?;
        for (i, t) in &j.thread {
            let in_hist: u64 = t
                .histogram
                .values()
                .try_fold(0u64, |a, &n| a.checked_add(n))
                .ok_or_else(|| {
                    ReadError::Inconsistent(format!("thread {i}: histogram counts overflow"))
                })?;
            if in_hist > t.cycles {
                return Err(ReadError::Inconsistent(format!(
                    "thread {i}: the histogram holds {in_hist} samples of {} cycles",
                    t.cycles
                )));
            }
            if t.cycles > 0 && t.min > t.max {
                return Err(ReadError::Inconsistent(format!(
                    "thread {i}: min {} above max {}",
                    t.min, t.max
                )));
            }
        }
        Ok(j)
    }

    /// The histogram's size (`-h N`) as the command line gave it, if it did.
    pub fn histogram_size(&self) -> Option<u64> {
        let words: Vec<&str> = self.cmdline.split_whitespace().collect();
        words.iter().enumerate().find_map(|(i, w)| {
            let value = if let Some(v) = w.strip_prefix("--histogram=") {
                Some(v)
            } else if let Some(v) = w.strip_prefix("-h").filter(|v| !v.is_empty()) {
                Some(v)
            } else if *w == "-h" || *w == "--histogram" {
                words.get(i + 1).copied()
            } else {
                None
            };
            value.and_then(|v| v.parse().ok())
        })
    }

    /// Every thread's samples as one distribution.
    pub fn merged(&self) -> Latency {
        let mut l = Latency::default();
        for t in self.thread.values() {
            l.add(t);
        }
        l.histogram_size = self.histogram_size();
        l
    }
}

/// A latency distribution: histogram, overflows, exact min and max.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Latency {
    pub cycles: u64,
    pub buckets: BTreeMap<u64, u64>,
    /// Samples beyond the histogram: `cycles` minus the histogram's sum.
    pub overflows: u64,
    pub min: Option<u64>,
    pub max: Option<u64>,
    /// `-h N`, when known: overflows are at least this.
    pub histogram_size: Option<u64>,
}

/// A quantile of a [`Latency`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantile {
    /// The bucket value (the exact latency, in the run's unit).
    Exact(u64),
    /// Among the overflows: at least this much.
    AtLeast(u64),
}

impl Latency {
    /// Counts saturate: `parse` bounds each thread's sums, not their total over threads.
    fn add(&mut self, t: &ThreadStats) {
        let in_hist = t.histogram.values().fold(0u64, |a, &n| a.saturating_add(n));
        self.cycles = self.cycles.saturating_add(t.cycles);
        self.overflows = self
            .overflows
            .saturating_add(t.cycles.saturating_sub(in_hist));
        for (&b, &n) in &t.histogram {
            let e = self.buckets.entry(b).or_insert(0);
            *e = e.saturating_add(n);
        }
        if t.cycles > 0 {
            self.min = Some(self.min.map_or(t.min, |m| m.min(t.min)));
            self.max = Some(self.max.map_or(t.max, |m| m.max(t.max)));
        }
    }

    /// The `q` quantile (0 < q ≤ 1) by the nearest-rank rule; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<Quantile> {
        if self.cycles == 0 || !(q > 0.0 && q <= 1.0) {
            return None;
        }
        // Nearest rank: the smallest value with at least q·n samples at or below it.
        let rank = ((q * self.cycles as f64).ceil() as u64).clamp(1, self.cycles);
        let mut seen = 0;
        for (&b, &n) in &self.buckets {
            seen = u64::saturating_add(seen, n);
            if seen >= rank {
                return Some(Quantile::Exact(b));
            }
        }
        // Overflows are at least the histogram's size, and never below the exact minimum.
        let floor = self
            .histogram_size
            .or_else(|| self.buckets.keys().next_back().map(|b| b + 1))
            .unwrap_or(0)
            .max(self.min.unwrap_or(0));
        if rank == self.cycles {
            if let Some(max) = self.max {
                return Some(Quantile::Exact(max.max(floor)));
            }
        }
        Some(Quantile::AtLeast(floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = include_str!("../tests/fixtures/cyclictest-host-2.4.json");

    #[test]
    fn a_real_rt_tests_2_4_file_reads_with_its_overflows() {
        // `cyclictest -q -t 2 -i 1000 -l 300 -h 120 --json=...` on this project's build host.
        let j = CyclictestJson::parse(HOST).expect("parses");
        assert_eq!(j.file_version, 1);
        assert_eq!(j.return_code, 0);
        assert_eq!(j.num_threads, 2);
        assert_eq!(j.rt_test_version, "2.40");
        assert_eq!(j.histogram_size(), Some(120));
        assert_eq!(j.thread.len(), 2);
        let t0 = &j.thread[&0];
        assert_eq!((t0.cycles, t0.min, t0.max), (300, 30, 3542));
        assert_eq!(
            t0.histogram.values().sum::<u64>(),
            297,
            "3 samples above 120 µs"
        );
        let all = j.merged();
        assert_eq!(all.cycles, 600);
        assert_eq!(all.overflows, 3);
        assert_eq!((all.min, all.max), (Some(30), Some(3542)));
        // 3 of 600 overflow: p99 (rank 594) is inside the histogram, rank 598 is not, and the
        // last rank is the exact max.
        assert!(matches!(all.quantile(0.99), Some(Quantile::Exact(v)) if v < 120));
        assert_eq!(all.quantile(0.996), Some(Quantile::AtLeast(120)));
        assert_eq!(all.quantile(1.0), Some(Quantile::Exact(3542)));
    }

    #[test]
    fn quantiles_follow_the_nearest_rank_rule() {
        let mut l = Latency::default();
        l.add(&ThreadStats {
            cycles: 10,
            min: 1,
            max: 9,
            avg: 5.0,
            cpu: 0,
            histogram: (1..=9).map(|b| (b, 1)).chain([(5, 2)]).collect(),
        });
        // 1,2,3,4,5,5,6,7,8,9 (the map keeps the later count for bucket 5: 2).
        assert_eq!(l.quantile(0.5), Some(Quantile::Exact(5)));
        assert_eq!(l.quantile(0.9), Some(Quantile::Exact(8)));
        assert_eq!(l.quantile(1.0), Some(Quantile::Exact(9)));
        assert_eq!(l.quantile(0.0), None);
        assert_eq!(Latency::default().quantile(0.5), None);
    }

    #[test]
    fn without_a_histogram_every_sample_is_an_overflow() {
        let text = r#"{"file_version":1,"return_code":0,"num_threads":1,"cmdline:":"cyclictest -t 1","thread":{"0":{"histogram":{},"cycles":200,"min":65,"max":163,"avg":77.03,"cpu":0,"node":0}}}"#;
        let l = CyclictestJson::parse(text).expect("parses").merged();
        assert_eq!(l.overflows, 200);
        assert_eq!(
            l.quantile(0.5),
            Some(Quantile::AtLeast(65)),
            "at least the minimum"
        );
        assert_eq!(l.quantile(1.0), Some(Quantile::Exact(163)));
    }

    #[test]
    fn impossible_files_are_refused_with_the_reason() {
        let more = r#"{"file_version":1,"return_code":0,"thread":{"0":{"histogram":{"3":5},"cycles":4,"min":3,"max":3,"avg":3}}}"#;
        let e = CyclictestJson::parse(more).expect_err("more samples than cycles");
        assert!(e.to_string().contains("holds 5 samples of 4 cycles"), "{e}");
        let bucket = r#"{"file_version":1,"return_code":0,"thread":{"0":{"histogram":{"x":1},"cycles":4,"min":3,"max":3,"avg":3}}}"#;
        assert!(CyclictestJson::parse(bucket)
            .expect_err("bad bucket")
            .to_string()
            .contains("\"x\""));
        assert!(CyclictestJson::parse("{").is_err());
        assert!(CyclictestJson::parse("[]").is_err());
    }

    #[test]
    fn the_histogram_size_in_every_spelling() {
        let with = |cmd: &str| CyclictestJson {
            file_version: 1,
            return_code: 0,
            num_threads: 1,
            cmdline: cmd.into(),
            rt_test_version: String::new(),
            thread: BTreeMap::new(),
        };
        assert_eq!(with("cyclictest -h 400 -q").histogram_size(), Some(400));
        assert_eq!(with("cyclictest -h400").histogram_size(), Some(400));
        assert_eq!(with("cyclictest --histogram=50").histogram_size(), Some(50));
        assert_eq!(with("cyclictest --histogram 50").histogram_size(), Some(50));
        assert_eq!(with("cyclictest -q").histogram_size(), None);
    }
}

/// Fuzzing (issue 16): the file comes from a program in a guest that may be broken, so no
/// text may panic the reader, and no file it accepts may panic the figures made from it.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn use_file(j: &CyclictestJson) {
        let l = j.merged();
        for q in [0.0, 0.5, 0.99, 0.999, 1.0, 2.0, -1.0, f64::NAN] {
            let _ = l.quantile(q);
        }
        let _ = j.histogram_size();
    }

    /// A file shaped like rt-tests 2.4's, with any numbers in it.
    fn file() -> impl Strategy<Value = String> {
        let thread = (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::btree_map(any::<u64>(), any::<u64>(), 0..6),
        )
            .prop_map(|(cycles, min, max, hist)| {
                let h: Vec<String> = hist
                    .iter()
                    .map(|(b, n)| format!("\"{b}\": {n}"))
                    .collect();
                format!(
                    "{{\"histogram\": {{{}}}, \"cycles\": {cycles}, \"min\": {min}, \"max\": {max}, \"avg\": 1.5, \"cpu\": 0, \"node\": 0}}",
                    h.join(", ")
                )
            });
        (
            proptest::collection::vec(thread, 0..4),
            "cyclictest( -h ?[0-9]{1,20}| --histogram=[0-9]{0,20}| -q| -t [0-9])*",
            any::<i32>(),
        )
            .prop_map(|(threads, cmdline, rc)| {
                let t: Vec<String> = threads
                    .iter()
                    .enumerate()
                    .map(|(i, t)| format!("\"{i}\": {t}"))
                    .collect();
                format!(
                    "{{\"file_version\": 1, \"cmdline:\": \"{cmdline}\", \"rt_test_version:\": \"2.40\", \"num_threads\": {}, \"resolution_in_ns\": 0, \"return_code\": {rc}, \"thread\": {{{}}}}}",
                    threads.len(),
                    t.join(", ")
                )
            })
    }

    proptest! {
        #[test]
        fn fuzz_any_text_reads_or_is_refused_without_a_panic(text in ".*") {
            if let Ok(j) = CyclictestJson::parse(&text) {
                use_file(&j);
            }
        }

        #[test]
        fn fuzz_any_numbers_read_or_are_refused_without_a_panic(text in file()) {
            if let Ok(j) = CyclictestJson::parse(&text) {
                use_file(&j);
                let l = j.merged();
                // What the histogram leaves out is counted, never dropped (checked where the
                // totals fit in 64 bits; beyond that they saturate).
                let total = j.thread.values().try_fold(0u64, |a, t| a.checked_add(t.cycles));
                let in_hist = l.buckets.values().try_fold(0u64, |a, &n| a.checked_add(n));
                if let (Some(total), Some(in_hist)) = (total, in_hist) {
                    prop_assert_eq!(l.overflows, total - in_hist);
                }
            }
        }
    }
}
