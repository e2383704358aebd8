//! `pull`: manifest (resolving an index to one platform), config and layers
//! into the store. Layers download in parallel and are unpacked as their
//! bytes arrive; every byte is hashed on the way and nothing is published
//! to the store until its digest, size and diff ID check out.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::sync::Mutex;

use indicatif::ProgressBar;

use crate::auth;
use crate::digest::{verify_bytes, Digest, Hasher, HashingReader};
use crate::error::{Context, Error, Result};
use crate::image::decompress;
use crate::image::{media, Descriptor, ImageConfig, ManifestDoc, Platform};
use crate::layer::{self, Mode, UnpackError};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::{scope, Body, Registry};
use crate::store::{remove_tree, ImageRecord, Store};

/// Manifests larger than this are refused rather than buffered.
const MAX_MANIFEST: u64 = 4 << 20;
/// Layers fetched at once.
const PARALLEL: usize = 3;

pub struct PullOptions {
    pub platform: Platform,
    pub plain_http: bool,
    pub progress: Progress,
}

/// A client for `reference`'s registry with the user's stored credentials.
pub fn registry_for(reference: &Reference, plain_http: bool) -> Result<Registry> {
    let creds = auth::lookup(&reference.registry)?;
    Ok(Registry::new(reference.api_host(), creds, plain_http))
}

/// Fetches a manifest by tag or digest and checks it against the digest
/// asked for, or the one the registry claims.
pub fn fetch_manifest(
    reg: &Registry,
    repository: &str,
    reference: &str,
) -> Result<(Vec<u8>, Option<String>, Digest)> {
    let scopes = [scope(repository, false)];
    let resp = reg.send(
        "GET",
        &format!("/v2/{repository}/manifests/{reference}"),
        &scopes,
        &[("Accept", media::MANIFEST_ACCEPT)],
        Body::Empty,
    )?;
    let content_type = resp
        .header("content-type")
        .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
    let claimed = resp
        .header("docker-content-digest")
        .and_then(|d| d.parse::<Digest>().ok());
    let mut body = Vec::new();
    resp.into_reader()
        .take(MAX_MANIFEST + 1)
        .read_to_end(&mut body)
        .context(|| format!("read manifest {repository}:{reference}"))?;
    if body.len() as u64 > MAX_MANIFEST {
        return Err(Error::invalid(
            format!("manifest {repository}:{reference}"),
            "larger than 4 MiB",
        ));
    }
    let expected = match reference.parse::<Digest>() {
        Ok(d) => Some(d),
        Err(_) => claimed,
    };
    let digest = match expected {
        Some(d) => {
            verify_bytes(&body, &d, None)?;
            d
        }
        None => Digest::sha256_of(&body),
    };
    Ok((body, content_type, digest))
}

/// Picks the manifest for `platform` from an index.
pub fn choose<'a>(
    manifests: &'a [Descriptor],
    platform: &Platform,
    what: &str,
) -> Result<&'a Descriptor> {
    manifests
        .iter()
        .filter(|d| d.media_type != "application/vnd.in-toto+json")
        .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
        .ok_or_else(|| {
            let have: Vec<String> = manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                .collect();
            Error::NotFound(format!(
                "{what}: no image for platform {platform} (has: {})",
                have.join(", ")
            ))
        })
}

pub fn pull(store: &Store, reference: &Reference, opts: &PullOptions) -> Result<ImageRecord> {
    let reg = registry_for(reference, opts.plain_http)?;
    let repo = &reference.repository;
    let (body, content_type, digest) = fetch_manifest(&reg, repo, &reference.manifest_ref())?;
    let (manifest_body, manifest_type, manifest_digest, index) =
        match ManifestDoc::parse(&body, content_type.as_deref(), &reference.to_string())? {
            ManifestDoc::Image(m) => {
                let mt = m
                    .media_type
                    .clone()
                    .or(content_type)
                    .unwrap_or_else(|| media::OCI_MANIFEST.into());
                (body, mt, digest, None)
            }
            ManifestDoc::Index(idx) => {
                let chosen = choose(&idx.manifests, &opts.platform, &reference.to_string())?;
                let (mbody, _, mdigest) = fetch_manifest(&reg, repo, &chosen.digest.to_string())?;
                verify_bytes(&mbody, &chosen.digest, Some(chosen.size))?;
                store.put_verified(&body, &digest, None)?;
                (mbody, chosen.media_type.clone(), mdigest, Some(digest))
            }
        };
    let manifest = match ManifestDoc::parse(
        &manifest_body,
        Some(&manifest_type),
        &manifest_digest.to_string(),
    )? {
        ManifestDoc::Image(m) => m,
        ManifestDoc::Index(_) => {
            return Err(Error::invalid(
                format!("manifest {manifest_digest}"),
                "an index inside an index",
            ))
        }
    };

    // The config first: it names the diff IDs the layers must unpack to.
    let cfg_desc = &manifest.config;
    let config_body = if store.has_blob(&cfg_desc.digest) {
        store.read_blob(&cfg_desc.digest)?
    } else {
        let resp = reg.get_following(
            &format!("/v2/{repo}/blobs/{}", cfg_desc.digest),
            &[scope(repo, false)],
            &[],
        )?;
        let mut b = Vec::new();
        resp.into_reader()
            .take(MAX_MANIFEST * 4 + 1)
            .read_to_end(&mut b)
            .context(|| format!("read config {}", cfg_desc.digest))?;
        store.put_verified(&b, &cfg_desc.digest, Some(cfg_desc.size))?;
        b
    };
    let config = ImageConfig::parse(&config_body, &cfg_desc.digest)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(Error::invalid(
            format!("image {manifest_digest}"),
            format!(
                "{} layers but {} diff_ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            ),
        ));
    }

    let jobs: Vec<(&Descriptor, &Digest)> = manifest
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .collect();
    let downloaded: Mutex<Vec<(crate::store::Ingest, Digest)>> = Mutex::new(Vec::new());
    let fetched = parallel(&jobs, PARALLEL, |(desc, diff_id)| {
        if let Some(ingest) = fetch_layer(store, &reg, repo, desc, diff_id, &opts.progress)? {
            downloaded
                .lock()
                .unwrap()
                .push((ingest, desc.digest.clone()));
        }
        Ok(())
    });
    // Verified downloads are flushed and published once all layers are in:
    // syncing each while the others unpack would stall every file creation
    // behind the journal commit. Their layers are unpacked already.
    for (ingest, digest) in downloaded.into_inner().unwrap() {
        store.commit_ingest(&ingest, &digest)?;
    }
    fetched?;

    store.put_verified(&manifest_body, &manifest_digest, None)?;
    let record = ImageRecord {
        digest: manifest_digest,
        media_type: manifest_type,
        config: cfg_desc.digest.clone(),
        index,
        updated: now_rfc3339(),
    };
    store.set_image(&reference.to_string(), record.clone())?;
    Ok(record)
}

/// The image `reference` from the store, pulled first if it is not there
/// (as `docker run` and `FROM` do).
pub fn ensure(
    store: &Store,
    reference: &Reference,
    platform: Platform,
    quiet: bool,
) -> Result<ImageRecord> {
    match store.image(&reference.to_string())? {
        Some(rec) => Ok(rec),
        None => pull(
            store,
            reference,
            &PullOptions {
                platform,
                plain_http: false,
                progress: Progress::new(quiet),
            },
        ),
    }
}

/// Runs `f` on every item, `workers` at a time; stops handing out items at
/// the first error, which it returns.
pub(crate) fn parallel<T: Sync>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let next = Mutex::new(0usize);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.min(items.len()) {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    if *n >= items.len() || first_error.lock().unwrap().is_some() {
                        return;
                    }
                    *n += 1;
                    *n - 1
                };
                if let Err(e) = f(&items[i]) {
                    first_error.lock().unwrap().get_or_insert(e);
                    return;
                }
            });
        }
    });
    match first_error.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Makes sure the store has layer `desc`: its unpacked tree, and its blob
/// (returned as a verified download for the caller to commit, when it
/// was streamed).
pub fn fetch_layer(
    store: &Store,
    reg: &Registry,
    repo: &str,
    desc: &Descriptor,
    diff_id: &Digest,
    progress: &Progress,
) -> Result<Option<crate::store::Ingest>> {
    let label = desc.digest.short().to_string();
    if store.has_blob(&desc.digest) && store.has_layer(diff_id) {
        return Ok(None);
    }
    let bar = progress.bar(&label, desc.size);
    let result = (|| {
        let Some(ingest) = store.ingest(&desc.digest)? else {
            // Someone else (or an earlier pull) fetched the blob.
            if !store.has_layer(diff_id) {
                bar.set_message("unpacking");
                unpack_blob(store, desc, diff_id)?;
            }
            return Ok(None);
        };
        let existing = ingest
            .file
            .metadata()
            .context(|| format!("stat {}", ingest.path.display()))?
            .len();
        if existing > 0 && existing < desc.size {
            resume(store, reg, repo, desc, &ingest, existing, &bar)?;
            bar.set_message("unpacking");
            unpack_blob(store, desc, diff_id)?;
            return Ok(None);
        }
        if existing > 0 {
            // Complete or overlong: start over, it was never verified.
            ingest
                .file
                .set_len(0)
                .context(|| format!("truncate {}", ingest.path.display()))?;
        }
        stream(store, reg, repo, desc, diff_id, &ingest, &bar)?;
        Ok(Some(ingest))
    })();
    match &result {
        Ok(_) => bar.finish_with_message("done"),
        Err(_) => bar.abandon_with_message("failed"),
    }
    result
}

/// Copies what it reads into the ingest file and hashes it.
struct Tee<'a, R> {
    inner: R,
    /// Network reads come in small pieces; the file gets large writes.
    file: io::BufWriter<&'a File>,
    hasher: Hasher,
    count: u64,
    bar: &'a ProgressBar,
}

impl<'a, R> Tee<'a, R> {
    fn new(inner: R, file: &'a File, hasher: Hasher, count: u64, bar: &'a ProgressBar) -> Self {
        Tee {
            inner,
            file: io::BufWriter::with_capacity(1 << 20, file),
            hasher,
            count,
            bar,
        }
    }

    /// Writes out what is buffered, so the ingest file holds every byte
    /// hashed so far.
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.file.write_all(&buf[..n])?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn blob_path(repo: &str, d: &Digest) -> String {
    format!("/v2/{repo}/blobs/{d}")
}

/// Downloads a layer and unpacks it in the same pass.
fn stream(
    store: &Store,
    reg: &Registry,
    repo: &str,
    desc: &Descriptor,
    diff_id: &Digest,
    ingest: &crate::store::Ingest,
    bar: &ProgressBar,
) -> Result<()> {
    let resp = reg.get_following(&blob_path(repo, &desc.digest), &[scope(repo, false)], &[])?;
    let tee = Tee::new(
        resp.into_reader(),
        &ingest.file,
        Hasher::new(desc.digest.algorithm()),
        0,
        bar,
    );
    let mut buf = BufReader::with_capacity(256 << 10, tee);
    let tmp = store.new_layer_tmp()?;
    let unpacked = (|| -> std::result::Result<Digest, UnpackError> {
        let dec = decompress(&mut buf, Some(&desc.media_type)).map_err(UnpackError::Stream)?;
        let mut diff = HashingReader::new(dec, diff_id.algorithm());
        layer::unpack(&mut diff, &tmp, Mode::Overlay)?;
        diff.drain().map_err(UnpackError::Stream)?;
        Ok(diff.finish().0)
    })();
    // Hash to the end even when decoding failed part way: a wrong blob must
    // be reported as the digest mismatch it is, not as a decode error.
    let drained = io::copy(&mut buf, &mut io::sink()).map(|_| ());
    let mut tee = buf.into_inner();
    // Bytes the network delivered are kept even when the download broke
    // off: the next pull resumes after them.
    let drained = drained.and(tee.flush());
    let (actual, count) = (tee.hasher.finish(), tee.count);
    if let Err(e) = drained {
        remove_tree(&tmp);
        // The bytes so far stay in ingest/ for the next pull to resume.
        return Err(Error::Registry(format!(
            "download of {} interrupted after {count} bytes: {e}",
            desc.digest
        )));
    }
    let fail = |e: Error| {
        remove_tree(&tmp);
        store.discard_ingest(ingest);
        Err(e)
    };
    if actual != desc.digest {
        return fail(Error::DigestMismatch {
            expected: desc.digest.clone(),
            actual,
        });
    }
    if count != desc.size {
        return fail(Error::SizeMismatch {
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: count,
        });
    }
    match unpacked {
        Err(e) => fail(Error::Layer {
            layer: desc.digest.to_string(),
            detail: e.to_string(),
        }),
        Ok(d) if &d != diff_id => fail(Error::Layer {
            layer: desc.digest.to_string(),
            detail: format!("uncompressed content: digest mismatch: expected {diff_id}, got {d}"),
        }),
        Ok(_) => store.commit_layer(&tmp, diff_id),
    }
}

/// Continues a partial download with a Range request.
fn resume(
    store: &Store,
    reg: &Registry,
    repo: &str,
    desc: &Descriptor,
    ingest: &crate::store::Ingest,
    existing: u64,
    bar: &ProgressBar,
) -> Result<()> {
    let mut hasher = Hasher::new(desc.digest.algorithm());
    {
        let mut f = &*ingest.file;
        f.seek(SeekFrom::Start(0))
            .context(|| format!("seek {}", ingest.path.display()))?;
        let mut r = (&mut f).take(existing);
        let mut chunk = vec![0u8; 256 << 10];
        loop {
            let n = r
                .read(&mut chunk)
                .context(|| format!("read {}", ingest.path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&chunk[..n]);
        }
    }
    let range = format!("bytes={existing}-");
    let resp = reg.get_following(
        &blob_path(repo, &desc.digest),
        &[scope(repo, false)],
        &[("Range", &range)],
    )?;
    let mut count = existing;
    if resp.status() == 206 {
        tracing::debug!("resuming {} at byte {existing}", desc.digest);
        bar.inc(existing);
        (&*ingest.file)
            .seek(SeekFrom::Start(existing))
            .context(|| format!("seek {}", ingest.path.display()))?;
    } else {
        // The server ignored the range: take the whole blob.
        hasher = Hasher::new(desc.digest.algorithm());
        count = 0;
        ingest
            .file
            .set_len(0)
            .context(|| format!("truncate {}", ingest.path.display()))?;
        (&*ingest.file)
            .seek(SeekFrom::Start(0))
            .context(|| format!("seek {}", ingest.path.display()))?;
    }
    let mut tee = Tee::new(resp.into_reader(), &ingest.file, hasher, count, bar);
    io::copy(&mut tee, &mut io::sink())
        .and_then(|_| tee.flush())
        .map_err(|e| Error::Registry(format!("download of {} interrupted: {e}", desc.digest)))?;
    let (actual, count) = (tee.hasher.finish(), tee.count);
    if actual != desc.digest || count != desc.size {
        store.discard_ingest(ingest);
        return Err(if actual != desc.digest {
            Error::DigestMismatch {
                expected: desc.digest.clone(),
                actual,
            }
        } else {
            Error::SizeMismatch {
                digest: desc.digest.clone(),
                expected: desc.size,
                actual: count,
            }
        });
    }
    store.commit_ingest(ingest, &desc.digest)
}

/// Unpacks a stored, verified layer blob into the store's layer tree.
pub fn unpack_blob(store: &Store, desc: &Descriptor, diff_id: &Digest) -> Result<()> {
    let file = store.open_blob(&desc.digest)?;
    let tmp = store.new_layer_tmp()?;
    let result = (|| -> std::result::Result<Digest, UnpackError> {
        let dec = decompress(
            BufReader::with_capacity(256 << 10, file),
            Some(&desc.media_type),
        )
        .map_err(UnpackError::Stream)?;
        let mut diff = HashingReader::new(dec, diff_id.algorithm());
        layer::unpack(&mut diff, &tmp, Mode::Overlay)?;
        diff.drain().map_err(UnpackError::Stream)?;
        Ok(diff.finish().0)
    })();
    match result {
        Ok(d) if &d == diff_id => store.commit_layer(&tmp, diff_id),
        Ok(d) => {
            remove_tree(&tmp);
            Err(Error::Layer {
                layer: desc.digest.to_string(),
                detail: format!(
                    "uncompressed content: digest mismatch: expected {diff_id}, got {d}"
                ),
            })
        }
        Err(e) => {
            remove_tree(&tmp);
            Err(Error::Layer {
                layer: desc.digest.to_string(),
                detail: e.to_string(),
            })
        }
    }
}

/// The current UTC time as RFC 3339, without pulling in a date crate.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    rfc3339(secs)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: i64) -> String {
    // Whole seconds: the nanosecond form has no fraction then.
    crate::clock::rfc3339_nano(Some(secs.saturating_mul(1_000_000_000)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
