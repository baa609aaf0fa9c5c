//! LAVA, where boards already live: a job definition that deploys a lab kernel and guest
//! image by their content keys (URLs with sha256), boots them with PID 1 in `lab.mode=run`,
//! and watches lab's console markers; and the reading of such a job's log back into lab's
//! outcomes, through the same console watcher and fingerprints as a guest's serial line.
//!
//! The job's `metadata` carries what lab needs to read it back (kernel key, image digest,
//! tests, seed), so a log and its job definition are all `lab lava ingest` needs.

use std::collections::BTreeMap;
use std::time::Duration;

use lab_proto::{test_seed, Marker, TestResult, Verdict};
use serde::{Deserialize, Serialize};

use crate::arch::{Accel, Arch};
use crate::results::crash::CrashReport;
use crate::results::{OutcomeKind, TestOutcome};
use crate::vm::console::{ConsoleWatcher, WatchEvent};

/// Why a job could not be written or a log read.
#[derive(Debug, thiserror::Error)]
pub enum LavaError {
    #[error("the job definition is not YAML lab can read: {0}")]
    Job(#[source] serde_yaml_ng::Error),
    #[error("the job definition was not written by `lab lava job`: its metadata lacks {0}")]
    NotLab(&'static str),
    #[error("the job metadata {key} = {value:?} is not valid")]
    Metadata { key: &'static str, value: String },
    #[error("line {line} of the LAVA log is not a log record: {why}")]
    Log { line: usize, why: String },
}

/// What one LAVA job runs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub arch: Arch,
    pub kernel_key: String,
    pub kernel_label: String,
    pub kernel_url: String,
    pub kernel_sha256: String,
    pub image_digest: String,
    pub ramdisk_url: String,
    pub tests: Vec<String>,
    pub iterations: u32,
    pub duration: Duration,
    pub seed: u64,
    pub accel: Accel,
    pub device_type: String,
}

impl JobSpec {
    /// The kernel command line: the console, and what PID 1 runs.
    pub fn cmdline(&self) -> String {
        let console = match self.arch {
            Arch::X86_64 => "ttyS0",
            Arch::Arm64 => "ttyAMA0",
        };
        format!(
            "console={console} panic=-1 printk.time=1 lab.mode=run lab.tests={} \
             lab.iterations={} lab.duration_ms={} lab.seed={} lab.scale={}",
            self.tests.join(","),
            self.iterations,
            self.duration.as_millis(),
            self.seed,
            self.accel.deadline_scale()
        )
    }

    /// The longest a test may run before PID 1 calls it hung: the host's deadline.
    fn test_deadline(&self) -> Duration {
        self.duration
            + Duration::from_secs_f64(20.0 * self.accel.deadline_scale())
            + Duration::from_secs(30)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    job_name: String,
    device_type: String,
    visibility: String,
    priority: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    context: BTreeMap<String, String>,
    timeouts: Timeouts,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    actions: Vec<serde_yaml_ng::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Timeouts {
    job: Minutes,
    action: Minutes,
    connection: Minutes,
}

#[derive(Debug, Serialize, Deserialize)]
struct Minutes {
    minutes: u64,
}

fn minutes(d: Duration) -> u64 {
    d.as_secs().div_ceil(60).max(1)
}

/// The monitor pattern LAVA turns into test cases: lab's CASE marker.
pub const CASE_PATTERN: &str =
    r"LAB/1 CASE name=(?P<test_case_id>\S+) result=(?P<result>pass|fail|skip|unknown)";

/// The LAVA job definition of `spec`, as YAML.
pub fn job_definition(spec: &JobSpec) -> String {
    let deadline = spec.test_deadline();
    let cases = u64::from(spec.iterations) * spec.tests.len() as u64;
    // LAVA's monitor gives up after the boot action's timeout without output: one test's
    // deadline, since PID 1 prints a CASE marker after each.
    let boot = deadline + Duration::from_secs(120);
    let test = Duration::from_secs(deadline.as_secs() * cases.max(1)) + Duration::from_secs(120);
    let job = Job {
        job_name: format!(
            "lab {} {} ({})",
            spec.kernel_label,
            spec.arch,
            spec.tests.join(",")
        ),
        device_type: spec.device_type.clone(),
        visibility: "public".into(),
        priority: "medium".into(),
        context: if spec.device_type == "qemu" {
            BTreeMap::from([("arch".to_owned(), spec.arch.name().to_owned())])
        } else {
            BTreeMap::new()
        },
        timeouts: Timeouts {
            job: Minutes {
                minutes: minutes(boot + test + Duration::from_secs(300)),
            },
            action: Minutes {
                minutes: minutes(test),
            },
            connection: Minutes { minutes: 5 },
        },
        metadata: BTreeMap::from([
            ("lab.arch".to_owned(), spec.arch.name().to_owned()),
            ("lab.kernel".to_owned(), spec.kernel_key.clone()),
            ("lab.image".to_owned(), spec.image_digest.clone()),
            ("lab.tests".to_owned(), spec.tests.join(",")),
            ("lab.iterations".to_owned(), spec.iterations.to_string()),
            (
                "lab.duration_ms".to_owned(),
                spec.duration.as_millis().to_string(),
            ),
            ("lab.seed".to_owned(), spec.seed.to_string()),
            ("lab.accel".to_owned(), spec.accel.name().to_owned()),
        ]),
        actions: vec![
            yaml(serde_json::json!({"deploy": {
                "to": "tmpfs",
                "timeout": {"minutes": 5},
                "images": {
                    "kernel": {
                        "url": spec.kernel_url,
                        "sha256sum": spec.kernel_sha256,
                        "image_arg": format!("-kernel {{kernel}} -append \"{}\"", spec.cmdline()),
                    },
                    "ramdisk": {
                        "url": spec.ramdisk_url,
                        "sha256sum": spec.image_digest,
                        "image_arg": "-initrd {ramdisk}",
                    },
                },
            }})),
            yaml(serde_json::json!({"boot": {
                "method": "qemu",
                "media": "tmpfs",
                "timeout": {"minutes": minutes(boot)},
            }})),
            yaml(serde_json::json!({"test": {
                "timeout": {"minutes": minutes(test)},
                "monitors": [{
                    "name": "lab",
                    "start": "LAB/1 READY",
                    "end": "LAB/1 DONE",
                    "pattern": CASE_PATTERN,
                }],
            }})),
        ],
    };
    serde_yaml_ng::to_string(&job).unwrap_or_default()
}

/// A JSON value as a YAML one (JSON is YAML; the conversion cannot fail for plain data).
fn yaml(v: serde_json::Value) -> serde_yaml_ng::Value {
    serde_yaml_ng::to_value(v).unwrap_or(serde_yaml_ng::Value::Null)
}

/// What a job definition written by `lab lava job` says about its run.
#[derive(Debug, Clone, PartialEq)]
pub struct JobMeta {
    pub name: String,
    pub arch: Arch,
    pub kernel_key: String,
    pub image_digest: String,
    pub tests: Vec<String>,
    pub iterations: u32,
    pub duration: Duration,
    pub seed: u64,
    pub accel: Accel,
}

/// Reads a job definition's lab metadata.
pub fn read_job(text: &str) -> Result<JobMeta, LavaError> {
    let job: Job = serde_yaml_ng::from_str(text).map_err(LavaError::Job)?;
    let m = &job.metadata;
    let get = |k: &'static str| m.get(k).ok_or(LavaError::NotLab(k));
    let num = |k: &'static str| -> Result<u64, LavaError> {
        let v = get(k)?;
        v.parse().map_err(|_| LavaError::Metadata {
            key: k,
            value: v.clone(),
        })
    };
    let arch_raw = get("lab.arch")?;
    let arch = arch_raw.parse().map_err(|_| LavaError::Metadata {
        key: "lab.arch",
        value: arch_raw.clone(),
    })?;
    let accel = match get("lab.accel")?.as_str() {
        "kvm" => Accel::Kvm,
        "tcg" => Accel::Tcg,
        "native" => Accel::Native,
        other => {
            return Err(LavaError::Metadata {
                key: "lab.accel",
                value: other.to_owned(),
            })
        }
    };
    let tests: Vec<String> = get("lab.tests")?.split(',').map(str::to_owned).collect();
    for t in &tests {
        crate::config::names::check_test(t).map_err(|_| LavaError::Metadata {
            key: "lab.tests",
            value: t.clone(),
        })?;
    }
    Ok(JobMeta {
        name: job.job_name,
        arch,
        kernel_key: get("lab.kernel")?.clone(),
        image_digest: get("lab.image")?.clone(),
        tests,
        iterations: u32::try_from(num("lab.iterations")?).map_err(|_| LavaError::Metadata {
            key: "lab.iterations",
            value: get("lab.iterations").cloned().unwrap_or_default(),
        })?,
        duration: Duration::from_millis(num("lab.duration_ms")?),
        seed: num("lab.seed")?,
        accel,
    })
}

/// A LAVA job's log, as `lava-run` prints it on stderr or a server gives it
/// (`lavacli jobs logs --raw`): one YAML mapping per record, `- ` in front or not.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct JobLog {
    /// The device's console, as LAVA logged it (`target` and `feedback` records).
    pub console: Vec<String>,
    /// The job's own result (`pass` or `fail`) and, on failure, LAVA's reason.
    pub result: Option<(String, Option<String>)>,
}

#[derive(Debug, Deserialize)]
struct Record {
    lvl: String,
    msg: serde_yaml_ng::Value,
}

/// Reads a LAVA log. Lines that are not records (a server's `---` header, blank lines) are
/// skipped; a record that does not parse is an error with its line number.
pub fn read_log(text: &str) -> Result<JobLog, LavaError> {
    let mut log = JobLog::default();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let line = line.strip_prefix("- ").unwrap_or(line);
        if !line.starts_with('{') {
            continue;
        }
        let rec: Record = serde_yaml_ng::from_str(line).map_err(|e| LavaError::Log {
            line: n + 1,
            why: e.to_string(),
        })?;
        match (rec.lvl.as_str(), &rec.msg) {
            ("target" | "feedback", serde_yaml_ng::Value::String(s)) => {
                // LAVA escapes the device's double quotes before it logs a line.
                let s = s.replace("\\\"", "\"");
                log.console.extend(s.lines().map(str::to_owned));
            }
            ("results", serde_yaml_ng::Value::Mapping(m)) => {
                let field = |k: &str| {
                    m.get(serde_yaml_ng::Value::String(k.to_owned()))
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                };
                if field("definition").as_deref() == Some("lava")
                    && field("case").as_deref() == Some("job")
                {
                    log.result = field("result").map(|r| (r, field("error_msg")));
                }
            }
            _ => {}
        }
    }
    Ok(log)
}

/// The outcomes of a job: one per test iteration the job asked for, in the order PID 1 runs
/// them. A CASE marker gives a test's result; kernel reports on the console go to the test
/// that was running (those of the boot, to the first). An iteration the log never reached is a kernel crash when the console
/// shows one after the last CASE, and otherwise an infra-error that says why the job ended.
pub fn outcomes(meta: &JobMeta, log: &JobLog) -> Vec<TestOutcome> {
    let mut watcher = ConsoleWatcher::new();
    let mut pending: Vec<CrashReport> = Vec::new();
    let mut panicked = false;
    let mut cases: BTreeMap<(String, u32), TestOutcome> = BTreeMap::new();
    let mut started = false;
    for line in &log.console {
        for e in watcher.feed_line(line) {
            match e {
                WatchEvent::ReportComplete(r) => pending.push(r),
                WatchEvent::ReportStarted(k) => {
                    panicked |= k == crate::results::crash::CrashKind::Panic;
                }
            }
        }
        match Marker::parse(line) {
            // A report from the boot stays pending: it goes to the first test, as a crash
            // during boot does on every other engine.
            Some(Ok(Marker::Ready { .. })) => started = true,
            Some(Ok(Marker::Case {
                test,
                iteration,
                result,
                line,
            })) => {
                let o = case_outcome(
                    meta,
                    &test,
                    iteration,
                    &result,
                    line.as_deref(),
                    &mut pending,
                );
                cases.insert((test, iteration), o);
            }
            _ => {}
        }
    }
    for e in watcher.finish() {
        if let WatchEvent::ReportComplete(r) = e {
            pending.push(r);
        }
    }
    let why_ended = match &log.result {
        Some((r, Some(msg))) => format!("the LAVA job ended ({r}: {msg}) before it ran"),
        Some((r, None)) => format!("the LAVA job ended ({r}) before it ran"),
        None => "the LAVA log ends before it ran".to_owned(),
    };
    let mut out = Vec::new();
    let mut blamed = false;
    for iteration in 0..meta.iterations {
        for test in &meta.tests {
            if let Some(o) = cases.remove(&(test.clone(), iteration)) {
                out.push(o);
                continue;
            }
            let seed = test_seed(meta.seed, test, iteration);
            let mut o = TestOutcome::infra(
                test,
                meta.arch,
                iteration,
                seed,
                if started {
                    why_ended.clone()
                } else {
                    format!("boot: the guest never printed READY; {why_ended}")
                },
            );
            if !blamed && (panicked || !pending.is_empty()) {
                blamed = true;
                o.kind = OutcomeKind::KernelCrash;
                o.summary = pending.first().map_or_else(
                    || "kernel panic (report incomplete on the console)".to_owned(),
                    |c| format!("{} [{}] {}", c.title, c.fingerprint.id(), c.fingerprint),
                );
                o.crashes = std::mem::take(&mut pending);
            }
            out.push(o);
        }
    }
    out
}

fn case_outcome(
    meta: &JobMeta,
    test: &str,
    iteration: u32,
    word: &str,
    line: Option<&str>,
    pending: &mut Vec<CrashReport>,
) -> TestOutcome {
    let seed = test_seed(meta.seed, test, iteration);
    let mut o = TestOutcome::infra(test, meta.arch, iteration, seed, String::new());
    let result = line.and_then(|l| TestResult::parse_line(l).ok().flatten());
    match &result {
        Some(r) => {
            o.kind = match r.verdict {
                Verdict::Pass => OutcomeKind::Pass,
                Verdict::Fail => OutcomeKind::Fail,
                Verdict::Hang => OutcomeKind::Hang,
                Verdict::Skip => OutcomeKind::InfraError,
            };
            o.summary = match r.verdict {
                Verdict::Skip => format!("test could not run: {}", r.summary),
                Verdict::Hang => format!("guest watchdog fired: {}", r.summary),
                _ => r.summary.clone(),
            };
            o.duration_ms = r.duration_ms;
        }
        None if word == "fail" => {
            o.kind = OutcomeKind::Hang;
            o.summary = "PID 1's deadline fired: the test never ended".into();
        }
        None => {
            o.kind = OutcomeKind::Fail;
            o.summary = "exited without a result line".into();
        }
    }
    o.result = result;
    if !pending.is_empty() {
        // A kernel report outranks what the test said, as on every other engine.
        o.crashes = std::mem::take(pending);
        o.kind = OutcomeKind::KernelCrash;
        let c = &o.crashes[0];
        o.summary = format!("{} [{}] {}", c.title, c.fingerprint.id(), c.fingerprint);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec {
            arch: Arch::X86_64,
            kernel_key: "k".repeat(64),
            kernel_label: "base".into(),
            kernel_url: "file:///c/artifacts/k/bzImage".into(),
            kernel_sha256: "a".repeat(64),
            image_digest: "b".repeat(64),
            ramdisk_url: "file:///c/images/x.cpio".into(),
            tests: vec!["futex_errno".into(), "rt:cyclictest".into()],
            iterations: 2,
            duration: Duration::from_secs(3),
            seed: 7,
            accel: Accel::Tcg,
            device_type: "qemu".into(),
        }
    }

    #[test]
    fn a_job_reads_back_as_what_it_runs() {
        let text = job_definition(&spec());
        assert!(
            text.contains("lab.mode=run lab.tests=futex_errno,rt:cyclictest"),
            "{text}"
        );
        assert!(text.contains("sha256sum"), "{text}");
        let meta = read_job(&text).expect("reads back");
        assert_eq!(meta.tests, spec().tests);
        assert_eq!((meta.iterations, meta.seed), (2, 7));
        assert_eq!(meta.accel, Accel::Tcg);
        assert_eq!(meta.duration, Duration::from_secs(3));
        assert!(matches!(
            read_job("job_name: x\ndevice_type: qemu\nvisibility: public\npriority: medium\ntimeouts: {job: {minutes: 1}, action: {minutes: 1}, connection: {minutes: 1}}\nactions: []\n"),
            Err(LavaError::NotLab("lab.arch"))
        ));
    }

    fn record(lvl: &str, msg: &str) -> String {
        format!(
            "{{\"dt\": \"2026-12-04T20:18:55.107260\", \"lvl\": \"{lvl}\", \"msg\": \"{msg}\"}}"
        )
    }

    #[test]
    fn cases_crashes_and_a_log_that_stops_short() {
        let meta = read_job(&job_definition(&spec())).expect("meta");
        let pass = TestResult::new("futex_errno", test_seed(7, "futex_errno", 0))
            .to_line()
            .replace('"', "\\\\\\\"");
        let lines = [
            record("target", "[    0.000000] Linux version 6.12"),
            record("target", "LAB/1 READY uptime_ms=845"),
            record(
                "target",
                &format!("LAB/1 CASE name=futex_errno.0 result=pass {pass}"),
            ),
            record("target", "[    4.000000] ------------[ cut here ]------------"),
            record(
                "target",
                "[    4.000001] WARNING: CPU: 0 PID: 1 at kernel/futex/waitwake.c:42 futex_wake+0x10/0x20",
            ),
            record("target", "[    4.000002] ---[ end trace 0000000000000000 ]---"),
            record("target", "LAB/1 CASE name=rt:cyclictest.0 result=unknown"),
            "{\"dt\": \"x\", \"lvl\": \"results\", \"msg\": {\"case\": \"job\", \"definition\": \"lava\", \"error_msg\": \"Connection closed\", \"result\": \"fail\"}}".to_owned(),
        ];
        let log = read_log(&lines.join("\n")).expect("log");
        assert_eq!(
            log.result,
            Some(("fail".to_owned(), Some("Connection closed".to_owned())))
        );
        let out = outcomes(&meta, &log);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].kind, OutcomeKind::Pass, "{:?}", out[0]);
        assert!(out[0].result.is_some());
        assert_eq!(out[1].kind, OutcomeKind::KernelCrash, "{:?}", out[1]);
        assert!(out[1].summary.contains("futex_wake"), "{}", out[1].summary);
        assert_eq!(out[2].kind, OutcomeKind::InfraError);
        assert!(
            out[2].summary.contains("Connection closed"),
            "{}",
            out[2].summary
        );
        assert_eq!(
            (out[3].test.as_str(), out[3].iteration),
            ("rt:cyclictest", 1)
        );
        assert!(matches!(
            read_log("{\"lvl\": target"),
            Err(LavaError::Log { line: 1, .. })
        ));
    }
}
