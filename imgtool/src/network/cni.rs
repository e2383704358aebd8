//! The CNI protocol (containernetworking/cni SPEC.md), as a runtime speaks
//! it: each plugin of a network configuration list is exec'd with its
//! configuration on stdin and the `CNI_*` variables in its environment;
//! ADD runs the list in order, each plugin getting the previous one's
//! result as `prevResult`; DEL runs it in reverse and CHECK in order, both
//! with the list's ADD result as `prevResult`. The result and errors come
//! back as JSON on stdout.
//!
//! This is containerd's go-cni / libcni `AddNetworkList`, `DelNetworkList`
//! and `CheckNetworkList`, minus the on-disk cache: the caller records the
//! result (and the exact list it ran) itself, so DEL can replay them even
//! after the network's file changed or went away.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// The spec version berth-img writes its lists in (Debian bookworm's
/// plugins, 1.1.1, speak 0.1.0 to 1.0.0).
pub const VERSION: &str = "1.0.0";

/// Where plugins are looked for when `$CNI_PATH` is not set: Debian's
/// containernetworking-plugins, then the upstream default.
pub const DEFAULT_PATH: &str = "/usr/lib/cni:/opt/cni/bin";

/// The CNI operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Del,
    Check,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Del => "DEL",
            Op::Check => "CHECK",
        }
    }
}

/// The per-invocation arguments (SPEC.md "Parameters"): what the
/// `CNI_CONTAINERID`, `CNI_NETNS` and `CNI_IFNAME` variables carry.
#[derive(Clone, Debug)]
pub struct Args<'a> {
    pub container_id: &'a str,
    /// The container's network namespace; None on DEL when it is gone
    /// (plugins then release what they can without it, as the spec asks).
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
}

/// The plugin directories (`CNI_PATH`).
#[derive(Clone, Debug)]
pub struct Plugins {
    dirs: Vec<PathBuf>,
}

impl Plugins {
    /// `$CNI_PATH` if set (as nerdctl reads it), else [`DEFAULT_PATH`].
    pub fn from_env() -> Plugins {
        let path = std::env::var_os("CNI_PATH")
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_PATH.into());
        Plugins {
            dirs: std::env::split_paths(&path).collect(),
        }
    }

    fn search_path(&self) -> String {
        std::env::join_paths(&self.dirs)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The executable of plugin `kind`.
    pub fn find(&self, kind: &str) -> Result<PathBuf> {
        if kind.is_empty() || kind.contains('/') {
            return Err(Error::invalid("CNI plugin type", format!("{kind:?}")));
        }
        self.dirs
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::Other(format!(
                    "CNI plugin {kind:?} not found in {} (install containernetworking-plugins, or set CNI_PATH)",
                    self.search_path()
                ))
            })
    }

    /// Runs one plugin: `conf` on stdin, `args` in the environment.
    /// Returns its result (ADD) or None (DEL, CHECK print nothing).
    pub fn exec(&self, op: Op, conf: &Value, args: &Args) -> Result<Option<Value>> {
        let kind = conf["type"].as_str().unwrap_or_default();
        let network = conf["name"].as_str().unwrap_or_default();
        let plugin = self.find(kind)?;
        let netns = args
            .netns
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut cmd = Command::new(&plugin);
        cmd.env("CNI_COMMAND", op.as_str())
            .env("CNI_CONTAINERID", args.container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", args.ifname)
            .env("CNI_PATH", self.search_path())
            // The plugins exec iptables and ipam plugins by name; a hook's
            // or a service's environment may lack the sbin directories.
            .env("PATH", path_with_sbin())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("CNI {} {kind} (network {network:?})", op.as_str());
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Other(format!("{what}: run {}: {e}", plugin.display())))?;
        let input = serde_json::to_vec(conf).expect("JSON serializes");
        if let Some(mut stdin) = child.stdin.take() {
            // A plugin that exits early closes its stdin; its exit status
            // and output say why.
            let _ = stdin.write_all(&input);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error::Other(format!("{what}: {e}")))?;
        if !out.status.success() {
            return Err(Error::Other(format!(
                "{what}: {}",
                plugin_error(&out.stdout, &out.stderr)
            )));
        }
        if op != Op::Add {
            return Ok(None);
        }
        let result: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            Error::Other(format!(
                "{what}: result is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout).trim()
            ))
        })?;
        Ok(Some(result))
    }
}

/// `PATH` with the sbin directories iptables lives in.
fn path_with_sbin() -> String {
    let mut path = std::env::var("PATH").unwrap_or_default();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !path.split(':').any(|p| p == d) {
            if !path.is_empty() {
                path.push(':');
            }
            path.push_str(d);
        }
    }
    path
}

/// A plugin's error (SPEC.md "Error"): `msg: details` from the JSON on
/// stdout, else its stderr, on one line.
pub fn plugin_error(stdout: &[u8], stderr: &[u8]) -> String {
    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Ok(v) = serde_json::from_slice::<Value>(stdout) {
        if let Some(msg) = v["msg"].as_str() {
            let details = v["details"].as_str().unwrap_or("");
            let code = v["code"].as_u64().unwrap_or(0);
            let text = if details.is_empty() {
                msg.to_string()
            } else {
                format!("{msg}: {details}")
            };
            return format!("{} (code {code})", one_line(&text));
        }
    }
    let err = one_line(&String::from_utf8_lossy(stderr));
    if err.is_empty() {
        one_line(&String::from_utf8_lossy(stdout))
    } else {
        err
    }
}

/// The configuration one plugin of `list` gets (SPEC.md "Deriving
/// execution configuration from plugin configuration"): its own object
/// plus the list's `cniVersion` and `name`, `runtimeConfig` holding only
/// the capabilities it declares, and `prevResult`.
pub fn plugin_conf(
    list: &Value,
    plugin: &Value,
    runtime_config: &Value,
    prev_result: Option<&Value>,
) -> Value {
    let mut conf = plugin.clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["name"] = list["name"].clone();
    let mut rc = serde_json::Map::new();
    if let (Some(caps), Some(given)) = (
        plugin["capabilities"].as_object(),
        runtime_config.as_object(),
    ) {
        for (cap, on) in caps {
            if on.as_bool() == Some(true) {
                if let Some(v) = given.get(cap) {
                    rc.insert(cap.clone(), v.clone());
                }
            }
        }
    }
    if !rc.is_empty() {
        conf["runtimeConfig"] = Value::Object(rc);
    }
    if let Some(prev) = prev_result {
        conf["prevResult"] = prev.clone();
    }
    conf
}

fn plugins_of(list: &Value) -> Result<&Vec<Value>> {
    list["plugins"].as_array().ok_or_else(|| {
        Error::invalid(
            "CNI network configuration list",
            format!("{:?} has no plugins", list["name"].as_str().unwrap_or("")),
        )
    })
}

/// ADD of a whole list: returns the last plugin's result.
pub fn add_list(
    plugins: &Plugins,
    list: &Value,
    args: &Args,
    runtime_config: &Value,
) -> Result<Value> {
    let mut prev: Option<Value> = None;
    for p in plugins_of(list)? {
        let conf = plugin_conf(list, p, runtime_config, prev.as_ref());
        prev = plugins.exec(Op::Add, &conf, args)?;
    }
    prev.ok_or_else(|| Error::Other("CNI ADD: no result".into()))
}

/// DEL of a whole list, in reverse, with the ADD result (if any) as
/// `prevResult`. Every plugin gets its DEL even when one fails (each
/// releases what it owns); the first error is returned.
pub fn del_list(
    plugins: &Plugins,
    list: &Value,
    args: &Args,
    runtime_config: &Value,
    result: Option<&Value>,
) -> Result<()> {
    let mut first_err = None;
    for p in plugins_of(list)?.iter().rev() {
        let conf = plugin_conf(list, p, runtime_config, result);
        if let Err(e) = plugins.exec(Op::Del, &conf, args) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// CHECK of a whole list against its ADD result.
pub fn check_list(
    plugins: &Plugins,
    list: &Value,
    args: &Args,
    runtime_config: &Value,
    result: &Value,
) -> Result<()> {
    let has_ipv6 = result["ips"].as_array().is_some_and(|ips| {
        ips.iter()
            .any(|ip| ip["address"].as_str().is_some_and(|a| a.contains(':')))
    });
    for p in plugins_of(list)? {
        let conf = plugin_conf(list, p, runtime_config, Some(result));
        match plugins.exec(Op::Check, &conf, args) {
            // portmap up to 1.2 (bookworm ships 1.1.1) checks for IPv6 DNAT
            // rules it never made for an IPv4-only container
            // (containernetworking/plugins#819); its IPv4 check passed.
            Err(Error::Other(e))
                if p["type"] == "portmap"
                    && !has_ipv6
                    && e.contains("could not check ipv6 dnat") => {}
            r => {
                r?;
            }
        }
    }
    Ok(())
}

/// An interface of a result (SPEC.md "Success").
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Interface {
    pub name: String,
    #[serde(default)]
    pub mac: String,
    /// The netns path for interfaces inside the container; absent for the
    /// host's (the bridge, the host end of a veth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// An address of a result.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct IpConfig {
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// CIDR: `10.87.0.2/16`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// The parts of a result berth-img uses.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CniResult {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
}

/// The container's IPv4 address on one interface, from a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: String,
}

impl CniResult {
    /// Parses a result; unknown fields are ignored.
    pub fn parse(v: &Value) -> Result<CniResult> {
        serde_json::from_value(v.clone())
            .map_err(|e| Error::invalid("CNI result", format!("{e}: {v}")))
    }

    /// The first IPv4 address on the container's interface `ifname` (an
    /// interface with a `sandbox`); an address without an interface index
    /// counts for the container, as 0.x results had none.
    pub fn address(&self, ifname: &str) -> Option<Address> {
        self.ips.iter().find_map(|ip| {
            let iface = match ip.interface {
                Some(i) => {
                    let iface = self.interfaces.get(i)?;
                    if iface.sandbox.is_none() || iface.name != ifname {
                        return None;
                    }
                    Some(iface)
                }
                None => None,
            };
            let (addr, len) = ip.address.split_once('/')?;
            let ip_addr: Ipv4Addr = addr.parse().ok()?;
            Some(Address {
                ip: ip_addr,
                prefix_len: len.parse().ok()?,
                gateway: ip.gateway.as_deref().and_then(|g| g.parse().ok()),
                mac: iface.map(|i| i.mac.clone()).unwrap_or_default(),
            })
        })
    }
}

/// The list that brings up `lo` in a new network namespace (what
/// containerd's CRI runs for every pod).
pub fn loopback_list() -> Value {
    json!({
        "cniVersion": VERSION,
        "name": "loopback",
        "plugins": [{ "type": "loopback" }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIDGE_RESULT: &str = r#"{
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "berth0", "mac": "da:e6:ba:0a:26:8c"},
            {"name": "vethe2a4dbde", "mac": "ee:26:a2:74:05:27"},
            {"name": "eth0", "mac": "6e:a2:01:52:ee:66", "sandbox": "/var/lib/berth/netns/web"}
        ],
        "ips": [{"interface": 2, "address": "10.87.0.2/16", "gateway": "10.87.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {}
    }"#;

    #[test]
    fn result_address_is_the_containers() {
        let r = CniResult::parse(&serde_json::from_str(BRIDGE_RESULT).unwrap()).unwrap();
        assert_eq!(
            r.address("eth0").unwrap(),
            Address {
                ip: Ipv4Addr::new(10, 87, 0, 2),
                prefix_len: 16,
                gateway: Some(Ipv4Addr::new(10, 87, 0, 1)),
                mac: "6e:a2:01:52:ee:66".into(),
            }
        );
        assert_eq!(r.address("eth1"), None);
        // An index pointing at a host interface is not the container's.
        let mut host = r.clone();
        host.ips[0].interface = Some(0);
        assert_eq!(host.address("berth0"), None);
        // 0.x results: no interface index.
        let old = CniResult::parse(&json!({"ips": [{"address": "10.1.0.5/24"}]})).unwrap();
        assert_eq!(old.address("eth0").unwrap().ip, Ipv4Addr::new(10, 1, 0, 5));
        assert!(CniResult::parse(&json!({"ips": "no"})).is_err());
    }

    #[test]
    fn plugin_conf_follows_the_spec() {
        let list = json!({
            "cniVersion": "1.0.0", "name": "net1", "berthID": "x",
            "plugins": [
                {"type": "bridge", "bridge": "br-1"},
                {"type": "portmap", "capabilities": {"portMappings": true, "ips": false}}
            ]
        });
        let rc = json!({"portMappings": [{"hostPort": 8080}], "ips": ["10.0.0.9"]});
        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let bridge = plugin_conf(&list, &list["plugins"][0], &rc, None);
        assert_eq!(
            bridge,
            json!({"type": "bridge", "bridge": "br-1", "cniVersion": "1.0.0", "name": "net1"})
        );
        let pm = plugin_conf(&list, &list["plugins"][1], &rc, Some(&prev));
        assert_eq!(
            pm["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 8080}]})
        );
        assert_eq!(pm["prevResult"], prev);
        assert!(pm.get("berthID").is_none());
    }

    #[test]
    fn plugin_errors_are_one_line() {
        let out =
            br#"{"code": 7, "msg": "failed to allocate", "details": "no IP\naddresses left"}"#;
        assert_eq!(
            plugin_error(out, b""),
            "failed to allocate: no IP addresses left (code 7)"
        );
        assert_eq!(plugin_error(b"", b"panic:\n  boom\n"), "panic: boom");
    }

    #[test]
    fn plugins_are_found_by_type_only() {
        let p = Plugins {
            dirs: vec!["/nonexistent".into()],
        };
        assert!(p.find("../../bin/sh").is_err());
        let e = p.find("bridge").unwrap_err().to_string();
        assert!(e.contains("\"bridge\" not found in /nonexistent"), "{e}");
    }
}
