//! `bundle`, `rm-bundle`: OCI bundles made from images, for `berth run -b`.
//! [`BundleFlags`] are `docker run`'s flags, which `run` takes too.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use berth_img::bundle::{self, Network};
use berth_img::reference::Reference;
use berth_img::store::{Access, Store};
use berth_img::volume::{self, MountRequest};

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
    /// Mount a volume or a host path: [SRC:]DST[:OPTIONS] (SRC a volume
    /// name or an absolute host path; DST alone is an anonymous volume).
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Mount as docker's --mount: type=volume|bind|tmpfs,src=,dst=,readonly.
    #[arg(long)]
    mount: Vec<String>,
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
    /// A resource limit: NAME=SOFT[:HARD] (nofile, nproc, core, ...).
    #[arg(long)]
    ulimit: Vec<String>,
    /// bridge (run's default), host, none, container:NAME or a network
    /// (repeat to join several); a bundle takes host or none (its default).
    #[arg(long = "net", alias = "network")]
    pub net: Vec<String>,
    #[arg(long)]
    cap_add: Vec<String>,
    #[arg(long)]
    cap_drop: Vec<String>,
    /// A plain directory rootfs instead of an overlay of the layers.
    #[arg(long)]
    copy: bool,
}

impl BundleFlags {
    /// `-v` and `--mount`, parsed (host paths relative to the current
    /// directory).
    pub fn mount_requests(&self) -> Result<Vec<MountRequest>> {
        let cwd = std::env::current_dir()?;
        let mut out = Vec::new();
        for v in &self.volume {
            out.push(volume::parse_volume_flag(v, &cwd)?);
        }
        for m in &self.mount {
            out.push(volume::parse_mount_flag(m)?);
        }
        Ok(out)
    }

    /// The network of a bundle made outside `run`: `none` or `host` (the
    /// others need the setup `run` does).
    fn bundle_network(&self) -> Result<Network> {
        Ok(match self.net.as_slice() {
            [] => Network::None,
            [n] if n == "none" => Network::None,
            [n] if n == "host" => Network::Host,
            _ => bail!(
                "invalid --network {:?}: a bundle takes host or none (run sets up networks)",
                self.net.join(",")
            ),
        })
    }

    /// The bundle options these flags ask for, running `args` (the image's
    /// Cmd when empty). Mounts and the network are the caller's to add.
    pub fn options(&self, args: Vec<String>) -> Result<bundle::Options> {
        Ok(bundle::Options {
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            // One program, as docker's flag takes it; "" clears it.
            entrypoint: self.entrypoint.as_ref().map(|e| match e.as_str() {
                "" => Vec::new(),
                e => vec![e.to_string()],
            }),
            binds: Vec::new(),
            tmpfs: self.tmpfs.clone(),
            hostname: self.hostname.clone(),
            tty: self.tty,
            read_only: self.read_only,
            memory: self.memory.clone(),
            cpus: self.cpus.clone(),
            pids_limit: self.pids_limit,
            // `run` names it; a bundle is the runtime's to place.
            cgroups_path: None,
            ulimits: self
                .ulimit
                .iter()
                .map(|u| bundle::Ulimit::parse(u))
                .collect::<berth_img::Result<_>>()?,
            network: Network::None,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            copy: self.copy,
            args,
            hooks: None,
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
    let mut opts = args.flags.options(args.args)?;
    opts.network = args.flags.bundle_network()?;
    let resolved = volume::resolve(&args.flags.mount_requests()?, &[], None)?;
    opts.binds = resolved.binds;
    opts.tmpfs.extend(resolved.tmpfs);
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
