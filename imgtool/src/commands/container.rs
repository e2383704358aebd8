//! `run`, `ps`, `logs`, `exec`, `stop`, `rm`, `cp`, `port`: containers,
//! kept in the store, run by `berth`, networked through CNI.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Result};
use berth_img::containers::{self, Container, Containers, RunOptions, Started};
use berth_img::network::ports::{self, PortMapping, Protocol};
use berth_img::network::sandbox::{Mode, Request, Sandbox};
use berth_img::output;
use berth_img::reference::Reference;
use berth_img::store::{Access, Store};
use serde_json::{json, Value};

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
    let mut publish = Vec::new();
    for p in &args.publish {
        publish.extend(ports::parse_publish(p)?);
    }
    for a in &args.network_alias {
        if !berth_img::network::valid_name(a) {
            bail!("invalid --network-alias {a:?}: want [a-zA-Z0-9][a-zA-Z0-9_.-]*");
        }
    }
    let opts = RunOptions {
        name: args.name,
        bundle: args.flags.options(args.args)?,
        mounts: args.flags.mount_requests()?,
        network: Request {
            mode: Mode::parse(&args.flags.net)?,
            publish,
            aliases: args.network_alias,
        },
        publish_all: args.publish_all,
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

/// docker's `NetworkSettings` of a container: `Ports`, the first
/// network's `IPAddress`, and `Networks`.
pub fn network_settings(c: &Container, sb: Option<&Sandbox>) -> Value {
    let empty = Vec::new();
    let attachments = sb.map_or(&empty, |s| &s.attachments);
    let mut networks = serde_json::Map::new();
    for a in attachments {
        let addr = a.address();
        networks.insert(
            a.network.clone(),
            json!({
                "Aliases": a.aliases,
                "NetworkID": a.network_id,
                "EndpointID": "",
                "Gateway": addr.as_ref().and_then(|x| x.gateway).map(|g| g.to_string()).unwrap_or_default(),
                "IPAddress": addr.as_ref().map(|x| x.ip.to_string()).unwrap_or_default(),
                "IPPrefixLen": addr.as_ref().map_or(0, |x| x.prefix_len),
                "MacAddress": addr.as_ref().map(|x| x.mac.clone()).unwrap_or_default(),
            }),
        );
    }
    let first = attachments.first().and_then(|a| a.address());
    json!({
        "Ports": ports::docker_ports(sb.map_or(&[][..], |s| &s.ports), &c.exposed_ports),
        "IPAddress": first.as_ref().map(|x| x.ip.to_string()).unwrap_or_default(),
        "Gateway": first.as_ref().and_then(|x| x.gateway).map(|g| g.to_string()).unwrap_or_default(),
        "MacAddress": first.as_ref().map(|x| x.mac.clone()).unwrap_or_default(),
        "SandboxKey": sb.and_then(|s| s.netns.clone()).unwrap_or_default(),
        "Networks": networks,
    })
}

/// `ps`: a table, or JSON with `--json` (docker's `NetworkSettings` and
/// `Mounts` included).
pub fn ps(g: &Global, args: PsArgs) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    let store = Store::open(&g.root, Access::Shared)?;
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    let listed = cs.list_with_status(args.all)?;
    let sandboxes = cs.sandboxes();
    let sandbox = |c: &Container| sandboxes.load(&c.name).ok().flatten();
    if g.json {
        let list: Vec<_> = listed
            .iter()
            .map(|(c, s)| {
                let sb = sandbox(c);
                json!({
                    "name": c.name,
                    "id": c.id,
                    "image": c.image,
                    "command": c.command,
                    "created": c.created,
                    "status": s.to_string(),
                    "networkMode": c.network_mode,
                    "NetworkSettings": network_settings(c, sb.as_ref()),
                    "Mounts": c.mounts,
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
            let published = sandbox(&c)
                .map(|sb| {
                    sb.ports
                        .iter()
                        .map(PortMapping::to_docker_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            vec![
                c.name,
                c.image,
                format!("\"{command}\""),
                c.created,
                s.to_string(),
                published,
            ]
        })
        .collect();
    let columns = [
        ("NAME", 24),
        ("IMAGE", 40),
        ("COMMAND", 30),
        ("CREATED", 22),
        ("STATUS", 14),
        ("PORTS", 0),
    ];
    output::write_table(out, &columns, &rows)?;
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
    /// Also remove the container's anonymous volumes.
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

/// `rm`: prints each name once that container is gone.
pub fn rm(g: &Global, args: RmArgs) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    let store = Store::open(&g.root, Access::Shared)?;
    let cs = Containers::new(&store, g.runtime.as_deref())?;
    for name in args.names {
        cs.remove(&name, args.force, args.volumes)?;
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
