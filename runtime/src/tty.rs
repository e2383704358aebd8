//! Terminals (config.md "process.terminal", "process.consoleSize";
//! runtime-linux.md "/dev/console").
//!
//! The pty is allocated inside the container, from its own devpts instance,
//! and the master is sent over a unix socket with SCM_RIGHTS: to the
//! caller's `--console-socket` (containerd's shim, podman's conmon), or, for
//! `berth run` in the foreground, to berth itself, which then proxies the
//! pty to its own stdin/stdout as runc does.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};
use nix::sys::termios;

use crate::error::{Context, Error, Result};

/// Connects to a unix socket the caller named (`what`: the flag or field):
/// the console socket, or the seccomp agent's. Before the clone: its path
/// is a host path the init cannot reach after pivot_root.
pub fn connect(path: &Path, what: &str) -> Result<OwnedFd> {
    let fd = socket::socket(
        socket::AddressFamily::Unix,
        socket::SockType::Stream,
        socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ctx(|| format!("{what}: socket"))?;
    let addr = UnixAddr::new(path).ctx(|| format!("{what} {}", path.display()))?;
    socket::connect(fd.as_raw_fd(), &addr)
        .ctx(|| format!("connect to {what} {}", path.display()))?;
    Ok(fd)
}

/// Where a process with a terminal sends its pty master: the caller's
/// `--console-socket` (returned as the second fd, for the process), or,
/// without one, a socketpair whose first end berth keeps to proxy the pty.
pub fn console_channel(
    terminal: bool,
    console_socket: Option<&Path>,
) -> Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    Ok(match (console_socket, terminal) {
        (Some(path), true) => (None, Some(connect(path, "--console-socket")?)),
        (None, true) => {
            let (ours, theirs) = socket::socketpair(
                socket::AddressFamily::Unix,
                socket::SockType::Stream,
                None,
                socket::SockFlag::SOCK_CLOEXEC,
            )
            .ctx(|| "socketpair")?;
            (Some(ours), Some(theirs))
        }
        _ => (None, None),
    })
}

/// A pty pair made in the container.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Opens a new pty from the container's /dev/ptmx (after pivot_root).
pub fn open_pty() -> Result<Pty> {
    let master = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open("/dev/ptmx")
        .map_err(|e| Error::path("open", "/dev/ptmx", e))?;
    let master = OwnedFd::from(master);
    // SAFETY: ioctls on the pty master we own.
    unsafe {
        let unlock: libc::c_int = 0;
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(Error::sys("unlock pty", std::io::Error::last_os_error()));
        }
        let slave = libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if slave < 0 {
            return Err(Error::sys("open pty peer", std::io::Error::last_os_error()));
        }
        Ok(Pty {
            master,
            slave: OwnedFd::from_raw_fd(slave),
        })
    }
}

use std::os::unix::fs::OpenOptionsExt;

/// The name of the pty's slave (e.g. /dev/pts/0), from the master's
/// TIOCGPTN (not from a /proc link the container could shadow).
pub fn slave_path(master: &OwnedFd) -> Result<String> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes the pty number into n.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) } != 0 {
        return Err(Error::sys("find pty name", std::io::Error::last_os_error()));
    }
    Ok(format!("/dev/pts/{n}"))
}

/// Bind-mounts the slave onto /dev/console (runtime-linux.md), from the
/// slave's fd. /dev/console must be a regular file or a device node (made
/// here if missing): never a symlink the image planted (CVE-2025-52565).
pub fn mount_console(slave: &OwnedFd) -> Result<()> {
    use std::os::fd::AsFd;
    let resolve = crate::sys::RESOLVE_NO_SYMLINKS | crate::sys::RESOLVE_NO_MAGICLINKS;
    let dev = crate::sys::openat2(
        libc::AT_FDCWD,
        c"/dev",
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        resolve,
    )
    .map_err(|e| Error::path("open", "/dev", e))?;
    let open = || {
        crate::sys::openat2(
            dev.as_raw_fd(),
            c"console",
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
            resolve | crate::sys::RESOLVE_BENEATH,
        )
    };
    let console = match open() {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            // SAFETY: openat on our /dev fd; the new file's fd is closed at once.
            let fd = unsafe {
                libc::openat(
                    dev.as_raw_fd(),
                    c"console".as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_WRONLY
                        | libc::O_CLOEXEC,
                    0o600,
                )
            };
            if fd < 0 {
                return Err(Error::path(
                    "create",
                    "/dev/console",
                    std::io::Error::last_os_error(),
                ));
            }
            // SAFETY: we own fd.
            unsafe { libc::close(fd) };
            open().map_err(|e| Error::path("open", "/dev/console", e))?
        }
        Err(e) => return Err(Error::path("open", "/dev/console", e)),
    };
    let st = nix::sys::stat::fstat(&console).map_err(|e| Error::path("stat", "/dev/console", e))?;
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFREG && kind != libc::S_IFCHR {
        return Err(Error::Other(
            "/dev/console in the container is not a regular file or a device: refusing to mount the console on it"
                .into(),
        ));
    }
    let tree = crate::sys::clone_mount_of(slave.as_fd(), false)
        .map_err(|e| Error::sys("clone the pty for /dev/console", e))?;
    crate::sys::move_mount_to_fd(tree.as_fd(), console.as_fd())
        .map_err(|e| Error::sys("bind the pty to /dev/console", e))
}

pub fn set_size(fd: RawFd, rows: u16, cols: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid winsize.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(Error::sys(
            "set process.consoleSize",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Makes the slave the process's controlling terminal and its stdio.
/// The pty slave belongs to the process's user and the tty group (gid 5),
/// as runc leaves it, so a non-root process can reopen /dev/tty or its
/// /dev/pts entry. Where gid 5 is not mapped (a user namespace) only the
/// owner changes.
pub fn give_to(slave: &OwnedFd, uid: u32) -> Result<()> {
    const TTY_GID: libc::gid_t = 5;
    // SAFETY: fchown on our slave fd.
    if unsafe { libc::fchown(slave.as_raw_fd(), uid, TTY_GID) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    // SAFETY: as above; (gid_t)-1 leaves the group alone.
    if e.raw_os_error() == Some(libc::EINVAL)
        && unsafe { libc::fchown(slave.as_raw_fd(), uid, libc::gid_t::MAX) } == 0
    {
        return Ok(());
    }
    Err(Error::sys(format!("give the terminal to uid {uid}"), e))
}

pub fn make_controlling(slave: &OwnedFd) -> Result<()> {
    nix::unistd::setsid().ctx(|| "setsid")?;
    // SAFETY: TIOCSCTTY on our slave fd; dup2 onto stdio.
    unsafe {
        if libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) != 0 {
            return Err(Error::sys(
                "make the pty the controlling terminal",
                std::io::Error::last_os_error(),
            ));
        }
        for target in 0..3 {
            if libc::dup2(slave.as_raw_fd(), target) < 0 {
                return Err(Error::sys(
                    "dup pty to stdio",
                    std::io::Error::last_os_error(),
                ));
            }
        }
    }
    Ok(())
}

/// Sends `fd` over a connected unix socket, as runc does (with the pty's
/// name as the payload).
pub fn send_fd(socket: RawFd, fd: RawFd, name: &str) -> Result<()> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    socket::sendmsg::<()>(socket, &iov, &cmsg, MsgFlags::empty(), None)
        .ctx(|| "send the pty master over the console socket")?;
    Ok(())
}

/// Receives one fd sent with [`send_fd`].
pub fn recv_fd(socket: RawFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = socket::recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ctx(|| "receive the pty master")?;
    for c in msg.cmsgs().ctx(|| "receive the pty master")? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel gave us this fd.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(Error::Other("console socket: no fd received".into()))
}

/// Puts our own terminal in raw mode for the proxy, restoring it on drop.
pub struct RawMode {
    fd: RawFd,
    saved: termios::Termios,
}

impl RawMode {
    pub fn enter(fd: RawFd) -> Option<RawMode> {
        // SAFETY: fd 0 lives for the whole process.
        let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let saved = termios::tcgetattr(bfd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(bfd, termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: as in enter.
        let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(bfd, termios::SetArg::TCSANOW, &self.saved);
    }
}

/// Copies the window size of `from` (our terminal) to `to` (the pty).
pub fn copy_size(from: RawFd, to: RawFd) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a valid winsize.
    unsafe {
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}
