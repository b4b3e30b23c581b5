//! Reader slots: one cache line per reader, claimed by CAS, freed by their reader or, when
//! that process died, reclaimed by whoever notices (the writer when it is full, a reader
//! finding no free slot).
//!
//! The state word packs `owner pid (32) | generation (30) | state (2)`:
//!
//! ```text
//! FREE ──claim (CAS, gen+1, pid)──▶ JOINING ──join (CAS)──▶ ACTIVE
//!  ▲                                   │                      │
//!  └── free (store) ◀── RELEASING ◀────┴── leave / reclaim (CAS) ┘
//! ```
//!
//! The generation makes every claim distinct, so a CAS made on an old observation (a
//! reclaimer that judged a previous owner, a reader evicted and re-claimed) fails instead
//! of freeing the new owner's slot. `RELEASING` keeps the slot unclaimable while the
//! releaser clears the owner fields and the `active` bit.

use super::control::Ring;
use super::owner::{self, Identity, Verdict};
use super::Policy;
use crate::region::Region;
use crate::ring::Corrupt;
use crate::sync::{AtomicU64, Ordering};

/// Slot states (low 2 bits of the state word).
pub(super) const FREE: u64 = 0;
pub(super) const JOINING: u64 = 1;
pub(super) const ACTIVE: u64 = 2;
pub(super) const RELEASING: u64 = 3;

const GEN_MASK: u64 = (1 << 30) - 1;

/// One reader's line in shared memory.
#[repr(C)]
pub(super) struct Slot {
    /// State word (see the module doc). CAS by the owner (claim, join, leave) and by a
    /// reclaimer (reclaim); plain store only by whoever holds it in `RELEASING`.
    pub(super) state: AtomicU64,
    /// Next position the reader reads; only the owner stores it (Release, after reading).
    /// Block/Fail: `write - capacity <= cursor <= write`. DropOldest: anywhere `<= write`.
    pub(super) cursor: AtomicU64,
    /// Records the reader released; owner only.
    pub(super) consumed: AtomicU64,
    /// Records the reader missed (`Lagged`); owner only.
    pub(super) lagged: AtomicU64,
    /// Owner's start time (clock ticks after boot), 0 unknown; written by the owner while
    /// `JOINING`, zeroed by the releaser.
    pub(super) start_time: AtomicU64,
    /// Owner's pid-namespace inode, 0 unknown; as `start_time`.
    pub(super) pid_ns: AtomicU64,
}

impl Slot {
    pub(super) fn new() -> Slot {
        Slot {
            state: AtomicU64::new(FREE),
            cursor: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            start_time: AtomicU64::new(0),
            pid_ns: AtomicU64::new(0),
        }
    }
}

/// Packs a state word.
pub(super) const fn word(state: u64, generation: u64, pid: u32) -> u64 {
    ((pid as u64) << 32) | ((generation & GEN_MASK) << 2) | state
}

pub(super) const fn state_of(w: u64) -> u64 {
    w & 3
}

const fn gen_of(w: u64) -> u64 {
    (w >> 2) & GEN_MASK
}

pub(super) const fn pid_of(w: u64) -> u32 {
    (w >> 32) as u32
}

/// Where a freshly joined reader starts.
#[derive(Clone, Copy, Debug)]
pub(super) struct Start {
    /// First position it reads (the writer's position at join time, or a record before it).
    pub(super) pos: u64,
    /// Data records before `pos` (exact under `DropOldest`).
    pub(super) seq: u64,
    /// Its `ACTIVE` state word.
    pub(super) me: u64,
}

/// Iterates the set bits of `mask` as slot indices.
fn bits(mut mask: u64) -> impl Iterator<Item = u32> {
    std::iter::from_fn(move || {
        let i = mask.trailing_zeros();
        mask &= mask.wrapping_sub(1);
        (i < 64).then_some(i)
    })
}

impl<R: Region> Ring<R> {
    /// Claims the first free slot for process `pid`: its index and `JOINING` word.
    pub(super) fn claim_slot(&self, pid: u32) -> Option<(u32, u64)> {
        (0..self.n_slots).find_map(|i| {
            let slot = self.slot(i);
            let w = slot.state.load(Ordering::Relaxed);
            if state_of(w) != FREE {
                return None;
            }
            let joining = word(JOINING, gen_of(w) + 1, pid);
            // SYNC: slot freed
            slot.state
                .compare_exchange(w, joining, Ordering::AcqRel, Ordering::Relaxed)
                .ok()
                .map(|_| (i, joining))
        })
    }

    /// Finishes joining slot `i` (held as `joining`): records the owner, announces the slot
    /// to the writer, then starts at the writer's position, or up to `k` records before it
    /// (see `history.rs`). `None` if a reclaimer took the slot meanwhile.
    pub(super) fn join(&self, i: u32, joining: u64, id: &Identity, k: u32) -> Option<Start> {
        let slot = self.slot(i);
        slot.start_time.store(id.start_time, Ordering::Relaxed);
        slot.pid_ns.store(id.pid_ns, Ordering::Relaxed);
        slot.consumed.store(0, Ordering::Relaxed);
        slot.lagged.store(0, Ordering::Relaxed);
        // An RMW, ordered against the writer's RMW in `scan`: either the scan sees this bit,
        // or the loads below see every position (and `limit`) the writer stored before it.
        // SYNC: reader joined
        self.ctrl().registry.active.fetch_or(1 << i, Ordering::AcqRel);
        let k = if self.history == 0 { 0 } else { k };
        let (pos, seq) = if self.policy == Policy::DropOldest {
            let s = self.snapshot();
            let back = self.history_start(k, s.published, s.write, s.tail);
            back.unwrap_or((s.write, s.published))
        } else {
            // Loaded after the RMW above: bounds what the writer writes until our cursor
            // is visible (`SYNC: write limit`).
            let limit = if k > 0 { self.write_limit() } else { None };
            let w = &self.ctrl().writer;
            // SYNC: records published
            let write = w.write.load(Ordering::Acquire);
            let published = w.published.load(Ordering::Relaxed);
            let back = limit
                .and_then(|l| self.history_start(k, published, write, l.saturating_sub(self.cap)));
            back.unwrap_or((write, published))
        };
        slot.cursor.store(pos, Ordering::Relaxed);
        let me = word(ACTIVE, gen_of(joining), id.pid);
        // SYNC: slot active
        let ok = slot.state.compare_exchange(joining, me, Ordering::AcqRel, Ordering::Relaxed);
        ok.ok().map(|_| Start { pos, seq, me })
    }

    /// The owner gives slot `i` (its `ACTIVE` word `me`) up. False if it was not its any more.
    pub(super) fn leave(&self, i: u32, me: u64) -> bool {
        self.release(i, me)
    }

    /// Frees slot `i`, observed as `w` and judged dead. False if it changed meanwhile.
    pub(super) fn reclaim(&self, i: u32, w: u64) -> bool {
        let done = self.release(i, w);
        if done {
            self.ctrl().registry.reclaimed.fetch_add(1, Ordering::Relaxed);
        }
        done
    }

    fn release(&self, i: u32, w: u64) -> bool {
        let slot = self.slot(i);
        let releasing = (w & !3) | RELEASING;
        if slot.state.compare_exchange(w, releasing, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return false;
        }
        self.ctrl().registry.active.fetch_and(!(1 << i), Ordering::AcqRel);
        slot.start_time.store(0, Ordering::Relaxed);
        slot.pid_ns.store(0, Ordering::Relaxed);
        // SYNC: slot freed
        slot.state.store(word(FREE, gen_of(w), 0), Ordering::Release);
        true
    }

    /// Whether the owner of slot `i`, whose state word was `w`, is dead for sure.
    pub(super) fn owner_dead(&self, i: u32, w: u64) -> bool {
        let slot = self.slot(i);
        let start = slot.start_time.load(Ordering::Relaxed);
        let ns = slot.pid_ns.load(Ordering::Relaxed);
        owner::judge(pid_of(w), start, ns) == Verdict::Dead
    }

    /// Reclaims every joining or active slot whose owner is dead; returns how many.
    pub(super) fn reclaim_dead(&self) -> usize {
        (0..self.n_slots)
            .filter(|&i| {
                // SYNC: slot active
                let w = self.slot(i).state.load(Ordering::Acquire);
                matches!(state_of(w), JOINING | ACTIVE)
                    && self.owner_dead(i, w)
                    && self.reclaim(i, w)
            })
            .count()
    }

    /// Reclaims the dead among the slots that keep a record of `need` bytes at `write` from
    /// fitting (joining slots, and active ones too far behind); returns how many.
    pub(super) fn reclaim_blockers(&self, write: u64, need: u64) -> usize {
        let mask = self.ctrl().registry.active.load(Ordering::Acquire) & self.slot_mask();
        bits(mask)
            .filter(|&i| {
                let slot = self.slot(i);
                // SYNC: slot active
                let w = slot.state.load(Ordering::Acquire);
                let blocking = match state_of(w) {
                    JOINING => true,
                    ACTIVE => {
                        let c = slot.cursor.load(Ordering::Relaxed).min(write);
                        write + need - c > self.cap
                    }
                    _ => false,
                };
                blocking && self.owner_dead(i, w) && self.reclaim(i, w)
            })
            .count()
    }

    /// The writer's scan (Block, Fail): the lowest position a live reader may still read,
    /// `write` when there is none. O(joined readers).
    pub(super) fn scan(&self, write: u64) -> Result<u64, Corrupt> {
        // An RMW, not a load: see `join`.
        // SYNC: reader joined
        let mask = self.ctrl().registry.active.fetch_add(0, Ordering::AcqRel) & self.slot_mask();
        let mut min = write;
        for i in bits(mask) {
            let slot = self.slot(i);
            // SYNC: slot active
            let w = slot.state.load(Ordering::Acquire);
            match state_of(w) {
                ACTIVE => {
                    // SYNC: space released
                    let c = slot.cursor.load(Ordering::Acquire);
                    if c % 8 != 0 || c > write || write - c > self.cap {
                        return Err(self.bad_position(c, write));
                    }
                    min = min.min(c);
                }
                // Its start is not known yet: no room at all until it is.
                JOINING => min = min.min(self.intact_from(write)),
                _ => {}
            }
        }
        Ok(min)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn state_words_pack_and_iterate() {
        let w = word(ACTIVE, GEN_MASK + 5, 4242);
        assert_eq!((state_of(w), gen_of(w), pid_of(w)), (ACTIVE, 4, 4242));
        assert_eq!(bits(0b1010_0001).collect::<Vec<_>>(), vec![0, 5, 7]);
        assert_eq!(bits(1 << 63).collect::<Vec<_>>(), vec![63]);
        assert_eq!(bits(0).count(), 0);
    }
}
