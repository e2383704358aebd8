//! RUN steps: a container made by `berth` over the stage's rootfs, driven
//! through its runc command line like any engine would.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// `berth` next to this binary, else on PATH; `--runtime` overrides.
pub fn find_runtime(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Ok(me) = std::env::current_exe() {
        let sibling = me.with_file_name("berth");
        if sibling.is_file() {
            return Ok(sibling);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("berth"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Other("berth not found next to berth-img or on PATH (use --runtime)".into())
        })
}

/// Runs the bundle in `bundle` to completion with output streamed to ours;
/// returns its exit status (128+N for a signal, as shells report it).
pub fn run_bundle(runtime: &Path, state_root: &Path, bundle: &Path, id: &str) -> Result<i32> {
    let status = Command::new(runtime)
        .arg("--root")
        .arg(state_root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::Other(format!("run {}: {e}", runtime.display())))?;
    // A container that outlived a failed run (the runtime was killed) must
    // not linger.
    force_delete(runtime, state_root, id);
    Ok(status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    }))
}

/// Deletes build containers whose berth-img process is gone (a build that
/// was killed cannot delete its own RUN container). Their IDs carry the
/// builder's PID.
pub fn reap_stale(runtime: &Path, state_root: &Path) {
    let Ok(o) = Command::new(runtime)
        .arg("--root")
        .arg(state_root)
        .args(["list", "-q"])
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    for id in String::from_utf8_lossy(&o.stdout).lines() {
        let pid = id
            .strip_prefix("berth-img-build-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                force_delete(runtime, state_root, id);
            }
        }
    }
}

/// `berth delete --force ID`, quietly: the container may be gone already.
fn force_delete(runtime: &Path, state_root: &Path, id: &str) {
    let _ = Command::new(runtime)
        .arg("--root")
        .arg(state_root)
        .args(["delete", "--force", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
