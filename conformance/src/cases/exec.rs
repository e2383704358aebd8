//! exec (runc's contract): a new process in a running container.

use super::{case, Case};
use crate::harness::{check, expect_eq, wait_until, Ctx, Out};

/// A running container whose init has become `sleep` (the shell execs it).
fn running(c: &mut Ctx) -> crate::harness::CaseResult {
    c.sh("sleep 60");
    c.create()?;
    c.start()?;
    let pid = c.state()?["pid"].to_string();
    check(
        wait_until(15, || {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "sleep")
        }),
        || "the init never became sleep".into(),
    )
}

fn exec(c: &mut Ctx, flags: &[&str], cmd: &[&str]) -> Out {
    let id = c.id.clone();
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.push(&id);
    args.extend_from_slice(cmd);
    c.runtime(&args)
}

pub fn cases() -> Vec<Case> {
    vec![
        case("exec/joins-the-pid-namespace", |c: &mut Ctx| {
            running(c)?;
            let out = exec(c, &[], &["sh", "-c", "ps -o comm | grep -c sleep"]);
            expect_eq("sleep visible", out.stdout.trim(), "1")
        }),
        case("exec/joins-the-network-namespace", |c: &mut Ctx| {
            running(c)?;
            let pid = c.state()?["pid"].to_string();
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let out = exec(c, &[], &["readlink", "/proc/self/ns/net"]);
            expect_eq("net", out.stdout.trim(), &theirs)
        }),
        case("exec/exit-status", |c: &mut Ctx| {
            running(c)?;
            let out = exec(c, &[], &["sh", "-c", "exit 5"]);
            check(out.code == 5, || format!("exit status {}", out.code))
        }),
        case("exec/env", |c: &mut Ctx| {
            running(c)?;
            let out = exec(
                c,
                &["--env", "EXEC_VAR=fromexec"],
                &["sh", "-c", "echo $EXEC_VAR"],
            );
            expect_eq("env", out.stdout.trim(), "fromexec")
        }),
        case("exec/user", |c: &mut Ctx| {
            running(c)?;
            let out = exec(
                c,
                &["--user", "1234:2345"],
                &["sh", "-c", "echo $(id -u):$(id -g)"],
            );
            expect_eq("user", out.stdout.trim(), "1234:2345")
        }),
        case("exec/cwd", |c: &mut Ctx| {
            running(c)?;
            let out = exec(c, &["--cwd", "/etc"], &["pwd"]);
            expect_eq("cwd", out.stdout.trim(), "/etc")
        }),
        case("exec/capability-added", |c: &mut Ctx| {
            running(c)?;
            let out = exec(
                c,
                &["--cap", "CAP_SYS_ADMIN"],
                &["sh", "-c", "grep CapEff /proc/self/status"],
            );
            let v = u64::from_str_radix(out.stdout.trim().trim_start_matches("CapEff:").trim(), 16)
                .unwrap_or(0);
            check(v & (1 << 21) != 0, || format!("CapEff {:?}", out.stdout))
        }),
        case("exec/arguments-verbatim", |c: &mut Ctx| {
            running(c)?;
            let out = exec(c, &[], &["sh", "-c", "echo \"$0 $1\"", "-t", "--help"]);
            expect_eq("argv", out.stdout.trim(), "-t --help")
        }),
    ]
}
