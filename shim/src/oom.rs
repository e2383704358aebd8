//! OOM notifications from a container's memory cgroup, which the shim
//! turns into TaskOOM events as the runc shim does: on cgroup v1 an eventfd
//! registered on `memory.oom_control`, on cgroup v2 inotify on
//! `memory.events` (its `oom_kill` count) until `cgroup.events` says the
//! container is empty.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Where a cgroup hierarchy is mounted: the v1 one carrying `controller`,
/// or the v2 one when `controller` is None.
fn mount_point(controller: Option<&str>) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut r = right.split(' ');
        let fstype = r.next()?;
        let opts = r.nth(1).unwrap_or("");
        let point = left.split(' ').nth(4)?;
        let hit = match controller {
            None => fstype == "cgroup2",
            Some(c) => fstype == "cgroup" && opts.split(',').any(|o| o == c),
        };
        hit.then(|| PathBuf::from(point))
    })
}

/// The cgroup of `pid` in the v1 hierarchy carrying `controller` (None on
/// a pure cgroup2 host).
pub fn v1_dir(pid: i32, controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        if !controllers.split(',').any(|c| c == controller) {
            return None;
        }
        Some(mount_point(Some(controller))?.join(path.trim_start_matches('/')))
    })
}

/// The memory cgroup of `pid`, and whether it is a v2 one.
fn memory_cgroup(pid: i32) -> Option<(PathBuf, bool)> {
    if let Some(dir) = v1_dir(pid, "memory") {
        return Some((dir, false));
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let base = mount_point(None)?;
    let dir = base.join(path.trim_start_matches('/'));
    dir.join("memory.events").exists().then_some((dir, true))
}

/// Calls `on_oom` (from a thread of its own) each time the memory cgroup of
/// `pid` records an OOM kill, until the cgroup is removed.
pub fn watch(pid: i32, on_oom: impl Fn() + Send + 'static) -> Result<(), String> {
    let (dir, v2) = memory_cgroup(pid).ok_or_else(|| format!("no memory cgroup for pid {pid}"))?;
    if v2 {
        watch_v2(dir, on_oom)
    } else {
        watch_v1(dir, on_oom)
    }
}

fn watch_v1(dir: PathBuf, on_oom: impl Fn() + Send + 'static) -> Result<(), String> {
    // SAFETY: eventfd returns a new fd or -1.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(format!("eventfd: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd we own.
    let efd = unsafe { OwnedFd::from_raw_fd(efd) };
    let control = File::open(dir.join("memory.oom_control"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
    )
    .map_err(|e| format!("register OOM event in {}: {e}", dir.display()))?;
    std::thread::spawn(move || {
        let _control = control;
        let mut f = File::from(efd);
        let mut buf = [0u8; 8];
        // The eventfd counts each OOM and, once, the cgroup's removal: a
        // count above one read after the removal still holds an OOM.
        while f.read_exact(&mut buf).is_ok() {
            let count = u64::from_ne_bytes(buf);
            let gone = !dir.exists();
            if !gone || count > 1 {
                on_oom();
            }
            if gone {
                break;
            }
        }
    });
    Ok(())
}

/// The `oom_kill` count of a cgroup v2 `memory.events`, None once the
/// cgroup is gone.
fn oom_kills(events: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(events).ok()?;
    Some(
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
            .unwrap_or(0),
    )
}

/// What a cgroup v2 watch knows of a container's OOM kills.
///
/// The kernel notifies `memory.events` at most once per 10 ms and drops a
/// deferred notification when the cgroup is removed; systemd removes a
/// scope's cgroup as soon as it empties. So an OOM kill that follows the
/// limit being hit by a few ms (the usual order: `max`, then `oom`, then
/// `oom_kill`) can leave no notification and no file to read. The parent's
/// `memory.events` counts its children's kills too and stays: a kill
/// counted there after the container hit its limit, with the container's
/// cgroup gone before its own count could be read, is taken as the
/// container's. (Only a sibling's OOM kill in that same window could be
/// mistaken for it.)
#[derive(Debug)]
struct Kills {
    /// The container's `oom_kill` count already reported.
    container: u64,
    /// The parent's `oom_kill` count when the container's was last read.
    parent: u64,
    /// The container hit its limit and no kill was seen since.
    pending: bool,
}

impl Kills {
    fn new(container: u64, parent: Option<u64>) -> Self {
        Kills {
            container,
            parent: parent.unwrap_or(0),
            pending: false,
        }
    }

    /// Takes one read after a notification: `modified` when the
    /// container's `memory.events` changed, the parent's count read before
    /// the container's (None when there is none), and the container's
    /// (None once its cgroup is gone). True when there is a new OOM kill.
    fn read(&mut self, modified: bool, parent: Option<u64>, container: Option<u64>) -> bool {
        match container {
            Some(now) if now > self.container => {
                // The parent's count was read first and may not hold these
                // kills yet.
                let delta = now - self.container;
                self.parent = parent.unwrap_or(0).max(self.parent + delta);
                self.container = now;
                self.pending = false;
                true
            }
            Some(_) => {
                self.pending |= modified;
                self.parent = parent.unwrap_or(self.parent);
                false
            }
            None => {
                let new = (self.pending || modified) && parent.is_some_and(|p| p > self.parent);
                self.pending = false;
                new
            }
        }
    }
}

/// Whether `cgroup.events` says the cgroup still has processes; false once
/// it is empty or gone.
fn populated(cgroup_events: &Path) -> bool {
    std::fs::read_to_string(cgroup_events)
        .is_ok_and(|t| t.lines().any(|l| l.trim() == "populated 1"))
}

/// inotify_add_watch(IN_MODIFY) of `path`: the watch descriptor.
fn watch_modify(ifd: &OwnedFd, path: &Path) -> Result<i32, String> {
    let c =
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a valid path and our inotify fd.
    let wd = unsafe { libc::inotify_add_watch(ifd.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) };
    if wd < 0 {
        return Err(format!(
            "watch {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(wd)
}

fn watch_v2(dir: PathBuf, on_oom: impl Fn() + Send + 'static) -> Result<(), String> {
    let events = dir.join("memory.events");
    let cgroup_events = dir.join("cgroup.events");
    // The root cgroup has no memory.events: no parent count to fall back on.
    let parent_events = dir
        .parent()
        .map(|p| p.join("memory.events"))
        .filter(|p| p.exists());
    // SAFETY: inotify_init1 returns a new fd or -1.
    let ifd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if ifd < 0 {
        return Err(format!("inotify: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd we own.
    let ifd = unsafe { OwnedFd::from_raw_fd(ifd) };
    let memory_wd = watch_modify(&ifd, &events)?;
    // The container's end is `populated 0` in cgroup.events, notified when
    // its last process exits, while its cgroup and final counts may still
    // be there. The cgroup's removal is no signal: inotify reports it
    // (IN_IGNORED) for a cgroup file only once the kernel evicts the inode.
    watch_modify(&ifd, &cgroup_events)?;
    let parent_kills = move || parent_events.as_deref().and_then(oom_kills);
    let first_parent = parent_kills();
    let mut kills = Kills::new(oom_kills(&events).unwrap_or(0), first_parent);
    std::thread::spawn(move || {
        let mut f = File::from(ifd);
        let mut buf = [0u8; 4096];
        while let Ok(n) = f.read(&mut buf) {
            let (mut off, mut gone, mut modified) = (0, n == 0, false);
            while off + 16 <= n {
                let wd = i32::from_ne_bytes(buf[off..off + 4].try_into().unwrap());
                let mask = u32::from_ne_bytes(buf[off + 4..off + 8].try_into().unwrap());
                let len = u32::from_ne_bytes(buf[off + 12..off + 16].try_into().unwrap()) as usize;
                gone |= mask & libc::IN_IGNORED != 0;
                modified |= wd == memory_wd && mask & libc::IN_MODIFY != 0;
                off += 16 + len;
            }
            // In this order: once empty, every kill is counted before the
            // counts are read, in the container and in its parent.
            let ended = gone || !populated(&cgroup_events);
            let parent = parent_kills();
            let container = if gone { None } else { oom_kills(&events) };
            if kills.read(modified, parent, container) {
                if container.is_none() {
                    log::info!(
                        "{}: an OOM kill counted by the parent cgroup after the container's went",
                        dir.display()
                    );
                }
                on_oom();
            }
            if ended || container.is_none() {
                break;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Kills;

    #[test]
    fn a_kill_read_in_the_container_is_reported_once() {
        let mut k = Kills::new(0, Some(0));
        assert!(
            !k.read(true, Some(0), Some(0)),
            "the limit hit, no kill yet"
        );
        assert!(
            k.read(true, Some(0), Some(1)),
            "the kill, parent read before it"
        );
        assert!(!k.read(true, Some(1), Some(1)));
        // Gone afterwards: the parent's count holds only the kill reported.
        assert!(!k.read(false, Some(1), None));
    }

    #[test]
    fn a_kill_whose_notification_went_with_the_cgroup_is_found_in_the_parent() {
        let mut k = Kills::new(0, Some(4));
        assert!(
            !k.read(true, Some(4), Some(0)),
            "max notified, kill deferred"
        );
        assert!(
            k.read(false, Some(5), None),
            "cgroup removed, parent counted it"
        );
    }

    #[test]
    fn a_removal_after_no_limit_hit_is_no_kill_even_if_a_sibling_was_killed() {
        let mut k = Kills::new(0, Some(0));
        assert!(!k.read(false, Some(3), None));
        let mut k = Kills::new(2, Some(2));
        // A sibling's kill between reads moves the baseline, not the verdict.
        assert!(!k.read(true, Some(3), Some(2)));
        assert!(!k.read(false, Some(3), None));
    }

    #[test]
    fn without_a_parent_count_a_lost_kill_stays_unknown() {
        let mut k = Kills::new(0, None);
        assert!(!k.read(true, None, Some(0)));
        assert!(!k.read(false, None, None));
    }
}
