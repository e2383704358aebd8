//! `stats`: a running container's use of CPU, memory, block I/O and pids,
//! read from its cgroup (found through `/proc/PID/cgroup` of its init, in
//! the hierarchies `/proc/self/mountinfo` lists: cgroup v1 files on a v1
//! or hybrid host, v2 files where the controller is on cgroup2), and of
//! the network from its namespace's `/proc/PID/net/dev`; formatted as
//! docker's columns.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::containers::{Container, Containers};
use crate::error::{Error, Result};

/// One reading.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// CPU time of the container, in nanoseconds.
    pub cpu: u64,
    /// CPU time of the whole machine, in nanoseconds (`/proc/stat`).
    pub system_cpu: u64,
    pub online_cpus: u32,
    /// Memory in use, without the inactive page cache (as docker counts).
    pub memory: u64,
    /// The limit, or the machine's memory when there is none.
    pub memory_limit: u64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub block_read: u64,
    pub block_write: u64,
    pub pids: u64,
}

/// The cgroup directories of a process: one per v1 controller, or the
/// single v2 one.
struct Cgroups {
    v1: Vec<(String, PathBuf)>,
    v2: Option<PathBuf>,
}

impl Cgroups {
    /// Where `pid`'s cgroups are mounted, from mountinfo and its
    /// `/proc/PID/cgroup`.
    fn of(pid: i32) -> Result<Cgroups> {
        let own = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|e| Error::Other(format!("read /proc/{pid}/cgroup: {e}")))?;
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::Other(format!("read /proc/self/mountinfo: {e}")))?;
        // (mount point, fstype, super options) of each cgroup mount.
        let mounts: Vec<(String, String, String)> = mountinfo
            .lines()
            .filter_map(|l| {
                let (pre, post) = l.split_once(" - ")?;
                let mp = pre.split(' ').nth(4)?.to_string();
                let mut post = post.split(' ');
                let fstype = post.next()?.to_string();
                let opts = post.nth(1)?.to_string();
                fstype.starts_with("cgroup").then_some((mp, fstype, opts))
            })
            .collect();
        let mut out = Cgroups {
            v1: Vec::new(),
            v2: None,
        };
        for line in own.lines() {
            let mut f = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let rel = path.trim_start_matches('/');
            if controllers.is_empty() {
                if let Some((mp, _, _)) = mounts.iter().find(|m| m.1 == "cgroup2") {
                    out.v2 = Some(PathBuf::from(mp).join(rel));
                }
                continue;
            }
            for c in controllers.split(',') {
                let mount = mounts
                    .iter()
                    .find(|m| m.1 == "cgroup" && m.2.split(',').any(|o| o == c));
                if let Some((mp, _, _)) = mount {
                    out.v1.push((c.to_string(), PathBuf::from(mp).join(rel)));
                }
            }
        }
        Ok(out)
    }

    /// A file of `controller` (v1), else of the v2 group.
    fn file(&self, controller: &str, v1: &str, v2: &str) -> Option<String> {
        if let Some((_, dir)) = self.v1.iter().find(|(c, _)| c == controller) {
            return fs::read_to_string(dir.join(v1)).ok();
        }
        fs::read_to_string(self.v2.as_ref()?.join(v2)).ok()
    }

    fn is_v1(&self, controller: &str) -> bool {
        self.v1.iter().any(|(c, _)| c == controller)
    }
}

fn number(s: Option<String>) -> Option<u64> {
    s?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat): the value of `key`.
fn keyed(s: &Option<String>, key: &str) -> Option<u64> {
    s.as_ref()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// The machine's memory (`MemTotal`), in bytes.
fn host_memory() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                let rest = l.strip_prefix("MemTotal:")?;
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
        })
        .map_or(0, |kb| kb * 1024)
}

/// The machine's CPU time in nanoseconds, and its CPU count.
fn system_cpu() -> (u64, u32) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    // SAFETY: sysconf with an integer argument.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let total = stat
        .lines()
        .next()
        .filter(|l| l.starts_with("cpu "))
        .map_or(0, |l| {
            l.split_whitespace()
                .skip(1)
                .take(8)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum::<u64>()
        });
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u32;
    (total * 1_000_000_000 / tick, cpus.max(1))
}

/// Reads the counters of the container whose init is `pid`.
pub fn sample(pid: i32) -> Result<Sample> {
    let cg = Cgroups::of(pid)?;
    let (system_cpu, online_cpus) = system_cpu();
    let cpu = if cg.is_v1("cpuacct") {
        number(cg.file("cpuacct", "cpuacct.usage", "")).unwrap_or(0)
    } else {
        keyed(&cg.file("cpu", "", "cpu.stat"), "usage_usec").unwrap_or(0) * 1000
    };
    let v1_memory = cg.is_v1("memory");
    let (usage, stat, limit) = if v1_memory {
        (
            number(cg.file("memory", "memory.usage_in_bytes", "")),
            cg.file("memory", "memory.stat", ""),
            number(cg.file("memory", "memory.limit_in_bytes", "")),
        )
    } else {
        (
            number(cg.file("memory", "", "memory.current")),
            cg.file("memory", "", "memory.stat"),
            number(cg.file("memory", "", "memory.max")),
        )
    };
    let inactive = keyed(
        &stat,
        if v1_memory {
            "total_inactive_file"
        } else {
            "inactive_file"
        },
    )
    .unwrap_or(0);
    let usage = usage.unwrap_or(0);
    let memory = if inactive < usage {
        usage - inactive
    } else {
        usage
    };
    let host = host_memory();
    let memory_limit = limit.filter(|l| *l > 0 && *l < host).unwrap_or(host);
    let (block_read, block_write) = if cg.is_v1("blkio") {
        let s = cg
            .file("blkio", "blkio.throttle.io_service_bytes_recursive", "")
            .filter(|s| s.lines().any(|l| l.contains("Read")))
            .or_else(|| cg.file("blkio", "blkio.io_service_bytes_recursive", ""))
            .unwrap_or_default();
        let sum = |op: &str| -> u64 {
            s.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() == 3 && f[1] == op).then(|| f[2].parse::<u64>().ok())?
                })
                .sum()
        };
        (sum("Read"), sum("Write"))
    } else {
        let s = cg.file("io", "", "io.stat").unwrap_or_default();
        let sum = |key: &str| -> u64 {
            s.split_whitespace()
                .filter_map(|kv| kv.strip_prefix(key)?.parse::<u64>().ok())
                .sum()
        };
        (sum("rbytes="), sum("wbytes="))
    };
    let pids = number(cg.file("pids", "pids.current", "pids.current")).unwrap_or(0);
    let (mut net_rx, mut net_tx) = (0, 0);
    let dev = fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    for l in dev.lines().skip(2) {
        let Some((iface, counters)) = l.split_once(':') else {
            continue;
        };
        if iface.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() >= 9 {
            net_rx += f[0];
            net_tx += f[8];
        }
    }
    Ok(Sample {
        cpu,
        system_cpu,
        online_cpus,
        memory,
        memory_limit,
        net_rx,
        net_tx,
        block_read,
        block_write,
        pids,
    })
}

/// docker's CPU %: the container's share of the machine's CPU time
/// between two readings, times the CPUs.
pub fn cpu_percent(before: &Sample, after: &Sample) -> f64 {
    let cpu = after.cpu.saturating_sub(before.cpu) as f64;
    let system = after.system_cpu.saturating_sub(before.system_cpu) as f64;
    if cpu > 0.0 && system > 0.0 {
        cpu / system * f64::from(after.online_cpus) * 100.0
    } else {
        0.0
    }
}

/// Go's `%.Ng`, for the magnitudes sizes take (below 10^N).
fn go_g(x: f64, digits: i32) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn scaled(n: u64, base: f64, units: &[&str], digits: i32) -> String {
    let mut x = n as f64;
    let mut i = 0;
    while x >= base && i + 1 < units.len() {
        x /= base;
        i += 1;
    }
    format!("{}{}", go_g(x, digits), units[i])
}

/// go-units' `BytesSize`: `1.504MiB`.
pub fn bytes_size(n: u64) -> String {
    scaled(n, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"], 4)
}

/// go-units' `HumanSizeWithPrecision(n, 3)`: `1.23kB`.
pub fn human_size(n: u64) -> String {
    scaled(n, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"], 3)
}

/// The row `stats` prints for a container, under docker's field names
/// (`{{.Name}}`, `{{.CPUPerc}}`, `{{.MemUsage}}`, ...).
pub fn row(id: &str, name: &str, readings: Option<(&Sample, &Sample)>) -> Value {
    let Some((before, after)) = readings else {
        return json!({
            "Container": name, "ID": id.chars().take(12).collect::<String>(), "Name": name,
            "CPUPerc": "0.00%", "MemUsage": "0B / 0B", "MemPerc": "0.00%",
            "NetIO": "0B / 0B", "BlockIO": "0B / 0B", "PIDs": "0",
        });
    };
    let mem_perc = if after.memory_limit > 0 {
        after.memory as f64 / after.memory_limit as f64 * 100.0
    } else {
        0.0
    };
    json!({
        "Container": name,
        "ID": id.chars().take(12).collect::<String>(),
        "Name": name,
        "CPUPerc": format!("{:.2}%", cpu_percent(before, after)),
        "MemUsage": format!("{} / {}", bytes_size(after.memory), bytes_size(after.memory_limit)),
        "MemPerc": format!("{mem_perc:.2}%"),
        "NetIO": format!("{} / {}", human_size(after.net_rx), human_size(after.net_tx)),
        "BlockIO": format!("{} / {}", human_size(after.block_read), human_size(after.block_write)),
        "PIDs": after.pids.to_string(),
    })
}

/// The `stats` rows of `containers`: two readings `interval` apart of
/// each one that runs (zeros for the others), as docker's CPU % needs.
pub fn rows(cs: &Containers, containers: &[Container], interval: Duration) -> Vec<Value> {
    let pid_of = |c: &Container| -> Option<i32> {
        let (status, state) = cs.status_and_state(c);
        status.is_running().then_some(state.init?.pid)
    };
    let first: Vec<Option<(i32, Sample)>> = containers
        .iter()
        .map(|c| {
            let pid = pid_of(c)?;
            Some((pid, sample(pid).ok()?))
        })
        .collect();
    if first.iter().any(Option::is_some) {
        std::thread::sleep(interval);
    }
    containers
        .iter()
        .zip(first)
        .map(|(c, before)| {
            let after = before.as_ref().and_then(|(pid, _)| sample(*pid).ok());
            match (&before, &after) {
                (Some((_, b)), Some(a)) => row(&c.id, &c.name, Some((b, a))),
                _ => row(&c.id, &c.name, None),
            }
        })
        .collect()
}

/// docker's default `stats` format and its column titles.
pub const DEFAULT_FORMAT: &str =
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

pub fn headers() -> Value {
    json!({
        "Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME",
        "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
        "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(bytes_size(0), "0B");
        assert_eq!(bytes_size(1_577_058), "1.504MiB");
        assert_eq!(bytes_size(16_664_412_160), "15.52GiB");
        assert_eq!(bytes_size(1024), "1KiB");
        assert_eq!(human_size(648), "648B");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(12_345_678), "12.3MB");
    }

    #[test]
    fn cpu_share() {
        let a = Sample {
            cpu: 0,
            system_cpu: 0,
            online_cpus: 2,
            ..Default::default()
        };
        let b = Sample {
            cpu: 500,
            system_cpu: 2000,
            online_cpus: 2,
            ..Default::default()
        };
        assert_eq!(cpu_percent(&a, &b), 50.0);
        let r = row("0123456789abcdef", "web", Some((&a, &b)));
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["CPUPerc"], "50.00%");
    }

    #[test]
    fn this_process_has_cgroups() {
        let s = sample(std::process::id() as i32).unwrap();
        assert!(s.memory_limit > 0 && s.system_cpu > 0, "{s:?}");
    }
}
