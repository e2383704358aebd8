//! Resource usage read back from the container's cgroup, in the JSON shape
//! of runc's `events --stats` (libcontainer's types/events).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::{Cgroup, Layout};

fn read_u64(p: &Path) -> u64 {
    fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// "key value" lines (memory.stat, cpu.stat, cpuacct.stat).
fn read_kv(p: &Path) -> BTreeMap<String, u64> {
    fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

fn usage(dir: &Path, prefix: &str) -> Value {
    let f = |name: &str| read_u64(&dir.join(format!("{prefix}.{name}")));
    let limit = f("limit_in_bytes");
    json!({"limit": limit, "usage": f("usage_in_bytes"), "max": f("max_usage_in_bytes"), "failcnt": f("failcnt")})
}

impl Cgroup {
    /// The stats object of runc's `{"type":"stats","data":{...}}`.
    pub fn stats(&self, layout: &Layout) -> Value {
        let mut data = Map::new();
        data.insert("cpu".into(), self.cpu_stats(layout));
        data.insert("memory".into(), self.memory_stats(layout));
        let pids_dir = self
            .v1_dir(layout, "pids")
            .or_else(|| self.unified_dir(layout));
        if let Some(d) = pids_dir {
            let limit = fs::read_to_string(d.join("pids.max"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(0);
            data.insert(
                "pids".into(),
                json!({"current": read_u64(&d.join("pids.current")), "limit": limit}),
            );
        }
        data.insert("blkio".into(), self.blkio_stats(layout));
        data.insert("hugetlb".into(), self.hugetlb_stats(layout));
        Value::Object(data)
    }

    fn cpu_stats(&self, layout: &Layout) -> Value {
        if let Some(d) = self.v1_dir(layout, "cpuacct") {
            let percpu: Vec<u64> = fs::read_to_string(d.join("cpuacct.usage_percpu"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            let st = read_kv(&d.join("cpuacct.stat"));
            // cpuacct.stat counts USER_HZ ticks.
            let tick_ns = 1_000_000_000 / 100;
            let throttle = self
                .v1_dir(layout, "cpu")
                .map(|c| read_kv(&c.join("cpu.stat")))
                .unwrap_or_default();
            return json!({
                "usage": {
                    "total": read_u64(&d.join("cpuacct.usage")),
                    "percpu": percpu,
                    "kernel": st.get("system").copied().unwrap_or(0) * tick_ns,
                    "user": st.get("user").copied().unwrap_or(0) * tick_ns,
                },
                "throttling": {
                    "periods": throttle.get("nr_periods").copied().unwrap_or(0),
                    "throttled_periods": throttle.get("nr_throttled").copied().unwrap_or(0),
                    "throttled_time": throttle.get("throttled_time").copied().unwrap_or(0),
                }
            });
        }
        let st = self
            .unified_dir(layout)
            .map(|d| read_kv(&d.join("cpu.stat")))
            .unwrap_or_default();
        let us = |k: &str| st.get(k).copied().unwrap_or(0) * 1000;
        json!({
            "usage": {"total": us("usage_usec"), "kernel": us("system_usec"), "user": us("user_usec")},
            "throttling": {
                "periods": st.get("nr_periods").copied().unwrap_or(0),
                "throttled_periods": st.get("nr_throttled").copied().unwrap_or(0),
                "throttled_time": us("throttled_usec"),
            }
        })
    }

    /// The memory object in runc's field order (its `cache` is omitempty).
    fn memory_stats(&self, layout: &Layout) -> Value {
        if let Some(d) = self.v1_dir(layout, "memory") {
            let raw = read_kv(&d.join("memory.stat"));
            let cache = raw
                .get("total_cache")
                .or(raw.get("cache"))
                .copied()
                .unwrap_or(0);
            let mut m = json!({
                "cache": cache,
                "usage": usage(d, "memory"),
                "swap": usage(d, "memory.memsw"),
                "kernel": usage(d, "memory.kmem"),
                "kernelTCP": usage(d, "memory.kmem.tcp"),
                "raw": raw,
            });
            omit_zero_cache(&mut m);
            return m;
        }
        let Some(d) = self.unified_dir(layout) else {
            return json!({});
        };
        let raw = read_kv(&d.join("memory.stat"));
        let max = fs::read_to_string(d.join("memory.max"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        let mut m = json!({
            "cache": raw.get("file").copied().unwrap_or(0),
            "usage": {"limit": max, "usage": read_u64(&d.join("memory.current")), "max": read_u64(&d.join("memory.peak"))},
            "swap": {"usage": read_u64(&d.join("memory.swap.current"))},
            "raw": raw,
        });
        omit_zero_cache(&mut m);
        m
    }

    fn blkio_stats(&self, layout: &Layout) -> Value {
        let Some(d) = self.v1_dir(layout, "blkio") else {
            return json!({});
        };
        let entries = |file: &str| -> Vec<Value> {
            fs::read_to_string(d.join(file))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    if f.len() != 3 {
                        return None;
                    }
                    let (maj, min) = f[0].split_once(':')?;
                    Some(json!({"major": maj.parse::<u64>().ok()?, "minor": min.parse::<u64>().ok()?, "op": f[1], "value": f[2].parse::<u64>().ok()?}))
                })
                .collect()
        };
        json!({
            "ioServiceBytesRecursive": entries("blkio.throttle.io_service_bytes_recursive"),
            "ioServicedRecursive": entries("blkio.throttle.io_serviced_recursive"),
        })
    }

    fn hugetlb_stats(&self, layout: &Layout) -> Value {
        let Some(d) = self.v1_dir(layout, "hugetlb") else {
            return json!({});
        };
        let mut out = Map::new();
        for entry in fs::read_dir(d).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(size) = name
                .strip_prefix("hugetlb.")
                .and_then(|n| n.strip_suffix(".usage_in_bytes"))
            else {
                continue;
            };
            if size.contains(".rsvd") {
                continue;
            }
            out.insert(
                size.to_string(),
                json!({
                    "usage": read_u64(&d.join(&name)),
                    "max": read_u64(&d.join(format!("hugetlb.{size}.max_usage_in_bytes"))),
                    "failcnt": read_u64(&d.join(format!("hugetlb.{size}.failcnt"))),
                }),
            );
        }
        Value::Object(out)
    }

    /// How many times the OOM killer has acted in this cgroup so far.
    pub fn oom_kills(&self, layout: &Layout) -> u64 {
        if let Some(d) = self.v1_dir(layout, "memory") {
            return read_kv(&d.join("memory.oom_control"))
                .get("oom_kill")
                .copied()
                .unwrap_or(0);
        }
        self.unified_dir(layout)
            .map(|d| {
                read_kv(&d.join("memory.events"))
                    .get("oom_kill")
                    .copied()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }
}

fn omit_zero_cache(m: &mut Value) {
    if m["cache"] == 0 {
        if let Some(o) = m.as_object_mut() {
            o.shift_remove("cache");
        }
    }
}
