//! Byte streams: an ordered, flow-controlled stream of bytes between two processes that
//! implements [`std::io::Read`], [`std::io::BufRead`] and [`std::io::Write`], for users who
//! bring their own protocol.
//!
//! A [`ByteStream`] is a [`Channel`] of contract `ipcx.stream` 1.0 ([`stream_contract`])
//! whose messages are chunks of the stream, so it runs over every transport (shm,
//! uds-stream, posix-mq, …): [`ByteStream::listen`] → [`StreamListener::accept`] on one
//! side, [`ByteStream::connect`] on the other. Both ends read and write.
//!
//! - **Writing** buffers bytes until a chunk of [`ByteStream::chunk_size`] bytes (the
//!   channel's `max_message`) is full, then sends it; [`flush`](std::io::Write::flush)
//!   sends a partial chunk. So many small writes travel as one message; call `flush` when
//!   the peer must see what was written. A write of a whole chunk or more with nothing
//!   buffered goes out directly, without a copy. Dropping the stream flushes, best effort,
//!   waiting at most the write timeout (or [`DROP_FLUSH_TIMEOUT`]); use
//!   [`close`](ByteStream::close) to see that error.
//! - **Reading** serves the current chunk and blocks for the next one; a read returns at
//!   most the rest of one chunk.
//! - **Flow control** is the channel's back-pressure: when the ring, queue or socket is
//!   full, the writer blocks (up to its write timeout) until the reader catches up.
//! - **Timeouts** work like [`std::net::TcpStream`]'s:
//!   [`set_read_timeout`](ByteStream::set_read_timeout) and
//!   [`set_write_timeout`](ByteStream::set_write_timeout)
//!   (`None`: wait as long as it takes; zero is refused); an expired wait is an error of kind
//!   [`TimedOut`](io::ErrorKind::TimedOut). In [non-blocking mode](ByteStream::set_nonblocking)
//!   waits that would block fail with [`WouldBlock`](io::ErrorKind::WouldBlock).
//! - **End**: a read returns `Ok(0)` (end of stream) once the peer closed cleanly and
//!   everything it wrote was read. If the peer died instead, reads fail with
//!   [`ConnectionReset`](io::ErrorKind::ConnectionReset) and writes with
//!   [`BrokenPipe`](io::ErrorKind::BrokenPipe), never hang. There is no half-close: closing
//!   ends both directions. Corrupt input from the peer is [`InvalidData`](io::ErrorKind::InvalidData).
//!
//! A `ByteStream` is used by one thread at a time (reads and writes need `&mut`); a
//! writer blocked on a full channel while the peer also only writes waits like a TCP
//! socket would.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use std::time::Duration;
//! use ipcx::stream::ByteStream;
//! use ipcx::{Namespace, Transport};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ns = Namespace::new("demo")?;
//! // Process A
//! let mut listener = ByteStream::listen(&ns, "logs", Transport::Shm)?;
//! let mut a = listener.accept()?;
//! // Process B
//! let mut b = ByteStream::connect(&ns, "logs", Transport::Shm, Duration::from_secs(1))?;
//! b.write_all(b"hello")?;
//! b.flush()?;
//! let mut got = [0; 5];
//! a.read_exact(&mut got)?;
//! # Ok(()) }
//! ```

use std::io::{self, BufRead, Read, Write};
use std::time::Duration;

use crate::channel::{
    AcceptError, Channel, ChannelBuilder, ConnectError, ListenError, Listener, RecvError,
    SendError, SendMode,
};
use crate::contract::{fnv1a, ContractId, Version};
use crate::namespace::Namespace;
use crate::Transport;

/// How long dropping a stream without a write timeout waits to flush what is buffered.
pub const DROP_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The channel contract of byte streams: `ipcx.stream` 1.0, fingerprint FNV-1a 64 of the
/// bytes `"ipcx.stream"`. Only streams connect to streams.
pub fn stream_contract() -> ContractId {
    ContractId {
        name: "ipcx.stream".to_owned(),
        version: Version::new(1, 0),
        fingerprint: fnv1a(0xcbf2_9ce4_8422_2325, b"ipcx.stream"),
    }
}

/// A listening stream endpoint; [`accept`](Self::accept) gives one [`ByteStream`] per peer.
#[derive(Debug)]
pub struct StreamListener {
    listener: Listener,
}

impl StreamListener {
    /// Accepts the next peer, waiting as long as it takes.
    pub fn accept(&mut self) -> Result<ByteStream, AcceptError> {
        self.listener.accept().map(ByteStream::new)
    }

    /// Like [`accept`](Self::accept), giving up after `timeout`.
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<ByteStream, AcceptError> {
        self.listener.accept_timeout(timeout).map(ByteStream::new)
    }

    /// Accepts a peer that is already waiting ([`AcceptError::Timeout`] if none).
    pub fn try_accept(&mut self) -> Result<ByteStream, AcceptError> {
        self.listener.try_accept().map(ByteStream::new)
    }

    /// The endpoint file peers connect to.
    pub fn path(&self) -> &std::path::Path {
        self.listener.path()
    }
}

/// One end of a byte stream (see the [module docs](self)).
#[derive(Debug)]
pub struct ByteStream {
    channel: Channel,
    /// Received bytes not read yet: `rbuf[rpos..]`.
    rbuf: Vec<u8>,
    rpos: usize,
    /// Written bytes not sent yet (at most one chunk).
    wbuf: Vec<u8>,
    chunk: usize,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    nonblocking: bool,
    /// The peer closed cleanly and everything was read.
    eof: bool,
    chunks_sent: u64,
    chunks_received: u64,
}

impl ByteStream {
    /// Listens as stream `name` over `transport` in `ns`.
    pub fn listen(
        ns: &Namespace,
        name: &str,
        transport: Transport,
    ) -> Result<StreamListener, ListenError> {
        Self::listen_with(Channel::builder(name, transport).namespace(ns.clone()))
    }

    /// Listens with a channel builder's options (permissions, allow-lists, `max_message`,
    /// …); its contract and send mode are replaced by the stream's.
    pub fn listen_with(builder: ChannelBuilder) -> Result<StreamListener, ListenError> {
        let listener = prepare(builder).listen()?;
        Ok(StreamListener { listener })
    }

    /// Connects to stream `name` over `transport` in `ns`, waiting at most `timeout`.
    pub fn connect(
        ns: &Namespace,
        name: &str,
        transport: Transport,
        timeout: Duration,
    ) -> Result<ByteStream, ConnectError> {
        Self::connect_with(Channel::builder(name, transport).namespace(ns.clone()), timeout)
    }

    /// Connects with a channel builder's options (see [`listen_with`](Self::listen_with)).
    pub fn connect_with(
        builder: ChannelBuilder,
        timeout: Duration,
    ) -> Result<ByteStream, ConnectError> {
        prepare(builder).connect_timeout(timeout).map(ByteStream::new)
    }

    fn new(channel: Channel) -> ByteStream {
        let chunk = channel.max_message().max(1);
        ByteStream {
            channel,
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: Vec::with_capacity(chunk),
            chunk,
            read_timeout: None,
            write_timeout: None,
            nonblocking: false,
            eof: false,
            chunks_sent: 0,
            chunks_received: 0,
        }
    }

    /// The largest chunk (channel message) this end sends.
    pub fn chunk_size(&self) -> usize {
        self.chunk
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.channel.transport()
    }

    /// The peer, as the handshake described it.
    pub fn peer(&self) -> &crate::channel::PeerInfo {
        self.channel.peer()
    }

    /// How many chunks this end has sent (small writes coalesce into few chunks).
    pub fn chunks_sent(&self) -> u64 {
        self.chunks_sent
    }

    /// How many chunks this end has received.
    pub fn chunks_received(&self) -> u64 {
        self.chunks_received
    }

    /// How long a read waits for data (`None`: as long as it takes). Zero is refused with
    /// [`InvalidInput`](io::ErrorKind::InvalidInput), as by `TcpStream`.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout = check_timeout(timeout)?;
        Ok(())
    }

    /// How long sending a chunk waits for room (`None`: as long as it takes). Zero is
    /// refused with [`InvalidInput`](io::ErrorKind::InvalidInput).
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.write_timeout = check_timeout(timeout)?;
        Ok(())
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    /// In non-blocking mode, a read with nothing to read and a send with no room fail at
    /// once with [`WouldBlock`](io::ErrorKind::WouldBlock) (a write still buffers what fits
    /// in the current chunk).
    pub fn set_nonblocking(&mut self, nonblocking: bool) {
        self.nonblocking = nonblocking;
    }

    /// Flushes and closes the stream; the peer reads the end of the stream after the data.
    pub fn close(mut self) -> io::Result<()> {
        let r = self.flush();
        // The buffer is empty now, or the error is reported: nothing for drop to flush.
        self.wbuf.clear();
        r
    }

    /// The wait of one receive or send.
    fn wait(&self, timeout: Option<Duration>) -> Option<Duration> {
        if self.nonblocking {
            Some(Duration::ZERO)
        } else {
            timeout
        }
    }

    /// Sends the buffered bytes as one chunk (kept buffered if sending fails).
    fn send_buffered(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let timeout = self.wait(self.write_timeout);
        self.channel.send_with(&self.wbuf, SendMode::Buffered, timeout).map_err(send_err)?;
        self.wbuf.clear();
        self.chunks_sent += 1;
        Ok(())
    }

    /// Makes sure unread bytes are buffered, receiving the next chunk if needed; `false` at
    /// the end of the stream.
    fn fill(&mut self) -> io::Result<bool> {
        while self.rpos >= self.rbuf.len() {
            if self.eof {
                return Ok(false);
            }
            let timeout = self.wait(self.read_timeout);
            let mut rbuf = std::mem::take(&mut self.rbuf);
            rbuf.clear();
            let got = self.channel.recv_in_place(timeout, |msg| rbuf.extend_from_slice(msg));
            self.rbuf = rbuf;
            self.rpos = 0;
            match got {
                Ok(()) => self.chunks_received += 1,
                Err(RecvError::Closed) => self.eof = true,
                Err(e) => return Err(recv_err(e)),
            }
        }
        Ok(true)
    }
}

impl Read for ByteStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = {
            let src = self.fill_buf()?;
            let n = src.len().min(buf.len());
            buf[..n].copy_from_slice(&src[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ByteStream {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.fill()? {
            Ok(&self.rbuf[self.rpos..])
        } else {
            Ok(&[])
        }
    }

    fn consume(&mut self, amt: usize) {
        self.rpos = (self.rpos + amt).min(self.rbuf.len());
    }
}

impl Write for ByteStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.wbuf.len() >= self.chunk {
            self.send_buffered()?;
        }
        if self.wbuf.is_empty() && buf.len() >= self.chunk {
            // A whole chunk with nothing buffered: straight from the caller's buffer.
            let timeout = self.wait(self.write_timeout);
            let chunk = &buf[..self.chunk];
            self.channel.send_with(chunk, SendMode::Buffered, timeout).map_err(send_err)?;
            self.chunks_sent += 1;
            return Ok(self.chunk);
        }
        let n = buf.len().min(self.chunk - self.wbuf.len());
        self.wbuf.extend_from_slice(&buf[..n]);
        if self.wbuf.len() == self.chunk {
            // A full chunk goes now; if it cannot, it stays buffered and the next write
            // or flush retries (and reports the error). The bytes were taken either way.
            let _ = self.send_buffered();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffered()
    }
}

impl Drop for ByteStream {
    fn drop(&mut self) {
        if !self.wbuf.is_empty() {
            let timeout = Some(self.write_timeout.unwrap_or(DROP_FLUSH_TIMEOUT));
            let _ = self.channel.send_with(&self.wbuf, SendMode::Buffered, timeout);
        }
    }
}

/// The builder with the stream's contract and send mode.
fn prepare(builder: ChannelBuilder) -> ChannelBuilder {
    builder.contract(stream_contract()).send_mode(SendMode::Buffered)
}

/// Refuses a zero timeout, as `TcpStream` does.
fn check_timeout(timeout: Option<Duration>) -> io::Result<Option<Duration>> {
    if timeout == Some(Duration::ZERO) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a zero timeout is invalid; use None to wait as long as it takes, or set_nonblocking",
        ));
    }
    Ok(timeout)
}

/// The io::Error of a failed chunk send.
fn send_err(e: SendError) -> io::Error {
    let kind = match e {
        SendError::Full => io::ErrorKind::WouldBlock,
        SendError::Timeout => io::ErrorKind::TimedOut,
        SendError::PeerGone => io::ErrorKind::BrokenPipe,
        SendError::Broken(_) => io::ErrorKind::InvalidData,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

/// The io::Error of a failed chunk receive (the clean end of the stream is not one).
fn recv_err(e: RecvError) -> io::Error {
    let kind = match e {
        RecvError::Empty => io::ErrorKind::WouldBlock,
        RecvError::Timeout => io::ErrorKind::TimedOut,
        RecvError::PeerGone => io::ErrorKind::ConnectionReset,
        RecvError::Broken(_) => io::ErrorKind::InvalidData,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}
