//! A container's state on disk: `<root>/<id>/state.json`, written atomically
//! (write, fsync, rename) under an exclusive `flock` on the container's
//! directory so concurrent commands on one ID never see or make a torn state.
//!
//! The status is not stored but derived, as runc does: the init process is
//! alive (same start time, so a reused PID is not mistaken for it) and the
//! exec fifo still exists → `created`; alive and frozen → `paused`; alive →
//! `running`; otherwise `stopped`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

/// runtime.md "State": the lifecycle position of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What berth remembers about a container between commands.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    /// Host PID of the container's init process; 0 while creating.
    pub pid: i32,
    /// `starttime` of the init from /proc/PID/stat, to detect PID reuse.
    pub pid_start: u64,
    /// The `berth create` process while the container is being created, so a
    /// create that was killed half way is recognised as stopped.
    pub creator_pid: i32,
    pub creator_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    pub owner: String,
    /// Cgroup directories made or joined for the container, one per hierarchy.
    pub cgroup_paths: Vec<PathBuf>,
    /// Per path: whether berth created that cgroup (and so removes it).
    pub cgroup_owned: Vec<bool>,
    /// The config the container was created from.
    pub config: serde_json::Value,
    /// Without a mount namespace of its own, the container's mounts live in
    /// berth's: this is the mount (its unique id) that held the rootfs
    /// before them, down to which `delete` detaches what is stacked there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_mounts_above: Option<u64>,
    /// The systemd unit that holds the container's cgroup (the systemd
    /// cgroup driver), stopped by `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
}

impl State {
    pub fn annotations(&self) -> HashMap<String, String> {
        self.config
            .get("annotations")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or_default()
    }

    /// runtime.md "State": ociVersion is the spec version the state
    /// document follows, which is berth's, not the bundle's.
    pub fn oci_version(&self) -> &str {
        crate::SPEC_VERSION
    }
}

/// Refuses IDs that could escape `--root` or confuse the state layout.
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidId(id.into(), "empty"));
    }
    if id == "." || id == ".." || id.contains('/') {
        return Err(Error::InvalidId(
            id.into(),
            "must not contain '/' or be '.' or '..'",
        ));
    }
    if id.len() > 1024 {
        return Err(Error::InvalidId(id.into(), "longer than 1024 bytes"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+' | b':' | b'@'))
    {
        return Err(Error::InvalidId(
            id.into(),
            "only letters, digits and _ - . + : @ are allowed",
        ));
    }
    Ok(())
}

/// Creates `--root` (0700) if missing; concurrent creators are fine.
pub fn ensure_root(root: &Path) -> Result<()> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::path("create root", root, e)),
    }
}

/// The container's directory under `--root`, with its lock held.
pub struct ContainerDir {
    pub path: PathBuf,
    pub id: String,
    lock: File,
}

impl ContainerDir {
    /// Makes a new container directory; exactly one of several concurrent
    /// creators of the same ID succeeds.
    pub fn create(root: &Path, id: &str) -> Result<ContainerDir> {
        validate_id(id)?;
        ensure_root(root)?;
        let path = root.join(id);
        match fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.into()))
            }
            Err(e) => return Err(Error::path("create", &path, e)),
        }
        let dir = Self::lock(path, id)?;
        Ok(dir)
    }

    /// Opens and locks an existing container's directory.
    pub fn open(root: &Path, id: &str) -> Result<ContainerDir> {
        validate_id(id)?;
        let path = root.join(id);
        if !path.is_dir() {
            return Err(Error::NotFound(id.into()));
        }
        Self::lock(path, id)
    }

    fn lock(path: PathBuf, id: &str) -> Result<ContainerDir> {
        let lock = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::NotFound(id.into()),
                _ => Error::path("open", &path, e),
            })?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::path("lock", &path, std::io::Error::last_os_error()));
        }
        // A concurrent delete may have removed the directory while we waited.
        if !path.exists() {
            return Err(Error::NotFound(id.into()));
        }
        Ok(ContainerDir {
            path,
            id: id.into(),
            lock,
        })
    }

    pub fn lock_fd(&self) -> i32 {
        self.lock.as_raw_fd()
    }

    pub fn fifo_path(&self) -> PathBuf {
        self.path.join(EXEC_FIFO)
    }

    pub fn load(&self) -> Result<Option<State>> {
        read_state(&self.path, &self.id)
    }

    /// Writes state.json atomically: a reader sees the old or the new file.
    pub fn save(&self, state: &State) -> Result<()> {
        let tmp = self.path.join(".state.json.tmp");
        let final_path = self.path.join(STATE_FILE);
        let data = serde_json::to_vec(state).map_err(|e| Error::Other(e.to_string()))?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| Error::path("write", &tmp, e))?;
        f.write_all(&data)
            .and_then(|_| f.sync_data())
            .map_err(|e| Error::path("write", &tmp, e))?;
        fs::rename(&tmp, &final_path).map_err(|e| Error::path("rename", &final_path, e))
    }

    /// Removes the container's directory; the lock goes with it.
    pub fn remove(self) -> Result<()> {
        fs::remove_dir_all(&self.path).map_err(|e| Error::path("remove", &self.path, e))
    }
}

/// Reads a container's state without taking its lock (the file is replaced
/// atomically, so a reader never sees a torn write).
pub fn read_state(dir: &Path, id: &str) -> Result<Option<State>> {
    let path = dir.join(STATE_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.is_dir() {
                Ok(None)
            } else {
                Err(Error::NotFound(id.into()))
            }
        }
        Err(e) => Err(Error::path("read", &path, e)),
    }
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks
/// since boot. Together with the PID it names one process for all time.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    // rest starts at field 3 (state); starttime is field 22.
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether `pid` still names the process that started at `start`.
pub fn is_same_process(pid: i32, start: u64) -> bool {
    pid > 0 && process_start_time(pid) == Some(start)
}

/// The status of a container, derived from its state and the live system.
pub fn status(dir: &Path, state: &State, frozen: impl FnOnce() -> bool) -> Status {
    if state.pid == 0 {
        return if is_same_process(state.creator_pid, state.creator_start) {
            Status::Creating
        } else {
            Status::Stopped
        };
    }
    if !is_same_process(state.pid, state.pid_start) {
        return Status::Stopped;
    }
    if dir.join(EXEC_FIFO).exists() {
        return Status::Created;
    }
    if frozen() {
        Status::Paused
    } else {
        Status::Running
    }
}

/// The current time as Go's RFC 3339 with nanoseconds, as runc prints it.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

pub fn format_rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let frac = if nanos == 0 {
        String::new()
    } else {
        let s = format!(".{nanos:09}");
        s.trim_end_matches('0').to_string()
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "abc-1", "x_y.z", "A:b@c+d"] {
            validate_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "x\n"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(format_rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339(951_782_400, 5_000),
            "2000-02-29T00:00:00.000005Z"
        );
        assert_eq!(
            format_rfc3339(1_700_000_000, 123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
    }

    #[test]
    fn own_start_time_is_stable() {
        let me = std::process::id() as i32;
        let t = process_start_time(me).unwrap();
        assert!(is_same_process(me, t));
        assert!(!is_same_process(me, t + 1));
    }
}
