//! Host contention while a batch runs: how much of the host's CPU went to work that is not
//! this lab process and its children (the guests). Under TCG a guest's clock is the host's
//! CPU; with other work on a 2-core host the same wake-up latency read 25 times its
//! quiet-host value. A batch run under contention still counts for failure rates, but no
//! metric question is decided from it (see `compare::analysis`).
//!
//! The measure, sampled every second from `/proc`: the host's busy CPU time (`/proc/stat`)
//! minus the CPU time of this process and its descendants (`/proc/<pid>/stat` for the live
//! ones, `getrusage(RUSAGE_CHILDREN)` for those that ended and were reaped), over the wall
//! time times the host's cores. A descendant that ended but was not reaped yet has its last
//! second counted as foreign, so the figure errs towards calling contention, never away.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The share of the host's CPU that other work may take before a batch counts as contended.
/// A quiet host measured 0–3 % (daemons, the kernel's own threads for the guests' I/O); a
/// single CPU hog on a 2-core host is 50 %.
pub const CONTENDED_SHARE: f64 = 0.15;

/// What the sampler saw over one batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostLoad {
    /// Share of the host's CPU capacity used by other work, 0 to 1.
    pub foreign_share: f64,
    pub wall_s: f64,
    pub cores: usize,
}

impl HostLoad {
    pub fn contended(&self) -> bool {
        self.foreign_share > CONTENDED_SHARE
    }
}

/// A running sampler; [`Sampler::finish`] stops it and returns the load.
pub struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<HostLoad>,
}

impl Sampler {
    /// Starts sampling; `None` when `/proc` cannot be read (the load is then unknown and no
    /// batch is called contended, which the caller says).
    pub fn start() -> Option<Sampler> {
        let first = Snapshot::take()?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut last = first;
            let mut foreign = 0.0f64;
            loop {
                let done = tokio::time::timeout(Duration::from_secs(1), &mut stopped)
                    .await
                    .is_ok();
                if let Some(now) = Snapshot::take() {
                    foreign += now.foreign_since(&last);
                    last = now;
                }
                if done {
                    break;
                }
            }
            let wall_s = started.elapsed().as_secs_f64();
            let capacity = wall_s * last.cores as f64;
            HostLoad {
                foreign_share: if capacity > 0.0 {
                    (foreign / capacity).clamp(0.0, 1.0)
                } else {
                    0.0
                },
                wall_s,
                cores: last.cores,
            }
        });
        Some(Sampler { stop, task })
    }

    pub async fn finish(self) -> Option<HostLoad> {
        let _ = self.stop.send(());
        self.task.await.ok()
    }
}

/// CPU seconds: the host's busy time, and each of our processes' own.
#[derive(Debug, Clone)]
struct Snapshot {
    host_busy_s: f64,
    ours: BTreeMap<u32, f64>,
    /// CPU seconds of this process's reaped descendants.
    reaped_s: f64,
    cores: usize,
}

impl Snapshot {
    fn take() -> Option<Snapshot> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let ticks = clock_ticks();
        let host_busy_s = host_busy_ticks(&stat)? / ticks;
        let cores = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .count()
            .max(1);
        Some(Snapshot {
            host_busy_s,
            ours: descendants_cpu(std::process::id(), ticks),
            reaped_s: reaped_children_cpu(),
            cores,
        })
    }

    /// CPU seconds since `earlier` that went to processes other than ours.
    fn foreign_since(&self, earlier: &Snapshot) -> f64 {
        let host = self.host_busy_s - earlier.host_busy_s;
        let live: f64 = self
            .ours
            .iter()
            .map(|(pid, now)| now - earlier.ours.get(pid).copied().unwrap_or(0.0))
            .filter(|d| *d > 0.0)
            .sum();
        // Descendants reaped since: their whole lifetime arrives in the rusage figure, less
        // what the earlier snapshot had already counted of those it saw alive.
        let vanished: f64 = earlier
            .ours
            .iter()
            .filter(|(pid, _)| !self.ours.contains_key(pid))
            .map(|(_, cpu)| cpu)
            .sum();
        let reaped = (self.reaped_s - earlier.reaped_s - vanished).max(0.0);
        (host - live - reaped).max(0.0)
    }
}

/// CPU seconds (user + system) of the descendants this process has reaped.
fn reaped_children_cpu() -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Busy ticks of the `cpu` line of /proc/stat: everything but idle and iowait. Guest time is
/// already inside user time.
fn host_busy_ticks(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let get = |i: usize| v.get(i).copied().unwrap_or(0.0);
    Some(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

/// (ppid, utime + stime in ticks) of one /proc/<pid>/stat line. The command name is in
/// parentheses and may hold spaces, so fields are counted after its closing one.
fn parse_stat(line: &str) -> Option<(u32, f64)> {
    let rest = &line[line.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12).
    let ppid = f.get(1)?.parse().ok()?;
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// CPU seconds of `root` and every process descending from it.
fn descendants_cpu(root: u32, ticks: f64) -> BTreeMap<u32, f64> {
    let mut all: BTreeMap<u32, (u32, f64)> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(p) = std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .as_deref()
                .and_then(parse_stat)
            {
                all.insert(pid, p);
            }
        }
    }
    let mut ours = BTreeMap::new();
    for (&pid, &(_, cpu)) in &all {
        let mut p = pid;
        // Walk up at most 64 generations: pid 1 and 0 end every chain.
        for _ in 0..64 {
            if p == root {
                ours.insert(pid, cpu / ticks);
                break;
            }
            match all.get(&p) {
                Some(&(ppid, _)) if ppid > 1 => p = ppid,
                _ => break,
            }
        }
    }
    ours
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_parsed_past_names_with_spaces() {
        let line =
            "4242 (qemu system (x)) S 4000 4242 4000 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_stat(line), Some((4000, 300.0)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn host_busy_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 40 3 2 1 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n";
        assert_eq!(host_busy_ticks(stat), Some(161.0));
    }

    #[test]
    fn foreign_time_is_the_host_busy_time_minus_ours() {
        let a = Snapshot {
            host_busy_s: 10.0,
            ours: [(1, 2.0), (2, 1.0)].into(),
            reaped_s: 4.0,
            cores: 2,
        };
        // Ours: +1.0 (pid 1), pid 2 gone and reaped with 1.25 s in all (0.25 s new), pid 3
        // new with 0.5; host +3.0.
        let b = Snapshot {
            host_busy_s: 13.0,
            ours: [(1, 3.0), (3, 0.5)].into(),
            reaped_s: 5.25,
            cores: 2,
        };
        assert!((b.foreign_since(&a) - 1.25).abs() < 1e-12);
        let load = HostLoad {
            foreign_share: 0.5,
            wall_s: 10.0,
            cores: 2,
        };
        assert!(load.contended());
    }

    /// A real CPU hog outside this process tree is seen; our own work (this process and its
    /// children, as the guests are) is not.
    #[test]
    fn a_foreign_hog_is_seen_and_our_own_work_is_not() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let measure = |setup: &str| {
            rt.block_on(async {
                // Prints the pid of what it leaves running, if anything.
                let out = std::process::Command::new("sh")
                    .args(["-c", setup])
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("sh");
                let sampler = Sampler::start().expect("/proc readable");
                tokio::time::sleep(Duration::from_millis(2500)).await;
                let load = sampler.finish().await.expect("load");
                let out = out.wait_with_output().expect("sh output");
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: kill(2) with a pid we started.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
                load
            })
        };
        // Other work on the host (another lab's guests, say) is foreign too, and a saturated
        // host leaves no room to see a hog or a child: this test needs a quiet host.
        let before = measure("true");
        if before.foreign_share * before.cores as f64 > 0.3 {
            eprintln!("host not quiet ({before:?}): contention test skipped");
            return;
        }
        // A child of ours spinning: ours, as a guest is.
        // (It outlives the measurement, so that no second of it is lost between samples.)
        let ours = measure("timeout 4 sh -c 'while :; do :; done'");
        // Load that came and went meanwhile (a build started on the host) reads as foreign
        // too: look again, and skip rather than blame our own child for it.
        let after = measure("true");
        if after.foreign_share * after.cores as f64 > 0.3 {
            eprintln!("host got busy ({after:?}): contention test skipped");
            return;
        }
        assert!(
            ours.foreign_share * (ours.cores as f64) < 0.5,
            "our own child counted as foreign: {ours:?}"
        );
        // A spinner whose parent exits at once is re-parented away from us: foreign.
        let foreign = measure("sh -c 'while :; do :; done' >/dev/null 2>&1 </dev/null & echo $!");
        let cores_taken = foreign.foreign_share * foreign.cores as f64;
        assert!(
            cores_taken > 0.6,
            "a foreign CPU hog on this host went unseen: {foreign:?}"
        );
        if foreign.cores <= 4 {
            assert!(foreign.contended(), "{foreign:?}");
        }
    }
}
