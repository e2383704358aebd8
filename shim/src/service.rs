//! The Task service: each rpc drives `berth` through its runc command line
//! (with `--root`, `--log <bundle>/log.json --log-format json`, as
//! containerd's runc shim does), and the container's processes are reaped
//! here (the shim is their subreaper) to answer Wait and publish TaskExit.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_shim as shim;
use shim::api;
use shim::monitor::{monitor_subscribe, Subject, Subscription, Topic};
use shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use shim::protos::protobuf::{MessageDyn, MessageField};
use shim::protos::topics;
use shim::synchronous::publisher::RemotePublisher;
use shim::{Config, DeleteResponse, ExitSignal, Flags, StartOpts, TtrpcContext, TtrpcResult};

/// What `delete` (run without the create request, when containerd lost the
/// shim) needs: kept in the bundle at create time.
const SHIM_STATE: &str = "berth-shim.json";

#[derive(Clone, Default)]
struct Proc {
    pid: i32,
    exit: Option<(u32, Timestamp)>,
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
    /// The pty master of a terminal process.
    console: Option<Arc<OwnedFd>>,
    /// Set by CloseIO: the stdin copier drains the fifo, then closes the
    /// process's stdin so it reads EOF.
    stdin_closed: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// How to run the runtime for a task, from the create options.
#[derive(Clone, Debug)]
struct Runtime {
    binary: PathBuf,
    root: PathBuf,
    /// runc's `SystemdCgroup`: berth gets `--systemd-cgroup`.
    systemd_cgroup: bool,
}

struct Task {
    bundle: PathBuf,
    runtime: Runtime,
    init: Proc,
    execs: HashMap<String, Proc>,
    started: bool,
    paused: bool,
}

impl Task {
    /// The init (empty exec ID) or an exec process.
    fn process(&self, exec_id: &str) -> Option<&Proc> {
        if exec_id.is_empty() {
            Some(&self.init)
        } else {
            self.execs.get(exec_id)
        }
    }
}

#[derive(Default)]
struct Tasks {
    tasks: HashMap<String, Task>,
    /// Exits of processes not known yet: a short exec can end before
    /// `berth exec` has told us its PID.
    unclaimed: HashMap<i32, (u32, Timestamp)>,
}

/// The shim serves every container of a pod (same
/// io.kubernetes.cri.sandbox-id, read from the bundle, the cwd), as the
/// runc shim does; otherwise one container.
pub fn grouping(id: &str) -> String {
    std::fs::read_to_string("config.json")
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|c| {
            c["annotations"]["io.kubernetes.cri.sandbox-id"]
                .as_str()
                .map(String::from)
        })
        .unwrap_or_else(|| id.to_string())
}

#[derive(Clone)]
pub struct Service {
    exit: Arc<ExitSignal>,
    /// The shim's own socket, removed on exit (the crate looks for it in
    /// the bundle, which containerd may have removed by then; a stale
    /// socket makes the next shim of the same ID wait a second).
    socket: String,
    namespace: String,
    state: Arc<(Mutex<Tasks>, Condvar)>,
    publisher: Option<Arc<RemotePublisher>>,
}

fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut t = Timestamp::new();
    t.seconds = d.as_secs() as i64;
    t.nanos = d.subsec_nanos() as i32;
    t
}

fn ttrpc_err(
    code: shim::protos::ttrpc::Code,
    msg: impl Into<String>,
) -> shim::protos::ttrpc::Error {
    shim::protos::ttrpc::Error::RpcStatus(shim::protos::ttrpc::get_status(code, msg.into()))
}

fn internal(msg: impl Into<String>) -> shim::protos::ttrpc::Error {
    ttrpc_err(shim::protos::ttrpc::Code::INTERNAL, msg)
}

/// runc's shim's answer for a process that is gone, which containerd
/// treats as done rather than as a failure.
fn already_finished() -> shim::protos::ttrpc::Error {
    ttrpc_err(
        shim::protos::ttrpc::Code::NOT_FOUND,
        "process already finished: not found".to_string(),
    )
}

fn not_found(what: &str) -> shim::protos::ttrpc::Error {
    ttrpc_err(
        shim::protos::ttrpc::Code::NOT_FOUND,
        format!("{what}: not found"),
    )
}

/// `berth` next to the shim, else on PATH.
fn runtime_binary() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        let beside = exe.with_file_name("berth");
        if beside.exists() {
            return beside;
        }
    }
    PathBuf::from("berth")
}

fn runtime_root(namespace: &str) -> PathBuf {
    PathBuf::from("/run/containerd/berth").join(namespace)
}

/// Reads protobuf varints (for the two-field runtimeoptions message,
/// which containerd-shim-protos does not carry).
fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The varint fields of a protobuf message, by field number (bools, ints).
fn proto_varints(b: &[u8]) -> HashMap<u64, u64> {
    let mut out = HashMap::new();
    let mut i = 0;
    while i < b.len() {
        let Some(tag) = varint(b, &mut i) else { break };
        match tag & 7 {
            0 => {
                let Some(v) = varint(b, &mut i) else { break };
                out.insert(tag >> 3, v);
            }
            2 => {
                let Some(len) = varint(b, &mut i) else { break };
                i = i.saturating_add(len as usize);
            }
            5 => i += 4,
            1 => i += 8,
            _ => break,
        }
    }
    out
}

/// The string fields of a protobuf message, by field number.
fn proto_strings(b: &[u8]) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    let mut i = 0;
    while i < b.len() {
        let Some(tag) = varint(b, &mut i) else { break };
        match tag & 7 {
            0 => {
                if varint(b, &mut i).is_none() {
                    break;
                }
            }
            2 => {
                let Some(len) = varint(b, &mut i) else { break };
                let end = i.saturating_add(len as usize).min(b.len());
                out.insert(tag >> 3, String::from_utf8_lossy(&b[i..end]).into_owned());
                i = end;
            }
            5 => i += 4,
            1 => i += 8,
            _ => break,
        }
    }
    out
}

/// `KEY = "value"` and `KEY = true|false` lines of a runtime config file
/// (the TOML containerd's CRI plugin points `config_path` at; strings and
/// bools are all that matter here). Bools come back as "true"/"false".
fn toml_strings(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = match v {
                "true" | "false" => v.to_string(),
                _ => v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))?
                    .replace("\\\\", "\\"),
            };
            Some((k.trim().to_string(), v))
        })
        .collect()
}

/// The runtime binary, root and cgroup driver a task runs with: runc's
/// `Options` (`ctr --runc-binary`-style callers: BinaryName, Root,
/// SystemdCgroup) or the CRI plugin's `runtimeoptions.v1.Options` naming a
/// config file with the same keys; otherwise berth next to the shim,
/// /run/containerd/berth and cgroupfs. As with runc, the root gets the
/// namespace appended.
fn runtime_options(
    options: Option<&shim::protos::protobuf::well_known_types::any::Any>,
    namespace: &str,
) -> Result<Runtime, String> {
    let (mut binary, mut root, mut systemd_cgroup) = (String::new(), String::new(), false);
    if let Some(any) = options {
        let kind = any.type_url.rsplit('/').next().unwrap_or("");
        match kind {
            "containerd.runc.v1.Options" => {
                let f = proto_strings(&any.value);
                binary = f.get(&6).cloned().unwrap_or_default();
                root = f.get(&7).cloned().unwrap_or_default();
                systemd_cgroup = proto_varints(&any.value).get(&9) == Some(&1);
            }
            "runtimeoptions.v1.Options" => {
                let f = proto_strings(&any.value);
                if let Some(path) = f.get(&2).filter(|p| !p.is_empty()) {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| format!("runtime config {path}: {e}"))?;
                    let kv = toml_strings(&text);
                    binary = kv.get("BinaryName").cloned().unwrap_or_default();
                    root = kv.get("Root").cloned().unwrap_or_default();
                    systemd_cgroup = kv.get("SystemdCgroup").is_some_and(|v| v == "true");
                }
            }
            "" => {}
            other => log::warn!("ignoring runtime options of type {other}"),
        }
    }
    let binary = if binary.is_empty() {
        runtime_binary()
    } else if binary.contains('/') {
        PathBuf::from(binary)
    } else {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join(&binary))
            .find(|p| p.is_file())
            .ok_or_else(|| format!("runtime {binary} not found on PATH"))?
    };
    let root = if root.is_empty() {
        runtime_root(namespace)
    } else {
        PathBuf::from(root).join(namespace)
    };
    Ok(Runtime {
        binary,
        root,
        systemd_cgroup,
    })
}

/// The error of a failed create, start or exec as runc's shim words it
/// ("OCI runtime create failed: " and the runtime's last error): what the
/// CRI hands the kubelet, and what tools match on.
fn runtime_error(op: &str, e: String) -> String {
    format!("OCI runtime {op} failed: {e}")
}

/// The last error berth logged (containerd shows it to its user).
fn last_log_error(bundle: &Path) -> Option<String> {
    let text = std::fs::read_to_string(bundle.join("log.json")).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "error")
        .and_then(|v| v["msg"].as_str().map(String::from))
}

/// Runs berth and waits for it through the reaper's exit events (the
/// shim's signal thread reaps every child, so waitpid here would race it).
fn berth(
    rt: &Runtime,
    bundle: &Path,
    args: &[&str],
    stdio: Option<(Stdio, Stdio, Stdio)>,
) -> Result<String, String> {
    let sub: Subscription = monitor_subscribe(Topic::Pid).map_err(|e| e.to_string())?;
    let out_path = bundle.join(format!(".berth-out-{}", std::process::id()));
    let mut cmd = Command::new(&rt.binary);
    if rt.systemd_cgroup {
        cmd.arg("--systemd-cgroup");
    }
    cmd.arg("--root")
        .arg(&rt.root)
        .arg("--log")
        .arg(bundle.join("log.json"))
        .args(["--log-format", "json"])
        .args(args)
        .current_dir(bundle);
    match stdio {
        Some((i, o, e)) => {
            cmd.stdin(i).stdout(o).stderr(e);
        }
        None => {
            let f = File::create(&out_path).map_err(|e| e.to_string())?;
            cmd.stdin(Stdio::null()).stdout(f).stderr(Stdio::null());
        }
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("run {}: {e}", rt.binary.display()));
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            drop(sub);
            return Err(e);
        }
    };
    let pid = child.id() as i32;
    let mut code = -1;
    while let Ok(ev) = sub.rx.recv_timeout(Duration::from_secs(120)) {
        if let Subject::Pid(p) = ev.subject {
            if p == pid {
                code = ev.exit_code;
                break;
            }
        }
    }
    drop(sub);
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    if code == 0 {
        Ok(out)
    } else {
        Err(last_log_error(bundle)
            .unwrap_or_else(|| format!("berth {} exited {code}", args.first().unwrap_or(&""))))
    }
}

/// A console socket for `--console-socket`, in a short path (socket paths
/// are limited to 108 bytes; bundle paths can be longer), and a thread
/// that receives the pty master on it.
type PendingConsole = std::thread::JoinHandle<Result<OwnedFd, String>>;

fn console_socket() -> Result<(PathBuf, PendingConsole), String> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = PathBuf::from(format!(
        "/tmp/berth-shim-console-{}-{n}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path)
        .map_err(|e| format!("console socket: {e}"))?;
    let handle = std::thread::spawn(move || {
        let (conn, _) = listener.accept().map_err(|e| e.to_string())?;
        recv_fd(conn.as_raw_fd())
    });
    Ok((path, handle))
}

fn recv_fd(socket: RawFd) -> Result<OwnedFd, String> {
    let mut buf = [0u8; 4096];
    let mut cmsg = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: recvmsg into buffers we own; the control message is read with
    // the CMSG macros.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = cmsg.len();
        if libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC) < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return Err("no fd on the console socket".into());
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const RawFd);
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Copies the pty to the stdout fifo, and the stdin fifo to the pty, until
/// the container side hangs up.
fn copy_console(master: &Arc<OwnedFd>, p: &Proc) {
    let open = |path: &str| {
        let path = if path.is_empty() { "/dev/null" } else { path };
        OpenOptions::new().read(true).write(true).open(path)
    };
    let pty = |m: &Arc<OwnedFd>| -> Option<File> { m.try_clone().ok().map(File::from) };
    if let (Ok(mut out), Some(mut from)) = (open(&p.stdout), pty(master)) {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut out);
        });
    }
    if !p.stdin.is_empty() {
        if let (Ok(mut input), Some(mut to)) = (open(&p.stdin), pty(master)) {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut input, &mut to);
            });
        }
    }
}

/// CPU time on cgroup v1 and hybrid hosts, as runc's shim reports it: the
/// cpuacct hierarchy's usage (ns), per CPU, and user/system time (clock
/// ticks, in ns), with cpu.stat's throttled time. The crate's collector
/// reads cgroup v2's cpu.stat keys only: without this the CRI's stats (and
/// the kubelet's metrics) showed no CPU use at all.
fn v1_cpu(pid: i32, m: &mut shim::protos::cgroups::metrics::Metrics) {
    let Some(acct) = crate::oom::v1_dir(pid, "cpuacct") else {
        return;
    };
    let read = |f: &str| std::fs::read_to_string(acct.join(f)).unwrap_or_default();
    let cpu = m.cpu.mut_or_insert_default();
    let usage = cpu.usage.mut_or_insert_default();
    usage.total = read("cpuacct.usage").trim().parse().unwrap_or(0);
    usage.per_cpu = read("cpuacct.usage_percpu")
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    for l in read("cpuacct.stat").lines() {
        if let Some((k, v)) = l.split_once(' ') {
            let ns = v.trim().parse::<u64>().unwrap_or(0) * (1_000_000_000 / hz);
            match k {
                "user" => usage.user = ns,
                "system" => usage.kernel = ns,
                _ => {}
            }
        }
    }
    if let Some(dir) = crate::oom::v1_dir(pid, "cpu") {
        let stat = std::fs::read_to_string(dir.join("cpu.stat")).unwrap_or_default();
        let throttled = stat.lines().find_map(|l| l.strip_prefix("throttled_time "));
        if let Some(t) = throttled.and_then(|t| t.trim().parse().ok()) {
            cpu.throttling.mut_or_insert_default().throttled_time = t;
        }
    }
}

/// Unmounts everything stacked on the bundle's rootfs.
fn unmount_rootfs(rootfs: &Path) {
    let Ok(c) = std::ffi::CString::new(rootfs.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // SAFETY: umount2 on a path we own; stops at EINVAL (nothing mounted).
    while unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {}
}

/// Decodes %XX escapes of a URI component.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `binary:///path/to/logger?key=value`: containerd's binary log driver.
/// The logger gets the process's stdout and stderr as fds 3 and 4 and
/// closes fd 5 once it is ready; CONTAINER_ID and CONTAINER_NAMESPACE name
/// the container, the query becomes its arguments (`key value`).
fn binary_logger(uri: &str, id: &str, namespace: &str) -> std::io::Result<(File, File)> {
    use std::os::unix::process::CommandExt;
    let rest = uri.trim_start_matches("binary://");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut args = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        args.push(percent_decode(k));
        if !v.is_empty() {
            args.push(percent_decode(v));
        }
    }
    let pipe = || -> std::io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fds we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fresh fds from pipe2.
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];
    let mut cmd = Command::new(percent_decode(path));
    cmd.args(&args)
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for (i, fd) in fds.iter().enumerate() {
                // dup2 clears close-on-exec on the target.
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()?;
    drop((out_r, err_r, ready_w));
    // Wait (bounded, as containerd does) for the logger to say it is ready.
    let mut ready = File::from(ready_r);
    let mut pfd = libc::pollfd {
        fd: ready.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one fd we own.
    if unsafe { libc::poll(&mut pfd, 1, 10_000) } <= 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "binary logger did not become ready",
        ));
    }
    let _ = std::io::Read::read(&mut ready, &mut [0u8; 1]);
    Ok((File::from(out_w), File::from(err_w)))
}

/// The process's stdin: a pipe fed from containerd's stdin fifo by a
/// thread, so that the process sees EOF when containerd's side closes the
/// fifo or asks for CloseIO. The fifo is opened for reading without
/// blocking; Linux reports POLLHUP on it only after a writer has come and
/// gone, so a slow client does not cause an early EOF.
fn stdin_pipe(fifo: &str) -> std::io::Result<(File, Arc<std::sync::atomic::AtomicBool>)> {
    let src = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(fifo)?;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh fds from pipe2.
    let (r, w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = closed.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut src, mut w) = (src, w);
        let mut buf = [0u8; 32 << 10];
        loop {
            let mut pfds = [
                libc::pollfd {
                    fd: src.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: w.as_raw_fd(),
                    events: 0,
                    revents: 0,
                },
            ];
            // SAFETY: poll on fds we own.
            unsafe { libc::poll(pfds.as_mut_ptr(), 2, 100) };
            if pfds[1].revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                return; // the process closed its stdin or is gone
            }
            let ready = pfds[0].revents;
            if ready & libc::POLLIN != 0 {
                match src.read(&mut buf) {
                    Ok(0) => return, // every writer closed: EOF
                    Ok(n) => {
                        if w.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            } else if ready & libc::POLLHUP != 0 {
                return;
            }
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                return; // CloseIO, and nothing left to copy
            }
        }
    });
    Ok((r, closed))
}

/// Opens a process's stdio fifos (containerd made them and holds their
/// other ends); an empty path is /dev/null. O_RDWR never blocks on a fifo.
type StdinCloser = Option<Arc<std::sync::atomic::AtomicBool>>;

fn stdio_of(
    p: &Proc,
    id: &str,
    namespace: &str,
) -> std::io::Result<(Stdio, Stdio, Stdio, StdinCloser)> {
    let open = |path: &str| -> std::io::Result<File> {
        // `ctr run --log-uri file:///path`: output appended to a file.
        if let Some(file) = path.strip_prefix("file://") {
            return OpenOptions::new()
                .create(true)
                .append(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(file);
        }
        let path = if path.is_empty() { "/dev/null" } else { path };
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
    };
    let (stdin, closer): (Stdio, StdinCloser) = if p.stdin.is_empty() {
        (open("")?.into(), None)
    } else {
        let (r, c) = stdin_pipe(&p.stdin)?;
        (r.into(), Some(c))
    };
    if p.stdout.starts_with("binary://") {
        let (out, err) = binary_logger(&p.stdout, id, namespace)?;
        return Ok((stdin, out.into(), err.into(), closer));
    }
    Ok((
        stdin,
        open(&p.stdout)?.into(),
        open(&p.stderr)?.into(),
        closer,
    ))
}

/// Runs the berth command that starts process `p` (`create`, or `exec
/// --detach`; `args` stop before the container ID) with its stdio wired:
/// through a console socket whose pty master is then copied to and from
/// containerd's fifos for a terminal, else the fifos (or log driver)
/// themselves.
fn launch(
    rt: &Runtime,
    bundle: &Path,
    args: &[&str],
    id: &str,
    namespace: &str,
    p: &mut Proc,
) -> Result<(), String> {
    if p.terminal {
        let (sock, pending) = console_socket()?;
        let s = sock.display().to_string();
        let mut args = args.to_vec();
        args.extend(["--console-socket", &s, id]);
        let null = Stdio::null;
        let r = berth(rt, bundle, &args, Some((null(), null(), null())));
        let _ = std::fs::remove_file(&sock);
        r?;
        let master = pending.join().map_err(|_| "console thread".to_string())??;
        let master = Arc::new(master);
        copy_console(&master, p);
        p.console = Some(master);
    } else {
        let (i, o, e, closer) =
            stdio_of(p, id, namespace).map_err(|e| format!("open stdio: {e}"))?;
        p.stdin_closed = closer;
        let mut args = args.to_vec();
        args.push(id);
        berth(rt, bundle, &args, Some((i, o, e)))?;
    }
    Ok(())
}

/// The PID berth wrote to `--pid-file` (0 if it is missing).
fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

impl Service {
    fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        if let Some(p) = &self.publisher {
            if let Err(e) = p.publish(shim::Context::default(), topic, &self.namespace, event) {
                log::warn!("publish {topic}: {e}");
            }
        }
    }

    fn root(&self) -> PathBuf {
        runtime_root(&self.namespace)
    }

    /// Records exits of the processes this shim supervises, wakes Wait
    /// callers, and publishes TaskExit.
    fn watch_exits(self) {
        let Ok(sub) = monitor_subscribe(Topic::Pid) else {
            return;
        };
        std::thread::spawn(move || {
            while let Ok(ev) = sub.rx.recv() {
                let Subject::Pid(pid) = ev.subject else {
                    continue;
                };
                let (lock, cvar) = &*self.state;
                let mut tasks = lock.lock().expect("tasks");
                let mut event = None;
                let stamp = now();
                for (id, t) in tasks.tasks.iter_mut() {
                    if t.init.pid == pid && t.init.exit.is_none() {
                        t.init.exit = Some((ev.exit_code as u32, stamp.clone()));
                        event = Some((id.clone(), id.clone(), stamp.clone(), ev.exit_code));
                    }
                    for (eid, p) in t.execs.iter_mut() {
                        if p.pid == pid && p.exit.is_none() {
                            p.exit = Some((ev.exit_code as u32, stamp.clone()));
                            event = Some((id.clone(), eid.clone(), stamp.clone(), ev.exit_code));
                        }
                    }
                }
                if event.is_none() {
                    tasks.unclaimed.insert(pid, (ev.exit_code as u32, stamp));
                }
                drop(tasks);
                cvar.notify_all();
                if let Some((cid, eid, stamp, code)) = event {
                    self.publish_exit(cid, eid, pid, code as u32, stamp);
                }
            }
        });
    }

    fn publish_exit(&self, cid: String, eid: String, pid: i32, code: u32, stamp: Timestamp) {
        let mut e = TaskExit::new();
        e.container_id = cid;
        e.id = eid;
        e.pid = pid as u32;
        e.exit_status = code;
        e.exited_at = MessageField::some(stamp);
        self.publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(e));
    }

    /// Runs a berth command about task `id` (in its bundle, with its log).
    fn berth_for(&self, id: &str, args: &[&str]) -> TtrpcResult<String> {
        let (bundle, runtime) = self.with_task(id, |t| (t.bundle.clone(), t.runtime.clone()))?;
        berth(&runtime, &bundle, args, None).map_err(internal)
    }

    fn with_task<R>(&self, id: &str, f: impl FnOnce(&mut Task) -> R) -> TtrpcResult<R> {
        let mut tasks = self.state.0.lock().expect("tasks");
        let t = tasks.tasks.get_mut(id).ok_or_else(|| not_found(id))?;
        Ok(f(t))
    }
}

impl shim::Shim for Service {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Service {
            exit: Arc::new(ExitSignal::default()),
            socket: shim::socket_address(&args.address, &args.namespace, &grouping(&args.id)),
            namespace: args.namespace.clone(),
            state: Arc::new((Mutex::new(Tasks::default()), Condvar::new())),
            publisher: None,
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> Result<String, shim::Error> {
        let grouping = opts.id.clone();
        let (_pid, address) = shim::spawn(opts, &grouping, Vec::new())?;
        Ok(address)
    }

    /// containerd lost the shim: force-delete the container and report it
    /// killed, reading what it needs from the bundle (the cwd).
    fn delete_shim(&mut self) -> Result<DeleteResponse, shim::Error> {
        let bundle = std::env::current_dir().unwrap_or_default();
        let saved: serde_json::Value = std::fs::read_to_string(bundle.join(SHIM_STATE))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let runtime = saved["runtime"]
            .as_str()
            .map(PathBuf::from)
            .unwrap_or_else(runtime_binary);
        let root = saved["root"]
            .as_str()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root());
        let id = saved["id"].as_str().unwrap_or_default().to_string();
        if !id.is_empty() {
            let mut cmd = Command::new(&runtime);
            if saved["systemd_cgroup"] == true {
                cmd.arg("--systemd-cgroup");
            }
            let _ = cmd
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force", &id])
                .status();
        }
        unmount_rootfs(&bundle.join("rootfs"));
        let mut r = DeleteResponse::new();
        r.exit_status = 137;
        r.exited_at = MessageField::some(now());
        Ok(r)
    }

    fn wait(&mut self) {
        self.exit.wait();
        let _ = std::fs::remove_file(self.socket.trim_start_matches("unix://"));
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        let mut s = self.clone();
        s.publisher = Some(Arc::new(publisher));
        s.clone().watch_exits();
        s
    }
}

impl shim::Task for Service {
    fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self.with_task(&req.id, |t| t.init.pid).unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: task_pid as u32,
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        if self.state.0.lock().expect("tasks").tasks.is_empty() {
            self.exit.signal();
        }
        Ok(api::Empty::default())
    }

    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let bundle = PathBuf::from(&req.bundle);
        let rootfs = bundle.join("rootfs");
        for m in &req.rootfs {
            std::fs::create_dir_all(&rootfs).map_err(|e| internal(e.to_string()))?;
            shim::mount::mount_rootfs(
                Some(m.type_.as_str()),
                Some(m.source.as_str()),
                &m.options,
                &rootfs,
            )
            .map_err(|e| internal(format!("mount rootfs: {e}")))?;
        }
        let runtime = runtime_options(req.options.as_ref(), &self.namespace).map_err(internal)?;
        let saved = serde_json::json!({
            "runtime": runtime.binary,
            "root": runtime.root,
            "systemd_cgroup": runtime.systemd_cgroup,
            "id": req.id,
        });
        let _ = std::fs::write(bundle.join(SHIM_STATE), saved.to_string());
        let mut init = Proc {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
            ..Default::default()
        };
        let pid_file = bundle.join("init.pid");
        let b = bundle.display().to_string();
        let pf = pid_file.display().to_string();
        let args = ["create", "--bundle", &b, "--pid-file", &pf];
        launch(
            &runtime,
            &bundle,
            &args,
            &req.id,
            &self.namespace,
            &mut init,
        )
        .map_err(|e| internal(runtime_error("create", e)))?;
        let pid = read_pid(&pid_file);
        init.pid = pid;
        self.state.0.lock().expect("tasks").tasks.insert(
            req.id.clone(),
            Task {
                bundle: bundle.clone(),
                runtime,
                init,
                execs: HashMap::new(),
                started: false,
                paused: false,
            },
        );
        let mut e = TaskCreate::new();
        e.container_id = req.id.clone();
        e.bundle = req.bundle.clone();
        e.pid = pid as u32;
        self.publish(topics::TASK_CREATE_EVENT_TOPIC, Box::new(e));
        // Watched from create, before the program runs: an OOM kill in its
        // first milliseconds is still reported.
        let (svc, cid) = (self.clone(), req.id.clone());
        let watched = crate::oom::watch(pid, move || {
            let mut e = TaskOOM::new();
            e.container_id = cid.clone();
            svc.publish(topics::TASK_OOM_EVENT_TOPIC, Box::new(e));
        });
        if let Err(e) = watched {
            log::warn!("no OOM events for {}: {e}", req.id);
        }
        Ok(api::CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let (bundle, exec, runtime) = self.with_task(&req.id, |t| {
            (
                t.bundle.clone(),
                t.execs.get(&req.exec_id).cloned(),
                t.runtime.clone(),
            )
        })?;
        if req.exec_id.is_empty() {
            berth(&runtime, &bundle, &["start", &req.id], None)
                .map_err(|e| internal(runtime_error("start", e)))?;
            let pid = self.with_task(&req.id, |t| {
                t.started = true;
                t.init.pid
            })?;
            let mut e = TaskStart::new();
            e.container_id = req.id.clone();
            e.pid = pid as u32;
            self.publish(topics::TASK_START_EVENT_TOPIC, Box::new(e));
            crate::trim::release_code_pages_soon();
            return Ok(api::StartResponse {
                pid: pid as u32,
                ..Default::default()
            });
        }
        let mut exec = exec.ok_or_else(|| not_found(&req.exec_id))?;
        let spec = bundle.join(format!("exec-{}.json", req.exec_id));
        let pid_file = bundle.join(format!("exec-{}.pid", req.exec_id));
        let (s, pf) = (spec.display().to_string(), pid_file.display().to_string());
        let args = ["exec", "--process", &s, "--detach", "--pid-file", &pf];
        if let Err(e) = launch(
            &runtime,
            &bundle,
            &args,
            &req.id,
            &self.namespace,
            &mut exec,
        ) {
            // An exec that failed to start is over, as in runc's shim (it
            // releases the exec's waiters): containerd deletes it with
            // WithProcessKill, which waits for it, and would otherwise
            // wait out its one-minute cleanup context (a CRI ExecSync of
            // a missing command took 60 s).
            if let Some(p) = self.state.0.lock().expect("tasks").tasks.get_mut(&req.id) {
                if let Some(p) = p.execs.get_mut(&req.exec_id) {
                    p.exit = Some((255, now()));
                }
            }
            self.state.1.notify_all();
            return Err(internal(runtime_error("exec", e)));
        }
        let pid = read_pid(&pid_file);
        let already_exited = {
            let mut tasks = self.state.0.lock().expect("tasks");
            let early = tasks.unclaimed.remove(&pid);
            let t = tasks
                .tasks
                .get_mut(&req.id)
                .ok_or_else(|| not_found(&req.id))?;
            if let Some(p) = t.execs.get_mut(&req.exec_id) {
                p.pid = pid;
                p.exit = early.clone();
                p.console = exec.console;
                p.stdin_closed = exec.stdin_closed;
            }
            early
        };
        self.state.1.notify_all();
        let mut e = TaskExecStarted::new();
        e.container_id = req.id.clone();
        e.exec_id = req.exec_id.clone();
        e.pid = pid as u32;
        self.publish(topics::TASK_EXEC_STARTED_EVENT_TOPIC, Box::new(e));
        if let Some((code, at)) = already_exited {
            self.publish_exit(req.id.clone(), req.exec_id.clone(), pid, code, at);
        }
        Ok(api::StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        let bundle = self.with_task(&req.id, |t| t.bundle.clone())?;
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        std::fs::write(bundle.join(format!("exec-{}.json", req.exec_id)), spec)
            .map_err(|e| internal(e.to_string()))?;
        self.with_task(&req.id, |t| {
            t.execs.insert(
                req.exec_id.clone(),
                Proc {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                },
            );
        })?;
        let mut e = TaskExecAdded::new();
        e.container_id = req.id.clone();
        e.exec_id = req.exec_id.clone();
        self.publish(topics::TASK_EXEC_ADDED_EVENT_TOPIC, Box::new(e));
        Ok(api::Empty::default())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let (lock, cvar) = &*self.state;
        let mut tasks = lock.lock().expect("tasks");
        loop {
            let t = tasks.tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
            let p = t.process(&req.exec_id);
            let p = p.ok_or_else(|| not_found(&req.exec_id))?;
            if let Some((code, at)) = &p.exit {
                return Ok(api::WaitResponse {
                    exit_status: *code,
                    exited_at: MessageField::some(at.clone()),
                    ..Default::default()
                });
            }
            tasks = cvar.wait(tasks).expect("tasks");
        }
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        // (pid, exited) of the process the request names.
        let target = self.with_task(&req.id, |t| {
            t.process(&req.exec_id).map(|p| (p.pid, p.exit.is_some()))
        })?;
        let (pid, exited) = target.ok_or_else(|| not_found(&req.exec_id))?;
        // What containerd ignores, as runc's shim answers it: a process
        // that ran and ended, or an exec that never started (whose pid is
        // 0: kill(0, sig) would signal the shim's own process group).
        if exited || pid <= 0 {
            return Err(already_finished());
        }
        if !req.exec_id.is_empty() {
            // SAFETY: kill(2) of a process this shim started, pid > 0.
            unsafe { libc::kill(pid, req.signal as i32) };
            return Ok(api::Empty::default());
        }
        let sig = req.signal.to_string();
        let mut args = vec!["kill"];
        if req.all {
            args.push("--all");
        }
        args.push(&req.id);
        args.push(&sig);
        self.berth_for(&req.id, &args)?;
        Ok(api::Empty::default())
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        if !req.exec_id.is_empty() {
            let p = self
                .with_task(&req.id, |t| t.execs.remove(&req.exec_id))?
                .ok_or_else(|| not_found(&req.exec_id))?;
            let (code, at) = p.exit.unwrap_or((0, now()));
            return Ok(api::DeleteResponse {
                pid: p.pid as u32,
                exit_status: code,
                exited_at: MessageField::some(at),
                ..Default::default()
            });
        }
        let (bundle, init) = self.with_task(&req.id, |t| (t.bundle.clone(), t.init.clone()))?;
        self.berth_for(&req.id, &["delete", "--force", &req.id])?;
        unmount_rootfs(&bundle.join("rootfs"));
        self.state.0.lock().expect("tasks").tasks.remove(&req.id);
        let (code, at) = init.exit.unwrap_or((137, now()));
        let mut e = TaskDelete::new();
        e.container_id = req.id.clone();
        e.pid = init.pid as u32;
        e.exit_status = code;
        e.exited_at = MessageField::some(at.clone());
        self.publish(topics::TASK_DELETE_EVENT_TOPIC, Box::new(e));
        Ok(api::DeleteResponse {
            pid: init.pid as u32,
            exit_status: code,
            exited_at: MessageField::some(at),
            ..Default::default()
        })
    }

    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        self.with_task(&req.id, |t| {
            let p = t.process(&req.exec_id);
            let Some(p) = p else {
                return Err(not_found(&req.exec_id));
            };
            let status = match (&p.exit, t.started || !req.exec_id.is_empty(), t.paused) {
                (Some(_), _, _) => api::Status::STOPPED,
                (None, _, true) => api::Status::PAUSED,
                (None, true, _) if p.pid > 0 => api::Status::RUNNING,
                _ => api::Status::CREATED,
            };
            let (code, at) = p.exit.clone().unwrap_or((0, Timestamp::new()));
            Ok(api::StateResponse {
                id: req.id.clone(),
                bundle: t.bundle.display().to_string(),
                pid: p.pid as u32,
                status: status.into(),
                stdin: p.stdin.clone(),
                stdout: p.stdout.clone(),
                stderr: p.stderr.clone(),
                terminal: p.terminal,
                exit_status: code,
                exited_at: MessageField::some(at),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            })
        })?
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let out = self.berth_for(&req.id, &["ps", "--format", "json", &req.id])?;
        let pids: Vec<u32> = serde_json::from_str(out.trim()).unwrap_or_default();
        Ok(api::PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| shim::protos::types::task::ProcessInfo {
                    pid,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        self.berth_for(&req.id, &["pause", &req.id])?;
        self.with_task(&req.id, |t| t.paused = true)?;
        let mut e = TaskPaused::new();
        e.container_id = req.id.clone();
        self.publish(topics::TASK_PAUSED_EVENT_TOPIC, Box::new(e));
        Ok(api::Empty::default())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        self.berth_for(&req.id, &["resume", &req.id])?;
        self.with_task(&req.id, |t| t.paused = false)?;
        let mut e = TaskResumed::new();
        e.container_id = req.id.clone();
        self.publish(topics::TASK_RESUMED_EVENT_TOPIC, Box::new(e));
        Ok(api::Empty::default())
    }

    /// Ends the process's stdin (once what was written is delivered).
    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        let closer = self.with_task(&req.id, |t| {
            let p = t.process(&req.exec_id);
            p.and_then(|p| p.stdin_closed.clone())
        })?;
        if let Some(c) = closer {
            c.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(api::Empty::default())
    }

    /// Metrics read straight from the container's cgroup, as the runc
    /// shim does: the cgroup v1 Metrics on v1 and hybrid hosts, the v2
    /// Metrics on cgroup2 hosts.
    fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let pid = self.with_task(&req.id, |t| t.init.pid)?;
        if let Some(dir) = crate::metrics_v2::v2_dir(pid) {
            let any = shim::protos::protobuf::well_known_types::any::Any {
                type_url: "io.containerd.cgroups.v2.Metrics".into(),
                value: crate::metrics_v2::encode(&dir),
                ..Default::default()
            };
            return Ok(api::StatsResponse {
                stats: MessageField::some(any),
                ..Default::default()
            });
        }
        let mut metrics =
            shim::cgroup::collect_metrics(pid as u32).map_err(|e| internal(e.to_string()))?;
        v1_cpu(pid, &mut metrics);
        let any =
            shim::util::convert_to_any(Box::new(metrics)).map_err(|e| internal(e.to_string()))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    /// New limits, through `berth update --resources FILE`.
    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        let bundle = self.with_task(&req.id, |t| t.bundle.clone())?;
        let resources = req
            .resources
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        let file = bundle.join("update-resources.json");
        std::fs::write(&file, resources).map_err(|e| internal(e.to_string()))?;
        let f = file.display().to_string();
        self.berth_for(&req.id, &["update", "--resources", &f, &req.id])?;
        Ok(api::Empty::default())
    }

    fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        let console = self.with_task(&req.id, |t| {
            let p = t.process(&req.exec_id);
            p.and_then(|p| p.console.clone())
        })?;
        if let Some(m) = console {
            let ws = libc::winsize {
                ws_row: req.height as u16,
                ws_col: req.width as u16,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCSWINSZ on the pty master we hold.
            unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
        Ok(api::Empty::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_options_with_systemd_cgroup() {
        // containerd.runc.v1.Options { binary_name: "/bin/true", root: "/r", systemd_cgroup: true }
        let mut value = vec![0x32, 9];
        value.extend_from_slice(b"/bin/true");
        value.extend_from_slice(&[0x3a, 2]);
        value.extend_from_slice(b"/r");
        value.extend_from_slice(&[0x48, 1]);
        let any = shim::protos::protobuf::well_known_types::any::Any {
            type_url: "type.googleapis.com/containerd.runc.v1.Options".into(),
            value,
            ..Default::default()
        };
        let rt = runtime_options(Some(&any), "k8s.io").unwrap();
        assert_eq!(rt.binary, PathBuf::from("/bin/true"));
        assert_eq!(rt.root, PathBuf::from("/r/k8s.io"));
        assert!(rt.systemd_cgroup);
    }

    #[test]
    fn cri_config_file_keys() {
        let kv = toml_strings(
            "BinaryName = \"/usr/bin/berth\"\nSystemdCgroup = true\n# x\nRoot = \"/run/b\"\n",
        );
        assert_eq!(kv["BinaryName"], "/usr/bin/berth");
        assert_eq!(kv["SystemdCgroup"], "true");
        assert_eq!(kv["Root"], "/run/b");
    }
}
