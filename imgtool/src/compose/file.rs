//! A compose file read into [`Model`]: YAML through serde_norway (anchors,
//! aliases and `<<` merge keys as YAML 1.2 has them), every string
//! interpolated ([`super::interpolate`]), then each key checked and
//! converted. A key berth-img does not implement is an error naming its
//! path (`services.web.privileged: not supported by berth-img`), never
//! ignored; `x-*` extension keys are left alone, and the obsolete
//! `version` draws a warning as in compose v2.
//!
//! The model is what the file means, resolved: relative paths made
//! absolute against the project directory, `env_file`s read into the
//! environment, short and long syntaxes turned into one form. Serialized,
//! a service is what its `config-hash` label hashes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_norway::{Mapping, Value};

use super::interpolate::{self, Environment};
use crate::bundle::Ulimit;
use crate::clock;
use crate::error::{Error, Result};
use crate::network::ports;
use crate::restart::RestartPolicy;

/// A compose file, resolved.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Model {
    /// The top-level `name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub services: BTreeMap<String, Service>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, NetworkDef>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, VolumeDef>,
}

/// One service.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Service {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `env_file`'s variables, then `environment`'s over them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// In `-p` syntax: `[IP:][HOSTPORT:]PORT[/PROTO]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<ServiceVolume>,
    /// The networks (keys of the top-level `networks`, or `default`) and
    /// the aliases asked on each; empty with `network_mode`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, Condition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `build`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Build {
    /// Absolute.
    pub context: PathBuf,
    /// Relative to the context, as given (None: `Dockerfile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<PathBuf>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// When a service may start, as `depends_on` says of a dependency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// It has been started.
    #[default]
    ServiceStarted,
    /// Its health check passes.
    ServiceHealthy,
    /// It ran and exited 0.
    ServiceCompletedSuccessfully,
}

/// `healthcheck`, durations as given (checked).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Healthcheck {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`; empty: the
    /// image's test, with these timings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disable: bool,
}

/// What a service mounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    /// A top-level volume (by its key), or an anonymous one.
    Volume,
    /// A host path.
    Bind,
    Tmpfs,
}

/// One entry of a service's `volumes`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceVolume {
    #[serde(rename = "type")]
    pub kind: VolumeType,
    /// The top-level volume's key ("" for an anonymous volume), or the
    /// absolute host path; "" for tmpfs.
    pub source: String,
    pub target: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nocopy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    /// For binds: make a missing host directory (compose's default).
    pub create_host_path: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_mode: Option<u32>,
}

/// A top-level network.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NetworkDef {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// A top-level volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VolumeDef {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

const TOP_KEYS: &[&str] = &["version", "name", "services", "networks", "volumes"];
const SERVICE_KEYS: &[&str] = &[
    "build",
    "command",
    "container_name",
    "depends_on",
    "entrypoint",
    "env_file",
    "environment",
    "healthcheck",
    "hostname",
    "image",
    "labels",
    "network_mode",
    "networks",
    "ports",
    "restart",
    "ulimits",
    "user",
    "volumes",
    "working_dir",
];
const BUILD_KEYS: &[&str] = &["context", "dockerfile", "args", "target"];
const HEALTH_KEYS: &[&str] = &[
    "test",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "start_interval",
    "disable",
];
const PORT_KEYS: &[&str] = &["target", "published", "host_ip", "protocol", "mode"];
const VOLUME_KEYS: &[&str] = &[
    "type",
    "source",
    "target",
    "read_only",
    "bind",
    "volume",
    "tmpfs",
];
const NETWORK_KEYS: &[&str] = &["driver", "external", "name", "labels", "ipam"];
const TOP_VOLUME_KEYS: &[&str] = &["driver", "external", "name", "labels"];

/// Reads the compose file `file` (shown in errors as `label`), whose
/// relative paths are relative to `dir`, with `env`'s variables.
pub fn parse(text: &str, label: &str, dir: &Path, env: &Environment) -> Result<Model> {
    let r = Reader {
        file: label,
        dir,
        env,
    };
    let mut doc: Value = serde_norway::from_str(text).map_err(|e| r.err("", e.to_string()))?;
    doc.apply_merge().map_err(|e| r.err("", e.to_string()))?;
    r.interpolate(&mut doc, "")?;
    r.model(&doc)
}

struct Reader<'a> {
    file: &'a str,
    dir: &'a Path,
    env: &'a Environment,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Reader<'_> {
    fn err(&self, key: &str, detail: impl Into<String>) -> Error {
        Error::Compose {
            file: self.file.to_string(),
            key: if key.is_empty() {
                "(top)".into()
            } else {
                key.to_string()
            },
            detail: detail.into(),
        }
    }

    /// Replaces variables in every string of `v` (keys stay as written).
    fn interpolate(&self, v: &mut Value, path: &str) -> Result<()> {
        match v {
            Value::String(s) => {
                *s = interpolate::interpolate(s, self.env).map_err(|e| self.err(path, e))?;
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.interpolate(item, &format!("{path}[{i}]"))?;
                }
            }
            Value::Mapping(m) => {
                for (k, item) in m.iter_mut() {
                    let key = k.as_str().map_or_else(|| format!("{k:?}"), str::to_string);
                    self.interpolate(item, &join(path, &key))?;
                }
            }
            Value::Tagged(t) => self.interpolate(&mut t.value, path)?,
            _ => {}
        }
        Ok(())
    }

    fn mapping<'v>(&self, v: &'v Value, path: &str) -> Result<&'v Mapping> {
        v.as_mapping()
            .ok_or_else(|| self.err(path, "must be a mapping"))
    }

    /// The entries of a mapping, keys as strings; keys not in `allowed`
    /// (nor `x-` extensions) are refused.
    fn entries<'v>(
        &self,
        m: &'v Mapping,
        path: &str,
        allowed: Option<&[&str]>,
    ) -> Result<Vec<(String, &'v Value)>> {
        let mut out = Vec::new();
        for (k, v) in m {
            let key = match k {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(self.err(path, format!("key {k:?} must be a string"))),
            };
            if key.starts_with("x-") {
                continue;
            }
            if let Some(allowed) = allowed {
                if !allowed.contains(&key.as_str()) {
                    return Err(self.err(&join(path, &key), "not supported by berth-img"));
                }
            }
            out.push((key, v));
        }
        Ok(out)
    }

    /// A scalar as a string: compose takes numbers and booleans where it
    /// wants strings (`- 80`, `DEBUG: true`).
    fn scalar(&self, v: &Value, path: &str) -> Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(self.err(path, "must be a string")),
        }
    }

    fn bool(&self, v: &Value, path: &str) -> Result<bool> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s == "true" => Ok(true),
            Value::String(s) if s == "false" => Ok(false),
            _ => Err(self.err(path, "must be true or false")),
        }
    }

    fn integer(&self, v: &Value, path: &str) -> Result<i64> {
        match v {
            Value::Number(n) if n.as_i64().is_some() => Ok(n.as_i64().unwrap_or_default()),
            Value::String(s) => s.parse().map_err(|_| self.err(path, "must be an integer")),
            _ => Err(self.err(path, "must be an integer")),
        }
    }

    fn strings(&self, v: &Value, path: &str) -> Result<Vec<String>> {
        let items = v
            .as_sequence()
            .ok_or_else(|| self.err(path, "must be a list"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| self.scalar(item, &format!("{path}[{i}]")))
            .collect()
    }

    /// A string or a list of strings.
    fn string_or_list(&self, v: &Value, path: &str) -> Result<Vec<String>> {
        match v {
            Value::Sequence(_) => self.strings(v, path),
            _ => Ok(vec![self.scalar(v, path)?]),
        }
    }

    /// A command: a list, or a string split as a shell would.
    fn command(&self, v: &Value, path: &str) -> Result<Vec<String>> {
        match v {
            Value::Sequence(_) => self.strings(v, path),
            Value::Null => Ok(Vec::new()),
            _ => split_command(&self.scalar(v, path)?).map_err(|e| self.err(path, e)),
        }
    }

    /// A `KEY: value` mapping or a `KEY=value` list (`environment`,
    /// `labels`, `args`); None for a value left out (`KEY` alone, or
    /// `KEY:` with no value).
    fn key_values(&self, v: &Value, path: &str) -> Result<Vec<(String, Option<String>)>> {
        match v {
            Value::Mapping(m) => self
                .entries(m, path, None)?
                .into_iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::Null => None,
                        v => Some(self.scalar(v, &join(path, &k))?),
                    };
                    Ok((k, value))
                })
                .collect(),
            Value::Sequence(_) => Ok(self
                .strings(v, path)?
                .into_iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (kv, None),
                })
                .collect()),
            _ => Err(self.err(path, "must be a mapping or a list of KEY=VALUE")),
        }
    }

    /// Labels: values left out are empty.
    fn labels(&self, v: &Value, path: &str) -> Result<BTreeMap<String, String>> {
        Ok(self
            .key_values(v, path)?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect())
    }

    fn duration(&self, v: &Value, path: &str) -> Result<String> {
        let s = self.scalar(v, path)?;
        match clock::parse_go_duration(&s) {
            Some(n) if n >= 0 => Ok(s),
            _ => Err(self.err(
                path,
                format!("{s:?}: want a duration such as 1m30s or 500ms"),
            )),
        }
    }

    fn absolute(&self, p: &str) -> PathBuf {
        let p = match p.strip_prefix("~/") {
            Some(rest) => {
                PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/".into())).join(rest)
            }
            None => self.dir.join(p),
        };
        // components() drops the `.` parts; `..` stays for the kernel.
        p.components().collect()
    }

    fn model(&self, doc: &Value) -> Result<Model> {
        let top = self.mapping(doc, "")?;
        let mut model = Model::default();
        for (key, v) in self.entries(top, "", Some(TOP_KEYS))? {
            match key.as_str() {
                "version" => tracing::warn!(
                    "{}: the attribute `version` is obsolete, it will be ignored",
                    self.file
                ),
                "name" => model.name = Some(self.scalar(v, "name")?),
                "services" => {
                    for (name, s) in self.entries(self.mapping(v, "services")?, "services", None)? {
                        let path = join("services", &name);
                        if !valid_service_name(&name) {
                            return Err(self.err(&path, "a service name is [a-zA-Z0-9._-]+"));
                        }
                        let service = self.service(s, &path)?;
                        model.services.insert(name, service);
                    }
                }
                "networks" => {
                    if v.is_null() {
                        continue;
                    }
                    for (name, n) in self.entries(self.mapping(v, "networks")?, "networks", None)? {
                        let path = join("networks", &name);
                        let def = self.network(n, &path)?;
                        model.networks.insert(name, def);
                    }
                }
                "volumes" => {
                    if v.is_null() {
                        continue;
                    }
                    for (name, n) in self.entries(self.mapping(v, "volumes")?, "volumes", None)? {
                        let path = join("volumes", &name);
                        let def = self.top_volume(n, &path)?;
                        model.volumes.insert(name, def);
                    }
                }
                _ => unreachable!("checked against TOP_KEYS"),
            }
        }
        if model.services.is_empty() {
            return Err(self.err("services", "no services defined"));
        }
        self.check(&model)?;
        Ok(model)
    }

    fn service(&self, v: &Value, path: &str) -> Result<Service> {
        let m = self.mapping(v, path)?;
        let mut s = Service::default();
        let mut env_files: Vec<(String, PathBuf)> = Vec::new();
        let mut environment: Vec<(String, Option<String>)> = Vec::new();
        for (key, v) in self.entries(m, path, Some(SERVICE_KEYS))? {
            let p = join(path, &key);
            match key.as_str() {
                "image" => s.image = Some(self.scalar(v, &p)?),
                "build" => s.build = Some(self.build(v, &p)?),
                "command" => s.command = Some(self.command(v, &p)?),
                "entrypoint" => s.entrypoint = Some(self.command(v, &p)?),
                "environment" => environment = self.key_values(v, &p)?,
                "env_file" => {
                    for (i, f) in self.string_or_list(v, &p)?.into_iter().enumerate() {
                        let at = if v.is_sequence() {
                            format!("{p}[{i}]")
                        } else {
                            p.clone()
                        };
                        env_files.push((at, self.absolute(&f)));
                    }
                }
                "ports" => {
                    let items = v
                        .as_sequence()
                        .ok_or_else(|| self.err(&p, "must be a list"))?;
                    for (i, item) in items.iter().enumerate() {
                        s.ports.push(self.port(item, &format!("{p}[{i}]"))?);
                    }
                }
                "volumes" => {
                    let items = v
                        .as_sequence()
                        .ok_or_else(|| self.err(&p, "must be a list"))?;
                    for (i, item) in items.iter().enumerate() {
                        s.volumes
                            .push(self.service_volume(item, &format!("{p}[{i}]"))?);
                    }
                }
                "networks" => s.networks = self.service_networks(v, &p)?,
                "network_mode" => {
                    let mode = self.scalar(v, &p)?;
                    let ok = matches!(mode.as_str(), "host" | "none" | "bridge")
                        || mode
                            .strip_prefix("container:")
                            .is_some_and(crate::network::valid_name);
                    if !ok {
                        return Err(self.err(
                            &p,
                            format!("{mode:?}: want host, none, bridge or container:NAME"),
                        ));
                    }
                    s.network_mode = Some(mode);
                }
                "depends_on" => s.depends_on = self.depends_on(v, &p)?,
                "healthcheck" => s.healthcheck = Some(self.healthcheck(v, &p)?),
                "restart" => {
                    let r = self.scalar(v, &p)?;
                    r.parse::<RestartPolicy>()
                        .map_err(|e| self.err(&p, e.to_string()))?;
                    s.restart = Some(r);
                }
                "user" => s.user = Some(self.scalar(v, &p)?),
                "working_dir" => s.working_dir = Some(self.scalar(v, &p)?),
                "hostname" => s.hostname = Some(self.scalar(v, &p)?),
                "container_name" => {
                    let n = self.scalar(v, &p)?;
                    if !crate::network::valid_name(&n) {
                        return Err(self.err(&p, format!("{n:?}: want [a-zA-Z0-9][a-zA-Z0-9_.-]*")));
                    }
                    s.container_name = Some(n);
                }
                "ulimits" => s.ulimits = self.ulimits(v, &p)?,
                "labels" => s.labels = self.labels(v, &p)?,
                _ => unreachable!("checked against SERVICE_KEYS"),
            }
        }
        if s.image.is_none() && s.build.is_none() {
            return Err(self.err(path, "has neither an image nor a build context specified"));
        }
        for (at, file) in env_files {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| self.err(&at, format!("{}: {e}", file.display())))?;
            let vars = interpolate::parse_env_file(&text, &file.display().to_string(), self.env)?;
            s.environment.extend(vars);
        }
        for (k, v) in environment {
            // `KEY` alone takes the value compose runs with, if any.
            match v.or_else(|| self.env.get(&k).map(str::to_string)) {
                Some(v) => {
                    s.environment.insert(k, v);
                }
                None => {
                    s.environment.remove(&k);
                }
            }
        }
        Ok(s)
    }

    fn build(&self, v: &Value, path: &str) -> Result<Build> {
        let mut b = Build::default();
        let m = match v {
            Value::Mapping(m) => m,
            _ => {
                b.context = self.absolute(&self.scalar(v, path)?);
                return Ok(b);
            }
        };
        let mut context = ".".to_string();
        for (key, v) in self.entries(m, path, Some(BUILD_KEYS))? {
            let p = join(path, &key);
            match key.as_str() {
                "context" => context = self.scalar(v, &p)?,
                "dockerfile" => b.dockerfile = Some(PathBuf::from(self.scalar(v, &p)?)),
                "args" => {
                    for (k, val) in self.key_values(v, &p)? {
                        if let Some(val) = val.or_else(|| self.env.get(&k).map(str::to_string)) {
                            b.args.insert(k, val);
                        }
                    }
                }
                "target" => b.target = Some(self.scalar(v, &p)?),
                _ => unreachable!("checked against BUILD_KEYS"),
            }
        }
        b.context = self.absolute(&context);
        Ok(b)
    }

    /// A `ports` entry in `-p` syntax, checked.
    fn port(&self, v: &Value, path: &str) -> Result<String> {
        let spec = match v {
            Value::Mapping(m) => {
                let mut target = None;
                let mut published = String::new();
                let mut host_ip = String::new();
                let mut protocol = "tcp".to_string();
                for (key, v) in self.entries(m, path, Some(PORT_KEYS))? {
                    let p = join(path, &key);
                    match key.as_str() {
                        "target" => target = Some(self.scalar(v, &p)?),
                        "published" => published = self.scalar(v, &p)?,
                        "host_ip" => host_ip = self.scalar(v, &p)?,
                        "protocol" => protocol = self.scalar(v, &p)?,
                        "mode" => {
                            let mode = self.scalar(v, &p)?;
                            if mode != "host" && mode != "ingress" {
                                return Err(self.err(&p, format!("{mode:?}: want host or ingress")));
                            }
                        }
                        _ => unreachable!("checked against PORT_KEYS"),
                    }
                }
                let target =
                    target.ok_or_else(|| self.err(&join(path, "target"), "is required"))?;
                match (host_ip.is_empty(), published.is_empty()) {
                    (true, true) => format!("{target}/{protocol}"),
                    (true, false) => format!("{published}:{target}/{protocol}"),
                    (false, _) => format!("{host_ip}:{published}:{target}/{protocol}"),
                }
            }
            _ => self.scalar(v, path)?,
        };
        ports::parse_publish(&spec).map_err(|e| self.err(path, e.to_string()))?;
        Ok(spec)
    }

    fn service_volume(&self, v: &Value, path: &str) -> Result<ServiceVolume> {
        let mut sv = ServiceVolume {
            kind: VolumeType::Volume,
            source: String::new(),
            target: String::new(),
            read_only: false,
            nocopy: false,
            propagation: None,
            create_host_path: true,
            tmpfs_size: None,
            tmpfs_mode: None,
        };
        let m = match v {
            Value::Mapping(m) => m,
            _ => {
                let spec = self.scalar(v, path)?;
                let parsed = crate::volume::parse_volume_flag(&spec, self.dir)
                    .map_err(|e| self.err(path, e.to_string()))?;
                sv.kind = match parsed.kind {
                    crate::volume::MountKind::Bind => VolumeType::Bind,
                    _ => VolumeType::Volume,
                };
                sv.source = match sv.kind {
                    VolumeType::Bind => self.absolute(&parsed.source).display().to_string(),
                    _ => parsed.source,
                };
                sv.target = parsed.destination;
                sv.read_only = parsed.read_only;
                sv.nocopy = parsed.nocopy;
                sv.propagation = parsed.propagation;
                return Ok(sv);
            }
        };
        let mut kind = None;
        for (key, v) in self.entries(m, path, Some(VOLUME_KEYS))? {
            let p = join(path, &key);
            match key.as_str() {
                "type" => {
                    kind = Some(match self.scalar(v, &p)?.as_str() {
                        "volume" => VolumeType::Volume,
                        "bind" => VolumeType::Bind,
                        "tmpfs" => VolumeType::Tmpfs,
                        other => {
                            return Err(
                                self.err(&p, format!("{other:?}: want volume, bind or tmpfs"))
                            )
                        }
                    })
                }
                "source" => sv.source = self.scalar(v, &p)?,
                "target" => sv.target = self.scalar(v, &p)?,
                "read_only" => sv.read_only = self.bool(v, &p)?,
                "bind" => {
                    for (k, v) in self.entries(
                        self.mapping(v, &p)?,
                        &p,
                        Some(&["propagation", "create_host_path"]),
                    )? {
                        let p = join(&p, &k);
                        match k.as_str() {
                            "propagation" => sv.propagation = Some(self.scalar(v, &p)?),
                            _ => sv.create_host_path = self.bool(v, &p)?,
                        }
                    }
                }
                "volume" => {
                    for (k, v) in self.entries(self.mapping(v, &p)?, &p, Some(&["nocopy"]))? {
                        sv.nocopy = self.bool(v, &join(&p, &k))?;
                    }
                }
                "tmpfs" => {
                    for (k, v) in self.entries(self.mapping(v, &p)?, &p, Some(&["size", "mode"]))? {
                        let p = join(&p, &k);
                        if k == "size" {
                            let size = self.scalar(v, &p)?;
                            let bytes = crate::bundle::parse_bytes(&size).map_err(|_| {
                                self.err(&p, format!("{size:?}: want a size such as 64m"))
                            })?;
                            sv.tmpfs_size = Some(bytes);
                        } else {
                            let mode = self.integer(v, &p)?;
                            sv.tmpfs_mode = Some(
                                u32::try_from(mode)
                                    .ok()
                                    .filter(|m| *m <= 0o7777)
                                    .ok_or_else(|| self.err(&p, "want a mode such as 0o1777"))?,
                            );
                        }
                    }
                }
                _ => unreachable!("checked against VOLUME_KEYS"),
            }
        }
        sv.kind = kind.ok_or_else(|| self.err(&join(path, "type"), "is required"))?;
        if !sv.target.starts_with('/') {
            return Err(self.err(
                &join(path, "target"),
                "must be an absolute path in the container",
            ));
        }
        match sv.kind {
            VolumeType::Bind if sv.source.is_empty() => {
                return Err(self.err(&join(path, "source"), "is required for a bind"))
            }
            VolumeType::Bind => sv.source = self.absolute(&sv.source).display().to_string(),
            VolumeType::Volume
                if !sv.source.is_empty() && !crate::volume::valid_name(&sv.source) =>
            {
                return Err(self.err(&join(path, "source"), "not a volume name"))
            }
            VolumeType::Tmpfs if !sv.source.is_empty() => {
                return Err(self.err(&join(path, "source"), "a tmpfs has no source"))
            }
            _ => {}
        }
        if let Some(p) = &sv.propagation {
            if sv.kind != VolumeType::Bind
                || ![
                    "shared", "slave", "private", "rshared", "rslave", "rprivate",
                ]
                .contains(&p.as_str())
            {
                return Err(self.err(
                    &join(path, "bind.propagation"),
                    format!("{p:?}: not a bind propagation"),
                ));
            }
        }
        Ok(sv)
    }

    fn service_networks(&self, v: &Value, path: &str) -> Result<BTreeMap<String, Vec<String>>> {
        let mut out = BTreeMap::new();
        match v {
            Value::Sequence(_) => {
                for n in self.strings(v, path)? {
                    out.insert(n, Vec::new());
                }
            }
            Value::Mapping(m) => {
                for (name, v) in self.entries(m, path, None)? {
                    let p = join(path, &name);
                    let mut aliases = Vec::new();
                    if !v.is_null() {
                        for (k, v) in self.entries(self.mapping(v, &p)?, &p, Some(&["aliases"]))? {
                            let p = join(&p, &k);
                            aliases = self.strings(v, &p)?;
                            for a in &aliases {
                                if !crate::network::valid_name(a) {
                                    return Err(self.err(&p, format!("{a:?}: not a valid alias")));
                                }
                            }
                        }
                    }
                    out.insert(name, aliases);
                }
            }
            _ => return Err(self.err(path, "must be a list or a mapping")),
        }
        Ok(out)
    }

    fn depends_on(&self, v: &Value, path: &str) -> Result<BTreeMap<String, Condition>> {
        let mut out = BTreeMap::new();
        match v {
            Value::Sequence(_) => {
                for n in self.strings(v, path)? {
                    out.insert(n, Condition::ServiceStarted);
                }
            }
            Value::Mapping(m) => {
                for (name, v) in self.entries(m, path, None)? {
                    let p = join(path, &name);
                    let mut condition = Condition::ServiceStarted;
                    for (k, v) in self.entries(self.mapping(v, &p)?, &p, Some(&["condition"]))? {
                        let p = join(&p, &k);
                        condition = match self.scalar(v, &p)?.as_str() {
                            "service_started" => Condition::ServiceStarted,
                            "service_healthy" => Condition::ServiceHealthy,
                            "service_completed_successfully" => {
                                Condition::ServiceCompletedSuccessfully
                            }
                            other => {
                                return Err(self.err(&p, format!(
                                    "{other:?}: want service_started, service_healthy or service_completed_successfully"
                                )))
                            }
                        };
                    }
                    out.insert(name, condition);
                }
            }
            _ => return Err(self.err(path, "must be a list or a mapping")),
        }
        Ok(out)
    }

    fn healthcheck(&self, v: &Value, path: &str) -> Result<Healthcheck> {
        let mut h = Healthcheck::default();
        for (key, v) in self.entries(self.mapping(v, path)?, path, Some(HEALTH_KEYS))? {
            let p = join(path, &key);
            match key.as_str() {
                "test" => {
                    h.test = match v {
                        Value::Sequence(_) => {
                            let t = self.strings(v, &p)?;
                            match t.first().map(String::as_str) {
                                Some("CMD") | Some("CMD-SHELL") if t.len() > 1 => t,
                                Some("NONE") => t,
                                _ => {
                                    return Err(
                                        self.err(&p, "a list starts with CMD, CMD-SHELL or NONE")
                                    )
                                }
                            }
                        }
                        _ => vec!["CMD-SHELL".into(), self.scalar(v, &p)?],
                    }
                }
                "interval" => h.interval = Some(self.duration(v, &p)?),
                "timeout" => h.timeout = Some(self.duration(v, &p)?),
                "start_period" => h.start_period = Some(self.duration(v, &p)?),
                "start_interval" => h.start_interval = Some(self.duration(v, &p)?),
                "retries" => {
                    let n = self.integer(v, &p)?;
                    if n < 0 {
                        return Err(self.err(&p, "cannot be negative"));
                    }
                    h.retries = Some(n);
                }
                "disable" => h.disable = self.bool(v, &p)?,
                _ => unreachable!("checked against HEALTH_KEYS"),
            }
        }
        Ok(h)
    }

    fn ulimits(&self, v: &Value, path: &str) -> Result<Vec<Ulimit>> {
        let mut out = Vec::new();
        for (name, v) in self.entries(self.mapping(v, path)?, path, None)? {
            let p = join(path, &name);
            let number = |v: &Value, p: &str| -> Result<u64> {
                match self.integer(v, p)? {
                    -1 => Ok(u64::MAX),
                    n if n >= 0 => Ok(n as u64),
                    _ => Err(self.err(p, "want a limit (or -1 for none)")),
                }
            };
            let (soft, hard) = match v {
                Value::Mapping(m) => {
                    let (mut soft, mut hard) = (None, None);
                    for (k, v) in self.entries(m, &p, Some(&["soft", "hard"]))? {
                        let n = number(v, &join(&p, &k))?;
                        if k == "soft" {
                            soft = Some(n);
                        } else {
                            hard = Some(n);
                        }
                    }
                    match (soft, hard) {
                        (Some(s), Some(h)) => (s, h),
                        _ => return Err(self.err(&p, "want both soft and hard")),
                    }
                }
                v => {
                    let n = number(v, &p)?;
                    (n, n)
                }
            };
            out.push(Ulimit::new(&name, soft, hard).map_err(|e| self.err(&p, e.to_string()))?);
        }
        Ok(out)
    }

    /// `external: true` (or the older `external: {name: N}`).
    fn external(&self, v: &Value, path: &str, name: &mut Option<String>) -> Result<bool> {
        match v {
            Value::Mapping(m) => {
                for (k, v) in self.entries(m, path, Some(&["name"]))? {
                    *name = Some(self.scalar(v, &join(path, &k))?);
                }
                Ok(true)
            }
            v => self.bool(v, path),
        }
    }

    fn network(&self, v: &Value, path: &str) -> Result<NetworkDef> {
        let mut n = NetworkDef::default();
        if v.is_null() {
            return Ok(n);
        }
        for (key, v) in self.entries(self.mapping(v, path)?, path, Some(NETWORK_KEYS))? {
            let p = join(path, &key);
            match key.as_str() {
                "driver" => {
                    let d = self.scalar(v, &p)?;
                    if d != "bridge" {
                        return Err(self.err(&p, format!("{d:?}: only bridge")));
                    }
                }
                "external" => n.external = self.external(v, &p, &mut n.name)?,
                "name" => n.name = Some(self.scalar(v, &p)?),
                "labels" => n.labels = self.labels(v, &p)?,
                "ipam" => {
                    for (k, v) in
                        self.entries(self.mapping(v, &p)?, &p, Some(&["driver", "config"]))?
                    {
                        let p = join(&p, &k);
                        if k == "driver" {
                            let d = self.scalar(v, &p)?;
                            if d != "default" {
                                return Err(self.err(&p, format!("{d:?}: only default")));
                            }
                            continue;
                        }
                        let items = v
                            .as_sequence()
                            .ok_or_else(|| self.err(&p, "must be a list"))?;
                        if items.len() > 1 {
                            return Err(self.err(&p, "one subnet per network"));
                        }
                        for (i, item) in items.iter().enumerate() {
                            let p = format!("{p}[{i}]");
                            for (k, v) in self.entries(
                                self.mapping(item, &p)?,
                                &p,
                                Some(&["subnet", "gateway"]),
                            )? {
                                let p = join(&p, &k);
                                let s = self.scalar(v, &p)?;
                                if k == "subnet" {
                                    s.parse::<crate::network::subnet::Ipv4Net>()
                                        .map_err(|e| self.err(&p, e.to_string()))?;
                                    n.subnet = Some(s);
                                } else {
                                    s.parse::<std::net::Ipv4Addr>().map_err(|_| {
                                        self.err(&p, format!("{s:?}: want an IPv4 address"))
                                    })?;
                                    n.gateway = Some(s);
                                }
                            }
                        }
                    }
                }
                _ => unreachable!("checked against NETWORK_KEYS"),
            }
        }
        if let Some(name) = &n.name {
            if !crate::network::valid_name(name) {
                return Err(self.err(&join(path, "name"), format!("{name:?}: not a network name")));
            }
        }
        Ok(n)
    }

    fn top_volume(&self, v: &Value, path: &str) -> Result<VolumeDef> {
        let mut d = VolumeDef::default();
        if v.is_null() {
            return Ok(d);
        }
        for (key, v) in self.entries(self.mapping(v, path)?, path, Some(TOP_VOLUME_KEYS))? {
            let p = join(path, &key);
            match key.as_str() {
                "driver" => {
                    let drv = self.scalar(v, &p)?;
                    if drv != "local" {
                        return Err(self.err(&p, format!("{drv:?}: only local")));
                    }
                }
                "external" => d.external = self.external(v, &p, &mut d.name)?,
                "name" => d.name = Some(self.scalar(v, &p)?),
                "labels" => d.labels = self.labels(v, &p)?,
                _ => unreachable!("checked against TOP_VOLUME_KEYS"),
            }
        }
        if let Some(name) = &d.name {
            if !crate::volume::valid_name(name) {
                return Err(self.err(&join(path, "name"), format!("{name:?}: not a volume name")));
            }
        }
        Ok(d)
    }

    /// What refers to what: dependencies, networks and volumes exist, no
    /// dependency cycle.
    fn check(&self, model: &Model) -> Result<()> {
        for (name, s) in &model.services {
            let path = join("services", name);
            for dep in s.depends_on.keys() {
                if !model.services.contains_key(dep) {
                    return Err(self.err(
                        &join(&path, "depends_on"),
                        format!("service {dep:?} is not defined"),
                    ));
                }
            }
            for net in s.networks.keys() {
                if net != "default" && !model.networks.contains_key(net) {
                    return Err(self.err(
                        &join(&path, "networks"),
                        format!("network {net:?} is not declared in the top-level networks"),
                    ));
                }
            }
            if s.network_mode.is_some() && !s.networks.is_empty() {
                return Err(self.err(
                    &join(&path, "network_mode"),
                    "cannot be combined with networks",
                ));
            }
            for (i, v) in s.volumes.iter().enumerate() {
                if v.kind == VolumeType::Volume
                    && !v.source.is_empty()
                    && !model.volumes.contains_key(&v.source)
                {
                    return Err(self.err(
                        &format!("{path}.volumes[{i}]"),
                        format!(
                            "volume {:?} is not declared in the top-level volumes",
                            v.source
                        ),
                    ));
                }
            }
        }
        order(model, model.services.keys().cloned().collect())
            .map_err(|e| self.err("services", e))?;
        Ok(())
    }
}

/// A service name: what compose allows.
fn valid_service_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `services` and everything they depend on, dependencies first (ties by
/// name); a cycle is an error naming its services.
pub fn order(model: &Model, services: Vec<String>) -> std::result::Result<Vec<String>, String> {
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut todo = services;
    while let Some(s) = todo.pop() {
        if wanted.insert(s.clone()) {
            if let Some(svc) = model.services.get(&s) {
                todo.extend(svc.depends_on.keys().cloned());
            }
        }
    }
    let mut done: Vec<String> = Vec::new();
    let mut left = wanted;
    while !left.is_empty() {
        let ready: Vec<String> = left
            .iter()
            .filter(|s| {
                model.services[s.as_str()]
                    .depends_on
                    .keys()
                    .all(|d| done.contains(d))
            })
            .cloned()
            .collect();
        if ready.is_empty() {
            let cycle: Vec<&str> = left.iter().map(String::as_str).collect();
            return Err(format!(
                "dependency cycle between services: {}",
                cycle.join(", ")
            ));
        }
        for s in ready {
            left.remove(&s);
            done.push(s);
        }
    }
    Ok(done)
}

/// Splits a command string as compose does (a POSIX shell's words, no
/// expansion): whitespace separates, quotes group, `\` escapes.
pub fn split_command(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("{s:?}: unclosed '")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("{s:?}: unclosed \"")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("{s:?}: unclosed \"")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => word.push('\\'),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(yaml: &str, vars: &[(&str, &str)]) -> Result<Model> {
        let env = Environment::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        parse(yaml, "compose.yaml", Path::new("/proj"), &env)
    }

    fn error(yaml: &str) -> String {
        parse_with(yaml, &[]).unwrap_err().to_string()
    }

    #[test]
    fn short_and_long_syntaxes_come_to_one_form() {
        let m = parse_with(
            r#"
x-common: &common
  image: busybox
services:
  web:
    <<: *common
    command: sh -c 'echo "a b"'
    entrypoint: ["/bin/sh"]
    environment: [A=1, B]
    ports:
      - 8080:80
      - target: 53
        published: "5353"
        host_ip: 127.0.0.1
        protocol: udp
    volumes:
      - data:/data:ro
      - ./site:/www
      - type: tmpfs
        target: /tmp
        tmpfs: {size: 64m}
    networks:
      front:
        aliases: [www]
    depends_on:
      db: {condition: service_healthy}
    healthcheck:
      test: wget -q localhost
      interval: 1m30s
      retries: 3
    ulimits:
      nofile: {soft: 1024, hard: 2048}
  db:
    image: ${DB_IMAGE:-busybox}:${DB_TAG}
volumes:
  data:
networks:
  front:
    ipam:
      config: [{subnet: 10.99.0.0/24}]
"#,
            &[("B", "from-env"), ("DB_TAG", "1")],
        )
        .unwrap();
        let web = &m.services["web"];
        assert_eq!(web.image.as_deref(), Some("busybox"));
        assert_eq!(
            web.command.as_deref().unwrap(),
            ["sh", "-c", "echo \"a b\""]
        );
        assert_eq!(web.entrypoint.as_deref().unwrap(), ["/bin/sh"]);
        assert_eq!(web.environment["A"], "1");
        assert_eq!(web.environment["B"], "from-env");
        assert_eq!(web.ports, ["8080:80", "127.0.0.1:5353:53/udp"]);
        assert_eq!(web.volumes[0].kind, VolumeType::Volume);
        assert_eq!(web.volumes[0].source, "data");
        assert!(web.volumes[0].read_only);
        assert_eq!(web.volumes[1].kind, VolumeType::Bind);
        assert_eq!(web.volumes[1].source, "/proj/site");
        assert_eq!(web.volumes[2].kind, VolumeType::Tmpfs);
        assert_eq!(web.volumes[2].tmpfs_size, Some(64 << 20));
        assert_eq!(web.networks["front"], ["www"]);
        assert_eq!(web.depends_on["db"], Condition::ServiceHealthy);
        let h = web.healthcheck.as_ref().unwrap();
        assert_eq!(h.test, ["CMD-SHELL", "wget -q localhost"]);
        assert_eq!(h.interval.as_deref(), Some("1m30s"));
        assert_eq!(web.ulimits[0].kind(), "RLIMIT_NOFILE");
        assert_eq!(web.ulimits[0].hard, 2048);
        assert_eq!(m.services["db"].image.as_deref(), Some("busybox:1"));
        assert_eq!(m.networks["front"].subnet.as_deref(), Some("10.99.0.0/24"));
        assert!(m.volumes.contains_key("data"));
    }

    #[test]
    fn what_is_not_supported_is_named() {
        let svc = |rest: &str| format!("services:\n  web:\n    image: busybox\n{rest}");
        for (yaml, want) in [
            (
                svc("    privileged: true\n"),
                "compose.yaml: services.web.privileged: not supported by berth-img",
            ),
            (
                "configs: {}\nservices: {}\n".into(),
                "compose.yaml: configs: not supported",
            ),
            (
                svc("    build: {context: ., ssh: [default]}\n"),
                "services.web.build.ssh: not supported",
            ),
            (
                svc("    healthcheck: {test: [true]}\n"),
                "services.web.healthcheck.test: a list starts with CMD",
            ),
            (svc("    restart: sometimes\n"), "services.web.restart"),
            (svc("    ports: ['80:99999']\n"), "services.web.ports[0]"),
            (
                svc("    volumes: [{type: bind, target: /x}]\n"),
                "services.web.volumes[0].source: is required for a bind",
            ),
            (
                "services:\n  web:\n    command: x\n".into(),
                "services.web: has neither an image nor a build context",
            ),
            (
                "services:\n  web:\n    image: ${TAG:?TAG is needed}\n".into(),
                "TAG is needed",
            ),
            ("services: {}\n".into(), "services: no services defined"),
        ] {
            let e = error(&yaml);
            assert!(e.contains(want), "{yaml}\n{e}");
        }
    }

    #[test]
    fn commands_split_as_a_shell_would() {
        assert_eq!(
            split_command(r#"a 'b c' "d \"e\"" f\ g"#).unwrap(),
            ["a", "b c", "d \"e\"", "f g"]
        );
        assert_eq!(split_command("  ").unwrap(), Vec::<String>::new());
        assert!(split_command("'open").is_err());
    }
}
