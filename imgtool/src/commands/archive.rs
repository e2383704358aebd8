//! `commit`, `save`, `load`, `export`, `import`: images and rootfs in and
//! out of tar files.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use berth_img::containers::Containers;
use berth_img::reference::Reference;
use berth_img::store::{Access, Store};
use berth_img::{archive, import};

use super::Global;

/// The flags of `commit`.
#[derive(clap::Args)]
pub struct CommitArgs {
    /// A container (name or ID), or a bundle directory made by `bundle`.
    #[arg(value_name = "CONTAINER|BUNDLE")]
    bundle: PathBuf,
    reference: String,
    #[arg(short, long)]
    message: Option<String>,
}

/// `commit`: prints the new image's ID.
pub fn commit(g: &Global, args: CommitArgs) -> Result<()> {
    let reference: Reference = args.reference.parse()?;
    let store = Store::open(&g.root, Access::Shared)?;
    // docker's form names a container; a path to a bundle wins.
    let bundle = match args.bundle.to_str() {
        Some(name) if !args.bundle.exists() => {
            let cs = Containers::new(&store, g.runtime.as_deref())?;
            cs.bundle_dir(&cs.get(name)?.key)
        }
        _ => args.bundle,
    };
    let record = archive::commit(&store, &bundle, &reference, args.message.as_deref())?;
    writeln!(std::io::stdout(), "{}", record.config)?;
    Ok(())
}

/// The flags of `save`.
#[derive(clap::Args)]
pub struct SaveArgs {
    #[arg(required = true)]
    references: Vec<String>,
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// docker-archive or oci (the archive is both; accepted for docker compatibility).
    #[arg(long, default_value = "docker-archive")]
    format: String,
}

/// `save`: the archive to `-o FILE`, else to stdout unless that is a
/// terminal.
pub fn save(g: &Global, args: SaveArgs) -> Result<()> {
    if !matches!(
        args.format.as_str(),
        "docker-archive" | "oci" | "oci-archive" | "docker"
    ) {
        bail!(
            "invalid --format {:?}: want docker-archive or oci",
            args.format
        );
    }
    let store = Store::open(&g.root, Access::Shared)?;
    let images = args
        .references
        .iter()
        .map(|r| store.lookup(r))
        .collect::<Result<Vec<_>, _>>()?;
    match args.output {
        Some(path) if path != Path::new("-") => {
            write_through_partial(&path, |f| archive::save(&store, &images, f))
        }
        _ => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE");
            }
            archive::save(&store, &images, std::io::stdout().lock())?;
            Ok(())
        }
    }
}

/// Writes the file `path` as `PATH.partial`, renamed to `path` once
/// complete: a save that fails or is interrupted leaves no truncated
/// archive under the name asked for.
fn write_through_partial(
    path: &Path,
    write: impl FnOnce(BufWriter<File>) -> berth_img::Result<()>,
) -> Result<()> {
    let tmp = path.with_extension("partial");
    let f = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    if let Err(e) = write(BufWriter::new(f)) {
        let _ = fs::remove_file(&tmp);
        return Err(e.into());
    }
    fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))
}

/// The flags of `load`.
#[derive(clap::Args)]
pub struct LoadArgs {
    #[arg(short, long)]
    input: Option<PathBuf>,
}

/// `load`: from `-i FILE`, else from stdin; prints each image's name.
pub fn load(g: &Global, args: LoadArgs) -> Result<()> {
    let store = Store::open(&g.root, Access::Shared)?;
    let names = match args.input {
        Some(path) => {
            let f = File::open(&path).with_context(|| format!("open {}", path.display()))?;
            archive::load(&store, BufReader::new(f))?
        }
        None => archive::load(&store, std::io::stdin().lock())?,
    };
    let out = &mut std::io::stdout().lock();
    for name in names {
        writeln!(out, "Loaded image: {name}")?;
    }
    Ok(())
}

/// The flags of `export`.
#[derive(clap::Args)]
pub struct ExportArgs {
    bundle: PathBuf,
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// `export`: the tar to `-o FILE`, else to stdout.
pub fn export(args: ExportArgs) -> Result<()> {
    match args.output {
        Some(path) if path != Path::new("-") => {
            let f = File::create(&path).with_context(|| format!("create {}", path.display()))?;
            archive::export(&args.bundle, BufWriter::new(f))?;
        }
        _ => archive::export(&args.bundle, std::io::stdout().lock())?,
    }
    Ok(())
}

/// The flags of `import`.
#[derive(clap::Args)]
pub struct ImportArgs {
    file: PathBuf,
    reference: String,
    /// Image settings: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, STOPSIGNAL (JSON or shell form).
    #[arg(short, long)]
    change: Vec<String>,
}

/// `import`: prints the new image's ID.
pub fn import(g: &Global, args: ImportArgs) -> Result<()> {
    let reference: Reference = args.reference.parse()?;
    let settings = import::parse_changes(&args.change)?;
    let store = Store::open(&g.root, Access::Shared)?;
    let record = import::import(&store, &args.file, &reference, settings)?;
    writeln!(std::io::stdout(), "{}", record.config)?;
    Ok(())
}
