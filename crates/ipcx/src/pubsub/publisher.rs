//! [`Publisher`]: the writing end of one ring of a pub/sub service.

use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipcx_shm::ring::broadcast::{self, Claim, Writer};
use ipcx_shm::ring::ClaimError;
use ipcx_shm::{Doorbell, Segment, WaitError, WaitPolicy};

use super::layout::{self, PublisherRecord, Region, RING};
use super::{
    CreateError, LoanError, Policy, PubSubConfig, SendError, MAX_HISTORY, MAX_SUBSCRIBERS,
};
use crate::contract::Message;
use crate::node::{self, Node, Resource};
use crate::service::{Pattern, Service};
use crate::Transport;

/// Longest park of a send waiting for room: bounds the delay of a wake-up a subscriber's
/// fence-free check can miss.
const ROOM_SLICE: Duration = Duration::from_millis(1);

/// How long a send may wait.
#[derive(Debug, Clone, Copy)]
enum Wait {
    Now,
    Until(Instant),
    Forever,
}

impl Wait {
    fn after(timeout: Duration) -> Wait {
        Instant::now().checked_add(timeout).map_or(Wait::Forever, Wait::Until)
    }

    /// The next slice of at most `max`, or `None` once the wait is over.
    fn slice(self, max: Duration) -> Option<Duration> {
        match self {
            Wait::Now => None,
            Wait::Forever => Some(max),
            Wait::Until(d) => {
                let left = d.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(max))
            }
        }
    }
}

/// One publisher of a service: its own ring, which every subscriber of the service reads.
/// Dropping it removes its segment and record; subscribers read what is left, then see
/// [`RecvError::PublisherGone`](super::RecvError::PublisherGone).
pub struct Publisher<T> {
    writer: Writer<Region>,
    /// Waited on while the ring is full; closed when we leave.
    space: Doorbell<Region>,
    /// The service's bell, rung after each message.
    bell: Doorbell<Region>,
    /// Our segment (its creator handle: unlinks on drop).
    _segment: Segment,
    /// The bell's segment, if we own the service (then we unlink it on drop).
    bell_segment: Option<Segment>,
    record: PathBuf,
    policy: Policy,
    max_message: usize,
    buf: Vec<u8>,
    /// Last: removes the descriptor (if we own the service) after everything else.
    service: Service,
    _msg: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for Publisher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("service", &self.service.name())
            .field("policy", &self.policy)
            .field("max_message", &self.max_message)
            .finish_non_exhaustive()
    }
}

impl<T: Message> Publisher<T> {
    /// Creates a publisher of service `name` in `node`'s namespace, creating the service
    /// (owned by `node`) if no live node serves it yet. An existing service must carry the
    /// same contract and policy.
    pub fn create(node: &Node, name: &str, config: PubSubConfig) -> Result<Self, CreateError> {
        if config.history > MAX_HISTORY {
            return Err(CreateError::HistoryTooLarge { history: config.history, max: MAX_HISTORY });
        }
        let bad = || CreateError::BadConfig {
            capacity: config.capacity,
            max_message: config.max_message,
            max_subscribers: config.max_subscribers,
        };
        let capacity =
            layout::ring_capacity(config.capacity, config.max_message).ok_or_else(bad)?;
        if config.max_subscribers == 0 || config.max_subscribers > MAX_SUBSCRIBERS {
            return Err(bad());
        }
        let ns = node.namespace();
        let id = crate::node::random_u64();
        let our_bell = layout::bell_segment(ns, name, id);
        let service = Service::builder(name, Pattern::PubSub)
            .transport(Transport::Shm)
            .contract(T::contract()?)
            .capacity(config.capacity)
            .max_message(config.max_message as u64)
            .back_pressure(config.policy.name())
            .permissions(config.permissions)
            .property(layout::HISTORY_PROPERTY, config.history.to_string().as_str())
            .property(layout::BELL_PROPERTY, our_bell.as_str())
            .open_or_create(node)?;
        if service.descriptor().back_pressure != config.policy.name() {
            return Err(CreateError::Policy {
                service: name.to_owned(),
                ours: config.policy,
                theirs: service.descriptor().back_pressure.clone(),
            });
        }
        let theirs = service.descriptor().properties.get(layout::HISTORY_PROPERTY);
        if theirs.map(String::as_str) != Some(config.history.to_string().as_str()) {
            return Err(CreateError::History {
                service: name.to_owned(),
                ours: config.history,
                theirs: theirs.cloned().unwrap_or_default(),
            });
        }
        // The owner made the bell its descriptor names (ours); the others open that one.
        let (bell_segment, bell) = if service.is_owner() {
            node.register_resource(Resource::PosixShm { name: our_bell.clone() })?;
            let (seg, bell) = layout::create_bell(&our_bell, config.permissions)?;
            (Some(seg), bell)
        } else {
            let (_, bell) = layout::open_bell(service.descriptor(), Instant::now())
                .map_err(CreateError::Bell)?;
            (None, bell)
        };
        let seg_name = layout::pub_segment(ns, name, id);
        let ring = broadcast::Config {
            capacity,
            slots: config.max_subscribers,
            policy: config.policy.ring(),
            history: config.history,
        };
        // Registered before it exists, like the bell: a publisher killed between the two
        // steps leaves a resource the cleaner finds (or finds already gone), never an
        // object nobody knows of (the crash storm caught one).
        node.register_resource(Resource::PosixShm { name: seg_name.clone() })?;
        let (segment, space) = layout::create_pub_segment(&seg_name, ring, config.permissions)?;
        let writer = Writer::attach(Arc::clone(segment.region()), segment.payload_offset() + RING)
            .map_err(|e| CreateError::Layout(e.to_string()))?;

        let dir = layout::pubs_dir(node.layout(), name);
        let record = dir.join(format!("{}-{id:016x}.json", node.id()));
        let io = |source| CreateError::Io { path: record.clone(), source };
        node::ensure_subdir(&dir).map_err(io)?;
        // Whoever may open the segments may list the publishers: the directory gets the
        // read and search bits of the classes the service's mode admits.
        let mode = config.permissions.mode();
        let group = if mode & 0o060 != 0 { 0o050 } else { 0 };
        let others = if mode & 0o006 != 0 { 0o005 } else { 0 };
        let list = 0o700 | group | others;
        if list != 0o700 {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(list)).map_err(io)?;
            // And they may find the descriptor by name in `services/` (search only, no
            // listing: other services' descriptors keep their own modes).
            let services = &node.layout().services;
            let meta = std::fs::metadata(services).map_err(io)?;
            let search = meta.permissions().mode() & 0o777 | (list & 0o011);
            std::fs::set_permissions(services, std::fs::Permissions::from_mode(search))
                .map_err(io)?;
        }
        node.register_resource(Resource::Path { path: record.clone() })?;
        let json = serde_json::to_vec(&PublisherRecord::new(node.id().clone(), seg_name))
            .map_err(std::io::Error::other)
            .map_err(io)?;
        node::write_atomic(&record, &json, config.permissions.mode()).map_err(io)?;
        Ok(Publisher {
            writer,
            space,
            bell,
            _segment: segment,
            bell_segment,
            record,
            policy: config.policy,
            max_message: config.max_message,
            buf: Vec::new(),
            service,
            _msg: PhantomData,
        })
    }

    /// Encodes `msg` and publishes it; under `Block` waits as long as a live subscriber
    /// holds the space (dead ones are reclaimed).
    pub fn send(&mut self, msg: T) -> Result<(), SendError<T>> {
        self.send_typed(msg, Wait::Forever)
    }

    /// [`send`](Self::send), waiting at most `timeout` for room.
    pub fn send_timeout(&mut self, msg: T, timeout: Duration) -> Result<(), SendError<T>> {
        self.send_typed(msg, Wait::after(timeout))
    }

    /// [`send`](Self::send) without waiting: `Full` if there is no room now.
    pub fn try_send(&mut self, msg: T) -> Result<(), SendError<T>> {
        self.send_typed(msg, Wait::Now)
    }

    fn send_typed(&mut self, msg: T, wait: Wait) -> Result<(), SendError<T>> {
        self.buf.clear();
        if let Err(source) = crate::codec::encode(&msg, &mut self.buf) {
            return Err(SendError::Encode { msg, source });
        }
        let buf = std::mem::take(&mut self.buf);
        let sent = self.push(&buf[..], wait).map_err(|e| e.map(|_| ()));
        self.buf = buf;
        sent.map_err(|e| match e {
            SendError::Full(_) => SendError::Full(msg),
            SendError::TooLarge { len, max, .. } => SendError::TooLarge { msg, len, max },
            SendError::Encode { source, .. } => SendError::Encode { msg, source },
            SendError::Corrupt { source, .. } => SendError::Corrupt { msg, source },
        })
    }
}

impl<T> Publisher<T> {
    /// Publishes `bytes` as they are (they must be a valid encoding of `T` for typed
    /// subscribers); waits for room as [`send`](Self::send) does.
    pub fn send_bytes<B: AsRef<[u8]>>(&mut self, bytes: B) -> Result<(), SendError<B>> {
        self.push(bytes, Wait::Forever)
    }

    /// [`send_bytes`](Self::send_bytes), waiting at most `timeout` for room.
    pub fn send_bytes_timeout<B: AsRef<[u8]>>(
        &mut self,
        bytes: B,
        timeout: Duration,
    ) -> Result<(), SendError<B>> {
        self.push(bytes, Wait::after(timeout))
    }

    /// [`send_bytes`](Self::send_bytes) without waiting.
    pub fn try_send_bytes<B: AsRef<[u8]>>(&mut self, bytes: B) -> Result<(), SendError<B>> {
        self.push(bytes, Wait::Now)
    }

    /// Lends `len` bytes of the ring to write a message in place (zero copy); publish it
    /// with [`Loan::send`], or drop the loan to publish nothing. Waits for room as
    /// [`send`](Self::send) does. Within one process, prefer `send` under `DropOldest`:
    /// a subscriber a lap behind may still be copying these bytes (it discards the copy).
    pub fn loan(&mut self, len: usize) -> Result<Loan<'_>, LoanError> {
        self.loan_within(len, Wait::Forever)
    }

    /// [`loan`](Self::loan), waiting at most `timeout` for room.
    pub fn loan_timeout(&mut self, len: usize, timeout: Duration) -> Result<Loan<'_>, LoanError> {
        self.loan_within(len, Wait::after(timeout))
    }

    /// [`loan`](Self::loan) without waiting.
    pub fn try_loan(&mut self, len: usize) -> Result<Loan<'_>, LoanError> {
        self.loan_within(len, Wait::Now)
    }

    /// Subscribers attached to this publisher's ring right now.
    pub fn subscriber_count(&self) -> usize {
        self.writer.stats().readers.len()
    }

    /// Waits up to `timeout` until at least `n` subscribers are attached; returns whether
    /// they are.
    pub fn wait_for_subscribers(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Wait::after(timeout);
        loop {
            if self.subscriber_count() >= n {
                return true;
            }
            match deadline.slice(Duration::from_millis(2)) {
                Some(pause) => std::thread::sleep(pause),
                None => return false,
            }
        }
    }

    /// The ring's counters (published, full, overwritten, subscribers and their lag).
    pub fn stats(&self) -> broadcast::BroadcastStats {
        self.writer.stats()
    }

    /// The service this publisher publishes to.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// The policy of the service.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    fn push<B: AsRef<[u8]>>(&mut self, msg: B, wait: Wait) -> Result<(), SendError<B>> {
        let len = msg.as_ref().len();
        if len > self.max_message {
            return Err(SendError::TooLarge { msg, len, max: self.max_message });
        }
        let mut msg = msg;
        let mut first = true;
        loop {
            match self.writer.try_send(msg) {
                Ok(()) => {
                    ring(&self.bell);
                    return Ok(());
                }
                Err(broadcast::SendError::Full(m)) => {
                    msg = m;
                    if self.policy != Policy::Block || !self.wait_room(len, wait, first) {
                        return Err(SendError::Full(msg));
                    }
                    first = false;
                }
                Err(broadcast::SendError::TooLarge { msg, len, .. }) => {
                    return Err(SendError::TooLarge { msg, len, max: self.max_message })
                }
                Err(broadcast::SendError::Corrupt { msg, source }) => {
                    return Err(SendError::Corrupt { msg, source })
                }
            }
        }
    }

    fn loan_within(&mut self, len: usize, wait: Wait) -> Result<Loan<'_>, LoanError> {
        if len > self.max_message {
            return Err(LoanError::TooLarge { len, max: self.max_message });
        }
        let mut first = true;
        loop {
            // A claim dropped unused publishes nothing; the one kept below cannot be
            // refused: only readers change the room, and they only free it.
            match self.writer.claim(len) {
                Ok(_) => break,
                Err(ClaimError::Full) => {
                    if self.policy != Policy::Block || !self.wait_room(len, wait, first) {
                        return Err(LoanError::Full);
                    }
                    first = false;
                }
                Err(ClaimError::TooLarge { .. }) => {
                    return Err(LoanError::TooLarge { len, max: self.max_message })
                }
                Err(ClaimError::Corrupt(c)) => return Err(LoanError::Corrupt(c)),
            }
        }
        match self.writer.claim(len) {
            Ok(claim) => Ok(Loan { claim, bell: &self.bell }),
            Err(ClaimError::Full) => Err(LoanError::Full),
            Err(ClaimError::TooLarge { .. }) => {
                Err(LoanError::TooLarge { len, max: self.max_message })
            }
            Err(ClaimError::Corrupt(c)) => Err(LoanError::Corrupt(c)),
        }
    }

    /// Block: parks up to one slice on the space doorbell; `false` once `wait` is over.
    #[cold]
    fn wait_room(&mut self, len: usize, wait: Wait, first: bool) -> bool {
        let Some(slice) = wait.slice(ROOM_SLICE) else { return false };
        let policy = if first {
            WaitPolicy::spin_then_park(WaitPolicy::DEFAULT_SPIN)
        } else {
            WaitPolicy::park_only()
        };
        let Publisher { writer, space, .. } = self;
        // A full claim also reclaims dead subscribers' slots (at most every 10 ms).
        match space.wait_until(
            || !matches!(writer.claim(len), Err(ClaimError::Full)),
            policy,
            Some(slice),
        ) {
            Ok(()) | Err(WaitError::Timeout | WaitError::Closed) => true,
            Err(WaitError::Os(e)) => {
                tracing::warn!(error = %e, "waiting on the space doorbell failed; polling");
                std::thread::sleep(slice);
                true
            }
        }
    }
}

impl<T> Drop for Publisher<T> {
    fn drop(&mut self) {
        // Subscribers read what is left, then drop our ring.
        let _ = self.space.close();
        let _ = node::remove_file(&self.record);
        if let Some(dir) = self.record.parent() {
            let _ = std::fs::remove_dir(dir); // only if we were the last publisher
        }
        if let Some(seg) = self.bell_segment.take() {
            let _ = seg.remove();
        }
    }
}

/// Rings the service's bell: a fence and a load while no subscriber is parked.
#[inline]
fn ring(bell: &Doorbell<Region>) {
    if let Err(e) = bell.ring() {
        tracing::warn!(error = %e, "cannot wake subscribers; they notice within their wait slice");
    }
}

/// Room for one message in a publisher's ring, written in place; see [`Publisher::loan`].
pub struct Loan<'a> {
    claim: Claim<'a, Region>,
    bell: &'a Doorbell<Region>,
}

impl Loan<'_> {
    /// The message's bytes, in shared memory: fill them all.
    pub fn bytes(&mut self) -> &mut [u8] {
        self.claim.bytes()
    }

    /// Publishes the message to every subscriber and wakes those that wait.
    pub fn send(self) {
        self.claim.commit();
        ring(self.bell);
    }
}

impl std::fmt::Debug for Loan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loan").field("claim", &self.claim).finish()
    }
}
