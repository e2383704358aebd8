//! The engines people use drive berth in place of runc: containerd 1.6
//! through its own runc shim (`ctr run --runc-binary`). Each runs on a
//! private root, state directory and socket, with a locally built image,
//! and nothing is left running afterwards.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `hack/mkimage`: a busybox image as an OCI archive.
fn busybox_image(dir: &Path) -> PathBuf {
    let out = dir.join("busybox-oci.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/mkimage");
    let ok = Command::new(script).arg(&out).status().unwrap().success();
    assert!(ok, "hack/mkimage failed");
    out
}

/// Runs a command with a deadline, so a hung engine fails the test instead
/// of CI.
fn run_with_timeout(mut cmd: Command, dir: &Path, secs: u64) -> Output {
    let mut wrapped = Command::new("timeout");
    wrapped
        .arg("-k")
        .arg("5")
        .arg(secs.to_string())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    cmd = wrapped;
    output_via_files(cmd, dir)
}

/// A private containerd.
struct Containerd {
    scratch: Scratch,
    child: Child,
    sock: PathBuf,
    namespace: String,
}

impl Containerd {
    fn start(name: &str) -> Containerd {
        let scratch = Scratch::new(name);
        let dir = scratch.0.clone();
        let sock = dir.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n[grpc]\n  address = \"{s}\"\n[ttrpc]\n  address = \"{s}.ttrpc\"\n[debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_cgroup = true\n",
            d = dir.display(),
            s = sock.display()
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sock.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            sock.exists(),
            "containerd did not start: {}",
            std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
        );
        Containerd {
            scratch,
            child,
            sock,
            namespace: format!("berthtest{}", std::process::id()),
        }
    }

    fn ctr(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("ctr");
        cmd.arg("-a")
            .arg(&self.sock)
            .arg("-n")
            .arg(&self.namespace)
            .args(args);
        run_with_timeout(cmd, &self.scratch.0, 60)
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}{}",
            stdout_of(&out),
            stderr_of(&out)
        );
        stdout_of(&out)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Mounts containerd made under its root (snapshots), deepest first.
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = self.scratch.0.display().to_string();
        let mut mounts: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        // ctr puts containers in /<namespace>/<id>: the namespace level is
        // shared by design (runc leaves it too); remove ours.
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(h.path().join(&self.namespace));
        }
    }
}

#[test]
fn containerd_runs_berth_through_its_runc_shim() {
    let c = Containerd::start("containerd");
    let image = busybox_image(&c.scratch.0);
    c.ctr_ok(&["images", "import", image.to_str().unwrap()]);
    let img = "docker.io/library/busybox:latest";

    // Run to completion: output and exit status.
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        BERTH,
        img,
        "once",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "out\n");
    assert!(stderr_of(&out).contains("err"), "{}", stderr_of(&out));

    // Detached, then exec, ps, pause/resume, metrics, kill, delete.
    c.ctr_ok(&[
        "run",
        "-d",
        "--runc-binary",
        BERTH,
        img,
        "bg",
        "sh",
        "-c",
        "trap 'echo term; exit 0' TERM; sleep 1000 & wait",
    ]);
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "bg",
        "sh",
        "-c",
        "echo exec-out; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "exec-out\n");
    let ps = c.ctr_ok(&["task", "ps", "bg"]);
    assert_eq!(ps.lines().count(), 3, "init, sleep: {ps}");
    c.ctr_ok(&["task", "pause", "bg"]);
    assert!(c.ctr_ok(&["task", "ls"]).contains("PAUSED"));
    c.ctr_ok(&["task", "resume", "bg"]);
    assert!(c.ctr_ok(&["task", "ls"]).contains("RUNNING"));
    let metrics = c.ctr_ok(&["task", "metrics", "bg"]);
    assert!(
        metrics.contains("pids.current") && metrics.contains("memory.usage_in_bytes"),
        "{metrics}"
    );
    c.ctr_ok(&["task", "kill", "-s", "SIGTERM", "bg"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.ctr_ok(&["task", "ls"]).contains("STOPPED") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(c.ctr_ok(&["task", "ls"]).contains("STOPPED"));
    c.ctr_ok(&["task", "delete", "bg"]);
    c.ctr_ok(&["container", "rm", "bg"]);

    // kill --all reaches every process of the container.
    c.ctr_ok(&[
        "run",
        "-d",
        "--runc-binary",
        BERTH,
        img,
        "all",
        "sh",
        "-c",
        "sleep 1000 & sleep 1000",
    ]);
    c.ctr_ok(&["task", "kill", "--all", "-s", "SIGKILL", "all"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.ctr_ok(&["task", "ls"]).contains("STOPPED") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    c.ctr_ok(&["task", "delete", "all"]);
    c.ctr_ok(&["container", "rm", "all"]);
    assert_eq!(c.ctr_ok(&["task", "ls", "-q"]).trim(), "");
}
