//! The image documents: manifests, indexes and image configs, in both their
//! OCI and Docker schema 2 spellings (image-spec manifest.md, image-index.md,
//! config.md). Unknown fields are kept so documents round-trip.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::error::{Error, Result};

pub mod media {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

    /// What a registry may send for `GET /v2/<name>/manifests/<ref>`.
    pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From a layer media type; unknown types are sniffed from the bytes.
    pub fn from_media_type(mt: &str) -> Option<Compression> {
        if mt.ends_with("+gzip") || mt.ends_with(".tar.gzip") {
            Some(Compression::Gzip)
        } else if mt.ends_with("+zstd") {
            Some(Compression::Zstd)
        } else if mt.ends_with(".tar") || mt.ends_with(".diff.tar") {
            Some(Compression::None)
        } else {
            None
        }
    }

    /// The OCI media type of a layer compressed this way.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::Zstd => media::OCI_LAYER_ZSTD,
            Compression::None => media::OCI_LAYER,
            Compression::Gzip => media::OCI_LAYER_GZIP,
        }
    }

    /// From the first bytes of a stream (magic numbers).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// A reader of the uncompressed stream behind `r`: the compression is the
/// layer media type's, or for unknown types and plain files, the one the
/// first bytes show.
pub fn decompress<'a>(
    mut r: impl std::io::BufRead + 'a,
    media_type: Option<&str>,
) -> std::io::Result<Box<dyn std::io::Read + 'a>> {
    let c = match media_type.and_then(Compression::from_media_type) {
        Some(c) => c,
        None => Compression::sniff(r.fill_buf()?),
    };
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    })
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
            urls: None,
            extra: Map::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    /// The platform this binary runs on, in GOARCH spelling.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            architecture: architecture.into(),
            os: "linux".into(),
            variant: variant.map(Into::into),
            os_version: None,
        }
    }

    /// `os/arch[/variant]`, as `--platform` takes it.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(Error::invalid(
                "--platform",
                format!("{s:?}: want os/arch[/variant]"),
            ));
        }
        Ok(Platform {
            os: parts[0].into(),
            architecture: parts[1].into(),
            variant: parts.get(2).map(|v| v.to_string()),
            os_version: None,
        })
    }

    /// Whether an index entry for `candidate` can run where `self` is wanted.
    /// A missing variant on either side matches (arm64 images rarely say v8).
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.os == candidate.os
            && self.architecture == candidate.architecture
            && match (&self.variant, &candidate.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A manifest document as fetched: either one image or an index of them.
pub enum ManifestDoc {
    Image(Box<Manifest>),
    Index(Index),
}

impl ManifestDoc {
    /// Parses a manifest body; the media type comes from the header or, when
    /// the registry sent a generic one, from the document itself.
    pub fn parse(body: &[u8], header_media_type: Option<&str>, what: &str) -> Result<ManifestDoc> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| Error::invalid(format!("manifest {what}"), e.to_string()))?;
        let doc_mt = value.get("mediaType").and_then(Value::as_str);
        let mt = doc_mt.or(header_media_type).unwrap_or("");
        let is_index = mt == media::OCI_INDEX
            || mt == media::DOCKER_LIST
            || (value.get("manifests").is_some() && value.get("config").is_none());
        if value.get("schemaVersion").and_then(Value::as_u64) == Some(1) {
            return Err(Error::invalid(
                format!("manifest {what}"),
                "Docker schema 1 manifests are not supported",
            ));
        }
        let bad = |e: serde_json::Error| Error::invalid(format!("manifest {what}"), e.to_string());
        Ok(if is_index {
            ManifestDoc::Index(serde_json::from_value(value).map_err(bad)?)
        } else {
            ManifestDoc::Image(Box::new(serde_json::from_value(value).map_err(bad)?))
        })
    }
}

/// `config` inside the image config: what the container runs with.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Volumes", default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The image config (config.md).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: RunConfig,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageConfig {
    pub fn parse(body: &[u8], digest: &Digest) -> Result<ImageConfig> {
        serde_json::from_slice(body)
            .map_err(|e| Error::invalid(format!("image config {digest}"), e.to_string()))
    }
}

/// The JSON every document is written with: compact, so that digests are of
/// exactly what we store and push.
pub fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("image documents always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_and_oci_manifests_parse() {
        let d = Digest::sha256_of(b"x");
        let docker = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","size":1,"digest":"{d}"}},"layers":[{{"mediaType":"{}","size":1,"digest":"{d}"}}]}}"#,
            media::DOCKER_MANIFEST,
            media::DOCKER_CONFIG,
            media::DOCKER_LAYER_GZIP
        );
        match ManifestDoc::parse(docker.as_bytes(), None, "t").unwrap() {
            ManifestDoc::Image(m) => assert_eq!(m.layers.len(), 1),
            ManifestDoc::Index(_) => panic!("not an index"),
        }
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","size":1,"digest":"{d}","platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}],"future":1}}"#,
            media::OCI_MANIFEST
        );
        match ManifestDoc::parse(index.as_bytes(), Some(media::OCI_INDEX), "t").unwrap() {
            ManifestDoc::Index(i) => {
                assert!(Platform::parse("linux/arm64")
                    .unwrap()
                    .matches(i.manifests[0].platform.as_ref().unwrap()));
                assert!(i.extra.contains_key("future"));
            }
            ManifestDoc::Image(_) => panic!("is an index"),
        }
        assert!(ManifestDoc::parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, None, "t").is_err());
    }

    #[test]
    fn compression_from_type_and_magic() {
        assert_eq!(
            Compression::from_media_type(media::DOCKER_LAYER_GZIP),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::from_media_type(media::OCI_LAYER_ZSTD),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::from_media_type(media::OCI_LAYER),
            Some(Compression::None)
        );
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"etc/\0"), Compression::None);
    }

    #[test]
    fn platforms() {
        assert!(Platform::parse("linux").is_err());
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert!(!p.matches(&Platform::parse("linux/arm/v6").unwrap()));
        assert!(p.matches(&Platform::parse("linux/arm").unwrap()));
    }
}
