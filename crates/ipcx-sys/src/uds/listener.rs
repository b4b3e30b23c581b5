//! The listening socket shared by [`UdsListener`](super::UdsListener) (stream) and
//! [`UdsSeqpacketListener`](super::UdsSeqpacketListener).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::PollFlags;
use rustix::io::Errno;
use rustix::net::{accept_with, listen, SocketFlags, SocketType};

use super::bind::{bind_to, BindOptions, BoundPath};
use super::io::{self, Stop, Wait};
use super::{AcceptError, BindError, RemoveError, UdsAddr};

/// A bound, listening socket. Its fd is non-blocking; waits go through `poll`.
#[derive(Debug)]
pub(super) struct Listener {
    // Declared first so the path is unlinked before the socket closes.
    path: Option<BoundPath>,
    fd: OwnedFd,
    addr: UdsAddr,
}

impl Listener {
    /// Binds a socket of type `ty` to `addr` and listens.
    pub(super) fn bind(
        ty: SocketType,
        addr: &UdsAddr,
        opts: &BindOptions,
    ) -> Result<Listener, BindError> {
        let fd = io::socket(ty, true)?;
        let path = bind_to(fd.as_fd(), ty, addr, opts)?;
        // If listen fails, `path` drops and unlinks the socket file.
        listen(&fd, opts.listen_backlog()).map_err(BindError::Os)?;
        Ok(Listener { path, fd, addr: addr.clone() })
    }

    /// Accepts one connection as a blocking, close-on-exec socket.
    pub(super) fn accept(&self, wait: Wait) -> Result<OwnedFd, AcceptError> {
        // The listener fd is always non-blocking, so "blocking" means waiting forever.
        let wait = if let Wait::Blocking = wait { Wait::Until(None) } else { wait };
        let res = io::retry(self.fd.as_fd(), PollFlags::IN, wait, |_| {
            match accept_with(&self.fd, SocketFlags::CLOEXEC) {
                // The connecting side gave up before we got to it: wait for the next one.
                Err(Errno::CONNABORTED) => Err(Errno::AGAIN),
                other => other,
            }
        });
        res.map_err(|s| match s {
            Stop::WouldBlock | Stop::Timeout => AcceptError::Timeout,
            Stop::Os(e @ (Errno::MFILE | Errno::NFILE)) => AcceptError::TooManyFiles(e),
            Stop::Os(e) => AcceptError::Os(e),
        })
    }

    /// The address bound.
    pub(super) fn addr(&self) -> &UdsAddr {
        &self.addr
    }

    /// Unlinks the socket file now (no-op for abstract names or if already removed).
    pub(super) fn remove(&mut self) -> Result<(), RemoveError> {
        self.path.take().map_or(Ok(()), BoundPath::remove)
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
