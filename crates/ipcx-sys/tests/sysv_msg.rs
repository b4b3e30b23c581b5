//! System V message queues across real processes: type selection, timeouts, limits,
//! cleanup, removal while waiting, peer death, permissions and exact modes.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::thread;
use std::time::{Duration, Instant};

use ipcx_sys::sysv_msg::{
    MsgKey, MsgType, OpenError, RecvError, RemoveError, SendError, StatError, SysvMsgQueue,
};
use ipcx_sys::{CreateMode, Permissions};
use ipcx_testkit::{peer, read_command, signal, sysv_id_exists, unique_name, SysvKind, NOBODY_UID};
use rustix::fs::Mode;
use rustix::process::umask;

ipcx_testkit::peer_entry!(peer_main);

const LONG: Duration = Duration::from_secs(10);

fn peer_main(role: &str, args: &[String]) {
    let arg_id = |i: usize| args[i].parse::<i32>().unwrap();
    match role {
        "sender" => {
            let q = SysvMsgQueue::open_id(arg_id(0)).unwrap();
            for (mtype, msg) in [(3, "c"), (1, "a"), (2, "b")] {
                q.send(mtype, msg.as_bytes()).unwrap();
            }
            signal("sent", "");
            read_command(); // the parent drained our messages
            let mut buf = [0u8; 64];
            let (mtype, n) = q.recv_timeout(MsgType::Exactly(10), &mut buf, LONG).unwrap();
            signal("got", &format!("{mtype} {}", String::from_utf8_lossy(&buf[..n])));
        }
        "waiter" => {
            let q = SysvMsgQueue::open_id(arg_id(0)).unwrap();
            signal("waiting", "");
            let removed = if args[1] == "recv" {
                let mut buf = [0u8; 16];
                matches!(q.recv(MsgType::Any, &mut buf), Err(RecvError::Removed(_)))
            } else {
                matches!(q.send(1, b"no room"), Err(SendError::Removed(_)))
            };
            signal("result", &removed.to_string());
        }
        "holder" => {
            let q = SysvMsgQueue::open_id(arg_id(0)).unwrap();
            q.send(1, b"before death").unwrap();
            signal("ready", "");
            read_command(); // blocks until the parent kills us
        }
        "creator" => {
            let b = SysvMsgQueue::builder(MsgKey::Key(arg_id(0)));
            let q = b.create_mode(CreateMode::CreateExclusive).open().unwrap();
            q.send(4, b"left behind").unwrap();
            signal("created", &q.id().to_string());
            read_command(); // killed here, so the queue is never removed
        }
        "intruder" => {
            let by_key = SysvMsgQueue::builder(MsgKey::Key(arg_id(0)));
            let by_key = by_key.create_mode(CreateMode::Open).open();
            let by_id = SysvMsgQueue::open_id(arg_id(1));
            let open = SysvMsgQueue::open_id(arg_id(2)).unwrap();
            open.send(9, b"from nobody").unwrap();
            let remove = open.remove();
            signal(
                "result",
                &format!(
                    "{} {} {}",
                    matches!(by_key, Err(OpenError::PermissionDenied(_))),
                    matches!(by_id, Err(OpenError::PermissionDenied(_))),
                    matches!(remove, Err(RemoveError::PermissionDenied(_))),
                ),
            );
        }
        "umask" => {
            let mut modes = Vec::new();
            for (mask, perms) in [(0o000, Some(0o640)), (0o077, Some(0o660)), (0o000, None)] {
                umask(Mode::from_raw_mode(mask));
                let mut b = SysvMsgQueue::builder(MsgKey::Private);
                if let Some(p) = perms {
                    b = b.permissions(Permissions::from_mode(p).unwrap());
                }
                let q = b.open().unwrap();
                modes.push(format!("{:o}:{}", q.status().unwrap().mode, q.id()));
            }
            signal("modes", &modes.join(" "));
        }
        other => panic!("unknown role {other}"),
    }
}

/// A key no other test uses: a hash of a unique name, positive and never 0.
fn unique_key() -> i32 {
    let mut h = DefaultHasher::new();
    unique_name("msgkey").hash(&mut h);
    (h.finish() as i32 & 0x3fff_ffff) | 0x4000_0000
}

fn private() -> SysvMsgQueue {
    SysvMsgQueue::builder(MsgKey::Private).open().unwrap()
}

fn exists(id: i32) -> bool {
    sysv_id_exists(SysvKind::Msg, id)
}

/// Removes a queue some other process created, even if the test fails midway.
struct RemoveGuard(Option<i32>);

impl Drop for RemoveGuard {
    fn drop(&mut self) {
        if let Some(q) = self.0.and_then(|id| SysvMsgQueue::open_id(id).ok()) {
            q.remove().ok();
        }
    }
}

fn msgmax() -> usize {
    std::fs::read_to_string("/proc/sys/kernel/msgmax").unwrap().trim().parse().unwrap()
}

#[test]
fn type_selection_round_trip_between_processes() {
    let q = private();
    let mut p = peer("sender").arg(q.id()).spawn();
    p.expect("sent");
    let mut buf = [0u8; 64];
    assert_eq!(q.recv_timeout(MsgType::Exactly(2), &mut buf, LONG).unwrap(), (2, 1));
    assert_eq!(&buf[..1], b"b");
    assert_eq!(q.recv(MsgType::AtMost(3), &mut buf).unwrap(), (1, 1));
    assert_eq!(&buf[..1], b"a");
    assert_eq!(q.try_recv(MsgType::Any, &mut buf).unwrap(), (3, 1));
    assert_eq!(&buf[..1], b"c");
    p.send("drained");
    q.send(10, b"reply").unwrap();
    assert_eq!(p.expect("got"), "10 reply");
    p.wait_success();
    let id = q.id();
    drop(q);
    assert!(!exists(id));
}

#[test]
fn timeouts_and_nonblocking_full_and_empty() {
    let q = private();
    let mut buf = vec![0u8; msgmax()];
    assert!(matches!(q.try_recv(MsgType::Any, &mut buf), Err(RecvError::Empty)));
    let t = Duration::from_millis(50);
    let start = Instant::now();
    assert!(matches!(q.recv_timeout(MsgType::Any, &mut buf, t), Err(RecvError::Timeout)));
    assert!(start.elapsed() >= t);

    let max_bytes = q.status().unwrap().max_bytes as usize;
    let chunk = vec![1u8; msgmax().min(max_bytes)];
    let mut sent = 0;
    while sent <= max_bytes / chunk.len() {
        match q.try_send(1, &chunk) {
            Ok(()) => sent += 1,
            Err(SendError::Full) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(matches!(q.try_send(1, &chunk), Err(SendError::Full)));
    let start = Instant::now();
    assert!(matches!(q.send_timeout(1, &chunk, t), Err(SendError::Timeout)));
    assert!(start.elapsed() >= t);
    assert_eq!(q.status().unwrap().messages, sent as u64);
    assert_eq!(q.recv_timeout(MsgType::Any, &mut buf, t).unwrap(), (1, chunk.len()));
    q.send_timeout(2, b"room again", t).unwrap();
}

#[test]
fn oversize_messages_and_small_buffers_are_refused() {
    let q = private();
    let max = msgmax();
    let e = q.send(1, &vec![0u8; max + 1]).unwrap_err();
    assert!(matches!(e, SendError::TooLarge { limit, .. } if limit == max), "{e:?}");
    assert!(e.to_string().contains(&format!("/proc/sys/kernel/msgmax ({max})")), "{e}");
    q.send(7, b"twelve bytes").unwrap();
    let mut small = [0u8; 11];
    let e = q.recv(MsgType::Any, &mut small).unwrap_err();
    assert!(matches!(e, RecvError::BufferTooSmall { len: 11 }), "{e:?}");
    assert_eq!(q.status().unwrap().messages, 1, "refused receive must not dequeue");
    let mut buf = [0u8; 12];
    assert_eq!(q.try_recv(MsgType::Exactly(7), &mut buf).unwrap(), (7, 12));
    assert_eq!(&buf, b"twelve bytes");
}

#[test]
fn bad_arguments_are_refused() {
    let q = private();
    for mtype in [0, -1, i64::MIN] {
        assert!(matches!(q.try_send(mtype, b"x"), Err(SendError::BadType { .. })));
    }
    let mut buf = [0u8; 8];
    for sel in [MsgType::Exactly(0), MsgType::AtMost(-2), MsgType::Exactly(i64::MIN)] {
        assert!(matches!(q.try_recv(sel, &mut buf), Err(RecvError::BadType { .. })));
    }
    assert!(matches!(SysvMsgQueue::builder(MsgKey::Key(0)).open(), Err(OpenError::BadKey)));
    let r = SysvMsgQueue::builder(MsgKey::Private).create_mode(CreateMode::Open).open();
    assert!(matches!(r, Err(OpenError::PrivateNeedsCreate)));
    assert!(matches!(SysvMsgQueue::open_id(-1), Err(OpenError::NotFound(_))));
    let key = unique_key();
    let r = SysvMsgQueue::builder(MsgKey::Key(key)).create_mode(CreateMode::Open).open();
    assert!(matches!(r, Err(OpenError::NotFound(_))));
    let exclusive =
        || SysvMsgQueue::builder(MsgKey::Key(key)).create_mode(CreateMode::CreateExclusive);
    let first = exclusive().open().unwrap();
    assert!(matches!(exclusive().open(), Err(OpenError::AlreadyExists(_))));
    drop(first);
}

#[test]
fn creator_removes_on_drop_opener_does_not_and_remove_is_explicit() {
    let key = unique_key();
    let creator = SysvMsgQueue::builder(MsgKey::Key(key)).open().unwrap();
    let id = creator.id();
    let opener =
        SysvMsgQueue::builder(MsgKey::Key(key)).create_mode(CreateMode::Open).open().unwrap();
    assert_eq!(opener.id(), id);
    drop(opener);
    assert!(exists(id), "an opener must not remove");
    drop(creator);
    assert!(!exists(id), "the creator removes on drop");

    let q = private();
    let other = SysvMsgQueue::open_id(q.id()).unwrap();
    q.remove().unwrap();
    assert!(!exists(other.id()));
    assert!(matches!(other.try_send(1, b"x"), Err(SendError::Removed(_))));
    assert!(matches!(other.status(), Err(StatError::Removed(_))));

    let kept = SysvMsgQueue::builder(MsgKey::Private).remove_on_drop(false).open().unwrap();
    let id = kept.id();
    let _guard = RemoveGuard(Some(id));
    drop(kept);
    assert!(exists(id));
    SysvMsgQueue::open_id(id).unwrap().remove().unwrap();
    assert!(!exists(id));
}

/// Waits until some thread of `pid` sleeps in the kernel function `func` (from
/// `/proc/<pid>/task/*/wchan`). Returns false if the kernel hides wchan.
fn wait_until_blocked_in(pid: u32, func: &str) -> bool {
    let deadline = Instant::now() + LONG;
    while Instant::now() < deadline {
        let mut visible = false;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
            let wchan =
                std::fs::read_to_string(task.unwrap().path().join("wchan")).unwrap_or_default();
            if wchan.contains(func) {
                return true;
            }
            visible |= !wchan.is_empty() && wchan != "0";
        }
        if !visible {
            return false;
        }
        thread::yield_now();
    }
    panic!("peer {pid} never blocked in {func}");
}

#[test]
fn child_blocked_in_recv_gets_removed() {
    let q = private();
    let mut p = peer("waiter").arg(q.id()).arg("recv").spawn();
    p.expect("waiting");
    wait_until_blocked_in(p.pid(), "msgrcv");
    q.remove().unwrap();
    assert_eq!(p.expect("result"), "true");
    p.wait_success();
}

#[test]
fn child_blocked_in_send_gets_removed() {
    let q = private();
    let big = vec![0u8; msgmax().min(q.status().unwrap().max_bytes as usize)];
    while q.try_send(1, &big).is_ok() {}
    let mut p = peer("waiter").arg(q.id()).arg("send").spawn();
    p.expect("waiting");
    wait_until_blocked_in(p.pid(), "msgsnd");
    q.remove().unwrap();
    assert_eq!(p.expect("result"), "true");
    p.wait_success();
}

#[test]
fn receiver_waiting_on_a_killed_peer_times_out_cleanly() {
    let q = private();
    let mut p = peer("holder").arg(q.id()).spawn();
    p.expect("ready");
    let killer = thread::spawn(move || p.kill());
    let mut buf = [0u8; 32];
    let (_, n) = q.recv_timeout(MsgType::Any, &mut buf, LONG).unwrap();
    assert_eq!(&buf[..n], b"before death");
    let t = Duration::from_millis(100);
    assert!(matches!(q.recv_timeout(MsgType::Any, &mut buf, t), Err(RecvError::Timeout)));
    killer.join().unwrap();
    q.try_send(1, b"alive").unwrap();
    assert_eq!(q.try_recv(MsgType::Any, &mut buf).unwrap(), (1, 5));
}

#[test]
fn queue_of_a_killed_creator_is_reclaimed() {
    let key = unique_key();
    let mut p = peer("creator").arg(key).spawn();
    let id: i32 = p.expect("created").parse().unwrap();
    let _guard = RemoveGuard(Some(id));
    p.kill();
    assert!(exists(id), "a killed creator leaves its queue");
    let b = SysvMsgQueue::builder(MsgKey::Key(key)).create_mode(CreateMode::Open);
    let q = b.remove_on_drop(true).open().unwrap();
    let mut buf = [0u8; 32];
    assert_eq!(q.try_recv(MsgType::Any, &mut buf).unwrap(), (4, 11));
    assert_eq!(&buf[..11], b"left behind");
    drop(q);
    assert!(!exists(id));
}

#[test]
fn nobody_is_denied_an_owner_only_queue() {
    let key = unique_key();
    let owner_only = SysvMsgQueue::builder(MsgKey::Key(key)).open().unwrap();
    let everyone = Permissions::from_mode(0o666).unwrap();
    let shared = SysvMsgQueue::builder(MsgKey::Private).permissions(everyone).open().unwrap();
    let mut p =
        peer("intruder").arg(key).arg(owner_only.id()).arg(shared.id()).uid(NOBODY_UID).spawn();
    assert_eq!(p.expect("result"), "true true true", "by key, by id, remove by non-owner");
    p.wait_success();
    let mut buf = [0u8; 16];
    assert_eq!(shared.try_recv(MsgType::Exactly(9), &mut buf).unwrap(), (9, 11));
}

#[test]
fn modes_are_exact_whatever_the_umask() {
    let mut p = peer("umask").spawn();
    let modes = p.expect("modes");
    p.wait_success();
    let mut got = Vec::new();
    for item in modes.split(' ') {
        let (mode, id) = item.split_once(':').unwrap();
        assert!(!exists(id.parse().unwrap()), "the child's queues are removed on drop");
        got.push(mode.to_owned());
    }
    assert_eq!(got, ["640", "660", "600"]);
}
