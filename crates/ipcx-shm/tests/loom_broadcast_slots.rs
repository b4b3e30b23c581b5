//! loom models of the broadcast ring's reader slots: a slot freed and joined again while the
//! writer scans, a reader leaving with a record it has not released, and a dead reader's
//! slot reclaimed and joined by a live one while the writer judges the slots too.
//!
//! Run with `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2
//! cargo test -p ipcx-shm --release --test loom_broadcast_slots`.
//!
//! Under loom, Block payloads are reported to loom cells (see `ring::broadcast::control`), so
//! a payload write racing a reader's read of the same bytes is a causality violation. Which
//! process a model thread is, and which processes are alive, comes from
//! `broadcast::loom_processes` instead of `/proc`.
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize as StdAtomic, Ordering as StdOrdering};
use std::sync::Arc;
use std::time::Duration;

use ipcx_shm::ring::broadcast::{
    self, loom_processes, AttachError, Config, Policy, Reader, SendError, Writer,
};
use ipcx_shm::HeapRegion;
use loom::thread;

type Region = Arc<HeapRegion>;

/// A 256-byte ring with one reader slot.
fn ring(policy: Policy) -> Region {
    let cfg = Config { capacity: 256, slots: 1, policy, history: 0 };
    let region = Arc::new(HeapRegion::new(broadcast::required_size(256, 1) as usize));
    broadcast::init(&region, 0, cfg).unwrap();
    region
}

fn writer(region: &Region) -> Writer<Region> {
    let mut w = Writer::attach(region.clone(), 0).unwrap();
    w.set_liveness_interval(None);
    w
}

/// Tries to send record `i` (88 bytes of `i`: 96 in the ring) `tries` times; whether it went.
fn send_bounded(w: &mut Writer<Region>, i: u8, tries: usize) -> bool {
    for _ in 0..tries {
        match w.try_send(vec![i; 88]) {
            Ok(()) => return true,
            Err(SendError::Full(_)) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
    false
}

/// Slot 0 was used by a reader that joined at 0 and left; the writer has since gone more
/// than a capacity past that reader's last cursor. A new reader joins slot 0 while the
/// writer, needing room, scans. A scan that sees the slot `ACTIVE` must also see the cursor
/// the new reader published before activating it, not the old owner's (which is more than a
/// capacity behind: `Corrupt`). Checks `SYNC: slot active` (the join CAS's Release, the
/// scan's Acquire load of the state).
#[test]
fn a_slot_joined_again_is_scanned_with_its_new_cursor() {
    loom::model(|| {
        let region = ring(Policy::Block);
        drop(Reader::attach(region.clone(), 0).unwrap());
        let mut w = writer(&region);
        for i in 0..4 {
            assert!(send_bounded(&mut w, i, 1));
        }
        let r = region.clone();
        let t = thread::spawn(move || {
            let mut b = Reader::attach(r, 0).unwrap();
            let mut buf = Vec::new();
            for _ in 0..2 {
                match b.try_recv(&mut buf) {
                    Ok(Some(_)) => assert!(buf.iter().all(|&x| x == 4), "torn record"),
                    Ok(None) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        });
        // Record 4 needs room the writer's cached minimum does not vouch for: it scans.
        send_bounded(&mut w, 4, 3);
        t.join().unwrap();
    });
}

/// A reader reads a record in place and leaves without releasing it; the writer, needing
/// that record's space, sends as soon as its scan no longer sees the reader. Clearing the
/// `active` bit (`fetch_and`, Release) is what orders the reader's reads before the writer's
/// overwrite: no cursor or state is read once the bit is gone.
#[test]
fn a_reader_leaving_with_a_record_unreleased_is_not_overwritten_under_it() {
    loom::model(|| {
        let region = ring(Policy::Block);
        let mut a = Reader::attach(region.clone(), 0).unwrap();
        let mut w = writer(&region);
        assert!(send_bounded(&mut w, 0, 1));
        assert!(send_bounded(&mut w, 1, 1));
        let t = thread::spawn(move || {
            let rec = a.peek().unwrap().expect("record 0");
            assert!(rec.bytes().iter().all(|&x| x == 0), "torn record");
            // Not released: `a` leaves with record 0 still its next record.
            drop(a);
        });
        // Record 2 pads the end and wraps over record 0.
        send_bounded(&mut w, 2, 3);
        t.join().unwrap();
    });
}

/// Reader A (pid 10) died holding the only slot, at position 0, with the ring full. Reader
/// B (pid 20, alive) attaches: it finds no free slot, reclaims A's and joins. Meanwhile the
/// writer judges the slots (`judge`: `reclaim_dead`, or a send that finds the ring full and
/// judges the slots in its way). Whoever judges a slot must judge its current owner: B's
/// state word read together with A's start time would make B look like a reused pid, hence
/// dead, and evict a live reader. Checks `SYNC: slot active` on the reclaim paths (state
/// loads, Acquire), which make the owner fields written before it visible.
///
/// B runs on the model's main thread, so loom's first schedule already has B joined before
/// the writer (spawned before B attached) looks.
fn reclaim_model(judge: fn(&mut Writer<Region>)) {
    let joined = Arc::new(StdAtomic::new(0)); // outside the model: executions where B joined
    let counter = joined.clone();
    loom::model(move || {
        loom_processes::set_living(&[(20, 200), (30, 300)]);
        let region = ring(Policy::Block);
        loom_processes::become_process(10, 100);
        let a = Reader::attach(region.clone(), 0).unwrap();
        loom_processes::become_process(30, 300);
        let mut w = writer(&region);
        assert!(send_bounded(&mut w, 0, 1));
        assert!(send_bounded(&mut w, 1, 1));
        std::mem::forget(a); // killed: its slot stays ACTIVE at position 0
        w.set_liveness_interval(Some(Duration::ZERO));
        let t = thread::spawn(move || {
            judge(&mut w);
            w
        });
        loom_processes::become_process(20, 200);
        // While the writer is freeing the slot, B finds none (`NoFreeSlot`): try again.
        let mut b = None;
        for _ in 0..3 {
            match Reader::attach(region.clone(), 0) {
                Ok(r) => {
                    b = Some(r);
                    break;
                }
                Err(AttachError::NoFreeSlot { .. }) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        let w = t.join().unwrap();
        if let Some(mut b) = b {
            let mut buf = Vec::new();
            match b.try_recv(&mut buf) {
                Ok(Some(_)) => assert!(buf.iter().all(|&x| x == 2), "torn record"),
                Ok(None) => {}
                Err(e) => panic!("live reader: {e}"),
            }
            counter.fetch_add(1, StdOrdering::Relaxed);
        }
        assert_eq!(w.stats().reclaimed, 1, "only the dead reader is reclaimed");
    });
    assert!(joined.load(StdOrdering::Relaxed) > 0, "reader B never joined");
}

/// [`reclaim_model`] with `Writer::reclaim_dead` (every slot judged).
#[test]
fn a_reclaimed_slot_is_judged_by_its_new_owner() {
    reclaim_model(|w| {
        w.reclaim_dead();
    });
}

/// [`reclaim_model`] with a send that finds the ring full (`reclaim_blockers`).
#[test]
fn a_reclaimed_slot_is_judged_by_its_new_owner_when_in_the_way() {
    reclaim_model(|w| {
        send_bounded(w, 2, 1);
    });
}
