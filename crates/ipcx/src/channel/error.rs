//! Errors of channel operations: one enum per operation.

use std::path::PathBuf;

use thiserror::Error;

use super::link::LinkError;
use super::Transport;
use crate::namespace::{DirError, NameError};

/// Boxed source error.
type Source = Box<dyn std::error::Error + Send + Sync>;

/// [`Listener`](super::Listener) could not start listening.
#[derive(Debug, Error)]
pub enum ListenError {
    /// The endpoint or namespace name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The namespace's runtime directory could not be prepared.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// A live listener already serves this name and transport.
    #[error("another listener already serves {name:?} over {transport} ({path}); pick another name or stop it")]
    InUse {
        /// Endpoint name.
        name: String,
        /// Its transport.
        transport: Transport,
        /// The socket or address file.
        path: PathBuf,
    },
    /// The options do not fit this transport.
    #[error("{0}")]
    Options(&'static str),
    /// The operating system refused.
    #[error("{op} failed")]
    Os {
        /// What was being done.
        op: &'static str,
        /// Why.
        #[source]
        source: Source,
    },
}

/// Connecting (or accepting, from the listener's side) failed.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The endpoint or namespace name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The namespace's runtime directory could not be prepared.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// Nobody listens under this name and transport.
    #[error("no listener for {name:?} over {transport} in namespace {namespace:?} ({path} is missing or dead); start the listener first, or check the namespace and transport")]
    NoListener {
        /// Endpoint name.
        name: String,
        /// Namespace.
        namespace: String,
        /// Transport.
        transport: Transport,
        /// Where the listener was looked for.
        path: PathBuf,
    },
    /// The handshake refused the connection; the message names both sides' values.
    #[error("connection refused: {0}")]
    Refused(String),
    /// The peer's handshake bytes were invalid.
    #[error("the peer's handshake is invalid")]
    Handshake(#[source] Source),
    /// The deadline passed before the connection was established.
    #[error("timed out while connecting; is the listener accepting?")]
    Timeout,
    /// The peer went away during the handshake.
    #[error("the peer closed the connection during the handshake")]
    PeerGone,
    /// The requested maximum message size exceeds what the transport carries.
    #[error("max message size {requested} exceeds the {transport} limit of {limit} bytes; {hint}")]
    TooLarge {
        /// What was asked for.
        requested: usize,
        /// What the transport carries.
        limit: usize,
        /// The transport.
        transport: Transport,
        /// What to do.
        hint: &'static str,
    },
    /// The operating system refused.
    #[error("{op} failed")]
    Os {
        /// What was being done.
        op: &'static str,
        /// Why.
        #[source]
        source: Source,
    },
}

impl ConnectError {
    /// An OS error of operation `op`.
    pub(crate) fn os(op: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ConnectError::Os { op, source: Box::new(e) }
    }
}

impl From<LinkError> for ConnectError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Timeout => ConnectError::Timeout,
            LinkError::PeerGone => ConnectError::PeerGone,
            LinkError::TooLarge { len, max } => ConnectError::Handshake(
                format!("handshake frame of {len} bytes exceeds {max}").into(),
            ),
            LinkError::Broken(e) => ConnectError::Handshake(e),
            e @ LinkError::FdsUnsupported => ConnectError::Handshake(Box::new(e)),
            LinkError::Os { op, source } => ConnectError::Os { op, source },
        }
    }
}

/// [`Listener::accept`](super::Listener::accept) failed.
#[derive(Debug, Error)]
pub enum AcceptError {
    /// Nobody connected before the deadline.
    #[error("no connection within the timeout")]
    Timeout,
    /// Setting up a connection failed after the peer was accepted by the socket.
    #[error("setting up an accepted connection failed")]
    Setup(#[source] ConnectError),
    /// The operating system refused.
    #[error("{op} failed")]
    Os {
        /// What was being done.
        op: &'static str,
        /// Why.
        #[source]
        source: Source,
    },
}

/// A send failed. The message was not sent unless the variant says otherwise.
#[derive(Debug, Error)]
pub enum SendError {
    /// `try_send`: no room now.
    #[error("the channel is full; retry, or use send/send_timeout to wait for room")]
    Full,
    /// No room (or, when acknowledged, no acknowledgement) before the timeout. An
    /// acknowledged message may have been queued and even read: the peer did not confirm.
    #[error("timed out: the receiver did not take the message in time")]
    Timeout,
    /// The message exceeds the largest message this channel carries.
    #[error(
        "message of {len} bytes exceeds this {transport} channel's limit of {max} bytes; {hint}"
    )]
    TooLarge {
        /// Message length.
        len: usize,
        /// The limit agreed at connect.
        max: usize,
        /// The transport.
        transport: Transport,
        /// What to do.
        hint: &'static str,
    },
    /// The peer died or closed the connection.
    #[error("the peer is gone (it exited or closed the channel); reconnect")]
    PeerGone,
    /// File descriptors can travel only on unix socket transports.
    #[error(
        "the {transport} transport cannot pass file descriptors; use uds-stream or uds-seqpacket"
    )]
    FdsUnsupported {
        /// The transport.
        transport: Transport,
    },
    /// The peer broke the protocol; the channel is closed.
    #[error("the peer broke the protocol; the channel is closed")]
    Broken(#[source] Source),
    /// Encoding a typed message failed.
    #[error("cannot encode the message")]
    Encode(#[source] Source),
    /// The operating system refused.
    #[error("{op} failed")]
    Os {
        /// What was being done.
        op: &'static str,
        /// Why.
        #[source]
        source: Source,
    },
}

/// A receive failed.
#[derive(Debug, Error)]
pub enum RecvError {
    /// `try_recv`: nothing queued now.
    #[error("nothing to receive now; use recv/recv_timeout to wait")]
    Empty,
    /// Nothing arrived before the timeout.
    #[error("nothing received within the timeout")]
    Timeout,
    /// The peer closed the channel cleanly after everything it sent was received.
    #[error("the peer closed the channel")]
    Closed,
    /// The peer died (or vanished without closing) and everything it sent was received.
    #[error("the peer is gone (it exited without closing the channel)")]
    PeerGone,
    /// The caller's buffer is smaller than the message; the message stays queued.
    #[error("message of {len} bytes does not fit the {capacity}-byte buffer; it stays queued, receive it into a larger buffer or with recv()")]
    BufferTooSmall {
        /// Message length.
        len: usize,
        /// Buffer length.
        capacity: usize,
    },
    /// The peer broke the protocol (garbage, a forged length, a corrupt ring); the channel
    /// is closed.
    #[error("the peer broke the protocol; the channel is closed")]
    Broken(#[source] Source),
    /// Decoding a typed message failed; the message was consumed.
    #[error("cannot decode the message")]
    Decode(#[source] Source),
    /// The operating system refused.
    #[error("{op} failed")]
    Os {
        /// What was being done.
        op: &'static str,
        /// Why.
        #[source]
        source: Source,
    },
}
