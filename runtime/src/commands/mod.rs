//! One module per `berth` subcommand, each a thin adapter from the command
//! line to the library (runc's top level, one file per command).

pub mod create;
pub mod delete;
pub mod events;
pub mod features;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;

use std::path::PathBuf;

/// Options every subcommand sees.
#[derive(Debug, Clone)]
pub struct Global {
    pub root: PathBuf,
    /// Running for an unprivileged user (`--rootless`, see `rootless`).
    pub rootless: bool,
}
