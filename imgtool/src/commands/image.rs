//! `pull`, `push`, `images`, `inspect`, `tag`, `rmi`, `prune`: images in
//! the store, and to and from registries.

use std::io::Write;

use anyhow::Result;
use berth_img::build::run::{find_runtime, reap_stale};
use berth_img::image::Platform;
use berth_img::output::{self, human_size};
use berth_img::progress::Progress;
use berth_img::reference::Reference;
use berth_img::store::{Access, Store};
use berth_img::{pull, push};

use super::Global;

/// The flags of `pull`.
#[derive(clap::Args)]
pub struct PullArgs {
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
}

/// `pull`: docker's status lines, then the reference (only that with
/// `-q`).
pub fn pull(g: &Global, args: PullArgs) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    let r: Reference = args.reference.parse()?;
    let platform = args
        .platform
        .as_deref()
        .map(Platform::parse)
        .transpose()?
        .unwrap_or_else(Platform::host);
    let store = Store::open(&g.root, Access::Shared)?;
    if !args.quiet {
        writeln!(out, "{}: Pulling from {}", r.manifest_ref(), r.repository)?;
    }
    let record = pull::pull(
        &store,
        &r,
        &pull::PullOptions {
            platform,
            plain_http: args.plain_http,
            progress: Progress::new(args.quiet),
        },
    )?;
    if !args.quiet {
        writeln!(out, "Digest: {}", record.digest)?;
        writeln!(out, "Status: Downloaded image for {r}")?;
    }
    writeln!(out, "{r}")?;
    Ok(())
}

/// The flags of `push`.
#[derive(clap::Args)]
pub struct PushArgs {
    reference: String,
    #[arg(long)]
    plain_http: bool,
    #[arg(short, long)]
    quiet: bool,
}

/// `push`: docker's status lines (only the digest with `-q`).
pub fn push(g: &Global, args: PushArgs) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    let store = Store::open(&g.root, Access::Shared)?;
    let (name, record) = store.lookup(&args.reference)?;
    let target: Reference = name.parse()?;
    if !args.quiet {
        writeln!(out, "The push refers to repository [{}]", target.name())?;
    }
    let report = push::push(
        &store,
        &record,
        &target,
        &push::PushOptions {
            plain_http: args.plain_http,
            progress: Progress::new(args.quiet),
        },
    )?;
    if args.quiet {
        writeln!(out, "{}", record.digest)?;
    } else {
        writeln!(
            out,
            "{}: digest: {} ({} uploaded, {} mounted, {} already present)",
            target.tag.as_deref().unwrap_or("latest"),
            record.digest,
            report.uploaded,
            report.mounted,
            report.existed
        )?;
    }
    Ok(())
}

/// `images`: a table, or JSON with `--json`.
pub fn images(g: &Global) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    let store = Store::open(&g.root, Access::Shared)?;
    let images = store.summaries()?;
    if g.json {
        let list: Vec<_> = images
            .iter()
            .map(|i| {
                serde_json::json!({
                    "name": i.name,
                    "digest": i.record.digest,
                    "id": i.record.config,
                    "created": i.created,
                    "size": i.size,
                })
            })
            .collect();
        output::write_json(out, &list)?;
        return Ok(());
    }
    let mut rows = Vec::new();
    for i in images {
        let r: Reference = i.name.parse()?;
        rows.push(vec![
            r.name(),
            r.tag.unwrap_or_else(|| "<none>".into()),
            i.record.config.short().to_string(),
            i.created,
            human_size(i.size),
        ]);
    }
    let columns = [
        ("REPOSITORY", 50),
        ("TAG", 20),
        ("IMAGE ID", 14),
        ("CREATED", 22),
        ("SIZE", 0),
    ];
    output::write_table(out, &columns, &rows)?;
    Ok(())
}

/// The flags of `tag`.
#[derive(clap::Args)]
pub struct TagArgs {
    source: String,
    target: String,
}

/// `tag`.
pub fn tag(g: &Global, args: TagArgs) -> Result<()> {
    let store = Store::open(&g.root, Access::Shared)?;
    store.tag(&args.source, &args.target)?;
    Ok(())
}

/// The flags of `rmi`.
#[derive(clap::Args)]
pub struct RmiArgs {
    #[arg(required = true)]
    references: Vec<String>,
}

/// `rmi`: untags each name, then prunes what no image or bundle needs.
pub fn rmi(g: &Global, args: RmiArgs) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    let store = Store::open(&g.root, Access::Exclusive)?;
    for r in &args.references {
        let name = store.untag(r)?;
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
    Ok(())
}

/// `prune`.
pub fn prune(g: &Global) -> Result<()> {
    let store = Store::open(&g.root, Access::Exclusive)?;
    // No build runs while prune holds the store: any build container left
    // is a killed build's.
    if let Ok(runtime) = find_runtime(g.runtime.as_deref()) {
        reap_stale(&runtime, &store);
    }
    let report = store.prune()?;
    writeln!(
        std::io::stdout(),
        "Deleted {} blobs and {} layers; reclaimed {}",
        report.blobs,
        report.layers,
        human_size(report.bytes)
    )?;
    Ok(())
}
