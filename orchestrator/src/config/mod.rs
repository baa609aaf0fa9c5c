//! The lab definition: `lab.toml`, read strictly, layered over embedded documented defaults,
//! and resolved once into [`Settings`]. After resolution no other module reads the file,
//! the environment or argv for these values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::arch::Arch;

pub mod names;

/// The documented defaults, key by key. Also shipped as the repository's `lab.toml`.
pub const DEFAULT_LAB_TOML: &str = include_str!("default-lab.toml");

/// The format version this lab reads.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read lab definition {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// toml's message names the key, the line and the column, with the offending line quoted.
    #[error("invalid lab definition {path}:\n{message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "{path}: format-version {found} is not supported: this lab reads version {FORMAT_VERSION}"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("{path}: {key} = {value:?} is not valid: {why}")]
    Value {
        path: PathBuf,
        key: String,
        value: String,
        why: String,
    },
}

/// `lab.toml` as written: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LabFile {
    format_version: Option<u32>,
    kernel: Option<String>,
    kernels_dir: Option<String>,
    arches: Option<Vec<String>>,
    #[serde(default)]
    config: ConfigSection,
    #[serde(default)]
    patches: PatchesSection,
    #[serde(default)]
    build: BuildSection,
    #[serde(default)]
    vm: VmSection,
    #[serde(default)]
    tests: TestsSection,
    #[serde(default)]
    compare: CompareSection,
    #[serde(default)]
    results: ResultsSection,
    #[serde(default)]
    engine: EngineSection,
    #[serde(default)]
    target: BTreeMap<String, TargetSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ResultsSection {
    store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct EngineSection {
    kind: Option<String>,
    slurm_build_partition: Option<String>,
    slurm_run_partition: Option<String>,
    slurm_features: Option<BTreeMap<String, String>>,
    slurm_lab: Option<String>,
    slurm_poll: Option<String>,
}

/// Which engine builds and boots (`[engine] kind`, `--engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Local,
    Slurm,
}

impl std::str::FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<EngineKind, String> {
        match s {
            "local" => Ok(EngineKind::Local),
            "slurm" => Ok(EngineKind::Slurm),
            _ => Err(format!("{s:?}: use \"local\" or \"slurm\"")),
        }
    }
}

/// `[engine]`, resolved.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub kind: EngineKind,
    pub slurm_build_partition: String,
    pub slurm_run_partition: String,
    /// Per guest arch, the node feature its runs need (`sbatch --constraint`).
    pub slurm_features: BTreeMap<Arch, String>,
    /// The lab binary the nodes run; `None`: this one.
    pub slurm_lab: Option<PathBuf>,
    /// How often the queue is looked at.
    pub slurm_poll: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CompareSection {
    tests: Option<Vec<String>>,
    duration: Option<String>,
    budget: Option<String>,
    alpha: Option<f64>,
    margin_rate: Option<f64>,
    margin_metric: Option<f64>,
    batch_runs: Option<u32>,
    metrics: Option<Vec<String>>,
    primary: Option<std::collections::BTreeMap<String, String>>,
}

/// `[compare]`, resolved.
#[derive(Debug, Clone)]
pub struct CompareSettings {
    /// Empty: the tests the patch sets exercise, else the suite (see `lab compare`).
    pub tests: Vec<String>,
    pub duration: Duration,
    pub budget: Duration,
    pub alpha: f64,
    pub margin_rate: f64,
    pub margin_metric: f64,
    pub batch_runs: u32,
    /// Suffixes of the metric names compared (`_p50`, `_p99`, `_per_s`).
    pub metrics: Vec<String>,
    /// Per test, its primary metric (`[compare.primary]`).
    pub primary: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConfigSection {
    base: Option<String>,
    dir: Option<String>,
    fragments: Option<Vec<String>>,
    arch_fragment: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PatchesSection {
    dir: Option<String>,
    candidates: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct BuildSection {
    jobs: Option<u32>,
    ccache: Option<bool>,
    cache_dir: Option<String>,
    cross_compile: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct VmSection {
    cpus: Option<u32>,
    memory: Option<String>,
    boot_timeout: Option<String>,
    accel: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TestsSection {
    suite: Option<Vec<String>>,
    duration: Option<String>,
    guest_source: Option<String>,
}

/// A real machine reachable over SSH, used instead of a QEMU guest.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TargetSection {
    host: String,
    port: Option<u16>,
    user: Option<String>,
    key: String,
    arch: String,
    install: String,
    console: Option<String>,
    boot_timeout: Option<String>,
    install_timeout: Option<String>,
    workdir: Option<String>,
}

/// How the VM accelerator is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

/// A board, or any machine lab does not start itself: `[target.NAME]`, resolved. lab logs
/// in over SSH; the hooks install kernels and show the console.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Target {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub key: PathBuf,
    pub arch: Arch,
    /// Shell command that installs a kernel and boots the board into it (see lab.toml).
    pub install: String,
    /// Shell command whose standard output is the board's console; `None`: the kernel log
    /// over SSH.
    pub console: Option<String>,
    /// From the install hook's end to a login on the new kernel.
    pub boot_timeout: Duration,
    pub install_timeout: Duration,
    /// Where on the board lab unpacks its guest image, one folder per image.
    pub workdir: String,
    /// The folder the hooks run in: the lab.toml's.
    pub root: PathBuf,
}

/// The lab definition, resolved: defaults applied, paths absolute, values checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The lab.toml this came from (None: embedded defaults only).
    pub file: Option<PathBuf>,
    /// The folder relative paths resolve against.
    pub root: PathBuf,
    pub kernel: String,
    pub kernels_dir: PathBuf,
    pub arches: Vec<Arch>,
    pub config_base: String,
    pub config_dir: PathBuf,
    pub fragments: Vec<String>,
    pub arch_fragment: bool,
    pub patches_dir: PathBuf,
    pub candidates: Vec<String>,
    pub jobs: u32,
    pub ccache: bool,
    pub cache_dir: PathBuf,
    pub cross_compile: BTreeMap<Arch, String>,
    pub vm_cpus: u32,
    pub vm_memory_mib: u32,
    pub boot_timeout: Duration,
    pub accel: AccelChoice,
    pub suite: Vec<String>,
    pub test_duration: Duration,
    /// The cargo workspace holding guest-tests/.
    pub guest_source: PathBuf,
    pub compare: CompareSettings,
    /// The SQLite results store.
    pub store: PathBuf,
    pub engine: EngineSettings,
    /// `[target.NAME]`, by name.
    pub targets: BTreeMap<String, Target>,
}

fn parse_file(path: &Path, text: &str) -> Result<LabFile, ConfigError> {
    let file: LabFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    if let Some(v) = file.format_version {
        if v != FORMAT_VERSION {
            return Err(ConfigError::Version {
                path: path.to_owned(),
                found: v,
            });
        }
    }
    Ok(file)
}

/// A runtime kernel knob: a file in `/sys/module/kernel/parameters/` and the value written to
/// it. Both reach a shell in the guest, so both are checked here, once, for every way a knob
/// enters lab (`--knob`, `expect.toml`): a name is `[A-Za-z0-9_]+`, a value is
/// `[A-Za-z0-9_.,:+-]+`. Nothing else (spaces, quotes, `$`, `;`, `/`) gets through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Knob {
    pub name: String,
    pub value: String,
}

/// Why a knob was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KnobError {
    #[error("{0:?}: use name=value, with the name of a file in /sys/module/kernel/parameters/")]
    Syntax(String),
    #[error(
        "{0:?}: a knob name is letters, digits and _ (a file in /sys/module/kernel/parameters/)"
    )]
    Name(String),
    #[error(
        "{0:?}: a knob value is letters, digits and _ . , : + - (no spaces or shell characters)"
    )]
    Value(String),
}

impl Knob {
    /// As engines, reports and the store carry knobs.
    pub fn pair(&self) -> (String, String) {
        (self.name.clone(), self.value.clone())
    }
}

impl std::str::FromStr for Knob {
    type Err = KnobError;

    fn from_str(s: &str) -> Result<Knob, KnobError> {
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| KnobError::Syntax(s.to_owned()))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(KnobError::Name(s.to_owned()));
        }
        let value_ok = |c: char| c.is_ascii_alphanumeric() || "_.,:+-".contains(c);
        if value.is_empty() || !value.chars().all(value_ok) {
            return Err(KnobError::Value(s.to_owned()));
        }
        Ok(Knob {
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }
}

impl std::fmt::Display for Knob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.name, self.value)
    }
}

/// Parses a duration such as `"90s"`, `"1500ms"`, `"2m"`, `"1h"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    // Not `from_secs_f64`, which panics on a duration too long for `Duration`
    // (`"99999999999999999999h"`, about 10^16 years).
    Duration::try_from_secs_f64(secs).ok()
}

/// Parses a memory size such as `"512M"` or `"1G"` into MiB.
pub fn parse_mib(s: &str) -> Option<u32> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'M' | 'm' => (&s[..s.len() - 1], 1),
        'G' | 'g' => (&s[..s.len() - 1], 1024),
        _ => (s, 1),
    };
    num.trim().parse::<u32>().ok()?.checked_mul(mult)
}

/// Where lab keeps its cache when the lab definition does not say.
fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LAB_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("lab");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/lab")
}

impl Settings {
    /// Finds the lab definition: `explicit`, else `lab.toml` in the current folder or the
    /// nearest parent. Without one, the embedded defaults apply, rooted at the current folder.
    pub fn discover(explicit: Option<&Path>) -> Result<Settings, ConfigError> {
        let path = match explicit {
            Some(p) => Some(p.to_owned()),
            None => std::env::current_dir().ok().and_then(|cwd| {
                cwd.ancestors()
                    .map(|d| d.join("lab.toml"))
                    .find(|p| p.is_file())
            }),
        };
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                Settings::from_text(&p, &text)
            }
            None => {
                let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
                Settings::resolve(None, &cwd.join("lab.toml"), LabFile::default())
            }
        }
    }

    /// Reads a lab definition from text; `path` names it in errors and roots its paths.
    pub fn from_text(path: &Path, text: &str) -> Result<Settings, ConfigError> {
        let file = parse_file(path, text)?;
        Settings::resolve(Some(path.to_owned()), path, file)
    }

    fn resolve(
        file_path: Option<PathBuf>,
        path: &Path,
        user: LabFile,
    ) -> Result<Settings, ConfigError> {
        let defaults = parse_file(Path::new("<embedded defaults>"), DEFAULT_LAB_TOML)?;
        let root = path
            .parent()
            .map(Path::to_owned)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let root = std::path::absolute(&root).unwrap_or(root);
        let bad = |key: &str, value: &str, why: &str| ConfigError::Value {
            path: path.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
            why: why.to_owned(),
        };
        // Defaults are complete by construction: a missing one is a bug in default-lab.toml,
        // reported as such rather than panicking.
        macro_rules! pick {
            ($($field:ident).+, $key:literal) => {
                match user.$($field).+.clone().or_else(|| defaults.$($field).+.clone()) {
                    Some(v) => v,
                    None => return Err(bad($key, "", "no default: default-lab.toml is incomplete")),
                }
            };
        }
        let rel = |p: String| -> PathBuf {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                root.join(p)
            }
        };

        let arches_raw: Vec<String> = pick!(arches, "arches");
        let mut arches = Vec::new();
        for a in &arches_raw {
            let arch = a
                .parse::<Arch>()
                .map_err(|e| bad("arches", a, &e.to_string()))?;
            if !arches.contains(&arch) {
                arches.push(arch);
            }
        }
        if arches.is_empty() {
            return Err(bad("arches", "[]", "name at least one arch"));
        }

        let mut cross_compile = BTreeMap::new();
        let mut cc_map: BTreeMap<String, String> =
            defaults.build.cross_compile.clone().unwrap_or_default();
        cc_map.extend(user.build.cross_compile.clone().unwrap_or_default());
        for (name, prefix) in cc_map {
            let arch = name
                .parse::<Arch>()
                .map_err(|e| bad("build.cross-compile", &name, &e.to_string()))?;
            cross_compile.insert(arch, prefix);
        }

        let memory: String = pick!(vm.memory, "vm.memory");
        let vm_memory_mib = parse_mib(&memory).filter(|m| *m >= 64).ok_or_else(|| {
            bad(
                "vm.memory",
                &memory,
                "use a size like \"512M\" or \"1G\", at least 64M",
            )
        })?;
        let boot: String = pick!(vm.boot_timeout, "vm.boot-timeout");
        let boot_timeout = parse_duration(&boot)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                bad(
                    "vm.boot-timeout",
                    &boot,
                    "use a duration like \"90s\" or \"2m\"",
                )
            })?;
        let accel_raw: String = pick!(vm.accel, "vm.accel");
        let accel = match accel_raw.as_str() {
            "auto" => AccelChoice::Auto,
            "kvm" => AccelChoice::Kvm,
            "tcg" => AccelChoice::Tcg,
            _ => {
                return Err(bad(
                    "vm.accel",
                    &accel_raw,
                    "use \"auto\", \"kvm\" or \"tcg\"",
                ))
            }
        };
        let cpus: u32 = pick!(vm.cpus, "vm.cpus");
        if cpus == 0 || cpus > 64 {
            return Err(bad("vm.cpus", &cpus.to_string(), "use 1 to 64"));
        }
        let dur: String = pick!(tests.duration, "tests.duration");
        let test_duration = parse_duration(&dur)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| bad("tests.duration", &dur, "use a duration like \"3s\""))?;

        let cache_raw: String = pick!(build.cache_dir, "build.cache-dir");
        let cache_dir = if cache_raw.is_empty() {
            default_cache_dir()
        } else {
            rel(cache_raw)
        };

        let guest_raw: String = pick!(tests.guest_source, "tests.guest-source");
        let guest_source = if guest_raw.is_empty() {
            // The workspace this binary was built from: orchestrator/ is one of its members.
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .map_or_else(|| root.clone(), Path::to_owned)
        } else {
            rel(guest_raw)
        };

        let cmp_dur: String = pick!(compare.duration, "compare.duration");
        let cmp_budget: String = pick!(compare.budget, "compare.budget");
        let alpha: f64 = pick!(compare.alpha, "compare.alpha");
        let margin_rate: f64 = pick!(compare.margin_rate, "compare.margin-rate");
        let margin_metric: f64 = pick!(compare.margin_metric, "compare.margin-metric");
        let batch_runs: u32 = pick!(compare.batch_runs, "compare.batch-runs");
        let cmp_tests: Vec<String> = pick!(compare.tests, "compare.tests");
        let suite: Vec<String> = pick!(tests.suite, "tests.suite");
        for (key, names) in [("compare.tests", &cmp_tests), ("tests.suite", &suite)] {
            for t in names {
                names::check_test(t).map_err(|e| bad(key, t, &e.why))?;
            }
        }
        let compare = CompareSettings {
            tests: cmp_tests,
            duration: parse_duration(&cmp_dur)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| bad("compare.duration", &cmp_dur, "use a duration like \"1s\""))?,
            budget: parse_duration(&cmp_budget)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| bad("compare.budget", &cmp_budget, "use a duration like \"8m\""))?,
            alpha: Some(alpha)
                .filter(|a| *a > 0.0 && *a < 0.5)
                .ok_or_else(|| {
                    bad(
                        "compare.alpha",
                        &alpha.to_string(),
                        "use a probability between 0 and 0.5, such as 0.05",
                    )
                })?,
            margin_rate: Some(margin_rate)
                .filter(|m| *m > 0.0 && *m < 1.0)
                .ok_or_else(|| {
                    bad(
                        "compare.margin-rate",
                        &margin_rate.to_string(),
                        "use an absolute rate difference between 0 and 1, such as 0.15",
                    )
                })?,
            margin_metric: Some(margin_metric)
                .filter(|m| *m > 0.0 && *m < 10.0)
                .ok_or_else(|| {
                    bad(
                        "compare.margin-metric",
                        &margin_metric.to_string(),
                        "use a relative shift such as 0.10 for 10 %",
                    )
                })?,
            batch_runs: Some(batch_runs)
                .filter(|b| (1..=100).contains(b))
                .ok_or_else(|| {
                    bad(
                        "compare.batch-runs",
                        &batch_runs.to_string(),
                        "use 1 to 100",
                    )
                })?,
            metrics: pick!(compare.metrics, "compare.metrics"),
            primary: user
                .compare
                .primary
                .clone()
                .or_else(|| defaults.compare.primary.clone())
                .unwrap_or_default(),
        };

        let store_raw: String = pick!(results.store, "results.store");
        let store = if store_raw.is_empty() {
            cache_dir.join("results.db")
        } else {
            rel(store_raw)
        };

        let kind_raw: String = pick!(engine.kind, "engine.kind");
        let mut slurm_features = BTreeMap::new();
        let mut features = defaults.engine.slurm_features.clone().unwrap_or_default();
        features.extend(user.engine.slurm_features.clone().unwrap_or_default());
        for (name, feature) in features {
            let arch = name
                .parse::<Arch>()
                .map_err(|e| bad("engine.slurm-features", &name, &e.to_string()))?;
            if !feature.is_empty() {
                slurm_features.insert(arch, feature);
            }
        }
        let poll_raw: String = pick!(engine.slurm_poll, "engine.slurm-poll");
        let lab_raw: String = pick!(engine.slurm_lab, "engine.slurm-lab");
        let engine = EngineSettings {
            kind: kind_raw
                .parse()
                .map_err(|why: String| bad("engine.kind", &kind_raw, &why))?,
            slurm_build_partition: pick!(
                engine.slurm_build_partition,
                "engine.slurm-build-partition"
            ),
            slurm_run_partition: pick!(engine.slurm_run_partition, "engine.slurm-run-partition"),
            slurm_features,
            slurm_lab: (!lab_raw.is_empty()).then(|| rel(lab_raw)),
            slurm_poll: parse_duration(&poll_raw)
                .filter(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_secs(600))
                .ok_or_else(|| {
                    bad(
                        "engine.slurm-poll",
                        &poll_raw,
                        "use a duration from 100ms to 10m, such as \"2s\"",
                    )
                })?,
        };

        let mut targets = BTreeMap::new();
        for (name, t) in &user.target {
            let key = |k: &str| format!("target.{name}.{k}");
            names::check_target(name).map_err(|e| bad("target", name, &e.why))?;
            let arch = t.arch.parse().map_err(|e: crate::arch::UnknownArch| {
                bad(&key("arch"), &t.arch, &e.to_string())
            })?;
            let timeout = |k: &str, v: &Option<String>, default: &str| {
                let raw = v.clone().unwrap_or_else(|| default.to_owned());
                parse_duration(&raw)
                    .filter(|d| {
                        *d >= Duration::from_secs(1) && *d <= Duration::from_secs(24 * 3600)
                    })
                    .ok_or_else(|| {
                        bad(
                            &key(k),
                            &raw,
                            "use a duration from 1s to 24h, such as \"5m\"",
                        )
                    })
            };
            if t.install.trim().is_empty() {
                return Err(bad(
                    &key("install"),
                    &t.install,
                    "name the command that installs a kernel on the board and boots it",
                ));
            }
            let workdir = t
                .workdir
                .clone()
                .unwrap_or_else(|| "/var/tmp/lab".to_owned());
            if !workdir.starts_with('/') || workdir.contains(['\'', '\n', '"', '\\', '$', '`']) {
                return Err(bad(
                    &key("workdir"),
                    &workdir,
                    "use an absolute path on the board without quotes or shell characters",
                ));
            }
            targets.insert(
                name.clone(),
                Target {
                    name: name.clone(),
                    host: t.host.clone(),
                    port: t.port.unwrap_or(22),
                    user: t.user.clone().unwrap_or_else(|| "root".to_owned()),
                    key: rel(t.key.clone()),
                    arch,
                    install: t.install.clone(),
                    console: t.console.clone().filter(|c| !c.trim().is_empty()),
                    boot_timeout: timeout("boot-timeout", &t.boot_timeout, "5m")?,
                    install_timeout: timeout("install-timeout", &t.install_timeout, "10m")?,
                    workdir,
                    root: root.clone(),
                },
            );
        }

        Ok(Settings {
            file: file_path,
            kernel: pick!(kernel, "kernel"),
            kernels_dir: rel(pick!(kernels_dir, "kernels-dir")),
            arches,
            config_base: pick!(config.base, "config.base"),
            config_dir: rel(pick!(config.dir, "config.dir")),
            fragments: pick!(config.fragments, "config.fragments"),
            arch_fragment: pick!(config.arch_fragment, "config.arch-fragment"),
            patches_dir: rel(pick!(patches.dir, "patches.dir")),
            candidates: pick!(patches.candidates, "patches.candidates"),
            jobs: pick!(build.jobs, "build.jobs"),
            ccache: pick!(build.ccache, "build.ccache"),
            cache_dir,
            cross_compile,
            vm_cpus: cpus,
            vm_memory_mib,
            boot_timeout,
            accel,
            suite,
            test_duration,
            guest_source,
            compare,
            store,
            engine,
            targets,
            root,
        })
    }

    /// Resolves a path given on the command line or in the definition against the lab root.
    pub fn resolve_path(&self, p: &str) -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            self.root.join(p)
        }
    }

    /// Parallel make jobs: the configured number, or one per available core.
    pub fn make_jobs(&self) -> u32 {
        if self.jobs > 0 {
            return self.jobs;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn load(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_text(Path::new("/lab/lab.toml"), text)
    }

    #[test]
    fn embedded_defaults_are_complete() {
        let s = load("").expect("empty file takes every default");
        assert_eq!(s.arches, vec![Arch::X86_64, Arch::Arm64]);
        assert_eq!(s.config_base, "tinyconfig");
        assert_eq!(s.kernels_dir, PathBuf::from("/lab/kernels"));
        assert_eq!(
            s.cross_compile.get(&Arch::Arm64).map(String::as_str),
            Some("aarch64-linux-gnu-")
        );
        assert_eq!(s.vm_memory_mib, 512);
        assert!(!s.suite.is_empty());
        assert!(
            s.guest_source
                .join("guest-tests/suite/Cargo.toml")
                .is_file(),
            "defaults to this workspace"
        );
    }

    #[test]
    fn repository_lab_toml_is_the_documented_default() {
        let shipped = include_str!("../../../lab.toml");
        assert_eq!(
            shipped, DEFAULT_LAB_TOML,
            "lab.toml and default-lab.toml drifted apart"
        );
    }

    #[test]
    fn targets_are_named_tables_with_an_install_hook() {
        let s = load(
            "[target.rockpi]\narch = \"arm64\"\nhost = \"b\"\nkey = \"k\"\n\
             install = \"scripts/i.sh\"\n",
        )
        .expect("a target");
        let t = &s.targets["rockpi"];
        assert_eq!((t.arch, t.port, t.user.as_str()), (Arch::Arm64, 22, "root"));
        assert_eq!(t.key, Path::new("/lab/k"));
        assert_eq!(t.workdir, "/var/tmp/lab");
        assert_eq!(t.console, None);
        assert_eq!(t.boot_timeout, Duration::from_secs(300));
        let no_hook = load("[target.b]\narch = \"arm64\"\nhost = \"b\"\nkey = \"k\"\n")
            .expect_err("install is required");
        assert!(no_hook.to_string().contains("install"), "{no_hook}");
        let blank =
            load("[target.b]\narch = \"arm64\"\nhost = \"b\"\nkey = \"k\"\ninstall = \" \"\n")
                .expect_err("a blank hook");
        assert!(blank.to_string().contains("target.b.install"), "{blank}");
        let workdir = load(
            "[target.b]\narch = \"arm64\"\nhost = \"b\"\nkey = \"k\"\ninstall = \"i\"\n\
             workdir = \"tmp/$x\"\n",
        )
        .expect_err("a relative workdir");
        assert!(
            workdir.to_string().contains("target.b.workdir"),
            "{workdir}"
        );
        let name = load(
            "[target.\"a b\"]\narch = \"arm64\"\nhost = \"b\"\nkey = \"k\"\ninstall = \"i\"\n",
        )
        .expect_err("a name with a space");
        assert!(name.to_string().contains("white space"), "{name}");
        // The one-table form of earlier versions names no target.
        assert!(load("[target]\nhost = \"b\"\n").is_err());
    }

    #[test]
    fn user_values_override_defaults() {
        let s = load("arches = [\"arm64\"]\n[vm]\nmemory = \"1G\"\n[build.cross-compile]\narm64 = \"aarch64-none-\"\n")
            .expect("valid");
        assert_eq!(s.arches, vec![Arch::Arm64]);
        assert_eq!(s.vm_memory_mib, 1024);
        assert_eq!(s.cross_compile[&Arch::Arm64], "aarch64-none-");
        assert_eq!(s.cross_compile[&Arch::X86_64], "");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = load("kernel = \"debian-6.12\"\n\n[vm]\ncpus = 2\nmemroy = \"1G\"\n")
            .expect_err("typo must be rejected");
        let msg = err.to_string();
        assert!(msg.contains("memroy"), "{msg}");
        assert!(msg.contains("line 5"), "{msg}");
    }

    #[test]
    fn malformed_toml_and_bad_values_are_errors() {
        let msg = load("arches = [\"x86_64\"\n")
            .expect_err("unclosed array")
            .to_string();
        assert!(msg.contains("line"), "{msg}");
        let msg = load("arches = [\"sparc\"]")
            .expect_err("unknown arch")
            .to_string();
        assert!(msg.contains("sparc") && msg.contains("arches"), "{msg}");
        let msg = load("[vm]\nmemory = \"lots\"")
            .expect_err("bad memory")
            .to_string();
        assert!(msg.contains("vm.memory"), "{msg}");
        let msg = load("format-version = 7")
            .expect_err("future format")
            .to_string();
        assert!(msg.contains("format-version 7"), "{msg}");
        let msg = load("[tests]\nduration = 3")
            .expect_err("wrong type")
            .to_string();
        assert!(msg.contains("duration"), "{msg}");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_mib("1G"), Some(1024));
        assert_eq!(parse_mib("256M"), Some(256));
        assert_eq!(parse_mib("x"), None);
    }

    #[test]
    fn a_duration_too_long_is_an_error_not_a_panic() {
        // Found by fuzz_odd_values_are_rejected_or_checked: "cannot convert float seconds to
        // Duration: value is either too big or NaN".
        assert_eq!(parse_duration("99999999999999999999h"), None);
        assert_eq!(parse_duration("18446744073709551616s"), None);
        let msg = load("[vm]\nboot-timeout = \"99999999999999999999h\"")
            .expect_err("too long")
            .to_string();
        assert!(msg.contains("vm.boot-timeout"), "{msg}");
    }

    /// Every key the lab definition knows, in any section: an "unknown" key must be none of
    /// them (and no section name either).
    const KNOWN_KEYS: &[&str] = &[
        "format-version",
        "kernel",
        "kernels-dir",
        "arches",
        "config",
        "patches",
        "build",
        "vm",
        "tests",
        "compare",
        "results",
        "store",
        "engine",
        "kind",
        "slurm-build-partition",
        "slurm-run-partition",
        "slurm-features",
        "slurm-lab",
        "slurm-poll",
        "target",
        "base",
        "dir",
        "fragments",
        "arch-fragment",
        "candidates",
        "jobs",
        "ccache",
        "cache-dir",
        "cross-compile",
        "cpus",
        "memory",
        "boot-timeout",
        "accel",
        "suite",
        "duration",
        "guest-source",
        "budget",
        "alpha",
        "margin-rate",
        "margin-metric",
        "batch-runs",
        "metrics",
        "primary",
        "host",
        "port",
        "user",
        "key",
        "arch",
        "install",
        "console",
        "install-timeout",
        "workdir",
    ];

    /// Values of every TOML type, and of every shape the resolver checks: out of range,
    /// negative, huge, not a number, a duration too long for `Duration`, the wrong unit.
    const ODD_VALUES: &[&str] = &[
        "0",
        "-1",
        "1",
        "65",
        "4294967296",
        "9223372036854775807",
        "-9223372036854775808",
        "0.0",
        "-0.0",
        "0.5",
        "1e308",
        "nan",
        "inf",
        "-inf",
        "true",
        "[]",
        "[\"\"]",
        "{}",
        "[1, \"a\"]",
        "\"\"",
        "\" \"",
        "\"x86_64\"",
        "\"sparc\"",
        "\"../..\"",
        "\"/\"",
        "\"90s\"",
        "\"0s\"",
        "\"-1s\"",
        "\"1.5.5s\"",
        "\".s\"",
        "\"1e3s\"",
        "\"99999999999999999999h\"",
        "\"18446744073709551616s\"",
        "\"1e400ms\"",
        "\"4294967295G\"",
        "\"4194304G\"",
        "\"63M\"",
        "\"G\"",
        "\"é\"",
        "\"auto\"",
        "\"kvm\"",
        "1979-05-27T07:32:00Z",
        "\"\\u0000\"",
        "'''\nx'''",
    ];

    fn value_lines() -> Vec<usize> {
        DEFAULT_LAB_TOML
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.starts_with('#') && !l.starts_with('[') && l.contains(" = "))
            .map(|(i, _)| i)
            .collect()
    }

    /// Sections whose keys are fixed (not the maps `[build.cross-compile]` and
    /// `[compare.primary]`): where a line goes in, as the index of the line it follows.
    fn fixed_sections() -> Vec<usize> {
        let mut at: Vec<usize> = DEFAULT_LAB_TOML
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with('[') && !l.contains('.'))
            .map(|(i, _)| i)
            .collect();
        // The top level: after `format-version = 1`, before any section.
        at.extend(
            DEFAULT_LAB_TOML
                .lines()
                .position(|l| l.starts_with("format-version")),
        );
        at
    }

    fn with_line_replaced(i: usize, line: &str) -> String {
        let mut lines: Vec<&str> = DEFAULT_LAB_TOML.lines().collect();
        lines[i] = line;
        lines.join("\n")
    }

    fn with_line_after(i: usize, line: &str) -> String {
        let mut lines: Vec<&str> = DEFAULT_LAB_TOML.lines().collect();
        lines.insert(i + 1, line);
        lines.join("\n")
    }

    fn key_of(i: usize) -> &'static str {
        DEFAULT_LAB_TOML
            .lines()
            .nth(i)
            .and_then(|l| l.split(" = ").next())
            .unwrap_or("")
    }

    /// What a resolved definition promises, whatever the file said.
    fn check_settings(s: &Settings) -> Result<(), TestCaseError> {
        prop_assert!(!s.arches.is_empty());
        prop_assert!((1..=64).contains(&s.vm_cpus));
        prop_assert!(s.vm_memory_mib >= 64);
        prop_assert!(!s.boot_timeout.is_zero() && !s.test_duration.is_zero());
        prop_assert!(s.compare.alpha > 0.0 && s.compare.alpha < 0.5);
        prop_assert!(s.compare.margin_rate > 0.0 && s.compare.margin_rate < 1.0);
        prop_assert!(s.compare.margin_metric > 0.0 && s.compare.margin_metric < 10.0);
        prop_assert!((1..=100).contains(&s.compare.batch_runs));
        Ok(())
    }

    proptest! {

        #[test]
        fn fuzz_from_text_takes_any_text(text in "\\PC*", cut in any::<prop::sample::Index>()) {
            if let Ok(s) = load(&text) {
                check_settings(&s)?;
            }
            let mut at = cut.index(DEFAULT_LAB_TOML.len() + 1);
            while !DEFAULT_LAB_TOML.is_char_boundary(at) {
                at -= 1;
            }
            if let Ok(s) = load(&DEFAULT_LAB_TOML[..at]) {
                check_settings(&s)?;
            }
        }

        #[test]
        fn fuzz_odd_values_are_rejected_or_checked(
            line in any::<prop::sample::Index>(),
            value in 0..ODD_VALUES.len(),
            other in any::<prop::sample::Index>(),
            extra in 0..ODD_VALUES.len(),
        ) {
            let lines = value_lines();
            let i = lines[line.index(lines.len())];
            let text = with_line_replaced(i, &format!("{} = {}", key_of(i), ODD_VALUES[value]));
            if let Ok(s) = load(&text) {
                check_settings(&s)?;
            }
            // A second odd value in the same file.
            let j = lines[other.index(lines.len())];
            if j != i {
                let mut twice: Vec<String> = text.lines().map(str::to_owned).collect();
                twice[j] = format!("{} = {}", key_of(j), ODD_VALUES[extra]);
                if let Ok(s) = load(&twice.join("\n")) {
                    check_settings(&s)?;
                }
            }
        }

        #[test]
        fn fuzz_unknown_keys_are_named(
            section in any::<prop::sample::Index>(),
            key in "[a-z][a-z0-9_-]{0,12}",
            value in 0..ODD_VALUES.len(),
        ) {
            prop_assume!(!KNOWN_KEYS.contains(&key.as_str()));
            let sections = fixed_sections();
            let text = with_line_after(
                sections[section.index(sections.len())],
                &format!("{key} = {}", ODD_VALUES[value]),
            );
            let err = load(&text).err().map(|e| e.to_string()).unwrap_or_default();
            prop_assert!(err.contains(&format!("unknown field `{key}`")), "{}: {}", key, err);
        }
    }
}
