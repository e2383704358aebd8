//! containerd 1.6 runs containers through containerd-shim-berth-v2
//! (`ctr run --runtime io.containerd.berth.v2`), on a private root, state
//! directory and socket, with the shim and berth on its PATH.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-berth-v2");

struct Containerd {
    dir: PathBuf,
    child: Child,
    sock: PathBuf,
    namespace: String,
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

impl Containerd {
    fn start() -> Containerd {
        let dir = std::env::temp_dir().join(format!("berth-shim-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n[grpc]\n  address = \"{s}\"\n[ttrpc]\n  address = \"{s}.ttrpc\"\n[debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_cgroup = true\n",
            d = dir.display(),
            s = sock.display()
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        // The shim and berth (built side by side) on containerd's PATH.
        let bin_dir = Path::new(SHIM).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sock.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(sock.exists(), "containerd did not start");
        Containerd {
            dir,
            child,
            sock,
            namespace: format!("berthshim{}", std::process::id()),
        }
    }

    fn ctr(&self, args: &[&str]) -> Output {
        let o = self.dir.join(".out");
        let e = self.dir.join(".err");
        let status = Command::new("timeout")
            .args(["-k", "5", "60", "ctr", "-a"])
            .arg(&self.sock)
            .arg("-n")
            .arg(&self.namespace)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap())
            .status()
            .unwrap();
        Output {
            status,
            stdout: std::fs::read(&o).unwrap_or_default(),
            stderr: std::fs::read(&e).unwrap_or_default(),
        }
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(o.status.success(), "ctr {args:?}: {}{}", out(&o), err(&o));
        out(&o)
    }

    /// Waits for the namespace's shims to exit (they do once their last
    /// task is deleted).
    fn wait_no_shims(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = Command::new("pgrep")
                .args(["-f", &format!("{SHIM}.*-namespace {}", self.namespace)])
                .output()
                .unwrap();
            if out(&left).trim().is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "shims left: {}", out(&left));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self
                .ctr_ok(&["task", "ls"])
                .lines()
                .any(|l| l.starts_with(id) && l.contains(status))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{id} never became {status}: {}",
            self.ctr_ok(&["task", "ls"])
        );
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
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = self.dir.display().to_string();
        let mut mounts: Vec<String> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&dir))
            .map(String::from)
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let c = std::ffi::CString::new(m).unwrap();
            // SAFETY: detaching a mount under our scratch directory.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(h.path().join(&self.namespace));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs ctr on a pty of the test's own (CI has none); returns its exit code
/// and what it printed.
fn ctr_on_pty(c: &Containerd, args: &[&str]) -> (Option<i32>, String) {
    let (mut m, mut s) = (0, 0);
    // SAFETY: openpty fills two fds we then own.
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0);
    // SAFETY: fresh fds from openpty.
    let (master, slave) = unsafe {
        (
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(m),
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(s),
        )
    };
    let mut child = Command::new("ctr")
        .arg("-a")
        .arg(&c.sock)
        .arg("-n")
        .arg(&c.namespace)
        .args(args)
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "ctr {args:?} hung");
        std::thread::sleep(Duration::from_millis(50));
    };
    use std::io::Read;
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on our fd.
    unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut buf = vec![0u8; 4096];
    let n = (&master).read(&mut buf).unwrap_or(0);
    (
        status.code(),
        String::from_utf8_lossy(&buf[..n]).into_owned(),
    )
}

#[test]
fn ctr_runs_containers_through_the_berth_shim() {
    let c = Containerd::start();
    let image = c.dir.join("busybox.tar");
    let mkimage = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/mkimage");
    assert!(Command::new(mkimage)
        .arg(&image)
        .status()
        .unwrap()
        .success());
    c.ctr_ok(&["images", "import", image.to_str().unwrap()]);
    let img = "docker.io/library/busybox:latest";
    let rt = "io.containerd.berth.v2";

    // Output, stderr and exit status, with nothing lost at exit.
    let o = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        rt,
        img,
        "once",
        "sh",
        "-c",
        "seq 1 2000; echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert_eq!(out(&o).lines().count(), 2000);
    assert!(out(&o).ends_with("2000\n"));
    assert!(err(&o).contains("err"));

    // Detached: exec, ps, pause/resume, kill, delete.
    c.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        rt,
        img,
        "bg",
        "sh",
        "-c",
        "trap 'exit 0' TERM; sleep 1000 & wait",
    ]);
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "bg",
        "sh",
        "-c",
        "echo exec-out; exit 4",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    assert_eq!(out(&o), "exec-out\n");
    // The init and its sleep, once the shell has forked it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.ctr_ok(&["task", "ps", "bg"]).lines().count() != 3 {
        assert!(
            Instant::now() < deadline,
            "task ps never showed init and sleep"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.ctr_ok(&["task", "pause", "bg"]);
    c.wait_for("bg", "PAUSED");
    c.ctr_ok(&["task", "resume", "bg"]);
    c.wait_for("bg", "RUNNING");
    c.ctr_ok(&["task", "kill", "-s", "SIGTERM", "bg"]);
    c.wait_for("bg", "STOPPED");
    c.ctr_ok(&["task", "delete", "bg"]);
    c.ctr_ok(&["container", "rm", "bg"]);

    // Metrics from the container's cgroup.
    c.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        rt,
        img,
        "metered",
        "sleep",
        "1000",
    ]);
    let metrics = c.ctr_ok(&["task", "metrics", "metered"]);
    assert!(
        metrics.contains("memory.usage_in_bytes") && metrics.contains("pids.current"),
        "{metrics}"
    );
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", "metered"]);
    c.wait_for("metered", "STOPPED");
    c.ctr_ok(&["task", "delete", "metered"]);
    c.ctr_ok(&["container", "rm", "metered"]);

    // A terminal, for the task and for an exec.
    let (code, text) = ctr_on_pty(
        &c,
        &[
            "run",
            "--rm",
            "-t",
            "--runtime",
            rt,
            img,
            "tty1",
            "sh",
            "-c",
            "tty; exit 6",
        ],
    );
    assert_eq!(code, Some(6));
    assert!(text.contains("/dev/pts/"), "{text:?}");
    c.ctr_ok(&["run", "-d", "--runtime", rt, img, "tty2", "sleep", "1000"]);
    let (code, text) = ctr_on_pty(
        &c,
        &[
            "task",
            "exec",
            "-t",
            "--exec-id",
            "x1",
            "tty2",
            "sh",
            "-c",
            "tty; exit 7",
        ],
    );
    assert_eq!(code, Some(7));
    assert!(text.contains("/dev/pts/"), "{text:?}");
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", "tty2"]);
    c.wait_for("tty2", "STOPPED");
    c.ctr_ok(&["task", "delete", "tty2"]);
    c.ctr_ok(&["container", "rm", "tty2"]);

    // --log-uri file://: the output goes to the file.
    let log = c.dir.join("container.log");
    let uri = format!("file://{}", log.display());
    c.ctr_ok(&[
        "run",
        "--rm",
        "--log-uri",
        &uri,
        "--runtime",
        rt,
        img,
        "logged",
        "sh",
        "-c",
        "echo to-the-log",
    ]);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap_or_default(),
        "to-the-log\n"
    );

    // --log-uri binary://: a logger process gets stdout and stderr as fds
    // 3 and 4 and says it is ready by closing fd 5.
    let logdir = c.dir.join("binlog");
    std::fs::create_dir_all(&logdir).unwrap();
    let logger = c.dir.join("logger.sh");
    std::fs::write(
        &logger,
        "#!/bin/sh\n[ \"$1\" = dir ] || exit 2\nexec 5>&-\necho \"$CONTAINER_NAMESPACE/$CONTAINER_ID\" > \"$2/who\"\ncat <&3 > \"$2/out\" &\ncat <&4 > \"$2/err\" &\nwait\ntouch \"$2/done\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let uri = format!("binary://{}?dir={}", logger.display(), logdir.display());
    c.ctr_ok(&[
        "run",
        "--rm",
        "--log-uri",
        &uri,
        "--runtime",
        rt,
        img,
        "binlogged",
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !logdir.join("done").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(logdir.join("out")).unwrap_or_default(),
        "to-stdout\n"
    );
    assert_eq!(
        std::fs::read_to_string(logdir.join("err")).unwrap_or_default(),
        "to-stderr\n"
    );
    assert_eq!(
        std::fs::read_to_string(logdir.join("who"))
            .unwrap_or_default()
            .trim(),
        format!("{}/binlogged", c.namespace)
    );

    // --runtime-config-path (the CRI plugin's runtimeoptions): BinaryName
    // and Root from the named file.
    let wrapper = c.dir.join("wrapper.sh");
    let berth_bin = Path::new(SHIM).with_file_name("berth");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}/wrapper.log\nexec {} \"$@\"\n",
            c.dir.display(),
            berth_bin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let rt_root = c.dir.join("rtroot");
    let rt_config = c.dir.join("berth-runtime.toml");
    std::fs::write(
        &rt_config,
        format!(
            "BinaryName = \"{}\"\nRoot = \"{}\"\n",
            wrapper.display(),
            rt_root.display()
        ),
    )
    .unwrap();
    let configured = c.ctr_ok(&[
        "run",
        "--rm",
        "--runtime",
        rt,
        "--runtime-config-path",
        rt_config.to_str().unwrap(),
        img,
        "configured",
        "echo",
        "via-config",
    ]);
    assert_eq!(configured.trim(), "via-config");
    let calls = std::fs::read_to_string(c.dir.join("wrapper.log")).unwrap_or_default();
    let want_root = format!("--root {}/{}", rt_root.display(), c.namespace);
    assert!(
        calls.contains(&want_root) && calls.contains("create") && calls.contains("delete"),
        "{calls}"
    );

    // An OOM kill in the container's memory cgroup becomes a TaskOOM event.
    let events_log = c.dir.join("events.log");
    let mut events = Command::new("ctr")
        .arg("--address")
        .arg(&c.sock)
        .args(["events"])
        .stdout(std::fs::File::create(&events_log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Subscribed once an event of our own shows up.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 0;
    while !std::fs::read_to_string(&events_log)
        .unwrap_or_default()
        .contains("/containers/create")
    {
        assert!(Instant::now() < deadline, "ctr events saw nothing");
        n += 1;
        let probe = format!("events-probe-{n}");
        c.ctr_ok(&["container", "create", img, &probe]);
        c.ctr_ok(&["container", "rm", &probe]);
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = c.ctr(&[
        "run",
        "--rm",
        "--memory-limit",
        "16777216",
        "--runtime",
        rt,
        img,
        "oomer",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
    assert_ne!(
        o.status.code(),
        Some(0),
        "the hog was not killed: {}",
        out(&o)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while Instant::now() < deadline {
        seen = std::fs::read_to_string(&events_log).unwrap_or_default();
        if seen.contains("/tasks/oom") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = events.kill();
    let _ = events.wait();
    assert!(
        seen.lines()
            .any(|l| l.contains("/tasks/oom") && l.contains("oomer")),
        "no TaskOOM event:\n{seen}"
    );

    // stdin reaches the process, and the end of ctr's stdin ends it, so
    // `cat` exits.
    let o = Command::new("timeout")
        .args(["-k", "5", "30", "sh", "-c"])
        .arg(format!(
            "printf 'line one\\nline two\\n' | ctr -a {} -n {} run --rm --runtime {rt} {img} stdin-cat cat",
            c.sock.display(),
            c.namespace
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    assert_eq!(out(&o), "line one\nline two\n");

    // Containers of one pod (same io.kubernetes.cri.sandbox-id) share a
    // shim, as with the runc shim; it exits after the last one is deleted.
    // Shims of the --rm runs above may still be on their way out.
    c.wait_no_shims();
    let pod = format!("pod-{}", std::process::id());
    let ann = format!("io.kubernetes.cri.sandbox-id={pod}");
    for id in ["pod-a", "pod-b"] {
        c.ctr_ok(&[
            "run",
            "-d",
            "--annotation",
            &ann,
            "--runtime",
            rt,
            img,
            id,
            "sleep",
            "1000",
        ]);
    }
    c.wait_for("pod-a", "RUNNING");
    c.wait_for("pod-b", "RUNNING");
    let shims = Command::new("pgrep")
        .args([
            "-f",
            &format!("containerd-shim-berth-v2 -namespace {}", c.namespace),
        ])
        .output()
        .unwrap();
    let pids: Vec<String> = out(&shims).lines().map(String::from).collect();
    assert_eq!(pids.len(), 1, "one shim for the pod: {pids:?}");
    for id in ["pod-a", "pod-b"] {
        c.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
        c.wait_for(id, "STOPPED");
        c.ctr_ok(&["task", "delete", id]);
        c.ctr_ok(&["container", "rm", id]);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{}", pids[0])).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !Path::new(&format!("/proc/{}", pids[0])).exists(),
        "the pod's shim outlived its containers"
    );

    // kill --all.
    c.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        rt,
        img,
        "all",
        "sh",
        "-c",
        "sleep 1000 & sleep 1000",
    ]);
    c.ctr_ok(&["task", "kill", "--all", "-s", "SIGKILL", "all"]);
    c.wait_for("all", "STOPPED");
    c.ctr_ok(&["task", "delete", "all"]);
    c.ctr_ok(&["container", "rm", "all"]);

    // A shim killed mid-run: containerd cleans up through `shim delete`.
    c.ctr_ok(&["run", "-d", "--runtime", rt, img, "lost", "sleep", "1000"]);
    let shim_pid = Command::new("pgrep")
        .args(["-f", &format!("{SHIM}.*-id lost")])
        .output()
        .unwrap();
    let pid: i32 = out(&shim_pid)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("the shim of `lost`");
    // SAFETY: killing the shim this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(15);
    while c
        .ctr_ok(&["task", "ls"])
        .lines()
        .any(|l| l.starts_with("lost") && l.contains("RUNNING"))
    {
        assert!(
            Instant::now() < deadline,
            "containerd did not notice the lost shim"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // containerd may have deleted the task already; either way it is gone.
    let _ = c.ctr(&["task", "delete", "lost"]);
    c.ctr_ok(&["container", "rm", "lost"]);
    assert_eq!(c.ctr_ok(&["task", "ls", "-q"]).trim(), "");
    c.wait_no_shims();
}
