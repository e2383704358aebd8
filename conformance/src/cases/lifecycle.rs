//! runtime.md "Lifecycle", "State", "Operations".

use serde_json::json;

use super::{case, Case};
use crate::harness::{check, expect_eq, wait_until};

pub fn cases() -> Vec<Case> {
    vec![
        case("lifecycle/create-then-state-is-created", |c| {
            c.sh("sleep 60");
            c.create()?;
            let st = c.state()?;
            expect_eq("status", st["status"].as_str().unwrap_or(""), "created")?;
            check(st["pid"].as_i64().unwrap_or(0) > 0, || {
                format!("pid {}", st["pid"])
            })
        }),
        case("lifecycle/created-has-not-run-the-program", |c| {
            c.sh("touch /ran; sleep 60");
            c.create()?;
            check(!c.host_path("/ran").exists(), || {
                "the program ran before start".into()
            })
        }),
        case("lifecycle/start-runs-the-program", |c| {
            c.sh("touch /ran; sleep 60");
            c.create()?;
            c.start()?;
            let ran = c.host_path("/ran");
            check(wait_until(15, || ran.exists()), || {
                "the program did not run after start".into()
            })
        }),
        case("lifecycle/state-fields", |c| {
            c.sh("sleep 60");
            c.set("/annotations", json!({"org.conformance.key": "v"}));
            c.create()?;
            let st = c.state()?;
            // The version the state document follows: the runtime's, any 1.x.
            let v = st["ociVersion"].as_str().unwrap_or("");
            check(v.starts_with("1."), || format!("ociVersion {v:?}"))?;
            expect_eq("id", st["id"].as_str().unwrap_or(""), &c.id.clone())?;
            expect_eq(
                "bundle",
                st["bundle"].as_str().unwrap_or(""),
                &c.bundle.display().to_string(),
            )?;
            expect_eq(
                "annotations",
                st["annotations"]["org.conformance.key"]
                    .as_str()
                    .unwrap_or(""),
                "v",
            )
        }),
        case("lifecycle/kill-then-stopped", |c| {
            c.sh("sleep 60");
            c.create()?;
            c.start()?;
            let id = c.id.clone();
            let out = c.runtime(&["kill", &id, "KILL"]);
            check(out.ok(), || format!("kill: {}", out.stderr.trim()))?;
            c.wait_status("stopped")
        }),
        case("lifecycle/delete-removes-the-container", |c| {
            c.sh("sleep 60");
            c.create()?;
            c.start()?;
            let id = c.id.clone();
            c.runtime(&["kill", &id, "KILL"]);
            c.wait_status("stopped")?;
            let out = c.runtime(&["delete", &id]);
            check(out.ok(), || format!("delete: {}", out.stderr.trim()))?;
            let out = c.runtime(&["state", &id]);
            check(!out.ok(), || {
                "state of a deleted container succeeded".into()
            })
        }),
        case("lifecycle/start-twice-fails", |c| {
            c.sh("sleep 60");
            c.create()?;
            c.start()?;
            let id = c.id.clone();
            let out = c.runtime(&["start", &id]);
            check(!out.ok(), || "second start succeeded".into())
        }),
        case("lifecycle/delete-running-without-force-fails", |c| {
            c.sh("sleep 60");
            c.create()?;
            c.start()?;
            let id = c.id.clone();
            let out = c.runtime(&["delete", &id]);
            check(!out.ok(), || {
                "delete of a running container succeeded".into()
            })?;
            expect_eq(
                "status",
                c.state()?["status"].as_str().unwrap_or(""),
                "running",
            )
        }),
        case("lifecycle/unknown-id-fails", |c| {
            let out = c.runtime(&["state", "no-such-container-here"]);
            check(!out.ok(), || "state of an unknown ID succeeded".into())
        }),
        case("lifecycle/duplicate-id-fails", |c| {
            c.sh("sleep 60");
            c.create()?;
            let (b, id) = (c.bundle.display().to_string(), c.id.clone());
            let out = c.runtime(&["create", "--bundle", &b, &id]);
            check(!out.ok(), || "second create of one ID succeeded".into())?;
            expect_eq(
                "status",
                c.state()?["status"].as_str().unwrap_or(""),
                "created",
            )
        }),
        case("lifecycle/run-exit-status", |c| {
            c.sh("exit 7");
            let out = c.run()?;
            check(out.code == 7, || {
                format!("exit status {}, want 7", out.code)
            })
        }),
        case("lifecycle/pid-file", |c| {
            c.sh("sleep 60");
            c.write_config()
                .map_err(|e| crate::harness::Verdict::Fail(e.to_string()))?;
            let pf = c.dir.join("pid").display().to_string();
            let (b, id) = (c.bundle.display().to_string(), c.id.clone());
            let out = c.runtime(&["create", "--bundle", &b, "--pid-file", &pf, &id]);
            check(out.ok(), || format!("create: {}", out.stderr.trim()))?;
            let pid = std::fs::read_to_string(&pf).unwrap_or_default();
            expect_eq("pid file", pid.trim(), &c.state()?["pid"].to_string())
        }),
        case("lifecycle/kill-signal-reaches-the-process", |c| {
            // The shell is pid 1 of its namespace: a signal before the trap
            // is set would be ignored, so it says when it is ready.
            c.sh("trap 'echo got-usr1 > /sig; exit 0' USR1; touch /ready; while true; do sleep 0.05; done");
            c.create()?;
            c.start()?;
            let ready = c.host_path("/ready");
            check(wait_until(15, || ready.exists()), || {
                "the program never set its trap".into()
            })?;
            let id = c.id.clone();
            let out = c.runtime(&["kill", &id, "USR1"]);
            check(out.ok(), || format!("kill: {}", out.stderr.trim()))?;
            c.wait_status("stopped")?;
            let got = std::fs::read_to_string(c.host_path("/sig")).unwrap_or_default();
            expect_eq("trap output", got.trim(), "got-usr1")
        }),
        case("lifecycle/kill-numeric-signal", |c| {
            c.sh("sleep 60");
            c.create()?;
            c.start()?;
            let id = c.id.clone();
            let out = c.runtime(&["kill", &id, "9"]);
            check(out.ok(), || format!("kill 9: {}", out.stderr.trim()))?;
            c.wait_status("stopped")
        }),
    ]
}
