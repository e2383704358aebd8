//! Bad input, concurrency, and interrupted commands: each fails cleanly
//! (one line naming the field or path, non-zero exit) and leaves nothing.

mod common;

use common::*;
use serde_json::json;

fn assert_fails_cleanly(env: &Env, needle: &str) {
    let out = env.berth(&["run", "-b", env.bundle.to_str().unwrap(), &env.id]);
    let err = stderr_of(&out);
    assert!(!out.status.success(), "expected failure");
    assert!(err.contains(needle), "error should name {needle:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    env.expect_no_state();
}

#[test]
fn malformed_json() {
    let env = Env::new("bad-json");
    std::fs::write(
        env.bundle.join("config.json"),
        "{\"ociVersion\": \"1.0.2\", ",
    )
    .unwrap();
    assert_fails_cleanly(&env, "config.json");
}

#[test]
fn wrong_type_names_the_field() {
    let mut env = Env::new("bad-type");
    env.config["process"]["user"]["uid"] = json!("root");
    env.write_config();
    assert_fails_cleanly(&env, "process.user.uid");
    env.config["process"]["user"]["uid"] = json!(0);
    env.config["linux"]["namespaces"] = json!("pid");
    env.write_config();
    assert_fails_cleanly(&env, "linux.namespaces");
}

#[test]
fn versions_and_unknown_properties() {
    let mut env = Env::new("versions");
    env.config["someNewTopLevelThing"] = json!({"a": [1, 2]});
    env.config["process"]["someNewProcessField"] = json!(true);
    for v in ["1.0.0", "1.0.2-dev", "1.2.0", "1.3.0", "1.4.0-rc.1"] {
        env.config["ociVersion"] = json!(v);
        env.sh("true");
        env.run_ok();
    }
    env.config["ociVersion"] = json!("2.0.0");
    env.write_config();
    assert_fails_cleanly(&env, "ociVersion");
}

#[test]
fn missing_rootfs_and_bundle() {
    let mut env = Env::new("no-rootfs");
    env.config["root"]["path"] = json!("does-not-exist");
    env.write_config();
    assert_fails_cleanly(&env, "does-not-exist");
    let out = env.berth(&["run", "-b", "/no/such/bundle", &env.id]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("/no/such/bundle"),
        "{}",
        stderr_of(&out)
    );
    env.expect_no_state();
}

#[test]
fn bad_ids() {
    let env = Env::new("bad-ids");
    env.write_config();
    for id in ["a/b", "..", "../escape", ".", ""] {
        let out = env.berth(&["create", "-b", env.bundle.to_str().unwrap(), id]);
        assert!(!out.status.success(), "{id:?} accepted");
        assert!(
            stderr_of(&out).contains("container id"),
            "{}",
            stderr_of(&out)
        );
    }
    env.expect_no_state();
    assert!(!env.scratch.0.join("escape").exists());
}

#[test]
fn missing_program_fails_at_create() {
    let mut env = Env::new("no-program");
    env.args(&["/no/such/program"]);
    env.write_config();
    assert_fails_cleanly(&env, "/no/such/program");
    env.args(&["no-such-program-in-path"]);
    env.write_config();
    assert_fails_cleanly(&env, "executable file not found in $PATH");
}

#[test]
fn unsupported_features_say_so() {
    let mut env = Env::new("unsupported");
    env.config["linux"]["intelRdt"] = json!({"closID": "x"});
    env.write_config();
    assert_fails_cleanly(&env, "intelRdt");
}

#[test]
fn duplicate_id_and_concurrent_creates_of_one_id() {
    let mut env = Env::new("dup-id");
    env.sh("sleep 100");
    env.create_ok();
    let out = env.create();
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("already exists"),
        "{}",
        stderr_of(&out)
    );
    // The first container is untouched.
    assert_eq!(env.status(), "created");
    assert!(env.berth(&["delete", &env.id]).status.success());

    // Eight creates of one ID at once: exactly one wins.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let root = env.root.clone();
            let bundle = env.bundle.clone();
            let id = env.id.clone();
            let dir = env.scratch.0.clone();
            std::thread::spawn(move || {
                let mut cmd = std::process::Command::new(BERTH);
                cmd.arg("--root")
                    .arg(&root)
                    .args(["create", "-b"])
                    .arg(&bundle)
                    .arg(&id);
                output_via_files(cmd, &dir).status.success()
            })
        })
        .collect();
    let wins = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|w| *w)
        .count();
    assert_eq!(wins, 1);
    assert_eq!(env.status(), "created");
    assert!(env.berth(&["delete", &env.id]).status.success());
    env.expect_no_state();
}

#[test]
fn eight_concurrent_runs_on_one_bundle() {
    let mut env = Env::new("concurrent");
    env.config["linux"]
        .as_object_mut()
        .unwrap()
        .remove("cgroupsPath");
    env.sh("echo ok");
    env.write_config();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let root = env.root.clone();
            let bundle = env.bundle.clone();
            let id = format!("{}-{i}", env.id);
            let dir = env.scratch.0.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for round in 0..5 {
                    let mut cmd = std::process::Command::new(BERTH);
                    cmd.arg("--root")
                        .arg(&root)
                        .args(["run", "-b"])
                        .arg(&bundle)
                        .arg(format!("{id}-{round}"));
                    out.push(output_via_files(cmd, &dir));
                }
                out
            })
        })
        .collect();
    for h in handles {
        for out in h.join().unwrap() {
            assert!(out.status.success(), "{}", stderr_of(&out));
            assert_eq!(stdout_of(&out), "ok\n");
        }
    }
    env.expect_no_state();
}

#[test]
fn hundreds_in_a_row() {
    let mut env = Env::new("in-a-row");
    env.sh("true");
    env.write_config();
    for i in 0..200 {
        let out = env.berth(&["run", "-b", env.bundle.to_str().unwrap(), &env.id]);
        assert!(out.status.success(), "run {i}: {}", stderr_of(&out));
    }
    env.expect_no_state();
}

#[test]
fn create_killed_half_way_is_cleaned_by_delete_force() {
    let mut env = Env::new("killed-create");
    env.sh("sleep 100");
    env.write_config();
    for i in 0..30u64 {
        let id = format!("{}-{i}", env.id);
        let mut child = std::process::Command::new(BERTH)
            .arg("--root")
            .arg(&env.root)
            .args(["create", "-b"])
            .arg(&env.bundle)
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Somewhere between not started yet and done.
        std::thread::sleep(std::time::Duration::from_micros(500 * (i % 12)));
        let _ = child.kill();
        let _ = child.wait();
        let out = env.berth(&["delete", "--force", &id]);
        assert!(
            out.status.success(),
            "delete -f after kill {i}: {}",
            stderr_of(&out)
        );
    }
    env.expect_no_state();
    // No container process survived: nothing runs `sleep 100` from this bundle.
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    let leftover = stdout_of(&ps)
        .lines()
        .filter(|l| l.contains(env.root.to_str().unwrap()))
        .count();
    assert_eq!(leftover, 0, "{}", stdout_of(&ps));
}
