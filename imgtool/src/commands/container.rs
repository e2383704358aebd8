//! `run`, `ps`, `logs`, `exec`, `stop`, `rm`, `cp`: containers for
//! debugging, kept in the store and run by `berth`.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Result};
use berth_img::containers::{self, Containers, RunOptions, Started};
use berth_img::output;
use berth_img::reference::Reference;
use berth_img::store::{Access, Store};

use super::bundle::BundleFlags;
use super::Global;

/// The flags of `run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Run in the background, supervised by the shim.
    #[arg(short, long)]
    detach: bool,
    #[arg(long)]
    name: Option<String>,
    /// Keep stdin open.
    #[arg(short, long)]
    interactive: bool,
    #[command(flatten)]
    flags: Box<BundleFlags>,
    reference: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// `run`: prints a detached container's name; a foreground container's
/// exit status is ours.
pub fn run(g: &Global, args: RunArgs) -> Result<i32> {
    if args.rm && args.detach {
        bail!("--rm and --detach cannot be combined");
    }
    // Accepted as docker spells it: a foreground container always has our
    // stdin.
    let _ = args.interactive;
    let opts = RunOptions {
        name: args.name,
        bundle: args.flags.options(args.args)?,
        detach: args.detach,
        auto_remove: args.rm,
    };
    let store = Store::open(&g.root, Access::Shared)?;
    let reference: Reference = args.reference.parse()?;
    match containers::run(&store, g.runtime.as_deref(), &reference, &opts)? {
        Started::Detached(name) => {
            writeln!(std::io::stdout(), "{name}")?;
            Ok(0)
        }
        Started::Exited(code) => Ok(code),
    }
}

/// The flags of `ps`.
#[derive(clap::Args)]
pub struct PsArgs {
    /// Include stopped containers.
    #[arg(short, long)]
    all: bool,
}

/// `ps`: a table, or JSON with `--json`.
pub fn ps(g: &Global, args: PsArgs) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    let store = Store::open(&g.root, Access::Shared)?;
    let listed = Containers::new(&store, g.runtime.as_deref())?.list_with_status(args.all)?;
    if g.json {
        let list: Vec<_> = listed
            .iter()
            .map(|(c, s)| {
                serde_json::json!({
                    "name": c.name,
                    "image": c.image,
                    "command": c.command,
                    "created": c.created,
                    "status": s.to_string(),
                })
            })
            .collect();
        output::write_json(out, &list)?;
        return Ok(());
    }
    let rows: Vec<_> = listed
        .into_iter()
        .map(|(c, s)| {
            let command = output::ellipsize(c.command.join(" "), 28);
            vec![
                c.name,
                c.image,
                format!("\"{command}\""),
                c.created,
                s.to_string(),
            ]
        })
        .collect();
    let columns = [
        ("NAME", 24),
        ("IMAGE", 40),
        ("COMMAND", 30),
        ("CREATED", 22),
        ("STATUS", 0),
    ];
    output::write_table(out, &columns, &rows)?;
    Ok(())
}

/// The flags of `logs`.
#[derive(clap::Args)]
pub struct LogsArgs {
    #[arg(short, long)]
    follow: bool,
    name: String,
}

/// `logs`: the container's stdout on ours, its stderr on ours.
pub fn logs(g: &Global, args: LogsArgs) -> Result<()> {
    let store = Store::open(&g.root, Access::Shared)?;
    Containers::new(&store, g.runtime.as_deref())?.logs(
        &args.name,
        args.follow,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )?;
    Ok(())
}

/// The flags of `exec`.
#[derive(clap::Args)]
pub struct ExecArgs {
    #[arg(short, long)]
    interactive: bool,
    #[arg(short, long)]
    tty: bool,
    name: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `exec`: the process's exit status is ours.
pub fn exec(g: &Global, args: ExecArgs) -> Result<i32> {
    let store = Store::open(&g.root, Access::Shared)?;
    let code = Containers::new(&store, g.runtime.as_deref())?.exec(
        &args.name,
        args.tty,
        args.interactive,
        &args.command,
    )?;
    Ok(code)
}

/// The flags of `stop`.
#[derive(clap::Args)]
pub struct StopArgs {
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    names: Vec<String>,
}

/// `stop`: prints each name once that container has stopped.
pub fn stop(g: &Global, args: StopArgs) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    let store = Store::open(&g.root, Access::Shared)?;
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    for name in args.names {
        cs.stop(&name, Duration::from_secs(args.time))?;
        writeln!(out, "{name}")?;
    }
    Ok(())
}

/// The flags of `rm`.
#[derive(clap::Args)]
pub struct RmArgs {
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

/// `rm`: prints each name once that container is gone.
pub fn rm(g: &Global, args: RmArgs) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    let store = Store::open(&g.root, Access::Shared)?;
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    for name in args.names {
        cs.remove(&name, args.force)?;
        writeln!(out, "{name}")?;
    }
    Ok(())
}

/// The flags of `cp`.
#[derive(clap::Args)]
pub struct CpArgs {
    source: String,
    destination: String,
}

/// `cp`.
pub fn cp(g: &Global, args: CpArgs) -> Result<()> {
    let store = Store::open(&g.root, Access::Shared)?;
    Containers::new(&store, g.runtime.as_deref())?.copy(&args.source, &args.destination)?;
    Ok(())
}
