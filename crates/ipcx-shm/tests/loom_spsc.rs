//! loom models of the SPSC ring: one producer thread, one consumer thread, a 256-byte ring.
//!
//! Run with
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 cargo test -p ipcx-shm --release --test loom_spsc`.
//!
//! loom sees the control-block positions and, under `cfg(loom)`, the data area's header
//! words (the ring keeps a loom atomic per word in its control block, `ring/shadow.rs`): the
//! header is what publishes a record. It cannot see the payload, plain bytes. So the test
//! shadows every 8-byte word of the data area with a `loom::cell::UnsafeCell`: the producer
//! writes the shadow of each word it fills (headers, payload, PAD) between its claim and its
//! commit, the consumer reads the shadow of each word it reads between its peek and its
//! release. loom then reports any access to a word that is not ordered by the ring's
//! Release/Acquire pairs (header store and load, `read` store and load), exactly as it
//! would for the real bytes. Payload contents are checked for real as well.
#![cfg(loom)]

use std::sync::Arc;

use ipcx_shm::ring::spsc::{self, Consumer, Producer};
use ipcx_shm::ring::ClaimError;
use ipcx_shm::HeapRegion;
use ipcx_shm::Region;
use loom::cell::UnsafeCell;

const CAP: u64 = 256;
const WORDS: usize = (CAP / 8) as usize;

/// One loom cell per 8-byte word of the data area, holding the index + 1 of the record
/// (or PAD) that last wrote it.
struct Shadow([UnsafeCell<u32>; WORDS]);

impl Shadow {
    fn new() -> Shadow {
        Shadow(std::array::from_fn(|_| UnsafeCell::new(0)))
    }

    /// The producer fills words `[from, to)` (byte offsets) for record `tag`.
    fn write(&self, from: u64, to: u64, tag: u32) {
        for w in from / 8..to.div_ceil(8) {
            self.0[w as usize].with_mut(|p| {
                // SAFETY: loom checks this access is ordered against every other one.
                unsafe { *p = tag }
            });
        }
    }

    /// The consumer reads words `[from, to)`, which record `tag` must have written.
    fn read(&self, from: u64, to: u64, tag: u32) {
        for w in from / 8..to.div_ceil(8) {
            // SAFETY: loom checks this access is ordered against every other one.
            let seen = self.0[w as usize].with(|p| unsafe { *p });
            assert_eq!(seen, tag, "word {w} holds record {seen}, expected {tag}");
        }
    }
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

/// Byte offset of `ptr` (a payload) inside the data area that starts at `data`.
fn offset(ptr: *const u8, data: usize) -> u64 {
    (ptr as usize - data) as u64
}

/// Producer pushes `lens` (spinning while the ring is full), consumer pops them all;
/// order, lengths, contents and (through the shadow) the ordering of every data access
/// are checked.
fn run(lens: &'static [usize]) {
    loom::model(move || {
        let region = Arc::new(HeapRegion::new(spsc::required_size(CAP) as usize));
        spsc::init(&region, 0, CAP).unwrap();
        let data = region.base().as_ptr() as usize + (spsc::required_size(CAP) - CAP) as usize;
        let shadow = loom::sync::Arc::new(Shadow::new());
        let mut producer = Producer::attach(region.clone(), 0).unwrap();
        let mut consumer = Consumer::attach(region, 0).unwrap();

        let sh = shadow.clone();
        let t = loom::thread::spawn(move || {
            let mut end = 0u64; // our write position
            for (i, &len) in lens.iter().enumerate() {
                let tag = i as u32 + 1;
                let mut claim = loop {
                    match producer.claim(len) {
                        Ok(c) => break c,
                        Err(ClaimError::Full) => loom::thread::yield_now(),
                        Err(e) => panic!("claim: {e}"),
                    }
                };
                let hdr = offset(claim.bytes().as_ptr(), data) - 8;
                let prev = end % CAP;
                if hdr != prev {
                    // The record did not fit before the ring's end: a PAD fills it.
                    assert_eq!(hdr, 0, "record {i} neither follows the last one nor wraps");
                    sh.write(prev, CAP, tag);
                    end += CAP - prev;
                }
                let total = (8 + len as u64).next_multiple_of(8);
                sh.write(hdr, hdr + total, tag);
                claim.bytes().copy_from_slice(&payload(i, len));
                claim.commit();
                end += total;
            }
        });

        let mut read = 0u64; // our read position
        let mut i = 0;
        while i < lens.len() {
            let Some(rec) = consumer.peek().unwrap() else {
                loom::thread::yield_now();
                continue;
            };
            let tag = i as u32 + 1;
            let hdr = offset(rec.bytes().as_ptr(), data) - 8;
            let prev = read % CAP;
            if hdr != prev {
                assert_eq!(hdr, 0, "record {i} neither follows the last one nor wraps");
                shadow.read(prev, CAP, tag);
                read += CAP - prev;
            }
            let total = (8 + rec.len() as u64).next_multiple_of(8);
            shadow.read(hdr, hdr + total, tag);
            assert_eq!(rec.len(), lens[i], "record {i} length");
            assert_eq!(rec.bytes(), &payload(i, lens[i])[..], "record {i} contents");
            rec.release();
            read += total;
            i += 1;
        }
        assert!(consumer.peek().unwrap().is_none());
        t.join().unwrap();
        let s = consumer.stats();
        assert_eq!((s.published, s.consumed, s.queued_bytes), (lens.len() as u64, i as u64, 0));
    });
}

/// 120 + 112 bytes fill 0..248; the third record (120 bytes, 128 in the ring) needs a PAD
/// over 248..256, its 128 bytes at 0 and the 8 bytes kept free behind it: the space of both
/// earlier records, so its claim is refused until the consumer has released them, and its
/// PAD is published after it.
#[test]
fn wrap_with_pad_at_the_full_edge() {
    run(&[120, 112, 120]);
}

/// 56 + 120 + 56 bytes end exactly at the ring's end (no PAD): the third waits for the
/// first's space (it needs 8 bytes beyond the end, for the zero word at offset 0); the
/// fourth record starts the next lap at offset 0.
#[test]
fn exact_fit_then_next_lap() {
    run(&[56, 120, 56, 8]);
}
