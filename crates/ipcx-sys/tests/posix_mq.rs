//! POSIX message queues across real processes: priority order, timeouts, limits, cleanup,
//! peer death, permissions and exact modes.

use std::thread;
use std::time::{Duration, Instant};

use ipcx_sys::posix_mq::{self, OpenError, PosixMq, RecvError, SendError, UnlinkError, PRIO_MAX};
use ipcx_sys::{CreateMode, Permissions};
use ipcx_testkit::{peer, read_command, signal, unique_name, NOBODY_UID};
use rustix::process::{getrlimit, setrlimit, umask, Resource, Rlimit};

ipcx_testkit::peer_entry!(peer_main);

const LONG: Duration = Duration::from_secs(10);

fn peer_main(role: &str, args: &[String]) {
    match role {
        "sender" => {
            let q = open_existing(&args[0]);
            for (msg, prio) in [("low", 1), ("high", 5), ("mid", 3)] {
                q.send(msg.as_bytes(), prio).unwrap();
            }
            signal("sent", "");
            read_command(); // the parent drained our messages
            let mut buf = [0u8; 64];
            let (n, prio) = q.recv_timeout(&mut buf, LONG).unwrap();
            signal("got", &format!("{prio} {}", String::from_utf8_lossy(&buf[..n])));
        }
        "holder" => {
            let q = open_existing(&args[0]);
            q.send(b"before death", 0).unwrap();
            signal("ready", "");
            read_command(); // blocks until the parent kills us
        }
        "creator" => {
            let q = PosixMq::builder(&args[0]).create_mode(CreateMode::CreateExclusive);
            let q = q.capacity(2, 32).open().unwrap();
            q.send(b"left behind", 0).unwrap();
            signal("created", "");
            read_command(); // killed here, so the queue is never unlinked
        }
        "intruder" => {
            let denied = PosixMq::builder(&args[0]).create_mode(CreateMode::Open).open();
            let denied = matches!(denied, Err(OpenError::PermissionDenied(_)));
            let open = PosixMq::builder(&args[1]).create_mode(CreateMode::Open).open().unwrap();
            open.send(b"from nobody", 0).unwrap();
            let unlink =
                matches!(posix_mq::unlink(&args[1]), Err(UnlinkError::PermissionDenied(_)));
            signal("result", &format!("{denied} {unlink}"));
        }
        "unprivileged" => {
            let msg_max = proc_limit("msg_max");
            let r = PosixMq::builder(&args[0]).capacity(msg_max + 1, 16).open();
            let Err(e @ OpenError::MaxMsgOverLimit { .. }) = r else { panic!("{r:?}") };
            signal("maxmsg", &e.to_string());
            let msgsize_max = proc_limit("msgsize_max");
            let r = PosixMq::builder(&args[0]).capacity(1, msgsize_max + 1).open();
            let Err(e @ OpenError::MsgSizeOverLimit { .. }) = r else { panic!("{r:?}") };
            signal("msgsize", &e.to_string());
        }
        "rlimit" => {
            let hard = getrlimit(Resource::Msgqueue).maximum;
            setrlimit(Resource::Msgqueue, Rlimit { current: Some(0), maximum: hard }).unwrap();
            let r = PosixMq::builder(&args[0]).capacity(2, 64).open();
            let Err(e @ OpenError::MemoryLimit { .. }) = r else { panic!("{r:?}") };
            signal("error", &e.to_string());
        }
        "umask" => {
            let mut modes = Vec::new();
            for (name, mask, perms) in [(&args[0], 0o000, 0o640), (&args[1], 0o077, 0o660)] {
                umask(rustix::fs::Mode::from_raw_mode(mask));
                let p = Permissions::from_mode(perms).unwrap();
                let q = PosixMq::builder(name).permissions(p).capacity(1, 8).open().unwrap();
                modes.push(format!("{:o}", rustix::fs::fstat(&q).unwrap().st_mode & 0o777));
            }
            umask(rustix::fs::Mode::from_raw_mode(0));
            let q = PosixMq::builder(&args[2]).capacity(1, 8).open().unwrap();
            modes.push(format!("{:o}", rustix::fs::fstat(&q).unwrap().st_mode & 0o777));
            signal("modes", &modes.join(" "));
        }
        other => panic!("unknown role {other}"),
    }
}

fn proc_limit(file: &str) -> usize {
    let text = std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{file}")).unwrap();
    text.trim().parse().unwrap()
}

fn create(name: &str, maxmsg: usize, msgsize: usize) -> PosixMq {
    let b = PosixMq::builder(name).create_mode(CreateMode::CreateExclusive);
    b.capacity(maxmsg, msgsize).open().unwrap()
}

fn open_existing(name: &str) -> PosixMq {
    PosixMq::builder(name).create_mode(CreateMode::Open).open().unwrap()
}

fn gone(name: &str) -> bool {
    let r = PosixMq::builder(name).create_mode(CreateMode::Open).open();
    matches!(r, Err(OpenError::NotFound(_)))
}

/// Unlinks a queue some other process created, even if the test fails midway.
struct UnlinkGuard<'a>(&'a str);

impl Drop for UnlinkGuard<'_> {
    fn drop(&mut self) {
        posix_mq::unlink(self.0).ok();
    }
}

#[test]
fn priority_order_round_trip_between_processes() {
    let name = unique_name("mq");
    let q = create(&name, 4, 64);
    let mut p = peer("sender").arg(&name).spawn();
    p.expect("sent");
    let mut buf = [0u8; 64];
    for (want, want_prio) in [("high", 5), ("mid", 3), ("low", 1)] {
        let (n, prio) = q.recv_timeout(&mut buf, LONG).unwrap();
        assert_eq!((&buf[..n], prio), (want.as_bytes(), want_prio));
    }
    p.send("drained");
    q.send(b"reply", 7).unwrap();
    assert_eq!(p.expect("got"), "7 reply");
    p.wait_success();
    drop(q);
    assert!(gone(&name));
}

#[test]
fn timeouts_and_nonblocking_full_and_empty() {
    let name = unique_name("mq");
    let q = create(&name, 2, 16);
    let nb =
        PosixMq::builder(&name).create_mode(CreateMode::Open).nonblocking(true).open().unwrap();
    assert!(nb.attributes().unwrap().nonblocking);
    let mut buf = [0u8; 16];
    let t = Duration::from_millis(50);
    for h in [&q, &nb] {
        assert!(matches!(h.try_recv(&mut buf), Err(RecvError::Empty)));
        let start = Instant::now();
        assert!(matches!(h.recv_timeout(&mut buf, t), Err(RecvError::Timeout)));
        assert!(start.elapsed() >= t);
    }
    q.try_send(b"1", 0).unwrap();
    nb.try_send(b"2", 0).unwrap();
    assert_eq!(q.attributes().unwrap().curmsgs, 2);
    for h in [&q, &nb] {
        assert!(matches!(h.try_send(b"3", 0), Err(SendError::Full)));
        let start = Instant::now();
        assert!(matches!(h.send_timeout(b"3", 0, t), Err(SendError::Timeout)));
        assert!(start.elapsed() >= t);
    }
    assert_eq!(nb.recv(&mut buf).unwrap(), (1, 0));
    assert_eq!(&buf[..1], b"1");
}

#[test]
fn oversize_messages_and_small_buffers_are_refused() {
    let name = unique_name("mq");
    let q = create(&name, 2, 32);
    let e = q.send(&[7u8; 33], 0).unwrap_err();
    assert!(matches!(e, SendError::TooLarge { len: 33, msgsize: 32 }), "{e:?}");
    assert!(e.to_string().contains("msgsize (32)"), "{e}");
    q.send(&[7u8; 32], 0).unwrap();
    let mut small = [0u8; 31];
    let e = q.recv(&mut small).unwrap_err();
    assert!(matches!(e, RecvError::BufferTooSmall { len: 31, msgsize: 32 }), "{e:?}");
    assert_eq!(q.attributes().unwrap().curmsgs, 1, "refused receive must not dequeue");
    let mut buf = [0u8; 32];
    assert_eq!(q.try_recv(&mut buf).unwrap(), (32, 0));
}

#[test]
fn bad_arguments_are_refused() {
    let name = unique_name("mq");
    for (maxmsg, msgsize) in [(0, 8), (8, 0)] {
        let r = PosixMq::builder(&name).capacity(maxmsg, msgsize).open();
        assert!(matches!(r, Err(OpenError::ZeroCapacity)), "{r:?}");
    }
    for bad in ["", "a/b", ".."] {
        assert!(matches!(PosixMq::builder(bad).open(), Err(OpenError::Name(_))));
        assert!(matches!(posix_mq::unlink(bad), Err(UnlinkError::Name(_))));
    }
    assert!(matches!(PosixMq::builder(&"x".repeat(300)).open(), Err(OpenError::Name(_))));
    assert!(gone(&name));
    assert!(matches!(posix_mq::unlink(&name), Err(UnlinkError::NotFound(_))));
    let q = create(&name, 1, 8);
    let again = PosixMq::builder(&name).create_mode(CreateMode::CreateExclusive).open();
    assert!(matches!(again, Err(OpenError::AlreadyExists(_))));
    let e = q.try_send(b"x", PRIO_MAX).unwrap_err();
    assert!(matches!(e, SendError::BadPriority { prio: PRIO_MAX }));
}

#[test]
fn unprivileged_limit_errors_name_the_sysctl() {
    let name = unique_name("mq");
    let _guard = UnlinkGuard(&name);
    let mut p = peer("unprivileged").arg(&name).uid(NOBODY_UID).spawn();
    let msg_max = proc_limit("msg_max");
    let text = p.expect("maxmsg");
    let want =
        format!("/proc/sys/fs/mqueue/msg_max ({msg_max}); raise it or ask for at most {msg_max}");
    assert!(text.contains(&want), "{text}");
    let text = p.expect("msgsize");
    let want = format!("/proc/sys/fs/mqueue/msgsize_max ({})", proc_limit("msgsize_max"));
    assert!(text.contains(&want), "{text}");
    p.wait_success();
    assert!(gone(&name));
}

#[test]
fn exhausted_rlimit_msgqueue_is_explained() {
    let name = unique_name("mq");
    let _guard = UnlinkGuard(&name);
    let mut p = peer("rlimit").arg(&name).spawn();
    let text = p.expect("error");
    assert!(text.contains("RLIMIT_MSGQUEUE (0 bytes)") && text.contains("ulimit -q"), "{text}");
    p.wait_success();
    assert!(gone(&name));
}

#[test]
fn creator_unlinks_on_drop_opener_does_not_and_remove_is_explicit() {
    let name = unique_name("mq");
    let q = create(&name, 2, 8);
    drop(open_existing(&name));
    assert!(!gone(&name), "an opener must not unlink");
    drop(q);
    assert!(gone(&name), "the creator unlinks on drop");

    let mut q = create(&name, 2, 8);
    q.remove().unwrap();
    assert!(gone(&name));
    q.send(b"still", 0).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(q.recv(&mut buf).unwrap(), (5, 0), "an unlinked queue stays usable");
    drop(q);

    let kept = PosixMq::builder(&name).capacity(1, 8).remove_on_drop(false).open().unwrap();
    drop(kept);
    assert!(!gone(&name));
    posix_mq::unlink(&name).unwrap();
    assert!(gone(&name));
}

#[test]
fn queue_of_a_killed_creator_is_reclaimed_with_unlink() {
    let name = unique_name("mq");
    let _guard = UnlinkGuard(&name);
    let mut p = peer("creator").arg(&name).spawn();
    p.expect("created");
    p.kill();
    let q = open_existing(&name);
    let mut buf = [0u8; 32];
    let (n, _) = q.try_recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"left behind");
    posix_mq::unlink(&name).unwrap();
    assert!(gone(&name));
}

#[test]
fn receiver_waiting_on_a_killed_peer_times_out_cleanly() {
    let name = unique_name("mq");
    let q = create(&name, 2, 16);
    let mut p = peer("holder").arg(&name).spawn();
    p.expect("ready");
    let killer = thread::spawn(move || p.kill());
    let mut buf = [0u8; 16];
    let (n, _) = q.recv_timeout(&mut buf, LONG).unwrap();
    assert_eq!(&buf[..n], b"before death");
    let t = Duration::from_millis(100);
    assert!(matches!(q.recv_timeout(&mut buf, t), Err(RecvError::Timeout)));
    killer.join().unwrap();
    q.try_send(b"alive", 0).unwrap();
    assert_eq!(q.try_recv(&mut buf).unwrap(), (5, 0));
}

#[test]
fn nobody_is_denied_an_owner_only_queue() {
    let private = unique_name("mq");
    let shared = unique_name("mq");
    let _private = create(&private, 1, 8);
    let everyone = Permissions::from_mode(0o666).unwrap();
    let b = PosixMq::builder(&shared).create_mode(CreateMode::CreateExclusive);
    let shared_q = b.permissions(everyone).capacity(1, 16).open().unwrap();
    let mut p = peer("intruder").arg(&private).arg(&shared).uid(NOBODY_UID).spawn();
    assert_eq!(p.expect("result"), "true true", "denied on 0600, cannot unlink root's queue");
    p.wait_success();
    let mut buf = [0u8; 16];
    let (n, _) = shared_q.try_recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"from nobody");
}

#[test]
fn modes_are_exact_whatever_the_umask() {
    let names = [unique_name("mq"), unique_name("mq"), unique_name("mq")];
    let mut p = peer("umask").arg(&names[0]).arg(&names[1]).arg(&names[2]).spawn();
    assert_eq!(p.expect("modes"), "640 660 600");
    p.wait_success();
    assert!(names.iter().all(|n| gone(n)));
}
