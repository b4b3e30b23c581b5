//! Single-thread costs of the SPSC ring and the doorbell, on heap memory (no second core, no
//! cache-line transfers): what one message costs in instructions alone. The cross-process
//! figures are `ipcx bench --filter shm`.
//!
//! - `spsc/push_pop/<size>`: `push` (copy in) then `pop_into` (copy out) of one record.
//! - `spsc/zero_copy/<size>`: `claim` + `commit`, then `peek` + `release`, payload untouched.
//! - `doorbell/ring_no_waiter`: `Doorbell::ring` with nobody parked (a fence and a load).
//!
//! `cargo bench -p ipcx-shm --bench ring -- --quick` for a fast pass.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipcx_shm::ring::spsc::{self, Consumer, Producer};
use ipcx_shm::{Doorbell, HeapRegion};

/// Ring capacity: room for many records of the largest size measured.
const CAPACITY: u64 = 1 << 16;
/// Payload sizes measured.
const SIZES: [usize; 3] = [8, 64, 4096];

type Ends = (Producer<Arc<HeapRegion>>, Consumer<Arc<HeapRegion>>);

fn ring() -> Ends {
    let region = Arc::new(HeapRegion::new(spsc::required_size(CAPACITY) as usize));
    spsc::init(&region, 0, CAPACITY).expect("ring fits its region");
    let producer = Producer::attach(Arc::clone(&region), 0).expect("producer attaches");
    let consumer = Consumer::attach(region, 0).expect("consumer attaches");
    (producer, consumer)
}

fn spsc(c: &mut Criterion) {
    let mut group = c.benchmark_group("spsc");
    for size in SIZES {
        group.throughput(Throughput::Elements(1));
        let msg = vec![0xA5u8; size];
        let (mut tx, mut rx) = ring();
        let mut buf = Vec::with_capacity(size);
        group.bench_with_input(BenchmarkId::new("push_pop", size), &msg, |b, msg| {
            b.iter(|| {
                tx.push(black_box(msg)).expect("an empty ring has room");
                black_box(rx.pop_into(&mut buf).expect("ring intact"))
            })
        });
        let (mut tx, mut rx) = ring();
        group.bench_with_input(BenchmarkId::new("zero_copy", size), &size, |b, &size| {
            b.iter(|| {
                tx.claim(black_box(size)).expect("an empty ring has room").commit();
                let record = rx.peek().expect("ring intact").expect("a record is ready");
                let len = record.len();
                record.release();
                black_box(len)
            })
        });
    }
    group.finish();
}

fn doorbell(c: &mut Criterion) {
    let bell = Doorbell::init_in(HeapRegion::new(4096), 0).expect("doorbell fits its region");
    c.bench_function("doorbell/ring_no_waiter", |b| {
        b.iter(|| bell.ring().expect("no waiter to wake"))
    });
}

criterion_group!(benches, spsc, doorbell);
criterion_main!(benches);
