//! Robust process-shared mutexes across real processes, in a POSIX shm mapping.

use std::time::Duration;

use ipcx_sys::mapping::{Access, AccessError, Mapping};
use ipcx_sys::posix_shm::PosixShm;
use ipcx_sys::robust_mutex::{InitError, LockError, Locked, RobustMutex};
use ipcx_sys::CreateMode;
use ipcx_testkit::{leftovers, peer, read_command, signal, unique_name};

ipcx_testkit::peer_entry!(peer_main);

/// Where the mutex lives in the test segment.
const MUTEX_AT: usize = 64;
/// Where the counter the stress test protects lives.
const COUNTER_AT: usize = 256;
const ROUNDS: u64 = 2000;

fn peer_main(role: &str, args: &[String]) {
    let shm = PosixShm::builder(&args[0]).create_mode(CreateMode::Open).open().unwrap();
    let map = shm.map(Access::ReadWrite).unwrap();
    // SAFETY: the parent initialised the mutex there; only RobustMutex touches those bytes.
    let m = unsafe { RobustMutex::open_in(&map, MUTEX_AT) }.unwrap();
    match role {
        "hold" => {
            let held = m.lock().unwrap();
            signal("locked", "");
            read_command(); // "unlock", or SIGKILL while holding
            drop(held);
            signal("unlocked", "");
        }
        "count" => {
            signal("ready", "");
            for _ in 0..ROUNDS {
                let _g = m.lock_timeout(Duration::from_secs(10)).unwrap().into_guard();
                bump(&map);
            }
            signal("done", "");
        }
        other => panic!("unknown role {other}"),
    }
}

/// A deliberately non-atomic read-modify-write: lost updates show a broken mutex.
fn bump(map: &Mapping) {
    let mut b = [0u8; 8];
    map.read_at(COUNTER_AT, &mut b).unwrap();
    map.write_at(COUNTER_AT, &(u64::from_ne_bytes(b) + 1).to_ne_bytes()).unwrap();
}

fn segment(name: &str) -> (PosixShm, Mapping) {
    let shm = PosixShm::builder(name).size(4096).open().unwrap();
    let map = shm.map(Access::ReadWrite).unwrap();
    (shm, map)
}

#[test]
fn excludes_across_processes_and_times_out() {
    let name = unique_name("mutex");
    let (shm, map) = segment(&name);
    // SAFETY: fresh segment, no other user yet; only RobustMutex touches these bytes.
    let m = unsafe { RobustMutex::init_in(&map, MUTEX_AT) }.unwrap();
    let mut p = peer("hold").arg(&name).spawn();
    p.expect("locked");
    assert!(m.try_lock().unwrap().is_none());
    let e = m.lock_timeout(Duration::from_millis(50)).unwrap_err();
    assert!(matches!(e, LockError::Timeout), "{e}");
    p.send("unlock");
    p.expect("unlocked");
    let g = m.lock_timeout(Duration::from_secs(10)).unwrap();
    assert!(matches!(g, Locked::Acquired(_)));
    drop(g);
    p.wait_success();
    drop(map);
    drop(shm);
    assert!(leftovers(&name).is_empty());
}

#[test]
fn killed_holder_is_reported_and_the_mutex_recovers() {
    let name = unique_name("mutex");
    let (_shm, map) = segment(&name);
    // SAFETY: fresh segment, no other user yet; only RobustMutex touches these bytes.
    let m = unsafe { RobustMutex::init_in(&map, MUTEX_AT) }.unwrap();
    let mut p = peer("hold").arg(&name).spawn();
    p.expect("locked");
    p.kill();
    let locked = m.lock_timeout(Duration::from_secs(10)).unwrap();
    assert!(locked.owner_died(), "the holder died holding the lock");
    drop(locked);
    // Made consistent: later locks are normal, from this or another process.
    let again = m.lock().unwrap();
    assert!(!again.owner_died());
    drop(again);
    let mut p = peer("hold").arg(&name).spawn();
    p.expect("locked");
    p.send("unlock");
    p.expect("unlocked");
    p.wait_success();
    assert!(matches!(m.try_lock().unwrap(), Some(Locked::Acquired(_))));
}

#[test]
fn a_blocked_waiter_learns_of_the_holders_death() {
    let name = unique_name("mutex");
    let (_shm, map) = segment(&name);
    // SAFETY: fresh segment, no other user yet; only RobustMutex touches these bytes.
    let m = unsafe { RobustMutex::init_in(&map, MUTEX_AT) }.unwrap();
    let mut p = peer("hold").arg(&name).spawn();
    p.expect("locked");
    std::thread::scope(|s| {
        let waiter = s.spawn(|| m.lock_timeout(Duration::from_secs(10)).map(|l| l.owner_died()));
        // Whether the waiter is asleep yet or not, the death must be reported to it.
        p.kill();
        assert!(waiter.join().unwrap().unwrap());
    });
}

#[test]
fn two_processes_never_hold_it_at_once() {
    let name = unique_name("mutex");
    let (_shm, map) = segment(&name);
    // SAFETY: fresh segment, no other user yet; only RobustMutex touches these bytes.
    let m = unsafe { RobustMutex::init_in(&map, MUTEX_AT) }.unwrap();
    let mut p = peer("count").arg(&name).spawn();
    p.expect("ready");
    for _ in 0..ROUNDS {
        let _g = m.lock_timeout(Duration::from_secs(10)).unwrap().into_guard();
        bump(&map);
    }
    p.expect("done");
    p.wait_success();
    let mut b = [0u8; 8];
    map.read_at(COUNTER_AT, &mut b).unwrap();
    assert_eq!(u64::from_ne_bytes(b), 2 * ROUNDS);
}

#[test]
fn bad_offsets_and_read_only_mappings_are_refused() {
    let name = unique_name("mutex");
    let (shm, map) = segment(&name);
    // SAFETY: each call is refused before touching memory.
    let e = unsafe { RobustMutex::init_in(&map, MUTEX_AT + 4) }.unwrap_err();
    assert!(matches!(e, InitError::Access(AccessError::Misaligned { .. })), "{e}");
    // SAFETY: as above.
    let e = unsafe { RobustMutex::init_in(&map, 4096 - 8) }.unwrap_err();
    assert!(matches!(e, InitError::Access(AccessError::OutOfBounds { .. })), "{e}");
    let ro = shm.map(Access::ReadOnly).unwrap();
    // SAFETY: as above.
    let e = unsafe { RobustMutex::open_in(&ro, MUTEX_AT) }.unwrap_err();
    assert_eq!(e, AccessError::ReadOnly);
}

#[test]
fn a_leaked_guard_keeps_its_mapping_mapped() {
    let name = unique_name("mutex");
    let (_shm, map) = segment(&name);
    let addr = map.as_ptr() as usize;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: fresh segment, no other user; only RobustMutex touches these bytes.
            let m = unsafe { RobustMutex::init_in(&map, MUTEX_AT) }.unwrap();
            std::mem::forget(m.lock().unwrap());
        });
    });
    drop(map);
    // The thread's robust list pointed into the mapping, so it must not be unmapped.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let still_mapped = maps.lines().any(|l| {
        let range = l.split_whitespace().next().unwrap();
        let (lo, hi) = range.split_once('-').unwrap();
        let (lo, hi) =
            (usize::from_str_radix(lo, 16).unwrap(), usize::from_str_radix(hi, 16).unwrap());
        (lo..hi).contains(&addr)
    });
    assert!(still_mapped);
}
