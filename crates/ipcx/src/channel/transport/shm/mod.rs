//! `shm`: two SPSC rings and four futex doorbells in a sealed memfd.
//!
//! # Layout
//!
//! The listener's side creates one memfd per connection (sealed against shrinking and
//! growing), laid out as an ipcx-shm segment: the segment header (kind "CHNL", a fingerprint
//! carrying log2 of the ring capacity) in the first page, then the payload:
//!
//! ```text
//! 0              ring down (listener → connector): SPSC control block + capacity bytes
//! span           ring up (connector → listener)
//! 2·span         doorbell "data down": rung by the listener after a send, the connector waits
//! 2·span + 128   doorbell "data up"
//! 2·span + 256   doorbell "space down": rung by the connector after a release when the
//!                listener waits for room in ring down
//! 2·span + 384   doorbell "space up"
//! ```
//!
//! Ring capacity: the next power of two ≥ 16 records of the largest frame (record header
//! and padding included), at least 64 KiB and at most 64 MiB, but always large enough for one largest
//! frame (a ring carries payloads up to half its capacity). With the default 64 KiB messages
//! each ring is 2 MiB.
//!
//! # Lifecycle
//!
//! The listener's side builds the segment, sends the memfd over the rendezvous socket with
//! the setup message and closes its fd; the connector checks the seals, maps the expected
//! length only, validates the header (kind, fingerprint, sizes against its own `max_frame`),
//! the rings' control blocks and the doorbells (a forged or short segment is a
//! [`ConnectError::Handshake`], never a panic), and confirms. The memory lives while either
//! side maps it; nothing is ever left in `/dev/shm` or elsewhere.
//!
//! # Send and receive
//!
//! Send: `claim`, the frame's parts copied in place, `commit`, then the data doorbell's
//! `ring` (a fence and a load: no syscall while the receiver is not parked). Receive: `peek`,
//! the callback gets the record's bytes in place (zero copy), `release`. Neither allocates.
//! Each record is padded to whole 64-byte cache lines (PROTOCOL §8.2), so it starts on a
//! line and the headers a receiver reads first never cost a second cache miss (measured: a
//! 64-byte rpc call's one-way time went from ~320 to ~300 ns).
//!
//! # Waits
//!
//! An empty ring: the receive spins for `spin` (the builder's setting; zero parks at once),
//! then parks on the data doorbell in slices of [`PEER_CHECK_INTERVAL`]; between slices it
//! checks the rendezvous socket. A full ring: the send parks on the space doorbell in slices
//! of 1 ms, and checks the rendezvous socket every [`PEER_CHECK_INTERVAL`]. The receiver
//! rings the space doorbell only when it sees a waiter announced, without a fence (a fence
//! would cost every receive): a waiter announcing just as the last record is released can be
//! missed, and then notices the room at the end of its 1 ms slice.
//!
//! # Peer death
//!
//! Dropping a link closes the doorbells the peer waits on (its data doorbell, its space
//! doorbell): a parked receive drains what is left (a `Close` frame, if the channel sent one)
//! and then reports the peer gone at once; a parked send reports it too. A peer that dies
//! without dropping (SIGKILL) closes the rendezvous socket: noticed within
//! [`PEER_CHECK_INTERVAL`].
//!
//! # Limits
//!
//! Frames up to [`LIMIT`] (16 MiB, header included). Each connection reserves two rings of
//! memory up front (4 MiB with the default message size, 128 MiB at the limit). The peer
//! maps the same memory and may scribble on it: positions and record headers are validated
//! (corruption is [`LinkError::Broken`](crate::channel::link::LinkError::Broken)), but
//! payload bytes can change while the receiver looks at them.
//!
//! [`PEER_CHECK_INTERVAL`]: crate::channel::link::PEER_CHECK_INTERVAL

mod layout;
mod link;

use std::os::fd::AsFd;
use std::sync::Arc;

use ipcx_shm::ring::spsc;
use ipcx_shm::segment::PAYLOAD_ALIGN;
use ipcx_shm::{Doorbell, SharedMemory};
use ipcx_sys::mapping::{Access, MapError, MapOptions};
use ipcx_sys::memfd::{Memfd, Seals, MAX_NAME_LEN};
use ipcx_sys::uds::UdsStream;

use super::control::{recv_ready, recv_setup, send_ready, send_setup};
use super::{Link, Setup};
use crate::channel::error::ConnectError;
use layout::{handshake, Dir, Layout};
pub(crate) use link::{Plain, ShmLink};

/// The largest frame (header and payload) `shm` carries: 16 MiB.
pub(crate) const LIMIT: usize = 16 << 20;

/// The payload of an `shm` setup message (the memfd travels with it): the version of the
/// layout and ring protocol. `shm2` (rings whose consumer waited on the write position) and
/// `shm1` (records not padded to cache lines) are refused.
const SETUP_TAG: &[u8] = b"shm3";

/// Seals the connector requires before it maps the memfd: its size cannot change.
const REQUIRED_SEALS: Seals = Seals::FIXED_SIZE;

/// Largest frame on this machine.
pub(crate) fn limit() -> usize {
    LIMIT
}

/// The layout for `setup`, or the error saying its frames are too large.
fn layout(setup: &Setup<'_>) -> Result<Layout, ConnectError> {
    if setup.max_frame > LIMIT {
        return Err(ConnectError::TooLarge {
            requested: setup.max_frame,
            limit: LIMIT,
            transport: crate::channel::Transport::Shm,
            hint: "ask for smaller messages",
        });
    }
    Ok(Layout::new(setup.max_frame))
}

/// Placing a ring or doorbell in our own segment failed (a bug in the layout).
fn place(e: impl std::error::Error + Send + Sync + 'static) -> ConnectError {
    ConnectError::os("laying out the shm segment", e)
}

/// Listener side: creates the segment, sends it, waits for the connector.
pub(crate) fn accept(ctl: UdsStream, setup: &Setup<'_>) -> Result<Link, ConnectError> {
    let layout = layout(setup)?;
    let mut label = setup.namespace.object_name(&format!("{}.shm", setup.name));
    if label.len() > MAX_NAME_LEN {
        label = "ipcx.shm".to_owned();
    }
    let memfd = Memfd::create(&label, layout.total_size())
        .map_err(|e| ConnectError::os("creating the shm memfd", e))?;
    memfd
        .add_seals(REQUIRED_SEALS | Seals::SEAL)
        .map_err(|e| ConnectError::os("sealing the shm memfd", e))?;
    // Memfd::create reserved the pages already.
    let mapping = memfd
        .map_with(MapOptions::new(Access::ReadWrite).reserve(false))
        .map_err(|e| ConnectError::os("mapping the shm memfd", e))?;
    let region = Arc::new(
        SharedMemory::new(mapping).map_err(|e| ConnectError::os("mapping the shm memfd", e))?,
    );
    layout.write_header(&region)?;
    let base = PAYLOAD_ALIGN as usize;
    for dir in [Dir::Down, Dir::Up] {
        spsc::init(&region, base + layout.ring(dir), layout.capacity).map_err(place)?;
        for off in [layout.data_bell(dir), layout.space_bell(dir)] {
            Doorbell::init_in(Arc::clone(&region), base + off).map_err(place)?;
        }
    }
    let link = ShmLink::attach(&region, base, layout, Dir::Down, ctl, setup.spin, setup.max_frame)?;
    send_setup(link.ctl(), SETUP_TAG, &[memfd.as_fd()])?;
    drop(memfd);
    recv_ready(link.ctl(), setup.deadline)?;
    Ok(Link::Shm(link))
}

/// Connector side: validates and maps the listener's segment, confirms.
pub(crate) fn connect(ctl: UdsStream, setup: &Setup<'_>) -> Result<Link, ConnectError> {
    let layout = layout(setup)?;
    let (payload, fds) = recv_setup(&ctl, 1, setup.deadline)?;
    let [fd]: [_; 1] = fds.try_into().map_err(|fds: Vec<_>| {
        ConnectError::Handshake(format!("shm setup carried {} fds, not 1", fds.len()).into())
    })?;
    if payload != SETUP_TAG {
        return Err(ConnectError::Handshake(
            "shm setup payload is not \"shm3\" (a peer of another ipcx version?)".into(),
        ));
    }
    let memfd = Memfd::from_received(fd, REQUIRED_SEALS).map_err(handshake)?;
    // Only the expected length is mapped: a larger memfd costs nothing, a smaller one fails.
    let mapping = memfd
        .map_with(MapOptions::new(Access::ReadWrite).length(layout.total_size()))
        .map_err(|e| match e {
            e @ (MapError::Empty
            | MapError::TooSmall { .. }
            | MapError::TooLarge { .. }
            | MapError::FdAccess(_)
            | MapError::Sealed(_)) => handshake(e),
            e => ConnectError::os("mapping the shm memfd", e),
        })?;
    drop(memfd);
    let region = Arc::new(
        SharedMemory::new(mapping).map_err(|e| ConnectError::os("mapping the shm memfd", e))?,
    );
    layout.check_header(&region)?;
    let base = PAYLOAD_ALIGN as usize;
    let link = ShmLink::attach(&region, base, layout, Dir::Up, ctl, setup.spin, setup.max_frame)?;
    send_ready(link.ctl())?;
    Ok(Link::Shm(link))
}
