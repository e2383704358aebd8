//! The container's root filesystem (config.md "Root", config-linux.md
//! "Rootfs Mount Propagation"), and resolution of paths inside it.
//!
//! Every path inside the rootfs is opened with openat2(RESOLVE_IN_ROOT), so
//! `..` and symlinks (absolute or relative) in the image resolve as if the
//! rootfs were `/`: a mount destination can never land outside it. Mounts
//! then target the opened fd through /proc/self/fd, as runc does.

use std::ffi::{CStr, CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Context, Error, Result};
use crate::sys;

/// The rootfs directory, opened once; all lookups below resolve inside it.
pub struct Root {
    pub path: PathBuf,
    fd: OwnedFd,
}

/// The components of a path that matter for resolution (no `/` or `.`).
fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(p) => Some(p.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

/// A path inside the rootfs as openat2 takes it: relative, never empty.
fn relative(path: &Path) -> CString {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.as_encoded_bytes()),
            Component::ParentDir => parts.push(b".."),
            _ => {}
        }
    }
    let joined = if parts.is_empty() {
        b".".to_vec()
    } else {
        parts.join(&b'/')
    };
    CString::new(joined).unwrap_or_else(|_| c".".to_owned())
}

/// Whether an fd refers to a directory.
pub fn is_dir(fd: std::os::fd::BorrowedFd) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// The `/proc/self/fd/N` path through which syscalls that take only paths
/// (mount(2)) can act on an fd.
pub fn fd_path(fd: &OwnedFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in an fd path")
}

impl Root {
    pub fn open(path: &Path) -> Result<Root> {
        let c = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::Config(format!("root.path {}: contains NUL", path.display())))?;
        let fd = sys::openat2(libc::AT_FDCWD, &c, libc::O_PATH | libc::O_DIRECTORY, 0, 0)
            .map_err(|e| Error::path("open rootfs", path, e))?;
        Ok(Root {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// Opens `path` (as seen from inside the container).
    pub fn open_in(&self, path: &Path, flags: i32) -> io::Result<OwnedFd> {
        sys::openat2(
            self.fd.as_raw_fd(),
            &relative(path),
            flags,
            0,
            sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS,
        )
    }

    /// mkdir -p inside the rootfs; returns an O_PATH fd of the directory.
    /// A dangling symlink on the way is followed inside the rootfs and its
    /// target created there, as runc's securejoin does. Concurrent creators
    /// of the same directory (two containers sharing a rootfs) are fine.
    pub fn mkdir_all(&self, path: &Path) -> Result<OwnedFd> {
        let flags = libc::O_PATH | libc::O_DIRECTORY;
        match self.open_in(path, flags) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(Error::path("open", self.display(path), e)),
        }
        let mut todo: std::collections::VecDeque<OsString> = components(path).collect();
        let mut done = PathBuf::from("/");
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            let next = done.join(&name);
            match self.open_in(&next, flags) {
                Ok(_) => {
                    done = next;
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(Error::path("open", self.display(&next), e)),
            }
            let dir = self
                .open_in(&done, flags)
                .map_err(|e| Error::path("open", self.display(&done), e))?;
            let cname = CString::new(name.as_encoded_bytes())
                .map_err(|_| Error::Config(format!("path {} contains NUL", path.display())))?;
            // SAFETY: mkdirat on a dir fd we own with a NUL-terminated name.
            if unsafe { libc::mkdirat(dir.as_raw_fd(), cname.as_ptr(), 0o755) } == 0 {
                done = next;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(Error::path("mkdir", self.display(&next), e));
            }
            // Something is there but does not resolve: a dangling symlink
            // (or a concurrent creator, for whom a retry suffices).
            match nix::fcntl::readlinkat(&dir, cname.as_c_str()) {
                Ok(target) => {
                    links += 1;
                    if links > 40 {
                        return Err(Error::path(
                            "mkdir",
                            self.display(path),
                            io::Error::from_raw_os_error(libc::ELOOP),
                        ));
                    }
                    let target = PathBuf::from(target);
                    for (i, c) in components(&target).enumerate() {
                        todo.insert(i, c);
                    }
                    if target.is_absolute() {
                        done = PathBuf::from("/");
                    }
                }
                Err(_) => todo.push_front(name),
            }
        }
        self.open_in(&done, flags)
            .map_err(|e| Error::path("open", self.display(path), e))
    }

    /// Where `path` leads inside the rootfs, without creating anything:
    /// symlinks on the way are followed with the rootfs as `/` (as
    /// [`Root::mkdir_all`] and openat2(RESOLVE_IN_ROOT) follow them), up to
    /// the first component that does not exist; the rest is kept as given.
    /// The result is absolute and free of symlinks where it exists.
    pub fn resolve(&self, path: &Path) -> Result<PathBuf> {
        let mut todo: std::collections::VecDeque<OsString> = components(path).collect();
        let mut done = PathBuf::from("/");
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            if name == ".." {
                done.pop();
                continue;
            }
            let dir = self
                .open_in(&done, libc::O_PATH | libc::O_DIRECTORY)
                .map_err(|e| Error::path("open", self.display(&done), e))?;
            let cname = CString::new(name.as_encoded_bytes())
                .map_err(|_| Error::Config(format!("path {} contains NUL", path.display())))?;
            match nix::fcntl::readlinkat(&dir, cname.as_c_str()) {
                Ok(target) => {
                    links += 1;
                    if links > 40 {
                        return Err(Error::path(
                            "resolve",
                            self.display(path),
                            io::Error::from_raw_os_error(libc::ELOOP),
                        ));
                    }
                    let target = PathBuf::from(target);
                    for (i, c) in components(&target).enumerate() {
                        todo.insert(i, c);
                    }
                    if target.is_absolute() {
                        done = PathBuf::from("/");
                    }
                }
                // Not a symlink: a directory (or file) to go on from.
                Err(nix::Error::EINVAL) => done.push(name),
                Err(nix::Error::ENOENT) => {
                    done.push(name);
                    for rest in todo.drain(..) {
                        if rest == ".." {
                            done.pop();
                        } else {
                            done.push(rest);
                        }
                    }
                }
                Err(e) => return Err(Error::path("resolve", self.display(&done.join(&name)), e)),
            }
        }
        Ok(done)
    }

    /// The directory containing `path` (created if missing) and the last
    /// component's name, for the *at() calls.
    pub fn parent_of(&self, path: &Path) -> Result<(OwnedFd, CString)> {
        let name = path
            .file_name()
            .ok_or_else(|| Error::Config(format!("path {}: has no file name", path.display())))?;
        let parent = path.parent().unwrap_or(Path::new("/"));
        let dir = self.mkdir_all(parent)?;
        let cname = CString::new(name.as_encoded_bytes())
            .map_err(|_| Error::Config(format!("path {} contains NUL", path.display())))?;
        Ok((dir, cname))
    }

    /// Opens `path` (O_PATH), creating an empty regular file (and its parent
    /// directories) if nothing is there: the target of a file bind mount.
    pub fn create_file(&self, path: &Path) -> Result<OwnedFd> {
        match self.open_in(path, libc::O_PATH) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(Error::path("open", self.display(path), e)),
        }
        let (dir, name) = self.parent_of(path)?;
        // SAFETY: openat on our dir fd; the fd is closed right away.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd >= 0 {
            // SAFETY: we own fd.
            unsafe { libc::close(fd) };
        } else {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(Error::path("create", self.display(path), e));
            }
        }
        self.open_in(path, libc::O_PATH)
            .map_err(|e| Error::path("open", self.display(path), e))
    }

    fn display(&self, inner: &Path) -> PathBuf {
        self.path.join(inner.strip_prefix("/").unwrap_or(inner))
    }
}

/// config-linux.md "Rootfs Mount Propagation": in a mount namespace of the
/// container's own, sets the propagation of every mount in it (rslave
/// unless the config says otherwise, so nothing the container mounts
/// reaches the host); then bind-mounts the rootfs onto itself so that it is
/// a mount point pivot_root can use. Without a mount namespace of its own
/// (the host's is shared) only the bind is made: everything else the
/// container mounts goes under it, and `delete` detaches it.
pub fn prepare(rootfs: &Path, propagation: MsFlags, own_mount_ns: bool) -> Result<()> {
    if own_mount_ns {
        mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
            .ctx(|| "make / propagation private to the container")?;
    }
    if own_mount_ns {
        // pivot_root refuses a new root whose parent mount is shared: that
        // is the mount the rootfs is on (its own when it is a mount point,
        // as containerd's overlay is), which the propagation above may not
        // have reached (`private` is not recursive) or made shared
        // (`rshared`). runc makes it private always, and so the rootfs bind
        // below propagates nowhere.
        if let Some(parent) = mount_point_of(rootfs) {
            mount(
                None::<&str>,
                &parent,
                None::<&str>,
                MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .ctx(|| format!("make {} private", parent.display()))?;
        }
    }
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| format!("bind mount rootfs {}", rootfs.display()))?;
    Ok(())
}

/// The unique id of the mount `path` is on (STATX_MNT_ID_UNIQUE, never
/// reused; the plain mount id on kernels before 6.8).
pub fn mount_id(path: &Path) -> Result<u64> {
    const STATX_MNT_ID: u32 = 0x1000;
    const STATX_MNT_ID_UNIQUE: u32 = 0x4000;
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Config(format!("{}: contains NUL", path.display())))?;
    for mask in [STATX_MNT_ID_UNIQUE, STATX_MNT_ID] {
        // SAFETY: statx is plain data, filled by the kernel.
        let mut st: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: statx on a NUL-terminated path into a struct we own.
        let r = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), 0, mask, &mut st) };
        if r != 0 {
            return Err(Error::path("statx", path, io::Error::last_os_error()));
        }
        if st.stx_mask & mask != 0 {
            return Ok(st.stx_mnt_id);
        }
    }
    Err(Error::path(
        "statx mount id of",
        path,
        io::Error::from_raw_os_error(libc::ENOSYS),
    ))
}

/// Detaches whatever is mounted on `path` above the mount `below` (its
/// [`mount_id`] from before): the rootfs bind of a container without a
/// mount namespace of its own, and everything under it.
pub fn detach_above(path: &Path, below: u64) -> Result<()> {
    for _ in 0..64 {
        if mount_id(path)? == below {
            return Ok(());
        }
        umount2(path, MntFlags::MNT_DETACH)
            .ctx(|| format!("detach the container's mounts at {}", path.display()))?;
    }
    Err(Error::Other(format!(
        "{}: mounts keep appearing on the rootfs",
        path.display()
    )))
}

/// The mount point (from mountinfo) that contains `path`.
fn mount_point_of(path: &Path) -> Option<PathBuf> {
    crate::mountinfo::read()
        .ok()?
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|mp| path.starts_with(mp))
        .max_by_key(|mp| mp.as_os_str().len())
}

/// config.md "Root": makes the rootfs `/`. pivot_root(".", ".") stacks the
/// old root on top of the new one; it is then made a slave (so unmounting it
/// does not propagate to the host) and lazily detached.
pub fn pivot_root(rootfs: &Path) -> Result<()> {
    let open_dir =
        |p: &CStr| sys::openat2(libc::AT_FDCWD, p, libc::O_DIRECTORY | libc::O_RDONLY, 0, 0);
    let old = open_dir(c"/").map_err(|e| Error::path("open", "/", e))?;
    let c = CString::new(rootfs.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Config("root.path contains NUL".into()))?;
    let new = open_dir(&c).map_err(|e| Error::path("open", rootfs, e))?;
    nix::unistd::fchdir(&new).ctx(|| format!("chdir {}", rootfs.display()))?;
    nix::unistd::pivot_root(".", ".").ctx(|| format!("pivot_root {}", rootfs.display()))?;
    nix::unistd::fchdir(&old).ctx(|| "chdir to the old root")?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| "make the old root a slave")?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "unmount the old root")?;
    nix::unistd::chdir("/").ctx(|| "chdir /")?;
    Ok(())
}

/// `--no-pivot`: moves the rootfs over `/` and chroots into it, for hosts
/// where pivot_root is impossible (a ramfs root). The host's mounts stay in
/// the container's mount namespace, under the chroot: first every full
/// procfs and sysfs of the host goes (as runc does), or a process in the
/// container could make a user namespace and mount a fresh, unmasked
/// procfs (the kernel allows that only while a fully visible one exists).
pub fn move_root(rootfs: &Path) -> Result<()> {
    hide_host_proc_and_sys(rootfs)?;
    nix::unistd::chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .ctx(|| format!("move {} to /", rootfs.display()))?;
    nix::unistd::chroot(".").ctx(|| "chroot")?;
    nix::unistd::chdir("/").ctx(|| "chdir /")?;
    Ok(())
}

/// Detaches (in the container's mount namespace only: each is made a
/// slave first, so nothing propagates to the host) every procfs and sysfs
/// mounted outside the rootfs; one that cannot be detached is covered
/// with an empty tmpfs.
fn hide_host_proc_and_sys(rootfs: &Path) -> Result<()> {
    let targets: Vec<PathBuf> = crate::mountinfo::read()
        .map_err(|e| Error::path("read", "/proc/self/mountinfo", e))?
        .into_iter()
        .filter(|m| m.root == Path::new("/") && matches!(m.fstype.as_str(), "proc" | "sysfs"))
        .map(|m| m.mount_point)
        .filter(|p| !p.starts_with(rootfs))
        .collect();
    for p in targets {
        match mount(
            None::<&str>,
            &p,
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => {}
            // Gone with a parent detached before it.
            Err(nix::Error::ENOENT) => continue,
            Err(e) => return Err(Error::path("make a host mount a slave", &p, e)),
        }
        match umount2(&p, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::ENOENT) => {}
            Err(nix::Error::EINVAL) | Err(nix::Error::EPERM) => {
                mount(
                    Some("tmpfs"),
                    &p,
                    Some("tmpfs"),
                    MsFlags::empty(),
                    None::<&str>,
                )
                .ctx(|| format!("cover {} with a tmpfs", p.display()))?;
            }
            Err(e) => return Err(Error::path("detach the host's", &p, e)),
        }
    }
    Ok(())
}

/// Applies the configured propagation to the new `/` (after pivot_root).
pub fn set_root_propagation(propagation: MsFlags) -> Result<()> {
    mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
        .ctx(|| "set rootfsPropagation on /")
}

/// config.md "root.readonly": remounts `/` read-only, keeping the flags the
/// kernel may have locked on it (nosuid, nodev, noexec, atime flags).
pub fn make_readonly(path: &str) -> Result<()> {
    crate::mounts::bind_remount(path, MsFlags::MS_RDONLY)
        .ctx(|| format!("remount {path} read-only"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative(Path::new("/")).as_bytes(), b".");
        assert_eq!(relative(Path::new("/dev/null")).as_bytes(), b"dev/null");
        assert_eq!(relative(Path::new("a/../b")).as_bytes(), b"a/../b");
        assert_eq!(relative(Path::new("//x/./y/")).as_bytes(), b"x/y");
    }
}
