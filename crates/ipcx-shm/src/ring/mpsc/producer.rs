//! The producing end of an MPSC ring: claim, write in place, commit.

use thiserror::Error;

use super::{MpscStats, NotSync, Ring};
use crate::record::{self, Corruption, KIND_CLAIMED, KIND_DATA, KIND_PAD, KIND_SKIP};
use crate::region::Region;
use crate::ring::{check_positions, ClaimError, Corrupt, LayoutError};
use crate::sync::Ordering;

/// A claimed record could not be committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum CommitError {
    /// The consumer skipped the record because it was not committed within its
    /// `commit_timeout`; nothing was delivered.
    #[error(
        "record at position {pos} was skipped by the consumer before it was committed; commit \
         sooner after claiming, or give the consumer a longer commit_timeout"
    )]
    Abandoned {
        /// Position of the record.
        pos: u64,
    },
    /// The record's header was overwritten by someone else.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// A record could not be pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum PushError {
    /// No room could be claimed (full, too large, corrupt ring).
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// The record was claimed and written but not delivered.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// One producing end. Any number may exist per ring, in any processes; each is used by one
/// thread at a time (attach one per thread).
pub struct Producer<R: Region> {
    pub(super) ring: Ring<R>,
    /// Last `read` position seen (monotonic).
    pub(super) read_cache: u64,
    _not_sync: NotSync,
}

// SAFETY: the producer owns its local state and touches shared memory only through atomics
// and the space it has claimed; moving it to another thread is fine.
unsafe impl<R: Region> Send for Producer<R> {}

/// A range won by the `claim` CAS: an optional pad at `pos`, then the record.
#[derive(Clone, Copy, Debug)]
pub(super) struct Reservation {
    pub(super) pos: u64,
    pub(super) pad: u64,
}

/// Why writing a header of a reservation failed.
pub(super) enum Announce {
    /// The consumer skipped the reservation (we were slower than its commit timeout).
    Void,
    Corrupt(Corrupt),
}

impl<R: Region> Producer<R> {
    /// Attaches a producing end to an initialised ring at `offset` of `region`.
    pub fn attach(region: R, offset: usize) -> Result<Producer<R>, LayoutError> {
        let ring = Ring::attach(region, offset)?;
        let (read, _) = ring.positions()?;
        Ok(Producer { ring, read_cache: read, _not_sync: std::marker::PhantomData })
    }

    /// Largest payload this ring carries.
    pub fn max_payload(&self) -> u64 {
        self.ring.max_payload
    }

    /// Claims room for a record of `len` bytes, to be written in place and then
    /// [`Claim::commit`]ted. Dropping the claim uncommitted turns it into a skipped record.
    pub fn claim(&mut self, len: usize) -> Result<Claim<'_, R>, ClaimError> {
        let max = self.ring.max_payload;
        let total = match record::record_size(len as u64) {
            Some(t) if (len as u64) <= max => t,
            _ => return Err(ClaimError::TooLarge { len, max }),
        };
        loop {
            let r = self.reserve(total)?;
            match self.announce(r, len as u32) {
                Ok(pos) => return Ok(Claim { producer: self, pos, len: len as u32, done: false }),
                Err(Announce::Void) => continue,
                Err(Announce::Corrupt(e)) => return Err(e.into()),
            }
        }
    }

    /// Copies `payload` into a new record and commits it.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), PushError> {
        let mut claim = self.claim(payload.len())?;
        claim.bytes().copy_from_slice(payload);
        Ok(claim.commit()?)
    }

    /// Test support: advances the claim position for a record of `len` bytes and writes
    /// nothing, exactly as a producer killed right after its claim CAS leaves the ring.
    /// Returns the position claimed. The consumer recovers after its commit timeout.
    #[doc(hidden)]
    pub fn reserve_and_vanish(&mut self, len: usize) -> Result<u64, ClaimError> {
        let total = record::record_size(len as u64).filter(|_| len as u64 <= self.max_payload());
        let total = total.ok_or(ClaimError::TooLarge { len, max: self.max_payload() })?;
        Ok(self.reserve(total)?.pos)
    }

    /// Counters of this ring.
    pub fn stats(&self) -> MpscStats {
        self.ring.stats()
    }

    /// The region the ring lives in.
    pub fn region(&self) -> &R {
        &self.ring.region
    }

    /// Wins a range for a record of `total` bytes (plus a pad if it would cross the end)
    /// with a CAS on `claim`, never beyond `read + capacity`.
    pub(super) fn reserve(&mut self, total: u64) -> Result<Reservation, ClaimError> {
        let ring = &self.ring;
        let cap = ring.cap;
        let line = &ring.ctrl().producers;
        // SYNC: claim advanced
        let mut pos = line.claim.load(Ordering::Acquire);
        loop {
            // `claim` never falls behind a `read` we have seen (see the module docs).
            let bad = |found, other| Corruption::BadPosition { found, other, capacity: cap };
            if pos % 8 != 0 || pos < self.read_cache {
                return Err(ring.corrupt(pos, bad(pos, self.read_cache)).into());
            }
            let to_end = cap - (pos & (cap - 1));
            let pad = if total <= to_end { 0 } else { to_end };
            let Some(end) = pos.checked_add(pad + total) else {
                return Err(ring.corrupt(pos, bad(pos, self.read_cache)).into());
            };
            let fits = |read: u64| read.checked_add(cap).is_some_and(|limit| end <= limit);
            if !fits(self.read_cache) {
                // SYNC: space released
                let read = ring.ctrl().consumer.read.load(Ordering::Acquire);
                if read < self.read_cache {
                    return Err(ring.corrupt(read, bad(read, self.read_cache)).into());
                }
                self.read_cache = read;
                if read > pos {
                    // Our `claim` is older than the consumer's position: load it again.
                    // SYNC: claim advanced
                    pos = line.claim.load(Ordering::Acquire);
                    continue;
                }
                check_positions(read, pos, cap).map_err(|what| ring.corrupt(pos, what))?;
                if !fits(read) {
                    line.full.fetch_add(1, Ordering::Relaxed);
                    return Err(ClaimError::Full);
                }
            }
            // SYNC: claim advanced
            match line.claim.compare_exchange_weak(pos, end, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(Reservation { pos, pad }),
                Err(now) => pos = now,
            }
        }
    }

    /// Writes the headers of a won range: the pad (complete), then `CLAIMED(len)`.
    /// Returns the record's position.
    pub(super) fn announce(&self, r: Reservation, len: u32) -> Result<u64, Announce> {
        let ring = &self.ring;
        let mut pos = r.pos;
        if r.pad != 0 {
            let pad_len = (r.pad - record::HEADER) as u32;
            self.write_header(pos, record::encode(KIND_PAD, pad_len, pos, ring.cap_log2))?;
            pos += r.pad;
        }
        self.write_header(pos, record::encode(KIND_CLAIMED, len, pos, ring.cap_log2))?;
        Ok(pos)
    }

    /// CASes the header at `pos` (ours by reservation) from its lap's empty word to `word`.
    fn write_header(&self, pos: u64, word: u64) -> Result<(), Announce> {
        let ring = &self.ring;
        let header = ring.header(pos);
        // SYNC: header published
        match header.compare_exchange(ring.empty(pos), word, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => Ok(()),
            Err(found) if found == ring.empty(pos + ring.cap) => Err(Announce::Void),
            Err(found) => {
                Err(Announce::Corrupt(ring.corrupt(pos, Corruption::Overwritten { found })))
            }
        }
    }
}

/// Room for one record, claimed by [`Producer::claim`]; its header says `CLAIMED`.
pub struct Claim<'a, R: Region> {
    producer: &'a mut Producer<R>,
    pos: u64,
    len: u32,
    done: bool,
}

impl<R: Region> Claim<'_, R> {
    /// The payload bytes, to be written in place.
    pub fn bytes(&mut self) -> &mut [u8] {
        let ring = &self.producer.ring;
        let off = (self.pos & (ring.cap - 1)) + record::HEADER;
        #[cfg(loom)]
        ring.track(off, u64::from(self.len), true);
        // SAFETY: [off, off+len) lies inside the data area (the record fits before the end
        // of the ring) and is ours until we commit: the consumer does not read it before.
        unsafe { std::slice::from_raw_parts_mut(ring.at(off), self.len as usize) }
    }

    /// Payload length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Position of the record in the ring (diagnostics).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Publishes the record to the consumer.
    pub fn commit(mut self) -> Result<(), CommitError> {
        self.done = true;
        let ring = &self.producer.ring;
        let claimed = record::encode(KIND_CLAIMED, self.len, self.pos, ring.cap_log2);
        let data = record::encode(KIND_DATA, self.len, self.pos, ring.cap_log2);
        let header = ring.header(self.pos);
        // SYNC: record committed
        match header.compare_exchange(claimed, data, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => {
                ring.ctrl().producers.published.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(found) if found == ring.empty(self.pos + ring.cap) => {
                Err(CommitError::Abandoned { pos: self.pos })
            }
            Err(found) => Err(ring.corrupt(self.pos, Corruption::Overwritten { found }).into()),
        }
    }
}

impl<R: Region> Drop for Claim<'_, R> {
    /// An uncommitted claim becomes a `SKIP` record, so the consumer passes it at once.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let ring = &self.producer.ring;
        let claimed = record::encode(KIND_CLAIMED, self.len, self.pos, ring.cap_log2);
        let skip = record::encode(KIND_SKIP, self.len, self.pos, ring.cap_log2);
        // SYNC: header published (and orders our payload writes before the consumer's scrub)
        let _ = ring.header(self.pos).compare_exchange(
            claimed,
            skip,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

impl<R: Region> std::fmt::Debug for Producer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.ring.cap)
            .field("read_cache", &self.read_cache)
            .finish_non_exhaustive()
    }
}

impl<R: Region> std::fmt::Debug for Claim<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim").field("pos", &self.pos).field("len", &self.len).finish()
    }
}
