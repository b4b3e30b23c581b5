//! Cross-process tests of the queue transports (`posix-mq`, `sysv-msg`): order, size
//! limits, the peer's death, and that no kernel object outlives the connection.

use std::time::{Duration, Instant};

use ipcx::channel::{Channel, RecvError, SendError, Transport};
use ipcx::Namespace;
use ipcx_sys::posix_mq::{OpenError, PosixMq};
use ipcx_sys::CreateMode;
use ipcx_testkit::{peer, read_command, signal, sysv_id_exists, Peer, SysvKind};

mod common;

use common::Ns;

ipcx_testkit::peer_entry!(peer_main);

const COUNT: usize = 2_000;
const WAIT: Duration = Duration::from_secs(10);
/// Messages of the `trickle` peer.
const TRICKLE: usize = 400;

/// Message `i` of the ordered round trip: its number, then a length that varies.
fn numbered(i: usize, max: usize) -> Vec<u8> {
    let mut m = (i as u32).to_le_bytes().to_vec();
    m.resize(4 + (i * 37) % (max - 4), i as u8);
    m
}

fn check_numbered(m: &[u8], i: usize, max: usize) {
    assert_eq!(m, numbered(i, max), "message {i} out of order or damaged");
}

/// Peer processes: args are the namespace and the transport.
fn peer_main(role: &str, args: &[String]) {
    let ns = Namespace::new(&args[0]).unwrap();
    let t: Transport = args[1].parse().unwrap();
    if role == "listener" {
        // Accepts one connection and keeps it, unread, until killed.
        let mut l = Channel::builder("q", t).namespace(ns).listen().unwrap();
        signal("listening", "");
        let _c = l.accept_timeout(WAIT).unwrap();
        signal("accepted", "");
        read_command();
        return;
    }
    let mut c = Channel::builder("q", t).namespace(ns).connect_timeout(WAIT).unwrap();
    let max = c.max_message();
    match role {
        "sequence" => {
            for i in 0..COUNT {
                c.send(&numbered(i, max)).unwrap();
            }
            for i in 0..COUNT {
                check_numbered(&c.recv_timeout(WAIT).unwrap(), i, max);
            }
            signal("done", "");
            read_command();
        }
        "echo" => {
            let m = c.recv_timeout(WAIT).unwrap();
            c.send(&m).unwrap();
            read_command();
        }
        "trickle" => {
            // Irregular gaps, so that the other side's short timed receives both time out
            // and race their deadlines with arriving messages.
            for i in 0..TRICKLE {
                c.send(&numbered(i, max)).unwrap();
                if i % 7 == 0 {
                    std::thread::sleep(Duration::from_micros(300 + (i as u64 * 131) % 900));
                }
            }
            signal("sent", "");
            read_command();
        }
        "victim" => {
            for i in 0..3 {
                c.send(&numbered(i, max)).unwrap();
            }
            signal("sent", "");
            read_command();
        }
        _ => panic!("unknown role {role}"),
    }
}

/// Our end of a connection to a peer of `role`.
fn connected(ns: &Ns, t: Transport, role: &str) -> (Channel, Peer) {
    let mut listener = Channel::builder("q", t).namespace(ns.0.clone()).listen().unwrap();
    let p = peer(role).arg(ns.0.name()).arg(t.name()).spawn();
    let ch = listener.accept_timeout(WAIT).unwrap();
    (ch, p)
}

/// The kernel objects of a live connection, found before it ends so that their absence can
/// be checked after: the POSIX queues we have open whose names belong to `ns` (read from
/// `/proc/self/fd`, since `/dev/mqueue` may not be mounted), and the System V queues the
/// peer process used last (from `/proc/sysvipc/msg`).
struct Objects {
    mq_names: Vec<String>,
    sysv_ids: Vec<i32>,
}

impl Objects {
    fn find(ns: &Ns, peer_pid: u32) -> Objects {
        let prefix = format!("/{}", ns.0.object_name(""));
        let mq_names = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|l| {
                let l = l.to_string_lossy().into_owned();
                let name = l.strip_prefix('/')?.split(' ').next()?.to_owned();
                l.starts_with(&prefix).then_some(name)
            })
            .collect();
        let text = std::fs::read_to_string("/proc/sysvipc/msg").unwrap_or_default();
        let sysv_ids = text
            .lines()
            .skip(1)
            .filter_map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let (id, lspid, lrpid) = (cols.get(1)?, cols.get(5)?, cols.get(6)?);
                let pid = peer_pid.to_string();
                (*lspid == pid || *lrpid == pid).then(|| id.parse().ok()).flatten()
            })
            .collect();
        Objects { mq_names, sysv_ids }
    }

    /// Checks that the transport's objects were found at all.
    fn check_found(&self, t: Transport) {
        match t {
            Transport::PosixMq => assert_eq!(self.mq_names.len(), 2, "{:?}", self.mq_names),
            Transport::SysvMsg => assert_eq!(self.sysv_ids.len(), 1, "{:?}", self.sysv_ids),
            _ => {}
        }
    }

    /// Panics if any of the objects still exists.
    fn check_gone(&self) {
        for name in &self.mq_names {
            let r = PosixMq::builder(name).create_mode(CreateMode::Open).open();
            assert!(matches!(r, Err(OpenError::NotFound(_))), "{name} left behind: {r:?}");
        }
        for &id in &self.sysv_ids {
            assert!(!sysv_id_exists(SysvKind::Msg, id), "System V queue {id} left behind");
        }
    }
}

/// Waits until the System V queues are removed (a peer's removal may lag its exit by the
/// time our watcher thread takes to notice).
fn wait_gone(objects: &Objects) {
    let until = Instant::now() + WAIT;
    while objects.sysv_ids.iter().any(|&id| sysv_id_exists(SysvKind::Msg, id)) {
        assert!(Instant::now() < until, "System V queue left behind: {:?}", objects.sysv_ids);
        std::thread::yield_now();
    }
    objects.check_gone();
}

fn ordered_round_trip(t: Transport) {
    let ns = Ns::new("cq-seq");
    let (mut ch, mut p) = connected(&ns, t, "sequence");
    let max = ch.max_message();
    check_numbered(&ch.recv_timeout(WAIT).unwrap(), 0, max);
    let objects = Objects::find(&ns, p.pid());
    objects.check_found(t);
    for i in 1..COUNT {
        check_numbered(&ch.recv_timeout(WAIT).unwrap(), i, max);
    }
    for i in 0..COUNT {
        ch.send_timeout(&numbered(i, max), WAIT).unwrap();
    }
    p.expect("done");
    p.send("bye");
    p.wait_success();
    assert!(matches!(ch.recv_timeout(WAIT), Err(RecvError::Closed)));
    drop(ch);
    wait_gone(&objects);
}

/// Oversize settings and messages are refused with the limit named; waits time out.
fn oversize_refused(t: Transport) {
    let ns = Ns::new("cq-big");
    let limit = match t {
        Transport::PosixMq => read_proc("/proc/sys/fs/mqueue/msgsize_max"),
        _ => read_proc("/proc/sys/kernel/msgmax").min(read_proc("/proc/sys/kernel/msgmnb")),
    } - 24;
    let asked = Channel::builder("q", t).namespace(ns.0.clone()).max_message(limit + 1).listen();
    let Err(e) = asked else { panic!("a max_message above the limit must be refused") };
    let why = chain(&e);
    assert!(why.contains(&format!("limit of {limit} bytes")), "{why}");
    let (mut ch, mut p) = connected(&ns, t, "echo");
    let max = ch.max_message();
    assert!(max <= limit);
    assert!(matches!(ch.try_recv(), Err(RecvError::Empty)));
    let quiet = ch.recv_timeout(Duration::from_millis(30));
    assert!(matches!(quiet, Err(RecvError::Timeout)), "{quiet:?}");
    let e = ch.send(&vec![1u8; max + 1]).unwrap_err();
    assert!(matches!(e, SendError::TooLarge { .. }), "{e:?}");
    assert!(e.to_string().contains(&max.to_string()), "{e}");
    ch.send(&vec![2u8; max]).unwrap();
    assert_eq!(ch.recv_timeout(WAIT).unwrap(), vec![2u8; max]);
    p.send("bye");
    p.wait_success();
}

/// An error and its sources, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

fn read_proc(path: &str) -> usize {
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

fn peer_killed_while_blocked(t: Transport) {
    let ns = Ns::new("cq-kill");
    let (mut ch, mut p) = connected(&ns, t, "victim");
    p.expect("sent");
    let objects = Objects::find(&ns, p.pid());
    objects.check_found(t);
    let killer = std::thread::spawn(move || {
        p.kill();
        Instant::now()
    });
    let max = ch.max_message();
    for i in 0..3 {
        check_numbered(&ch.recv().unwrap(), i, max);
    }
    let r = ch.recv();
    let killed_at = killer.join().unwrap();
    assert!(matches!(r, Err(RecvError::PeerGone)), "{r:?}");
    let late = killed_at.elapsed();
    assert!(late < Duration::from_secs(2), "PeerGone came {late:?} after the kill");
    drop(ch);
    wait_gone(&objects);
}

#[test]
fn posix_mq_ordered_round_trip() {
    ordered_round_trip(Transport::PosixMq);
}
#[test]
fn sysv_msg_ordered_round_trip() {
    ordered_round_trip(Transport::SysvMsg);
}
#[test]
fn posix_mq_oversize_refused() {
    oversize_refused(Transport::PosixMq);
}
#[test]
fn sysv_msg_oversize_refused() {
    oversize_refused(Transport::SysvMsg);
}
#[test]
fn posix_mq_peer_killed_while_blocked() {
    peer_killed_while_blocked(Transport::PosixMq);
}
#[test]
fn sysv_msg_peer_killed_while_blocked() {
    peer_killed_while_blocked(Transport::SysvMsg);
}

/// Both ends of a sysv-msg channel SIGKILLed with messages still queued: nobody is left to
/// remove the queue, so `clean` must (the listener recorded it in the namespace directory).
#[test]
fn sysv_msg_queue_of_two_killed_ends_is_cleaned() {
    let ns = Ns::new("cq-both");
    let mut listener = peer("listener").arg(ns.0.name()).arg("sysv-msg").spawn();
    listener.expect("listening");
    let mut victim = peer("victim").arg(ns.0.name()).arg("sysv-msg").spawn();
    listener.expect("accepted");
    victim.expect("sent");
    let record = std::fs::read_dir(ns.0.dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.starts_with(".sysv-msg."))
        .expect("the listener recorded its queue");
    let id: i32 = record.trim_start_matches(".sysv-msg.").parse().unwrap();
    victim.kill();
    listener.kill();
    assert!(sysv_id_exists(SysvKind::Msg, id), "the queue outlived both ends");
    let report = ipcx::cleanup::clean(&ns.0, false).unwrap();
    assert_eq!(report.sysv_queues, vec![id]);
    assert!(!sysv_id_exists(SysvKind::Msg, id), "clean removed the queue");
    assert!(!ns.0.dir().join(&record).exists(), "and its record");
}

/// Receives with timeouts shorter than the peer's gaps: the watcher wakes each timed-out
/// receive with a marker, some of them racing a message; none of that may lose, reorder or
/// invent a message, and the peer's death still ends the stream with `PeerGone` after its
/// last message.
#[test]
fn sysv_msg_timed_receives_lose_nothing_and_end_with_peer_gone() {
    let ns = Ns::new("cq-timed");
    let (mut ch, mut p) = connected(&ns, Transport::SysvMsg, "trickle");
    let objects = Objects::find(&ns, p.pid());
    let max = ch.max_message();
    let (mut next, mut timeouts) = (0, 0);
    let until = Instant::now() + WAIT;
    while next < TRICKLE {
        assert!(Instant::now() < until, "only {next} of {TRICKLE} messages came");
        let t = Instant::now();
        match ch.recv_timeout(Duration::from_micros(200 + (next as u64 * 53) % 400)) {
            Ok(m) => {
                check_numbered(&m, next, max);
                next += 1;
            }
            Err(RecvError::Timeout) => {
                assert!(t.elapsed() >= Duration::from_micros(200), "timed out early");
                timeouts += 1;
            }
            Err(e) => panic!("message {next}: {e}"),
        }
    }
    assert!(timeouts > 0, "the receives never waited: the test proves nothing");
    p.expect("sent");
    p.kill();
    let killed = Instant::now();
    loop {
        match ch.recv_timeout(Duration::from_millis(1)) {
            Err(RecvError::Timeout) => assert!(killed.elapsed() < WAIT, "no PeerGone"),
            Err(RecvError::PeerGone) => break,
            r => panic!("after the last message: {r:?}"),
        }
    }
    drop(ch);
    wait_gone(&objects);
}
