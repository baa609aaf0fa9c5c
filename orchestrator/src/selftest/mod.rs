//! The positive-control matrix: proof that the lab's own tests can fail.
//!
//! Each patch set's `expect.toml` says what must happen on its kernel: a known-bad set names
//! the tests that must fail (with the amplifier knobs that make them fail), a debug set the
//! tests that must still pass with its amplifiers switched on, a candidate the tests that
//! must pass. The base kernel must pass everything. This module reads those expectations,
//! turns them into rows, and compares what was observed with what was expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Knob;
use crate::results::{OutcomeKind, TestOutcome};

#[derive(Debug, thiserror::Error)]
pub enum SelftestError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid {path}:\n{message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
}

/// A patch set's `expect.toml` (keys documented in patches/README.md).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Expect {
    pub format_version: u32,
    pub role: Role,
    pub summary: String,
    pub requires: Vec<String>,
    pub knobs: Vec<String>,
    pub must_fail: Vec<String>,
    pub must_pass: Vec<String>,
    pub compare: Vec<String>,
    /// Tests that exercise the code this set changes: what `lab compare` runs by default
    /// when the set is on either side.
    #[serde(default)]
    pub exercises: Vec<String>,
    /// The same kernel with other knobs, each a row of its own: a test that needs a
    /// stronger setting than the set's own knobs, which would break its must-pass tests.
    #[serde(default)]
    pub variant: Vec<Variant>,
}

/// A `[[variant]]` of an `expect.toml`: other knobs on the same kernel, and what they must do.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Variant {
    pub knobs: Vec<String>,
    pub must_fail: Vec<String>,
    pub must_pass: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Candidate,
    Debug,
    KnownBad,
}

/// Reads every `<patches>/<set>/expect.toml`, sorted by set name.
pub fn load_all(patches_dir: &Path) -> Result<Vec<(String, Expect)>, SelftestError> {
    let rd = std::fs::read_dir(patches_dir).map_err(|source| SelftestError::Read {
        path: patches_dir.to_owned(),
        source,
    })?;
    let mut out = Vec::new();
    for e in rd.filter_map(Result::ok) {
        let path = e.path().join("expect.toml");
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|source| SelftestError::Read {
            path: path.clone(),
            source,
        })?;
        let ex: Expect = toml::from_str(&text).map_err(|err| SelftestError::Parse {
            path: path.clone(),
            message: err.to_string(),
        })?;
        if ex.format_version != 1 {
            return Err(SelftestError::Invalid {
                path,
                why: format!("format-version {} is not supported", ex.format_version),
            });
        }
        if let Err(why) = check(&ex) {
            return Err(SelftestError::Invalid { path, why });
        }
        out.push((e.file_name().to_string_lossy().into_owned(), ex));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// What `load_all` refuses in a parsed `expect.toml`, beyond its types.
fn check(ex: &Expect) -> Result<(), String> {
    // The knobs reach a shell in the guest: the same check as `--knob`.
    let knobs = ex
        .knobs
        .iter()
        .chain(ex.variant.iter().flat_map(|v| &v.knobs));
    if let Some(err) = knobs.filter_map(|k| k.parse::<Knob>().err()).next() {
        return Err(format!("knobs: {err}"));
    }
    // Test names reach the guest's shell too.
    let named = ex
        .must_fail
        .iter()
        .chain(&ex.must_pass)
        .chain(&ex.compare)
        .chain(&ex.exercises)
        .chain(
            ex.variant
                .iter()
                .flat_map(|v| v.must_fail.iter().chain(&v.must_pass)),
        );
    if let Some(err) = named
        .filter_map(|t| crate::config::names::check_test(t).err())
        .next()
    {
        return Err(err.to_string());
    }
    let variant_fails = ex.variant.iter().any(|v| !v.must_fail.is_empty());
    if ex.role != Role::KnownBad && (!ex.must_fail.is_empty() || variant_fails) {
        return Err("only a known-bad set may list must-fail tests".into());
    }
    if ex.role == Role::KnownBad && ex.must_fail.is_empty() {
        return Err("a known-bad set must list the tests that catch it (must-fail)".into());
    }
    if let Some(v) = ex.variant.iter().find(|v| v.knobs.is_empty()) {
        return Err(format!(
            "a [[variant]] must set knobs (it is the same kernel with other knobs): {v:?}"
        ));
    }
    Ok(())
}

/// What a test must do on a row's kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expected {
    Pass,
    Fail,
}

/// One row of the matrix: a kernel (a stack of sets), its knobs, and per-test expectations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub label: String,
    pub stack: Vec<String>,
    pub knobs: Vec<(String, String)>,
    pub expect: BTreeMap<String, Expected>,
}

/// The rows: base, each candidate, each debug set with its knobs on, each known-bad set on
/// top of what it requires with its knobs on. Base must pass `suite` and every test another
/// row names.
pub fn rows(sets: &[(String, Expect)], suite: &[String]) -> Vec<Row> {
    let mut rows = vec![Row {
        label: "base".into(),
        stack: vec![],
        knobs: vec![],
        expect: suite.iter().map(|t| (t.clone(), Expected::Pass)).collect(),
    }];
    let mut ordered: Vec<&(String, Expect)> = sets.iter().collect();
    ordered.sort_by_key(|(name, e)| (e.role, name.clone()));
    for (name, e) in ordered {
        let mut stack = e.requires.clone();
        stack.push(name.clone());
        let expect = expectations(&e.must_pass, &e.must_fail);
        let knobs = knob_pairs(&e.knobs);
        let label = match e.role {
            Role::Candidate => format!("base + {name}"),
            Role::Debug => format!("base + {name} (knobs on)"),
            // A known-bad set that needs no amplifier (it breaks on its own) sits on base.
            Role::KnownBad if e.requires.is_empty() && knobs.is_empty() => {
                format!("base + {name}")
            }
            Role::KnownBad => format!("{} (knobs on)", stack.join(" + ")),
        };
        rows.push(Row {
            label,
            stack: stack.clone(),
            knobs,
            expect,
        });
        // Each variant: the same kernel, its own knobs and expectations.
        for v in &e.variant {
            rows.push(Row {
                label: format!("{} ({})", stack.join(" + "), v.knobs.join(", ")),
                stack: stack.clone(),
                knobs: knob_pairs(&v.knobs),
                expect: expectations(&v.must_pass, &v.must_fail),
            });
        }
    }
    // Base must pass every test some row names too, not only the suite: a test that fails
    // on a known-bad kernel proves something only if it passes on the kernel without the
    // bug (third-party tests outside the suite included).
    let named: Vec<String> = rows[1..]
        .iter()
        .flat_map(|r| r.expect.keys().cloned())
        .collect();
    for t in named {
        rows[0].expect.entry(t).or_insert(Expected::Pass);
    }
    rows
}

/// A row's expectations: `must_fail` over `must_pass` where a test is in both.
fn expectations(must_pass: &[String], must_fail: &[String]) -> BTreeMap<String, Expected> {
    let pass = must_pass.iter().map(|t| (t.clone(), Expected::Pass));
    pass.chain(must_fail.iter().map(|t| (t.clone(), Expected::Fail)))
        .collect()
}

/// `NAME=VALUE` knobs as pairs (`load_all` refused any that does not parse).
fn knob_pairs(knobs: &[String]) -> Vec<(String, String)> {
    knobs
        .iter()
        .filter_map(|k| k.parse::<Knob>().ok())
        .map(|k| k.pair())
        .collect()
}

/// What was seen for one test on one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Observed {
    /// Every iteration passed.
    Pass,
    /// At least one iteration failed, crashed or hung.
    Fail,
    /// The lab could not tell: infra-errors only.
    Unknown,
}

/// Folds the iterations of one test into what was observed, with a count of bad runs.
pub fn observe(outcomes: &[&TestOutcome]) -> (Observed, usize, usize) {
    let bad = outcomes
        .iter()
        .filter(|o| o.kind.is_kernel_failure())
        .count();
    let good = outcomes
        .iter()
        .filter(|o| o.kind == OutcomeKind::Pass)
        .count();
    let obs = if bad > 0 {
        Observed::Fail
    } else if good > 0 {
        Observed::Pass
    } else {
        Observed::Unknown
    };
    (obs, bad, outcomes.len())
}

/// Whether an observation matches the expectation.
pub fn matches(expected: Expected, observed: Observed) -> bool {
    matches!(
        (expected, observed),
        (Expected::Pass, Observed::Pass) | (Expected::Fail, Observed::Fail)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(role: Role, requires: &[&str], must_fail: &[&str], must_pass: &[&str]) -> Expect {
        Expect {
            format_version: 1,
            role,
            summary: String::new(),
            requires: requires.iter().map(|s| (*s).to_owned()).collect(),
            knobs: vec!["k=1".into()],
            must_fail: must_fail.iter().map(|s| (*s).to_owned()).collect(),
            must_pass: must_pass.iter().map(|s| (*s).to_owned()).collect(),
            compare: vec![],
            exercises: vec![],
            variant: vec![],
        }
    }

    #[test]
    fn a_knob_with_shell_characters_is_refused_with_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = dir.path().join("amp");
        std::fs::create_dir(&set).expect("mkdir");
        let write = |knob: &str| {
            std::fs::write(
                set.join("expect.toml"),
                format!(
                    "format-version = 1\nrole = \"debug\"\nsummary = \"s\"\nrequires = []\nknobs = [\"{knob}\"]\nmust-fail = []\nmust-pass = [\"futex_errno\"]\ncompare = []\n"
                ),
            )
            .expect("write");
        };
        write("futex_amp_x=1");
        let sets = load_all(dir.path()).expect("a plain knob loads");
        assert_eq!(
            rows(&sets, &[])[1].knobs,
            vec![("futex_amp_x".into(), "1".into())]
        );
        write("futex_amp_x=1;reboot");
        let err = load_all(dir.path()).expect_err("a shell character");
        let msg = err.to_string();
        assert!(
            msg.contains("expect.toml") && msg.contains("knobs:"),
            "{msg}"
        );
    }

    #[test]
    fn shipped_expectations_load_and_make_the_matrix() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../patches");
        let sets = load_all(&dir).expect("shipped expect.toml files are valid");
        assert!(
            sets.iter().any(|(_, e)| e.role == Role::KnownBad),
            "there are positive controls"
        );
        let r = rows(&sets, &["futex_errno".into()]);
        assert_eq!(r[0].label, "base");
        let bad = r
            .iter()
            .find(|r| {
                r.stack
                    .last()
                    .is_some_and(|s| s == "bad-futex-no-spurious-retry")
            })
            .expect("bad futex row");
        assert_eq!(
            bad.stack,
            vec!["futex-race-amplifiers", "bad-futex-no-spurious-retry"]
        );
        assert_eq!(bad.expect.get("futex_errno"), Some(&Expected::Fail));
        assert!(!bad.knobs.is_empty());
        // Every test a row expects anything of, base must pass.
        for row in &r[1..] {
            for t in row.expect.keys() {
                assert_eq!(
                    r[0].expect.get(t),
                    Some(&Expected::Pass),
                    "{t} of {}",
                    row.label
                );
            }
        }
    }

    #[test]
    fn rows_follow_roles() {
        let sets = vec![
            ("amp".to_owned(), ex(Role::Debug, &[], &[], &["t1"])),
            (
                "bad".to_owned(),
                ex(Role::KnownBad, &["amp"], &["t1"], &["t2"]),
            ),
            (
                "cand".to_owned(),
                ex(Role::Candidate, &[], &[], &["t1", "t2"]),
            ),
            (
                "crash".to_owned(),
                Expect {
                    knobs: vec![],
                    ..ex(Role::KnownBad, &[], &["t2"], &["t1"])
                },
            ),
        ];
        let r = rows(&sets, &["t1".into(), "t2".into()]);
        let labels: Vec<&str> = r.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(
            labels,
            vec![
                "base",
                "base + cand",
                "base + amp (knobs on)",
                "amp + bad (knobs on)",
                "base + crash"
            ]
        );
        assert_eq!(r[4].stack, vec!["crash"]);
        assert_eq!(r[3].expect["t1"], Expected::Fail);
        assert_eq!(r[3].expect["t2"], Expected::Pass);
    }

    #[test]
    fn a_variant_is_a_row_of_the_same_kernel_with_its_own_knobs() {
        let mut bad = ex(Role::KnownBad, &[], &["t1"], &["t2"]);
        bad.variant = vec![Variant {
            knobs: vec!["k=9".into()],
            must_fail: vec!["t3".into()],
            must_pass: vec![],
        }];
        let r = rows(&[("inj".to_owned(), bad.clone())], &["t1".into()]);
        let labels: Vec<&str> = r.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, vec!["base", "inj (knobs on)", "inj (k=9)"]);
        assert_eq!(r[2].stack, r[1].stack, "the same kernel");
        assert_eq!(r[2].knobs, vec![("k".into(), "9".into())]);
        assert_eq!(r[2].expect.len(), 1, "only the variant's own expectations");
        assert_eq!(r[2].expect["t3"], Expected::Fail);
        assert_eq!(r[0].expect["t3"], Expected::Pass, "base must pass it");

        let mut no_knobs = bad.clone();
        no_knobs.variant[0].knobs.clear();
        assert!(check(&no_knobs).unwrap_err().contains("[[variant]]"));
        let mut shell = bad.clone();
        shell.variant[0].knobs = vec!["k=1;reboot".into()];
        assert!(check(&shell).unwrap_err().contains("knobs:"));
        let mut debug = bad;
        debug.role = Role::Debug;
        debug.must_fail.clear();
        assert!(check(&debug).unwrap_err().contains("must-fail"));
    }

    #[test]
    fn observations_and_matching() {
        use crate::arch::Arch;
        let o = |k| TestOutcome {
            kind: k,
            ..TestOutcome::infra("t", Arch::X86_64, 0, 0, String::new())
        };
        let (p, f, i) = (
            o(OutcomeKind::Pass),
            o(OutcomeKind::Fail),
            o(OutcomeKind::InfraError),
        );
        assert_eq!(observe(&[&p, &p]).0, Observed::Pass);
        assert_eq!(observe(&[&p, &f]), (Observed::Fail, 1, 2));
        assert_eq!(observe(&[&i]).0, Observed::Unknown);
        assert_eq!(observe(&[&p, &i]).0, Observed::Pass);
        assert!(matches(Expected::Fail, Observed::Fail));
        assert!(!matches(Expected::Fail, Observed::Pass));
        assert!(
            !matches(Expected::Pass, Observed::Unknown),
            "an unknown cell is a mismatch: the control was not shown"
        );
    }
}
