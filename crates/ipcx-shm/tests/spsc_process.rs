//! The SPSC ring and its two doorbells between real processes: a stress stream checked for
//! loss, duplication, reordering and corruption (zero copy and copying); producers and
//! consumers SIGKILLed mid-stream, detected by a timed-out wait plus a liveness token, and
//! replaced by a new process that resumes at the stored position; close while parked; and
//! hostile peers writing garbage into the ring.
//!
//! Segment payload (kind `SpscRing`):
//!
//! ```text
//! +0    data doorbell   producer rings after each commit, consumer waits on it
//! +128  space doorbell  consumer rings after each release, producer waits on it when Full
//! +256  the ring        control block (write +0, read +128, info +256), data at +384
//! ```
//!
//! A record is `META` bytes (producer id u32, payload len u32, seq u64, crc32 u32, 0 u32)
//! then a payload of 0..=1024 bytes from a seeded xorshift, or now and then as large as the
//! ring allows. Lengths and bytes are a function of (seed, seq), so a consumer checks each
//! record on its own.
#![cfg(not(loom))]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ipcx_shm::doorbell::DoorbellState;
use ipcx_shm::record::{self, Corruption, KIND_DATA, KIND_PAD};
use ipcx_shm::ring::spsc::{self, Consumer, Producer};
use ipcx_shm::ring::{ClaimError, Corrupt, LayoutError};
use ipcx_shm::{
    Doorbell, Expect, MappedRegion, Region, Segment, SegmentKind, SegmentSpec, WaitError,
    WaitPolicy,
};
use ipcx_sys::liveness::{claim_dead, probe, Liveness, LivenessToken};
use ipcx_sys::Permissions;
use ipcx_testkit::{leftovers, peer, read_command, signal, unique_name, Peer};

ipcx_testkit::peer_entry!(peer_main);

type R = Arc<MappedRegion>;

/// Contract fingerprint of this file's segments.
const FP: u64 = 0x7370_7363_7072_6f63;
/// Ring capacity: 64 KiB, so the largest payload is 32 KiB - 8.
const CAP: u64 = 1 << 16;
const CAP_LOG2: u32 = 16;
const DATA_BELL: usize = 0;
const SPACE_BELL: usize = DoorbellState::SIZE;
const RING: usize = 2 * DoorbellState::SIZE;
/// Offsets inside the ring's control block (see `ring/spsc.rs`).
const WRITE_POS: usize = RING;
const READ_POS: usize = RING + 128;
const DATA: usize = RING + 384;
/// A position far past anything either side reached.
const OFF_THE_MAP: u64 = 1 << 40;
/// Offset of the futex word in a doorbell (asserted in the crate).
const SEQ_WORD: usize = 4;
/// Bytes of record metadata in front of each payload.
const META: usize = 24;
const SEED: u64 = 0x5eed_0f5e_9c0d_e5a1;
/// Records of the default stress runs (a few seconds each in a debug build).
const STRESS_N: u64 = 300_000;
/// Records of the ignored long runs ("SPSC 10 M records").
const LONG_N: u64 = 10_000_000;
/// A waiting side checks its peer's liveness after each slice without progress.
const SLICE: Duration = Duration::from_millis(100);
/// How long a side waits for a peer that is alive but makes no progress (a test failure).
const PATIENCE: Duration = Duration::from_secs(20);

// ---- the channel: segment, ring ends, doorbells ----

/// A mapped SPSC segment with both doorbells.
struct Chan {
    seg: Segment,
    data: Doorbell<R>,
    space: Doorbell<R>,
}

impl Chan {
    /// Creates the segment, the ring and both doorbells (the creator removes it on drop).
    fn create(name: &str) -> Chan {
        let size = RING + spsc::required_size(CAP) as usize;
        let spec = SegmentSpec { fingerprint: FP, ..SegmentSpec::new(SegmentKind::SpscRing, size) };
        let seg = Segment::create(name, &spec).unwrap();
        let base = seg.payload_offset();
        spsc::init(seg.region(), base + RING, CAP).unwrap();
        let data = Doorbell::init_in(Arc::clone(seg.region()), base + DATA_BELL).unwrap();
        let space = Doorbell::init_in(Arc::clone(seg.region()), base + SPACE_BELL).unwrap();
        Chan { seg, data, space }
    }

    /// Opens the segment another process created.
    fn open(name: &str) -> Chan {
        let expect = Expect { kind: SegmentKind::SpscRing, fingerprint: FP };
        let seg = Segment::open(name, expect).unwrap();
        let base = seg.payload_offset();
        let data = Doorbell::attach(Arc::clone(seg.region()), base + DATA_BELL).unwrap();
        let space = Doorbell::attach(Arc::clone(seg.region()), base + SPACE_BELL).unwrap();
        Chan { seg, data, space }
    }

    fn producer(&self) -> Producer<R> {
        Producer::attach(Arc::clone(self.seg.region()), self.seg.payload_offset() + RING).unwrap()
    }

    fn consumer(&self) -> Result<Consumer<R>, LayoutError> {
        Consumer::attach(Arc::clone(self.seg.region()), self.seg.payload_offset() + RING)
    }

    fn tx(&self, zero_copy: bool, id: u32) -> Tx {
        let (data, space) = (self.data_bell(), self.space_bell());
        Tx { p: self.producer(), data, space, zero_copy, id, buf: Vec::new(), full_waits: 0 }
    }

    fn rx(&self, zero_copy: bool) -> Rx {
        let (data, space) = (self.data_bell(), self.space_bell());
        Rx { c: self.consumer().unwrap(), data, space, zero_copy, buf: Vec::new() }
    }

    fn data_bell(&self) -> Doorbell<R> {
        Doorbell::attach(Arc::clone(self.seg.region()), self.data.offset()).unwrap()
    }

    fn space_bell(&self) -> Doorbell<R> {
        Doorbell::attach(Arc::clone(self.seg.region()), self.space.offset()).unwrap()
    }

    /// A word of the payload, for peers that write what they should not.
    fn word(&self, offset: usize) -> &AtomicU64 {
        self.seg.region().get().atomic_u64_at(self.seg.payload_offset() + offset).unwrap()
    }

    /// Address of a doorbell's futex word, as it appears in /proc/<pid>/task/*/syscall.
    fn futex_addr(&self, bell: usize) -> String {
        let addr = self.seg.region().base().as_ptr() as usize;
        format!("{:#x}", addr + self.seg.payload_offset() + bell + SEQ_WORD)
    }
}

/// Why a send or a receive ended without its record.
#[derive(Debug)]
enum End {
    /// The peer's liveness token says it is gone, and the ring says it left nothing more.
    PeerDead,
    /// The doorbell was closed.
    Closed,
    /// The ring is corrupt.
    Corrupt(Corrupt),
}

/// Whether the owner of the token at `path` is still there; fails the test after
/// [`PATIENCE`] of a live peer doing nothing.
fn peer_alive(path: &Path, since: Instant) -> bool {
    match probe(path).unwrap() {
        Liveness::Alive => {
            assert!(since.elapsed() < PATIENCE, "peer {path:?} alive but stuck");
            true
        }
        Liveness::Dead | Liveness::Missing => false,
    }
}

/// The producing side: ring producer and both doorbells.
struct Tx {
    p: Producer<R>,
    data: Doorbell<R>,
    space: Doorbell<R>,
    zero_copy: bool,
    id: u32,
    buf: Vec<u8>,
    /// Times a send found the ring full and waited on the space doorbell.
    full_waits: u64,
}

/// Free bytes of the ring as the producer sees them (read-only: fit for `wait_until`).
fn free_bytes(p: &Producer<R>) -> u64 {
    let cap = 2 * (p.max_payload() + record::HEADER);
    cap - p.stats().queued_bytes
}

impl Tx {
    fn len_of(&self, seq: u64) -> usize {
        META + payload_len(seq, self.p.max_payload() as usize)
    }

    /// Sends record `seq`. While the ring is full, waits on the space doorbell in slices;
    /// after each empty slice probes the consumer's token and calls `stalled` while it
    /// lives. Ends with [`End::PeerDead`] once the consumer is gone.
    fn send(
        &mut self,
        seq: u64,
        consumer: &Path,
        stalled: &mut dyn FnMut(&Producer<R>),
    ) -> Result<(), End> {
        let len = self.len_of(seq);
        if !self.zero_copy {
            self.buf.resize(len, 0);
            encode(&mut self.buf, self.id, seq);
        }
        let since = Instant::now();
        loop {
            let sent = if self.zero_copy {
                self.p.claim(len).map(|mut claim| {
                    encode(claim.bytes(), self.id, seq);
                    claim.commit();
                })
            } else {
                self.p.push(&self.buf)
            };
            match sent {
                Ok(()) => {
                    self.data.ring().unwrap();
                    return Ok(());
                }
                Err(ClaimError::Full) => {}
                Err(ClaimError::Corrupt(c)) => return Err(End::Corrupt(c)),
                Err(e @ ClaimError::TooLarge { .. }) => panic!("{e}"),
            }
            self.full_waits += 1;
            if !self.wait_room(len, consumer, since, stalled)? {
                return Err(End::PeerDead);
            }
        }
    }

    /// Waits one slice for room for a `len`-byte record; `Ok(false)` if the consumer is dead.
    fn wait_room(
        &mut self,
        len: usize,
        consumer: &Path,
        since: Instant,
        stalled: &mut dyn FnMut(&Producer<R>),
    ) -> Result<bool, End> {
        // Room for the record plus a pad before it, whatever the write position.
        let need = 2 * record::record_size(len as u64).unwrap();
        let p = &self.p;
        match self.space.wait_until(|| free_bytes(p) >= need, WaitPolicy::default(), Some(SLICE)) {
            Ok(()) => Ok(true),
            Err(WaitError::Timeout) if peer_alive(consumer, since) => {
                stalled(&self.p);
                Ok(true)
            }
            Err(WaitError::Timeout) => Ok(false),
            Err(WaitError::Closed) => Err(End::Closed),
            Err(e @ WaitError::Os(_)) => panic!("{e}"),
        }
    }

    /// Sends records `first..end` to a consumer that must stay alive.
    fn send_all(&mut self, first: u64, end: u64, consumer: &Path) {
        for seq in first..end {
            self.send(seq, consumer, &mut |_| {}).unwrap();
        }
    }
}

/// The consuming side: ring consumer and both doorbells.
struct Rx {
    c: Consumer<R>,
    data: Doorbell<R>,
    space: Doorbell<R>,
    zero_copy: bool,
    buf: Vec<u8>,
}

impl Rx {
    /// Waits until a record is ready. After each empty slice probes the producer's token;
    /// once it is gone, one last look at the ring (it may have committed just before it
    /// died) decides between a record and [`End::PeerDead`].
    fn wait_ready(&mut self, producer: &Path) -> Result<(), End> {
        let since = Instant::now();
        loop {
            let mut bad = None;
            let c = &mut self.c;
            let ready = || c.has_next().unwrap_or_else(|e| bad.replace(e).is_none());
            let r = self.data.wait_until(ready, WaitPolicy::default(), Some(SLICE));
            if let Some(e) = bad {
                return Err(End::Corrupt(e));
            }
            match r {
                Ok(()) => return Ok(()),
                Err(WaitError::Timeout) if peer_alive(producer, since) => {}
                Err(WaitError::Timeout) => {
                    return match self.c.has_next() {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(End::PeerDead),
                        Err(e) => Err(End::Corrupt(e)),
                    };
                }
                Err(WaitError::Closed) => return Err(End::Closed),
                Err(e @ WaitError::Os(_)) => panic!("{e}"),
            }
        }
    }

    /// Receives the next record, hands it to `f` (in place or copied), releases it.
    fn recv<T>(&mut self, producer: &Path, f: impl FnOnce(&[u8]) -> T) -> Result<T, End> {
        self.wait_ready(producer)?;
        let out = if self.zero_copy {
            let rec = self.c.peek().map_err(End::Corrupt)?.expect("a record is ready");
            let out = f(rec.bytes());
            rec.release();
            out
        } else {
            self.c.pop_into(&mut self.buf).map_err(End::Corrupt)?.expect("a record is ready");
            f(&self.buf)
        };
        self.space.ring().unwrap();
        Ok(out)
    }
}

// ---- records ----

/// A xorshift64 state for (seed, seq): splitmix64 of both, never 0.
fn rng(seed: u64, seq: u64) -> u64 {
    let mut z = seed ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Payload length of record `seq`: 0..=1024, except one record in 128 that fills the
/// ring's largest payload.
fn payload_len(seq: u64, max_payload: usize) -> usize {
    let r = xorshift(&mut rng(SEED, seq));
    if r % 128 == 0 {
        max_payload - META
    } else {
        (r >> 8) as usize % 1025
    }
}

/// Writes record `seq` of producer `id` into `buf` (`META` + its payload length).
fn encode(buf: &mut [u8], id: u32, seq: u64) {
    let (meta, payload) = buf.split_at_mut(META);
    let mut s = rng(!SEED, seq);
    for chunk in payload.chunks_mut(8) {
        chunk.copy_from_slice(&xorshift(&mut s).to_le_bytes()[..chunk.len()]);
    }
    meta[0..4].copy_from_slice(&id.to_le_bytes());
    meta[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    meta[8..16].copy_from_slice(&seq.to_le_bytes());
    meta[16..20].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    meta[20..24].fill(0);
}

/// (producer id, seq) of an intact record, `None` if anything in it is wrong.
fn decode(rec: &[u8], max_payload: usize) -> Option<(u32, u64)> {
    let (meta, payload) = rec.split_at_checked(META)?;
    let word = |at: usize| u32::from_le_bytes(meta[at..at + 4].try_into().unwrap());
    let seq = u64::from_le_bytes(meta[8..16].try_into().unwrap());
    let ok = word(4) as usize == payload.len()
        && payload.len() == payload_len(seq, max_payload)
        && word(16) == crc32fast::hash(payload)
        && word(20) == 0;
    ok.then_some((word(0), seq))
}

/// What a consumer saw of the stream `first..end`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    received: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    corrupt: u64,
    /// Records of a replaced producer arriving after its successor's.
    stale: u64,
}

/// Checks each received record against the expected stream.
struct Checker {
    first: u64,
    end: u64,
    max_payload: usize,
    seen: Vec<u64>,
    distinct: u64,
    highest: Option<u64>,
    last_id: u32,
    bytes: u64,
    tally: Tally,
}

impl Checker {
    fn new(first: u64, end: u64) -> Checker {
        let max_payload = spsc_max_payload();
        let seen = vec![0; (end - first).div_ceil(64) as usize];
        let tally = Tally::default();
        Checker {
            first,
            end,
            max_payload,
            seen,
            distinct: 0,
            highest: None,
            last_id: 0,
            bytes: 0,
            tally,
        }
    }

    /// Checks one record; returns its (producer id, seq) if intact and in range.
    fn check(&mut self, rec: &[u8]) -> Option<(u32, u64)> {
        let t = &mut self.tally;
        t.received += 1;
        self.bytes += rec.len() as u64;
        let Some((id, seq)) =
            decode(rec, self.max_payload).filter(|r| (self.first..self.end).contains(&r.1))
        else {
            t.corrupt += 1;
            return None;
        };
        if id < self.last_id {
            t.stale += 1;
        }
        self.last_id = self.last_id.max(id);
        let i = (seq - self.first) as usize;
        if self.seen[i / 64] & (1 << (i % 64)) != 0 {
            t.duplicated += 1;
            return Some((id, seq));
        }
        self.seen[i / 64] |= 1 << (i % 64);
        self.distinct += 1;
        if self.highest.is_some_and(|h| h > seq) {
            t.reordered += 1;
        }
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        Some((id, seq))
    }

    fn finish(mut self) -> Tally {
        self.tally.lost = (self.end - self.first) - self.distinct;
        self.tally
    }
}

fn spsc_max_payload() -> usize {
    ipcx_shm::ring::max_payload(CAP) as usize
}

/// The tally of a clean stream of `n` records.
fn clean(n: u64) -> Tally {
    Tally { received: n, ..Tally::default() }
}

// ---- peers ----

/// `key=value` arguments.
fn arg<'a>(args: &'a [String], key: &str) -> &'a str {
    args.iter()
        .find_map(|a| a.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("peer argument {key} missing"))
}

fn num(args: &[String], key: &str) -> u64 {
    arg(args, key).parse().unwrap()
}

fn peer_main(role: &str, args: &[String]) {
    let chan = Chan::open(arg(args, "name"));
    match role {
        // Sends first..end, then either exits or claims record `end` and never commits it.
        "producer" => {
            let _token =
                LivenessToken::acquire(arg(args, "token"), Permissions::OWNER_ONLY).unwrap();
            let peer = PathBuf::from(arg(args, "peer"));
            let mut tx = chan.tx(arg(args, "mode") == "zc", num(args, "id") as u32);
            let (first, end) = (num(args, "first"), num(args, "end"));
            signal("ready", "");
            tx.send_all(first, end, &peer);
            if arg(args, "then") == "hang" {
                let (len, since) = (tx.len_of(end), Instant::now());
                while free_bytes(&tx.p) < 2 * record::record_size(len as u64).unwrap() {
                    assert!(tx.wait_room(len, &peer, since, &mut |_| {}).unwrap());
                }
                let mut claim = tx.p.claim(len).unwrap();
                encode(claim.bytes(), tx.id, end);
                signal("claimed", &end.to_string());
                read_command(); // SIGKILLed here, claim in hand
                return;
            }
            let stats = (tx.full_waits, tx.space.stats().parks, tx.data.stats().wakeups);
            signal("done", &format!("{stats:?}"));
        }
        // Receives first..end and reports its tally; with hold=K, releases K records, peeks
        // the next, reports its seq and waits to be killed.
        "consumer" => {
            let _token =
                LivenessToken::acquire(arg(args, "token"), Permissions::OWNER_ONLY).unwrap();
            let peer = PathBuf::from(arg(args, "peer"));
            let mut rx = chan.rx(arg(args, "mode") == "zc");
            let mut check = Checker::new(num(args, "first"), num(args, "end"));
            let hold = arg(args, "hold").parse::<u64>().ok();
            signal("ready", "");
            for n in 0..check.end - check.first {
                if hold == Some(n) {
                    rx.wait_ready(&peer).unwrap();
                    let rec = rx.c.peek().unwrap().unwrap();
                    let (_, seq) = decode(rec.bytes(), check.max_payload).unwrap();
                    signal("holding", &seq.to_string());
                    read_command();
                    return;
                }
                rx.recv(&peer, |b| check.check(b)).unwrap();
            }
            signal("done", &format!("{:?}", check.finish()));
        }
        // Pushes n records, then closes the data doorbell when told.
        "closer" => {
            let mut tx = chan.tx(false, 1);
            for seq in 0..num(args, "n") {
                tx.p.push(&record_bytes(1, seq)).unwrap();
                tx.data.ring().unwrap();
            }
            signal("sent", "");
            assert_eq!(read_command().as_deref(), Some("close"));
            chan.data.close().unwrap();
            signal("closed", "");
        }
        // Closes the space doorbell when told.
        "space-closer" => {
            signal("ready", "");
            assert_eq!(read_command().as_deref(), Some("close"));
            chan.space.close().unwrap();
            signal("closed", "");
        }
        "hostile" => hostile(&chan, arg(args, "case")),
        other => panic!("unknown role {other}"),
    }
}

fn record_bytes(id: u32, seq: u64) -> Vec<u8> {
    let mut buf = vec![0; META + payload_len(seq, spsc_max_payload())];
    encode(&mut buf, id, seq);
    buf
}

// ---- fixture ----

/// A test's segment and a directory for liveness tokens; both go when it drops.
struct Fixture {
    name: String,
    dir: PathBuf,
    chan: Option<Chan>,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let name = unique_name(tag);
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir(&dir).unwrap();
        let chan = Some(Chan::create(&name));
        Fixture { name, dir, chan }
    }

    fn chan(&self) -> &Chan {
        self.chan.as_ref().unwrap()
    }

    fn token(&self, who: &str) -> PathBuf {
        self.dir.join(format!("{who}.live"))
    }

    /// Removes a dead peer's token the race-free way (claim, then unlink).
    fn bury(&self, who: &str) {
        let dead = claim_dead(self.token(who)).unwrap().expect("token of a dead peer");
        dead.remove().unwrap();
    }

    fn producer(&self, id: u32, first: u64, end: u64, mode: &str, then: &str) -> Peer {
        let mut p = peer("producer")
            .arg(format!("name={}", self.name))
            .arg(format!("token={}", self.token("producer").display()))
            .arg(format!("peer={}", self.token("consumer").display()))
            .arg(format!("id={id}"))
            .arg(format!("first={first}"))
            .arg(format!("end={end}"))
            .arg(format!("mode={mode}"))
            .arg(format!("then={then}"))
            .spawn();
        p.expect("ready");
        p
    }

    fn consumer(&self, first: u64, end: u64, mode: &str, hold: Option<u64>) -> Peer {
        let hold = hold.map_or("none".to_owned(), |k| k.to_string());
        let mut p = peer("consumer")
            .arg(format!("name={}", self.name))
            .arg(format!("token={}", self.token("consumer").display()))
            .arg(format!("peer={}", self.token("producer").display()))
            .arg(format!("first={first}"))
            .arg(format!("end={end}"))
            .arg(format!("mode={mode}"))
            .arg(format!("hold={hold}"))
            .spawn();
        p.expect("ready");
        p
    }

    /// Drops the segment and checks nothing is left: no shm object, no token.
    fn finish(mut self) {
        drop(self.chan.take());
        assert_eq!(leftovers(&self.name), Vec::<String>::new());
        let tokens: Vec<_> = std::fs::read_dir(&self.dir).unwrap().collect();
        assert!(tokens.is_empty(), "tokens left: {tokens:?}");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---- 1. stress ----

/// A producer process streams `n` records to this process, which checks every one.
fn stress(n: u64, mode: &str) {
    let fx = Fixture::new("spscst");
    let me = LivenessToken::acquire(fx.token("consumer"), Permissions::OWNER_ONLY).unwrap();
    let mut rx = fx.chan().rx(mode == "zc");
    let mut check = Checker::new(0, n);
    let mut p = fx.producer(1, 0, n, mode, "exit");
    let producer = fx.token("producer");
    let start = Instant::now();
    for _ in 0..n {
        rx.recv(&producer, |b| check.check(b)).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let producer_stats = p.expect("done");
    p.wait_success();
    let (ring, data, space) = (rx.c.stats(), fx.chan().data.stats(), fx.chan().space.stats());
    let bytes = check.bytes;
    let tally = check.finish();
    println!(
        "stress {mode} {n} records in {secs:.2} s: {:.0} records/s, {:.1} MB/s; {tally:?}; \
         ring {ring:?}; producer (full waits, space parks, data wakeups) {producer_stats}; \
         data bell {data:?}; space bell {space:?}",
        n as f64 / secs,
        bytes as f64 / secs / 1e6,
    );
    assert_eq!(tally, clean(n));
    assert_eq!((ring.published, ring.consumed, ring.queued_bytes), (n, n, 0));
    drop(me);
    fx.finish();
}

#[test]
fn stress_zero_copy_claim_and_peek() {
    stress(STRESS_N, "zc");
}

#[test]
fn stress_copying_push_and_pop_into() {
    stress(STRESS_N, "copy");
}

#[test]
#[ignore = "10 M records; run in release: cargo test --release -p ipcx-shm --test spsc_process -- --ignored"]
fn stress_10m_zero_copy() {
    stress(LONG_N, "zc");
}

#[test]
#[ignore = "10 M records; run in release: cargo test --release -p ipcx-shm --test spsc_process -- --ignored"]
fn stress_10m_copying() {
    stress(LONG_N, "copy");
}

// ---- 2. producer SIGKILLed ----

#[test]
fn producer_killed_holding_a_claim_publishes_nothing_and_a_new_one_resumes() {
    const K: u64 = 3000;
    const N: u64 = 6000;
    let fx = Fixture::new("spsckp");
    let me = LivenessToken::acquire(fx.token("consumer"), Permissions::OWNER_ONLY).unwrap();
    let producer = fx.token("producer");
    let mut rx = fx.chan().rx(true);
    let mut check = Checker::new(0, N);
    let mut p1 = fx.producer(1, 0, K, "zc", "hang");
    for _ in 0..K {
        rx.recv(&producer, |b| check.check(b)).unwrap();
    }
    assert_eq!(p1.expect("claimed"), K.to_string());
    // The claim is written but not committed: nothing to read, the producer is alive.
    assert!(!rx.c.has_next().unwrap());
    assert_eq!(probe(&producer).unwrap(), Liveness::Alive);
    p1.kill();
    let killed = Instant::now();
    assert!(matches!(rx.recv(&producer, |b| check.check(b)), Err(End::PeerDead)));
    let detected = killed.elapsed();
    assert!(!rx.c.has_next().unwrap(), "the uncommitted record never appears");
    assert_eq!(rx.c.stats().published, K);
    fx.bury("producer");
    // A new producer attaches at the stored write position and the stream goes on.
    let mut p2 = fx.producer(2, K, N, "copy", "exit");
    let mut first_of_p2 = None;
    for _ in K..N {
        let got = rx.recv(&producer, |b| check.check(b)).unwrap();
        first_of_p2.get_or_insert(got);
    }
    p2.expect("done");
    p2.wait_success();
    assert_eq!(first_of_p2, Some(Some((2, K))), "record K comes from the new producer");
    let tally = check.finish();
    println!("claim-kill: detected in {detected:?}; {tally:?}");
    assert_eq!(tally, clean(N));
    drop(me);
    fx.finish();
}

#[test]
fn producers_killed_at_random_moments_lose_nothing_committed() {
    const TOTAL: u64 = 60_000;
    const KILLS: u32 = 5;
    let fx = Fixture::new("spsckr");
    let me = LivenessToken::acquire(fx.token("consumer"), Permissions::OWNER_ONLY).unwrap();
    let producer = fx.token("producer");
    let mut rx = fx.chan().rx(true);
    let mut check = Checker::new(0, TOTAL);
    let mut moments = rng(SEED, 77);
    let mut next = 0;
    let mut detected = Vec::new();
    for id in 1..=KILLS {
        let mode = if id % 2 == 0 { "copy" } else { "zc" };
        let mut p = fx.producer(id, next, TOTAL, mode, "exit");
        for _ in 0..500 + xorshift(&mut moments) % 8000 {
            rx.recv(&producer, |b| check.check(b)).unwrap();
        }
        p.kill();
        let killed = Instant::now();
        // Everything committed before the kill arrives intact, then the death is seen.
        loop {
            match rx.recv(&producer, |b| check.check(b)) {
                Ok(got) => assert!(got.is_some(), "corrupt record after a kill"),
                Err(End::PeerDead) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        detected.push(killed.elapsed());
        next = check.highest.unwrap() + 1;
        fx.bury("producer");
    }
    let mut p = fx.producer(KILLS + 1, next, TOTAL, "zc", "exit");
    for _ in next..TOTAL {
        rx.recv(&producer, |b| check.check(b)).unwrap();
    }
    p.expect("done");
    p.wait_success();
    let (ring, tally) = (rx.c.stats(), check.finish());
    println!("random kills: detected in {detected:?}; {tally:?}; ring {ring:?}");
    assert_eq!(tally, clean(TOTAL));
    drop(me);
    fx.finish();
}

// ---- 3. consumer SIGKILLed ----

#[test]
fn consumer_killed_mid_stream_is_noticed_and_a_new_one_resumes() {
    const K: u64 = 2000;
    const N: u64 = 6000;
    let fx = Fixture::new("spsckc");
    let me = LivenessToken::acquire(fx.token("producer"), Permissions::OWNER_ONLY).unwrap();
    let consumer = fx.token("consumer");
    let mut tx = fx.chan().tx(true, 1);
    let mut c1 = fx.consumer(0, N, "zc", Some(K));
    let mut held: Option<u64> = None;
    let mut killed = None;
    let mut c2 = None;
    let mut detected = None;
    for seq in 0..N {
        loop {
            // Blocked on Full: once the consumer sits on record K, kill it there.
            let r = tx.send(seq, &consumer, &mut |p| {
                if held.is_none() && p.stats().consumed == K {
                    held = Some(c1.expect("holding").parse().unwrap());
                    c1.kill();
                    killed = Some(Instant::now());
                }
            });
            match r {
                Ok(()) => break,
                Err(End::PeerDead) => {
                    assert!(c2.is_none() && killed.is_some(), "consumer seen dead before its kill");
                    detected = killed.map(|k| k.elapsed());
                    fx.bury("consumer");
                    // The peeked, unreleased record K is still in the ring for the next one.
                    c2 = Some(fx.consumer(held.unwrap(), N, "copy", None));
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    }
    assert_eq!(held, Some(K));
    let mut c2 = c2.expect("the consumer was replaced");
    assert_eq!(c2.expect("done"), format!("{:?}", clean(N - K)));
    c2.wait_success();
    let ring = tx.p.stats();
    println!(
        "consumer kill: detected in {detected:?}; full waits {}; ring {ring:?}",
        tx.full_waits
    );
    assert_eq!((ring.published, ring.consumed), (N, N));
    drop(me);
    fx.finish();
}

// ---- 4. close while parked ----

/// Waits (polling /proc, 10 s at most) until a thread of `pid` sits in a syscall whose
/// first argument is `addr`: the futex wait on a doorbell's word.
fn wait_until_parked(pid: u32, addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
            let syscall = std::fs::read_to_string(task.path().join("syscall")).unwrap_or_default();
            if syscall.split_whitespace().nth(1) == Some(addr) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "nobody parked on {addr}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn producer_closing_wakes_a_parked_consumer_after_its_records() {
    const N: u64 = 5;
    let fx = Fixture::new("spscclc");
    let mut rx = fx.chan().rx(false);
    let mut p = peer("closer").arg(format!("name={}", fx.name)).arg(format!("n={N}")).spawn();
    p.expect("sent");
    let (parking, parked) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut check = Checker::new(0, N);
        let nobody = PathBuf::from("/nonexistent");
        for _ in 0..N {
            rx.recv(&nobody, |b| check.check(b)).unwrap();
        }
        parking.send(()).unwrap();
        let r =
            rx.data.wait_until(|| rx.c.has_next().unwrap(), WaitPolicy::default(), Some(PATIENCE));
        (r, Instant::now(), check.finish())
    });
    parked.recv().unwrap();
    wait_until_parked(std::process::id(), &fx.chan().futex_addr(DATA_BELL));
    let close = Instant::now();
    p.send("close");
    p.expect("closed");
    let (r, woke, tally) = waiter.join().unwrap();
    println!("close: parked consumer woke {:?} after the close command", woke - close);
    assert!(matches!(r, Err(WaitError::Closed)), "{r:?}");
    assert_eq!(tally, clean(N));
    p.wait_success();
    assert_eq!(fx.chan().data.stats().waiters, 0);
    fx.finish();
}

#[test]
fn consumer_closing_wakes_a_producer_parked_on_full() {
    let fx = Fixture::new("spscclp");
    let mut tx = fx.chan().tx(false, 1);
    let mut p = peer("space-closer").arg(format!("name={}", fx.name)).spawn();
    p.expect("ready");
    let consumer = fx.token("nobody"); // no token: a probe finds it missing
    let (parking, parked) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut seq = 0;
        while tx.p.push(&record_bytes(1, seq)).is_ok() {
            seq += 1;
        }
        parking.send(()).unwrap();
        let since = Instant::now();
        let mut r = tx.wait_room(spsc_max_payload(), &consumer, since, &mut |_| {});
        while matches!(r, Ok(false)) {
            // The consumer has no token here: keep waiting for the close.
            r = tx.wait_room(spsc_max_payload(), &consumer, since, &mut |_| {});
        }
        (r, Instant::now())
    });
    parked.recv().unwrap();
    wait_until_parked(std::process::id(), &fx.chan().futex_addr(SPACE_BELL));
    let close = Instant::now();
    p.send("close");
    p.expect("closed");
    let (r, woke) = waiter.join().unwrap();
    println!("close: parked producer woke {:?} after the close command", woke - close);
    assert!(matches!(r, Err(End::Closed)), "{r:?}");
    p.wait_success();
    fx.finish();
}

// ---- 5. hostile peers ----

/// What the hostile peer does to the ring, by case.
fn hostile(chan: &Chan, case: &str) {
    let (write, read) = (chan.word(WRITE_POS), chan.word(READ_POS));
    let header = |pos: u64| chan.word(DATA + (pos % CAP) as usize);
    let publish = |pos: u64| {
        write.store(pos, Ordering::Release);
        chan.data.ring().unwrap();
    };
    match case {
        "beyond-capacity" => publish(CAP + 64),
        "unaligned" => {
            chan.producer().push(b"good").unwrap();
            publish(16 + 4);
        }
        "backwards" => {
            chan.producer().push(b"good").unwrap();
            chan.data.ring().unwrap();
            signal("pushed", "");
            assert_eq!(read_command().as_deref(), Some("go"));
            publish(8);
        }
        "bad-kind" => {
            header(0).store(record::encode(7, 8, 0, CAP_LOG2), Ordering::Relaxed);
            publish(16);
        }
        "huge-length" => {
            header(0).store(record::encode(KIND_DATA, u32::MAX, 0, CAP_LOG2), Ordering::Relaxed);
            publish(16);
        }
        // A PAD from the consumer's position to the ring's end: the whole ring, leaving
        // no room for the record it claims to make room for.
        "pad-over-the-ring" => {
            let pad = record::encode(KIND_PAD, (CAP - 8) as u32, 0, CAP_LOG2);
            header(0).store(pad, Ordering::Relaxed);
            publish(16);
        }
        "stale-lap" => {
            header(0).store(record::encode(KIND_DATA, 8, CAP, CAP_LOG2), Ordering::Relaxed);
            publish(16);
        }
        "short-pad" => {
            header(0).store(record::encode(KIND_PAD, 8, 0, CAP_LOG2), Ordering::Relaxed);
            publish(64);
        }
        "read-past-write" => read.store(OFF_THE_MAP, Ordering::Release),
        // Both positions at the top of the u64 range: "consistent", no room to grow.
        "positions-at-the-top" => {
            write.store(u64::MAX - 7, Ordering::Relaxed);
            read.store(u64::MAX - 7, Ordering::Relaxed);
        }
        // The shared statistics counters at their maximum, where a successor resumes them.
        "counters-at-max" => {
            for counter in [WRITE_POS + 8, WRITE_POS + 16, READ_POS + 8] {
                chan.word(counter).store(u64::MAX, Ordering::Relaxed);
            }
        }
        "random" => {
            let mut s = rng(SEED, 99);
            while read_command().as_deref() == Some("next") {
                let r = xorshift(&mut s);
                let word = match r % 4 {
                    0 => xorshift(&mut s),
                    // This lap's tag, any kind and length.
                    1 => xorshift(&mut s) & ((1 << 40) - 1),
                    // A data or pad header of this lap with a length near the ring's.
                    2 => record::encode(
                        KIND_DATA,
                        (xorshift(&mut s) % (2 * CAP)) as u32,
                        0,
                        CAP_LOG2,
                    ),
                    _ => {
                        record::encode(KIND_PAD, (xorshift(&mut s) % (2 * CAP)) as u32, 0, CAP_LOG2)
                    }
                };
                let pos = match (r >> 8) % 4 {
                    0 => xorshift(&mut s),
                    1 => xorshift(&mut s) % (2 * CAP),
                    _ => 8 * (1 + xorshift(&mut s) % (CAP / 8)),
                };
                header(0).store(word, Ordering::Relaxed);
                write.store(pos, Ordering::Release);
                signal("wrote", &format!("{word:#x} {pos}"));
            }
        }
        other => panic!("unknown hostile case {other}"),
    }
    signal("done", "");
}

/// Whether a corruption is the one a hostile case must cause.
type IsExpected = fn(&Corruption) -> bool;

fn hostile_peer(fx: &Fixture, case: &str) -> Peer {
    peer("hostile").arg(format!("name={}", fx.name)).arg(format!("case={case}")).spawn()
}

#[test]
fn hostile_producer_garbage_headers_are_a_corrupt_error() {
    let cases: [(&str, IsExpected); 5] = [
        ("bad-kind", |c| *c == Corruption::BadKind(7)),
        ("huge-length", |c| matches!(c, Corruption::BadLength { len: u32::MAX, .. })),
        ("pad-over-the-ring", |c| *c == Corruption::BadPad { len: (CAP - 8) as u32 }),
        ("stale-lap", |c| *c == Corruption::BadLap { found: 1, expected: 0 }),
        ("short-pad", |c| *c == Corruption::BadPad { len: 8 }),
    ];
    for (case, expected) in cases {
        let fx = Fixture::new("spschp");
        let mut rx = fx.chan().rx(true);
        let mut p = hostile_peer(&fx, case);
        p.expect("done");
        // The consumer's wait ends at once with the corruption: no panic, no hang.
        let r = rx.recv(Path::new("/nonexistent"), |b| b.to_vec());
        match r {
            Err(End::Corrupt(c)) => assert!(expected(&c.what), "{case}: {c:?}"),
            other => panic!("{case}: {other:?}"),
        }
        // A consumer attaching now finds the same header.
        let mut c = fx.chan().consumer().unwrap();
        assert!(matches!(c.peek(), Err(e) if expected(&e.what)), "{case}");
        p.wait_success();
        fx.finish();
    }
}

/// The consumer takes records by their headers and never loads the producer's position
/// once attached: a forged position changes nothing for it (its receive finds no record
/// and ends when the peer is gone), and a consumer attaching afterwards refuses it.
#[test]
fn hostile_producer_positions_are_ignored_then_refused_at_attach() {
    let cases: [(&str, IsExpected); 3] = [
        (
            "beyond-capacity",
            |c| matches!(c, Corruption::BadPosition { found, .. } if *found == CAP + 64),
        ),
        ("unaligned", |c| matches!(c, Corruption::BadPosition { found: 20, .. })),
        ("backwards", |c| matches!(c, Corruption::BadPosition { found: 8, other: 16, .. })),
    ];
    for (case, expected) in cases {
        let fx = Fixture::new("spschq");
        let mut rx = fx.chan().rx(true);
        let mut p = hostile_peer(&fx, case);
        let nobody = Path::new("/nonexistent");
        if case == "unaligned" || case == "backwards" {
            if case == "backwards" {
                p.expect("pushed");
            } else {
                p.expect("done");
            }
            assert_eq!(rx.recv(nobody, |b| b.to_vec()).unwrap(), b"good");
            if case == "backwards" {
                p.send("go");
            }
        }
        if case != "unaligned" {
            p.expect("done");
        }
        let r = rx.recv(nobody, |b| b.to_vec());
        assert!(matches!(r, Err(End::PeerDead)), "{case}: {r:?}");
        match fx.chan().consumer() {
            Err(LayoutError::Corrupt(c)) => assert!(expected(&c.what), "{case}: attach {c:?}"),
            other => panic!("{case}: attach {other:?}"),
        }
        p.wait_success();
        fx.finish();
    }
}

#[test]
fn hostile_consumer_position_is_a_corrupt_claim() {
    let fx = Fixture::new("spschc");
    let mut tx = fx.chan().tx(false, 1);
    let mut p = hostile_peer(&fx, "read-past-write");
    p.expect("done");
    let mut seq = 0;
    let r = loop {
        match tx.p.push(&record_bytes(1, seq)) {
            Ok(()) => seq += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            r,
            ClaimError::Corrupt(Corrupt {
                what: Corruption::BadPosition { other: OFF_THE_MAP, .. },
                ..
            })
        ),
        "{r:?}"
    );
    p.wait_success();
    fx.finish();
}

/// Ring ends attaching after a peer left the shared counters at u64::MAX keep working (the
/// counters are statistics; they must wrap, not panic in a debug build).
#[test]
fn counters_left_at_max_by_a_peer_do_not_panic() {
    let fx = Fixture::new("spschm");
    let mut p = hostile_peer(&fx, "counters-at-max");
    p.expect("done");
    p.wait_success();
    let mut tx = fx.chan().tx(false, 1);
    let mut rx = fx.chan().rx(true);
    let nobody = Path::new("/nonexistent");
    for seq in 0..2 * CAP / 8 {
        tx.send(seq, nobody, &mut |_| {}).unwrap();
        rx.recv(nobody, |b| assert!(decode(b, spsc_max_payload()).is_some())).unwrap();
    }
    fx.finish();
}

/// A producer attaching where a peer left both positions at the top of the u64 range must
/// refuse them as corrupt (or fail its claims as corrupt), not overflow.
#[test]
fn positions_at_the_top_of_the_range_are_corrupt_not_an_overflow() {
    let fx = Fixture::new("spscht");
    let mut p = hostile_peer(&fx, "positions-at-the-top");
    p.expect("done");
    p.wait_success();
    let region = Arc::clone(fx.chan().seg.region());
    match Producer::attach(region, fx.chan().seg.payload_offset() + RING) {
        Err(LayoutError::Corrupt(_)) => {}
        Err(e) => panic!("{e}"),
        Ok(mut producer) => {
            let r = producer.push(b"x");
            assert!(matches!(r, Err(ClaimError::Corrupt(_))), "{r:?}");
        }
    }
    fx.finish();
}

#[test]
fn hostile_producer_random_headers_and_positions_never_panic() {
    const ROUNDS: u32 = 400;
    let fx = Fixture::new("spschr");
    let mut p = hostile_peer(&fx, "random");
    let (mut refused, mut corrupt, mut records, mut empty) = (0, 0, 0, 0);
    for _ in 0..ROUNDS {
        p.send("next");
        let wrote = p.expect("wrote");
        // A fresh consumer each round, so every round's position is loaded and checked.
        match fx.chan().consumer() {
            Err(LayoutError::Corrupt(_)) => refused += 1,
            Err(e) => panic!("{wrote}: {e}"),
            Ok(mut c) => match c.peek() {
                Err(_) => corrupt += 1,
                Ok(None) => empty += 1,
                Ok(Some(rec)) => {
                    assert!(rec.len() as u64 <= ipcx_shm::ring::max_payload(CAP), "{wrote}");
                    records += 1;
                }
            },
        }
    }
    p.close_stdin();
    p.expect("done");
    p.wait_success();
    println!("random garbage: {refused} refused at attach, {corrupt} corrupt, {records} plausible, {empty} empty");
    assert_eq!(refused + corrupt + records + empty, ROUNDS);
    assert!(refused > 0 && corrupt > 0);
    fx.finish();
}
