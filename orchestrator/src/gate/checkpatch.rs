//! Running the kernel's `scripts/checkpatch.pl` on one patch and reading its report.
//!
//! lab runs the script of the tree the series is meant for, not a copy of its own: checkpatch
//! changes with every release, and a maintainer checks a patch with the checkpatch of the tree
//! it goes into. It runs in the normal (not `--terse`) format, with `--show-types`, because only
//! that format carries the type of each finding (`TRAILING_WHITESPACE`), the patch line, the
//! file and line it refers to, and the quoted code; the final `total:` line is kept and its
//! counts are checked against the findings parsed, so that a format change in some future
//! checkpatch fails loudly instead of passing a patch with uncounted errors.
//!
//! The exit status is not the verdict: checkpatch exits 1 on warnings as well as errors, and
//! also when perl dies. A run is good when it printed its `total:` line.
//!
//! Flags, and why:
//! - `--root=<tree>` instead of `--no-tree`: with a tree checkpatch checks
//!   `#include <asm/...>` against `arch/`, reads `MAINTAINERS` for obsolete files, and
//!   warns about a `-p0` patch; the tree must pass its `top_of_kernel_tree()` test.
//! - `--patch` and the default sign-off check: the input is a mailed patch, which must carry a
//!   `Signed-off-by:` (a missing one is `ERROR:MISSING_SIGN_OFF`).
//! - no `--color`: checkpatch colours only a terminal (`-t STDOUT`), and lab writes its output
//!   to a file; older trees do not know `--color=never`.
//! - `--ignore UNKNOWN_COMMIT_ID` when the tree has no `.git`: `git_commit_info()` returns no
//!   id whenever `-e "$gitroot"` fails, so in a tarball tree *every* `commit <sha> ("...")`
//!   reference is reported as unknown. That says nothing about the patch; the report notes that
//!   the commit references were not verified.
//!
//! checkpatch runs in the tree (so that it finds `.git` there, as it looks for it in the
//! current directory) and in lab's own process group, so that Ctrl-C at the terminal reaches
//! it too; it only ever runs short `git` commands of its own, so on a timeout killing the perl
//! process is enough.

use std::fmt::Write as _;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How long a timed-out checkpatch gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum CheckpatchError {
    #[error("run checkpatch: {script} does not exist; is {tree} a kernel tree? (run `lab build` once to unpack the source)")]
    MissingScript { tree: PathBuf, script: PathBuf },
    #[error("write the patch to a temporary file for checkpatch")]
    TempFile {
        #[source]
        source: std::io::Error,
    },
    #[error("start `perl {script}` (is perl installed? `apt-get install perl`)")]
    Spawn {
        script: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("wait for checkpatch")]
    Wait {
        #[source]
        source: std::io::Error,
    },
    #[error("run checkpatch: it did not finish within {limit:?} and was killed")]
    Timeout { limit: Duration },
    #[error("read checkpatch's output")]
    ReadOutput {
        #[source]
        source: std::io::Error,
    },
    #[error("run checkpatch: it exited with {status} without its `total:` line; stderr: {stderr}")]
    Failed { status: ExitStatus, stderr: String },
    #[error("parse checkpatch's output: no `total: N errors, M warnings, ... lines checked` line")]
    NoSummary,
    #[error("parse checkpatch's output: its total line says {total:?} but lab read {errors} errors, {warnings} warnings and {checks} checks; the output format may have changed")]
    CountMismatch {
        total: String,
        errors: usize,
        warnings: usize,
        checks: usize,
    },
}

/// The severity checkpatch gives a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warning,
    /// Only with `--strict`, or for files under `net/`, `drivers/net/` and `drivers/staging/`.
    Check,
}

impl Level {
    fn prefix(self) -> &'static str {
        match self {
            Level::Error => "ERROR:",
            Level::Warning => "WARNING:",
            Level::Check => "CHECK:",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub level: Level,
    /// The message type, e.g. `TRAILING_WHITESPACE` (empty if checkpatch ran without
    /// `--show-types`).
    pub kind: String,
    /// The message; several lines for the few messages that have them.
    pub message: String,
    /// The file the finding is about (None for the commit message and whole-patch findings).
    pub file: Option<String>,
    /// The line in that file, after the patch.
    pub line: Option<u32>,
    /// The line in the patch checkpatch read (the `#NN:`).
    pub patch_line: Option<u32>,
    /// The lines checkpatch quotes, as printed: diff lines keep their `+`/` `/`-`, and for
    /// white-space findings `cat_vet()` shows the line end as `$` and control characters as
    /// `^I` and the like.
    pub excerpt: String,
}

/// What checkpatch said about one patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpatchReport {
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
    pub checks: Vec<Finding>,
    /// `total: 0 errors, 1 warnings, 46 lines checked`, as printed.
    pub total_line: String,
    /// What lab changed about the run and why (an ignored type, for instance).
    pub notes: Vec<String>,
    /// What checkpatch printed on stderr (a missing `spelling.txt`, perl warnings).
    pub stderr: String,
    /// The command, to reproduce the run by hand (the patch file is temporary).
    pub command: String,
}

impl CheckpatchReport {
    /// No errors and no warnings (checks are advice).
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.warnings.is_empty()
    }

    /// Every finding, errors first.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.errors.iter().chain(&self.warnings).chain(&self.checks)
    }
}

/// Options beyond the defaults a contributor gets from plain `checkpatch.pl`.
#[derive(Debug, Clone, Default)]
pub struct CheckpatchOptions {
    /// `--strict`: also report CHECK-level findings everywhere, as some maintainers ask.
    pub strict: bool,
    /// Types to `--ignore`, on top of the ones lab ignores itself.
    pub ignore: Vec<String>,
}

/// Runs `<tree>/scripts/checkpatch.pl` on one patch (a `git format-patch` mail or a plain
/// diff) and parses what it printed.
pub fn run_checkpatch(
    kernel_tree: &Path,
    patch_text: &str,
    timeout: Duration,
) -> Result<CheckpatchReport, CheckpatchError> {
    run_checkpatch_with(
        kernel_tree,
        patch_text,
        timeout,
        &CheckpatchOptions::default(),
    )
}

/// [`run_checkpatch`] with options.
pub fn run_checkpatch_with(
    kernel_tree: &Path,
    patch_text: &str,
    timeout: Duration,
    options: &CheckpatchOptions,
) -> Result<CheckpatchReport, CheckpatchError> {
    let script = kernel_tree.join("scripts/checkpatch.pl");
    if !script.is_file() {
        return Err(CheckpatchError::MissingScript {
            tree: kernel_tree.to_owned(),
            script,
        });
    }
    let tmp_err = |source| CheckpatchError::TempFile { source };
    let mut patch = tempfile::Builder::new()
        .prefix("lab-gate-")
        .suffix(".patch")
        .tempfile()
        .map_err(tmp_err)?;
    patch.write_all(patch_text.as_bytes()).map_err(tmp_err)?;
    patch.flush().map_err(tmp_err)?;
    let mut stdout = tempfile::tempfile().map_err(tmp_err)?;
    let mut stderr = tempfile::tempfile().map_err(tmp_err)?;

    let mut notes = Vec::new();
    let mut ignore = options.ignore.clone();
    if !kernel_tree.join(".git").exists() {
        ignore.push("UNKNOWN_COMMIT_ID".to_owned());
        notes.push(format!(
            "commit references were not verified: {} is not a git repository, where checkpatch \
             reports every `commit <sha>` as unknown (UNKNOWN_COMMIT_ID ignored)",
            kernel_tree.display()
        ));
    }
    let mut args = vec![
        format!("--root={}", kernel_tree.display()),
        "--show-types".to_owned(),
        "--patch".to_owned(),
    ];
    if options.strict {
        args.push("--strict".to_owned());
    }
    if !ignore.is_empty() {
        args.push(format!("--ignore={}", ignore.join(",")));
    }
    let mut command = format!("cd {} && perl {}", kernel_tree.display(), script.display());
    for a in &args {
        let _ = write!(command, " {a}");
    }
    let _ = write!(command, " {}", patch.path().display());

    let mut cmd = Command::new("perl");
    cmd.arg(&script)
        .args(&args)
        .arg(patch.path())
        .current_dir(kernel_tree)
        // checkpatch looks for `$GIT_DIR // ".git"`; an inherited GIT_DIR (under `git bisect
        // run`, say) would point it at another repository.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().map_err(tmp_err)?)
        .stderr(stderr.try_clone().map_err(tmp_err)?);
    tracing::debug!(%command, "running checkpatch");
    let status = wait_with_deadline(&mut cmd, &script, timeout)?;

    let read_all = |f: &mut std::fs::File| -> Result<String, CheckpatchError> {
        let mut bytes = Vec::new();
        f.rewind()
            .and_then(|()| f.read_to_end(&mut bytes))
            .map_err(|source| CheckpatchError::ReadOutput { source })?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let out = read_all(&mut stdout)?;
    let err = read_all(&mut stderr)?.trim().to_owned();
    let mut report = match parse_output(&out) {
        Err(CheckpatchError::NoSummary) => {
            return Err(CheckpatchError::Failed {
                status,
                stderr: if err.is_empty() {
                    "(empty)".to_owned()
                } else {
                    err
                },
            })
        }
        other => other?,
    };
    report.notes = notes;
    report.stderr = err;
    report.command = command;
    Ok(report)
}

/// Starts `cmd` and waits for it at most `limit`; on the deadline SIGTERM, a grace period,
/// then SIGKILL.
fn wait_with_deadline(
    cmd: &mut Command,
    script: &Path,
    limit: Duration,
) -> Result<ExitStatus, CheckpatchError> {
    let mut child = cmd.spawn().map_err(|source| CheckpatchError::Spawn {
        script: script.to_owned(),
        source,
    })?;
    let wait_err = |source| CheckpatchError::Wait { source };
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(wait_err)? {
            return Ok(status);
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
    tracing::warn!(?limit, "checkpatch timed out; stopping it");
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the pid of our own unreaped child; no memory is touched.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let grace_end = Instant::now() + KILL_GRACE;
    while Instant::now() < grace_end {
        if child.try_wait().map_err(wait_err)?.is_some() {
            return Err(CheckpatchError::Timeout { limit });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Already exited between the checks: kill fails harmlessly, wait reaps.
    let _ = child.kill();
    child.wait().map_err(wait_err)?;
    Err(CheckpatchError::Timeout { limit })
}

/// The counts of a `total:` line: errors, warnings, checks (absent without `--strict`).
fn parse_total(line: &str) -> Option<(usize, usize, Option<usize>)> {
    let rest = line.strip_prefix("total: ")?;
    let mut errors = None;
    let mut warnings = None;
    let mut checks = None;
    let mut lines = None;
    for part in rest.split(", ") {
        let (n, what) = part.split_once(' ')?;
        let n: usize = n.parse().ok()?;
        match what {
            "errors" => errors = Some(n),
            "warnings" => warnings = Some(n),
            "checks" => checks = Some(n),
            "lines checked" => lines = Some(n),
            _ => return None,
        }
    }
    lines?;
    Some((errors?, warnings?, checks))
}

/// The level and the rest of a finding's first line (`ERROR:TYPE: message`).
fn parse_head(line: &str) -> Option<(Level, String, String)> {
    let (level, rest) = [Level::Error, Level::Warning, Level::Check]
        .into_iter()
        .find_map(|l| line.strip_prefix(l.prefix()).map(|r| (l, r)))?;
    if let Some(msg) = rest.strip_prefix(' ') {
        return Some((level, String::new(), msg.to_owned()));
    }
    let (kind, msg) = rest.split_once(": ")?;
    let is_type = !kind.is_empty()
        && kind
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    is_type.then(|| (level, kind.to_owned(), msg.to_owned()))
}

/// `#28: FILE: kernel/futex/core.c:49:` → (28, file, line); `#7: ` → (7, None, None).
fn parse_location(line: &str) -> Option<(u32, Option<String>, Option<u32>)> {
    let rest = line.strip_prefix('#')?;
    let (n, rest) = rest.split_once(':')?;
    let patch_line: u32 = n.parse().ok()?;
    let Some(file) = rest.trim().strip_prefix("FILE: ") else {
        return Some((patch_line, None, None));
    };
    let file = file.strip_suffix(':').unwrap_or(file);
    match file.rsplit_once(':') {
        Some((path, l)) if l.parse::<u32>().is_ok() => {
            Some((patch_line, Some(path.to_owned()), l.parse().ok()))
        }
        _ => Some((patch_line, Some(file.to_owned()), None)),
    }
}

/// Parses checkpatch's normal output format (with or without `--show-types`). Each finding is
/// `LEVEL:TYPE: message`, more message lines, `#NN: FILE: path:line:` and the quoted lines,
/// then a blank line; the last line that matters is `total: ...`. Notes after it are ignored.
pub fn parse_output(text: &str) -> Result<CheckpatchReport, CheckpatchError> {
    let mut findings: Vec<Finding> = Vec::new();
    let mut total_line = None;
    // Whether the current finding's location line was seen (message lines come before it).
    let mut located = false;
    let mut prev_blank = true;
    for line in text.lines() {
        if parse_total(line).is_some() {
            total_line = Some(line.to_owned());
            break;
        }
        // A quoted commit-message line may look like a finding; a real one follows a blank.
        if prev_blank {
            if let Some((level, kind, message)) = parse_head(line) {
                findings.push(Finding {
                    level,
                    kind,
                    message,
                    file: None,
                    line: None,
                    patch_line: None,
                    excerpt: String::new(),
                });
                located = false;
                prev_blank = false;
                continue;
            }
        }
        prev_blank = line.trim().is_empty();
        let Some(f) = findings.last_mut() else {
            continue;
        };
        if !located {
            if let Some((patch_line, file, l)) = parse_location(line) {
                f.patch_line = Some(patch_line);
                f.file = file;
                f.line = l;
                located = true;
            } else if !line.is_empty() {
                f.message.push('\n');
                f.message.push_str(line);
            }
        } else {
            f.excerpt.push_str(line);
            f.excerpt.push('\n');
        }
    }
    let total_line = total_line.ok_or(CheckpatchError::NoSummary)?;
    let mut report = CheckpatchReport {
        errors: Vec::new(),
        warnings: Vec::new(),
        checks: Vec::new(),
        total_line,
        notes: Vec::new(),
        stderr: String::new(),
        command: String::new(),
    };
    for mut f in findings {
        let trimmed = f.excerpt.trim_end_matches('\n').len();
        f.excerpt.truncate(trimmed);
        if !f.excerpt.is_empty() {
            f.excerpt.push('\n');
        }
        match f.level {
            Level::Error => report.errors.push(f),
            Level::Warning => report.warnings.push(f),
            Level::Check => report.checks.push(f),
        }
    }
    let (errors, warnings, checks) =
        parse_total(&report.total_line).ok_or(CheckpatchError::NoSummary)?;
    if errors != report.errors.len()
        || warnings != report.warnings.len()
        || checks.unwrap_or(0) != report.checks.len()
    {
        return Err(CheckpatchError::CountMismatch {
            total: report.total_line.clone(),
            errors: report.errors.len(),
            warnings: report.warnings.len(),
            checks: report.checks.len(),
        });
    }
    Ok(report)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The pristine Debian 6.12 tree, prepared the way `lab build` prepares it: the repository's
    /// `lab.toml` names the kernel definition and the cache, lab verifies the pinned tarball and
    /// unpacks it once (idempotent, locked against other processes). A machine whose lab cache
    /// is empty gets the tree here; only the `linux-source-6.12` package (`make setup`) is
    /// assumed.
    pub(crate) fn kernel_tree() -> PathBuf {
        static TREE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        TREE.get_or_init(|| {
            let settings = crate::config::Settings::discover(Some(&repo_root().join("lab.toml")))
                .expect("the repository's lab.toml loads");
            let def =
                crate::kernel::source::KernelDef::load(&settings.kernel, &settings.kernels_dir)
                    .expect("the default kernel definition loads");
            let source = crate::kernel::source::Source::resolve(&def, &settings.cache_dir)
                .unwrap_or_else(|e| panic!("{e} (run `make setup` to install the pinned tarball)"));
            let tree = source.pristine_dir().expect("the pinned tarball unpacks");
            assert!(
                tree.join("scripts/checkpatch.pl").is_file(),
                "{} has no scripts/checkpatch.pl",
                tree.display()
            );
            tree
        })
        .clone()
    }

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_owned()
    }

    fn shipped(set: &str) -> Vec<(String, String)> {
        let dir = repo_root().join("patches").join(set);
        let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
            .expect("patch set folder")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "patch"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).expect("read patch");
                (p.display().to_string(), text)
            })
            .collect();
        out.sort();
        assert!(!out.is_empty(), "no .patch in {}", dir.display());
        out
    }

    const LIMIT: Duration = Duration::from_secs(120);

    #[test]
    fn shipped_candidates_have_no_checkpatch_errors() {
        let tree = kernel_tree();
        for set in [
            "futex-lockless-wakeup-revert",
            "sched-wait-abort-exclusive-wait",
        ] {
            for (path, text) in shipped(set) {
                let r = run_checkpatch(&tree, &text, LIMIT).expect("checkpatch runs");
                eprintln!("{path}: {}", r.total_line);
                for f in r.findings() {
                    eprintln!("  {:?} {} {}", f.level, f.kind, f.message);
                }
                assert!(r.errors.is_empty(), "{path}: {:#?}", r.errors);
                // Both cite upstream commits; in the tarball tree that check is skipped, so
                // no UNKNOWN_COMMIT_ID may be left.
                assert!(r.is_clean(), "{path}: {:#?}", r.warnings);
                assert!(
                    r.notes.iter().any(|n| n.contains("UNKNOWN_COMMIT_ID")),
                    "{:?}",
                    r.notes
                );
                assert!(r.total_line.starts_with("total: 0 errors, 0 warnings"));
            }
        }
    }

    #[test]
    fn fixture_with_trailing_whitespace_is_an_error() {
        let tree = kernel_tree();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/gate/checkpatch-error.patch");
        let text = std::fs::read_to_string(&fixture).expect("fixture");
        let r = run_checkpatch(&tree, &text, LIMIT).expect("checkpatch runs");
        assert_eq!(r.errors.len(), 1, "{r:#?}");
        assert!(r.warnings.is_empty(), "{r:#?}");
        let e = &r.errors[0];
        assert_eq!(e.level, Level::Error);
        assert_eq!(e.kind, "TRAILING_WHITESPACE");
        assert_eq!(e.message, "trailing whitespace");
        assert_eq!(e.file.as_deref(), Some("kernel/futex/core.c"));
        assert_eq!(e.line, Some(49));
        assert_eq!(e.patch_line, Some(28));
        // checkpatch's cat_vet() marks where the line ends with a `$`.
        assert_eq!(e.excerpt, "+ * reside in the same cacheline. $\n");
        assert_eq!(r.total_line, "total: 1 errors, 0 warnings, 9 lines checked");
        assert!(r.command.contains("--show-types"));
    }

    #[test]
    fn strict_mode_and_extra_ignores_are_passed_on() {
        let tree = kernel_tree();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/gate/checkpatch-error.patch");
        let text = std::fs::read_to_string(&fixture).expect("fixture");
        let opts = CheckpatchOptions {
            strict: true,
            ignore: vec!["TRAILING_WHITESPACE".into()],
        };
        let r = run_checkpatch_with(&tree, &text, LIMIT, &opts).expect("checkpatch runs");
        assert!(r.errors.is_empty(), "{r:#?}");
        // --strict adds the checks count to the total line.
        assert!(r.total_line.contains(" checks, "), "{}", r.total_line);
    }

    #[test]
    fn missing_sign_off_is_reported_without_a_location() {
        let tree = kernel_tree();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/gate/checkpatch-error.patch");
        let text = std::fs::read_to_string(&fixture)
            .expect("fixture")
            .replace("Signed-off-by: Lab Developer <lab@example.org>\n", "");
        let r = run_checkpatch(&tree, &text, LIMIT).expect("checkpatch runs");
        let kinds: Vec<&str> = r.errors.iter().map(|f| f.kind.as_str()).collect();
        assert!(kinds.contains(&"MISSING_SIGN_OFF"), "{r:#?}");
        let f = r
            .errors
            .iter()
            .find(|f| f.kind == "MISSING_SIGN_OFF")
            .expect("finding");
        assert_eq!(f.file, None);
        assert_eq!(f.line, None);
    }

    #[test]
    fn a_directory_that_is_not_a_tree_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = run_checkpatch(dir.path(), "x", LIMIT).expect_err("no script");
        assert!(matches!(err, CheckpatchError::MissingScript { .. }));
        assert!(err.to_string().contains("lab build"), "{err}");
    }

    #[test]
    fn a_dying_script_is_an_error_with_its_stderr() {
        // A fake tree whose checkpatch dies like the real one does outside a kernel tree.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("scripts")).expect("mkdir");
        std::fs::write(
            dir.path().join("scripts/checkpatch.pl"),
            "die \"Must be run from the top-level dir. of a kernel tree\\n\";\n",
        )
        .expect("write");
        let err = run_checkpatch(dir.path(), "x", LIMIT).expect_err("dies");
        match err {
            CheckpatchError::Failed { stderr, .. } => {
                assert!(stderr.contains("top-level dir"), "{stderr}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_hanging_script_is_killed_at_the_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("scripts")).expect("mkdir");
        std::fs::write(dir.path().join("scripts/checkpatch.pl"), "sleep 60;\n").expect("write");
        let start = Instant::now();
        let err =
            run_checkpatch(dir.path(), "x", Duration::from_millis(300)).expect_err("times out");
        assert!(matches!(err, CheckpatchError::Timeout { .. }), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    /// Output of 6.12's checkpatch with `--show-types`, several findings of each kind.
    const SAMPLE: &str = "\
WARNING:COMMIT_LOG_LONG_LINE: Prefer a maximum 75 chars per line (possible unwrapped commit description?)
#9: 
This line of the commit message is far too long to be read comfortably in a mail client, really.

ERROR:SPACING: space prohibited after that open parenthesis '('
#25: FILE: kernel/futex/core.c:60:
+\tfoo( x);

CHECK:PARENTHESIS_ALIGNMENT: Alignment should match open parenthesis
#30: FILE: net/core/dev.c:12:
+\tif (a &&
+\t\tb)

WARNING:MISSING_EOF_NEWLINE: adding a line without newline at end of file
#40: FILE: kernel/futex/futex.h:3:
+}

ERROR:MISSING_SIGN_OFF: Missing Signed-off-by: line(s)

total: 2 errors, 2 warnings, 1 checks, 33 lines checked

NOTE: For some of the reported defects, checkpatch may be able to
      mechanically convert to the typical style using --fix or --fix-inplace.

/tmp/x.patch has style problems, please review.
";

    #[test]
    fn parses_every_kind_of_finding() {
        let r = parse_output(SAMPLE).expect("parses");
        assert_eq!(r.errors.len(), 2);
        assert_eq!(r.warnings.len(), 2);
        assert_eq!(r.checks.len(), 1);
        assert_eq!(
            r.total_line,
            "total: 2 errors, 2 warnings, 1 checks, 33 lines checked"
        );
        let w = &r.warnings[0];
        assert_eq!(w.kind, "COMMIT_LOG_LONG_LINE");
        assert_eq!(w.file, None);
        assert_eq!(w.patch_line, Some(9));
        assert!(w.excerpt.starts_with("This line"));
        let e = &r.errors[0];
        assert_eq!(e.kind, "SPACING");
        assert_eq!(e.file.as_deref(), Some("kernel/futex/core.c"));
        assert_eq!(e.line, Some(60));
        assert_eq!(e.excerpt, "+\tfoo( x);\n");
        let c = &r.checks[0];
        assert_eq!(c.level, Level::Check);
        assert_eq!(c.excerpt, "+\tif (a &&\n+\t\tb)\n");
        let s = &r.errors[1];
        assert_eq!(s.kind, "MISSING_SIGN_OFF");
        assert_eq!(s.patch_line, None);
        assert_eq!(s.excerpt, "");
    }

    #[test]
    fn parses_output_without_types() {
        let text = "ERROR: trailing whitespace\n#28: FILE: kernel/futex/core.c:49:\n+ x \n\n\
                    total: 1 errors, 0 warnings, 9 lines checked\n";
        let r = parse_output(text).expect("parses");
        assert_eq!(r.errors[0].kind, "");
        assert_eq!(r.errors[0].message, "trailing whitespace");
        assert_eq!(r.errors[0].line, Some(49));
    }

    #[test]
    fn a_quoted_commit_line_that_looks_like_a_finding_is_not_one() {
        let text = "WARNING:COMMIT_LOG_LONG_LINE: Prefer a maximum 75 chars per line\n#9: \n\
                    ERROR: this is what checkpatch said last time, quoted in the commit log...\n\n\
                    total: 0 errors, 1 warnings, 3 lines checked\n";
        let r = parse_output(text).expect("parses");
        assert!(r.errors.is_empty());
        assert_eq!(r.warnings.len(), 1);
    }

    #[test]
    fn output_without_a_total_or_with_wrong_counts_is_an_error() {
        assert!(matches!(
            parse_output("Must be run from the top-level dir. of a kernel tree\n"),
            Err(CheckpatchError::NoSummary)
        ));
        let text = "ERROR:X: y\n\ntotal: 2 errors, 0 warnings, 3 lines checked\n";
        assert!(matches!(
            parse_output(text),
            Err(CheckpatchError::CountMismatch { .. })
        ));
    }

    /// Lines of checkpatch's output, real and near-real, to build outputs that get past the
    /// first checks.
    const OUTPUT_LINES: &[&str] = &[
        "ERROR:TRAILING_WHITESPACE: trailing whitespace",
        "WARNING:LONG_LINE: line length of 101 exceeds 100 columns",
        "CHECK:SPACING: spaces preferred around that '+'",
        "ERROR: Missing Signed-off-by: line(s)",
        "WARNING:",
        "ERROR:lower: x",
        "#28: FILE: kernel/futex/core.c:49:",
        "#7: ",
        "#99999999999: FILE: a.c:99999999999:",
        "#1: FILE: :",
        "+ * reside in the same cacheline. $",
        "",
        " ",
        "total: 1 errors, 0 warnings, 9 lines checked",
        "total: 0 errors, 1 warnings, 1 checks, 9 lines checked",
        "total: 18446744073709551616 errors, 0 warnings, 9 lines checked",
        "total: 1 errors, 1 warnings",
        "total: ",
        "NOTE: For some of the reported defects, checkpatch may be able to",
        "x.patch has style problems, please review.",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        #[test]
        fn fuzz_parse_output_takes_any_text(
            text in "\\PC*",
            picks in proptest::collection::vec((0..OUTPUT_LINES.len(), "\\PC{0,8}", 0u8..4), 0..24),
        ) {
            let built: Vec<String> = picks
                .iter()
                .map(|(i, junk, how)| match how {
                    0 => format!("{}{junk}", OUTPUT_LINES[*i]),
                    1 => junk.clone(),
                    _ => OUTPUT_LINES[*i].to_owned(),
                })
                .collect();
            for text in [text, built.join("\n")] {
                if let Ok(r) = parse_output(&text) {
                    // What is accepted adds up to its own total line.
                    let total = parse_total(&r.total_line);
                    proptest::prop_assert_eq!(
                        total,
                        Some((r.errors.len(), r.warnings.len(), total.and_then(|t| t.2)))
                    );
                    proptest::prop_assert_eq!(total.and_then(|t| t.2).unwrap_or(0), r.checks.len());
                }
            }
        }
    }
}
