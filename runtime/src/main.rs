//! `berth`: the command line. Flags are runc 1.1's; each subcommand calls
//! into the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use berth::commands::{self, run::RunOptions, Global};
use berth::container::CreateOptions;
use berth::logging;

#[derive(Parser)]
#[command(
    name = "berth",
    about = "Run OCI containers: a runc-compatible runtime",
    disable_version_flag = true
)]
struct Cli {
    /// Directory for container state (tmpfs recommended).
    #[arg(long, global = true, default_value = "/run/berth", value_name = "DIR")]
    root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Enable debug logging.
    #[arg(long, global = true)]
    debug: bool,
    /// Use the systemd cgroup driver (needs systemd as PID 1).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Rootless mode: auto, true or false.
    #[arg(long, default_value = "auto", value_name = "MODE")]
    rootless: String,
    /// Accepted for runc compatibility; checkpointing is not supported.
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Clone)]
struct CreateArgs {
    /// Path to the bundle directory.
    #[arg(short, long, default_value = ".", value_name = "DIR")]
    bundle: PathBuf,
    /// Unix socket to receive the pty master of a terminal container.
    #[arg(long, value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// File to write the container init's PID to.
    #[arg(long, value_name = "PATH")]
    pid_file: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root.
    #[arg(long)]
    no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass this many fds (from 3 up) to the container.
    #[arg(long, default_value_t = 0, value_name = "N")]
    preserve_fds: u32,
}

impl CreateArgs {
    fn options(&self) -> CreateOptions {
        CreateOptions {
            bundle: self.bundle.clone(),
            console_socket: self.console_socket.clone(),
            pid_file: self.pid_file.clone(),
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: self.preserve_fds,
            foreground_tty: false,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create a container from a bundle; it waits for `start`.
    Create {
        id: String,
        #[command(flatten)]
        args: CreateArgs,
    },
    /// Start a created container's process.
    Start { id: String },
    /// Create and start a container, and wait for it unless detached.
    Run {
        id: String,
        #[command(flatten)]
        args: CreateArgs,
        /// Do not wait for the container.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
        /// Do not become a subreaper.
        #[arg(long)]
        no_subreaper: bool,
    },
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal to a container's init (or all its processes).
    Kill {
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
        /// Signal every process in the container.
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container and everything it holds.
    Delete {
        id: String,
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
    },
    /// List containers.
    #[command(alias = "ls")]
    List {
        /// IDs only.
        #[arg(short, long)]
        quiet: bool,
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
    },
    /// Suspend every process of a container.
    Pause { id: String },
    /// Resume a paused container.
    Resume { id: String },
    /// Write a default config.json.
    Spec {
        /// Directory to write config.json to.
        #[arg(short, long, default_value = ".", value_name = "DIR")]
        bundle: PathBuf,
        /// A spec for a rootless container.
        #[arg(long = "rootless", id = "spec_rootless")]
        rootless: bool,
    },
    /// Print what this runtime supports (runtime-spec features.md).
    Features,
    /// Checkpoint a container (not supported).
    #[command(hide = true)]
    Checkpoint {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Restore a container (not supported).
    #[command(hide = true)]
    Restore {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn version() -> String {
    let seccomp = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "berth version {}\ncommit: {}\nspec: {}\nlibseccomp: {seccomp}",
        berth::VERSION,
        berth::COMMIT,
        berth::SPEC_VERSION
    )
}

fn main() {
    let cli = Cli::parse();
    if cli.version {
        println!("{}", version());
        return;
    }
    let format = match cli.log_format {
        LogFormat::Text => logging::Format::Text,
        LogFormat::Json => logging::Format::Json,
    };
    let log_to_stderr = match logging::init(cli.log.as_deref(), format, cli.debug) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "berth: open log {}: {e}",
                cli.log.as_deref().unwrap_or_else(|| "".as_ref()).display()
            );
            std::process::exit(1);
        }
    };
    let code = match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            if !log_to_stderr {
                eprintln!("berth: {e}");
            }
            1
        }
    };
    std::process::exit(code);
}

fn dispatch(cli: &Cli) -> anyhow::Result<i32> {
    let g = Global {
        root: cli.root.clone(),
    };
    if !matches!(cli.rootless.as_str(), "auto" | "true" | "false") {
        anyhow::bail!(
            "--rootless: invalid value {:?} (auto, true or false)",
            cli.rootless
        );
    }
    let Some(command) = &cli.command else {
        use clap::CommandFactory;
        Cli::command().print_help()?;
        return Ok(0);
    };
    let systemd_check = || -> anyhow::Result<()> {
        if cli.systemd_cgroup && !std::path::Path::new("/run/systemd/system").exists() {
            anyhow::bail!("--systemd-cgroup: systemd is not running on this host (PID 1 is not systemd); use the default cgroupfs driver");
        }
        Ok(())
    };
    match command {
        Command::Create { id, args } => {
            systemd_check()?;
            commands::create::create(&g, id, &args.options())?
        }
        Command::Start { id } => commands::start::start(&g, id)?,
        Command::Run {
            id,
            args,
            detach,
            keep,
            no_subreaper,
        } => {
            systemd_check()?;
            let opts = RunOptions {
                create: args.options(),
                detach: *detach,
                keep: *keep,
                no_subreaper: *no_subreaper,
            };
            return Ok(commands::run::run(&g, id, &opts)?);
        }
        Command::State { id } => commands::state::state(&g, id)?,
        Command::Kill { id, signal, all } => commands::kill::kill(&g, id, signal, *all)?,
        Command::Delete { id, force } => commands::delete::delete(&g, id, *force)?,
        Command::List { quiet, format } => {
            let json = match format.as_str() {
                "json" => true,
                "table" => false,
                other => anyhow::bail!("--format: invalid value {other:?} (table or json)"),
            };
            commands::list::list(&g, *quiet, json)?
        }
        Command::Pause { id } => commands::pause::pause(&g, id)?,
        Command::Resume { id } => commands::pause::resume(&g, id)?,
        Command::Spec { bundle, rootless } => commands::spec::spec(bundle, *rootless)?,
        Command::Features => commands::features::features()?,
        Command::Checkpoint { .. } | Command::Restore { .. } => {
            return Err(berth::error::Error::Unsupported(
                "checkpoint/restore (berth does not drive CRIU)".into(),
            )
            .into())
        }
    }
    Ok(0)
}
