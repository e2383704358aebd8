//! COPY and ADD: sources from the build context (minus `.dockerignore`), a
//! stage or an image, copied into a stage's mounted rootfs with docker's
//! rules for what the destination means.

use std::io::{BufReader, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::SFlag;
use nix::sys::time::TimeSpec;

use super::dockerignore::DockerIgnore;
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::image::decompress;
use crate::image::Compression;
use crate::inroot::{self, Root};
use crate::layer::{self, Meta, Mode};

/// Where COPY reads from.
pub struct Source {
    pub root: PathBuf,
    /// `.dockerignore` of the build context; none for stages and images.
    pub ignore: Option<DockerIgnore>,
    /// How to name the source in errors ("build context", "stage build").
    pub label: String,
}

/// Go's filepath.Match for one path component.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // Returns whether `c` matches the class starting after '[' and the
        // index after the closing ']'.
        let mut i = 0;
        let negate = matches!(p.first(), Some('^') | Some('!'));
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        while i < p.len() {
            if p[i] == ']' && !first {
                return Some((matched != negate, i + 1));
            }
            first = false;
            let mut lo = p[i];
            if lo == '\\' && i + 1 < p.len() {
                i += 1;
                lo = p[i];
            }
            let mut hi = lo;
            if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                hi = p[i + 2];
                i += 2;
            }
            if lo <= c && c <= hi {
                matched = true;
            }
            i += 1;
        }
        None
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => match (n.first(), class(&p[1..], *n.first().unwrap_or(&'\0'))) {
                (Some(_), Some((true, end))) => go(&p[1 + end..], &n[1..]),
                _ => false,
            },
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl Source {
    /// `rel` opened for reading inside the root (symlinks resolved there
    /// too), if it is a regular file.
    pub fn open_file(&self, rel: &Path) -> Option<std::fs::File> {
        let root = Root::open(&self.root).ok()?;
        let flags = OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let f = std::fs::File::from(root.open_at(rel, flags).ok()?);
        f.metadata().ok()?.is_file().then_some(f)
    }

    fn included(&self, rel: &Path) -> bool {
        match &self.ignore {
            Some(i) => rel.as_os_str().is_empty() || !i.is_excluded(&rel.to_string_lossy()),
            None => true,
        }
    }

    /// The paths a COPY source names, relative to the root: globs expanded
    /// per component, `..` kept inside, excluded paths dropped.
    pub fn resolve(&self, pattern: &str) -> Result<Vec<PathBuf>> {
        let clean = inroot::clean(Path::new(pattern));
        let mut found = vec![PathBuf::new()];
        for comp in clean.components() {
            let Component::Normal(c) = comp else { continue };
            let c = c.to_string_lossy();
            let mut next = Vec::new();
            for base in &found {
                if has_wildcard(&c) {
                    let Some(rd) = self.read_dir(base) else {
                        continue;
                    };
                    let mut names: Vec<String> = rd
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    next.extend(
                        names
                            .into_iter()
                            .filter(|n| glob_match(&c, n))
                            .map(|n| base.join(n)),
                    );
                } else {
                    next.push(base.join(c.as_ref()));
                }
            }
            found = next;
        }
        let found: Vec<PathBuf> = found
            .into_iter()
            .filter(|p| self.open_path(p).is_ok() && self.included(p))
            .collect();
        if found.is_empty() {
            return Err(Error::NotFound(format!(
                "{pattern}: no such file or directory in the {}{}",
                self.label,
                if self.ignore.is_some() {
                    " (or excluded by .dockerignore)"
                } else {
                    ""
                }
            )));
        }
        Ok(found)
    }

    /// A digest of everything below `rels` that COPY would copy: names,
    /// modes, owners, link targets and contents. The build cache key of
    /// COPY and ADD.
    pub fn digest(&self, rels: &[PathBuf]) -> Result<Digest> {
        let mut h = Hasher::new(crate::digest::Algorithm::Sha256);
        for rel in rels {
            self.hash_tree(rel, &mut h)?;
        }
        Ok(h.finish())
    }

    /// `rel` itself (not what it links to), found inside the root: every
    /// look at a source goes through here, so a symlink in a stage or the
    /// context never leads to the host's files.
    fn open_path(&self, rel: &Path) -> Result<OwnedFd> {
        Root::open(&self.root)
            .and_then(|r| r.open_at(rel, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC))
            .map_err(|e| Error::Path(self.root.join(rel), e.to_string()))
    }

    /// What `.dockerignore` leaves out below `rel` (whole excluded
    /// subtrees by their top), for mounts of a context directory.
    pub fn excluded_below(&self, rel: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if self.ignore.is_some() {
            self.collect_excluded(rel, &mut out);
        }
        out
    }

    fn collect_excluded(&self, rel: &Path, out: &mut Vec<PathBuf>) {
        let Some(rd) = self.read_dir(rel) else { return };
        let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            let child = rel.join(n);
            let descend = self
                .ignore
                .as_ref()
                .is_some_and(|i| i.must_descend(&child.to_string_lossy()));
            if !self.included(&child) && !descend {
                out.push(child);
            } else if self
                .open_path(&child)
                .and_then(|fd| nix::sys::stat::fstat(&fd).map_err(|e| Error::Other(e.to_string())))
                .is_ok_and(|st| {
                    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
                })
            {
                self.collect_excluded(&child, out);
            }
        }
    }

    fn read_dir(&self, rel: &Path) -> Option<std::fs::ReadDir> {
        let fd = self.open_path(rel).ok()?;
        std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()
    }

    fn hash_tree(&self, rel: &Path, h: &mut Hasher) -> Result<()> {
        let path = self.root.join(rel);
        let fail = |e: &dyn std::fmt::Display| Error::Path(path.clone(), e.to_string());
        let fd = self.open_path(rel)?;
        // Reopened through the handle: the same inode, whatever the path
        // now names.
        let handle = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        let st = nix::sys::stat::fstat(&fd).map_err(|e| fail(&e))?;
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update(format!("\0{:o}\0{}\0{}\0", st.st_mode, st.st_uid, st.st_gid).as_bytes());
        match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFLNK => {
                // The O_PATH handle is the link itself: read it, not a path.
                let target = nix::fcntl::readlinkat(&fd, "").map_err(|e| fail(&e))?;
                h.update(target.as_encoded_bytes());
            }
            SFlag::S_IFREG => {
                let mut f = std::fs::File::open(&handle).map_err(|e| fail(&e))?;
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = f.read(&mut buf).map_err(|e| fail(&e))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
            SFlag::S_IFDIR => {
                let mut names: Vec<_> = std::fs::read_dir(&handle)
                    .map_err(|e| fail(&e))?
                    .flatten()
                    .map(|e| e.file_name())
                    .collect();
                names.sort();
                for n in names {
                    let child = rel.join(n);
                    if self.included(&child)
                        || self
                            .ignore
                            .as_ref()
                            .is_some_and(|i| i.must_descend(&child.to_string_lossy()))
                    {
                        self.hash_tree(&child, h)?;
                    }
                }
            }
            // Devices and fifos: their numbers are in st_mode/st_rdev.
            _ => h.update(format!("{}", st.st_rdev).as_bytes()),
        }
        h.update(b"\n");
        Ok(())
    }
}

/// Owner and mode overrides of `--chown` / `--chmod`.
pub struct CopyOptions {
    pub uid: u32,
    pub gid: u32,
    pub chmod: Option<u32>,
    /// Keep each entry's owner instead (filling a volume from an image).
    pub keep_owner: bool,
}

fn meta_of(m: &std::fs::Metadata, o: &CopyOptions) -> Meta {
    let (uid, gid) = if o.keep_owner {
        (m.uid(), m.gid())
    } else {
        (o.uid, o.gid)
    };
    Meta {
        mode: o.chmod.unwrap_or(m.mode() & 0o7777),
        uid,
        gid,
        mtime: TimeSpec::new(m.mtime(), m.mtime_nsec()),
        xattrs: Vec::new(),
    }
}

fn io_to(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Path(path.to_path_buf(), e.to_string())
}

/// Copies `src` (absolute path of an entry) to `dst_rel` inside `dst`,
/// recursively, never following symlinks below the top.
fn copy_entry(
    source: &Source,
    src_root: &Root,
    src_rel: &Path,
    top: Option<&Path>,
    dst: &Root,
    dst_rel: &Path,
    o: &CopyOptions,
) -> Result<()> {
    // The top was resolved already (it is a /proc/self/fd link): follow
    // it. Below it every entry is reached through the source root, never
    // by a path from `/`: a container's tree (`cp`) may change meanwhile.
    let (_parent, src) = match top {
        Some(p) => (None, p.to_path_buf()),
        None => {
            let (fd, p) = inroot::entry_path(src_root, src_rel).map_err(|e| {
                Error::Path(
                    src_rel.to_path_buf(),
                    format!("in the {}: {e}", source.label),
                )
            })?;
            (Some(fd), p)
        }
    };
    let m = if top.is_some() {
        std::fs::metadata(&src)
    } else {
        std::fs::symlink_metadata(&src)
    }
    .map_err(io_to(&src))?;
    let ft = m.file_type();
    if ft.is_dir() {
        // The destination directory itself keeps its metadata when it
        // already exists (COPY dir/ / must not chmod the root).
        let exists = dst
            .open_at(dst_rel, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .is_ok();
        if !(top.is_some() && exists) {
            layer::make_dir(dst, dst_rel, &meta_of(&m, o)).map_err(io_to(dst_rel))?;
        }
        let listing = match top {
            Some(p) => std::fs::read_dir(p),
            None => src_root
                .open_at(
                    src_rel,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
                )
                .map_err(std::io::Error::from)
                .and_then(|d| std::fs::read_dir(format!("/proc/self/fd/{}", d.as_raw_fd()))),
        };
        let mut names: Vec<_> = listing
            .map_err(io_to(&src))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            let child_rel = src_rel.join(&n);
            if !source.included(&child_rel)
                && !source
                    .ignore
                    .as_ref()
                    .is_some_and(|i| i.must_descend(&child_rel.to_string_lossy()))
            {
                continue;
            }
            copy_entry(
                source,
                src_root,
                &child_rel,
                None,
                dst,
                &dst_rel.join(&n),
                o,
            )?;
        }
        Ok(())
    } else if !source.included(src_rel) {
        Ok(())
    } else if ft.is_symlink() {
        let target = std::fs::read_link(&src).map_err(io_to(&src))?;
        layer::make_symlink(dst, dst_rel, &target, &meta_of(&m, o)).map_err(io_to(dst_rel))
    } else if ft.is_file() {
        // The top's /proc/self/fd link is itself a symlink to follow.
        let mut f = inroot::open_unchanged(&src, &m, top.is_some())
            .map_err(|e| Error::Path(src_rel.to_path_buf(), e.to_string()))?;
        layer::make_file(dst, dst_rel, &meta_of(&m, o), &mut f).map_err(io_to(dst_rel))
    } else {
        Err(Error::Path(
            src_rel.to_path_buf(),
            "COPY supports files, directories and symlinks only".into(),
        ))
    }
}

/// Where `dest` (already joined with WORKDIR) points inside the rootfs,
/// and whether it names a directory.
fn dest_is_dir(dst: &Root, dest: &str, count: usize) -> Result<(PathBuf, bool)> {
    let rel = inroot::clean(Path::new(dest));
    let is_dir = dest.ends_with('/')
        || dest.ends_with("/.")
        || dst
            .open_at(&rel, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .is_ok();
    if count > 1 && !is_dir {
        return Err(Error::invalid(
            "COPY",
            format!("when copying more than one source, the destination must be a directory and end with a / (got {dest:?})"),
        ));
    }
    Ok((rel, is_dir))
}

/// COPY (and ADD of plain files): docker's rules for directories, files
/// and `dest/`.
pub fn copy(
    source: &Source,
    rels: &[PathBuf],
    rootfs: &Path,
    dest: &str,
    o: &CopyOptions,
) -> Result<()> {
    let dst = Root::open(rootfs).map_err(|e| Error::Path(rootfs.into(), e.to_string()))?;
    let (dest_rel, into_dir) = dest_is_dir(&dst, dest, rels.len())?;
    // The top of a source may be a symlink; it is followed, but inside the
    // source root.
    let src_root =
        Root::open(&source.root).map_err(|e| Error::Path(source.root.clone(), e.to_string()))?;
    for rel in rels {
        let fd = src_root
            .open_at(rel, OFlag::O_PATH)
            .map_err(|e| Error::Path(rel.clone(), format!("in the {}: {e}", source.label)))?;
        let real = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        let is_dir = std::fs::metadata(&real)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        let target = if is_dir || !into_dir {
            dest_rel.clone()
        } else {
            dest_rel.join(rel.file_name().unwrap_or_default())
        };
        // .dockerignore judges what a symlink leads to, not its name: a
        // link to an excluded directory must not copy it.
        let resolved = match &source.ignore {
            Some(_) => std::fs::read_link(&real)
                .ok()
                .and_then(|p| p.strip_prefix(&source.root).ok().map(Path::to_path_buf))
                .unwrap_or_else(|| rel.clone()),
            None => rel.clone(),
        };
        if !source.included(&resolved) {
            return Err(Error::NotFound(format!(
                "{}: excluded by .dockerignore (through a symlink)",
                rel.display()
            )));
        }
        copy_entry(source, &src_root, &resolved, Some(&real), &dst, &target, o)?;
    }
    Ok(())
}

/// Whether a local ADD source is an archive ADD unpacks.
pub fn is_archive(f: &std::fs::File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 512];
    let Ok(n) = f.read_at(&mut buf, 0) else {
        return false;
    };
    let head = &buf[..n];
    match Compression::sniff(head) {
        Compression::Gzip | Compression::Zstd => true,
        Compression::None => head.len() >= 262 && &head[257..262] == b"ustar",
    }
}

/// ADD of a local archive: unpacked into `dest` (a directory).
/// Unpacks the archive `f` (`archive` names it in errors) at `dest`.
pub fn add_archive(f: std::fs::File, archive: &Path, rootfs: &Path, dest: &str) -> Result<()> {
    let dst = Root::open(rootfs).map_err(|e| Error::Path(rootfs.into(), e.to_string()))?;
    let rel = inroot::clean(Path::new(dest));
    let dir = dst
        .mkdir_all(&rel)
        .map_err(|e| Error::Path(rel.clone(), e.to_string()))?;
    let tar = decompress(BufReader::with_capacity(256 << 10, f), None).map_err(io_to(archive))?;
    let target = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    layer::unpack(tar, &target, Mode::Flatten)
        .map_err(|e| Error::Path(archive.into(), e.to_string()))
}

/// A file from a COPY/ADD heredoc.
pub fn write_file(
    rootfs: &Path,
    dest: &str,
    name: &str,
    content: &str,
    o: &CopyOptions,
) -> Result<()> {
    let dst = Root::open(rootfs).map_err(|e| Error::Path(rootfs.into(), e.to_string()))?;
    let (rel, into_dir) = dest_is_dir(&dst, dest, 1)?;
    let rel = if into_dir { rel.join(name) } else { rel };
    let now = crate::build::diff::source_date_epoch().unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    });
    let meta = Meta {
        mode: o.chmod.unwrap_or(0o644),
        uid: o.uid,
        gid: o.gid,
        mtime: TimeSpec::new(now, 0),
        xattrs: Vec::new(),
    };
    layer::make_file(&dst, &rel, &meta, &mut content.as_bytes()).map_err(io_to(&rel))
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_like_go() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "a.txt.bak"));
        assert!(glob_match("?b", "ab"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[^a-c]x", "bx"));
        assert!(glob_match("\\*", "*"));
        assert!(glob_match("*", ""));
    }
}
