//! Layers from overlayfs upper directories (image-spec layer.md,
//! "Representing Changes"): the upper dir of a RUN or COPY step holds
//! exactly what changed, with deletions as 0:0 character devices and
//! replaced directories marked opaque; those become `.wh.` entries.
//!
//! Entries are written sorted by name with numeric owners and no user
//! names, and with `SOURCE_DATE_EPOCH` set every time is clamped to it, so
//! the same changes give the same layer digest.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use crate::inroot::{self, Root};

/// Reads one xattr of `path` (not following symlinks).
fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: valid C strings and a buffer of the given length.
        let r =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Some(buf);
        }
        if io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) && buf.len() < 1 << 16 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return None;
    }
}

/// How an upper directory marks a directory opaque: the kernel's
/// overlayfs as root, in a user namespace (`userxattr`), fuse-overlayfs.
const OPAQUE_XATTRS: [&str; 3] = [
    crate::layer::OVERLAY_OPAQUE_XATTR,
    "user.overlay.opaque",
    "user.fuseoverlayfs.opaque",
];

/// fuse-overlayfs marks an opaque directory with these entries in it
/// (a file, and a whiteout of that name), not with an xattr.
pub const FUSE_OPAQUE_ENTRIES: [&str; 2] = [".wh..wh..opq", ".wh..opq"];

/// Whether the upper directory `path` hides what the layers below hold
/// there, however its driver marked it.
fn is_opaque(path: &Path) -> bool {
    OPAQUE_XATTRS
        .iter()
        .any(|k| get_xattr(path, k).as_deref() == Some(b"y"))
        || FUSE_OPAQUE_ENTRIES
            .iter()
            .any(|e| fs::symlink_metadata(path.join(e)).is_ok())
}

/// The `user.` xattrs the overlay drivers keep for themselves, not the
/// image's.
const OVERLAY_XATTR_PREFIXES: [&str; 3] =
    ["user.overlay.", "user.fuseoverlayfs.", "user.containers."];

/// The xattrs a layer carries: file capabilities and user attributes, not
/// overlayfs' own bookkeeping.
fn layer_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else {
        return Vec::new();
    };
    let mut names = vec![0u8; 4096];
    // SAFETY: valid C string and buffer.
    let n = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    names
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .filter_map(|n| std::str::from_utf8(n).ok())
        .filter(|n| {
            (n.starts_with("user.") && !OVERLAY_XATTR_PREFIXES.iter().any(|p| n.starts_with(p)))
                || *n == "security.capability"
        })
        .filter_map(|n| get_xattr(path, n).map(|v| (n.to_string(), v)))
        .collect()
}

pub struct DiffOptions {
    /// Paths (relative, as in the layer) to leave out: mount points the
    /// runtime created that the image did not have.
    pub exclude: HashSet<PathBuf>,
    /// Clamp every time to this (SOURCE_DATE_EPOCH).
    pub epoch: Option<i64>,
}

struct Writer<W: Write> {
    tar: tar::Builder<W>,
    /// The tree being archived. Every entry is reached through it, never
    /// by a path from `/`: a running container (`commit`, `export`) may
    /// swap a directory for a symlink to the host meanwhile.
    root: Root,
    epoch: Option<i64>,
    /// (dev, ino) of regular files already written, for hard links.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> Writer<W> {
    fn header(&self, m: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(m.mode() & 0o7777);
        h.set_uid(m.uid().into());
        h.set_gid(m.gid().into());
        let mtime = m.mtime().max(0);
        h.set_mtime(self.epoch.map_or(mtime, |e| mtime.min(e)) as u64);
        h.set_size(0);
        h
    }

    fn pax(&mut self, path: &Path) -> io::Result<()> {
        let xattrs = layer_xattrs(path);
        if xattrs.is_empty() {
            return Ok(());
        }
        let keys: Vec<(String, Vec<u8>)> = xattrs
            .into_iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v))
            .collect();
        self.tar
            .append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    }

    fn entry(&mut self, rel: &Path) -> io::Result<fs::Metadata> {
        let (_dir, path) = inroot::entry_path(&self.root, rel)?;
        let m = fs::symlink_metadata(&path)?;
        let ft = m.file_type();
        if ft.is_char_device() && m.rdev() == 0 {
            let name = format!(
                ".wh.{}",
                rel.file_name().unwrap_or_default().to_string_lossy()
            );
            let mut h = self.header(&m, tar::EntryType::Regular);
            h.set_mode(0o644);
            self.tar
                .append_data(&mut h, rel.with_file_name(name), io::empty())?;
            return Ok(m);
        }
        self.pax(&path)?;
        if ft.is_dir() {
            let mut h = self.header(&m, tar::EntryType::Directory);
            self.tar.append_data(&mut h, rel, io::empty())?;
            if is_opaque(&path) {
                let mut h = self.header(&m, tar::EntryType::Regular);
                h.set_mode(0o644);
                self.tar
                    .append_data(&mut h, rel.join(".wh..wh..opq"), io::empty())?;
            }
        } else if ft.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = self.links.get(&(m.dev(), m.ino())) {
                    let mut h = self.header(&m, tar::EntryType::Link);
                    let first = first.clone();
                    self.tar.append_link(&mut h, rel, first)?;
                    return Ok(m);
                }
                self.links.insert((m.dev(), m.ino()), rel.to_path_buf());
            }
            let f = inroot::open_unchanged(&path, &m, false)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", rel.display())))?;
            let mut h = self.header(&m, tar::EntryType::Regular);
            h.set_size(m.len());
            self.tar.append_data(&mut h, rel, f.take(m.len()))?;
        } else if ft.is_symlink() {
            let mut h = self.header(&m, tar::EntryType::Symlink);
            let target = fs::read_link(&path)?;
            self.tar.append_link(&mut h, rel, target)?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_fifo() {
                tar::EntryType::Fifo
            } else if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            };
            let mut h = self.header(&m, kind);
            if !ft.is_fifo() {
                h.set_device_major(libc::major(m.rdev()))?;
                h.set_device_minor(libc::minor(m.rdev()))?;
            }
            self.tar.append_data(&mut h, rel, io::empty())?;
        }
        // Sockets are not archivable; tar skips them too.
        Ok(m)
    }

    fn walk(&mut self, rel: &Path, opts: &DiffOptions) -> io::Result<()> {
        let dir = self.root.open_at(
            rel,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
        )?;
        let mut names: Vec<_> = fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let child = rel.join(&name);
            if opts.exclude.contains(&child) || FUSE_OPAQUE_ENTRIES.iter().any(|e| name == *e) {
                continue;
            }
            if self.entry(&child)?.is_dir() {
                self.walk(&child, opts)?;
            }
        }
        Ok(())
    }
}

/// Writes the changes in `upper` as an uncompressed layer tar to `out`.
pub fn write_layer(upper: &Path, out: impl Write, opts: &DiffOptions) -> io::Result<()> {
    let mut w = Writer {
        tar: tar::Builder::new(out),
        root: Root::open(upper)?,
        epoch: opts.epoch,
        links: HashMap::new(),
    };
    w.tar.mode(tar::HeaderMode::Complete);
    w.walk(Path::new(""), opts)?;
    w.tar.finish()
}

/// `SOURCE_DATE_EPOCH`, when set.
pub fn source_date_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
}

/// Mount points a runtime creates in a rootfs (for its own mounts and the
/// bind-mounted /etc files): left out of a layer when the image lacked them.
pub const RUNTIME_STUBS: &[&str] = &[
    "proc",
    "sys",
    "dev",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
];

/// Stores the changes in `upper` as a layer blob (through a scratch tar in
/// the store, so big layers do not sit in memory).
pub fn store_diff(
    store: &crate::store::Store,
    upper: &Path,
    exclude: HashSet<PathBuf>,
    compression: crate::image::Compression,
) -> crate::error::Result<(crate::image::Descriptor, crate::digest::Digest)> {
    use crate::error::Context;
    let tmp = store.tmp_dir().join(crate::store::unique_name("diff-"));
    let result = (|| {
        let f = fs::File::create(&tmp).context(|| format!("create {}", tmp.display()))?;
        let mut w = io::BufWriter::new(f);
        write_layer(
            upper,
            &mut w,
            &DiffOptions {
                exclude,
                epoch: source_date_epoch(),
            },
        )
        .context(|| format!("diff {}", upper.display()))?;
        w.flush().context(|| format!("write {}", tmp.display()))?;
        drop(w);
        let f = fs::File::open(&tmp).context(|| format!("open {}", tmp.display()))?;
        crate::import::store_layer_with(store, io::BufReader::new(f), compression)
    })();
    let _ = fs::remove_file(&tmp);
    result
}
