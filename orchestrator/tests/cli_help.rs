//! Every verb's `--help`, byte for byte: the command line is an interface, and a refactor of
//! the argument types must not change it by accident. Accept an intended change with
//! `cargo insta review` (or `INSTA_UPDATE=always cargo test --test cli_help`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]

mod common;

use std::process::Command;

/// Every verb and sub-verb, as the words typed after `lab`.
const VERBS: &[&[&str]] = &[
    &[],
    &["build"],
    &["run"],
    &["selftest"],
    &["cache"],
    &["cache", "list"],
    &["cache", "show"],
    &["cache", "prune"],
    &["compare"],
    &["results"],
    &["results", "list"],
    &["results", "show"],
    &["results", "runs"],
    &["results", "export"],
    &["bisect"],
    &["bisect-step"],
    &["gate"],
    &["worker"],
    &["worker", "run"],
    &["worker", "build"],
    &["lava"],
    &["lava", "job"],
    &["lava", "ingest"],
];

#[test]
fn every_verb_help_matches_its_snapshot() {
    for verb in VERBS {
        let out = Command::new(env!("CARGO_BIN_EXE_lab"))
            .args(*verb)
            .arg("--help")
            .env("COLUMNS", "100")
            .env_remove("LAB_TOML")
            .output()
            .expect("lab runs");
        assert!(out.status.success(), "lab {verb:?} --help exits 0");
        let name = if verb.is_empty() {
            "help_lab".to_owned()
        } else {
            format!("help_{}", verb.join("_"))
        };
        insta::assert_snapshot!(name, String::from_utf8_lossy(&out.stdout));
    }
}
