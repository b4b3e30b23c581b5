//! The segment header: the first [`HEADER_SIZE`] bytes of every ipcx mapping.
//!
//! ```text
//! offset size field           meaning
//!      0    8 magic           b"IPCXSEG\0"
//!      8    4 layout_version  LAYOUT_VERSION (1)
//!     12    4 init            0 = being written, INIT_READY = valid; written last (Release)
//!     16    4 kind            SegmentKind::raw(): 1 SPSC, 2 MPSC, 3 broadcast, >= 2^31 app
//!     20    4 header_size     HEADER_SIZE (128)
//!     24    8 total_size      bytes in the object; must equal the mapping's length
//!     32    8 payload_offset  multiple of PAYLOAD_ALIGN (4096), >= header_size
//!     40    8 payload_size    > 0; payload_offset + payload_size <= total_size
//!     48    8 fingerprint     contract fingerprint, compared with the opener's
//!     56    4 creator_pid     pid of the creating process (informational)
//!     60    4 creator_uid     real uid of the creating process (informational)
//!     64   64 reserved        zero
//! ```
//!
//! Integers are in native byte order. `magic`, `layout_version` and `init` keep these
//! offsets and meanings in every future version, so any version can tell "not ipcx",
//! "not ready yet" and "other version" apart before reading anything else.
//!
//! The creator writes every field while `init` is 0, then stores [`INIT_READY`] with
//! Release. An opener loads `init` with Acquire, copies the header out once and validates
//! the copy ([`validate_header`]) with checked arithmetic against the mapping's real
//! length: the bytes may come from a crashed or hostile process.

use std::ptr::NonNull;

use super::error::{HeaderError, LayoutFault};
use crate::region::Region;
use crate::sync::{AtomicU32, Ordering};

/// First eight bytes of every ipcx segment.
pub const MAGIC: [u8; 8] = *b"IPCXSEG\0";
/// Version of the header and payload layout this build writes and reads.
pub const LAYOUT_VERSION: u32 = 1;
/// Size of the header in bytes (one 128-byte cache line pair of its own).
pub const HEADER_SIZE: usize = 128;
/// Alignment of the payload offset; this build places the payload at exactly this offset.
pub const PAYLOAD_ALIGN: u64 = 4096;
/// Value of the `init` word once the header is complete (`"RDY1"` in ASCII).
pub const INIT_READY: u32 = 0x5244_5931;

/// Byte offsets of the header fields (see the module docs for the table).
pub mod field {
    /// `magic`, 8 bytes.
    pub const MAGIC: usize = 0;
    /// `layout_version`, u32.
    pub const VERSION: usize = 8;
    /// `init`, atomic u32.
    pub const INIT: usize = 12;
    /// `kind`, u32.
    pub const KIND: usize = 16;
    /// `header_size`, u32.
    pub const HEADER_SIZE: usize = 20;
    /// `total_size`, u64.
    pub const TOTAL_SIZE: usize = 24;
    /// `payload_offset`, u64.
    pub const PAYLOAD_OFFSET: usize = 32;
    /// `payload_size`, u64.
    pub const PAYLOAD_SIZE: usize = 40;
    /// `fingerprint`, u64.
    pub const FINGERPRINT: usize = 48;
    /// `creator_pid`, u32.
    pub const CREATOR_PID: usize = 56;
    /// `creator_uid`, u32.
    pub const CREATOR_UID: usize = 60;
    /// `reserved`, 64 zero bytes to the end of the header.
    pub const RESERVED: usize = 64;
}

/// What a segment holds. Stored as a u32 ([`raw`](Self::raw)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SegmentKind {
    /// A single-producer single-consumer ring (raw 1).
    SpscRing,
    /// A multi-producer single-consumer ring (raw 2).
    MpscRing,
    /// A one-writer, many-reader broadcast ring (raw 3).
    Broadcast,
    /// An application-defined layout; the raw value must be at least
    /// [`SegmentKind::FIRST_OTHER`] (smaller values are reserved for ipcx).
    Other(u32),
}

impl SegmentKind {
    /// Smallest raw value of an application-defined kind.
    pub const FIRST_OTHER: u32 = 0x8000_0000;

    /// The value stored in the header.
    pub const fn raw(self) -> u32 {
        match self {
            SegmentKind::SpscRing => 1,
            SegmentKind::MpscRing => 2,
            SegmentKind::Broadcast => 3,
            SegmentKind::Other(v) => v,
        }
    }

    /// The kind stored as `raw`, or `None` if ipcx does not know it.
    pub const fn from_raw(raw: u32) -> Option<SegmentKind> {
        match raw {
            1 => Some(SegmentKind::SpscRing),
            2 => Some(SegmentKind::MpscRing),
            3 => Some(SegmentKind::Broadcast),
            v if v >= SegmentKind::FIRST_OTHER => Some(SegmentKind::Other(v)),
            _ => None,
        }
    }
}

impl std::fmt::Display for SegmentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SegmentKind::SpscRing => f.write_str("SPSC ring"),
            SegmentKind::MpscRing => f.write_str("MPSC ring"),
            SegmentKind::Broadcast => f.write_str("broadcast ring"),
            SegmentKind::Other(v) => write!(f, "application-defined segment kind {v:#x}"),
        }
    }
}

/// A validated copy of a segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// What the segment holds.
    pub kind: SegmentKind,
    /// Bytes in the segment (header, padding and payload).
    pub total_size: u64,
    /// Offset of the payload from the start of the segment.
    pub payload_offset: u64,
    /// Bytes of payload.
    pub payload_size: u64,
    /// Contract fingerprint written by the creator.
    pub fingerprint: u64,
    /// Pid of the creating process.
    pub creator_pid: u32,
    /// Real uid of the creating process.
    pub creator_uid: u32,
}

/// The header as it lies in shared memory (see the module docs for the byte table).
#[repr(C, align(128))]
#[derive(Debug)]
pub struct SegmentHeader {
    magic: [u8; 8],
    layout_version: u32,
    /// 0 while the creator writes the header, then [`INIT_READY`]. Written by the creator
    /// only, once, with Release; read by openers with Acquire.
    init: AtomicU32,
    kind: u32,
    header_size: u32,
    total_size: u64,
    payload_offset: u64,
    payload_size: u64,
    fingerprint: u64,
    creator_pid: u32,
    creator_uid: u32,
    reserved: [u8; 64],
}

#[cfg(not(loom))]
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<SegmentHeader>() == HEADER_SIZE);
    assert!(align_of::<SegmentHeader>() == crate::layout::CACHE_LINE);
    assert!(offset_of!(SegmentHeader, magic) == field::MAGIC);
    assert!(offset_of!(SegmentHeader, layout_version) == field::VERSION);
    assert!(offset_of!(SegmentHeader, init) == field::INIT);
    assert!(offset_of!(SegmentHeader, kind) == field::KIND);
    assert!(offset_of!(SegmentHeader, header_size) == field::HEADER_SIZE);
    assert!(offset_of!(SegmentHeader, total_size) == field::TOTAL_SIZE);
    assert!(offset_of!(SegmentHeader, payload_offset) == field::PAYLOAD_OFFSET);
    assert!(offset_of!(SegmentHeader, payload_size) == field::PAYLOAD_SIZE);
    assert!(offset_of!(SegmentHeader, fingerprint) == field::FINGERPRINT);
    assert!(offset_of!(SegmentHeader, creator_pid) == field::CREATOR_PID);
    assert!(offset_of!(SegmentHeader, creator_uid) == field::CREATOR_UID);
    assert!(offset_of!(SegmentHeader, reserved) == field::RESERVED);
    assert!(field::RESERVED + 64 == HEADER_SIZE);
    assert!(HEADER_SIZE as u64 <= PAYLOAD_ALIGN);
};

impl SegmentHeader {
    /// A header describing `info`, with `init` still 0.
    fn new(info: &SegmentInfo) -> SegmentHeader {
        SegmentHeader {
            magic: MAGIC,
            layout_version: LAYOUT_VERSION,
            init: AtomicU32::new(0),
            kind: info.kind.raw(),
            header_size: HEADER_SIZE as u32,
            total_size: info.total_size,
            payload_offset: info.payload_offset,
            payload_size: info.payload_size,
            fingerprint: info.fingerprint,
            creator_pid: info.creator_pid,
            creator_uid: info.creator_uid,
            reserved: [0; 64],
        }
    }
}

/// The header bytes describing `info` with the `init` word set to `init`, exactly as
/// [`Segment::create`](super::Segment::create) lays them out. For tools and tests: fuzz
/// seeds, or simulating a creator that died before finishing (`init` = 0).
pub fn encode_header(info: &SegmentInfo, init: u32) -> [u8; HEADER_SIZE] {
    let mut b = [0u8; HEADER_SIZE];
    b[field::MAGIC..field::MAGIC + 8].copy_from_slice(&MAGIC);
    put_u32(&mut b, field::VERSION, LAYOUT_VERSION);
    put_u32(&mut b, field::INIT, init);
    put_u32(&mut b, field::KIND, info.kind.raw());
    put_u32(&mut b, field::HEADER_SIZE, HEADER_SIZE as u32);
    put_u64(&mut b, field::TOTAL_SIZE, info.total_size);
    put_u64(&mut b, field::PAYLOAD_OFFSET, info.payload_offset);
    put_u64(&mut b, field::PAYLOAD_SIZE, info.payload_size);
    put_u64(&mut b, field::FINGERPRINT, info.fingerprint);
    put_u32(&mut b, field::CREATOR_PID, info.creator_pid);
    put_u32(&mut b, field::CREATOR_UID, info.creator_uid);
    b
}

/// Validates a copy of a header (its `init` word included) taken from a mapping of
/// `mapping_len` bytes. Pure: never touches shared memory, never panics.
///
/// Checks, in order: length, `init` = 0 (with an ipcx or blank magic), magic, version,
/// `init` = [`INIT_READY`], header size, reserved bytes, kind, total size = `mapping_len`,
/// payload offset, payload bounds.
pub fn validate_header(
    bytes: &[u8; HEADER_SIZE],
    mapping_len: u64,
) -> Result<SegmentInfo, HeaderError> {
    if mapping_len < HEADER_SIZE as u64 {
        return Err(HeaderError::TooSmall { len: mapping_len });
    }
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&bytes[field::MAGIC..field::MAGIC + 8]);
    let init = get_u32(bytes, field::INIT);
    if init == 0 && (magic == MAGIC || magic == [0; 8]) {
        return Err(HeaderError::NotInitialised);
    }
    if magic != MAGIC {
        return Err(HeaderError::BadMagic { found: magic });
    }
    let version = get_u32(bytes, field::VERSION);
    if version != LAYOUT_VERSION {
        return Err(HeaderError::VersionMismatch { found: version, expected: LAYOUT_VERSION });
    }
    if init != INIT_READY {
        return Err(HeaderError::BadInit { value: init });
    }
    let header_size = get_u32(bytes, field::HEADER_SIZE);
    if header_size as usize != HEADER_SIZE {
        return Err(HeaderError::BadLayout(LayoutFault::HeaderSize { found: header_size }));
    }
    if let Some(i) = bytes[field::RESERVED..].iter().position(|&b| b != 0) {
        let offset = field::RESERVED + i;
        return Err(HeaderError::BadLayout(LayoutFault::Reserved { offset }));
    }
    let raw_kind = get_u32(bytes, field::KIND);
    let kind = SegmentKind::from_raw(raw_kind).ok_or(HeaderError::UnknownKind { raw: raw_kind })?;
    let total_size = get_u64(bytes, field::TOTAL_SIZE);
    if total_size != mapping_len {
        return Err(HeaderError::SizeMismatch { header: total_size, mapping: mapping_len });
    }
    let payload_offset = get_u64(bytes, field::PAYLOAD_OFFSET);
    if payload_offset < HEADER_SIZE as u64 || payload_offset % PAYLOAD_ALIGN != 0 {
        return Err(HeaderError::BadLayout(LayoutFault::PayloadOffset { offset: payload_offset }));
    }
    let payload_size = get_u64(bytes, field::PAYLOAD_SIZE);
    if payload_size == 0 {
        return Err(HeaderError::BadLayout(LayoutFault::EmptyPayload));
    }
    match payload_offset.checked_add(payload_size) {
        Some(end) if end <= total_size => {}
        _ => {
            let fault = LayoutFault::PayloadBounds {
                offset: payload_offset,
                size: payload_size,
                total: total_size,
            };
            return Err(HeaderError::BadLayout(fault));
        }
    }
    Ok(SegmentInfo {
        kind,
        total_size,
        payload_offset,
        payload_size,
        fingerprint: get_u64(bytes, field::FINGERPRINT),
        creator_pid: get_u32(bytes, field::CREATOR_PID),
        creator_uid: get_u32(bytes, field::CREATOR_UID),
    })
}

/// Writes the header for `info` at the start of `region`, then publishes it.
///
/// # Safety
///
/// No thread of this process may access the first [`HEADER_SIZE`] bytes of `region`
/// while this runs, except through the `init` word.
pub(crate) unsafe fn write_header<R: Region>(
    region: &R,
    info: &SegmentInfo,
) -> Result<(), HeaderError> {
    validate_header(&encode_header(info, INIT_READY), region.len() as u64)?;
    let header = region.base().cast::<SegmentHeader>().as_ptr();
    // SAFETY: the region is writable and at least HEADER_SIZE bytes (validated above), its
    // base is REGION_ALIGN-aligned, and the caller excludes other in-process accesses.
    unsafe { header.write(SegmentHeader::new(info)) };
    // SYNC: segment initialised
    init_word(region).store(INIT_READY, Ordering::Release);
    Ok(())
}

/// Validates the header at the start of `region`: checks its length first, loads `init`
/// (Acquire), then copies the header out once and validates the copy.
pub(crate) fn read_header<R: Region>(region: &R) -> Result<SegmentInfo, HeaderError> {
    let len = region.len() as u64;
    if len < HEADER_SIZE as u64 {
        return Err(HeaderError::TooSmall { len });
    }
    // SYNC: segment initialised
    let init = init_word(region).load(Ordering::Acquire);
    let mut bytes = copy_out(region.base());
    // Judge the init value that was loaded with Acquire, not a later re-read.
    put_u32(&mut bytes, field::INIT, init);
    validate_header(&bytes, len)
}

/// The `init` word of a region of at least [`HEADER_SIZE`] bytes.
fn init_word<R: Region>(region: &R) -> &AtomicU32 {
    let p = region.base().as_ptr().wrapping_add(field::INIT).cast::<AtomicU32>();
    // SAFETY: callers checked len >= HEADER_SIZE; base is REGION_ALIGN-aligned so offset 12
    // is 4-aligned; the region outlives the borrow and atomics tolerate other writers.
    unsafe { &*p }
}

/// Copies the header bytes out with volatile loads (another process may write them).
fn copy_out(base: NonNull<u8>) -> [u8; HEADER_SIZE] {
    let mut out = [0u8; HEADER_SIZE];
    for (i, b) in out.iter_mut().enumerate() {
        let p = base.as_ptr().wrapping_add(i);
        // SAFETY: callers checked that the region holds at least HEADER_SIZE bytes.
        *b = unsafe { p.read_volatile() };
    }
    out
}

fn get_u32(b: &[u8; HEADER_SIZE], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn get_u64(b: &[u8; HEADER_SIZE], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(w)
}

fn put_u32(b: &mut [u8; HEADER_SIZE], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(b: &mut [u8; HEADER_SIZE], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::region::HeapRegion;

    fn info(total: u64) -> SegmentInfo {
        SegmentInfo {
            kind: SegmentKind::MpscRing,
            total_size: total,
            payload_offset: PAYLOAD_ALIGN,
            payload_size: total - PAYLOAD_ALIGN,
            fingerprint: 0xfeed_beef,
            creator_pid: 42,
            creator_uid: 1000,
        }
    }

    #[test]
    fn written_header_reads_back_and_matches_encoding() {
        let region = HeapRegion::new(8192);
        assert_eq!(read_header(&region), Err(HeaderError::NotInitialised));
        let i = info(8192);
        // SAFETY: the region is private to this test.
        unsafe { write_header(&region, &i) }.unwrap();
        assert_eq!(read_header(&region), Ok(i));
        assert_eq!(copy_out(region.base()), encode_header(&i, INIT_READY));
    }

    #[test]
    fn write_refuses_a_header_that_does_not_fit_the_region() {
        let region = HeapRegion::new(4096);
        // SAFETY: the region is private to this test.
        let e = unsafe { write_header(&region, &info(8192)) }.unwrap_err();
        assert_eq!(e, HeaderError::SizeMismatch { header: 8192, mapping: 4096 });
        assert_eq!(read_header(&region), Err(HeaderError::NotInitialised));
    }

    #[test]
    fn kinds_round_trip_and_reserved_values_are_unknown() {
        for k in [SegmentKind::SpscRing, SegmentKind::MpscRing, SegmentKind::Broadcast] {
            assert_eq!(SegmentKind::from_raw(k.raw()), Some(k));
        }
        assert_eq!(SegmentKind::from_raw(0x8000_0007), Some(SegmentKind::Other(0x8000_0007)));
        assert_eq!(SegmentKind::from_raw(0), None);
        assert_eq!(SegmentKind::from_raw(4), None);
        assert_eq!(SegmentKind::from_raw(0x7fff_ffff), None);
    }
}
