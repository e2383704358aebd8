//! Published ports: docker's `-p` syntax, the host ports chosen for it,
//! and how docker prints them (`0.0.0.0:8080->80/tcp`). The forwarding
//! itself is the `portmap` plugin's (iptables DNAT, also for 127.0.0.1).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// tcp or udp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

impl std::str::FromStr for Protocol {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Protocol, ()> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            _ => Err(()),
        }
    }
}

/// One container port to publish, as asked: the host port is chosen later
/// when it is a range or left open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortRequest {
    /// None: every address of the host.
    pub host_ip: Option<Ipv4Addr>,
    /// The host ports it may use (`a..=b`); None: any free one.
    pub host_ports: Option<(u16, u16)>,
    pub container_port: u16,
    pub protocol: Protocol,
    /// The flag it came from, for errors.
    pub spec: String,
}

/// A published port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl PortRequest {
    /// The request for exactly `m` again: a container started anew keeps
    /// the host ports it was given first, even ones chosen for it.
    pub fn pinned(m: &PortMapping) -> PortRequest {
        PortRequest {
            host_ip: m.host_ip,
            host_ports: Some((m.host_port, m.host_port)),
            container_port: m.container_port,
            protocol: m.protocol,
            spec: m.to_docker_string(),
        }
    }
}

impl PortMapping {
    /// `0.0.0.0:8080->80/tcp`, as `docker ps` shows it.
    pub fn to_docker_string(&self) -> String {
        format!(
            "{}:{}->{}/{}",
            self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            self.host_port,
            self.container_port,
            self.protocol
        )
    }

    /// The portmap plugin's `portMappings` entry (its CONVENTIONS.md).
    pub fn to_cni(&self) -> Value {
        json!({
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol.to_string(),
            "hostIP": self.host_ip.map(|i| i.to_string()).unwrap_or_default(),
        })
    }

    /// Whether two mappings would take the same host port.
    pub fn clashes(&self, other: &PortMapping) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && (self.host_ip.is_none() || other.host_ip.is_none() || self.host_ip == other.host_ip)
    }
}

fn port_range(s: &str, spec: &str, what: &str) -> Result<(u16, u16)> {
    let bad = || {
        Error::invalid(
            "--publish",
            format!("{spec:?}: invalid {what} {s:?}: want a port (1-65535) or a range a-b"),
        )
    };
    let one = |p: &str| -> Result<u16> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad()),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => {
            let p = one(s)?;
            Ok((p, p))
        }
    }
}

/// Parses one `-p` value: `[IP:][HOSTPORT:]CONTAINERPORT[/PROTO]`, where
/// ports may be ranges (`8000-8009:80-89`; a host range for one container
/// port means "one free port of these") and an empty HOSTPORT (`IP::80`)
/// means any free one.
pub fn parse_publish(spec: &str) -> Result<Vec<PortRequest>> {
    let bad = |why: &str| Error::invalid("--publish", format!("{spec:?}: {why}"));
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, p)) => (
            r,
            p.parse::<Protocol>()
                .map_err(|_| bad(&format!("unknown protocol {p:?}: want tcp or udp")))?,
        ),
        None => (spec, Protocol::Tcp),
    };
    if rest.starts_with('[') {
        return Err(bad("IPv6 host addresses are not supported"));
    }
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), Some(*h), *c),
        _ => return Err(bad("want [IP:][HOSTPORT:]CONTAINERPORT[/PROTO]")),
    };
    let host_ip = match ip {
        None | Some("") => None,
        Some(ip) => {
            let addr: Ipv4Addr = ip
                .parse()
                .map_err(|_| bad(&format!("invalid host address {ip:?}")))?;
            (!addr.is_unspecified()).then_some(addr)
        }
    };
    let (c_lo, c_hi) = port_range(container, spec, "container port")?;
    let host_ports = match host {
        None | Some("") => None,
        Some(h) => Some(port_range(h, spec, "host port")?),
    };
    let count = c_hi - c_lo;
    match host_ports {
        Some((h_lo, h_hi)) if count > 0 && h_hi - h_lo != count => {
            return Err(bad("the host and container port ranges differ in size"))
        }
        _ => {}
    }
    Ok((0..=count)
        .map(|i| PortRequest {
            host_ip,
            host_ports: match host_ports {
                // A range onto a range: port by port.
                Some((h_lo, _)) if count > 0 => Some((h_lo + i, h_lo + i)),
                other => other,
            },
            container_port: c_lo + i,
            protocol,
            spec: spec.to_string(),
        })
        .collect())
}

/// `-P`: every port the image EXPOSEs (`80/tcp`, `53/udp`, `8000-8002`),
/// on a free host port each.
pub fn publish_exposed(exposed: &BTreeMap<String, Value>) -> Result<Vec<PortRequest>> {
    let mut out = Vec::new();
    for key in exposed.keys() {
        let (ports, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let protocol: Protocol = proto
            .parse()
            .map_err(|_| Error::invalid("--publish-all", format!("image exposes {key:?}")))?;
        let (lo, hi) = port_range(ports, key, "exposed port")?;
        for p in lo..=hi {
            out.push(PortRequest {
                host_ip: None,
                host_ports: None,
                container_port: p,
                protocol,
                spec: key.clone(),
            });
        }
    }
    Ok(out)
}

/// Whether this host's `port` can be taken on `ip`: nothing of the host
/// listens there (a DNAT rule would hide it, as docker's proxy would
/// refuse to start).
fn bindable(ip: Ipv4Addr, port: u16, protocol: Protocol) -> Option<u16> {
    let addr = SocketAddrV4::new(ip, port);
    match protocol {
        Protocol::Tcp => TcpListener::bind(addr).ok()?.local_addr().ok(),
        Protocol::Udp => UdpSocket::bind(addr).ok()?.local_addr().ok(),
    }
    .map(|a| a.port())
}

/// Picks the host port of each request: the one asked for, if no other
/// container has it (`taken`) and no host process listens on it; else a
/// free one of its range, or one the kernel picks from its ephemeral
/// range, as docker's allocator does.
pub fn allocate(requests: &[PortRequest], taken: &[PortMapping]) -> Result<Vec<PortMapping>> {
    let mut out: Vec<PortMapping> = Vec::new();
    for r in requests {
        let ip = r.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let candidate = |port: u16| PortMapping {
            host_ip: r.host_ip,
            host_port: port,
            container_port: r.container_port,
            protocol: r.protocol,
        };
        let free = |m: &PortMapping| !taken.iter().chain(&out).any(|t| t.clashes(m));
        let chosen = match r.host_ports {
            Some((lo, hi)) if lo == hi => {
                let m = candidate(lo);
                if !free(&m) {
                    return Err(Error::invalid(
                        "--publish",
                        format!(
                            "{:?}: host port {lo}/{} is already published",
                            r.spec, r.protocol
                        ),
                    ));
                }
                if bindable(ip, lo, r.protocol).is_none() {
                    return Err(Error::invalid(
                        "--publish",
                        format!("{:?}: host port {ip}:{lo}/{} is in use", r.spec, r.protocol),
                    ));
                }
                m
            }
            Some((lo, hi)) => (lo..=hi)
                .map(candidate)
                .find(|m| free(m) && bindable(ip, m.host_port, r.protocol).is_some())
                .ok_or_else(|| {
                    Error::invalid(
                        "--publish",
                        format!("{:?}: no free host port in {lo}-{hi}", r.spec),
                    )
                })?,
            None => (0..64)
                .filter_map(|_| bindable(ip, 0, r.protocol))
                .map(candidate)
                .find(|m| free(m))
                .ok_or_else(|| {
                    Error::invalid("--publish", format!("{:?}: no free host port", r.spec))
                })?,
        };
        out.push(chosen);
    }
    Ok(out)
}

/// docker's `NetworkSettings.Ports`: `{"80/tcp": [{"HostIp": "0.0.0.0",
/// "HostPort": "8080"}]}`, with the image's unpublished EXPOSEd ports as
/// null.
pub fn docker_ports(mappings: &[PortMapping], exposed: &[String]) -> Value {
    let mut m = serde_json::Map::new();
    for e in exposed {
        let key = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        m.insert(key, Value::Null);
    }
    for p in mappings {
        let key = format!("{}/{}", p.container_port, p.protocol);
        let entry = json!({
            "HostIp": p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
            "HostPort": p.host_port.to_string(),
        });
        match m.get_mut(&key) {
            Some(Value::Array(list)) => list.push(entry),
            _ => {
                m.insert(key, json!([entry]));
            }
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> PortRequest {
        let mut v = parse_publish(spec).unwrap();
        assert_eq!(v.len(), 1, "{spec}");
        v.remove(0)
    }

    #[test]
    fn publish_forms() {
        let r = one("8080:80");
        assert_eq!(
            (r.host_ip, r.host_ports, r.container_port, r.protocol),
            (None, Some((8080, 8080)), 80, Protocol::Tcp)
        );
        let r = one("127.0.0.1:8080:80/udp");
        assert_eq!(r.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(r.protocol, Protocol::Udp);
        let r = one("80");
        assert_eq!((r.host_ports, r.container_port), (None, 80));
        let r = one("127.0.0.1::53/UDP");
        assert_eq!((r.host_ip, r.host_ports), (Some(Ipv4Addr::LOCALHOST), None));
        assert_eq!(one("0.0.0.0:1:2").host_ip, None);
        // A host range for one port: any of them.
        assert_eq!(one("8000-8009:80").host_ports, Some((8000, 8009)));
        let v = parse_publish("8000-8002:80-82").unwrap();
        assert_eq!(
            v.iter()
                .map(|r| (r.host_ports.unwrap().0, r.container_port))
                .collect::<Vec<_>>(),
            [(8000, 80), (8001, 81), (8002, 82)]
        );
    }

    #[test]
    fn publish_errors_name_the_flag_and_value() {
        for (spec, want) in [
            ("8080:80/sctp", "unknown protocol \"sctp\""),
            ("8080:0", "invalid container port \"0\""),
            ("x:80", "invalid host port \"x\""),
            ("1.2.3:8080:80", "invalid host address \"1.2.3\""),
            ("1:2:3:4", "want [IP:][HOSTPORT:]CONTAINERPORT"),
            ("8000-8001:80-82", "ranges differ in size"),
            ("[::1]:80:80", "IPv6"),
            ("90-80", "invalid container port"),
        ] {
            let e = parse_publish(spec).unwrap_err().to_string();
            assert!(
                e.starts_with("invalid --publish: ") && e.contains(spec) && e.contains(want),
                "{spec}: {e}"
            );
        }
    }

    #[test]
    fn exposed_ports_expand() {
        let mut ex = BTreeMap::new();
        ex.insert("80/tcp".to_string(), json!({}));
        ex.insert("53/udp".to_string(), json!({}));
        ex.insert("7000-7001".to_string(), json!({}));
        let v = publish_exposed(&ex).unwrap();
        let got: Vec<_> = v.iter().map(|r| (r.container_port, r.protocol)).collect();
        assert_eq!(
            got,
            [
                (53, Protocol::Udp),
                (7000, Protocol::Tcp),
                (7001, Protocol::Tcp),
                (80, Protocol::Tcp)
            ]
        );
        assert!(v.iter().all(|r| r.host_ports.is_none()));
    }

    #[test]
    fn clashes_and_allocation() {
        let m = |ip: Option<Ipv4Addr>, port, proto| PortMapping {
            host_ip: ip,
            host_port: port,
            container_port: 80,
            protocol: proto,
        };
        let lo = Some(Ipv4Addr::LOCALHOST);
        assert!(m(None, 1, Protocol::Tcp).clashes(&m(lo, 1, Protocol::Tcp)));
        assert!(!m(None, 1, Protocol::Tcp).clashes(&m(None, 1, Protocol::Udp)));
        assert!(!m(lo, 1, Protocol::Tcp).clashes(&m(
            Some(Ipv4Addr::new(10, 0, 0, 1)),
            1,
            Protocol::Tcp
        )));
        // A port another container has is refused; a free one is chosen
        // otherwise, never twice.
        let taken = [m(lo, 40000, Protocol::Tcp)];
        let e = allocate(&parse_publish("127.0.0.1:40000:80").unwrap(), &taken)
            .unwrap_err()
            .to_string();
        assert!(e.contains("already published"), "{e}");
        let reqs: Vec<_> = ["127.0.0.1::80", "127.0.0.1::81"]
            .iter()
            .flat_map(|s| parse_publish(s).unwrap())
            .collect();
        let got = allocate(&reqs, &taken).unwrap();
        assert_ne!(got[0].host_port, got[1].host_port);
        assert!(got.iter().all(|p| p.host_port != 40000 && p.host_port > 0));
        // A host port a process listens on is refused.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = l.local_addr().unwrap().port();
        let e = allocate(
            &parse_publish(&format!("127.0.0.1:{busy}:80")).unwrap(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("is in use"), "{e}");
    }

    #[test]
    fn docker_shapes() {
        let p = PortMapping {
            host_ip: None,
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        assert_eq!(p.to_docker_string(), "0.0.0.0:8080->80/tcp");
        assert_eq!(
            p.to_cni(),
            json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""})
        );
        assert_eq!(
            docker_ports(&[p], &["80/tcp".into(), "443".into()]),
            json!({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "443/tcp": null})
        );
    }
}
