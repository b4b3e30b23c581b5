use std::sync::Arc;
use std::time::{Duration, Instant};

use super::producer::Announce;
use super::*;
use crate::record::{encode, Corruption, KIND_DATA};
use crate::region::HeapRegion;
use crate::ring::{spsc, ClaimError};

type P = Producer<Arc<HeapRegion>>;
type C = Consumer<Arc<HeapRegion>>;

fn ring_with(cap: u64, timeout: Duration) -> (Arc<HeapRegion>, P, P, C) {
    let region = Arc::new(HeapRegion::new(required_size(cap) as usize));
    init(&region, 0, cap).unwrap();
    let opts = ConsumerOptions::new().commit_timeout(timeout);
    (
        region.clone(),
        Producer::attach(region.clone(), 0).unwrap(),
        Producer::attach(region.clone(), 0).unwrap(),
        Consumer::attach_with(region, 0, opts).unwrap(),
    )
}

fn ring(cap: u64) -> (Arc<HeapRegion>, P, P, C) {
    ring_with(cap, DEFAULT_COMMIT_TIMEOUT)
}

fn pop(c: &mut C) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    c.pop_into(&mut buf).unwrap().map(|_| buf)
}

/// Peeks until a record comes (the commit timeout may have to run out first).
fn pop_waiting(c: &mut C) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = pop(c) {
            return v;
        }
        assert!(Instant::now() < deadline, "no record within 10 s");
        std::thread::yield_now();
    }
}

fn msg(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 7 + j) as u8).collect()
}

#[test]
fn records_keep_order_and_boundaries_across_wraps() {
    let (_r, mut a, mut b, mut c) = ring(512);
    let n: u64 = if cfg!(miri) { 100 } else { 1000 };
    for i in 0..n as usize {
        let (pa, pb) = (msg(i, i % 97), msg(i + 1, (i * 13) % 61));
        a.push(&pa).unwrap();
        b.push(&pb).unwrap();
        assert_eq!(pop(&mut c).unwrap(), pa);
        assert_eq!(pop(&mut c).unwrap(), pb);
    }
    assert_eq!(pop(&mut c), None);
    let s = c.stats();
    assert_eq!((s.published, s.consumed, s.abandoned, s.queued_bytes), (2 * n, 2 * n, 0, 0));
}

#[test]
fn each_producer_keeps_its_order_when_interleaved() {
    let (_r, mut a, mut b, mut c) = ring(1024);
    for i in 0..5u8 {
        a.push(&[1, i]).unwrap();
    }
    for i in 0..5u8 {
        b.push(&[2, i]).unwrap();
    }
    let got: Vec<Vec<u8>> = (0..10).map(|_| pop(&mut c).unwrap()).collect();
    for who in [1, 2] {
        let seq: Vec<u8> = got.iter().filter(|m| m[0] == who).map(|m| m[1]).collect();
        assert_eq!(seq, vec![0, 1, 2, 3, 4]);
    }
}

#[test]
fn full_then_drains() {
    let (_r, mut a, mut b, mut c) = ring(256);
    let mut n = 0;
    while a.push(&[7; 24]).is_ok() {
        n += 1;
    }
    assert_eq!(n, 256 / 32);
    assert_eq!(b.push(&[7; 24]), Err(PushError::Claim(ClaimError::Full)));
    assert_eq!(c.stats().full, 2);
    c.peek().unwrap().unwrap().release();
    b.push(&[8; 24]).unwrap();
    assert_eq!(a.push(&[7; 24]), Err(PushError::Claim(ClaimError::Full)));
}

#[test]
fn a_record_that_does_not_fit_pads_the_end_and_goes_to_offset_zero() {
    let (region, mut a, mut b, mut c) = ring(256);
    a.push(&[1; 120]).unwrap(); // 0..128
    b.push(&[2; 56]).unwrap(); // 128..192
    assert_eq!(pop(&mut c).unwrap(), vec![1; 120]);
    assert_eq!(pop(&mut c).unwrap(), vec![2; 56]);
    let mut claim = a.claim(72).unwrap(); // 80 bytes > 64 left: pad 192..256
    assert_eq!(claim.position(), 256);
    claim.bytes().fill(3);
    claim.commit().unwrap();
    let ctrl = Consumer::attach(region, 0).unwrap();
    assert_eq!(ctrl.ring.ctrl().producers.claim.load(Ordering::Relaxed), 336);
    assert_eq!(pop(&mut c).unwrap(), vec![3; 72]);
    assert_eq!(c.stats().queued_bytes, 0);
}

#[test]
fn too_large_and_empty_payloads() {
    let (_r, mut a, _b, mut c) = ring(256);
    assert!(matches!(a.claim(121), Err(ClaimError::TooLarge { len: 121, max: 120 })));
    a.push(&[1; 120]).unwrap();
    a.push(&[]).unwrap();
    assert_eq!(pop(&mut c).unwrap().len(), 120);
    let rec = c.peek().unwrap().unwrap();
    assert!(rec.is_empty() && rec.bytes().is_empty());
    rec.release();
    assert_eq!(pop(&mut c), None);
}

#[test]
fn a_dropped_claim_is_skipped_at_once() {
    let (_r, mut a, mut b, mut c) = ring(256);
    drop(a.claim(10).unwrap());
    b.push(b"x").unwrap();
    assert_eq!(pop(&mut c).unwrap(), b"x");
    assert_eq!(c.stats().abandoned, 0);
}

#[test]
fn an_uncommitted_claim_holds_up_the_consumer_until_the_timeout() {
    let (_r, mut a, mut b, mut c) = ring_with(256, Duration::from_millis(30));
    let mut stuck = a.claim(10).unwrap();
    stuck.bytes()[..5].fill(9);
    b.push(b"after").unwrap();
    assert_eq!(pop(&mut c), None, "must wait for the claimed record");
    assert_eq!(pop_waiting(&mut c), b"after");
    assert_eq!(c.stats().abandoned, 1);
    assert!(matches!(stuck.commit(), Err(CommitError::Abandoned { pos: 0 })));
    assert_eq!(c.stats().published, 1);
    // The skipped space is clean and reusable.
    for i in 0..20 {
        a.push(&msg(i, 50)).unwrap();
        assert_eq!(pop(&mut c).unwrap(), msg(i, 50));
    }
}

#[test]
fn a_commit_just_before_the_timeout_is_delivered() {
    let (_r, mut a, _b, mut c) = ring_with(256, Duration::from_secs(60));
    let mut claim = a.claim(3).unwrap();
    claim.bytes().copy_from_slice(b"abc");
    assert_eq!(pop(&mut c), None);
    claim.commit().unwrap();
    assert_eq!(pop(&mut c).unwrap(), b"abc");
}

#[test]
fn a_producer_gone_before_writing_its_header_is_skipped() {
    let (_r, mut a, mut b, mut c) = ring_with(256, Duration::ZERO);
    assert_eq!(a.reserve_and_vanish(40).unwrap(), 0);
    b.push(b"later").unwrap();
    assert_eq!(pop(&mut c).unwrap(), b"later");
    assert_eq!(c.stats().abandoned, 1);
    // Gone as the last claim: the range ends at `claim`.
    a.reserve_and_vanish(8).unwrap();
    assert_eq!(pop(&mut c), None);
    assert_eq!(c.stats().abandoned, 2);
    b.push(b"again").unwrap();
    assert_eq!(pop(&mut c).unwrap(), b"again");
}

#[test]
fn a_producer_gone_with_a_pad_pending_is_skipped_across_the_end() {
    let (_r, mut a, mut b, mut c) = ring_with(256, Duration::ZERO);
    a.push(&[1; 176]).unwrap_err(); // too large: nothing claimed
    a.push(&[1; 120]).unwrap();
    a.push(&[1; 56]).unwrap();
    pop(&mut c).unwrap();
    pop(&mut c).unwrap();
    // 64 bytes left before the end; 80 needed: pad + record at 256, never written.
    assert_eq!(a.reserve_and_vanish(72).unwrap(), 192);
    b.push(b"next").unwrap();
    assert_eq!(pop(&mut c).unwrap(), b"next");
    assert_eq!(c.stats().abandoned, 1);
    assert_eq!(c.read, 336 + 16);
}

#[test]
fn a_late_owner_of_a_skipped_range_claims_again() {
    let (_r, mut a, mut b, mut c) = ring_with(256, Duration::ZERO);
    let r = a.reserve(16).unwrap();
    assert_eq!(pop(&mut c), None); // skips the headerless range
    assert!(matches!(a.announce(r, 8), Err(Announce::Void)));
    b.push(b"fine").unwrap();
    a.push(b"me too").unwrap();
    assert_eq!(pop(&mut c).unwrap(), b"fine");
    assert_eq!(pop(&mut c).unwrap(), b"me too");
}

#[test]
fn corrupt_headers_are_errors() {
    let (region, mut a, _b, mut c) = ring(256);
    a.push(b"hello").unwrap();
    let other = Consumer::attach(region, 0).unwrap();
    let h = other.ring.header(0);
    let good = h.load(Ordering::Relaxed);
    let bad_words = [
        good | 0xffff,                     // length past the end
        encode(KIND_DATA, 5, 256, 8),      // wrong lap
        encode(9, 5, 0, 8),                // unknown kind
        record::empty_word(256, 8),        // scrubbed for a lap that has not come
        encode(record::KIND_PAD, 5, 0, 8), // pad not reaching the end
    ];
    for w in bad_words {
        h.store(w, Ordering::Relaxed);
        assert!(c.peek().is_err(), "{w:#x} accepted");
    }
    h.store(good, Ordering::Relaxed);
    assert_eq!(c.peek().unwrap().unwrap().bytes(), b"hello");
}

#[test]
fn corrupt_positions_are_errors() {
    let (region, mut a, _b, mut c) = ring(256);
    let ctrl = Consumer::attach(region.clone(), 0).unwrap();
    let line = &ctrl.ring.ctrl().producers;
    line.claim.store(4096, Ordering::Relaxed);
    assert!(matches!(c.peek(), Err(Corrupt { what: Corruption::BadPosition { .. }, .. })));
    assert!(matches!(a.claim(8), Err(ClaimError::Corrupt(_))));
    assert!(matches!(Producer::attach(region.clone(), 0), Err(LayoutError::Corrupt(_))));
    line.claim.store(3, Ordering::Relaxed);
    assert!(c.peek().is_err());
    assert!(a.claim(8).is_err());
    line.claim.store(0, Ordering::Relaxed);
    a.push(b"ok").unwrap();
    assert_eq!(pop(&mut c).unwrap(), b"ok");
    // `read` moving backwards.
    ctrl.ring.ctrl().consumer.read.store(0, Ordering::Relaxed);
    a.read_cache = 16;
    line.claim.store(16 + 256, Ordering::Relaxed);
    assert!(matches!(a.claim(8), Err(ClaimError::Corrupt(_))));
}

#[test]
fn a_header_overwritten_under_its_owner_is_an_error() {
    let (_r, mut a, _b, c) = ring(256);
    let claim = a.claim(4).unwrap();
    c.ring.header(0).store(12345, Ordering::Relaxed);
    assert!(matches!(claim.commit(), Err(CommitError::Corrupt(_))));
}

#[test]
fn garbage_after_a_headerless_range_is_an_error() {
    let (_r, mut a, _b, mut c) = ring_with(256, Duration::ZERO);
    a.reserve_and_vanish(40).unwrap();
    a.reserve_and_vanish(8).unwrap();
    c.ring.header(24).store(0xdead_beef, Ordering::Relaxed);
    assert!(matches!(c.peek(), Err(Corrupt { pos: 24, .. })));
}

#[test]
fn attach_validates_layout() {
    let region = Arc::new(HeapRegion::new(4096));
    assert!(matches!(init(&region, 64, 256), Err(LayoutError::Misaligned(64))));
    assert!(matches!(init(&region, 0, 100), Err(LayoutError::BadCapacity(100))));
    assert!(matches!(init(&region, 0, 8192), Err(LayoutError::TooSmall { .. })));
    assert!(matches!(Producer::attach(region.clone(), 0), Err(LayoutError::WrongFlavor { .. })));
    spsc::init(&region, 0, 256).unwrap();
    assert!(matches!(
        Consumer::attach(region.clone(), 0),
        Err(LayoutError::WrongFlavor { expected: "mpsc", .. })
    ));
    init(&region, 128, 256).unwrap();
    let p = Producer::attach(region.clone(), 128).unwrap();
    assert!(format!("{p:?} {:?}", Consumer::attach(region, 128).unwrap()).contains("capacity"));
}

/// Records carry (producer, seq, len, crc32) and a body derived from them.
fn stress_record(k: u32, seq: u32, len: usize, buf: &mut [u8]) {
    for (j, b) in buf[16..].iter_mut().enumerate() {
        *b = (seq as usize * 31 + j * 7 + k as usize) as u8;
    }
    buf[0..4].copy_from_slice(&k.to_le_bytes());
    buf[4..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    let crc = crc32(&buf[..12], &buf[16..]);
    buf[12..16].copy_from_slice(&crc.to_le_bytes());
}

fn crc32(head: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    h.update(body);
    h.finalize()
}

fn field(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Checks a record of the thread stress test against the next expected of its producer.
fn check_stress_record(b: &[u8], next: &mut [u32]) {
    let (k, seq, len) = (field(b, 0), field(b, 4), field(b, 8));
    assert!((k as usize) < next.len(), "bad producer {k}");
    assert_eq!(seq, next[k as usize], "producer {k}: lost, duplicated or reordered");
    assert_eq!(len as usize, b.len(), "length");
    assert_eq!(field(b, 12), crc32(&b[..12], &b[16..]), "crc of ({k}, {seq})");
    next[k as usize] += 1;
}

#[test]
fn threads_deliver_every_record_once_in_producer_order() {
    const PRODUCERS: u32 = 4;
    let n: u32 = if cfg!(miri) { 100 } else { 100_000 };
    let region = Arc::new(HeapRegion::new(required_size(4096) as usize));
    init(&region, 0, 4096).unwrap();
    let mut c = Consumer::attach(region.clone(), 0).unwrap();
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|k| {
            let mut p = Producer::attach(region.clone(), 0).unwrap();
            std::thread::spawn(move || {
                for seq in 0..n {
                    let len = 16 + (seq as usize * 37 + k as usize * 11) % 241;
                    loop {
                        match p.claim(len) {
                            Ok(mut claim) => {
                                stress_record(k, seq, len, claim.bytes());
                                claim.commit().unwrap();
                                break;
                            }
                            Err(ClaimError::Full) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    let mut next = [0u32; PRODUCERS as usize];
    let mut got = 0;
    while got < PRODUCERS * n {
        if let Some(rec) = c.peek().unwrap() {
            check_stress_record(rec.bytes(), &mut next);
            rec.release();
            got += 1;
        } else if threads.iter().all(|t| t.is_finished()) {
            // Finished is not synchronised with the producers' writes; joining is.
            break;
        } else {
            std::thread::yield_now();
        }
    }
    for t in threads {
        t.join().unwrap(); // a producer's panic surfaces here
    }
    while let Some(rec) = c.peek().unwrap() {
        check_stress_record(rec.bytes(), &mut next);
        rec.release();
        got += 1;
    }
    assert_eq!(got, PRODUCERS * n, "records missing");
    let s = c.stats();
    assert_eq!((s.published, s.consumed, s.abandoned), (u64::from(got), u64::from(got), 0));
}
