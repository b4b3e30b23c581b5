//! Versioned shared-memory segments: a POSIX shm object that starts with a
//! [`SegmentHeader`](crate::segment::SegmentHeader) saying what it holds, followed by a
//! payload where a ring (or another structure) is placed.
//!
//! ```text
//! 0                128              4096 (PAYLOAD_ALIGN)            total_size
//! | SegmentHeader  | zero           | payload (payload_size bytes)  |
//! ```
//!
//! [`Segment::create`] creates the object exclusively with an exact mode, sizes it, writes
//! the header and publishes it last (`init`, Release). [`Segment::open`] maps an existing
//! object, checks it is at least a header long, loads `init` (Acquire), copies the header
//! out once and validates every field against the mapping's real length: it refuses
//! uninitialised, foreign, other-version, other-kind and other-contract segments with
//! distinct [`HeaderError`](crate::segment::HeaderError)s.
//! [`Segment::open_with_timeout`] waits while the creator is still initialising.
//!
//! Lifecycle: the creator's handle unlinks the name on drop unless
//! [`persist`](Segment::persist)ed; openers do not unless asked
//! ([`remove_on_drop`](Segment::remove_on_drop)). Mappings handed out with
//! [`region`](Segment::region) stay valid after the segment handle is dropped.
//!
//! Limits: the header is validated once at open. A process with write access can still
//! rewrite it or shrink the object afterwards (see [`ipcx_sys::mapping`]); the structures
//! in the payload validate what they read on their own.

mod error;
pub mod header;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ipcx_sys::mapping::{Access, MapOptions};
use ipcx_sys::posix_shm::{PosixShm, UnlinkError};
use ipcx_sys::{CreateMode, Permissions};

use crate::region::{MappedRegion, SharedMemory};
pub use error::{CreateError, HeaderError, LayoutFault, OpenError};
pub use header::{
    encode_header, validate_header, SegmentHeader, SegmentInfo, SegmentKind, HEADER_SIZE,
    INIT_READY, LAYOUT_VERSION, MAGIC, PAYLOAD_ALIGN,
};

/// Longest pause between two attempts of [`Segment::open_with_timeout`].
const MAX_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// What to create: see [`Segment::create`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSpec {
    /// What the payload will hold.
    pub kind: SegmentKind,
    /// Bytes of payload (at least 1).
    pub payload_size: usize,
    /// Contract fingerprint openers must match.
    pub fingerprint: u64,
    /// Mode of the object, applied exactly (default `0o600`).
    pub permissions: Permissions,
}

impl SegmentSpec {
    /// A spec for `payload_size` bytes of `kind`, fingerprint 0, mode `0o600`.
    pub fn new(kind: SegmentKind, payload_size: usize) -> SegmentSpec {
        SegmentSpec { kind, payload_size, fingerprint: 0, permissions: Permissions::default() }
    }
}

/// What an opener requires of a segment's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expect {
    /// The kind the payload must hold.
    pub kind: SegmentKind,
    /// The contract fingerprint the creator must have written.
    pub fingerprint: u64,
}

impl Expect {
    /// Checks a validated header against this expectation.
    pub fn check(&self, info: &SegmentInfo) -> Result<(), HeaderError> {
        if info.kind != self.kind {
            return Err(HeaderError::WrongKind { found: info.kind, expected: self.kind });
        }
        if info.fingerprint != self.fingerprint {
            return Err(HeaderError::IncompatibleContract {
                found: info.fingerprint,
                expected: self.fingerprint,
            });
        }
        Ok(())
    }
}

/// A mapped, validated segment.
#[derive(Debug)]
pub struct Segment {
    name: String,
    /// The object's fd, kept so removal can check the name still refers to this object.
    shm: Option<PosixShm>,
    region: Arc<MappedRegion>,
    info: SegmentInfo,
    created: bool,
    remove_on_drop: bool,
}

impl Segment {
    /// Creates the POSIX shm object `name` (without a leading `/`) exclusively, with mode
    /// `spec.permissions`, sized for the header and `spec.payload_size` bytes, maps it
    /// read-write and publishes its header.
    pub fn create(name: &str, spec: &SegmentSpec) -> Result<Segment, CreateError> {
        let info = plan(spec)?;
        let total = info.total_size as usize; // plan() checked it fits isize
        let shm = PosixShm::builder(name)
            .create_mode(CreateMode::CreateExclusive)
            .permissions(spec.permissions)
            .size(total)
            .remove_on_drop(false)
            .open()?;
        match map_and_publish(&shm, &info) {
            Ok(region) => Ok(Segment {
                name: name.to_owned(),
                shm: Some(shm),
                region,
                info,
                created: true,
                remove_on_drop: true,
            }),
            Err(e) => {
                // Never leave a half-made segment behind.
                let _ = shm.remove();
                Err(e)
            }
        }
    }

    /// Opens the segment `name`, maps it read-write and validates its header against the
    /// mapping and `expect`. Does not wait: a segment still being created gives
    /// [`HeaderError::NotInitialised`] (see [`open_with_timeout`](Self::open_with_timeout)).
    pub fn open(name: &str, expect: Expect) -> Result<Segment, OpenError> {
        let shm = PosixShm::builder(name).create_mode(CreateMode::Open).open()?;
        let header_error = |error| OpenError::Header { name: shm.name().to_owned(), error };
        if shm.size() == 0 {
            // Created but not sized yet (or its creator died before sizing it).
            return Err(header_error(HeaderError::NotInitialised));
        }
        if shm.size() < HEADER_SIZE as u64 {
            return Err(header_error(HeaderError::TooSmall { len: shm.size() }));
        }
        let region = Arc::new(SharedMemory::new(shm.map(Access::ReadWrite)?)?);
        let info = header::read_header(&*region).map_err(header_error)?;
        expect.check(&info).map_err(header_error)?;
        Ok(Segment {
            name: name.to_owned(),
            shm: Some(shm),
            region,
            info,
            created: false,
            remove_on_drop: false,
        })
    }

    /// Like [`open`](Self::open), but while the segment is not initialised yet, retries
    /// with a short backoff for up to `timeout`, then fails with
    /// [`OpenError::InitTimeout`]. Every other error is returned at once.
    pub fn open_with_timeout(
        name: &str,
        expect: Expect,
        timeout: Duration,
    ) -> Result<Segment, OpenError> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(100);
        loop {
            match Segment::open(name, expect) {
                Err(OpenError::Header { name, error: HeaderError::NotInitialised }) => {
                    let waited = start.elapsed();
                    if waited >= timeout {
                        return Err(OpenError::InitTimeout { name, waited });
                    }
                    thread::sleep(pause.min(timeout - waited));
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
                other => return other,
            }
        }
    }

    /// The name the segment was created or opened with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The validated header.
    pub fn header(&self) -> SegmentInfo {
        self.info
    }

    /// What the payload holds.
    pub fn kind(&self) -> SegmentKind {
        self.info.kind
    }

    /// Whether this handle created the segment.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The whole mapping, header included. Place structures at
    /// [`payload_offset`](Self::payload_offset); clones of the `Arc` keep it mapped.
    pub fn region(&self) -> &Arc<MappedRegion> {
        &self.region
    }

    /// Offset of the payload in [`region`](Self::region).
    pub fn payload_offset(&self) -> usize {
        // Validated: payload_offset + payload_size <= total_size == the mapping's length.
        self.info.payload_offset as usize
    }

    /// Bytes of payload.
    pub fn payload_size(&self) -> usize {
        // As for payload_offset.
        self.info.payload_size as usize
    }

    /// Keeps the object after this handle is dropped (for a creator; an opener already
    /// does). Remove it later with [`remove`](Self::remove) or `ipcx clean`.
    pub fn persist(self) -> Segment {
        self.remove_on_drop(false)
    }

    /// Whether dropping this handle unlinks the name (default: only for the creator).
    pub fn remove_on_drop(mut self, remove: bool) -> Segment {
        self.remove_on_drop = remove;
        self
    }

    /// Unlinks the name now, if it still names this segment's object. Mappings (and
    /// clones of [`region`](Self::region)) stay valid.
    pub fn remove(mut self) -> Result<(), UnlinkError> {
        self.remove_on_drop = false;
        match self.shm.take() {
            Some(shm) => shm.remove(),
            None => Ok(()),
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let Some(shm) = self.shm.take() {
            if self.remove_on_drop {
                let _ = shm.remove();
            }
        }
    }
}

/// The header a new segment for `spec` gets.
fn plan(spec: &SegmentSpec) -> Result<SegmentInfo, CreateError> {
    if SegmentKind::from_raw(spec.kind.raw()) != Some(spec.kind) {
        return Err(CreateError::InvalidKind { raw: spec.kind.raw() });
    }
    if spec.payload_size == 0 {
        return Err(CreateError::EmptyPayload);
    }
    let total_size = PAYLOAD_ALIGN
        .checked_add(spec.payload_size as u64)
        .filter(|&t| t <= isize::MAX as u64)
        .ok_or(CreateError::TooLarge { payload_size: spec.payload_size })?;
    Ok(SegmentInfo {
        kind: spec.kind,
        total_size,
        payload_offset: PAYLOAD_ALIGN,
        payload_size: spec.payload_size as u64,
        fingerprint: spec.fingerprint,
        creator_pid: std::process::id(),
        creator_uid: ipcx_sys::process::current_uid(),
    })
}

/// Maps a freshly created object and publishes its header.
fn map_and_publish(shm: &PosixShm, info: &SegmentInfo) -> Result<Arc<MappedRegion>, CreateError> {
    // The object's pages were reserved when it was created.
    let mapping = shm.map_with(MapOptions::new(Access::ReadWrite).reserve(false))?;
    let region = SharedMemory::new(mapping)?;
    // SAFETY: the mapping is new and private to this call; other processes that opened the
    // object early only read it, and see `init` = 0 until the header is complete.
    unsafe { header::write_header(&region, info) }
        .map_err(|error| CreateError::Layout { name: shm.name().to_owned(), error })?;
    Ok(Arc::new(region))
}
