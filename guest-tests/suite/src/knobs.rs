//! Race-window amplifier knobs: kernel parameters under `/sys/module/kernel/parameters/`
//! that the lab's debug patches add (see the suite README). They are global kernel state,
//! so whatever a test sets it puts back when it ends, including when the watchdog ends it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where `core_param` knobs appear.
pub const PARAMETERS_DIR: &str = "/sys/module/kernel/parameters";

/// Why the knobs could not be set.
#[derive(Debug)]
pub enum KnobError {
    /// The parameter file does not exist: this kernel lacks the amplifier patch.
    Missing { name: String, path: PathBuf },
    /// Not allowed to read or write it: not root, or a read-only sysfs.
    Denied { name: String, source: io::Error },
    /// The kernel refused the value.
    Rejected {
        name: String,
        value: String,
        source: io::Error,
    },
}

impl fmt::Display for KnobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KnobError::Missing { name, path } => write!(
                f,
                "knob {name} does not exist ({} is missing): the kernel lacks the amplifier patch",
                path.display()
            ),
            KnobError::Denied { name, source } => write!(
                f,
                "knob {name} cannot be set: {source}; amplifier knobs need root (missing privilege)"
            ),
            KnobError::Rejected {
                name,
                value,
                source,
            } => write!(f, "knob {name} rejects the value {value:?}: {source}"),
        }
    }
}

/// Knobs that were set, with the values to put back.
#[derive(Debug, Default)]
pub struct Knobs {
    /// `(path, old value)` in the order they were set.
    set: Vec<(PathBuf, String)>,
}

impl Knobs {
    /// Reads every knob's current value, then writes the wanted ones. Nothing is written
    /// unless every knob exists; if a write fails, what was written is put back.
    pub fn apply(dir: &Path, wanted: &[(String, String)]) -> Result<Knobs, KnobError> {
        let mut olds: Vec<(PathBuf, String)> = Vec::new();
        for (name, _) in wanted {
            let path = dir.join(name);
            if olds.iter().any(|(p, _)| *p == path) {
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(old) => olds.push((path, old.trim_end_matches('\n').to_owned())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(KnobError::Missing {
                        name: name.clone(),
                        path,
                    })
                }
                Err(source) => {
                    return Err(KnobError::Denied {
                        name: name.clone(),
                        source,
                    })
                }
            }
        }
        let mut knobs = Knobs::default();
        for (name, value) in wanted {
            let path = dir.join(name);
            if let Err(source) = std::fs::write(&path, value) {
                // Best effort: the error being reported matters more than a failed restore.
                let _ = knobs.restore();
                return Err(match source.kind() {
                    io::ErrorKind::PermissionDenied => KnobError::Denied {
                        name: name.clone(),
                        source,
                    },
                    _ => KnobError::Rejected {
                        name: name.clone(),
                        value: value.clone(),
                        source,
                    },
                });
            }
            if let Some(old) = olds.iter().find(|(p, _)| *p == path) {
                if !knobs.set.iter().any(|(p, _)| *p == path) {
                    knobs.set.push(old.clone());
                }
            }
        }
        Ok(knobs)
    }

    /// Puts every old value back, last set first; returns what could not be restored.
    pub fn restore(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        while let Some((path, old)) = self.set.pop() {
            if let Err(e) = std::fs::write(&path, &old) {
                errors.push(format!("{} back to {old:?}: {e}", path.display()));
            }
        }
        errors
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lab-knobs-{tag}-{}-{}",
            std::process::id(),
            crate::sys::now_ns()
        ));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    fn knob(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn apply_then_restore_puts_old_values_back() {
        let dir = scratch("restore");
        std::fs::write(dir.join("a"), "0\n").expect("write a");
        std::fs::write(dir.join("b"), "N\n").expect("write b");
        let mut k = Knobs::apply(&dir, &[knob("a", "200"), knob("b", "Y"), knob("a", "300")])
            .expect("apply");
        assert_eq!(
            std::fs::read_to_string(dir.join("a")).ok().as_deref(),
            Some("300")
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("b")).ok().as_deref(),
            Some("Y")
        );
        assert!(k.restore().is_empty());
        assert_eq!(
            std::fs::read_to_string(dir.join("a")).ok().as_deref(),
            Some("0")
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("b")).ok().as_deref(),
            Some("N")
        );
        assert!(k.is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_missing_knob_writes_nothing() {
        let dir = scratch("missing");
        std::fs::write(dir.join("a"), "0\n").expect("write a");
        let err = Knobs::apply(&dir, &[knob("a", "5"), knob("futex_amp_random", "1")])
            .expect_err("must fail");
        assert!(matches!(&err, KnobError::Missing { name, .. } if name == "futex_amp_random"));
        assert!(err.to_string().contains("lacks the amplifier patch"));
        assert_eq!(
            std::fs::read_to_string(dir.join("a")).ok().as_deref(),
            Some("0\n")
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
