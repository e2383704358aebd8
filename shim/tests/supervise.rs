//! `containerd-shim-berth-v2 supervise`: a bundle run by hand, detached,
//! with its output in a CRI-format log and its exit status in a file.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-berth-v2");

#[test]
fn supervise_runs_detached_logs_and_records_the_exit() {
    let berth = Path::new(SHIM).with_file_name("berth");
    assert!(
        berth.exists(),
        "berth is built beside the shim (cargo build --workspace)"
    );
    let dir = std::env::temp_dir().join(format!("berth-supervise-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
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
    assert!(Command::new(&berth)
        .args(["spec", "-b"])
        .arg(&bundle)
        .status()
        .unwrap()
        .success());
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    config["process"]["terminal"] = serde_json::json!(false);
    config["process"]["args"] = serde_json::json!([
        "sh",
        "-c",
        "echo out-line; echo err-line >&2; printf partial; sleep 2; exit 9"
    ]);
    config["linux"]["cgroupsPath"] =
        serde_json::json!(format!("/berth-supervise-{}", std::process::id()));
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();

    let (log, exit_file, root) = (dir.join("ctr.log"), dir.join("exit"), dir.join("state"));
    let id = format!("sup-{}", std::process::id());
    let status = Command::new(SHIM)
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
    let _ = std::fs::remove_dir_all(&dir);
}
