//! The consuming end of an MPSC ring: read in place, release, skip what producers abandoned.

use std::time::{Duration, Instant};

use super::{Header, MpscStats, NotSync, Ring};
use crate::record;
use crate::region::Region;
use crate::ring::{check_positions, Corrupt, LayoutError};
use crate::sync::Ordering;

/// How long the consumer waits, by default, for a claimed record to be committed before it
/// skips the record as abandoned.
pub const DEFAULT_COMMIT_TIMEOUT: Duration = Duration::from_secs(1);

/// Settings of a [`Consumer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumerOptions {
    commit_timeout: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions { commit_timeout: DEFAULT_COMMIT_TIMEOUT }
    }
}

impl ConsumerOptions {
    /// Default options ([`DEFAULT_COMMIT_TIMEOUT`]).
    pub fn new() -> ConsumerOptions {
        ConsumerOptions::default()
    }

    /// How long a claimed but uncommitted record may hold up the consumer before it is
    /// skipped as abandoned (its producer presumed dead). Producers must commit within it.
    /// `Duration::ZERO` skips whatever is not committed when first seen: for tests only.
    pub fn commit_timeout(mut self, timeout: Duration) -> ConsumerOptions {
        self.commit_timeout = timeout;
        self
    }
}

/// Where the consumer is waiting for a producer.
#[derive(Clone, Copy, Debug)]
struct Stuck {
    /// The read position it waits at.
    pos: u64,
    /// When it started waiting (`None` with a zero timeout: no clock is read).
    since: Option<Instant>,
    /// `claim` when it started waiting at an empty header: every claim below it had been
    /// made by then.
    claim: Option<u64>,
}

/// The consuming end. Exactly one may exist per ring (the caller's duty across processes).
pub struct Consumer<R: Region> {
    pub(super) ring: Ring<R>,
    /// Local copy of our `read` position.
    pub(super) read: u64,
    consumed: u64,
    abandoned: u64,
    commit_timeout: Duration,
    stuck: Option<Stuck>,
    _not_sync: NotSync,
}

// SAFETY: as for Producer: local state plus atomics and records committed to us.
unsafe impl<R: Region> Send for Consumer<R> {}

impl<R: Region> Consumer<R> {
    /// Attaches the consuming end to an initialised ring at `offset` of `region`, with
    /// default options.
    pub fn attach(region: R, offset: usize) -> Result<Consumer<R>, LayoutError> {
        Consumer::attach_with(region, offset, ConsumerOptions::default())
    }

    /// Attaches the consuming end with `options`.
    pub fn attach_with(
        region: R,
        offset: usize,
        options: ConsumerOptions,
    ) -> Result<Consumer<R>, LayoutError> {
        let ring = Ring::attach(region, offset)?;
        let (read, _) = ring.positions()?;
        let line = &ring.ctrl().consumer;
        let consumed = line.consumed.load(Ordering::Relaxed);
        let abandoned = line.abandoned.load(Ordering::Relaxed);
        Ok(Consumer {
            ring,
            read,
            consumed,
            abandoned,
            commit_timeout: options.commit_timeout,
            stuck: None,
            _not_sync: std::marker::PhantomData,
        })
    }

    /// The commit timeout in force.
    pub fn commit_timeout(&self) -> Duration {
        self.commit_timeout
    }

    /// Changes the commit timeout.
    pub fn set_commit_timeout(&mut self, timeout: Duration) {
        self.commit_timeout = timeout;
    }

    /// The next committed record, in place, if one is ready. It stays in the ring until
    /// [`Peeked::release`]; peeking again returns the same record.
    ///
    /// Returns `None` when the ring is empty and also while the record at the head is
    /// claimed but not yet committed; once that has lasted `commit_timeout`, the record is
    /// skipped (counted in [`MpscStats::abandoned`]) and the next one is looked at.
    pub fn peek(&mut self) -> Result<Option<Peeked<'_, R>>, Corrupt> {
        loop {
            let pos = self.read;
            // SYNC: record committed; SYNC: header published
            let word = self.ring.header(pos).load(Ordering::Acquire);
            match self.ring.decode(word, pos).map_err(|what| self.ring.corrupt(pos, what))? {
                Header::Data { len, total } => {
                    self.stuck = None;
                    let off = (pos & (self.ring.cap - 1)) + record::HEADER;
                    return Ok(Some(Peeked { consumer: self, off, len, end: pos + total }));
                }
                Header::Skip { total } => self.skip(pos, pos + total, false),
                Header::Claimed { total } => {
                    if !self.expired(pos, None) {
                        return Ok(None);
                    }
                    let gone = self.ring.empty(pos + self.ring.cap);
                    let header = self.ring.header(pos);
                    let cas =
                        header.compare_exchange(word, gone, Ordering::Acquire, Ordering::Relaxed);
                    if cas.is_ok() {
                        self.skip(pos + record::HEADER, pos + total, true);
                    }
                    // Otherwise it was committed or dropped just now: look again.
                }
                Header::Empty => {
                    let claim = self.ring.ctrl().producers.claim.load(Ordering::Relaxed);
                    check_positions(pos, claim, self.ring.cap)
                        .map_err(|what| self.ring.corrupt(claim, what))?;
                    if claim == pos {
                        self.stuck = None;
                        return Ok(None);
                    }
                    if !self.expired(pos, Some(claim)) {
                        return Ok(None);
                    }
                    // Claims below the `claim` seen when the wait began are overdue.
                    let limit = self.stuck.and_then(|s| s.claim).filter(|&c| c > pos);
                    let end = self.dead_range_end(pos, limit.unwrap_or(claim))?;
                    self.skip(pos, end, true);
                }
            }
        }
    }

    /// Copies the next record into `buf` (replacing its contents) and releases it.
    /// Returns the record length, or `None` if no record is ready.
    pub fn pop_into(&mut self, buf: &mut Vec<u8>) -> Result<Option<usize>, Corrupt> {
        match self.peek()? {
            None => Ok(None),
            Some(rec) => {
                buf.clear();
                buf.extend_from_slice(rec.bytes());
                let n = rec.len();
                rec.release();
                Ok(Some(n))
            }
        }
    }

    /// Counters of this ring.
    pub fn stats(&self) -> MpscStats {
        self.ring.stats()
    }

    /// The region the ring lives in.
    pub fn region(&self) -> &R {
        &self.ring.region
    }

    /// Whether the wait at `pos` has lasted `commit_timeout`. The clock is read only here,
    /// that is only while stuck. `claim` is given when the header at `pos` is empty.
    fn expired(&mut self, pos: u64, claim: Option<u64>) -> bool {
        let fresh = match self.stuck {
            Some(s) => s.pos != pos || (claim.is_some() && s.claim.is_none()),
            None => true,
        };
        if fresh {
            let since = (!self.commit_timeout.is_zero()).then(Instant::now);
            self.stuck = Some(Stuck { pos, since, claim });
        }
        match self.stuck.and_then(|s| s.since) {
            None => true,
            Some(since) => since.elapsed() >= self.commit_timeout,
        }
    }

    /// End of the range claimed at `pos` by producers that never wrote a header: the first
    /// written header after `pos`, or `limit` (a claim boundary above `pos`).
    fn dead_range_end(&self, pos: u64, limit: u64) -> Result<u64, Corrupt> {
        let mut p = pos + record::HEADER;
        while p < limit {
            let word = self.ring.header(p).load(Ordering::Relaxed);
            if word != self.ring.empty(p) {
                // Not empty, so it must be the header of the next claim.
                self.ring.decode(word, p).map_err(|what| self.ring.corrupt(p, what))?;
                return Ok(p);
            }
            p += record::HEADER;
        }
        Ok(limit)
    }

    /// Scrubs `[from, end)` and releases everything up to `end` without delivering it.
    fn skip(&mut self, from: u64, end: u64, abandoned: bool) {
        self.ring.scrub(from, end);
        if abandoned {
            self.abandoned += 1;
            self.ring.ctrl().consumer.abandoned.store(self.abandoned, Ordering::Relaxed);
        }
        self.release_to(end);
    }

    fn release_to(&mut self, end: u64) {
        self.read = end;
        self.stuck = None;
        // SYNC: space released
        self.ring.ctrl().consumer.read.store(end, Ordering::Release);
    }
}

/// A record read in place by [`Consumer::peek`].
pub struct Peeked<'a, R: Region> {
    consumer: &'a mut Consumer<R>,
    off: u64,
    len: u32,
    end: u64,
}

impl<R: Region> Peeked<'_, R> {
    /// The payload, in shared memory (zero copy).
    pub fn bytes(&self) -> &[u8] {
        let ring = &self.consumer.ring;
        #[cfg(loom)]
        ring.track(self.off, u64::from(self.len), false);
        // SAFETY: [off, off+len) was validated to lie inside the data area; the record is
        // committed and its space is not reused before we release it.
        unsafe { std::slice::from_raw_parts(ring.at(self.off), self.len as usize) }
    }

    /// Payload length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Consumes the record: scrubs it and gives its space back to the producers.
    pub fn release(self) {
        let c = self.consumer;
        let start = c.read;
        c.ring.scrub(start, self.end);
        c.consumed += 1;
        c.ring.ctrl().consumer.consumed.store(c.consumed, Ordering::Relaxed);
        c.release_to(self.end);
    }
}

impl<R: Region> std::fmt::Debug for Consumer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.ring.cap)
            .field("read", &self.read)
            .field("commit_timeout", &self.commit_timeout)
            .finish_non_exhaustive()
    }
}

impl<R: Region> std::fmt::Debug for Peeked<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peeked").field("offset", &self.off).field("len", &self.len).finish()
    }
}
