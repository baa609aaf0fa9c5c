//! Safe wrappers over the raw system calls the tests drive, and nothing else.
//!
//! Every wrapper hands back the kernel's errno untouched. That matters: the futex bug the lab
//! hunts leaks kernel-internal errnos (512..530, `include/linux/errno.h`) to user space, and
//! libc wrappers may hide them (musl's `sem_*` and `pthread_*` retry or map them). So futexes
//! go through `syscall(SYS_futex, ..)` here, and so does `sched_setscheduler`, which musl only
//! stubs with ENOSYS.

use std::ffi::c_int;
use std::mem;
use std::ptr;
use std::sync::atomic::AtomicU32;

/// A kernel errno, positive, as user space sees it.
pub type Errno = i32;

const NS_PER_S: u64 = 1_000_000_000;

/// The calling thread's errno after a failed call.
pub fn errno() -> Errno {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A readable name for an errno, naming the kernel-internal ones that must never reach user
/// space (`include/linux/errno.h`).
pub fn errno_name(e: Errno) -> String {
    let name = match e {
        libc::EAGAIN => "EAGAIN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EINTR => "EINTR",
        libc::EINVAL => "EINVAL",
        libc::EFAULT => "EFAULT",
        libc::EPERM => "EPERM",
        libc::ENOSYS => "ENOSYS",
        libc::EBADF => "EBADF",
        libc::ESRCH => "ESRCH",
        512 => "ERESTARTSYS",
        513 => "ERESTARTNOINTR",
        514 => "ERESTARTNOHAND",
        515 => "ENOIOCTLCMD",
        516 => "ERESTART_RESTARTBLOCK",
        517 => "EPROBE_DEFER",
        518 => "EOPENSTALE",
        519 => "ENOPARAM",
        _ => return format!("errno {e}"),
    };
    format!("{name} ({e})")
}

/// True for the errnos that are internal to the kernel and must never reach user space.
pub fn is_kernel_internal(e: Errno) -> bool {
    e >= 512
}

/// Turns a libc-style `-1 and errno` return into a `Result`.
fn check(r: libc::c_long) -> Result<libc::c_long, Errno> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

fn timespec(ns: u64) -> libc::timespec {
    // SAFETY: timespec is plain data; all-zero is a valid value (musl pads it on some arches).
    let mut ts: libc::timespec = unsafe { mem::zeroed() };
    ts.tv_sec = (ns / NS_PER_S) as _;
    ts.tv_nsec = (ns % NS_PER_S) as _;
    ts
}

/// CLOCK_MONOTONIC in nanoseconds: the clock futex timeouts and hrtimers run on, so a timeout
/// measured with it can be compared with what was asked for.
pub fn now_ns() -> u64 {
    let mut ts = timespec(0);
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * NS_PER_S + ts.tv_nsec as u64
}

/// The resolution of CLOCK_MONOTONIC: 1 ns with high-resolution timers, a whole tick
/// (`KTIME_LOW_RES`) when the kernel runs without them, e.g. on the `refined-jiffies`
/// clocksource that an x86 guest without ACPI falls back to under TCG.
pub fn clock_res_ns() -> u64 {
    let mut ts = timespec(0);
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * NS_PER_S + ts.tv_nsec as u64
}

/// Sleeps about `ns`; a signal may cut it short, which every caller tolerates.
pub fn sleep_ns(ns: u64) {
    let ts = timespec(ns);
    // SAFETY: `ts` is a valid timespec; the remainder pointer may be null.
    unsafe { libc::nanosleep(&ts, ptr::null_mut()) };
}

/// Sleeps until CLOCK_MONOTONIC reaches `deadline_ns`, resuming after signals.
pub fn sleep_until(deadline_ns: u64) {
    loop {
        let now = now_ns();
        if now >= deadline_ns {
            return;
        }
        sleep_ns(deadline_ns - now);
    }
}

/// Sets this thread's timer slack to 1 ns, so that microsecond timeouts are really that
/// short (the default slack of 50 µs would stretch every short futex timeout).
pub fn tight_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

/// `FUTEX_WAIT | FUTEX_PRIVATE_FLAG`: sleeps while `*word == expected`, at most `timeout_ns`
/// (relative, CLOCK_MONOTONIC) when given. `Ok` means the kernel says a FUTEX_WAKE woke us.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout_ns: Option<u64>) -> Result<(), Errno> {
    let ts = timeout_ns.map(timespec);
    let tsp = ts
        .as_ref()
        .map_or(ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32 for the whole call; `tsp` is null or points to
    // `ts`, which outlives the call. The kernel ignores the last two arguments for FUTEX_WAIT.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            tsp,
            ptr::null::<u32>(),
            0u32,
        )
    };
    check(r).map(drop)
}

/// The `futex_waitv` system call's number: the same on every arch (generic syscall table).
/// musl's headers lack it.
pub const SYS_FUTEX_WAITV: libc::c_long = 449;

/// `struct futex_waitv` of `include/uapi/linux/futex.h`.
#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// `FUTEX2_SIZE_U32 | FUTEX2_PRIVATE`.
const FUTEX2_U32_PRIVATE: u32 = 0x02 | 128;

/// `futex_waitv(2)`: sleeps while every `*words[i] == expected[i]`, at most `timeout_ns`
/// (relative here; the call takes an absolute CLOCK_MONOTONIC time). `Ok(i)`: a wake-up on
/// `words[i]` woke us.
pub fn futex_waitv(
    words: &[&AtomicU32],
    expected: &[u32],
    timeout_ns: Option<u64>,
) -> Result<usize, Errno> {
    let waiters: Vec<FutexWaitv> = words
        .iter()
        .zip(expected)
        .map(|(w, v)| FutexWaitv {
            val: u64::from(*v),
            uaddr: w.as_ptr() as u64,
            flags: FUTEX2_U32_PRIVATE,
            reserved: 0,
        })
        .collect();
    let ts = timeout_ns.map(|t| timespec(now_ns() + t));
    let tsp = ts
        .as_ref()
        .map_or(ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `waiters` holds live, aligned u32 addresses and outlives the call; `tsp` is
    // null or points to `ts`, which outlives the call.
    let r = unsafe {
        libc::syscall(
            SYS_FUTEX_WAITV,
            waiters.as_ptr(),
            waiters.len() as libc::c_uint,
            0 as libc::c_uint,
            tsp,
            libc::CLOCK_MONOTONIC,
        )
    };
    check(r).map(|i| i as usize)
}

/// `FUTEX_WAKE | FUTEX_PRIVATE_FLAG`: wakes up to `n` waiters on `word`; returns how many.
pub fn futex_wake(word: &AtomicU32, n: i32) -> Result<i32, Errno> {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE reads no other argument.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n,
            ptr::null::<libc::timespec>(),
            ptr::null::<u32>(),
            0u32,
        )
    };
    check(r).map(|n| n as i32)
}

// ---- futex requeue, wake-op and bitset operations (futex_requeue, futex_wake_op, futex_bitset)

/// `FUTEX_BITSET_MATCH_ANY`: the bitset plain FUTEX_WAIT and FUTEX_WAKE use.
pub const FUTEX_BITSET_MATCH_ANY: u32 = u32::MAX;
/// `FUTEX_TID_MASK`: the owner's thread id in a PI futex word.
pub const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

/// One raw futex call with every argument spelled out; errno untouched.
///
/// # Safety
/// `uaddr` and `uaddr2` (when the op reads it) must be live, aligned u32s, and `timeout`
/// null or a valid timespec, for the whole call.
unsafe fn futex_raw(
    uaddr: *mut u32,
    op: c_int,
    val: u32,
    timeout: *const libc::timespec,
    uaddr2: *mut u32,
    val3: u32,
) -> Result<libc::c_long, Errno> {
    // SAFETY: the caller upholds the pointer contract above.
    check(unsafe { libc::syscall(libc::SYS_futex, uaddr, op, val, timeout, uaddr2, val3) })
}

/// An absolute timespec `ns` from now on `clock` (CLOCK_MONOTONIC or CLOCK_REALTIME).
pub fn abs_timespec(clock: libc::clockid_t, ns: u64) -> libc::timespec {
    let mut ts = timespec(0);
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    timespec(ts.tv_sec as u64 * NS_PER_S + ts.tv_nsec as u64 + ns)
}

/// Nanoseconds on `clock`.
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = timespec(0);
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * NS_PER_S + ts.tv_nsec as u64
}

/// `FUTEX_CMP_REQUEUE | FUTEX_PRIVATE_FLAG`: if `*from == cmpval`, wakes up to `nr_wake`
/// waiters of `from` and moves up to `nr_requeue` more to `to`; returns woken + requeued.
/// EAGAIN when `*from != cmpval`.
pub fn futex_cmp_requeue(
    from: &AtomicU32,
    nr_wake: i32,
    nr_requeue: i32,
    to: &AtomicU32,
    cmpval: u32,
) -> Result<i32, Errno> {
    // SAFETY: both words are live and aligned; the timeout slot carries nr_requeue (the
    // kernel reads it as an integer for this op).
    unsafe {
        futex_raw(
            from.as_ptr(),
            libc::FUTEX_CMP_REQUEUE | libc::FUTEX_PRIVATE_FLAG,
            nr_wake as u32,
            nr_requeue as usize as *const libc::timespec,
            to.as_ptr(),
            cmpval,
        )
    }
    .map(|n| n as i32)
}

/// `FUTEX_WAKE_OP | FUTEX_PRIVATE_FLAG`: atomically applies `op` (an encoded
/// `FUTEX_OP(op, oparg, cmp, cmparg)`) to `*uaddr2`, wakes up to `nr_wake` waiters of
/// `uaddr1`, and up to `nr_wake2` of `uaddr2` if the comparison held on the old value;
/// returns the total woken.
pub fn futex_wake_op(
    uaddr1: &AtomicU32,
    nr_wake: i32,
    nr_wake2: i32,
    uaddr2: &AtomicU32,
    op: u32,
) -> Result<i32, Errno> {
    // SAFETY: both words are live and aligned; the timeout slot carries nr_wake2.
    unsafe {
        futex_raw(
            uaddr1.as_ptr(),
            libc::FUTEX_WAKE_OP | libc::FUTEX_PRIVATE_FLAG,
            nr_wake as u32,
            nr_wake2 as usize as *const libc::timespec,
            uaddr2.as_ptr(),
            op,
        )
    }
    .map(|n| n as i32)
}

/// The `val3` of FUTEX_WAKE_OP: `FUTEX_OP(op, oparg, cmp, cmparg)` of
/// `include/uapi/linux/futex.h` (`op` may carry `FUTEX_OP_OPARG_SHIFT`, 8).
pub const fn futex_op(op: u32, oparg: u32, cmp: u32, cmparg: u32) -> u32 {
    ((op & 0xf) << 28) | ((cmp & 0xf) << 24) | ((oparg & 0xfff) << 12) | (cmparg & 0xfff)
}

/// `FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG` (plus `FUTEX_CLOCK_REALTIME` when `realtime`):
/// sleeps while `*word == expected` until a wake whose bitset shares a bit with `bitset`,
/// or until the absolute time `deadline` on that clock.
pub fn futex_wait_bitset(
    word: &AtomicU32,
    expected: u32,
    deadline: Option<&libc::timespec>,
    bitset: u32,
    realtime: bool,
) -> Result<(), Errno> {
    let clock = if realtime {
        libc::FUTEX_CLOCK_REALTIME
    } else {
        0
    };
    let tsp = deadline.map_or(ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is live and aligned; `tsp` is null or a timespec outliving the call.
    unsafe {
        futex_raw(
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG | clock,
            expected,
            tsp,
            ptr::null_mut(),
            bitset,
        )
    }
    .map(drop)
}

/// `FUTEX_WAKE_BITSET | FUTEX_PRIVATE_FLAG`: wakes up to `n` waiters of `word` whose bitset
/// shares a bit with `bitset`; returns how many.
pub fn futex_wake_bitset(word: &AtomicU32, n: i32, bitset: u32) -> Result<i32, Errno> {
    // SAFETY: `word` is live and aligned; no other address is read.
    unsafe {
        futex_raw(
            word.as_ptr(),
            libc::FUTEX_WAKE_BITSET | libc::FUTEX_PRIVATE_FLAG,
            n as u32,
            ptr::null(),
            ptr::null_mut(),
            bitset,
        )
    }
    .map(|n| n as i32)
}

/// `FUTEX_WAIT_REQUEUE_PI | FUTEX_PRIVATE_FLAG`: sleeps on `word` while it equals
/// `expected`, to be requeued onto the PI futex `pi` by FUTEX_CMP_REQUEUE_PI; `Ok` means the
/// caller now owns `pi`. `deadline` is absolute CLOCK_MONOTONIC.
pub fn futex_wait_requeue_pi(
    word: &AtomicU32,
    expected: u32,
    deadline: Option<&libc::timespec>,
    pi: &AtomicU32,
) -> Result<(), Errno> {
    let tsp = deadline.map_or(ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: both words are live and aligned; `tsp` is null or outlives the call.
    unsafe {
        futex_raw(
            word.as_ptr(),
            libc::FUTEX_WAIT_REQUEUE_PI | libc::FUTEX_PRIVATE_FLAG,
            expected,
            tsp,
            pi.as_ptr(),
            0,
        )
    }
    .map(drop)
}

/// `FUTEX_CMP_REQUEUE_PI | FUTEX_PRIVATE_FLAG`: if `*from == cmpval`, hands the PI futex
/// `pi` to the top waiter if it is free (nr_wake must be 1) and requeues up to `nr_requeue`
/// more onto it; returns how many were woken or requeued.
pub fn futex_cmp_requeue_pi(
    from: &AtomicU32,
    nr_requeue: i32,
    pi: &AtomicU32,
    cmpval: u32,
) -> Result<i32, Errno> {
    // SAFETY: both words are live and aligned; the timeout slot carries nr_requeue.
    unsafe {
        futex_raw(
            from.as_ptr(),
            libc::FUTEX_CMP_REQUEUE_PI | libc::FUTEX_PRIVATE_FLAG,
            1,
            nr_requeue as usize as *const libc::timespec,
            pi.as_ptr(),
            cmpval,
        )
    }
    .map(|n| n as i32)
}

// ---- end of the requeue, wake-op and bitset block

/// The kernel's id of the calling thread.
pub fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Sends `sig` to one thread of this process.
pub fn tgkill(tid: i32, sig: c_int) -> Result<(), Errno> {
    // SAFETY: plain integers.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, sig) };
    check(r).map(drop)
}

/// Installs `handler` for `sig`, with SA_RESTART when `restart`.
pub fn install_handler(
    sig: c_int,
    restart: bool,
    handler: extern "C" fn(c_int),
) -> Result<(), Errno> {
    // SAFETY: sigaction is plain data; all-zero is an empty action with an empty mask.
    let mut sa: libc::sigaction = unsafe { mem::zeroed() };
    sa.sa_sigaction = handler as libc::sighandler_t;
    sa.sa_flags = if restart { libc::SA_RESTART } else { 0 };
    // SAFETY: `sa` is a valid sigaction; the old action is not wanted.
    let r = unsafe {
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, ptr::null_mut())
    };
    check(r.into()).map(drop)
}

/// A file descriptor closed on drop.
#[derive(Debug)]
pub struct Fd(c_int);

impl Fd {
    /// Takes ownership of a raw descriptor returned by a successful call.
    fn own(fd: c_int) -> Fd {
        Fd(fd)
    }

    pub fn raw(&self) -> c_int {
        self.0
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it once.
        unsafe { libc::close(self.0) };
    }
}

/// A pipe: `(read end, write end)`, close-on-exec.
pub fn pipe() -> Result<(Fd, Fd), Errno> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    check(r.into())?;
    Ok((Fd::own(fds[0]), Fd::own(fds[1])))
}

/// Asks for a pipe buffer of `bytes`; returns the size the kernel chose.
pub fn set_pipe_size(fd: &Fd, bytes: usize) -> Result<usize, Errno> {
    // SAFETY: F_SETPIPE_SZ takes an int.
    let r = unsafe { libc::fcntl(fd.raw(), libc::F_SETPIPE_SZ, bytes as c_int) };
    check(r.into()).map(|n| n as usize)
}

/// The pipe buffer size.
pub fn pipe_size(fd: &Fd) -> Result<usize, Errno> {
    // SAFETY: F_GETPIPE_SZ takes no argument.
    let r = unsafe { libc::fcntl(fd.raw(), libc::F_GETPIPE_SZ) };
    check(r.into()).map(|n| n as usize)
}

/// Bytes queued in a pipe or socket (FIONREAD).
pub fn fionread(fd: &Fd) -> Result<usize, Errno> {
    let mut n: c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let r = unsafe { libc::ioctl(fd.raw(), libc::FIONREAD, &mut n as *mut c_int) };
    check(r.into()).map(|_| n.max(0) as usize)
}

/// One `read()`; `Ok(0)` is end of file.
pub fn read(fd: c_int, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: `buf` is writable for its whole length.
    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    check(r as libc::c_long).map(|n| n as usize)
}

/// One `write()`.
pub fn write(fd: c_int, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: `buf` is readable for its whole length.
    let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    check(r as libc::c_long).map(|n| n as usize)
}

/// Writes all of `buf` to fd 1 or 2 without any lock: usable from the watchdog while other
/// threads are stuck anywhere.
pub fn write_all_raw(fd: c_int, mut buf: &[u8]) {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) => return,
            Ok(n) => buf = &buf[n..],
            Err(libc::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// A non-blocking, close-on-exec eventfd starting at 0.
pub fn eventfd() -> Result<Fd, Errno> {
    // SAFETY: plain integers.
    let r = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    check(r.into()).map(|fd| Fd::own(fd as c_int))
}

/// A new epoll instance watching `fd` for input with `extra` flags (such as EPOLLEXCLUSIVE).
pub fn epoll_watching(fd: &Fd, extra: c_int) -> Result<Fd, Errno> {
    // SAFETY: plain integer flags.
    let ep = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }.into())?;
    let ep = Fd::own(ep as c_int);
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | extra) as u32,
        u64: fd.raw() as u64,
    };
    // SAFETY: `ev` is a valid event for the duration of the call.
    let r = unsafe { libc::epoll_ctl(ep.raw(), libc::EPOLL_CTL_ADD, fd.raw(), &mut ev) };
    check(r.into())?;
    Ok(ep)
}

/// One `epoll_wait` for a single event, no timeout; returns the number of events.
pub fn epoll_wait_one(ep: &Fd) -> Result<usize, Errno> {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: room for exactly one event.
    let r = unsafe { libc::epoll_wait(ep.raw(), &mut ev, 1, -1) };
    check(r.into()).map(|n| n as usize)
}

/// Whether `fd` is readable right now (`poll` with a zero timeout, which consumes nothing).
pub fn readable_now(fd: &Fd) -> Result<bool, Errno> {
    let mut p = libc::pollfd {
        fd: fd.raw(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    check(r.into()).map(|n| n > 0 && p.revents & libc::POLLIN != 0)
}

fn unix_addr(name: &[u8]) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    // Abstract namespace: a leading NUL, so nothing appears in the file system.
    let n = name.len().min(addr.sun_path.len() - 1);
    for (dst, &src) in addr.sun_path[1..].iter_mut().zip(&name[..n]) {
        *dst = src as libc::c_char;
    }
    let len = mem::size_of::<libc::sa_family_t>() + 1 + n;
    (addr, len as libc::socklen_t)
}

fn unix_stream() -> Result<Fd, Errno> {
    // SAFETY: plain integers.
    let r = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    check(r.into()).map(|fd| Fd::own(fd as c_int))
}

/// A listening AF_UNIX stream socket on the abstract name `name`.
pub fn unix_listen(name: &[u8], backlog: c_int) -> Result<Fd, Errno> {
    let fd = unix_stream()?;
    let (addr, len) = unix_addr(name);
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    let r = unsafe { libc::bind(fd.raw(), (&addr as *const libc::sockaddr_un).cast(), len) };
    check(r.into())?;
    // SAFETY: plain integers.
    check(unsafe { libc::listen(fd.raw(), backlog) }.into())?;
    Ok(fd)
}

/// A connection to the abstract AF_UNIX name `name`.
pub fn unix_connect(name: &[u8]) -> Result<Fd, Errno> {
    let fd = unix_stream()?;
    let (addr, len) = unix_addr(name);
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    let r = unsafe { libc::connect(fd.raw(), (&addr as *const libc::sockaddr_un).cast(), len) };
    check(r.into())?;
    Ok(fd)
}

/// One blocking `accept4()`.
pub fn accept(listener: c_int) -> Result<Fd, Errno> {
    // SAFETY: null address pointers are allowed.
    let r = unsafe {
        libc::accept4(
            listener,
            ptr::null_mut(),
            ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    check(r.into()).map(|fd| Fd::own(fd as c_int))
}

/// The CPUs this thread may run on, in order.
pub fn allowed_cpus() -> Result<Vec<usize>, Errno> {
    let mut mask = [0u64; 16];
    // SAFETY: the kernel writes at most `size_of_val(&mask)` bytes into `mask`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getaffinity,
            0,
            mem::size_of_val(&mask),
            mask.as_mut_ptr(),
        )
    };
    check(r)?;
    Ok((0..mask.len() * 64)
        .filter(|&cpu| mask[cpu / 64] & (1 << (cpu % 64)) != 0)
        .collect())
}

/// Pins the calling thread to one CPU.
pub fn pin_to_cpu(cpu: usize) -> Result<(), Errno> {
    let mut mask = [0u64; 16];
    if cpu >= mask.len() * 64 {
        return Err(libc::EINVAL);
    }
    mask[cpu / 64] |= 1 << (cpu % 64);
    // SAFETY: the kernel reads `size_of_val(&mask)` bytes from `mask`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setaffinity,
            0,
            mem::size_of_val(&mask),
            mask.as_ptr(),
        )
    };
    check(r).map(drop)
}

/// The kernel's `struct sched_param`, which is a single int (musl's is larger).
#[repr(C)]
struct KernelSchedParam {
    sched_priority: c_int,
}

/// Sets the calling thread's policy through the raw syscall (musl's wrapper returns ENOSYS).
pub fn set_scheduler(policy: c_int, priority: c_int) -> Result<(), Errno> {
    let param = KernelSchedParam {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid kernel sched_param; pid 0 is the calling thread.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            0,
            policy,
            &param as *const KernelSchedParam,
        )
    };
    check(r).map(drop)
}

/// Blocks `sigs` in the calling thread; threads it starts later inherit the mask.
pub fn block_signals(sigs: &[c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the old mask is not wanted.
    unsafe {
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut());
    }
    set
}

/// Waits up to `ns` for one of the blocked signals in `set`; `Some(signal)` if one came.
pub fn wait_signal(set: &libc::sigset_t, ns: u64) -> Option<c_int> {
    let ts = timespec(ns);
    // SAFETY: `set` and `ts` are valid; the siginfo pointer may be null.
    let r = unsafe { libc::sigtimedwait(set, ptr::null_mut(), &ts) };
    (r > 0).then_some(r)
}

/// Ends the process at once: no destructors, no atexit handlers, no waiting for threads that
/// may be stuck in the kernel.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is always safe to call.
    unsafe { libc::_exit(code) }
}

/// Sleeps until a signal arrives, forever: for a thread that must not return while another
/// one ends the process.
pub fn park_forever() -> ! {
    loop {
        // SAFETY: pause has no arguments.
        unsafe { libc::pause() };
    }
}

/// The scheduler state letter of one thread of this process (`R`, `S`, `D`, ...), read from
/// `/proc/self/task/<tid>/stat`; `None` when /proc cannot tell.
pub fn thread_state(tid: i32) -> Option<char> {
    if tid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    parse_stat_state(&stat)
}

/// The state field of a `/proc/<pid>/stat` line: the first field after the command name,
/// which is in parentheses and may itself contain `)`.
fn parse_stat_state(stat: &str) -> Option<char> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().next()?.chars().next()
}

// --- PI futexes (futex_pi): FUTEX_LOCK_PI, FUTEX_TRYLOCK_PI, FUTEX_UNLOCK_PI, and the
// effective priority that shows their boosting. ---

/// Set in a PI futex word by the kernel while a waiter is (or may be) queued on it; the owner
/// must then unlock through FUTEX_UNLOCK_PI.
pub const FUTEX_WAITERS: u32 = 0x8000_0000;

/// CLOCK_REALTIME in nanoseconds: FUTEX_LOCK_PI's timeout is an absolute time on this clock
/// (`kernel/futex/syscalls.c:futex_init_timeout()` leaves it absolute for FUTEX_LOCK_PI).
pub fn realtime_ns() -> u64 {
    let mut ts = timespec(0);
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * NS_PER_S + ts.tv_nsec as u64
}

fn futex_pi_op(word: &AtomicU32, op: c_int, ts: Option<&libc::timespec>) -> Result<(), Errno> {
    let tsp = ts.map_or(ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32 for the whole call; `tsp` is null or points to a
    // timespec that outlives the call. The PI operations read no other argument.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op | libc::FUTEX_PRIVATE_FLAG,
            0u32,
            tsp,
            ptr::null::<u32>(),
            0u32,
        )
    };
    check(r).map(drop)
}

/// `FUTEX_LOCK_PI | FUTEX_PRIVATE_FLAG`: takes the PI futex `word`, sleeping (and boosting
/// its owner) while another thread holds it, until the absolute CLOCK_REALTIME time
/// `deadline_realtime_ns` when given. `Ok` means the word now holds our thread id.
pub fn futex_lock_pi(word: &AtomicU32, deadline_realtime_ns: Option<u64>) -> Result<(), Errno> {
    let ts = deadline_realtime_ns.map(timespec);
    futex_pi_op(word, libc::FUTEX_LOCK_PI, ts.as_ref())
}

/// `FUTEX_TRYLOCK_PI | FUTEX_PRIVATE_FLAG`: takes `word` if it is free, else EAGAIN.
pub fn futex_trylock_pi(word: &AtomicU32) -> Result<(), Errno> {
    futex_pi_op(word, libc::FUTEX_TRYLOCK_PI, None)
}

/// `FUTEX_UNLOCK_PI | FUTEX_PRIVATE_FLAG`: releases `word`, handing it to the top waiter.
pub fn futex_unlock_pi(word: &AtomicU32) -> Result<(), Errno> {
    futex_pi_op(word, libc::FUTEX_UNLOCK_PI, None)
}

/// The effective priority of thread `tid` of this process as `/proc/<pid>/task/<tid>/stat`
/// shows it (field 18, `p->prio - MAX_RT_PRIO`, `fs/proc/array.c:do_task_stat()`): -1 - N
/// for SCHED_FIFO N, 20 + nice for SCHED_OTHER. It includes priority inheritance, so an
/// owner boosted by a SCHED_FIFO 50 waiter reads -51. `None` when /proc cannot tell.
pub fn thread_priority(tid: i32) -> Option<i64> {
    if tid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    parse_stat_priority(&stat)
}

/// Field 18 of a `/proc/<pid>/stat` line; fields after the command name start at 3.
fn parse_stat_priority(stat: &str) -> Option<i64> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(18 - 3)?.parse().ok()
}

// --- end of the PI futex block ---

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_state_survives_odd_command_names() {
        assert_eq!(parse_stat_state("12 (a) b) S 1 2 3"), Some('S'));
        assert_eq!(parse_stat_state("12 (reader) R 1"), Some('R'));
        assert_eq!(parse_stat_state("garbage"), None);
    }

    #[test]
    fn own_thread_is_running() {
        assert_eq!(thread_state(gettid()), Some('R'));
    }

    #[test]
    fn errno_names_flag_kernel_internal_values() {
        assert_eq!(errno_name(512), "ERESTARTSYS (512)");
        assert_eq!(errno_name(516), "ERESTART_RESTARTBLOCK (516)");
        assert!(is_kernel_internal(512) && !is_kernel_internal(libc::EINTR));
        assert_eq!(errno_name(9999), "errno 9999");
    }

    #[test]
    fn futex_wait_reports_eagain_and_timeouts_exactly() {
        let w = AtomicU32::new(3);
        assert_eq!(futex_wait(&w, 4, None), Err(libc::EAGAIN));
        let t0 = now_ns();
        assert_eq!(futex_wait(&w, 3, Some(200_000)), Err(libc::ETIMEDOUT));
        assert!(now_ns() - t0 >= 200_000);
        assert_eq!(futex_wake(&w, 1), Ok(0));
    }

    #[test]
    fn stat_priority_is_field_18() {
        let line = "77 (pi (x)) S 1 77 77 0 -1 4194560 10 0 0 0 0 0 0 0 -51 0 1 0 300";
        assert_eq!(parse_stat_priority(line), Some(-51));
        assert_eq!(parse_stat_priority("77 (short) S 1 2"), None);
        assert!(thread_priority(gettid()).is_some());
    }

    #[test]
    fn pi_futex_word_holds_the_owner_and_is_free_after_unlock() {
        let w = AtomicU32::new(0);
        assert_eq!(futex_lock_pi(&w, None), Ok(()));
        assert_eq!(w.load(std::sync::atomic::Ordering::SeqCst), gettid() as u32);
        assert_eq!(futex_trylock_pi(&w), Err(libc::EDEADLK));
        assert_eq!(futex_unlock_pi(&w), Ok(()));
        assert_eq!(w.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(futex_unlock_pi(&w), Err(libc::EPERM));
    }
}
