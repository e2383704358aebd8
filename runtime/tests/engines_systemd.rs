//! Today's engines on a host like theirs: systemd owns a pure cgroup v2
//! tree and every engine uses the systemd cgroup driver — containerd 1.7
//! (its runc shim with berth as the binary, and containerd-shim-berth-v2),
//! dockerd 26 (`native.cgroupdriver=systemd`) and podman 5 (`--cgroup-manager
//! systemd`). Each runs, execs, shows logs and stats, pauses, updates, has a
//! memory-limited container OOM-killed and reported as such, stops and
//! removes, leaving nothing behind. These run in the VM lane; elsewhere
//! each test says so and returns.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn systemd_v2() -> bool {
    let ok = berth::cgroups::systemd::is_running()
        && berth::cgroups::Layout::detect().unwrap().is_pure_v2();
    if !ok {
        eprintln!("skipped: needs systemd and cgroup v2 (runs in hack/vm)");
    }
    ok
}

/// The directory of the workspace's binaries (berth, and the shim built
/// beside it), for containerd's PATH.
fn bin_dir() -> PathBuf {
    Path::new(BERTH).parent().unwrap().to_path_buf()
}

fn image(dir: &Path, rootfs_only: bool) -> PathBuf {
    let out = dir.join(if rootfs_only {
        "rootfs.tar"
    } else {
        "busybox.tar"
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/mkimage");
    let mut cmd = Command::new(script);
    if rootfs_only {
        cmd.arg("--rootfs");
    }
    assert!(cmd.arg(&out).status().unwrap().success());
    out
}

fn timed(mut cmd: Command, dir: &Path, secs: u64) -> Output {
    let mut t = Command::new("timeout");
    t.args(["-k", "5", &secs.to_string()])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    cmd = t;
    output_via_files(cmd, dir)
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        stdout_of(&out),
        stderr_of(&out)
    );
    stdout_of(&out)
}

fn stop(child: &mut Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn unmount_below(dir: &Path) {
    let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Transient scopes whose names contain `marker`, from systemd.
fn scopes(marker: &str) -> Vec<String> {
    let out = Command::new("systemctl")
        .args([
            "list-units",
            "--all",
            "--plain",
            "--no-legend",
            "--type=scope",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|u| u.contains(marker))
        .map(String::from)
        .collect()
}

struct Containerd {
    scratch: Scratch,
    child: Child,
    sock: PathBuf,
}

impl Containerd {
    fn start(name: &str) -> Containerd {
        let scratch = Scratch::new(name);
        let d = scratch.0.clone();
        let sock = d.join("containerd.sock");
        std::fs::write(
            d.join("config.toml"),
            format!(
                "version = 2\nroot = \"{r}/root\"\nstate = \"{r}/state\"\n[grpc]\n  address = \"{s}\"\n[ttrpc]\n  address = \"{s}.ttrpc\"\n",
                r = d.display(),
                s = sock.display()
            ),
        )
        .unwrap();
        // The berth shim reads SystemdCgroup from a runtime config file, as
        // the CRI plugin hands it over.
        std::fs::write(d.join("berth.toml"), "SystemdCgroup = true\n").unwrap();
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        assert!(wait_until(30, || sock.exists()), "containerd did not start");
        Containerd {
            scratch,
            child,
            sock,
        }
    }

    fn ctr(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("ctr");
        cmd.arg("-a")
            .arg(&self.sock)
            .args(["-n", "berthvm"])
            .args(args);
        timed(cmd, &self.scratch.0, 90)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        stop(&mut self.child);
        unmount_below(&self.scratch.0);
    }
}

/// The pid of the containerd-shim-berth-v2 serving container `id`.
fn berth_shim_pid(id: &str) -> String {
    let out = Command::new("pgrep")
        .args(["-f", &format!("containerd-shim-berth-v2 .*-id {id}( |$)")])
        .output()
        .unwrap();
    let pids = String::from_utf8_lossy(&out.stdout);
    let pid = pids.lines().next();
    pid.unwrap_or_else(|| panic!("no berth shim for {id}"))
        .to_string()
}

/// How many inotify instances the process holds open.
fn inotify_fds(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == "anon_inode:inotify")
        })
        .count()
}

/// containerd 1.7 with SystemdCgroup, through both shims.
#[test]
fn containerd_with_systemd_cgroups() {
    if !systemd_v2() {
        return;
    }
    let c = Containerd::start("vm-containerd");
    let img = image(&c.scratch.0, false);
    ok(
        c.ctr(&["images", "import", img.to_str().unwrap()]),
        "import",
    );
    let busybox = "docker.io/library/busybox:latest";
    let config = c.scratch.0.join("berth.toml");
    let berth_shim = [
        "--runtime",
        "io.containerd.berth.v2",
        "--runtime-config-path",
        config.to_str().unwrap(),
    ];
    let runc_shim = ["--runc-binary", BERTH, "--runc-systemd-cgroup"];
    for (name, runtime) in [
        ("runc-shim", &runc_shim[..]),
        ("berth-shim", &berth_shim[..]),
    ] {
        let id = format!("c-{name}");
        let cgroup = format!("system.slice:berthvm:{id}");
        let mut args = vec![
            "run",
            "-d",
            "--cgroup",
            &cgroup,
            "--memory-limit",
            "67108864",
        ];
        args.extend_from_slice(runtime);
        args.extend([
            busybox,
            &id,
            "sh",
            "-c",
            "echo hello; trap 'exit 0' TERM; sleep 1000 & wait",
        ]);
        ok(c.ctr(&args), &format!("{name}: run"));
        let unit = format!("berthvm-{id}.scope");
        assert!(
            wait_until(15, || scopes(&unit).len() == 1),
            "{name}: no {unit}"
        );
        let out = c.ctr(&[
            "task",
            "exec",
            "--exec-id",
            "e1",
            &id,
            "sh",
            "-c",
            "echo exec; exit 4",
        ]);
        assert_eq!(out.status.code(), Some(4), "{name}: {}", stderr_of(&out));
        ok(c.ctr(&["task", "pause", &id]), "pause");
        assert!(
            ok(c.ctr(&["task", "ls"]), "ls").contains("PAUSED"),
            "{name}"
        );
        ok(c.ctr(&["task", "resume", &id]), "resume");
        let metrics = ok(c.ctr(&["task", "metrics", &id]), "metrics");
        assert!(
            metrics.contains("memory") && metrics.contains("pids"),
            "{name}: {metrics}"
        );
        let max = std::fs::read_to_string(format!("/sys/fs/cgroup/system.slice/{unit}/memory.max"))
            .unwrap();
        assert_eq!(max.trim(), "67108864", "{name}");
        // The berth shim's OOM watch (an inotify fd) ends with the
        // container's last process, not with its cgroup's removal, which
        // inotify may never report: a shim serving a pod would gather them.
        let shim = (name == "berth-shim").then(|| berth_shim_pid(&id));
        if let Some(shim) = &shim {
            assert_eq!(inotify_fds(shim), 1, "{name}: the OOM watch");
        }
        ok(c.ctr(&["task", "kill", "-s", "SIGTERM", &id]), "kill");
        assert!(wait_until(20, || ok(c.ctr(&["task", "ls"]), "ls").contains("STOPPED")));
        if let Some(shim) = &shim {
            assert!(
                wait_until(10, || inotify_fds(shim) == 0),
                "{name}: the shim still watches the exited container's cgroup"
            );
        }
        ok(c.ctr(&["task", "delete", &id]), "task delete");
        ok(c.ctr(&["container", "rm", &id]), "container rm");
        assert!(
            wait_until(15, || scopes(&unit).is_empty()),
            "{name}: {unit} left"
        );

        // A memory hog is OOM-killed and containerd says so.
        let oom = format!("oom-{name}");
        let mut events = Command::new("ctr")
            .arg("-a")
            .arg(&c.sock)
            .args(["-n", "berthvm", "events"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let cgroup = format!("system.slice:berthvm:{oom}");
        let mut args = vec![
            "run",
            "--rm",
            "--cgroup",
            &cgroup,
            "--memory-limit",
            "16777216",
        ];
        args.extend_from_slice(runtime);
        args.extend([busybox, &oom, "sh", "-c", "head -c 64m /dev/zero | tail"]);
        let _ = c.ctr(&args);
        std::thread::sleep(Duration::from_millis(500));
        let _ = events.kill();
        let out = events.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("/tasks/oom"), "{name}: no OOM event: {text}");
    }
}

/// dockerd 26 with the systemd cgroup driver and berth added as a runtime.
#[test]
fn dockerd_with_systemd_cgroups() {
    if !systemd_v2() {
        return;
    }
    let c = Containerd::start("vm-dockerd");
    let d = c.scratch.0.clone();
    let sock = d.join("docker.sock");
    let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
    let mut dockerd = Command::new("dockerd")
        .arg("--data-root")
        .arg(d.join("data"))
        .arg("--exec-root")
        .arg(d.join("exec"))
        .arg("--pidfile")
        .arg(d.join("docker.pid"))
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .arg("--containerd")
        .arg(&c.sock)
        .args([
            "--exec-opt",
            "native.cgroupdriver=systemd",
            "--iptables=false",
            "--bridge=none",
        ])
        .arg("--add-runtime")
        .arg(format!("berth={BERTH}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    struct Guard<'a>(&'a mut Child);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            stop(self.0);
        }
    }
    let _guard = Guard(&mut dockerd);
    let docker = |args: &[&str]| -> Output {
        let mut cmd = Command::new("docker");
        cmd.arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(args);
        timed(cmd, &d, 120)
    };
    assert!(
        wait_until(60, || docker(&["version"]).status.success()),
        "dockerd did not answer"
    );
    let rootfs = image(&d, true);
    ok(
        docker(&["import", rootfs.to_str().unwrap(), "busybox:vm"]),
        "import",
    );
    let run = ["run", "--runtime", "berth", "--network", "none"];
    let mut args = run.to_vec();
    args.extend([
        "-d",
        "--name",
        "d1",
        "--memory",
        "64m",
        "busybox:vm",
        "sh",
        "-c",
        "echo hello; trap 'exit 0' TERM; sleep 1000 & wait",
    ]);
    let id = ok(docker(&args), "run").trim().to_string();
    assert!(
        scopes(&format!("docker-{id}.scope")).len() == 1,
        "no docker scope"
    );
    let out = docker(&["exec", "d1", "sh", "-c", "echo exec; exit 6"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr_of(&out));
    assert!(wait_until(15, || ok(docker(&["logs", "d1"]), "logs").contains("hello")));
    let stats = ok(
        docker(&["stats", "--no-stream", "--format", "{{.MemUsage}}", "d1"]),
        "stats",
    );
    assert!(stats.contains("64MiB"), "{stats}");
    ok(docker(&["pause", "d1"]), "pause");
    ok(docker(&["unpause", "d1"]), "unpause");
    ok(
        docker(&["update", "--memory", "96m", "--memory-swap", "128m", "d1"]),
        "update",
    );
    let max = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.max"
    ))
    .unwrap();
    assert_eq!(max.trim(), "100663296");
    ok(docker(&["stop", "-t", "10", "d1"]), "stop");
    ok(docker(&["rm", "d1"]), "rm");
    let mut args = run.to_vec();
    args.extend([
        "--name",
        "hog",
        "--memory",
        "16m",
        "--memory-swap",
        "16m",
        "busybox:vm",
        "sh",
        "-c",
        // containerd's runc shim starts watching memory.events only after
        // the task started: an OOM in the first instant goes unseen.
        "sleep 1; head -c 64m /dev/zero | tail",
    ]);
    let _ = docker(&args);
    let oom = ok(
        docker(&["inspect", "-f", "{{.State.OOMKilled}}", "hog"]),
        "inspect",
    );
    assert_eq!(oom.trim(), "true");
    ok(docker(&["rm", "hog"]), "rm");
    assert!(
        wait_until(15, || scopes("docker-").is_empty()),
        "{:?}",
        scopes("docker-")
    );
}

/// podman 5 with its systemd cgroup manager (its default here).
#[test]
fn podman_with_systemd_cgroups() {
    if !systemd_v2() {
        return;
    }
    let scratch = Scratch::new("vm-podman");
    let d = scratch.0.clone();
    let podman = |args: &[&str]| -> Output {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .args([
                "--runtime",
                BERTH,
                "--cgroup-manager",
                "systemd",
                "--events-backend",
                "file",
            ])
            .args(args);
        timed(cmd, &d, 120)
    };
    struct Cleanup<F: Fn()>(F);
    impl<F: Fn()> Drop for Cleanup<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let _cleanup = Cleanup(|| {
        let _ = podman(&["rm", "-af"]);
        unmount_below(&d);
    });
    let img = image(&d, false);
    ok(podman(&["load", "-i", img.to_str().unwrap()]), "load");
    let busybox = "docker.io/library/busybox:latest";
    ok(
        podman(&[
            "run",
            "-d",
            "--name",
            "p1",
            "--memory",
            "64m",
            busybox,
            "sh",
            "-c",
            "echo hello; trap 'exit 0' TERM; sleep 1000 & wait",
        ]),
        "run",
    );
    let out = podman(&["exec", "p1", "sh", "-c", "echo exec; exit 8"]);
    assert_eq!(out.status.code(), Some(8), "{}", stderr_of(&out));
    assert!(wait_until(15, || ok(podman(&["logs", "p1"]), "logs").contains("hello")));
    let stats = ok(
        podman(&["stats", "--no-stream", "--format", "{{.MemUsage}}", "p1"]),
        "stats",
    );
    assert!(stats.contains("67.11MB") || stats.contains("64"), "{stats}");
    ok(podman(&["pause", "p1"]), "pause");
    ok(podman(&["unpause", "p1"]), "unpause");
    ok(podman(&["update", "--memory", "96m", "p1"]), "update");
    ok(podman(&["stop", "-t", "10", "p1"]), "stop");
    ok(podman(&["rm", "p1"]), "rm");
    // conmon learns of an OOM through inotify on the scope's
    // memory.events; under emulation it has missed one twice in this
    // lane's runs (a race on conmon's side not pinned down). So: reported
    // at least once in three runs.
    let mut reported = Vec::new();
    for _ in 0..3 {
        let out = podman(&[
            "run",
            "--name",
            "hog",
            "--memory",
            "16m",
            "--memory-swap",
            "16m",
            busybox,
            "sh",
            "-c",
            // As with docker above: an OOM in the container's first
            // instant can come before the engine watches for it.
            "sleep 1; head -c 64m /dev/zero | tail",
        ]);
        let oom = ok(
            podman(&["inspect", "--format", "{{.State.OOMKilled}}", "hog"]),
            "inspect",
        );
        ok(podman(&["rm", "hog"]), "rm");
        reported.push(format!("{} (exit {:?})", oom.trim(), out.status.code()));
        if oom.trim() == "true" {
            break;
        }
    }
    assert!(
        reported.iter().any(|r| r.starts_with("true")),
        "OOMKilled: {reported:?}"
    );
    assert!(
        wait_until(15, || scopes("libpod-").is_empty()),
        "{:?}",
        scopes("libpod-")
    );
}
