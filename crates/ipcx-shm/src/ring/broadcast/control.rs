//! The shared control block of a broadcast ring and the geometry both ends derive from it.

use std::mem::size_of;
use std::ptr::NonNull;
use std::time::Duration;

use super::history::HistoryIndex;
use super::slots::Slot;
use super::{AttachError, Policy, MAX_HISTORY, MAX_SLOTS};
use crate::layout::Padded;
use crate::record::Corruption;
use crate::region::Region;
use crate::ring::{capacity_log2, check_place, max_payload, Corrupt};
use crate::sync::{fence, spin_hint, AtomicU32, AtomicU64, Ordering};

/// A word of the data area (record header or payload word).
#[cfg(not(loom))]
pub(super) type Word = crate::sync::DataWord;
/// Under loom, a model atomic standing in for it (see [`shadow`]).
#[cfg(loom)]
pub(super) type Word = AtomicU64;

/// Tag identifying a broadcast control block: "BCS2", records published by their headers
/// (the writer keeps the word at `write` zero). "BCST", whose writer did not, is refused:
/// a reader taking records by their headers could read stale bytes there.
pub(super) const TAG: u32 = 0x4243_5332;

/// One published copy of the writer's positions (see [`Ring::snapshot`]).
#[repr(C)]
pub(super) struct Positions {
    pub(super) write: AtomicU64,
    pub(super) published: AtomicU64,
    pub(super) tail: AtomicU64,
    pub(super) tail_seq: AtomicU64,
}

impl Positions {
    fn new() -> Positions {
        Positions {
            write: AtomicU64::new(0),
            published: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            tail_seq: AtomicU64::new(0),
        }
    }
}

/// Written by the writer only.
#[repr(C)]
pub(super) struct WriterLine {
    /// Next byte position the writer writes. Monotonic, 8-aligned.
    pub(super) write: AtomicU64,
    /// Data records published (PAD records not counted). Monotonic.
    pub(super) published: AtomicU64,
    /// `DropOldest`: position of the oldest record not (being) overwritten, a record
    /// boundary with `write - capacity <= tail <= write`. Stays 0 under the other policies.
    pub(super) tail: AtomicU64,
    /// `DropOldest`: data records before `tail` (records the ring has overwritten).
    pub(super) tail_seq: AtomicU64,
    /// Claims refused because a live reader lacked space.
    pub(super) full: AtomicU64,
    /// `DropOldest`: number of the last complete update of `copies`; `copies[ver % 2]` is
    /// consistent. Monotonic.
    pub(super) ver: AtomicU64,
    /// `DropOldest`: double-buffered copies of (`write`, `published`, `tail`, `tail_seq`);
    /// the writer fills the one `ver` does not point at, then advances `ver`.
    pub(super) copies: [Positions; 2],
    /// Block/Fail: the writer writes no byte at or past this position before it stores a
    /// new value (its cached minimum reader position plus the capacity), so no byte at or
    /// past `limit - capacity` is overwritten meanwhile; `u64::MAX` while a scan is under
    /// way (unknown). Stored before and after each scan (see `history.rs`).
    pub(super) limit: AtomicU64,
}

/// Read-modify-written by readers and reclaimers, rarely (join, leave, lag, reclaim).
#[repr(C)]
pub(super) struct Registry {
    /// Bit `i` set while slot `i` is joining or active: the writer's scan visits only these.
    pub(super) active: AtomicU64,
    /// Slots freed because their owner process had died.
    pub(super) reclaimed: AtomicU64,
    /// Records readers missed (sum of every `Lagged(n)`).
    pub(super) dropped: AtomicU64,
}

/// Written once by `init`.
#[repr(C)]
pub(super) struct Info {
    /// [`TAG`] once initialised (stored last, Release).
    pub(super) tag: AtomicU32,
    /// log2 of the data capacity.
    pub(super) cap_log2: AtomicU32,
    /// Number of reader slots, `1..=MAX_SLOTS`.
    pub(super) slots: AtomicU32,
    /// [`Policy`] code.
    pub(super) policy: AtomicU32,
    /// Entries of the history index the writer keeps, `0..=MAX_HISTORY`.
    pub(super) history: AtomicU32,
}

/// The control block at the start of a broadcast ring; reader slots and data follow it.
#[repr(C)]
pub struct BroadcastControl {
    pub(super) writer: Padded<WriterLine>,
    pub(super) registry: Padded<Registry>,
    pub(super) info: Padded<Info>,
    /// Where the last `history` data records start (writer only; see `history.rs`).
    pub(super) history: HistoryIndex,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<BroadcastControl>() == 384 + 1024);
    assert!(std::mem::align_of::<BroadcastControl>() == 128);
    assert!(size_of::<Padded<Slot>>() == 128);
};

impl BroadcastControl {
    /// A fresh control block (tag still 0).
    pub(super) fn new(cap_log2: u32, slots: u32, policy: Policy, history: u32) -> BroadcastControl {
        BroadcastControl {
            writer: Padded(WriterLine {
                write: AtomicU64::new(0),
                published: AtomicU64::new(0),
                tail: AtomicU64::new(0),
                tail_seq: AtomicU64::new(0),
                full: AtomicU64::new(0),
                ver: AtomicU64::new(0),
                copies: [Positions::new(), Positions::new()],
                limit: AtomicU64::new(0),
            }),
            registry: Padded(Registry {
                active: AtomicU64::new(0),
                reclaimed: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
            info: Padded(Info {
                tag: AtomicU32::new(0),
                cap_log2: AtomicU32::new(cap_log2),
                slots: AtomicU32::new(slots),
                policy: AtomicU32::new(policy.code()),
                history: AtomicU32::new(history),
            }),
            history: HistoryIndex::new(),
        }
    }
}

/// Bytes of the control block plus `slots` reader slots (the data area starts there).
pub(super) const fn header_size(slots: u32) -> u64 {
    size_of::<BroadcastControl>() as u64 + slots as u64 * size_of::<Padded<Slot>>() as u64
}

/// A consistent view of the writer's positions (see [`Ring::snapshot`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Snapshot {
    pub(super) write: u64,
    pub(super) published: u64,
    pub(super) tail: u64,
    pub(super) tail_seq: u64,
}

/// Geometry and addresses of an attached ring, validated once.
pub(super) struct Ring<R: Region> {
    pub(super) region: R,
    ctrl: NonNull<BroadcastControl>,
    slots: NonNull<Padded<Slot>>,
    data: NonNull<u8>,
    pub(super) n_slots: u32,
    pub(super) cap_log2: u32,
    pub(super) cap: u64,
    pub(super) max_payload: u64,
    pub(super) policy: Policy,
    /// Entries of the history index in use (`0..=MAX_HISTORY`).
    pub(super) history: u32,
    #[cfg(loom)]
    shadow: std::sync::Arc<shadow::Shadow>,
}

impl<R: Region> Ring<R> {
    /// Validates the control block at `offset` of `region` and everything it implies.
    pub(super) fn attach(region: R, offset: usize) -> Result<Ring<R>, AttachError> {
        check_place(offset, size_of::<BroadcastControl>() as u64, region.len())?;
        // SAFETY: the control block lies inside the region (checked above), 128-aligned on a
        // 4096-aligned base.
        let ctrl = unsafe { region.base().add(offset) }.cast::<BroadcastControl>();
        // SAFETY: in bounds and aligned (above); only atomics are read through it.
        let info = unsafe { &ctrl.as_ref().info };
        // SYNC: ring initialised
        let tag = info.tag.load(Ordering::Acquire);
        if tag != TAG {
            return Err(crate::ring::LayoutError::WrongFlavor {
                expected: "broadcast",
                found: tag,
            }
            .into());
        }
        let log2 = info.cap_log2.load(Ordering::Relaxed);
        let cap = 1u64.checked_shl(log2).unwrap_or(0);
        capacity_log2(cap)?;
        let n_slots = info.slots.load(Ordering::Relaxed);
        if n_slots == 0 || n_slots > MAX_SLOTS {
            return Err(AttachError::BadControl {
                what: "reader slot count",
                found: n_slots.into(),
            });
        }
        let code = info.policy.load(Ordering::Relaxed);
        let policy = Policy::from_code(code)
            .ok_or(AttachError::BadControl { what: "policy code", found: code.into() })?;
        let history = info.history.load(Ordering::Relaxed);
        if history > MAX_HISTORY {
            return Err(AttachError::BadControl { what: "history size", found: history.into() });
        }
        let head = header_size(n_slots);
        check_place(offset, head + cap, region.len())?;
        // SAFETY: slots and data lie inside the region (checked above).
        let slots = unsafe { ctrl.cast::<u8>().add(size_of::<BroadcastControl>()) }.cast();
        // SAFETY: as above; head <= region length, so it fits in usize.
        let data = unsafe { ctrl.cast::<u8>().add(head as usize) };
        Ok(Ring {
            region,
            ctrl,
            slots,
            data,
            n_slots,
            cap_log2: log2,
            cap,
            max_payload: max_payload(cap),
            policy,
            history,
            #[cfg(loom)]
            shadow: shadow::find(data.as_ptr() as usize),
        })
    }

    pub(super) fn ctrl(&self) -> &BroadcastControl {
        // SAFETY: `ctrl` points into `region` (checked at attach), which self keeps alive;
        // the control block holds only atomics, so shared references are sound.
        unsafe { self.ctrl.as_ref() }
    }

    /// Reader slot `i` (`i < n_slots`).
    pub(super) fn slot(&self, i: u32) -> &Slot {
        debug_assert!(i < self.n_slots);
        // SAFETY: i < n_slots, so the slot lies inside the region (checked at attach).
        let slot = unsafe { self.slots.add(i as usize) };
        // SAFETY: in bounds and aligned (above); slots hold only atomics.
        unsafe { &slot.as_ref().0 }
    }

    /// Bits of the slots that exist.
    pub(super) fn slot_mask(&self) -> u64 {
        u64::MAX >> (64 - self.n_slots)
    }

    /// The lowest position a writer at `write` has not overwritten: it has written up to
    /// `write + RESERVE` (the zero word behind its last record), one capacity on.
    pub(super) fn intact_from(&self, write: u64) -> u64 {
        (write + super::RESERVE).saturating_sub(self.cap)
    }

    /// The 8-byte word at data offset `off` (8-aligned, `off + 8 <= cap`).
    #[cfg(not(loom))]
    pub(super) fn word(&self, off: u64) -> &Word {
        debug_assert!(off % 8 == 0 && off + 8 <= self.cap);
        // SAFETY: off is 8-aligned and inside the data area (callers mask positions with
        // cap - 1; records and payloads are 8-aligned); the area stays mapped while self lives.
        unsafe { &*self.at(off).cast::<Word>() }
    }

    /// The 8-byte word at data offset `off`: its loom stand-in.
    #[cfg(loom)]
    pub(super) fn word(&self, off: u64) -> &Word {
        &self.shadow.words[(off / 8) as usize]
    }

    /// Under loom: reports a plain write (`write`) or read of the payload bytes at data
    /// offset `off` (Block/Fail, where payloads are plain memory), so loom checks they are
    /// ordered against the other side's accesses.
    #[cfg(loom)]
    pub(super) fn track(&self, off: u64, len: u64, write: bool) {
        for w in off / 8..(off + len).div_ceil(8) {
            let cell = &self.shadow.cells[w as usize];
            if write {
                cell.with_mut(|_| ());
            } else {
                cell.with(|_| ());
            }
        }
    }

    /// Address of data offset `off` (not dereferenced here; callers bound-check).
    pub(super) fn at(&self, off: u64) -> *mut u8 {
        self.data.as_ptr().wrapping_add(off as usize)
    }

    pub(super) fn corrupt(&self, pos: u64, what: Corruption) -> Corrupt {
        Corrupt { pos, what }
    }

    pub(super) fn bad_position(&self, found: u64, other: u64) -> Corrupt {
        Corrupt { pos: found, what: Corruption::BadPosition { found, other, capacity: self.cap } }
    }

    /// Copies `len` payload bytes at data offset `off` (8-aligned, inside one record) into
    /// `buf` with word-sized atomic loads, so a concurrent overwrite is a race on atomics
    /// (detected afterwards), never a data race.
    pub(super) fn load_words(&self, off: u64, len: usize, buf: &mut Vec<u8>) {
        buf.clear();
        buf.resize(len, 0);
        for (i, chunk) in buf.chunks_mut(8).enumerate() {
            let w = self.word(off + 8 * i as u64).load(Ordering::Relaxed).to_ne_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }

    /// Writes `payload` at data offset `off` (8-aligned, inside one claimed record) with
    /// word-sized atomic stores; the last word is zero-padded.
    pub(super) fn store_words(&self, off: u64, payload: &[u8]) {
        for (i, chunk) in payload.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.word(off + 8 * i as u64).store(u64::from_ne_bytes(w), Ordering::Relaxed);
        }
        #[cfg(loom)]
        // SAFETY: as in `Claim::bytes`: claimed space inside the data area (the real bytes
        // back `Peeked::bytes` under the model).
        unsafe {
            std::ptr::copy_nonoverlapping(payload.as_ptr(), self.at(off), payload.len())
        };
    }

    /// `DropOldest`: whether the record at `pos` may have been overwritten since it was read.
    /// Call after reading it (header, payload): the fence orders those reads before the load.
    pub(super) fn overwritten(&self, pos: u64) -> bool {
        // SYNC: space reclaimed
        fence(Ordering::Acquire);
        // SYNC: tail after its copy
        self.ctrl().writer.tail.load(Ordering::Acquire) > pos
    }

    /// The writer's positions, consistent with each other (`DropOldest` only).
    ///
    /// Reads the copy `ver` points at and retries only if the writer completed another
    /// update meanwhile (it may have been refilling that copy): a reader never waits for
    /// the writer, and a writer that died mid-update leaves the last copy intact. A writer
    /// that never stops bumping `ver` (a hostile one) cannot hold the reader: after
    /// [`SNAPSHOT_TRIES`] the last copy read is returned, and the callers' checks of the
    /// positions turn a torn one into an error.
    pub(super) fn snapshot(&self) -> Snapshot {
        let w = &self.ctrl().writer;
        let mut tries = 0u32;
        loop {
            // SYNC: snapshot
            let v1 = w.ver.load(Ordering::Acquire);
            let c = &w.copies[(v1 % 2) as usize];
            let snap = Snapshot {
                write: c.write.load(Ordering::Relaxed),
                published: c.published.load(Ordering::Relaxed),
                tail: c.tail.load(Ordering::Relaxed),
                tail_seq: c.tail_seq.load(Ordering::Relaxed),
            };
            fence(Ordering::Acquire);
            tries += 1;
            if w.ver.load(Ordering::Relaxed) == v1 || tries >= SNAPSHOT_TRIES {
                return snap;
            }
            spin_hint();
        }
    }
}

/// Reads of the snapshot copies before [`Ring::snapshot`] gives up waiting for a quiet
/// moment (an honest writer finishes an update in far fewer).
const SNAPSHOT_TRIES: u32 = if cfg!(loom) { 16 } else { 1 << 16 };

/// Spin, then yield, then sleep: waiting without a doorbell.
#[derive(Debug)]
pub(super) struct Backoff {
    step: u32,
}

impl Backoff {
    pub(super) fn new() -> Backoff {
        Backoff { step: 0 }
    }

    /// Waits a little, a little longer each time.
    pub(super) fn snooze(&mut self) {
        self.step = self.step.saturating_add(1);
        if cfg!(loom) || self.step <= 64 {
            spin_hint();
        } else if self.step <= 96 {
            std::thread::yield_now();
        } else {
            let exp = (self.step - 96).min(5);
            std::thread::sleep(Duration::from_micros(32 << exp));
        }
    }
}

/// loom cannot overlay its atomics on raw bytes, and without them it cannot see that a
/// reader's header or payload load synchronises with the writer's fences (the DropOldest
/// seqlock). Under the model the data area's words therefore live here, created by `init`
/// and found by `attach` through the data area's address, with a loom cell per word through
/// which plain payload writes and reads (Block, Fail) are reported.
#[cfg(loom)]
pub(super) mod shadow {
    use std::sync::{Arc, Mutex};

    use crate::sync::AtomicU64;

    /// The data area of one ring, word by word.
    pub(in super::super) struct Shadow {
        /// Each word's value (headers; DropOldest payloads).
        pub(in super::super) words: Vec<AtomicU64>,
        /// Each word's plain payload accesses (Block, Fail).
        pub(in super::super) cells: Vec<loom::cell::UnsafeCell<()>>,
    }

    // SAFETY: the cells hold `()`: no data to race on; they only report accesses to loom,
    // which checks them. The words are atomics.
    unsafe impl Sync for Shadow {}
    // SAFETY: as above.
    unsafe impl Send for Shadow {}

    type Words = Arc<Shadow>;

    static TABLE: Mutex<Vec<(usize, Words)>> = Mutex::new(Vec::new());

    /// Fresh words for the data area at `addr` (replacing an earlier model's).
    pub(in super::super) fn create(addr: usize, words: usize) {
        let fresh: Words = Arc::new(Shadow {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            cells: (0..words).map(|_| loom::cell::UnsafeCell::new(())).collect(),
        });
        let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
        table.retain(|(a, _)| *a != addr);
        // Keep room for the rings of models running in parallel test threads; only a
        // finished model's ring can be this old.
        if table.len() >= 256 {
            table.remove(0);
        }
        table.push((addr, fresh));
    }

    /// The words of the data area at `addr`.
    pub(super) fn find(addr: usize) -> Words {
        let table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
        let found = table.iter().find(|(a, _)| *a == addr);
        found.map(|(_, w)| w.clone()).expect("loom: ring attached before init in this model")
    }
}
