//! The systemd cgroup driver (`--systemd-cgroup`) against a real systemd:
//! transient scopes with the init in them, their properties, slices nested
//! as the kubelet names them, update, delete and a SIGKILLed init. These
//! run in the VM lane (`hack/vm test`); without systemd as PID 1 berth must
//! say so in one line, which is what the host lane checks.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;

fn systemd() -> bool {
    berth::cgroups::systemd::is_running()
}

/// `systemctl show UNIT -p NAME --value`.
fn show(unit: &str, property: &str) -> String {
    let out = Command::new("systemctl")
        .args(["show", unit, "-p", property, "--value"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn systemd_env(name: &str, cgroups_path: &str) -> Env {
    let mut env = Env::new(name);
    env.config["linux"]["cgroupsPath"] = json!(cgroups_path);
    env
}

fn berth_sd(env: &Env, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--systemd-cgroup"];
    all.extend_from_slice(args);
    env.berth(&all)
}

fn cgroup_dir(rel: &str) -> PathBuf {
    let layout = berth::cgroups::Layout::detect().unwrap();
    if layout.is_pure_v2() {
        Path::new("/sys/fs/cgroup").join(rel)
    } else {
        Path::new("/sys/fs/cgroup/pids").join(rel)
    }
}

#[test]
fn without_systemd_the_error_says_so() {
    if systemd() {
        return;
    }
    let mut env = systemd_env("sd-none", "system.slice:berth-test:x");
    env.args(&["true"]);
    env.write_config();
    let out = berth_sd(&env, &["run", "-b", env.bundle.to_str().unwrap(), &env.id]);
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(err.contains("systemd is not running on this host"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    env.expect_no_state();
}

#[test]
fn a_scope_holds_the_container() {
    if !systemd() {
        eprintln!("skipped: systemd is not PID 1 here (runs in hack/vm)");
        return;
    }
    let mut env = systemd_env("sd-scope", "");
    env.config["linux"]["cgroupsPath"] =
        json!(format!("system.slice:berthtest:{}", std::process::id()));
    // A hybrid host whose kernel has no v1 memory controller (Debian's
    // since 6.11) offers it only on the cgroup2 side, where it is not
    // enabled: a memory limit is refused there, by runc too.
    let layout = berth::cgroups::Layout::detect().unwrap();
    let memory = layout.is_pure_v2()
        || layout
            .hierarchies
            .iter()
            .any(|h| !h.is_v2() && h.has("memory"));
    env.config["linux"]["resources"] = json!({
        "cpu": {"shares": 2048, "quota": 50000, "period": 100000},
        "pids": {"limit": 64}
    });
    if memory {
        env.config["linux"]["resources"]["memory"] = json!({"limit": 67108864});
    }
    env.sh("sleep 100");
    env.write_config();
    let unit = format!("berthtest-{}.scope", std::process::id());
    let out = berth_sd(
        &env,
        &["create", "-b", env.bundle.to_str().unwrap(), &env.id],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(show(&unit, "ActiveState"), "active");
    assert_eq!(show(&unit, "Delegate"), "yes");
    if memory {
        assert_eq!(show(&unit, "MemoryMax"), "67108864");
    }
    assert_eq!(show(&unit, "TasksMax"), "64");
    assert_eq!(show(&unit, "CPUQuotaPerSecUSec"), "500ms");
    let pid = env.state()["pid"].as_i64().unwrap();
    let dir = cgroup_dir(&format!("system.slice/{unit}"));
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), pid.to_string());
    if dir.join("memory.max").exists() {
        assert_eq!(
            std::fs::read_to_string(dir.join("memory.max")).unwrap(),
            "67108864\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.max")).unwrap(),
            "50000 100000\n"
        );
    }
    assert!(berth_sd(&env, &["start", &env.id]).status.success());
    // update changes the unit's properties and the files.
    let update: &[&str] = if memory {
        &["update", "--memory", "128m", "--pids-limit", "99", &env.id]
    } else {
        &["update", "--pids-limit", "99", &env.id]
    };
    let out = berth_sd(&env, update);
    assert!(out.status.success(), "{}", stderr_of(&out));
    if memory {
        assert_eq!(show(&unit, "MemoryMax"), "134217728");
    }
    assert_eq!(show(&unit, "TasksMax"), "99");
    // pause, ps, kill --all work on the unit's cgroup.
    assert!(berth_sd(&env, &["pause", &env.id]).status.success());
    assert_eq!(env.status(), "paused");
    assert!(berth_sd(&env, &["resume", &env.id]).status.success());
    let ps = berth_sd(&env, &["ps", "--format", "json", &env.id]);
    assert_eq!(stdout_of(&ps).trim(), format!("[{pid}]"));
    let out = berth_sd(&env, &["delete", "-f", &env.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        wait_until(15, || show(&unit, "LoadState") == "not-found"),
        "{unit}: {}",
        show(&unit, "ActiveState")
    );
    assert!(!dir.exists());
    env.expect_no_state();
}

/// The kubelet's layout: pod slices nested by their dashes, made by
/// systemd when the first container's scope asks for them.
#[test]
fn kubelet_style_slices_nest() {
    if !systemd() {
        eprintln!("skipped: systemd is not PID 1 here (runs in hack/vm)");
        return;
    }
    let n = std::process::id();
    let slice = format!("berthpods-burstable-pod{n}.slice");
    let mut env = systemd_env("sd-pods", &format!("{slice}:cri-containerd:c{n}"));
    env.sh("sleep 100");
    env.write_config();
    let out = berth_sd(
        &env,
        &["run", "-d", "-b", env.bundle.to_str().unwrap(), &env.id],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let dir = cgroup_dir(&format!(
        "berthpods.slice/berthpods-burstable.slice/{slice}/cri-containerd-c{n}.scope"
    ));
    assert!(dir.is_dir(), "{}", dir.display());
    assert_eq!(show(&slice, "ActiveState"), "active");
    // A SIGKILLed init: the scope still goes with delete.
    let pid = env.state()["pid"].as_i64().unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(wait_until(15, || env.status() == "stopped"));
    assert!(berth_sd(&env, &["delete", &env.id]).status.success());
    let unit = format!("cri-containerd-c{n}.scope");
    assert!(wait_until(15, || show(&unit, "LoadState") == "not-found"));
    assert!(!dir.exists());
    let _ = Command::new("systemctl")
        .args(["stop", "berthpods.slice"])
        .status();
    env.expect_no_state();
}

/// `run` (create, start, wait, delete) leaves no unit behind, and a failed
/// create stops the unit it started.
#[test]
fn run_and_failed_create_leave_no_unit() {
    if !systemd() {
        eprintln!("skipped: systemd is not PID 1 here (runs in hack/vm)");
        return;
    }
    let n = std::process::id();
    let mut env = systemd_env("sd-run", &format!("system.slice:berthrun:{n}"));
    env.sh("cat /proc/self/cgroup");
    env.write_config();
    let out = berth_sd(&env, &["run", "-b", env.bundle.to_str().unwrap(), &env.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    eprintln!("run: {}", stderr_of(&out));
    assert!(
        stdout_of(&out).contains(&format!("/system.slice/berthrun-{n}.scope")),
        "{}",
        stdout_of(&out)
    );
    let unit = format!("berthrun-{n}.scope");
    assert!(wait_until(15, || show(&unit, "LoadState") == "not-found"));
    env.args(&["/no/such/program"]);
    env.write_config();
    let out = berth_sd(
        &env,
        &["create", "-b", env.bundle.to_str().unwrap(), &env.id],
    );
    assert!(!out.status.success());
    // Shown when what follows fails: how the create failed.
    eprintln!("create: {}", stderr_of(&out));
    assert!(wait_until(15, || show(&unit, "LoadState") == "not-found"));
    env.expect_no_state();
}
