//! What the kubelet does to a node, through containerd's CRI plugin: a CRI
//! v1 client (`runtime.v1.RuntimeService` and `ImageService`, the k8s-cri
//! crate over containerd's unix socket) drives a private containerd whose
//! CRI config names three runtime handlers, and every flow runs with each:
//!
//! - `runc`: containerd's runc shim with Debian's runc, the reference;
//! - `berth-runc`: containerd's runc shim with berth as its binary;
//! - `berth`: containerd-shim-berth-v2 (found on containerd's PATH).
//!
//! Each flow checks the CRI's answers and the host (processes, mounts,
//! cgroups). `runc` runs first; where a value is compared with what runc
//! gave (`Cri::same_as_runc`), a difference is a failure unless a comment
//! says why it is allowed.
//!
//! Two lanes run this same code and differ only in configuration (`Lane`):
//! this host (containerd 1.6, no systemd, hybrid cgroups: cgroupfs,
//! host-network pods, cgroup parents as plain paths and as a `*.slice`) and
//! the VM lane (containerd 1.7, systemd, cgroup v2: `SystemdCgroup`, the
//! kubelet's pod slices, pod networking through CNI bridge + host-local).
//!
//! Four tests, each with one containerd (its root, state, sockets and CNI
//! config under a temporary directory) and the three handlers in turn:
//! pods (flows 1, 4, 5: run, status, list, restart as attempt 1, a
//! containerd restart, removal leaving nothing), containers of one pod
//! (flow 2 and the exec parts of 3), container lifecycle (3, 4: status,
//! logs, stats, updates, stops) and failures with bidirectional propagation
//! (5, 6). A failing handler does not stop the others; the test names each
//! one that failed, and shows the end of containerd's log.
//!
//! Environment: BERTH_CRI_CNI=1 gives this host pod networking as on the VM
//! lane (to try that setup here).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cri::image_service_client::ImageServiceClient;
use cri::runtime_service_client::RuntimeServiceClient;
use cri::security_profile::ProfileType;
use cri::{ContainerState, MountPropagation, NamespaceMode, NamespaceOption, PodSandboxState};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use tonic::transport::{Channel, Endpoint, Uri};

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-berth-v2");
const BUSYBOX: &str = "docker.io/library/busybox:latest";
const PAUSE: &str = "localhost/berth-pause:test";
/// The reference first: the other handlers are compared with what it did.
const HANDLERS: [&str; 3] = ["runc", "berth-runc", "berth"];
/// One CRI call; generous, as CI runs four tests per two cores (and the VM
/// lane emulates its CPUs).
const CALL_TIMEOUT: Duration = Duration::from_secs(180);
/// Waiting for the host or containerd to catch up.
const SETTLE: Duration = Duration::from_secs(60);

/// What differs between the host lane and the VM lane: configuration only.
#[derive(Clone, Copy, Debug)]
struct Lane {
    /// systemd is PID 1: handlers get `SystemdCgroup = true`, pods the
    /// kubelet's systemd-driver parents (`kubepods-besteffort-pod<uid>.slice`).
    systemd: bool,
    /// Pods get their own network namespace through CNI (bridge +
    /// host-local); otherwise host-network pods, and no CNI config at all.
    cni: bool,
}

impl Lane {
    /// systemd as PID 1 makes the VM lane. BERTH_CRI_CNI=1 gives this
    /// host's lane pod networking too (to try the VM lane's CNI setup
    /// here; not part of hack/test).
    fn detect() -> Lane {
        let systemd = Path::new("/run/systemd/system").exists();
        let cni = systemd || std::env::var_os("BERTH_CRI_CNI").is_some_and(|v| v == "1");
        Lane { systemd, cni }
    }
}

/// Nanoseconds since the epoch (the CRI's timestamps).
fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64
}

/// Polls `f` until it gives Some, for at most `limit`; panics with `what`.
fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    let deadline = t0 + limit;
    loop {
        if let Some(v) = f() {
            if t0.elapsed() > Duration::from_secs(5) {
                eprintln!("slow: {what}: {:.1}s", t0.elapsed().as_secs_f64());
            }
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A label (or annotation, sysctl) map.
fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Owned strings, as the CRI messages hold them.
fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The `Field:` line of /proc/PID/status, trimmed ("" if the process is gone).
fn proc_status(pid: i32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// The start time of a process (field 22 of /proc/PID/stat), to tell it
/// from a later process that reuses its PID.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split(' ').nth(19)?.parse().ok()
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Mount points of this (the host's) mount namespace.
fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .collect()
}

/// The lines of /proc/self/mountinfo that mention `needle`.
fn mountinfo_lines_with(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

/// Where each cgroup hierarchy is mounted: (controllers as /proc/PID/cgroup
/// names them, "" for cgroup2; mount point).
fn cgroup_mounts() -> Vec<(String, PathBuf)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for l in info.lines() {
        let Some((left, right)) = l.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        let (fstype, _src, opts) = (r.next(), r.next(), r.next().unwrap_or(""));
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        match fstype {
            Some("cgroup2") => out.push((String::new(), PathBuf::from(point))),
            Some("cgroup") => {
                let ctrls: Vec<&str> = opts
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains("atime"))
                    .collect();
                out.push((ctrls.join(","), PathBuf::from(point)));
            }
            _ => {}
        }
    }
    out
}

/// The lines of /proc/PID/cgroup: (controllers, path).
fn cgroup_lines(pid: i32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, c, p) = (f.next()?, f.next()?, f.next()?);
            Some((c.to_string(), p.to_string()))
        })
        .collect()
}

/// The host directory of a process's cgroup in the hierarchy that holds
/// `controller` (v1), or its cgroup2 directory when no v1 hierarchy does.
fn cgroup_dir(pid: i32, controller: &str) -> PathBuf {
    let mounts = cgroup_mounts();
    let lines = cgroup_lines(pid);
    let v1 = lines
        .iter()
        .find(|(c, _)| c.split(',').any(|x| x == controller));
    let (ctrls, path) = v1
        .or_else(|| lines.iter().find(|(c, _)| c.is_empty()))
        .unwrap_or_else(|| panic!("pid {pid} has no cgroup for {controller}: {lines:?}"));
    let mount = mounts
        .iter()
        .find(|(c, _)| {
            let mine: Vec<&str> = c.split(',').collect();
            c == ctrls || (!ctrls.is_empty() && ctrls.split(',').all(|x| mine.contains(&x)))
        })
        .unwrap_or_else(|| panic!("no mount for cgroup {ctrls:?}"));
    mount.1.join(path.trim_start_matches('/'))
}

/// Every host cgroup directory of a process whose path names `id` (the
/// ones its runtime made for it).
fn cgroup_dirs_naming(pid: i32, id: &str) -> Vec<PathBuf> {
    let mounts = cgroup_mounts();
    cgroup_lines(pid)
        .into_iter()
        .filter(|(_, p)| p.contains(id))
        .filter_map(|(c, p)| {
            let m = mounts.iter().find(|(mc, _)| *mc == c)?;
            Some(m.1.join(p.trim_start_matches('/')))
        })
        .collect()
}

fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// True on a pure cgroup v2 host (the VM lane); this host is hybrid, with
/// cpu and memory in v1 hierarchies.
fn unified_only() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Removes every cgroup directory whose name contains `tag`, deepest first
/// (rmdir fails on a cgroup with children or processes).
fn remove_cgroups_named(root: &Path, tag: &str) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let p = e.path();
        if e.file_name().to_string_lossy().contains(tag) {
            remove_cgroup_tree(&p);
        } else {
            remove_cgroups_named(&p, tag);
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_cgroup_tree(&e.path());
        }
    }
    // Processes still inside (a container whose shim died) are killed.
    for _ in 0..50 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs.lines().filter_map(|l| l.parse().ok()).collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: signalling a process of a container this test made.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir(dir);
}

/// A line of a container log in the CRI format:
/// `<RFC3339Nano time> <stdout|stderr> <F|P> <text>`.
#[derive(Debug, PartialEq)]
struct LogLine {
    stream: String,
    /// F: a full line; P: a partial one continued by the next.
    tag: String,
    text: String,
}

/// Parses a CRI log line; None if it is not one (a malformed timestamp, an
/// unknown stream or tag).
fn parse_cri_log_line(l: &str) -> Option<LogLine> {
    let mut f = l.splitn(4, ' ');
    let (time, stream, tag) = (f.next()?, f.next()?, f.next()?);
    let text = f.next().unwrap_or("");
    // 2006-01-02T15:04:05.999999999Z07:00 (Go's RFC3339Nano: fraction
    // optional, trailing zeros dropped; Z or a numeric offset).
    let b = time.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape {
        return None;
    }
    let mut rest = &time[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return None;
        }
        rest = &frac[n..];
    }
    let zone_ok = rest == "Z"
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':');
    if !zone_ok || !matches!(stream, "stdout" | "stderr") || !matches!(tag, "F" | "P") {
        return None;
    }
    Some(LogLine {
        stream: stream.into(),
        tag: tag.into(),
        text: text.into(),
    })
}

/// The lines of a container log file, each checked against the CRI format.
fn read_cri_log(path: &Path) -> Vec<LogLine> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            parse_cri_log_line(l)
                .unwrap_or_else(|| panic!("{}: not a CRI log line: {l:?}", path.display()))
        })
        .collect()
}

/// A pod the test ran, and what it saw of it on the host while it ran:
/// everything that must be gone once the pod is removed.
struct Pod {
    id: String,
    handler: String,
    config: cri::PodSandboxConfig,
    seen: RefCell<Seen>,
}

#[derive(Default, Debug)]
struct Seen {
    /// The sandbox and its containers' IDs (mounts naming them must go).
    ids: Vec<String>,
    /// Their processes, with start times.
    pids: Vec<(i32, u64)>,
    /// Cgroup directories the runtime made for them.
    cgroups: Vec<PathBuf>,
    /// The pod's shim socket, from the bundle's `address` file.
    shim_socket: Option<PathBuf>,
    /// The runtime's state directories of the pod's containers.
    state_dirs: Vec<PathBuf>,
}

impl Pod {
    /// The pod's namespace options (its containers get the same).
    fn pod_ns(&self) -> NamespaceOption {
        self.config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default()
    }

    /// The pod's cgroup parent.
    fn parent(&self) -> String {
        self.config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default()
    }

    /// The pod's log directory (containers log under it).
    fn log_dir(&self) -> PathBuf {
        PathBuf::from(&self.config.log_directory)
    }
}

/// A private containerd with the CRI plugin, and a CRI client to it. Drop
/// removes every pod, stops containerd and takes back whatever is left:
/// shims, container processes, mounts and cgroups named by the tag.
struct Cri {
    lane: Lane,
    /// Unique to this instance: in its directory, pod UIDs, cgroup names
    /// and the CNI bridge.
    tag: String,
    dir: PathBuf,
    sock: PathBuf,
    child: RefCell<Child>,
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    /// Values the reference handler (runc) gave, by key.
    reference: RefCell<HashMap<String, String>>,
}

/// runc's path (the reference handler's binary).
fn runc_path() -> String {
    for p in ["/usr/sbin/runc", "/usr/bin/runc"] {
        if Path::new(p).exists() {
            return p.to_string();
        }
    }
    panic!("runc is not installed (hack/deps installs it)");
}

impl Cri {
    fn start() -> Cri {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let lane = Lane::detect();
        let tag = format!("berthcri{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(&tag);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cni")).unwrap();
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let sock = dir.join("containerd.sock");
        let berth = Path::new(SHIM).with_file_name("berth");
        // The `berth` handler's options: the CRI plugin hands the shim a
        // runtimeoptions message naming this file.
        std::fs::write(
            dir.join("berth-runtime.toml"),
            format!(
                "BinaryName = \"{}\"\nRoot = \"{}/berth-root\"\nSystemdCgroup = {}\n",
                berth.display(),
                dir.display(),
                lane.systemd
            ),
        )
        .unwrap();
        if lane.cni {
            std::fs::write(
                dir.join("cni/10-berth.conflist"),
                cni_conflist(&dir, &tag, n),
            )
            .unwrap();
        }
        std::fs::write(
            dir.join("config.toml"),
            containerd_config(&dir, &sock, &berth, lane),
        )
        .unwrap();
        let child = RefCell::new(spawn_containerd(&dir));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A lazy channel: nothing connects until the first call, so the
        // guard exists (and cleans up) before anything can fail.
        let channel = {
            let _enter = rt.enter();
            let path = sock.clone();
            Endpoint::try_from("http://[::]:50051")
                .unwrap()
                .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
        };
        let c = Cri {
            lane,
            tag,
            dir,
            sock,
            child,
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            reference: RefCell::new(HashMap::new()),
        };
        c.wait_ready();
        c.import_images();
        c
    }

    /// Waits for containerd's socket, then for the CRI plugin's
    /// RuntimeReady (it answers once containerd serves, and is ready once
    /// it has loaded its state).
    fn wait_ready(&self) {
        wait_for(SETTLE, "containerd's socket", || {
            self.sock.exists().then_some(())
        });
        wait_for(SETTLE, "the CRI plugin's RuntimeReady", || {
            let st = self
                .call("Status", self.rs().status(cri::StatusRequest::default()))
                .ok()?;
            let conds = st.status?.conditions;
            conds
                .iter()
                .any(|x| x.r#type == "RuntimeReady" && x.status)
                .then_some(())
        });
    }

    /// Stops containerd (SIGTERM, as systemd does on an upgrade) and
    /// starts it again on the same root and state: the shims and their
    /// containers live on, and containerd reconnects to them.
    fn restart_containerd(&self) {
        stop_child(&mut self.child.borrow_mut());
        let _ = std::fs::remove_file(&self.sock);
        *self.child.borrow_mut() = spawn_containerd(&self.dir);
        self.wait_ready();
    }

    fn rs(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    fn is(&self) -> ImageServiceClient<Channel> {
        self.images.clone()
    }

    /// Runs one CRI call to completion (bounded by CALL_TIMEOUT).
    fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        let t0 = Instant::now();
        let r = self
            .rt
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, fut).await });
        // Slow calls are worth knowing about when a run takes long.
        if t0.elapsed() > Duration::from_secs(5) {
            eprintln!("slow CRI {what}: {:.1}s", t0.elapsed().as_secs_f64());
        }
        match r {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "CRI {what} took over {CALL_TIMEOUT:?}"
            ))),
        }
    }

    /// A CRI call that must succeed.
    fn ok<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> T {
        self.call(what, fut)
            .unwrap_or_else(|s| panic!("CRI {what}: {:?}: {}", s.code(), s.message()))
    }

    /// Builds the busybox and pause images (hack/mkimage, offline) and
    /// imports them into the CRI plugin's namespace, as a node's image
    /// preloading would.
    fn import_images(&self) {
        let hack = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack");
        let busybox = self.dir.join("busybox.tar");
        let pause = self.dir.join("pause.tar");
        let ok = Command::new(hack.join("mkimage"))
            .arg(&busybox)
            .arg(BUSYBOX)
            .status()
            .unwrap()
            .success();
        assert!(ok, "hack/mkimage busybox");
        let ok = Command::new(hack.join("mkimage"))
            .arg("--pause")
            .arg(&pause)
            .arg(PAUSE)
            .status()
            .unwrap()
            .success();
        assert!(ok, "hack/mkimage --pause");
        for tar in [&busybox, &pause] {
            let o = Command::new("ctr")
                .arg("-a")
                .arg(&self.sock)
                .args(["-n", "k8s.io", "images", "import"])
                .arg(tar)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "ctr images import {}: {}",
                tar.display(),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        // The ImageService sees them (its cache follows containerd's image
        // events).
        for image in [BUSYBOX, PAUSE] {
            wait_for(SETTLE, &format!("ImageStatus of {image}"), || {
                let spec = cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                };
                self.call(
                    "ImageStatus",
                    self.is().image_status(cri::ImageStatusRequest {
                        image: Some(spec),
                        verbose: false,
                    }),
                )
                .ok()?
                .image
                .filter(|i| i.repo_tags.iter().any(|t| t == image))
                .map(|_| ())
            });
        }
    }

    /// Records what the reference handler gave for `key`, or checks that
    /// another handler gives the same.
    fn same_as_runc(&self, handler: &str, key: &str, value: &str) {
        let mut r = self.reference.borrow_mut();
        if handler == "runc" {
            r.insert(key.to_string(), value.to_string());
        } else if let Some(want) = r.get(key) {
            assert_eq!(
                value, want,
                "{handler}: {key} differs from runc's (left: {handler}, right: runc)"
            );
        }
    }

    /// The cgroup parent of a pod, as the kubelet names it: on the host
    /// lane variant 0 is a plain cgroupfs path and variant 1 a `*.slice`
    /// (which containerd turns into `slice:cri-containerd:ID`); with
    /// systemd, the kubelet's pod slice.
    fn parent(&self, pod: &str, variant: usize) -> String {
        if self.lane.systemd {
            format!("kubepods-besteffort-pod{}_{pod}.slice", self.tag)
        } else if variant.is_multiple_of(2) {
            format!("/{}/pod{pod}", self.tag)
        } else {
            format!("/{}{pod}.slice", self.tag)
        }
    }

    /// The cgroup path (as /proc/PID/cgroup shows it) of container `id` in
    /// a pod with cgroup parent `parent`; `own` is the path of the same
    /// hierarchy for containerd (the runtimes' own cgroup).
    fn expected_cgroup(&self, parent: &str, id: &str, own: &str) -> String {
        match parent.strip_suffix(".slice") {
            Some(base) if self.lane.systemd => {
                // systemd nests a slice in the slices its dashes name, and
                // the runtime puts the container in a scope.
                let mut path = String::new();
                let mut prefix = String::new();
                for part in base.trim_start_matches('/').split('-') {
                    if !prefix.is_empty() {
                        prefix.push('-');
                    }
                    prefix.push_str(part);
                    path.push_str(&format!("/{prefix}.slice"));
                }
                format!("{path}/cri-containerd-{id}.scope")
            }
            Some(_) => {
                // A cgroupfs driver takes `slice:cri-containerd:ID` as a
                // plain path relative to its own cgroup, as runc does.
                let base = parent.trim_start_matches('/');
                format!("{}/{base}:cri-containerd:{id}", own.trim_end_matches('/'))
            }
            None => format!("{parent}/{id}"),
        }
    }

    /// A pod config as the kubelet makes one: metadata, log directory,
    /// DNS, labels and annotations, the Linux security context with its
    /// namespaces, and the cgroup parent.
    fn pod_config(
        &self,
        name: &str,
        attempt: u32,
        parent: &str,
        privileged: bool,
    ) -> cri::PodSandboxConfig {
        let network = if self.lane.cni {
            NamespaceMode::Pod
        } else {
            NamespaceMode::Node
        };
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: format!("{}_{name}", self.tag),
                namespace: "berth-test".into(),
                attempt,
            }),
            // The kubelet leaves the hostname empty for host-network pods
            // (they have the node's UTS namespace).
            hostname: if self.lane.cni {
                format!("pod-{name}")
            } else {
                String::new()
            },
            log_directory: self
                .dir
                .join("logs")
                .join(format!("berth-test_{name}_{attempt}"))
                .display()
                .to_string(),
            dns_config: Some(cri::DnsConfig {
                servers: strings(&["10.96.0.10"]),
                searches: strings(&["berth-test.svc.cluster.local", "svc.cluster.local"]),
                options: strings(&["ndots:5"]),
            }),
            labels: labels(&[("berth-test", &self.tag), ("pod", name)]),
            annotations: labels(&[("berth.test/attempt", &attempt.to_string())]),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: parent.into(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: network as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    privileged,
                    seccomp: Some(cri::SecurityProfile {
                        profile_type: ProfileType::RuntimeDefault as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A busybox container config as the kubelet makes one (its log at
    /// `NAME/0.log` under the pod's log directory, the pod's namespaces).
    fn container_config(&self, pod: &Pod, name: &str, command: &[&str]) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
            command: strings(command),
            log_path: format!("{name}/0.log"),
            labels: labels(&[("berth-test", &self.tag), ("container", name)]),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources::default()),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(pod.pod_ns()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    /// RunPodSandbox with a RuntimeClass handler; records the pause
    /// process, its cgroups and the pod's shim socket.
    fn run_pod(&self, handler: &str, config: cri::PodSandboxConfig) -> Pod {
        let id = self
            .ok(
                "RunPodSandbox",
                self.rs().run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(config.clone()),
                    runtime_handler: handler.into(),
                }),
            )
            .pod_sandbox_id;
        let pod = Pod {
            id: id.clone(),
            handler: handler.into(),
            config,
            seen: RefCell::new(Seen::default()),
        };
        let pid = self.sandbox_pid(&id);
        let bundle = self.bundle(&id);
        let socket = std::fs::read_to_string(bundle.join("address"))
            .ok()
            .map(|a| PathBuf::from(a.trim().trim_start_matches("unix://")));
        let mut seen = pod.seen.borrow_mut();
        seen.ids.push(id.clone());
        if let Some(st) = start_time(pid) {
            seen.pids.push((pid, st));
        }
        seen.cgroups.extend(cgroup_dirs_naming(pid, &id));
        seen.shim_socket = socket;
        seen.state_dirs.push(self.runtime_state_dir(handler, &id));
        drop(seen);
        pod
    }

    /// containerd's bundle of a task (where the shim keeps its address).
    fn bundle(&self, id: &str) -> PathBuf {
        self.dir
            .join("state/io.containerd.runtime.v2.task/k8s.io")
            .join(id)
    }

    /// The runtime's own state directory of a container (`--root`).
    fn runtime_state_dir(&self, handler: &str, id: &str) -> PathBuf {
        self.dir.join(format!("{handler}-root/k8s.io")).join(id)
    }

    fn sandbox_status(&self, id: &str) -> cri::PodSandboxStatusResponse {
        self.ok(
            "PodSandboxStatus",
            self.rs().pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: true,
            }),
        )
    }

    /// The pause process (containerd's verbose info).
    fn sandbox_pid(&self, id: &str) -> i32 {
        let st = self.sandbox_status(id);
        info_pid(&st.info).unwrap_or_else(|| panic!("no pid in the sandbox info: {:?}", st.info))
    }

    fn container_status(&self, id: &str) -> cri::ContainerStatusResponse {
        self.ok(
            "ContainerStatus",
            self.rs().container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            }),
        )
    }

    fn state(&self, id: &str) -> i32 {
        self.container_status(id)
            .status
            .map(|s| s.state)
            .unwrap_or(-1)
    }

    /// The container's init process, while it runs.
    fn container_pid(&self, id: &str) -> i32 {
        let st = self.container_status(id);
        info_pid(&st.info)
            .filter(|p| *p > 0)
            .unwrap_or_else(|| panic!("no pid in the container info: {:?}", st.info))
    }

    fn create_container(
        &self,
        pod: &Pod,
        config: cri::ContainerConfig,
    ) -> Result<String, tonic::Status> {
        let id = self
            .call(
                "CreateContainer",
                self.rs().create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: pod.id.clone(),
                    config: Some(config),
                    sandbox_config: Some(pod.config.clone()),
                }),
            )?
            .container_id;
        pod.seen.borrow_mut().ids.push(id.clone());
        pod.seen
            .borrow_mut()
            .state_dirs
            .push(self.runtime_state_dir(&pod.handler, &id));
        Ok(id)
    }

    fn start_container(&self, pod: &Pod, id: &str) -> Result<(), tonic::Status> {
        self.call(
            "StartContainer",
            self.rs().start_container(cri::StartContainerRequest {
                container_id: id.into(),
            }),
        )?;
        // Record its process and cgroups while it runs (a short one may be
        // gone already).
        let st = self.container_status(id);
        if let Some(pid) = info_pid(&st.info).filter(|p| *p > 0) {
            let mut seen = pod.seen.borrow_mut();
            if let Some(t) = start_time(pid) {
                seen.pids.push((pid, t));
            }
            seen.cgroups.extend(cgroup_dirs_naming(pid, id));
        }
        Ok(())
    }

    /// CreateContainer + StartContainer, both required to succeed.
    fn run_container(&self, pod: &Pod, config: cri::ContainerConfig) -> String {
        let name = config.metadata.as_ref().map(|m| m.name.clone());
        let id = self
            .create_container(pod, config)
            .unwrap_or_else(|s| panic!("CreateContainer {name:?}: {}", s.message()));
        self.start_container(pod, &id)
            .unwrap_or_else(|s| panic!("StartContainer {name:?}: {}", s.message()));
        id
    }

    fn exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
        timeout_s: i64,
    ) -> Result<cri::ExecSyncResponse, tonic::Status> {
        self.call(
            &format!("ExecSync {cmd:?}"),
            self.rs().exec_sync(cri::ExecSyncRequest {
                container_id: id.into(),
                cmd: strings(cmd),
                timeout: timeout_s,
            }),
        )
    }

    /// `sh -c SCRIPT` in the container through ExecSync; must exit 0.
    fn sh(&self, id: &str, script: &str) -> String {
        let r = self
            .exec_sync(id, &["sh", "-c", script], 60)
            .unwrap_or_else(|s| panic!("ExecSync {script:?}: {}", s.message()));
        assert_eq!(
            r.exit_code,
            0,
            "ExecSync {script:?}: stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
        String::from_utf8_lossy(&r.stdout).into_owned()
    }

    /// Waits for a container to exit; returns its status.
    fn wait_exited(&self, id: &str) -> cri::ContainerStatus {
        wait_for(SETTLE, &format!("container {id} to exit"), || {
            self.container_status(id)
                .status
                .filter(|s| s.state == ContainerState::ContainerExited as i32)
        })
    }

    /// The shims serving this containerd's pod `sandbox` (the long-lived
    /// process: `-id SANDBOX -address SOCK`, without a `start`/`delete`
    /// action).
    fn shims_of(&self, sandbox: &str) -> Vec<i32> {
        let sock = self.sock.display().to_string();
        all_pids()
            .into_iter()
            .filter(|pid| {
                let args = cmdline(*pid);
                let has = |flag: &str, v: &str| args.windows(2).any(|w| w[0] == flag && w[1] == v);
                let exe = args.first().map(String::as_str).unwrap_or("");
                exe.contains("containerd-shim")
                    && has("-id", sandbox)
                    && has("-address", &sock)
                    && !args.iter().any(|a| a == "start" || a == "delete")
            })
            .collect()
    }

    /// Stops and removes every pod of this containerd (the kubelet's
    /// cleanup of a node), without checking anything.
    fn remove_all_pods(&self) {
        let Ok(list) = self.call(
            "ListPodSandbox",
            self.rs()
                .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
        ) else {
            return;
        };
        for p in list.items {
            let _ = self.call(
                "StopPodSandbox",
                self.rs().stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: p.id.clone(),
                }),
            );
            let _ = self.call(
                "RemovePodSandbox",
                self.rs().remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: p.id,
                }),
            );
        }
    }

    fn stop_pod(&self, pod: &Pod) {
        self.ok(
            "StopPodSandbox",
            self.rs().stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            }),
        );
    }

    /// StopPodSandbox and RemovePodSandbox, then checks that nothing of the
    /// pod is left on the host: no process, mount, cgroup, shim, shim
    /// socket or runtime state.
    fn remove_pod(&self, pod: &Pod) {
        self.stop_pod(pod);
        self.ok(
            "RemovePodSandbox",
            self.rs().remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            }),
        );
        let seen = pod.seen.borrow();
        let h = &pod.handler;
        wait_for(SETTLE, &format!("{h}: the pod's processes to go"), || {
            let left: Vec<_> = seen
                .pids
                .iter()
                .filter(|(pid, t)| start_time(*pid) == Some(*t))
                .collect();
            left.is_empty().then_some(())
        });
        for id in &seen.ids {
            let m = mountinfo_lines_with(id);
            assert!(m.is_empty(), "{h}: mounts left of {id}: {m:#?}");
        }
        wait_for(SETTLE, &format!("{h}: the pod's cgroups to go"), || {
            seen.cgroups.iter().all(|d| !d.exists()).then_some(())
        });
        wait_for(SETTLE, &format!("{h}: the pod's shim to exit"), || {
            self.shims_of(&pod.id).is_empty().then_some(())
        });
        if let Some(s) = &seen.shim_socket {
            wait_for(SETTLE, &format!("{h}: the shim socket {s:?} to go"), || {
                (!s.exists()).then_some(())
            });
        }
        for d in &seen.state_dirs {
            assert!(!d.exists(), "{h}: runtime state left: {}", d.display());
        }
        assert!(
            !self.bundle(&pod.id).exists(),
            "{h}: containerd's bundle of the pod is left"
        );
    }

    /// Makes a host directory a shared mount point of its own (what a
    /// kubelet's host needs for Bidirectional and HostToContainer volumes).
    fn shared_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let c = std::ffi::CString::new(d.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a bind mount of a directory of ours onto itself, then
        // marking it shared; Drop detaches it.
        unsafe {
            assert_eq!(
                libc::mount(
                    c.as_ptr(),
                    c.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null()
                ),
                0,
                "bind {}",
                d.display()
            );
            assert_eq!(
                libc::mount(
                    std::ptr::null(),
                    c.as_ptr(),
                    std::ptr::null(),
                    libc::MS_SHARED,
                    std::ptr::null()
                ),
                0,
                "make-shared {}",
                d.display()
            );
        }
        d
    }

    /// The end of containerd's log, for a failure's diagnosis (the
    /// directory goes with the instance).
    fn show_containerd_log(&self, h: &str) {
        let log = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        eprintln!("--- {h}: the last lines of containerd's log:\n{tail}\n---");
    }

    /// Runs `flow` for each handler, after the reference; every handler
    /// runs even when one fails, and the test then fails naming each that
    /// did. Pods left by a failed flow are removed before the next one.
    fn for_each_handler(&self, test: &str, flow: impl Fn(&str)) {
        let mut failed = Vec::new();
        for h in HANDLERS {
            let t0 = Instant::now();
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| flow(h)));
            eprintln!(
                "{test}: {h}: {} in {:.1}s",
                if r.is_ok() { "passed" } else { "FAILED" },
                t0.elapsed().as_secs_f64()
            );
            if let Err(e) = r {
                self.show_containerd_log(h);
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(format!("{h}: {msg}"));
                self.remove_all_pods();
            }
        }
        assert!(
            failed.is_empty(),
            "{test} failed for:\n{}",
            failed.join("\n")
        );
    }
}

/// The `pid` in containerd's verbose info (`info["info"]`, JSON).
fn info_pid(info: &HashMap<String, String>) -> Option<i32> {
    let v: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    v["pid"].as_i64().map(|p| p as i32)
}

/// The private containerd's config: its own root, state, sockets and
/// `opt` dir; the CRI plugin with the pause image, a streaming server on
/// loopback, CNI from Debian's plugins with this instance's conf dir, and
/// the three handlers.
fn containerd_config(dir: &Path, sock: &Path, berth: &Path, lane: Lane) -> String {
    let d = dir.display();
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    let runtimes = format!("{cri}.containerd.runtimes");
    let runc_like = |name: &str, binary: &str| {
        format!(
            "[{runtimes}.{name}]
  runtime_type = \"io.containerd.runc.v2\"
[{runtimes}.{name}.options]
  BinaryName = \"{binary}\"
  Root = \"{d}/{name}-root\"
  SystemdCgroup = {}
",
            lane.systemd
        )
    };
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[{cri}]
  sandbox_image = "{PAUSE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Writable-layer usage in the stats follows the snapshots every second.
  stats_collect_period = 1
  # Pod network namespaces under the state dir, not the host's /run/netns.
  netns_mounts_under_state_dir = true
  # Without CAP_SYS_RESOURCE (some CI sandboxes drop it) no runtime may
  # lower oom_score_adj below containerd's own: the sandbox's -998 is
  # raised to it, as on a rootless node.
  restrict_oom_score_adj = {restrict}
[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{d}/cni"
[{cri}.containerd]
  default_runtime_name = "runc"
{runc}{berth_runc}[{runtimes}.berth]
  runtime_type = "io.containerd.berth.v2"
[{runtimes}.berth.options]
  TypeUrl = "io.containerd.berth.v2.options"
  ConfigPath = "{d}/berth-runtime.toml"
"#,
        sock = sock.display(),
        restrict = !has_cap_sys_resource(),
        runc = runc_like("runc", &runc_path()),
        berth_runc = runc_like("berth-runc", &berth.display().to_string()),
    )
}

/// Whether this process may lower oom_score_adj (CAP_SYS_RESOURCE).
fn has_cap_sys_resource() -> bool {
    let eff =
        u64::from_str_radix(&proc_status(std::process::id() as i32, "CapEff"), 16).unwrap_or(0);
    eff & (1 << 24) != 0 // CAP_SYS_RESOURCE
}

/// The VM lane's pod network: a bridge of this instance's own with
/// host-local addresses kept under the instance's directory, and portmap
/// (no pod here maps ports; it is in the chain as on a kubeadm node). The
/// loopback plugin is not listed: containerd's CRI plugin brings `lo` up
/// itself through /usr/lib/cni/loopback.
fn cni_conflist(dir: &Path, tag: &str, n: usize) -> String {
    let (a, b) = subnet(n);
    format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "{tag}",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{bridge}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{"subnet": "10.{a}.{b}.0/24"}}]],
        "routes": [{{"dst": "0.0.0.0/0"}}],
        "dataDir": "{d}/cni-ipam"
      }}
    }},
    {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
  ]
}}
"#,
        bridge = bridge_name(n),
        d = dir.display()
    )
}

/// A /24 of this process and instance (10.A.B.0/24).
fn subnet(n: usize) -> (u32, u32) {
    let pid = std::process::id();
    (100 + (pid % 100), (pid / 100 % 200) + n as u32)
}

/// The instance's CNI bridge (at most 15 bytes).
fn bridge_name(n: usize) -> String {
    format!("bcri{}x{n}", std::process::id() % 1_000_000)
}

/// containerd on the instance's config, with the shim and berth (built
/// side by side) first on its PATH; its output goes to containerd.log.
fn spawn_containerd(dir: &Path) -> Child {
    let bin_dir = Path::new(SHIM).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))
        .unwrap();
    Command::new("containerd")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("containerd (hack/deps installs it)")
}

/// SIGTERM, then SIGKILL after 10 s; reaped.
fn stop_child(child: &mut Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Cri {
    fn drop(&mut self) {
        if self.child.get_mut().try_wait().ok().flatten().is_none() {
            self.remove_all_pods();
        }
        stop_child(self.child.get_mut());
        // Shims of this containerd that outlived it (a failed removal).
        let sock = self.sock.display().to_string();
        for pid in all_pids() {
            let args = cmdline(pid);
            if args.first().is_some_and(|a| a.contains("containerd-shim")) && args.contains(&sock) {
                // SAFETY: a shim this test's containerd started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        // Container processes still in cgroups named by the tag go with
        // them; slices of the systemd lane are stopped first.
        if self.lane.systemd {
            let _ = Command::new("systemctl")
                .args([
                    "stop",
                    &format!("kubepods-besteffort-pod{}_*.slice", self.tag),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        remove_cgroups_named(Path::new("/sys/fs/cgroup"), &self.tag);
        // Mounts under the directory (rootfs, shm, netns, the test's
        // shared dirs and what propagated into them), deepest first.
        let dir = self.dir.display().to_string();
        for _ in 0..3 {
            let mut mounts: Vec<String> = mount_points()
                .into_iter()
                .filter(|m| m.starts_with(&dir))
                .collect();
            if mounts.is_empty() {
                break;
            }
            mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in mounts {
                let c = std::ffi::CString::new(m).unwrap();
                // SAFETY: detaching a mount under our scratch directory.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        if self.lane.cni {
            let n: usize = self
                .tag
                .rsplit('x')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let _ = Command::new("ip")
                .args(["link", "del", &bridge_name(n)])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// Flow 1, 4 (teardown) and 5 (attempts, two pods): pods.

#[test]
fn pods_run_listed_restarted_and_removed() {
    let c = Cri::start();
    let t0 = now_ns();

    let v = c.ok(
        "Version",
        c.rs().version(cri::VersionRequest {
            version: "v1".into(),
        }),
    );
    assert_eq!(v.runtime_name, "containerd");
    assert_eq!(v.runtime_api_version, "v1");
    let st = c.ok(
        "Status",
        c.rs().status(cri::StatusRequest { verbose: true }),
    );
    let cond = |t: &str| {
        st.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|x| x.r#type == t))
            .unwrap_or_else(|| panic!("no {t} condition: {st:?}"))
            .clone()
    };
    assert!(cond("RuntimeReady").status);
    // NetworkReady only where a CNI config is there to load.
    assert_eq!(
        cond("NetworkReady").status,
        c.lane.cni,
        "{:?}",
        cond("NetworkReady")
    );

    // The ImageService: the preloaded images, and the image file system.
    let images = c.ok(
        "ListImages",
        c.is().list_images(cri::ListImagesRequest { filter: None }),
    );
    for want in [BUSYBOX, PAUSE] {
        assert!(
            images
                .images
                .iter()
                .any(|i| i.repo_tags.iter().any(|t| t == want)),
            "{want} not in ListImages: {:?}",
            images.images
        );
    }
    // Its usage is sampled every stats_collect_period.
    wait_for(SETTLE, "ImageFsInfo to count the images", || {
        let fs = c.ok(
            "ImageFsInfo",
            c.is().image_fs_info(cri::ImageFsInfoRequest {}),
        );
        let f = fs.image_filesystems.first()?;
        let mount = f.fs_id.as_ref()?.mountpoint.clone();
        assert!(mount.starts_with(&c.dir.display().to_string()), "{fs:?}");
        (f.used_bytes.as_ref()?.value > 0).then_some(())
    });

    let host_hostname = read_trim(Path::new("/proc/sys/kernel/hostname"));
    c.for_each_handler("pods", |h| {
        // Two pods at once, one per cgroup parent flavour.
        let pods: Vec<Pod> = ["a", "b"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let name = format!("{h}{name}").replace('-', "");
                let mut cfg = c.pod_config(&name, 0, &c.parent(&name, i), false);
                run_sandbox_as(&mut cfg, 65534, 65534, &[4242]);
                c.run_pod(h, cfg)
            })
            .collect();
        for pod in &pods {
            let st = c.sandbox_status(&pod.id);
            let s = st.status.clone().unwrap();
            assert_eq!(s.id, pod.id);
            assert_eq!(s.state, PodSandboxState::SandboxReady as i32, "{h}: {s:?}");
            assert_eq!(s.metadata, pod.config.metadata);
            assert_eq!(s.labels, pod.config.labels);
            assert_eq!(s.annotations, pod.config.annotations);
            assert_eq!(s.runtime_handler, h);
            assert!(s.created_at >= t0 && s.created_at <= now_ns(), "{s:?}");
            let ip = s.network.map(|n| n.ip).unwrap_or_default();
            if c.lane.cni {
                let (a, b) = subnet(c.tag.rsplit('x').next().unwrap().parse().unwrap());
                assert!(
                    ip.starts_with(&format!("10.{a}.{b}.")),
                    "{h}: pod IP {ip:?}"
                );
            } else {
                // A host-network pod has no IP of its own.
                assert_eq!(ip, "", "{h}");
            }

            // The pause process: catatonit, in the pod's cgroup, with the
            // pod's seccomp profile.
            // The start call returns once the runtime let the init go; it
            // execs the pause a moment later.
            let pid = c.sandbox_pid(&pod.id);
            let comm = || std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            wait_for(
                SETTLE,
                &format!("{h}: the pause to exec (comm {:?})", comm()),
                || (comm().trim() == "pause").then_some(()),
            );
            assert_eq!(
                proc_status(pid, "Seccomp"),
                "2",
                "{h}: the pod's RuntimeDefault seccomp"
            );
            // The pod's runAsUser, runAsGroup and supplementalGroups.
            let first = |f: &str| {
                proc_status(pid, f)
                    .split_whitespace()
                    .next()
                    .map(String::from)
            };
            assert_eq!(
                first("Uid").as_deref(),
                Some("65534"),
                "{h}: the pause's user"
            );
            assert_eq!(
                first("Gid").as_deref(),
                Some("65534"),
                "{h}: the pause's group"
            );
            // (containerd 1.6 gives the pause the primary group only, not
            // the pod's supplementalGroups: the same with every handler.)
            let groups = proc_status(pid, "Groups");
            c.same_as_runc(h, "the pause's groups", &groups);
            let parent = pod.parent();
            check_cgroup_placement(&c, h, pid, &pod.id, &parent);

            // A container: the pod's DNS config and hostname inside.
            let cfg = c.container_config(pod, "sleeper", &["sleep", "3600"]);
            let cid = c.run_container(pod, cfg);
            let cpid = c.container_pid(&cid);
            check_cgroup_placement(&c, h, cpid, &cid, &parent);
            let resolv = c.sh(&cid, "cat /etc/resolv.conf");
            for want in [
                "nameserver 10.96.0.10",
                "search berth-test.svc.cluster.local svc.cluster.local",
                "options ndots:5",
            ] {
                assert!(
                    resolv.lines().any(|l| l.trim() == want),
                    "{h}: {want:?} not in {resolv:?}"
                );
            }
            let want_host = if pod.config.hostname.is_empty() {
                host_hostname.clone()
            } else {
                pod.config.hostname.clone()
            };
            assert_eq!(c.sh(&cid, "hostname").trim(), want_host, "{h}");
            assert_eq!(c.sh(&cid, "cat /etc/hostname").trim(), want_host, "{h}");

            // One shim per pod, with every handler; berth's is its own.
            let shims = c.shims_of(&pod.id);
            assert_eq!(shims.len(), 1, "{h}: shims of the pod: {shims:?}");
            let exe = std::fs::read_link(format!("/proc/{}/exe", shims[0])).unwrap_or_default();
            let want_shim = if h == "berth" {
                "containerd-shim-berth-v2"
            } else {
                "containerd-shim-runc-v2"
            };
            assert!(
                exe.ends_with(want_shim),
                "{h}: the pod's shim is {}",
                exe.display()
            );
            let sock = pod.seen.borrow().shim_socket.clone();
            assert!(
                sock.as_ref().is_some_and(|s| s.exists()),
                "{h}: the shim's socket {sock:?} (from the bundle's address file)"
            );
        }

        // containerd restarts (a node's containerd upgrade): it reconnects
        // to each pod's shim through the bundle's `address` file, and the
        // pods and their containers carry on as they were.
        let shims_before: Vec<Vec<i32>> = pods.iter().map(|p| c.shims_of(&p.id)).collect();
        c.restart_containerd();
        for (pod, before) in pods.iter().zip(&shims_before) {
            let s = c.sandbox_status(&pod.id).status.unwrap();
            assert_eq!(
                s.state,
                PodSandboxState::SandboxReady as i32,
                "{h}: the pod after containerd restarted"
            );
            assert_eq!(
                &c.shims_of(&pod.id),
                before,
                "{h}: the pod's shim after the restart"
            );
            let cid = pod.seen.borrow().ids[1].clone();
            assert_eq!(
                c.state(&cid),
                ContainerState::ContainerRunning as i32,
                "{h}"
            );
            assert_eq!(c.sh(&cid, "echo still").trim(), "still", "{h}");
        }

        // ListPodSandbox: by label selector, by state, by ID.
        let list = |filter: cri::PodSandboxFilter| -> Vec<cri::PodSandbox> {
            c.ok(
                "ListPodSandbox",
                c.rs().list_pod_sandbox(cri::ListPodSandboxRequest {
                    filter: Some(filter),
                }),
            )
            .items
        };
        let by_name = |name: &str| {
            let mut sel = labels(&[("berth-test", &c.tag)]);
            sel.insert("pod".into(), name.into());
            sel
        };
        let a_name = pods[0].config.metadata.as_ref().unwrap().name.clone();
        let got = list(cri::PodSandboxFilter {
            label_selector: by_name(&a_name),
            ..Default::default()
        });
        assert_eq!(
            got.iter().map(|p| &p.id).collect::<Vec<_>>(),
            vec![&pods[0].id],
            "{h}"
        );
        assert_eq!(got[0].runtime_handler, h);
        let ready = cri::PodSandboxStateValue {
            state: PodSandboxState::SandboxReady as i32,
        };
        let mut got: Vec<String> = list(cri::PodSandboxFilter {
            state: Some(ready),
            label_selector: labels(&[("berth-test", &c.tag)]),
            ..Default::default()
        })
        .into_iter()
        .map(|p| p.id)
        .collect();
        got.sort();
        let mut want: Vec<String> = pods.iter().map(|p| p.id.clone()).collect();
        want.sort();
        assert_eq!(got, want, "{h}: READY pods");
        let got = list(cri::PodSandboxFilter {
            id: pods[1].id.clone(),
            ..Default::default()
        });
        assert_eq!(got.len(), 1, "{h}");
        assert_eq!(got[0].id, pods[1].id);

        // The kubelet after a crash: the old sandbox is stopped (its
        // container with it), and the same pod runs again as attempt 1.
        c.stop_pod(&pods[0]);
        let s = c.sandbox_status(&pods[0].id).status.unwrap();
        assert_eq!(s.state, PodSandboxState::SandboxNotready as i32, "{h}");
        for cid in pods[0].seen.borrow().ids.iter().skip(1) {
            assert_eq!(
                c.state(cid),
                ContainerState::ContainerExited as i32,
                "{h}: {cid}"
            );
        }
        let notready = cri::PodSandboxStateValue {
            state: PodSandboxState::SandboxNotready as i32,
        };
        let got = list(cri::PodSandboxFilter {
            state: Some(notready),
            label_selector: labels(&[("berth-test", &c.tag)]),
            ..Default::default()
        });
        assert_eq!(
            got.iter().map(|p| &p.id).collect::<Vec<_>>(),
            vec![&pods[0].id],
            "{h}"
        );
        let mut again = c.pod_config(&a_name, 1, &pods[0].parent(), false);
        run_sandbox_as(&mut again, 65534, 65534, &[4242]);
        let retry = c.run_pod(h, again);
        assert_ne!(retry.id, pods[0].id);
        // The kubelet counts the container's restarts in its attempt.
        let mut cfg = c.container_config(&retry, "sleeper", &["sleep", "3600"]);
        cfg.metadata.as_mut().unwrap().attempt = 1;
        cfg.log_path = "sleeper/1.log".into();
        let cid = c.run_container(&retry, cfg);
        assert_eq!(c.sh(&cid, "echo again").trim(), "again");
        let mut attempts: Vec<(u32, i32)> = list(cri::PodSandboxFilter {
            label_selector: by_name(&a_name),
            ..Default::default()
        })
        .into_iter()
        .map(|p| (p.metadata.unwrap().attempt, p.state))
        .collect();
        attempts.sort();
        assert_eq!(
            attempts,
            vec![
                (0, PodSandboxState::SandboxNotready as i32),
                (1, PodSandboxState::SandboxReady as i32)
            ],
            "{h}"
        );

        for pod in pods.iter().chain([&retry]) {
            c.remove_pod(pod);
        }
    });
}

/// What a pod spec's runAsUser, runAsGroup and supplementalGroups make of
/// the sandbox's security context (the pause runs with them).
fn run_sandbox_as(cfg: &mut cri::PodSandboxConfig, uid: i64, gid: i64, groups: &[i64]) {
    let sc = cfg
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .expect("a Linux security context");
    sc.run_as_user = Some(cri::Int64Value { value: uid });
    sc.run_as_group = Some(cri::Int64Value { value: gid });
    sc.supplemental_groups = groups.to_vec();
}

/// The process sits in the cgroup the pod's parent and the driver give
/// (every v1 controller the runtime manages, and cgroup2), and the same
/// hierarchies as with runc.
fn check_cgroup_placement(c: &Cri, h: &str, pid: i32, id: &str, parent: &str) {
    let mine = cgroup_lines(pid);
    let own = cgroup_lines(std::process::id() as i32);
    let mut placed = Vec::new();
    for (ctrls, path) in &mine {
        if !path.contains(id) {
            continue;
        }
        let own_path = own
            .iter()
            .find(|(c2, _)| c2 == ctrls)
            .map(|(_, p)| p.as_str())
            .unwrap_or("/");
        assert_eq!(
            *path,
            c.expected_cgroup(parent, id, own_path),
            "{h}: cgroup of {id} in hierarchy {ctrls:?}"
        );
        placed.push(if ctrls.is_empty() {
            "cgroup2"
        } else {
            ctrls.as_str()
        });
    }
    let want: &[&str] = if unified_only() {
        &["cgroup2"]
    } else {
        &["cpu", "memory", "pids"]
    };
    for w in want {
        assert!(placed.contains(w), "{h}: {id} not placed in {w}: {mine:?}");
    }
    placed.sort();
    c.same_as_runc(h, "hierarchies a container is placed in", &placed.join(" "));
}

// ---------------------------------------------------------------------------
// Flow 2 and the exec parts of flow 3: containers of one pod.

/// The optional fields of the mountinfo line (as seen from inside a
/// container) whose mount point is `point`: `shared:N`, `master:N`, ...
fn propagation_of(mountinfo: &str, point: &str) -> String {
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(point))
        .unwrap_or_else(|| panic!("{point} not mounted: {mountinfo}"));
    line.split(' ')
        .skip(6)
        .take_while(|f| *f != "-")
        .map(|f| f.split(':').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(",")
}

/// A container's mount table as it can be compared between runtimes: each
/// mount's point, file system type and per-mount options, in order
/// (sources and super options name IDs and host paths).
fn mount_summary(mountinfo: &str) -> String {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            Some(format!("{} {} {}", f.get(4)?, f.get(dash + 1)?, f.get(5)?))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `mount_summary`, made comparable between runc 1.1 and berth where berth
/// differs from runc on purpose or harmlessly (reported, not hidden: see
/// the notes here), so that any other difference shows:
/// - the order: berth opens bind sources before it sets up the rootfs, so
///   volumes come first in its table; lines are sorted;
/// - on hybrid hosts berth also mounts the container's own cgroup2 subtree
///   at /sys/fs/cgroup/unified (read-only, no more than its own cgroup);
///   runc 1.1 leaves it out;
/// - the tmpfs under the cgroup mounts is read-only with berth, as the
///   config's `ro` cgroup mount asks; runc 1.1 leaves it writable.
fn comparable_mounts(mountinfo: &str) -> String {
    let mut lines: Vec<String> = mount_summary(mountinfo)
        .lines()
        .filter(|l| !l.starts_with("/sys/fs/cgroup/unified cgroup2 "))
        .map(|l| match l.strip_prefix("/sys/fs/cgroup tmpfs ") {
            Some(opts) => format!("/sys/fs/cgroup tmpfs (ro|rw){}", &opts[2..]),
            None => l.to_string(),
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// CapEff for a root container with containerd's default capabilities
/// (Docker's 14), plus `add`, minus `drop` (capability numbers).
fn default_caps_with(add: &[u32], drop: &[u32]) -> u64 {
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
    // NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
    let defaults = [0u32, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];
    let mut m = defaults.iter().fold(0u64, |m, c| m | 1 << c);
    for c in add {
        m |= 1 << c;
    }
    for c in drop {
        m &= !(1 << c);
    }
    m
}

/// A free TCP port on loopback (for a host-network pod's listener).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mount(src: &str, target: &Path, fstype: &str) {
    let s = std::ffi::CString::new(src).unwrap();
    let t = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).unwrap();
    let f = std::ffi::CString::new(fstype).unwrap();
    // SAFETY: mounting a tmpfs on a directory of the test's own.
    let r = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) };
    assert_eq!(
        r,
        0,
        "mount {fstype} on {}: {}",
        target.display(),
        std::io::Error::last_os_error()
    );
}

fn umount(target: &Path) {
    let t = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: unmounting a mount of the test's own.
    unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
}

fn volume(
    host: &Path,
    container: &str,
    propagation: MountPropagation,
    readonly: bool,
) -> cri::Mount {
    cri::Mount {
        container_path: container.into(),
        host_path: host.display().to_string(),
        readonly,
        propagation: propagation as i32,
        ..Default::default()
    }
}

#[test]
fn containers_share_the_pod_and_get_what_they_ask() {
    let c = Cri::start();
    let bounding = proc_status(std::process::id() as i32, "CapBnd");
    c.for_each_handler("containers", |h| {
        let name = format!("{h}share").replace('-', "");
        // Privileged: one of its containers is (containerd refuses a
        // privileged container in a pod that did not ask for it).
        let mut cfg = c.pod_config(&name, 0, &c.parent(&name, 0), true);
        // A namespaced ("safe") sysctl of the pod's IPC namespace.
        cfg.linux.as_mut().unwrap().sysctls = labels(&[("kernel.shm_rmid_forced", "1")]);
        let pod = c.run_pod(h, cfg);
        let pause = c.sandbox_pid(&pod.id);

        // The pod's volumes: an emptyDir, a read-only one, a plain one for
        // private propagation, and a shared mount for host-to-container and
        // bidirectional propagation.
        let vol = c.dir.join(format!("vol-{h}"));
        for d in ["shared", "ro", "private"] {
            std::fs::create_dir_all(vol.join(d)).unwrap();
        }
        std::fs::set_permissions(
            vol.join("shared"),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        std::fs::write(vol.join("ro/data"), "read-only data\n").unwrap();
        let prop = c.shared_dir(&format!("prop-{h}"));
        let port = free_port();

        // The server: writes to the emptyDir and the pod's /dev/shm, then
        // answers on localhost.
        let mut server = c.container_config(
            &pod,
            "server",
            &[
                "sh",
                "-c",
                &format!(
                    "echo hello-from-server > /shared/msg && \
                     echo shm-ok > /dev/shm/ipc-test && \
                     exec nc -ll -p {port} -e echo pong"
                ),
            ],
        );
        server.mounts = vec![volume(
            &vol.join("shared"),
            "/shared",
            MountPropagation::PropagationPrivate,
            false,
        )];
        let server_id = c.run_container(&pod, server);

        // The client: a non-root user with groups, env, args, working dir,
        // read-only root, no_new_privs, volumes of every kind, a device.
        let mut client = c.container_config(&pod, "client", &["sleep"]);
        client.args = strings(&["3600"]);
        client.working_dir = "/shared".into();
        client.envs = vec![
            cri::KeyValue {
                key: "FOO".into(),
                value: "bar".into(),
            },
            cri::KeyValue {
                key: "WITH_SPACE".into(),
                value: "a b".into(),
            },
        ];
        client.mounts = vec![
            volume(
                &vol.join("shared"),
                "/shared",
                MountPropagation::PropagationPrivate,
                false,
            ),
            volume(
                &vol.join("ro"),
                "/ro",
                MountPropagation::PropagationPrivate,
                true,
            ),
            volume(
                &vol.join("private"),
                "/private",
                MountPropagation::PropagationPrivate,
                false,
            ),
            volume(
                &prop,
                "/slave",
                MountPropagation::PropagationHostToContainer,
                false,
            ),
        ];
        client.devices = vec![cri::Device {
            container_path: "/dev/berth-null".into(),
            host_path: "/dev/null".into(),
            permissions: "rwm".into(),
        }];
        {
            let sc = client
                .linux
                .as_mut()
                .unwrap()
                .security_context
                .as_mut()
                .unwrap();
            sc.run_as_user = Some(cri::Int64Value { value: 1000 });
            sc.run_as_group = Some(cri::Int64Value { value: 2000 });
            sc.supplemental_groups = vec![3000, 4000];
            sc.readonly_rootfs = true;
            sc.no_new_privs = true;
            sc.seccomp = Some(cri::SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                ..Default::default()
            });
        }
        let client_id = c.run_container(&pod, client);

        // Root with capabilities added and dropped, no seccomp, resources.
        let mut caps = c.container_config(&pod, "caps", &["sleep", "3600"]);
        {
            let l = caps.linux.as_mut().unwrap();
            let sc = l.security_context.as_mut().unwrap();
            sc.capabilities = Some(cri::Capability {
                add_capabilities: strings(&["NET_ADMIN", "SYS_TIME"]),
                drop_capabilities: strings(&["CHOWN", "KILL"]),
                ..Default::default()
            });
            sc.seccomp = Some(cri::SecurityProfile {
                profile_type: ProfileType::Unconfined as i32,
                ..Default::default()
            });
            l.resources = Some(cri::LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                memory_limit_in_bytes: 64 << 20,
                oom_score_adj: 500,
                ..Default::default()
            });
        }
        let caps_id = c.run_container(&pod, caps);

        // Privileged, with a bidirectional volume (the kubelet allows those
        // only to privileged containers).
        let mut privileged = c.container_config(&pod, "privileged", &["sleep", "3600"]);
        privileged.mounts = vec![volume(
            &prop,
            "/bidir",
            MountPropagation::PropagationBidirectional,
            false,
        )];
        privileged
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .privileged = true;
        let privileged_id = c.run_container(&pod, privileged);

        for id in [&server_id, &client_id, &caps_id, &privileged_id] {
            assert_eq!(
                c.state(id),
                ContainerState::ContainerRunning as i32,
                "{h}: {id}"
            );
        }
        // One shim serves the whole pod.
        let shims = c.shims_of(&pod.id);
        assert_eq!(shims.len(), 1, "{h}: shims of the pod: {shims:?}");

        // The pod's namespaces are shared: network, IPC and UTS are the
        // pause's in every container; each has its own PID namespace.
        let ns = |kind: &str| {
            std::fs::read_link(format!("/proc/{pause}/ns/{kind}"))
                .unwrap()
                .display()
                .to_string()
        };
        for id in [&server_id, &client_id, &caps_id] {
            for kind in ["net", "ipc", "uts"] {
                assert_eq!(
                    c.sh(id, &format!("readlink /proc/self/ns/{kind}")).trim(),
                    ns(kind),
                    "{h}: {kind} of {id}"
                );
            }
            assert_ne!(
                c.sh(id, "readlink /proc/self/ns/pid").trim(),
                ns("pid"),
                "{h}: {id}"
            );
        }
        // emptyDir, /dev/shm (IPC) and localhost (network) between them.
        let msg = wait_for(SETTLE, "the server's message", || {
            let r = c.exec_sync(&client_id, &["cat", "/shared/msg"], 10).ok()?;
            (r.exit_code == 0).then(|| String::from_utf8_lossy(&r.stdout).into_owned())
        });
        assert_eq!(msg, "hello-from-server\n", "{h}");
        assert_eq!(c.sh(&client_id, "cat /dev/shm/ipc-test"), "shm-ok\n", "{h}");
        let pong = wait_for(SETTLE, "the server's answer on localhost", || {
            let r = c
                .exec_sync(
                    &client_id,
                    &["sh", "-c", &format!("nc -w 5 127.0.0.1 {port} </dev/null")],
                    20,
                )
                .ok()?;
            let out = String::from_utf8_lossy(&r.stdout).into_owned();
            (r.exit_code == 0 && out.contains("pong")).then_some(out)
        });
        assert_eq!(pong.trim(), "pong", "{h}");

        // The client's process as asked.
        let id_out = c.sh(&client_id, "id");
        assert!(
            id_out.starts_with("uid=1000 gid=2000 groups=")
                && id_out.contains("3000")
                && id_out.contains("4000"),
            "{h}: id: {id_out}"
        );
        c.same_as_runc(
            h,
            "id of a runAsUser/runAsGroup/supplementalGroups container",
            &id_out,
        );
        let status = c.sh(&client_id, "cat /proc/self/status");
        let field = |f: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{f}:")))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            field("CapEff"),
            "0000000000000000",
            "{h}: non-root has no effective capabilities"
        );
        assert_eq!(field("NoNewPrivs"), "1", "{h}");
        assert_eq!(field("Seccomp"), "2", "{h}: RuntimeDefault");
        assert_eq!(c.sh(&client_id, "pwd").trim(), "/shared", "{h}");
        assert_eq!(
            c.sh(&client_id, "echo \"$FOO|$WITH_SPACE\"").trim(),
            "bar|a b",
            "{h}"
        );
        assert_eq!(
            c.sh(&client_id, "tr '\\0' ' ' < /proc/1/cmdline").trim(),
            "sleep 3600",
            "{h}"
        );
        let touch = c
            .exec_sync(&client_id, &["touch", "/rootfs-file"], 10)
            .unwrap();
        assert_ne!(touch.exit_code, 0, "{h}: the root file system is writable");
        assert!(
            String::from_utf8_lossy(&touch.stderr).contains("Read-only file system"),
            "{h}: {touch:?}"
        );
        assert_eq!(c.sh(&client_id, "cat /ro/data"), "read-only data\n", "{h}");
        let touch = c.exec_sync(&client_id, &["touch", "/ro/x"], 10).unwrap();
        assert_ne!(touch.exit_code, 0, "{h}: the read-only volume is writable");
        let dev = c.sh(&client_id, "ls -l /dev/berth-null");
        assert!(dev.starts_with('c') && dev.contains("1,   3"), "{h}: {dev}");
        c.sh(&client_id, "echo x > /dev/berth-null");
        // Propagation: private, and host-to-container (a mount the host
        // makes later shows up inside).
        let mi = c.sh(&client_id, "cat /proc/self/mountinfo");
        c.same_as_runc(h, "the client's mounts", &comparable_mounts(&mi));
        assert_eq!(
            propagation_of(&mi, "/private"),
            "",
            "{h}: /private should be private"
        );
        assert_eq!(
            propagation_of(&mi, "/slave"),
            "master",
            "{h}: /slave should be a slave"
        );
        let live = prop.join("live");
        std::fs::create_dir_all(&live).unwrap();
        mount("berthlive", &live, "tmpfs");
        wait_for(SETTLE, "the host's mount inside", || {
            let mi = c.sh(&client_id, "cat /proc/self/mountinfo");
            mi.lines()
                .any(|l| l.split(' ').nth(4) == Some("/slave/live"))
                .then_some(())
        });
        umount(&live);

        // Capabilities, seccomp, resources.
        let status = c.sh(&caps_id, "cat /proc/self/status");
        let field = |f: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{f}:")))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        // NET_ADMIN 12, SYS_TIME 25 added; CHOWN 0, KILL 5 dropped.
        assert_eq!(
            field("CapEff"),
            format!("{:016x}", default_caps_with(&[12, 25], &[0, 5])),
            "{h}"
        );
        assert_eq!(field("Seccomp"), "0", "{h}: Unconfined");
        for f in ["CapInh", "CapPrm", "CapBnd", "CapAmb"] {
            c.same_as_runc(h, &format!("caps container: {f}"), &field(f));
        }
        c.same_as_runc(h, "caps container: ulimit -a", &c.sh(&caps_id, "ulimit -a"));
        c.same_as_runc(
            h,
            "caps container: /dev",
            &c.sh(
                &caps_id,
                "ls -ln /dev | sed 1d | awk '{print $1, $3, $4, $5, $6, $NF}'",
            ),
        );
        let cg = c
            .sh(&caps_id, "cat /proc/self/cgroup")
            .replace(&pod.parent(), "PARENT");
        c.same_as_runc(h, "caps container: /proc/self/cgroup", &blank_ids(&cg));
        assert_eq!(
            c.sh(&caps_id, "cat /proc/sys/kernel/shm_rmid_forced")
                .trim(),
            "1",
            "{h}: the pod's sysctl"
        );
        assert_eq!(field("NoNewPrivs"), "0", "{h}");
        let caps_pid = c.container_pid(&caps_id);
        assert_eq!(
            read_trim(&PathBuf::from(format!("/proc/{caps_pid}/oom_score_adj"))),
            "500",
            "{h}"
        );
        check_resources(h, caps_pid, 512, 50_000, 100_000, 64 << 20);

        // Privileged: every capability, no seccomp, the host's devices,
        // and a bidirectional volume whose mounts reach the host.
        let status = c.sh(&privileged_id, "cat /proc/self/status");
        let field = |f: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{f}:")))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        // Every capability containerd itself may pass on (its bounding set;
        // some CI sandboxes drop one or two).
        assert_eq!(field("CapEff"), bounding, "{h}");
        assert_eq!(field("Seccomp"), "0", "{h}");
        if Path::new("/dev/kmsg").exists() {
            c.sh(&privileged_id, "test -c /dev/kmsg");
        }
        let mi = c.sh(&privileged_id, "cat /proc/self/mountinfo");
        assert_eq!(
            propagation_of(&mi, "/bidir"),
            "shared",
            "{h}: /bidir should be shared"
        );
        c.sh(
            &privileged_id,
            "mkdir -p /bidir/from-ctr && \
             mount -t tmpfs -o size=1m berthbidir /bidir/from-ctr && \
             echo x > /bidir/from-ctr/f",
        );
        let from_ctr = prop.join("from-ctr");
        wait_for(SETTLE, "the container's mount on the host", || {
            mount_points()
                .contains(&from_ctr.display().to_string())
                .then_some(())
        });
        assert_eq!(
            std::fs::read_to_string(from_ctr.join("f")).unwrap_or_default(),
            "x\n",
            "{h}"
        );
        c.sh(&privileged_id, "umount /bidir/from-ctr");
        wait_for(SETTLE, "the container's unmount on the host", || {
            (!mount_points().contains(&from_ctr.display().to_string())).then_some(())
        });

        // ExecSync: output, error output and exit code apart.
        let r = c
            .exec_sync(
                &caps_id,
                &["sh", "-c", "echo out; echo err >&2; exit 3"],
                30,
            )
            .unwrap();
        assert_eq!(
            (r.exit_code, r.stdout.as_slice(), r.stderr.as_slice()),
            (3, &b"out\n"[..], &b"err\n"[..]),
            "{h}"
        );
        // Its timeout: the command is killed and the call fails.
        let t = Instant::now();
        let r = c.exec_sync(&caps_id, &["sleep", "30"], 2);
        let took = t.elapsed();
        let err = r.expect_err("an ExecSync past its timeout succeeded");
        assert!(err.message().contains("timeout"), "{h}: {}", err.message());
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(25),
            "{h}: took {took:?}"
        );
        c.same_as_runc(h, "ExecSync timeout error", &blank_ids(err.message()));
        let procs = cgroup_dir(caps_pid, "pids").join("cgroup.procs");
        wait_for(SETTLE, "the timed-out exec to be killed", || {
            (read_trim(&procs).lines().count() == 1).then_some(())
        });
        // A command that does not exist: an error, and the pod, its
        // containers and its shim carry on.
        let t = Instant::now();
        let r = c.exec_sync(&caps_id, &["/no/such/command"], 30);
        let took = t.elapsed();
        let err = r.expect_err("ExecSync of a missing command succeeded");
        let msg = err.message();
        eprintln!(
            "{h}: ExecSync of a missing command: {:?}: {msg}",
            err.code()
        );
        assert!(
            msg.contains("/no/such/command") && !msg.contains('\n'),
            "{h}: {msg}"
        );
        assert!(
            took < Duration::from_secs(20),
            "{h}: ExecSync of a missing command took {took:?}"
        );
        c.same_as_runc(
            h,
            "ExecSync of a missing command: code",
            &format!("{:?}", err.code()),
        );
        c.same_as_runc(
            h,
            "ExecSync of a missing command: error shape",
            &error_shape(msg, "exec"),
        );
        let s = c.sandbox_status(&pod.id).status.unwrap();
        assert_eq!(
            s.state,
            PodSandboxState::SandboxReady as i32,
            "{h}: the pod after a failed exec"
        );
        for id in [&server_id, &client_id, &caps_id, &privileged_id] {
            assert_eq!(
                c.state(id),
                ContainerState::ContainerRunning as i32,
                "{h}: {id} after a failed exec"
            );
        }
        assert_eq!(
            c.shims_of(&pod.id),
            shims,
            "{h}: the shim after a failed exec"
        );
        assert_eq!(c.sh(&caps_id, "echo alive").trim(), "alive", "{h}");

        // The streaming Exec URL, as kubectl exec uses it.
        let (out, err, status) = c.stream_exec(
            &caps_id,
            &["sh", "-c", "echo ws-out; echo ws-err >&2; exit 5"],
        );
        assert_eq!(
            (out.as_str(), err.as_str()),
            ("ws-out\n", "ws-err\n"),
            "{h}"
        );
        assert_eq!(status["status"], "Failure", "{h}: {status}");
        assert_eq!(
            status["details"]["causes"][0]["reason"], "ExitCode",
            "{h}: {status}"
        );
        assert_eq!(
            status["details"]["causes"][0]["message"], "5",
            "{h}: {status}"
        );
        let (out, _, status) = c.stream_exec(&client_id, &["id", "-u"]);
        assert_eq!(out, "1000\n", "{h}");
        assert_eq!(status["status"], "Success", "{h}: {status}");

        c.remove_pod(&pod);
        let under = format!("{}/", prop.display());
        let left: Vec<String> = mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&under))
            .collect();
        assert!(left.is_empty(), "{h}: mounts left in the volume: {left:?}");
    });
}

/// What containerd and the shim make of a runtime's error, with the
/// runtime's own words (which differ between runc and berth) and IDs cut
/// out: `failed to start exec "ID": OCI runtime exec failed: …: unknown`.
fn error_shape(msg: &str, op: &str) -> String {
    let marker = format!("OCI runtime {op} failed: ");
    let Some((head, _)) = msg.split_once(&marker) else {
        return format!("{msg} (no {marker:?})");
    };
    let tail = if msg.ends_with(": unknown") {
        ": unknown"
    } else {
        ""
    };
    format!("{}{marker}…{tail}", blank_ids(head))
}

/// Replaces every run of 64 hex digits (containerd's IDs) with "ID".
fn blank_ids(s: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for ch in s.chars() {
        if ch.is_ascii_hexdigit() {
            run.push(ch);
            continue;
        }
        out.push_str(if run.len() == 64 { "ID" } else { &run });
        run.clear();
        out.push(ch);
    }
    out.push_str(if run.len() == 64 { "ID" } else { &run });
    out
}

/// The container's cgroup has the CPU and memory limits asked for, read
/// from the host's cgroup files (v1 on this hybrid host, v2 on the VM).
fn check_resources(h: &str, pid: i32, shares: u64, quota: i64, period: u64, memory: u64) {
    if unified_only() {
        let d = cgroup_dir(pid, "");
        // runc's conversion of cpu shares to a cgroup v2 weight.
        let weight = 1 + ((shares - 2) * 9999) / 262_142;
        assert_eq!(read_trim(&d.join("cpu.weight")), weight.to_string(), "{h}");
        assert_eq!(
            read_trim(&d.join("cpu.max")),
            format!("{quota} {period}"),
            "{h}"
        );
        assert_eq!(read_trim(&d.join("memory.max")), memory.to_string(), "{h}");
    } else {
        let cpu = cgroup_dir(pid, "cpu");
        assert_eq!(
            read_trim(&cpu.join("cpu.shares")),
            shares.to_string(),
            "{h}"
        );
        assert_eq!(
            read_trim(&cpu.join("cpu.cfs_quota_us")),
            quota.to_string(),
            "{h}"
        );
        assert_eq!(
            read_trim(&cpu.join("cpu.cfs_period_us")),
            period.to_string(),
            "{h}"
        );
        let mem = cgroup_dir(pid, "memory");
        assert_eq!(
            read_trim(&mem.join("memory.limit_in_bytes")),
            memory.to_string(),
            "{h}"
        );
    }
}

impl Cri {
    /// Runs `cmd` through the streaming Exec URL as kubectl exec does, on
    /// the websocket flavour of the kubelet's streaming protocol
    /// ("v4.channel.k8s.io": binary frames whose first byte names the
    /// stream, 1 stdout, 2 stderr, 3 the final status as JSON). Returns
    /// stdout, stderr and the status.
    fn stream_exec(&self, id: &str, cmd: &[&str]) -> (String, String, serde_json::Value) {
        use tungstenite::client::IntoClientRequest;
        let url = self
            .ok(
                "Exec",
                self.rs().exec(cri::ExecRequest {
                    container_id: id.into(),
                    cmd: strings(cmd),
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            )
            .url;
        let rest = url
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("Exec URL {url}"));
        let host = rest.split('/').next().unwrap();
        let stream = std::net::TcpStream::connect(host).unwrap();
        stream.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
        let mut req = format!("ws://{rest}").into_client_request().unwrap();
        let headers = req.headers_mut();
        headers.insert(
            "Sec-WebSocket-Protocol",
            "v4.channel.k8s.io".parse().unwrap(),
        );
        headers.insert("Origin", format!("http://{host}").parse().unwrap());
        let (mut ws, _) = tungstenite::client(req, stream)
            .unwrap_or_else(|e| panic!("websocket handshake with {url}: {e}"));
        let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            match ws.read() {
                Ok(tungstenite::Message::Binary(b)) if !b.is_empty() => match b[0] {
                    1 => out.extend_from_slice(&b[1..]),
                    2 => err.extend_from_slice(&b[1..]),
                    3 => status.extend_from_slice(&b[1..]),
                    _ => {}
                },
                Ok(tungstenite::Message::Close(_)) => break,
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    break
                }
                Err(tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                )) => break,
                Err(e) => panic!("websocket exec: {e}"),
            }
        }
        let status = serde_json::from_slice(&status)
            .unwrap_or_else(|e| panic!("exec status {:?}: {e}", String::from_utf8_lossy(&status)));
        (
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
            status,
        )
    }
}

// ---------------------------------------------------------------------------
// Flows 3 and 4: status, logs, stats, updates, stopping.

#[test]
fn container_status_logs_stats_updates_and_stops() {
    let c = Cri::start();
    c.for_each_handler("lifecycle", |h| {
        let t0 = now_ns();
        let name = format!("{h}life").replace('-', "");
        let parent = c.parent(&name, 0);
        let pod = c.run_pod(h, c.pod_config(&name, 0, &parent, false));

        // Exits: Completed, Error, OOMKilled, with their times.
        let done_cfg = c.container_config(
            &pod,
            "done",
            &["sh", "-c", "echo out-line; echo err-line >&2"],
        );
        let done = c.run_container(&pod, done_cfg);
        let fail_cfg = c.container_config(&pod, "fail", &["sh", "-c", "exit 3"]);
        let fail = c.run_container(&pod, fail_cfg);
        // Memory hogs under a 32 MiB limit, OOM-killed: one at once, one a
        // second after it started.
        let hog = "dd if=/dev/zero of=/dev/null bs=64M count=1";
        let limited = |name: &str, cmd: &[&str]| {
            let mut cfg = c.container_config(&pod, name, cmd);
            cfg.linux.as_mut().unwrap().resources = Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 32 << 20,
                ..Default::default()
            });
            c.run_container(&pod, cfg)
        };
        let hog_args: Vec<&str> = hog.split(' ').collect();
        let oom = limited("oom", &hog_args);
        let oom_late = limited("oomlate", &["sh", "-c", &format!("sleep 1; exec {hog}")]);
        for (id, code, reason) in [
            (&done, 0, "Completed"),
            (&fail, 3, "Error"),
            (&oom, 137, "OOMKilled"),
            (&oom_late, 137, "OOMKilled"),
        ] {
            let mut s = c.wait_exited(id);
            // containerd sets the reason when the shim's OOM event comes,
            // which is apart from (and may follow) the exit event.
            if reason == "OOMKilled" {
                let deadline = Instant::now() + Duration::from_secs(10);
                while s.reason != reason && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                    s = c.container_status(id).status.unwrap();
                }
            }
            let got = (s.exit_code, s.reason.as_str());
            if reason == "OOMKilled" && h != "berth" && got == (137, "Error") {
                // runc's shim misses OOM kills it should report: on cgroup
                // v1 containerd's runc shim adds the cgroup to its OOM epoll
                // only in Start, so an OOM in the first milliseconds goes
                // unreported (about one run in five under load); on a pure
                // v2 host (containerd 1.7 in the VM lane) it missed the late
                // one too. berth's shim watches from create on both, so for
                // it this is a failure.
                eprintln!("{h}: an OOM kill was reported as Error (no OOM event from runc's shim)");
            } else {
                assert_eq!(got, (code, reason), "{h}: {:?}", s.metadata);
            }
            // containerd stamps started_at once the start call returned, so a
            // container this short can look finished a moment before it
            // started (with runc's shim too).
            let (now, slack) = (now_ns(), 1_000_000_000);
            assert!(
                t0 <= s.created_at
                    && s.created_at <= s.started_at
                    && s.created_at <= s.finished_at
                    && s.started_at <= s.finished_at + slack
                    && s.finished_at <= now,
                "{h}: times of {:?}: created {} started {} finished {} now {now}",
                s.metadata,
                s.created_at,
                s.started_at,
                s.finished_at
            );
            assert_eq!(
                s.image.as_ref().map(|i| i.image.as_str()),
                Some(BUSYBOX),
                "{h}"
            );
        }

        // The log of `done`, in the CRI format, at the path the kubelet
        // gave.
        let st = c.container_status(&done).status.unwrap();
        let log = pod.log_dir().join("done/0.log");
        assert_eq!(Path::new(&st.log_path), log, "{h}");
        let lines = wait_for(SETTLE, "done's log", || {
            let l = read_cri_log(&log);
            (l.len() >= 2).then_some(l)
        });
        let want = |stream: &str, text: &str| LogLine {
            stream: stream.into(),
            tag: "F".into(),
            text: text.into(),
        };
        assert_eq!(lines.len(), 2, "{h}: {lines:?}");
        assert!(
            lines.contains(&want("stdout", "out-line")),
            "{h}: {lines:?}"
        );
        assert!(
            lines.contains(&want("stderr", "err-line")),
            "{h}: {lines:?}"
        );

        // ListContainers: by pod, by state and label, by ID.
        let list = |filter: cri::ContainerFilter| -> Vec<String> {
            let mut ids: Vec<String> = c
                .ok(
                    "ListContainers",
                    c.rs().list_containers(cri::ListContainersRequest {
                        filter: Some(filter),
                    }),
                )
                .containers
                .into_iter()
                .map(|x| x.id)
                .collect();
            ids.sort();
            ids
        };
        let mut want_ids = vec![done.clone(), fail.clone(), oom.clone(), oom_late.clone()];
        want_ids.sort();
        assert_eq!(
            list(cri::ContainerFilter {
                pod_sandbox_id: pod.id.clone(),
                ..Default::default()
            }),
            want_ids,
            "{h}"
        );
        let exited = cri::ContainerStateValue {
            state: ContainerState::ContainerExited as i32,
        };
        assert_eq!(
            list(cri::ContainerFilter {
                state: Some(exited),
                label_selector: labels(&[("berth-test", &c.tag), ("container", "fail")]),
                ..Default::default()
            }),
            vec![fail.clone()],
            "{h}"
        );
        assert_eq!(
            list(cri::ContainerFilter {
                id: oom.clone(),
                ..Default::default()
            }),
            vec![oom.clone()],
            "{h}"
        );

        // A running container that logs, stops on SIGTERM, and is measured.
        let logger_cfg = c.container_config(
            &pod,
            "logger",
            &[
                "sh",
                "-c",
                "trap 'exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
            ],
        );
        let logger = c.run_container(&pod, logger_cfg);
        let log = pod.log_dir().join("logger/0.log");
        let ticks = |p: &Path| -> Vec<u64> {
            read_cri_log(p)
                .into_iter()
                .map(|l| {
                    assert_eq!(
                        (l.stream.as_str(), l.tag.as_str()),
                        ("stdout", "F"),
                        "{h}: {l:?}"
                    );
                    l.text
                        .strip_prefix("tick ")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| panic!("{h}: {l:?}"))
                })
                .collect()
        };
        wait_for(SETTLE, "the logger's lines", || {
            (ticks(&log).len() >= 3).then_some(())
        });
        // ReopenContainerLog, as the kubelet's log rotation does: the old
        // file moved away, new lines go to a new file at the same path.
        let rotated = pod.log_dir().join("logger/0.log.1");
        std::fs::rename(&log, &rotated).unwrap();
        c.ok(
            "ReopenContainerLog",
            c.rs().reopen_container_log(cri::ReopenContainerLogRequest {
                container_id: logger.clone(),
            }),
        );
        let new = wait_for(SETTLE, "lines in the reopened log", || {
            let t = ticks(&log);
            (t.len() >= 3).then_some(t)
        });
        let old = ticks(&rotated);
        assert!(old.last() < new.first(), "{h}: old {old:?} new {new:?}");
        assert!(
            new.windows(2).all(|w| w[1] == w[0] + 1),
            "{h}: lines lost: {new:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(ticks(&rotated), old, "{h}: the rotated log still grows");

        // ContainerStats: CPU, memory, the writable layer (containerd
        // samples its size every stats_collect_period).
        c.sh(&logger, "dd if=/dev/zero of=/big bs=1M count=8 2>/dev/null");
        let stats = wait_for(SETTLE, "the writable layer's usage", || {
            let s = c
                .ok(
                    "ContainerStats",
                    c.rs().container_stats(cri::ContainerStatsRequest {
                        container_id: logger.clone(),
                    }),
                )
                .stats?;
            let used = s.writable_layer.as_ref()?.used_bytes.as_ref()?.value;
            (used >= 8 << 20).then_some(s)
        });
        assert_eq!(
            stats.attributes.as_ref().map(|a| a.id.as_str()),
            Some(logger.as_str()),
            "{h}"
        );
        let cpu = stats
            .cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds.as_ref())
            .map(|v| v.value);
        assert!(cpu.unwrap_or(0) > 0, "{h}: cpu {:?}", stats.cpu);
        let ws = stats
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .map(|v| v.value);
        assert!(ws.unwrap_or(0) > 0, "{h}: memory {:?}", stats.memory);
        let listed = c
            .ok(
                "ListContainerStats",
                c.rs().list_container_stats(cri::ListContainerStatsRequest {
                    filter: Some(cri::ContainerStatsFilter {
                        pod_sandbox_id: pod.id.clone(),
                        ..Default::default()
                    }),
                }),
            )
            .stats;
        assert!(
            listed
                .iter()
                .any(|s| s.attributes.as_ref().is_some_and(|a| a.id == logger) && s.cpu.is_some()),
            "{h}: ListContainerStats: {listed:?}"
        );
        // PodSandboxStats: the same answer from every handler (containerd
        // 1.6 computes it from the pod's cgroup parent).
        let ps = c.call(
            "PodSandboxStats",
            c.rs().pod_sandbox_stats(cri::PodSandboxStatsRequest {
                pod_sandbox_id: pod.id.clone(),
            }),
        );
        let shape = match &ps {
            Ok(r) => {
                let s = r
                    .stats
                    .as_ref()
                    .unwrap_or_else(|| panic!("{h}: PodSandboxStats without stats"));
                let l = s
                    .linux
                    .as_ref()
                    .unwrap_or_else(|| panic!("{h}: PodSandboxStats without linux: {s:?}"));
                assert_eq!(
                    s.attributes.as_ref().map(|a| a.id.as_str()),
                    Some(pod.id.as_str()),
                    "{h}"
                );
                assert!(
                    l.containers
                        .iter()
                        .any(|x| x.attributes.as_ref().is_some_and(|a| a.id == logger)),
                    "{h}: {l:?}"
                );
                format!("ok: cpu {} memory {}", l.cpu.is_some(), l.memory.is_some())
            }
            // containerd 1.7 on cgroup v2 loads the pod's cgroup parent as
            // a path, so a systemd slice name fails the same for every
            // handler; the pod's name is the handler's.
            Err(s) => format!(
                "{:?}: {}",
                s.code(),
                blank_ids(s.message()).replace(&parent, "PARENT")
            ),
        };
        eprintln!("{h}: PodSandboxStats: {shape}");
        c.same_as_runc(h, "PodSandboxStats", &shape);

        // UpdateContainerResources reaches the cgroup files.
        let logger_pid = c.container_pid(&logger);
        let update = cri::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 20_000,
            cpu_shares: 256,
            memory_limit_in_bytes: 96 << 20,
            ..Default::default()
        };
        c.ok(
            "UpdateContainerResources",
            c.rs()
                .update_container_resources(cri::UpdateContainerResourcesRequest {
                    container_id: logger.clone(),
                    linux: Some(update),
                    ..Default::default()
                }),
        );
        check_resources(h, logger_pid, 256, 20_000, 100_000, 96 << 20);

        // StopContainer with a grace period: one that ignores SIGTERM is
        // killed when it runs out; one that honours it exits at once.
        let stubborn_cfg = c.container_config(
            &pod,
            "stubborn",
            &["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
        );
        let stubborn = c.run_container(&pod, stubborn_cfg);
        let t = Instant::now();
        c.ok(
            "StopContainer",
            c.rs().stop_container(cri::StopContainerRequest {
                container_id: stubborn.clone(),
                timeout: 2,
            }),
        );
        let took = t.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(30),
            "{h}: stopping took {took:?}"
        );
        let s = c.wait_exited(&stubborn);
        assert_eq!((s.exit_code, s.reason.as_str()), (137, "Error"), "{h}");
        let t = Instant::now();
        c.ok(
            "StopContainer",
            c.rs().stop_container(cri::StopContainerRequest {
                container_id: logger.clone(),
                timeout: 30,
            }),
        );
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{h}: a TERM-honouring stop took {:?}",
            t.elapsed()
        );
        let s = c.wait_exited(&logger);
        assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"), "{h}");

        // RemoveContainer.
        c.ok(
            "RemoveContainer",
            c.rs().remove_container(cri::RemoveContainerRequest {
                container_id: done.clone(),
            }),
        );
        assert!(
            !list(cri::ContainerFilter {
                pod_sandbox_id: pod.id.clone(),
                ..Default::default()
            })
            .contains(&done),
            "{h}"
        );
        let gone = c.call(
            "ContainerStatus",
            c.rs().container_status(cri::ContainerStatusRequest {
                container_id: done.clone(),
                verbose: false,
            }),
        );
        assert_eq!(
            gone.map(|_| ()).map_err(|s| s.code()),
            Err(tonic::Code::NotFound),
            "{h}"
        );
        assert!(
            mountinfo_lines_with(&done).is_empty(),
            "{h}: mounts of a removed container"
        );

        // Every container has exited: stopping the pod still succeeds
        // (the shim is asked to kill tasks that are gone), and removing it
        // leaves nothing behind.
        c.remove_pod(&pod);
    });
}

// ---------------------------------------------------------------------------
// Flows 5 (a container that cannot start) and 6 (bidirectional propagation).

#[test]
fn failures_and_bidirectional_propagation() {
    let c = Cri::start();
    c.for_each_handler("failures", |h| {
        let name = format!("{h}broken").replace('-', "");
        let pod = c.run_pod(h, c.pod_config(&name, 0, &c.parent(&name, 1), false));
        let shims = c.shims_of(&pod.id);

        // The runtime's one-line error comes back through the CRI, and the
        // container is reported as failed to start.
        let cfg = c.container_config(&pod, "missing", &["/no/such/binary"]);
        let missing = c
            .create_container(&pod, cfg)
            .unwrap_or_else(|s| panic!("{h}: CreateContainer: {}", s.message()));
        let err = c
            .start_container(&pod, &missing)
            .expect_err("a missing binary started");
        let msg = err.message();
        eprintln!(
            "{h}: StartContainer of a missing binary: {:?}: {msg}",
            err.code()
        );
        assert!(
            msg.contains("/no/such/binary") && !msg.contains('\n'),
            "{h}: {msg}"
        );
        c.same_as_runc(
            h,
            "StartContainer of a missing binary: code",
            &format!("{:?}", err.code()),
        );
        c.same_as_runc(
            h,
            "StartContainer of a missing binary: error shape",
            &error_shape(msg, "create"),
        );
        let s = c.wait_exited(&missing);
        assert_eq!((s.exit_code, s.reason.as_str()), (128, "StartError"), "{h}");
        assert!(s.message.contains("/no/such/binary"), "{h}: {}", s.message);
        // Nothing of it is left mounted or in the runtime's state, and the
        // pod carries on with the same shim.
        let left = mountinfo_lines_with(&missing);
        assert!(
            left.is_empty(),
            "{h}: mounts left by a failed start: {left:#?}"
        );
        assert!(
            !c.runtime_state_dir(h, &missing).exists(),
            "{h}: runtime state left by a failed start"
        );
        let s = c.sandbox_status(&pod.id).status.unwrap();
        assert_eq!(
            s.state,
            PodSandboxState::SandboxReady as i32,
            "{h}: the pod after a failed start"
        );
        c.ok(
            "RemoveContainer",
            c.rs().remove_container(cri::RemoveContainerRequest {
                container_id: missing.clone(),
            }),
        );
        let cfg = c.container_config(&pod, "fine", &["sleep", "3600"]);
        let fine = c.run_container(&pod, cfg);
        assert_eq!(c.sh(&fine, "echo fine").trim(), "fine", "{h}");
        assert_eq!(
            c.shims_of(&pod.id),
            shims,
            "{h}: the pod's shim after a failed start"
        );
        // The pause dies (the pod crashed): containerd sees the sandbox
        // exit, and the kubelet's stop and remove still succeed (the shim
        // is asked to kill a task that is gone).
        let pause = c.sandbox_pid(&pod.id);
        // SAFETY: killing the pause process of this test's pod.
        unsafe { libc::kill(pause, libc::SIGKILL) };
        wait_for(
            SETTLE,
            "the pod to be NOTREADY after its pause died",
            || {
                let s = c.sandbox_status(&pod.id).status?;
                (s.state == PodSandboxState::SandboxNotready as i32).then_some(())
            },
        );
        c.remove_pod(&pod);

        // A bidirectional volume on a shared host mount: the container's
        // own mount inside it reaches the host (the rootfs is rshared).
        let name = format!("{h}bidir").replace('-', "");
        let pod = c.run_pod(h, c.pod_config(&name, 0, &c.parent(&name, 0), true));
        let prop = c.shared_dir(&format!("bidir-{h}"));
        let mut cfg = c.container_config(
            &pod,
            "mounter",
            &[
                "sh",
                "-c",
                "mkdir -p /vol/m && mount -t tmpfs -o size=1m berthprop /vol/m && \
                 echo ok > /vol/m/ok && exec sleep 3600",
            ],
        );
        cfg.mounts = vec![volume(
            &prop,
            "/vol",
            MountPropagation::PropagationBidirectional,
            false,
        )];
        cfg.linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .privileged = true;
        let mounter = c.run_container(&pod, cfg);
        let m = prop.join("m");
        // The mount shows first, then the file the container writes in it.
        wait_for(SETTLE, "the container's mount and file on the host", || {
            let mounted = mount_points().contains(&m.display().to_string());
            let written = std::fs::read_to_string(m.join("ok")).unwrap_or_default() == "ok\n";
            (mounted && written).then_some(())
        });
        assert_eq!(
            c.state(&mounter),
            ContainerState::ContainerRunning as i32,
            "{h}"
        );
        c.remove_pod(&pod);
        // What the container mounted in the volume stays on the host once
        // the pod is gone (the kubelet's volume manager cleans volumes),
        // the same with every handler; nothing else is left.
        let left: Vec<String> = mount_points()
            .into_iter()
            .filter_map(|p| {
                p.strip_prefix(&format!("{}/", prop.display()))
                    .map(String::from)
            })
            .collect();
        c.same_as_runc(h, "mounts left in a bidirectional volume", &left.join(" "));
        umount(&m);
    });
}
