//! The two ends of a pipe, and anonymous pipes (`pipe2`).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
use rustix::io::{read, write};
use rustix::pipe::{pipe_with, PipeFlags};

use super::{poll_fd, CapacityError, CreateError, ReadError, Wait, WriteError, PIPE_BUF};
use crate::Errno;

/// A new anonymous pipe in byte-stream mode: `(reader, writer)`, both close-on-exec.
pub fn pipe() -> Result<(PipeReader, PipeWriter), CreateError> {
    make(PipeFlags::empty())
}

/// A new anonymous pipe in packet mode (`O_DIRECT`): each write of at most [`PIPE_BUF`]
/// bytes is one packet, and each read returns at most one packet. A read into a buffer
/// shorter than the packet loses the rest of it, so read with [`PIPE_BUF`]-byte buffers.
pub fn pipe_packet() -> Result<(PipeReader, PipeWriter), CreateError> {
    make(PipeFlags::DIRECT)
}

fn make(extra: PipeFlags) -> Result<(PipeReader, PipeWriter), CreateError> {
    let flags = PipeFlags::CLOEXEC | PipeFlags::NONBLOCK | extra;
    let (r, w) = pipe_with(flags).map_err(CreateError)?;
    Ok((PipeReader { fd: r }, PipeWriter { fd: w }))
}

/// Puts `fd` in non-blocking mode, as every method here expects.
fn nonblocking(fd: &OwnedFd) -> Result<(), CreateError> {
    let flags = fcntl_getfl(fd).map_err(CreateError)?;
    fcntl_setfl(fd, flags | OFlags::NONBLOCK).map_err(CreateError)
}

/// The reading end of a pipe or FIFO. Closed on drop.
#[derive(Debug)]
pub struct PipeReader {
    fd: OwnedFd,
}

impl PipeReader {
    /// Wraps the reading end of a pipe or FIFO received from elsewhere, switching it to
    /// non-blocking mode (which the other holders of the same open file see too).
    pub fn from_fd(fd: OwnedFd) -> Result<PipeReader, CreateError> {
        nonblocking(&fd)?;
        Ok(PipeReader { fd })
    }

    /// Wraps an fd opened with `O_NONBLOCK`.
    pub(super) fn from_nonblocking(fd: OwnedFd) -> PipeReader {
        PipeReader { fd }
    }

    /// Reads what is available into `buf`, waiting (without limit) until something is.
    /// Returns the bytes read (> 0 unless `buf` is empty); [`ReadError::PeerGone`] once
    /// every writer has closed and the buffer is empty.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, ReadError> {
        self.read_until(buf, Wait::Forever).map(|n| n.unwrap_or(0))
    }

    /// Like [`read`](Self::read), waiting at most `timeout`.
    pub fn read_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, ReadError> {
        match self.read_until(buf, Wait::Until(Instant::now() + timeout))? {
            Some(n) => Ok(n),
            None => Err(ReadError::Timeout),
        }
    }

    /// Reads what is available into `buf` without waiting; `None` if nothing is.
    pub fn try_read(&self, buf: &mut [u8]) -> Result<Option<usize>, ReadError> {
        self.read_until(buf, Wait::Now)
    }

    /// Like [`read_timeout`](Self::read_timeout) (`None`: like [`read`](Self::read)), for a
    /// caller that expects to wait (its last read emptied the pipe): waits for data before
    /// the first read, which spares the read that would fail with `EAGAIN`, one syscall of
    /// the three a waiting read makes. If data is there already, the `poll` returns at once
    /// and the read costs a syscall more than [`read`](Self::read).
    pub fn read_when_ready(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<usize, ReadError> {
        let wait = match timeout {
            None => Wait::Forever,
            Some(t) => Instant::now().checked_add(t).map_or(Wait::Forever, Wait::Until),
        };
        if !buf.is_empty() {
            let seen = poll_fd(self.fd.as_fd(), PollFlags::IN, wait).map_err(ReadError::Os)?;
            if seen.is_empty() {
                return Err(ReadError::Timeout);
            }
        }
        match self.read_until(buf, wait)? {
            Some(n) => Ok(n),
            None => Err(ReadError::Timeout),
        }
    }

    /// Fills all of `buf`, waiting at most `timeout` in total.
    pub fn read_exact_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<(), ReadError> {
        let deadline = Instant::now() + timeout;
        let mut done = 0;
        while done < buf.len() {
            match self.read_until(&mut buf[done..], Wait::Until(deadline))? {
                Some(n) => done += n,
                None => return Err(ReadError::Timeout),
            }
        }
        Ok(())
    }

    /// Reads once data is there; `Ok(None)` when `wait` ran out first.
    ///
    /// A read of 0 bytes is end of file only if `poll` reports a hang-up: a FIFO opened
    /// before any writer connected reads 0 bytes too, and must wait for its first writer.
    fn read_until(&self, buf: &mut [u8], wait: Wait) -> Result<Option<usize>, ReadError> {
        if buf.is_empty() {
            return Ok(Some(0));
        }
        loop {
            match read(&self.fd, &mut *buf) {
                Ok(0) => {
                    let seen = poll_fd(self.fd.as_fd(), PollFlags::IN, Wait::Now)
                        .map_err(ReadError::Os)?;
                    if seen.contains(PollFlags::HUP) && !seen.contains(PollFlags::IN) {
                        return Err(ReadError::PeerGone);
                    }
                }
                Ok(n) => return Ok(Some(n)),
                Err(Errno::AGAIN) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(ReadError::Os(e)),
            }
            if matches!(wait, Wait::Now) {
                return Ok(None);
            }
            let seen = poll_fd(self.fd.as_fd(), PollFlags::IN, wait).map_err(ReadError::Os)?;
            if seen.is_empty() {
                return Ok(None);
            }
        }
    }

    /// The pipe's buffer size in bytes (`F_GETPIPE_SZ`).
    pub fn capacity(&self) -> Result<usize, CapacityError> {
        super::capacity(self.fd.as_fd())
    }

    /// Resizes the pipe's buffer (`F_SETPIPE_SZ`); returns the size granted, `bytes`
    /// rounded up to a power-of-two number of pages.
    pub fn set_capacity(&self, bytes: usize) -> Result<usize, CapacityError> {
        super::set_capacity(self.fd.as_fd(), bytes)
    }

    /// Gives up the wrapper and returns the (non-blocking) fd.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for PipeReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl io::Read for PipeReader {
    /// Blocking read; `Ok(0)` at end of file (every writer closed).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match PipeReader::read(self, buf) {
            Ok(n) => Ok(n),
            Err(ReadError::PeerGone) => Ok(0),
            Err(ReadError::Os(e)) => Err(e.into()),
            Err(e) => Err(io::Error::other(e)),
        }
    }
}

/// The writing end of a pipe or FIFO. Closed on drop.
#[derive(Debug)]
pub struct PipeWriter {
    fd: OwnedFd,
}

impl PipeWriter {
    /// Wraps the writing end of a pipe or FIFO received from elsewhere, switching it to
    /// non-blocking mode (which the other holders of the same open file see too).
    pub fn from_fd(fd: OwnedFd) -> Result<PipeWriter, CreateError> {
        nonblocking(&fd)?;
        Ok(PipeWriter { fd })
    }

    /// Wraps an fd opened with `O_NONBLOCK`.
    pub(super) fn from_nonblocking(fd: OwnedFd) -> PipeWriter {
        PipeWriter { fd }
    }

    /// Writes all of `buf`, waiting (without limit) for the reader to make room. Writes
    /// longer than [`PIPE_BUF`] may be interleaved with other writers' data.
    pub fn write_all(&self, buf: &[u8]) -> Result<(), WriteError> {
        self.write_until(buf, Wait::Forever)
    }

    /// Like [`write_all`](Self::write_all), waiting at most `timeout` in total;
    /// [`WriteError::Timeout`] tells how much was written.
    pub fn write_all_timeout(&self, buf: &[u8], timeout: Duration) -> Result<(), WriteError> {
        self.write_until(buf, Wait::Until(Instant::now() + timeout))
    }

    /// Writes as much of `buf` as fits now; `None` if the pipe is full.
    pub fn try_write(&self, buf: &[u8]) -> Result<Option<usize>, WriteError> {
        if buf.is_empty() {
            return Ok(Some(0));
        }
        loop {
            match write(&self.fd, buf) {
                Ok(n) => return Ok(Some(n)),
                Err(Errno::AGAIN) => return Ok(None),
                Err(Errno::INTR) => continue,
                Err(Errno::PIPE) => return Err(WriteError::PeerGone { written: 0 }),
                Err(e) => return Err(WriteError::Os(e)),
            }
        }
    }

    /// Writes `buf` in one piece that no other writer's data can interleave with, waiting
    /// (without limit) for room. Refuses buffers longer than [`PIPE_BUF`].
    pub fn write_atomic(&self, buf: &[u8]) -> Result<(), WriteError> {
        check_atomic(buf)?;
        self.write_until(buf, Wait::Forever)
    }

    /// Like [`write_atomic`](Self::write_atomic), waiting at most `timeout`; on timeout
    /// nothing was written.
    pub fn write_atomic_timeout(&self, buf: &[u8], timeout: Duration) -> Result<(), WriteError> {
        check_atomic(buf)?;
        self.write_until(buf, Wait::Until(Instant::now() + timeout))
    }

    /// Like [`write_atomic`](Self::write_atomic) without waiting; `false` if there is no
    /// room for all of `buf` now (then nothing was written).
    pub fn try_write_atomic(&self, buf: &[u8]) -> Result<bool, WriteError> {
        check_atomic(buf)?;
        match self.write_until(buf, Wait::Now) {
            Ok(()) => Ok(true),
            Err(WriteError::Timeout { written: 0 }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes all of `buf` while `wait` allows. A non-blocking write of at most PIPE_BUF
    /// bytes writes everything or nothing, so atomic writes never stop halfway.
    fn write_until(&self, buf: &[u8], wait: Wait) -> Result<(), WriteError> {
        let mut written = 0;
        while written < buf.len() {
            match write(&self.fd, &buf[written..]) {
                Ok(n) => {
                    written += n;
                    continue;
                }
                Err(Errno::AGAIN) => {}
                Err(Errno::INTR) => continue,
                Err(Errno::PIPE) => return Err(WriteError::PeerGone { written }),
                Err(e) => return Err(WriteError::Os(e)),
            }
            if matches!(wait, Wait::Now) {
                return Err(WriteError::Timeout { written });
            }
            // A closed reader shows as POLLERR; the next write then reports EPIPE.
            let seen = poll_fd(self.fd.as_fd(), PollFlags::OUT, wait).map_err(WriteError::Os)?;
            if seen.is_empty() {
                return Err(WriteError::Timeout { written });
            }
        }
        Ok(())
    }

    /// The pipe's buffer size in bytes (`F_GETPIPE_SZ`).
    pub fn capacity(&self) -> Result<usize, CapacityError> {
        super::capacity(self.fd.as_fd())
    }

    /// Resizes the pipe's buffer (`F_SETPIPE_SZ`); returns the size granted, `bytes`
    /// rounded up to a power-of-two number of pages.
    pub fn set_capacity(&self, bytes: usize) -> Result<usize, CapacityError> {
        super::set_capacity(self.fd.as_fd(), bytes)
    }

    /// Gives up the wrapper and returns the (non-blocking) fd.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

fn check_atomic(buf: &[u8]) -> Result<(), WriteError> {
    if buf.len() > PIPE_BUF {
        return Err(WriteError::TooLargeForAtomic { len: buf.len(), limit: PIPE_BUF });
    }
    Ok(())
}

impl AsFd for PipeWriter {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl io::Write for PipeWriter {
    /// Blocking write of at least one byte; `BrokenPipe` once every reader closed.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match self.try_write(buf) {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => {
                    poll_fd(self.fd.as_fd(), PollFlags::OUT, Wait::Forever)?;
                }
                Err(WriteError::PeerGone { .. }) => return Err(Errno::PIPE.into()),
                Err(WriteError::Os(e)) => return Err(e.into()),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_mode_keeps_write_boundaries() {
        let (r, w) = pipe_packet().unwrap();
        w.write_atomic(b"one").unwrap();
        w.write_atomic(b"two!").unwrap();
        let mut buf = [0u8; PIPE_BUF];
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        assert_eq!(r.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"two!");
    }

    #[test]
    fn io_traits_see_end_of_file() {
        use std::io::{Read, Write};
        let (mut r, mut w) = pipe().unwrap();
        Write::write_all(&mut w, b"hello").unwrap();
        drop(w);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
    }
}
