//! What changes when berth-img runs for a user without root, kept in one
//! place (as podman's `pkg/rootless`) rather than as `if rootless` through
//! the commands.
//!
//! An unprivileged user's berth-img runs, whole, as root of a user
//! namespace of its own: uid and gid 0 are the user, 1 and up the user's
//! subordinate ranges from /etc/subuid and /etc/subgid (mapped by the
//! setuid `newuidmap`/`newgidmap`). So layers unpack with their images'
//! owners (a file of uid 1000 is the user's subordinate id 999 on disk),
//! overlays mount with the kernel's unprivileged overlayfs, and `berth`
//! runs each container in a user namespace nested in this one.
//!
//! The namespace (with a mount namespace, where the overlays live) is held
//! by a pause process, forked (never re-executed) by the first command and
//! found by the next ones through the POSIX lock it holds on
//! `$XDG_RUNTIME_DIR/berth-img/pause.pid`. Every command joins it, so a
//! container started by one command is reachable by the next (`exec`,
//! `cp`, `stop`). When it is gone (killed, a reboot) the next command makes
//! a new one and containers get their overlays mounted again at start.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Gid, Uid};

use crate::error::{Error, Result};

/// Whether this process is berth-img for a user without root: its root
/// is an ordinary user outside its user namespace (the user's, joined by
/// [`enter`]; or rootless podman's, for berth-img run in a container of
/// it). Root of the initial namespace, or of one whose root is root
/// outside, is not.
pub fn active() -> bool {
    static ACTIVE: OnceLock<bool> = OnceLock::new();
    *ACTIVE.get_or_init(|| {
        std::fs::read_to_string("/proc/self/uid_map")
            .map(|m| root_is_unprivileged(&m))
            .unwrap_or(false)
    })
}

/// Whether a uid_map (lines "inside outside count") maps 0 to a user
/// other than root.
fn root_is_unprivileged(uid_map: &str) -> bool {
    uid_map.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        matches!(f.as_slice(), ["0", outside, _] if *outside != "0")
    })
}

/// The user's store unless `--root` or `$BERTH_IMG_ROOT` says otherwise:
/// `$XDG_DATA_HOME/berth`, else `~/.local/share/berth`, as podman keeps
/// its rootless storage.
pub fn default_root() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("berth"));
    }
    std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(|h| PathBuf::from(h).join(".local/share/berth"))
        .ok_or_else(|| {
            Error::Other("rootless: neither XDG_DATA_HOME nor HOME is set: give --root".into())
        })
}

/// How many uids and gids this process's user namespace maps (0 up to
/// that, as [`enter`] maps them); 1 when the user has no subordinate ids.
pub fn mapped_ids() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| (count("/proc/self/uid_map"), count("/proc/self/gid_map")))
}

fn count(map: &str) -> u32 {
    std::fs::read_to_string(map)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u32>().ok())
        .fold(0u32, u32::saturating_add)
}

/// The owner to give a file an image says belongs to `uid:gid`: itself,
/// except that with no subordinate ids everything is the user's (uid 0
/// here), as podman does then.
pub fn owner(uid: u32, gid: u32) -> (u32, u32) {
    if active() && mapped_ids() == (1, 1) {
        (0, 0)
    } else {
        (uid, gid)
    }
}

/// The xattr that makes a layer directory opaque to overlayfs: the
/// `trusted.` one as root; `user.`, which overlayfs reads with its
/// `userxattr` option, in a user namespace, where `trusted.` is refused.
pub fn opaque_xattr() -> &'static str {
    if active() {
        "user.overlay.opaque"
    } else {
        crate::layer::OVERLAY_OPAQUE_XATTR
    }
}

/// The user namespace a container gets inside the user's: every id of
/// the user's namespace mapped onto itself, so the image's owners stay as
/// unpacked and `berth` (root here) writes the maps itself. One mapping
/// per range of ours: the kernel wants each within one range of the
/// parent's.
pub fn container_mappings() -> (serde_json::Value, serde_json::Value) {
    (
        identity_mappings("/proc/self/uid_map"),
        identity_mappings("/proc/self/gid_map"),
    )
}

fn identity_mappings(map: &str) -> serde_json::Value {
    std::fs::read_to_string(map)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let inside: u32 = f.next()?.parse().ok()?;
            let count: u32 = f.nth(1)?.parse().ok()?;
            Some(serde_json::json!({"containerID": inside, "hostID": inside, "size": count}))
        })
        .collect()
}

/// Why networks need root: berth-img's networks are CNI bridges (iptables,
/// veth pairs in the host's namespace); slirp4netns and pasta, which give
/// rootless podman its own, need /dev/net/tun.
const NO_BRIDGE: &str = "bridge and user networks need root (CNI); without root a container shares the host's network (--network host) or has none (--network none)";

/// `--network` without root: the host's network, the default (with a
/// notice, since docker's default is a private one), or `none`;
/// everything that needs a namespace wired by CNI or joined across user
/// namespaces is refused naming the flag.
pub fn network_mode(values: &[String]) -> Result<crate::network::sandbox::Mode> {
    match values {
        [] => {
            tracing::warn!("rootless: the container shares the host's network (no bridge network without root)");
            Ok(crate::network::sandbox::Mode::Host)
        }
        [v] if v == "host" => Ok(crate::network::sandbox::Mode::Host),
        [v] if v == "none" => Ok(crate::network::sandbox::Mode::None),
        [v, ..] => Err(Error::invalid("--network", format!("{v:?}: {NO_BRIDGE}"))),
    }
}

/// The hooks of a rootless `--network none` container: loopback up, as
/// docker's `none` has it (CNI's loopback plugin, which does that as
/// root, cannot reach a namespace `berth` makes in the container's user
/// namespace). A createContainer hook runs in the container's namespaces
/// before its program: the host's `ip`, where there is one.
pub fn loopback_hooks() -> Option<serde_json::Value> {
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    Some(serde_json::json!({
        "createContainer": [{"path": ip, "args": ["ip", "link", "set", "lo", "up"]}]
    }))
}

/// `-p`/`-P` without root: refused (the host's network has no ports to
/// forward; the container's are the host's).
pub fn check_publish(publish: bool) -> Result<()> {
    if active() && publish {
        return Err(Error::invalid(
            "--publish",
            format!("ports cannot be published: {NO_BRIDGE}"),
        ));
    }
    Ok(())
}

/// `network create` without root.
pub fn check_network_create(name: &str) -> Result<()> {
    if active() {
        return Err(Error::invalid("network", format!("{name:?}: {NO_BRIDGE}")));
    }
    Ok(())
}

/// Joins the user's namespace, making it (and its pause process) first if
/// there is none. Does nothing as root. Must run while the process has a
/// single thread (setns of a user namespace requires it).
pub fn enter() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let dir = runtime_dir()?.join("berth-img");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::Path(dir.clone(), format!("create: {e}")))?;
    // One command at a time decides whether a pause process must be made.
    let setup = open_rw(&dir.join("setup.lock"))?;
    let _setup = nix::fcntl::Flock::lock(setup, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::Path(dir.join("setup.lock"), format!("lock: {e}")))?;
    let pid_file = dir.join("pause.pid");
    let pid = match lock_holder(&pid_file)? {
        Some(pid) => pid,
        None => start_pause(&pid_file)?,
    };
    join(pid)?;
    if mapped_ids() == (1, 1) {
        tracing::warn!(
            "rootless: no subordinate ids for {} in /etc/subuid and /etc/subgid (or no newuidmap): every file is owned by you, images' owners are not kept",
            user_name()
        );
    }
    Ok(())
}

/// `$XDG_RUNTIME_DIR`, else the directory systemd-logind makes for the
/// user.
fn runtime_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let d = PathBuf::from(format!("/run/user/{}", nix::unistd::geteuid()));
    if d.is_dir() {
        Ok(d)
    } else {
        Err(Error::Other(
            "rootless: XDG_RUNTIME_DIR is not set and /run/user/UID does not exist".into(),
        ))
    }
}

fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::Path(path.into(), format!("open: {e}")))
}

/// The process holding a write lock on `path` (the pause process), by
/// F_GETLK: the kernel names the holder, so a stale pid file or a reused
/// pid cannot mislead.
fn lock_holder(path: &Path) -> Result<Option<i32>> {
    let f = open_rw(path)?;
    // SAFETY: a zeroed flock is a valid value; fcntl fills it in.
    let mut lk: libc::flock = unsafe { std::mem::zeroed() };
    lk.l_type = libc::F_WRLCK as _;
    lk.l_whence = libc::SEEK_SET as _;
    // SAFETY: F_GETLK with a valid flock on an open fd.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut lk) } != 0 {
        return Err(Error::Path(
            path.into(),
            format!("F_GETLK: {}", std::io::Error::last_os_error()),
        ));
    }
    Ok((i32::from(lk.l_type) != libc::F_UNLCK).then_some(lk.l_pid))
}

/// Forks the pause process: it makes the user and mount namespaces, we
/// write its id maps from outside (newuidmap must run in the parent
/// namespace), it takes the lock on `pid_file` and then sleeps until it
/// is killed.
fn start_pause(pid_file: &Path) -> Result<i32> {
    let (from_child, to_parent) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Other(format!("rootless: pipe: {e}")))?;
    let (from_parent, to_child) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Other(format!("rootless: pipe: {e}")))?;
    let lock_path = std::ffi::CString::new(pid_file.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Path(pid_file.into(), "contains NUL".into()))?;
    // SAFETY: the caller is single-threaded (enter's contract), so the
    // child may run ordinary code.
    match unsafe { nix::unistd::fork() }
        .map_err(|e| Error::Other(format!("rootless: fork: {e}")))?
    {
        ForkResult::Child => {
            drop(from_child);
            drop(to_child);
            pause(to_parent, from_parent, &lock_path)
        }
        ForkResult::Parent { child } => {
            drop(to_parent);
            drop(from_parent);
            let mut from_child = File::from(from_child);
            let mut to_child = File::from(to_child);
            expect(&mut from_child, b'u')?;
            write_maps(child.as_raw())?;
            to_child
                .write_all(b"m")
                .map_err(|e| Error::Other(format!("rootless: pause process: {e}")))?;
            expect(&mut from_child, b'r')?;
            Ok(child.as_raw())
        }
    }
}

/// Reads the pause process's next step: `want`, or its error text.
fn expect(from_child: &mut File, want: u8) -> Result<()> {
    let mut buf = [0u8; 512];
    let n = from_child.read(&mut buf).unwrap_or(0);
    if n == 1 && buf[0] == want {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&buf[..n]);
    Err(Error::Other(format!(
        "rootless: making the user namespace: {}",
        if why.is_empty() {
            "the pause process died"
        } else {
            &why
        }
    )))
}

/// The pause process: never returns.
fn pause(to_parent: OwnedFd, from_parent: OwnedFd, lock_path: &std::ffi::CStr) -> ! {
    let mut to_parent = File::from(to_parent);
    let mut from_parent = File::from(from_parent);
    let fail = |to_parent: &mut File, what: &str, e: nix::Error| -> ! {
        let _ = to_parent.write_all(format!("{what}: {e}").as_bytes());
        std::process::exit(1)
    };
    // Out of the caller's session and off its output (a caller reading
    // our stdout to EOF must not wait for us), and off every fd it had
    // open: a POSIX lock goes when any fd of its file closes, so ours is
    // taken only after.
    let _ = nix::unistd::setsid();
    let _ = nix::unistd::chdir("/");
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard fds.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    close_all_but(&[to_parent.as_raw_fd(), from_parent.as_raw_fd()]);
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS) {
        fail(&mut to_parent, "unshare", e);
    }
    let _ = to_parent.write_all(b"u");
    let mut b = [0u8; 1];
    if from_parent.read_exact(&mut b).is_err() {
        std::process::exit(1);
    }
    // SAFETY: open and fcntl with a valid path and flock.
    let fd = unsafe { libc::open(lock_path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    // SAFETY: a zeroed flock is valid; F_SETLK on our own fd.
    let mut lk: libc::flock = unsafe { std::mem::zeroed() };
    lk.l_type = libc::F_WRLCK as _;
    lk.l_whence = libc::SEEK_SET as _;
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_SETLK, &lk) } != 0 {
        fail(&mut to_parent, "lock pause.pid", nix::Error::last());
    }
    // For people: the lock, not this text, is what commands trust.
    let pid = format!("{}\n", std::process::id());
    // SAFETY: ftruncate and write on our own fd with a valid buffer.
    unsafe {
        libc::ftruncate(fd, 0);
        libc::write(fd, pid.as_ptr().cast(), pid.len());
    }
    let _ = to_parent.write_all(b"r");
    drop(to_parent);
    drop(from_parent);
    loop {
        nix::unistd::pause();
    }
}

/// Closes every fd but stdio and `keep`.
fn close_all_but(keep: &[i32]) {
    let mut keep = keep.to_vec();
    keep.sort_unstable();
    let mut from = 3u32;
    for k in keep {
        if k as u32 > from {
            // SAFETY: close_range on fds this process no longer needs.
            unsafe { libc::syscall(libc::SYS_close_range, from, k as u32 - 1, 0) };
        }
        from = k as u32 + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, 0) };
}

/// The pause process's maps: 0 is the user, 1 and up the subordinate
/// ranges (through newuidmap/newgidmap, which check them); only the
/// user's own ids, written directly, when there are none.
fn write_maps(pid: i32) -> Result<()> {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let name = user_name();
    let subuid = ranges("/etc/subuid", &name, uid);
    let subgid = ranges("/etc/subgid", &name, uid);
    let helpers = ["newuidmap", "newgidmap"].map(find_helper);
    if let ([Some(newuidmap), Some(newgidmap)], false, false) =
        (&helpers, subuid.is_empty(), subgid.is_empty())
    {
        run_helper(newuidmap, pid, uid, &subuid)?;
        return run_helper(newgidmap, pid, gid, &subgid);
    }
    let write = |file: &str, text: String| {
        let p = format!("/proc/{pid}/{file}");
        std::fs::write(&p, text).map_err(|e| Error::Path(p.into(), format!("write: {e}")))
    };
    write("uid_map", format!("0 {uid} 1\n"))?;
    // An unprivileged gid_map needs setgroups denied first.
    write("setgroups", "deny".into())?;
    write("gid_map", format!("0 {gid} 1\n"))
}

fn find_helper(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn run_helper(helper: &Path, pid: i32, own: u32, ranges: &[(u32, u32)]) -> Result<()> {
    let mut cmd = Command::new(helper);
    cmd.arg(pid.to_string()).args(["0", &own.to_string(), "1"]);
    let mut next = 1u32;
    for (start, count) in ranges {
        cmd.args([next.to_string(), start.to_string(), count.to_string()]);
        next = next.saturating_add(*count);
    }
    let out = cmd
        .output()
        .map_err(|e| Error::Path(helper.into(), format!("run: {e}")))?;
    if !out.status.success() {
        return Err(Error::Path(
            helper.into(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// The user's subordinate ranges (start, count) in `file` (lines
/// `NAME-or-UID:START:COUNT`).
fn ranges(file: &str, name: &str, uid: u32) -> Vec<(u32, u32)> {
    parse_ranges(
        &std::fs::read_to_string(file).unwrap_or_default(),
        name,
        uid,
    )
}

fn parse_ranges(text: &str, name: &str, uid: u32) -> Vec<(u32, u32)> {
    let uid = uid.to_string();
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            (owner == name || owner == uid).then_some(())?;
            Some((start.parse().ok()?, count.parse().ok()?))
        })
        .filter(|(_, count): &(u32, u32)| *count > 0)
        .collect()
}

/// The caller's user name, else its uid.
fn user_name() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// Joins the pause process's user and mount namespaces, keeping the
/// working directory (relative paths on the command line).
fn join(pid: i32) -> Result<()> {
    let cwd = std::env::current_dir().ok();
    let open = |ns: &str| {
        let p = format!("/proc/{pid}/ns/{ns}");
        File::open(&p).map_err(|e| Error::Path(p.into(), format!("open: {e}")))
    };
    let (user, mnt) = (open("user")?, open("mnt")?);
    for (f, flag, what) in [
        (&user, CloneFlags::CLONE_NEWUSER, "user"),
        (&mnt, CloneFlags::CLONE_NEWNS, "mnt"),
    ] {
        nix::sched::setns(f, flag).map_err(|e| {
            Error::Other(format!(
                "rootless: join the user's namespaces (/proc/{pid}/ns/{what}): {e}"
            ))
        })?;
    }
    // Our host groups mean nothing here; setgroups may be denied (no
    // subordinate ids), which leaves them as they are.
    let _ = nix::unistd::setgroups(&[]);
    let _ = nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0));
    let _ = nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0));
    if let Some(cwd) = cwd {
        std::env::set_current_dir(&cwd).map_err(|e| {
            Error::Path(
                cwd,
                format!("working directory in the user's namespace: {e}"),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_is_an_unprivileged_root() {
        assert!(!root_is_unprivileged("         0          0 4294967295\n"));
        assert!(root_is_unprivileged(
            "         0       1000          1\n         1     100000      65536\n"
        ));
        assert!(!root_is_unprivileged("         0          0       1000\n"));
    }

    #[test]
    fn subordinate_ranges() {
        let text = "alice:100000:65536\nbob:165536:65536\n1000:300000:10\nalice:400000:0\n";
        assert_eq!(
            parse_ranges(text, "alice", 1000),
            [(100000, 65536), (300000, 10)]
        );
        assert!(parse_ranges(text, "carol", 1001).is_empty());
    }
}
