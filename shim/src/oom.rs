//! OOM notifications from a container's memory cgroup, which the shim
//! turns into TaskOOM events as the runc shim does: on cgroup v1 an eventfd
//! registered on `memory.oom_control`, on cgroup v2 inotify on
//! `memory.events` (its `oom_kill` count).

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
        // The eventfd also fires when the cgroup is removed: then stop.
        while f.read_exact(&mut buf).is_ok() {
            if !dir.exists() {
                break;
            }
            on_oom();
        }
    });
    Ok(())
}

fn oom_kills(events: &Path) -> u64 {
    std::fs::read_to_string(events)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn watch_v2(dir: PathBuf, on_oom: impl Fn() + Send + 'static) -> Result<(), String> {
    let events = dir.join("memory.events");
    // SAFETY: inotify_init1 returns a new fd or -1.
    let ifd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if ifd < 0 {
        return Err(format!("inotify: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd we own.
    let ifd = unsafe { OwnedFd::from_raw_fd(ifd) };
    let path =
        std::ffi::CString::new(events.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a valid path and our inotify fd.
    if unsafe { libc::inotify_add_watch(ifd.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) } < 0 {
        return Err(format!(
            "watch {}: {}",
            events.display(),
            std::io::Error::last_os_error()
        ));
    }
    let mut seen = oom_kills(&events);
    std::thread::spawn(move || {
        let mut f = File::from(ifd);
        let mut buf = [0u8; 4096];
        while let Ok(n) = f.read(&mut buf) {
            // IN_IGNORED: the watch went away with the cgroup.
            let mut off = 0;
            let mut gone = false;
            while off + 16 <= n {
                let mask = u32::from_ne_bytes(buf[off + 4..off + 8].try_into().unwrap());
                let len = u32::from_ne_bytes(buf[off + 12..off + 16].try_into().unwrap()) as usize;
                gone |= mask & libc::IN_IGNORED != 0;
                off += 16 + len;
            }
            let now = oom_kills(&events);
            if now > seen {
                seen = now;
                on_oom();
            }
            if gone || n == 0 {
                break;
            }
        }
    });
    Ok(())
}
