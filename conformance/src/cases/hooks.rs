//! config.md "Hooks".

use serde_json::{json, Value};

use super::{case, Case};
use crate::harness::{check, Ctx, Verdict};

/// A hook appending "<name> <state on stdin>" to the case's log.
fn hook(c: &Ctx, name: &str, script: &str) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", script, name],
        "env": [format!("LOG={}", c.dir.join("hooks.log").display())]
    })
}

const RECORD: &str = "echo \"$0 $(cat | tr -d '\\n')\" >> $LOG";

fn log(c: &Ctx) -> String {
    std::fs::read_to_string(c.dir.join("hooks.log")).unwrap_or_default()
}

fn runs_case(kind: &'static str) -> Case {
    case(
        format!("hooks/{}-runs", kind.to_lowercase()),
        move |c: &mut Ctx| {
            let h = hook(c, kind, RECORD);
            c.set("/hooks", json!({ kind: [h] }));
            c.sh("sleep 0.1");
            let _ = c.run_ok()?;
            let log = log(c);
            check(log.lines().any(|l| l.starts_with(kind)), || {
                format!("{kind} did not run: {log:?}")
            })
        },
    )
}

pub fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = [
        "prestart",
        "createRuntime",
        "createContainer",
        "poststart",
        "poststop",
    ]
    .into_iter()
    .map(runs_case)
    .collect();
    v.push(case("hooks/order", |c: &mut Ctx| {
        let mut hooks = json!({});
        for kind in [
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "poststop",
        ] {
            hooks[kind] = json!([hook(c, kind, RECORD)]);
        }
        c.set("/hooks", hooks);
        c.sh("sleep 0.1");
        let _ = c.run_ok()?;
        let got: Vec<String> = log(c)
            .lines()
            .map(|l| l.split(' ').next().unwrap_or("").to_string())
            .collect();
        let want = [
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "poststop",
        ];
        check(got == want, || format!("order {got:?}"))
    }));
    v.push(case("hooks/state-on-stdin", |c: &mut Ctx| {
        let h = hook(c, "createRuntime", RECORD);
        c.set("/hooks", json!({"createRuntime": [h]}));
        c.sh("true");
        let _ = c.run_ok()?;
        let line = log(c);
        let doc = line.split_once(' ').map(|x| x.1).unwrap_or("");
        let v: Value = serde_json::from_str(doc.trim())
            .map_err(|e| Verdict::Fail(format!("state is not JSON ({e}): {doc:?}")))?;
        check(
            v["id"] == c.id.as_str()
                && v["pid"].as_i64().unwrap_or(0) > 0
                && v["bundle"].is_string(),
            || format!("state: {v}"),
        )
    }));
    v.push(case("hooks/start-container-runs-inside", |c: &mut Ctx| {
        c.set("/hooks", json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo $$ > /start-hook-pid"]}]}));
        c.sh("cat /start-hook-pid");
        let out = c.run_ok()?;
        // In the container's pid namespace, the hook's PID is small.
        let pid: i64 = out.trim().parse().unwrap_or(-1);
        check((1..100).contains(&pid), || format!("startContainer pid {out:?}"))
    }));
    v.push(case(
        "hooks/failing-prestart-fails-create",
        |c: &mut Ctx| {
            c.set("/hooks", json!({"prestart": [{"path": "/bin/false"}]}));
            c.sh("sleep 60");
            c.write_config().map_err(|e| Verdict::Fail(e.to_string()))?;
            let (b, id) = (c.bundle.display().to_string(), c.id.clone());
            let out = c.runtime(&["create", "--bundle", &b, &id]);
            check(!out.ok(), || {
                "create succeeded with a failing prestart hook".into()
            })
        },
    ));
    v.push(case(
        "hooks/failing-poststop-still-deletes",
        |c: &mut Ctx| {
            c.set("/hooks", json!({"poststop": [{"path": "/bin/false"}]}));
            c.sh("sleep 60");
            c.create()?;
            let id = c.id.clone();
            let _ = c.runtime(&["delete", "--force", &id]);
            let out = c.runtime(&["state", &id]);
            check(!out.ok(), || "the container survived delete".into())
        },
    ));
    v
}
