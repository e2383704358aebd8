//! `push`: blobs the registry lacks (mounted from another repository of the
//! same registry when one has them, else uploaded monolithically or in
//! chunks), then the manifest by tag (distribution-spec, "Push").

use std::io::{Read, Seek, SeekFrom};
use std::sync::Mutex;

use crate::digest::Digest;
use crate::error::{Context, Error, Result};
use crate::image::Descriptor;
use crate::progress::Progress;
use crate::pull::registry_for;
use crate::reference::Reference;
use crate::registry::{scope, Body, Registry};
use crate::store::{ImageRecord, Store};

const PARALLEL: usize = 3;

/// Blobs up to this size go up in one PUT; larger ones in PATCH chunks of
/// this size. `BERTH_IMG_CHUNK_SIZE` overrides it (bytes).
fn chunk_size() -> u64 {
    std::env::var("BERTH_IMG_CHUNK_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(32 << 20)
}

pub struct PushOptions {
    pub plain_http: bool,
    pub progress: Progress,
}

/// What happened to each blob, for the command's output.
#[derive(Debug, Default)]
pub struct PushReport {
    pub uploaded: usize,
    pub mounted: usize,
    pub existed: usize,
    pub digest: Option<Digest>,
}

pub fn push(
    store: &Store,
    source: &ImageRecord,
    target: &Reference,
    opts: &PushOptions,
) -> Result<PushReport> {
    let (manifest, _) = store.load(source)?;
    let reg = registry_for(target, opts.plain_http)?;
    let repo = &target.repository;
    // Repositories on the same registry that already hold our blobs: the
    // registry can link them instead of us uploading again.
    let mut mount_sources: Vec<(String, Vec<Digest>)> = Vec::new();
    for (name, rec) in store.images()? {
        let Ok(r) = name.parse::<Reference>() else {
            continue;
        };
        if r.registry == target.registry && r.repository != *repo {
            if let Ok((m, _)) = store.load(&rec) {
                let mut ds: Vec<Digest> = m.layers.into_iter().map(|l| l.digest).collect();
                ds.push(m.config.digest);
                mount_sources.push((r.repository, ds));
            }
        }
    }
    let mut blobs: Vec<&Descriptor> = manifest.layers.iter().collect();
    blobs.push(&manifest.config);
    let report = Mutex::new(PushReport::default());
    crate::pull::parallel(&blobs, PARALLEL, |desc| {
        let from = mount_sources
            .iter()
            .find(|(_, ds)| ds.contains(&desc.digest))
            .map(|(r, _)| r.as_str());
        let outcome = push_blob(store, &reg, repo, desc, from, &opts.progress)?;
        let mut r = report.lock().unwrap();
        match outcome {
            Outcome::Existed => r.existed += 1,
            Outcome::Mounted => r.mounted += 1,
            Outcome::Uploaded => r.uploaded += 1,
        }
        Ok(())
    })?;
    let body = store.read_blob(&source.digest)?;
    let reference = target
        .tag
        .clone()
        .unwrap_or_else(|| source.digest.to_string());
    let resp = reg.send(
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[scope(repo, true)],
        &[("Content-Type", &source.media_type)],
        Body::Bytes(&body),
    )?;
    if let Some(d) = resp
        .header("docker-content-digest")
        .and_then(|d| d.parse::<Digest>().ok())
    {
        if d != source.digest {
            return Err(Error::DigestMismatch {
                expected: source.digest.clone(),
                actual: d,
            });
        }
    }
    let mut report = report.into_inner().unwrap();
    report.digest = Some(source.digest.clone());
    Ok(report)
}

enum Outcome {
    Existed,
    Mounted,
    Uploaded,
}

/// Resolves an upload `Location` against the registry and adds query
/// parameters, whatever form (absolute or relative, with a query or not)
/// the registry chose.
fn upload_url(reg: &Registry, location: &str, extra: &[(&str, &str)]) -> Result<String> {
    let base = url::Url::parse(&reg.base()?).map_err(|e| Error::Registry(e.to_string()))?;
    let mut u = base
        .join(location)
        .map_err(|e| Error::Registry(format!("bad upload location {location:?}: {e}")))?;
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    Ok(u.to_string())
}

fn location(resp: &ureq::Response) -> Result<String> {
    resp.header("location").map(str::to_string).ok_or_else(|| {
        Error::Registry(format!(
            "{} {}: no Location header",
            resp.status(),
            resp.get_url()
        ))
    })
}

fn push_blob(
    store: &Store,
    reg: &Registry,
    repo: &str,
    desc: &Descriptor,
    from: Option<&str>,
    progress: &Progress,
) -> Result<Outcome> {
    let mut scopes = vec![scope(repo, true)];
    let head = reg.send_accepting(
        "HEAD",
        &format!("/v2/{repo}/blobs/{}", desc.digest),
        &scopes,
        &[],
        Body::Empty,
        &[404],
    )?;
    if head.status() == 200 {
        return Ok(Outcome::Existed);
    }
    let start = match from {
        Some(from) => {
            scopes.push(scope(from, false));
            let resp = reg.send(
                "POST",
                &format!(
                    "/v2/{repo}/blobs/uploads/?mount={}&from={from}",
                    desc.digest
                ),
                &scopes,
                &[("Content-Length", "0")],
                Body::Empty,
            )?;
            if resp.status() == 201 {
                return Ok(Outcome::Mounted);
            }
            resp
        }
        None => reg.send(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &scopes,
            &[("Content-Length", "0")],
            Body::Empty,
        )?,
    };
    if start.status() != 202 {
        return Err(Error::Registry(format!(
            "start upload of {}: status {}",
            desc.digest,
            start.status()
        )));
    }
    let mut loc = location(&start)?;
    let bar = progress.bar(desc.digest.short(), desc.size);
    let digest = desc.digest.to_string();
    let mut file = store.open_blob(&desc.digest)?;
    let chunk = chunk_size();
    let result = (|| {
        if desc.size <= chunk {
            let mut data = Vec::with_capacity(desc.size as usize);
            file.read_to_end(&mut data)
                .context(|| format!("read blob {digest}"))?;
            reg.send(
                "PUT",
                &upload_url(reg, &loc, &[("digest", &digest)])?,
                &scopes,
                &[("Content-Type", "application/octet-stream")],
                Body::Bytes(&data),
            )?;
            bar.inc(desc.size);
            return Ok(());
        }
        let mut offset = 0u64;
        let mut buf = vec![0u8; chunk as usize];
        while offset < desc.size {
            let n = (desc.size - offset).min(chunk) as usize;
            file.seek(SeekFrom::Start(offset))
                .context(|| format!("seek blob {digest}"))?;
            file.read_exact(&mut buf[..n])
                .context(|| format!("read blob {digest}"))?;
            let range = format!("{}-{}", offset, offset + n as u64 - 1);
            let len = n.to_string();
            let resp = reg.send(
                "PATCH",
                &upload_url(reg, &loc, &[])?,
                &scopes,
                &[
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Range", &range),
                    ("Content-Length", &len),
                ],
                Body::Bytes(&buf[..n]),
            )?;
            if resp.status() != 202 {
                return Err(Error::Registry(format!(
                    "upload chunk {range} of {digest}: status {}",
                    resp.status()
                )));
            }
            loc = location(&resp)?;
            offset += n as u64;
            bar.inc(n as u64);
        }
        reg.send(
            "PUT",
            &upload_url(reg, &loc, &[("digest", &digest)])?,
            &scopes,
            &[("Content-Length", "0")],
            Body::Empty,
        )?;
        Ok(())
    })();
    match &result {
        Ok(()) => bar.finish_with_message("pushed"),
        Err(_) => bar.abandon_with_message("failed"),
    }
    result.map(|()| Outcome::Uploaded)
}
