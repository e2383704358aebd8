//! Containers for manual use, as docker's CLI has them: `create`, `run`,
//! `start`, `stop`, `restart`, `kill`, `wait`, `pause`, `unpause`,
//! `rename`, `ps`, `logs`, `exec`, `top`, `diff`, `rm`, `cp`, `port`.
//!
//! Each is kept under `ROOT/containers/KEY/`: the bundle, `container.json`
//! (what it is: [`Container`]), `state.json` (how it runs:
//! [`crate::state`]), `network.json` while it is networked
//! (`crate::network::sandbox`), the CRI-format log of a detached one, and
//! `owner.lock`, held (shared) by whoever sets it up or runs it: a `run`
//! in the foreground, or the supervisor of a detached one
//! ([`crate::supervisor`]). The KEY is the name the container was created
//! with (its ID when a renamed container still holds that directory) and
//! never changes: it is also the container's ID in `berth` (under
//! `--root ROOT/containers/.runtime`) and the name of its pinned network
//! namespace. Names lead to keys through `ROOT/containers/.names/NAME`
//! links, changed only under `.names/.lock`, so a name is never given
//! twice and `rename` is one link made and one removed.
//!
//! `create` reserves the name, resolves volumes, makes the bundle and the
//! record; starting wires the network (CNI ADD, the ports first given
//! pinned for later starts) and runs the container, in the foreground or
//! under a supervisor that keeps its log and applies `--restart` and
//! HEALTHCHECK. The bundle's poststop hook releases the network when
//! `berth delete` runs; what a killed supervisor leaves is collected by
//! the next command ([`Containers::new`]).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::build::copy::{self as copying, CopyOptions, Source};
use crate::build::run::find_runtime;
use crate::bundle;
use crate::clock;
use crate::error::{Context, Error, Result};
use crate::health::{HealthConfig, HealthFlags};
use crate::image::Platform;
use crate::inroot;
use crate::network::ports::{self, PortMapping, PortRequest};
use crate::network::sandbox::{self, Mode, Namespace, Request, Sandbox, Sandboxes};
use crate::reference::Reference;
use crate::restart::RestartPolicy;
use crate::state::{ProcessId, State, StateFile};
use crate::store::{lock_file, unique_name, Store};
use crate::volume::{self, MountPoint, MountRequest, Volumes};

/// docker's `Config`: the fields people script against.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    pub hostname: String,
    pub user: String,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub working_dir: String,
    pub labels: BTreeMap<String, String>,
    pub tty: bool,
    pub stop_signal: String,
}

/// What starting the container wires: `--network` as given, the aliases
/// and the published ports (pinned to the host ports they got when first
/// started).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// `--network` values (none: the default bridge).
    pub networks: Vec<String>,
    pub aliases: Vec<String>,
    pub publish: Vec<PortRequest>,
    /// Whether `publish` holds the host ports chosen at the first start.
    pub pinned: bool,
}

/// `container.json`: what the container is. It changes only by `rename`,
/// `network connect`/`disconnect` and the pinning of its ports, each under
/// the state lock and written by rename.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    /// See the module's doc; empty in records made before keys (then the
    /// name).
    #[serde(default)]
    pub key: String,
    /// 64 hex digits, as docker's; the CNI container ID.
    #[serde(default)]
    pub id: String,
    pub image: String,
    /// The image's config digest (docker's image ID).
    #[serde(default)]
    pub image_id: String,
    /// The process: entrypoint and command.
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
    #[serde(default)]
    pub config: ContainerConfig,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    #[serde(default)]
    pub healthcheck: Option<HealthConfig>,
    #[serde(default)]
    pub network: NetworkSpec,
}

/// How a container is, as docker's `State.Status` words it.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Created,
    Running,
    Paused,
    /// Waiting for its restart policy to start it again.
    Restarting,
    Exited(i32),
}

impl Status {
    /// `created`, `running`, `paused`, `restarting`, `exited`.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited(_) => "exited",
        }
    }

    /// Whether a process of it is alive (running, or frozen).
    pub fn is_running(&self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }

    /// `ps`'s STATUS as docker's `State.String`: "Up 3 seconds (healthy)",
    /// "Exited (1) 2 minutes ago", "Restarting (1) Less than a second ago".
    pub fn describe(&self, state: &State) -> String {
        let since = |t: Option<i64>| clock::human_duration(clock::now() - t.unwrap_or(0));
        match self {
            Status::Created => "Created".into(),
            Status::Paused => format!("Up {} (Paused)", since(state.started_at)),
            Status::Running => match &state.health {
                Some(h) => format!("Up {} ({})", since(state.started_at), h.summary()),
                None => format!("Up {}", since(state.started_at)),
            },
            Status::Restarting => format!(
                "Restarting ({}) {} ago",
                state.exit_code,
                since(state.finished_at)
            ),
            Status::Exited(code) => format!("Exited ({code}) {} ago", since(state.finished_at)),
        }
    }
}

/// The containers of one store, run by one runtime.
pub struct Containers<'a> {
    store: Option<&'a Store>,
    root: PathBuf,
    pub runtime: PathBuf,
}

/// How `create` (and `run`) make a container.
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
    /// Hand the container to a supervisor and return.
    pub detach: bool,
    /// Remove the container once it exits (in the foreground).
    pub auto_remove: bool,
    /// `--restart`.
    pub restart: RestartPolicy,
    /// `--health-*`, `--no-healthcheck`.
    pub health: HealthFlags,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
}

/// What became of a container `run` started.
#[derive(Clone, Debug, PartialEq)]
pub enum Started {
    /// Running under its supervisor, by this name.
    Detached(String),
    /// Ran in the foreground and exited with this status.
    Exited(i32),
}

/// `run`: the image `reference`, pulled first if the store lacks it, as a
/// new container, run by `runtime` (see [`find_runtime`]) in the
/// foreground or handed to a supervisor.
pub fn run(
    store: &Store,
    runtime: Option<&Path>,
    reference: &Reference,
    opts: &RunOptions,
) -> Result<Started> {
    if !opts.restart.is_none() && opts.auto_remove {
        return Err(Error::invalid(
            "--restart",
            "conflicting options: --restart and --rm",
        ));
    }
    if !opts.restart.is_none() && !opts.detach {
        return Err(Error::invalid(
            "--restart",
            "needs --detach: only a supervised container is restarted",
        ));
    }
    let cs = Containers::new(store, runtime)?;
    let (c, owner) = cs.create(reference, opts)?;
    if let Err(e) = cs.check_command(&c) {
        drop(owner);
        let _ = cs.remove(&c.name, true, true);
        return Err(e);
    }
    if opts.detach {
        drop(owner);
        if let Err(e) = cs.start_detached(&c) {
            let _ = cs.remove(&c.name, true, true);
            return Err(e);
        }
        return Ok(Started::Detached(c.name));
    }
    // Held for the container's whole life in the foreground: the
    // collector leaves alone what has an owner.
    let code = cs.run_foreground(&c);
    // `berth run` deleted the container, and its poststop hook released
    // the network; make sure even if the hook could not run.
    let released = cs.sandboxes().teardown(&c.key);
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

fn no_such(name: &str) -> Error {
    Error::Other(format!("No such container: {name}"))
}

/// An image reference as docker shows it: without `docker.io/library/`.
pub fn familiar(image: &str) -> String {
    image
        .strip_prefix("docker.io/library/")
        .or_else(|| image.strip_prefix("docker.io/"))
        .unwrap_or(image)
        .to_string()
}

/// The poststop hook that releases a container's network: `berth-img
/// --root ROOT internal poststop`, reading the container's state (its ID
/// is its key) on stdin.
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
    key: String,
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
        if let Err(e) = self.cs.sandboxes().teardown(&self.key) {
            tracing::warn!("undo the network of {}: {e}", self.name);
        }
        let bundle = self.cs.bundle_dir(&self.key);
        if self.bundle && bundle.exists() {
            let _ = bundle::remove(self.cs.store, &bundle);
        }
        let volumes = Volumes::new(&self.cs.root);
        for v in &self.anonymous {
            let _ = volumes.remove(v);
        }
        let _ = fs::remove_dir_all(self.cs.dir(&self.key));
        self.cs.forget_name(&self.name, &self.key);
    }
}

/// A signal as `kill -s` takes it: `KILL`, `SIGKILL`, `kill` or `9`;
/// returns its number.
pub fn parse_signal(s: &str) -> Result<i32> {
    let bad = || Error::Other(format!("Invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = format!("SIG{}", upper.strip_prefix("SIG").unwrap_or(&upper));
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| bad())
}

impl<'a> Containers<'a> {
    /// The containers kept in `store`, run by `runtime` (see
    /// [`find_runtime`]). Collects first what exited containers nobody
    /// tore down left: networks of containers whose supervisor was killed
    /// or whose host crashed, reservations of interrupted `run`s.
    pub fn new(store: &'a Store, runtime: Option<&Path>) -> Result<Containers<'a>> {
        let cs = Containers {
            store: Some(store),
            root: store.root().to_path_buf(),
            runtime: find_runtime(runtime)?,
        };
        cs.collect();
        Ok(cs)
    }

    /// The containers under `root` without holding the store: for the
    /// supervisor, which lives as long as its container and must not keep
    /// `prune` waiting. Making or removing bundles needs [`Containers::new`].
    pub fn unstored(root: &Path, runtime: &Path) -> Containers<'static> {
        Containers {
            store: None,
            root: root.to_path_buf(),
            runtime: runtime.to_path_buf(),
        }
    }

    fn store(&self) -> Result<&'a Store> {
        self.store
            .ok_or_else(|| Error::Other("the store is not open".into()))
    }
}

impl Containers<'_> {
    fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// Where the container kept as `key` lives.
    pub fn dir(&self, key: &str) -> PathBuf {
        self.containers_dir().join(key)
    }

    pub fn state_root(&self) -> PathBuf {
        self.containers_dir().join(".runtime")
    }

    pub fn bundle_dir(&self, key: &str) -> PathBuf {
        self.dir(key).join("bundle")
    }

    pub fn log_path(&self, key: &str) -> PathBuf {
        self.dir(key).join("container.log")
    }

    /// The run state of the container kept as `key`.
    pub fn state_file(&self, key: &str) -> StateFile {
        StateFile::new(&self.dir(key))
    }

    /// The networks of the containers.
    pub fn sandboxes(&self) -> Sandboxes {
        Sandboxes::new(&self.root)
    }

    pub fn owner_lock_path(&self, key: &str) -> PathBuf {
        self.dir(key).join("owner.lock")
    }

    /// Whether someone owns the container kept as `key`: a `run` setting
    /// it up or running it in the foreground, or its supervisor.
    pub fn owned(&self, key: &str) -> bool {
        let Ok(f) = File::open(self.owner_lock_path(key)) else {
            return false;
        };
        Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err()
    }

    /// Whether the container kept as `key` has exited and nobody owns
    /// it, so what it holds can be released.
    fn is_dead(&self, key: &str) -> bool {
        if self.owned(key) {
            return false;
        }
        // The recorded init decides; `berth state` would still call a
        // zombie init running.
        match self.state_file(key).load().ok().and_then(|s| s.init) {
            Some(init) => !init.alive(),
            None => true,
        }
    }

    /// The collection [`Containers::new`] runs.
    fn collect(&self) {
        for e in fs::read_dir(self.containers_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
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
                let name = self.name_linked_to(&n).unwrap_or_default();
                drop(Unwind {
                    cs: self,
                    key: n,
                    name,
                    bundle: true,
                    anonymous: Vec::new(),
                    armed: true,
                });
            }
        }
        self.sandboxes().collect(&|key| self.is_dead(key));
    }

    pub fn berth(&self) -> Command {
        let mut c = Command::new(&self.runtime);
        c.arg("--root").arg(self.state_root());
        c
    }

    fn names_dir(&self) -> PathBuf {
        self.containers_dir().join(".names")
    }

    /// Held while names are given, changed or taken back.
    fn names_lock(&self) -> Result<Flock<File>> {
        let dir = self.names_dir();
        fs::create_dir_all(&dir).context(|| format!("create {}", dir.display()))?;
        lock_file(&dir.join(".lock"), FlockArg::LockExclusive)
    }

    /// The container record kept as `key`.
    pub fn load(&self, key: &str) -> Result<Container> {
        if !valid_name(key) {
            return Err(no_such(key));
        }
        let p = self.dir(key).join("container.json");
        let data = fs::read(&p).map_err(|_| no_such(key))?;
        let mut c: Container =
            serde_json::from_slice(&data).map_err(|e| Error::Path(p, format!("corrupt: {e}")))?;
        if c.key.is_empty() {
            c.key = c.name.clone();
        }
        Ok(c)
    }

    /// The key of the container named `name`, while the name is taken:
    /// by a container, or by a `create` still making it.
    fn key_of_name(&self, name: &str) -> Option<String> {
        if let Ok(target) = fs::read_link(self.names_dir().join(name)) {
            let key = target.to_string_lossy().into_owned();
            match self.load(&key) {
                Ok(c) if c.name == name => return Some(key),
                Err(_) if valid_name(&key) && self.dir(&key).exists() => return Some(key),
                _ => {}
            }
        }
        // Containers made before names were linked.
        self.load(name)
            .ok()
            .filter(|c| c.name == name)
            .map(|c| c.key)
    }

    /// The name whose link leads to `key`, if any.
    fn name_linked_to(&self, key: &str) -> Option<String> {
        fs::read_dir(self.names_dir())
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| fs::read_link(e.path()).is_ok_and(|t| t == Path::new(key)))
            .map(|e| e.file_name().to_string_lossy().into_owned())
    }

    /// Takes back `name` if it still leads to `key`.
    fn forget_name(&self, name: &str, key: &str) {
        if name.is_empty() {
            return;
        }
        let Ok(_lock) = self.names_lock() else { return };
        let link = self.names_dir().join(name);
        if fs::read_link(&link).is_ok_and(|t| t == Path::new(key)) {
            let _ = fs::remove_file(&link);
        }
    }

    /// The container `reference` names: a name, an ID, or a prefix of
    /// one ID.
    pub fn get(&self, reference: &str) -> Result<Container> {
        if valid_name(reference) {
            if let Some(key) = self.key_of_name(reference) {
                if let Ok(c) = self.load(&key) {
                    return Ok(c);
                }
            }
        }
        if !reference.is_empty() && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found: Vec<Container> = self
                .list()?
                .into_iter()
                .filter(|c| c.id.starts_with(reference))
                .collect();
            match found.len() {
                1 => return Ok(found.remove(0)),
                0 => {}
                _ => {
                    return Err(Error::Other(format!(
                        "multiple containers found with ID prefix {reference}"
                    )))
                }
            }
        }
        Err(no_such(reference))
    }

    /// Every container, newest first.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.containers_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let key = e.file_name().to_string_lossy().into_owned();
            if key.starts_with('.') {
                continue;
            }
            if let Ok(c) = self.load(&key) {
                out.push(c);
            }
        }
        out.sort_by_key(|c| std::cmp::Reverse(clock::parse_rfc3339(&c.created)));
        Ok(out)
    }

    /// `ps`: the containers, newest first, with their status and state;
    /// those that exited only with `all`.
    pub fn list_with_status(&self, all: bool) -> Result<Vec<(Container, Status, State)>> {
        let mut out = Vec::new();
        for c in self.list()? {
            let (status, state) = self.status_and_state(&c);
            if all || !matches!(status, Status::Exited(_) | Status::Created) {
                out.push((c, status, state));
            }
        }
        Ok(out)
    }

    /// The container's status.
    pub fn status(&self, c: &Container) -> Status {
        self.status_and_state(c).0
    }

    /// The container's status, from `berth state` and its recorded state.
    pub fn status_and_state(&self, c: &Container) -> (Status, State) {
        let mut state = self.state_file(&c.key).load().unwrap_or_default();
        let o = self
            .berth()
            .args(["state", &c.key])
            .stderr(Stdio::null())
            .output();
        // An init recorded dead is (a zombie nobody reaped yet is still
        // "running" to berth).
        let init_gone = state.init.is_some_and(|i| !i.alive());
        if let Some(o) = o.ok().filter(|o| o.status.success() && !init_gone) {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            match v["status"].as_str() {
                Some("running") => {
                    // Just started: the supervisor records the init a
                    // moment after berth reports it running.
                    if state.init.is_none() {
                        state.init = v["pid"].as_i64().and_then(|p| ProcessId::of(p as i32));
                    }
                    return (Status::Running, state);
                }
                Some("paused") => return (Status::Paused, state),
                // Between the supervisor's create and start.
                Some("created") if state.started_at.is_some() => {
                    return (Status::Restarting, state)
                }
                Some("created") => return (Status::Created, state),
                _ => {}
            }
        }
        let status = if state.restarting && self.owned(&c.key) {
            Status::Restarting
        } else if state.started_at.is_none() {
            Status::Created
        } else {
            Status::Exited(state.exit_code)
        };
        (status, state)
    }

    /// Reserves `name` (or a generated one) for the container `id`: its
    /// link under `.names` and its directory, made under a temporary name
    /// with its owner lock taken, then renamed into place, so it appears
    /// already owned. Returns the name, the key and the lock.
    fn reserve(&self, name: Option<&str>, id: &str) -> Result<(String, String, Flock<File>)> {
        let name = match name {
            Some(n) if !valid_name(n) => {
                return Err(Error::invalid(
                    "--name",
                    format!("{n:?}: want [a-zA-Z0-9][a-zA-Z0-9_.-]*"),
                ))
            }
            Some(n) => n.to_string(),
            None => format!("berth_{}", &id[..12]),
        };
        let _names = self.names_lock()?;
        if let Some(key) = self.key_of_name(&name) {
            let id = self.load(&key).map(|c| c.id).unwrap_or(key);
            return Err(Error::invalid(
                "--name",
                format!("the container name {name:?} is already in use by container {id}"),
            ));
        }
        // A renamed container may still be kept under this name.
        let key = if self.dir(&name).exists() {
            id.to_string()
        } else {
            name.clone()
        };
        let tmp = self.containers_dir().join(unique_name(".tmp-"));
        fs::create_dir_all(&tmp).context(|| format!("create {}", tmp.display()))?;
        let lock = lock_file(&tmp.join("owner.lock"), FlockArg::LockShared)?;
        if let Err(e) = fs::rename(&tmp, self.dir(&key)) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(Error::Path(self.dir(&key), e.to_string()));
        }
        let link = self.names_dir().join(&name);
        let _ = fs::remove_file(&link);
        if let Err(e) = std::os::unix::fs::symlink(&key, &link) {
            let _ = fs::remove_dir_all(self.dir(&key));
            return Err(Error::Path(link, e.to_string()));
        }
        Ok((name, key, lock))
    }

    /// `create`: makes the container from the image `reference` (pulled
    /// first if the store lacks it): its name, volumes, bundle and record.
    /// Returns it with its owner lock, which the caller holds until it
    /// runs; starting it is [`Containers::start`].
    pub fn create(
        &self,
        reference: &Reference,
        opts: &RunOptions,
    ) -> Result<(Container, Flock<File>)> {
        crate::rootless::check_publish(!opts.network.publish.is_empty() || opts.publish_all)?;
        let store = self.store()?;
        let record = crate::pull::ensure(store, reference, Platform::host(), false)?;
        let image = reference.to_string();
        let (_, image_config) = store.load(&record)?;
        let rc = &image_config.config;
        let healthcheck = crate::health::resolve(rc.extra.get("Healthcheck"), &opts.health)?;
        let id = crate::digest::Digest::sha256_of(unique_name("container").as_bytes())
            .hex()
            .to_string();
        let (name, key, owner) = self.reserve(opts.name.as_deref(), &id)?;
        let mut unwind = Unwind {
            cs: self,
            key: key.clone(),
            name: name.clone(),
            bundle: false,
            anonymous: Vec::new(),
            armed: true,
        };
        let hostname = opts
            .bundle
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_string());
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
        let namespace = self.sandboxes().namespace_for(&key, &request.mode)?;

        // Volume removal waits until this container's record names what
        // it uses.
        let volumes = Volumes::new(&self.root);
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
        // The runtime knows the container by its key, the name it was
        // made with, which another store (another user's, a test's) may
        // use too; the cgroup is the host's, so it is named by the ID, as
        // docker names it.
        bopts.cgroups_path = Some(format!("berth-img-{id}"));
        bopts.binds.extend(resolved.binds.iter().cloned());
        bopts.tmpfs.extend(resolved.tmpfs.iter().cloned());
        bopts.network = match &namespace {
            Namespace::Host => bundle::Network::Host,
            Namespace::Join(p) => bundle::Network::Join(p.clone()),
            Namespace::New => bundle::Network::None,
        };
        if matches!(namespace, Namespace::Join(_))
            && matches!(request.mode, Mode::None | Mode::Bridge(_))
        {
            bopts.hooks = Some(poststop_hook(&self.root)?);
        } else if namespace == Namespace::New {
            bopts.hooks = crate::rootless::loopback_hooks();
        }
        unwind.bundle = true;
        let bundle_dir = bundle::create(store, &image, &record, &self.bundle_dir(&key), &bopts)?;

        let spec: serde_json::Value = serde_json::from_slice(
            &fs::read(bundle_dir.join("config.json")).context(|| "read config.json".into())?,
        )
        .map_err(|e| Error::Other(e.to_string()))?;
        let (entrypoint, cmd) = entrypoint_and_cmd(rc, &opts.bundle);
        let mut labels = rc.labels.clone().unwrap_or_default();
        labels.extend(opts.labels.clone());
        let c = Container {
            name: name.clone(),
            key: key.clone(),
            id,
            image,
            image_id: record.config.to_string(),
            command: serde_json::from_value(spec["process"]["args"].clone()).unwrap_or_default(),
            created: clock::rfc3339_nano(Some(clock::now())),
            detached: opts.detach,
            auto_remove: opts.auto_remove,
            network_mode: match &request.mode {
                Mode::None => "none".into(),
                Mode::Host => "host".into(),
                Mode::Bridge(_) => "bridge".into(),
                Mode::Container(o) => format!("container:{o}"),
            },
            exposed_ports: exposed,
            mounts: resolved.mounts,
            config: ContainerConfig {
                hostname,
                user: opts
                    .bundle
                    .user
                    .clone()
                    .or(rc.user.clone())
                    .unwrap_or_default(),
                env: serde_json::from_value(spec["process"]["env"].clone()).unwrap_or_default(),
                cmd,
                entrypoint,
                working_dir: opts
                    .bundle
                    .workdir
                    .clone()
                    .or(rc.working_dir.clone())
                    .unwrap_or_default(),
                labels,
                tty: opts.bundle.tty,
                stop_signal: rc.stop_signal.clone().unwrap_or_default(),
            },
            restart_policy: opts.restart.clone(),
            healthcheck,
            network: NetworkSpec {
                networks: match &request.mode {
                    Mode::None => vec!["none".into()],
                    Mode::Host => vec!["host".into()],
                    Mode::Bridge(nets) => nets.clone(),
                    Mode::Container(o) => vec![format!("container:{o}")],
                },
                aliases: request.aliases.clone(),
                publish: request.publish.clone(),
                pinned: false,
            },
        };
        self.save(&c)?;
        unwind.armed = false;
        Ok((c, owner))
    }

    fn save(&self, c: &Container) -> Result<()> {
        crate::store::atomic_write(
            &self.dir(&c.key).join("container.json"),
            &serde_json::to_vec_pretty(c).expect("JSON"),
        )
    }

    /// Changes the record kept as `key` with `f`, under its state lock.
    pub fn update_record(&self, key: &str, f: impl FnOnce(&mut Container)) -> Result<Container> {
        let state = self.state_file(key);
        let _lock = state.lock()?;
        let mut c = self.load(key)?;
        f(&mut c);
        self.save(&c)?;
        Ok(c)
    }

    /// Wires the container's network as its record asks (after releasing
    /// whatever an earlier run left), and pins the host ports it got the
    /// first time.
    pub fn wire(&self, c: &Container) -> Result<Sandbox> {
        let sandboxes = self.sandboxes();
        sandboxes.teardown(&c.key)?;
        let request = Request {
            mode: Mode::parse(&c.network.networks)?,
            publish: c.network.publish.clone(),
            aliases: c.network.aliases.clone(),
        };
        let sb = sandboxes.setup(&c.key, &c.name, &c.id, &c.config.hostname, &request)?;
        let pinned = (|| {
            sandboxes.write_hosts(&c.key)?;
            if !c.network.pinned {
                let publish = sb.ports.iter().map(PortRequest::pinned).collect();
                self.update_record(&c.key, |c| {
                    c.network.publish = publish;
                    c.network.pinned = true;
                })?;
            }
            Ok(())
        })();
        if let Err(e) = pinned {
            let _ = sandboxes.teardown(&c.key);
            return Err(e);
        }
        Ok(sb)
    }

    /// Runs in the foreground; returns the exit status.
    pub fn run_foreground(&self, c: &Container) -> Result<i32> {
        self.wire(c)?;
        let state = self.state_file(&c.key);
        state.update(|s| {
            s.started_at = Some(clock::now());
            s.finished_at = None;
            s.exit_code = 0;
        })?;
        let status = self
            .berth()
            .args(["run", "--bundle"])
            .arg(self.bundle_dir(&c.key))
            .arg(&c.key)
            .status()
            .map_err(|e| Error::Other(format!("run {}: {e}", self.runtime.display())))?;
        let code = status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        });
        state.update(|s| {
            s.finished_at = Some(clock::now());
            s.exit_code = code;
        })?;
        Ok(code)
    }

    /// Hands the container to a new supervisor (`berth-img internal
    /// supervise`), which wires it, runs it, keeps its log, records its
    /// exits and applies its restart policy and health check; returns
    /// once it runs, or with why it could not start.
    pub fn start_detached(&self, c: &Container) -> Result<()> {
        let me = std::env::current_exe().context(|| "find berth-img's own path".into())?;
        let mut child = Command::new(me)
            .arg("--root")
            .arg(&self.root)
            .arg("--runtime")
            .arg(&self.runtime)
            .args(["internal", "supervise", &c.key])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context(|| "run berth-img internal supervise".into())?;
        // The supervisor forks and its first process exits at once; the
        // second says "ok", or why not, and closes the pipe.
        let mut said = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut said);
        }
        let _ = child.wait();
        match said.as_str() {
            "ok" => Ok(()),
            "" => Err(Error::Other(format!(
                "container {}: the supervisor died before it started",
                c.name
            ))),
            why => Err(Error::Other(why.to_string())),
        }
    }

    /// `start`: a created or stopped container, detached, with its
    /// writable layer as it was; nothing for one that runs.
    pub fn start(&self, name: &str) -> Result<()> {
        let c = self.get(name)?;
        match self.status(&c) {
            Status::Running | Status::Paused => return Ok(()),
            Status::Restarting => {
                return Err(Error::Other(format!(
                    "container {name} is restarting: wait for it or stop it first"
                )))
            }
            _ => {}
        }
        // After a reboot the rootfs overlay is gone.
        bundle::ensure_mounted(self.store()?, &self.bundle_dir(&c.key))?;
        self.state_file(&c.key).update(|s| {
            s.stopped_by_user = false;
            s.restart_count = 0;
        })?;
        self.start_detached(&c)
    }

    /// Whether the container's program can be run (see
    /// [`bundle::check_command`]).
    pub fn check_command(&self, c: &Container) -> Result<()> {
        let program = c.command.first().map_or("", String::as_str);
        bundle::check_command(
            &self.bundle_dir(&c.key).join("rootfs"),
            program,
            &c.config.env,
        )
    }

    /// `exec`: runs `args` in the container `name`; returns its exit
    /// status (126 or 127, as docker's, for a program that cannot run).
    pub fn exec(&self, name: &str, tty: bool, interactive: bool, args: &[String]) -> Result<i32> {
        let c = self.get(name)?;
        if !self.status(&c).is_running() {
            return Err(Error::Other(format!("container {name} is not running")));
        }
        let program = args.first().map_or("", String::as_str);
        if let Err(Error::Command { code, detail }) = bundle::check_command(
            &self.bundle_dir(&c.key).join("rootfs"),
            program,
            &c.config.env,
        ) {
            eprintln!("berth-img: {detail}");
            return Ok(code);
        }
        let mut cmd = self.berth();
        cmd.arg("exec");
        if tty {
            cmd.arg("--tty");
        }
        cmd.arg(&c.key).args(args);
        if !interactive {
            cmd.stdin(Stdio::null());
        }
        let status = cmd
            .status()
            .map_err(|e| Error::Other(format!("run {}: {e}", self.runtime.display())))?;
        Ok(status.code().unwrap_or(1))
    }

    /// The signal `stop` sends first: the image's StopSignal, or SIGTERM.
    fn stop_signal(&self, c: &Container) -> String {
        if !c.config.stop_signal.is_empty() {
            return c.config.stop_signal.clone();
        }
        let spec: serde_json::Value = fs::read(self.bundle_dir(&c.key).join("config.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default();
        spec["annotations"]["org.opencontainers.image.stopSignal"]
            .as_str()
            .unwrap_or("SIGTERM")
            .to_string()
    }

    /// `stop`: the StopSignal, then SIGKILL after `timeout`; no restart
    /// policy starts it again. Returns once it has stopped and its exit
    /// is recorded.
    pub fn stop(&self, name: &str, timeout: Duration) -> Result<()> {
        let c = self.get(name)?;
        self.state_file(&c.key)
            .update(|s| s.stopped_by_user = true)?;
        let status = self.status(&c);
        if status.is_running() {
            if status == Status::Paused {
                // Frozen processes take no signal until thawed.
                let _ = self.berth().args(["resume", &c.key]).status();
            }
            let _ = self
                .berth()
                .args(["kill", &c.key, &self.stop_signal(&c)])
                .stderr(Stdio::null())
                .status();
            if !self.wait_stopped(&c, timeout) {
                let _ = self
                    .berth()
                    .args(["kill", &c.key, "SIGKILL"])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if !self.wait_stopped(&c, Duration::from_secs(10)) {
            return Err(Error::Other(format!("container {name} did not stop")));
        }
        self.release_network(&c)
    }

    /// Waits up to `timeout` for the container's process to be gone and
    /// its exit recorded (its supervisor, or its foreground `run`, done).
    fn wait_stopped(&self, c: &Container, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let gone = !self.status(c).is_running()
                && !self
                    .state_file(&c.key)
                    .load()
                    .ok()
                    .and_then(|s| s.init)
                    .is_some_and(|i| i.alive());
            if gone && !self.owned(&c.key) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Tears down the network of a stopped container (its poststop hook
    /// normally has; this covers a supervisor that was killed).
    fn release_network(&self, c: &Container) -> Result<()> {
        if self.owned(&c.key) {
            // Its owner tears down itself.
            return Ok(());
        }
        self.sandboxes().teardown(&c.key)
    }

    /// `restart`: `stop`, then `start`.
    pub fn restart(&self, name: &str, timeout: Duration) -> Result<()> {
        self.stop(name, timeout)?;
        self.start(name)
    }

    /// `kill`: sends `signal` (a name or number) to the container's
    /// process; no restart policy starts it again.
    pub fn kill(&self, name: &str, signal: &str) -> Result<()> {
        let number = parse_signal(signal)?;
        let c = self.get(name)?;
        if !self.status(&c).is_running() {
            return Err(Error::Other(format!(
                "cannot kill container: {name}: container {} is not running",
                c.id
            )));
        }
        self.state_file(&c.key)
            .update(|s| s.stopped_by_user = true)?;
        let o = self
            .berth()
            .args(["kill", &c.key, &number.to_string()])
            .output()
            .map_err(|e| Error::Other(format!("run {}: {e}", self.runtime.display())))?;
        if !o.status.success() {
            return Err(Error::Other(format!(
                "cannot kill container: {name}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        Ok(())
    }

    /// `wait`: blocks until the container is next not running; returns
    /// its exit code.
    pub fn wait(&self, name: &str) -> Result<i32> {
        let c = self.get(name)?;
        let state = self.state_file(&c.key);
        let before = state.load()?.finished_at;
        loop {
            let (status, s) = self.status_and_state(&c);
            let exited_since = s.finished_at != before && s.finished_at.is_some();
            if exited_since || matches!(status, Status::Exited(_) | Status::Created) {
                if matches!(status, Status::Exited(_)) {
                    // The supervisor may still be writing it down.
                    self.wait_stopped(&c, Duration::from_secs(10));
                }
                let s = state.load()?;
                return Ok(s.exit_code);
            }
            if !self.dir(&c.key).exists() {
                return Err(no_such(name));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `pause`: freezes every process of the container.
    pub fn pause(&self, name: &str) -> Result<()> {
        let c = self.get(name)?;
        match self.status(&c) {
            Status::Running => {}
            Status::Paused => {
                return Err(Error::Other(format!("container {name} is already paused")))
            }
            _ => return Err(Error::Other(format!("container {name} is not running"))),
        }
        self.berth_quiet(&["pause", &c.key])
    }

    /// `unpause`.
    pub fn unpause(&self, name: &str) -> Result<()> {
        let c = self.get(name)?;
        if self.status(&c) != Status::Paused {
            return Err(Error::Other(format!("container {name} is not paused")));
        }
        self.berth_quiet(&["resume", &c.key])
    }

    /// Runs `berth ARGS`; its error as ours.
    fn berth_quiet(&self, args: &[&str]) -> Result<()> {
        let o = self
            .berth()
            .args(args)
            .output()
            .map_err(|e| Error::Other(format!("run {}: {e}", self.runtime.display())))?;
        if !o.status.success() {
            return Err(Error::Other(format!(
                "berth {}: {}",
                args[0],
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        Ok(())
    }

    /// `rename`: the container `old` is named `new` from now on, for
    /// every command and for its peers' name resolution.
    pub fn rename(&self, old: &str, new: &str) -> Result<()> {
        if !valid_name(new) {
            return Err(Error::invalid(
                "name",
                format!("{new:?}: want [a-zA-Z0-9][a-zA-Z0-9_.-]*"),
            ));
        }
        let _names = self.names_lock()?;
        let c = self.get(old)?;
        if c.name == new {
            return Err(Error::Other(format!(
                "renaming a container with the same name as its current name: {new}"
            )));
        }
        if let Some(key) = self.key_of_name(new) {
            let id = self.load(&key).map(|c| c.id).unwrap_or(key);
            return Err(Error::Other(format!(
                "the container name {new:?} is already in use by container {id}"
            )));
        }
        let link = self.names_dir().join(new);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&c.key, &link)
            .map_err(|e| Error::Path(link.clone(), e.to_string()))?;
        if let Err(e) = self.update_record(&c.key, |r| r.name = new.to_string()) {
            let _ = fs::remove_file(&link);
            return Err(e);
        }
        let old_link = self.names_dir().join(&c.name);
        if fs::read_link(&old_link).is_ok_and(|t| t == Path::new(&c.key)) {
            let _ = fs::remove_file(&old_link);
        }
        self.sandboxes().rename(&c.key, new)
    }

    /// Removes the container, its network, its bundle and its files; with
    /// `volumes`, also the anonymous volumes no other container uses.
    pub fn remove(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.get(name)?;
        match self.status(&c) {
            Status::Exited(_) | Status::Created => {
                self.wait_stopped(&c, Duration::from_secs(10));
            }
            _ if force => {
                if let Err(e) = self.stop(name, Duration::ZERO) {
                    // The container is stopped; its network is seen to below.
                    tracing::warn!("{e}");
                }
            }
            s => {
                return Err(Error::invalid(
                    "container",
                    format!(
                        "cannot remove {name}: it is {}; stop it first or use --force",
                        s.word()
                    ),
                ))
            }
        }
        let _ = self
            .berth()
            .args(["delete", "--force", &c.key])
            .stderr(Stdio::null())
            .status();
        if let Err(e) = self.sandboxes().teardown(&c.key) {
            if !force {
                return Err(e);
            }
            tracing::warn!("{e}");
        }
        let bundle = self.bundle_dir(&c.key);
        if bundle.exists() {
            bundle::remove(self.store, &bundle)?;
        }
        let store = Volumes::new(&self.root);
        let _lock = store.lock(true)?;
        fs::remove_dir_all(self.dir(&c.key))
            .context(|| format!("remove {}", self.dir(&c.key).display()))?;
        self.forget_name(&c.name, &c.key);
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
        let mut used = Vec::new();
        for c in self.list().unwrap_or_default() {
            used.extend(volume::volumes_used(&c.mounts));
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

    /// `volume rm`: removes volume `name`, refused while a container
    /// uses it.
    pub fn remove_volume(&self, name: &str) -> Result<()> {
        let volumes = Volumes::new(&self.root);
        let _lock = volumes.lock(true)?;
        volumes.get(name)?;
        let users = self.volume_users(name);
        if !users.is_empty() {
            return Err(Error::Other(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        volumes.remove(name)
    }

    /// Container `name`'s network as recorded while it is networked.
    pub fn sandbox(&self, name: &str) -> Result<Option<Sandbox>> {
        let c = self.get(name)?;
        self.sandboxes().load(&c.key)
    }

    /// `network connect`: joins the running container `name` to
    /// `network`, and to it again whenever it starts.
    pub fn connect(&self, name: &str, network: &str, aliases: &[String]) -> Result<()> {
        let c = self.get(name)?;
        self.sandboxes().connect(&c.key, network, aliases)?;
        self.update_record(&c.key, |r| {
            if r.network.networks.is_empty() {
                r.network
                    .networks
                    .push(crate::network::DEFAULT_NETWORK.into());
            }
            r.network.networks.push(network.to_string());
            r.network.aliases.extend(aliases.iter().cloned());
        })?;
        Ok(())
    }

    /// `network disconnect`.
    pub fn disconnect(&self, name: &str, network: &str) -> Result<()> {
        let c = self.get(name)?;
        self.sandboxes().disconnect(&c.key, network)?;
        let network = if network == "default" {
            crate::network::DEFAULT_NETWORK
        } else {
            network
        };
        self.update_record(&c.key, |r| {
            if r.network.networks.is_empty() {
                r.network
                    .networks
                    .push(crate::network::DEFAULT_NETWORK.into());
            }
            let first = r.network.networks.first().is_some_and(|n| n == network);
            r.network.networks.retain(|n| n != network);
            if first {
                // The ports went with the network that carried them.
                r.network.publish.clear();
            }
            if r.network.networks.is_empty() {
                r.network.networks.push("none".into());
            }
        })?;
        Ok(())
    }

    /// `port`: the container's published ports.
    pub fn ports(&self, name: &str) -> Result<Vec<PortMapping>> {
        Ok(self.sandbox(name)?.map(|s| s.ports).unwrap_or_default())
    }

    /// The rootfs of a container, for `cp`.
    pub fn rootfs(&self, name: &str) -> Result<PathBuf> {
        let c = self.get(name)?;
        Ok(self.bundle_dir(&c.key).join("rootfs"))
    }

    /// The PIDs (on the host) of the container's processes, from `berth
    /// ps`.
    pub fn pids(&self, c: &Container) -> Result<Vec<i32>> {
        let o = self
            .berth()
            .args(["ps", "--format", "json", &c.key])
            .output()
            .map_err(|e| Error::Other(format!("run {}: {e}", self.runtime.display())))?;
        if !o.status.success() {
            return Err(Error::Other(format!("container {} is not running", c.name)));
        }
        serde_json::from_slice(&o.stdout).map_err(|e| Error::Other(format!("berth ps: {e}")))
    }

    /// `top`: `ps ARGS` (default `-ef`) on the host, only the rows of the
    /// container's processes, as docker does: the titles and the rows.
    pub fn top(&self, name: &str, ps_args: &[String]) -> Result<(Vec<String>, Vec<Vec<String>>)> {
        let c = self.get(name)?;
        if !self.status(&c).is_running() {
            return Err(Error::Other(format!("container {name} is not running")));
        }
        let pids = self.pids(&c)?;
        let args: Vec<String> = if ps_args.is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.to_vec()
        };
        let o = Command::new("ps")
            .args(&args)
            .output()
            .map_err(|e| Error::Other(format!("run ps: {e}")))?;
        if !o.status.success() {
            return Err(Error::Other(format!(
                "ps {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        parse_ps(&String::from_utf8_lossy(&o.stdout), &pids)
    }

    /// `diff`: what the container changed against its image.
    pub fn diff(&self, name: &str) -> Result<Vec<crate::changes::Change>> {
        let c = self.get(name)?;
        let bundle = self.bundle_dir(&c.key);
        let meta = bundle::metadata(&bundle)?;
        let store = self.store()?;
        let lowers: Vec<PathBuf> = meta
            .layers
            .iter()
            .rev()
            .map(|d| store.layer_dir(d))
            .collect();
        crate::changes::changes(&bundle.join(".overlay/upper"), &lowers)
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
        let c = self.get(name)?;
        let log = self.log_path(&c.key);
        let mut pos = print_log(&log, 0, out, err)?;
        while follow && !matches!(self.status(&c), Status::Exited(_) | Status::Created) {
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

/// docker's `Config.Entrypoint` and `Config.Cmd`: the image's, replaced
/// as `--entrypoint` and the command arguments ask (a new entrypoint
/// drops the image's Cmd).
fn entrypoint_and_cmd(
    rc: &crate::image::RunConfig,
    opts: &bundle::Options,
) -> (Vec<String>, Vec<String>) {
    let entrypoint = match &opts.entrypoint {
        Some(e) => e.clone(),
        None => rc.entrypoint.clone().unwrap_or_default(),
    };
    let cmd = if !opts.args.is_empty() {
        opts.args.clone()
    } else if opts.entrypoint.is_none() {
        rc.cmd.clone().unwrap_or_default()
    } else {
        Vec::new()
    };
    (entrypoint, cmd)
}

/// The rows of `ps` output whose PID is one of `pids`, with the titles:
/// docker's `top` (a row's last column keeps its spaces; thread rows, whose
/// PID is `-`, follow their process).
pub fn parse_ps(output: &str, pids: &[i32]) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| Error::Other("couldn't find PID field in ps output".into()))?;
    let mut rows = Vec::new();
    let mut in_container = false;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_col) else {
            continue;
        };
        let take = if *pid == "-" {
            in_container
        } else {
            let p: i32 = pid
                .parse()
                .map_err(|_| Error::Other(format!("unexpected pid {pid:?} in ps output")))?;
            in_container = pids.contains(&p);
            in_container
        };
        if take {
            let n = titles.len().max(1);
            let mut row: Vec<String> = fields.iter().take(n - 1).map(|s| s.to_string()).collect();
            row.push(fields.get(n - 1..).unwrap_or_default().join(" "));
            rows.push(row);
        }
    }
    Ok((titles, rows))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("HUP").unwrap(), 1);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert_eq!(
            parse_signal("FOO").unwrap_err().to_string(),
            "Invalid signal: FOO"
        );
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn ps_rows_of_the_container() {
        let out = "UID   PID  PPID  C STIME TTY TIME CMD\n\
                   root    1     0  0 10:00 ?   00:00:01 /sbin/init\n\
                   root  420     7  0 10:01 ?   00:00:00 sleep 60 with args\n";
        let (titles, rows) = parse_ps(out, &[420]).unwrap();
        assert_eq!(titles.len(), 8);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0][1], "420");
        assert_eq!(rows[0][7], "sleep 60 with args");
        assert!(parse_ps("USER COMMAND\n", &[1])
            .unwrap_err()
            .to_string()
            .contains("PID"));
    }

    #[test]
    fn statuses_in_docker_words() {
        let now = clock::now();
        let s = State {
            started_at: Some(now - 3_500_000_000),
            finished_at: Some(now - 125_000_000_000),
            exit_code: 2,
            ..Default::default()
        };
        assert_eq!(Status::Running.describe(&s), "Up 3 seconds");
        assert_eq!(Status::Exited(2).describe(&s), "Exited (2) 2 minutes ago");
        assert_eq!(Status::Paused.describe(&s), "Up 3 seconds (Paused)");
        let healthy = State {
            health: Some(crate::health::Health {
                status: "healthy".into(),
                failing_streak: 0,
                log: Vec::new(),
            }),
            ..s
        };
        assert_eq!(Status::Running.describe(&healthy), "Up 3 seconds (healthy)");
        assert_eq!(familiar("docker.io/library/busybox:test"), "busybox:test");
    }
}
