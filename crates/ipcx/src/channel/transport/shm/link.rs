//! [`ShmLink`]: the data path of one `shm` connection once both sides are attached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipcx_shm::ring::spsc::{Consumer, Producer};
use ipcx_shm::ring::ClaimError;
use ipcx_shm::{Doorbell, MappedRegion, WaitError, WaitPolicy};
use ipcx_sys::uds::UdsStream;

use super::layout::{handshake, Dir, Layout};
use crate::channel::error::ConnectError;
use crate::channel::link::{Deadline, LinkError, LinkOps, PEER_CHECK_INTERVAL};
use crate::channel::transport::control::peer_gone;

type Region = Arc<MappedRegion>;

/// Longest park of a send waiting for room: bounds the delay of a wake-up the consumer's
/// fence-free check can miss (see the module docs).
const ROOM_SLICE: Duration = Duration::from_millis(1);

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
        if tx.max_payload() < max_frame as u64 {
            let why = format!(
                "the shm ring carries frames of at most {} bytes, not {max_frame}",
                tx.max_payload()
            );
            return Err(ConnectError::Handshake(why.into()));
        }
        let policy =
            if spin.is_zero() { WaitPolicy::park_only() } else { WaitPolicy::spin_then_park(spin) };
        Ok(ShmLink {
            tx,
            rx,
            tx_data: bell(layout.data_bell(out))?,
            rx_data: bell(layout.data_bell(inc))?,
            tx_space: bell(layout.space_bell(out))?,
            rx_space: bell(layout.space_bell(inc))?,
            ctl,
            policy,
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

    /// Waits until the incoming ring may hold a record: `Ok` means look again. Waits in
    /// slices of [`PEER_CHECK_INTERVAL`] toward the deadline, checking on the peer between
    /// them; a record that arrives during the first spin turns costs no clock read.
    #[cold]
    fn wait_data(&mut self, deadline: Deadline) -> Result<(), LinkError> {
        let mut policy = self.policy;
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
        loop {
            match self.tx.claim(len) {
                Ok(mut claim) => {
                    let mut at = claim.bytes();
                    for part in parts {
                        let (dst, rest) = at.split_at_mut(part.len());
                        dst.copy_from_slice(part);
                        at = rest;
                    }
                    claim.commit();
                    break;
                }
                Err(ClaimError::Full) => self.wait_room(len, deadline)?,
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
                let r = f(record.bytes());
                record.release();
                // No fence here (it would cost every receive): a sender that announced
                // itself just now may be missed, and then finds room after its ROOM_SLICE.
                if rx_space.stats().waiters != 0 {
                    rx_space.ring().map_err(|e| LinkError::os("ringing the shm doorbell", e))?;
                }
                return Ok(r);
            }
            self.wait_data(deadline)?;
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
