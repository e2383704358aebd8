//! Test helpers: a private store per test, `berth-img` and `berth` runners,
//! and real registries (Debian's docker-registry) started on free loopback
//! ports through tests/support/registry.py, stopped on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const BERTH_IMG: &str = env!("CARGO_BIN_EXE_berth-img");

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `berth` from the same target directory (hack/test builds the workspace).
pub fn berth() -> PathBuf {
    let p = Path::new(BERTH_IMG).with_file_name("berth");
    assert!(
        p.exists(),
        "{} missing: build the workspace first",
        p.display()
    );
    p
}

fn support(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name)
}

/// A scratch directory, removed (after unmounting anything below it) on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir()
            .join("berth-img-tests")
            .join(format!("{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let prefix = dir.to_string_lossy().to_string();
    let mut v: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for m in mounts_below(&self.0) {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `berth-img` with a store and auth file of its own.
pub struct Img {
    pub root: PathBuf,
    pub auth: PathBuf,
    pub env: Vec<(String, String)>,
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Img {
    pub fn new(scratch: &Scratch, name: &str) -> Img {
        Img {
            root: scratch.path(name),
            auth: scratch.path("auth.json"),
            env: Vec::new(),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BERTH_IMG);
        c.arg("--root").arg(&self.root).args(args);
        c.env("REGISTRY_AUTH_FILE", &self.auth);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "berth-img {args:?} failed:\n{}",
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            !o.status.success(),
            "berth-img {args:?} should fail:\n{}",
            text(&o)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// Imports a busybox rootfs as `reference`.
    pub fn import_busybox(&self, scratch: &Scratch, reference: &str) {
        let tar = busybox_tar(scratch);
        self.ok(&[
            "import",
            tar.to_str().unwrap(),
            reference,
            "--change",
            r#"CMD ["sh"]"#,
        ]);
    }
}

/// A busybox rootfs tar made by hack/mkimage (no network needed).
pub fn busybox_tar(scratch: &Scratch) -> PathBuf {
    let tar = scratch.path("busybox-rootfs.tar");
    if !tar.exists() {
        let mk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/mkimage");
        let st = Command::new(mk).arg("--rootfs").arg(&tar).status().unwrap();
        assert!(st.success());
    }
    tar
}

/// Runs a bundle in the foreground with `berth run`, with a state root of
/// its own; returns the output.
pub fn berth_run(scratch: &Scratch, bundle: &Path, id: &str) -> Output {
    let root = scratch.path("berth-state");
    let o = Command::new(berth())
        .arg("--root")
        .arg(&root)
        .args(["run", "-b"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // A failed run must not leave a container behind.
    let _ = Command::new(berth())
        .arg("--root")
        .arg(&root)
        .args(["delete", "-f", id])
        .stderr(Stdio::null())
        .status();
    o
}

pub fn run_ok(scratch: &Scratch, bundle: &Path, id: &str) -> String {
    let o = berth_run(scratch, bundle, id);
    assert!(o.status.success(), "berth run {id}:\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A registry on 127.0.0.1, stopped on drop.
pub struct Registry {
    pub dir: PathBuf,
    pub host: String,
    pub proxy: Option<String>,
    pub info: serde_json::Value,
}

impl Registry {
    /// `mode`: none, htpasswd or token; `extra`: more registry.py flags.
    pub fn start(scratch: &Scratch, mode: &str, extra: &[&str]) -> Registry {
        let dir = scratch.path(&format!("registry-{mode}"));
        std::fs::create_dir_all(&dir).unwrap();
        let pid = std::process::id().to_string();
        let o = Command::new("/usr/bin/python3")
            .arg(support("registry.py"))
            .args(["start", "--dir"])
            .arg(&dir)
            .args(["--mode", mode, "--watch-pid", &pid])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "registry start:\n{}", text(&o));
        let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        Registry {
            dir,
            host: info["registry"].as_str().unwrap().to_string(),
            proxy: info["redirect_proxy"].as_str().map(str::to_string),
            info,
        }
    }

    /// The on-disk data of a blob in the registry's storage.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("/usr/bin/python3")
            .arg(support("registry.py"))
            .args(["stop", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .status();
    }
}

/// The parsed `inspect` of an image.
pub fn inspect(img: &Img, reference: &str) -> serde_json::Value {
    serde_json::from_str(&img.ok(&["inspect", reference])).unwrap()
}

/// The page the test web image serves.
pub const PAGE: &str = "hello-berth\n";

/// Imports `web:1`: busybox with `/www/index.html` ([`PAGE`]) and
/// `/srv/data/seed` (a directory owned by 33:33, mode 0750, holding a
/// file), EXPOSE 80, serving /www with busybox httpd on port 80.
pub fn import_web(scratch: &Scratch, img: &Img, changes: &[&str]) {
    let tar = scratch.path("web-rootfs.tar");
    if !tar.exists() {
        std::fs::copy(busybox_tar(scratch), &tar).unwrap();
        let extra = scratch.path("web-extra");
        std::fs::create_dir_all(extra.join("www")).unwrap();
        std::fs::create_dir_all(extra.join("srv/data")).unwrap();
        std::fs::write(extra.join("www/index.html"), PAGE).unwrap();
        std::fs::write(extra.join("srv/data/seed"), "seeded\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            extra.join("srv/data"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        let add = |owner: &str, what: &str| {
            let st = Command::new("tar")
                .arg("-rf")
                .arg(&tar)
                .args([
                    &format!("--owner={owner}"),
                    &format!("--group={owner}"),
                    "--numeric-owner",
                    "-C",
                ])
                .arg(&extra)
                .arg(what)
                .status()
                .unwrap();
            assert!(st.success());
        };
        add("0", "www");
        add("33", "srv");
    }
    let mut args = vec![
        "import",
        tar.to_str().unwrap(),
        "web:1",
        "--change",
        "EXPOSE 80",
        "--change",
        r#"CMD ["httpd", "-f", "-p", "80", "-h", "/www"]"#,
    ];
    for c in changes {
        args.extend(["--change", c]);
    }
    img.ok(&args);
}

static NETNS_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace the test made, with loopback up: "a host" whose
/// bridges, veths and iptables rules disappear with it. Pinned to a file
/// of its own (`unshare --net=FILE`), not under /run/netns: `ip netns`
/// would leave its /run/netns mount behind on the machine. Deleted on
/// drop, after killing whatever still runs in it.
pub struct TestNetns {
    pub name: String,
    path: PathBuf,
}

impl TestNetns {
    pub fn new(tag: &str) -> TestNetns {
        let n = NETNS_COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("{tag}-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join("berth-img-tests/netns");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(&name);
        std::fs::write(&path, "").unwrap();
        let st = Command::new("unshare")
            .arg(format!("--net={}", path.display()))
            .arg("true")
            .status()
            .unwrap();
        assert!(st.success(), "unshare --net={}", path.display());
        let ns = TestNetns { name, path };
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `args` run in this namespace only (not `ip netns exec`, which also
    /// makes a mount namespace: mounts berth-img makes must stay visible
    /// to the next command).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path.display()))
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{args:?} in {}:\n{}",
            self.name,
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `iptables-save` here, without comments and counters: the rules.
    pub fn rules(&self) -> Vec<String> {
        self.ok(&["iptables-save"])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| match l.strip_prefix(':') {
                // ":CHAIN POLICY [packets:bytes]"
                Some(c) => format!(":{}", c.rsplit_once(' ').map_or(c, |(a, _)| a)),
                None => l.to_string(),
            })
            .collect()
    }

    /// Links here whose name contains `what`.
    pub fn links(&self, what: &str) -> Vec<String> {
        self.ok(&["ip", "-o", "link", "show"])
            .lines()
            .filter_map(|l| {
                l.split(": ")
                    .nth(1)
                    .map(|n| n.split('@').next().unwrap_or(n).to_string())
            })
            .filter(|n| n.contains(what))
            .collect()
    }

    /// Connects this namespace to `other` with a veth pair, addresses
    /// `mine` and `theirs` (CIDR).
    pub fn link_to(&self, other: &TestNetns, mine: &str, theirs: &str) {
        let other_path = other.path.to_string_lossy().into_owned();
        // iproute2 takes a path (anything with a `/`) for a namespace.
        self.ok(&[
            "ip",
            "link",
            "add",
            "uplink0",
            "type",
            "veth",
            "peer",
            "name",
            "peer0",
            "netns",
            &other_path,
        ]);
        self.ok(&["ip", "addr", "add", mine, "dev", "uplink0"]);
        self.ok(&["ip", "link", "set", "uplink0", "up"]);
        other.ok(&["ip", "addr", "add", theirs, "dev", "peer0"]);
        other.ok(&["ip", "link", "set", "peer0", "up"]);
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(ns) = std::fs::metadata(&self.path) {
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let inside = std::fs::metadata(e.path().join("ns/net"))
                    .is_ok_and(|m| (m.dev(), m.ino()) == (ns.dev(), ns.ino()));
                if inside && pid != std::process::id() as i32 {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Img {
    /// `berth-img ARGS` in the network namespace `ns`.
    pub fn cmd_in(&self, ns: &TestNetns, args: &[&str]) -> Command {
        let mut c = ns.cmd(&[BERTH_IMG, "--root", self.root.to_str().unwrap()]);
        c.args(args).env("REGISTRY_AUTH_FILE", &self.auth);
        c
    }

    pub fn ok_in(&self, ns: &TestNetns, args: &[&str]) -> String {
        let o = self.cmd_in(ns, args).output().unwrap();
        assert!(
            o.status.success(),
            "berth-img {args:?} in {}:\n{}",
            ns.name,
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn fail_in(&self, ns: &TestNetns, args: &[&str]) -> String {
        let o = self.cmd_in(ns, args).output().unwrap();
        assert!(
            !o.status.success(),
            "berth-img {args:?} in {} should fail:\n{}",
            ns.name,
            text(&o)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// The names of every container of the store.
    pub fn container_names(&self) -> Vec<String> {
        let o = self.run(&["--json", "ps", "-a"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Removes every container of a store (in the namespace they were made
/// in, so their networks are released there) when the test ends, passed
/// or not. Declare it after the store and the namespace: it drops first.
pub struct RemoveContainers<'a> {
    pub img: &'a Img,
    pub ns: Option<&'a TestNetns>,
}

impl Drop for RemoveContainers<'_> {
    fn drop(&mut self) {
        let names = self.img.container_names();
        if names.is_empty() {
            return;
        }
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(names.iter().map(String::as_str));
        let _ = match self.ns {
            Some(ns) => self.img.cmd_in(ns, &args).output(),
            None => self.img.cmd(&args).output(),
        };
    }
}

/// Polls `f` until it returns Some, for up to `secs` seconds.
pub fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// What `after` holds that `before` did not, apart from the scaffolding
/// the CNI plugins set up once per namespace and keep (the jumps into
/// their chains, as docker keeps its DOCKER chains): the rules some
/// container left behind.
pub fn leftovers(before: &[String], after: &[String]) -> Vec<String> {
    const SHARED: &[&str] = &[
        ":CNI-ADMIN -",
        ":CNI-FORWARD -",
        ":CNI-HOSTPORT-DNAT -",
        ":CNI-HOSTPORT-MASQ -",
        ":CNI-HOSTPORT-SETMARK -",
        "-A FORWARD -m comment --comment \"CNI firewall plugin rules\" -j CNI-FORWARD",
        "-A CNI-FORWARD -m comment --comment \"CNI firewall plugin admin overrides\" -j CNI-ADMIN",
        "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
        "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
        "-A POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ",
        "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE",
        "-A CNI-HOSTPORT-SETMARK -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark 0x2000/0x2000",
    ];
    let builtin = |l: &str| {
        l.starts_with('*')
            || l == "COMMIT"
            || ["INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"]
                .iter()
                .any(|c| l.starts_with(&format!(":{c} ")))
    };
    after
        .iter()
        .filter(|l| !before.contains(l) && !SHARED.contains(&l.as_str()) && !builtin(l))
        .cloned()
        .collect()
}
