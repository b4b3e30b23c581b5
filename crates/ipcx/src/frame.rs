//! Frames: the 24-byte header in front of every message on every transport.
//!
//! ```text
//! offset size field
//!  0     2    magic     0x5849 (bytes "IX")
//!  2     1    version   1
//!  3     1    kind      1 Data, 2 Ack, 3 Hello, 4 Accept, 5 Refuse, 6 Close
//!  4     1    flags     bit 0 ACK_REQUESTED, bit 1 CRC, bit 2 FDS; other bits zero
//!  5     3    reserved  zero
//!  8     4    len       payload length (header excluded)
//! 12     4    crc       crc32c of the payload if CRC is set, else zero
//! 16     8    seq       sequence number
//! 24     len  payload
//! ```
//!
//! All integers are little-endian. On byte streams the header delimits messages
//! ([`FrameDecoder`]); on message transports one datagram is one frame and the receiver checks
//! the header against the datagram ([`FrameHeader::check_payload`]). Every decoding error
//! means the peer is broken or hostile: close the connection. docs/PROTOCOL.md section 6 is
//! the normative text.

mod decoder;

pub use decoder::FrameDecoder;

use std::fmt;

/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 24;
/// The magic number at offset 0 (little-endian bytes `I`, `X`).
pub const MAGIC: u16 = 0x5849;
/// The frame format version at offset 2.
pub const VERSION: u8 = 1;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// An application message.
    Data = 1,
    /// Confirms receipt of the Data frame whose `seq` it carries; empty payload.
    Ack = 2,
    /// Handshake: the connector's hello.
    Hello = 3,
    /// Handshake: the listener accepts.
    Accept = 4,
    /// Handshake: the listener refuses.
    Refuse = 5,
    /// Orderly shutdown; empty payload.
    Close = 6,
}

impl FrameKind {
    /// The kind with wire value `value`, if there is one.
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Data,
            2 => Self::Ack,
            3 => Self::Hello,
            4 => Self::Accept,
            5 => Self::Refuse,
            6 => Self::Close,
            _ => return None,
        })
    }
}

/// The flags byte of a frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FrameFlags(u8);

impl FrameFlags {
    /// No flags.
    pub const NONE: Self = Self(0);
    /// The sender waits for an Ack carrying this frame's `seq`.
    pub const ACK_REQUESTED: Self = Self(1);
    /// The header's `crc` field holds the crc32c of the payload.
    pub const CRC: Self = Self(2);
    /// File descriptors travel with this frame (unix sockets, `SCM_RIGHTS`).
    pub const FDS: Self = Self(4);
    /// Every defined bit.
    const KNOWN: u8 = 7;

    /// The flags in `bits`, if no undefined bit is set.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        if bits & !Self::KNOWN == 0 {
            Some(Self(bits))
        } else {
            None
        }
    }

    /// The wire value.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for FrameFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// A decoded frame header. Build one for sending with [`FrameHeader::for_payload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// What the frame carries.
    pub kind: FrameKind,
    /// Its flags.
    pub flags: FrameFlags,
    /// Payload length in bytes, header excluded.
    pub len: u32,
    /// crc32c of the payload when [`FrameFlags::CRC`] is set, else zero.
    pub crc: u32,
    /// Sequence number (Data: the sender's message counter; Ack: the acknowledged one;
    /// handshake frames: zero).
    pub seq: u64,
}

impl FrameHeader {
    /// The header for sending `payload`: `len` from the payload, `crc` computed if `flags`
    /// contains [`FrameFlags::CRC`]. Fails only for a payload of 4 GiB or more.
    pub fn for_payload(
        kind: FrameKind,
        flags: FrameFlags,
        seq: u64,
        payload: &[u8],
    ) -> Result<Self, FrameError> {
        let len = u32::try_from(payload.len())
            .map_err(|_| FrameError::TooLong { len: payload.len() as u64, max: u32::MAX })?;
        let crc = if flags.contains(FrameFlags::CRC) { crc32c(payload) } else { 0 };
        Ok(Self { kind, flags, len, crc, seq })
    }

    /// The 24 header bytes.
    #[inline]
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&MAGIC.to_le_bytes());
        b[2] = VERSION;
        b[3] = self.kind as u8;
        b[4] = self.flags.bits();
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..16].copy_from_slice(&self.crc.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// Decodes and validates the header at the start of `bytes` (bytes after the header are
    /// ignored), refusing payloads longer than `max_len`.
    #[inline]
    pub fn decode(bytes: &[u8], max_len: u32) -> Result<Self, FrameError> {
        let Some(b) = bytes.first_chunk::<HEADER_LEN>() else {
            return Err(FrameError::Truncated {
                need: HEADER_LEN as u64,
                have: bytes.len() as u64,
            });
        };
        let le32 = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let magic = u16::from_le_bytes([b[0], b[1]]);
        if magic != MAGIC {
            return Err(FrameError::BadMagic { got: magic });
        }
        if b[2] != VERSION {
            return Err(FrameError::UnsupportedVersion { got: b[2] });
        }
        let kind = FrameKind::from_u8(b[3]).ok_or(FrameError::UnknownKind { got: b[3] })?;
        let flags = FrameFlags::from_bits(b[4])
            .ok_or(FrameError::ReservedBits { field: ReservedField::Flags, value: b[4].into() })?;
        let reserved = u32::from_le_bytes([b[5], b[6], b[7], 0]);
        if reserved != 0 {
            return Err(FrameError::ReservedBits {
                field: ReservedField::Reserved,
                value: reserved,
            });
        }
        let (len, crc) = (le32(8), le32(12));
        if crc != 0 && !flags.contains(FrameFlags::CRC) {
            return Err(FrameError::ReservedBits { field: ReservedField::Crc, value: crc });
        }
        if len > max_len {
            return Err(FrameError::TooLong { len: len.into(), max: max_len });
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[16..24]);
        Ok(Self { kind, flags, len, crc, seq: u64::from_le_bytes(seq) })
    }

    /// Checks a received payload against this header: its length equals `len` and, if the
    /// CRC flag is set, its crc32c equals `crc`. Message transports call it on each datagram.
    #[inline]
    pub fn check_payload(&self, payload: &[u8]) -> Result<(), FrameError> {
        if payload.len() as u64 != u64::from(self.len) {
            return Err(FrameError::LengthMismatch {
                header: self.len,
                actual: payload.len() as u64,
            });
        }
        if self.flags.contains(FrameFlags::CRC) {
            let computed = crc32c(payload);
            if computed != self.crc {
                return Err(FrameError::CrcMismatch { expected: self.crc, computed });
            }
        }
        Ok(())
    }
}

/// The length of the frame at the start of `bytes` (header and payload) as its header
/// declares it, without validating anything else; `None` if `bytes` is shorter than a
/// header. For links that carry frames in padded records.
#[inline]
pub fn declared_len(bytes: &[u8]) -> Option<usize> {
    let b = bytes.first_chunk::<HEADER_LEN>()?;
    let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    usize::try_from(len).ok()?.checked_add(HEADER_LEN)
}

/// The first 8 bytes of a Data frame without flags: magic, version, kind, flags 0, reserved 0.
const PLAIN_DATA_HEAD: u64 = MAGIC as u64 | (VERSION as u64) << 16 | (FrameKind::Data as u64) << 24;

/// The payload of `bytes` if they are exactly one plain Data frame (no flags, no crc)
/// numbered `seq` with a payload of at most `max` bytes; `None` for anything else, valid or
/// not, which [`FrameHeader::decode`] then judges. The receive fast path: one comparison per
/// header word.
#[inline]
pub(crate) fn plain_data(bytes: &[u8], seq: u64, max: usize) -> Option<&[u8]> {
    let b = bytes.first_chunk::<HEADER_LEN>()?;
    let word = |at: usize| {
        u64::from_le_bytes([
            b[at],
            b[at + 1],
            b[at + 2],
            b[at + 3],
            b[at + 4],
            b[at + 5],
            b[at + 6],
            b[at + 7],
        ])
    };
    let (head, len_crc, got) = (word(0), word(8), word(16));
    // len in the low half of the second word, crc (zero) in the high half.
    let len = usize::try_from(len_crc).ok()?;
    let fits = len <= max && bytes.len().checked_sub(HEADER_LEN) == Some(len);
    (head == PLAIN_DATA_HEAD && got == seq && fits).then(|| &bytes[HEADER_LEN..])
}

/// Appends a whole frame (header and payload) to `out` and returns its header.
pub fn encode_frame(
    kind: FrameKind,
    flags: FrameFlags,
    seq: u64,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<FrameHeader, FrameError> {
    let header = FrameHeader::for_payload(kind, flags, seq, payload)?;
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    Ok(header)
}

/// The crc32c (Castagnoli) checksum of `payload`, hardware-accelerated where available.
pub fn crc32c(payload: &[u8]) -> u32 {
    crc32c::crc32c(payload)
}

/// The crc32c of a payload sent in `parts` (their concatenation).
pub(crate) fn crc32c_of(parts: [&[u8]; 2]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(parts[0]), parts[1])
}

/// Which header field held a forbidden value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservedField {
    /// Undefined bits of the flags byte (offset 4).
    Flags,
    /// The reserved bytes 5..8.
    Reserved,
    /// The crc field (offset 12) without the CRC flag.
    Crc,
}

impl fmt::Display for ReservedField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Flags => "undefined flag bits",
            Self::Reserved => "the reserved bytes 5..8",
            Self::Crc => "the crc field of a frame without the CRC flag",
        })
    }
}

/// A frame failed validation. Every variant means: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first two bytes are not the ipcx magic.
    #[error(
        "not an ipcx frame (magic {got:#06x}, expected {MAGIC:#06x}): the peer does not speak \
         ipcx or the stream lost sync; close the connection"
    )]
    BadMagic {
        /// The magic found.
        got: u16,
    },
    /// A frame format version this build does not implement.
    #[error(
        "frame format version {got} is not supported (this build speaks {VERSION}); upgrade \
         the older side"
    )]
    UnsupportedVersion {
        /// The version found.
        got: u8,
    },
    /// A kind byte outside 1..=6.
    #[error("unknown frame kind {got}; the peer is newer or broken: close the connection")]
    UnknownKind {
        /// The kind byte found.
        got: u8,
    },
    /// A field that must be zero is not.
    #[error(
        "{field} hold {value:#x}, must be zero; the peer is newer or broken: close the connection"
    )]
    ReservedBits {
        /// Which field.
        field: ReservedField,
        /// Its value.
        value: u32,
    },
    /// The payload is longer than allowed.
    #[error(
        "frame payload of {len} bytes exceeds the limit of {max} bytes; the peer ignored the \
         agreed max_message: close the connection (or raise max_message on both sides)"
    )]
    TooLong {
        /// The payload length announced (or attempted).
        len: u64,
        /// The limit.
        max: u32,
    },
    /// Fewer bytes than the header needs.
    #[error(
        "truncated frame: {need} bytes needed, {have} present; read more or close the connection"
    )]
    Truncated {
        /// Bytes needed.
        need: u64,
        /// Bytes present.
        have: u64,
    },
    /// A datagram's length differs from its header's `len`.
    #[error(
        "frame header announces {header} payload bytes but the datagram carries {actual}; \
         close the connection"
    )]
    LengthMismatch {
        /// The header's `len`.
        header: u32,
        /// The payload bytes received.
        actual: u64,
    },
    /// The payload's crc32c differs from the header's.
    #[error(
        "payload checksum mismatch (header crc32c {expected:#010x}, computed {computed:#010x}): \
         the data was corrupted in transit; close the connection"
    )]
    CrcMismatch {
        /// The crc in the header.
        expected: u32,
        /// The crc of the bytes received.
        computed: u32,
    },
}

#[cfg(test)]
mod tests;
