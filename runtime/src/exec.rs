//! `berth exec`: a new process in a running container (runc's contract;
//! the runtime spec leaves exec to implementations).
//!
//! Process model: berth switches its own pid (and time) namespace for
//! children to the container's, clones one child straight into them, moves
//! it into the container's cgroup and sets its rlimits, then lets it join
//! the other namespaces and become the configured process (the same steps
//! as the init: `process::become_process`). The child's end of the channel
//! closes on a successful execve; an error arrives as a message instead.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{Capability, LinuxNamespaceType, Process, Spec};

use crate::container::{self, Container};
use crate::error::{Context, Error, Result};
use crate::namespaces::{self, ForChildren};
use crate::rootfs::Root;
use crate::state::Status;
use crate::sync::{self, Msg};
use crate::{attributes, foreground, process, rlimits, tty, user};

/// `berth exec`'s flags.
#[derive(Debug, Default, Clone)]
pub struct ExecOptions {
    /// A process.json (config.md "process") to run instead of flags.
    pub process: Option<PathBuf>,
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
    pub preserve_fds: u32,
    pub ignore_paused: bool,
    /// Running for an unprivileged user (see `rootless`).
    pub rootless: bool,
    /// `--cgroup PATH` or `--cgroup CONTROLLER[,CONTROLLER]:PATH`: a
    /// sub-cgroup (which must exist) of the container's to run in.
    pub cgroups: Vec<String>,
    /// The command and its arguments, verbatim.
    pub args: Vec<String>,
}

/// Runs the process; returns its exit status (0 when detached).
pub fn exec(root: &Path, id: &str, opts: &ExecOptions) -> Result<i32> {
    let c = Container::load(root, id)?;
    match c.status() {
        Status::Running | Status::Created => {}
        Status::Paused if opts.ignore_paused => {}
        Status::Paused => {
            return Err(Error::State(
                "cannot exec in a paused container (use --ignore-paused)".into(),
            ))
        }
        s => return Err(Error::State(format!("cannot exec in a {s} container"))),
    }
    let spec: Spec = crate::config::parse_spec(c.state.config.clone())
        .map_err(|e| Error::Other(format!("stored config: {e}")))?;
    let process = build_process(&c, &spec, opts)?;
    let cgroup = sub_cgroup(&c.cgroup(), &c.layout, &opts.cgroups)?;
    let (init, state) = (c.state.pid, c.state.clone());
    // exec changes no state: let other commands (resume, kill) at the
    // container while this one waits for its process.
    drop(c);
    let linux = spec.linux().as_ref();
    let terminal = process.terminal() == Some(true);
    if terminal && opts.console_socket.is_none() && opts.detach {
        return Err(Error::Config(
            "exec: cannot allocate a tty when detached without --console-socket".into(),
        ));
    }
    crate::user::validate_ids(process.user())?;
    if let Some(r) = process.rlimits() {
        rlimits::validate(r)?;
    }
    attributes::validate_lsm(
        process.apparmor_profile().as_deref(),
        process.selinux_label().as_deref(),
    )?;

    let (joins, joins_user) = namespaces_to_join(&spec, init)?;
    // Without a mount namespace of its own the container is a chroot in
    // berth's: the process goes into the init's root.
    let has_mount_ns = linux
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|n| n.iter().any(|n| n.typ() == LinuxNamespaceType::Mount));
    let chroot = if has_mount_ns {
        None
    } else {
        let proc = crate::procfs::ProcRoot::open()?;
        Some(
            proc.open_link(&init.to_string(), "root", libc::O_PATH | libc::O_DIRECTORY)
                .map_err(|e| {
                    Error::path("open the container's root", format!("/proc/{init}/root"), e)
                })?,
        )
    };
    let seccomp_spec = linux.and_then(|l| l.seccomp().as_ref());
    let program = match seccomp_spec {
        Some(s) => Some(crate::seccomp::compile_cached(s, &root.join(".cache"))?),
        None => None,
    };
    let listener = match (
        &program,
        seccomp_spec.and_then(|s| s.listener_path().as_ref()),
    ) {
        (Some(c), Some(path)) if c.notify => {
            Some(tty::connect(path, "linux.seccomp.listenerPath")?)
        }
        _ => None,
    };
    let listener_doc = listener.as_ref().map(|sock| {
        let state = container::hook_state(&state, init, "running");
        let meta = seccomp_spec.and_then(|s| s.listener_metadata().clone());
        (
            sock.as_raw_fd(),
            crate::seccomp::listener_state(&state, init, meta.as_deref()),
        )
    });
    let seccomp = program.as_ref().map(|program| crate::seccomp::Setup {
        program,
        listener: listener_doc,
    });
    let (parent_end, child_end) = sync::pair().ctx(|| "socketpair")?;
    let (console_ours, console_theirs) =
        tty::console_channel(terminal, opts.console_socket.as_deref())?;

    // An unprivileged berth may join the container's pid namespace only
    // from inside the container's user namespace (setns wants
    // CAP_SYS_ADMIN in its own namespace too), which it owns: it moves
    // there itself first, and the child has nothing left to join for it.
    let mut joins = joins;
    let mut joins_user = joins_user;
    let moved_into_userns = joins_user && !nix::unistd::geteuid().is_root();
    if moved_into_userns {
        let (flag, userns) = joins.remove(0);
        nix::sched::setns(&userns, flag).ctx(|| "join the container's user namespace")?;
        joins_user = false;
    }
    // pid and time namespaces apply to children: switch around the clone.
    let mut for_children = Vec::new();
    for (kind, flag) in [
        ("pid", CloneFlags::CLONE_NEWPID),
        ("time", CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)),
    ] {
        let theirs = format!("/proc/{init}/ns/{kind}");
        if differs(&theirs, &format!("/proc/self/ns/{kind}")) {
            for_children.push(ForChildren::join(kind, flag, Path::new(&theirs))?);
        }
    }
    let args = process::ExecArgs {
        process: &process,
        linux,
        namespaces: &joins,
        joins_user,
        rootless: opts.rootless && !nix::unistd::geteuid().is_root(),
        chroot: chroot.as_ref(),
        channel: child_end,
        console_socket: console_theirs.as_ref().map(|f| f.as_raw_fd()),
        preserve_fds: opts.preserve_fds,
        seccomp,
    };
    let pid = clone_child(args)?;
    drop(listener);
    // berth exec starts no other process, so its children's pid and time
    // namespaces stay the container's: switching back would need
    // privileges over the host's namespaces that a berth inside a user
    // namespace (rootless, or rootless podman's) does not have.
    drop(for_children);
    drop(console_theirs);
    let kill_child = |e: Error| {
        // SAFETY: our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        e
    };

    let affinity = process.exec_cpu_affinity().as_ref();
    let setup = (|| {
        if let Some(cpus) = affinity.and_then(attributes::initial_affinity) {
            attributes::set_cpu_affinity(pid, cpus, "process.execCPUAffinity.initial")?;
        }
        cgroup.add(pid)?;
        if let Some(cpus) = affinity.and_then(attributes::final_affinity) {
            attributes::set_cpu_affinity(pid, cpus, "process.execCPUAffinity.final")?;
        }
        if let Some(r) = process.rlimits() {
            rlimits::apply(pid, r)?;
        }
        parent_end
            .send(&Msg::Go(String::new()))
            .ctx(|| "signal the exec process")?;
        match parent_end.recv().ctx(|| "read from the exec process")? {
            None => Ok(()),
            Some(Msg::Error(e)) => Err(Error::Other(e)),
            Some(other) => Err(Error::Other(format!("exec process: unexpected {other:?}"))),
        }
    })();
    setup.map_err(kill_child)?;

    let console = match console_ours {
        Some(sock) => Some(tty::recv_fd(sock.as_raw_fd())?),
        None => None,
    };
    if let Some(pid_file) = &opts.pid_file {
        container::write_pid_file(pid_file, pid)?;
    }
    if opts.detach {
        return Ok(0);
    }
    let signals = foreground::block_signals()?;
    match console {
        Some(master) => {
            let _raw = tty::RawMode::enter(0);
            tty::copy_size(0, master.as_raw_fd());
            foreground::wait_proxying(pid, &signals, &master)
        }
        None => foreground::wait_forwarding(pid, &signals),
    }
}

/// runc 1.1's `exec --cgroup`: per hierarchy, the sub-cgroup a
/// `CONTROLLER:PATH` names for one of its controllers, else the plain
/// `PATH`, else the container's own. Controllers can be named on cgroup v1
/// only; every sub-cgroup must exist.
fn sub_cgroup(
    cgroup: &crate::cgroups::Cgroup,
    layout: &crate::cgroups::Layout,
    specs: &[String],
) -> Result<crate::cgroups::Cgroup> {
    if specs.is_empty() {
        return Ok(cgroup.clone());
    }
    let mut plain: Option<&str> = None;
    let mut by_controller: Vec<(Vec<&str>, &str)> = Vec::new();
    for s in specs {
        match s.split_once(':') {
            Some((ctrls, path)) => by_controller.push((ctrls.split(',').collect(), path)),
            None => plain = Some(s),
        }
    }
    if layout.is_pure_v2() && !by_controller.is_empty() {
        return Err(Error::Config(
            "exec --cgroup: controllers can only be named on cgroup v1".into(),
        ));
    }
    let mut paths = Vec::new();
    for (h, dir) in layout.hierarchies.iter().zip(&cgroup.paths) {
        let named = by_controller
            .iter()
            .find(|(ctrls, _)| ctrls.iter().any(|c| h.has(c)))
            .map(|(_, p)| *p);
        let Some(sub) = named.or(plain) else {
            paths.push(dir.clone());
            continue;
        };
        let rel = Path::new(sub.trim_start_matches('/'));
        if rel
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(Error::Config(format!(
                "exec --cgroup {sub}: must not contain '..'"
            )));
        }
        let full = dir.join(rel);
        if !full.is_dir() {
            return Err(Error::Config(format!(
                "exec --cgroup {sub}: {} does not exist",
                full.display()
            )));
        }
        paths.push(full);
    }
    for (ctrls, _) in &by_controller {
        for c in ctrls {
            if !layout.hierarchies.iter().any(|h| h.has(c)) {
                return Err(Error::Config(format!(
                    "exec --cgroup {c}: no such controller on this host"
                )));
            }
        }
    }
    Ok(crate::cgroups::Cgroup { paths })
}

/// Whether two namespace files name different namespaces.
fn differs(a: &str, b: &str) -> bool {
    match (std::fs::read_link(a), std::fs::read_link(b)) {
        (Ok(x), Ok(y)) => x != y,
        _ => false,
    }
}

/// The init's namespaces that differ from ours, opened, user first and mount
/// last (joining the mount namespace changes root and cwd).
fn namespaces_to_join(spec: &Spec, init: i32) -> Result<(Vec<(CloneFlags, OwnedFd)>, bool)> {
    let kinds: Vec<LinuxNamespaceType> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .map(|n| n.typ())
        .collect();
    let order = [
        LinuxNamespaceType::User,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Mount,
    ];
    let mut out = Vec::new();
    let mut joins_user = false;
    for t in order.into_iter().filter(|t| kinds.contains(t)) {
        let name = namespaces::proc_name(t);
        let theirs = format!("/proc/{init}/ns/{name}");
        if !differs(&theirs, &format!("/proc/self/ns/{name}")) {
            continue;
        }
        let f = File::open(&theirs).map_err(|e| Error::path("open", &theirs, e))?;
        let flag = match t {
            LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            _ => CloneFlags::CLONE_NEWNS,
        };
        joins_user |= t == LinuxNamespaceType::User;
        out.push((flag, OwnedFd::from(f)));
    }
    Ok((out, joins_user))
}

fn clone_child(args: process::ExecArgs) -> Result<i32> {
    // SAFETY: berth is single-threaded.
    let pid = match unsafe { crate::sys::clone_fork(0) } {
        Ok(pid) => pid,
        // The kernel's answer for a pid namespace whose init has died.
        Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => {
            return Err(Error::State(
                "cannot exec: the container is stopping".into(),
            ))
        }
        Err(e) => return Err(Error::sys("clone the exec process", e)),
    };
    if pid == 0 {
        process::run_exec(args);
    }
    Ok(pid)
}

/// The process to run: `--process` as given, or the container's own process
/// with runc's overrides from the flags.
fn build_process(c: &Container, spec: &Spec, opts: &ExecOptions) -> Result<Process> {
    let mut p: Process = match &opts.process {
        Some(path) => {
            let text = std::fs::read(path).map_err(|e| Error::path("read --process", path, e))?;
            let mut raw: serde_json::Value = serde_json::from_slice(&text)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            // runc runs a process.json without a user as root.
            if let Some(obj) = raw.as_object_mut() {
                obj.entry("user")
                    .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
            }
            serde_path_to_error::deserialize(raw).map_err(|e| {
                Error::Config(format!("{}: {}: {}", path.display(), e.path(), e.inner()))
            })?
        }
        None => {
            let mut p = spec.process().clone().unwrap_or_default();
            if opts.args.is_empty() {
                return Err(Error::Config("exec: a command is required".into()));
            }
            p.set_args(Some(opts.args.clone()));
            p.set_terminal(Some(opts.tty));
            p
        }
    };
    if opts.process.is_some() && !opts.args.is_empty() {
        p.set_args(Some(opts.args.clone()));
    }
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::Config("process.args: must not be empty".into()));
    }
    if opts.tty {
        p.set_terminal(Some(true));
    }
    if let Some(cwd) = &opts.cwd {
        p.set_cwd(cwd.clone());
    }
    if !opts.env.is_empty() {
        p.set_env(Some(merge_env(
            p.env().as_deref().unwrap_or_default(),
            &opts.env,
        )));
    }
    if let Some(u) = &opts.user {
        let (passwd, group) = container_user_files(c.state.pid);
        let r = user::resolve(u, &passwd, &group)
            .map_err(|e| Error::Config(format!("exec -u: {e}")))?;
        let mut usr = p.user().clone();
        usr.set_uid(r.uid);
        usr.set_gid(r.gid);
        usr.set_additional_gids(if r.additional_gids.is_empty() {
            None
        } else {
            Some(r.additional_gids)
        });
        p.set_user(usr);
    }
    if !opts.additional_gids.is_empty() {
        let mut usr = p.user().clone();
        usr.set_additional_gids(Some(opts.additional_gids.clone()));
        p.set_user(usr);
    }
    if !opts.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &opts.caps {
            let full = if name.to_ascii_uppercase().starts_with("CAP_") {
                name.to_ascii_uppercase()
            } else {
                format!("CAP_{}", name.to_ascii_uppercase())
            };
            let cap: Capability = serde_json::from_value(serde_json::Value::from(full.clone()))
                .map_err(|_| Error::Config(format!("exec --cap {name}: unknown capability")))?;
            let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = set.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
            // Ambient needs inheritable; add it only where the config has some.
            if caps.inheritable().is_some() {
                caps.set_ambient(add(caps.ambient()));
            }
        }
        p.set_capabilities(Some(caps));
    }
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(a) = &opts.apparmor {
        p.set_apparmor_profile(Some(a.clone()));
    }
    if let Some(l) = &opts.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    Ok(p)
}

/// `-e K=V` replaces K in the environment, or adds it.
fn merge_env(base: &[String], extra: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    let mut index: HashMap<String, usize> = out
        .iter()
        .enumerate()
        .map(|(i, e)| (e.split('=').next().unwrap_or("").to_string(), i))
        .collect();
    for e in extra {
        let key = e.split('=').next().unwrap_or("").to_string();
        match index.get(&key) {
            Some(&i) => out[i] = e.clone(),
            None => {
                index.insert(key, out.len());
                out.push(e.clone());
            }
        }
    }
    out
}

/// The container's /etc/passwd and /etc/group, read inside its root so a
/// symlink in the image cannot point the read at the host's files.
fn container_user_files(init: i32) -> (String, String) {
    let Ok(root) = Root::open(Path::new(&format!("/proc/{init}/root"))) else {
        return (String::new(), String::new());
    };
    let read = |p: &str| -> String {
        root.open_in(Path::new(p), libc::O_RDONLY)
            .ok()
            .map(File::from)
            .and_then(|mut f| {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut f, &mut s)
                    .ok()
                    .map(|_| s)
            })
            .unwrap_or_default()
    };
    (read("/etc/passwd"), read("/etc/group"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_merge() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let out = merge_env(&base, &["A=2".into(), "B=3".into()]);
        assert_eq!(out, vec!["PATH=/bin", "A=2", "B=3"]);
    }
}
