//! `network create|ls|inspect|rm|prune|connect|disconnect|check`: docker's
//! network commands over `berth_img::network` (CNI lists in the store).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;

use anyhow::{bail, Result};
use berth_img::containers::Containers;
use berth_img::network::subnet::Ipv4Net;
use berth_img::network::{CreateOptions, Network, DEFAULT_NETWORK};
use berth_img::output;
use berth_img::store::{Access, Store};
use serde_json::{json, Value};

use super::Global;

/// The subcommands of `network`.
#[derive(clap::Subcommand)]
pub enum NetworkCommand {
    /// Create a bridge network.
    Create(CreateArgs),
    /// List networks.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Print networks as JSON, with their containers.
    Inspect(NamesArgs),
    /// Remove networks no container uses.
    #[command(visible_alias = "remove")]
    Rm(NamesArgs),
    /// Remove every user-defined network no container uses.
    Prune,
    /// Attach a running container to a network.
    Connect(ConnectArgs),
    /// Detach a running container from a network.
    Disconnect(DisconnectArgs),
    /// Ask the CNI plugins whether a container's networks are as they set
    /// them up (CNI CHECK).
    Check(CheckArgs),
}

/// The flags of `network create`.
#[derive(clap::Args)]
pub struct CreateArgs {
    /// Only bridge.
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    /// The subnet (CIDR); a free one of 10.86.0.0/16 when not given.
    #[arg(long)]
    subnet: Option<String>,
    /// The gateway: the subnet's first address when not given.
    #[arg(long)]
    gateway: Option<String>,
    /// KEY=VALUE.
    #[arg(long)]
    label: Vec<String>,
    name: String,
}

/// The flags of `network ls`.
#[derive(clap::Args)]
pub struct LsArgs {
    /// Only the IDs.
    #[arg(short, long)]
    quiet: bool,
}

/// One or more network names.
#[derive(clap::Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    names: Vec<String>,
}

/// The flags of `network connect`.
#[derive(clap::Args)]
pub struct ConnectArgs {
    /// Another name for the container on this network.
    #[arg(long)]
    alias: Vec<String>,
    network: String,
    container: String,
}

/// The flags of `network disconnect`.
#[derive(clap::Args)]
pub struct DisconnectArgs {
    network: String,
    container: String,
}

/// The flags of `network check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `KEY=VALUE` labels.
pub fn parse_labels(flag: &str, values: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in values {
        match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            // docker takes a bare key as an empty label.
            None if !l.is_empty() => {
                out.insert(l.clone(), String::new());
            }
            _ => bail!("invalid {flag} {l:?}: want KEY=VALUE"),
        }
    }
    Ok(out)
}

/// The pre-defined networks that are not bridges.
const HOST_NONE: [(&str, &str); 2] = [("host", "host"), ("none", "null")];

fn fixed_id(name: &str) -> String {
    berth_img::digest::Digest::sha256_of(format!("berth-img network {name}").as_bytes())
        .hex()
        .to_string()
}

/// `network`.
pub fn network(g: &Global, cmd: NetworkCommand) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    let store = Store::open(&g.root, Access::Shared)?;
    // Collects what dead containers left before anything is decided.
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    let sandboxes = cs.sandboxes();
    let nets = sandboxes.networks();
    match cmd {
        NetworkCommand::Create(a) => {
            if a.driver != "bridge" {
                bail!("invalid --driver {:?}: only bridge", a.driver);
            }
            let opts = CreateOptions {
                subnet: a.subnet.as_deref().map(str::parse::<Ipv4Net>).transpose()?,
                gateway: a
                    .gateway
                    .as_deref()
                    .map(|g| {
                        g.parse::<Ipv4Addr>().map_err(|_| {
                            anyhow::anyhow!("invalid --gateway {g:?}: want an IPv4 address")
                        })
                    })
                    .transpose()?,
                labels: parse_labels("--label", &a.label)?,
            };
            let _lock = nets.lock()?;
            let n = nets.create(&a.name, &opts)?;
            writeln!(out, "{}", n.id)?;
        }
        NetworkCommand::Ls(a) => {
            let list = {
                let _lock = nets.lock()?;
                nets.list()?
            };
            let mut rows: Vec<Vec<String>> = list
                .iter()
                .map(|n| {
                    vec![
                        n.id[..12].to_string(),
                        n.name.clone(),
                        "bridge".into(),
                        "local".into(),
                    ]
                })
                .collect();
            for (name, driver) in HOST_NONE {
                rows.push(vec![
                    fixed_id(name)[..12].to_string(),
                    name.into(),
                    driver.into(),
                    "local".into(),
                ]);
            }
            rows.sort_by(|a, b| a[1].cmp(&b[1]));
            if a.quiet {
                for r in rows {
                    writeln!(out, "{}", r[0])?;
                }
            } else if g.json {
                let list: Vec<Value> = rows
                    .iter()
                    .map(|r| json!({"ID": r[0], "Name": r[1], "Driver": r[2], "Scope": r[3]}))
                    .collect();
                output::write_json(out, &list)?;
            } else {
                output::write_table(
                    out,
                    &[
                        ("NETWORK ID", 14),
                        ("NAME", 20),
                        ("DRIVER", 10),
                        ("SCOPE", 0),
                    ],
                    &rows,
                )?;
            }
        }
        NetworkCommand::Inspect(a) => {
            let mut list = Vec::new();
            for name in &a.names {
                if let Some((_, driver)) = HOST_NONE.iter().find(|(n, _)| n == name) {
                    list.push(json!({
                        "Name": name, "Id": fixed_id(name), "Scope": "local", "Driver": driver,
                        "IPAM": {"Driver": "default", "Options": null, "Config": []},
                        "Containers": {}, "Options": {}, "Labels": {},
                    }));
                    continue;
                }
                let n = {
                    let _lock = nets.lock()?;
                    nets.get(name)?
                };
                list.push(inspect_json(&n, &sandboxes));
            }
            output::write_json(out, &list)?;
        }
        NetworkCommand::Rm(a) => {
            for name in &a.names {
                sandboxes.remove_network(name)?;
                writeln!(out, "{name}")?;
            }
        }
        NetworkCommand::Prune => {
            let names: Vec<String> = {
                let _lock = nets.lock()?;
                nets.list()?.into_iter().map(|n| n.name).collect()
            };
            let mut removed = Vec::new();
            for name in names.iter().filter(|n| *n != DEFAULT_NETWORK) {
                if sandboxes.attached_to(name).is_empty() && sandboxes.remove_network(name).is_ok()
                {
                    removed.push(name.clone());
                }
            }
            if !removed.is_empty() {
                writeln!(out, "Deleted Networks:")?;
                for n in removed {
                    writeln!(out, "{n}")?;
                }
            }
        }
        NetworkCommand::Connect(a) => {
            for al in &a.alias {
                if !berth_img::network::valid_name(al) {
                    bail!("invalid --alias {al:?}: want [a-zA-Z0-9][a-zA-Z0-9_.-]*");
                }
            }
            cs.connect(&a.container, &a.network, &a.alias)?;
        }
        NetworkCommand::Disconnect(a) => {
            cs.disconnect(&a.container, &a.network)?;
        }
        NetworkCommand::Check(a) => {
            for c in &a.containers {
                let key = cs.get(c)?.key;
                sandboxes
                    .check(&key)
                    .map_err(|e| anyhow::anyhow!("{}", e.to_string().replace(&key, c)))?;
                writeln!(out, "{c}: ok")?;
            }
        }
    }
    Ok(())
}

/// docker's `network inspect` shape.
fn inspect_json(n: &Network, sandboxes: &berth_img::network::sandbox::Sandboxes) -> Value {
    let mut containers = serde_json::Map::new();
    for (sb, a) in sandboxes.attached_to(&n.name) {
        let addr = a.address();
        containers.insert(
            sb.container_id.clone(),
            json!({
                "Name": sb.display_name(),
                "EndpointID": "",
                "MacAddress": addr.as_ref().map(|x| x.mac.clone()).unwrap_or_default(),
                "IPv4Address": addr.as_ref().map(|x| format!("{}/{}", x.ip, x.prefix_len)).unwrap_or_default(),
                "IPv6Address": "",
            }),
        );
    }
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": [{"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()}],
        },
        "Internal": false,
        "Attachable": false,
        "Containers": containers,
        "Options": {"com.docker.network.bridge.name": n.bridge},
        "Labels": n.labels,
        "ConfigList": n.conflist,
    })
}
