//! Choosing tests from what a plain patch touches: `guest-tests/test-map.toml` maps kernel
//! files (and, optionally, functions) to the tests that enter them and to the race
//! amplifiers of that code. See the file's header for its keys.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use globset::GlobMatcher;
use serde::Deserialize;

use crate::kernel::patch::Patch;

/// Why the map could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("cannot read the test map {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the test map {}: {why}", path.display())]
    Invalid { path: PathBuf, why: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct MapFile {
    format_version: u32,
    #[serde(default)]
    area: Vec<AreaFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AreaFile {
    name: String,
    files: Vec<String>,
    #[serde(default)]
    functions: Vec<String>,
    tests: Vec<String>,
    #[serde(default)]
    amplifiers: Vec<String>,
}

/// One area of the kernel and the tests that enter it.
#[derive(Debug, Clone)]
pub struct Area {
    pub name: String,
    files: Vec<(String, GlobMatcher)>,
    pub functions: Vec<String>,
    pub tests: Vec<String>,
    pub amplifiers: Vec<String>,
}

/// The test map.
#[derive(Debug, Clone)]
pub struct TestMap {
    pub areas: Vec<Area>,
}

/// What a patch made the map choose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// In the order the areas list them, each once.
    pub tests: Vec<String>,
    /// One line per matching area: its name and what matched.
    pub reasons: Vec<String>,
    /// Amplifier sets of the matching areas, each once.
    pub amplifiers: Vec<String>,
}

impl TestMap {
    pub fn load(path: &Path) -> Result<TestMap, MapError> {
        let text = std::fs::read_to_string(path).map_err(|source| MapError::Read {
            path: path.to_owned(),
            source,
        })?;
        TestMap::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<TestMap, MapError> {
        let invalid = |why: String| MapError::Invalid {
            path: path.to_owned(),
            why,
        };
        let file: MapFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if file.format_version != 1 {
            return Err(invalid(format!(
                "format-version {} is not one this lab reads (1)",
                file.format_version
            )));
        }
        let mut areas = Vec::new();
        for a in file.area {
            if a.files.is_empty() || a.tests.is_empty() {
                return Err(invalid(format!("area {:?} needs files and tests", a.name)));
            }
            for t in &a.tests {
                crate::config::names::check_test(t)
                    .map_err(|e| invalid(format!("area {:?}: {e}", a.name)))?;
            }
            let mut files = Vec::new();
            for f in &a.files {
                let glob = globset::GlobBuilder::new(f)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| invalid(format!("area {:?}: file {f:?}: {e}", a.name)))?;
                files.push((f.clone(), glob.compile_matcher()));
            }
            areas.push(Area {
                name: a.name,
                files,
                functions: a.functions,
                tests: a.tests,
                amplifiers: a.amplifiers,
            });
        }
        Ok(TestMap { areas })
    }

    /// What `patches` touch, through the map; `None` when no area covers any of it.
    pub fn select(&self, patches: &[&Patch]) -> Option<Selection> {
        let touched = touched(patches);
        let mut sel = Selection::default();
        let mut seen = BTreeSet::new();
        for area in &self.areas {
            let mut hits = Vec::new();
            for (file, functions) in &touched {
                if !area.files.iter().any(|(_, g)| g.is_match(file)) {
                    continue;
                }
                if area.functions.is_empty() {
                    hits.push(if functions.is_empty() {
                        file.clone()
                    } else {
                        format!(
                            "{file} ({})",
                            functions
                                .iter()
                                .map(|f| format!("{f}()"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    });
                    continue;
                }
                let inside: Vec<&String> = functions
                    .iter()
                    .filter(|f| area.functions.contains(f))
                    .collect();
                if !inside.is_empty() {
                    hits.push(format!(
                        "{file} ({})",
                        inside
                            .iter()
                            .map(|f| format!("{f}()"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            if hits.is_empty() {
                continue;
            }
            sel.reasons.push(format!(
                "{}: the patch changes {}",
                area.name,
                hits.join(", ")
            ));
            for t in &area.tests {
                if seen.insert(t.clone()) {
                    sel.tests.push(t.clone());
                }
            }
            for a in &area.amplifiers {
                if !sel.amplifiers.contains(a) {
                    sel.amplifiers.push(a.clone());
                }
            }
        }
        (!sel.tests.is_empty()).then_some(sel)
    }
}

/// Each file the patches change, with the functions their hunks sit in.
pub fn touched(patches: &[&Patch]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for p in patches {
        for fd in &p.files {
            let file = fd.target().to_owned();
            let functions: Vec<String> = fd
                .hunks
                .iter()
                .filter_map(|h| function_of(&h.section))
                .collect();
            match out.iter_mut().find(|(f, _)| *f == file) {
                Some((_, fs)) => fs.extend(functions),
                None => out.push((file, functions)),
            }
        }
    }
    for (_, fs) in &mut out {
        fs.sort();
        fs.dedup();
    }
    out
}

/// The function a hunk header's section names: `int futex_wake(u32 __user *uaddr, ...)` is
/// `futex_wake`; a section without a call is not a function.
fn function_of(section: &str) -> Option<String> {
    let before = section.split('(').next()?;
    if before.len() == section.len() {
        return None;
    }
    let name = before
        .trim_end()
        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()?;
    (!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit())).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(text: &str) -> Patch {
        let files = crate::kernel::patch::parse_diff(text, Path::new("t.patch"), 0).expect("diff");
        Patch {
            label: "t".into(),
            subject: "t".into(),
            text: text.into(),
            files,
        }
    }

    fn repo_map() -> TestMap {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-tests/test-map.toml");
        TestMap::load(&p).expect("the shipped map reads")
    }

    const WAITWAKE: &str = "--- a/kernel/futex/waitwake.c\n+++ b/kernel/futex/waitwake.c\n\
        @@ -10,3 +10,3 @@ int futex_wake(u32 __user *uaddr, unsigned int flags, int nr_wake, u32 bitset)\n \
        a\n-b\n+c\n d\n";

    #[test]
    fn functions_come_from_hunk_headers() {
        assert_eq!(
            function_of("int futex_wake(u32 __user *uaddr, unsigned int flags)").as_deref(),
            Some("futex_wake")
        );
        assert_eq!(
            function_of("static void __sched *try_to_wake_up(struct task_struct *p)").as_deref(),
            Some("try_to_wake_up")
        );
        assert_eq!(function_of("struct futex_hash_bucket {"), None);
        assert_eq!(function_of(""), None);
        let p = patch(WAITWAKE);
        assert_eq!(
            touched(&[&p]),
            vec![(
                "kernel/futex/waitwake.c".to_owned(),
                vec!["futex_wake".to_owned()]
            )]
        );
    }

    #[test]
    fn the_shipped_map_chooses_futex_tests_for_waitwake_and_names_why() {
        let sel = repo_map().select(&[&patch(WAITWAKE)]).expect("covered");
        assert!(sel.tests.contains(&"futex_errno".to_owned()), "{sel:?}");
        assert!(!sel.tests.contains(&"pipe_excl".to_owned()), "{sel:?}");
        assert_eq!(sel.amplifiers, vec!["futex-race-amplifiers".to_owned()]);
        assert_eq!(
            sel.reasons,
            vec![
                "futex wait and wake: the patch changes kernel/futex/waitwake.c (futex_wake())"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn function_areas_match_only_their_functions() {
        let map = repo_map();
        let in_ttwu = patch(
            "--- a/kernel/sched/core.c\n+++ b/kernel/sched/core.c\n\
             @@ -1,1 +1,1 @@ int try_to_wake_up(struct task_struct *p, unsigned int state, int wake_flags)\n-a\n+b\n",
        );
        let sel = map.select(&[&in_ttwu]).expect("covered");
        assert!(sel.reasons[0].contains("try_to_wake_up()"), "{sel:?}");
        let elsewhere = patch(
            "--- a/kernel/sched/core.c\n+++ b/kernel/sched/core.c\n\
             @@ -1,1 +1,1 @@ static int sysctl_sched_uclamp_handler(void)\n-a\n+b\n",
        );
        assert_eq!(map.select(&[&elsewhere]), None);
    }

    #[test]
    fn every_test_of_the_shipped_map_exists() {
        let s =
            crate::config::Settings::from_text(Path::new("/lab/lab.toml"), "").expect("defaults");
        for area in repo_map().areas {
            for t in &area.tests {
                let known = s.suite.contains(t)
                    || t.strip_prefix(crate::guest::image::RT_PREFIX)
                        .is_some_and(|p| crate::guest::image::RT_PROGRAMS.contains(&p))
                    || t.strip_prefix(crate::guest::image::PERF_PREFIX)
                        .is_some_and(|b| crate::guest::perf::BENCHES.contains(&b))
                    || t.strip_prefix(crate::guest::image::KSELFTEST_PREFIX)
                        .and_then(|r| r.split_once('/'))
                        .is_some_and(|(c, p)| {
                            crate::guest::kselftest::COLLECTIONS
                                .iter()
                                .any(|k| k.name == c && k.programs.contains(&p))
                        });
                assert!(known, "area {:?}: no test {t:?}", area.name);
            }
            for a in &area.amplifiers {
                let expect = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../patches")
                    .join(a)
                    .join("expect.toml");
                assert!(
                    expect.is_file(),
                    "area {:?}: no amplifier set {a}",
                    area.name
                );
            }
        }
    }

    #[test]
    fn a_bad_map_is_refused_with_its_reason() {
        let p = Path::new("m.toml");
        for (text, why) in [
            ("format-version = 2\n", "format-version 2"),
            (
                "format-version = 1\n[[area]]\nname = \"x\"\nfiles = []\ntests = [\"a\"]\n",
                "needs files",
            ),
            (
                "format-version = 1\n[[area]]\nname = \"x\"\nfiles = [\"a\"]\ntests = [\"a;b\"]\n",
                "shell character",
            ),
            (
                "format-version = 1\n[[area]]\nname = \"x\"\nfiles = [\"[\"]\ntests = [\"a\"]\n",
                "file \"[\"",
            ),
        ] {
            let e = TestMap::parse(p, text).expect_err(text).to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
