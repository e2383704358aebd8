//! berth on a pure cgroup v2 host, for real: every `linux.resources` field
//! written, read back from the container's cgroup on the host side, and
//! where it has an effect, the effect shown from inside. These run in the
//! VM lane (`hack/vm test`: a Debian 13 guest, systemd, cgroup v2); on a
//! host without a pure cgroup v2 hierarchy each test says so and returns.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;

/// Whether /sys/fs/cgroup is a pure cgroup2 mount (else the test skips).
fn pure_v2() -> bool {
    let layout = berth::cgroups::Layout::detect().unwrap();
    if !layout.is_pure_v2() {
        eprintln!("skipped: not a pure cgroup v2 host (runs in hack/vm)");
        return false;
    }
    true
}

/// The container's cgroup directory on a v2 host.
fn dir_of(env: &Env) -> PathBuf {
    Path::new("/sys/fs/cgroup").join(format!("berth-test-{}", env.id))
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

/// Creates the container with `resources` running `script`.
fn created(name: &str, resources: serde_json::Value, script: &str) -> Env {
    let mut env = Env::new(name);
    env.config["linux"]["resources"] = resources;
    env.sh(script);
    env.create_ok();
    env
}

fn gone(env: &Env) {
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
    assert!(!dir_of(env).exists(), "cgroup left behind");
    env.expect_no_state();
}

#[test]
fn memory_files_and_the_oom_killer() {
    if !pure_v2() {
        return;
    }
    let env = created(
        "v2-memory",
        json!({"memory": {"limit": 33554432, "reservation": 16777216, "swap": 33554432}}),
        "sleep 100",
    );
    let d = dir_of(&env);
    assert_eq!(read(&d, "memory.max"), "33554432");
    assert_eq!(read(&d, "memory.low"), "16777216");
    // v1's swap is memory+swap: equal to the limit means no swap.
    assert_eq!(read(&d, "memory.swap.max"), "0");
    let out = env.berth(&["update", "--memory", "64m", "--memory-swap", "64m", &env.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(read(&d, "memory.max"), "67108864");
    gone(&env);

    // A hog over the limit is killed, memory.events counts it and `events`
    // reports it.
    let mut env = Env::new("v2-oom");
    env.config["linux"]["resources"] = json!({"memory": {"limit": 16777216, "swap": 16777216}});
    env.sh("sleep 1; head -c 64m /dev/zero | tail > /dev/null; sleep 100");
    env.create_ok();
    let events = std::process::Command::new(BERTH)
        .arg("--root")
        .arg(&env.root)
        .args(["events", &env.id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(env.berth(&["start", &env.id]).status.success());
    let d = dir_of(&env);
    assert!(
        wait_until(30, || read(&d, "memory.events").contains("oom_kill 1")),
        "{}",
        read(&d, "memory.events")
    );
    assert!(env.berth(&["kill", &env.id, "KILL"]).status.success());
    let out = events.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("{\"type\":\"oom\""), "{text}");
    gone(&env);
}

#[test]
fn memory_high_through_unified() {
    if !pure_v2() {
        return;
    }
    let env = created(
        "v2-unified",
        json!({"unified": {"memory.high": "50331648", "pids.max": "42"}}),
        "sleep 100",
    );
    let d = dir_of(&env);
    assert_eq!(read(&d, "memory.high"), "50331648");
    assert_eq!(read(&d, "pids.max"), "42");
    gone(&env);
}

#[test]
fn cpu_files() {
    if !pure_v2() {
        return;
    }
    let env = created(
        "v2-cpu",
        json!({"cpu": {"shares": 2048, "quota": 50000, "period": 100000, "burst": 10000, "idle": 0, "cpus": "0", "mems": "0"}}),
        "sleep 100",
    );
    let d = dir_of(&env);
    assert_eq!(read(&d, "cpu.weight"), "79");
    assert_eq!(read(&d, "cpu.max"), "50000 100000");
    assert_eq!(read(&d, "cpu.max.burst"), "10000");
    assert_eq!(read(&d, "cpu.idle"), "0");
    assert_eq!(read(&d, "cpuset.cpus"), "0");
    assert_eq!(read(&d, "cpuset.mems"), "0");
    let out = env.berth(&[
        "update",
        "--cpu-quota",
        "20000",
        "--cpu-share",
        "512",
        &env.id,
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(read(&d, "cpu.max"), "20000 100000");
    assert_eq!(read(&d, "cpu.weight"), "20");
    gone(&env);
}

/// The guest's virtio disk (its major:minor from /sys).
fn root_disk() -> Option<String> {
    let dev = std::fs::read_to_string("/sys/block/vda/dev").ok()?;
    Some(dev.trim().to_string())
}

#[test]
fn io_files_on_the_virtio_disk() {
    if !pure_v2() {
        return;
    }
    let Some(disk) = root_disk() else {
        eprintln!("skipped: no /dev/vda");
        return;
    };
    let (major, minor) = disk.split_once(':').unwrap();
    let (major, minor): (i64, i64) = (major.parse().unwrap(), minor.parse().unwrap());
    let env = created(
        "v2-io",
        json!({"blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}], "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 100}]}}),
        "sleep 100",
    );
    let d = dir_of(&env);
    let max = read(&d, "io.max");
    assert!(max.contains(&format!("{disk} rbps=1048576")), "{max}");
    assert!(max.contains("wiops=100"), "{max}");
    // BFQ's weight when the disk's scheduler is BFQ, else io.weight.
    if d.join("io.bfq.weight").exists() {
        assert!(read(&d, "io.bfq.weight").contains("500"));
    } else {
        assert_eq!(read(&d, "io.weight"), "default 4950");
    }
    gone(&env);
}

#[test]
fn pids_limit_stops_forks() {
    if !pure_v2() {
        return;
    }
    let mut env = Env::new("v2-pids");
    env.config["linux"]["resources"] = json!({"pids": {"limit": 5}});
    // The shell gives up at the first fork the limit refuses.
    env.sh("for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait; echo all-forked");
    env.write_config();
    let (_, out, err) = env.run();
    assert!(!out.contains("all-forked"), "{out}");
    assert!(err.contains("fork"), "{err}");
    let env = created("v2-pids-file", json!({"pids": {"limit": 5}}), "sleep 100");
    assert_eq!(read(&dir_of(&env), "pids.max"), "5");
    let out = env.berth(&["update", "--pids-limit", "9", &env.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(read(&dir_of(&env), "pids.max"), "9");
    gone(&env);
}

#[test]
fn hugetlb_rdma_and_misc() {
    if !pure_v2() {
        return;
    }
    let env = created(
        "v2-hugetlb",
        json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}),
        "sleep 100",
    );
    let d = dir_of(&env);
    assert_eq!(read(&d, "hugetlb.2MB.max"), "4194304");
    if d.join("hugetlb.2MB.rsvd.max").exists() {
        // runc writes the reservation limit with the same value.
        assert_eq!(read(&d, "hugetlb.2MB.rsvd.max"), "4194304");
    }
    gone(&env);
    let controllers = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap();
    // misc limits a resource the machine has (misc.capacity lists them).
    let capacity = std::fs::read_to_string("/sys/fs/cgroup/misc.capacity").unwrap_or_default();
    if let Some(resource) = capacity.split_whitespace().next() {
        let limit = format!("{resource} 0");
        let env = created(
            "v2-misc",
            json!({"unified": {"misc.max": limit}}),
            "sleep 100",
        );
        assert!(read(&dir_of(&env), "misc.max").contains(&limit));
        gone(&env);
    } else {
        eprintln!("misc: this machine has no misc resource (misc.capacity is empty)");
    }
    // rdma.max names a device: only where the machine has one.
    let rdma_device = std::fs::read_dir("/sys/class/infiniband")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned());
    match rdma_device {
        Some(dev) if controllers.split_whitespace().any(|c| c == "rdma") => {
            let env = created(
                "v2-rdma",
                json!({"rdma": {dev.clone(): {"hcaHandles": 2}}}),
                "sleep 100",
            );
            assert!(read(&dir_of(&env), "rdma.max").contains(&format!("{dev} hca_handle=2")));
            gone(&env);
        }
        _ => eprintln!("rdma: this machine has no RDMA device"),
    }
}

#[test]
fn freeze_kill_ps_events_and_devices() {
    if !pure_v2() {
        return;
    }
    let mut env = Env::new("v2-lifecycle");
    env.config["linux"]["devices"] = json!([{"path": "/dev/loop-control", "type": "c", "major": 10, "minor": 237, "fileMode": 0o600}]);
    env.sh("{ (exec 3</dev/loop-control) 2>/dev/null && echo opened || echo denied; } > /tmp/devices; sleep 100 & sleep 100");
    env.config["root"]["readonly"] = json!(false);
    env.create_ok();
    assert!(env.berth(&["start", &env.id]).status.success());
    let d = dir_of(&env);
    assert!(wait_until(15, || read(&d, "cgroup.procs").lines().count() == 2));
    assert!(env.berth(&["pause", &env.id]).status.success());
    assert_eq!(read(&d, "cgroup.freeze"), "1");
    assert!(read(&d, "cgroup.events").contains("frozen 1"));
    assert_eq!(env.status(), "paused");
    assert!(env.berth(&["resume", &env.id]).status.success());
    assert_eq!(read(&d, "cgroup.freeze"), "0");
    let ps = env.berth(&["ps", "--format", "json", &env.id]);
    let pids: Vec<i64> = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(pids.len(), 2);
    let ev = env.berth(&["events", "--stats", &env.id]);
    let v: serde_json::Value = serde_json::from_slice(&ev.stdout).unwrap();
    assert!(
        v["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert_eq!(v["data"]["pids"]["current"], 2);
    let devices =
        std::fs::read_to_string(env.bundle.join("rootfs/tmp/devices")).unwrap_or_default();
    assert_eq!(devices, "denied\n");
    assert!(env
        .berth(&["kill", "--all", &env.id, "KILL"])
        .status
        .success());
    assert!(wait_until(15, || env.status() == "stopped"));
    gone(&env);
}

#[test]
fn cgroup_namespace_and_sys_fs_cgroup_inside() {
    if !pure_v2() {
        return;
    }
    for ro in [true, false] {
        let mut env = Env::new("v2-cgroupns");
        env.config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "cgroup"}));
        let options = if ro {
            json!(["nosuid", "noexec", "nodev", "relatime", "ro"])
        } else {
            json!(["nosuid", "noexec", "nodev", "relatime", "rw"])
        };
        set_cgroup_mount(&mut env, options);
        env.sh("cat /proc/self/cgroup; test -f /sys/fs/cgroup/cgroup.procs && echo v2; mkdir /sys/fs/cgroup/sub 2>/dev/null && echo writable || echo read-only");
        let out = env.run_ok();
        let want = if ro {
            "0::/\nv2\nread-only\n"
        } else {
            "0::/\nv2\nwritable\n"
        };
        assert_eq!(out, want, "ro={ro}");
        env.expect_no_state();
    }
}

/// The spec's /sys/fs/cgroup mount, with these options.
fn set_cgroup_mount(env: &mut Env, options: serde_json::Value) {
    let mounts = env.config["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
    mounts.push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": options}));
}

/// berth run inside a berth container whose cgroup is delegated to it.
#[test]
fn nested_runtime_with_a_delegated_cgroup() {
    if !pure_v2() {
        return;
    }
    let mut env = Env::new("v2-nested");
    // The inner berth, its bundle and busybox, visible inside.
    let inner = env.bundle.join("rootfs/inner");
    busybox_rootfs(&inner.join("rootfs"));
    let mut config = berth::commands::spec::default_spec(false);
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["sh", "-c", "cat /proc/self/cgroup"]);
    config["linux"]["cgroupsPath"] = json!("/inner");
    std::fs::write(inner.join("config.json"), config.to_string()).unwrap();
    copy_with_libraries(Path::new(BERTH), &env.bundle.join("rootfs"), "/berth");
    env.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
    set_cgroup_mount(&mut env, json!(["nosuid", "noexec", "nodev", "rw"]));
    // Enough privilege to make namespaces and mounts inside, and every
    // capability the inner container asks for (a process cannot give its
    // child one it lacks).
    let caps = json!([
        "CAP_AUDIT_WRITE",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_ADMIN",
        "CAP_NET_ADMIN",
        "CAP_SYS_CHROOT",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_MKNOD",
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_KILL",
        "CAP_SYS_RESOURCE"
    ]);
    env.config["process"]["capabilities"] =
        json!({"bounding": caps, "effective": caps, "permitted": caps});
    env.config["linux"]
        .as_object_mut()
        .unwrap()
        .remove("seccomp");
    env.config["linux"]["maskedPaths"] = json!([]);
    env.config["linux"]["readonlyPaths"] = json!([]);
    env.config["root"]["readonly"] = json!(false);
    env.config["linux"]["resources"] = json!({"devices": [{"allow": true, "access": "rwm"}]});
    // The outer init moves itself into a leaf so the inner one can have
    // controllers (no processes in a cgroup that delegates them).
    env.sh(
        "mkdir /sys/fs/cgroup/outer && echo $$ > /sys/fs/cgroup/outer/cgroup.procs && \
            echo +memory +pids > /sys/fs/cgroup/cgroup.subtree_control && \
            cd /inner && /berth --root /run/inner run inner-1",
    );
    let out = env.run_ok();
    assert_eq!(out, "0::/inner\n");
    env.expect_no_state();
}

/// Copies a dynamically linked binary into `rootfs` at `at`, with the
/// shared libraries it needs at their own paths.
fn copy_with_libraries(binary: &Path, rootfs: &Path, at: &str) {
    std::fs::copy(binary, rootfs.join(at.trim_start_matches('/'))).unwrap();
    let ldd = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let lib = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        let Some(lib) = lib else { continue };
        let dest = rootfs.join(lib.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&lib, &dest).unwrap();
    }
}
