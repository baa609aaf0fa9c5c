//! Patch sets: finding them (quilt series, a single `.patch`, an mbox), parsing unified diffs,
//! and applying them in memory onto a tree with zero fuzz.
//!
//! lab applies patches itself rather than through `patch(1)` so that a failure names the patch
//! file, the hunk and the target file exactly, and so that nothing is ever half-applied on
//! disk: the result is a set of new file contents, written only once every patch applied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("patch set {name:?} not found: no folder {dir} and no such .patch, .mbox or folder (list sets with `ls {patches_dir}`)")]
    NotFound {
        name: String,
        dir: PathBuf,
        patches_dir: PathBuf,
    },
    #[error("patch set {name:?}: {why}")]
    BadName { name: String, why: String },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{series}:{line}: patch file {file:?} listed in the series does not exist")]
    MissingInSeries {
        series: PathBuf,
        line: usize,
        file: String,
    },
    #[error("{path} holds no patch (no `diff` or `---`/`+++` lines)")]
    Empty { path: PathBuf },
    #[error("{path}:{line}: malformed patch: {why}")]
    Malformed {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("patch {patch} does not apply: hunk #{hunk} of {target} (expected at line {line}) does not match the tree{detail}")]
    HunkFailed {
        patch: String,
        hunk: usize,
        target: String,
        line: usize,
        detail: String,
    },
    #[error("patch {patch} does not apply: {target} {why}")]
    FileState {
        patch: String,
        target: String,
        why: String,
    },
}

/// One patch: a file (or one message of an mbox), with its file diffs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Patch {
    /// How errors and manifests name it: `set/file` or `file#n` for an mbox message.
    pub label: String,
    pub subject: String,
    /// The raw text, hashed into cache keys.
    pub text: String,
    pub files: Vec<FileDiff>,
}

impl Patch {
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.text.as_bytes()))
    }
}

/// The changes to one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileDiff {
    /// Path before (None: the patch creates the file).
    pub old: Option<String>,
    /// Path after (None: the patch deletes the file).
    pub new: Option<String>,
    pub hunks: Vec<Hunk>,
}

impl FileDiff {
    pub fn target(&self) -> &str {
        self.new.as_deref().or(self.old.as_deref()).unwrap_or("?")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hunk {
    pub old_start: usize,
    /// Context and removed lines, in order, each with its line ending.
    pub old_lines: Vec<Vec<u8>>,
    /// Context and added lines, in order.
    pub new_lines: Vec<Vec<u8>>,
    /// What the header names after its ranges: git's function context,
    /// `@@ -1,3 +1,3 @@ int futex_wake(...)`; empty when there is none.
    #[serde(default)]
    pub section: String,
}

/// A named, ordered list of patches (one stacking layer).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PatchSet {
    pub name: String,
    pub source: PathBuf,
    pub patches: Vec<Patch>,
}

/// Checks a patch set as the user named it: a name (no `/`, not a `.patch` or `.mbox` file)
/// must be a plain folder name; a path is only ever used as a path, never in a shell.
pub fn check_set_name(name: &str) -> Result<(), PatchError> {
    let is_path = name.contains('/') || name.ends_with(".patch") || name.ends_with(".mbox");
    if is_path {
        return Ok(());
    }
    crate::config::names::check_patch_set(name).map_err(|e| PatchError::BadName {
        name: name.to_owned(),
        why: e.why,
    })
}

/// Resolves a patch-set name as `lab` accepts it: a folder under `patches_dir`, or a path to
/// a folder, a `.patch` file or an mbox.
pub fn load_set(name: &str, patches_dir: &Path, root: &Path) -> Result<PatchSet, PatchError> {
    check_set_name(name)?;
    let candidates = [patches_dir.join(name), root.join(name), PathBuf::from(name)];
    let path = candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or_else(|| PatchError::NotFound {
            name: name.to_owned(),
            dir: patches_dir.join(name),
            patches_dir: patches_dir.to_owned(),
        })?;
    let set_name = path
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".patch").to_owned())
        .unwrap_or_else(|| name.to_owned());
    let mut patches = Vec::new();
    if path.is_dir() {
        for (file, label) in list_dir_patches(&path)? {
            patches.extend(load_file(&file, &format!("{set_name}/{label}"))?);
        }
    } else {
        patches.extend(load_file(&path, &set_name)?);
    }
    if patches.is_empty() {
        return Err(PatchError::Empty { path });
    }
    Ok(PatchSet {
        name: set_name,
        source: path,
        patches,
    })
}

/// The patch files of a folder: its quilt `series` if present, else its `*.patch` files sorted.
fn list_dir_patches(dir: &Path) -> Result<Vec<(PathBuf, String)>, PatchError> {
    let series = dir.join("series");
    if series.is_file() {
        let text = read(&series)?;
        let mut out = Vec::new();
        for (line_no, file) in parse_series(&text) {
            let path = dir.join(&file);
            if !path.is_file() {
                return Err(PatchError::MissingInSeries {
                    series,
                    line: line_no,
                    file,
                });
            }
            out.push((path, file));
        }
        return Ok(out);
    }
    let rd = std::fs::read_dir(dir).map_err(|source| PatchError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<(PathBuf, String)> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "patch" || e == "diff" || e == "mbox")
        })
        .map(|p| {
            let label = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (p, label)
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Parses a quilt series file: one patch per line, `#` comments, blank lines, and optional
/// options after the name (such as `-p1`), which lab ignores. Returns (line number, file).
pub fn parse_series(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let line = line.split('#').next().unwrap_or("").trim();
            line.split_whitespace()
                .next()
                .map(|f| (i + 1, f.to_owned()))
        })
        .collect()
}

fn read(path: &Path) -> Result<String, PatchError> {
    let bytes = std::fs::read(path).map_err(|source| PatchError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Loads one file: a single patch, or an mbox of several (`git format-patch --stdout`).
pub fn load_file(path: &Path, label: &str) -> Result<Vec<Patch>, PatchError> {
    let text = read(path)?;
    let messages = split_mbox(&text);
    let many = messages.len() > 1;
    let mut out = Vec::new();
    for (i, (offset, msg)) in messages.into_iter().enumerate() {
        let label = if many {
            format!("{label}#{}", i + 1)
        } else {
            label.to_owned()
        };
        let files = parse_diff(msg, path, offset)?;
        if files.is_empty() {
            if many {
                continue; // a cover letter
            }
            return Err(PatchError::Empty {
                path: path.to_owned(),
            });
        }
        out.push(Patch {
            label,
            subject: subject_of(msg),
            text: msg.to_owned(),
            files,
        });
    }
    Ok(out)
}

/// Splits an mbox at `From <id> <date>` separator lines. Returns (line offset, message).
fn split_mbox(text: &str) -> Vec<(usize, &str)> {
    let mut starts = Vec::new();
    let mut pos = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.starts_with("From ") && i == 0
            || line.starts_with("From ") && looks_like_mbox_from(line)
        {
            starts.push((i, pos));
        }
        pos += line.len();
    }
    if starts.len() <= 1 {
        return vec![(0, text)];
    }
    let mut out = Vec::new();
    for (k, &(line, start)) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(text.len(), |&(_, s)| s);
        out.push((line, &text[start..end]));
    }
    if starts[0].1 > 0 && !text[..starts[0].1].trim().is_empty() {
        out.insert(0, (0, &text[..starts[0].1]));
    }
    out
}

/// `From 0123abcd... Mon Sep 17 00:00:00 2001`: git's mbox separator.
fn looks_like_mbox_from(line: &str) -> bool {
    let mut words = line.split_whitespace();
    words.next() == Some("From")
        && words
            .next()
            .is_some_and(|id| id.len() >= 7 && id.chars().all(|c| c.is_ascii_hexdigit()))
}

fn subject_of(msg: &str) -> String {
    let mut lines = msg.lines();
    while let Some(l) = lines.next() {
        if l.is_empty() {
            break;
        }
        if let Some(s) = l.strip_prefix("Subject:") {
            let mut subject = s.trim().to_owned();
            // Folded header continuation lines start with white space.
            for cont in lines.by_ref() {
                if cont.starts_with([' ', '\t']) {
                    subject.push(' ');
                    subject.push_str(cont.trim());
                } else {
                    break;
                }
            }
            return subject;
        }
    }
    String::new()
}

fn strip_component(p: &str) -> Option<String> {
    let p = p.split('\t').next().unwrap_or(p).trim_end();
    if p == "/dev/null" {
        return None;
    }
    Some(p.split_once('/').map_or(p, |(_, rest)| rest).to_owned())
}

/// Parses the unified diffs in one message. Text before the first diff (the mail and commit
/// message) and after the last hunk (the `-- ` signature) is ignored.
pub fn parse_diff(
    text: &str,
    path: &Path,
    line_offset: usize,
) -> Result<Vec<FileDiff>, PatchError> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let malformed = |i: usize, why: String| PatchError::Malformed {
        path: path.to_owned(),
        line: line_offset + i + 1,
        why,
    };
    let mut files = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("GIT binary patch") || line.starts_with("Binary files ") {
            return Err(malformed(i, "binary patches are not supported".into()));
        }
        if line.starts_with("rename from ") || line.starts_with("copy from ") {
            return Err(malformed(
                i,
                "renames and copies are not supported; use `git format-patch --no-renames`".into(),
            ));
        }
        if !(line.starts_with("--- ") && lines.get(i + 1).is_some_and(|n| n.starts_with("+++ "))) {
            i += 1;
            continue;
        }
        let old = strip_component(line[4..].trim_end_matches(['\n', '\r']));
        let new = strip_component(lines[i + 1][4..].trim_end_matches(['\n', '\r']));
        if old.is_none() && new.is_none() {
            return Err(malformed(i, "both sides are /dev/null".into()));
        }
        i += 2;
        let mut hunks = Vec::new();
        while i < lines.len() && lines[i].starts_with("@@ ") {
            let header = lines[i];
            let (old_start, old_count, new_count) = parse_hunk_header(header)
                .ok_or_else(|| malformed(i, format!("bad hunk header {:?}", header.trim_end())))?;
            i += 1;
            let section = header
                .strip_prefix("@@ ")
                .and_then(|r| r.split_once(" @@"))
                .map_or("", |(_, rest)| rest)
                .trim()
                .to_owned();
            let mut hunk = Hunk {
                old_start,
                old_lines: Vec::new(),
                new_lines: Vec::new(),
                section,
            };
            let (mut seen_old, mut seen_new) = (0, 0);
            while seen_old < old_count || seen_new < new_count {
                let Some(&l) = lines.get(i) else {
                    return Err(malformed(i, format!("hunk ends early: {seen_old}/{old_count} old and {seen_new}/{new_count} new lines")));
                };
                let body = l.get(1..).unwrap_or("").as_bytes().to_vec();
                // A bare newline is a context line whose leading space was eaten by a mailer.
                let (tag, body) = if l == "\n" {
                    (' ', b"\n".to_vec())
                } else {
                    (l.chars().next().unwrap_or(' '), body)
                };
                // A line the header has no room for: the counts are wrong or a line was added.
                // Reading it anyway made a hunk longer than its header said, which `git apply`
                // rejects as a corrupt patch.
                let overflows = match tag {
                    ' ' => seen_old == old_count || seen_new == new_count,
                    '-' => seen_old == old_count,
                    '+' => seen_new == new_count,
                    _ => false,
                };
                if overflows {
                    return Err(malformed(
                        i,
                        format!(
                            "hunk has more lines than its header {:?} says: {:?}",
                            header.trim_end(),
                            l.trim_end()
                        ),
                    ));
                }
                match tag {
                    ' ' => {
                        hunk.old_lines.push(body.clone());
                        hunk.new_lines.push(body);
                        seen_old += 1;
                        seen_new += 1;
                    }
                    '-' => {
                        hunk.old_lines.push(body);
                        seen_old += 1;
                    }
                    '+' => {
                        hunk.new_lines.push(body);
                        seen_new += 1;
                    }
                    '\\' => {}
                    _ => {
                        return Err(malformed(
                            i,
                            format!("unexpected line in hunk: {:?}", l.trim_end()),
                        ))
                    }
                }
                i += 1;
                // "\ No newline at end of file" refers to the line just read.
                if lines.get(i).is_some_and(|n| n.starts_with("\\ ")) {
                    let prev_tag = tag;
                    if prev_tag != '+' {
                        if let Some(last) = hunk.old_lines.last_mut() {
                            strip_newline(last);
                        }
                    }
                    if prev_tag != '-' {
                        if let Some(last) = hunk.new_lines.last_mut() {
                            strip_newline(last);
                        }
                    }
                    i += 1;
                }
            }
            hunks.push(hunk);
        }
        if hunks.is_empty() && !(old.is_none() || new.is_none()) {
            return Err(malformed(i, "file header with no hunks".into()));
        }
        files.push(FileDiff { old, new, hunks });
    }
    Ok(files)
}

fn strip_newline(l: &mut Vec<u8>) {
    if l.last() == Some(&b'\n') {
        l.pop();
    }
}

/// `@@ -12,7 +12,8 @@ fn` -> (12, 7, 8). A missing count means 1.
fn parse_hunk_header(h: &str) -> Option<(usize, usize, usize)> {
    let rest = h.strip_prefix("@@ -")?;
    let (ranges, _) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let range = |r: &str| -> Option<(usize, usize)> {
        match r.split_once(',') {
            Some((s, c)) => Some((s.parse().ok()?, c.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    let (os, oc) = range(old)?;
    let (_, nc) = range(new)?;
    Some((os, oc, nc))
}

/// Source of original file contents for [`apply`]: the pristine tree.
pub trait TreeReader {
    /// The file's bytes, or None if it does not exist.
    fn read(&self, path: &str) -> Option<Vec<u8>>;
}

impl TreeReader for Path {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.join(path)).ok()
    }
}

/// The outcome of applying patches: for each touched path, its new content (None: deleted).
pub type Overlay = BTreeMap<String, Option<Vec<u8>>>;

/// Applies `patches` in order onto `tree`, in memory. Context must match exactly (zero fuzz);
/// a hunk may sit at an offset from its stated line, as with `patch -F0` and `git apply`.
pub fn apply(tree: &dyn TreeReader, patches: &[&Patch]) -> Result<Overlay, PatchError> {
    let mut overlay = Overlay::new();
    for patch in patches {
        for fd in &patch.files {
            let err_state = |why: &str| PatchError::FileState {
                patch: patch.label.clone(),
                target: fd.target().to_owned(),
                why: why.to_owned(),
            };
            let current: Option<Vec<u8>> = match fd.old.as_deref() {
                None => None,
                Some(p) => match overlay.get(p) {
                    Some(c) => c.clone(),
                    None => tree.read(p),
                },
            };
            let base = match (&fd.old, current) {
                (None, _) => {
                    let exists = fd.new.as_deref().is_some_and(|p| match overlay.get(p) {
                        Some(c) => c.is_some(),
                        None => tree.read(p).is_some(),
                    });
                    if exists {
                        return Err(err_state("already exists, but the patch creates it"));
                    }
                    Vec::new()
                }
                (Some(_), None) => return Err(err_state("does not exist in the tree")),
                (Some(_), Some(c)) => c,
            };
            let result = apply_hunks(&base, &fd.hunks).map_err(|(hunk, line, detail)| {
                PatchError::HunkFailed {
                    patch: patch.label.clone(),
                    hunk,
                    target: fd.target().to_owned(),
                    line,
                    detail,
                }
            })?;
            match (&fd.old, &fd.new) {
                (Some(old), None) => {
                    if !result.is_empty() {
                        return Err(err_state(
                            "is deleted by the patch but has content the patch does not remove",
                        ));
                    }
                    overlay.insert(old.clone(), None);
                }
                (old, Some(new)) => {
                    if let Some(old) = old.as_ref().filter(|o| *o != new) {
                        overlay.insert(old.clone(), None);
                    }
                    overlay.insert(new.clone(), Some(result));
                }
                (None, None) => {}
            }
        }
    }
    Ok(overlay)
}

fn split_lines(data: &[u8]) -> Vec<&[u8]> {
    data.split_inclusive(|&b| b == b'\n').collect()
}

/// Applies hunks to one file's content. On failure: (1-based hunk, expected line, detail).
fn apply_hunks(base: &[u8], hunks: &[Hunk]) -> Result<Vec<u8>, (usize, usize, String)> {
    let lines = split_lines(base);
    let mut out: Vec<u8> = Vec::with_capacity(base.len() + 256);
    let mut cursor = 0usize; // next unconsumed line of `lines`
    let mut offset: isize = 0; // where the previous hunk landed against its stated line
    for (n, h) in hunks.iter().enumerate() {
        // A pure insertion at the top of an empty or new file has old_start 0.
        let stated = h
            .old_start
            .saturating_sub(if h.old_lines.is_empty() { 0 } else { 1 });
        // The line numbers are the patch's word: one past isize::MAX wrapped negative, and
        // the sum of a huge one and the offset overflowed (`@@ -9223372036854775813,1`).
        let stated_at = isize::try_from(stated).unwrap_or(isize::MAX);
        let want = stated_at.saturating_add(offset).max(cursor as isize) as usize;
        let Some(at) = find_hunk(&lines, &h.old_lines, want, cursor) else {
            let detail = first_mismatch(&lines, &h.old_lines, stated.max(cursor));
            return Err((n + 1, h.old_start, detail));
        };
        for l in &lines[cursor..at] {
            out.extend_from_slice(l);
        }
        for l in &h.new_lines {
            out.extend_from_slice(l);
        }
        cursor = at + h.old_lines.len();
        offset = (at as isize).saturating_sub(stated_at);
    }
    for l in &lines[cursor..] {
        out.extend_from_slice(l);
    }
    Ok(out)
}

/// Finds where `old` matches exactly, searching outwards from `want`, never before `min`.
fn find_hunk(lines: &[&[u8]], old: &[Vec<u8>], want: usize, min: usize) -> Option<usize> {
    // Nothing fits past the end, and the nearest fit to a line beyond it is the nearest to
    // the end; starting there keeps the search linear in the file, not in the line number a
    // patch states (`@@ -1000000000000,1` walked a trillion lines).
    let want = want.min(lines.len());
    let fits = |at: usize| {
        at >= min
            && at + old.len() <= lines.len()
            && old
                .iter()
                .zip(&lines[at..])
                .all(|(a, b)| a.as_slice() == *b)
    };
    let span = lines.len().max(want) + 1;
    for d in 0..=span {
        if fits(want + d) {
            return Some(want + d);
        }
        if d > 0 && want >= d && fits(want - d) {
            return Some(want - d);
        }
    }
    None
}

/// Explains a failed hunk: the first line at its stated place that differs from the tree.
fn first_mismatch(lines: &[&[u8]], old: &[Vec<u8>], at: usize) -> String {
    for (k, want) in old.iter().enumerate() {
        let got = lines.get(at + k);
        if got.is_none_or(|g| *g != want.as_slice()) {
            let show = |b: &[u8]| String::from_utf8_lossy(b).trim_end().to_owned();
            return format!(
                "; at line {} the patch expects {:?} but the tree has {}",
                at + k + 1,
                show(want),
                got.map_or_else(|| "end of file".to_owned(), |g| format!("{:?}", show(g)))
            );
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    struct Mem(HashMap<String, Vec<u8>>);
    impl TreeReader for Mem {
        fn read(&self, path: &str) -> Option<Vec<u8>> {
            self.0.get(path).cloned()
        }
    }

    fn tree() -> Mem {
        let body: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        Mem(HashMap::from([(
            "kernel/a.c".to_owned(),
            body.into_bytes(),
        )]))
    }

    const PATCH: &str = "From 1234567890abcdef1234567890abcdef12345678 Mon Sep 17 00:00:00 2001
From: Dev <dev@example.org>
Subject: [PATCH 1/1] a: change
 line five

Why.

Signed-off-by: Dev <dev@example.org>
---
 kernel/a.c | 3 ++-
 1 file changed, 2 insertions(+), 1 deletion(-)

diff --git a/kernel/a.c b/kernel/a.c
--- a/kernel/a.c
+++ b/kernel/a.c
@@ -3,5 +3,6 @@ ctx
 line 3
 line 4
-line 5
+line five
+line 5b
 line 6
 line 7
--- 
2.39.5
";

    fn patch(text: &str) -> Patch {
        let files = parse_diff(text, Path::new("t.patch"), 0).expect("parses");
        Patch {
            label: "t.patch".into(),
            subject: subject_of(text),
            text: text.into(),
            files,
        }
    }

    #[test]
    fn applies_format_patch_and_reads_subject() {
        let p = patch(PATCH);
        assert_eq!(p.subject, "[PATCH 1/1] a: change line five");
        let out = apply(&tree(), &[&p]).expect("applies");
        let new = String::from_utf8(out["kernel/a.c"].clone().expect("exists")).expect("utf8");
        assert!(
            new.contains("line 4\nline five\nline 5b\nline 6\n"),
            "{new}"
        );
        assert_eq!(new.lines().count(), 31);
    }

    #[test]
    fn applies_at_an_offset_but_never_with_fuzz() {
        let shifted = PATCH.replace("@@ -3,5 +3,6 @@", "@@ -9,5 +9,6 @@");
        assert!(
            apply(&tree(), &[&patch(&shifted)]).is_ok(),
            "offset is fine"
        );
        let fuzzy = PATCH.replace(" line 7\n", " line 7 changed\n");
        let err = apply(&tree(), &[&patch(&fuzzy)]).expect_err("context differs");
        let msg = err.to_string();
        assert!(msg.contains("hunk #1 of kernel/a.c"), "{msg}");
        assert!(msg.contains("t.patch"), "{msg}");
        assert!(msg.contains("line 7 changed"), "{msg}");
    }

    #[test]
    fn stacked_patches_see_earlier_results_and_conflicts_are_named() {
        let p1 = patch(PATCH);
        let second = "--- a/kernel/a.c\n+++ b/kernel/a.c\n@@ -4,3 +4,3 @@\n line 4\n-line five\n+line FIVE\n line 5b\n";
        let p2 = patch(second);
        let out = apply(&tree(), &[&p1, &p2]).expect("stack applies");
        assert!(
            String::from_utf8_lossy(out["kernel/a.c"].as_ref().expect("exists"))
                .contains("line FIVE")
        );
        // Alone, the second patch cannot apply: its context is made by the first.
        let err = apply(&tree(), &[&p2]).expect_err("depends on p1");
        assert!(
            matches!(err, PatchError::HunkFailed { hunk: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn creates_and_deletes_files() {
        let create = "--- /dev/null\n+++ b/kernel/new.c\n@@ -0,0 +1,2 @@\n+one\n+two\n";
        let out = apply(&tree(), &[&patch(create)]).expect("creates");
        assert_eq!(out["kernel/new.c"].as_deref(), Some(&b"one\ntwo\n"[..]));
        let again = apply(&tree(), &[&patch(create), &patch(create)]).expect_err("exists now");
        assert!(again.to_string().contains("already exists"), "{again}");
        let body: String = (1..=30).map(|i| format!("-line {i}\n")).collect();
        let delete = format!("--- a/kernel/a.c\n+++ /dev/null\n@@ -1,30 +0,0 @@\n{body}");
        let out = apply(&tree(), &[&patch(&delete)]).expect("deletes");
        assert_eq!(out["kernel/a.c"], None);
        let missing = "--- a/kernel/nope.c\n+++ b/kernel/nope.c\n@@ -1 +1 @@\n-a\n+b\n";
        let err = apply(&tree(), &[&patch(missing)]).expect_err("missing target");
        assert!(
            err.to_string().contains("kernel/nope.c does not exist"),
            "{err}"
        );
    }

    #[test]
    fn no_newline_at_end_of_file() {
        let t = Mem(HashMap::from([("f".to_owned(), b"a\nb".to_vec())]));
        let p =
            patch("--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n");
        let out = apply(&t, &[&p]).expect("applies");
        assert_eq!(out["f"].as_deref(), Some(&b"a\nc\n"[..]));
    }

    #[test]
    fn malformed_patches_are_rejected_with_line() {
        let short = "--- a/kernel/a.c\n+++ b/kernel/a.c\n@@ -1,3 +1,3 @@\n line 1\n";
        let err = parse_diff(short, Path::new("x.patch"), 0).expect_err("truncated");
        assert!(err.to_string().contains("x.patch:"), "{err}");
        let bin = "diff --git a/b b/b\nGIT binary patch\n";
        assert!(parse_diff(bin, Path::new("b.patch"), 0).is_err());
    }

    #[test]
    fn series_and_mbox_parsing() {
        let s = parse_series("# comment\n0001-a.patch\n\n0002-b.patch -p1 # why\n");
        assert_eq!(
            s,
            vec![
                (2, "0001-a.patch".to_owned()),
                (4, "0002-b.patch".to_owned())
            ]
        );
        let second = PATCH
            .replace("line five", "line 5x")
            .replace("1234567890abcdef", "abcdef1234567890");
        let mbox = format!("{PATCH}{second}");
        let msgs = split_mbox(&mbox);
        assert_eq!(msgs.len(), 2);
        assert!(msgs[1].1.contains("line 5x"));
        // A body line that merely starts with "From " is not a separator.
        let body = PATCH.replace("Why.", "From the seed thread: why.");
        assert_eq!(split_mbox(&body).len(), 1);
    }

    #[test]
    fn loads_sets_from_folders_files_and_mboxes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = dir.path().join("patches/demo");
        std::fs::create_dir_all(&set).expect("mkdir");
        std::fs::write(set.join("0001-a.patch"), PATCH).expect("write");
        std::fs::write(set.join("series"), "0001-a.patch\n").expect("write");
        let loaded = load_set("demo", &dir.path().join("patches"), dir.path()).expect("loads");
        assert_eq!(loaded.patches.len(), 1);
        assert_eq!(loaded.patches[0].label, "demo/0001-a.patch");
        std::fs::write(set.join("series"), "0001-a.patch\n0002-gone.patch\n").expect("write");
        let err =
            load_set("demo", &dir.path().join("patches"), dir.path()).expect_err("missing file");
        assert!(
            err.to_string().contains("series:2") && err.to_string().contains("0002-gone.patch"),
            "{err}"
        );
        let err = load_set("nosuch", &dir.path().join("patches"), dir.path()).expect_err("unknown");
        assert!(err.to_string().contains("nosuch"), "{err}");
        let mbox = dir.path().join("two.mbox");
        std::fs::write(
            &mbox,
            format!(
                "{PATCH}{}",
                PATCH.replace("1234567890abcdef", "abcdef1234567890")
            ),
        )
        .expect("write");
        let loaded = load_set(
            mbox.to_str().expect("utf8"),
            &dir.path().join("patches"),
            dir.path(),
        )
        .expect("mbox");
        assert_eq!(loaded.patches.len(), 2);
        assert_eq!(loaded.patches[1].label, "two.mbox#2");
    }

    #[test]
    fn huge_hunk_line_numbers_neither_hang_nor_overflow() {
        // Found writing the fuzz tests below, which apply what parses. The first hunk
        // searched outwards from line 10^12, one line at a time; the second made the offset
        // overflow (a panic) or the search start near isize::MAX (a hang).
        let t = Mem(HashMap::from([("f".to_owned(), b"a\nb\n".to_vec())]));
        let far = patch("--- a/f\n+++ b/f\n@@ -1000000000000,1 +1000000000000,1 @@\n-a\n+c\n");
        let out = apply(&t, &[&far]).expect("applies at an offset");
        assert_eq!(out["f"].as_deref(), Some(&b"c\nb\n"[..]));
        let wrapped = patch("--- a/f\n+++ b/f\n@@ -9223372036854775813,1 +1,1 @@\n-a\n+c\n@@ -1000,1 +1,1 @@\n-b\n+d\n");
        let out = apply(&t, &[&wrapped]).expect("applies at an offset");
        assert_eq!(out["f"].as_deref(), Some(&b"c\nd\n"[..]));
    }

    #[test]
    fn a_hunk_longer_than_its_header_is_malformed() {
        // Found by fuzz_edited_patches_fail_or_stay_consistent: a duplicated line in a hunk
        // was read as one more old line, so the hunk no longer matched its header.
        let text = "--- a/f\n+++ b/f\n@@ -1,1 +1,2 @@\n-a\n-a\n+b\n+c\n";
        let err = parse_diff(text, Path::new("x.patch"), 0).expect_err("two old lines, not one");
        let msg = err.to_string();
        assert!(
            msg.contains("x.patch:5") && msg.contains("more lines than its header"),
            "{msg}"
        );
    }

    /// Real patches to mutate: the test patch and two shipped ones (one with `\ No newline`
    /// free hunks at several offsets, one that adds a file's worth of lines).
    const CORPUS: [&str; 3] = [
        PATCH,
        include_str!("../../../patches/futex-lockless-wakeup-revert/0001-futex-Wake-waiters-under-hb-lock-instead-of-after-it.patch"),
        include_str!("../../../patches/waitqueue-race-amplifiers/0001-sched-wait-Add-debug-knobs-that-widen-the-exclusive-.patch"),
    ];

    /// The (old, new) line counts of the hunk headers in `text` after its first file
    /// header, in order.
    fn header_counts(text: &str) -> Vec<(usize, usize)> {
        let lines: Vec<&str> = text.lines().collect();
        let first = (1..lines.len())
            .find(|&i| lines[i - 1].starts_with("--- ") && lines[i].starts_with("+++ "))
            .unwrap_or(lines.len());
        lines[first..]
            .iter()
            .filter(|l| l.starts_with("@@ "))
            .filter_map(|l| parse_hunk_header(l))
            .map(|(_, old, new)| (old, new))
            .collect()
    }

    /// Parses `text` and, when it parses, checks that every hunk has exactly the lines its
    /// header announced (when the headers are known), and that applying it, to a tree made
    /// of its own context and to one where the files are missing, ends without a panic.
    fn parse_and_check(
        text: &str,
        headers: Option<&[(usize, usize)]>,
    ) -> Result<(), TestCaseError> {
        let Ok(files) = parse_diff(text, Path::new("fuzz.patch"), 0) else {
            return Ok(());
        };
        let hunks: Vec<&Hunk> = files.iter().flat_map(|f| &f.hunks).collect();
        if let Some(headers) = headers {
            let got: Vec<(usize, usize)> = hunks
                .iter()
                .map(|h| (h.old_lines.len(), h.new_lines.len()))
                .collect();
            prop_assert_eq!(&got[..], &headers[..got.len().min(headers.len())]);
        }
        let tree = Mem(files
            .iter()
            .filter_map(|f| {
                f.old.clone().map(|p| {
                    (
                        p,
                        f.hunks.iter().flat_map(|h| h.old_lines.concat()).collect(),
                    )
                })
            })
            .collect());
        let p = Patch {
            label: "fuzz.patch".into(),
            subject: subject_of(text),
            text: text.into(),
            files,
        };
        let _ = apply(&tree, &[&p, &p]);
        let _ = apply(&Mem(HashMap::new()), &[&p]);
        let _ = apply(&self::tree(), &[&p]);
        Ok(())
    }

    /// One edit to a line-based patch: what a mailer, an editor or an attacker could do.
    #[derive(Debug, Clone)]
    enum Edit {
        /// Replaces the counts of a hunk header.
        Counts(usize, [usize; 4]),
        /// Duplicates a line (a repeated `---`, `+++` or `@@` header, a repeated body line).
        Duplicate(usize),
        Delete(usize),
        Replace(usize, String),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let count = prop_oneof![0usize..12, Just(usize::MAX), any::<usize>()];
        prop_oneof![
            (
                any::<usize>(),
                [count.clone(), count.clone(), count.clone(), count]
            )
                .prop_map(|(i, c)| Edit::Counts(i, c)),
            any::<usize>().prop_map(Edit::Duplicate),
            any::<usize>().prop_map(Edit::Delete),
            (
                any::<usize>(),
                prop_oneof![
                    Just("--- a/kernel/a.c".to_owned()),
                    Just("+++ /dev/null".to_owned()),
                    Just("--- /dev/null".to_owned()),
                    Just("@@ -1 +1 @@".to_owned()),
                    Just("@@ -0,0 +0,0 @@".to_owned()),
                    Just("\\ No newline at end of file".to_owned()),
                    Just(String::new()),
                    Just("-- ".to_owned()),
                    "[-+ @\\\\]\\PC{0,20}",
                    "\\PC{0,40}",
                ]
            )
                .prop_map(|(i, l)| Edit::Replace(i, l)),
        ]
    }

    fn apply_edit(text: &str, e: &Edit) -> String {
        let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
        if lines.is_empty() {
            return String::new();
        }
        let n = lines.len();
        match e {
            Edit::Counts(i, [a, b, c, d]) => {
                let headers: Vec<usize> = (0..n).filter(|&k| lines[k].starts_with("@@ ")).collect();
                if !headers.is_empty() {
                    lines[headers[i % headers.len()]] = format!("@@ -{a},{b} +{c},{d} @@\n");
                }
            }
            Edit::Duplicate(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::Delete(i) => {
                lines.remove(i % n);
            }
            Edit::Replace(i, l) => lines[i % n] = format!("{l}\n"),
        }
        lines.concat()
    }

    proptest! {

        #[test]
        fn fuzz_parse_diff_takes_any_text(
            text in "\\PC*",
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            parse_and_check(&text, None)?;
            parse_and_check(&String::from_utf8_lossy(&bytes), None)?;
            // Past the file header, where the hunk parser starts.
            parse_and_check(&format!("--- a/kernel/a.c\n+++ b/kernel/a.c\n@@ -1,3 +1,3 @@\n{text}"), None)?;
        }

        #[test]
        fn fuzz_truncated_patches_fail_or_stay_consistent(
            which in 0..CORPUS.len(),
            cut in any::<prop::sample::Index>(),
        ) {
            let text = CORPUS[which].as_bytes();
            let cut = String::from_utf8_lossy(&text[..cut.index(text.len() + 1)]).into_owned();
            // The cut text's headers are the whole patch's, up to where it was cut.
            parse_and_check(&cut, Some(&header_counts(CORPUS[which])))?;
        }

        #[test]
        fn fuzz_edited_patches_fail_or_stay_consistent(
            which in 0..CORPUS.len(),
            edits in proptest::collection::vec(edit(), 1..4),
        ) {
            let mut text = CORPUS[which].to_owned();
            for e in &edits {
                text = apply_edit(&text, e);
            }
            let headers = header_counts(&text);
            parse_and_check(&text, Some(&headers))?;
            let mbox = format!("{text}{}", CORPUS[(which + 1) % CORPUS.len()]);
            for (offset, msg) in split_mbox(&mbox) {
                let _ = parse_diff(msg, Path::new("fuzz.mbox"), offset);
                let _ = subject_of(msg);
            }
        }

        #[test]
        fn fuzz_parse_series_takes_any_text(text in "\\PC*") {
            let entries = parse_series(&text);
            let lines = text.lines().count();
            let mut last = 0;
            for (line, file) in &entries {
                prop_assert!(*line > last && *line <= lines, "line {} of {}", line, lines);
                last = *line;
                prop_assert!(
                    !file.is_empty() && !file.contains('#') && !file.contains(char::is_whitespace),
                    "{:?}",
                    file
                );
            }
        }
    }
}
