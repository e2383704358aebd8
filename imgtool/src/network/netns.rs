//! Network namespaces pinned to a file (`ROOT/netns/NAME`), as `ip netns`,
//! podman and nerdctl keep them: the namespace exists before the
//! container (so CNI wires it first and `berth` joins it by path), outlives
//! a killed supervisor (so DEL can still find the container's end of the
//! veth), and goes away when the file is unmounted.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

/// `NSFS_MAGIC`: what statfs says for a mounted namespace file.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Which network namespace a process is in: the device and inode of its
/// `ns/net` link, as `ip netns identify` compares them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

impl std::fmt::Display for NsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "net:[{}]", self.ino)
    }
}

/// The network namespace berth-img runs in: where CNI puts bridges,
/// host-side veths and iptables rules.
pub fn current() -> Result<NsId> {
    let m = fs::metadata("/proc/thread-self/ns/net")
        .context(|| "stat /proc/thread-self/ns/net".into())?;
    Ok(NsId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// Makes a new network namespace and pins it at `path` (a new, empty file
/// is made there first; it must not exist).
pub fn create(path: &Path) -> Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .context(|| format!("create {}", path.display()))?;
    // unshare(CLONE_NEWNET) is per thread: a thread of its own takes the
    // new namespace, pins it and ends, leaving this one where it was.
    let target = path.to_path_buf();
    let pinned = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).context(|| "unshare(CLONE_NEWNET)".into())?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .context(|| format!("bind the new network namespace to {}", target.display()))
    })
    .join()
    .unwrap_or_else(|_| Err(Error::Other("netns thread panicked".into())));
    if pinned.is_err() {
        let _ = fs::remove_file(path);
    }
    pinned
}

/// Whether `path` is a pinned namespace (after a reboot it is a plain,
/// empty file).
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// Unpins and removes `path`; nothing to do when it is gone.
pub fn remove(path: &Path) -> Result<()> {
    // Detach: a process that still has it open keeps its namespace; the
    // file must go regardless.
    while is_pinned(path) {
        umount2(path, MntFlags::MNT_DETACH).context(|| format!("unmount {}", path.display()))?;
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).context(|| format!("remove {}", path.display()))
        }
        _ => Ok(()),
    }
}
