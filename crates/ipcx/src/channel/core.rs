//! The part of a channel written once for every transport: sequence numbers, send modes and
//! acknowledgements, validation of every frame header the peer sends, clean close.
//!
//! Data frames carry a sequence number that starts at 1 and grows by one per message in each
//! direction; a receiver refuses any other number (a lost, duplicated or reordered frame is a
//! broken peer, never delivered). A sender in [`SendMode::Acknowledged`] sets the
//! acknowledgement flag and then waits for an `Ack` frame carrying the same number, which the
//! receiver sends once its user has taken the message. Data frames that arrive while a
//! sender waits for its acknowledgement are kept, in order, for the next receive.

use std::collections::VecDeque;
use std::os::fd::{BorrowedFd, OwnedFd};

use thiserror::Error;

use super::error::{RecvError, SendError};
use super::link::{Deadline, LinkError, LinkOps};
use super::transport::shm::{Plain, ShmLink};
use super::{Link, SendMode, Transport};
use crate::frame::{FrameFlags, FrameHeader, FrameKind, HEADER_LEN};

/// How the peer broke the protocol.
#[derive(Debug, Error)]
pub enum Violation {
    /// The frame header is invalid.
    #[error("invalid frame header")]
    Frame(#[from] crate::frame::FrameError),
    /// A data frame out of sequence.
    #[error("message number {got} where {want} was due (lost, duplicated or reordered)")]
    Sequence {
        /// Number received.
        got: u64,
        /// Number due.
        want: u64,
    },
    /// An acknowledgement of a message we did not wait for.
    #[error("acknowledgement of message {got} while waiting for {want}")]
    Ack {
        /// Number acknowledged.
        got: u64,
        /// Number waited for.
        want: u64,
    },
    /// A frame flagged as carrying fds arrived without them.
    #[error("message {seq} is flagged as carrying file descriptors but none arrived")]
    MissingFds {
        /// Its sequence number.
        seq: u64,
    },
    /// The peer sent more messages than we keep while waiting for its acknowledgement.
    #[error("the peer sent {kept} messages while we waited for an acknowledgement")]
    Flood {
        /// Messages kept so far.
        kept: usize,
    },
    /// A frame kind that has no place in an established channel.
    #[error("unexpected {kind:?} frame of {len} bytes in an established channel")]
    Unexpected {
        /// Its kind.
        kind: FrameKind,
        /// Its payload length.
        len: u32,
    },
}

/// A data frame received while waiting for an acknowledgement.
struct Pending {
    ack: Option<u64>,
    payload: Vec<u8>,
    fds: Vec<OwnedFd>,
}

/// Where the channel stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The peer sent `Close`: nothing more will come.
    Closed,
    /// The peer is gone or broke the protocol: nothing more will come, nothing can be sent.
    Dead,
}

/// One end of an established channel, over any link.
pub(crate) struct Core {
    pub(crate) link: Link,
    pub(crate) transport: Transport,
    /// Largest payload the peer accepts (agreed at connect).
    max_send: usize,
    /// Largest payload we accept.
    max_recv: usize,
    mode: SendMode,
    /// Whether data frames carry a crc32c of their payload.
    checksum: bool,
    /// Sequence number of the last data frame sent.
    sent: u64,
    /// Sequence number of the last data frame received.
    received: u64,
    pending: VecDeque<Pending>,
    /// Fds that came with the message last received (closed at the next receive).
    last_fds: Vec<OwnedFd>,
    /// How the fast receive path's wait failed, for the receive to report.
    wait_failed: Option<LinkError>,
    state: State,
}

/// What [`Core::recv_reply`] did with the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// None was asked for.
    None,
    /// Sent.
    Sent,
    /// The channel was full: the reply is still in the caller's buffer.
    Full,
    /// The send failed for good (the peer is gone or broke the protocol); the channel's next
    /// operation reports why.
    Failed,
}

/// What one received frame turned out to be.
enum Got<R> {
    /// A data frame, handed to the caller's function: its result and the seq to acknowledge.
    Data(R, Option<u64>),
    /// A data frame kept for later (the caller waits for an acknowledgement, or its
    /// function declined the message).
    Kept,
    /// An acknowledgement.
    Ack(u64),
    /// The peer closed.
    Close,
}

impl Core {
    /// A core over an established `link`.
    pub(crate) fn new(
        link: Link,
        transport: Transport,
        max_send: usize,
        max_recv: usize,
        mode: SendMode,
    ) -> Core {
        // Never promise more than the link carries.
        let carried = link.max_frame().saturating_sub(HEADER_LEN);
        let (max_send, max_recv) = (max_send.min(carried), max_recv.min(carried));
        Core {
            link,
            transport,
            max_send,
            max_recv,
            mode,
            checksum: false,
            sent: 0,
            received: 0,
            pending: VecDeque::new(),
            last_fds: Vec::new(),
            wait_failed: None,
            state: State::Open,
        }
    }

    /// The largest message this end may send.
    pub(crate) fn max_message(&self) -> usize {
        self.max_send
    }

    /// The send mode of plain `send` calls.
    pub(crate) fn mode(&self) -> SendMode {
        self.mode
    }

    /// Makes data frames carry a crc32c of their payload (receivers check it whenever it
    /// is there, whatever their own setting).
    pub(crate) fn set_checksum(&mut self, on: bool) {
        self.checksum = on;
    }

    /// Changes the send mode of plain `send` calls.
    pub(crate) fn set_mode(&mut self, mode: SendMode) {
        self.mode = mode;
    }

    /// Sends `msg` (with `fds`, if any) in `mode`, waiting until `deadline`.
    pub(crate) fn send(
        &mut self,
        msg: &[u8],
        fds: &[BorrowedFd<'_>],
        mode: SendMode,
        deadline: Deadline,
    ) -> Result<(), SendError> {
        self.send_parts([&[], msg], fds, mode, deadline)
    }

    /// Sends one message made of `parts`, one after the other (a header the caller built
    /// apart from its body need not be copied in front of it first); as [`send`](Self::send).
    pub(crate) fn send_parts(
        &mut self,
        parts: [&[u8]; 2],
        fds: &[BorrowedFd<'_>],
        mode: SendMode,
        deadline: Deadline,
    ) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::PeerGone);
        }
        let len = parts[0].len() + parts[1].len();
        if len > self.max_send {
            return Err(SendError::TooLarge {
                len,
                max: self.max_send,
                transport: self.transport,
                hint: self.transport.size_hint(),
            });
        }
        let seq = self.sent + 1;
        let mut flags = match mode {
            SendMode::Acknowledged => FrameFlags::ACK_REQUESTED,
            SendMode::Buffered => FrameFlags::NONE,
        };
        if !fds.is_empty() {
            flags = flags | FrameFlags::FDS;
        }
        let crc = if self.checksum {
            flags = flags | FrameFlags::CRC;
            crate::frame::crc32c_of(parts)
        } else {
            0
        };
        let header = FrameHeader { kind: FrameKind::Data, flags, len: len as u32, crc, seq };
        let bytes = header.encode();
        let (three, two);
        let frame: &[&[u8]] = if parts[0].is_empty() {
            two = [&bytes[..], parts[1]];
            &two
        } else {
            three = [&bytes[..], parts[0], parts[1]];
            &three
        };
        let sent = if fds.is_empty() {
            self.link.send(frame, deadline)
        } else {
            self.link.send_fds(frame, fds, deadline)
        };
        match sent {
            Ok(()) => self.sent = seq,
            Err(LinkError::Timeout) if deadline == Deadline::Now => return Err(SendError::Full),
            Err(e) => return Err(self.send_failed(e)),
        }
        if mode == SendMode::Acknowledged {
            self.wait_ack(seq, deadline)?;
        }
        Ok(())
    }

    /// Waits for the acknowledgement of `seq`, keeping data frames that arrive meanwhile.
    fn wait_ack(&mut self, seq: u64, deadline: Deadline) -> Result<(), SendError> {
        loop {
            match self.recv_frame(deadline, &mut None::<fn(&[u8]) -> Option<()>>) {
                Ok(Got::Ack(n)) if n == seq => return Ok(()),
                // The late acknowledgement of an earlier send that timed out: drop it.
                Ok(Got::Ack(n)) if n < seq => {}
                Ok(Got::Ack(got)) => {
                    self.state = State::Dead;
                    return Err(SendError::Broken(Violation::Ack { got, want: seq }.into()));
                }
                Ok(Got::Kept | Got::Data(..)) => {}
                Ok(Got::Close) => return Err(SendError::PeerGone),
                Err(RecvError::Empty | RecvError::Timeout) => return Err(SendError::Timeout),
                Err(RecvError::Closed | RecvError::PeerGone) => return Err(SendError::PeerGone),
                Err(RecvError::Broken(e)) => return Err(SendError::Broken(e)),
                Err(RecvError::Os { op, source }) => return Err(SendError::Os { op, source }),
                Err(e @ (RecvError::BufferTooSmall { .. } | RecvError::Decode(_))) => {
                    return Err(SendError::Broken(e.into()))
                }
            }
        }
    }

    /// Receives the next message and passes its payload to `f` (in place where the transport
    /// allows), waiting until `deadline`. If `f` declines it (returns `None`), the message
    /// stays queued, unacknowledged, for the next receive.
    ///
    /// The fast path (see [`recv_plain`](Self::recv_plain)) is inlined into the caller,
    /// the rest is not.
    #[inline]
    pub(crate) fn recv<R>(
        &mut self,
        deadline: Deadline,
        f: impl FnOnce(&[u8]) -> Option<R>,
    ) -> Result<Option<R>, RecvError> {
        match self.recv_plain(deadline, f) {
            Ok(got) => Ok(got),
            Err(f) => self.recv_general(deadline, f),
        }
    }

    /// [`recv`](Self::recv) of what the fast path left: a failed wait, kept messages, any
    /// frame that is not a plain Data frame, every transport but shm.
    #[inline(never)]
    fn recv_general<R>(
        &mut self,
        deadline: Deadline,
        f: impl FnOnce(&[u8]) -> Option<R>,
    ) -> Result<Option<R>, RecvError> {
        if let Some(e) = self.wait_failed.take() {
            return Err(self.link_failed(e, deadline));
        }
        self.last_fds.clear();
        if let Some(p) = self.pending.pop_front() {
            let Some(r) = f(&p.payload) else {
                self.pending.push_front(p);
                return Ok(None);
            };
            self.last_fds = p.fds;
            self.ack(p.ack);
            return Ok(Some(r));
        }
        let mut f = Some(f);
        loop {
            match self.recv_frame(deadline, &mut f)? {
                Got::Data(r, ack) => {
                    self.ack(ack);
                    return Ok(Some(r));
                }
                // Declined by `f`: kept in the pending queue, unacknowledged.
                Got::Kept => return Ok(None),
                // An acknowledgement nobody waits for (its sender timed out): drop it.
                Got::Ack(_) => {}
                Got::Close => return Err(RecvError::Closed),
            }
        }
    }

    /// A request/response server's step, one call into the channel per request: receives
    /// like [`recv`](Self::recv) (`f` always takes the message) and, if `f` left a reply in
    /// `head` and `body` (returned `true` beside its result), sends it at once (the two one
    /// after the other, as one message), buffered, without waiting. What became of the reply
    /// comes back beside `f`'s result; on [`Reply::Full`] it is still in the buffers, for
    /// the caller to send when there is room.
    ///
    /// On shm a plain request is answered in one function ([`ShmLink::reply_plain`]): the
    /// reply goes into the ring before the request is released, with no return through the
    /// receive path and call into the send path in between. Measured across processes
    /// (`rpc.shm.spin`, interleaved runs of one binary with and without it): 30–36 ns less
    /// per direction, far more than the instructions it saves.
    ///
    /// [`ShmLink::reply_plain`]: super::transport::shm::ShmLink::reply_plain
    pub(crate) fn recv_reply<R>(
        &mut self,
        deadline: Deadline,
        head: &mut Vec<u8>,
        body: &mut Vec<u8>,
        f: impl FnOnce(&[u8], &mut Vec<u8>, &mut Vec<u8>) -> (R, bool),
    ) -> Result<(R, Reply), RecvError> {
        let f = match self.reply_plain(deadline, head, body, f) {
            Err(f) => f,
            Ok((r, Reply::Full)) => return Ok((r, self.send_reply(head, body))),
            Ok((r, done)) => return Ok((r, done)),
        };
        // Not the shm fast path's case (or its wait failed): straight to the general path,
        // without trying and waiting on the fast path of `recv` once more.
        let got = self.recv_general(deadline, |msg| Some(f(msg, &mut *head, &mut *body)))?;
        let (r, reply) =
            got.expect("a function that always accepts never leaves the message queued");
        if !reply {
            return Ok((r, Reply::None));
        }
        Ok((r, self.send_reply(head, body)))
    }

    /// Sends a reply of [`recv_reply`](Self::recv_reply), buffered, without waiting.
    fn send_reply(&mut self, head: &[u8], body: &[u8]) -> Reply {
        match self.send_parts([head, body], &[], SendMode::Buffered, Deadline::Now) {
            Ok(()) => Reply::Sent,
            Err(SendError::Full) => Reply::Full,
            Err(_) => Reply::Failed,
        }
    }

    /// The fast path of [`recv_reply`](Self::recv_reply) on shm, as
    /// [`recv_plain`](Self::recv_plain) is of `recv`: the reply goes into the ring before
    /// the request's record is released. `Err` hands `f` back for the general path;
    /// [`Reply::Full`] means the reply is still to be sent.
    #[inline]
    fn reply_plain<R, F: FnOnce(&[u8], &mut Vec<u8>, &mut Vec<u8>) -> (R, bool)>(
        &mut self,
        deadline: Deadline,
        head: &mut Vec<u8>,
        body: &mut Vec<u8>,
        f: F,
    ) -> Result<(R, Reply), F> {
        if self.checksum {
            return Err(f);
        }
        let (expect, max, seq_out, max_out) =
            (self.received + 1, self.max_recv, self.sent + 1, self.max_send);
        let step = |link: &mut ShmLink, f| {
            link.reply_plain(expect, max, seq_out, max_out, &mut *head, &mut *body, f)
        };
        let (r, done) = self.on_shm(deadline, f, step)?;
        self.received = expect;
        if done == Reply::Sent {
            self.sent = seq_out;
        }
        Ok((r, done))
    }

    /// The fast path of [`recv`](Self::recv) on shm: while nothing is kept and the next
    /// record is a plain Data frame (no acknowledgement, fds or crc), it is handed to `f`
    /// from the ring without the general frame handling; `f` comes back (`Err`) for any
    /// other record, which the general path then judges.
    #[inline]
    fn recv_plain<R, F: FnOnce(&[u8]) -> Option<R>>(
        &mut self,
        deadline: Deadline,
        f: F,
    ) -> Result<Option<R>, F> {
        let (expect, max) = (self.received + 1, self.max_recv);
        let got = self.on_shm(deadline, f, |link, f| link.recv_plain(expect, max, f))?;
        // Declined: the record stays in the ring, still the one due.
        if got.is_some() {
            self.received = expect;
        }
        Ok(got)
    }

    /// Runs a fast-path `step` of the shm link, waiting for data between tries, until it
    /// takes a record (`Ok`) or hands `f` back (`Err`) for the general path: on another
    /// transport, a channel that is not open or keeps messages, a record that is not plain,
    /// or a wait that failed (its error left in `wait_failed`, to keep this path's result
    /// small).
    #[inline]
    fn on_shm<T, F>(
        &mut self,
        deadline: Deadline,
        f: F,
        mut step: impl FnMut(&mut ShmLink, F) -> Plain<T, F>,
    ) -> Result<T, F> {
        let Link::Shm(link) = &mut self.link else { return Err(f) };
        if self.state != State::Open || !self.pending.is_empty() || !self.last_fds.is_empty() {
            return Err(f);
        }
        let mut f = f;
        // Spun first on the ring itself (see ShmLink::turns), then on the doorbell.
        let mut turns = link.turns(deadline);
        loop {
            match step(link, f) {
                Plain::Took(t) => return Ok(t),
                Plain::Other(g) => return Err(g),
                Plain::Empty(g) if turns > 0 => {
                    f = g;
                    turns -= 1;
                    std::hint::spin_loop();
                }
                Plain::Empty(g) => {
                    f = g;
                    if let Err(e) = link.wait_data(deadline, true) {
                        self.wait_failed = Some(e);
                        return Err(f);
                    }
                }
            }
        }
    }

    /// Sends the acknowledgement of `seq`, if one was asked for. A failure here means the
    /// sender is gone; the next operation reports it.
    fn ack(&mut self, seq: Option<u64>) {
        let Some(seq) = seq else { return };
        let bytes =
            FrameHeader { kind: FrameKind::Ack, flags: FrameFlags::NONE, len: 0, crc: 0, seq }
                .encode();
        let deadline = Deadline::after(Some(super::link::PEER_CHECK_INTERVAL * 50));
        if self.link.send(&[&bytes], deadline).is_err() {
            self.state = State::Dead;
        }
    }

    /// Receives one frame. A data frame goes to `f` if given (taking it), else to the
    /// pending queue.
    fn recv_frame<R, F: FnOnce(&[u8]) -> Option<R>>(
        &mut self,
        deadline: Deadline,
        f: &mut Option<F>,
    ) -> Result<Got<R>, RecvError> {
        match self.state {
            State::Open => {}
            State::Closed => return Err(RecvError::Closed),
            State::Dead => return Err(RecvError::PeerGone),
        }
        let expect = self.received + 1;
        let max = self.max_recv;
        let pending = &mut self.pending;
        let mut has_fds = None;
        let result = self.link.recv(deadline, |bytes| -> Result<Got<R>, Violation> {
            let header = FrameHeader::decode(bytes, max_len(max))?;
            let payload = bytes.get(HEADER_LEN..).unwrap_or_default();
            header.check_payload(payload)?;
            match header.kind {
                FrameKind::Data if header.seq != expect => {
                    Err(Violation::Sequence { got: header.seq, want: expect })
                }
                FrameKind::Data => {
                    let ack =
                        header.flags.contains(FrameFlags::ACK_REQUESTED).then_some(header.seq);
                    if header.flags.contains(FrameFlags::FDS) {
                        has_fds = Some(header.seq);
                    }
                    if let Some(r) = f.take().and_then(|f| f(payload)) {
                        return Ok(Got::Data(r, ack));
                    }
                    // A peer that floods while we wait for its acknowledgement is broken: our
                    // memory is not its buffer.
                    if pending.len() >= MAX_PENDING {
                        return Err(Violation::Flood { kept: pending.len() });
                    }
                    let fds = Vec::new();
                    pending.push_back(Pending { ack, payload: payload.to_vec(), fds });
                    Ok(Got::Kept)
                }
                FrameKind::Ack if header.len == 0 => Ok(Got::Ack(header.seq)),
                FrameKind::Close if header.len == 0 => Ok(Got::Close),
                kind => Err(Violation::Unexpected { kind, len: header.len }),
            }
        });
        let mut result = result;
        // Fds are rare: the frame is looked at in place, never moved (moving the result
        // through a tuple cost a store-forwarding stall on every receive).
        if let (Some(seq), Ok(Ok(got))) = (has_fds, &result) {
            let kept = matches!(got, Got::Kept);
            match self.link.take_fds() {
                Some(batch) => match self.pending.back_mut() {
                    Some(p) if kept => p.fds = batch,
                    _ => self.last_fds = batch,
                },
                None => result = Ok(Err(Violation::MissingFds { seq })),
            }
        }
        match result {
            Ok(Ok(got)) => {
                match got {
                    Got::Data(..) | Got::Kept => self.received = expect,
                    Got::Close => self.state = State::Closed,
                    Got::Ack(_) => {}
                }
                Ok(got)
            }
            Ok(Err(why)) => {
                self.state = State::Dead;
                Err(RecvError::Broken(Box::new(why)))
            }
            Err(e) => Err(self.link_failed(e, deadline)),
        }
    }

    /// Maps a link error of a receive waiting until `deadline`; anything but a timeout
    /// ends the channel.
    fn link_failed(&mut self, e: LinkError, deadline: Deadline) -> RecvError {
        match e {
            LinkError::Timeout if deadline == Deadline::Now => RecvError::Empty,
            LinkError::Timeout => RecvError::Timeout,
            e => {
                self.state = State::Dead;
                match e {
                    LinkError::PeerGone => RecvError::PeerGone,
                    LinkError::Broken(e) => RecvError::Broken(e),
                    e @ (LinkError::TooLarge { .. } | LinkError::FdsUnsupported) => {
                        RecvError::Broken(Box::new(e))
                    }
                    LinkError::Os { op, source } => RecvError::Os { op, source },
                    LinkError::Timeout => unreachable!("handled above"),
                }
            }
        }
    }

    /// What an event loop waits on for this channel's link.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn readiness(&self) -> Option<super::link::Readiness<'_>> {
        self.link.readiness()
    }

    /// Takes the fds that came with the message last received.
    pub(crate) fn take_last_fds(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.last_fds)
    }

    /// Maps a link error of a send; anything but a timeout ends the channel.
    fn send_failed(&mut self, e: LinkError) -> SendError {
        match e {
            LinkError::Timeout => SendError::Timeout,
            // Nothing was sent: the channel is as good as before.
            LinkError::FdsUnsupported => SendError::FdsUnsupported { transport: self.transport },
            LinkError::TooLarge { len, max } => SendError::TooLarge {
                len: len.saturating_sub(HEADER_LEN),
                max: max.saturating_sub(HEADER_LEN),
                transport: self.transport,
                hint: self.transport.size_hint(),
            },
            e => {
                self.state = State::Dead;
                match e {
                    LinkError::PeerGone => SendError::PeerGone,
                    LinkError::Broken(e) => SendError::Broken(e),
                    LinkError::Os { op, source } => SendError::Os { op, source },
                    LinkError::Timeout | LinkError::TooLarge { .. } | LinkError::FdsUnsupported => {
                        unreachable!("above")
                    }
                }
            }
        }
    }

    /// Tells the peer we close (a Close frame), then marks the channel dead.
    /// Waits at most [`CLOSE_GRACE`] for room (a full channel whose reader is alive drains
    /// quickly; one that does not gets `PeerGone` instead of `Closed`).
    pub(crate) fn close(&mut self) {
        if self.state == State::Open {
            let (kind, flags) = (FrameKind::Close, FrameFlags::NONE);
            let bytes = FrameHeader { kind, flags, len: 0, crc: 0, seq: 0 }.encode();
            let _ = self.link.send(&[&bytes], Deadline::after(Some(CLOSE_GRACE)));
        }
        self.state = State::Dead;
    }
}

/// Most data frames kept while an acknowledged send waits (see [`Violation::Flood`]).
pub const MAX_PENDING: usize = 1024;

/// How long dropping a channel waits for room to send its Close frame.
pub const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// The header's length limit for payloads of at most `max` bytes.
fn max_len(max: usize) -> u32 {
    u32::try_from(max).unwrap_or(u32::MAX)
}
