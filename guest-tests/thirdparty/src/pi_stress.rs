//! Reading what rt-tests' `pi_stress` (rt-tests 2.4) leaves behind: its `--json` file and the
//! lines it prints.
//!
//! `pi_stress` runs inversion groups of three SCHED_FIFO threads (low, medium, high) on one
//! CPU each, around a `PTHREAD_PRIO_INHERIT` mutex (FUTEX_LOCK_PI and FUTEX_UNLOCK_PI in
//! glibc). Its reporter counts each group's finished inversions every 0.75 s; a group with
//! none for 5 intervals in a row is called deadlocked: it prints `WATCHDOG triggered: group
//! N is deadlocked!` on stderr and sends SIGTERM to its whole process group (`kill(0, ..)`),
//! which is why the adapter starts it in a group of its own.
//!
//! The `--json` file (a real one is `tests/fixtures/pi_stress-host-2.4.json`) has the rt-tests
//! header (`file_version`, `return_code`, ...) and `inversion`, the total over all groups.
//! It is written only when `pi_stress` gets to its end; a watchdog kill leaves none, so the
//! printed lines are read too.

use serde::Deserialize;

pub use crate::cyclictest::ReadError;

/// A `pi_stress --json` file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PiStressJson {
    pub file_version: u32,
    pub return_code: i32,
    /// Inversions performed by all groups together.
    pub inversion: u64,
}

impl PiStressJson {
    pub fn parse(text: &str) -> Result<PiStressJson, ReadError> {
        serde_json::from_str(text).map_err(ReadError::Json)
    }
}

/// What the printed lines say.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PiStressText {
    /// Each `WATCHDOG triggered: ...` line, as printed.
    pub watchdog: Vec<String>,
    /// `Total inversion performed: N`, printed at the end even with `--quiet`.
    pub inversions: Option<u64>,
}

impl PiStressText {
    /// Reads stdout and stderr (in any order: they are separate pipes).
    pub fn read(out: &str) -> PiStressText {
        let mut t = PiStressText::default();
        for line in out.lines() {
            let line = line.trim();
            if line.contains("WATCHDOG triggered") {
                t.watchdog.push(line.to_owned());
            } else if let Some(n) = line.strip_prefix("Total inversion performed:") {
                t.inversions = n.trim().parse().ok().or(t.inversions);
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_hosts_json() {
        let text = include_str!("../tests/fixtures/pi_stress-host-2.4.json");
        let j = PiStressJson::parse(text).expect("a pi_stress file");
        assert_eq!((j.file_version, j.return_code, j.inversion), (1, 0, 98483));
    }

    #[test]
    fn refuses_what_is_not_its_file() {
        assert!(PiStressJson::parse("{\"file_version\": 1, \"return_code\": 0}").is_err());
        assert!(PiStressJson::parse("").is_err());
    }

    #[test]
    fn finds_the_watchdog_and_the_total() {
        let out = "Total inversion performed: 1234\n\
                   Test Duration: 0 days, 0 hours, 0 minutes, 3 seconds\n\
                   WATCHDOG triggered: group 0 is deadlocked!\n\
                   reporter stopping due to watchdog event\n";
        let t = PiStressText::read(out);
        assert_eq!(t.inversions, Some(1234));
        assert_eq!(t.watchdog, ["WATCHDOG triggered: group 0 is deadlocked!"]);
        assert_eq!(PiStressText::read("nothing\n"), PiStressText::default());
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;

    proptest::proptest! {
        #[test]
        fn fuzz_any_text_reads_without_a_panic(text in ".*") {
            let _ = PiStressText::read(&text);
            let _ = PiStressJson::parse(&text);
        }
    }
}
