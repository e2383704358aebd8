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
    /// Directory for container state (tmpfs recommended) [default:
    /// /run/berth, or $XDG_RUNTIME_DIR/berth when rootless].
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
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
    fn options(&self, g: &Global, systemd_cgroup: bool) -> CreateOptions {
        CreateOptions {
            systemd_cgroup,
            rootless: g.rootless,
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
    /// Run a new process in a running container.
    Exec {
        /// A process.json to run (config.md "process").
        #[arg(short = 'p', long, value_name = "FILE")]
        process: Option<PathBuf>,
        /// Allocate a pseudo-TTY.
        #[arg(short, long)]
        tty: bool,
        /// Unix socket to receive the pty master.
        #[arg(long, value_name = "PATH")]
        console_socket: Option<PathBuf>,
        /// Do not wait for the process.
        #[arg(short, long)]
        detach: bool,
        /// File to write the process's PID to.
        #[arg(long, value_name = "PATH")]
        pid_file: Option<PathBuf>,
        /// Working directory inside the container.
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// Set an environment variable (K=V).
        #[arg(short, long)]
        env: Vec<String>,
        /// UID[:GID], or names from the container's /etc/passwd and /etc/group.
        #[arg(short, long)]
        user: Option<String>,
        /// Additional groups.
        #[arg(long, value_delimiter = ',')]
        additional_gids: Vec<u32>,
        /// Add a capability.
        #[arg(short = 'c', long)]
        cap: Vec<String>,
        /// Set no_new_privs.
        #[arg(long)]
        no_new_privs: bool,
        /// AppArmor profile.
        #[arg(long)]
        apparmor: Option<String>,
        /// SELinux process label.
        #[arg(long)]
        process_label: Option<String>,
        /// Pass this many fds (from 3 up) to the process.
        #[arg(long, default_value_t = 0)]
        preserve_fds: u32,
        /// Exec even if the container is paused.
        #[arg(long)]
        ignore_paused: bool,
        /// Run in a sub-cgroup of the container: PATH, or CONTROLLER[,...]:PATH (v1).
        #[arg(long, value_name = "PATH")]
        cgroup: Vec<String>,
        id: String,
        /// The command, verbatim.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
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
    /// Show a container's processes (arguments after the ID go to ps).
    Ps {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Change a container's resource limits.
    Update {
        id: String,
        /// LinuxResources JSON from a file, or - for stdin.
        #[arg(short, long, value_name = "FILE")]
        resources: Option<String>,
        #[arg(long)]
        blkio_weight: Option<u16>,
        #[arg(long)]
        cpu_period: Option<u64>,
        #[arg(long, allow_hyphen_values = true)]
        cpu_quota: Option<i64>,
        #[arg(long)]
        cpu_share: Option<u64>,
        #[arg(long)]
        cpu_rt_period: Option<u64>,
        #[arg(long, allow_hyphen_values = true)]
        cpu_rt_runtime: Option<i64>,
        #[arg(long)]
        cpuset_cpus: Option<String>,
        #[arg(long)]
        cpuset_mems: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        memory: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        memory_reservation: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        memory_swap: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        pids_limit: Option<i64>,
        #[arg(long, allow_hyphen_values = true)]
        kernel_memory: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        kernel_memory_tcp: Option<String>,
    },
    /// Stream a container's events (stats, oom) as JSON lines.
    Events {
        id: String,
        /// Print one stats event and exit.
        #[arg(long)]
        stats: bool,
        /// Time between stats events.
        #[arg(long, default_value = "5s")]
        interval: String,
    },
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

/// Options of `exec` that take a value (so the scan for the ID skips it).
const EXEC_VALUE_OPTIONS: &[&str] = &[
    "-p",
    "--process",
    "--console-socket",
    "--pid-file",
    "--cwd",
    "-e",
    "--env",
    "-u",
    "--user",
    "--additional-gids",
    "-c",
    "--cap",
    "--apparmor",
    "--process-label",
    "--preserve-fds",
    "--cgroup",
];
/// Options of `ps` that take a value.
const PS_VALUE_OPTIONS: &[&str] = &["-f", "--format"];
/// Global options that take a value.
const GLOBAL_VALUE_OPTIONS: &[&str] = &["--root", "--log", "--log-format", "--rootless", "--criu"];

/// runc passes everything after `exec ID` to the process verbatim
/// (`berth exec ID sh -c '...'`, `berth exec ID ls -l`), and after `ps ID`
/// to ps: mark that point with `--` so no option parser reorders or eats
/// those arguments.
fn mark_exec_command(args: Vec<String>) -> Vec<String> {
    let skip_options = |args: &[String], mut i: usize, with_value: &[&str]| {
        while i < args.len() && args[i].starts_with('-') && args[i] != "--" {
            let takes_value = with_value.contains(&args[i].as_str());
            i += if takes_value { 2 } else { 1 };
        }
        i
    };
    let sub = skip_options(&args, 1, GLOBAL_VALUE_OPTIONS);
    let value_options = match args.get(sub).map(String::as_str) {
        Some("exec") => EXEC_VALUE_OPTIONS,
        Some("ps") => PS_VALUE_OPTIONS,
        _ => return args,
    };
    let id = skip_options(&args, sub + 1, value_options);
    if id + 1 >= args.len() || args[id] == "--" || args[id + 1] == "--" {
        return args;
    }
    let mut out = args;
    out.insert(id + 1, "--".into());
    out
}

fn main() {
    let cli = Cli::parse_from(mark_exec_command(std::env::args().collect()));
    if cli.version {
        berth::outln!("{}", version());
        return;
    }
    // Checked before berth opens anything: berth's own fds must not land
    // in the range the caller passes on to the container.
    if let Err(e) = check_preserved_fds(&cli) {
        eprintln!("berth: {e}");
        std::process::exit(1);
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
            e.downcast_ref::<ExitWith>().map_or(1, |x| x.code)
        }
    };
    std::process::exit(code);
}

/// A failure with an exit code other than 1.
#[derive(Debug)]
struct ExitWith {
    code: i32,
    message: String,
}

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitWith {}

/// `--preserve-fds N` (and systemd's LISTEN_FDS) pass fds 3..3+N to the
/// container: each must be open, or berth's own fds could fill a gap and
/// reach the container in its place.
fn check_preserved_fds(cli: &Cli) -> Result<(), String> {
    let n = match &cli.command {
        Some(Command::Create { args, .. } | Command::Run { args, .. }) => {
            args.preserve_fds + berth::container::socket_activation_fds()
        }
        Some(Command::Exec { preserve_fds, .. }) => *preserve_fds,
        _ => return Ok(()),
    };
    for fd in 3..3 + n as i32 {
        // SAFETY: F_GETFD only reads the fd's flags.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(format!(
                "--preserve-fds {n}: fd {fd} is not open (the fds passed on are 3 to {})",
                2 + n
            ));
        }
    }
    Ok(())
}

fn dispatch(cli: &Cli) -> anyhow::Result<i32> {
    let rootless = berth::rootless::detect(&cli.rootless)?;
    let Some(command) = &cli.command else {
        use clap::CommandFactory;
        Cli::command().print_help()?;
        return Ok(0);
    };
    let root = match &cli.root {
        Some(r) => r.clone(),
        None if rootless => berth::rootless::default_root(),
        None => PathBuf::from("/run/berth"),
    };
    let g = Global { root, rootless };
    match command {
        Command::Create { id, args } => {
            commands::create::create(&g, id, &args.options(&g, cli.systemd_cgroup))?
        }
        Command::Start { id } => commands::start::start(&g, id)?,
        Command::Run {
            id,
            args,
            detach,
            keep,
            no_subreaper,
        } => {
            let opts = RunOptions {
                create: args.options(&g, cli.systemd_cgroup),
                detach: *detach,
                keep: *keep,
                no_subreaper: *no_subreaper,
            };
            return Ok(commands::run::run(&g, id, &opts)?);
        }
        Command::Exec {
            process,
            tty,
            console_socket,
            detach,
            pid_file,
            cwd,
            env,
            user,
            additional_gids,
            cap,
            no_new_privs,
            apparmor,
            process_label,
            preserve_fds,
            ignore_paused,
            cgroup,
            id,
            command,
        } => {
            let opts = berth::exec::ExecOptions {
                process: process.clone(),
                tty: *tty,
                console_socket: console_socket.clone(),
                detach: *detach,
                pid_file: pid_file.clone(),
                cwd: cwd.clone(),
                env: env.clone(),
                user: user.clone(),
                additional_gids: additional_gids.clone(),
                caps: cap.clone(),
                no_new_privs: *no_new_privs,
                apparmor: apparmor.clone(),
                process_label: process_label.clone(),
                preserve_fds: *preserve_fds,
                ignore_paused: *ignore_paused,
                cgroups: cgroup.clone(),
                rootless: g.rootless,
                args: command.clone(),
            };
            // runc's contract: a failure before the process runs is 255,
            // apart from any code the process itself could exit with.
            return berth::exec::exec(&g.root, id, &opts).map_err(|e| {
                anyhow::Error::new(ExitWith {
                    code: 255,
                    message: format!("exec failed: {e}"),
                })
            });
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
        Command::Ps {
            format,
            id,
            ps_args,
        } => {
            let json = match format.as_str() {
                "json" => true,
                "table" => false,
                other => anyhow::bail!("--format: invalid value {other:?} (table or json)"),
            };
            commands::ps::ps(&g, id, json, ps_args)?
        }
        Command::Update {
            id,
            resources,
            blkio_weight,
            cpu_period,
            cpu_quota,
            cpu_share,
            cpu_rt_period,
            cpu_rt_runtime,
            cpuset_cpus,
            cpuset_mems,
            memory,
            memory_reservation,
            memory_swap,
            pids_limit,
            kernel_memory,
            kernel_memory_tcp,
        } => {
            let o = commands::update::UpdateOptions {
                resources: resources.clone(),
                blkio_weight: *blkio_weight,
                cpu_period: *cpu_period,
                cpu_quota: *cpu_quota,
                cpu_share: *cpu_share,
                cpu_rt_period: *cpu_rt_period,
                cpu_rt_runtime: *cpu_rt_runtime,
                cpuset_cpus: cpuset_cpus.clone(),
                cpuset_mems: cpuset_mems.clone(),
                memory: memory.clone(),
                memory_reservation: memory_reservation.clone(),
                memory_swap: memory_swap.clone(),
                pids_limit: *pids_limit,
                kernel_memory: kernel_memory.clone(),
                kernel_memory_tcp: kernel_memory_tcp.clone(),
            };
            commands::update::update(&g, id, &o)?
        }
        Command::Events {
            id,
            stats,
            interval,
        } => {
            let interval = commands::events::parse_interval(interval)?;
            commands::events::events(&g, id, *stats, interval)?
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn exec_command_is_verbatim() {
        assert_eq!(
            mark_exec_command(v("berth --root /r exec -t x ls -l")),
            v("berth --root /r exec -t x -- ls -l")
        );
        assert_eq!(
            mark_exec_command(v("berth exec --cwd /tmp -e A=1 x sh -c -t")),
            v("berth exec --cwd /tmp -e A=1 x -- sh -c -t")
        );
        assert_eq!(
            mark_exec_command(v("berth exec x -- ls")),
            v("berth exec x -- ls")
        );
        assert_eq!(
            mark_exec_command(v("berth exec --process p.json x")),
            v("berth exec --process p.json x")
        );
        assert_eq!(
            mark_exec_command(v("berth run -b x y")),
            v("berth run -b x y")
        );
        let cli = Cli::try_parse_from(mark_exec_command(v("berth exec x ls -t --help"))).unwrap();
        match cli.command {
            Some(Command::Exec {
                id, command, tty, ..
            }) => {
                assert_eq!(id, "x");
                assert_eq!(command, v("ls -t --help"));
                assert!(!tty);
            }
            _ => panic!("not exec"),
        }
    }
}
