//! loom models of the doorbell's wake-up protocol (futex variant, park-only waiters).
//!
//! A lost wake-up shows as a waiter parked forever in the futex model: loom reports it as a
//! deadlock. Run with
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 cargo test -p ipcx-shm --release --test loom_doorbell`.
#![cfg(loom)]

use std::sync::Arc;

use ipcx_shm::doorbell::{Doorbell, EventfdDoorbell, WaitError, WaitPolicy};
use ipcx_shm::HeapRegion;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;

type Bell = Arc<Doorbell<Arc<HeapRegion>>>;

/// Lowest preemption bound used: these models are small, and 3 is the first bound at which
/// the two-round model catches a notifier that bumps `seq` before taking the waiters.
const MIN_PREEMPTIONS: usize = 3;

/// Runs `f` under loom with the preemption bound from `LOOM_MAX_PREEMPTIONS`, raised to
/// [`MIN_PREEMPTIONS`] (a superset of the bound-2 run), and prints how many interleavings
/// it explored (see them with `--nocapture`).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.unwrap_or(0).max(MIN_PREEMPTIONS));
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    builder.check(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
    println!("explored {runs} interleavings (preemption bound {:?})", builder.preemption_bound);
}

fn setup() -> (Bell, Arc<AtomicU64>) {
    let bell = Doorbell::init_in(Arc::new(HeapRegion::new(4096)), 0).expect("doorbell fits");
    (Arc::new(bell), Arc::new(AtomicU64::new(0)))
}

/// The producer's side: publish (Release), then ring.
fn publish(bell: &Bell, value: &AtomicU64, v: u64) {
    value.store(v, Ordering::Release);
    bell.ring().expect("ring");
}

fn wait_for(bell: &Bell, value: &AtomicU64, v: u64) -> Result<(), WaitError> {
    bell.wait_until(|| value.load(Ordering::Acquire) >= v, WaitPolicy::park_only(), None)
}

#[test]
fn a_published_value_always_wakes_the_waiter() {
    model(|| {
        let (bell, value) = setup();
        let producer = {
            let (bell, value) = (bell.clone(), value.clone());
            thread::spawn(move || publish(&bell, &value, 1))
        };
        wait_for(&bell, &value, 1).expect("woken");
        producer.join().unwrap();
        assert_eq!(bell.stats().waiters, 0, "the waiter left the count");
    });
}

#[test]
fn two_rounds_wake_a_waiter_that_re_announces() {
    model(|| {
        let (bell, value) = setup();
        let producer = {
            let (bell, value) = (bell.clone(), value.clone());
            thread::spawn(move || {
                publish(&bell, &value, 1);
                publish(&bell, &value, 2);
            })
        };
        wait_for(&bell, &value, 1).expect("woken for 1");
        wait_for(&bell, &value, 2).expect("woken for 2");
        producer.join().unwrap();
        assert_eq!(bell.stats().waiters, 0);
    });
}

#[test]
fn one_ring_wakes_both_waiters() {
    model(|| {
        let (bell, value) = setup();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let (bell, value) = (bell.clone(), value.clone());
                thread::spawn(move || wait_for(&bell, &value, 1).expect("woken"))
            })
            .collect();
        publish(&bell, &value, 1);
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(bell.stats().waiters, 0);
    });
}

#[test]
fn close_wakes_a_waiter_that_would_wait_forever() {
    model(|| {
        let (bell, _) = setup();
        let closer = {
            let bell = bell.clone();
            thread::spawn(move || bell.close().expect("close"))
        };
        let r = bell.wait_until(|| false, WaitPolicy::park_only(), None);
        assert!(matches!(r, Err(WaitError::Closed)), "{r:?}");
        closer.join().unwrap();
    });
}

#[test]
fn publish_then_close_ends_the_wait_either_way() {
    model(|| {
        let (bell, value) = setup();
        let closer = {
            let (bell, value) = (bell.clone(), value.clone());
            thread::spawn(move || {
                value.store(1, Ordering::Release);
                bell.close().expect("close");
            })
        };
        let r = wait_for(&bell, &value, 1);
        assert!(matches!(r, Ok(()) | Err(WaitError::Closed)), "{r:?}");
        closer.join().unwrap();
    });
}

#[test]
fn two_notifiers_racing_wake_the_waiter() {
    model(|| {
        let (bell, value) = setup();
        let producers: Vec<_> = (0..2)
            .map(|_| {
                let (bell, value) = (bell.clone(), value.clone());
                thread::spawn(move || {
                    value.fetch_add(1, Ordering::Release);
                    bell.ring().expect("ring");
                })
            })
            .collect();
        wait_for(&bell, &value, 2).expect("woken");
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(bell.stats().waiters, 0);
    });
}

#[test]
fn a_crashed_waiters_count_is_taken_by_the_next_ring() {
    model(|| {
        let (bell, value) = setup();
        // A waiter that announced and died: the eventfd flavour shares the state and lets
        // the announcement be leaked.
        let eventfd = ipcx_sys::eventfd::EventFd::new().expect("eventfd");
        let ghost = EventfdDoorbell::attach(Arc::clone(bell.region()), 0, eventfd);
        let ghost = ghost.expect("attach");
        std::mem::forget(ghost.announce());
        assert_eq!(bell.stats().waiters, 1);
        let producer = {
            let (bell, value) = (bell.clone(), value.clone());
            thread::spawn(move || publish(&bell, &value, 1))
        };
        wait_for(&bell, &value, 1).expect("woken");
        producer.join().unwrap();
        assert_eq!(bell.stats().waiters, 0, "the dead waiter's count was taken");
        bell.ring().expect("ring");
        assert_eq!(bell.stats().wakeups, 1, "no wake once the count is healed");
    });
}
