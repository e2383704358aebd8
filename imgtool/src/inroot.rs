//! Path resolution that cannot leave a root directory: every lookup goes
//! through openat2(RESOLVE_IN_ROOT), so `..` and symlinks (absolute or
//! relative) inside the tree are resolved as if the root were `/`.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};

/// An open directory that paths are resolved inside of.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// Cleans a path from an archive or the command line lexically: drops `/`
/// prefixes and `.`, lets `..` stop at the root. The result is relative and
/// empty for the root itself.
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// openat2 can fail with EAGAIN when a rename raced the lookup.
fn openat2_retry(dir: BorrowedFd<'_>, path: &Path, h: OpenHow) -> nix::Result<OwnedFd> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    for _ in 0..64 {
        match openat2(dir, path, h) {
            Err(Errno::EAGAIN) => continue,
            r => return r,
        }
    }
    Err(Errno::EAGAIN)
}

impl Root {
    pub fn open(path: &Path) -> nix::Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `rel` inside the root with `flags`.
    pub fn open_at(&self, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        openat2_retry(self.fd.as_fd(), rel, how(flags))
    }

    /// Opens `rel` inside the root, creating it with `mode` (O_EXCL).
    pub fn create_at(&self, rel: &Path, flags: OFlag, mode: u32) -> nix::Result<OwnedFd> {
        let h = how(flags | OFlag::O_CREAT | OFlag::O_EXCL).mode(Mode::from_bits_truncate(mode));
        openat2_retry(self.fd.as_fd(), rel, h)
    }

    /// An O_PATH handle on directory `rel`, creating missing directories on
    /// the way (mode 0755, root-owned, as tar does for implied parents).
    pub fn mkdir_all(&self, rel: &Path) -> nix::Result<OwnedFd> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        match self.open_at(rel, flags) {
            Err(Errno::ENOENT) => {}
            r => return r,
        }
        let mut dir = self.open_at(Path::new(""), flags)?;
        let mut so_far = PathBuf::new();
        for c in rel.components() {
            let Component::Normal(name) = c else { continue };
            so_far.push(name);
            dir = match self.open_at(&so_far, flags) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    match mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e),
                    }
                    // Resolve again from the root: what is there now (even a
                    // symlink someone created meanwhile) stays inside it.
                    self.open_at(&so_far, flags)?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(dir)
    }

    /// The parent directory of `rel` (created if missing) and its last
    /// component. `None` for the root itself.
    pub fn parent(&self, rel: &Path) -> nix::Result<Option<(OwnedFd, CString)>> {
        let Some(name) = rel.file_name() else {
            return Ok(None);
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        let fd = self.mkdir_all(parent)?;
        Ok(Some((fd, cstring(name))))
    }
}

pub fn cstring(s: &OsStr) -> CString {
    CString::new(s.as_bytes()).unwrap_or_else(|_| CString::new("invalid").unwrap())
}

/// `/proc/self/fd/N/name`: a path the *xattr and utimes calls can use to
/// reach `name` in an O_PATH directory without following a final symlink.
pub fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> CString {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.as_bytes());
    CString::new(p).unwrap_or_else(|_| CString::new("/nonexistent").unwrap())
}

/// `rel` inside `root` as a path that lstat, readlink and the l*xattr
/// calls can use: its parent is opened inside the root (the returned fd
/// must outlive the path) and the final component is not followed. For
/// trees another process may change meanwhile, such as a running
/// container's.
pub fn entry_path(root: &Root, rel: &Path) -> nix::Result<(OwnedFd, PathBuf)> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let dir = root.open_at(parent, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    let name = rel.file_name().unwrap_or_default();
    let path = if name.is_empty() {
        PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
    } else {
        PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
    };
    Ok((dir, path))
}

/// Opens the regular file at `path` for reading, as `seen` (its lstat)
/// described it: an error if it has been replaced since, by a symlink
/// (the final component is not followed unless `follow`) or by another
/// file. For trees another process may change meanwhile.
pub fn open_unchanged(
    path: &Path,
    seen: &std::fs::Metadata,
    follow: bool,
) -> std::io::Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nofollow | libc::O_NONBLOCK)
        .open(path)?;
    let now = f.metadata()?;
    if !now.is_file() || (now.dev(), now.ino()) != (seen.dev(), seen.ino()) {
        return Err(std::io::Error::other("changed while being read"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_keeps_paths_inside() {
        assert_eq!(
            clean(Path::new("../../etc/passwd")),
            Path::new("etc/passwd")
        );
        assert_eq!(clean(Path::new("/a/./b/../c")), Path::new("a/c"));
        assert_eq!(clean(Path::new("./")), Path::new(""));
        assert_eq!(clean(Path::new("a/../../..")), Path::new(""));
    }
}
