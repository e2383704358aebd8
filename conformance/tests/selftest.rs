//! The suite has teeth: against runtimes broken on purpose (runc behind a
//! wrapper that edits config.json, `broken/runc-broken`), at least one case
//! that plain runc passes must fail, for every break.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_conformance::{run_suite, Options, Status};

fn suite(runtime: &Path, filter: &str) -> Vec<berth_conformance::Outcome> {
    run_suite(&Options {
        runtime: runtime.to_path_buf(),
        filter: Some(filter.to_string()),
        jobs: 4,
        keep: false,
        timeout: Duration::from_secs(20),
    })
}

fn runc() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("runc"))
        .find(|p| p.exists())
}

#[test]
fn every_break_fails_a_case_plain_runc_passes() {
    let runc = runc().expect("runc is installed by hack/deps");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("broken/runc-broken");
    let links = std::env::temp_dir().join(format!("berth-broken-{}", std::process::id()));
    std::fs::create_dir_all(&links).unwrap();
    // break, the cases that must notice it
    let breaks = [
        ("hostname", "hostname"),
        ("env", "process/env"),
        ("rlimits", "rlimit"),
        ("writable-root", "root/readonly"),
        ("capabilities", "capabilities"),
        ("memory", "cgroups/memory"),
        ("seccomp", "seccomp/"),
        ("masked-paths", "masked/"),
        ("cwd", "process/cwd"),
        ("root-user", "process/user"),
        ("proc-symlink", "-on-symlink"),
        ("proc-mounts", "security/no-mounts-inside-proc"),
        ("devices-allow-all", "devices/allow-list-exact"),
        ("uid-range", "process/user-id-range"),
        ("unlisted-namespaces", "namespaces/unlisted-inherited"),
        ("frozen-thawed", "cgroups/frozen-refused"),
    ];
    let mut missed = Vec::new();
    for (brk, filter) in breaks {
        let baseline: HashSet<String> = suite(&runc, filter)
            .into_iter()
            .filter(|r| r.status == Status::Pass)
            .map(|r| r.name)
            .collect();
        assert!(
            !baseline.is_empty(),
            "no case matching {filter:?} passes with runc"
        );
        let link = links.join(format!("runc-broken-{brk}"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&script, &link).unwrap();
        let caught: Vec<String> = suite(&link, filter)
            .into_iter()
            .filter(|r| r.status == Status::Fail && baseline.contains(&r.name))
            .map(|r| r.name)
            .collect();
        if caught.is_empty() {
            missed.push(brk);
        }
    }
    let _ = std::fs::remove_dir_all(&links);
    assert!(missed.is_empty(), "breaks no case noticed: {missed:?}");
}
