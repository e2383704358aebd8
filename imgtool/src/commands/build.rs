//! `build`: an image from a Dockerfile.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use berth_img::build::{self, BuildOptions};
use berth_img::bundle::Network;
use berth_img::image::Compression;
use berth_img::store::{Access, Store};

use super::Global;

/// The flags of `build`.
#[derive(clap::Args)]
pub struct BuildArgs {
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
}

/// `build`: prints the image ID and its names (only the ID with `-q`).
pub fn build(g: &Global, args: BuildArgs) -> Result<()> {
    if !matches!(args.progress.as_str(), "plain" | "tty" | "auto" | "quiet") {
        bail!("invalid --progress {:?}: want plain or tty", args.progress);
    }
    let network = match args.network.as_str() {
        "host" | "default" => Network::Host,
        "none" => Network::None,
        other => bail!("invalid --network {other:?}: want host or none"),
    };
    let compression = match args.compression.as_str() {
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        "none" => Compression::None,
        other => bail!("invalid --compression {other:?}: want gzip, zstd or none"),
    };
    let opts = BuildOptions {
        context: args.context,
        dockerfile: args.file,
        tags: args.tags,
        build_args: key_values(&args.build_args, "--build-arg", true)?,
        target: args.target,
        no_cache: args.no_cache,
        platform: args.platform,
        labels: key_values(&args.labels, "--label", false)?,
        network,
        runtime: g.runtime.clone(),
        compression,
        quiet: args.quiet || args.progress == "quiet",
    };
    let store = Store::open(&g.root, Access::Shared)?;
    let (record, names) = build::build(&store, &opts)?;
    let out = &mut std::io::stdout().lock();
    if args.quiet {
        writeln!(out, "{}", record.config)?;
    } else {
        writeln!(out, "Successfully built {}", record.config.short())?;
        for name in names {
            writeln!(out, "Successfully tagged {name}")?;
        }
    }
    Ok(())
}

/// `KEY=VALUE` flags as a map. With `from_env` a bare `KEY` takes its value
/// from our environment and is left out when that does not set it, as
/// docker's `--build-arg KEY` does.
fn key_values(list: &[String], flag: &str, from_env: bool) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
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
            _ => bail!("invalid {flag} {kv:?}: want KEY=VALUE"),
        }
    }
    Ok(out)
}
