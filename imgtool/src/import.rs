//! `import`: a rootfs tar (plain, gzip or zstd) becomes a one-layer image,
//! like `docker import`. Also the way tests and the demo make a base image
//! without any network.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::digest::{Algorithm, HashingReader, HashingWriter};
use crate::error::{Context, Error, Result};
use crate::image::decompress;
use crate::image::{
    media, to_json, Compression, Descriptor, History, ImageConfig, Manifest, Platform, RootFs,
    RunConfig,
};
use crate::pull::{now_rfc3339, rfc3339, unpack_blob};
use crate::reference::Reference;
use crate::store::{unique_name, ImageRecord, Store};

/// The creation time new images record: `SOURCE_DATE_EPOCH` when set, so
/// builds are reproducible, else now.
pub fn created_time() -> String {
    match std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
    {
        Some(t) => rfc3339(t),
        None => now_rfc3339(),
    }
}

/// Compresses `tar` (already uncompressed) into a gzip layer blob in the
/// store. Returns its descriptor and diff ID.
pub fn store_layer(store: &Store, tar: impl Read) -> Result<(Descriptor, crate::digest::Digest)> {
    store_layer_with(store, tar, Compression::Gzip)
}

/// Like [`store_layer`] with a choice of compression. Output is a function
/// of the input only (no names or times in the gzip header), so the same
/// tar always gives the same blob.
pub fn store_layer_with(
    store: &Store,
    tar: impl Read,
    compression: Compression,
) -> Result<(Descriptor, crate::digest::Digest)> {
    store_layer_checked(store, tar, compression, None)
}

/// Like [`store_layer_with`]; with `want`, a layer whose diff ID differs
/// is an error and never reaches the store.
pub fn store_layer_checked(
    store: &Store,
    tar: impl Read,
    compression: Compression,
    want: Option<&crate::digest::Digest>,
) -> Result<(Descriptor, crate::digest::Digest)> {
    let tmp = store.tmp_dir().join(unique_name("layer-"));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .context(|| format!("create {}", tmp.display()))?;
    let result = (|| {
        let mut src = HashingReader::new(tar, Algorithm::Sha256);
        let out = HashingWriter::new(io::BufWriter::new(file));
        let ctx = || "compress layer".to_string();
        let out = match compression {
            Compression::Gzip => {
                let mut gz = flate2::GzBuilder::new()
                    .mtime(0)
                    .write(out, flate2::Compression::default());
                io::copy(&mut src, &mut gz).context(ctx)?;
                gz.finish().context(ctx)?
            }
            Compression::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(out, 3).context(ctx)?;
                io::copy(&mut src, &mut z).context(ctx)?;
                z.finish().context(ctx)?
            }
            Compression::None => {
                let mut out = out;
                io::copy(&mut src, &mut out).context(ctx)?;
                out
            }
        };
        let (digest, size, w) = out.finish();
        w.into_inner()
            .map_err(|e| Error::Io {
                context: "write layer".into(),
                source: e.into_error(),
            })?
            .sync_all()
            .context(|| "sync layer".to_string())?;
        let (diff_id, _, _) = src.finish();
        if let Some(want) = want.filter(|w| **w != diff_id) {
            return Err(Error::DigestMismatch {
                expected: want.clone(),
                actual: diff_id,
            });
        }
        let target = store.blob_path(&digest);
        std::fs::rename(&tmp, &target).context(|| format!("rename into {}", target.display()))?;
        Ok((
            Descriptor::new(compression.layer_media_type(), digest, size),
            diff_id,
        ))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Stores config and manifest for `layers` and names the image `reference`.
pub fn store_image(
    store: &Store,
    reference: &str,
    config: &ImageConfig,
    layers: Vec<Descriptor>,
) -> Result<ImageRecord> {
    let config_body = to_json(config);
    let config_digest = store.put_blob(&config_body)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: Descriptor::new(
            media::OCI_CONFIG,
            config_digest.clone(),
            config_body.len() as u64,
        ),
        layers,
        annotations: Default::default(),
        extra: Default::default(),
    };
    let body = to_json(&manifest);
    let digest = store.put_blob(&body)?;
    let record = ImageRecord {
        digest,
        media_type: media::OCI_MANIFEST.into(),
        config: config_digest,
        index: None,
        updated: now_rfc3339(),
    };
    store.set_image(reference, record.clone())?;
    Ok(record)
}

/// `--change` lines (a subset of Dockerfile instructions: CMD, ENTRYPOINT,
/// ENV, WORKDIR, USER, STOPSIGNAL, EXPOSE, VOLUME, LABEL) as the image's
/// settings.
pub fn parse_changes(lines: &[String]) -> Result<RunConfig> {
    let mut rc = RunConfig::default();
    for line in lines {
        let (keyword, rest) = line
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((line.trim(), ""));
        let rest = rest.trim();
        let invalid = |want: &str| Error::Other(format!("--change {line:?}: want {want}"));
        // JSON form, else shell form.
        let list = || -> Vec<String> {
            serde_json::from_str::<Vec<String>>(rest)
                .unwrap_or_else(|_| vec!["/bin/sh".into(), "-c".into(), rest.into()])
        };
        match keyword.to_ascii_uppercase().as_str() {
            "CMD" => rc.cmd = Some(list()),
            "ENTRYPOINT" => rc.entrypoint = Some(list()),
            "ENV" => {
                let (k, v) = rest
                    .split_once('=')
                    .or_else(|| rest.split_once(' '))
                    .ok_or_else(|| invalid("ENV KEY=VALUE"))?;
                rc.env
                    .get_or_insert_with(Vec::new)
                    .push(format!("{k}={}", v.trim()));
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
            "VOLUME" => {
                // JSON form, else space-separated paths.
                let paths = serde_json::from_str::<Vec<String>>(rest)
                    .unwrap_or_else(|_| rest.split_whitespace().map(str::to_string).collect());
                if paths.is_empty() || paths.iter().any(|p| !p.starts_with('/')) {
                    return Err(invalid("VOLUME with absolute paths"));
                }
                for p in paths {
                    rc.volumes
                        .get_or_insert_with(Default::default)
                        .insert(p, serde_json::json!({}));
                }
            }
            "LABEL" => {
                let (k, v) = rest
                    .split_once('=')
                    .ok_or_else(|| invalid("LABEL KEY=VALUE"))?;
                rc.labels
                    .get_or_insert_with(Default::default)
                    .insert(k.into(), v.trim_matches('"').into());
            }
            other => {
                return Err(Error::Other(format!(
                    "--change {line:?}: unsupported instruction {other}"
                )))
            }
        }
    }
    Ok(rc)
}

/// `import`: the rootfs tar `tar_path` as a one-layer image named
/// `reference`, with `run` as its settings.
pub fn import(
    store: &Store,
    tar_path: &Path,
    reference: &Reference,
    run: RunConfig,
) -> Result<ImageRecord> {
    let f = File::open(tar_path).context(|| format!("open {}", tar_path.display()))?;
    let tar = decompress(BufReader::with_capacity(256 << 10, f), None)
        .context(|| format!("read {}", tar_path.display()))?;
    let (desc, diff_id) = store_layer(store, tar)?;
    // Unpack now: a tar that is not a valid layer fails here, before any
    // image points at it.
    unpack_blob(store, &desc, &diff_id)?;
    let host = Platform::host();
    let created = created_time();
    let config = ImageConfig {
        created: Some(created.clone()),
        author: None,
        architecture: host.architecture,
        os: host.os,
        variant: host.variant,
        config: run,
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![diff_id],
        },
        history: vec![History {
            created: Some(created),
            created_by: Some(format!("berth-img import {}", tar_path.display())),
            comment: Some("Imported from tarball".into()),
            ..Default::default()
        }],
        extra: Default::default(),
    };
    store_image(store, &reference.to_string(), &config, vec![desc])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(lines: &[&str]) -> Result<RunConfig> {
        parse_changes(&lines.iter().map(|l| l.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn changes_in_json_and_shell_form() {
        let rc = changes(&[
            r#"CMD ["sh"]"#,
            "entrypoint /init --quiet",
            "ENV A=1",
            "ENV B 2",
            "EXPOSE 80 53/udp",
            r#"LABEL org.example="x y""#,
            "STOPSIGNAL SIGINT",
            "VOLUME /data /cache",
            r#"VOLUME ["/logs"]"#,
        ])
        .unwrap();
        let vols = rc.volumes.clone().unwrap();
        assert_eq!(
            vols.keys().collect::<Vec<_>>(),
            ["/cache", "/data", "/logs"]
        );
        assert!(changes(&["VOLUME data"]).is_err());
        assert_eq!(rc.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(
            rc.entrypoint,
            Some(vec!["/bin/sh".into(), "-c".into(), "/init --quiet".into()])
        );
        assert_eq!(rc.env, Some(vec!["A=1".into(), "B=2".into()]));
        let ports = rc.exposed_ports.unwrap();
        assert!(ports.contains_key("80/tcp") && ports.contains_key("53/udp"));
        assert_eq!(rc.labels.unwrap()["org.example"], "x y");
        assert_eq!(rc.stop_signal.as_deref(), Some("SIGINT"));
    }

    #[test]
    fn bad_changes_name_the_line() {
        let e = changes(&["ENV"]).unwrap_err().to_string();
        assert_eq!(e, r#"--change "ENV": want ENV KEY=VALUE"#);
        let e = changes(&["FOO bar"]).unwrap_err().to_string();
        assert_eq!(e, r#"--change "FOO bar": unsupported instruction FOO"#);
    }
}
