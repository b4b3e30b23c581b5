//! [`EventfdDoorbell`]: the eventfd doorbell, for event loops.

use std::os::fd::{AsFd, BorrowedFd};
use std::ptr::NonNull;
use std::time::Duration;

use ipcx_sys::eventfd::{EventFd, NotifyError, ReadError};
use ipcx_sys::Errno;

use super::{
    attach_at, init_at, wait_until, AttachError, Bell, DoorbellState, DoorbellStats, Parker,
    PlaceError, RingError, Ticket, WaitError, WaitPolicy,
};
use crate::layout::Padded;
use crate::region::Region;

/// Longest single `poll` when waiting without a timeout (the wait then simply continues).
const POLL_CHUNK: Duration = Duration::from_secs(3600);

/// The doorbell for event loops: same waiter-count protocol and shared state as the futex
/// [`Doorbell`](super::Doorbell), but the notifier writes to an eventfd (only when a waiter
/// is announced) and the waiter sleeps in `poll` on it, so the fd can sit in an epoll set or
/// a tokio `AsyncFd`.
///
/// The eventfd is not in the shared memory: the creator makes one ([`EventFd::new`]) and
/// sends it to the peer over a Unix socket (fd passing); each side wraps its copy with
/// [`EventfdDoorbell::init_in`] / [`EventfdDoorbell::attach`].
///
/// Event loops: [`announce`](EventfdDoorbell::announce), re-check the condition, then wait
/// for the fd ([`as_fd`](std::os::fd::AsFd::as_fd)) to be readable,
/// [`drain`](EventfdDoorbell::drain) it, drop the announcement and re-check.
///
/// Limits: one waiter at a time per eventfd. A second waiter could drain the count meant
/// for the first between its re-check and its `poll`; use the futex doorbell (or one
/// eventfd per waiter) for several. A waiter killed while announced is taken by
/// the next ring, which writes once; the count left in the eventfd gives the next waiter
/// one spurious wake-up.
#[derive(Debug)]
pub struct EventfdDoorbell<R: Region> {
    region: R,
    offset: usize,
    state: NonNull<Padded<DoorbellState>>,
    eventfd: EventFd,
}

// SAFETY: `state` points into memory owned by `region` (Send + Sync by the Region contract)
// and is only accessed through atomics; EventFd is Send + Sync.
unsafe impl<R: Region> Send for EventfdDoorbell<R> {}
// SAFETY: as above; `&EventfdDoorbell` only hands out shared references to atomics and fds.
unsafe impl<R: Region> Sync for EventfdDoorbell<R> {}

/// A waiter's announcement for an event loop; counts it out again when dropped.
#[derive(Debug)]
#[must_use = "the announcement ends when this is dropped"]
pub struct Announced<'a> {
    state: &'a DoorbellState,
    ticket: Ticket,
}

impl Drop for Announced<'_> {
    fn drop(&mut self) {
        self.state.depart(self.ticket);
    }
}

impl<R: Region> EventfdDoorbell<R> {
    /// Builds a new, open doorbell state at `offset` of `region` (see
    /// [`Doorbell::init_in`](super::Doorbell::init_in)) rung through `eventfd`.
    pub fn init_in(
        region: R,
        offset: usize,
        eventfd: EventFd,
    ) -> Result<EventfdDoorbell<R>, PlaceError> {
        let state = init_at(&region, offset)?;
        Ok(EventfdDoorbell { region, offset, state, eventfd })
    }

    /// Attaches to the doorbell state built at `offset` of `region`; `eventfd` is this
    /// process's copy of the creator's eventfd.
    pub fn attach(
        region: R,
        offset: usize,
        eventfd: EventFd,
    ) -> Result<EventfdDoorbell<R>, AttachError> {
        let state = attach_at(&region, offset)?;
        Ok(EventfdDoorbell { region, offset, state, eventfd })
    }

    fn state(&self) -> &DoorbellState {
        // SAFETY: placed and initialised by init_in/attach; `region` keeps it mapped.
        unsafe { self.state.as_ref() }
    }

    /// Wakes the waiter, if one is announced: writes 1 to the eventfd. Call it right after
    /// the Release store that publishes what it waits for. No waiter: a fence and one load.
    #[inline]
    pub fn ring(&self) -> Result<(), RingError> {
        match self.state().waiters_seen() {
            Some(seen) if self.state().take_waiters(seen) => self.notify(),
            _ => Ok(()),
        }
    }

    #[cold]
    #[inline(never)]
    fn notify(&self) -> Result<(), RingError> {
        self.state().count_wakeup();
        match self.eventfd.notify(1) {
            // A full counter is readable, so the waiter wakes anyway.
            Ok(()) | Err(NotifyError::WouldOverflow) => Ok(()),
            Err(NotifyError::BadValue) => Err(RingError(Errno::INVAL)),
            Err(NotifyError::Os(e)) => Err(RingError(e)),
        }
    }

    /// Returns once `ready()` is true: checks it, spins as `policy` says, then sleeps in
    /// `poll` on the eventfd until a ring, draining it and re-checking after each wake-up.
    /// Same timeout and close rules as [`Doorbell::wait_until`](super::Doorbell::wait_until).
    pub fn wait_until(
        &self,
        ready: impl FnMut() -> bool,
        policy: WaitPolicy,
        timeout: Option<Duration>,
    ) -> Result<(), WaitError> {
        wait_until(self.state(), &EventfdParker(&self.eventfd), ready, policy, timeout, None)
    }

    /// For event loops: counts this waiter in (so rings write to the eventfd) until the
    /// returned value is dropped. Re-check the condition after this, before waiting on the fd.
    pub fn announce(&self) -> Announced<'_> {
        let state = self.state();
        Announced { state, ticket: state.announce() }
    }

    /// Takes the eventfd's count without blocking; returns whether there was one.
    pub fn drain(&self) -> Result<bool, WaitError> {
        match self.eventfd.try_read() {
            Ok(n) => Ok(n.is_some()),
            Err(ReadError::Timeout) => Ok(false),
            Err(ReadError::Os(e)) => Err(WaitError::Os(e)),
        }
    }

    /// Closes the doorbell for good and wakes the waiter (its wait ends with
    /// [`WaitError::Closed`]); the eventfd stays readable. Idempotent.
    pub fn close(&self) -> Result<(), RingError> {
        // SYNC: doorbell closed — stored before the write, which the waiter's read or poll
        // follows.
        self.state().mark_closed();
        self.notify()
    }

    /// Whether the doorbell was closed (by any process).
    pub fn is_closed(&self) -> bool {
        self.state().is_closed()
    }

    /// Whether a waiter is announced now (see [`stats`](Self::stats)): one load, no fence,
    /// so a waiter announcing meanwhile may be missed; ring anyway where that matters.
    #[inline]
    pub fn has_waiters(&self) -> bool {
        self.state().has_waiters()
    }

    /// The shared counters.
    pub fn stats(&self) -> DoorbellStats {
        self.state().stats()
    }

    /// This process's copy of the eventfd (e.g. to send it to the peer).
    pub fn eventfd(&self) -> &EventFd {
        &self.eventfd
    }

    /// The region the doorbell state lives in.
    pub fn region(&self) -> &R {
        &self.region
    }

    /// The state's offset in its region.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl<R: Region> AsFd for EventfdDoorbell<R> {
    /// The eventfd, for epoll or an async runtime: readable after a ring or close.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.eventfd.as_fd()
    }
}

/// Parks in `poll` on the eventfd, then drains it.
struct EventfdParker<'a>(&'a EventFd);

impl Parker for EventfdParker<'_> {
    fn snapshot(&self, _state: &DoorbellState) -> u32 {
        0 // the eventfd's count remembers a ring made before the poll
    }

    fn park(
        &self,
        _state: &DoorbellState,
        _snapshot: u32,
        timeout: Option<Duration>,
    ) -> Result<(), Errno> {
        match self.0.read_timeout(timeout.unwrap_or(POLL_CHUNK).min(POLL_CHUNK)) {
            Ok(_) | Err(ReadError::Timeout) => Ok(()),
            Err(ReadError::Os(e)) => Err(e),
        }
    }
}

impl<R: Region> Bell for EventfdDoorbell<R> {
    fn ring(&self) -> Result<(), RingError> {
        EventfdDoorbell::ring(self)
    }
    fn wait_until<F: FnMut() -> bool>(
        &self,
        ready: F,
        policy: WaitPolicy,
        timeout: Option<Duration>,
    ) -> Result<(), WaitError> {
        EventfdDoorbell::wait_until(self, ready, policy, timeout)
    }
    fn close(&self) -> Result<(), RingError> {
        EventfdDoorbell::close(self)
    }
    fn is_closed(&self) -> bool {
        EventfdDoorbell::is_closed(self)
    }
    fn stats(&self) -> DoorbellStats {
        EventfdDoorbell::stats(self)
    }
}
