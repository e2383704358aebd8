//! config.md "process": what the container's process is, read from inside.

mod common;

use common::*;
use serde_json::json;

#[test]
fn args_env_cwd_and_home() {
    let mut env = Env::new("proc-basics");
    env.config["process"]["env"] = json!(["PATH=/bin", "BERTH_TEST_VAR=some value"]);
    env.config["process"]["cwd"] = json!("/var/lib/work");
    std::fs::create_dir_all(env.bundle.join("rootfs/var/lib/work")).unwrap();
    env.args(&[
        "sh",
        "-c",
        "echo \"$0|$1|$BERTH_TEST_VAR|$HOME|$(pwd)\"",
        "zero",
        "one two",
    ]);
    assert_eq!(
        env.run_ok(),
        "zero|one two|some value|/root|/var/lib/work\n"
    );
}

#[test]
fn missing_cwd_is_created_relative_is_refused() {
    let mut env = Env::new("proc-cwd-missing");
    // runc and crun create a missing cwd inside the root.
    env.config["root"]["readonly"] = json!(true);
    env.config["process"]["cwd"] = json!("/does/not/exist");
    env.config["process"]["args"] = json!(["pwd"]);
    assert_eq!(env.run_ok(), "/does/not/exist\n");
    env.config["process"]["cwd"] = json!("relative/dir");
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(err.contains("process.cwd"), "{err}");
    env.expect_no_state();
}

#[test]
fn user_groups_and_umask() {
    let mut env = Env::new("proc-user");
    env.config["root"]["readonly"] = json!(false);
    env.config["process"]["user"] =
        json!({"uid": 1234, "gid": 5678, "additionalGids": [5, 9999], "umask": 0o027});
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        env.bundle.join("rootfs/tmp"),
        std::fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    env.sh("id -u; id -g; id -G; umask; touch /tmp/f; stat -c '%a %u %g' /tmp/f");
    assert_eq!(
        env.run_ok(),
        "1234\n5678\n5678 5 9999\n0027\n640 1234 5678\n"
    );
}

#[test]
fn rlimits_are_set_exactly() {
    let mut env = Env::new("proc-rlimits");
    // Different from the default (1024) and from the host's.
    env.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654},
        {"type": "RLIMIT_NPROC", "soft": 777, "hard": 888},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
    ]);
    env.sh("ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu; ulimit -c");
    assert_eq!(env.run_ok(), "321\n654\n777\n888\n0\n");
}

#[test]
fn bad_rlimits_are_refused() {
    let mut env = Env::new("proc-rlimits-bad");
    env.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOSUCH", "soft": 1, "hard": 1}]);
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(err.contains("process.rlimits"), "{err}");
    env.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]);
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(
        err.contains("RlimitNofile") || err.contains("RLIMIT_NOFILE"),
        "{err}"
    );
    env.expect_no_state();
}

#[test]
fn oom_score_adj_and_no_new_privileges() {
    let mut env = Env::new("proc-oom-nnp");
    env.config["process"]["oomScoreAdj"] = json!(345);
    env.config["process"]["noNewPrivileges"] = json!(true);
    env.sh("cat /proc/self/oom_score_adj; grep NoNewPrivs /proc/self/status | tr -d '\\t '");
    assert_eq!(env.run_ok(), "345\nNoNewPrivs:1\n");
    env.config["process"]["noNewPrivileges"] = json!(false);
    env.sh("grep NoNewPrivs /proc/self/status | tr -d '\\t '");
    assert_eq!(env.run_ok(), "NoNewPrivs:0\n");
}

#[test]
fn all_five_capability_sets() {
    let mut env = Env::new("proc-caps");
    env.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SYS_TIME", "CAP_FUTURE_THING"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "effective": ["CAP_CHOWN", "CAP_KILL"],
        "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
        "ambient": ["CAP_KILL"]
    });
    env.sh("grep ^Cap /proc/self/status | tr -d '\\t'");
    let out = env.run_ok();
    // CHOWN=0, KILL=5, NET_RAW=13, SYS_TIME=25.
    let cap = |name: &str| {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split(':').nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(cap("CapBnd"), (1 << 0) | (1 << 5) | (1 << 13) | (1 << 25));
    assert_eq!(cap("CapInh"), (1 << 5) | (1 << 13));
    assert_eq!(cap("CapAmb"), 1 << 5);
    // uid 0 would gain the bounding set at execve, but noNewPrivileges (set
    // in the default config) keeps it to what was permitted before.
    assert_eq!(cap("CapPrm"), (1 << 0) | (1 << 5) | (1 << 13));
    assert_eq!(cap("CapEff"), (1 << 0) | (1 << 5) | (1 << 13));

    // As a non-root user the sets survive execve only through ambient.
    env.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let out = env.run_ok();
    let cap = |name: &str| {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split(':').nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(cap("CapAmb"), 1 << 5);
    assert_eq!(cap("CapPrm"), 1 << 5);
    assert_eq!(cap("CapEff"), 1 << 5);
    assert_eq!(cap("CapInh"), (1 << 5) | (1 << 13));
}

#[test]
fn personality_scheduler_io_priority_memory_policy() {
    let mut env = Env::new("proc-attrs");
    env.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    env.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
    env.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    env.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"});
    env.sh("uname -m; cut -d')' -f2 /proc/self/stat | awk '{print $17, $39}'; ionice; head -1 /proc/self/numa_maps | awk '{print $2}'");
    let out = env.run_ok();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with('i') && lines[0].ends_with("86"),
        "{out}"
    );
    // nice 7, policy SCHED_BATCH (3)
    assert_eq!(lines[1], "7 3", "{out}");
    assert!(lines[2].contains("idle"), "{out}");
    assert!(lines[3].starts_with("bind:0"), "{out}");
}

#[test]
fn lsm_labels_need_the_lsm() {
    let mut env = Env::new("proc-apparmor");
    env.config["process"]["apparmorProfile"] = json!("berth-test-profile");
    let (code, _, err) = env.run();
    if std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
    {
        eprintln!("AppArmor enabled: the profile does not exist, so run fails differently");
        assert_ne!(code, 0);
    } else {
        assert_ne!(code, 0);
        assert!(
            err.contains("apparmorProfile") && err.contains("not supported"),
            "{err}"
        );
    }
    env.expect_no_state();
}

#[test]
fn socket_activation_fds_are_passed_on() {
    let mut env = Env::new("proc-listen-fds");
    env.sh("echo $LISTEN_FDS $LISTEN_PID; read l <&3; echo $l");
    env.write_config();
    let input = env.scratch.0.join("sock-in");
    std::fs::write(&input, "activated\n").unwrap();
    // LISTEN_PID must name berth itself: exec from a shell that sets it.
    let script = format!(
        "exec 3<{}; LISTEN_FDS=1 LISTEN_PID=$$ exec {} --root {} run -b {} {}",
        input.display(),
        BERTH,
        env.root.display(),
        env.bundle.display(),
        env.id
    );
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", &script]);
    let out = output_via_files(cmd, &env.scratch.0);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "1 1\nactivated\n");
}

/// The program starts with SIGPIPE at its default and an empty signal
/// mask, as under runc (Rust ignores SIGPIPE, and execve would keep that;
/// other ignored signals are the caller's and pass through, as with runc).
#[test]
fn sigpipe_is_not_ignored() {
    let mut env = Env::new("proc-signals");
    env.sh("grep -E '^Sig(Ign|Blk)' /proc/self/status");
    let out = env.run_ok();
    let field = |name: &str| {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(field("SigBlk:"), 0, "{out}");
    assert_eq!(field("SigIgn:") & (1 << (libc::SIGPIPE - 1)), 0, "{out}");
}
