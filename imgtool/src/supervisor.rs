//! The supervisor of a detached container (`berth-img internal supervise
//! KEY`), one process per container for as long as it is up or due to
//! restart — what dockerd's container monitor does, without a daemon.
//!
//! It detaches (a fork, a new session, a subreaper so the container's init
//! becomes its child) and holds the container's `owner.lock` (shared: the
//! collector leaves an owned container alone) and `supervisor.lock`
//! (exclusive: one supervisor per container). Then, for each run: wires
//! the network ([`Containers::wire`]: CNI ADD, the same host ports every
//! time), `berth create` with the init's stdout and stderr on pipes,
//! `berth start`, records the start in the state, copies both streams into
//! the CRI-format log and runs the health check every interval (`berth
//! exec` of its command, killed at its timeout), until the init exits.
//! The exit is recorded, `berth delete` runs the poststop hook that
//! releases the network, and the restart policy decides
//! ([`RestartPolicy::should_restart`]) whether, after the back-off, the
//! container runs again. `stop` and `kill` mark the state first, so what
//! they end stays ended.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::FlockArg;

use crate::clock;
use crate::containers::{Container, Containers};
use crate::error::{Error, Result};
use crate::health::{self, Health, HealthConfig, Probe};
use crate::restart::Backoff;
use crate::state::{ProcessId, StateFile};
use crate::store::lock_file;

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::Other(format!(
            "pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: fresh fds.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A pollable fd that becomes readable when process `pid` exits.
fn pidfd(pid: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Error::Other(format!(
            "pidfd_open {pid}: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The exit status of a child (or adopted) process as a shell reports it.
fn wait_status(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid on a child of ours.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return 255;
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// Splits what a stream produced into CRI log records: full lines (F),
/// and a partial one (P) when the stream ends mid-line.
fn records(stream: &str, data: &[u8], pending: &mut Vec<u8>) -> Vec<String> {
    pending.extend_from_slice(data);
    let now = || clock::rfc3339_nano(Some(clock::now()));
    let mut out = Vec::new();
    while let Some(i) = pending.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = pending.drain(..=i).collect();
        out.push(format!(
            "{} {stream} F {}",
            now(),
            String::from_utf8_lossy(&line[..line.len() - 1])
        ));
    }
    if !pending.is_empty() && data.is_empty() {
        out.push(format!(
            "{} {stream} P {}",
            now(),
            String::from_utf8_lossy(pending)
        ));
        pending.clear();
    }
    out
}

/// `berth-img internal supervise KEY`: forks; the first process returns
/// at once, the second supervises the container until it is down for
/// good. What the caller reads on our stdout is "ok" once the container
/// runs, or why it could not start.
pub fn supervise(root: &Path, runtime: &Path, key: &str) -> Result<()> {
    // SAFETY: berth-img is single-threaded here; the child only continues
    // this function.
    match unsafe { libc::fork() } {
        -1 => {
            return Err(Error::Other(format!(
                "fork: {}",
                std::io::Error::last_os_error()
            )))
        }
        0 => {}
        _ => return Ok(()),
    }
    // SAFETY: setsid and prctl with integer arguments.
    unsafe {
        libc::setsid();
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let cs = Containers::unstored(root, runtime);
    // SAFETY: dup of our stdout, which stays open.
    let mut ready = Some(unsafe { File::from_raw_fd(libc::dup(1)) });
    // A daemon must not hold its caller's stdio open; its own messages go
    // to a log beside the container's.
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in [0, 1] {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    if let Ok(log) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(cs.dir(key).join("supervisor.log"))
    {
        // SAFETY: dup2 onto stderr.
        unsafe { libc::dup2(log.as_raw_fd(), 2) };
    }
    if let Err(e) = run(&cs, key, &mut ready) {
        match ready.take() {
            Some(mut r) => {
                let _ = r.write_all(e.to_string().as_bytes());
            }
            None => tracing::error!("container {key}: {e}"),
        }
    }
    std::process::exit(0);
}

/// Runs the container kept as `key` again and again, as its policy says.
fn run(cs: &Containers, key: &str, ready: &mut Option<File>) -> Result<()> {
    let dir = cs.dir(key);
    let c = cs.load(key)?;
    let _one = lock_file(
        &dir.join("supervisor.lock"),
        FlockArg::LockExclusiveNonblock,
    )
    .map_err(|_| Error::Other(format!("container {} is already running", c.name)))?;
    let _owner = lock_file(&cs.owner_lock_path(key), FlockArg::LockShared)?;
    let state = cs.state_file(key);
    let me = ProcessId::of(std::process::id() as i32);
    let mut backoff = Backoff::default();
    loop {
        // Read again each time: a rename or a network connect changes it.
        let c = cs.load(key)?;
        let (init, streams) = match start_once(cs, &c) {
            Ok(started) => started,
            Err(e) => {
                state.update(|s| {
                    s.error = e.to_string();
                    s.restarting = false;
                })?;
                if ready.is_some() {
                    return Err(e);
                }
                tracing::error!("container {}: restart failed: {e}", c.name);
                break;
            }
        };
        let started = Instant::now();
        let s = state.update(|s| {
            s.init = ProcessId::of(init);
            s.supervisor = me;
            s.started_at = Some(clock::now());
            s.exit_code = 0;
            s.restarting = false;
            s.error.clear();
            s.health = c
                .healthcheck
                .as_ref()
                .map(|_| Health::starting(s.health.as_ref()));
        })?;
        if s.stopped_by_user {
            // `stop` came while it was starting.
            let _ = cs.berth().args(["kill", key, "SIGKILL"]).status();
        }
        if let Some(mut r) = ready.take() {
            let _ = r.write_all(b"ok");
        }
        let code = watch(cs, &c, (init, streams), &state)?;
        state.update(|s| {
            s.init = None;
            s.finished_at = Some(clock::now());
            s.exit_code = code;
        })?;
        // The poststop hook releases the network; make sure.
        let _ = cs
            .berth()
            .args(["delete", "--force", key])
            .stderr(Stdio::null())
            .status();
        if let Err(e) = cs.sandboxes().teardown(key) {
            tracing::warn!("container {}: {e}", c.name);
        }
        reap_strays();
        let s = state.load()?;
        if !c
            .restart_policy
            .should_restart(code, s.stopped_by_user, s.restart_count)
        {
            break;
        }
        let delay = backoff.next(started.elapsed());
        state.update(|s| {
            s.restarting = true;
            s.restart_count += 1;
        })?;
        if !sleep_unless_stopped(&state, delay) {
            state.update(|s| s.restarting = false)?;
            break;
        }
    }
    reap_strays();
    Ok(())
}

/// Sleeps `delay` in short steps; false if `stop` came meanwhile.
fn sleep_unless_stopped(state: &StateFile, delay: Duration) -> bool {
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if state.load().is_ok_and(|s| s.stopped_by_user) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(deadline - Instant::now()));
    }
    !state.load().is_ok_and(|s| s.stopped_by_user)
}

/// Reaps what was reparented to us and exited (processes of a `berth
/// exec` whose runtime process died); nothing else of ours runs now.
fn reap_strays() {
    let mut status = 0;
    // SAFETY: waitpid without blocking.
    while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
}

/// The read ends of the init's stdout and stderr.
struct Streams {
    out: OwnedFd,
    err: OwnedFd,
}

/// Wires the network, creates and starts the container with its output
/// on pipes; returns the init's PID (our child: we are its subreaper) and
/// the read ends.
fn start_once(cs: &Containers, c: &Container) -> Result<(i32, Streams)> {
    cs.wire(c)?;
    let undo = |e: Error| {
        let _ = cs
            .berth()
            .args(["delete", "--force", &c.key])
            .stderr(Stdio::null())
            .status();
        let _ = cs.sandboxes().teardown(&c.key);
        e
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let status = cs
        .berth()
        .args(["create", "--bundle"])
        .arg(cs.bundle_dir(&c.key))
        .arg(&c.key)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .status()
        .map_err(|e| undo(Error::Other(format!("run {}: {e}", cs.runtime.display()))))?;
    if !status.success() {
        // Nothing but berth wrote into the pipe: its error.
        let mut msg = String::new();
        let _ = File::from(err_r).read_to_string(&mut msg);
        return Err(undo(Error::Other(format!("berth create: {}", msg.trim()))));
    }
    // The init waits for start: its PID is known even if it exits at once.
    let o = cs
        .berth()
        .args(["state", &c.key])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| undo(Error::Other(format!("run {}: {e}", cs.runtime.display()))))?;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    let pid = v["pid"].as_i64().unwrap_or(0) as i32;
    if pid <= 0 {
        return Err(undo(Error::Other(format!(
            "container {}: no process after create",
            c.name
        ))));
    }
    let o = cs
        .berth()
        .args(["start", &c.key])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| undo(Error::Other(format!("run {}: {e}", cs.runtime.display()))))?;
    if !o.status.success() {
        return Err(undo(Error::Other(format!(
            "berth start: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))));
    }
    Ok((
        pid,
        Streams {
            out: out_r,
            err: err_r,
        },
    ))
}

/// A health probe under way.
struct Running {
    child: Child,
    pidfd: OwnedFd,
    output: Option<OwnedFd>,
    captured: Vec<u8>,
    started: i64,
    deadline: Instant,
    /// Where `berth exec` wrote the PID of the command in the container.
    pid_file: std::path::PathBuf,
}

/// Copies the init's output into the log and runs the health check until
/// the init exits; returns its exit status.
fn watch(
    cs: &Containers,
    c: &Container,
    (init, streams): (i32, Streams),
    state: &StateFile,
) -> Result<i32> {
    let Streams { out, err } = streams;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(cs.log_path(&c.key))
        .ok();
    let init_fd = pidfd(init)?;
    let mut streams = [
        (Some(out), "stdout", Vec::new()),
        (Some(err), "stderr", Vec::new()),
    ];
    let started_at = clock::now();
    let check = c.healthcheck.clone();
    let mut next_probe = check.as_ref().map(|h| Instant::now() + probe_gap(h, 0));
    let mut probe: Option<Running> = None;
    let mut code = None;
    let mut drain_until = None;
    let mut buf = [0u8; 8192];
    loop {
        let streams_open = streams.iter().any(|s| s.0.is_some());
        if code.is_some() && (!streams_open || drain_until.is_some_and(|d| Instant::now() >= d)) {
            break;
        }
        let now = Instant::now();
        let mut wake: Option<Instant> = drain_until;
        if code.is_none() {
            for t in [next_probe, probe.as_ref().map(|p| p.deadline)]
                .into_iter()
                .flatten()
            {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        }
        let timeout = wake.map_or(-1, |w| {
            w.saturating_duration_since(now).as_millis().min(60_000) as i32
        });
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let fd_of = |f: &Option<OwnedFd>| f.as_ref().map_or(-1, |f| f.as_raw_fd());
        for s in &streams {
            fds.push(poll_in(fd_of(&s.0)));
        }
        fds.push(poll_in(if code.is_none() {
            init_fd.as_raw_fd()
        } else {
            -1
        }));
        fds.push(poll_in(probe.as_ref().map_or(-1, |p| fd_of(&p.output))));
        fds.push(poll_in(probe.as_ref().map_or(-1, |p| p.pidfd.as_raw_fd())));
        // SAFETY: poll on pollfds we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            continue;
        }
        for (i, s) in streams.iter_mut().enumerate() {
            if fds[i].revents == 0 {
                continue;
            }
            let Some(fd) = &s.0 else { continue };
            // SAFETY: read into our buffer.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            let data = if n > 0 { &buf[..n as usize] } else { &buf[..0] };
            if n <= 0 {
                s.0 = None;
            }
            for rec in records(s.1, data, &mut s.2) {
                if let Some(l) = log.as_mut() {
                    let _ = writeln!(l, "{rec}");
                }
            }
        }
        if fds[2].revents != 0 && code.is_none() {
            code = Some(wait_status(init));
            // Whatever it wrote last is in the pipes; nothing escaped the
            // pid namespace should keep us long.
            drain_until = Some(Instant::now() + Duration::from_secs(2));
        }
        if let Some(p) = probe.as_mut() {
            if fds[3].revents != 0 {
                if let Some(fd) = &p.output {
                    // SAFETY: read into our buffer.
                    let n =
                        unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                    if n > 0 {
                        p.captured.extend_from_slice(&buf[..n as usize]);
                    } else {
                        p.output = None;
                    }
                }
            }
        }
        let probe_done = probe.is_some() && fds[4].revents != 0;
        let probe_late = probe.as_ref().is_some_and(|p| Instant::now() >= p.deadline);
        if probe_done || probe_late || (code.is_some() && probe.is_some()) {
            let p = probe.take().expect("a probe");
            let h = check.as_ref().expect("a health check");
            let result = finish_probe(p, h, !probe_done);
            if code.is_none() {
                let since = result_start(&result) - started_at;
                state.update(|s| {
                    if let Some(health) = s.health.as_mut() {
                        health.record(h, result, since);
                    }
                })?;
                next_probe = Some(Instant::now() + probe_gap(h, clock::now() - started_at));
            }
        }
        if code.is_none() && probe.is_none() && next_probe.is_some_and(|t| Instant::now() >= t) {
            let h = check.as_ref().expect("a health check");
            let paused = cs.status(c) == crate::containers::Status::Paused;
            if paused {
                // docker does not probe a frozen container.
                next_probe = Some(Instant::now() + probe_gap(h, clock::now() - started_at));
            } else {
                match start_probe(cs, c, h) {
                    Ok(p) => probe = Some(p),
                    Err(e) => {
                        tracing::warn!("container {}: health check: {e}", c.name);
                        next_probe =
                            Some(Instant::now() + Duration::from_nanos(h.interval() as u64));
                    }
                }
            }
        }
    }
    Ok(code.unwrap_or(255))
}

fn poll_in(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

fn result_start(p: &Probe) -> i64 {
    clock::parse_rfc3339(&p.start).unwrap_or_else(clock::now)
}

/// The wait before the next probe, `since_start` into the run: the start
/// interval while in the start period (when one is set), else the
/// interval.
fn probe_gap(h: &HealthConfig, since_start: i64) -> Duration {
    let gap = if h.start_period > 0 && since_start < h.start_period && h.start_interval > 0 {
        h.start_interval()
    } else {
        h.interval()
    };
    Duration::from_nanos(gap as u64)
}

/// Starts the health check's command in the container.
fn start_probe(cs: &Containers, c: &Container, h: &HealthConfig) -> Result<Running> {
    let command = h
        .command()
        .ok_or_else(|| Error::Other("no health check command".into()))?;
    let (out_r, out_w) = pipe()?;
    let err_w = out_w
        .try_clone()
        .map_err(|e| Error::Other(format!("dup: {e}")))?;
    let pid_file = cs
        .dir(&c.key)
        .join(crate::store::unique_name(".health-pid-"));
    let child = cs
        .berth()
        .arg("exec")
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&c.key)
        .args(&command)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .spawn()
        .map_err(|e| Error::Other(format!("run {}: {e}", cs.runtime.display())))?;
    Ok(Running {
        pidfd: pidfd(child.id() as i32)?,
        child,
        output: Some(out_r),
        captured: Vec::new(),
        started: clock::now(),
        deadline: Instant::now() + Duration::from_nanos(h.timeout() as u64),
        pid_file,
    })
}

/// Collects a probe: its exit status and output, or, when it ran past its
/// timeout, kills it (the command in the container too) and says so, as
/// docker does.
fn finish_probe(mut p: Running, h: &HealthConfig, timed_out: bool) -> Probe {
    if timed_out {
        if let Some(pid) = std::fs::read_to_string(&p.pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            // SAFETY: kill with integer arguments.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = p.child.kill();
    }
    let status = p.child.wait().ok().and_then(|s| s.code());
    if let Some(fd) = p.output.take() {
        let mut f = File::from(fd);
        // SAFETY: non-blocking reads of what is left in the pipe.
        unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        let _ = f.read_to_end(&mut p.captured);
    }
    let _ = std::fs::remove_file(&p.pid_file);
    let (exit_code, output) = if timed_out {
        (
            -1,
            format!(
                "Health check exceeded timeout ({})",
                clock::go_duration_string(h.timeout())
            ),
        )
    } else {
        (status.unwrap_or(-1), health::clip_output(&p.captured))
    };
    Probe {
        start: clock::rfc3339_nano(Some(p.started)),
        end: clock::rfc3339_nano(Some(clock::now())),
        exit_code,
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_records() {
        let mut pending = Vec::new();
        let r = records("stdout", b"one\ntw", &mut pending);
        assert_eq!(r.len(), 1);
        assert!(r[0].ends_with(" stdout F one"), "{}", r[0]);
        let r = records("stdout", b"o\n", &mut pending);
        assert!(r[0].ends_with(" stdout F two"), "{}", r[0]);
        let r = records("stderr", b"tail", &mut pending);
        assert!(r.is_empty());
        let r = records("stderr", b"", &mut pending);
        assert!(r[0].ends_with(" stderr P tail"), "{}", r[0]);
    }

    #[test]
    fn probes_use_the_start_interval_only_in_the_start_period() {
        let h = HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            interval: 10_000_000_000,
            start_period: 5_000_000_000,
            start_interval: 1_000_000_000,
            ..Default::default()
        };
        assert_eq!(probe_gap(&h, 0), Duration::from_secs(1));
        assert_eq!(probe_gap(&h, 6_000_000_000), Duration::from_secs(10));
        let plain = HealthConfig {
            start_interval: 0,
            ..h
        };
        assert_eq!(probe_gap(&plain, 0), Duration::from_secs(10));
    }
}
