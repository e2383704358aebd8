//! The library's error type. Messages are one line and name the thing that
//! was wrong: a reference, a digest, a path, a registry.

use std::path::PathBuf;

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid reference format: {0:?}: {1}")]
    InvalidReference(String, &'static str),
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: {1}")]
    Path(PathBuf, String),
    #[error("{0}")]
    Registry(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("{0}: not found")]
    NotFound(String),
    #[error("image {0} not known (pull it first)")]
    UnknownImage(String),
    #[error("invalid {what}: {detail}")]
    Invalid { what: String, detail: String },
    #[error("layer {layer}: {detail}")]
    Layer { layer: String, detail: String },
    #[error("{0}")]
    Other(String),
    /// A RUN step exited non-zero; the build stops with its status.
    #[error("Dockerfile:{line}: {instruction}: exit code {code}")]
    RunFailed {
        line: usize,
        instruction: String,
        code: i32,
    },
    /// A container's program cannot be run: docker's exit status for it
    /// (127 not found, 126 not executable).
    #[error("{detail}")]
    Command { code: i32, detail: String },
    /// A compose file says something berth-img cannot do, or says it
    /// wrongly: the file and the key's path.
    #[error("{file}: {key}: {detail}")]
    Compose {
        file: String,
        key: String,
        detail: String,
    },
    /// Another stage of a parallel build failed first; its error is the
    /// one reported.
    #[error("build cancelled: another stage failed")]
    Cancelled,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a description (usually the path) to io errors.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: what(),
            source,
        })
    }
}

impl<T> Context<T> for nix::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|errno| Error::Io {
            context: what(),
            source: std::io::Error::from(errno),
        })
    }
}

impl Error {
    pub fn invalid(what: impl Into<String>, detail: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            detail: detail.into(),
        }
    }
}
