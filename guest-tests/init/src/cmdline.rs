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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
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
                    _ => return Err(invalid("lab.mode", "`ssh` or `marker`")),
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
