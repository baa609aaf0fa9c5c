//! Helpers shared by the integration tests: the real `lab` binary, the repository, and lab
//! definitions written into temporary folders. The kernel cache is the user's default one,
//! so the tests and the main job share kernels (and CI on a warm machine is fast).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]
#![allow(
    dead_code,
    reason = "each test binary uses its own part of the helpers"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// lab's cache as lab itself finds it (`LAB_CACHE_DIR`, else `$XDG_CACHE_HOME/lab`, else
/// `~/.cache/lab`), for the tests that prepare or inspect state in it.
pub fn cache_dir() -> PathBuf {
    let set = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    set("LAB_CACHE_DIR")
        .or_else(|| set("XDG_CACHE_HOME").map(|d| d.join("lab")))
        .unwrap_or_else(|| set("HOME").expect("HOME is set").join(".cache/lab"))
}

/// The repository's own `lab.toml`.
pub fn repo_lab_toml() -> PathBuf {
    repo().join("lab.toml")
}

/// `lab` with a lab definition.
pub fn lab(lab_toml: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lab"));
    c.arg("--lab").arg(lab_toml).current_dir(repo());
    c
}

/// Writes `lab.toml` into `dir`: `{repo}` in `text` becomes the repository path, and the
/// repository's kernels, configs and patches are used unless `text` says otherwise.
pub fn lab_toml(dir: &Path, text: &str) -> PathBuf {
    let r = repo();
    let mut body = text.replace("{repo}", &r.display().to_string());
    if !body.contains("kernels-dir") {
        body = format!("kernels-dir = \"{}/kernels\"\n{body}", r.display());
    }
    if !body.contains("[config]") {
        body.push_str(&format!("\n[config]\ndir = \"{}/configs\"\n", r.display()));
    }
    if !body.contains("[patches]") {
        body.push_str(&format!("\n[patches]\ndir = \"{}/patches\"\n", r.display()));
    }
    let p = dir.join("lab.toml");
    std::fs::write(&p, body).expect("write lab.toml");
    p
}

pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Ran {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("lab runs");
    let r = Ran {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    eprintln!("--- lab exited {}\n{}\n{}", r.code, r.stdout, r.stderr);
    r
}

/// The one built kernel in `lab build --json` output.
pub fn built(r: &Ran) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&r.stdout).expect("lab build --json prints JSON");
    v.as_array()
        .and_then(|a| a.first())
        .cloned()
        .expect("one kernel")
}

/// The command lines of the live (not zombie) processes whose command line holds `needle`.
pub fn processes_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'));
            (cmd.contains(needle) && !zombie).then_some(cmd)
        })
        .collect()
}
