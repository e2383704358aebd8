//! `berth-img`: the command line. The flags are here; each subcommand is
//! one function in `commands/`, named by its noun, that calls the library.

mod commands;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::{Parser, Subcommand};

use commands::{
    archive, auth, build, bundle, compose, container, image, internal, network, unshare, volume,
    Global,
};

#[derive(Parser)]
#[command(
    name = "berth-img",
    version,
    about = "Images from registries into OCI bundles for berth"
)]
struct Cli {
    /// Where images, layers and bundle records are kept (default
    /// /var/lib/berth; for a user without root $XDG_DATA_HOME/berth, else
    /// ~/.local/share/berth).
    #[arg(long, global = true, env = "BERTH_IMG_ROOT")]
    root: Option<PathBuf>,
    /// error, warn, info, debug or trace.
    #[arg(long, global = true, default_value = "warn")]
    log_level: String,
    /// Machine-readable output where a command supports it.
    #[arg(long, global = true)]
    json: bool,
    /// The runtime that runs RUN steps and containers (default: `berth`
    /// next to this binary, else on PATH).
    #[arg(long, global = true)]
    runtime: Option<PathBuf>,
    /// A storage option, as podman's: `overlay.mount_program=PATH` mounts
    /// images with that fuse-overlayfs instead of the kernel's overlayfs.
    #[arg(long, global = true, value_name = "KEY=VALUE")]
    storage_opt: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull an image from a registry.
    Pull(image::PullArgs),
    /// Push an image to its registry.
    Push(image::PushArgs),
    /// List images.
    Images,
    /// Show a container as docker does, or an image's manifest and config.
    Inspect(container::InspectArgs),
    /// Give an image another name.
    Tag(image::TagArgs),
    /// Remove image names, and the content no other image needs.
    Rmi(image::RmiArgs),
    /// Delete every blob and layer no image or bundle needs.
    Prune,
    /// Store credentials for a registry.
    Login(auth::LoginArgs),
    /// Remove stored credentials for a registry.
    Logout(auth::LogoutArgs),
    /// Make an OCI bundle (DIR/config.json, DIR/rootfs) from an image.
    Bundle(bundle::BundleArgs),
    /// Unmount and remove a bundle made by `bundle`.
    RmBundle(bundle::RmBundleArgs),
    /// Make an image from a bundle's changes (like docker commit).
    Commit(archive::CommitArgs),
    /// Write images to a tar (OCI layout and docker-archive in one).
    Save(archive::SaveArgs),
    /// Load images from a tar made by save, docker save or an OCI layout.
    Load(archive::LoadArgs),
    /// Write a bundle's flattened rootfs as a tar.
    Export(archive::ExportArgs),
    /// Run a container from an image (pulled if missing).
    Run(container::RunArgs),
    /// Make a container from an image without starting it.
    Create(container::CreateArgs),
    /// Start stopped containers again (their writable layer kept).
    Start(container::NamesArgs),
    /// Stop containers, then start them.
    Restart(container::StopArgs),
    /// Send a signal to containers (default KILL).
    Kill(container::KillArgs),
    /// Wait for containers to stop; print their exit codes.
    Wait(container::NamesArgs),
    /// Freeze every process of containers.
    Pause(container::NamesArgs),
    /// Thaw paused containers.
    Unpause(container::NamesArgs),
    /// Rename a container.
    Rename(container::RenameArgs),
    /// Show a container's processes (ps on the host).
    Top(container::TopArgs),
    /// Show containers' CPU, memory, network, block I/O and pids.
    Stats(container::StatsArgs),
    /// List what a container changed against its image.
    Diff(container::DiffArgs),
    /// List containers.
    Ps(container::PsArgs),
    /// Print a detached container's output.
    Logs(container::LogsArgs),
    /// Run a command in a running container.
    Exec(container::ExecArgs),
    /// Stop containers: their StopSignal, then SIGKILL.
    Stop(container::StopArgs),
    /// Remove containers and their bundles.
    Rm(container::RmArgs),
    /// Copy files between a container (NAME:PATH) and the host.
    Cp(container::CpArgs),
    /// List a container's published ports.
    Port(container::PortArgs),
    /// Manage networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Run a compose file's services (docker compose's commands).
    Compose(compose::ComposeArgs),
    /// What berth-img runs of itself (the poststop hook, the supervisor).
    #[command(subcommand, hide = true)]
    Internal(internal::InternalCommand),
    /// Build an image from a Dockerfile.
    Build(build::BuildArgs),
    /// Make a one-layer image from a rootfs tar (plain, gzip or zstd).
    Import(archive::ImportArgs),
    /// Run a command in the user namespace of a user without root.
    Unshare(unshare::UnshareArgs),
}

fn init_logging(level: &str) -> Result<()> {
    let level: tracing::Level = level
        .parse()
        .map_err(|_| anyhow!("invalid --log-level {level:?}"))?;
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    // Before any thread exists: joining a user namespace requires one.
    let entered = init_logging(&cli.log_level)
        .and_then(|()| berth_img::rootless::enter().map_err(anyhow::Error::from));
    let code = match entered.and_then(|()| dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth-img: {e:#}");
            // A failed RUN step's status is the build's.
            match e.downcast_ref::<berth_img::Error>() {
                Some(berth_img::Error::RunFailed { code, .. }) if *code > 0 && *code < 256 => *code,
                _ => 1,
            }
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// Runs the command; returns the exit status: 0, or that of the process
/// `run` or `exec` ran.
fn dispatch(cli: Cli) -> Result<i32> {
    for opt in &cli.storage_opt {
        berth_img::overlay::storage_opt(opt)?;
    }
    let root = match cli.root {
        Some(root) => root,
        None if berth_img::rootless::active() => berth_img::rootless::default_root()?,
        None => PathBuf::from("/var/lib/berth"),
    };
    let g = Global {
        root,
        json: cli.json,
        runtime: cli.runtime,
    };
    match cli.command {
        Command::Pull(args) => image::pull(&g, args)?,
        Command::Push(args) => image::push(&g, args)?,
        Command::Images => image::images(&g)?,
        Command::Inspect(args) => return container::inspect(&g, args),
        Command::Tag(args) => image::tag(&g, args)?,
        Command::Rmi(args) => image::rmi(&g, args)?,
        Command::Prune => image::prune(&g)?,
        Command::Login(args) => auth::login(args)?,
        Command::Logout(args) => auth::logout(args)?,
        Command::Bundle(args) => bundle::bundle(&g, args)?,
        Command::RmBundle(args) => bundle::rm_bundle(args)?,
        Command::Commit(args) => archive::commit(&g, args)?,
        Command::Save(args) => archive::save(&g, args)?,
        Command::Load(args) => archive::load(&g, args)?,
        Command::Export(args) => archive::export(args)?,
        Command::Run(args) => return container::run(&g, args),
        Command::Ps(args) => container::ps(&g, args)?,
        Command::Logs(args) => container::logs(&g, args)?,
        Command::Exec(args) => return container::exec(&g, args),
        Command::Create(args) => container::create(&g, args)?,
        Command::Start(args) => return container::start(&g, args),
        Command::Stop(args) => return container::stop(&g, args),
        Command::Restart(args) => return container::restart(&g, args),
        Command::Kill(args) => return container::kill(&g, args),
        Command::Wait(args) => return container::wait(&g, args),
        Command::Pause(args) => return container::pause(&g, args),
        Command::Unpause(args) => return container::unpause(&g, args),
        Command::Rename(args) => container::rename(&g, args)?,
        Command::Top(args) => container::top(&g, args)?,
        Command::Stats(args) => container::stats(&g, args)?,
        Command::Diff(args) => container::diff(&g, args)?,
        Command::Rm(args) => return container::rm(&g, args),
        Command::Cp(args) => container::cp(&g, args)?,
        Command::Port(args) => container::port(&g, args)?,
        Command::Network(cmd) => network::network(&g, cmd)?,
        Command::Volume(cmd) => volume::volume(&g, cmd)?,
        Command::Compose(args) => return compose::compose(&g, args),
        Command::Internal(cmd) => internal::internal(&g, cmd)?,
        Command::Build(args) => build::build(&g, args)?,
        Command::Import(args) => archive::import(&g, args)?,
        Command::Unshare(args) => return unshare::unshare(args),
    }
    Ok(0)
}
