//! Test helpers: busybox bundles and a `berth` runner with its own `--root`
//! that deletes its containers even when a test fails.
#![allow(dead_code)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");
/// The reference: Debian's runc 1.1, run on the same bundles.
pub const RUNC: &str = "/usr/sbin/runc";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir()
            .join("berth-tests")
            .join(format!("{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Populates `rootfs` with Debian's static busybox and its applet links.
pub fn busybox_rootfs(rootfs: &Path) {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    if std::fs::hard_link("/bin/busybox", bin.join("busybox")).is_err() {
        std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    }
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = symlink("busybox", bin.join(applet));
        }
    }
    for d in ["proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
    )
    .unwrap();
}

/// One container test: its own state root, its own bundle, its own ID.
pub struct Env {
    pub scratch: Scratch,
    pub root: PathBuf,
    pub bundle: PathBuf,
    pub id: String,
    pub config: Value,
}

impl Env {
    pub fn new(name: &str) -> Env {
        let scratch = Scratch::new(name);
        let root = scratch.0.join("state");
        let bundle = scratch.0.join("bundle");
        busybox_rootfs(&bundle.join("rootfs"));
        let mut config = berth::commands::spec::default_spec(false);
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(["true"]);
        let id = format!("{name}-{}", std::process::id());
        // Each test its own cgroup, so the leak check can name it.
        config["linux"]["cgroupsPath"] = json!(format!("/berth-test-{id}"));
        Env {
            scratch,
            root,
            bundle,
            id,
            config,
        }
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self
    }

    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    pub fn write_config(&self) {
        std::fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// Runs `berth --root R ARGS...`. Output goes through files, not
    /// pipes: a created container keeps berth's stdout and stderr open, so
    /// a pipe would not reach EOF until the container exits.
    pub fn berth(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(BERTH);
        cmd.arg("--root").arg(&self.root).args(args);
        output_via_files(cmd, &self.scratch.0)
    }

    /// `berth run` of the current config; returns (exit code, stdout, stderr).
    pub fn run(&self) -> (i32, String, String) {
        self.write_config();
        let out = self.berth(&["run", "-b", self.bundle.to_str().unwrap(), &self.id]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// runc with its own state root, on the same bundle.
    pub fn runc(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(RUNC);
        cmd.arg("--root").arg(self.runc_root()).args(args);
        output_via_files(cmd, &self.scratch.0)
    }

    fn runc_root(&self) -> PathBuf {
        self.scratch.0.join("runc-state")
    }

    /// `runtime` (BERTH or RUNC) with this test's state root for it.
    pub fn call(&self, runtime: &str, args: &[&str]) -> Output {
        if runtime == RUNC {
            self.runc(args)
        } else {
            self.berth(args)
        }
    }

    /// `runc run` of the current config; returns (exit code, stdout, stderr).
    pub fn runc_run(&self) -> (i32, String, String) {
        self.write_config();
        let out = self.runc(&["run", "-b", self.bundle.to_str().unwrap(), &self.id]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `run` that must succeed; returns stdout.
    pub fn run_ok(&self) -> String {
        let (code, out, err) = self.run();
        assert_eq!(code, 0, "berth run failed: stdout={out} stderr={err}");
        out
    }

    pub fn create(&self) -> Output {
        self.write_config();
        self.berth(&["create", "-b", self.bundle.to_str().unwrap(), &self.id])
    }

    pub fn create_ok(&self) {
        let out = self.create();
        assert!(
            out.status.success(),
            "create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn state(&self) -> Value {
        let out = self.berth(&["state", &self.id]);
        assert!(
            out.status.success(),
            "state failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn status(&self) -> String {
        self.state()["status"].as_str().unwrap().to_string()
    }

    /// The container's cgroup directory in the given v1 controller (or
    /// "unified"), as the config names it; on a pure cgroup v2 host the one
    /// directory whatever the name.
    pub fn cgroup_dir(&self, hierarchy: &str) -> PathBuf {
        let base = PathBuf::from("/sys/fs/cgroup");
        let base = if pure_v2() {
            base
        } else {
            base.join(hierarchy)
        };
        base.join(format!("berth-test-{}", self.id))
    }

    pub fn expect_no_state(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.root)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        // Compiled seccomp profiles are kept for the next container.
        let left: Vec<_> = left.into_iter().filter(|n| n != ".cache").collect();
        assert!(left.is_empty(), "state left behind: {left:?}");
        assert!(!self.cgroup_dir("memory").exists(), "cgroup left behind");
        assert!(!self.cgroup_dir("pids").exists(), "cgroup left behind");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for (runtime, root) in [(BERTH, self.root.clone()), (RUNC, self.runc_root())] {
            let Ok(entries) = std::fs::read_dir(&root) else {
                continue;
            };
            for e in entries.flatten() {
                let _ = Command::new(runtime)
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "-f"])
                    .arg(e.file_name())
                    .output();
            }
        }
    }
}

/// A host file an attack test aims at: saved before, put back when the
/// test ends (even when it fails), so a successful attack changes nothing
/// for long.
pub struct Restore {
    pub path: PathBuf,
    saved: Vec<u8>,
}

impl Restore {
    pub fn save(path: impl Into<PathBuf>) -> Restore {
        let path = path.into();
        let saved = std::fs::read(&path).unwrap();
        Restore { path, saved }
    }

    pub fn unchanged(&self) -> bool {
        std::fs::read(&self.path).is_ok_and(|now| now == self.saved)
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if !self.unchanged() {
            let _ = std::fs::write(&self.path, &self.saved);
        }
    }
}

/// Runs `cmd` with stdin from /dev/null and stdout/stderr into files.
pub fn output_via_files(mut cmd: Command, dir: &Path) -> Output {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let (o, e) = (dir.join(format!(".out{n}")), dir.join(format!(".err{n}")));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap());
    let status = cmd.status().unwrap();
    let out = Output {
        status,
        stdout: std::fs::read(&o).unwrap_or_default(),
        stderr: std::fs::read(&e).unwrap_or_default(),
    };
    let _ = std::fs::remove_file(&o);
    let _ = std::fs::remove_file(&e);
    out
}

/// Whether this host has only the cgroup2 hierarchy (the VM lane's guest).
pub fn pure_v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Polls `cond` every 20 ms for up to `secs` seconds; whether it came
/// true. Generous deadlines: CI machines run four tests per two cores.
pub fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Reads from `f` until `want` shows up or the deadline passes.
pub fn read_until(f: &mut std::fs::File, want: &str) -> String {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // SAFETY: fcntl on a fd we own.
    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    while std::time::Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        match f.read(&mut buf) {
            Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
        if String::from_utf8_lossy(&out).contains(want) {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
