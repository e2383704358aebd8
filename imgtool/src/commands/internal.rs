//! `internal`: what berth-img runs of itself, not for people. The
//! poststop hook every networked container's bundle carries is `berth-img
//! --root ROOT internal poststop`, run by `berth delete` with the
//! container's state on stdin; `internal supervise KEY` is the process
//! that runs a detached container (`berth_img::supervisor`).

use std::io::Read;

use anyhow::{Context, Result};
use berth_img::network::sandbox::Sandboxes;

use super::Global;

/// The subcommands of `internal`.
#[derive(clap::Subcommand)]
pub enum InternalCommand {
    /// The poststop hook: releases the network of the container whose
    /// state (runtime-spec runtime.md "State") is on stdin.
    Poststop,
    /// Run the container kept as KEY detached, as its restart policy and
    /// health check say.
    Supervise { key: String },
}

/// `internal`.
pub fn internal(g: &Global, cmd: InternalCommand) -> Result<()> {
    match cmd {
        InternalCommand::Poststop => {
            let mut state = String::new();
            std::io::stdin()
                .read_to_string(&mut state)
                .context("read the container state on stdin")?;
            let v: serde_json::Value =
                serde_json::from_str(&state).context("the container state on stdin")?;
            let Some(id) = v["id"].as_str() else {
                anyhow::bail!("the container state on stdin has no id");
            };
            // No store lock: a hook must not wait on a prune, and it only
            // touches the container's network records.
            Sandboxes::new(&g.root).teardown(id)?;
        }
        InternalCommand::Supervise { key } => {
            let runtime = berth_img::build::run::find_runtime(g.runtime.as_deref())?;
            berth_img::supervisor::supervise(&g.root, &runtime, &key)?;
        }
    }
    Ok(())
}
