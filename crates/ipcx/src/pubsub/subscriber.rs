//! [`Subscriber`]: reads every publisher of a service, waiting on the service's bell.

use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipcx_shm::doorbell::FIRST_TURNS;
use ipcx_shm::ring::broadcast::{self, Reader};
use ipcx_shm::{Doorbell, WaitError, WaitPolicy};
use ipcx_sys::liveness::{probe, Liveness};

use super::layout::{self, PublisherRecord, Region, RING, SPACE_BELL};
use super::{OpenError, RecvError, RESCAN_INTERVAL, WAIT_SLICE};
use crate::channel::Deadline;
use crate::contract::Message;
use crate::node::{Layout, NodeId};
use crate::service::{Pattern, Service};
use crate::{Namespace, Transport};

/// Messages received while busy between two looks at the clock for a rescan.
const BUSY_SCAN_EVERY: u32 = 1024;

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample<T> {
    value: T,
}

impl<T> Sample<T> {
    /// The message.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> std::ops::Deref for Sample<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// One publisher's ring, as a subscriber reads it.
struct Attached {
    /// Its record's file name.
    file: String,
    node: NodeId,
    reader: Reader<Region>,
    /// Rung after a release when the publisher waits for room; closed when it leaves.
    space: Doorbell<Region>,
    /// The publisher left or died: drop the ring once it is empty.
    gone: bool,
    /// Messages missed that a wait's readiness check found, not reported yet.
    lagged: u64,
}

impl Attached {
    /// Whether a receive has something to do here: a message, an event or an error. A lag
    /// found on the way is kept for the receive to report.
    fn ready(&mut self) -> bool {
        match self.reader.peek() {
            Ok(Some(_)) => true,
            Ok(None) => self.gone || self.lagged > 0,
            Err(broadcast::RecvError::Lagged(n)) => {
                self.lagged += n;
                true
            }
            Err(_) => true,
        }
    }
}

/// A subscriber of a service: receives from every publisher of it, including those that
/// appear later (see the [module docs](super) for discovery and waits).
pub struct Subscriber<T> {
    layout: Layout,
    service: Service,
    dir: PathBuf,
    bell: Doorbell<Region>,
    pubs: Vec<Attached>,
    /// Where the round robin starts next.
    next: usize,
    next_scan: Instant,
    since_scan: u32,
    spin: Duration,
    /// Messages of each publisher's past to read first (the descriptor's `history`).
    history: u32,
    _msg: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("service", &self.service.name())
            .field("publishers", &self.pubs.len())
            .finish_non_exhaustive()
    }
}

impl<T: Message> Subscriber<T> {
    /// Opens service `name` of `ns` (for a node: `node.namespace()`), checking that it is a
    /// pub/sub service of `T`'s contract, and attaches to its publishers.
    pub fn open(ns: &Namespace, name: &str) -> Result<Self, OpenError> {
        let service = Service::builder(name, Pattern::PubSub)
            .transport(Transport::Shm)
            .contract(T::contract()?)
            .open(ns)?;
        let (_segment, bell) = layout::open_bell(service.descriptor(), Instant::now())
            .map_err(|source| OpenError::Bell { service: name.to_owned(), source })?;
        let layout = Layout::of(ns);
        let history = layout::history_of(service.descriptor());
        let mut sub = Subscriber {
            dir: layout::pubs_dir(&layout, name),
            layout,
            service,
            bell,
            pubs: Vec::new(),
            next: 0,
            next_scan: Instant::now(),
            since_scan: 0,
            spin: WaitPolicy::DEFAULT_SPIN,
            history,
            _msg: PhantomData,
        };
        sub.rescan();
        Ok(sub)
    }

    /// Waits for the next message (from any publisher) and decodes it.
    pub fn recv(&mut self) -> Result<Sample<T>, RecvError> {
        self.recv_within(Deadline::Never)
    }

    /// [`recv`](Self::recv), waiting at most `timeout`: [`RecvError::Timeout`] after.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Sample<T>, RecvError> {
        self.recv_within(Deadline::after(Some(timeout)))
    }

    /// The next message if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Result<Option<Sample<T>>, RecvError> {
        match self.recv_within(Deadline::Now) {
            Ok(s) => Ok(Some(s)),
            Err(RecvError::Timeout) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn recv_within(&mut self, deadline: Deadline) -> Result<Sample<T>, RecvError> {
        let (decoded, i) = self.wait_next(deadline, &mut |b| crate::codec::decode::<T>(b))?;
        decoded
            .map(|value| Sample { value })
            .map_err(|source| RecvError::Decode { publisher: self.pubs[i].node.clone(), source })
    }
}

impl<T> Subscriber<T> {
    /// Waits for the next message and hands its bytes, in shared memory, to `f` (zero
    /// copy). Under `DropOldest` the bytes may be overwritten while `f` reads them: then
    /// the result is discarded, and the next call reports [`RecvError::Lagged`]; so `f`
    /// may run for a message that is not delivered.
    pub fn recv_in_place<R>(&mut self, mut f: impl FnMut(&[u8]) -> R) -> Result<R, RecvError> {
        self.wait_next(Deadline::Never, &mut f).map(|(r, _)| r)
    }

    /// [`recv_in_place`](Self::recv_in_place), waiting at most `timeout`.
    pub fn recv_in_place_timeout<R>(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&[u8]) -> R,
    ) -> Result<R, RecvError> {
        self.wait_next(Deadline::after(Some(timeout)), &mut f).map(|(r, _)| r)
    }

    /// How long a receive spins before parking (default 5 µs; zero parks at once; a long
    /// spin gives busy-poll latency at the cost of a core).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Publishers attached right now.
    pub fn publisher_count(&self) -> usize {
        self.pubs.len()
    }

    /// Looks for new publishers now (also done every 20 ms while waiting).
    pub fn refresh(&mut self) {
        self.rescan();
    }

    /// The service.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// How a receive until `deadline` waits once the rings are empty: spin turns on the
    /// rings themselves, then the bell's policy.
    fn wait_plan(&self, deadline: Deadline) -> (u32, WaitPolicy) {
        let policy = if self.spin.is_zero() {
            WaitPolicy::park_only()
        } else {
            WaitPolicy::spin_then_park(self.spin)
        };
        match deadline {
            Deadline::Now => (0, policy),
            _ => policy.take_turns(FIRST_TURNS),
        }
    }

    /// Returns the next message through `f`, with the index of its publisher. Spins its
    /// first turns on the rings themselves (as a channel's receive on shm does; none for
    /// [`Deadline::Now`] or a subscriber that parks at once), so a message that arrives then
    /// is taken where it was seen; then waits on the bell.
    fn wait_next<R>(
        &mut self,
        deadline: Deadline,
        f: &mut impl FnMut(&[u8]) -> R,
    ) -> Result<(R, usize), RecvError> {
        // Worked out once the first look finds nothing (not on a receive that does).
        let mut plan: Option<(u32, WaitPolicy)> = None;
        loop {
            if let Some(got) = self.try_once(f)? {
                self.since_scan += 1;
                if self.since_scan >= BUSY_SCAN_EVERY {
                    self.since_scan = 0;
                    if Instant::now() >= self.next_scan {
                        self.rescan();
                    }
                }
                return Ok(got);
            }
            let (turns, policy) = plan.get_or_insert_with(|| self.wait_plan(deadline));
            if *turns > 0 {
                *turns -= 1;
                std::hint::spin_loop();
                continue;
            }
            let now = Instant::now();
            if now >= self.next_scan {
                self.rescan();
                if let Some(got) = self.try_once(f)? {
                    return Ok(got);
                }
            }
            let slice = match deadline {
                Deadline::Never => WAIT_SLICE,
                Deadline::At(d) if d > now => (d - now).min(WAIT_SLICE),
                Deadline::At(_) | Deadline::Now => return Err(RecvError::Timeout),
            };
            let Subscriber { bell, pubs, .. } = self;
            let ready = || pubs.iter_mut().any(Attached::ready);
            match bell.wait_until(ready, *policy, Some(slice)) {
                Ok(()) => {}
                // A whole slice without a message: look for new publishers now (a shorter
                // wait, cut by the caller's timeout, leaves the rescan to its interval).
                Err(WaitError::Timeout) if slice == WAIT_SLICE => self.next_scan = Instant::now(),
                Err(WaitError::Timeout) => {}
                // Nobody closes the bell; if someone did, poll in slices.
                Err(WaitError::Closed) => std::thread::sleep(slice),
                Err(WaitError::Os(e)) => return Err(RecvError::Wait(WaitError::Os(e))),
            }
            *policy = WaitPolicy::park_only();
        }
    }

    /// One look at every ring, round robin: the next message through `f`, or an event.
    fn try_once<R>(
        &mut self,
        f: &mut impl FnMut(&[u8]) -> R,
    ) -> Result<Option<(R, usize)>, RecvError> {
        let n = self.pubs.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let p = &mut self.pubs[i];
            if p.lagged > 0 {
                let missed = std::mem::take(&mut p.lagged);
                self.next = i;
                return Err(RecvError::Lagged { missed, publisher: p.node.clone() });
            }
            loop {
                match p.reader.peek() {
                    Ok(Some(rec)) => {
                        let r = f(rec.bytes());
                        if !rec.still_valid() {
                            // Overwritten while we looked: the next peek reports the lag.
                            continue;
                        }
                        rec.release();
                        // No fence (it would cost every receive): a publisher announcing
                        // just now may be missed and finds the room after its 1 ms slice.
                        if p.space.has_waiters() {
                            let _ = p.space.ring();
                        }
                        self.next = i + 1;
                        return Ok(Some((r, i)));
                    }
                    Ok(None) if p.gone => {
                        let p = self.pubs.remove(i);
                        return Err(RecvError::PublisherGone { publisher: p.node });
                    }
                    Ok(None) => break,
                    Err(broadcast::RecvError::Lagged(missed)) => {
                        self.next = i;
                        return Err(RecvError::Lagged { missed, publisher: p.node.clone() });
                    }
                    Err(broadcast::RecvError::Evicted) => {
                        // Judged dead by mistake; the next rescan attaches again.
                        tracing::warn!(publisher = %p.node, "reader slot reclaimed; reattaching");
                        self.pubs.remove(i);
                        return Ok(None);
                    }
                    Err(broadcast::RecvError::Corrupt(source)) => {
                        let p = self.pubs.remove(i);
                        return Err(RecvError::Corrupt { publisher: p.node, source });
                    }
                }
            }
        }
        Ok(None)
    }

    /// Attaches to new publishers and marks departed ones.
    fn rescan(&mut self) {
        self.next_scan = Instant::now() + RESCAN_INTERVAL;
        self.since_scan = 0;
        for p in self.pubs.iter_mut().filter(|p| !p.gone) {
            p.gone = p.space.is_closed() || !alive(&self.layout, &p.node);
        }
        let files = match layout::list_records(&self.dir) {
            Ok(files) => files,
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "cannot list publishers");
                return;
            }
        };
        for file in files {
            if self.pubs.iter().any(|p| p.file == file) {
                continue;
            }
            let Some(rec) = PublisherRecord::read(&self.dir.join(&file)) else { continue };
            if !alive(&self.layout, &rec.node) {
                continue;
            }
            match attach(&rec, self.history) {
                Ok((reader, space)) => self.pubs.push(Attached {
                    file,
                    node: rec.node,
                    reader,
                    space,
                    gone: false,
                    lagged: 0,
                }),
                Err(e) => tracing::debug!(segment = %rec.segment, error = %e, "cannot attach"),
            }
        }
    }
}

/// Whether `node`'s liveness token is held.
fn alive(layout: &Layout, node: &NodeId) -> bool {
    matches!(probe(layout.token(node)), Ok(Liveness::Alive))
}

/// Attaches a reader slot and the space doorbell of a publisher's segment.
fn attach(
    rec: &PublisherRecord,
    history: u32,
) -> Result<(Reader<Region>, Doorbell<Region>), Box<dyn std::error::Error>> {
    let seg = layout::open_pub_segment(&rec.segment)?;
    let base = seg.payload_offset();
    let space = Doorbell::attach(Arc::clone(seg.region()), base + SPACE_BELL)?;
    let reader = Reader::attach_with_history(Arc::clone(seg.region()), base + RING, history)?;
    Ok((reader, space))
}
