//! Errors of creating and opening services.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use super::descriptor::Incompatibility;
use crate::namespace::{DirError, NameError};
use crate::node::NodeId;

/// Creating a service failed.
#[derive(Debug, Error)]
pub enum CreateError {
    /// The service name is not usable.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// The namespace directory could not be prepared.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// A live node already serves this name.
    #[error(
        "service {name:?} already exists in namespace {namespace:?}, owned by live node {owner}; \
         open it, pick another name, or stop its owner"
    )]
    Exists {
        /// The service name.
        name: String,
        /// The namespace.
        namespace: String,
        /// The owner of the existing service.
        owner: NodeId,
    },
    /// A descriptor of this name exists but cannot be read or checked.
    #[error("a descriptor of this service exists but cannot be checked")]
    Existing(#[source] Box<OpenError>),
    /// A dead owner's descriptor of this name is still being cleaned up by another process.
    #[error("service {name:?} of a dead node is still being cleaned up; retry shortly")]
    Busy {
        /// The service name.
        name: String,
    },
    /// Writing the descriptor failed.
    #[error(
        "cannot write service descriptor {path:?}; check that the namespace directory is writable"
    )]
    Io {
        /// The descriptor path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Opening a service failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The service name is not usable.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// No live node serves this name (a service of a dead node counts as absent).
    #[error(
        "no service {name:?} in namespace {namespace:?}; start its server first, check the \
         name and --namespace, or wait for it"
    )]
    NotFound {
        /// The service name.
        name: String,
        /// The namespace.
        namespace: String,
    },
    /// The service exists but does not match what we expect.
    #[error("service {name:?} is incompatible: {reason}")]
    Incompatible {
        /// The service name.
        name: String,
        /// What differs, naming both sides.
        reason: Incompatibility,
    },
    /// The descriptor may not be read by this user.
    #[error(
        "permission denied reading service descriptor {path:?}; ask its owner to allow your \
         uid or group, or run as its owner"
    )]
    PermissionDenied {
        /// The descriptor path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The descriptor is not valid JSON of a descriptor.
    #[error("service descriptor {path:?} is corrupt; run `ipcx clean` or remove the file")]
    Corrupt {
        /// The descriptor path.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The descriptor was written by a newer ipcx.
    #[error(
        "service descriptor {path:?} has format {found}, this ipcx reads up to {supported}; \
         upgrade ipcx"
    )]
    UnsupportedFormat {
        /// The descriptor path.
        path: PathBuf,
        /// Its format version.
        found: u32,
        /// The highest this build reads.
        supported: u32,
    },
    /// Reading the descriptor failed otherwise.
    #[error("cannot read service descriptor {path:?}")]
    Io {
        /// The descriptor path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// [`open_or_create`](super::ServiceBuilder::open_or_create) failed.
#[derive(Debug, Error)]
pub enum OpenOrCreateError {
    /// Opening the existing service failed (e.g. it is incompatible).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Creating the service failed.
    #[error(transparent)]
    Create(#[from] CreateError),
}
