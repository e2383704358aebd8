//! The container lifecycle after `run`: start (the writable layer kept),
//! restart, kill, wait, pause/unpause, rename, top, stats, inspect, diff,
//! restart policies, health checks, and `ps` as docker shows it — real
//! containers through the real `berth`, each test in a store of its own
//! with `--net none` (the network test makes its own namespace).

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// A store with busybox:test, and its containers removed when the test
/// ends however it ends.
struct Setup {
    img: Img,
    scratch: Scratch,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let scratch = Scratch::new(tag);
        let img = Img::new(&scratch, "store");
        img.import_busybox(&scratch, "busybox:test");
        Setup { img, scratch }
    }

    /// `run -d --net none --name NAME ARGS... busybox:test CMD...`.
    fn run_d(&self, name: &str, flags: &[&str], cmd: &[&str]) {
        let mut args = vec!["run", "-d", "--net", "none", "--name", name];
        args.extend_from_slice(flags);
        args.push("busybox:test");
        args.extend_from_slice(cmd);
        assert_eq!(self.img.ok(&args).trim(), name);
    }

    /// A container that runs, made on first use.
    fn running(&self) -> String {
        let n = name("runner");
        if self
            .img
            .run(&["inspect", "--type", "container", &n])
            .status
            .success()
        {
            return n;
        }
        self.run_d(&n, &[], &["sleep", "600"]);
        n
    }

    fn inspect(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.img.ok(&["inspect", name])).unwrap();
        v[0].clone()
    }

    fn field(&self, name: &str, template: &str) -> String {
        self.img
            .ok(&["inspect", "-f", template, name])
            .trim()
            .to_string()
    }

    fn status(&self, name: &str) -> String {
        self.field(name, "{{.State.Status}}")
    }

    /// Waits (up to 30 s) for `f` to hold of the container's inspect.
    fn until(&self, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        eventually(30, || {
            last = self.inspect(name);
            f(&last).then_some(())
        })
        .unwrap_or_else(|| panic!("{name}: never {what}:\n{last:#}"));
        last
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        drop(RemoveContainers {
            img: &self.img,
            ns: None,
        });
        assert!(
            mounts_below(&self.img.root).is_empty() || std::thread::panicking(),
            "{:?}",
            mounts_below(&self.img.root)
        );
    }
}

fn name(tag: &str) -> String {
    format!("{tag}{}", std::process::id())
}

/// No process of ours is left for the store: no supervisor (one that
/// has released the container may take a moment to exit).
fn assert_nothing_runs(img: &Img) {
    let root = img.root.to_string_lossy().into_owned();
    let left = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&root) && c.contains("supervise"))
            .collect()
    };
    if eventually(10, || left().is_empty().then_some(())).is_none() {
        panic!("{:?}", left());
    }
}

#[test]
fn start_keeps_the_writable_layer_and_stop_kill_wait_pause_work() {
    let s = Setup::new("life-start");
    let c = name("keep");
    s.run_d(&c, &[], &["sleep", "600"]);
    s.img.ok(&["exec", &c, "sh", "-c", "echo kept > /data.txt"]);
    let first_start = s.field(&c, "{{.State.StartedAt}}");
    assert_eq!(s.img.ok(&["stop", "-t", "1", &c]).trim(), c);
    let st = s.inspect(&c)["State"].clone();
    assert_eq!(st["Status"], "exited");
    assert_eq!(st["Running"], false);
    assert_eq!(st["Pid"], 0);
    assert_eq!(st["ExitCode"], 137);
    assert_ne!(st["FinishedAt"], "0001-01-01T00:00:00Z");

    // start: the same container, its file still there.
    assert_eq!(s.img.ok(&["start", &c]).trim(), c);
    assert_eq!(s.status(&c), "running");
    assert_eq!(s.img.ok(&["exec", &c, "cat", "/data.txt"]), "kept\n");
    assert_ne!(s.field(&c, "{{.State.StartedAt}}"), first_start);
    // start of a running container is nothing.
    s.img.ok(&["start", &c]);

    // restart: a new process, the layer kept.
    let pid = s.field(&c, "{{.State.Pid}}");
    assert_eq!(s.img.ok(&["restart", "-t", "0", &c]).trim(), c);
    assert_eq!(s.status(&c), "running");
    assert_ne!(s.field(&c, "{{.State.Pid}}"), pid);
    assert_eq!(s.img.ok(&["exec", &c, "cat", "/data.txt"]), "kept\n");

    // pause / unpause.
    assert_eq!(s.img.ok(&["pause", &c]).trim(), c);
    let st = s.inspect(&c)["State"].clone();
    assert_eq!(
        (
            st["Status"].as_str(),
            st["Paused"].as_bool(),
            st["Running"].as_bool()
        ),
        (Some("paused"), Some(true), Some(true))
    );
    let ps = s.img.ok(&["ps", "--format", "{{.Status}}"]);
    assert!(
        ps.starts_with("Up ") && ps.trim().ends_with("(Paused)"),
        "{ps}"
    );
    assert!(s.img.fail(&["pause", &c]).contains("already paused"));
    assert_eq!(s.img.ok(&["unpause", &c]).trim(), c);
    assert_eq!(s.status(&c), "running");
    assert!(s.img.fail(&["unpause", &c]).contains("is not paused"));

    // kill -s by name and number; wait prints the exit code and exits 0.
    let trap = name("trap");
    s.run_d(
        &trap,
        &[],
        &[
            "sh",
            "-c",
            "trap 'exit 7' HUP; while true; do sleep 0.1; done",
        ],
    );
    let o = s.img.run(&["kill", "-s", "BOGUS", &trap]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("Invalid signal: BOGUS"), "{}", text(&o));
    // The shell sets its trap a moment after it starts.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.img.ok(&["kill", "-s", "HUP", &trap]).trim(), trap);
    let o = s.img.run(&["wait", &trap]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "7\n");
    assert_eq!(s.field(&trap, "{{.State.ExitCode}}"), "7");
    // wait on a stopped container answers at once.
    assert_eq!(s.img.ok(&["wait", &trap]), "7\n");
    assert!(s.img.fail(&["kill", &trap]).contains("is not running"));
    assert_eq!(s.img.ok(&["kill", "-s", "9", &c]).trim(), c);
    assert_eq!(s.img.ok(&["wait", &c]), "137\n");
    assert!(s
        .img
        .fail(&["wait", "nonesuch"])
        .contains("No such container: nonesuch"));
    // Several names: the good ones done, the bad one named, exit 1.
    let o = s.img.run(&["rm", &c, "nonesuch", &trap]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{c}\n{trap}\n"));
    assert!(text(&o).contains("No such container: nonesuch"));
    assert_nothing_runs(&s.img);
}

#[test]
fn rename_is_seen_by_every_command_and_never_gives_a_name_twice() {
    let s = Setup::new("life-rename");
    let (a, b, c) = (name("ra"), name("rb"), name("rc"));
    s.run_d(&a, &[], &["sleep", "600"]);
    s.run_d(&b, &[], &["sleep", "600"]);
    s.img.ok(&["rename", &a, &c]);
    assert_eq!(s.inspect(&c)["Name"], format!("/{c}"));
    assert_eq!(s.img.ok(&["exec", &c, "echo", "hi"]), "hi\n");
    assert!(s
        .img
        .fail(&["exec", &a, "true"])
        .contains("No such container"));
    let names = s.img.ok(&["ps", "--format", "{{.Names}}"]);
    assert!(
        names.contains(&c) && !names.lines().any(|l| l == a),
        "{names}"
    );
    // Taken names are refused, in one line naming it.
    let e = s.img.fail(&["rename", &c, &b]);
    assert!(e.contains(&format!("{b:?} is already in use")), "{e}");
    assert_eq!(e.trim().lines().count(), 1);
    assert!(s.img.fail(&["rename", &c, &c]).contains("same name"));
    assert!(s
        .img
        .fail(&["rename", &c, "bad name"])
        .contains("invalid name"));
    // The old name is free again, though the renamed container is still
    // kept under it.
    s.run_d(&a, &[], &["sleep", "600"]);
    assert_ne!(s.inspect(&a)["Id"], s.inspect(&c)["Id"]);
    // By ID prefix too.
    let id = s.inspect(&c)["Id"].as_str().unwrap()[..12].to_string();
    assert_eq!(s.field(&id, "{{.Name}}"), format!("/{c}"));

    // Two renames to one name at once: exactly one wins.
    let target = name("rt");
    let attempts: Vec<_> = [&b, &c]
        .iter()
        .map(|n| s.img.cmd(&["rename", n, &target]).spawn().unwrap())
        .collect();
    let won = attempts
        .into_iter()
        .map(|ch| ch.wait_with_output().unwrap().status.success())
        .filter(|ok| *ok)
        .count();
    assert_eq!(won, 1);
    let names = s.img.ok(&["ps", "--format", "{{.Names}}"]);
    assert_eq!(names.lines().filter(|l| *l == target).count(), 1, "{names}");
    // A renamed container stops, starts and goes like any other.
    s.img.ok(&["restart", "-t", "0", &target]);
    assert_eq!(s.status(&target), "running");
    s.img.ok(&["rm", "-f", &target]);
    assert!(s.img.fail(&["inspect", &target]).contains(&target));
}

#[test]
fn top_stats_diff_and_inspect() {
    let s = Setup::new("life-inspect");
    let c = name("insp");
    let vol = name("vol");
    s.run_d(
        &c,
        &[
            "-m",
            "64m",
            "-e",
            "GREETING=hi",
            "-v",
            &format!("{vol}:/vol"),
        ],
        &[
            "sh",
            "-c",
            "mkdir /made; echo x > /made/f; rm /bin/vi; echo more >> /etc/passwd; exec sleep 600",
        ],
    );
    eventually(10, || {
        s.img.ok(&["diff", &c]).contains("/made/f").then_some(())
    })
    .expect("the container's changes");

    // top: ps on the host, the container's processes only.
    let top = s.img.ok(&["top", &c]);
    let mut lines = top.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{top}");
    assert!(rows[0].ends_with("sleep 600"), "{top}");
    let pid = s.field(&c, "{{.State.Pid}}");
    assert_eq!(rows[0].split_whitespace().nth(1), Some(pid.as_str()));
    let top = s.img.ok(&["top", &c, "-o", "pid,comm"]);
    assert_eq!(
        top.lines().nth(1).unwrap().split_whitespace().nth(1),
        Some("sleep")
    );

    // stats --no-stream: docker's columns, the cgroup's figures.
    let stats = s.img.ok(&["stats", "--no-stream", &c]);
    let lines: Vec<Vec<&str>> = stats
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        lines[0],
        [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS"
        ],
        "{stats}"
    );
    let row = &lines[1];
    assert_eq!(row[1], c);
    assert!(row[2].ends_with('%'), "{stats}");
    let (usage, limit) = row[3].split_once(" / ").unwrap();
    assert_eq!(limit, "64MiB", "{stats}");
    assert!(
        !usage.starts_with("0B") && (usage.ends_with("KiB") || usage.ends_with("MiB")),
        "{stats}"
    );
    assert_eq!(row[7], "1", "{stats}");
    let mem = s.img.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}: {{.MemPerc}}",
        &c,
    ]);
    assert!(
        mem.starts_with(&format!("{c}: ")) && mem.trim().ends_with('%'),
        "{mem}"
    );

    // diff: against the image; the runtime's own mount points are not
    // changes.
    let diff = s.img.ok(&["diff", &c]);
    for want in [
        "A /made",
        "A /made/f",
        "C /bin",
        "D /bin/vi",
        "C /etc",
        "C /etc/passwd",
    ] {
        assert!(diff.lines().any(|l| l == want), "{want} not in:\n{diff}");
    }
    assert!(
        !diff.contains("/etc/hosts") && !diff.contains("/proc"),
        "{diff}"
    );

    // inspect: docker's shape for what scripts read.
    let i = s.inspect(&c);
    assert_eq!(i["Id"].as_str().unwrap().len(), 64);
    assert_eq!(i["Name"], format!("/{c}"));
    assert!(i["Created"].as_str().unwrap().ends_with('Z'));
    let st = &i["State"];
    assert_eq!(st["Status"], "running");
    assert_eq!(st["Running"], true);
    assert_eq!(st["Paused"], false);
    assert_eq!(st["Restarting"], false);
    assert_eq!(st["ExitCode"], 0);
    assert_eq!(st["Pid"].as_i64().unwrap().to_string(), pid);
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(st["StartedAt"].as_str().unwrap().starts_with("20"));
    assert_eq!(st["FinishedAt"], "0001-01-01T00:00:00Z");
    assert!(st.get("Health").is_none());
    assert_eq!(i["Config"]["Image"], "busybox:test");
    assert_eq!(i["Config"]["Cmd"][0], "sh");
    assert!(i["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "GREETING=hi"));
    assert_eq!(i["Path"], "sh");
    assert!(i["Image"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(i["HostConfig"]["RestartPolicy"]["Name"], "no");
    assert_eq!(i["NetworkSettings"]["Ports"], serde_json::json!({}));
    assert_eq!(i["NetworkSettings"]["IPAddress"], "");
    let m = &i["Mounts"][0];
    assert_eq!(
        (m["Type"].as_str(), m["Name"].as_str()),
        (Some("volume"), Some(vol.as_str()))
    );
    assert_eq!(m["Destination"], "/vol");
    assert_eq!(i["RestartCount"], 0);
    // -f templates, and image inspect still there.
    assert_eq!(
        s.field(&c, "{{.State.Running}} {{json .Config.Cmd}}")
            .split(' ')
            .next(),
        Some("true")
    );
    assert!(s
        .img
        .ok(&["inspect", "busybox:test"])
        .contains("\"manifest\""));
    assert!(s
        .img
        .fail(&["inspect", "--type", "container", "busybox:test"])
        .contains("No such container"));

    s.img.ok(&["stop", "-t", "0", &c]);
    let st = s.inspect(&c)["State"].clone();
    assert_eq!(
        (st["Status"].as_str(), st["Pid"].as_i64()),
        (Some("exited"), Some(0))
    );
    assert!(st["FinishedAt"].as_str().unwrap().starts_with("20"));
    assert!(s.img.fail(&["top", &c]).contains("is not running"));
    let stats = s.img.ok(&[
        "stats",
        "--no-stream",
        "-a",
        "--format",
        "{{.Name}} {{.MemUsage}}",
    ]);
    assert_eq!(stats, format!("{c} 0B / 0B\n"));
    s.img.ok(&["rm", "-v", &c]);
    s.img.ok(&["volume", "rm", &vol]);
}

#[test]
fn restart_policies_as_docker_applies_them() {
    let s = Setup::new("life-restart");
    // on-failure:2: restarted exactly twice, then exited.
    let f = name("fail");
    s.run_d(
        &f,
        &["--restart", "on-failure:2"],
        &["sh", "-c", "echo run; exit 3"],
    );
    let i = s.until(&f, "gave up", |i| {
        i["State"]["Status"] == "exited" && i["RestartCount"] == 2
    });
    assert_eq!(i["State"]["ExitCode"], 3);
    assert_eq!(i["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.inspect(&f)["RestartCount"], 2);
    assert_eq!(s.img.ok(&["logs", &f]), "run\nrun\nrun\n");
    // on-failure leaves a success alone.
    let ok = name("ok");
    s.run_d(&ok, &["--restart", "on-failure"], &["true"]);
    s.until(&ok, "exited", |i| i["State"]["Status"] == "exited");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.inspect(&ok)["RestartCount"], 0);

    // always: restarted when its process exits, even with 0 ...
    let a = name("always");
    s.run_d(
        &a,
        &["--restart", "always"],
        &["sh", "-c", "echo up; sleep 0.2"],
    );
    s.until(&a, "restarted twice", |i| {
        i["RestartCount"].as_u64() >= Some(2)
    });
    // ... but not after stop; start brings it back.
    s.img.ok(&["stop", "-t", "0", &a]);
    let count = s.inspect(&a)["RestartCount"].clone();
    assert_eq!(s.status(&a), "exited");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(s.status(&a), "exited");
    assert_eq!(s.inspect(&a)["RestartCount"], count);
    s.img.ok(&["start", &a]);
    s.until(&a, "restarted again", |i| {
        i["RestartCount"].as_u64() >= Some(1)
    });
    s.img.ok(&["stop", "-t", "0", &a]);

    // unless-stopped: restarted after a failure, not after kill.
    let u = name("unless");
    s.run_d(
        &u,
        &["--restart", "unless-stopped"],
        &["sh", "-c", "sleep 0.2; exit 1"],
    );
    s.until(&u, "restarted", |i| i["RestartCount"].as_u64() >= Some(1));
    let running = s.until(&u, "running", |i| i["State"]["Status"] == "running");
    let pid = running["State"]["Pid"].clone();
    s.img.ok(&["kill", &u]);
    s.until(&u, "killed", |i| i["State"]["Status"] == "exited");
    std::thread::sleep(Duration::from_millis(800));
    let i = s.inspect(&u);
    assert_eq!(i["State"]["Status"], "exited");
    assert_ne!(i["State"]["Pid"], pid);

    // Bad policies fail run with docker's 125, naming the flag.
    let o = s.img.run(&[
        "run",
        "-d",
        "--restart",
        "sometimes",
        "busybox:test",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).contains("invalid --restart"), "{}", text(&o));
    let o = s
        .img
        .run(&["run", "--rm", "--restart", "always", "busybox:test", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).contains("--restart and --rm"), "{}", text(&o));
    // A program that cannot run: docker's 127 and 126, in run and exec.
    for (program, code, why) in [
        ("nonexistent", 127, "executable file not found in $PATH"),
        ("/etc/passwd", 126, "permission denied"),
    ] {
        let o = s
            .img
            .run(&["run", "--rm", "--net", "none", "busybox:test", program]);
        assert_eq!(o.status.code(), Some(code), "{}", text(&o));
        assert!(text(&o).contains(why), "{}", text(&o));
        let o = s.img.run(&["exec", &f, "true"]);
        assert!(text(&o).contains("is not running"), "{}", text(&o));
        let o = s.img.run(&["exec", &s.running(), program]);
        assert_eq!(o.status.code(), Some(code), "{}", text(&o));
    }
    s.img.ok(&["rm", "-f", &f, &ok, &a, &u, &s.running()]);
    assert_nothing_runs(&s.img);
}

#[test]
fn health_checks_from_flags_and_from_the_dockerfile() {
    let s = Setup::new("life-health");
    // --health-*: unhealthy until the file appears, then healthy.
    let c = name("hc");
    s.run_d(
        &c,
        &[
            "--health-cmd",
            "test -e /ready && echo fine",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
        ],
        &["sleep", "600"],
    );
    let ps = s.img.ok(&["ps", "--format", "{{.Status}}"]);
    assert!(
        ps.contains("(health: starting)") || ps.contains("(unhealthy)"),
        "{ps}"
    );
    let i = s.until(&c, "unhealthy", |i| {
        i["State"]["Health"]["Status"] == "unhealthy"
    });
    let h = &i["State"]["Health"];
    assert!(h["FailingStreak"].as_u64() >= Some(2), "{h}");
    assert_eq!(h["Log"][0]["ExitCode"], 1);
    let ps = s.img.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains(&c) && ps.contains("(unhealthy)"), "{ps}");
    assert_eq!(
        s.img.ok(&["ps", "-q", "-f", "health=unhealthy"]).trim(),
        &i["Id"].as_str().unwrap()[..12]
    );
    s.img.ok(&["exec", &c, "touch", "/ready"]);
    let i = s.until(&c, "healthy", |i| {
        i["State"]["Health"]["Status"] == "healthy"
    });
    let log = i["State"]["Health"]["Log"].as_array().unwrap();
    assert_eq!(log.last().unwrap()["Output"], "fine\n");
    assert!(log.len() <= 5);
    assert_eq!(i["Config"]["Healthcheck"]["Test"][0], "CMD-SHELL");
    assert_eq!(i["Config"]["Healthcheck"]["Interval"], 200_000_000);
    let ps = s.img.ok(&["ps"]);
    assert!(ps.contains("(healthy)"), "{ps}");

    // A Dockerfile HEALTHCHECK, recorded in the image config the docker
    // way, with a timeout that a hanging check runs into.
    let ctx = s.scratch.path("hc-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:test\nHEALTHCHECK --interval=200ms --timeout=300ms --retries=1 CMD [\"sleep\", \"5\"]\nCMD [\"sleep\", \"600\"]\n",
    )
    .unwrap();
    s.img.ok(&["build", "-t", "hc:1", ctx.to_str().unwrap()]);
    let config: Value = serde_json::from_str(&s.img.ok(&["inspect", "hc:1"])).unwrap();
    let hc = &config["config"]["config"]["Healthcheck"];
    assert_eq!(hc["Test"], serde_json::json!(["CMD", "sleep", "5"]));
    assert_eq!(
        (
            hc["Interval"].as_i64(),
            hc["Timeout"].as_i64(),
            hc["Retries"].as_i64()
        ),
        (Some(200_000_000), Some(300_000_000), Some(1))
    );
    let d = name("dockerfile");
    assert_eq!(
        s.img
            .ok(&["run", "-d", "--net", "none", "--name", &d, "hc:1"])
            .trim(),
        d
    );
    let i = s.until(&d, "unhealthy", |i| {
        i["State"]["Health"]["Status"] == "unhealthy"
    });
    let probe = &i["State"]["Health"]["Log"][0];
    assert_eq!(probe["ExitCode"], -1);
    assert_eq!(probe["Output"], "Health check exceeded timeout (300ms)");
    // --no-healthcheck turns it off.
    let off = name("off");
    s.img.ok(&[
        "run",
        "-d",
        "--net",
        "none",
        "--no-healthcheck",
        "--name",
        &off,
        "hc:1",
    ]);
    assert!(s.inspect(&off)["State"].get("Health").is_none());
    assert!(s.inspect(&off)["Config"].get("Healthcheck").is_none());
    let o = s.img.run(&[
        "run",
        "-d",
        "--no-healthcheck",
        "--health-retries",
        "1",
        "busybox:test",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).contains("conflicts with --health-* options"));
    s.img.ok(&["rm", "-f", &c, &d, &off]);
    assert_nothing_runs(&s.img);
}

#[test]
fn ps_columns_formats_and_filters() {
    let s = Setup::new("life-ps");
    let (up, down) = (name("psup"), name("psdown"));
    s.run_d(&up, &["-l", "tier=front"], &["sleep", "600"]);
    s.run_d(&down, &[], &["sh", "-c", "exit 2"]);
    s.until(&down, "exited", |i| i["State"]["Status"] == "exited");

    // docker's columns, three spaces apart, CREATED as "... ago".
    let ps = s.img.ok(&["ps"]);
    let mut lines = ps.lines();
    let header = lines.next().unwrap();
    assert_eq!(
        header
            .split("   ")
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect::<Vec<_>>(),
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ],
        "{ps}"
    );
    let row: Vec<&str> = lines.collect();
    assert_eq!(row.len(), 1, "{ps}");
    assert!(row[0].contains("\"sleep 600\""), "{ps}");
    assert!(
        row[0].contains(" ago ") && row[0].contains("   Up "),
        "{ps}"
    );
    assert!(row[0].ends_with(&up), "{ps}");
    let id = &s.inspect(&up)["Id"].as_str().unwrap()[..12].to_string();
    assert!(row[0].starts_with(id.as_str()), "{ps}");

    // -a, -q, -f, --format.
    let all = s.img.ok(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}|{{.Status}}|{{.Image}}|{{.Ports}}|{{.ID}}",
    ]);
    let down_row = all.lines().find(|l| l.starts_with(&down)).unwrap();
    let f: Vec<&str> = down_row.split('|').collect();
    assert!(
        f[1].starts_with("Exited (2) ") && f[1].ends_with(" ago"),
        "{all}"
    );
    assert_eq!((f[2], f[3], f[4].len()), ("busybox:test", "", 12));
    assert_eq!(s.img.ok(&["ps", "-q"]).trim(), id);
    assert_eq!(s.img.ok(&["ps", "-aq"]).lines().count(), 2);
    assert_eq!(
        s.img.ok(&[
            "ps",
            "-a",
            "-f",
            &format!("name={down}"),
            "--format",
            "{{.Names}}"
        ]),
        format!("{down}\n")
    );
    assert_eq!(
        s.img
            .ok(&[
                "ps",
                "-a",
                "-f",
                "name=psdown",
                "-f",
                "name=psup",
                "--format",
                "{{.Names}}"
            ])
            .lines()
            .count(),
        2
    );
    assert_eq!(
        s.img
            .ok(&["ps", "-f", "status=exited", "--format", "{{.Names}}"]),
        format!("{down}\n")
    );
    assert_eq!(
        s.img
            .ok(&["ps", "-f", "label=tier=front", "--format", "{{.Names}}"]),
        format!("{up}\n")
    );
    assert_eq!(
        s.img
            .ok(&["ps", "--format", "{{.Label \"tier\"}} {{.State}}"]),
        "front running\n"
    );
    let table = s
        .img
        .ok(&["ps", "--format", "table {{.Names}}\\t{{.State}}"]);
    assert!(
        table.starts_with("NAMES") && table.contains("STATE"),
        "{table}"
    );
    let json: Value =
        serde_json::from_str(s.img.ok(&["ps", "--format", "{{json .}}"]).trim()).unwrap();
    assert_eq!(json["Names"], up.as_str());
    assert_eq!(json["State"], "running");
    assert!(s
        .img
        .fail(&["ps", "-f", "colour=red"])
        .contains("invalid --filter"));
    assert!(s
        .img
        .fail(&["ps", "--format", "{{nope .X}}"])
        .contains("invalid --format"));
}
