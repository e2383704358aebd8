//! Images and rootfs in and out of tar files: `save`/`load` (one archive
//! that is both an OCI image layout and a docker-archive, as docker 25
//! writes them, so `docker load`, `podman load` and `skopeo` all read it),
//! `export` (a bundle's flattened rootfs) and `commit` (a bundle's changes
//! as a new layer).

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use serde_json::{json, Value};

use crate::build::diff;
use crate::bundle;
use crate::digest::{Digest, HashingReader};
use crate::error::{Context, Error, Result};
use crate::image::decompress;
use crate::image::{
    media, to_json, Compression, Descriptor, History, ImageConfig, Manifest, ManifestDoc,
};
use crate::import::{created_time, store_image, store_layer_checked};
use crate::layer::{self, Mode};
use crate::reference::{Reference, DOCKER_HUB};
use crate::store::{remove_tree, unique_name, ImageRecord, Store};

/// docker's short form of a name: `busybox:1` for Docker Hub library images.
fn docker_tag(r: &Reference) -> String {
    let name = if r.registry == DOCKER_HUB {
        r.repository
            .strip_prefix("library/")
            .unwrap_or(&r.repository)
            .to_string()
    } else {
        format!("{}/{}", r.registry, r.repository)
    };
    format!("{name}:{}", r.tag.as_deref().unwrap_or("latest"))
}

fn append_file(tar: &mut tar::Builder<impl Write>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, name, data)
}

/// Writes `images` (name, record) to `out`.
pub fn save(store: &Store, images: &[(String, ImageRecord)], out: impl Write) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    let mut written = HashSet::new();
    let mut docker_manifest = Vec::new();
    let mut index = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let io_err = |e: io::Error| Error::Other(format!("write archive: {e}"));
    for (name, rec) in images {
        let (manifest, _) = store.load(rec)?;
        let r: Reference = name.parse()?;
        let mut blobs = vec![rec.digest.clone(), manifest.config.digest.clone()];
        blobs.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        for d in &blobs {
            if written.insert(d.clone()) {
                let path = format!("blobs/{}/{}", d.algorithm_name(), d.hex());
                let f = store.open_blob(d)?;
                let len = f.metadata().context(|| format!("stat blob {d}"))?.len();
                let mut h = tar::Header::new_ustar();
                h.set_size(len);
                h.set_mode(0o644);
                h.set_mtime(0);
                tar.append_data(&mut h, &path, f).map_err(io_err)?;
            }
        }
        let tag = docker_tag(&r);
        docker_manifest.push(json!({
            "Config": format!("blobs/sha256/{}", manifest.config.digest.hex()),
            "RepoTags": [tag],
            "Layers": manifest.layers.iter().map(|l| format!("blobs/{}/{}", l.digest.algorithm_name(), l.digest.hex())).collect::<Vec<_>>(),
        }));
        let size = store.blob_size(&rec.digest).unwrap_or(0);
        index.push(json!({
            "mediaType": rec.media_type,
            "digest": rec.digest,
            "size": size,
            "annotations": {
                "io.containerd.image.name": r.to_string(),
                "org.opencontainers.image.ref.name": r.tag.clone().unwrap_or_else(|| "latest".into()),
            }
        }));
        let (repo, t) = tag.rsplit_once(':').unwrap_or((&tag, "latest"));
        if let Some(top) = manifest.layers.last() {
            repositories
                .entry(repo.to_string())
                .or_default()
                .insert(t.to_string(), top.digest.hex().to_string());
        }
    }
    append_file(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err)?;
    let idx = json!({ "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": index });
    append_file(&mut tar, "index.json", &serde_json::to_vec(&idx).unwrap()).map_err(io_err)?;
    append_file(
        &mut tar,
        "manifest.json",
        &serde_json::to_vec(&docker_manifest).unwrap(),
    )
    .map_err(io_err)?;
    append_file(
        &mut tar,
        "repositories",
        &serde_json::to_vec(&repositories).unwrap(),
    )
    .map_err(io_err)?;
    tar.into_inner().map_err(io_err)?.flush().map_err(io_err)
}

/// Reads an archive made by `save`, `docker save` (old or new) or as an
/// OCI layout tar; returns the names loaded.
pub fn load(store: &Store, input: impl Read) -> Result<Vec<String>> {
    let tmp = store.tmp_dir().join(unique_name("load-"));
    fs::create_dir_all(&tmp).context(|| format!("create {}", tmp.display()))?;
    let result = (|| {
        // Unpacked with the layer unpacker: a crafted archive cannot write
        // outside the scratch directory either.
        layer::unpack(input, &tmp, Mode::Flatten)
            .map_err(|e| Error::Other(format!("read archive: {e}")))?;
        if open_member(&tmp, "manifest.json").is_ok() {
            load_docker(store, &tmp)
        } else if open_member(&tmp, "index.json").is_ok() {
            load_oci(store, &tmp)
        } else {
            Err(Error::Other(
                "not an image archive: no manifest.json or index.json".into(),
            ))
        }
    })();
    remove_tree(&tmp);
    result
}

/// A regular file of the unpacked archive, found inside it: a member that
/// is a symlink to a host file, or a device node, is not read.
fn open_member(dir: &Path, rel: &str) -> Result<File> {
    let fail = |e: &dyn std::fmt::Display| Error::Other(format!("archive: {rel}: {e}"));
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = crate::inroot::Root::open(dir)
        .and_then(|r| r.open_at(&crate::inroot::clean(Path::new(rel)), flags))
        .map_err(|e| fail(&e))?;
    let f = File::from(fd);
    if !f.metadata().map_err(|e| fail(&e))?.is_file() {
        return Err(fail(&"not a regular file"));
    }
    Ok(f)
}

fn read_member(dir: &Path, rel: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    open_member(dir, rel)?
        .read_to_end(&mut data)
        .map_err(|e| Error::Other(format!("archive: {rel}: {e}")))?;
    Ok(data)
}

fn read_json(dir: &Path, rel: &str) -> Result<Value> {
    let data = read_member(dir, rel)?;
    serde_json::from_slice(&data).map_err(|e| Error::Other(format!("archive: {rel}: {e}")))
}

fn load_docker(store: &Store, dir: &Path) -> Result<Vec<String>> {
    let entries = read_json(dir, "manifest.json")?;
    let mut names = Vec::new();
    for e in entries
        .as_array()
        .ok_or_else(|| Error::Other("archive: manifest.json is not a list".into()))?
    {
        let cfg_path = e["Config"]
            .as_str()
            .ok_or_else(|| Error::Other("archive: entry without Config".into()))?;
        let cfg_bytes = read_member(dir, cfg_path)?;
        let cfg_digest = Digest::sha256_of(&cfg_bytes);
        let config = ImageConfig::parse(&cfg_bytes, &cfg_digest)?;
        let layer_paths: Vec<&str> = e["Layers"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if layer_paths.len() != config.rootfs.diff_ids.len() {
            return Err(Error::Other(format!(
                "archive: {} layers but {} diff_ids",
                layer_paths.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (p, want) in layer_paths.iter().zip(&config.rootfs.diff_ids) {
            let f = open_member(dir, p)?;
            let tar = decompress(BufReader::new(f), None)
                .map_err(|e| Error::Other(format!("archive: {p}: {e}")))?;
            let (desc, _) =
                store_layer_checked(store, tar, crate::image::Compression::Gzip, Some(want))
                    .map_err(|e| Error::Layer {
                        layer: p.to_string(),
                        detail: e.to_string(),
                    })?;
            layers.push(desc);
        }
        // Keep the config byte for byte: its digest is the image ID.
        store.put_verified(&cfg_bytes, &cfg_digest, None)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            config: Descriptor::new(
                media::OCI_CONFIG,
                cfg_digest.clone(),
                cfg_bytes.len() as u64,
            ),
            layers,
            annotations: Default::default(),
            extra: Default::default(),
        };
        let body = to_json(&manifest);
        let digest = store.put_blob(&body)?;
        for tag in e["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let r: Reference = tag.parse()?;
            let record = ImageRecord {
                digest: digest.clone(),
                media_type: media::OCI_MANIFEST.into(),
                config: cfg_digest.clone(),
                index: None,
                updated: crate::pull::now_rfc3339(),
            };
            store.set_image(&r.to_string(), record)?;
            names.push(r.to_string());
        }
    }
    Ok(names)
}

/// Copies a verified blob from the layout into the store.
fn take_blob(store: &Store, dir: &Path, d: &Digest) -> Result<()> {
    if store.has_blob(d) {
        return Ok(());
    }
    let f = open_member(dir, &format!("blobs/{}/{}", d.algorithm_name(), d.hex()))?;
    let mut h = HashingReader::new(f, d.algorithm());
    let ingest = store.ingest(d)?;
    let Some(ingest) = ingest else { return Ok(()) };
    io::copy(&mut h, &mut &*ingest.file).context(|| format!("copy blob {d}"))?;
    let (actual, _, _) = h.finish();
    if &actual != d {
        store.discard_ingest(&ingest);
        return Err(Error::DigestMismatch {
            expected: d.clone(),
            actual,
        });
    }
    store.commit_ingest(&ingest, d)
}

fn load_oci(store: &Store, dir: &Path) -> Result<Vec<String>> {
    let index = read_json(dir, "index.json")?;
    let mut names = Vec::new();
    for m in index["manifests"].as_array().into_iter().flatten() {
        let digest: Digest = m["digest"].as_str().unwrap_or("").parse()?;
        take_blob(store, dir, &digest)?;
        let body = store.read_blob(&digest)?;
        let mt = m["mediaType"]
            .as_str()
            .unwrap_or(media::OCI_MANIFEST)
            .to_string();
        let manifest = match ManifestDoc::parse(&body, Some(&mt), &digest.to_string())? {
            ManifestDoc::Image(m) => *m,
            ManifestDoc::Index(_) => {
                return Err(Error::Other(
                    "archive: nested indexes are not supported".into(),
                ))
            }
        };
        take_blob(store, dir, &manifest.config.digest)?;
        let config = ImageConfig::parse(
            &store.read_blob(&manifest.config.digest)?,
            &manifest.config.digest,
        )?;
        for (l, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            take_blob(store, dir, &l.digest)?;
            if !store.has_layer(diff_id) {
                crate::pull::unpack_blob(store, l, diff_id)?;
            }
        }
        let ann = &m["annotations"];
        let name = ann["io.containerd.image.name"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                ann["org.opencontainers.image.ref.name"].as_str().map(|t| {
                    if t.contains('/') || t.contains(':') {
                        t.to_string()
                    } else {
                        format!("localhost/loaded:{t}")
                    }
                })
            })
            .ok_or_else(|| Error::Other(format!("archive: manifest {digest} has no name")))?;
        let r: Reference = name.parse()?;
        let record = ImageRecord {
            digest,
            media_type: mt,
            config: manifest.config.digest.clone(),
            index: None,
            updated: crate::pull::now_rfc3339(),
        };
        store.set_image(&r.to_string(), record)?;
        names.push(r.to_string());
    }
    Ok(names)
}

/// `export`: the bundle's rootfs as it is now, one flat tar.
pub fn export(bundle_dir: &Path, out: impl Write) -> Result<()> {
    bundle::metadata(bundle_dir)?;
    let rootfs = bundle_dir.join("rootfs");
    diff::write_layer(
        &rootfs,
        out,
        &diff::DiffOptions {
            exclude: HashSet::new(),
            epoch: None,
        },
    )
    .context(|| format!("export {}", rootfs.display()))
}

/// Whether some layer (topmost first) has `rel`, honouring whiteouts.
fn image_has(store: &Store, diff_ids: &[Digest], rel: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for d in diff_ids.iter().rev() {
        if let Ok(m) = fs::symlink_metadata(store.layer_dir(d).join(rel)) {
            return !(m.file_type().is_char_device() && m.rdev() == 0);
        }
    }
    false
}

/// `commit`: the bundle's upper directory as a new layer on its image.
pub fn commit(
    store: &Store,
    bundle_dir: &Path,
    target: &Reference,
    message: Option<&str>,
) -> Result<ImageRecord> {
    let meta = bundle::metadata(bundle_dir)?;
    if meta.rootfs == "copy" {
        return Err(Error::Path(
            bundle_dir.into(),
            "commit needs a bundle made without --copy".into(),
        ));
    }
    let base = ImageRecord {
        digest: meta.manifest.clone(),
        media_type: media::OCI_MANIFEST.into(),
        config: meta.config.clone(),
        index: None,
        updated: String::new(),
    };
    let body = store.read_blob(&base.digest)?;
    let base_mt = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_string));
    let base = ImageRecord {
        media_type: base_mt.unwrap_or_else(|| media::OCI_MANIFEST.into()),
        ..base
    };
    let (manifest, mut config) = store.load(&base)?;
    // Mount points the runtime made that the image did not have.
    let exclude: HashSet<PathBuf> = diff::RUNTIME_STUBS
        .iter()
        .map(PathBuf::from)
        .filter(|p| !image_has(store, &config.rootfs.diff_ids, p))
        .collect();
    let upper = bundle_dir.join(".overlay/upper");
    let (desc, diff_id) = diff::store_diff(store, &upper, exclude, Compression::Gzip)?;
    config.rootfs.diff_ids.push(diff_id);
    config.created = Some(created_time());
    config.history.push(History {
        created: config.created.clone(),
        created_by: Some(format!("berth-img commit {}", bundle_dir.display())),
        comment: message.map(str::to_string),
        ..Default::default()
    });
    let mut layers = manifest.layers;
    layers.push(desc);
    store_image(store, &target.to_string(), &config, layers)
}
