//! config-linux.md "Seccomp": what a denied syscall does inside.

use serde_json::{json, Value};

use super::{case, Case};
use crate::harness::{check, expect_eq, Ctx};

fn allow_but(syscalls: Value) -> Value {
    json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"], "syscalls": syscalls})
}

pub fn cases() -> Vec<Case> {
    vec![
        case("seccomp/errno-default-eperm", |c: &mut Ctx| {
            c.set(
                "/linux/seccomp",
                allow_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}])),
            );
            c.sh("mkdir /tmp/x 2>&1");
            let out = c.run()?;
            check(out.stdout.contains("Operation not permitted"), || {
                format!("mkdir: {:?}", out.stdout)
            })
        }),
        case("seccomp/errno-ret", |c: &mut Ctx| {
            c.set("/linux/seccomp", allow_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}])));
            c.sh("mkdir /tmp/x 2>&1");
            let out = c.run()?;
            check(out.stdout.contains("Permission denied"), || {
                format!("mkdir: {:?}", out.stdout)
            })
        }),
        case("seccomp/kill-process", |c: &mut Ctx| {
            c.set(
                "/linux/seccomp",
                allow_but(json!([{"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"}])),
            );
            c.set("/process/args", json!(["uname"]));
            let out = c.run()?;
            check(out.code == 128 + libc::SIGSYS, || {
                format!("exit status {}", out.code)
            })
        }),
        case("seccomp/trap", |c: &mut Ctx| {
            c.set(
                "/linux/seccomp",
                allow_but(json!([{"names": ["uname"], "action": "SCMP_ACT_TRAP"}])),
            );
            c.set("/process/args", json!(["uname"]));
            let out = c.run()?;
            check(out.code == 128 + libc::SIGSYS, || {
                format!("exit status {}", out.code)
            })
        }),
        case("seccomp/argument-condition", |c: &mut Ctx| {
            c.set("/linux/seccomp", allow_but(json!([{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]}])));
            c.sh("kill -USR1 $$ 2>/dev/null || echo usr1-denied; kill -0 $$ && echo zero-ok");
            expect_eq("output", &c.run_ok()?, "usr1-denied\nzero-ok\n")
        }),
        case("seccomp/masked-equal-condition", |c: &mut Ctx| {
            c.set("/linux/seccomp", allow_but(json!([
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 63, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 2, "value": 63, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
            ])));
            c.sh("touch /tmp/a; chmod 700 /tmp/a 2>/dev/null || echo 700-denied; chmod 755 /tmp/a && echo 755-ok");
            expect_eq("output", &c.run_ok()?, "700-denied\n755-ok\n")
        }),
        case("seccomp/default-action-with-errno-ret", |c: &mut Ctx| {
            // Allow every syscall this machine knows by name except mkdir;
            // the default action answers mkdir with defaultErrnoRet.
            let Ok(table) =
                std::fs::read_to_string("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
            else {
                return Err(crate::harness::Verdict::Skip(
                    "no syscall table (linux-libc-dev) on this machine".into(),
                ));
            };
            let names: Vec<&str> = table
                .lines()
                .filter_map(|l| l.strip_prefix("#define __NR_")?.split_whitespace().next())
                .filter(|n| *n != "mkdir" && *n != "mkdirat")
                .collect();
            c.set(
                "/linux/seccomp",
                json!({
                    "defaultAction": "SCMP_ACT_ERRNO",
                    "defaultErrnoRet": 13,
                    "architectures": ["SCMP_ARCH_X86_64"],
                    "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
                }),
            );
            c.sh("mkdir /tmp/d 2>&1; echo done");
            let out = c.run()?;
            check(out.stdout.contains("Permission denied"), || {
                format!(
                    "mkdir under the default action: {:?} {}",
                    out.stdout,
                    out.stderr.trim()
                )
            })
        }),
        case("seccomp/filter-is-active", |c: &mut Ctx| {
            c.set(
                "/linux/seccomp",
                allow_but(json!([{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}])),
            );
            c.sh("grep Seccomp: /proc/self/status | tr -d '\\t'");
            let out = c.run_ok()?;
            check(out.starts_with("Seccomp:2"), || format!("status: {out:?}"))
        }),
        case("seccomp/unknown-syscall-name-skipped", |c: &mut Ctx| {
            c.set("/linux/seccomp", allow_but(json!([{"names": ["mkdir", "mkdirat", "no_such_syscall_x"], "action": "SCMP_ACT_ERRNO"}])));
            c.sh("mkdir /tmp/y 2>/dev/null || echo denied");
            expect_eq("output", &c.run_ok()?, "denied\n")
        }),
    ]
}
