//! The runtime's one error type. Every variant's message names the thing that
//! failed (a path, a config field, a container ID) so the one line a caller
//! sees is enough to act on.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// config.json is unreadable, malformed, or asks for something invalid.
    #[error("{0}")]
    Config(String),

    #[error("container \"{0}\" does not exist")]
    NotFound(String),

    #[error("container with id \"{0}\" already exists")]
    Exists(String),

    #[error("invalid container id \"{0}\": {1}")]
    InvalidId(String, &'static str),

    /// The command is not valid in the container's current state.
    #[error("{0}")]
    State(String),

    /// A system call failed; `what` says on which object.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}: not supported")]
    Unsupported(String),

    /// The berth process on the other end of the create or exec handshake
    /// went away: it failed, and says why itself.
    #[error("the berth process that started this one went away")]
    CallerGone,

    /// Any other failure, already phrased for the user.
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn sys(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        Error::Sys {
            what: what.into(),
            source: source.into(),
        }
    }

    pub fn path(op: &str, path: impl Into<PathBuf>, source: impl Into<std::io::Error>) -> Self {
        Error::Sys {
            what: format!("{op} {}", path.into().display()),
            source: source.into(),
        }
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::Sys {
            what: "system call".into(),
            source: e.into(),
        }
    }
}

/// Attaches "what failed" to any io/nix error: `.ctx(|| format!("mount {dst}"))`.
pub trait Context<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<std::io::Error>> Context<T> for std::result::Result<T, E> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::sys(what(), e))
    }
}
