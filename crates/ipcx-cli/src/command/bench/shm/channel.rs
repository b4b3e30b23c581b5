//! The channel of the `shm.*` entries: one ipcx-shm [`Segment`] holding two SPSC rings (one
//! per direction) and two futex [`Doorbell`]s, each rung by its ring's producer and waited on
//! by its consumer.
//!
//! Layout of the segment's payload (offsets from its start; rings start on pages, doorbells
//! on their own cache-line pairs):
//!
//! ```text
//! 0             ring bench → peer    SPSC control block + capacity bytes
//! span          ring peer → bench    the same
//! 2·span        doorbell of ring bench → peer (the peer waits on it)
//! 2·span + 128  doorbell of ring peer → bench (the bench waits on it)
//! ```
//!
//! The capacity is the next power of two ≥ [`RECORDS_PER_LAP`] × the message size, at least
//! [`MIN_CAPACITY`]. A record that does not fit before the ring's end is preceded by a pad
//! record, and reading that pad costs the receiver one more cache miss: with 4 records per
//! lap one message in four paid it, and 1 MiB messages measured 1.15–1.18× the 64 B latency;
//! with 16 per lap at most one in 15 pays it, and the ratio is 0.98–1.08 (`ipcx bench --quick
//! --filter shm.spin`). The same rule for every size keeps the cost independent of size.
//!
//! Send: `claim(len)`, the payload copied in only in `copy` modes, `commit`, then
//! `Doorbell::ring` (a fence and a load, no syscall while nobody sleeps). On a full ring
//! (bursts only) the sender spins until the consumer releases space. Receive:
//! `Doorbell::wait_until(has_next, policy, OP_TIMEOUT)`, `peek`, the payload copied out only
//! in `copy` modes, `release`. Zero-copy modes touch no payload byte: what they measure is
//! the cost of handing over an offset, whatever the size.
//!
//! Lifecycle: the bench creates the segment (0600, a random `ipcx-bench-shm-…` name) and
//! unlinks it as soon as the peer has opened it. Each side closes its own receive doorbell
//! when the other process exits, so a receive blocked on a dead peer ends at once.

use std::hint::spin_loop;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ipcx_shm::doorbell::DoorbellState;
use ipcx_shm::ring::spsc::{self, Consumer, Producer};
use ipcx_shm::ring::ClaimError;
use ipcx_shm::{
    Doorbell, Expect, MappedRegion, Segment, SegmentKind, SegmentSpec, WaitError, WaitPolicy,
};
use ipcx_sys::liveness::Pidfd;

use super::super::floors::{
    bench_process, unique_name, Channel, Endpoint, ExitWatch, PeerIo, OP_TIMEOUT,
};

/// Smallest ring capacity: 64 KiB.
pub const MIN_CAPACITY: u64 = 64 << 10;
/// Messages of the measured size that fit in one lap of the ring (rounded up to a power of
/// two), so wrap-around pads are rare and equally rare at every size.
pub const RECORDS_PER_LAP: u64 = 16;
/// What the segment holds: an application-defined kind ("BNCH" with the top bit set).
const KIND: SegmentKind = SegmentKind::Other(0x8000_0000 | 0x424e_4348);
/// Fingerprint of this layout; the low byte carries log2 of the capacity.
const FINGERPRINT: u64 = 0x6970_6378_6265_0100;
/// Rings start on page boundaries.
const PAGE: usize = 4096;
/// Spin turns between two deadline checks while waiting for room in a full ring.
const SPINS_PER_CHECK: u32 = 4096;

/// How an endpoint waits and what it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// How a receive waits for a record.
    pub policy: WaitPolicy,
    /// Copy the payload in on send and out on receive; otherwise touch only the header word.
    pub copy: bool,
    /// Most records one receive takes when several are ready (it says how many it took).
    pub batch: u64,
}

/// A ring direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToPeer,
    ToBench,
}

/// Where the rings and doorbells lie for one message size; both sides compute it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Data bytes of each ring.
    pub capacity: u64,
    /// Bytes from one ring's start to the next (control block + data, page-rounded).
    span: usize,
}

impl Layout {
    /// The layout for `size`-byte messages.
    pub fn new(size: usize) -> Layout {
        let capacity =
            (size as u64).saturating_mul(RECORDS_PER_LAP).next_power_of_two().max(MIN_CAPACITY);
        let span = (spsc::required_size(capacity) as usize).next_multiple_of(PAGE);
        Layout { capacity, span }
    }

    fn ring(&self, dir: Dir) -> usize {
        match dir {
            Dir::ToPeer => 0,
            Dir::ToBench => self.span,
        }
    }

    fn bell(&self, dir: Dir) -> usize {
        match dir {
            Dir::ToPeer => 2 * self.span,
            Dir::ToBench => 2 * self.span + DoorbellState::SIZE,
        }
    }

    /// Bytes of segment payload.
    pub fn payload_size(&self) -> usize {
        2 * self.span + 2 * DoorbellState::SIZE
    }

    fn fingerprint(&self) -> u64 {
        FINGERPRINT | u64::from(self.capacity.trailing_zeros())
    }

    fn expect(&self) -> Expect {
        Expect { kind: KIND, fingerprint: self.fingerprint() }
    }
}

/// Bench side: creates the segment, builds the rings and doorbells, and hands its name to the
/// peer; the name is unlinked once the peer has opened it.
pub fn create(size: usize, mode: Mode) -> Result<Channel> {
    let layout = Layout::new(size);
    let name = unique_name("shm");
    let mut spec = SegmentSpec::new(KIND, layout.payload_size());
    spec.fingerprint = layout.fingerprint();
    let segment =
        Segment::create(&name, &spec).context("cannot create the shm segment in /dev/shm")?;
    let region = Arc::clone(segment.region());
    let base = segment.payload_offset();
    for dir in [Dir::ToPeer, Dir::ToBench] {
        spsc::init(&region, base + layout.ring(dir), layout.capacity)
            .context("cannot place a ring in the segment")?;
        Doorbell::init_in(Arc::clone(&region), base + layout.bell(dir))
            .context("cannot place a doorbell in the segment")?;
    }
    let end = ShmEnd::attach(&region, base, layout, Dir::ToPeer, mode)?;
    let channel = Channel::connect_with(move |peer| {
        // The peer has mapped the segment: the name is no longer needed.
        segment.remove().context("cannot unlink the shm segment")?;
        let peer = Pidfd::open(peer.id()).context("cannot watch the peer process")?;
        let watch = close_on_exit(peer, &region, base + layout.bell(Dir::ToBench))?;
        Ok(Box::new(ShmEnd { _watch: Some(watch), ..end }))
    });
    Ok(channel.rendezvous(name))
}

/// Peer side: opens the bench's segment by name and attaches to the other ends.
pub fn open(size: usize, mode: Mode, io: PeerIo) -> Result<Box<dyn Endpoint>> {
    let layout = Layout::new(size);
    let segment = Segment::open(io.rendezvous()?, layout.expect())
        .context("cannot open the bench's shm segment")?;
    if segment.payload_size() < layout.payload_size() {
        bail!("the bench's segment is smaller than the layout for {size}-byte messages");
    }
    let region = Arc::clone(segment.region());
    let base = segment.payload_offset();
    drop(segment); // an opener's handle does not unlink; the mapping lives on in `region`
    let end = ShmEnd::attach(&region, base, layout, Dir::ToBench, mode)?;
    let watch = close_on_exit(bench_process()?, &region, base + layout.bell(Dir::ToPeer))?;
    Ok(Box::new(ShmEnd { _watch: Some(watch), ..end }))
}

/// Closes the doorbell at `offset` once `process` has exited, ending waits on it.
fn close_on_exit(process: Pidfd, region: &Arc<MappedRegion>, offset: usize) -> Result<ExitWatch> {
    let bell = Doorbell::attach(Arc::clone(region), offset).context("no doorbell to watch")?;
    ExitWatch::start(process, move || {
        let _ = bell.close();
    })
}

type Region = Arc<MappedRegion>;

/// One side of the channel.
#[derive(Debug)]
struct ShmEnd {
    /// Producer of the outgoing ring.
    tx: Producer<Region>,
    /// Consumer of the incoming ring.
    rx: Consumer<Region>,
    /// Rung after each send: wakes the other side's receive.
    tx_bell: Doorbell<Region>,
    /// Waited on by each receive.
    rx_bell: Doorbell<Region>,
    mode: Mode,
    /// Closes `rx_bell` when the other process exits.
    _watch: Option<ExitWatch>,
}

impl ShmEnd {
    /// The end that sends in direction `out` (and receives in the other).
    fn attach(region: &Region, base: usize, layout: Layout, out: Dir, mode: Mode) -> Result<Self> {
        let inc = match out {
            Dir::ToPeer => Dir::ToBench,
            Dir::ToBench => Dir::ToPeer,
        };
        let at = |off: usize| (Arc::clone(region), base + off);
        let (r, off) = at(layout.ring(out));
        let tx = Producer::attach(r, off).context("cannot attach to the outgoing ring")?;
        let (r, off) = at(layout.ring(inc));
        let rx = Consumer::attach(r, off).context("cannot attach to the incoming ring")?;
        let (r, off) = at(layout.bell(out));
        let tx_bell = Doorbell::attach(r, off).context("cannot attach to the outgoing doorbell")?;
        let (r, off) = at(layout.bell(inc));
        let rx_bell = Doorbell::attach(r, off).context("cannot attach to the incoming doorbell")?;
        Ok(ShmEnd { tx, rx, tx_bell, rx_bell, mode, _watch: None })
    }

    /// Spins until the outgoing ring may have room again; fails after [`OP_TIMEOUT`].
    fn await_room(&self, spins: &mut u32, deadline: &mut Option<Instant>) -> Result<()> {
        spin_loop();
        *spins += 1;
        if *spins % SPINS_PER_CHECK == 0 {
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + OP_TIMEOUT);
            if Instant::now() >= deadline {
                bail!("the ring stayed full for {OP_TIMEOUT:?} (peer gone?)");
            }
        }
        Ok(())
    }
}

impl Endpoint for ShmEnd {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        let (mut spins, mut deadline) = (0, None);
        loop {
            match self.tx.claim(msg.len()) {
                Ok(mut claim) => {
                    if self.mode.copy {
                        claim.bytes().copy_from_slice(msg);
                    }
                    claim.commit();
                    break;
                }
                Err(ClaimError::Full) => self.await_room(&mut spins, &mut deadline)?,
                Err(e) => return Err(e).context("cannot claim room in the ring"),
            }
        }
        self.tx_bell.ring().context("cannot ring the doorbell")
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<u64> {
        let ShmEnd { rx, rx_bell, mode, .. } = self;
        // A corrupt ring counts as ready, so that `peek` reports it.
        match rx_bell.wait_until(|| rx.has_next().unwrap_or(true), mode.policy, Some(OP_TIMEOUT)) {
            Ok(()) => {}
            Err(WaitError::Timeout) => bail!("no message within {OP_TIMEOUT:?} (peer gone?)"),
            Err(WaitError::Closed) => bail!("the other process exited"),
            Err(e) => return Err(e).context("cannot wait on the doorbell"),
        }
        let mut got = 0;
        while let Some(record) = rx.peek().context("the incoming ring is corrupt")? {
            if record.len() != buf.len() {
                bail!("a record of {} bytes where {} were sent", record.len(), buf.len());
            }
            if mode.copy {
                buf.copy_from_slice(record.bytes());
            }
            record.release();
            got += 1;
            if got == mode.batch {
                break;
            }
        }
        if got == 0 {
            bail!("the doorbell said a record was ready but the ring is empty");
        }
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_sizes_rings_for_sixteen_records_per_lap() {
        let small = Layout::new(8);
        assert_eq!(small.capacity, MIN_CAPACITY);
        assert_eq!(small.span % PAGE, 0);
        assert!(small.span as u64 >= spsc::required_size(small.capacity));
        let big = Layout::new(1 << 20);
        assert_eq!(big.capacity, 16 << 20);
        assert!(ipcx_shm::ring::max_payload(big.capacity) >= 1 << 20);
        assert_eq!(Layout::new(65536 + 1).capacity, 2 << 20);
        assert_eq!(big.bell(Dir::ToBench) - big.bell(Dir::ToPeer), 128);
        assert_eq!(big.payload_size(), big.bell(Dir::ToBench) + 128);
        assert_ne!(small.fingerprint(), big.fingerprint());
    }
}
