//! `SOCK_STREAM` Unix sockets: a listener and connected byte streams.
//!
//! A stream keeps order but not boundaries: one `send` may arrive as several `recv`s and
//! several as one. Use [`UdsStream::send_all`] / [`UdsStream::recv_exact`] for framed data,
//! or a seqpacket socket for messages. `recv` returning 0 means the peer closed its end.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::net::SocketType;

use super::bind::BindOptions;
use super::io::{self, Wait};
use super::listener::Listener;
use super::{
    cred, fdpass, AcceptError, BindError, ConnectError, CredError, PeerCred, RecvError,
    RecvExactError, RecvFdsError, RemoveError, SendAllError, SendError, SendFdsError, SockOptError,
    SocketError, UdsAddr,
};

/// A listening stream socket. It unlinks the socket file it created when dropped.
#[derive(Debug)]
pub struct UdsListener {
    inner: Listener,
}

impl UdsListener {
    /// Binds `addr` and listens, following `opts` (see [`BindOptions`]).
    pub fn bind(addr: &UdsAddr, opts: &BindOptions) -> Result<UdsListener, BindError> {
        Ok(UdsListener { inner: Listener::bind(SocketType::STREAM, addr, opts)? })
    }

    /// Waits as long as it takes for a connection.
    pub fn accept(&self) -> Result<UdsStream, AcceptError> {
        self.inner.accept(Wait::Blocking).map(UdsStream::from_fd)
    }

    /// Waits up to `timeout` for a connection.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<UdsStream, AcceptError> {
        self.inner.accept(Wait::timeout(timeout)).map(UdsStream::from_fd)
    }

    /// Takes a pending connection if there is one, without waiting.
    pub fn try_accept(&self) -> Result<Option<UdsStream>, AcceptError> {
        let r = self.inner.accept(Wait::Never).map(UdsStream::from_fd);
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

impl AsFd for UdsListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

/// A connected stream socket (blocking unless [`UdsStream::set_nonblocking`] is used).
#[derive(Debug)]
pub struct UdsStream {
    fd: OwnedFd,
}

impl UdsStream {
    /// Connects to the listener at `addr`, waiting as long as its backlog is full.
    pub fn connect(addr: &UdsAddr) -> Result<UdsStream, ConnectError> {
        io::connect_new(SocketType::STREAM, addr, None).map(UdsStream::from_fd)
    }

    /// Connects to `addr`, waiting at most `timeout` for room in its backlog.
    pub fn connect_timeout(addr: &UdsAddr, timeout: Duration) -> Result<UdsStream, ConnectError> {
        io::connect_new(SocketType::STREAM, addr, Some(timeout)).map(UdsStream::from_fd)
    }

    /// Two streams connected to each other (`socketpair`), e.g. to hand one to a child.
    pub fn pair() -> Result<(UdsStream, UdsStream), SocketError> {
        let (a, b) = io::pair(SocketType::STREAM)?;
        Ok((UdsStream::from_fd(a), UdsStream::from_fd(b)))
    }

    /// Wraps a connected `AF_UNIX` stream socket received from elsewhere (e.g. by fd
    /// passing). The caller vouches for its type; calls on anything else return errors.
    pub fn from_fd(fd: OwnedFd) -> UdsStream {
        UdsStream { fd }
    }

    /// Gives up the wrapper and returns the fd.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Sends some of `buf`, waiting for room; returns how many bytes went.
    pub fn send(&self, buf: &[u8]) -> Result<usize, SendError> {
        io::send_bytes(self.fd.as_fd(), buf, None, Wait::Blocking)
    }

    /// Like [`UdsStream::send`], waiting at most `timeout` for room.
    pub fn send_timeout(&self, buf: &[u8], timeout: Duration) -> Result<usize, SendError> {
        io::send_bytes(self.fd.as_fd(), buf, None, Wait::timeout(timeout))
    }

    /// Sends what fits now; `None` if nothing does.
    pub fn try_send(&self, buf: &[u8]) -> Result<Option<usize>, SendError> {
        let r = io::send_bytes(self.fd.as_fd(), buf, None, Wait::Never);
        io::would_block_to_none(r, |e| matches!(e, SendError::WouldBlock))
    }

    /// Receives some bytes, waiting for data; `Ok(0)` means the peer closed the stream.
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        Ok(io::recv_bytes(self.fd.as_fd(), buf, false, Wait::Blocking)?.0)
    }

    /// Like [`UdsStream::recv`], waiting at most `timeout`.
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, RecvError> {
        Ok(io::recv_bytes(self.fd.as_fd(), buf, false, Wait::timeout(timeout))?.0)
    }

    /// Receives what is queued now; `None` if nothing is.
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<Option<usize>, RecvError> {
        let r = io::recv_bytes(self.fd.as_fd(), buf, false, Wait::Never).map(|(n, _)| n);
        io::would_block_to_none(r, |e| matches!(e, RecvError::WouldBlock))
    }

    /// Sends all of `buf` within `timeout` in total.
    pub fn send_all(&self, buf: &[u8], timeout: Duration) -> Result<(), SendAllError> {
        let wait = Wait::timeout(timeout);
        let mut sent = 0;
        while sent < buf.len() {
            match io::send_bytes(self.fd.as_fd(), &buf[sent..], None, wait) {
                Ok(n) => sent += n,
                Err(cause) => return Err(SendAllError { sent, len: buf.len(), cause }),
            }
        }
        Ok(())
    }

    /// Fills all of `buf` within `timeout` in total.
    pub fn recv_exact(&self, buf: &mut [u8], timeout: Duration) -> Result<(), RecvExactError> {
        let wait = Wait::timeout(timeout);
        let len = buf.len();
        let mut received = 0;
        while received < len {
            match io::recv_bytes(self.fd.as_fd(), &mut buf[received..], false, wait) {
                Ok((0, _)) => return Err(RecvExactError::Closed { received, len }),
                Ok((n, _)) => received += n,
                Err(cause) => return Err(RecvExactError::Failed { received, len, cause }),
            }
        }
        Ok(())
    }

    /// Sends some of `buf` (at least one byte) with `fds` attached to its first byte;
    /// returns how many bytes went. Send the rest with [`UdsStream::send_all`].
    pub fn send_with_fds(&self, buf: &[u8], fds: &[BorrowedFd<'_>]) -> Result<usize, SendFdsError> {
        fdpass::send_with_fds(self.fd.as_fd(), buf, fds, None, Wait::Blocking)
    }

    /// Like [`UdsStream::send_with_fds`], waiting at most `timeout` (zero: do not wait).
    pub fn send_with_fds_timeout(
        &self,
        buf: &[u8],
        fds: &[BorrowedFd<'_>],
        timeout: Duration,
    ) -> Result<usize, SendFdsError> {
        fdpass::send_with_fds(self.fd.as_fd(), buf, fds, None, Wait::timeout(timeout))
    }

    /// Receives bytes and the fds sent with them, accepting at most `max_fds`
    /// (see [`RecvFdsError::TooManyFds`]). `Ok((0, _))` means the peer closed the stream.
    pub fn recv_with_fds(
        &self,
        buf: &mut [u8],
        max_fds: usize,
    ) -> Result<(usize, Vec<OwnedFd>), RecvFdsError> {
        let (n, fds, _) =
            fdpass::recv_with_fds(self.fd.as_fd(), buf, max_fds, false, Wait::Blocking)?;
        Ok((n, fds))
    }

    /// Like [`UdsStream::recv_with_fds`], waiting at most `timeout` (zero: do not wait).
    pub fn recv_with_fds_timeout(
        &self,
        buf: &mut [u8],
        max_fds: usize,
        timeout: Duration,
    ) -> Result<(usize, Vec<OwnedFd>), RecvFdsError> {
        let wait = Wait::timeout(timeout);
        let (n, fds, _) = fdpass::recv_with_fds(self.fd.as_fd(), buf, max_fds, false, wait)?;
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

    /// Sets the socket's receive timeout (`SO_RCVTIMEO`): the blocking receives
    /// ([`recv`](Self::recv), [`recv_with_fds`](Self::recv_with_fds)) then end with
    /// `WouldBlock` after `timeout`, rounded up to a clock tick. `None` or zero: no timeout.
    /// One system call per blocking receive, where the `_timeout` forms take a `poll` and
    /// two receive attempts.
    pub fn set_recv_timeout(&self, timeout: Option<Duration>) -> Result<(), SockOptError> {
        io::set_recv_timeout(self.fd.as_fd(), timeout)
    }
}

impl AsFd for UdsStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
