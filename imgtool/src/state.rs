//! A container's run state, docker's `State`, in
//! `ROOT/containers/KEY/state.json`: when it started and finished, its
//! exit code, restarts, health, and the processes that run it. The
//! supervisor and the commands (`stop`, `kill`, `start`) change it by
//! read-modify-write under `state.lock`, each write a write-then-rename,
//! so a reader never sees half a file and no change is lost.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::health::Health;
use crate::store::{atomic_write, lock_file};

/// A process, with its start time so a reused PID does not count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    pub start: u64,
}

impl ProcessId {
    /// `pid` as it is now.
    pub fn of(pid: i32) -> Option<ProcessId> {
        Some(ProcessId {
            pid,
            start: proc_stat_field(pid, 22)?.parse().ok()?,
        })
    }

    /// Whether it still runs: same start time, and not a zombie (a killed
    /// supervisor's children wait for PID 1 to reap them).
    pub fn alive(&self) -> bool {
        ProcessId::of(self.pid).is_some_and(|now| now.start == self.start)
            && proc_stat_field(self.pid, 3).is_some_and(|s| s != "Z" && s != "X")
    }
}

/// Field `n` (1-based, as proc(5) counts) of `/proc/PID/stat`.
pub fn proc_stat_field(pid: i32, n: usize) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(n - 3).map(str::to_string)
}

/// `state.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// The container's init while it runs.
    #[serde(default)]
    pub init: Option<ProcessId>,
    /// The process that runs it detached (`berth-img internal
    /// supervise`); gone while the exit is not recorded means it was
    /// killed, and nobody will record the exit or restart it.
    #[serde(default)]
    pub supervisor: Option<ProcessId>,
    /// Unix nanoseconds of the last start; None: never started.
    #[serde(default)]
    pub started_at: Option<i64>,
    #[serde(default)]
    pub finished_at: Option<i64>,
    #[serde(default)]
    pub exit_code: i32,
    /// Restarts the policy made since the container was last started by
    /// hand.
    #[serde(default)]
    pub restart_count: u32,
    /// Waiting out the back-off before the policy starts it again.
    #[serde(default)]
    pub restarting: bool,
    /// `stop` or `kill` ended it: no policy restarts it (docker's
    /// `HasBeenManuallyStopped`).
    #[serde(default)]
    pub stopped_by_user: bool,
    /// Why the last start failed.
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub health: Option<Health>,
}

/// The state file of one container.
pub struct StateFile {
    dir: PathBuf,
}

impl StateFile {
    /// The state of the container kept in `dir`.
    pub fn new(dir: &Path) -> StateFile {
        StateFile {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The state as last written (the default when never written).
    pub fn load(&self) -> Result<State> {
        let p = self.path();
        match fs::read(&p) {
            Ok(d) => {
                serde_json::from_slice(&d).map_err(|e| Error::Path(p, format!("corrupt: {e}")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::Path(p, e.to_string())),
        }
    }

    /// Holds the state for a read-modify-write.
    pub fn lock(&self) -> Result<Flock<File>> {
        lock_file(&self.dir.join("state.lock"), FlockArg::LockExclusive)
    }

    /// Changes the state with `f` under the lock; returns the new state.
    pub fn update(&self, f: impl FnOnce(&mut State)) -> Result<State> {
        let _lock = self.lock()?;
        let mut s = self.load()?;
        f(&mut s);
        atomic_write(&self.path(), &serde_json::to_vec_pretty(&s).expect("JSON"))?;
        Ok(s)
    }
}
