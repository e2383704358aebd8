//! Waiting for a container process in the foreground (`run`, `exec`):
//! signals forwarded to it, its exit status returned as berth's, and, with
//! a terminal, the pty proxied to berth's own stdin and stdout.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Context, Result};

/// Blocks the signals to forward and returns a signalfd that receives them.
pub fn block_signals() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    for sig in Signal::iterator() {
        if !matches!(
            sig,
            Signal::SIGKILL
                | Signal::SIGSTOP
                | Signal::SIGSEGV
                | Signal::SIGBUS
                | Signal::SIGILL
                | Signal::SIGFPE
                | Signal::SIGTSTP
                | Signal::SIGTTIN
                | Signal::SIGTTOU
        ) {
            set.add(sig);
        }
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .ctx(|| "block signals")?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).ctx(|| "signalfd")
}

/// Reaps exited children; returns the init's exit status once it is gone.
fn reap(init: i32) -> Option<i32> {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == init => return Some(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == init => {
                return Some(128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Handles one signal: SIGCHLD only wakes us to reap, SIGWINCH resizes the
/// pty, anything else goes to the init.
fn on_signal(init: i32, sig: i32, console: Option<i32>) {
    match (sig, console) {
        (libc::SIGCHLD, _) => {}
        (libc::SIGWINCH, Some(m)) => crate::tty::copy_size(0, m),
        _ => {
            // SAFETY: forwarding a signal to our own child.
            unsafe { libc::kill(init, sig) };
        }
    }
}

pub fn wait_forwarding(init: i32, signals: &SignalFd) -> Result<i32> {
    loop {
        // Reap first: the init may have exited before we started listening.
        if let Some(code) = reap(init) {
            return Ok(code);
        }
        if let Some(info) = signals.read_signal().ctx(|| "read signalfd")? {
            on_signal(init, info.ssi_signo as i32, None);
        }
    }
}

/// Like [`wait_forwarding`], copying our stdin to the pty and the pty to our
/// stdout meanwhile. Output still buffered in the pty when the init exits
/// is drained before returning.
pub fn wait_proxying(init: i32, signals: &SignalFd, master: &OwnedFd) -> Result<i32> {
    let m = master.as_raw_fd();
    let (mut stdin_open, mut master_open) = (true, true);
    let mut buf = [0u8; 8192];
    loop {
        if let Some(code) = reap(init) {
            drain(m, &mut buf);
            return Ok(code);
        }
        let pollfd = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = [
            pollfd(signals.as_raw_fd()),
            pollfd(if master_open { m } else { -1 }),
            pollfd(if stdin_open { 0 } else { -1 }),
        ];
        // SAFETY: poll on pollfds we own.
        if unsafe { libc::poll(fds.as_mut_ptr(), 3, -1) } < 0 {
            continue;
        }
        if fds[0].revents & libc::POLLIN != 0 {
            if let Some(info) = signals.read_signal().ctx(|| "read signalfd")? {
                on_signal(init, info.ssi_signo as i32, Some(m));
            }
        }
        if fds[1].revents & (libc::POLLIN | libc::POLLHUP) != 0 && !copy(m, 1, &mut buf) {
            // The pty hung up: every holder of the slave is gone.
            master_open = false;
        }
        if fds[2].revents & (libc::POLLIN | libc::POLLHUP) != 0 && !copy(0, m, &mut buf) {
            stdin_open = false;
        }
    }
}

/// Copies one read's worth from `from` to `to`; false at EOF or error.
fn copy(from: i32, to: i32, buf: &mut [u8]) -> bool {
    // SAFETY: read into our buffer.
    let n = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return false;
    }
    write_all(to, &buf[..n as usize]);
    true
}

fn drain(m: i32, buf: &mut [u8]) {
    // SAFETY: fcntl on the master we own.
    unsafe { libc::fcntl(m, libc::F_SETFL, libc::O_NONBLOCK) };
    while copy(m, 1, buf) {}
}

fn write_all(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: write from our buffer.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            return;
        }
        data = &data[n as usize..];
    }
}
