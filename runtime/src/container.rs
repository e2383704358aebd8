//! The container lifecycle as seen from the runtime's side (runtime.md
//! "Lifecycle" and "Operations"): create, start, state, kill, delete.
//!
//! Process model (see ARCHITECTURE.md): `berth create` validates the whole
//! config, makes the state directory and the cgroup, and clones the init
//! with all new namespaces in one call. The init sets itself up (mounts,
//! pivot_root, user, capabilities) and reports ready over a socketpair;
//! create saves the state and exits, leaving the init blocked opening the
//! exec fifo for writing. `berth start` opens the fifo for reading, which
//! lets the init through to execve. No binary is re-executed.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroups::{Cgroup, CgroupsPath, Layout};
use crate::config::Bundle;
use crate::error::{Context, Error, Result};
use crate::namespaces::{ForChildren, Plan};
use crate::state::{self, ContainerDir, State, Status};
use crate::sync::{self, Msg};
use crate::{namespaces, process, rlimits};

/// Flags of `create` (and `run`) that shape the container.
#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// `run` in the foreground with a terminal and no console socket:
    /// berth receives the pty master itself and proxies it.
    pub foreground_tty: bool,
    /// `--systemd-cgroup`: the cgroup is a systemd unit.
    pub systemd_cgroup: bool,
    /// Running for an unprivileged user (see `rootless`).
    pub rootless: bool,
}

/// A container that `create` just made, with its init still our child.
pub struct Created {
    pub pid: i32,
    pub dir: ContainerDir,
    pub state: State,
    /// The pty master, when berth holds the terminal itself.
    pub console: Option<std::os::fd::OwnedFd>,
}

/// Everything checked before anything is created, so that a bad config
/// leaves nothing behind.
fn validate(spec: &Spec, rootfs: &Path, plan: &Plan, opts: &CreateOptions) -> Result<()> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Config("process: required".into()))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::Config("process.args: must not be empty".into()));
    }
    if !rootfs.is_dir() {
        return Err(Error::Config(format!(
            "root.path {}: no such directory",
            rootfs.display()
        )));
    }
    crate::user::validate_ids(process.user())?;
    if let Some(r) = process.rlimits() {
        rlimits::validate(r)?;
    }
    crate::attributes::validate_lsm(
        process.apparmor_profile().as_deref(),
        process.selinux_label().as_deref(),
    )?;
    let terminal = process.terminal() == Some(true);
    if terminal && opts.console_socket.is_none() && !opts.foreground_tty {
        return Err(Error::Config(
            "process.terminal: cannot allocate a tty when detached without --console-socket".into(),
        ));
    }
    if !terminal && opts.console_socket.is_some() {
        return Err(Error::Config(
            "--console-socket: only valid with process.terminal set".into(),
        ));
    }
    if (spec.hostname().is_some() || spec.domainname().is_some())
        && !plan.has(LinuxNamespaceType::Uts)
    {
        return Err(Error::Config(
            "hostname: setting a hostname or domainname needs a uts namespace".into(),
        ));
    }
    if !plan.has(LinuxNamespaceType::Mount) {
        // runc's rule: the mounts that hide parts of /proc and /sys would
        // be made in berth's own (the host's) mount namespace.
        let restricts = spec.linux().as_ref().is_some_and(|l| {
            l.masked_paths().as_ref().is_some_and(|p| !p.is_empty())
                || l.readonly_paths().as_ref().is_some_and(|p| !p.is_empty())
        });
        if restricts {
            return Err(Error::Config(
                "linux.maskedPaths, linux.readonlyPaths: unable to restrict sys entries without a private mount namespace".into(),
            ));
        }
    }
    if let Some(linux) = spec.linux() {
        for key in linux.sysctl().iter().flat_map(|s| s.keys()) {
            check_sysctl(key, plan)?;
        }
        if linux.intel_rdt().is_some() {
            return Err(Error::Unsupported(
                "linux.intelRdt (no resctrl filesystem on this host)".into(),
            ));
        }
        if let Some(devices) = linux.net_devices().as_ref().filter(|d| !d.is_empty()) {
            if !plan.has(LinuxNamespaceType::Network) {
                return Err(Error::Config(
                    "linux.netDevices: needs a network namespace of the container's own".into(),
                ));
            }
            crate::netdev::validate(devices)?;
        }
    }
    crate::process::root_propagation(spec)?;
    if let Some(hooks) = spec.hooks() {
        crate::hooks::validate(hooks)?;
    }
    for m in spec.mounts().iter().flatten() {
        if crate::mounts::wants_idmap(m) {
            let dest = m.destination().display();
            if !crate::mounts::is_bind(m) {
                return Err(Error::Unsupported(format!(
                    "mounts: {dest}: idmapped mounts other than bind mounts"
                )));
            }
            let field = format!("mounts: {dest}: uidMappings");
            crate::user::validate_mappings(
                &field,
                m.uid_mappings().as_deref().unwrap_or_default(),
            )?;
            let field = format!("mounts: {dest}: gidMappings");
            crate::user::validate_mappings(
                &field,
                m.gid_mappings().as_deref().unwrap_or_default(),
            )?;
            if m.uid_mappings().is_some() != m.gid_mappings().is_some() {
                return Err(Error::Config(format!(
                    "mounts: {dest}: uidMappings and gidMappings go together"
                )));
            }
            if m.uid_mappings().is_none() && !plan.new_user {
                return Err(Error::Config(format!(
                    "mounts: {dest}: idmap without uidMappings needs a user namespace to take the mapping from"
                )));
            }
        }
    }
    Ok(())
}

/// runc's rule: a sysctl is allowed only when the namespace it belongs to is
/// the container's own.
fn check_sysctl(key: &str, plan: &Plan) -> Result<()> {
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let needs = if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        LinuxNamespaceType::Ipc
    } else if key.starts_with("net.") {
        LinuxNamespaceType::Network
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        LinuxNamespaceType::Uts
    } else {
        return Err(Error::Config(format!(
            "linux.sysctl: {key} is not namespaced and cannot be set for a container"
        )));
    };
    if !plan.has(needs) {
        return Err(Error::Config(format!(
            "linux.sysctl: {key} needs a {} namespace of the container's own",
            namespaces::type_name(needs)
        )));
    }
    Ok(())
}

/// runtime.md "Create".
pub fn create(root: &Path, id: &str, opts: &CreateOptions) -> Result<Created> {
    state::validate_id(id)?;
    let bundle = Bundle::load(&opts.bundle)?;
    let rootfs = bundle.rootfs()?;
    let spec = &bundle.spec;
    let linux = spec.linux().as_ref();
    let plan = Plan::new(linux)?;
    validate(spec, &rootfs, &plan, opts)?;
    let cgroups_path = CgroupsPath::parse(
        linux.and_then(|l| l.cgroups_path().as_deref()),
        id,
        opts.systemd_cgroup,
    )?;
    if opts.systemd_cgroup && !crate::cgroups::systemd::is_running() {
        return Err(Error::Unsupported(
            "--systemd-cgroup: systemd is not running on this host (PID 1 is not systemd); use the default cgroupfs driver".into(),
        ));
    }
    let layout = Layout::detect()?;
    if let Some(r) = linux.and_then(|l| l.resources().as_ref()) {
        crate::cgroups::resources::validate(&layout, r)?;
    }
    let mut cgroup = Cgroup::resolve(&layout, &cgroups_path)?;
    let unprivileged = !nix::unistd::geteuid().is_root();
    if opts.rootless {
        // Root inside a user namespace of its own (rootless podman runs
        // berth so) sets up the container as root does; only its cgroups
        // are the user's.
        if unprivileged {
            crate::rootless::validate(linux)?;
        }
        if !crate::rootless::cgroup_usable(&layout, &cgroup) && !opts.systemd_cgroup {
            crate::rootless::check_without_cgroup(linux.and_then(|l| l.resources().as_ref()))?;
            cgroup = Cgroup::default();
        }
    }

    let dir = ContainerDir::create(root, id)?;
    let me = std::process::id() as i32;
    let mut st = State {
        id: id.to_string(),
        pid: 0,
        pid_start: 0,
        creator_pid: me,
        creator_start: state::process_start_time(me).unwrap_or(0),
        bundle: bundle.dir.clone(),
        rootfs: rootfs.clone(),
        created: state::now_rfc3339(),
        owner: current_user_name(),
        cgroup_paths: cgroup.paths.clone(),
        cgroup_owned: Vec::new(),
        config: bundle.raw.clone(),
        host_mounts_above: if plan.has(LinuxNamespaceType::Mount) {
            None
        } else {
            Some(crate::rootfs::mount_id(&rootfs)?)
        },
        systemd_unit: match &cgroups_path {
            CgroupsPath::Systemd(u) => Some(u.unit.clone()),
            _ => None,
        },
    };
    // From here on, a failure undoes what was made (see Undo).
    let mut undo = Undo {
        dir: Some(dir),
        cgroup: None,
        pid: 0,
        host_mounts: st.host_mounts_above.map(|id| (rootfs.clone(), id)),
        systemd_unit: None,
    };
    let unit = match &cgroups_path {
        CgroupsPath::Systemd(u) => Some(u),
        _ => None,
    };
    match create_in(
        &mut undo, &mut st, &bundle, &plan, &layout, cgroup, unit, opts,
    ) {
        Ok((pid, console)) => {
            let dir = undo.dir.take().expect("dir is set until committed");
            Ok(Created {
                pid,
                dir,
                state: st,
                console,
            })
        }
        Err(e) => Err(e),
    }
}

#[allow(clippy::too_many_arguments)]
fn create_in(
    undo: &mut Undo,
    st: &mut State,
    bundle: &Bundle,
    plan: &Plan,
    layout: &Layout,
    cgroup: Cgroup,
    unit: Option<&crate::cgroups::systemd::UnitPath>,
    opts: &CreateOptions,
) -> Result<(i32, Option<std::os::fd::OwnedFd>)> {
    let dir = undo.dir.as_ref().expect("dir is set");
    // Record which cgroups berth is about to make before making them, so a
    // create killed in between leaves state that `delete --force` can act on.
    st.cgroup_owned = cgroup.paths.iter().map(|p| !p.exists()).collect();
    dir.save(st)?;
    let fifo = dir.fifo_path();
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .ctx(|| format!("mkfifo {}", fifo.display()))?;
    // Writable by whatever user the init ends up as (mkfifo applies umask).
    std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(|e| Error::path("chmod", &fifo, e))?;
    // With the systemd driver, systemd makes the cgroup when it starts the
    // unit with the init in it (after the clone).
    if unit.is_none() {
        make_cgroup(&mut undo.cgroup, dir, st, &cgroup, layout)?;
        let occupants = cgroup.pids(layout).len();
        if occupants > 0 {
            tracing::warn!("container's cgroup is not empty: {occupants} process(es) found");
        }
    }

    let spec = &bundle.spec;
    let linux = spec.linux().as_ref();
    let (parent_end, child_end) = sync::pair().ctx(|| "socketpair")?;
    // Where the init sends the pty master: the caller's socket, or ours.
    let terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
    let (console_ours, console_theirs) =
        crate::tty::console_channel(terminal, opts.console_socket.as_deref())?;

    // Namespaces that apply to children: switch, clone, switch back.
    let mut for_children = Vec::new();
    if let Some(p) = &plan.join_pid {
        for_children.push(ForChildren::join(
            "pid",
            nix::sched::CloneFlags::CLONE_NEWPID,
            p,
        )?);
    }
    if let Some(p) = &plan.join_time {
        for_children.push(ForChildren::join(
            "time",
            nix::sched::CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
            p,
        )?);
    } else if plan.new_time {
        for_children.push(ForChildren::new_time(
            linux.and_then(|l| l.time_offsets().as_ref()),
        )?);
    }

    let idmaps = idmap_namespaces(spec)?;
    let bind_sources = crate::mounts::open_bind_sources(
        spec.mounts().as_deref().unwrap_or_default(),
        &bundle.dir,
        &idmaps,
    )?;
    let seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(crate::seccomp::compile_cached(s, &seccomp_cache(dir))?),
        None => None,
    };
    let seccomp_listener = match (
        &seccomp,
        linux
            .and_then(|l| l.seccomp().as_ref())
            .and_then(|s| s.listener_path().as_ref()),
    ) {
        (Some(c), Some(path)) if c.notify => {
            Some(crate::tty::connect(path, "linux.seccomp.listenerPath")?)
        }
        _ => None,
    };
    let listen_fds = socket_activation_fds();
    let fifo_fd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(&fifo)
        .map_err(|e| Error::path("open", &fifo, e))?;
    let fifo_fd = std::os::fd::OwnedFd::from(fifo_fd);
    let init_args = process::InitArgs {
        id: &st.id,
        spec,
        bundle: &bundle.dir,
        rootfs: &st.rootfs,
        plan,
        layout,
        cgroup: &cgroup,
        channel: child_end,
        exec_fifo: &fifo_fd,
        console_socket: console_theirs.as_ref().map(|f| f.as_raw_fd()),
        idmaps: &idmaps,
        bind_sources: &bind_sources,
        no_pivot: opts.no_pivot,
        no_new_keyring: opts.no_new_keyring,
        // An unprivileged berth writes the maps itself: the init must stay
        // dumpable (its /proc files its user's) until then.
        dumpable_until_go: plan.new_user && !nix::unistd::geteuid().is_root(),
        preserve_fds: listen_fds + opts.preserve_fds,
        seccomp: seccomp.as_ref(),
        seccomp_listener: seccomp_listener.as_ref().map(|f| f.as_raw_fd()),
        extra_env: if listen_fds > 0 {
            vec![format!("LISTEN_FDS={listen_fds}"), "LISTEN_PID=1".into()]
        } else {
            Vec::new()
        },
    };
    let pid = clone_init(plan.clone_flags, init_args)?;
    undo.pid = pid;
    drop(fifo_fd);
    drop(console_theirs);
    drop(idmaps);
    drop(bind_sources);
    drop(seccomp_listener);
    for guard in for_children {
        guard.restore()?;
    }

    if plan.new_user {
        let linux = linux.expect("user namespace implies linux");
        if !nix::unistd::geteuid().is_root() {
            crate::rootless::write_id_maps(pid, linux)?;
        } else {
            namespaces::write_id_maps(pid, linux)?;
        }
    }
    let resources = linux.and_then(|l| l.resources().as_ref());
    if let Some(unit) = unit {
        start_unit(&mut undo.systemd_unit, unit, pid, &st.id, layout, resources)?;
        make_cgroup(&mut undo.cgroup, dir, st, &cgroup, layout)?;
    }
    if let Some(r) = resources.filter(|_| !cgroup.paths.is_empty()) {
        cgroup.apply_resources(layout, r)?;
    }
    cgroup.add(pid)?;
    if let Err(e) = cgroup.apply_devices(layout, resources) {
        // As runc: rootless, the device controller's errors are ignored.
        // An unprivileged user may not load the v2 device program (nor
        // write a v1 devices.allow), and could not open a host device
        // its own ids do not allow anyway.
        if !opts.rootless {
            return Err(e);
        }
        tracing::debug!("device rules not applied (rootless): {e}");
    }
    if let Some(r) = spec.process().as_ref().and_then(|p| p.rlimits().as_ref()) {
        rlimits::apply(pid, r)?;
    }
    if let Some(devices) = linux.and_then(|l| l.net_devices().as_ref()) {
        crate::netdev::move_into(pid, devices)?;
    }
    let hooks = spec.hooks().as_ref();
    let notify = seccomp.as_ref().is_some_and(|c| c.notify);
    let hook_state = if hooks.is_some() || notify {
        hook_state(st, pid, "creating")
    } else {
        String::new()
    };
    parent_end
        .send(&Msg::Go(hook_state.clone()))
        .ctx(|| "signal the container init")?;
    let mut reply = parent_end.recv().ctx(|| "read from the container init")?;
    if reply == Some(Msg::Mounted) {
        let h = hooks.expect("the init asks only when there are hooks");
        let state = hook_state.as_bytes();
        crate::hooks::run_all(
            "prestart",
            h.prestart().as_deref().unwrap_or_default(),
            state,
            Default::default(),
        )?;
        crate::hooks::run_all(
            "createRuntime",
            h.create_runtime().as_deref().unwrap_or_default(),
            state,
            Default::default(),
        )?;
        parent_end
            .send(&Msg::HooksDone)
            .ctx(|| "signal the container init")?;
        reply = parent_end.recv().ctx(|| "read from the container init")?;
    }
    match reply {
        Some(Msg::Ready) => {}
        Some(Msg::Error(e)) => return Err(Error::Other(e)),
        Some(other) => {
            return Err(Error::Other(format!(
                "container init: unexpected {other:?}"
            )))
        }
        None => return Err(Error::Other("container init exited during setup".into())),
    }

    let console = match console_ours {
        Some(sock) => Some(crate::tty::recv_fd(sock.as_raw_fd())?),
        None => None,
    };
    st.pid = pid;
    st.pid_start = state::process_start_time(pid).unwrap_or(0);
    dir.save(st)?;
    if let Some(pid_file) = &opts.pid_file {
        write_pid_file(pid_file, pid)?;
    }
    parent_end
        .send(&Msg::Committed)
        .ctx(|| "signal the container init")?;
    // Exiting before the init has cleared its parent-death signal would kill it.
    match parent_end.recv().ctx(|| "read from the container init")? {
        Some(Msg::Detached) => Ok((pid, console)),
        Some(Msg::Error(e)) => Err(Error::Other(e)),
        _ => Err(Error::Other("container init exited during setup".into())),
    }
}

/// Makes the container's cgroup directories (those missing: with the
/// systemd driver, the ones in hierarchies systemd leaves alone), records
/// which berth made, and refuses a frozen one: an init moved into it would
/// block there for good (and `create` with it), so runc refuses it too.
fn make_cgroup(
    undo: &mut Option<(Cgroup, Vec<bool>)>,
    dir: &ContainerDir,
    st: &mut State,
    cgroup: &Cgroup,
    layout: &Layout,
) -> Result<()> {
    *undo = Some((cgroup.clone(), st.cgroup_owned.clone()));
    let made = cgroup.create(layout)?;
    if made != st.cgroup_owned {
        // Another container (or systemd) made or removed one meanwhile.
        st.cgroup_owned = made;
        *undo = Some((cgroup.clone(), st.cgroup_owned.clone()));
        dir.save(st)?;
    }
    if cgroup.is_frozen(layout) {
        return Err(Error::State(
            "container's cgroup unexpectedly frozen".into(),
        ));
    }
    Ok(())
}

/// The systemd driver: a transient scope holding the init, delegated, with
/// the resource properties systemd understands (the files are written
/// after, as with cgroupfs).
fn start_unit(
    undo: &mut Option<String>,
    unit: &crate::cgroups::systemd::UnitPath,
    pid: i32,
    id: &str,
    layout: &Layout,
    resources: Option<&oci_spec::runtime::LinuxResources>,
) -> Result<()> {
    use crate::cgroups::systemd::{properties, Manager};
    let manager = Manager::connect()?;
    let version = manager.version();
    let devices = crate::devices::Emulator::from_rules(&crate::devices::cgroup_rules(resources))?;
    let empty = oci_spec::runtime::LinuxResources::default();
    let r = resources.unwrap_or(&empty);
    let props = if layout.is_pure_v2() {
        properties::v2(r, &devices, version)
    } else {
        properties::v1(r, &devices, version)
    };
    *undo = Some(unit.unit.clone());
    manager.start(unit, pid, &format!("berth container {id}"), props)?;
    Ok(())
}

/// The state document hooks read on stdin.
pub fn hook_state(st: &State, pid: i32, status: &str) -> String {
    let bundle = st.bundle.display().to_string();
    serde_json::to_string(&crate::hooks::HookState {
        oci_version: st.oci_version(),
        id: &st.id,
        status,
        pid,
        bundle: &bundle,
        annotations: st.annotations(),
    })
    .unwrap_or_default()
}

/// Compiled seccomp profiles, shared by the containers of one `--root`.
pub fn seccomp_cache(dir: &ContainerDir) -> PathBuf {
    dir.path.parent().unwrap_or(Path::new("/")).join(".cache")
}

/// systemd socket activation: fds 3.. passed to berth itself (LISTEN_PID
/// is ours) go on to the container, before any --preserve-fds ones, as
/// runc does.
pub fn socket_activation_fds() -> u32 {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    if !ours {
        return 0;
    }
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// One user namespace per idmapped mount (None for the others), made from
/// the host's user namespace before the clone.
fn idmap_namespaces(spec: &Spec) -> Result<Vec<Option<std::os::fd::OwnedFd>>> {
    let linux = spec.linux().as_ref();
    let mut out = Vec::new();
    for m in spec.mounts().iter().flatten() {
        if !crate::mounts::wants_idmap(m) {
            out.push(None);
            continue;
        }
        let uid = m
            .uid_mappings()
            .clone()
            .or_else(|| linux.and_then(|l| l.uid_mappings().clone()))
            .unwrap_or_default();
        let gid = m
            .gid_mappings()
            .clone()
            .or_else(|| linux.and_then(|l| l.gid_mappings().clone()))
            .unwrap_or_default();
        out.push(Some(namespaces::userns_with_maps(&uid, &gid)?));
    }
    Ok(out)
}

/// Clones the init with `flags` like fork(2) (same stack, copy-on-write);
/// the child runs [`process::run`] and never returns here.
fn clone_init(flags: nix::sched::CloneFlags, args: process::InitArgs) -> Result<i32> {
    // SAFETY: berth is single-threaded.
    let pid = unsafe { crate::sys::clone_fork(flags.bits()) }
        .map_err(|e| Error::sys("clone the container init", e))?;
    if pid == 0 {
        process::run(args);
    }
    Ok(pid)
}

/// The name of the user running berth, as runc records the container's owner.
fn current_user_name() -> String {
    let uid = nix::unistd::geteuid().as_raw();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            crate::user::parse_passwd(&t)
                .into_iter()
                .find(|p| p.uid == uid)
        })
        .map(|p| p.name)
        .unwrap_or_else(|| uid.to_string())
}

/// Writes the pid file atomically, as containerd reads it right away.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = std::path::absolute(path).map_err(|e| Error::path("resolve", path, e))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, pid.to_string()).map_err(|e| Error::path("write pid file", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::path("write pid file", &path, e))
}

/// What a failed create must take back, in reverse order of making it.
struct Undo {
    dir: Option<ContainerDir>,
    cgroup: Option<(Cgroup, Vec<bool>)>,
    pid: i32,
    /// The rootfs, and the mount below what the init stacked on it in
    /// berth's mount namespace (a container without one of its own).
    host_mounts: Option<(PathBuf, u64)>,
    /// The systemd unit started for the container.
    systemd_unit: Option<String>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        if self.pid > 0 {
            // SAFETY: our own child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
        }
        if let Some(unit) = &self.systemd_unit {
            if let Err(e) = crate::cgroups::systemd::Manager::connect().and_then(|m| m.stop(unit)) {
                tracing::warn!("cleanup after failed create: {e}");
            }
        }
        if let Some((rootfs, below)) = &self.host_mounts {
            if let Err(e) = crate::rootfs::detach_above(rootfs, *below) {
                tracing::warn!("cleanup after failed create: {e}");
            }
        }
        if let Some((cgroup, owned)) = &self.cgroup {
            if let Err(e) = cgroup.remove(owned) {
                tracing::warn!("cleanup after failed create: {e}");
            }
        }
        if let Err(e) = dir.remove() {
            tracing::warn!("cleanup after failed create: {e}");
        }
    }
}

/// A container looked up by ID, with its directory locked.
pub struct Container {
    pub dir: ContainerDir,
    pub state: State,
    pub layout: Layout,
}

impl Container {
    pub fn load(root: &Path, id: &str) -> Result<Container> {
        let dir = ContainerDir::open(root, id)?;
        let state = dir.load()?.ok_or_else(|| Error::NotFound(id.into()))?;
        Ok(Container {
            dir,
            state,
            layout: Layout::detect()?,
        })
    }

    pub fn cgroup(&self) -> Cgroup {
        Cgroup {
            paths: self.state.cgroup_paths.clone(),
        }
    }

    /// The container's processes: its cgroup's. Without one (rootless
    /// where no cgroup is delegated), those of its init's PID namespace,
    /// or, where it shares ours, the init and its descendants.
    pub fn pids(&self) -> Vec<i32> {
        if !self.state.cgroup_paths.is_empty() {
            return self.cgroup().pids(&self.layout);
        }
        if self.state.pid <= 0 || self.status() == Status::Stopped {
            return Vec::new();
        }
        processes_of(self.state.pid)
    }

    pub fn status(&self) -> Status {
        status_of(&self.dir.path, &self.state, &self.layout)
    }
}

/// The processes of `init`'s PID namespace when it has one of its own,
/// else `init` and its descendants (from each process's parent in
/// /proc/PID/stat).
fn processes_of(init: i32) -> Vec<i32> {
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let init_ns = ns(&init.to_string());
    let all: Vec<i32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    if init_ns.is_some() && init_ns != ns("self") {
        return all
            .into_iter()
            .filter(|p| ns(&p.to_string()) == init_ns)
            .collect();
    }
    let parent = |pid: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command, which may hold spaces and parentheses.
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let parents: Vec<(i32, i32)> = all.iter().filter_map(|&p| Some((p, parent(p)?))).collect();
    let mut out = vec![init];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

pub fn status_of(dir: &Path, st: &State, layout: &Layout) -> Status {
    state::status(dir, st, || {
        Cgroup {
            paths: st.cgroup_paths.clone(),
        }
        .is_frozen(layout)
    })
}

/// runtime.md "Start": releases the init blocked on the exec fifo.
pub fn start(c: &Container) -> Result<()> {
    match c.status() {
        Status::Created => {}
        Status::Stopped => {
            return Err(Error::State(
                "cannot start a container that has stopped".into(),
            ))
        }
        s => {
            return Err(Error::State(format!(
                "cannot start an already {s} container"
            )))
        }
    }
    release_init(&c.dir.fifo_path(), c.state.pid, c.state.pid_start)?;
    run_poststart(c)
}

/// The hooks of the config the container was created from.
pub fn hooks_of(st: &State) -> Option<oci_spec::runtime::Hooks> {
    st.config
        .get("hooks")
        .and_then(|h| serde_json::from_value(h.clone()).ok())
}

/// config.md "poststart": after the user program started. A failure stops
/// the container and fails `start`.
pub fn run_poststart(c: &Container) -> Result<()> {
    let Some(list) = hooks_of(&c.state).and_then(|h| h.poststart().clone()) else {
        return Ok(());
    };
    let state = hook_state(&c.state, c.state.pid, "running");
    if let Err(e) = crate::hooks::run_all("poststart", &list, state.as_bytes(), Default::default())
    {
        let _ = c.cgroup().signal_all(&c.layout, libc::SIGKILL);
        // SAFETY: kill(2) of the container's init.
        unsafe { libc::kill(c.state.pid, libc::SIGKILL) };
        return Err(e);
    }
    Ok(())
}

/// Opens the exec fifo for reading (never blocking: the open succeeds at
/// once with O_NONBLOCK) and waits for the init's byte, watching that the
/// init is still alive meanwhile.
pub fn release_init(fifo: &Path, pid: i32, pid_start: u64) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(fifo)
        .map_err(|e| Error::path("open exec fifo", fifo, e))?;
    let mut pfd = libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: poll on one pollfd we own.
        let r = unsafe { libc::poll(&mut pfd, 1, 100) };
        if r > 0 {
            let mut b = [0u8; 1];
            // SAFETY: read into a one-byte buffer.
            let n = unsafe { libc::read(f.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
            if n == 1 {
                break;
            }
        }
        if !state::is_same_process(pid, pid_start) {
            return Err(Error::State("container init exited before start".into()));
        }
    }
    std::fs::remove_file(fifo).map_err(|e| Error::path("remove", fifo, e))
}

/// runtime.md "Kill".
pub fn kill(c: &Container, signal: i32, all: bool) -> Result<()> {
    let status = c.status();
    if status == Status::Stopped && !all {
        return Err(Error::State("container not running".into()));
    }
    if status == Status::Stopped && signal == 0 {
        // Nothing to probe, and nothing wrong with asking (runc agrees).
        return Ok(());
    }
    if all && !c.state.cgroup_paths.is_empty() {
        return c.cgroup().signal_all(&c.layout, signal);
    }
    if all && status != Status::Stopped {
        // No cgroup (rootless): every process found another way; the
        // init's own error is the one reported.
        let sig = nix::sys::signal::Signal::try_from(signal).ok();
        for pid in c.pids().into_iter().filter(|p| *p != c.state.pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.state.pid),
        nix::sys::signal::Signal::try_from(signal).ok(),
    )
    .ctx(|| format!("kill container init {}", c.state.pid))
}

/// runtime.md "Delete". A `created` container is killed and removed without
/// --force, as runc does (containerd relies on it); a running or paused one
/// only with --force.
pub fn delete(c: Container, force: bool) -> Result<()> {
    let status = c.status();
    match status {
        Status::Stopped => {}
        Status::Created | Status::Creating => kill_and_wait(&c)?,
        Status::Running | Status::Paused if force => kill_and_wait(&c)?,
        s => {
            return Err(Error::State(format!(
                "cannot delete container {} that is not stopped: {s}",
                c.state.id
            )))
        }
    }
    destroy(c)
}

/// SIGKILLs everything in the container and waits until the init is gone.
fn kill_and_wait(c: &Container) -> Result<()> {
    let cgroup = c.cgroup();
    if cgroup.is_frozen(&c.layout) {
        // Signals are not delivered to frozen tasks.
        let _ = cgroup.signal_all(&c.layout, libc::SIGKILL);
        let _ = cgroup.freeze(&c.layout, false);
    }
    if c.state.pid > 0 && state::is_same_process(c.state.pid, c.state.pid_start) {
        // SAFETY: kill(2) of the container's init, identity checked above.
        unsafe { libc::kill(c.state.pid, libc::SIGKILL) };
    }
    cgroup.signal_all(&c.layout, libc::SIGKILL)?;
    wait_gone(c.state.pid, c.state.pid_start);
    Ok(())
}

/// Waits (bounded) for a process that is not necessarily our child to die.
fn wait_gone(pid: i32, start: u64) {
    let mut delay = std::time::Duration::from_micros(100);
    for _ in 0..200 {
        if !state::is_same_process(pid, start) {
            return;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(std::time::Duration::from_millis(20));
    }
}

/// Removes the cgroup, the mounts (when they were made in berth's mount
/// namespace) and the state of a stopped container.
pub fn destroy(c: Container) -> Result<()> {
    if let Some(below) = c.state.host_mounts_above {
        crate::rootfs::detach_above(&c.state.rootfs, below)?;
    }
    if let Some(unit) = &c.state.systemd_unit {
        crate::cgroups::systemd::Manager::connect()?.stop(unit)?;
    }
    let cgroup = c.cgroup();
    if c.state.cgroup_owned.iter().any(|o| *o) {
        // Stragglers in a container without its own pid namespace.
        if !cgroup.pids(&c.layout).is_empty() {
            cgroup.signal_all(&c.layout, libc::SIGKILL)?;
        }
        cgroup.remove(&c.state.cgroup_owned)?;
    }
    let hooks = hooks_of(&c.state).and_then(|h| h.poststop().clone());
    let state = hook_state(&c.state, 0, "stopped");
    c.dir.remove()?;
    // config.md "poststop": a failure is a warning; the delete stands.
    if let Some(list) = hooks {
        if let Err(e) =
            crate::hooks::run_all("poststop", &list, state.as_bytes(), Default::default())
        {
            tracing::warn!("{e}");
        }
    }
    Ok(())
}
