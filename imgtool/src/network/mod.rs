//! Container networks through the standard CNI plugins (Debian's
//! containernetworking-plugins: `bridge`, `host-local`, `portmap`,
//! `firewall`, `tuning`, `loopback`), the way nerdctl's `pkg/netutil` and
//! containerd's go-cni drive them: berth-img writes a network as a CNI
//! configuration list, execs each plugin with the JSON on stdin, records
//! the result, and replays DEL from that record on teardown. No veth,
//! address or iptables rule is made by hand.
//!
//! ```text
//! ROOT/networks/NAME.conflist       a network: bridge → portmap → firewall → tuning
//! ROOT/networks/lock                held while networks or attachments change
//! ROOT/networks/ipam/               host-local's leases (its dataDir)
//! ROOT/netns/NAME                   container NAME's network namespace, pinned
//! ROOT/containers/NAME/network.json what CNI was asked and answered (sandbox)
//! ```
//!
//! Choices, and why:
//! - **The network namespace is a file berth-img pins** ([`netns`]), made
//!   before the container. CNI ADD runs in `run` before the container
//!   starts, so a failure is `run`'s error and nothing starts unwired;
//!   `berth` joins the namespace by path (`linux.namespaces[].path`), and
//!   `--net container:NAME` and `network connect` join or wire the same
//!   file later. It also survives a killed supervisor, so DEL can still
//!   reach the container's end of the veth.
//! - **Teardown**: the bundle carries a poststop hook that runs
//!   `berth-img internal poststop`, so the network is released the moment
//!   `berth delete` runs — the shim's supervisor calls it when the
//!   container exits, `rm` and foreground `run` call it too. What a
//!   killed supervisor or a crashed host leaves (no delete ever ran) is
//!   collected by the next container, network or volume command
//!   ([`sandbox::Sandboxes::collect`]): a container whose sandbox record
//!   remains while its process is gone gets its DEL then. Every DEL is
//!   safe to repeat, and after a reboot (namespace file no longer pinned)
//!   DEL runs without a namespace, which releases the IPAM lease.
//! - **Names on user networks resolve through `/etc/hosts`**, rewritten
//!   (in place: it is bind-mounted) for every container of a network when
//!   one joins or leaves it, as nerdctl's hosts store does. A resolver
//!   would need a process serving each network for as long as any
//!   container runs — a daemon, which berth-img does not have; the hosts
//!   file needs nothing running and every libc reads it. The default
//!   `bridge` lists only the container itself, as docker's does.
//! - **Where the rules live**: CNI runs in berth-img's own network
//!   namespace; the sandbox records which one, and teardown refuses to
//!   run DEL from another (it would miss the rules and poke the wrong
//!   tables).

pub mod cni;
pub mod hosts;
pub mod netns;
pub mod ports;
pub mod sandbox;
pub mod subnet;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde_json::{json, Value};

use crate::error::{Context, Error, Result};
use subnet::Ipv4Net;

/// The network containers join unless told otherwise, as docker's.
pub const DEFAULT_NETWORK: &str = "bridge";
/// Its Linux bridge.
pub const DEFAULT_BRIDGE: &str = "berth0";
/// Its subnet, when no route of the host uses it (podman's default is
/// 10.88.0.0/16, docker's 172.17.0.0/16).
pub const DEFAULT_SUBNET: &str = "10.87.0.0/16";

/// A network berth-img made: a CNI configuration list plus docker's
/// bookkeeping (ID, creation time, labels) in `berth*` keys of the list,
/// which CNI ignores (nerdctl keeps `nerdctlID` the same way).
#[derive(Clone, Debug)]
pub struct Network {
    pub name: String,
    pub id: String,
    pub created: String,
    pub labels: BTreeMap<String, String>,
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The list as written.
    pub conflist: Value,
}

/// What `network create` may set.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub labels: BTreeMap<String, String>,
}

impl Network {
    /// The configuration list of this bridge network: the bridge plugin
    /// (the gateway on the bridge, outbound NAT, hairpin so a container
    /// reaches itself through a published port) with host-local addresses
    /// kept in `ipam_dir`, then portmap (`-p`), firewall (accept forwarding
    /// for the container even where the FORWARD policy drops, as on a host
    /// with docker) and tuning, as nerdctl's default list.
    pub fn render_conflist(&self, ipam_dir: &Path) -> Value {
        json!({
            "cniVersion": cni::VERSION,
            "name": self.name,
            "berthID": self.id,
            "berthCreated": self.created,
            "berthLabels": self.labels,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": self.subnet.to_string(), "gateway": self.gateway.to_string() }]],
                        "routes": [{ "dst": "0.0.0.0/0" }],
                        "dataDir": ipam_dir.to_string_lossy(),
                    }
                },
                { "type": "portmap", "capabilities": { "portMappings": true } },
                { "type": "firewall" },
                { "type": "tuning" }
            ]
        })
    }

    /// Reads back what [`Network::render_conflist`] wrote.
    pub fn from_conflist(v: Value) -> Result<Network> {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        let bad =
            |what: &str| Error::invalid("network", format!("{name:?}: conflist has no {what}"));
        let bridge = &v["plugins"][0];
        let range = &bridge["ipam"]["ranges"][0][0];
        let subnet: Ipv4Net = range["subnet"]
            .as_str()
            .ok_or_else(|| bad("subnet"))?
            .parse()?;
        let gateway = range["gateway"]
            .as_str()
            .and_then(|g| g.parse().ok())
            .unwrap_or_else(|| subnet.first_host());
        Ok(Network {
            id: v["berthID"].as_str().unwrap_or_default().to_string(),
            created: v["berthCreated"].as_str().unwrap_or_default().to_string(),
            labels: serde_json::from_value(v["berthLabels"].clone()).unwrap_or_default(),
            bridge: bridge["bridge"]
                .as_str()
                .ok_or_else(|| bad("bridge"))?
                .to_string(),
            subnet,
            gateway,
            name,
            conflist: v,
        })
    }

    /// Whether names resolve on it (every network but the default).
    pub fn is_user_defined(&self) -> bool {
        self.name != DEFAULT_NETWORK
    }
}

/// docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// The networks of one store.
pub struct Networks {
    dir: PathBuf,
}

impl Networks {
    /// The networks under the store root `root`.
    pub fn new(root: &Path) -> Networks {
        Networks {
            dir: root.join("networks"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.conflist"))
    }

    /// host-local's `dataDir`: leases live in the store, not in
    /// /var/lib/cni, so each store (and each test) has its own.
    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.join("ipam")
    }

    /// The lock every change of networks and attachments takes.
    pub fn lock(&self) -> Result<Flock<File>> {
        fs::create_dir_all(&self.dir).context(|| format!("create {}", self.dir.display()))?;
        crate::store::lock_file(&self.dir.join("lock"), FlockArg::LockExclusive)
    }

    /// The network `name`; the default one is made on first use.
    /// The caller holds [`Networks::lock`].
    pub fn get(&self, name: &str) -> Result<Network> {
        if name == DEFAULT_NETWORK {
            return self.ensure_default();
        }
        if !valid_name(name) {
            return Err(Error::NotFound(format!("network {name}")));
        }
        let p = self.path(name);
        let data = match fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(format!("network {name}")))
            }
            Err(e) => return Err(e).context(|| format!("read {}", p.display())),
        };
        let v: Value = serde_json::from_slice(&data)
            .map_err(|e| Error::Path(p.clone(), format!("corrupt: {e}")))?;
        Network::from_conflist(v)
    }

    /// Every network, the default first. The caller holds the lock.
    pub fn list(&self) -> Result<Vec<Network>> {
        let mut out = vec![self.ensure_default()?];
        let mut names: Vec<String> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".conflist")
                    .map(str::to_string)
            })
            .filter(|n| n != DEFAULT_NETWORK)
            .collect();
        names.sort();
        for n in names {
            out.push(self.get(&n)?);
        }
        Ok(out)
    }

    fn ensure_default(&self) -> Result<Network> {
        let p = self.path(DEFAULT_NETWORK);
        if p.exists() {
            let v: Value =
                serde_json::from_slice(&fs::read(&p).context(|| format!("read {}", p.display()))?)
                    .map_err(|e| Error::Path(p.clone(), format!("corrupt: {e}")))?;
            return Network::from_conflist(v);
        }
        let preferred: Ipv4Net = DEFAULT_SUBNET.parse()?;
        self.write_new(
            DEFAULT_NETWORK,
            DEFAULT_BRIDGE,
            &CreateOptions {
                subnet: Some(preferred),
                ..Default::default()
            },
            true,
        )
    }

    fn used_subnets(&self) -> Vec<Ipv4Net> {
        let mut used = subnet::host_routes();
        for e in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let Some(n) = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".conflist"))
                .map(str::to_string)
            else {
                continue;
            };
            if let Ok(net) = self.get_file(&n) {
                used.push(net.subnet);
            }
        }
        used
    }

    fn get_file(&self, name: &str) -> Result<Network> {
        let p = self.path(name);
        let v: Value =
            serde_json::from_slice(&fs::read(&p).context(|| format!("read {}", p.display()))?)
                .map_err(|e| Error::Path(p.clone(), format!("corrupt: {e}")))?;
        Network::from_conflist(v)
    }

    /// Writes a new network's list. `flexible`: the subnet asked for is a
    /// preference (the default network's), not a demand.
    fn write_new(
        &self,
        name: &str,
        bridge: &str,
        o: &CreateOptions,
        flexible: bool,
    ) -> Result<Network> {
        let used = self.used_subnets();
        let subnet = match o.subnet {
            Some(s) if !flexible => {
                if let Some(u) = used.iter().find(|u| u.overlaps(&s)) {
                    return Err(Error::invalid(
                        "--subnet",
                        format!(
                            "{s} overlaps {u}, in use by another network or a route of the host"
                        ),
                    ));
                }
                s
            }
            preferred => subnet::choose(preferred, &used)?,
        };
        let gateway = match o.gateway {
            Some(g) if !subnet.contains(g) || g == subnet.network() => {
                return Err(Error::invalid(
                    "--gateway",
                    format!("{g} is not a host address of {subnet}"),
                ))
            }
            Some(g) => g,
            None => subnet.first_host(),
        };
        let id = crate::digest::Digest::sha256_of(crate::store::unique_name(name).as_bytes())
            .hex()
            .to_string();
        let bridge = if bridge.is_empty() {
            // docker's `br-` + 12 hex: Linux allows 15 characters.
            format!("br-{}", &id[..12])
        } else {
            bridge.to_string()
        };
        let mut net = Network {
            name: name.to_string(),
            id,
            created: crate::pull::now_rfc3339(),
            labels: o.labels.clone(),
            bridge,
            subnet,
            gateway,
            conflist: Value::Null,
        };
        net.conflist = net.render_conflist(&self.ipam_dir());
        crate::store::atomic_write(
            &self.path(name),
            &serde_json::to_vec_pretty(&net.conflist).expect("JSON"),
        )?;
        Ok(net)
    }

    /// `network create`. The caller holds the lock.
    pub fn create(&self, name: &str, o: &CreateOptions) -> Result<Network> {
        crate::rootless::check_network_create(name)?;
        if matches!(name, "bridge" | "host" | "none" | "default") {
            return Err(Error::invalid(
                "network",
                format!("{name} is a pre-defined network and cannot be created"),
            ));
        }
        if !valid_name(name) {
            return Err(Error::invalid(
                "network",
                format!("{name:?}: want [a-zA-Z0-9][a-zA-Z0-9_.-]*"),
            ));
        }
        if self.path(name).exists() {
            return Err(Error::invalid(
                "network",
                format!("network with name {name} already exists"),
            ));
        }
        fs::create_dir_all(&self.dir).context(|| format!("create {}", self.dir.display()))?;
        self.write_new(name, "", o, false)
    }

    /// Removes a network's list, its leases directory and its bridge (in
    /// this network namespace, if it was made here). The caller holds the
    /// lock and has checked that no container is attached.
    pub fn remove(&self, name: &str) -> Result<()> {
        if matches!(name, "bridge" | "host" | "none") {
            return Err(Error::invalid(
                "network",
                format!("{name} is a pre-defined network and cannot be removed"),
            ));
        }
        let net = self.get(name)?;
        // The bridge plugin makes the bridge and never deletes it; podman
        // deletes it with the network, as docker does.
        let _ = std::process::Command::new("ip")
            .args(["link", "delete", "dev", &net.bridge, "type", "bridge"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let leases = self.ipam_dir().join(name);
        if leases.exists() {
            fs::remove_dir_all(&leases).context(|| format!("remove {}", leases.display()))?;
        }
        let p = self.path(name);
        fs::remove_file(&p).context(|| format!("remove {}", p.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_round_trips() {
        let mut labels = BTreeMap::new();
        labels.insert("app".to_string(), "web".to_string());
        let subnet: Ipv4Net = "10.86.4.0/24".parse().unwrap();
        let net = Network {
            name: "front".into(),
            id: "abc".into(),
            created: "2024-01-01T00:00:00Z".into(),
            labels: labels.clone(),
            bridge: "br-abc".into(),
            subnet,
            gateway: subnet.first_host(),
            conflist: Value::Null,
        };
        let v = net.render_conflist(Path::new("/var/lib/berth/networks/ipam"));
        assert_eq!(v["cniVersion"], cni::VERSION);
        let types: Vec<&str> = v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["bridge", "portmap", "firewall", "tuning"]);
        assert_eq!(v["plugins"][0]["ipMasq"], true);
        assert_eq!(
            v["plugins"][0]["ipam"]["dataDir"],
            "/var/lib/berth/networks/ipam"
        );
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["gateway"],
            "10.86.4.1"
        );
        assert_eq!(v["plugins"][1]["capabilities"]["portMappings"], true);
        let n = Network::from_conflist(v).unwrap();
        assert_eq!(
            (n.name.as_str(), n.id.as_str(), n.bridge.as_str()),
            ("front", "abc", "br-abc")
        );
        assert_eq!(n.subnet, subnet);
        assert_eq!(n.labels, labels);
        assert!(n.is_user_defined());
        assert!(Network::from_conflist(json!({"name": "x", "plugins": []})).is_err());
    }
}
