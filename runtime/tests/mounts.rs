//! config.md "Root", "Mounts"; config-linux.md "Rootfs Mount Propagation",
//! "Devices", "Masked Paths", "Readonly Paths".

mod common;

use common::*;
use serde_json::json;

fn add_mount(env: &mut Env, m: serde_json::Value) {
    env.config["mounts"].as_array_mut().unwrap().push(m);
}

/// The mountinfo line of `dest` as the container sees it.
fn mountinfo_line<'a>(out: &'a str, dest: &str) -> &'a str {
    out.lines()
        .rfind(|l| l.split(' ').nth(4) == Some(dest))
        .unwrap_or_else(|| panic!("{dest} not mounted in:\n{out}"))
}

#[test]
fn readonly_root() {
    let mut env = Env::new("root-ro");
    env.sh("touch /x 2>&1; echo rc=$?");
    let out = env.run_ok();
    assert!(
        out.contains("Read-only file system") && out.contains("rc=1"),
        "{out}"
    );
    env.config["root"]["readonly"] = json!(false);
    env.sh("touch /x && echo ok");
    assert_eq!(env.run_ok(), "ok\n");
    assert!(env.bundle.join("rootfs/x").exists());
}

#[test]
fn relative_and_absolute_root_paths() {
    let mut env = Env::new("root-abs");
    env.config["root"]["path"] = json!(env.bundle.join("rootfs").to_str().unwrap());
    env.sh("echo ok");
    assert_eq!(env.run_ok(), "ok\n");
}

#[test]
fn bind_mounts_of_dirs_and_files_read_only_and_not() {
    let mut env = Env::new("mount-bind");
    let src = env.scratch.0.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("hello"), "hi").unwrap();
    let file = env.scratch.0.join("file.txt");
    std::fs::write(&file, "file-content").unwrap();
    add_mount(
        &mut env,
        json!({"destination": "/data", "type": "bind", "source": src, "options": ["rbind", "ro"]}),
    );
    add_mount(
        &mut env,
        json!({"destination": "/rw", "type": "none", "source": src, "options": ["bind", "rw"]}),
    );
    add_mount(
        &mut env,
        json!({"destination": "/deep/new/file.txt", "type": "bind", "source": file, "options": ["bind", "ro", "nosuid", "nodev", "noexec"]}),
    );
    env.sh("cat /data/hello; echo; touch /data/x 2>/dev/null || echo ro-ok; touch /rw/y && echo rw-ok; cat /deep/new/file.txt; echo; cat /proc/self/mountinfo");
    let out = env.run_ok();
    assert!(out.starts_with("hi\nro-ok\nrw-ok\nfile-content\n"), "{out}");
    assert!(src.join("y").exists());
    let line = mountinfo_line(&out, "/deep/new/file.txt");
    for flag in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            line.split(' ')
                .nth(5)
                .unwrap()
                .split(',')
                .any(|f| f == flag),
            "{flag} missing: {line}"
        );
    }
}

#[test]
fn relative_bind_source_is_relative_to_the_bundle() {
    let mut env = Env::new("mount-relsrc");
    std::fs::create_dir_all(env.bundle.join("shared")).unwrap();
    std::fs::write(env.bundle.join("shared/f"), "from-bundle").unwrap();
    add_mount(
        &mut env,
        json!({"destination": "/shared", "type": "bind", "source": "shared", "options": ["bind"]}),
    );
    env.sh("cat /shared/f");
    assert_eq!(env.run_ok(), "from-bundle");
}

#[test]
fn tmpfs_options() {
    let mut env = Env::new("mount-tmpfs");
    add_mount(
        &mut env,
        json!({"destination": "/scratch/a/b", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1770", "size=1m", "uid=5", "gid=6"]}),
    );
    env.sh("stat -c '%a %u %g' /scratch/a/b; df -k /scratch/a/b | tail -1 | awk '{print $2}'; cat /proc/self/mountinfo");
    let out = env.run_ok();
    let mut lines = out.lines();
    assert_eq!(lines.next().unwrap(), "1770 5 6");
    assert_eq!(lines.next().unwrap(), "1024");
    let line = mountinfo_line(&out, "/scratch/a/b");
    assert!(line.contains("nosuid") && line.contains("nodev"), "{line}");
    // The mount point was created in the rootfs.
    assert!(env.bundle.join("rootfs/scratch/a/b").is_dir());
}

#[test]
fn recursive_read_only_reaches_submounts() {
    let mut env = Env::new("mount-rro");
    let src = env.scratch.0.join("tree");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    // A submount inside the source: a tmpfs mounted in a private mount
    // namespace of a helper would not be visible; use the container's own
    // mounts instead: an rbind of the bundle's /dev tmpfs is not needed —
    // the rootfs of the container itself carries /dev, /proc submounts.
    add_mount(
        &mut env,
        json!({"destination": "/tree", "type": "bind", "source": src, "options": ["rbind"]}),
    );
    add_mount(
        &mut env,
        json!({"destination": "/tree/sub", "type": "tmpfs", "source": "tmpfs", "options": []}),
    );
    add_mount(
        &mut env,
        json!({"destination": "/view", "type": "bind", "source": "/", "options": ["rbind", "rro"]}),
    );
    env.sh("touch /view/tmp/x 2>/dev/null && echo writable || echo read-only; grep ' /view/proc ' /proc/self/mountinfo | head -1");
    let out = env.run_ok();
    assert!(out.starts_with("read-only\n"), "{out}");
    let sub = out.lines().nth(1).unwrap();
    assert!(
        sub.split(' ').nth(5).unwrap().starts_with("ro"),
        "submount not read-only: {sub}"
    );
}

#[test]
fn mount_propagation_options() {
    let mut env = Env::new("mount-propagation");
    add_mount(
        &mut env,
        json!({"destination": "/shared", "type": "tmpfs", "source": "tmpfs", "options": ["rshared"]}),
    );
    add_mount(
        &mut env,
        json!({"destination": "/private", "type": "tmpfs", "source": "tmpfs", "options": ["private"]}),
    );
    add_mount(
        &mut env,
        json!({"destination": "/unbindable", "type": "tmpfs", "source": "tmpfs", "options": ["unbindable"]}),
    );
    env.sh("cat /proc/self/mountinfo");
    let out = env.run_ok();
    assert!(
        mountinfo_line(&out, "/shared").contains(" shared:"),
        "{out}"
    );
    assert!(!mountinfo_line(&out, "/private").contains("shared:"));
    assert!(mountinfo_line(&out, "/unbindable").contains("unbindable"));
}

#[test]
fn rootfs_propagation() {
    let mut env = Env::new("rootfs-propagation");
    env.config["linux"]["rootfsPropagation"] = json!("private");
    env.sh("awk '$5 == \"/\"' /proc/self/mountinfo");
    let out = env.run_ok();
    assert!(
        !out.contains("shared:") && !out.contains("master:"),
        "{out}"
    );
    env.config["linux"]["rootfsPropagation"] = json!("rshared");
    let out = env.run_ok();
    assert!(out.contains("shared:"), "{out}");
    env.config["linux"]["rootfsPropagation"] = json!("sideways");
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(err.contains("rootfsPropagation"), "{err}");
    env.expect_no_state();
}

#[test]
fn no_pivot() {
    let mut env = Env::new("no-pivot");
    env.sh("ls /bin/busybox && cat /proc/self/mountinfo | wc -l");
    env.write_config();
    let out = env.berth(&[
        "run",
        "--no-pivot",
        "-b",
        env.bundle.to_str().unwrap(),
        &env.id,
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stdout_of(&out).starts_with("/bin/busybox\n"));
}

#[test]
fn symlinks_in_the_image_cannot_point_a_mount_outside_the_rootfs() {
    let mut env = Env::new("mount-symlink-escape");
    let outside = env.scratch.0.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let rootfs = env.bundle.join("rootfs");
    // An absolute symlink, a relative one climbing out, and a chain.
    std::os::unix::fs::symlink(&outside, rootfs.join("abs")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../../../../../../tmp",
        rootfs.join("rel"),
    )
    .unwrap();
    std::os::unix::fs::symlink("/rel", rootfs.join("chain")).unwrap();
    add_mount(
        &mut env,
        json!({"destination": "/abs/evil", "type": "tmpfs", "source": "tmpfs"}),
    );
    add_mount(
        &mut env,
        json!({"destination": "/chain/evil2", "type": "tmpfs", "source": "tmpfs"}),
    );
    env.sh("grep -c evil /proc/self/mountinfo");
    assert_eq!(env.run_ok(), "2\n");
    assert!(
        !outside.join("evil").exists(),
        "mount point created outside the rootfs"
    );
    assert!(
        !std::path::Path::new("/tmp/evil2").exists(),
        "mount point created outside the rootfs"
    );
    // They landed inside: <rootfs>/<outside path>/evil and <rootfs>/tmp/evil2.
    assert!(rootfs
        .join(outside.strip_prefix("/").unwrap())
        .join("evil")
        .is_dir());
    assert!(rootfs.join("tmp/evil2").is_dir());
}

#[test]
fn missing_bind_source_is_an_error_naming_it() {
    let mut env = Env::new("mount-missing-src");
    add_mount(
        &mut env,
        json!({"destination": "/x", "type": "bind", "source": "/no/such/source", "options": ["bind"]}),
    );
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(err.contains("/no/such/source"), "{err}");
    env.expect_no_state();
}

#[test]
fn default_devices_and_links() {
    let mut env = Env::new("devices-default");
    env.sh("for d in null zero full random urandom tty; do stat -c '%n %t:%T %a' /dev/$d; done; for l in ptmx fd stdin stdout stderr; do readlink /dev/$l; done");
    let out = env.run_ok();
    assert_eq!(
        out,
        "/dev/null 1:3 666\n/dev/zero 1:5 666\n/dev/full 1:7 666\n/dev/random 1:8 666\n/dev/urandom 1:9 666\n/dev/tty 5:0 666\n\
         pts/ptmx\n/proc/self/fd\n/proc/self/fd/0\n/proc/self/fd/1\n/proc/self/fd/2\n"
    );
}

#[test]
fn config_devices_and_the_cgroup_allow_list() {
    let mut env = Env::new("devices-config");
    env.config["linux"]["devices"] = json!([
        {"path": "/dev/myfull", "type": "c", "major": 1, "minor": 7, "fileMode": 0o640, "uid": 1000, "gid": 1001},
        {"path": "/dev/ctl/loop-control", "type": "c", "major": 10, "minor": 237, "fileMode": 0o600}
    ]);
    // The nodes are made as asked; loop-control is not on the allow-list
    // (linux.devices makes nodes, only rules allow them), as under runc.
    env.sh("stat -c '%t:%T %a %u %g' /dev/myfull; (exec 3</dev/ctl/loop-control) 2>/dev/null && echo opened || echo denied");
    assert_eq!(env.run_ok(), "1:7 640 1000 1001\ndenied\n");
    let (code, out, err) = env.runc_run();
    assert_eq!(
        (code, out.as_str()),
        (0, "1:7 640 1000 1001\ndenied\n"),
        "runc: {err}"
    );
    // A node made inside but not on the allow-list cannot be opened.
    let mut env = Env::new("devices-deny");
    let caps = json!(["CAP_MKNOD", "CAP_KILL"]);
    for set in ["bounding", "effective", "permitted"] {
        env.config["process"]["capabilities"][set] = caps.clone();
    }
    env.sh("mknod /dev/lc c 10 237 && { exec 3</dev/lc; } 2>&1 | grep -c 'not permitted'");
    assert_eq!(env.run_ok(), "1\n");
    // An explicit rule lets it through.
    env.config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 237, "access": "r"}
    ]);
    env.sh("mknod /dev/lc c 10 237 && exec 3</dev/lc && echo opened");
    assert_eq!(env.run_ok(), "opened\n");
}

#[test]
fn masked_and_readonly_paths() {
    let mut env = Env::new("masked-readonly");
    std::fs::create_dir_all(env.bundle.join("rootfs/secret")).unwrap();
    std::fs::write(env.bundle.join("rootfs/secret/key"), "k").unwrap();
    env.config["linux"]["maskedPaths"] = json!([
        "/proc/version",
        "/secret",
        "/proc/nonexistent",
        "/etc/passwd"
    ]);
    env.config["linux"]["readonlyPaths"] = json!(["/proc/sys", "/proc/nonexistent2", "/tmp"]);
    env.config["root"]["readonly"] = json!(false);
    env.sh("wc -c < /proc/version; ls /secret | wc -l; wc -c < /etc/passwd; echo 1 > /proc/sys/vm/overcommit_memory 2>/dev/null || echo sys-ro; touch /tmp/x 2>/dev/null || echo tmp-ro");
    let (code, out, err) = env.run();
    assert_eq!(
        (code, out.as_str()),
        (0, "0\n0\n0\nsys-ro\ntmp-ro\n"),
        "{err}"
    );
}

#[test]
fn cgroup_mount_without_and_with_cgroupns() {
    let mut env = Env::new("mount-cgroup");
    // Only the container's own processes (sh, and the reader) are listed.
    env.sh("ls /sys/fs/cgroup; [ $(cat /sys/fs/cgroup/pids/cgroup.procs | wc -l) -le 5 ] && echo own; touch /sys/fs/cgroup/x 2>/dev/null || echo ro");
    let out = env.run_ok();
    for h in ["cpu", "memory", "pids", "devices", "freezer", "unified"] {
        assert!(out.lines().any(|l| l == h), "{h} missing: {out}");
    }
    assert!(
        out.contains("\nown\nro\n"),
        "the container sees its own cgroup: {out}"
    );
    env.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
    let out = env.run_ok();
    assert!(out.contains("\nown\nro\n"), "{out}");
}

#[test]
fn idmapped_bind_mount() {
    let mut env = Env::new("mount-idmap");
    let src = env.scratch.0.join("owned");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("by-root"), "x").unwrap();
    std::os::unix::fs::chown(src.join("by-root"), Some(0), Some(0)).unwrap();
    std::fs::write(src.join("by-1000"), "y").unwrap();
    std::os::unix::fs::chown(src.join("by-1000"), Some(1000), Some(1000)).unwrap();
    // On disk 0 → seen as 5000, 1000 → 6000.
    add_mount(
        &mut env,
        json!({
            "destination": "/mapped", "type": "bind", "source": src, "options": ["bind", "idmap"],
            "uidMappings": [{"containerID": 0, "hostID": 5000, "size": 1}, {"containerID": 1000, "hostID": 6000, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 5000, "size": 1}, {"containerID": 1000, "hostID": 6000, "size": 1}]
        }),
    );
    env.sh("stat -c '%n %u %g' /mapped/by-root /mapped/by-1000");
    assert_eq!(
        env.run_ok(),
        "/mapped/by-root 5000 5000\n/mapped/by-1000 6000 6000\n"
    );
    // The host's view is unchanged.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(src.join("by-root")).unwrap().uid(), 0);

    // idmap without mappings and without a user namespace is an error.
    let mut env = Env::new("mount-idmap-bad");
    add_mount(
        &mut env,
        json!({"destination": "/m", "type": "bind", "source": "/tmp", "options": ["rbind", "idmap"]}),
    );
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(err.contains("/m") && err.contains("idmap"), "{err}");
    env.expect_no_state();
}
