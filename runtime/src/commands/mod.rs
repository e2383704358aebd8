//! One module per `berth` subcommand, each a thin adapter from the command
//! line to the library (runc's top level, one file per command).

pub mod create;
pub mod delete;
pub mod features;
pub mod kill;
pub mod list;
pub mod pause;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;

use std::path::PathBuf;

/// Options every subcommand sees.
#[derive(Debug, Clone)]
pub struct Global {
    pub root: PathBuf,
}
