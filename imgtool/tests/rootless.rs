//! berth-img for a user without root: real unprivileged users (made here
//! if missing; `hack/test` removes every `berth-rootless*` user after the
//! suite) import, build, run, copy, commit, push and pull in a store under
//! their home, and the files keep their images' owners as the users'
//! subordinate ids. A second user, made without subordinate ids, gets a
//! store of its own where everything is its own, and cannot reach the
//! first user's. Every test ends its users' containers and pause
//! processes, pass or fail.

mod common;

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use common::*;

/// The user with subordinate ids (Debian's useradd gives them).
const USER: &str = "berth-rootless-img";
/// The user made without subordinate ids.
const USER2: &str = "berth-rootless-img2";

struct User {
    name: &'static str,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

fn user(name: &'static str, subordinate_ids: bool) -> User {
    static MADE: Mutex<Vec<&str>> = Mutex::new(Vec::new());
    let lookup = || nix::unistd::User::from_name(name).ok().flatten();
    let mut made = MADE.lock().unwrap();
    if !made.contains(&name) && lookup().is_none() {
        let mut cmd = Command::new("useradd");
        cmd.args(["--create-home", "--shell", "/bin/sh"]);
        if !subordinate_ids {
            cmd.args(["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]);
        }
        assert!(cmd.arg(name).status().unwrap().success(), "useradd {name}");
    }
    made.push(name);
    let u = lookup().expect("the test user exists");
    User {
        name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        home: u.dir,
    }
}

/// The first of the user's subordinate uids and gids (/etc/subuid, subgid).
fn subordinate_start(name: &str) -> (u32, u32) {
    let start = |file: &str| {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{name}:"))?
                    .split(':')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {file} range for {name}"))
    };
    (start("/etc/subuid"), start("/etc/subgid"))
}

/// berth-img as `user`, with a runtime dir of its own (0700, the user's)
/// and, unless `data_home` says otherwise, the store under its home. On
/// drop: its containers removed, its pause process killed, its store
/// deleted.
struct AsUser {
    user: User,
    run_dir: PathBuf,
    data_home: Option<PathBuf>,
    /// Where the user may write files of its own (bundles, copies).
    work: PathBuf,
}

impl AsUser {
    fn new(user: User, s: &Scratch, tag: &str, data_home: Option<PathBuf>) -> AsUser {
        use std::os::unix::fs::PermissionsExt;
        // The scratch dir is the test's (root's); the user passes through.
        std::fs::set_permissions(&s.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        let run_dir = s.path(&format!("run-{tag}"));
        let work = s.path(&format!("work-{tag}"));
        for d in [&run_dir, &work] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(d, Some(user.uid), Some(user.gid)).unwrap();
        }
        let u = AsUser {
            user,
            run_dir,
            data_home,
            work,
        };
        // A store left by an earlier, killed run must not count.
        let _ = std::fs::remove_dir_all(u.store());
        u
    }

    fn store(&self) -> PathBuf {
        match &self.data_home {
            Some(d) => d.join("berth"),
            None => self.user.home.join(".local/share/berth"),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BERTH_IMG);
        c.args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &self.user.home)
            .env("XDG_RUNTIME_DIR", &self.run_dir)
            .current_dir(&self.work)
            .uid(self.user.uid)
            .gid(self.user.gid);
        if let Some(d) = &self.data_home {
            c.env("XDG_DATA_HOME", d);
        }
        c
    }

    /// Runs with stdout and stderr in files: a detached container's
    /// supervisor must not keep the test waiting for a pipe's EOF.
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.cmd(args);
        let (o, e) = (self.run_dir.join(".out"), self.run_dir.join(".err"));
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap());
        // Killed if the test dies, so nothing of the user outlives it.
        // SAFETY: prctl only, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let status = cmd.status().unwrap();
        Output {
            status,
            stdout: std::fs::read(&o).unwrap_or_default(),
            stderr: std::fs::read(&e).unwrap_or_default(),
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{} berth-img {args:?}:\n{}",
            self.user.name,
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn fail(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            !o.status.success(),
            "{} berth-img {args:?} should fail:\n{}",
            self.user.name,
            text(&o)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// The busybox image as `reference`, from a rootfs tar the user reads.
    fn import_busybox(&self, s: &Scratch, reference: &str) {
        let tar = busybox_tar(s);
        self.ok(&[
            "import",
            tar.to_str().unwrap(),
            reference,
            "--change",
            r#"CMD ["sh"]"#,
        ]);
    }

    /// The pause process holding the user's namespace, if any.
    fn pause_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.run_dir.join("berth-img/pause.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let ours = status.lines().any(|l| {
            l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&self.user.uid.to_string())
        });
        ours.then_some(pid)
    }
}

impl Drop for AsUser {
    fn drop(&mut self) {
        let ids = self.run(&["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.run(&["rm", "-f", id]);
        }
        if let Some(pid) = self.pause_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = eventually(10, || {
                std::fs::metadata(format!("/proc/{pid}"))
                    .is_err()
                    .then_some(())
            });
        }
        let _ = std::fs::remove_dir_all(self.store());
    }
}

/// Every file on the host's disks (and /run, /dev/shm) owned by `uid` or
/// by an id in `range`, but for those under `allowed` and in the scratch
/// dirs of this file's tests.
fn owned_outside(uid: u32, range: (u32, u32), allowed: &[&Path]) -> Vec<String> {
    let out = Command::new("find")
        .args(["/", "/run", "/dev/shm", "/tmp", "-xdev"])
        .args(["-path", "/proc", "-prune", "-o"])
        .args(["(", "-uid", &uid.to_string(), "-o", "("])
        .args(["-uid", &format!("+{}", range.0 - 1)])
        .args(["-uid", &format!("-{}", range.1), ")", ")", "-print"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    // The scratch dirs of this file's tests are their users' own.
    let scratch = std::env::temp_dir().join("berth-img-tests");
    let ours = |p: &Path| {
        p.strip_prefix(&scratch)
            .ok()
            .and_then(|r| r.components().next())
            .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with("rootless-img"))
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|p| !ours(Path::new(p)) && !allowed.iter().any(|a| Path::new(p).starts_with(a)))
        .map(str::to_string)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect()
}

#[test]
fn a_user_without_root_builds_runs_and_commits() {
    let s = Scratch::new("rootless-img");
    let u = AsUser::new(user(USER, true), &s, "1", None);
    let (sub_uid, sub_gid) = subordinate_start(USER);
    let ids = (sub_uid.min(sub_gid), sub_uid.max(sub_gid) + 65536);
    let allowed = [u.user.home.as_path()];
    let before = owned_outside(u.user.uid, ids, &allowed);

    // The store is the user's own, under ~/.local/share/berth.
    u.import_busybox(&s, "busybox:latest");
    assert!(u.store().join("images.json").exists());
    let meta = std::fs::metadata(u.store()).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        u.user.uid,
        "the store belongs to the user"
    );

    // A build whose RUN steps run in rootless berth: a file of uid 1000
    // (the user's subordinate uid 999 on disk), a directory emptied and
    // made again (an opaque directory in the layer).
    let ctx = u.work.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\n\
         RUN mkdir -p /data /o && echo hi > /data/f && echo a > /o/a && chown -R 1000:1001 /data\n\
         RUN rm -rf /o && mkdir /o && echo b > /o/b\n\
         CMD [\"sh\", \"-c\", \"echo started; exec sleep 1000\"]\n",
    )
    .unwrap();
    let out = u.run(&["build", "-t", "web:1", ctx.to_str().unwrap()]);
    assert!(out.status.success(), "build:\n{}", text(&out));
    let layers = u.store().join("layers");
    let owned: Vec<(u32, u32)> = std::fs::read_dir(&layers)
        .unwrap()
        .flatten()
        .filter_map(|l| std::fs::metadata(l.path().join("data/f")).ok())
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.uid(), m.gid())
        })
        .collect();
    assert_eq!(
        owned,
        [(sub_uid + 999, sub_gid + 1000)],
        "uid 1000 in the image is the user's subordinate uid 999 on disk"
    );

    // The container sees the image's owners, is root of its own user
    // namespace, shares the host's network with a notice.
    let out = u.run(&[
        "run",
        "--rm",
        "web:1",
        "sh",
        "-c",
        "id -u; stat -c %u:%g /data/f; ls /o; cat /proc/self/uid_map | wc -l",
    ]);
    assert!(out.status.success(), "run:\n{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n1000:1001\nb\n2\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("shares the host's network"),
        "{}",
        text(&out)
    );

    // `--network none`: a namespace of its own with loopback up.
    assert_eq!(
        u.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "web:1",
            "sh",
            "-c",
            "ls /sys/class/net; ip link show lo | grep -c ,UP",
        ]),
        "lo\n1\n"
    );

    // A detached container and what docker users do with it.
    u.ok(&["run", "-d", "--name", "w", "web:1"]);
    assert!(
        eventually(20, || u
            .ok(&["logs", "w"])
            .contains("started")
            .then_some(()))
        .is_some(),
        "logs: {}",
        u.ok(&["logs", "w"])
    );
    assert_eq!(u.ok(&["exec", "w", "cat", "/data/f"]), "hi\n");
    std::fs::write(u.work.join("in.txt"), "from the host\n").unwrap();
    std::os::unix::fs::chown(u.work.join("in.txt"), Some(u.user.uid), Some(u.user.gid)).unwrap();
    u.ok(&["cp", "in.txt", "w:/in.txt"]);
    assert_eq!(u.ok(&["exec", "w", "cat", "/in.txt"]), "from the host\n");
    u.ok(&["cp", "w:/data/f", "out.txt"]);
    assert_eq!(
        std::fs::read_to_string(u.work.join("out.txt")).unwrap(),
        "hi\n"
    );
    assert_eq!(u.ok(&["ps", "-q"]).lines().count(), 1);
    u.ok(&["stop", "-t", "1", "w"]);
    u.ok(&["rm", "w"]);
    assert_eq!(u.ok(&["ps", "-aq"]), "");

    // A bundle, changed and run by hand in the user's namespace, then
    // committed.
    let bundle = u.work.join("bundle");
    let out = u.run(&[
        "--log-level",
        "debug",
        "bundle",
        "web:1",
        bundle.to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the kernel's overlayfs"),
        "which overlay is said: {}",
        text(&out)
    );
    let change = format!("echo committed > {}/rootfs/c", bundle.display());
    u.ok(&["unshare", "sh", "-c", &change]);
    u.ok(&["commit", bundle.to_str().unwrap(), "web:2"]);
    u.ok(&["rm-bundle", bundle.to_str().unwrap()]);
    assert_eq!(u.ok(&["run", "--rm", "web:2", "cat", "/c"]), "committed\n");

    // What needs root is refused naming the flag.
    let err = u.fail(&["run", "--rm", "-p", "8080:80", "web:1", "true"]);
    assert!(
        err.lines().last().unwrap_or("").contains("--publish"),
        "{err}"
    );
    let err = u.fail(&["run", "--rm", "--network", "bridge", "web:1", "true"]);
    assert!(err.contains("--network"), "{err}");
    let err = u.fail(&["run", "--rm", "--network", "container:w", "web:1", "true"]);
    assert!(err.contains("--network"), "{err}");
    let err = u.fail(&["network", "create", "front"]);
    assert!(err.contains("need root"), "{err}");

    // A second user sees none of it and cannot open the first one's store.
    let data2 = s.path("data2");
    std::fs::create_dir_all(&data2).unwrap();
    let u2 = AsUser::new(user(USER2, false), &s, "2", Some(data2.clone()));
    std::os::unix::fs::chown(&data2, Some(u2.user.uid), Some(u2.user.gid)).unwrap();
    assert!(!u2.ok(&["images"]).contains("web"));
    let store1 = u.store();
    let err = u2.fail(&["--root", store1.to_str().unwrap(), "images"]);
    assert!(err.to_lowercase().contains("permission denied"), "{err}");

    // Nothing of the user's (or its subordinate ids') outside its home,
    // its runtime dir and the dirs it was given.
    let stray: Vec<String> = owned_outside(u.user.uid, ids, &allowed)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(
        stray.is_empty(),
        "written outside the user's dirs: {stray:?}"
    );
}

/// Needs Debian's docker-registry (the host lane; the VM guest has none).
#[test]
fn a_user_without_root_pushes_and_pulls() {
    let s = Scratch::new("rootless-img-registry");
    let data = s.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let u = AsUser::new(user(USER, true), &s, "reg", Some(data.clone()));
    std::os::unix::fs::chown(&data, Some(u.user.uid), Some(u.user.gid)).unwrap();
    u.import_busybox(&s, "busybox:latest");
    let ctx = u.work.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo kept > /f && chown 1000:1000 /f\n",
    )
    .unwrap();
    let reg = Registry::start(&s, "none", &[]);
    let target = format!("{}/rootless/img:1", reg.host);
    u.ok(&["build", "-t", &target, ctx.to_str().unwrap()]);
    u.ok(&["push", &target]);
    u.ok(&["rmi", &target]);
    u.ok(&["prune"]);
    assert!(!u.ok(&["images"]).contains("rootless/img"));
    u.ok(&["pull", &target]);
    assert_eq!(
        u.ok(&["run", "--rm", &target, "stat", "-c", "%u %n", "/f"]),
        "1000 /f\n"
    );
}

#[test]
fn without_subordinate_ids_everything_is_the_users() {
    let s = Scratch::new("rootless-img-nosub");
    let u = AsUser::new(user(USER2, false), &s, "nosub", None);
    let tar = busybox_tar(&s);
    let out = u.run(&[
        "import",
        tar.to_str().unwrap(),
        "busybox:latest",
        "--change",
        r#"CMD ["sh"]"#,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no subordinate ids"),
        "{}",
        text(&out)
    );
    // Every file of the layer is the user's (busybox's rootfs tar has
    // root's files, /tmp included).
    let layers = u.store().join("layers");
    let others = Command::new("find")
        .arg(&layers)
        .args(["!", "-uid", &u.user.uid.to_string(), "-print", "-quit"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&others.stdout), "");
    let ctx = u.work.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo built > /b\n",
    )
    .unwrap();
    u.ok(&["build", "-t", "b:1", ctx.to_str().unwrap()]);
    assert_eq!(
        u.ok(&[
            "run",
            "--rm",
            "--network",
            "host",
            "b:1",
            "sh",
            "-c",
            "id -u; cat /b"
        ]),
        "0\nbuilt\n"
    );
}

/// fuse-overlayfs when asked for, as podman's `overlay.mount_program`: a
/// build whose layers hide a file and replace a directory, a container
/// whose changes `diff` and `commit` see, its FUSE mount and daemon gone
/// with it. Where the user may not open /dev/fuse (the host lane's is
/// root's alone) the refusal is one line naming fuse-overlayfs, and
/// nothing is left behind.
#[test]
fn fuse_overlayfs_when_asked_for() {
    let s = Scratch::new("rootless-img-fuse");
    let data = s.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let u = AsUser::new(user(USER, true), &s, "fuse", Some(data.clone()));
    std::os::unix::fs::chown(&data, Some(u.user.uid), Some(u.user.gid)).unwrap();
    u.import_busybox(&s, "busybox:latest");
    let with_fuse = |args: &[&str]| -> Vec<String> {
        [
            "--storage-opt",
            "overlay.mount_program=/usr/bin/fuse-overlayfs",
        ]
        .iter()
        .chain(args)
        .map(|a| a.to_string())
        .collect()
    };
    let fuse_ok = |args: &[&str]| {
        let args = with_fuse(args);
        u.ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let fuse_mounts = || {
        let pid = u.pause_pid().expect("the user's pause process");
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .unwrap()
            .lines()
            .filter(|l| l.contains("fuse-overlayfs"))
            .count()
    };
    let daemons = || {
        let o = Command::new("pgrep")
            .args(["-u", &u.user.uid.to_string(), "-x", "fuse-overlayfs"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).lines().count()
    };

    let user_can_fuse = Command::new("test")
        .args(["-r", "/dev/fuse", "-a", "-w", "/dev/fuse"])
        .uid(u.user.uid)
        .gid(u.user.gid)
        .status()
        .unwrap()
        .success();
    if !user_can_fuse {
        eprintln!("/dev/fuse is not the user's to open here: checking the refusal only");
        let args = with_fuse(&["run", "--rm", "--network", "none", "busybox", "true"]);
        let err = u.fail(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("fuse-overlayfs") && err.contains("/dev/fuse"),
            "{err}"
        );
        assert_eq!(u.ok(&["ps", "-aq"]), "");
        assert_eq!((fuse_mounts(), daemons()), (0, 0));
        return;
    }

    let ctx = u.work.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\n\
         RUN mkdir /o && echo a > /o/a && echo x > /gone && chown 1000 /o/a\n\
         RUN rm -rf /o /gone && mkdir /o && echo b > /o/b\n",
    )
    .unwrap();
    let args = with_fuse(&[
        "--log-level",
        "debug",
        "build",
        "-t",
        "f:1",
        ctx.to_str().unwrap(),
    ]);
    let out = u.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "build:\n{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a fuse-overlayfs mount"),
        "which overlay is said: {}",
        text(&out)
    );
    assert_eq!(
        fuse_ok(&[
            "run",
            "--rm",
            "f:1",
            "sh",
            "-c",
            "ls /o; ls /gone 2>&1 | wc -l"
        ]),
        "b\n1\n"
    );

    fuse_ok(&["run", "-d", "--name", "fz", "f:1", "sleep", "1000"]);
    assert_eq!(fuse_mounts(), 1);
    fuse_ok(&[
        "exec",
        "fz",
        "sh",
        "-c",
        "rm /etc/group && rm -rf /o && mkdir /o && echo z > /o/z",
    ]);
    let diff = fuse_ok(&["diff", "fz"]);
    assert!(diff.contains("D /etc/group\n"), "{diff}");
    assert!(diff.contains("A /o/z\n"), "{diff}");
    assert!(!diff.contains(".wh."), "{diff}");
    fuse_ok(&["commit", "fz", "f:2"]);
    assert_eq!(
        fuse_ok(&[
            "run",
            "--rm",
            "f:2",
            "sh",
            "-c",
            "ls /o; test -e /etc/group || echo gone"
        ]),
        "z\ngone\n"
    );
    // Stopped, started again: the same writable layer, mounted as before.
    fuse_ok(&["stop", "-t", "0", "fz"]);
    fuse_ok(&["start", "fz"]);
    assert_eq!(fuse_ok(&["exec", "fz", "ls", "/o"]), "z\n");
    fuse_ok(&["rm", "-f", "fz"]);
    assert!(
        eventually(10, || (fuse_mounts() == 0 && daemons() == 0).then_some(())).is_some(),
        "fuse-overlayfs left: {} mounts, {} daemons",
        fuse_mounts(),
        daemons()
    );
}
