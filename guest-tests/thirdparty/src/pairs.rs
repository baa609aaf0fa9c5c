//! Reading the `--json` file of rt-tests' wake-up pair tests (rt-tests 2.4): `ptsematest`
//! (a POSIX mutex, so futexes), `pmqtest` (POSIX message queues), `sigwaittest` (signals)
//! and `svsematest` (SysV semaphores). In each pair a sender wakes a receiver every
//! `interval` µs, and the receiver measures how late it woke.
//!
//! What the file holds (real ones from this project's build host are in `tests/fixtures/`):
//! the same header as cyclictest's (`file_version`, `return_code`, `num_threads`, and
//! `"cmdline:"` with its trailing colon), then `thread`, an object keyed by pair index, each
//! with `sender` (`cpu`, `priority`, `samples`, `interval`) and `receiver` (`cpu`,
//! `priority`, `min`, `avg`, `max` in µs; `pmqtest` adds `timeoutcount`). There is no
//! histogram: only the extremes and the mean of each pair.

use std::collections::BTreeMap;

use serde::Deserialize;

pub use crate::cyclictest::ReadError;

/// The side of a pair that wakes the other.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Sender {
    #[serde(default)]
    pub cpu: i64,
    pub samples: u64,
    #[serde(default)]
    pub interval: u64,
}

/// The side that is woken, and how late it woke (µs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Receiver {
    #[serde(default)]
    pub cpu: i64,
    pub min: u64,
    pub avg: f64,
    pub max: u64,
    /// `pmqtest` only: receives that timed out.
    #[serde(default)]
    pub timeoutcount: u64,
}

/// One pair of threads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Pair {
    pub sender: Sender,
    pub receiver: Receiver,
}

/// A whole `--json` file of a pair test.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PairJson {
    pub file_version: u32,
    pub return_code: i32,
    #[serde(default)]
    pub num_threads: u32,
    #[serde(default, alias = "cmdline:")]
    pub cmdline: String,
    /// By pair index.
    #[serde(rename = "thread", deserialize_with = "pairs")]
    pub pairs: BTreeMap<u32, Pair>,
}

/// Every pair's wake-ups together.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    pub samples: u64,
    pub min: Option<u64>,
    /// The mean over all samples (each pair's mean weighted by its samples).
    pub mean: Option<f64>,
    pub max: Option<u64>,
    /// The pair with the worst wake-up.
    pub worst_pair: Option<u32>,
    pub timeouts: u64,
}

fn pairs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<u32, Pair>, D::Error> {
    let raw: BTreeMap<String, Pair> = BTreeMap::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            k.trim()
                .parse::<u32>()
                .map(|k| (k, v))
                .map_err(|_| serde::de::Error::custom(format!("pair key {k:?} is not a number")))
        })
        .collect()
}

impl PairJson {
    /// Reads and checks a file's text.
    pub fn parse(text: &str) -> Result<PairJson, ReadError> {
        let j: PairJson = serde_json::from_str(text).map_err(ReadError::Json)?;
        for (i, p) in &j.pairs {
            let r = &p.receiver;
            if p.sender.samples == 0 {
                continue;
            }
            // The mean is printed with two decimals: allow for its rounding.
            let (lo, hi) = (r.min as f64 - 0.01, r.max as f64 + 0.01);
            if r.min > r.max || !(lo..=hi).contains(&r.avg) {
                return Err(ReadError::Inconsistent(format!(
                    "pair {i}: min {} avg {} max {} out of order",
                    r.min, r.avg, r.max
                )));
            }
        }
        Ok(j)
    }

    /// Every pair's wake-ups as one set of figures.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        let mut weighted = 0.0;
        for (i, p) in &self.pairs {
            let (n, r) = (p.sender.samples, &p.receiver);
            s.timeouts = s.timeouts.saturating_add(r.timeoutcount);
            if n == 0 {
                continue;
            }
            s.samples = s.samples.saturating_add(n);
            weighted += r.avg * n as f64;
            s.min = Some(s.min.map_or(r.min, |m| m.min(r.min)));
            if s.max.is_none_or(|m| r.max > m) {
                s.max = Some(r.max);
                s.worst_pair = Some(*i);
            }
        }
        if s.samples > 0 {
            s.mean = Some(weighted / s.samples as f64);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/{name}-host-2.4.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn the_four_pair_tests_of_rt_tests_2_4_read() {
        // `<program> -l 200 -i 1000 -q --json=...` on this project's build host.
        for (name, max) in [
            ("ptsematest", 40),
            ("pmqtest", 72),
            ("sigwaittest", 117),
            ("svsematest", 79),
        ] {
            let j = PairJson::parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((j.file_version, j.return_code), (1, 0), "{name}");
            let s = j.summary();
            assert_eq!(s.samples, 200, "{name}");
            assert_eq!(s.max, Some(max), "{name}");
            assert_eq!(s.worst_pair, Some(0), "{name}");
            let mean = s.mean.unwrap_or(-1.0);
            assert!(
                mean >= s.min.unwrap_or(0) as f64 && mean <= max as f64,
                "{name}: {s:?}"
            );
            assert!(j.cmdline.contains(name), "{name}: {}", j.cmdline);
        }
    }

    #[test]
    fn the_mean_weighs_each_pair_by_its_samples_and_timeouts_add_up() {
        let text = r#"{"file_version": 1, "return_code": 0, "num_threads": 2, "thread": {
            "0": {"sender": {"samples": 300}, "receiver": {"min": 2, "avg": 10.0, "max": 50, "timeoutcount": 1}},
            "1": {"sender": {"samples": 100}, "receiver": {"min": 1, "avg": 30.0, "max": 900, "timeoutcount": 2}}}}"#;
        let s = PairJson::parse(text).expect("parses").summary();
        assert_eq!(s.samples, 400);
        assert_eq!(s.mean, Some(15.0));
        assert_eq!(
            (s.min, s.max, s.worst_pair, s.timeouts),
            (Some(1), Some(900), Some(1), 3)
        );
    }

    #[test]
    fn figures_out_of_order_are_refused_and_no_samples_is_no_figure() {
        let bad = r#"{"file_version": 1, "return_code": 0, "thread": {
            "0": {"sender": {"samples": 10}, "receiver": {"min": 9, "avg": 5.0, "max": 7}}}}"#;
        assert!(matches!(
            PairJson::parse(bad),
            Err(ReadError::Inconsistent(_))
        ));
        let empty = r#"{"file_version": 1, "return_code": 0, "thread": {}}"#;
        let s = PairJson::parse(empty).expect("parses").summary();
        assert_eq!((s.samples, s.mean, s.max), (0, None, None));
        let key = r#"{"file_version": 1, "return_code": 0, "thread": {"x": {"sender": {"samples": 1}, "receiver": {"min": 1, "avg": 1.0, "max": 1}}}}"#;
        assert!(matches!(PairJson::parse(key), Err(ReadError::Json(_))));
    }
}
