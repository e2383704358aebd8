//! config-linux.md "Seccomp": actions, errnoRet, argument conditions, flags,
//! and SCMP_ACT_NOTIFY with a listener, seen from inside the container.

mod common;

use common::*;
use serde_json::json;

fn profile(default: &str, syscalls: serde_json::Value) -> serde_json::Value {
    json!({"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"], "syscalls": syscalls})
}

#[test]
fn errno_with_errno_ret() {
    let mut env = Env::new("seccomp-errno");
    env.config["linux"]["seccomp"] = profile(
        "SCMP_ACT_ALLOW",
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
               {"names": ["rmdir", "no_such_syscall_in_this_kernel"], "action": "SCMP_ACT_ERRNO"}]),
    );
    env.sh("mkdir /tmp/x 2>&1; rmdir /tmp 2>&1; echo done");
    let out = env.run_ok();
    assert!(out.contains("Permission denied"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
}

#[test]
fn default_errno_ret() {
    let mut env = Env::new("seccomp-default-errno");
    // Everything the shell needs is allowed by default; mkdir is not.
    env.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    });
    env.sh("mkdir /tmp/d 2>&1; echo rc=$?");
    let out = env.run_ok();
    assert!(
        out.contains("not implemented") || out.contains("Function not implemented"),
        "{out}"
    );
}

#[test]
fn kill_actions() {
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
    ] {
        let mut env = Env::new(&format!(
            "seccomp-{}",
            action.to_lowercase().replace('_', "-")
        ));
        env.config["linux"]["seccomp"] = profile(
            "SCMP_ACT_ALLOW",
            json!([{"names": ["uname"], "action": action}]),
        );
        env.args(&["uname"]);
        let (code, _, _) = env.run();
        assert_eq!(code, 128 + libc::SIGSYS, "{action}");
    }
}

#[test]
fn log_and_trace() {
    let mut env = Env::new("seccomp-log");
    env.config["linux"]["seccomp"] = profile(
        "SCMP_ACT_ALLOW",
        json!([{"names": ["uname"], "action": "SCMP_ACT_LOG"}]),
    );
    env.args(&["uname", "-s"]);
    assert_eq!(env.run_ok(), "Linux\n");
    // TRACE with no tracer attached: the syscall fails with ENOSYS.
    env.config["linux"]["seccomp"] = profile(
        "SCMP_ACT_ALLOW",
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_TRACE"}]),
    );
    env.sh("mkdir /tmp/t 2>&1");
    let (_, out, _) = env.run();
    assert!(out.contains("not implemented"), "{out}");
}

#[test]
fn argument_conditions() {
    let mut env = Env::new("seccomp-args");
    env.config["root"]["readonly"] = json!(false);
    // kill(pid, SIGUSR1) is denied; other signals pass.
    // chmod to a mode without group/other bits (mode & 077 == 0) is denied.
    env.config["linux"]["seccomp"] = profile(
        "SCMP_ACT_ALLOW",
        json!([
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]},
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 63, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 2, "value": 63, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
        ]),
    );
    env.sh("kill -USR1 $$ 2>/dev/null || echo usr1-denied; kill -0 $$ && echo zero-ok; touch /tmp/a; chmod 700 /tmp/a 2>/dev/null || echo 700-denied; chmod 755 /tmp/a && echo 755-ok");
    assert_eq!(env.run_ok(), "usr1-denied\nzero-ok\n700-denied\n755-ok\n");
}

#[test]
fn loaded_both_with_and_without_no_new_privileges() {
    for nnp in [true, false] {
        let mut env = Env::new(&format!("seccomp-nnp-{nnp}"));
        env.config["process"]["noNewPrivileges"] = json!(nnp);
        env.config["linux"]["seccomp"] = profile(
            "SCMP_ACT_ALLOW",
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]),
        );
        env.sh("grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status | tr -d '\\t'; mkdir /tmp/z 2>/dev/null || echo denied");
        let out = env.run_ok();
        assert!(out.contains("Seccomp:2"), "{out}");
        assert!(
            out.contains(&format!("NoNewPrivs:{}", u8::from(nnp))),
            "{out}"
        );
        assert!(out.contains("denied"), "{out}");
    }
}

#[test]
fn exec_gets_the_containers_filter() {
    let mut env = Env::new("seccomp-exec");
    env.config["linux"]["seccomp"] = profile(
        "SCMP_ACT_ALLOW",
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]),
    );
    env.sh("sleep 100");
    env.create_ok();
    assert!(env.berth(&["start", &env.id]).status.success());
    let out = env.berth(&[
        "exec",
        &env.id,
        "sh",
        "-c",
        "mkdir /tmp/e 2>/dev/null || echo denied",
    ]);
    assert_eq!(stdout_of(&out), "denied\n", "{}", stderr_of(&out));
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

#[test]
fn bad_profiles_are_refused() {
    let mut env = Env::new("seccomp-bad");
    env.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_SOMETIMES"});
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(err.contains("linux.seccomp"), "{err}");
    env.expect_no_state();
}

#[test]
fn notify_sends_the_listener_to_the_agent() {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut env = Env::new("seccomp-notify");
    let sock = env.scratch.0.join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mut p = profile(
        "SCMP_ACT_ALLOW",
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]),
    );
    p["listenerPath"] = json!(sock);
    p["listenerMetadata"] = json!("meta-data");
    env.config["linux"]["seccomp"] = p;
    env.sh("mkdir /tmp/n 2>/dev/null; echo rc=$?");
    env.write_config();
    // The agent: take the fd, answer every notification with EPERM.
    let agent = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 8192];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        let mut fd = -1;
        for c in msg.cmsgs().unwrap() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                fd = fds[0];
            }
        }
        let n = msg.bytes;
        let doc = String::from_utf8_lossy(&buf[..n]).into_owned();
        let req = libseccomp::ScmpNotifReq::receive(fd).unwrap();
        libseccomp::ScmpNotifResp::new(req.id, 0, -libc::EPERM, 0)
            .respond(fd)
            .unwrap();
        // SAFETY: our fd.
        drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        doc
    });
    let (code, out, err) = env.run();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rc=1"), "{out}");
    let doc = agent.join().unwrap();
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["fds"], json!(["seccompFd"]));
    assert_eq!(v["metadata"], "meta-data");
    assert_eq!(v["state"]["id"], env.id.as_str());
    assert!(
        v["pid"].as_i64().unwrap_or(0) > 1,
        "the host PID of the init: {v}"
    );
    assert_eq!(v["pid"], v["state"]["pid"]);
}

/// The probe example, and the host's libraries it links, bound into `env`.
fn with_probe(env: &mut Env) -> &'static str {
    let probe = std::path::Path::new(BERTH)
        .parent()
        .unwrap()
        .join("examples/syscall_probe");
    assert!(
        probe.exists(),
        "cargo test builds examples: {}",
        probe.display()
    );
    let mounts = env.config["mounts"].as_array_mut().unwrap();
    for lib in ["/lib", "/lib64", "/usr/lib"] {
        if std::path::Path::new(lib).exists() {
            mounts.push(json!({"destination": lib, "type": "bind", "source": lib, "options": ["rbind", "ro"]}));
        }
    }
    mounts.push(json!({"destination": "/probe", "type": "bind", "source": probe, "options": ["bind", "ro"]}));
    "/probe"
}

/// Syscall numbers and names of this machine (x86_64).
fn syscall_table() -> Vec<(String, u32)> {
    let text = std::fs::read_to_string("/usr/include/x86_64-linux-gnu/asm/unistd_64.h").unwrap();
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("#define __NR_")?;
            let mut it = rest.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn syscalls_newer_than_the_profile_get_enosys() {
    let mut env = Env::new("seccomp-enosys");
    let probe = with_probe(&mut env);
    // A profile from before clone3 (435): everything up to rseq (334)
    // allowed but getcpu (309), the rest refused with defaultErrnoRet.
    let names: Vec<String> = syscall_table()
        .into_iter()
        .filter(|(n, nr)| *nr <= 334 && n != "getcpu")
        .map(|(n, _)| n)
        .collect();
    env.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 13,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
    });
    env.config["process"]["args"] = json!(["/bin/sh", "-c", format!("{probe} 435; {probe} 309")]);
    let out = env.run_ok();
    // clone3 is newer: ENOSYS (38), so libc falls back; getcpu is known
    // and not allowed: defaultErrnoRet (EACCES).
    assert_eq!(out, "38\n13\n");
}
