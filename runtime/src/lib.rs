//! berth: a runc-compatible OCI runtime, as a library. The `berth` binary
//! is a thin command line over [`commands`]; see ARCHITECTURE.md for the
//! process model.

/// `println!` that does not panic when stdout is a closed pipe
/// (`berth list | head -1`): output that nobody reads is dropped.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod attributes;
pub mod capabilities;
pub mod cgroups;
pub mod commands;
pub mod config;
pub mod container;
pub mod devices;
pub mod error;
pub mod exec;
pub mod foreground;
pub mod hooks;
pub mod logging;
pub mod mountinfo;
pub mod mounts;
pub mod namespaces;
pub mod netdev;
pub mod process;
pub mod procfs;
pub mod rlimits;
pub mod rootfs;
pub mod rootless;
pub mod seccomp;
pub mod state;
pub mod sync;
pub mod sys;
pub mod tty;
pub mod user;

/// berth's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The newest runtime-spec version berth implements.
pub const SPEC_VERSION: &str = "1.2.1";
/// The commit berth was built from, when known.
pub const COMMIT: &str = match option_env!("BERTH_COMMIT") {
    Some(c) => c,
    None => "unknown",
};
