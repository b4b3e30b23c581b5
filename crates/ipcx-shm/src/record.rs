//! Record headers: the one 8-byte word in front of every record in a ring.
//!
//! ```text
//! bit 63            40 39     32 31                 0
//!     | lap tag (24)  | kind (8) |  payload len (32) |
//! ```
//!
//! A record is `[header | payload | pad to 8]`; records start at 8-aligned offsets and never
//! wrap: when a record does not fit before the end of the ring, the writer fills the rest
//! with one `PAD` record and places the record at offset 0. The lap tag is the low 24 bits
//! of `position >> log2(capacity)` for the header's position, so a header left over from an
//! earlier lap is told apart from one written on this lap.
//!
//! Readers load the header word once, decode it here with checked arithmetic against what
//! they know independently (capacity, their position, the published limit), and never
//! read it again: a peer that rewrites it afterwards cannot change what was validated.
//!
//! Kinds: `EMPTY` (0) never written, or, in an MPSC ring, the lap-tagged
//! [`empty_word`](crate::record::empty_word) the consumer scrubs free space with; `DATA`
//! (1); `PAD` (2); and, in MPSC rings only, `CLAIMED` (3: claimed by a producer, length
//! known, not yet committed) and `SKIP` (4: a claim its producer dropped uncommitted).
//! SPSC readers reject the MPSC-only kinds.

use thiserror::Error;

/// Size of a record header in bytes.
pub const HEADER: u64 = 8;
/// Alignment of every record.
pub const RECORD_ALIGN: u64 = 8;

/// Kind of a header that was never written (all zero).
pub const KIND_EMPTY: u8 = 0;
/// Kind of a record carrying a payload.
pub const KIND_DATA: u8 = 1;
/// Kind of the filler record that runs to the end of the ring.
pub const KIND_PAD: u8 = 2;
/// MPSC only: a record claimed by a producer (its length is final), not yet committed.
pub const KIND_CLAIMED: u8 = 3;
/// MPSC only: a claimed record its producer dropped without committing; skipped, never read.
pub const KIND_SKIP: u8 = 4;

const LAP_BITS: u32 = 24;
const LAP_MASK: u64 = (1 << LAP_BITS) - 1;

/// What a validated header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// A data record: `len` payload bytes, `total` bytes in the ring including header and pad.
    Data {
        /// Payload length.
        len: u32,
        /// Bytes the record occupies (header + payload + padding).
        total: u64,
    },
    /// Filler to the end of the ring, `total` bytes including its header.
    Pad {
        /// Bytes the filler occupies.
        total: u64,
    },
}

/// Why a header (or a position) read from shared memory cannot be right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum Corruption {
    /// The kind byte is not DATA or PAD.
    #[error("unknown record kind {0}")]
    BadKind(u8),
    /// The header belongs to another lap of the ring.
    #[error("record header from lap {found} where lap {expected} was expected")]
    BadLap {
        /// Lap tag in the header.
        found: u32,
        /// Lap tag of the position being read.
        expected: u32,
    },
    /// The payload length cannot fit where the record is.
    #[error("record length {len} does not fit (largest payload here {max})")]
    BadLength {
        /// Length in the header.
        len: u32,
        /// Largest payload that could be valid at this position.
        max: u64,
    },
    /// A padding record does not run exactly to the end of the ring.
    #[error("padding record of {len} bytes does not end at the ring's end")]
    BadPad {
        /// Length in the header.
        len: u32,
    },
    /// A header this side owned (claimed, not yet committed) was changed by someone else.
    #[error("record header owned by this side was overwritten with {found:#x}")]
    Overwritten {
        /// The word found in place of ours.
        found: u64,
    },
    /// A position moved backwards, past the other side's, or is not 8-aligned.
    #[error("ring position {found} is impossible (other side at {other}, capacity {capacity})")]
    BadPosition {
        /// The position read from shared memory.
        found: u64,
        /// The position it was checked against.
        other: u64,
        /// Ring capacity.
        capacity: u64,
    },
}

/// Total bytes a record with `len` payload bytes occupies, or `None` on overflow.
pub const fn record_size(len: u64) -> Option<u64> {
    match len.checked_add(HEADER + RECORD_ALIGN - 1) {
        Some(v) => Some(v & !(RECORD_ALIGN - 1)),
        None => None,
    }
}

/// The lap tag of position `pos` in a ring of `1 << cap_log2` bytes.
pub const fn lap_tag(pos: u64, cap_log2: u32) -> u32 {
    ((pos >> cap_log2) & LAP_MASK) as u32
}

/// Encodes a header word.
pub const fn encode(kind: u8, len: u32, pos: u64, cap_log2: u32) -> u64 {
    ((lap_tag(pos, cap_log2) as u64) << 40) | ((kind as u64) << 32) | len as u64
}

/// The word an MPSC ring keeps in every free 8-byte slot at position `pos`: kind `EMPTY`,
/// length 0, tagged with the lap of `pos`. Zero on lap 0, so zeroed memory is a fresh ring.
pub const fn empty_word(pos: u64, cap_log2: u32) -> u64 {
    encode(KIND_EMPTY, 0, pos, cap_log2)
}

/// Checks a payload length `len` for a record with `to_end` bytes before the ring's end,
/// `avail` bytes available and payloads of at most `max_payload` bytes; returns the bytes the
/// record occupies.
pub fn check_len(len: u32, to_end: u64, avail: u64, max_payload: u64) -> Result<u64, Corruption> {
    match record_size(u64::from(len)) {
        Some(t) if u64::from(len) <= max_payload && t <= to_end && t <= avail => Ok(t),
        _ => Err(Corruption::BadLength { len, max: max_payload.min(to_end.min(avail)) }),
    }
}

/// Splits a header word into (lap tag, kind, len) without judging it.
pub const fn split(word: u64) -> (u32, u8, u32) {
    ((word >> 40) as u32, (word >> 32) as u8, word as u32)
}

/// Validates the header `word` read at position `pos` of a ring of capacity
/// `1 << cap_log2`, where `avail` bytes (counted from `pos`) are published and payloads are
/// at most `max_payload` bytes.
#[inline]
pub fn decode(
    word: u64,
    pos: u64,
    cap_log2: u32,
    avail: u64,
    max_payload: u64,
) -> Result<Record, Corruption> {
    let (tag, kind, len) = split(word);
    let expected = lap_tag(pos, cap_log2);
    if tag != expected && kind != KIND_EMPTY {
        return Err(Corruption::BadLap { found: tag, expected });
    }
    let cap = 1u64 << cap_log2;
    let to_end = cap - (pos & (cap - 1));
    match kind {
        KIND_DATA => {
            let total = check_len(len, to_end, avail, max_payload)?;
            Ok(Record::Data { len, total })
        }
        KIND_PAD => {
            if u64::from(len).checked_add(HEADER) == Some(to_end) && to_end <= avail {
                Ok(Record::Pad { total: to_end })
            } else {
                Err(Corruption::BadPad { len })
            }
        }
        other => Err(Corruption::BadKind(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: u32 = 10; // 1 KiB ring

    #[test]
    fn data_round_trips() {
        let pos = 3 * 1024 + 64;
        let w = encode(KIND_DATA, 13, pos, LOG);
        assert_eq!(decode(w, pos, LOG, 1000, 500), Ok(Record::Data { len: 13, total: 24 }));
    }

    #[test]
    fn pad_must_reach_the_end() {
        let pos = 1024 - 32;
        let ok = encode(KIND_PAD, 24, pos, LOG);
        assert_eq!(decode(ok, pos, LOG, 64, 500), Ok(Record::Pad { total: 32 }));
        let short = encode(KIND_PAD, 16, pos, LOG);
        assert_eq!(decode(short, pos, LOG, 64, 500), Err(Corruption::BadPad { len: 16 }));
    }

    #[test]
    fn rejects_stale_lap_kind_and_lengths() {
        let pos = 2048;
        let stale = encode(KIND_DATA, 8, pos - 1024, LOG);
        assert!(matches!(decode(stale, pos, LOG, 64, 500), Err(Corruption::BadLap { .. })));
        let kind = encode(7, 8, pos, LOG);
        assert_eq!(decode(kind, pos, LOG, 64, 500), Err(Corruption::BadKind(7)));
        let huge = encode(KIND_DATA, u32::MAX, pos, LOG);
        assert!(matches!(decode(huge, pos, LOG, 64, 500), Err(Corruption::BadLength { .. })));
        let past_avail = encode(KIND_DATA, 64, pos, LOG);
        assert!(matches!(decode(past_avail, pos, LOG, 16, 500), Err(Corruption::BadLength { .. })));
        let over_end = encode(KIND_DATA, 40, 1024 - 16, LOG);
        assert!(decode(over_end, 1024 - 16, LOG, 512, 500).is_err());
    }

    #[test]
    fn empty_words_carry_the_lap() {
        assert_eq!(empty_word(0, LOG), 0);
        assert_eq!(empty_word(1024 + 8, LOG), 1 << 40);
        assert_eq!(split(empty_word(5 * 1024, LOG)), (5, KIND_EMPTY, 0));
    }

    #[test]
    fn record_size_aligns_and_overflows() {
        assert_eq!(record_size(0), Some(8));
        assert_eq!(record_size(1), Some(16));
        assert_eq!(record_size(8), Some(16));
        assert_eq!(record_size(u64::MAX), None);
    }
}
