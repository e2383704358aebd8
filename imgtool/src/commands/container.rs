//! Containers, as docker's CLI has them: `create`, `run`, `start`,
//! `stop`, `restart`, `kill`, `wait`, `pause`, `unpause`, `rename`, `ps`,
//! `inspect`, `top`, `stats`, `diff`, `logs`, `exec`, `rm`, `cp`, `port`.
//! Commands given several containers go on past one that fails and exit
//! 1 at the end, as docker's do.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Result};
use berth_img::containers::{self, Container, Containers, RunOptions, Started};
use berth_img::health::HealthFlags;
use berth_img::network::ports::{self, PortMapping, Protocol};
use berth_img::network::sandbox::{Mode, Request};
use berth_img::reference::Reference;
use berth_img::restart::RestartPolicy;
use berth_img::store::{Access, Store};
use berth_img::template::{tabwriter, Template};
use berth_img::{inspect as views, output, stats};
use serde_json::{json, Value};

use super::bundle::BundleFlags;
use super::network::parse_labels;
use super::Global;

/// The flags of `create` and `run`.
#[derive(clap::Args)]
pub struct CreateArgs {
    #[arg(long)]
    name: Option<String>,
    /// Publish a port: [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp] (no
    /// HOSTPORT: a free one).
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish every port the image EXPOSEs, each on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Another name for the container on its user-defined networks.
    #[arg(long = "network-alias")]
    network_alias: Vec<String>,
    /// Restart policy: no, always, unless-stopped, on-failure[:N].
    #[arg(long, default_value = "no")]
    restart: String,
    /// Command to run to check health (run by /bin/sh -c).
    #[arg(long)]
    health_cmd: Option<String>,
    /// Time between running the check (e.g. 30s).
    #[arg(long)]
    health_interval: Option<String>,
    /// Consecutive failures needed to report unhealthy.
    #[arg(long, allow_hyphen_values = true)]
    health_retries: Option<i64>,
    /// Maximum time to allow one check to run.
    #[arg(long)]
    health_timeout: Option<String>,
    /// Start period for the container to initialize before failures count.
    #[arg(long)]
    health_start_period: Option<String>,
    /// Time between checks during the start period.
    #[arg(long)]
    health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long)]
    no_healthcheck: bool,
    /// Set metadata on the container (KEY=VALUE).
    #[arg(short = 'l', long = "label")]
    label: Vec<String>,
    #[command(flatten)]
    flags: Box<BundleFlags>,
    reference: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl CreateArgs {
    /// The library's options for these flags.
    fn options(self, detach: bool, auto_remove: bool) -> Result<(Reference, RunOptions)> {
        let mut publish = Vec::new();
        for p in &self.publish {
            publish.extend(ports::parse_publish(p)?);
        }
        for a in &self.network_alias {
            if !berth_img::network::valid_name(a) {
                bail!("invalid --network-alias {a:?}: want [a-zA-Z0-9][a-zA-Z0-9_.-]*");
            }
        }
        let restart: RestartPolicy = self.restart.parse()?;
        let opts = RunOptions {
            name: self.name,
            bundle: self.flags.options(self.args)?,
            mounts: self.flags.mount_requests()?,
            network: Request {
                mode: Mode::parse(&self.flags.net)?,
                publish,
                aliases: self.network_alias,
            },
            publish_all: self.publish_all,
            detach,
            auto_remove,
            restart,
            health: HealthFlags {
                test: None,
                cmd: self.health_cmd,
                interval: self.health_interval,
                timeout: self.health_timeout,
                start_period: self.health_start_period,
                start_interval: self.health_start_interval,
                retries: self.health_retries,
                none: self.no_healthcheck,
            },
            labels: parse_labels("--label", &self.label)?,
        };
        Ok((self.reference.parse()?, opts))
    }
}

/// The flags of `run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Run in the background, under a supervisor.
    #[arg(short, long)]
    detach: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    interactive: bool,
    #[command(flatten)]
    create: CreateArgs,
}

/// docker's status for a failure of `run` itself (not of the container).
const RUN_FAILED: i32 = 125;

/// `run`: prints a detached container's name; a foreground container's
/// exit status is ours; berth-img's own failures exit 125, as docker's.
pub fn run(g: &Global, args: RunArgs) -> Result<i32> {
    let started = (|| -> Result<Started> {
        if args.rm && args.detach {
            bail!("--rm and --detach cannot be combined");
        }
        // Accepted as docker spells it: a foreground container always has
        // our stdin.
        let _ = args.interactive;
        let (reference, opts) = args.create.options(args.detach, args.rm)?;
        let store = Store::open(&g.root, Access::Shared)?;
        Ok(containers::run(
            &store,
            g.runtime.as_deref(),
            &reference,
            &opts,
        )?)
    })();
    match started {
        Ok(Started::Detached(name)) => {
            writeln!(std::io::stdout(), "{name}")?;
            Ok(0)
        }
        Ok(Started::Exited(code)) => Ok(code),
        Err(e) => {
            eprintln!("berth-img: {e:#}");
            match e.downcast_ref::<berth_img::Error>() {
                Some(berth_img::Error::Command { code, .. }) => Ok(*code),
                _ => Ok(RUN_FAILED),
            }
        }
    }
}

/// `create`: makes the container without starting it; prints its ID.
pub fn create(g: &Global, args: CreateArgs) -> Result<()> {
    let (reference, opts) = args.options(true, false)?;
    if !opts.restart.is_none() && opts.auto_remove {
        bail!("conflicting options: --restart and --rm");
    }
    let store = Store::open(&g.root, Access::Shared)?;
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    let (c, _owner) = cs.create(&reference, &opts)?;
    writeln!(std::io::stdout(), "{}", c.id)?;
    Ok(())
}

/// Runs `f` on each of `names`, printing each name it succeeded for and
/// each error; 1 if any failed.
fn each(names: &[String], mut f: impl FnMut(&str) -> berth_img::Result<()>) -> Result<i32> {
    let out = &mut std::io::stdout().lock();
    let mut code = 0;
    for n in names {
        match f(n) {
            Ok(()) => writeln!(out, "{n}")?,
            Err(e) => {
                eprintln!("berth-img: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

/// The store and its containers, for a command.
fn open(g: &Global) -> Result<Store> {
    Ok(Store::open(&g.root, Access::Shared)?)
}

/// The flags of commands that take containers and nothing else.
#[derive(clap::Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    names: Vec<String>,
}

/// `start`: starts each container again, detached, its writable layer
/// as it was.
pub fn start(g: &Global, args: NamesArgs) -> Result<i32> {
    let store = open(g)?;
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    each(&args.names, |n| cs.start(n))
}

/// The flags of `stop` and `restart`.
#[derive(clap::Args)]
pub struct StopArgs {
    /// Seconds to wait for the stop signal to work before SIGKILL.
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    names: Vec<String>,
}

/// `stop`: prints each name once that container has stopped.
pub fn stop(g: &Global, args: StopArgs) -> Result<i32> {
    let store = open(g)?;
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    each(&args.names, |n| cs.stop(n, Duration::from_secs(args.time)))
}

/// `restart`.
pub fn restart(g: &Global, args: StopArgs) -> Result<i32> {
    let store = open(g)?;
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    each(&args.names, |n| {
        cs.restart(n, Duration::from_secs(args.time))
    })
}

/// The flags of `kill`.
#[derive(clap::Args)]
pub struct KillArgs {
    /// The signal: a name (KILL, SIGHUP) or a number.
    #[arg(short = 's', long = "signal", default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    names: Vec<String>,
}

/// `kill`.
pub fn kill(g: &Global, args: KillArgs) -> Result<i32> {
    containers::parse_signal(&args.signal)?;
    let store = open(g)?;
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    each(&args.names, |n| cs.kill(n, &args.signal))
}

/// `wait`: prints each container's exit code once it is not running.
pub fn wait(g: &Global, args: NamesArgs) -> Result<i32> {
    let store = open(g)?;
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    let out = &mut std::io::stdout().lock();
    let mut code = 0;
    for n in &args.names {
        match cs.wait(n) {
            Ok(c) => {
                writeln!(out, "{c}")?;
                out.flush()?;
            }
            Err(e) => {
                eprintln!("berth-img: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

/// `pause`.
pub fn pause(g: &Global, args: NamesArgs) -> Result<i32> {
    let store = open(g)?;
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    each(&args.names, |n| cs.pause(n))
}

/// `unpause`.
pub fn unpause(g: &Global, args: NamesArgs) -> Result<i32> {
    let store = open(g)?;
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    each(&args.names, |n| cs.unpause(n))
}

/// The flags of `rename`.
#[derive(clap::Args)]
pub struct RenameArgs {
    old: String,
    new: String,
}

/// `rename`.
pub fn rename(g: &Global, args: RenameArgs) -> Result<()> {
    let store = open(g)?;
    Containers::new(&store, g.runtime.as_deref())?.rename(&args.old, &args.new)?;
    Ok(())
}

/// The flags of `rm`.
#[derive(clap::Args)]
pub struct RmArgs {
    #[arg(short, long)]
    force: bool,
    /// Also remove the container's anonymous volumes.
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

/// `rm`: prints each name once that container is gone.
pub fn rm(g: &Global, args: RmArgs) -> Result<i32> {
    let store = open(g)?;
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    each(&args.names, |n| cs.remove(n, args.force, args.volumes))
}

/// The flags of `ps`.
#[derive(clap::Args)]
pub struct PsArgs {
    /// Include stopped containers.
    #[arg(short, long)]
    all: bool,
    /// Only IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Filter: name=, id=, status=, label=KEY[=VALUE], health=, exited=.
    #[arg(short, long)]
    filter: Vec<String>,
    /// A Go template (`{{.Names}}`), `table TEMPLATE`, or `json`.
    #[arg(long)]
    format: Option<String>,
    /// Do not cut IDs and commands.
    #[arg(long)]
    no_trunc: bool,
}

/// docker's default `ps` table.
const PS_FORMAT: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// Whether a `ps` row passes the `-f` filters: values of one key are
/// alternatives, keys must all match.
fn passes(filters: &[(String, String)], c: &Container, row: &Value) -> bool {
    let mut keys: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.dedup();
    keys.iter().all(|key| {
        filters
            .iter()
            .filter(|(k, _)| k == key)
            .any(|(_, v)| match *key {
                "name" => name_matches(v, &c.name),
                "id" => c.id.starts_with(v.as_str()),
                "status" => row["State"] == v.as_str(),
                "label" => match v.split_once('=') {
                    Some((k, want)) => c.config.labels.get(k).is_some_and(|l| l == want),
                    None => c.config.labels.contains_key(v),
                },
                "health" => {
                    let s = row["Status"].as_str().unwrap_or_default();
                    match v.as_str() {
                        "none" => !s.contains("health") && !s.contains("(healthy)"),
                        "starting" => s.contains("(health: starting)"),
                        h => s.contains(&format!("({h})")),
                    }
                }
                "exited" => {
                    row["State"] == "exited"
                        && row["Status"]
                            .as_str()
                            .is_some_and(|s| s.starts_with(&format!("Exited ({v})")))
                }
                _ => false,
            })
    })
}

/// docker matches `name=` as a regular expression against the name; the
/// forms people use: a part of the name, `^start`, `end$`, `^exact$`.
fn name_matches(pattern: &str, name: &str) -> bool {
    let p = pattern.strip_prefix('/').unwrap_or(pattern);
    match (p.strip_prefix('^'), p.strip_suffix('$')) {
        (Some(rest), _) if rest.ends_with('$') => {
            name == rest.trim_start_matches('/').trim_end_matches('$')
        }
        (Some(rest), None) => name.starts_with(rest.trim_start_matches('/')),
        (None, Some(rest)) => name.ends_with(rest),
        _ => name.contains(p),
    }
}

/// `ps`: docker's table, its `--format` and `-q`, `-f`; `--json` (the
/// global flag) keeps berth-img's own listing with docker's
/// `NetworkSettings` and `Mounts`.
pub fn ps(g: &Global, args: PsArgs) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    let store = open(g)?;
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    let mut filters = Vec::new();
    for f in &args.filter {
        let Some((k, v)) = f.split_once('=') else {
            bail!("invalid --filter {f:?}: want KEY=VALUE");
        };
        if !["name", "id", "status", "label", "health", "exited"].contains(&k) {
            bail!("invalid --filter {f:?}: unknown key {k:?}");
        }
        filters.push((k.to_string(), v.to_string()));
    }
    // A status filter asks for stopped containers too, as in docker.
    let all = args.all || filters.iter().any(|(k, v)| k == "status" && v != "running");
    let rows: Vec<(Container, Value)> = cs
        .list_with_status(all)?
        .into_iter()
        .map(|(c, status, state)| {
            let row = views::ps_row(&cs, &c, &status, &state, args.no_trunc);
            (c, row)
        })
        .filter(|(c, row)| passes(&filters, c, row))
        .collect();
    if g.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(c, row)| {
                let sb = cs.sandboxes().load(&c.key).ok().flatten();
                json!({
                    "name": c.name,
                    "id": c.id,
                    "image": c.image,
                    "command": c.command,
                    "created": c.created,
                    "status": row["Status"],
                    "networkMode": c.network_mode,
                    "NetworkSettings": views::network_settings(c, sb.as_ref()),
                    "Mounts": c.mounts,
                })
            })
            .collect();
        output::write_json(out, &list)?;
        return Ok(());
    }
    if args.quiet {
        for (_, row) in &rows {
            writeln!(out, "{}", row["ID"].as_str().unwrap_or_default())?;
        }
        return Ok(());
    }
    let format = match args.format.as_deref() {
        None | Some("table") => PS_FORMAT,
        Some("json") => "{{json .}}",
        Some(f) => f,
    };
    let rows: Vec<Value> = rows.into_iter().map(|(_, r)| r).collect();
    write_formatted(out, format, &views::ps_headers(), &rows)
}

/// Prints `rows` through `format`: a table (header from `headers`,
/// columns aligned as docker's) or one line per row.
pub fn write_formatted(
    out: &mut impl Write,
    format: &str,
    headers: &Value,
    rows: &[Value],
) -> Result<()> {
    let t = Template::parse(format)?;
    let mut lines = Vec::new();
    if t.table {
        lines.push(t.render(headers)?);
    }
    for r in rows {
        lines.push(t.render(r)?);
    }
    if t.table {
        write!(out, "{}", tabwriter(&lines, 10, 3))?;
    } else {
        for l in lines {
            writeln!(out, "{l}")?;
        }
    }
    Ok(())
}

/// The flags of `inspect`.
#[derive(clap::Args)]
pub struct InspectArgs {
    /// Format the output with a Go template (`{{.State.Status}}`).
    #[arg(short, long)]
    format: Option<String>,
    /// container or image (default: a container if one has the name).
    #[arg(long = "type")]
    kind: Option<String>,
    #[arg(required = true)]
    names: Vec<String>,
}

/// `inspect`: containers as docker shows them (a JSON array, or each
/// through `--format`); an image as `berth-img inspect` always has (its
/// manifest and config).
pub fn inspect(g: &Global, args: InspectArgs) -> Result<i32> {
    let out = &mut std::io::stdout().lock();
    let store = open(g)?;
    let kind = args.kind.as_deref();
    if !matches!(kind, None | Some("container") | Some("image")) {
        bail!(
            "invalid --type {:?}: want container or image",
            kind.unwrap_or_default()
        );
    }
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    let template = args.format.as_deref().map(Template::parse).transpose()?;
    let mut docs = Vec::new();
    let mut code = 0;
    for n in &args.names {
        let doc = match (kind, cs.get(n)) {
            (None | Some("container"), Ok(c)) => Ok(views::container(&cs, &c)),
            (Some("container"), Err(e)) => Err(anyhow::Error::from(e)),
            _ => store.inspect(n).map_err(anyhow::Error::from),
        };
        match doc {
            Ok(d) => docs.push(d),
            Err(e) => {
                eprintln!("berth-img: {e:#}");
                code = 1;
            }
        }
    }
    match template {
        Some(t) => {
            for d in &docs {
                writeln!(out, "{}", t.render(d)?)?;
            }
        }
        // An image alone prints as it always has; containers as docker's
        // array.
        None if docs.len() == 1 && kind != Some("container") && cs.get(&args.names[0]).is_err() => {
            output::write_json(out, &docs[0])?;
        }
        None if !docs.is_empty() || code == 0 => output::write_json(out, &docs)?,
        None => writeln!(out, "[]")?,
    }
    Ok(code)
}

/// The flags of `top`.
#[derive(clap::Args)]
pub struct TopArgs {
    name: String,
    /// Options for ps (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_options: Vec<String>,
}

/// `top`: the container's processes as `ps` on the host shows them.
pub fn top(g: &Global, args: TopArgs) -> Result<()> {
    let store = open(g)?;
    let (titles, rows) =
        Containers::new(&store, g.runtime.as_deref())?.top(&args.name, &args.ps_options)?;
    let mut lines = vec![titles.join("\t")];
    lines.extend(rows.iter().map(|r| r.join("\t")));
    write!(std::io::stdout().lock(), "{}", tabwriter(&lines, 20, 3))?;
    Ok(())
}

/// The flags of `stats`.
#[derive(clap::Args)]
pub struct StatsArgs {
    /// Every container, not only those running.
    #[arg(short, long)]
    all: bool,
    /// Print one reading and exit.
    #[arg(long)]
    no_stream: bool,
    /// A Go template (`{{.Name}} {{.MemUsage}}`), `table TEMPLATE`, or
    /// `json`.
    #[arg(long)]
    format: Option<String>,
    /// Do not cut IDs.
    #[arg(long)]
    no_trunc: bool,
    names: Vec<String>,
}

/// `stats`: docker's columns from each container's cgroup, once with
/// `--no-stream`, else refreshed every second.
pub fn stats(g: &Global, args: StatsArgs) -> Result<()> {
    let store = open(g)?;
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    let format = match args.format.as_deref() {
        None | Some("table") => stats::DEFAULT_FORMAT,
        Some("json") => "{{json .}}",
        Some(f) => f,
    };
    Template::parse(format)?;
    let chosen = if args.names.is_empty() {
        cs.list_with_status(args.all)?
            .into_iter()
            .map(|(c, _, _)| c)
            .collect::<Vec<_>>()
    } else {
        args.names
            .iter()
            .map(|n| cs.get(n))
            .collect::<berth_img::Result<Vec<_>>>()?
    };
    let out = &mut std::io::stdout().lock();
    loop {
        let mut rows = stats::rows(&cs, &chosen, Duration::from_secs(1));
        if args.no_trunc {
            for (r, c) in rows.iter_mut().zip(&chosen) {
                r["ID"] = json!(c.id);
            }
        }
        if !args.no_stream {
            // Clear the screen, as docker's live view does.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        write_formatted(out, format, &stats::headers(), &rows)?;
        out.flush()?;
        if args.no_stream {
            return Ok(());
        }
    }
}

/// The flags of `diff`.
#[derive(clap::Args)]
pub struct DiffArgs {
    name: String,
}

/// `diff`: `A`, `C` or `D` and a path for each change in the container.
pub fn diff(g: &Global, args: DiffArgs) -> Result<()> {
    let store = open(g)?;
    let out = &mut std::io::stdout().lock();
    for change in Containers::new(&store, g.runtime.as_deref())?.diff(&args.name)? {
        writeln!(out, "{change}")?;
    }
    Ok(())
}

/// The flags of `port`.
#[derive(clap::Args)]
pub struct PortArgs {
    name: String,
    /// Only this container port: PORT[/tcp|udp].
    port: Option<String>,
}

/// `port`: `80/tcp -> 0.0.0.0:8080` per published port, or the host
/// addresses of one.
pub fn port(g: &Global, args: PortArgs) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    let store = Store::open(&g.root, Access::Shared)?;
    let published = Containers::new(&store, g.runtime.as_deref())?.ports(&args.name)?;
    let host = |p: &PortMapping| {
        format!(
            "{}:{}",
            p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            p.host_port
        )
    };
    match &args.port {
        None => {
            for p in &published {
                writeln!(out, "{}/{} -> {}", p.container_port, p.protocol, host(p))?;
            }
        }
        Some(spec) => {
            let (num, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
            let (Ok(num), Ok(proto)) = (num.parse::<u16>(), proto.parse::<Protocol>()) else {
                bail!("invalid port {spec:?}: want PORT[/tcp|udp]");
            };
            let found: Vec<_> = published
                .iter()
                .filter(|p| p.container_port == num && p.protocol == proto)
                .collect();
            if found.is_empty() {
                bail!("no public port '{num}/{proto}' published for {}", args.name);
            }
            for p in found {
                writeln!(out, "{}", host(p))?;
            }
        }
    }
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
