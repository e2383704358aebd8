//! The container-escape classes of 2019–2025, each built as an attacker
//! would build it with a crafted image and config: /proc writes redirected
//! to the host (CVE-2025-52881), mask and console sources (CVE-2025-31133,
//! CVE-2025-52565), proc and sysfs on symlinks (CVE-2019-19921,
//! CVE-2023-27561), a bare procfs under --no-pivot, device rules, ids, and
//! the caller's fds in a created init. Every host file an attack aims at is
//! saved first and put back afterwards ([`Restore`]); where runc 1.1.5 is
//! not itself vulnerable, it runs the same bundle as the reference.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use common::*;
use serde_json::json;

const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";

fn add_mount(env: &mut Env, m: serde_json::Value) {
    env.config["mounts"].as_array_mut().unwrap().push(m);
}

/// A createContainer hook (it runs in the container's mount namespace once
/// the config's mounts exist) that bind-mounts `source` over `target`
/// inside the rootfs: a mount in the way of berth's own /proc writes.
fn overmount_hook(env: &mut Env, source: &Path, target: &str) {
    let script = env.scratch.0.join("overmount.sh");
    let rootfs = env.bundle.join("rootfs");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nmount --bind {} {}{target}\n",
            source.display(),
            rootfs.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.config["hooks"] = json!({"createContainer": [{"path": script}]});
}

/// The issue's attack, as tried: the image links /data into /proc/sys, a
/// volume's file there links to core_pattern, a sysctl writes through it.
#[test]
fn sysctl_through_a_symlinked_volume_is_refused() {
    let guard = Restore::save(CORE_PATTERN);
    let mut env = Env::new("esc-sysctl-link");
    symlink("/proc/sys/net/ipv4", env.bundle.join("rootfs/data")).unwrap();
    let volume = env.scratch.0.join("volume");
    std::fs::create_dir(&volume).unwrap();
    symlink(CORE_PATTERN, volume.join("ip_unprivileged_port_start")).unwrap();
    add_mount(
        &mut env,
        json!({"destination": "/data", "type": "bind", "source": volume, "options": ["rbind"]}),
    );
    env.config["linux"]["sysctl"] =
        json!({"net.ipv4.ip_unprivileged_port_start": "berth-attack-%p"});
    let (code, _, err) = env.run();
    assert_ne!(code, 0, "berth ran it");
    assert!(guard.unchanged(), "berth wrote the host's core_pattern");
    assert!(
        err.contains("/proc/sys/net/ipv4")
            && err.contains("cannot be mounted because it is inside /proc"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    env.expect_no_state();
    let (code, _, err) = env.runc_run();
    assert_ne!(code, 0, "runc ran it");
    assert!(
        err.contains("cannot be mounted because it is inside /proc"),
        "runc: {err}"
    );
    assert!(guard.unchanged(), "runc wrote the host's core_pattern");
}

/// Mount destinations into /proc are refused however they get there, and
/// the lxcfs files runc allows are allowed.
#[test]
fn mounts_into_proc_are_refused_except_lxcfs_files() {
    let mut env = Env::new("esc-proc-dest");
    let victim = env.scratch.0.join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("oom_score_adj"), "victim\n").unwrap();
    // A bind over /proc/1 used to turn oomScoreAdj into a write to a file
    // of the bind's source.
    add_mount(
        &mut env,
        json!({"destination": "/proc/1", "type": "bind", "source": victim, "options": ["rbind"]}),
    );
    env.config["process"]["oomScoreAdj"] = json!(100);
    for (name, (code, _, err)) in [("berth", env.run()), ("runc", env.runc_run())] {
        assert_ne!(code, 0, "{name} ran it");
        assert!(
            err.contains("cannot be mounted because it is inside /proc"),
            "{name}: {err}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(victim.join("oom_score_adj")).unwrap(),
        "victim\n"
    );
    env.expect_no_state();

    let mut env = Env::new("esc-proc-lxcfs");
    let fake = env.scratch.0.join("uptime");
    std::fs::write(&fake, "1.00 2.00\n").unwrap();
    add_mount(
        &mut env,
        json!({"destination": "/proc/uptime", "type": "bind", "source": fake, "options": ["bind"]}),
    );
    env.sh("cat /proc/uptime");
    assert_eq!(env.run_ok(), "1.00 2.00\n");
    let (code, out, err) = env.runc_run();
    assert_eq!((code, out.as_str()), (0, "1.00 2.00\n"), "runc: {err}");
}

/// With a mount placed in the way after berth's checks (a hook does it,
/// inside the container's /proc), the sysctl still reaches the container's
/// own network namespace and never the file mounted there.
#[test]
fn sysctl_goes_past_a_mount_in_the_way() {
    let mut env = Env::new("esc-sysctl-mount");
    let victim = env.scratch.0.join("victim");
    std::fs::write(&victim, "victim\n").unwrap();
    overmount_hook(
        &mut env,
        &victim,
        "/proc/sys/net/ipv4/ip_unprivileged_port_start",
    );
    env.config["linux"]["sysctl"] = json!({"net.ipv4.ip_unprivileged_port_start": "777"});
    env.sh("sleep 100");
    env.create_ok();
    let pid = env.state()["pid"].as_i64().unwrap();
    let seen = std::process::Command::new("nsenter")
        .args([&format!("--net=/proc/{pid}/ns/net"), "cat"])
        .arg("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&seen.stdout), "777\n");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim\n");
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

/// The same for oomScoreAdj, with a file mounted over the init's
/// /proc/1/oom_score_adj.
#[test]
fn oom_score_adj_goes_past_a_mount_in_the_way() {
    let mut env = Env::new("esc-oom-mount");
    let victim = env.scratch.0.join("victim");
    std::fs::write(&victim, "victim\n").unwrap();
    overmount_hook(&mut env, &victim, "/proc/1/oom_score_adj");
    env.config["process"]["oomScoreAdj"] = json!(123);
    env.sh("sleep 100");
    env.create_ok();
    let pid = env.state()["pid"].as_i64().unwrap();
    let adj = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
    assert_eq!(adj, "123\n");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim\n");
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

/// Without a proc mount, the image's /proc decides what "/proc/self"
/// means: berth's writes do not care.
#[test]
fn oom_score_adj_ignores_an_image_proc_link() {
    let mut env = Env::new("esc-oom-link");
    let rootfs = env.bundle.join("rootfs");
    std::fs::write(rootfs.join("victim"), "victim\n").unwrap();
    std::fs::create_dir_all(rootfs.join("proc/fake")).unwrap();
    symlink("/victim", rootfs.join("proc/fake/oom_score_adj")).unwrap();
    symlink("fake", rootfs.join("proc/self")).unwrap();
    let mounts: Vec<serde_json::Value> = env.config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["destination"] != "/proc")
        .cloned()
        .collect();
    env.config["mounts"] = json!(mounts);
    env.config["linux"]["maskedPaths"] = json!([]);
    env.config["linux"]["readonlyPaths"] = json!([]);
    env.config["process"]["oomScoreAdj"] = json!(321);
    env.sh("sleep 100");
    env.create_ok();
    let pid = env.state()["pid"].as_i64().unwrap();
    let adj = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
    assert_eq!(adj, "321\n");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("victim")).unwrap(),
        "victim\n"
    );
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

/// A config that keeps the image's /dev (no tmpfs there): its /dev/null
/// is a link to core_pattern, which masking used to bind over the masked
/// paths (CVE-2025-31133).
#[test]
fn a_linked_dev_null_is_not_used_as_the_mask() {
    let guard = Restore::save(CORE_PATTERN);
    let mut env = Env::new("esc-mask-null");
    let dev = env.bundle.join("rootfs/dev");
    symlink(CORE_PATTERN, dev.join("null")).unwrap();
    let mounts: Vec<serde_json::Value> = env.config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["destination"] != "/dev")
        .cloned()
        .collect();
    env.config["mounts"] = json!(mounts);
    env.config["linux"]["maskedPaths"] = json!(["/proc/kcore", "/proc/timer_list"]);
    env.sh("cat /proc/timer_list; echo |berth-attack > /proc/timer_list");
    let (code, out, err) = env.run();
    assert_ne!(code, 0, "berth masked with the link: {out}");
    assert!(
        err.contains("/dev/null in the container is not the null device"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(guard.unchanged(), "core_pattern changed");
    env.expect_no_state();
    // The real null device masks as before.
    std::fs::remove_file(dev.join("null")).unwrap();
    env.sh("wc -c < /proc/timer_list");
    assert_eq!(env.run_ok(), "0\n");
}

/// The image's /dev/console links to /proc/sysrq-trigger: the console is
/// never mounted through it (CVE-2025-52565).
#[test]
fn a_linked_dev_console_is_refused() {
    use std::os::fd::AsRawFd;
    let mut env = Env::new("esc-console");
    let dev = env.bundle.join("rootfs/dev");
    symlink("/proc/sysrq-trigger", dev.join("console")).unwrap();
    let mounts: Vec<serde_json::Value> = env.config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["destination"] != "/dev")
        .cloned()
        .collect();
    env.config["mounts"] = json!(mounts);
    env.config["process"]["terminal"] = json!(true);
    env.sh("sleep 100");
    env.write_config();
    let sock_path = env.scratch.0.join("refused.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let out = env.berth(&[
        "create",
        "--console-socket",
        sock_path.to_str().unwrap(),
        "-b",
        env.bundle.to_str().unwrap(),
        &env.id,
    ]);
    let err = stderr_of(&out);
    assert!(
        !out.status.success(),
        "the console was mounted through the link"
    );
    assert!(
        err.contains("/dev/console in the container is not a regular file or a device"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    env.expect_no_state();
    // A regular file there is fine, and gets the pty.
    std::fs::remove_file(dev.join("console")).unwrap();
    std::fs::write(dev.join("console"), "").unwrap();
    env.sh("readlink /proc/self/fd/0; stat -c %t /dev/console; sleep 100");
    env.write_config();
    let sock_path = env.scratch.0.join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let out = env.berth(&[
        "create",
        "--console-socket",
        sock_path.to_str().unwrap(),
        "-b",
        env.bundle.to_str().unwrap(),
        &env.id,
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let (conn, _) = listener.accept().unwrap();
    let fd = berth::tty::recv_fd(conn.as_raw_fd()).unwrap();
    let mut master = std::fs::File::from(fd);
    assert!(env.berth(&["start", &env.id]).status.success());
    let out = read_until(&mut master, "88");
    // devpts' major is 136 (0x88).
    assert!(out.contains("/dev/pts/") && out.contains("88"), "{out}");
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

/// proc and sysfs are mounted only on an ordinary directory: never through
/// a symlink, absolute or relative, in berth and in runc alike.
#[test]
fn proc_and_sysfs_on_symlinks_are_refused() {
    for (dir, link) in [
        ("proc", "/tmp"),
        ("proc", "tmp"),
        ("proc", "."),
        ("sys", "/tmp"),
        ("sys", "etc"),
    ] {
        let mut env = Env::new("esc-proc-link");
        let rootfs = env.bundle.join("rootfs");
        std::fs::remove_dir(rootfs.join(dir)).unwrap();
        symlink(link, rootfs.join(dir)).unwrap();
        if dir == "sys" {
            add_mount(
                &mut env,
                json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
            );
        }
        let fstype = if dir == "proc" { "proc" } else { "sysfs" };
        let want = "must be mounted on ordinary directory";
        let (code, _, err) = env.run();
        assert_ne!(code, 0, "berth mounted {fstype} through /{dir} -> {link}");
        assert!(
            err.contains(want) && err.contains(fstype),
            "/{dir} -> {link}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        env.expect_no_state();
        let (code, _, err) = env.runc_run();
        assert_ne!(code, 0, "runc mounted {fstype} through /{dir} -> {link}");
        assert!(err.contains(want), "runc: /{dir} -> {link}: {err}");
        assert_eq!(std::fs::read_dir(rootfs.join("tmp")).unwrap().count(), 0);
    }
}

/// Under --no-pivot the host's /proc and /sys would stay in the
/// container's mount namespace, fully visible: a process could then make
/// a user namespace and mount a fresh, unmasked procfs (berth did, before
/// this test). berth, like runc, takes them away first.
#[test]
fn no_pivot_leaves_no_bare_procfs_to_mount() {
    let mut env = Env::new("esc-no-pivot");
    std::fs::create_dir_all(env.bundle.join("rootfs/mnt")).unwrap();
    // Not root: mapping uid 0 into a new user namespace takes CAP_SETFCAP,
    // mapping one's own uid takes nothing.
    env.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    env.sh("unshare -mrpf true && echo userns-ok; \
         unshare -mrpf sh -c 'mount -t proc proc /mnt 2>/dev/null && echo MOUNTED'; echo done");
    env.write_config();
    let bundle = env.bundle.to_str().unwrap().to_string();
    let berth = env.berth(&["run", "--no-pivot", "-b", &bundle, &env.id]);
    let runc = env.runc(&["run", "--no-pivot", "-b", &bundle, &env.id]);
    for (name, out) in [("berth", berth), ("runc", runc)] {
        assert!(out.status.success(), "{name}: {}", stderr_of(&out));
        assert_eq!(stdout_of(&out), "userns-ok\ndone\n", "{name}");
    }
    env.expect_no_state();
}

/// The device allow-list is the config's rules and runc's defaults, and
/// nothing else: a node linux.devices creates is not allowed unless a rule
/// allows it. (The issue's /dev/kmsg has a permission check of its own on
/// open; /dev/loop-control, opened for reading, has none and changes
/// nothing, so the cgroup alone decides here.)
#[test]
fn devices_are_allowed_only_by_rules() {
    let mut env = Env::new("esc-devices");
    env.config["linux"]["devices"] = json!([{"path": "/dev/loop-control", "type": "c", "major": 10, "minor": 237, "fileMode": 0o600}]);
    env.config["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}]);
    env.sh("test -c /dev/loop-control && echo node; (exec 3</dev/loop-control) 2>/dev/null && echo opened || echo denied");
    for (name, (code, out, err)) in [("berth", env.run()), ("runc", env.runc_run())] {
        assert_eq!(code, 0, "{name}: {err}");
        assert_eq!(out, "node\ndenied\n", "{name}");
    }
    // A rule that allows it, after one the kernel would refuse as written
    // (a redundant deny with an access letter v1 does not know).
    env.config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": false, "type": "c", "major": 10, "minor": 237, "access": "rwa"},
        {"allow": true, "type": "c", "major": 10, "minor": 237, "access": "r"}
    ]);
    for (name, (code, out, err)) in [("berth", env.run()), ("runc", env.runc_run())] {
        assert_eq!(code, 0, "{name}: {err}");
        assert_eq!(out, "node\nopened\n", "{name}");
    }
    env.config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": false, "type": "c", "major": 10, "minor": 237, "access": "rwa"}
    ]);
    for (name, (code, out, err)) in [("berth", env.run()), ("runc", env.runc_run())] {
        assert_eq!(code, 0, "{name}: {err}");
        assert_eq!(out, "node\ndenied\n", "{name}");
    }
}

/// (uid_t)-1 means "unchanged" to setresuid: a uid or gid of 4294967295
/// would run the process as root. Refused everywhere an id is given.
#[test]
fn ids_out_of_range_are_refused() {
    let big = 4_294_967_295u64;
    type Edit = Box<dyn Fn(&mut Env)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "process.user.uid",
            Box::new(move |e: &mut Env| e.config["process"]["user"]["uid"] = json!(big)),
        ),
        (
            "process.user.gid",
            Box::new(move |e: &mut Env| e.config["process"]["user"]["gid"] = json!(big)),
        ),
        (
            "process.user.additionalGids",
            Box::new(move |e: &mut Env| {
                e.config["process"]["user"]["additionalGids"] = json!([1, big])
            }),
        ),
        (
            "linux.uidMappings.hostID",
            Box::new(move |e: &mut Env| {
                e.config["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user"}));
                e.config["linux"]["uidMappings"] =
                    json!([{"containerID": 0, "hostID": big, "size": 1}]);
                e.config["linux"]["gidMappings"] =
                    json!([{"containerID": 0, "hostID": 0, "size": 1}]);
            }),
        ),
    ];
    for (field, edit) in cases {
        let mut env = Env::new("esc-ids");
        edit(&mut env);
        env.sh("id -u");
        let (code, out, err) = env.run();
        assert_ne!(code, 0, "{field}: ran as {out}");
        assert!(
            err.contains(field) && err.contains("must be in range 0-2147483647"),
            "{field}: {err}"
        );
        env.expect_no_state();
        let (code, out, _) = env.runc_run();
        assert_ne!(code, 0, "runc ran {field} as {out}");
    }
    // exec: -u and --additional-gids, and a process.json.
    let mut env = Env::new("esc-ids-exec");
    env.sh("sleep 100");
    env.create_ok();
    assert!(env.berth(&["start", &env.id]).status.success());
    let process = env.scratch.0.join("process.json");
    std::fs::write(
        &process,
        json!({"args": ["id", "-u"], "cwd": "/", "user": {"uid": big, "gid": 0}}).to_string(),
    )
    .unwrap();
    for args in [
        vec!["exec", "-u", "4294967295", &env.id, "id", "-u"],
        vec!["exec", "-u", "0:4294967295", &env.id, "id", "-u"],
        vec![
            "exec",
            "--additional-gids",
            "4294967295",
            &env.id,
            "id",
            "-u",
        ],
        vec!["exec", "-p", process.to_str().unwrap(), &env.id],
    ] {
        let out = env.berth(&args);
        assert!(!out.status.success(), "{args:?} ran as {}", stdout_of(&out));
        assert!(
            stderr_of(&out).contains("must be in range 0-2147483647"),
            "{args:?}: {}",
            stderr_of(&out)
        );
    }
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

/// What the caller of `create` holds without close-on-exec (a flock'd file,
/// a host directory) is not held by the created init: the lock is free as
/// soon as the caller lets go, before `start`.
#[test]
fn created_init_holds_none_of_the_callers_fds() {
    use std::os::unix::process::CommandExt;
    let mut env = Env::new("esc-caller-fds");
    env.sh("sleep 100");
    env.write_config();
    let lock = std::ffi::CString::new(env.scratch.0.join("lock").to_str().unwrap()).unwrap();
    let dir = std::ffi::CString::new(env.scratch.0.to_str().unwrap()).unwrap();
    for runtime in [BERTH, RUNC] {
        // The roots the test's Env cleans up after, whatever happens.
        let root = if runtime == BERTH {
            env.root.clone()
        } else {
            env.scratch.0.join("runc-state")
        };
        let mut cmd = std::process::Command::new(runtime);
        cmd.arg("--root")
            .arg(&root)
            .args(["create", "-b", env.bundle.to_str().unwrap(), &env.id]);
        let (lock, dir) = (lock.clone(), dir.clone());
        // SAFETY: only open and flock between fork and exec, with strings
        // made before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(lock.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o600);
                if fd < 0 || libc::flock(fd, libc::LOCK_EX) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::open(dir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = output_via_files(cmd, &env.scratch.0);
        assert!(out.status.success(), "{runtime}: {}", stderr_of(&out));
        let state = std::process::Command::new(runtime)
            .arg("--root")
            .arg(&root)
            .args(["state", &env.id])
            .output()
            .unwrap();
        let state: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
        let pid = state["pid"].as_i64().unwrap();
        let held: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            // stdio is the caller's to give.
            .filter(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) > Some(2))
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|p| p.display().to_string())
            .filter(|p| p == env.scratch.0.to_str().unwrap() || p.ends_with("/lock"))
            .collect();
        assert!(
            held.is_empty(),
            "{runtime}: the created init holds {held:?}"
        );
        let free = std::process::Command::new("flock")
            .args(["-n"])
            .arg(env.scratch.0.join("lock"))
            .arg("true")
            .status()
            .unwrap();
        assert!(free.success(), "{runtime}: the lock is still held");
        let deleted = std::process::Command::new(runtime)
            .arg("--root")
            .arg(&root)
            .args(["delete", "-f", &env.id])
            .status()
            .unwrap();
        assert!(deleted.success());
    }
}

/// CVE-2019-5736 without a re-exec to hide behind: no berth process is
/// ever reachable through /proc/<pid>/exe from inside a container — not a
/// created init waiting for start, not an exec being set up, not a `run`
/// — and an entrypoint `#!/proc/self/exe` does not run the host's berth.
#[test]
fn no_berth_process_is_reachable_through_proc_exe() {
    let before = std::fs::read(BERTH).unwrap();
    // The watcher: its own pid namespace, which the others below join, so
    // their inits and exec children appear in its /proc.
    let mut w = Env::new("esc-exe-watch");
    // A read of the whole exe that yields berth's size is berth reached
    // (a process that has exec'd its program meanwhile shows that instead).
    let size = before.len();
    w.sh(&format!(
        "exec >/tmp/watch.log; seen=; while [ ! -e /tmp/stop ]; do for p in /proc/[0-9]*; do \
           [ \"$(cat $p/comm 2>/dev/null)\" = berth ] || continue; \
           case \" $seen \" in *\" $p \"*) ;; *) seen=\"$seen $p\"; echo SEEN $p;; esac; \
           [ \"$(cat $p/exe 2>/dev/null | wc -c)\" = {size} ] && echo REACHED $p; \
         done; done; echo watched"
    ));
    w.config["root"]["readonly"] = json!(false);
    w.write_config();
    let bundle = w.bundle.to_str().unwrap().to_string();
    let out = w.berth(&["run", "-d", "-b", &bundle, &w.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let watcher = w.state()["pid"].as_i64().unwrap();
    let join =
        json!([{"type": "pid", "path": format!("/proc/{watcher}/ns/pid")}, {"type": "mount"}]);

    let mut b = Env::new("esc-exe-created");
    b.config["linux"]["namespaces"] = join.clone();
    b.config.as_object_mut().unwrap().remove("hostname");
    b.sh("sleep 100");
    b.create_ok();
    // Long enough for the watcher to look at the created init many times.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(b.berth(&["start", &b.id]).status.success());
    for _ in 0..5 {
        assert!(b.berth(&["exec", &b.id, "true"]).status.success());
    }
    let mut c = Env::new("esc-exe-run");
    c.config["linux"]["namespaces"] = join;
    c.config.as_object_mut().unwrap().remove("hostname");
    c.args(&["true"]);
    for _ in 0..3 {
        c.run_ok();
    }
    assert!(b.berth(&["delete", "-f", &b.id]).status.success());
    assert!(w
        .berth(&["exec", &w.id, "touch", "/tmp/stop"])
        .status
        .success());
    assert!(wait_until(15, || w.status() == "stopped"));
    let log = std::fs::read_to_string(w.bundle.join("rootfs/tmp/watch.log")).unwrap();
    assert!(log.contains("SEEN") && log.ends_with("watched\n"), "{log}");
    assert!(!log.contains("REACHED"), "{log}");
    let out = w.berth(&["delete", &w.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        std::fs::read(BERTH).unwrap(),
        before,
        "the berth binary changed"
    );

    // The entrypoint is a script whose interpreter is the init's own exe.
    let mut e = Env::new("esc-exe-shebang");
    let evil = e.bundle.join("rootfs/evil");
    std::fs::write(&evil, "#!/proc/self/exe\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    e.args(&["/evil"]);
    let (code, out, _) = e.run();
    assert_ne!(code, 0, "{out}");
    assert_eq!(
        std::fs::read(BERTH).unwrap(),
        before,
        "the berth binary changed"
    );
}
