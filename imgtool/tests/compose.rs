//! `berth-img compose` on examples/compose, a three-service app of
//! busybox containers: `web` (published on 127.0.0.1) asks `api` by its
//! service name, `api` asks `data`, which keeps its page in a named
//! volume and is started behind a health check `api` waits for. Real
//! containers, real CNI plugins and iptables, all in a network namespace
//! the test made.

mod common;

use std::path::{Path, PathBuf};

use common::*;

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
        // The app of examples/compose, as a user would copy it.
        let dir = scratch.path("app");
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/compose");
        let st = std::process::Command::new("cp")
            .arg("-a")
            .arg(&example)
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success());
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

    /// web's page once it holds `want` (the services start, and a
    /// service behind web may answer late).
    fn curl(&self, want: &str) -> String {
        let url = format!("http://127.0.0.1:{}/cgi-bin/index", self.port);
        let mut last = String::new();
        eventually(20, || {
            let o = self.ns.run(&["curl", "-sf", "--max-time", "3", &url]);
            last = String::from_utf8_lossy(&o.stdout).into_owned();
            (o.status.success() && last.contains(want)).then(|| last.clone())
        })
        .unwrap_or_else(|| panic!("curl {url}: no page with {want:?}; last: {last:?}"))
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
