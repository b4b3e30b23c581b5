//! Channels: ordered, bidirectional message connections between two processes, over any
//! transport, with one API.
//!
//! A process listens under a name (in a [`Namespace`]) with a [`Transport`]; another
//! connects to the same name and transport. Connecting runs the handshake
//! ([`handshake`](crate::handshake)): protocol version, contract and maximum message size are
//! agreed or the connection is refused with an error naming both sides' values. Then both
//! ends [`send`](Channel::send) and [`recv`](Channel::recv) messages, which arrive whole, in
//! order, exactly once, or not at all with an error saying why.
//!
//! | transport | data path | rendezvous | message limit |
//! |---|---|---|---|
//! | `shm` | two SPSC rings + futex doorbells in a memfd | unix socket (fd passing) | ring size |
//! | `uds-stream` | unix stream socket, framed | the same socket | `max_message` |
//! | `uds-seqpacket` | unix seqpacket socket, one message per frame | the same socket | socket buffer |
//! | `pipe` | two anonymous pipes, framed | unix socket (fd passing) | `max_message` |
//! | `fifo` | two FIFOs in the namespace directory, framed | unix socket | `max_message` |
//! | `posix-mq` | two POSIX message queues | unix socket | `msgsize_max` |
//! | `sysv-msg` | one System V queue, one message type per direction | unix socket | `min(msgmax, msgmnb)` |
//! | `tcp` | TCP socket (loopback unless told), framed | the same socket | `max_message` |
//!
//! Every wait has a blocking, a timeout and a non-blocking form, and a blocked operation ends
//! when the peer dies ([`RecvError::PeerGone`], [`SendError::PeerGone`]).
//!
//! ```no_run
//! use ipcx::channel::{Channel, Transport};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Process A
//! let mut listener = Channel::builder("sensors", Transport::Shm).listen()?;
//! let mut a = listener.accept()?;
//! // Process B
//! let mut b = Channel::builder("sensors", Transport::Shm).connect()?;
//! b.send(b"hello")?;
//! assert_eq!(a.recv()?, b"hello");
//! # Ok(()) }
//! ```

mod builder;
mod core;
mod error;
mod handshake_io;
mod link;
mod pod;
mod transport;
mod typed;

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

pub use builder::{
    raw_contract, ChannelBuilder, Listener, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_MESSAGE,
};
pub use error::{AcceptError, ConnectError, ListenError, RecvError, SendError};
pub use link::PEER_CHECK_INTERVAL;
pub use pod::{PodChannel, PodMessage, PodSizeError};
pub use typed::{TypedChannel, TypedError};

use self::core::Core;
pub(crate) use self::core::Reply;
use crate::contract::ContractId;
pub(crate) use builder::read_addr_file;
pub(crate) use link::Deadline;
pub(crate) use transport::{sweep_orphan_queues, Link};

/// How messages travel. See the [module docs](self) for what each uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Shared-memory rings with futex doorbells (zero copy on receive).
    Shm,
    /// Unix stream socket.
    UdsStream,
    /// Unix seqpacket socket.
    UdsSeqpacket,
    /// Two anonymous pipes, handed over by fd passing.
    Pipe,
    /// Two named pipes.
    Fifo,
    /// Two POSIX message queues.
    PosixMq,
    /// A System V message queue.
    SysvMsg,
    /// TCP (loopback by default).
    Tcp,
}

impl Transport {
    /// Every transport, in a fixed order.
    pub const ALL: [Transport; 8] = [
        Transport::Shm,
        Transport::UdsStream,
        Transport::UdsSeqpacket,
        Transport::Pipe,
        Transport::Fifo,
        Transport::PosixMq,
        Transport::SysvMsg,
        Transport::Tcp,
    ];

    /// The transport's name, as `FromStr` and the CLI spell it.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Shm => "shm",
            Transport::UdsStream => "uds-stream",
            Transport::UdsSeqpacket => "uds-seqpacket",
            Transport::Pipe => "pipe",
            Transport::Fifo => "fifo",
            Transport::PosixMq => "posix-mq",
            Transport::SysvMsg => "sysv-msg",
            Transport::Tcp => "tcp",
        }
    }

    /// What to do when a message is too large for this transport.
    pub(crate) fn size_hint(self) -> &'static str {
        match self {
            Transport::PosixMq => {
                "raise /proc/sys/fs/mqueue/msgsize_max and max_message, or use shm or uds-stream"
            }
            Transport::SysvMsg => "raise kernel.msgmax and max_message, or use shm or uds-stream",
            Transport::UdsSeqpacket => {
                "raise max_message up to the socket limit, or use uds-stream"
            }
            _ => "raise max_message on both sides",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown transport name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport {0:?}; use one of shm, uds-stream, uds-seqpacket, pipe, fifo, posix-mq, sysv-msg, tcp")]
pub struct UnknownTransport(pub String);

impl std::str::FromStr for Transport {
    type Err = UnknownTransport;

    fn from_str(s: &str) -> Result<Transport, UnknownTransport> {
        Transport::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownTransport(s.to_owned()))
    }
}

/// When a send returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendMode {
    /// Once the message is queued for the peer.
    #[default]
    Buffered,
    /// Once the peer's user has received the message (the peer acknowledges it).
    Acknowledged,
}

/// What the peer said about itself in the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's process id (as it announced it; 0 if not visible).
    pub pid: u32,
    /// The peer's user id (from `SO_PEERCRED` where a unix socket is involved, else as
    /// announced).
    pub uid: u32,
    /// The peer's contract.
    pub contract: ContractId,
}

/// One end of an established channel. Not `Sync`: one thread uses it at a time.
pub struct Channel {
    core: Core,
    peer: PeerInfo,
    contract: ContractId,
}

impl Channel {
    /// Starts describing a channel named `name` over `transport`; finish with
    /// [`ChannelBuilder::listen`] or [`ChannelBuilder::connect`].
    pub fn builder(name: &str, transport: Transport) -> ChannelBuilder {
        ChannelBuilder::new(name, transport)
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.core.transport
    }

    /// The peer, as the handshake described it.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// Our contract (the peer's is compatible: same name, major version and fingerprint).
    pub fn contract(&self) -> &ContractId {
        &self.contract
    }

    /// The largest message this end may send (agreed at connect).
    pub fn max_message(&self) -> usize {
        self.core.max_message()
    }

    /// The mode of [`send`](Self::send), [`send_timeout`](Self::send_timeout) and
    /// [`try_send`](Self::try_send).
    pub fn send_mode(&self) -> SendMode {
        self.core.mode()
    }

    /// Changes the mode of the plain send calls.
    pub fn set_send_mode(&mut self, mode: SendMode) {
        self.core.set_mode(mode);
    }

    /// Sends `msg`, waiting as long as it takes for room (and, when acknowledged, for the
    /// peer to take it). Ends with [`SendError::PeerGone`] if the peer dies.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let mode = self.core.mode();
        self.core.send(msg, &[], mode, Deadline::Never)
    }

    /// Like [`send`](Self::send), giving up after `timeout`.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        let mode = self.core.mode();
        self.core.send(msg, &[], mode, Deadline::after(Some(timeout)))
    }

    /// Sends `msg` if there is room now ([`SendError::Full`] otherwise). When acknowledged,
    /// the acknowledgement must be there at once too.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let mode = self.core.mode();
        self.core.send(msg, &[], mode, Deadline::Now)
    }

    /// Sends `msg` in `mode`, waiting at most `timeout` (`None`: as long as it takes).
    pub fn send_with(
        &mut self,
        msg: &[u8],
        mode: SendMode,
        timeout: Option<Duration>,
    ) -> Result<(), SendError> {
        self.core.send(msg, &[], mode, Deadline::after(timeout))
    }

    /// [`send_with`](Self::send_with) of the message `head` followed by `body`, without
    /// copying them together first (the RPC adapters' envelope header and request).
    pub(crate) fn send_parts(
        &mut self,
        head: &[u8],
        body: &[u8],
        mode: SendMode,
        timeout: Option<Duration>,
    ) -> Result<(), SendError> {
        self.core.send_parts([head, body], &[], mode, Deadline::after(timeout))
    }

    /// Sends `msg` with `fds` attached (`SCM_RIGHTS`; `uds-stream` and `uds-seqpacket` only,
    /// at most 253 fds, messages of at most 64 KiB on `uds-stream`), in the channel's send
    /// mode, waiting at most `timeout`. The peer gets duplicates of the fds with
    /// [`recv_fds`](Self::recv_fds).
    pub fn send_fds(
        &mut self,
        msg: &[u8],
        fds: &[BorrowedFd<'_>],
        timeout: Option<Duration>,
    ) -> Result<(), SendError> {
        let mode = self.core.mode();
        self.core.send(msg, fds, mode, Deadline::after(timeout))
    }

    /// Receives the next message and the fds that came with it (none for a message sent
    /// without fds), waiting at most `timeout`. The other receive calls close the fds of the
    /// messages they return.
    pub fn recv_fds(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), RecvError> {
        let msg = self.recv_owned(Deadline::after(timeout))?;
        Ok((msg, self.core.take_last_fds()))
    }

    /// Receives the next message as an owned buffer, waiting as long as it takes.
    pub fn recv(&mut self) -> Result<Vec<u8>, RecvError> {
        self.recv_owned(Deadline::Never)
    }

    /// Like [`recv`](Self::recv), giving up after `timeout` ([`RecvError::Timeout`]).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        self.recv_owned(Deadline::after(Some(timeout)))
    }

    /// The next message if one is there now ([`RecvError::Empty`] otherwise).
    pub fn try_recv(&mut self) -> Result<Vec<u8>, RecvError> {
        self.recv_owned(Deadline::Now)
    }

    /// Receives the next message into `buf`, returning its length; waits at most `timeout`
    /// (`None`: as long as it takes; zero: not at all). A message larger than `buf` stays
    /// queued ([`RecvError::BufferTooSmall`]).
    pub fn recv_into(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<usize, RecvError> {
        let capacity = buf.len();
        let mut len = 0;
        let got = self.core.recv(Deadline::after(timeout), |msg| {
            len = msg.len();
            let dst = buf.get_mut(..msg.len())?;
            dst.copy_from_slice(msg);
            Some(msg.len())
        })?;
        got.ok_or(RecvError::BufferTooSmall { len, capacity })
    }

    /// Receives the next message and passes it to `f`, in place where the transport allows
    /// (`shm`: the bytes are in the shared ring, no copy); waits at most `timeout` (`None`:
    /// as long as it takes; zero: not at all). The message counts as taken (and is
    /// acknowledged) when `f` returns.
    pub fn recv_in_place<R>(
        &mut self,
        timeout: Option<Duration>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, RecvError> {
        let got = self.core.recv(Deadline::after(timeout), |msg| Some(f(msg)))?;
        Ok(got.expect("a function that always accepts never leaves the message queued"))
    }

    /// [`recv_in_place`](Self::recv_in_place) until `deadline` (`None`: no deadline), an
    /// instant the caller already has: for the RPC adapters, which keep their own clock and
    /// so spare a clock read per message.
    pub(crate) fn recv_in_place_until<R>(
        &mut self,
        deadline: Option<Instant>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, RecvError> {
        let deadline = deadline.map_or(Deadline::Never, Deadline::At);
        let got = self.core.recv(deadline, |msg| Some(f(msg)))?;
        Ok(got.expect("a function that always accepts never leaves the message queued"))
    }

    /// A server's step (see [`Core::recv_reply`]): receives until `deadline` (`None`: no
    /// deadline) into `f`, which may leave a reply in `head` and `body` to be sent at once.
    pub(crate) fn recv_reply_until<R>(
        &mut self,
        deadline: Option<Instant>,
        head: &mut Vec<u8>,
        body: &mut Vec<u8>,
        f: impl FnOnce(&[u8], &mut Vec<u8>, &mut Vec<u8>) -> (R, bool),
    ) -> Result<(R, Reply), RecvError> {
        self.core.recv_reply(deadline.map_or(Deadline::Never, Deadline::At), head, body, f)
    }

    /// Receives the next message as an owned buffer.
    fn recv_owned(&mut self, deadline: Deadline) -> Result<Vec<u8>, RecvError> {
        let got = self.core.recv(deadline, |msg| Some(msg.to_vec()))?;
        Ok(got.expect("a function that always accepts never leaves the message queued"))
    }
}

impl Channel {
    /// The fds an event loop may wait on before retrying a `try_` call (see
    /// [`link::Readiness`]); `None` on transports that wait on a futex or a System V queue.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn readiness(&self) -> Option<link::Readiness<'_>> {
        self.core.readiness()
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.core.close();
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("transport", &self.core.transport)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}
