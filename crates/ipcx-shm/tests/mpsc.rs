//! MPSC ring across processes: producers are peer processes mapping one POSIX shm object,
//! the consumer is the test process.

use std::time::{Duration, Instant};

use ipcx_shm::ring::mpsc::{self, Consumer, ConsumerOptions, Producer};
use ipcx_shm::ring::ClaimError;
use ipcx_shm::MappedRegion;
use ipcx_sys::mapping::Access;
use ipcx_sys::posix_shm::PosixShm;
use ipcx_sys::CreateMode;
use ipcx_testkit::{leftovers, peer, read_command, signal, unique_name, Peer};

ipcx_testkit::peer_entry!(peer_main);

/// Data bytes of the rings used here.
const CAPACITY: u64 = 1 << 20;
/// Largest record length the producers send.
const MAX_LEN: u64 = 512;
/// Producer id the stuck peers use; no record of it may ever be delivered.
const STUCK_ID: u32 = 9;

fn peer_main(role: &str, args: &[String]) {
    let name = &args[0];
    let shm = PosixShm::builder(name).create_mode(CreateMode::Open).open().expect("open shm");
    let region = MappedRegion::new(shm.map(Access::ReadWrite).expect("map")).expect("writable");
    let mut p = Producer::attach(region, 0).expect("attach producer");
    match role {
        "producer" => {
            let (id, count) = (args[1].parse().unwrap(), args[2].parse().unwrap());
            let mut spins = 0u64;
            for seq in 0..count {
                let len = record_len(id, seq);
                loop {
                    match p.claim(len) {
                        Ok(mut claim) => {
                            write_record(id, seq, claim.bytes());
                            claim.commit().expect("commit");
                            break;
                        }
                        Err(ClaimError::Full) => {
                            spins += 1;
                            std::thread::yield_now();
                        }
                        Err(e) => panic!("producer {id}: {e}"),
                    }
                }
            }
            signal("done", &spins.to_string());
        }
        "stuck-after-header" => {
            let mut claim = p.claim(100).expect("claim");
            claim.bytes()[..50].fill(STUCK_ID as u8);
            signal("claimed", &claim.position().to_string());
            read_command(); // never answered: the parent kills us here
            drop(claim);
        }
        "stuck-before-header" => {
            let pos = p.reserve_and_vanish(100).expect("reserve");
            signal("claimed", &pos.to_string());
            read_command();
        }
        other => panic!("unknown role {other}"),
    }
}

/// A payload length in 0..=MAX_LEN, pseudo-random but fixed by (producer, seq).
fn record_len(id: u32, seq: u64) -> usize {
    (mix((u64::from(id) << 40) ^ seq) % (MAX_LEN + 1)) as usize
}

fn mix(mut x: u64) -> u64 {
    // splitmix64
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Record (id, seq): at least 16 bytes carry `[id u32 | seq u32 | len u32 | crc32 u32]`
/// and a body, the crc covering everything but itself. Shorter records carry the first
/// bytes of `[id u8 | seq u32 LE]` followed by body bytes; empty ones carry nothing.
fn write_record(id: u32, seq: u64, buf: &mut [u8]) {
    let len = buf.len();
    let mut state = mix(seq ^ (u64::from(id) << 56)) | 1;
    let body_at = if len >= 16 { 16 } else { len.min(5) };
    for chunk in buf[body_at..].chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    if len >= 16 {
        buf[0..4].copy_from_slice(&id.to_le_bytes());
        buf[4..8].copy_from_slice(&(seq as u32).to_le_bytes());
        buf[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        let crc = crc(&buf[..12], &buf[16..]);
        buf[12..16].copy_from_slice(&crc.to_le_bytes());
    } else {
        let mut short = [0u8; 5];
        short[0] = id as u8;
        short[1..].copy_from_slice(&(seq as u32).to_le_bytes());
        buf[..body_at].copy_from_slice(&short[..body_at]);
    }
}

fn crc(head: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    h.update(body);
    h.finalize()
}

/// Checks what the consumer receives: per producer, every record exactly once, in order,
/// intact. Empty records carry no identity; only their number is checked.
struct Checker {
    /// Records each producer sends.
    counts: Vec<u64>,
    next: Vec<u64>,
    empty_expected: u64,
    empty_received: u64,
    scratch: Vec<u8>,
}

impl Checker {
    fn new(counts: Vec<u64>) -> Checker {
        Checker {
            next: vec![0; counts.len()],
            counts,
            empty_expected: 0,
            empty_received: 0,
            scratch: Vec::new(),
        }
    }

    /// Passes `id`'s empty records before the next non-empty one.
    fn skip_empty(&mut self, id: usize) {
        while self.next[id] < self.counts[id] && record_len(id as u32, self.next[id]) == 0 {
            self.next[id] += 1;
            self.empty_expected += 1;
        }
    }

    fn check(&mut self, b: &[u8]) {
        if b.is_empty() {
            self.empty_received += 1;
            return;
        }
        let id = if b.len() >= 16 { field(b, 0) as usize } else { usize::from(b[0]) };
        assert!(id < self.next.len(), "record of unknown producer {id} ({} bytes)", b.len());
        self.skip_empty(id);
        let seq = self.next[id];
        assert!(seq < self.counts[id], "producer {id}: more records than sent");
        let len = record_len(id as u32, seq);
        assert_eq!(b.len(), len, "producer {id} seq {seq}: lost, duplicated or reordered");
        if len >= 16 {
            let what = "lost, duplicated, reordered or corrupt";
            assert_eq!(field(b, 4), seq as u32, "producer {id} seq {seq}: {what}");
            assert_eq!(field(b, 8) as usize, len, "producer {id} seq {seq}: length field");
            assert_eq!(field(b, 12), crc(&b[..12], &b[16..]), "producer {id} seq {seq}: crc");
        } else {
            self.scratch.resize(len, 0);
            write_record(id as u32, seq, &mut self.scratch);
            assert_eq!(b, &self.scratch[..], "producer {id} seq {seq}: short record differs");
        }
        self.next[id] += 1;
    }

    fn finish(&mut self) {
        for id in 0..self.next.len() {
            self.skip_empty(id);
            assert_eq!(self.next[id], self.counts[id], "producer {id}: records missing");
        }
        assert_eq!(self.empty_received, self.empty_expected, "empty records lost or duplicated");
    }
}

fn field(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// A fresh ring in a POSIX shm object `name`, removed when the handle drops.
fn create_ring(name: &str) -> (PosixShm, MappedRegion) {
    let size = mpsc::required_size(CAPACITY) as usize;
    let shm = PosixShm::builder(name).size(size).open().expect("create shm");
    let region = MappedRegion::new(shm.map(Access::ReadWrite).expect("map")).expect("writable");
    mpsc::init(&region, 0, CAPACITY).expect("init ring");
    (shm, region)
}

/// Consumes until `checker` has seen `total` records or `limit` passes.
fn consume(c: &mut Consumer<MappedRegion>, checker: &mut Checker, total: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut seen = 0;
    while seen < total {
        match c.peek().expect("ring not corrupt") {
            Some(rec) => {
                checker.check(rec.bytes());
                rec.release();
                seen += 1;
            }
            None => {
                assert!(Instant::now() < deadline, "only {seen} of {total} records arrived");
                std::thread::yield_now();
            }
        }
    }
}

fn run_producers(name: &str, producers: u32, count: u64) {
    let (shm, region) = create_ring(name);
    let mut c = Consumer::attach(region, 0).expect("attach consumer");
    let mut peers: Vec<Peer> =
        (0..producers).map(|id| peer("producer").arg(name).arg(id).arg(count).spawn()).collect();
    let mut checker = Checker::new(vec![count; producers as usize]);
    let started = Instant::now();
    let total = u64::from(producers) * count;
    consume(&mut c, &mut checker, total, Duration::from_secs(60 + count / 20_000));
    let elapsed = started.elapsed();
    checker.finish();
    let mut full_spins = 0u64;
    for p in &mut peers {
        full_spins += p.expect("done").parse::<u64>().unwrap();
        p.wait_success();
    }
    assert!(c.peek().unwrap().is_none());
    let s = c.stats();
    assert_eq!((s.published, s.consumed, s.abandoned, s.queued_bytes), (total, total, 0, 0));
    eprintln!(
        "{producers} producer processes x {count} records: {:.2} s, {:.2} M records/s, \
         {} claims refused as full, {full_spins} producer full-spins",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64() / 1e6,
        s.full,
    );
    drop(shm);
    assert!(leftovers(name).is_empty());
}

#[test]
fn four_producer_processes_a_million_records_each() {
    run_producers(&unique_name("mpsc"), 4, 1_000_000);
}

#[test]
#[ignore = "long: 4 x 10M records"]
fn four_producer_processes_ten_million_records_each() {
    run_producers(&unique_name("mpsc"), 4, 10_000_000);
}

/// A producer process killed while it holds a claim (`stuck` role) is skipped after the
/// commit timeout; the other producers' records all arrive, before and after it.
fn killed_mid_record(stuck_role: &str) {
    const COUNT: u64 = 20_000;
    let name = unique_name("mpsc");
    let (shm, region) = create_ring(&name);
    let opts = ConsumerOptions::new().commit_timeout(Duration::from_millis(300));
    let mut c = Consumer::attach_with(region, 0, opts).expect("attach consumer");
    // Two records ahead of the stuck one, so the skip happens mid-stream.
    let mut first = peer("producer").arg(&name).arg(0).arg(2).spawn();
    first.expect("done");
    first.wait_success();
    let mut stuck = peer(stuck_role).arg(&name).spawn();
    let pos: u64 = stuck.expect("claimed").parse().unwrap();
    stuck.kill();
    let mut peers: Vec<Peer> =
        (1..3).map(|id| peer("producer").arg(&name).arg(id).arg(COUNT).spawn()).collect();
    let mut checker = Checker::new(vec![2, COUNT, COUNT]);
    consume(&mut c, &mut checker, 2, Duration::from_secs(30));
    assert_eq!(c.stats().abandoned, 0);
    let skipped_at = Instant::now();
    consume(&mut c, &mut checker, 2 * COUNT, Duration::from_secs(60));
    checker.finish();
    for p in &mut peers {
        p.expect("done");
        p.wait_success();
    }
    assert!(c.peek().unwrap().is_none());
    let s = c.stats();
    assert_eq!(s.abandoned, 1, "exactly the killed producer's claim is skipped");
    assert_eq!(s.published, 2 + 2 * COUNT);
    assert_eq!(s.consumed, 2 + 2 * COUNT);
    eprintln!(
        "{stuck_role}: claim at {pos} skipped; rest drained {:.2} s after",
        skipped_at.elapsed().as_secs_f64()
    );
    drop(shm);
    assert!(leftovers(&name).is_empty());
}

#[test]
fn a_producer_killed_after_its_header_is_skipped() {
    killed_mid_record("stuck-after-header");
}

#[test]
fn a_producer_killed_before_its_header_is_skipped() {
    killed_mid_record("stuck-before-header");
}
