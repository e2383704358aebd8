//! `berth-img compose` on examples/compose, a three-service app of
//! busybox containers: `web` (published on 127.0.0.1) asks `api` by its
//! service name, `api` asks `data`, which keeps its page in a named
//! volume and is started behind a health check `api` waits for. Real
//! containers, real CNI plugins and iptables, all in a network namespace
//! the test made.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// web's page (from inside `ns`) once it holds `want`: the services
/// start, and a service behind web may answer late.
fn page(ns: &TestNetns, port: u16, want: &str) -> String {
    let url = format!("http://127.0.0.1:{port}/cgi-bin/index");
    let mut last = String::new();
    eventually(20, || {
        let o = ns.run(&["curl", "-sf", "--max-time", "3", &url]);
        last = String::from_utf8_lossy(&o.stdout).into_owned();
        (o.status.success() && last.contains(want)).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("curl {url}: no page with {want:?}; last: {last:?}"))
}

/// examples/compose copied to `dir/app`, as a user would copy it.
fn copy_example(dir: &Path) -> PathBuf {
    let app = dir.join("app");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/compose");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&example)
        .arg(&app)
        .status()
        .unwrap();
    assert!(st.success());
    app
}

/// The app's directory (`app`: the project's name), a store with
/// `busybox:latest`, and the namespace everything runs in. Dropped in
/// order: `down -v`, the containers left, the namespace, the files.
struct App {
    ns: TestNetns,
    img: Img,
    dir: PathBuf,
    port: u16,
    _scratch: Scratch,
}

impl App {
    fn new(tag: &str) -> App {
        let scratch = Scratch::new(tag);
        let img = Img::new(&scratch, "store");
        img.import_busybox(&scratch, "busybox:latest");
        let dir = copy_example(&scratch.0);
        // What its .env says.
        let port = 8080;
        let ns = TestNetns::new(tag);
        App {
            ns,
            img,
            dir,
            port,
            _scratch: scratch,
        }
    }

    fn file(&self) -> String {
        self.dir.join("compose.yaml").display().to_string()
    }

    fn compose(&self, args: &[&str]) -> std::process::Output {
        let file = self.file();
        let mut all = vec!["compose", "-f", file.as_str()];
        all.extend(args);
        self.img.cmd_in(&self.ns, &all).output().unwrap()
    }

    /// `compose ARGS`, asserted to succeed; stdout and stderr.
    fn ok(&self, args: &[&str]) -> (String, String) {
        let o = self.compose(args);
        assert!(o.status.success(), "compose {args:?}:\n{}", text(&o));
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn img_ok(&self, args: &[&str]) -> String {
        self.img.ok_in(&self.ns, args)
    }

    fn curl(&self, want: &str) -> String {
        page(&self.ns, self.port, want)
    }

    /// The IDs of the project's containers by name.
    fn ids(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .img_ok(&["ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.ID}}"])
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(n, i)| (n.to_string(), i.to_string()))
            .collect();
        v.sort();
        v
    }

    fn networks(&self) -> Vec<String> {
        self.img_ok(&["network", "ls"])
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect()
    }

    fn volumes(&self) -> Vec<String> {
        self.img_ok(&["volume", "ls", "-q"])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // Whatever a failed test left: containers, networks, volumes.
        let _ = self.compose(&["down", "-v"]);
        let names = self.img.container_names();
        if !names.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(names.iter().map(String::as_str));
            let _ = self.img.cmd_in(&self.ns, &args).output();
        }
    }
}

fn netns_files(root: &Path) -> usize {
    std::fs::read_dir(root.join("netns"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn the_app_runs_keeps_its_data_and_goes_away() {
    let app = App::new("compose-app");
    let before = app.ns.rules();

    let (_, progress) = app.ok(&["up", "-d"]);
    for line in [
        "Network app_default  Created",
        "Volume app_store  Created",
        "Container app_data_1  Started",
        "Container app_api_1  Started",
        "Container app_web_1  Started",
    ] {
        assert!(progress.contains(line), "{progress}");
    }
    // Dependencies first.
    let at = |s: &str| progress.find(s).unwrap();
    assert!(at("app_data_1  Started") < at("app_api_1  Started"));
    assert!(at("app_api_1  Started") < at("app_web_1  Started"));

    // web reaches api and api reaches data, by service name.
    let page = app.curl("seeded");
    assert!(page.starts_with("hello web < api < seeded "), "{page}");
    let seed = page.trim().rsplit(' ').next().unwrap().to_string();
    assert_eq!(seed.len(), 36, "{page}");
    // api started only once data served (healthy).
    let (first, _) = app.ok(&["exec", "-T", "api", "cat", "/tmp/first"]);
    assert_eq!(first.trim(), format!("seeded {seed}"));
    let (host, _) = app.ok(&["exec", "-T", "data", "sh", "-c", "hostname; pwd"]);
    assert_eq!(host, "datahost\n/data\n");

    let (ps, _) = app.ok(&["ps"]);
    let lines: Vec<&str> = ps.lines().collect();
    assert_eq!(lines.len(), 4, "{ps}");
    assert!(lines[0].starts_with("NAME "), "{ps}");
    assert!(lines[0].contains("SERVICE"), "{ps}");
    let data = lines.iter().find(|l| l.starts_with("app_data_1 ")).unwrap();
    assert!(data.contains("(healthy)"), "{ps}");
    let web = lines.iter().find(|l| l.starts_with("app_web_1 ")).unwrap();
    assert!(
        web.contains(&format!("127.0.0.1:{}->80/tcp", app.port)),
        "{ps}"
    );
    let inspect = app.img_ok(&[
        "inspect",
        "-f",
        r#"{{index .Config.Labels "com.docker.compose.project"}} {{index .Config.Labels "com.docker.compose.service"}}"#,
        "app_api_1",
    ]);
    assert_eq!(inspect, "app api\n");
    let (logs, _) = app.ok(&["logs", "data"]);
    assert_eq!(logs, "app_data_1  | data ready\n");

    // Up again with nothing changed leaves every container alone; a
    // change (here in .env) replaces only the service it touches.
    let ids = app.ids();
    let (_, progress) = app.ok(&["up", "-d"]);
    assert_eq!(app.ids(), ids, "{progress}");
    assert!(
        progress.contains("Container app_web_1  Running"),
        "{progress}"
    );
    let env = std::fs::read_to_string(app.dir.join(".env")).unwrap();
    std::fs::write(app.dir.join(".env"), format!("{env}GREETING=hi\n")).unwrap();
    let (_, progress) = app.ok(&["up", "-d"]);
    assert!(
        progress.contains("Container app_web_1  Recreated"),
        "{progress}"
    );
    let now = app.ids();
    for (before, after) in ids.iter().zip(&now) {
        assert_eq!(before.0, after.0);
        assert_eq!(
            before.1 == after.1,
            before.0 != "app_web_1",
            "{ids:?} {now:?}"
        );
    }
    assert!(app.curl("seeded").starts_with("hi web < api < seeded "));

    // stop and start.
    app.ok(&["stop", "-t", "1"]);
    assert_eq!(app.ok(&["ps"]).0.lines().count(), 1);
    assert_eq!(app.ok(&["ps", "-a", "-q"]).0.lines().count(), 3);
    app.ok(&["start"]);
    app.curl(&seed);
    app.ok(&["restart", "-t", "1", "web"]);
    app.curl(&seed);

    // down keeps the volume, and the next up finds the data in it.
    let (_, progress) = app.ok(&["down"]);
    assert!(
        progress.contains("Network app_default  Removed"),
        "{progress}"
    );
    let at = |s: &str| progress.find(s).unwrap();
    assert!(at("app_web_1  Removed") < at("app_api_1  Removed"));
    assert!(at("app_api_1  Removed") < at("app_data_1  Removed"));
    assert!(app.img.container_names().is_empty());
    assert!(!app.networks().contains(&"app_default".to_string()));
    assert_eq!(app.volumes(), ["app_store"]);
    app.ok(&["up", "-d"]);
    app.curl(&format!("seeded {seed}"));

    // down -v: nothing left.
    app.ok(&["down", "-v"]);
    assert!(app.img.container_names().is_empty());
    assert!(app.networks().iter().all(|n| !n.starts_with("app_")));
    assert!(app.volumes().is_empty(), "{:?}", app.volumes());
    assert!(app.ns.links("veth").is_empty(), "{:?}", app.ns.links(""));
    assert_eq!(leftovers(&before, &app.ns.rules()), Vec::<String>::new());
    assert_eq!(netns_files(&app.img.root), 0);
    assert!(
        mounts_below(&app.img.root).is_empty(),
        "{:?}",
        mounts_below(&app.img.root)
    );
}

#[test]
fn bad_files_fail_naming_the_key() {
    let app = App::new("compose-bad");
    let cases = [
        (
            "services:\n  web:\n    image: busybox:latest\n    privileged: true\n",
            "services.web.privileged: not supported by berth-img",
        ),
        (
            "services:\n  web:\n    image: busybox:latest\n    depends_on: [db]\n",
            "services.web.depends_on: service \"db\" is not defined",
        ),
        (
            "services:\n  a:\n    image: busybox:latest\n    depends_on: [b]\n  b:\n    image: busybox:latest\n    depends_on: [a]\n",
            "dependency cycle between services: a, b",
        ),
        (
            "services:\n  web:\n    image: busybox:latest\n    volumes: ['nodecl:/x']\n",
            "volume \"nodecl\" is not declared in the top-level volumes",
        ),
        (
            "services:\n  web:\n    image: busybox:latest\n    ports: ['${NOPE:?set NOPE}:80']\n",
            "set NOPE",
        ),
    ];
    for (yaml, want) in cases {
        std::fs::write(app.dir.join("compose.yaml"), yaml).unwrap();
        let o = app.compose(&["up", "-d"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{yaml}\n{err}");
    }
    // Nothing was made for any of them.
    assert!(app.img.container_names().is_empty());
    assert!(app.volumes().is_empty());
    assert!(app.networks().iter().all(|n| !n.starts_with("app_")));
}

// The same file under the engines' own compose tools, with berth as
// their runtime: Debian's docker-compose 1.29 against a private dockerd,
// and podman-compose against podman. Each engine runs in a network
// namespace the test made, so its bridges and iptables rules go with it.

/// A process the test started, ended on drop: SIGTERM, a grace period,
/// then SIGKILL.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // Once reaped, its pid may be another process's.
        if self.0.try_wait().ok().flatten().is_some() {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let exited = eventually(20, || self.0.try_wait().ok().flatten());
        if exited.is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A cgroup parent an engine puts its containers under, removed with
/// everything below it in every hierarchy when the test ends.
struct CgroupParent(String);

impl Drop for CgroupParent {
    fn drop(&mut self) {
        fn rm(dir: &Path) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            rm(&h.path().join(&self.0));
        }
    }
}

/// Runs `f` when dropped (a teardown that must run even after a failed
/// assertion).
struct Finally<F: FnMut()>(F);

impl<F: FnMut()> Drop for Finally<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

fn output_ok(mut cmd: std::process::Command, what: &str) -> String {
    let o = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    assert!(o.status.success(), "{what}:\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_app_runs_under_docker_compose_with_berth() {
    let scratch = Scratch::new("compose-docker");
    let ns = TestNetns::new("compose-docker");
    let dir = scratch.0.clone();
    let app = copy_example(&dir);
    let cgroups = CgroupParent(format!("berth-compose-docker-{}", std::process::id()));
    let ctd_sock = dir.join("containerd.sock");
    std::fs::write(
        dir.join("containerd.toml"),
        format!(
            "version = 2\nroot = \"{d}/ctd-root\"\nstate = \"{d}/ctd-state\"\n[grpc]\n  address = \"{s}\"\n[ttrpc]\n  address = \"{s}.ttrpc\"\n[debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_cgroup = true\n",
            d = dir.display(),
            s = ctd_sock.display()
        ),
    )
    .unwrap();
    let log = |n: &str| std::fs::File::create(dir.join(n)).unwrap();
    let _containerd = Daemon(
        std::process::Command::new("containerd")
            .arg("--config")
            .arg(dir.join("containerd.toml"))
            .stdin(std::process::Stdio::null())
            .stdout(log("containerd.log"))
            .stderr(log("containerd.log"))
            .spawn()
            .unwrap(),
    );
    assert!(eventually(30, || ctd_sock.exists().then_some(())).is_some());
    let sock = format!("unix://{}", dir.join("docker.sock").display());
    let berth = berth();
    // Limits within this host's: without CAP_SYS_RESOURCE, docker's
    // default nofile would raise the hard limit.
    let _dockerd = Daemon(
        ns.cmd(&[
            "dockerd",
            "--data-root",
            dir.join("data").to_str().unwrap(),
            "--exec-root",
            dir.join("exec").to_str().unwrap(),
            "--pidfile",
            dir.join("docker.pid").to_str().unwrap(),
            "-H",
            &sock,
            "--containerd",
            ctd_sock.to_str().unwrap(),
            "--add-runtime",
            &format!("berth={}", berth.display()),
            "--default-runtime",
            "berth",
            "--cgroup-parent",
            &format!("/{}", cgroups.0),
            "--userland-proxy=false",
            "--default-ulimit",
            "nofile=1024:1024",
            "--default-ulimit",
            "nproc=1024:1024",
        ])
        .stdout(log("dockerd.log"))
        .stderr(log("dockerd.log"))
        .spawn()
        .unwrap(),
    );
    let docker = |args: &[&str]| {
        let mut c = std::process::Command::new("/usr/bin/docker");
        c.env("DOCKER_HOST", &sock).args(args);
        c
    };
    let up = eventually(60, || {
        let o = docker(&["version"]).output().unwrap();
        o.status.success().then_some(())
    });
    assert!(
        up.is_some(),
        "dockerd did not start:\n{}",
        std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
    );
    let mut import = docker(&["import"]);
    import.arg(busybox_tar(&scratch)).arg("busybox:latest");
    output_ok(import, "docker import");
    let compose = |args: &[&str]| {
        let mut c = std::process::Command::new("docker-compose");
        c.env("DOCKER_HOST", &sock).current_dir(&app).args(args);
        c
    };
    let _down = Finally(|| {
        let _ = compose(&["down", "-v"]).output();
    });

    output_ok(compose(&["up", "-d"]), "docker-compose up -d");
    let first = page(&ns, 8080, "seeded");
    assert!(first.starts_with("hello web < api < seeded "), "{first}");
    // docker-compose waited for data's health check, which berth ran.
    let gate = output_ok(docker(&["exec", "app_api_1", "cat", "/tmp/first"]), "exec");
    assert!(gate.starts_with("seeded "), "{gate}");
    let runtime = output_ok(
        docker(&["inspect", "-f", "{{.HostConfig.Runtime}}", "app_web_1"]),
        "inspect",
    );
    assert_eq!(runtime, "berth\n");
    output_ok(compose(&["down"]), "docker-compose down");
    output_ok(compose(&["up", "-d"]), "docker-compose up -d again");
    let seed = first.trim().rsplit(' ').next().unwrap();
    page(&ns, 8080, seed);
    output_ok(compose(&["down", "-v"]), "docker-compose down -v");
    assert_eq!(output_ok(docker(&["ps", "-aq"]), "ps"), "");
    assert_eq!(output_ok(docker(&["volume", "ls", "-q"]), "volume ls"), "");
}

#[test]
fn the_app_runs_under_podman_compose_with_berth() {
    let scratch = Scratch::new("compose-podman");
    let ns = TestNetns::new("compose-podman");
    let dir = scratch.0.clone();
    let app = copy_example(&dir);
    let pid = std::process::id();
    let cgroups = CgroupParent(format!("berth-compose-podman-{pid}"));
    // host-local keeps podman's leases under /var/lib/cni/networks by
    // network name: a name of this test's own, removed at the end.
    let project = format!("berthcompose{pid}");
    let leases = PathBuf::from(format!("/var/lib/cni/networks/{project}_default"));
    // podman takes a run root of at most 50 characters.
    let runroot = PathBuf::from(format!("/tmp/berth-compose-{pid}"));
    let d = dir.display();
    let podman_args = format!(
        "--root {d}/root --runroot {} --tmpdir {d}/tmp --network-config-dir {d}/net \
         --runtime {} --cgroup-manager cgroupfs --events-backend file --storage-driver vfs",
        runroot.display(),
        berth().display()
    );
    let podman = |args: &[&str]| {
        let mut c = ns.cmd(&["podman"]);
        c.args(podman_args.split(' ')).args(args);
        c
    };
    let compose = |args: &[&str]| {
        let mut c = ns.cmd(&["podman-compose", "-p", &project]);
        c.arg(format!("--podman-args={podman_args}"))
            // Limits within this host's (no CAP_SYS_RESOURCE here).
            .arg(format!(
                "--podman-run-args=--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --cgroup-parent /{}",
                cgroups.0
            ))
            .current_dir(&app)
            .args(args);
        c
    };
    let _down = Finally(|| {
        let _ = compose(&["down", "-v"]).output();
        let _ = podman(&["rm", "-af"]).output();
        let _ = podman(&["network", "rm", "-f", &format!("{project}_default")]).output();
        let _ = std::fs::remove_dir_all(&leases);
        for m in mounts_below(&runroot) {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&runroot);
    });
    let mut import = podman(&["import"]);
    import.arg(busybox_tar(&scratch)).arg("busybox:latest");
    output_ok(import, "podman import");

    output_ok(compose(&["up", "-d"]), "podman-compose up -d");
    let first = page(&ns, 8080, "seeded");
    assert!(first.starts_with("hello web < api < seeded "), "{first}");
    let runtime = output_ok(
        podman(&[
            "inspect",
            "-f",
            "{{.OCIRuntime}}",
            &format!("{project}_web_1"),
        ]),
        "inspect",
    );
    assert!(runtime.trim().ends_with("/berth"), "{runtime}");
    output_ok(compose(&["down"]), "podman-compose down");
    output_ok(compose(&["up", "-d"]), "podman-compose up -d again");
    let seed = first.trim().rsplit(' ').next().unwrap();
    page(&ns, 8080, seed);
    output_ok(compose(&["down", "-v"]), "podman-compose down -v");
    assert_eq!(output_ok(podman(&["ps", "-aq"]), "ps"), "");
    assert_eq!(output_ok(podman(&["volume", "ls", "-q"]), "volume ls"), "");
}

#[test]
fn up_without_detach_shows_the_output_until_interrupted() {
    let app = App::new("compose-attach");
    let file = app.file();
    let mut up = Daemon(
        app.img
            .cmd_in(&app.ns, &["compose", "-f", &file, "up", "-t", "1"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    app.curl("seeded");
    // nsenter only entered the namespace: the child is berth-img itself.
    let pid = nix::unistd::Pid::from_raw(up.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let exited = eventually(30, || up.0.try_wait().ok().flatten());
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
    let (mut out, mut err) = (String::new(), String::new());
    use std::io::Read;
    up.0.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    up.0.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(out.contains("app_data_1  | data ready\n"), "{out}");
    assert!(err.contains("Gracefully stopping"), "{err}");
    for name in ["app_web_1", "app_api_1", "app_data_1"] {
        assert!(err.contains(&format!("Container {name}  Stopped")), "{err}");
    }
    let (ps, _) = app.ok(&["ps"]);
    assert_eq!(ps.lines().count(), 1, "{ps}");
    assert_eq!(app.ok(&["ps", "-a", "-q"]).0.lines().count(), 3);
}

#[test]
fn a_service_is_built_from_its_context() {
    let app = App::new("compose-build");
    let ctx = app.dir.join("greeter");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM busybox:latest\nARG GREETING\nRUN echo \"$GREETING\" > /greeting\nCMD [\"sleep\", \"1000\"]\n",
    )
    .unwrap();
    std::fs::write(
        app.dir.join("compose.yaml"),
        "services:\n  greeter:\n    build:\n      context: ./greeter\n      dockerfile: Containerfile\n      args:\n        GREETING: ${GREETING:-hello}\n    network_mode: none\n",
    )
    .unwrap();
    app.ok(&["build"]);
    let images = app.img_ok(&["images"]);
    assert!(images.contains("app_greeter"), "{images}");
    app.ok(&["up", "-d"]);
    let (out, _) = app.ok(&["exec", "-T", "greeter", "cat", "/greeting"]);
    assert_eq!(out, "hello\n");
    // A changed build argument: `up --build` makes a new image, and the
    // container is replaced because its image changed.
    std::fs::write(app.dir.join(".env"), "GREETING=bonjour\n").unwrap();
    let (_, progress) = app.ok(&["up", "-d", "--build"]);
    assert!(
        progress.contains("Container app_greeter_1  Recreated"),
        "{progress}"
    );
    let (out, _) = app.ok(&["exec", "-T", "greeter", "cat", "/greeting"]);
    assert_eq!(out, "bonjour\n");
    app.ok(&["down"]);
    assert!(app.img.container_names().is_empty());
}
