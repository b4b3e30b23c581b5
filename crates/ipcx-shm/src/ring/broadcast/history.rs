//! History for late joiners: the index of where the last `H` data records start, and how a
//! joining reader finds a start `k <= H` records back without racing the writer.
//!
//! Records have variable sizes, so nothing in the data area leads backwards. The writer
//! therefore keeps, in the control block, entry `s % H` = (tag `s + 1`, position) for data
//! record `s`, written before the commit stores `write` (`SYNC: index entry`, a per-entry
//! seqlock: tag 0, Release fence, position, tag `s + 1` with Release; a reader loads the tag
//! with Acquire, the position, an Acquire fence, the tag again, and trusts the position only
//! if both tags are `s + 1`). An entry overwritten for record `s + H` fails the check, and
//! so do all older ones (entries are rewritten in record order), so a backwards walk stops
//! at the first failure.
//!
//! # Joining back (the race with the writer's reclaim)
//!
//! A joiner registers first (slot `JOINING`, its `active` bit set with an AcqRel RMW, as
//! without history), then picks the oldest of the last `k` indexed records that lies at or
//! past a *safe bound*, stores that position as its cursor and turns `ACTIVE`. From then on
//! the writer's scans see the cursor; the bound covers the window before that:
//!
//! - `DropOldest`: the bound is `tail` of a snapshot (`SYNC: snapshot`), `published` of the
//!   same snapshot counts the records before its `write`. Records at or past `tail` were
//!   intact then; if the writer overwrites one before the joiner reads it, the usual seqlock
//!   check notices and the reader gets `Lagged(n)` (its sequence number is the record's).
//! - `Block`/`Fail`: the writer never writes at or past `limit` (its cached minimum reader
//!   position plus the capacity) without scanning the readers again, and before each scan
//!   it stores `limit = u64::MAX`, ordered before the scan's RMW on `active`
//!   (`SYNC: write limit`). The joiner loads `limit` after its own RMW on `active`. RMWs
//!   on one word are totally ordered: if the last scan before the joiner's RMW precedes it,
//!   the joiner synchronises with it and loads that scan's `MAX` or a later value; every
//!   later scan sees the joiner `JOINING` and stops the writer at its current position
//!   (storing that as `limit`). So the value loaded (unless `MAX`) bounds every byte the
//!   writer writes until the joiner's cursor is visible, and positions at or past
//!   `limit - capacity` are neither overwritten meanwhile nor were before (the writer has
//!   never been past `limit`). A joiner that keeps seeing `MAX` (a scan under way, or a
//!   writer that died in one) takes no history: it starts at `write`, which is always safe.
//!
//! Under `Block`/`Fail` the writer also keeps the history intact when it can: each scan
//! lowers its cached minimum to the start of the oldest of the last `H` records, unless
//! that would keep the record being claimed from fitting (history never makes it wait).
//! So a joiner gets fewer than `k` records only when the records did not fit in the ring,
//! were not that many, or the writer is racing it.

use super::control::Ring;
use super::MAX_HISTORY;
use crate::region::Region;
use crate::sync::{fence, spin_hint, AtomicU64, Ordering};

/// One index entry: where data record `tag - 1` starts.
#[repr(C)]
pub(super) struct Entry {
    /// `s + 1` while `pos` is data record `s`'s position (`s % H` = this entry's index);
    /// 0 while the writer rewrites the entry or before its first record. Writer only.
    pub(super) tag: AtomicU64,
    /// Position of record `s`'s header: 8-aligned, below `write`. Writer only.
    pub(super) pos: AtomicU64,
}

/// The history index, [`MAX_HISTORY`] entries (the first `H` in use), 8 cache lines.
#[repr(C, align(128))]
pub(super) struct HistoryIndex {
    pub(super) entries: [Entry; MAX_HISTORY as usize],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<HistoryIndex>() == 1024);

impl HistoryIndex {
    pub(super) fn new() -> HistoryIndex {
        HistoryIndex {
            entries: std::array::from_fn(|_| Entry {
                tag: AtomicU64::new(0),
                pos: AtomicU64::new(0),
            }),
        }
    }
}

/// The writer's own copy of the positions it indexed (shared memory can be rewritten by
/// anyone; the writer's rescans must not trust it).
#[derive(Debug)]
pub(super) struct Recent {
    pos: Box<[u64]>,
    /// Records this writer indexed (entries before a takeover are unknown to it).
    known: u64,
}

impl Recent {
    pub(super) fn new(history: u32) -> Recent {
        Recent { pos: vec![0; history as usize].into_boxed_slice(), known: 0 }
    }

    /// Start of the oldest of the last `H` records this writer indexed; `write` if none.
    pub(super) fn floor(&self, published: u64, write: u64) -> u64 {
        let h = self.pos.len() as u64;
        if h == 0 || self.known == 0 {
            return write;
        }
        let oldest = published - self.known.min(h);
        self.pos[(oldest % h) as usize]
    }
}

/// Loads `limit` this many times at most while a scan is under way.
const LIMIT_TRIES: u32 = if cfg!(loom) { 3 } else { 256 };

impl<R: Region> Ring<R> {
    /// Writer: indexes data record `seq` at `pos` (before the commit stores `write`).
    pub(super) fn index(&self, recent: &mut Recent, seq: u64, pos: u64) {
        let h = u64::from(self.history);
        if h == 0 {
            return;
        }
        recent.pos[(seq % h) as usize] = pos;
        recent.known += 1;
        let e = &self.ctrl().history.entries[(seq % h) as usize];
        e.tag.store(0, Ordering::Relaxed);
        // SYNC: index entry
        fence(Ordering::Release);
        e.pos.store(pos, Ordering::Relaxed);
        // SYNC: index entry
        e.tag.store(seq + 1, Ordering::Release);
    }

    /// Where data record `s` starts, if the index still holds it.
    fn entry(&self, s: u64) -> Option<u64> {
        let e = &self.ctrl().history.entries[(s % u64::from(self.history)) as usize];
        // SYNC: index entry
        let t1 = e.tag.load(Ordering::Acquire);
        let pos = e.pos.load(Ordering::Relaxed);
        // SYNC: index entry
        fence(Ordering::Acquire);
        let t2 = e.tag.load(Ordering::Relaxed);
        (t1 == s + 1 && t2 == t1).then_some(pos)
    }

    /// Joiner (Block/Fail), after its RMW on `active`: the writer's `limit`, or `None` while
    /// a scan keeps it unknown.
    pub(super) fn write_limit(&self) -> Option<u64> {
        let line = &self.ctrl().writer;
        for _ in 0..LIMIT_TRIES {
            // SYNC: write limit
            let limit = line.limit.load(Ordering::Acquire);
            if limit != u64::MAX {
                return Some(limit);
            }
            spin_hint();
        }
        None
    }

    /// Joiner: the oldest of the last `k` data records before `write` (`published` records
    /// precede it, maybe more) that starts at or past `bound`, as (position, record number).
    /// Entries that fail their check or hold impossible positions end the walk.
    pub(super) fn history_start(
        &self,
        k: u32,
        published: u64,
        write: u64,
        bound: u64,
    ) -> Option<(u64, u64)> {
        let h = u64::from(self.history);
        let (mut found, mut got) = (None, 0);
        for s in (published.saturating_sub(h)..published).rev() {
            if got == k {
                break;
            }
            match self.entry(s) {
                // Committed after the `write` we start from: not history yet.
                Some(pos) if pos >= write => continue,
                Some(pos) if pos % 8 == 0 && pos >= bound && pos >= self.intact_from(write) => {
                    found = Some((pos, s));
                    got += 1;
                }
                _ => break,
            }
        }
        found
    }
}
