//! Anonymous pipes (`pipe2`) and named FIFOs (`mkfifo`): one-way byte streams through a
//! kernel buffer, from a [`PipeWriter`] to a [`PipeReader`].
//!
//! - Writes of at most [`PIPE_BUF`] bytes are atomic: they are never interleaved with
//!   other writers' data. [`PipeWriter::write_atomic`] enforces the limit; longer writes
//!   may be split. [`pipe_packet`] makes a pipe whose writes are separate packets.
//! - The buffer holds 64 KiB by default; [`PipeReader::set_capacity`] changes it (up to
//!   `/proc/sys/fs/pipe-max-size` for unprivileged processes).
//! - Peer loss: when every writer is closed, reads report [`ReadError::PeerGone`] (the
//!   [`std::io::Read`] impl returns `Ok(0)`, the usual end of file). When every reader is
//!   closed, writes report [`WriteError::PeerGone`] (`EPIPE`). The kernel also sends the
//!   writer `SIGPIPE`, which kills a process by default; pipes have no `MSG_NOSIGNAL`.
//!   ipcx relies on `SIGPIPE` being ignored, as Rust's standard library arranges before
//!   `main` in every Rust binary; a C host that embeds ipcx must ignore it too.
//! - Both ends are in non-blocking mode (`O_NONBLOCK`) and close-on-exec; blocking methods
//!   wait with `poll`, so every wait has a timeout form. An fd taken out with `into_fd`
//!   stays non-blocking.
//!
//! Lifecycle: an anonymous pipe lives while one of its ends is open; pass an end to
//! another process by fd passing or inheritance. A [`Fifo`] is a path in the filesystem
//! that unrelated processes open; the handle that created it removes the path on drop.
//!
//! [`PipeWriter`]: crate::pipe::PipeWriter
//! [`PipeReader`]: crate::pipe::PipeReader
//! [`PIPE_BUF`]: crate::pipe::PIPE_BUF
//! [`PipeWriter::write_atomic`]: crate::pipe::PipeWriter::write_atomic
//! [`pipe_packet`]: crate::pipe::pipe_packet
//! [`PipeReader::set_capacity`]: crate::pipe::PipeReader::set_capacity
//! [`ReadError::PeerGone`]: crate::pipe::ReadError::PeerGone
//! [`WriteError::PeerGone`]: crate::pipe::WriteError::PeerGone
//! [`Fifo`]: crate::pipe::Fifo

use std::os::fd::BorrowedFd;
use std::time::Instant;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::pipe::{fcntl_getpipe_size, fcntl_setpipe_size};
use thiserror::Error;

use crate::Errno;

mod anon;
mod fifo;

pub use anon::{pipe, pipe_packet, PipeReader, PipeWriter};
pub use fifo::{Fifo, FifoBuilder, FifoCreateError, FifoOpenError, FifoRemoveError};

/// Largest write that is atomic (never interleaved with other writers' data): 4096 bytes.
pub const PIPE_BUF: usize = rustix::pipe::PIPE_BUF;

/// Creating a pipe or adopting a pipe fd failed.
#[derive(Debug, Error)]
#[error("cannot create or set up the pipe; check RLIMIT_NOFILE (`ipcx doctor`)")]
pub struct CreateError(#[source] pub Errno);

/// Reading from a pipe failed.
#[derive(Debug, Error)]
pub enum ReadError {
    /// Nothing arrived within the timeout.
    #[error("no pipe data within the timeout")]
    Timeout,
    /// Every writer closed its end and the buffer is empty: nothing more will arrive.
    #[error("the pipe's writing end is closed (the peer exited); reopen or recreate the pipe")]
    PeerGone,
    /// The kernel refused the read or poll.
    #[error("pipe read failed")]
    Os(#[source] Errno),
}

/// Writing to a pipe failed.
#[derive(Debug, Error)]
pub enum WriteError {
    /// Not everything could be written within the timeout (the reader is not draining).
    #[error("pipe write timed out after {written} bytes; the reader is not draining the pipe")]
    Timeout {
        /// Bytes of the buffer written before the timeout.
        written: usize,
    },
    /// Every reader closed its end (`EPIPE`).
    #[error(
        "the pipe's reading end is closed (the peer exited) after {written} bytes were written"
    )]
    PeerGone {
        /// Bytes of the buffer written before the reader went away.
        written: usize,
    },
    /// [`PipeWriter::write_atomic`] was given more than [`PIPE_BUF`] bytes.
    #[error("{len} bytes exceed PIPE_BUF ({limit}), the largest atomic pipe write; split the message or use write_all")]
    TooLargeForAtomic {
        /// Length of the rejected buffer.
        len: usize,
        /// The limit, [`PIPE_BUF`].
        limit: usize,
    },
    /// The kernel refused the write or poll.
    #[error("pipe write failed")]
    Os(#[source] Errno),
}

/// Reading or changing a pipe's capacity failed.
#[derive(Debug, Error)]
pub enum CapacityError {
    /// Above `/proc/sys/fs/pipe-max-size` or the per-user pipe page limit.
    #[error("pipe capacity of {requested} bytes is above the allowed maximum; ask for less or raise /proc/sys/fs/pipe-max-size")]
    TooLarge {
        /// Bytes asked for.
        requested: usize,
        /// The kernel's answer.
        #[source]
        source: Errno,
    },
    /// The pipe holds more data than the requested capacity.
    #[error("the pipe holds more data than {requested} bytes; drain it before shrinking")]
    Busy {
        /// Bytes asked for.
        requested: usize,
        /// The kernel's answer.
        #[source]
        source: Errno,
    },
    /// `fcntl(F_GETPIPE_SZ / F_SETPIPE_SZ)` failed for another reason.
    #[error("fcntl on the pipe failed")]
    Os(#[source] Errno),
}

/// How long an operation may wait.
#[derive(Clone, Copy, Debug)]
enum Wait {
    /// Not at all (`try_` forms).
    Now,
    /// Without limit.
    Forever,
    /// Until this instant.
    Until(Instant),
}

/// Polls `fd` for `events` once, as long as `wait` allows; returns the events seen (empty
/// on timeout). EINTR is retried.
fn poll_fd(fd: BorrowedFd<'_>, events: PollFlags, wait: Wait) -> Result<PollFlags, Errno> {
    loop {
        let timeout = match wait {
            Wait::Now => Some(crate::time::relative(std::time::Duration::ZERO)),
            Wait::Forever => None,
            Wait::Until(t) => {
                Some(crate::time::relative(t.saturating_duration_since(Instant::now())))
            }
        };
        let mut fds = [PollFd::from_borrowed_fd(fd, events)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) if matches!(wait, Wait::Forever) => continue,
            Ok(_) => return Ok(fds[0].revents()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `F_GETPIPE_SZ` on either end.
fn capacity(fd: BorrowedFd<'_>) -> Result<usize, CapacityError> {
    fcntl_getpipe_size(fd).map_err(CapacityError::Os)
}

/// `F_SETPIPE_SZ` on either end, with its errno table. Returns the capacity granted
/// (the request rounded up to a power-of-two number of pages).
fn set_capacity(fd: BorrowedFd<'_>, requested: usize) -> Result<usize, CapacityError> {
    fcntl_setpipe_size(fd, requested).map_err(|e| match e {
        Errno::PERM | Errno::INVAL => CapacityError::TooLarge { requested, source: e },
        Errno::BUSY => CapacityError::Busy { requested, source: e },
        e => CapacityError::Os(e),
    })
}
