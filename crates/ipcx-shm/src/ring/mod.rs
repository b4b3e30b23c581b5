//! Lock-free rings of variable-size records, one file per flavor.
//!
//! All flavors share the record format of [`crate::record`]: `[header | payload | pad]`,
//! 8-aligned, in a power-of-two byte ring that never splits a record (a `PAD` record fills
//! the end of the ring instead). Positions are monotonically increasing `u64` byte counters;
//! `position & (capacity - 1)` is the offset. A payload is at most `capacity / 2 - 8` bytes,
//! so an empty ring always has room for the largest record, pad included.
//!
//! - [`spsc`](crate::ring::spsc): one producer, one consumer, zero copy on both sides.
//! - [`mpsc`](crate::ring::mpsc): many producers (threads or processes), one consumer,
//!   zero copy; a producer that dies mid-record is skipped after a timeout.
//! - [`broadcast`](crate::ring::broadcast): one writer, up to 64 readers with their own
//!   cursors; Block, DropOldest or Fail back-pressure; dead readers reclaimed.

pub mod broadcast;
pub mod mpsc;
#[cfg(loom)]
mod shadow;
pub mod spsc;

use thiserror::Error;

use crate::record::Corruption;

/// Highest position a healthy ring reaches (2^63 bytes: centuries at memory bandwidth).
/// Anything above it was forged, and refusing it keeps all position arithmetic far from
/// overflow.
pub const MAX_POSITION: u64 = 1 << 63;

/// Smallest ring capacity in bytes.
pub const MIN_CAPACITY: u64 = 256;
/// Largest ring capacity in bytes (1 TiB).
pub const MAX_CAPACITY: u64 = 1 << 40;

/// Largest payload a ring of `capacity` bytes carries.
/// Half the capacity (so a record plus a worst-case PAD always fits an empty ring), and never
/// more than the header's 32-bit length field can say.
pub const fn max_payload(capacity: u64) -> u64 {
    let half = capacity / 2 - crate::record::HEADER;
    if half > u32::MAX as u64 {
        u32::MAX as u64
    } else {
        half
    }
}

/// The peer broke the ring's protocol (or its memory was corrupted): a header or position
/// read from shared memory is impossible. The ring cannot be trusted any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error(
    "ring corrupted by its peer at position {pos}: {what}; treat the peer as broken, \
     drop this ring and reconnect"
)]
pub struct Corrupt {
    /// Position at which the corruption was found.
    pub pos: u64,
    /// What was wrong.
    #[source]
    pub what: Corruption,
}

/// A ring cannot be placed at, or attached to, the given place of a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum LayoutError {
    /// The capacity is not a power of two within [`MIN_CAPACITY`]..=[`MAX_CAPACITY`].
    #[error(
        "ring capacity {0} is not a power of two between {MIN_CAPACITY} and {MAX_CAPACITY}; \
         pick e.g. 65536"
    )]
    BadCapacity(u64),
    /// The offset is not aligned to a cache line.
    #[error("ring offset {0} is not a multiple of 128; place rings at cache-line offsets")]
    Misaligned(usize),
    /// Control block plus data does not fit in the region.
    #[error("ring needs {needed} bytes at offset {offset} but the region has {len}; map more")]
    TooSmall {
        /// Bytes the ring needs.
        needed: u64,
        /// Offset asked for.
        offset: usize,
        /// Region length.
        len: usize,
    },
    /// The control block in shared memory does not describe a ring of this flavor.
    #[error("no {expected} ring at this offset (found tag {found:#x}); check the segment kind")]
    WrongFlavor {
        /// Flavor expected.
        expected: &'static str,
        /// Tag found.
        found: u32,
    },
    /// Positions in the control block are impossible.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// A record could not be claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum ClaimError {
    /// The payload is larger than the ring can ever carry.
    #[error(
        "record of {len} bytes exceeds this ring's largest payload ({max} bytes, half its \
         capacity); create the ring with a larger capacity or split the message"
    )]
    TooLarge {
        /// Length asked for.
        len: usize,
        /// Largest payload.
        max: u64,
    },
    /// Not enough free space now; retry after the consumer has released records.
    #[error("ring is full; retry once the consumer has caught up")]
    Full,
    /// The consumer's position is impossible.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// Header publication: the word a writer keeps at its `write` position (nothing there yet).
pub(crate) const EMPTY: u64 = 0;
/// Header publication: bytes a writer leaves free behind every record, for that word.
pub(crate) const RESERVE: u64 = crate::record::HEADER;

/// When a writer calls [`clear_end`]: at both steps of a record, which decide between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Room claimed, no payload byte written yet.
    Claim,
    /// Payload written, the header not yet published.
    Commit,
}

/// Cache line of the data area, as the writer's stores meet it (x86_64, most aarch64).
pub(crate) const DATA_LINE: u64 = 64;

/// Header publication (SPSC and broadcast): zeroes the word at `end`, the end of a record
/// (the writer's next position, inside the 8 bytes it keeps free), at the `step` where it
/// costs least. `store(p, word, ordering)` stores the header word at position `p`.
///
/// Stores leave a CPU in program order, and the reader polls the header's cache line:
/// - `end` on a line boundary (the links' records, padded to whole lines): the word opens a
///   line no payload byte touches, last written a lap ago. Stored at commit, between the
///   payload's stores to the header's line and the header, the wait for that line lets the
///   reader take the header's line back in between, and the header moves it a second time
///   (`chan.shm.spin` 64 B ~220 ns so, ~180 ns stored at claim, before the payload).
/// - `end` inside a line: the payload's last line holds the word, and is the writer's by
///   commit. Stored then, it costs nothing; stored at claim, before the payload, it measured
///   `shm.throughput` 64 B ~20% lower and `shm.spin` ~8 ns slower.
///
/// The SPSC producer skips the claim's store when an earlier whole-line record already
/// zeroed that word, off the critical path (`spsc::Producer::zero_ahead`): even stored
/// before the payload, the store waits for a line the reader had, and the record behind it.
///
/// A claim dropped uncommitted may leave the zero word in free space, which nobody reads.
#[inline(always)]
pub(crate) fn clear_end(store: impl Fn(u64, u64, crate::sync::Ordering), end: u64, step: Step) {
    let at_claim = end % DATA_LINE == 0;
    if at_claim == (step == Step::Claim) {
        // The word a reader looks at once past this record: nothing there yet.
        store(end, EMPTY, crate::sync::Ordering::Relaxed);
    }
}

/// Header publication, the writer's side (SPSC and broadcast): publishes the record whose
/// payload is written (and whose end [`clear_end`] zeroed), DATA header at
/// `rec_pos`, `len` payload bytes, after a PAD from `write` if `rec_pos > write`.
/// `store(p, word, ordering)` stores the header word at position `p`. Order: the DATA header
/// with Release, then the PAD with Release (a reader that sees the PAD sees the record
/// behind it). The caller stores `write` afterwards.
#[inline(always)]
pub(crate) fn publish(
    store: impl Fn(u64, u64, crate::sync::Ordering),
    cap_log2: u32,
    write: u64,
    rec_pos: u64,
    len: u32,
) {
    use crate::record::{encode, HEADER, KIND_DATA, KIND_PAD};
    use crate::sync::Ordering;
    // SYNC: records published
    store(rec_pos, encode(KIND_DATA, len, rec_pos, cap_log2), Ordering::Release);
    if rec_pos != write {
        let pad = encode(KIND_PAD, (rec_pos - write - HEADER) as u32, write, cap_log2);
        // SYNC: records published (after the record it makes room for)
        store(write, pad, Ordering::Release);
    }
}

/// A record published by its header (the SPSC and broadcast rings, "header publication" in
/// `docs/PROTOCOL.md` §2): where its DATA header lies, its payload length and its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) pos: u64,
    pub(crate) len: u32,
    pub(crate) end: u64,
}

/// The record whose header is published at `pos` of a ring of `1 << cap_log2` bytes:
/// `load(p)` loads the header word at position `p` with Acquire (`SYNC: records published`).
/// `Ok(None)` if the word at `pos` is zero (nothing there yet). A PAD there must be followed
/// by a DATA header (the writer publishes the record before its PAD). `room`: the bytes from
/// `pos` on that an honest writer may have written (the ring less the word it keeps zero,
/// less what lies between the reader's position and `pos`); every header is validated by
/// [`record::decode`](crate::record::decode) against it.
#[inline]
pub(crate) fn published_at(
    load: impl Fn(u64) -> u64,
    pos: u64,
    cap_log2: u32,
    max_payload: u64,
    room: u64,
) -> Result<Option<Published>, Corrupt> {
    use crate::record::{decode, Record};
    let word = load(pos);
    if word == EMPTY {
        return Ok(None);
    }
    let (mut at, mut room) = (pos, room);
    let mut decoded = decode(word, at, cap_log2, room, max_payload);
    if let Ok(Record::Pad { total }) = decoded {
        (at, room) = (at + total, room - total);
        decoded = match load(at) {
            EMPTY => Err(Corruption::BadPad { len: 0 }),
            word => decode(word, at, cap_log2, room, max_payload),
        };
    }
    match decoded {
        Ok(Record::Data { len, total }) => Ok(Some(Published { pos: at, len, end: at + total })),
        Ok(Record::Pad { total }) => {
            let len = (total - crate::record::HEADER) as u32;
            Err(Corrupt { pos: at, what: Corruption::BadPad { len } })
        }
        Err(what) => Err(Corrupt { pos: at, what }),
    }
}

/// Validates a capacity and returns its log2.
pub(crate) fn capacity_log2(capacity: u64) -> Result<u32, LayoutError> {
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err(LayoutError::BadCapacity(capacity));
    }
    Ok(capacity.trailing_zeros())
}

/// Checks that `needed` bytes at `offset` (128-aligned) fit in a region of `len` bytes.
pub(crate) fn check_place(offset: usize, needed: u64, len: usize) -> Result<(), LayoutError> {
    if offset % crate::layout::CACHE_LINE != 0 {
        return Err(LayoutError::Misaligned(offset));
    }
    let end = (offset as u64).checked_add(needed);
    match end {
        Some(end) if end <= len as u64 => Ok(()),
        _ => Err(LayoutError::TooSmall { needed, offset, len }),
    }
}

/// Checks that a read and a write position can belong to one healthy ring.
pub(crate) fn check_positions(read: u64, write: u64, cap: u64) -> Result<(), Corruption> {
    let ok = read % 8 == 0
        && write % 8 == 0
        && write >= read
        && write - read <= cap
        && write <= MAX_POSITION;
    if ok {
        Ok(())
    } else {
        Err(Corruption::BadPosition { found: write, other: read, capacity: cap })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn max_payload_fits_the_length_field() {
        assert_eq!(super::max_payload(256), 120);
        assert_eq!(super::max_payload(1 << 40), u64::from(u32::MAX));
    }
}
