//! Broadcast ring: one writer, up to [`MAX_SLOTS`] readers, variable-size records. Every
//! reader sees every record published after it attached (or, joining with history, up to
//! [`Config::history`] records from before), in order, except under
//! [`Policy::DropOldest`], where a slow reader sees an in-order subsequence and is told how
//! many records it missed.
//!
//! # Layout (at a 128-aligned offset of a [`Region`])
//!
//! ```text
//! +0          writer line    write, published, tail, tail_seq, full, ver, 2 copies of
//!                            (write, published, tail, tail_seq), limit     (writer only)
//! +128        registry line  active mask, reclaimed, dropped   (RMW by readers, reclaimers)
//! +256        info line      tag, log2(capacity), slots, policy, history (written by `init`)
//! +384        history index  64 x (tag, position) of the last data records  (writer only)
//! +1408       slot 0..n-1    one line per reader: state word, cursor, consumed, lagged,
//!                            owner start time, owner pid namespace
//! +1408+128n  data           capacity bytes of records (see crate::record)
//! ```
//!
//! # Lifecycle
//!
//! The creator calls [`init`] once, before publishing the region. One [`Writer`] attaches
//! (one per ring is the caller's duty; a new one may take over from a dead one). Each
//! [`Reader::attach`] claims a free slot (CAS) and starts at the writer's current position;
//! [`Reader::attach_with_history`] starts up to `k` records earlier (see
//! [History](#history)). Dropping the reader frees its slot. A slot whose process died is reclaimed
//! (see [Dead readers](#dead-readers)).
//!
//! # Policies (fixed at [`init`])
//!
//! - [`Policy::Block`]: the writer never overwrites what a live reader has not released;
//!   [`Writer::try_send`] returns [`SendError::Full`], [`Writer::send_timeout`] waits.
//! - [`Policy::Fail`]: the same condition, but the writer never waits: `Full` at once.
//! - [`Policy::DropOldest`]: the writer never waits and never looks at readers; it
//!   overwrites the oldest records. A reader a lap behind gets [`RecvError::Lagged`]`(n)`,
//!   `n` = data records it missed, then resumes at the oldest record still in the ring.
//!
//! # Memory-ordering protocol
//!
//! - `SYNC: records published`: the writer writes a record's payload and zeroes the word
//!   behind it, at claim or commit as in SPSC (`ring::clear_end`; it keeps 8 bytes free
//!   there: the word at `write` is always zero), then stores the header with Release (a
//!   wrapped record's PAD after it), then `write` with Release;
//!   readers load `write` with Acquire before reading below it. `SYNC: records published
//!   (header)`: a Block/Fail reader whose last look at `write` found it caught up loads the
//!   header word at its cursor with Acquire instead, and takes a valid header there as a
//!   published record, without `write` (one cache line from the writer, not two); zero is
//!   "nothing new", an invalid word sends it to `write`. It may then be one record ahead of
//!   the `write` it loads next.
//! - `SYNC: space released` (Block, Fail): a reader done with records stores its slot's
//!   `cursor` with Release; the writer's scan loads cursors with Acquire before reusing
//!   the space.
//! - `SYNC: reader joined`: a joining reader sets its bit in `active` with an AcqRel RMW,
//!   then loads `write`; the writer's scan reads `active` with an AcqRel RMW too. RMWs on
//!   one word are totally ordered, so either the scan sees the bit (a `JOINING` slot counts
//!   as "no room" until its cursor is published), or the joiner's load sees every position
//!   stored before the scan, so it starts at or after the minimum that scan computed. The
//!   writer never overwrites what a new reader is about to read.
//! - `SYNC: slot active` / `slot freed`: slot state transitions are CAS (AcqRel) or Release
//!   stores; whoever acts on a state loads it with Acquire.
//! - `SYNC: space reclaimed` (DropOldest, a seqlock): before overwriting, the writer
//!   stores the new `tail` (oldest intact record), then a Release fence. A reader reads a
//!   header and copies a payload with word-sized atomic loads, then an Acquire fence, then
//!   loads `tail`: `tail > position` means the bytes may be torn and are discarded.
//! - `SYNC: snapshot` (DropOldest): readers that need `(write, published, tail, tail_seq)`
//!   consistent (join, lag) read the copy `ver` points at. The writer fills the other copy
//!   (after a Release fence), then stores `ver + 1` with Release; a reader loads `ver`
//!   (Acquire), the copy, an Acquire fence, `ver` again, and retries only if the writer
//!   finished another update meanwhile. Readers never wait for the writer. A claim that
//!   overwrites publishes its copy before storing the new `tail` (`SYNC: tail after its
//!   copy`, Release/Acquire) and before the commit stores `write`, so a reader that saw
//!   that `tail`, or a `write` a lap ahead of it, finds the new tail in its next snapshot.
//!   A commit publishes its copy after storing `write`, so no snapshot runs ahead of the
//!   `write` readers load.
//!
//! - `SYNC: index entry`, `SYNC: write limit`: the history index and the bound a joiner
//!   reads history under; see [History](#history).
//!
//! Fast paths: the writer compares against a cached minimum reader position and scans the
//! joined slots (O(active readers)) only when that says the ring may be full; a reader
//! reloads `write` only when its cache says the ring is empty, and while `write` says it
//! is caught up, looks at the header at its cursor instead. No path depends on payload
//! size except the copy into or out of the ring.
//!
//! # History
//!
//! With [`Config::history`] = `H > 0` the writer indexes where the last `H` data records
//! start (entry `s % H`: tag `s + 1` and position, a per-entry seqlock, written before the
//! commit stores `write`). [`Reader::attach_with_history`]`(k)` registers like
//! [`Reader::attach`] (slot `JOINING`, `active` bit), then walks the index back from the
//! newest record and starts at the oldest of the last `k` records at or past a safe bound:
//!
//! - `DropOldest`: `tail` of a snapshot. The writer may overwrite those records before the
//!   reader gets to them; the reader then gets `Lagged(n)` like any reader a lap behind.
//! - `Block`/`Fail`: `limit - capacity`, where `limit` is the position the writer will not
//!   write past before scanning the readers again. The writer stores `limit = u64::MAX`
//!   before each scan's RMW on `active` and the real value after it; the joiner loads
//!   `limit` after its own RMW on `active`. Either the joiner synchronises with the last
//!   scan that missed its bit, and loads that scan's `MAX` or a later value, or the scan
//!   sees it `JOINING` and stops the writer where it is. So the records it picks are intact
//!   and stay so until its cursor is visible (then the scans see the cursor). On `MAX` (a
//!   scan under way) it takes no history rather than wait.
//!
//! Under `Block`/`Fail` a scan also lowers the writer's cached minimum to the oldest indexed
//! record when that costs no room for the claim at hand, so the last `H` records are
//! protectable when they fit; history never makes the writer wait. Entries that fail their
//! check or hold impossible positions end the walk: a corrupt index costs only history.
//!
//! # Dead readers
//!
//! A slot records its owner as pid + process start time + pid namespace (see `owner.rs`
//! for why not a liveness token). When the ring is full (Block, Fail), at most once per
//! [`Writer::set_liveness_interval`] the writer judges the owners of the slots in its way
//! and frees (CAS `ACTIVE`→`RELEASING`→`FREE`) those whose process is gone for sure; so a
//! crashed reader never blocks the writer forever. [`Writer::reclaim_dead`] does it for
//! all slots on demand; a reader finding no free slot does it too. Owners in another pid
//! namespace, or whose `/proc` entry cannot be read, are never judged dead.
//!
//! # Hostile peers
//!
//! Every party can write the whole region. Everything loaded from it is validated before
//! use: capacity, slot count and policy at attach; positions (8-aligned, `cursor <=
//! write`, within a capacity under Block/Fail, `tail <= write <= tail + capacity`); each
//! header once, with [`record::decode`](crate::record::decode). Violations are
//! [`Corrupt`](crate::ring::Corrupt) errors; nothing is read out of bounds. A reader whose
//! slot was reclaimed gets [`RecvError::Evicted`]. Payload bytes read in place may still
//! change under the reader: treat them as untrusted input.
//!
//! # Limits
//!
//! At most [`MAX_SLOTS`] readers. Waiting is polling with backoff (a doorbell comes in a
//! separate layer). A reader wrongly judged dead (impossible for a process in the writer's
//! pid namespace with a readable `/proc`) keeps writing its cursor until it notices.

mod control;
mod history;
mod owner;
mod reader;
mod slots;
mod writer;

use std::ptr::NonNull;

use thiserror::Error;

pub use control::BroadcastControl;
/// Test support under loom: which process each model thread is, and which are alive.
#[cfg(loom)]
#[doc(hidden)]
pub use owner::model as loom_processes;
pub use reader::{Peeked, Reader, RecvError};
pub use writer::{Claim, SendError, Writer, DEFAULT_LIVENESS_INTERVAL};

use control::{header_size, Ring};
use slots::Slot;

use super::{capacity_log2, check_place, LayoutError, RESERVE};
use crate::layout::Padded;
use crate::region::Region;
use crate::sync::Ordering;

/// Most reader slots a ring can have.
pub const MAX_SLOTS: u32 = 64;

/// Most records a ring can keep for late joiners ([`Config::history`]).
pub const MAX_HISTORY: u32 = 64;

/// What the writer does when a reader has not read the space it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Wait for the slowest live reader (`try_send` returns `Full`, `send_timeout` waits).
    Block,
    /// Overwrite the oldest records; slow readers get `Lagged(n)`.
    DropOldest,
    /// Never wait: `Full`, handing the message back.
    Fail,
}

impl Policy {
    fn code(self) -> u32 {
        match self {
            Policy::Block => 1,
            Policy::DropOldest => 2,
            Policy::Fail => 3,
        }
    }

    fn from_code(code: u32) -> Option<Policy> {
        match code {
            1 => Some(Policy::Block),
            2 => Some(Policy::DropOldest),
            3 => Some(Policy::Fail),
            _ => None,
        }
    }
}

/// Shape of a broadcast ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Data bytes: a power of two in [`MIN_CAPACITY`](super::MIN_CAPACITY)..=[`MAX_CAPACITY`](super::MAX_CAPACITY).
    pub capacity: u64,
    /// Reader slots, `1..=MAX_SLOTS`.
    pub slots: u32,
    /// Back-pressure policy.
    pub policy: Policy,
    /// Records a reader may join back ([`Reader::attach_with_history`]), `0..=MAX_HISTORY`:
    /// the writer indexes the start of the last `history` data records. Under `Block` and
    /// `Fail` it also rescans the readers early enough to keep them intact when it can
    /// (never waiting for them: history is best effort). 0: no index, no extra work.
    pub history: u32,
}

/// Bytes a broadcast ring occupies in a region (control block, slots, data).
pub const fn required_size(capacity: u64, slots: u32) -> u64 {
    header_size(slots) + capacity
}

/// A broadcast ring cannot be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum InitError {
    /// Capacity or placement is wrong.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The slot count is out of range.
    #[error("{slots} reader slots asked for; a broadcast ring has 1 to {MAX_SLOTS}")]
    BadSlots {
        /// Slots asked for.
        slots: u32,
    },
    /// The history size is out of range.
    #[error("history of {history} records asked for; a broadcast ring keeps 0 to {MAX_HISTORY}")]
    BadHistory {
        /// History asked for.
        history: u32,
    },
}

/// A writer, reader or observer cannot attach to a broadcast ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum AttachError {
    /// No ring of this flavor here, wrong placement, or impossible positions.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The control block holds an impossible value.
    #[error(
        "broadcast control block has an impossible {what} ({found}); the segment is corrupt \
         or was not made by this version of ipcx"
    )]
    BadControl {
        /// Which field.
        what: &'static str,
        /// Its value.
        found: u64,
    },
    /// Every reader slot is taken by a live (or unjudgeable) reader.
    #[error(
        "all {slots} reader slots are taken; drop a reader or create the ring with more slots"
    )]
    NoFreeSlot {
        /// Slots the ring has.
        slots: u32,
    },
}

/// Writes a fresh broadcast ring at `offset` of `region`.
///
/// Call once, by the creator, before any writer or reader attaches (publish the region to
/// other processes only afterwards, e.g. with the segment's init word).
pub fn init<R: Region>(region: &R, offset: usize, config: Config) -> Result<(), InitError> {
    let cap_log2 = capacity_log2(config.capacity)?;
    if config.slots == 0 || config.slots > MAX_SLOTS {
        return Err(InitError::BadSlots { slots: config.slots });
    }
    if config.history > MAX_HISTORY {
        return Err(InitError::BadHistory { history: config.history });
    }
    check_place(offset, required_size(config.capacity, config.slots), region.len())?;
    // SAFETY: the whole ring lies inside the region, 128-aligned (checked above).
    let place = unsafe { region.base().add(offset) }.cast::<BroadcastControl>();
    let ctrl = BroadcastControl::new(cap_log2, config.slots, config.policy, config.history);
    // SAFETY: nobody uses the place yet (the caller's contract): a plain write is race-free.
    unsafe { place.as_ptr().write(ctrl) };
    // SAFETY: the slots follow the control block inside the checked place.
    let first: NonNull<Padded<Slot>> = unsafe { place.add(1) }.cast();
    for i in 0..config.slots as usize {
        // SAFETY: slot i < slots lies inside the checked place.
        let slot = unsafe { first.add(i) };
        // SAFETY: in bounds and aligned; nobody uses it yet, so a plain write is race-free.
        unsafe { slot.as_ptr().write(Padded(Slot::new())) };
    }
    #[cfg(loom)]
    control::shadow::create(
        place.as_ptr() as usize + header_size(config.slots) as usize,
        (config.capacity / 8) as usize,
    );
    // The word at `write` (0) must say "empty" whatever the memory held before.
    #[cfg(not(loom))]
    {
        // SAFETY: the data area starts `header_size` bytes into the checked place; its first
        // word is 8-aligned (the place is 128-aligned, the header a multiple of 128) and
        // nobody uses it yet.
        let first = unsafe { place.cast::<u8>().add(header_size(config.slots) as usize) };
        // SAFETY: as above.
        unsafe { first.cast::<crate::sync::DataWord>().as_ref() }
            .store(super::EMPTY, Ordering::Relaxed);
    }
    // SAFETY: just initialised; only atomics are accessed through the reference.
    let info = unsafe { &place.as_ref().info };
    // SYNC: ring initialised
    info.tag.store(control::TAG, Ordering::Release);
    Ok(())
}

/// Counters of a broadcast ring, readable from any process that maps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BroadcastStats {
    /// The ring's policy.
    pub policy: Policy,
    /// Data capacity in bytes.
    pub capacity: u64,
    /// Records published by the writer.
    pub published: u64,
    /// Claims refused because a live reader lacked space.
    pub full: u64,
    /// Records the ring overwrote (DropOldest), read or not.
    pub overwritten: u64,
    /// Records readers missed: the sum of every `Lagged(n)`.
    pub dropped: u64,
    /// Reader slots freed because their process had died.
    pub reclaimed: u64,
    /// Joined readers, by slot.
    pub readers: Vec<ReaderStats>,
}

/// Counters of one joined reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderStats {
    /// Slot index.
    pub slot: u32,
    /// Owner process id.
    pub pid: u32,
    /// Still joining (its position is not published yet).
    pub joining: bool,
    /// Records it released.
    pub consumed: u64,
    /// Records it missed.
    pub lagged: u64,
    /// Bytes between its position and the writer's.
    pub behind: u64,
}

/// Reads the counters of the broadcast ring at `offset` of `region`, without joining it.
pub fn stats<R: Region>(region: &R, offset: usize) -> Result<BroadcastStats, AttachError> {
    Ok(stats_of(&Ring::attach(Borrowed(region), offset)?))
}

fn stats_of<R: Region>(ring: &Ring<R>) -> BroadcastStats {
    let c = ring.ctrl();
    let write = c.writer.write.load(Ordering::Relaxed);
    let readers = (0..ring.n_slots)
        .filter_map(|i| {
            let slot = ring.slot(i);
            let w = slot.state.load(Ordering::Relaxed);
            let state = slots::state_of(w);
            (state == slots::JOINING || state == slots::ACTIVE).then(|| ReaderStats {
                slot: i,
                pid: slots::pid_of(w),
                joining: state == slots::JOINING,
                consumed: slot.consumed.load(Ordering::Relaxed),
                lagged: slot.lagged.load(Ordering::Relaxed),
                behind: write.saturating_sub(slot.cursor.load(Ordering::Relaxed)),
            })
        })
        .collect();
    BroadcastStats {
        policy: ring.policy,
        capacity: ring.cap,
        published: c.writer.published.load(Ordering::Relaxed),
        full: c.writer.full.load(Ordering::Relaxed),
        overwritten: c.writer.tail_seq.load(Ordering::Relaxed),
        dropped: c.registry.dropped.load(Ordering::Relaxed),
        reclaimed: c.registry.reclaimed.load(Ordering::Relaxed),
        readers,
    }
}

/// A borrowed region, so [`stats`] can look without owning.
struct Borrowed<'a, R: Region>(&'a R);

// SAFETY: the borrow keeps the underlying region alive and mapped for the value's life.
unsafe impl<R: Region> Region for Borrowed<'_, R> {
    fn base(&self) -> NonNull<u8> {
        self.0.base()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for BroadcastControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastControl")
            .field("write", &self.writer.write.load(Ordering::Relaxed))
            .field("tail", &self.writer.tail.load(Ordering::Relaxed))
            .field("active", &self.registry.active.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
#[cfg(all(test, not(loom)))]
mod tests_history;
