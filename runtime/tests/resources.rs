//! config-linux.md "Control groups" resources, read back from the host's
//! cgroup files (v1 on this host; the v2 conversions are unit-tested and
//! the v2 mechanisms run on the real cgroup2 mount in cgroups.rs).

mod common;

use std::path::Path;

use common::*;
use serde_json::json;

fn read(env: &Env, controller: &str, file: &str) -> String {
    std::fs::read_to_string(env.cgroup_dir(controller).join(file))
        .unwrap_or_else(|e| panic!("{controller}/{file}: {e}"))
        .trim()
        .to_string()
}

/// A created container (its cgroup exists and is configured).
fn created(name: &str, resources: serde_json::Value) -> Env {
    let mut env = Env::new(name);
    env.config["linux"]["resources"] = resources;
    env.sh("sleep 100");
    env.create_ok();
    env
}

fn mounted(hierarchy: &str) -> bool {
    Path::new("/sys/fs/cgroup")
        .join(hierarchy)
        .join("cgroup.procs")
        .exists()
}

#[test]
fn memory() {
    let env = created(
        "res-memory",
        json!({"memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728, "swappiness": 30, "disableOOMKiller": true, "kernel": 1048576}}),
    );
    assert_eq!(read(&env, "memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(
        read(&env, "memory", "memory.soft_limit_in_bytes"),
        "33554432"
    );
    assert_eq!(
        read(&env, "memory", "memory.memsw.limit_in_bytes"),
        "134217728"
    );
    assert_eq!(read(&env, "memory", "memory.swappiness"), "30");
    assert!(read(&env, "memory", "memory.oom_control").contains("oom_kill_disable 1"));
    assert!(env.berth(&["delete", &env.id]).status.success());
}

#[test]
fn cpu_and_cpuset() {
    let env = created(
        "res-cpu",
        json!({"cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000, "realtimePeriod": 1000000, "realtimeRuntime": 10000, "cpus": "0", "mems": "0"}}),
    );
    assert_eq!(read(&env, "cpu", "cpu.shares"), "512");
    assert_eq!(read(&env, "cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(&env, "cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(read(&env, "cpu", "cpu.cfs_burst_us"), "1000");
    assert_eq!(read(&env, "cpu", "cpu.rt_runtime_us"), "10000");
    assert_eq!(read(&env, "cpuset", "cpuset.cpus"), "0");
    assert_eq!(read(&env, "cpuset", "cpuset.mems"), "0");
    assert!(env.berth(&["delete", &env.id]).status.success());
}

#[test]
fn pids_limit_holds_inside() {
    let mut env = Env::new("res-pids");
    env.config["linux"]["resources"] = json!({"pids": {"limit": 8}});
    env.sh("cat /sys/fs/cgroup/pids/pids.max; sh -c 'for i in $(seq 20); do sleep 1 & done' 2>/dev/null; sleep 2; true");
    env.write_config();
    let out = env.berth(&["run", "--keep", "-b", env.bundle.to_str().unwrap(), &env.id]);
    assert_eq!(stdout_of(&out), "8\n", "{}", stderr_of(&out));
    // The kernel refused forks past the limit.
    let events = read(&env, "pids", "pids.events");
    let refused: u64 = events.trim_start_matches("max ").parse().unwrap();
    assert!(refused > 0, "pids.events: {events}");
    assert!(env.berth(&["delete", &env.id]).status.success());
    env.expect_no_state();
}

#[test]
fn block_io_throttles_on_the_real_disk() {
    let env = created(
        "res-blkio",
        json!({"blockIO": {
            "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}],
            "throttleWriteBpsDevice": [{"major": 254, "minor": 0, "rate": 2097152}],
            "throttleReadIOPSDevice": [{"major": 254, "minor": 0, "rate": 100}],
            "throttleWriteIOPSDevice": [{"major": 254, "minor": 0, "rate": 200}]
        }}),
    );
    assert_eq!(
        read(&env, "blkio", "blkio.throttle.read_bps_device"),
        "254:0 1048576"
    );
    assert_eq!(
        read(&env, "blkio", "blkio.throttle.write_bps_device"),
        "254:0 2097152"
    );
    assert_eq!(
        read(&env, "blkio", "blkio.throttle.read_iops_device"),
        "254:0 100"
    );
    assert_eq!(
        read(&env, "blkio", "blkio.throttle.write_iops_device"),
        "254:0 200"
    );
    assert!(env.berth(&["delete", &env.id]).status.success());
}

/// The weight goes to blkio.weight, or to BFQ's blkio.bfq.weight where
/// CFQ's files are gone (this host's kernel), as runc writes it.
#[test]
fn block_io_weight_goes_where_the_kernel_has_it() {
    let mut env = Env::new("res-blkio-weight");
    env.config["linux"]["resources"] = json!({"blockIO": {"weight": 500}});
    env.sh("true");
    for (name, (code, _, err)) in [("berth", env.run()), ("runc", env.runc_run())] {
        assert_eq!(code, 0, "{name}: {err}");
    }
    env.sh("sleep 100");
    env.create_ok();
    let dir = env.cgroup_dir("blkio");
    let file = ["blkio.weight", "blkio.bfq.weight"]
        .into_iter()
        .find(|f| dir.join(f).exists())
        .expect("a weight file");
    let w = std::fs::read_to_string(dir.join(file)).unwrap();
    assert!(w.split_whitespace().any(|v| v == "500"), "{file}: {w}");
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

#[test]
fn hugepage_limits() {
    if !mounted("hugetlb") {
        eprintln!("skipped: no v1 hugetlb hierarchy (hack/cgroup-setup makes one)");
        return;
    }
    let env = created(
        "res-hugetlb",
        json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}),
    );
    assert_eq!(
        read(&env, "hugetlb", "hugetlb.2MB.limit_in_bytes"),
        "4194304"
    );
    assert!(env.berth(&["delete", &env.id]).status.success());
}

#[test]
fn network_class_and_priorities() {
    if !mounted("net_cls,net_prio") {
        eprintln!("skipped: net_cls/net_prio not mounted (hack/cgroup-setup mounts them)");
        return;
    }
    let env = created(
        "res-net",
        json!({"network": {"classID": 1048577, "priorities": [{"name": "lo", "priority": 7}]}}),
    );
    assert_eq!(read(&env, "net_cls,net_prio", "net_cls.classid"), "1048577");
    assert!(read(&env, "net_cls,net_prio", "net_prio.ifpriomap")
        .lines()
        .any(|l| l == "lo 7"));
    assert!(env.berth(&["delete", &env.id]).status.success());
}

#[test]
fn update_with_flags_and_json_on_stdin() {
    let env = created(
        "res-update",
        json!({"memory": {"limit": 67108864}, "pids": {"limit": 100}}),
    );
    assert!(env.berth(&["start", &env.id]).status.success());
    let out = env.berth(&[
        "update",
        "--memory",
        "32m",
        "--pids-limit",
        "50",
        "--cpu-share",
        "256",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "100000",
        &env.id,
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(read(&env, "memory", "memory.limit_in_bytes"), "33554432");
    assert_eq!(read(&env, "pids", "pids.max"), "50");
    assert_eq!(read(&env, "cpu", "cpu.shares"), "256");
    assert_eq!(read(&env, "cpu", "cpu.cfs_quota_us"), "20000");
    // dockerd's form: `update --resources -` with LinuxResources on stdin.
    let mut cmd = std::process::Command::new(BERTH);
    cmd.arg("--root")
        .arg(&env.root)
        .args(["update", "--resources", "-", &env.id]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        br#"{"memory": {"limit": 16777216, "swap": 33554432}, "pids": {"limit": 42}}"#,
    )
    .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(read(&env, "memory", "memory.limit_in_bytes"), "16777216");
    assert_eq!(
        read(&env, "memory", "memory.memsw.limit_in_bytes"),
        "33554432"
    );
    assert_eq!(read(&env, "pids", "pids.max"), "42");
    // The stored config follows.
    let stored = std::fs::read_to_string(env.root.join(&env.id).join("state.json")).unwrap();
    assert!(stored.contains("\"limit\":42"), "{stored}");
    let out = env.berth(&["update", "--memory", "lots", &env.id]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("--memory"), "{}", stderr_of(&out));
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

#[test]
fn ps_and_events_stats() {
    let env = created("res-ps-events", json!({"pids": {"limit": 64}}));
    assert!(env.berth(&["start", &env.id]).status.success());
    let pid = env.state()["pid"].as_i64().unwrap();
    // The shell execs sleep: wait until it has.
    assert!(wait_until(15, || std::fs::read_to_string(format!(
        "/proc/{pid}/comm"
    ))
    .is_ok_and(|c| c.trim() == "sleep")));
    let out = env.berth(&["ps", "--format", "json", &env.id]);
    let pids: Vec<i64> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pids, vec![pid]);
    let out = env.berth(&["ps", &env.id, "-o", "pid,comm"]);
    let text = stdout_of(&out);
    assert!(
        text.starts_with("PID") || text.trim_start().starts_with("PID"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim().starts_with(&pid.to_string()) && l.contains("sleep")),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2, "{text}");
    let out = env.berth(&["events", "--stats", &env.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], env.id.as_str());
    assert_eq!(ev["data"]["pids"]["current"], 1);
    assert_eq!(ev["data"]["pids"]["limit"], 64);
    assert!(ev["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0);
    assert!(ev["data"]["cpu"]["usage"]["total"].as_u64().is_some());
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}

#[test]
fn events_report_oom() {
    let mut env = Env::new("res-oom");
    env.config["linux"]["resources"] = json!({"memory": {"limit": 20971520, "swap": 20971520}});
    // Grow a shell variable until the OOM killer acts, a few times.
    env.sh(
        "sleep 0.5; for i in 1 2 3; do sh -c 'x=a; while true; do x=$x$x; done' ; done; sleep 1",
    );
    env.create_ok();
    let mut cmd = std::process::Command::new(BERTH);
    cmd.arg("--root")
        .arg(&env.root)
        .args(["events", "--interval", "10s", &env.id]);
    let events_out = env.scratch.0.join("events.out");
    cmd.stdout(std::fs::File::create(&events_out).unwrap())
        .stderr(std::process::Stdio::null());
    let mut events = cmd.spawn().unwrap();
    // events prints its first stats once it has read the starting OOM
    // count; OOMs before that would not count as new.
    assert!(wait_until(15, || std::fs::read_to_string(&events_out)
        .unwrap_or_default()
        .contains("\"type\":\"stats\"")));
    assert!(env.berth(&["start", &env.id]).status.success());
    // events ends by itself when the container stops.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while events.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = events.kill();
    let _ = events.wait();
    let text = std::fs::read_to_string(&events_out).unwrap();
    assert!(
        text.lines().any(|l| l.contains("\"type\":\"oom\"")),
        "{text}"
    );
    assert!(
        text.lines()
            .next()
            .unwrap_or("")
            .contains("\"type\":\"stats\""),
        "{text}"
    );
    assert!(env.berth(&["delete", "-f", &env.id]).status.success());
}
