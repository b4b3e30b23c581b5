//! Read-only inspection of a pub/sub service from any process: its publishers, their
//! liveness, their rings' counters and each attached subscriber's lag (what `ipcx inspect`
//! prints).
//!
//! Inspection joins nothing and writes nothing: it reads the descriptor and the publisher
//! records, maps each publisher's segment (ipcx-shm maps segments read-write, but only
//! loads are made) and reads the counters with
//! [`broadcast::stats`](ipcx_shm::ring::broadcast::stats) and the doorbells' stats. It runs
//! no dead-node cleanup. Everything read comes from other processes and is validated the
//! way an attaching reader validates it: a corrupt segment is reported as that publisher's
//! [`ReadError`], never a panic. The counters are a snapshot of values that keep moving.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use ipcx_shm::doorbell::{AttachError as BellAttachError, DoorbellStats};
use ipcx_shm::ring::broadcast::{self, AttachError as RingAttachError};
use ipcx_shm::segment::OpenError as SegOpenError;
use ipcx_shm::Doorbell;
use ipcx_sys::liveness::{probe, Liveness};
use thiserror::Error;

use super::layout::{self, PublisherRecord, BELL_PROPERTY, RING, SPACE_BELL};
use super::Policy;
use crate::node::{Layout, NodeId};
use crate::service::{self, OpenError, Pattern, ServiceDescriptor};
use crate::Namespace;

/// What [`inspect`] found of a pub/sub service.
#[derive(Debug, Clone)]
pub struct PubSubInfo {
    /// The service's descriptor.
    pub descriptor: ServiceDescriptor,
    /// The service bell's counters (`parks`: subscribers that slept waiting for a message;
    /// `wakeups`: wake syscalls publishers made for them), or why they could not be read.
    pub bell: Result<DoorbellStats, ReadError>,
    /// Every publisher with a readable record, sorted by record name.
    pub publishers: Vec<PublisherInfo>,
}

impl PubSubInfo {
    /// Subscribers attached to at least one live publisher's ring: the largest count of
    /// joined readers over the live publishers (a subscriber attaches to every publisher).
    pub fn subscribers(&self) -> usize {
        self.publishers
            .iter()
            .filter(|p| p.alive)
            .filter_map(|p| p.ring.as_ref().ok())
            .map(|r| r.subscribers.len())
            .max()
            .unwrap_or(0)
    }
}

/// One publisher of a pub/sub service.
#[derive(Debug, Clone)]
pub struct PublisherInfo {
    /// Its node.
    pub node: NodeId,
    /// Its process id, as its record says.
    pub pid: u32,
    /// Whether its node's liveness token is held.
    pub alive: bool,
    /// Its shared-memory segment.
    pub segment: String,
    /// Its ring's counters, or why they could not be read (gone, corrupt).
    pub ring: Result<RingInfo, ReadError>,
}

/// The counters of one publisher's ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingInfo {
    /// The ring's back-pressure policy.
    pub policy: Policy,
    /// Data capacity in bytes.
    pub capacity: u64,
    /// Messages published.
    pub published: u64,
    /// Sends that found the ring full (a live subscriber had not read the space).
    pub full: u64,
    /// Messages overwritten (drop-oldest), read or not.
    pub overwritten: u64,
    /// Messages subscribers missed: the sum of their `Lagged(n)`.
    pub dropped: u64,
    /// Reader slots freed because their subscriber had died.
    pub reclaimed: u64,
    /// The publisher's space doorbell: `parks` are its waits for room in the kernel,
    /// `wakeups` the wake syscalls subscribers made for it.
    pub space: DoorbellStats,
    /// The subscribers attached to this ring, by slot.
    pub subscribers: Vec<SubscriberInfo>,
}

/// One subscriber attached to a publisher's ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberInfo {
    /// Its reader slot.
    pub slot: u32,
    /// Its process id.
    pub pid: u32,
    /// Still joining (its position is not published yet).
    pub joining: bool,
    /// Messages it has read from this ring.
    pub consumed: u64,
    /// Messages it missed (drop-oldest).
    pub lagged: u64,
    /// Its lag: bytes between its position and the publisher's (0: caught up).
    pub lag_bytes: u64,
}

/// Inspecting a service failed.
#[derive(Debug, Error)]
pub enum InspectError {
    /// No descriptor of that name.
    #[error(
        "no service {name:?} in namespace {namespace:?}; `ipcx --namespace {namespace} ls` lists \
         what there is"
    )]
    NotFound {
        /// The service name.
        name: String,
        /// The namespace.
        namespace: String,
    },
    /// The service is of another pattern.
    #[error("service {name:?} is a {pattern} service, not pubsub")]
    NotPubSub {
        /// The service name.
        name: String,
        /// Its pattern.
        pattern: Pattern,
    },
    /// The descriptor cannot be read (permissions, corrupt, newer format).
    #[error("cannot read the descriptor of service {name:?}")]
    Descriptor {
        /// The service name.
        name: String,
        /// Why.
        #[source]
        source: OpenError,
    },
    /// The publishers' directory cannot be listed.
    #[error("cannot list the publishers in {path:?}; check its owner and mode")]
    List {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A publisher's segment or the service's bell could not be read.
#[derive(Debug, Clone, Error)]
pub enum ReadError {
    /// The descriptor names no bell (the service was not made by an ipcx publisher).
    #[error("the descriptor names no bell")]
    NoBell,
    /// The segment cannot be opened (gone since its record was read, permissions, a bad
    /// header).
    #[error("cannot open segment {name:?}: {source}")]
    Open {
        /// The segment.
        name: String,
        /// Why.
        #[source]
        source: Arc<SegOpenError>,
    },
    /// The segment holds no valid ring.
    #[error("segment {name:?} holds no valid ring: {source}")]
    Ring {
        /// The segment.
        name: String,
        /// Why.
        #[source]
        source: Arc<RingAttachError>,
    },
    /// The segment holds no valid doorbell.
    #[error("segment {name:?} holds no valid doorbell: {source}")]
    Bell {
        /// The segment.
        name: String,
        /// Why.
        #[source]
        source: Arc<BellAttachError>,
    },
}

/// Reads what pub/sub service `name` of `ns` looks like now, without joining it or
/// disturbing it (see the [module docs](self)).
pub fn inspect(ns: &Namespace, name: &str) -> Result<PubSubInfo, InspectError> {
    let layout = Layout::of(ns);
    let descriptor = service::read_descriptor(&layout.service(name)).map_err(|e| match e {
        OpenError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
            InspectError::NotFound { name: name.to_owned(), namespace: ns.name().to_owned() }
        }
        source => InspectError::Descriptor { name: name.to_owned(), source },
    })?;
    if descriptor.pattern != Pattern::PubSub {
        return Err(InspectError::NotPubSub { name: name.to_owned(), pattern: descriptor.pattern });
    }
    let bell = match descriptor.properties.get(BELL_PROPERTY) {
        Some(bell) => read_bell(bell),
        None => Err(ReadError::NoBell),
    };
    let dir = layout::pubs_dir(&layout, name);
    let files = layout::list_records(&dir)
        .map_err(|source| InspectError::List { path: dir.clone(), source })?;
    let publishers = files
        .iter()
        .filter_map(|file| PublisherRecord::read(&dir.join(file)))
        .map(|rec| PublisherInfo {
            alive: matches!(probe(layout.token(&rec.node)), Ok(Liveness::Alive)),
            ring: read_ring(&rec.segment),
            node: rec.node,
            pid: rec.pid,
            segment: rec.segment,
        })
        .collect();
    Ok(PubSubInfo { descriptor, bell, publishers })
}

/// The counters of the ring and space doorbell in publisher segment `name`.
fn read_ring(name: &str) -> Result<RingInfo, ReadError> {
    let seg = layout::open_pub_segment(name)
        .map_err(|e| ReadError::Open { name: name.to_owned(), source: Arc::new(e) })?;
    let base = seg.payload_offset();
    let space = Doorbell::attach(Arc::clone(seg.region()), base + SPACE_BELL)
        .map_err(|e| ReadError::Bell { name: name.to_owned(), source: Arc::new(e) })?;
    let stats = broadcast::stats(seg.region(), base + RING)
        .map_err(|e| ReadError::Ring { name: name.to_owned(), source: Arc::new(e) })?;
    let policy = match stats.policy {
        broadcast::Policy::Block => Policy::Block,
        broadcast::Policy::DropOldest => Policy::DropOldest,
        broadcast::Policy::Fail => Policy::Fail,
    };
    let subscribers = stats
        .readers
        .iter()
        .map(|r| SubscriberInfo {
            slot: r.slot,
            pid: r.pid,
            joining: r.joining,
            consumed: r.consumed,
            lagged: r.lagged,
            lag_bytes: r.behind,
        })
        .collect();
    Ok(RingInfo {
        policy,
        capacity: stats.capacity,
        published: stats.published,
        full: stats.full,
        overwritten: stats.overwritten,
        dropped: stats.dropped,
        reclaimed: stats.reclaimed,
        space: space.stats(),
        subscribers,
    })
}

/// The counters of the service bell in segment `name`.
fn read_bell(name: &str) -> Result<DoorbellStats, ReadError> {
    let seg = layout::open_bell_segment(name)
        .map_err(|e| ReadError::Open { name: name.to_owned(), source: Arc::new(e) })?;
    let bell = Doorbell::attach(Arc::clone(seg.region()), seg.payload_offset())
        .map_err(|e| ReadError::Bell { name: name.to_owned(), source: Arc::new(e) })?;
    Ok(bell.stats())
}
