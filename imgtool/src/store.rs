//! The content-addressed store under `--root`:
//!
//! ```text
//! ROOT/lock                 shared by every command, exclusive for prune
//! ROOT/blobs/sha256/HEX     verified blobs: manifests, configs, layer archives
//! ROOT/ingest/sha256-HEX    downloads in progress; flock'd by their writer,
//!                           kept across interruptions so a pull resumes
//! ROOT/layers/sha256-HEX    layers unpacked for overlayfs, by diff ID
//! ROOT/images.json          reference -> image, rewritten by rename under
//!                           ROOT/images.lock
//! ROOT/bundles/HASH.json    bundles made from the store (roots for prune)
//! ROOT/tmp/                 scratch space on the same filesystem
//! ROOT/containers/NAME/      containers (`crate::containers`)
//! ROOT/networks/, ROOT/netns/  networks and pinned namespaces (`crate::network`)
//! ROOT/volumes/              volumes (`crate::volume`)
//! ```
//!
//! Nothing enters `blobs/` or `layers/` before it is verified and complete:
//! both are filled by rename, so a crash leaves only `ingest/` and `tmp/`
//! debris that the next pull resumes or prune removes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::digest::{verify_bytes, Digest};
use crate::error::{Context, Error, Result};
use crate::image::{ImageConfig, Manifest, ManifestDoc};
use crate::reference::Reference;

/// What `images.json` records for one reference.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    /// The image manifest's digest (of one platform).
    pub digest: Digest,
    pub media_type: String,
    pub config: Digest,
    /// The index the manifest was chosen from, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
    /// When this reference was last written (RFC 3339).
    pub updated: String,
}

#[derive(Default, Serialize, Deserialize)]
struct ImagesFile {
    images: BTreeMap<String, ImageRecord>,
}

/// A bundle made from the store; its layers must outlive it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleRecord {
    pub dir: PathBuf,
    pub image: String,
    pub manifest: Digest,
    pub layers: Vec<Digest>,
}

pub struct Store {
    root: PathBuf,
    _lock: Flock<File>,
}

/// How a command holds the store: everything shares it, prune owns it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Shared,
    Exclusive,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name for scratch files that no other process or thread picks.
pub fn unique_name(prefix: &str) -> String {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}{}-{n}-{nanos:x}", std::process::id())
}

/// Writes `data` to `path` by write-then-rename, so readers see the old or
/// the new content, never a mix.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(unique_name(".tmp-"));
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write()
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
        .context(|| format!("write {}", path.display()))
}

/// Opens (creating, 0600) and flocks `path`.
pub(crate) fn lock_file(path: &Path, arg: FlockArg) -> Result<Flock<File>> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .context(|| format!("open {}", path.display()))?;
    Flock::lock(f, arg)
        .map_err(|(_, e)| e)
        .context(|| format!("lock {}", path.display()))
}

/// An exclusive hold on a blob's ingest file.
pub struct Ingest {
    pub path: PathBuf,
    pub file: Flock<File>,
}

impl Store {
    /// Opens (creating) the store at `root`. Everything in it is private
    /// to root: unpacked layers and container rootfs hold the images'
    /// setuid binaries and device nodes, which other users must not reach
    /// (docker keeps its data root 0710 for the same reason). A `root`
    /// that already exists keeps its mode; the store's own directories in
    /// it are made 0700.
    pub fn open(root: &Path, access: Access) -> Result<Store> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .context(|| format!("create {}", root.display()))?;
        for d in [
            "blobs/sha256",
            "blobs/sha512",
            "ingest",
            "layers",
            "bundles",
            "tmp",
            "containers",
            "build-cache",
            "build-runtime",
            "networks",
            "netns",
            "volumes",
        ] {
            let p = root.join(d);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .context(|| format!("create {}", p.display()))?;
            let top = root.join(d.split('/').next().unwrap_or(d));
            let private = fs::Permissions::from_mode(0o700);
            if fs::symlink_metadata(&top).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
                fs::set_permissions(&top, private)
                    .context(|| format!("chmod {}", top.display()))?;
            }
        }
        let arg = match access {
            Access::Shared => FlockArg::LockShared,
            Access::Exclusive => FlockArg::LockExclusive,
        };
        let lock = lock_file(&root.join("lock"), arg)?;
        Ok(Store {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm_name())
            .join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).exists()
    }

    pub fn blob_size(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(d)).ok().map(|m| m.len())
    }

    /// Reads a small blob (a manifest or config) and checks its digest again:
    /// they are cheap to verify and everything is decided from them.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(d);
        let data = fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(format!("blob {d}"))
            } else {
                Error::Io {
                    context: format!("read {}", p.display()),
                    source: e,
                }
            }
        })?;
        verify_bytes(&data, d, None)?;
        Ok(data)
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let p = self.blob_path(d);
        File::open(&p).context(|| format!("open {}", p.display()))
    }

    /// Stores `data` under its sha256 digest.
    pub fn put_blob(&self, data: &[u8]) -> Result<Digest> {
        let d = Digest::sha256_of(data);
        if !self.has_blob(&d) {
            atomic_write(&self.blob_path(&d), data)?;
        }
        Ok(d)
    }

    /// Stores `data`, which must have digest `expected`.
    pub fn put_verified(&self, data: &[u8], expected: &Digest, size: Option<u64>) -> Result<()> {
        verify_bytes(data, expected, size)?;
        if !self.has_blob(expected) {
            atomic_write(&self.blob_path(expected), data)?;
        }
        Ok(())
    }

    /// Takes the ingest file for `d`, waiting while another process or
    /// thread writes it. `None` when the blob arrived meanwhile.
    pub fn ingest(&self, d: &Digest) -> Result<Option<Ingest>> {
        if self.has_blob(d) {
            return Ok(None);
        }
        let path = self
            .root
            .join("ingest")
            .join(format!("{}-{}", d.algorithm_name(), d.hex()));
        let file = lock_file(&path, FlockArg::LockExclusive)?;
        if self.has_blob(d) {
            return Ok(None);
        }
        Ok(Some(Ingest { path, file }))
    }

    /// Moves a complete, verified ingest file into `blobs/`.
    pub fn commit_ingest(&self, ingest: &Ingest, d: &Digest) -> Result<()> {
        ingest
            .file
            .sync_all()
            .context(|| format!("sync {}", ingest.path.display()))?;
        let target = self.blob_path(d);
        fs::rename(&ingest.path, &target).context(|| format!("rename into {}", target.display()))
    }

    /// Forgets a partial download that turned out to be wrong.
    pub fn discard_ingest(&self, ingest: &Ingest) {
        let _ = fs::remove_file(&ingest.path);
    }

    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root
            .join("layers")
            .join(format!("{}-{}", diff_id.algorithm_name(), diff_id.hex()))
    }

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).is_dir()
    }

    /// A fresh directory to unpack a layer into before `commit_layer`.
    pub fn new_layer_tmp(&self) -> Result<PathBuf> {
        let p = self.root.join("layers").join(unique_name(".tmp-"));
        fs::create_dir(&p).context(|| format!("create {}", p.display()))?;
        Ok(p)
    }

    /// Publishes an unpacked layer; if another process won the race, its
    /// copy is identical (same diff ID) and ours is dropped.
    pub fn commit_layer(&self, tmp: &Path, diff_id: &Digest) -> Result<()> {
        let target = self.layer_dir(diff_id);
        match fs::rename(tmp, &target) {
            Ok(()) => Ok(()),
            Err(e) if target.is_dir() => {
                tracing::debug!("layer {diff_id} appeared meanwhile ({e})");
                remove_tree(tmp);
                Ok(())
            }
            Err(e) => Err(e).context(|| format!("rename into {}", target.display())),
        }
    }

    fn images_lock(&self) -> Result<Flock<File>> {
        lock_file(&self.root.join("images.lock"), FlockArg::LockExclusive)
    }

    fn read_images(&self) -> Result<ImagesFile> {
        let p = self.root.join("images.json");
        match fs::read(&p) {
            Ok(data) => serde_json::from_slice(&data)
                .map_err(|e| Error::Path(p.clone(), format!("corrupt image index: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ImagesFile::default()),
            Err(e) => Err(e).context(|| format!("read {}", p.display())),
        }
    }

    fn write_images(&self, f: &ImagesFile) -> Result<()> {
        let data = serde_json::to_vec_pretty(f).expect("image index serializes");
        atomic_write(&self.root.join("images.json"), &data)
    }

    /// Every reference, sorted.
    pub fn images(&self) -> Result<BTreeMap<String, ImageRecord>> {
        Ok(self.read_images()?.images)
    }

    pub fn image(&self, reference: &str) -> Result<Option<ImageRecord>> {
        Ok(self.read_images()?.images.remove(reference))
    }

    pub fn set_image(&self, reference: &str, record: ImageRecord) -> Result<()> {
        let _l = self.images_lock()?;
        let mut f = self.read_images()?;
        f.images.insert(reference.to_string(), record);
        self.write_images(&f)
    }

    /// Removes a reference; false when it was not there.
    pub fn remove_image(&self, reference: &str) -> Result<bool> {
        let _l = self.images_lock()?;
        let mut f = self.read_images()?;
        let found = f.images.remove(reference).is_some();
        if found {
            self.write_images(&f)?;
        }
        Ok(found)
    }

    /// The image a user named (`busybox`), with its normalised name
    /// (`docker.io/library/busybox:latest`).
    pub fn lookup(&self, reference: &str) -> Result<(String, ImageRecord)> {
        let name = reference.parse::<Reference>()?.to_string();
        match self.image(&name)? {
            Some(record) => Ok((name, record)),
            None => Err(Error::UnknownImage(name)),
        }
    }

    /// `tag`: the image `source` under the name `target` as well.
    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        let (_, record) = self.lookup(source)?;
        let name: Reference = target.parse()?;
        if name.digest.is_some() {
            return Err(Error::Other(format!(
                "invalid tag {target:?}: a tag cannot carry a digest"
            )));
        }
        self.set_image(
            &name.to_string(),
            ImageRecord {
                updated: crate::pull::now_rfc3339(),
                ..record
            },
        )
    }

    /// Removes the name a user gave (what `rmi` does before pruning);
    /// returns it normalised.
    pub fn untag(&self, reference: &str) -> Result<String> {
        let name = reference.parse::<Reference>()?.to_string();
        if !self.remove_image(&name)? {
            return Err(Error::Other(format!("No such image: {name}")));
        }
        Ok(name)
    }

    /// Every image with its size and creation time, sorted by name (`images`).
    pub fn summaries(&self) -> Result<Vec<ImageSummary>> {
        let mut out = Vec::new();
        for (name, record) in self.images()? {
            let (manifest, config) = self.load(&record)?;
            out.push(ImageSummary {
                name,
                size: self.image_size(&manifest),
                created: config.created.unwrap_or_default(),
                record,
            });
        }
        Ok(out)
    }

    /// `inspect`: an image's name, digest, manifest and config as one JSON
    /// document, the documents as stored (unknown fields included).
    pub fn inspect(&self, reference: &str) -> Result<serde_json::Value> {
        let (name, record) = self.lookup(reference)?;
        let document = |d: &Digest| -> Result<serde_json::Value> {
            serde_json::from_slice(&self.read_blob(d)?).map_err(|e| Error::Other(e.to_string()))
        };
        let manifest = document(&record.digest)?;
        let config = document(&record.config)?;
        Ok(serde_json::json!({
            "name": name,
            "digest": record.digest,
            "manifest": manifest,
            "config": config,
        }))
    }

    /// The manifest and config an image record points at, both re-verified.
    pub fn load(&self, record: &ImageRecord) -> Result<(Manifest, ImageConfig)> {
        let body = self.read_blob(&record.digest)?;
        let manifest = match ManifestDoc::parse(
            &body,
            Some(&record.media_type),
            &record.digest.to_string(),
        )? {
            ManifestDoc::Image(m) => m,
            ManifestDoc::Index(_) => {
                return Err(Error::invalid(
                    format!("image {}", record.digest),
                    "is an index",
                ))
            }
        };
        let config = ImageConfig::parse(
            &self.read_blob(&manifest.config.digest)?,
            &manifest.config.digest,
        )?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(Error::invalid(
                format!("image {}", record.digest),
                format!(
                    "{} layers but {} diff_ids in the config",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            ));
        }
        Ok((*manifest, config))
    }

    fn bundle_record_path(&self, dir: &Path) -> PathBuf {
        let key = Digest::sha256_of(dir.as_os_str().as_encoded_bytes());
        self.root
            .join("bundles")
            .join(format!("{}.json", key.hex()))
    }

    pub fn add_bundle(&self, record: &BundleRecord) -> Result<()> {
        let data = serde_json::to_vec_pretty(record).expect("bundle record serializes");
        atomic_write(&self.bundle_record_path(&record.dir), &data)
    }

    pub fn remove_bundle(&self, dir: &Path) {
        let _ = fs::remove_file(self.bundle_record_path(dir));
    }

    fn bundles(&self) -> Vec<BundleRecord> {
        let Ok(rd) = fs::read_dir(self.root.join("bundles")) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|d| serde_json::from_slice::<BundleRecord>(&d).ok())
            // A bundle removed by hand no longer pins its layers.
            .filter(|b| b.dir.join("config.json").exists())
            .collect()
    }

    /// Deletes every blob and layer no image or bundle needs, abandoned
    /// downloads and scratch files. Needs `Access::Exclusive`.
    pub fn prune(&self) -> Result<PruneReport> {
        let mut keep_blobs = BTreeSet::new();
        let mut keep_layers = BTreeSet::new();
        for record in self.images()?.values() {
            keep_blobs.insert(record.digest.clone());
            keep_blobs.insert(record.config.clone());
            if let Some(i) = &record.index {
                keep_blobs.insert(i.clone());
            }
            if let Ok((manifest, config)) = self.load(record) {
                keep_blobs.extend(manifest.layers.into_iter().map(|l| l.digest));
                keep_layers.extend(config.rootfs.diff_ids);
            }
        }
        for b in self.bundles() {
            keep_blobs.insert(b.manifest);
            keep_layers.extend(b.layers);
        }
        let mut report = PruneReport::default();
        for alg in ["sha256", "sha512"] {
            let dir = self.root.join("blobs").join(alg);
            for e in fs::read_dir(&dir)
                .context(|| format!("read {}", dir.display()))?
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                let keep = format!("{alg}:{name}")
                    .parse::<Digest>()
                    .is_ok_and(|d| keep_blobs.contains(&d));
                if !keep {
                    report.bytes += e.metadata().map_or(0, |m| m.len());
                    fs::remove_file(e.path())
                        .context(|| format!("remove {}", e.path().display()))?;
                    report.blobs += 1;
                }
            }
        }
        let dir = self.root.join("layers");
        for e in fs::read_dir(&dir)
            .context(|| format!("read {}", dir.display()))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().replacen('-', ":", 1);
            let keep = name
                .parse::<Digest>()
                .is_ok_and(|d| keep_layers.contains(&d));
            if !keep {
                remove_tree(&e.path());
                report.layers += 1;
            }
        }
        for sub in ["ingest", "tmp"] {
            let dir = self.root.join(sub);
            for e in fs::read_dir(&dir)
                .context(|| format!("read {}", dir.display()))?
                .flatten()
            {
                remove_tree(&e.path());
            }
        }
        Ok(report)
    }

    /// Bytes used by the blobs of one image (its compressed size).
    pub fn image_size(&self, manifest: &Manifest) -> u64 {
        manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// One image as `images` lists it.
#[derive(Debug)]
pub struct ImageSummary {
    /// The normalised reference.
    pub name: String,
    pub record: ImageRecord,
    /// Bytes of its blobs (compressed), as `image_size` counts them.
    pub size: u64,
    /// When the config says it was made; empty when it does not say.
    pub created: String,
}

#[derive(Debug, Default)]
pub struct PruneReport {
    pub blobs: usize,
    pub layers: usize,
    pub bytes: u64,
}

/// Removes a file or a whole tree, ignoring what is already gone. Layer
/// trees may hold read-only directories and whiteout devices; as root,
/// neither stops removal.
pub fn remove_tree(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let _ = fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = fs::remove_file(p);
        }
        Err(_) => {}
    }
}
