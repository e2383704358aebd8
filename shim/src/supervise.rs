//! `containerd-shim-berth-v2 supervise`: the shim without containerd, for
//! people running bundles by hand (and `berth-img run -d`). It detaches,
//! creates and starts the container through `berth`, writes its stdout and
//! stderr to a log in the CRI format (`<RFC3339Nano> <stream> <P|F> <text>`),
//! records the exit status, and deletes the container when it exits.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use clap::Parser;

#[derive(Parser)]
#[command(name = "containerd-shim-berth-v2 supervise")]
pub struct Args {
    /// The bundle to run.
    #[arg(long)]
    bundle: PathBuf,
    /// The container ID.
    #[arg(long)]
    id: String,
    /// The CRI-format log of stdout and stderr.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Where the exit status is written when the container exits.
    #[arg(long)]
    exit_file: Option<PathBuf>,
    /// The runtime (default: berth next to the shim, else on PATH).
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// The runtime's --root.
    #[arg(long, default_value = "/run/berth")]
    root: PathBuf,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds we then own.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        0,
        "pipe2"
    );
    // SAFETY: fresh fds.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Splits what a stream produced into CRI log records: full lines (F),
/// and a partial one (P) when a read ends mid-line.
fn records(stream: &str, data: &[u8], pending: &mut Vec<u8>) -> Vec<String> {
    pending.extend_from_slice(data);
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

pub fn main(args: &[String]) -> i32 {
    let args =
        Args::parse_from(std::iter::once("supervise".to_string()).chain(args.iter().cloned()));
    let runtime = args.runtime.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .map(|e| e.with_file_name("berth"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| "berth".into())
    });
    let (ready_r, ready_w) = pipe();
    // SAFETY: the shim is single-threaded here; the child only continues
    // this function.
    match unsafe { libc::fork() } {
        -1 => {
            eprintln!("supervise: fork: {}", std::io::Error::last_os_error());
            return 1;
        }
        0 => {}
        _ => {
            // The caller waits until the container started (or failed).
            drop(ready_w);
            let mut msg = String::new();
            let _ = std::fs::File::from(ready_r).read_to_string(&mut msg);
            if msg == "ok" {
                return 0;
            }
            eprintln!(
                "supervise: {}",
                if msg.is_empty() {
                    "the supervisor died"
                } else {
                    &msg
                }
            );
            return 1;
        }
    }
    drop(ready_r);
    // A daemon must not hold its caller's stdio open: whoever waits for
    // the caller's output would wait for the container's whole life.
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    // SAFETY: setsid and prctl with integer arguments.
    unsafe {
        libc::setsid();
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let mut ready = std::fs::File::from(ready_w);
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let berth = |cmd: &[&str], stdio: Option<(OwnedFd, OwnedFd)>| -> Result<(), String> {
        let mut c = Command::new(&runtime);
        c.arg("--root")
            .arg(&args.root)
            .args(cmd)
            .stdin(Stdio::null());
        match stdio {
            Some((o, e)) => c.stdout(Stdio::from(o)).stderr(Stdio::from(e)),
            None => c.stdout(Stdio::null()).stderr(Stdio::piped()),
        };
        let out = c
            .output()
            .map_err(|e| format!("run {}: {e}", runtime.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "berth {}: {}",
                cmd[0],
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let bundle = args.bundle.display().to_string();
    let created = berth(
        &["create", "--bundle", &bundle, &args.id],
        Some((out_w, err_w)),
    );
    let started = created.and_then(|()| berth(&["start", &args.id], None));
    if let Err(e) = started {
        let _ = berth(&["delete", "--force", &args.id], None);
        let _ = ready.write_all(e.as_bytes());
        return 1;
    }
    let _ = ready.write_all(b"ok");
    drop(ready);

    // Copy both streams into the log until every writer is gone.
    let mut log = args.log.as_ref().and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    let mut streams = [
        (out_r, "stdout", Vec::new(), true),
        (err_r, "stderr", Vec::new(), true),
    ];
    let mut buf = [0u8; 8192];
    while streams.iter().any(|s| s.3) {
        let mut fds: Vec<libc::pollfd> = streams
            .iter()
            .map(|s| libc::pollfd {
                fd: if s.3 { s.0.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: poll on pollfds we own.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            continue;
        }
        for (i, s) in streams.iter_mut().enumerate() {
            if fds[i].revents == 0 {
                continue;
            }
            // SAFETY: read into our buffer.
            let n = unsafe { libc::read(s.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            let data = if n > 0 { &buf[..n as usize] } else { &buf[..0] };
            if n <= 0 {
                s.3 = false;
            }
            for rec in records(s.1, data, &mut s.2) {
                if let Some(l) = log.as_mut() {
                    let _ = writeln!(l, "{rec}");
                }
            }
        }
    }
    // The init (reparented to us) has exited: collect its status.
    let mut code = 0;
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our (adopted) children.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid <= 0 {
            break;
        }
        code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
    }
    if let Some(f) = &args.exit_file {
        let tmp = f.with_extension("tmp");
        if std::fs::write(&tmp, code.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, f);
        }
    }
    let _ = berth(&["delete", "--force", &args.id], None);
    0
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
        assert!(now().ends_with('Z') && now().len() == 30);
    }
}
