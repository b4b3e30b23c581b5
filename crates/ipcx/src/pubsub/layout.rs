//! Names, sizes and records of the pub/sub objects (see the module docs of
//! [`crate::pubsub`] for the picture).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipcx_shm::doorbell::DoorbellState;
use ipcx_shm::ring::{broadcast, max_payload, MAX_CAPACITY, MIN_CAPACITY};
use ipcx_shm::segment::OpenError as SegOpenError;
use ipcx_shm::{Doorbell, Expect, MappedRegion, Segment, SegmentKind, SegmentSpec};
use ipcx_sys::posix_shm;
use serde::{Deserialize, Serialize};

use crate::node::{Layout, NodeId};
use crate::service::ServiceDescriptor;
use crate::Namespace;

/// The region every pub/sub structure lives in.
pub(super) type Region = Arc<MappedRegion>;

/// A publisher's segment: "PSUB" with the top bit set (an application-defined kind).
const PUB_KIND: SegmentKind = SegmentKind::Other(0x8000_0000 | 0x5053_5542);
/// The service bell's segment: "PSBL".
const BELL_KIND: SegmentKind = SegmentKind::Other(0x8000_0000 | 0x5053_424c);
/// Fingerprint of this layout (bump the low byte on change).
const FINGERPRINT: u64 = 0x6970_6378_7073_0101;
/// Offset of the space doorbell in a publisher segment's payload.
pub(super) const SPACE_BELL: usize = 0;
/// Offset of the ring in a publisher segment's payload.
pub(super) const RING: usize = DoorbellState::SIZE;
/// Format of publisher records.
const RECORD_FORMAT: u32 = 1;
/// How long an opener waits for a segment another process is still creating.
const INIT_WAIT: Duration = Duration::from_secs(2);

/// Ring bytes for `capacity` messages of `max_message` bytes, or `None` if too large.
pub(super) fn ring_capacity(capacity: u64, max_message: usize) -> Option<u64> {
    let record = ipcx_shm::record::record_size(max_message as u64)?;
    let bytes = record.checked_mul(capacity.max(1))?.checked_next_power_of_two()?;
    let fits = record.checked_mul(2)?.checked_next_power_of_two()?;
    let cap = bytes.max(fits).max(MIN_CAPACITY.max(4096));
    (cap <= MAX_CAPACITY && max_payload(cap) >= max_message as u64).then_some(cap)
}

/// Name of a publisher's segment.
pub(super) fn pub_segment(ns: &Namespace, service: &str, id: u64) -> String {
    ns.object_name(&format!("{service}.pub.{id:016x}"))
}

/// Name of a service's bell segment: unique to one instance of the service, so that a
/// late cleanup of a departed owner never removes the bell of its successor.
pub(super) fn bell_segment(ns: &Namespace, service: &str, id: u64) -> String {
    ns.object_name(&format!("{service}.bell.{id:016x}"))
}

/// The descriptor property naming the service's bell segment.
pub(super) const BELL_PROPERTY: &str = "bell";

/// The descriptor property giving the messages a late subscriber gets from before it joined.
pub(super) const HISTORY_PROPERTY: &str = "history";

/// The history a service's descriptor asks for (0 if absent or unreadable; at most
/// [`broadcast::MAX_HISTORY`]).
pub(super) fn history_of(service: &ServiceDescriptor) -> u32 {
    let text = service.properties.get(HISTORY_PROPERTY);
    text.and_then(|t| t.parse::<u32>().ok()).unwrap_or(0).min(broadcast::MAX_HISTORY)
}

/// Directory of a service's publisher records.
pub(super) fn pubs_dir(layout: &Layout, service: &str) -> PathBuf {
    layout.services.join(format!("{service}.pubs"))
}

/// Creates a publisher segment: space doorbell, then an initialised ring.
pub(super) fn create_pub_segment(
    name: &str,
    ring: broadcast::Config,
    permissions: ipcx_sys::Permissions,
) -> Result<(Segment, Doorbell<Region>), crate::pubsub::CreateError> {
    use crate::pubsub::CreateError;
    let size = RING + broadcast::required_size(ring.capacity, ring.slots) as usize;
    let spec =
        SegmentSpec { fingerprint: FINGERPRINT, permissions, ..SegmentSpec::new(PUB_KIND, size) };
    let seg = Segment::create(name, &spec).map_err(CreateError::Segment)?;
    let base = seg.payload_offset();
    let region = Arc::clone(seg.region());
    let space = Doorbell::init_in(Arc::clone(&region), base + SPACE_BELL)
        .map_err(|e| CreateError::Layout(e.to_string()))?;
    broadcast::init(&region, base + RING, ring).map_err(|e| CreateError::Layout(e.to_string()))?;
    Ok((seg, space))
}

/// Opens a publisher's segment (already initialised: its record is written afterwards).
pub(super) fn open_pub_segment(name: &str) -> Result<Segment, SegOpenError> {
    Segment::open(name, Expect { kind: PUB_KIND, fingerprint: FINGERPRINT })
}

/// Opens the service's bell segment `name` without waiting (for inspection).
pub(super) fn open_bell_segment(name: &str) -> Result<Segment, SegOpenError> {
    Segment::open(name, Expect { kind: BELL_KIND, fingerprint: FINGERPRINT })
}

/// Creates the service's bell (by the service's owner, right after the descriptor).
pub(super) fn create_bell(
    name: &str,
    permissions: ipcx_sys::Permissions,
) -> Result<(Segment, Doorbell<Region>), crate::pubsub::CreateError> {
    use crate::pubsub::CreateError;
    let spec = SegmentSpec {
        fingerprint: FINGERPRINT,
        permissions,
        ..SegmentSpec::new(BELL_KIND, DoorbellState::SIZE)
    };
    let seg = Segment::create(name, &spec).map_err(CreateError::Segment)?;
    let bell = Doorbell::init_in(Arc::clone(seg.region()), seg.payload_offset())
        .map_err(|e| CreateError::Layout(e.to_string()))?;
    Ok((seg, bell))
}

/// Opens the bell `service` names, waiting (up to 2 s from `start`) while its owner has not
/// created or initialised it yet.
pub(super) fn open_bell(
    service: &ServiceDescriptor,
    start: Instant,
) -> Result<(Segment, Doorbell<Region>), BellError> {
    let name = service.properties.get(BELL_PROPERTY).ok_or(BellError::Unnamed)?;
    let mut pause = Duration::from_micros(100);
    loop {
        let expect = Expect { kind: BELL_KIND, fingerprint: FINGERPRINT };
        let err = match Segment::open(name, expect) {
            Ok(seg) => match Doorbell::attach(Arc::clone(seg.region()), seg.payload_offset()) {
                Ok(bell) => return Ok((seg, bell)),
                Err(ipcx_shm::doorbell::AttachError::NotInitialised { .. }) => None,
                Err(e) => return Err(BellError::Attach(e)),
            },
            Err(e) if e.is_not_initialised() || is_not_found_open(&e) => Some(e),
            Err(e) => return Err(BellError::Open(e)),
        };
        if start.elapsed() >= INIT_WAIT {
            return Err(match err {
                Some(e) => BellError::Open(e),
                None => {
                    BellError::Attach(ipcx_shm::doorbell::AttachError::NotInitialised { found: 0 })
                }
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// The service's bell could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BellError {
    /// The descriptor names no bell: the service was not made by an ipcx publisher.
    #[error("the service's descriptor has no \"bell\" property; it was not created by an ipcx publisher")]
    Unnamed,
    /// Opening its segment failed.
    #[error(transparent)]
    Open(SegOpenError),
    /// Its doorbell is unusable.
    #[error("the service's doorbell is unusable: {0}")]
    Attach(ipcx_shm::doorbell::AttachError),
}

fn is_not_found_open(e: &SegOpenError) -> bool {
    matches!(e, SegOpenError::Shm(posix_shm::OpenError::NotFound { .. }))
}

/// What a publisher's record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PublisherRecord {
    /// Format version.
    pub format: u32,
    /// The publisher's node: its liveness token says whether the publisher lives.
    pub node: NodeId,
    /// The publisher's segment.
    pub segment: String,
    /// The publisher's process id (for people).
    pub pid: u32,
}

impl PublisherRecord {
    pub(super) fn new(node: NodeId, segment: String) -> PublisherRecord {
        PublisherRecord { format: RECORD_FORMAT, node, segment, pid: std::process::id() }
    }

    /// Reads a record; `None` if it is gone, unreadable or from a newer format.
    pub(super) fn read(path: &Path) -> Option<PublisherRecord> {
        let bytes = std::fs::read(path).ok()?;
        let rec: PublisherRecord = serde_json::from_slice(&bytes).ok()?;
        (rec.format <= RECORD_FORMAT).then_some(rec)
    }
}

/// The record files of `dir` (names ending in `.json`), sorted; empty if `dir` is missing.
pub(super) fn list_records(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        if let Some(name) = name.to_str().filter(|n| n.ends_with(".json") && !n.starts_with('.')) {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_hold_the_asked_messages() {
        let cap = ring_capacity(64, 4096).unwrap();
        assert!(cap >= 64 * 4096);
        assert!(cap.is_power_of_two());
        assert_eq!(ring_capacity(1, 8).unwrap(), 4096);
        assert!(max_payload(ring_capacity(1, 100_000).unwrap()) >= 100_000);
        assert_eq!(ring_capacity(u64::MAX, 4096), None);
    }
}
