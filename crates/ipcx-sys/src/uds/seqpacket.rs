//! `SOCK_SEQPACKET` Unix sockets: connected, ordered, reliable messages whose boundaries
//! are kept. Each `send` is one message, delivered whole to one `recv`; a message larger
//! than the receive buffer is an error ([`RecvError::Truncated`] with its real size), never
//! a silent cut. One message is at most [`UdsSeqpacket::max_message_size`] bytes.
//! `recv` returning 0 means the peer closed (an empty message reads the same, so ipcx
//! protocols never send empty messages).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::net::SocketType;

use super::bind::BindOptions;
use super::io::{self, Wait};
use super::listener::Listener;
use super::{
    cred, fdpass, AcceptError, BindError, ConnectError, CredError, PeerCred, RecvError,
    RecvFdsError, RemoveError, SendError, SendFdsError, SockOptError, SocketError, UdsAddr,
};

/// A listening seqpacket socket. It unlinks the socket file it created when dropped.
#[derive(Debug)]
pub struct UdsSeqpacketListener {
    inner: Listener,
}

impl UdsSeqpacketListener {
    /// Binds `addr` and listens, following `opts` (see [`BindOptions`]).
    pub fn bind(addr: &UdsAddr, opts: &BindOptions) -> Result<UdsSeqpacketListener, BindError> {
        Ok(UdsSeqpacketListener { inner: Listener::bind(SocketType::SEQPACKET, addr, opts)? })
    }

    /// Waits as long as it takes for a connection.
    pub fn accept(&self) -> Result<UdsSeqpacket, AcceptError> {
        self.inner.accept(Wait::Blocking).map(UdsSeqpacket::from_fd)
    }

    /// Waits up to `timeout` for a connection.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<UdsSeqpacket, AcceptError> {
        self.inner.accept(Wait::timeout(timeout)).map(UdsSeqpacket::from_fd)
    }

    /// Takes a pending connection if there is one, without waiting.
    pub fn try_accept(&self) -> Result<Option<UdsSeqpacket>, AcceptError> {
        let r = self.inner.accept(Wait::Never).map(UdsSeqpacket::from_fd);
        io::would_block_to_none(r, |e| matches!(e, AcceptError::Timeout))
    }

    /// The address this listener is bound to.
    pub fn local_addr(&self) -> &UdsAddr {
        self.inner.addr()
    }

    /// Unlinks the socket file now; connections already queued can still be accepted.
    pub fn remove(&mut self) -> Result<(), RemoveError> {
        self.inner.remove()
    }
}

impl AsFd for UdsSeqpacketListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

/// A connected seqpacket socket (blocking unless [`UdsSeqpacket::set_nonblocking`] is used).
#[derive(Debug)]
pub struct UdsSeqpacket {
    fd: OwnedFd,
}

impl UdsSeqpacket {
    /// Connects to the listener at `addr`, waiting as long as its backlog is full.
    pub fn connect(addr: &UdsAddr) -> Result<UdsSeqpacket, ConnectError> {
        io::connect_new(SocketType::SEQPACKET, addr, None).map(UdsSeqpacket::from_fd)
    }

    /// Connects to `addr`, waiting at most `timeout` for room in its backlog.
    pub fn connect_timeout(
        addr: &UdsAddr,
        timeout: Duration,
    ) -> Result<UdsSeqpacket, ConnectError> {
        io::connect_new(SocketType::SEQPACKET, addr, Some(timeout)).map(UdsSeqpacket::from_fd)
    }

    /// Two seqpacket sockets connected to each other (`socketpair`).
    pub fn pair() -> Result<(UdsSeqpacket, UdsSeqpacket), SocketError> {
        let (a, b) = io::pair(SocketType::SEQPACKET)?;
        Ok((UdsSeqpacket::from_fd(a), UdsSeqpacket::from_fd(b)))
    }

    /// Wraps a connected `AF_UNIX` seqpacket socket received from elsewhere. The caller
    /// vouches for its type; calls on anything else return errors.
    pub fn from_fd(fd: OwnedFd) -> UdsSeqpacket {
        UdsSeqpacket { fd }
    }

    /// Gives up the wrapper and returns the fd.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// The largest message this socket can send (`SO_SNDBUF` - 32).
    pub fn max_message_size(&self) -> Result<usize, SockOptError> {
        io::max_message_size(self.fd.as_fd())
    }

    /// Sends `msg` as one message, waiting for room.
    pub fn send(&self, msg: &[u8]) -> Result<(), SendError> {
        io::send_bytes(self.fd.as_fd(), msg, None, Wait::Blocking).map(drop)
    }

    /// Like [`UdsSeqpacket::send`], waiting at most `timeout`.
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        io::send_bytes(self.fd.as_fd(), msg, None, Wait::timeout(timeout)).map(drop)
    }

    /// Sends `msg` if there is room now; `Ok(false)` if there is not.
    pub fn try_send(&self, msg: &[u8]) -> Result<bool, SendError> {
        let r = io::send_bytes(self.fd.as_fd(), msg, None, Wait::Never);
        io::would_block_to_none(r, |e| matches!(e, SendError::WouldBlock)).map(|s| s.is_some())
    }

    /// Receives one whole message, waiting for it; `Ok(0)` means the peer closed.
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        Ok(io::recv_bytes(self.fd.as_fd(), buf, true, Wait::Blocking)?.0)
    }

    /// Like [`UdsSeqpacket::recv`], waiting at most `timeout`.
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, RecvError> {
        Ok(io::recv_bytes(self.fd.as_fd(), buf, true, Wait::timeout(timeout))?.0)
    }

    /// Receives one message if one is queued; `None` if none is.
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<Option<usize>, RecvError> {
        let r = io::recv_bytes(self.fd.as_fd(), buf, true, Wait::Never).map(|(n, _)| n);
        io::would_block_to_none(r, |e| matches!(e, RecvError::WouldBlock))
    }

    /// Sends `msg` (at least one byte) as one message with `fds` attached.
    pub fn send_with_fds(&self, msg: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), SendFdsError> {
        fdpass::send_with_fds(self.fd.as_fd(), msg, fds, None, Wait::Blocking).map(drop)
    }

    /// Like [`UdsSeqpacket::send_with_fds`], waiting at most `timeout` (zero: do not wait).
    pub fn send_with_fds_timeout(
        &self,
        msg: &[u8],
        fds: &[BorrowedFd<'_>],
        timeout: Duration,
    ) -> Result<(), SendFdsError> {
        fdpass::send_with_fds(self.fd.as_fd(), msg, fds, None, Wait::timeout(timeout)).map(drop)
    }

    /// Receives one message and its fds, accepting at most `max_fds`
    /// (see [`RecvFdsError::TooManyFds`]).
    pub fn recv_with_fds(
        &self,
        buf: &mut [u8],
        max_fds: usize,
    ) -> Result<(usize, Vec<OwnedFd>), RecvFdsError> {
        let (n, fds, _) =
            fdpass::recv_with_fds(self.fd.as_fd(), buf, max_fds, true, Wait::Blocking)?;
        Ok((n, fds))
    }

    /// Like [`UdsSeqpacket::recv_with_fds`], waiting at most `timeout` (zero: do not wait).
    pub fn recv_with_fds_timeout(
        &self,
        buf: &mut [u8],
        max_fds: usize,
        timeout: Duration,
    ) -> Result<(usize, Vec<OwnedFd>), RecvFdsError> {
        let wait = Wait::timeout(timeout);
        let (n, fds, _) = fdpass::recv_with_fds(self.fd.as_fd(), buf, max_fds, true, wait)?;
        Ok((n, fds))
    }

    /// The peer's pid, uid and gid as of `connect` (`SO_PEERCRED`).
    pub fn peer_cred(&self) -> Result<PeerCred, CredError> {
        cred::peer_cred(self.fd.as_fd())
    }

    /// A pidfd of the peer process (`SO_PEERPIDFD`, Linux 6.5+).
    pub fn peer_pidfd(&self) -> Result<OwnedFd, CredError> {
        cred::peer_pidfd(self.fd.as_fd())
    }

    /// Switches `O_NONBLOCK`: when on, the blocking forms return `WouldBlock` instead of
    /// waiting. The `_timeout` and `try_` forms behave the same either way.
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), SockOptError> {
        io::set_nonblocking(self.fd.as_fd(), nonblocking)
    }

    /// Sets the socket's receive timeout (`SO_RCVTIMEO`), as
    /// [`UdsStream::set_recv_timeout`](super::UdsStream::set_recv_timeout) does.
    pub fn set_recv_timeout(&self, timeout: Option<Duration>) -> Result<(), SockOptError> {
        io::set_recv_timeout(self.fd.as_fd(), timeout)
    }
}

impl AsFd for UdsSeqpacket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
