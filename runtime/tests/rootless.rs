//! berth for a user without root: every command run as a real unprivileged
//! user (made here if missing; `hack/test` removes it afterwards), with the
//! user namespace `berth spec --rootless` asks for, and what such a
//! container must never gain over its user. On this host the user's cgroup
//! is not delegated (cgroup v1), so limits are refused by name; the VM
//! lane runs the same tests with a delegated cgroup v2.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::{json, Value};

/// The test user: name, uid, gid.
const USER: &str = "berth-rootless";

fn user() -> (u32, u32) {
    static MADE: std::sync::Once = std::sync::Once::new();
    let lookup = || nix::unistd::User::from_name(USER).ok().flatten();
    MADE.call_once(|| {
        if lookup().is_none() {
            // Debian's useradd also gives the user subordinate id ranges.
            let ok = Command::new("useradd")
                .args(["--create-home", "--shell", "/bin/sh", USER])
                .status()
                .unwrap()
                .success();
            assert!(ok, "useradd {USER}");
        }
    });
    let u = lookup().expect("the test user exists");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// One rootless container test: a bundle from `berth spec --rootless`, a
/// runtime dir of the user's own, berth run as the user.
struct Rootless {
    env: Env,
    uid: u32,
    gid: u32,
    runtime_dir: PathBuf,
}

impl Rootless {
    fn new(name: &str) -> Rootless {
        let (uid, gid) = user();
        let mut env = Env::new(name);
        let mut spec = berth::commands::spec::default_spec(true);
        spec["process"]["terminal"] = json!(false);
        spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
        env.config = spec;
        let runtime_dir = env.scratch.0.join("run");
        std::fs::create_dir_all(&runtime_dir).unwrap();
        nix::unistd::chown(&runtime_dir, Some(uid.into()), Some(gid.into())).unwrap();
        // The user reaches the bundle and the scratch dir, and owns the
        // rootfs as a rootless user's image would be.
        for d in [&env.scratch.0, &env.bundle] {
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let owned = Command::new("chown")
            .args(["-R", "-h", &format!("{uid}:{gid}")])
            .arg(env.bundle.join("rootfs"))
            .status()
            .unwrap();
        assert!(owned.success());
        Rootless {
            env,
            uid,
            gid,
            runtime_dir,
        }
    }

    /// berth as the user (its own state root under XDG_RUNTIME_DIR).
    fn berth(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(BERTH);
        cmd.args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", "/tmp")
            .env("XDG_RUNTIME_DIR", &self.runtime_dir);
        let (uid, gid) = (self.uid, self.gid);
        // SAFETY: only setgroups/setgid/setuid between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        output_via_files(cmd, &self.env.scratch.0)
    }

    fn sh(&mut self, script: &str) {
        self.env.sh(script);
    }

    fn run(&self) -> (i32, String, String) {
        self.env.write_config();
        let out = self.berth(&["run", "-b", self.env.bundle.to_str().unwrap(), &self.env.id]);
        (
            out.status.code().unwrap_or(-1),
            stdout_of(&out),
            stderr_of(&out),
        )
    }

    fn config(&mut self) -> &mut Value {
        &mut self.env.config
    }

    fn state_dir(&self) -> PathBuf {
        self.runtime_dir.join("berth")
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.state_dir()) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.berth(&["delete", "-f", &id]);
            }
        }
    }
}

#[test]
fn state_under_the_users_runtime_dir_and_every_command() {
    let mut r = Rootless::new("rl-lifecycle");
    r.sh("sleep 100");
    r.env.write_config();
    let bundle = r.env.bundle.to_str().unwrap().to_string();
    let id = r.env.id.clone();
    let out = r.berth(&["create", "-b", &bundle, &id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(r.state_dir().join(&id).join("state.json").exists());
    let state: Value = serde_json::from_slice(&r.berth(&["state", &id]).stdout).unwrap();
    assert_eq!(state["status"], "created");
    assert_eq!(state["owner"], USER);
    assert!(r.berth(&["start", &id]).status.success());
    let out = r.berth(&["exec", &id, "sh", "-c", "id -u; cat /proc/self/uid_map"]);
    assert_eq!(
        stdout_of(&out).split_whitespace().collect::<Vec<_>>(),
        ["0", "0", &r.uid.to_string(), "1"]
    );
    let list = r.berth(&["list", "-q"]);
    assert_eq!(stdout_of(&list), format!("{id}\n"));
    // The init runs as the user on the host.
    let pid = state["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains(&r.uid.to_string())),
        "{status}"
    );
    // Without a cgroup, `ps` finds the container's processes by its PID
    // namespace.
    let ps: Vec<i64> = serde_json::from_slice(&r.berth(&["ps", "--format", "json", &id]).stdout)
        .unwrap_or_default();
    assert_eq!(ps, [pid], "berth ps");
    assert!(r.berth(&["kill", &id, "KILL"]).status.success());
    assert!(wait_until(15, || {
        let s: Value = serde_json::from_slice(&r.berth(&["state", &id]).stdout).unwrap_or_default();
        s["status"] == "stopped"
    }));
    assert!(r.berth(&["delete", &id]).status.success());
    assert!(!r.state_dir().join(&id).exists());
}

#[test]
fn subordinate_ranges_go_through_newuidmap() {
    let mut r = Rootless::new("rl-subuid");
    let (uid, gid) = (r.uid, r.gid);
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap();
    let Some(start) = subuid.lines().find_map(|l| {
        l.strip_prefix(&format!("{USER}:"))
            .and_then(|r| r.split(':').next())
            .and_then(|s| s.parse::<u32>().ok())
    }) else {
        panic!("no /etc/subuid range for {USER}: {subuid}");
    };
    r.config()["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}, {"containerID": 1, "hostID": start, "size": 1000}]);
    r.config()["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}, {"containerID": 1, "hostID": start, "size": 1000}]);
    r.sh("cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //'");
    let (code, out, err) = r.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("0 {uid} 1\n1 {start} 1000\n"));
    // A range the user does not own is refused by newuidmap, clearly.
    r.config()["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}, {"containerID": 1, "hostID": 10, "size": 5}]);
    let (code, _, err) = r.run();
    assert_ne!(code, 0);
    assert!(
        err.contains("linux.uidMappings") && err.contains("newuidmap"),
        "{err}"
    );
}

#[test]
fn a_user_without_subordinate_ids_is_told_so() {
    let mut r = Rootless::new("rl-nosubuid");
    // root (uid 0 in /etc/subuid? no) — use ids of nobody, which has none.
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    r.uid = nobody.uid.as_raw();
    r.gid = nobody.gid.as_raw();
    nix::unistd::chown(&r.runtime_dir, Some(nobody.uid), Some(nobody.gid)).unwrap();
    let (uid, gid) = (r.uid, r.gid);
    r.config()["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}, {"containerID": 1, "hostID": 200000, "size": 10}]);
    r.config()["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    r.sh("true");
    let (code, _, err) = r.run();
    assert_ne!(code, 0);
    assert!(
        err.contains("no subordinate uid range for user nobody in /etc/subuid"),
        "{err}"
    );
}

#[test]
fn limits_without_a_delegated_cgroup_are_refused_by_name() {
    if berth::cgroups::Layout::detect().unwrap().is_pure_v2() {
        eprintln!("skipped: this host may delegate cgroup v2 (the VM lane tests limits there)");
        return;
    }
    let mut r = Rootless::new("rl-limits");
    r.config()["linux"]["resources"] = json!({"pids": {"limit": 10}});
    r.sh("true");
    let (code, _, err) = r.run();
    assert_ne!(code, 0);
    assert!(err.contains("linux.resources.pids"), "{err}");
    // Without limits it runs, and says it has no cgroup.
    r.config()["linux"]
        .as_object_mut()
        .unwrap()
        .remove("resources");
    let (code, _, err) = r.run();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no cgroup"), "{err}");
}

#[test]
fn the_container_gains_nothing_over_its_user() {
    let mut r = Rootless::new("rl-confined");
    // A host file the user may read but not write, bound into the
    // container, where "root" tries to write it; mknod; the host's
    // processes; a raw /sys write.
    let victim = r.env.scratch.0.join("victim");
    std::fs::write(&victim, "host\n").unwrap();
    std::fs::set_permissions(&victim, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    r.config()["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/victim", "type": "bind", "source": victim, "options": ["bind", "rw"]}),
    );
    r.sh("echo pwned > /victim 2>/dev/null && echo WROTE; \
          mknod /tmp/null c 1 3 2>/dev/null && echo MKNOD; \
          [ \"$(cat /proc/1/comm)\" = sh ] && echo own-pids; \
          touch /sys/kernel/x 2>/dev/null && echo SYS; \
          grep -c sysfs /proc/self/mountinfo >/dev/null && echo sys-mounted");
    let caps = json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_SYS_ADMIN",
        "CAP_KILL"
    ]);
    for set in ["bounding", "effective", "permitted"] {
        r.config()["process"]["capabilities"][set] = caps.clone();
    }
    let (code, out, err) = r.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "own-pids\nsys-mounted\n",
        "the container got more than its user"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host\n");
}

#[test]
fn seccomp_capabilities_and_oom_score_adj() {
    let mut r = Rootless::new("rl-process");
    r.config()["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    });
    r.config()["process"]["capabilities"] =
        json!({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]});
    r.config()["process"]["oomScoreAdj"] = json!(500);
    r.config()["root"]["readonly"] = json!(false);
    r.sh("mkdir /tmp/d 2>/dev/null || echo refused; grep CapEff /proc/self/status | tr -d '\\t'; cat /proc/self/oom_score_adj");
    let (code, out, err) = r.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "refused\nCapEff:0000000000000020\n500\n");
    // Lowering takes a privilege the user does not have.
    r.config()["process"]["oomScoreAdj"] = json!(-500);
    let (code, _, err) = r.run();
    assert_ne!(code, 0);
    assert!(
        err.contains("process.oomScoreAdj -500") && err.contains("lower"),
        "{err}"
    );
}

#[test]
fn spec_rootless_is_runcs() {
    let r = Rootless::new("rl-spec");
    let dir = r.env.scratch.0.join("specdir");
    std::fs::create_dir_all(&dir).unwrap();
    nix::unistd::chown(&dir, Some(r.uid.into()), Some(r.gid.into())).unwrap();
    let out = r.berth(&["spec", "--rootless", "-b", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let spec: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["linux"]["uidMappings"][0]["hostID"], r.uid);
    let kinds: Vec<&str> = spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"user") && !kinds.contains(&"network") && !kinds.contains(&"cgroup"));
    let sys = spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/sys")
        .unwrap();
    assert!(sys["options"].as_array().unwrap().contains(&json!("rbind")));
}

/// Rootless podman (as the test user, its own storage) with berth as its
/// OCI runtime: podman runs berth inside the user namespace it made, as
/// root there, which berth must tell apart from a privileged host root.
/// No network: this host's /dev/net/tun is root's only, so slirp4netns
/// cannot run (the VM lane publishes a port).
#[test]
fn rootless_podman_runs_berth() {
    let r = Rootless::new("rl-podman");
    let image = r.env.scratch.0.join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/mkimage");
    assert!(Command::new(script).arg(&image).status().unwrap().success());
    std::fs::set_permissions(&image, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    // podman's own state: a home and a runtime dir of the test's own.
    let home = r.env.scratch.0.join("home");
    std::fs::create_dir_all(&home).unwrap();
    nix::unistd::chown(&home, Some(r.uid.into()), Some(r.gid.into())).unwrap();
    let podman = |args: &[&str]| -> Output {
        let mut cmd = Command::new("podman");
        cmd.arg("--runtime")
            .arg(BERTH)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &r.runtime_dir)
            .current_dir(&home);
        let (uid, gid) = (r.uid, r.gid);
        // SAFETY: only setgroups/setgid/setuid between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        output_via_files(cmd, &r.env.scratch.0)
    };
    let ok = |args: &[&str]| -> String {
        let out = podman(args);
        assert!(out.status.success(), "podman {args:?}: {}", stderr_of(&out));
        stdout_of(&out)
    };
    ok(&["load", "-i", image.to_str().unwrap()]);
    let image = "docker.io/library/busybox:latest";
    let out = ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        image,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map | wc -l",
    ]);
    assert_eq!(
        out, "0\n2\n",
        "a user namespace with the user and its subordinate ids"
    );
    ok(&[
        "run",
        "-d",
        "--name",
        "rl-web",
        "--network",
        "none",
        image,
        "sh",
        "-c",
        "echo started; sleep 100",
    ]);
    assert_eq!(
        ok(&["exec", "rl-web", "sh", "-c", "echo exec-ok"]),
        "exec-ok\n"
    );
    assert!(wait_until(15, || ok(&["logs", "rl-web"]).contains("started")));
    assert!(ok(&["ps", "--format", "{{.Names}}"]).contains("rl-web"));
    ok(&["stop", "-t", "1", "rl-web"]);
    ok(&["rm", "rl-web"]);
    assert!(!ok(&["ps", "-a", "--format", "{{.Names}}"]).contains("rl-web"));
    // podman's storage is the user's; its pause process goes with it.
    let _ = podman(&["system", "migrate"]);
    let _ = Command::new("pkill")
        .args(["-u", &r.uid.to_string(), "-f", "catatonit|podman pause"])
        .status();
}

/// The test user's systemd manager (user@UID.service), started by
/// lingering as a login would start it: it owns the user's cgroup v2
/// subtree, delegated, and serves the user's D-Bus session. Held by the
/// tests that need it; the last one to let go stops it again.
struct UserManager {
    uid: u32,
}

static MANAGER_USERS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

impl UserManager {
    /// None (the test is skipped) without systemd as PID 1 on cgroup v2.
    fn start() -> Option<UserManager> {
        if !Path::new("/run/systemd/system").exists() || !pure_v2() {
            eprintln!("skipped: needs systemd as PID 1 on cgroup v2 (the VM lane)");
            return None;
        }
        let (uid, _) = user();
        let mut n = MANAGER_USERS.lock().unwrap();
        if *n == 0 {
            let ok = Command::new("loginctl")
                .args(["enable-linger", USER])
                .status()
                .unwrap()
                .success();
            assert!(ok, "loginctl enable-linger {USER}");
        }
        *n += 1;
        let m = UserManager { uid };
        // Under TCG the manager takes seconds to come up.
        let run = m.runtime_dir();
        assert!(
            wait_until(120, || run.join("systemd/private").exists()
                && run.join("bus").exists()),
            "user@{uid}.service did not start (no {}/systemd/private or bus)",
            run.display()
        );
        Some(m)
    }

    fn runtime_dir(&self) -> PathBuf {
        PathBuf::from(format!("/run/user/{}", self.uid))
    }

    /// The user's delegated cgroup (systemd gives the user's manager
    /// these controllers by default).
    fn cgroup(&self) -> PathBuf {
        PathBuf::from(format!(
            "/sys/fs/cgroup/user.slice/user-{0}.slice/user@{0}.service",
            self.uid
        ))
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        let mut n = MANAGER_USERS.lock().unwrap();
        *n -= 1;
        if *n == 0 {
            let _ = Command::new("loginctl")
                .args(["disable-linger", USER])
                .status();
            let _ = Command::new("loginctl")
                .args(["terminate-user", USER])
                .status();
        }
    }
}

/// The cgroup v2 path of `pid` (/proc/PID/cgroup's "0::" line).
fn cgroup_of(pid: i64) -> PathBuf {
    let s = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = s
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no cgroup v2 line for {pid}: {s}"));
    Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'))
}

fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// With the user's cgroup delegated by its systemd manager (the VM lane):
/// `--systemd-cgroup` makes each container a scope of the user's manager,
/// limits apply and read back, and update, pause/resume, ps, events and an
/// OOM kill work as they do for root.
#[test]
fn limits_apply_in_the_users_delegated_cgroup() {
    let Some(m) = UserManager::start() else {
        return;
    };
    let mut r = Rootless::new("rl-delegated");
    r.runtime_dir = m.runtime_dir();
    let id = r.env.id.clone();
    r.env.config["linux"]["cgroupsPath"] = json!(format!("user.slice:berth:{id}"));
    r.env.config["linux"]["resources"] = json!({
        "memory": {"limit": 32 << 20},
        "pids": {"limit": 32},
        "cpu": {"quota": 50000, "period": 100000}
    });
    r.env.config["process"]["args"] = json!(["sleep", "100"]);
    r.env.write_config();
    let bundle = r.env.bundle.to_str().unwrap().to_string();
    let berth = |args: &[&str]| {
        let mut all = vec!["--systemd-cgroup"];
        all.extend_from_slice(args);
        let out = r.berth(&all);
        assert!(out.status.success(), "berth {args:?}: {}", stderr_of(&out));
        stdout_of(&out)
    };
    berth(&["create", "-b", &bundle, &id]);
    let state: Value = serde_json::from_str(&berth(&["state", &id])).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    let cg = cgroup_of(pid);
    assert_eq!(
        cg,
        m.cgroup().join(format!("user.slice/berth-{id}.scope")),
        "the scope is the user manager's"
    );
    assert_eq!(read_trim(&cg.join("memory.max")), (32 << 20).to_string());
    assert_eq!(read_trim(&cg.join("pids.max")), "32");
    assert_eq!(read_trim(&cg.join("cpu.max")), "50000 100000");
    berth(&["start", &id]);
    berth(&[
        "update",
        "--memory",
        &(64u64 << 20).to_string(),
        "--pids-limit",
        "48",
        &id,
    ]);
    assert_eq!(read_trim(&cg.join("memory.max")), (64 << 20).to_string());
    assert_eq!(read_trim(&cg.join("pids.max")), "48");
    berth(&["pause", &id]);
    assert_eq!(read_trim(&cg.join("cgroup.freeze")), "1");
    let state: Value = serde_json::from_str(&berth(&["state", &id])).unwrap();
    assert_eq!(state["status"], "paused");
    berth(&["resume", &id]);
    assert_eq!(read_trim(&cg.join("cgroup.freeze")), "0");
    assert!(berth(&["ps", &id]).contains(&pid.to_string()));
    let stats: Value = serde_json::from_str(&berth(&["events", "--stats", &id])).unwrap();
    assert!(
        stats["data"]["memory"]["usage"]["usage"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{stats}"
    );
    berth(&["kill", &id, "KILL"]);
    assert!(wait_until(30, || {
        let s: Value = serde_json::from_slice(&r.berth(&["state", &id]).stdout).unwrap_or_default();
        s["status"] == "stopped"
    }));
    berth(&["delete", &id]);
    assert!(
        wait_until(30, || !cg.exists()),
        "the scope's cgroup {} outlived delete",
        cg.display()
    );

    // A hog over the memory limit is OOM-killed in the user's cgroup.
    r.env.config["linux"]["resources"] = json!({"memory": {"limit": 32 << 20, "swap": 32 << 20}});
    r.env.config["process"]["args"] =
        json!(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    r.env.write_config();
    let out = r.berth(&["--systemd-cgroup", "run", "-b", &bundle, &id]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr_of(&out));
    drop(r);
    drop(m);
}

/// podman 5 rootless (the VM lane) with berth as its runtime, the way its
/// users run it: the user's systemd session (systemd cgroup manager, a
/// scope of the user's manager), pasta networking, a published port
/// answering on 127.0.0.1, a memory limit in force.
#[test]
fn rootless_podman_with_the_users_systemd() {
    let Some(m) = UserManager::start() else {
        return;
    };
    let r = Rootless::new("rl-podman-systemd");
    let image = r.env.scratch.0.join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/mkimage");
    assert!(Command::new(script).arg(&image).status().unwrap().success());
    std::fs::set_permissions(&image, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let home = r.env.scratch.0.join("home");
    std::fs::create_dir_all(&home).unwrap();
    nix::unistd::chown(&home, Some(r.uid.into()), Some(r.gid.into())).unwrap();
    let run_dir = m.runtime_dir();
    let podman = |args: &[&str]| -> Output {
        let mut cmd = Command::new("podman");
        cmd.arg("--runtime")
            .arg(BERTH)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &run_dir)
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}/bus", run_dir.display()),
            )
            .current_dir(&home);
        let (uid, gid) = (r.uid, r.gid);
        // SAFETY: only setgroups/setgid/setuid between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        output_via_files(cmd, &r.env.scratch.0)
    };
    let ok = |args: &[&str]| -> String {
        let out = podman(args);
        assert!(out.status.success(), "podman {args:?}: {}", stderr_of(&out));
        stdout_of(&out)
    };
    let cleanup = || {
        let _ = podman(&["rm", "-f", "-a"]);
        let _ = podman(&["system", "reset", "-f"]);
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(ok(&["info", "--format", "{{.Host.CgroupManager}}"]).contains("systemd"));
        ok(&["load", "-i", image.to_str().unwrap()]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        ok(&[
            "run",
            "-d",
            "--name",
            "rl-web",
            "--memory",
            "64m",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "docker.io/library/busybox:latest",
            "sh",
            "-c",
            "mkdir -p /www && echo hello-rootless > /www/index.html && echo started && exec httpd -f -p 80 -h /www",
        ]);
        assert_eq!(
            ok(&["exec", "rl-web", "cat", "/sys/fs/cgroup/memory.max"]),
            format!("{}\n", 64 << 20)
        );
        assert!(wait_until(60, || ok(&["logs", "rl-web"]).contains("started")));
        let mut page = String::new();
        assert!(
            wait_until(60, || {
                page = http_get(port).unwrap_or_default();
                page.contains("hello-rootless")
            }),
            "127.0.0.1:{port} did not answer: {page:?}"
        );
        // The container is a scope of the user's manager.
        let pid = ok(&["inspect", "--format", "{{.State.Pid}}", "rl-web"]);
        let cg = cgroup_of(pid.trim().parse().unwrap());
        assert!(cg.starts_with(m.cgroup()), "{}", cg.display());
        assert!(ok(&["ps", "--format", "{{.Names}}"]).contains("rl-web"));
        ok(&["stop", "-t", "1", "rl-web"]);
        ok(&["rm", "rl-web"]);
        assert!(!ok(&["ps", "-a", "--format", "{{.Names}}"]).contains("rl-web"));
    }));
    cleanup();
    drop(m);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// GET / from 127.0.0.1:port, the whole answer.
fn http_get(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
