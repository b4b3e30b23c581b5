//! Events: notify/listen with 64-bit event ids, and a [`WaitSet`] to wait on several
//! listeners (and any other fd) at once.
//!
//! An [`EventListener`] owns a unix datagram socket bound at `<nsdir>/<name>.event` (mode
//! 0600 unless told otherwise, whatever the umask); any process of the namespace's user opens
//! an [`EventNotifier`] on it and calls [`notify(id)`](EventNotifier::notify). On the wire
//! each notification is one datagram of exactly 8 bytes, the id in little-endian
//! (docs/PROTOCOL.md §12). The listener waits for the next id in a blocking
//! ([`wait`](EventListener::wait)), timeout ([`wait_timeout`](EventListener::wait_timeout))
//! or non-blocking ([`try_wait`](EventListener::try_wait)) form; its fd is pollable, which
//! is what [`WaitSet`] (epoll) uses.
//!
//! - **Order and coalescing**: the `wait` forms return every notification, one at a time,
//!   in the order they arrived. [`EventListener::drain`] and [`WaitSet::wait`] return what
//!   is pending per listener with identical ids merged (first arrival order kept): an id
//!   notified twice before the listener looked is seen once.
//! - **Back-pressure**: notifications queue in the listener's socket (a few hundred, see
//!   `net.unix.max_dgram_qlen`); when the queue is full, `notify` waits for room,
//!   `notify_timeout` gives up after its timeout and `try_notify` fails at once with
//!   [`NotifyError::Full`].
//! - **Hostile senders**: a datagram that is not exactly 8 bytes is consumed and reported as
//!   [`WaitError::Malformed`] by the `wait` forms (skipped and counted in
//!   [`EventListener::rejected`] by `drain` and the wait set); the listener keeps working.
//!   Only processes that may write the socket file can send at all.
//! - **Failure**: notifying a listener that exited or was killed fails at once with
//!   [`NotifyError::NoListener`], never hangs; a notifier reconnects by itself when a new
//!   listener binds the same name.
//! - **Lifecycle**: the listener unlinks its socket file on drop. Created with a
//!   [`Node`](crate::Node) ([`EventListener::create`] with `&node`), the file is also
//!   registered as the node's [`Resource`](crate::Resource) (removed by dead-node cleanup if
//!   the process dies) and a service descriptor with [`Pattern::Event`](crate::Pattern) and
//!   transport `uds-dgram` is published under the listener's name.
//!
//! ```no_run
//! use std::time::Duration;
//! use ipcx::event::{EventListener, EventNotifier, WaitSet};
//! use ipcx::Namespace;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ns = Namespace::new("demo")?;
//! // Process A
//! let a = EventListener::create(&ns, "a")?;
//! let b = EventListener::create(&ns, "b")?;
//! // Process B
//! EventNotifier::open(&ns, "b")?.notify(42)?;
//! // Process A
//! let mut set = WaitSet::new()?;
//! set.add(1, &a)?;
//! set.add(2, &b)?;
//! for (key, ids) in set.wait(Some(Duration::from_secs(1)))? {
//!     println!("listener {key}: {ids:?}");
//! }
//! # Ok(()) }
//! ```

mod error;
mod listener;
mod notifier;
mod waitset;

pub use error::{CreateError, NotifyError, OpenError, WaitError, WaitSetError};
pub use listener::{EventHome, EventListener, EventListenerBuilder};
pub use notifier::EventNotifier;
pub use waitset::WaitSet;

use std::path::PathBuf;

use crate::namespace::Namespace;

/// Size of one notification on the wire: the id as a little-endian `u64`.
pub const EVENT_LEN: usize = 8;

/// The transport name event services carry in their descriptor.
pub const EVENT_TRANSPORT: &str = "uds-dgram";

/// The socket file of event `name` in `ns`.
pub fn event_path(ns: &Namespace, name: &str) -> PathBuf {
    ns.dir().join(format!("{name}.event"))
}
