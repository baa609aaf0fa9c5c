//! The guest's network, set with the same ioctls `ifconfig` and `route` use, so the image needs
//! neither a netlink tool nor busybox applets: loopback, one static address on eth0, and a
//! default route through QEMU's user-mode gateway.

use std::io;
use std::mem;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cmdline::{netmask, Config};

/// The only NIC: virtio-net, named by the kernel since there is no udev to rename it.
pub const ETH: &str = "eth0";

/// How long to wait for eth0. Built-in drivers usually register it before init runs; the wait
/// covers asynchronous probing.
const ETH_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("open an AF_INET socket for interface ioctls: {0} (is CONFIG_INET in the kernel?)")]
    Socket(#[source] io::Error),
    #[error("{step} on {ifname}: {source}")]
    Ioctl {
        step: &'static str,
        ifname: &'static str,
        source: io::Error,
    },
    #[error(
        "find {ETH}: no {ETH} after {} s (interfaces present: {present}): is CONFIG_VIRTIO_NET in \
         the kernel, with CONFIG_VIRTIO_PCI (q35, virt) or CONFIG_VIRTIO_MMIO (microvm), and does \
         QEMU have a virtio-net device? On microvm, QEMU adds the virtio_mmio.device= parameter \
         only with acpi=off",
        ETH_WAIT.as_secs()
    )]
    NoEth { present: String },
    #[error("add the default route via {gateway}: {source}")]
    Route {
        gateway: Ipv4Addr,
        source: io::Error,
    },
}

/// eth0's `operstate` as sysfs says it (`up`, `down`, `lowerlayerdown`, ...), or `unknown`.
pub fn operstate() -> String {
    std::fs::read_to_string(format!("/sys/class/net/{ETH}/operstate"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Brings up lo and eth0 and adds the default route.
pub fn configure(cfg: &Config) -> Result<(), NetError> {
    // SAFETY: plain socket(2); the result is checked before being wrapped.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(NetError::Socket(io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };

    set_up(&sock, "lo", Ipv4Addr::LOCALHOST, 8)?;
    wait_for_eth()?;
    set_up(&sock, ETH, cfg.address, cfg.prefix)?;
    add_default_route(&sock, cfg.gateway)
}

fn wait_for_eth() -> Result<(), NetError> {
    let sysfs = Path::new("/sys/class/net").join(ETH);
    let deadline = Instant::now() + ETH_WAIT;
    while !sysfs.exists() {
        if Instant::now() >= deadline {
            let mut present: Vec<String> = std::fs::read_dir("/sys/class/net")
                .map(|dir| {
                    dir.filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            present.sort();
            return Err(NetError::NoEth {
                present: present.join(", "),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Address, then netmask, then IFF_UP: SIOCSIFADDR installs a classful mask (/8 for 10.x),
/// which SIOCSIFNETMASK then corrects, as `ifconfig` does.
fn set_up(
    sock: &OwnedFd,
    ifname: &'static str,
    address: Ipv4Addr,
    prefix: u8,
) -> Result<(), NetError> {
    let fail = |step| {
        move |source| NetError::Ioctl {
            step,
            ifname,
            source,
        }
    };
    let mut req = ifreq(ifname);
    req.ifr_ifru.ifru_addr = sockaddr(address);
    ioctl(sock, libc::SIOCSIFADDR as _, &mut req).map_err(fail("set the address"))?;

    let mut req = ifreq(ifname);
    req.ifr_ifru.ifru_netmask = sockaddr(netmask(prefix));
    ioctl(sock, libc::SIOCSIFNETMASK as _, &mut req).map_err(fail("set the netmask"))?;

    let mut req = ifreq(ifname);
    ioctl(sock, libc::SIOCGIFFLAGS as _, &mut req).map_err(fail("read the flags"))?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    ioctl(sock, libc::SIOCSIFFLAGS as _, &mut req).map_err(fail("bring the link up"))
}

fn add_default_route(sock: &OwnedFd, gateway: Ipv4Addr) -> Result<(), NetError> {
    let mut rt = RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr(Ipv4Addr::UNSPECIFIED),
        rt_gateway: sockaddr(gateway),
        rt_genmask: sockaddr(Ipv4Addr::UNSPECIFIED),
        rt_flags: libc::RTF_UP | libc::RTF_GATEWAY,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_pad4: std::ptr::null_mut(),
        rt_metric: 0,
        rt_dev: std::ptr::null_mut(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    match ioctl(sock, libc::SIOCADDRT as _, &mut rt) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other.map_err(|source| NetError::Route { gateway, source }),
    }
}

/// `struct rtentry` from include/uapi/linux/route.h. Defined here because the libc crate has it
/// for musl only, and the unit tests build for glibc.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

#[cfg(target_env = "musl")]
const _: () = assert!(mem::size_of::<RtEntry>() == mem::size_of::<libc::rtentry>());

fn ifreq(ifname: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    // Names are our own constants, shorter than IFNAMSIZ, so the NUL terminator survives.
    for (dst, src) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

fn sockaddr(address: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(address).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: both are 16-byte plain-old-data views of the same address; the kernel reads
    // this sockaddr as a sockaddr_in because sin_family is AF_INET.
    unsafe { mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ioctl<T>(sock: &OwnedFd, request: libc::Ioctl, arg: &mut T) -> io::Result<()> {
    // SAFETY: arg is the struct this request expects and lives across the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, arg as *mut T) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_is_network_order_inet() {
        let sa = sockaddr(Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(sa.sa_family, libc::AF_INET as libc::sa_family_t);
        // sa_data holds the port (2 bytes), then the address in network order.
        let bytes: Vec<u8> = sa.sa_data[..6]
            .iter()
            .map(|&b| b.to_ne_bytes()[0])
            .collect();
        assert_eq!(bytes, [0, 0, 10, 0, 2, 15]);
    }

    #[test]
    fn ifreq_name_is_nul_terminated() {
        let req = ifreq(ETH);
        assert_eq!(
            req.ifr_name[..4]
                .iter()
                .map(|&b| b.to_ne_bytes()[0])
                .collect::<Vec<_>>(),
            b"eth0"
        );
        assert_eq!(req.ifr_name[4], 0);
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn rtentry_matches_the_kernel_layout() {
        // 8 + 3 * 16 + 2 + 2, padded to 64, + 8 + 8 + 2, padded to 88, + 8 + 8 + 8 + 2, padded.
        assert_eq!(mem::size_of::<RtEntry>(), 120);
    }
}
