//! `berth-img unshare`: a command in the user's namespace (podman
//! unshare), where a rootless store's files have their images' owners and
//! its overlays are mounted: to look at a bundle, or run it with `berth`.

use std::os::unix::process::CommandExt;

use anyhow::{bail, Result};

/// The flags of `unshare`.
#[derive(clap::Args)]
pub struct UnshareArgs {
    /// The command and its arguments (default: $SHELL, else /bin/sh).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Runs the command in place of this process (main has already joined the
/// namespace).
pub fn unshare(args: UnshareArgs) -> Result<i32> {
    if !berth_img::rootless::active() {
        bail!("unshare: only for a user without root (root needs no user namespace)");
    }
    let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into());
    let (program, rest) = match args.command.split_first() {
        Some((p, rest)) => (p.clone(), rest.to_vec()),
        None => (shell, Vec::new()),
    };
    let e = std::process::Command::new(&program).args(rest).exec();
    eprintln!("berth-img: unshare: {program}: {e}");
    Ok(if e.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}
