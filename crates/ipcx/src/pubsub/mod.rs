//! Publish/subscribe over shared memory: many publishers and subscribers per service, zero
//! copy on both sides, a back-pressure policy per service.
//!
//! ```
//! use ipcx::pubsub::{PubSubConfig, Publisher, Subscriber};
//! use ipcx::{node::Node, Namespace};
//! use std::time::Duration;
//!
//! let ns = Namespace::new(&format!("doc-pubsub-{}", std::process::id())).unwrap();
//! let node = Node::builder().namespace(ns.clone()).create().unwrap();
//! let mut publisher =
//!     Publisher::<String>::create(&node, "news", PubSubConfig::default()).unwrap();
//! let mut subscriber = Subscriber::<String>::open(&ns, "news").unwrap();
//! publisher.send("hello".to_owned()).unwrap();
//! let sample = subscriber.recv_timeout(Duration::from_secs(5)).unwrap();
//! assert_eq!(*sample, "hello");
//! drop((subscriber, publisher, node));
//! # std::fs::remove_dir_all(ns.dir()).unwrap();
//! ```
//!
//! # Objects
//!
//! A service (descriptor pattern `pubsub`, transport `shm`, the message's contract) is
//! created by its first publisher through [`crate::service`]; later publishers open it and
//! must use the same contract and policy. Each publisher owns:
//!
//! - a POSIX shm segment `ipcx.<ns>.<service>.pub.<16 hex>` (kind `PSUB`):
//!
//!   ```text
//!   payload +0     doorbell "space": rung by subscribers after a release while the
//!                  publisher waits for room (Block); CLOSED by the publisher when it leaves
//!   payload +128   broadcast ring (ipcx_shm::ring::broadcast): one writer, N reader slots
//!   ```
//!
//! - a record `<nsdir>/services/<service>.pubs/<node-id>-<16 hex>.json` naming its node and
//!   segment (written after the ring is initialised, so a record always names a usable
//!   segment).
//!
//! One more segment per service, `ipcx.<ns>.<service>.bell.<16 hex>` (kind `PSBL`, one
//! doorbell), named in the descriptor's `bell` property, is shared by every publisher of
//! the service: each rings it after each message, and a subscriber parks on this one futex
//! whatever the number of publishers. The service's owner creates it right after the
//! descriptor; the others open it (waiting up to 2 s for it to appear). Its name is unique
//! to one instance of the service, so a late cleanup of a departed owner never removes its
//! successor's bell.
//!
//! Every segment and record is registered as a [`Resource`](crate::node::Resource) of the
//! publisher's node, so dead-node cleanup removes them if the process dies; a publisher
//! that is dropped removes its own at once; the bell goes with the service's owner.
//!
//! # Discovery
//!
//! A subscriber lists `<service>.pubs/` when it opens, then again at most every
//! [`RESCAN_INTERVAL`] (after each wait slice that timed out, and every 1024 messages while
//! busy), and attaches a reader slot to each new publisher's ring. A subscriber sees the
//! messages a publisher sends after the subscriber attached to it and, with
//! [`PubSubConfig::history`] = K, first up to the last K messages it sent before.
//!
//! # History
//!
//! With `history` = K (a property of the service, the same for every publisher) each
//! publisher's ring indexes its last K messages, and a subscriber attaching to it starts
//! at the oldest of them still in the ring
//! ([`Reader::attach_with_history`](ipcx_shm::ring::broadcast::Reader::attach_with_history)).
//! Under `Block` those messages cannot be overwritten before the subscriber has read them;
//! under `DropOldest` they can, and the subscriber then gets [`RecvError::Lagged`]. A
//! subscriber gets fewer when fewer were sent, when they do not fit in the ring
//! (`capacity`), or, rarely, when its join races the publisher's scan of its readers. A
//! subscriber whose slot was reclaimed by mistake and that re-attaches may see up to K
//! messages again.
//!
//! # Waits
//!
//! Send: `Block` claims room; while the slowest live subscriber holds it, the publisher
//! parks on its space doorbell in slices of 1 ms (a subscriber rings it after a release
//! only when it sees a waiter, without a fence, so a wake-up can be late by one slice).
//! Dead subscribers' slots are reclaimed by the ring (a check at most every 10 ms while
//! full), so a crashed subscriber never blocks a publisher for long. `DropOldest` and
//! `Fail` never wait. After each message the publisher rings the service bell: a fence
//! and a load, no syscall while no subscriber is parked.
//!
//! Receive: look at every attached ring (round robin), spin briefly, then park on the
//! service bell in slices of at most [`WAIT_SLICE`] (20 ms); between slices, rescan and
//! check the publishers' liveness.
//!
//! # Policies
//!
//! [`Policy::Block`] (default): no message is lost for a live subscriber.
//! [`Policy::DropOldest`]: the publisher overwrites; a subscriber that fell a lap behind
//! gets [`RecvError::Lagged`] with the number of messages it missed, then reads on.
//! [`Policy::Fail`]: a full ring makes `send` fail with the message handed back.
//!
//! # Publisher death
//!
//! A publisher that leaves closes its space doorbell; one that dies is noticed by a probe
//! of its node's liveness token (at most every [`WAIT_SLICE`] while waiting). Either way the
//! subscriber first reads what is left in the ring, then drops that ring and reports
//! [`RecvError::PublisherGone`] once.
//!
//! # Inspection
//!
//! [`inspect`] reads a service's publishers, their rings' counters and each subscriber's
//! lag from any process, without joining or disturbing anything (`ipcx inspect`).
//!
//! # Limits
//!
//! - History is per publisher and best effort (see [History](#history)); at most
//!   [`MAX_HISTORY`] messages.
//! - At most [`MAX_SUBSCRIBERS`] subscribers per publisher (reader slots).
//! - The service lives as long as the node that created it: when it leaves, other
//!   publishers keep serving the subscribers already attached, but new subscribers find
//!   no service until a publisher creates it again (and then a new bell: subscribers still
//!   parked on the old one notice new messages only at the end of their 20 ms slice).
//! - Payload bytes read in place come from another process: treat them as untrusted.

mod error;
mod inspect;
mod layout;
mod publisher;
mod subscriber;

use std::time::Duration;

pub use error::{CreateError, LoanError, OpenError, RecvError, SendError};
pub use inspect::{
    inspect, InspectError, PubSubInfo, PublisherInfo, ReadError, RingInfo, SubscriberInfo,
};
pub use publisher::{Loan, Publisher};
pub use subscriber::{Sample, Subscriber};

/// Most subscribers per publisher (reader slots of its ring).
pub const MAX_SUBSCRIBERS: u32 = ipcx_shm::ring::broadcast::MAX_SLOTS;

/// Largest [`PubSubConfig::history`].
pub const MAX_HISTORY: u32 = ipcx_shm::ring::broadcast::MAX_HISTORY;

/// Longest park of a subscriber between two looks at liveness and new publishers.
pub const WAIT_SLICE: Duration = Duration::from_millis(20);

/// Shortest time between two scans for new publishers.
pub const RESCAN_INTERVAL: Duration = Duration::from_millis(20);

/// What a publisher does when a subscriber has not read the space it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Wait for the slowest live subscriber (`try_send` fails with `Full`).
    #[default]
    Block,
    /// Overwrite the oldest messages; slow subscribers get [`RecvError::Lagged`].
    DropOldest,
    /// Never wait: `Full`, handing the message back.
    Fail,
}

impl Policy {
    /// The policy's name as descriptors and the CLI spell it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Block => "block",
            Policy::DropOldest => "drop-oldest",
            Policy::Fail => "fail",
        }
    }

    fn ring(self) -> ipcx_shm::ring::broadcast::Policy {
        use ipcx_shm::ring::broadcast::Policy as P;
        match self {
            Policy::Block => P::Block,
            Policy::DropOldest => P::DropOldest,
            Policy::Fail => P::Fail,
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Shape of a publisher's ring and the service's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PubSubConfig {
    /// Messages of `max_message` bytes the ring holds (rounded up so the ring's byte size is
    /// a power of two). Default 64.
    pub capacity: u64,
    /// Largest encoded message in bytes. Default 4096.
    pub max_message: usize,
    /// Back-pressure policy of the service. Default [`Policy::Block`].
    pub policy: Policy,
    /// Messages of each publisher's past a late subscriber reads first, `0..=`[`MAX_HISTORY`]
    /// (at most what the ring holds). Part of the service: every publisher must use the
    /// same value. Default 0.
    pub history: u32,
    /// Reader slots of the ring, `1..=`[`MAX_SUBSCRIBERS`]. Default 16.
    pub max_subscribers: u32,
    /// Mode of the service's descriptor, segments and publisher records (default `0o600`:
    /// only this user). Subscribers write their cursor into the ring, so admitting a group
    /// means `0o660` (the group of the creating process), others `0o666`; the namespace
    /// directory must also let them in (it is `0o700` by default, see [`crate::namespace`]).
    pub permissions: ipcx_sys::Permissions,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig {
            capacity: 64,
            max_message: 4096,
            policy: Policy::Block,
            history: 0,
            max_subscribers: 16,
            permissions: ipcx_sys::Permissions::OWNER_ONLY,
        }
    }
}
