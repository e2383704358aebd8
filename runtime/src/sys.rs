//! Thin wrappers for system calls that libc and nix do not wrap yet. The
//! numbers of syscalls added since Linux 5.3 are the same on every
//! architecture we build for (the unified syscall table).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

const SYS_OPENAT2: libc::c_long = 437;
const SYS_CLOSE_RANGE: libc::c_long = 436;
const SYS_MOUNT_SETATTR: libc::c_long = 442;
const SYS_OPEN_TREE: libc::c_long = 428;
const SYS_MOVE_MOUNT: libc::c_long = 429;

pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

pub const AT_RECURSIVE: libc::c_uint = 0x8000;
pub const OPEN_TREE_CLONE: libc::c_uint = 1;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
pub const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
pub const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR__ATIME: u64 = 0x70;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_IDMAP: u64 = 0x100000;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x200000;

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `struct open_how`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2) with `resolve` flags; O_CLOEXEC is always added.
pub fn openat2(
    dirfd: RawFd,
    path: &CStr,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: u64::from(mode),
        resolve,
    };
    // With `..` in the path, the kernel answers EAGAIN when any rename or
    // mount happened on the system during the lookup: just try again.
    let mut tries = 0;
    let fd = loop {
        // SAFETY: path is NUL-terminated; how is a valid open_how of the size passed.
        let r = check(unsafe {
            libc::syscall(
                SYS_OPENAT2,
                dirfd,
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        });
        match r {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && tries < 1000 => tries += 1,
            other => break other?,
        }
    };
    // SAFETY: the kernel returned a new fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Marks every fd from `first` up close-on-exec with close_range(2)
/// (Linux 5.11+); callers fall back to walking their fds.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range only changes fd flags.
    check(unsafe { libc::syscall(SYS_CLOSE_RANGE, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) })
        .map(drop)
}

/// A new, detached mount of filesystem `fstype` (fsopen, fsconfig, fsmount):
/// `options` are `key` flags or `key=value` strings, `attrs` the
/// MOUNT_ATTR_* of the mount. Nothing is attached anywhere: the caller
/// reads from it through the fd or attaches it with [`move_mount_to_fd`].
pub fn fs_mount(fstype: &CStr, options: &[&str], attrs: u64) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated name; the kernel returns a new fd.
    let fs = check(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: the kernel just returned this fd to us.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as RawFd) };
    let config = |cmd: libc::c_uint, key: Option<&CStr>, value: Option<&CStr>| {
        // SAFETY: fsconfig on our fs context with NUL-terminated strings (or none).
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                cmd,
                key.map_or(std::ptr::null(), CStr::as_ptr),
                value.map_or(std::ptr::null(), CStr::as_ptr),
                0,
            )
        })
    };
    for opt in options {
        let bad = || io::Error::from_raw_os_error(libc::EINVAL);
        match opt.split_once('=') {
            Some((k, v)) => {
                let (k, v) = (
                    std::ffi::CString::new(k).map_err(|_| bad())?,
                    std::ffi::CString::new(v).map_err(|_| bad())?,
                );
                config(FSCONFIG_SET_STRING, Some(&k), Some(&v))?;
            }
            None => {
                let k = std::ffi::CString::new(*opt).map_err(|_| bad())?;
                config(FSCONFIG_SET_FLAG, Some(&k), None)?;
            }
        }
    }
    config(FSCONFIG_CMD_CREATE, None, None)?;
    // SAFETY: fsmount on our configured context.
    let m = check(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            attrs as libc::c_uint,
        )
    })?;
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(m as RawFd) })
}

/// A detached copy of the mount of the object `fd` refers to (a bind mount
/// of exactly that file or directory), ready for [`move_mount_to_fd`].
pub fn clone_mount_of(fd: BorrowedFd, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    open_tree(fd.as_raw_fd(), c"", flags)
}

/// fstatfs(2): the filesystem's magic number.
pub fn fs_type(fd: BorrowedFd) -> io::Result<i64> {
    // SAFETY: statfs is plain data; fstatfs fills it for our fd.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs on a valid fd into a statfs we own.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64)
}

/// Closes every fd except `keep` (and stdio, which the caller lists): what
/// a process inherited from whoever ran berth must not stay open in the
/// container's processes, not even until they exec.
pub fn close_all_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|fd| **fd >= 0)
        .map(|fd| *fd as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = 0u32;
    for fd in keep.iter().copied().chain([u32::MAX]) {
        if fd > from {
            // SAFETY: close_range closes fds this process owns; none is in use
            // by Rust code (the kept ones are excluded).
            let r = check(unsafe { libc::syscall(SYS_CLOSE_RANGE, from, fd - 1, 0) });
            if let Err(e) = r {
                if e.raw_os_error() != Some(libc::ENOSYS) {
                    return Err(e);
                }
                // Before Linux 5.9: close them one by one.
                let open: Vec<u32> = std::fs::read_dir("/proc/self/fd")?
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .filter(|n| *n >= from && *n < fd)
                    .collect();
                for n in open {
                    // SAFETY: as above.
                    unsafe { libc::close(n as RawFd) };
                }
            }
        }
        from = fd.saturating_add(1);
    }
    Ok(())
}

/// `struct mount_attr` for mount_setattr(2).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

pub fn mount_setattr(
    dirfd: RawFd,
    path: &CStr,
    flags: libc::c_uint,
    attr: &MountAttr,
) -> io::Result<()> {
    // SAFETY: attr points to a valid mount_attr of the size passed.
    check(unsafe {
        libc::syscall(
            SYS_MOUNT_SETATTR,
            dirfd,
            path.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

pub fn open_tree(dirfd: RawFd, path: &CStr, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall on a NUL-terminated path.
    let fd = check(unsafe { libc::syscall(SYS_OPEN_TREE, dirfd, path.as_ptr(), flags) })?;
    // SAFETY: the kernel returned a new fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Attaches a detached mount (from open_tree) onto the object `to` refers to.
pub fn move_mount_to_fd(from: BorrowedFd, to: BorrowedFd) -> io::Result<()> {
    // SAFETY: both fds are valid; empty paths with the *_EMPTY_PATH flags.
    check(unsafe {
        libc::syscall(
            SYS_MOVE_MOUNT,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// clone(2) without a new stack, like fork(2) but with namespace `flags`:
/// the child continues here with a copy-on-write copy of the parent.
/// Returns 0 in the child, the child's PID in the parent.
///
/// # Safety
/// The caller must be single-threaded (berth is), so the child's copy of
/// the heap and of every lock is consistent.
pub unsafe fn clone_fork(flags: libc::c_int) -> io::Result<i32> {
    // SAFETY: see the function's contract.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    check(pid).map(|p| p as i32)
}
