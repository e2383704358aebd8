//! berth-conformance: an OCI runtime conformance suite that grades any
//! runc-compatible runtime (berth, runc, crun) by running real containers
//! and reading back, from inside and from the host, what they saw.

pub mod cases;
pub mod harness;

use std::io::IoSliceMut;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use harness::{Ctx, Verdict};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub status: Status,
    pub detail: String,
    pub seconds: f64,
}

pub struct Options {
    pub runtime: PathBuf,
    pub filter: Option<String>,
    pub jobs: usize,
    pub keep: bool,
    pub timeout: Duration,
}

/// Runs every (matching) case, `jobs` at a time; results in suite order.
pub fn run_suite(o: &Options) -> Vec<Outcome> {
    let all: Vec<cases::Case> = cases::all()
        .into_iter()
        .filter(|c| o.filter.as_deref().is_none_or(|f| c.name.contains(f)))
        .collect();
    let base = std::env::temp_dir().join(format!("berth-conformance-{}", std::process::id()));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; all.len()]);
    std::thread::scope(|s| {
        for _ in 0..o.jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = all.get(i) else { return };
                let outcome = run_case(case, o, &base);
                results.lock().expect("results")[i] = Some(outcome);
            });
        }
    });
    if !o.keep {
        let _ = std::fs::remove_dir_all(&base);
    }
    results
        .into_inner()
        .expect("results")
        .into_iter()
        .flatten()
        .collect()
}

fn run_case(case: &cases::Case, o: &Options, base: &Path) -> Outcome {
    let started = Instant::now();
    let dir_name = case.name.replace('/', "-");
    let mut ctx = match Ctx::new(&o.runtime, base, &dir_name, o.timeout) {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                name: case.name.clone(),
                status: Status::Fail,
                detail: format!("could not make the bundle: {e}"),
                seconds: 0.0,
            }
        }
    };
    // A panicking case is a failing case, and still cleans up.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.run)(&mut ctx)));
    ctx.cleanup();
    if !o.keep {
        let _ = std::fs::remove_dir_all(&ctx.dir);
    }
    let (status, detail) = match result {
        Ok(Ok(())) => (Status::Pass, String::new()),
        Ok(Err(Verdict::Fail(d))) => (Status::Fail, d),
        Ok(Err(Verdict::Skip(d))) => (Status::Skip, d),
        Err(_) => (Status::Fail, "the case panicked".into()),
    };
    Outcome {
        name: case.name.clone(),
        status,
        detail,
        seconds: started.elapsed().as_secs_f64(),
    }
}

pub fn counts(results: &[Outcome]) -> (usize, usize, usize) {
    let n = |s: Status| results.iter().filter(|r| r.status == s).count();
    (n(Status::Pass), n(Status::Fail), n(Status::Skip))
}

pub fn to_json(runtime: &Path, results: &[Outcome]) -> serde_json::Value {
    let (p, f, s) = counts(results);
    json!({
        "runtime": runtime.display().to_string(),
        "passed": p,
        "failed": f,
        "skipped": s,
        "cases": results.iter().map(|r| json!({"name": r.name, "status": r.status.as_str(), "detail": r.detail})).collect::<Vec<_>>(),
    })
}

/// Receives one fd sent with SCM_RIGHTS (the console socket's pty master).
pub fn recv_fd(socket: RawFd) -> Result<OwnedFd, String> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| e.to_string())?;
    for c in msg.cmsgs().map_err(|e| e.to_string())? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just gave us this fd.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err("no fd on the console socket".into())
}

/// Reads from `fd` until `want` appears or `limit` passes.
pub fn read_until(fd: OwnedFd, want: &str, limit: Duration) -> String {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a fd we own.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut f = std::fs::File::from(fd);
    let mut out = Vec::new();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        match f.read(&mut buf) {
            Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
        if String::from_utf8_lossy(&out).contains(want) {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
