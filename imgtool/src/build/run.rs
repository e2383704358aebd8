//! RUN steps: a container made by `berth` over the stage's rootfs, driven
//! through its runc command line like any engine would.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::Store;

/// `berth` next to this binary, else on PATH; `--runtime` overrides.
pub fn find_runtime(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    find_sibling("berth").ok_or_else(|| {
        Error::Other("berth not found next to berth-img or on PATH (use --runtime)".into())
    })
}

/// A program shipped next to this binary (as the workspace builds and
/// installs them), else the first on PATH.
pub fn find_sibling(name: &str) -> Option<PathBuf> {
    if let Ok(me) = std::env::current_exe() {
        let sibling = me.with_file_name(name);
        if sibling.is_file() {
            return Some(sibling);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs the bundle in `bundle` to completion; returns its exit status
/// (128+N for a signal, as shells report it). Its stdout and stderr go to
/// our stderr line by line behind `prefix` (the step's `#N`), so the
/// output of stages building side by side stays attributable and our
/// stdout stays clean for the image ID. Quiet builds keep the output and
/// show it only if the step fails. Once `cancel` is set the container is
/// killed, again every 50 ms until `berth run` returns, since it may still
/// be being created when the first kill comes.
pub fn run_bundle(
    runtime: &Path,
    state_root: &Path,
    bundle: &Path,
    id: &str,
    prefix: &str,
    quiet: bool,
    cancel: &AtomicBool,
) -> Result<i32> {
    let mut child = Command::new(runtime)
        .arg("--root")
        .arg(state_root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Other(format!("run {}: {e}", runtime.display())))?;
    let kept = Mutex::new(Vec::new());
    let streams: Vec<Box<dyn Read + Send>> = vec![
        Box::new(child.stdout.take().expect("piped")),
        Box::new(child.stderr.take().expect("piped")),
    ];
    let status = std::thread::scope(|s| {
        for stream in streams {
            let kept = &kept;
            s.spawn(move || relay(stream, prefix, quiet.then_some(kept)));
        }
        let (done, finished) = mpsc::channel::<()>();
        s.spawn(move || {
            while let Err(RecvTimeoutError::Timeout) =
                finished.recv_timeout(Duration::from_millis(50))
            {
                if cancel.load(Ordering::SeqCst) {
                    quietly(runtime, state_root, &["kill", id, "KILL"]);
                }
            }
        });
        let status = child.wait();
        drop(done);
        status
    })
    .map_err(|e| Error::Other(format!("wait for {}: {e}", runtime.display())))?;
    // A container that outlived a failed run (the runtime was killed) must
    // not linger.
    quietly(runtime, state_root, &["delete", "--force", id]);
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    if code != 0 {
        let _ = std::io::stderr().write_all(&kept.into_inner().unwrap_or_default());
    }
    Ok(code)
}

/// Copies `stream` to our stderr (or into `keep`) a line at a time, each
/// line behind `prefix`.
fn relay(stream: impl Read, prefix: &str, keep: Option<&Mutex<Vec<u8>>>) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        let mut out = Vec::with_capacity(prefix.len() + 1 + line.len());
        out.extend_from_slice(prefix.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&line);
        match keep {
            Some(k) => k.lock().unwrap_or_else(|e| e.into_inner()).extend(out),
            None => {
                let _ = std::io::stderr().lock().write_all(&out);
            }
        }
    }
}

/// Where the RUN containers' state lives (`berth --root`).
pub fn state_root(store: &Store) -> PathBuf {
    store.root().join("build-runtime")
}

/// Deletes build containers whose berth-img process is gone (a build that
/// was killed cannot delete its own RUN container). Their IDs carry the
/// builder's PID.
pub fn reap_stale(runtime: &Path, store: &Store) {
    let state_root = &state_root(store);
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
                quietly(runtime, state_root, &["delete", "--force", id]);
            }
        }
    }
}

/// `berth --root STATE_ROOT ARGS...`, quietly and ignoring failure: the
/// container may not exist yet, or be gone already.
fn quietly(runtime: &Path, state_root: &Path, args: &[&str]) {
    let _ = Command::new(runtime)
        .arg("--root")
        .arg(state_root)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
