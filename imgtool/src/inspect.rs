//! docker's JSON views of a container: `inspect` (the fields scripts read
//! — `State`, `Config`, `HostConfig.RestartPolicy`/`PortBindings`,
//! `NetworkSettings`, `Mounts` — under docker's keys), and the row `ps`
//! formats (`{{.ID}}`, `{{.Names}}`, `{{.Status}}`, ... and `{{json .}}`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::clock;
use crate::containers::{familiar, Container, Containers, Status};
use crate::network::ports::{self, PortMapping};
use crate::network::sandbox::Sandbox;
use crate::output::ellipsize;
use crate::state::State;

/// docker's `NetworkSettings` of a container: `Ports`, the first
/// network's `IPAddress`, and `Networks`.
pub fn network_settings(c: &Container, sb: Option<&Sandbox>) -> Value {
    let empty = Vec::new();
    let attachments = sb.map_or(&empty, |s| &s.attachments);
    let mut networks = serde_json::Map::new();
    for a in attachments {
        let addr = a.address();
        networks.insert(
            a.network.clone(),
            json!({
                "Aliases": a.aliases,
                "NetworkID": a.network_id,
                "EndpointID": "",
                "Gateway": addr.as_ref().and_then(|x| x.gateway).map(|g| g.to_string()).unwrap_or_default(),
                "IPAddress": addr.as_ref().map(|x| x.ip.to_string()).unwrap_or_default(),
                "IPPrefixLen": addr.as_ref().map_or(0, |x| x.prefix_len),
                "MacAddress": addr.as_ref().map(|x| x.mac.clone()).unwrap_or_default(),
            }),
        );
    }
    let first = attachments.first().and_then(|a| a.address());
    json!({
        "Ports": ports::docker_ports(sb.map_or(&[][..], |s| &s.ports), &c.exposed_ports),
        "IPAddress": first.as_ref().map(|x| x.ip.to_string()).unwrap_or_default(),
        "IPPrefixLen": first.as_ref().map_or(0, |x| x.prefix_len),
        "Gateway": first.as_ref().and_then(|x| x.gateway).map(|g| g.to_string()).unwrap_or_default(),
        "MacAddress": first.as_ref().map(|x| x.mac.clone()).unwrap_or_default(),
        "SandboxKey": sb.and_then(|s| s.netns.clone()).unwrap_or_default(),
        "Networks": networks,
    })
}

/// docker's `State`.
pub fn state_json(status: &Status, s: &State) -> Value {
    let mut v = json!({
        "Status": status.word(),
        "Running": status.is_running(),
        "Paused": *status == Status::Paused,
        "Restarting": *status == Status::Restarting,
        "OOMKilled": false,
        "Dead": false,
        "Pid": if status.is_running() { s.init.map_or(0, |p| p.pid) } else { 0 },
        "ExitCode": s.exit_code,
        "Error": s.error,
        "StartedAt": clock::rfc3339_nano(s.started_at),
        "FinishedAt": clock::rfc3339_nano(s.finished_at),
    });
    if let Some(h) = &s.health {
        v["Health"] = serde_json::to_value(h).expect("JSON");
    }
    v
}

/// `inspect` of a container, as `docker inspect` shows one.
pub fn container(cs: &Containers, c: &Container) -> Value {
    let (status, state) = cs.status_and_state(c);
    let sb = cs.sandboxes().load(&c.key).ok().flatten();
    let etc = cs.bundle_dir(&c.key).join(".etc");
    let mut port_bindings = serde_json::Map::new();
    for p in &c.network.publish {
        let (lo, hi) = p.host_ports.unwrap_or((0, 0));
        let host_port = match (lo, hi) {
            (0, _) => String::new(),
            (a, b) if a == b => a.to_string(),
            (a, b) => format!("{a}-{b}"),
        };
        let key = format!("{}/{}", p.container_port, p.protocol);
        let entry = json!({
            "HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
            "HostPort": host_port,
        });
        match port_bindings.get_mut(&key) {
            Some(Value::Array(a)) => a.push(entry),
            _ => {
                port_bindings.insert(key, json!([entry]));
            }
        }
    }
    let exposed: BTreeMap<String, Value> = c
        .exposed_ports
        .iter()
        .map(|p| (p.clone(), json!({})))
        .collect();
    let mut config = json!({
        "Hostname": c.config.hostname,
        "Domainname": "",
        "User": c.config.user,
        "AttachStdin": false,
        "AttachStdout": !c.detached,
        "AttachStderr": !c.detached,
        "ExposedPorts": exposed,
        "Tty": c.config.tty,
        "OpenStdin": false,
        "StdinOnce": false,
        "Env": c.config.env,
        "Cmd": c.config.cmd,
        "Image": familiar(&c.image),
        "Volumes": null,
        "WorkingDir": c.config.working_dir,
        "Entrypoint": if c.config.entrypoint.is_empty() { Value::Null } else { json!(c.config.entrypoint) },
        "OnBuild": null,
        "Labels": c.config.labels,
    });
    if !c.config.stop_signal.is_empty() {
        config["StopSignal"] = json!(c.config.stop_signal);
    }
    if let Some(h) = &c.healthcheck {
        config["Healthcheck"] = serde_json::to_value(h).expect("JSON");
    }
    let (driver, graph_data) = graph_driver(&cs.bundle_dir(&c.key));
    json!({
        "Id": c.id,
        "Created": c.created,
        "Path": c.command.first().cloned().unwrap_or_default(),
        "Args": c.command.get(1..).unwrap_or_default(),
        "State": state_json(&status, &state),
        "Image": c.image_id,
        "ResolvConfPath": etc.join("resolv.conf"),
        "HostnamePath": etc.join("hostname"),
        "HostsPath": etc.join("hosts"),
        "LogPath": if c.detached { json!(cs.log_path(&c.key)) } else { json!("") },
        "Name": format!("/{}", c.name),
        "RestartCount": state.restart_count,
        "Driver": driver,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "HostConfig": {
            "NetworkMode": c.network_mode,
            "PortBindings": port_bindings,
            "RestartPolicy": c.restart_policy,
            "AutoRemove": c.auto_remove,
        },
        "GraphDriver": {
            "Name": driver,
            "Data": graph_data,
        },
        "Mounts": c.mounts,
        "Config": config,
        "NetworkSettings": network_settings(c, sb.as_ref()),
    })
}

/// docker's `GraphDriver` for a container's bundle, as it was mounted:
/// `overlay` (with podman's `MountProgram` when fuse-overlayfs stacks it)
/// or, for a rootfs copied out of the layers, docker's name for copies,
/// `vfs`.
fn graph_driver(bundle: &std::path::Path) -> (&'static str, Value) {
    // A bundle without metadata yet (being made) shows as overlay.
    let rootfs = crate::bundle::metadata(bundle)
        .map(|m| m.rootfs)
        .unwrap_or_default();
    let merged = bundle.join("rootfs");
    match rootfs.as_str() {
        "copy" => ("vfs", json!({ "MergedDir": merged })),
        kind => {
            let mut data = json!({
                "UpperDir": bundle.join(".overlay/upper"),
                "WorkDir": bundle.join(".overlay/work"),
                "MergedDir": merged,
            });
            if kind == crate::overlay::Kind::Fuse.name() {
                data["MountProgram"] = json!(crate::overlay::Kind::Fuse.name());
            }
            ("overlay", data)
        }
    }
}

/// docker's PORTS column: published ports, then EXPOSEd ones that are
/// not, e.g. `0.0.0.0:8080->80/tcp, 443/tcp`.
pub fn ports_column(published: &[PortMapping], exposed: &[String]) -> String {
    let mut out: Vec<String> = published
        .iter()
        .map(PortMapping::to_docker_string)
        .collect();
    for e in exposed {
        let key = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        let taken = published
            .iter()
            .any(|p| format!("{}/{}", p.container_port, p.protocol) == key);
        if !taken {
            out.push(key);
        }
    }
    out.join(", ")
}

/// The row `ps --format` sees, under docker's names.
pub fn ps_row(
    cs: &Containers,
    c: &Container,
    status: &Status,
    state: &State,
    no_trunc: bool,
) -> Value {
    let sb = cs.sandboxes().load(&c.key).ok().flatten();
    let published = sb.as_ref().map(|s| s.ports.clone()).unwrap_or_default();
    let command = c.command.join(" ");
    let command = if no_trunc {
        command
    } else {
        // docker cuts at 20 characters, with an ellipsis.
        let chars: Vec<char> = command.chars().collect();
        if chars.len() > 20 {
            chars[..19].iter().collect::<String>() + "…"
        } else {
            command
        }
    };
    let created = clock::parse_rfc3339(&c.created).unwrap_or(0);
    let labels: Vec<String> = c
        .config
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mounts: Vec<String> = c
        .mounts
        .iter()
        .map(|m| {
            let s = m.name.clone().unwrap_or_else(|| m.source.clone());
            if no_trunc {
                s
            } else {
                ellipsize(s, 15)
            }
        })
        .collect();
    let networks: Vec<String> = match &sb {
        Some(s) if !s.attachments.is_empty() => {
            s.attachments.iter().map(|a| a.network.clone()).collect()
        }
        _ => vec![c.network_mode.clone()],
    };
    json!({
        "ID": if no_trunc { c.id.clone() } else { c.id.chars().take(12).collect() },
        "Image": familiar(&c.image),
        "Command": format!("{command:?}"),
        "CreatedAt": created_at(created),
        "RunningFor": clock::ago(created),
        "Ports": ports_column(&published, &c.exposed_ports),
        "State": status.word(),
        "Status": status.describe(state),
        "Size": "",
        "Names": c.name,
        "Labels": labels.join(","),
        "Mounts": mounts.join(","),
        "Networks": networks.join(","),
        "LocalVolumes": c.mounts.iter().filter(|m| m.kind == "volume").count().to_string(),
    })
}

/// `CreatedAt` as docker prints it: `2024-05-01 10:00:00 +0000 UTC`.
fn created_at(nanos: i64) -> String {
    let s = clock::rfc3339_nano(Some(nanos - nanos.rem_euclid(1_000_000_000)));
    format!("{} +0000 UTC", s.trim_end_matches('Z').replace('T', " "))
}

/// The column titles of `ps --format table`, docker's for each field.
pub fn ps_headers() -> Value {
    json!({
        "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
        "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
        "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
        "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
        "LocalVolumes": "LOCAL VOLUMES",
    })
}

#[cfg(test)]
mod tests {
    use super::graph_driver;

    #[test]
    fn the_graph_driver_is_how_the_bundle_was_mounted() {
        let dir = std::env::temp_dir().join(format!("berth-img-graph-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let with = |rootfs: &str| {
            let meta = serde_json::json!({
                "image": "i", "manifest": format!("sha256:{}", "0".repeat(64)),
                "config": format!("sha256:{}", "1".repeat(64)),
                "rootfs": rootfs, "store": "/s", "layers": [],
            });
            std::fs::write(
                dir.join(crate::bundle::METADATA),
                serde_json::to_vec(&meta).unwrap(),
            )
            .unwrap();
            graph_driver(&dir)
        };
        let (name, data) = with("overlay");
        assert_eq!(name, "overlay");
        assert!(data.get("MountProgram").is_none() && data["UpperDir"].is_string());
        let (name, data) = with("fuse-overlayfs");
        assert_eq!(
            (name, &data["MountProgram"]),
            ("overlay", &"fuse-overlayfs".into())
        );
        let (name, data) = with("copy");
        assert_eq!(name, "vfs");
        assert!(data.get("UpperDir").is_none() && data["MergedDir"].is_string());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(graph_driver(&dir).0, "overlay", "no metadata yet");
    }
}
