//! `diff`: what a container changed against its image, read from its
//! overlay's upper directory — `A` added, `C` changed, `D` deleted (a
//! whiteout: a 0:0 character device), as docker lists them. A directory
//! the image has is listed as changed only when something in it is; the
//! mount points the runtime made for a container whose image lacked them
//! (`/etc/hosts`, ...) are not changes the container made.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::build::diff::RUNTIME_STUBS;
use crate::error::{Context, Result};

/// One line of `diff`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// `A`, `C` or `D`.
    pub kind: char,
    /// Absolute in the container.
    pub path: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.path)
    }
}

/// The changes `upper` holds over the layers `lowers` (topmost first),
/// sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    let in_image = |rel: &Path| {
        lowers
            .iter()
            .any(|l| l.join(rel).symlink_metadata().is_ok())
    };
    let mut out = Vec::new();
    walk(upper, Path::new(""), &in_image, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Adds the changes under `upper/rel`; returns whether there were any.
fn walk(
    upper: &Path,
    rel: &Path,
    in_image: &dyn Fn(&Path) -> bool,
    out: &mut Vec<Change>,
) -> Result<bool> {
    let dir = upper.join(rel);
    let mut any = false;
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .context(|| format!("read {}", dir.display()))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let child = rel.join(e.file_name());
        let meta = e
            .metadata()
            .context(|| format!("stat {}", e.path().display()))?;
        let path = format!("/{}", child.display());
        let name = e.file_name();
        if crate::build::diff::FUSE_OPAQUE_ENTRIES
            .iter()
            .any(|m| name == *m)
        {
            continue;
        }
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            out.push(Change { kind: 'D', path });
            any = true;
            continue;
        }
        // fuse-overlayfs' whiteout where it cannot make a device node.
        if let Some(hidden) = name.to_str().and_then(|n| n.strip_prefix(".wh.")) {
            if meta.is_file() {
                out.push(Change {
                    kind: 'D',
                    path: format!("/{}", rel.join(hidden).display()),
                });
                any = true;
                continue;
            }
        }
        let existed = in_image(&child);
        if !existed && RUNTIME_STUBS.iter().any(|s| Path::new(s) == child) {
            continue;
        }
        if meta.is_dir() {
            let mark = out.len();
            let inner = walk(upper, &child, in_image, out)?;
            if !existed || inner {
                let kind = if existed { 'C' } else { 'A' };
                out.insert(mark, Change { kind, path });
                any = true;
            }
        } else {
            let kind = if existed { 'C' } else { 'A' };
            out.push(Change { kind, path });
            any = true;
        }
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_changed_deleted() {
        let t = std::env::temp_dir().join(format!("berth-changes-{}", std::process::id()));
        let (upper, lower) = (t.join("upper"), t.join("lower"));
        for d in [
            upper.join("etc"),
            upper.join("new/deep"),
            upper.join("bin"),
            lower.join("etc"),
            lower.join("bin"),
        ] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(lower.join("etc/motd"), "a").unwrap();
        fs::write(upper.join("etc/motd"), "b").unwrap();
        fs::write(upper.join("etc/hosts"), "").unwrap();
        fs::write(upper.join("new/deep/f"), "").unwrap();
        nix::sys::stat::mknod(
            &upper.join("bin/vi"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        let got: Vec<String> = changes(&upper, &[lower])
            .unwrap()
            .iter()
            .map(Change::to_string)
            .collect();
        fs::remove_dir_all(&t).unwrap();
        assert_eq!(
            got,
            [
                "C /bin",
                "D /bin/vi",
                "C /etc",
                "C /etc/motd",
                "A /new",
                "A /new/deep",
                "A /new/deep/f"
            ]
        );
    }
}
