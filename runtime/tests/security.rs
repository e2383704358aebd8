//! The attacks a runtime must refuse (CVE-2019-5736, CVE-2024-21626) and
//! the leaks it must not have.

mod common;

use common::*;
use serde_json::json;

/// While the init waits for `start` it is still berth's code: a process in
/// the container must not be able to write the binary through
/// /proc/1/exe, nor read the init's memory or environment.
#[test]
fn created_init_cannot_be_reached_from_inside() {
    let mut env = Env::new("sec-create-exe");
    env.sh("sleep 100");
    env.create_ok();
    let before = std::fs::read(BERTH).unwrap();
    let out = env.berth(&[
        "exec",
        &env.id,
        "sh",
        "-c",
        "echo pwned 2>/dev/null > /proc/1/exe && echo WROTE-EXE; cat /proc/1/environ >/dev/null 2>&1 && echo READ-ENV; head -c1 /proc/1/mem >/dev/null 2>&1 && echo READ-MEM; echo done",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "done\n");
    assert_eq!(
        std::fs::read(BERTH).unwrap(),
        before,
        "the berth binary changed"
    );
    assert!(env.berth(&["delete", &env.id]).status.success());
}

/// The same for a process `berth exec` is still setting up: freeze it
/// mid-setup (exec --ignore-paused into a paused container) and attack it
/// from a second container that shares the pid namespace.
#[test]
fn exec_process_in_setup_cannot_be_reached_from_inside() {
    let mut a = Env::new("sec-exec-exe-a");
    a.sh("sleep 100");
    a.create_ok();
    assert!(a.berth(&["start", &a.id]).status.success());
    let init = a.state()["pid"].as_i64().unwrap();
    assert!(a.berth(&["pause", &a.id]).status.success());
    let (root, id, dir) = (a.root.clone(), a.id.clone(), a.scratch.0.clone());
    let pending = std::thread::spawn(move || {
        let mut cmd = std::process::Command::new(BERTH);
        cmd.arg("--root")
            .arg(&root)
            .args(["exec", "--ignore-paused", &id, "true"]);
        output_via_files(cmd, &dir)
    });
    // The frozen exec child is a second process in a's cgroup.
    let procs = a.cgroup_dir("freezer").join("cgroup.procs");
    assert!(
        wait_until(15, || {
            std::fs::read_to_string(&procs)
                .unwrap_or_default()
                .lines()
                .count()
                >= 2
        }),
        "the exec never joined the cgroup"
    );
    let mut b = Env::new("sec-exec-exe-b");
    b.config["linux"]["namespaces"] = json!([
        {"type": "pid", "path": format!("/proc/{init}/ns/pid")},
        {"type": "mount"}
    ]);
    b.config.as_object_mut().unwrap().remove("hostname");
    b.sh("for p in $(ls /proc | grep -E '^[0-9]+$'); do \
           [ $p = 1 ] && continue; [ $p = $$ ] && continue; \
           grep -q berth /proc/$p/cmdline 2>/dev/null || continue; echo found; \
           echo pwned 2>/dev/null > /proc/$p/exe && echo WROTE-EXE; \
           cat /proc/$p/environ >/dev/null 2>&1 && echo READ-ENV; \
         done; echo done");
    let out = b.run_ok();
    assert!(
        out.contains("found"),
        "the exec child was not visible: {out}"
    );
    assert!(!out.contains("WROTE") && !out.contains("READ"), "{out}");
    assert!(a.berth(&["resume", &a.id]).status.success());
    let out = pending.join().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(a.berth(&["delete", "-f", &a.id]).status.success());
}

/// No fd of the runtime reaches the container: not in run, not in exec.
#[test]
fn no_runtime_fds_reach_the_container() {
    let mut env = Env::new("sec-fds");
    env.sh("ls /proc/self/fd | tr '\\n' ' '; sleep 100");
    env.write_config();
    let out = env.berth(&["run", "-d", "-b", env.bundle.to_str().unwrap(), &env.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = env.berth(&[
        "exec",
        &env.id,
        "sh",
        "-c",
        "ls /proc/self/fd | tr '\\n' ' '",
    ]);
    // 0, 1, 2 and ls's own directory fd (3).
    assert_eq!(stdout_of(&out), "0 1 2 3 ");
    let out = env.berth(&[
        "exec",
        &env.id,
        "sh",
        "-c",
        "ls -l /proc/1/fd | grep -c -- '->'",
    ]);
    assert_eq!(
        stdout_of(&out).trim(),
        "3",
        "the init holds more than stdio"
    );
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

/// process.cwd through /proc/self/fd/N (a leaked fd to a host directory,
/// CVE-2024-21626) is refused, for the init and for exec.
#[test]
fn cwd_through_proc_self_fd_is_refused() {
    let mut env = Env::new("sec-cwd-fd");
    for n in 3..10 {
        env.config["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        env.sh("pwd");
        let (code, out, err) = env.run();
        assert_ne!(code, 0, "cwd /proc/self/fd/{n} accepted: {out}");
        assert!(err.contains("process.cwd"), "{err}");
        env.expect_no_state();
    }
    env.config["process"]["cwd"] = json!("/");
    env.sh("sleep 100");
    env.create_ok();
    assert!(env.berth(&["start", &env.id]).status.success());
    for n in 3..10 {
        let cwd = format!("/proc/self/fd/{n}");
        let out = env.berth(&["exec", "--cwd", &cwd, &env.id, "pwd"]);
        assert!(
            !out.status.success(),
            "exec --cwd {cwd} accepted: {}",
            stdout_of(&out)
        );
    }
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

#[test]
fn unknown_capabilities_are_ignored_with_a_warning() {
    let mut env = Env::new("sec-unknown-cap");
    env.config["process"]["capabilities"]["bounding"] = json!(["CAP_KILL", "CAP_FROM_2030"]);
    env.sh("grep CapBnd /proc/self/status | tr -d '\\t'");
    let (code, out, err) = env.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "CapBnd:0000000000000020\n");
    assert!(
        err.contains("CAP_FROM_2030") && err.contains("warning"),
        "{err}"
    );
}
