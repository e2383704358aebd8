//! What changes when berth runs for a user without root (runc's
//! `rootless_linux.go`, podman's `pkg/rootless`), kept in one place rather
//! than as `if rootless` through the start path:
//!
//! - whether berth is rootless at all (`--rootless auto|true|false`), and
//!   where its state lives then (`$XDG_RUNTIME_DIR/berth`);
//! - the user namespace's maps: a single mapping of the caller's own ids is
//!   written directly (after `setgroups deny`), anything else goes through
//!   the setuid `newuidmap`/`newgidmap` against /etc/subuid and /etc/subgid;
//! - cgroups: used only where the user's cgroup is delegated (cgroup v2,
//!   writable); otherwise skipped, which is an error naming the field when
//!   the config asks for a limit;
//! - the mounts an unprivileged user namespace cannot make (sysfs without a
//!   network namespace of its own, mqueue, devpts `gid=` of an unmapped
//!   group) fall back as runc's do, in `mounts`.

use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxResources};

use crate::error::{Error, Result};
use crate::procfs::ProcRoot;

/// runc's `--rootless` decision: `auto` is rootless for a non-root user or
/// inside a user namespace other than the initial one.
pub fn detect(mode: &str) -> Result<bool> {
    match mode {
        "true" => Ok(true),
        "false" => Ok(false),
        "auto" => Ok(!nix::unistd::geteuid().is_root() || in_user_namespace()),
        other => Err(Error::Config(format!(
            "--rootless: invalid value {other:?} (auto, true or false)"
        ))),
    }
}

/// Whether this process lives in a user namespace other than the initial
/// one (whose uid_map maps the whole range onto itself).
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
        .unwrap_or(false)
}

/// Whether berth acts for an unprivileged user of the host: it is not
/// root, or root only in a user namespace whose root is an ordinary user
/// outside (rootless podman runs its runtime so). Such a user's systemd
/// is its user manager: runc's `shouldUseRootlessCgroupManager`, which
/// asks the user's bus for the same uid (`systemd.DetectUID`). Unknown
/// (no /proc) counts as root, as there.
pub fn unprivileged_on_host() -> bool {
    let euid = nix::unistd::geteuid();
    !euid.is_root()
        || std::fs::read_to_string("/proc/self/uid_map")
            .ok()
            .and_then(|map| outside_uid(&map, euid.as_raw()))
            .is_some_and(|uid| uid != 0)
}

/// The uid that `uid` is outside its user namespace, by the namespace's
/// `uid_map` (lines of "inside outside count").
fn outside_uid(map: &str, uid: u32) -> Option<u32> {
    map.lines().find_map(|line| {
        let mut f = line.split_whitespace().map(str::parse::<u32>);
        let (Some(Ok(inside)), Some(Ok(outside)), Some(Ok(count))) = (f.next(), f.next(), f.next())
        else {
            return None;
        };
        let offset = uid.checked_sub(inside).filter(|o| *o < count)?;
        outside.checked_add(offset)
    })
}

/// Where a rootless berth keeps its state unless `--root` says otherwise:
/// `$XDG_RUNTIME_DIR/berth`, else the directory systemd-logind makes for
/// the user (`/run/user/UID/berth`).
pub fn default_root() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("berth"),
        None => PathBuf::from(format!("/run/user/{}/berth", nix::unistd::geteuid())),
    }
}

/// Checks, before anything is created, what an unprivileged user cannot
/// have: a container without a user namespace of its own (its root would
/// be the user, unable to set anything up).
pub fn validate(linux: Option<&Linux>) -> Result<()> {
    let has_userns = linux
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|n| {
            n.iter()
                .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::User)
        });
    if !has_userns {
        return Err(Error::Config(
            "linux.namespaces: a rootless container needs a user namespace (berth spec --rootless writes one)".into(),
        ));
    }
    Ok(())
}

/// Writes the maps of `pid`'s new user namespace as an unprivileged user
/// may: directly for a single mapping of the caller's own id (after
/// denying setgroups, which the kernel requires for gid_map then), through
/// newuidmap/newgidmap for anything else.
pub fn write_id_maps(pid: i32, linux: &Linux) -> Result<()> {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let uids = linux.uid_mappings().as_deref().unwrap_or_default();
    let gids = linux.gid_mappings().as_deref().unwrap_or_default();
    let own = |maps: &[LinuxIdMapping], id: u32| {
        maps.len() == 1 && maps[0].host_id() == id && maps[0].size() == 1
    };
    let proc = ProcRoot::open()?;
    // Other maps are written directly first, as runc's nsexec does: root
    // of a user namespace (rootless berth-img, rootless podman) may map
    // any id of its own namespace, and the kernel refuses what it may not;
    // the setuid helpers only then.
    let uid_map = render(uids);
    if own(uids, uid) {
        proc.write("linux.uidMappings", &format!("{pid}/uid_map"), &uid_map)?;
    } else if proc
        .write("linux.uidMappings", &format!("{pid}/uid_map"), &uid_map)
        .is_err()
    {
        helper("newuidmap", "linux.uidMappings", "/etc/subuid", pid, uids)?;
    }
    let gid_map = render(gids);
    if own(gids, gid) {
        proc.write("linux.gidMappings", &format!("{pid}/setgroups"), "deny")?;
        proc.write("linux.gidMappings", &format!("{pid}/gid_map"), &gid_map)?;
    } else if proc
        .write("linux.gidMappings", &format!("{pid}/gid_map"), &gid_map)
        .is_err()
    {
        helper("newgidmap", "linux.gidMappings", "/etc/subgid", pid, gids)?;
    }
    Ok(())
}

fn render(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Runs newuidmap/newgidmap (shadow's setuid helpers, Debian's `uidmap`):
/// they check the ranges against /etc/subuid or /etc/subgid themselves; a
/// missing helper or range gets an error that says which.
fn helper(name: &str, field: &str, ranges: &str, pid: i32, maps: &[LinuxIdMapping]) -> Result<()> {
    let path = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .ok_or_else(|| {
            Error::Config(format!(
                "{field}: {name} not found (install Debian's uidmap): it writes mappings other than the user's own id"
            ))
        })?;
    let user = user_name();
    if !has_range(ranges, &user) {
        return Err(Error::Config(format!(
            "{field}: no subordinate {} range for user {user} in {ranges}",
            if name == "newuidmap" { "uid" } else { "gid" }
        )));
    }
    let mut cmd = Command::new(&path);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.args([
            m.container_id().to_string(),
            m.host_id().to_string(),
            m.size().to_string(),
        ]);
    }
    let out = cmd
        .output()
        .map_err(|e| Error::path(&format!("{field}: run"), &path, e))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "{field}: {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The caller's user name (as /etc/subuid lists it), else its uid.
fn user_name() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// Whether /etc/subuid (or subgid) has a line for the user (by name or id).
fn has_range(file: &str, user: &str) -> bool {
    let uid = nix::unistd::geteuid().to_string();
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').next())
        .any(|owner| owner == user || owner == uid)
}

/// Whether a rootless container can have a cgroup: the cgroup v2 directory
/// it would live under must be writable by the user (delegated to it, as
/// systemd delegates user@UID.service). On cgroup v1 never.
pub fn cgroup_usable(layout: &crate::cgroups::Layout, cgroup: &crate::cgroups::Cgroup) -> bool {
    if !layout.is_pure_v2() {
        return false;
    }
    cgroup.paths.iter().all(|p| {
        let mut existing = p.as_path();
        while !existing.exists() {
            match existing.parent() {
                Some(parent) => existing = parent,
                None => return false,
            }
        }
        nix::unistd::access(existing, nix::unistd::AccessFlags::W_OK).is_ok()
            && nix::unistd::access(
                &existing.join("cgroup.procs"),
                nix::unistd::AccessFlags::W_OK,
            )
            .is_ok()
    })
}

/// Without a cgroup, a limit the config asks for cannot be kept: an error
/// naming the field. Nothing asked for: a warning, as runc gives.
pub fn check_without_cgroup(r: Option<&LinuxResources>) -> Result<()> {
    if let Some(field) = r.and_then(first_limit) {
        return Err(Error::Unsupported(format!(
            "{field}: a rootless container has no cgroup here (cgroup v1, or the user's cgroup is not delegated), so the limit cannot be set"
        )));
    }
    tracing::warn!("rootless: no cgroup for the container (cgroup v1, or the user's cgroup is not delegated); it runs without resource accounting");
    Ok(())
}

/// The first field of `r` that sets a limit (device rules excepted: an
/// unprivileged container gets only the device nodes its user can open).
/// Values that limit nothing do not count: `ctr run` always sends the
/// kernel's default CPU weight (shares 1024), which runc refuses without a
/// cgroup.
fn first_limit(r: &LinuxResources) -> Option<&'static str> {
    let set = |v: bool, field| v.then_some(field);
    set(
        r.memory().as_ref().is_some_and(memory_limits),
        "linux.resources.memory",
    )
    .or_else(|| {
        set(
            r.cpu().as_ref().is_some_and(cpu_limits),
            "linux.resources.cpu",
        )
    })
    .or_else(|| {
        set(
            r.pids().as_ref().is_some_and(|p| p.limit() > 0),
            "linux.resources.pids",
        )
    })
    .or_else(|| set(r.block_io().is_some(), "linux.resources.blockIO"))
    .or_else(|| {
        set(
            r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()),
            "linux.resources.hugepageLimits",
        )
    })
    .or_else(|| set(r.network().is_some(), "linux.resources.network"))
    .or_else(|| {
        set(
            r.rdma().as_ref().is_some_and(|m| !m.is_empty()),
            "linux.resources.rdma",
        )
    })
    .or_else(|| {
        set(
            r.unified().as_ref().is_some_and(|m| !m.is_empty()),
            "linux.resources.unified",
        )
    })
}

/// The weight every cgroup v1 `cpu.shares` starts with.
const DEFAULT_CPU_SHARES: u64 = 1024;

/// Whether a CPU section asks for anything: a weight other than the
/// default, a positive quota (-1 is "no limit"), a period, a realtime
/// budget, or a set of CPUs or memory nodes.
fn cpu_limits(c: &oci_spec::runtime::LinuxCpu) -> bool {
    c.shares().is_some_and(|s| s > 0 && s != DEFAULT_CPU_SHARES)
        || c.quota().is_some_and(|q| q > 0)
        || c.period().is_some_and(|p| p > 0)
        || c.burst().is_some_and(|b| b > 0)
        || c.realtime_runtime().is_some_and(|r| r != 0)
        || c.realtime_period().is_some_and(|p| p > 0)
        || c.cpus().as_ref().is_some_and(|s| !s.is_empty())
        || c.mems().as_ref().is_some_and(|s| !s.is_empty())
        || c.idle().is_some_and(|i| i != 0)
}

/// Whether a memory section asks for anything (-1 is "no limit").
fn memory_limits(m: &oci_spec::runtime::LinuxMemory) -> bool {
    [
        m.limit(),
        m.reservation(),
        m.swap(),
        m.kernel(),
        m.kernel_tcp(),
    ]
    .into_iter()
    .any(|v| v.is_some_and(|v| v > 0))
        || m.swappiness().is_some()
        || m.disable_oom_killer().is_some_and(|d| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_outside_the_user_namespace() {
        // Rootless podman's: root is the user, the rest subordinate ids.
        let podman = "         0       1000          1\n         1     100000      65536\n";
        assert_eq!(outside_uid(podman, 0), Some(1000));
        assert_eq!(outside_uid(podman, 5), Some(100004));
        assert_eq!(outside_uid(podman, 65537), None);
        // The initial namespace: everyone is themselves.
        assert_eq!(outside_uid("0 0 4294967295\n", 0), Some(0));
        assert_eq!(outside_uid("", 0), None);
    }

    #[test]
    fn limits_are_named() {
        let r: LinuxResources = serde_json::from_value(serde_json::json!({
            "devices": [{"allow": false, "access": "rwm"}]
        }))
        .unwrap();
        assert_eq!(first_limit(&r), None);
        let r: LinuxResources =
            serde_json::from_value(serde_json::json!({"pids": {"limit": 3}})).unwrap();
        assert_eq!(first_limit(&r), Some("linux.resources.pids"));
        // What `ctr run` sends by default limits nothing.
        let r: LinuxResources = serde_json::from_value(serde_json::json!({
            "cpu": {"shares": 1024, "quota": -1, "period": 0},
            "memory": {"limit": -1},
            "pids": {"limit": 0}
        }))
        .unwrap();
        assert_eq!(first_limit(&r), None);
        let r: LinuxResources =
            serde_json::from_value(serde_json::json!({"cpu": {"quota": 50000}})).unwrap();
        assert_eq!(first_limit(&r), Some("linux.resources.cpu"));
    }
}
