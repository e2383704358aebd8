//! config-linux.md "Namespaces", "User namespace mappings", time offsets,
//! hostname, domainname, sysctl.

mod common;

use common::*;
use serde_json::json;

fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

fn set_namespaces(env: &mut Env, ns: serde_json::Value) {
    env.config["linux"]["namespaces"] = ns;
}

#[test]
fn each_new_namespace_differs_from_the_host() {
    let mut env = Env::new("ns-new");
    set_namespaces(
        &mut env,
        json!([{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}, {"type": "time"}]),
    );
    env.sh(
        "for n in pid net ipc uts mnt cgroup time; do readlink /proc/self/ns/$n; done; echo pid=$$",
    );
    let out = env.run_ok();
    let lines: Vec<&str> = out.lines().collect();
    for (i, n) in ["pid", "net", "ipc", "uts", "mnt", "cgroup", "time"]
        .iter()
        .enumerate()
    {
        assert_ne!(lines[i], host_ns(n), "{n} namespace is the host's");
    }
    assert_eq!(lines[7], "pid=1");
}

#[test]
fn without_a_namespace_the_host_one_is_shared() {
    let mut env = Env::new("ns-shared");
    set_namespaces(&mut env, json!([{"type": "mount"}]));
    env.config.as_object_mut().unwrap().remove("hostname");
    env.sh("for n in net ipc uts; do readlink /proc/self/ns/$n; done");
    let out = env.run_ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec![host_ns("net"), host_ns("ipc"), host_ns("uts")]);
}

#[test]
fn namespaces_joined_by_path() {
    let mut a = Env::new("ns-join-a");
    a.config["root"]["readonly"] = json!(false);
    a.sh("touch /tmp/marker-a; sleep 100");
    a.config["hostname"] = json!("container-a");
    a.create_ok();
    assert!(a.berth(&["start", &a.id]).status.success());
    let pid = a.state()["pid"].as_i64().unwrap();

    let mut b = Env::new("ns-join-b");
    b.config.as_object_mut().unwrap().remove("hostname");
    set_namespaces(
        &mut b,
        json!([
            {"type": "pid", "path": format!("/proc/{pid}/ns/pid")},
            {"type": "network", "path": format!("/proc/{pid}/ns/net")},
            {"type": "ipc", "path": format!("/proc/{pid}/ns/ipc")},
            {"type": "uts", "path": format!("/proc/{pid}/ns/uts")},
            {"type": "mount"}
        ]),
    );
    b.sh("for n in pid net ipc uts; do readlink /proc/self/ns/$n; done; hostname; ps -o comm | grep -c sleep");
    let out = b.run_ok();
    let lines: Vec<&str> = out.lines().collect();
    for (i, n) in ["pid", "net", "ipc", "uts"].iter().enumerate() {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
        assert_eq!(lines[i], theirs.display().to_string(), "{n}");
    }
    assert_eq!(lines[4], "container-a");
    assert_eq!(lines[5], "1", "the joined pid namespace shows a's sleep");
    assert!(a.berth(&["delete", "-f", &a.id]).status.success());
}

#[test]
fn namespace_path_of_the_wrong_type_is_refused() {
    let mut env = Env::new("ns-wrong-type");
    set_namespaces(
        &mut env,
        json!([{"type": "mount"}, {"type": "network", "path": "/proc/self/ns/ipc"}]),
    );
    env.config.as_object_mut().unwrap().remove("hostname");
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(
        err.contains("linux.namespaces") && err.contains("not a network namespace"),
        "{err}"
    );
    env.expect_no_state();
    set_namespaces(
        &mut env,
        json!([{"type": "mount"}, {"type": "network", "path": "/no/such/ns"}]),
    );
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(err.contains("/no/such/ns"), "{err}");
    env.expect_no_state();
}

/// A user namespace mapping container root to an unprivileged host range.
fn userns_env(name: &str) -> Env {
    let mut env = Env::new(name);
    let ns = env.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "user"}));
    env.config["linux"]["uidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    env.config["linux"]["gidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // The rootfs must be reachable by the mapped root.
    std::process::Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(env.bundle.join("rootfs"))
        .status()
        .unwrap();
    // mqueue and sysfs need a namespace of their own owner; keep the config simple.
    env.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["type"] != "cgroup");
    env
}

#[test]
fn user_namespace_with_mappings() {
    let mut env = userns_env("ns-user");
    env.sh("cat /proc/self/uid_map /proc/self/gid_map; id -u; readlink /proc/self/ns/user; ls -ln /dev/null");
    let out = env.run_ok();
    let lines: Vec<&str> = out.lines().collect();
    let fields = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(fields(lines[0]), vec!["0", "100000", "65536"]);
    assert_eq!(fields(lines[1]), vec!["0", "100000", "65536"]);
    assert_eq!(lines[2], "0");
    assert_ne!(lines[3], host_ns("user"));
    // In a user namespace devices are bind mounts of the host's nodes.
    assert!(lines[4].starts_with("crw-rw-rw-"), "{}", lines[4]);
}

#[test]
fn user_namespace_needs_mappings() {
    let mut env = Env::new("ns-user-nomap");
    env.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(err.contains("uidMappings"), "{err}");
    env.expect_no_state();
}

#[test]
fn time_namespace_offsets() {
    let mut env = Env::new("ns-time");
    env.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    env.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 86400000, "nanosecs": 0}, "monotonic": {"secs": 500, "nanosecs": 7}});
    env.sh("cut -d. -f1 /proc/uptime; cat /proc/self/timens_offsets");
    let out = env.run_ok();
    let uptime: u64 = out.lines().next().unwrap().parse().unwrap();
    assert!(uptime >= 86_400_000, "uptime {uptime}");
    assert!(out.contains("monotonic") && out.contains("500"), "{out}");
}

#[test]
fn cgroup_namespace_roots_at_the_container_cgroup() {
    let mut env = Env::new("ns-cgroup");
    env.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
    env.sh("cat /proc/self/cgroup; ls /sys/fs/cgroup/memory/cgroup.procs");
    let out = env.run_ok();
    for line in out.lines().filter(|l| l.contains(':')) {
        assert!(line.ends_with(":/"), "{line}");
    }
    assert!(out.contains("/sys/fs/cgroup/memory/cgroup.procs"), "{out}");
}

#[test]
fn hostname_domainname_and_sysctl() {
    let mut env = Env::new("ns-uts-sysctl");
    env.config["hostname"] = json!("box-one");
    env.config["domainname"] = json!("example.test");
    env.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
    env.sh("hostname; cat /proc/sys/kernel/domainname /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni");
    let out = env.run_ok();
    assert_eq!(out, "box-one\nexample.test\n1\n1234\n");
}

#[test]
fn sysctl_outside_the_containers_namespaces_is_refused() {
    let mut env = Env::new("ns-sysctl-bad");
    env.config["linux"]["sysctl"] = json!({"kernel.pid_max": "1000"});
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(err.contains("kernel.pid_max"), "{err}");
    env.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    env.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network");
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(err.contains("network namespace"), "{err}");
    env.expect_no_state();
}

#[test]
fn hostname_without_uts_namespace_is_refused() {
    let mut env = Env::new("ns-hostname-nouts");
    env.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "uts");
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(err.contains("uts"), "{err}");
    env.expect_no_state();
}

/// A veth pair on the host; removed on drop (moving one end into a
/// container that has exited destroys both already).
struct Veth(String);

impl Veth {
    fn new(name: &str, peer: &str) -> Veth {
        let ok = std::process::Command::new("ip")
            .args(["link", "add", name, "type", "veth", "peer", "name", peer])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip link add {name}");
        Veth(name.to_string())
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[test]
fn net_devices_move_with_their_addresses_and_come_up() {
    let tag = std::process::id() % 10000;
    let (host, peer) = (format!("bv{tag}a"), format!("bv{tag}b"));
    let _veth = Veth::new(&host, &peer);
    let ip = |args: &[&str]| {
        assert!(std::process::Command::new("ip")
            .args(args)
            .status()
            .unwrap()
            .success())
    };
    ip(&["addr", "add", "10.231.7.1/24", "dev", &host]);
    ip(&["-6", "addr", "add", "fd00:231::1/64", "dev", &host, "nodad"]);
    let mut env = Env::new("netdev");
    env.config["linux"]["netDevices"] = json!({ host.clone(): {"name": "eth7"} });
    env.sh("ip -o addr show dev eth7; ip -o link show dev eth7");
    let out = env.run_ok();
    assert!(out.contains("10.231.7.1/24"), "{out}");
    assert!(out.contains("fd00:231::1/64"), "{out}");
    assert!(out.contains("state UP") || out.contains(",UP"), "{out}");
    // The device left the host with the container.
    assert!(!std::path::Path::new(&format!("/sys/class/net/{host}")).exists());

    let mut env = Env::new("netdev-missing");
    env.config["linux"]["netDevices"] = json!({"no-such-dev0": {}});
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(err.contains("no-such-dev0"), "{err}");
    env.expect_no_state();
}
