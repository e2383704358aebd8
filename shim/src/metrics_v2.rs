//! `io.containerd.cgroups.v2.Metrics` for containers on cgroup2 hosts,
//! read from the cgroup's files and encoded by hand: containerd-shim-protos
//! carries only the v1 message. Field numbers follow containerd's
//! cgroup2/stats/metrics.proto.

use std::collections::HashMap;
use std::path::Path;

/// A protobuf message under construction (only what these metrics need:
/// varints and nested messages).
#[derive(Default)]
struct Msg(Vec<u8>);

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Msg {
    fn uint(&mut self, field: u64, v: u64) {
        // proto3 leaves zero values out.
        if v != 0 {
            put_varint(&mut self.0, field << 3);
            put_varint(&mut self.0, v);
        }
    }

    fn msg(&mut self, field: u64, m: Msg) {
        put_varint(&mut self.0, (field << 3) | 2);
        put_varint(&mut self.0, m.0.len() as u64);
        self.0.extend_from_slice(&m.0);
    }
}

/// `key value` lines (cpu.stat, memory.stat, memory.events).
fn flat(dir: &Path, file: &str) -> HashMap<String, u64> {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// A single-value file; `max` is 0 (no limit), as containerd reports it.
fn single(dir: &Path, file: &str) -> u64 {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

const MEMORY_FIELDS: &[(&str, u64)] = &[
    ("anon", 1),
    ("file", 2),
    ("kernel_stack", 3),
    ("slab", 4),
    ("sock", 5),
    ("shmem", 6),
    ("file_mapped", 7),
    ("file_dirty", 8),
    ("file_writeback", 9),
    ("anon_thp", 10),
    ("inactive_anon", 11),
    ("active_anon", 12),
    ("inactive_file", 13),
    ("active_file", 14),
    ("unevictable", 15),
    ("slab_reclaimable", 16),
    ("slab_unreclaimable", 17),
    ("pgfault", 18),
    ("pgmajfault", 19),
    ("workingset_refault", 20),
    ("workingset_activate", 21),
    ("workingset_nodereclaim", 22),
    ("pgrefill", 23),
    ("pgscan", 24),
    ("pgsteal", 25),
    ("pgactivate", 26),
    ("pgdeactivate", 27),
    ("pglazyfree", 28),
    ("pglazyfreed", 29),
    ("thp_fault_alloc", 30),
    ("thp_collapse_alloc", 31),
];

/// The encoded Metrics of the cgroup2 directory `dir`.
pub fn encode(dir: &Path) -> Vec<u8> {
    let mut m = Msg::default();

    let mut pids = Msg::default();
    pids.uint(1, single(dir, "pids.current"));
    pids.uint(2, single(dir, "pids.max"));
    m.msg(1, pids);

    let c = flat(dir, "cpu.stat");
    let mut cpu = Msg::default();
    for (k, f) in [
        ("usage_usec", 1),
        ("user_usec", 2),
        ("system_usec", 3),
        ("nr_periods", 4),
        ("nr_throttled", 5),
        ("throttled_usec", 6),
    ] {
        cpu.uint(f, c.get(k).copied().unwrap_or(0));
    }
    m.msg(2, cpu);

    let s = flat(dir, "memory.stat");
    let mut mem = Msg::default();
    for (k, f) in MEMORY_FIELDS {
        mem.uint(*f, s.get(*k).copied().unwrap_or(0));
    }
    mem.uint(32, single(dir, "memory.current"));
    mem.uint(33, single(dir, "memory.max"));
    mem.uint(34, single(dir, "memory.swap.current"));
    mem.uint(35, single(dir, "memory.swap.max"));
    m.msg(4, mem);

    let mut io = Msg::default();
    for line in std::fs::read_to_string(dir.join("io.stat"))
        .unwrap_or_default()
        .lines()
    {
        let mut parts = line.split_whitespace();
        let Some((major, minor)) = parts.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let mut e = Msg::default();
        e.uint(1, major.parse().unwrap_or(0));
        e.uint(2, minor.parse().unwrap_or(0));
        for kv in parts {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let f = match k {
                "rbytes" => 3,
                "wbytes" => 4,
                "rios" => 5,
                "wios" => 6,
                _ => continue,
            };
            e.uint(f, v.parse().unwrap_or(0));
        }
        io.msg(1, e);
    }
    m.msg(6, io);

    let ev = flat(dir, "memory.events");
    let mut events = Msg::default();
    for (k, f) in [
        ("low", 1),
        ("high", 2),
        ("max", 3),
        ("oom", 4),
        ("oom_kill", 5),
    ] {
        events.uint(f, ev.get(k).copied().unwrap_or(0));
    }
    m.msg(8, events);
    m.0
}

/// The cgroup2 directory of `pid` when it has no v1 controllers (a pure
/// cgroup2 host); None on v1 and hybrid hosts.
pub fn v2_dir(pid: i32) -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    if text.lines().any(|l| !l.starts_with("0::")) {
        return None;
    }
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_cgroup_files() {
        let dir = std::env::temp_dir().join(format!("berth-shim-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pids.current"), "3\n").unwrap();
        std::fs::write(dir.join("pids.max"), "max\n").unwrap();
        std::fs::write(
            dir.join("cpu.stat"),
            "usage_usec 300\nuser_usec 200\nsystem_usec 100\n",
        )
        .unwrap();
        std::fs::write(dir.join("memory.current"), "4096\n").unwrap();
        std::fs::write(dir.join("memory.events"), "low 0\noom_kill 2\n").unwrap();
        let b = encode(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        // pids {current: 3}
        assert_eq!(&b[..4], &[0x0a, 2, 0x08, 3]);
        // cpu {usage_usec: 300, user_usec: 200, system_usec: 100}
        assert_eq!(
            &b[4..15],
            &[0x12, 8, 0x08, 0xac, 0x02, 0x10, 0xc8, 0x01, 0x18, 0x64, 0x22]
        );
        // memory {usage (32): 4096} — a two-byte tag.
        assert_eq!(&b[14..20], &[0x22, 4, 0x80, 0x02, 0x80, 0x20]);
        // memory_events {oom_kill: 2}, after an empty io.
        assert_eq!(&b[b.len() - 4..], &[0x42, 2, 0x28, 2]);
    }
}
