//! `berth-img`: flags in, library calls out.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _, Result};
use berth_img::bundle::{self, Network};
use berth_img::image::{Platform, RunConfig};
use berth_img::progress::Progress;
use berth_img::reference::Reference;
use berth_img::store::{Access, ImageRecord, Store};
use berth_img::{auth, import, pull, push, registry::Registry};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth-img",
    version,
    about = "Images from registries into OCI bundles for berth"
)]
struct Cli {
    /// Where images, layers and bundle records are kept.
    #[arg(
        long,
        global = true,
        env = "BERTH_IMG_ROOT",
        default_value = "/var/lib/berth"
    )]
    root: PathBuf,
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
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct BundleFlags {
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
    fn options(&self, args: Vec<String>) -> Result<bundle::Options> {
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

#[derive(Subcommand)]
enum Command {
    /// Pull an image from a registry.
    Pull {
        reference: String,
        /// os/arch[/variant] to pick from a multi-platform image.
        #[arg(long)]
        platform: Option<String>,
        /// Use plain HTTP (loopback registries fall back to it anyway).
        #[arg(long)]
        plain_http: bool,
        /// Print only the reference.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Push an image to its registry.
    Push {
        reference: String,
        #[arg(long)]
        plain_http: bool,
        #[arg(short, long)]
        quiet: bool,
    },
    /// List images.
    Images,
    /// Print an image's manifest and config as JSON.
    Inspect { reference: String },
    /// Give an image another name.
    Tag { source: String, target: String },
    /// Remove image names, and the content no other image needs.
    Rmi {
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Delete every blob and layer no image or bundle needs.
    Prune,
    /// Store credentials for a registry.
    Login {
        registry: String,
        #[arg(short, long)]
        username: Option<String>,
        #[arg(short, long)]
        password: Option<String>,
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        plain_http: bool,
    },
    /// Remove stored credentials for a registry.
    Logout { registry: String },
    /// Make an OCI bundle (DIR/config.json, DIR/rootfs) from an image.
    Bundle {
        reference: String,
        dir: PathBuf,
        #[command(flatten)]
        flags: Box<BundleFlags>,
        /// Replace the image's Cmd.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Unmount and remove a bundle made by `bundle`.
    RmBundle { dir: PathBuf },
    /// Make an image from a bundle's changes (like docker commit).
    Commit {
        bundle: PathBuf,
        reference: String,
        #[arg(short, long)]
        message: Option<String>,
    },
    /// Write images to a tar (OCI layout and docker-archive in one).
    Save {
        #[arg(required = true)]
        references: Vec<String>,
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// docker-archive or oci (the archive is both; accepted for docker compatibility).
        #[arg(long, default_value = "docker-archive")]
        format: String,
    },
    /// Load images from a tar made by save, docker save or an OCI layout.
    Load {
        #[arg(short, long)]
        input: Option<PathBuf>,
    },
    /// Write a bundle's flattened rootfs as a tar.
    Export {
        bundle: PathBuf,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Run a container from an image (pulled if missing).
    Run {
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
    },
    /// List containers.
    Ps {
        /// Include stopped containers.
        #[arg(short, long)]
        all: bool,
    },
    /// Print a detached container's output.
    Logs {
        #[arg(short, long)]
        follow: bool,
        name: String,
    },
    /// Run a command in a running container.
    Exec {
        #[arg(short, long)]
        interactive: bool,
        #[arg(short, long)]
        tty: bool,
        name: String,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Stop containers: their StopSignal, then SIGKILL.
    Stop {
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove containers and their bundles.
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Copy files between a container (NAME:PATH) and the host.
    Cp { source: String, destination: String },
    /// Build an image from a Dockerfile.
    Build {
        /// Name the image (repeatable).
        #[arg(short = 't', long = "tag")]
        tags: Vec<String>,
        /// The Dockerfile (default CONTEXT/Dockerfile).
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// KEY=VALUE, or KEY to take the value from the environment.
        #[arg(long = "build-arg")]
        build_args: Vec<String>,
        /// Build up to this stage.
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        no_cache: bool,
        #[arg(long)]
        platform: Option<String>,
        #[arg(long = "label")]
        labels: Vec<String>,
        /// plain or tty (both print one line per step).
        #[arg(long, default_value = "plain")]
        progress: String,
        /// Network of RUN steps: host or none.
        #[arg(long, default_value = "host")]
        network: String,
        /// Layer compression: gzip, zstd or none.
        #[arg(long, default_value = "gzip")]
        compression: String,
        /// Print only the image ID.
        #[arg(short, long)]
        quiet: bool,
        context: PathBuf,
    },
    /// Make a one-layer image from a rootfs tar (plain, gzip or zstd).
    Import {
        file: PathBuf,
        reference: String,
        /// Image settings: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, STOPSIGNAL (JSON or shell form).
        #[arg(short, long)]
        change: Vec<String>,
    },
}

fn parse_ref(s: &str) -> Result<Reference> {
    Ok(s.parse::<Reference>()?)
}

/// The record for a reference the user typed, normalised.
fn lookup(store: &Store, s: &str) -> Result<(String, ImageRecord)> {
    let r = parse_ref(s)?;
    let name = r.to_string();
    match store.image(&name)? {
        Some(rec) => Ok((name, rec)),
        None => Err(berth_img::Error::UnknownImage(name).into()),
    }
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
    if let Err(e) = init_logging(&cli.log_level).and_then(|()| run(cli)) {
        eprintln!("berth-img: {e:#}");
        // A failed RUN step's status is the build's.
        let code = match e.downcast_ref::<berth_img::Error>() {
            Some(berth_img::Error::RunFailed { code, .. }) if *code > 0 && *code < 256 => *code,
            _ => 1,
        };
        std::process::exit(code);
    }
}

fn key_values(
    list: &[String],
    what: &str,
    from_env: bool,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for kv in list {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            None if from_env && !kv.is_empty() => {
                if let Ok(v) = std::env::var(kv) {
                    out.insert(kv.clone(), v);
                }
            }
            _ => bail!("invalid {what} {kv:?}: want KEY=VALUE"),
        }
    }
    Ok(out)
}

fn run(cli: Cli) -> Result<()> {
    let root = &cli.root;
    let out = &mut std::io::stdout().lock();
    match cli.command {
        Command::Pull {
            reference,
            platform,
            plain_http,
            quiet,
        } => {
            let r = parse_ref(&reference)?;
            let platform = platform
                .as_deref()
                .map(Platform::parse)
                .transpose()?
                .unwrap_or_else(Platform::host);
            let store = Store::open(root, Access::Shared)?;
            if !quiet {
                writeln!(out, "{}: Pulling from {}", r.manifest_ref(), r.repository)?;
            }
            let rec = pull::pull(
                &store,
                &r,
                &pull::PullOptions {
                    platform,
                    plain_http,
                    progress: Progress::new(quiet),
                },
            )?;
            if !quiet {
                writeln!(out, "Digest: {}", rec.digest)?;
                writeln!(out, "Status: Downloaded image for {r}")?;
            }
            writeln!(out, "{r}")?;
        }
        Command::Push {
            reference,
            plain_http,
            quiet,
        } => {
            let store = Store::open(root, Access::Shared)?;
            let (name, rec) = lookup(&store, &reference)?;
            let target = parse_ref(&name)?;
            if !quiet {
                writeln!(out, "The push refers to repository [{}]", target.name())?;
            }
            let report = push::push(
                &store,
                &rec,
                &target,
                &push::PushOptions {
                    plain_http,
                    progress: Progress::new(quiet),
                },
            )?;
            if !quiet {
                writeln!(
                    out,
                    "{}: digest: {} ({} uploaded, {} mounted, {} already present)",
                    target.tag.as_deref().unwrap_or("latest"),
                    rec.digest,
                    report.uploaded,
                    report.mounted,
                    report.existed
                )?;
            } else {
                writeln!(out, "{}", rec.digest)?;
            }
        }
        Command::Images => {
            let store = Store::open(root, Access::Shared)?;
            let mut rows = Vec::new();
            for (name, rec) in store.images()? {
                let (manifest, config) = store.load(&rec)?;
                rows.push((
                    name,
                    rec,
                    store.image_size(&manifest),
                    config.created.unwrap_or_default(),
                ));
            }
            if cli.json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(name, rec, size, created)| {
                        serde_json::json!({"name": name, "digest": rec.digest, "id": rec.config, "created": created, "size": size})
                    })
                    .collect();
                serde_json::to_writer_pretty(&mut *out, &list)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{:<50} {:<20} {:<14} {:<22} SIZE",
                    "REPOSITORY", "TAG", "IMAGE ID", "CREATED"
                )?;
                for (name, rec, size, created) in rows {
                    let r = parse_ref(&name)?;
                    let tag = r.tag.clone().unwrap_or_else(|| "<none>".into());
                    writeln!(
                        out,
                        "{:<50} {:<20} {:<14} {:<22} {}",
                        r.name(),
                        tag,
                        rec.config.short(),
                        created,
                        human_size(size)
                    )?;
                }
            }
        }
        Command::Inspect { reference } => {
            let store = Store::open(root, Access::Shared)?;
            let (name, rec) = lookup(&store, &reference)?;
            let manifest: serde_json::Value =
                serde_json::from_slice(&store.read_blob(&rec.digest)?)?;
            let config: serde_json::Value = serde_json::from_slice(&store.read_blob(&rec.config)?)?;
            let doc = serde_json::json!({"name": name, "digest": rec.digest, "manifest": manifest, "config": config});
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)?;
        }
        Command::Tag { source, target } => {
            let store = Store::open(root, Access::Shared)?;
            let (_, rec) = lookup(&store, &source)?;
            let t = parse_ref(&target)?;
            if t.digest.is_some() {
                bail!("invalid tag {target:?}: a tag cannot carry a digest");
            }
            store.set_image(
                &t.to_string(),
                ImageRecord {
                    updated: pull::now_rfc3339(),
                    ..rec
                },
            )?;
        }
        Command::Rmi { references } => {
            let store = Store::open(root, Access::Exclusive)?;
            for r in &references {
                let name = parse_ref(r)?.to_string();
                if !store.remove_image(&name)? {
                    bail!("No such image: {name}");
                }
                writeln!(out, "Untagged: {name}")?;
            }
            let report = store.prune()?;
            if report.blobs > 0 {
                writeln!(
                    out,
                    "Deleted: {} blobs, {} layers",
                    report.blobs, report.layers
                )?;
            }
        }
        Command::Prune => {
            let store = Store::open(root, Access::Exclusive)?;
            // No build runs while prune holds the store: any build
            // container left is a killed build's.
            if let Ok(runtime) = berth_img::build::run::find_runtime(cli.runtime.as_deref()) {
                berth_img::build::run::reap_stale(&runtime, &store);
            }
            let report = store.prune()?;
            writeln!(
                out,
                "Deleted {} blobs and {} layers; reclaimed {}",
                report.blobs,
                report.layers,
                human_size(report.bytes)
            )?;
        }
        Command::Login {
            registry,
            username,
            password,
            password_stdin,
            plain_http,
        } => {
            let username = username.ok_or_else(|| anyhow!("username required: use -u USER"))?;
            let password = match (password, password_stdin) {
                (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
                (Some(p), false) => p,
                (None, true) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .context("read password from stdin")?;
                    line.trim_end_matches(['\n', '\r']).to_string()
                }
                (None, false) => bail!("password required: use --password-stdin"),
            };
            let host = registry_host(&registry)?;
            let creds = auth::Credentials { username, password };
            let api = if host == berth_img::reference::DOCKER_HUB {
                "registry-1.docker.io"
            } else {
                host.as_str()
            };
            Registry::new(api, Some(creds.clone()), plain_http).check_login()?;
            auth::store_in(&auth::auth_file(), &host, &creds)?;
            writeln!(out, "Login Succeeded")?;
        }
        Command::Logout { registry } => {
            let host = registry_host(&registry)?;
            if !auth::remove_in(&auth::auth_file(), &host)? {
                bail!("not logged in to {host}");
            }
            writeln!(out, "Removing login credentials for {host}")?;
        }
        Command::Bundle {
            reference,
            dir,
            flags,
            args,
        } => {
            let opts = flags.options(args)?;
            let store = Store::open(root, Access::Shared)?;
            let r = parse_ref(&reference)?;
            let name = r.to_string();
            let rec = pull::ensure(&store, &r, Platform::host(), false)?;
            let dir = bundle::create(&store, &name, &rec, &dir, &opts)?;
            writeln!(out, "{}", dir.display())?;
        }
        Command::RmBundle { dir } => {
            let meta = bundle::metadata(&dir)?;
            let store = Store::open(&meta.store, Access::Shared).ok();
            bundle::remove(store.as_ref(), &dir)?;
        }
        Command::Commit {
            bundle,
            reference,
            message,
        } => {
            let r = parse_ref(&reference)?;
            let store = Store::open(root, Access::Shared)?;
            let rec = berth_img::archive::commit(&store, &bundle, &r, message.as_deref())?;
            writeln!(out, "{}", rec.config)?;
        }
        Command::Save {
            references,
            output,
            format,
        } => {
            if !matches!(
                format.as_str(),
                "docker-archive" | "oci" | "oci-archive" | "docker"
            ) {
                bail!("invalid --format {format:?}: want docker-archive or oci");
            }
            let store = Store::open(root, Access::Shared)?;
            let images = references
                .iter()
                .map(|r| lookup(&store, r))
                .collect::<Result<Vec<_>>>()?;
            match output {
                Some(p) if p != std::path::Path::new("-") => {
                    let tmp = p.with_extension("partial");
                    let f = std::fs::File::create(&tmp)
                        .with_context(|| format!("create {}", tmp.display()))?;
                    let saved =
                        berth_img::archive::save(&store, &images, std::io::BufWriter::new(f));
                    if let Err(e) = saved {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(e.into());
                    }
                    std::fs::rename(&tmp, &p)
                        .with_context(|| format!("rename to {}", p.display()))?;
                }
                _ => {
                    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                        bail!("refusing to write an archive to a terminal: use -o FILE");
                    }
                    berth_img::archive::save(&store, &images, &mut *out)?;
                }
            }
        }
        Command::Load { input } => {
            let store = Store::open(root, Access::Shared)?;
            let names = match input {
                Some(p) => {
                    let f =
                        std::fs::File::open(&p).with_context(|| format!("open {}", p.display()))?;
                    berth_img::archive::load(&store, std::io::BufReader::new(f))?
                }
                None => berth_img::archive::load(&store, std::io::stdin().lock())?,
            };
            for n in names {
                writeln!(out, "Loaded image: {n}")?;
            }
        }
        Command::Export { bundle, output } => match output {
            Some(p) if p != std::path::Path::new("-") => {
                let f =
                    std::fs::File::create(&p).with_context(|| format!("create {}", p.display()))?;
                berth_img::archive::export(&bundle, std::io::BufWriter::new(f))?;
            }
            _ => berth_img::archive::export(&bundle, &mut *out)?,
        },
        Command::Run {
            rm,
            detach,
            name,
            interactive,
            flags,
            reference,
            args,
        } => {
            if rm && detach {
                bail!("--rm and --detach cannot be combined");
            }
            let opts = flags.options(args)?;
            let store = Store::open(root, Access::Shared)?;
            let r = parse_ref(&reference)?;
            let image = r.to_string();
            let rec = pull::ensure(&store, &r, Platform::host(), false)?;
            let cs = containers(&store, cli.runtime.as_deref())?;
            let c = cs.create(name.as_deref(), &image, &rec, &opts, detach, rm)?;
            if detach {
                let shim = find_sibling("containerd-shim-berth-v2")?;
                if let Err(e) = cs.run_detached(&c, &shim) {
                    let _ = cs.remove(&c.name, true);
                    return Err(e.into());
                }
                writeln!(out, "{}", c.name)?;
            } else {
                let _ = interactive;
                let code = cs.run_foreground(&c)?;
                if rm {
                    cs.remove(&c.name, true)?;
                }
                out.flush()?;
                std::process::exit(code);
            }
        }
        Command::Ps { all } => {
            let store = Store::open(root, Access::Shared)?;
            let cs = containers(&store, cli.runtime.as_deref())?;
            let mut rows = Vec::new();
            for c in cs.list()? {
                let status = cs.status(&c.name);
                if all || !matches!(status, berth_img::containers::Status::Exited(_)) {
                    rows.push((c, status));
                }
            }
            if cli.json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(c, s)| serde_json::json!({"name": c.name, "image": c.image, "command": c.command, "created": c.created, "status": s.to_string()}))
                    .collect();
                serde_json::to_writer_pretty(&mut *out, &list)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{:<24} {:<40} {:<30} {:<22} STATUS",
                    "NAME", "IMAGE", "COMMAND", "CREATED"
                )?;
                for (c, s) in rows {
                    let mut cmd = c.command.join(" ");
                    if cmd.len() > 28 {
                        cmd.truncate(27);
                        cmd.push('…');
                    }
                    writeln!(
                        out,
                        "{:<24} {:<40} {:<30} {:<22} {s}",
                        c.name,
                        c.image,
                        format!("\"{cmd}\""),
                        c.created
                    )?;
                }
            }
        }
        Command::Logs { follow, name } => {
            let store = Store::open(root, Access::Shared)?;
            let cs = containers(&store, cli.runtime.as_deref())?;
            cs.get(&name)?;
            let log = cs.log_path(&name);
            let mut err = std::io::stderr().lock();
            let mut pos = berth_img::containers::print_log(&log, 0, &mut *out, &mut err)?;
            while follow && !matches!(cs.status(&name), berth_img::containers::Status::Exited(_)) {
                out.flush()?;
                std::thread::sleep(std::time::Duration::from_millis(100));
                pos = berth_img::containers::print_log(&log, pos, &mut *out, &mut err)?;
            }
            if follow {
                berth_img::containers::print_log(&log, pos, &mut *out, &mut err)?;
            }
        }
        Command::Exec {
            interactive,
            tty,
            name,
            command,
        } => {
            let store = Store::open(root, Access::Shared)?;
            let cs = containers(&store, cli.runtime.as_deref())?;
            cs.get(&name)?;
            let code = cs.exec(&name, tty, interactive, &command)?;
            out.flush()?;
            std::process::exit(code);
        }
        Command::Stop { time, names } => {
            let store = Store::open(root, Access::Shared)?;
            let cs = containers(&store, cli.runtime.as_deref())?;
            for n in names {
                cs.stop(&n, std::time::Duration::from_secs(time))?;
                writeln!(out, "{n}")?;
            }
        }
        Command::Rm { force, names } => {
            let store = Store::open(root, Access::Shared)?;
            let cs = containers(&store, cli.runtime.as_deref())?;
            for n in names {
                cs.remove(&n, force)?;
                writeln!(out, "{n}")?;
            }
        }
        Command::Cp {
            source,
            destination,
        } => {
            let store = Store::open(root, Access::Shared)?;
            let cs = containers(&store, cli.runtime.as_deref())?;
            cp(&cs, &source, &destination)?;
        }
        Command::Build {
            tags,
            file,
            build_args,
            target,
            no_cache,
            platform,
            labels,
            progress,
            network,
            compression,
            quiet,
            context,
        } => {
            if !matches!(progress.as_str(), "plain" | "tty" | "auto" | "quiet") {
                bail!("invalid --progress {progress:?}: want plain or tty");
            }
            let network = match network.as_str() {
                "host" | "default" => Network::Host,
                "none" => Network::None,
                other => bail!("invalid --network {other:?}: want host or none"),
            };
            let compression = match compression.as_str() {
                "gzip" => berth_img::image::Compression::Gzip,
                "zstd" => berth_img::image::Compression::Zstd,
                "none" => berth_img::image::Compression::None,
                other => bail!("invalid --compression {other:?}: want gzip, zstd or none"),
            };
            let opts = berth_img::build::BuildOptions {
                context,
                dockerfile: file,
                tags,
                build_args: key_values(&build_args, "--build-arg", true)?,
                target,
                no_cache,
                platform,
                labels: key_values(&labels, "--label", false)?,
                network,
                runtime: cli.runtime.clone(),
                compression,
                quiet: quiet || progress == "quiet",
            };
            let store = Store::open(root, Access::Shared)?;
            let (rec, names) = berth_img::build::build(&store, &opts)?;
            if quiet {
                writeln!(out, "{}", rec.config)?;
            } else {
                writeln!(out, "Successfully built {}", rec.config.short())?;
                for n in names {
                    writeln!(out, "Successfully tagged {n}")?;
                }
            }
        }
        Command::Import {
            file,
            reference,
            change,
        } => {
            let r = parse_ref(&reference)?;
            let run = changes(&change)?;
            let store = Store::open(root, Access::Shared)?;
            let rec = import::import(&store, &file, &r, run)?;
            writeln!(out, "{}", rec.config)?;
        }
    }
    Ok(())
}

/// A registry given to login/logout: a host, or a URL docker-style.
fn registry_host(s: &str) -> Result<String> {
    let t = s
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let t = t.split('/').next().unwrap_or("");
    if t.is_empty() {
        bail!("invalid registry {s:?}");
    }
    Ok(match t {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => {
            berth_img::reference::DOCKER_HUB.into()
        }
        other => other.to_string(),
    })
}

/// `--change` lines for `import` (a subset of Dockerfile instructions).
fn changes(lines: &[String]) -> Result<RunConfig> {
    let mut rc = RunConfig::default();
    for line in lines {
        let (kw, rest) = line
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((line.trim(), ""));
        let rest = rest.trim();
        let list = || -> Vec<String> {
            serde_json::from_str::<Vec<String>>(rest)
                .unwrap_or_else(|_| vec!["/bin/sh".into(), "-c".into(), rest.into()])
        };
        match kw.to_ascii_uppercase().as_str() {
            "CMD" => rc.cmd = Some(list()),
            "ENTRYPOINT" => rc.entrypoint = Some(list()),
            "ENV" => {
                let kv = rest
                    .split_once('=')
                    .or_else(|| rest.split_once(' '))
                    .ok_or_else(|| anyhow!("--change {line:?}: want ENV KEY=VALUE"))?;
                rc.env
                    .get_or_insert_with(Vec::new)
                    .push(format!("{}={}", kv.0, kv.1.trim()));
            }
            "WORKDIR" => rc.working_dir = Some(rest.into()),
            "USER" => rc.user = Some(rest.into()),
            "STOPSIGNAL" => rc.stop_signal = Some(rest.into()),
            "EXPOSE" => {
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    };
                    rc.exposed_ports
                        .get_or_insert_with(Default::default)
                        .insert(p, serde_json::json!({}));
                }
            }
            "LABEL" => {
                let (k, v) = rest
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--change {line:?}: want LABEL KEY=VALUE"))?;
                rc.labels
                    .get_or_insert_with(Default::default)
                    .insert(k.into(), v.trim_matches('"').into());
            }
            other => bail!("--change {line:?}: unsupported instruction {other}"),
        }
    }
    Ok(rc)
}

fn human_size(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.2}GB", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.1}MB", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1}kB", f / 1e3)
    } else {
        format!("{n}B")
    }
}

/// A program shipped next to berth-img, else on PATH.
fn find_sibling(name: &str) -> Result<PathBuf> {
    if let Ok(me) = std::env::current_exe() {
        let p = me.with_file_name(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("{name} not found next to berth-img or on PATH"))
}

fn containers<'a>(
    store: &'a Store,
    runtime: Option<&std::path::Path>,
) -> Result<berth_img::containers::Containers<'a>> {
    Ok(berth_img::containers::Containers {
        store,
        runtime: berth_img::build::run::find_runtime(runtime)?,
    })
}

/// `NAME:PATH` (a container path) or a host path.
fn split_container_path(s: &str) -> Option<(&str, &str)> {
    let (name, path) = s.split_once(':')?;
    (!name.is_empty() && !name.contains('/')).then_some((name, path))
}

/// docker cp: a file or directory between the host and a container's
/// rootfs; container paths resolve inside the rootfs.
fn cp(cs: &berth_img::containers::Containers<'_>, source: &str, destination: &str) -> Result<()> {
    use berth_img::build::copy::{copy, CopyOptions, Source};
    let (src_root, src_rel, dst_root, dst) = match (
        split_container_path(source),
        split_container_path(destination),
    ) {
        (Some((name, path)), None) => (
            cs.rootfs(name)?,
            path.to_string(),
            PathBuf::from("/"),
            destination.to_string(),
        ),
        (None, Some((name, path))) => (
            "/".into(),
            source.to_string(),
            cs.rootfs(name)?,
            path.to_string(),
        ),
        _ => bail!("cp: exactly one of SOURCE and DESTINATION must be NAME:PATH"),
    };
    let dst = if dst.starts_with('/') {
        dst
    } else if dst_root == std::path::Path::new("/") {
        std::env::current_dir()?
            .join(&dst)
            .to_string_lossy()
            .into_owned()
    } else {
        format!("/{dst}")
    };
    let src_abs = if src_rel.starts_with('/') || src_root != std::path::Path::new("/") {
        src_rel.clone()
    } else {
        std::env::current_dir()?
            .join(&src_rel)
            .to_string_lossy()
            .into_owned()
    };
    let rel = berth_img::inroot::clean(std::path::Path::new(&src_abs));
    let full = src_root.join(&rel);
    let is_dir = std::fs::metadata(&full)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    // docker cp copies a directory itself into an existing directory.
    let dst_path = dst_root.join(berth_img::inroot::clean(std::path::Path::new(&dst)));
    let dst = if is_dir && dst_path.is_dir() {
        format!(
            "{}/{}",
            dst.trim_end_matches('/'),
            rel.file_name().unwrap_or_default().to_string_lossy()
        )
    } else {
        dst
    };
    let source = Source {
        root: src_root,
        ignore: None,
        label: "container or host".into(),
    };
    let rels = source.resolve(&rel.to_string_lossy())?;
    copy(
        &source,
        &rels,
        &dst_root,
        &dst,
        &CopyOptions {
            uid: 0,
            gid: 0,
            chmod: None,
        },
    )?;
    Ok(())
}
