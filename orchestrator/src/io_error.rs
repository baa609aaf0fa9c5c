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
