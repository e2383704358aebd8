//! Rootless containerd, as nerdctl's containerd-rootless.sh sets it up: an
//! unprivileged user runs containerd 1.6 inside rootlesskit (a user
//! namespace of the user's subordinate ids, a mount namespace with /etc,
//! /run and /var/lib copied up, the host's network), its state and socket
//! under the user's runtime dir. containerd starts containerd-shim-berth-v2
//! there over ttrpc, and the shim runs berth, which finds itself in a user
//! namespace and runs rootless. Also the `berth-runc` handler (containerd's
//! runc shim with berth as its binary). ctr runs in rootlesskit's
//! namespaces, as nerdctl does. The user is made here if missing;
//! `hack/test` removes every `berth-rootless*` user after the suite.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-berth-v2");
const USER: &str = "berth-rootless-ctrd";

struct User {
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// The test user, with subordinate ids (Debian's useradd gives them).
fn user() -> User {
    if passwd_entry(USER).is_none() {
        let made = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", USER])
            .status()
            .unwrap()
            .success();
        assert!(made || passwd_entry(USER).is_some(), "useradd {USER}");
    }
    passwd_entry(USER).expect("the test user exists")
}

/// `name`'s uid, gid and home from /etc/passwd.
fn passwd_entry(name: &str) -> Option<User> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[0] == name).then_some(())?;
        Some(User {
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: PathBuf::from(f[5]),
        })
    })
}

/// containerd in rootlesskit, as the user; killed with everything of the
/// user's on drop.
struct RootlessContainerd {
    user: User,
    dir: PathBuf,
    run: PathBuf,
    child: Child,
}

impl RootlessContainerd {
    fn start(user: User) -> RootlessContainerd {
        let dir = std::env::temp_dir().join(format!("berth-rootless-ctrd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // The user's runtime dir: containerd's state, sockets, fifos.
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&run, Some(user.uid), Some(user.gid)).unwrap();
        let config = format!(
            "version = 2\nroot = \"{r}/root\"\nstate = \"{r}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{r}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{r}/containerd.sock.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
            r = run.display()
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        // What containerd-rootless.sh does inside rootlesskit: the host's
        // /run/containerd (root's) replaced by one of the user's, where
        // the shims put their sockets.
        let inner = dir.join("inner.sh");
        std::fs::write(
            &inner,
            format!(
                "#!/bin/sh\nset -e\nmkdir -p {r}/run-containerd /run/containerd\n\
                 mount --bind {r}/run-containerd /run/containerd\n\
                 exec containerd --config {d}/config.toml\n",
                r = run.display(),
                d = dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let mut cmd = Command::new("rootlesskit");
        cmd.args([
            "--net=host",
            "--copy-up=/etc",
            "--copy-up=/run",
            "--copy-up=/var/lib",
        ])
        .arg(format!("--state-dir={}/rootlesskit", run.display()))
        .arg(&inner)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        as_user(&mut cmd, &user, &run);
        let child = cmd.spawn().unwrap();
        let c = RootlessContainerd {
            user,
            dir,
            run,
            child,
        };
        let sock = c.run.join("containerd.sock");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sock.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            sock.exists(),
            "rootless containerd did not start:\n{}",
            std::fs::read_to_string(c.dir.join("containerd.log")).unwrap_or_default()
        );
        c
    }

    /// ctr as the user, in rootlesskit's user and mount namespaces.
    fn ctr(&self, args: &[&str]) -> Output {
        let child_pid = std::fs::read_to_string(self.run.join("rootlesskit/child_pid")).unwrap();
        let mut cmd = Command::new("timeout");
        cmd.args([
            "-k",
            "5",
            "60",
            "nsenter",
            "-U",
            "--preserve-credentials",
            "-m",
            "-t",
        ])
        .arg(child_pid.trim())
        .args(["ctr", "-a"])
        .arg(self.run.join("containerd.sock"))
        .args(["-n", "rootless"])
        .args(args)
        .stdin(Stdio::null());
        as_user(&mut cmd, &self.user, &self.run);
        cmd.output().unwrap()
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The user's processes: rootlesskit, containerd, shims, containers.
    fn processes(&self) -> String {
        let o = Command::new("pgrep")
            .args(["-a", "-u", &self.user.uid.to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for RootlessContainerd {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Shims outlive containerd by design; the test user runs nothing
        // else.
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.user.uid.to_string()])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `cmd` as the user: its ids, no supplementary groups, a clean
/// environment with the built shim and berth first on PATH, and killed if
/// the test dies.
fn as_user(cmd: &mut Command, user: &User, run: &Path) {
    let bin_dir = Path::new(SHIM).parent().unwrap();
    cmd.env_clear()
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin_dir.display()),
        )
        .env("HOME", &user.home)
        .env("XDG_RUNTIME_DIR", run)
        .current_dir("/");
    let (uid, gid) = (user.uid, user.gid);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[test]
fn rootless_containerd_runs_containers_through_the_berth_shim() {
    let user = user();
    let uid = user.uid;
    let c = RootlessContainerd::start(user);
    let image = c.dir.join("busybox.tar");
    let mkimage = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/mkimage");
    assert!(Command::new(mkimage)
        .arg(&image)
        .status()
        .unwrap()
        .success());
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o644)).unwrap();
    c.ctr_ok(&["images", "import", image.to_str().unwrap()]);
    let img = "docker.io/library/busybox:latest";
    let fifos = c.run.join("fifo");
    let fifo_dir = fifos.to_str().unwrap();

    // Through the berth shim: root of a namespace whose root is the user.
    let o = c.ctr(&[
        "run",
        "--rm",
        "--fifo-dir",
        fifo_dir,
        "--runtime",
        "io.containerd.berth.v2",
        img,
        "once",
        "sh",
        "-c",
        "id -u; head -1 /proc/self/uid_map; echo err >&2; exit 3",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"));
    let map: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(map[..2], ["0", &uid.to_string()], "uid_map: {out}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("err"));

    // Detached: exec, ps, kill, delete: every ttrpc call of a task.
    c.ctr_ok(&[
        "run",
        "-d",
        "--fifo-dir",
        fifo_dir,
        "--runtime",
        "io.containerd.berth.v2",
        img,
        "bg",
        "sh",
        "-c",
        "trap 'exit 0' TERM; sleep 1000 & wait",
    ]);
    let o = c.ctr(&[
        "task",
        "exec",
        "--fifo-dir",
        fifo_dir,
        "--exec-id",
        "e1",
        "bg",
        "sh",
        "-c",
        "echo exec-out; exit 4",
    ]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "exec-out\n");
    let ps = c.ctr(&["task", "ps", "bg"]);
    assert!(
        String::from_utf8_lossy(&ps.stdout).lines().count() >= 2,
        "task ps: {}{}",
        String::from_utf8_lossy(&ps.stdout),
        String::from_utf8_lossy(&ps.stderr)
    );
    c.ctr_ok(&["task", "kill", "-s", "SIGTERM", "bg"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !c
        .ctr_ok(&["task", "ls"])
        .lines()
        .any(|l| l.starts_with("bg") && l.contains("STOPPED"))
    {
        assert!(Instant::now() < deadline, "bg never stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    c.ctr_ok(&["task", "delete", "bg"]);
    c.ctr_ok(&["container", "rm", "bg"]);

    // The berth-runc handler: containerd's runc shim running berth.
    let berth = Path::new(SHIM).with_file_name("berth");
    assert_eq!(
        c.ctr_ok(&[
            "run",
            "--rm",
            "--fifo-dir",
            fifo_dir,
            "--runc-binary",
            berth.to_str().unwrap(),
            img,
            "viarunc",
            "id",
            "-u",
        ]),
        "0\n"
    );

    // Every shim gone with its last task; only rootlesskit and containerd
    // remain of the user's.
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.processes().contains("containerd-shim") {
        assert!(Instant::now() < deadline, "shims left: {}", c.processes());
        std::thread::sleep(Duration::from_millis(100));
    }
}
