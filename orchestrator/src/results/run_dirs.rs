//! The run folders under `<cache>/runs`: one per `lab run`, comparison, bisection or
//! selftest, holding each boot's console log, keys and results. They are evidence, so lab
//! never removes them on its own; `lab cache prune --runs` does, by count or age, and keeps
//! the folders of sessions that are still open (a comparison that the same command would
//! resume, or one running now) and each folder's reports.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Files at the top of a run folder that pruning keeps: the reports a comparison wrote
/// (their figures and crash excerpts are also in the results store).
const KEPT: &[&str] = &["report.html", "report.md", "report.json"];

/// One run folder.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFolder {
    pub path: PathBuf,
    /// Seconds since the epoch of its last change (the folder or anything directly in it).
    pub modified: u64,
}

/// What a prune did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pruned {
    /// Folders emptied (their reports kept) or removed.
    pub removed: Vec<PathBuf>,
    /// Folders that would have gone but belong to an open session.
    pub kept_open: Vec<PathBuf>,
    pub bytes_freed: u64,
}

fn mtime(p: &Path) -> u64 {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// The run folders, newest first.
pub fn list(runs_dir: &Path) -> Vec<RunFolder> {
    let mut out: Vec<RunFolder> = std::fs::read_dir(runs_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| {
                    let path = e.path();
                    let newest_inside = std::fs::read_dir(&path)
                        .map(|rd| {
                            rd.filter_map(Result::ok)
                                .map(|c| mtime(&c.path()))
                                .max()
                                .unwrap_or(0)
                        })
                        .unwrap_or(0);
                    RunFolder {
                        modified: mtime(&path).max(newest_inside),
                        path,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.path.cmp(&b.path)));
    out
}

/// Bytes of regular files under `p`, not following symlinks.
pub fn size(p: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(p)
        .map(|rd| rd.filter_map(Result::ok).map(|e| size(&e.path())).sum())
        .unwrap_or(0)
}

/// Prunes run folders beyond the newest `keep`, or older than `older_than_s` at `now`: each
/// is emptied but for its reports, or removed when it holds none. Folders that contain one
/// of `open_dirs` (the run directories of open sessions) are kept and listed.
pub fn prune(
    runs_dir: &Path,
    keep: Option<usize>,
    older_than_s: Option<u64>,
    now: u64,
    open_dirs: &[PathBuf],
) -> std::io::Result<Pruned> {
    let mut done = Pruned::default();
    for (i, f) in list(runs_dir).into_iter().enumerate() {
        let too_many = keep.is_some_and(|k| i >= k);
        let too_old = older_than_s.is_some_and(|age| now.saturating_sub(f.modified) > age);
        if !(too_many || too_old) {
            continue;
        }
        if open_dirs.iter().any(|d| d.starts_with(&f.path)) {
            done.kept_open.push(f.path);
            continue;
        }
        let before = size(&f.path);
        let mut reports = 0;
        for e in std::fs::read_dir(&f.path)?.filter_map(Result::ok) {
            let name = e.file_name();
            let keep_it = e.file_type().is_ok_and(|t| t.is_file())
                && KEPT.contains(&name.to_string_lossy().as_ref());
            if keep_it {
                reports += 1;
            } else if e.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(e.path())?;
            } else {
                std::fs::remove_file(e.path())?;
            }
        }
        if reports == 0 {
            std::fs::remove_dir(&f.path)?;
        }
        done.bytes_freed += before.saturating_sub(size(&f.path));
        done.removed.push(f.path);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path, bytes: usize, secs: u64) {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, vec![b'x'; bytes]).expect("write");
        let t = filetime::FileTime::from_unix_time(secs as i64, 0);
        filetime::set_file_mtime(p, t).expect("mtime");
    }

    fn folder(runs: &Path, name: &str, secs: u64, report: bool) -> PathBuf {
        let d = runs.join(name);
        touch(&d.join("x86_64/batch-001-A/boot-1/console.log"), 1000, secs);
        if report {
            touch(&d.join("report.html"), 10, secs);
        }
        for sub in [
            "x86_64/batch-001-A/boot-1",
            "x86_64/batch-001-A",
            "x86_64",
            "",
        ] {
            filetime::set_file_mtime(
                d.join(sub),
                filetime::FileTime::from_unix_time(secs as i64, 0),
            )
            .expect("mtime");
        }
        d
    }

    #[test]
    fn keeps_the_newest_the_open_and_every_report() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let runs = tmp.path();
        let old_cmp = folder(runs, "100-1-compare", 100, true);
        let old_run = folder(runs, "200-2", 200, false);
        let open = folder(runs, "300-3-compare", 300, false);
        let new = folder(runs, "400-4", 400, false);
        assert_eq!(
            list(runs)
                .iter()
                .map(|f| f.path.clone())
                .collect::<Vec<_>>(),
            vec![new.clone(), open.clone(), old_run.clone(), old_cmp.clone()]
        );
        let open_dirs = vec![open.join("x86_64/batch-001-A")];
        let done = prune(runs, Some(1), None, 1000, &open_dirs).expect("prunes");
        assert_eq!(done.removed, vec![old_run.clone(), old_cmp.clone()]);
        assert_eq!(done.kept_open, vec![open.clone()]);
        assert_eq!(done.bytes_freed, 2000);
        assert!(new.join("x86_64").is_dir(), "the newest stays whole");
        assert!(open.join("x86_64").is_dir(), "an open session stays whole");
        assert!(!old_run.exists(), "a folder without reports goes");
        assert!(old_cmp.join("report.html").is_file(), "reports stay");
        assert!(!old_cmp.join("x86_64").exists(), "the boots go");
    }

    #[test]
    fn by_age_only_what_is_older() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let runs = tmp.path();
        let old = folder(runs, "a", 1_000, false);
        let young = folder(runs, "b", 9_000, false);
        let done = prune(runs, None, Some(5_000), 10_000, &[]).expect("prunes");
        assert_eq!(done.removed, vec![old.clone()]);
        assert!(young.exists() && !old.exists());
        // Nothing to do is no error, and a missing runs/ is an empty one.
        assert_eq!(
            prune(&runs.join("none"), Some(0), None, 0, &[]).expect("ok"),
            Pruned::default()
        );
    }
}
