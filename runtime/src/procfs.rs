//! The one way berth writes under /proc (the CVE-2025-52881 class).
//!
//! A write to a /proc path follows whatever the path meets: a symlink the
//! image planted, or a mount the config or another process placed over a
//! /proc file, turns a sysctl value or an `oom_score_adj` into a write to a
//! host file such as `/proc/sys/kernel/core_pattern`. So no caller builds a
//! `/proc/...` string to write to. They name the file relative to the
//! procfs root (`sys/net/ipv4/ip_forward`, `self/oom_score_adj`,
//! `1234/uid_map`) and [`ProcRoot`] opens it:
//!
//! - the root is a procfs opened once and verified: fstatfs says procfs and
//!   it is that procfs's root inode. In order of preference it is a private
//!   instance (fsopen/fsmount: detached, so nothing can ever be mounted on
//!   any of its files), a detached copy of `/proc` without what is mounted
//!   over its files (open_tree), or `/proc` itself;
//! - each file is opened beneath it with openat2 and
//!   `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//!   RESOLVE_NO_XDEV`: no symlink is followed and no mount crossed, so an
//!   overmount on the way is an error, never a redirection; the opened file
//!   is checked to be on procfs again;
//! - `self` is resolved here, by reading that procfs's own `self` link, so
//!   it names this process in the pid namespace the procfs belongs to.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result};
use crate::sys;

pub const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const PROC_ROOT_INO: u64 = 1;
const RESOLVE: u64 = sys::RESOLVE_BENEATH
    | sys::RESOLVE_NO_SYMLINKS
    | sys::RESOLVE_NO_MAGICLINKS
    | sys::RESOLVE_NO_XDEV;

/// A verified procfs root, and this process's pid as that procfs names it.
pub struct ProcRoot {
    fd: OwnedFd,
    self_pid: String,
}

impl ProcRoot {
    /// Opens and verifies a procfs root (see the module comment for the order).
    pub fn open() -> Result<ProcRoot> {
        // Tried one after another, not all made up front: an unused
        // detached mount costs its teardown (an RCU grace period) for
        // nothing.
        let candidates: [&dyn Fn() -> io::Result<OwnedFd>; 3] = [
            &|| {
                sys::fs_mount(
                    c"proc",
                    &[],
                    sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC,
                )
            },
            &|| {
                sys::open_tree(
                    libc::AT_FDCWD,
                    c"/proc",
                    sys::OPEN_TREE_CLONE | libc::O_CLOEXEC as u32,
                )
            },
            &|| {
                sys::openat2(
                    libc::AT_FDCWD,
                    c"/proc",
                    libc::O_PATH | libc::O_DIRECTORY,
                    0,
                    sys::RESOLVE_NO_SYMLINKS,
                )
            },
        ];
        let mut last = None;
        for open in candidates {
            let verified = open().and_then(|fd| {
                verify_root(fd.as_fd())
                    .and_then(|()| own_pid(fd.as_fd()))
                    .map(|self_pid| ProcRoot { fd, self_pid })
            });
            match verified {
                Ok(root) => return Ok(root),
                Err(e) => last = Some(e),
            }
        }
        Err(Error::sys(
            "open a verified procfs (none of a private procfs, a copy of /proc or /proc itself is one)",
            last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::ENOENT)),
        ))
    }

    /// `self/...` with this process's pid, as the procfs names it.
    fn resolve(&self, path: &str) -> String {
        match path.strip_prefix("self/") {
            Some(rest) => format!("{}/{rest}", self.self_pid),
            None if path == "self" => self.self_pid.clone(),
            None => path.to_string(),
        }
    }

    /// Opens a file under the procfs root: no symlinks, no mount crossings,
    /// and the result must itself be on procfs.
    pub fn open_file(&self, path: &str, flags: i32) -> io::Result<File> {
        let rel = CString::new(self.resolve(path))
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let fd = sys::openat2(self.fd.as_raw_fd(), &rel, flags, 0, RESOLVE)?;
        if sys::fs_type(fd.as_fd())? != PROC_SUPER_MAGIC {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        Ok(File::from(fd))
    }

    /// Writes `value` to `/proc/<path>` in one write(2), as procfs files
    /// want it. `what` names the config field for the error.
    pub fn write(&self, what: &str, path: &str, value: &str) -> Result<()> {
        let shown = format!("/proc/{path}");
        let mut f = self
            .open_file(path, libc::O_WRONLY)
            .map_err(|e| Error::path(&format!("{what}: open"), &shown, e))?;
        f.write_all(value.as_bytes())
            .map_err(|e| Error::path(&format!("{what}: write {value:?} to"), &shown, e))
    }

    /// Whether `/proc/<path>` exists (for files that moved between kernels).
    pub fn exists(&self, path: &str) -> bool {
        self.open_file(path, libc::O_PATH).is_ok()
    }

    /// Follows the magic link `<dir>/<name>` (`1234/root`): the directory
    /// is opened without links beneath the root, only the last component,
    /// the link itself, is followed.
    pub fn open_link(&self, dir: &str, name: &str, flags: i32) -> io::Result<OwnedFd> {
        let dir = self.open_file(dir, libc::O_PATH | libc::O_DIRECTORY)?;
        let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: openat on our directory fd with a NUL-terminated name.
        let raw = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this fd to us.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    /// This process's `fd` directory, through which [`FdDir::reopen`] opens
    /// one of its fds again. Opened ahead of time: a seccomp filter loaded
    /// in between may refuse openat2 but not openat.
    pub fn fd_dir(&self) -> io::Result<FdDir> {
        self.open_file("self/fd", libc::O_PATH | libc::O_DIRECTORY)
            .map(|f| FdDir(f.into()))
    }
}

/// `/proc/<self>/fd` of a verified procfs.
pub struct FdDir(OwnedFd);

impl FdDir {
    /// Opens this process's fd `fd` again with `flags` (an O_PATH fd of a
    /// fifo, to open it for writing), checking that the reopened file is
    /// the same one.
    pub fn reopen(&self, fd: BorrowedFd, flags: i32) -> io::Result<File> {
        let name = CString::new(fd.as_raw_fd().to_string()).expect("digits");
        // The last component is the magic link itself, which must be
        // followed; the directory holding it was opened without links.
        // SAFETY: openat on our directory fd with a NUL-terminated name.
        let raw =
            unsafe { libc::openat(self.0.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this fd to us.
        let reopened = unsafe { OwnedFd::from_raw_fd(raw) };
        let (a, b) = (stat(fd)?, stat(reopened.as_fd())?);
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        Ok(File::from(reopened))
    }
}

fn stat(fd: BorrowedFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data, filled by fstat for our fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on a valid fd.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// A procfs, and its root directory (not a subdirectory bind-mounted to
/// look like one).
fn verify_root(fd: BorrowedFd) -> io::Result<()> {
    if sys::fs_type(fd)? != PROC_SUPER_MAGIC || stat(fd)?.st_ino != PROC_ROOT_INO {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    Ok(())
}

/// This process's pid in the procfs's pid namespace: its `self` link.
fn own_pid(root: BorrowedFd) -> io::Result<String> {
    let pid = nix::fcntl::readlinkat(root, c"self").map_err(io::Error::from)?;
    let pid = pid.to_string_lossy().into_owned();
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    Ok(pid)
}
