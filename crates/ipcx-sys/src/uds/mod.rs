//! Unix domain sockets: byte streams, message sockets and datagrams between processes on
//! one machine, with peer credentials and fd passing.
//!
//! - [`UdsAddr`](crate::uds::UdsAddr): a validated filesystem path (at most 107 bytes) or
//!   Linux abstract name.
//! - [`UdsListener`](crate::uds::UdsListener) / [`UdsStream`](crate::uds::UdsStream):
//!   `SOCK_STREAM`, ordered bytes without boundaries.
//! - [`UdsSeqpacketListener`](crate::uds::UdsSeqpacketListener) /
//!   [`UdsSeqpacket`](crate::uds::UdsSeqpacket): `SOCK_SEQPACKET`, connected and ordered
//!   messages whose boundaries are kept.
//! - [`UdsDatagram`](crate::uds::UdsDatagram): `SOCK_DGRAM`, connectionless messages;
//!   reliable and ordered on Linux.
//! - [`PeerCred`](crate::uds::PeerCred) (`SO_PEERCRED`) and pidfds of the peer
//!   (`SO_PEERPIDFD`, Linux 6.5+).
//! - fd passing (`SCM_RIGHTS`) on every type: `send_with_fds` / `recv_with_fds`.
//!
//! Lifecycle: binding a path creates a socket file with exactly the configured
//! [`Permissions`](crate::Permissions) (default `0o600`, whatever the umask) and the handle
//! that bound it unlinks it on drop (only if the file is still the one it created). A path
//! left behind by a killed process is reclaimed by
//! [`CreateMode::OpenOrCreate`](crate::CreateMode::OpenOrCreate) once a probe shows nobody
//! listens. Abstract names have no file and no permissions; they vanish with the socket.
//!
//! Every socket is close-on-exec; every send uses `MSG_NOSIGNAL` (a closed peer is an error,
//! never `SIGPIPE`). Every wait has a blocking, a timeout and a non-blocking form; `EINTR`
//! is retried. A message that does not fit the receive buffer, or more fds than the
//! receiver allows, is an error, never a silent truncation.

use rustix::io::Errno;
use thiserror::Error;

mod addr;
mod bind;
mod cred;
mod dgram;
mod fdpass;
mod io;
mod listener;
mod seqpacket;
mod stream;

pub use addr::{AddrError, UdsAddr, MAX_ABSTRACT_LEN, MAX_PATH_LEN};
pub use bind::{is_stale, BindOptions};
pub use cred::PeerCred;
pub use dgram::UdsDatagram;
pub use fdpass::MAX_FDS;
pub use seqpacket::{UdsSeqpacket, UdsSeqpacketListener};
pub use stream::{UdsListener, UdsStream};

/// Creating a socket or socket pair failed.
#[derive(Debug, Error)]
#[error("cannot create unix socket; check RLIMIT_NOFILE (`ipcx doctor`)")]
pub struct SocketError(#[source] pub Errno);

/// Changing a socket option (such as non-blocking mode) or reading one failed.
#[derive(Debug, Error)]
#[error("cannot get or set unix socket option")]
pub struct SockOptError(#[source] pub Errno);

/// Removing a bound socket path failed.
#[derive(Debug, Error)]
#[error("cannot unlink socket path {path}; check write permission on its directory")]
pub struct RemoveError {
    /// The socket path.
    pub path: UdsAddr,
    /// The errno of `unlink`.
    #[source]
    pub source: Errno,
}

/// Binding a socket to an address failed.
#[derive(Debug, Error)]
pub enum BindError {
    /// [`CreateMode::Open`](crate::CreateMode::Open) was asked for; binding always creates.
    #[error(
        "binding creates a socket; use CreateMode::CreateExclusive or OpenOrCreate, or connect to \
         open one"
    )]
    OpenUnsupported,
    /// With `CreateExclusive`, a file already exists at the path.
    #[error(
        "{addr} already exists; remove it or bind with CreateMode::OpenOrCreate to replace a \
         stale socket"
    )]
    AlreadyExists {
        /// The address asked for.
        addr: UdsAddr,
    },
    /// A live socket is bound to the address (or the abstract name is taken).
    #[error("{addr} is in use by a live socket; stop that process or choose another address")]
    InUse {
        /// The address asked for.
        addr: UdsAddr,
    },
    /// Something other than a socket is at the path; it is never deleted.
    #[error(
        "{addr} exists and is not a socket; it was left alone, remove it or choose another path"
    )]
    NotASocket {
        /// The address asked for.
        addr: UdsAddr,
    },
    /// The directory of the path is not writable by this process.
    #[error("no permission to create {addr}; use a directory this user may write")]
    PermissionDenied {
        /// The address asked for.
        addr: UdsAddr,
        /// The errno (`EACCES` or `EPERM`).
        #[source]
        source: Errno,
    },
    /// The directory of the path does not exist.
    #[error("the directory of {addr} does not exist; create it first")]
    NoDirectory {
        /// The address asked for.
        addr: UdsAddr,
        /// The errno (`ENOENT` or `ENOTDIR`).
        #[source]
        source: Errno,
    },
    /// The socket file was created but its mode could not be set; it was removed again.
    #[error("cannot set the mode of {addr}; the socket file was removed")]
    Chmod {
        /// The address asked for.
        addr: UdsAddr,
        /// The errno of `chmod`.
        #[source]
        source: Errno,
    },
    /// The socket could not be created.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// Another failure of `bind`, `listen` or the stale-socket probe.
    #[error("cannot bind unix socket")]
    Os(#[source] Errno),
}

/// Connecting to a socket failed.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// Nothing exists at the path.
    #[error("no socket at {addr}; start the server first or check the path")]
    NotFound {
        /// The address connected to.
        addr: UdsAddr,
    },
    /// The address exists but nobody listens (stale socket file, unbound abstract name).
    #[error(
        "nobody listens at {addr}; start the server (a stale socket file there is reclaimed by \
         binding with OpenOrCreate)"
    )]
    Refused {
        /// The address connected to.
        addr: UdsAddr,
    },
    /// This user may not write the socket file or search its directory.
    #[error(
        "permission denied connecting to {addr}; ask its owner to grant access (its mode or group)"
    )]
    PermissionDenied {
        /// The address connected to.
        addr: UdsAddr,
    },
    /// The socket at the address has another type (stream, seqpacket or datagram).
    #[error("{addr} is a unix socket of another type; connect with the matching type")]
    WrongType {
        /// The address connected to.
        addr: UdsAddr,
    },
    /// The listener's backlog stayed full for the whole timeout.
    #[error("connect timed out: the listener's backlog stayed full; is the server accepting?")]
    Timeout,
    /// The socket could not be created.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// Another failure of `connect`.
    #[error("cannot connect unix socket")]
    Os(#[source] Errno),
}

impl ConnectError {
    /// The errno table of `connect`.
    pub(super) fn from_errno(e: Errno, addr: &UdsAddr) -> ConnectError {
        let addr = addr.clone();
        match e {
            Errno::NOENT | Errno::NOTDIR => ConnectError::NotFound { addr },
            Errno::CONNREFUSED => ConnectError::Refused { addr },
            Errno::ACCESS | Errno::PERM => ConnectError::PermissionDenied { addr },
            Errno::PROTOTYPE => ConnectError::WrongType { addr },
            Errno::AGAIN | Errno::TIMEDOUT => ConnectError::Timeout,
            e => ConnectError::Os(e),
        }
    }
}

/// Accepting a connection failed.
#[derive(Debug, Error)]
pub enum AcceptError {
    /// No connection arrived within the timeout.
    #[error("no connection within the timeout")]
    Timeout,
    /// The process or system is out of file descriptors.
    #[error(
        "out of file descriptors; raise RLIMIT_NOFILE (`ipcx doctor`) or close idle connections"
    )]
    TooManyFiles(#[source] Errno),
    /// Another failure of `accept4` or `poll`.
    #[error("cannot accept unix connection")]
    Os(#[source] Errno),
}

/// Sending failed; nothing of the message was sent.
#[derive(Debug, Error)]
pub enum SendError {
    /// The peer's queue stayed full for the whole timeout.
    #[error("send timed out: the receiver is not draining its socket")]
    Timeout,
    /// The socket is non-blocking and the peer's queue is full; retry later.
    #[error("send would block: the receiver's queue is full; retry later or use send_timeout")]
    WouldBlock,
    /// The peer closed its end.
    #[error("the peer closed the connection; reconnect")]
    PeerClosed,
    /// No socket is bound at the destination any more (datagram sockets).
    #[error("no socket receives at the destination; start the receiver or check the address")]
    NoReceiver,
    /// This user may not write to the destination socket file.
    #[error("permission denied sending to the destination socket; ask its owner to grant access")]
    PermissionDenied,
    /// An unconnected datagram socket was asked to `send` without an address.
    #[error("socket is not connected; call connect first or use send_to")]
    NotConnected,
    /// The message is larger than one message may be on this socket.
    #[error(
        "message of {len} bytes exceeds this socket's limit of {max} bytes (SO_SNDBUF - 32); \
         split it or raise SO_SNDBUF"
    )]
    TooLarge {
        /// Length of the rejected message.
        len: usize,
        /// The largest message this socket can send now.
        max: usize,
    },
    /// Another failure of `send` or `poll`.
    #[error("cannot send on unix socket")]
    Os(#[source] Errno),
}

impl SendError {
    /// The errno table of `send`/`sendto`/`sendmsg`; `max` is only consulted for `EMSGSIZE`.
    pub(super) fn from_errno(e: Errno, len: usize, max: impl FnOnce() -> usize) -> SendError {
        match e {
            Errno::AGAIN => SendError::WouldBlock,
            Errno::PIPE | Errno::CONNRESET => SendError::PeerClosed,
            Errno::CONNREFUSED | Errno::NOENT | Errno::NOTDIR => SendError::NoReceiver,
            Errno::ACCESS | Errno::PERM => SendError::PermissionDenied,
            Errno::NOTCONN | Errno::DESTADDRREQ => SendError::NotConnected,
            Errno::MSGSIZE => SendError::TooLarge { len, max: max() },
            e => SendError::Os(e),
        }
    }
}

/// Receiving failed.
#[derive(Debug, Error)]
pub enum RecvError {
    /// Nothing arrived within the timeout.
    #[error("nothing received within the timeout")]
    Timeout,
    /// The socket is non-blocking and nothing is queued; retry later.
    #[error("receive would block: nothing is queued; retry later or use recv_timeout")]
    WouldBlock,
    /// A message did not fit the buffer; it was consumed and dropped.
    #[error(
        "a message of {size} bytes did not fit the {capacity}-byte buffer and was dropped; \
         receive into a buffer as large as the socket's max_message_size/max_datagram_size"
    )]
    Truncated {
        /// The real size of the message.
        size: usize,
        /// The size of the buffer given.
        capacity: usize,
    },
    /// The peer reset the connection (it closed with unread data).
    #[error("the peer reset the connection; reconnect")]
    PeerReset,
    /// Another failure of `recvmsg` or `poll`.
    #[error("cannot receive on unix socket")]
    Os(#[source] Errno),
}

impl RecvError {
    /// The errno table of `recvmsg`.
    pub(super) fn from_errno(e: Errno) -> RecvError {
        match e {
            Errno::AGAIN => RecvError::WouldBlock,
            Errno::CONNRESET => RecvError::PeerReset,
            e => RecvError::Os(e),
        }
    }
}

/// [`UdsStream::send_all`] stopped before the whole buffer was sent.
#[derive(Debug, Error)]
#[error("sent {sent} of {len} bytes before failing; the stream is now mid-message, close it")]
pub struct SendAllError {
    /// Bytes sent before the failure.
    pub sent: usize,
    /// Bytes asked to be sent.
    pub len: usize,
    /// Why sending stopped.
    #[source]
    pub cause: SendError,
}

/// [`UdsStream::recv_exact`] stopped before the buffer was full.
#[derive(Debug, Error)]
pub enum RecvExactError {
    /// The peer closed the stream first.
    #[error(
        "the peer closed the stream after {received} of {len} bytes; the message is incomplete"
    )]
    Closed {
        /// Bytes received before the end of the stream.
        received: usize,
        /// Bytes asked for.
        len: usize,
    },
    /// Receiving failed (or timed out) part way.
    #[error(
        "received {received} of {len} bytes before failing; the stream is now mid-message, close \
         it"
    )]
    Failed {
        /// Bytes received before the failure.
        received: usize,
        /// Bytes asked for.
        len: usize,
        /// Why receiving stopped.
        #[source]
        cause: RecvError,
    },
}

/// Sending a message with file descriptors failed; no fd was sent.
#[derive(Debug, Error)]
pub enum SendFdsError {
    /// More than [`MAX_FDS`] descriptors in one message.
    #[error(
        "{count} fds in one message; the kernel limit is {MAX_FDS}, send them in several messages"
    )]
    TooManyFds {
        /// How many fds were given.
        count: usize,
    },
    /// fds must travel with at least one data byte (a stream drops them otherwise).
    #[error("fds must be sent with at least one data byte; add a marker byte")]
    EmptyData,
    /// Sending failed.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Receiving a message with file descriptors failed; every fd that arrived was closed.
#[derive(Debug, Error)]
pub enum RecvFdsError {
    /// The message carried more fds than allowed (`MSG_CTRUNC` or a count above the limit).
    #[error(
        "the message carried more fds than the {max_fds} allowed; all were closed, allow more or \
         fix the sender"
    )]
    TooManyFds {
        /// The limit the receiver gave.
        max_fds: usize,
    },
    /// Receiving failed (including a message larger than the buffer).
    #[error(transparent)]
    Recv(#[from] RecvError),
}

/// Reading the peer's credentials or pidfd failed.
#[derive(Debug, Error)]
pub enum CredError {
    /// The kernel lacks the option (`SO_PEERPIDFD` needs Linux 6.5).
    #[error(
        "this kernel cannot report the peer's pidfd (needs Linux 6.5+); use peer_cred instead"
    )]
    Unsupported,
    /// The peer process has exited and been reaped.
    #[error("the peer process is gone")]
    PeerGone,
    /// The socket has no peer (not connected, or an unconnected datagram socket).
    #[error("the socket has no peer; connect it first")]
    NotConnected,
    /// Another failure of `getsockopt`.
    #[error("cannot read peer credentials")]
    Os(#[source] Errno),
}

impl CredError {
    /// The errno table of `getsockopt(SO_PEERCRED / SO_PEERPIDFD)`.
    pub(super) fn from_errno(e: Errno) -> CredError {
        match e {
            Errno::NOPROTOOPT => CredError::Unsupported,
            Errno::SRCH => CredError::PeerGone,
            Errno::NOTCONN | Errno::NODATA => CredError::NotConnected,
            e => CredError::Os(e),
        }
    }
}
