//! Unix domain sockets across real processes: round trips of every socket type over path
//! and abstract addresses, timeouts, address and bind errors, socket file cleanup (also
//! after SIGKILL), peer credentials and pidfds, permissions, fd passing and its limits.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipcx_sys::eventfd::EventFd;
use ipcx_sys::uds::{
    is_stale, AcceptError, AddrError, BindError, BindOptions, ConnectError, RecvError,
    RecvFdsError, SendError, UdsAddr, UdsDatagram, UdsListener, UdsSeqpacket, UdsSeqpacketListener,
    UdsStream,
};
use ipcx_sys::{CreateMode, Permissions};
use ipcx_testkit::{peer, read_command, signal, unique_name, NOBODY_UID};

ipcx_testkit::peer_entry!(peer_main);

const LONG: Duration = Duration::from_secs(10);

fn peer_main(role: &str, args: &[String]) {
    let addr = args.first().map(|a| parse_addr(a));
    match role {
        "stream_client" => {
            let s = UdsStream::connect(&addr.unwrap()).unwrap();
            s.send_all(b"hello from child", LONG).unwrap();
            let mut reply = [0u8; 5];
            s.recv_exact(&mut reply, LONG).unwrap();
            signal("got", std::str::from_utf8(&reply).unwrap());
        }
        "seq_client" => {
            let s = UdsSeqpacket::connect(&addr.unwrap()).unwrap();
            let mut buf = [0u8; 64];
            for _ in 0..3 {
                let n = s.recv_timeout(&mut buf, LONG).unwrap();
                s.send(&buf[..n]).unwrap();
            }
            let mut small = [0u8; 10];
            match s.recv_timeout(&mut small, LONG) {
                Err(RecvError::Truncated { size, capacity: 10 }) => {
                    signal("trunc", &size.to_string())
                }
                other => panic!("expected truncation, got {other:?}"),
            }
        }
        "dgram_peer" => {
            let me = UdsDatagram::bind(&parse_addr(&args[1])).unwrap();
            signal("ready", "");
            let mut buf = [0u8; 64];
            let (n, from) = me.recv_from_timeout(&mut buf, LONG).unwrap();
            let from = from.expect("parent is bound");
            assert_eq!(from, addr.unwrap());
            let mut reply = b"pong:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            me.send_to(&reply, &from).unwrap();
        }
        "hold" => {
            let s = UdsStream::connect(&addr.unwrap()).unwrap();
            signal("connected", "");
            while let Some(cmd) = read_command() {
                if let Some(text) = cmd.strip_prefix("send ") {
                    s.send_all(text.as_bytes(), LONG).unwrap();
                }
            }
        }
        "connect_denied" => match UdsStream::connect(&addr.unwrap()) {
            Err(ConnectError::PermissionDenied { .. }) => signal("denied", ""),
            other => panic!("expected permission denied, got {other:?}"),
        },
        "hold_listener" => {
            let _l = UdsListener::bind(&addr.unwrap(), &BindOptions::default()).unwrap();
            signal("listening", "");
            loop {
                std::thread::park();
            }
        }
        "fd_user" => {
            let s = UdsStream::connect(&addr.unwrap()).unwrap();
            let mut buf = [0u8; 8];
            let (n, mut fds) = s.recv_with_fds_timeout(&mut buf, 2, LONG).unwrap();
            assert_eq!((&buf[..n], fds.len()), (&b"fds"[..], 2));
            let ev = EventFd::from_fd(fds.pop().unwrap());
            File::from(fds.pop().unwrap()).write_all(b"via-pipe").unwrap();
            ev.notify(7).unwrap();
            signal("used", "");
        }
        "fd_overflow" => {
            let s = UdsSeqpacket::connect(&addr.unwrap()).unwrap();
            let before = open_fds();
            signal("ready", "");
            let mut buf = [0u8; 8];
            for _ in 0..2 {
                match s.recv_with_fds_timeout(&mut buf, 1, LONG) {
                    Err(RecvFdsError::TooManyFds { max_fds: 1 }) => {}
                    other => panic!("expected too many fds, got {other:?}"),
                }
            }
            let (_, fds) = s.recv_with_fds_timeout(&mut buf, 1, LONG).unwrap();
            assert_eq!(fds.len(), 1);
            drop(fds);
            signal("counts", &format!("{before} {}", open_fds()));
        }
        "umask_bind" => {
            rustix::process::umask(rustix::fs::Mode::empty());
            let opts = BindOptions::default().permissions(Permissions::from_mode(0o640).unwrap());
            let l = UdsListener::bind(&parse_addr(&args[0]), &opts).unwrap();
            let d = UdsDatagram::bind(&parse_addr(&args[1])).unwrap();
            let mode = |a: &UdsAddr| fs::metadata(a.as_path().unwrap()).unwrap().mode() & 0o777;
            signal(
                "modes",
                &format!("{:o} {:o}", mode(l.local_addr()), mode(d.local_addr().unwrap())),
            );
        }
        other => panic!("unknown role {other}"),
    }
}

/// A fresh directory under /tmp (mode 0755, so uid 65534 may traverse it), removed on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new() -> TestDir {
        let dir = PathBuf::from("/tmp").join(unique_name("uds"));
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        TestDir(dir)
    }

    fn addr(&self, name: &str) -> UdsAddr {
        UdsAddr::path(self.0.join(name)).unwrap()
    }

    fn is_empty(&self) -> bool {
        fs::read_dir(&self.0).unwrap().next().is_none()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn abstract_addr() -> UdsAddr {
    UdsAddr::abstract_name(unique_name("uds")).unwrap()
}

/// `addr` as a peer argument.
fn arg(addr: &UdsAddr) -> String {
    match addr.as_path() {
        Some(p) => format!("path:{}", p.display()),
        None => format!("abs:{}", std::str::from_utf8(addr.as_abstract_name().unwrap()).unwrap()),
    }
}

fn parse_addr(s: &str) -> UdsAddr {
    match s.split_once(':') {
        Some(("path", p)) => UdsAddr::path(p).unwrap(),
        Some(("abs", n)) => UdsAddr::abstract_name(n).unwrap(),
        _ => panic!("bad address argument {s}"),
    }
}

fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

fn exists(addr: &UdsAddr) -> bool {
    fs::symlink_metadata(addr.as_path().unwrap()).is_ok()
}

#[test]
fn stream_round_trip_path_and_abstract() {
    let dir = TestDir::new();
    for addr in [dir.addr("s.sock"), abstract_addr()] {
        let l = UdsListener::bind(&addr, &BindOptions::default()).unwrap();
        let mut p = peer("stream_client").arg(arg(&addr)).spawn();
        let s = l.accept_timeout(LONG).unwrap();
        let mut buf = [0u8; 16];
        s.recv_exact(&mut buf, LONG).unwrap();
        assert_eq!(&buf, b"hello from child");
        s.send_all(b"reply", LONG).unwrap();
        assert_eq!(p.expect("got"), "reply");
        p.wait_success();
        assert_eq!(s.recv_timeout(&mut buf, LONG).unwrap(), 0, "peer exit reads as end of stream");
    }
    assert!(dir.is_empty(), "listener left its socket file");
}

#[test]
fn seqpacket_round_trip_keeps_boundaries_and_reports_truncation() {
    let dir = TestDir::new();
    for addr in [dir.addr("q.sock"), abstract_addr()] {
        let l = UdsSeqpacketListener::bind(&addr, &BindOptions::default()).unwrap();
        let mut p = peer("seq_client").arg(arg(&addr)).spawn();
        let s = l.accept_timeout(LONG).unwrap();
        let msgs: [&[u8]; 3] = [b"one", b"2", b"three33"];
        for m in msgs {
            s.send(m).unwrap();
        }
        let mut buf = [0u8; 64];
        for m in msgs {
            let n = s.recv_timeout(&mut buf, LONG).unwrap();
            assert_eq!(&buf[..n], m);
        }
        s.send(&[9u8; 100]).unwrap();
        assert_eq!(p.expect("trunc"), "100");
        p.wait_success();
    }
    assert!(dir.is_empty());
}

#[test]
fn datagram_round_trip_with_sender_address() {
    let dir = TestDir::new();
    for (mine, theirs) in
        [(dir.addr("a.sock"), dir.addr("b.sock")), (abstract_addr(), abstract_addr())]
    {
        let me = UdsDatagram::bind(&mine).unwrap();
        let mut p = peer("dgram_peer").arg(arg(&mine)).arg(arg(&theirs)).spawn();
        p.expect("ready");
        me.send_to_timeout(b"ping", &theirs, LONG).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = me.recv_from_timeout(&mut buf, LONG).unwrap();
        assert_eq!(&buf[..n], b"pong:ping");
        assert_eq!(from, Some(theirs));
        p.wait_success();
    }
    assert!(dir.is_empty(), "datagram sockets left their files");
}

#[test]
fn timeouts_on_accept_recv_and_connect() {
    let dir = TestDir::new();
    let addr = dir.addr("t.sock");
    let l = UdsListener::bind(&addr, &BindOptions::default().backlog(0)).unwrap();
    let t = Instant::now();
    assert!(matches!(l.accept_timeout(Duration::from_millis(50)), Err(AcceptError::Timeout)));
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert!(l.try_accept().unwrap().is_none());

    // A silent peer process: recv times out, then data sent later arrives.
    let mut p = peer("hold").arg(arg(&addr)).spawn();
    p.expect("connected");
    let s = l.accept_timeout(LONG).unwrap();
    let mut buf = [0u8; 4];
    let t = Instant::now();
    assert!(matches!(s.recv_timeout(&mut buf, Duration::from_millis(50)), Err(RecvError::Timeout)));
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert!(s.try_recv(&mut buf).unwrap().is_none());
    p.send("send late");
    s.recv_exact(&mut buf, LONG).unwrap();
    assert_eq!(&buf, b"late");
    p.close_stdin();
    p.wait_success();

    // Nobody accepts: once the backlog is full, connect_timeout gives up.
    let mut held = Vec::new();
    let err = loop {
        match UdsStream::connect_timeout(&addr, Duration::from_millis(30)) {
            Ok(c) if held.len() < 16 => held.push(c),
            other => break other.unwrap_err(),
        }
    };
    assert!(matches!(err, ConnectError::Timeout), "{err:?}");
    assert!(matches!(
        UdsStream::connect_timeout(&addr, Duration::ZERO),
        Err(ConnectError::Timeout)
    ));

    let (a, _b) = UdsSeqpacket::pair().unwrap();
    assert!(matches!(a.recv_timeout(&mut buf, Duration::from_millis(20)), Err(RecvError::Timeout)));
    let (d, _e) = UdsDatagram::pair().unwrap();
    assert!(matches!(d.recv_timeout(&mut buf, Duration::from_millis(20)), Err(RecvError::Timeout)));
    assert!(d.try_recv(&mut buf).unwrap().is_none());
}

#[test]
fn bad_addresses_and_bind_conflicts_are_typed_errors() {
    let long = format!("/tmp/{}", "x".repeat(120));
    let err = UdsAddr::path(&long).unwrap_err();
    assert_eq!(err, AddrError::PathTooLong { len: long.len() });
    assert!(err.to_string().contains("shorter path"));
    assert_eq!(UdsAddr::path(""), Err(AddrError::Empty));
    assert!(matches!(UdsAddr::abstract_name([1u8; 200]), Err(AddrError::NameTooLong { .. })));

    let dir = TestDir::new();
    let missing = dir.addr("missing.sock");
    assert!(matches!(UdsStream::connect(&missing), Err(ConnectError::NotFound { .. })));
    assert!(matches!(UdsStream::connect(&abstract_addr()), Err(ConnectError::Refused { .. })));
    let nodir = UdsAddr::path(dir.0.join("no/such/dir.sock")).unwrap();
    let err = UdsListener::bind(&nodir, &BindOptions::default()).unwrap_err();
    assert!(matches!(err, BindError::NoDirectory { .. }), "{err:?}");
    let open = BindOptions::new(CreateMode::Open);
    assert!(matches!(UdsListener::bind(&missing, &open), Err(BindError::OpenUnsupported)));

    // Wrong socket type on both sides.
    let daddr = dir.addr("d.sock");
    let _d = UdsDatagram::bind(&daddr).unwrap();
    assert!(matches!(UdsStream::connect(&daddr), Err(ConnectError::WrongType { .. })));
    assert!(matches!(UdsSeqpacket::connect(&daddr), Err(ConnectError::WrongType { .. })));

    // A live listener is never replaced; neither is a name in use nor a regular file.
    let live = dir.addr("live.sock");
    let _l = UdsListener::bind(&live, &BindOptions::default()).unwrap();
    let reuse = BindOptions::new(CreateMode::OpenOrCreate);
    assert!(matches!(UdsListener::bind(&live, &reuse), Err(BindError::InUse { .. })));
    assert!(matches!(
        UdsListener::bind(&live, &BindOptions::default()),
        Err(BindError::AlreadyExists { .. })
    ));
    let abs = abstract_addr();
    let _a = UdsSeqpacketListener::bind(&abs, &BindOptions::default()).unwrap();
    assert!(matches!(UdsSeqpacketListener::bind(&abs, &reuse), Err(BindError::InUse { .. })));
    let file = dir.addr("plain-file");
    fs::write(file.as_path().unwrap(), b"keep me").unwrap();
    assert!(matches!(UdsListener::bind(&file, &reuse), Err(BindError::NotASocket { .. })));
    assert_eq!(fs::read(file.as_path().unwrap()).unwrap(), b"keep me");
}

#[test]
fn socket_files_are_removed_on_drop_and_reclaimed_after_sigkill() {
    let dir = TestDir::new();
    let addr = dir.addr("l.sock");
    let mut l = UdsListener::bind(&addr, &BindOptions::default()).unwrap();
    assert!(exists(&addr));
    l.remove().unwrap();
    assert!(!exists(&addr));
    drop(l);
    drop(UdsSeqpacketListener::bind(&addr, &BindOptions::default()).unwrap());
    assert!(!exists(&addr));
    drop(UdsDatagram::bind(&addr).unwrap());
    assert!(!exists(&addr));

    // A listener killed with SIGKILL leaves a stale file behind.
    let mut p = peer("hold_listener").arg(arg(&addr)).spawn();
    p.expect("listening");
    p.kill();
    assert!(exists(&addr));
    assert!(matches!(UdsStream::connect(&addr), Err(ConnectError::Refused { .. })));
    let path = addr.as_path().unwrap().to_owned();
    assert!(is_stale(&path, false).unwrap(), "nobody listens: stale");
    assert!(!is_stale(&dir.0.join("absent.sock"), false).unwrap(), "no file: not stale");
    assert!(matches!(
        UdsListener::bind(&addr, &BindOptions::default()),
        Err(BindError::AlreadyExists { .. })
    ));
    let l = UdsListener::bind(&addr, &BindOptions::new(CreateMode::OpenOrCreate)).unwrap();
    assert!(!is_stale(&path, false).unwrap(), "a live listener is not stale");
    assert!(!is_stale(&path, true).unwrap(), "a probe of the wrong type counts as alive");
    let c = UdsStream::connect(&addr).unwrap();
    let _probe = l.accept_timeout(LONG).unwrap();
    let s = l.accept_timeout(LONG).unwrap();
    c.send_all(b"x", LONG).unwrap();
    let mut b = [0u8; 1];
    s.recv_exact(&mut b, LONG).unwrap();
    drop(l);
    assert!(dir.is_empty());
}

#[test]
fn peer_credentials_and_pidfd_name_the_child() {
    let dir = TestDir::new();
    let addr = dir.addr("c.sock");
    let open = BindOptions::default().permissions(Permissions::from_mode(0o666).unwrap());
    let l = UdsListener::bind(&addr, &open).unwrap();
    for uid in [None, Some(NOBODY_UID)] {
        let b = peer("hold").arg(arg(&addr));
        let mut p = match uid {
            Some(u) => b.uid(u).spawn(),
            None => b.spawn(),
        };
        p.expect("connected");
        let s = l.accept_timeout(LONG).unwrap();
        let cred = s.peer_cred().unwrap();
        assert_eq!(cred.pid, p.pid());
        assert_eq!(cred.uid, uid.unwrap_or_else(|| rustix::process::getuid().as_raw()));
        if let Some(u) = uid {
            assert_eq!(cred.gid, u);
        }
        let pidfd = s.peer_pidfd().unwrap();
        let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).unwrap();
        let pid_line = info.lines().find(|l| l.starts_with("Pid:")).unwrap();
        assert_eq!(pid_line.split_whitespace().nth(1), Some(p.pid().to_string().as_str()));
        p.close_stdin();
        p.wait_success();
    }
}

#[test]
fn nobody_is_denied_an_owner_only_socket() {
    let dir = TestDir::new();
    let addr = dir.addr("private.sock");
    let l = UdsListener::bind(&addr, &BindOptions::default()).unwrap();
    assert_eq!(fs::metadata(addr.as_path().unwrap()).unwrap().mode() & 0o777, 0o600);
    let mut p = peer("connect_denied").arg(arg(&addr)).uid(NOBODY_UID).spawn();
    p.expect("denied");
    p.wait_success();
    assert!(l.try_accept().unwrap().is_none());
}

#[test]
fn modes_are_exact_under_umask_000() {
    let dir = TestDir::new();
    let (la, da) = (dir.addr("l.sock"), dir.addr("d.sock"));
    let mut p = peer("umask_bind").arg(arg(&la)).arg(arg(&da)).spawn();
    assert_eq!(p.expect("modes"), "640 600");
    p.wait_success();
    assert!(dir.is_empty());
}

#[test]
fn fds_passed_to_another_process_work_there() {
    let dir = TestDir::new();
    let addr = dir.addr("f.sock");
    let l = UdsListener::bind(&addr, &BindOptions::default()).unwrap();
    let mut p = peer("fd_user").arg(arg(&addr)).spawn();
    let s = l.accept_timeout(LONG).unwrap();
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let ev = EventFd::new().unwrap();
    s.send_with_fds(b"fds", &[w.as_fd(), ev.as_fd()]).unwrap();
    drop(w);
    p.expect("used");
    let mut got = Vec::new();
    File::from(r).read_to_end(&mut got).unwrap();
    assert_eq!(got, b"via-pipe");
    assert_eq!(ev.read_timeout(LONG).unwrap(), 7);
    p.wait_success();
}

#[test]
fn too_many_fds_is_an_error_and_leaks_nothing() {
    let dir = TestDir::new();
    let addr = dir.addr("o.sock");
    let l = UdsSeqpacketListener::bind(&addr, &BindOptions::default()).unwrap();
    let mut p = peer("fd_overflow").arg(arg(&addr)).spawn();
    let s = l.accept_timeout(LONG).unwrap();
    p.expect("ready");
    let evs: Vec<OwnedFd> = (0..10).map(|_| EventFd::new().unwrap().into_fd()).collect();
    let fds: Vec<_> = evs.iter().map(|f| f.as_fd()).collect();
    // Two fds fit the alignment slack of a 1-fd buffer (counted); ten force MSG_CTRUNC.
    s.send_with_fds(b"two", &fds[..2]).unwrap();
    s.send_with_fds(b"ten", &fds).unwrap();
    s.send_with_fds(b"one", &fds[..1]).unwrap();
    let counts = p.expect("counts");
    let (before, after) = counts.split_once(' ').unwrap();
    assert_eq!(before, after, "receiver leaked fds");
    p.wait_success();
}

#[test]
fn fd_passing_on_pairs_of_every_type() {
    let ev = EventFd::new().unwrap();
    let (a, b) = UdsSeqpacket::pair().unwrap();
    a.send_with_fds(b"s", &[ev.as_fd()]).unwrap();
    let mut buf = [0u8; 4];
    let (n, mut fds) = b.recv_with_fds_timeout(&mut buf, 1, LONG).unwrap();
    assert_eq!((n, fds.len()), (1, 1));
    EventFd::from_fd(fds.pop().unwrap()).notify(1).unwrap();
    assert_eq!(ev.try_read().unwrap(), Some(1));

    let (c, d) = UdsDatagram::pair().unwrap();
    c.send_with_fds(b"dgram", &[ev.as_fd()], None).unwrap();
    // Data larger than the buffer is an error even with fds, and the fds are closed.
    assert!(matches!(
        d.recv_with_fds_timeout(&mut buf, 1, LONG),
        Err(RecvFdsError::Recv(RecvError::Truncated { size: 5, capacity: 4 }))
    ));
    let (e, f) = UdsStream::pair().unwrap();
    e.send_with_fds(b"x", &[ev.as_fd()]).unwrap();
    assert_eq!(f.recv_with_fds_timeout(&mut buf, 1, LONG).unwrap().1.len(), 1);
}

#[test]
fn datagram_size_limit_nonblocking_and_closed_peer() {
    let (a, b) = UdsDatagram::pair().unwrap();
    let max = a.max_datagram_size().unwrap();
    assert!(max > 1024);
    let big = vec![7u8; max + 1];
    match a.send(&big) {
        Err(SendError::TooLarge { len, max: m }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    a.send(&big[..max]).unwrap();
    let mut buf = vec![0u8; max];
    assert_eq!(b.recv_timeout(&mut buf, LONG).unwrap(), max);

    let (s, t) = UdsStream::pair().unwrap();
    s.set_nonblocking(true).unwrap();
    assert!(matches!(s.recv(&mut buf), Err(RecvError::WouldBlock)));
    assert_eq!(s.peer_cred().unwrap().pid, std::process::id());
    drop(t);
    assert!(matches!(s.send(b"x"), Err(SendError::PeerClosed)));

    let u = UdsDatagram::unbound().unwrap();
    assert!(matches!(u.send(b"x"), Err(SendError::NotConnected)));
    let gone = abstract_addr();
    assert!(matches!(u.send_to(b"x", &gone), Err(SendError::NoReceiver)));

    // A receiver that does not drain: sends to it fill its queue, then time out.
    let rx_addr = abstract_addr();
    let _rx = UdsDatagram::bind(&rx_addr).unwrap();
    let mut queued = 0;
    while u.try_send_to(b"fill", &rx_addr).unwrap() {
        queued += 1;
        assert!(queued < 100_000, "receiver queue never filled");
    }
    let t = Instant::now();
    let r = u.send_to_timeout(b"late", &rx_addr, Duration::from_millis(30));
    assert!(matches!(r, Err(SendError::Timeout)), "{r:?}");
    assert!(t.elapsed() >= Duration::from_millis(30));
}

#[test]
fn a_peer_killed_mid_connection_reads_as_closed() {
    let dir = TestDir::new();
    let addr = dir.addr("k.sock");
    let l = UdsListener::bind(&addr, &BindOptions::default()).unwrap();
    let mut p = peer("hold").arg(arg(&addr)).spawn();
    p.expect("connected");
    let s = l.accept_timeout(LONG).unwrap();
    p.send("send half");
    let mut buf = [0u8; 4];
    s.recv_exact(&mut buf, LONG).unwrap();
    p.kill();
    assert_eq!(s.recv_timeout(&mut buf, LONG).unwrap(), 0);
    assert!(matches!(s.send(b"x"), Err(SendError::PeerClosed)));
    let mut partial = [0u8; 8];
    assert!(matches!(
        s.recv_exact(&mut partial, LONG),
        Err(ipcx_sys::uds::RecvExactError::Closed { received: 0, len: 8 })
    ));
}
