//! The `lab.*` parameters on the kernel command line: the only way the orchestrator configures
//! PID 1, so one image serves every run. Pure parsing, unit-tested on the host.
//!
//! Unknown `lab.*` keys are ignored, so a newer orchestrator can pass parameters meant for
//! guest tests without breaking an older image. The kernel itself leaves dotted parameters
//! alone (it takes them for module parameters), so they reach us only via `/proc/cmdline`.

use std::net::Ipv4Addr;

/// What PID 1 does once the file systems are mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Network and dropbear, then wait for the host to power the guest off over SSH.
    Ssh,
    /// Print READY and power off at once: the smoke boot right after a kernel build.
    Marker,
    /// Run the tests the command line names, print a CASE marker for each and DONE, and
    /// power off: for labs where no host logs in, such as LAVA (see [`RunSpec`]).
    Run,
}

/// What `lab.mode=run` runs: `lab.tests=a,b lab.iterations=N lab.duration_ms=MS
/// lab.seed=S lab.scale=F`, each iteration of every test in turn, as the host's runner does.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    pub tests: Vec<String>,
    pub iterations: u32,
    pub duration_ms: u64,
    pub seed: u64,
    pub deadline_scale: f64,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            tests: Vec::new(),
            iterations: 1,
            duration_ms: 3000,
            seed: 0,
            deadline_scale: 1.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub mode: Mode,
    pub run: RunSpec,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub ssh_port: u16,
}

impl Default for Config {
    /// QEMU's user-mode network (`-netdev user`) hands out 10.0.2.15 behind the gateway 10.0.2.2.
    fn default() -> Self {
        Config {
            mode: Mode::Ssh,
            run: RunSpec::default(),
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 0, 2, 2),
            ssh_port: 22,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    #[error("parse kernel parameter {param}={value:?}: expected {expected}")]
    Invalid {
        param: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(
        "use lab.gw={gateway}: it is outside lab.ip={address}/{prefix}, so no route can reach it; \
         pass a gateway inside that subnet"
    )]
    GatewayOffLink {
        gateway: Ipv4Addr,
        address: Ipv4Addr,
        prefix: u8,
    },
}

/// Parses the whole of `/proc/cmdline`. A parameter given twice takes its last value, as the
/// kernel does with its own parameters.
pub fn parse(cmdline: &str) -> Result<Config, CmdlineError> {
    let mut cfg = Config::default();
    for word in cmdline.split_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        let invalid = |param, expected| CmdlineError::Invalid {
            param,
            value: value.to_owned(),
            expected,
        };
        match key {
            "lab.mode" => {
                cfg.mode = match value {
                    "ssh" => Mode::Ssh,
                    "marker" => Mode::Marker,
                    "run" => Mode::Run,
                    _ => return Err(invalid("lab.mode", "`ssh`, `marker` or `run`")),
                }
            }
            "lab.ip" => {
                (cfg.address, cfg.prefix) = parse_cidr(value).ok_or_else(|| {
                    invalid(
                        "lab.ip",
                        "an IPv4 address and prefix length, like 10.0.2.15/24",
                    )
                })?;
            }
            "lab.gw" => {
                cfg.gateway = value
                    .parse()
                    .map_err(|_| invalid("lab.gw", "an IPv4 address, like 10.0.2.2"))?;
            }
            "lab.ssh_port" => {
                cfg.ssh_port = value
                    .parse()
                    .ok()
                    .filter(|&port| port != 0)
                    .ok_or_else(|| invalid("lab.ssh_port", "a TCP port from 1 to 65535"))?;
            }
            "lab.tests" => {
                cfg.run.tests = value.split(',').map(str::to_owned).collect();
                if cfg.run.tests.iter().any(|t| {
                    t.is_empty()
                        || t.starts_with(['-', '.'])
                        || t.split('/').any(|p| p.is_empty() || p == "..")
                        || !t
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_.:/+-".contains(c))
                }) {
                    return Err(invalid("lab.tests", "test names separated by commas"));
                }
            }
            "lab.iterations" => {
                cfg.run.iterations = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| invalid("lab.iterations", "a count from 1"))?;
            }
            "lab.duration_ms" => {
                cfg.run.duration_ms = value
                    .parse()
                    .map_err(|_| invalid("lab.duration_ms", "milliseconds"))?;
            }
            "lab.seed" => {
                cfg.run.seed = value
                    .parse()
                    .map_err(|_| invalid("lab.seed", "an unsigned 64-bit number"))?;
            }
            "lab.scale" => {
                cfg.run.deadline_scale = value
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && *f > 0.0)
                    .ok_or_else(|| invalid("lab.scale", "a positive number, such as 5"))?;
            }
            _ => {}
        }
    }
    // Checked here rather than left to SIOCADDRT, whose ENETUNREACH would not say which
    // parameter is wrong.
    let mask = u32::from(netmask(cfg.prefix));
    let on_link = u32::from(cfg.gateway) & mask == u32::from(cfg.address) & mask;
    if !on_link || cfg.gateway == cfg.address {
        return Err(CmdlineError::GatewayOffLink {
            gateway: cfg.gateway,
            address: cfg.address,
            prefix: cfg.prefix,
        });
    }
    Ok(cfg)
}

/// `10.0.2.15/24` into its address and prefix length. The prefix is required: guessing one
/// would hide a typo until the route to the gateway fails.
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (address, prefix) = s.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|&p| p <= 32)?;
    Some((address.parse().ok()?, prefix))
}

/// The netmask for a prefix length, such as 255.255.255.0 for 24.
pub fn netmask(prefix: u8) -> Ipv4Addr {
    let bits = match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    };
    Ipv4Addr::from(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_no_lab_parameters() {
        let cfg = parse("console=ttyS0 panic=-1 quiet\n").expect("valid");
        assert_eq!(cfg, Config::default());
    }

    #[test]
    fn reads_every_parameter_and_the_last_one_wins() {
        let cfg = parse(
            "console=ttyS0 lab.mode=ssh lab.ip=192.168.7.9/16 lab.gw=192.168.0.1 \
             lab.ssh_port=2222 lab.mode=marker lab.future=1 init=/sbin/init",
        )
        .expect("valid");
        assert_eq!(
            cfg,
            Config {
                mode: Mode::Marker,
                address: Ipv4Addr::new(192, 168, 7, 9),
                prefix: 16,
                gateway: Ipv4Addr::new(192, 168, 0, 1),
                ssh_port: 2222,
                run: RunSpec::default(),
            }
        );
    }

    #[test]
    fn run_mode_reads_what_to_run() {
        let cfg = parse(
            "lab.mode=run lab.tests=futex_errno,rt:cyclictest lab.iterations=3 \
             lab.duration_ms=500 lab.seed=42 lab.scale=5",
        )
        .expect("valid");
        assert_eq!(cfg.mode, Mode::Run);
        assert_eq!(
            cfg.run,
            RunSpec {
                tests: vec!["futex_errno".into(), "rt:cyclictest".into()],
                iterations: 3,
                duration_ms: 500,
                seed: 42,
                deadline_scale: 5.0,
            }
        );
    }

    #[test]
    fn rejects_bad_values_naming_the_parameter() {
        for (line, param) in [
            ("lab.mode=shell", "lab.mode"),
            ("lab.ip=10.0.2.15", "lab.ip"),
            ("lab.ip=10.0.2.15/33", "lab.ip"),
            ("lab.ip=10.0.2/24", "lab.ip"),
            ("lab.gw=gateway", "lab.gw"),
            ("lab.ssh_port=0", "lab.ssh_port"),
            ("lab.ssh_port=65536", "lab.ssh_port"),
            ("lab.tests=a,,b", "lab.tests"),
            ("lab.tests=../x", "lab.tests"),
            ("lab.tests=a;b", "lab.tests"),
            ("lab.iterations=0", "lab.iterations"),
            ("lab.scale=0", "lab.scale"),
            ("lab.seed=-1", "lab.seed"),
        ] {
            match parse(line) {
                Err(CmdlineError::Invalid { param: p, .. }) => assert_eq!(p, param, "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_a_gateway_outside_the_subnet() {
        assert!(matches!(
            parse("lab.ip=10.0.3.15/24"),
            Err(CmdlineError::GatewayOffLink { .. })
        ));
        assert!(matches!(
            parse("lab.ip=10.0.2.2/24"),
            Err(CmdlineError::GatewayOffLink { .. })
        ));
        assert!(parse("lab.ip=10.0.3.15/16").is_ok());
    }

    #[test]
    fn cidr_and_netmask() {
        assert_eq!(
            parse_cidr("10.0.2.15/24"),
            Some((Ipv4Addr::new(10, 0, 2, 15), 24))
        );
        assert_eq!(parse_cidr("10.0.2.15/"), None);
        assert_eq!(parse_cidr("/24"), None);
        assert_eq!(netmask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(netmask(8), Ipv4Addr::new(255, 0, 0, 0));
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(27), Ipv4Addr::new(255, 255, 255, 224));
        assert_eq!(netmask(32), Ipv4Addr::new(255, 255, 255, 255));
    }
}
