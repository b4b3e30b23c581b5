//! Doorbells: how a ring's consumer (or a producer blocked on a full ring) sleeps without
//! missing a wake-up, and how the other side wakes it with no syscall when nobody sleeps.
//!
//! Variants, sharing one protocol and one shared-memory layout
//! ([`DoorbellState`](crate::doorbell::DoorbellState)):
//! - [`Doorbell`]: parks on a futex (the state's `seq` word). Any number of waiters, in any
//!   process that maps the region.
//! - [`EventfdDoorbell`]: parks in `poll` on an eventfd passed to the peer; `as_fd` lets an
//!   event loop (epoll, tokio) do the waiting instead. One waiter at a time.
//!
//! Both implement [`Bell`], so a ring can be generic over the flavour.
//!
//! # Protocol
//!
//! ```text
//! notifier, right after its Release publish         waiter, after a bounded spin on ready()
//! -----------------------------------------         ---------------------------------------
//! fence(SeqCst)                          F1         loop {
//! if waiters.count != 0 {                             s = seq.load(Acquire)
//!     take: count = 0, generation += 1                waiters.count += 1; fence(SeqCst)  F2
//!     seq += 1 (Release)                              if ready()  { leave; return Ok }
//!     futex_wake(seq, all)                            if closed   { leave; return Closed }
//! }                                                   futex_wait(seq, s, time left)
//!                                                     leave
//!                                                   }
//! ```
//!
//! `waiters` holds a count and a generation. A notifier that wakes *takes* the announced
//! waiters (count to 0, next generation) before bumping `seq`; a waiter leaves (decrements)
//! only if its generation is still current, so a taken waiter is never subtracted twice. The
//! fast path of `ring` is a fence and one load: no syscall, no write to shared memory.
//!
//! # Why no wake-up is lost
//!
//! Suppose a waiter W announces (A), passes F2, finds `ready()` false and calls
//! `futex_wait(seq, s)`, while a notifier N published P and passed F1.
//!
//! 1. **Dekker pairing.** F1 and F2 are `SeqCst` fences, so one precedes the other in the
//!    single total order of `SeqCst` operations. If F1 comes first, W's `ready()` sees P
//!    (sequenced before F1): W does not sleep. If F2 comes first, N's load sees A or a later
//!    value of `waiters`: either A is still counted, and N takes it, bumps `seq` and wakes;
//!    or a notifier N' took A before, and N' bumps `seq` and wakes after taking it.
//! 2. **The futex compare.** Whoever took A bumped `seq` after taking it. W loaded `s`
//!    *before* A, so `s` predates that bump: had `s` read it, the bump's Release/Acquire
//!    pairing would make the take happen before A, and a take cannot remove an increment
//!    made after it. So W is either already queued in the kernel and woken, or the kernel
//!    compares `seq` with `s` under its bucket lock, finds them different and returns
//!    `EAGAIN` at once. (Eventfd variant: the write stays in the counter until its single
//!    waiter drains it, so its `poll` returns at once instead.)
//!
//! W then loops, re-announces and re-checks. The waiter needs its own fence: a `SeqCst`
//! `fetch_add` followed by an Acquire load does not pair with the notifier's fence in the
//! Rust (C++20) memory model, and loom finds the lost wake-up (see `tests/loom_doorbell.rs`).
//!
//! # Orderings (`SYNC:` tags in the code)
//!
//! - `doorbell dekker`: F1 (`ring`) pairs with F2 (the announcement).
//! - `doorbell seq`: the Release bump of `seq` (by a notifier after its take, or by `close`
//!   after storing `closed`), read with Acquire by the waiter's snapshot.
//! - `doorbell closed`: `closed` stored with Release before the bump, read with Acquire.
//! - `doorbell initialised`: the creator's Release store of the magic word, read with Acquire
//!   by `attach`.
//! - Announcing, taking and leaving modify `waiters` with Relaxed read-modify-writes: the
//!   fences and the `seq` pairing above order them; the counters are Relaxed statistics.
//!
//! # Crashed peers
//!
//! A waiter killed while announced leaves the count too high. The next ring takes it like
//! any other waiter, so a dead waiter costs one wake syscall, then rings are free again
//! (both variants). A notifier killed between its take and its wake leaves the waiters it
//! took asleep until their timeout or a ring that finds a waiter announced: a window of a
//! few instructions, and only other notifiers of the same doorbell could have helped (with
//! a single notifier, as in SPSC, its death leaves the waiter to its timeout anyway).
//!
//! # Limits
//!
//! - `ring` wakes every waiter; meant for few waiters per doorbell (one per ring side).
//! - The state lives in memory the peer can write. A hostile or broken peer can make waits
//!   return early, sleep until their timeout, or see `Closed`; it cannot cause undefined
//!   behaviour. Use timeouts where the peer is not trusted.
//! - `ready` is called many times and must only read state.
//! - The futex variant needs a `MAP_SHARED` mapping (or heap memory for threads of one process).

mod eventfd;
mod futex;
mod park;

use std::ptr::NonNull;
use std::time::{Duration, Instant};

use ipcx_sys::Errno;
use thiserror::Error;

use crate::layout::Padded;
use crate::region::Region;
use crate::sync::{fence, spin_hint, AtomicU32, AtomicU64, Ordering};

pub use eventfd::{Announced, EventfdDoorbell};
pub use futex::Doorbell;

/// What a doorbell does, whatever parks the waiter.
pub trait Bell {
    /// Wakes the waiters, if any; call it right after publishing (Release) what they wait for.
    fn ring(&self) -> Result<(), RingError>;
    /// Returns once `ready()` is true, after spinning and parking as `policy` says.
    fn wait_until<F: FnMut() -> bool>(
        &self,
        ready: F,
        policy: WaitPolicy,
        timeout: Option<Duration>,
    ) -> Result<(), WaitError>;
    /// Marks the doorbell closed and wakes every waiter (they return [`WaitError::Closed`]).
    fn close(&self) -> Result<(), RingError>;
    /// Whether [`Bell::close`] was called (by any process).
    fn is_closed(&self) -> bool;
    /// The shared counters.
    fn stats(&self) -> DoorbellStats;
}

/// A doorbell cannot be placed at this offset of the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum PlaceError {
    /// The offset is not a multiple of the doorbell's alignment.
    #[error("doorbell offset {offset} is not a multiple of {align}; place it on a cache line")]
    Misaligned {
        /// The offset asked for.
        offset: usize,
        /// Required alignment ([`DoorbellState::ALIGN`]).
        align: usize,
    },
    /// The doorbell would extend past the end of the region.
    #[error(
        "doorbell at offset {offset} needs {size} bytes but the region holds {len}; use a larger \
         region or a lower offset"
    )]
    OutOfBounds {
        /// The offset asked for.
        offset: usize,
        /// Bytes a doorbell occupies ([`DoorbellState::SIZE`]).
        size: usize,
        /// Length of the region.
        len: usize,
    },
}

/// Attaching to an existing doorbell failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum AttachError {
    /// The offset is unusable.
    #[error(transparent)]
    Place(#[from] PlaceError),
    /// The bytes at the offset do not hold an initialised doorbell.
    #[error(
        "no doorbell at this offset (magic {found:#010x}); its creator has not initialised it \
         yet, or the offset is wrong"
    )]
    NotInitialised {
        /// The word found where the magic should be.
        found: u32,
    },
}

/// Waking the waiters failed.
#[derive(Debug, Error)]
#[error(
    "the kernel refused to wake the doorbell's waiters (futex wake or eventfd write); the \
     doorbell's memory or eventfd is unusable, rebuild the channel"
)]
pub struct RingError(#[source] pub Errno);

/// Why a wait ended without `ready()` becoming true.
#[derive(Debug, Error)]
pub enum WaitError {
    /// The timeout passed.
    #[error("nothing arrived within the timeout; retry, or check that the peer is alive")]
    Timeout,
    /// The doorbell was closed.
    #[error("the doorbell was closed: the other side shut down; stop waiting and reconnect")]
    Closed,
    /// The kernel refused to park the thread.
    #[error(
        "the kernel refused to park on the doorbell (futex wait or eventfd poll); the doorbell's \
         memory or eventfd is unusable, rebuild the channel"
    )]
    Os(#[source] Errno),
}

/// How long a waiter spins before it parks in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitPolicy {
    spin: Spin,
    park: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spin {
    Iterations(u32),
    For(Duration),
}

impl WaitPolicy {
    /// Spin time of [`WaitPolicy::default`].
    pub const DEFAULT_SPIN: Duration = Duration::from_micros(5);

    /// Spin (re-checking `ready`) for up to `spin`, then park.
    pub const fn spin_then_park(spin: Duration) -> WaitPolicy {
        WaitPolicy { spin: Spin::For(spin), park: true }
    }

    /// Spin for up to `iterations` checks of `ready`, then park (no clock reads while spinning).
    pub const fn spin_iterations_then_park(iterations: u32) -> WaitPolicy {
        WaitPolicy { spin: Spin::Iterations(iterations), park: true }
    }

    /// Park at once (the lowest CPU use; every wait costs a syscall).
    pub const fn park_only() -> WaitPolicy {
        WaitPolicy::spin_iterations_then_park(0)
    }

    /// Never park: busy-poll until ready, closed or the timeout (burns a core; the notifier
    /// never pays a syscall).
    pub const fn spin_only() -> WaitPolicy {
        WaitPolicy { spin: Spin::Iterations(0), park: false }
    }

    /// Splits up to `turns` spin turns off the front of this policy, for a caller that spins
    /// them in its own loop (looking at its ring there, so that a record arriving meanwhile
    /// is taken without a return through the wait): how many turns to spin, and the policy
    /// of the wait that follows them. A policy that parks at once gives no turns. A timed
    /// spin is shortened by the turns' estimated time ([`TURN`] each), so the two together
    /// spin about as long as the policy did; where a turn takes longer, a little longer.
    pub fn take_turns(self, turns: u32) -> (u32, WaitPolicy) {
        match (self.spin, self.park) {
            // Spins until ready: the turns come off nothing.
            (_, false) => (turns, self),
            (Spin::Iterations(n), true) => {
                let taken = turns.min(n);
                (taken, WaitPolicy::spin_iterations_then_park(n - taken))
            }
            (Spin::For(d), true) => {
                let taken =
                    turns.min(u32::try_from(d.as_nanos() / TURN.as_nanos()).unwrap_or(u32::MAX));
                let rest = d.saturating_sub(TURN.saturating_mul(taken));
                (taken, WaitPolicy::spin_then_park(rest))
            }
        }
    }
}

impl Default for WaitPolicy {
    /// Spin [`WaitPolicy::DEFAULT_SPIN`], then park.
    fn default() -> WaitPolicy {
        WaitPolicy::spin_then_park(WaitPolicy::DEFAULT_SPIN)
    }
}

/// The shared counters of a doorbell, readable from any process that maps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DoorbellStats {
    /// Times a waiter went into the kernel to sleep (futex wait or eventfd poll).
    pub parks: u64,
    /// Wake syscalls issued by `ring` and `close`.
    pub wakeups: u64,
    /// Waiters announced now (asleep or about to be), as far as the doorbell knows.
    pub waiters: u32,
    /// Whether the doorbell is closed.
    pub closed: bool,
}

const MAGIC: u32 = u32::from_le_bytes(*b"DBL1");
/// Low bits of `waiters`: the count. 24 bits hold more waiters than Linux has pids (2^22).
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// The shared part of a doorbell, alone on its cache line (placed as `Padded<DoorbellState>`).
#[repr(C)]
#[derive(Debug)]
pub struct DoorbellState {
    /// [`MAGIC`] once initialised. Written once by the creator (Release), last.
    magic: AtomicU32,
    /// The futex word: any value, only changes matter. Bumped (Release) by a `ring` that
    /// found waiters, and by `close`.
    seq: AtomicU32,
    /// 0 while open, non-zero once closed. Written by `close`.
    closed: AtomicU32,
    /// Always 0 (room for flags in a later layout).
    reserved: AtomicU32,
    /// Low [`COUNT_BITS`]: announced waiters (incremented and decremented by waiters, set to
    /// 0 by a notifier's take). High bits: generation (wrapping), bumped by each take.
    waiters: AtomicU64,
    /// Kernel sleeps entered by waiters (wrapping). Written by waiters.
    parks: AtomicU64,
    /// Wake syscalls issued (wrapping). Written by notifiers and closers.
    wakeups: AtomicU64,
}

#[cfg(not(loom))]
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<DoorbellState>() == 40);
    assert!(align_of::<DoorbellState>() == 8);
    assert!(offset_of!(DoorbellState, seq) == 4);
    assert!(offset_of!(DoorbellState, waiters) == 16);
    assert!(size_of::<Padded<DoorbellState>>() == crate::layout::CACHE_LINE);
};

/// A waiter's announcement: the generation its increment of the count belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    generation: u64,
}

impl DoorbellState {
    /// Bytes a doorbell occupies in a region.
    pub const SIZE: usize = std::mem::size_of::<Padded<DoorbellState>>();
    /// Alignment a doorbell's offset must have.
    pub const ALIGN: usize = std::mem::align_of::<Padded<DoorbellState>>();

    #[cfg(loom)]
    fn new() -> DoorbellState {
        DoorbellState {
            magic: AtomicU32::new(0),
            seq: AtomicU32::new(0),
            closed: AtomicU32::new(0),
            reserved: AtomicU32::new(0),
            waiters: AtomicU64::new(0),
            parks: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
        }
    }

    /// The values of a fresh state (as `new` makes them), stored in place; magic excluded.
    #[cfg(not(loom))]
    fn reset(&self) {
        for word in [&self.seq, &self.closed, &self.reserved] {
            word.store(0, Ordering::Relaxed);
        }
        for word in [&self.waiters, &self.parks, &self.wakeups] {
            word.store(0, Ordering::Relaxed);
        }
    }

    /// Waiter: count itself in, then fence (F2) before re-checking `ready`.
    pub(crate) fn announce(&self) -> Ticket {
        let old = self.waiters.fetch_add(1, Ordering::Relaxed);
        // SYNC: doorbell dekker (F2): the increment is visible to a notifier past F1, or
        // that notifier's publish is visible to our ready().
        fence(Ordering::SeqCst);
        Ticket { generation: old >> COUNT_BITS }
    }

    /// Waiter: count itself out, unless a notifier took it (the generation moved on).
    pub(crate) fn depart(&self, ticket: Ticket) {
        let mut cur = self.waiters.load(Ordering::Relaxed);
        while cur >> COUNT_BITS == ticket.generation && cur & COUNT_MASK != 0 {
            match self.waiters.compare_exchange_weak(
                cur,
                cur - 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// Notifier: fence (F1), then the waiter word if anybody is announced.
    #[inline]
    pub(crate) fn waiters_seen(&self) -> Option<u64> {
        // SYNC: doorbell dekker (F1): pairs with the waiter's fence after announcing.
        fence(Ordering::SeqCst);
        let w = self.waiters.load(Ordering::Relaxed);
        (w & COUNT_MASK != 0).then_some(w)
    }

    /// Notifier, before bumping `seq` and waking: takes every announced waiter off the count
    /// (count 0, next generation). `false` if the count is already 0: another notifier took
    /// them and will wake them.
    pub(crate) fn take_waiters(&self, mut cur: u64) -> bool {
        loop {
            if cur & COUNT_MASK == 0 {
                return false;
            }
            let next = (cur & !COUNT_MASK).wrapping_add(1 << COUNT_BITS);
            match self.waiters.compare_exchange_weak(
                cur,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// One load; inlined into other crates too (where a channel's send and its receive's
    /// spin look at it every time).
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        // SYNC: doorbell closed
        self.closed.load(Ordering::Acquire) != 0
    }

    pub(crate) fn mark_closed(&self) {
        // SYNC: doorbell closed
        self.closed.store(1, Ordering::Release);
    }

    pub(crate) fn seq(&self) -> &AtomicU32 {
        &self.seq
    }

    pub(crate) fn count_wakeup(&self) {
        self.wakeups.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a waiter is announced now: one relaxed load, no fence (for a caller that
    /// rings only if someone waits and accepts missing a waiter that announces meanwhile).
    #[inline]
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::Relaxed) & COUNT_MASK != 0
    }

    pub(crate) fn stats(&self) -> DoorbellStats {
        DoorbellStats {
            parks: self.parks.load(Ordering::Relaxed),
            wakeups: self.wakeups.load(Ordering::Relaxed),
            waiters: (self.waiters.load(Ordering::Relaxed) & COUNT_MASK) as u32,
            closed: self.is_closed(),
        }
    }
}

/// Where a doorbell at `offset` of `region` lives, after checking bounds and alignment.
fn place(
    region: &impl Region,
    offset: usize,
) -> Result<NonNull<Padded<DoorbellState>>, PlaceError> {
    let (size, align, len) = (DoorbellState::SIZE, DoorbellState::ALIGN, region.len());
    if offset % align != 0 {
        return Err(PlaceError::Misaligned { offset, align });
    }
    match offset.checked_add(size) {
        Some(end) if end <= len => {}
        _ => return Err(PlaceError::OutOfBounds { offset, size, len }),
    }
    // SAFETY: offset + SIZE <= len (checked above), so the result stays inside the region.
    let ptr = unsafe { region.base().add(offset) };
    Ok(ptr.cast())
}

/// Builds a fresh doorbell state at `offset` (overwriting what is there) and publishes it.
fn init_at(
    region: &impl Region,
    offset: usize,
) -> Result<NonNull<Padded<DoorbellState>>, PlaceError> {
    let ptr = place(region, offset)?;
    #[cfg(loom)]
    construct_for_loom(ptr);
    // SAFETY: in bounds and aligned (place), kept alive by the region; every bit pattern is
    // a valid DoorbellState (atomic integers only).
    let state = unsafe { ptr.as_ref() };
    // Atomic stores, not a plain write: sound even if another handle uses these bytes.
    #[cfg(not(loom))]
    state.reset();
    // SYNC: doorbell initialised
    state.magic.store(MAGIC, Ordering::Release);
    park::prepare();
    Ok(ptr)
}

/// loom's atomics are model objects: they must be constructed in place, not just stored to.
#[cfg(loom)]
fn construct_for_loom(ptr: NonNull<Padded<DoorbellState>>) {
    // SAFETY: in bounds and aligned (place), writable; a model builds it before sharing it.
    unsafe { ptr.as_ptr().write(Padded(DoorbellState::new())) };
}

/// Finds the initialised doorbell state at `offset`.
fn attach_at(
    region: &impl Region,
    offset: usize,
) -> Result<NonNull<Padded<DoorbellState>>, AttachError> {
    let ptr = place(region, offset)?;
    // SAFETY: in bounds and aligned (place); every bit pattern is a valid DoorbellState
    // (atomic integers only; under loom, init_at built it), and the region keeps it alive.
    let state = unsafe { ptr.as_ref() };
    // SYNC: doorbell initialised
    let found = state.magic.load(Ordering::Acquire);
    if found != MAGIC {
        return Err(AttachError::NotInitialised { found });
    }
    park::prepare();
    Ok(ptr)
}

/// How a variant puts a waiter to sleep.
pub(crate) trait Parker {
    /// What to read before announcing (the futex word's value).
    fn snapshot(&self, state: &DoorbellState) -> u32;
    /// Sleep until woken, `timeout` passes, or (futex) the word no longer holds `snapshot`.
    fn park(
        &self,
        state: &DoorbellState,
        snapshot: u32,
        timeout: Option<Duration>,
    ) -> Result<(), Errno>;
}

/// The waiter's side of the protocol, shared by both variants: gives up `timeout` after it
/// starts and never later than `deadline` (each `None`: no such limit).
pub(crate) fn wait_until(
    state: &DoorbellState,
    parker: &impl Parker,
    mut ready: impl FnMut() -> bool,
    policy: WaitPolicy,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
) -> Result<(), WaitError> {
    if ready() {
        return Ok(());
    }
    let mut limits = Limits { timeout, deadline, end: None };
    let mut verdict = || {
        if ready() {
            Some(Ok(()))
        } else if state.is_closed() {
            Some(Err(WaitError::Closed))
        } else {
            None
        }
    };
    if let Some(v) = spin(&mut verdict, policy, &mut limits) {
        return v;
    }
    loop {
        let snapshot = parker.snapshot(state);
        let ticket = state.announce();
        let left = match verdict() {
            Some(v) => {
                state.depart(ticket);
                return v;
            }
            None if !limits.bounded() => None,
            None => {
                let now = Instant::now();
                match limits.end(now).and_then(|end| end.checked_duration_since(now)) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => {
                        state.depart(ticket);
                        return Err(WaitError::Timeout);
                    }
                }
            }
        };
        state.parks.fetch_add(1, Ordering::Relaxed);
        let parked = parker.park(state, snapshot, left);
        state.depart(ticket);
        parked.map_err(WaitError::Os)?;
    }
}

/// When a wait gives up. The clock is read lazily: the wait starts at its first look at the
/// clock (after [`CLOCK_EVERY`] spin turns at the latest), so a wait that ends within its
/// first turns reads no clock at all, and a timeout runs a few turns late, never early.
#[derive(Debug)]
struct Limits {
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    /// The end, once the clock was read (`Some(None)`: no end).
    end: Option<Option<Instant>>,
}

impl Limits {
    /// Whether the wait has an end at all.
    fn bounded(&self) -> bool {
        self.timeout.is_some() || self.deadline.is_some()
    }

    /// The end, fixed at the first call (`now` is the start). A timeout too long to
    /// represent means none.
    fn end(&mut self, now: Instant) -> Option<Instant> {
        let (timeout, deadline) = (self.timeout, self.deadline);
        *self.end.get_or_insert_with(|| {
            match (timeout.and_then(|t| now.checked_add(t)), deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        })
    }

    /// Whether the wait is over at `now`.
    fn passed(&mut self, now: Instant) -> bool {
        self.end(now).is_some_and(|end| now >= end)
    }
}

/// The spin phase: `Some` when it decided the wait, `None` to go on and park.
fn spin(
    verdict: &mut impl FnMut() -> Option<Result<(), WaitError>>,
    policy: WaitPolicy,
    limits: &mut Limits,
) -> Option<Result<(), WaitError>> {
    match policy.spin {
        Spin::Iterations(n) => {
            for _ in 0..n {
                spin_hint();
                if let Some(v) = verdict() {
                    return Some(v);
                }
            }
        }
        Spin::For(d) => {
            // Fixed, like the limits, at the first look at the clock.
            let mut spin_end: Option<Option<Instant>> = None;
            let mut turns = 0u32;
            loop {
                spin_hint();
                if let Some(v) = verdict() {
                    return Some(v);
                }
                // The clock costs more than a turn: look at it every CLOCK_EVERY turns only,
                // so a record that arrives is seen at once.
                turns = turns.wrapping_add(1);
                if turns % CLOCK_EVERY != 0 {
                    continue;
                }
                let now = Instant::now();
                if limits.passed(now) {
                    return Some(Err(WaitError::Timeout));
                }
                if spin_end.get_or_insert_with(|| now.checked_add(d)).is_some_and(|e| now >= e) {
                    break;
                }
            }
        }
    }
    if policy.park {
        return None;
    }
    let bounded = limits.bounded();
    let mut turns = 0u32;
    loop {
        if let Some(v) = verdict() {
            return Some(v);
        }
        turns = turns.wrapping_add(1);
        if bounded && turns % CLOCK_EVERY == 0 && limits.passed(Instant::now()) {
            return Some(Err(WaitError::Timeout));
        }
        spin_hint();
    }
}

/// Spin turns between two looks at the clock. A turn is ~10 ns here (`pause` 9.6 ns), a clock
/// read ~18 ns: every 256 turns (~2.5 µs) keeps a sub-microsecond wait free of clock reads,
/// at the price of a timeout or spin phase ending up to that much late.
const CLOCK_EVERY: u32 = 256;

/// The estimated time of one spin turn ([`WaitPolicy::take_turns`]): what it measured here
/// (see [`CLOCK_EVERY`]); CPUs whose `pause` is slower spin a little longer.
pub const TURN: Duration = Duration::from_nanos(10);

/// Spin turns a wait takes before its first look at the clock: as many as a caller that
/// spins on its rings itself before it waits ([`WaitPolicy::take_turns`]) should take, so
/// that a wait ending within them reads no clock either.
pub const FIRST_TURNS: u32 = CLOCK_EVERY;
