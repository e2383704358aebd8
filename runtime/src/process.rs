//! The container's init: everything that happens inside the new namespaces,
//! from clone to the user's program, in the order the kernel requires.
//!
//! [`container_init`] is the whole start path, top to bottom; each step is a
//! function named for the spec section it implements.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::capabilities::CapSets;
use crate::cgroups::{Cgroup, Layout};
use crate::error::{Context, Error, Result};
use crate::namespaces::Plan;
use crate::procfs::ProcRoot;
use crate::rootfs::{self, Root};
use crate::sync::{Channel, Msg};
use crate::{attributes, devices, mounts, tty};

/// Everything the init needs, prepared by the parent before the clone so
/// the init only has to make system calls.
pub struct InitArgs<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub plan: &'a Plan,
    pub layout: &'a Layout,
    pub cgroup: &'a Cgroup,
    pub channel: Channel,
    /// O_PATH fd of the exec fifo, opened by the parent: the state
    /// directory is not reachable for a root mapped into a user namespace.
    pub exec_fifo: &'a OwnedFd,
    /// Where to send the pty master when process.terminal is set.
    pub console_socket: Option<i32>,
    /// Per mount: the user namespace of its idmapping.
    pub idmaps: &'a [Option<OwnedFd>],
    /// Per mount: its bind source as a detached mount, opened by create.
    pub bind_sources: &'a [Option<OwnedFd>],
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// Stay dumpable until `Go` (a rootless parent writes the id maps).
    pub dumpable_until_go: bool,
    pub preserve_fds: u32,
    /// Added to process.env (systemd socket activation's LISTEN_FDS).
    pub extra_env: Vec<String>,
    /// The compiled linux.seccomp profile, and the listenerPath socket.
    pub seccomp: Option<&'a crate::seccomp::Compiled>,
    pub seccomp_listener: Option<i32>,
}

/// Entry point of the cloned child; never returns.
pub fn run(args: InitArgs) -> ! {
    let err = match container_init(&args) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // When `berth create` went away it has said why; a second line would
    // only confuse (runc's init stays quiet then too).
    if !matches!(err, Error::CallerGone) && args.channel.send(&Msg::Error(err.to_string())).is_err()
    {
        // Past the handshake nobody listens on the channel; stderr is the
        // container's, which is where `run` shows it.
        eprintln!("berth: {err}");
    }
    // SAFETY: _exit skips the parent's atexit handlers and buffers. 1, as
    // runc's init exits on any failure (a startContainer hook's included).
    unsafe { libc::_exit(1) }
}

/// runtime.md "Lifecycle" steps 2–6 as seen from the container's process.
fn container_init(a: &InitArgs) -> Result<std::convert::Infallible> {
    let mut keep = vec![a.channel.raw_fd(), a.exec_fifo.as_raw_fd()];
    keep.extend(a.console_socket);
    keep.extend(a.seccomp_listener);
    keep.extend(a.idmaps.iter().flatten().map(AsRawFd::as_raw_fd));
    keep.extend(a.bind_sources.iter().flatten().map(AsRawFd::as_raw_fd));
    close_inherited_fds(a.preserve_fds, keep)?;
    // Until the parent has saved the state, the init dies with it; and no
    // process in the container may ptrace or open /proc/<init>/exe of a
    // process still running berth's code (CVE-2019-5736).
    set_parent_death_signal(libc::SIGKILL)?;
    if !a.dumpable_until_go {
        set_dumpable(false)?;
    }
    // SAFETY: umask never fails. Device and directory modes are exact.
    unsafe { libc::umask(0) };

    let hook_state = match a.channel.recv().ctx(|| "read from berth create")? {
        Some(Msg::Go(state)) => state,
        Some(Msg::Error(e)) => return Err(Error::Other(e)),
        None => return Err(Error::CallerGone),
        Some(other) => return Err(Error::Other(format!("unexpected message {other:?}"))),
    };
    if a.dumpable_until_go {
        // A process made by fork keeps its parent's (the host's) user
        // namespace on its memory: once non-dumpable, its /proc files are
        // the host root's, out of an unprivileged user's reach. So what
        // the init writes there for itself, it writes first.
        if let Some(adj) = a.spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
            set_oom_score_adj(&ProcRoot::open()?, adj)?;
        }
        set_dumpable(false)?;
    }
    a.plan.join_in_init()?;
    // Opened now, in the container's pid namespace and before any of the
    // config's mounts exist: every /proc write below goes through it.
    let proc = ProcRoot::open()?;
    let fd_dir = proc
        .fd_dir()
        .map_err(|e| Error::sys("open /proc/self/fd of the verified procfs", e))?;
    if a.plan.new_user {
        become_root_in_user_namespace()?;
    }
    if a.plan.new_cgroup {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .ctx(|| "unshare cgroup namespace")?;
    }
    if !a.no_new_keyring {
        join_session_keyring(a.id);
    }
    let linux = a.spec.linux().as_ref();
    let process = a
        .spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Config("process: required".into()))?;

    let has_mount_ns = a.plan.has(LinuxNamespaceType::Mount);
    let dev_readonly = setup_rootfs(a, has_mount_ns)?;
    let hooks = a.spec.hooks().as_ref();
    if hooks.is_some_and(has_runtime_side_create_hooks) {
        a.channel
            .send(&Msg::Mounted)
            .ctx(|| "report to berth create")?;
        expect(&a.channel, Msg::HooksDone)?;
    }
    // The hooks the init runs get the container process's environment
    // when they have none of their own, as under runc.
    let process_env = process.env().as_deref().unwrap_or_default();
    if let Some(list) = hooks.and_then(|h| h.create_container().as_deref()) {
        let ctx = crate::hooks::Context {
            default_env: Some(process_env),
            cwd: Some(a.rootfs),
        };
        crate::hooks::run_all("createContainer", list, hook_state.as_bytes(), ctx)?;
    }
    change_root(a, has_mount_ns)?;
    let pty = match a.console_socket {
        Some(sock) => Some(setup_terminal(sock, process)?),
        None => None,
    };
    if dev_readonly {
        mounts::make_readonly_at(c"/dev")?;
    }
    if let Some(hostname) = a.spec.hostname() {
        nix::unistd::sethostname(hostname).ctx(|| format!("set hostname {hostname:?}"))?;
    }
    if let Some(domainname) = a.spec.domainname() {
        set_domainname(domainname)?;
    }
    if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
        apply_sysctl(&proc, sysctl)?;
    }
    // Without a mount namespace of the container's own there are none
    // (refused before anything was made).
    if let Some(paths) = linux.and_then(|l| l.readonly_paths().as_ref()) {
        mounts::apply_readonly_paths(paths)?;
    }
    if let Some(paths) = linux.and_then(|l| l.masked_paths().as_ref()) {
        mounts::apply_masked_paths(paths)?;
    }

    let listener = a.seccomp_listener.map(|sock| {
        let meta = linux
            .and_then(|l| l.seccomp().as_ref())
            .and_then(|s| s.listener_metadata().clone());
        (
            sock,
            crate::seccomp::listener_state(&hook_state, host_pid_of(&hook_state), meta.as_deref()),
        )
    });
    let seccomp = a
        .seccomp
        .map(|program| crate::seccomp::Setup { program, listener });
    let program = become_process(
        &proc,
        process,
        linux,
        pty,
        &a.extra_env,
        seccomp.as_ref(),
        a.preserve_fds,
        !a.dumpable_until_go,
    )?;

    // Created: report, then wait for `start` on the exec fifo.
    a.channel
        .send(&Msg::Ready)
        .ctx(|| "report ready to berth create")?;
    expect(&a.channel, Msg::Committed)?;
    set_parent_death_signal(0)?;
    a.channel
        .send(&Msg::Detached)
        .ctx(|| "report to berth create")?;
    drop(proc);
    wait_for_start(&fd_dir, a.exec_fifo)?;
    drop(fd_dir);
    if let Some(list) = hooks.and_then(|h| h.start_container().as_deref()) {
        let ctx = crate::hooks::Context {
            default_env: Some(process_env),
            cwd: None,
        };
        crate::hooks::run_all(
            "startContainer",
            list,
            with_status(&hook_state, "created").as_bytes(),
            ctx,
        )?;
    }

    exec_program(&program)
}

/// A program ready to execve: path, argv, envp, prepared while berth's
/// allocator may still be used.
pub struct Program {
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
    umask: u32,
}

/// The steps that turn this process into the configured one, shared by the
/// init and `exec` (config.md "process", in runc's order): terminal, env,
/// cwd, program lookup, scheduling attributes, oomScoreAdj, no_new_privs,
/// bounding set, user, capability sets.
#[allow(clippy::too_many_arguments)]
pub fn become_process(
    proc: &ProcRoot,
    process: &Process,
    linux: Option<&oci_spec::runtime::Linux>,
    pty: Option<tty::Pty>,
    extra_env: &[String],
    seccomp: Option<&crate::seccomp::Setup>,
    preserve_fds: u32,
    set_oom: bool,
) -> Result<Program> {
    if let Some(pty) = &pty {
        tty::make_controlling(&pty.slave)?;
        tty::give_to(&pty.slave, process.user().uid())?;
    }
    drop(pty);
    let mut env = environment(process);
    env.extend(extra_env.iter().cloned());
    change_cwd(process)?;
    let path = find_program(process, &env)?;
    if let Some(s) = process.scheduler() {
        attributes::set_scheduler(s)?;
    }
    if let Some(p) = process.io_priority() {
        attributes::set_io_priority(p)?;
    }
    if let Some(p) = linux.and_then(|l| l.memory_policy().as_ref()) {
        attributes::set_memory_policy(p)?;
    }
    if let Some(adj) = process.oom_score_adj().filter(|_| set_oom) {
        set_oom_score_adj(proc, adj)?;
    }
    // Before any filter exists: a profile written before close_range (or
    // one that leaves it out) must not make every container fail.
    mark_fds_for_exec(proc, preserve_fds)?;
    let nnp = process.no_new_privileges() == Some(true);
    if nnp {
        set_no_new_privileges()?;
    } else if let Some(s) = seccomp {
        // Without no_new_privs, loading a filter takes CAP_SYS_ADMIN, which
        // the capability step may drop: load it now.
        s.apply()?;
    }
    let caps = CapSets::from_spec(process.capabilities().as_ref());
    caps.apply_bounding()?;
    set_user(process)?;
    caps.apply()?;
    // What remains before execve is done before a late filter can refuse
    // the system calls it takes.
    if let Some(p) = linux.and_then(|l| l.personality().as_ref()) {
        attributes::set_personality(p)?;
    }
    attributes::set_exec_labels(
        proc,
        process.apparmor_profile().as_deref(),
        process.selinux_label().as_deref(),
    )?;
    if nnp {
        // As late as possible, so the filter constrains the fewest of
        // berth's own system calls.
        if let Some(s) = seccomp {
            s.apply()?;
        }
    }
    let to_c = |s: &str| CString::new(s).map_err(|_| Error::Config(format!("{s:?}: contains NUL")));
    Ok(Program {
        path,
        args: process
            .args()
            .iter()
            .flatten()
            .map(|s| to_c(s))
            .collect::<Result<_>>()?,
        env: env.iter().map(|s| to_c(s)).collect::<Result<_>>()?,
        umask: process.user().umask().unwrap_or(0o022),
    })
}

/// config.md "process.oomScoreAdj". Lowering it takes CAP_SYS_RESOURCE:
/// an unprivileged user can only raise it, which the error says.
fn set_oom_score_adj(proc: &ProcRoot, adj: i32) -> Result<()> {
    match proc.write(
        "process.oomScoreAdj",
        "self/oom_score_adj",
        &adj.to_string(),
    ) {
        Err(Error::Sys { source, .. }) if source.raw_os_error() == Some(libc::EACCES) => {
            let now = proc
                .open_file("self/oom_score_adj", libc::O_RDONLY)
                .ok()
                .and_then(|mut f| {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut f, &mut s)
                        .ok()
                        .map(|_| s)
                })
                .unwrap_or_default();
            Err(Error::Config(format!(
                "process.oomScoreAdj {adj}: only a privileged runtime can lower it (it is {} now)",
                now.trim()
            )))
        }
        other => other,
    }
}

/// Whether `create` runs hooks while the init waits (prestart, createRuntime).
pub fn has_runtime_side_create_hooks(h: &oci_spec::runtime::Hooks) -> bool {
    h.prestart().as_ref().is_some_and(|l| !l.is_empty())
        || h.create_runtime().as_ref().is_some_and(|l| !l.is_empty())
}

/// The init's host PID, from the state document the parent sent (inside
/// a new pid namespace getpid() says 1).
fn host_pid_of(state: &str) -> i32 {
    serde_json::from_str::<serde_json::Value>(state)
        .ok()
        .and_then(|v| v["pid"].as_i64())
        .unwrap_or(0) as i32
}

/// The hook state with another status.
fn with_status(state: &str, status: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(state).unwrap_or_default();
    v["status"] = serde_json::Value::from(status);
    v.to_string()
}

/// Right after the clone, the new process closes every fd it inherited
/// except stdio, the caller's preserved fds (3 up), the log and `own` (the
/// channels berth made for it): a lock or directory the caller held must
/// not stay open in the container, not even until `start`.
fn close_inherited_fds(preserve_fds: u32, mut own: Vec<i32>) -> Result<()> {
    own.extend([0, 1, 2]);
    own.extend(3..3 + preserve_fds as i32);
    own.extend(crate::logging::log_fd());
    crate::sys::close_all_except(&own).ctx(|| "close the fds inherited from berth's caller")
}

fn expect(channel: &Channel, want: Msg) -> Result<()> {
    match channel.recv().ctx(|| "read from berth create")? {
        Some(m) if m == want => Ok(()),
        Some(Msg::Error(e)) => Err(Error::Other(e)),
        Some(other) => Err(Error::Other(format!("unexpected message {other:?}"))),
        None => Err(Error::CallerGone),
    }
}

fn set_parent_death_signal(sig: i32) -> Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(Error::sys(
            "prctl(PR_SET_PDEATHSIG)",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn set_dumpable(on: bool) -> Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, libc::c_ulong::from(on), 0, 0, 0) } != 0 {
        return Err(Error::sys(
            "prctl(PR_SET_DUMPABLE)",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// In a new user namespace the init starts as the overflow user until the
/// maps exist; become the namespace's root so setup runs as 0:0 there.
fn become_root_in_user_namespace() -> Result<()> {
    nix::unistd::setresgid(0.into(), 0.into(), 0.into())
        .ctx(|| "setresgid 0 in the user namespace")?;
    nix::unistd::setresuid(0.into(), 0.into(), 0.into())
        .ctx(|| "setresuid 0 in the user namespace")?;
    Ok(())
}

/// A new session keyring, so the container cannot see the host's keys.
fn join_session_keyring(id: &str) {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name = CString::new(format!("_ses.{id}")).unwrap_or_else(|_| c"_ses".to_owned());
    // SAFETY: keyctl with a NUL-terminated name. Failure (no keyring
    // support, or EDQUOT) is not fatal, as with runc.
    unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
}

/// config.md "Root" and "Mounts", config-linux.md "Devices": propagation,
/// the rootfs bind, every mount in order, then the device nodes. Without a
/// mount namespace of the container's own (config-linux.md "Namespaces":
/// an unlisted type is the runtime's), this happens in berth's, under the
/// rootfs bind.
fn setup_rootfs(a: &InitArgs, own_mount_ns: bool) -> Result<bool> {
    let linux = a.spec.linux().as_ref();
    let propagation = root_propagation(a.spec)?.unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    rootfs::prepare(a.rootfs, propagation, own_mount_ns)?;
    let root = Root::open(a.rootfs)?;
    let mounts = a.spec.mounts().as_deref().unwrap_or_default();
    let ctx = mounts::MountContext {
        root: &root,
        bundle: a.bundle,
        layout: a.layout,
        cgroup: a.cgroup,
        cgroupns: a.plan.has(LinuxNamespaceType::Cgroup),
        sources: a.bind_sources,
        idmaps: a.idmaps,
    };
    let dev_readonly = mounts::mount_all(&ctx, mounts)?;
    // runc leaves /dev alone when the config bind-mounts it from elsewhere.
    let dev_is_bind = mounts
        .iter()
        .any(|m| m.destination() == Path::new("/dev") && mounts::is_bind(m));
    if !dev_is_bind {
        let devices = linux
            .and_then(|l| l.devices().as_deref())
            .unwrap_or_default();
        // mknod is not allowed in any user namespace but the initial one:
        // a new one, or the one berth runs in (rootless podman's).
        let bind = a.plan.new_user || crate::rootless::in_user_namespace();
        devices::create_devices(&root, devices, bind)?;
        devices::create_dev_symlinks(&root)?;
    }

    // runc creates a missing process.cwd (inside the root, after the mounts
    // so it lands on whatever is mounted there), as `docker run -w` expects.
    if let Some(cwd) = a.spec.process().as_ref().map(|p| p.cwd()) {
        if cwd.is_absolute() {
            root.mkdir_all(cwd)
                .map_err(|e| Error::Config(format!("process.cwd {}: {e}", cwd.display())))?;
        }
    }
    Ok(dev_readonly)
}

/// config-linux.md "Rootfs Mount Propagation".
pub fn root_propagation(spec: &Spec) -> Result<Option<MsFlags>> {
    let Some(p) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
    else {
        return Ok(None);
    };
    Ok(Some(match p {
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        other => {
            return Err(Error::Config(format!(
                "linux.rootfsPropagation: unknown value {other:?}"
            )))
        }
    }))
}

/// config.md "process.terminal": a pty from the container's devpts, its
/// slave on /dev/console, the master sent to whoever holds the console
/// socket.
fn setup_terminal(socket: i32, process: &Process) -> Result<tty::Pty> {
    let pty = tty::open_pty()?;
    if let Some(size) = process.console_size() {
        tty::set_size(
            pty.master.as_raw_fd(),
            size.height() as u16,
            size.width() as u16,
        )?;
    }
    tty::mount_console(&pty.slave)?;
    tty::send_fd(
        socket,
        pty.master.as_raw_fd(),
        &tty::slave_path(&pty.master)?,
    )?;
    // SAFETY: the socket's job is done; the init must not keep it.
    unsafe { libc::close(socket) };
    Ok(pty)
}

/// pivot_root (or move + chroot with --no-pivot; a plain chroot without a
/// mount namespace of the container's own), then root.readonly.
fn change_root(a: &InitArgs, own_mount_ns: bool) -> Result<()> {
    if !own_mount_ns {
        nix::unistd::chroot(a.rootfs).ctx(|| format!("chroot {}", a.rootfs.display()))?;
        nix::unistd::chdir("/").ctx(|| "chdir /")?;
    } else if a.no_pivot {
        rootfs::move_root(a.rootfs)?;
    } else {
        rootfs::pivot_root(a.rootfs)?;
    }
    if let Some(p) = root_propagation(a.spec)? {
        rootfs::set_root_propagation(p)?;
    }
    if a.spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        rootfs::make_readonly("/")?;
    }
    Ok(())
}

fn set_domainname(name: &str) -> Result<()> {
    // SAFETY: setdomainname with a buffer and its length.
    if unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(Error::sys(
            format!("set domainname {name:?}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// config-linux.md "Sysctl": written through the verified procfs, so
/// neither the container's /proc (read-only by then) nor anything mounted
/// or linked into it decides where the value goes.
fn apply_sysctl(proc: &ProcRoot, sysctl: &std::collections::HashMap<String, String>) -> Result<()> {
    for (key, value) in sysctl {
        let path = format!("sys/{}", key.replace('.', "/"));
        proc.write(&format!("linux.sysctl {key}"), &path, value)?;
    }
    Ok(())
}

/// config.md "process.env", plus HOME when the config leaves it out, as runc does.
fn environment(process: &Process) -> Vec<String> {
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let uid = process.user().uid();
        let home = crate::user::home_of(uid).unwrap_or_else(|| "/".into());
        env.push(format!("HOME={home}"));
    }
    env
}

/// config.md "process.cwd": chdir, then check the kernel agrees we are inside
/// the container's root (a cwd through a leaked fd would be "unreachable").
fn change_cwd(process: &Process) -> Result<()> {
    let cwd = process.cwd();
    if !cwd.is_absolute() {
        return Err(Error::Config(format!(
            "process.cwd {}: must be an absolute path",
            cwd.display()
        )));
    }
    nix::unistd::chdir(cwd).map_err(|e| Error::path("chdir to process.cwd", cwd, e))?;
    let now = nix::unistd::getcwd()
        .map_err(|e| Error::path("getcwd after chdir to process.cwd", cwd, e))?;
    if !now.is_absolute() {
        return Err(Error::Other(format!(
            "process.cwd {}: resolves outside the container",
            cwd.display()
        )));
    }
    Ok(())
}

/// Finds args[0] on the container's PATH now, so a missing program fails
/// `create` rather than the container after `start`.
fn find_program(process: &Process, env: &[String]) -> Result<CString> {
    let args = process.args().as_deref().unwrap_or_default();
    let name = args
        .first()
        .ok_or_else(|| Error::Config("process.args: must not be empty".into()))?;
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file())
            && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
    };
    let to_c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| Error::Config("process.args[0]: contains NUL".into()))
    };
    if name.contains('/') {
        let p = Path::new(name);
        return if is_exec(p) {
            to_c(p)
        } else {
            Err(Error::Other(format!(
                "exec: {name:?}: no such executable file"
            )))
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = PathBuf::from(dir).join(name);
        if is_exec(&candidate) {
            return to_c(&candidate);
        }
    }
    Err(Error::Other(format!(
        "exec: {name:?}: executable file not found in $PATH"
    )))
}

fn set_no_new_privileges() -> Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(Error::sys(
            "set process.noNewPrivileges",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// config.md "process.user": supplementary groups, gid, uid — keeping the
/// permitted capabilities across the uid change so the next step can set
/// them exactly.
fn set_user(process: &Process) -> Result<()> {
    let user = process.user();
    let gids: Vec<nix::unistd::Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    // setgroups is denied in a user namespace whose gid_map was written
    // with setgroups=deny; only then is an empty list acceptable to skip.
    if let Err(e) = nix::unistd::setgroups(&gids) {
        if !(gids.is_empty() && e == nix::Error::EPERM) {
            return Err(Error::sys("set process.user.additionalGids", e));
        }
    }
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let gid = nix::unistd::Gid::from_raw(user.gid());
    let uid = nix::unistd::Uid::from_raw(user.uid());
    nix::unistd::setresgid(gid, gid, gid).ctx(|| format!("set process.user.gid {gid}"))?;
    nix::unistd::setresuid(uid, uid, uid).ctx(|| format!("set process.user.uid {uid}"))?;
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    Ok(())
}

/// Blocks until `start` opens the exec fifo for reading, then tells it we
/// are going. The fifo was opened O_PATH before pivot_root; reopening that
/// fd through the verified procfs makes the blocking open possible from
/// inside, and nothing in the container's /proc can redirect it.
fn wait_for_start(fd_dir: &crate::procfs::FdDir, fifo: &OwnedFd) -> Result<()> {
    use std::os::fd::AsFd;
    let mut f = fd_dir
        .reopen(fifo.as_fd(), libc::O_WRONLY)
        .map_err(|e| Error::sys("open the exec fifo for writing", e))?;
    std::io::Write::write_all(&mut f, b"0").map_err(|e| Error::sys("write the exec fifo", e))
}

/// The last step: umask and execve.
pub fn exec_program(p: &Program) -> Result<std::convert::Infallible> {
    // SAFETY: umask never fails; signal() with SIG_DFL is always valid.
    unsafe {
        libc::umask(p.umask as libc::mode_t);
        // Rust ignores SIGPIPE in its programs and execve keeps ignored
        // signals: the container's program must start with the default,
        // as it does under runc.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let e = nix::unistd::execve(&p.path, &p.args, &p.env).unwrap_err();
    Err(Error::sys(
        format!(
            "exec {}",
            OsStr::from_bytes(p.path.as_bytes()).to_string_lossy()
        ),
        e,
    ))
}

/// Only the caller's --preserve-fds (and LISTEN_FDS) survive execve: every
/// other fd is marked close-on-exec (CVE-2024-21626 class). Where
/// close_range cannot (an old kernel), the fds are listed through the
/// verified procfs, never the container's /proc.
fn mark_fds_for_exec(proc: &ProcRoot, preserve_fds: u32) -> Result<()> {
    for fd in 3..3 + preserve_fds as i32 {
        // SAFETY: clearing FD_CLOEXEC on an fd the caller asked us to pass on.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    let first = 3 + preserve_fds;
    if crate::sys::cloexec_from(first).is_ok() {
        return Ok(());
    }
    let dir = proc
        .open_file("self/fd", libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|e| Error::sys("list /proc/self/fd of the verified procfs", e))?;
    let fds: Vec<i32> = nix::dir::Dir::from_fd(dir.into())
        .ctx(|| "list /proc/self/fd")?
        .iter()
        .flatten()
        .filter_map(|e| e.file_name().to_str().ok()?.parse().ok())
        .filter(|fd| *fd >= first as i32)
        .collect();
    for fd in fds {
        // SAFETY: setting FD_CLOEXEC on an fd of ours.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// What an exec'd process needs, prepared by `berth exec` before the clone.
pub struct ExecArgs<'a> {
    pub process: &'a Process,
    pub linux: Option<&'a oci_spec::runtime::Linux>,
    /// The container's namespaces to join, user first, mount last.
    pub namespaces: &'a [(nix::sched::CloneFlags, OwnedFd)],
    pub joins_user: bool,
    /// Rootless: stay dumpable until the process's own /proc writes are
    /// done (see `container_init`).
    pub rootless: bool,
    /// The init's root, for a container without a mount namespace.
    pub chroot: Option<&'a OwnedFd>,
    pub channel: Channel,
    pub console_socket: Option<i32>,
    pub preserve_fds: u32,
    pub seccomp: Option<crate::seccomp::Setup<'a>>,
}

/// Entry point of the child `berth exec` clones; never returns.
pub fn run_exec(args: ExecArgs) -> ! {
    let err = match exec_in_container(&args) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    if !matches!(err, Error::CallerGone) {
        let _ = args.channel.send(&Msg::Error(err.to_string()));
    }
    // SAFETY: _exit skips the parent's atexit handlers and buffers.
    unsafe { libc::_exit(1) }
}

/// runtime.md has no exec; runc's contract: join every namespace of the
/// container (the parent already put us in its pid namespace and cgroup),
/// become the process, and execve. Success is the channel closing on exec.
fn exec_in_container(a: &ExecArgs) -> Result<std::convert::Infallible> {
    let mut keep = vec![a.channel.raw_fd()];
    keep.extend(a.console_socket);
    keep.extend(a.namespaces.iter().map(|(_, fd)| fd.as_raw_fd()));
    keep.extend(a.chroot.map(AsRawFd::as_raw_fd));
    keep.extend(
        a.seccomp
            .as_ref()
            .and_then(|s| s.listener.as_ref())
            .map(|(fd, _)| *fd),
    );
    close_inherited_fds(a.preserve_fds, keep)?;
    set_parent_death_signal(libc::SIGKILL)?;
    if a.rootless {
        if let Some(adj) = a.process.oom_score_adj() {
            set_oom_score_adj(&ProcRoot::open()?, adj)?;
        }
    }
    set_dumpable(false)?;
    match a.channel.recv().ctx(|| "read from berth exec")? {
        Some(Msg::Go(_)) => {}
        Some(Msg::Error(e)) => return Err(Error::Other(e)),
        None => return Err(Error::CallerGone),
        Some(other) => return Err(Error::Other(format!("unexpected message {other:?}"))),
    }
    for (flags, fd) in a.namespaces {
        nix::sched::setns(fd, *flags)
            .ctx(|| format!("join the container's {flags:?} namespace"))?;
    }
    if a.joins_user {
        become_root_in_user_namespace()?;
    }
    if let Some(root) = a.chroot {
        nix::unistd::fchdir(root).ctx(|| "chdir to the container's root")?;
        nix::unistd::chroot(".").ctx(|| "chroot to the container's root")?;
    }
    let pty = match a.console_socket {
        Some(sock) => {
            let pty = tty::open_pty()?;
            if let Some(size) = a.process.console_size() {
                tty::set_size(
                    pty.master.as_raw_fd(),
                    size.height() as u16,
                    size.width() as u16,
                )?;
            }
            tty::send_fd(sock, pty.master.as_raw_fd(), &tty::slave_path(&pty.master)?)?;
            // SAFETY: the socket's job is done.
            unsafe { libc::close(sock) };
            Some(pty)
        }
        None => None,
    };
    let proc = ProcRoot::open()?;
    let program = become_process(
        &proc,
        a.process,
        a.linux,
        pty,
        &[],
        a.seccomp.as_ref(),
        a.preserve_fds,
        !a.rootless,
    )?;
    // A detached exec outlives berth: no parent-death signal past here.
    set_parent_death_signal(0)?;
    exec_program(&program)
}
