//! Doorbells between threads and between real processes (doorbell in a POSIX shm mapping).
#![cfg(not(loom))]

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipcx_shm::doorbell::{AttachError, DoorbellState, PlaceError};
use ipcx_shm::{
    Doorbell, EventfdDoorbell, HeapRegion, MappedRegion, Region, WaitError, WaitPolicy,
};
use ipcx_sys::eventfd::EventFd;
use ipcx_sys::mapping::Access;
use ipcx_sys::posix_shm::PosixShm;
use ipcx_sys::uds::{BindOptions, UdsAddr, UdsSeqpacket, UdsSeqpacketListener};
use ipcx_sys::CreateMode;
use ipcx_testkit::{leftovers, peer, read_command, signal, unique_name};

ipcx_testkit::peer_entry!(peer_main);

const LEN: usize = 4096;
/// Parent → child doorbell.
const BELL_A: usize = 0;
/// Child → parent doorbell.
const BELL_B: usize = DoorbellState::SIZE;
/// Value the parent publishes.
const PING: usize = 1024;
/// Value the child publishes.
const PONG: usize = 1024 + 128;
/// Offset of the futex word inside the doorbell state (layout asserted in the crate).
const SEQ_OFFSET: usize = 4;
const ROUNDS: u64 = 10_000;
const LONG: Duration = Duration::from_secs(10);

fn peer_main(role: &str, args: &[String]) {
    let region = open_region(&args[0]);
    match role {
        "pong" => {
            let a = Doorbell::attach(Arc::clone(&region), BELL_A).unwrap();
            let b = Doorbell::attach(Arc::clone(&region), BELL_B).unwrap();
            let (ping, pong) = (word(&region, PING), word(&region, PONG));
            for i in 1..=ROUNDS {
                a.wait_until(
                    || ping.load(Ordering::Acquire) >= i,
                    WaitPolicy::park_only(),
                    Some(LONG),
                )
                .unwrap();
                pong.store(i, Ordering::Release);
                b.ring().unwrap();
            }
            signal("done", &a.stats().parks.to_string());
        }
        "park" => {
            let a = Doorbell::attach(Arc::clone(&region), BELL_A).unwrap();
            let seq = region.base().as_ptr() as usize + BELL_A + SEQ_OFFSET;
            signal("parking", &format!("{seq:#x}"));
            let r = a.wait_until(|| false, WaitPolicy::park_only(), None);
            signal("ended", &format!("{r:?}"));
        }
        "eventfd-pong" => {
            let sock = UdsSeqpacket::connect(&UdsAddr::abstract_name(&args[1]).unwrap()).unwrap();
            let mut buf = [0u8; 8];
            let (_, mut fds) = sock.recv_with_fds_timeout(&mut buf, 2, LONG).unwrap();
            let (fd_b, fd_a) = (fds.pop().unwrap(), fds.pop().unwrap());
            let a = EventfdDoorbell::attach(Arc::clone(&region), BELL_A, EventFd::from_fd(fd_a));
            let b = EventfdDoorbell::attach(Arc::clone(&region), BELL_B, EventFd::from_fd(fd_b));
            let (a, b) = (a.unwrap(), b.unwrap());
            let (ping, pong) = (word(&region, PING), word(&region, PONG));
            let rounds: u64 = args[2].parse().unwrap();
            for i in 1..=rounds {
                a.wait_until(
                    || ping.load(Ordering::Acquire) >= i,
                    WaitPolicy::park_only(),
                    Some(LONG),
                )
                .unwrap();
                pong.store(i, Ordering::Release);
                b.ring().unwrap();
            }
            signal("done", "");
            read_command();
        }
        other => panic!("unknown role {other}"),
    }
}

fn create_region(name: &str) -> (PosixShm, Arc<MappedRegion>) {
    let shm = PosixShm::builder(name).size(LEN).open().unwrap();
    let region = MappedRegion::new(shm.map(Access::ReadWrite).unwrap()).unwrap();
    (shm, Arc::new(region))
}

fn open_region(name: &str) -> Arc<MappedRegion> {
    let shm = PosixShm::builder(name).create_mode(CreateMode::Open).open().unwrap();
    Arc::new(MappedRegion::new(shm.map(Access::ReadWrite).unwrap()).unwrap())
}

fn word(region: &MappedRegion, offset: usize) -> &AtomicU64 {
    region.get().atomic_u64_at(offset).unwrap()
}

/// Waits (polling /proc, 10 s at most) until a thread of `pid` sits in a syscall whose
/// first argument is `addr`: the futex wait on the doorbell's word.
fn wait_until_parked(pid: u32, addr: &str) {
    let deadline = Instant::now() + LONG;
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        for task in tasks.flatten() {
            let syscall = std::fs::read_to_string(task.path().join("syscall")).unwrap_or_default();
            if syscall.split_whitespace().nth(1) == Some(addr) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "peer {pid} never parked on {addr}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn ping_pong_between_processes_parking_every_time() {
    let name = unique_name("bell");
    let (shm, region) = create_region(&name);
    let a = Doorbell::init_in(Arc::clone(&region), BELL_A).unwrap();
    let b = Doorbell::init_in(Arc::clone(&region), BELL_B).unwrap();
    let (ping, pong) = (word(&region, PING), word(&region, PONG));
    let mut p = peer("pong").arg(&name).spawn();
    for i in 1..=ROUNDS {
        ping.store(i, Ordering::Release);
        a.ring().unwrap();
        b.wait_until(|| pong.load(Ordering::Acquire) >= i, WaitPolicy::park_only(), Some(LONG))
            .unwrap();
    }
    let child_parks: u64 = p.expect("done").parse().unwrap();
    p.wait_success();
    // The counters are shared: the child's parks are visible here.
    assert_eq!(a.stats().parks, child_parks);
    assert!(child_parks > 0 && b.stats().parks > 0, "park-only waits must park");
    assert!(a.stats().wakeups > 0 && a.stats().wakeups <= ROUNDS);
    assert_eq!((a.stats().waiters, b.stats().waiters), (0, 0));
    drop((a, b, region, shm));
    assert!(leftovers(&name).is_empty());
}

#[test]
fn close_wakes_a_peer_parked_without_timeout() {
    let name = unique_name("bell");
    let (shm, region) = create_region(&name);
    let a = Doorbell::init_in(Arc::clone(&region), BELL_A).unwrap();
    let mut p = peer("park").arg(&name).spawn();
    let addr = p.expect("parking");
    wait_until_parked(p.pid(), &addr);
    a.close().unwrap();
    assert_eq!(p.expect("ended"), "Err(Closed)");
    p.wait_success();
    assert!(a.is_closed());
    assert_eq!(a.stats().waiters, 0);
    drop((a, region, shm));
    assert!(leftovers(&name).is_empty());
}

#[test]
fn a_waiter_killed_while_parked_costs_one_wake_then_none() {
    let name = unique_name("bell");
    let (shm, region) = create_region(&name);
    let a = Doorbell::init_in(Arc::clone(&region), BELL_A).unwrap();
    let mut p = peer("park").arg(&name).spawn();
    let addr = p.expect("parking");
    wait_until_parked(p.pid(), &addr);
    p.kill();
    assert_eq!(a.stats().waiters, 1, "the dead waiter is still counted");
    a.ring().unwrap();
    assert_eq!((a.stats().waiters, a.stats().wakeups), (0, 1), "the ring took its count");
    for _ in 0..1000 {
        a.ring().unwrap();
    }
    assert_eq!(a.stats().wakeups, 1, "rings are free again");
    drop((a, region, shm));
    assert!(leftovers(&name).is_empty());
}

#[test]
fn no_wake_syscall_when_nobody_waits() {
    let bell = Doorbell::init_in(HeapRegion::new(LEN), 0).unwrap();
    for _ in 0..1_000_000 {
        bell.ring().unwrap();
    }
    assert_eq!(bell.stats().wakeups, 0);
    assert_eq!(bell.stats().parks, 0);
}

#[test]
fn waits_time_out_when_nobody_rings() {
    let bell = Doorbell::init_in(HeapRegion::new(LEN), 0).unwrap();
    for policy in [WaitPolicy::park_only(), WaitPolicy::default(), WaitPolicy::spin_only()] {
        let start = Instant::now();
        let r = bell.wait_until(|| false, policy, Some(Duration::from_millis(30)));
        assert!(matches!(r, Err(WaitError::Timeout)), "{policy:?}: {r:?}");
        assert!(start.elapsed() >= Duration::from_millis(30), "{policy:?}");
    }
    // Zero timeout: the try form, no sleep. A true condition never parks.
    let r = bell.wait_until(|| false, WaitPolicy::park_only(), Some(Duration::ZERO));
    assert!(matches!(r, Err(WaitError::Timeout)));
    bell.wait_until(|| true, WaitPolicy::park_only(), None).unwrap();
    assert_eq!(bell.stats().waiters, 0);
}

#[test]
fn waits_by_a_deadline_end_at_the_earlier_limit_never_early() {
    let bell = Doorbell::init_in(HeapRegion::new(LEN), 0).unwrap();
    let policies = [WaitPolicy::park_only(), WaitPolicy::default(), WaitPolicy::spin_only()];
    for policy in policies {
        // The deadline comes first.
        let start = Instant::now();
        let deadline = start + Duration::from_millis(20);
        let r = bell.wait_until_by(|| false, policy, Some(LONG), Some(deadline));
        assert!(matches!(r, Err(WaitError::Timeout)), "{policy:?}: {r:?}");
        let took = start.elapsed();
        assert!(Instant::now() >= deadline, "{policy:?}: ended early");
        assert!(took < LONG / 2, "{policy:?}: the deadline was ignored ({took:?})");
        // The timeout comes first.
        let start = Instant::now();
        let r = bell.wait_until_by(
            || false,
            policy,
            Some(Duration::from_millis(20)),
            Some(start + LONG),
        );
        assert!(matches!(r, Err(WaitError::Timeout)), "{policy:?}: {r:?}");
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(20) && took < LONG / 2, "{policy:?}: {took:?}");
        // A deadline already past: one look at the condition, then the timeout.
        let past = Instant::now();
        let r = bell.wait_until_by(|| false, policy, None, Some(past));
        assert!(matches!(r, Err(WaitError::Timeout)), "{policy:?}: {r:?}");
        bell.wait_until_by(|| true, policy, None, Some(past)).unwrap();
    }
    assert_eq!(bell.stats().waiters, 0);
}

#[test]
fn threads_ping_pong_with_every_policy() {
    let region = Arc::new(HeapRegion::new(LEN));
    let a = Arc::new(Doorbell::init_in(Arc::clone(&region), BELL_A).unwrap());
    let b = Doorbell::attach(Arc::clone(&region), BELL_B);
    assert!(matches!(b, Err(AttachError::NotInitialised { found: 0 })));
    let b = Arc::new(Doorbell::init_in(Arc::clone(&region), BELL_B).unwrap());
    let values = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let policies = [
        WaitPolicy::park_only(),
        WaitPolicy::default(),
        WaitPolicy::spin_iterations_then_park(100),
        WaitPolicy::spin_only(),
    ];
    let mut next = 0;
    for policy in policies {
        let start = next;
        next += 2000;
        let (a2, b2, v2) = (Arc::clone(&a), Arc::clone(&b), Arc::clone(&values));
        let t = std::thread::spawn(move || {
            for i in start + 1..=next {
                a2.wait_until(|| v2[0].load(Ordering::Acquire) >= i, policy, Some(LONG)).unwrap();
                v2[1].store(i, Ordering::Release);
                b2.ring().unwrap();
            }
        });
        for i in start + 1..=next {
            values[0].store(i, Ordering::Release);
            a.ring().unwrap();
            b.wait_until(|| values[1].load(Ordering::Acquire) >= i, policy, Some(LONG)).unwrap();
        }
        t.join().unwrap();
    }
    assert_eq!((a.stats().waiters, b.stats().waiters), (0, 0));
}

#[test]
fn bad_offsets_are_typed_errors() {
    let region = Arc::new(HeapRegion::new(LEN));
    let align = DoorbellState::ALIGN;
    let size = DoorbellState::SIZE;
    assert_eq!(
        Doorbell::init_in(Arc::clone(&region), 64).unwrap_err(),
        PlaceError::Misaligned { offset: 64, align }
    );
    assert_eq!(
        Doorbell::init_in(Arc::clone(&region), LEN).unwrap_err(),
        PlaceError::OutOfBounds { offset: LEN, size, len: LEN }
    );
    let huge = usize::MAX - (align - 1);
    assert!(matches!(
        Doorbell::attach(Arc::clone(&region), huge),
        Err(AttachError::Place(PlaceError::OutOfBounds { .. }))
    ));
    // The last slot that fits works.
    Doorbell::init_in(Arc::clone(&region), LEN - size).unwrap();
    let e = Doorbell::attach(region, 0).unwrap_err();
    assert!(e.to_string().contains("not initialised"), "{e}");
}

#[test]
fn eventfd_doorbell_writes_only_for_announced_waiters() {
    let bell = EventfdDoorbell::init_in(HeapRegion::new(LEN), 0, EventFd::new().unwrap()).unwrap();
    bell.ring().unwrap();
    assert!(!bell.drain().unwrap(), "no waiter: nothing written");
    assert!(!bell.has_waiters());
    let announced = bell.announce();
    assert_eq!(bell.stats().waiters, 1);
    assert!(bell.has_waiters(), "the one-load check sees what stats sees");
    bell.ring().unwrap();
    // An event loop would now see the fd readable.
    let _fd = bell.as_fd();
    assert!(bell.drain().unwrap());
    drop(announced);
    assert_eq!(bell.stats().waiters, 0, "the ring took the announcement");
    assert!(!bell.has_waiters());
    assert_eq!(bell.stats().wakeups, 1);
    let r = bell.wait_until(|| false, WaitPolicy::park_only(), Some(Duration::from_millis(20)));
    assert!(matches!(r, Err(WaitError::Timeout)));
    bell.close().unwrap();
    let r = bell.wait_until(|| false, WaitPolicy::park_only(), None);
    assert!(matches!(r, Err(WaitError::Closed)));
}

#[test]
fn eventfd_doorbell_ping_pong_between_processes() {
    const EV_ROUNDS: u64 = 2000;
    let name = unique_name("bell");
    let (shm, region) = create_region(&name);
    let (ev_a, ev_b) = (EventFd::new().unwrap(), EventFd::new().unwrap());
    let sock_name = unique_name("bellsock");
    let listener = UdsSeqpacketListener::bind(
        &UdsAddr::abstract_name(&sock_name).unwrap(),
        &BindOptions::default(),
    )
    .unwrap();
    // Both doorbells are initialised before the peer can see the fds: it attaches at once.
    let a = EventfdDoorbell::init_in(Arc::clone(&region), BELL_A, ev_a);
    let b = EventfdDoorbell::init_in(Arc::clone(&region), BELL_B, ev_b);
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut p = peer("eventfd-pong").arg(&name).arg(&sock_name).arg(EV_ROUNDS).spawn();
    let sock = listener.accept_timeout(LONG).unwrap();
    sock.send_with_fds(b"fds", &[a.eventfd().as_fd(), b.eventfd().as_fd()]).unwrap();
    let (ping, pong) = (word(&region, PING), word(&region, PONG));
    for i in 1..=EV_ROUNDS {
        ping.store(i, Ordering::Release);
        a.ring().unwrap();
        b.wait_until(|| pong.load(Ordering::Acquire) >= i, WaitPolicy::park_only(), Some(LONG))
            .unwrap();
    }
    p.expect("done");
    assert!(a.stats().parks > 0 && b.stats().parks > 0);
    p.close_stdin();
    p.wait_success();
    drop((a, b, region, shm));
    assert!(leftovers(&name).is_empty());
}

#[test]
fn spin_turns_split_off_a_policy_leave_the_rest_of_its_spin() {
    use ipcx_shm::doorbell::TURN;
    let us = Duration::from_micros;
    // Parking at once gives no turns; busy-polling gives all, and stays busy-polling.
    assert_eq!(WaitPolicy::park_only().take_turns(256), (0, WaitPolicy::park_only()));
    assert_eq!(WaitPolicy::spin_only().take_turns(256), (256, WaitPolicy::spin_only()));
    // Counted spins: the turns come off the count.
    let counted = WaitPolicy::spin_iterations_then_park;
    assert_eq!(counted(100).take_turns(256), (100, counted(0)));
    assert_eq!(counted(1000).take_turns(256), (256, counted(744)));
    // Timed spins: the turns' estimated time comes off the spin, never below zero.
    let timed = WaitPolicy::spin_then_park;
    assert_eq!(timed(us(5)).take_turns(256), (256, timed(us(5) - TURN * 256)));
    assert_eq!(timed(TURN * 100).take_turns(256), (100, timed(Duration::ZERO)));
    assert_eq!(timed(Duration::ZERO).take_turns(256), (0, timed(Duration::ZERO)));
    assert_eq!(timed(Duration::MAX).take_turns(256), (256, timed(Duration::MAX - TURN * 256)));
    assert_eq!(WaitPolicy::default().take_turns(0), (0, WaitPolicy::default()));
}
