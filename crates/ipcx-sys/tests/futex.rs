//! Shared futexes across real processes, on a POSIX shm mapping.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipcx_sys::futex::{futex_wait, futex_wake, WaitOutcome};
use ipcx_sys::mapping::{Access, Mapping};
use ipcx_sys::posix_shm::PosixShm;
use ipcx_sys::CreateMode;
use ipcx_testkit::{leftovers, peer, read_command, signal, unique_name};

ipcx_testkit::peer_entry!(peer_main);

const ROUNDS: u32 = 200;
const LONG: Duration = Duration::from_secs(10);

fn peer_main(role: &str, args: &[String]) {
    let shm = PosixShm::builder(&args[0]).create_mode(CreateMode::Open).open().unwrap();
    let map = shm.map(Access::ReadWrite).unwrap();
    let word = map.atomic_u32_at(0).unwrap();
    match role {
        "pong" => {
            signal("ready", "");
            for i in 0..ROUNDS {
                wait_for(word, 2 * i + 1);
                word.store(2 * i + 2, Ordering::Release);
                futex_wake(word, 1).unwrap();
            }
            signal("done", "");
        }
        "wait-once" => {
            signal("waiting", "");
            let outcome = futex_wait(word, 0, Some(LONG)).unwrap();
            signal("outcome", &format!("{outcome:?}"));
        }
        "hang" => {
            signal("ready", "");
            read_command();
        }
        other => panic!("unknown role {other}"),
    }
}

/// Sleeps until `word` holds `want`, failing after LONG.
fn wait_for(word: &AtomicU32, want: u32) {
    let deadline = Instant::now() + LONG;
    loop {
        let now = word.load(Ordering::Acquire);
        if now == want {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "word stuck at {now}, wanted {want}");
        futex_wait(word, now, Some(left)).unwrap();
    }
}

fn shared_word(name: &str) -> (PosixShm, Mapping) {
    let shm = PosixShm::builder(name).size(4096).open().unwrap();
    let map = shm.map(Access::ReadWrite).unwrap();
    (shm, map)
}

#[test]
fn ping_pong_between_processes() {
    let name = unique_name("futex");
    let (shm, map) = shared_word(&name);
    let word = map.atomic_u32_at(0).unwrap();
    let mut p = peer("pong").arg(&name).spawn();
    p.expect("ready");
    for i in 0..ROUNDS {
        word.store(2 * i + 1, Ordering::Release);
        futex_wake(word, 1).unwrap();
        wait_for(word, 2 * i + 2);
    }
    p.expect("done");
    p.wait_success();
    drop(shm);
    assert!(leftovers(&name).is_empty());
}

#[test]
fn wake_from_another_process_is_counted_and_reported_as_woken() {
    let name = unique_name("futex");
    let (_shm, map) = shared_word(&name);
    let word = map.atomic_u32_at(0).unwrap();
    let mut p = peer("wait-once").arg(&name).spawn();
    p.expect("waiting");
    // The peer may not be asleep yet: wake until the kernel reports it woke someone. A
    // private futex would never reach the other process, and this would fail.
    let deadline = Instant::now() + LONG;
    while futex_wake(word, 1).unwrap() == 0 {
        assert!(Instant::now() < deadline, "the peer never slept on the shared word");
        std::thread::yield_now();
    }
    assert_eq!(p.expect("outcome"), "Woken");
    p.wait_success();
}

#[test]
fn waiting_on_a_killed_peer_times_out() {
    let name = unique_name("futex");
    let (_shm, map) = shared_word(&name);
    let word = map.atomic_u32_at(0).unwrap();
    let mut p = peer("hang").arg(&name).spawn();
    p.expect("ready");
    p.kill();
    let start = Instant::now();
    let outcome = futex_wait(word, 0, Some(Duration::from_millis(50))).unwrap();
    assert_eq!(outcome, WaitOutcome::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(50));
    // A value that already moved on is reported without sleeping.
    word.store(5, Ordering::Release);
    assert_eq!(futex_wait(word, 0, Some(LONG)).unwrap(), WaitOutcome::ValueChanged);
    assert_eq!(futex_wake(word, u32::MAX).unwrap(), 0);
}

#[test]
fn futex_needs_a_writable_aligned_word() {
    let name = unique_name("futex");
    let (shm, _map) = shared_word(&name);
    let ro = shm.map(Access::ReadOnly).unwrap();
    assert!(ro.atomic_u32_at(0).is_err(), "no &AtomicU32 into read-only memory");
    let rw = shm.map(Access::ReadWrite).unwrap();
    assert!(rw.atomic_u32_at(2).is_err());
    assert!(rw.atomic_u32_at(4096).is_err());
}
