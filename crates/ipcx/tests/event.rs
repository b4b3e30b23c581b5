//! Events across processes: notify/listen, a wait set of three listeners fed by three
//! notifier processes, timeouts, a SIGKILLed listener, hostile senders, permissions.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ipcx::event::{
    event_path, EventListener, EventNotifier, NotifyError, OpenError, WaitError, WaitSet,
};
use ipcx::sys::uds::{UdsAddr, UdsDatagram};
use ipcx::{Namespace, Node, Pattern, Service};
use ipcx_testkit::{peer, read_command, signal, NOBODY_UID};

mod common;

use common::Ns;

ipcx_testkit::peer_entry!(peer_main);

const LONG: Duration = Duration::from_secs(10);

fn peer_main(role: &str, args: &[String]) {
    let ns = Namespace::new(&args[0]).unwrap();
    let name = &args[1];
    match role {
        // Notifies ids FIRST..FIRST+COUNT.
        "notifier" => {
            let first: u64 = args[2].parse().unwrap();
            let count: u64 = args[3].parse().unwrap();
            let n = EventNotifier::open(&ns, name).unwrap();
            for id in (0..count).map(|i| first + i) {
                n.notify_timeout(id, LONG).unwrap();
            }
            signal("done", "");
        }
        // Listens until killed.
        "listener" => {
            let _l = EventListener::create(&ns, name).unwrap();
            signal("ready", "");
            read_command();
        }
        // Sends garbage around valid ids, by hand.
        "hostile" => {
            let sock = UdsDatagram::unbound().unwrap();
            let to = UdsAddr::path(event_path(&ns, name)).unwrap();
            sock.send_to(&[1, 2, 3], &to).unwrap();
            sock.send_to(&7u64.to_le_bytes(), &to).unwrap();
            sock.send_to(&[0xee; 100], &to).unwrap();
            sock.send_to(&8u64.to_le_bytes(), &to).unwrap();
            signal("sent", "");
            read_command();
            sock.send_to(&[], &to).unwrap();
            sock.send_to(&[5; 9], &to).unwrap();
            sock.send_to(&9u64.to_le_bytes(), &to).unwrap();
            signal("sent", "");
        }
        // Tries to open a notifier on the path (run as another uid).
        "intruder" => {
            let r = EventNotifier::open_path(&args[2]);
            signal("result", &format!("{:?}", r.map(|_| ())));
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn notify_and_listen_across_processes() {
    let ns = Ns::new("ev-rt");
    let node = Node::builder().namespace(ns.0.clone()).create().unwrap();
    let l = EventListener::create(&node, "tick").unwrap();
    let mode = std::fs::metadata(l.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let svc = Service::open(&ns.0, "tick").unwrap();
    assert_eq!(svc.descriptor().pattern, Pattern::Event);
    assert_eq!(svc.descriptor().transport, "uds-dgram");
    let mut p = peer("notifier").arg(ns.0.name()).arg("tick").arg(u64::MAX - 2).arg(3).spawn();
    p.expect("done");
    for id in [u64::MAX - 2, u64::MAX - 1, u64::MAX] {
        assert_eq!(l.wait().unwrap(), id);
    }
    assert_eq!(l.try_wait().unwrap(), None);
    p.wait_success();
    let mut p = peer("notifier").arg(ns.0.name()).arg("tick").arg(5).arg(2).spawn();
    assert_eq!(l.wait_timeout(LONG).unwrap(), Some(5));
    assert_eq!(l.wait_timeout(LONG).unwrap(), Some(6));
    p.wait_success();
    let path = l.path().to_owned();
    drop((svc, l));
    assert!(!path.exists(), "socket file removed on drop");
    assert!(Service::open(&ns.0, "tick").is_err(), "descriptor removed on drop");
    drop(node);
}

#[test]
fn wait_set_of_three_listeners_fed_by_three_processes() {
    let ns = Ns::new("ev-set");
    let names = ["a", "b", "c"];
    let listeners: Vec<_> =
        names.iter().map(|n| EventListener::create(&ns.0, n).unwrap()).collect();
    let mut set = WaitSet::new().unwrap();
    for (key, l) in listeners.iter().enumerate() {
        set.add(key as u64, l).unwrap();
    }
    assert!(set.add(0, &listeners[1]).is_err(), "duplicate key refused");
    let peers: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let first = (k as u64 + 1) * 1000;
            peer("notifier").arg(ns.0.name()).arg(n).arg(first).arg(200).spawn()
        })
        .collect();
    let mut got: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); 3];
    let deadline = Instant::now() + LONG;
    while got.iter().map(BTreeSet::len).sum::<usize>() < 600 {
        assert!(Instant::now() < deadline, "every id within 10 s; got {got:?}");
        for (key, ids) in set.wait(Some(Duration::from_secs(1))).unwrap() {
            got[key as usize].extend(ids);
        }
    }
    for (k, ids) in got.iter().enumerate() {
        let first = (k as u64 + 1) * 1000;
        assert_eq!(*ids, (first..first + 200).collect::<BTreeSet<_>>(), "listener {k}");
    }
    for mut p in peers {
        p.wait_success();
    }
    assert!(set.try_wait().unwrap().is_empty());
    assert!(set.remove(2) && !set.remove(2));
    assert_eq!(set.len(), 2);
}

#[test]
fn waits_time_out_within_bounds() {
    let ns = Ns::new("ev-timeout");
    let l = EventListener::create(&ns.0, "quiet").unwrap();
    let start = Instant::now();
    assert_eq!(l.wait_timeout(Duration::from_millis(100)).unwrap(), None);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(100) && took < Duration::from_secs(2), "{took:?}");
    assert_eq!(l.try_wait().unwrap(), None);
    let pipe = std::io::pipe().unwrap();
    let mut set = WaitSet::new().unwrap();
    set.add(1, &l).unwrap();
    set.add_fd(2, &pipe.0).unwrap();
    let start = Instant::now();
    assert!(set.wait(Some(Duration::from_millis(100))).unwrap().is_empty());
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(100) && took < Duration::from_secs(2), "{took:?}");
    // A plain fd is reported, with no ids, while readable.
    std::io::Write::write_all(&mut &pipe.1, b"x").unwrap();
    assert_eq!(set.wait(Some(LONG)).unwrap(), vec![(2, vec![])]);
    // Identical pending ids are merged by the set.
    let n = EventNotifier::open(&ns.0, "quiet").unwrap();
    for id in [4, 4, 5, 4] {
        n.try_notify(id).unwrap();
    }
    set.remove(2);
    assert_eq!(set.wait(Some(LONG)).unwrap(), vec![(1, vec![4, 5])]);
}

#[test]
fn killed_listener_makes_notify_fail_not_hang() {
    let ns = Ns::new("ev-kill");
    let mut p = peer("listener").arg(ns.0.name()).arg("gone").spawn();
    p.expect("ready");
    let n = EventNotifier::open(&ns.0, "gone").unwrap();
    n.notify(1).unwrap();
    // Fill the listener's queue (it never reads) so the next notify blocks.
    let mut queued = 1;
    while n.try_notify(queued).is_ok() {
        queued += 1;
        assert!(queued < 1_000_000, "the queue fills up");
    }
    assert!(matches!(n.try_notify(0), Err(NotifyError::Full)));
    let start = Instant::now();
    let blocked = thread::scope(|s| {
        let t = s.spawn(|| n.notify(2));
        // Not a synchronisation: the notify fails the same whether it blocked yet or not.
        thread::sleep(Duration::from_millis(50));
        p.kill();
        t.join().unwrap()
    });
    assert!(matches!(blocked, Err(NotifyError::NoListener { .. })), "{blocked:?}");
    assert!(matches!(n.notify(2), Err(NotifyError::NoListener { .. })));
    assert!(matches!(n.notify_timeout(2, LONG), Err(NotifyError::NoListener { .. })));
    assert!(start.elapsed() < Duration::from_secs(1), "failed at once");
    assert!(matches!(EventNotifier::open(&ns.0, "gone"), Err(OpenError::NoListener { .. })));
    // A new listener replaces the dead one's socket file; the old notifier reconnects.
    let l = EventListener::create(&ns.0, "gone").unwrap();
    n.notify(3).unwrap();
    assert_eq!(l.wait_timeout(LONG).unwrap(), Some(3));
}

#[test]
fn hostile_datagrams_are_typed_errors_and_the_listener_keeps_working() {
    let ns = Ns::new("ev-hostile");
    let l = EventListener::create(&ns.0, "target").unwrap();
    let mut p = peer("hostile").arg(ns.0.name()).arg("target").spawn();
    p.expect("sent");
    assert!(matches!(l.wait(), Err(WaitError::Malformed { len: 3, .. })));
    assert_eq!(l.wait().unwrap(), 7);
    assert!(matches!(l.wait_timeout(LONG), Err(WaitError::Malformed { len: 100, .. })));
    assert_eq!(l.try_wait().unwrap(), Some(8));
    assert_eq!(l.rejected(), 2);
    let mut set = WaitSet::new().unwrap();
    set.add(9, &l).unwrap();
    p.send("again");
    p.expect("sent");
    assert_eq!(set.wait(Some(LONG)).unwrap(), vec![(9, vec![9])]);
    assert_eq!(l.rejected(), 4);
    p.wait_success();
}

/// Counts the WARN events of the thread it is the default subscriber of.
struct WarnCount(Arc<AtomicUsize>);

impl tracing::Subscriber for WarnCount {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_flood_of_garbage_is_counted_in_full_but_logged_sparingly() {
    let ns = Ns::new("ev-flood");
    let l = EventListener::create(&ns.0, "target").unwrap();
    let sock = UdsDatagram::unbound().unwrap();
    let to = UdsAddr::path(event_path(&ns.0, "target")).unwrap();
    let warnings = Arc::new(AtomicUsize::new(0));
    tracing::subscriber::with_default(WarnCount(warnings.clone()), || {
        for i in 1..=100u32 {
            sock.send_to(&i.to_le_bytes(), &to).unwrap();
            // Unix datagram queues hold few datagrams (net.unix.max_dgram_qlen, 10 by
            // default): take them in before the sender would block.
            if i % 8 == 0 {
                assert_eq!(l.drain().unwrap(), Vec::<u64>::new());
            }
        }
        assert_eq!(l.drain().unwrap(), Vec::<u64>::new());
    });
    assert_eq!(l.rejected(), 100);
    // The 1st, 2nd, 4th, ..., 64th.
    assert_eq!(warnings.load(Ordering::Relaxed), 7);
    sock.send_to(&5u64.to_le_bytes(), &to).unwrap();
    assert_eq!(l.wait_timeout(LONG).unwrap(), Some(5), "the listener keeps working");
}

#[test]
fn foreign_uid_cannot_notify_a_0600_listener() {
    let ns = Ns::new("ev-perm");
    // Refused twice over: the runtime directories are 0700 and the socket file 0600.
    let l = EventListener::create(&ns.0, "private").unwrap();
    let path = l.path().to_string_lossy().into_owned();
    let mut p = peer("intruder").arg(ns.0.name()).arg("private").arg(&path).uid(NOBODY_UID).spawn();
    let result = p.expect("result");
    assert!(result.starts_with("Err(PermissionDenied"), "{result}");
    p.wait_success();
}
