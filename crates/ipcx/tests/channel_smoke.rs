//! In-process smoke test of every implemented transport (the cross-process conformance suite
//! is `conformance.rs`).

use std::time::Duration;

use ipcx::channel::{Channel, RecvError, SendMode, Transport};
use ipcx::Namespace;

fn round_trip(t: Transport) {
    let ns = Namespace::new(&ipcx_testkit::unique_name("smoke")).unwrap();
    let mut listener = Channel::builder("echo", t).namespace(ns.clone()).listen().unwrap();
    let ns2 = ns.clone();
    let client = std::thread::spawn(move || {
        let mut c = Channel::builder("echo", t).namespace(ns2).connect().unwrap();
        c.send(b"hello").unwrap();
        c.send(b"").unwrap();
        let big = vec![7u8; c.max_message()];
        c.send(&big).unwrap();
        c.send_with(b"acked", SendMode::Acknowledged, Some(Duration::from_secs(10))).unwrap();
        assert_eq!(c.recv().unwrap(), b"reply");
    });
    let mut s = listener.accept_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(s.recv().unwrap(), b"hello");
    assert_eq!(s.recv().unwrap(), b"");
    let big = s.recv().unwrap();
    assert_eq!(big.len(), s.max_message());
    assert_eq!(s.recv_timeout(Duration::from_secs(10)).unwrap(), b"acked");
    s.send(b"reply").unwrap();
    client.join().unwrap();
    assert!(matches!(s.recv_timeout(Duration::from_secs(10)), Err(RecvError::Closed)));
    drop((s, listener));
    // Nothing of the connection is left: the namespace directory is empty.
    std::fs::remove_dir(ns.dir()).expect("the namespace directory is empty");
}

#[test]
fn uds_stream() {
    round_trip(Transport::UdsStream);
}
#[test]
fn uds_seqpacket() {
    round_trip(Transport::UdsSeqpacket);
}
#[test]
fn tcp() {
    round_trip(Transport::Tcp);
}
#[test]
fn pipe() {
    round_trip(Transport::Pipe);
}
#[test]
fn fifo() {
    round_trip(Transport::Fifo);
}
#[test]
fn shm() {
    round_trip(Transport::Shm);
}
#[test]
fn posix_mq() {
    round_trip(Transport::PosixMq);
}
#[test]
fn sysv_msg() {
    round_trip(Transport::SysvMsg);
}

#[test]
fn checksummed_messages_arrive_intact() {
    for t in [Transport::Shm, Transport::UdsStream] {
        let ns = Namespace::new(&ipcx_testkit::unique_name("crc")).unwrap();
        let b = Channel::builder("crc", t).namespace(ns.clone()).checksum(true);
        let mut listener = b.clone().listen().unwrap();
        let client = std::thread::spawn(move || {
            let mut c = b.connect().unwrap();
            for i in 0..100u32 {
                c.send(&i.to_le_bytes().repeat(i as usize)).unwrap();
            }
        });
        let mut s = listener.accept_timeout(Duration::from_secs(10)).unwrap();
        for i in 0..100u32 {
            assert_eq!(s.recv().unwrap(), i.to_le_bytes().repeat(i as usize));
        }
        client.join().unwrap();
        drop((s, listener));
        std::fs::remove_dir(ns.dir()).unwrap();
    }
}
