//! The `shm` transport across processes: a checked round trip of many messages, full rings,
//! peer death while blocked, a forged segment, and nothing left behind.

use std::time::{Duration, Instant};

use ipcx::channel::{Channel, ConnectError, RecvError, SendError, Transport};
use ipcx::frame::{crc32c, FrameFlags, FrameHeader, FrameKind, HEADER_LEN};
use ipcx::sys::mapping::Access;
use ipcx::sys::memfd::{Memfd, Seals};
use ipcx::sys::uds::{BindOptions, UdsAddr, UdsListener, UdsStream};
use ipcx::sys::CreateMode;
use ipcx::{Acceptor, Hello, Namespace};
use ipcx_shm::segment::{encode_header, INIT_READY};
use ipcx_shm::{SegmentInfo, SegmentKind};
use ipcx_testkit::{leftovers, peer, read_command, signal, unique_name};

ipcx_testkit::peer_entry!(peer_main);

/// Largest message of the round trip.
const MAX: usize = 16 << 10;
/// Messages of the round trip.
const COUNT: usize = 10_000;
/// Messages in flight at once: their echoes always fit the return ring, so neither side
/// can block the other for good.
const WINDOW: usize = 24;
const ENDPOINT: &str = "chan";
const LONG: Duration = Duration::from_secs(10);

fn peer_main(role: &str, args: &[String]) {
    let ns = Namespace::new(&args[0]).unwrap();
    let builder = Channel::builder(ENDPOINT, Transport::Shm).namespace(ns).max_message(MAX);
    let mut ch = builder.connect_timeout(LONG).unwrap();
    match role {
        "echo" => {
            signal("connected", "");
            let mut buf = Vec::with_capacity(MAX);
            for i in 0..COUNT {
                ch.recv_in_place(Some(LONG), |msg| {
                    if msg.len() >= 4 {
                        let sum = u32::from_le_bytes(msg[..4].try_into().unwrap());
                        assert_eq!(sum, crc32c(&msg[4..]), "checksum of message {i}");
                    }
                    buf.clear();
                    buf.extend_from_slice(msg);
                })
                .unwrap();
                ch.send_timeout(&buf, LONG).unwrap();
            }
            signal("echoed", &COUNT.to_string());
            read_command();
        }
        "idle" => {
            signal("connected", "");
            match read_command().as_deref() {
                Some("drop") => {
                    drop(ch);
                    signal("dropped", "");
                    read_command();
                }
                Some("drain") => {
                    let mut n = 0;
                    while ch.recv_timeout(Duration::from_millis(500)).is_ok() {
                        n += 1;
                    }
                    signal("drained", &n.to_string());
                }
                _ => {}
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// A namespace of its own, removed (with whatever is in its directory) on drop.
struct Ns(Namespace);

impl Ns {
    fn new(tag: &str) -> Ns {
        Ns(Namespace::new(&unique_name(tag)).unwrap())
    }

    fn listen(&self) -> ipcx::Listener {
        Channel::builder(ENDPOINT, Transport::Shm)
            .namespace(self.0.clone())
            .max_message(MAX)
            .listen()
            .unwrap()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.dir());
        assert!(leftovers(self.0.name()).is_empty(), "left in /dev/shm");
    }
}

/// Message `i`: a pseudo-random size in 0..=MAX, random bytes, the first four bytes the
/// CRC-32C of the rest.
fn message(i: usize, seed: &mut u64) -> Vec<u8> {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let len = match i % 100 {
        0 => 0,
        1 => MAX,
        _ => (next() % (MAX as u64 + 1)) as usize,
    };
    let mut msg: Vec<u8> = (0..len.div_ceil(8)).flat_map(|_| next().to_le_bytes()).collect();
    msg.truncate(len);
    if len >= 4 {
        let sum = crc32c(&msg[4..]);
        msg[..4].copy_from_slice(&sum.to_le_bytes());
    }
    msg
}

#[test]
fn round_trip_of_random_sizes_with_checksums() {
    let ns = Ns::new("shm-rt");
    let mut listener = ns.listen();
    let mut p = peer("echo").arg(ns.0.name()).spawn();
    let mut ch = listener.accept_timeout(LONG).unwrap();
    p.expect("connected");
    let (mut seed, mut check_seed) = (0x9e37_79b9_7f4a_7c15u64, 0x9e37_79b9_7f4a_7c15u64);
    let mut sent = 0;
    while sent < COUNT {
        let batch = WINDOW.min(COUNT - sent);
        for i in sent..sent + batch {
            ch.send_timeout(&message(i, &mut seed), LONG).unwrap();
        }
        for i in sent..sent + batch {
            let want = message(i, &mut check_seed);
            let same = ch.recv_in_place(Some(LONG), |got| got == want.as_slice()).unwrap();
            assert!(same, "echo of message {i} ({} bytes) differs", want.len());
        }
        sent += batch;
    }
    assert_eq!(p.expect("echoed"), COUNT.to_string());
    p.send("bye");
    p.wait_success();
    assert!(matches!(ch.recv_timeout(LONG), Err(RecvError::Closed | RecvError::PeerGone)));
}

/// Blocks in `recv` on another thread; returns when it ended and how.
fn blocked_recv(mut ch: Channel) -> std::thread::JoinHandle<(Instant, RecvError)> {
    std::thread::spawn(move || {
        let e = ch.recv().unwrap_err();
        (Instant::now(), e)
    })
}

#[test]
fn peer_killed_while_we_block_in_recv() {
    let ns = Ns::new("shm-kill");
    let mut listener = ns.listen();
    let mut p = peer("idle").arg(ns.0.name()).spawn();
    let ch = listener.accept_timeout(LONG).unwrap();
    p.expect("connected");
    let waiter = blocked_recv(ch);
    // Not a synchronisation: the result is the same if the kill comes first.
    std::thread::sleep(Duration::from_millis(50));
    p.kill();
    let killed = Instant::now();
    let (ended, e) = waiter.join().unwrap();
    assert!(matches!(e, RecvError::PeerGone), "{e:?}");
    let took = ended.saturating_duration_since(killed);
    assert!(took < Duration::from_secs(1), "PeerGone after {took:?}");
}

#[test]
fn peer_dropping_its_channel_ends_our_blocked_recv() {
    let ns = Ns::new("shm-drop");
    let mut listener = ns.listen();
    let mut p = peer("idle").arg(ns.0.name()).spawn();
    let ch = listener.accept_timeout(LONG).unwrap();
    p.expect("connected");
    let waiter = blocked_recv(ch);
    std::thread::sleep(Duration::from_millis(50));
    p.send("drop");
    p.expect("dropped");
    let dropped = Instant::now();
    let (ended, e) = waiter.join().unwrap();
    assert!(matches!(e, RecvError::Closed), "{e:?}");
    let took = ended.saturating_duration_since(dropped);
    assert!(took < Duration::from_secs(1), "Closed after {took:?}");
    p.send("bye");
    p.wait_success();
}

#[test]
fn full_ring_blocks_send_until_the_peer_reads() {
    let ns = Ns::new("shm-full");
    let mut listener = ns.listen();
    let mut p = peer("idle").arg(ns.0.name()).spawn();
    let mut ch = listener.accept_timeout(LONG).unwrap();
    p.expect("connected");
    let msg = vec![0x5a; 1000];
    let mut queued = 0;
    loop {
        match ch.try_send(&msg) {
            Ok(()) => queued += 1,
            Err(SendError::Full) => break,
            Err(e) => panic!("{e:?}"),
        }
        assert!(queued < 1_000_000, "the ring never filled");
    }
    assert!(matches!(ch.send_timeout(&msg, Duration::from_millis(30)), Err(SendError::Timeout)));
    p.send("drain");
    ch.send_timeout(&msg, LONG).unwrap();
    assert_eq!(p.expect("drained"), (queued + 1).to_string());
    p.wait_success();
}

#[test]
fn peer_killed_while_we_block_on_a_full_ring() {
    let ns = Ns::new("shm-killfull");
    let mut listener = ns.listen();
    let mut p = peer("idle").arg(ns.0.name()).spawn();
    let mut ch = listener.accept_timeout(LONG).unwrap();
    p.expect("connected");
    let msg = vec![1u8; 4000];
    while ch.try_send(&msg).is_ok() {}
    let sender = std::thread::spawn(move || {
        let e = ch.send(&msg).unwrap_err();
        (Instant::now(), e)
    });
    std::thread::sleep(Duration::from_millis(50));
    p.kill();
    let killed = Instant::now();
    let (ended, e) = sender.join().unwrap();
    assert!(matches!(e, SendError::PeerGone), "{e:?}");
    assert!(ended.saturating_duration_since(killed) < Duration::from_secs(1));
}

/// What the fake listener sends as the setup message.
#[derive(Debug, Clone, Copy)]
enum Forgery {
    /// A sealed memfd of the right size full of garbage.
    Garbage,
    /// A sealed memfd of one page.
    Short,
    /// A memfd of the right size without seals.
    Unsealed,
    /// A valid segment header, then garbage where the rings are.
    GarbageRings,
    /// No fd at all.
    NoFd,
}

/// Reads one frame (header and payload) from the fake listener's socket.
fn read_frame(s: &UdsStream) -> (FrameHeader, Vec<u8>) {
    let mut head = [0u8; HEADER_LEN];
    s.recv_exact(&mut head, LONG).unwrap();
    let header = FrameHeader::decode(&head, 1 << 16).unwrap();
    let mut payload = vec![0; header.len as usize];
    s.recv_exact(&mut payload, LONG).unwrap();
    (header, payload)
}

/// A memfd of `len` bytes holding `bytes` at its start and pseudo-random bytes after.
fn forged_memfd(len: usize, bytes: &[u8], seal: bool) -> Memfd {
    let fd = Memfd::create("forged", len).unwrap();
    let mapping = fd.map(Access::ReadWrite).unwrap();
    let garbage: Vec<u8> = (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    mapping.write_at(0, &garbage).unwrap();
    mapping.write_at(0, bytes).unwrap();
    drop(mapping);
    if seal {
        fd.add_seals(Seals::FIXED_SIZE | Seals::SEAL).unwrap();
    }
    fd
}

/// Plays the listener's side of one connection: a real handshake, then a forged setup.
fn fake_accept(listener: &UdsListener, forgery: Forgery) {
    let s = listener.accept_timeout(LONG).unwrap();
    let (header, payload) = read_frame(&s);
    let acceptor =
        Acceptor::new(Hello::new(ipcx::channel::raw_contract(), "shm", MAX as u32)).unwrap();
    let (reply, _) = acceptor.on_hello(&header, &payload).unwrap().accept();
    s.send_all(&reply, LONG).unwrap();
    // A plausible size (the default layout for MAX is two 512 KiB rings) and header.
    let size = 4096 + 2 * (512 << 10) + 2 * 4096 + 512;
    // A valid header as the real listener writes it (kind "CHNL", fingerprint with log2
    // of the 512 KiB capacity).
    let info = SegmentInfo {
        kind: SegmentKind::Other(0xc348_4e4c),
        total_size: size as u64,
        payload_offset: 4096,
        payload_size: size as u64 - 4096,
        fingerprint: 0x6970_6378_6368_0100 | 19,
        creator_pid: std::process::id(),
        creator_uid: 0,
    };
    let header = encode_header(&info, INIT_READY);
    let memfd = match forgery {
        Forgery::Garbage => Some(forged_memfd(size, &[], true)),
        Forgery::Short => Some(forged_memfd(4096, &[], true)),
        Forgery::Unsealed => Some(forged_memfd(size, &[], false)),
        Forgery::GarbageRings => Some(forged_memfd(size, &header, true)),
        Forgery::NoFd => None,
    };
    let setup = b"shm3";
    let head = FrameHeader::for_payload(FrameKind::Data, FrameFlags::NONE, 0, setup).unwrap();
    let mut bytes = head.encode().to_vec();
    bytes.extend_from_slice(setup);
    let fds: Vec<_> = memfd.iter().map(std::os::fd::AsFd::as_fd).collect();
    assert_eq!(s.send_with_fds(&bytes, &fds).unwrap(), bytes.len());
    // Keep the socket open until the connector has judged the setup.
    let mut byte = [0u8; 1];
    let _ = s.recv_timeout(&mut byte, LONG);
}

#[test]
fn forged_segments_are_handshake_errors() {
    let ns = Ns::new("shm-forged");
    let dir = ns.0.ensure_dir().unwrap();
    let path = dir.join(format!("{ENDPOINT}.shm"));
    let addr = UdsAddr::path(&path).unwrap();
    let listener =
        UdsListener::bind(&addr, &BindOptions::new(CreateMode::CreateExclusive)).unwrap();
    let forgeries =
        [Forgery::Garbage, Forgery::Short, Forgery::Unsealed, Forgery::GarbageRings, Forgery::NoFd];
    let fake = std::thread::spawn(move || {
        for f in forgeries {
            fake_accept(&listener, f);
        }
        listener
    });
    for f in forgeries {
        let builder = Channel::builder(ENDPOINT, Transport::Shm).namespace(ns.0.clone());
        match builder.max_message(MAX).connect_timeout(LONG) {
            Err(ConnectError::Handshake(why)) => eprintln!("{f:?}: {why}"),
            other => panic!("{f:?}: expected a handshake error, got {other:?}"),
        }
    }
    drop(fake.join().unwrap());
}
