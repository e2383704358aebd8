//! Containers for manual use (`run`, `ps`, `logs`, `exec`, `stop`, `rm`,
//! `cp`, `port`), kept under `ROOT/containers/NAME/`: the bundle,
//! `container.json`, `network.json` while it is networked
//! (`crate::network::sandbox`), `owner.lock` (held by whoever is setting
//! it up or running it in the foreground), and for detached ones the
//! CRI-format log and exit file that the shim's standalone `supervise`
//! mode writes. The containers themselves live in `berth` under
//! `--root ROOT/containers/.runtime`, named by NAME.
//!
//! `run` reserves the name, resolves volumes, makes the bundle, wires the
//! network (CNI ADD) and only then starts the container; a failure at any
//! step undoes the steps before it. The bundle's poststop hook releases
//! the network when `berth delete` runs; what a killed supervisor leaves
//! is collected by the next command ([`Containers::new`]).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::build::copy::{self as copying, CopyOptions, Source};
use crate::build::run::{find_runtime, find_sibling};
use crate::bundle;
use crate::error::{Context, Error, Result};
use crate::image::Platform;
use crate::inroot;
use crate::network::ports::{self, PortMapping};
use crate::network::sandbox::{self, Mode, Namespace, Sandbox, Sandboxes};
use crate::reference::Reference;
use crate::store::{lock_file, unique_name, ImageRecord, Store};
use crate::volume::{self, MountPoint, MountRequest, Volumes};

/// The shim whose `supervise` mode keeps detached containers.
const SHIM: &str = "containerd-shim-berth-v2";

/// `container.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    /// 64 hex digits, as docker's; the CNI container ID.
    #[serde(default)]
    pub id: String,
    pub image: String,
    pub command: Vec<String>,
    pub created: String,
    pub detached: bool,
    #[serde(default)]
    pub auto_remove: bool,
    /// `--network` as resolved: `bridge`, `host`, `none`, `container:N`.
    #[serde(default)]
    pub network_mode: String,
    /// The image's EXPOSEd ports (`80/tcp`).
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    /// docker's `Mounts`: what is mounted, volumes by name.
    #[serde(default)]
    pub mounts: Vec<MountPoint>,
    /// The container's init and the shim's supervisor, once started
    /// detached: a supervisor gone while the exit file is missing was
    /// killed, and nobody will record the exit or delete the container.
    #[serde(default)]
    pub init: Option<ProcessId>,
    #[serde(default)]
    pub supervisor: Option<ProcessId>,
}

/// A process, with its start time so a reused PID does not count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    pub start: u64,
}

impl ProcessId {
    /// `pid` as it is now.
    pub fn of(pid: i32) -> Option<ProcessId> {
        Some(ProcessId {
            pid,
            start: proc_stat_field(pid, 22)?.parse().ok()?,
        })
    }

    /// Whether it still runs: same start time, and not a zombie (a killed
    /// supervisor's children wait for PID 1 to reap them).
    pub fn alive(&self) -> bool {
        ProcessId::of(self.pid).is_some_and(|now| now.start == self.start)
            && proc_stat_field(self.pid, 3).is_some_and(|s| s != "Z" && s != "X")
    }
}

/// Field `n` (1-based, as proc(5) counts) of `/proc/PID/stat`.
fn proc_stat_field(pid: i32, n: usize) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(n - 3).map(str::to_string)
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
    /// `-v` and `--mount`.
    pub mounts: Vec<MountRequest>,
    /// `--network`, `-p`, `--network-alias`.
    pub network: sandbox::Request,
    /// `-P`: publish every port the image EXPOSEs.
    pub publish_all: bool,
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
    let shim = if opts.detach {
        Some(find_sibling(SHIM).ok_or_else(|| {
            Error::Other(format!("{SHIM} not found next to berth-img or on PATH"))
        })?)
    } else {
        None
    };
    // Held until the container runs detached, or for its whole life in
    // the foreground: the collector leaves alone what has an owner.
    let (mut c, owner) = cs.create(&reference.to_string(), &record, opts)?;
    if let Some(shim) = shim {
        if let Err(e) = cs.run_detached(&c, &shim) {
            drop(owner);
            let _ = cs.remove(&c.name, true, true);
            return Err(e);
        }
        cs.record_processes(&mut c)?;
        drop(owner);
        return Ok(Started::Detached(c.name));
    }
    let code = cs.run_foreground(&c);
    // `berth run` deleted the container, and its poststop hook released
    // the network; make sure even if the hook could not run.
    let released = cs.sandboxes().teardown(&c.name);
    drop(owner);
    let code = code?;
    if opts.auto_remove {
        cs.remove(&c.name, true, true)?;
    } else {
        released?;
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
    /// [`find_runtime`]). Collects first what exited containers nobody
    /// tore down left: networks of containers whose supervisor was killed
    /// or whose host crashed, reservations of interrupted `run`s.
    pub fn new(store: &'a Store, runtime: Option<&Path>) -> Result<Containers<'a>> {
        let cs = Containers {
            store,
            runtime: find_runtime(runtime)?,
        };
        cs.collect();
        Ok(cs)
    }
}

/// The poststop hook that releases a container's network: `berth-img
/// --root ROOT internal poststop`, reading the container's state (its ID
/// is its name) on stdin.
fn poststop_hook(root: &Path) -> Result<serde_json::Value> {
    let me = std::env::current_exe().context(|| "find berth-img's own path".into())?;
    let root = fs::canonicalize(root).context(|| format!("resolve {}", root.display()))?;
    Ok(json!({
        "poststop": [{
            "path": me,
            "args": ["berth-img", "--root", root, "internal", "poststop"],
        }]
    }))
}

/// Undoes a `create` that failed part way, in reverse.
struct Unwind<'c, 'a> {
    cs: &'c Containers<'a>,
    name: String,
    bundle: bool,
    anonymous: Vec<String>,
    armed: bool,
}

impl Drop for Unwind<'_, '_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(e) = self.cs.sandboxes().teardown(&self.name) {
            tracing::warn!("undo the network of {}: {e}", self.name);
        }
        let bundle = self.cs.bundle_dir(&self.name);
        if self.bundle && bundle.exists() {
            let _ = bundle::remove(Some(self.cs.store), &bundle);
        }
        let volumes = Volumes::new(self.cs.store.root());
        for v in &self.anonymous {
            let _ = volumes.remove(v);
        }
        let _ = fs::remove_dir_all(self.cs.dir(&self.name));
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

    /// The networks of the containers.
    pub fn sandboxes(&self) -> Sandboxes {
        Sandboxes::new(self.store.root())
    }

    fn owner_lock_path(&self, name: &str) -> PathBuf {
        self.dir(name).join("owner.lock")
    }

    /// Whether someone owns container `name`: a `run` setting it up, or
    /// running it in the foreground.
    fn owned(&self, name: &str) -> bool {
        let Ok(f) = File::open(self.owner_lock_path(name)) else {
            return false;
        };
        Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err()
    }

    /// Whether container `name` has exited and nobody owns it, so what it
    /// holds can be released.
    fn is_dead(&self, name: &str) -> bool {
        if self.owned(name) {
            return false;
        }
        // A detached container's recorded init decides; `berth state`
        // would still call a zombie init running.
        if let Some(init) = self.get(name).ok().and_then(|c| c.init) {
            return !init.alive();
        }
        matches!(self.status(name), Status::Exited(_))
    }

    /// The collection [`Containers::new`] runs.
    fn collect(&self) {
        let dir = self.store.root().join("containers");
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let lock = e.path().join("owner.lock");
            let free = || {
                File::open(&lock)
                    .ok()
                    .is_none_or(|f| Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok())
            };
            if let Some(rest) = n.strip_prefix(".tmp-") {
                // A reservation whose `run` died before it got its name
                // (the name carries its PID: a live one may not have made
                // the lock yet).
                let maker_alive = rest
                    .split('-')
                    .next()
                    .is_some_and(|pid| Path::new("/proc").join(pid).exists());
                if !maker_alive && free() {
                    let _ = fs::remove_dir_all(e.path());
                }
            } else if !n.starts_with('.')
                && !e.path().join("container.json").exists()
                && lock.exists()
                && free()
            {
                // A `run` killed while it made the container: undo it
                // (unless its network lives elsewhere: keep its record).
                if let Err(e) = self.sandboxes().teardown(&n) {
                    tracing::debug!("container {n}: {e}");
                    continue;
                }
                tracing::info!("removing container {n}, whose run was interrupted");
                drop(Unwind {
                    cs: self,
                    name: n,
                    bundle: true,
                    anonymous: Vec::new(),
                    armed: true,
                });
            }
        }
        self.sandboxes().collect(&|name| self.is_dead(name));
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

    /// Reserves `name` (or a generated one): a directory made under a
    /// temporary name with its owner lock taken, then renamed into place,
    /// so the name appears already owned.
    fn reserve(&self, name: Option<&str>) -> Result<(String, Flock<File>)> {
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
        let parent = self.store.root().join("containers");
        let tmp = parent.join(unique_name(".tmp-"));
        fs::create_dir_all(&tmp).context(|| format!("create {}", tmp.display()))?;
        let lock = lock_file(&tmp.join("owner.lock"), FlockArg::LockShared)?;
        let dir = self.dir(&name);
        if dir.exists() || fs::rename(&tmp, &dir).is_err() {
            let _ = fs::remove_dir_all(&tmp);
            return Err(Error::invalid(
                "--name",
                format!("the container name {name:?} is already in use"),
            ));
        }
        Ok((name, lock))
    }

    /// Makes the container: its directory, volumes, bundle, network and
    /// record. Returns it with its owner lock, which the caller holds
    /// until the container runs.
    pub fn create(
        &self,
        image: &str,
        record: &ImageRecord,
        opts: &RunOptions,
    ) -> Result<(Container, Flock<File>)> {
        let (manifest_config, image_config) = self.store.load(record)?;
        drop(manifest_config);
        let (name, owner) = self.reserve(opts.name.as_deref())?;
        let mut unwind = Unwind {
            cs: self,
            name: name.clone(),
            bundle: false,
            anonymous: Vec::new(),
            armed: true,
        };
        let id = crate::digest::Digest::sha256_of(unique_name(&name).as_bytes())
            .hex()
            .to_string();
        let hostname = opts
            .bundle
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_string());
        let rc = &image_config.config;
        let exposed: Vec<String> = rc
            .exposed_ports
            .as_ref()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let mut request = opts.network.clone();
        if opts.publish_all {
            if let Some(p) = &rc.exposed_ports {
                request.publish.extend(ports::publish_exposed(p)?);
            }
        }
        let sandboxes = self.sandboxes();
        let namespace = sandboxes.namespace_for(&name, &request.mode)?;

        // Volume removal waits until this container's record names what
        // it uses.
        let volumes = Volumes::new(self.store.root());
        let _volumes_lock = volumes.lock(false)?;
        let image_volumes: Vec<String> = rc
            .volumes
            .as_ref()
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default();
        let resolved = volume::resolve(&opts.mounts, &image_volumes, Some(&volumes))?;
        unwind.anonymous = resolved.anonymous.clone();

        let mut bopts = opts.bundle.clone();
        bopts.hostname = Some(hostname.clone());
        bopts.binds.extend(resolved.binds.iter().cloned());
        bopts.tmpfs.extend(resolved.tmpfs.iter().cloned());
        bopts.network = match &namespace {
            Namespace::Host => bundle::Network::Host,
            Namespace::Join(p) => bundle::Network::Join(p.clone()),
        };
        if matches!(request.mode, Mode::None | Mode::Bridge(_)) {
            bopts.hooks = Some(poststop_hook(self.store.root())?);
        }
        unwind.bundle = true;
        let bundle_dir =
            bundle::create(self.store, image, record, &self.bundle_dir(&name), &bopts)?;
        let sb = sandboxes.setup(&name, &id, &hostname, &request)?;
        sandboxes.write_hosts(&name)?;

        let spec: serde_json::Value = serde_json::from_slice(
            &fs::read(bundle_dir.join("config.json")).context(|| "read config.json".into())?,
        )
        .map_err(|e| Error::Other(e.to_string()))?;
        let c = Container {
            name: name.clone(),
            id,
            image: image.to_string(),
            command: serde_json::from_value(spec["process"]["args"].clone()).unwrap_or_default(),
            created: crate::pull::now_rfc3339(),
            detached: opts.detach,
            auto_remove: opts.auto_remove,
            network_mode: sb.mode,
            exposed_ports: exposed,
            mounts: resolved.mounts,
            init: None,
            supervisor: None,
        };
        self.save(&c)?;
        unwind.armed = false;
        Ok((c, owner))
    }

    fn save(&self, c: &Container) -> Result<()> {
        crate::store::atomic_write(
            &self.dir(&c.name).join("container.json"),
            &serde_json::to_vec_pretty(c).expect("JSON"),
        )
    }

    /// Records the init and the supervisor of a container just started
    /// detached (the init's parent: the supervisor is its subreaper).
    fn record_processes(&self, c: &mut Container) -> Result<()> {
        let o = self
            .berth()
            .args(["state", &c.name])
            .stderr(Stdio::null())
            .output()
            .map_err(|e| Error::Other(format!("run {}: {e}", self.runtime.display())))?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        let Some(pid) = v["pid"].as_i64().filter(|p| *p > 0) else {
            // Already gone: nothing to watch.
            return Ok(());
        };
        c.init = ProcessId::of(pid as i32);
        c.supervisor = proc_stat_field(pid as i32, 4)
            .and_then(|p| p.parse().ok())
            .filter(|p| *p > 1)
            .and_then(ProcessId::of);
        self.save(c)
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
                return self.release_network(name);
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
                return self.release_network(name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Error::Other(format!("container {name} did not stop")))
    }

    /// Tears down the network of a stopped container (its poststop hook
    /// normally has; this covers a supervisor that was killed).
    fn release_network(&self, name: &str) -> Result<()> {
        if self.owned(name) {
            // A foreground `run` still owns it and tears down itself.
            return Ok(());
        }
        self.sandboxes().teardown(name)
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
            // A killed supervisor records nothing.
            if c.supervisor.is_some_and(|s| !s.alive()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes the container, its network, its bundle and its files; with
    /// `volumes`, also the anonymous volumes no other container uses.
    pub fn remove(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.get(name)?;
        match self.status(name) {
            Status::Exited(_) => self.wait_exit_recorded(&c),
            _ if force => {
                if let Err(e) = self.stop(name, Duration::ZERO) {
                    // The container is stopped; its network is seen to below.
                    tracing::warn!("{e}");
                }
            }
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
        if let Err(e) = self.sandboxes().teardown(name) {
            if !force {
                return Err(e);
            }
            tracing::warn!("{e}");
        }
        let bundle = self.bundle_dir(name);
        if bundle.exists() {
            bundle::remove(Some(self.store), &bundle)?;
        }
        let store = Volumes::new(self.store.root());
        let _lock = store.lock(true)?;
        fs::remove_dir_all(self.dir(name))
            .context(|| format!("remove {}", self.dir(name).display()))?;
        if volumes {
            let in_use = self.volumes_in_use();
            for v in volume::volumes_used(&c.mounts) {
                let anonymous = store.get(&v).is_ok_and(|v| v.anonymous);
                if anonymous && !in_use.contains(&v) {
                    store.remove(&v)?;
                }
            }
        }
        Ok(())
    }

    /// The volumes any container's record names. Accurate while the
    /// caller holds the volumes lock exclusively.
    pub fn volumes_in_use(&self) -> Vec<String> {
        let dir = self.store.root().join("containers");
        let mut used = Vec::new();
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Ok(c) = self.get(&n) {
                used.extend(volume::volumes_used(&c.mounts));
            }
        }
        used
    }

    /// The containers that use volume `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.list()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| volume::volumes_used(&c.mounts).iter().any(|v| v == name))
            .map(|c| c.name)
            .collect()
    }

    /// Container `name`'s network as recorded while it is networked.
    pub fn sandbox(&self, name: &str) -> Result<Option<Sandbox>> {
        self.get(name)?;
        self.sandboxes().load(name)
    }

    /// `port`: the container's published ports.
    pub fn ports(&self, name: &str) -> Result<Vec<PortMapping>> {
        Ok(self.sandbox(name)?.map(|s| s.ports).unwrap_or_default())
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
                keep_owner: false,
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
