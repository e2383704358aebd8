//! config-linux.md "Control groups": placement in v1, v2 and this host's
//! hybrid layout, the three cgroupsPath forms, device allow-lists.

mod common;

use std::path::{Path, PathBuf};

use berth::cgroups::{Cgroup, CgroupsPath, Layout};
use common::*;
use serde_json::json;

/// The line of a /proc/PID/cgroup text for `controller` (v1), or the v2
/// line on a pure cgroup v2 host.
fn line_for<'a>(text: &'a str, controller: &str) -> &'a str {
    let key = if pure_v2() {
        "0::".to_string()
    } else {
        format!(":{controller}:")
    };
    text.lines().find(|l| l.contains(&key)).unwrap_or("")
}

fn own_cgroup(controller: &str) -> PathBuf {
    let controller = if pure_v2() { "" } else { controller };
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    for line in text.lines() {
        let mut p = line.splitn(3, ':');
        let (_, ctrls, path) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
        if (controller.is_empty() && ctrls.is_empty()) || ctrls.split(',').any(|c| c == controller)
        {
            return PathBuf::from(path.trim_start_matches('/'));
        }
    }
    panic!("no {controller} cgroup");
}

#[test]
fn absolute_path_in_every_hierarchy_and_removed_on_delete() {
    let mut env = Env::new("cg-abs");
    env.sh("sleep 100");
    env.create_ok();
    let pid = env.state()["pid"].as_i64().unwrap().to_string();
    let layout = Layout::detect().unwrap();
    for h in &layout.hierarchies {
        let name = h.mount_point.file_name().unwrap().to_str().unwrap();
        let dir = env.cgroup_dir(name);
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l == pid),
            "{} lacks the init",
            dir.display()
        );
    }
    assert!(env.berth(&["delete", &env.id]).status.success());
    for h in &layout.hierarchies {
        let name = h.mount_point.file_name().unwrap().to_str().unwrap();
        assert!(!env.cgroup_dir(name).exists());
    }
}

#[test]
fn relative_path_is_under_berths_own_cgroup() {
    let mut env = Env::new("cg-rel");
    let rel = format!("berth-rel-{}", env.id);
    env.config["linux"]["cgroupsPath"] = json!(rel);
    env.sh("cat /proc/self/cgroup");
    env.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "cgroup");
    let out = env.run_ok();
    let memory_line = line_for(&out, "memory");
    let want = Path::new("/").join(own_cgroup("memory")).join(&rel);
    assert!(
        memory_line.ends_with(want.to_str().unwrap()),
        "{memory_line} vs {}",
        want.display()
    );
    let memory = env.cgroup_dir("memory");
    let hierarchy = memory.parent().unwrap();
    assert!(!hierarchy.join(own_cgroup("memory")).join(&rel).exists());
}

#[test]
fn default_path_is_the_id_under_berths_own_cgroup() {
    let mut env = Env::new("cg-default");
    env.config["linux"]
        .as_object_mut()
        .unwrap()
        .remove("cgroupsPath");
    env.sh("cat /proc/self/cgroup");
    let out = env.run_ok();
    let pids_line = line_for(&out, "pids");
    let want = Path::new("/").join(own_cgroup("pids")).join(&env.id);
    assert!(pids_line.ends_with(want.to_str().unwrap()), "{pids_line}");
}

#[test]
fn joining_an_existing_cgroup_leaves_it_in_place() {
    let mut env = Env::new("cg-join");
    let dir = env.cgroup_dir("pids");
    std::fs::create_dir(&dir).unwrap();
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _rm = Rm(dir.clone());
    env.sh("true");
    env.run_ok();
    assert!(dir.exists(), "a cgroup berth did not make was removed");
    // The other hierarchies (v1) were made by berth, and are gone.
    if !pure_v2() {
        assert!(!env.cgroup_dir("memory").exists());
    }
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn cgroups_path_with_dotdot_is_refused() {
    let mut env = Env::new("cg-dotdot");
    env.config["linux"]["cgroupsPath"] = json!("/a/../../escape");
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(err.contains("cgroupsPath"), "{err}");
    env.expect_no_state();
}

#[test]
fn hybrid_layout_is_detected() {
    let layout = Layout::detect().unwrap();
    // This host: v1 controllers plus the empty cgroup2 at /sys/fs/cgroup/unified.
    if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        assert_eq!(
            layout.unified().unwrap().mount_point,
            Path::new("/sys/fs/cgroup/unified")
        );
        assert!(layout.v1("memory").is_some());
        assert!(!layout.is_pure_v2());
    }
}

/// The v2 device controller is an eBPF program: attach one to a cgroup on
/// the real cgroup2 mount, move a process in, and see what it may open.
#[test]
fn cgroup2_device_program_filters_opens() {
    let layout = Layout::detect().unwrap();
    let Some(unified) = layout.unified() else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    let name = format!("berth-bpf-test-{}", std::process::id());
    let cg = Cgroup::resolve(
        &Layout {
            hierarchies: vec![unified.clone()],
        },
        &CgroupsPath::Absolute(Path::new("/").join(&name)),
    )
    .unwrap();
    let dir = cg.paths[0].clone();
    std::fs::create_dir(&dir).unwrap();
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _rm = Rm(dir.clone());
    let rules = berth::devices::cgroup_rules(None);
    let target = berth::devices::Emulator::from_rules(&rules).unwrap();
    berth::cgroups::v2::apply_devices(&dir, &target.as_rules()).unwrap();
    // A shell that joins the cgroup, then tries /dev/null (allowed) and
    // /dev/loop-control (10:237, not on the list).
    let script = format!(
        "echo $$ > {}/cgroup.procs; exec 3</dev/null && echo null-ok; (true </dev/loop-control) 2>/dev/null && echo lc-open || echo lc-denied",
        dir.display()
    );
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "null-ok\nlc-denied\n");
    wait_until(15, || {
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .is_empty()
    });
}

#[test]
fn cgroup2_freeze_and_kill_on_the_real_mount() {
    let layout = Layout::detect().unwrap();
    let Some(unified) = layout.unified() else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    let dir = unified
        .mount_point
        .join(format!("berth-v2-test-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let mut child = std::process::Command::new("/bin/sleep")
        .arg("100")
        .spawn()
        .unwrap();
    std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
    berth::cgroups::v2::freeze(&dir, true).unwrap();
    assert!(berth::cgroups::v2::is_frozen(&dir));
    berth::cgroups::v2::freeze(&dir, false).unwrap();
    assert!(!berth::cgroups::v2::is_frozen(&dir));
    berth::cgroups::v2::kill(&dir).unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    wait_until(15, || std::fs::remove_dir(&dir).is_ok());
    assert!(!dir.exists());
}

#[test]
fn pause_and_resume_through_the_freezer() {
    let mut env = Env::new("cg-pause");
    env.sh("sleep 100");
    env.create_ok();
    assert!(env.berth(&["start", &env.id]).status.success());
    assert!(env.berth(&["pause", &env.id]).status.success());
    assert_eq!(env.status(), "paused");
    assert!(!env.berth(&["pause", &env.id]).status.success() || env.status() == "paused");
    assert!(env.berth(&["resume", &env.id]).status.success());
    assert_eq!(env.status(), "running");
    assert!(!env.berth(&["resume", &env.id]).status.success());
    // A paused container can be force-deleted.
    assert!(env.berth(&["pause", &env.id]).status.success());
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
    env.expect_no_state();
}
