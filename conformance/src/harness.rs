//! What a case works with: its own bundle (a busybox rootfs), its own
//! `--root`, ID and cgroup, and the runtime under test driven through
//! runc's command line (options before the ID, as crun 1.8 wants), each
//! call bounded by a timeout.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// A case's verdict when it does not pass.
#[derive(Debug)]
pub enum Verdict {
    Fail(String),
    /// The kernel or machine lacks the feature (says which).
    Skip(String),
}

pub type CaseResult = Result<(), Verdict>;

pub fn fail<T>(msg: impl Into<String>) -> Result<T, Verdict> {
    Err(Verdict::Fail(msg.into()))
}

/// Polls `cond` every 20 ms for up to `secs` seconds; whether it came
/// true. Deadlines are generous: cases run four at a time.
pub fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fails unless `cond`, with `msg`.
pub fn check(cond: bool, msg: impl FnOnce() -> String) -> CaseResult {
    if cond {
        Ok(())
    } else {
        Err(Verdict::Fail(msg()))
    }
}

/// Fails unless `got == want`.
pub fn expect_eq(what: &str, got: &str, want: &str) -> CaseResult {
    check(got == want, || {
        format!("{what}: got {got:?}, want {want:?}")
    })
}

/// One invocation's result.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

pub struct Ctx {
    pub runtime: PathBuf,
    pub dir: PathBuf,
    pub bundle: PathBuf,
    pub root: PathBuf,
    pub id: String,
    pub config: Value,
    seq: usize,
    timeout: Duration,
}

fn busybox_rootfs(rootfs: &Path) -> std::io::Result<()> {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin)?;
    if std::fs::hard_link("/bin/busybox", bin.join("busybox")).is_err() {
        std::fs::copy("/bin/busybox", bin.join("busybox"))?;
    }
    let list = Command::new("/bin/busybox").arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = symlink("busybox", bin.join(applet));
        }
    }
    for d in ["proc", "sys", "dev", "tmp", "etc", "root", "home/user"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1234:1234:user:/home/user:/bin/sh\n",
    )?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nuser:x:1234:\n")?;
    Ok(())
}

/// The base config: runc's default, made runnable by every runtime graded
/// (ociVersion 1.0.2, no terminal), with a cgroup of the case's own.
pub fn base_config(id: &str) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["true"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "conformance",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "cgroupsPath": format!("/{id}"),
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

impl Ctx {
    pub fn new(runtime: &Path, base: &Path, case: &str, timeout: Duration) -> std::io::Result<Ctx> {
        let dir = base.join(case);
        let _ = std::fs::remove_dir_all(&dir);
        let bundle = dir.join("bundle");
        busybox_rootfs(&bundle.join("rootfs"))?;
        let id = format!("bc{}-{}", std::process::id(), case);
        Ok(Ctx {
            runtime: runtime.to_path_buf(),
            root: dir.join("state"),
            config: base_config(&id),
            dir,
            bundle,
            id,
            seq: 0,
            timeout,
        })
    }

    /// Sets a config value by JSON pointer, making objects on the way.
    pub fn set(&mut self, pointer: &str, value: Value) {
        let mut cur = &mut self.config;
        let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
        for (i, p) in parts.iter().enumerate() {
            if i + 1 == parts.len() {
                cur[*p] = value;
                return;
            }
            if !cur[*p].is_object() {
                cur[*p] = json!({});
            }
            cur = &mut cur[*p];
        }
    }

    pub fn sh(&mut self, script: &str) {
        self.config["process"]["args"] = json!(["sh", "-c", script]);
    }

    pub fn add_mount(&mut self, m: Value) {
        self.config["mounts"]
            .as_array_mut()
            .expect("mounts")
            .push(m);
    }

    pub fn namespaces(&mut self) -> &mut Vec<Value> {
        self.config["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces")
    }

    pub fn write_config(&self) -> std::io::Result<()> {
        std::fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec_pretty(&self.config)?,
        )
    }

    /// Runs `runtime --root R ARGS...` with stdio through files (a created
    /// container holds its stdio open) and a timeout.
    pub fn runtime(&mut self, args: &[&str]) -> Out {
        self.seq += 1;
        let (o, e) = (
            self.dir.join(format!(".out{}", self.seq)),
            self.dir.join(format!(".err{}", self.seq)),
        );
        let status = Command::new("timeout")
            .arg("-k")
            .arg("2")
            .arg(format!("{}", self.timeout.as_secs()))
            .arg(&self.runtime)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&o).expect("out file"))
            .stderr(std::fs::File::create(&e).expect("err file"))
            .status();
        let code = match status {
            Ok(s) => s.code().unwrap_or(-1),
            Err(_) => -1,
        };
        Out {
            code,
            stdout: std::fs::read_to_string(&o).unwrap_or_default(),
            stderr: std::fs::read_to_string(&e).unwrap_or_default(),
        }
    }

    /// `run --bundle B ID`: the container's stdout, or a failure.
    pub fn run(&mut self) -> Result<Out, Verdict> {
        self.write_config()
            .map_err(|e| Verdict::Fail(format!("write config: {e}")))?;
        let (b, id) = (self.bundle.display().to_string(), self.id.clone());
        Ok(self.runtime(&["run", "--bundle", &b, &id]))
    }

    /// `run` that must exit 0; returns stdout.
    pub fn run_ok(&mut self) -> Result<String, Verdict> {
        let out = self.run()?;
        if out.code != 0 {
            return fail(format!("run exited {}: {}", out.code, out.stderr.trim()));
        }
        Ok(out.stdout)
    }

    pub fn create(&mut self) -> CaseResult {
        self.write_config()
            .map_err(|e| Verdict::Fail(format!("write config: {e}")))?;
        let (b, id) = (self.bundle.display().to_string(), self.id.clone());
        let out = self.runtime(&["create", "--bundle", &b, &id]);
        check(out.ok(), || format!("create failed: {}", out.stderr.trim()))
    }

    pub fn start(&mut self) -> CaseResult {
        let id = self.id.clone();
        let out = self.runtime(&["start", &id]);
        check(out.ok(), || format!("start failed: {}", out.stderr.trim()))
    }

    pub fn state(&mut self) -> Result<Value, Verdict> {
        let id = self.id.clone();
        let out = self.runtime(&["state", &id]);
        if !out.ok() {
            return fail(format!("state failed: {}", out.stderr.trim()));
        }
        serde_json::from_str(&out.stdout)
            .map_err(|e| Verdict::Fail(format!("state is not JSON: {e}")))
    }

    pub fn wait_status(&mut self, want: &str) -> CaseResult {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if self.state()?["status"] == want {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let st = self.state()?;
        fail(format!("status {} never became {want}", st["status"]))
    }

    /// Deletes whatever the case left, even if the runtime misbehaves.
    pub fn cleanup(&mut self) {
        let ids: Vec<String> = std::fs::read_dir(&self.root)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for id in ids.iter().chain(std::iter::once(&self.id.clone())) {
            let _ = self.runtime(&["delete", "--force", id]);
        }
    }

    /// A file of the container's cgroup in a v1 controller (on a pure
    /// cgroup v2 host, of its one cgroup whatever the controller), or None.
    pub fn cgroup_file(&self, controller: &str, file: &str) -> Option<String> {
        let base = Path::new("/sys/fs/cgroup");
        let dir = if base.join("cgroup.controllers").exists() {
            base.join(&self.id)
        } else {
            base.join(controller).join(&self.id)
        };
        let p = dir.join(file);
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    }

    pub fn host_path(&self, inner: &str) -> PathBuf {
        self.bundle
            .join("rootfs")
            .join(inner.trim_start_matches('/'))
    }
}
