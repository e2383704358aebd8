//! `berth exec`: a new process inside a running container.

mod common;

use common::*;
use serde_json::json;

/// A running container with a long sleep as its init.
fn running(name: &str) -> Env {
    let mut env = Env::new(name);
    env.config["root"]["readonly"] = json!(false);
    env.config["process"]["env"] = json!(["PATH=/bin", "FROM_CONFIG=yes"]);
    env.sh("sleep 1000");
    env.create_ok();
    let out = env.berth(&["start", &env.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    env
}

fn exec(env: &Env, args: &[&str]) -> std::process::Output {
    let mut full = vec!["exec"];
    full.extend_from_slice(args);
    env.berth(&full)
}

#[test]
fn joins_every_namespace_and_the_cgroup() {
    let env = running("exec-ns");
    let pid = env.state()["pid"].as_i64().unwrap();
    let out = exec(&env, &[&env.id, "sh", "-c", "for n in pid net ipc uts mnt; do readlink /proc/self/ns/$n; done; cat /proc/self/cgroup | grep pids"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().collect();
    for (i, n) in ["pid", "net", "ipc", "uts", "mnt"].iter().enumerate() {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
        assert_eq!(lines[i], theirs.display().to_string(), "{n}");
    }
    let init_cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        init_cg.lines().any(|l| l == lines[5]),
        "{} not in {init_cg}",
        lines[5]
    );
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

#[test]
fn command_is_verbatim_and_status_passes_through() {
    let env = running("exec-verbatim");
    let out = exec(
        &env,
        &[
            &env.id,
            "sh",
            "-c",
            "echo \"$0 $1\"; exit 42",
            "-t",
            "--help",
        ],
    );
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(stdout_of(&out), "-t --help\n");
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

#[test]
fn flags_env_user_cwd_caps() {
    let env = running("exec-flags");
    std::fs::create_dir_all(env.bundle.join("rootfs/work")).unwrap();
    let out = exec(
        &env,
        &[
            "-e",
            "EXTRA=1",
            "-e",
            "FROM_CONFIG=overridden",
            "--cwd",
            "/work",
            "-u",
            "1000:1001",
            "--additional-gids",
            "5",
            &env.id,
            "sh",
            "-c",
            "echo $FROM_CONFIG $EXTRA $(pwd) $(id -u) $(id -g) $(id -G)",
        ],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "overridden 1 /work 1000 1001 1001 5\n");
    // -u by name resolves in the container's /etc/passwd.
    let out = exec(&env, &["-u", "nobody", &env.id, "id", "-u"]);
    assert_eq!(stdout_of(&out), "65534\n", "{}", stderr_of(&out));
    let out = exec(&env, &["-u", "no-such-user", &env.id, "true"]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("no-such-user"),
        "{}",
        stderr_of(&out)
    );
    // --cap adds to the process's sets; --no-new-privs sets the bit.
    let out = exec(
        &env,
        &[
            "--cap",
            "CAP_SYS_ADMIN",
            "--no-new-privs",
            &env.id,
            "sh",
            "-c",
            "grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status | tr -d '\\t'",
        ],
    );
    let text = stdout_of(&out);
    let bnd = u64::from_str_radix(
        text.lines().next().unwrap().trim_start_matches("CapBnd:"),
        16,
    )
    .unwrap();
    assert!(bnd & (1 << 21) != 0, "{text}");
    assert!(text.contains("NoNewPrivs:1"), "{text}");
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

#[test]
fn process_file_detached_with_pid_file_as_containerd_does() {
    let env = running("exec-process-file");
    let process = json!({
        "args": ["sh", "-c", "echo from-process-json > /tmp/exec-out; sleep 0.1"],
        "cwd": "/tmp",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 222, "hard": 333}]
    });
    let pfile = env.scratch.0.join("process.json");
    std::fs::write(&pfile, process.to_string()).unwrap();
    let pid_file = env.scratch.0.join("exec.pid");
    let out = exec(
        &env,
        &[
            "--process",
            pfile.to_str().unwrap(),
            "--detach",
            "--pid-file",
            pid_file.to_str().unwrap(),
            &env.id,
        ],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid > 0);
    // The shell creates the file before echo writes to it: wait for the line.
    let out_file = env.bundle.join("rootfs/tmp/exec-out");
    let mut written = String::new();
    wait_until(15, || {
        written = std::fs::read_to_string(&out_file).unwrap_or_default();
        written.ends_with('\n')
    });
    assert_eq!(written, "from-process-json\n");
    let out = exec(
        &env,
        &[
            "--process",
            pfile.to_str().unwrap(),
            &env.id,
            "sh",
            "-c",
            "ulimit -n",
        ],
    );
    assert_eq!(stdout_of(&out), "222\n", "{}", stderr_of(&out));
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

#[test]
fn paused_and_stopped_containers() {
    let env = running("exec-paused");
    assert!(env.berth(&["pause", &env.id]).status.success());
    let out = exec(&env, &[&env.id, "true"]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("paused"), "{}", stderr_of(&out));
    // With --ignore-paused the process is made, and frozen with the rest
    // of the container until it resumes.
    let (root, id) = (env.root.clone(), env.id.clone());
    let dir = env.scratch.0.clone();
    let pending = std::thread::spawn(move || {
        let mut cmd = std::process::Command::new(BERTH);
        cmd.arg("--root")
            .arg(&root)
            .args(["exec", "--ignore-paused", "-d", &id, "true"]);
        output_via_files(cmd, &dir)
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(env.berth(&["resume", &env.id]).status.success());
    let out = pending.join().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(env.berth(&["kill", &env.id, "KILL"]).status.success());
    wait_until(15, || env.status() == "stopped");
    assert_eq!(env.status(), "stopped");
    let out = exec(&env, &[&env.id, "true"]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("stopped"), "{}", stderr_of(&out));
    assert!(env.berth(&["delete", &env.id]).status.success());
}

#[test]
fn exec_with_a_terminal() {
    let env = running("exec-tty");
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut master = std::fs::File::from(pty.master);
    let slave = std::fs::File::from(pty.slave);
    let mut cmd = std::process::Command::new(BERTH);
    cmd.arg("--root").arg(&env.root).args([
        "exec",
        "-t",
        &env.id,
        "sh",
        "-c",
        "tty; [ -t 0 ] && echo interactive; exit 3",
    ]);
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    let mut child = cmd.spawn().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    use std::io::Read;
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on our fd.
    unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut buf = vec![0u8; 4096];
    let n = master.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(
        text.contains("/dev/pts/") && text.contains("interactive"),
        "{text}"
    );
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

#[test]
fn exec_in_a_user_namespace() {
    let mut env = Env::new("exec-userns");
    env.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    env.config["linux"]["uidMappings"] =
        json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    env.config["linux"]["gidMappings"] =
        json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    env.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["type"] != "cgroup");
    std::process::Command::new("chown")
        .args(["-R", "200000:200000"])
        .arg(env.bundle.join("rootfs"))
        .status()
        .unwrap();
    env.sh("sleep 1000");
    env.create_ok();
    assert!(env.berth(&["start", &env.id]).status.success());
    let out = exec(
        &env,
        &[&env.id, "sh", "-c", "id -u; cat /proc/self/uid_map"],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    assert!(text.starts_with("0\n") && text.contains("200000"), "{text}");
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

#[test]
fn exec_cpu_affinity_final() {
    let env = running("exec-affinity");
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let last = cpus - 1;
    let process = json!({
        "args": ["sh", "-c", "grep Cpus_allowed_list /proc/self/status | tr -d '\\t'"],
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
        "execCPUAffinity": {"initial": "0", "final": format!("{last}")}
    });
    let pfile = env.scratch.0.join("affinity.json");
    std::fs::write(&pfile, process.to_string()).unwrap();
    let out = exec(&env, &["--process", pfile.to_str().unwrap(), &env.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), format!("Cpus_allowed_list:{last}\n"));
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}
