//! Compiler warnings in kbuild logs, and which of them a patch series added.
//!
//! A maintainer's first build of a series with `W=1` (or just the default flags) shows every
//! warning the series introduces; the gate must say so first. kbuild prints gcc's and clang's
//! diagnostics as they are (`path:line:col: warning: message [-Wflag]`), where the path is
//! whatever kbuild passed the compiler: relative to the source tree for an in-tree build,
//! `../kernel/...` when the `O=` folder sits inside the tree, and the absolute `$(srctree)/...`
//! otherwise (the top `Makefile` decides `srctree`), which is what lab's builds print since its
//! build folders live apart from its work tree. objtool adds `path.o: warning: objtool: ...`.
//!
//! Paths are made tree-relative using the folders make says it enters (`make[1]: Entering
//! directory '...'`) and by dropping `./` and `../`; matching a warning against the files a
//! patch touched also accepts a path that ends in `/<touched file>`, so that a log with an
//! unknown absolute prefix still matches.
//!
//! Deciding what is new compares the warnings of the touched files before and after the
//! patch on (file, flag, message), never on line numbers, since the patch shifts them, and
//! counts multiplicity: two identical warnings before and three after make one new warning.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    /// `error:` and `fatal error:` (also a warning promoted by `-Werror`).
    Error,
}

/// One diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct CompilerWarning {
    /// Tree-relative when lab could tell the tree (`kernel/futex/core.c`).
    pub file: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub severity: Severity,
    /// The message without the flag, with typographic quotes made plain (`'x'`), since the
    /// compiler picks them by locale.
    pub message: String,
    /// `-Wunused-variable` (a `-Werror=` prefix is folded in); None for diagnostics that have
    /// no flag (hard errors, objtool).
    pub flag: Option<String>,
}

/// The folders a make log says it works in: `make[1]: Entering directory '/x'` and lab's own
/// `### lab: make ... in /x` header.
fn log_roots(log: &str) -> Vec<String> {
    let mut roots = BTreeSet::new();
    for line in log.lines() {
        if let Some((_, rest)) = line.split_once(": Entering directory ") {
            let dir = rest
                .trim()
                .trim_matches(|c| c == '\'' || c == '`' || c == '"');
            if dir.starts_with('/') {
                roots.insert(dir.trim_end_matches('/').to_owned());
            }
        } else if let Some(rest) = line.strip_prefix("### lab: make ") {
            if let Some((_, dir)) = rest.rsplit_once(" in ") {
                if dir.starts_with('/') {
                    roots.insert(dir.trim().trim_end_matches('/').to_owned());
                }
            }
        }
    }
    // Longest first, so that a build folder inside the tree wins over the tree.
    let mut roots: Vec<String> = roots.into_iter().collect();
    roots.sort_by_key(|r| std::cmp::Reverse(r.len()));
    roots
}

/// Makes a diagnostic's path tree-relative where it can.
fn normalise_path(path: &str, roots: &[String]) -> String {
    let mut p = path;
    for root in roots {
        if let Some(rest) = p.strip_prefix(root.as_str()) {
            if let Some(rest) = rest.strip_prefix('/') {
                p = rest;
                break;
            }
        }
    }
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix("../") {
            p = rest;
        } else {
            break;
        }
    }
    p.replace("/./", "/")
}

/// Removes ANSI colour sequences (`ESC [ ... m`), in case a log was made with
/// `-fdiagnostics-color=always`.
fn strip_ansi(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains('\u{1b}') {
        return line.into();
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// `-Werror=unused-variable` → `-Wunused-variable`; clang's `-Werror,-Wunused-variable` too.
fn normalise_flag(inner: &str) -> Option<String> {
    if inner == "enabled by default" {
        return Some(inner.to_owned());
    }
    let flag = inner
        .split(',')
        .map(str::trim)
        .find(|f| *f != "-Werror")
        .unwrap_or(inner);
    if let Some(rest) = flag.strip_prefix("-Werror=") {
        return Some(format!("-W{rest}"));
    }
    flag.starts_with("-W").then(|| flag.to_owned())
}

/// Splits `message [-Wflag]`.
fn split_flag(message: &str) -> (String, Option<String>) {
    let m = message.trim_end();
    if let Some(open) = m.rfind(" [") {
        if let Some(inner) = m[open + 2..].strip_suffix(']') {
            if let Some(flag) = normalise_flag(inner) {
                return (m[..open].to_owned(), Some(flag));
            }
        }
    }
    (m.to_owned(), None)
}

/// `path:line:col`, `path:line` or `path` → its parts.
fn split_location(loc: &str) -> Option<(&str, Option<u32>, Option<u32>)> {
    let mut path = loc;
    let mut nums = Vec::new();
    for _ in 0..2 {
        match path.rsplit_once(':') {
            Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                nums.push(n.parse::<u32>().ok()?);
                path = head;
            }
            _ => break,
        }
    }
    if path.is_empty() || path.contains(char::is_whitespace) {
        return None;
    }
    nums.reverse();
    Some((path, nums.first().copied(), nums.get(1).copied()))
}

/// Parses gcc/clang diagnostics (`warning:`, `error:`, `fatal error:`) and objtool's
/// per-object warnings out of a kbuild log. Context lines (`In function`, `In file included
/// from`, `note:`, the quoted source and carets) and make's own messages are skipped, as are
/// diagnostics without a file and line (`ld: warning: ...`, `cc1: error: ...`).
pub fn parse_warnings(log: &str) -> Vec<CompilerWarning> {
    let roots = log_roots(log);
    let mut out = Vec::new();
    for raw in log.lines() {
        let line = strip_ansi(raw);
        let line = line.trim_end_matches('\r');
        let found = [
            (": warning: ", Severity::Warning),
            (": error: ", Severity::Error),
            (": fatal error: ", Severity::Error),
        ]
        .into_iter()
        .filter_map(|(marker, sev)| line.find(marker).map(|at| (at, marker, sev)))
        .min_by_key(|(at, _, _)| *at);
        let Some((at, marker, severity)) = found else {
            continue;
        };
        let Some((path, line_no, column)) = split_location(&line[..at]) else {
            continue;
        };
        // Without a line number only an object file is a file (objtool); `ld`, `cc1` and
        // friends are tools.
        if line_no.is_none() && !path.ends_with(".o") {
            continue;
        }
        let (message, flag) = split_flag(&line[at + marker.len()..]);
        out.push(CompilerWarning {
            file: normalise_path(path, &roots),
            line: line_no,
            column,
            severity,
            message: message.replace(['\u{2018}', '\u{2019}'], "'"),
            flag,
        });
    }
    out
}

/// The touched file a diagnostic's path is about, if any: the same path, a path ending in
/// `/<touched>`, or (objtool) the object built from a touched `.c` or `.S`.
fn touched_match<'a>(file: &str, touched: &'a [String]) -> Option<&'a str> {
    let same = |f: &str, t: &str| f == t || f.ends_with(&format!("/{t}"));
    touched.iter().map(String::as_str).find(|t| {
        if same(file, t) {
            return true;
        }
        let obj = t
            .strip_suffix(".c")
            .or_else(|| t.strip_suffix(".S"))
            .map(|stem| format!("{stem}.o"));
        file.ends_with(".o") && obj.is_some_and(|o| same(file, &o))
    })
}

type Key = (String, Option<String>, String);

/// Where a warning sits: line and column.
type Place = (Option<u32>, Option<u32>);

fn key(w: &CompilerWarning) -> Key {
    (w.file.clone(), w.flag.clone(), w.message.clone())
}

/// Identical diagnostics at the same place are one warning: a header's warning is printed once
/// per compilation unit that includes it.
fn dedup(ws: &[CompilerWarning]) -> Vec<CompilerWarning> {
    let mut seen = BTreeSet::new();
    ws.iter().filter(|w| seen.insert(*w)).cloned().collect()
}

/// The warnings of `after` that `before` does not have, by (file, flag, message) with
/// multiplicity, whatever file they are in. Where an `after` warning sits exactly where a
/// `before` one did, that one is taken as the old one first.
pub fn diff_warnings(
    before: &[CompilerWarning],
    after: &[CompilerWarning],
) -> Vec<CompilerWarning> {
    let before = dedup(before);
    let after = dedup(after);
    let mut old: BTreeMap<Key, Vec<Place>> = BTreeMap::new();
    for w in &before {
        old.entry(key(w)).or_default().push((w.line, w.column));
    }
    let mut is_old = vec![false; after.len()];
    // Unshifted ones first...
    for (i, w) in after.iter().enumerate() {
        if let Some(locs) = old.get_mut(&key(w)) {
            if let Some(pos) = locs.iter().position(|&l| l == (w.line, w.column)) {
                locs.swap_remove(pos);
                is_old[i] = true;
            }
        }
    }
    // ...then any left, in order.
    for (i, w) in after.iter().enumerate() {
        if is_old[i] {
            continue;
        }
        if let Some(locs) = old.get_mut(&key(w)) {
            if locs.pop().is_some() {
                is_old[i] = true;
            }
        }
    }
    after
        .into_iter()
        .zip(is_old)
        .filter_map(|(w, old)| (!old).then_some(w))
        .collect()
}

/// The warnings the patch added to the files it touched (sources and headers): those of
/// `after` in `touched_files` that `before` does not have (see [`diff_warnings`]). Returned
/// with the touched file's tree-relative path.
pub fn new_warnings(
    before: &[CompilerWarning],
    after: &[CompilerWarning],
    touched_files: &[String],
) -> Vec<CompilerWarning> {
    let in_touched = |ws: &[CompilerWarning]| -> Vec<CompilerWarning> {
        ws.iter()
            .filter_map(|w| {
                let t = touched_match(&w.file, touched_files)?;
                let mut w = w.clone();
                if !w.file.ends_with(".o") {
                    t.clone_into(&mut w.file);
                }
                Some(w)
            })
            .collect()
    };
    diff_warnings(&in_touched(before), &in_touched(after))
}

impl std::fmt::Display for CompilerWarning {
    /// `file:line: message [-Wflag]`, as a gate cell shows it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}",
            self.file,
            self.line.unwrap_or(0),
            self.message
        )?;
        match &self.flag {
            Some(flag) => write!(f, " [{flag}]"),
            None => Ok(()),
        }
    }
}

/// Each file's warnings in a build log, by tree-relative path. A file the log compiled (a
/// `CC` line) without a warning maps to none, so that the gate learns it is clean now; a file
/// the log never compiled is absent, since an incremental build says nothing about it.
pub fn warnings_by_file(log: &str) -> BTreeMap<String, Vec<CompilerWarning>> {
    // The O= tree's log grows with every build in it: only the last kernel build counts.
    let log = log
        .rmatch_indices("### lab: make ")
        .map(|(i, _)| &log[i..])
        .find(|section| {
            section
                .lines()
                .next()
                .is_some_and(|header| !header.contains("config"))
        })
        .unwrap_or(log);
    let mut map: BTreeMap<String, Vec<CompilerWarning>> = BTreeMap::new();
    for line in log.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("CC ") {
            let obj = rest.trim();
            if let Some(stem) = obj.strip_suffix(".o") {
                map.entry(format!("{stem}.c")).or_default();
            }
        }
    }
    for w in parse_warnings(log) {
        map.entry(w.file.clone()).or_default().push(w);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lab build log: absolute `$(srctree)` paths, gcc 12 excerpts and carets.
    const LAB_LOG: &str = "\
### lab: make bzImage vmlinux in /root/.cache/lab/build/tar-585a4a074597-x86_64-9b2ef72ad685
make: Entering directory '/root/.cache/lab/work/tar-585a4a074597/src'
make[1]: Entering directory '/root/.cache/lab/build/tar-585a4a074597-x86_64-9b2ef72ad685'
  CC      kernel/futex/core.o
/root/.cache/lab/work/tar-585a4a074597/src/kernel/futex/core.c: In function \u{2018}futex_hash\u{2019}:
/root/.cache/lab/work/tar-585a4a074597/src/kernel/futex/core.c:117:13: warning: unused variable \u{2018}unused\u{2019} [-Wunused-variable]
  117 |         int unused;
      |             ^~~~~~
At top level:
/root/.cache/lab/work/tar-585a4a074597/src/kernel/futex/core.c:52:13: warning: \u{2018}futex_debug_knob\u{2019} defined but not used [-Wunused-function]
   52 | static void futex_debug_knob(void)
      |             ^~~~~~~~~~~~~~~~
  CC      kernel/futex/waitwake.o
In file included from /root/.cache/lab/work/tar-585a4a074597/src/kernel/futex/waitwake.c:6:
/root/.cache/lab/work/tar-585a4a074597/src/kernel/futex/futex.h:40:19: warning: \u{2018}futex_amp_us\u{2019} defined but not used [-Wunused-const-variable=]
   40 | static const long futex_amp_us = 200;
      |                   ^~~~~~~~~~~~
/root/.cache/lab/work/tar-585a4a074597/src/kernel/futex/waitwake.c:140:2: note: in expansion of macro \u{2018}WARN_ON\u{2019}
  CC      kernel/futex/requeue.o
In file included from /root/.cache/lab/work/tar-585a4a074597/src/kernel/futex/requeue.c:8:
/root/.cache/lab/work/tar-585a4a074597/src/kernel/futex/futex.h:40:19: warning: \u{2018}futex_amp_us\u{2019} defined but not used [-Wunused-const-variable=]
  AR      kernel/futex/built-in.a
kernel/futex/core.o: warning: objtool: futex_wake+0x1a0: unreachable instruction
ld: warning: creating DT_TEXTREL in a PIE
cc1: some warnings being treated as errors
make[1]: Leaving directory '/root/.cache/lab/build/tar-585a4a074597-x86_64-9b2ef72ad685'
";

    #[test]
    fn parses_a_lab_build_log() {
        let ws = parse_warnings(LAB_LOG);
        assert_eq!(ws.len(), 5, "{ws:#?}");
        assert_eq!(
            ws[0],
            CompilerWarning {
                file: "kernel/futex/core.c".into(),
                line: Some(117),
                column: Some(13),
                severity: Severity::Warning,
                message: "unused variable 'unused'".into(),
                flag: Some("-Wunused-variable".into()),
            }
        );
        assert_eq!(ws[1].message, "'futex_debug_knob' defined but not used");
        assert_eq!(ws[1].flag.as_deref(), Some("-Wunused-function"));
        assert_eq!(ws[2].file, "kernel/futex/futex.h");
        assert_eq!(ws[2].flag.as_deref(), Some("-Wunused-const-variable="));
        assert_eq!(ws[3], ws[2], "the header warning, once per unit");
        assert_eq!(ws[4].file, "kernel/futex/core.o");
        assert_eq!(ws[4].line, None);
        assert_eq!(ws[4].flag, None);
        assert_eq!(
            ws[4].message,
            "objtool: futex_wake+0x1a0: unreachable instruction"
        );
    }

    #[test]
    fn normalises_relative_and_in_tree_paths() {
        let log = "\
../kernel/futex/core.c:10:5: warning: unused variable 'a' [-Wunused-variable]
./include/linux/futex.h:3:1: warning: 'b' defined but not used [-Wunused-variable]
kernel/sched/wait.c:200:9: error: implicit declaration of function 'foo' [-Werror=implicit-function-declaration]
kernel/sched/wait.c:201:9: error: 'x' undeclared (first use in this function)
/home/me/linux/kernel/sched/wait.c:7:1: fatal error: linux/nope.h: No such file or directory
kernel/sched/wait.c:12:3: warning: unused variable 'c' [-Werror,-Wunused-variable]
Makefile:1200: warning: overriding recipe for target 'foo'
";
        let ws = parse_warnings(log);
        let files: Vec<&str> = ws.iter().map(|w| w.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "kernel/futex/core.c",
                "include/linux/futex.h",
                "kernel/sched/wait.c",
                "kernel/sched/wait.c",
                "/home/me/linux/kernel/sched/wait.c",
                "kernel/sched/wait.c",
                "Makefile",
            ]
        );
        assert_eq!(ws[2].severity, Severity::Error);
        assert_eq!(
            ws[2].flag.as_deref(),
            Some("-Wimplicit-function-declaration")
        );
        assert_eq!(ws[3].flag, None);
        assert_eq!(ws[4].severity, Severity::Error);
        assert_eq!(ws[4].column, Some(1));
        assert_eq!(ws[5].flag.as_deref(), Some("-Wunused-variable"));
        assert_eq!(ws[6].line, Some(1200));
        assert_eq!(ws[6].column, None);
    }

    #[test]
    fn skips_context_and_tool_lines() {
        let log = "\
kernel/futex/core.c: In function 'futex_hash':
kernel/futex/core.c:99:1: note: declared here
In file included from kernel/futex/core.c:3:
   99 | int x;
make[4]: *** [scripts/Makefile.build:229: kernel/futex/core.o] Error 1
ld.lld: error: undefined symbol: foo
cc1: error: unrecognized command-line option '-mfoo'
";
        assert!(parse_warnings(log).is_empty());
    }

    #[test]
    fn strips_colour() {
        let log = "\u{1b}[01m\u{1b}[Kkernel/futex/core.c:5:3:\u{1b}[m\u{1b}[K \u{1b}[01;35m\u{1b}[Kwarning: \u{1b}[m\u{1b}[Kunused variable 'a' [\u{1b}[01;35m\u{1b}[K-Wunused-variable\u{1b}[m\u{1b}[K]";
        let ws = parse_warnings(log);
        assert_eq!(ws.len(), 1);
        assert_eq!(ws[0].file, "kernel/futex/core.c");
        assert_eq!(ws[0].flag.as_deref(), Some("-Wunused-variable"));
    }

    fn w(file: &str, line: u32, msg: &str) -> CompilerWarning {
        CompilerWarning {
            file: file.into(),
            line: Some(line),
            column: Some(5),
            severity: Severity::Warning,
            message: msg.into(),
            flag: Some("-Wunused-variable".into()),
        }
    }

    fn touched() -> Vec<String> {
        vec!["kernel/futex/core.c".into(), "kernel/futex/futex.h".into()]
    }

    #[test]
    fn shifted_lines_are_not_new() {
        let before = [w("kernel/futex/core.c", 100, "unused variable 'a'")];
        let after = [w("kernel/futex/core.c", 112, "unused variable 'a'")];
        assert!(new_warnings(&before, &after, &touched()).is_empty());
    }

    #[test]
    fn multiplicity_counts() {
        let m = "unused variable 'ret'";
        let before = [
            w("kernel/futex/core.c", 10, m),
            w("kernel/futex/core.c", 50, m),
        ];
        let after = [
            w("kernel/futex/core.c", 10, m),
            w("kernel/futex/core.c", 30, m),
            w("kernel/futex/core.c", 58, m),
        ];
        let new = new_warnings(&before, &after, &touched());
        assert_eq!(new.len(), 1, "{new:#?}");
        // Line 10 did not move, so it is the old one; of 30 and 58 one is old, one new.
        assert_ne!(new[0].line, Some(10));
    }

    #[test]
    fn only_touched_files_count() {
        let after = [
            w("kernel/futex/core.c", 10, "unused variable 'a'"),
            w("kernel/sched/wait.c", 10, "unused variable 'b'"),
            w("kernel/futex/futex.h", 3, "unused variable 'c'"),
        ];
        let new = new_warnings(&[], &after, &touched());
        let files: Vec<&str> = new.iter().map(|w| w.file.as_str()).collect();
        assert_eq!(files, ["kernel/futex/core.c", "kernel/futex/futex.h"]);
        assert_eq!(diff_warnings(&[], &after).len(), 3);
        assert!(new_warnings(&[], &after, &[]).is_empty());
    }

    #[test]
    fn a_header_warning_repeated_per_unit_is_one_warning() {
        let ws = parse_warnings(LAB_LOG);
        let new = new_warnings(&[], &ws, &touched());
        let header: Vec<_> = new
            .iter()
            .filter(|w| w.file == "kernel/futex/futex.h")
            .collect();
        assert_eq!(header.len(), 1, "{new:#?}");
    }

    #[test]
    fn a_log_before_and_after_gives_the_added_warnings() {
        let before = parse_warnings(
            "kernel/futex/core.c:117:13: warning: unused variable 'unused' [-Wunused-variable]\n",
        );
        let after = parse_warnings(LAB_LOG);
        let new = new_warnings(&before, &after, &touched());
        let msgs: Vec<&str> = new.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "'futex_debug_knob' defined but not used",
                "'futex_amp_us' defined but not used",
                "objtool: futex_wake+0x1a0: unreachable instruction",
            ]
        );
    }

    #[test]
    fn unknown_absolute_prefixes_still_match_touched_files() {
        let after =
            parse_warnings("/srv/trees/linux/kernel/futex/core.c:1:1: warning: x [-Wfoo]\n");
        let new = new_warnings(&[], &after, &touched());
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].file, "kernel/futex/core.c");
        let before = parse_warnings("kernel/futex/core.c:3:1: warning: x [-Wfoo]\n");
        assert!(new_warnings(&before, &after, &touched()).is_empty());
    }

    #[test]
    fn warnings_by_file_knows_every_compiled_file() {
        let map = warnings_by_file(LAB_LOG);
        assert_eq!(map.get("kernel/futex/core.c").map(Vec::len), Some(2));
        assert!(map.contains_key("kernel/futex/waitwake.c"));
        assert!(map
            .get("kernel/futex/futex.h")
            .is_some_and(|w| !w.is_empty()));
        assert!(!map.contains_key("kernel/sched/wait.c"), "never compiled");
    }

    #[test]
    fn warnings_by_file_reads_only_the_last_kernel_build() {
        let log = "### lab: make bzImage in /b\n  CC      a.o\na.c:1:1: warning: old [-Wx]\n\
                   ### lab: make bzImage in /b\n  CC      b.o\n\
                   ### lab: make olddefconfig in /b\n";
        let map = warnings_by_file(log);
        assert!(map.contains_key("b.c"), "{map:?}");
        assert!(!map.contains_key("a.c"), "{map:?}");
    }

    #[test]
    fn a_warning_reads_as_file_line_message_flag() {
        let w = CompilerWarning {
            file: "kernel/futex/core.c".into(),
            line: Some(117),
            column: Some(13),
            severity: Severity::Warning,
            message: "unused variable 'unused'".into(),
            flag: Some("-Wunused-variable".into()),
        };
        assert_eq!(
            w.to_string(),
            "kernel/futex/core.c:117: unused variable 'unused' [-Wunused-variable]"
        );
    }

    /// Pieces of kbuild logs, real and broken, to build logs that reach every branch.
    const LOG_LINES: &[&str] = &[
        "/root/src/kernel/futex/core.c:117:13: warning: unused variable \u{2018}x\u{2019} [-Wunused-variable]",
        "kernel/a.c:1: error: x [-Werror=unused-function]",
        "kernel/a.c:1:2: fatal error: y.h: No such file or directory",
        "a.c:99999999999:1: warning: big",
        "a.c::: warning: empty",
        ": warning: no path",
        "kernel/futex/core.o: warning: objtool: f+0x1: unreachable instruction",
        "ld: warning: creating DT_TEXTREL in a PIE",
        "x.c:1:1: warning: [",
        "x.c:1:1: warning: m [-Werror,-Wx]",
        "x.c:1:1: warning: m []",
        "\u{1b}[01m\u{1b}[Kx.c:1:1:\u{1b}[m\u{1b}[K \u{1b}[01;35m\u{1b}[Kwarning: \u{1b}[m\u{1b}[Kcolour",
        "\u{1b}[",
        "make[1]: Entering directory '/root/build'",
        "make: Entering directory '/root/src/'",
        "### lab: make bzImage in /root/build",
        "  CC      kernel/futex/core.o",
        "CC ",
        "./../././x.c:1: warning: dots",
        "\r",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        #[test]
        fn fuzz_parse_warnings_takes_any_text(
            text in "\\PC*",
            picks in proptest::collection::vec((0..LOG_LINES.len(), "\\PC{0,8}", 0u8..4), 0..24),
        ) {
            let built: Vec<String> = picks
                .iter()
                .map(|(i, junk, how)| match how {
                    0 => format!("{}{junk}", LOG_LINES[*i]),
                    1 => format!("{junk}{}", LOG_LINES[*i]),
                    2 => junk.clone(),
                    _ => LOG_LINES[*i].to_owned(),
                })
                .collect();
            let built = built.join("\n");
            let before = parse_warnings(&text);
            let after = parse_warnings(&built);
            for w in before.iter().chain(&after) {
                proptest::prop_assert!(w.line.is_some() || w.file.ends_with(".o"), "{:?}", w);
                let _ = w.to_string();
            }
            proptest::prop_assert!(diff_warnings(&before, &after).len() <= after.len());
            let touched = ["kernel/futex/core.c".to_owned(), "x.c".to_owned()];
            proptest::prop_assert!(new_warnings(&before, &after, &touched).len() <= after.len());
            let _ = warnings_by_file(&built);
            let _ = warnings_by_file(&text);
        }
    }
}
