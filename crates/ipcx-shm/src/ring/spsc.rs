//! Single-producer single-consumer ring of variable-size records, zero copy on both sides.
//!
//! # Layout (at a 128-aligned offset of a [`Region`])
//!
//! ```text
//! +0    producer line  write position, published, full   (written by the producer only)
//! +128  consumer line  read position, consumed           (written by the consumer only)
//! +256  info line      tag, log2(capacity), capacity     (written once by `init`)
//! +384  data           capacity bytes of records (see crate::record)
//! ```
//!
//! # Memory-ordering protocol
//!
//! The record header is the commit flag: the consumer never needs the producer's `write`
//! position, so a record reaches it in one cache-line transfer (the line holding the
//! header), not two (`write`'s line, then the header's).
//!
//! - The word at the producer's `write` position is always zero ("nothing here yet"): the
//!   data area starts zeroed at `init`, and the producer keeps 8 bytes of the ring free
//!   behind every record so that it can zero the word at the record's end before it
//!   publishes the record.
//! - Commit: the producer writes the payload (plain), having zeroed the word at the
//!   record's end (Relaxed) at claim or now, whichever costs less (`ring::clear_end`: at
//!   claim when that word opens a cache line of its own; not at all when an earlier
//!   whole-line record's commit zeroed it ahead, `Producer::zero_ahead`), stores the DATA
//!   header with **Release**, and, if the record wrapped, the PAD header in front of it
//!   with **Release** after that (so a consumer that sees the PAD sees the record behind it).
//!   Only then does it store `write` (for room accounting, counters and attach; the
//!   consumer does not wait on it). (`SYNC: records published`)
//! - The consumer loads the header at its `read` position with **Acquire**: zero means
//!   empty; anything else is a header of this lap (or the ring is corrupt), and the
//!   payload behind it is complete. Because the word at `write` was zeroed before the
//!   record in front of it was published, the consumer never mistakes bytes of an earlier
//!   lap for a header.
//! - The consumer, done with records, stores the new `read` position with **Release**; the
//!   producer loads `read` with **Acquire** before reusing the space. (`SYNC: space
//!   released`) This orders the consumer's reads of a payload before the producer's next
//!   writes to the same bytes.
//! - The producer caches `read`, reloading it only when the cache says the ring is full.
//!   On the fast path a record costs the consumer one line the producer wrote (the header's)
//!   and the producer no line the consumer wrote.
//!
//! # Hostile peers
//!
//! Positions and headers loaded from shared memory are checked before use: `write` must
//! lie in `read..=read+capacity`, be 8-aligned and below [`MAX_POSITION`], `read` in
//! `write-capacity..=write`; each header is loaded once and validated by [`record::decode`]
//! against the consumer's own position (a record must end at least 8 bytes short of a full
//! ring, as an honest producer leaves it). Any violation is a [`Corrupt`] error; nothing is
//! read out of bounds. Payload bytes handed out in place may
//! still be changed by a misbehaving peer while the caller looks at them; treat their
//! contents as untrusted input.

use std::marker::PhantomData;
use std::mem::size_of;
use std::ptr::NonNull;

#[cfg(loom)]
use super::shadow;
use super::{
    check_place, check_positions, clear_end, max_payload, publish, published_at, ClaimError,
    Corrupt, LayoutError, Step, DATA_LINE, EMPTY, RESERVE,
};
use crate::layout::Padded;
use crate::record::{self, Corruption, Record};
use crate::region::Region;
#[cfg(not(loom))]
use crate::sync::DataWord;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Tag identifying an SPSC control block: "SPS2", the header-published protocol above
/// ("SPSC", whose consumer waited on `write` and whose producer kept no zero word, is
/// refused: the two cannot share a ring).
const TAG: u32 = 0x5350_5332;

pub use super::MAX_POSITION;

#[repr(C)]
struct ProducerLine {
    /// Next byte position the producer writes; only the producer stores it. Monotonic.
    write: AtomicU64,
    /// Records published; only the producer stores it (plain load + store, no RMW).
    published: AtomicU64,
    /// Claims refused because the ring was full; producer only.
    full: AtomicU64,
}

#[repr(C)]
struct ConsumerLine {
    /// Next byte position the consumer reads; only the consumer stores it. Monotonic,
    /// `write - capacity <= read <= write`.
    read: AtomicU64,
    /// Records released; consumer only.
    consumed: AtomicU64,
}

#[repr(C)]
struct Info {
    /// [`TAG`] once initialised.
    tag: AtomicU32,
    /// log2 of the capacity.
    cap_log2: AtomicU32,
}

/// The control block at the start of an SPSC ring.
#[repr(C)]
pub struct SpscControl {
    producer: Padded<ProducerLine>,
    consumer: Padded<ConsumerLine>,
    info: Padded<Info>,
    /// Under loom, the data area's header words, which loom cannot see in raw bytes.
    #[cfg(loom)]
    shadow: shadow::Shadow,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<SpscControl>() == 384);
    assert!(std::mem::align_of::<SpscControl>() == 128);
};

/// Bytes an SPSC ring of `capacity` data bytes occupies in a region (control + data).
pub const fn required_size(capacity: u64) -> u64 {
    size_of::<SpscControl>() as u64 + capacity
}

/// Counters of an SPSC ring, readable from any process that maps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpscStats {
    /// Records published by the producer (wrapping).
    pub published: u64,
    /// Records released by the consumer (wrapping).
    pub consumed: u64,
    /// Claims refused because the ring was full (wrapping).
    pub full: u64,
    /// Bytes between the read and write positions (records in flight, with their headers).
    pub queued_bytes: u64,
}

#[cfg(not(loom))]
type HeaderWord = DataWord;
#[cfg(loom)]
type HeaderWord = AtomicU64;

/// Validates a capacity and returns its log2: the rings' usual range, or under loom
/// 256..=[`shadow::MAX_CAPACITY`] bytes, so models stay small.
fn ring_capacity_log2(capacity: u64) -> Result<u32, LayoutError> {
    let log2 = super::capacity_log2(capacity)?;
    #[cfg(loom)]
    if capacity > shadow::MAX_CAPACITY {
        return Err(LayoutError::BadCapacity(capacity));
    }
    Ok(log2)
}

/// Geometry and addresses shared by both ends.
struct Ring<R: Region> {
    region: R,
    ctrl: NonNull<SpscControl>,
    data: NonNull<u8>,
    cap_log2: u32,
    cap: u64,
    max_payload: u64,
}

impl<R: Region> Ring<R> {
    fn ctrl(&self) -> &SpscControl {
        // SAFETY: `ctrl` points into `region` (checked at attach), which self keeps alive;
        // the control block holds only atomics, so shared references are sound.
        unsafe { self.ctrl.as_ref() }
    }

    /// The header word at data offset `off` (8-aligned, `off + 8 <= cap`).
    #[cfg(not(loom))]
    fn header(&self, off: u64) -> &HeaderWord {
        debug_assert!(off % 8 == 0 && off + 8 <= self.cap);
        // SAFETY: off is 8-aligned and inside the data area (callers mask positions with
        // cap - 1 and records are 8-aligned); the data area stays mapped while self lives.
        unsafe { &*self.at(off).cast::<HeaderWord>() }
    }

    /// The header word at data offset `off`: under loom, its shadow atomic.
    #[cfg(loom)]
    fn header(&self, off: u64) -> &HeaderWord {
        &self.ctrl().shadow.words[(off / 8) as usize].header
    }

    /// Address of data offset `off` (not dereferenced here; callers bound-check).
    fn at(&self, off: u64) -> *mut u8 {
        self.data.as_ptr().wrapping_add(off as usize)
    }

    fn stats(&self) -> SpscStats {
        let c = self.ctrl();
        let write = c.producer.write.load(Ordering::Relaxed);
        let read = c.consumer.read.load(Ordering::Relaxed);
        SpscStats {
            published: c.producer.published.load(Ordering::Relaxed),
            consumed: c.consumer.consumed.load(Ordering::Relaxed),
            full: c.producer.full.load(Ordering::Relaxed),
            queued_bytes: write.wrapping_sub(read).min(self.cap),
        }
    }

    fn attach(region: R, offset: usize) -> Result<Ring<R>, LayoutError> {
        check_place(offset, size_of::<SpscControl>() as u64, region.len())?;
        // SAFETY: offset + size_of::<SpscControl>() is inside the region (checked above),
        // 128-aligned, and the region base is 4096-aligned.
        let ctrl = unsafe { region.base().add(offset) }.cast::<SpscControl>();
        // SAFETY: in bounds and aligned (above); only atomics are read through it.
        let info = unsafe { &ctrl.as_ref().info };
        let tag = info.tag.load(Ordering::Acquire);
        if tag != TAG {
            return Err(LayoutError::WrongFlavor { expected: "spsc", found: tag });
        }
        let log2 = info.cap_log2.load(Ordering::Relaxed);
        let cap = 1u64.checked_shl(log2).unwrap_or(0);
        ring_capacity_log2(cap)?;
        check_place(offset, required_size(cap), region.len())?;
        // SAFETY: control block and data area lie inside the region (checked above).
        let data = unsafe { ctrl.cast::<u8>().add(size_of::<SpscControl>()) };
        Ok(Ring { region, ctrl, data, cap_log2: log2, cap, max_payload: max_payload(cap) })
    }

    fn corrupt(&self, pos: u64, what: Corruption) -> Corrupt {
        Corrupt { pos, what }
    }
}

/// Writes a fresh SPSC control block of `capacity` data bytes at `offset` of `region`.
///
/// Call once, by the creator, before any producer or consumer attaches (publish the region
/// to other processes only afterwards, e.g. with the segment's init word).
pub fn init<R: Region>(region: &R, offset: usize, capacity: u64) -> Result<(), LayoutError> {
    let cap_log2 = ring_capacity_log2(capacity)?;
    check_place(offset, required_size(capacity), region.len())?;
    let ctrl = SpscControl {
        producer: Padded(ProducerLine {
            write: AtomicU64::new(0),
            published: AtomicU64::new(0),
            full: AtomicU64::new(0),
        }),
        consumer: Padded(ConsumerLine { read: AtomicU64::new(0), consumed: AtomicU64::new(0) }),
        info: Padded(Info { tag: AtomicU32::new(0), cap_log2: AtomicU32::new(cap_log2) }),
        #[cfg(loom)]
        shadow: shadow::Shadow::new(),
    };
    // SAFETY: the place is inside the region, 128-aligned (checked above); nobody else uses
    // it yet (the caller's contract), so a plain write of the whole block is race-free.
    let place = unsafe { region.base().add(offset) }.cast::<SpscControl>();
    // SAFETY: as above.
    unsafe { place.as_ptr().write(ctrl) };
    // The word at `write` (0) must say "empty" whatever the memory held before.
    #[cfg(not(loom))]
    {
        // SAFETY: the data area follows the control block inside the checked place; its
        // first word is 8-aligned (the place is 128-aligned) and nobody uses it yet.
        let first = unsafe { place.add(1) }.cast::<DataWord>();
        // SAFETY: as above.
        unsafe { first.as_ref() }.store(EMPTY, Ordering::Relaxed);
    }
    // SAFETY: just initialised; only atomics are accessed through the reference.
    let info = unsafe { &place.as_ref().info };
    // SYNC: ring initialised
    info.tag.store(TAG, Ordering::Release);
    Ok(())
}

/// The producing end. Exactly one may exist per ring (the caller's duty across processes).
pub struct Producer<R: Region> {
    ring: Ring<R>,
    /// Local copy of our `write` position.
    write: u64,
    /// Last `read` position seen.
    read_cache: u64,
    published: u64,
    full: u64,
    /// Every line-start word between `write` and here (exclusive) holds zero, stored by this
    /// producer since it attached ([`zero_ahead`](Self::zero_ahead)); a claim whose record
    /// ends on one of them has nothing to store.
    zeroed: u64,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

/// How far past a whole-line record's end a commit zeroes the line-start words
/// ([`Producer::zero_ahead`]): the next records' ends, up to ~500-byte records.
const ZERO_AHEAD: u64 = 512;

// SAFETY: the producer owns its local state and accesses shared memory only through
// atomics and the space it has claimed; moving it to another thread is fine.
unsafe impl<R: Region> Send for Producer<R> {}

impl<R: Region> Producer<R> {
    /// Attaches the producing end to an initialised ring at `offset` of `region`.
    ///
    /// A producer that died between publishing a record (its header) and storing `write`
    /// left `write` one record short: the successor finds that record's header at `write`
    /// and resumes behind it, so it never overwrites a published record.
    pub fn attach(region: R, offset: usize) -> Result<Producer<R>, LayoutError> {
        let ring = Ring::attach(region, offset)?;
        let c = ring.ctrl();
        let stored = c.producer.write.load(Ordering::Relaxed);
        let mut published = c.producer.published.load(Ordering::Relaxed);
        let write = match Self::published_after(&ring, stored)? {
            Some(end) => {
                published = published.wrapping_add(1);
                end
            }
            None => stored,
        };
        // SYNC: space released
        let read = c.consumer.read.load(Ordering::Acquire);
        check_positions(read, write, ring.cap).map_err(|what| ring.corrupt(write, what))?;
        let full = c.producer.full.load(Ordering::Relaxed);
        let producer = Producer {
            ring,
            write,
            read_cache: read,
            published,
            full,
            zeroed: write,
            _not_sync: PhantomData,
        };
        if write != stored {
            let line = &producer.ring.ctrl().producer;
            line.published.store(published, Ordering::Relaxed);
            line.write.store(write, Ordering::Release);
        }
        Ok(producer)
    }

    /// The end of a record published at `write` (after a PAD, if one is there) whose
    /// producer died before storing `write`; `None` if the word there is empty.
    fn published_after(ring: &Ring<R>, write: u64) -> Result<Option<u64>, Corrupt> {
        if write % 8 != 0 || write > MAX_POSITION {
            let what = Corruption::BadPosition { found: write, other: 0, capacity: ring.cap };
            return Err(ring.corrupt(write, what));
        }
        let mask = ring.cap - 1;
        // SYNC: records published
        let load = |pos: u64| ring.header(pos & mask).load(Ordering::Acquire);
        let found = published_at(load, write, ring.cap_log2, ring.max_payload, ring.cap - RESERVE);
        Ok(found?.map(|r| r.end))
    }

    /// Largest payload this ring carries.
    pub fn max_payload(&self) -> u64 {
        self.ring.max_payload
    }

    /// Claims room for a record of `len` bytes, to be written in place and then
    /// [`Claim::commit`]ted. Dropping the claim uncommitted publishes nothing.
    ///
    /// Always inlined, as is [`Claim::commit`]: the claim may store the zero word behind
    /// the record, whose line can be in the consumer's cache, and until that store has its
    /// line every later store waits behind it. A `Claim` handed back through memory is such
    /// a store; read back with wider loads than it was written with (which the store buffer
    /// cannot forward), it stalls the caller for that whole transfer: a send path that
    /// called `claim` out of line so measured `chan.shm.spin` 244 ns against 180.
    #[inline(always)]
    pub fn claim(&mut self, len: usize) -> Result<Claim<'_, R>, ClaimError> {
        let Some(Fit { total, to_end }) = self.fit(len)? else {
            self.full = self.full.wrapping_add(1);
            self.ring.ctrl().producer.full.store(self.full, Ordering::Relaxed);
            return Err(ClaimError::Full);
        };
        let pad = if total <= to_end { 0 } else { to_end };
        let rec_pos = self.write + pad;
        let end = rec_pos + total;
        let ring = &self.ring;
        // An earlier commit may have zeroed that word already, off this path.
        if end >= self.zeroed {
            clear_end(
                |pos: u64, word, order| ring.header(pos & (ring.cap - 1)).store(word, order),
                end,
                Step::Claim,
            );
        }
        Ok(Claim { producer: self, rec_pos, len: len as u32, end })
    }

    /// After a whole-line record: zeroes the line-start words from the first one past
    /// `write` not yet zeroed up to [`ZERO_AHEAD`] bytes past `write`, within the free space
    /// (never past `read + capacity - 8`, its last word: unread records may lie from
    /// `read + capacity` on). The next whole-line records' claims then find the word behind
    /// them zero and store nothing: that store, at claim, waited for a line the consumer
    /// read a lap ago (and its prefetcher may have fetched again since), and every store of
    /// the record waited behind it. Here it waits behind nothing the consumer is polling.
    /// Measured (`ipcx bench --quick`, interleaved rounds): `chan.shm.spin` 64 B 163–170 ns
    /// against 174–185, `rpc.shm.spin` 169–177 against 173–187, `chan.shm` throughput
    /// unchanged or better; `shm.*` rows (72-byte records, never whole-line) unchanged.
    ///
    /// Each line start is zeroed once per lap, as the claims did before. Only this producer
    /// writes the data area, record after record from `write` on, so the zeros stay until
    /// its records reach them; a successor attaching after a crash starts with nothing
    /// known zeroed. Out of line: [`Claim::commit`] stays small enough to inline.
    #[inline(never)]
    fn zero_ahead(&mut self) {
        let ring = &self.ring;
        let mask = ring.cap - 1;
        let from = self.zeroed.max(self.write + 1).next_multiple_of(DATA_LINE);
        // Free space ends at read + capacity: a word at `to - 1` or before ends inside it.
        let to = (self.write + ZERO_AHEAD).min(self.read_cache + ring.cap - RESERVE + 1);
        let mut pos = from;
        while pos < to {
            // Ordered before the next record's header (Release) like the claim's store.
            ring.header(pos & mask).store(EMPTY, Ordering::Relaxed);
            pos += DATA_LINE;
        }
        self.zeroed = self.zeroed.max(to);
    }

    /// Whether a record of `len` payload bytes fits now. Writes nothing to shared memory
    /// (unlike a refused [`claim`](Self::claim), which counts as `full`), so it can serve as
    /// the condition of a doorbell wait for room.
    pub fn has_room(&mut self, len: usize) -> Result<bool, ClaimError> {
        Ok(self.fit(len)?.is_some())
    }

    /// Where a record of `len` bytes goes, or `None` if the ring is too full for it now.
    fn fit(&mut self, len: usize) -> Result<Option<Fit>, ClaimError> {
        let max = self.ring.max_payload;
        let total = match record::record_size(len as u64) {
            Some(t) if (len as u64) <= max => t,
            _ => return Err(ClaimError::TooLarge { len, max }),
        };
        let cap = self.ring.cap;
        let off = self.write & (cap - 1);
        let to_end = cap - off;
        // The record (after a PAD if it does not fit before the end), then the zero word.
        let need = if total <= to_end { total } else { to_end + total } + RESERVE;
        // Only a forged control block (read at attach) puts `write` this close to 2^64.
        let Some(end) = self.write.checked_add(need) else {
            let what = Corruption::BadPosition {
                found: self.write,
                other: self.read_cache,
                capacity: cap,
            };
            return Err(self.ring.corrupt(self.write, what).into());
        };
        if end - self.read_cache > cap {
            // SYNC: space released
            let read = self.ring.ctrl().consumer.read.load(Ordering::Acquire);
            check_positions(read, self.write, cap).map_err(|what| self.ring.corrupt(read, what))?;
            self.read_cache = read;
            if end - read > cap {
                return Ok(None);
            }
        }
        Ok(Some(Fit { total, to_end }))
    }

    /// Copies `payload` into a new record and publishes it.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), ClaimError> {
        let mut claim = self.claim(payload.len())?;
        claim.bytes().copy_from_slice(payload);
        claim.commit();
        Ok(())
    }

    /// Counters of this ring.
    pub fn stats(&self) -> SpscStats {
        self.ring.stats()
    }

    /// The region the ring lives in.
    pub fn region(&self) -> &R {
        &self.ring.region
    }
}

/// Placement of a record that fits: its total size and the bytes to the ring's end.
struct Fit {
    total: u64,
    to_end: u64,
}

/// Room for one record, claimed by [`Producer::claim`].
pub struct Claim<'a, R: Region> {
    producer: &'a mut Producer<R>,
    rec_pos: u64,
    len: u32,
    end: u64,
}

impl<R: Region> Claim<'_, R> {
    /// The payload bytes, to be written in place.
    ///
    /// For the lowest latency, write last the payload bytes that share the record header's
    /// cache line (the first 56 when the record starts on a 64-byte line, as the shm channel
    /// links' records do): the consumer polls that line. Written first, they take it from
    /// the consumer, which can take it back while the rest is written, and the header at
    /// [`commit`](Claim::commit) then moves it a second time (`rpc.shm.spin` measured
    /// ~253 ns one-way with in-order writes, ~185 with the links' order).
    pub fn bytes(&mut self) -> &mut [u8] {
        let ring = &self.producer.ring;
        let off = (self.rec_pos & (ring.cap - 1)) + record::HEADER;
        // SAFETY: [off, off+len) lies inside the data area (claim checked it fits before the
        // end of the ring) and is free space the consumer does not read until we publish.
        unsafe { std::slice::from_raw_parts_mut(ring.at(off), self.len as usize) }
    }

    /// Publishes the record to the consumer. Always inlined (see [`Producer::claim`]).
    #[inline(always)]
    pub fn commit(self) {
        let p = self.producer;
        let ring = &p.ring;
        let mask = ring.cap - 1;
        let store = |pos: u64, word, order| ring.header(pos & mask).store(word, order);
        clear_end(store, self.end, Step::Commit);
        publish(store, ring.cap_log2, p.write, self.rec_pos, self.len);
        p.write = self.end;
        p.published = p.published.wrapping_add(1);
        let line = &ring.ctrl().producer;
        line.published.store(p.published, Ordering::Relaxed);
        // SYNC: write position (attach, counters)
        line.write.store(self.end, Ordering::Release);
        if (self.rec_pos | self.end) % DATA_LINE == 0 {
            p.zero_ahead();
        }
    }
}

/// The consuming end. Exactly one may exist per ring (the caller's duty across processes).
pub struct Consumer<R: Region> {
    ring: Ring<R>,
    /// Local copy of our `read` position.
    read: u64,
    consumed: u64,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

// SAFETY: as for Producer: local state plus atomics and released-to-us bytes.
unsafe impl<R: Region> Send for Consumer<R> {}

impl<R: Region> Consumer<R> {
    /// Attaches the consuming end to an initialised ring at `offset` of `region`.
    pub fn attach(region: R, offset: usize) -> Result<Consumer<R>, LayoutError> {
        let ring = Ring::attach(region, offset)?;
        let c = ring.ctrl();
        let read = c.consumer.read.load(Ordering::Relaxed);
        let write = c.producer.write.load(Ordering::Relaxed);
        check_positions(read, write, ring.cap).map_err(|what| ring.corrupt(write, what))?;
        let consumed = c.consumer.consumed.load(Ordering::Relaxed);
        Ok(Consumer { ring, read, consumed, _not_sync: PhantomData })
    }

    /// Whether a record is ready: the header word at our position is no longer zero (a
    /// corrupt word counts as ready too, for [`peek`](Self::peek) to report). Reads that
    /// one word, nothing the producer keeps elsewhere.
    #[inline]
    pub fn has_next(&mut self) -> Result<bool, Corrupt> {
        let ring = &self.ring;
        Ok(ring.header(self.read & (ring.cap - 1)).load(Ordering::Relaxed) != EMPTY)
    }

    /// The next record, in place, if one is ready. It stays in the ring until
    /// [`Peeked::release`]; peeking again returns the same record.
    pub fn peek(&mut self) -> Result<Option<Peeked<'_, R>>, Corrupt> {
        // The hot path of every shm receive, spelled out here rather than through
        // `published_at` (the same steps, 40% more code here): with that form
        // `rpc.shm.spin` measured 25–35 ns slower per direction across processes and
        // `chan.shm.spin` 15 ns faster; with this one, both as fast as before the helper
        // or faster (interleaved runs). Layout, not instructions, seems to decide; judge
        // any change here the same way.
        let ring = &self.ring;
        let mut pos = self.read;
        loop {
            // SYNC: records published
            let word = ring.header(pos & (ring.cap - 1)).load(Ordering::Acquire);
            if word == EMPTY {
                if pos == self.read {
                    return Ok(None);
                }
                // A pad is published after the record it made room for.
                return Err(ring.corrupt(pos, Corruption::BadPad { len: 0 }));
            }
            // What an honest producer may have written from our position on: the ring,
            // less the word it keeps zero behind its last record.
            let avail = (ring.cap - RESERVE).saturating_sub(pos - self.read);
            match record::decode(word, pos, ring.cap_log2, avail, ring.max_payload) {
                Ok(Record::Pad { total }) if pos == self.read => pos += total,
                Ok(Record::Pad { .. }) => {
                    return Err(ring.corrupt(pos, Corruption::BadPad { len: record::split(word).2 }))
                }
                Ok(Record::Data { len, total }) => {
                    let off = (pos & (ring.cap - 1)) + record::HEADER;
                    return Ok(Some(Peeked { consumer: self, off, len, end: pos + total }));
                }
                Err(what) => return Err(ring.corrupt(pos, what)),
            }
        }
    }

    /// Copies the next record into `buf` (replacing its contents) and releases it.
    /// Returns the record length, or `None` if the ring is empty.
    pub fn pop_into(&mut self, buf: &mut Vec<u8>) -> Result<Option<usize>, Corrupt> {
        match self.peek()? {
            None => Ok(None),
            Some(rec) => {
                buf.clear();
                buf.extend_from_slice(rec.bytes());
                let n = rec.len();
                rec.release();
                Ok(Some(n))
            }
        }
    }

    /// Counters of this ring.
    pub fn stats(&self) -> SpscStats {
        self.ring.stats()
    }

    /// The region the ring lives in.
    pub fn region(&self) -> &R {
        &self.ring.region
    }
}

/// A record read in place by [`Consumer::peek`].
pub struct Peeked<'a, R: Region> {
    consumer: &'a mut Consumer<R>,
    off: u64,
    len: u32,
    end: u64,
}

impl<R: Region> Peeked<'_, R> {
    /// The payload, in shared memory (zero copy).
    pub fn bytes(&self) -> &[u8] {
        let ring = &self.consumer.ring;
        // SAFETY: [off, off+len) was validated to lie inside the data area and below the
        // published write position; the producer does not reuse it until we release.
        unsafe { std::slice::from_raw_parts(ring.at(self.off), self.len as usize) }
    }

    /// Payload length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Consumes the record, giving its space back to the producer.
    pub fn release(self) {
        let c = self.consumer;
        c.read = self.end;
        c.consumed = c.consumed.wrapping_add(1);
        let line = &c.ring.ctrl().consumer;
        line.consumed.store(c.consumed, Ordering::Relaxed);
        // SYNC: space released
        line.read.store(self.end, Ordering::Release);
    }
}

impl std::fmt::Debug for SpscControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpscControl")
            .field("write", &self.producer.write.load(Ordering::Relaxed))
            .field("read", &self.consumer.read.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<R: Region> std::fmt::Debug for Producer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.ring.cap)
            .field("write", &self.write)
            .field("read_cache", &self.read_cache)
            .finish_non_exhaustive()
    }
}

impl<R: Region> std::fmt::Debug for Consumer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.ring.cap)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl<R: Region> std::fmt::Debug for Claim<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim").field("pos", &self.rec_pos).field("len", &self.len).finish()
    }
}

impl<R: Region> std::fmt::Debug for Peeked<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peeked").field("offset", &self.off).field("len", &self.len).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::record::{KIND_DATA, KIND_PAD};
    use crate::region::HeapRegion;

    fn ring(cap: u64) -> (Producer<Arc<HeapRegion>>, Consumer<Arc<HeapRegion>>) {
        let region = Arc::new(HeapRegion::new(required_size(cap) as usize));
        init(&region, 0, cap).unwrap();
        (Producer::attach(region.clone(), 0).unwrap(), Consumer::attach(region, 0).unwrap())
    }

    /// Stores `word(off)` in every data word but the first (the ring's `write`, kept zero):
    /// what an earlier lap could have left there.
    fn stale(p: &Producer<Arc<HeapRegion>>, cap: u64, word: impl Fn(u64) -> u64) {
        for off in (8..cap).step_by(8) {
            p.ring.header(off).store(word(off), Ordering::Relaxed);
        }
    }

    #[test]
    fn records_keep_order_and_boundaries_across_wraps() {
        let (mut p, mut c) = ring(256);
        let mut buf = Vec::new();
        for i in 0..1000u32 {
            let len = (i % 100) as usize;
            let msg: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            p.push(&msg).unwrap();
            assert_eq!(c.pop_into(&mut buf).unwrap(), Some(len));
            assert_eq!(buf, msg);
        }
        assert_eq!(c.pop_into(&mut buf).unwrap(), None);
        let s = c.stats();
        assert_eq!((s.published, s.consumed, s.queued_bytes), (1000, 1000, 0));
    }

    #[test]
    fn full_then_drains() {
        let (mut p, mut c) = ring(256);
        let mut n = 0;
        while p.push(&[7; 24]).is_ok() {
            n += 1;
        }
        // 32 bytes per record, and 8 kept free behind the last one for the zero word.
        assert_eq!(n, 256 / 32 - 1);
        assert_eq!(p.has_room(24), Ok(false));
        assert_eq!(p.push(&[7; 24]), Err(ClaimError::Full));
        assert_eq!(p.stats().full, 2, "has_room does not count as a refused claim");
        c.peek().unwrap().unwrap().release();
        assert_eq!(p.has_room(24), Ok(true));
        p.push(&[7; 24]).unwrap();
    }

    #[test]
    fn too_large_and_empty_payloads() {
        let (mut p, mut c) = ring(256);
        assert!(matches!(p.claim(121), Err(ClaimError::TooLarge { len: 121, max: 120 })));
        p.push(&[1; 120]).unwrap();
        p.push(&[]).unwrap();
        let mut buf = Vec::new();
        assert_eq!(c.pop_into(&mut buf).unwrap(), Some(120));
        assert_eq!(c.pop_into(&mut buf).unwrap(), Some(0));
    }

    #[test]
    fn uncommitted_claim_publishes_nothing() {
        let (mut p, mut c) = ring(256);
        let _ = p.claim(10).unwrap();
        assert!(c.peek().unwrap().is_none());
        p.push(b"x").unwrap();
        assert_eq!(c.peek().unwrap().unwrap().bytes(), b"x");
    }

    #[test]
    fn corrupt_positions_and_headers_are_errors() {
        let (mut p, mut c) = ring(256);
        p.push(b"hello").unwrap();
        let good = c.ring.header(0).load(Ordering::Relaxed);
        c.ring.header(0).store(good | 0xffff, Ordering::Relaxed);
        assert!(c.peek().is_err());
        c.ring.header(0).store(good, Ordering::Relaxed);
        assert_eq!(c.peek().unwrap().unwrap().bytes(), b"hello");
        c.peek().unwrap().unwrap().release();
        // The consumer never reads the producer's position: forging it changes nothing.
        c.ring.ctrl().producer.write.store(4096, Ordering::Relaxed);
        assert!(c.peek().unwrap().is_none());
        // A header of another lap where the next record belongs.
        let at = c.read & 255;
        c.ring.header(at).store(record::encode(KIND_DATA, 8, c.read + 256, 8), Ordering::Relaxed);
        assert!(matches!(c.peek(), Err(Corrupt { what: Corruption::BadLap { .. }, .. })));
        // A record that would run into the 8 bytes an honest producer keeps free.
        c.ring.header(at).store(record::encode(KIND_DATA, 120, c.read, 8), Ordering::Relaxed);
        assert!(c.peek().is_ok(), "120 bytes fit");
        let (mut p2, mut c2) = ring(256);
        p2.push(&[1; 100]).unwrap();
        c2.peek().unwrap().unwrap().release(); // read = 112: 144 bytes to the end
        let pos = c2.read;
        c2.ring.header(pos).store(record::encode(KIND_PAD, 136, pos, 8), Ordering::Relaxed);
        c2.ring.header(0).store(record::encode(KIND_DATA, 112, pos + 144, 8), Ordering::Relaxed);
        assert!(
            matches!(c2.peek(), Err(Corrupt { what: Corruption::BadLength { .. }, .. })),
            "PAD (144) + record (120) + 8 reserved exceed 256"
        );
        // A PAD with nothing behind it: an honest producer publishes the record first.
        c2.ring.header(0).store(0, Ordering::Relaxed);
        assert!(matches!(c2.peek(), Err(Corrupt { what: Corruption::BadPad { len: 0 }, .. })));
    }

    #[test]
    fn the_word_after_the_last_record_is_kept_zero() {
        let (mut p, mut c) = ring(256);
        for len in [5usize, 100, 0, 120, 40, 64, 3] {
            p.push(&vec![0xff; len]).unwrap();
            assert_eq!(p.ring.header(p.write & 255).load(Ordering::Relaxed), 0, "after {len}");
            assert_eq!(c.peek().unwrap().unwrap().len(), len);
            c.peek().unwrap().unwrap().release();
            assert!(!c.has_next().unwrap());
        }
    }

    #[test]
    fn the_word_behind_a_record_is_zeroed_at_claim_on_a_line_boundary_else_at_commit() {
        let (mut p, mut c) = ring(256);
        stale(&p, 256, |_| u64::MAX);
        {
            // 8 + 56 bytes: ends at 64, where the zero word opens a line of its own.
            let claim = p.claim(56).unwrap();
            assert_eq!(claim.producer.ring.header(64).load(Ordering::Relaxed), 0);
            // The claim goes out of scope uncommitted.
        }
        // A claim dropped uncommitted leaves its zero word in free space: harmless.
        assert!(c.peek().unwrap().is_none());
        // 8 + 24 bytes: ends at 32, inside the payload's last line: zeroed at commit.
        let mut claim = p.claim(20).unwrap();
        assert_eq!(claim.producer.ring.header(32).load(Ordering::Relaxed), u64::MAX);
        claim.bytes().fill(7);
        claim.commit();
        assert_eq!(p.ring.header(32).load(Ordering::Relaxed), 0);
        assert_eq!(c.peek().unwrap().unwrap().bytes(), &[7; 20]);
        c.peek().unwrap().unwrap().release();
        assert!(!c.has_next().unwrap());
    }

    #[test]
    fn a_whole_line_record_zeroes_the_line_starts_ahead_and_the_next_claim_stores_nothing() {
        let (mut p, mut c) = ring(1024);
        stale(&p, 1024, |_| u64::MAX);
        // 8 + 120 bytes: lines 0 and 1; the claim zeroes 128, the commit the line starts
        // up to 128 + ZERO_AHEAD (640, exclusive), and nothing else.
        p.push(&[1; 120]).unwrap();
        assert_eq!(p.zeroed, 640);
        for off in (136..1024).step_by(8) {
            let want = if off % 64 == 0 && off < 640 { 0 } else { u64::MAX };
            assert_eq!(p.ring.header(off).load(Ordering::Relaxed), want, "word at {off}");
        }
        // The next whole-line claim ends at 256, already zero: it stores nothing there (a
        // word set behind the producer's back stays, which no honest ring ever has).
        p.ring.header(256).store(u64::MAX, Ordering::Relaxed);
        {
            let _uncommitted = p.claim(120).unwrap();
        }
        assert_eq!(p.ring.header(256).load(Ordering::Relaxed), u64::MAX);
        p.ring.header(256).store(0, Ordering::Relaxed);
        // A record that is not whole lines zeroes nothing ahead.
        c.peek().unwrap().unwrap().release();
        let (mut p, _c) = ring(1024);
        p.push(&[2; 64]).unwrap();
        assert_eq!(p.zeroed, 0);
    }

    #[test]
    fn the_window_stops_short_of_unread_records_and_a_claim_past_it_stores_its_word() {
        let (mut p, mut c) = ring(1024);
        // Seven whole-line records fill the ring (an eighth would need 1032 bytes).
        for i in 0..7 {
            p.push(&[i; 120]).unwrap();
        }
        assert!(matches!(p.push(&[7; 120]), Err(ClaimError::Full)));
        // The window ends before `read + capacity - 8` (read is 0): record 0's header, at
        // position 1024's word, is untouched.
        assert_eq!(p.zeroed, 1017);
        assert_ne!(p.ring.header(0).load(Ordering::Relaxed), 0);
        c.peek().unwrap().unwrap().release();
        c.peek().unwrap().unwrap().release();
        // The eighth record ends at 1024, past the window: its claim zeroes that word (record
        // 0's old header), so the consumer stops there instead of reading a stale header.
        p.push(&[7; 120]).unwrap();
        let mut buf = Vec::new();
        for i in 2..8 {
            assert_eq!(c.pop_into(&mut buf).unwrap(), Some(120));
            assert_eq!(buf, [i; 120]);
        }
        assert!(!c.has_next().unwrap());
        assert_eq!(c.pop_into(&mut buf).unwrap(), None);
    }

    #[test]
    fn zeroing_ahead_never_reaches_unread_records_or_lets_a_stale_word_through() {
        let (mut p, mut c) = ring(1024);
        // Every word but the first holds what could be a header of an earlier lap.
        stale(&p, 1024, |off| record::encode(record::KIND_DATA, 8, off, 10));
        // Whole-line records (56, 120, 184 bytes) among others, the ring filled to the last
        // record before each read, so the zeros ahead meet unread records at every turn.
        let sizes = [120usize, 56, 184, 20, 120, 248, 120, 7];
        let (mut sent, mut got, mut buf) = (0usize, 0usize, Vec::new());
        let payload = |i: usize| vec![(i % 251) as u8; sizes[i % sizes.len()]];
        for round in 0..400 {
            while p.push(&payload(sent)).is_ok() {
                sent += 1;
            }
            for _ in 0..1 + round % 5 {
                if got == sent {
                    break;
                }
                assert!(c.pop_into(&mut buf).unwrap().is_some(), "record {got} of {sent}");
                assert_eq!(buf, payload(got), "record {got}");
                got += 1;
            }
        }
        while c.pop_into(&mut buf).unwrap().is_some() {
            assert_eq!(buf, payload(got), "record {got}");
            got += 1;
        }
        assert_eq!(got, sent);
        assert!(sent > 1000, "{sent} records");
    }

    #[test]
    fn a_successor_resumes_behind_a_record_published_without_its_write_position() {
        for first in [10usize, 110] {
            let (mut p, mut c) = ring(256);
            for len in [120, 8] {
                p.push(&vec![1; len]).unwrap();
                c.peek().unwrap().unwrap().release();
            }
            let (write, published) = (p.write, p.published);
            assert_eq!(write, 144);
            // 10 bytes fit before the end; 110 do not, and go behind a PAD at offset 0.
            p.push(&vec![2; first]).unwrap();
            // The producer "died" after its headers and before `published` and `write`.
            let line = &c.ring.ctrl().producer;
            line.write.store(write, Ordering::Relaxed);
            line.published.store(published, Ordering::Relaxed);
            drop(p);
            let mut p = Producer::attach(c.ring.region.clone(), 0).unwrap();
            p.push(&[3; 7]).unwrap();
            assert_eq!(c.peek().unwrap().unwrap().bytes(), &vec![2; first][..], "{first}");
            c.peek().unwrap().unwrap().release();
            assert_eq!(c.peek().unwrap().unwrap().bytes(), &[3; 7]);
            assert_eq!(p.stats().published, published + 2);
        }
    }

    #[test]
    fn a_successor_refuses_garbage_at_the_write_position() {
        let (mut p, c) = ring(256);
        p.push(&[1; 8]).unwrap();
        p.ring.header(p.write & 255).store(record::encode(9, 8, p.write, 8), Ordering::Relaxed);
        let r = Producer::attach(c.ring.region.clone(), 0);
        assert!(matches!(
            r,
            Err(LayoutError::Corrupt(Corrupt { what: Corruption::BadKind(9), .. }))
        ));
    }

    #[test]
    fn init_makes_the_first_word_empty_over_old_bytes() {
        let region = Arc::new(HeapRegion::new(required_size(256) as usize));
        let data = region.base().as_ptr().wrapping_add(size_of::<SpscControl>());
        // SAFETY: the region is ours alone; the 256 bytes past the control block are its data.
        unsafe { data.write_bytes(0xee, 256) };
        init(&region, 0, 256).unwrap();
        let mut c = Consumer::attach(region.clone(), 0).unwrap();
        assert!(!c.has_next().unwrap() && c.peek().unwrap().is_none());
        let mut p = Producer::attach(region, 0).unwrap();
        p.push(b"abc").unwrap();
        assert_eq!(c.peek().unwrap().unwrap().bytes(), b"abc");
    }

    #[test]
    fn threads_pass_records_in_order() {
        let n: u32 = if cfg!(miri) { 300 } else { 100_000 };
        let (mut p, mut c) = ring(1024);
        let t = std::thread::spawn(move || {
            for i in 0..n {
                let len = (i % 61) as usize;
                loop {
                    match p.claim(len) {
                        Ok(mut claim) => {
                            claim.bytes().fill(i as u8);
                            claim.commit();
                            break;
                        }
                        Err(ClaimError::Full) => std::hint::spin_loop(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        let mut i = 0;
        while i < n {
            if let Some(rec) = c.peek().unwrap() {
                assert_eq!(rec.len(), (i % 61) as usize);
                assert!(rec.bytes().iter().all(|&b| b == i as u8));
                rec.release();
                i += 1;
            } else {
                std::hint::spin_loop();
            }
        }
        t.join().unwrap();
    }

    #[test]
    fn attach_validates_layout() {
        let region = Arc::new(HeapRegion::new(4096));
        assert!(matches!(init(&region, 64, 256), Err(LayoutError::Misaligned(64))));
        assert!(matches!(init(&region, 0, 100), Err(LayoutError::BadCapacity(100))));
        assert!(matches!(init(&region, 0, 8192), Err(LayoutError::TooSmall { .. })));
        assert!(matches!(
            Producer::attach(region.clone(), 0),
            Err(LayoutError::WrongFlavor { .. })
        ));
    }
}
