//! Where the rings and doorbells of one `shm` connection lie in its memfd, how big the rings
//! are, and the segment header that says so (written by the listener's side, validated by
//! the connector's).

use std::sync::Arc;

use ipcx_shm::doorbell::DoorbellState;
use ipcx_shm::record;
use ipcx_shm::ring::spsc;
use ipcx_shm::segment::{encode_header, validate_header, HEADER_SIZE, INIT_READY, PAYLOAD_ALIGN};
use ipcx_shm::{Expect, MappedRegion, SegmentInfo, SegmentKind};

use crate::channel::error::ConnectError;

/// Smallest ring capacity: 64 KiB.
pub(super) const MIN_CAPACITY: u64 = 64 << 10;
/// Largest ring capacity: 64 MiB. Rings for large frames hold fewer than
/// [`RECORDS_PER_LAP`] records per lap rather than reserving gigabytes.
pub(super) const MAX_CAPACITY: u64 = 64 << 20;
/// Records of the largest frame one lap of a ring holds (when [`MAX_CAPACITY`] allows): a
/// record that does not fit before the ring's end is preceded by a pad record, which costs
/// the receiver one more cache miss; with 16 records per lap at most one in 15 pays it (see
/// the `shm.*` bench channel, which measured it).
pub(super) const RECORDS_PER_LAP: u64 = 16;
/// What the segment holds: "CHNL" with the top bit set (an application-defined kind).
const KIND: SegmentKind = SegmentKind::Other(0x8000_0000 | 0x4348_4e4c);
/// Fingerprint of this layout; the low byte carries log2 of the capacity.
const FINGERPRINT: u64 = 0x6970_6378_6368_0100;
/// Rings start on page boundaries.
const PAGE: usize = 4096;

/// A direction of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    /// Listener → connector.
    Down,
    /// Connector → listener.
    Up,
}

impl Dir {
    /// The other direction.
    pub(super) fn reverse(self) -> Dir {
        match self {
            Dir::Down => Dir::Up,
            Dir::Up => Dir::Down,
        }
    }
}

/// Offsets of everything in the segment's payload, for one `max_frame`; both sides compute it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    /// Data bytes of each ring.
    pub capacity: u64,
    /// Bytes from one ring's start to the next (control block + data, page-rounded).
    span: usize,
}

impl Layout {
    /// The layout for frames of at most `max_frame` bytes (at most [`super::LIMIT`]).
    pub(super) fn new(max_frame: usize) -> Layout {
        let padded = super::link::record_payload(max_frame) as u64;
        let record = record::record_size(padded).unwrap_or(u64::MAX);
        let fits = record.saturating_mul(2).next_power_of_two();
        let capacity = record
            .saturating_mul(RECORDS_PER_LAP)
            .next_power_of_two()
            .clamp(MIN_CAPACITY, MAX_CAPACITY)
            .max(fits);
        let span = (spsc::required_size(capacity) as usize).next_multiple_of(PAGE);
        Layout { capacity, span }
    }

    /// Offset (in the payload) of the ring carrying `dir`.
    pub(super) fn ring(&self, dir: Dir) -> usize {
        match dir {
            Dir::Down => 0,
            Dir::Up => self.span,
        }
    }

    /// Offset of the doorbell rung when a record is published in `dir`.
    pub(super) fn data_bell(&self, dir: Dir) -> usize {
        2 * self.span
            + match dir {
                Dir::Down => 0,
                Dir::Up => DoorbellState::SIZE,
            }
    }

    /// Offset of the doorbell rung when space is released in `dir`'s ring.
    pub(super) fn space_bell(&self, dir: Dir) -> usize {
        self.data_bell(dir) + 2 * DoorbellState::SIZE
    }

    /// Bytes of segment payload.
    pub(super) fn payload_size(&self) -> usize {
        2 * self.span + 4 * DoorbellState::SIZE
    }

    /// Bytes of the whole memfd: the header page, then the payload.
    pub(super) fn total_size(&self) -> usize {
        PAYLOAD_ALIGN as usize + self.payload_size()
    }

    fn fingerprint(&self) -> u64 {
        FINGERPRINT | u64::from(self.capacity.trailing_zeros())
    }

    /// The header of a segment with this layout, created by this process.
    fn info(&self) -> SegmentInfo {
        SegmentInfo {
            kind: KIND,
            total_size: self.total_size() as u64,
            payload_offset: PAYLOAD_ALIGN,
            payload_size: self.payload_size() as u64,
            fingerprint: self.fingerprint(),
            creator_pid: std::process::id(),
            creator_uid: ipcx_sys::process::current_uid(),
        }
    }

    /// Writes the segment header at the start of `region` (before the memfd is shared).
    pub(super) fn write_header(&self, region: &Arc<MappedRegion>) -> Result<(), ConnectError> {
        let bytes = encode_header(&self.info(), INIT_READY);
        region
            .get()
            .write_at(0, &bytes)
            .map_err(|e| ConnectError::os("writing the shm segment header", e))
    }

    /// Validates the header at the start of `region` (sent by the peer) against this layout.
    pub(super) fn check_header(&self, region: &Arc<MappedRegion>) -> Result<(), ConnectError> {
        let mut bytes = [0u8; HEADER_SIZE];
        region.get().read_at(0, &mut bytes).map_err(handshake)?;
        let info = validate_header(&bytes, region.get().len() as u64).map_err(handshake)?;
        Expect { kind: KIND, fingerprint: self.fingerprint() }.check(&info).map_err(handshake)?;
        if info.payload_offset != PAYLOAD_ALIGN || info.payload_size != self.payload_size() as u64 {
            return Err(ConnectError::Handshake(
                format!(
                    "the shm segment's payload is {} bytes at offset {}, not {} at {PAYLOAD_ALIGN}",
                    info.payload_size,
                    info.payload_offset,
                    self.payload_size()
                )
                .into(),
            ));
        }
        Ok(())
    }
}

/// The peer's segment is unusable: a handshake error.
pub(super) fn handshake(e: impl std::error::Error + Send + Sync + 'static) -> ConnectError {
    ConnectError::Handshake(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_hold_sixteen_records_and_the_largest_frame() {
        let small = Layout::new(64);
        assert_eq!(small.capacity, MIN_CAPACITY);
        assert_eq!(small.span % PAGE, 0);
        let default = Layout::new((64 << 10) + 24);
        assert_eq!(default.capacity, 2 << 20);
        for max in [1, 4096, 1 << 20, (8 << 20) + 24, super::super::LIMIT] {
            let l = Layout::new(max);
            let padded = super::super::link::record_payload(max) as u64;
            assert!(ipcx_shm::ring::max_payload(l.capacity) >= padded, "{max}");
            assert!(l.capacity <= MAX_CAPACITY, "{max}");
            assert!(l.span as u64 >= spsc::required_size(l.capacity));
        }
        assert_eq!(default.space_bell(Dir::Up) + DoorbellState::SIZE, default.payload_size());
        assert_ne!(small.fingerprint(), default.fingerprint());
    }
}
