//! Unit tests of the broadcast ring on heap regions (also run under Miri).

use std::sync::Arc;
use std::time::Duration;

use super::control::Ring;
use super::*;
use crate::record::Corruption;
use crate::region::HeapRegion;
use crate::ring::{ClaimError, Corrupt};

type Heap = Arc<HeapRegion>;

fn ring(cap: u64, slots: u32, policy: Policy) -> (Heap, Writer<Heap>) {
    let region = Arc::new(HeapRegion::new(required_size(cap, slots) as usize));
    init(&region, 0, Config { capacity: cap, slots, policy, history: 0 }).unwrap();
    let w = Writer::attach(region.clone(), 0).unwrap();
    (region, w)
}

/// A view of the shared memory, for tampering.
fn raw(region: &Heap) -> Ring<Heap> {
    Ring::attach(region.clone(), 0).unwrap()
}

fn recv(r: &mut Reader<Heap>) -> Result<Option<Vec<u8>>, RecvError> {
    let mut buf = Vec::new();
    Ok(r.try_recv(&mut buf)?.map(|_| buf))
}

#[test]
fn every_reader_gets_every_record_across_wraps() {
    let (region, mut w) = ring(256, 4, Policy::Block);
    let mut a = Reader::attach(region.clone(), 0).unwrap();
    let mut b = Reader::attach(region.clone(), 0).unwrap();
    assert_ne!(a.slot(), b.slot());
    for i in 0..500u32 {
        let msg: Vec<u8> = (0..i % 90).map(|j| (i + j) as u8).collect();
        w.try_send(&msg[..]).unwrap();
        assert_eq!(recv(&mut a).unwrap().unwrap(), msg);
        assert_eq!(recv(&mut b).unwrap().unwrap(), msg);
    }
    assert_eq!(recv(&mut a).unwrap(), None);
    let s = w.stats();
    assert_eq!((s.published, s.readers.len()), (500, 2));
    assert!(s.readers.iter().all(|r| r.consumed == 500 && r.behind == 0));
}

#[test]
fn block_waits_for_the_slowest_reader_only() {
    let (region, mut w) = ring(256, 2, Policy::Block);
    let mut fast = Reader::attach(region.clone(), 0).unwrap();
    let mut slow = Reader::attach(region.clone(), 0).unwrap();
    let mut n = 0;
    while w.try_send([n as u8; 24]).is_ok() {
        assert!(recv(&mut fast).unwrap().is_some());
        n += 1;
    }
    // 32 bytes per record, and 8 kept free behind the last one for the zero word.
    assert_eq!(n, 256 / 32 - 1);
    match w.try_send([9u8; 24]) {
        Err(SendError::Full(msg)) => assert_eq!(msg, [9u8; 24]),
        other => panic!("{other:?}"),
    }
    let t = std::time::Instant::now();
    assert!(matches!(
        w.send_timeout([9u8; 24], Duration::from_millis(20)),
        Err(SendError::Full(_))
    ));
    assert!(t.elapsed() >= Duration::from_millis(20));
    assert_eq!(recv(&mut slow).unwrap().unwrap(), [0u8; 24]);
    w.try_send([8u8; 24]).unwrap();
    assert!(w.stats().full >= 2);
    // A leaving reader stops holding the writer back.
    drop(slow);
    for _ in 0..3 * n {
        w.try_send([7u8; 24]).unwrap();
        recv(&mut fast).unwrap().unwrap();
    }
}

#[test]
fn no_reader_no_back_pressure_and_no_history() {
    let (region, mut w) = ring(256, 1, Policy::Block);
    for _ in 0..100 {
        w.try_send(b"into the void").unwrap();
    }
    let mut r = Reader::attach(region.clone(), 0).unwrap();
    assert_eq!(recv(&mut r).unwrap(), None);
    w.try_send(b"first").unwrap();
    assert_eq!(recv(&mut r).unwrap().unwrap(), b"first");
}

#[test]
fn fail_never_waits() {
    let (region, mut w) = ring(256, 1, Policy::Fail);
    let _r = Reader::attach(region.clone(), 0).unwrap();
    while w.try_send([1u8; 56]).is_ok() {}
    let t = std::time::Instant::now();
    let err = w.send_timeout(vec![2u8; 56], Duration::from_secs(5)).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(err.to_string().contains("full"), "{err}");
    assert_eq!(err.into_inner(), vec![2u8; 56]);
}

#[test]
fn drop_oldest_reports_exact_lag_and_resumes_at_oldest() {
    let (region, mut w) = ring(256, 2, Policy::DropOldest);
    let mut r = Reader::attach(region.clone(), 0).unwrap();
    // 32-byte records: 7 fit (8 bytes stay free behind the last). Write 20 without
    // reading: the first 13 are overwritten.
    for i in 0..20u8 {
        w.try_send([i; 24]).unwrap();
    }
    assert_eq!(recv(&mut r), Err(RecvError::Lagged(13)));
    for i in 13..20u8 {
        assert_eq!(recv(&mut r).unwrap().unwrap(), [i; 24]);
    }
    assert_eq!(recv(&mut r).unwrap(), None);
    let s = w.stats();
    assert_eq!((s.published, s.overwritten, s.dropped), (20, 13, 13));
    assert_eq!((s.readers[0].consumed, s.readers[0].lagged), (7, 13));
}

#[test]
fn drop_oldest_lag_across_pads_and_partial_laps() {
    let (region, mut w) = ring(256, 1, Policy::DropOldest);
    let mut r = Reader::attach(region.clone(), 0).unwrap();
    let mut expect = 0u64;
    for round in 0..50u64 {
        for k in 0..round % 13 {
            let i = expect + k;
            w.try_send(vec![i as u8; (i * 37 % 100) as usize]).unwrap();
        }
        let mut next = expect;
        loop {
            match recv(&mut r) {
                Ok(Some(msg)) => {
                    assert_eq!(msg.len() as u64, next * 37 % 100);
                    assert!(msg.iter().all(|&b| b == next as u8));
                    next += 1;
                }
                Ok(None) => break,
                Err(RecvError::Lagged(n)) => next += n,
                Err(e) => panic!("{e}"),
            }
        }
        expect += round % 13;
        assert_eq!(next, expect);
    }
}

#[test]
fn peeked_in_place_detects_overwrite() {
    let (region, mut w) = ring(256, 1, Policy::DropOldest);
    let mut r = Reader::attach(region.clone(), 0).unwrap();
    w.try_send([1u8; 24]).unwrap();
    {
        let p = r.peek().unwrap().unwrap();
        assert_eq!(p.bytes(), [1u8; 24]);
        assert!(p.still_valid());
    }
    for i in 2..12u8 {
        w.try_send([i; 24]).unwrap();
    }
    let p = r.peek();
    // The record at our position is gone: peek itself reports the lag.
    assert!(matches!(p, Err(RecvError::Lagged(4))), "{p:?}");
    let p = r.peek().unwrap().unwrap();
    assert_eq!(p.bytes(), [5u8; 24]);
    assert!(p.still_valid());
    p.release();
    // Peek, then let the writer lap us while we hold it.
    let pos = r.position();
    let p = r.peek().unwrap().unwrap();
    let raw = raw(&region);
    raw.ctrl().writer.tail.store(pos + 8, crate::sync::Ordering::Relaxed);
    assert!(!p.still_valid());
}

#[test]
fn too_large_empty_and_uncommitted() {
    let (region, mut w) = ring(256, 1, Policy::Block);
    let mut r = Reader::attach(region.clone(), 0).unwrap();
    assert!(matches!(w.claim(121), Err(ClaimError::TooLarge { len: 121, max: 120 })));
    match w.try_send(vec![0u8; 500]) {
        Err(e @ SendError::TooLarge { len: 500, max: 120, .. }) => {
            assert!(e.to_string().contains("500"));
            assert_eq!(e.into_inner().len(), 500);
        }
        other => panic!("{other:?}"),
    }
    w.try_send([3u8; 120]).unwrap();
    w.try_send([]).unwrap();
    let _abandoned = w.claim(10).unwrap();
    assert_eq!(recv(&mut r).unwrap().unwrap(), [3u8; 120]);
    assert_eq!(recv(&mut r).unwrap().unwrap(), b"");
    assert_eq!(recv(&mut r).unwrap(), None);
    let mut c = w.claim(5).unwrap();
    c.bytes().copy_from_slice(b"hello");
    c.commit();
    let p = r.peek().unwrap().unwrap();
    assert_eq!((p.bytes(), p.len(), p.is_empty()), (&b"hello"[..], 5, false));
}

#[test]
fn slots_run_out_and_come_back() {
    let (region, _w) = ring(256, 2, Policy::Block);
    let a = Reader::attach(region.clone(), 0).unwrap();
    let b = Reader::attach(region.clone(), 0).unwrap();
    let e = Reader::attach(region.clone(), 0).unwrap_err();
    assert_eq!(e, AttachError::NoFreeSlot { slots: 2 });
    assert!(e.to_string().contains("2 reader slots"));
    let freed = a.slot();
    drop(a);
    let c = Reader::attach(region.clone(), 0).unwrap();
    assert_eq!(c.slot(), freed);
    assert_eq!(stats(&region, 0).unwrap().readers.len(), 2);
    drop((b, c));
    assert!(stats(&region, 0).unwrap().readers.is_empty());
}

#[test]
fn corrupt_headers_are_errors() {
    for policy in [Policy::Block, Policy::DropOldest] {
        let (region, mut w) = ring(256, 1, policy);
        let mut r = Reader::attach(region.clone(), 0).unwrap();
        w.try_send(b"hello").unwrap();
        let raw = raw(&region);
        let good = raw.word(0).load(crate::sync::Ordering::Relaxed);
        raw.word(0).store(good | 0xffff, crate::sync::Ordering::Relaxed);
        assert!(matches!(recv(&mut r), Err(RecvError::Corrupt(_))), "{policy:?}");
        raw.word(0).store(good, crate::sync::Ordering::Relaxed);
        assert_eq!(recv(&mut r).unwrap().unwrap(), b"hello");
        // A writer position that moved backwards / is misaligned.
        raw.ctrl().writer.write.store(4, crate::sync::Ordering::Relaxed);
        let e = recv(&mut r).unwrap_err();
        assert!(matches!(
            e,
            RecvError::Corrupt(Corrupt { what: Corruption::BadPosition { .. }, .. })
        ));
    }
}

#[test]
fn corrupt_cursors_and_control_are_errors() {
    let (region, mut w) = ring(256, 2, Policy::Block);
    let r = Reader::attach(region.clone(), 0).unwrap();
    let raw = raw(&region);
    // A cursor ahead of the writer.
    raw.slot(r.slot()).cursor.store(4096, crate::sync::Ordering::Relaxed);
    while let Ok(()) = w.try_send([0u8; 100]) {}
    let e = w.try_send([0u8; 100]).unwrap_err();
    assert!(matches!(e, SendError::Corrupt { .. }), "{e:?}");
    // Impossible control fields.
    raw.ctrl().info.policy.store(9, crate::sync::Ordering::Relaxed);
    let e = Writer::attach(region.clone(), 0).unwrap_err();
    assert!(matches!(e, AttachError::BadControl { what: "policy code", found: 9 }), "{e}");
    raw.ctrl().info.policy.store(1, crate::sync::Ordering::Relaxed);
    raw.ctrl().info.slots.store(1000, crate::sync::Ordering::Relaxed);
    assert!(matches!(Reader::attach(region.clone(), 0), Err(AttachError::BadControl { .. })));
}

#[test]
fn init_and_attach_validate_layout() {
    let region = Arc::new(HeapRegion::new(16384));
    let cfg = Config { capacity: 256, slots: 4, policy: Policy::Block, history: 0 };
    assert!(matches!(init(&region, 64, cfg), Err(InitError::Layout(LayoutError::Misaligned(64)))));
    assert_eq!(init(&region, 0, Config { slots: 0, ..cfg }), Err(InitError::BadSlots { slots: 0 }));
    assert_eq!(
        init(&region, 0, Config { slots: 65, ..cfg }),
        Err(InitError::BadSlots { slots: 65 })
    );
    assert!(matches!(
        init(&region, 0, Config { capacity: 16384, ..cfg }),
        Err(InitError::Layout(LayoutError::TooSmall { .. }))
    ));
    assert!(matches!(
        Writer::attach(region.clone(), 0),
        Err(AttachError::Layout(LayoutError::WrongFlavor { .. }))
    ));
    // An SPSC ring is not a broadcast ring.
    crate::ring::spsc::init(&region, 0, 256).unwrap();
    assert!(matches!(Reader::attach(region.clone(), 0), Err(AttachError::Layout(_))));
    init(&region, 16384 - 128, Config { slots: MAX_SLOTS, capacity: 256, ..cfg }).unwrap_err();
    init(&region, 0, Config { slots: MAX_SLOTS, capacity: 256, ..cfg }).unwrap();
    let readers: Vec<_> =
        (0..MAX_SLOTS).map(|_| Reader::attach(region.clone(), 0).unwrap()).collect();
    assert_eq!(readers.last().unwrap().slot(), MAX_SLOTS - 1);
}

#[test]
#[cfg_attr(miri, ignore = "judging owners reads /proc")]
fn dead_readers_are_reclaimed_when_full() {
    let (region, mut w) = ring(256, 2, Policy::Block);
    let mut live = Reader::attach(region.clone(), 0).unwrap();
    let mut dead = Reader::attach(region.clone(), 0).unwrap();
    while w.try_send([5u8; 24]).is_ok() {
        recv(&mut live).unwrap();
    }
    assert_eq!(w.stats().reclaimed, 0);
    // Make `dead` look like a process that has exited and whose pid was reused.
    let raw = raw(&region);
    let st = &raw.slot(dead.slot()).start_time;
    st.store(st.load(crate::sync::Ordering::Relaxed) + 1, crate::sync::Ordering::Relaxed);
    w.set_liveness_interval(Some(Duration::ZERO));
    w.try_send([6u8; 24]).unwrap();
    let s = w.stats();
    assert_eq!((s.reclaimed, s.readers.len()), (1, 1));
    assert_eq!(recv(&mut dead), Err(RecvError::Evicted));
    assert_eq!(recv(&mut dead), Err(RecvError::Evicted));
    drop(dead); // must not free the slot again
    let _again = Reader::attach(region.clone(), 0).unwrap();
    assert_eq!(w.reclaim_dead(), 0);
}

/// Payload of record `i`: index, filler, crc32 of both.
pub(super) fn stress_msg(i: u64) -> Vec<u8> {
    let fill = (i * 13 % 150) as usize;
    let mut m = i.to_le_bytes().to_vec();
    m.extend((0..fill).map(|j| (i as usize * 7 + j) as u8));
    let crc = crc32fast::hash(&m);
    m.extend_from_slice(&crc.to_le_bytes());
    m
}

pub(super) fn check_msg(m: &[u8]) -> u64 {
    let (body, crc) = m.split_at(m.len() - 4);
    assert_eq!(crc32fast::hash(body).to_le_bytes(), crc, "torn record");
    let i = u64::from_le_bytes(body[..8].try_into().unwrap());
    assert_eq!(m, stress_msg(i));
    i
}

/// One writer, three reader threads, `n` records; returns each reader's (received, lagged).
fn stress(policy: Policy, n: u64) -> Vec<(u64, u64)> {
    let (region, mut w) = ring(4096, 4, policy);
    let readers: Vec<_> = (0..3).map(|_| Reader::attach(region.clone(), 0).unwrap()).collect();
    let handles: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            std::thread::spawn(move || {
                let (mut next, mut got, mut lagged, mut buf) = (0, 0, 0, Vec::new());
                while next < n {
                    match r.recv_timeout(&mut buf, Duration::from_millis(1)) {
                        Ok(Some(_)) => {
                            assert_eq!(check_msg(&buf), next, "out of order");
                            (next, got) = (next + 1, got + 1);
                        }
                        Ok(None) => {}
                        Err(RecvError::Lagged(k)) => (next, lagged) = (next + k, lagged + k),
                        Err(e) => panic!("{e}"),
                    }
                }
                assert_eq!(next, n, "lag counts overshoot");
                assert_eq!(r.try_recv(&mut buf), Ok(None));
                (got, lagged)
            })
        })
        .collect();
    let t = std::time::Instant::now();
    for i in 0..n {
        w.send_timeout(stress_msg(i), Duration::from_secs(60)).unwrap();
        if policy == Policy::DropOldest && i % 16 == 0 {
            // Let readers keep up part of the time, so they race the writer at the edge.
            std::thread::yield_now();
        }
    }
    let out: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let s = w.stats();
    eprintln!(
        "{policy:?}: {n} records in {:?}, (received, lagged) {out:?}, full {}",
        t.elapsed(),
        s.full
    );
    out
}

const STRESS_N: u64 = if cfg!(miri) { 150 } else { 100_000 };

#[test]
fn stress_block_delivers_everything_in_order() {
    for (got, lagged) in stress(Policy::Block, STRESS_N) {
        assert_eq!((got, lagged), (STRESS_N, 0));
    }
}

#[test]
fn stress_drop_oldest_gives_in_order_subsequences() {
    for (got, lagged) in stress(Policy::DropOldest, STRESS_N) {
        assert_eq!(got + lagged, STRESS_N);
    }
}

/// A Block/Fail reader takes a record by its header, before the writer stores `write`:
/// a writer that died in between leaves `write` behind that reader; its successor resumes
/// behind the record, and the reader goes on (no "impossible position").
#[test]
fn a_record_published_by_its_header_alone_is_read_and_kept_by_a_successor() {
    for (first, policy) in [(10usize, Policy::Block), (110, Policy::Block), (110, Policy::Fail)] {
        let (region, mut w) = ring(256, 1, policy);
        let mut r = Reader::attach(region.clone(), 0).unwrap();
        for len in [120usize, 8] {
            w.try_send(vec![1; len]).unwrap();
            recv(&mut r).unwrap().unwrap();
        }
        // Caught up: the reader now waits on the header word at its cursor.
        assert_eq!(recv(&mut r), Ok(None));
        let view = raw(&region);
        let line = &view.ctrl().writer;
        let (write, published) = (line.write.load(Ordering::Relaxed), w.stats().published);
        assert_eq!(write, 144);
        // 10 bytes fit before the end; 110 do not, and go behind a PAD at offset 0.
        w.try_send(vec![2; first]).unwrap();
        // The writer "died" after its headers and before `published` and `write`.
        line.write.store(write, Ordering::Relaxed);
        line.published.store(published, Ordering::Relaxed);
        drop(w);
        assert_eq!(recv(&mut r).unwrap().unwrap(), vec![2; first], "{first}");
        // Its next look at `write` finds it behind its cursor: nothing new, no error.
        assert_eq!(recv(&mut r), Ok(None));
        let mut w = Writer::attach(region.clone(), 0).unwrap();
        assert_eq!(w.stats().published, published + 1);
        w.try_send([3u8; 7]).unwrap();
        assert_eq!(recv(&mut r).unwrap().unwrap(), [3u8; 7]);
    }
}

#[test]
fn the_word_after_the_last_record_is_kept_zero() {
    for policy in [Policy::Block, Policy::DropOldest] {
        let (region, mut w) = ring(256, 1, policy);
        let raw = raw(&region);
        for len in [5usize, 100, 0, 120, 40, 64, 3, 77] {
            w.try_send(vec![0xffu8; len]).unwrap();
            let write = raw.ctrl().writer.write.load(Ordering::Relaxed);
            assert_eq!(raw.word(write & 255).load(Ordering::Relaxed), 0, "{policy:?} {len}");
        }
    }
}
