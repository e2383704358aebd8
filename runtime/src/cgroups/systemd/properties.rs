//! `linux.resources` as systemd unit properties, converted as runc converts
//! them. systemd owns the scope and re-applies what its properties say
//! (after a daemon-reload, say), so each limit it understands is given to
//! it as well as written to the cgroup files.

use oci_spec::runtime::LinuxResources;

use super::{prop, Property};
use crate::cgroups::resources::{blkio_weight_to_io_weight, shares_to_weight};
use crate::devices::{DeviceRule, Emulator};

/// systemd's "infinity" for limits and times.
const INFINITY: u64 = u64::MAX;

/// The properties for a unit on a cgroup v2 host (`version`: systemd's,
/// for the properties older ones refuse).
pub fn v2(r: &LinuxResources, devices: &Emulator, version: u32) -> Vec<Property> {
    let mut out = vec![
        prop("MemoryAccounting", true),
        prop("CPUAccounting", true),
        prop("IOAccounting", true),
        prop("TasksAccounting", true),
    ];
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit().filter(|l| *l != 0) {
            out.push(prop("MemoryMax", limit(l)));
        }
        if let Some(l) = m.reservation().filter(|l| *l != 0) {
            out.push(prop("MemoryLow", limit(l)));
        }
        // v1's swap is memory+swap; systemd's MemorySwapMax is swap alone.
        match (m.swap(), m.limit()) {
            (Some(-1), _) => out.push(prop("MemorySwapMax", INFINITY)),
            (Some(s), Some(l)) if s > 0 && l > 0 && s >= l => {
                out.push(prop("MemorySwapMax", (s - l) as u64))
            }
            _ => {}
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            out.push(prop("CPUWeight", shares_to_weight(s)));
        }
        out.extend(cpu_quota(c.quota(), c.period(), version));
        if version >= 244 {
            if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
                if let Some(mask) = bitmask(cpus) {
                    out.push(prop("AllowedCPUs", mask));
                }
            }
            if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
                if let Some(mask) = bitmask(mems) {
                    out.push(prop("AllowedMemoryNodes", mask));
                }
            }
        }
    }
    if let Some(p) = r.pids() {
        out.push(prop(
            "TasksMax",
            if p.limit() > 0 {
                p.limit() as u64
            } else {
                INFINITY
            },
        ));
    }
    if let Some(w) = r
        .block_io()
        .as_ref()
        .and_then(|b| b.weight())
        .filter(|w| *w != 0)
    {
        out.push(prop("IOWeight", blkio_weight_to_io_weight(w)));
    }
    for (key, value) in r.unified().iter().flatten() {
        out.extend(unified(key, value, version));
    }
    out.extend(device_properties(devices));
    out
}

/// The properties for a unit on a cgroup v1 (or hybrid) host: the older
/// names systemd has for the v1 controllers.
pub fn v1(r: &LinuxResources, devices: &Emulator, version: u32) -> Vec<Property> {
    let mut out = vec![
        prop("MemoryAccounting", true),
        prop("CPUAccounting", true),
        prop("BlockIOAccounting", true),
        prop("TasksAccounting", true),
    ];
    if let Some(l) = r
        .memory()
        .as_ref()
        .and_then(|m| m.limit())
        .filter(|l| *l != 0)
    {
        out.push(prop("MemoryLimit", limit(l)));
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            out.push(prop("CPUShares", s));
        }
        out.extend(cpu_quota(c.quota(), c.period(), version));
    }
    if let Some(w) = r
        .block_io()
        .as_ref()
        .and_then(|b| b.weight())
        .filter(|w| *w != 0)
    {
        out.push(prop("BlockIOWeight", u64::from(w)));
    }
    if let Some(p) = r.pids() {
        out.push(prop(
            "TasksMax",
            if p.limit() > 0 {
                p.limit() as u64
            } else {
                INFINITY
            },
        ));
    }
    out.extend(device_properties(devices));
    out
}

fn limit(v: i64) -> u64 {
    if v < 0 {
        INFINITY
    } else {
        v as u64
    }
}

/// CPUQuotaPerSecUSec (and the period, systemd ≥ 242). systemd keeps the
/// quota as a whole percentage of a CPU: a fraction is rounded up to the
/// next 10 ms per second, so the cgroup still gets at least the quota the
/// config asks for (runc's rounding).
fn cpu_quota(quota: Option<i64>, period: Option<u64>, version: u32) -> Vec<Property> {
    let mut out = Vec::new();
    let period = period.unwrap_or(0);
    let quota = quota.unwrap_or(0);
    if period != 0 && version >= 242 {
        out.push(prop("CPUQuotaPeriodUSec", period));
    }
    if quota != 0 || period != 0 {
        let per_sec = if quota > 0 {
            let period = if period == 0 { 100_000 } else { period };
            let v = quota as u64 * 1_000_000 / period;
            if !v.is_multiple_of(10_000) {
                (v / 10_000 + 1) * 10_000
            } else {
                v
            }
        } else {
            INFINITY
        };
        out.push(prop("CPUQuotaPerSecUSec", per_sec));
    }
    out
}

/// A cpu or memory-node list ("0-3,7") as systemd's little-endian bit mask.
pub fn bitmask(list: &str) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
            None => {
                let n = part.parse::<usize>().ok()?;
                (n, n)
            }
        };
        if lo > hi || hi > 8191 {
            return None;
        }
        for bit in lo..=hi {
            if out.len() <= bit / 8 {
                out.resize(bit / 8 + 1, 0);
            }
            out[bit / 8] |= 1 << (bit % 8);
        }
    }
    Some(out)
}

/// The `linux.resources.unified` keys systemd has properties for (runc's
/// list); the rest are written to the files only.
fn unified(key: &str, value: &str, version: u32) -> Vec<Property> {
    let bytes = |v: &str| -> Option<u64> {
        if v == "max" {
            Some(INFINITY)
        } else {
            v.parse().ok()
        }
    };
    let one = |name: &str, v: Option<u64>| v.map(|v| vec![prop(name, v)]).unwrap_or_default();
    match key {
        "memory.high" => one("MemoryHigh", bytes(value)),
        "memory.low" => one("MemoryLow", bytes(value)),
        "memory.min" => one("MemoryMin", bytes(value)),
        "memory.max" => one("MemoryMax", bytes(value)),
        "memory.swap.max" => one("MemorySwapMax", bytes(value)),
        "pids.max" => one("TasksMax", bytes(value)),
        "cpu.weight" => one("CPUWeight", value.parse().ok()),
        "cpu.max" => {
            let mut f = value.split_whitespace();
            let quota = match f.next() {
                Some("max") | None => -1,
                Some(q) => q.parse().unwrap_or(-1),
            };
            let period = f.next().and_then(|p| p.parse().ok()).unwrap_or(100_000);
            cpu_quota(Some(quota), Some(period), version)
        }
        "cpuset.cpus" if version >= 244 => bitmask(value)
            .map(|m| vec![prop("AllowedCPUs", m)])
            .unwrap_or_default(),
        "cpuset.mems" if version >= 244 => bitmask(value)
            .map(|m| vec![prop("AllowedMemoryNodes", m)])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// `DevicePolicy=strict` and a `DeviceAllow` entry per allowed device, as
/// runc gives them, when the allow-list can be said that way; otherwise
/// none (an allow-all default with deny exceptions, a class systemd cannot
/// name), and the device eBPF program berth attaches alone decides.
fn device_properties(devices: &Emulator) -> Vec<Property> {
    let rules = devices.as_rules();
    let (default, exceptions) = rules.split_first().expect("a default rule first");
    if default.allow {
        return Vec::new();
    }
    let mut allow: Vec<(String, String)> = Vec::new();
    for r in exceptions {
        match device_allow_entry(r) {
            Some(entry) => allow.push(entry),
            None => return Vec::new(),
        }
    }
    vec![
        prop("DevicePolicy", "strict".to_string()),
        prop("DeviceAllow", allow),
    ]
}

/// One DeviceAllow entry: a node by number (`/dev/char/1:3`), a major's
/// class by name from /proc/devices (`char-pts`), or every device of a
/// type (`char-*`).
fn device_allow_entry(r: &DeviceRule) -> Option<(String, String)> {
    let kind = match r.typ {
        'c' => "char",
        'b' => "block",
        _ => return None,
    };
    let access: String = r.access.chars().filter(|c| "rwm".contains(*c)).collect();
    let name = match (r.major, r.minor) {
        (Some(major), Some(minor)) => format!("/dev/{kind}/{major}:{minor}"),
        (Some(major), None) => format!("{kind}-{}", class_of(kind, major)?),
        (None, None) => format!("{kind}-*"),
        (None, Some(_)) => return None,
    };
    Some((name, access))
}

/// The name /proc/devices gives a major number ("pts" for 136).
fn class_of(kind: &str, major: i64) -> Option<String> {
    let text = std::fs::read_to_string("/proc/devices").ok()?;
    let header = if kind == "char" {
        "Character devices:"
    } else {
        "Block devices:"
    };
    text.split("\n\n")
        .find(|section| section.trim_start().starts_with(header))?
        .lines()
        .skip(1)
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let m: i64 = f.next()?.parse().ok()?;
            (m == major).then(|| f.next().map(String::from)).flatten()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_masks() {
        assert_eq!(bitmask("0-3,7"), Some(vec![0b1000_1111]));
        assert_eq!(bitmask("9"), Some(vec![0, 0b10]));
        assert_eq!(bitmask("3-1"), None);
    }

    #[test]
    fn quotas_round_up_to_whole_percent() {
        let names = |v: Vec<Property>| -> Vec<(String, u64)> {
            v.into_iter()
                .map(|(n, v)| match v {
                    super::super::Value::U64(u) => (n, u),
                    other => panic!("{n}: {other:?}"),
                })
                .collect()
        };
        assert_eq!(
            names(cpu_quota(Some(50_000), Some(100_000), 250)),
            [
                ("CPUQuotaPeriodUSec".to_string(), 100_000),
                ("CPUQuotaPerSecUSec".to_string(), 500_000)
            ]
        );
        assert_eq!(
            names(cpu_quota(Some(12_345), None, 250)),
            [("CPUQuotaPerSecUSec".to_string(), 130_000)]
        );
        assert_eq!(
            names(cpu_quota(Some(-1), Some(50_000), 230)),
            [("CPUQuotaPerSecUSec".to_string(), u64::MAX)]
        );
    }

    #[test]
    fn device_allow_list() {
        let rules = crate::devices::cgroup_rules(None);
        let e = Emulator::from_rules(&rules).unwrap();
        let props = device_properties(&e);
        assert_eq!(props[0].0, "DevicePolicy");
        let allow_all = Emulator::from_rules(&[DeviceRule {
            allow: true,
            typ: 'a',
            major: None,
            minor: None,
            access: "rwm".into(),
        }])
        .unwrap();
        assert!(device_properties(&allow_all).is_empty());
    }
}
