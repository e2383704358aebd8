//! POSIX-platform hooks (config.md "Hooks", runtime.md "Lifecycle").
//!
//! Who runs which, and where:
//! - prestart, createRuntime: `berth create`, in the runtime's namespaces,
//!   once the init has set up its mounts (before pivot_root);
//! - createContainer: the init, in the container's namespaces, before
//!   pivot_root (so the path resolves in the runtime's mount tree);
//! - startContainer: the init, after `start`, just before the user program;
//! - poststart: `berth start`, once the user program runs;
//! - poststop: `berth delete`, once the container is gone.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;
use serde::Serialize;

use crate::error::{Error, Result};

/// The state document hooks read on stdin (runtime.md "State").
#[derive(Serialize)]
pub struct HookState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub status: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    pub pid: i32,
    pub bundle: &'a str,
    #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
    pub annotations: std::collections::HashMap<String, String>,
}

fn is_zero(p: &i32) -> bool {
    *p == 0
}

/// Where a hook runs besides what it says itself (as runc runs them).
#[derive(Default, Clone, Copy)]
pub struct Context<'a> {
    /// The environment of a hook that has no `env` of its own: None for
    /// berth's own (the runtime-side hooks), the container process's for
    /// the hooks the init runs.
    pub default_env: Option<&'a [String]>,
    /// The working directory: the rootfs for createContainer, else berth's.
    pub cwd: Option<&'a std::path::Path>,
}

/// Runs `hooks` in order; the first failure stops and is returned, worded
/// as runc words it ("error running hook #N: ...").
pub fn run_all(kind: &str, hooks: &[Hook], state: &[u8], ctx: Context) -> Result<()> {
    for (i, hook) in hooks.iter().enumerate() {
        run(hook, state, ctx).map_err(|e| {
            Error::Other(format!(
                "error running hook #{i}: {kind} {}: {e}",
                hook.path().display()
            ))
        })?;
    }
    Ok(())
}

/// Runs one hook: its args (args[0] is argv[0]) and its env (or the
/// context's), the state on stdin, killed when its timeout passes.
fn run(hook: &Hook, state: &[u8], ctx: Context) -> std::result::Result<(), String> {
    let path = hook.path();
    let args = hook.args().as_deref().unwrap_or_default();
    // A memfd rather than a pipe: a chatty hook cannot block on it, no
    // reader thread is needed, and it works after pivot_root.
    let stderr_capture = memfd().map_err(|e| format!("memfd: {e}"))?;
    let mut cmd = Command::new(path);
    if let Some(argv0) = args.first() {
        cmd.arg0(argv0);
    }
    cmd.args(args.iter().skip(1));
    if let Some(env) = hook.env().as_deref().or(ctx.default_env) {
        cmd.env_clear()
            .envs(env.iter().filter_map(|e| e.split_once('=')));
    }
    if let Some(dir) = ctx.cwd {
        cmd.current_dir(dir);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::from(
            stderr_capture.try_clone().map_err(|e| e.to_string())?,
        ));
    let mut child = cmd.spawn().map_err(|e| format!("start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(state);
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("timed out after {}s", hook.timeout().unwrap_or(0)));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut err = String::new();
    let mut f = stderr_capture;
    let _ = std::io::Seek::rewind(&mut f);
    let _ = std::io::Read::read_to_string(&mut f, &mut err);
    let err = err.trim();
    Err(match status.code() {
        Some(c) if err.is_empty() => format!("exit status {c}"),
        Some(c) => format!("exit status {c}: {err}"),
        None => format!(
            "killed by a signal{}",
            if err.is_empty() {
                String::new()
            } else {
                format!(": {err}")
            }
        ),
    })
}

fn memfd() -> std::io::Result<std::fs::File> {
    // SAFETY: memfd_create with a static name.
    let fd = unsafe { libc::memfd_create(c"berth-hook-stderr".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd we own.
    Ok(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Checks, before anything is created, that every runtime-namespace hook
/// exists (the container-namespace ones are checked where they run).
pub fn validate(hooks: &oci_spec::runtime::Hooks) -> Result<()> {
    let runtime_side = [
        hooks.prestart(),
        hooks.create_runtime(),
        hooks.create_container(),
        hooks.poststart(),
        hooks.poststop(),
    ];
    for list in runtime_side.into_iter().flatten() {
        for h in list {
            if !h.path().is_absolute() {
                return Err(Error::Config(format!(
                    "hooks: {}: path must be absolute",
                    h.path().display()
                )));
            }
            if !h.path().exists() {
                return Err(Error::Config(format!(
                    "hooks: {}: no such file",
                    h.path().display()
                )));
            }
        }
    }
    Ok(())
}
