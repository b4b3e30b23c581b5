//! `floor.spin`: the yardstick of shared-memory transports, busy-waiting on cache lines of a
//! POSIX shm object both processes map. No system call on the data path.
//!
//! Layout of the object (every block starts on a [`LINE`] boundary, so the two directions
//! and the two ring indices never share a cache line pair):
//! - two mailboxes, bench → peer then peer → bench: a sequence word (`AtomicU64`, written
//!   only by the mailbox's sender, counting its messages from 1) followed by the payload;
//! - a ring, peer → bench: `head` (next slot to read, written only by the bench), `tail`
//!   (next slot to write, written only by the peer), then the slots.
//!
//! Ping-pong goes through the mailboxes: the sender copies the payload in and publishes the
//! next sequence number with `Release`; the receiver spins on an `Acquire` load until it
//! sees it, then copies the payload out. Only one message per direction is ever in flight,
//! so a mailbox needs no "consumed" flag. Throughput goes through the ring, a minimal
//! copying SPSC queue: fixed slots of the message size, each side caching the other's
//! index and reloading it only when the ring looks full (or empty).
//!
//! The harness does not say which phase it is in, so the endpoints tell by the call
//! pattern: the peer's send that answers its receive, and the bench's receive that waits
//! for that answer, use the mailbox; the peer's other sends (its bursts) and the bench's
//! other receives use the ring. Every spin checks a deadline ([`OP_TIMEOUT`]) every
//! [`SPINS_PER_CHECK`] turns, so a dead peer fails the entry instead of hanging it.

use std::hint::spin_loop;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ipcx_sys::mapping::{Access, MapOptions, Mapping};
use ipcx_sys::posix_shm::PosixShm;
use ipcx_sys::CreateMode;

use super::{unique_name, Channel, Endpoint, Floor, PeerIo, OP_TIMEOUT};

/// Alignment of every block: two 64-byte cache lines, which x86 prefetches in pairs.
const LINE: usize = 128;
/// Size of the sequence word in front of a mailbox's payload.
const SEQ: usize = 8;
/// Most ring slots; fewer when slots are large (see [`RING_BYTES`]).
const MAX_SLOTS: usize = 256;
/// Fewest ring slots, so the producer can fill one while the consumer reads another.
const MIN_SLOTS: usize = 2;
/// The ring's slots take about this many bytes when messages are large.
const RING_BYTES: usize = 4 << 20;
/// Spin turns between two deadline checks.
const SPINS_PER_CHECK: u32 = 4096;

/// Busy-waiting in POSIX shared memory.
#[derive(Debug)]
pub struct Spin;

impl Floor for Spin {
    fn name(&self) -> &'static str {
        "floor.spin"
    }

    fn create(&self, size: usize) -> Result<Channel> {
        let layout = Layout::new(size);
        let name = unique_name("spin");
        let shm = PosixShm::builder(&name)
            .size(layout.len)
            .open()
            .context("cannot create the shm object in /dev/shm")?;
        let end = SpinEnd::new(map(&shm)?, layout, Role::Bench);
        let channel = Channel::connect_with(move |_| {
            // The peer has mapped the object: the name is no longer needed.
            shm.remove().context("cannot unlink the shm object")?;
            Ok(Box::new(end))
        });
        Ok(channel.rendezvous(name))
    }

    fn open(&self, size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        let layout = Layout::new(size);
        let shm = PosixShm::builder(io.rendezvous()?)
            .create_mode(CreateMode::Open)
            .size(layout.len)
            .open()
            .context("cannot open the bench's shm object")?;
        Ok(Box::new(SpinEnd::new(map(&shm)?, layout, Role::Peer)))
    }
}

/// Maps the whole object read-write, page tables filled in now rather than on first touch.
fn map(shm: &PosixShm) -> Result<Mapping> {
    let options = MapOptions::new(Access::ReadWrite).populate(true);
    shm.map_with(options).context("cannot map the shm object")
}

/// Offsets of the mailboxes and the ring for one message size; both sides compute it.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Mailbox bench → peer.
    to_peer: usize,
    /// Mailbox peer → bench.
    to_bench: usize,
    /// The ring's read index (`AtomicU64`): slots the bench has consumed. Bench writes.
    head: usize,
    /// The ring's write index (`AtomicU64`): slots the peer has filled. Peer writes.
    tail: usize,
    /// First slot.
    slots: usize,
    /// Bytes per slot: the message size rounded up to 8.
    slot_size: usize,
    /// Number of slots.
    slot_count: u64,
    /// Size of the whole object.
    len: usize,
}

impl Layout {
    fn new(size: usize) -> Layout {
        let mailbox = (SEQ + size).next_multiple_of(LINE);
        let (to_peer, to_bench) = (0, mailbox);
        let head = 2 * mailbox;
        let tail = head + LINE;
        let slots = tail + LINE;
        let slot_size = size.next_multiple_of(8).max(8);
        let slot_count = (RING_BYTES / slot_size).clamp(MIN_SLOTS, MAX_SLOTS);
        let len = slots + slot_count * slot_size;
        Layout {
            to_peer,
            to_bench,
            head,
            tail,
            slots,
            slot_size,
            slot_count: slot_count as u64,
            len,
        }
    }

    /// Offset of the slot that ring index `index` uses.
    fn slot(&self, index: u64) -> usize {
        // The remainder is below slot_count, which is a usize.
        self.slots + (index % self.slot_count) as usize * self.slot_size
    }
}

/// Which process an endpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The bench: sends to `to_peer`, receives from `to_bench` and consumes the ring.
    Bench,
    /// The peer: the other way round, and produces the ring.
    Peer,
}

/// One side of the spin channel.
#[derive(Debug)]
struct SpinEnd {
    map: Mapping,
    layout: Layout,
    role: Role,
    /// Mailbox this side sends to, and receives from.
    tx: usize,
    rx: usize,
    /// Messages sent to `tx` (its sequence word's value).
    sent: u64,
    /// Messages received from `rx`.
    seen: u64,
    /// Bench: a send awaits its answer. Peer: a receive owes its answer.
    answer_due: bool,
    /// Peer: the ring's tail. Bench: its head. (This side's own index.)
    ring_own: u64,
    /// The other side's ring index as last loaded.
    ring_other: u64,
}

impl SpinEnd {
    fn new(map: Mapping, layout: Layout, role: Role) -> SpinEnd {
        let (tx, rx) = match role {
            Role::Bench => (layout.to_peer, layout.to_bench),
            Role::Peer => (layout.to_bench, layout.to_peer),
        };
        SpinEnd {
            map,
            layout,
            role,
            tx,
            rx,
            sent: 0,
            seen: 0,
            answer_due: false,
            ring_own: 0,
            ring_other: 0,
        }
    }

    /// Puts `msg` in the outgoing mailbox.
    fn post(&mut self, msg: &[u8]) -> Result<()> {
        self.map.write_at(self.tx + SEQ, msg)?;
        self.sent += 1;
        // SYNC: mailbox message published.
        self.map.atomic_u64_at(self.tx)?.store(self.sent, Ordering::Release);
        Ok(())
    }

    /// Waits for the next message in the incoming mailbox and copies it to `buf`.
    fn take(&mut self, buf: &mut [u8]) -> Result<()> {
        let want = self.seen + 1;
        let seq = self.map.atomic_u64_at(self.rx)?;
        // SYNC: mailbox message published.
        spin_until(|| seq.load(Ordering::Acquire) == want, "the other side's message")?;
        self.map.read_at(self.rx + SEQ, buf)?;
        self.seen = want;
        Ok(())
    }

    /// Peer: copies `msg` into the next ring slot, waiting while the ring is full.
    fn push(&mut self, msg: &[u8]) -> Result<()> {
        let Layout { head, tail, slot_count, .. } = self.layout;
        let index = self.ring_own;
        if index - self.ring_other == slot_count {
            let head = self.map.atomic_u64_at(head)?;
            let cached = &mut self.ring_other;
            spin_until(
                || {
                    // SYNC: slot released.
                    *cached = head.load(Ordering::Acquire);
                    index - *cached < slot_count
                },
                "room in the ring",
            )?;
        }
        self.map.write_at(self.layout.slot(index), msg)?;
        self.ring_own = index + 1;
        // SYNC: slot filled.
        self.map.atomic_u64_at(tail)?.store(index + 1, Ordering::Release);
        Ok(())
    }

    /// Bench: copies the next ring slot to `buf`, waiting while the ring is empty.
    fn pop(&mut self, buf: &mut [u8]) -> Result<()> {
        let Layout { head, tail, .. } = self.layout;
        let index = self.ring_own;
        if index == self.ring_other {
            let tail = self.map.atomic_u64_at(tail)?;
            let cached = &mut self.ring_other;
            spin_until(
                || {
                    // SYNC: slot filled.
                    *cached = tail.load(Ordering::Acquire);
                    *cached != index
                },
                "a message in the ring",
            )?;
        }
        self.map.read_at(self.layout.slot(index), buf)?;
        self.ring_own = index + 1;
        // SYNC: slot released.
        self.map.atomic_u64_at(head)?.store(index + 1, Ordering::Release);
        Ok(())
    }
}

impl Endpoint for SpinEnd {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        match self.role {
            Role::Bench => {
                self.post(msg)?;
                self.answer_due = true;
                Ok(())
            }
            Role::Peer if std::mem::take(&mut self.answer_due) => self.post(msg),
            Role::Peer => self.push(msg),
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<u64> {
        match self.role {
            Role::Peer => {
                self.take(buf)?;
                self.answer_due = true;
            }
            Role::Bench if std::mem::take(&mut self.answer_due) => self.take(buf)?,
            Role::Bench => self.pop(buf)?,
        }
        Ok(1)
    }
}

/// Spins until `ready` says so, or fails once [`OP_TIMEOUT`] has passed. The clock is read
/// only every [`SPINS_PER_CHECK`] turns, so a wait that ends quickly never reads it.
fn spin_until(mut ready: impl FnMut() -> bool, what: &str) -> Result<()> {
    let mut deadline = None;
    loop {
        for _ in 0..SPINS_PER_CHECK {
            if ready() {
                return Ok(());
            }
            spin_loop();
        }
        let deadline = *deadline.get_or_insert_with(|| Instant::now() + OP_TIMEOUT);
        if Instant::now() >= deadline {
            bail!("no sign of {what} within {OP_TIMEOUT:?} of spinning (peer gone?)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_keeps_blocks_apart_and_sizes_the_ring() {
        let small = Layout::new(64);
        assert_eq!((small.to_peer, small.to_bench, small.head, small.tail), (0, 128, 256, 384));
        assert_eq!((small.slots, small.slot_size, small.slot_count), (512, 64, 256));
        assert_eq!(small.len, 512 + 256 * 64);
        assert_eq!(small.slot(257), 512 + 64);

        let odd = Layout::new(5);
        assert_eq!((odd.slot_size, odd.to_bench % LINE), (8, 0));

        let big = Layout::new(1 << 20);
        assert_eq!(big.slot_count, 4);
        assert!(big.to_bench >= SEQ + (1 << 20) && big.head >= big.to_bench + SEQ + (1 << 20));
        assert_eq!([big.to_bench, big.head, big.tail, big.slots].map(|o| o % LINE), [0; 4]);
    }

    #[test]
    fn both_paths_carry_messages_in_one_mapping() {
        let layout = Layout::new(24);
        let name = unique_name("spin-unit");
        let shm = PosixShm::builder(&name).size(layout.len).open().unwrap();
        let mut bench = SpinEnd::new(map(&shm).unwrap(), layout, Role::Bench);
        let mut peer = SpinEnd::new(map(&shm).unwrap(), layout, Role::Peer);
        shm.remove().unwrap();
        let mut buf = [0u8; 24];
        for round in 0..3u8 {
            bench.send(&[round; 24]).unwrap();
            peer.recv(&mut buf).unwrap();
            assert_eq!(buf, [round; 24]);
            peer.send(&[round + 100; 24]).unwrap();
            assert_eq!(bench.recv(&mut buf).unwrap(), 1);
            assert_eq!(buf, [round + 100; 24]);
        }
        // A burst longer than the ring would block the producer, so stay within it.
        for i in 0..layout.slot_count {
            peer.send(&[i as u8; 24]).unwrap();
        }
        for i in 0..layout.slot_count {
            bench.recv(&mut buf).unwrap();
            assert_eq!(buf, [i as u8; 24]);
        }
    }
}
