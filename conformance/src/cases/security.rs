//! What a runtime must refuse or keep apart: proc and sysfs only on
//! ordinary directories (CVE-2019-19921, CVE-2023-27561), no mounts into
//! /proc (CVE-2025-52881), masks only from the null device
//! (CVE-2025-31133), the device allow-list exactly as configured
//! (config-linux.md "Devices", "Allowed Device List"), ids in range, an
//! unlisted namespace type shared with the runtime (config-linux.md
//! "Namespaces"), and a frozen cgroup refused rather than hung in.

use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::json;

use super::{case, Case};
use crate::harness::{check, expect_eq, fail, CaseResult, Ctx, Verdict};

fn io(e: std::io::Error) -> Verdict {
    Verdict::Fail(e.to_string())
}

/// The container must not run: `create`/`run` fails.
fn refused(c: &mut Ctx, what: &str) -> CaseResult {
    let out = c.run()?;
    check(!out.ok(), || {
        format!("{what} was accepted: {}", out.stdout.trim())
    })
}

/// /<dir> in the rootfs is a symlink to /tmp: the filesystem must not be
/// mounted through it.
fn on_symlink(c: &mut Ctx, dir: &str) -> CaseResult {
    let rootfs = c.bundle.join("rootfs");
    std::fs::remove_dir(rootfs.join(dir)).map_err(io)?;
    symlink("tmp", rootfs.join(dir)).map_err(io)?;
    c.sh("true");
    refused(c, &format!("/{dir} as a symlink"))?;
    let left = std::fs::read_dir(rootfs.join("tmp")).map_err(io)?.count();
    expect_eq("entries in /tmp", &left.to_string(), "0")
}

/// The mounts (their points) under `dir` in this process's mount table.
fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect()
}

/// A cgroup directory of the case's own, for the freezer of this host.
fn freezer_dir(c: &Ctx) -> Option<(std::path::PathBuf, &'static str, &'static str)> {
    let v1 = Path::new("/sys/fs/cgroup/freezer");
    if v1.join("cgroup.procs").exists() {
        return Some((v1.join(&c.id), "freezer.state", "FROZEN"));
    }
    let v2 = Path::new("/sys/fs/cgroup");
    if v2.join("cgroup.controllers").exists() {
        return Some((v2.join(&c.id), "cgroup.freeze", "1"));
    }
    None
}

pub fn cases() -> Vec<Case> {
    vec![
        case("security/proc-on-symlink", |c| on_symlink(c, "proc")),
        case("security/sysfs-on-symlink", |c| on_symlink(c, "sys")),
        case("security/no-mounts-inside-proc", |c| {
            let victim = c.dir.join("victim");
            std::fs::create_dir_all(&victim).map_err(io)?;
            std::fs::write(victim.join("oom_score_adj"), "victim\n").map_err(io)?;
            c.add_mount(json!({"destination": "/proc/1", "type": "bind", "source": victim, "options": ["rbind"]}));
            c.set("/process/oomScoreAdj", json!(100));
            refused(c, "a bind mount over /proc/1")?;
            let now = std::fs::read_to_string(victim.join("oom_score_adj")).map_err(io)?;
            expect_eq("the bind source's file", &now, "victim\n")
        }),
        case("security/mask-source-is-the-null-device", |c| {
            // The image's /dev (no tmpfs over it) has a /dev/null that is a
            // link to a file of the image.
            let dev = c.bundle.join("rootfs/dev");
            std::fs::write(c.bundle.join("rootfs/etc/secret"), "secret\n").map_err(io)?;
            symlink("/etc/secret", dev.join("null")).map_err(io)?;
            let mounts: Vec<serde_json::Value> = c.config["mounts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|m| m["destination"] != "/dev")
                .collect();
            c.set("/mounts", json!(mounts));
            c.sh("cat /proc/timer_list 2>/dev/null | head -c 20");
            let out = c.run()?;
            check(!out.stdout.contains("secret"), || {
                "a masked path shows the file /dev/null links to".into()
            })
        }),
        case("devices/allow-list-exact", |c| {
            // The node is made, but no rule allows it: it must not open.
            c.set(
                "/linux/devices",
                json!([{"path": "/dev/loop-control", "type": "c", "major": 10, "minor": 237, "fileMode": 0o600}]),
            );
            c.sh("test -c /dev/loop-control && echo node; (exec 3</dev/loop-control) 2>/dev/null && echo opened || echo denied");
            expect_eq("loop-control", &c.run_ok()?, "node\ndenied\n")
        }),
        case("devices/redundant-deny", |c| {
            // A deny the cgroup already has, with an access letter v1 does
            // not know: nothing to write, nothing to fail.
            c.set(
                "/linux/resources/devices",
                json!([{"allow": false, "access": "rwm"}, {"allow": false, "type": "c", "major": 1, "minor": 11, "access": "rwa"}]),
            );
            c.sh("echo ran");
            expect_eq("output", &c.run_ok()?, "ran\n")
        }),
        case("process/user-id-range", |c| {
            // (uid_t)-1 means "unchanged" to setresuid: it must not mean root.
            c.set("/process/user/uid", json!(4294967295u64));
            c.sh("id -u");
            refused(c, "uid 4294967295")
        }),
        case("namespaces/unlisted-inherited", |c| {
            c.set("/linux/namespaces", json!([]));
            c.set("/linux/maskedPaths", json!([]));
            c.set("/linux/readonlyPaths", json!([]));
            c.config.as_object_mut().map(|o| o.remove("hostname"));
            c.sh("for n in mnt net ipc uts pid; do readlink /proc/self/ns/$n; done");
            let result = c.run_ok();
            // A runtime may leave the mounts it made in the shared mount
            // namespace behind; they must not outlive the case.
            let rootfs = c.bundle.join("rootfs");
            let mut left = mounts_under(&rootfs);
            left.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for m in left {
                let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
            }
            let out = result?;
            let ours: String = ["mnt", "net", "ipc", "uts", "pid"]
                .iter()
                .map(|n| {
                    std::fs::read_link(format!("/proc/self/ns/{n}"))
                        .map(|p| format!("{}\n", p.display()))
                        .unwrap_or_default()
                })
                .collect();
            expect_eq("the container's namespaces", &out, &ours)
        }),
        case("cgroups/frozen-refused", |c| {
            let Some((dir, file, frozen)) = freezer_dir(c) else {
                return Err(Verdict::Skip("no freezer on this host".into()));
            };
            std::fs::create_dir_all(&dir).map_err(io)?;
            let thaw = if file == "freezer.state" {
                "THAWED"
            } else {
                "0"
            };
            std::fs::write(dir.join(file), frozen).map_err(io)?;
            c.sh("true");
            let out = c.run();
            let _ = std::fs::write(dir.join(file), thaw);
            c.cleanup();
            let _ = std::fs::remove_dir(&dir);
            let out = out?;
            if out.code == 124 || out.code == 137 {
                return fail("create hung in the frozen cgroup");
            }
            check(!out.ok(), || "ran in a frozen cgroup".into())
        }),
    ]
}
