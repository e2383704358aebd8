//! Where engines and scripts notice how runc behaves: each test runs the
//! same bundle and command through berth and through runc 1.1 (Debian's)
//! and holds berth to runc's result — exit code, output, what happens on
//! the host. Where runc is itself broken, the test says so and holds berth
//! to the spec.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::json;

/// Both runtimes on the current config: (name, exit code, stdout, stderr).
fn both(env: &Env) -> [(&'static str, i32, String, String); 2] {
    let (bc, bo, be) = env.run();
    let (rc, ro, re) = env.runc_run();
    [("berth", bc, bo, be), ("runc", rc, ro, re)]
}

/// A profile written before close_range existed: everything else a
/// program needs is allowed, close_range is not (and newer syscalls are,
/// so close_range gets EPERM rather than the ENOSYS of a too-new call).
fn profile_without_close_range() -> serde_json::Value {
    let names = [
        "read",
        "write",
        "open",
        "openat",
        "close",
        "stat",
        "fstat",
        "lstat",
        "newfstatat",
        "statx",
        "poll",
        "ppoll",
        "lseek",
        "mmap",
        "mprotect",
        "munmap",
        "brk",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "ioctl",
        "pread64",
        "readv",
        "writev",
        "access",
        "faccessat",
        "faccessat2",
        "pipe",
        "pipe2",
        "select",
        "pselect6",
        "sched_yield",
        "dup",
        "dup2",
        "dup3",
        "nanosleep",
        "clock_nanosleep",
        "getpid",
        "getppid",
        "socket",
        "connect",
        "sendmsg",
        "recvmsg",
        "clone",
        "clone3",
        "fork",
        "vfork",
        "execve",
        "execveat",
        "exit",
        "exit_group",
        "wait4",
        "waitid",
        "kill",
        "tgkill",
        "uname",
        "fcntl",
        "getdents64",
        "getcwd",
        "chdir",
        "fchdir",
        "readlink",
        "readlinkat",
        "umask",
        "getuid",
        "getgid",
        "geteuid",
        "getegid",
        "setuid",
        "setgid",
        "setresuid",
        "setresgid",
        "setgroups",
        "getgroups",
        "capget",
        "capset",
        "prctl",
        "arch_prctl",
        "set_tid_address",
        "set_robust_list",
        "rseq",
        "prlimit64",
        "getrlimit",
        "sigaltstack",
        "futex",
        "clock_gettime",
        "gettimeofday",
        "getrandom",
        "sched_getaffinity",
        "personality",
        "setsid",
        "getpgrp",
        "setpgid",
        "getpgid",
        "getsid",
        "sysinfo",
        "sendto",
        "recvfrom",
        "statfs",
        "fstatfs",
        "epoll_pwait2",
    ];
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": names.as_slice(), "action": "SCMP_ACT_ALLOW"}]
    })
}

#[test]
fn seccomp_profiles_without_close_range_still_start() {
    for nnp in [false, true] {
        let mut env = Env::new("parity-close-range");
        env.config["linux"]["seccomp"] = profile_without_close_range();
        env.config["process"]["noNewPrivileges"] = json!(nnp);
        env.sh("echo started; sleep 100");
        for (name, runtime) in [("berth", BERTH), ("runc", RUNC)] {
            env.write_config();
            let bundle = env.bundle.to_str().unwrap();
            let out = if runtime == BERTH {
                env.berth(&["run", "-d", "-b", bundle, &env.id])
            } else {
                env.runc(&["run", "-d", "-b", bundle, &env.id])
            };
            assert!(
                out.status.success(),
                "{name} nnp={nnp}: {}",
                stderr_of(&out)
            );
            let exec = if runtime == BERTH {
                env.berth(&["exec", &env.id, "echo", "exec-ok"])
            } else {
                env.runc(&["exec", &env.id, "echo", "exec-ok"])
            };
            assert_eq!(
                stdout_of(&exec),
                "exec-ok\n",
                "{name} nnp={nnp}: {}",
                stderr_of(&exec)
            );
            let del = if runtime == BERTH {
                env.berth(&["delete", "-f", &env.id])
            } else {
                env.runc(&["delete", "-f", &env.id])
            };
            assert!(del.status.success());
        }
    }
}

/// The mounts (their points) under `dir` in the host's mount table.
fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect()
}

/// An unlisted namespace type is the runtime's own (config-linux.md): with
/// no mount namespace the container is a chroot in berth's, its mounts are
/// in the host's table while it exists, and gone after delete. (runc runs
/// it too, but leaves every mount behind after `run`; the test takes them
/// away for it.)
#[test]
fn no_mount_namespace_is_the_hosts() {
    let mut env = Env::new("parity-no-mntns");
    env.config["linux"]["namespaces"] = json!([]);
    env.config.as_object_mut().unwrap().remove("hostname");
    let rootfs = env.bundle.join("rootfs");
    std::fs::write(rootfs.join("marker"), "in-rootfs\n").unwrap();
    env.sh("cat /marker; test -e /proc/self/status && echo proc");
    // The masks would be made in the host's mount table: refused, by both.
    for (name, code, _, err) in both(&env) {
        assert_ne!(code, 0, "{name}");
        assert!(
            err.contains("unable to restrict sys entries without a private"),
            "{name}: {err}"
        );
    }
    env.config["linux"]["maskedPaths"] = json!([]);
    env.config["linux"]["readonlyPaths"] = json!([]);
    let host_mntns = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let (code, out, err) = env.run();
    assert_eq!((code, out.as_str()), (0, "in-rootfs\nproc\n"), "{err}");
    assert!(
        mounts_under(&rootfs).is_empty(),
        "berth left {:?}",
        mounts_under(&rootfs)
    );
    let (code, out, err) = env.runc_run();
    let left = mounts_under(&rootfs);
    let _ = Command::new("umount").arg("-R").arg(&rootfs).status();
    assert_eq!(
        (code, out.as_str()),
        (0, "in-rootfs\nproc\n"),
        "runc: {err}"
    );
    assert!(
        !left.is_empty(),
        "runc no longer leaves its mounts: update this test"
    );

    // While it runs, its mounts are the host's; exec goes into its root.
    env.sh("sleep 100");
    env.create_ok();
    assert!(env.berth(&["start", &env.id]).status.success());
    assert!(mounts_under(&rootfs).iter().any(|p| p.ends_with("/proc")));
    let out = env.berth(&[
        "exec",
        &env.id,
        "sh",
        "-c",
        "cat /marker; readlink /proc/self/ns/mnt",
    ]);
    assert_eq!(
        stdout_of(&out),
        format!("in-rootfs\n{}\n", host_mntns.display()),
        "{}",
        stderr_of(&out)
    );
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
    assert!(
        mounts_under(&rootfs).is_empty(),
        "berth left {:?}",
        mounts_under(&rootfs)
    );
    // A create that fails half way takes its host mounts back too.
    env.args(&["/no/such/program"]);
    assert!(!env.create().status.success());
    assert!(
        mounts_under(&rootfs).is_empty(),
        "berth left {:?}",
        mounts_under(&rootfs)
    );
    env.expect_no_state();
}

#[test]
fn a_frozen_cgroup_is_refused() {
    let env = Env::new("parity-frozen");
    // v1: the freezer hierarchy's freezer.state; v2: cgroup.freeze.
    let (dir, file, frozen, thawed) = if pure_v2() {
        (env.cgroup_dir(""), "cgroup.freeze", "1", "0")
    } else {
        (
            env.cgroup_dir("freezer"),
            "freezer.state",
            "FROZEN",
            "THAWED",
        )
    };
    std::fs::create_dir_all(&dir).unwrap();
    struct Thaw(std::path::PathBuf, &'static str, &'static str);
    impl Drop for Thaw {
        fn drop(&mut self) {
            let _ = std::fs::write(self.0.join(self.1), self.2);
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _thaw = Thaw(dir.clone(), file, thawed);
    std::fs::write(dir.join(file), frozen).unwrap();
    for (name, code, _, err) in both(&env) {
        assert_ne!(code, 0, "{name}");
        assert!(
            err.contains("container's cgroup unexpectedly frozen"),
            "{name}: {err}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("cgroup.procs")).unwrap(),
        ""
    );
}

#[test]
fn a_hugetlb_limit_that_cannot_be_set_is_an_error() {
    let mut env = Env::new("parity-hugetlb");
    env.config["linux"]["resources"]["hugepageLimits"] =
        json!([{"pageSize": "3MB", "limit": 1048576}]);
    for (name, code, _, err) in both(&env) {
        assert_ne!(code, 0, "{name} ignored the limit");
        assert!(err.contains("hugetlb.3MB.limit_in_bytes"), "{name}: {err}");
    }
    let (_, _, err) = env.run();
    assert!(err.contains("linux.resources.hugepageLimits"), "{err}");
    env.expect_no_state();
}

#[test]
fn unified_on_a_v1_host_is_one_clear_line() {
    let mut env = Env::new("parity-unified");
    env.config["linux"]["resources"]["unified"] = json!({"memory.max": "100000000"});
    for (name, code, _, err) in both(&env) {
        assert_ne!(code, 0, "{name}");
        assert!(
            err.contains("invalid configuration: cannot use unified on cgroup v1"),
            "{name}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
    }
    env.expect_no_state();
    // A limit cgroup2 would need enabled in the hybrid root is refused,
    // and the root is left alone.
    let control = "/sys/fs/cgroup/unified/cgroup.subtree_control";
    let before = std::fs::read_to_string(control).unwrap();
    env.config["linux"]["resources"]
        .as_object_mut()
        .unwrap()
        .remove("unified");
    env.config["linux"]["resources"]["rdma"] = json!({"mlx5_0": {"hcaHandles": 3}});
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(err.contains("linux.resources.rdma"), "{err}");
    assert_eq!(std::fs::read_to_string(control).unwrap(), before);
    env.expect_no_state();
}

#[test]
fn exec_failures_exit_255() {
    let mut env = Env::new("parity-exec-255");
    env.sh("sleep 100");
    env.write_config();
    let bundle = env.bundle.to_str().unwrap().to_string();
    let missing_dir = env.scratch.0.join("no/such/dir/pid");
    let missing_dir = missing_dir.to_str().unwrap().to_string();
    for runtime in [BERTH, RUNC] {
        let run = |args: &[&str]| env.call(runtime, args);
        assert!(run(&["run", "-d", "-b", &bundle, &env.id]).status.success());
        for args in [
            vec!["exec", &env.id, "/no/such/binary"],
            vec!["exec", "--pid-file", &missing_dir, &env.id, "true"],
        ] {
            let out = run(&args);
            assert_eq!(
                out.status.code(),
                Some(255),
                "{runtime} {args:?}: {}",
                stderr_of(&out)
            );
            assert!(
                stderr_of(&out).contains("exec failed"),
                "{runtime}: {}",
                stderr_of(&out)
            );
        }
        assert!(run(&["pause", &env.id]).status.success());
        let out = run(&["exec", &env.id, "true"]);
        assert_eq!(
            out.status.code(),
            Some(255),
            "{runtime} paused: {}",
            stderr_of(&out)
        );
        assert!(run(&["resume", &env.id]).status.success());
        // The process's own exit code passes through.
        let out = run(&["exec", &env.id, "sh", "-c", "exit 7"]);
        assert_eq!(out.status.code(), Some(7), "{runtime}");
        assert!(run(&["delete", "-f", &env.id]).status.success());
    }
}

#[test]
fn kill_with_signal_zero_probes() {
    let mut env = Env::new("parity-kill-0");
    env.sh("sleep 100");
    env.write_config();
    let bundle = env.bundle.to_str().unwrap().to_string();
    for runtime in [BERTH, RUNC] {
        let run = |args: &[&str]| env.call(runtime, args);
        assert!(run(&["run", "-d", "-b", &bundle, &env.id]).status.success());
        let out = run(&["kill", &env.id, "0"]);
        assert!(out.status.success(), "{runtime}: {}", stderr_of(&out));
        assert!(run(&["kill", &env.id, "KILL"]).status.success());
        assert!(wait_until(15, || {
            let st = run(&["state", &env.id]);
            stdout_of(&st).contains("\"stopped\"")
        }));
        let out = run(&["kill", "-a", &env.id, "0"]);
        assert!(
            out.status.success(),
            "{runtime} kill -a 0 of a stopped one: {}",
            stderr_of(&out)
        );
        let out = run(&["kill", &env.id, "0"]);
        assert!(!out.status.success(), "{runtime} kill 0 of a stopped one");
        assert!(run(&["delete", &env.id]).status.success());
    }
}

#[test]
fn exec_into_a_sub_cgroup() {
    let mut env = Env::new("parity-exec-cgroup");
    env.sh("sleep 100");
    env.write_config();
    let bundle = env.bundle.to_str().unwrap().to_string();
    let name = format!("berth-test-{}", env.id);
    for runtime in [BERTH, RUNC] {
        let run = |args: &[&str]| env.call(runtime, args);
        assert!(run(&["run", "-d", "-b", &bundle, &env.id]).status.success());
        let dirs: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .map(|h| h.path().join(&name))
            .filter(|d| d.is_dir())
            .collect();
        for d in &dirs {
            // net_cls and net_prio are links to one directory.
            let _ = std::fs::create_dir(d.join("sub"));
            // A new v1 cpuset takes no task until it has cpus and mems.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = std::fs::read_to_string(d.join(f)) {
                    std::fs::write(d.join("sub").join(f), v.trim()).unwrap();
                }
            }
        }
        let out = run(&[
            "exec",
            "--cgroup",
            "sub",
            &env.id,
            "cat",
            "/proc/self/cgroup",
        ]);
        let text = stdout_of(&out);
        for h in ["memory", "pids"] {
            assert!(
                text.lines()
                    .any(|l| l.ends_with(&format!(":{h}:/{name}/sub"))),
                "{runtime} {h}: {text} {}",
                stderr_of(&out)
            );
        }
        let out = run(&[
            "exec",
            "--cgroup",
            "memory:sub",
            &env.id,
            "cat",
            "/proc/self/cgroup",
        ]);
        let text = stdout_of(&out);
        assert!(
            text.lines()
                .any(|l| l.ends_with(&format!(":memory:/{name}/sub"))),
            "{runtime}: {text}"
        );
        assert!(
            text.lines().any(|l| l.ends_with(&format!(":pids:/{name}"))),
            "{runtime}: {text}"
        );
        let out = run(&["exec", "--cgroup", "nonexistent", &env.id, "true"]);
        assert!(
            !out.status.success(),
            "{runtime} ran in a cgroup that is not there"
        );
        for d in &dirs {
            let _ = std::fs::remove_dir(d.join("sub"));
        }
        assert!(run(&["delete", "-f", &env.id]).status.success());
    }
}

#[test]
fn exec_process_json_without_user_is_root() {
    let mut env = Env::new("parity-exec-nouser");
    env.sh("sleep 100");
    env.write_config();
    let bundle = env.bundle.to_str().unwrap().to_string();
    let process = env.scratch.0.join("process.json");
    std::fs::write(
        &process,
        json!({"args": ["/bin/id", "-u"], "cwd": "/"}).to_string(),
    )
    .unwrap();
    let p = process.to_str().unwrap().to_string();
    for runtime in [BERTH, RUNC] {
        let run = |args: &[&str]| env.call(runtime, args);
        assert!(run(&["run", "-d", "-b", &bundle, &env.id]).status.success());
        let out = run(&["exec", "-p", &p, &env.id]);
        assert_eq!(stdout_of(&out), "0\n", "{runtime}: {}", stderr_of(&out));
        assert!(run(&["delete", "-f", &env.id]).status.success());
    }
}

#[test]
fn joining_an_occupied_cgroup_warns() {
    let mut a = Env::new("parity-occupied-a");
    a.sh("sleep 100");
    a.create_ok();
    let mut b = Env::new("parity-occupied-b");
    b.config["linux"]["cgroupsPath"] = a.config["linux"]["cgroupsPath"].clone();
    b.sh("sleep 100");
    b.write_config();
    let bundle = b.bundle.to_str().unwrap().to_string();
    for runtime in [BERTH, RUNC] {
        let out = if runtime == BERTH {
            b.berth(&["create", "-b", &bundle, &b.id])
        } else {
            b.runc(&["create", "-b", &bundle, &b.id])
        };
        assert!(out.status.success(), "{runtime}: {}", stderr_of(&out));
        // runc warns from 1.2 on; Debian's 1.1.5 joins silently.
        if runtime == BERTH {
            assert!(
                stderr_of(&out).contains("container's cgroup is not empty: 1 process(es) found"),
                "{}",
                stderr_of(&out)
            );
        }
        let del = if runtime == BERTH {
            b.berth(&["delete", "-f", &b.id])
        } else {
            b.runc(&["delete", "-f", &b.id])
        };
        assert!(del.status.success());
    }
    assert!(a.berth(&["delete", "-f", &a.id]).status.success());
}

#[test]
fn events_keys_in_runcs_order() {
    let mut env = Env::new("parity-events");
    env.sh("sleep 100");
    env.write_config();
    let bundle = env.bundle.to_str().unwrap().to_string();
    for runtime in [BERTH, RUNC] {
        let run = |args: &[&str]| env.call(runtime, args);
        assert!(run(&["run", "-d", "-b", &bundle, &env.id]).status.success());
        let out = stdout_of(&run(&["events", "--stats", &env.id]));
        let want = format!(
            "{{\"type\":\"stats\",\"id\":\"{}\",\"data\":{{\"cpu\":{{\"usage\":{{\"total\":",
            env.id
        );
        assert!(out.starts_with(&want), "{runtime}: {out}");
        let at = |key: &str| out.find(&format!("\"{key}\":{{")).unwrap_or(usize::MAX);
        assert!(
            at("memory") < at("pids") && at("pids") < at("blkio"),
            "{runtime}: {out}"
        );
        assert!(out.contains("\"usage\":{\"limit\":"), "{runtime}: {out}");
        assert!(run(&["delete", "-f", &env.id]).status.success());
    }
}

#[test]
fn unknown_capabilities_warn_in_runcs_words() {
    let mut env = Env::new("parity-caps");
    for set in ["bounding", "effective", "permitted"] {
        env.config["process"]["capabilities"][set] = json!(["CAP_KILL", "CAP_FROM_2030"]);
    }
    let (code, _, err) = env.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err.matches("ignoring unknown or unavailable capabilities: [CAP_FROM_2030]")
            .count(),
        1,
        "{err}"
    );
}

#[test]
fn a_start_hook_killed_by_seccomp_fails_as_in_runc() {
    let mut env = Env::new("parity-hook-seccomp");
    env.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]
    });
    env.config["hooks"] =
        json!({"startContainer": [{"path": "/bin/mkdir", "args": ["mkdir", "/tmp/x"]}]});
    env.args(&["true"]);
    for (name, code, _, err) in both(&env) {
        assert_eq!(code, 1, "{name}: {err}");
        assert!(err.contains("error running hook #0"), "{name}: {err}");
    }
}

#[test]
fn seccomp_agent_errors_name_the_agent() {
    let mut env = Env::new("parity-seccomp-agent");
    let sock = env.scratch.0.join("no-agent.sock");
    env.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    });
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(
        err.contains("listenerPath") && !err.contains("console"),
        "{err}"
    );
    env.expect_no_state();
    env.config["linux"]["seccomp"]["syscalls"] =
        json!([{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]);
    for (name, code, _, err) in both(&env) {
        assert_ne!(code, 0, "{name}");
        assert!(
            err.contains("SCMP_ACT_NOTIFY cannot be used for the write syscall"),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_read_only_dev_gets_its_nodes_first() {
    let mut env = Env::new("parity-dev-ro");
    for m in env.config["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/dev" {
            m["options"].as_array_mut().unwrap().push(json!("ro"));
        }
    }
    env.sh("test -c /dev/null && test -d /dev/pts && test -d /dev/shm && echo nodes; touch /dev/x 2>/dev/null || echo read-only");
    for (name, code, out, err) in both(&env) {
        assert_eq!(
            (code, out.as_str()),
            (0, "nodes\nread-only\n"),
            "{name}: {err}"
        );
    }
}

/// A bind source under a directory only the host's root may enter still
/// mounts for a container whose root is mapped to another uid: the source
/// is opened before the user namespace (runc does the same).
#[test]
fn bind_sources_the_container_user_cannot_reach() {
    let mut env = Env::new("parity-userns-bind");
    let private = env.scratch.0.join("private");
    std::fs::create_dir_all(private.join("data")).unwrap();
    std::fs::write(private.join("data/file"), "secret-ok\n").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    env.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    env.config["linux"]["uidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    env.config["linux"]["gidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    env.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/data", "type": "bind", "source": private.join("data"), "options": ["rbind", "ro"]}),
    );
    // The mapped root must be able to reach the rootfs and the bundle.
    let _ = Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(env.bundle.join("rootfs"))
        .status();
    env.sh("cat /data/file");
    for (name, code, out, err) in both(&env) {
        assert_eq!((code, out.as_str()), (0, "secret-ok\n"), "{name}: {err}");
    }
}

/// A hook script that records its working directory and environment.
fn recording_hook(env: &Env, name: &str) -> serde_json::Value {
    let out = env.scratch.0.join(format!("{name}.out"));
    let script = env.scratch.0.join(format!("{name}.sh"));
    std::fs::write(
        &script,
        format!("#!/bin/sh\n{{ pwd; env | sort; }} > {}\n", out.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    json!({"path": script})
}

#[test]
fn hooks_without_env_get_the_callers_and_create_container_runs_in_the_rootfs() {
    let mut env = Env::new("parity-hook-env");
    env.config["process"]["env"] = json!(["PATH=/bin", "FROM_PROCESS=yes"]);
    env.config["hooks"] = json!({
        "prestart": [recording_hook(&env, "prestart")],
        "createContainer": [recording_hook(&env, "create-container")]
    });
    env.args(&["true"]);
    env.write_config();
    let bundle = env.bundle.to_str().unwrap().to_string();
    let rootfs = env.bundle.join("rootfs");
    for runtime in [BERTH, RUNC] {
        let root = if runtime == BERTH {
            env.root.clone()
        } else {
            env.scratch.0.join("runc-state")
        };
        let mut cmd = Command::new(runtime);
        cmd.arg("--root")
            .arg(&root)
            .args(["run", "-b", &bundle, &env.id])
            .env("FROM_CALLER", "yes")
            .current_dir(&env.bundle);
        let out = output_via_files(cmd, &env.scratch.0);
        assert!(out.status.success(), "{runtime}: {}", stderr_of(&out));
        let pre = std::fs::read_to_string(env.scratch.0.join("prestart.out")).unwrap();
        assert!(
            pre.contains("FROM_CALLER=yes\n"),
            "{runtime} prestart: {pre}"
        );
        let cc = std::fs::read_to_string(env.scratch.0.join("create-container.out")).unwrap();
        assert_eq!(
            cc.lines().next(),
            Some(rootfs.to_str().unwrap()),
            "{runtime}: {cc}"
        );
        assert!(
            cc.contains("FROM_PROCESS=yes\n"),
            "{runtime} createContainer: {cc}"
        );
    }
}

#[test]
fn the_terminal_belongs_to_the_process_user() {
    use std::os::fd::AsRawFd;
    let mut env = Env::new("parity-tty-owner");
    env.config["process"]["terminal"] = json!(true);
    env.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    env.sh("stat -c owner=%u:%g $(tty); sleep 100");
    env.write_config();
    let bundle = env.bundle.to_str().unwrap().to_string();
    for runtime in [BERTH, RUNC] {
        let sock_path = env
            .scratch
            .0
            .join(format!("console-{}.sock", runtime.len()));
        let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
        let socket = sock_path.to_str().unwrap();
        let args = ["create", "--console-socket", socket, "-b", &bundle, &env.id];
        let out = if runtime == BERTH {
            env.berth(&args)
        } else {
            env.runc(&args)
        };
        assert!(out.status.success(), "{runtime}: {}", stderr_of(&out));
        let (conn, _) = listener.accept().unwrap();
        let mut master = std::fs::File::from(berth::tty::recv_fd(conn.as_raw_fd()).unwrap());
        let start = if runtime == BERTH {
            env.berth(&["start", &env.id])
        } else {
            env.runc(&["start", &env.id])
        };
        assert!(start.status.success());
        let text = read_until(&mut master, "owner=1000:5");
        assert!(text.contains("owner=1000:5"), "{runtime}: {text}");
        let del = if runtime == BERTH {
            env.berth(&["delete", "-f", &env.id])
        } else {
            env.runc(&["delete", "-f", &env.id])
        };
        assert!(del.status.success());
    }
}

/// runc's v1 write order: lifting the memory limit after a swap limit,
/// shrinking the cpu period under a parent with a lower limit, and the BFQ
/// weight files where CFQ's are gone (this host's case).
#[test]
fn cgroup_v1_writes_in_runcs_order() {
    let mut env = Env::new("parity-v1-order");
    let name = format!("berth-test-{}", env.id);
    let parent_cpu = Path::new("/sys/fs/cgroup/cpu").join(&name);
    env.config["linux"]["cgroupsPath"] = json!(format!("/{name}/c"));
    env.config["linux"]["resources"]["memory"] = json!({"limit": 104857600, "swap": 209715200});
    env.config["linux"]["resources"]["cpu"] = json!({"quota": 50000, "period": 100000});
    let bfq = Path::new("/sys/fs/cgroup/blkio/blkio.bfq.weight").exists()
        && !Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists();
    if bfq {
        env.config["linux"]["resources"]["blockIO"] = json!({"weight": 300});
    }
    env.sh("sleep 100");
    env.write_config();
    let bundle = env.bundle.to_str().unwrap().to_string();
    for runtime in [BERTH, RUNC] {
        let run = |args: &[&str]| env.call(runtime, args);
        // The parent allows half a cpu.
        std::fs::create_dir_all(&parent_cpu).unwrap();
        std::fs::write(parent_cpu.join("cpu.cfs_quota_us"), "50000").unwrap();
        let out = run(&["run", "-d", "-b", &bundle, &env.id]);
        assert!(out.status.success(), "{runtime}: {}", stderr_of(&out));
        if bfq {
            let w = std::fs::read_to_string(
                Path::new("/sys/fs/cgroup/blkio")
                    .join(&name)
                    .join("c/blkio.bfq.weight"),
            )
            .unwrap();
            assert!(w.contains("300"), "{runtime}: {w}");
        }
        let out = run(&["update", "--memory", "-1", &env.id]);
        assert!(
            out.status.success(),
            "{runtime} update --memory -1: {}",
            stderr_of(&out)
        );
        let limit = std::fs::read_to_string(
            Path::new("/sys/fs/cgroup/memory")
                .join(&name)
                .join("c/memory.limit_in_bytes"),
        )
        .unwrap();
        assert!(
            limit.trim().parse::<u64>().unwrap() > 1 << 60,
            "{runtime}: {limit}"
        );
        let out = run(&[
            "update",
            "--cpu-period",
            "10000",
            "--cpu-quota",
            "5000",
            &env.id,
        ]);
        assert!(
            out.status.success(),
            "{runtime} update cpu: {}",
            stderr_of(&out)
        );
        let c = parent_cpu.join("c");
        assert_eq!(
            std::fs::read_to_string(c.join("cpu.cfs_period_us")).unwrap(),
            "10000\n",
            "{runtime}"
        );
        assert_eq!(
            std::fs::read_to_string(c.join("cpu.cfs_quota_us")).unwrap(),
            "5000\n",
            "{runtime}"
        );
        assert!(run(&["delete", "-f", &env.id]).status.success());
        for h in [
            "cpu",
            "memory",
            "blkio",
            "pids",
            "devices",
            "freezer",
            "cpuset",
            "cpuacct",
            "hugetlb",
            "net_cls,net_prio",
            "systemd",
            "unified",
        ] {
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(h).join(&name).join("c"));
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(h).join(&name));
        }
    }
}

/// containerd mounts each rootfs on its own (an overlay): with rshared
/// rootfs propagation (bidirectional mounts), pivot_root needs that very
/// mount private in the container's namespace. A start that fails there
/// leaves nothing mounted in the host's namespace either.
#[test]
fn rshared_rootfs_that_is_its_own_mount() {
    let mut env = Env::new("parity-rshared");
    let rootfs = env.bundle.join("rootfs");
    let mount = |args: &[&str]| {
        let ok = Command::new("mount")
            .args(args)
            .arg(&rootfs)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount {args:?}");
    };
    Command::new("mount")
        .arg("--bind")
        .arg(&rootfs)
        .arg(&rootfs)
        .status()
        .unwrap();
    mount(&["--make-shared"]);
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount")
                .arg("-R")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(rootfs.clone());
    env.config["linux"]["rootfsPropagation"] = json!("rshared");
    env.sh("grep -q shared: /proc/self/mountinfo && echo shared");
    for (name, code, out, err) in both(&env) {
        assert_eq!((code, out.as_str()), (0, "shared\n"), "{name}: {err}");
        assert_eq!(
            mounts_under(&rootfs),
            vec![rootfs.display().to_string()],
            "{name} left mounts"
        );
    }
    env.args(&["/no/such/program"]);
    for (name, code, _, _) in both(&env) {
        assert_ne!(code, 0, "{name}");
        assert_eq!(
            mounts_under(&rootfs),
            vec![rootfs.display().to_string()],
            "{name} left mounts"
        );
    }
}
