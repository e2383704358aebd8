//! Unpacking layer archives (image-spec layer.md, "Applying Changesets").
//!
//! Every entry is created relative to an `inroot::Root`: the entry's own path
//! is cleaned lexically (`..` cannot climb out), its parents are resolved
//! with RESOLVE_IN_ROOT (symlinks in the tree point back inside), and the
//! final component is created with O_EXCL/O_NOFOLLOW semantics, so no entry
//! of a crafted layer can write outside the directory it is unpacked into.
//!
//! Whiteouts become what overlayfs understands when each layer gets its own
//! directory ([`Mode::Overlay`]): `.wh.NAME` a 0:0 character device, and
//! `.wh..wh..opq` the `trusted.overlay.opaque` xattr. When layers are applied
//! onto one directory ([`Mode::Flatten`]) they delete directly.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fchmod, mknodat, Mode as Perm, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::inroot::{self, Root};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// overlayfs' opaque mark as root (`rootless::opaque_xattr` says which).
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One directory per layer, whiteouts kept in overlayfs form.
    Overlay,
    /// Apply onto an existing tree, performing the deletions.
    Flatten,
}

/// Why unpacking failed: the archive stream itself (decode errors, which
/// the caller must tell apart from a wrong digest) or one entry.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading archive: {0}")]
    Stream(#[source] io::Error),
    #[error("{path}: {detail}")]
    Entry { path: String, detail: String },
}

fn entry_err(path: &Path, detail: impl std::fmt::Display) -> UnpackError {
    UnpackError::Entry {
        path: path.display().to_string(),
        detail: detail.to_string(),
    }
}

/// Owner, mode, time and xattrs to give a created entry.
pub(crate) struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: TimeSpec,
    pub xattrs: Vec<(CString, Vec<u8>)>,
}

/// Unpacks the tar stream `archive` into `dest`.
pub fn unpack(archive: impl Read, dest: &Path, mode: Mode) -> Result<(), UnpackError> {
    let root = Root::open(dest).map_err(|e| entry_err(dest, e))?;
    let mut ar = tar::Archive::new(archive);
    let mut written: HashSet<PathBuf> = HashSet::new();
    // Directory times are set last: creating entries inside changes them.
    let mut dir_times: Vec<(PathBuf, TimeSpec)> = Vec::new();
    for entry in ar.entries().map_err(UnpackError::Stream)? {
        let mut entry = entry.map_err(UnpackError::Stream)?;
        let raw_path = entry.path().map_err(UnpackError::Stream)?.into_owned();
        let rel = inroot::clean(&raw_path);
        let meta = read_meta(&mut entry, mode).map_err(|e| entry_err(&raw_path, e))?;
        let kind = entry.header().entry_type();

        let name = rel.file_name().map(|n| n.to_os_string());
        if let Some(name) = name.as_deref().and_then(OsStr::to_str) {
            if name == OPAQUE_MARKER {
                let dir = rel.parent().unwrap_or(Path::new(""));
                opaque(&root, dir, mode, &written).map_err(|e| entry_err(&raw_path, e))?;
                continue;
            }
            if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                let target = rel.with_file_name(hidden);
                whiteout(&root, &target, mode).map_err(|e| entry_err(&raw_path, e))?;
                continue;
            }
        }

        let result = match kind {
            tar::EntryType::Directory => {
                make_dir(&root, &rel, &meta).map(|()| dir_times.push((rel.clone(), meta.mtime)))
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                make_file(&root, &rel, &meta, &mut entry)
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Stream)?
                    .ok_or_else(|| entry_err(&raw_path, "symlink without a target"))?;
                make_symlink(&root, &rel, &target, &meta)
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Stream)?
                    .ok_or_else(|| entry_err(&raw_path, "hard link without a target"))?;
                make_hardlink(&root, &rel, &inroot::clean(&target))
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (major, minor) = (
                    entry.header().device_major().ok().flatten().unwrap_or(0),
                    entry.header().device_minor().ok().flatten().unwrap_or(0),
                );
                let sflag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                if sflag != SFlag::S_IFIFO && crate::rootless::active() {
                    // A user namespace cannot make device nodes; a rootless
                    // container gets the host's by bind mount anyway (as
                    // containers/storage skips them).
                    tracing::debug!("rootless: device node {} not made", rel.display());
                    Ok(())
                } else {
                    make_node(&root, &rel, sflag, libc::makedev(major, minor), &meta)
                }
            }
            // Metadata-only records (pax globals, GNU long names) are folded
            // into the entries they describe by the tar reader.
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => Ok(()),
            other => Err(io::Error::other(format!(
                "unsupported entry type {other:?}"
            ))),
        };
        result.map_err(|e| entry_err(&raw_path, e))?;
        if mode == Mode::Flatten {
            written.insert(rel);
        }
    }
    for (rel, mtime) in dir_times.iter().rev() {
        if let Ok(Some((dir, name))) = root.parent(rel) {
            let _ = set_times(dir.as_fd(), &name, *mtime);
        } else if rel.as_os_str().is_empty() {
            let _ = set_times(root.fd(), &CString::new(".").unwrap(), *mtime);
        }
    }
    // Padding and end-of-archive blocks belong to the stream the diff ID is
    // computed over: read them too.
    io::copy(ar.into_inner().by_ref(), &mut io::sink()).map_err(UnpackError::Stream)?;
    Ok(())
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, mode: Mode) -> io::Result<Meta> {
    let h = entry.header();
    // Empty numeric fields read as 0, as Go's archive/tar (which wrote most
    // layers in the wild) reads them.
    let mut m = Meta {
        mode: h.mode().unwrap_or(0o644) & 0o7777,
        uid: h.uid().unwrap_or(0) as u32,
        gid: h.gid().unwrap_or(0) as u32,
        mtime: TimeSpec::new(h.mtime().unwrap_or(0) as i64, 0),
        xattrs: Vec::new(),
    };
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                // A layer must not be able to steer overlayfs itself.
                // overlayfs reads its own attributes from `user.` too when
                // mounted rootless (`userxattr`).
                if mode == Mode::Overlay
                    && (name.starts_with("trusted.overlay.") || name.starts_with("user.overlay."))
                {
                    tracing::warn!("ignoring xattr {name} in layer");
                    continue;
                }
                if let Ok(c) = CString::new(name) {
                    m.xattrs.push((c, value.to_vec()));
                }
            } else {
                let text = std::str::from_utf8(value).unwrap_or("");
                match key {
                    "uid" => m.uid = text.parse().unwrap_or(m.uid),
                    "gid" => m.gid = text.parse().unwrap_or(m.gid),
                    "mtime" => {
                        let (s, frac) = text.split_once('.').unwrap_or((text, ""));
                        if let Ok(secs) = s.parse::<i64>() {
                            let digits: String = frac.chars().take(9).collect();
                            let nanos = format!("{digits:0<9}").parse::<i64>().unwrap_or(0);
                            m.mtime = TimeSpec::new(secs, nanos);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(m)
}

fn io_err(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// The parent of `rel`, created as needed; a parent that resolves through a
/// symlink to a place missing inside the root is refused, not created.
fn parent(root: &Root, rel: &Path) -> io::Result<Option<(OwnedFd, CString)>> {
    root.parent(rel).map_err(|e| {
        if e == Errno::ENOENT {
            io::Error::other("parent directory is a dangling symlink (resolved inside the root)")
        } else {
            io_err(e)
        }
    })
}

/// Removes whatever is at `name` in `dir` unless it is a directory and
/// `keep_dir` is set. Returns whether a directory was kept.
fn clear(dir: &OwnedFd, name: &CString, keep_dir: bool) -> io::Result<bool> {
    let st =
        match nix::sys::stat::fstatat(dir.as_fd(), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(io_err(e)),
        };
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        if keep_dir {
            return Ok(true);
        }
        let p = inroot::proc_path(dir.as_fd(), OsStr::from_bytes(name.as_bytes()));
        std::fs::remove_dir_all(OsStr::from_bytes(p.as_bytes()))?;
    } else {
        unlinkat(dir.as_fd(), name.as_c_str(), UnlinkatFlags::NoRemoveDir).map_err(io_err)?;
    }
    Ok(false)
}

/// The entry's owner as this store keeps it (see `rootless::owner`).
fn ids(m: &Meta) -> (Option<Uid>, Option<Gid>) {
    let (uid, gid) = crate::rootless::owner(m.uid, m.gid);
    (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
}

fn set_owner(dir: &OwnedFd, name: &CString, m: &Meta) -> io::Result<()> {
    let (uid, gid) = ids(m);
    fchownat(
        dir.as_fd(),
        name.as_c_str(),
        uid,
        gid,
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(io_err)
}

/// Owner first (chown clears set-id bits), then mode. chmod cannot refuse
/// to follow a symlink, and the tree may be a running container's (`cp`)
/// that swaps `name` for a link to a host file: the mode is set through an
/// O_PATH handle on the entry itself, refused if that is a symlink.
fn set_owner_and_mode(dir: &OwnedFd, name: &CString, m: &Meta) -> io::Result<()> {
    set_owner(dir, name, m)?;
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        name.as_c_str(),
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Perm::empty(),
    )
    .map_err(io_err)?;
    let st = nix::sys::stat::fstat(&fd).map_err(io_err)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
        return Err(io::Error::other(format!(
            "{}: replaced by a symlink while being written",
            name.to_string_lossy()
        )));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        std::fs::Permissions::from_mode(Perm::from_bits_truncate(m.mode).bits()),
    )
}

fn set_xattrs(dir: &OwnedFd, name: &CString, m: &Meta) -> io::Result<()> {
    if m.xattrs.is_empty() {
        return Ok(());
    }
    let p = inroot::proc_path(dir.as_fd(), OsStr::from_bytes(name.as_bytes()));
    for (k, v) in &m.xattrs {
        // SAFETY: valid C strings and a buffer of the given length.
        let r = unsafe { libc::lsetxattr(p.as_ptr(), k.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
        if r != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("set xattr {}: {e}", k.to_string_lossy()),
            ));
        }
    }
    Ok(())
}

fn set_times(dir: impl AsFd, name: &CString, t: TimeSpec) -> io::Result<()> {
    nix::sys::stat::utimensat(
        dir.as_fd(),
        name.as_c_str(),
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io_err)
}

pub(crate) fn make_dir(root: &Root, rel: &Path, m: &Meta) -> io::Result<()> {
    let Some((dir, name)) = parent(root, rel)? else {
        // The archive's "./": the layer root's own owner and mode.
        let fd = root
            .open_at(Path::new(""), OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(io_err)?;
        let (uid, gid) = ids(m);
        nix::unistd::fchown(&fd, uid, gid).map_err(io_err)?;
        fchmod(&fd, Perm::from_bits_truncate(m.mode)).map_err(io_err)?;
        return Ok(());
    };
    if !clear(&dir, &name, true)? {
        nix::sys::stat::mkdirat(
            dir.as_fd(),
            name.as_c_str(),
            Perm::from_bits_truncate(0o700),
        )
        .map_err(io_err)?;
    }
    set_owner_and_mode(&dir, &name, m)?;
    set_xattrs(&dir, &name, m)
}

pub(crate) fn make_file(root: &Root, rel: &Path, m: &Meta, data: &mut impl Read) -> io::Result<()> {
    let Some((dir, name)) = parent(root, rel)? else {
        return Err(io::Error::other("a regular file cannot replace the root"));
    };
    clear(&dir, &name, false)?;
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        name.as_c_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Perm::from_bits_truncate(0o600),
    )
    .map_err(io_err)?;
    let mut file = std::fs::File::from(fd);
    io::copy(data, &mut file)?;
    // chown clears set-id bits, so ownership goes first.
    let (uid, gid) = ids(m);
    nix::unistd::fchown(&file, uid, gid).map_err(io_err)?;
    fchmod(&file, Perm::from_bits_truncate(m.mode)).map_err(io_err)?;
    set_xattrs(&dir, &name, m)?;
    nix::sys::stat::futimens(&file, &m.mtime, &m.mtime).map_err(io_err)
}

pub(crate) fn make_symlink(root: &Root, rel: &Path, target: &Path, m: &Meta) -> io::Result<()> {
    let Some((dir, name)) = parent(root, rel)? else {
        return Err(io::Error::other("a symlink cannot replace the root"));
    };
    clear(&dir, &name, false)?;
    // The target is stored as written: it is only ever followed through
    // RESOLVE_IN_ROOT lookups or inside the container's own root.
    symlinkat(target, dir.as_fd(), name.as_c_str()).map_err(io_err)?;
    set_owner(&dir, &name, m)?;
    set_xattrs(&dir, &name, m)?;
    set_times(dir.as_fd(), &name, m.mtime)
}

fn make_hardlink(root: &Root, rel: &Path, target: &Path) -> io::Result<()> {
    let Some((dir, name)) = parent(root, rel)? else {
        return Err(io::Error::other("a hard link cannot replace the root"));
    };
    // Resolve the target inside the root without following a final symlink
    // (a hard link to a symlink links the symlink itself).
    let src = root
        .open_at(target, OFlag::O_PATH | OFlag::O_NOFOLLOW)
        .map_err(|e| io::Error::other(format!("hard link target {}: {e}", target.display())))?;
    let st = nix::sys::stat::fstat(&src).map_err(io_err)?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return Err(io::Error::other(format!(
            "hard link target {} is a directory",
            target.display()
        )));
    }
    clear(&dir, &name, false)?;
    linkat(
        src.as_fd(),
        c"",
        dir.as_fd(),
        name.as_c_str(),
        AtFlags::AT_EMPTY_PATH,
    )
    .map_err(io_err)
}

fn make_node(root: &Root, rel: &Path, kind: SFlag, dev: libc::dev_t, m: &Meta) -> io::Result<()> {
    let Some((dir, name)) = parent(root, rel)? else {
        return Err(io::Error::other("a device cannot replace the root"));
    };
    clear(&dir, &name, false)?;
    mknodat(
        dir.as_fd(),
        name.as_c_str(),
        kind,
        Perm::from_bits_truncate(m.mode),
        dev,
    )
    .map_err(io_err)?;
    set_owner_and_mode(&dir, &name, m)?;
    set_xattrs(&dir, &name, m)?;
    set_times(dir.as_fd(), &name, m.mtime)
}

/// `.wh.NAME`: hide `target` from the layers below.
fn whiteout(root: &Root, target: &Path, mode: Mode) -> io::Result<()> {
    let Some((dir, name)) = parent(root, target)? else {
        return Err(io::Error::other("whiteout of the root"));
    };
    clear(&dir, &name, false)?;
    if mode == Mode::Overlay {
        mknodat(
            dir.as_fd(),
            name.as_c_str(),
            SFlag::S_IFCHR,
            Perm::empty(),
            libc::makedev(0, 0),
        )
        .map_err(io_err)?;
    }
    Ok(())
}

/// `.wh..wh..opq`: hide everything below `dir` from lower layers.
fn opaque(root: &Root, dir: &Path, mode: Mode, written: &HashSet<PathBuf>) -> io::Result<()> {
    let fd = root.mkdir_all(dir).map_err(io_err)?;
    let dirpath = inroot::proc_path(fd.as_fd(), OsStr::new(""));
    let dirpath = Path::new(OsStr::from_bytes(dirpath.as_bytes()));
    match mode {
        Mode::Overlay => {
            let c = inroot::cstring(dirpath.as_os_str());
            let k = CString::new(crate::rootless::opaque_xattr()).unwrap();
            // SAFETY: valid C strings and a one-byte value.
            if unsafe { libc::setxattr(c.as_ptr(), k.as_ptr(), b"y".as_ptr().cast(), 1, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Mode::Flatten => {
            // Entries this layer already put there stay; older ones go.
            for e in std::fs::read_dir(dirpath)?.flatten() {
                if !written.contains(&dir.join(e.file_name())) {
                    let name = inroot::cstring(&e.file_name());
                    let parent = fd.try_clone()?;
                    clear(&parent, &name, false)?;
                }
            }
        }
    }
    Ok(())
}
