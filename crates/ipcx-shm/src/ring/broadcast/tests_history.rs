//! Unit tests of late joiners with history (heap regions; also run under Miri).

use std::sync::atomic::{AtomicBool, Ordering as StdOrdering};
use std::sync::Arc;
use std::time::Duration;

use super::control::Ring;
use super::tests::{check_msg, stress_msg};
use super::*;
use crate::region::HeapRegion;
use crate::sync::Ordering;

type Heap = Arc<HeapRegion>;

fn ring(cap: u64, policy: Policy, history: u32) -> (Heap, Writer<Heap>) {
    let region = Arc::new(HeapRegion::new(required_size(cap, 4) as usize));
    init(&region, 0, Config { capacity: cap, slots: 4, policy, history }).unwrap();
    let w = Writer::attach(region.clone(), 0).unwrap();
    (region, w)
}

/// Everything `r` can read now, as the first payload byte of each record.
fn drain(r: &mut Reader<Heap>) -> Result<Vec<u8>, RecvError> {
    let (mut out, mut buf) = (Vec::new(), Vec::new());
    while r.try_recv(&mut buf)?.is_some() {
        out.push(buf[0]);
    }
    Ok(out)
}

#[test]
fn block_joiner_gets_the_last_k_and_holds_them() {
    // 32-byte records, 7 per ring (8 bytes stay free behind the last); index of 4.
    let (region, mut w) = ring(256, Policy::Block, 4);
    for i in 0..10u8 {
        w.try_send([i; 24]).unwrap();
    }
    let mut three = Reader::attach_with_history(region.clone(), 0, 3).unwrap();
    assert_eq!(drain(&mut three).unwrap(), [7, 8, 9]);
    drop(three);
    // More than the index holds: the last 4.
    let mut r = Reader::attach_with_history(region.clone(), 0, 50).unwrap();
    // The writer may not overwrite what the joiner has not read: 3 records of room.
    let mut sent = 0;
    while w.try_send([10 + sent; 24]).is_ok() {
        sent += 1;
    }
    assert_eq!(sent, 3);
    assert_eq!(drain(&mut r).unwrap(), [6, 7, 8, 9, 10, 11, 12]);
    w.try_send([13; 24]).unwrap();
    assert_eq!(drain(&mut r).unwrap(), [13]);
    // A plain attach still starts at the writer's position.
    let mut plain = Reader::attach(region.clone(), 0).unwrap();
    assert_eq!(drain(&mut plain).unwrap(), []);
}

#[test]
fn history_is_what_was_published_and_fits() {
    let (region, mut w) = ring(256, Policy::Block, 8);
    let mut none = Reader::attach_with_history(region.clone(), 0, 5).unwrap();
    assert_eq!(drain(&mut none).unwrap(), []);
    drop(none);
    w.try_send([0; 24]).unwrap();
    w.try_send([1; 24]).unwrap();
    let mut two = Reader::attach_with_history(region.clone(), 0, 5).unwrap();
    assert_eq!(drain(&mut two).unwrap(), [0, 1]);
    drop(two);
    // Records of 96 bytes: at most two are whole in a 256-byte ring.
    for i in 2..6u8 {
        w.try_send([i; 88]).unwrap();
    }
    let mut big = Reader::attach_with_history(region.clone(), 0, 8).unwrap();
    let got = drain(&mut big).unwrap();
    assert!(matches!(&got[..], [4, 5] | [5]), "{got:?}");
}

#[test]
fn no_index_no_history() {
    let (region, mut w) = ring(256, Policy::Block, 0);
    for i in 0..4u8 {
        w.try_send([i; 24]).unwrap();
    }
    let mut r = Reader::attach_with_history(region.clone(), 0, 3).unwrap();
    assert_eq!(drain(&mut r).unwrap(), []);
    assert_eq!(
        init(&region, 0, Config { capacity: 256, slots: 4, policy: Policy::Block, history: 65 }),
        Err(InitError::BadHistory { history: 65 })
    );
}

#[test]
fn drop_oldest_joiner_gets_history_then_lags_like_anyone() {
    let (region, mut w) = ring(256, Policy::DropOldest, 8);
    for i in 0..20u8 {
        w.try_send([i; 24]).unwrap();
    }
    let mut r = Reader::attach_with_history(region.clone(), 0, 5).unwrap();
    let mut late = Reader::attach_with_history(region.clone(), 0, 5).unwrap();
    assert_eq!(drain(&mut r).unwrap(), [15, 16, 17, 18, 19]);
    for i in 20..28u8 {
        w.try_send([i; 24]).unwrap();
    }
    // Its history (15..20) and record 20 were overwritten before it read them: the ring
    // keeps 7 of these records (8 bytes stay free behind the last).
    assert_eq!(drain(&mut late), Err(RecvError::Lagged(6)));
    assert_eq!(drain(&mut late).unwrap(), (21..28).collect::<Vec<u8>>());
    assert_eq!(w.stats().dropped, 6);
    // The whole ring back: only what is intact (records 21..28).
    let mut all = Reader::attach_with_history(region.clone(), 0, 64).unwrap();
    assert_eq!(drain(&mut all).unwrap(), (21..28).collect::<Vec<u8>>());
}

#[test]
fn bad_index_entries_and_unknown_limit_cost_only_history() {
    let (region, mut w) = ring(256, Policy::Block, 4);
    for i in 0..6u8 {
        w.try_send([i; 24]).unwrap();
    }
    let raw = Ring::attach(region.clone(), 0).unwrap();
    let entries = &raw.ctrl().history.entries;
    // Record 4's entry (index 0) claims an unaligned position: the walk stops after 5.
    entries[0].pos.store(3, Ordering::Relaxed);
    let mut r = Reader::attach_with_history(region.clone(), 0, 4).unwrap();
    assert_eq!(drain(&mut r).unwrap(), [5]);
    drop(r);
    // A position past the writer's is not history either.
    entries[1].pos.store(1 << 20, Ordering::Relaxed);
    let mut r = Reader::attach_with_history(region.clone(), 0, 4).unwrap();
    assert_eq!(drain(&mut r).unwrap(), []);
    drop(r);
    // A writer stuck in a scan (limit unknown): no history, and no waiting for it.
    entries[0].pos.store(128, Ordering::Relaxed);
    entries[1].pos.store(160, Ordering::Relaxed);
    raw.ctrl().writer.limit.store(u64::MAX, Ordering::Relaxed);
    let mut r = Reader::attach_with_history(region.clone(), 0, 4).unwrap();
    assert_eq!(drain(&mut r).unwrap(), []);
    drop(r);
    for i in 6..9u8 {
        w.try_send([i; 24]).unwrap(); // the last one wraps, so rescans: limit known again
    }
    let mut r = Reader::attach_with_history(region.clone(), 0, 2).unwrap();
    assert_eq!(drain(&mut r).unwrap(), [7, 8]);
}

/// Joiners attach with history while the writer floods; each must read a gap-free,
/// untorn run that ends at the last record.
fn joiners_race_the_writer(policy: Policy) {
    let n: u64 = if cfg!(miri) { 60 } else { 20_000 };
    let (region, mut w) = ring(4096, policy, 16);
    let done = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (region, done) = (region.clone(), done.clone());
            std::thread::spawn(move || {
                let mut joins = 0;
                loop {
                    let finished = done.load(StdOrdering::Acquire);
                    let mut r = Reader::attach_with_history(region.clone(), 0, 16).unwrap();
                    joins += 1;
                    let (mut last, mut buf) = (None::<u64>, Vec::new());
                    for _ in 0..(if finished { u64::MAX } else { 40 }) {
                        match r.try_recv(&mut buf) {
                            Ok(Some(_)) => {
                                let i = check_msg(&buf);
                                assert!(last.is_none_or(|l| i == l + 1), "gap {last:?} {i}");
                                last = Some(i);
                            }
                            Ok(None) if finished => break,
                            Ok(None) => std::thread::yield_now(),
                            Err(RecvError::Lagged(k)) => last = last.map(|l| l + k),
                            Err(e) => panic!("{e}"),
                        }
                    }
                    if finished {
                        assert_eq!(last, Some(n - 1), "after {joins} joins");
                        return joins;
                    }
                }
            })
        })
        .collect();
    for i in 0..n {
        w.send_timeout(stress_msg(i), Duration::from_secs(60)).unwrap();
    }
    done.store(true, StdOrdering::Release);
    for h in handles {
        assert!(h.join().unwrap() > 0);
    }
}

#[test]
fn block_joiners_race_the_writer() {
    joiners_race_the_writer(Policy::Block);
}

#[test]
fn drop_oldest_joiners_race_the_writer() {
    joiners_race_the_writer(Policy::DropOldest);
}
