//! Errors of segment creation, opening and header validation.

use std::fmt;
use std::time::Duration;

use ipcx_sys::mapping::MapError;
use ipcx_sys::posix_shm;
use thiserror::Error;

use super::header::{SegmentKind, HEADER_SIZE, PAYLOAD_ALIGN};
use crate::region::NotWritable;

/// Why a segment header cannot be used. Produced by
/// [`validate_header`](super::validate_header) from bytes only; [`OpenError::Header`] adds
/// the segment's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum HeaderError {
    /// The object is shorter than a header.
    #[error(
        "the object holds {len} bytes, fewer than a segment header ({HEADER_SIZE}); it is not an \
         ipcx segment: check the name"
    )]
    TooSmall {
        /// Length of the object.
        len: u64,
    },
    /// The `init` word is 0: the creator is still writing the header, or died doing so.
    #[error(
        "the segment is not initialised: its creator is still setting it up or died while \
         creating it; retry shortly or remove the stale object with `ipcx clean`"
    )]
    NotInitialised,
    /// The object does not start with the ipcx magic.
    #[error("not an ipcx segment (magic {found:02x?}); check the name")]
    BadMagic {
        /// The first eight bytes found.
        found: [u8; 8],
    },
    /// The segment was made by an ipcx with another layout version.
    #[error(
        "segment layout version {found}, but this program reads version {expected}; {}",
        UpgradeHint { found: *.found, expected: *.expected }
    )]
    VersionMismatch {
        /// Version in the header.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// The `init` word holds neither 0 nor the ready value.
    #[error(
        "the segment's init word is {value:#010x}, neither 0 nor ready: the header is corrupt; \
         remove the object with `ipcx clean` and recreate it"
    )]
    BadInit {
        /// Value found.
        value: u32,
    },
    /// The kind is not one this build knows.
    #[error(
        "unknown segment kind {raw:#x}: the segment was made by a newer ipcx or is corrupt; \
         upgrade this program or remove the object with `ipcx clean`"
    )]
    UnknownKind {
        /// Raw kind found.
        raw: u32,
    },
    /// The segment holds another kind of structure than the opener expects.
    #[error(
        "the segment holds a {found}, not the {expected} expected; check the name (another \
         service may use it)"
    )]
    WrongKind {
        /// Kind in the header.
        found: SegmentKind,
        /// Kind the opener expects.
        expected: SegmentKind,
    },
    /// The creator's contract fingerprint differs from the opener's.
    #[error(
        "the segment's contract fingerprint {found:#018x} differs from ours {expected:#018x}: \
         both sides must be built with the same message types; rebuild the outdated side"
    )]
    IncompatibleContract {
        /// Fingerprint in the header.
        found: u64,
        /// Fingerprint the opener expects.
        expected: u64,
    },
    /// The header's total size differs from the object's real size.
    #[error(
        "the header says the segment holds {header} bytes but the object holds {mapping}: it was \
         resized or is corrupt; remove it with `ipcx clean` and recreate it"
    )]
    SizeMismatch {
        /// `total_size` in the header.
        header: u64,
        /// Length of the mapping.
        mapping: u64,
    },
    /// A layout field is impossible.
    #[error("corrupt segment header: {0}; remove the object with `ipcx clean` and recreate it")]
    BadLayout(LayoutFault),
}

/// Which layout field of a header is impossible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutFault {
    /// `header_size` is not [`HEADER_SIZE`].
    HeaderSize {
        /// Value found.
        found: u32,
    },
    /// A reserved byte is not zero.
    Reserved {
        /// Offset of the first non-zero reserved byte.
        offset: usize,
    },
    /// The payload starts inside the header or off a [`PAYLOAD_ALIGN`] boundary.
    PayloadOffset {
        /// `payload_offset` found.
        offset: u64,
    },
    /// The payload size is 0.
    EmptyPayload,
    /// The payload runs past the end of the segment.
    PayloadBounds {
        /// `payload_offset`.
        offset: u64,
        /// `payload_size`.
        size: u64,
        /// `total_size`.
        total: u64,
    },
}

impl fmt::Display for LayoutFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayoutFault::HeaderSize { found } => {
                write!(f, "header size {found} instead of {HEADER_SIZE}")
            }
            LayoutFault::Reserved { offset } => write!(f, "reserved byte {offset} is not zero"),
            LayoutFault::PayloadOffset { offset } => write!(
                f,
                "payload offset {offset} lies inside the header or is not a multiple of \
                 {PAYLOAD_ALIGN}"
            ),
            LayoutFault::EmptyPayload => f.write_str("the payload is empty"),
            LayoutFault::PayloadBounds { offset, size, total } => write!(
                f,
                "a payload of {size} bytes at offset {offset} runs past the segment's {total} bytes"
            ),
        }
    }
}

/// Tells which side of a version mismatch to upgrade.
struct UpgradeHint {
    found: u32,
    expected: u32,
}

impl fmt::Display for UpgradeHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.found > self.expected {
            f.write_str("the creator uses a newer ipcx: upgrade this program")
        } else {
            f.write_str(
                "the creator uses an older ipcx: upgrade it, or remove the stale segment with \
                 `ipcx clean`",
            )
        }
    }
}

/// Creating a segment failed.
#[derive(Debug, Error)]
pub enum CreateError {
    /// An `Other` kind uses a raw value reserved for ipcx.
    #[error(
        "segment kind {raw:#x} is reserved for ipcx; application-defined kinds are \
         SegmentKind::Other(v) with v >= {:#x}",
        SegmentKind::FIRST_OTHER
    )]
    InvalidKind {
        /// The raw value asked for.
        raw: u32,
    },
    /// The payload size is 0.
    #[error("a segment needs a payload of at least one byte; set SegmentSpec::payload_size")]
    EmptyPayload,
    /// Header and payload together exceed what this process can map.
    #[error(
        "a payload of {payload_size} bytes plus the {PAYLOAD_ALIGN}-byte header page is more \
         than this process can map; ask for less"
    )]
    TooLarge {
        /// Payload size asked for.
        payload_size: usize,
    },
    /// Creating the shm object failed (it exists, permissions, no space, bad name...).
    #[error(transparent)]
    Shm(#[from] posix_shm::OpenError),
    /// Mapping the new object failed.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The mapping cannot be written.
    #[error(transparent)]
    NotWritable(#[from] NotWritable),
    /// The header could not be written (a layout this build cannot describe).
    #[error("cannot lay out segment {name}: {error}")]
    Layout {
        /// Object name.
        name: String,
        /// What is wrong with the layout.
        error: HeaderError,
    },
}

/// Opening a segment failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// Opening the shm object failed (not found, permission denied, bad name...).
    #[error(transparent)]
    Shm(#[from] posix_shm::OpenError),
    /// Mapping the object failed.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The mapping cannot be written.
    #[error(transparent)]
    NotWritable(#[from] NotWritable),
    /// The header is not (yet) usable, or does not match what the opener expects.
    #[error("shm segment {name}: {error}")]
    Header {
        /// Object name.
        name: String,
        /// What is wrong with the header.
        error: HeaderError,
    },
    /// [`Segment::open_with_timeout`](super::Segment::open_with_timeout) waited its whole
    /// timeout and the segment stayed uninitialised.
    #[error(
        "shm segment {name} was still not initialised after {waited:?}: its creator is stuck or \
         died while creating it; remove the stale object with `ipcx clean` and recreate it"
    )]
    InitTimeout {
        /// Object name.
        name: String,
        /// How long the opener waited.
        waited: Duration,
    },
}

impl OpenError {
    /// The header problem, if that is what this error is.
    pub fn header_error(&self) -> Option<HeaderError> {
        match self {
            OpenError::Header { error, .. } => Some(*error),
            _ => None,
        }
    }

    /// Whether the segment exists but its creator has not finished initialising it.
    pub fn is_not_initialised(&self) -> bool {
        self.header_error() == Some(HeaderError::NotInitialised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_message_names_the_side_to_upgrade() {
        let newer = HeaderError::VersionMismatch { found: 2, expected: 1 }.to_string();
        assert!(newer.contains("upgrade this program"), "{newer}");
        let older = HeaderError::VersionMismatch { found: 0, expected: 1 }.to_string();
        assert!(older.contains("older ipcx: upgrade it"), "{older}");
    }

    #[test]
    fn contract_message_shows_both_fingerprints_in_hex() {
        let e = HeaderError::IncompatibleContract { found: 0xab, expected: 0xcd };
        let text = e.to_string();
        assert!(text.contains("0x00000000000000ab") && text.contains("0x00000000000000cd"));
    }
}
