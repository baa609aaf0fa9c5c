//! The shape of the crate, checked: which top-level module may import which (lower floors
//! never import higher ones, so there is no cycle), no verb imports another verb, and no
//! source file grows past a size a newcomer can read. `../shared/ARCHITECTURE.md` explains
//! the floors; this test keeps them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "integration tests: a failed expectation panics with its message, and the test log shows what lab printed"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The floors, lowest first. A module may import only modules on lower floors.
const FLOORS: &[&[&str]] = &[
    // Leaves: facts and helpers that know nothing of the rest.
    &["arch", "io_error", "term", "stats"],
    &["process", "config"],
    // Nouns: kernels, guest images, transports, the result model and its store.
    &["kernel", "guest", "transport", "results"],
    &["vm"],
    // One boot, its tests, its record.
    &["run"],
    // Engines.
    &["compare", "selftest", "bisect"],
    &["report"],
    &["gate"],
    // The edge: typed errors and clap types.
    &["errors", "cli"],
    // Verbs: args -> request -> engine -> renderer.
    &["commands"],
];

/// Non-test lines a source file may hold.
const MAX_LINES: usize = 800;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn floor(module: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir)
        .expect("read src")
        .filter_map(Result::ok)
    {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The file without its test module and without comments: what ships.
fn shipped_code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `crate::name` paths a file mentions, by the top module they name.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn top_module(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

struct File {
    rel: PathBuf,
    top: String,
    code: String,
}

fn files() -> Vec<File> {
    let root = src();
    let mut paths = Vec::new();
    rust_files(&root, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).expect("under src").to_owned();
            let text = std::fs::read_to_string(&p).expect("read source");
            File {
                top: top_module(&rel),
                code: shipped_code(&text),
                rel,
            }
        })
        .collect()
}

#[test]
fn modules_import_only_lower_floors() {
    // The crate-root macros of `term` (outln!, errln!, out!) are `crate::outln!`.
    let macros = ["outln", "out", "errln"];
    let mut bad = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files() {
        if matches!(f.top.as_str(), "lib" | "main") {
            continue;
        }
        let Some(from) = floor(&f.top) else {
            bad.push(format!(
                "{}: module {} has no floor in tests/architecture.rs",
                f.rel.display(),
                f.top
            ));
            continue;
        };
        for to in imports(&f.code) {
            if to == f.top || macros.contains(&to.as_str()) {
                continue;
            }
            graph.entry(f.top.clone()).or_default().insert(to.clone());
            match floor(&to) {
                Some(t) if t < from => {}
                _ => bad.push(format!(
                    "{}: {} (floor {from}) imports {to} (floor {:?})",
                    f.rel.display(),
                    f.top,
                    floor(&to)
                )),
            }
        }
    }
    assert!(
        bad.is_empty(),
        "imports against the floors:\n{}",
        bad.join("\n")
    );
    assert!(
        graph.values().map(BTreeSet::len).sum::<usize>() > 20,
        "the scan found too few imports to mean anything: {graph:?}"
    );
}

#[test]
fn no_verb_imports_another_verb() {
    let mut bad = Vec::new();
    for f in files() {
        let parts: Vec<String> = f
            .rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.first().map(String::as_str) != Some("commands") || parts.len() != 2 {
            continue;
        }
        let verb = parts[1].trim_end_matches(".rs");
        // `progress` is the renderers' build progress bar, not a verb.
        if verb == "mod" || verb == "progress" {
            continue;
        }
        let verbs = std::fs::read_dir(src().join("commands"))
            .expect("commands/")
            .filter_map(Result::ok)
            .map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_owned()
            })
            .filter(|v| v != "mod" && v != "progress" && v != verb);
        for other in verbs {
            for pat in [
                format!("super::{other}::"),
                format!("super::{other}}}"),
                format!("commands::{other}::"),
            ] {
                if f.code.contains(&pat) {
                    bad.push(format!("commands/{verb}.rs uses {pat}"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "verbs importing verbs:\n{}", bad.join("\n"));
}

#[test]
fn no_source_file_is_a_big_room() {
    let mut big = Vec::new();
    for f in files() {
        let n = f.code.lines().filter(|l| !l.trim().is_empty()).count();
        if n > MAX_LINES {
            big.push(format!("{}: {n} lines of code", f.rel.display()));
        }
    }
    assert!(
        big.is_empty(),
        "split these along their concerns (at most {MAX_LINES} non-test, non-comment, non-blank lines):\n{}",
        big.join("\n")
    );
}

#[test]
fn the_checks_can_fail() {
    // The scanner sees an import in code and ignores one in a comment or a test module.
    let code = shipped_code(
        "use crate::vm::qemu;\n// crate::gate in a comment\n#[cfg(test)]\nmod tests { use crate::commands; }\n",
    );
    assert_eq!(imports(&code), BTreeSet::from(["vm".to_owned()]), "{code}");
    assert!(floor("vm") < floor("run"));
    assert!(floor("results") < floor("vm"), "results must not import vm");
    assert_eq!(floor("nonexistent"), None);
}
