//! The one way lab runs git: on a repository, with arguments, returning stdout or an error
//! that names the command, the repository and what git said. A leaf: it imports nothing from
//! the crate, so `source`, `bisect` and `gate` all use it without arrows between them.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run `git {args}` in {}: is git installed?", repo.display())]
    Spawn {
        args: String,
        repo: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`git {args}` in {} failed: {stderr}", repo.display())]
    Failed {
        args: String,
        repo: PathBuf,
        stderr: String,
    },
}

/// Runs `git -C repo args...` and returns its stdout as raw bytes.
pub fn run_bytes(repo: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .map_err(|source| GitError::Spawn {
            args: args.join(" "),
            repo: repo.to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            repo: repo.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.stdout)
}

/// Runs `git -C repo args...` and returns its stdout as text, without trailing white space.
pub fn run(repo: &Path, args: &[&str]) -> Result<String, GitError> {
    let out = run_bytes(repo, args)?;
    Ok(String::from_utf8_lossy(&out).trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_names_itself_and_git_s_words() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = run(dir.path(), &["rev-parse", "--verify", "nope"]).expect_err("no repo");
        let msg = err.to_string();
        assert!(msg.contains("`git rev-parse --verify nope`"), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(matches!(err, GitError::Failed { ref stderr, .. } if !stderr.is_empty()));
    }

    #[test]
    fn stdout_comes_back_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        run(dir.path(), &["init", "-q"]).expect("git init");
        let top = run(dir.path(), &["rev-parse", "--show-toplevel"]).expect("toplevel");
        assert!(!top.ends_with('\n'));
    }
}
