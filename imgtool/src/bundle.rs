//! `bundle` and `rm-bundle`: an image from the store as an OCI runtime
//! bundle (runtime-spec bundle.md) that `berth run -b DIR` starts the way
//! `docker run` starts the image.
//!
//! The rootfs is an overlay of the store's unpacked layers with a private
//! upper directory in `DIR/.overlay`, so bundles cost no copy; `--copy`
//! flattens the layers into a plain directory instead. `DIR/.berth-img.json`
//! records what was made, for `rm-bundle` and `commit`.

use std::collections::BTreeMap;
use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::digest::{Digest, HashingReader};
use crate::error::{Context, Error, Result};
use crate::image::decompress;
use crate::image::{Descriptor, ImageConfig, Manifest, Platform};
use crate::layer::{self, Mode};
use crate::overlay::{self, Overlay};
use crate::pull::{self, unpack_blob};
use crate::reference::Reference;
use crate::seccomp;
use crate::store::{remove_tree, Access, BundleRecord, ImageRecord, Store};
use crate::users;

pub const METADATA: &str = ".berth-img.json";
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The container's network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// A new network namespace with only loopback.
    #[default]
    None,
    /// The host's.
    Host,
    /// The namespace pinned at this path (made and wired by
    /// `crate::network` before the container starts).
    Join(PathBuf),
}

/// A bind mount into the container: a host path, or a volume's data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
    /// `rprivate` unless set.
    pub propagation: Option<String>,
    /// The volume directory to fill from the image's content at
    /// `destination` first, if the volume is empty.
    pub fill_volume: Option<PathBuf>,
}

/// `docker run`-style options for the container the bundle describes.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// Replaces the image's Entrypoint (an empty list clears it, and with
    /// it the image's Cmd).
    pub entrypoint: Option<Vec<String>>,
    /// Bind mounts (`-v`, `--mount`, volumes), after the runtime's own.
    pub binds: Vec<BindMount>,
    /// `--tmpfs` values: `DST[:OPTIONS]`.
    pub tmpfs: Vec<String>,
    pub hostname: Option<String>,
    pub tty: bool,
    pub read_only: bool,
    pub memory: Option<String>,
    pub cpus: Option<String>,
    pub pids_limit: Option<i64>,
    /// `linux.cgroupsPath`; the runtime's default (the container's ID
    /// under the runtime's own cgroup) when none.
    pub cgroups_path: Option<String>,
    /// `--ulimit`: resource limits beside the open-file one every
    /// container gets (which one of these may replace).
    pub ulimits: Vec<Ulimit>,
    pub network: Network,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// A plain directory rootfs instead of an overlay.
    pub copy: bool,
    /// Replace the image's Cmd.
    pub args: Vec<String>,
    /// The config's `hooks` (runtime-spec config.md "POSIX-platform
    /// Hooks"), if any.
    pub hooks: Option<Value>,
}

/// What `DIR/.berth-img.json` records.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub image: String,
    pub manifest: Digest,
    pub config: Digest,
    /// `overlay`, `fuse-overlayfs` or `copy`.
    pub rootfs: String,
    pub store: PathBuf,
    pub layers: Vec<Digest>,
}

/// Parses docker's memory sizes: `512m`, `1g`, `100k`, `1048576`, `2b`.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix('b')
        .filter(|r| !r.is_empty() && !r.ends_with(['k', 'm', 'g', 't']))
        .unwrap_or(&t);
    let t = t.strip_suffix('b').unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| Error::invalid("--memory", format!("{s:?}: want a size like 512m")))?;
    if n.is_nan() || n <= 0.0 || n * mult as f64 > i64::MAX as f64 {
        return Err(Error::invalid("--memory", format!("{s:?}: out of range")));
    }
    Ok((n * mult as f64) as i64)
}

/// The resource limits `--ulimit` names, as docker's (and the kernel's
/// RLIMIT_ names, lowercase).
const ULIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// One `--ulimit`: a resource limit of the container's process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// `nofile`, `nproc`, ... (see [`ULIMITS`]).
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

impl Ulimit {
    /// A limit by name, checked: the name known, soft no more than hard.
    pub fn new(name: &str, soft: u64, hard: u64) -> Result<Ulimit> {
        if !ULIMITS.contains(&name) {
            return Err(Error::invalid(
                "ulimit",
                format!("{name:?}: want one of {}", ULIMITS.join(", ")),
            ));
        }
        if soft > hard {
            return Err(Error::invalid(
                "ulimit",
                format!("{name}: soft limit {soft} is above the hard limit {hard}"),
            ));
        }
        Ok(Ulimit {
            name: name.to_string(),
            soft,
            hard,
        })
    }

    /// docker's `--ulimit NAME=SOFT[:HARD]` (`-1`: unlimited).
    pub fn parse(s: &str) -> Result<Ulimit> {
        let bad = || Error::invalid("--ulimit", format!("{s:?}: want NAME=SOFT[:HARD]"));
        let (name, limits) = s.split_once('=').ok_or_else(bad)?;
        let number = |n: &str| -> Result<u64> {
            match n.parse::<i64>() {
                Ok(-1) => Ok(u64::MAX),
                Ok(n) if n >= 0 => Ok(n as u64),
                _ => Err(bad()),
            }
        };
        let (soft, hard) = match limits.split_once(':') {
            Some((s, h)) => (number(s)?, number(h)?),
            None => (number(limits)?, number(limits)?),
        };
        Ulimit::new(name, soft, hard)
    }

    /// The runtime spec's name: `RLIMIT_NOFILE`.
    pub fn kind(&self) -> String {
        format!("RLIMIT_{}", self.name.to_ascii_uppercase())
    }
}

fn normalize_cap(c: &str) -> Result<String> {
    let up = c.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let name = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if !ALL_CAPS.contains(&name.as_str()) {
        return Err(Error::invalid(
            "capability",
            format!("unknown capability {c:?}"),
        ));
    }
    Ok(name)
}

/// Docker's rule: drop wins over the defaults, add over drop, ALL expands.
pub fn capabilities(add: &[String], drop: &[String]) -> Result<Vec<String>> {
    let add: Vec<String> = add
        .iter()
        .map(|c| normalize_cap(c))
        .collect::<Result<_>>()?;
    let drop: Vec<String> = drop
        .iter()
        .map(|c| normalize_cap(c))
        .collect::<Result<_>>()?;
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .filter(|c| !drop.iter().any(|d| d == *c))
            .map(|c| c.to_string())
            .collect()
    };
    if add.iter().any(|c| c == "ALL") {
        caps = ALL_CAPS.iter().map(|c| c.to_string()).collect();
    } else {
        for c in add {
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
    }
    Ok(caps)
}

fn validate_env(e: &str) -> Result<()> {
    match e.split_once('=') {
        Some((k, _)) if !k.is_empty() => Ok(()),
        _ => Err(Error::invalid("env", format!("{e:?}: want KEY=VALUE"))),
    }
}

/// Overrides `KEY=...` entries of `env` with `set`, keeping order.
fn merge_env(env: &mut Vec<String>, set: &str) {
    let key = set.split('=').next().unwrap_or("");
    match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
        Some(slot) => *slot = set.to_string(),
        None => env.push(set.to_string()),
    }
}

/// The hostname docker would give: a short ID (here from the bundle path).
fn default_hostname(dir: &Path) -> String {
    Digest::sha256_of(dir.as_os_str().as_encoded_bytes())
        .short()
        .to_string()
}

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Value {
    json!({ "destination": destination, "type": kind, "source": source, "options": options })
}

/// Builds `config.json` for the image with `opts`. `rootfs` is the mounted
/// root, for user and group lookups.
#[allow(clippy::too_many_arguments)]
pub fn spec(
    config: &ImageConfig,
    opts: &Options,
    rootfs: &Path,
    hostname: &str,
    etc_files: &BTreeMap<&'static str, PathBuf>,
    image_name: &str,
) -> Result<Value> {
    let rc = &config.config;
    let mut args: Vec<String> = match &opts.entrypoint {
        Some(e) => e.clone(),
        None => rc.entrypoint.clone().unwrap_or_default(),
    };
    if !opts.args.is_empty() {
        args.extend(opts.args.iter().cloned());
    } else if opts.entrypoint.as_ref().is_none_or(Vec::is_empty) {
        args.extend(rc.cmd.clone().unwrap_or_default());
    }
    if args.is_empty() {
        return Err(Error::invalid(
            "command",
            format!("no command specified for {image_name} (the image has no Entrypoint or Cmd)"),
        ));
    }

    let user_spec = opts
        .user
        .clone()
        .or_else(|| rc.user.clone())
        .unwrap_or_default();
    let user = users::resolve(rootfs, &user_spec)?;

    let mut env: Vec<String> = rc.env.clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }
    merge_env(&mut env, &format!("HOSTNAME={hostname}"));
    for e in &opts.env {
        validate_env(e)?;
        merge_env(&mut env, e);
    }
    if opts.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home.as_deref().unwrap_or("/")));
    }

    let cwd = opts
        .workdir
        .clone()
        .or_else(|| rc.working_dir.clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    let cwd = if cwd.starts_with('/') {
        cwd
    } else {
        format!("/{cwd}")
    };

    let caps = capabilities(&opts.cap_add, &opts.cap_drop)?;
    // Containers get the open-file limit their engine runs with (docker's
    // daemon raises its own); raising it further needs CAP_SYS_RESOURCE.
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(_, hard)| hard);
    let mut rlimits = vec![json!({ "type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile })];
    for u in &opts.ulimits {
        let limit = json!({ "type": u.kind(), "hard": u.hard, "soft": u.soft });
        match rlimits.iter_mut().find(|r| r["type"] == limit["type"]) {
            Some(slot) => *slot = limit,
            None => rlimits.push(limit),
        }
    }

    let mut mounts = vec![
        mount("/proc", "proc", "proc", &[]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ];
    if crate::rootless::active() && opts.network == Network::Host {
        // A user namespace cannot mount sysfs for the host's network
        // namespace, nor a v1 cgroup hierarchy: the host's /sys read-only
        // instead, as `runc spec --rootless`.
        mounts.truncate(mounts.len() - 2);
        mounts.push(mount(
            "/sys",
            "bind",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        ));
    }
    for (dest, src) in etc_files {
        mounts.push(mount(
            dest,
            "bind",
            &src.to_string_lossy(),
            &["rbind", "rprivate"],
        ));
    }
    // Parents before what is mounted inside them, as docker sorts them.
    let mut binds: Vec<&BindMount> = opts.binds.iter().collect();
    binds.sort_by_key(|b| Path::new(&b.destination).components().count());
    for b in binds {
        if !b.source.exists() {
            return Err(Error::Path(
                b.source.clone(),
                format!("bind source for {} does not exist", b.destination),
            ));
        }
        let mut o = vec!["rbind", b.propagation.as_deref().unwrap_or("rprivate")];
        if b.read_only {
            o.push("ro");
        }
        mounts.push(mount(
            &b.destination,
            "bind",
            &b.source.to_string_lossy(),
            &o,
        ));
    }
    for t in &opts.tmpfs {
        let (dest, extra) = t.split_once(':').unwrap_or((t.as_str(), ""));
        if !dest.starts_with('/') {
            return Err(Error::invalid(
                "--tmpfs",
                format!("{t:?}: destination must be absolute"),
            ));
        }
        let mut o: Vec<&str> = vec!["nosuid", "nodev", "noexec"];
        o.extend(extra.split(',').filter(|s| !s.is_empty()));
        mounts.push(mount(dest, "tmpfs", "tmpfs", &o));
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    match &opts.network {
        Network::None => namespaces.push(json!({"type": "network"})),
        Network::Join(path) => namespaces.push(json!({"type": "network", "path": path})),
        Network::Host => {}
    }
    if crate::rootless::active() {
        // berth-img runs in the user's namespace: the container gets one of
        // its own in it (what `berth --rootless` needs), every id mapped
        // onto itself.
        namespaces.push(json!({"type": "user"}));
    }

    let mut resources = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    if let Some(m) = &opts.memory {
        resources["memory"] = json!({ "limit": parse_bytes(m)? });
    }
    if let Some(c) = &opts.cpus {
        let n: f64 = c
            .parse()
            .ok()
            .filter(|n: &f64| *n > 0.0 && n.is_finite())
            .ok_or_else(|| Error::invalid("--cpus", format!("{c:?}: want a positive number")))?;
        resources["cpu"] = json!({ "quota": (n * 100_000.0).round() as i64, "period": 100_000u64 });
    }
    if let Some(p) = opts.pids_limit {
        if p > 0 {
            resources["pids"] = json!({ "limit": p });
        }
    }

    let mut annotations = BTreeMap::new();
    if let Some(labels) = &rc.labels {
        annotations.extend(labels.clone());
    }
    annotations.insert("org.opencontainers.image.os".into(), config.os.clone());
    annotations.insert(
        "org.opencontainers.image.architecture".into(),
        config.architecture.clone(),
    );
    if let Some(v) = &config.variant {
        annotations.insert("org.opencontainers.image.variant".into(), v.clone());
    }
    if let Some(a) = &config.author {
        annotations.insert("org.opencontainers.image.author".into(), a.clone());
    }
    if let Some(c) = &config.created {
        annotations.insert("org.opencontainers.image.created".into(), c.clone());
    }
    if let Some(s) = &rc.stop_signal {
        annotations.insert("org.opencontainers.image.stopSignal".into(), s.clone());
    }
    if let Some(p) = &rc.exposed_ports {
        if !p.is_empty() {
            annotations.insert(
                "org.opencontainers.image.exposedPorts".into(),
                p.keys().cloned().collect::<Vec<_>>().join(","),
            );
        }
    }
    annotations.insert(
        "org.opencontainers.image.ref.name".into(),
        image_name.into(),
    );

    let mut spec = json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": opts.tty,
            "user": { "uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids },
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
            "rlimits": rlimits,
            "noNewPrivileges": false
        },
        "root": { "path": "rootfs", "readonly": opts.read_only },
        "hostname": hostname,
        "mounts": mounts,
        "annotations": annotations,
        "linux": {
            "resources": resources,
            "namespaces": namespaces,
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap"
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
            "seccomp": seccomp::default_profile(&caps)
        }
    });
    if crate::rootless::active() {
        let (uids, gids) = crate::rootless::container_mappings();
        spec["linux"]["uidMappings"] = uids;
        spec["linux"]["gidMappings"] = gids;
    }
    if let Some(h) = &opts.hooks {
        spec["hooks"] = h.clone();
    }
    if let Some(p) = &opts.cgroups_path {
        spec["linux"]["cgroupsPath"] = json!(p);
    }
    // What we write must be a spec the chosen crate (and so any runtime)
    // accepts.
    serde_json::from_value::<oci_spec::runtime::Spec>(spec.clone())
        .map_err(|e| Error::Other(format!("generated config.json is not a valid spec: {e}")))?;
    Ok(spec)
}

/// Checks everything that can be checked before touching the disk.
fn validate(opts: &Options) -> Result<()> {
    for e in &opts.env {
        validate_env(e)?;
    }
    let mut seen: Vec<String> = Vec::new();
    let dests = opts
        .binds
        .iter()
        .map(|b| b.destination.as_str())
        .chain(opts.tmpfs.iter().map(|t| t.split(':').next().unwrap_or("")));
    for d in dests {
        if !d.starts_with('/') {
            return Err(Error::invalid(
                "mount",
                format!("{d:?}: the container path must be absolute"),
            ));
        }
        let clean = crate::inroot::clean(Path::new(d))
            .to_string_lossy()
            .into_owned();
        if seen.contains(&clean) {
            return Err(Error::invalid(
                "mount",
                format!("duplicate mount point: {d}"),
            ));
        }
        seen.push(clean);
    }
    if let Some(m) = &opts.memory {
        parse_bytes(m)?;
    }
    capabilities(&opts.cap_add, &opts.cap_drop)?;
    if let Some(h) = &opts.hostname {
        if h.is_empty() || h.len() > 64 {
            return Err(Error::invalid(
                "--hostname",
                format!("{h:?}: want 1 to 64 characters"),
            ));
        }
    }
    Ok(())
}

/// Removes what a failed `create` made.
struct Cleanup<'a> {
    dir: &'a Path,
    created_dir: bool,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = overlay::unmount(&self.dir.join("rootfs"));
        if self.created_dir {
            remove_tree(self.dir);
        } else if let Ok(rd) = fs::read_dir(self.dir) {
            for e in rd.flatten() {
                remove_tree(&e.path());
            }
        }
    }
}

/// Makes sure every layer of `manifest` is unpacked in the store.
pub fn ensure_layers(store: &Store, manifest: &Manifest, config: &ImageConfig) -> Result<()> {
    for (desc, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        if !store.has_layer(diff_id) {
            let ingest = store.ingest(&desc.digest)?;
            drop(ingest);
            if !store.has_blob(&desc.digest) {
                return Err(Error::NotFound(format!(
                    "layer {} (pull the image again)",
                    desc.digest
                )));
            }
            if !store.has_layer(diff_id) {
                unpack_blob(store, desc, diff_id)?;
            }
        }
    }
    Ok(())
}

/// Applies the layers one after another onto `dest`, deletions included.
pub fn flatten(store: &Store, layers: &[(Descriptor, Digest)], dest: &Path) -> Result<()> {
    for (desc, diff_id) in layers {
        let file = store.open_blob(&desc.digest)?;
        let dec = decompress(
            BufReader::with_capacity(256 << 10, file),
            Some(&desc.media_type),
        )
        .context(|| format!("layer {}", desc.digest))?;
        let mut h = HashingReader::new(dec, diff_id.algorithm());
        layer::unpack(&mut h, dest, Mode::Flatten).map_err(|e| Error::Layer {
            layer: desc.digest.to_string(),
            detail: e.to_string(),
        })?;
        h.drain().context(|| format!("layer {}", desc.digest))?;
        let (actual, _, _) = h.finish();
        if &actual != diff_id {
            return Err(Error::Layer {
                layer: desc.digest.to_string(),
                detail: format!(
                    "uncompressed content: digest mismatch: expected {diff_id}, got {actual}"
                ),
            });
        }
    }
    Ok(())
}

/// Makes the bundle `dir` for image `name` (recorded as `record`).
pub fn create(
    store: &Store,
    name: &str,
    record: &ImageRecord,
    dir: &Path,
    opts: &Options,
) -> Result<PathBuf> {
    validate(opts)?;
    let (manifest, config) = store.load(record)?;
    let created_dir = match fs::read_dir(dir) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(Error::Path(
                    dir.into(),
                    "bundle directory exists and is not empty".into(),
                ));
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).context(|| format!("create {}", dir.display()))?;
            true
        }
        Err(e) => return Err(e).context(|| format!("open {}", dir.display())),
    };
    let dir = fs::canonicalize(dir).context(|| format!("resolve {}", dir.display()))?;
    let mut cleanup = Cleanup {
        dir: &dir,
        created_dir,
        armed: true,
    };
    let rootfs = dir.join("rootfs");
    fs::create_dir(&rootfs).context(|| format!("create {}", rootfs.display()))?;
    let layers: Vec<(Descriptor, Digest)> = manifest
        .layers
        .iter()
        .cloned()
        .zip(config.rootfs.diff_ids.iter().cloned())
        .collect();
    let mode = if opts.copy {
        flatten(store, &layers, &rootfs)?;
        "copy"
    } else {
        ensure_layers(store, &manifest, &config)?;
        let ov = dir.join(".overlay");
        let (upper, work) = (ov.join("upper"), ov.join("work"));
        for d in [&upper, &work] {
            fs::create_dir_all(d).context(|| format!("create {}", d.display()))?;
        }
        let mut lowers: Vec<PathBuf> = config
            .rootfs
            .diff_ids
            .iter()
            .rev()
            .map(|d| store.layer_dir(d))
            .collect();
        if lowers.is_empty() {
            let empty = ov.join("empty");
            fs::create_dir_all(&empty).context(|| format!("create {}", empty.display()))?;
            lowers.push(empty);
        }
        let mounted = Overlay {
            lowers,
            upper: &upper,
            work: &work,
            options: Vec::new(),
        }
        .mount(&rootfs);
        match mounted {
            Ok(kind) => kind.name(),
            // A user namespace may be refused overlayfs (a kernel before
            // 5.11, a store on a filesystem it cannot stack) and have no
            // fuse-overlayfs: a copy then, unless a mount program was
            // asked for.
            Err(e) if crate::rootless::active() && !overlay::mount_program_asked() => {
                tracing::info!("rootless: no overlayfs here ({e}): the rootfs is a copy");
                flatten(store, &layers, &rootfs)?;
                "copy"
            }
            Err(e) => return Err(e),
        }
    };

    // Volumes mounted for the first time get the image's content there.
    for b in &opts.binds {
        if let Some(volume) = &b.fill_volume {
            crate::volume::fill_from_image(volume, &rootfs, &b.destination)?;
        }
    }

    let hostname = opts
        .hostname
        .clone()
        .unwrap_or_else(|| default_hostname(&dir));
    let etc = write_etc_files(&dir, &hostname, &opts.network)?;
    let spec = spec(&config, opts, &rootfs, &hostname, &etc, name)?;
    let config_path = dir.join("config.json");
    crate::store::atomic_write(
        &config_path,
        &serde_json::to_vec_pretty(&spec).expect("spec serializes"),
    )?;
    let meta = Metadata {
        image: name.to_string(),
        manifest: record.digest.clone(),
        config: record.config.clone(),
        rootfs: mode.into(),
        store: store.root().to_path_buf(),
        layers: config.rootfs.diff_ids.clone(),
    };
    crate::store::atomic_write(
        &dir.join(METADATA),
        &serde_json::to_vec_pretty(&meta).expect("metadata serializes"),
    )?;
    if mode != "copy" {
        store.add_bundle(&BundleRecord {
            dir: dir.clone(),
            image: name.to_string(),
            manifest: record.digest.clone(),
            layers: config.rootfs.diff_ids.clone(),
        })?;
    }
    cleanup.armed = false;
    drop(cleanup);
    Ok(dir)
}

/// `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` for the container,
/// kept in the bundle and bind-mounted, as docker does.
///
/// A joined namespace starts with the same hosts file as a private one;
/// `crate::network` rewrites it once the container's addresses are known.
pub(crate) fn write_etc_files(
    dir: &Path,
    hostname: &str,
    net: &Network,
) -> Result<BTreeMap<&'static str, PathBuf>> {
    let etc = dir.join(".etc");
    fs::create_dir_all(&etc).context(|| format!("create {}", etc.display()))?;
    let hosts = match net {
        Network::Host => fs::read_to_string("/etc/hosts").unwrap_or_default(),
        Network::None | Network::Join(_) => format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"),
    };
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = match net {
        Network::Join(_) => crate::network::hosts::resolv_conf(&host_resolv),
        _ => host_resolv,
    };
    let mut out = BTreeMap::new();
    for (dest, name, content) in [
        ("/etc/hosts", "hosts", hosts),
        ("/etc/hostname", "hostname", format!("{hostname}\n")),
        ("/etc/resolv.conf", "resolv.conf", resolv),
    ] {
        let p = etc.join(name);
        fs::write(&p, content).context(|| format!("write {}", p.display()))?;
        out.insert(dest, p);
    }
    Ok(out)
}

/// `bundle`: the image `reference`, pulled first if the store lacks it (as
/// `docker run` does), as the bundle `dir`.
pub fn create_from_reference(
    store: &Store,
    reference: &Reference,
    dir: &Path,
    opts: &Options,
) -> Result<PathBuf> {
    let record = pull::ensure(store, reference, Platform::host(), false)?;
    create(store, &reference.to_string(), &record, dir, opts)
}

/// Reads a bundle's metadata; errors if `dir` was not made by `bundle`.
pub fn metadata(dir: &Path) -> Result<Metadata> {
    let p = dir.join(METADATA);
    let data = fs::read(&p)
        .map_err(|_| Error::Path(dir.into(), "not a bundle made by berth-img".into()))?;
    serde_json::from_slice(&data).map_err(|e| Error::Path(p, format!("corrupt: {e}")))
}

/// Checks that `program` (a container's `args[0]`) can be run in `rootfs`
/// with the `PATH` of `env`, as the runtime's exec will look for it (every
/// path resolved inside the rootfs): docker's 127 when it is not there,
/// 126 when it is not an executable file.
pub fn check_command(rootfs: &Path, program: &str, env: &[String]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let root =
        crate::inroot::Root::open(rootfs).context(|| format!("open {}", rootfs.display()))?;
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path.split(':')
            .map(|d| Path::new(d).join(program))
            .collect()
    };
    let mut not_executable = false;
    for c in &candidates {
        let Ok(fd) = root.open_at(&crate::inroot::clean(c), nix::fcntl::OFlag::O_PATH) else {
            continue;
        };
        let file = fs::File::from(fd);
        match file.metadata() {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(()),
            Ok(_) => not_executable = true,
            Err(_) => {}
        }
    }
    Err(if not_executable {
        Error::Command {
            code: 126,
            detail: format!("exec: {program:?}: permission denied"),
        }
    } else if program.contains('/') {
        Error::Command {
            code: 127,
            detail: format!("exec: {program:?}: stat {program}: no such file or directory"),
        }
    } else {
        Error::Command {
            code: 127,
            detail: format!("exec: {program:?}: executable file not found in $PATH"),
        }
    })
}

/// Mounts a bundle's rootfs overlay again where it is no longer mounted
/// (after a reboot), from the layers its metadata names, over the upper
/// directory that holds what the container changed.
pub fn ensure_mounted(store: &Store, dir: &Path) -> Result<()> {
    let meta = metadata(dir)?;
    let rootfs = dir.join("rootfs");
    let Some(kind) = overlay::Kind::from_name(&meta.rootfs) else {
        return Ok(());
    };
    if overlay::is_mountpoint(&rootfs) {
        return Ok(());
    }
    let ov = dir.join(".overlay");
    let mut lowers: Vec<PathBuf> = meta
        .layers
        .iter()
        .rev()
        .map(|d| store.layer_dir(d))
        .collect();
    if lowers.is_empty() {
        lowers.push(ov.join("empty"));
    }
    Overlay {
        lowers,
        upper: &ov.join("upper"),
        work: &ov.join("work"),
        options: Vec::new(),
    }
    .mount_as(&rootfs, kind)
}

/// Unmounts and removes a bundle, and drops its record from `store`.
pub fn remove(store: Option<&Store>, dir: &Path) -> Result<()> {
    metadata(dir)?;
    let dir = fs::canonicalize(dir).context(|| format!("resolve {}", dir.display()))?;
    overlay::unmount(&dir.join("rootfs"))?;
    fs::remove_dir_all(&dir).context(|| format!("remove {}", dir.display()))?;
    if let Some(s) = store {
        s.remove_bundle(&dir);
    }
    Ok(())
}

/// `rm-bundle`: removes the bundle `dir` and its record in the store that
/// made it (named in its metadata, whatever `--root` says), if that store
/// still opens.
pub fn remove_with_recorded_store(dir: &Path) -> Result<()> {
    let meta = metadata(dir)?;
    let store = Store::open(&meta.store, Access::Shared).ok();
    remove(store.as_ref(), dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("100kb").unwrap(), 100 << 10);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("1.5g").unwrap(), 3 << 29);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1m").is_err());
    }

    #[test]
    fn caps_like_docker() {
        let c = capabilities(&["net_admin".into()], &["CAP_CHOWN".into(), "mknod".into()]).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()) && !c.contains(&"CAP_MKNOD".to_string()));
        assert_eq!(
            capabilities(&["kill".into()], &["all".into()]).unwrap(),
            vec!["CAP_KILL".to_string()]
        );
        assert_eq!(
            capabilities(&["ALL".into()], &[]).unwrap().len(),
            ALL_CAPS.len()
        );
        assert!(capabilities(&["CAP_FLY".into()], &[]).is_err());
    }

    #[test]
    fn mount_points_are_checked() {
        let bind = |d: &str| BindMount {
            source: "/".into(),
            destination: d.into(),
            ..Default::default()
        };
        let mut o = Options {
            binds: vec![bind("/data"), bind("/data/")],
            ..Default::default()
        };
        let e = validate(&o).unwrap_err().to_string();
        assert_eq!(e, "invalid mount: duplicate mount point: /data/");
        o.binds = vec![bind("/data")];
        o.tmpfs = vec!["/data:size=1m".into()];
        assert!(validate(&o).unwrap_err().to_string().contains("duplicate"));
        o.tmpfs = vec!["run".into()];
        assert!(validate(&o)
            .unwrap_err()
            .to_string()
            .contains("must be absolute"));
    }

    #[test]
    fn env_merges() {
        let mut env = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        merge_env(&mut env, "A=2");
        merge_env(&mut env, "B=3");
        assert_eq!(env, ["PATH=/bin", "A=2", "B=3"]);
    }
}
