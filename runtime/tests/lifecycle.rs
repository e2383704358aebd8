//! runtime.md "Lifecycle" and "Operations", through the `berth` binary.

mod common;

use common::*;
use serde_json::json;

#[test]
fn run_prints_output_and_passes_exit_status() {
    let mut env = Env::new("run-exit");
    env.sh("echo hello; exit 7");
    let (code, out, _) = env.run();
    assert_eq!(code, 7);
    assert_eq!(out, "hello\n");
    env.expect_no_state();
    // The same ID runs again at once.
    env.sh("exit 0");
    env.run_ok();
    env.expect_no_state();
}

#[test]
fn run_reports_signal_death_as_128_plus_n() {
    let mut env = Env::new("run-signal");
    // Without a pid namespace the shell is not an init, which ignores
    // signals it has no handler for.
    let ns = env.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "pid");
    env.sh("kill -USR1 $$; sleep 5");
    let (code, _, _) = env.run();
    assert_eq!(code, 128 + libc::SIGUSR1);
}

#[test]
fn create_start_state_kill_delete() {
    let mut env = Env::new("lifecycle");
    env.sh("echo started > /tmp/started; sleep 100");
    env.config["root"]["readonly"] = json!(false);
    env.config["annotations"] = json!({"org.example.key": "value"});
    env.create_ok();
    let st = env.state();
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], env.id.as_str());
    assert_eq!(st["ociVersion"], berth::SPEC_VERSION);
    assert_eq!(st["bundle"], env.bundle.to_str().unwrap());
    assert_eq!(st["annotations"]["org.example.key"], "value");
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    // created, so the user program has not run yet.
    assert!(!env.bundle.join("rootfs/tmp/started").exists());

    let out = env.berth(&["start", &env.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(env.status(), "running");
    assert!(wait_until(15, || env
        .bundle
        .join("rootfs/tmp/started")
        .exists()));

    // start twice is an error
    let out = env.berth(&["start", &env.id]);
    assert!(!out.status.success());

    // delete of a running container needs --force
    let out = env.berth(&["delete", &env.id]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("running"), "{}", stderr_of(&out));

    let out = env.berth(&["kill", &env.id, "KILL"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    wait_until(15, || env.status() == "stopped");
    let st = env.state();
    assert_eq!(st["status"], "stopped");
    assert_eq!(st["pid"], 0);
    let out = env.berth(&["delete", &env.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    env.expect_no_state();
}

#[test]
fn delete_of_created_container_needs_no_force() {
    let mut env = Env::new("delete-created");
    env.sh("sleep 100");
    env.create_ok();
    let pid = env.state()["pid"].as_i64().unwrap();
    let out = env.berth(&["delete", &env.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/cgroup")).exists() || {
            // reaped later by its parent; it must at least be dead
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
        }
    );
    env.expect_no_state();
}

#[test]
fn delete_force_of_running_container() {
    let mut env = Env::new("delete-force");
    env.sh("sleep 100");
    env.create_ok();
    assert!(env.berth(&["start", &env.id]).status.success());
    let out = env.berth(&["delete", "-f", &env.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    env.expect_no_state();
    // delete -f of a container that does not exist succeeds, as with runc.
    assert!(env
        .berth(&["delete", "-f", "no-such-container"])
        .status
        .success());
    let out = env.berth(&["delete", "no-such-container"]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("does not exist"));
}

#[test]
fn options_after_the_id_and_pid_file() {
    let mut env = Env::new("opts-after-id");
    env.sh("sleep 100");
    env.write_config();
    let pid_file = env.scratch.0.join("pid");
    let out = env.berth(&[
        "create",
        &env.id,
        "--bundle",
        env.bundle.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, env.state()["pid"].as_i64().unwrap());
    assert!(env.berth(&["delete", &env.id]).status.success());
}

#[test]
fn kill_signal_names_and_numbers() {
    let mut env = Env::new("kill-signals");
    // The init traps USR1 and writes a marker; TERM ends it.
    env.config["root"]["readonly"] = json!(false);
    // A signal before the traps are set would be ignored (the shell is
    // pid 1 of its namespace): it says when it is ready.
    env.sh("trap 'echo usr1 >> /tmp/sig' USR1; trap 'echo term >> /tmp/sig; exit 3' TERM; touch /tmp/ready; while true; do sleep 0.05; done");
    env.create_ok();
    assert!(env.berth(&["start", &env.id]).status.success());
    let sig = env.bundle.join("rootfs/tmp/sig");
    assert!(wait_until(15, || env
        .bundle
        .join("rootfs/tmp/ready")
        .exists()));
    let usr1 = libc::SIGUSR1.to_string();
    for (n, name) in ["USR1", "SIGUSR1", usr1.as_str()].into_iter().enumerate() {
        assert!(env.berth(&["kill", &env.id, name]).status.success());
        // One at a time: two pending USR1s would merge into one.
        assert!(
            wait_until(15, || std::fs::read_to_string(&sig)
                .unwrap_or_default()
                .lines()
                .count()
                == n + 1),
            "{name} not delivered"
        );
    }
    assert!(env.berth(&["kill", &env.id]).status.success()); // default SIGTERM
    assert!(wait_until(15, || env.status() == "stopped"));
    let log = std::fs::read_to_string(env.bundle.join("rootfs/tmp/sig")).unwrap();
    assert_eq!(log, "usr1\nusr1\nusr1\nterm\n");
    let out = env.berth(&["kill", &env.id, "NOTASIGNAL"]);
    assert!(!out.status.success());
    assert!(env.berth(&["delete", &env.id]).status.success());
}

#[test]
fn kill_all_signals_every_process() {
    let mut env = Env::new("kill-all");
    // No pid namespace: the children would outlive the init otherwise.
    let ns = env.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "pid");
    env.sh("sleep 100 & sleep 100 & sleep 100");
    env.create_ok();
    assert!(env.berth(&["start", &env.id]).status.success());
    let mut procs = String::new();
    let all_there = wait_until(15, || {
        procs = std::fs::read_to_string(env.cgroup_dir("pids").join("cgroup.procs")).unwrap();
        procs.lines().count() == 3
    });
    assert!(all_there, "{procs}");
    let out = env.berth(&["kill", "--all", &env.id, "KILL"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    wait_until(15, || {
        std::fs::read_to_string(env.cgroup_dir("pids").join("cgroup.procs"))
            .unwrap_or_default()
            .is_empty()
    });
    assert_eq!(
        std::fs::read_to_string(env.cgroup_dir("pids").join("cgroup.procs")).unwrap(),
        ""
    );
    assert!(env.berth(&["delete", &env.id]).status.success());
    env.expect_no_state();
}

#[test]
fn list_formats() {
    let mut env = Env::new("list");
    env.sh("sleep 100");
    env.create_ok();
    let out = env.berth(&["list"]);
    let text = stdout_of(&out);
    assert!(text.starts_with("ID"), "{text}");
    assert!(text.contains(&env.id) && text.contains("created"), "{text}");
    let out = env.berth(&["list", "-q"]);
    assert_eq!(stdout_of(&out).trim(), env.id);
    let out = env.berth(&["list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["id"], env.id.as_str());
    assert_eq!(v[0]["status"], "created");
    assert!(env.berth(&["delete", &env.id]).status.success());
    let out = env.berth(&["list", "-f", "json"]);
    assert_eq!(stdout_of(&out).trim(), "null");
}

#[test]
fn run_detached_then_delete() {
    let mut env = Env::new("run-detach");
    env.sh("sleep 100");
    env.write_config();
    let out = env.berth(&["run", "-d", "-b", env.bundle.to_str().unwrap(), &env.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(env.status(), "running");
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
    env.expect_no_state();
}

#[test]
fn run_keep_leaves_a_stopped_container() {
    let mut env = Env::new("run-keep");
    env.sh("exit 0");
    env.write_config();
    let out = env.berth(&["run", "--keep", "-b", env.bundle.to_str().unwrap(), &env.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(env.status(), "stopped");
    assert!(env.berth(&["delete", &env.id]).status.success());
    env.expect_no_state();
}

#[test]
fn spec_and_features_and_version() {
    let s = Scratch::new("spec");
    let out = std::process::Command::new(BERTH)
        .args(["spec", "-b"])
        .arg(&s.0)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.0.join("config.json")).unwrap()).unwrap();
    assert_eq!(v["ociVersion"], "1.0.2-dev");
    assert_eq!(v["process"]["terminal"], true);
    // refuses to overwrite
    let out = std::process::Command::new(BERTH)
        .args(["spec", "-b"])
        .arg(&s.0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let s2 = Scratch::new("spec-rootless");
    let out = std::process::Command::new(BERTH)
        .args(["spec", "--rootless", "-b"])
        .arg(&s2.0)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s2.0.join("config.json")).unwrap()).unwrap();
    assert!(v["linux"]["uidMappings"].is_array());

    let out = std::process::Command::new(BERTH)
        .arg("features")
        .output()
        .unwrap();
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("time")));
    assert!(f["mountOptions"]
        .as_array()
        .unwrap()
        .contains(&json!("rro")));

    let out = std::process::Command::new(BERTH)
        .arg("--version")
        .output()
        .unwrap();
    let v = stdout_of(&out);
    assert!(v.starts_with("berth version "), "{v}");
    assert!(
        v.contains("\nspec: ") && v.contains("\ncommit: ") && v.contains("\nlibseccomp: "),
        "{v}"
    );
}

#[test]
fn json_log_format_for_containerd() {
    let env = Env::new("json-log");
    let log = env.scratch.0.join("log.json");
    let out = env.berth(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "missing",
    ]);
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(last["msg"].as_str().unwrap().contains("does not exist"));
    assert!(last["time"].as_str().unwrap().ends_with('Z'));
    // the error also goes to stderr, once
    assert_eq!(stderr_of(&out).lines().count(), 1);
}

#[test]
fn systemd_cgroup_is_a_clear_error_here() {
    let mut env = Env::new("systemd-cgroup");
    env.sh("true");
    env.write_config();
    if berth::cgroups::systemd::is_running() {
        eprintln!("skipped: systemd runs here (tests/systemd.rs covers the driver)");
        return;
    }
    let out = env.berth(&[
        "--systemd-cgroup",
        "run",
        "-b",
        env.bundle.to_str().unwrap(),
        &env.id,
    ]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("systemd"), "{}", stderr_of(&out));
    // Without the systemd driver the slice:prefix:name form is a plain
    // (relative) cgroup path, as runc's cgroupfs driver takes it: containerd
    // sends it for `*.slice` parents even without systemd.
    env.config["linux"]["cgroupsPath"] = json!(format!("berthtest.slice:berth:{}", env.id));
    for (name, (code, _, err)) in [("berth", env.run()), ("runc", env.runc_run())] {
        assert_eq!(code, 0, "{name}: {err}");
    }
    env.expect_no_state();
}

#[test]
fn pid_reuse_is_recognised_as_stopped() {
    use berth::state::{status, State, Status};
    let me = std::process::id() as i32;
    let start = berth::state::process_start_time(me).unwrap();
    let dir = Scratch::new("pid-reuse");
    let mut st = State {
        id: "x".into(),
        pid: me,
        pid_start: start,
        creator_pid: 0,
        creator_start: 0,
        bundle: "/".into(),
        rootfs: "/".into(),
        created: String::new(),
        owner: String::new(),
        cgroup_paths: vec![],
        cgroup_owned: vec![],
        config: json!({}),
        host_mounts_above: None,
        systemd_unit: None,
    };
    assert_eq!(status(&dir.0, &st, || false), Status::Running);
    // Same PID, different process (start time): the container is gone.
    st.pid_start = start + 1;
    assert_eq!(status(&dir.0, &st, || false), Status::Stopped);
}

/// Opens a pty pair for a test that needs a terminal of its own (CI has none).
fn open_pty() -> (std::fs::File, std::fs::File) {
    let pty = nix::pty::openpty(None, None).unwrap();
    (
        std::fs::File::from(pty.master),
        std::fs::File::from(pty.slave),
    )
}

#[test]
fn terminal_in_the_foreground_is_proxied() {
    let mut env = Env::new("tty-run");
    env.config["process"]["terminal"] = json!(true);
    env.config["process"]["consoleSize"] = json!({"height": 33, "width": 111});
    env.sh("[ -t 0 ] && [ -t 1 ] && echo is-a-tty; tty; readlink /dev/console >/dev/null; stat -c %t /dev/console; read line; echo got:$line; exit 5");
    env.write_config();
    let (mut master, slave) = open_pty();
    let mut cmd = std::process::Command::new(BERTH);
    cmd.arg("--root")
        .arg(&env.root)
        .args(["run", "-b"])
        .arg(&env.bundle)
        .arg(&env.id)
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    let mut child = cmd.spawn().unwrap();
    let out = read_until(&mut master, "/dev/pts/0");
    assert!(out.contains("is-a-tty"), "{out}");
    std::io::Write::write_all(&mut master, b"hello\n").unwrap();
    let out = read_until(&mut master, "got:hello");
    assert!(out.contains("got:hello"), "{out}");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(5));
    env.expect_no_state();
}

#[test]
fn terminal_through_the_console_socket() {
    use std::os::fd::AsRawFd;
    let mut env = Env::new("tty-socket");
    env.config["process"]["terminal"] = json!(true);
    env.config["process"]["consoleSize"] = json!({"height": 40, "width": 120});
    env.sh("stty size; tty; sleep 100");
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
    let out = read_until(&mut master, "/dev/pts/0");
    assert!(out.contains("40 120"), "{out}");
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
    // A terminal without a console socket cannot be detached.
    let out = env.berth(&["create", "-b", env.bundle.to_str().unwrap(), &env.id]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("console"), "{}", stderr_of(&out));
    env.expect_no_state();
}

#[test]
fn preserve_fds_passes_exactly_those() {
    use std::os::unix::process::CommandExt;
    let mut env = Env::new("preserve-fds");
    env.sh(
        "read line <&3; echo got:$line; echo to-four >&4; readlink /proc/self/fd/5 || echo no-fd-5",
    );
    env.write_config();
    let input = env.scratch.0.join("in");
    std::fs::write(&input, "from-three\n").unwrap();
    let output = env.scratch.0.join("out4");
    let f3 = std::fs::File::open(&input).unwrap();
    let f4 = std::fs::File::create(&output).unwrap();
    let f5 = std::fs::File::open("/dev/null").unwrap();
    use std::os::fd::AsRawFd;
    let (a, b, c) = (f3.as_raw_fd(), f4.as_raw_fd(), f5.as_raw_fd());
    let mut cmd = std::process::Command::new(BERTH);
    cmd.arg("--root")
        .arg(&env.root)
        .args(["run", "--preserve-fds", "2", "-b"])
        .arg(&env.bundle)
        .arg(&env.id);
    // SAFETY: only dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Lift the sources out of the way first: one of them may sit on
            // a target number already.
            for (from, high) in [(a, 103), (b, 104), (c, 105)] {
                if libc::dup2(from, high) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (high, to) in [(103, 3), (104, 4), (105, 5)] {
                if libc::dup2(high, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(high);
            }
            Ok(())
        });
    }
    let out = output_via_files(cmd, &env.scratch.0);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    assert!(text.starts_with("got:from-three\n"), "{text}");
    // fd 5 was open in berth's caller but not asked for.
    assert_eq!(text.lines().nth(1), Some("no-fd-5"), "{text}");
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "to-four\n");
}

#[test]
fn checkpoint_is_a_clear_error() {
    let env = Env::new("checkpoint");
    let out = env.berth(&["checkpoint", "x"]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("not supported"),
        "{}",
        stderr_of(&out)
    );
}
