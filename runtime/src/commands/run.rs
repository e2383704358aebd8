//! `berth run`: create + start, then (unless detached) wait for the init,
//! forwarding signals to it, and delete the container when it exits (unless
//! --keep), so the same ID can be reused at once.

use std::os::fd::AsRawFd;

use super::Global;
use crate::container::{self, Container, CreateOptions};
use crate::error::Result;
use crate::foreground;

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
    let mut create = opts.create.clone();
    create.foreground_tty = !opts.detach;
    let created = container::create(&g.root, id, &create)?;
    let (pid, pid_start) = (created.pid, created.state.pid_start);
    let console = created.console;
    let signals = if opts.detach {
        None
    } else {
        Some(foreground::block_signals()?)
    };
    let fifo = created.dir.fifo_path();
    // Release the container lock: state/kill from other processes must work
    // while we wait.
    drop(created.dir);
    let has_poststart = container::hooks_of(&created.state)
        .and_then(|h| h.poststart().clone())
        .is_some_and(|l| !l.is_empty());
    let started = container::release_init(&fifo, pid, pid_start).and_then(|()| {
        if has_poststart {
            container::run_poststart(&Container::load(&g.root, id)?)
        } else {
            Ok(())
        }
    });
    if let Err(e) = started {
        cleanup(g, id);
        return Err(e);
    }
    let Some(signals) = signals else { return Ok(0) };
    let code = match console {
        Some(master) => {
            let _raw = crate::tty::RawMode::enter(0);
            crate::tty::copy_size(0, master.as_raw_fd());
            foreground::wait_proxying(pid, &signals, &master)?
        }
        None => foreground::wait_forwarding(pid, &signals)?,
    };
    if !opts.keep {
        cleanup(g, id);
    }
    Ok(code)
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
