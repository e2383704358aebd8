//! config.md "Root", "Mounts"; config-linux.md "Devices", "Masked Paths",
//! "Readonly Paths", "Rootfs Mount Propagation".

use serde_json::json;

use super::{case, Case};
use crate::harness::{check, expect_eq, Ctx, Verdict};

fn io(e: std::io::Error) -> Verdict {
    Verdict::Fail(e.to_string())
}

/// The mountinfo line for `dest` in `out`.
fn mountinfo<'a>(out: &'a str, dest: &str) -> Option<&'a str> {
    out.lines().rfind(|l| l.split(' ').nth(4) == Some(dest))
}

fn device_case(name: &'static str, major: u32, minor: u32) -> Case {
    case(format!("devices/default-{name}"), move |c: &mut Ctx| {
        c.sh(&format!("stat -c '%t:%T %F' /dev/{name}"));
        let want = format!("{major:x}:{minor:x} character special file\n");
        expect_eq(name, &c.run_ok()?, &want)
    })
}

pub fn cases() -> Vec<Case> {
    let mut v = vec![
        case("root/readonly", |c| {
            c.set("/root/readonly", json!(true));
            c.sh("touch /x 2>/dev/null && echo writable || echo read-only");
            expect_eq("root", &c.run_ok()?, "read-only\n")
        }),
        case("root/writable", |c| {
            c.set("/root/readonly", json!(false));
            c.sh("touch /x && echo writable");
            expect_eq("root", &c.run_ok()?, "writable\n")
        }),
        case("root/propagation-private", |c| {
            c.set("/linux/rootfsPropagation", json!("private"));
            c.sh("cat /proc/self/mountinfo");
            let out = c.run_ok()?;
            let line = mountinfo(&out, "/").unwrap_or("");
            check(
                !line.contains("shared:") && !line.contains("master:"),
                || format!("/ is not private: {line}"),
            )
        }),
        case("root/propagation-shared", |c| {
            c.set("/linux/rootfsPropagation", json!("rshared"));
            c.sh("cat /proc/self/mountinfo");
            let out = c.run_ok()?;
            let line = mountinfo(&out, "/").unwrap_or("");
            check(line.contains("shared:"), || {
                format!("/ is not shared: {line}")
            })
        }),
        case("mounts/tmpfs-options", |c| {
            c.add_mount(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1730", "size=2m"]}));
            c.sh("stat -c %a /scratch; df -k /scratch | tail -1 | awk '{print $2}'");
            expect_eq("tmpfs", &c.run_ok()?, "1730\n2048\n")
        }),
        case("mounts/tmpfs-flags", |c| {
            c.add_mount(json!({"destination": "/flags", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "noexec"]}));
            c.sh("cat /proc/self/mountinfo");
            let out = c.run_ok()?;
            let line = mountinfo(&out, "/flags").unwrap_or("");
            let opts = line.split(' ').nth(5).unwrap_or("");
            check(
                ["nosuid", "nodev", "noexec"]
                    .iter()
                    .all(|f| opts.split(',').any(|o| o == *f)),
                || format!("/flags: {line}"),
            )
        }),
        case("mounts/bind-read-only", |c| {
            let src = c.dir.join("shared");
            std::fs::create_dir_all(&src).map_err(io)?;
            std::fs::write(src.join("f"), "content").map_err(io)?;
            c.add_mount(json!({"destination": "/data", "type": "bind", "source": src, "options": ["rbind", "ro"]}));
            c.sh("cat /data/f; touch /data/g 2>/dev/null && echo writable || echo ro");
            expect_eq("bind", &c.run_ok()?, "contentro\n")
        }),
        case("mounts/bind-read-write", |c| {
            let src = c.dir.join("rw");
            std::fs::create_dir_all(&src).map_err(io)?;
            c.add_mount(json!({"destination": "/rw", "type": "bind", "source": src, "options": ["rbind", "rw"]}));
            c.sh("echo hi > /rw/f && echo ok");
            expect_eq("bind", &c.run_ok()?, "ok\n")?;
            check(src.join("f").exists(), || {
                "the write did not reach the source".into()
            })
        }),
        case("mounts/bind-file", |c| {
            let src = c.dir.join("file.txt");
            std::fs::write(&src, "file-bound").map_err(io)?;
            c.add_mount(json!({"destination": "/etc/bound.txt", "type": "bind", "source": src, "options": ["bind", "ro"]}));
            c.sh("cat /etc/bound.txt");
            expect_eq("file", &c.run_ok()?, "file-bound")
        }),
        case("mounts/nested", |c| {
            c.add_mount(json!({"destination": "/outer", "type": "tmpfs", "source": "tmpfs"}));
            c.add_mount(json!({"destination": "/outer/inner/deep", "type": "tmpfs", "source": "tmpfs", "options": ["mode=700"]}));
            c.sh("stat -c %a /outer/inner/deep");
            expect_eq("nested", &c.run_ok()?, "700\n")
        }),
        case("mounts/missing-mount-point-created", |c| {
            c.add_mount(json!({"destination": "/a/b/c", "type": "tmpfs", "source": "tmpfs"}));
            c.sh("grep -c ' /a/b/c ' /proc/self/mountinfo");
            expect_eq("mounted", &c.run_ok()?, "1\n")
        }),
        case("mounts/symlinked-destination-stays-inside", |c| {
            let outside = c.dir.join("outside");
            std::fs::create_dir_all(&outside).map_err(io)?;
            std::os::unix::fs::symlink(&outside, c.host_path("/escape")).map_err(io)?;
            c.add_mount(json!({"destination": "/escape/evil", "type": "tmpfs", "source": "tmpfs"}));
            c.sh("true");
            let _ = c.run()?;
            check(!outside.join("evil").exists(), || {
                "a mount point was created outside the rootfs".into()
            })
        }),
        case("mounts/relative-symlink-stays-inside", |c| {
            let marker = c.dir.join("marker-dir");
            std::os::unix::fs::symlink(
                "../../../../../../../../../../../..".to_string() + &marker.display().to_string(),
                c.host_path("/up"),
            )
            .map_err(io)?;
            c.add_mount(json!({"destination": "/up", "type": "tmpfs", "source": "tmpfs"}));
            c.sh("true");
            let _ = c.run()?;
            check(!marker.exists(), || {
                "a mount point was created outside the rootfs".into()
            })
        }),
        case("mounts/missing-bind-source-fails", |c| {
            c.add_mount(json!({"destination": "/x", "type": "bind", "source": "/no/such/source", "options": ["bind"]}));
            let out = c.run()?;
            check(out.code != 0, || {
                "a missing bind source was accepted".into()
            })
        }),
        case("devices/ptmx-link", |c| {
            c.sh("readlink /dev/ptmx");
            expect_eq("ptmx", &c.run_ok()?, "pts/ptmx\n")
        }),
        case("devices/fd-links", |c| {
            c.sh(
                "readlink /dev/fd; readlink /dev/stdin; readlink /dev/stdout; readlink /dev/stderr",
            );
            expect_eq(
                "links",
                &c.run_ok()?,
                "/proc/self/fd\n/proc/self/fd/0\n/proc/self/fd/1\n/proc/self/fd/2\n",
            )
        }),
        case("devices/config-device", |c| {
            c.set("/linux/devices", json!([{"path": "/dev/conformance-full", "type": "c", "major": 1, "minor": 7, "fileMode": 416, "uid": 1234, "gid": 2345}]));
            c.set("/linux/resources/devices", json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"}]));
            c.sh("stat -c '%t:%T %a %u %g' /dev/conformance-full");
            expect_eq("device", &c.run_ok()?, "1:7 640 1234 2345\n")
        }),
        case("devices/cgroup-denies-unlisted", |c| {
            let caps = json!(["CAP_MKNOD", "CAP_KILL"]);
            c.set(
                "/process/capabilities",
                json!({"bounding": caps, "effective": caps, "permitted": caps}),
            );
            c.sh("mknod /dev/lc c 10 237 && (true </dev/lc) 2>/dev/null && echo opened || echo denied");
            expect_eq("open", &c.run_ok()?, "denied\n")
        }),
        case("masked/file", |c| {
            c.set("/linux/maskedPaths", json!(["/proc/version"]));
            c.sh("wc -c < /proc/version");
            expect_eq("size", &c.run_ok()?, "0\n")
        }),
        case("masked/directory", |c| {
            std::fs::create_dir_all(c.host_path("/secret")).map_err(io)?;
            std::fs::write(c.host_path("/secret/key"), "k").map_err(io)?;
            c.set("/linux/maskedPaths", json!(["/secret"]));
            c.sh("ls /secret | wc -l");
            expect_eq("entries", &c.run_ok()?, "0\n")
        }),
        case("readonly/path", |c| {
            c.set("/linux/readonlyPaths", json!(["/proc/sys"]));
            c.sh("echo 1 > /proc/sys/vm/overcommit_memory 2>/dev/null && echo writable || echo ro");
            expect_eq("/proc/sys", &c.run_ok()?, "ro\n")
        }),
    ];
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        v.push(device_case(name, major, minor));
    }
    v
}
