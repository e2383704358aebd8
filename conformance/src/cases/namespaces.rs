//! config-linux.md "Namespaces" and user namespace mappings.

use serde_json::json;

use super::{case, Case};
use crate::harness::{check, expect_eq, fail, wait_until, Ctx, Verdict};

fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn new_ns_case(typ: &'static str, proc_name: &'static str) -> Case {
    case(format!("namespaces/new-{typ}"), move |c: &mut Ctx| {
        if !std::path::Path::new(&format!("/proc/self/ns/{proc_name}")).exists() {
            return Err(Verdict::Skip(format!("kernel has no {typ} namespaces")));
        }
        if !c.namespaces().iter().any(|n| n["type"] == typ) {
            c.namespaces().push(json!({"type": typ}));
        }
        c.sh(&format!("readlink /proc/self/ns/{proc_name}"));
        let out = c.run_ok()?;
        check(
            out.trim() != host_ns(proc_name) && !out.trim().is_empty(),
            || format!("{typ} namespace is the host's"),
        )
    })
}

fn join_ns_case(typ: &'static str, proc_name: &'static str) -> Case {
    case(
        format!("namespaces/join-{typ}-by-path"),
        move |c: &mut Ctx| {
            // A helper process in a namespace of its own, made with unshare(1).
            let flag = match typ {
                "network" => "--net",
                "ipc" => "--ipc",
                _ => "--uts",
            };
            let mut helper = std::process::Command::new("unshare")
                .args([flag, "sleep", "30"])
                .spawn()
                .map_err(|e| Verdict::Skip(format!("unshare(1): {e}")))?;
            let path = format!("/proc/{}/ns/{proc_name}", helper.id());
            let read = || {
                std::fs::read_link(&path)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            };
            // unshare(1) has to get to unshare(2) first.
            wait_until(15, || read() != host_ns(proc_name));
            let theirs = read();
            let ns = c.namespaces();
            ns.retain(|n| n["type"] != typ);
            ns.push(json!({"type": typ, "path": path}));
            if typ == "uts" {
                c.config.as_object_mut().map(|o| o.remove("hostname"));
            }
            c.sh(&format!("readlink /proc/self/ns/{proc_name}"));
            let out = c.run();
            let _ = helper.kill();
            let _ = helper.wait();
            let out = out?;
            if out.code != 0 {
                return fail(format!("run: {}", out.stderr.trim()));
            }
            expect_eq("namespace", out.stdout.trim(), &theirs)
        },
    )
}

pub fn cases() -> Vec<Case> {
    let mut v = vec![
        case("namespaces/pid-1-in-new-pid-namespace", |c| {
            c.sh("echo $$");
            expect_eq("pid", &c.run_ok()?, "1\n")
        }),
        case(
            "namespaces/without-network-namespace-shares-the-host",
            |c| {
                c.namespaces().retain(|n| n["type"] != "network");
                c.sh("readlink /proc/self/ns/net");
                expect_eq("net", c.run_ok()?.trim(), &host_ns("net"))
            },
        ),
        case("namespaces/user-mappings", |c| {
            c.namespaces().push(json!({"type": "user"}));
            c.set(
                "/linux/uidMappings",
                json!([{"containerID": 0, "hostID": 300000, "size": 65536}]),
            );
            c.set(
                "/linux/gidMappings",
                json!([{"containerID": 0, "hostID": 300000, "size": 65536}]),
            );
            c.config["mounts"]
                .as_array_mut()
                .expect("mounts")
                .retain(|m| m["type"] != "mqueue");
            let rootfs = c.bundle.join("rootfs");
            let ok = std::process::Command::new("chown")
                .args(["-R", "300000:300000"])
                .arg(&rootfs)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            check(ok, || "chown of the rootfs failed".into())?;
            c.sh("cat /proc/self/uid_map; id -u");
            let out = c.run_ok()?;
            let first: Vec<&str> = out
                .lines()
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            check(first == ["0", "300000", "65536"], || {
                format!("uid_map {out:?}")
            })?;
            check(out.ends_with("0\n"), || format!("id -u: {out:?}"))
        }),
        case("namespaces/cgroup-namespace-root", |c| {
            c.namespaces().push(json!({"type": "cgroup"}));
            c.sh("cat /proc/self/cgroup");
            let out = c.run_ok()?;
            check(out.lines().all(|l| l.ends_with(":/")), || {
                format!("/proc/self/cgroup: {out}")
            })
        }),
        case("namespaces/hostname-in-uts", |c| {
            c.set("/hostname", json!("uts-test"));
            c.sh("hostname");
            expect_eq("hostname", &c.run_ok()?, "uts-test\n")?;
            check(nix_hostname() != "uts-test", || {
                "the host's hostname changed".into()
            })
        }),
    ];
    for (typ, name) in [
        ("pid", "pid"),
        ("network", "net"),
        ("ipc", "ipc"),
        ("uts", "uts"),
        ("mount", "mnt"),
        ("cgroup", "cgroup"),
        ("time", "time"),
    ] {
        v.push(new_ns_case(typ, name));
    }
    for (typ, name) in [("network", "net"), ("ipc", "ipc"), ("uts", "uts")] {
        v.push(join_ns_case(typ, name));
    }
    v
}

fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}
