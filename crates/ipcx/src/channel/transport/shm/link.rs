//! [`ShmLink`]: the data path of one `shm` connection once both sides are attached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipcx_shm::record;
use ipcx_shm::ring::spsc::{Consumer, Peeked, Producer};
use ipcx_shm::ring::ClaimError;
use ipcx_shm::{Doorbell, MappedRegion, WaitError, WaitPolicy};
use ipcx_sys::uds::UdsStream;

use super::layout::{handshake, Dir, Layout};
use crate::channel::core::Reply;
use crate::channel::error::ConnectError;
use crate::channel::link::{Deadline, LinkError, LinkOps, PEER_CHECK_INTERVAL};
use crate::channel::transport::control::peer_gone;
use crate::frame;

type Region = Arc<MappedRegion>;

/// Longest park of a send waiting for room: bounds the delay of a wake-up the consumer's
/// fence-free check can miss (see the module docs).
const ROOM_SLICE: Duration = Duration::from_millis(1);

/// Records are whole cache lines of this many bytes (see [`record_payload`]).
const LINE: usize = 64;

/// Spin turns a fast-path receive takes on the ring itself before it waits on the doorbell
/// (fewer if the policy spins less; see [`ShmLink::turns`]). A record that arrives within
/// them (~2.5 µs; a round trip of the `rpc.shm.spin` bench is ~350 ns) is taken where it was
/// seen, with no return through the doorbell's wait and no second look at the ring:
/// measured across processes, `chan.shm.spin` and `rpc.shm.spin` ~3.5 ns less per direction
/// (eight interleaved rounds). As many as the doorbell's spin takes before its first look at
/// the clock, so a receive that ends within them reads no clock either.
const INLINE_TURNS: u32 = ipcx_shm::doorbell::FIRST_TURNS;

/// The record payload that carries a frame of `frame` bytes: padded so that the record
/// (8-byte header included) fills whole cache lines. Every record then starts on a line, and
/// the headers a receiver reads first (record, frame, and an rpc envelope: 48 bytes) never
/// straddle two lines, which would cost a second cache miss per message. Saturates at
/// `usize::MAX` (more than any ring carries) if that overflows.
#[inline]
pub(super) fn record_payload(frame: usize) -> usize {
    let header = record::HEADER as usize;
    frame
        .checked_add(header)
        .and_then(|n| n.checked_next_multiple_of(LINE))
        .map_or(usize::MAX, |n| n - header)
}

/// Bytes of a record's payload in its first cache line, after the 8-byte record header.
const FIRST: usize = LINE - record::HEADER as usize;

/// Copies `parts`, one after another, to the start of `at` (a claimed record's payload),
/// the bytes past the record's first cache line first. The receiver polls that line for
/// the record header, and the header is the last store of a commit: written in order, the
/// first bytes would take the line from the receiver once, the slower stores further on
/// (lines the receiver's prefetcher may hold) would give it time to take the line back,
/// and the header would take it again. Written this way, the line moves once.
#[inline]
fn fill(at: &mut [u8], parts: &[&[u8]]) {
    let mut off = 0;
    for part in parts {
        let end = off + part.len();
        if end > FIRST {
            let skip = FIRST.saturating_sub(off);
            at[off + skip..end].copy_from_slice(&part[skip..]);
        }
        off = end;
    }
    let mut off = 0;
    for part in parts {
        if off >= FIRST {
            break;
        }
        let n = part.len().min(FIRST - off);
        at[off..off + n].copy_from_slice(&part[..n]);
        off += part.len();
    }
}

/// The frame inside a record's payload: the bytes up to the end the frame header declares,
/// when the rest is exactly the padding [`record_payload`] adds; otherwise all of them, which
/// the channel core then refuses (length mismatch).
#[inline]
fn frame_in(record: &[u8]) -> &[u8] {
    match frame::declared_len(record) {
        Some(len) if len <= record.len() && record_payload(len) == record.len() => &record[..len],
        _ => record,
    }
}

/// The data path of one `shm` connection.
pub(crate) struct ShmLink {
    /// Producer of the outgoing ring.
    tx: Producer<Region>,
    /// Consumer of the incoming ring.
    rx: Consumer<Region>,
    /// Rung after each send; the peer's receive waits on it. Closed when we drop.
    tx_data: Doorbell<Region>,
    /// Waited on by our receive; the peer closes it when it drops.
    rx_data: Doorbell<Region>,
    /// Waited on by our send when the outgoing ring is full.
    tx_space: Doorbell<Region>,
    /// Rung after a release when the peer waits for room. Closed when we drop.
    rx_space: Doorbell<Region>,
    /// The rendezvous socket: its end-of-file says the peer is gone.
    ctl: UdsStream,
    /// How a receive waits: spin, then park.
    policy: WaitPolicy,
    /// Spin turns of the fast-path receive before it waits (see [`INLINE_TURNS`]), taken off
    /// the front of `policy`'s spin.
    turns: u32,
    /// `policy` less those turns: how the fast path waits after them.
    after_turns: WaitPolicy,
    /// The largest frame of the channel.
    max_frame: usize,
}

impl std::fmt::Debug for ShmLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmLink").field("max_frame", &self.max_frame).finish_non_exhaustive()
    }
}

impl ShmLink {
    /// Attaches to the rings and doorbells of `region` (laid out as `layout`, payload at
    /// `base`), sending in direction `out`. Everything read from the region is validated:
    /// a forged segment is a handshake error.
    pub(super) fn attach(
        region: &Region,
        base: usize,
        layout: Layout,
        out: Dir,
        ctl: UdsStream,
        spin: Duration,
        max_frame: usize,
    ) -> Result<ShmLink, ConnectError> {
        let inc = out.reverse();
        let r = || Arc::clone(region);
        let bell = |off: usize| Doorbell::attach(r(), base + off).map_err(handshake);
        let tx = Producer::attach(r(), base + layout.ring(out)).map_err(handshake)?;
        let rx = Consumer::attach(r(), base + layout.ring(inc)).map_err(handshake)?;
        if tx.max_payload() < record_payload(max_frame) as u64 {
            let why = format!(
                "the shm ring carries records of at most {} bytes, not {} (frames of {max_frame})",
                tx.max_payload(),
                record_payload(max_frame)
            );
            return Err(ConnectError::Handshake(why.into()));
        }
        let policy =
            if spin.is_zero() { WaitPolicy::park_only() } else { WaitPolicy::spin_then_park(spin) };
        let (turns, after_turns) = policy.take_turns(INLINE_TURNS);
        Ok(ShmLink {
            tx,
            rx,
            tx_data: bell(layout.data_bell(out))?,
            rx_data: bell(layout.data_bell(inc))?,
            tx_space: bell(layout.space_bell(out))?,
            rx_space: bell(layout.space_bell(inc))?,
            ctl,
            policy,
            turns,
            after_turns,
            max_frame,
        })
    }

    /// The rendezvous socket.
    pub(super) fn ctl(&self) -> &UdsStream {
        &self.ctl
    }

    /// Whether the peer dropped its link (it closed our receive doorbell) or died (the
    /// rendezvous socket is at end-of-file).
    fn peer_left(&self) -> Result<bool, LinkError> {
        Ok(self.rx_data.is_closed() || peer_gone(&self.ctl)?)
    }

    /// How many spin turns a fast-path receive until `deadline` takes on the ring itself,
    /// looking for a record between them, before it calls [`wait_data`](Self::wait_data)
    /// with `spun` (none for [`Deadline::Now`], which never waits).
    #[inline]
    pub(crate) fn turns(&self, deadline: Deadline) -> u32 {
        if deadline == Deadline::Now {
            0
        } else {
            self.turns
        }
    }

    /// Waits until the incoming ring may hold a record: `Ok` means look again. Waits in
    /// slices of [`PEER_CHECK_INTERVAL`] toward the deadline, checking on the peer between
    /// them; a record that arrives during the first spin turns costs no clock read. `spun`:
    /// the caller spun its [`turns`](Self::turns) already, so the wait spins only what is
    /// left of the policy's spin.
    #[cold]
    pub(crate) fn wait_data(&mut self, deadline: Deadline, spun: bool) -> Result<(), LinkError> {
        let mut policy = if spun { self.after_turns } else { self.policy };
        let until = match deadline {
            Deadline::Now => None,
            Deadline::At(t) => Some(Some(t)),
            Deadline::Never => Some(None),
        };
        loop {
            if let Some(until) = until {
                let ShmLink { rx, rx_data, .. } = self;
                // A corrupt ring counts as ready, so that `peek` reports it.
                let ready = || rx.has_next().unwrap_or(true);
                match rx_data.wait_until_by(ready, policy, Some(PEER_CHECK_INTERVAL), until) {
                    Ok(()) => return Ok(()),
                    Err(WaitError::Timeout | WaitError::Closed) => {}
                    Err(WaitError::Os(e)) => {
                        return Err(LinkError::os("waiting on the shm doorbell", e))
                    }
                }
                policy = WaitPolicy::park_only();
            }
            if self.peer_left()? {
                // What the peer sent before it left is read first.
                return match self.rx.has_next() {
                    Ok(false) => Err(LinkError::PeerGone),
                    Ok(true) | Err(_) => Ok(()),
                };
            }
            if until.is_none() || deadline.expired() {
                return Err(LinkError::Timeout);
            }
        }
    }

    /// Waits until a record of `len` bytes fits in the outgoing ring.
    #[cold]
    fn wait_room(&mut self, len: usize, deadline: Deadline) -> Result<(), LinkError> {
        let mut policy = self.policy;
        let mut next_check = Instant::now() + PEER_CHECK_INTERVAL;
        loop {
            let Some(slice) = deadline.slice(ROOM_SLICE) else {
                return Err(LinkError::Timeout);
            };
            let ShmLink { tx, tx_space, .. } = self;
            let mut corrupt = None;
            let ready = || {
                tx.has_room(len).unwrap_or_else(|e| {
                    corrupt = Some(e);
                    true
                })
            };
            let waited = tx_space.wait_until(ready, policy, Some(slice));
            if let Some(e) = corrupt {
                return Err(LinkError::broken(e));
            }
            match waited {
                Ok(()) => return Ok(()),
                Err(WaitError::Timeout) => {}
                Err(WaitError::Closed) => return Err(LinkError::PeerGone),
                Err(WaitError::Os(e)) => {
                    return Err(LinkError::os("waiting on the shm doorbell", e))
                }
            }
            policy = WaitPolicy::park_only();
            let now = Instant::now();
            if now >= next_check {
                if self.peer_left()? {
                    return Err(LinkError::PeerGone);
                }
                next_check = now + PEER_CHECK_INTERVAL;
            }
        }
    }
}

/// What a fast path of the link ([`ShmLink::recv_plain`], [`ShmLink::reply_plain`]) found.
pub(crate) enum Plain<T, F> {
    /// A plain Data frame, handed to the function: what came of it.
    Took(T),
    /// Nothing is ready: the function, back.
    Empty(F),
    /// A record that is not a plain Data frame numbered as expected (or a corrupt ring):
    /// the function, back, for the full receive path to judge it.
    Other(F),
}

/// The next record of `rx` if it is a plain Data frame numbered `seq` with at most `max`
/// payload bytes, with the end of its frame (the payload is `HEADER_LEN..end` of its bytes);
/// `Ok(None)` if nothing is ready, `Err` for any other record. No frame decoding beyond
/// three word comparisons.
#[inline]
fn next_plain(
    rx: &mut Consumer<Region>,
    seq: u64,
    max: usize,
) -> Result<Option<(Peeked<'_, Region>, usize)>, ()> {
    let Some(record) = rx.peek().map_err(|_| ())? else { return Ok(None) };
    let payload = frame::plain_data(frame_in(record.bytes()), seq, max).ok_or(())?;
    let end = frame::HEADER_LEN + payload.len();
    Ok(Some((record, end)))
}

/// Releases a record taken by a fast path and wakes a sender waiting for room, if any (a
/// wake-up that fails only leaves the sender to its ROOM_SLICE; no fence, as in `recv`).
#[inline]
fn release(record: Peeked<'_, Region>, rx_space: &Doorbell<Region>) {
    record.release();
    if rx_space.has_waiters() {
        let _ = rx_space.ring();
    }
}

impl ShmLink {
    /// The channel core's fast path: if the next record is a plain Data frame numbered `seq`
    /// with at most `max` payload bytes, `f` gets its payload in place and, unless it
    /// declines (`Took(None)`: the record stays in the ring), the record is released. No
    /// result moved through the core's error types.
    #[inline]
    pub(crate) fn recv_plain<R, F: FnOnce(&[u8]) -> Option<R>>(
        &mut self,
        seq: u64,
        max: usize,
        f: F,
    ) -> Plain<Option<R>, F> {
        let ShmLink { rx, rx_space, .. } = self;
        let (record, end) = match next_plain(rx, seq, max) {
            Ok(Some(next)) => next,
            Ok(None) => return Plain::Empty(f),
            Err(()) => return Plain::Other(f),
        };
        let Some(r) = f(&record.bytes()[frame::HEADER_LEN..end]) else {
            return Plain::Took(None);
        };
        release(record, rx_space);
        Plain::Took(Some(r))
    }

    /// A request/response server's step on shm (see `Core::recv_reply`): like
    /// [`recv_plain`](Self::recv_plain), and if `f` leaves a reply in `head` and `body`, it
    /// goes into the outgoing ring as frame `seq_out` (at most `max_out` bytes) before the
    /// request's record is released. [`Reply::Full`]: the reply was asked for but is not in
    /// the ring (no room, too large, peer gone): the caller sends it the general way.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn reply_plain<R, F: FnOnce(&[u8], &mut Vec<u8>, &mut Vec<u8>) -> (R, bool)>(
        &mut self,
        seq: u64,
        max: usize,
        seq_out: u64,
        max_out: usize,
        head: &mut Vec<u8>,
        body: &mut Vec<u8>,
        f: F,
    ) -> Plain<(R, Reply), F> {
        let ShmLink { rx, rx_space, tx, tx_data, rx_data, max_frame, .. } = self;
        let (record, end) = match next_plain(rx, seq, max) {
            Ok(Some(next)) => next,
            Ok(None) => return Plain::Empty(f),
            Err(()) => return Plain::Other(f),
        };
        let (r, reply) = f(&record.bytes()[frame::HEADER_LEN..end], head, body);
        let mut done = if reply { Reply::Full } else { Reply::None };
        let msg = head.len() + body.len();
        let len = frame::HEADER_LEN + msg;
        if reply && msg <= max_out && len <= *max_frame && !rx_data.is_closed() {
            // Encoded before the claim, whose first store (the zero word behind the record)
            // may wait for a cache line from the other core: `fill` reads these bytes back,
            // and a load that the store buffer cannot forward (bytes stored piecewise, read
            // 16 at a time) waits until they reach the cache, so behind that store if they
            // were stored after it (~45 ns of the server's time per call in `memmove` by
            // perf's samples; `rpc.shm.spin` ~4 ns per direction).
            let header = frame::FrameHeader {
                kind: frame::FrameKind::Data,
                flags: frame::FrameFlags::NONE,
                len: msg as u32,
                crc: 0,
                seq: seq_out,
            }
            .encode();
            if let Ok(mut claim) = tx.claim(record_payload(len)) {
                fill(claim.bytes(), &[&header[..], head, body]);
                claim.commit();
                // A wake-up that fails leaves a parked peer to its peer-check slice.
                let _ = tx_data.ring();
                done = Reply::Sent;
            }
        }
        release(record, rx_space);
        Plain::Took((r, done))
    }
}

impl LinkOps for ShmLink {
    fn max_frame(&self) -> usize {
        self.max_frame
    }

    #[inline]
    fn send(&mut self, parts: &[&[u8]], deadline: Deadline) -> Result<(), LinkError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.max_frame {
            return Err(LinkError::TooLarge { len, max: self.max_frame });
        }
        if self.rx_data.is_closed() {
            return Err(LinkError::PeerGone);
        }
        let padded = record_payload(len);
        loop {
            match self.tx.claim(padded) {
                Ok(mut claim) => {
                    // The padding after the frame keeps whatever an earlier record left there.
                    fill(claim.bytes(), parts);
                    claim.commit();
                    break;
                }
                Err(ClaimError::Full) => self.wait_room(padded, deadline)?,
                Err(ClaimError::TooLarge { len, max }) => {
                    return Err(LinkError::TooLarge { len, max: max as usize })
                }
                Err(e @ ClaimError::Corrupt(_)) => return Err(LinkError::broken(e)),
            }
        }
        self.tx_data.ring().map_err(|e| LinkError::os("ringing the shm doorbell", e))
    }

    #[inline]
    fn recv<R>(&mut self, deadline: Deadline, f: impl FnOnce(&[u8]) -> R) -> Result<R, LinkError> {
        loop {
            let ShmLink { rx, rx_space, .. } = self;
            if let Some(record) = rx.peek().map_err(LinkError::broken)? {
                let r = f(frame_in(record.bytes()));
                record.release();
                // No fence here (it would cost every receive): a sender that announced
                // itself just now may be missed, and then finds room after its ROOM_SLICE.
                if rx_space.has_waiters() {
                    rx_space.ring().map_err(|e| LinkError::os("ringing the shm doorbell", e))?;
                }
                return Ok(r);
            }
            self.wait_data(deadline, false)?;
        }
    }
}

impl Drop for ShmLink {
    fn drop(&mut self) {
        // Ends the peer's receive (once it has read what we sent) and any send of its that
        // waits for room, at once: both find their doorbell closed.
        let _ = self.tx_data.close();
        let _ = self.rx_space.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameFlags, FrameHeader, FrameKind, HEADER_LEN};

    #[test]
    fn records_fill_whole_cache_lines() {
        for (frame, payload) in [(0, 56), (24, 56), (56, 56), (57, 120), (112, 120), (121, 184)] {
            assert_eq!(record_payload(frame), payload, "{frame}");
            assert_eq!((payload + record::HEADER as usize) % LINE, 0);
        }
        assert_eq!(record_payload(usize::MAX - 1), usize::MAX, "saturates");
    }

    #[test]
    fn fill_puts_every_part_where_a_plain_copy_would() {
        let bytes: Vec<u8> = (0..=255).collect();
        // Parts that end before, at, across and far past the first line's 56 bytes.
        for cuts in [&[][..], &[24, 40], &[24, 40, 104], &[56], &[10, 56, 57], &[0, 0, 3, 200]] {
            let mut parts = Vec::new();
            let mut from = 0;
            for &to in cuts.iter().chain(std::iter::once(&230)) {
                parts.push(&bytes[from..to]);
                from = to;
            }
            let mut at = vec![0xEE; 240];
            fill(&mut at, &parts);
            assert_eq!(&at[..230], &bytes[..230], "{cuts:?}");
            assert!(at[230..].iter().all(|&b| b == 0xEE), "{cuts:?}: past the parts");
        }
    }

    #[test]
    fn the_frame_is_cut_from_its_padding_and_bad_padding_is_left_to_the_core() {
        let frame = |len: u32| {
            let header =
                FrameHeader { kind: FrameKind::Data, flags: FrameFlags::NONE, len, crc: 0, seq: 1 };
            let mut bytes = header.encode().to_vec();
            bytes.resize(HEADER_LEN + len as usize, 0xAB);
            bytes
        };
        let mut record = frame(40);
        record.resize(record_payload(record.len()), 0);
        assert_eq!(record.len(), 120);
        assert_eq!(frame_in(&record), &frame(40)[..]);
        // An exact record (no padding at all) is padded wrongly unless it is a whole line.
        let exact = frame(40);
        assert_eq!(frame_in(&exact).len(), exact.len());
        // Too much padding, a length past the record, a short record: handed over whole.
        let mut long = record.clone();
        long.resize(record.len() + LINE, 0);
        assert_eq!(frame_in(&long).len(), long.len());
        let mut lying = frame(40);
        lying[8] = 200;
        lying.resize(120, 0);
        assert_eq!(frame_in(&lying).len(), 120);
        assert_eq!(frame_in(&[1, 2, 3]), &[1, 2, 3]);
    }
}
