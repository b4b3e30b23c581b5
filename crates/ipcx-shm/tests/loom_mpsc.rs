//! loom models of the MPSC ring. Under loom the ring's header words are loom atomics and
//! payload accesses are reported to loom cells (see `ring::mpsc` docs), so these models
//! check the commit (header) ordering and that no payload read races its write.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2
//! cargo test -p ipcx-shm --release --test loom_mpsc`
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize as StdAtomic, Ordering as StdOrdering};
use std::sync::Arc;
use std::time::Duration;

use ipcx_shm::ring::mpsc::{self, Consumer, ConsumerOptions, Producer};
use ipcx_shm::ring::ClaimError;
use ipcx_shm::HeapRegion;

type Region = Arc<HeapRegion>;

fn new_ring(cap: u64) -> Region {
    let region = Arc::new(HeapRegion::new(mpsc::required_size(cap) as usize));
    mpsc::init(&region, 0, cap).unwrap();
    region
}

/// Writes record `i` of producer `k` (`[k, i, fill...]`) into a claim and commits it.
fn write_and_commit(mut claim: mpsc::Claim<'_, Region>, k: u8, i: u8) {
    let b = claim.bytes();
    b.fill(k * 16 + i);
    b[0] = k;
    b[1] = i;
    claim.commit().unwrap();
}

/// Pushes record `i` of producer `k`, `len` bytes; the ring must have room.
fn push(p: &mut Producer<Region>, k: u8, i: u8, len: usize) {
    write_and_commit(p.claim(len).unwrap(), k, i);
}

/// Checks record `b` against what each producer pushed, in order; returns (k, i).
fn check(b: &[u8], len: usize, next: &mut [usize], pushed: &[Vec<u8>]) -> (u8, u8) {
    assert_eq!(b.len(), len);
    let (k, i) = (b[0], b[1]);
    let n = &mut next[k as usize];
    assert_eq!(Some(&i), pushed[k as usize].get(*n), "producer {k}: lost, duplicated or reordered");
    assert!(b[2..].iter().all(|&x| x == k * 16 + i), "torn record ({k}, {i})");
    *n += 1;
    (k, i)
}

/// Takes every record left, checking order (`next`: records of each producer already
/// taken) and contents; returns them as (k, i).
fn drain(
    c: &mut Consumer<Region>,
    len: usize,
    pushed: &[Vec<u8>],
    next: &mut [usize],
) -> Vec<(u8, u8)> {
    let mut got = Vec::new();
    while let Some(rec) = c.peek().unwrap() {
        got.push(check(rec.bytes(), len, next, pushed));
        rec.release();
    }
    got
}

/// Two producers, two records each, 24 bytes per record in a 64-byte ring (loom builds
/// accept rings from 64 bytes): the ring is full after two records, and the third pads the
/// end and wraps to offset 0 once the consumer has released one.
///
/// Every thread is finite, because loom explores `yield_now` spin-waits without bound
/// (tokio-rs/loom#53): a producer tries each record at most three times and skips it if
/// the ring stays full; the consumer makes six attempts while the producers run, then
/// drains the rest after joining them. Each record is checked against what its producer
/// says it pushed.
#[test]
fn two_producers_fill_and_wrap_a_tiny_ring() {
    const LEN: usize = 16;
    // Outside the model (plain std, not seen by loom): how many executions saw the edges.
    static EXECUTIONS: StdAtomic = StdAtomic::new(0);
    static FULL_AND_WRAPPED: StdAtomic = StdAtomic::new(0);
    loom::model(|| {
        let region = new_ring(64);
        // Nobody dies here: a timeout no execution reaches keeps wall time out of the model.
        let opts = ConsumerOptions::new().commit_timeout(Duration::from_secs(3600));
        let mut c = Consumer::attach_with(region.clone(), 0, opts).unwrap();
        let producers: Vec<_> = (0..2u8)
            .map(|k| {
                let mut p = Producer::attach(region.clone(), 0).unwrap();
                loom::thread::spawn(move || {
                    let mut pushed = Vec::new();
                    for i in 0..2 {
                        for _ in 0..3 {
                            match p.claim(LEN) {
                                Ok(claim) => {
                                    write_and_commit(claim, k, i);
                                    pushed.push(i);
                                    break;
                                }
                                Err(ClaimError::Full) => loom::thread::yield_now(),
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                    pushed
                })
            })
            .collect();
        // While the producers run: what is ready is checked against the records' own
        // contents (who pushed what is known only after the join).
        let mut early = Vec::new();
        for _ in 0..6 {
            match c.peek().unwrap() {
                Some(rec) => {
                    let b = rec.bytes();
                    assert_eq!(b.len(), LEN);
                    assert!(b[2..].iter().all(|&x| x == b[0] * 16 + b[1]), "torn record");
                    early.push((b[0], b[1]));
                    rec.release();
                }
                None => loom::thread::yield_now(),
            }
        }
        let pushed: Vec<Vec<u8>> = producers.into_iter().map(|t| t.join().unwrap()).collect();
        let mut next = vec![0; 2];
        for &(k, i) in &early {
            let n = &mut next[k as usize];
            assert_eq!(Some(&i), pushed[k as usize].get(*n), "producer {k}: out of order");
            *n += 1;
        }
        let rest = drain(&mut c, LEN, &pushed, &mut next);
        let total = (early.len() + rest.len()) as u64;
        assert_eq!(total, pushed.iter().map(|p| p.len() as u64).sum::<u64>());
        let s = c.stats();
        assert_eq!((s.published, s.consumed, s.abandoned, s.queued_bytes), (total, total, 0, 0));
        EXECUTIONS.fetch_add(1, StdOrdering::Relaxed);
        // Four 24-byte records cannot pass a 64-byte ring without wrapping.
        if total == 4 && s.full > 0 {
            FULL_AND_WRAPPED.fetch_add(1, StdOrdering::Relaxed);
        }
    });
    let (all, edges) =
        (EXECUTIONS.load(StdOrdering::Relaxed), FULL_AND_WRAPPED.load(StdOrdering::Relaxed));
    println!("{all} executions, {edges} with a full ring and a wrap");
    assert!(edges > 0, "no execution reached the full and wrap edges");
}

/// Moves both positions of a 64-byte ring to 40, so of three 16-byte records one pads the
/// end and wraps, and all three fit without the consumer.
fn near_the_end(region: &Region) {
    let mut p = Producer::attach(region.clone(), 0).unwrap();
    let mut c = Consumer::attach(region.clone(), 0).unwrap();
    p.push(&[0; 24]).unwrap();
    p.push(&[]).unwrap();
    let mut buf = Vec::new();
    c.pop_into(&mut buf).unwrap().unwrap();
    c.pop_into(&mut buf).unwrap().unwrap();
}

/// A producer that dies after its claim (header `CLAIMED`, payload half written) while
/// another pushes two records across the ring's end; the consumer, which started after
/// both, skips the dead claim and delivers the others.
#[test]
fn a_claim_whose_producer_died_is_skipped() {
    abandoned_model(|p| {
        let mut claim = p.claim(8).unwrap();
        claim.bytes()[..4].fill(0xee);
        std::mem::forget(claim);
    });
}

/// The same with the producer killed between its `claim` CAS and its header write.
#[test]
fn a_range_claimed_without_a_header_is_skipped() {
    abandoned_model(|p| {
        p.reserve_and_vanish(8).unwrap();
    });
}

fn abandoned_model(die: fn(&mut Producer<Region>)) {
    loom::model(move || {
        let region = new_ring(64);
        near_the_end(&region);
        let mut dead = Producer::attach(region.clone(), 0).unwrap();
        let mut live = Producer::attach(region.clone(), 0).unwrap();
        let a = loom::thread::spawn(move || die(&mut dead));
        let b = loom::thread::spawn(move || {
            for i in 0..2 {
                push(&mut live, 1, i, 8);
            }
        });
        a.join().unwrap();
        b.join().unwrap();
        let opts = ConsumerOptions::new().commit_timeout(Duration::ZERO);
        let mut c = Consumer::attach_with(region, 0, opts).unwrap();
        let got = drain(&mut c, 8, &[vec![], vec![0, 1]], &mut [0, 0]);
        assert_eq!(got, vec![(1, 0), (1, 1)]);
        assert!(c.peek().unwrap().is_none());
        let s = c.stats();
        assert_eq!((s.published, s.abandoned, s.queued_bytes), (4, 1, 0));
    });
}

/// Pops the next record, which must be ready, and checks it is record `i` of producer `k`.
fn pop_ready(c: &mut Consumer<Region>, k: u8, i: u8, len: usize) {
    let rec = c.peek().unwrap().expect("a committed record");
    assert_eq!(check(rec.bytes(), len, &mut [0, 0], &[vec![i], vec![i]]), (k, i));
    rec.release();
}

/// A producer attaching to a live ring while another producer claims and the consumer
/// releases: the `read` it starts from (`Ring::positions`, both loads) must carry the
/// consumer's release with it, or it writes over a record the consumer is still reading.
///
/// The ring (64 bytes) starts full with records (0, 0) and (0, 1), 32 bytes each. The
/// consumer pops both; producer 0 claims the space of the first once it is released;
/// producer 1 attaches meanwhile and claims if its view of `read` says there is room.
/// Its first `read` load may return the newest `read` (then it must acquire it) or an old
/// one while `claim` is already a lap ahead of it (then the second load must acquire).
#[test]
fn a_producer_attaching_to_a_live_ring_sees_the_released_space() {
    const LEN: usize = 24;
    static CLAIMED_BY_NEWCOMER: StdAtomic = StdAtomic::new(0);
    loom::model(|| {
        let region = new_ring(64);
        let mut c = Consumer::attach(region.clone(), 0).unwrap();
        let mut p0 = Producer::attach(region.clone(), 0).unwrap();
        push(&mut p0, 0, 0, LEN);
        push(&mut p0, 0, 1, LEN);
        let try_push = |p: &mut Producer<Region>, k: u8| match p.claim(LEN) {
            Ok(claim) => {
                write_and_commit(claim, k, 2);
                true
            }
            Err(ClaimError::Full) => false,
            Err(e) => panic!("{e}"),
        };
        let a = loom::thread::spawn(move || try_push(&mut p0, 0));
        let r1 = region.clone();
        let b = loom::thread::spawn(move || {
            let mut p1 = Producer::attach(r1, 0).unwrap();
            try_push(&mut p1, 1)
        });
        pop_ready(&mut c, 0, 0, LEN);
        pop_ready(&mut c, 0, 1, LEN);
        let (pushed_a, pushed_b) = (a.join().unwrap(), b.join().unwrap());
        let mut got = Vec::new();
        let mut buf = Vec::new();
        while c.pop_into(&mut buf).unwrap().is_some() {
            assert!(buf[2..].iter().all(|&x| x == buf[0] * 16 + 2), "torn record");
            got.push(buf[0]);
        }
        assert_eq!(got.len(), usize::from(pushed_a) + usize::from(pushed_b));
        if pushed_b {
            CLAIMED_BY_NEWCOMER.fetch_add(1, StdOrdering::Relaxed);
        }
    });
    assert!(CLAIMED_BY_NEWCOMER.load(StdOrdering::Relaxed) > 0, "the newcomer never claimed");
}

/// A claim dropped after its payload was written becomes a `SKIP` record, which the
/// consumer scrubs (plain stores over the payload bytes) and releases. The `SKIP` header's
/// Release is what orders the payload writes before that scrub; under loom the scrub
/// reports its stores to the payload cells, so without it loom sees the race.
#[test]
fn a_claim_dropped_after_writing_is_skipped() {
    loom::model(|| {
        let region = new_ring(64);
        let opts = ConsumerOptions::new().commit_timeout(Duration::from_secs(3600));
        let mut c = Consumer::attach_with(region.clone(), 0, opts).unwrap();
        let mut p = Producer::attach(region.clone(), 0).unwrap();
        let t = loom::thread::spawn(move || {
            let mut claim = p.claim(16).unwrap();
            claim.bytes().fill(0xee);
            drop(claim);
            push(&mut p, 0, 0, 8);
        });
        let mut got = Vec::new();
        let mut buf = Vec::new();
        for _ in 0..2 {
            match c.pop_into(&mut buf).unwrap() {
                Some(_) => got.push((buf[0], buf[1])),
                None => loom::thread::yield_now(),
            }
        }
        t.join().unwrap();
        while c.pop_into(&mut buf).unwrap().is_some() {
            got.push((buf[0], buf[1]));
        }
        assert_eq!(got, vec![(0, 0)]);
        let s = c.stats();
        assert_eq!((s.published, s.consumed, s.abandoned, s.queued_bytes), (1, 1, 0, 0));
    });
}
