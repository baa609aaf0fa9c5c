//! `lab build` end to end: real kernels, and a clear error with exit code 2 for each kind of
//! bad input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]

mod common;

use common::{built, lab, lab_toml, run};

/// Base, then base plus a candidate, then base again: the variant recompiles only what the
/// patch touched, and going back is a cache hit with no make call.
#[test]
fn variant_rebuild_is_incremental_and_going_back_is_a_cache_hit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = lab_toml(dir.path(), "arches = [\"x86_64\"]\n");
    let base = run(lab(&toml).args(["build", "--arch", "x86_64", "--json"]));
    assert_eq!(base.code, 0, "base build failed");
    let base = built(&base);
    let base_key = base["key"].as_str().expect("key").to_owned();
    assert!(std::path::Path::new(base["image"].as_str().expect("image")).is_file());
    assert!(std::path::Path::new(base["vmlinux"].as_str().expect("vmlinux")).is_file());
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(base["manifest"].as_str().expect("manifest")).expect("read"),
    )
    .expect("json");
    assert_eq!(manifest["source"]["kind"], "tarball");
    assert_eq!(
        manifest["source"]["id"].as_str().map(str::len),
        Some(64),
        "the tarball hash is in the manifest"
    );
    let config =
        std::fs::read_to_string(base["config"].as_str().expect("config")).expect("read config");
    assert!(
        config.contains("CONFIG_PREEMPT_RT=y"),
        "the base kernel is PREEMPT_RT"
    );

    let variant = run(lab(&toml).args([
        "build",
        "--arch",
        "x86_64",
        "--patches",
        "futex-lockless-wakeup-revert",
        "--json",
    ]));
    assert_eq!(variant.code, 0);
    let variant = built(&variant);
    assert_ne!(variant["key"], base["key"]);
    if variant["cached"] == false {
        assert_eq!(
            variant["touched"],
            serde_json::json!(["kernel/futex/waitwake.c"])
        );
        let compiled = variant["compiled"].as_u64().expect("compiled");
        assert!(
            compiled < 40,
            "a one-file patch recompiled {compiled} files: the O= tree is not being reused"
        );
    }

    // Variants that are new on every run, so the one-file rebuild is exercised even when the
    // candidate above came from the cache. The first brings the shared O= tree to "base plus
    // one line in waitwake.c", whatever was built in it last (another test, another variant
    // touching a widely included header); the second differs from it in that one file only,
    // and is the one measured.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let variant = |name: &str| {
        let path = dir.path().join(format!("0001-{name}.patch"));
        std::fs::write(
            &path,
            format!("Subject: [PATCH] {name}\n---\n--- a/kernel/futex/waitwake.c\n+++ b/kernel/futex/waitwake.c\n@@ -1,3 +1,4 @@\n // SPDX-License-Identifier: GPL-2.0-or-later\n+/* lab test variant {name} {stamp} */\n \n #include <linux/plist.h>\n"),
        )
        .expect("write");
        path
    };
    let settle = run(lab(&toml)
        .args(["build", "--arch", "x86_64", "--json", "--patches"])
        .arg(variant("settle")));
    assert_eq!(settle.code, 0);
    let unique = run(lab(&toml)
        .args(["build", "--arch", "x86_64", "--json", "--patches"])
        .arg(variant("fresh")));
    assert_eq!(unique.code, 0);
    let unique = built(&unique);
    assert_eq!(
        unique["cached"], false,
        "a new variant cannot be a cache hit"
    );
    assert_eq!(
        unique["touched"],
        serde_json::json!(["kernel/futex/waitwake.c"])
    );
    let compiled = unique["compiled"].as_u64().expect("compiled");
    assert!(
        compiled < 40,
        "a one-file patch recompiled {compiled} files: the O= tree is not being reused"
    );

    // The O= tree is a direct child of the work tree, so kbuild names sources and headers
    // relative to it: the compile command of the file just rebuilt holds no absolute source
    // path, and ccache hits from any other work tree (a git bisection's) with the same files.
    let cmd = newest_cmd_file("kernel/futex/.waitwake.o.cmd");
    let text = std::fs::read_to_string(&cmd).expect("read the .cmd file");
    let src = cmd
        .ancestors()
        .find(|p| p.join("Makefile").is_file() && p.join("kernel").is_dir())
        .expect("the work tree above the O= tree")
        .to_owned();
    assert!(
        text.contains(" ../kernel/futex/waitwake.c") && text.contains("-I../include"),
        "kbuild compiled with relative paths ({}):\n{text}",
        cmd.display()
    );
    assert!(
        !text.contains(&format!("{}/", src.display())),
        "no absolute work-tree path in the compile command ({}):\n{text}",
        cmd.display()
    );

    let log = std::path::Path::new(base["log"].as_str().expect("log")).to_owned();
    let again = run(lab(&toml).args(["build", "--arch", "x86_64", "--json"]));
    assert_eq!(again.code, 0);
    let again = built(&again);
    assert_eq!(
        again["key"].as_str(),
        Some(base_key.as_str()),
        "same inputs, same key"
    );
    assert_eq!(again["cached"], true);
    assert_eq!(again["compiled"], 0);
    assert!(log.is_file());
}

#[test]
fn a_patch_that_does_not_apply_names_patch_hunk_and_file_and_leaves_nothing_half_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let set = dir.path().join("broken");
    std::fs::create_dir_all(&set).expect("mkdir");
    // The first patch applies; the second does not. Neither may reach the work tree.
    std::fs::write(
        set.join("0001-ok.patch"),
        "Subject: [PATCH 1/2] ok\n---\n--- a/kernel/futex/waitwake.c\n+++ b/kernel/futex/waitwake.c\n@@ -1,3 +1,4 @@\n // SPDX-License-Identifier: GPL-2.0-or-later\n+/* lab test: this line must never reach the work tree */\n \n #include <linux/plist.h>\n",
    )
    .expect("write");
    std::fs::write(
        set.join("0002-bad.patch"),
        "Subject: [PATCH 2/2] bad\n---\n--- a/kernel/futex/core.c\n+++ b/kernel/futex/core.c\n@@ -40,2 +40,2 @@\n this context line is not in the file\n-neither is this\n+replacement\n",
    )
    .expect("write");
    std::fs::write(set.join("series"), "0001-ok.patch\n0002-bad.patch\n").expect("write");
    let toml = lab_toml(dir.path(), "");
    let r = run(lab(&toml)
        .args(["build", "--arch", "x86_64", "--patches"])
        .arg(&set));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("0002-bad.patch"), "names the patch file");
    assert!(r.stderr.contains("hunk #1"), "names the hunk");
    assert!(
        r.stderr.contains("kernel/futex/core.c"),
        "names the target file"
    );
    let cache = common::cache_dir();
    if let Ok(rd) = std::fs::read_dir(cache.join("work")) {
        for e in rd.filter_map(Result::ok) {
            let f = e.path().join("src/kernel/futex/waitwake.c");
            if let Ok(text) = std::fs::read_to_string(&f) {
                assert!(
                    !text.contains("must never reach the work tree"),
                    "{} was half-patched",
                    f.display()
                );
            }
        }
    }
}

#[test]
fn a_dropped_config_option_names_the_value_and_the_unmet_dependency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("configs");
    std::fs::create_dir_all(&cfg).expect("mkdir");
    // tinyconfig sets EXPERT=y (kernel/configs/tiny-base.config); a fragment that turns it
    // off makes Kconfig drop PREEMPT_RT silently, which lab must not.
    std::fs::write(
        cfg.join("rt-only.config"),
        "# PREEMPT_RT without EXPERT: Kconfig drops it\n# CONFIG_EXPERT is not set\nCONFIG_PREEMPT_RT=y\n",
    )
    .expect("write");
    let toml = lab_toml(
        dir.path(),
        &format!(
            "[config]\ndir = \"{}\"\nfragments = [\"rt-only\"]\narch-fragment = false\n",
            cfg.display()
        ),
    );
    let r = run(lab(&toml).args(["build", "--arch", "x86_64"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("PREEMPT_RT=y was dropped"),
        "names option and value"
    );
    assert!(r.stderr.contains("got n"), "names the value got");
    assert!(
        r.stderr.contains("EXPERT && ARCH_SUPPORTS_RT"),
        "quotes the dependency from Kconfig"
    );
    assert!(r.stderr.contains("EXPERT=n"), "names the unmet symbol");
}

#[test]
fn an_unknown_arch_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = lab_toml(dir.path(), "");
    let r = run(lab(&toml).args(["build", "--arch", "riscv64"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unknown arch \"riscv64\""));
}

#[test]
fn a_malformed_lab_toml_names_the_key_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = dir.path().join("lab.toml");
    std::fs::write(
        &toml,
        "kernel = \"debian-6.12\"\n[build]\njobs = 2\nccahce = true\n",
    )
    .expect("write");
    let r = run(lab(&toml).args(["build", "--arch", "x86_64"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("ccahce"), "names the key");
    assert!(r.stderr.contains("line 4"), "names the line");
    std::fs::write(&toml, "arches = [\"x86_64\"\n").expect("write");
    let r = run(lab(&toml).args(["build"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("line"));
}

#[test]
fn a_missing_cross_compiler_is_reported_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = lab_toml(
        dir.path(),
        "[build.cross-compile]\narm64 = \"nonexistent-linux-gnu-\"\n",
    );
    let r = run(lab(&toml).args(["build", "--arch", "arm64"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("nonexistent-linux-gnu-gcc not found"),
        "names the tool"
    );
    assert!(r.stderr.contains("arm64"), "names the arch");
}

#[test]
fn cache_list_and_help_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = lab_toml(dir.path(), "");
    let r = run(lab(&toml).args(["cache", "list"]));
    assert_eq!(r.code, 0);
    let r = run(lab(&toml).args(["build", "--help"]));
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("Examples:") && r.stdout.contains("Exit codes"));
    let r = run(lab(&toml).args(["cache", "prune"]));
    assert_eq!(r.code, 2, "prune without a limit is refused");
}

/// Ctrl-C while make runs: lab exits 130 and no make or compiler is left behind.
#[test]
fn sigint_during_make_leaves_no_process_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = lab_toml(dir.path(), "");
    // A variant nobody built before, so make has work to do.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let patch = dir.path().join("0001-unique.patch");
    std::fs::write(
        &patch,
        format!("Subject: [PATCH] unique\n---\n--- a/kernel/futex/waitwake.c\n+++ b/kernel/futex/waitwake.c\n@@ -1,3 +1,4 @@\n // SPDX-License-Identifier: GPL-2.0-or-later\n+/* lab test {stamp} */\n \n #include <linux/plist.h>\n"),
    )
    .expect("write");
    // The lockdep fragment gives this build an O= tree of its own: an interrupted make may
    // leave kbuild's generated files needing a wide rebuild, which must not land on the tree
    // that the incremental-rebuild test measures.
    let mut child = lab(&toml)
        .args([
            "build",
            "--arch",
            "x86_64",
            "--config",
            "lockdep",
            "--patches",
        ])
        .arg(&patch)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("lab starts");
    let lab_pid = child.id() as i32;
    let mut make = Vec::new();
    for _ in 0..6000 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        make = descendants(lab_pid);
        if !make.is_empty() {
            break;
        }
    }
    if make.is_empty() {
        // The build finished before make could be caught (a warm cache): nothing to test.
        let _ = child.wait();
        eprintln!("make was never seen running; skipping the interrupt check");
        return;
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(lab_pid, libc::SIGINT) };
    let status = child.wait().expect("lab exits");
    assert_eq!(status.code(), Some(130));
    std::thread::sleep(std::time::Duration::from_millis(300));
    for pid in make {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = stat
            .rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'));
        assert!(!alive, "{pid} outlived lab: {stat}");
    }
}

/// Processes under `root` (children and their children) whose command is make.
/// The newest `rel` (a kbuild `.cmd` file) in any x86_64 O= tree of the cache's work trees.
fn newest_cmd_file(rel: &str) -> std::path::PathBuf {
    let work = common::cache_dir().join("work");
    let mut found: Vec<(std::time::SystemTime, std::path::PathBuf)> = std::fs::read_dir(&work)
        .expect("the cache's work trees")
        .filter_map(Result::ok)
        .flat_map(|family| {
            std::fs::read_dir(family.path().join("src"))
                .into_iter()
                .flatten()
        })
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".lab-obj-x86_64-")
        })
        .map(|e| e.path().join(rel))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("no {rel} in an O= tree under {}", work.display()))
}

fn descendants(root: i32) -> Vec<i32> {
    let mut all = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return all;
    };
    let procs: Vec<(i32, i32, String)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(") ")?;
            let comm = head.split_once(" (")?.1.to_owned();
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid, comm))
        })
        .collect();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, ppid, comm) in &procs {
            if *ppid == p {
                frontier.push(*pid);
                if comm == "make" {
                    all.push(*pid);
                }
            }
        }
    }
    all
}
