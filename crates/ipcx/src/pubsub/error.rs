//! Errors of publishers and subscribers.

use std::path::PathBuf;

use thiserror::Error;

use super::layout::BellError;
use super::Policy;
use crate::contract::ContractError;
use crate::node::{NodeId, RegisterError};
use crate::service::{OpenError as ServiceOpenError, OpenOrCreateError};
use crate::{DecodeError, EncodeError};

/// Creating a publisher failed.
#[derive(Debug, Error)]
pub enum CreateError {
    /// The message type has no usable contract.
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// The history asked for is larger than a ring can index.
    #[error(
        "history of {history} messages asked for; a publisher keeps at most {max}: lower \
         PubSubConfig::history"
    )]
    HistoryTooLarge {
        /// The history asked for.
        history: u32,
        /// Largest history.
        max: u32,
    },
    /// The service exists with another history size.
    #[error(
        "service {service:?} keeps a history of {theirs} messages, we asked for {ours}; \
         publish with history {theirs} or use another service name"
    )]
    History {
        /// The service.
        service: String,
        /// Our history.
        ours: u32,
        /// The service's history (as its descriptor spells it).
        theirs: String,
    },
    /// The configuration cannot be laid out.
    #[error(
        "a ring of {capacity} messages of {max_message} bytes with {max_subscribers} \
         subscriber slots is impossible; use 1..=64 subscribers and a smaller capacity or \
         max_message"
    )]
    BadConfig {
        /// Messages asked for.
        capacity: u64,
        /// Largest message asked for.
        max_message: usize,
        /// Reader slots asked for.
        max_subscribers: u32,
    },
    /// Creating or opening the service failed (e.g. another contract, see its message).
    #[error(transparent)]
    Service(#[from] OpenOrCreateError),
    /// The service exists with another back-pressure policy.
    #[error(
        "service {service:?} uses policy {theirs}, we asked for {ours}; publish with policy \
         {theirs} or use another service name"
    )]
    Policy {
        /// The service.
        service: String,
        /// Our policy.
        ours: Policy,
        /// The service's policy (as its descriptor spells it).
        theirs: String,
    },
    /// Creating a shm segment failed.
    #[error("cannot create the publisher's shm segment")]
    Segment(#[source] ipcx_shm::segment::CreateError),
    /// The service's bell segment exists but cannot be used.
    #[error("cannot open the service's doorbell segment")]
    Bell(#[source] BellError),
    /// Placing the ring or a doorbell failed (a bug in the layout).
    #[error("cannot lay out the publisher's segment: {0}")]
    Layout(String),
    /// Registering a resource with the node failed.
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// Writing the publisher's record failed.
    #[error(
        "cannot write publisher record {path:?}; check that the namespace directory is writable"
    )]
    Io {
        /// The record's path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A message could not be sent; the message is handed back.
#[derive(Error)]
pub enum SendError<M> {
    /// `Block`: the slowest live subscriber still held the space at the deadline; `Fail`:
    /// a subscriber holds it now.
    #[error(
        "the publisher's ring is full: the slowest live subscriber has not caught up; retry, \
         wait longer, or use Policy::DropOldest"
    )]
    Full(M),
    /// The encoded message is larger than the ring carries.
    #[error(
        "message of {len} bytes exceeds this publisher's largest message ({max} bytes); \
         raise PubSubConfig::max_message"
    )]
    TooLarge {
        /// The message.
        msg: M,
        /// Its encoded length.
        len: usize,
        /// The largest message.
        max: usize,
    },
    /// The message could not be encoded.
    #[error("message not sent")]
    Encode {
        /// The message.
        msg: M,
        /// Why.
        #[source]
        source: EncodeError,
    },
    /// The ring in shared memory is corrupt (another process scribbled on it).
    #[error(
        "message not sent: the publisher's ring is corrupt; drop the publisher and recreate it"
    )]
    Corrupt {
        /// The message.
        msg: M,
        /// What was found.
        #[source]
        source: ipcx_shm::ring::Corrupt,
    },
}

impl<M> SendError<M> {
    /// The same error with the message mapped.
    pub fn map<N>(self, f: impl FnOnce(M) -> N) -> SendError<N> {
        match self {
            SendError::Full(msg) => SendError::Full(f(msg)),
            SendError::TooLarge { msg, len, max } => SendError::TooLarge { msg: f(msg), len, max },
            SendError::Encode { msg, source } => SendError::Encode { msg: f(msg), source },
            SendError::Corrupt { msg, source } => SendError::Corrupt { msg: f(msg), source },
        }
    }

    /// The message that was not sent.
    pub fn into_inner(self) -> M {
        match self {
            SendError::Full(msg)
            | SendError::TooLarge { msg, .. }
            | SendError::Encode { msg, .. }
            | SendError::Corrupt { msg, .. } => msg,
        }
    }
}

impl<M> std::fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("Full(..)"),
            SendError::TooLarge { len, max, .. } => {
                f.debug_struct("TooLarge").field("len", len).field("max", max).finish()
            }
            SendError::Encode { source, .. } => {
                f.debug_struct("Encode").field("source", source).finish()
            }
            SendError::Corrupt { source, .. } => {
                f.debug_struct("Corrupt").field("source", source).finish()
            }
        }
    }
}

/// No loan could be made.
#[derive(Debug, Error)]
pub enum LoanError {
    /// As [`SendError::Full`].
    #[error(
        "the publisher's ring is full: the slowest live subscriber has not caught up; retry, \
         wait longer, or use Policy::DropOldest"
    )]
    Full,
    /// As [`SendError::TooLarge`].
    #[error(
        "loan of {len} bytes exceeds this publisher's largest message ({max} bytes); raise \
         PubSubConfig::max_message"
    )]
    TooLarge {
        /// Bytes asked for.
        len: usize,
        /// The largest message.
        max: usize,
    },
    /// As [`SendError::Corrupt`].
    #[error("the publisher's ring is corrupt; drop the publisher and recreate it")]
    Corrupt(#[source] ipcx_shm::ring::Corrupt),
}

/// Opening a subscriber failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The message type has no usable contract.
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// The service is absent or does not match (the message names both contracts).
    #[error(transparent)]
    Service(#[from] ServiceOpenError),
    /// The service's bell cannot be opened.
    #[error("cannot open the doorbell of service {service:?}")]
    Bell {
        /// The service.
        service: String,
        /// Why.
        #[source]
        source: BellError,
    },
}

/// Nothing was received, or an event interrupts the stream of messages.
#[derive(Debug, Error)]
pub enum RecvError {
    /// No message came in time (`try_recv`: none was ready).
    #[error("no message within the timeout")]
    Timeout,
    /// `DropOldest`: a publisher overwrote `missed` messages before we read them. Just
    /// receive again: the next message is the oldest one still in that ring.
    #[error("subscriber fell behind: publisher {publisher} overwrote {missed} messages; read faster or raise the capacity")]
    Lagged {
        /// Messages lost.
        missed: u64,
        /// The publisher's node.
        publisher: NodeId,
    },
    /// A publisher left or died, and everything it sent was read: reported once per
    /// publisher. Receive again for the others (and publishers appearing later).
    #[error("publisher {publisher} is gone; its messages were all read")]
    PublisherGone {
        /// The publisher's node.
        publisher: NodeId,
    },
    /// A message did not decode as the contract's type: it was consumed and skipped.
    #[error("a message from publisher {publisher} does not decode; it was skipped")]
    Decode {
        /// The publisher's node.
        publisher: NodeId,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// A publisher's ring is corrupt: it was dropped from the set.
    #[error("publisher {publisher}'s ring is corrupt and was dropped; ask it to restart")]
    Corrupt {
        /// The publisher's node.
        publisher: NodeId,
        /// What was found.
        #[source]
        source: ipcx_shm::ring::Corrupt,
    },
    /// Waiting on the service's doorbell failed.
    #[error("waiting on the service's doorbell failed")]
    Wait(#[source] ipcx_shm::WaitError),
}
