//! A reading end of a broadcast ring: one claimed slot, its own position.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::control::{Backoff, Ring};
use super::owner::Identity;
use super::{AttachError, BroadcastStats, Policy};
use crate::record::{self, Corruption, Record};
use crate::region::Region;
use crate::ring::{published_at, Corrupt, LayoutError};
use crate::sync::Ordering;

/// A record could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum RecvError {
    /// `DropOldest`: the writer overwrote this many records before this reader read them.
    /// The reader now stands at the oldest record still in the ring; just read on.
    #[error("reader fell behind and missed {0} records; it resumes at the oldest one left")]
    Lagged(u64),
    /// This reader's slot was reclaimed: its process was judged dead. Attach again.
    #[error("this reader's slot was reclaimed (its process was judged dead); attach a new reader")]
    Evicted,
    /// The writer's position or a record header is impossible.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// The next record, located and validated (not yet released).
#[derive(Clone, Copy, Debug)]
struct Found {
    /// Position of its header.
    pos: u64,
    len: u32,
    /// Position after it.
    end: u64,
}

/// One reader of a broadcast ring. Several may exist per ring, each in its own slot;
/// dropping it frees the slot. Do not use it in a `fork`ed child (both would own the slot).
pub struct Reader<R: Region> {
    ring: Ring<R>,
    index: u32,
    /// Our `ACTIVE` state word.
    me: u64,
    /// Local copy of our cursor: the next position we read.
    pos: u64,
    /// Last `write` position seen.
    write_cache: u64,
    /// Data records before `pos` (DropOldest lag accounting).
    seq: u64,
    consumed: u64,
    lagged: u64,
    evicted: bool,
    /// Block/Fail: our last look at `write` found nothing beyond our cursor, so we wait for
    /// the writer and look at the header word at our cursor instead (see `locate`).
    caught_up: bool,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

// SAFETY: local state plus atomics and bytes the protocol lets us read.
unsafe impl<R: Region> Send for Reader<R> {}

impl<R: Region> Reader<R> {
    /// Claims a free reader slot of the ring at `offset` of `region`. The reader starts at
    /// the writer's current position: it sees records published from now on, no history.
    ///
    /// With no free slot, slots of dead processes are reclaimed first; if there is still
    /// none, [`AttachError::NoFreeSlot`].
    pub fn attach(region: R, offset: usize) -> Result<Reader<R>, AttachError> {
        Reader::attach_with_history(region, offset, 0)
    }

    /// Like [`Reader::attach`], but starts up to `k` data records before the writer's
    /// position: at the oldest of the last `k` records (at most the ring's
    /// [`Config::history`](super::Config::history)) still intact and safe to read, so it
    /// first reads those, then everything that follows. Under `Block`/`Fail` the writer
    /// cannot overwrite them before this reader has read them; under `DropOldest` it can,
    /// and the reader then gets [`RecvError::Lagged`] as any slow reader. Fewer than `k`
    /// records when fewer were published, did not fit in the ring, or the writer was
    /// rescanning its readers at that very moment (best effort; never waits).
    pub fn attach_with_history(region: R, offset: usize, k: u32) -> Result<Reader<R>, AttachError> {
        let ring = Ring::attach(region, offset)?;
        let id = Identity::current();
        let mut reclaimed = false;
        let (index, start) = loop {
            let Some((index, joining)) = ring.claim_slot(id.pid) else {
                if reclaimed || ring.reclaim_dead() == 0 {
                    return Err(AttachError::NoFreeSlot { slots: ring.n_slots });
                }
                reclaimed = true;
                continue;
            };
            // `None`: a reclaimer took the slot while we joined; claim another.
            if let Some(start) = ring.join(index, joining, &id, k) {
                break (index, start);
            }
        };
        let reader = Reader {
            ring,
            index,
            me: start.me,
            pos: start.pos,
            write_cache: start.pos,
            seq: start.seq,
            consumed: 0,
            lagged: 0,
            evicted: false,
            caught_up: false,
            _not_sync: PhantomData,
        };
        if start.pos % 8 != 0 {
            let bad = reader.ring.bad_position(start.pos, 0);
            return Err(LayoutError::Corrupt(bad).into()); // dropping `reader` frees the slot
        }
        Ok(reader)
    }

    /// Index of this reader's slot.
    pub fn slot(&self) -> u32 {
        self.index
    }

    /// The position this reader reads next.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The back-pressure policy the ring was created with.
    pub fn policy(&self) -> Policy {
        self.ring.policy
    }

    /// Largest payload this ring carries.
    pub fn max_payload(&self) -> u64 {
        self.ring.max_payload
    }

    fn is_evicted(&mut self) -> bool {
        if !self.evicted && self.ring.slot(self.index).state.load(Ordering::Relaxed) != self.me {
            self.evicted = true;
        }
        self.evicted
    }

    /// Reloads the writer's position.
    fn refresh(&mut self) -> Result<(), RecvError> {
        // SYNC: records published
        let w = self.ring.ctrl().writer.write.load(Ordering::Acquire);
        let drop_oldest = self.ring.policy == Policy::DropOldest;
        // Block/Fail: the fast path (`published_at_pos`) may have taken the last record
        // before the writer stored its `write` (it publishes by the header first): nothing
        // new then. It runs at most one record (and its PAD) ahead, less than the ring.
        let w = if !drop_oldest && w % 8 == 0 && w < self.pos && self.pos - w <= self.ring.cap {
            self.pos
        } else {
            w
        };
        let ok = w % 8 == 0 && w >= self.pos && (drop_oldest || w - self.pos <= self.ring.cap);
        if !ok {
            return Err(if self.is_evicted() {
                RecvError::Evicted
            } else {
                self.ring.bad_position(w, self.pos).into()
            });
        }
        self.write_cache = w;
        if w == self.pos && self.is_evicted() {
            return Err(RecvError::Evicted);
        }
        Ok(())
    }

    /// Finds the next data record (skipping a pad), validated; `None` if there is none.
    fn locate(&mut self) -> Result<Option<Found>, RecvError> {
        if self.evicted {
            return Err(RecvError::Evicted);
        }
        let drop_oldest = self.ring.policy == Policy::DropOldest;
        loop {
            if self.pos == self.write_cache {
                // Block/Fail, caught up: the next record is taken by its header, one line
                // from the writer instead of two (`write`'s, then the header's). After
                // that, `write` is loaded again: a writer that ran ahead meanwhile is read
                // in a batch up to it, without polling the lines it is writing (which
                // would take them from it once per record: half the throughput).
                if !drop_oldest && self.caught_up {
                    match self.published_at_pos() {
                        Ok(_) if self.is_evicted() => return Err(RecvError::Evicted),
                        // Zero at our cursor: it is the writer's position, nothing new.
                        Ok(None) => return Ok(None),
                        Ok(Some(found)) => {
                            self.caught_up = false;
                            // Published at least up to its end.
                            self.write_cache = found.end;
                            return Ok(Some(found));
                        }
                        // Not a valid header: judged against the writer's position.
                        Err(()) => {}
                    }
                }
                self.refresh()?;
                if self.pos == self.write_cache {
                    self.caught_up = true;
                    return Ok(None);
                }
            }
            if drop_oldest && self.write_cache - self.pos > self.ring.cap {
                self.catch_up()?;
                continue;
            }
            match self.decode_next() {
                Ok(Some(found)) => return Ok(Some(found)),
                Ok(None) => self.catch_up()?,
                // The writer may overwrite what an evicted reader had not read yet.
                Err(_) if self.is_evicted() => return Err(RecvError::Evicted),
                Err(e) => return Err(e),
            }
        }
    }

    /// Block/Fail fast path: the record whose header is published at our position, read
    /// without loading the writer's position (one cache line from the writer, not two).
    /// The writer keeps the word at its `write` position zero and publishes a record by its
    /// header (Release), a wrapped record before its PAD; our cursor is always a record's
    /// start or the writer's position. `Ok(None)`: the word is zero, so our cursor is the
    /// writer's position (nothing new; an empty ring costs no look at `write` either, which
    /// would bounce the writer's line on every poll). `Err`: anything but a valid header
    /// here, for the full path (`refresh`, `decode_next`) to judge against `write`.
    fn published_at_pos(&self) -> Result<Option<Found>, ()> {
        let ring = &self.ring;
        let mask = ring.cap - 1;
        // SYNC: records published (header)
        let load = |pos: u64| ring.word(pos & mask).load(Ordering::Acquire);
        let room = ring.cap - super::RESERVE;
        let found = published_at(load, self.pos, ring.cap_log2, ring.max_payload, room);
        Ok(found.map_err(|_| ())?.map(|r| Found { pos: r.pos, len: r.len, end: r.end }))
    }

    /// Decodes the header(s) at `pos`: the data record, or `None` if (DropOldest) the
    /// writer has overwritten them.
    fn decode_next(&self) -> Result<Option<Found>, RecvError> {
        let ring = &self.ring;
        let mut pos = self.pos;
        loop {
            let avail = self.write_cache - pos;
            let res = if avail == 0 {
                // A pad must be followed by the record it made room for.
                Err(Corruption::BadPad { len: 0 })
            } else {
                let word = ring.word(pos & (ring.cap - 1)).load(Ordering::Relaxed);
                record::decode(word, pos, ring.cap_log2, avail, ring.max_payload)
            };
            // Under DropOldest nothing read is trusted until the writer's tail says the
            // bytes were not being overwritten.
            if ring.policy == Policy::DropOldest && ring.overwritten(pos) {
                return Ok(None);
            }
            match res {
                Ok(Record::Pad { total }) if pos == self.pos => pos += total,
                Ok(Record::Pad { total }) => {
                    let len = (total - record::HEADER) as u32;
                    return Err(ring.corrupt(pos, Corruption::BadPad { len }).into());
                }
                Ok(Record::Data { len, total }) => {
                    return Ok(Some(Found { pos, len, end: pos + total }));
                }
                Err(what) => return Err(ring.corrupt(pos, what).into()),
            }
        }
    }

    /// DropOldest: jumps to the oldest record left; `Lagged(n)` if data records were lost.
    fn catch_up(&mut self) -> Result<(), RecvError> {
        let s = self.ring.snapshot();
        let ok = s.tail % 8 == 0
            && s.write % 8 == 0
            && s.tail > self.pos
            && s.tail <= s.write
            && s.write - s.tail <= self.ring.cap
            && s.tail_seq >= self.seq;
        if !ok {
            return Err(if self.is_evicted() {
                RecvError::Evicted
            } else {
                self.ring.bad_position(s.tail, self.pos).into()
            });
        }
        let missed = s.tail_seq - self.seq;
        (self.pos, self.seq, self.write_cache) = (s.tail, s.tail_seq, s.write);
        let slot = self.ring.slot(self.index);
        // Relaxed: only DropOldest gets here, and its writer never reads reader cursors.
        slot.cursor.store(self.pos, Ordering::Relaxed);
        if missed == 0 {
            return Ok(());
        }
        self.lagged += missed;
        slot.lagged.store(self.lagged, Ordering::Relaxed);
        self.ring.ctrl().registry.dropped.fetch_add(missed, Ordering::Relaxed);
        Err(RecvError::Lagged(missed))
    }

    /// Moves past `found`, giving its space back to the writer.
    fn advance(&mut self, found: Found) {
        self.pos = found.end;
        self.seq += 1;
        self.consumed += 1;
        let slot = self.ring.slot(self.index);
        slot.consumed.store(self.consumed, Ordering::Relaxed);
        // SYNC: space released
        slot.cursor.store(found.end, Ordering::Release);
    }

    /// The next record, in place (zero copy), if one is ready. It stays this reader's next
    /// record until [`Peeked::release`].
    ///
    /// Under `DropOldest` the writer may overwrite the bytes while you look at them: use
    /// them, then check [`Peeked::still_valid`] and discard what you derived if it is false
    /// (or use [`Reader::try_recv`], which copies and validates for you).
    pub fn peek(&mut self) -> Result<Option<Peeked<'_, R>>, RecvError> {
        Ok(self.locate()?.map(|found| Peeked { reader: self, found }))
    }

    /// Copies the next record into `buf` (replacing its contents) and releases it; returns
    /// its length, or `None` if no record is ready. Under `DropOldest` the copy is validated
    /// after the fact: a record overwritten while being copied is never returned.
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<Option<usize>, RecvError> {
        loop {
            let Some(found) = self.locate()? else { return Ok(None) };
            let off = (found.pos & (self.ring.cap - 1)) + record::HEADER;
            if self.ring.policy == Policy::DropOldest {
                self.ring.load_words(off, found.len as usize, buf);
                if self.ring.overwritten(found.pos) {
                    self.catch_up()?;
                    continue;
                }
            } else {
                #[cfg(loom)]
                self.ring.track(off, u64::from(found.len), false);
                // SAFETY: [off, off+len) was validated to lie inside the data area and below
                // the published write position; the writer keeps it until we release it.
                let bytes =
                    unsafe { std::slice::from_raw_parts(self.ring.at(off), found.len as usize) };
                buf.clear();
                buf.extend_from_slice(bytes);
            }
            self.advance(found);
            return Ok(Some(found.len as usize));
        }
    }

    /// Like [`Reader::try_recv`], waiting up to `timeout` for a record (polling with
    /// backoff); `None` if none came.
    pub fn recv_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<Option<usize>, RecvError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut backoff = Backoff::new();
        loop {
            if let Some(n) = self.try_recv(buf)? {
                return Ok(Some(n));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            backoff.snooze();
        }
    }

    /// Counters of this ring.
    pub fn stats(&self) -> BroadcastStats {
        super::stats_of(&self.ring)
    }

    /// The region the ring lives in.
    pub fn region(&self) -> &R {
        &self.ring.region
    }
}

impl<R: Region> Drop for Reader<R> {
    fn drop(&mut self) {
        if !self.evicted {
            self.ring.leave(self.index, self.me);
        }
    }
}

/// A record read in place by [`Reader::peek`].
pub struct Peeked<'a, R: Region> {
    reader: &'a mut Reader<R>,
    found: Found,
}

impl<R: Region> Peeked<'_, R> {
    /// The payload, in shared memory (zero copy). Bytes from another process: treat them as
    /// untrusted input; under `DropOldest` confirm with [`Peeked::still_valid`] after use.
    pub fn bytes(&self) -> &[u8] {
        let ring = &self.reader.ring;
        let off = (self.found.pos & (ring.cap - 1)) + record::HEADER;
        #[cfg(loom)]
        if ring.policy != Policy::DropOldest {
            ring.track(off, u64::from(self.found.len), false);
        }
        // SAFETY: [off, off+len) was validated to lie inside the data area and below the
        // published write position. Under Block/Fail the writer keeps it until we release;
        // under DropOldest it may change (documented: validate with still_valid).
        unsafe { std::slice::from_raw_parts(ring.at(off), self.found.len as usize) }
    }

    /// Payload length.
    pub fn len(&self) -> usize {
        self.found.len as usize
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.found.len == 0
    }

    /// Whether the bytes are still the record's: always under `Block`/`Fail`; under
    /// `DropOldest`, false once the writer has started to overwrite it. Call it *after*
    /// using [`Peeked::bytes`]; if false, discard the result and read on (the next read
    /// reports [`RecvError::Lagged`]).
    pub fn still_valid(&self) -> bool {
        let ring = &self.reader.ring;
        ring.policy != Policy::DropOldest || !ring.overwritten(self.found.pos)
    }

    /// Consumes the record, giving its space back to the writer.
    pub fn release(self) {
        self.reader.advance(self.found);
    }
}

impl<R: Region> std::fmt::Debug for Reader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("slot", &self.index)
            .field("policy", &self.ring.policy)
            .field("pos", &self.pos)
            .field("write_cache", &self.write_cache)
            .field("evicted", &self.evicted)
            .finish_non_exhaustive()
    }
}

impl<R: Region> std::fmt::Debug for Peeked<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peeked")
            .field("pos", &self.found.pos)
            .field("len", &self.found.len)
            .finish()
    }
}
