//! config.md "Hooks": each kind, order, state on stdin, where they run, and
//! what a failure does.

mod common;

use common::*;
use serde_json::json;

/// A hook that appends "<name> <what it saw>" to `log`.
fn hook(env: &Env, name: &str, script: &str) -> serde_json::Value {
    let log = env.scratch.0.join("hooks.log");
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("{script}"), name],
        "env": [format!("LOG={}", log.display()), format!("NAME={name}")]
    })
}

fn log_of(env: &Env) -> String {
    std::fs::read_to_string(env.scratch.0.join("hooks.log")).unwrap_or_default()
}

const RECORD: &str = "state=$(cat); echo \"$NAME $0 $(echo \"$state\" | tr -d '\\n') net=$(readlink /proc/self/ns/net)\" >> $LOG";

#[test]
fn every_hook_in_order_with_state_on_stdin() {
    let mut env = Env::new("hooks-order");
    env.config["root"]["readonly"] = json!(false);
    env.config["hooks"] = json!({
        "prestart": [hook(&env, "prestart", RECORD)],
        "createRuntime": [hook(&env, "createRuntime", RECORD)],
        "createContainer": [hook(&env, "createContainer", RECORD)],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/start-state; echo startContainer >> /tmp/order"]}],
        "poststart": [hook(&env, "poststart", RECORD)],
        "poststop": [hook(&env, "poststop", RECORD)]
    });
    env.sh("cat /tmp/order; sleep 0.2");
    let out = env.run_ok();
    assert_eq!(out, "startContainer\n");
    let log = log_of(&env);
    let lines: Vec<&str> = log.lines().collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        kinds,
        vec![
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "poststop"
        ],
        "{log}"
    );
    let host_net = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string();
    for line in &lines {
        // argv[0] is the hook's args[0] as given: here the kind's name.
        let argv0 = line.split(' ').nth(1).unwrap();
        assert_eq!(argv0, line.split(' ').next().unwrap());
        assert!(line.contains(&format!("\"id\":\"{}\"", env.id)), "{line}");
        let in_container = line.starts_with("createContainer");
        assert_eq!(
            !line.ends_with(&format!("net={host_net}")),
            in_container,
            "{line}"
        );
    }
    assert!(lines[0].contains("\"status\":\"creating\""), "{}", lines[0]);
    assert!(lines[3].contains("\"status\":\"running\""), "{}", lines[3]);
    assert!(lines[4].contains("\"status\":\"stopped\""), "{}", lines[4]);
    let start_state = std::fs::read_to_string(env.bundle.join("rootfs/tmp/start-state")).unwrap();
    assert!(
        start_state.contains("\"status\":\"created\""),
        "{start_state}"
    );
}

#[test]
fn failing_create_hooks_fail_create_and_leave_nothing() {
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let mut env = Env::new(&format!("hooks-fail-{}", kind.to_lowercase()));
        env.config["hooks"] = json!({ kind: [hook(&env, kind, "echo broken >&2; exit 3")] });
        let (code, _, err) = env.run();
        assert_ne!(code, 0, "{kind}");
        assert!(
            err.contains(kind) && err.contains("exit status 3") && err.contains("broken"),
            "{err}"
        );
        env.expect_no_state();
    }
}

#[test]
fn failing_start_container_hook_stops_the_container() {
    let mut env = Env::new("hooks-fail-startcontainer");
    env.config["hooks"] = json!({"startContainer": [{"path": "/bin/false"}]});
    env.sh("echo should-not-run");
    let (code, out, _) = env.run();
    assert_ne!(code, 0);
    assert!(!out.contains("should-not-run"));
    env.expect_no_state();
}

#[test]
fn failing_poststart_stops_the_container() {
    let mut env = Env::new("hooks-fail-poststart");
    env.config["hooks"] = json!({"poststart": [hook(&env, "poststart", "exit 4")]});
    env.sh("sleep 100");
    env.create_ok();
    let out = env.berth(&["start", &env.id]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("poststart"), "{}", stderr_of(&out));
    wait_until(15, || env.status() == "stopped");
    assert_eq!(env.status(), "stopped");
    assert!(env.berth(&["delete", &env.id]).status.success());
    env.expect_no_state();
}

#[test]
fn failing_poststop_is_a_warning() {
    let mut env = Env::new("hooks-fail-poststop");
    env.config["hooks"] = json!({"poststop": [hook(&env, "poststop", "exit 5")]});
    env.sh("sleep 100");
    env.create_ok();
    let out = env.berth(&["delete", &env.id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("poststop"), "{}", stderr_of(&out));
    env.expect_no_state();
}

#[test]
fn hook_timeout_and_missing_hook() {
    let mut env = Env::new("hooks-timeout");
    let mut h = hook(&env, "createRuntime", "sleep 10");
    h["timeout"] = json!(1);
    env.config["hooks"] = json!({ "createRuntime": [h] });
    let started = std::time::Instant::now();
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(err.contains("timed out"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
    env.expect_no_state();

    env.config["hooks"] = json!({"prestart": [{"path": "/no/such/hook"}]});
    let (code, _, err) = env.run();
    assert_ne!(code, 0);
    assert!(err.contains("/no/such/hook"), "{err}");
    env.expect_no_state();
}
