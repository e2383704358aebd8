//! Namespaces (config-linux.md "Namespaces", "User namespace mappings",
//! "Offset for Time Namespace").
//!
//! New namespaces are made in one `clone` where the kernel allows it: with
//! CLONE_NEWUSER in the same call, the kernel creates the user namespace
//! first and makes it the owner of the others. Three exceptions, each for a
//! kernel reason:
//! - cgroup: unshared by the init only after the parent moved it into the
//!   container's cgroup, so the namespace root is that cgroup;
//! - pid and time joined by path, and a new time namespace: these apply to
//!   a process's *children*, so the creating process switches its own
//!   `*_for_children` namespace around the clone and switches back;
//! - a user namespace joined by path: the init joins it first and then
//!   unshares the rest, so they are owned by the joined one.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};

use crate::error::{Context, Error, Result};
use crate::procfs::ProcRoot;

/// How the container's namespaces come to be.
#[derive(Debug)]
pub struct Plan {
    /// Namespaces made by the clone of the init.
    pub clone_flags: CloneFlags,
    /// Namespaces the init unshares after joining `join_user`.
    pub unshare_flags: CloneFlags,
    /// A new cgroup namespace, unshared once the init sits in its cgroup.
    pub new_cgroup: bool,
    pub new_user: bool,
    pub new_time: bool,
    /// Joined by the init with setns, in this order (user first).
    pub join: Vec<(CloneFlags, PathBuf)>,
    /// Joined by the creating process around the clone.
    pub join_pid: Option<PathBuf>,
    pub join_time: Option<PathBuf>,
    /// Which namespaces the container has of its own (new or joined), for
    /// decisions such as whether sysctls or mqueue mounts are allowed.
    pub kinds: Vec<LinuxNamespaceType>,
}

fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

pub fn type_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

/// The /proc/PID/ns entry name of a namespace type.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Network => "net",
        other => type_name(other),
    }
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            clone_flags: CloneFlags::empty(),
            unshare_flags: CloneFlags::empty(),
            new_cgroup: false,
            new_user: false,
            new_time: false,
            join: Vec::new(),
            join_pid: None,
            join_time: None,
            kinds: Vec::new(),
        }
    }
}

impl Plan {
    /// Checks `linux.namespaces` and the mappings and decides how to make them.
    pub fn new(linux: Option<&Linux>) -> Result<Plan> {
        let mut plan = Plan::default();
        let Some(linux) = linux else { return Ok(plan) };
        let namespaces = linux.namespaces().as_deref().unwrap_or_default();
        let mut join_user = None;
        for ns in namespaces {
            let t = ns.typ();
            if plan.kinds.contains(&t) {
                return Err(Error::Config(format!(
                    "linux.namespaces: duplicate namespace type {:?}",
                    type_name(t)
                )));
            }
            plan.kinds.push(t);
            match ns.path() {
                Some(path) if !path.as_os_str().is_empty() => {
                    check_ns_path(path, t)?;
                    match t {
                        LinuxNamespaceType::Pid => plan.join_pid = Some(path.clone()),
                        LinuxNamespaceType::Time => plan.join_time = Some(path.clone()),
                        LinuxNamespaceType::User => join_user = Some(path.clone()),
                        _ => plan.join.push((flag(t), path.clone())),
                    }
                }
                _ => match t {
                    LinuxNamespaceType::Cgroup => plan.new_cgroup = true,
                    LinuxNamespaceType::Time => plan.new_time = true,
                    LinuxNamespaceType::User => {
                        plan.new_user = true;
                        plan.clone_flags |= CloneFlags::CLONE_NEWUSER;
                    }
                    _ => plan.clone_flags |= flag(t),
                },
            }
        }
        if let Some(user) = join_user {
            // Namespaces made after joining are owned by the joined user
            // namespace; a pid namespace cannot be unshared into by the init
            // itself, so that one combination needs an extra process.
            if plan.clone_flags.contains(CloneFlags::CLONE_NEWPID) {
                return Err(Error::Unsupported(
                    "linux.namespaces: a new pid namespace inside a user namespace joined by path"
                        .into(),
                ));
            }
            plan.unshare_flags = plan.clone_flags;
            plan.clone_flags = CloneFlags::empty();
            plan.join.insert(0, (CloneFlags::CLONE_NEWUSER, user));
        }
        crate::user::validate_mappings(
            "linux.uidMappings",
            linux.uid_mappings().as_deref().unwrap_or_default(),
        )?;
        crate::user::validate_mappings(
            "linux.gidMappings",
            linux.gid_mappings().as_deref().unwrap_or_default(),
        )?;
        let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if plan.new_user && !has_maps {
            return Err(Error::Config(
                "linux.uidMappings: required with a new user namespace".into(),
            ));
        }
        if has_maps && !plan.new_user {
            return Err(Error::Config(
                "linux.uidMappings: only valid with a new user namespace".into(),
            ));
        }
        if linux.time_offsets().is_some() && !plan.new_time {
            return Err(Error::Config(
                "linux.timeOffsets: only valid with a new time namespace".into(),
            ));
        }
        Ok(plan)
    }

    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.kinds.contains(&t)
    }

    /// Joins the namespaces named by path (called in the init, user first).
    pub fn join_in_init(&self) -> Result<()> {
        for (flags, path) in &self.join {
            let f = File::open(path).map_err(|e| Error::path("open namespace", path, e))?;
            nix::sched::setns(f.as_fd(), *flags).ctx(|| format!("setns {}", path.display()))?;
        }
        if !self.unshare_flags.is_empty() {
            nix::sched::unshare(self.unshare_flags).ctx(|| "unshare namespaces")?;
        }
        Ok(())
    }
}

/// A namespace path must exist and be a namespace of the declared type.
fn check_ns_path(path: &Path, t: LinuxNamespaceType) -> Result<()> {
    let f = File::open(path).map_err(|e| {
        Error::Config(format!(
            "linux.namespaces: {} namespace path {}: {e}",
            type_name(t),
            path.display()
        ))
    })?;
    // NS_GET_NSTYPE = _IO(0xb7, 0x3)
    // SAFETY: ioctl on an fd we own, no argument.
    let kind = unsafe { libc::ioctl(f.as_raw_fd(), 0xb703) };
    if kind >= 0 && CloneFlags::from_bits_retain(kind) != flag(t) {
        return Err(Error::Config(format!(
            "linux.namespaces: {} is not a {} namespace",
            path.display(),
            type_name(t)
        )));
    }
    if kind < 0 {
        return Err(Error::Config(format!(
            "linux.namespaces: {} is not a namespace file",
            path.display()
        )));
    }
    Ok(())
}

/// The text of a uid_map or gid_map file.
fn render_maps(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Writes `/proc/PID/{uid,gid}_map` for a child in a new user namespace.
pub fn write_id_maps(pid: i32, linux: &Linux) -> Result<()> {
    let proc = ProcRoot::open()?;
    let uid = linux.uid_mappings().as_deref().unwrap_or_default();
    let gid = linux.gid_mappings().as_deref().unwrap_or_default();
    proc.write(
        "linux.uidMappings",
        &format!("{pid}/uid_map"),
        &render_maps(uid),
    )?;
    proc.write(
        "linux.gidMappings",
        &format!("{pid}/gid_map"),
        &render_maps(gid),
    )
}

/// Switches the creating process's namespace for children (pid or time) to
/// `path`, returning a guard that switches back.
pub struct ForChildren {
    original: File,
    flags: CloneFlags,
}

impl ForChildren {
    pub fn join(kind: &str, flags: CloneFlags, path: &Path) -> Result<ForChildren> {
        let own = format!("/proc/self/ns/{kind}");
        let original = File::open(&own).map_err(|e| Error::path("open", &own, e))?;
        let target = File::open(path).map_err(|e| Error::path("open namespace", path, e))?;
        nix::sched::setns(target.as_fd(), flags).ctx(|| format!("setns {}", path.display()))?;
        Ok(ForChildren { original, flags })
    }

    /// A new time namespace for children, with the offsets of
    /// `linux.timeOffsets` (written before any process enters it).
    pub fn new_time(
        offsets: Option<&std::collections::HashMap<String, oci_spec::runtime::LinuxTimeOffset>>,
    ) -> Result<ForChildren> {
        let original = File::open("/proc/self/ns/time")
            .map_err(|e| Error::path("open", "/proc/self/ns/time", e))?;
        let flags = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
        nix::sched::unshare(flags).ctx(|| "unshare time namespace")?;
        let mut text = String::new();
        for (clock, off) in offsets.into_iter().flatten() {
            let clock_name = match clock.as_str() {
                "monotonic" => "monotonic",
                "boottime" => "boottime",
                other => {
                    return Err(Error::Config(format!(
                        "linux.timeOffsets: unknown clock {other:?} (monotonic or boottime)"
                    )))
                }
            };
            text.push_str(&format!(
                "{clock_name} {} {}\n",
                off.secs().unwrap_or(0),
                off.nanosecs().unwrap_or(0)
            ));
        }
        if !text.is_empty() {
            ProcRoot::open()?.write("linux.timeOffsets", "self/timens_offsets", &text)?;
        }
        Ok(ForChildren { original, flags })
    }

    pub fn restore(self) -> Result<()> {
        nix::sched::setns(self.original.as_fd(), self.flags).ctx(|| "restore own namespace")
    }
}

/// A user namespace holding `uid`/`gid` mappings, for an idmapped mount: a
/// helper process is cloned into a new user namespace, its maps written,
/// its namespace opened, and the helper let go.
pub fn userns_with_maps(
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
) -> Result<std::os::fd::OwnedFd> {
    let (hold, wait) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    // SAFETY: berth is single-threaded; the child only blocks on a read.
    let pid = unsafe { crate::sys::clone_fork(libc::CLONE_NEWUSER) }
        .map_err(|e| Error::sys("clone a user namespace for an idmapped mount", e))?;
    if pid == 0 {
        drop(wait);
        let mut b = [0u8; 1];
        // SAFETY: read until the parent closes its end, then leave.
        unsafe {
            libc::read(hold.as_raw_fd(), b.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    drop(hold);
    let result = (|| {
        let proc = ProcRoot::open()?;
        for (file, maps) in [("uid_map", uid), ("gid_map", gid)] {
            proc.write(
                "mounts: idmapping",
                &format!("{pid}/{file}"),
                &render_maps(maps),
            )?;
        }
        let ns = format!("/proc/{pid}/ns/user");
        File::open(&ns)
            .map(std::os::fd::OwnedFd::from)
            .map_err(|e| Error::path("open", &ns, e))
    })();
    drop(wait);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    result
}
