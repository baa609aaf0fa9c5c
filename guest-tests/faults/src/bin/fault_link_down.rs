//! Takes the guest's network link down (eth0 without IFF_UP, as `ip link set eth0 down`
//! would) and then blocks: the host's SSH session to the guest goes silent while the kernel
//! runs on. lab must call that a lost transport (an infra error), never a hang of the kernel.
fn main() {
    if let Err(e) = link_down("eth0") {
        eprintln!("fault_link_down: cannot take eth0 down: {e}");
        std::process::exit(3);
    }
    // Nothing reaches the host from here on; this line only shows in the console-less log.
    eprintln!("fault_link_down: eth0 is down, blocking");
    loop {
        // SAFETY: pause(2) touches no memory.
        unsafe { libc::pause() };
    }
}

/// Clears IFF_UP on `name` with SIOCGIFFLAGS/SIOCSIFFLAGS on a datagram socket.
fn link_down(name: &str) -> std::io::Result<()> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data; zero is a valid value for every field.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: ioctl on our socket with a pointer to an ifreq we own, as SIOC[GS]IFFLAGS take.
    let result = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req) < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            req.ifr_ifru.ifru_flags &= !(libc::IFF_UP as libc::c_short);
            if libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &req) < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(fd) };
    result
}
