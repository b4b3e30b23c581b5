//! [`Doorbell`]: the futex doorbell.

use std::ptr::NonNull;
use std::time::{Duration, Instant};

use ipcx_sys::Errno;

use super::{
    attach_at, init_at, park, wait_until, AttachError, Bell, DoorbellState, DoorbellStats, Parker,
    PlaceError, RingError, WaitError, WaitPolicy,
};
use crate::layout::Padded;
use crate::region::Region;
use crate::sync::Ordering;

/// A futex doorbell living at an offset of a [`Region`]: waiters park on the state's `seq`
/// word with `futex_wait`; a notifier bumps it and calls `futex_wake` only when waiters are
/// announced (protocol and proof in the [module docs](super)).
///
/// Lifecycle: one process (or thread) builds the doorbell in place with
/// [`Doorbell::init_in`] before sharing the region; the others [`Doorbell::attach`] to it at
/// the same offset. Nothing needs tearing down: the state dies with the memory.
/// [`Doorbell::close`] ends waits for good (shutdown, peer death). The handle holds the
/// region; use `Arc<R>` to share one region between several structures.
#[derive(Debug)]
pub struct Doorbell<R: Region> {
    region: R,
    offset: usize,
    state: NonNull<Padded<DoorbellState>>,
}

// SAFETY: `state` points into memory owned by `region` (Send + Sync by the Region contract)
// and is only accessed through atomics.
unsafe impl<R: Region> Send for Doorbell<R> {}
// SAFETY: as above; `&Doorbell` only hands out shared references to atomics.
unsafe impl<R: Region> Sync for Doorbell<R> {}

impl<R: Region> Doorbell<R> {
    /// Builds a new, open doorbell at `offset` of `region` (a multiple of
    /// [`DoorbellState::ALIGN`], with [`DoorbellState::SIZE`] bytes in the region),
    /// overwriting what was there. Do it before other processes attach.
    pub fn init_in(region: R, offset: usize) -> Result<Doorbell<R>, PlaceError> {
        let state = init_at(&region, offset)?;
        Ok(Doorbell { region, offset, state })
    }

    /// Attaches to the doorbell another process (or thread) built at `offset` of `region`.
    pub fn attach(region: R, offset: usize) -> Result<Doorbell<R>, AttachError> {
        let state = attach_at(&region, offset)?;
        Ok(Doorbell { region, offset, state })
    }

    fn state(&self) -> &DoorbellState {
        // SAFETY: placed and initialised by init_in/attach; `region` keeps it mapped.
        unsafe { self.state.as_ref() }
    }

    /// Wakes all waiters, if any. Call it right after the Release store that publishes what
    /// they wait for. With no waiter announced this is a fence and one load: no syscall.
    #[inline]
    pub fn ring(&self) -> Result<(), RingError> {
        match self.state().waiters_seen() {
            None => Ok(()),
            Some(seen) => self.wake(seen),
        }
    }

    #[cold]
    #[inline(never)]
    fn wake(&self, seen: u64) -> Result<(), RingError> {
        let state = self.state();
        if !state.take_waiters(seen) {
            return Ok(()); // another notifier took them and wakes them
        }
        // SYNC: doorbell seq — after the take, so a waiter whose snapshot saw this bump
        // announced after the take and is still counted.
        state.seq().fetch_add(1, Ordering::Release);
        state.count_wakeup();
        park::wake_all(state.seq()).map_err(RingError)
    }

    /// Returns once `ready()` is true: checks it, spins as `policy` says, then parks on the
    /// futex until a [`ring`](Doorbell::ring), re-checking after every wake-up.
    ///
    /// `timeout`: `None` waits forever, `Some(Duration::ZERO)` only checks (the `try_` form).
    /// Ends with [`WaitError::Closed`] once the doorbell is closed and `ready()` is false.
    /// The clock is first read after some spin turns (see [`WaitPolicy`]): a wait that ends
    /// sooner costs no clock read, and a timeout runs that much late, never early.
    pub fn wait_until(
        &self,
        ready: impl FnMut() -> bool,
        policy: WaitPolicy,
        timeout: Option<Duration>,
    ) -> Result<(), WaitError> {
        wait_until(self.state(), &FutexParker, ready, policy, timeout, None)
    }

    /// Like [`wait_until`](Self::wait_until), but also gives up at `deadline`: for a wait
    /// in slices (`timeout`) toward a deadline that reads no clock when `ready()` comes
    /// during the first spin turns.
    pub fn wait_until_by(
        &self,
        ready: impl FnMut() -> bool,
        policy: WaitPolicy,
        timeout: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Result<(), WaitError> {
        wait_until(self.state(), &FutexParker, ready, policy, timeout, deadline)
    }

    /// Closes the doorbell for good and wakes every waiter; their waits end with
    /// [`WaitError::Closed`] (unless `ready()` is already true). Idempotent.
    pub fn close(&self) -> Result<(), RingError> {
        let state = self.state();
        state.mark_closed();
        // SYNC: doorbell seq — after the closed store, so a waiter whose snapshot saw this
        // bump also sees `closed`; one whose snapshot did not gets EAGAIN or the wake.
        state.seq().fetch_add(1, Ordering::Release);
        state.count_wakeup();
        park::wake_all(state.seq()).map_err(RingError)
    }

    /// Whether the doorbell was closed (by any process).
    #[inline]
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

    /// The region the doorbell lives in.
    pub fn region(&self) -> &R {
        &self.region
    }

    /// The doorbell's offset in its region.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

/// Parks on the futex word.
struct FutexParker;

impl Parker for FutexParker {
    fn snapshot(&self, state: &DoorbellState) -> u32 {
        // SYNC: doorbell seq
        state.seq().load(Ordering::Acquire)
    }

    fn park(
        &self,
        state: &DoorbellState,
        snapshot: u32,
        timeout: Option<Duration>,
    ) -> Result<(), Errno> {
        park::wait(state.seq(), snapshot, timeout)
    }
}

impl<R: Region> Bell for Doorbell<R> {
    fn ring(&self) -> Result<(), RingError> {
        Doorbell::ring(self)
    }
    fn wait_until<F: FnMut() -> bool>(
        &self,
        ready: F,
        policy: WaitPolicy,
        timeout: Option<Duration>,
    ) -> Result<(), WaitError> {
        Doorbell::wait_until(self, ready, policy, timeout)
    }
    fn close(&self) -> Result<(), RingError> {
        Doorbell::close(self)
    }
    fn is_closed(&self) -> bool {
        Doorbell::is_closed(self)
    }
    fn stats(&self) -> DoorbellStats {
        Doorbell::stats(self)
    }
}
