//! The one error every module may use for a failed filesystem or process step on a path. A leaf:
//! it imports nothing from the crate, so `kernel/`, `vm/` and `guest/` can use it without an
//! arrow back up to `errors.rs`.

use std::path::{Path, PathBuf};

/// A filesystem or process step that failed on a path: "cannot write /x/y".
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}")]
pub struct IoError {
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// For `map_err`: wraps an `io::Error` with the step that failed and its path.
pub fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> IoError + 'a {
    move |source| IoError {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Writes `data` to `path` whole or not at all: through a temporary file of this process's own
/// in the same folder (created if missing), then a rename. A reader, or another lab process
/// writing the same path, never sees half a file.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), IoError> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(io("cannot create a temporary file in", dir))?;
    tmp.write_all(data)
        .map_err(io("cannot write", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| io("cannot write", path)(e.error))?;
    Ok(())
}

/// Moves a finished build folder `staged` to `dir`, whole or not at all. `load` reads a
/// verified build at `dir`: another process that renamed its own build into place in the
/// meantime wins, and its build is returned (`Some`); only a damaged folder under the key is
/// replaced. `None`: `staged` is now `dir`. `what` names the build in an error.
pub fn publish_dir<T>(
    staged: tempfile::TempDir,
    dir: &Path,
    what: &'static str,
    load: impl Fn() -> Option<T>,
) -> Result<Option<T>, IoError> {
    if let Some(b) = load() {
        return Ok(Some(b));
    }
    if dir.exists() {
        let _ = std::fs::remove_dir_all(dir);
    }
    let staged = staged.keep();
    if let Err(e) = std::fs::rename(&staged, dir) {
        let _ = std::fs::remove_dir_all(&staged);
        return load().map(Some).ok_or_else(|| io(what, dir)(e));
    }
    Ok(None)
}

/// An error and its causes on one line, "what failed: cause: cause", skipping a cause whose
/// text the line already holds (a wrapper that shows its source inline). For the places where
/// an error becomes a recorded reason (a run's infra-error, a skipped step) rather than the
/// error a command ends with.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        source = cause.source();
    }
    text
}
