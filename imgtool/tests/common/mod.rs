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
