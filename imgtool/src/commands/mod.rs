//! One module per noun (or per command without one), the way `berth`
//! keeps one per command: `berth-img pull` is [`image::pull`], `berth-img
//! run` is [`container::run`]. Each function turns its flags into options
//! and makes one library call; what it prints is what docker prints.
//! Part of the binary, not of the `berth_img` library.

pub mod archive;
pub mod auth;
pub mod build;
pub mod bundle;
pub mod compose;
pub mod container;
pub mod image;
pub mod internal;
pub mod network;
pub mod unshare;
pub mod volume;

use std::path::PathBuf;

/// The global flags, as every command sees them.
pub struct Global {
    /// The store: images, layers, bundle records and containers.
    pub root: PathBuf,
    /// Machine-readable output, where a command has it.
    pub json: bool,
    /// The runtime for RUN steps and containers; None looks for `berth`.
    pub runtime: Option<PathBuf>,
}
