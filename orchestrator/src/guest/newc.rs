//! A writer for the `newc` cpio format that the kernel unpacks as an initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! Entries are written in the order given, with fixed inode numbers, owners and mtimes, so
//! the same inputs always give the same bytes and therefore the same image digest.

use std::io::{self, Write};

const MAGIC: &str = "070701";

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    /// A character device node: (major, minor).
    CharDev(u32, u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, without a leading `/`.
    pub path: String,
    /// Permission bits (the type bits come from `kind`).
    pub mode: u32,
    pub kind: Kind,
}

impl Entry {
    pub fn dir(path: &str, mode: u32) -> Entry {
        Entry {
            path: path.trim_start_matches('/').to_owned(),
            mode,
            kind: Kind::Dir,
        }
    }
    pub fn file(path: &str, mode: u32, data: Vec<u8>) -> Entry {
        Entry {
            path: path.trim_start_matches('/').to_owned(),
            mode,
            kind: Kind::File(data),
        }
    }
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry {
            path: path.trim_start_matches('/').to_owned(),
            mode: 0o777,
            kind: Kind::Symlink(target.to_owned()),
        }
    }
    pub fn char_dev(path: &str, mode: u32, major: u32, minor: u32) -> Entry {
        Entry {
            path: path.trim_start_matches('/').to_owned(),
            mode,
            kind: Kind::CharDev(major, minor),
        }
    }
}

fn pad4(w: &mut impl Write, len: usize) -> io::Result<()> {
    let pad = (4 - len % 4) % 4;
    w.write_all(&[0u8; 3][..pad])
}

fn header(
    w: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    size: usize,
    rdev: (u32, u32),
    name: &str,
) -> io::Result<()> {
    let namesize = name.len() + 1;
    let size = u32::try_from(size).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name} is too large for newc (4 GiB)"),
        )
    })?;
    write!(
        w,
        "{MAGIC}{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}{dmaj:08x}{dmin:08x}{rmaj:08x}{rmin:08x}{namesize:08x}{check:08x}",
        uid = 0,
        gid = 0,
        mtime = 0,
        dmaj = 0,
        dmin = 0,
        rmaj = rdev.0,
        rmin = rdev.1,
        check = 0,
    )?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad4(w, 110 + namesize)
}

/// Writes the archive, ending with the `TRAILER!!!` entry.
pub fn write(w: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
    for (i, e) in entries.iter().enumerate() {
        if e.path.is_empty() || e.path.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad archive path {:?}", e.path),
            ));
        }
        let ino = i as u32 + 1;
        let perm = e.mode & 0o7777;
        match &e.kind {
            Kind::Dir => header(w, ino, 0o040000 | perm, 2, 0, (0, 0), &e.path)?,
            Kind::File(data) => {
                header(w, ino, 0o100000 | perm, 1, data.len(), (0, 0), &e.path)?;
                w.write_all(data)?;
                pad4(w, data.len())?;
            }
            Kind::Symlink(target) => {
                header(w, ino, 0o120000 | 0o777, 1, target.len(), (0, 0), &e.path)?;
                w.write_all(target.as_bytes())?;
                pad4(w, target.len())?;
            }
            Kind::CharDev(maj, min) => {
                header(w, ino, 0o020000 | perm, 1, 0, (*maj, *min), &e.path)?
            }
        }
    }
    header(w, 0, 0, 1, 0, (0, 0), "TRAILER!!!")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive() -> Vec<u8> {
        let mut out = Vec::new();
        write(
            &mut out,
            &[
                Entry::dir("/etc", 0o755),
                Entry::file(
                    "etc/passwd",
                    0o644,
                    b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
                ),
                Entry::symlink("bin/sh", "busybox"),
                Entry::char_dev("dev/console", 0o600, 5, 1),
            ],
        )
        .expect("writes");
        out
    }

    #[test]
    fn layout_is_aligned_and_deterministic() {
        let a = archive();
        assert_eq!(a, archive(), "same input, same bytes");
        assert_eq!(&a[..6], b"070701");
        assert_eq!(a.len() % 4, 0);
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    /// Round trip through a real cpio reader, when one is installed: the format is what the
    /// kernel's own unpacker expects only if GNU cpio agrees.
    #[test]
    fn gnu_cpio_reads_it_back() {
        let Some(_) = crate::process::which("cpio") else {
            eprintln!("cpio not installed; skipping the cross-check");
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.cpio");
        std::fs::write(&file, archive()).expect("write");
        let out = std::process::Command::new("cpio")
            .args(["-itv", "--quiet", "-F"])
            .arg(&file)
            .output()
            .expect("cpio runs");
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(listing.contains("etc/passwd"), "{listing}");
        assert!(listing.contains("bin/sh -> busybox"), "{listing}");
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with("crw") && l.contains("dev/console")),
            "{listing}"
        );
        let ex = std::process::Command::new("cpio")
            .args(["-i", "--quiet", "-d", "--no-absolute-filenames", "-F"])
            .arg(&file)
            .current_dir(dir.path())
            .output()
            .expect("cpio extracts");
        assert!(ex.status.success() || dir.path().join("etc/passwd").exists());
        assert_eq!(
            std::fs::read(dir.path().join("etc/passwd")).expect("read"),
            b"root:x:0:0:root:/root:/bin/sh\n"
        );
    }
}
