//! Publish/subscribe across real processes: fan-out without loss under Block, Lagged
//! accounting under DropOldest, several publishers, late joiners, a SIGKILLed subscriber
//! that does not block its publisher, late joiners with history, a SIGKILLed publisher whose messages are still read
//! and whose objects `clean` removes. Every test uses its own namespace and leaves nothing
//! in /dev/shm or the runtime directory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ipcx::cleanup::clean;
use ipcx::node::Node;
use ipcx::pubsub::{
    CreateError, Policy, PubSubConfig, Publisher, RecvError, SendError, Subscriber,
};
use ipcx::Namespace;
use ipcx_testkit::{leftovers, peer, read_command, signal, unique_name};
use serde::{Deserialize, Serialize};

ipcx_testkit::peer_entry!(peer_main);

/// A sequenced, checksummed message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Tick {
    from: String,
    seq: u64,
    data: Vec<u8>,
    crc: u32,
}
ipcx::message!(Tick, "test.tick", 1, 0);

impl Tick {
    fn new(from: &str, seq: u64) -> Tick {
        let len = 16 + (seq % 97) as usize;
        let data: Vec<u8> =
            (0..len).map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8)).collect();
        Tick { from: from.to_owned(), seq, crc: crc32fast::hash(&data), data }
    }

    fn check(&self) {
        assert_eq!(crc32fast::hash(&self.data), self.crc, "corrupt message {}", self.seq);
        assert_eq!(*self, Tick::new(&self.from, self.seq), "wrong contents");
    }
}

const SVC: &str = "ticks";
const RECV: Duration = Duration::from_secs(10);

fn peer_main(role: &str, args: &[String]) {
    let ns = Namespace::new(&args[0]).unwrap();
    match role {
        // Reads until the last message; every one in order (Block) or in increasing order
        // with the gaps reported as Lagged (DropOldest). Reports "received lagged".
        "sub" => {
            let total: u64 = args[1].parse().unwrap();
            // "exact": every message in order; "any": in increasing order; "slow": the same,
            // pausing 1 ms every 50 messages.
            let (exact, slow) = (args[2] == "exact", args[2] == "slow");
            let mut sub = Subscriber::<Tick>::open(&ns, SVC).unwrap();
            assert_eq!(sub.publisher_count(), 1);
            signal("ready", "");
            let (mut received, mut lagged, mut next) = (0u64, 0u64, 0u64);
            loop {
                match sub.recv_timeout(RECV) {
                    Ok(t) => {
                        t.check();
                        assert!(t.seq >= next, "out of order: {} after {}", t.seq, next);
                        if exact {
                            assert_eq!(t.seq, next, "lost a message");
                        }
                        received += 1;
                        next = t.seq + 1;
                        if slow && received % 50 == 0 {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        if t.seq == total - 1 {
                            break;
                        }
                    }
                    Err(RecvError::Lagged { missed, .. }) if !exact => lagged += missed,
                    Err(e) => panic!("recv: {e}"),
                }
            }
            signal("done", &format!("{received} {lagged}"));
        }
        // Never reads; lives until killed.
        "idle-sub" => {
            let _sub = Subscriber::<Tick>::open(&ns, SVC).unwrap();
            signal("ready", "");
            while read_command().is_some() {}
        }
        // Publishes `n` messages once a subscriber is attached and "go" arrives; lives until
        // stdin closes.
        "publisher" => {
            let label = &args[1];
            let n: u64 = args[2].parse().unwrap();
            let node = Node::builder().namespace(ns.clone()).name(label).create().unwrap();
            let mut publisher =
                Publisher::<Tick>::create(&node, SVC, PubSubConfig::default()).unwrap();
            signal("ready", "");
            assert!(publisher.wait_for_subscribers(1, RECV));
            if args.get(3).map(String::as_str) != Some("now") {
                assert_eq!(read_command().as_deref(), Some("go"));
            }
            for seq in 0..n {
                publisher.send(Tick::new(label, seq)).unwrap();
            }
            signal("sent", "");
            while read_command().is_some() {}
            drop((publisher, node));
        }
        // Keeps a history of args[1] messages, sends args[2] at once, then "more N" sends N
        // more; lives until stdin closes.
        "history-publisher" => {
            let history: u32 = args[1].parse().unwrap();
            let node = Node::builder().namespace(ns.clone()).name("hist").create().unwrap();
            let config = PubSubConfig { history, ..Default::default() };
            let mut publisher = Publisher::<Tick>::create(&node, SVC, config).unwrap();
            let mut seq = 0;
            let mut n: u64 = args[2].parse().unwrap();
            loop {
                for _ in 0..n {
                    publisher.send(Tick::new("hist", seq)).unwrap();
                    seq += 1;
                }
                signal("sent", "");
                match read_command() {
                    Some(cmd) => n = cmd.strip_prefix("more ").unwrap().parse().unwrap(),
                    None => break,
                }
            }
            drop((publisher, node));
        }
        _ => panic!("unknown role {role}"),
    }
}

/// A fresh namespace whose directory and shm objects are checked and removed at the end.
struct Ns(Namespace);

impl Ns {
    fn new(tag: &str) -> Ns {
        Ns(Namespace::new(&unique_name(tag)).unwrap())
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = clean(&self.0, false);
        let left = leftovers(self.0.name());
        for name in &left {
            let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
        }
        let _ = std::fs::remove_dir_all(self.0.dir());
        if !std::thread::panicking() {
            assert!(left.is_empty(), "left in /dev/shm: {left:?}");
        }
    }
}

fn fan_out(policy: Policy, subs: &[&str], total: u64) -> Vec<(u64, u64)> {
    let ns = Ns::new("ps");
    let node = Node::builder().namespace(ns.0.clone()).create().unwrap();
    let config = PubSubConfig { policy, capacity: 32, max_message: 256, ..Default::default() };
    let mut publisher = Publisher::<Tick>::create(&node, SVC, config).unwrap();
    let mut peers: Vec<_> =
        subs.iter().map(|mode| peer("sub").arg(ns.0.name()).arg(total).arg(mode).spawn()).collect();
    for p in &mut peers {
        p.expect("ready");
    }
    assert_eq!(publisher.subscriber_count(), subs.len());
    for seq in 0..total {
        publisher.send(Tick::new("p", seq)).unwrap();
    }
    let results = peers
        .iter_mut()
        .map(|p| {
            let done = p.expect("done");
            p.wait_success();
            let (r, l) = done.split_once(' ').unwrap();
            (r.parse().unwrap(), l.parse().unwrap())
        })
        .collect();
    drop((publisher, node));
    results
}

#[test]
fn block_fans_out_to_three_subscribers_without_loss() {
    let results = fan_out(Policy::Block, &["exact", "exact", "exact"], 10_000);
    assert_eq!(results, vec![(10_000, 0); 3]);
}

#[test]
fn drop_oldest_reports_what_a_slow_subscriber_missed() {
    let total = 10_000;
    let results = fan_out(Policy::DropOldest, &["any", "slow"], total);
    for (received, lagged) in &results {
        assert_eq!(received + lagged, total, "received {received} + lagged {lagged}");
    }
    assert!(results.iter().any(|(_, lagged)| *lagged > 0), "nobody lagged: {results:?}");
}

#[test]
fn one_subscriber_reads_two_publishers_in_order_and_sees_them_leave() {
    let ns = Ns::new("ps2");
    let n = 2_000u64;
    let mut a = peer("publisher").arg(ns.0.name()).arg("a").arg(n).spawn();
    a.expect("ready");
    let mut sub = Subscriber::<Tick>::open(&ns.0, SVC).unwrap();
    let mut b = peer("publisher").arg(ns.0.name()).arg("b").arg(n).spawn();
    b.expect("ready");
    sub.refresh();
    assert_eq!(sub.publisher_count(), 2);
    a.send("go");
    b.send("go");
    let mut next: HashMap<String, u64> = HashMap::new();
    for _ in 0..2 * n {
        let t = sub.recv_timeout(RECV).unwrap();
        t.check();
        let expected = next.entry(t.from.clone()).or_insert(0);
        assert_eq!(t.seq, *expected, "from {}", t.from);
        *expected += 1;
    }
    assert_eq!(next["a"], n);
    assert_eq!(next["b"], n);
    a.expect("sent");
    b.expect("sent");
    a.close_stdin();
    b.close_stdin();
    a.wait_success();
    b.wait_success();
    let mut gone = Vec::new();
    for _ in 0..2 {
        match sub.recv_timeout(RECV) {
            Err(RecvError::PublisherGone { publisher }) => gone.push(publisher),
            other => panic!("expected PublisherGone, got {other:?}"),
        }
    }
    assert_ne!(gone[0], gone[1]);
    assert!(matches!(sub.recv_timeout(Duration::from_millis(50)), Err(RecvError::Timeout)));
    assert_eq!(sub.publisher_count(), 0);
}

/// A publisher in another process keeps a history of 3: a subscriber that opens after
/// 10 messages first gets 7, 8, 9, then what follows; one opening later gets the last 3 of
/// everything. Publishers of the service must agree on the history.
#[test]
fn late_joiners_get_the_last_k_messages_of_a_publisher() {
    let ns = Ns::new("pshist");
    let mut p = peer("history-publisher").arg(ns.0.name()).arg("3").arg("10").spawn();
    p.expect("sent");
    let mut sub = Subscriber::<Tick>::open(&ns.0, SVC).unwrap();
    for seq in 7..10 {
        let t = sub.recv_timeout(RECV).unwrap();
        t.check();
        assert_eq!(t.seq, seq);
    }
    assert!(sub.try_recv().unwrap().is_none());
    p.send("more 6");
    p.expect("sent");
    for seq in 10..16 {
        assert_eq!(sub.recv_timeout(RECV).unwrap().seq, seq);
    }
    let mut later = Subscriber::<Tick>::open(&ns.0, SVC).unwrap();
    for seq in 13..16 {
        assert_eq!(later.recv_timeout(RECV).unwrap().seq, seq);
    }
    assert!(later.try_recv().unwrap().is_none());
    // Another publisher must keep the same history; too much is refused outright.
    let node = Node::builder().namespace(ns.0.clone()).create().unwrap();
    let other = PubSubConfig { history: 5, ..Default::default() };
    let err = Publisher::<Tick>::create(&node, SVC, other).unwrap_err();
    assert!(matches!(err, CreateError::History { ours: 5, .. }), "{err}");
    assert!(err.to_string().contains("history of 3"), "{err}");
    let huge = PubSubConfig { history: 65, ..Default::default() };
    let err = Publisher::<Tick>::create(&node, "other", huge).unwrap_err();
    assert!(matches!(err, CreateError::HistoryTooLarge { history: 65, max: 64 }), "{err}");
    p.close_stdin();
    p.wait_success();
    drop((sub, later, node));
}

#[test]
fn late_joiners_see_what_follows() {
    let ns = Ns::new("pslate");
    let node = Node::builder().namespace(ns.0.clone()).create().unwrap();
    let mut publisher = Publisher::<Tick>::create(&node, SVC, PubSubConfig::default()).unwrap();
    for seq in 0..5 {
        publisher.send(Tick::new("p", seq)).unwrap();
    }
    let mut late = Subscriber::<Tick>::open(&ns.0, SVC).unwrap();
    assert!(late.try_recv().unwrap().is_none());
    for seq in 5..10 {
        publisher.send(Tick::new("p", seq)).unwrap();
    }
    for seq in 5..10 {
        assert_eq!(late.recv_timeout(RECV).unwrap().seq, seq);
    }
    // Zero copy: the bytes in place decode to the message.
    publisher.send(Tick::new("p", 10)).unwrap();
    let seq = late.recv_in_place(|b| ipcx::decode::<Tick>(b).unwrap().seq).unwrap();
    assert_eq!(seq, 10);
    // A loan, written in place.
    let bytes = {
        let mut v = Vec::new();
        ipcx::encode(&Tick::new("p", 11), &mut v).unwrap();
        v
    };
    let mut loan = publisher.loan(bytes.len()).unwrap();
    loan.bytes().copy_from_slice(&bytes);
    loan.send();
    assert_eq!(late.recv_timeout(RECV).unwrap().seq, 11);
    assert!(matches!(late.try_recv(), Ok(None)));
    // Another contract is refused, naming both sides.
    let err = Subscriber::<String>::open(&ns.0, SVC).unwrap_err().to_string();
    assert!(err.contains("test.tick") && err.contains("ipcx.string"), "{err}");
    drop((late, publisher, node));
}

#[test]
fn fail_policy_hands_the_message_back() {
    let ns = Ns::new("psfail");
    let node = Node::builder().namespace(ns.0.clone()).create().unwrap();
    let config =
        PubSubConfig { policy: Policy::Fail, capacity: 4, max_message: 128, ..Default::default() };
    let mut publisher = Publisher::<Tick>::create(&node, SVC, config).unwrap();
    let mut sub = Subscriber::<Tick>::open(&ns.0, SVC).unwrap();
    let mut sent = 0;
    let back = loop {
        match publisher.send(Tick::new("p", sent)) {
            Ok(()) => sent += 1,
            Err(SendError::Full(msg)) => break msg,
            Err(e) => panic!("{e}"),
        }
        assert!(sent < 1000, "never full");
    };
    assert_eq!(back.seq, sent);
    assert!(sent >= 4);
    for seq in 0..sent {
        assert_eq!(sub.recv_timeout(RECV).unwrap().seq, seq);
    }
    publisher.send(back).unwrap();
    // A second publisher must use the service's policy.
    let block = PubSubConfig { policy: Policy::Block, ..Default::default() };
    let err = Publisher::<Tick>::create(&node, SVC, block).unwrap_err();
    assert!(matches!(err, CreateError::Policy { ours: Policy::Block, .. }), "{err}");
    assert!(err.to_string().contains("uses policy fail, we asked for block"), "{err}");
    let big = [0u8; 129];
    assert!(matches!(publisher.send_bytes(&big[..]), Err(SendError::TooLarge { len: 129, .. })));
    drop((sub, publisher, node));
}

#[test]
fn a_killed_subscriber_does_not_block_the_publisher() {
    let ns = Ns::new("pskill");
    let node = Node::builder().namespace(ns.0.clone()).create().unwrap();
    let config = PubSubConfig { capacity: 8, max_message: 256, ..Default::default() };
    let mut publisher = Publisher::<Tick>::create(&node, SVC, config).unwrap();
    let mut idle = peer("idle-sub").arg(ns.0.name()).spawn();
    idle.expect("ready");
    assert_eq!(publisher.subscriber_count(), 1);
    let mut seq = 0;
    let back = loop {
        match publisher.try_send(Tick::new("p", seq)) {
            Ok(()) => seq += 1,
            Err(SendError::Full(msg)) => break msg,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(matches!(
        publisher.send_timeout(back.clone(), Duration::from_millis(30)),
        Err(SendError::Full(_))
    ));
    idle.kill();
    let start = Instant::now();
    publisher.send_timeout(back, Duration::from_secs(5)).unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "blocked {took:?} after the subscriber died");
    assert_eq!(publisher.stats().reclaimed, 1);
    assert_eq!(publisher.subscriber_count(), 0);
    drop((publisher, node));
}

#[test]
fn a_killed_publishers_messages_are_read_then_it_is_gone_and_clean_removes_it() {
    let ns = Ns::new("pspk");
    let n = 100u64;
    let mut p = peer("publisher").arg(ns.0.name()).arg("k").arg(n).arg("now").spawn();
    p.expect("ready");
    let mut sub = Subscriber::<Tick>::open(&ns.0, SVC).unwrap();
    p.expect("sent");
    p.kill();
    for seq in 0..n {
        assert_eq!(sub.recv_timeout(RECV).unwrap().seq, seq);
    }
    let start = Instant::now();
    match sub.recv_timeout(RECV) {
        Err(RecvError::PublisherGone { .. }) => {}
        other => panic!("expected PublisherGone, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(1), "noticed after {:?}", start.elapsed());
    assert!(!leftovers(ns.0.name()).is_empty(), "the dead publisher's shm is still there");
    let report = clean(&ns.0, false).unwrap();
    assert_eq!(report.nodes.len(), 1);
    assert!(leftovers(ns.0.name()).is_empty(), "{:?}", leftovers(ns.0.name()));
    assert!(matches!(sub.recv_timeout(Duration::from_millis(50)), Err(RecvError::Timeout)));
}
