//! config.md "process" and the Linux process attributes: values a runtime
//! ignoring the field could not produce by accident.

use serde_json::json;

use super::{case, Case};
use crate::harness::{check, expect_eq, fail, Ctx, Verdict};

/// The value of `name:` in /proc/self/status as the container sees it.
fn status_field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or("")
        .trim()
        .to_string()
}

fn caps_case(set: &'static str, field: &'static str) -> Case {
    case(format!("process/capabilities-{set}"), move |c: &mut Ctx| {
        // CAP_KILL (5) and CAP_NET_RAW (13) in every set, CAP_SYS_TIME (25)
        // only in bounding; ambient only takes what inheritable allows.
        let both = json!(["CAP_KILL", "CAP_NET_RAW"]);
        c.set(
            "/process/capabilities",
            json!({
                "bounding": ["CAP_KILL", "CAP_NET_RAW", "CAP_SYS_TIME"],
                "effective": both, "permitted": both, "inheritable": both, "ambient": both
            }),
        );
        c.set("/process/user", json!({"uid": 1234, "gid": 1234}));
        c.sh("cat /proc/self/status");
        let out = c.run_ok()?;
        let want = if set == "bounding" {
            "0000000002002020"
        } else {
            "0000000000002020"
        };
        expect_eq(field, &status_field(&out, field), want)
    })
}

pub fn cases() -> Vec<Case> {
    vec![
        case("process/args", |c| {
            c.set(
                "/process/args",
                json!(["sh", "-c", "echo \"$0|$1\"", "zero", "one two"]),
            );
            expect_eq("output", &c.run_ok()?, "zero|one two\n")
        }),
        case("process/env", |c| {
            c.set(
                "/process/env",
                json!(["PATH=/bin", "CONFORMANCE_VAR=value 42"]),
            );
            c.sh("echo \"$CONFORMANCE_VAR\"");
            expect_eq("env", &c.run_ok()?, "value 42\n")
        }),
        case("process/cwd", |c| {
            std::fs::create_dir_all(c.host_path("/srv/work"))
                .map_err(|e| Verdict::Fail(e.to_string()))?;
            c.set("/process/cwd", json!("/srv/work"));
            c.sh("pwd");
            expect_eq("cwd", &c.run_ok()?, "/srv/work\n")
        }),
        case("process/cwd-missing-is-not-run-elsewhere", |c| {
            // The spec is silent on a missing cwd: runc, crun and berth
            // make it. Whatever a runtime does, the program must never run
            // elsewhere.
            c.set("/process/cwd", json!("/no/such/dir"));
            c.sh("pwd");
            let out = c.run()?;
            check(out.code != 0 || out.stdout == "/no/such/dir\n", || {
                format!("ran in {:?}", out.stdout)
            })
        }),
        case("process/sigpipe-default", |c| {
            // A runtime written in a language that ignores SIGPIPE must not
            // hand that to the container: `yes | head` would never end.
            c.sh("cat /proc/self/status");
            let out = c.run_ok()?;
            let ignored = u64::from_str_radix(&status_field(&out, "SigIgn"), 16)
                .map_err(|e| Verdict::Fail(format!("SigIgn: {e}")))?;
            check(ignored & (1 << 12) == 0, || {
                format!("SIGPIPE ignored (SigIgn {ignored:016x})")
            })
        }),
        case("process/user-uid", |c| {
            c.set("/process/user", json!({"uid": 1234, "gid": 2345}));
            c.sh("id -u");
            expect_eq("uid", &c.run_ok()?, "1234\n")
        }),
        case("process/user-gid", |c| {
            c.set("/process/user", json!({"uid": 1234, "gid": 2345}));
            c.sh("id -g");
            expect_eq("gid", &c.run_ok()?, "2345\n")
        }),
        case("process/user-additional-gids", |c| {
            c.set(
                "/process/user",
                json!({"uid": 1234, "gid": 2345, "additionalGids": [3456, 4567]}),
            );
            c.sh("id -G");
            expect_eq("groups", &c.run_ok()?, "2345 3456 4567\n")
        }),
        case("process/user-umask", |c| {
            c.set("/process/user", json!({"uid": 0, "gid": 0, "umask": 23}));
            c.sh("umask");
            expect_eq("umask", &c.run_ok()?, "0027\n")
        }),
        case("process/rlimit-nofile", |c| {
            c.set(
                "/process/rlimits",
                json!([{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}]),
            );
            c.sh("echo $(ulimit -n) $(ulimit -Hn)");
            expect_eq("nofile", &c.run_ok()?, "321 654\n")
        }),
        case("process/rlimit-nproc", |c| {
            c.set("/process/rlimits", json!([{"type": "RLIMIT_NPROC", "soft": 777, "hard": 888}, {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}]));
            c.sh("echo $(ulimit -u) $(ulimit -Hu)");
            expect_eq("nproc", &c.run_ok()?, "777 888\n")
        }),
        case("process/rlimit-core", |c| {
            c.set("/process/rlimits", json!([{"type": "RLIMIT_CORE", "soft": 4096, "hard": 8192}, {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}]));
            c.sh("echo $(ulimit -c) $(ulimit -Hc)");
            // ulimit -c counts 512-byte blocks (busybox: 1024-byte).
            let out = c.run_ok()?;
            check(out == "8 16\n" || out == "4 8\n", || {
                format!("core limits {out:?}")
            })
        }),
        case("process/no-new-privileges-set", |c| {
            c.set("/process/noNewPrivileges", json!(true));
            c.sh("cat /proc/self/status");
            expect_eq("NoNewPrivs", &status_field(&c.run_ok()?, "NoNewPrivs"), "1")
        }),
        case("process/no-new-privileges-unset", |c| {
            c.set("/process/noNewPrivileges", json!(false));
            c.sh("cat /proc/self/status");
            expect_eq("NoNewPrivs", &status_field(&c.run_ok()?, "NoNewPrivs"), "0")
        }),
        case("process/oom-score-adj", |c| {
            c.set("/process/oomScoreAdj", json!(345));
            c.sh("cat /proc/self/oom_score_adj");
            expect_eq("oom_score_adj", &c.run_ok()?, "345\n")
        }),
        caps_case("bounding", "CapBnd"),
        caps_case("effective", "CapEff"),
        caps_case("permitted", "CapPrm"),
        caps_case("inheritable", "CapInh"),
        caps_case("ambient", "CapAmb"),
        case("process/home-from-passwd", |c| {
            c.set("/process/user", json!({"uid": 1234, "gid": 1234}));
            c.set("/process/env", json!(["PATH=/bin"]));
            c.sh("echo $HOME");
            expect_eq("HOME", &c.run_ok()?, "/home/user\n")
        }),
        case("process/terminal-console-socket", |c| {
            use std::os::fd::AsRawFd;
            c.set("/process/terminal", json!(true));
            c.set("/process/consoleSize", json!({"height": 31, "width": 97}));
            c.sh("[ -t 0 ] && stty size; sleep 60");
            c.write_config().map_err(|e| Verdict::Fail(e.to_string()))?;
            let sock = c.dir.join("console.sock");
            let listener = std::os::unix::net::UnixListener::bind(&sock)
                .map_err(|e| Verdict::Fail(e.to_string()))?;
            let (b, id, s) = (
                c.bundle.display().to_string(),
                c.id.clone(),
                sock.display().to_string(),
            );
            let out = c.runtime(&["create", "--bundle", &b, "--console-socket", &s, &id]);
            check(out.ok(), || format!("create: {}", out.stderr.trim()))?;
            listener.set_nonblocking(true).ok();
            let conn = listener
                .accept()
                .map_err(|e| {
                    Verdict::Fail(format!("nothing connected to the console socket: {e}"))
                })?
                .0;
            let master = crate::recv_fd(conn.as_raw_fd()).map_err(Verdict::Fail)?;
            c.start()?;
            let text = crate::read_until(master, "31 97", std::time::Duration::from_secs(15));
            check(text.contains("31 97"), || {
                format!("terminal output {text:?}")
            })
        }),
        case("process/exec-missing-program-fails", |c| {
            c.set("/process/args", json!(["/no/such/program"]));
            let out = c.run()?;
            check(out.code != 0, || "a missing program ran".into())
        }),
        case("process/hostname", |c| {
            c.set("/hostname", json!("conformance-host"));
            c.sh("hostname");
            expect_eq("hostname", &c.run_ok()?, "conformance-host\n")
        }),
        case("process/domainname", |c| {
            c.set("/domainname", json!("conformance.test"));
            c.sh("cat /proc/sys/kernel/domainname");
            match c.run_ok() {
                Ok(out) => expect_eq("domainname", &out, "conformance.test\n"),
                Err(e) => Err(e),
            }
        }),
        case("process/sysctl", |c| {
            c.set(
                "/linux/sysctl",
                json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}),
            );
            c.sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni");
            expect_eq("sysctl", &c.run_ok()?, "1\n1234\n")
        }),
        case("process/no-fd-leaks", |c| {
            c.sh("ls /proc/self/fd | tr '\\n' ' '");
            let out = c.run_ok()?;
            // 0-2 and ls's own directory fd.
            expect_eq("fds", out.trim(), "0 1 2 3")
        }),
        case("process/unknown-field-ignored", |c| {
            c.set("/process/someFutureField", json!({"x": 1}));
            c.set("/someFutureTopLevel", json!(true));
            c.sh("echo ok");
            expect_eq("output", &c.run_ok()?, "ok\n")
        }),
        case("process/malformed-config-fails", |c| {
            std::fs::write(c.bundle.join("config.json"), "{\"ociVersion\": ")
                .map_err(|e| Verdict::Fail(e.to_string()))?;
            let (b, id) = (c.bundle.display().to_string(), c.id.clone());
            let out = c.runtime(&["run", "--bundle", &b, &id]);
            if out.code == 0 {
                return fail("malformed config.json accepted");
            }
            Ok(())
        }),
    ]
}
