//! `containerd-shim-berth-v2 supervise`: a bundle run by hand, detached,
//! with its output in a CRI-format log and its exit status in a file; as
//! root, and as an unprivileged user against a rootless berth (the user
//! made here if missing; `hack/test` removes every `berth-rootless*` user
//! after the suite).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-berth-v2");
const USER: &str = "berth-rootless-shim";

#[test]
fn supervise_runs_detached_logs_and_records_the_exit() {
    supervise(None);
}

#[test]
fn supervise_runs_rootless_as_the_user() {
    supervise(Some(user()));
}

/// The test user's uid and gid (Debian's useradd also gives it
/// subordinate ids, which this test does not need).
fn user() -> (u32, u32) {
    let lookup = || passwd_ids(USER);
    if lookup().is_none() {
        let made = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", USER])
            .status()
            .unwrap()
            .success();
        // Another test binary may have made it meanwhile.
        assert!(made || lookup().is_some(), "useradd {USER}");
    }
    lookup().expect("the test user exists")
}

/// `name`'s uid and gid from /etc/passwd.
fn passwd_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        if f.next() != Some(name) {
            return None;
        }
        let mut ids = f.skip(1).map(str::parse::<u32>);
        Some((ids.next()?.ok()?, ids.next()?.ok()?))
    })
}

/// Removes the test's directory, also when it fails.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Supervises a busybox container that writes to both streams and exits
/// 9: as root, or as `user` with berth rootless (its own uid and gid
/// mapped to root, state and runtime dir of the user's).
fn supervise(user: Option<(u32, u32)>) {
    let berth = Path::new(SHIM).with_file_name("berth");
    assert!(
        berth.exists(),
        "berth is built beside the shim (cargo build --workspace)"
    );
    let tag = if user.is_some() { "-rootless" } else { "" };
    let dir = std::env::temp_dir().join(format!("berth-supervise{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _scratch = Scratch(dir.clone());
    let rootfs = dir.join("bundle/rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for a in ["sh", "echo", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    for d in ["proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let bundle = dir.join("bundle");
    let mut spec = Command::new(&berth);
    spec.arg("spec").arg("-b").arg(&bundle);
    if user.is_some() {
        spec.arg("--rootless");
    }
    assert!(spec.status().unwrap().success());
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    config["process"]["terminal"] = serde_json::json!(false);
    config["process"]["args"] = serde_json::json!([
        "sh",
        "-c",
        "echo out-line; echo err-line >&2; printf partial; sleep 2; exit 9"
    ]);
    let runtime_dir = dir.join("run");
    std::fs::create_dir_all(&runtime_dir).unwrap();
    match user {
        // No cgroup: this host delegates none to users.
        Some((uid, gid)) => {
            config["linux"]["uidMappings"] =
                serde_json::json!([{"containerID": 0, "hostID": uid, "size": 1}]);
            config["linux"]["gidMappings"] =
                serde_json::json!([{"containerID": 0, "hostID": gid, "size": 1}]);
        }
        None => {
            config["linux"]["cgroupsPath"] =
                serde_json::json!(format!("/berth-supervise-{}", std::process::id()));
        }
    }
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    if let Some((uid, gid)) = user {
        // The user owns the test's dir and the rootfs, as a rootless
        // user's bundle would be.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let owned = Command::new("chown")
            .args(["-R", "-h", &format!("{uid}:{gid}")])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(owned.success());
    }

    let (log, exit_file, root) = (dir.join("ctr.log"), dir.join("exit"), dir.join("state"));
    let id = format!("sup{tag}-{}", std::process::id());
    let mut shim = Command::new(SHIM);
    if let Some((uid, gid)) = user {
        shim.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", "/tmp")
            .env("XDG_RUNTIME_DIR", &runtime_dir);
        // SAFETY: only setgroups/setgid/setuid between fork and exec.
        unsafe {
            shim.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let status = shim
        .arg("supervise")
        .arg("--bundle")
        .arg(&bundle)
        .arg("--id")
        .arg(&id)
        .arg("--log")
        .arg(&log)
        .arg("--exit-file")
        .arg(&exit_file)
        .arg("--root")
        .arg(&root)
        .arg("--runtime")
        .arg(&berth)
        .status()
        .unwrap();
    assert!(status.success());
    // It returned once the container started, not when it ended.
    assert!(!exit_file.exists(), "supervise waited for the exit");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !exit_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&exit_file).unwrap(), "9");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().any(|l| l.ends_with(" stdout F out-line")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.ends_with(" stderr F err-line")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.ends_with(" stdout P partial")),
        "{text}"
    );
    // Cleaned up: the container is gone from the runtime's state.
    let deadline = Instant::now() + Duration::from_secs(10);
    while root.join(&id).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!root.join(&id).exists(), "the container was not deleted");
}
