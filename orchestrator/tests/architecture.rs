//! The shape of the crate, checked: which top-level module may import which (lower floors
//! never import higher ones, so there is no cycle), no verb imports another verb, and no
//! source file grows past a size a newcomer can read. `../shared/ARCHITECTURE.md` explains
//! the floors; this test keeps them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The floors, lowest first, by module path (a submodule named here has its own floor; any
/// other file takes the floor of its nearest named parent). A file may import only modules on
/// lower floors, so no import cycle can form.
///
/// The typed edge (`errors`) sits below the engines, not at the top: engines return the typed
/// `LabError`, and `errors` wraps the errors of the nouns and pure modules beneath it (a
/// patch, a store, checkpatch, b4's mail, the search), never an engine's.
const FLOORS: &[&[&str]] = &[
    // Leaves: facts and helpers that know nothing of the rest.
    &["arch", "io_error", "term", "stats"],
    &["process", "config"],
    // Nouns: kernels, guest images, transports, the result model and its store.
    &["kernel", "guest", "transport", "results"],
    &["vm"],
    // One boot, its tests, its record.
    &["run"],
    // Where runs happen: the executors that build and boot for the verbs.
    &["exec"],
    // Pure models and the comparison loop: the positive-control matrix, the bisection search
    // and its state, compare's questions and loop, gate's checks and report, the exporters.
    &["selftest", "bisect", "compare", "gate"],
    &["report"],
    // Gate's report renders a comparison's verdicts with the exporters.
    &["gate/report"],
    // The typed edge.
    &["errors"],
    // Engines: a whole verb's work, events out, typed errors back.
    &["compare/session", "bisect/step", "gate/series"],
    &["bisect/driver"],
    &["gate/pipeline"],
    // Clap types.
    &["cli"],
    // Verbs: args -> request -> engine -> renderer.
    &["commands"],
];

/// Non-test lines a source file may hold.
const MAX_LINES: usize = 800;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn floor(module: &str) -> Option<usize> {
    let mut path = module;
    loop {
        if let Some(f) = FLOORS.iter().position(|f| f.contains(&path)) {
            return Some(f);
        }
        path = &path[..path.rfind('/')?];
    }
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

/// `crate::a::b` paths a file mentions, as `a/b` (or `a` when only that is named). A brace
/// group (`crate::a::{b, c}`) counts as `a`, which is the stricter reading.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).take(2).collect();
        if let Some(first) = parts.first() {
            // Only lower-case names are modules; `crate::a::Type` names `a`.
            let second = parts
                .get(1)
                .filter(|p| p.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
            out.insert(match second {
                Some(m) => format!("{first}/{m}"),
                None => (*first).to_owned(),
            });
        }
    }
    out
}

/// `gate/pipeline.rs` -> `gate/pipeline`, `gate/b4/mail.rs` -> `gate/b4/mail`,
/// `gate/mod.rs` -> `gate`.
fn module_path(rel: &Path) -> String {
    let s = rel.to_string_lossy();
    let s = s.trim_end_matches(".rs");
    s.strip_suffix("/mod").unwrap_or(s).to_owned()
}

struct File {
    rel: PathBuf,
    module: String,
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
                module: module_path(&rel),
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
    let mut edges = 0;
    for f in files() {
        if matches!(f.module.as_str(), "lib" | "main") {
            continue;
        }
        let Some(from) = floor(&f.module) else {
            bad.push(format!(
                "{}: module {} has no floor in tests/architecture.rs",
                f.rel.display(),
                f.module
            ));
            continue;
        };
        let own_top = f.module.split('/').next().unwrap_or_default();
        for to in imports(&f.code) {
            if macros.contains(&to.as_str()) {
                continue;
            }
            // Within one top module, only a submodule with a floor of its own is checked
            // (an engine file importing its module's pure parts is the point of the split).
            let to_top = to.split('/').next().unwrap_or_default();
            let to_floor = floor(&to);
            if to_top == own_top && to_floor == floor(own_top) {
                continue;
            }
            edges += 1;
            match to_floor {
                Some(t) if t < from => {}
                _ => bad.push(format!(
                    "{}: {} (floor {from}) imports {to} (floor {to_floor:?})",
                    f.rel.display(),
                    f.module,
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
        edges > 50,
        "the scan found too few imports ({edges}) to mean anything"
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
    assert_eq!(
        imports(&code),
        BTreeSet::from(["vm/qemu".to_owned()]),
        "{code}"
    );
    assert_eq!(
        imports("use crate::gate::{b4, pipeline};\nuse crate::arch::Arch;\n"),
        BTreeSet::from(["gate".to_owned(), "arch".to_owned()])
    );
    assert!(floor("vm") < floor("run"));
    assert!(floor("results") < floor("vm"), "results must not import vm");
    assert!(
        floor("gate/b4/mail") < floor("errors"),
        "a parser sits under the edge"
    );
    assert!(
        floor("gate/pipeline") > floor("errors"),
        "an engine sits above it"
    );
    assert!(floor("commands/compare") > floor("gate/pipeline"));
    assert_eq!(floor("nonexistent"), None);
}
