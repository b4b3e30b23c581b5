//! The cases, written once: each takes the transport under test. The test process is one
//! end (usually the listener), a real peer process the other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use ipcx::channel::{AcceptError, Channel, Listener, RecvError, SendError, SendMode, Transport};
use ipcx::sys::Permissions;
use ipcx_testkit::{Peer, NOBODY_UID};

use super::peers::{other_contract, SHORT};
use super::support::{
    assert_waited, check_ordered, open_dir_to_others, ordered_message, random_seed, Scope, LONG,
};

/// How long a blocked operation may take to notice that the peer died.
const DEATH_NOTICE: Duration = Duration::from_secs(2);

/// Upper bound on messages queued while filling a channel (a bug must not loop forever).
const FILL_MAX: usize = 2_000_000;

/// Accepts the next peer, failing the test after [`LONG`].
fn accept(l: &mut Listener) -> Channel {
    l.accept_timeout(LONG).expect("accept")
}

/// Sends "ping" to a `commanded` peer and checks it arrived; then lets the peer exit.
fn ping_and_dismiss(c: &mut Channel, p: &mut Peer) {
    c.send_timeout(b"ping", LONG).expect("send ping");
    p.send("recv");
    assert_eq!(p.expect("got"), "ping");
    p.send("exit");
    p.wait_success();
}

/// Queues empty messages with `try_send` until the channel is full; returns how many.
fn fill(c: &mut Channel) -> usize {
    for n in 0..FILL_MAX {
        match c.try_send(b"") {
            Ok(()) => {}
            Err(SendError::Full) => return n,
            Err(e) => panic!("try_send on a filling channel: {e:?}"),
        }
    }
    panic!("the channel took {FILL_MAX} messages without reporting Full");
}

/// Runs `accept` on `l` in another thread (for cases where refused peers come first).
fn accept_in_background(mut l: Listener) -> thread::JoinHandle<(Listener, Channel)> {
    thread::spawn(move || {
        let c = l.accept_timeout(Duration::from_secs(60)).expect("accept");
        (l, c)
    })
}

/// Case 1: `count` messages of random lengths 0..=max_message, each way, arrive in order,
/// intact, exactly once.
pub fn ordering(t: Transport, count: u64) {
    let scope = Scope::new(t);
    let mut l = scope.listen();
    let seed = random_seed();
    let mut p = scope.peer("ordering", &[&seed.to_string(), &count.to_string()]);
    let mut c = accept(&mut l);
    let max = c.max_message();
    for seq in 0..count {
        let got = c.recv_timeout(LONG).expect("recv");
        check_ordered(seed, seq, max, &got);
    }
    for seq in 0..count {
        c.send_timeout(&ordered_message(seed ^ 1, seq, max), LONG).expect("send");
    }
    assert_eq!(p.expect("verified"), count.to_string());
    p.wait_success();
    assert!(matches!(c.recv_timeout(LONG), Err(RecvError::Closed)));
}

/// Case 2: empty and maximum-size messages pass; one byte more is refused with a message
/// naming the limit, and the channel still works.
pub fn limits(t: Transport) {
    let scope = Scope::new(t);
    let mut l = scope.listen();
    let mut p = scope.peer("limits", &[]);
    let mut c = accept(&mut l);
    let max = c.max_message();
    assert_eq!(c.recv_timeout(LONG).unwrap(), b"");
    assert_eq!(c.recv_timeout(LONG).unwrap(), vec![0xa5; max]);
    assert_eq!(c.recv_timeout(LONG).unwrap(), b"after");
    c.send(b"").unwrap();
    c.send(&vec![0x5a; max]).unwrap();
    let e = c.send(&vec![0; max + 1]).unwrap_err();
    match &e {
        SendError::TooLarge { len, max: m, .. } => assert_eq!((*len, *m), (max + 1, max)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(e.to_string().contains(&max.to_string()), "{e}");
    c.send(b"after2").unwrap();
    p.expect("done");
    p.wait_success();
}

/// Case 3a: receive timeouts and emptiness on a silent peer.
pub fn timeouts(t: Transport) {
    let scope = Scope::new(t);
    let mut l = scope.listen();
    let mut p = scope.peer("commanded", &[]);
    let mut c = accept(&mut l);
    p.expect("connected");
    let started = Instant::now();
    assert!(matches!(c.recv_timeout(SHORT), Err(RecvError::Timeout)));
    assert_waited("recv_timeout on a silent peer", started, SHORT);
    assert!(matches!(c.try_recv(), Err(RecvError::Empty)));
    ping_and_dismiss(&mut c, &mut p);
}

/// Case 3b: `try_send` on a channel the peer does not read ends with Full; `send_timeout`
/// on the full channel times out.
pub fn full_channel(t: Transport) {
    let scope = Scope::new(t);
    let mut l = scope.listen();
    let mut p = scope.peer("commanded", &[]);
    let mut c = accept(&mut l);
    p.expect("connected");
    let queued = fill(&mut c);
    assert!(queued > 0, "nothing fit in an empty channel");
    let started = Instant::now();
    let r = c.send_timeout(b"", SHORT);
    assert!(matches!(r, Err(SendError::Timeout)), "{r:?} after {queued} queued");
    assert_waited("send_timeout on a full channel", started, SHORT);
    p.send("exit");
    p.wait_success();
}

/// Case 4: a buffered send returns before the peer receives; an acknowledged one only after
/// the peer's receive took it, or with Timeout if it never does; a late acknowledgement of
/// a timed-out send does not break the channel.
pub fn acknowledged(t: Transport) {
    let scope = Scope::new(t);
    let mut l = scope.listen();
    let mut p = scope.peer("commanded", &[]);
    let mut c = accept(&mut l);
    p.expect("connected");

    // The peer sits in read_command: it cannot have received when this returns.
    c.send_with(b"buffered", SendMode::Buffered, Some(LONG)).expect("buffered send");
    p.send("recv");
    assert_eq!(p.expect("got"), "buffered");

    let commanded = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let flag = Arc::clone(&commanded);
    let sender = thread::spawn(move || {
        let r = c.send_with(b"acked", SendMode::Acknowledged, Some(LONG));
        let after_command = flag.load(Ordering::SeqCst);
        let _ = tx.send(());
        (c, r, after_command)
    });
    // Not a synchronisation: a bounded check that the send is still waiting.
    assert!(rx.recv_timeout(SHORT).is_err(), "acknowledged send returned before the peer read");
    commanded.store(true, Ordering::SeqCst);
    p.send("recv");
    assert_eq!(p.expect("got"), "acked");
    let (mut c, r, after_command) = sender.join().unwrap();
    r.expect("acknowledged send");
    assert!(after_command, "acknowledged send returned before the peer was told to read");

    let started = Instant::now();
    let r = c.send_with(b"never", SendMode::Acknowledged, Some(SHORT));
    assert!(matches!(r, Err(SendError::Timeout)), "{r:?}");
    assert_waited("unacknowledged send", started, SHORT);

    // The peer takes it late and acknowledges; the next acknowledged send skips that ack.
    p.send("recv");
    assert_eq!(p.expect("got"), "never");
    p.send("recv");
    c.send_with(b"again", SendMode::Acknowledged, Some(LONG)).expect("acked after a late ack");
    assert_eq!(p.expect("got"), "again");
    p.send("exit");
    p.wait_success();
}

/// Case 5a: the peer (here the listener) is SIGKILLed while we block in `recv`.
pub fn peer_killed_during_recv(t: Transport) {
    let scope = Scope::new(t);
    let mut p = scope.peer("listen", &[]);
    p.expect("listening");
    let mut c = scope.builder("svc").connect_timeout(LONG).expect("connect");
    p.expect("accepted");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let r = c.recv();
        let _ = tx.send((r, Instant::now()));
    });
    p.kill();
    let killed = Instant::now();
    let (r, ended) = rx.recv_timeout(LONG).expect("recv still blocked after the peer died");
    assert!(matches!(r, Err(RecvError::PeerGone | RecvError::Closed)), "{r:?}");
    let took = ended.saturating_duration_since(killed);
    assert!(took < DEATH_NOTICE, "recv noticed the death after {took:?}");
}

/// Case 5b: the peer is SIGKILLed while we block in `send` on a full channel.
pub fn peer_killed_during_send(t: Transport) {
    let scope = Scope::new(t);
    let mut l = scope.listen();
    let mut p = scope.peer("commanded", &[]);
    let mut c = accept(&mut l);
    p.expect("connected");
    fill(&mut c);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let r = c.send(b"blocked");
        let _ = tx.send((r, Instant::now()));
    });
    p.kill();
    let killed = Instant::now();
    let (r, ended) = rx.recv_timeout(LONG).expect("send still blocked after the peer died");
    assert!(matches!(r, Err(SendError::PeerGone)), "{r:?}");
    let took = ended.saturating_duration_since(killed);
    assert!(took < DEATH_NOTICE, "send noticed the death after {took:?}");
}

/// Case 6: a peer that closes after sending N messages: all N arrive, then Closed; and the
/// same the other way round.
pub fn clean_close(t: Transport) {
    const N: usize = 10;
    let scope = Scope::new(t);
    let mut l = scope.listen();
    let mut p = scope.peer("send-close", &[&N.to_string()]);
    let mut c = accept(&mut l);
    for i in 0..N {
        assert_eq!(c.recv_timeout(LONG).unwrap(), format!("m{i}").as_bytes());
    }
    let r = c.recv_timeout(LONG);
    assert!(matches!(r, Err(RecvError::Closed)), "{r:?}");
    p.expect("closed");
    p.wait_success();

    let mut p = scope.peer("commanded", &[]);
    let mut c = accept(&mut l);
    p.expect("connected");
    for i in 0..3 {
        c.send(format!("m{i}").as_bytes()).unwrap();
    }
    drop(c);
    for i in 0..3 {
        p.send("recv");
        assert_eq!(p.expect("got"), format!("m{i}"));
    }
    p.send("recv-closed");
    p.expect("closed");
    p.send("exit");
    p.wait_success();
}

/// Case 7a: garbage instead of a hello is refused and counted; the next good peer is
/// accepted. (On rendezvous transports this is their rendezvous socket.)
pub fn garbage_hello(t: Transport) {
    let scope = Scope::new(t);
    let mut l = scope.listen();
    let mut bad = scope.peer("raw", &["garbage"]);
    bad.expect("sent");
    let mut good = scope.peer("commanded", &[]);
    let mut c = accept(&mut l);
    assert_eq!(l.refused(), 1);
    good.expect("connected");
    ping_and_dismiss(&mut c, &mut good);
    bad.send("exit");
    bad.wait_success();
}

/// Case 7b (socket transports): after a good handshake, a frame with a bad header or out of
/// sequence breaks the channel: RecvError::Broken, no panic.
pub fn corrupt_frame(t: Transport) {
    let scope = Scope::new(t);
    let mut l = scope.listen();
    for how in ["magic", "seq"] {
        let mut p = scope.peer("raw", &[how]);
        let mut c = accept(&mut l);
        p.expect("sent");
        let r = c.recv_timeout(LONG);
        assert!(matches!(r, Err(RecvError::Broken(_))), "{how}: {r:?}");
        let r = c.send(b"more");
        assert!(matches!(r, Err(SendError::PeerGone | SendError::Broken(_))), "{how}: {r:?}");
        p.send("exit");
        p.wait_success();
    }
    assert_eq!(l.refused(), 0);
}

/// Case 8: a peer with another contract name, major version or fingerprint is refused with
/// a message naming both contracts; the listener counts it and keeps accepting.
pub fn contract_mismatch(t: Transport) {
    let scope = Scope::new(t);
    let accepting = accept_in_background(scope.listen());
    let ours = ipcx::channel::raw_contract();
    for what in ["name", "major", "fingerprint"] {
        let mut p = scope.peer("contract", &[what]);
        let msg = p.expect("refused");
        let theirs = other_contract(what);
        for side in [&ours, &theirs] {
            assert!(msg.contains(&side.to_string()), "{what}: {msg:?} does not name {side}");
        }
        p.wait_success();
    }
    let mut good = scope.peer("commanded", &[]);
    let (l, mut c) = accepting.join().expect("accepting thread");
    assert_eq!(l.refused(), 3);
    good.expect("connected");
    ping_and_dismiss(&mut c, &mut good);
}

/// Case 9: a listener admitting only our uid refuses a peer running as `nobody` (which can
/// reach the socket: mode 0666 in a traversable directory) and then accepts ours. On `tcp`,
/// which has no peer credentials, an allow-list refuses everyone (fails closed).
pub fn allow_list(t: Transport) {
    let scope = Scope::new(t);
    let me = ipcx::sys::process::current_uid();
    let mode = Permissions::from_mode(0o666).unwrap();
    let mut l = scope.builder("svc").allow_uid(me).permissions(mode).listen().expect("listen");
    if t == Transport::Tcp {
        let mut p = scope.peer("refused", &[]);
        for _ in 0..100 {
            match l.accept_timeout(SHORT) {
                Err(AcceptError::Timeout) if l.refused() == 0 => continue,
                Err(AcceptError::Timeout) => break,
                other => panic!("tcp with an allow-list: {other:?}"),
            }
        }
        assert_eq!(l.refused(), 1);
        assert!(p.expect("refused").contains(&format!("uid {me}")));
        p.wait_success();
        return;
    }
    open_dir_to_others(&scope.dir());
    let accepting = accept_in_background(l);
    let mut p = scope.peer_as(NOBODY_UID, "refused", &[]);
    let msg = p.expect("refused");
    assert!(msg.contains(&format!("uid {NOBODY_UID}")), "{msg:?}");
    p.wait_success();
    let mut good = scope.peer("commanded", &[]);
    let (l, mut c) = accepting.join().expect("accepting thread");
    assert_eq!(l.refused(), 1);
    assert_eq!(c.peer().uid, me);
    good.expect("connected");
    ping_and_dismiss(&mut c, &mut good);
}
