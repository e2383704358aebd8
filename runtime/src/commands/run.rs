//! `berth run`: create + start, then (unless detached) wait for the init,
//! forwarding signals to it, and delete the container when it exits (unless
//! --keep), so the same ID can be reused at once.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::Global;
use crate::container::{self, Container, CreateOptions};
use crate::error::{Context, Result};

#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    pub create: CreateOptions,
    pub detach: bool,
    pub keep: bool,
    pub no_subreaper: bool,
}

/// Returns the exit status berth should exit with: the container's, or
/// 128+N when it was killed by signal N.
pub fn run(g: &Global, id: &str, opts: &RunOptions) -> Result<i32> {
    if !opts.detach && !opts.no_subreaper {
        // Orphans of the container (without its own pid namespace) are
        // reaped here rather than by the host's init.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    let created = container::create(&g.root, id, &opts.create)?;
    let (pid, pid_start) = (created.pid, created.state.pid_start);
    let signals = if opts.detach {
        None
    } else {
        Some(block_signals()?)
    };
    let fifo = created.dir.fifo_path();
    // Release the container lock: state/kill from other processes must work
    // while we wait.
    drop(created.dir);
    if let Err(e) = container::release_init(&fifo, pid, pid_start) {
        cleanup(g, id);
        return Err(e);
    }
    let Some(signals) = signals else { return Ok(0) };
    let code = wait_forwarding(pid, &signals)?;
    if !opts.keep {
        cleanup(g, id);
    }
    Ok(code)
}

fn block_signals() -> Result<SignalFd> {
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

fn wait_forwarding(init: i32, signals: &SignalFd) -> Result<i32> {
    loop {
        // Reap first: the init may have exited before we started listening.
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p.as_raw() == init => return Ok(code),
                Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == init => {
                    return Ok(128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        let Some(info) = signals.read_signal().ctx(|| "read signalfd")? else {
            continue;
        };
        let sig = info.ssi_signo as i32;
        if sig != libc::SIGCHLD {
            // SAFETY: forwarding a signal to our own child.
            unsafe { libc::kill(init, sig) };
        }
    }
}

fn cleanup(g: &Global, id: &str) {
    match Container::load(&g.root, id) {
        Ok(c) => {
            if let Err(e) = container::delete(c, true) {
                tracing::warn!("delete {id}: {e}");
            }
        }
        Err(e) => tracing::warn!("delete {id}: {e}"),
    }
}
