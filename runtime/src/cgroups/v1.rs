//! cgroup v1 specifics: per-controller quirks of the legacy hierarchies.

use std::fs;
use std::path::Path;

use super::write;
use crate::devices::Emulator;
use crate::error::{Error, Result};

/// A new v1 cpuset cgroup starts with empty `cpuset.cpus`/`cpuset.mems`, and
/// no task can join it until both are set: copy them down from the nearest
/// configured ancestor, top first.
pub fn init_cpuset(mount_point: &Path, dir: &Path) -> Result<()> {
    let Ok(rel) = dir.strip_prefix(mount_point) else {
        return Ok(());
    };
    let mut current = mount_point.to_path_buf();
    for component in rel.components() {
        let parent = current.clone();
        current.push(component);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let mine = fs::read_to_string(current.join(file)).unwrap_or_default();
            if mine.trim().is_empty() {
                let theirs = fs::read_to_string(parent.join(file))
                    .map_err(|e| Error::path("read", parent.join(file), e))?;
                write(&current.join(file), theirs.trim())?;
            }
        }
    }
    Ok(())
}

/// Brings `devices.allow`/`devices.deny` from what the cgroup holds now
/// (its `devices.list`) to `target`, writing only the rules that change
/// something (runc's transition): the kernel refuses some rules a config
/// may legally list (a redundant deny, unknown access letters).
pub fn apply_devices(dir: &Path, target: &Emulator) -> Result<()> {
    let list = dir.join("devices.list");
    let now = fs::read_to_string(&list).map_err(|e| Error::path("read", &list, e))?;
    for rule in Emulator::from_list(&now).transition(target) {
        let file = if rule.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        write(&dir.join(file), &rule.to_v1_string())?;
    }
    Ok(())
}

/// Frozen (or freezing), by its own state or an ancestor's.
pub fn is_frozen(dir: &Path) -> bool {
    fs::read_to_string(dir.join("freezer.state")).is_ok_and(|s| s.trim() != "THAWED")
        || fs::read_to_string(dir.join("freezer.parent_freezing")).is_ok_and(|s| s.trim() == "1")
}

/// Writes `freezer.state` and waits until the kernel reports it done
/// (FREEZING becomes FROZEN once every task has stopped).
pub fn freeze(dir: &Path, frozen: bool) -> Result<()> {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let file = dir.join("freezer.state");
    let mut delay = std::time::Duration::from_micros(100);
    for _ in 0..1000 {
        write(&file, want)?;
        let now = fs::read_to_string(&file).map_err(|e| Error::path("read", &file, e))?;
        if now.trim() == want {
            return Ok(());
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(std::time::Duration::from_millis(10));
    }
    Err(Error::Other(format!(
        "{}: timed out waiting for {want}",
        file.display()
    )))
}
