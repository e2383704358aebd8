//! Resource limits (config-linux.md "Control groups": memory, cpu, pids,
//! blockIO, hugepageLimits, network, rdma, unified), written to v1
//! controller files or their cgroup v2 equivalents, converted as runc
//! converts them.

use std::fs;
use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::{write, Cgroup, Hierarchy, Layout};
use crate::error::{Error, Result};

/// One control-file write: which controller, which file, what value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub controller: &'static str,
    pub file: String,
    pub value: String,
}

fn w(controller: &'static str, file: impl Into<String>, value: impl ToString) -> Write {
    Write {
        controller,
        file: file.into(),
        value: value.to_string(),
    }
}

/// cpu.shares (2..262144) → cpu.weight (1..10000), runc's formula.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// blkio.weight (10..1000) → io.weight (1..10000), runc's formula.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (u64::from(weight).clamp(10, 1000) - 10) * 9999 / 990
}

/// v2 takes "max" where v1 takes -1.
fn limit_v2(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// pids.max, the same file in v1 and v2 ("max" for no limit).
fn pids_max(p: &oci_spec::runtime::LinuxPids) -> Write {
    let v = if p.limit() > 0 {
        p.limit().to_string()
    } else {
        "max".into()
    };
    w("pids", "pids.max", v)
}

/// cpuset.cpus and cpuset.mems, the same files in v1 and v2.
fn cpuset(c: &LinuxCpu, out: &mut Vec<Write>) {
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        out.push(w("cpuset", "cpuset.cpus", cpus));
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        out.push(w("cpuset", "cpuset.mems", mems));
    }
}

/// What the v1 writes depend on in the cgroup as it is now.
#[derive(Debug, Default, Clone, Copy)]
pub struct V1Current {
    /// memory.limit_in_bytes (-1 for none).
    pub memory_limit: Option<i64>,
    /// Whether memory.memsw.* exists (swap accounting is on).
    pub has_memsw: bool,
    /// Whether only BFQ's weight files exist (blkio.bfq.weight).
    pub bfq_weight: bool,
}

/// The v1 writes for `r`, in an order the kernel accepts.
pub fn v1_writes(r: &LinuxResources, now: V1Current) -> Result<Vec<Write>> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        v1_memory(m, now, &mut out);
    }
    if let Some(c) = r.cpu() {
        v1_cpu(c, &mut out);
    }
    if let Some(p) = r.pids() {
        out.push(pids_max(p));
    }
    if let Some(b) = r.block_io() {
        v1_blkio(b, now.bfq_weight, &mut out);
    }
    for h in r.hugepage_limits().iter().flatten() {
        out.push(w(
            "hugetlb",
            format!("hugetlb.{}.limit_in_bytes", h.page_size()),
            h.limit(),
        ));
    }
    if let Some(n) = r.network() {
        if let Some(id) = n.class_id() {
            out.push(w("net_cls", "net_cls.classid", id));
        }
        for p in n.priorities().iter().flatten() {
            out.push(w(
                "net_prio",
                "net_prio.ifpriomap",
                format!("{} {}", p.name(), p.priority()),
            ));
        }
    }
    for (dev, limit) in r.rdma().iter().flatten() {
        out.push(w(
            "rdma",
            "rdma.max",
            rdma_line(dev, limit.hca_handles(), limit.hca_objects()),
        ));
    }
    Ok(out)
}

fn rdma_line(dev: &str, handles: Option<u32>, objects: Option<u32>) -> String {
    let mut line = dev.to_string();
    if let Some(h) = handles {
        line.push_str(&format!(" hca_handle={h}"));
    }
    if let Some(o) = objects {
        line.push_str(&format!(" hca_object={o}"));
    }
    line
}

/// memory.limit_in_bytes must stay ≤ memory.memsw.limit_in_bytes at every
/// step; runc's order: an unlimited memory without a swap value makes swap
/// unlimited too, and swap goes first when it is unlimited or above the
/// current memory limit.
fn v1_memory(m: &LinuxMemory, now: V1Current, out: &mut Vec<Write>) {
    let swap_value = match (m.limit(), m.swap()) {
        (Some(-1), None | Some(0)) if now.has_memsw => Some(-1),
        (_, s) => s.filter(|s| *s != 0),
    };
    let limit = m
        .limit()
        .filter(|l| *l != 0)
        .map(|l| w("memory", "memory.limit_in_bytes", l));
    let swap = swap_value.map(|s| w("memory", "memory.memsw.limit_in_bytes", s));
    let swap_first = match (limit.is_some(), swap_value) {
        (true, Some(-1)) => true,
        (true, Some(s)) => now.memory_limit.is_some_and(|cur| cur != -1 && cur < s),
        _ => false,
    };
    if swap_first {
        out.extend(swap);
        out.extend(limit);
    } else {
        out.extend(limit);
        out.extend(swap);
    }
    if let Some(r) = m.reservation() {
        out.push(w("memory", "memory.soft_limit_in_bytes", r));
    }
    if let Some(s) = m.swappiness() {
        out.push(w("memory", "memory.swappiness", s));
    }
    if m.disable_oom_killer() == Some(true) {
        out.push(w("memory", "memory.oom_control", 1));
    }
}

fn v1_cpu(c: &LinuxCpu, out: &mut Vec<Write>) {
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        out.push(w("cpu", "cpu.shares", s));
    }
    // The period first: a quota is checked against it.
    if let Some(p) = c.period().filter(|p| *p != 0) {
        out.push(w("cpu", "cpu.cfs_period_us", p));
    }
    if let Some(q) = c.quota().filter(|q| *q != 0) {
        out.push(w("cpu", "cpu.cfs_quota_us", q));
    }
    if let Some(b) = c.burst() {
        out.push(w("cpu", "cpu.cfs_burst_us", b));
    }
    if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
        out.push(w("cpu", "cpu.rt_period_us", p));
    }
    if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
        out.push(w("cpu", "cpu.rt_runtime_us", r));
    }
    if let Some(i) = c.idle() {
        out.push(w("cpu", "cpu.idle", i));
    }
    cpuset(c, out);
}

/// With the BFQ scheduler (and CFQ gone) the weights are BFQ's files, as
/// runc finds them.
fn v1_blkio(b: &LinuxBlockIo, bfq: bool, out: &mut Vec<Write>) {
    let (weight, weight_device) = if bfq {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        ("blkio.weight", "blkio.weight_device")
    };
    if let Some(v) = b.weight().filter(|v| *v != 0) {
        out.push(w("blkio", weight, v));
    }
    if let Some(v) = b.leaf_weight().filter(|v| *v != 0) {
        out.push(w("blkio", "blkio.leaf_weight", v));
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(v) = d.weight() {
            out.push(w(
                "blkio",
                weight_device,
                format!("{}:{} {v}", d.major(), d.minor()),
            ));
        }
        if let Some(v) = d.leaf_weight() {
            out.push(w(
                "blkio",
                "blkio.leaf_weight_device",
                format!("{}:{} {v}", d.major(), d.minor()),
            ));
        }
    }
    let throttles = [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
        ),
    ];
    for (list, file) in throttles {
        for d in list.iter().flatten() {
            out.push(w(
                "blkio",
                file,
                format!("{}:{} {}", d.major(), d.minor(), d.rate()),
            ));
        }
    }
}

/// The cgroup v2 writes for `r` (controller names are v2's). With `bfq`
/// (io.bfq.weight exists) the weight goes there unconverted, as runc does.
pub fn v2_writes(r: &LinuxResources, bfq: bool) -> Result<Vec<Write>> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            out.push(w("memory", "memory.max", limit_v2(l)));
        }
        if let Some(res) = m.reservation() {
            out.push(w("memory", "memory.low", limit_v2(res)));
        }
        // v1's swap is memory+swap; v2's memory.swap.max is swap alone.
        if let Some(s) = m.swap() {
            let v = match (s, m.limit()) {
                (-1, _) => "max".to_string(),
                (s, Some(l)) if l >= 0 => {
                    if s < l {
                        return Err(Error::Config(format!(
                            "linux.resources.memory.swap {s}: less than the memory limit {l}"
                        )));
                    }
                    (s - l).to_string()
                }
                (s, _) => s.to_string(),
            };
            out.push(w("memory", "memory.swap.max", v));
        }
        if m.swappiness().is_some() {
            tracing::warn!(
                "linux.resources.memory.swappiness: not supported on cgroup v2, ignored"
            );
        }
        if m.disable_oom_killer() == Some(true) {
            tracing::warn!(
                "linux.resources.memory.disableOOMKiller: not supported on cgroup v2, ignored"
            );
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            out.push(w("cpu", "cpu.weight", shares_to_weight(s)));
        }
        if c.quota().is_some() || c.period().is_some() {
            let quota = match c.quota() {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".into(),
            };
            let period = c.period().filter(|p| *p != 0).unwrap_or(100_000);
            out.push(w("cpu", "cpu.max", format!("{quota} {period}")));
        }
        if let Some(b) = c.burst() {
            out.push(w("cpu", "cpu.max.burst", b));
        }
        if let Some(i) = c.idle() {
            out.push(w("cpu", "cpu.idle", i));
        }
        if c.realtime_runtime().is_some_and(|r| r != 0)
            || c.realtime_period().is_some_and(|p| p != 0)
        {
            return Err(Error::Unsupported(
                "linux.resources.cpu.realtimeRuntime on cgroup v2".into(),
            ));
        }
        cpuset(c, &mut out);
    }
    if let Some(p) = r.pids() {
        out.push(pids_max(p));
    }
    if let Some(b) = r.block_io() {
        if let Some(v) = b.weight().filter(|v| *v != 0) {
            if bfq {
                out.push(w("io", "io.bfq.weight", v));
            } else {
                out.push(w(
                    "io",
                    "io.weight",
                    format!("default {}", blkio_weight_to_io_weight(v)),
                ));
            }
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(v) = d.weight() {
                out.push(w(
                    "io",
                    "io.weight",
                    format!(
                        "{}:{} {}",
                        d.major(),
                        d.minor(),
                        blkio_weight_to_io_weight(v)
                    ),
                ));
            }
        }
        let throttles = [
            (b.throttle_read_bps_device(), "rbps"),
            (b.throttle_write_bps_device(), "wbps"),
            (b.throttle_read_iops_device(), "riops"),
            (b.throttle_write_iops_device(), "wiops"),
        ];
        for (list, key) in throttles {
            for d in list.iter().flatten() {
                out.push(w(
                    "io",
                    "io.max",
                    format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
                ));
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        out.push(w(
            "hugetlb",
            format!("hugetlb.{}.max", h.page_size()),
            limit_v2(h.limit()),
        ));
    }
    if r.network().is_some() {
        tracing::warn!(
            "linux.resources.network: net_cls/net_prio do not exist on cgroup v2, ignored"
        );
    }
    for (dev, limit) in r.rdma().iter().flatten() {
        out.push(w(
            "rdma",
            "rdma.max",
            rdma_line(dev, limit.hca_handles(), limit.hca_objects()),
        ));
    }
    Ok(out)
}

/// The config field a controller's values come from, for errors.
fn field_of(controller: &str) -> &'static str {
    match controller {
        "memory" => "linux.resources.memory",
        "cpu" => "linux.resources.cpu",
        "cpuset" => "linux.resources.cpu.cpus/mems",
        "pids" => "linux.resources.pids",
        "blkio" | "io" => "linux.resources.blockIO",
        "hugetlb" => "linux.resources.hugepageLimits",
        "net_cls" | "net_prio" => "linux.resources.network",
        "rdma" => "linux.resources.rdma",
        _ => "linux.resources",
    }
}

/// Checks, before anything is created, what the host's cgroup layout
/// cannot apply at all (runc's validation).
pub fn validate(layout: &Layout, r: &LinuxResources) -> Result<()> {
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) && !layout.is_pure_v2() {
        return Err(Error::Config(
            "linux.resources.unified: invalid configuration: cannot use unified on cgroup v1"
                .into(),
        ));
    }
    Ok(())
}

impl Cgroup {
    /// Applies every resource of `r` to the hierarchy that holds its
    /// controller: v1 where the controller is mounted as v1, else cgroup
    /// v2. On a hybrid host a controller cgroup2 would have to be given in
    /// its root is an error: enabling one there pins it to v2 for good.
    pub fn apply_resources(&self, layout: &Layout, r: &LinuxResources) -> Result<()> {
        let kernel = r
            .memory()
            .as_ref()
            .and_then(|m| m.kernel().or(m.kernel_tcp()));
        if kernel.is_some() {
            tracing::warn!("linux.resources.memory.kernel/kernelTCP: not supported by this kernel, ignored (as runc 1.1)");
        }
        validate(layout, r)?;
        let memory_dir = self.v1_dir(layout, "memory");
        let blkio_dir = self.v1_dir(layout, "blkio");
        let now = V1Current {
            memory_limit: memory_dir
                .and_then(|d| fs::read_to_string(d.join("memory.limit_in_bytes")).ok())
                .and_then(|s| s.trim().parse::<i64>().ok())
                .map(|v| if v >= i64::MAX / 2 { -1 } else { v }),
            has_memsw: memory_dir.is_some_and(|d| d.join("memory.memsw.limit_in_bytes").exists()),
            bfq_weight: blkio_dir.is_some_and(|d| {
                !d.join("blkio.weight").exists() && d.join("blkio.bfq.weight").exists()
            }),
        };
        let mut v2_needed = Vec::new();
        for write in v1_writes(r, now)? {
            match self.hierarchy_dir(layout, |h| h.has(write.controller)) {
                Some((h, dir)) if !h.is_v2() => write_v1(dir, &write, r)?,
                _ => v2_needed.push(v2_name(write.controller)),
            }
        }
        if v2_needed.is_empty() && r.unified().as_ref().is_none_or(|u| u.is_empty()) {
            return Ok(());
        }
        let Some((h, dir)) = self.hierarchy_dir(layout, Hierarchy::is_v2) else {
            return Err(Error::Unsupported(format!(
                "{}: the {} controller is not mounted on this host",
                field_of(v2_needed[0]),
                v2_needed[0]
            )));
        };
        let bfq = dir.join("io.bfq.weight").exists();
        for write in v2_writes(r, bfq)?
            .iter()
            .filter(|wr| v2_needed.contains(&wr.controller))
        {
            enable_controller(layout, h, dir, write.controller)?;
            write_resource(dir, write)?;
            // The reservation limit (Linux 5.7+) gets the same value, as
            // runc sets it: otherwise reserved pages escape the limit.
            if let Some(size) = write
                .file
                .strip_prefix("hugetlb.")
                .and_then(|f| f.strip_suffix(".max"))
            {
                let rsvd = dir.join(format!("hugetlb.{size}.rsvd.max"));
                if rsvd.exists() {
                    super::write(&rsvd, &write.value)?;
                }
            }
        }
        for (key, value) in r.unified().iter().flatten() {
            let core_file = key.starts_with("cgroup.")
                && key != "cgroup.max.depth"
                && key != "cgroup.max.descendants";
            if key.contains('/') || core_file {
                return Err(Error::Config(format!(
                    "linux.resources.unified: {key:?} is not a controller file"
                )));
            }
            if let Some(ctrl) = key.split('.').next() {
                enable_controller(layout, h, dir, ctrl)?;
            }
            write(&dir.join(key), value)
                .map_err(|e| Error::Other(format!("linux.resources.unified {key}: {e}")))?;
        }
        Ok(())
    }
}

/// One v1 write, with runc's retry: a shorter cpu period can be refused
/// (EINVAL) while the old quota over it exceeds the parent's limit, so the
/// quota goes first and the period is written again after it.
fn write_v1(dir: &Path, wr: &Write, r: &LinuxResources) -> Result<()> {
    let quota_follows = r
        .cpu()
        .as_ref()
        .and_then(|c| c.quota())
        .is_some_and(|q| q != 0);
    if wr.file == "cpu.cfs_period_us" && quota_follows {
        let path = dir.join(&wr.file);
        if let Err(Error::Sys { source, .. }) = write(&path, &wr.value) {
            if source.raw_os_error() != Some(libc::EINVAL) {
                return Err(Error::Sys {
                    what: format!(
                        "linux.resources.cpu.period: write {:?} to {}",
                        wr.value,
                        path.display()
                    ),
                    source,
                });
            }
            let quota = r.cpu().as_ref().and_then(|c| c.quota()).unwrap_or(0);
            write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            return write(&path, &wr.value);
        }
        return Ok(());
    }
    write_resource(dir, wr)
}

/// v1's blkio is v2's io; the rest keep their names.
fn v2_name(v1: &'static str) -> &'static str {
    match v1 {
        "blkio" => "io",
        other => other,
    }
}

fn write_resource(dir: &Path, wr: &Write) -> Result<()> {
    let path = dir.join(&wr.file);
    if !path.exists() {
        let what = if wr.controller == "hugetlb" {
            "cannot set hugetlb limit"
        } else {
            "cannot set the limit"
        };
        return Err(Error::Unsupported(format!(
            "{}: {what}: no {} in the {} cgroup",
            field_of(wr.controller),
            wr.file,
            wr.controller
        )));
    }
    write(&path, &wr.value).map_err(|e| match e {
        Error::Sys { what, source } => Error::Sys {
            what: format!("{}: {what}", field_of(wr.controller)),
            source,
        },
        other => other,
    })
}

/// cgroup v2 only offers a controller's files in a cgroup whose ancestors
/// all delegate it: add it to each ancestor's cgroup.subtree_control. Never
/// in the root of a hybrid host's cgroup2: a controller enabled there can
/// no longer be mounted as v1 (crun then refuses the host until reboot).
fn enable_controller(layout: &Layout, h: &Hierarchy, dir: &Path, controller: &str) -> Result<()> {
    let Ok(rel) = dir.strip_prefix(&h.mount_point) else {
        return Ok(());
    };
    let mut current = h.mount_point.clone();
    for c in rel.components() {
        let control = current.join("cgroup.subtree_control");
        let enabled = fs::read_to_string(&control).unwrap_or_default();
        if !enabled.split_whitespace().any(|e| e == controller) {
            let available =
                fs::read_to_string(current.join("cgroup.controllers")).unwrap_or_default();
            if !available.split_whitespace().any(|e| e == controller) {
                return Err(Error::Unsupported(format!(
                    "{}: the {controller} controller is not available in {}",
                    field_of(controller),
                    current.display()
                )));
            }
            let is_root = current == h.mount_point && h.mount_root == Path::new("/");
            if is_root && !layout.is_pure_v2() {
                return Err(Error::Unsupported(format!(
                    "{}: the {controller} controller would have to be enabled in the root of this hybrid host's cgroup2 ({}), which pins it to cgroup v2 until reboot",
                    field_of(controller),
                    current.display()
                )));
            }
            write(&control, &format!("+{controller}"))?;
        }
        current.push(c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
    }

    #[test]
    fn v1_memory_order() {
        let r = res(json!({"memory": {"limit": 100, "swap": 200}}));
        let now = |limit| V1Current {
            memory_limit: Some(limit),
            has_memsw: true,
            bfq_weight: false,
        };
        // Swap above the current memory limit: swap first.
        let growing = v1_writes(&r, now(150)).unwrap();
        assert_eq!(growing[0].file, "memory.memsw.limit_in_bytes");
        let shrinking = v1_writes(&r, now(300)).unwrap();
        assert_eq!(shrinking[0].file, "memory.limit_in_bytes");
        let unlimited = v1_writes(
            &res(json!({"memory": {"limit": 100, "swap": -1}})),
            now(300),
        )
        .unwrap();
        assert_eq!(unlimited[0].file, "memory.memsw.limit_in_bytes");
        // `update --memory -1` after a swap limit: swap becomes unlimited, first.
        let lifted = v1_writes(&res(json!({"memory": {"limit": -1}})), now(300)).unwrap();
        assert_eq!(
            lifted
                .iter()
                .map(|w| (w.file.as_str(), w.value.as_str()))
                .collect::<Vec<_>>(),
            [
                ("memory.memsw.limit_in_bytes", "-1"),
                ("memory.limit_in_bytes", "-1")
            ]
        );
        let bfq = V1Current {
            bfq_weight: true,
            ..now(300)
        };
        let weights = v1_writes(&res(json!({"blockIO": {"weight": 300}})), bfq).unwrap();
        assert_eq!(weights[0].file, "blkio.bfq.weight");
    }

    #[test]
    fn v2_values() {
        let r = res(json!({
            "memory": {"limit": 1000, "swap": 3000, "reservation": 500},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0", "burst": 10},
            "pids": {"limit": 0},
            "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": -1}]
        }));
        let got: Vec<(String, String)> = v2_writes(&r, false)
            .unwrap()
            .into_iter()
            .map(|w| (w.file, w.value))
            .collect();
        let want = [
            ("memory.max", "1000"),
            ("memory.low", "500"),
            ("memory.swap.max", "2000"),
            ("cpu.weight", "39"),
            ("cpu.max", "50000 100000"),
            ("cpu.max.burst", "10"),
            ("cpuset.cpus", "0"),
            ("pids.max", "max"),
            ("io.weight", "default 4950"),
            ("io.max", "254:0 rbps=1048576"),
            ("hugetlb.2MB.max", "max"),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        );
        let bad = res(json!({"memory": {"limit": 1000, "swap": 10}}));
        assert!(v2_writes(&bad, false).is_err());
        let bfq = v2_writes(&res(json!({"blockIO": {"weight": 500}})), true).unwrap();
        assert_eq!(
            (bfq[0].file.as_str(), bfq[0].value.as_str()),
            ("io.bfq.weight", "500")
        );
    }
}
