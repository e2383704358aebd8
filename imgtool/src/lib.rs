//! berth-img: images from registries into OCI bundles for berth.
//!
//! The store ([`store`]) holds verified blobs and unpacked layers; [`pull`]
//! and [`push`] move images over the distribution API ([`registry`]);
//! [`bundle`] turns a stored image into a bundle whose rootfs is an overlay
//! of the layers ([`overlay`]) and whose config mirrors `docker run`;
//! [`containers`] runs them, wired to CNI networks ([`network`]) and with
//! [`volume`]s mounted; [`compose`] runs a compose file's services with
//! them.

pub mod archive;
pub mod auth;
pub mod build;
pub mod bundle;
pub mod changes;
pub mod clock;
pub mod compose;
pub mod containers;
pub mod digest;
pub mod error;
pub mod health;
pub mod image;
pub mod import;
pub mod inroot;
pub mod inspect;
pub mod layer;
pub mod network;
pub mod output;
pub mod overlay;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod restart;
pub mod rootless;
pub mod seccomp;
pub mod state;
pub mod stats;
pub mod store;
pub mod supervisor;
pub mod template;
pub mod users;
pub mod volume;

pub use error::{Error, Result};
