//! `SOCK_DGRAM` Unix sockets: connectionless messages. On Linux they are reliable and
//! ordered; a sender blocks (or times out) while the receiver's queue is full. Each message
//! is at most [`UdsDatagram::max_datagram_size`] bytes; one too big for the receive buffer
//! is an error ([`RecvError::Truncated`]), never a silent cut.
//!
//! A socket bound to a path unlinks its file when dropped. An unbound socket can send but
//! receives no replies unless it is `connect`ed pair-wise or bound; [`UdsDatagram::pair`]
//! gives two sockets connected to each other.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::net::{connect, SocketType};

use super::bind::{bind_to, BindOptions, BoundPath};
use super::io::{self, Wait};
use super::{
    fdpass, BindError, ConnectError, RecvError, RecvFdsError, RemoveError, SendError, SendFdsError,
    SockOptError, SocketError, UdsAddr,
};

/// A datagram socket, bound to an address or not.
#[derive(Debug)]
pub struct UdsDatagram {
    // Declared first so the path is unlinked before the socket closes.
    path: Option<BoundPath>,
    fd: OwnedFd,
    addr: Option<UdsAddr>,
}

impl UdsDatagram {
    /// A socket bound to `addr`, created exclusively with mode `0o600`.
    pub fn bind(addr: &UdsAddr) -> Result<UdsDatagram, BindError> {
        UdsDatagram::bind_with(addr, &BindOptions::default())
    }

    /// A socket bound to `addr` following `opts` (the backlog is ignored).
    pub fn bind_with(addr: &UdsAddr, opts: &BindOptions) -> Result<UdsDatagram, BindError> {
        let fd = io::socket(SocketType::DGRAM, false)?;
        let path = bind_to(fd.as_fd(), SocketType::DGRAM, addr, opts)?;
        Ok(UdsDatagram { path, fd, addr: Some(addr.clone()) })
    }

    /// A socket with no address, for sending (replies need a bound or paired socket).
    pub fn unbound() -> Result<UdsDatagram, SocketError> {
        Ok(UdsDatagram::from_fd(io::socket(SocketType::DGRAM, false)?))
    }

    /// Two datagram sockets connected to each other (`socketpair`).
    pub fn pair() -> Result<(UdsDatagram, UdsDatagram), SocketError> {
        let (a, b) = io::pair(SocketType::DGRAM)?;
        Ok((UdsDatagram::from_fd(a), UdsDatagram::from_fd(b)))
    }

    /// Wraps an `AF_UNIX` datagram socket received from elsewhere. The caller vouches for
    /// its type; calls on anything else return errors. It removes no file on drop.
    pub fn from_fd(fd: OwnedFd) -> UdsDatagram {
        UdsDatagram { path: None, fd, addr: None }
    }

    /// Gives up the wrapper and returns the fd (the socket file is then left in place).
    pub fn into_fd(self) -> OwnedFd {
        let UdsDatagram { path, fd, .. } = self;
        if let Some(p) = path {
            p.keep();
        }
        fd
    }

    /// The address this socket was bound to, if any.
    pub fn local_addr(&self) -> Option<&UdsAddr> {
        self.addr.as_ref()
    }

    /// Sets the default destination for [`UdsDatagram::send`]; only datagrams from `addr`
    /// are received afterwards.
    pub fn connect(&self, addr: &UdsAddr) -> Result<(), ConnectError> {
        io::retry_intr(|| connect(&self.fd, &addr.to_sockaddr()))
            .map_err(|e| ConnectError::from_errno(e, addr))
    }

    /// The largest datagram this socket can send (`SO_SNDBUF` - 32); the receiver must
    /// also have that much buffer room.
    pub fn max_datagram_size(&self) -> Result<usize, SockOptError> {
        io::max_message_size(self.fd.as_fd())
    }

    /// Sends `msg` to the connected peer, waiting while its queue is full.
    pub fn send(&self, msg: &[u8]) -> Result<(), SendError> {
        io::send_bytes(self.fd.as_fd(), msg, None, Wait::Blocking).map(drop)
    }

    /// Like [`UdsDatagram::send`], waiting at most `timeout`.
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        io::send_bytes(self.fd.as_fd(), msg, None, Wait::timeout(timeout)).map(drop)
    }

    /// Sends `msg` to the connected peer if there is room now; `Ok(false)` if not.
    pub fn try_send(&self, msg: &[u8]) -> Result<bool, SendError> {
        let r = io::send_bytes(self.fd.as_fd(), msg, None, Wait::Never);
        io::would_block_to_none(r, |e| matches!(e, SendError::WouldBlock)).map(|s| s.is_some())
    }

    /// Sends `msg` to `to`, waiting while its queue is full.
    pub fn send_to(&self, msg: &[u8], to: &UdsAddr) -> Result<(), SendError> {
        io::send_bytes(self.fd.as_fd(), msg, Some(&to.to_sockaddr()), Wait::Blocking).map(drop)
    }

    /// Like [`UdsDatagram::send_to`], waiting at most `timeout`.
    pub fn send_to_timeout(
        &self,
        msg: &[u8],
        to: &UdsAddr,
        timeout: Duration,
    ) -> Result<(), SendError> {
        let wait = Wait::timeout(timeout);
        io::send_bytes(self.fd.as_fd(), msg, Some(&to.to_sockaddr()), wait).map(drop)
    }

    /// Sends `msg` to `to` if there is room now; `Ok(false)` if not.
    pub fn try_send_to(&self, msg: &[u8], to: &UdsAddr) -> Result<bool, SendError> {
        let r = io::send_bytes(self.fd.as_fd(), msg, Some(&to.to_sockaddr()), Wait::Never);
        io::would_block_to_none(r, |e| matches!(e, SendError::WouldBlock)).map(|s| s.is_some())
    }

    /// Receives one datagram, waiting for it.
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        Ok(io::recv_bytes(self.fd.as_fd(), buf, true, Wait::Blocking)?.0)
    }

    /// Like [`UdsDatagram::recv`], waiting at most `timeout`.
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, RecvError> {
        Ok(io::recv_bytes(self.fd.as_fd(), buf, true, Wait::timeout(timeout))?.0)
    }

    /// Receives one datagram if one is queued; `None` if none is.
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<Option<usize>, RecvError> {
        let r = io::recv_bytes(self.fd.as_fd(), buf, true, Wait::Never).map(|(n, _)| n);
        io::would_block_to_none(r, |e| matches!(e, RecvError::WouldBlock))
    }

    /// Receives one datagram and the sender's address (`None` for an unbound sender).
    pub fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, Option<UdsAddr>), RecvError> {
        self.recv_from_wait(buf, Wait::Blocking)
    }

    /// Like [`UdsDatagram::recv_from`], waiting at most `timeout`.
    pub fn recv_from_timeout(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<(usize, Option<UdsAddr>), RecvError> {
        self.recv_from_wait(buf, Wait::timeout(timeout))
    }

    /// Like [`UdsDatagram::recv_from`] if a datagram is queued; `None` if none is.
    pub fn try_recv_from(
        &self,
        buf: &mut [u8],
    ) -> Result<Option<(usize, Option<UdsAddr>)>, RecvError> {
        let r = self.recv_from_wait(buf, Wait::Never);
        io::would_block_to_none(r, |e| matches!(e, RecvError::WouldBlock))
    }

    fn recv_from_wait(
        &self,
        buf: &mut [u8],
        wait: Wait,
    ) -> Result<(usize, Option<UdsAddr>), RecvError> {
        let (n, from) = io::recv_bytes(self.fd.as_fd(), buf, true, wait)?;
        Ok((n, from.and_then(UdsAddr::from_sockaddr)))
    }

    /// Sends `msg` (at least one byte) with `fds` attached, to `to` or (if `None`) to the
    /// connected peer, waiting while the receiver's queue is full.
    pub fn send_with_fds(
        &self,
        msg: &[u8],
        fds: &[BorrowedFd<'_>],
        to: Option<&UdsAddr>,
    ) -> Result<(), SendFdsError> {
        let to = to.map(UdsAddr::to_sockaddr);
        fdpass::send_with_fds(self.fd.as_fd(), msg, fds, to.as_ref(), Wait::Blocking).map(drop)
    }

    /// Receives one datagram and its fds, accepting at most `max_fds`
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

    /// Like [`UdsDatagram::recv_with_fds`], waiting at most `timeout` (zero: do not wait).
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

    /// Switches `O_NONBLOCK`: when on, the blocking forms return `WouldBlock` instead of
    /// waiting. The `_timeout` and `try_` forms behave the same either way.
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), SockOptError> {
        io::set_nonblocking(self.fd.as_fd(), nonblocking)
    }

    /// Unlinks the socket file now (no-op if unbound, abstract, or already removed).
    pub fn remove(&mut self) -> Result<(), RemoveError> {
        self.path.take().map_or(Ok(()), BoundPath::remove)
    }
}

impl AsFd for UdsDatagram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
