//! A container's network — its "sandbox" in CNI's and containerd's words:
//! the pinned namespace, the networks attached to it (each one CNI list
//! ADDed with the interface `ethN`), the published ports, all recorded in
//! `ROOT/containers/NAME/network.json`. The record is written *before*
//! each step it describes, so whatever a crash interrupts, the record
//! names it and teardown (DEL, which is safe to repeat) releases it.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cni::{self, Address, Args, CniResult, Plugins};
use super::hosts::{self, Entry};
use super::netns::{self, NsId};
use super::ports::{self, PortMapping, PortRequest};
use super::{Network, Networks, DEFAULT_NETWORK};
use crate::error::{Context, Error, Result};

/// How a container is networked: docker's `--net` values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A namespace of its own with only loopback.
    None,
    /// The host's namespace.
    Host,
    /// A namespace of its own on these bridge networks (the first carries
    /// the published ports).
    Bridge(Vec<String>),
    /// The namespace of another container.
    Container(String),
}

impl Mode {
    /// `--net` values (the flag may repeat to join several networks):
    /// `bridge` (the default), `host`, `none`, `container:NAME` or a
    /// network's name.
    pub fn parse(values: &[String]) -> Result<Mode> {
        if crate::rootless::active() {
            return crate::rootless::network_mode(values);
        }
        let bad = |v: &str, why: &str| Error::invalid("--network", format!("{v:?}: {why}"));
        let mut nets: Vec<String> = Vec::new();
        for v in values {
            let single = match v.as_str() {
                "host" => Some(Mode::Host),
                "none" => Some(Mode::None),
                _ => match v.strip_prefix("container:") {
                    Some(c) if super::valid_name(c) => Some(Mode::Container(c.to_string())),
                    Some(_) => return Err(bad(v, "want container:NAME")),
                    None => None,
                },
            };
            if let Some(m) = single {
                if values.len() > 1 {
                    return Err(bad(
                        v,
                        "host, none and container: cannot be combined with other networks",
                    ));
                }
                return Ok(m);
            }
            let name = if v == "default" {
                DEFAULT_NETWORK
            } else {
                v.as_str()
            };
            if !super::valid_name(name) {
                return Err(bad(v, "not a network name"));
            }
            if nets.iter().any(|n| n == name) {
                return Err(bad(v, "given twice"));
            }
            nets.push(name.to_string());
        }
        if nets.is_empty() {
            nets.push(DEFAULT_NETWORK.to_string());
        }
        Ok(Mode::Bridge(nets))
    }
}

/// What `run` asks of the network.
#[derive(Clone, Debug)]
pub struct Request {
    pub mode: Mode,
    /// `-p` and `-P`, host ports not chosen yet.
    pub publish: Vec<PortRequest>,
    /// `--network-alias`: more names on the user networks.
    pub aliases: Vec<String>,
}

impl Default for Request {
    fn default() -> Request {
        Request {
            mode: Mode::Bridge(vec![DEFAULT_NETWORK.to_string()]),
            publish: Vec::new(),
            aliases: Vec::new(),
        }
    }
}

/// One network attached to a container: the list ADDed and its result.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub network: String,
    pub network_id: String,
    pub ifname: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Whether names resolve on it.
    pub user_defined: bool,
    /// The list as it was ADDed, replayed for CHECK and DEL.
    pub conflist: Value,
    pub runtime_config: Value,
    /// None until ADD finished (DEL runs regardless).
    #[serde(default)]
    pub result: Option<Value>,
}

impl Attachment {
    /// The container's address on this network.
    pub fn address(&self) -> Option<Address> {
        CniResult::parse(self.result.as_ref()?)
            .ok()?
            .address(&self.ifname)
    }
}

/// `ROOT/containers/NAME/network.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sandbox {
    /// The container's key (see `crate::containers`): where the record
    /// and the pinned namespace are.
    pub name: String,
    /// The container's name, as its peers resolve it (empty in records
    /// made before renames were possible: then `name`).
    #[serde(default)]
    pub container_name: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    pub hostname: String,
    /// `bridge`, `none`, `host` or `container:NAME`.
    pub mode: String,
    /// The namespace the container joins.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// Whether `netns` is this container's (pinned by it, removed with it).
    #[serde(default)]
    pub owns_netns: bool,
    /// The namespace CNI ran in: where the bridge and rules are.
    #[serde(default)]
    pub host_netns: Option<NsId>,
    /// Whether loopback was ADDed.
    #[serde(default)]
    pub loopback: bool,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
}

impl Sandbox {
    /// The name peers know the container by.
    pub fn display_name(&self) -> &str {
        if self.container_name.is_empty() {
            &self.name
        } else {
            &self.container_name
        }
    }

    /// Whether teardown has anything to release.
    pub fn holds_resources(&self) -> bool {
        self.owns_netns || self.loopback || !self.attachments.is_empty()
    }
}

/// What the bundle does with the network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespace {
    Host,
    Join(PathBuf),
    /// One `berth` makes with the container: rootless `none`, since a
    /// namespace of ours could not be joined from the container's nested
    /// user namespace.
    New,
}

/// The sandboxes of one store.
pub struct Sandboxes {
    root: PathBuf,
    networks: Networks,
    plugins: Plugins,
}

impl Sandboxes {
    /// The sandboxes of the store at `root`, with plugins from `$CNI_PATH`.
    pub fn new(root: &Path) -> Sandboxes {
        Sandboxes {
            root: root.to_path_buf(),
            networks: Networks::new(root),
            plugins: Plugins::from_env(),
        }
    }

    pub fn networks(&self) -> &Networks {
        &self.networks
    }

    /// Where container `name`'s own namespace is pinned.
    pub fn netns_path(&self, name: &str) -> PathBuf {
        self.root.join("netns").join(name)
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.root.join("containers").join(name).join("network.json")
    }

    /// The bind-mounted `/etc/hosts` of the container (see
    /// `bundle::write_etc_files`).
    fn hosts_path(&self, name: &str) -> PathBuf {
        self.root
            .join("containers")
            .join(name)
            .join("bundle/.etc/hosts")
    }

    /// Container `name`'s record, if it has one.
    pub fn load(&self, name: &str) -> Result<Option<Sandbox>> {
        let p = self.record_path(name);
        match fs::read(&p) {
            Ok(d) => serde_json::from_slice(&d)
                .map(Some)
                .map_err(|e| Error::Path(p, format!("corrupt: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context(|| format!("read {}", p.display())),
        }
    }

    fn save(&self, sb: &Sandbox) -> Result<()> {
        crate::store::atomic_write(
            &self.record_path(&sb.name),
            &serde_json::to_vec_pretty(sb).expect("JSON"),
        )
    }

    fn container_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root.join("containers"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    /// Every recorded sandbox.
    pub fn all(&self) -> Vec<Sandbox> {
        self.container_names()
            .iter()
            .filter_map(|n| self.load(n).ok().flatten())
            .collect()
    }

    /// The namespace a container with `mode` will use, for its bundle
    /// (before [`Sandboxes::setup`] makes it).
    pub fn namespace_for(&self, name: &str, mode: &Mode) -> Result<Namespace> {
        match mode {
            Mode::Host => Ok(Namespace::Host),
            Mode::None if crate::rootless::active() => Ok(Namespace::New),
            Mode::None | Mode::Bridge(_) => Ok(Namespace::Join(self.netns_path(name))),
            Mode::Container(other) => match self.joined(other)? {
                None => Ok(Namespace::Host),
                Some(p) => Ok(Namespace::Join(p)),
            },
        }
    }

    /// The namespace of a running container `other` (None: the host's).
    fn joined(&self, other: &str) -> Result<Option<PathBuf>> {
        let not_running = || {
            Error::invalid(
                "--network",
                format!("container:{other}: no such running container"),
            )
        };
        let sb = self.load(other)?.ok_or_else(not_running)?;
        if sb.mode == "host" {
            return Ok(None);
        }
        match sb.netns {
            Some(p) if netns::is_pinned(&p) => Ok(Some(p)),
            _ => Err(not_running()),
        }
    }

    /// Wires the container kept as `name`, known to its peers as
    /// `container_name`, as `req` asks: pins its namespace, brings up
    /// loopback, ADDs each network (ports on the first), and rewrites the
    /// hosts files of its peers. On failure everything done is undone.
    pub fn setup(
        &self,
        name: &str,
        container_name: &str,
        container_id: &str,
        hostname: &str,
        req: &Request,
    ) -> Result<Sandbox> {
        let _lock = self.networks.lock()?;
        let mut sb = Sandbox {
            name: name.to_string(),
            container_name: container_name.to_string(),
            container_id: container_id.to_string(),
            hostname: hostname.to_string(),
            ..Default::default()
        };
        let refuse_ports = |mode: &str| -> Result<()> {
            if !req.publish.is_empty() {
                return Err(Error::invalid(
                    "--publish",
                    format!("ports cannot be published with --network {mode}"),
                ));
            }
            if !req.aliases.is_empty() {
                return Err(Error::invalid(
                    "--network-alias",
                    format!("aliases need a user-defined network, not {mode}"),
                ));
            }
            Ok(())
        };
        match &req.mode {
            Mode::Host => {
                if !req.publish.is_empty() {
                    // docker's wording: the host's ports are the container's.
                    tracing::warn!("published ports are discarded when using host network mode");
                }
                sb.mode = "host".into();
                self.save(&sb)?;
                Ok(sb)
            }
            Mode::Container(other) => {
                refuse_ports(&format!("container:{other}"))?;
                sb.mode = format!("container:{other}");
                sb.netns = self.joined(other)?;
                self.save(&sb)?;
                Ok(sb)
            }
            Mode::None => {
                refuse_ports("none")?;
                sb.mode = "none".into();
                if crate::rootless::active() {
                    // berth makes the namespace (Namespace::New).
                    self.save(&sb)?;
                    return Ok(sb);
                }
                self.wire(sb, &[], req)
            }
            Mode::Bridge(names) => {
                let nets = names
                    .iter()
                    .map(|n| self.networks.get(n))
                    .collect::<Result<Vec<_>>>()?;
                if !req.aliases.is_empty() && !nets.iter().any(Network::is_user_defined) {
                    return Err(Error::invalid(
                        "--network-alias",
                        "aliases need a user-defined network, not the default bridge",
                    ));
                }
                sb.mode = "bridge".into();
                self.wire(sb, &nets, req)
            }
        }
    }

    /// The namespace, loopback and networks of a container of its own
    /// namespace, each step recorded before it is made.
    fn wire(&self, mut sb: Sandbox, nets: &[Network], req: &Request) -> Result<Sandbox> {
        let taken: Vec<PortMapping> = self
            .all()
            .into_iter()
            .filter(|o| o.name != sb.name)
            .flat_map(|o| o.ports)
            .collect();
        sb.ports = ports::allocate(&req.publish, &taken)?;
        let path = self.netns_path(&sb.name);
        sb.netns = Some(path.clone());
        sb.owns_netns = true;
        sb.host_netns = Some(netns::current()?);
        self.save(&sb)?;
        let done = (|| -> Result<()> {
            fs::create_dir_all(path.parent().unwrap())
                .context(|| format!("create {}", path.parent().unwrap().display()))?;
            netns::create(&path)?;
            sb.loopback = true;
            self.save(&sb)?;
            let args = Args {
                container_id: &sb.container_id,
                netns: Some(&path),
                ifname: "lo",
            };
            cni::add_list(&self.plugins, &cni::loopback_list(), &args, &json!({}))?;
            for (i, net) in nets.iter().enumerate() {
                let runtime_config = if i == 0 && !sb.ports.is_empty() {
                    json!({ "portMappings": sb.ports.iter().map(PortMapping::to_cni).collect::<Vec<_>>() })
                } else {
                    json!({})
                };
                let aliases = if net.is_user_defined() {
                    req.aliases.clone()
                } else {
                    Vec::new()
                };
                self.attach(&mut sb, net, format!("eth{i}"), aliases, runtime_config)?;
            }
            Ok(())
        })();
        if let Err(e) = done {
            if let Err(undo) = self.teardown_locked(&sb.name) {
                tracing::warn!("undo the network of {}: {undo}", sb.name);
            }
            return Err(e);
        }
        let touched: BTreeSet<String> = nets.iter().map(|n| n.name.clone()).collect();
        self.refresh_hosts(&touched, &sb.name);
        Ok(sb)
    }

    /// ADDs `net` to the container as `ifname`, recording it first.
    fn attach(
        &self,
        sb: &mut Sandbox,
        net: &Network,
        ifname: String,
        aliases: Vec<String>,
        runtime_config: Value,
    ) -> Result<()> {
        sb.attachments.push(Attachment {
            network: net.name.clone(),
            network_id: net.id.clone(),
            ifname: ifname.clone(),
            aliases,
            user_defined: net.is_user_defined(),
            conflist: net.conflist.clone(),
            runtime_config: runtime_config.clone(),
            result: None,
        });
        self.save(sb)?;
        let args = Args {
            container_id: &sb.container_id,
            netns: sb.netns.as_deref(),
            ifname: &ifname,
        };
        let result = cni::add_list(&self.plugins, &net.conflist, &args, &runtime_config)?;
        CniResult::parse(&result)?;
        if let Some(a) = sb.attachments.last_mut() {
            a.result = Some(result);
        }
        self.save(sb)
    }

    /// DELs one attachment.
    fn detach(&self, sb: &Sandbox, a: &Attachment, netns: Option<&Path>) -> Result<()> {
        let args = Args {
            container_id: &sb.container_id,
            netns,
            ifname: &a.ifname,
        };
        cni::del_list(
            &self.plugins,
            &a.conflist,
            &args,
            &a.runtime_config,
            a.result.as_ref(),
        )
    }

    fn check_host_netns(&self, sb: &Sandbox) -> Result<()> {
        let here = netns::current()?;
        match sb.host_netns {
            Some(there) if there != here && (sb.loopback || !sb.attachments.is_empty()) => {
                Err(Error::Other(format!(
                    "container {}: its network was set up in network namespace {there}, this is {here}; run berth-img there to release it",
                    sb.name
                )))
            }
            _ => Ok(()),
        }
    }

    /// Releases everything container `name`'s network holds: DEL of every
    /// attachment (ports with the first), loopback, the pinned namespace,
    /// the record; then its peers' hosts files. Safe to repeat; nothing to
    /// do without a record.
    pub fn teardown(&self, name: &str) -> Result<()> {
        let _lock = self.networks.lock()?;
        let touched = self.teardown_locked(name)?;
        self.refresh_hosts(&touched, name);
        Ok(())
    }

    /// [`Sandboxes::teardown`] under the lock; returns the networks left.
    fn teardown_locked(&self, name: &str) -> Result<BTreeSet<String>> {
        let Some(mut sb) = self.load(name)? else {
            netns::remove(&self.netns_path(name))?;
            return Ok(BTreeSet::new());
        };
        self.check_host_netns(&sb)?;
        // After a reboot the file is no longer a namespace: DEL without
        // one releases the leases (the links and rules died with the boot).
        let pinned = sb
            .netns
            .clone()
            .filter(|p| sb.owns_netns && netns::is_pinned(p));
        let mut first_err = None;
        let mut left = Vec::new();
        let mut touched = BTreeSet::new();
        for a in std::mem::take(&mut sb.attachments).into_iter().rev() {
            match self.detach(&sb, &a, pinned.as_deref()) {
                Ok(()) => {
                    touched.insert(a.network.clone());
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                    left.insert(0, a);
                }
            }
        }
        if sb.loopback {
            let args = Args {
                container_id: &sb.container_id,
                netns: pinned.as_deref(),
                ifname: "lo",
            };
            if let Err(e) = cni::del_list(
                &self.plugins,
                &cni::loopback_list(),
                &args,
                &json!({}),
                None,
            ) {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            sb.attachments = left;
            self.save(&sb)?;
            return Err(e);
        }
        if sb.owns_netns {
            if let Some(p) = &sb.netns {
                netns::remove(p)?;
            }
        }
        let p = self.record_path(name);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).context(|| format!("remove {}", p.display()))
            }
            _ => {}
        }
        Ok(touched)
    }

    /// Collects what dead containers left: every container whose record
    /// still holds something and that `is_dead` says is gone (its
    /// supervisor was killed, the host crashed, a teardown failed) is torn
    /// down, and namespaces pinned for containers that no longer exist are
    /// removed. Records made in another network namespace are left to a
    /// berth-img running there.
    pub fn collect(&self, is_dead: &dyn Fn(&str) -> bool) {
        let candidates: Vec<Sandbox> = self
            .all()
            .into_iter()
            .filter(|sb| sb.holds_resources())
            .collect();
        let orphans: Vec<PathBuf> = fs::read_dir(self.root.join("netns"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !self.record_path(&e.file_name().to_string_lossy()).exists())
            .map(|e| e.path())
            .collect();
        if candidates.is_empty() && orphans.is_empty() {
            return;
        }
        let Ok(_lock) = self.networks.lock() else {
            return;
        };
        let mut touched = BTreeSet::new();
        for sb in candidates {
            if self.check_host_netns(&sb).is_err() || !is_dead(&sb.name) {
                continue;
            }
            // Read again under the lock: a teardown may have run meanwhile.
            if !self
                .load(&sb.name)
                .ok()
                .flatten()
                .is_some_and(|s| s.holds_resources())
            {
                continue;
            }
            tracing::info!("releasing the network of exited container {}", sb.name);
            match self.teardown_locked(&sb.name) {
                Ok(t) => touched.extend(t),
                Err(e) => tracing::warn!("container {}: {e}", sb.name),
            }
        }
        for p in orphans {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if !self.record_path(&name).exists() {
                if let Err(e) = netns::remove(&p) {
                    tracing::warn!("{e}");
                }
            }
        }
        self.refresh_hosts(&touched, "");
    }

    /// A renamed container: its peers resolve the new name.
    pub fn rename(&self, name: &str, container_name: &str) -> Result<()> {
        let _lock = self.networks.lock()?;
        let Some(mut sb) = self.load(name)? else {
            return Ok(());
        };
        sb.container_name = container_name.to_string();
        self.save(&sb)?;
        let touched: BTreeSet<String> = sb.attachments.iter().map(|a| a.network.clone()).collect();
        self.refresh_hosts(&touched, name);
        Ok(())
    }

    /// `network connect`: attaches a running container to `network`.
    pub fn connect(&self, name: &str, network: &str, aliases: &[String]) -> Result<()> {
        let _lock = self.networks.lock()?;
        let mut sb = self.running_bridge(name, "connect")?;
        let net = self.networks.get(network)?;
        if sb.attachments.iter().any(|a| a.network == net.name) {
            return Err(Error::invalid(
                "network connect",
                format!(
                    "container {name} is already connected to network {}",
                    net.name
                ),
            ));
        }
        if !aliases.is_empty() && !net.is_user_defined() {
            return Err(Error::invalid(
                "--alias",
                "aliases need a user-defined network, not the default bridge",
            ));
        }
        self.check_host_netns(&sb)?;
        let ifname = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !sb.attachments.iter().any(|a| &a.ifname == n))
            .expect("a free interface name");
        if let Err(e) = self.attach(&mut sb, &net, ifname, aliases.to_vec(), json!({})) {
            // Undo what the partial ADD made, then forget it.
            if let Some(a) = sb.attachments.pop() {
                let _ = self.detach(&sb, &a, sb.netns.as_deref());
            }
            self.save(&sb)?;
            return Err(e);
        }
        let touched: BTreeSet<String> = sb.attachments.iter().map(|a| a.network.clone()).collect();
        self.refresh_hosts(&touched, name);
        Ok(())
    }

    /// `network disconnect`.
    pub fn disconnect(&self, name: &str, network: &str) -> Result<()> {
        let _lock = self.networks.lock()?;
        let mut sb = self.running_bridge(name, "disconnect")?;
        let network = if network == "default" {
            DEFAULT_NETWORK
        } else {
            network
        };
        let i = sb
            .attachments
            .iter()
            .position(|a| a.network == network)
            .ok_or_else(|| {
                Error::invalid(
                    "network disconnect",
                    format!("container {name} is not connected to network {network}"),
                )
            })?;
        self.check_host_netns(&sb)?;
        let a = sb.attachments[i].clone();
        self.detach(&sb, &a, sb.netns.as_deref())?;
        sb.attachments.remove(i);
        if i == 0 {
            // The ports went with the network that carried them.
            sb.ports.clear();
        }
        self.save(&sb)?;
        let mut touched: BTreeSet<String> =
            sb.attachments.iter().map(|a| a.network.clone()).collect();
        touched.insert(a.network);
        self.refresh_hosts(&touched, name);
        Ok(())
    }

    fn running_bridge(&self, name: &str, what: &str) -> Result<Sandbox> {
        let sb = self
            .load(name)?
            .filter(|sb| sb.netns.as_deref().is_some_and(netns::is_pinned))
            .ok_or_else(|| {
                Error::invalid(
                    format!("network {what}"),
                    format!("container {name} is not running"),
                )
            })?;
        if sb.mode != "bridge" {
            return Err(Error::invalid(
                format!("network {what}"),
                format!("container {name} uses --network {}; only bridge-mode containers can be connected", sb.mode),
            ));
        }
        Ok(sb)
    }

    /// `network check`: CNI CHECK of every network of container `name`;
    /// the first failure, naming the network.
    pub fn check(&self, name: &str) -> Result<()> {
        let _lock = self.networks.lock()?;
        let sb = self
            .load(name)?
            .ok_or_else(|| Error::Other(format!("container {name} has no network to check")))?;
        self.check_host_netns(&sb)?;
        for a in &sb.attachments {
            let result = a.result.as_ref().ok_or_else(|| {
                Error::Other(format!(
                    "container {name}: network {}: ADD never finished",
                    a.network
                ))
            })?;
            let args = Args {
                container_id: &sb.container_id,
                netns: sb.netns.as_deref(),
                ifname: &a.ifname,
            };
            cni::check_list(&self.plugins, &a.conflist, &args, &a.runtime_config, result).map_err(
                |e| Error::Other(format!("container {name}: network {}: {e}", a.network)),
            )?;
        }
        Ok(())
    }

    /// The containers attached to `network`, with their attachment.
    pub fn attached_to(&self, network: &str) -> Vec<(Sandbox, Attachment)> {
        self.all()
            .into_iter()
            .filter_map(|sb| {
                let a = sb
                    .attachments
                    .iter()
                    .find(|a| a.network == network)?
                    .clone();
                Some((sb, a))
            })
            .collect()
    }

    /// `network rm`: refused while containers are attached.
    pub fn remove_network(&self, network: &str) -> Result<()> {
        let _lock = self.networks.lock()?;
        self.networks.get(network)?;
        let users: Vec<String> = self
            .attached_to(network)
            .into_iter()
            .map(|(sb, _)| sb.name)
            .collect();
        if !users.is_empty() {
            return Err(Error::invalid(
                "network rm",
                format!(
                    "network {network} has active endpoints: {}",
                    users.join(", ")
                ),
            ));
        }
        self.networks.remove(network)
    }

    /// Rewrites the hosts file of container `name` and of every container
    /// on one of `networks`. Errors are logged: a hosts file is a
    /// convenience, not worth failing a teardown for.
    fn refresh_hosts(&self, networks: &BTreeSet<String>, name: &str) {
        let all = self.all();
        for sb in &all {
            let on = sb.name == name
                || sb
                    .attachments
                    .iter()
                    .any(|a| a.user_defined && networks.contains(&a.network));
            if on {
                if let Err(e) = self.write_hosts_of(sb, &all) {
                    tracing::warn!("{e}");
                }
            }
        }
    }

    /// Writes container `name`'s `/etc/hosts` (once its bundle exists).
    pub fn write_hosts(&self, name: &str) -> Result<()> {
        let _lock = self.networks.lock()?;
        let all = self.all();
        match all.iter().find(|s| s.name == name) {
            Some(sb) => self.write_hosts_of(sb, &all),
            None => Ok(()),
        }
    }

    fn write_hosts_of(&self, sb: &Sandbox, all: &[Sandbox]) -> Result<()> {
        let path = self.hosts_path(&sb.name);
        if !path.exists() {
            return Ok(());
        }
        let content = if let Some(other) = sb.mode.strip_prefix("container:") {
            // The same network, the same names as the container it joined.
            match fs::read_to_string(self.hosts_path(other)) {
                Ok(c) => c,
                Err(_) => return Ok(()),
            }
        } else if sb.mode == "bridge" {
            render_hosts(sb, all)
        } else {
            return Ok(());
        };
        if fs::read_to_string(&path).is_ok_and(|c| c == content) {
            return Ok(());
        }
        // In place, not by rename: the file is bind-mounted into the
        // running container, which keeps seeing the inode it was given.
        // Written over, then cut to length (not truncated first): a reader
        // racing the update may see old and new lines mixed for a moment,
        // never an empty file.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .context(|| format!("open {}", path.display()))?;
        f.write_all(content.as_bytes())
            .and_then(|()| f.set_len(content.len() as u64))
            .context(|| format!("write {}", path.display()))
    }
}

/// The hosts file of `sb`, given every sandbox: its own addresses with
/// its hostname (and on user networks its name and aliases), then each
/// container it shares a user network with.
pub fn render_hosts(sb: &Sandbox, all: &[Sandbox]) -> String {
    let mut own = Vec::new();
    for (i, a) in sb.attachments.iter().enumerate() {
        let Some(addr) = a.address() else { continue };
        let mut names = Vec::new();
        if i == 0 {
            names.push(sb.hostname.clone());
        }
        if a.user_defined {
            names.push(sb.display_name().to_string());
            names.extend(a.aliases.iter().cloned());
        }
        own.push(Entry { ip: addr.ip, names });
    }
    let mut peers = Vec::new();
    for a in sb.attachments.iter().filter(|a| a.user_defined) {
        for other in all.iter().filter(|o| o.name != sb.name) {
            for oa in other
                .attachments
                .iter()
                .filter(|oa| oa.network == a.network)
            {
                if let Some(addr) = oa.address() {
                    let mut names = vec![other.display_name().to_string()];
                    names.extend(oa.aliases.iter().cloned());
                    peers.push(Entry { ip: addr.ip, names });
                }
            }
        }
    }
    hosts::render(&own, &peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn modes() {
        assert_eq!(Mode::parse(&[]).unwrap(), Mode::Bridge(s(&["bridge"])));
        assert_eq!(
            Mode::parse(&s(&["default"])).unwrap(),
            Mode::Bridge(s(&["bridge"]))
        );
        assert_eq!(Mode::parse(&s(&["host"])).unwrap(), Mode::Host);
        assert_eq!(Mode::parse(&s(&["none"])).unwrap(), Mode::None);
        assert_eq!(
            Mode::parse(&s(&["container:db"])).unwrap(),
            Mode::Container("db".into())
        );
        assert_eq!(
            Mode::parse(&s(&["front", "back"])).unwrap(),
            Mode::Bridge(s(&["front", "back"]))
        );
        for (v, want) in [
            (s(&["host", "front"]), "cannot be combined"),
            (s(&["container:"]), "want container:NAME"),
            (s(&["a b"]), "not a network name"),
            (s(&["front", "front"]), "given twice"),
        ] {
            let e = Mode::parse(&v).unwrap_err().to_string();
            assert!(
                e.starts_with("invalid --network: ") && e.contains(want),
                "{e}"
            );
        }
    }

    fn attached(name: &str, net: &str, ip: &str, user: bool, aliases: &[&str]) -> Sandbox {
        Sandbox {
            name: name.into(),
            hostname: format!("{name}-host"),
            mode: "bridge".into(),
            attachments: vec![Attachment {
                network: net.into(),
                network_id: String::new(),
                ifname: "eth0".into(),
                aliases: s(aliases),
                user_defined: user,
                conflist: Value::Null,
                runtime_config: json!({}),
                result: Some(json!({
                    "cniVersion": "1.0.0",
                    "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/x"}],
                    "ips": [{"interface": 0, "address": format!("{ip}/24")}]
                })),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn hosts_of_user_networks_name_the_peers() {
        let web = attached("web", "front", "10.86.0.2", true, &["www"]);
        let db = attached("db", "front", "10.86.0.3", true, &["database"]);
        let other = attached("lone", "bridge", "10.87.0.2", false, &[]);
        let all = [web.clone(), db, other.clone()];
        let h = render_hosts(&web, &all);
        assert!(h.contains("10.86.0.2\tweb-host web www\n"), "{h}");
        assert!(h.contains("10.86.0.3\tdb database\n"), "{h}");
        assert!(!h.contains("lone"), "{h}");
        // The default bridge resolves no one but the container itself.
        let h = render_hosts(&other, &all);
        assert!(h.ends_with("10.87.0.2\tlone-host\n"), "{h}");
    }
}
