//! Byte-stream links (`uds-stream`, `tcp`, `pipe`, `fifo`): frames delimited by their
//! header's length, read in batches into one buffer.
//!
//! A send writes the whole frame (one write when it is at most [`COALESCE`] bytes, else the
//! header and the payload in turn). A frame is accepted once its first byte is written: if
//! the deadline passes after that (a full socket took part of it), the rest is kept in the
//! link and written before anything else — by the next send (which fails with a timeout,
//! accepting nothing, if it cannot finish that first), or by a receive, which waits for data
//! to read and room to write at once so two peers with full buffers never wait on each
//! other. So the stream never holds half a frame followed by another, and `try_send` on a
//! full channel fails at once instead of blocking. A receive reads as much as is available
//! (many small frames per system call) and hands out one frame at a time; a frame larger
//! than the buffer grows it, up to `max_frame`.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use ipcx_sys::pipe::{PipeReader, PipeWriter};
use ipcx_sys::uds::{RecvError, RecvFdsError, SendError, SendFdsError, UdsStream, MAX_FDS};

use super::{recv_fds_in_slices, recv_in_slices, UdsWait};
use crate::channel::link::{Deadline, LinkError, LinkOps};
use crate::frame::{FrameHeader, HEADER_LEN};

/// Frames up to this size are copied into one buffer and written with one system call.
pub const COALESCE: usize = 64 << 10;

/// Initial size of the receive buffer.
const READ_BUF: usize = 64 << 10;

/// A byte stream that can wait with a deadline.
pub trait ByteIo {
    /// Reads at least one byte into `buf`, waiting until `deadline`; `Ok(0)` at end of
    /// stream (the peer closed or died).
    fn read(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize, LinkError>;

    /// Writes some of `buf` (at least one byte), waiting until `deadline` for room.
    fn write(&mut self, buf: &[u8], deadline: Deadline) -> Result<usize, LinkError>;

    /// The fd this reads from and the fd it writes to (the same for a socket).
    fn fds(&self) -> (BorrowedFd<'_>, BorrowedFd<'_>);

    /// Like [`read`](Self::read), queueing any fds that arrive as one batch in `fds`.
    fn read_fds(
        &mut self,
        buf: &mut [u8],
        deadline: Deadline,
        _fds: &mut VecDeque<Vec<OwnedFd>>,
    ) -> Result<usize, LinkError> {
        self.read(buf, deadline)
    }

    /// Like [`write`](Self::write), attaching `fds` to the bytes written.
    fn write_fds(
        &mut self,
        _buf: &[u8],
        _fds: &[BorrowedFd<'_>],
        _deadline: Deadline,
    ) -> Result<usize, LinkError> {
        Err(LinkError::FdsUnsupported)
    }
}

/// Frames over a [`ByteIo`].
pub struct StreamLink<T> {
    io: T,
    max_frame: usize,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    out: Vec<u8>,
    /// Batches of fds received, oldest first, each waiting for its FDS frame.
    fd_batches: VecDeque<Vec<OwnedFd>>,
    /// The unwritten rest of an accepted frame; written before anything else.
    unsent: Vec<u8>,
}

impl<T: ByteIo> StreamLink<T> {
    /// A link over `io` carrying frames of at most `max_frame` bytes.
    pub fn new(io: T, max_frame: usize) -> StreamLink<T> {
        let buf = vec![0; READ_BUF.min(max_frame.max(HEADER_LEN))];
        StreamLink {
            io,
            max_frame,
            buf,
            start: 0,
            end: 0,
            out: Vec::new(),
            fd_batches: VecDeque::new(),
            unsent: Vec::new(),
        }
    }

    /// Writes the rest of an accepted frame, waiting until `deadline`.
    fn flush(&mut self, deadline: Deadline) -> Result<(), LinkError> {
        let mut at = 0;
        let r = loop {
            if at == self.unsent.len() {
                break Ok(());
            }
            match self.io.write(&self.unsent[at..], deadline) {
                Ok(n) => at += n,
                Err(e) => break Err(e),
            }
        };
        self.unsent.drain(..at);
        r
    }

    /// Writes a frame made of `parts`: until `deadline` for the first byte (nothing written:
    /// `Timeout`); after that, what the deadline leaves unwritten is kept in `unsent`.
    fn write_frame(
        &mut self,
        parts: &[&[u8]],
        deadline: Deadline,
        mut started: bool,
    ) -> Result<(), LinkError> {
        for (i, part) in parts.iter().enumerate() {
            let mut at = 0;
            while at < part.len() {
                match self.io.write(&part[at..], deadline) {
                    Ok(n) => (at, started) = (at + n, true),
                    Err(LinkError::Timeout) if started => {
                        self.unsent.extend_from_slice(&part[at..]);
                        parts[i + 1..].iter().for_each(|p| self.unsent.extend_from_slice(p));
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Before blocking to read: waits for data to read or room to write the rest of an
    /// accepted frame, writing what fits; returns once there is something to read.
    fn flush_while_waiting(&mut self, deadline: Deadline) -> Result<(), LinkError> {
        while !self.unsent.is_empty() {
            let (r, w) = self.io.fds();
            let ready = ipcx_sys::poll::wait_read_write(r, w, deadline.remaining())
                .map_err(|e| LinkError::os("poll on the stream", e))?;
            if ready.writable {
                match self.flush(Deadline::Now) {
                    Ok(()) | Err(LinkError::Timeout) => {}
                    Err(e) => return Err(e),
                }
            }
            if ready.readable {
                return Ok(());
            }
            if !ready.writable {
                return Err(LinkError::Timeout);
            }
        }
        Ok(())
    }

    /// Total size of the frame whose header starts the buffered bytes.
    fn frame_len(&self) -> Result<usize, LinkError> {
        let max = u32::try_from(self.max_frame - HEADER_LEN).unwrap_or(u32::MAX);
        let header =
            FrameHeader::decode(&self.buf[self.start..self.end], max).map_err(LinkError::broken)?;
        Ok(HEADER_LEN + header.len as usize)
    }
}

impl<T: ByteIo> LinkOps for StreamLink<T> {
    fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn send(&mut self, parts: &[&[u8]], deadline: Deadline) -> Result<(), LinkError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.max_frame {
            return Err(LinkError::TooLarge { len, max: self.max_frame });
        }
        self.flush(deadline)?;
        if len <= COALESCE {
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            parts.iter().for_each(|p| out.extend_from_slice(p));
            let r = self.write_frame(&[&out], deadline, false);
            self.out = out;
            return r;
        }
        self.write_frame(parts, deadline, false)
    }

    fn recv<R>(&mut self, deadline: Deadline, f: impl FnOnce(&[u8]) -> R) -> Result<R, LinkError> {
        loop {
            let avail = self.end - self.start;
            if avail >= HEADER_LEN {
                let total = self.frame_len()?;
                if avail >= total {
                    let r = f(&self.buf[self.start..self.start + total]);
                    self.start += total;
                    if self.start == self.end {
                        (self.start, self.end) = (0, 0);
                    }
                    return Ok(r);
                }
                if self.buf.len() - self.start < total {
                    self.buf.copy_within(self.start..self.end, 0);
                    (self.start, self.end) = (0, avail);
                    if self.buf.len() < total {
                        self.buf.resize(total, 0);
                    }
                }
            } else if self.buf.len() - self.start < HEADER_LEN {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, avail);
            }
            self.flush_while_waiting(deadline)?;
            let n = self.io.read_fds(&mut self.buf[self.end..], deadline, &mut self.fd_batches)?;
            if n == 0 {
                return Err(if self.end > self.start {
                    LinkError::broken(Truncated { have: self.end - self.start })
                } else {
                    LinkError::PeerGone
                });
            }
            self.end += n;
        }
    }

    fn send_fds(
        &mut self,
        parts: &[&[u8]],
        fds: &[BorrowedFd<'_>],
        deadline: Deadline,
    ) -> Result<(), LinkError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.max_frame.min(COALESCE) {
            return Err(LinkError::TooLarge { len, max: self.max_frame.min(COALESCE) });
        }
        self.flush(deadline)?;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        parts.iter().for_each(|p| out.extend_from_slice(p));
        // The fds ride on the first byte; the rest of the frame follows like any frame's.
        let r = self
            .io
            .write_fds(&out, fds, deadline)
            .and_then(|n| self.write_frame(&[&out[n..]], Deadline::Now, true));
        self.out = out;
        r
    }

    fn take_fds(&mut self) -> Option<Vec<OwnedFd>> {
        self.fd_batches.pop_front()
    }

    fn readiness(&self) -> Option<crate::channel::link::Readiness<'_>> {
        let (read, write) = self.io.fds();
        Some(crate::channel::link::Readiness { read: vec![read], write: vec![write] })
    }
}

/// Fd batches a stream link keeps before the frames that claim them arrive.
const MAX_FD_BATCHES: usize = 64;

/// The peer sent fds that no frame claims.
#[derive(Debug, thiserror::Error)]
#[error("the peer sent {batches} batches of fds that no frame claims")]
struct UnclaimedFds {
    batches: usize,
}

/// The stream ended in the middle of a frame.
#[derive(Debug, thiserror::Error)]
#[error("the stream ended {have} bytes into a frame")]
struct Truncated {
    have: usize,
}

impl StreamLink<UdsStream> {
    /// A `uds-stream` link: its socket's receives block in slices of
    /// [`RECV_SLICE`](super::RECV_SLICE).
    pub fn new_uds(
        stream: UdsStream,
        max_frame: usize,
    ) -> Result<StreamLink<UdsStream>, ipcx_sys::uds::SockOptError> {
        stream.set_recv_timeout(Some(super::RECV_SLICE))?;
        Ok(StreamLink::new(stream, max_frame))
    }
}

/// Receives wait in blocking slices: the socket must have the receive timeout
/// [`StreamLink::new_uds`] sets, or a timed receive could outlast its deadline.
impl ByteIo for UdsStream {
    fn fds(&self) -> (BorrowedFd<'_>, BorrowedFd<'_>) {
        (self.as_fd(), self.as_fd())
    }

    fn read(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize, LinkError> {
        let recv = |wait| match wait {
            UdsWait::Now => UdsStream::try_recv(self, buf).map(|n| n.unwrap_or(usize::MAX)),
            UdsWait::Block => UdsStream::recv(self, buf),
            UdsWait::For(t) => UdsStream::recv_timeout(self, buf, t),
        };
        let r = recv_in_slices(deadline, recv, |e| matches!(e, RecvError::WouldBlock))?;
        match r {
            Ok(usize::MAX) => Err(LinkError::Timeout),
            Ok(n) => Ok(n),
            Err(RecvError::Timeout | RecvError::WouldBlock) => Err(LinkError::Timeout),
            Err(RecvError::PeerReset) => Ok(0),
            Err(e) => Err(LinkError::os("recv on the unix stream socket", e)),
        }
    }

    fn write(&mut self, buf: &[u8], deadline: Deadline) -> Result<usize, LinkError> {
        let r = match deadline {
            Deadline::Never => UdsStream::send(self, buf),
            Deadline::Now => UdsStream::try_send(self, buf).map(|n| n.unwrap_or(0)),
            d => match d.remaining() {
                Some(t) if !t.is_zero() => UdsStream::send_timeout(self, buf, t),
                _ => return Err(LinkError::Timeout),
            },
        };
        match r {
            Ok(0) => Err(LinkError::Timeout),
            Ok(n) => Ok(n),
            Err(SendError::Timeout | SendError::WouldBlock) => Err(LinkError::Timeout),
            Err(SendError::PeerClosed) => Err(LinkError::PeerGone),
            Err(e) => Err(LinkError::os("send on the unix stream socket", e)),
        }
    }

    fn read_fds(
        &mut self,
        buf: &mut [u8],
        deadline: Deadline,
        fds: &mut VecDeque<Vec<OwnedFd>>,
    ) -> Result<usize, LinkError> {
        let r = recv_fds_in_slices(deadline, |wait| match wait {
            Some(t) => self.recv_with_fds_timeout(buf, MAX_FDS, t),
            None => self.recv_with_fds(buf, MAX_FDS),
        })?;
        match r {
            Ok((n, batch)) => {
                if !batch.is_empty() {
                    // Each batch belongs to a frame flagged FDS, taken as it is delivered: a
                    // pile of them is a peer sending fds with no frame to claim them.
                    if fds.len() >= MAX_FD_BATCHES {
                        return Err(LinkError::broken(UnclaimedFds { batches: fds.len() }));
                    }
                    fds.push_back(batch);
                }
                Ok(n)
            }
            Err(RecvFdsError::Recv(RecvError::Timeout | RecvError::WouldBlock)) => {
                Err(LinkError::Timeout)
            }
            Err(RecvFdsError::Recv(RecvError::PeerReset)) => Ok(0),
            Err(e @ RecvFdsError::TooManyFds { .. }) => Err(LinkError::broken(e)),
            Err(e) => Err(LinkError::os("recvmsg on the unix stream socket", e)),
        }
    }

    fn write_fds(
        &mut self,
        buf: &[u8],
        fds: &[BorrowedFd<'_>],
        deadline: Deadline,
    ) -> Result<usize, LinkError> {
        let r = match deadline {
            Deadline::Never => self.send_with_fds(buf, fds),
            Deadline::Now => self.send_with_fds_timeout(buf, fds, Duration::ZERO),
            d => match d.remaining() {
                Some(t) if !t.is_zero() => self.send_with_fds_timeout(buf, fds, t),
                _ => return Err(LinkError::Timeout),
            },
        };
        match r {
            Ok(0) => Err(LinkError::Timeout),
            Ok(n) => Ok(n),
            Err(SendFdsError::Send(SendError::Timeout | SendError::WouldBlock)) => {
                Err(LinkError::Timeout)
            }
            Err(SendFdsError::Send(SendError::PeerClosed)) => Err(LinkError::PeerGone),
            Err(e) => Err(LinkError::os("sendmsg with fds on the unix stream socket", e)),
        }
    }
}

/// A TCP stream; remembers its blocking mode and the timeouts it set, so it changes them
/// only when needed.
///
/// [`Deadline::Now`] puts the socket in non-blocking mode: a socket timeout cannot stand in
/// for it, since the kernel rounds any timeout up to a clock tick and waits that long
/// (during which a full send queue may drain a little, so a `try_send` loop never sees
/// `Full`).
pub struct TcpIo {
    stream: TcpStream,
    nonblocking: bool,
    read_timeout: Option<Option<Duration>>,
    write_timeout: Option<Option<Duration>>,
}

impl TcpIo {
    /// Wraps a connected stream (and turns Nagle's algorithm off: frames go at once).
    pub fn new(stream: TcpStream) -> std::io::Result<TcpIo> {
        stream.set_nodelay(true)?;
        let nonblocking = false;
        stream.set_nonblocking(nonblocking)?;
        Ok(TcpIo { stream, nonblocking, read_timeout: None, write_timeout: None })
    }

    /// Prepares the socket for an operation until `deadline`: non-blocking for
    /// [`Deadline::Now`], else blocking with a socket timeout (set only when it changes).
    fn prepare(&mut self, deadline: Deadline, write: bool) -> Result<(), LinkError> {
        let setsockopt = |e| LinkError::os("setsockopt", e);
        let nonblocking = deadline == Deadline::Now;
        if self.nonblocking != nonblocking {
            self.stream.set_nonblocking(nonblocking).map_err(setsockopt)?;
            self.nonblocking = nonblocking;
        }
        if nonblocking {
            return Ok(());
        }
        let t = match deadline {
            Deadline::Never => None,
            d => Some(socket_timeout(d.remaining().unwrap_or_default()).ok_or(LinkError::Timeout)?),
        };
        let slot = if write { &mut self.write_timeout } else { &mut self.read_timeout };
        if *slot != Some(t) {
            let r = if write {
                self.stream.set_write_timeout(t)
            } else {
                self.stream.set_read_timeout(t)
            };
            r.map_err(setsockopt)?;
            *slot = Some(t);
        }
        Ok(())
    }
}

/// The socket timeout for a wait with `left` to go: whole milliseconds, rounded down (never
/// past the deadline), so that the timeouts of successive operations, each `left` from its
/// own start, come out equal and the socket keeps the one it has (a `setsockopt` saved per
/// timed receive and send); below a millisecond, `left` itself. `None` once `left` is zero.
/// A wait that times out early by the rounding goes round once more (`retry`).
fn socket_timeout(left: Duration) -> Option<Duration> {
    let ms = Duration::from_millis(u64::try_from(left.as_millis()).unwrap_or(u64::MAX));
    match left {
        l if l.is_zero() => None,
        l if ms.is_zero() => Some(l),
        _ => Some(ms),
    }
}

/// Whether a TCP operation until `deadline` that failed with `e` should try again: its
/// socket timeout (rounded down by [`socket_timeout`]) ran out before the deadline.
fn retry(e: &std::io::Error, deadline: Deadline) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), WouldBlock | TimedOut)
        && matches!(deadline, Deadline::At(_))
        && !deadline.expired()
}

/// Maps a std I/O error of a TCP operation.
fn tcp_error(op: &'static str, e: std::io::Error) -> LinkError {
    use std::io::ErrorKind::*;
    match e.kind() {
        WouldBlock | TimedOut => LinkError::Timeout,
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof => LinkError::PeerGone,
        _ => LinkError::os(op, e),
    }
}

impl ByteIo for TcpIo {
    fn fds(&self) -> (BorrowedFd<'_>, BorrowedFd<'_>) {
        (self.stream.as_fd(), self.stream.as_fd())
    }

    fn read(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize, LinkError> {
        loop {
            self.prepare(deadline, false)?;
            match self.stream.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(0),
                Err(e) if retry(&e, deadline) => continue,
                r => return r.map_err(|e| tcp_error("recv on the tcp socket", e)),
            }
        }
    }

    fn write(&mut self, buf: &[u8], deadline: Deadline) -> Result<usize, LinkError> {
        loop {
            self.prepare(deadline, true)?;
            match self.stream.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if retry(&e, deadline) => continue,
                r => return r.map_err(|e| tcp_error("send on the tcp socket", e)),
            }
        }
    }
}

/// Two pipe ends (anonymous pipes or FIFOs): one to read, one to write.
pub struct PipeIo {
    /// The end we read.
    pub reader: PipeReader,
    /// The end we write.
    pub writer: PipeWriter,
    /// The last read left the pipe empty (it read less than it had room for): the next one
    /// likely waits, so it polls before it reads ([`PipeReader::read_when_ready`]).
    drained: bool,
}

impl PipeIo {
    /// Reads from `reader`, writes to `writer`.
    pub fn new(reader: PipeReader, writer: PipeWriter) -> PipeIo {
        PipeIo { reader, writer, drained: false }
    }
}

impl ByteIo for PipeIo {
    fn fds(&self) -> (BorrowedFd<'_>, BorrowedFd<'_>) {
        (self.reader.as_fd(), self.writer.as_fd())
    }

    fn read(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize, LinkError> {
        use ipcx_sys::pipe::ReadError;
        let timeout = match deadline {
            Deadline::Now => None,
            d => match d.remaining() {
                Some(t) if t.is_zero() => return Err(LinkError::Timeout),
                t => Some(t),
            },
        };
        let r = match timeout {
            None => self.reader.try_read(buf).map(|n| n.unwrap_or(usize::MAX)),
            Some(t) if self.drained => self.reader.read_when_ready(buf, t),
            Some(None) => self.reader.read(buf),
            Some(Some(t)) => self.reader.read_timeout(buf, t),
        };
        if let Ok(n) = r {
            self.drained = n < buf.len();
        }
        match r {
            Ok(usize::MAX) => Err(LinkError::Timeout),
            Ok(n) => Ok(n),
            Err(ReadError::Timeout) => Err(LinkError::Timeout),
            Err(ReadError::PeerGone) => Ok(0),
            Err(e) => Err(LinkError::os("read from the pipe", e)),
        }
    }

    fn write(&mut self, buf: &[u8], deadline: Deadline) -> Result<usize, LinkError> {
        use ipcx_sys::pipe::WriteError;
        let r = match deadline {
            Deadline::Never => self.writer.write_all(buf).map(|()| buf.len()),
            Deadline::Now => self.writer.try_write(buf).map(|n| n.unwrap_or(0)),
            d => match d.remaining() {
                Some(t) if !t.is_zero() => {
                    self.writer.write_all_timeout(buf, t).map(|()| buf.len())
                }
                _ => return Err(LinkError::Timeout),
            },
        };
        match r {
            Ok(0) => Err(LinkError::Timeout),
            Ok(n) => Ok(n),
            Err(WriteError::Timeout { written: 0 }) => Err(LinkError::Timeout),
            Err(WriteError::Timeout { written }) => Ok(written),
            Err(WriteError::PeerGone { .. }) => Err(LinkError::PeerGone),
            Err(e) => Err(LinkError::os("write to the pipe", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_timeouts_are_whole_milliseconds_never_past_the_deadline() {
        let (ms, us) = (Duration::from_millis, Duration::from_micros);
        assert_eq!(socket_timeout(Duration::ZERO), None);
        assert_eq!(socket_timeout(us(300)), Some(us(300)), "below a millisecond: exact");
        assert_eq!(socket_timeout(us(1_999)), Some(ms(1)));
        assert_eq!(socket_timeout(ms(10_000) - us(3)), Some(ms(9_999)));
        // Successive operations, each 10 s from its own start: one timeout, set once.
        assert_eq!(socket_timeout(ms(10_000) - us(5)), socket_timeout(ms(10_000) - us(900)));
        assert_eq!(socket_timeout(Duration::MAX), Some(ms(u64::MAX)));
    }
}
