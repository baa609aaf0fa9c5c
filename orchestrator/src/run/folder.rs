//! What a run folder holds besides the manifest: `results.jsonl` (one run's outcomes; an
//! earlier attempt's file is set aside, not appended to) and `output/`, each test run's
//! whole stderr.

use std::path::{Path, PathBuf};

/// A run folder holds one run's outcomes. When the folder was used before (a bisection step
/// or batch begun, interrupted and begun again), the earlier attempt's `results.jsonl` is
/// renamed `results.earlier-N.jsonl` rather than appended to: its runs stay on disk, and the
/// file beside this run's manifest describes this run only.
pub(super) fn set_aside_earlier_results(path: &Path) {
    if !path.exists() {
        return;
    }
    let Some(dir) = path.parent() else { return };
    let aside = (1..)
        .map(|n| dir.join(format!("results.earlier-{n}.jsonl")))
        .find(|p| !p.exists())
        .unwrap_or_else(|| dir.join("results.earlier.jsonl"));
    match std::fs::rename(path, &aside) {
        Ok(()) => tracing::warn!(
            earlier = %aside.display(),
            "the run folder was used before; its earlier outcomes were set aside"
        ),
        Err(e) => tracing::warn!(path = %path.display(), "set aside earlier outcomes: {e}"),
    }
}

/// How many stderr lines of one test run are kept in its file.
pub(super) const STDERR_KEPT_LINES: usize = 20_000;

/// Where a test run's whole stderr is kept: `<run dir>/output/<test>.<iteration>.stderr`,
/// with `:` and `/` of the name (`kselftest:futex/futex_wait`) as `_`. A kselftest's raw TAP
/// is there, as the adapter writes it to stderr; the outcome keeps the last 20 lines.
pub fn stderr_file(dir: &Path, test: &str, iteration: u32) -> PathBuf {
    let safe: String = test
        .chars()
        .map(|c| if c == ':' || c == '/' { '_' } else { c })
        .collect();
    dir.join("output")
        .join(format!("{safe}.{iteration}.stderr"))
}

pub(super) fn keep_stderr(dir: &Path, test: &str, iteration: u32, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let path = stderr_file(dir, test, iteration);
    let mut text = lines.join("\n");
    text.push('\n');
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, text));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), "keep the test's stderr: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_run_folder_sets_the_earlier_outcomes_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let results = dir.path().join("results.jsonl");
        set_aside_earlier_results(&results);
        assert!(!results.exists(), "nothing to set aside in a new folder");
        for n in 1..=2 {
            std::fs::write(&results, format!("attempt {n}\n")).expect("write");
            set_aside_earlier_results(&results);
            assert!(!results.exists());
            let aside = dir.path().join(format!("results.earlier-{n}.jsonl"));
            assert_eq!(
                std::fs::read_to_string(aside).expect("kept"),
                format!("attempt {n}\n")
            );
        }
    }

    #[test]
    fn stderr_files_are_named_by_test_and_iteration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = stderr_file(dir.path(), "kselftest:futex/futex_wait", 3);
        assert_eq!(
            path,
            dir.path()
                .join("output/kselftest_futex_futex_wait.3.stderr")
        );
        keep_stderr(dir.path(), "kselftest:futex/futex_wait", 3, &[]);
        assert!(!path.exists(), "nothing written for a silent run");
        keep_stderr(
            dir.path(),
            "kselftest:futex/futex_wait",
            3,
            &["a".into(), "b".into()],
        );
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), "a\nb\n");
    }
}
