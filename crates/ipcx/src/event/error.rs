//! Errors of the event pattern: one enum per operation.

use std::path::PathBuf;

use thiserror::Error;

use crate::namespace::{DirError, NameError};

/// Creating an [`EventListener`](super::EventListener) failed.
#[derive(Debug, Error)]
pub enum CreateError {
    /// The event or namespace name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The namespace's runtime directory could not be prepared.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// A live listener already owns this event name.
    #[error("another live listener owns event {name:?} ({path}); pick another name or stop it")]
    InUse {
        /// The event name.
        name: String,
        /// Its socket file.
        path: PathBuf,
    },
    /// The socket path is not a valid socket address (too long: shorten the namespace
    /// directory, e.g. with `XDG_RUNTIME_DIR`, or the name).
    #[error("{path} cannot be a unix socket address")]
    Address {
        /// The socket file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ipcx_sys::uds::AddrError,
    },
    /// Binding the socket failed.
    #[error("cannot bind the event socket {path}")]
    Bind {
        /// The socket file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ipcx_sys::uds::BindError,
    },
    /// Recording the socket file as the node's resource failed.
    #[error("cannot register the event socket with the node")]
    Register(#[source] crate::node::RegisterError),
    /// Publishing the service descriptor failed (another service may have the name).
    #[error("cannot publish the event service descriptor")]
    Service(#[source] crate::service::CreateError),
}

/// Opening an [`EventNotifier`](super::EventNotifier) failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The event or namespace name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Nobody listens for this event.
    #[error(
        "no listener for event {name:?} in namespace {namespace:?} ({path} is missing or dead); \
         create the EventListener first, or check the namespace"
    )]
    NoListener {
        /// The event name.
        name: String,
        /// The namespace.
        namespace: String,
        /// The socket file looked for.
        path: PathBuf,
    },
    /// This user may not write to the listener's socket file.
    #[error(
        "permission denied on {path}; the listener must grant this user access (its permissions)"
    )]
    PermissionDenied {
        /// The socket file.
        path: PathBuf,
    },
    /// Creating or connecting the socket failed otherwise.
    #[error("cannot open a notifier on {path}")]
    Os {
        /// The socket file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A notification was not delivered.
#[derive(Debug, Error)]
pub enum NotifyError {
    /// The listener is gone (exited, killed, or dropped) and no new one listens.
    #[error(
        "no listener receives event {name:?} any more ({path}); it exited or was killed, restart \
         it (the next notify reconnects)"
    )]
    NoListener {
        /// The event name.
        name: String,
        /// The socket file.
        path: PathBuf,
    },
    /// `try_notify`: the listener's queue is full now.
    #[error("the listener's queue is full; it is not keeping up, retry or use notify_timeout")]
    Full,
    /// The listener's queue stayed full for the whole timeout.
    #[error("timed out: the listener's queue stayed full; is it waiting for events?")]
    Timeout,
    /// This user may not write to the listener's socket any more.
    #[error("permission denied notifying {path}; the listener must grant this user access")]
    PermissionDenied {
        /// The socket file.
        path: PathBuf,
    },
    /// Sending failed otherwise.
    #[error("cannot send the notification")]
    Os(#[source] ipcx_sys::uds::SendError),
}

/// Waiting for an event failed.
#[derive(Debug, Error)]
pub enum WaitError {
    /// A datagram that is not an event arrived; it was dropped and the listener keeps
    /// working.
    #[error(
        "dropped a datagram of {len} bytes on {path}: events are exactly 8 bytes (a little-endian \
         u64); a process of this user is sending garbage"
    )]
    Malformed {
        /// The datagram's real size.
        len: usize,
        /// The listener's socket file.
        path: PathBuf,
    },
    /// Receiving failed.
    #[error("cannot receive on the event socket")]
    Os(#[source] ipcx_sys::uds::RecvError),
}

/// A [`WaitSet`](super::WaitSet) operation failed.
#[derive(Debug, Error)]
pub enum WaitSetError {
    /// The key is already in the set.
    #[error("key {key} is already in the wait set; remove it first or pick another key")]
    DuplicateKey {
        /// The key.
        key: u64,
    },
    /// Creating the epoll instance failed.
    #[error(transparent)]
    Create(#[from] ipcx_sys::epoll::CreateError),
    /// Registering an fd failed.
    #[error("cannot add the fd to the wait set")]
    Register(#[source] ipcx_sys::epoll::CtlError),
    /// Waiting failed.
    #[error(transparent)]
    Wait(#[from] ipcx_sys::epoll::WaitError),
    /// Receiving from a ready listener failed.
    #[error("cannot receive from listener {key}")]
    Recv {
        /// The listener's key.
        key: u64,
        /// Why.
        #[source]
        source: WaitError,
    },
}
