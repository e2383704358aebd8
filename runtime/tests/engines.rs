//! The engines people use drive berth in place of runc: containerd 1.6
//! through its own runc shim (`ctr run --runc-binary`), dockerd 20.10
//! (`--add-runtime berth=...`) and podman 4.3 (`--runtime`). Each runs on
//! a private root, state directory and socket, with a locally built image,
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

/// SIGTERM, a grace period, then SIGKILL; reaped either way.
fn stop(child: &mut Child, grace_secs: u64) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(grace_secs);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until `ctr task ls` shows the task stopped.
fn wait_stopped(c: &Containerd) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.ctr_ok(&["task", "ls"]).contains("STOPPED") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `hack/mkimage --rootfs`: the busybox rootfs as a plain tar.
fn busybox_rootfs_tar(dir: &Path) -> PathBuf {
    let out = dir.join("busybox-rootfs.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/mkimage");
    let ok = Command::new(script)
        .arg("--rootfs")
        .arg(&out)
        .status()
        .unwrap()
        .success();
    assert!(ok, "hack/mkimage --rootfs failed");
    out
}

/// Unmounts everything mounted below `dir`, deepest first.
fn unmount_below(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.display().to_string();
    let mut mounts: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Removes a cgroup tree an engine made (its parent cgroup, such as
/// /docker), in every hierarchy, when the test made it.
fn remove_cgroup_tree(name: &str, existed: &[PathBuf]) {
    fn rm(dir: &Path) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rm(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = h.path().join(name);
        if !existed.contains(&dir) {
            rm(&dir);
        }
    }
}

fn cgroups_named(name: &str) -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|h| h.path().join(name))
        .filter(|p| p.exists())
        .collect()
}

fn wait_for_socket(sock: &Path, log: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        sock.exists(),
        "{what} did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
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
            // Per engine: the containerd and dockerd tests run at once
            // and each removes its namespace's cgroup when done.
            namespace: format!("berthtest{name}{}", std::process::id()),
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
        stop(&mut self.child, 10);
        // Mounts containerd made under its root (snapshots).
        unmount_below(&self.scratch.0);
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
    let mut ps = String::new();
    let both = wait_until(15, || {
        ps = c.ctr_ok(&["task", "ps", "bg"]);
        ps.lines().count() == 3
    });
    assert!(both, "init, sleep: {ps}");
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
    wait_stopped(&c);
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
    wait_stopped(&c);
    c.ctr_ok(&["task", "delete", "all"]);
    c.ctr_ok(&["container", "rm", "all"]);
    assert_eq!(c.ctr_ok(&["task", "ls", "-q"]).trim(), "");
}

/// A private dockerd on the private containerd, berth added as a runtime.
struct Dockerd {
    containerd: Containerd,
    child: Child,
    sock: PathBuf,
    cgroups_before: Vec<PathBuf>,
}

impl Dockerd {
    fn start() -> Dockerd {
        let cgroups_before = cgroups_named("docker");
        let containerd = Containerd::start("dockerd");
        let dir = containerd.scratch.0.clone();
        let sock = dir.join("docker.sock");
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--containerd")
            .arg(&containerd.sock)
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--ip-forward=false",
                "--ip-masq=false",
                "--userland-proxy=false",
            ])
            .arg("--add-runtime")
            .arg(format!("berth={BERTH}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_for_socket(&sock, &dir.join("dockerd.log"), "dockerd");
        let d = Dockerd {
            containerd,
            child,
            sock,
            cgroups_before,
        };
        // The socket appears before the API answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !d.docker(&["version"]).status.success() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn docker(&self, args: &[&str]) -> Output {
        // Debian's client, which speaks this daemon's API version.
        let client = if Path::new("/usr/bin/docker").exists() {
            "/usr/bin/docker"
        } else {
            "docker"
        };
        let mut cmd = Command::new(client);
        cmd.arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args);
        run_with_timeout(cmd, &self.containerd.scratch.0, 90)
    }

    fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}{}",
            stdout_of(&out),
            stderr_of(&out)
        );
        stdout_of(&out)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        stop(&mut self.child, 15);
        unmount_below(&self.containerd.scratch.0);
        remove_cgroup_tree("docker", &self.cgroups_before);
    }
}

#[test]
fn dockerd_runs_berth() {
    let d = Dockerd::start();
    let rootfs = busybox_rootfs_tar(&d.containerd.scratch.0);
    d.docker_ok(&["import", rootfs.to_str().unwrap(), "busybox:local"]);
    let run = ["run", "--runtime", "berth", "--network", "none"];

    let mut args = run.to_vec();
    args.extend([
        "--rm",
        "busybox:local",
        "sh",
        "-c",
        "echo from-docker; exit 5",
    ]);
    let out = d.docker(&args);
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "from-docker\n");

    let mut args = run.to_vec();
    args.extend([
        "-d",
        "--name",
        "d1",
        "busybox:local",
        "sh",
        "-c",
        "trap 'exit 0' TERM; sleep 1000 & wait",
    ]);
    let id = d.docker_ok(&args).trim().to_string();
    let out = d.docker(&["exec", "d1", "sh", "-c", "echo exec-out; exit 6"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "exec-out\n");
    let mut top = String::new();
    let forked = wait_until(15, || {
        top = d.docker_ok(&["top", "d1"]);
        top.contains("sleep 1000")
    });
    assert!(forked, "{top}");
    d.docker_ok(&["pause", "d1"]);
    assert!(d
        .docker_ok(&["ps", "--format", "{{.Status}}"])
        .contains("Paused"));
    d.docker_ok(&["unpause", "d1"]);
    d.docker_ok(&["update", "--memory", "64m", "--memory-swap", "128m", "d1"]);
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/docker/{id}/memory.limit_in_bytes"
    ))
    .unwrap();
    assert_eq!(limit.trim(), "67108864");
    d.docker_ok(&["stop", "-t", "10", "d1"]);
    assert!(d
        .docker_ok(&["ps", "-a", "--format", "{{.Status}}"])
        .contains("Exited (0)"));
    d.docker_ok(&["rm", "d1"]);
}

/// A private podman store.
struct Podman {
    scratch: Scratch,
    cgroups_before: Vec<PathBuf>,
}

impl Podman {
    fn cmd(&self, args: &[&str]) -> Command {
        let d = &self.scratch.0;
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args([
                "--runtime",
                BERTH,
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--storage-driver",
                "vfs",
            ])
            .args(args);
        cmd
    }

    fn podman(&self, args: &[&str]) -> Output {
        run_with_timeout(self.cmd(args), &self.scratch.0, 90)
    }

    fn podman_ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}{}",
            stdout_of(&out),
            stderr_of(&out)
        );
        stdout_of(&out)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-af"]);
        unmount_below(&self.scratch.0);
        remove_cgroup_tree("libpod_parent", &self.cgroups_before);
    }
}

#[test]
fn podman_runs_berth() {
    let p = Podman {
        cgroups_before: cgroups_named("libpod_parent"),
        scratch: Scratch::new("podman"),
    };
    let rootfs = busybox_rootfs_tar(&p.scratch.0);
    p.podman_ok(&[
        "import",
        rootfs.to_str().unwrap(),
        "localhost/busybox:local",
    ]);
    // This host lacks CAP_SYS_RESOURCE: podman's default ulimits would
    // raise hard limits, so ask for ones within the host's.
    let run = [
        "run",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ];

    let mut args = run.to_vec();
    args.extend([
        "--rm",
        "localhost/busybox:local",
        "sh",
        "-c",
        "echo from-podman; exit 7",
    ]);
    let out = p.podman(&args);
    assert_eq!(out.status.code(), Some(7), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "from-podman\n");

    let mut args = run.to_vec();
    args.extend([
        "-d",
        "--name",
        "p1",
        "localhost/busybox:local",
        "sh",
        "-c",
        "trap 'exit 0' TERM; sleep 1000 & wait",
    ]);
    p.podman_ok(&args);
    let out = p.podman(&["exec", "p1", "sh", "-c", "echo exec-out; exit 8"]);
    assert_eq!(out.status.code(), Some(8), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "exec-out\n");
    p.podman_ok(&["stop", "-t", "10", "p1"]);
    p.podman_ok(&["rm", "p1"]);

    // run -t, on a pty of the test's own (CI has none).
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut master = std::fs::File::from(pty.master);
    let slave = std::fs::File::from(pty.slave);
    let mut args = run.to_vec();
    args.extend([
        "--rm",
        "-t",
        "localhost/busybox:local",
        "sh",
        "-c",
        "tty; exit 9",
    ]);
    let mut cmd = p.cmd(&args);
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "podman run -t hung");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(9));
    use std::io::Read;
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on our fd.
    unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut buf = vec![0u8; 4096];
    let n = master.read(&mut buf).unwrap_or(0);
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("/dev/pts/"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}
