//! The pseudo file systems and host name the guest tests and dropbear expect. The initramfs
//! holds only regular files, so everything under /proc, /sys, /dev, /tmp and /run is mounted
//! here, before anything else runs.

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// One `mount(2)` call.
pub struct Mount {
    pub fstype: &'static CStr,
    pub target: &'static CStr,
    pub flags: libc::c_ulong,
    pub data: &'static CStr,
}

const NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// Also mounted early, on its own, when `/dev/console` is missing from the image.
pub const DEV: Mount = Mount {
    fstype: c"devtmpfs",
    target: c"/dev",
    flags: libc::MS_NOSUID,
    data: c"mode=0755",
};

/// In order: /dev/pts and /dev/shm need /dev. `newinstance` is the default since Linux 4.7
/// and harmless before; `ptmxmode=0666` lets non-root tests open /dev/pts/ptmx too. POSIX
/// shared memory lives on /dev/shm (glibc's `shm_open`): rt-tests' cyclictest fails without it.
const ALL: [Mount; 7] = [
    Mount {
        fstype: c"proc",
        target: c"/proc",
        flags: NOEXEC,
        data: c"",
    },
    Mount {
        fstype: c"sysfs",
        target: c"/sys",
        flags: NOEXEC,
        data: c"",
    },
    DEV,
    Mount {
        fstype: c"devpts",
        target: c"/dev/pts",
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: c"newinstance,ptmxmode=0666,mode=0620",
    },
    Mount {
        fstype: c"tmpfs",
        target: c"/dev/shm",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: c"mode=1777",
    },
    Mount {
        fstype: c"tmpfs",
        target: c"/tmp",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: c"mode=1777",
    },
    Mount {
        fstype: c"tmpfs",
        target: c"/run",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: c"mode=0755",
    },
];

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("create mount point {path}: {source}")]
    MountPoint { path: String, source: io::Error },
    #[error("mount {fstype} on {target}: {source} (is it enabled in the kernel config?)")]
    Mount {
        fstype: String,
        target: String,
        source: io::Error,
    },
    #[error("link /dev/ptmx to pts/ptmx: {0}")]
    Ptmx(#[source] io::Error),
    #[error("set host name to {name}: {source}")]
    Hostname { name: String, source: io::Error },
}

/// Mounts everything in [`ALL`].
pub fn mount_all() -> Result<(), FsError> {
    for m in &ALL {
        mount(m)?;
    }
    // devtmpfs creates /dev/ptmx, and since Linux 4.7 opening it finds the devpts instance
    // mounted at the sibling "pts" (`devpts_mntget()`, fs/devpts/inode.c). Only an old-style
    // /dev without the node needs the symlink.
    if !Path::new("/dev/ptmx").exists() {
        std::os::unix::fs::symlink("pts/ptmx", "/dev/ptmx").map_err(FsError::Ptmx)?;
    }
    Ok(())
}

/// Creates the mount point and mounts. EBUSY means the same file system is already mounted
/// there (`do_add_mount()`, fs/namespace.c), which is what we want.
pub fn mount(m: &Mount) -> Result<(), FsError> {
    let target = Path::new(OsStr::from_bytes(m.target.to_bytes()));
    std::fs::create_dir_all(target).map_err(|source| FsError::MountPoint {
        path: target.display().to_string(),
        source,
    })?;
    // SAFETY: every pointer is a NUL-terminated static string.
    let rc = unsafe {
        libc::mount(
            m.fstype.as_ptr(),
            m.target.as_ptr(),
            m.fstype.as_ptr(),
            m.flags,
            m.data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let source = io::Error::last_os_error();
        if source.raw_os_error() != Some(libc::EBUSY) {
            return Err(FsError::Mount {
                fstype: m.fstype.to_string_lossy().into_owned(),
                target: target.display().to_string(),
                source,
            });
        }
    }
    Ok(())
}

pub fn set_hostname(name: &str) -> Result<(), FsError> {
    // SAFETY: name points to name.len() readable bytes.
    let rc = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    if rc != 0 {
        return Err(FsError::Hostname {
            name: name.to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}
