//! `bundle`, `rm-bundle`: OCI bundles made from images, for `berth run -b`.
//! [`BundleFlags`] are `docker run`'s flags, which `run` takes too.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use berth_img::bundle::{self, Network};
use berth_img::reference::Reference;
use berth_img::store::{Access, Store};

use super::Global;

/// `docker run`'s flags for the container a bundle describes.
#[derive(clap::Args)]
pub struct BundleFlags {
    /// Set an environment variable (KEY=VALUE).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// User (name|uid[:group|gid]), resolved in the image.
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Override the image's entrypoint ("" clears it).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Bind mount SRC:DST[:ro].
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Mount a tmpfs at DST[:options].
    #[arg(long)]
    tmpfs: Vec<String>,
    #[arg(long)]
    hostname: Option<String>,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Mount the rootfs read-only.
    #[arg(long)]
    read_only: bool,
    /// Memory limit (e.g. 512m).
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// CPU limit (e.g. 1.5).
    #[arg(long)]
    cpus: Option<String>,
    #[arg(long)]
    pids_limit: Option<i64>,
    /// host or none.
    #[arg(long = "net", alias = "network", default_value = "none")]
    net: String,
    #[arg(long)]
    cap_add: Vec<String>,
    #[arg(long)]
    cap_drop: Vec<String>,
    /// A plain directory rootfs instead of an overlay of the layers.
    #[arg(long)]
    copy: bool,
}

impl BundleFlags {
    /// The bundle options these flags ask for, running `args` (the image's
    /// Cmd when empty).
    pub fn options(&self, args: Vec<String>) -> Result<bundle::Options> {
        let network = match self.net.as_str() {
            "none" => Network::None,
            "host" => Network::Host,
            other => bail!("invalid --net {other:?}: want host or none"),
        };
        Ok(bundle::Options {
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            entrypoint: self.entrypoint.clone(),
            volumes: self.volume.clone(),
            tmpfs: self.tmpfs.clone(),
            hostname: self.hostname.clone(),
            tty: self.tty,
            read_only: self.read_only,
            memory: self.memory.clone(),
            cpus: self.cpus.clone(),
            pids_limit: self.pids_limit,
            network,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            copy: self.copy,
            args,
        })
    }
}

/// The flags of `bundle`.
#[derive(clap::Args)]
pub struct BundleArgs {
    reference: String,
    dir: PathBuf,
    #[command(flatten)]
    flags: Box<BundleFlags>,
    /// Replace the image's Cmd.
    #[arg(last = true)]
    args: Vec<String>,
}

/// `bundle`: prints the bundle's directory.
pub fn bundle(g: &Global, args: BundleArgs) -> Result<()> {
    let opts = args.flags.options(args.args)?;
    let store = Store::open(&g.root, Access::Shared)?;
    let reference: Reference = args.reference.parse()?;
    let dir = bundle::create_from_reference(&store, &reference, &args.dir, &opts)?;
    writeln!(std::io::stdout(), "{}", dir.display())?;
    Ok(())
}

/// The flags of `rm-bundle`.
#[derive(clap::Args)]
pub struct RmBundleArgs {
    dir: PathBuf,
}

/// `rm-bundle`.
pub fn rm_bundle(args: RmBundleArgs) -> Result<()> {
    bundle::remove_with_recorded_store(&args.dir)?;
    Ok(())
}
