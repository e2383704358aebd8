//! `compose`: docker compose's commands over [`berth_img::compose`]:
//! `up`, `down`, `ps`, `logs`, `exec`, `build`, `pull`, `stop`, `start`,
//! `restart`. Progress goes to stderr, as compose prints it.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use berth_img::compose::{self, Action, Project};
use berth_img::containers::{Container, Containers};
use berth_img::inspect as views;
use berth_img::store::{Access, Store};
use nix::sys::signal::{SigSet, Signal};
use serde_json::Value;

use super::container::write_formatted;
use super::Global;

/// `compose [-f FILE] [-p NAME] COMMAND`.
#[derive(clap::Args)]
pub struct ComposeArgs {
    /// The compose file (default: compose.yaml, compose.yml,
    /// docker-compose.yml or docker-compose.yaml here).
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// The project name (default: COMPOSE_PROJECT_NAME, the file's
    /// `name`, or its directory's name).
    #[arg(short = 'p', long = "project-name")]
    project_name: Option<String>,
    #[command(subcommand)]
    command: ComposeCommand,
}

#[derive(clap::Subcommand)]
pub enum ComposeCommand {
    /// Create and start the services' containers (and networks, volumes).
    Up(UpArgs),
    /// Stop and remove the containers and networks (-v: volumes too).
    Down(DownArgs),
    /// List the project's containers.
    Ps(PsArgs),
    /// Show the services' output.
    Logs(LogsArgs),
    /// Run a command in a service's container.
    Exec(ExecArgs),
    /// Build the services' images.
    Build(BuildArgs),
    /// Pull the services' images.
    Pull(ServicesArgs),
    /// Stop the services' containers.
    Stop(StopArgs),
    /// Start the services' stopped containers.
    Start(ServicesArgs),
    /// Restart the services' containers.
    Restart(StopArgs),
}

#[derive(clap::Args)]
pub struct UpArgs {
    /// Leave the containers running in the background.
    #[arg(short, long)]
    detach: bool,
    /// Build images before starting containers.
    #[arg(long)]
    build: bool,
    /// Seconds to wait for a container to stop on Ctrl-C (attached).
    #[arg(short, long, default_value_t = 10)]
    timeout: u64,
    services: Vec<String>,
}

#[derive(clap::Args)]
pub struct DownArgs {
    /// Also remove the named volumes of the file and anonymous ones.
    #[arg(short, long)]
    volumes: bool,
}

#[derive(clap::Args)]
pub struct PsArgs {
    /// Also stopped containers.
    #[arg(short, long)]
    all: bool,
    /// Only the IDs.
    #[arg(short, long)]
    quiet: bool,
    services: Vec<String>,
}

#[derive(clap::Args)]
pub struct LogsArgs {
    #[arg(short, long)]
    follow: bool,
    services: Vec<String>,
}

#[derive(clap::Args)]
pub struct ExecArgs {
    /// No terminal (the default when stdin is not one).
    #[arg(short = 'T', long = "no-TTY")]
    no_tty: bool,
    service: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
pub struct BuildArgs {
    #[arg(long)]
    no_cache: bool,
    services: Vec<String>,
}

#[derive(clap::Args)]
pub struct ServicesArgs {
    services: Vec<String>,
}

#[derive(clap::Args)]
pub struct StopArgs {
    /// Seconds to wait for a container to stop before killing it.
    #[arg(short, long, default_value_t = 10)]
    timeout: u64,
    services: Vec<String>,
}

/// `compose ps`'s table.
const PS_FORMAT: &str =
    "table {{.Names}}\t{{.Image}}\t{{.Command}}\t{{.Service}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}";

/// Runs the compose command; returns the exit status (that of `exec`'s
/// process).
pub fn compose(g: &Global, args: ComposeArgs) -> Result<i32> {
    let project = Project::load(args.file.as_deref(), args.project_name.as_deref())?;
    let store = Store::open(&g.root, Access::Shared)?;
    let runtime = g.runtime.as_deref();
    let progress = &mut std::io::stderr();
    match args.command {
        ComposeCommand::Up(a) => {
            let builds = compose::images_to_build(&store, &project, &a.services, a.build)?;
            if !builds.is_empty() {
                build_apart(g, &project, &builds)?;
            }
            let names = compose::up(&store, runtime, &project, &a.services, progress)?;
            if !a.detach {
                attach(g, &store, &project, &names, Duration::from_secs(a.timeout))?;
            }
        }
        ComposeCommand::Down(a) => {
            compose::down(&store, runtime, &project, a.volumes, progress)?;
        }
        ComposeCommand::Ps(a) => ps(g, &store, &project, a)?,
        ComposeCommand::Logs(a) => {
            let cs = Containers::new(&store, runtime)?;
            let list: Vec<Container> = compose::containers_of_services(&cs, &project, &a.services)?
                .into_iter()
                .map(|(c, _, _)| c)
                .collect();
            follow_logs(&cs, &list, a.follow)?;
        }
        ComposeCommand::Exec(a) => {
            let cs = Containers::new(&store, runtime)?;
            let c = compose::container_for(&cs, &project, &a.service)?;
            let tty = !a.no_tty && std::io::stdin().is_terminal();
            return Ok(cs.exec(&c.name, tty, tty, &a.command)?);
        }
        ComposeCommand::Build(a) => {
            compose::build(&store, runtime, &project, &a.services, a.no_cache)?;
        }
        ComposeCommand::Pull(a) => compose::pull(&store, &project, &a.services, progress)?,
        ComposeCommand::Stop(a) => compose::act(
            &store,
            runtime,
            &project,
            &a.services,
            Action::Stop,
            Duration::from_secs(a.timeout),
            progress,
        )?,
        ComposeCommand::Start(a) => compose::act(
            &store,
            runtime,
            &project,
            &a.services,
            Action::Start,
            Duration::ZERO,
            progress,
        )?,
        ComposeCommand::Restart(a) => compose::act(
            &store,
            runtime,
            &project,
            &a.services,
            Action::Restart,
            Duration::from_secs(a.timeout),
            progress,
        )?,
    }
    Ok(0)
}

/// `compose build SERVICES` in a berth-img of its own: a build leaves
/// its process in a private mount namespace, and the containers `up`
/// then creates must have their rootfs mounted where later commands see
/// them (see [`compose::up`]).
fn build_apart(g: &Global, project: &Project, services: &[String]) -> Result<()> {
    let me = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(me);
    cmd.arg("--root").arg(&g.root);
    if let Some(r) = &g.runtime {
        cmd.arg("--runtime").arg(r);
    }
    cmd.args(["compose", "-f"])
        .arg(&project.file)
        .args(["-p", &project.name, "build"])
        .args(services);
    let status = cmd.status()?;
    if !status.success() {
        anyhow::bail!("building {} failed ({status})", services.join(", "));
    }
    Ok(())
}

fn ps(g: &Global, store: &Store, project: &Project, a: PsArgs) -> Result<()> {
    let cs = Containers::new(store, g.runtime.as_deref())?;
    let rows: Vec<Value> = compose::containers_of_services(&cs, project, &a.services)?
        .into_iter()
        .filter(|(_, status, _)| a.all || status.is_running())
        .map(|(c, status, state)| {
            let mut row = views::ps_row(&cs, &c, &status, &state, false);
            row["Service"] = c
                .config
                .labels
                .get(compose::SERVICE_LABEL)
                .cloned()
                .unwrap_or_default()
                .into();
            row
        })
        .collect();
    let out = &mut std::io::stdout().lock();
    if a.quiet {
        for r in &rows {
            writeln!(out, "{}", r["ID"].as_str().unwrap_or_default())?;
        }
        return Ok(());
    }
    let mut headers = views::ps_headers();
    headers["Names"] = "NAME".into();
    headers["Service"] = "SERVICE".into();
    write_formatted(out, PS_FORMAT, &headers, &rows)
}

/// Each line a container writes, behind its name as compose shows it
/// (`app_web_1  | ...`).
struct Prefixed {
    prefix: String,
    line: Vec<u8>,
}

impl Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        while let Some(i) = self.line.iter().position(|b| *b == b'\n') {
            let rest = self.line.split_off(i + 1);
            let mut out = std::io::stdout().lock();
            out.write_all(self.prefix.as_bytes())?;
            out.write_all(&self.line)?;
            self.line = rest;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// The containers' logs, interleaved line by line as they come; with
/// `follow`, until every one has exited.
fn follow_logs(cs: &Containers, list: &[Container], follow: bool) -> Result<()> {
    let width = list.iter().map(|c| c.name.len()).max().unwrap_or(0);
    std::thread::scope(|s| {
        let threads: Vec<_> = list
            .iter()
            .map(|c| {
                let prefix = format!("{:width$}  | ", c.name);
                s.spawn(move || {
                    let mut out = Prefixed {
                        prefix: prefix.clone(),
                        line: Vec::new(),
                    };
                    let mut err = Prefixed {
                        prefix,
                        line: Vec::new(),
                    };
                    cs.logs(&c.name, follow, &mut out, &mut err)
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a log thread panicked")?;
        }
        Ok(())
    })
}

/// `up` without `-d`: the services' output until they all exit, or until
/// SIGINT or SIGTERM, which stops them (compose's "Gracefully
/// stopping").
fn attach(
    g: &Global,
    store: &Store,
    project: &Project,
    names: &[String],
    timeout: Duration,
) -> Result<()> {
    let signals = SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM]);
    // Blocked before any thread starts, so every thread inherits it and
    // only the waiter below takes the signal.
    signals.thread_block()?;
    let signalled = Arc::new(AtomicBool::new(false));
    let (root, runtime, stopping, flag) = (
        g.root.clone(),
        g.runtime.clone(),
        project.clone(),
        signalled.clone(),
    );
    let waiter = std::thread::spawn(move || {
        if signals.wait().is_err() {
            return;
        }
        flag.store(true, Ordering::SeqCst);
        eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
        // A second signal ends berth-img at once.
        let _ = signals.thread_unblock();
        let stopped = Store::open(&root, Access::Shared)
            .and_then(|store| {
                compose::act(
                    &store,
                    runtime.as_deref(),
                    &stopping,
                    &[],
                    Action::Stop,
                    timeout,
                    &mut std::io::stderr(),
                )
            })
            .map_err(anyhow::Error::from);
        if let Err(e) = stopped {
            eprintln!("berth-img: {e:#}");
        }
    });
    let cs = Containers::new(store, g.runtime.as_deref())?;
    let list: Vec<Container> = names
        .iter()
        .map(|n| cs.get(n))
        .collect::<berth_img::Result<_>>()?;
    follow_logs(&cs, &list, true)?;
    // The last container's exit ends the logs before the stop is told.
    if signalled.load(Ordering::SeqCst) {
        let _ = waiter.join();
    }
    Ok(())
}
