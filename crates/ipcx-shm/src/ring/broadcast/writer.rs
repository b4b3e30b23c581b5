//! The writing end of a broadcast ring.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::control::{Backoff, Ring};
use super::history::Recent;
use super::RESERVE;
use super::{AttachError, BroadcastStats, Policy};
use crate::record::{self, Record};
use crate::region::Region;
use crate::ring::{clear_end, publish, published_at, ClaimError, Corrupt, Step};
use crate::sync::{fence, Ordering};

/// Default time between two checks for dead readers while the ring is full.
pub const DEFAULT_LIVENESS_INTERVAL: Duration = Duration::from_millis(10);

/// A message could not be sent; the message is handed back.
#[derive(Error)]
pub enum SendError<M> {
    /// A live reader has not released the space yet (`Block`: still so at the deadline).
    #[error(
        "broadcast ring is full: the slowest live reader has not caught up; retry later, \
         read faster, or create the ring with Policy::DropOldest"
    )]
    Full(M),
    /// The message is larger than the ring can ever carry.
    #[error(
        "message of {len} bytes exceeds this ring's largest payload ({max} bytes, half its \
         capacity); create the ring with a larger capacity or split the message"
    )]
    TooLarge {
        /// The message.
        msg: M,
        /// Its length.
        len: usize,
        /// Largest payload.
        max: u64,
    },
    /// A reader's position or an old record in shared memory is impossible.
    #[error("message not sent: the broadcast ring is corrupted; drop it and recreate it")]
    Corrupt {
        /// The message.
        msg: M,
        /// What was found.
        #[source]
        source: Corrupt,
    },
}

impl<M> SendError<M> {
    /// The message that was not sent.
    pub fn into_inner(self) -> M {
        match self {
            SendError::Full(msg)
            | SendError::TooLarge { msg, .. }
            | SendError::Corrupt { msg, .. } => msg,
        }
    }
}

impl<M> std::fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("Full(..)"),
            SendError::TooLarge { len, max, .. } => {
                f.debug_struct("TooLarge").field("len", len).field("max", max).finish()
            }
            SendError::Corrupt { source, .. } => {
                f.debug_struct("Corrupt").field("source", source).finish()
            }
        }
    }
}

/// The writing end. Exactly one may exist per ring (the caller's duty across processes).
pub struct Writer<R: Region> {
    ring: Ring<R>,
    /// Local copy of `write`.
    write: u64,
    /// Block/Fail: the lowest reader position seen at the last scan (`<= write`). Records
    /// up to `min_cache + capacity` fit without looking at the readers again.
    min_cache: u64,
    /// DropOldest: local copies of `tail`, `tail_seq` and `ver`.
    tail: u64,
    tail_seq: u64,
    ver: u64,
    published: u64,
    full: u64,
    /// Positions of the records this writer indexed for late joiners.
    recent: Recent,
    liveness_interval: Option<Duration>,
    last_liveness: Option<Instant>,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

// SAFETY: the writer owns its local state and touches shared memory only through atomics
// and the space it has claimed; moving it to another thread is fine.
unsafe impl<R: Region> Send for Writer<R> {}

impl<R: Region> Writer<R> {
    /// Attaches the writing end to an initialised ring at `offset` of `region` (also to
    /// take over from a writer that died: its unfinished record is discarded).
    pub fn attach(region: R, offset: usize) -> Result<Writer<R>, AttachError> {
        let ring = Ring::attach(region, offset)?;
        let line = &ring.ctrl().writer;
        // SYNC: records published
        let write = line.write.load(Ordering::Acquire);
        let tail = line.tail.load(Ordering::Relaxed);
        let ver = line.ver.load(Ordering::Relaxed);
        let published = line.published.load(Ordering::Relaxed);
        let tail_seq = line.tail_seq.load(Ordering::Relaxed);
        let drop_oldest = ring.policy == Policy::DropOldest;
        // Positions far from overflow (the writer adds to them), and counts a ring of this
        // many bytes can hold (every record takes at least 8 bytes).
        let ok = write % 8 == 0
            && tail % 8 == 0
            && tail <= write
            && write <= crate::ring::MAX_POSITION
            && published <= write / 8
            && tail_seq <= published
            && (!drop_oldest || write - tail <= ring.cap);
        if !ok {
            return Err(crate::ring::LayoutError::Corrupt(ring.bad_position(write, tail)).into());
        }
        // Block/Fail readers take a record by its header (the reader's fast path): one
        // published by a writer that died before storing `write` may have been read, so
        // resume behind it. (DropOldest readers read up to `write` only.)
        let (mut write, mut published) = (write, published);
        if !drop_oldest {
            let found = published_after(&ring, write).map_err(crate::ring::LayoutError::Corrupt)?;
            if let Some(end) = found {
                (write, published) = (end, published + 1);
                line.published.store(published, Ordering::Relaxed);
                // SYNC: records published
                line.write.store(write, Ordering::Release);
            }
        }
        let min_cache = ring.intact_from(write);
        // Nothing is written past it before the first scan.
        // SYNC: write limit
        line.limit.store(min_cache + ring.cap, Ordering::Relaxed);
        Ok(Writer {
            write,
            min_cache,
            recent: Recent::new(ring.history),
            tail,
            tail_seq,
            ver,
            published,
            full: line.full.load(Ordering::Relaxed),
            liveness_interval: Some(DEFAULT_LIVENESS_INTERVAL),
            last_liveness: None,
            ring,
            _not_sync: PhantomData,
        })
    }

    /// The back-pressure policy the ring was created with.
    pub fn policy(&self) -> Policy {
        self.ring.policy
    }

    /// Largest payload this ring carries.
    pub fn max_payload(&self) -> u64 {
        self.ring.max_payload
    }

    /// How often, at most, a full ring makes the writer look for dead readers (default
    /// [`DEFAULT_LIVENESS_INTERVAL`]); `None` never looks (see [`Writer::reclaim_dead`]).
    pub fn set_liveness_interval(&mut self, interval: Option<Duration>) {
        self.liveness_interval = interval;
    }

    /// Claims room for a record of `len` bytes, to be written in place and then
    /// [`Claim::commit`]ted. Dropping the claim publishes nothing (under `DropOldest` the
    /// oldest records may already have been given up to make room).
    ///
    /// `Block`/`Fail`: [`ClaimError::Full`] while a live reader still needs the space; a
    /// full ring is when dead readers are looked for (at most once per liveness interval).
    /// `DropOldest`: never full.
    pub fn claim(&mut self, len: usize) -> Result<Claim<'_, R>, ClaimError> {
        let max = self.ring.max_payload;
        let total = match record::record_size(len as u64) {
            Some(t) if (len as u64) <= max => t,
            _ => return Err(ClaimError::TooLarge { len, max }),
        };
        let cap = self.ring.cap;
        let off = self.write & (cap - 1);
        let to_end = cap - off;
        let pad = if total <= to_end { 0 } else { to_end };
        // The record (after its PAD), and the zero word behind it.
        let need = pad + total + RESERVE;
        match self.ring.policy {
            Policy::DropOldest => self.overwrite_oldest(need)?,
            Policy::Block | Policy::Fail => self.make_room(need)?,
        }
        let rec_pos = self.write + pad;
        let end = rec_pos + total;
        let ring = &self.ring;
        let store = |pos: u64, word, order| ring.word(pos & (cap - 1)).store(word, order);
        clear_end(store, end, Step::Claim);
        Ok(Claim { writer: self, rec_pos, len: len as u32, end })
    }

    /// Block/Fail: makes sure `need` bytes at `write` overwrite nothing a live reader needs.
    fn make_room(&mut self, need: u64) -> Result<(), ClaimError> {
        let cap = self.ring.cap;
        if self.write + need - self.min_cache <= cap {
            return Ok(());
        }
        self.rescan(need)?;
        if self.write + need - self.min_cache <= cap {
            return Ok(());
        }
        if self.liveness_due() && self.ring.reclaim_blockers(self.write, need) > 0 {
            self.rescan(need)?;
            if self.write + need - self.min_cache <= cap {
                return Ok(());
            }
        }
        self.full += 1;
        self.ring.ctrl().writer.full.store(self.full, Ordering::Relaxed);
        Err(ClaimError::Full)
    }

    /// Block/Fail: recomputes `min_cache` from the readers and, when it costs no room for a
    /// record of `need` bytes, keeps the last indexed records intact for late joiners;
    /// publishes the resulting `limit` (`u64::MAX` while scanning, see `history.rs`).
    fn rescan(&mut self, need: u64) -> Result<(), Corrupt> {
        let cap = self.ring.cap;
        let line = &self.ring.ctrl().writer;
        // Before the scan's RMW (its Release orders it): a joiner that synchronises with
        // the scan sees this value or a later one.
        // SYNC: write limit
        line.limit.store(u64::MAX, Ordering::Relaxed);
        let readers = self.ring.scan(self.write)?;
        let keep = self.recent.floor(self.published, self.write);
        self.min_cache = readers.min(keep.max((self.write + need).saturating_sub(cap)));
        // SYNC: write limit
        line.limit.store(self.min_cache + cap, Ordering::Release);
        Ok(())
    }

    fn liveness_due(&mut self) -> bool {
        let Some(interval) = self.liveness_interval else { return false };
        let now = Instant::now();
        match self.last_liveness {
            Some(last) if now.duration_since(last) < interval => false,
            _ => {
                self.last_liveness = Some(now);
                true
            }
        }
    }

    /// DropOldest: moves `tail` past every record the next `need` bytes overwrite, and
    /// publishes it before any of those bytes change.
    fn overwrite_oldest(&mut self, need: u64) -> Result<(), Corrupt> {
        let ring = &self.ring;
        let end = self.write + need;
        if end <= self.tail + ring.cap {
            return Ok(());
        }
        let target = end - ring.cap;
        let (mut tail, mut dropped) = (self.tail, 0);
        while tail < target {
            // Our own old header, but in memory readers can write: validate it.
            let word = ring.word(tail & (ring.cap - 1)).load(Ordering::Relaxed);
            match record::decode(word, tail, ring.cap_log2, self.write - tail, ring.max_payload) {
                Ok(Record::Data { total, .. }) => (tail, dropped) = (tail + total, dropped + 1),
                Ok(Record::Pad { total }) => tail += total,
                Err(what) => return Err(ring.corrupt(tail, what)),
            }
        }
        self.tail = tail;
        self.tail_seq += dropped;
        // The copy first: a reader that sees the new tail then finds it in the snapshot.
        self.publish_copy();
        let line = &self.ring.ctrl().writer;
        line.tail_seq.store(self.tail_seq, Ordering::Relaxed);
        // SYNC: tail after its copy
        line.tail.store(tail, Ordering::Release);
        // Readers that see any byte written after this fence also see the new tail.
        // SYNC: space reclaimed
        fence(Ordering::Release);
        Ok(())
    }

    /// DropOldest: publishes the local positions as the next consistent copy.
    fn publish_copy(&mut self) {
        let line = &self.ring.ctrl().writer;
        // Keeps these stores after the previous `ver` store: a reader that sees one of
        // them also sees `ver` move, and retries.
        fence(Ordering::Release);
        let copy = &line.copies[((self.ver + 1) % 2) as usize];
        copy.write.store(self.write, Ordering::Relaxed);
        copy.published.store(self.published, Ordering::Relaxed);
        copy.tail.store(self.tail, Ordering::Relaxed);
        copy.tail_seq.store(self.tail_seq, Ordering::Relaxed);
        self.ver += 1;
        // SYNC: snapshot
        line.ver.store(self.ver, Ordering::Release);
    }

    /// Copies `msg` into a new record and publishes it, without waiting.
    pub fn try_send<M: AsRef<[u8]>>(&mut self, msg: M) -> Result<(), SendError<M>> {
        let len = msg.as_ref().len();
        match self.claim(len) {
            Ok(mut claim) => {
                claim.write(msg.as_ref());
                claim.commit();
                Ok(())
            }
            Err(ClaimError::Full) => Err(SendError::Full(msg)),
            Err(ClaimError::TooLarge { max, .. }) => Err(SendError::TooLarge { msg, len, max }),
            Err(ClaimError::Corrupt(source)) => Err(SendError::Corrupt { msg, source }),
        }
    }

    /// Like [`Writer::try_send`], but under `Block` waits up to `timeout` for the slowest
    /// live reader (polling with backoff; dead readers are reclaimed meanwhile). `Fail`
    /// and `DropOldest` never wait.
    pub fn send_timeout<M: AsRef<[u8]>>(
        &mut self,
        msg: M,
        timeout: Duration,
    ) -> Result<(), SendError<M>> {
        let deadline = Instant::now().checked_add(timeout);
        let mut backoff = Backoff::new();
        let mut msg = msg;
        loop {
            match self.try_send(msg) {
                Err(SendError::Full(m))
                    if self.ring.policy == Policy::Block
                        && deadline.is_none_or(|d| Instant::now() < d) =>
                {
                    msg = m;
                    backoff.snooze();
                }
                other => return other,
            }
        }
    }

    /// Frees the slots of readers whose process has died (checks every slot now); returns
    /// how many. A full ring does this by itself, at most once per liveness interval.
    pub fn reclaim_dead(&mut self) -> usize {
        let n = self.ring.reclaim_dead();
        if n > 0 {
            self.min_cache = self.ring.intact_from(self.write);
            // Lower than before: nothing past it is written before the next scan.
            // SYNC: write limit
            let limit = self.min_cache + self.ring.cap;
            self.ring.ctrl().writer.limit.store(limit, Ordering::Release);
        }
        n
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

/// The end of a record published at `write` (after a PAD, if one is there) whose writer
/// died before storing `write`; `None` if the word there is empty.
fn published_after<R: Region>(ring: &Ring<R>, write: u64) -> Result<Option<u64>, Corrupt> {
    let mask = ring.cap - 1;
    // SYNC: records published (header)
    let load = |pos: u64| ring.word(pos & mask).load(Ordering::Acquire);
    let found = published_at(load, write, ring.cap_log2, ring.max_payload, ring.cap - RESERVE);
    Ok(found?.map(|r| r.end))
}

/// Room for one record, claimed by [`Writer::claim`].
pub struct Claim<'a, R: Region> {
    writer: &'a mut Writer<R>,
    rec_pos: u64,
    len: u32,
    end: u64,
}

impl<R: Region> Claim<'_, R> {
    fn payload_offset(&self) -> u64 {
        (self.rec_pos & (self.writer.ring.cap - 1)) + record::HEADER
    }

    /// The payload bytes, to be written in place.
    ///
    /// Under `DropOldest` a reader that fell a lap behind may still be copying these bytes
    /// while you write them; it detects that and discards its copy. Between processes that
    /// is harmless; within one process it is a data race in Rust's model, so there prefer
    /// [`Writer::try_send`], which writes with atomic word stores.
    pub fn bytes(&mut self) -> &mut [u8] {
        let ring = &self.writer.ring;
        #[cfg(loom)]
        ring.track(self.payload_offset(), u64::from(self.len), true);
        // SAFETY: [off, off+len) lies inside the data area (claim checked it fits before the
        // ring's end) and is space no reader may read until we publish it.
        unsafe { std::slice::from_raw_parts_mut(ring.at(self.payload_offset()), self.len as usize) }
    }

    /// Copies `payload` (exactly the claimed length) into the record.
    fn write(&mut self, payload: &[u8]) {
        if self.writer.ring.policy == Policy::DropOldest {
            self.writer.ring.store_words(self.payload_offset(), payload);
        } else {
            self.bytes().copy_from_slice(payload);
        }
    }

    /// Publishes the record to every reader.
    pub fn commit(self) {
        let w = self.writer;
        let ring = &w.ring;
        let mask = ring.cap - 1;
        // SYNC: records published (header)
        let store = |pos: u64, word, order| ring.word(pos & mask).store(word, order);
        clear_end(store, self.end, Step::Commit);
        publish(store, ring.cap_log2, w.write, self.rec_pos, self.len);
        ring.index(&mut w.recent, w.published, self.rec_pos);
        w.write = self.end;
        w.published += 1;
        let line = &ring.ctrl().writer;
        line.published.store(w.published, Ordering::Relaxed);
        // SYNC: records published
        line.write.store(self.end, Ordering::Release);
        // After `write`: a snapshot never runs ahead of the position readers load.
        if ring.policy == Policy::DropOldest {
            w.publish_copy();
        }
    }
}

impl<R: Region> std::fmt::Debug for Writer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("policy", &self.ring.policy)
            .field("capacity", &self.ring.cap)
            .field("write", &self.write)
            .field("min_cache", &self.min_cache)
            .field("tail", &self.tail)
            .finish_non_exhaustive()
    }
}

impl<R: Region> std::fmt::Debug for Claim<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim").field("pos", &self.rec_pos).field("len", &self.len).finish()
    }
}
