//! The channel between `berth create` and the container's init while the
//! container is being set up: a SOCK_SEQPACKET socketpair, one message per
//! step, so either side notices at once (EOF) when the other dies.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

/// One step of the create handshake.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// Parent → init: id maps written, cgroup joined, rlimits set; go on.
    /// Carries the state JSON the init's own hooks read (empty without hooks).
    Go(String),
    /// Init → parent: mounts done (before pivot_root): run createRuntime hooks.
    Mounted,
    /// Parent → init: the runtime-side hooks ran.
    HooksDone,
    /// Init → parent: set up and about to wait for `start`.
    Ready,
    /// Parent → init: state saved; stop dying with the parent.
    Committed,
    /// Init → parent: no longer tied to the parent's life; it may exit.
    Detached,
    /// Either way: this step failed, here is why.
    Error(String),
}

pub struct Channel {
    fd: OwnedFd,
}

pub fn pair() -> io::Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    pub fn send(&self, msg: &Msg) -> io::Result<()> {
        let buf: Vec<u8> = match msg {
            Msg::Go(state) => {
                let mut v = vec![b'G'];
                v.extend_from_slice(state.as_bytes());
                v
            }
            Msg::Mounted => vec![b'M'],
            Msg::HooksDone => vec![b'H'],
            Msg::Ready => vec![b'R'],
            Msg::Committed => vec![b'C'],
            Msg::Detached => vec![b'D'],
            Msg::Error(e) => {
                let mut v = vec![b'E'];
                v.extend_from_slice(e.as_bytes());
                v
            }
        };
        // SAFETY: send(2) of a buffer we own on a socket we own.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for the next message; `None` when the other side is gone.
    pub fn recv(&self) -> io::Result<Option<Msg>> {
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: recv(2) into a buffer we own.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(None);
            }
            let buf = &buf[..n as usize];
            return Ok(Some(match buf[0] {
                b'G' => Msg::Go(String::from_utf8_lossy(&buf[1..]).into_owned()),
                b'M' => Msg::Mounted,
                b'H' => Msg::HooksDone,
                b'R' => Msg::Ready,
                b'C' => Msg::Committed,
                b'D' => Msg::Detached,
                _ => Msg::Error(String::from_utf8_lossy(&buf[1..]).into_owned()),
            }));
        }
    }
}
