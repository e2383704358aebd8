//! Per-task attributes of the container's process: scheduler, I/O priority,
//! CPU affinity, memory policy, personality (config.md "process",
//! config-linux.md "Personality", "Memory policy"), and the LSM labels.

use std::path::Path;

use oci_spec::runtime::{
    ExecCPUAffinity, IOPriorityClass, LinuxIOPriority, LinuxMemoryPolicy, LinuxPersonality,
    LinuxPersonalityDomain, LinuxSchedulerFlag, LinuxSchedulerPolicy, MemoryPolicyFlagType,
    MemoryPolicyModeType, Scheduler,
};

use crate::error::{Error, Result};

fn last_err(what: impl Into<String>) -> Error {
    Error::sys(what, std::io::Error::last_os_error())
}

/// `struct sched_attr` (the v1 layout with utilization clamps).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// config.md "process.scheduler": sched_setattr(2).
pub fn set_scheduler(s: &Scheduler) -> Result<()> {
    use LinuxSchedulerPolicy::*;
    let policy = match s.policy() {
        SchedOther => 0,
        SchedFifo => 1,
        SchedRr => 2,
        SchedBatch => 3,
        SchedIso => 4,
        SchedIdle => 5,
        SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        };
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        ..Default::default()
    };
    // SAFETY: sched_setattr on ourselves with a valid sched_attr.
    if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) } != 0 {
        return Err(last_err("set process.scheduler"));
    }
    Ok(())
}

/// config.md "process.ioPriority": ioprio_set(2).
pub fn set_io_priority(p: &LinuxIOPriority) -> Result<()> {
    let class = match p.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    if !(0..=7).contains(&p.priority()) {
        return Err(Error::Config(format!(
            "process.ioPriority.priority {}: must be 0 to 7",
            p.priority()
        )));
    }
    let value = (class << 13) | p.priority();
    // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, self, value).
    if unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, value) } != 0 {
        return Err(last_err("set process.ioPriority"));
    }
    Ok(())
}

/// Parses a kernel list ("0-3,7") into the set numbers.
pub fn parse_list(list: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b || b >= 8192 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => {
                let n: usize = part.parse().ok()?;
                if n >= 8192 {
                    return None;
                }
                out.push(n);
            }
        }
    }
    Some(out)
}

/// sched_setaffinity(2) to the CPUs of `list`.
pub fn set_cpu_affinity(pid: i32, list: &str, field: &str) -> Result<()> {
    let cpus = parse_list(list)
        .ok_or_else(|| Error::Config(format!("{field} {list:?}: not a CPU list")))?;
    // SAFETY: a zeroed cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in cpus {
        // SAFETY: c < 8192 is checked by parse_list; CPU_SET bounds-checks against the set size.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: sched_setaffinity with a valid set.
    if unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(last_err(format!("set {field} {list:?}")));
    }
    Ok(())
}

/// execCPUAffinity's `initial`, applied to the exec process before it joins
/// the container's cgroup (the final one is applied after).
pub fn initial_affinity(a: &ExecCPUAffinity) -> Option<&str> {
    a.initial().as_deref().filter(|s| !s.is_empty())
}

pub fn final_affinity(a: &ExecCPUAffinity) -> Option<&str> {
    a.cpu_affinity_final().as_deref().filter(|s| !s.is_empty())
}

/// config-linux.md "Memory policy": set_mempolicy(2).
pub fn set_memory_policy(p: &LinuxMemoryPolicy) -> Result<()> {
    use MemoryPolicyModeType::*;
    let mode: i32 = match p.mode() {
        MpolDefault => 0,
        MpolPreferred => 1,
        MpolBind => 2,
        MpolInterleave => 3,
        MpolLocal => 4,
        MpolPreferredMany => 5,
        MpolWeightedInterleave => 6,
    };
    let mut flags = 0i32;
    for f in p.flags().iter().flatten() {
        flags |= match f {
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
        };
    }
    let mut mask = [0u64; 16];
    if let Some(nodes) = p.nodes().as_deref() {
        let list = parse_list(nodes)
            .filter(|l| l.iter().all(|n| *n < 1024))
            .ok_or_else(|| {
                Error::Config(format!(
                    "linux.memoryPolicy.nodes {nodes:?}: not a node list"
                ))
            })?;
        for n in list {
            mask[n / 64] |= 1 << (n % 64);
        }
    }
    let empty = mask.iter().all(|m| *m == 0);
    let (ptr, maxnode) = if empty {
        (std::ptr::null(), 0)
    } else {
        (mask.as_ptr(), 1025u64)
    };
    // SAFETY: set_mempolicy with a nodemask of maxnode-1 bits.
    if unsafe { libc::syscall(libc::SYS_set_mempolicy, mode | flags, ptr, maxnode) } != 0 {
        return Err(last_err("set linux.memoryPolicy"));
    }
    Ok(())
}

/// config-linux.md "Personality": personality(2), just before exec.
pub fn set_personality(p: &LinuxPersonality) -> Result<()> {
    let mut value: libc::c_ulong = match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    for flag in p.flags().iter().flatten() {
        value |= match flag.as_str() {
            "UNAME26" => 0x0020000,
            "ADDR_NO_RANDOMIZE" => 0x0040000,
            "FDPIC_FUNCPTRS" => 0x0080000,
            "MMAP_PAGE_ZERO" => 0x0100000,
            "ADDR_COMPAT_LAYOUT" => 0x0200000,
            "READ_IMPLIES_EXEC" => 0x0400000,
            "ADDR_LIMIT_32BIT" => 0x0800000,
            "SHORT_INODE" => 0x1000000,
            "WHOLE_SECONDS" => 0x2000000,
            "STICKY_TIMEOUTS" => 0x4000000,
            "ADDR_LIMIT_3GB" => 0x8000000,
            other => {
                return Err(Error::Config(format!(
                    "linux.personality.flags: unknown flag {other:?}"
                )))
            }
        };
    }
    // SAFETY: personality(2) with a flag word.
    if unsafe { libc::personality(value) } < 0 {
        return Err(last_err("set linux.personality"));
    }
    Ok(())
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// Refuses, before anything is created, a label the kernel cannot apply.
pub fn validate_lsm(apparmor: Option<&str>, selinux: Option<&str>) -> Result<()> {
    if apparmor.is_some_and(|p| !p.is_empty()) && !apparmor_enabled() {
        return Err(Error::Unsupported(
            "process.apparmorProfile (AppArmor is not enabled on this host)".into(),
        ));
    }
    if selinux.is_some_and(|l| !l.is_empty()) && !selinux_enabled() {
        return Err(Error::Unsupported(
            "process.selinuxLabel (SELinux is not enabled on this host)".into(),
        ));
    }
    Ok(())
}

/// The AppArmor profile and SELinux label the next execve takes on,
/// written through the verified procfs.
pub fn set_exec_labels(
    proc: &crate::procfs::ProcRoot,
    apparmor: Option<&str>,
    selinux: Option<&str>,
) -> Result<()> {
    if let Some(profile) = apparmor.filter(|p| !p.is_empty()) {
        let path = if proc.exists("self/attr/apparmor/exec") {
            "self/attr/apparmor/exec"
        } else {
            "self/attr/exec"
        };
        proc.write("process.apparmorProfile", path, &format!("exec {profile}"))?;
    }
    if let Some(label) = selinux.filter(|l| !l.is_empty()) {
        proc.write("process.selinuxLabel", "self/attr/exec", label)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_list("0-3,7"), Some(vec![0, 1, 2, 3, 7]));
        assert_eq!(parse_list("5"), Some(vec![5]));
        assert_eq!(parse_list(""), Some(vec![]));
        assert_eq!(parse_list("3-1"), None);
        assert_eq!(parse_list("x"), None);
        assert_eq!(parse_list("0-99999"), None);
    }
}
