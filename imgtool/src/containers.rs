//! Containers for manual use (`run`, `ps`, `logs`, `exec`, `stop`, `rm`,
//! `cp`), kept under `ROOT/containers/NAME/`: the bundle, `container.json`,
//! and for detached ones the CRI-format log and exit file that the shim's
//! standalone `supervise` mode writes. The containers themselves live in
//! `berth` under `--root ROOT/containers/.runtime`, named by NAME.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::build::copy::{self as copying, CopyOptions, Source};
use crate::build::run::{find_runtime, find_sibling};
use crate::bundle;
use crate::error::{Context, Error, Result};
use crate::image::Platform;
use crate::inroot;
use crate::reference::Reference;
use crate::store::{unique_name, ImageRecord, Store};

/// The shim whose `supervise` mode keeps detached containers.
const SHIM: &str = "containerd-shim-berth-v2";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub created: String,
    pub detached: bool,
    #[serde(default)]
    pub auto_remove: bool,
}

/// What `ps` shows for a container.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Exited(i32),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Created => write!(f, "Created"),
            Status::Running => write!(f, "Up"),
            Status::Paused => write!(f, "Up (Paused)"),
            Status::Exited(c) => write!(f, "Exited ({c})"),
        }
    }
}

pub struct Containers<'a> {
    pub store: &'a Store,
    pub runtime: PathBuf,
}

/// How `run` starts a container.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Generated (`berth_HEX`) when not given.
    pub name: Option<String>,
    pub bundle: bundle::Options,
    /// Hand the container to the shim's `supervise` mode and return.
    pub detach: bool,
    /// Remove the container once it exits (in the foreground).
    pub auto_remove: bool,
}

/// What became of a container `run` started.
#[derive(Clone, Debug, PartialEq)]
pub enum Started {
    /// Running under the shim, by this name.
    Detached(String),
    /// Ran in the foreground and exited with this status.
    Exited(i32),
}

/// `run`: the image `reference`, pulled first if the store lacks it, as a
/// new container, run by `runtime` (see [`find_runtime`]) in the
/// foreground or handed to the shim.
pub fn run(
    store: &Store,
    runtime: Option<&Path>,
    reference: &Reference,
    opts: &RunOptions,
) -> Result<Started> {
    let record = crate::pull::ensure(store, reference, Platform::host(), false)?;
    let cs = Containers::new(store, runtime)?;
    let c = cs.create(
        opts.name.as_deref(),
        &reference.to_string(),
        &record,
        &opts.bundle,
        opts.detach,
        opts.auto_remove,
    )?;
    if opts.detach {
        let shim = find_sibling(SHIM).ok_or_else(|| {
            Error::Other(format!("{SHIM} not found next to berth-img or on PATH"))
        })?;
        if let Err(e) = cs.run_detached(&c, &shim) {
            let _ = cs.remove(&c.name, true);
            return Err(e);
        }
        return Ok(Started::Detached(c.name));
    }
    let code = cs.run_foreground(&c)?;
    if opts.auto_remove {
        cs.remove(&c.name, true)?;
    }
    Ok(Started::Exited(code))
}

/// `NAME:PATH` (a path in a container) split, or None for a host path.
fn split_container_path(s: &str) -> Option<(&str, &str)> {
    let (name, path) = s.split_once(':')?;
    (!name.is_empty() && !name.contains('/')).then_some((name, path))
}

/// The directory host paths given to `cp` are relative to.
fn current_dir() -> Result<PathBuf> {
    std::env::current_dir().map_err(|e| Error::Other(e.to_string()))
}

fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl<'a> Containers<'a> {
    /// The containers kept in `store`, run by `runtime` (see
    /// [`find_runtime`]).
    pub fn new(store: &'a Store, runtime: Option<&Path>) -> Result<Containers<'a>> {
        Ok(Containers {
            store,
            runtime: find_runtime(runtime)?,
        })
    }
}

impl Containers<'_> {
    fn dir(&self, name: &str) -> PathBuf {
        self.store.root().join("containers").join(name)
    }

    pub fn state_root(&self) -> PathBuf {
        self.store.root().join("containers/.runtime")
    }

    pub fn bundle_dir(&self, name: &str) -> PathBuf {
        self.dir(name).join("bundle")
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir(name).join("container.log")
    }

    fn exit_path(&self, name: &str) -> PathBuf {
        self.dir(name).join("exit")
    }

    fn berth(&self) -> Command {
        let mut c = Command::new(&self.runtime);
        c.arg("--root").arg(self.state_root());
        c
    }

    pub fn get(&self, name: &str) -> Result<Container> {
        if !valid_name(name) {
            return Err(Error::Other(format!("No such container: {name}")));
        }
        let p = self.dir(name).join("container.json");
        let data = fs::read(&p).map_err(|_| Error::Other(format!("No such container: {name}")))?;
        serde_json::from_slice(&data).map_err(|e| Error::Path(p, format!("corrupt: {e}")))
    }

    pub fn list(&self) -> Result<Vec<Container>> {
        let dir = self.store.root().join("containers");
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                if let Ok(c) = self.get(&name) {
                    out.push(c);
                }
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(out)
    }

    /// `ps`: the containers, newest first, with their status; those that
    /// exited only with `all`.
    pub fn list_with_status(&self, all: bool) -> Result<Vec<(Container, Status)>> {
        let mut out = Vec::new();
        for c in self.list()? {
            let status = self.status(&c.name);
            if all || !matches!(status, Status::Exited(_)) {
                out.push((c, status));
            }
        }
        Ok(out)
    }

    /// Asks `berth state`; a container berth no longer knows has exited.
    pub fn status(&self, name: &str) -> Status {
        let o = self
            .berth()
            .args(["state", name])
            .stderr(Stdio::null())
            .output();
        if let Ok(o) = o {
            if o.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
                match v["status"].as_str() {
                    Some("running") => return Status::Running,
                    Some("paused") => return Status::Paused,
                    Some("created") => return Status::Created,
                    _ => {}
                }
            }
        }
        let code = fs::read_to_string(self.exit_path(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Status::Exited(code)
    }

    /// Makes the container's directory and bundle.
    pub fn create(
        &self,
        name: Option<&str>,
        image: &str,
        record: &ImageRecord,
        opts: &bundle::Options,
        detached: bool,
        auto_remove: bool,
    ) -> Result<Container> {
        let name = match name {
            Some(n) if !valid_name(n) => {
                return Err(Error::invalid(
                    "--name",
                    format!("{n:?}: want [a-zA-Z0-9][a-zA-Z0-9_.-]*"),
                ))
            }
            Some(n) => n.to_string(),
            None => format!(
                "berth_{}",
                &crate::digest::Digest::sha256_of(unique_name("").as_bytes()).hex()[..12]
            ),
        };
        let dir = self.dir(&name);
        fs::create_dir_all(dir.parent().unwrap())
            .context(|| format!("create {}", dir.display()))?;
        fs::create_dir(&dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::invalid(
                    "--name",
                    format!("the container name {name:?} is already in use"),
                )
            } else {
                Error::Path(dir.clone(), e.to_string())
            }
        })?;
        let made = bundle::create(self.store, image, record, &self.bundle_dir(&name), opts);
        let bundle_dir = match made {
            Ok(d) => d,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let spec: serde_json::Value = serde_json::from_slice(
            &fs::read(bundle_dir.join("config.json")).context(|| "read config.json".into())?,
        )
        .map_err(|e| Error::Other(e.to_string()))?;
        let c = Container {
            name: name.clone(),
            image: image.to_string(),
            command: serde_json::from_value(spec["process"]["args"].clone()).unwrap_or_default(),
            created: crate::pull::now_rfc3339(),
            detached,
            auto_remove,
        };
        crate::store::atomic_write(
            &dir.join("container.json"),
            &serde_json::to_vec_pretty(&c).unwrap(),
        )?;
        Ok(c)
    }

    /// Runs in the foreground; returns the exit status.
    pub fn run_foreground(&self, c: &Container) -> Result<i32> {
        let status = self
            .berth()
            .args(["run", "--bundle"])
            .arg(self.bundle_dir(&c.name))
            .arg(&c.name)
            .status()
            .map_err(|e| Error::Other(format!("run {}: {e}", self.runtime.display())))?;
        let code = status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        });
        let _ = fs::write(self.exit_path(&c.name), code.to_string());
        Ok(code)
    }

    /// Hands the container to the shim's supervise mode, which detaches,
    /// keeps its log and records its exit.
    pub fn run_detached(&self, c: &Container, shim: &Path) -> Result<()> {
        let o = Command::new(shim)
            .arg("supervise")
            .arg("--bundle")
            .arg(self.bundle_dir(&c.name))
            .args(["--id", &c.name])
            .arg("--log")
            .arg(self.log_path(&c.name))
            .arg("--exit-file")
            .arg(self.exit_path(&c.name))
            .arg("--runtime")
            .arg(&self.runtime)
            .arg("--root")
            .arg(self.state_root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .map_err(|e| Error::Other(format!("run {}: {e}", shim.display())))?;
        if !o.status.success() {
            return Err(Error::Other(
                String::from_utf8_lossy(&o.stderr).trim().to_string(),
            ));
        }
        Ok(())
    }

    /// `exec`: runs `args` in the container `name`; returns its exit
    /// status.
    pub fn exec(&self, name: &str, tty: bool, interactive: bool, args: &[String]) -> Result<i32> {
        self.get(name)?;
        let mut cmd = self.berth();
        cmd.arg("exec");
        if tty {
            cmd.arg("--tty");
        }
        cmd.arg(name).args(args);
        if !interactive {
            cmd.stdin(Stdio::null());
        }
        let status = cmd
            .status()
            .map_err(|e| Error::Other(format!("run {}: {e}", self.runtime.display())))?;
        Ok(status.code().unwrap_or(1))
    }

    /// The image's StopSignal, then SIGKILL after `timeout`.
    pub fn stop(&self, name: &str, timeout: Duration) -> Result<()> {
        let c = self.get(name)?;
        if !matches!(
            self.status(name),
            Status::Running | Status::Paused | Status::Created
        ) {
            return Ok(());
        }
        let spec: serde_json::Value = fs::read(self.bundle_dir(name).join("config.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default();
        let signal = spec["annotations"]["org.opencontainers.image.stopSignal"]
            .as_str()
            .unwrap_or("SIGTERM")
            .to_string();
        let _ = self
            .berth()
            .args(["kill", name, &signal])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if matches!(self.status(name), Status::Exited(_)) {
                self.wait_exit_recorded(&c);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self
            .berth()
            .args(["kill", name, "SIGKILL"])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.status(name), Status::Exited(_)) {
                self.wait_exit_recorded(&c);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Error::Other(format!("container {name} did not stop")))
    }

    /// The runtime reports a detached container stopped as soon as its
    /// init exits, a moment before the supervisor has reaped it and
    /// written the exit file: wait for that, so the status is known and
    /// nothing is still writing into the container's directory.
    fn wait_exit_recorded(&self, c: &Container) {
        if !c.detached {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.exit_path(&c.name).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes the container, its bundle and its files.
    pub fn remove(&self, name: &str, force: bool) -> Result<()> {
        let c = self.get(name)?;
        match self.status(name) {
            Status::Exited(_) => self.wait_exit_recorded(&c),
            _ if force => self.stop(name, Duration::ZERO)?,
            s => {
                return Err(Error::invalid(
                    "container",
                    format!("cannot remove {name}: it is {s}; stop it first or use --force"),
                ))
            }
        }
        // The supervisor deletes the container when it exits; give it a
        // moment, then make sure.
        let _ = self
            .berth()
            .args(["delete", "--force", name])
            .stderr(Stdio::null())
            .status();
        let bundle = self.bundle_dir(name);
        if bundle.exists() {
            bundle::remove(Some(self.store), &bundle)?;
        }
        fs::remove_dir_all(self.dir(name))
            .context(|| format!("remove {}", self.dir(name).display()))
    }

    /// The rootfs of a container, for `cp`.
    pub fn rootfs(&self, name: &str) -> Result<PathBuf> {
        self.get(name)?;
        Ok(self.bundle_dir(name).join("rootfs"))
    }

    /// `logs`: what a detached container wrote, its stdout to `out` and its
    /// stderr to `err`; with `follow`, also what it writes until it exits.
    pub fn logs(
        &self,
        name: &str,
        follow: bool,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<()> {
        self.get(name)?;
        let log = self.log_path(name);
        let mut pos = print_log(&log, 0, out, err)?;
        while follow && !matches!(self.status(name), Status::Exited(_)) {
            out.flush().map_err(|e| Error::Other(e.to_string()))?;
            std::thread::sleep(Duration::from_millis(100));
            pos = print_log(&log, pos, out, err)?;
        }
        if follow {
            // What it wrote between the last look and its exit.
            print_log(&log, pos, out, err)?;
        }
        Ok(())
    }

    /// `cp`: a file or directory between the host and a container's rootfs,
    /// as docker cp copies it; exactly one of `source` and `destination` is
    /// `NAME:PATH`, and container paths resolve inside the rootfs.
    pub fn copy(&self, source: &str, destination: &str) -> Result<()> {
        let (src_root, src_rel, dst_root, dst) = match (
            split_container_path(source),
            split_container_path(destination),
        ) {
            (Some((name, path)), None) => (
                self.rootfs(name)?,
                path.to_string(),
                PathBuf::from("/"),
                destination.to_string(),
            ),
            (None, Some((name, path))) => (
                "/".into(),
                source.to_string(),
                self.rootfs(name)?,
                path.to_string(),
            ),
            _ => {
                return Err(Error::Other(
                    "cp: exactly one of SOURCE and DESTINATION must be NAME:PATH".into(),
                ))
            }
        };
        let dst = if dst.starts_with('/') {
            dst
        } else if dst_root == Path::new("/") {
            current_dir()?.join(&dst).to_string_lossy().into_owned()
        } else {
            format!("/{dst}")
        };
        let src_abs = if src_rel.starts_with('/') || src_root != Path::new("/") {
            src_rel.clone()
        } else {
            current_dir()?.join(&src_rel).to_string_lossy().into_owned()
        };
        let rel = inroot::clean(Path::new(&src_abs));
        let full = src_root.join(&rel);
        let is_dir = fs::metadata(&full).map(|m| m.is_dir()).unwrap_or(false);
        // docker cp copies a directory itself into an existing directory.
        let dst_path = dst_root.join(inroot::clean(Path::new(&dst)));
        let dst = if is_dir && dst_path.is_dir() {
            format!(
                "{}/{}",
                dst.trim_end_matches('/'),
                rel.file_name().unwrap_or_default().to_string_lossy()
            )
        } else {
            dst
        };
        let source = Source {
            root: src_root,
            ignore: None,
            label: "container or host".into(),
        };
        let rels = source.resolve(&rel.to_string_lossy())?;
        copying::copy(
            &source,
            &rels,
            &dst_root,
            &dst,
            &CopyOptions {
                uid: 0,
                gid: 0,
                chmod: None,
            },
        )
    }
}

/// Prints the messages of a CRI-format log (`TIME STREAM TAG MESSAGE`),
/// stdout records to `out` and stderr ones to `err`; returns the bytes of
/// the file consumed (complete lines only).
pub fn print_log(
    path: &Path,
    from: u64,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> Result<u64> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(from),
        Err(e) => return Err(e).context(|| format!("read {}", path.display())),
    };
    let data = &data[(from as usize).min(data.len())..];
    let complete = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    for line in data[..complete]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
    {
        let mut parts = line.splitn(4, |b| *b == b' ');
        let (_, stream, tag, msg) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next().unwrap_or(b""),
        );
        let w: &mut dyn std::io::Write = if stream == Some(b"stderr") { err } else { out };
        let _ = w.write_all(msg);
        // "F" ends a line; "P" is a part of a longer one.
        if tag != Some(b"P") {
            let _ = w.write_all(b"\n");
        }
    }
    Ok(from + complete as u64)
}
