//! `berth update`: new resource limits for a running container, from runc's
//! flags or a LinuxResources JSON (`-r FILE`, `-r -` for stdin as dockerd
//! sends it).

use std::io::Read;

use serde_json::{json, Value};

use super::Global;
use crate::container::Container;
use crate::error::{Error, Result};
use crate::state::Status;

/// runc 1.1's update flags; strings as given on the command line.
#[derive(Debug, Default, Clone)]
pub struct UpdateOptions {
    pub resources: Option<String>,
    pub blkio_weight: Option<u16>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_share: Option<u64>,
    pub cpu_rt_period: Option<u64>,
    pub cpu_rt_runtime: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub memory: Option<String>,
    pub memory_reservation: Option<String>,
    pub memory_swap: Option<String>,
    pub pids_limit: Option<i64>,
    pub kernel_memory: Option<String>,
    pub kernel_memory_tcp: Option<String>,
}

/// Parses sizes as docker and runc do: bytes, or with a k/m/g/t suffix
/// (binary), or -1 for unlimited.
pub fn parse_size(s: &str, flag: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| Error::Config(format!("--{flag}: invalid size {s:?}")))?;
    if n < 0.0 {
        return Err(Error::Config(format!("--{flag}: invalid size {s:?}")));
    }
    Ok((n * mult as f64) as i64)
}

/// The LinuxResources JSON the flags describe, over `-r` if given.
pub fn resources_json(o: &UpdateOptions) -> Result<Value> {
    let mut r: Value = match o.resources.as_deref() {
        None => json!({}),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Error::sys("read resources from stdin", e))?;
            serde_json::from_str(&text).map_err(|e| Error::Config(format!("--resources -: {e}")))?
        }
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::path("read --resources", path, e))?;
            serde_json::from_str(&text)
                .map_err(|e| Error::Config(format!("--resources {path}: {e}")))?
        }
    };
    let mut set = |ptr: &str, v: Value| {
        let mut parts = ptr.split('/');
        let (a, b) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        if !r[a].is_object() {
            r[a] = json!({});
        }
        r[a][b] = v;
    };
    if let Some(v) = o.blkio_weight {
        set("blockIO/weight", json!(v));
    }
    if let Some(v) = o.cpu_period {
        set("cpu/period", json!(v));
    }
    if let Some(v) = o.cpu_quota {
        set("cpu/quota", json!(v));
    }
    if let Some(v) = o.cpu_share {
        set("cpu/shares", json!(v));
    }
    if let Some(v) = o.cpu_rt_period {
        set("cpu/realtimePeriod", json!(v));
    }
    if let Some(v) = o.cpu_rt_runtime {
        set("cpu/realtimeRuntime", json!(v));
    }
    if let Some(v) = &o.cpuset_cpus {
        set("cpu/cpus", json!(v));
    }
    if let Some(v) = &o.cpuset_mems {
        set("cpu/mems", json!(v));
    }
    if let Some(v) = &o.memory {
        set("memory/limit", json!(parse_size(v, "memory")?));
    }
    if let Some(v) = &o.memory_reservation {
        set(
            "memory/reservation",
            json!(parse_size(v, "memory-reservation")?),
        );
    }
    if let Some(v) = &o.memory_swap {
        set("memory/swap", json!(parse_size(v, "memory-swap")?));
    }
    if let Some(v) = &o.kernel_memory {
        set("memory/kernel", json!(parse_size(v, "kernel-memory")?));
    }
    if let Some(v) = &o.kernel_memory_tcp {
        set(
            "memory/kernelTCP",
            json!(parse_size(v, "kernel-memory-tcp")?),
        );
    }
    if let Some(v) = o.pids_limit {
        set("pids/limit", json!(v));
    }
    Ok(r)
}

/// Merges `new` into `old`, object by object (what update did not name stays).
fn merge(old: &mut Value, new: &Value) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, v) in n {
                merge(o.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (o, n) => *o = n.clone(),
    }
}

pub fn update(g: &Global, id: &str, o: &UpdateOptions) -> Result<()> {
    let mut c = Container::load(&g.root, id)?;
    if c.status() == Status::Stopped {
        return Err(Error::State(format!(
            "cannot update container {id}: it is stopped"
        )));
    }
    let value = resources_json(o)?;
    let resources: oci_spec::runtime::LinuxResources =
        serde_path_to_error::deserialize(value.clone())
            .map_err(|e| Error::Config(format!("resources: {}: {}", e.path(), e.inner())))?;
    if let Some(unit) = &c.state.systemd_unit {
        // systemd re-applies what its properties say: they change too.
        use crate::cgroups::systemd::{properties, Manager};
        let manager = Manager::connect()?;
        let version = manager.version();
        // The device list is not part of an update (runc leaves it too).
        let devices = crate::devices::Emulator::from_rules(&[crate::devices::DeviceRule {
            allow: true,
            typ: 'a',
            major: None,
            minor: None,
            access: "rwm".into(),
        }])?;
        let props = if c.layout.is_pure_v2() {
            properties::v2(&resources, &devices, version)
        } else {
            properties::v1(&resources, &devices, version)
        };
        manager.set_properties(unit, props)?;
    }
    c.cgroup().apply_resources(&c.layout, &resources)?;
    if !c.state.config["linux"].is_object() {
        c.state.config["linux"] = json!({});
    }
    merge(&mut c.state.config["linux"]["resources"], &value);
    c.dir.save(&c.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512", "m").unwrap(), 512);
        assert_eq!(parse_size("64m", "m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G", "m").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5k", "m").unwrap(), 1536);
        assert_eq!(parse_size("-1", "m").unwrap(), -1);
        assert!(parse_size("lots", "m").is_err());
    }

    #[test]
    fn flags_over_json() {
        let o = UpdateOptions {
            memory: Some("10m".into()),
            pids_limit: Some(20),
            cpu_share: Some(512),
            ..Default::default()
        };
        let v = resources_json(&o).unwrap();
        assert_eq!(v["memory"]["limit"], 10 << 20);
        assert_eq!(v["pids"]["limit"], 20);
        assert_eq!(v["cpu"]["shares"], 512);
    }
}
