//! loom models of the broadcast ring: one writer, two readers, a 256-byte ring.
//!
//! Run with `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2
//! cargo test -p ipcx-shm --release --test loom_broadcast`.
//!
//! loom sees the control block (positions, cursors, slot states, versions); the data area
//! is plain memory it does not model, so payload races are Miri's and the stress tests'
//! job. What loom checks here: back-pressure never lets the writer overwrite a record a
//! reader has not released, a reader joining mid-stream starts where the writer cannot
//! overwrite it, a reader joining with history never reads a record the writer is
//! overwriting (Block: loom's cells see the payload accesses), and under DropOldest lag detection and counting never lose, duplicate or
//! reorder a record.
//!
//! Readers that find nothing wait on a test-level [`Bell`] (what the doorbell layer will
//! do): two readers spinning with `yield_now` let loom alternate them forever while the
//! writer waits, which no preemption bound cuts off. The bell adds happens-before edges only
//! on paths where a reader actually slept; every path where it finds the record without
//! sleeping exercises the ring's own orderings.
#![cfg(loom)]

use std::sync::Arc;

use ipcx_shm::ring::broadcast::{self, Config, Policy, Reader, RecvError, Writer};
use ipcx_shm::HeapRegion;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Condvar, Mutex};
use loom::thread;

/// Payload lengths for Block: 96 bytes each in the ring, so the third needs a pad and a
/// wrap and waits for both readers to release the first.
const BLOCK: [usize; 3] = [88, 88, 88];
/// Payload lengths for DropOldest: 120 + 120 + 8 + 8 bytes fill the ring; the last record
/// (16 bytes) overwrites the first record's header and first payload word. Payloads that
/// are overwritten stay short: loom branches on every racing word it could read.
const DROP: [usize; 5] = [112, 112, 0, 0, 8];

/// Runs `f` under loom with room for the writer's and readers' polling loops.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 100_000;
    builder.check(f);
}

fn ring(policy: Policy) -> Arc<HeapRegion> {
    ring_with_history(policy, 0)
}

fn ring_with_history(policy: Policy, history: u32) -> Arc<HeapRegion> {
    let cfg = Config { capacity: 256, slots: 2, policy, history };
    let region = Arc::new(HeapRegion::new(broadcast::required_size(256, 2) as usize));
    broadcast::init(&region, 0, cfg).unwrap();
    region
}

fn writer(region: &Arc<HeapRegion>) -> Writer<Arc<HeapRegion>> {
    let mut w = Writer::attach(region.clone(), 0).unwrap();
    w.set_liveness_interval(None); // no /proc inside the model
    w
}

/// A generation counter to sleep on until the writer has published again.
#[derive(Default)]
struct Bell {
    rung: Mutex<u64>,
    cv: Condvar,
}

impl Bell {
    fn generation(&self) -> u64 {
        *self.rung.lock().unwrap()
    }

    fn ring(&self) {
        *self.rung.lock().unwrap() += 1;
        self.cv.notify_all();
    }

    /// Sleeps until the generation differs from `seen`.
    fn wait_past(&self, seen: u64) {
        let mut g = self.rung.lock().unwrap();
        while *g == seen {
            g = self.cv.wait(g).unwrap();
        }
    }
}

/// Sends a record of each length (record `i` is `len` bytes of `i`), retrying (the only
/// spinning thread) while full.
fn send_all(w: &mut Writer<Arc<HeapRegion>>, lens: &[usize], bell: &Bell) {
    for (i, &len) in lens.iter().enumerate() {
        while w.try_send(vec![i as u8; len]).is_err() {
            thread::yield_now();
        }
        bell.ring();
    }
}

/// Reads until the last record is accounted for; returns (received, lagged).
fn read_all(r: &mut Reader<Arc<HeapRegion>>, lens: &[usize], bell: &Bell) -> (u64, u64) {
    let n = lens.len() as u64;
    let (mut next, mut got, mut lagged, mut buf) = (0u64, 0, 0, Vec::new());
    while next < n {
        let seen = bell.generation();
        match r.try_recv(&mut buf) {
            Ok(Some(len)) => {
                assert_eq!(len, lens[next as usize], "record {next}");
                assert!(buf.iter().all(|&b| u64::from(b) == next), "torn or out of order");
                next += 1;
                got += 1;
            }
            Ok(None) => bell.wait_past(seen),
            Err(RecvError::Lagged(k)) => {
                next += k;
                lagged += k;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(next, n, "lag counted records that were never written");
    // Nothing after the last record, and the writer's position agrees with ours.
    assert_eq!(r.try_recv(&mut buf), Ok(None));
    (got, lagged)
}

#[test]
fn block_delivers_everything_to_both_readers() {
    model(|| {
        let region = ring(Policy::Block);
        let mut a = Reader::attach(region.clone(), 0).unwrap();
        let mut b = Reader::attach(region.clone(), 0).unwrap();
        let mut w = writer(&region);
        let bell = Arc::new(Bell::default());
        let (ba, bb) = (bell.clone(), bell.clone());
        let ta = thread::spawn(move || read_all(&mut a, &BLOCK, &ba));
        let tb = thread::spawn(move || read_all(&mut b, &BLOCK, &bb));
        send_all(&mut w, &BLOCK, &bell);
        assert_eq!(ta.join().unwrap(), (3, 0));
        assert_eq!(tb.join().unwrap(), (3, 0));
    });
}

#[test]
fn drop_oldest_never_tears_or_duplicates() {
    model(|| {
        let region = ring(Policy::DropOldest);
        let mut a = Reader::attach(region.clone(), 0).unwrap();
        let mut b = Reader::attach(region.clone(), 0).unwrap();
        let mut w = writer(&region);
        let bell = Arc::new(Bell::default());
        let (ba, bb) = (bell.clone(), bell.clone());
        let ta = thread::spawn(move || read_all(&mut a, &DROP, &ba));
        let tb = thread::spawn(move || read_all(&mut b, &DROP, &bb));
        send_all(&mut w, &DROP, &bell);
        let (ga, la) = ta.join().unwrap();
        let (gb, lb) = tb.join().unwrap();
        assert_eq!((ga + la, gb + lb), (5, 5));
        let s = w.stats();
        assert_eq!(s.dropped, la + lb);
    });
}

#[test]
fn joining_reader_is_never_overrun() {
    model(|| {
        let region = ring(Policy::Block);
        let done = Arc::new(AtomicBool::new(false));
        let (r2, done2) = (region.clone(), done.clone());
        let t = thread::spawn(move || {
            let mut r = Reader::attach(r2, 0).unwrap();
            let (mut last, mut buf) = (None::<u8>, Vec::new());
            loop {
                // Seen before the read: then an empty ring means everything was read.
                let finished = done2.load(Ordering::Acquire);
                match r.try_recv(&mut buf) {
                    Ok(Some(_)) => {
                        let i = buf[0];
                        assert!(buf.iter().all(|&b| b == i), "torn record");
                        // A suffix of the stream: contiguous from wherever it joined.
                        assert!(last.is_none_or(|l| i == l + 1), "gap after {last:?}: {i}");
                        last = Some(i);
                    }
                    Ok(None) if finished => break,
                    Ok(None) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(last.is_none_or(|l| l == 4), "stream ended at {last:?}");
        });
        let mut w = writer(&region);
        send_all(&mut w, &[88; 5], &Bell::default());
        done.store(true, Ordering::Release);
        t.join().unwrap();
    });
}

/// DropOldest: a reader still at position 0 when the writer laps it twice. The ring holds
/// records 0..=3 (16 + 16 + 120 + 104 bytes); the writer then sends records 4 and 5 (16
/// bytes each), each overwriting the oldest record: per record a snapshot update for the
/// new `tail`, the `tail` store, then the commit and its update. So while the reader reads
/// one snapshot copy, the writer can finish the update to the other copy and refill this
/// one with a different `tail`. The reader runs after the writer on loom's first schedule,
/// with nothing but its own loads to learn what happened. Checks `SYNC: tail after its
/// copy` (the `tail` load in `overwritten`) and the seqlock fences around the snapshot
/// copy: a torn snapshot miscounts the lag, an old one is `Corrupt`.
#[test]
fn drop_oldest_reader_lapped_during_two_snapshot_updates() {
    const LENS: [usize; 6] = [8, 8, 112, 96, 8, 8];
    model(|| {
        let region = ring(Policy::DropOldest);
        let r = Reader::attach(region.clone(), 0).unwrap();
        let mut w = writer(&region);
        for (i, &len) in LENS.iter().enumerate().take(4) {
            w.try_send(vec![i as u8; len]).unwrap();
        }
        let t = thread::spawn(move || {
            let mut r = r;
            let (mut next, mut idle, mut buf) = (0, 0, Vec::new());
            while next < LENS.len() && idle < 2 {
                match r.try_recv(&mut buf) {
                    Ok(Some(len)) => {
                        assert_eq!(len, LENS[next], "record {next}");
                        assert!(
                            buf.iter().all(|&b| usize::from(b) == next),
                            "torn or out of order"
                        );
                        next += 1;
                    }
                    Ok(None) => {
                        idle += 1;
                        thread::yield_now();
                    }
                    Err(RecvError::Lagged(k)) => next += k as usize,
                    Err(e) => panic!("{e}"),
                }
            }
            (r, next)
        });
        for (i, &len) in LENS.iter().enumerate().skip(4) {
            w.try_send(vec![i as u8; len]).unwrap();
        }
        let (mut r, mut next) = t.join().unwrap();
        let mut buf = Vec::new();
        while next < LENS.len() {
            match r.try_recv(&mut buf) {
                Ok(Some(len)) => {
                    assert_eq!(len, LENS[next], "record {next}");
                    assert!(buf.iter().all(|&b| usize::from(b) == next), "torn or out of order");
                    next += 1;
                }
                Ok(None) => panic!("records {next}.. missing"),
                Err(RecvError::Lagged(k)) => next += k as usize,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(next, LENS.len(), "lag counted records that were never written");
        assert_eq!(r.try_recv(&mut buf), Ok(None));
    });
}

/// Reads until `last` is accounted for; checks the records form one gap-free, untorn run
/// (lag counted in); returns the first record seen, if any.
fn read_run(r: &mut Reader<Arc<HeapRegion>>, lens: &[usize], done: &AtomicBool) -> Option<u8> {
    let last = lens.len() as u64 - 1;
    let (mut first, mut next, mut buf) = (None::<u8>, None::<u64>, Vec::new());
    loop {
        // Seen before the read: then an empty ring means everything was read.
        let finished = done.load(Ordering::Acquire);
        match r.try_recv(&mut buf) {
            Ok(Some(len)) => {
                let i = buf.first().copied().unwrap_or(0);
                let i = if len == 0 { next.unwrap_or(0) as u8 } else { i };
                assert_eq!(len, lens[usize::from(i)], "record {i}");
                assert!(buf.iter().all(|&b| b == i), "torn record");
                assert!(next.is_none_or(|n| u64::from(i) == n), "gap: {next:?} then {i}");
                first.get_or_insert(i);
                next = Some(u64::from(i) + 1);
            }
            Ok(None) if finished => break,
            Ok(None) => thread::yield_now(),
            Err(RecvError::Lagged(k)) => next = next.map(|n| n + k),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(next.is_none_or(|n| n == last + 1), "run ended at {next:?}");
    first
}

/// Block: records 0 and 1 (96 bytes each) are in the ring, nobody reads; a reader joins
/// two records back while the writer sends records 2 and 3, which wrap and overwrite 0
/// and 1 unless the joiner holds them. The joiner registers, loads the writer's `limit`
/// and picks a start the writer cannot reach; loom's cells flag any payload read racing
/// the writer's overwrite (`SYNC: write limit`, `SYNC: index entry`).
#[test]
fn block_join_with_history_races_the_overwrite() {
    const LENS: [usize; 4] = [88, 88, 88, 88];
    model(|| {
        let region = ring_with_history(Policy::Block, 2);
        let mut w = writer(&region);
        for i in 0..2u8 {
            w.try_send(vec![i; LENS[usize::from(i)]]).unwrap();
        }
        let done = Arc::new(AtomicBool::new(false));
        let (r2, done2) = (region.clone(), done.clone());
        let t = thread::spawn(move || {
            let mut r = Reader::attach_with_history(r2, 0, 2).unwrap();
            read_run(&mut r, &LENS, &done2)
        });
        for i in 2..4u8 {
            while w.try_send(vec![i; LENS[usize::from(i)]]).is_err() {
                thread::yield_now();
            }
        }
        done.store(true, Ordering::Release);
        // It joined at the latest after record 3: it has that one at least.
        assert!(t.join().unwrap().is_some());
    });
}

/// DropOldest: records 0..=3 fill the ring; a reader joins four records back while the
/// writer sends record 4, which overwrites record 0. The joiner's history is either read
/// intact or reported as `Lagged`, never torn, duplicated or miscounted.
#[test]
fn drop_oldest_join_with_history_races_the_overwrite() {
    const LENS: [usize; 5] = [8, 8, 112, 96, 8];
    model(|| {
        let region = ring_with_history(Policy::DropOldest, 4);
        let mut w = writer(&region);
        for (i, &len) in LENS.iter().enumerate().take(4) {
            w.try_send(vec![i as u8; len]).unwrap();
        }
        let done = Arc::new(AtomicBool::new(false));
        let (r2, done2) = (region.clone(), done.clone());
        let t = thread::spawn(move || {
            let mut r = Reader::attach_with_history(r2, 0, 4).unwrap();
            read_run(&mut r, &LENS, &done2)
        });
        for (i, &len) in LENS.iter().enumerate().skip(4) {
            w.try_send(vec![i as u8; len]).unwrap();
        }
        done.store(true, Ordering::Release);
        assert!(t.join().unwrap().is_some());
    });
}
