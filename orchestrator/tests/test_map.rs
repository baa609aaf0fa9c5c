//! `lab compare` on a plain patch chooses its tests with guest-tests/test-map.toml and says
//! why; `--plan` shows the choice without building (the comparison itself makes the same
//! choice through the same code, `compare::session::choose`).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

fn plan(patch: &str, extra: &[&str]) -> common::Ran {
    let fixture = common::repo()
        .join("orchestrator/tests/fixtures/map")
        .join(patch);
    common::run(
        common::lab(&common::repo_lab_toml())
            .args(["compare", "base"])
            .arg(&fixture)
            .args(["--arch", "x86_64", "--plan"])
            .args(extra),
    )
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {out}"))
}

#[test]
fn a_patch_to_futex_waitwake_runs_the_futex_tests_with_the_futex_amplifiers() {
    let r = plan("futex-waitwake-comment.patch", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "futex wait and wake: the patch changes kernel/futex/waitwake.c (futex_wake())"
        ),
        "{}",
        r.stderr
    );
    let tests = line(&r.stdout, "tests: ");
    assert!(tests.contains("futex_errno") && tests.contains("kselftest:futex/futex_waitv"));
    assert!(!tests.contains("pipe_excl"), "{tests}");
    assert_eq!(line(&r.stdout, "A: "), "futex-race-amplifiers");
    assert!(line(&r.stdout, "B: ").starts_with("futex-race-amplifiers + "));
    assert!(line(&r.stdout, "knobs: ").contains("futex_amp_wake_delay_us=200"));
    assert!(r
        .stderr
        .contains("race amplifiers stacked under both sides"));

    let r = plan("futex-waitwake-comment.patch", &["--no-amplify"]);
    assert_eq!(line(&r.stdout, "A: "), "base");
    assert!(
        r.stderr.contains("not stacked: --no-amplify"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_patch_to_sched_wait_runs_the_wait_queue_tests() {
    let r = plan("sched-wait-comment.patch", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("wait queues: the patch changes kernel/sched/wait.c (__wake_up_common())"),
        "{}",
        r.stderr
    );
    let tests = line(&r.stdout, "tests: ");
    assert!(tests.contains("pipe_excl") && tests.contains("epoll_exclusive_herd"));
    assert!(!tests.contains("futex_errno"), "{tests}");
    assert_eq!(line(&r.stdout, "A: "), "waitqueue-race-amplifiers");
}

#[test]
fn a_patch_the_map_does_not_cover_runs_the_suite_and_says_so() {
    let r = plan("docs-only.patch", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("no area of the test map covers Documentation/locking/futex-requeue-pi.rst"),
        "{}",
        r.stderr
    );
    assert_eq!(line(&r.stdout, "A: "), "base");
    // `--tests all`: the suite and every test of the map.
    let r = plan("docs-only.patch", &["--tests", "all"]);
    let tests = line(&r.stdout, "tests: ");
    assert!(tests.contains("rt:svsematest") && tests.contains("kselftest:futex/futex_requeue_pi"));
}

#[test]
fn a_known_bad_set_is_compared_on_top_of_the_amplifiers_it_requires() {
    let plan = |args: &[&str]| {
        common::run(
            common::lab(&common::repo_lab_toml())
                .args(["compare", "base", "bad-futex-no-spurious-retry"])
                .args(["--arch", "x86_64", "--plan"])
                .args(args),
        )
    };
    let r = plan(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(line(&r.stdout, "A: "), "futex-race-amplifiers");
    assert_eq!(
        line(&r.stdout, "B: "),
        "futex-race-amplifiers + bad-futex-no-spurious-retry"
    );
    assert!(line(&r.stdout, "knobs: ").contains("futex_amp_spurious_wake_us=200"));
    assert!(
        r.stderr
            .contains("(bad-futex-no-spurious-retry requires them): futex-race-amplifiers"),
        "{}",
        r.stderr
    );

    let r = plan(&["--no-amplify"]);
    assert_eq!(line(&r.stdout, "A: "), "base");
    assert_eq!(line(&r.stdout, "B: "), "bad-futex-no-spurious-retry");
    assert!(
        r.stderr.contains("not stacked: --no-amplify"),
        "{}",
        r.stderr
    );

    // A side that names the amplifier itself keeps its own knobs (off unless asked for).
    let r = common::run(
        common::lab(&common::repo_lab_toml())
            .args(["compare", "futex-race-amplifiers"])
            .arg("futex-race-amplifiers,bad-futex-no-spurious-retry")
            .args(["--arch", "x86_64", "--plan"]),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(line(&r.stdout, "A: "), "futex-race-amplifiers");
    assert!(
        !r.stderr.contains("stacked under both sides"),
        "{}",
        r.stderr
    );
}
