//! The seam between the channel core and a transport.
//!
//! A link moves whole frames (a [`frame`](crate::frame) header, then the payload) in order,
//! in both directions, and knows three things only it can know: its size limit, how to wait
//! with a deadline, and how to tell that the peer is gone. Everything else — sequence
//! numbers, acknowledgements, the handshake, validation of the header — is the core's
//! (`channel::core`), written once for every transport.
//!
//! Rules every link follows:
//! - `send` writes the frame completely or not at all (a message transport sends one
//!   message; a byte stream may have written part of it only when it then reports
//!   [`LinkError::Broken`] or [`LinkError::PeerGone`], after which the channel is dead).
//! - `recv` hands the callback exactly one frame's bytes, header included. Byte streams find
//!   the boundary with [`FrameHeader::decode`](crate::frame::FrameHeader::decode) under the
//!   link's `max_frame`; message transports hand over the message as received.
//! - [`LinkError::PeerGone`] is reported only once nothing sent by the peer before it went
//!   away is left to read.
//! - [`Deadline::Now`] never blocks; [`Deadline::Never`] blocks until something happens,
//!   including the peer's death (a link must not hang on a dead peer).

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use thiserror::Error;

/// How long an operation may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Do not wait: fail with [`LinkError::Timeout`] at once if the operation cannot
    /// complete.
    Now,
    /// Wait until this instant.
    At(Instant),
    /// Wait as long as it takes (the peer's death still ends the wait).
    Never,
}

impl Deadline {
    /// The deadline `timeout` from now (`None`: no deadline).
    pub fn after(timeout: Option<Duration>) -> Deadline {
        match timeout {
            None => Deadline::Never,
            Some(d) if d.is_zero() => Deadline::Now,
            Some(d) => Instant::now().checked_add(d).map_or(Deadline::Never, Deadline::At),
        }
    }

    /// Time left: `None` for no deadline, zero when it has passed.
    pub fn remaining(self) -> Option<Duration> {
        match self {
            Deadline::Now => Some(Duration::ZERO),
            Deadline::At(t) => Some(t.saturating_duration_since(Instant::now())),
            Deadline::Never => None,
        }
    }

    /// Time left, but at most `slice`: for waits that wake up now and then to check on the
    /// peer. `None` when the deadline has passed.
    pub fn slice(self, slice: Duration) -> Option<Duration> {
        match self.remaining() {
            None => Some(slice),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d.min(slice)),
        }
    }

    /// Whether the deadline has passed.
    pub fn expired(self) -> bool {
        self.remaining().is_some_and(|d| d.is_zero())
    }
}

/// How often a link that cannot wait on the peer's death directly (shared memory, System V
/// queues, POSIX queues) wakes up to check on it: the longest a blocked operation takes to
/// notice a dead peer.
pub const PEER_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// A link operation failed.
#[derive(Debug, Error)]
pub enum LinkError {
    /// The deadline passed (or, with [`Deadline::Now`], the operation would have blocked).
    #[error("timed out")]
    Timeout,
    /// The peer closed its end or died, and nothing it sent is left to read.
    #[error("the peer is gone")]
    PeerGone,
    /// The frame is larger than this transport carries.
    #[error("frame of {len} bytes exceeds this transport's limit of {max} bytes")]
    TooLarge {
        /// Frame size (header and payload).
        len: usize,
        /// The largest frame the link carries.
        max: usize,
    },
    /// The peer sent bytes that break the protocol; the link is unusable.
    #[error("the peer broke the protocol")]
    Broken(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// This transport cannot carry file descriptors.
    #[error("this transport cannot pass file descriptors")]
    FdsUnsupported,
    /// The operating system refused an operation.
    #[error("{op} failed")]
    Os {
        /// What was being done ("sendmsg on the data socket", ...).
        op: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl LinkError {
    /// The peer broke the protocol, as `why` says.
    pub fn broken(why: impl std::error::Error + Send + Sync + 'static) -> Self {
        LinkError::Broken(Box::new(why))
    }

    /// An OS error of operation `op`.
    pub fn os(op: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        LinkError::Os { op, source: Box::new(source) }
    }
}

/// What the core asks of a transport. Implemented by one type per transport; the channel
/// holds them in an enum (`Link`), so calls are matched, not dynamically dispatched.
pub trait LinkOps {
    /// The largest frame (header and payload) this link carries in either direction.
    fn max_frame(&self) -> usize;

    /// Sends one frame made of `parts` concatenated (the header, then the payload).
    fn send(&mut self, parts: &[&[u8]], deadline: Deadline) -> Result<(), LinkError>;

    /// Receives the next frame and passes its bytes (header included) to `f`. The bytes may
    /// live in shared memory (zero copy): `f` must not keep them.
    fn recv<R>(&mut self, deadline: Deadline, f: impl FnOnce(&[u8]) -> R) -> Result<R, LinkError>;

    /// Sends one frame with `fds` attached (unix socket links only).
    fn send_fds(
        &mut self,
        _parts: &[&[u8]],
        _fds: &[BorrowedFd<'_>],
        _deadline: Deadline,
    ) -> Result<(), LinkError> {
        Err(LinkError::FdsUnsupported)
    }

    /// The oldest batch of fds received and not yet taken (`None`: none is queued).
    fn take_fds(&mut self) -> Option<Vec<OwnedFd>> {
        None
    }

    /// The fds whose readability (`read`) or writability (`write`) may end a would-block
    /// receive or send, for event loops; `None` if the link waits on something else (a
    /// futex, a System V queue). A readable fd means "try again", not "a frame is there".
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    fn readiness(&self) -> Option<Readiness<'_>> {
        None
    }
}

/// What an event loop waits on for a link (see [`LinkOps::readiness`]).
#[derive(Debug)]
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub struct Readiness<'a> {
    /// Readable: a receive may now succeed (or find the peer gone).
    pub read: Vec<BorrowedFd<'a>>,
    /// Writable: a send may now succeed.
    pub write: Vec<BorrowedFd<'a>>,
}
