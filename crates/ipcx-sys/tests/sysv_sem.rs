//! System V semaphore sets across real processes.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use ipcx_sys::sysv_sem::{
    CtlError, OpError, OpenError, RemoveError, SemKey, SemLimits, SemOp, SysvSemSet, SEMVMX,
};
use ipcx_sys::{CreateMode, Permissions};
use ipcx_testkit::{peer, read_command, signal, sysv_id_exists, unique_name, SysvKind, NOBODY_UID};

ipcx_testkit::peer_entry!(peer_main);

const LONG: Duration = Duration::from_secs(10);

fn peer_main(role: &str, args: &[String]) {
    let key: i32 = args[0].parse().unwrap();
    let open = || SysvSemSet::builder(SemKey::Key(key), 0).create_mode(CreateMode::Open).open();
    match role {
        // Answers each post of semaphore 0 with a post of semaphore 1, `args[1]` times.
        "pong" => {
            let set = open().unwrap();
            assert!(!set.is_creator());
            assert_eq!(set.nsems(), 2);
            signal("ready", "");
            for _ in 0..args[1].parse::<u32>().unwrap() {
                set.wait_timeout(0, LONG).unwrap();
                set.post(1).unwrap();
            }
        }
        // Takes semaphore 0 with SEM_UNDO and holds it until killed.
        "holder" => {
            let mut set = open().unwrap();
            set.set_undo(true);
            set.wait_timeout(0, LONG).unwrap();
            signal("taken", "");
            read_command();
        }
        // Blocks on semaphore 0 and reports how the wait ended.
        "waiter" => {
            let set = open().unwrap();
            signal("waiting", "");
            let outcome = match set.wait_timeout(0, LONG) {
                Err(OpError::Removed(e)) if e == ipcx_sys::Errno::IDRM => "eidrm".to_owned(),
                other => format!("{other:?}"),
            };
            signal("ended", &outcome);
        }
        "open" => {
            let outcome = match open() {
                Ok(_) => "ok".to_owned(),
                Err(OpenError::PermissionDenied(_)) => "denied".to_owned(),
                Err(e) => format!("{e:?}"),
            };
            signal("opened", &outcome);
        }
        // Creates the set under umask 077 with mode `args[1]`, waits for the parent's check.
        "umask" => {
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
            let mode = u32::from_str_radix(&args[1], 8).unwrap();
            let _set = SysvSemSet::builder(SemKey::Key(key), 1)
                .create_mode(CreateMode::CreateExclusive)
                .permissions(Permissions::from_mode(mode).unwrap())
                .open()
                .unwrap();
            signal("created", "");
            read_command();
        }
        other => panic!("unknown role {other}"),
    }
}

/// A random non-zero key no set uses yet.
fn free_key() -> i32 {
    loop {
        let mut h = DefaultHasher::new();
        unique_name("ssem").hash(&mut h);
        let key = h.finish() as i32;
        let taken =
            std::fs::read_to_string("/proc/sysvipc/sem").unwrap().lines().skip(1).any(|l| {
                l.split_whitespace().next().and_then(|k| k.parse::<i32>().ok()) == Some(key)
            });
        if key != 0 && !taken {
            return key;
        }
    }
}

/// A new set of `nsems` semaphores under a fresh key.
fn create(nsems: usize, perms: Permissions) -> (SysvSemSet, i32) {
    loop {
        let key = free_key();
        match SysvSemSet::builder(SemKey::Key(key), nsems)
            .create_mode(CreateMode::CreateExclusive)
            .permissions(perms)
            .open()
        {
            Ok(set) => return (set, key),
            Err(OpenError::AlreadyExists(_)) => continue,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn ping_pong_between_processes() {
    let (set, key) = create(2, Permissions::OWNER_ONLY);
    let rounds = 200;
    let mut p = peer("pong").arg(key).arg(rounds).spawn();
    p.expect("ready");
    for _ in 0..rounds {
        set.post(0).unwrap();
        set.wait_timeout(1, LONG).unwrap();
    }
    p.wait_success();
    assert_eq!((set.value(0).unwrap(), set.value(1).unwrap()), (0, 0));
}

#[test]
fn multi_op_is_all_or_nothing() {
    let (set, _) = create(2, Permissions::OWNER_ONLY);
    set.set_value(0, 1).unwrap();
    let both = [SemOp::wait(0), SemOp::wait(1)];
    assert!(!set.try_op(&both).unwrap());
    assert_eq!(set.value(0).unwrap(), 1, "a failed multi-op changes nothing");
    assert!(matches!(set.op_timeout(&both, Duration::from_millis(20)), Err(OpError::Timeout)));
    set.set_value(1, 1).unwrap();
    set.op_timeout(&both, LONG).unwrap();
    assert_eq!((set.value(0).unwrap(), set.value(1).unwrap()), (0, 0));
    set.op(&[SemOp::wait_zero(0), SemOp { num: 1, delta: 5, undo: false, nowait: false }]).unwrap();
    assert_eq!(set.value(1).unwrap(), 5);
}

#[test]
fn try_and_timeout_forms() {
    let (set, _) = create(1, Permissions::OWNER_ONLY);
    assert!(!set.try_wait(0).unwrap());
    let start = Instant::now();
    assert!(matches!(set.wait_timeout(0, Duration::from_millis(50)), Err(OpError::Timeout)));
    assert!(start.elapsed() >= Duration::from_millis(45));
    assert!(matches!(set.op(&[SemOp::wait(0).with_nowait()]), Err(OpError::WouldBlock)));
    set.post(0).unwrap();
    assert!(set.try_wait(0).unwrap());
    set.post(0).unwrap();
    set.wait_timeout(0, Duration::ZERO).unwrap();
}

#[test]
fn bad_arguments_are_typed_errors() {
    let (set, key) = create(2, Permissions::OWNER_ONLY);
    assert!(matches!(set.value(2), Err(CtlError::IndexOutOfRange { index: 2, nsems: 2 })));
    assert!(matches!(set.set_value(7, 1), Err(CtlError::IndexOutOfRange { .. })));
    assert!(matches!(set.set_value(0, SEMVMX + 1), Err(CtlError::ValueTooLarge { .. })));
    assert!(matches!(set.wait(2), Err(OpError::IndexOutOfRange { index: 2, nsems: 2 })));
    assert!(matches!(set.post(usize::MAX), Err(OpError::IndexOutOfRange { .. })));
    assert!(matches!(set.op(&[SemOp::post(9)]), Err(OpError::IndexOutOfRange { .. })));
    assert!(matches!(set.op(&[]), Err(OpError::NoOps)));
    let semopm = SemLimits::read().unwrap().semopm as usize;
    let many = vec![SemOp::post(0); semopm + 1];
    assert!(matches!(set.op(&many), Err(OpError::TooManyOps { count, .. }) if count == semopm + 1));
    set.set_value(0, SEMVMX).unwrap();
    assert!(matches!(set.post(0), Err(OpError::OutOfRange(_))));

    let b = |key, n| SysvSemSet::builder(key, n);
    assert!(matches!(b(SemKey::Key(0), 1).open(), Err(OpenError::BadKey)));
    let private_open = b(SemKey::Private, 1).create_mode(CreateMode::Open).open();
    assert!(matches!(private_open, Err(OpenError::PrivateNeedsCreate)));
    assert!(matches!(b(SemKey::Private, 0).open(), Err(OpenError::NoSems)));
    let semmsl = SemLimits::read().unwrap().semmsl as usize;
    let huge = b(SemKey::Private, semmsl + 1).open();
    assert!(
        matches!(huge, Err(OpenError::TooManySems { requested, .. }) if requested == semmsl + 1)
    );
    let missing = b(SemKey::Key(free_key()), 1).create_mode(CreateMode::Open).open();
    assert!(matches!(missing, Err(OpenError::NotFound(_))));
    let again = b(SemKey::Key(key), 2).create_mode(CreateMode::CreateExclusive).open();
    assert!(matches!(again, Err(OpenError::AlreadyExists(_))));
    let bigger = b(SemKey::Key(key), 3).create_mode(CreateMode::Open).open();
    assert!(matches!(bigger, Err(OpenError::SetTooSmall { requested: 3, .. })));
}

#[test]
fn creator_removes_opener_does_not() {
    let (set, key) = create(1, Permissions::OWNER_ONLY);
    let id = set.id();
    let opener = SysvSemSet::builder(SemKey::Key(key), 1).create_mode(CreateMode::Open).open();
    drop(opener.unwrap());
    assert!(sysv_id_exists(SysvKind::Sem, id));
    drop(set);
    assert!(!sysv_id_exists(SysvKind::Sem, id));

    let mut private = SysvSemSet::builder(SemKey::Private, 3).open().unwrap();
    let id = private.id();
    assert!(private.is_creator() && sysv_id_exists(SysvKind::Sem, id));
    private.remove().unwrap();
    assert!(!sysv_id_exists(SysvKind::Sem, id));
    assert!(matches!(private.post(0), Err(OpError::Removed(_))));
    assert!(matches!(private.value(0), Err(CtlError::Removed(_))));
    assert!(matches!(private.remove(), Err(RemoveError::AlreadyRemoved(_))));
}

#[test]
fn sem_undo_gives_back_a_semaphore_held_by_a_killed_process() {
    let (set, key) = create(1, Permissions::OWNER_ONLY);
    set.set_value(0, 1).unwrap();
    let mut p = peer("holder").arg(key).spawn();
    p.expect("taken");
    assert_eq!(set.value(0).unwrap(), 0);
    assert!(!set.try_wait(0).unwrap());
    p.kill();
    set.wait_timeout(0, LONG).unwrap();
}

#[test]
fn removing_the_set_wakes_a_waiter_with_removed() {
    let (mut set, key) = create(1, Permissions::OWNER_ONLY);
    let mut p = peer("waiter").arg(key).spawn();
    p.expect("waiting");
    // Remove only once the child sleeps in semop, so it sees EIDRM rather than EINVAL.
    let deadline = Instant::now() + LONG;
    while set.waiters(0).unwrap() == 0 {
        assert!(Instant::now() < deadline, "waiter never blocked");
        std::thread::sleep(Duration::from_millis(1));
    }
    let id = set.id();
    set.remove().unwrap();
    assert_eq!(p.expect("ended"), "eidrm");
    p.wait_success();
    assert!(!sysv_id_exists(SysvKind::Sem, id));
}

#[test]
fn other_user_is_denied_on_owner_only_set() {
    let (set, key) = create(1, Permissions::OWNER_ONLY);
    assert_eq!(set.permissions().unwrap(), Permissions::OWNER_ONLY);
    let mut p = peer("open").arg(key).uid(NOBODY_UID).spawn();
    assert_eq!(p.expect("opened"), "denied");
    p.wait_success();
}

#[test]
fn mode_is_exact_whatever_the_umask() {
    let key = free_key();
    let mut p = peer("umask").arg(key).arg("646").spawn();
    p.expect("created");
    let set = SysvSemSet::builder(SemKey::Key(key), 1).create_mode(CreateMode::Open).open();
    let set = set.unwrap();
    assert_eq!(set.permissions().unwrap().mode(), 0o646);
    p.send("done");
    p.wait_success();
    assert!(!sysv_id_exists(SysvKind::Sem, set.id()));
}
