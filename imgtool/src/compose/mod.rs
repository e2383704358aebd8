//! Compose: a compose file's services run as ordinary berth-img
//! containers, on networks and volumes made for the project. Nothing
//! here runs a container itself: each service becomes the
//! [`RunOptions`] `berth-img run` would build, handed to
//! [`containers::run`], as nerdctl's composer does.
//!
//! What belongs to a project is found by docker compose's labels
//! (`com.docker.compose.project`, `…service`, `…config-hash` on
//! containers; `…project` and `…network`/`…volume` on networks and
//! volumes), so `down` finds what an earlier `up` made even after the
//! file changed. Names are docker-compose's: `PROJECT_SERVICE_1` for a
//! container, `PROJECT_KEY` for a network or volume, `PROJECT_SERVICE`
//! for an image a service builds.

pub mod file;
pub mod interpolate;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use file::{Condition, Model, Service, VolumeType};
use interpolate::Environment;

use crate::build::{self, BuildOptions};
use crate::containers::{self, Container, Containers, RunOptions, Started, Status};
use crate::error::{Context, Error, Result};
use crate::health::HealthFlags;
use crate::image::Platform;
use crate::network::sandbox::{Mode, Request, Sandboxes};
use crate::network::{self, ports, Networks};
use crate::reference::Reference;
use crate::state::State;
use crate::store::Store;
use crate::volume::{MountKind, MountRequest, Volumes};

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
pub const HASH_LABEL: &str = "com.docker.compose.config-hash";
pub const NUMBER_LABEL: &str = "com.docker.compose.container-number";
pub const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";
pub const WORKING_DIR_LABEL: &str = "com.docker.compose.project.working_dir";
pub const CONFIG_FILES_LABEL: &str = "com.docker.compose.project.config_files";
pub const NETWORK_LABEL: &str = "com.docker.compose.network";
pub const VOLUME_LABEL: &str = "com.docker.compose.volume";

/// The files looked for when `-f` is not given, in compose's order.
pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// A compose file read for one project.
#[derive(Clone, Debug)]
pub struct Project {
    pub name: String,
    /// The file's directory: relative paths and `.env` are found there.
    pub dir: PathBuf,
    pub file: PathBuf,
    pub model: Model,
}

/// A project name as compose makes one from a directory or a `name`:
/// lowercase, only `[a-z0-9_-]`, starting with a letter or digit.
pub fn normalize_project_name(s: &str) -> String {
    s.to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .collect()
}

/// Whether `s` may be used as given (`-p`, `COMPOSE_PROJECT_NAME`).
pub fn valid_project_name(s: &str) -> bool {
    !s.is_empty() && normalize_project_name(s) == s
}

/// The container of a service: `PROJECT_SERVICE_N`.
pub fn container_name(project: &str, service: &str, number: u32) -> String {
    format!("{project}_{service}_{number}")
}

/// A top-level network's or volume's name on the host: its `name`, or
/// `PROJECT_KEY`.
pub fn resource_name(project: &str, key: &str, name: Option<&str>) -> String {
    name.map_or_else(|| format!("{project}_{key}"), str::to_string)
}

/// The image a service with `build` and no `image` is tagged as.
pub fn built_image_name(project: &str, service: &str) -> String {
    format!("{project}_{}", service.to_ascii_lowercase())
}

/// What `up` compares to decide whether a container is still what the
/// file asks: a digest of the service as resolved (so whitespace,
/// ordering and `${VAR}`s that come to the same value change nothing)
/// and of the image it runs.
pub fn config_hash(service: &Service, image_id: &str) -> String {
    let v = serde_json::json!({ "service": service, "image": image_id });
    crate::digest::Digest::sha256_of(v.to_string().as_bytes())
        .hex()
        .to_string()
}

impl Project {
    /// Reads the compose file `file` (None: the first of
    /// [`DEFAULT_FILES`] in the current directory) as project `name`
    /// (None: `COMPOSE_PROJECT_NAME`, the file's `name`, or its
    /// directory's name).
    pub fn load(file: Option<&Path>, name: Option<&str>) -> Result<Project> {
        let cwd = std::env::current_dir().context(|| "find the current directory".into())?;
        let file = match file {
            Some(f) => cwd.join(f),
            None => DEFAULT_FILES
                .iter()
                .map(|f| cwd.join(f))
                .find(|f| f.is_file())
                .ok_or_else(|| {
                    Error::Other(format!(
                        "no configuration file provided: none of {} in {}",
                        DEFAULT_FILES.join(", "),
                        cwd.display()
                    ))
                })?,
        };
        let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
        let env = Environment::load(&dir.join(".env"))?;
        let text = std::fs::read_to_string(&file).context(|| format!("read {}", file.display()))?;
        let model = file::parse(&text, &file.display().to_string(), &dir, &env)?;
        let given = name
            .map(str::to_string)
            .or_else(|| env.get("COMPOSE_PROJECT_NAME").map(str::to_string));
        let name = match given {
            Some(n) if valid_project_name(&n) => n,
            Some(n) => {
                return Err(Error::invalid(
                    "project name",
                    format!("{n:?}: want lowercase letters, digits, - and _, starting with a letter or digit"),
                ))
            }
            None => {
                let from = model.name.clone().unwrap_or_else(|| {
                    dir.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                });
                let n = normalize_project_name(&from);
                if n.is_empty() {
                    return Err(Error::invalid(
                        "project name",
                        format!("none can be made of {from:?}: give one with -p"),
                    ));
                }
                n
            }
        };
        Ok(Project {
            name,
            dir,
            file,
            model,
        })
    }

    /// The services named (all when empty), checked to exist, in the
    /// file's order of dependencies.
    pub fn services(&self, names: &[String]) -> Result<Vec<String>> {
        for n in names {
            if !self.model.services.contains_key(n) {
                return Err(Error::Other(format!("no such service: {n}")));
            }
        }
        let wanted = if names.is_empty() {
            self.model.services.keys().cloned().collect()
        } else {
            names.to_vec()
        };
        let all = file::order(&self.model, wanted).map_err(Error::Other)?;
        // `order` adds the dependencies; a command given services acts on
        // those only (`up` starts the dependencies itself).
        Ok(if names.is_empty() {
            all
        } else {
            all.into_iter().filter(|s| names.contains(s)).collect()
        })
    }

    fn container_of(&self, service: &str) -> String {
        self.model.services[service]
            .container_name
            .clone()
            .unwrap_or_else(|| container_name(&self.name, service, 1))
    }

    /// The image a service runs.
    pub fn image_of(&self, service: &str) -> Result<Reference> {
        let s = &self.model.services[service];
        let name = s
            .image
            .clone()
            .unwrap_or_else(|| built_image_name(&self.name, service));
        name.parse()
    }

    /// The networks a service is on, by their names on the host; the
    /// project's `default` when the file names none.
    fn networks_of(&self, s: &Service) -> Vec<String> {
        let keys: Vec<&str> = if s.networks.is_empty() {
            vec!["default"]
        } else {
            s.networks.keys().map(String::as_str).collect()
        };
        keys.into_iter().map(|k| self.network_name(k)).collect()
    }

    fn network_name(&self, key: &str) -> String {
        let def = self.model.networks.get(key);
        resource_name(&self.name, key, def.and_then(|d| d.name.as_deref()))
    }

    fn volume_name(&self, key: &str) -> String {
        let def = self.model.volumes.get(key);
        resource_name(&self.name, key, def.and_then(|d| d.name.as_deref()))
    }

    /// The networks the services use: their keys, `default` included
    /// when some service is on it.
    fn used_networks(&self) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        for s in self.model.services.values() {
            if s.network_mode.is_some() {
                continue;
            }
            if s.networks.is_empty() {
                keys.insert("default".to_string());
            }
            keys.extend(s.networks.keys().cloned());
        }
        keys
    }

    fn project_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(PROJECT_LABEL.to_string(), self.name.clone())])
    }

    /// What `berth-img run` would be given for this service.
    pub fn run_options(&self, service: &str, hash: &str) -> Result<RunOptions> {
        let s = &self.model.services[service];
        let mut mounts = Vec::new();
        for v in &s.volumes {
            let (kind, source) = match v.kind {
                VolumeType::Bind => (MountKind::Bind, v.source.clone()),
                VolumeType::Volume if v.source.is_empty() => (MountKind::Volume, String::new()),
                VolumeType::Volume => (MountKind::Volume, self.volume_name(&v.source)),
                VolumeType::Tmpfs => (MountKind::Tmpfs, String::new()),
            };
            let mut tmpfs_options = Vec::new();
            if let Some(size) = v.tmpfs_size {
                tmpfs_options.push(format!("size={size}"));
            }
            if let Some(mode) = v.tmpfs_mode {
                tmpfs_options.push(format!("mode={mode:o}"));
            }
            mounts.push(MountRequest {
                kind,
                source,
                destination: v.target.clone(),
                read_only: v.read_only,
                propagation: v.propagation.clone(),
                nocopy: v.nocopy,
                create_host_path: v.create_host_path,
                tmpfs_options,
                option: "volumes",
                flag: format!("services.{service}.volumes {}", v.target),
            });
        }
        let mode = match &s.network_mode {
            Some(m) => Mode::parse(std::slice::from_ref(m))?,
            None => Mode::Bridge(self.networks_of(s)),
        };
        // Other services find this one by its service name, as in
        // compose; names are only for the project's networks (none with
        // `network_mode`).
        let mut aliases = Vec::new();
        if s.network_mode.is_none() {
            aliases.push(service.to_string());
            for a in s.networks.values().flatten() {
                if !aliases.contains(a) {
                    aliases.push(a.clone());
                }
            }
        }
        let mut publish = Vec::new();
        for p in &s.ports {
            publish.extend(ports::parse_publish(p)?);
        }
        let health = match &s.healthcheck {
            Some(h) => HealthFlags {
                test: (!h.test.is_empty()).then(|| h.test.clone()),
                cmd: None,
                interval: h.interval.clone(),
                timeout: h.timeout.clone(),
                start_period: h.start_period.clone(),
                start_interval: h.start_interval.clone(),
                retries: h.retries,
                none: h.disable,
            },
            None => HealthFlags::default(),
        };
        let mut labels = s.labels.clone();
        labels.extend(self.project_labels());
        labels.insert(SERVICE_LABEL.into(), service.to_string());
        labels.insert(HASH_LABEL.into(), hash.to_string());
        labels.insert(NUMBER_LABEL.into(), "1".into());
        labels.insert(ONEOFF_LABEL.into(), "False".into());
        labels.insert(WORKING_DIR_LABEL.into(), self.dir.display().to_string());
        labels.insert(CONFIG_FILES_LABEL.into(), self.file.display().to_string());
        Ok(RunOptions {
            name: Some(self.container_of(service)),
            bundle: crate::bundle::Options {
                env: s
                    .environment
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
                workdir: s.working_dir.clone(),
                user: s.user.clone(),
                entrypoint: s.entrypoint.clone(),
                hostname: s.hostname.clone(),
                ulimits: s.ulimits.clone(),
                args: s.command.clone().unwrap_or_default(),
                ..Default::default()
            },
            mounts,
            network: Request {
                mode,
                publish,
                aliases,
            },
            publish_all: false,
            detach: true,
            auto_remove: false,
            restart: s.restart.as_deref().unwrap_or("no").parse()?,
            health,
            labels,
        })
    }
}

/// The containers of `project` (of any file: found by label), with their
/// status, in name order.
pub fn containers_of(cs: &Containers, project: &str) -> Result<Vec<(Container, Status, State)>> {
    let mut list: Vec<_> = cs
        .list_with_status(true)?
        .into_iter()
        .filter(|(c, _, _)| c.config.labels.get(PROJECT_LABEL).map(String::as_str) == Some(project))
        .collect();
    list.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(list)
}

fn service_of(c: &Container) -> &str {
    c.config
        .labels
        .get(SERVICE_LABEL)
        .map_or("", String::as_str)
}

/// The project's containers of `services` (every one when empty), in the
/// order of `order` (services the file no longer has last).
fn select<'c>(
    list: &'c [(Container, Status, State)],
    order: &[String],
) -> Vec<&'c (Container, Status, State)> {
    let mut out: Vec<_> = list
        .iter()
        .filter(|(c, _, _)| order.iter().any(|s| s == service_of(c)))
        .collect();
    out.sort_by_key(|(c, _, _)| order.iter().position(|s| s == service_of(c)));
    out
}

/// One line of progress, as compose prints them (`Container web_1
/// Started`); a closed stderr is no reason to fail.
fn say(progress: &mut dyn Write, kind: &str, name: &str, what: &str) {
    let _ = writeln!(progress, " {kind} {name}  {what}");
}

/// Builds the image of each service of `services` that has `build`.
pub fn build(
    store: &Store,
    runtime: Option<&Path>,
    project: &Project,
    services: &[String],
    no_cache: bool,
) -> Result<()> {
    for name in project.services(services)? {
        let s = &project.model.services[&name];
        let Some(b) = &s.build else { continue };
        let image = project.image_of(&name)?;
        let opts = BuildOptions {
            context: b.context.clone(),
            dockerfile: b.dockerfile.as_ref().map(|d| b.context.join(d)),
            tags: vec![image.to_string()],
            build_args: b.args.clone(),
            target: b.target.clone(),
            no_cache,
            platform: None,
            labels: project.project_labels(),
            network: crate::bundle::Network::Host,
            runtime: runtime.map(Path::to_path_buf),
            compression: crate::image::Compression::Gzip,
            quiet: false,
        };
        build::build(store, &opts)?;
    }
    Ok(())
}

/// Pulls the image of each service of `services` that does not build
/// its own.
pub fn pull(
    store: &Store,
    project: &Project,
    services: &[String],
    progress: &mut dyn Write,
) -> Result<()> {
    for name in project.services(services)? {
        if project.model.services[&name].build.is_some() {
            continue;
        }
        let image = project.image_of(&name)?;
        say(progress, "Image", &image.to_string(), "Pulling");
        crate::pull::pull(
            store,
            &image,
            &crate::pull::PullOptions {
                platform: Platform::host(),
                plain_http: false,
                progress: crate::progress::Progress::new(true),
            },
        )?;
        say(progress, "Image", &image.to_string(), "Pulled");
    }
    Ok(())
}

/// Makes the project's networks and named volumes that do not exist yet;
/// an external one must exist.
fn create_resources(store: &Store, project: &Project, progress: &mut dyn Write) -> Result<()> {
    let networks = Networks::new(store.root());
    for key in project.used_networks() {
        let def = project
            .model
            .networks
            .get(&key)
            .cloned()
            .unwrap_or_default();
        let name = project.network_name(&key);
        let _lock = networks.lock()?;
        if networks.get(&name).is_ok() {
            continue;
        }
        if def.external {
            return Err(Error::Other(format!(
                "network {name} declared as external, but could not be found"
            )));
        }
        let mut labels = def.labels.clone();
        labels.extend(project.project_labels());
        labels.insert(NETWORK_LABEL.into(), key.clone());
        let opts = network::CreateOptions {
            subnet: def.subnet.as_deref().map(str::parse).transpose()?,
            gateway: def
                .gateway
                .as_deref()
                .map(|g| {
                    g.parse()
                        .map_err(|_| Error::invalid("gateway", format!("{g:?}")))
                })
                .transpose()?,
            labels,
        };
        networks.create(&name, &opts)?;
        say(progress, "Network", &name, "Created");
    }
    let volumes = Volumes::new(store.root());
    for (key, def) in &project.model.volumes {
        let name = project.volume_name(key);
        if volumes.get(&name).is_ok() {
            continue;
        }
        if def.external {
            return Err(Error::Other(format!(
                "external volume \"{name}\" not found"
            )));
        }
        let mut labels = def.labels.clone();
        labels.extend(project.project_labels());
        labels.insert(VOLUME_LABEL.into(), key.clone());
        volumes.create(Some(&name), &labels, false)?;
        say(progress, "Volume", &name, "Created");
    }
    Ok(())
}

/// How long `up` waits for a dependency's condition at most: longer than
/// any health check's start period worth waiting for, short enough that
/// a check that never runs is reported.
const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(300);

/// Waits until the container of `dependency` meets `condition`.
fn wait_for(
    cs: &Containers,
    container: &str,
    dependency: &str,
    condition: Condition,
) -> Result<()> {
    let deadline = std::time::Instant::now() + DEPENDENCY_TIMEOUT;
    loop {
        let c = cs.get(container)?;
        let (status, state) = cs.status_and_state(&c);
        let failed = |why: String| {
            Err(Error::Other(format!(
                "dependency failed to start: service {dependency} (container {container}) {why}"
            )))
        };
        match condition {
            Condition::ServiceStarted => return Ok(()),
            Condition::ServiceHealthy => {
                if c.healthcheck.is_none() {
                    return failed("has no healthcheck configured".into());
                }
                match state.health.as_ref().map(|h| h.status.as_str()) {
                    Some("healthy") => return Ok(()),
                    Some("unhealthy") => return failed("is unhealthy".into()),
                    _ => {}
                }
                if let Status::Exited(code) = status {
                    return failed(format!("exited ({code})"));
                }
            }
            Condition::ServiceCompletedSuccessfully => match status {
                Status::Exited(0) => return Ok(()),
                Status::Exited(code) => return failed(format!("exited ({code})")),
                _ => {}
            },
        }
        if std::time::Instant::now() > deadline {
            return failed(format!(
                "did not become {condition:?} in {DEPENDENCY_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The services among `services` (all when empty) and their
/// dependencies whose image `up` needs built first: those with `build`
/// whose image is missing, or all of them with `rebuild`.
pub fn images_to_build(
    store: &Store,
    project: &Project,
    services: &[String],
    rebuild: bool,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for s in up_order(project, services)? {
        if project.model.services[&s].build.is_none() {
            continue;
        }
        let missing = store.image(&project.image_of(&s)?.to_string())?.is_none();
        if rebuild || missing {
            out.push(s);
        }
    }
    Ok(out)
}

/// What `up` starts for `services`: them and their dependencies, in
/// dependency order.
fn up_order(project: &Project, services: &[String]) -> Result<Vec<String>> {
    for n in services {
        if !project.model.services.contains_key(n) {
            return Err(Error::Other(format!("no such service: {n}")));
        }
    }
    let wanted = if services.is_empty() {
        project.model.services.keys().cloned().collect()
    } else {
        services.to_vec()
    };
    file::order(&project.model, wanted).map_err(Error::Other)
}

/// `up`: the networks and volumes, then each service's container in
/// dependency order, each after its dependencies meet their conditions.
/// A container whose config hash and image are unchanged is left as it
/// is (started if it was stopped); a changed one is replaced. Returns
/// the containers' names.
///
/// The images of [`images_to_build`] must have been built first, by
/// another process: a build moves its process into a mount namespace of
/// its own, where the rootfs of a container created after it would be
/// mounted out of sight of every later command (`exec`, `cp`).
pub fn up(
    store: &Store,
    runtime: Option<&Path>,
    project: &Project,
    services: &[String],
    progress: &mut dyn Write,
) -> Result<Vec<String>> {
    let order = up_order(project, services)?;
    create_resources(store, project, progress)?;
    let cs = Containers::new(store, runtime)?;
    let existing = containers_of(&cs, &project.name)?;
    let mut names = Vec::new();
    for service in &order {
        let s = &project.model.services[service];
        for (dep, condition) in &s.depends_on {
            wait_for(&cs, &project.container_of(dep), dep, *condition)?;
        }
        let image = project.image_of(service)?;
        let record = crate::pull::ensure(store, &image, Platform::host(), true)?;
        let hash = config_hash(s, &record.config.to_string());
        let name = project.container_of(service);
        let current = existing.iter().find(|(c, _, _)| service_of(c) == service);
        match current {
            Some((c, status, _)) if c.config.labels.get(HASH_LABEL) == Some(&hash) => {
                if status.is_running() {
                    say(progress, "Container", &c.name, "Running");
                } else {
                    cs.start(&c.name)?;
                    say(progress, "Container", &c.name, "Started");
                }
                names.push(c.name.clone());
                continue;
            }
            Some((c, _, _)) => {
                cs.remove(&c.name, true, false)?;
                say(progress, "Container", &c.name, "Recreated");
            }
            None => say(progress, "Container", &name, "Creating"),
        }
        let opts = project.run_options(service, &hash)?;
        match containers::run(store, runtime, &image, &opts)? {
            Started::Detached(n) => {
                say(progress, "Container", &n, "Started");
                names.push(n);
            }
            Started::Exited(_) => unreachable!("compose containers run detached"),
        }
    }
    Ok(names)
}

/// `down`: stops and removes the project's containers (their anonymous
/// volumes too with `volumes`), then its networks; with `volumes`, also
/// its named volumes. External networks and volumes are left alone (they
/// carry no project label). Dependents go first; containers of services
/// the file no longer has, last.
pub fn down(
    store: &Store,
    runtime: Option<&Path>,
    project: &Project,
    volumes: bool,
    progress: &mut dyn Write,
) -> Result<()> {
    let cs = Containers::new(store, runtime)?;
    let order = project.services(&[])?;
    let mut list = containers_of(&cs, &project.name)?;
    list.sort_by_key(|(c, _, _)| {
        let at = order.iter().position(|s| s == service_of(c));
        (at.is_none(), std::cmp::Reverse(at))
    });
    for (c, _, _) in &list {
        cs.remove(&c.name, true, volumes)?;
        say(progress, "Container", &c.name, "Removed");
    }
    let project = project.name.as_str();
    let labelled = |labels: &BTreeMap<String, String>| {
        labels.get(PROJECT_LABEL).map(String::as_str) == Some(project)
    };
    let sandboxes = Sandboxes::new(store.root());
    let nets = {
        let _lock = sandboxes.networks().lock()?;
        sandboxes.networks().list()?
    };
    for n in nets.iter().filter(|n| labelled(&n.labels)) {
        sandboxes.remove_network(&n.name)?;
        say(progress, "Network", &n.name, "Removed");
    }
    if volumes {
        for v in Volumes::new(store.root()).list() {
            if labelled(&v.labels) {
                cs.remove_volume(&v.name)?;
                say(progress, "Volume", &v.name, "Removed");
            }
        }
    }
    Ok(())
}

/// What `stop`, `start` and `restart` do to each container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Stop,
    Start,
    Restart,
}

/// `services` in the waves they stop in: those nothing left depends on
/// first, then what they depend on, and so on.
pub fn stop_waves(model: &Model, services: &[String]) -> Vec<Vec<String>> {
    // A service's depth: 0 without dependencies, else one more than its
    // deepest dependency's (the file has no cycles).
    fn depth(model: &Model, s: &str) -> usize {
        model.services[s]
            .depends_on
            .keys()
            .map(|d| depth(model, d) + 1)
            .max()
            .unwrap_or(0)
    }
    let mut waves: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for s in services {
        waves.entry(depth(model, s)).or_default().push(s.clone());
    }
    waves.into_values().rev().collect()
}

/// `stop`, `start`, `restart` of the project's containers of `services`
/// (all when empty): started in dependency order (each after its
/// dependencies meet their conditions), stopped in [`stop_waves`].
pub fn act(
    store: &Store,
    runtime: Option<&Path>,
    project: &Project,
    services: &[String],
    action: Action,
    timeout: Duration,
    progress: &mut dyn Write,
) -> Result<()> {
    let cs = Containers::new(store, runtime)?;
    let list = containers_of(&cs, &project.name)?;
    let order = project.services(services)?;
    if action == Action::Stop {
        // Each wave at once (a container that ignores SIGTERM costs the
        // timeout once, not once per service), dependents before what
        // they depend on.
        for wave in stop_waves(&project.model, &order) {
            let chosen = select(&list, &wave);
            let stopped: Vec<Result<()>> = std::thread::scope(|s| {
                let threads: Vec<_> = chosen
                    .iter()
                    .map(|(c, _, _)| s.spawn(|| cs.stop(&c.name, timeout)))
                    .collect();
                threads
                    .into_iter()
                    .map(|t| t.join().expect("a stop thread panicked"))
                    .collect()
            });
            for ((c, _, _), r) in chosen.iter().zip(stopped) {
                r?;
                say(progress, "Container", &c.name, "Stopped");
            }
        }
        return Ok(());
    }
    for (c, _, _) in select(&list, &order) {
        match action {
            Action::Stop => unreachable!("stopped in waves above"),
            Action::Start => {
                // As `up`: a service starts once its dependencies are
                // started, healthy or done, as it asks.
                if let Some(s) = project.model.services.get(service_of(c)) {
                    for (dep, condition) in &s.depends_on {
                        wait_for(&cs, &project.container_of(dep), dep, *condition)?;
                    }
                }
                cs.start(&c.name)?;
                say(progress, "Container", &c.name, "Started");
            }
            Action::Restart => {
                cs.restart(&c.name, timeout)?;
                say(progress, "Container", &c.name, "Restarted");
            }
        }
    }
    Ok(())
}

/// The container that runs `service`, for `exec` and `logs`.
pub fn container_for(cs: &Containers, project: &Project, service: &str) -> Result<Container> {
    project.services(&[service.to_string()])?;
    containers_of(cs, &project.name)?
        .into_iter()
        .map(|(c, _, _)| c)
        .find(|c| service_of(c) == service)
        .ok_or_else(|| Error::Other(format!("service \"{service}\" is not running")))
}

/// The project's containers of `services` (all when empty), in
/// dependency order, for `logs` and `ps`.
pub fn containers_of_services(
    cs: &Containers,
    project: &Project,
    services: &[String],
) -> Result<Vec<(Container, Status, State)>> {
    let list = containers_of(cs, &project.name)?;
    let order = project.services(services)?;
    Ok(select(&list, &order).into_iter().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(yaml: &str) -> Model {
        file::parse(yaml, "test.yml", Path::new("/p"), &Environment::default()).unwrap()
    }

    fn project(yaml: &str) -> Project {
        Project {
            name: "app".into(),
            dir: "/p".into(),
            file: "/p/compose.yml".into(),
            model: model(yaml),
        }
    }

    #[test]
    fn names_as_docker_compose() {
        assert_eq!(normalize_project_name("My App.v2"), "myappv2");
        assert_eq!(normalize_project_name("_x-1"), "x-1");
        assert!(valid_project_name("app_1-x"));
        assert!(!valid_project_name("App"));
        assert!(!valid_project_name("-x"));
        assert_eq!(container_name("app", "web", 1), "app_web_1");
        assert_eq!(resource_name("app", "default", None), "app_default");
        assert_eq!(resource_name("app", "data", Some("shared")), "shared");
        assert_eq!(built_image_name("app", "Web"), "app_web");
    }

    #[test]
    fn run_options_of_a_service() {
        let p = project(
            "services:\n  web:\n    image: busybox\n    command: httpd -f -p 80\n    ports: ['127.0.0.1:8080:80']\n    volumes: ['data:/data', '/srv:/srv:ro']\n    networks:\n      front: {aliases: [www]}\n    environment: {A: '1'}\n    restart: always\n    healthcheck: {test: ['CMD', 'true'], interval: 1s}\n    labels: {x: y}\nvolumes:\n  data:\nnetworks:\n  front:\n",
        );
        let o = p.run_options("web", "h").unwrap();
        assert_eq!(o.name.as_deref(), Some("app_web_1"));
        assert_eq!(o.bundle.args, ["httpd", "-f", "-p", "80"]);
        assert_eq!(o.bundle.env, ["A=1"]);
        assert_eq!(o.network.mode, Mode::Bridge(vec!["app_front".into()]));
        assert_eq!(o.network.aliases, ["web", "www"]);
        assert_eq!(o.network.publish.len(), 1);
        assert_eq!(o.mounts[0].source, "app_data");
        assert_eq!(o.mounts[0].kind, MountKind::Volume);
        assert_eq!(o.mounts[1].kind, MountKind::Bind);
        assert!(o.mounts[1].read_only);
        assert_eq!(
            o.health.test.as_deref(),
            Some(&["CMD".to_string(), "true".into()][..])
        );
        assert!(o.detach);
        assert!(!o.restart.is_none());
        assert_eq!(o.labels[PROJECT_LABEL], "app");
        assert_eq!(o.labels[SERVICE_LABEL], "web");
        assert_eq!(o.labels[HASH_LABEL], "h");
        assert_eq!(o.labels["x"], "y");
        let none = project("services:\n  a:\n    image: busybox\n    network_mode: none\n");
        let o = none.run_options("a", "h").unwrap();
        assert_eq!(o.network.mode, Mode::None);
        assert!(o.network.aliases.is_empty());
        assert!(none.used_networks().is_empty());
        let plain = project("services:\n  a:\n    image: busybox\n");
        let o = plain.run_options("a", "h").unwrap();
        assert_eq!(o.network.mode, Mode::Bridge(vec!["app_default".into()]));
        assert_eq!(
            plain.used_networks(),
            BTreeSet::from(["default".to_string()])
        );
    }

    #[test]
    fn the_hash_follows_what_the_service_means() {
        let a = model("services:\n  s:\n    image: busybox\n    environment: [A=1, B=2]\n");
        let b = model(
            "services:\n  s:\n    environment:\n      B: '2'\n      A: 1\n    image: busybox\n",
        );
        let c = model("services:\n  s:\n    image: busybox\n    environment: [A=1, B=3]\n");
        let hash = |m: &Model, image: &str| config_hash(&m.services["s"], image);
        assert_eq!(hash(&a, "sha256:1"), hash(&b, "sha256:1"));
        assert_ne!(hash(&a, "sha256:1"), hash(&c, "sha256:1"));
        assert_ne!(hash(&a, "sha256:1"), hash(&a, "sha256:2"));
        assert_eq!(hash(&a, "sha256:1").len(), 64);
    }

    #[test]
    fn services_in_dependency_order() {
        let p = project(
            "services:\n  web:\n    image: b\n    depends_on: [api]\n  api:\n    image: b\n    depends_on:\n      data: {condition: service_healthy}\n  data:\n    image: b\n  other:\n    image: b\n",
        );
        assert_eq!(p.services(&[]).unwrap(), ["data", "other", "api", "web"]);
        assert_eq!(p.services(&["web".into()]).unwrap(), ["web"]);
        assert_eq!(
            file::order(&p.model, vec!["web".into()]).unwrap(),
            ["data", "api", "web"]
        );
        assert!(p.services(&["nope".into()]).is_err());
        assert_eq!(
            stop_waves(&p.model, &p.services(&[]).unwrap()),
            [vec!["web"], vec!["api"], vec!["data", "other"]]
        );
        assert_eq!(stop_waves(&p.model, &["data".into()]), [vec!["data"]]);
        assert_eq!(
            p.model.services["api"].depends_on["data"],
            Condition::ServiceHealthy
        );
    }
}
