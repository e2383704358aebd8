//! `volume create|ls|inspect|rm|prune`: docker's volume commands over
//! `berth_img::volume`.

use std::io::Write;

use anyhow::{bail, Result};
use berth_img::containers::Containers;
use berth_img::output::{self, human_size};
use berth_img::store::{Access, Store};
use berth_img::volume::Volumes;
use serde_json::Value;

use super::network::parse_labels;
use super::Global;

/// The subcommands of `volume`.
#[derive(clap::Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (a random name when none is given).
    Create(CreateArgs),
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Print volumes as JSON.
    Inspect(NamesArgs),
    /// Remove volumes no container uses.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove anonymous volumes no container uses (all unused with -a).
    Prune(PruneArgs),
}

/// The flags of `volume create`.
#[derive(clap::Args)]
pub struct CreateArgs {
    /// KEY=VALUE.
    #[arg(long)]
    label: Vec<String>,
    /// Only local.
    #[arg(short, long, default_value = "local")]
    driver: String,
    name: Option<String>,
}

/// The flags of `volume ls`.
#[derive(clap::Args)]
pub struct LsArgs {
    /// Only the names.
    #[arg(short, long)]
    quiet: bool,
}

/// Volume names.
#[derive(clap::Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    names: Vec<String>,
}

/// The flags of `volume rm`.
#[derive(clap::Args)]
pub struct RmArgs {
    /// No error for volumes that do not exist.
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

/// The flags of `volume prune`.
#[derive(clap::Args)]
pub struct PruneArgs {
    /// Named volumes too, not only anonymous ones.
    #[arg(short, long)]
    all: bool,
    /// Accepted as docker spells it: nothing is asked.
    #[arg(short, long)]
    force: bool,
}

/// `volume`.
pub fn volume(g: &Global, cmd: VolumeCommand) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    let store = Store::open(&g.root, Access::Shared)?;
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    let volumes = Volumes::new(store.root());
    match cmd {
        VolumeCommand::Create(a) => {
            if a.driver != "local" {
                bail!("invalid --driver {:?}: only local", a.driver);
            }
            let labels = parse_labels("--label", &a.label)?;
            let _lock = volumes.lock(false)?;
            let (v, _) = volumes.create(a.name.as_deref(), &labels, false)?;
            writeln!(out, "{}", v.name)?;
        }
        VolumeCommand::Ls(a) => {
            let list = volumes.list();
            if a.quiet {
                for v in list {
                    writeln!(out, "{}", v.name)?;
                }
            } else if g.json {
                let list: Vec<Value> = list.iter().map(|v| v.to_docker()).collect();
                output::write_json(out, &list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .into_iter()
                    .map(|v| vec!["local".into(), v.name])
                    .collect();
                output::write_table(out, &[("DRIVER", 10), ("VOLUME NAME", 0)], &rows)?;
            }
        }
        VolumeCommand::Inspect(a) => {
            let list = a
                .names
                .iter()
                .map(|n| volumes.get(n).map(|v| v.to_docker()))
                .collect::<Result<Vec<_>, _>>()?;
            output::write_json(out, &list)?;
        }
        VolumeCommand::Rm(a) => {
            for name in &a.names {
                if a.force && volumes.get(name).is_err() {
                    continue;
                }
                cs.remove_volume(name)?;
                writeln!(out, "{name}")?;
            }
        }
        VolumeCommand::Prune(a) => {
            let _ = a.force;
            let _lock = volumes.lock(true)?;
            volumes.remove_debris();
            let in_use = cs.volumes_in_use();
            let mut removed = Vec::new();
            let mut reclaimed = 0;
            for v in volumes.list() {
                if (a.all || v.anonymous) && !in_use.contains(&v.name) {
                    reclaimed += volumes.size(&v.name);
                    volumes.remove(&v.name)?;
                    removed.push(v.name);
                }
            }
            if !removed.is_empty() {
                writeln!(out, "Deleted Volumes:")?;
                for n in &removed {
                    writeln!(out, "{n}")?;
                }
                writeln!(out)?;
            }
            writeln!(out, "Total reclaimed space: {}", human_size(reclaimed))?;
        }
    }
    Ok(())
}
