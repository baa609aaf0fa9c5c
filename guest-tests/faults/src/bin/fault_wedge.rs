//! Blocks forever without a watchdog, ignoring SIGTERM and SIGHUP: only the host deadline
//! can end it, which must be reported as a hang and take the VM down.
fn main() {
    // SAFETY: setting signal dispositions to SIG_IGN and calling pause(2) touch no memory.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    eprintln!("fault_wedge: blocking forever");
    loop {
        // SAFETY: see above.
        unsafe { libc::pause() };
    }
}
