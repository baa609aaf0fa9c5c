//! `lab bisect` end to end on real kernels: a synthetic 48-commit git history of the Debian
//! tree (scripts/synthetic-history.sh) with a bad futex commit, a later bad wait-queue commit
//! and a still later commit whose kernel WARNs on every `epoll_exclusive_herd` run (a crash
//! bisection), and a 4-patch series whose third patch is the bad futex variant.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{lab, repo, run};

/// The repository's own lab definition.
fn lab_toml() -> PathBuf {
    common::repo_lab_toml()
}

/// The synthetic history, made once per cache (the script is idempotent and deterministic).
fn history() -> (PathBuf, serde_json::Value) {
    let out = common::cache_dir().join("synthetic");
    let status = std::process::Command::new(repo().join("scripts/synthetic-history.sh"))
        .arg(&out)
        .status()
        .expect("synthetic-history.sh runs");
    assert!(status.success(), "scripts/synthetic-history.sh failed");
    let h: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("history.json")).expect("history.json"),
    )
    .expect("history.json parses");
    (out, h)
}

fn culprit_sha(state: &serde_json::Value) -> String {
    let c = state["conclusion"]["culprit"].as_u64().expect("a culprit") as usize;
    state["space"]["commits"][c][0]
        .as_str()
        .expect("commit sha")
        .to_owned()
}

/// Bisects `good..main` of the synthetic history; `good` is a commit index, or the
/// history's good end. Gives the `--json` state, history.json and lab's stderr.
fn bisect_git(
    test: &str,
    knobs: &[&str],
    good: Option<usize>,
) -> (serde_json::Value, serde_json::Value, String) {
    let (out, h) = history();
    let def = out.join("synthetic-6.12.toml");
    let good = match good {
        Some(i) => h["commits"][i]["sha"]
            .as_str()
            .expect("commit sha")
            .to_owned(),
        None => h["good"].as_str().expect("good").to_owned(),
    };
    let mut cmd = lab(&lab_toml());
    cmd.args(["bisect", "--kernel"])
        .arg(&def)
        .args(["--good", &good, "--bad", "main"])
        .args(["--test", test, "--arch", "x86_64", "--json"]);
    for k in knobs {
        cmd.args(["--knob", k]);
    }
    let r = run(&mut cmd);
    assert_eq!(r.code, 0, "a confident culprit exits 0");
    let state: serde_json::Value = serde_json::from_str(&r.stdout).expect("--json state");
    (state, h, r.stderr)
}

#[test]
fn bisect_names_the_bad_futex_commit_of_the_synthetic_history() {
    // With the amplifier knob that makes the bad commit fail nearly every run (it is in the
    // history from commit 1, the good end, on; `lab selftest` shows the amplified good kernel
    // passes futex_errno). The noisy case, a bad end that fails about a third of its runs, is
    // the series bisection below and gate.rs's.
    let (state, h, _) = bisect_git("futex_errno", &["futex_amp_spurious_wake_us=200"], None);
    assert_eq!(
        culprit_sha(&state),
        h["bad_futex"]["sha"].as_str().expect("sha")
    );
    let p = state["conclusion"]["probability"].as_f64().expect("p");
    assert!(p >= 0.95, "confidence {p}");
    assert!(!state["steps"].as_array().expect("steps").is_empty());
}

#[test]
fn bisect_names_the_bad_waitqueue_commit_with_amplifiers_on() {
    // From commit 24 on (the bad futex commit is below it and does not break pipe_excl): the
    // wait-queue commit is 33.
    let (state, h, _) = bisect_git("pipe_excl", &["wq_amp_fake_signal_pct=100"], Some(24));
    assert_eq!(
        culprit_sha(&state),
        h["bad_waitqueue"]["sha"].as_str().expect("sha")
    );
    assert!(state["conclusion"]["probability"].as_f64().expect("p") >= 0.95);
}

#[test]
fn a_crash_bisection_adopts_the_bad_end_s_warning_and_names_the_bad_epoll_commit() {
    // Without --match-crash. From commit 36 on (11 candidates; the futex and wait-queue
    // commits below it do not touch epoll), epoll_exclusive_herd passes up to 40 and crashes
    // with a WARNING in do_epoll_ctl() from 41 on, the bad epoll commit.
    let (state, h, stderr) = bisect_git("epoll_exclusive_herd", &[], Some(36));
    assert_eq!(
        culprit_sha(&state),
        h["bad_epoll"]["sha"].as_str().expect("sha")
    );
    let p = state["conclusion"]["probability"].as_f64().expect("p");
    assert!(p >= 0.95, "confidence {p}");
    assert_eq!(state["match_crash_given"], false, "no --match-crash");
    let id = state["match_crash"]
        .as_str()
        .expect("the bad end's fingerprint was adopted");
    assert!(
        stderr.contains(&format!(
            "bisecting its crash fingerprint {id} (warning:do_epoll_ctl|"
        )),
        "the adoption is announced with the fingerprint:\n{stderr}"
    );
    // The adopted id is the WARNING's, as the bad end's runs recorded it.
    let n = state["space"]["commits"].as_array().expect("commits").len() - 1;
    let bad_end = state["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|st| st["index"] == n)
        .expect("the bad end was tested");
    let results =
        PathBuf::from(bad_end["run_dir"].as_str().expect("run dir")).join("results.jsonl");
    let text = std::fs::read_to_string(&results).expect("the bad end's results.jsonl");
    let outcomes: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("an outcome"))
        .collect();
    let crashed: Vec<&serde_json::Value> = outcomes
        .iter()
        .filter(|o| o["kind"] == "kernel-crash")
        .collect();
    assert!(
        !crashed.is_empty(),
        "the bad end's runs crashed; they were: {:?}",
        outcomes.iter().map(|o| &o["kind"]).collect::<Vec<_>>()
    );
    // The first crash of the first crashed run is the one adopted; every crashed run there
    // shows it (a load-induced stall or lockup may come with it, as the classifier allows).
    let first = &crashed[0];
    assert_eq!(
        first["crashes"][0]["kind"], "warning",
        "the adopted crash is the first run's first report: {}",
        first["summary"]
    );
    assert!(
        first["summary"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("[{id}] warning:do_epoll_ctl|"))),
        "the first crashed run's summary names the adopted id {id}: {}",
        first["summary"]
    );
    for (i, o) in crashed.iter().enumerate() {
        let reports = o["crashes"].as_array().expect("crash reports");
        let kinds: Vec<&serde_json::Value> = reports.iter().map(|c| &c["kind"]).collect();
        assert!(
            reports.iter().any(|c| c["kind"] == "warning"
                && c["fingerprint"]["frames"][0] == "do_epoll_ctl"),
            "crashed run {i} at the bad end shows the adopted WARNING among its reports {kinds:?}: {}",
            o["summary"]
        );
    }
}

#[test]
fn series_bisection_names_patch_3_and_survives_an_interrupt() {
    let series = repo().join("orchestrator/tests/fixtures/gate/series-bad-futex");
    let args = [
        "bisect",
        "--series",
        series.to_str().expect("utf-8"),
        "--test",
        "futex_errno",
        "--arch",
        "x86_64",
        "--seed",
        "7",
    ];
    // Interrupt after the first step that ran, then continue.
    let mut child = lab(&lab_toml())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lab starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains(" failed; now ") {
                let _ = tx.send(());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    let stepped = rx.recv_timeout(Duration::from_secs(1200)).is_ok();
    // SAFETY: kill(2) with a valid pid and signal.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().expect("lab exits");
    let seen = reader.join().expect("reader");
    assert!(stepped, "a step finished before the interrupt:\n{seen}");
    assert_eq!(status.code(), Some(130), "Ctrl-C exits 130:\n{seen}");

    let session = seen
        .split("; session ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("the session is announced")
        .to_owned();
    let r = run(lab(&lab_toml()).args(["bisect", "--continue", "--session", &session, "--json"]));
    assert_eq!(r.code, 0, "the continued bisection is confident");
    assert!(r.stderr.contains("continuing bisection"), "{}", r.stderr);
    let state: serde_json::Value = serde_json::from_str(&r.stdout).expect("--json state");
    assert_eq!(
        state["conclusion"]["culprit"], 3,
        "patch 3 is the bad futex variant"
    );
    let log = run(lab(&lab_toml()).args(["bisect", "--log", "--session", &session]));
    assert!(log.stdout.contains("patch 3"), "{}", log.stdout);
}
