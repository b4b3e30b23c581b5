//! Multi-producer single-consumer ring of variable-size records, zero copy on both sides.
//!
//! Any number of [`Producer`]s (threads or processes, one handle each) claim room for a
//! record, write it in place and commit it; one [`Consumer`] reads the records in place, in
//! claim order, so each producer's records arrive in the order it claimed them. A producer
//! that dies between claim and commit is skipped after the consumer's `commit_timeout`.
//!
//! # Layout (at a 128-aligned offset of a [`Region`])
//!
//! ```text
//! +0    producers line  claim position, published, full  (shared by all producers)
//! +128  consumer line   read position, consumed, abandoned (written by the consumer only)
//! +256  info line       tag, log2(capacity)                (written once by `init`)
//! +384  data            capacity bytes of records (see crate::record)
//! ```
//!
//! # Record states
//!
//! Records use the format of [`crate::record`]; the header word is also the commit flag.
//! Every 8-byte word of free space holds the lap-tagged [`record::empty_word`] of its
//! position (zero on lap 0, so a zeroed region is a fresh ring). A record's header goes
//! `EMPTY(lap)` → `CLAIMED(len)` (claimed, length final) → `DATA(len)` (committed) or
//! `SKIP(len)` (dropped uncommitted); a filler to the ring's end is `PAD`, written complete.
//! When the consumer is done with a record it **scrubs** it: every word becomes the empty
//! word of the *next* lap (the header with an atomic store, then the rest with plain
//! stores: those bytes are the consumer's alone) before it releases the space.
//!
//! Scrubbing is what makes "not committed" decidable: without it, payload bytes from the
//! previous lap sit where this lap's headers will go, and a producer that has claimed a
//! position but not yet written its header would leave the consumer looking at arbitrary
//! bytes that may happen to spell a valid header. Scrubbed, the word at an unwritten header
//! is exactly the empty word of its lap, and anything else must be a header. (Aeron's
//! many-to-one ring zeroes consumed bytes for the same reason.) Cost: the consumer stores
//! one word per 8 bytes it releases, into lines it has just read.
//!
//! # Claiming: a CAS on `claim`, not `fetch_add`
//!
//! `fetch_add` advances `claim` unconditionally. On a full ring it overshoots
//! `read + capacity`, and the overshooting producer can neither write (it would overwrite
//! unread records) nor give the range back (others may have claimed after it), so it would
//! leave a hole only it knows the length of. Instead producers run a CAS loop: load
//! `claim`, check `claim + need <= read + capacity` against the consumer's `read`
//! (cached, reloaded with Acquire only when short), then CAS `claim` forward. So
//! `claim <= read + capacity` always holds, a full ring is refused without side effects,
//! and a failed CAS means another producer claimed (lock-free: someone always progresses).
//! Right after a successful CAS the producer writes its header `EMPTY → CLAIMED(len)`
//! (a CAS as well, see producer death). A record that does not fit before the ring's end
//! claims the rest of the lap plus the record in one CAS; the same producer then writes a
//! complete `PAD` at the old position and the record at offset 0.
//!
//! # Memory-ordering protocol
//!
//! - A producer writes its payload, then CASes its header `CLAIMED → DATA` with
//!   **Release**; the consumer loads the header at `read` with **Acquire** before reading
//!   the payload. (`SYNC: record committed`) `CLAIMED`, `PAD` and `SKIP` headers are also
//!   written with Release (`SYNC: header published`): they follow the `claim` CAS, so a
//!   consumer that acquires them knows `claim` has moved past them.
//! - The consumer, done with records, scrubs them and stores the new `read` with
//!   **Release**; producers load `read` with **Acquire** before reusing the space.
//!   (`SYNC: space released`) This orders the consumer's reads and scrubbing before the
//!   producers' next writes to the same bytes.
//! - Producers advance `claim` with an AcqRel CAS and load it with Acquire. (`SYNC: claim
//!   advanced`) It hands no data between producers, but a producer that sees a `claim`
//!   then also sees the `read` its claimer saw, so `claim <= read + capacity` holds in its
//!   view too. (With Relaxed, loom found a producer reading a fresh `claim` and a stale
//!   `read` and reporting a sound ring as corrupt.) The consumer loads `claim` Relaxed: it
//!   only compares it with its own `read`.
//!
//! # Producer death, at every point
//!
//! 1. Before the `claim` CAS: nothing happened.
//! 2. After the `claim` CAS, before the header is written: the consumer finds the empty word
//!    of its lap at `read` while `claim > read`. It remembers `claim` at that moment (`c0`)
//!    and waits `commit_timeout`. If the header is still empty, every claim below `c0` has
//!    had `commit_timeout` to write its header; the consumer scans the words after `read`
//!    for the first one that is not an empty word, below `c0`. Free space is scrubbed and
//!    producers write their header before anything else, so the dead range is all empty
//!    words and that first word is the next live claim's header (it is validated; anything
//!    else is [`Corrupt`]). With none, the range ends at `c0`, a claim boundary. The range
//!    is skipped, scrubbed and counted once in `abandoned` (consecutive claims all dead at
//!    this point are one range). Should the owner still be alive, its header CAS finds the
//!    next lap's empty word and it claims again; it had written nothing.
//! 3. After the header says `CLAIMED(len)`, with any part of the payload written: after
//!    `commit_timeout` the consumer CASes `CLAIMED → empty word of the next lap`, scrubs the
//!    record and counts it in `abandoned`. A live owner's commit CAS then fails with
//!    [`CommitError::Abandoned`].
//! 4. Between a `PAD` and its record at offset 0: the pad is complete; the record is case 2.
//! 5. After the commit CAS: delivered. (`published` may lag by one if the producer died
//!    before counting it.)
//!
//! The timeout is measured only while the consumer is stuck on one position. Producers must
//! commit (or drop the claim) within `commit_timeout`: one stalled for longer (stopped,
//! swapped out) has its record skipped, and payload it writes after that lands in space
//! given to other records, which may then read as altered or [`Corrupt`]. Pick a timeout
//! far above any stall you accept (default [`DEFAULT_COMMIT_TIMEOUT`]).
//!
//! A consumer that dies inside a release leaves the record partly scrubbed: a consumer
//! attached afterwards reports [`Corrupt`] there, or, if the header had not been scrubbed
//! yet, delivers the record again with some payload words replaced. Recreate a ring whose
//! consumer died; restarting the consumer is not a recovery path.
//!
//! # Hostile peers
//!
//! `claim` and `read` are checked on every load (8-aligned, `read <= claim <= read +
//! capacity`, `read` monotonic); each header is loaded once and validated against the lap,
//! the ring's end and the largest payload. Violations are [`Corrupt`] errors; nothing is
//! read or written out of bounds. Payload bytes handed out in place may still be changed by
//! a misbehaving peer while the caller looks at them: treat them as untrusted input.
//!
//! # Costs
//!
//! Per record, a producer does the `claim` CAS, a header CAS, the commit CAS and a
//! `fetch_add` on the shared `published` counter (on the already contended producers'
//! line); it reads `read` only when its cached copy says the ring is full. The consumer
//! reads nothing but headers while records are ready, touches `claim` only when the ring
//! looks empty, and scrubs what it releases.

mod consumer;
mod producer;
#[cfg(all(test, not(loom)))]
mod tests;

use std::marker::PhantomData;
use std::mem::size_of;
use std::ptr::NonNull;

#[cfg(loom)]
use super::shadow;
use super::{check_place, max_payload, Corrupt, LayoutError};
use crate::layout::Padded;
use crate::record::{self, Corruption, KIND_CLAIMED, KIND_DATA, KIND_PAD, KIND_SKIP};
use crate::region::Region;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

pub use consumer::{Consumer, ConsumerOptions, Peeked, DEFAULT_COMMIT_TIMEOUT};
pub use producer::{Claim, CommitError, Producer, PushError};

/// Tag identifying an MPSC control block ("MPSC").
const TAG: u32 = 0x4d50_5343;

#[repr(C)]
struct ProducerLine {
    /// End of the last claimed range: the next position to claim. Producers advance it by
    /// CAS only; monotonic; `read <= claim <= read + capacity`, 8-aligned.
    claim: AtomicU64,
    /// Records committed; every producer adds to it (`fetch_add`, Relaxed).
    published: AtomicU64,
    /// Claims refused because the ring was full; producers add to it (slow path only).
    full: AtomicU64,
}

#[repr(C)]
struct ConsumerLine {
    /// Next byte position the consumer reads; only the consumer stores it. Monotonic,
    /// 8-aligned, `claim - capacity <= read <= claim`.
    read: AtomicU64,
    /// Records released; consumer only (plain load + store, no RMW).
    consumed: AtomicU64,
    /// Claimed ranges skipped because their producer did not commit in time; consumer only.
    abandoned: AtomicU64,
}

#[repr(C)]
struct Info {
    /// [`TAG`] once initialised.
    tag: AtomicU32,
    /// log2 of the capacity.
    cap_log2: AtomicU32,
}

/// The control block at the start of an MPSC ring.
#[repr(C)]
pub struct MpscControl {
    producers: Padded<ProducerLine>,
    consumer: Padded<ConsumerLine>,
    info: Padded<Info>,
    /// Under loom, the data area's header words and payload accesses, which loom cannot see
    /// in raw bytes (see [`shadow`]).
    #[cfg(loom)]
    shadow: shadow::Shadow,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<MpscControl>() == 384);
    assert!(std::mem::align_of::<MpscControl>() == 128);
};

/// Bytes an MPSC ring of `capacity` data bytes occupies in a region (control + data).
pub const fn required_size(capacity: u64) -> u64 {
    size_of::<MpscControl>() as u64 + capacity
}

/// Counters of an MPSC ring, readable from any process that maps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MpscStats {
    /// Records committed by all producers.
    pub published: u64,
    /// Records released by the consumer.
    pub consumed: u64,
    /// Claims refused because the ring was full.
    pub full: u64,
    /// Claimed ranges the consumer skipped because they were not committed in time.
    pub abandoned: u64,
    /// Bytes between the read and claim positions (records in flight, with their headers).
    pub queued_bytes: u64,
}

/// Writes a fresh MPSC control block of `capacity` data bytes at `offset` of `region`.
///
/// The data area must be zeroed (fresh shared memory is): zero is the empty word of lap 0.
/// Call once, by the creator, before any producer or consumer attaches (publish the region
/// to other processes only afterwards, e.g. with the segment's init word).
pub fn init<R: Region>(region: &R, offset: usize, capacity: u64) -> Result<(), LayoutError> {
    let cap_log2 = ring_capacity_log2(capacity)?;
    check_place(offset, required_size(capacity), region.len())?;
    let ctrl = MpscControl {
        producers: Padded(ProducerLine {
            claim: AtomicU64::new(0),
            published: AtomicU64::new(0),
            full: AtomicU64::new(0),
        }),
        consumer: Padded(ConsumerLine {
            read: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
        }),
        info: Padded(Info { tag: AtomicU32::new(0), cap_log2: AtomicU32::new(cap_log2) }),
        #[cfg(loom)]
        shadow: shadow::Shadow::new(),
    };
    // SAFETY: the place is inside the region and 128-aligned (checked above).
    let place = unsafe { region.base().add(offset) }.cast::<MpscControl>();
    // SAFETY: as above; nobody else uses it yet (the caller's contract), so a plain write
    // of the whole block is race-free.
    unsafe { place.as_ptr().write(ctrl) };
    // SAFETY: just initialised; only atomics are accessed through the reference.
    let info = unsafe { &place.as_ref().info };
    // SYNC: ring initialised
    info.tag.store(TAG, Ordering::Release);
    Ok(())
}

/// Validates a capacity and returns its log2: the rings' usual range, or under loom
/// 64..=[`shadow::MAX_CAPACITY`] bytes, so models stay small.
fn ring_capacity_log2(capacity: u64) -> Result<u32, LayoutError> {
    #[cfg(loom)]
    return match capacity.is_power_of_two() && (64..=shadow::MAX_CAPACITY).contains(&capacity) {
        true => Ok(capacity.trailing_zeros()),
        false => Err(LayoutError::BadCapacity(capacity)),
    };
    #[cfg(not(loom))]
    super::capacity_log2(capacity)
}

/// A header word as the consumer validated it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Header {
    /// The empty word of this position's lap: nothing written here yet.
    Empty,
    /// Claimed, not committed; the record occupies `total` bytes.
    Claimed { total: u64 },
    /// Committed: `len` payload bytes, `total` bytes in all.
    Data { len: u32, total: u64 },
    /// Filler to the ring's end, or a dropped claim: skip `total` bytes.
    Skip { total: u64 },
}

#[cfg(not(loom))]
type HeaderWord = crate::sync::DataWord;
#[cfg(loom)]
type HeaderWord = crate::sync::AtomicU64;

/// Geometry and addresses shared by both ends.
struct Ring<R: Region> {
    region: R,
    ctrl: NonNull<MpscControl>,
    data: NonNull<u8>,
    cap_log2: u32,
    cap: u64,
    /// Largest payload: half the capacity less a header, and at most `u32::MAX`.
    max_payload: u64,
}

impl<R: Region> Ring<R> {
    fn ctrl(&self) -> &MpscControl {
        // SAFETY: `ctrl` points into `region` (checked at attach), which self keeps alive;
        // the control block holds only atomics, so shared references are sound.
        unsafe { self.ctrl.as_ref() }
    }

    /// The header word at position `pos` (8-aligned; masked into the data area here).
    #[cfg(not(loom))]
    fn header(&self, pos: u64) -> &HeaderWord {
        let off = pos & (self.cap - 1);
        debug_assert!(off % 8 == 0);
        // SAFETY: off is 8-aligned (positions are validated 8-aligned) and off + 8 <= cap,
        // so the word lies inside the data area, which stays mapped while self lives.
        unsafe { &*self.at(off).cast::<HeaderWord>() }
    }

    /// The header word at position `pos`: under loom, its shadow atomic.
    #[cfg(loom)]
    fn header(&self, pos: u64) -> &HeaderWord {
        &self.ctrl().shadow.words[((pos & (self.cap - 1)) / 8) as usize].header
    }

    /// Address of data offset `off` (not dereferenced here; callers bound-check).
    fn at(&self, off: u64) -> *mut u8 {
        self.data.as_ptr().wrapping_add(off as usize)
    }

    /// The empty word free space holds at position `pos`.
    fn empty(&self, pos: u64) -> u64 {
        record::empty_word(pos, self.cap_log2)
    }

    /// Scrubs `[from, to)` for the next lap: each word becomes the empty word of its
    /// position plus one capacity, the first word (a header) first, with an atomic store.
    ///
    /// The rest are plain stores: until `read` moves past them these bytes are the
    /// consumer's alone (producers never touch space beyond `read + capacity`).
    fn scrub(&self, from: u64, to: u64) {
        if from >= to {
            return;
        }
        self.header(from).store(self.empty(from + self.cap), Ordering::Relaxed);
        let mut pos = from + record::HEADER;
        while pos < to {
            let off = pos & (self.cap - 1);
            let words = (self.cap - off).min(to - pos) / record::HEADER;
            self.fill(off, words, self.empty(pos + self.cap));
            pos += words * record::HEADER;
        }
    }

    /// Stores `word` into `words` consecutive words from data offset `off` (8-aligned,
    /// `off + 8 * words <= cap`).
    #[cfg(not(loom))]
    fn fill(&self, off: u64, words: u64, word: u64) {
        let base = self.at(off).cast::<u64>();
        for i in 0..words as usize {
            let p = base.wrapping_add(i);
            // SAFETY: p is 8-aligned and inside the data area (caller's bounds); nobody else
            // accesses these released bytes until `read` is stored (see `scrub`).
            unsafe { p.write(word) };
        }
    }

    /// Under loom, words are shadow atomics; the real plain stores overwrite payload bytes,
    /// so they are reported as payload writes too (ordered after the writes they replace).
    #[cfg(loom)]
    fn fill(&self, off: u64, words: u64, word: u64) {
        self.track(off, words * record::HEADER, true);
        for i in 0..words {
            self.header(off + i * record::HEADER).store(word, Ordering::Relaxed);
        }
    }

    /// Validates the header `word` read at position `pos`.
    fn decode(&self, word: u64, pos: u64) -> Result<Header, Corruption> {
        if word == self.empty(pos) {
            return Ok(Header::Empty);
        }
        let (tag, kind, len) = record::split(word);
        let expected = record::lap_tag(pos, self.cap_log2);
        if tag != expected {
            return Err(Corruption::BadLap { found: tag, expected });
        }
        let to_end = self.cap - (pos & (self.cap - 1));
        let total = || record::check_len(len, to_end, to_end, self.max_payload);
        match kind {
            KIND_DATA => Ok(Header::Data { len, total: total()? }),
            KIND_CLAIMED => Ok(Header::Claimed { total: total()? }),
            KIND_SKIP => Ok(Header::Skip { total: total()? }),
            KIND_PAD => match record::decode(word, pos, self.cap_log2, to_end, self.max_payload)? {
                record::Record::Pad { total } => Ok(Header::Skip { total }),
                record::Record::Data { .. } => Err(Corruption::BadKind(kind)),
            },
            other => Err(Corruption::BadKind(other)),
        }
    }

    fn stats(&self) -> MpscStats {
        let c = self.ctrl();
        let claim = c.producers.claim.load(Ordering::Relaxed);
        let read = c.consumer.read.load(Ordering::Relaxed);
        MpscStats {
            published: c.producers.published.load(Ordering::Relaxed),
            consumed: c.consumer.consumed.load(Ordering::Relaxed),
            full: c.producers.full.load(Ordering::Relaxed),
            abandoned: c.consumer.abandoned.load(Ordering::Relaxed),
            queued_bytes: claim.wrapping_sub(read).min(self.cap),
        }
    }

    /// Attaches to an initialised ring and checks its positions (`read` is loaded with
    /// Acquire, `claim` after it).
    fn attach(region: R, offset: usize) -> Result<Ring<R>, LayoutError> {
        check_place(offset, size_of::<MpscControl>() as u64, region.len())?;
        // SAFETY: offset + size_of::<MpscControl>() is inside the region (checked above),
        // 128-aligned, and the region base is 4096-aligned.
        let ctrl = unsafe { region.base().add(offset) }.cast::<MpscControl>();
        // SAFETY: in bounds and aligned (above); only atomics are read through it.
        let info = unsafe { &ctrl.as_ref().info };
        // SYNC: ring initialised
        let tag = info.tag.load(Ordering::Acquire);
        if tag != TAG {
            return Err(LayoutError::WrongFlavor { expected: "mpsc", found: tag });
        }
        let log2 = info.cap_log2.load(Ordering::Relaxed);
        let cap = 1u64.checked_shl(log2).unwrap_or(0);
        ring_capacity_log2(cap)?;
        check_place(offset, required_size(cap), region.len())?;
        // SAFETY: control block and data area lie inside the region (checked above).
        let data = unsafe { ctrl.cast::<u8>().add(size_of::<MpscControl>()) };
        let max_payload = max_payload(cap);
        let ring = Ring { region, ctrl, data, cap_log2: log2, cap, max_payload };
        ring.positions()?;
        Ok(ring)
    }

    /// Loads and checks `read` and `claim`. `claim`, loaded after `read`, is not behind
    /// it. If it looks more than a capacity ahead, `read` is loaded again (and returned):
    /// the first load may predate the `read` that allowed that claim.
    fn positions(&self) -> Result<(u64, u64), Corrupt> {
        let c = self.ctrl();
        // SYNC: space released
        let read = c.consumer.read.load(Ordering::Acquire);
        // SYNC: claim advanced
        let claim = c.producers.claim.load(Ordering::Acquire);
        let bad = |found, other| {
            self.corrupt(found, Corruption::BadPosition { found, other, capacity: self.cap })
        };
        if read % 8 != 0 || claim % 8 != 0 || claim < read {
            return Err(bad(claim, read));
        }
        if claim - read <= self.cap {
            return Ok((read, claim));
        }
        // SYNC: space released
        let again = c.consumer.read.load(Ordering::Acquire);
        if again < read || again % 8 != 0 || claim.saturating_sub(again) > self.cap {
            return Err(bad(claim, again));
        }
        Ok((again, claim))
    }

    fn corrupt(&self, pos: u64, what: Corruption) -> Corrupt {
        Corrupt { pos, what }
    }

    /// Under loom: records a write (`write`) or read of the payload bytes at data offset
    /// `off`, so loom checks they are ordered against the other side's accesses.
    #[cfg(loom)]
    fn track(&self, off: u64, len: u64, write: bool) {
        for w in off / 8..(off + len).div_ceil(8) {
            let cell = &self.ctrl().shadow.words[w as usize].payload;
            if write {
                cell.with_mut(|_| ());
            } else {
                cell.with(|_| ());
            }
        }
    }
}

/// Marks a type as `Send` but not `Sync`: one handle per thread.
type NotSync = PhantomData<std::cell::Cell<()>>;

impl std::fmt::Debug for MpscControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpscControl")
            .field("claim", &self.producers.claim.load(Ordering::Relaxed))
            .field("read", &self.consumer.read.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
